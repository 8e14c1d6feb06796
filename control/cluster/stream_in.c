/*
 * stream_in.c — what peers send this node, answered from its store: each
 * peer's stream of its contribution, staged round by round (replica_stage.c)
 * and committed to the peer's replica table at its list's last round, then
 * acked; a gap, a resend or a probe is answered with the sequence held. And
 * the requests served from the replica tables: a restoring peer's request
 * for our copy of its contribution, and a quorum read's request for every
 * copy of one counter. Runs on the cluster thread (restore requests also on
 * the start-up thread while this node restores, restore.c).
 */
#include <assert.h>

#include "cluster_internal.h"

static_assert(TALLY_REPLICATION_CLASS_RELIABLE == TALLY_CLASS_RELIABLE, "the wire's class byte");
#include "store_format.h"
#include "tally/name.h"

/*
 * The answer to a round: it echoes the round's session and scan (a probe's
 * nonce). Log mode: deferred while what it says this node holds is not
 * durable yet (cluster_log.h); the newest round's scan and session are kept
 * for it.
 */
static void send_ack(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t scan, uint64_t peer_session, uint64_t held)
{
  if (!tally_cluster_log_durable(&cluster->log, peer->log_ticket)) {
    if (peer->ack_deferred == 0) cluster->log.acks_deferred++;
    peer->ack_deferred = held > peer->ack_deferred ? held : peer->ack_deferred;
    peer->ack_deferred_scan = scan;
    peer->ack_deferred_session = peer_session;
    return;
  }
  peer->ack_deferred = 0;
  struct tally_replication_message ack = { .type = TALLY_REPLICATION_ACK, .origin = peer->id,
    .sender = cluster->config->node_id, .seq = held, .scan = scan,
    .session = cluster->session, .peer_session = peer_session };
  tally_cluster_send_message(cluster, &peer->address, &ack);
}

/* The sequence this node holds of peer's stream: the last round staged, else the table's. */
static uint64_t held_of(const struct tally_cluster *cluster, const struct tally_cluster_peer *peer)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  uint64_t held = tally_shard_held_seq(replica);
  assert(peer->stage.seq == 0 || peer->stage.seq > held);
  return peer->stage.seq != 0 ? peer->stage.seq : held;
}

/* Merges the staged records, the undone ones or the others, into the peer's table. */
static bool merge_staged(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  bool undone)
{
  const struct tally_replica_stage *stage = &peer->stage;
  bool ok = true;
  for (uint32_t i = 0; i < stage->records_count; i++) {
    if (((stage->records[i].producer & TALLY_PRODUCER_UNDONE_BIT) != 0) != undone) continue;
    ok = tally_cluster_dedup_receive(cluster, peer, &stage->records[i], 1) && ok;
    tally_cluster_dedup_log_received(cluster, peer, &stage->records[i]); /* replayed by merge */
  }
  return ok;
}

/* Runs a peer's change to this node's image inside a log session (cluster_log.h). */
static void log_end(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  if (!tally_cluster_log_on(&cluster->log)) return;
  peer->log_ticket = tally_cluster_log_end(&cluster->log);
}

/*
 * The list's last round arrived: its undone records, values and records go to
 * the replica table in that order (a crash in between leaves values that an
 * undone record explains, and records whose batches the values hold), then the
 * sequence and scan that name them, then its claims (the claimant's records
 * are merged by then).
 */
static void commit_staged(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *last)
{
  struct tally_store *store = &cluster->appliance->store;
  struct tally_shard *replica = &store->replicas[peer->replica];
  struct tally_replica_stage *stage = &peer->stage;
  assert(stage->seq == last->seq);
  tally_cluster_log_begin(&cluster->log);
  bool ok = merge_staged(cluster, peer, true);
  for (uint32_t i = 0; i < stage->count; i++) {
    const struct tally_slot *slot = &replica->slots[stage->slot[i]];
    assert(stage->slot[i] < replica->slots_count && slot->name_len >= 1);
    ok = tally_shard_set(replica, slot->name, slot->name_len, slot->hash, stage->value[i]) ==
      TALLY_OK && ok;
    tally_cluster_log_value(&cluster->log, peer->id, slot->name, slot->name_len, stage->value[i],
      tally_shard_slot_class(replica, stage->slot[i]));
  }
  tally_store_persist_replica(store, peer->replica); /* undone records and values first */
  ok = merge_staged(cluster, peer, false) && ok;
  if (!ok) cluster->replica_full++;
  tally_store_persist_replica(store, peer->replica);
  tally_shard_set_held_seq(replica, last->seq);
  if (last->scan > tally_shard_held_scan(replica)) {
    tally_shard_set_held_scan(replica, last->scan); /* complete up to that scan */
  }
  tally_store_persist_replica(store, peer->replica); /* then what names them */
  tally_cluster_log_held(&cluster->log, peer->id, last->seq, tally_shard_held_scan(replica));
  tally_cluster_dedup_claims(cluster, peer, stage->claims, stage->claims_count);
  log_end(cluster, peer); /* the ACK of this round waits for it */
  tally_replica_stage_clear(stage);
}

void tally_cluster_stream_in_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  uint64_t held = held_of(cluster, peer);
  if (message->seq != held + 1) {
    send_ack(cluster, peer, message->scan, message->session, held); /* a resend, a probe, or a gap: say what we hold */
    return;
  }
  bool staged = true;
  if (message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) {
    staged = tally_replica_stage_records(&peer->stage, message->producers, message->count);
  } else if (message->flags & TALLY_REPLICATION_FLAG_CLAIMS) {
    if (!tally_replica_stage_claims(&peer->stage, message->claims, message->count)) {
      /* (only after abandoned lists) handled now, undone before the ack */
      tally_cluster_log_begin(&cluster->log);
      tally_cluster_dedup_claims(cluster, peer, message->claims, message->count);
      log_end(cluster, peer);
    }
  } else {
    staged = tally_replica_stage_counters(&peer->stage, replica, message->entries,
      message->count);
  }
  if (!staged) {
    cluster->replica_full++;
    send_ack(cluster, peer, message->scan, message->session, held); /* cannot hold it: do not advance */
    return;
  }
  peer->stage.seq = message->seq;
  if (message->flags & TALLY_REPLICATION_FLAG_LAST) commit_staged(cluster, peer, message);
  cluster->rounds_applied++;
  tally_cluster_peer_assert_invariants(cluster, peer);
  assert(message->type == TALLY_REPLICATION_ROUND);
  send_ack(cluster, peer, message->scan, message->session, message->seq);
}

bool tally_cluster_stream_in_deferred_acks(struct tally_cluster *cluster)
{
  if (!tally_cluster_log_on(&cluster->log)) return false;
  bool waiting = false;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    if (peer->ack_deferred == 0) continue;
    /* Defers it again if still not durable. */
    send_ack(cluster, peer, peer->ack_deferred_scan, peer->ack_deferred_session,
      peer->ack_deferred);
    waiting = waiting || peer->ack_deferred != 0;
  }
  return waiting;
}

/* ---- Restore requests: a peer's own contribution, as held here ----------------- */

/* Sends a restore part once it is full (or, with force, if it holds anything). */
static void restore_part_flush(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  struct tally_replication_message *part, uint32_t full, bool force)
{
  assert(part->count <= full);
  if (part->count < full && !(force && part->count > 0)) return;
  tally_cluster_send_message(cluster, &peer->address, part);
  part->part++;
  part->count = 0;
}

/*
 * Sends a peer, part by part, our copy of its own contribution: the counters,
 * then its producer records (so that it dedups what it had applied), then an
 * empty LAST part.
 */
void tally_cluster_stream_in_restore_request(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer, const struct tally_replication_message *request)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  assert(request->type == TALLY_REPLICATION_RESTORE_REQUEST);
  struct tally_replication_message part = { .type = TALLY_REPLICATION_RESTORE,
    .origin = peer->id, .sender = cluster->config->node_id, .seq = tally_shard_held_seq(replica),
    .scan = tally_shard_held_scan(replica), .session = cluster->session,
    .peer_session = request->session };
  size_t body = 0; /* parts packed by size, as rounds are (stream_out.c) */
  for (uint32_t slot = 0; slot < replica->slots_count; slot++) {
    if (!tally_shard_slot_readable(replica, slot)) continue;
    const struct tally_slot *entry = &replica->slots[slot];
    size_t entry_size = tally_replication_entry_size(entry->name_len);
    if (body + entry_size > TALLY_REPLICATION_BODY_MAX) {
      restore_part_flush(cluster, peer, &part, part.count, false); /* full: send it */
      body = 0;
    }
    body += entry_size;
    part.entries[part.count++] = (struct tally_replication_entry){ .name = entry->name,
      .name_len = entry->name_len, .value = tally_shard_slot_value(replica, slot),
      .owner_class = tally_shard_slot_class(replica, slot) };
    if (part.count == TALLY_REPLICATION_ENTRIES_MAX) body = 0;
    restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_ENTRIES_MAX, false);
  }
  restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_ENTRIES_MAX, true);
  part.flags = TALLY_REPLICATION_FLAG_PRODUCERS;
  for (uint32_t slot = 0; slot < replica->producer_slots_count; slot++) {
    uint64_t producer;
    struct tally_dedup dedup;
    if (!tally_shard_producer_at(replica, slot, &producer, &dedup)) continue;
    tally_cluster_dedup_to_wire(producer, &dedup, &part.producers[part.count]);
    part.count++;
    restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_PRODUCERS_MAX, false);
  }
  restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_PRODUCERS_MAX, true);
  part.flags = TALLY_REPLICATION_FLAG_LAST;
  tally_cluster_send_message(cluster, &peer->address, &part);
}

/* ---- Quorum-read requests ------------------------------------------------------- */

/* This node's own total of the counter (sum over its shards); found if any shard has it. */
static __int128 own_total(const struct tally_store *store,
  const struct tally_replication_entry *entry, uint32_t hash, bool *found)
{
  __int128 own = 0;
  *found = false;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], entry->name, entry->name_len, hash);
    if (slot < 0) continue;
    own += tally_shard_slot_value(&store->shards[i], (uint32_t)slot);
    *found = true;
  }
  return own;
}

/* Answers a quorum read: every copy of the counter this node holds. */
void tally_cluster_stream_in_read_request(struct tally_cluster *cluster,
  const struct tally_replication_message *request, const struct sockaddr_in *source)
{
  if (request->count != 1) return;
  const struct tally_replication_entry *entry = &request->entries[0];
  struct tally_store *store = &cluster->appliance->store;
  uint32_t hash = tally_store_name_hash(store, entry->name, entry->name_len);
  struct tally_replication_message reply = { .type = TALLY_REPLICATION_READ_REPLY,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id, .seq = request->seq,
    .scan = UINT64_MAX, .session = cluster->session, .peer_session = request->session };
  bool found = false;
  __int128 own = own_total(store, entry, hash, &found);
  /* This node's own copy, then every replica table (members and retired nodes alike). */
  uint32_t last = 0;
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (tally_store_replica_bound(store, r)) last = r + 1u;
  }
  for (uint32_t r = 0; r <= last; r++) {
    reply.count = 0;
    if (r > 0) { /* a replica copy: the origin's contribution as held here */
      if (!tally_store_replica_bound(store, r - 1u)) continue;
      const struct tally_shard *replica = &store->replicas[r - 1u];
      reply.origin = store->replica_origin[r - 1u];
      reply.scan = tally_shard_held_scan(replica);
      int64_t slot = tally_shard_find(replica, entry->name, entry->name_len, hash);
      found = slot >= 0;
      own = found ? tally_shard_slot_value(replica, (uint32_t)slot) : 0;
    }
    if (found && own <= INT64_MAX && own >= INT64_MIN) {
      reply.entries[0] = (struct tally_replication_entry){ .name = entry->name,
        .name_len = entry->name_len, .value = (int64_t)own };
      reply.count = 1;
    }
    reply.flags = r == last ? TALLY_REPLICATION_FLAG_LAST : 0;
    tally_cluster_send_message(cluster, source, &reply);
  }
}
