/*
 * shard_internal.h — what the shard's files (shard.c, shard_batch.c,
 * shard_recover.c, shard_journal.c) share and nobody else may use: the
 * persistence helpers, the slot and producer tables' probe and store, and the
 * calls between those files, each declared with the file that defines it
 * (calls only go down: shard_recover -> shard_batch -> shard_journal, shard;
 * all -> store_format). Not part of the public interface (shard.h).
 * On-media constants are in store_format.h.
 */
#ifndef TALLY_SHARD_INTERNAL_H
#define TALLY_SHARD_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emmintrin.h>

#include "tally/batch_wire.h"
#include "shard.h"
#include "store_format.h"

/* No slot (slot and producer tables, in DRAM only): not found, or the table is full. */
#define SLOT_NONE UINT32_MAX
/* *empty of a probe that stopped at TALLY_SLOT_PROBE_MAX without an empty slot. */
#define SLOT_PROBE_LIMIT (UINT32_MAX - 1u)

static inline void shard_flush(const struct tally_shard *shard, const void *address,
  size_t size)
{
  if (shard->flush != NULL) shard->flush(address, size);
}

static inline void shard_drain(const struct tally_shard *shard)
{
  if (shard->drain != NULL) shard->drain();
}

/*
 * Keeps the compiler from moving stores across this point. On x86 (TSO) the
 * CPU already makes stores visible in program order, so after kill -9 the
 * mapping holds a prefix of the program's stores; this is what the redo
 * protocol needs without fine-grained flushes.
 */
static inline void order_stores(void)
{
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* value and value_check in one aligned 16-byte store: never torn by a kill. */
static inline void slot_store_value(struct tally_slot *slot, int64_t value)
{
  assert(((uintptr_t)&slot->value % 16u) == 0);
  uint64_t check = tally_slot_value_check(slot->ident_crc, value);
  __m128i pair = _mm_set_epi64x((long long)check, (long long)value);
  _mm_store_si128((__m128i *)(void *)&slot->value, pair);
}

/*
 * Marks a slot dirty for the cluster's scan (issue 12; DRAM, no-op when not
 * tracked): a plain test, and a locked set only when the bit is clear. The
 * set is a release, after the value's store, so a scan that takes the bit
 * (an acquiring exchange) reads that value or a later one. A value stored
 * while the bit was still set from before is read by the scan that takes
 * that bit, or, if the scan's read came before the store was visible, by
 * the next scan (it reads each slot it took once more; cluster_scan.c).
 */
static inline void shard_mark_dirty(struct tally_shard *shard, uint32_t index)
{
  uint64_t *dirty = shard->dirty;
  if (dirty == NULL) return;
  assert(index < shard->slots_count);
  uint64_t *word = &dirty[index / 64u];
  uint64_t bit = 1ull << (index % 64u);
  if ((__atomic_load_n(word, __ATOMIC_RELAXED) & bit) == 0) {
    __atomic_fetch_or(word, bit, __ATOMIC_RELEASE);
  }
}

/* A slot's new value, then its dirty mark (the only way a value is written). */
static inline void shard_store_value(struct tally_shard *shard, uint32_t index, int64_t value)
{
  assert(index < shard->slots_count);
  slot_store_value(&shard->slots[index], value);
  shard_mark_dirty(shard, index);
}

static inline void header_set_counters_used(struct tally_shard *shard, uint32_t used)
{
  __atomic_store_n(&shard->header->counters_used, used, __ATOMIC_RELAXED);
  shard_flush(shard, &shard->header->counters_used, sizeof(uint32_t));
}

/*
 * Finds producer's record, or the empty record it would take (SLOT_NONE if
 * the probe met neither). Tombstones count as occupied. Safe against the
 * table's single writer running concurrently: each id is read once, with an
 * atomic load, and the probe is bounded by the table size.
 */
static inline uint32_t producer_probe(const struct tally_shard *shard, uint64_t producer,
  bool *found)
{
  assert(producer != 0);
  assert(producer != TALLY_PRODUCER_TOMBSTONE);
  assert(shard->producer_slots_count > 0);
  assert((shard->producer_slots_count & (shard->producer_slots_count - 1u)) == 0);
  uint32_t mask = shard->producer_slots_count - 1u;
  uint32_t index = tally_producer_hash(producer) & mask;
  *found = false;
  for (uint32_t step = 0; step < shard->producer_slots_count; step++) {
    uint64_t id = __atomic_load_n(&shard->producers[index].producer, __ATOMIC_RELAXED);
    if (id == producer) {
      *found = true;
      return index;
    }
    if (id == 0) return index;
    index = (index + 1u) & mask;
  }
  return SLOT_NONE;
}

/*
 * Writes a producer record (the table's single writer): producer, the dedup
 * state (tail and head), then the crc over them and the slot index. A concurrent reader
 * that sees a mix of old and new fields fails the crc and reads again
 * (tally_shard_producer_read). Flushed, not drained.
 */
static inline void producer_store(struct tally_shard *shard, uint32_t slot, uint64_t producer,
  const struct tally_dedup *state)
{
  assert(slot < shard->producer_slots_count);
  assert(producer != 0);
  assert(producer != TALLY_PRODUCER_TOMBSTONE);
  assert(state->runs[0].head_last != 0 && (state->runs[0].window & 1u) != 0);
  struct tally_producer *record = &shard->producers[slot];
  __atomic_store_n(&record->producer, producer, __ATOMIC_RELAXED);
  uint64_t *to = (uint64_t *)(void *)&record->dedup;
  const uint64_t *from = (const uint64_t *)(const void *)state;
  for (size_t i = 0; i < sizeof *state / sizeof(uint64_t); i++) {
    __atomic_store_n(&to[i], from[i], __ATOMIC_RELAXED);
  }
  __atomic_store_n(&record->crc, tally_producer_crc(slot, producer, state), __ATOMIC_RELEASE);
  record->reserved = 0;
  shard_flush(shard, record, sizeof *record);
}

/* ---- shard.c: the slot table ------------------------------------------- */

/*
 * Probes for name, at most TALLY_SLOT_PROBE_MAX slots. Returns its healthy
 * published slot or SLOT_NONE; *empty gets the first empty slot of the probe
 * (SLOT_NONE if the table is full, SLOT_PROBE_LIMIT if the bound stopped it).
 */
uint32_t tally_shard_slot_probe(const struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, uint32_t *empty);

/* Slots walked from a hash's home slot to index (0 at home). */
static inline uint32_t slot_probe_distance(const struct tally_shard *shard, uint32_t hash,
  uint32_t index)
{
  assert(index < shard->slots_count);
  return (index - hash) & (shard->slots_count - 1u);
}

/* TALLY_OK if a new name may go at empty, else the reason it may not. */
enum tally_reason tally_shard_slot_room(const struct tally_shard *shard, uint32_t empty);

/*
 * Creates name at the empty slot index with value and owner_class
 * (TALLY_CLASS_*), publishes it and counts it. The shard's writer only.
 */
void tally_shard_slot_create(struct tally_shard *shard, uint32_t index, const char *name,
  uint32_t name_len, uint32_t hash, int64_t value, uint8_t owner_class);


/* ---- shard_batch.c: the redo record ------------------------------------- */

/*
 * Applies a valid redo record (idempotent: absolute values, absolute state):
 * the owning lcore after writing it, recovery when replaying it.
 */
void tally_shard_log_apply(struct tally_shard *shard);
/* Empties the redo record (after everything it covers is written). */
void tally_shard_log_clear(struct tally_shard *shard);

/* ---- shard_journal.c ------------------------------------------------------ */

/*
 * Journal (shard_journal.c): appends the entry of a batch about to be
 * applied; slot[i] is the shard slot of batch->pairs[i] (every one created).
 * The owning lcore only, before the batch's redo record.
 */
void tally_shard_journal_append(struct tally_shard *shard, const struct tally_wire_batch *batch,
  const uint32_t *slot);

/*
 * Marks the newest journal entry (position journal_next - 1) applied if it
 * names (producer, seq): the owning lcore after the batch is applied, and
 * recovery after replaying its redo record. Returns whether it named it (a
 * mismatch leaves the journal alone). Flushed, not drained.
 */
bool tally_shard_journal_mark_applied(struct tally_shard *shard, uint64_t producer,
  uint64_t seq);

/*
 * Recovery, after replaying the redo record of (producer, seq): if the
 * newest journal entry names it (intact) with attempt >= 1 and the newest
 * claim does not, appends the claim the kill cut short (idempotent).
 */
void tally_shard_claim_recover(struct tally_shard *shard, uint64_t producer, uint64_t seq);

/*
 * Dedup of undos (tally_shard_apply_undo): whether seq may be applied to a
 * record whose runs are `state` (newest first), and the runs after it.
 */
enum tally_ack_status tally_dedup_plan_any_order(struct tally_dedup *state, uint64_t seq,
  enum tally_reason *reason);

#endif
