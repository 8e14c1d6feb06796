/*
 * shard_journal.c — a shard's side of cross-node dedup (docs/cluster.md):
 * the journal ring of recently applied reliable batches with their deltas
 * and attempts (appended by the owning lcore, searched by the cluster thread
 * to undo a batch another node also applied), the claims ring (batches
 * applied from a resend, read by the cluster thread until every peer has
 * them), and the producer dedup records read from any thread
 * (checksum-verified) and merged into replica tables by the replication
 * thread. The slot table is in shard.c, batches and the redo log in
 * shard_batch.c, recovery in shard_recover.c. Calls nothing of theirs. Byte
 * map: docs/store-layout.md.
 *
 * Thread: appends and marks from the shard's one writer (its lcore; the
 * cluster thread for the compensation shard's keeper claims; recovery at
 * start-up), reads from any thread (the cluster thread in practice), merges
 * from the cluster thread (replica tables, a restoring node's own shards).
 * Readers never lock: a record, entry or claim being rewritten fails its
 * checksum and is read again (producer records) or skipped (journal entries,
 * claims). Checksums and layout asserts: store_format.c.
 */
#include <assert.h>
#include <string.h>

#include "shard_internal.h"
#include "tally/name.h"
#include "shard.h"
#include "store_format.h"

/* ---- Journal ------------------------------------------------------------- */

void tally_shard_journal_append(struct tally_shard *shard, const struct tally_wire_batch *batch,
  const uint32_t *slot)
{
  assert(shard != NULL);
  assert(shard->journal != NULL);
  assert(batch != NULL);
  assert(slot != NULL);
  assert(batch->producer != 0);
  assert(batch->producer != TALLY_PRODUCER_TOMBSTONE);
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  struct tally_shard_header *header = shard->header;
  uint64_t next = header->journal_next; /* this lcore is its only writer */
  struct tally_journal_entry *entry = &shard->journal[next % TALLY_JOURNAL_ENTRIES];
  /*
   * Not applied, before anything else changes: a reader that copies any of
   * the new fields then sees applied = 0 (or the later 1), never the 1 of the
   * entry being overwritten (journal_entry_read).
   */
  __atomic_store_n(&entry->applied, 0u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  entry->producer = batch->producer;
  entry->seq = batch->seq;
  entry->count = batch->count;
  entry->attempt = batch->attempt;
  for (uint32_t i = 0; i < batch->count; i++) {
    assert(slot[i] < shard->slots_count);
    assert(shard->slots[slot[i]].name_len != 0);
    entry->pairs[i] = (struct tally_journal_pair){
      .slot = slot[i], .reserved = 0, .delta = batch->pairs[i].delta};
  }
  entry->crc = tally_journal_crc(entry);
  shard_flush(shard, entry, offsetof(struct tally_journal_entry, pairs) +
    (size_t)batch->count * sizeof(struct tally_journal_pair));
  __atomic_store_n(&header->journal_next, next + 1u, __ATOMIC_RELEASE);
  shard_flush(shard, &header->journal_next, sizeof(header->journal_next));
  assert(header->journal_next == next + 1u);
  assert(entry->applied == 0);
}

bool tally_shard_journal_mark_applied(struct tally_shard *shard, uint64_t producer,
  uint64_t seq)
{
  assert(shard != NULL);
  assert(shard->journal != NULL);
  uint64_t next = shard->header->journal_next; /* the writer (or recovery) reads its own */
  if (next == 0) return false;
  struct tally_journal_entry *entry = &shard->journal[(next - 1u) % TALLY_JOURNAL_ENTRIES];
  if (entry->producer != producer || entry->seq != seq) return false;
  /* Release: whoever sees applied = 1 sees the batch's values and record too. */
  __atomic_store_n(&entry->applied, 1u, __ATOMIC_RELEASE);
  shard_flush(shard, &entry->applied, sizeof(entry->applied));
  assert(entry->applied == 1u);
  return true;
}

/*
 * Copies the entry at ring position `index` and checks it names (producer,
 * seq), is whole (count, crc), points only at slots of this shard and is
 * applied. The lcore may be rewriting it meanwhile: only the copy is checked
 * and used. applied is loaded after the copy (acquire): the writer clears it
 * before any other field (release), so a copy holding a new field never goes
 * with the overwritten entry's applied = 1.
 */
static bool journal_entry_read(const struct tally_shard *shard, uint32_t index,
  uint64_t producer, uint64_t seq, struct tally_journal_entry *entry)
{
  assert(index < TALLY_JOURNAL_ENTRIES);
  const struct tally_journal_entry *stored = &shard->journal[index];
  if (__atomic_load_n(&stored->producer, __ATOMIC_RELAXED) != producer) return false;
  if (__atomic_load_n(&stored->seq, __ATOMIC_RELAXED) != seq) return false;
  size_t head = offsetof(struct tally_journal_entry, pairs);
  memcpy(entry, stored, head);
  if (entry->count > TALLY_BATCH_PAIRS_MAX) return false;
  memcpy(entry->pairs, stored->pairs, (size_t)entry->count * sizeof(struct tally_journal_pair));
  if (entry->producer != producer || entry->seq != seq) return false;
  if (entry->crc != tally_journal_crc(entry)) return false;
  for (uint32_t i = 0; i < entry->count; i++) {
    if (entry->pairs[i].slot >= shard->slots_count) return false;
  }
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&stored->applied, __ATOMIC_RELAXED) != 1u) return false;
  entry->applied = 1u;
  return true;
}

uint64_t tally_shard_journal_next(const struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  return __atomic_load_n(&shard->header->journal_next, __ATOMIC_ACQUIRE);
}

void tally_shard_journal_key_at(const struct tally_shard *shard, uint64_t position,
  uint64_t *producer, uint64_t *seq)
{
  assert(shard != NULL && shard->journal != NULL);
  assert(producer != NULL && seq != NULL);
  const struct tally_journal_entry *stored = &shard->journal[position % TALLY_JOURNAL_ENTRIES];
  *producer = __atomic_load_n(&stored->producer, __ATOMIC_RELAXED);
  *seq = __atomic_load_n(&stored->seq, __ATOMIC_RELAXED);
  if (*producer == TALLY_PRODUCER_TOMBSTONE) *producer = 0;
}

bool tally_shard_journal_read_at(const struct tally_shard *shard, uint64_t position,
  uint64_t producer, uint64_t seq, struct tally_journal_entry *entry)
{
  assert(shard != NULL && shard->journal != NULL);
  assert(entry != NULL);
  if (producer == 0 || producer == TALLY_PRODUCER_TOMBSTONE) return false;
  uint64_t next = tally_shard_journal_next(shard);
  if (position >= next || next - position > TALLY_JOURNAL_ENTRIES) return false; /* rolled */
  if (!journal_entry_read(shard, (uint32_t)(position % TALLY_JOURNAL_ENTRIES), producer, seq,
        entry)) {
    return false;
  }
  assert(entry->count <= TALLY_BATCH_PAIRS_MAX);
  assert(entry->applied == 1u);
  return true;
}

bool tally_shard_journal_find(const struct tally_shard *shard, uint64_t producer, uint64_t seq,
  struct tally_journal_entry *entry)
{
  assert(shard != NULL);
  assert(shard->journal != NULL);
  assert(entry != NULL);
  if (producer == 0 || producer == TALLY_PRODUCER_TOMBSTONE) return false;
  uint64_t next = __atomic_load_n(&shard->header->journal_next, __ATOMIC_ACQUIRE);
  uint64_t entries = next < TALLY_JOURNAL_ENTRIES ? next : TALLY_JOURNAL_ENTRIES;
  for (uint64_t back = 1; back <= entries; back++) {
    uint32_t index = (uint32_t)((next - back) % TALLY_JOURNAL_ENTRIES);
    if (journal_entry_read(shard, index, producer, seq, entry)) {
      assert(entry->count <= TALLY_BATCH_PAIRS_MAX);
      assert(entry->applied == 1u);
      return true;
    }
  }
  return false;
}

/* ---- Claims -------------------------------------------------------------- */

void tally_shard_claim_append(struct tally_shard *shard, uint64_t producer, uint64_t seq,
  uint32_t attempt)
{
  assert(shard != NULL);
  assert(shard->claims != NULL);
  assert(producer != 0);
  assert(producer != TALLY_PRODUCER_TOMBSTONE);
  assert(attempt >= 1u && attempt <= TALLY_CLAIM_KEEPER);
  assert(producer <= TALLY_PRODUCER_ID_MAX);
  struct tally_shard_header *header = shard->header;
  uint64_t next = header->claims_next; /* this lcore is its only writer */
  struct tally_claim claim = { .producer = producer, .seq = seq, .attempt = attempt,
    .crc = 0, .position = next };
  claim.crc = tally_claim_crc(&claim);
  struct tally_claim *slot = &shard->claims[next % TALLY_CLAIMS_ENTRIES];
  __atomic_store_n(&slot->producer, claim.producer, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->seq, claim.seq, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->attempt, claim.attempt, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->position, claim.position, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->crc, claim.crc, __ATOMIC_RELAXED);
  shard_flush(shard, slot, sizeof *slot);
  __atomic_store_n(&header->claims_next, next + 1u, __ATOMIC_RELEASE);
  shard_flush(shard, &header->claims_next, sizeof(header->claims_next));
  assert(header->claims_next == next + 1u);
}

uint64_t tally_shard_claims_next(const struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  return __atomic_load_n(&shard->header->claims_next, __ATOMIC_ACQUIRE);
}

bool tally_shard_claim_at(const struct tally_shard *shard, uint64_t position,
  struct tally_claim *claim)
{
  assert(shard != NULL);
  assert(shard->claims != NULL);
  assert(claim != NULL);
  assert(position < tally_shard_claims_next(shard));
  const struct tally_claim *slot = &shard->claims[position % TALLY_CLAIMS_ENTRIES];
  claim->producer = __atomic_load_n(&slot->producer, __ATOMIC_RELAXED);
  claim->seq = __atomic_load_n(&slot->seq, __ATOMIC_RELAXED);
  claim->attempt = __atomic_load_n(&slot->attempt, __ATOMIC_RELAXED);
  claim->crc = __atomic_load_n(&slot->crc, __ATOMIC_RELAXED);
  claim->position = __atomic_load_n(&slot->position, __ATOMIC_RELAXED);
  if (claim->crc != tally_claim_crc(claim)) return false;
  if (claim->position != position) return false; /* overwritten by a later lap */
  if (claim->producer == 0 || claim->producer == TALLY_PRODUCER_TOMBSTONE) return false;
  if (claim->attempt == 0) return false;
  return true;
}

void tally_shard_claim_recover(struct tally_shard *shard, uint64_t producer, uint64_t seq)
{
  assert(shard != NULL);
  assert(shard->claims != NULL);
  struct tally_shard_header *header = shard->header;
  uint64_t journal_next = header->journal_next;
  if (journal_next == 0) return;
  const struct tally_journal_entry *entry =
    &shard->journal[(journal_next - 1u) % TALLY_JOURNAL_ENTRIES];
  if (entry->producer != producer || entry->seq != seq) return;
  if (entry->count > TALLY_BATCH_PAIRS_MAX || entry->crc != tally_journal_crc(entry)) return;
  if (entry->attempt == 0 || producer == 0 || producer == TALLY_PRODUCER_TOMBSTONE) return;
  uint64_t next = header->claims_next;
  if (next > 0) {
    struct tally_claim last;
    if (tally_shard_claim_at(shard, next - 1u, &last) && last.producer == producer &&
      last.seq == seq && last.attempt == entry->attempt) {
      return; /* written before the kill */
    }
  }
  tally_shard_claim_append(shard, producer, seq, entry->attempt);
}

/* ---- Producer records from any thread ------------------------------------ */

/*
 * Copies the record in `slot` word by word and checks it against its crc.
 * false if the copy is not one the writer made whole (a rewrite in progress,
 * or a corrupt record).
 */
static bool producer_copy(const struct tally_shard *shard, uint32_t slot, uint64_t *producer,
  struct tally_dedup *dedup)
{
  assert(slot < shard->producer_slots_count);
  const struct tally_producer *record = &shard->producers[slot];
  uint32_t crc = __atomic_load_n(&record->crc, __ATOMIC_ACQUIRE);
  *producer = __atomic_load_n(&record->producer, __ATOMIC_RELAXED);
  const uint64_t *from = (const uint64_t *)(const void *)&record->dedup;
  uint64_t *to = (uint64_t *)(void *)dedup;
  for (size_t i = 0; i < sizeof *dedup / sizeof(uint64_t); i++) {
    to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
  }
  return crc == tally_producer_crc(slot, *producer, dedup);
}

bool tally_shard_producer_read(const struct tally_shard *shard, uint64_t producer,
  struct tally_dedup *dedup)
{
  assert(shard != NULL);
  assert(dedup != NULL);
  if (producer == 0 || producer == TALLY_PRODUCER_TOMBSTONE) return false;
  for (uint32_t attempt = 0; attempt < TALLY_PRODUCER_READ_ATTEMPTS_MAX; attempt++) {
    bool found;
    uint32_t slot = producer_probe(shard, producer, &found);
    if (!found) return false;
    assert(slot < shard->producer_slots_count);
    uint64_t id;
    struct tally_dedup copy;
    if (producer_copy(shard, slot, &id, &copy) && id == producer) {
      *dedup = copy;
      return true;
    }
  }
  return false;
}

bool tally_shard_producer_at(const struct tally_shard *shard, uint32_t slot, uint64_t *producer,
  struct tally_dedup *dedup)
{
  assert(shard != NULL);
  assert(producer != NULL);
  assert(dedup != NULL);
  assert(slot < shard->producer_slots_count);
  for (uint32_t attempt = 0; attempt < TALLY_PRODUCER_READ_ATTEMPTS_MAX; attempt++) {
    uint64_t id = __atomic_load_n(&shard->producers[slot].producer, __ATOMIC_RELAXED);
    if (id == 0 || id == TALLY_PRODUCER_TOMBSTONE) return false;
    struct tally_dedup copy;
    if (producer_copy(shard, slot, &id, &copy) && id != 0 && id != TALLY_PRODUCER_TOMBSTONE) {
      *producer = id;
      *dedup = copy;
      return true;
    }
  }
  return false;
}

/* ---- Undos in any order (the compensation shard) --------------------------- */

/*
 * The lowest sequence a run can hold. A run starts at its first sequence
 * (head_last - 63) and takes a lower one only within the window below its
 * last, so never more than a window below its first (its head has those).
 */
static uint64_t run_low(const struct tally_dedup_run *run)
{
  assert(run->head_last != 0);
  uint64_t below = 2u * TALLY_DEDUP_WINDOW - 2u;
  return run->head_last > below ? run->head_last - below : 0;
}

/*
 * Runs are made only here and by plan_producer (and kept by merges), newest
 * first, so their spans [run_low, last_seq] are apart and in order, and every
 * sequence ever applied is in some run's span or below the oldest one's (in
 * a dropped run). So a sequence between two runs (or below the only ones,
 * while none was dropped) was never applied: it is taken, into the run below
 * it (its tail moves up) or a new run there (the oldest run drops). One in a
 * run's span is decided by its tail, or by its head: every apply marks the
 * head when it falls in it, and the span starts inside the head (run_low =
 * head_last - 126), so the head is exact over [run_low, head_last]. Only one
 * between the head and the tail, or below the oldest kept run once one was
 * dropped, is STALE (it may have been applied). For the lcore shards the newest run's tail decides
 * alone (plan_producer): a producer's own batches come in order.
 */
enum tally_ack_status tally_dedup_plan_any_order(struct tally_dedup *state, uint64_t seq,
  enum tally_reason *reason)
{
  uint32_t runs = 0;
  while (runs < TALLY_DEDUP_RUNS && state->runs[runs].head_last != 0) runs++;
  assert(runs >= 1);
  for (uint32_t r = 0; r < runs; r++) {
    struct tally_dedup_run *run = &state->runs[r];
    assert((run->window & 1u) != 0);
    if (seq > run->last_seq) { /* above this run, below the newer one's span */
      uint64_t shift = seq - run->last_seq;
      if (shift < TALLY_DEDUP_WINDOW) {
        run->window = (run->window << shift) | 1u;
        run->last_seq = seq;
        tally_dedup_mark_head(run, seq);
        return TALLY_ACK_APPLIED;
      }
      for (uint32_t k = TALLY_DEDUP_RUNS - 1u; k > r; k--) state->runs[k] = state->runs[k - 1];
      state->runs[r] = tally_dedup_run_start(seq);
      return TALLY_ACK_APPLIED;
    }
    if (seq < run_low(run)) continue; /* below this run's span */
    uint64_t distance = run->last_seq - seq;
    if (distance < TALLY_DEDUP_WINDOW) {
      if ((run->window >> distance) & 1u) return TALLY_ACK_DUPLICATE;
      run->window |= 1ull << distance;
      tally_dedup_mark_head(run, seq);
      return TALLY_ACK_APPLIED;
    }
    if (seq <= run->head_last) { /* the head: every apply of [run_low, head_last] is marked */
      if (tally_dedup_head_has(run, seq)) return TALLY_ACK_DUPLICATE;
      tally_dedup_mark_head(run, seq);
      assert(tally_dedup_head_has(run, seq));
      return TALLY_ACK_APPLIED;
    }
    *reason = TALLY_REASON_BATCH_STALE; /* between head and tail: it may have been applied */
    return TALLY_ACK_STALE;
  }
  if (runs == TALLY_DEDUP_RUNS) { /* a run may have been dropped below: cannot tell */
    *reason = TALLY_REASON_BATCH_STALE;
    return TALLY_ACK_STALE;
  }
  state->runs[runs] = tally_dedup_run_start(seq);
  return TALLY_ACK_APPLIED;
}

enum tally_dedup_knows tally_dedup_decide(const struct tally_dedup *undone, uint64_t seq)
{
  assert(undone != NULL);
  if (undone->runs[0].head_last == 0) return TALLY_DEDUP_UNSEEN; /* no undo of the producer */
  struct tally_dedup scratch = *undone; /* planned on a copy: nothing is written */
  enum tally_reason reason = TALLY_OK;
  switch (tally_dedup_plan_any_order(&scratch, seq, &reason)) {
  case TALLY_ACK_APPLIED: return TALLY_DEDUP_UNSEEN;
  case TALLY_ACK_DUPLICATE: return TALLY_DEDUP_SEEN;
  default:
    assert(reason == TALLY_REASON_BATCH_STALE);
    return TALLY_DEDUP_UNKNOWN;
  }
}

/* ---- Merging into replica tables ----------------------------------------- */

/* One run of the same start, as both records know it. */
static struct tally_dedup_run run_union(const struct tally_dedup_run *a,
  const struct tally_dedup_run *b)
{
  assert(a->head_last == b->head_last);
  struct tally_dedup_run merged = { .head_last = a->head_last,
    .head_window = { a->head_window[0] | b->head_window[0],
      a->head_window[1] | b->head_window[1] } };
  merged.last_seq = a->last_seq > b->last_seq ? a->last_seq : b->last_seq;
  merged.window = tally_dedup_shift(a->last_seq, a->window, merged.last_seq) |
    tally_dedup_shift(b->last_seq, b->window, merged.last_seq);
  return merged;
}

/* Adds a run to a newest-first list of at most TALLY_DEDUP_RUNS runs. */
static void runs_add(struct tally_dedup *into, const struct tally_dedup_run *run)
{
  if (run->head_last == 0) return;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    struct tally_dedup_run *at = &into->runs[r];
    if (at->head_last == run->head_last) {
      *at = run_union(at, run);
      return;
    }
    if (at->head_last < run->head_last) { /* goes here: the rest move down, the last drops */
      for (uint32_t k = TALLY_DEDUP_RUNS - 1u; k > r; k--) into->runs[k] = into->runs[k - 1];
      *at = *run;
      return;
    }
  }
}

/* The union of two records: every run of either, the TALLY_DEDUP_RUNS newest kept. */
static struct tally_dedup dedup_union(const struct tally_dedup *a, const struct tally_dedup *b)
{
  struct tally_dedup merged;
  memset(&merged, 0, sizeof merged);
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) runs_add(&merged, &a->runs[r]);
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) runs_add(&merged, &b->runs[r]);
  for (uint32_t r = 1; r < TALLY_DEDUP_RUNS; r++) {
    assert(merged.runs[r].head_last == 0 || merged.runs[r].head_last < merged.runs[r - 1].head_last);
  }
  return merged;
}

enum tally_reason tally_shard_producer_merge(struct tally_shard *shard, uint64_t producer,
  const struct tally_dedup *dedup)
{
  assert(shard != NULL);
  assert(dedup != NULL);
  assert(producer != 0);
  assert(producer != TALLY_PRODUCER_TOMBSTONE);
  assert(shard->header->producers_used <= shard->producer_slots_count);
  struct tally_dedup incoming;
  memset(&incoming, 0, sizeof incoming);
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) runs_add(&incoming, &dedup->runs[r]);
  if (incoming.runs[0].head_last == 0) return TALLY_OK; /* says nothing */
  bool found;
  uint32_t slot = producer_probe(shard, producer, &found);
  if (!found) {
    if (shard->header->producers_used >= shard->producers_max || slot == SLOT_NONE) {
      return TALLY_REASON_PRODUCERS_FULL;
    }
    assert(shard->producers[slot].producer == 0);
    producer_store(shard, slot, producer, &incoming);
    shard->header->producers_used++;
    shard_flush(shard, &shard->header->producers_used, sizeof(uint32_t));
    assert(shard->header->producers_used <= shard->producers_max);
    return TALLY_OK;
  }
  const struct tally_producer *record = &shard->producers[slot];
  assert(record->producer == producer);
  struct tally_dedup merged = incoming;
  /*
   * A record failing its crc (media corruption since recovery) says nothing
   * trustworthy: it is replaced by the incoming one. Otherwise the union.
   */
  if (record->crc == tally_producer_crc(slot, record->producer, &record->dedup)) {
    merged = dedup_union(&record->dedup, &incoming);
    if (memcmp(&merged, &record->dedup, sizeof merged) == 0) {
      return TALLY_OK; /* nothing new (a merge repeated): no write, no flush */
    }
  }
  producer_store(shard, slot, producer, &merged);
  return TALLY_OK;
}
