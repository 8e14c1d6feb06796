/*
 * config_values.c — parsing the values of the single-node sections: [eal]
 * args, [node] ipv4, [ingest] ports, key and statsd tag policy, [store] path, sizes, commit
 * interval and persistence mode, [dataplane] mbufs, [control] socket and
 * HTTP address, [graphite] address and prefix, and every numeric key
 * (ranges from limits.h).
 * Keys are secrets: their errors never echo them.
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

static const char *const persist_names[] = {
  [TALLY_PERSIST_AUTO] = "auto",
  [TALLY_PERSIST_GROUP_COMMIT] = "group_commit",
  [TALLY_PERSIST_PER_BURST] = "per_burst",
  [TALLY_PERSIST_LOG] = "log",
};

int config_parse_eal_args(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_EAL_ARGS);
  assert(value[0] != '\0');
  return config_parse_string(state, key, value, state->config.eal_args,
    TALLY_EAL_ARGS_LEN_MAX - 1u);
}

int config_parse_node_ipv4(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_NODE_IPV4);
  assert(value != NULL);
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  const struct config_key_name *spec = config_key_name(key);
  uint32_t address = 0;
  if (!config_ipv4_parse(value, &address)) {
    return config_fail_key(state, spec->section, spec->name,
      "'%s' is not an IPv4 address (a.b.c.d)",
      shown);
  }
  if (!config_ipv4_unicast(address)) {
    return config_fail_key(state, spec->section, spec->name, "'%s' is not a unicast address",
      shown);
  }
  state->config.ipv4 = address;
  return 1;
}

int config_parse_port(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_INGEST_STATSD_PORT || key == KEY_INGEST_BINARY_PORT);
  assert(value != NULL);
  uint32_t port = 0;
  if (!config_parse_uint(state, key, value, 0, UINT16_MAX, &port)) return 0;
  if (key == KEY_INGEST_STATSD_PORT) state->config.statsd_port = (uint16_t)port;
  if (key == KEY_INGEST_BINARY_PORT) state->config.binary_port = (uint16_t)port;
  return 1;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* ingest.key or cluster.key. A key is a secret: errors never echo it. */
int config_parse_key(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_INGEST_KEY || key == KEY_CLUSTER_KEY);
  assert(value != NULL);
  const struct config_key_name *spec = config_key_name(key);
  uint8_t *out = key == KEY_INGEST_KEY ? state->config.key : state->config.cluster.key;
  size_t length = strnlen(value, 2u * TALLY_KEY_SIZE + 1u);
  if (length != 2u * TALLY_KEY_SIZE) {
    return config_fail_key(state, spec->section, spec->name, "must be %u hex digits, got %s%zu",
      2u * TALLY_KEY_SIZE, length > 2u * TALLY_KEY_SIZE ? "more than " : "",
      length > 2u * TALLY_KEY_SIZE ? (size_t)(2u * TALLY_KEY_SIZE) : length);
  }
  uint8_t bits_any = 0;
  for (size_t i = 0; i < length; i++) {
    int digit = hex_digit(value[i]);
    if (digit < 0) {
      return config_fail_key(state, spec->section, spec->name, "character %zu is not a hex digit",
        i + 1u);
    }
    uint8_t *byte = &out[i / 2u];
    *byte = (i % 2u == 0) ? (uint8_t)(digit << 4) : (uint8_t)(*byte | digit);
    bits_any |= (uint8_t)digit;
  }
  if (bits_any == 0) return config_fail(state, key, "must not be all zeros");
  if (key == KEY_INGEST_KEY) state->config.key_set = true;
  return 1;
}

/* ingest.statsd_tags: keep | drop | allow. */
int config_parse_statsd_tags(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_INGEST_STATSD_TAGS);
  assert(value != NULL);
  static const char *const modes[] = {
    [TALLY_TAGS_KEEP] = "keep", [TALLY_TAGS_DROP] = "drop", [TALLY_TAGS_ALLOW] = "allow" };
  size_t chosen = 0;
  if (!config_parse_choice(state, key, value, modes, sizeof(modes) / sizeof(modes[0]), &chosen)) {
    return 0;
  }
  state->config.statsd_tags.mode = (enum tally_tags_mode)chosen;
  return 1;
}

/* ingest.producer_keys: shared | derived (issue 14, M2). */
int config_parse_producer_keys(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_INGEST_PRODUCER_KEYS);
  assert(value != NULL);
  static const char *const modes[] = { "shared", "derived" };
  size_t chosen = 0;
  if (!config_parse_choice(state, key, value, modes, sizeof(modes) / sizeof(modes[0]), &chosen)) {
    return 0;
  }
  state->config.producer_keys_derived = chosen == 1;
  return 1;
}

/* One allow-list entry [start, end): a tag key, not listed before. */
static int allow_entry(struct parse_state *state, const char *start, const char *end) {
  const struct config_key_name *spec = config_key_name(KEY_INGEST_STATSD_TAGS_ALLOW);
  struct tally_tags_policy *policy = &state->config.statsd_tags;
  size_t length = (size_t)(end - start);
  uint32_t position = policy->allow_count + 1u;
  if (length == 0) {
    return config_fail_key(state, spec->section, spec->name, "entry %u is empty", position);
  }
  if (length > TALLY_TAG_KEY_LEN_MAX) {
    return config_fail_key(state, spec->section, spec->name,
      "entry %u is longer than %u bytes", position, TALLY_TAG_KEY_LEN_MAX);
  }
  for (size_t i = 0; i < length; i++) {
    if (!tally_tag_byte_valid((uint8_t)start[i])) {
      return config_fail_key(state, spec->section, spec->name, "entry %u: byte %zu is not "
        "allowed in a tag key (0x21..0x7e but : | @ # , = { })", position, i + 1u);
    }
  }
  for (uint32_t i = 0; i < policy->allow_count; i++) {
    if (policy->allow_len[i] == length && memcmp(policy->allow[i], start, length) == 0) {
      return config_fail_key(state, spec->section, spec->name, "entry %u repeats entry %u",
        position, i + 1u);
    }
  }
  if (policy->allow_count == TALLY_STATSD_TAGS_ALLOW_MAX) {
    return config_fail_key(state, spec->section, spec->name, "more than %u tag keys",
      TALLY_STATSD_TAGS_ALLOW_MAX);
  }
  memcpy(policy->allow[policy->allow_count], start, length);
  policy->allow_len[policy->allow_count] = (uint8_t)length;
  policy->allow_count++;
  return 1;
}

/* ingest.statsd_tags_allow: tag keys separated by ',' (blanks around them ignored). */
int config_parse_statsd_tags_allow(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_INGEST_STATSD_TAGS_ALLOW);
  assert(value != NULL);
  state->config.statsd_tags.allow_count = 0;
  const char *cursor = value;
  /* Bounded by the value: every pass consumes an entry and its ','. */
  for (;;) {
    const char *comma = strchr(cursor, ',');
    const char *end = comma != NULL ? comma : cursor + strlen(cursor);
    while (cursor < end && config_is_space(*cursor)) cursor++;
    const char *last = end;
    while (last > cursor && config_is_space(last[-1])) last--;
    if (!allow_entry(state, cursor, last)) return 0;
    if (comma == NULL) return 1;
    cursor = comma + 1;
  }
}

int config_parse_store_path(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_STORE_PATH);
  assert(value[0] != '\0');
  return config_parse_string(state, key, value, state->config.store_path, TALLY_PATH_MAX - 1u);
}

int config_parse_store_log_dir(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_STORE_LOG_DIR);
  assert(value[0] != '\0');
  return config_parse_string(state, key, value, state->config.log_dir, TALLY_PATH_MAX - 1u);
}

int config_parse_number(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(value != NULL);
  struct tally_config *config = &state->config;
  switch (key) {
  case KEY_STORE_COUNTERS_MAX:
    return config_parse_uint(state, key, value, TALLY_COUNTERS_MIN, TALLY_COUNTERS_MAX,
      &config->counters_max);
  case KEY_STORE_PRODUCERS_MAX:
    return config_parse_uint(state, key, value, TALLY_PRODUCERS_MIN, TALLY_PRODUCERS_MAX,
      &config->producers_max);
  case KEY_STORE_COMMIT_INTERVAL_MS:
    return config_parse_uint(state, key, value, TALLY_COMMIT_INTERVAL_MS_MIN,
      TALLY_COMMIT_INTERVAL_MS_MAX, &config->commit_interval_ms);
  case KEY_STORE_LOG_GROUP_BYTES:
    return config_parse_uint(state, key, value, TALLY_WAL_GROUP_SIZE_MIN, TALLY_WAL_GROUP_SIZE_MAX,
      &config->log_group_bytes);
  case KEY_STORE_LOG_SEGMENT_BYTES:
    return config_parse_uint(state, key, value, TALLY_WAL_SEGMENT_SIZE_MIN,
      TALLY_WAL_SEGMENT_SIZE_MAX, &config->log_segment_bytes);
  case KEY_STORE_CHECKPOINT_INTERVAL_MS:
    return config_parse_uint(state, key, value, 0, TALLY_CHECKPOINT_INTERVAL_MS_MAX,
      &config->checkpoint_interval_ms);
  case KEY_DATAPLANE_MBUFS:
    return config_parse_uint(state, key, value, TALLY_MBUFS_MIN, TALLY_MBUFS_MAX, &config->mbufs);
  case KEY_DATAPLANE_IDLE_SLEEP_US:
    return config_parse_uint(state, key, value, 0, TALLY_IDLE_SLEEP_US_MAX,
      &config->idle_sleep_us);
  case KEY_DATAPLANE_STATSD_PER_POLL:
    return config_parse_uint(state, key, value, 1, TALLY_CLASS_PER_POLL_MAX,
      &config->statsd_per_poll);
  case KEY_DATAPLANE_RELIABLE_PER_POLL:
    return config_parse_uint(state, key, value, 1, TALLY_CLASS_PER_POLL_MAX,
      &config->reliable_per_poll);
  case KEY_DATAPLANE_CONTROL_PER_POLL:
    return config_parse_uint(state, key, value, 1, TALLY_CLASS_PER_POLL_MAX,
      &config->control_per_poll);
  case KEY_INGEST_STATSD_COUNTERS_PERCENT:
    return config_parse_uint(state, key, value, 0, 100, &config->statsd_counters_percent);
  case KEY_CLUSTER_WRITE_QUORUM: /* and at most the node count, checked after the file */
    return config_parse_uint(state, key, value, 1, TALLY_NODES_MAX, &config->cluster.write_quorum);
  case KEY_CLUSTER_HEARTBEAT_INTERVAL_MS:
    return config_parse_uint(state, key, value, TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MIN,
      TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MAX, &config->cluster.heartbeat_interval_ms);
  case KEY_CLUSTER_REPLICATION_INTERVAL_MS:
    return config_parse_uint(state, key, value, TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN,
      TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MAX, &config->cluster.replication_interval_ms);
  case KEY_CLUSTER_FAULT_DELAY_MS:
    return config_parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_DELAY_MS_MAX,
      &config->cluster.fault_delay_ms);
  case KEY_CLUSTER_FAULT_JITTER_MS:
    return config_parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_JITTER_MS_MAX,
      &config->cluster.fault_jitter_ms);
  case KEY_CLUSTER_FAULT_LOSS_PERMILLE:
    return config_parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX,
      &config->cluster.fault_loss_permille);
  case KEY_GRAPHITE_INTERVAL_MS:
    return config_parse_uint(state, key, value, TALLY_GRAPHITE_INTERVAL_MS_MIN,
      TALLY_GRAPHITE_INTERVAL_MS_MAX, &config->graphite.interval_ms);
  case KEY_GRAPHITE_BUFFER_BYTES:
    return config_parse_uint(state, key, value, TALLY_GRAPHITE_BUFFER_BYTES_MIN,
      TALLY_GRAPHITE_BUFFER_BYTES_MAX, &config->graphite.buffer_bytes);
  default:
    assert(false && "not a numeric key");
    return 0;
  }
}

int config_parse_store_persist(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_STORE_PERSIST);
  assert(value != NULL);
  size_t count = sizeof(persist_names) / sizeof(persist_names[0]);
  size_t chosen = 0;
  if (!config_parse_choice(state, key, value, persist_names, count, &chosen)) return 0;
  state->config.persist_mode = (enum tally_persist_mode)chosen;
  return 1;
}

int config_parse_control_socket(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CONTROL_SOCKET);
  assert(value[0] != '\0');
  return config_parse_string(state, key, value, state->config.socket_path,
    TALLY_SOCKET_PATH_LEN_MAX);
}

/* "a.b.c.d:port" with a port 1..65535 (control.http, graphite.address). */
static int parse_address_port(struct parse_state *state, enum config_key key, const char *value,
  const char *expected, uint32_t *ipv4, uint16_t *port_out) {
  assert(value != NULL && expected != NULL);
  const struct config_key_name *spec = config_key_name(key);
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  const char *colon = strrchr(value, ':');
  char address_text[INET_ADDRSTRLEN];
  size_t address_length = colon == NULL ? 0 : (size_t)(colon - value);
  uint32_t address = 0;
  if (colon == NULL || address_length >= sizeof(address_text)) {
    return config_fail_key(state, spec->section, spec->name, "'%s' is not %s", shown, expected);
  }
  memcpy(address_text, value, address_length);
  address_text[address_length] = '\0';
  if (!config_ipv4_parse(address_text, &address)) {
    return config_fail_key(state, spec->section, spec->name, "'%s' is not %s", shown, expected);
  }
  uint32_t port = 0;
  if (!config_parse_uint(state, key, colon + 1, 0, UINT16_MAX, &port)) return 0;
  if (port == 0 && key == KEY_CONTROL_HTTP) {
    return config_fail(state, key, "port 0: write 'off' to disable HTTP");
  }
  if (port == 0) return config_fail(state, key, "port 0: the port must be 1..65535");
  *ipv4 = address;
  *port_out = (uint16_t)port;
  return 1;
}

/* "true" or "false": node.demo, ingest.statsd_writes_reliable. */
int config_parse_bool(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_NODE_DEMO || key == KEY_INGEST_STATSD_WRITES_RELIABLE);
  assert(value != NULL);
  if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
    bool *field = key == KEY_NODE_DEMO ? &state->config.demo :
      &state->config.statsd_writes_reliable;
    *field = value[0] == 't';
    return 1;
  }
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  const struct config_key_name *spec = config_key_name(key);
  return config_fail_key(state, spec->section, spec->name, "'%s' is not true or false", shown);
}

/* A group name as useradd allows it: [A-Za-z0-9_.-], not starting with '-'. */
int config_parse_control_admin_group(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CONTROL_ADMIN_GROUP);
  assert(value != NULL);
  if (!config_parse_string(state, key, value, state->config.admin_group,
        TALLY_GROUP_NAME_LEN_MAX)) {
    return 0;
  }
  bool valid = value[0] != '-';
  for (const char *c = value; *c != '\0'; c++) {
    valid = valid && ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
      (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-');
  }
  if (!valid) {
    state->config.admin_group[0] = '\0';
    return config_fail(state, key, "not a group name ([A-Za-z0-9_.-], not starting with '-')");
  }
  return 1;
}

/* "a.b.c.d:port" or "off". */
int config_parse_control_http(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CONTROL_HTTP);
  assert(value != NULL);
  if (strcmp(value, "off") == 0) {
    state->config.http_port = 0;
    return 1;
  }
  return parse_address_port(state, key, value, "a.b.c.d:port or off", &state->config.http_ipv4,
    &state->config.http_port);
}

/* carbon's plaintext listener: "a.b.c.d:port" (no DNS: tallyd resolves nothing). */
int config_parse_graphite_address(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_GRAPHITE_ADDRESS);
  assert(value != NULL);
  struct tally_graphite_config *graphite = &state->config.graphite;
  if (!parse_address_port(state, key, value, "a.b.c.d:port (an IPv4 address, no host name)",
        &graphite->ipv4, &graphite->port)) {
    return 0;
  }
  if (!config_ipv4_unicast(graphite->ipv4)) {
    char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
    config_echo(shown, value);
    return config_fail_key(state, "graphite", "address", "'%s' is not a unicast address", shown);
  }
  return 1;
}

/*
 * "" is not allowed (leave the key out for no prefix); else dot-separated
 * components of [A-Za-z0-9_-], none empty, at most TALLY_GRAPHITE_PREFIX_LEN_MAX bytes.
 */
int config_parse_graphite_prefix(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_GRAPHITE_PREFIX);
  assert(value[0] != '\0');
  char *prefix = state->config.graphite.prefix;
  if (!config_parse_string(state, key, value, prefix, TALLY_GRAPHITE_PREFIX_LEN_MAX)) return 0;
  size_t length = strlen(prefix);
  for (size_t i = 0; i < length; i++) {
    char c = prefix[i];
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
      c == '_' || c == '-';
    bool empty_component = c == '.' && (i == 0 || i + 1 == length || prefix[i + 1] == '.');
    if ((!word && c != '.') || empty_component) {
      prefix[0] = '\0';
      return config_fail_key(state, "graphite", "prefix", "byte %zu: dot-separated components of "
        "A-Z a-z 0-9 _ - only, none empty", i + 1u);
    }
  }
  return 1;
}

/* With [graphite] (even empty), the push is on and graphite.address is required. */
int config_graphite_validate(struct parse_state *state) {
  assert(!state->failed);
  if (!state->graphite_seen) {
    assert(!state->config.graphite.enabled);
    return 1;
  }
  if (!(state->keys_seen & (1ull << KEY_GRAPHITE_ADDRESS))) {
    return config_fail(state, KEY_GRAPHITE_ADDRESS, "required");
  }
  assert(state->config.graphite.port != 0);
  state->config.graphite.enabled = true;
  return 1;
}
