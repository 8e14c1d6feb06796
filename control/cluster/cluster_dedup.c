/*
 * cluster_dedup.c — cross-node dedup of reliable batches, on the cluster
 * thread. A producer that fails over can have the same (producer, seq)
 * applied by two nodes. Every send of a batch carries its attempt (how many
 * times the producer sent it before); of two applies of a batch, the one of
 * the higher attempt is kept. This file owns:
 *   - this node's producer records as of each scan (read before the values,
 *     so a record never names a batch the values sent with it lack), which
 *     travel to every peer after the scan's counters, and are merged into the
 *     peers' replica tables, where their lcores look before applying a batch
 *     (a batch another node applied is answered DUPLICATE);
 *   - claims: each batch this node applied from a resend (attempt >= 1) is a
 *     claim, kept in its shard's claims ring until every peer has it (sent
 *     after the records); a node receiving a claim undoes its own apply of
 *     the same batch if that came from a lower attempt, by applying the
 *     negated batch (from its shard's journal) to its compensation shard,
 *     deduplicated on the same (producer, seq);
 *   - yielding: a node that applied a claimed batch but has no journal entry
 *     for it any more (its store was lost and restored from a peer, or the
 *     journal moved on) cannot undo it, so it keeps it and sends the claimant
 *     a keeper claim (attempt TALLY_CLAIM_KEEPER, from the compensation
 *     shard's claims ring); the claimant undoes its own apply instead;
 *   - the undone set: the compensation shard's records (which batches this
 *     node undid) replicate like the others, marked with
 *     TALLY_PRODUCER_UNDONE_BIT and sent before the values, and come back on
 *     a restore, so a restored node never undoes (or yields) twice; with the
 *     compensation shard's journal (indexed: undone_index) it decides
 *     whether this node still counts a batch, and a node keeps (yields,
 *     restore-claims) only a batch it provably counts (counts_here; what it
 *     cannot rule out is withheld), so keeper claims are undone in any order;
 *   - restoring a node's own records from a peer along with its values, and
 *     then claiming, as keeper, every batch they name: the claims this node
 *     had noted went with its store, and without a journal it can only keep.
 * See docs/cluster.md, "Cross-node dedup".
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "tally/name.h"

void tally_cluster_dedup_to_wire(uint64_t producer, const struct tally_dedup *dedup,
  struct tally_replication_producer *record)
{
  assert(producer != 0);
  record->producer = producer;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    record->runs[r].head_last = dedup->runs[r].head_last;
    record->runs[r].head_window[0] = dedup->runs[r].head_window[0];
    record->runs[r].head_window[1] = dedup->runs[r].head_window[1];
    record->runs[r].last_seq = dedup->runs[r].last_seq;
    record->runs[r].window = dedup->runs[r].window;
  }
}

static struct tally_dedup from_wire(const struct tally_replication_producer *record)
{
  struct tally_dedup dedup;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    dedup.runs[r] = (struct tally_dedup_run){ .head_last = record->runs[r].head_last,
      .head_window = { record->runs[r].head_window[0], record->runs[r].head_window[1] },
      .last_seq = record->runs[r].last_seq, .window = record->runs[r].window };
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
  /* Every lcore shard's records, then the compensation shard's (undone). */
  assert(tally_cluster_compensation_shard(cluster)->producer_slots_count == per_shard);
  cluster->producer_positions = per_shard * (appliance->lcore_count + 1u);
  size_t count = cluster->producer_positions;
  cluster->producer_id = calloc(count, sizeof(uint64_t));
  cluster->producer_dedup = calloc(count, sizeof(struct tally_dedup));
  cluster->producer_changed = calloc(count, sizeof(uint64_t));
  bool ok = cluster->producer_id != NULL && cluster->producer_dedup != NULL &&
    cluster->producer_changed != NULL; /* (each peer's lists: cluster_members.c) */
  for (uint32_t l = 0; ok && l < appliance->lcore_count; l++) {
    if (tally_journal_index_open(&cluster->journal_index[l], l,
          &cluster->journal_index_refused, error, error_size) != 0) {
      return -1;
    }
  }
  if (ok && tally_journal_index_open(&cluster->undone_index, appliance->lcore_count,
        &cluster->journal_index_refused, error, error_size) != 0) {
    return -1;
  }
  if (!ok) snprintf(error, error_size, "cluster: cannot allocate the producer snapshot");
  return ok ? 0 : -1;
}

void tally_cluster_dedup_close(struct tally_cluster *cluster)
{
  for (uint32_t l = 0; l < TALLY_LCORES_MAX; l++) {
    tally_journal_index_close(&cluster->journal_index[l]);
  }
  tally_journal_index_close(&cluster->undone_index);
  free(cluster->producer_id);
  free(cluster->producer_dedup);
  free(cluster->producer_changed);
  cluster->producer_id = NULL;
  cluster->producer_dedup = NULL;
  cluster->producer_changed = NULL;
}

/* The lcore (and shard) a producer's batches are steered to on this node. */
static uint32_t owner_lcore(const struct tally_cluster *cluster, uint64_t producer)
{
  const struct tally_appliance *appliance = cluster->appliance;
  assert(appliance->lcore_count >= 1);
  uint32_t owner = (uint32_t)(producer % appliance->lcore_count);
  assert(owner < appliance->lcore_count);
  return owner;
}

static const struct tally_shard *owner_shard(const struct tally_cluster *cluster,
  uint64_t producer)
{
  return &cluster->appliance->store.shards[owner_lcore(cluster, producer)];
}

/* This node's undone set of producer (the compensation shard's record); empty if none. */
static void undone_read(struct tally_cluster *cluster, uint64_t producer,
  struct tally_dedup *undone)
{
  if (!tally_shard_producer_read(tally_cluster_compensation_shard(cluster), producer, undone)) {
    memset(undone, 0, sizeof *undone); /* (recovery quarantines a damaged one: restored) */
  }
}

/*
 * Whether this node undid (producer, seq): the compensation shard's journal
 * (its last TALLY_JOURNAL_ENTRIES undos, exact), else its record (3 runs,
 * exact where it answers, tally_dedup_decide). UNKNOWN: it may have.
 */
static enum tally_dedup_knows undone_here(struct tally_cluster *cluster, uint64_t producer,
  uint64_t seq, const struct tally_dedup *undone)
{
  struct tally_journal_entry entry;
  const struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  if (tally_journal_index_find(&cluster->undone_index, compensation, producer, seq, &entry)) {
    return TALLY_DEDUP_SEEN;
  }
  enum tally_dedup_knows knows = tally_dedup_decide(undone, seq);
  /* Where the record cannot tell, a journal that holds every undo still can
   * (walked: the index is a cache, and may have refused an insert). */
  if (knows == TALLY_DEDUP_UNKNOWN && tally_shard_undo_history_complete(compensation)) {
    return tally_shard_journal_find(compensation, producer, seq, &entry) ? TALLY_DEDUP_SEEN :
      TALLY_DEDUP_UNSEEN;
  }
  return knows;
}

/*
 * The rule that keeps keeping exact: this node counts (producer, seq) — its
 * record names the batch (it applied it, and its values hold it) and it
 * provably never undid it. Only then may it keep the batch and ask a peer to
 * undo its own apply (a yield, a restore claim): a node that keeps a batch it
 * no longer counts makes the peer undo the only apply left (docs/cluster.md,
 * "Keeping is exact").
 */
static bool counts_here(struct tally_cluster *cluster, uint64_t producer, uint64_t seq,
  const struct tally_dedup *applied, const struct tally_dedup *undone)
{
  return tally_dedup_applied(applied, seq) &&
    undone_here(cluster, producer, seq, undone) == TALLY_DEDUP_UNSEEN;
}

/* A batch this node applied and would keep, but may have undone: not kept (never lost). */
static void withhold(struct tally_cluster *cluster, uint64_t producer, uint64_t seq,
  const char *why)
{
  cluster->keeps_withheld++;
  fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " applied here may also have "
    "been undone here (the undone set no longer tells): not kept (%s); counted twice if it "
    "was not undone\n", producer, seq, why);
}

/*
 * Log mode: what an applied undo changed in the compensation shard, as
 * absolute values and the producer's undone record (cluster_log.h).
 */
static void log_undo(struct tally_cluster *cluster, const struct tally_wire_batch *undo)
{
  if (!tally_cluster_log_on(&cluster->log)) return;
  const struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  for (uint32_t i = 0; i < undo->count; i++) {
    const struct tally_wire_pair *pair = &undo->pairs[i];
    int64_t slot = tally_shard_find(compensation, pair->name, pair->name_len,
      tally_shard_name_hash(compensation, pair->name, pair->name_len));
    assert(slot >= 0); /* the undo just applied it */
    tally_cluster_log_value(&cluster->log, 0, pair->name, pair->name_len,
      tally_shard_slot_value(compensation, (uint32_t)slot),
      tally_shard_slot_class(compensation, (uint32_t)slot));
  }
  struct tally_dedup dedup;
  bool read = tally_shard_producer_read(compensation, undo->producer, &dedup);
  assert(read); /* the undo just wrote it */
  (void)read;
  tally_cluster_log_record(&cluster->log, 0, undo->producer, &dedup);
}

/*
 * Undoes this node's apply of (producer, seq) — entry, from its journal (NULL:
 * the journal no longer has it) — by applying the negated batch to the
 * compensation shard under the same (producer, seq), so it happens once
 * whatever crashes or repeats. Without a usable entry an empty batch marks
 * it handled and it is counted as missed. Taken however far behind this
 * node's newest undo of the producer (tally_shard_apply_undo): a claim from
 * the batch's higher attempt decides alone, and a keeper claim comes only
 * from a node that provably counts the batch (counts_here), so the two
 * applies it settles are both still counted and one stays.
 */
static void compensate(struct tally_cluster *cluster, uint64_t producer, uint64_t seq,
  uint16_t keeper, const struct tally_journal_entry *entry)
{
  struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  const struct tally_shard *own = owner_shard(cluster, producer);
  struct tally_wire_batch undo = { .producer = producer, .seq = seq, .count = 0 };
  bool usable = entry != NULL;
  for (uint32_t i = 0; usable && i < entry->count; i++) {
    const struct tally_journal_pair *pair = &entry->pairs[i];
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
  /* Log mode: the undo's items go in one record, so a replay redoes it whole. */
  tally_cluster_log_room(&cluster->log,
    TALLY_WAL_CLUSTER_VALUE_SIZE_MAX * undo.count + TALLY_WAL_CLUSTER_RECORD_SIZE);
  enum tally_ack_status status = tally_shard_apply_undo(compensation, &undo, &reason);
  if (status == TALLY_ACK_STALE && tally_shard_undo_history_complete(compensation)) {
    /* The record cannot tell; the journal holds every undo and proves this one new. */
    status = tally_shard_apply_undo_journaled(compensation, &undo, &reason);
  }
  if (status == TALLY_ACK_APPLIED) log_undo(cluster, &undo);
  if (status == TALLY_ACK_DUPLICATE) return; /* undone before (a claim repeated) */
  if (status == TALLY_ACK_APPLIED && undo.count > 0) {
    cluster->compensations++;
    fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " (attempt %u) was also "
      "applied by node %u, which keeps it; undone here (%u counters)\n", producer, seq,
      entry->attempt, keeper, undo.count);
    return;
  }
  cluster->compensations_missed++;
  if (status == TALLY_ACK_APPLIED) { /* marked handled, but nothing could be undone */
    fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " is also kept by node %u "
      "and its journal entry here is gone: it stays counted twice\n", producer, seq,
      keeper);
    return;
  }
  fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " is also kept by node %u; "
    "cannot undo it here (%s): it stays counted twice\n", producer, seq, keeper,
    tally_ack_status_name(status));
}

/*
 * This node applied (producer, seq) and has no journal entry for it, so it
 * cannot undo it: it keeps the batch and asks the claimant (every peer: the
 * keeper claim goes out with the other claims) to undo its own apply. Written
 * to the compensation shard's claims ring, which only this thread writes.
 */
static void yield(struct tally_cluster *cluster, const struct tally_replication_claim *claim,
  const struct tally_dedup *applied, const struct tally_dedup *undone)
{
  struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  assert(claim->attempt >= 1 && claim->attempt < TALLY_CLAIM_KEEPER);
  assert(counts_here(cluster, claim->producer, claim->seq, applied, undone));
  uint64_t next = tally_shard_claims_next(compensation);
  tally_shard_claim_append(compensation, claim->producer, claim->seq, TALLY_CLAIM_KEEPER);
  assert(tally_shard_claims_next(compensation) == next + 1u);
  tally_cluster_log_claim(&cluster->log, next, claim->producer, claim->seq, TALLY_CLAIM_KEEPER);
  cluster->claims_yielded++;
  fprintf(stderr, "tallyd: cluster: batch %" PRIu64 ":%" PRIu64 " was also applied by a peer "
    "(attempt %" PRIu64 "); no journal entry here to undo it (store restored, or the journal moved on): "
    "kept here, the peer is asked to undo its apply\n", claim->producer, claim->seq,
    claim->attempt);
}

/* One claim from peer: undo, yield, or nothing (see the file comment). */
static void dedup_claim(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  const struct tally_replication_claim *claim)
{
  assert(claim->attempt >= 1 && claim->attempt <= TALLY_CLAIM_KEEPER);
  assert(claim->producer != 0);
  bool keeper = claim->attempt == TALLY_CLAIM_KEEPER;
  if (keeper) cluster->keeper_claims_received++;
  struct tally_dedup undone;
  undone_read(cluster, claim->producer, &undone);
  enum tally_dedup_knows was_undone = undone_here(cluster, claim->producer, claim->seq, &undone);
  if (was_undone == TALLY_DEDUP_SEEN) return; /* undone here already */
  uint32_t owner = owner_lcore(cluster, claim->producer);
  const struct tally_shard *own = &cluster->appliance->store.shards[owner];
  struct tally_journal_entry entry;
  if (tally_journal_index_find(&cluster->journal_index[owner], own, claim->producer, claim->seq,
        &entry)) {
    /* The higher attempt keeps it (a keeper claim outranks every attempt);
     * equal attempts (a producer that does not number its resends): the
     * lower node id keeps it. */
    assert(entry.attempt <= TALLY_ATTEMPT_MAX);
    bool undo = entry.attempt < claim->attempt ||
      (entry.attempt == claim->attempt && cluster->config->node_id > peer->id);
    if (undo) compensate(cluster, claim->producer, claim->seq, peer->id, &entry);
    return;
  }
  struct tally_dedup own_dedup;
  if (!tally_shard_producer_read(own, claim->producer, &own_dedup) ||
      !tally_dedup_applied(&own_dedup, claim->seq)) {
    return; /* not applied here */
  }
  if (keeper) { /* both keep it and neither can undo: it stays counted twice */
    compensate(cluster, claim->producer, claim->seq, peer->id, NULL);
    return;
  }
  if (was_undone == TALLY_DEDUP_UNKNOWN) { /* may not count it any more: never keep it */
    withhold(cluster, claim->producer, claim->seq, "claim from a peer");
    return;
  }
  yield(cluster, claim, &own_dedup, &undone);
}

void tally_cluster_dedup_claims(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_claim *claims, uint32_t count)
{
  for (uint32_t i = 0; i < count; i++) {
    cluster->claims_received++;
    dedup_claim(cluster, peer, &claims[i]);
  }
}

/* Claims rings: the lcore shards', then the compensation shard's (keeper claims). */
uint32_t tally_cluster_claim_rings(const struct tally_cluster *cluster)
{
  uint32_t rings = cluster->appliance->lcore_count + 1u;
  assert(rings <= TALLY_CLUSTER_CLAIM_RINGS_MAX);
  assert(rings == cluster->appliance->store.geometry.shard_count);
  return rings;
}

/* The first claim position a peer that holds none of the ring still can get. */
static uint64_t ring_start(uint64_t next)
{
  return next > TALLY_CLAIMS_ENTRIES ? next - TALLY_CLAIMS_ENTRIES : 0;
}

void tally_cluster_dedup_claims_reset(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer)
{
  uint32_t rings = tally_cluster_claim_rings(cluster);
  for (uint32_t l = 0; l < rings; l++) {
    peer->claims_sent[l] = ring_start(tally_shard_claims_next(&cluster->appliance->store.shards[l]));
    peer->claims_planned[l] = peer->claims_sent[l];
  }
  assert(rings <= TALLY_CLUSTER_CLAIM_RINGS_MAX);
}

uint32_t tally_cluster_dedup_plan_claims(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer)
{
  uint32_t count = 0;
  for (uint32_t l = 0; l < tally_cluster_claim_rings(cluster); l++) {
    const struct tally_shard *shard = &cluster->appliance->store.shards[l];
    uint64_t until = cluster->claims_quorum[l]; /* values on W nodes first (quorum.c) */
    if (until > cluster->claims_capture[l]) until = cluster->claims_capture[l];
    uint64_t from = peer->claims_sent[l];
    if (from >= until) { /* nothing new (or the cursor was reset past this scan's note) */
      peer->claims_planned[l] = from;
      continue;
    }
    if (until - from > TALLY_CLAIMS_ENTRIES) { /* the peer was away too long: some are gone */
      cluster->claims_lost += until - from - TALLY_CLAIMS_ENTRIES;
      from = until - TALLY_CLAIMS_ENTRIES;
    }
    uint64_t position = from;
    for (; position < until && count < TALLY_CLUSTER_CLAIMS_PER_LIST; position++) {
      struct tally_claim claim;
      if (!tally_shard_claim_at(shard, position, &claim)) {
        cluster->claims_lost++; /* overwritten since it was noted */
        continue;
      }
      peer->claims_pending[count++] = (struct tally_replication_claim){
        .producer = claim.producer, .seq = claim.seq, .attempt = claim.attempt };
    }
    peer->claims_planned[l] = position;
  }
  peer->claims_pending_count = count;
  peer->claims_pending_next = 0;
  assert(count <= TALLY_CLUSTER_CLAIMS_PER_LIST);
  return count;
}

void tally_cluster_dedup_scan(struct tally_cluster *cluster, uint64_t scan_number)
{
  struct tally_appliance *appliance = cluster->appliance;
  assert(scan_number >= 1);
  uint32_t position = 0;
  for (uint32_t s = 0; s <= appliance->lcore_count; s++) { /* the compensation shard last */
    const struct tally_shard *shard = &appliance->store.shards[s];
    bool undone = s == appliance->lcore_count;
    for (uint32_t slot = 0; slot < shard->producer_slots_count; slot++, position++) {
      assert(position < cluster->producer_positions);
      uint64_t producer;
      struct tally_dedup dedup;
      if (!tally_shard_producer_at(shard, slot, &producer, &dedup)) continue;
      assert(producer <= TALLY_PRODUCER_ID_MAX);
      if (undone) producer |= TALLY_PRODUCER_UNDONE_BIT; /* which batches this node undid */
      if (cluster->producer_id[position] == producer &&
          memcmp(&cluster->producer_dedup[position], &dedup, sizeof dedup) == 0) {
        continue;
      }
      cluster->producer_id[position] = producer;
      cluster->producer_dedup[position] = dedup;
      cluster->producer_changed[position] = scan_number;
    }
  }
  assert(position == cluster->producer_positions);
  /* The values are read after the records: every batch a record names is in them. */
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

void tally_cluster_dedup_log_received(struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer, const struct tally_replication_producer *record)
{
  if (!tally_cluster_log_on(&cluster->log)) return;
  struct tally_dedup dedup = from_wire(record);
  tally_cluster_log_record(&cluster->log, peer->id, record->producer, &dedup);
}

bool tally_cluster_dedup_receive(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_producer *records, uint32_t count)
{
  struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  bool ok = true;
  for (uint32_t i = 0; i < count; i++) {
    assert(records[i].producer != 0);
    struct tally_dedup dedup = from_wire(&records[i]);
    if (tally_shard_producer_merge(replica, records[i].producer, &dedup) != TALLY_OK) ok = false;
  }
  return ok;
}

void tally_cluster_dedup_restore(struct tally_cluster *cluster,
  const struct tally_replication_message *part)
{
  assert(part->flags & TALLY_REPLICATION_FLAG_PRODUCERS);
  struct tally_store *store = &cluster->appliance->store;
  for (uint32_t i = 0; i < part->count; i++) {
    const struct tally_replication_producer *record = &part->producers[i];
    uint64_t producer = record->producer & ~TALLY_PRODUCER_UNDONE_BIT;
    if (producer == 0 || producer > TALLY_PRODUCER_ID_MAX) continue; /* not a record of ours */
    /* Batches it undid go back to the compensation shard, the others to the
     * lcore shard of the producer. Before the lcores run: the restore is the
     * shards' only writer. */
    bool undone = (record->producer & TALLY_PRODUCER_UNDONE_BIT) != 0;
    struct tally_shard *shard = undone ? tally_cluster_compensation_shard(cluster) :
      &store->shards[producer % cluster->appliance->lcore_count];
    /* Undos whose journal entries went with the lost store: the journal no
     * longer holds every undo (tally_shard_undo_history_complete). */
    if (undone) tally_shard_undo_history_lost(shard);
    struct tally_dedup dedup = from_wire(record);
    if (tally_shard_producer_merge(shard, producer, &dedup) != TALLY_OK) cluster->replica_full++;
  }
}

/*
 * Appends a keeper claim for (producer, seq), a batch the restored record
 * `applied` names, if this node still counts it and the ring has room.
 */
static void restore_claim(struct tally_cluster *cluster, uint64_t producer, uint64_t seq,
  const struct tally_dedup *applied, const struct tally_dedup *undone, uint32_t *written)
{
  if (seq == 0) return;
  assert(tally_dedup_applied(applied, seq));
  enum tally_dedup_knows was_undone = undone_here(cluster, producer, seq, undone);
  if (was_undone == TALLY_DEDUP_SEEN) return; /* undone here: the peer keeps it */
  if (was_undone == TALLY_DEDUP_UNKNOWN) {
    withhold(cluster, producer, seq, "restore claim");
    return;
  }
  assert(counts_here(cluster, producer, seq, applied, undone));
  if (*written >= TALLY_CLAIMS_ENTRIES) { /* more than a peer could be sent */
    cluster->claims_lost++;
    return;
  }
  struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  tally_shard_claim_append(compensation, producer, seq, TALLY_CLAIM_KEEPER);
  (*written)++;
}

/*
 * A restored node has no journal and none of the claims it had noted (they
 * were in the store it lost): a batch it applied from a resend, whose claim
 * never reached the node that applied the earlier send, would stay counted
 * twice. So it claims, as keeper, every batch its restored records name —
 * each run's head and tail, where a failover overlaps another node — except
 * those its undone set names. A peer that also applied one undoes its apply
 * (from its journal); a peer that cannot (restored too) counts it missed.
 * Before the lcores and the thread run: this is the ring's only writer.
 */
uint32_t tally_cluster_dedup_restore_claims(struct tally_cluster *cluster)
{
  struct tally_appliance *appliance = cluster->appliance;
  const struct tally_shard *compensation = tally_cluster_compensation_shard(cluster);
  uint64_t ring_before = tally_shard_claims_next(compensation);
  uint32_t written = 0;
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    const struct tally_shard *shard = &appliance->store.shards[l];
    for (uint32_t slot = 0; slot < shard->producer_slots_count; slot++) {
      uint64_t producer;
      struct tally_dedup dedup;
      if (!tally_shard_producer_at(shard, slot, &producer, &dedup)) continue;
      assert(producer >= 1 && producer <= TALLY_PRODUCER_ID_MAX);
      struct tally_dedup undone;
      undone_read(cluster, producer, &undone);
      for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
        const struct tally_dedup_run *run = &dedup.runs[r];
        if (run->head_last == 0) break;
        for (uint64_t i = 0; i < TALLY_DEDUP_WINDOW && i <= run->last_seq; i++) { /* tail */
          if (tally_dedup_has(run->last_seq, run->window, run->last_seq - i)) {
            restore_claim(cluster, producer, run->last_seq - i, &dedup, &undone, &written);
          }
        }
        for (uint64_t d = 0; d < 2u * TALLY_DEDUP_WINDOW && d <= run->head_last; d++) { /* head */
          uint64_t seq = run->head_last - d;
          if (!tally_dedup_head_has(run, seq)) continue;
          if (tally_dedup_has(run->last_seq, run->window, seq)) continue; /* claimed as tail */
          restore_claim(cluster, producer, seq, &dedup, &undone, &written);
        }
      }
    }
  }
  assert(tally_shard_claims_next(compensation) == ring_before + written);
  cluster->restore_claims += written;
  return written;
}
