/*
 * mode_single.c — the single-node mode's operations (modes.h): no peers, no
 * replica regions, nothing to restore; a quorum read is a local read, and
 * the cluster commands say there is no cluster. Each operation runs on the
 * thread of its caller: start-up, the control thread, or HTTP (metrics).
 */
#include <assert.h>

#include "modes.h"

static void single_open(struct tally_appliance *appliance)
{
  assert(appliance->cluster == NULL);
  assert(!appliance->config.cluster.enabled);
}

static void single_stop(struct tally_appliance *appliance)
{
  assert(appliance->cluster == NULL);
}

/* One node answers, and it is this one: the local value. */
static enum tally_action_result single_get_quorum(struct tally_appliance *appliance,
  const char *name, size_t name_len, struct tally_out *out)
{
  return tally_action_get(appliance, name, name_len, out);
}

static enum tally_action_result single_describe(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->cluster == NULL);
  tally_out_printf(out, "single node: no [cluster] section in the config\n");
  return TALLY_ACTION_OK;
}

static uint32_t single_peers_behind(struct tally_appliance *appliance)
{
  assert(appliance->cluster == NULL);
  return 0;
}

static void single_reload_refused(struct tally_appliance *appliance)
{
  assert(appliance->cluster == NULL);
}

static int single_reload_check(struct tally_appliance *appliance,
  const struct tally_config *fresh, char *error, size_t error_size)
{
  assert(appliance->cluster == NULL && fresh != NULL);
  (void)error;
  (void)error_size;
  return 0;
}

static int single_reload_apply(struct tally_appliance *appliance,
  const struct tally_config *fresh, struct tally_out *out)
{
  assert(appliance->cluster == NULL && fresh != NULL);
  (void)out;
  return 0;
}

static enum tally_action_result single_cluster_reload(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->cluster == NULL);
  tally_out_printf(out, "single node: no [cluster] section was there at start\n");
  return TALLY_ACTION_BAD_REQUEST;
}

static void single_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  assert(appliance->cluster == NULL && out != NULL);
}

/* GET /counters: the node's shards, without an origin. */
static void single_counters_view(struct tally_appliance *appliance,
  struct tally_counters_view *view)
{
  assert(appliance->cluster == NULL);
  assert(appliance->store.geometry.shard_count >= 1 || appliance->lcore_count == 0);
  view->count = 1;
  view->members = 0;
  view->copies[0] = (struct tally_counters_copy){ .tables = appliance->store.shards,
    .table_count = appliance->store.geometry.shard_count, .has_origin = false, .own = true };
}

const struct tally_node_ops tally_node_single = {
  .name = "single node",
  .shards_extra = 0,
  .replica_regions = 0,
  .restores_damaged_store = false,
  .open = single_open,
  .stop = single_stop,
  .get_quorum = single_get_quorum,
  .describe = single_describe,
  .peers_behind = single_peers_behind,
  .reload_refused = single_reload_refused,
  .reload_check = single_reload_check,
  .reload_apply = single_reload_apply,
  .cluster_reload = single_cluster_reload,
  .metrics = single_metrics,
  .counters_view = single_counters_view,
};
