/*
 * config_cluster.c — the [cluster] section: node_id, the nodes list
 * ("id@a.b.c.d:port" entries, which may span lines), the phi thresholds, and,
 * once the whole file is read, what spans its keys (node_id among the nodes,
 * the write quorum within the member count, suspect_phi below down_phi).
 * Absent, the node runs alone (one member, write quorum 1).
 * Its fault_* keys (test-only fault injection) are numbers (config_values.c).
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

/* cluster.write_quorum when not given: 2, or 1 for a single member. */
#define CONFIG_WRITE_QUORUM_DEFAULT 2u

static_assert(TALLY_NODES_MAX >= 1u, "a cluster holds this node");
static_assert(TALLY_NODES_MAX <= UINT16_MAX, "node ids are 16-bit");

int config_parse_cluster_node_id(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CLUSTER_NODE_ID);
  assert(value != NULL);
  uint32_t node_id = 0;
  if (!config_parse_uint(state, key, value, 1, UINT16_MAX, &node_id)) return 0;
  state->config.cluster.node_id = (uint16_t)node_id;
  return 1;
}

/* "ID@a.b.c.d:PORT", syntax only: the numbers come back unchecked. */
static bool node_entry_parse(const char *entry, uint64_t *id, uint32_t *address,
  uint64_t *port) {
  assert(entry != NULL);
  assert(strlen(entry) <= TALLY_CONFIG_NODE_ENTRY_LEN_MAX);
  const char *at = strchr(entry, '@');
  const char *colon = strrchr(entry, ':');
  if (at == NULL || colon == NULL || colon < at) return false;
  char address_text[INET_ADDRSTRLEN];
  size_t address_length = (size_t)(colon - at) - 1u;
  if (address_length >= sizeof(address_text)) return false;
  memcpy(address_text, at + 1, address_length);
  address_text[address_length] = '\0';
  if (!config_decimal_parse(entry, (size_t)(at - entry), id)) return false;
  if (!config_ipv4_parse(address_text, address)) return false;
  return config_decimal_parse(colon + 1, strlen(colon + 1), port);
}

/* Checks one entry (NUL-terminated, cut for the echo) and appends it. */
static int node_entry_add(struct parse_state *state, const char *entry, size_t entry_length) {
  struct tally_cluster_config *cluster = &state->config.cluster;
  assert(entry_length > 0);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, entry);
  if (cluster->node_count == TALLY_NODES_MAX) {
    return config_fail_key(state, "cluster", "nodes", "more than %u nodes", TALLY_NODES_MAX);
  }
  uint64_t id = 0;
  uint64_t port = 0;
  uint32_t address = 0;
  if (entry_length > TALLY_CONFIG_NODE_ENTRY_LEN_MAX || !node_entry_parse(entry, &id, &address,
    &port)) {
    return config_fail_key(state, "cluster", "nodes", "'%s' is not id@a.b.c.d:port", shown);
  }
  if (id == 0 || id > UINT16_MAX) {
    return config_fail_key(state, "cluster", "nodes", "'%s': the id must be 1..65535", shown);
  }
  if (port == 0 || port > UINT16_MAX) {
    return config_fail_key(state, "cluster", "nodes", "'%s': the port must be 1..65535", shown);
  }
  if (!config_ipv4_unicast(address)) {
    return config_fail_key(state, "cluster", "nodes", "'%s': not a unicast address", shown);
  }
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    const struct tally_cluster_node *other = &cluster->nodes[i];
    if (other->id == id) {
      return config_fail_key(state, "cluster", "nodes", "id %u is listed twice", (unsigned)id);
    }
    if (other->ipv4 == address && other->port == port) {
      return config_fail_key(state, "cluster", "nodes", "%u.%u.%u.%u:%u is listed twice",
        address >> 24, (address >> 16) & 0xffu, (address >> 8) & 0xffu, address & 0xffu,
        (unsigned)port);
    }
  }
  cluster->nodes[cluster->node_count++] =
    (struct tally_cluster_node){.id = (uint16_t)id, .ipv4 = address, .port = (uint16_t)port};
  return 1;
}

/* Appends the whitespace-separated entries in text[0, length). */
int config_nodes_append(struct parse_state *state, const char *text, size_t length) {
  assert(text != NULL);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  size_t i = 0;
  while (i < length) { /* bounded: every pass moves i forward */
    if (config_is_space(text[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < length && !config_is_space(text[i])) i++;
    char entry[TALLY_CONFIG_ECHO_LEN_MAX + 2];
    size_t copied =
      i - start <= TALLY_CONFIG_ECHO_LEN_MAX ? i - start : TALLY_CONFIG_ECHO_LEN_MAX + 1u;
    memcpy(entry, text + start, copied);
    entry[copied] = '\0';
    if (!node_entry_add(state, entry, i - start)) return 0;
  }
  assert(i == length);
  return 1;
}

int config_parse_cluster_nodes(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CLUSTER_NODES);
  assert(value[0] != '\0');
  struct tally_cluster_config *cluster = &state->config.cluster;
  cluster->node_count = 0; /* the single-node default is replaced, not added to */
  memset(cluster->nodes, 0, sizeof(cluster->nodes));
  return config_nodes_append(state, value, strnlen(value, TALLY_EAL_ARGS_LEN_MAX - 1u));
}

/*
 * suspect_phi, down_phi: digits with at most one '.', in (0, 100]. The text
 * is checked before strtod, so no sign, exponent, hex, nan or inf gets in
 * (tallyd never calls setlocale: strtod's radix is '.').
 */
int config_parse_cluster_phi(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_CLUSTER_SUSPECT_PHI || key == KEY_CLUSTER_DOWN_PHI);
  assert(value != NULL);
  const struct config_key_name *spec = config_key_name(key);
  char shown[TALLY_CONFIG_ECHO_LEN_MAX + 4];
  config_echo(shown, value);
  size_t length = strlen(value);
  uint32_t digits = 0;
  uint32_t points = 0;
  for (size_t i = 0; i < length; i++) {
    if (value[i] >= '0' && value[i] <= '9') digits++;
    else if (value[i] == '.') points++;
    else {
      return config_fail_key(state, spec->section, spec->name, "'%s' is not a decimal number",
        shown);
    }
  }
  if (digits == 0 || points > 1) {
    return config_fail_key(state, spec->section, spec->name, "'%s' is not a decimal number", shown);
  }
  char *end = NULL;
  double phi = strtod(value, &end);
  assert(end == value + length);
  if (!(phi > 0.0)) {
    return config_fail_key(state, spec->section, spec->name, "%s is not above 0", shown);
  }
  if (phi > TALLY_CLUSTER_PHI_THRESHOLD_MAX) {
    return config_fail_key(state, spec->section, spec->name, "%s is above the maximum %g", shown,
      TALLY_CLUSTER_PHI_THRESHOLD_MAX);
  }
  if (key == KEY_CLUSTER_SUSPECT_PHI) state->config.cluster.suspect_phi = phi;
  if (key == KEY_CLUSTER_DOWN_PHI) state->config.cluster.down_phi = phi;
  return 1;
}

/* Without [cluster], one node; with it, what spans its keys. */
int config_cluster_validate(struct parse_state *state) {
  struct tally_cluster_config *cluster = &state->config.cluster;
  assert(!state->failed);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  if (!state->cluster_seen) {
    assert(cluster->node_count == 1u);
    cluster->nodes[0].ipv4 = state->config.ipv4;
    return 1;
  }
  static const enum config_key required[] = {KEY_CLUSTER_NODE_ID, KEY_CLUSTER_NODES,
    KEY_CLUSTER_KEY};
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    if (!(state->keys_seen & (1ull << required[i]))) {
      return config_fail(state, required[i], "required");
    }
  }
  assert(cluster->node_count >= 1u);
  bool member = false;
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    if (cluster->nodes[i].id == cluster->node_id) member = true;
  }
  if (!member) {
    return config_fail_key(state, "cluster", "node_id", "%u is not in cluster.nodes",
      (unsigned)cluster->node_id);
  }
  if (!(state->keys_seen & (1ull << KEY_CLUSTER_WRITE_QUORUM))) {
    cluster->write_quorum = cluster->node_count < CONFIG_WRITE_QUORUM_DEFAULT
                              ? cluster->node_count
                              : CONFIG_WRITE_QUORUM_DEFAULT;
  }
  if (cluster->write_quorum > cluster->node_count) {
    return config_fail_key(state, "cluster", "write_quorum",
      "%u is above the maximum %u (the number of cluster.nodes)", cluster->write_quorum,
      cluster->node_count);
  }
  if (!(cluster->down_phi > cluster->suspect_phi)) {
    if (state->keys_seen & (1ull << KEY_CLUSTER_DOWN_PHI)) {
      return config_fail_key(state, "cluster", "down_phi", "%g is not above cluster.suspect_phi %g",
        cluster->down_phi, cluster->suspect_phi);
    }
    return config_fail_key(state, "cluster", "suspect_phi", "%g is not below cluster.down_phi %g",
      cluster->suspect_phi, cluster->down_phi);
  }
  cluster->enabled = true;
  return 1;
}

/* What every successfully parsed [cluster] holds, enabled or not. */
void config_cluster_assert_valid(const struct tally_cluster_config *cluster) {
  assert(cluster->node_count >= 1u);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  assert(cluster->write_quorum >= 1u);
  assert(cluster->write_quorum <= cluster->node_count);
  assert(cluster->heartbeat_interval_ms >= TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MIN);
  assert(cluster->heartbeat_interval_ms <= TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MAX);
  assert(cluster->replication_interval_ms >= TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN);
  assert(cluster->replication_interval_ms <= TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MAX);
  assert(cluster->suspect_phi > 0.0);
  assert(cluster->suspect_phi < cluster->down_phi);
  assert(cluster->down_phi <= TALLY_CLUSTER_PHI_THRESHOLD_MAX);
  assert(cluster->fault_delay_ms <= TALLY_CLUSTER_FAULT_DELAY_MS_MAX);
  assert(cluster->fault_jitter_ms <= TALLY_CLUSTER_FAULT_JITTER_MS_MAX);
  assert(cluster->fault_loss_permille <= TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX);
  bool member = false;
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    assert(cluster->nodes[i].id != 0);
    assert(!cluster->enabled || cluster->nodes[i].port != 0);
    assert(!cluster->enabled || config_ipv4_unicast(cluster->nodes[i].ipv4));
    if (cluster->nodes[i].id == cluster->node_id) member = true;
  }
  assert(member);
}
