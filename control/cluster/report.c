/*
 * report.c — the cluster as other threads see it: `tallyctl cluster` (the
 * self line, one line per member, one per retired node), the peers still
 * behind (drain), the Prometheus figures appended to /metrics, and which
 * replica tables GET /counters exports (tally_cluster_export_copies). Every
 * figure's name, type and help text comes from one X-macro table below
 * (the cluster-wide counters' from TALLY_FOREACH_CLUSTER_COUNTER, cluster.h),
 * as the lcore statistics do. Runs on the control thread and the HTTP
 * threads, under `lock` (the slots and config do not change while it reads;
 * figures the cluster and heartbeat threads write are read relaxed; the
 * detectors through heartbeat.c, under liveness_lock).
 */
#include <assert.h>
#include <inttypes.h>

#include "cluster_internal.h"

/*
 * Per member: (name, type, milli, help); values from peer_figures_of. A milli
 * figure is held in thousandths of the metric's unit (milliseconds of a
 * _seconds metric) and printed with three decimals, exactly.
 */
#define TALLY_FOREACH_CLUSTER_PEER_METRIC(_)                                                \
  _(peer_up, gauge, false, "1 when the failure detector says up")                          \
  _(heartbeat_age_seconds, gauge, true, "time since the peer's last heartbeat (0: none yet)") \
  _(replication_lag_counters, gauge, false,                                                \
    "counters and producer records of this node's scan the peer has not acked yet")        \
  _(replication_acked_seq, gauge, false, "sequence the peer holds of this node (goes back " \
    "when the peer lost or changed its state)")                                            \
  _(replication_resends_total, counter, false, "rounds resent after a timeout")            \
  _(replication_resyncs_total, counter, false,                                             \
    "full resends after the peer lost or changed its state")                               \
  _(breaker_open, gauge, false, "1 while the circuit breaker to the peer is open (rounds to " \
    "it held back until its probe succeeds)")

/* The node's own: (name, type, help); values from node_figures_of. */
#define TALLY_FOREACH_CLUSTER_NODE_METRIC(_)                                                \
  _(read_only, gauge, "1 when no write quorum is reachable")                               \
  _(members, gauge, "nodes in the running membership, this one included")                 \
  _(retired_peers, gauge, "nodes removed from the membership whose counts this node keeps " \
    "(replica tables still summed)")                                                       \
  _(replica_tables_free, gauge, "replica tables of the store not bound to a node yet (0: no " \
    "new node id can join)")                                                               \
  _(membership_generation, gauge, "the running membership (1 at start, +1 per change)")    \
  _(membership_reloads_total, counter, "membership changes applied at runtime")            \
  _(membership_refused_total, counter, "cluster reloads refused (the running membership "   \
    "unchanged)")                                                                          \
  _(fault_active, gauge, "1 while test-only fault injection (cluster.fault_*) is on; alert " \
    "on any in production")                                                                \
  _(fault_dropped_total, counter, "datagrams to peers dropped by fault injection (loss, or " \
    "its delay queue full)")                                                               \
  _(fault_delayed_total, counter, "datagrams to peers held back by fault injection (delay " \
    "and jitter)")

struct peer_figures {
#define TALLY_CLUSTER_PEER_FIGURE(name, type, milli, help) uint64_t name;
  TALLY_FOREACH_CLUSTER_PEER_METRIC(TALLY_CLUSTER_PEER_FIGURE)
#undef TALLY_CLUSTER_PEER_FIGURE
};

struct node_figures {
#define TALLY_CLUSTER_FIGURE(name, type, help) uint64_t name;
  TALLY_FOREACH_CLUSTER_NODE_METRIC(TALLY_CLUSTER_FIGURE)
#undef TALLY_CLUSTER_FIGURE
};

static struct peer_figures peer_figures_of(struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer, uint64_t now_ns)
{
  struct tally_cluster_liveness liveness = tally_cluster_liveness_of(cluster, peer, now_ns);
  return (struct peer_figures){
    .peer_up = liveness.state == TALLY_PHI_UP,
    .heartbeat_age_seconds = liveness.age_ms,
    .replication_lag_counters = tally_cluster_peer_lag(peer),
    .replication_acked_seq = peer->acked_seq,
    .replication_resends_total = peer->resends,
    .replication_resyncs_total = peer->resyncs,
    .breaker_open = peer->breaker.state == TALLY_CLIENT_BREAKER_OPEN,
  };
}

static uint32_t retired_count(const struct tally_cluster *cluster)
{
  uint32_t retired = 0;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    if (cluster->peers[r].membership == TALLY_PEER_RETIRED) retired++;
  }
  assert(retired + cluster->peer_count <= TALLY_REPLICA_REGIONS_MAX);
  return retired;
}

static struct node_figures node_figures_of(const struct tally_cluster *cluster)
{
  return (struct node_figures){
    .read_only = cluster->read_only ? 1u : 0u,
    .members = cluster->config->node_count,
    .retired_peers = retired_count(cluster),
    .replica_tables_free = tally_store_replica_free(&cluster->appliance->store),
    .membership_generation = cluster->members->generation,
    .membership_reloads_total = __atomic_load_n(&cluster->membership_reloads, __ATOMIC_RELAXED),
    .membership_refused_total = __atomic_load_n(&cluster->membership_refused, __ATOMIC_RELAXED),
    .fault_active = tally_cluster_fault_active(&cluster->fault) ? 1u : 0u,
    .fault_dropped_total = __atomic_load_n(&cluster->fault.dropped, __ATOMIC_RELAXED) +
      __atomic_load_n(&cluster->heartbeat_fault.dropped, __ATOMIC_RELAXED),
    .fault_delayed_total = __atomic_load_n(&cluster->fault.delayed, __ATOMIC_RELAXED) +
      __atomic_load_n(&cluster->heartbeat_fault.delayed, __ATOMIC_RELAXED),
  };
}

static void metric_head(struct tally_out *out, const char *name, const char *type,
  const char *help)
{
  tally_out_printf(out, "# HELP tally_cluster_%s %s\n# TYPE tally_cluster_%s %s\n", name, help,
    name, type);
}

static void peer_sample(struct tally_out *out, const char *name, uint32_t peer, uint64_t value,
  bool milli)
{
  tally_out_printf(out, "tally_cluster_%s{peer=\"%u\"} %" PRIu64, name, peer,
    milli ? value / 1000u : value);
  if (milli) tally_out_printf(out, ".%03" PRIu64, value % 1000u);
  tally_out_printf(out, "\n");
}

static void peer_metrics(struct tally_cluster *cluster, struct tally_out *out, uint64_t now_ns)
{
  struct peer_figures figures[TALLY_REPLICA_REGIONS_MAX];
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    figures[peer - cluster->peers] = peer_figures_of(cluster, peer, now_ns);
  }
#define TALLY_CLUSTER_PEER_METRIC_PRINT(name, type, milli, help)                           \
  metric_head(out, #name, #type, help);                                                    \
  for (struct tally_cluster_peer *peer = NULL;                                             \
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {                       \
    peer_sample(out, #name, peer->id, figures[peer - cluster->peers].name, milli);         \
  }
  TALLY_FOREACH_CLUSTER_PEER_METRIC(TALLY_CLUSTER_PEER_METRIC_PRINT)
#undef TALLY_CLUSTER_PEER_METRIC_PRINT
}

static void rejected_metrics(struct tally_cluster *cluster, struct tally_out *out)
{
  metric_head(out, "rejected_total", "counter", "cluster datagrams refused");
  for (uint32_t r = 1; r < TALLY_REPLICATION_REASON_COUNT; r++) {
    tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\",reason=\"%s\"} %"
      PRIu64 "\n", tally_replication_reason_name(r), cluster->rejected[r]);
  }
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"heartbeat\",reason=\"any\"} %" PRIu64
    "\n", cluster->rejected[TALLY_CLUSTER_HEARTBEAT_REJECTED]);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"heartbeat\",reason=\"replayed\"} %"
    PRIu64 "\n", cluster->heartbeats_replayed);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"heartbeat\","
    "reason=\"old_incarnation\"} %" PRIu64 "\n", cluster->heartbeats_old_incarnation);
  /* The cluster thread's and the heartbeat thread's, each written by one. */
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"any\",reason=\"not_member\"} %"
    PRIu64 "\n", cluster->not_member + cluster->heartbeat_not_member);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"any\",reason=\"wrong_source\"} %"
    PRIu64 "\n", cluster->wrong_source + cluster->heartbeat_wrong_source);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\","
    "reason=\"producer_record_invalid\"} %" PRIu64 "\n", cluster->records_invalid);
  /* Replay guards (session.c; issue 14, H4). */
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\","
    "reason=\"wrong_session\"} %" PRIu64 "\n", cluster->wrong_session);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\","
    "reason=\"ack_stale\"} %" PRIu64 "\n", cluster->acks_stale);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\","
    "reason=\"request_replayed\"} %" PRIu64 "\n", cluster->requests_replayed);
}

void tally_cluster_metrics(struct tally_cluster *cluster, struct tally_out *out)
{
  pthread_mutex_lock(&cluster->lock);
  struct node_figures node = node_figures_of(cluster);
#define TALLY_CLUSTER_NODE_METRIC_PRINT(name, type, help)                                  \
  metric_head(out, #name, #type, help);                                                    \
  tally_out_printf(out, "tally_cluster_" #name " %" PRIu64 "\n", node.name);
  TALLY_FOREACH_CLUSTER_NODE_METRIC(TALLY_CLUSTER_NODE_METRIC_PRINT)
#undef TALLY_CLUSTER_NODE_METRIC_PRINT
  peer_metrics(cluster, out, tally_cluster_now_ns(cluster));
#define TALLY_CLUSTER_COUNTER_PRINT(name, help)                                            \
  metric_head(out, #name "_total", "counter", help);                                       \
  tally_out_printf(out, "tally_cluster_" #name "_total %" PRIu64 "\n",                     \
    __atomic_load_n(&cluster->name, __ATOMIC_RELAXED));
  TALLY_FOREACH_CLUSTER_COUNTER(TALLY_CLUSTER_COUNTER_PRINT)
#undef TALLY_CLUSTER_COUNTER_PRINT
  rejected_metrics(cluster, out);
  pthread_mutex_unlock(&cluster->lock);
}

/* ---- tallyctl cluster ---------------------------------------------------------- */

static const char *breaker_name(enum tally_client_breaker_state state)
{
  switch (state) {
  case TALLY_CLIENT_BREAKER_CLOSED: return "closed";
  case TALLY_CLIENT_BREAKER_OPEN: return "open";
  case TALLY_CLIENT_BREAKER_HALF_OPEN: return "half_open";
  }
  return "unknown";
}

static void describe_self(struct tally_cluster *cluster, struct tally_out *out, uint64_t now_ns)
{
  struct tally_appliance *appliance = cluster->appliance;
  bool ready = tally_lcores_running(appliance);
  tally_out_printf(out, "self %u ready=%d read_only=%d peers_up=%u write_quorum=%u"
    " compensations=%" PRIu64 " compensations_missed=%" PRIu64 " yielded=%" PRIu64
    " members=%u generation=%" PRIu64 " heartbeat_thread=%d heartbeats_misrouted=%" PRIu64
    "\n", cluster->config->node_id, ready ? 1 : 0,
    cluster->read_only || appliance->read_only_forced ? 1 : 0,
    tally_cluster_quorum_peers_up(cluster, now_ns), cluster->config->write_quorum,
    __atomic_load_n(&cluster->compensations, __ATOMIC_RELAXED),
    __atomic_load_n(&cluster->compensations_missed, __ATOMIC_RELAXED),
    __atomic_load_n(&cluster->claims_yielded, __ATOMIC_RELAXED),
    cluster->config->node_count, cluster->members->generation,
    cluster->heartbeat_own_thread ? 1 : 0,
    __atomic_load_n(&cluster->heartbeats_misrouted, __ATOMIC_RELAXED) +
      __atomic_load_n(&cluster->heartbeat_socket_foreign, __ATOMIC_RELAXED));
  if (tally_cluster_fault_active(&cluster->fault)) { /* test-only: shown only when on */
    struct tally_cluster_fault_settings fault;
    tally_cluster_fault_get(&cluster->fault, &fault);
    tally_out_printf(out, "fault delay_ms=%u jitter_ms=%u loss_permille=%u dropped=%" PRIu64
      " delayed=%" PRIu64 "\n", fault.delay_ms, fault.jitter_ms, fault.loss_permille,
      __atomic_load_n(&cluster->fault.dropped, __ATOMIC_RELAXED) +
        __atomic_load_n(&cluster->heartbeat_fault.dropped, __ATOMIC_RELAXED),
      __atomic_load_n(&cluster->fault.delayed, __ATOMIC_RELAXED) +
        __atomic_load_n(&cluster->heartbeat_fault.delayed, __ATOMIC_RELAXED));
  }
}

static void describe_peer(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  struct tally_out *out, uint64_t now_ns)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  struct tally_cluster_liveness liveness = tally_cluster_liveness_of(cluster, peer, now_ns);
  tally_out_printf(out, "peer %u state=%s phi=%.2f heartbeat_age_ms=%" PRIu64
    " sent_seq=%" PRIu64 " acked_seq=%" PRIu64 " pending=%u breaker=%s"
    " held_seq=%" PRIu64 " held_scan=%" PRIu64 " rounds_sent=%" PRIu64 " resends=%" PRIu64
    " resyncs=%" PRIu64 "\n",
    peer->id, tally_phi_state_name(liveness.state), liveness.phi, liveness.age_ms, peer->sent_seq,
    peer->acked_seq, tally_cluster_peer_lag(peer), breaker_name(peer->breaker.state),
    tally_shard_held_seq(replica), tally_shard_held_scan(replica), peer->rounds_sent,
    peer->resends, peer->resyncs);
}

static void describe_retired(struct tally_cluster *cluster, struct tally_out *out)
{
  const struct tally_store *store = &cluster->appliance->store;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    const struct tally_cluster_peer *peer = &cluster->peers[r];
    if (peer->membership != TALLY_PEER_RETIRED) continue;
    assert(tally_store_replica_bound(store, r) && store->replica_origin[r] == peer->id);
    tally_out_printf(out, "peer %u state=retired held_seq=%" PRIu64 " held_scan=%" PRIu64
      " counters=%u\n", peer->id, tally_shard_held_seq(&store->replicas[r]),
      tally_shard_held_scan(&store->replicas[r]), tally_shard_counters_used(&store->replicas[r]));
  }
}

void tally_cluster_describe(struct tally_cluster *cluster, struct tally_out *out)
{
  pthread_mutex_lock(&cluster->lock);
  uint64_t now_ns = tally_cluster_now_ns(cluster);
  describe_self(cluster, out, now_ns);
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    describe_peer(cluster, peer, out, now_ns);
  }
  describe_retired(cluster, out);
  pthread_mutex_unlock(&cluster->lock);
}

uint32_t tally_cluster_peers_behind(struct tally_cluster *cluster)
{
  pthread_mutex_lock(&cluster->lock);
  uint32_t behind = 0;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    if (!tally_cluster_peer_idle(peer)) behind++;
  }
  assert(behind <= cluster->peer_count);
  pthread_mutex_unlock(&cluster->lock);
  return behind;
}

uint32_t tally_cluster_export_copies(struct tally_cluster *cluster,
  struct tally_cluster_copy copies[TALLY_REPLICA_REGIONS_MAX], uint16_t *self, uint32_t *members)
{
  pthread_mutex_lock(&cluster->lock);
  const struct tally_store *store = &cluster->appliance->store;
  uint64_t now_ns = tally_cluster_now_ns(cluster);
  uint32_t count = 0;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    const struct tally_cluster_peer *peer = &cluster->peers[r];
    if (peer->membership == TALLY_PEER_FREE) continue;
    if (peer->membership == TALLY_PEER_ACTIVE && tally_cluster_peer_up(cluster, peer, now_ns)) {
      continue; /* it exports its own contribution, live */
    }
    assert(tally_store_replica_bound(store, r) && store->replica_origin[r] == peer->id);
    copies[count++] = (struct tally_cluster_copy){ .origin = peer->id, .replica = r,
      .scan_us = tally_shard_held_scan(&store->replicas[r]) };
  }
  *self = cluster->config->node_id;
  *members = cluster->config->node_count;
  assert(count <= TALLY_REPLICA_REGIONS_MAX && *members >= 1);
  pthread_mutex_unlock(&cluster->lock);
  return count;
}
