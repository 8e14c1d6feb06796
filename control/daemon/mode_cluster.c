/*
 * mode_cluster.c — the cluster mode's operations (modes.h), on the
 * tally_cluster_* functions of control/cluster/cluster.h: the cluster thread
 * started before the lcores (restoring a new or damaged store from the peers
 * first), quorum reads, the cluster's view and figures, drain progress, and
 * the reloadable [cluster] keys. Each operation runs on the thread of its
 * caller: start-up and shutdown, the control thread, or HTTP (metrics); the
 * cluster thread itself is control/cluster/'s.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster.h"
#include "modes.h"
#include "persister_log.h"
#include "tally/name.h"

static struct tally_cluster cluster; /* the one cluster of this process */

static void die(const char *message)
{
  fprintf(stderr, "tallyd: %s\n", message);
  exit(1);
}

/*
 * Replication socket, snapshot, and — when this node's store is new or
 * damaged — its own contribution restored from the peers before any lcore
 * counts (so /health/ready stays false until then). Then the cluster thread.
 */
static void cluster_open(struct tally_appliance *appliance)
{
  assert(appliance->config.cluster.enabled);
  assert(appliance->cluster == NULL);
  /* A damaged store (anything quarantined) was replaced by a new one (main.c). In log
   * mode a new image rebuilt from a checkpoint or the log is whole: only an empty log
   * (a new node, or its disk lost too) restores from the peers. */
  bool damaged = appliance->store.recovery.created;
  if (appliance->log != NULL) {
    damaged = appliance->log_stats.recovery_source == TALLY_LOG_SOURCE_NEW;
  }
  for (uint32_t i = 0; i < appliance->store.geometry.shard_count; i++) {
    assert(appliance->store.recovery.shards[i].slots_quarantined == 0);
    assert(appliance->store.recovery.shards[i].producers_quarantined == 0);
  }
  char error[512];
  if (tally_cluster_open(&cluster, appliance, damaged, error, sizeof error) != 0) die(error);
  appliance->cluster = &cluster;
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    appliance->lcores[i].read_only = &cluster.read_only;
    /* Always (W may change at runtime): with W = 1 the cluster thread passes applied_seq on. */
    appliance->lcores[i].wait_quorum = true;
  }
  /*
   * Cross-node dedup: a batch a peer (or a retired node) already applied is
   * answered DUPLICATE. The lcores are not running yet: written in place.
   */
  tally_cluster_members_dp(&appliance->store, appliance->config.cluster.write_quorum,
    appliance->dp_config);
  if (appliance->log != NULL && tally_log_checkpoint_wait(appliance, error, sizeof error) != 0) {
    die(error);
  }
  if (tally_cluster_start(&cluster) != 0) die("cannot start the cluster thread");
  fprintf(stderr, "tallyd: cluster: node %u of %u, write quorum %u\n",
    appliance->config.cluster.node_id, appliance->config.cluster.node_count,
    appliance->config.cluster.write_quorum);
}

static void cluster_stop(struct tally_appliance *appliance)
{
  assert(appliance->cluster == &cluster);
  tally_cluster_stop(appliance->cluster);
}

static enum tally_action_result cluster_get_quorum(struct tally_appliance *appliance,
  const char *name, size_t name_len, struct tally_out *out)
{
  assert(appliance->cluster != NULL);
  if (!tally_name_valid(name, name_len)) {
    tally_out_printf(out, "invalid counter name\n");
    return TALLY_ACTION_BAD_REQUEST;
  }
  __int128 total = 0;
  uint32_t answered = 0;
  uint32_t nodes = 0; /* the running membership's */
  bool found = false;
  if (tally_cluster_quorum_read(appliance->cluster, name, (uint32_t)name_len, &total, &answered,
        &nodes, &found) != 0) {
    tally_out_printf(out, "quorum read failed: no socket on the replication address\n");
    return TALLY_ACTION_FAILED;
  }
  assert(answered >= 1 && answered <= nodes);
  if (!found && answered == nodes) {
    tally_out_printf(out, "no counter %.*s\n", (int)name_len, name);
    return TALLY_ACTION_NOT_FOUND;
  }
  tally_action_print_total(out, total);
  tally_out_printf(out, "\n");
  if (answered == nodes) return TALLY_ACTION_OK;
  tally_out_printf(out, "partial: %u of %u nodes answered%s\n", answered, nodes,
    answered * 2 > nodes ? "" : " (no majority)");
  return TALLY_ACTION_PARTIAL;
}

static enum tally_action_result cluster_describe(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->cluster != NULL);
  tally_cluster_describe(appliance->cluster, out);
  return out->failed ? TALLY_ACTION_FAILED : TALLY_ACTION_OK;
}

static uint32_t cluster_peers_behind(struct tally_appliance *appliance)
{
  assert(appliance->cluster != NULL);
  return tally_cluster_peers_behind(appliance->cluster);
}

static void cluster_reload_refused(struct tally_appliance *appliance)
{
  assert(appliance->cluster != NULL);
  __atomic_fetch_add(&appliance->cluster->membership_refused, 1, __ATOMIC_RELAXED);
}

static int cluster_reload_check(struct tally_appliance *appliance,
  const struct tally_config *fresh, char *error, size_t error_size)
{
  assert(appliance->cluster != NULL);
  return tally_cluster_members_check(appliance->cluster, &fresh->cluster, error, error_size);
}

/* Test-only fault injection (reported only when it changes), then the membership. */
static int cluster_reload_apply(struct tally_appliance *appliance,
  const struct tally_config *fresh, struct tally_out *out)
{
  assert(appliance->cluster != NULL);
  const struct tally_cluster_config *config = &fresh->cluster;
  if (tally_cluster_fault_reload(appliance->cluster, config)) {
    bool on = config->fault_delay_ms != 0 || config->fault_jitter_ms != 0 ||
      config->fault_loss_permille != 0;
    tally_out_printf(out, "reloaded: cluster.fault_delay_ms=%u fault_jitter_ms=%u "
      "fault_loss_permille=%u (%s)\n", config->fault_delay_ms, config->fault_jitter_ms,
      config->fault_loss_permille, on ? "FAULT INJECTION ON: test only" : "off");
  }
  return tally_cluster_members_reload(appliance->cluster, config, out) < 0 ? -1 : 0;
}

static enum tally_action_result cluster_cluster_reload(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->cluster != NULL);
  static struct tally_config fresh; /* control thread only; large */
  if (!tally_action_reload_load(appliance, &fresh, out)) return TALLY_ACTION_FAILED;
  if (tally_cluster_members_reload(appliance->cluster, &fresh.cluster, out) < 0) {
    appliance->reload_failures++;
    return TALLY_ACTION_FAILED;
  }
  appliance->reloads++;
  return TALLY_ACTION_OK;
}

static void cluster_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  assert(appliance->cluster != NULL);
  tally_cluster_metrics(appliance->cluster, out);
}

/* GET /counters: the own contribution, then the replicas Prometheus may need (modes.h). */
static void cluster_counters_view(struct tally_appliance *appliance,
  struct tally_counters_view *view)
{
  assert(appliance->cluster != NULL);
  struct tally_cluster_copy copies[TALLY_REPLICA_REGIONS_MAX];
  uint16_t self = 0;
  uint32_t count = tally_cluster_export_copies(appliance->cluster, copies, &self, &view->members);
  assert(count <= TALLY_REPLICA_REGIONS_MAX);
  view->copies[0] = (struct tally_counters_copy){ .tables = appliance->store.shards,
    .table_count = appliance->store.geometry.shard_count, .has_origin = true, .own = true,
    .origin = self };
  for (uint32_t i = 0; i < count; i++) {
    view->copies[1 + i] = (struct tally_counters_copy){
      .tables = &appliance->store.replicas[copies[i].replica], .table_count = 1,
      .has_origin = true, .own = false, .origin = copies[i].origin, .scan_us = copies[i].scan_us };
  }
  view->count = 1 + count;
}

const struct tally_node_ops tally_node_cluster = {
  .name = "cluster",
  .shards_extra = 1, /* the compensation shard (cluster thread) */
  .replica_regions = TALLY_REPLICA_REGIONS_MAX,
  .restores_damaged_store = true,
  .open = cluster_open,
  .stop = cluster_stop,
  .get_quorum = cluster_get_quorum,
  .describe = cluster_describe,
  .peers_behind = cluster_peers_behind,
  .reload_refused = cluster_reload_refused,
  .reload_check = cluster_reload_check,
  .reload_apply = cluster_reload_apply,
  .cluster_reload = cluster_cluster_reload,
  .metrics = cluster_metrics,
  .counters_view = cluster_counters_view,
};
