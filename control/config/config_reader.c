/*
 * config_reader.c — feeding the text to libinih and taking its keys: the
 * reader (one line per call over the caller's buffer, so the text need not be
 * NUL-terminated) sees what inih does not report: the line number, lines
 * longer than inih's line buffer (it would silently split them), NUL bytes,
 * unknown section headers even with no keys, and indented continuation lines
 * (inih hands those to the handler as the previous key again; only eal.args
 * and cluster.nodes may span lines). The handler finds the key, refuses
 * duplicates and dispatches to its value parser through one table.
 * Syntax errors inih finds are described here too.
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

/* Each key's value parser. */
static const config_parse_fn key_parsers[KEY_COUNT] = {
  [KEY_EAL_ARGS] = config_parse_eal_args,
  [KEY_NODE_IPV4] = config_parse_node_ipv4,
  [KEY_NODE_DEMO] = config_parse_bool,
  [KEY_INGEST_STATSD_PORT] = config_parse_port,
  [KEY_INGEST_BINARY_PORT] = config_parse_port,
  [KEY_INGEST_KEY] = config_parse_key,
  [KEY_INGEST_PRODUCER_KEYS] = config_parse_producer_keys,
  [KEY_INGEST_STATSD_TAGS] = config_parse_statsd_tags,
  [KEY_INGEST_STATSD_TAGS_ALLOW] = config_parse_statsd_tags_allow,
  [KEY_INGEST_STATSD_COUNTERS_PERCENT] = config_parse_number,
  [KEY_INGEST_STATSD_WRITES_RELIABLE] = config_parse_bool,
  [KEY_INGEST_STATSD_SOURCE_RATE] = config_parse_statsd_source,
  [KEY_INGEST_STATSD_SOURCE_BURST] = config_parse_statsd_source,
  [KEY_INGEST_STATSD_ALLOW_CIDRS] = config_parse_statsd_allow_cidrs,
  [KEY_STORE_PATH] = config_parse_store_path,
  [KEY_STORE_COUNTERS_MAX] = config_parse_number,
  [KEY_STORE_PRODUCERS_MAX] = config_parse_number,
  [KEY_STORE_COMMIT_INTERVAL_MS] = config_parse_number,
  [KEY_STORE_PERSIST] = config_parse_store_persist,
  [KEY_STORE_LOG_DIR] = config_parse_store_log_dir,
  [KEY_STORE_LOG_GROUP_BYTES] = config_parse_number,
  [KEY_STORE_LOG_SEGMENT_BYTES] = config_parse_number,
  [KEY_STORE_CHECKPOINT_INTERVAL_MS] = config_parse_number,
  [KEY_DATAPLANE_MBUFS] = config_parse_number,
  [KEY_DATAPLANE_IDLE_SLEEP_US] = config_parse_number,
  [KEY_DATAPLANE_STATSD_PER_POLL] = config_parse_number,
  [KEY_DATAPLANE_RELIABLE_PER_POLL] = config_parse_number,
  [KEY_DATAPLANE_CONTROL_PER_POLL] = config_parse_number,
  [KEY_CONTROL_SOCKET] = config_parse_control_socket,
  [KEY_CONTROL_HTTP] = config_parse_control_http,
  [KEY_CONTROL_ADMIN_GROUP] = config_parse_control_admin_group,
  [KEY_CLUSTER_NODE_ID] = config_parse_cluster_node_id,
  [KEY_CLUSTER_NODES] = config_parse_cluster_nodes,
  [KEY_CLUSTER_WRITE_QUORUM] = config_parse_number,
  [KEY_CLUSTER_KEY] = config_parse_key,
  [KEY_CLUSTER_HEARTBEAT_INTERVAL_MS] = config_parse_number,
  [KEY_CLUSTER_REPLICATION_INTERVAL_MS] = config_parse_number,
  [KEY_CLUSTER_SUSPECT_PHI] = config_parse_cluster_phi,
  [KEY_CLUSTER_DOWN_PHI] = config_parse_cluster_phi,
  [KEY_CLUSTER_FAULT_DELAY_MS] = config_parse_number,
  [KEY_CLUSTER_FAULT_JITTER_MS] = config_parse_number,
  [KEY_CLUSTER_FAULT_LOSS_PERMILLE] = config_parse_number,
  [KEY_GRAPHITE_ADDRESS] = config_parse_graphite_address,
  [KEY_GRAPHITE_INTERVAL_MS] = config_parse_number,
  [KEY_GRAPHITE_PREFIX] = config_parse_graphite_prefix,
  [KEY_GRAPHITE_BUFFER_BYTES] = config_parse_number,
};

/*
 * Mirrors inih's section-header rule (first non-space byte '[', name up to
 * ']', untrimmed) to catch unknown sections even when they hold no key.
 * Returns false once it has recorded an error.
 */
static bool reader_check_section(struct parse_state *state, const char *line, size_t length) {
  assert(line != NULL);
  assert(length <= TALLY_CONFIG_TEXT_SIZE_MAX);
  size_t i = 0;
  if (state->line_number == 1 && length >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) i = 3;
  while (i < length && config_is_space(line[i])) i++;
  if (i == length || line[i] != '[') return true;
  /* inih takes an indented line after a key as a continuation, even "  [x]". */
  if (state->line_indented && state->key_previous_valid) return true;
  state->key_previous_valid = false;
  const char *name = line + i + 1;
  const char *end = memchr(name, ']', length - i - 1u);
  if (end == NULL) return true; /* inih reports it as a syntax error */
  size_t name_length = (size_t)(end - name);
  if (config_section_known(name, name_length)) {
    if (name_length == 7u && memcmp(name, "cluster", 7u) == 0) state->cluster_seen = true;
    if (name_length == 8u && memcmp(name, "graphite", 8u) == 0) state->graphite_seen = true;
    return true;
  }
  char copy[TALLY_CONFIG_ECHO_LEN_MAX + 1];
  size_t copy_length =
    name_length < TALLY_CONFIG_ECHO_LEN_MAX ? name_length : TALLY_CONFIG_ECHO_LEN_MAX;
  memcpy(copy, name, copy_length);
  copy[copy_length] = '\0';
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, copy);
  config_fail_line(state, state->line_number, "unknown section [%s]", shown);
  return false;
}

/* fgets() over the text, one line per call, refusing lines inih would split. */
char *config_reader(char *line, int line_size, void *stream) {
  struct parse_state *state = stream;
  assert(line_size > 2);
  assert(state->offset <= state->text_size);
  if (state->failed || state->offset == state->text_size) return NULL;
  const char *start = state->text + state->offset;
  size_t remaining = state->text_size - state->offset;
  const char *newline = memchr(start, '\n', remaining);
  size_t length = newline == NULL ? remaining : (size_t)(newline - start) + 1u;
  size_t content = newline == NULL ? length : length - 1u;
  state->line_number++;
  if (content > (size_t)line_size - 2u) {
    config_fail_line(state, state->line_number, "longer than %d bytes", line_size - 2);
    return NULL;
  }
  if (memchr(start, '\0', length) != NULL) {
    config_fail_line(state, state->line_number, "contains a NUL byte");
    return NULL;
  }
  memcpy(line, start, length);
  line[length] = '\0';
  state->offset += length;
  state->line_indented = length > 0 && config_is_space(line[0]) && line[0] != '\n';
  if (!reader_check_section(state, line, length)) return NULL;
  return line;
}

/* Cuts an inline comment (';' after whitespace) that inih r55 leaves in continuations. */
static size_t continuation_trim(const char *value) {
  size_t length = strnlen(value, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  for (size_t i = 1; i < length; i++) {
    if (value[i] == ';' && config_is_space(value[i - 1])) {
      length = i;
      break;
    }
  }
  while (length > 0 && config_is_space(value[length - 1])) length--;
  return length;
}

/*
 * An indented line after eal.args (appended with one space) or after
 * cluster.nodes (more entries).
 */
static int config_continue(struct parse_state *state, enum config_key key, const char *value) {
  assert(state->key_previous_valid);
  assert(state->keys_seen & (1ull << key));
  if (key != KEY_EAL_ARGS && key != KEY_CLUSTER_NODES) {
    return config_fail(state, key, "an indented line continues the previous value, and only "
                                   "eal.args and cluster.nodes may span lines");
  }
  size_t length = continuation_trim(value);
  if (length == 0) return 1;
  if (key == KEY_CLUSTER_NODES) return config_nodes_append(state, value, length);
  char *args = state->config.eal_args;
  size_t used = strnlen(args, TALLY_EAL_ARGS_LEN_MAX);
  assert(used < TALLY_EAL_ARGS_LEN_MAX);
  if (used + 1u + length > TALLY_EAL_ARGS_LEN_MAX - 1u) {
    return config_fail_key(state, "eal", "args", "longer than %u bytes",
      TALLY_EAL_ARGS_LEN_MAX - 1u);
  }
  char piece[TALLY_EAL_ARGS_LEN_MAX];
  memcpy(piece, value, length);
  piece[length] = '\0';
  if (config_has_control_char(piece)) {
    return config_fail(state, key, "contains a control character");
  }
  args[used] = ' ';
  memcpy(args + used + 1u, piece, length + 1u);
  return 1;
}

int config_handler(void *user, const char *section, const char *name,
  const char *value) {
  struct parse_state *state = user;
  assert(state != NULL);
  assert(section != NULL);
  assert(name != NULL);
  assert(value != NULL);
  if (state->failed) return 0;
  enum config_key key = config_key_find(section, name);
  if (key == KEY_COUNT && section[0] == '\0') {
    char name_shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
    config_echo(name_shown, name);
    config_fail_line(state, state->line_number, "key '%s' is outside any section", name_shown);
    return 0;
  }
  if (key == KEY_COUNT) {
    char section_shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
    char name_shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
    config_echo(section_shown, section);
    config_echo(name_shown, name);
    bool known = config_section_known(section, strlen(section));
    return config_fail_key(state, section_shown, name_shown,
      known ? "unknown key" : "unknown section");
  }
  uint64_t bit = 1ull << key;
  if (state->line_indented && state->key_previous_valid && state->key_previous == key) {
    return config_continue(state, key, value);
  }
  if (state->keys_seen & bit) {
    char what[64];
    snprintf(what, sizeof(what), "duplicate (first set on line %d)", state->key_line[key]);
    return config_fail(state, key, what);
  }
  state->keys_seen |= bit;
  state->key_line[key] = state->line_number;
  if (strcmp(section, "cluster") == 0) state->cluster_seen = true; /* the reader saw it too */
  if (strcmp(section, "graphite") == 0) state->graphite_seen = true;
  state->key_previous = key;
  state->key_previous_valid = true;
  if (value[0] == '\0') return config_fail(state, key, "empty value");
  return key_parsers[key](state, key, value);
}

/* Describes the syntax error inih found on line_number. */
void config_fail_syntax(struct parse_state *state, int line_number) {
  assert(line_number > 0);
  assert(line_number <= state->line_number);
  const char *line = state->text;
  const char *end = state->text + state->text_size;
  for (int i = 1; i < line_number; i++) {
    const char *newline = memchr(line, '\n', (size_t)(end - line));
    assert(newline != NULL);
    line = newline + 1;
  }
  while (line < end && config_is_space(*line) && *line != '\n') line++;
  bool section = line < end && *line == '[';
  state->failed = false; /* the syntax error came first: it replaces any later one */
  config_fail_line(state, line_number, "%s",
    section ? "section header without a closing ']'" : "expected 'key = value'");
}
