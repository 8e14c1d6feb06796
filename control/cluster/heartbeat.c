/*
 * heartbeat.c — heartbeats out to every member (ready, read-only and
 * draining flags, this start's incarnation, the sender's clock) and in from
 * them: authenticated, refused unless newer than the last accepted in
 * (incarnation, send time) order (so replays of any incarnation are
 * refused), fed to the peer's phi-accrual failure detector; a newer
 * incarnation means the peer restarted, and the cluster thread's outgoing
 * stream probes it before sending more (tally_cluster_heartbeat_restarts,
 * peer.c). Also the liveness other files read (quorum.c, report.c).
 *
 * Runs on the heartbeat thread (heartbeat_thread.c), or on the cluster
 * thread when there is none (tests over a fake network); the readers run on
 * the cluster, control and HTTP threads. Every function takes
 * cluster->liveness_lock itself, for short, bounded work (cluster.h).
 */
#include <assert.h>

#include "cluster_internal.h"
#include "heartbeat_wire.h"

static void heartbeat_send(struct tally_cluster *cluster, const struct tally_cluster_io *io)
{
  bool ready = tally_lcores_running(cluster->appliance);
  bool read_only = __atomic_load_n(&cluster->read_only, __ATOMIC_RELAXED) ||
    cluster->appliance->read_only_forced;
  struct tally_heartbeat heartbeat = { .node_id = cluster->config->node_id,
    .flags = (uint16_t)((ready ? TALLY_HEARTBEAT_FLAG_READY : 0) |
      (read_only ? TALLY_HEARTBEAT_FLAG_READ_ONLY : 0) |
      (cluster->appliance->draining ? TALLY_HEARTBEAT_FLAG_DRAINING : 0)),
    .generation = cluster->incarnation, .send_time_ns = tally_cluster_io_now_ns(io),
    .lsn = __atomic_load_n(&cluster->scans_published, __ATOMIC_RELAXED) };
  uint8_t buffer[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&heartbeat, cluster->config->key, buffer);
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    tally_cluster_io_send(io, &peer->address, buffer, sizeof buffer);
  }
}

uint64_t tally_cluster_heartbeat_due(struct tally_cluster *cluster,
  const struct tally_cluster_io *io, uint64_t now_ms)
{
  pthread_mutex_lock(&cluster->liveness_lock);
  uint32_t interval_ms = cluster->config->heartbeat_interval_ms;
  assert(interval_ms >= 1);
  if (now_ms >= cluster->next_heartbeat_ms) {
    heartbeat_send(cluster, io);
    cluster->next_heartbeat_ms = now_ms + interval_ms;
  }
  assert(cluster->next_heartbeat_ms > now_ms);
  uint64_t until_ms = cluster->next_heartbeat_ms - now_ms;
  pthread_mutex_unlock(&cluster->liveness_lock);
  return until_ms < interval_ms ? until_ms : interval_ms; /* (an interval shortened by a reload) */
}

/* Under liveness_lock: the checks after the MAC, and the detector fed. */
static void heartbeat_accept(struct tally_cluster *cluster, const struct tally_heartbeat *heartbeat,
  const struct sockaddr_in *source)
{
  struct tally_cluster_peer *peer = tally_cluster_peer_by_id(cluster, heartbeat->node_id);
  if (peer == NULL) { /* authentic, but not a member (retired, or not added here yet) */
    cluster->heartbeat_not_member++;
    return;
  }
  /* From the member's IP, any port (tests replay from other sockets; issue 14, H4). */
  if (source->sin_addr.s_addr != peer->address.sin_addr.s_addr) {
    cluster->heartbeat_wrong_source++;
    return;
  }
  /*
   * Replay protection (issue 14, M3): a sender's heartbeats are ordered by
   * (incarnation, send_time_ns). The incarnation only grows across its
   * restarts (its start time, cluster.c) and within one incarnation its
   * monotonic clock only goes forward, so a heartbeat not newer than the last
   * one accepted is an old datagram (duplicated by the network, or replayed,
   * of this incarnation or an earlier one) and must neither keep a dead peer
   * looking alive nor make it look restarted.
   */
  if (heartbeat->generation < peer->incarnation) {
    cluster->heartbeats_old_incarnation++;
    return;
  }
  if (peer->incarnation == heartbeat->generation &&
      heartbeat->send_time_ns <= peer->heartbeat_sent_ns) {
    cluster->heartbeats_replayed++;
    return;
  }
  peer->heartbeat_sent_ns = heartbeat->send_time_ns;
  tally_phi_detector_heartbeat(&peer->detector, tally_cluster_now_ns(cluster));
  peer->flags = heartbeat->flags;
  if (peer->incarnation != heartbeat->generation) {
    /*
     * The peer started again (a new incarnation): what it holds of this node
     * may be gone. The cluster thread asks (a probe) before sending more; an
     * intact store answers with the sequence already acked, nothing resent.
     */
    if (peer->incarnation != 0) {
      __atomic_fetch_add(&cluster->peer_restarts, 1, __ATOMIC_RELAXED);
      peer->restarts_seen++;
    }
    peer->incarnation = heartbeat->generation;
  }
  peer->heartbeats_in++;
}

void tally_cluster_heartbeat_receive(struct tally_cluster *cluster, const uint8_t *data,
  size_t size, const struct sockaddr_in *source)
{
  pthread_mutex_lock(&cluster->liveness_lock);
  struct tally_heartbeat heartbeat;
  if (tally_heartbeat_decode(data, size, cluster->config->key, &heartbeat) != TALLY_HEARTBEAT_OK) {
    cluster->rejected[TALLY_CLUSTER_HEARTBEAT_REJECTED]++;
  } else {
    heartbeat_accept(cluster, &heartbeat, source);
  }
  pthread_mutex_unlock(&cluster->liveness_lock);
}

void tally_cluster_heartbeat_restarts(struct tally_cluster *cluster)
{
  struct tally_cluster_peer *restarted[TALLY_REPLICA_REGIONS_MAX];
  uint32_t count = 0;
  pthread_mutex_lock(&cluster->liveness_lock);
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    if (peer->restarts_seen == peer->restarts_handled) continue;
    assert(peer->restarts_seen > peer->restarts_handled);
    peer->restarts_handled = peer->restarts_seen;
    restarted[count++] = peer;
  }
  pthread_mutex_unlock(&cluster->liveness_lock);
  assert(count <= TALLY_REPLICA_REGIONS_MAX);
  /* The stream is the cluster thread's: no lock needed for it. */
  for (uint32_t i = 0; i < count; i++) {
    if (restarted[i]->synced) tally_cluster_peer_restarted(cluster, restarted[i]);
  }
}

struct tally_cluster_liveness tally_cluster_liveness_of(struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer, uint64_t now_ns)
{
  pthread_mutex_lock(&cluster->liveness_lock);
  uint64_t last = tally_phi_detector_last_heartbeat_ns(&peer->detector);
  struct tally_cluster_liveness liveness = {
    .state = tally_phi_detector_state(&peer->detector, now_ns),
    .phi = tally_phi_detector_phi(&peer->detector, now_ns),
    .age_ms = last == 0 || now_ns < last ? 0 : (now_ns - last) / 1000000u,
  };
  pthread_mutex_unlock(&cluster->liveness_lock);
  return liveness;
}

bool tally_cluster_peer_up(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  uint64_t now_ns)
{
  pthread_mutex_lock(&cluster->liveness_lock);
  bool up = tally_phi_detector_state(&peer->detector, now_ns) == TALLY_PHI_UP;
  pthread_mutex_unlock(&cluster->liveness_lock);
  return up;
}
