/*
 * quorum.c — the write-quorum bookkeeping: which peers are up (the failure
 * detector), which can hold this node's writes (up, and answering its rounds
 * within TALLY_REPLICATION_STALL_MS), whether a write quorum is reachable at
 * all (read_only, read by the lcores), and per lcore how far reliable batches
 * are held by W - 1 peers (quorum_seq: the lcores' acks wait for it), and
 * how far each claims ring may be sent (claims wait for their values to be
 * held by W - 1 peers too). Runs on
 * the cluster thread; peers_up also on the control and HTTP threads under
 * `lock` (report.c). The detectors are the heartbeat thread's: read through
 * tally_cluster_peer_up, under liveness_lock (heartbeat.c).
 */
#include <assert.h>
#include <stdio.h>

#include "cluster_internal.h"

uint32_t tally_cluster_quorum_peers_up(struct tally_cluster *cluster, uint64_t now_ns)
{
  uint32_t up = 0;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    if (tally_cluster_peer_up(cluster, peer, now_ns)) up++;
  }
  assert(up <= cluster->peer_count);
  return up;
}

/*
 * Peers that can hold this node's writes: up, and answering its rounds. A
 * peer that has not answered a round (or a probe) for
 * TALLY_REPLICATION_STALL_MS does not count, even if its heartbeats arrive:
 * this node cannot get its writes held there (a one-way or muted link, a
 * peer stuck).
 */
static uint32_t peers_writable(struct tally_cluster *cluster, uint64_t now_ns)
{
  uint64_t now = now_ns / 1000000u;
  uint32_t writable = 0;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    bool stalled = peer->waiting_since_ms != 0 && now > peer->waiting_since_ms &&
      now - peer->waiting_since_ms > TALLY_REPLICATION_STALL_MS;
    if (!stalled && tally_cluster_peer_up(cluster, peer, now_ns)) writable++;
  }
  assert(writable <= cluster->peer_count);
  return writable;
}

/* W = 1 (it may change at runtime): this node alone holds enough. */
static void quorum_alone(struct tally_appliance *appliance)
{
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    uint64_t applied = __atomic_load_n(&appliance->lcores[l].stats.applied_seq, __ATOMIC_ACQUIRE);
    if (applied > appliance->lcores[l].quorum_seq) {
      __atomic_store_n(&appliance->lcores[l].quorum_seq, applied, __ATOMIC_RELEASE);
    }
  }
}

/*
 * The needed-th highest of a position the members hold: of lcore l's applied
 * sequence (claims false) or of claims ring l (claims true).
 */
static uint64_t quorum_of(struct tally_cluster *cluster, uint32_t l, uint32_t needed, bool claims)
{
  uint64_t values[TALLY_REPLICA_REGIONS_MAX];
  uint32_t count = 0;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    values[count++] = claims ? peer->claims_held[l] : peer->confirmed[l];
  }
  assert(count == cluster->peer_count);
  assert(needed >= 1 && needed <= count);
  for (uint32_t i = 1; i < count; i++) { /* insertion sort, descending */
    for (uint32_t j = i; j > 0 && values[j] > values[j - 1]; j--) {
      uint64_t swap = values[j];
      values[j] = values[j - 1];
      values[j - 1] = swap;
    }
  }
  return values[needed - 1];
}

void tally_cluster_quorum_update(struct tally_cluster *cluster)
{
  struct tally_appliance *appliance = cluster->appliance;
  uint32_t needed = cluster->config->write_quorum - 1u; /* peers besides this node */
  assert(needed <= cluster->peer_count);
  bool read_only = peers_writable(cluster, tally_cluster_now_ns(cluster)) < needed;
  if (read_only != cluster->read_only) {
    __atomic_store_n(&cluster->read_only, read_only, __ATOMIC_RELAXED);
    fprintf(stderr, "tallyd: cluster: %s\n", read_only ?
      "write quorum lost: read-only for reliable writes" : "write quorum reached: writable");
  }
  tally_cluster_quorum_claims_update(cluster);
  if (needed == 0) {
    quorum_alone(appliance);
    return;
  }
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    uint64_t quorum = quorum_of(cluster, l, needed, false);
    if (quorum > appliance->lcores[l].quorum_seq) {
      __atomic_store_n(&appliance->lcores[l].quorum_seq, quorum, __ATOMIC_RELEASE);
    }
  }
}

/*
 * How far each claims ring may go to any peer (claims_quorum): below the
 * rings' position noted by a scan whose values W - 1 peers confirmed. A claim
 * makes a peer undo its own apply of the batch, which is then counted only in
 * this node's contribution; were that held by fewer than W nodes, a restore
 * of this node from N - W + 1 peers could miss it and the batch, acked or
 * not, would be counted nowhere (the chaos soak at W = 3 found it).
 */
void tally_cluster_quorum_claims_update(struct tally_cluster *cluster)
{
  uint32_t needed = cluster->config->write_quorum - 1u;
  assert(needed <= cluster->peer_count);
  for (uint32_t r = 0; r < TALLY_CLUSTER_CLAIM_RINGS_MAX; r++) {
    uint64_t held = needed == 0 ? cluster->claims_capture[r] : quorum_of(cluster, r, needed, true);
    cluster->claims_quorum[r] = held < cluster->claims_capture[r] ? held : cluster->claims_capture[r];
  }
}
