/*
 * fuzz_config.c — libFuzzer target for the config parser: any bytes must
 * parse or be refused with one line of error, never crash or read past the
 * text, and a config that parses holds every documented invariant (ranges,
 * NUL-terminated strings, distinct ports, a key when the binary port is on,
 * EAL arguments that split within the limit).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

static void check_valid(const struct tally_config *config) {
  FUZZ_CHECK(memchr(config->eal_args, '\0', sizeof(config->eal_args)) != NULL);
  FUZZ_CHECK(memchr(config->store_path, '\0', sizeof(config->store_path)) != NULL);
  FUZZ_CHECK(memchr(config->socket_path, '\0', sizeof(config->socket_path)) != NULL);
  FUZZ_CHECK(config->store_path[0] != '\0');
  FUZZ_CHECK(config->socket_path[0] != '\0');
  FUZZ_CHECK(config->counters_max >= TALLY_COUNTERS_MIN);
  FUZZ_CHECK(config->counters_max <= TALLY_COUNTERS_MAX);
  FUZZ_CHECK(config->producers_max >= TALLY_PRODUCERS_MIN);
  FUZZ_CHECK(config->producers_max <= TALLY_PRODUCERS_MAX);
  FUZZ_CHECK(config->commit_interval_ms >= TALLY_COMMIT_INTERVAL_MS_MIN);
  FUZZ_CHECK(config->commit_interval_ms <= TALLY_COMMIT_INTERVAL_MS_MAX);
  FUZZ_CHECK(config->mbufs >= TALLY_MBUFS_MIN);
  FUZZ_CHECK(config->mbufs <= TALLY_MBUFS_MAX);
  FUZZ_CHECK(config->persist_mode <= TALLY_PERSIST_PER_BURST);
  FUZZ_CHECK(config->ipv4 != 0);
  FUZZ_CHECK(config->binary_port == 0 || config->key_set);
  FUZZ_CHECK(config->statsd_port == 0 || config->statsd_port != config->binary_port);

  char storage[TALLY_EAL_ARGS_LEN_MAX];
  char *argv[TALLY_EAL_ARGC_MAX + 1];
  int argc = tally_config_eal_argv(config, "tallyd", storage, argv);
  FUZZ_CHECK(argc >= 1);
  FUZZ_CHECK(argc <= (int)TALLY_EAL_ARGC_MAX);
  FUZZ_CHECK(argv[argc] == NULL);
  for (int i = 1; i < argc; i++) {
    FUZZ_CHECK(argv[i][0] != '\0');
    FUZZ_CHECK(strpbrk(argv[i], " \t") == NULL);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tally_config config;
  char error[256];
  memset(&config, 0x5a, sizeof(config));
  int result = tally_config_parse((const char *)data, size, &config, error, sizeof(error));
  FUZZ_CHECK(result == 0 || result == -1);
  FUZZ_CHECK(memchr(error, '\0', sizeof(error)) != NULL);
  FUZZ_CHECK(strchr(error, '\n') == NULL);
  if (result == 0) {
    FUZZ_CHECK(error[0] == '\0');
    check_valid(&config);
  } else {
    FUZZ_CHECK(strncmp(error, "config: ", 8) == 0);
    /* A refused config leaves the caller's struct alone. */
    const uint8_t *bytes = (const uint8_t *)&config;
    for (size_t i = 0; i < sizeof(config); i++) FUZZ_CHECK(bytes[i] == 0x5a);
  }
  return 0;
}
