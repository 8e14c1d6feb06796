/*
 * config_keys.c — the config keys' names (section and key, as written in the
 * file), how an error is recorded (the first one wins, one line naming the
 * key or the line), and the primitives every value parser uses: decimal
 * numbers within a range, strings without control bytes, IPv4 addresses.
 * Inputs echoed in errors are cut to TALLY_CONFIG_ECHO_LEN_MAX printable bytes.
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

static const char *const section_names[] = {"eal", "node", "ingest", "store", "dataplane",
  "control", "cluster", "graphite"};

/* ---- Keys ------------------------------------------------------------------ */

static const struct config_key_name key_names[KEY_COUNT] = {
  [KEY_EAL_ARGS] = {"eal", "args"},
  [KEY_NODE_IPV4] = {"node", "ipv4"},
  [KEY_NODE_DEMO] = {"node", "demo"},
  [KEY_INGEST_STATSD_PORT] = {"ingest", "statsd_port"},
  [KEY_INGEST_BINARY_PORT] = {"ingest", "binary_port"},
  [KEY_INGEST_KEY] = {"ingest", "key"},
  [KEY_INGEST_PRODUCER_KEYS] = {"ingest", "producer_keys"},
  [KEY_INGEST_STATSD_TAGS] = {"ingest", "statsd_tags"},
  [KEY_INGEST_STATSD_TAGS_ALLOW] = {"ingest", "statsd_tags_allow"},
  [KEY_INGEST_STATSD_COUNTERS_PERCENT] = {"ingest", "statsd_counters_percent"},
  [KEY_INGEST_STATSD_WRITES_RELIABLE] = {"ingest", "statsd_writes_reliable"},
  [KEY_INGEST_STATSD_SOURCE_RATE] = {"ingest", "statsd_source_rate"},
  [KEY_INGEST_STATSD_SOURCE_BURST] = {"ingest", "statsd_source_burst"},
  [KEY_INGEST_STATSD_ALLOW_CIDRS] = {"ingest", "statsd_allow_cidrs"},
  [KEY_STORE_PATH] = {"store", "path"},
  [KEY_STORE_COUNTERS_MAX] = {"store", "counters_max"},
  [KEY_STORE_PRODUCERS_MAX] = {"store", "producers_max"},
  [KEY_STORE_COMMIT_INTERVAL_MS] = {"store", "commit_interval_ms"},
  [KEY_STORE_PERSIST] = {"store", "persist"},
  [KEY_STORE_LOG_DIR] = {"store", "log_dir"},
  [KEY_STORE_LOG_GROUP_BYTES] = {"store", "log_group_bytes"},
  [KEY_STORE_LOG_SEGMENT_BYTES] = {"store", "log_segment_bytes"},
  [KEY_STORE_CHECKPOINT_INTERVAL_MS] = {"store", "checkpoint_interval_ms"},
  [KEY_DATAPLANE_MBUFS] = {"dataplane", "mbufs"},
  [KEY_DATAPLANE_IDLE_SLEEP_US] = {"dataplane", "idle_sleep_us"},
  [KEY_DATAPLANE_STATSD_PER_POLL] = {"dataplane", "statsd_per_poll"},
  [KEY_DATAPLANE_RELIABLE_PER_POLL] = {"dataplane", "reliable_per_poll"},
  [KEY_DATAPLANE_CONTROL_PER_POLL] = {"dataplane", "control_per_poll"},
  [KEY_CONTROL_SOCKET] = {"control", "socket"},
  [KEY_CONTROL_HTTP] = {"control", "http"},
  [KEY_CONTROL_ADMIN_GROUP] = {"control", "admin_group"},
  [KEY_CLUSTER_NODE_ID] = {"cluster", "node_id"},
  [KEY_CLUSTER_NODES] = {"cluster", "nodes"},
  [KEY_CLUSTER_WRITE_QUORUM] = {"cluster", "write_quorum"},
  [KEY_CLUSTER_KEY] = {"cluster", "key"},
  [KEY_CLUSTER_HEARTBEAT_INTERVAL_MS] = {"cluster", "heartbeat_interval_ms"},
  [KEY_CLUSTER_REPLICATION_INTERVAL_MS] = {"cluster", "replication_interval_ms"},
  [KEY_CLUSTER_SUSPECT_PHI] = {"cluster", "suspect_phi"},
  [KEY_CLUSTER_DOWN_PHI] = {"cluster", "down_phi"},
  [KEY_CLUSTER_FAULT_DELAY_MS] = {"cluster", "fault_delay_ms"},
  [KEY_CLUSTER_FAULT_JITTER_MS] = {"cluster", "fault_jitter_ms"},
  [KEY_CLUSTER_FAULT_LOSS_PERMILLE] = {"cluster", "fault_loss_permille"},
  [KEY_GRAPHITE_ADDRESS] = {"graphite", "address"},
  [KEY_GRAPHITE_INTERVAL_MS] = {"graphite", "interval_ms"},
  [KEY_GRAPHITE_PREFIX] = {"graphite", "prefix"},
  [KEY_GRAPHITE_BUFFER_BYTES] = {"graphite", "buffer_bytes"},
};

const struct config_key_name *config_key_name(enum config_key key) {
  assert(key < KEY_COUNT);
  assert(key_names[key].name != NULL);
  return &key_names[key];
}

bool config_section_known(const char *name, size_t length) {
  assert(name != NULL);
  size_t count = sizeof(section_names) / sizeof(section_names[0]);
  for (size_t i = 0; i < count; i++) {
    if (strlen(section_names[i]) == length && memcmp(section_names[i], name, length) == 0) {
      return true;
    }
  }
  return false;
}

enum config_key config_key_find(const char *section, const char *name) {
  assert(section != NULL);
  assert(name != NULL);
  for (int key = 0; key < KEY_COUNT; key++) {
    if (strcmp(key_names[key].section, section) == 0 && strcmp(key_names[key].name, name) == 0) {
      return (enum config_key)key;
    }
  }
  return KEY_COUNT;
}

/* ---- Errors --------------------------------------------------------------- */

/* Copies input into out for an error message: printable ASCII only, cut short. */
void config_echo(char out[TALLY_CONFIG_ECHO_LEN_MAX + 4], const char *input) {
  assert(out != NULL);
  assert(input != NULL);
  size_t length = strnlen(input, TALLY_CONFIG_ECHO_LEN_MAX + 1);
  bool cut = length > TALLY_CONFIG_ECHO_LEN_MAX;
  if (cut) length = TALLY_CONFIG_ECHO_LEN_MAX;
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)input[i];
    out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (cut) {
    memcpy(out + length, "...", 3);
    length += 3;
  }
  out[length] = '\0';
}

/* Writes the message after the prefix already in state->error (prefix bytes long). */
__attribute__((format(printf, 3, 0)))
static void error_finish(struct parse_state *state, int prefix, const char *format,
  va_list arguments) {
  assert(state->failed);
  assert(prefix > 0);
  if ((size_t)prefix >= state->error_size) return;
  vsnprintf(state->error + prefix, state->error_size - (size_t)prefix, format, arguments);
}

/* Records the first error: "config: <section>.<name>: <what>". Returns 0 for inih. */
__attribute__((format(printf, 4, 5)))
int config_fail_key(struct parse_state *state, const char *section, const char *name,
  const char *format, ...) {
  assert(state != NULL);
  assert(format != NULL);
  if (state->failed) return 0;
  state->failed = true;
  state->error_line = state->line_number;
  int prefix = snprintf(state->error, state->error_size, "config: %s.%s: ", section, name);
  va_list arguments;
  va_start(arguments, format);
  error_finish(state, prefix, format, arguments);
  va_end(arguments);
  return 0;
}

/* Records the first error: "config: line N: <what>". */
__attribute__((format(printf, 3, 4)))
void config_fail_line(struct parse_state *state, int line_number, const char *format, ...) {
  assert(state != NULL);
  assert(line_number > 0);
  if (state->failed) return;
  state->failed = true;
  state->error_line = line_number;
  int prefix = snprintf(state->error, state->error_size, "config: line %d: ", line_number);
  va_list arguments;
  va_start(arguments, format);
  error_finish(state, prefix, format, arguments);
  va_end(arguments);
}

int config_fail(struct parse_state *state, enum config_key key, const char *what) {
  const struct config_key_name *spec = config_key_name(key);
  return config_fail_key(state, spec->section, spec->name, "%s", what);
}

/* ---- Primitives ----------------------------------------------------------- */

bool config_has_control_char(const char *value) {
  assert(value != NULL);
  size_t length = strlen(value);
  assert(length < INT32_MAX);
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool config_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '\n';
}

/*
 * Decimal digits only, at least one: no sign, no prefix, no junk. A number
 * above UINT32_MAX stays above it (it stops growing), never wraps.
 */
bool config_decimal_parse(const char *text, size_t length, uint64_t *out) {
  assert(text != NULL);
  assert(out != NULL);
  uint64_t number = 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < '0' || text[i] > '9') return false;
    if (number <= UINT32_MAX) number = number * 10u + (uint64_t)(text[i] - '0');
  }
  *out = number;
  return length > 0;
}

int config_parse_uint(struct parse_state *state, enum config_key key, const char *value,
  uint32_t minimum, uint32_t maximum, uint32_t *out) {
  assert(minimum <= maximum);
  assert(out != NULL);
  const struct config_key_name *spec = config_key_name(key);
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  uint64_t number = 0;
  if (!config_decimal_parse(value, strlen(value), &number)) {
    return config_fail_key(state, spec->section, spec->name, "'%s' is not a decimal number", shown);
  }
  if (number < minimum) {
    return config_fail_key(state, spec->section, spec->name, "%s is below the minimum %u", shown,
      minimum);
  }
  if (number > maximum) {
    return config_fail_key(state, spec->section, spec->name, "%s is above the maximum %u", shown,
      maximum);
  }
  *out = (uint32_t)number;
  return 1;
}

int config_parse_string(struct parse_state *state, enum config_key key, const char *value,
  char *out, size_t length_max) {
  assert(out != NULL);
  assert(length_max > 0);
  const struct config_key_name *spec = config_key_name(key);
  size_t length = strnlen(value, length_max + 1);
  if (length > length_max) {
    return config_fail_key(state, spec->section, spec->name, "longer than %zu bytes", length_max);
  }
  if (config_has_control_char(value)) {
    return config_fail(state, key, "contains a control character");
  }
  memcpy(out, value, length);
  out[length] = '\0';
  return 1;
}

/* One of names[0..count); the error lists them all: "'x' is not one of a, b, c". */
int config_parse_choice(struct parse_state *state, enum config_key key, const char *value,
  const char *const *names, size_t count, size_t *chosen) {
  assert(names != NULL && count >= 2 && chosen != NULL);
  for (size_t i = 0; i < count; i++) {
    if (strcmp(value, names[i]) == 0) {
      *chosen = i;
      return 1;
    }
  }
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  char listed[128] = "";
  for (size_t i = 0; i < count; i++) {
    size_t used = strlen(listed);
    snprintf(listed + used, sizeof listed - used, "%s%s", i == 0 ? "" : ", ", names[i]);
  }
  const struct config_key_name *spec = config_key_name(key);
  return config_fail_key(state, spec->section, spec->name, "'%s' is not one of %s", shown,
    listed);
}

/* Strict dotted quad (inet_pton); *address in host byte order. */
bool config_ipv4_parse(const char *text, uint32_t *address) {
  assert(text != NULL);
  assert(address != NULL);
  struct in_addr parsed;
  if (inet_pton(AF_INET, text, &parsed) != 1) return false;
  *address = ntohl(parsed.s_addr);
  return true;
}

/* Not 0.0.0.0, not 255.255.255.255, not multicast (224.0.0.0/4). */
bool config_ipv4_unicast(uint32_t address) {
  bool multicast = (address >> 28) == 0xeu;
  return address != 0 && address != UINT32_MAX && !multicast;
}
