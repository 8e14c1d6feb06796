/*
 * cluster_dedup.c — cross-node dedup of reliable batches, on the cluster
 * thread. A producer that fails over can have the same (producer, seq)
 * applied by two nodes. This file owns:
 *   - this node's producer records as of each scan (read before the values,
 *     so a record never names a batch the values sent with it lack), which
 *     travel to every peer after the scan's counters;
 *   - the peers' records as received, merged into their replica tables
 *     (where the lcores also look, and answer DUPLICATE for a batch a peer
 *     applied);
 *   - detection of a batch applied here and by a peer, and the rule that
 *     picks which of them undoes it (by applying the negated batch, from its
 *     shard's journal, to its compensation shard, deduplicated on the same
 *     (producer, seq)): the node where the batch is only in the tail of the
 *     producer's run (it was there before the producer failed over, and has
 *     the batch in its journal); if both have it at the head of a run, the
 *     later run; else the higher node id;
 *   - restoring a node's own records from a peer along with its values.
 * See docs/cluster.md, "Cross-node dedup".
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

void tally_cluster_dedup_to_wire(uint64_t producer, const struct tally_dedup *dedup,
  struct tally_replication_producer *record)
{
  assert(producer != 0);
  record->producer = producer;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    record->runs[r].head_last = dedup->runs[r].head_last;
    record->runs[r].head_window = dedup->runs[r].head_window;
    record->runs[r].last_seq = dedup->runs[r].last_seq;
    record->runs[r].window = dedup->runs[r].window;
  }
}

static struct tally_dedup from_wire(const struct tally_replication_producer *record)
{
  struct tally_dedup dedup;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    dedup.runs[r] = (struct tally_dedup_run){ .head_last = record->runs[r].head_last,
      .head_window = record->runs[r].head_window, .last_seq = record->runs[r].last_seq,
      .window = record->runs[r].window };
  }
  return dedup;
}

struct tally_shard *tally_cluster_compensation_shard(struct tally_cluster *cluster)
{
  struct tally_store *store = &cluster->appliance->store;
  assert(store->geometry.shard_count == cluster->appliance->lcore_count + 1u);
  return &store->shards[cluster->appliance->lcore_count];
}

int tally_cluster_dedup_open(struct tally_cluster *cluster, char *error, size_t error_size)
{
  struct tally_appliance *appliance = cluster->appliance;
  assert(appliance->lcore_count >= 1);
  uint32_t per_shard = appliance->store.shards[0].producer_slots_count;
  assert(per_shard >= TALLY_PRODUCERS_MIN);
  cluster->producer_positions = per_shard * appliance->lcore_count;
  size_t count = cluster->producer_positions;
  cluster->producer_id = calloc(count, sizeof(uint64_t));
  cluster->producer_dedup = calloc(count, sizeof(struct tally_dedup));
  cluster->producer_changed = calloc(count, sizeof(uint64_t));
  bool ok = cluster->producer_id != NULL && cluster->producer_dedup != NULL &&
    cluster->producer_changed != NULL;
  for (uint32_t i = 0; ok && i < cluster->peer_count; i++) {
    cluster->peers[i].producers_pending = calloc(count, sizeof(uint32_t));
    ok = cluster->peers[i].producers_pending != NULL;
  }
  if (!ok) snprintf(error, error_size, "cluster: cannot allocate the producer snapshot");
  return ok ? 0 : -1;
}

/* This node's shard for a producer: the lcore batches of it are steered to. */
static const struct tally_shard *owner_shard(const struct tally_cluster *cluster,
  uint64_t producer)
{
  const struct tally_appliance *appliance = cluster->appliance;
  uint32_t owner = (uint32_t)(producer % appliance->lcore_count);
  assert(owner < appliance->lcore_count);
  return &appliance->store.shards[owner];
}

/*
 * Undoes this node's apply of (producer, seq): the journal entry negated,
 * applied to the compensation shard under the same (producer, seq), so it
 * happens once whatever crashes or repeats. Without a usable entry an empty
 * batch marks it handled and it is counted as missed.
 */
static void compensate(struct tally_cluster *cluster, uint64_t producer, uint64_t seq,
  uint16_t keeper)
{
  struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  struct tally_dedup undone;
  if (tally_shard_producer_read(compensation, producer, &undone) &&
      tally_dedup_applied(&undone, seq)) {
    return; /* undone already */
  }
  const struct tally_shard *own = owner_shard(cluster, producer);
  struct tally_journal_entry entry;
  struct tally_wire_batch undo = { .producer = producer, .seq = seq, .count = 0 };
  bool usable = tally_shard_journal_find(own, producer, seq, &entry);
  for (uint32_t i = 0; usable && i < entry.count; i++) {
    const struct tally_journal_pair *pair = &entry.pairs[i];
    assert(pair->slot < own->slots_count);
    if (!tally_shard_slot_readable(own, pair->slot) || pair->delta == INT64_MIN) {
      usable = false;
      break;
    }
    const struct tally_slot *slot = &own->slots[pair->slot];
    undo.pairs[i] = (struct tally_wire_pair){ .name = slot->name, .name_len = slot->name_len,
      .delta = -pair->delta };
    undo.count = i + 1u;
  }
  if (!usable) undo.count = 0;
  enum tally_reason reason = TALLY_OK;
  enum tally_ack_status status = tally_shard_apply_batch(compensation, &undo, &reason);
  if (status == TALLY_ACK_DUPLICATE) return;
  if (status == TALLY_ACK_APPLIED && undo.count > 0) {
    cluster->compensations++;
    fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " was also applied by node %u, "
      "which keeps it; undone here (%u counters)\n", producer, seq, keeper, undo.count);
    return;
  }
  if (status == TALLY_ACK_APPLIED) { /* marked handled, but nothing could be undone */
    cluster->compensations_missed++;
    fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " was also applied by node %u; "
      "its journal entry is gone, it stays counted twice\n", producer, seq, keeper);
    return;
  }
  cluster->compensations_missed++;
  fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " was also applied by node %u; "
    "cannot undo it (%s)\n", producer, seq, keeper, tally_ack_status_name(status));
}

/*
 * The rule for a batch both this node and a peer applied: true if this node
 * undoes it. Both nodes reach the same answer from the same two records.
 */
static bool undoes_here(const struct tally_cluster *cluster, const struct tally_dedup *own,
  const struct tally_dedup *theirs, uint16_t peer_id, uint64_t seq)
{
  assert(tally_dedup_applied(own, seq) && tally_dedup_applied(theirs, seq));
  uint64_t own_run = 0;
  uint64_t their_run = 0;
  bool own_head = tally_dedup_in_head(own, seq, &own_run);
  bool their_head = tally_dedup_in_head(theirs, seq, &their_run);
  if (own_head != their_head) return !own_head; /* only in a tail: the run it failed over from */
  if (own_head && own_run != their_run) return own_run > their_run; /* the later run */
  assert(cluster->config->node_id != peer_id);
  return cluster->config->node_id > peer_id;     /* else the lower node id keeps it */
}

static int compare_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a;
  uint64_t y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The sequences a record says were applied (every run's head and tail). */
static uint32_t applied_sequences(const struct tally_dedup *dedup,
  uint64_t out[2u * TALLY_DEDUP_WINDOW * TALLY_DEDUP_RUNS])
{
  uint32_t count = 0;
  for (uint32_t r = TALLY_DEDUP_RUNS; r-- > 0;) { /* oldest run first */
    const struct tally_dedup_run *run = &dedup->runs[r];
    if (run->head_last == 0) continue;
    for (uint32_t d = TALLY_DEDUP_WINDOW; d-- > 0;) { /* a run's head is older than its tail */
      if (((run->head_window >> d) & 1u) == 0 || d > run->head_last) continue;
      uint64_t seq = run->head_last - d;
      if (!tally_dedup_has(run->last_seq, run->window, seq)) out[count++] = seq;
    }
    for (uint32_t d = TALLY_DEDUP_WINDOW; d-- > 0;) {
      if (((run->window >> d) & 1u) == 0 || d > run->last_seq) continue;
      out[count++] = run->last_seq - d;
    }
  }
  assert(count <= 2u * TALLY_DEDUP_WINDOW * TALLY_DEDUP_RUNS);
  return count;
}

/*
 * Compares this node's record of producer with one peer's: every sequence
 * both applied is a double apply, undone by one of the two (undoes_here).
 * Ascending, because the compensation shard's dedup window slides forward.
 */
static void check_pair(struct tally_cluster *cluster, uint64_t producer,
  const struct tally_dedup *own, const struct tally_cluster_peer *peer)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  struct tally_dedup theirs;
  if (!tally_shard_producer_read(replica, producer, &theirs)) return;
  uint64_t sequences[2u * TALLY_DEDUP_WINDOW * TALLY_DEDUP_RUNS];
  uint32_t count = applied_sequences(own, sequences);
  qsort(sequences, count, sizeof sequences[0], compare_u64); /* a peer's odd record too */
  for (uint32_t i = 0; i < count; i++) {
    if (i > 0 && sequences[i] == sequences[i - 1]) continue;
    if (!tally_dedup_applied(&theirs, sequences[i])) continue;
    if (undoes_here(cluster, own, &theirs, peer->id, sequences[i])) {
      compensate(cluster, producer, sequences[i], peer->id);
    }
  }
}

/* Checks producer against one peer, or every peer (peer NULL). */
static void check_producer(struct tally_cluster *cluster, uint64_t producer,
  const struct tally_cluster_peer *only)
{
  struct tally_dedup own;
  if (!tally_shard_producer_read(owner_shard(cluster, producer), producer, &own)) {
    return; /* never applied here (or being rewritten: the next scan sees it) */
  }
  for (uint32_t i = 0; i < cluster->peer_count; i++) {
    const struct tally_cluster_peer *peer = &cluster->peers[i];
    if (only != NULL && peer != only) continue;
    check_pair(cluster, producer, &own, peer);
  }
}

void tally_cluster_dedup_scan(struct tally_cluster *cluster, uint64_t scan_number)
{
  struct tally_appliance *appliance = cluster->appliance;
  assert(scan_number >= 1);
  uint32_t position = 0;
  for (uint32_t s = 0; s < appliance->lcore_count; s++) {
    const struct tally_shard *shard = &appliance->store.shards[s];
    for (uint32_t slot = 0; slot < shard->producer_slots_count; slot++, position++) {
      assert(position < cluster->producer_positions);
      uint64_t producer;
      struct tally_dedup dedup;
      if (!tally_shard_producer_at(shard, slot, &producer, &dedup)) continue;
      if (cluster->producer_id[position] == producer &&
          memcmp(&cluster->producer_dedup[position], &dedup, sizeof dedup) == 0) {
        continue;
      }
      cluster->producer_id[position] = producer;
      cluster->producer_dedup[position] = dedup;
      cluster->producer_changed[position] = scan_number;
      check_producer(cluster, producer, NULL); /* applied here after a peer did */
    }
  }
  assert(position == cluster->producer_positions);
  /* The values are read after the records: every batch a record names is in them. */
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

bool tally_cluster_dedup_receive(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  assert(message->flags & TALLY_REPLICATION_FLAG_PRODUCERS);
  assert(message->count <= TALLY_REPLICATION_PRODUCERS_MAX);
  struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  for (uint32_t i = 0; i < message->count; i++) {
    struct tally_dedup dedup = from_wire(&message->producers[i]);
    if (tally_shard_producer_merge(replica, message->producers[i].producer, &dedup) != TALLY_OK) {
      return false;
    }
  }
  for (uint32_t i = 0; i < message->count; i++) { /* a peer applied what this node did? */
    check_producer(cluster, message->producers[i].producer, peer);
  }
  return true;
}

void tally_cluster_dedup_restore(struct tally_cluster *cluster,
  const struct tally_replication_message *part)
{
  assert(part->flags & TALLY_REPLICATION_FLAG_PRODUCERS);
  struct tally_store *store = &cluster->appliance->store;
  for (uint32_t i = 0; i < part->count; i++) {
    const struct tally_replication_producer *record = &part->producers[i];
    uint32_t owner = (uint32_t)(record->producer % cluster->appliance->lcore_count);
    /* Before the lcores run: the restore is the shard's only writer. */
    struct tally_dedup dedup = from_wire(record);
    if (tally_shard_producer_merge(&store->shards[owner], record->producer, &dedup) != TALLY_OK) {
      cluster->replica_full++;
    }
  }
}
