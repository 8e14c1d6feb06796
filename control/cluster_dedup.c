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
 *   - detection of a batch applied here and by a peer, and the rule: the
 *     lowest node id keeps it, every other node that applied it undoes it by
 *     applying the negated batch (from its shard's journal) to its
 *     compensation shard, deduplicated on the same (producer, seq);
 *   - restoring a node's own records from a peer along with its values.
 * See docs/cluster.md, "Cross-node dedup".
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

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
  cluster->producer_last = calloc(count, sizeof(uint64_t));
  cluster->producer_window = calloc(count, sizeof(uint64_t));
  cluster->producer_changed = calloc(count, sizeof(uint64_t));
  bool ok = cluster->producer_id != NULL && cluster->producer_last != NULL &&
    cluster->producer_window != NULL && cluster->producer_changed != NULL;
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
  uint64_t last_seq = 0;
  uint64_t window = 0;
  if (tally_shard_producer_read(compensation, producer, &last_seq, &window) &&
      tally_dedup_has(last_seq, window, seq)) {
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
 * Compares this node's record of producer with one peer's: every sequence
 * both applied is a double apply, kept by the lower node id.
 */
static void check_pair(struct tally_cluster *cluster, uint64_t producer, uint64_t own_last,
  uint64_t own_window, const struct tally_cluster_peer *peer)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  uint64_t peer_last = 0;
  uint64_t peer_window = 0;
  if (!tally_shard_producer_read(replica, producer, &peer_last, &peer_window)) return;
  uint64_t top = own_last > peer_last ? own_last : peer_last;
  uint64_t both = tally_dedup_shift(own_last, own_window, top) &
    tally_dedup_shift(peer_last, peer_window, top);
  if (both == 0) return;
  if (cluster->config->node_id < peer->id) return; /* the lower id keeps: the peer undoes */
  for (uint32_t d = TALLY_DEDUP_WINDOW; d-- > 0;) { /* oldest first: compensation dedup slides */
    if (((both >> d) & 1u) == 0 || d > top) continue;
    compensate(cluster, producer, top - d, peer->id);
  }
}

/* Checks producer against one peer, or every peer (peer NULL). */
static void check_producer(struct tally_cluster *cluster, uint64_t producer,
  const struct tally_cluster_peer *only)
{
  uint64_t own_last = 0;
  uint64_t own_window = 0;
  if (!tally_shard_producer_read(owner_shard(cluster, producer), producer, &own_last,
        &own_window)) {
    return; /* never applied here (or being rewritten: the next scan sees it) */
  }
  for (uint32_t i = 0; i < cluster->peer_count; i++) {
    const struct tally_cluster_peer *peer = &cluster->peers[i];
    if (only != NULL && peer != only) continue;
    check_pair(cluster, producer, own_last, own_window, peer);
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
      uint64_t producer, last_seq, window;
      if (!tally_shard_producer_at(shard, slot, &producer, &last_seq, &window)) continue;
      if (cluster->producer_id[position] == producer &&
          cluster->producer_last[position] == last_seq &&
          cluster->producer_window[position] == window) {
        continue;
      }
      cluster->producer_id[position] = producer;
      cluster->producer_last[position] = last_seq;
      cluster->producer_window[position] = window;
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
    const struct tally_replication_producer *record = &message->producers[i];
    if (tally_shard_producer_merge(replica, record->producer, record->last_seq,
          record->window) != TALLY_OK) {
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
    if (tally_shard_producer_merge(&store->shards[owner], record->producer, record->last_seq,
          record->window) != TALLY_OK) {
      cluster->replica_full++;
    }
  }
}
