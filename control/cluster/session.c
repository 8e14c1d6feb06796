/*
 * session.c — the replay guards of replication (issue 14, H4), checked on
 * every authentic message from a member's own address before the file that
 * owns its kind sees it:
 *   - sessions: each process start picks a random session; a message must
 *     name ours as its peer_session (the two requests may say 0: their
 *     sender does not know it yet; a probe may name any, it is only answered
 *     with an ack of its own size), so nothing recorded before this process
 *     started is accepted;
 *   - the peer's session is learned only from the answer to our own probe
 *     (it echoes the probe's fresh nonce), so a replayed old ACK can never
 *     start a resync; a round or an ack of another session of the peer is
 *     ignored and the peer is probed again (cheap: an intact peer answers
 *     with the sequence already acked);
 *   - requests (RESTORE_REQUEST, READ_REQUEST) carry the sender's clock:
 *     served only when newer than the last one served for that peer and
 *     within TALLY_REPLICATION_REQUEST_WINDOW_MS of ours, so a replayed
 *     request makes no dump.
 * Each refusal is counted (wrong_session, acks_stale, requests_replayed).
 * Runs on the cluster thread (on the start-up thread while restoring);
 * tally_cluster_request_stamp also on the control thread (quorum reads).
 */
#include <assert.h>

#include <sodium.h>

#include "clock.h"
#include "cluster_internal.h"

uint64_t tally_cluster_session_new(void)
{
  uint64_t session = 0;
  while (session == 0) randombytes_buf(&session, sizeof session);
  assert(session != 0);
  return session;
}

uint64_t tally_cluster_request_stamp(uint64_t *last_us)
{
  uint64_t now = tally_clock_unix_ns() / 1000u;
  uint64_t last = __atomic_load_n(last_us, __ATOMIC_RELAXED);
  uint64_t stamp;
  do { /* strictly increasing, so that each request is served once */
    stamp = now > last ? now : last + 1u;
  } while (!__atomic_compare_exchange_n(last_us, &last, stamp, false, __ATOMIC_RELAXED,
    __ATOMIC_RELAXED));
  assert(stamp > 0);
  return stamp;
}

/* A request's stamp: newer than the last served for the peer, and near our clock. */
static bool request_fresh(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint32_t kind, uint64_t stamp_us)
{
  assert(kind < 2u);
  uint64_t now_us = tally_clock_unix_ns() / 1000u;
  uint64_t window_us = (uint64_t)TALLY_REPLICATION_REQUEST_WINDOW_MS * 1000u;
  bool near = stamp_us + window_us >= now_us && stamp_us <= now_us + window_us;
  if (!near || stamp_us <= peer->request_us[kind]) {
    cluster->requests_replayed++;
    return false;
  }
  peer->request_us[kind] = stamp_us;
  return true;
}

/* A round or an ack of a session of the peer other than the one we know. */
static bool other_session(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  if (peer->session == 0 || message->session == peer->session) return false;
  cluster->wrong_session++;
  if (peer->synced) tally_cluster_peer_restarted(cluster, peer); /* ask it again */
  return true;
}

/* An ack: ours, and while we probe, the answer to that very probe (its nonce). */
static bool ack_accept(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  if (!peer->synced) {
    if (peer->probe_nonce == 0 || message->scan != peer->probe_nonce) {
      cluster->acks_stale++; /* not the answer to our last probe */
      return false;
    }
    peer->session = message->session; /* the peer's session, as of now */
    peer->probe_nonce = 0;
    return true;
  }
  return !other_session(cluster, peer, message);
}

bool tally_cluster_session_accept(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  assert(cluster->session != 0);
  bool probe = message->type == TALLY_REPLICATION_ROUND && message->seq == 0;
  bool request = message->type == TALLY_REPLICATION_RESTORE_REQUEST ||
    message->type == TALLY_REPLICATION_READ_REQUEST;
  /* A probe may name any session: it is answered with an ack of its size, to the member. */
  if (message->session == 0 || (message->peer_session != cluster->session && !probe &&
      !(request && message->peer_session == 0))) {
    cluster->wrong_session++;
    return false;
  }
  switch (message->type) {
  case TALLY_REPLICATION_ROUND:
    return probe || !other_session(cluster, peer, message);
  case TALLY_REPLICATION_ACK:
    return ack_accept(cluster, peer, message);
  case TALLY_REPLICATION_RESTORE_REQUEST:
    return request_fresh(cluster, peer, TALLY_CLUSTER_REQUEST_RESTORE, message->scan);
  case TALLY_REPLICATION_READ_REQUEST:
    return request_fresh(cluster, peer, TALLY_CLUSTER_REQUEST_READ, message->scan);
  case TALLY_REPLICATION_RESTORE:
  case TALLY_REPLICATION_READ_REPLY:
    return true; /* answers: peer_session is ours, so they answer this process */
  }
  return false;
}
