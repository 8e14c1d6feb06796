/*
 * fuzz_config.c — libFuzzer target for the config parser: any bytes must
 * parse or be refused with one line of error, never crash or read past the
 * text, and a config that parses holds every documented invariant (ranges,
 * NUL-terminated strings, distinct ports, a key when the binary port is on,
 * EAL arguments that split within the limit) and, in [cluster], what spans
 * its keys: 1..8 members with distinct ids and distinct unicast addresses,
 * this node among them, a write quorum they can form, the intervals, phi
 * thresholds and fault knobs in range; without [cluster], one node at
 * node.ipv4. An accepted cluster config is a valid reload of itself.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* The documented [cluster] ranges (docs/config-keys.md), written out here. */
#define HEARTBEAT_INTERVAL_MS_MIN 10u
#define HEARTBEAT_INTERVAL_MS_MAX 10000u
#define REPLICATION_INTERVAL_MS_MIN 1u
#define REPLICATION_INTERVAL_MS_MAX 1000u
#define PHI_MAX 100.0

#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

static bool unicast(uint32_t address) {
  return address != 0 && address != UINT32_MAX && (address >> 28) != 0xeu;
}

static void check_cluster(const struct tally_config *config) {
  const struct tally_cluster_config *cluster = &config->cluster;
  FUZZ_CHECK(cluster->node_count >= 1);
  FUZZ_CHECK(cluster->node_count <= TALLY_NODES_MAX);
  bool self = false;
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    const struct tally_cluster_node *node = &cluster->nodes[i];
    FUZZ_CHECK(node->id != 0);
    FUZZ_CHECK(unicast(node->ipv4));
    if (cluster->enabled) FUZZ_CHECK(node->port != 0);
    if (node->id == cluster->node_id) self = true;
    for (uint32_t j = 0; j < i; j++) {
      FUZZ_CHECK(cluster->nodes[j].id != node->id);
      FUZZ_CHECK(cluster->nodes[j].ipv4 != node->ipv4 || cluster->nodes[j].port != node->port);
    }
  }
  FUZZ_CHECK(self);
  FUZZ_CHECK(cluster->write_quorum >= 1);
  FUZZ_CHECK(cluster->write_quorum <= cluster->node_count);
  FUZZ_CHECK(cluster->heartbeat_interval_ms >= HEARTBEAT_INTERVAL_MS_MIN);
  FUZZ_CHECK(cluster->heartbeat_interval_ms <= HEARTBEAT_INTERVAL_MS_MAX);
  FUZZ_CHECK(cluster->replication_interval_ms >= REPLICATION_INTERVAL_MS_MIN);
  FUZZ_CHECK(cluster->replication_interval_ms <= REPLICATION_INTERVAL_MS_MAX);
  FUZZ_CHECK(cluster->suspect_phi > 0.0);
  FUZZ_CHECK(cluster->down_phi > cluster->suspect_phi);
  FUZZ_CHECK(cluster->down_phi <= PHI_MAX);
  FUZZ_CHECK(cluster->fault_delay_ms <= TALLY_CLUSTER_FAULT_DELAY_MS_MAX);
  FUZZ_CHECK(cluster->fault_jitter_ms <= TALLY_CLUSTER_FAULT_JITTER_MS_MAX);
  FUZZ_CHECK(cluster->fault_loss_permille <= TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX);
  if (!cluster->enabled) { /* a single node: itself, at its own address */
    FUZZ_CHECK(cluster->node_count == 1);
    FUZZ_CHECK(cluster->nodes[0].ipv4 == config->ipv4);
    return;
  }
  char error[256];
  FUZZ_CHECK(tally_config_cluster_reload_check(cluster, cluster, error, sizeof(error)) == 0);
}

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
  FUZZ_CHECK(config->idle_sleep_us <= TALLY_IDLE_SLEEP_US_MAX);
  FUZZ_CHECK(config->persist_mode <= TALLY_PERSIST_LOG);
  /* Log mode: a log directory; the group within the segment; sizes in range. */
  FUZZ_CHECK(memchr(config->log_dir, '\0', sizeof(config->log_dir)) != NULL);
  FUZZ_CHECK(config->persist_mode != TALLY_PERSIST_LOG || config->log_dir[0] != '\0');
  FUZZ_CHECK(config->log_group_bytes >= TALLY_WAL_GROUP_SIZE_MIN);
  FUZZ_CHECK(config->log_group_bytes <= config->log_segment_bytes);
  FUZZ_CHECK(config->log_segment_bytes <= TALLY_WAL_SEGMENT_SIZE_MAX);
  FUZZ_CHECK(config->log_segment_bytes % TALLY_WAL_RECORD_ALIGN == 0);
  FUZZ_CHECK(config->persist_mode != TALLY_PERSIST_LOG || !config->cluster.enabled);
  FUZZ_CHECK(config->ipv4 != 0);
  FUZZ_CHECK(config->binary_port == 0 || config->key_set);
  FUZZ_CHECK(config->statsd_port == 0 || config->statsd_port != config->binary_port);
  check_cluster(config);
  /* [graphite]: on only with an address; every value in range; the prefix's alphabet. */
  const struct tally_graphite_config *graphite = &config->graphite;
  FUZZ_CHECK(!graphite->enabled || (graphite->port != 0 && graphite->ipv4 != 0));
  FUZZ_CHECK(graphite->interval_ms >= TALLY_GRAPHITE_INTERVAL_MS_MIN);
  FUZZ_CHECK(graphite->interval_ms <= TALLY_GRAPHITE_INTERVAL_MS_MAX);
  FUZZ_CHECK(graphite->buffer_bytes >= TALLY_GRAPHITE_BUFFER_BYTES_MIN);
  FUZZ_CHECK(graphite->buffer_bytes <= TALLY_GRAPHITE_BUFFER_BYTES_MAX);
  size_t prefix_len = strnlen(graphite->prefix, sizeof(graphite->prefix));
  FUZZ_CHECK(prefix_len <= TALLY_GRAPHITE_PREFIX_LEN_MAX);
  FUZZ_CHECK(prefix_len == 0 ||
    (graphite->prefix[0] != '.' && graphite->prefix[prefix_len - 1] != '.'));
  FUZZ_CHECK(strstr(graphite->prefix, "..") == NULL);
  FUZZ_CHECK(strspn(graphite->prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "0123456789_-.") == prefix_len);

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
