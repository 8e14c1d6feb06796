/*
 * heartbeat.c — heartbeats out to every member (ready, read-only and
 * draining flags, this start's incarnation, the sender's clock) and in from
 * them: authenticated, refused unless newer than the last accepted in
 * (incarnation, send time) order (so replays of any incarnation are
 * refused), fed to the peer's phi-accrual failure detector; a newer
 * incarnation means the peer restarted, and the
 * outgoing stream probes it before sending more (peer.c). Runs on the
 * cluster thread.
 */
#include <assert.h>

#include "cluster_internal.h"
#include "heartbeat_wire.h"

void tally_cluster_heartbeat_send(struct tally_cluster *cluster)
{
  bool ready = tally_lcores_running(cluster->appliance);
  struct tally_heartbeat heartbeat = { .node_id = cluster->config->node_id,
    .flags = (uint16_t)((ready ? TALLY_HEARTBEAT_FLAG_READY : 0) |
      (cluster->read_only || cluster->appliance->read_only_forced ?
        TALLY_HEARTBEAT_FLAG_READ_ONLY : 0) |
      (cluster->appliance->draining ? TALLY_HEARTBEAT_FLAG_DRAINING : 0)),
    .generation = cluster->incarnation, .send_time_ns = tally_cluster_now_ns(cluster),
    .lsn = cluster->scans };
  uint8_t buffer[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&heartbeat, cluster->config->key, buffer);
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    tally_cluster_send(cluster, &peer->address, buffer, sizeof buffer);
  }
}

void tally_cluster_heartbeat_receive(struct tally_cluster *cluster, const uint8_t *data,
  size_t size, const struct sockaddr_in *source)
{
  struct tally_heartbeat heartbeat;
  if (tally_heartbeat_decode(data, size, cluster->config->key, &heartbeat) != TALLY_HEARTBEAT_OK) {
    cluster->rejected[TALLY_CLUSTER_HEARTBEAT_REJECTED]++;
    return;
  }
  struct tally_cluster_peer *peer = tally_cluster_peer_by_id(cluster, heartbeat.node_id);
  if (peer == NULL) { /* authentic, but not a member (retired, or not added here yet) */
    cluster->not_member++;
    return;
  }
  if (!tally_cluster_source_ok(cluster, &peer->address, source, true)) return;
  /*
   * Replay protection (issue 14, M3): a sender's heartbeats are ordered by
   * (incarnation, send_time_ns). The incarnation only grows across its
   * restarts (its start time, cluster.c) and within one incarnation its
   * monotonic clock only goes forward, so a heartbeat not newer than the last
   * one accepted is an old datagram (duplicated by the network, or replayed,
   * of this incarnation or an earlier one) and must neither keep a dead peer
   * looking alive nor make it look restarted.
   */
  if (heartbeat.generation < peer->incarnation) {
    cluster->heartbeats_old_incarnation++;
    return;
  }
  if (peer->incarnation == heartbeat.generation && heartbeat.send_time_ns <= peer->heartbeat_sent_ns) {
    cluster->heartbeats_replayed++;
    return;
  }
  peer->heartbeat_sent_ns = heartbeat.send_time_ns;
  tally_phi_detector_heartbeat(&peer->detector, tally_cluster_now_ns(cluster));
  peer->flags = heartbeat.flags;
  if (peer->incarnation != heartbeat.generation) {
    /*
     * The peer started again (a new incarnation): what it holds of this node
     * may be gone. Ask (a probe) before sending more; an intact store answers
     * with the sequence already acked and nothing is resent.
     */
    if (peer->incarnation != 0) cluster->peer_restarts++;
    if (peer->incarnation != 0 && peer->synced) tally_cluster_peer_restarted(cluster, peer);
    peer->incarnation = heartbeat.generation;
  }
  peer->heartbeats_in++;
}
