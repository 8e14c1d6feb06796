/*
 * ctl_producer_key.c — tallyctl producer-key ID [--config FILE] --out FILE.
 *
 * Hands a producer its own key for ingest.producer_keys = derived (issue 14,
 * M2): BLAKE2b of ingest.key and the producer id (tally_wire_producer_key,
 * the one derivation tallyd's lcores use). It is derived here, from the
 * config file, which tally_config_load reads only when group and others have
 * no access to it: whoever runs this can read ingest.key already, and the
 * master key crosses no socket and no command line. The key is written as 64
 * hex digits and a newline to a file created new with mode 0600 (never over
 * an existing one, never through a symlink): tally-produce --key-file and
 * libtally take it as it is.
 *
 * Thread: tallyctl's one thread.
 */
#include "ctl_producer_key.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tally/batch_wire.h"
#include "tally/limits.h"

#define EXIT_OK 0
#define EXIT_FAILED 3
#define EXIT_USAGE 64

static const char usage_text[] =
  "usage: tallyctl [-c CONFIG] producer-key ID [--config CONFIG] --out FILE\n"
  "  writes producer ID's own key (ingest.producer_keys = derived) as 64 hex digits\n"
  "  to FILE, created new with mode 0600; derived from the config's ingest.key\n";

bool tally_ctl_producer_key_command(const char *word)
{
  return strcmp(word, "producer-key") == 0;
}

/* A producer id: decimal, 1..TALLY_PRODUCER_ID_MAX. */
static bool parse_producer(const char *text, uint64_t *producer)
{
  if (text[0] < '0' || text[0] > '9') return false;
  errno = 0;
  char *end = NULL;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || value == 0 || value > TALLY_PRODUCER_ID_MAX) return false;
  *producer = (uint64_t)value;
  return true;
}

/* Writes the key's hex to a new 0600 file. Returns 0, or -1 (said on stderr). */
static int write_key_file(const char *path, const uint8_t key[TALLY_KEY_SIZE])
{
  char hex[2u * TALLY_KEY_SIZE + 2u];
  sodium_bin2hex(hex, sizeof hex, key, TALLY_KEY_SIZE);
  size_t length = 2u * TALLY_KEY_SIZE;
  hex[length++] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  int result = -1;
  if (fd < 0) {
    fprintf(stderr, "tallyctl: producer-key: --out %s: %s\n", path, strerror(errno));
  } else if (fchmod(fd, 0600) != 0 || write(fd, hex, length) != (ssize_t)length ||
             fsync(fd) != 0) {
    fprintf(stderr, "tallyctl: producer-key: --out %s: %s\n", path, strerror(errno));
  } else {
    result = 0;
  }
  if (fd >= 0 && close(fd) != 0 && result == 0) {
    fprintf(stderr, "tallyctl: producer-key: --out %s: %s\n", path, strerror(errno));
    result = -1;
  }
  if (fd >= 0 && result != 0) unlink(path);
  sodium_memzero(hex, sizeof hex);
  return result;
}

int tally_ctl_producer_key_main(int argc, char **argv, const struct tally_config *config)
{
  const char *config_path = NULL, *out = NULL;
  uint64_t producer = 0;
  bool id_seen = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc && config_path == NULL) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc && out == NULL) {
      out = argv[++i];
    } else if (!id_seen && parse_producer(argv[i], &producer)) {
      id_seen = true;
    } else {
      fprintf(stderr, "tallyctl: producer-key: unexpected '%s' (an ID is 1..%" PRIu64 ")\n%s",
        argv[i], (uint64_t)TALLY_PRODUCER_ID_MAX, usage_text);
      return EXIT_USAGE;
    }
  }
  if (!id_seen || out == NULL || (config == NULL) == (config_path == NULL)) {
    fprintf(stderr, "tallyctl: producer-key: needs ID, --out and one config (-c or --config)\n%s",
      usage_text);
    return EXIT_USAGE;
  }
  static struct tally_config loaded; /* large; the master key is wiped below */
  if (config_path != NULL) {
    char error[512];
    if (tally_config_load(config_path, &loaded, error, sizeof error) != 0) {
      fprintf(stderr, "tallyctl: %s\n", error);
      return EXIT_FAILED;
    }
    config = &loaded;
  }
  int status = EXIT_FAILED;
  if (!config->key_set) {
    fprintf(stderr, "tallyctl: producer-key: the config has no ingest.key\n");
  } else {
    uint8_t key[TALLY_KEY_SIZE];
    tally_wire_producer_key(config->key, producer, key);
    if (write_key_file(out, key) == 0) {
      status = EXIT_OK;
      if (!config->producer_keys_derived) {
        fprintf(stderr, "tallyctl: producer-key: note: ingest.producer_keys is shared, so tallyd "
          "checks ingest.key, not this key, until it is derived\n");
      }
    }
    sodium_memzero(key, sizeof key);
  }
  sodium_memzero(&loaded, sizeof loaded);
  return status;
}
