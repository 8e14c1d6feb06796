/*
 * cluster_internal.h — what the cluster's files call of each other, by file,
 * and the small helpers every one of them sends through (inline, so that no
 * two files call each other: the calls between files run one way, from the
 * thread's loop in cluster.c down to peer.c and the codecs).
 *
 *   cluster.c ──► heartbeat.c, heartbeat_thread.c, stream_out.c, stream_in.c,
 *                 quorum.c, cluster_scan.c, cluster_members.c, restore.c, io_*.c
 *   heartbeat_thread.c ──► heartbeat.c, io_*.c
 *   quorum.c, report.c ──► heartbeat.c (liveness, under liveness_lock)
 *   restore.c ──► stream_in.c (serves peers restoring at the same time)
 *   report.c  ──► quorum.c (peers up)
 *   stream_*.c, heartbeat.c, quorum*.c, report.c, restore.c, cluster_scan.c,
 *   cluster_members.c ──► peer.c
 *   peer.c, stream_in.c, cluster_scan.c, restore.c ──► cluster_dedup.c
 *   cluster.c, restore.c ──► session.c ──► peer.c
 *   io_fault.c ──► cluster_fault.c;  cluster_dedup.c ──► journal_index.c
 */
#ifndef TALLY_CLUSTER_INTERNAL_H
#define TALLY_CLUSTER_INTERNAL_H

#include <assert.h>

#include "cluster.h"

/* ---- Sending, the clock, jitter (inline: any of the cluster's files) ---------- */

/* Every datagram of the cluster leaves here, through cluster->io. */
static inline void tally_cluster_send(struct tally_cluster *cluster,
  const struct sockaddr_in *address, const uint8_t *data, size_t size)
{
  assert(size > 0 && size <= TALLY_REPLICATION_SIZE_MAX);
  tally_cluster_io_send(&cluster->io, address, data, size);
}

static inline void tally_cluster_send_message(struct tally_cluster *cluster,
  const struct sockaddr_in *address, const struct tally_replication_message *message)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
  assert(message->session == cluster->session && message->session != 0);
  size_t size = tally_replication_encode(message, cluster->config->key, buffer, sizeof buffer);
  assert(size > 0);
  tally_cluster_send(cluster, address, buffer, size);
}

static inline uint64_t tally_cluster_now_ns(const struct tally_cluster *cluster)
{
  return tally_cluster_io_now_ns(&cluster->io);
}

static inline uint64_t tally_cluster_now_ms(const struct tally_cluster *cluster)
{
  return tally_cluster_now_ns(cluster) / 1000000ull;
}

/* xorshift64*: jitter only, not security. The cluster thread's. */
static inline uint64_t tally_cluster_next_random(struct tally_cluster *cluster)
{
  uint64_t x = cluster->random_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  cluster->random_state = x;
  return x * 2685821657736338717ull;
}

/*
 * Whether a member's datagram comes from its configured address (issue 14,
 * H4): the IP always, the port too unless any_port (quorum reads and
 * heartbeats replayed by tests come from other sockets on the member's IP).
 * Counted in wrong_source when not.
 */
static inline bool tally_cluster_source_ok(struct tally_cluster *cluster,
  const struct sockaddr_in *configured, const struct sockaddr_in *source, bool any_port)
{
  if (source->sin_addr.s_addr == configured->sin_addr.s_addr &&
      (any_port || source->sin_port == configured->sin_port)) {
    return true;
  }
  cluster->wrong_source++;
  return false;
}

/*
 * Whether every producer record of a message can be a dedup state
 * (tally_replication_producer_valid); counted in records_invalid when not,
 * and the whole message is then ignored (issue 14, L3).
 */
static inline bool tally_cluster_records_ok(struct tally_cluster *cluster,
  const struct tally_replication_message *message)
{
  if ((message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) == 0) return true;
  for (uint32_t i = 0; i < message->count; i++) {
    if (!tally_replication_producer_valid(&message->producers[i])) {
      cluster->records_invalid++;
      return false;
    }
  }
  return true;
}

/* ---- peer.c: a peer slot's life (see struct tally_cluster_peer) ------------------ */

/* A member by node id (a retired node is not one: NULL). */
struct tally_cluster_peer *tally_cluster_peer_by_id(struct tally_cluster *cluster, uint16_t id);
/* Every member, in slot order: for (p = NULL; (p = tally_cluster_next_active(c, p));) */
struct tally_cluster_peer *tally_cluster_next_active(struct tally_cluster *cluster,
  struct tally_cluster_peer *after);
/* Entries of a list part the peer has not acked yet. */
uint32_t tally_cluster_peer_part_left(const struct tally_cluster_peer *peer,
  enum tally_list_part part);
/* The first part (from `from` on) with entries left; TALLY_LIST_PARTS if none. */
uint32_t tally_cluster_peer_part_next(const struct tally_cluster_peer *peer, uint32_t from);
bool tally_cluster_peer_list_done(const struct tally_cluster_peer *peer);
/* Lag: counters (priority and bulk), producer records and claims of the list not acked. */
uint32_t tally_cluster_peer_lag(const struct tally_cluster_peer *peer);
/* Synced, no list, nothing in flight: ready for the next scan's list. */
bool tally_cluster_peer_idle(const struct tally_cluster_peer *peer);
/* Every field's invariant (cluster.h), checked together; aborts on a violation. */
void tally_cluster_peer_assert_invariants(const struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer);
/* The slot's lists, allocated once (kept when it retires), and freed. */
int tally_cluster_peer_allocate(struct tally_cluster *cluster, struct tally_cluster_peer *peer);
void tally_cluster_peer_free(struct tally_cluster_peer *peer);
/*
 * A fresh state on slot r for node id: nothing known of it, so it is probed
 * and, at its first answer, sent this node's whole contribution (a fresh
 * slot has never been synced, so that answer always starts the stream over),
 * its producer records and every claim the rings still hold.
 */
void tally_cluster_peer_activate(struct tally_cluster *cluster, uint32_t r, uint16_t id,
  const struct sockaddr_in *address, const struct tally_phi_params *params);
/* A member's address and detector settings after a reload. */
void tally_cluster_peer_retune(struct tally_cluster_peer *peer,
  const struct sockaddr_in *address, const struct tally_phi_params *params);
/* Stops everything to and from the node; its table and lists stay. */
void tally_cluster_peer_retire(struct tally_cluster *cluster, struct tally_cluster_peer *peer);
/* At start: a bound region whose node is not a member. */
void tally_cluster_peer_retired_slot(struct tally_cluster *cluster, uint32_t r, uint16_t id);
/* The peer lost or moved its state: the list starts over from nothing known. */
void tally_cluster_peer_reset(struct tally_cluster *cluster, struct tally_cluster_peer *peer);
/* The peer restarted (a new incarnation): probe before sending more. */
void tally_cluster_peer_restarted(struct tally_cluster *cluster, struct tally_cluster_peer *peer);
/*
 * The list's priority parts are in the peer's table (acked, and no acked
 * round waits for a LAST there): what they confirm becomes the peer's (the
 * capture, hence quorum_seq; the records and claims planned).
 */
void tally_cluster_peer_confirm(struct tally_cluster *cluster, struct tally_cluster_peer *peer);

/* ---- stream_out.c: this node's contribution to each peer ------------------------- */

/* A peer's ack: it holds `held` of this node's stream. */
void tally_cluster_stream_out_ack(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t held);
/* Sends the next round, a resend or a probe to the peer, as due at now_ms. */
void tally_cluster_stream_out_pump(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t now_ms);

/* ---- stream_in.c: peers' streams into this node, and requests served ------------ */

/* A peer's round of its contribution: staged, committed at its list's last round, acked. */
/* Log mode: sends the deferred ACKs now durable; true while some still wait. */
bool tally_cluster_stream_in_deferred_acks(struct tally_cluster *cluster);
void tally_cluster_stream_in_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message);
/* A restoring peer asked for our copy of its contribution: sent part by part. */
void tally_cluster_stream_in_restore_request(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer, const struct tally_replication_message *request);
/* A quorum read (from a peer's control thread): every copy of the counter held here. */
void tally_cluster_stream_in_read_request(struct tally_cluster *cluster,
  const struct tally_replication_message *request, const struct sockaddr_in *source);

/* ---- heartbeat.c: any thread, under liveness_lock (taken inside) ------------------- */

/*
 * Sends a heartbeat to every member through io if one is due at now_ms;
 * returns the ms until the next is due. The heartbeat thread (its own io),
 * or the cluster thread's tick when there is none (cluster->io).
 */
uint64_t tally_cluster_heartbeat_due(struct tally_cluster *cluster,
  const struct tally_cluster_io *io, uint64_t now_ms);
/* One datagram that starts with the heartbeat magic: checked, fed to the detector. */
void tally_cluster_heartbeat_receive(struct tally_cluster *cluster, const uint8_t *data,
  size_t size, const struct sockaddr_in *source);
/* The cluster thread: probes again each peer whose restart the heartbeats showed. */
void tally_cluster_heartbeat_restarts(struct tally_cluster *cluster);
/* A member's liveness now, read under liveness_lock (any thread). */
struct tally_cluster_liveness {
  enum tally_phi_state state;
  double phi;
  uint64_t age_ms;                    /* since its last heartbeat; 0: none yet */
};
struct tally_cluster_liveness tally_cluster_liveness_of(struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer, uint64_t now_ns);
/* Whether the failure detector says the member is up now (any thread). */
bool tally_cluster_peer_up(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  uint64_t now_ns);

/* ---- heartbeat_thread.c ------------------------------------------------------------- */

/* Start-up: the heartbeat socket's fault layer over it (needs heartbeat_udp open). */
int tally_cluster_heartbeat_open(struct tally_cluster *cluster, char *error, size_t error_size);
/* Starts and stops the thread (no-ops without heartbeat_own_thread). 0 or -1. */
int tally_cluster_heartbeat_start(struct tally_cluster *cluster);
void tally_cluster_heartbeat_stop(struct tally_cluster *cluster);
/* After stop: the socket and the fault queue (idempotent). */
void tally_cluster_heartbeat_release(struct tally_cluster *cluster);

/* ---- quorum.c ------------------------------------------------------------------------ */

/* Members the failure detector says are up. */
uint32_t tally_cluster_quorum_peers_up(struct tally_cluster *cluster, uint64_t now_ns);
/* read_only, and each lcore's quorum_seq, from the peers' state now. */
void tally_cluster_quorum_update(struct tally_cluster *cluster);

/* ---- restore.c ------------------------------------------------------------------------ */

/* Start-up: this node's contribution from N - W + 1 peers (blocking). 0 or -1 with error. */
int tally_cluster_restore(struct tally_cluster *cluster, char *error, size_t error_size);

/* ---- session.c: replay guards (issue 14, H4) ----------------------------------------- */

/* A random session, never 0 (one per process start). */
uint64_t tally_cluster_session_new(void);
/* A request's clock stamp (unix microseconds), above *last_us, which it becomes (atomic). */
uint64_t tally_cluster_request_stamp(uint64_t *last_us);
/*
 * Whether an authentic message from the member's address belongs to this
 * process's sessions and is no replay (see session.c); counted when not.
 */
bool tally_cluster_session_accept(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message);

/* ---- io_fault.c ------------------------------------------------------------------------ */

/* The fault stage from cluster.fault_* (announced when on). 0 or -1 with error. */
int tally_cluster_fault_open(struct tally_cluster *cluster, char *error, size_t error_size);
/* Another stage with the same settings and a queue of its own (the heartbeat socket's). */
int tally_cluster_fault_open_beside(struct tally_cluster *cluster,
  struct tally_cluster_fault *fault, char *error, size_t error_size);

/* ---- cluster_scan.c: what tally_cluster_close frees (cluster_dedup.c's: cluster.h) ---- */

void tally_cluster_snapshot_close(struct tally_cluster *cluster);
/*
 * Gives each peer that takes one the list of the last scan (every tick: an
 * idle peer, or one with only bulk left and nothing in flight; issue 12).
 */
void tally_cluster_plan(struct tally_cluster *cluster);

#endif
