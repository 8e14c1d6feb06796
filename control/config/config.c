/*
 * config.c — tallyd's configuration: the defaults, parsing a text (through
 * config_reader.c and libinih), checking what spans keys, and loading a file.
 * Every key is checked against the ranges in limits.h; the keys and their
 * values are parsed in config_values.c and config_cluster.c, eal.args is
 * split in config_eal.c.
 *
 * Everything is validated before anything is created: the loader itself
 * creates and writes nothing, and on any error the caller's struct is left
 * untouched and one line names what is wrong ("config: store.path: ...").
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 * (Reading the file is the only I/O.)
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "config_internal.h"

/* Defaults of the [cluster] keys (the ranges are in limits.h). */
#define CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT 100u
#define CONFIG_REPLICATION_INTERVAL_MS_DEFAULT 5u
#define CONFIG_SUSPECT_PHI_DEFAULT 5.0
#define CONFIG_DOWN_PHI_DEFAULT 8.0

static_assert(TALLY_SOCKET_PATH_LEN_MAX == sizeof(((struct sockaddr_un *)0)->sun_path) - 1u,
  "a control socket path fits sockaddr_un.sun_path with its NUL");
static_assert(TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MIN <= CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT,
  "range");
static_assert(CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT <= TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MAX,
  "range");
static_assert(TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN <= CONFIG_REPLICATION_INTERVAL_MS_DEFAULT,
  "range");
static_assert(CONFIG_REPLICATION_INTERVAL_MS_DEFAULT <= TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MAX,
  "range");
/* The phi defaults' relations (doubles: no static_assert) hold by config_cluster_assert_valid. */

__attribute__((format(printf, 3, 4)))
static void error_write(char *error, size_t error_size, const char *format, ...) {
  assert(error != NULL);
  assert(error_size > 0);
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(error, error_size, format, arguments);
  va_end(arguments);
}

/* ---- Keys ------------------------------------------------------------------ */

/*
 * The keys printed in the source tree: config/local.ini's demo key and the
 * template's two placeholders. Anyone can read them, so they protect nothing;
 * they are accepted only with node.demo = true.
 */
static const char public_keys[][TALLY_KEY_SIZE + 1] = {
  "tally demo key - not a secret!!!",
  "template key: REPLACE before use",
  "cluster key: REPLACE before use!",
};

static bool key_public(const uint8_t key[TALLY_KEY_SIZE]) {
  for (size_t i = 0; i < sizeof(public_keys) / sizeof(public_keys[0]); i++) {
    if (memcmp(key, public_keys[i], TALLY_KEY_SIZE) == 0) return true;
  }
  return false;
}

/* Whether the config holds a key that is a secret (not one of the public ones). */
static bool config_holds_secret(const struct tally_config *config) {
  return (config->key_set && !key_public(config->key)) ||
    (config->cluster.enabled && !key_public(config->cluster.key));
}

/*
 * ingest.key is held by every producer; were it cluster.key too, any producer
 * could forge replication. A public key outside the demo protects nothing.
 */
static int config_validate_keys(struct parse_state *state) {
  const struct tally_config *config = &state->config;
  if (config->key_set && config->cluster.enabled &&
      sodium_memcmp(config->key, config->cluster.key, TALLY_KEY_SIZE) == 0) {
    return config_fail(state, KEY_CLUSTER_KEY, "the same as ingest.key (every producer holds "
      "that one): give the cluster its own key");
  }
  if (config->demo) return 1;
  if (config->key_set && key_public(config->key)) {
    return config_fail(state, KEY_INGEST_KEY, "the public demo or template key (only with "
      "node.demo = true): generate one with 'openssl rand -hex 32'");
  }
  if (config->cluster.enabled && key_public(config->cluster.key)) {
    return config_fail(state, KEY_CLUSTER_KEY, "the public template key (only with "
      "node.demo = true): generate one with 'openssl rand -hex 32'");
  }
  return 1;
}

/* ---- Validate ------------------------------------------------------------- */

/* store.persist = log and its keys (the log's own keys are checked even without it). */
static int config_validate_log(struct parse_state *state) {
  const struct tally_config *config = &state->config;
  if (config->log_segment_bytes % TALLY_WAL_RECORD_ALIGN != 0) {
    return config_fail_key(state, "store", "log_segment_bytes", "%u is not a multiple of %u",
      config->log_segment_bytes, TALLY_WAL_RECORD_ALIGN);
  }
  if (config->log_group_bytes > config->log_segment_bytes) {
    return config_fail_key(state, "store", "log_group_bytes",
      "%u is larger than store.log_segment_bytes (%u)", config->log_group_bytes,
      config->log_segment_bytes);
  }
  if (config->checkpoint_interval_ms != 0 &&
    config->checkpoint_interval_ms < TALLY_CHECKPOINT_INTERVAL_MS_MIN) {
    return config_fail_key(state, "store", "checkpoint_interval_ms",
      "%u is below %u (0 turns checkpoints off)", config->checkpoint_interval_ms,
      TALLY_CHECKPOINT_INTERVAL_MS_MIN);
  }
  if (config->persist_mode != TALLY_PERSIST_LOG) return 1;
  if (!(state->keys_seen & (1ull << KEY_STORE_LOG_DIR))) {
    return config_fail_key(state, "store", "log_dir", "required with store.persist = log");
  }
  if (state->cluster_seen && config->checkpoint_interval_ms == 0) {
    /* A cluster node checkpoints at every start (what the image holds beyond the log). */
    return config_fail_key(state, "store", "checkpoint_interval_ms",
      "0 (no checkpoints) is refused with store.persist = log on a cluster node");
  }
  return 1;
}

/* Checks what spans keys: required keys, ports, the key, EAL argument count, [cluster]. */
static int config_validate(struct parse_state *state) {
  const struct tally_config *config = &state->config;
  assert(!state->failed);
  assert(state->error_line == 0);
  uint32_t argc = 1u + config_eal_args_count(config->eal_args);
  if (argc > TALLY_EAL_ARGC_MAX) {
    return config_fail_key(state, "eal", "args", "%u arguments, at most %u with the program name",
      argc, TALLY_EAL_ARGC_MAX);
  }
  static const enum config_key required[] = {KEY_EAL_ARGS, KEY_NODE_IPV4, KEY_STORE_PATH};
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    if (!(state->keys_seen & (1ull << required[i]))) {
      return config_fail(state, required[i], "required");
    }
  }
  if (config->binary_port != 0 && !config->key_set) {
    return config_fail(state, KEY_INGEST_KEY, "required");
  }
  bool allow_set = (state->keys_seen & (1ull << KEY_INGEST_STATSD_TAGS_ALLOW)) != 0;
  if (config->statsd_tags.mode == TALLY_TAGS_ALLOW && !allow_set) {
    return config_fail(state, KEY_INGEST_STATSD_TAGS_ALLOW, "required with statsd_tags = allow");
  }
  if (config->statsd_tags.mode != TALLY_TAGS_ALLOW && allow_set) {
    return config_fail(state, KEY_INGEST_STATSD_TAGS_ALLOW,
      "set, but ingest.statsd_tags is not allow");
  }
  if (config->statsd_port != 0 && config->statsd_port == config->binary_port) {
    return config_fail_key(state, "ingest", "binary_port", "%u is the same as ingest.statsd_port",
      (unsigned)config->binary_port);
  }
  return config_validate_log(state) && config_cluster_validate(state) &&
    config_graphite_validate(state) && config_validate_keys(state);
}

/* What every successfully parsed config holds. */
static void config_assert_valid(const struct tally_config *config) {
  assert(strnlen(config->eal_args, TALLY_EAL_ARGS_LEN_MAX) < TALLY_EAL_ARGS_LEN_MAX);
  assert(strnlen(config->store_path, TALLY_PATH_MAX) < TALLY_PATH_MAX);
  assert(strnlen(config->socket_path, TALLY_PATH_MAX) <= TALLY_SOCKET_PATH_LEN_MAX);
  assert(config->store_path[0] != '\0');
  assert(config->counters_max >= TALLY_COUNTERS_MIN);
  assert(config->counters_max <= TALLY_COUNTERS_MAX);
  assert(config->producers_max >= TALLY_PRODUCERS_MIN);
  assert(config->producers_max <= TALLY_PRODUCERS_MAX);
  assert(config->commit_interval_ms >= TALLY_COMMIT_INTERVAL_MS_MIN);
  assert(config->commit_interval_ms <= TALLY_COMMIT_INTERVAL_MS_MAX);
  assert(config->mbufs >= TALLY_MBUFS_MIN);
  assert(config->mbufs <= TALLY_MBUFS_MAX);
  assert(config->idle_sleep_us <= TALLY_IDLE_SLEEP_US_MAX);
  assert(config->statsd_per_poll >= 1 && config->statsd_per_poll <= TALLY_CLASS_PER_POLL_MAX);
  assert(config->reliable_per_poll >= 1 && config->reliable_per_poll <= TALLY_CLASS_PER_POLL_MAX);
  assert(config->control_per_poll >= 1 && config->control_per_poll <= TALLY_CLASS_PER_POLL_MAX);
  assert(config->statsd_counters_percent <= 100u);
  assert(config->statsd_policy.source_rate <= TALLY_STATSD_SOURCE_RATE_MAX);
  assert(config->statsd_policy.source_burst >= 1);
  assert(config->statsd_policy.source_burst <= TALLY_STATSD_SOURCE_BURST_MAX);
  assert(config->statsd_policy.allow_count <= TALLY_STATSD_ALLOW_CIDRS_MAX);
  assert(config->persist_mode <= TALLY_PERSIST_LOG);
  assert(config->persist_mode != TALLY_PERSIST_LOG || config->log_dir[0] != '\0');
  assert(config->log_group_bytes <= config->log_segment_bytes);
  assert(config->log_segment_bytes % TALLY_WAL_RECORD_ALIGN == 0);
  assert(config->binary_port == 0 || config->key_set);
  assert(config->statsd_tags.mode <= TALLY_TAGS_ALLOW);
  assert((config->statsd_tags.mode == TALLY_TAGS_ALLOW) == (config->statsd_tags.allow_count > 0));
  assert(config->statsd_tags.allow_count <= TALLY_STATSD_TAGS_ALLOW_MAX);
  config_cluster_assert_valid(&config->cluster);
  assert(!config->graphite.enabled || config->graphite.port != 0);
  assert(config->graphite.interval_ms >= TALLY_GRAPHITE_INTERVAL_MS_MIN);
  assert(config->graphite.interval_ms <= TALLY_GRAPHITE_INTERVAL_MS_MAX);
  assert(config->graphite.buffer_bytes >= TALLY_GRAPHITE_BUFFER_BYTES_MIN);
  assert(config->graphite.buffer_bytes <= TALLY_GRAPHITE_BUFFER_BYTES_MAX);
  assert(strnlen(config->graphite.prefix, sizeof config->graphite.prefix) <=
    TALLY_GRAPHITE_PREFIX_LEN_MAX);
}

/* ---- Defaults and parse ----------------------------------------------------- */

void tally_config_defaults(struct tally_config *config) {
  assert(config != NULL);
  memset(config, 0, sizeof(*config));
  config->statsd_port = 8125;
  config->binary_port = 8126;
  config->counters_max = 65536;
  config->producers_max = 4096;
  config->commit_interval_ms = 2;
  config->persist_mode = TALLY_PERSIST_AUTO;
  config->log_group_bytes = TALLY_WAL_GROUP_SIZE_DEFAULT;
  config->log_segment_bytes = TALLY_WAL_SEGMENT_SIZE_DEFAULT;
  config->checkpoint_interval_ms = TALLY_CHECKPOINT_INTERVAL_MS_DEFAULT;
  config->mbufs = 16383;
  config->idle_sleep_us = 0; /* a NIC host polls flat out */
  config->statsd_per_poll = TALLY_STATSD_PER_POLL_DEFAULT;
  config->reliable_per_poll = TALLY_RELIABLE_PER_POLL_DEFAULT;
  config->control_per_poll = TALLY_CONTROL_PER_POLL_DEFAULT;
  config->statsd_counters_percent = TALLY_STATSD_COUNTERS_PERCENT_DEFAULT;
  config->statsd_writes_reliable = false;
  config->statsd_policy.source_burst = TALLY_STATSD_SOURCE_BURST_DEFAULT; /* rate 0: off */
  snprintf(config->socket_path, sizeof(config->socket_path), "%s", "/run/tally/tally.sock");
  config->http_ipv4 = 0x7f000001u; /* 127.0.0.1 */
  config->http_port = 9125;
  /* No [cluster]: this node alone, id 1, its own write quorum. */
  struct tally_cluster_config *cluster = &config->cluster;
  cluster->enabled = false;
  cluster->node_id = 1;
  cluster->node_count = 1;
  cluster->nodes[0].id = 1;
  cluster->write_quorum = 1;
  cluster->heartbeat_interval_ms = CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT;
  cluster->replication_interval_ms = CONFIG_REPLICATION_INTERVAL_MS_DEFAULT;
  cluster->suspect_phi = CONFIG_SUSPECT_PHI_DEFAULT;
  cluster->down_phi = CONFIG_DOWN_PHI_DEFAULT;
  cluster->fault_delay_ms = 0; /* fault injection off */
  cluster->fault_jitter_ms = 0;
  cluster->fault_loss_permille = 0;
  /* No [graphite]: no push. */
  config->graphite.enabled = false;
  config->graphite.interval_ms = TALLY_GRAPHITE_INTERVAL_MS_DEFAULT;
  config->graphite.buffer_bytes = TALLY_GRAPHITE_BUFFER_BYTES_DEFAULT;
  assert(config->mbufs >= TALLY_MBUFS_MIN);
  assert(config->counters_max >= TALLY_COUNTERS_MIN);
}

int tally_config_parse(const char *text, size_t text_size, struct tally_config *config,
  char *error, size_t error_size) {
  assert(text != NULL || text_size == 0);
  assert(config != NULL);
  assert(error != NULL);
  assert(error_size > 0);
  error[0] = '\0';
  /* One trailing NUL, as from sizeof of a string literal, is not part of the text. */
  if (text_size > 0 && text[text_size - 1] == '\0') text_size--;
  if (text_size > TALLY_CONFIG_TEXT_SIZE_MAX) {
    error_write(error, error_size, "config: config too large: %zu bytes, at most %u", text_size,
      TALLY_CONFIG_TEXT_SIZE_MAX);
    return -1;
  }
  struct parse_state state;
  memset(&state, 0, sizeof(state));
  tally_config_defaults(&state.config);
  state.text = text == NULL ? "" : text;
  state.text_size = text_size;
  state.error = error;
  state.error_size = error_size;
  int result = ini_parse_stream(config_reader, &state, config_handler, &state);
  if (result > 0 && (!state.failed || result < state.error_line)) config_fail_syntax(&state,
    result);
  if (result < 0 && !state.failed) {
    error_write(error, error_size, "config: the INI parser failed (%d)", result);
    state.failed = true;
  }
  if (!state.failed) config_validate(&state);
  if (!state.failed) {
    config_assert_valid(&state.config);
    *config = state.config;
  }
  bool failed = state.failed;
  explicit_bzero(&state, sizeof(state)); /* it held the key */
  assert(failed || error[0] == '\0');
  return failed ? -1 : 0;
}

/* ---- Load ----------------------------------------------------------------- */

/* Not an errno: the path names something other than a regular file. */
#define FILE_NOT_REGULAR (-1)

/* Reads at most size bytes; a larger file reads as size + 1 (too large). Its mode in *mode. */
static int file_read(const char *path, char *buffer, size_t size, size_t *read_size,
  mode_t *mode) {
  assert(buffer != NULL);
  assert(size > 0);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return errno;
  struct stat status;
  if (fstat(fd, &status) != 0) {
    int saved = errno;
    close(fd);
    return saved;
  }
  if (!S_ISREG(status.st_mode)) {
    close(fd);
    return FILE_NOT_REGULAR;
  }
  *mode = status.st_mode;
  size_t done = 0;
  /* Bounded: each pass reads at least one byte, or ends, or is an EINTR (capped). */
  uint32_t interrupts = 0;
  while (done <= size) {
    ssize_t got = read(fd, buffer + done, size + 1u - done);
    if (got < 0 && errno == EINTR && interrupts++ < TALLY_CONFIG_READ_INTERRUPTS_MAX) continue;
    if (got < 0) {
      int saved = errno;
      close(fd);
      return saved;
    }
    if (got == 0) break;
    done += (size_t)got;
  }
  close(fd);
  assert(done <= size + 1u);
  *read_size = done;
  return 0;
}

int tally_config_load(const char *path, struct tally_config *config, char *error,
  size_t error_size) {
  assert(path != NULL);
  assert(config != NULL);
  assert(error != NULL);
  assert(error_size > 0);
  char *text = malloc(TALLY_CONFIG_TEXT_SIZE_MAX + 1u);
  if (text == NULL) {
    error_write(error, error_size, "%s: cannot read: %s", path, strerror(ENOMEM));
    return -1;
  }
  size_t text_size = 0;
  mode_t mode = 0;
  int read_error = file_read(path, text, TALLY_CONFIG_TEXT_SIZE_MAX, &text_size, &mode);
  if (read_error != 0) {
    error_write(error, error_size, "%s: cannot read: %s", path,
      read_error == FILE_NOT_REGULAR ? "not a regular file" : strerror(read_error));
    free(text);
    return -1;
  }
  if (text_size > TALLY_CONFIG_TEXT_SIZE_MAX) {
    error_write(error, error_size, "%s: config: config too large: more than %u bytes", path,
      TALLY_CONFIG_TEXT_SIZE_MAX);
    explicit_bzero(text, text_size);
    free(text);
    return -1;
  }
  char message[512];
  struct tally_config parsed;
  int result = tally_config_parse(text, text_size, &parsed, message, sizeof(message));
  explicit_bzero(text, text_size);
  free(text);
  if (result != 0) {
    error_write(error, error_size, "%s: %s", path, message);
    return -1;
  }
  if ((mode & (S_IRWXG | S_IRWXO)) != 0 && config_holds_secret(&parsed)) {
    explicit_bzero(&parsed, sizeof(parsed));
    error_write(error, error_size, "%s: holds keys but group or others have access (mode %04o): "
      "chmod 600 %s", path, (unsigned)(mode & 07777), path);
    return -1;
  }
  *config = parsed;
  explicit_bzero(&parsed, sizeof(parsed));
  error[0] = '\0';
  return 0;
}
