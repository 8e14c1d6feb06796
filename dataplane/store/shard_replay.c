/*
 * shard_replay.c — log mode's half in the store: the effect of an applied
 * reliable batch (what the disk tier logs: each pair's value after it, the
 * producer's dedup state after it, the shard's batch_seq), redoing an effect
 * in recovery, and rebuilding effects from the journal for batches the
 * image holds but the log lost with a killed process. Exactness argument:
 * docs/store-layout.md, "Log mode: replay is exact".
 *
 * Thread: tally_shard_effect_of_last runs on the shard's owning lcore (hot
 * path rules: no syscall, no allocation, no lock); the rest at start-up,
 * before the lcores.
 */
#include <assert.h>
#include <string.h>

#include "shard_internal.h"
#include "shard.h"
#include "tally/name.h"
#include "store_format.h"

uint64_t tally_shard_batch_seq(const struct tally_shard *shard)
{
  assert(shard != NULL && shard->header != NULL);
  return __atomic_load_n(&shard->header->batch_seq, __ATOMIC_ACQUIRE);
}

void tally_shard_effect_of_last(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct tally_shard_effect *effect)
{
  const struct tally_batch_log *log = shard->log;
  /* The redo record is cleared (state EMPTY) but keeps the batch just applied. */
  assert(log->state == TALLY_LOG_STATE_EMPTY);
  assert(log->producer == batch->producer && log->seq == batch->seq);
  assert(log->count == batch->count);
  assert(log->batch_seq == shard->header->batch_seq);
  assert(batch->count >= 1u && batch->count <= TALLY_BATCH_PAIRS_MAX);
  effect->producer = batch->producer;
  effect->seq = batch->seq;
  effect->batch_seq = log->batch_seq;
  effect->attempt = (uint16_t)batch->attempt;
  effect->shard = (uint16_t)shard->index;
  effect->count = batch->count;
  effect->dedup = log->producer_dedup;
  for (uint32_t i = 0; i < batch->count; i++) {
    struct tally_shard_effect_pair *pair = &effect->pairs[i];
    assert(batch->pairs[i].name_len >= 1u && batch->pairs[i].name_len <= TALLY_NAME_LEN_MAX);
    pair->delta = batch->pairs[i].delta;
    pair->value = log->entries[i].value;
    pair->name_len = (uint8_t)batch->pairs[i].name_len;
    memcpy(pair->name, batch->pairs[i].name, batch->pairs[i].name_len);
  }
}

/* The slot of each pair (created with value 0 when new), before anything is set. */
static enum tally_reason replay_slots(struct tally_shard *shard,
  const struct tally_shard_effect *effect, uint32_t *slots)
{
  for (uint32_t i = 0; i < effect->count; i++) {
    const struct tally_shard_effect_pair *pair = &effect->pairs[i];
    assert(tally_name_valid(pair->name, pair->name_len));
    uint32_t hash = tally_shard_name_hash(shard, pair->name, pair->name_len);
    uint32_t empty;
    uint32_t slot = tally_shard_slot_probe(shard, pair->name, pair->name_len, hash, &empty);
    if (slot == SLOT_NONE) {
      enum tally_reason room = tally_shard_slot_room(shard, empty);
      if (room != TALLY_OK) return room;
      tally_shard_slot_create(shard, empty, pair->name, pair->name_len, hash, 0,
        TALLY_CLASS_RELIABLE);
      slot = empty;
    }
    tally_shard_slot_take_over(shard, slot); /* as tally_shard_log_apply did */
    slots[i] = slot;
  }
  return TALLY_OK;
}

enum tally_reason tally_shard_replay(struct tally_shard *shard,
  const struct tally_shard_effect *effect, bool *replayed)
{
  assert(shard != NULL && effect != NULL && replayed != NULL);
  assert(effect->count >= 1u && effect->count <= TALLY_BATCH_PAIRS_MAX);
  assert(effect->batch_seq >= 1u);
  assert(effect->producer != 0 && effect->producer <= TALLY_PRODUCER_ID_MAX);
  *replayed = false;
  if (effect->batch_seq <= shard->header->batch_seq) return TALLY_OK; /* the image has it */
  bool found;
  uint32_t producer_slot = producer_probe(shard, effect->producer, &found);
  if (!found && (producer_slot == SLOT_NONE ||
    shard->header->producers_used >= shard->producers_max)) {
    return TALLY_REASON_PRODUCERS_FULL;
  }
  uint32_t slots[TALLY_BATCH_PAIRS_MAX];
  enum tally_reason reason = replay_slots(shard, effect, slots);
  if (reason != TALLY_OK) return reason;
  /* Absolute values in pair order: a name twice ends with its last value. */
  for (uint32_t i = 0; i < effect->count; i++) {
    shard_store_value(shard, slots[i], effect->pairs[i].value);
    shard_flush(shard, &shard->slots[slots[i]], 16u);
  }
  producer_store(shard, producer_slot, effect->producer, &effect->dedup);
  if (!found) {
    shard->header->producers_used++;
    shard_flush(shard, &shard->header->producers_used, sizeof(uint32_t));
  }
  order_stores(); /* batch_seq last: a replay cut short is redone whole */
  __atomic_store_n(&shard->header->batch_seq, effect->batch_seq, __ATOMIC_RELEASE);
  shard_flush(shard, &shard->header->batch_seq, sizeof(uint64_t));
  /* A resend's claim, as the apply wrote it (a cluster sends it to the peers; a copy
   * that already held it sends it twice: a claim is idempotent, cluster_dedup.c). */
  if (effect->attempt >= 1u) tally_shard_claim_append(shard, effect->producer, effect->seq,
    effect->attempt);
  shard_drain(shard);
  *replayed = true;
  return TALLY_OK;
}

uint32_t tally_shard_settle_copy(struct tally_shard *shard)
{
  assert(shard != NULL && shard->header != NULL);
  uint32_t settled = 0;
  for (uint32_t i = 0; i < shard->slots_count; i++) {
    struct tally_slot *slot = &shard->slots[i];
    uint32_t len = slot->name_len;
    if (len == 0 || len > TALLY_NAME_LEN_MAX || !tally_name_valid(slot->name, len)) continue;
    if (slot->hash != tally_shard_name_hash(shard, slot->name, len) ||
      slot->ident_crc != tally_slot_ident_crc(i, slot->hash, slot->name, len)) {
      continue; /* not a torn value: the store's recovery decides */
    }
    if (slot->value_check == tally_slot_value_check(slot->ident_crc, slot->value)) continue;
    shard_store_value(shard, i, slot->value);
    settled++;
  }
  for (uint32_t i = 0; i < shard->producer_slots_count; i++) {
    struct tally_producer *record = &shard->producers[i];
    if (record->producer == 0 || record->producer == TALLY_PRODUCER_TOMBSTONE ||
      record->producer > TALLY_PRODUCER_ID_MAX) {
      continue;
    }
    uint32_t crc = tally_producer_crc(i, record->producer, &record->dedup);
    if (record->crc == crc) continue;
    record->crc = crc;
    settled++;
  }
  return settled;
}

bool tally_shard_rewind(struct tally_shard *shard, uint64_t first)
{
  assert(shard != NULL && first >= 1u);
  if (shard->header->batch_seq < first - 1u) return false;
  __atomic_store_n(&shard->header->batch_seq, first - 1u, __ATOMIC_RELEASE);
  shard_flush(shard, &shard->header->batch_seq, sizeof(uint64_t));
  shard_drain(shard);
  return true;
}

/* Rebuilds one journal entry's effect from the image's current values. */
static bool effect_from_entry(const struct tally_shard *shard,
  const struct tally_journal_entry *entry, uint64_t batch_seq, struct tally_shard_effect *effect)
{
  if (entry->count < 1u || entry->count > TALLY_BATCH_PAIRS_MAX) return false;
  memset(effect, 0, offsetof(struct tally_shard_effect, pairs));
  effect->producer = entry->producer;
  effect->seq = entry->seq;
  effect->batch_seq = batch_seq;
  effect->attempt = (uint16_t)(entry->attempt > TALLY_ATTEMPT_MAX ? TALLY_ATTEMPT_MAX :
    entry->attempt);
  effect->shard = (uint16_t)shard->index;
  effect->count = entry->count;
  if (!tally_shard_producer_read(shard, entry->producer, &effect->dedup)) return false;
  for (uint32_t i = 0; i < entry->count; i++) {
    uint32_t slot = entry->pairs[i].slot;
    if (slot >= shard->slots_count || !tally_shard_slot_readable(shard, slot)) return false;
    const struct tally_slot *record = &shard->slots[slot];
    struct tally_shard_effect_pair *pair = &effect->pairs[i];
    pair->delta = entry->pairs[i].delta;
    pair->value = tally_shard_slot_value(shard, slot);
    pair->name_len = (uint8_t)record->name_len;
    memcpy(pair->name, record->name, record->name_len);
  }
  return true;
}

int tally_shard_effects_from_journal(const struct tally_shard *shard, uint64_t count,
  int (*visit)(void *context, const struct tally_shard_effect *effect), void *context)
{
  assert(shard != NULL && visit != NULL);
  uint64_t batch_seq = shard->header->batch_seq;
  if (count == 0) return 0;
  if (count > batch_seq || count > TALLY_JOURNAL_ENTRIES) return -1;
  /* The newest `count` applied entries: walk back, then deliver oldest first. */
  uint64_t next = tally_shard_journal_next(shard);
  static uint64_t positions[TALLY_JOURNAL_ENTRIES]; /* start-up only, one thread */
  uint64_t found = 0;
  uint64_t reach = next < TALLY_JOURNAL_ENTRIES ? next : TALLY_JOURNAL_ENTRIES;
  static struct tally_journal_entry entry; /* start-up only, one thread */
  for (uint64_t back = 1; back <= reach && found < count; back++) {
    uint64_t producer;
    uint64_t seq;
    tally_shard_journal_key_at(shard, next - back, &producer, &seq);
    if (tally_shard_journal_read_at(shard, next - back, producer, seq, &entry)) {
      positions[found++] = next - back;
    }
  }
  if (found < count) return -1;
  static struct tally_shard_effect effect;
  for (uint64_t k = 0; k < count; k++) {
    uint64_t position = positions[count - 1u - k];
    uint64_t producer;
    uint64_t seq;
    tally_shard_journal_key_at(shard, position, &producer, &seq);
    if (!tally_shard_journal_read_at(shard, position, producer, seq, &entry) ||
      !effect_from_entry(shard, &entry, batch_seq - count + 1u + k, &effect)) {
      return -1;
    }
    if (visit(context, &effect) != 0) return 0;
  }
  return 0;
}
