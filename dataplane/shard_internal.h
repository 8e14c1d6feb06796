/*
 * shard_internal.h — what shard.c and shard_journal.c share and nobody else
 * may use: on-media constants, the persistence helpers, and the producer
 * table's probe and store. Not part of the public interface (tally/shard.h).
 */
#ifndef TALLY_SHARD_INTERNAL_H
#define TALLY_SHARD_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_hash_crc.h>

#include "tally/batch_wire.h"
#include "tally/shard.h"

/* Producer table probe seed; part of the on-media format. */
#define PRODUCER_HASH_SEED 0x70726f64u /* "prod" */

/* A producer record whose checksum failed; never a valid producer id. */
#define PRODUCER_TOMBSTONE UINT64_MAX

/* No slot (slot and producer tables): not found, or the table is full. */
#define SLOT_NONE UINT32_MAX

#define BLOCK_SIZE 4096u
#define CACHE_LINE_SIZE 64u

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
 * Finds producer's record, or the empty record it would take (SLOT_NONE if
 * the probe met neither). Tombstones count as occupied. Safe against the
 * table's single writer running concurrently: each id is read once, with an
 * atomic load, and the probe is bounded by the table size.
 */
static inline uint32_t producer_probe(const struct tally_shard *shard, uint64_t producer,
  bool *found)
{
  assert(producer != 0);
  assert(producer != PRODUCER_TOMBSTONE);
  assert(shard->producer_slots_count > 0);
  assert((shard->producer_slots_count & (shard->producer_slots_count - 1u)) == 0);
  uint32_t mask = shard->producer_slots_count - 1u;
  uint32_t index = rte_hash_crc_8byte(producer, PRODUCER_HASH_SEED) & mask;
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
  assert(producer != PRODUCER_TOMBSTONE);
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
