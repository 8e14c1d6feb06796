/*
 * config_reload.c — what a reload may change in a running node's [cluster]
 * section, and what needs a restart. The file was parsed and validated in
 * full already (config.c); this only compares it with the running
 * membership. Pure (no I/O), so the unit tests and the fuzz-free reload path
 * share it. See docs/config-keys.md, "Reloading".
 *
 * Thread: the control thread, on a reload.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "config.h"

static const struct tally_cluster_node *find(const struct tally_cluster_config *config,
  uint16_t id)
{
  assert(config->node_count <= TALLY_NODES_MAX);
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == id) return &config->nodes[i];
  }
  return NULL;
}

static void address_text(const struct tally_cluster_node *node, char *text, size_t size)
{
  assert(node != NULL && size >= 24);
  snprintf(text, size, "%u.%u.%u.%u:%u", (node->ipv4 >> 24) & 255u, (node->ipv4 >> 16) & 255u,
    (node->ipv4 >> 8) & 255u, node->ipv4 & 255u, node->port);
}

int tally_config_cluster_reload_check(const struct tally_cluster_config *running,
  const struct tally_cluster_config *fresh, char *error, size_t error_size)
{
  assert(running != NULL && fresh != NULL);
  assert(running->enabled);
  if (!fresh->enabled) {
    snprintf(error, error_size, "cluster: the [cluster] section is gone; a node cannot leave "
      "its cluster at runtime (restart it)");
    return -1;
  }
  if (fresh->node_id != running->node_id) {
    snprintf(error, error_size, "cluster.node_id: %u in the file, %u running; it cannot change "
      "at runtime (restart with a new store)", fresh->node_id, running->node_id);
    return -1;
  }
  const struct tally_cluster_node *self_running = find(running, running->node_id);
  const struct tally_cluster_node *self_fresh = find(fresh, fresh->node_id);
  assert(self_running != NULL && self_fresh != NULL); /* both parsed and validated */
  if (self_fresh->ipv4 != self_running->ipv4 || self_fresh->port != self_running->port) {
    char was[32], is[32];
    address_text(self_running, was, sizeof was);
    address_text(self_fresh, is, sizeof is);
    snprintf(error, error_size, "cluster.nodes: this node (%u) is at %s in the file, %s running; "
      "its own replication address cannot change at runtime (restart it)", fresh->node_id, is,
      was);
    return -1;
  }
  if (sodium_memcmp(fresh->key, running->key, sizeof fresh->key) != 0) {
    snprintf(error, error_size, "cluster.key: differs from the running key; it cannot change at "
      "runtime (restart every node)");
    return -1;
  }
  assert(fresh->write_quorum >= 1 && fresh->write_quorum <= fresh->node_count);
  return 0;
}
