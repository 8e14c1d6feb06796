/*
 * stream_out.c — the outgoing replication stream: this node's contribution
 * to each peer, one round in flight per peer (stop-and-wait, link sequence
 * numbers), each as full as one datagram allows (TALLY_REPLICATION_SIZE_MAX),
 * filled from the list the last scan planned (cluster_scan.c) in
 * list-part order (undone records, priority counters, records, claims: the
 * last of those carries LAST, and its ack moves quorum_seq; then the bulk of
 * statsd-only counters, ending with LAST again), resent after
 * TALLY_REPLICATION_TIMEOUT_MS with backoff and full jitter behind a circuit
 * breaker, and advanced by the peer's acks; a probe (a round with seq 0)
 * asks an unsynced peer what it holds. Runs on the cluster thread.
 */
#include <assert.h>

#include "cluster_internal.h"

/* The acked round's entries leave the list; the counters' values are now the peer's. */
static void advance(struct tally_cluster_peer *peer)
{
  assert(peer->message_count <= tally_cluster_peer_part_left(peer,
    (enum tally_list_part)peer->message_part));
  switch ((enum tally_list_part)peer->message_part) {
  case TALLY_LIST_UNDONE:
    peer->undone_pending_next += peer->message_count;
    break;
  case TALLY_LIST_COUNTERS:
  case TALLY_LIST_BULK:
    for (uint32_t i = 0; i < peer->message_count; i++) {
      peer->acked_value[peer->message_index[i]] = peer->message_value[i];
      peer->acked_known[peer->message_index[i]] = 1;
    }
    if (peer->message_part == TALLY_LIST_BULK) {
      peer->bulk_pending_next += peer->message_count;
    } else {
      peer->pending_next += peer->message_count;
    }
    break;
  case TALLY_LIST_PRODUCERS:
    peer->producers_pending_next += peer->message_count;
    break;
  case TALLY_LIST_CLAIMS:
    peer->claims_pending_next += peer->message_count;
    break;
  }
}

void tally_cluster_stream_out_ack(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t held)
{
  tally_breaker_success(&peer->breaker);
  peer->waiting_since_ms = 0; /* it answers */
  if (!peer->synced) {
    bool same_state = peer->was_synced && held == peer->acked_seq;
    peer->synced = true;
    peer->was_synced = true;
    if (same_state) return; /* it restarted with its store intact: go on */
    peer->acked_seq = held;
    tally_cluster_peer_reset(cluster, peer);
    return;
  }
  if (peer->sent_seq != 0 && held == peer->sent_seq) {
    advance(peer);
    peer->acked_seq = held;
    peer->sent_seq = 0;
    peer->retries = 0;
    peer->rounds_acked++;
    /* A LAST round's ack: the peer's table has every round acked before it. */
    peer->unsealed_rounds = peer->message_last ? 0 : peer->unsealed_rounds + 1u;
    if (!peer->list_confirmed && peer->unsealed_rounds == 0 &&
        tally_cluster_peer_part_next(peer, 0) >= TALLY_LIST_BULK) {
      tally_cluster_peer_confirm(cluster, peer); /* quorum_seq may move: bulk need not end */
    }
    if (tally_cluster_peer_list_done(peer)) peer->pending_valid = false;
    tally_cluster_peer_assert_invariants(cluster, peer);
    return;
  }
  if (held == peer->acked_seq) return; /* an old ack, or the round was refused: resend */
  if (held < peer->acked_seq) {
    /*
     * Below what this session of the peer acked: a replayed or reordered old
     * ack (a peer that lost its state is a new session, probed first), never
     * a reason to start over (issue 14, H4).
     */
    cluster->acks_stale++;
    return;
  }
  peer->acked_seq = held;              /* the peer lost or moved its state: start over */
  tally_cluster_peer_reset(cluster, peer);
}

/* Fills a round with producer records (undone or applied) as the list was planned. */
static void fill_records(const struct tally_replication_producer *pending, uint32_t left,
  struct tally_replication_message *round)
{
  assert(left >= 1);
  round->flags = TALLY_REPLICATION_FLAG_PRODUCERS;
  while (round->count < TALLY_REPLICATION_PRODUCERS_MAX && round->count < left) {
    assert(pending[round->count].producer != 0);
    round->producers[round->count] = pending[round->count];
    round->count++;
  }
  assert(round->count >= 1);
}

/*
 * Fills a round with counters, priority (snapshot indexes) or bulk
 * (positions[] indexes), as many as fit one datagram (issue 12: by size, not
 * a fixed count).
 */
static void fill_counters(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint32_t left, bool bulk, struct tally_replication_message *round)
{
  const uint32_t *pending = bulk ? peer->bulk_pending + peer->bulk_pending_next :
    peer->pending + peer->pending_next;
  const int64_t *values = bulk ? peer->bulk_pending_value + peer->bulk_pending_next :
    peer->pending_value + peer->pending_next;
  size_t body = 0;
  while (round->count < TALLY_REPLICATION_ENTRIES_MAX && round->count < left) {
    uint32_t position = bulk ? cluster->positions[pending[round->count]] : pending[round->count];
    int64_t value = values[round->count]; /* as planned */
    body += tally_replication_entry_size(cluster->name_lens[position]);
    if (body > TALLY_REPLICATION_BODY_MAX) break;
    peer->message_index[round->count] = position;
    peer->message_value[round->count] = value;
    round->entries[round->count] = (struct tally_replication_entry){
      .name = cluster->names[position], .name_len = cluster->name_lens[position],
      .value = value, .owner_class = cluster->owner_classes[position] };
    round->count++;
  }
}

/* Fills a round from the first list part with entries left (enum tally_list_part order). */
static void fill_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  struct tally_replication_message *round)
{
  uint32_t next = tally_cluster_peer_part_next(peer, 0);
  assert(next < TALLY_LIST_PARTS);
  enum tally_list_part part = (enum tally_list_part)next;
  peer->message_part = (uint8_t)part;
  uint32_t left = tally_cluster_peer_part_left(peer, part);
  assert(left >= 1);
  if (part == TALLY_LIST_UNDONE) {
    fill_records(peer->undone_pending + peer->undone_pending_next, left, round);
  } else if (part == TALLY_LIST_COUNTERS || part == TALLY_LIST_BULK) {
    fill_counters(cluster, peer, left, part == TALLY_LIST_BULK, round);
  } else if (part == TALLY_LIST_PRODUCERS) {
    fill_records(peer->producers_pending + peer->producers_pending_next, left, round);
  } else {
    round->flags = TALLY_REPLICATION_FLAG_CLAIMS;
    while (round->count < TALLY_REPLICATION_CLAIMS_MAX && round->count < left) {
      round->claims[round->count] = peer->claims_pending[peer->claims_pending_next + round->count];
      round->count++;
    }
  }
  assert(round->count >= 1 && round->count <= left);
  /* LAST ends the priority parts (quorum_seq waits for it), and again the bulk part. */
  bool last = round->count == left && (part == TALLY_LIST_BULK ||
    tally_cluster_peer_part_next(peer, next + 1u) >= TALLY_LIST_BULK);
  if (last) round->flags |= TALLY_REPLICATION_FLAG_LAST; /* the peer commits what it staged */
  peer->message_last = last;
}

static void send_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t now)
{
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id,
    .seq = peer->acked_seq + 1, .scan = peer->list_scan, .session = cluster->session,
    .peer_session = peer->session };
  fill_round(cluster, peer, &round);
  peer->message_count = round.count;
  peer->message_size = tally_replication_encode(&round, cluster->config->key, peer->message,
    sizeof peer->message);
  assert(peer->message_size > 0);
  peer->sent_seq = round.seq;
  peer->sent_ms = now;
  if (peer->waiting_since_ms == 0) peer->waiting_since_ms = now;
  peer->resend_ms = now + TALLY_REPLICATION_TIMEOUT_MS;
  peer->rounds_sent++;
  tally_cluster_peer_assert_invariants(cluster, peer);
  tally_cluster_send(cluster, &peer->address, peer->message, peer->message_size);
}

/* Unanswered (a round in flight, or a probe): resend or probe again once due. */
static void resend(struct tally_cluster *cluster, struct tally_cluster_peer *peer, uint64_t now)
{
  bool probe = false;
  if (now < peer->resend_ms) return;
  if (peer->sent_seq != 0 || peer->retries > 0) tally_breaker_failure(&peer->breaker, now);
  if (!tally_breaker_acquire(&peer->breaker, now, &probe)) return;
  peer->retries++;
  peer->resend_ms = now + TALLY_REPLICATION_TIMEOUT_MS + tally_backoff_delay_ms(
    TALLY_REPLICATION_TIMEOUT_MS, TALLY_REPLICATION_BACKOFF_MAX_MS, peer->retries,
    tally_cluster_next_random(cluster));
  if (!peer->synced) {
    /* Only the answer echoing this probe's fresh nonce is taken (session.c). */
    peer->probe_nonce = tally_cluster_session_new();
    struct tally_replication_message hello = { .type = TALLY_REPLICATION_ROUND,
      .origin = cluster->config->node_id, .sender = cluster->config->node_id, .seq = 0,
      .scan = peer->probe_nonce, .session = cluster->session, .peer_session = peer->session };
    if (peer->waiting_since_ms == 0) peer->waiting_since_ms = now;
    tally_cluster_send_message(cluster, &peer->address, &hello); /* answered with what it holds */
  } else {
    peer->resends++;
    tally_cluster_send(cluster, &peer->address, peer->message, peer->message_size);
  }
}

void tally_cluster_stream_out_pump(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t now_ms)
{
  assert(tally_cluster_peer_active(peer));
  if (!peer->synced || peer->sent_seq != 0) {
    resend(cluster, peer, now_ms);
    return;
  }
  bool probe = false;
  /* Log mode: nothing of a scan leaves before this node's log holds it (cluster_log.h). */
  if (peer->pending_valid && !tally_cluster_peer_list_done(peer) &&
      tally_cluster_log_scan_durable(&cluster->log, cluster->appliance) &&
      tally_breaker_acquire(&peer->breaker, now_ms, &probe)) {
    send_round(cluster, peer, now_ms);
  }
}
