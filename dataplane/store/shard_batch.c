/*
 * shard_batch.c — a shard's reliable batches, applied exactly once: dedup on
 * (producer, seq) through the producer's record, a plan of every pair's slot
 * and new absolute value (a full table or an overflow rejects the whole batch
 * before anything is written), the journal entry, then the redo record
 * (absolute values + the producer's new dedup state), so that replaying it
 * after a crash is idempotent, then the values, the record, the applied mark
 * and the claim. Byte map: docs/store-layout.md.
 *
 * Thread: the shard's owning lcore. Recovery (shard_recover.c, start-up
 * before the lcores) replays a redo record through tally_shard_log_apply.
 * Hot path rules: no syscalls, no allocation, no locks, no atomic RMW.
 */
#include <assert.h>
#include <string.h>

#include "shard_internal.h"
#include "tally/name.h"
#include "shard.h"
#include "store_format.h"

static_assert(TALLY_BATCH_PAIRS_MAX <= 255u, "batch plan indexes fit a byte");

/* ---- Reliable batches ---------------------------------------------------- */

/* The producer record a batch will write, and its new dedup state. */
struct producer_plan {
  uint32_t slot;
  bool is_new;
  struct tally_dedup state;
};

/* Where each pair lands and the slot's absolute value after it. */
struct pairs_plan {
  uint32_t slot[TALLY_BATCH_PAIRS_MAX];   /* SLOT_NONE until a new name is created */
  int64_t value[TALLY_BATCH_PAIRS_MAX];   /* running absolute value after the pair */
  uint8_t first[TALLY_BATCH_PAIRS_MAX];   /* first pair of the batch with this name */
  uint8_t reset[TALLY_BATCH_PAIRS_MAX];   /* by first pair: statsd's value dropped (C1) */
  uint32_t new_names;
  uint32_t resets;                        /* names whose statsd value is dropped */
};

/*
 * Dedup: decides whether (producer, seq) is applied, and the state after it.
 * any_order: undos (tally_shard_apply_undo), checked against every run.
 */
/* How a batch is deduplicated against its producer's record. */
enum dedup_mode {
  DEDUP_IN_ORDER,  /* an lcore's batches: the newest run's tail decides */
  DEDUP_ANY_ORDER, /* undos: every run of the record */
  DEDUP_JOURNALED, /* an undo the journal proves new: the record is left as it is */
};

static enum tally_ack_status plan_producer(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct producer_plan *plan, enum tally_reason *reason,
  enum dedup_mode mode)
{
  assert(batch->producer != 0);
  assert(shard->header->producers_used <= shard->producer_slots_count);
  bool found;
  plan->slot = producer_probe(shard, batch->producer, &found);
  plan->is_new = !found;
  if (!found) {
    if (shard->header->producers_used >= shard->producers_max || plan->slot == SLOT_NONE) {
      *reason = TALLY_REASON_PRODUCERS_FULL;
      return TALLY_ACK_PRODUCERS_FULL;
    }
    memset(&plan->state, 0, sizeof plan->state);
    tally_dedup_new_run(&plan->state, batch->seq); /* its first run here */
    return TALLY_ACK_APPLIED;
  }
  const struct tally_producer *record = &shard->producers[plan->slot];
  assert(record->producer == batch->producer);
  plan->state = record->dedup;
  if (mode == DEDUP_JOURNALED) return TALLY_ACK_APPLIED; /* the caller checked the journal */
  if (mode == DEDUP_ANY_ORDER) return tally_dedup_plan_any_order(&plan->state, batch->seq, reason);
  struct tally_dedup_run *run = &plan->state.runs[0];
  assert(run->head_last != 0 && (run->window & 1u) != 0);
  if (batch->seq > run->last_seq) {
    uint64_t shift = batch->seq - run->last_seq;
    if (shift >= TALLY_DEDUP_WINDOW) { /* back after a window went elsewhere: a new run */
      tally_dedup_new_run(&plan->state, batch->seq);
      return TALLY_ACK_APPLIED;
    }
    run->window = (run->window << shift) | 1u;
    run->last_seq = batch->seq;
    tally_dedup_mark_head(run, batch->seq);
    return TALLY_ACK_APPLIED;
  }
  uint64_t distance = run->last_seq - batch->seq;
  if (distance >= TALLY_DEDUP_WINDOW) {
    *reason = TALLY_REASON_BATCH_STALE;
    return TALLY_ACK_STALE;
  }
  if ((run->window >> distance) & 1u) return TALLY_ACK_DUPLICATE;
  run->window |= 1ull << distance;
  tally_dedup_mark_head(run, batch->seq);
  return TALLY_ACK_APPLIED;
}

static bool pair_same_name(const struct tally_wire_pair *a, const struct tally_wire_pair *b,
  uint32_t a_hash, uint32_t b_hash)
{
  return a_hash == b_hash && a->name_len == b->name_len &&
    memcmp(a->name, b->name, a->name_len) == 0;
}

/*
 * One pass of the plan. A pair whose running sum leaves int64 on a counter
 * statsd still owns (and whose statsd value is not yet dropped) sets
 * *reset_first to its name's first pair: the caller drops statsd's value and
 * plans again, so statsd can never make a reliable batch overflow (C1).
 */
static enum tally_ack_status plan_pairs_once(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct pairs_plan *plan, enum tally_reason *reason,
  uint32_t *reset_first)
{
  uint32_t hash[TALLY_BATCH_PAIRS_MAX];
  int64_t running[TALLY_BATCH_PAIRS_MAX]; /* indexed by a name's first pair */
  plan->new_names = 0;
  *reset_first = SLOT_NONE;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wire_pair *pair = &batch->pairs[i];
    assert(tally_name_valid(pair->name, pair->name_len));
    hash[i] = tally_shard_name_hash(shard, pair->name, pair->name_len);
    plan->first[i] = (uint8_t)i;
    for (uint32_t j = 0; j < i; j++) {
      if (plan->first[j] == j && pair_same_name(&batch->pairs[j], pair, hash[j], hash[i])) {
        plan->first[i] = (uint8_t)j;
        break;
      }
    }
    uint32_t first = plan->first[i];
    int64_t before;
    if (first == i) {
      uint32_t empty;
      plan->slot[i] = tally_shard_slot_probe(shard, pair->name, pair->name_len, hash[i], &empty);
      if (plan->slot[i] == SLOT_NONE && empty == SLOT_PROBE_LIMIT) {
        *reason = TALLY_REASON_PROBE_LIMIT; /* final, like a full table (docs/protocol.md) */
        return TALLY_ACK_COUNTERS_FULL;
      }
      if (plan->slot[i] == SLOT_NONE) plan->new_names++;
      before = plan->slot[i] == SLOT_NONE || plan->reset[i] ? 0 : shard->slots[plan->slot[i]].value;
    } else {
      plan->slot[i] = plan->slot[first];
      before = running[first];
    }
    if (__builtin_add_overflow(before, pair->delta, &plan->value[i])) {
      if (plan->slot[first] != SLOT_NONE && !plan->reset[first] &&
          tally_shard_slot_class(shard, plan->slot[first]) == TALLY_CLASS_STATSD) {
        *reset_first = first;
        return TALLY_ACK_APPLIED;
      }
      *reason = TALLY_REASON_COUNTER_OVERFLOW;
      return TALLY_ACK_OVERFLOW;
    }
    running[first] = plan->value[i];
  }
  return TALLY_ACK_APPLIED;
}

/*
 * Finds every pair's slot and running absolute value without writing
 * anything: a full table or an overflow rejects the whole batch here.
 * Bounded: each extra pass drops one more name's statsd value.
 */
static enum tally_ack_status plan_pairs(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct pairs_plan *plan, enum tally_reason *reason)
{
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  assert(shard->counters_max < shard->slots_count);
  memset(plan->reset, 0, sizeof plan->reset);
  plan->resets = 0;
  for (uint32_t pass = 0; pass <= batch->count; pass++) {
    uint32_t reset_first;
    enum tally_ack_status status = plan_pairs_once(shard, batch, plan, reason, &reset_first);
    if (status != TALLY_ACK_APPLIED) return status;
    if (reset_first == SLOT_NONE) break;
    assert(reset_first < batch->count && !plan->reset[reset_first]);
    plan->reset[reset_first] = 1;
    plan->resets++;
  }
  assert(plan->resets <= batch->count);
  if ((uint64_t)shard->header->counters_used + plan->new_names > shard->counters_max) {
    *reason = TALLY_REASON_COUNTERS_FULL;
    return TALLY_ACK_COUNTERS_FULL;
  }
  return TALLY_ACK_APPLIED;
}

/*
 * Creates the batch's new names with value 0 (harmless if the batch dies).
 * TALLY_REASON_PROBE_LIMIT if one no longer finds an empty slot within the
 * probe bound (an earlier new name of the batch took the one planned).
 */
static enum tally_reason create_new_names(struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct pairs_plan *plan)
{
  uint32_t created = 0;
  for (uint32_t i = 0; i < batch->count; i++) {
    if (plan->first[i] != i) {
      plan->slot[i] = plan->slot[plan->first[i]];
      continue;
    }
    if (plan->slot[i] != SLOT_NONE) continue;
    const struct tally_wire_pair *pair = &batch->pairs[i];
    uint32_t hash = tally_shard_name_hash(shard, pair->name, pair->name_len);
    uint32_t empty;
    uint32_t found = tally_shard_slot_probe(shard, pair->name, pair->name_len, hash, &empty);
    assert(found == SLOT_NONE);
    assert(empty != SLOT_NONE); /* counters_used + new_names <= counters_max < slots */
    if (empty == SLOT_PROBE_LIMIT) return TALLY_REASON_PROBE_LIMIT;
    tally_shard_slot_create(shard, empty, pair->name, pair->name_len, hash, 0,
      TALLY_CLASS_RELIABLE);
    plan->slot[i] = empty;
    created++;
  }
  assert(created == plan->new_names);
  return TALLY_OK;
}

/* Writes the redo record, then makes it valid: after this the batch will happen. */
static void log_write(struct tally_shard *shard, const struct tally_wire_batch *batch,
  const struct producer_plan *producer, const struct pairs_plan *plan)
{
  struct tally_batch_log *log = shard->log;
  assert(log->state == TALLY_LOG_STATE_EMPTY);
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  log->count = batch->count;
  log->producer = batch->producer;
  log->seq = batch->seq;
  log->producer_slot = producer->slot;
  log->reserved = 0;
  log->producer_dedup = producer->state;
  log->batch_seq = shard->header->batch_seq + 1u;
  for (uint32_t i = 0; i < batch->count; i++) {
    assert(plan->slot[i] < shard->slots_count);
    log->entries[i].slot = plan->slot[i];
    log->entries[i].reserved = 0;
    log->entries[i].value = plan->value[i];
  }
  log->crc = tally_batch_log_crc(log);
  if (shard->flush != NULL) {
    shard->flush(log, offsetof(struct tally_batch_log, entries) +
      (size_t)batch->count * sizeof(struct tally_log_entry));
    shard->drain();
  }
  order_stores();
  __atomic_store_n(&log->state, TALLY_LOG_STATE_VALID, __ATOMIC_RELAXED);
  if (shard->flush != NULL) {
    shard->flush(&log->state, sizeof(log->state));
    shard->drain();
  }
  order_stores();
}

void tally_shard_log_apply(struct tally_shard *shard)
{
  const struct tally_batch_log *log = shard->log;
  assert(log->state == TALLY_LOG_STATE_VALID);
  assert(log->count <= TALLY_BATCH_PAIRS_MAX);
  for (uint32_t i = 0; i < log->count; i++) {
    struct tally_slot *slot = &shard->slots[log->entries[i].slot];
    tally_shard_slot_take_over(shard, log->entries[i].slot); /* before its value (C1) */
    shard_store_value(shard, log->entries[i].slot, log->entries[i].value);
    shard_flush(shard, slot, 16u);
  }
  producer_store(shard, log->producer_slot, log->producer, &log->producer_dedup);
  /* After the values and the record: batch_seq never names a batch the image lacks. */
  assert(log->batch_seq >= 1u);
  __atomic_store_n(&shard->header->batch_seq, log->batch_seq, __ATOMIC_RELEASE);
  shard_flush(shard, &shard->header->batch_seq, sizeof(uint64_t));
}

void tally_shard_log_clear(struct tally_shard *shard)
{
  order_stores();
  __atomic_store_n(&shard->log->state, TALLY_LOG_STATE_EMPTY, __ATOMIC_RELAXED);
  shard_flush(shard, &shard->log->state, sizeof(shard->log->state));
  assert(shard->log->state == TALLY_LOG_STATE_EMPTY);
}

static enum tally_ack_status apply_batch(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason, enum dedup_mode mode)
{
  assert(shard != NULL);
  assert(batch != NULL);
  assert(reason != NULL);
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  *reason = TALLY_OK;
  if (batch->producer == 0 || batch->producer > TALLY_PRODUCER_ID_MAX) { /* reserved ids */
    *reason = TALLY_REASON_BATCH_BAD_PRODUCER;
    return TALLY_ACK_MALFORMED;
  }
  assert(batch->attempt <= TALLY_ATTEMPT_MAX); /* the decoder caps it */
  struct producer_plan producer;
  enum tally_ack_status status = plan_producer(shard, batch, &producer, reason, mode);
  if (status != TALLY_ACK_APPLIED) return status;
  struct pairs_plan plan;
  status = plan_pairs(shard, batch, &plan, reason);
  if (status != TALLY_ACK_APPLIED) return status;

  *reason = create_new_names(shard, batch, &plan);
  if (*reason != TALLY_OK) return TALLY_ACK_COUNTERS_FULL; /* probe_limit: final, as planned */
  shard->statsd_values_dropped += plan.resets;
  uint64_t journal_next = shard->header->journal_next;
  tally_shard_journal_append(shard, batch, plan.slot); /* before the redo record */
  assert(shard->header->journal_next == journal_next + 1u);
  log_write(shard, batch, &producer, &plan);
  tally_shard_log_apply(shard);
  if (producer.is_new) {
    shard->header->producers_used++;
    shard_flush(shard, &shard->header->producers_used, sizeof(uint32_t));
  }
  /* Applied: the entry may now be used (a kill before this: recovery marks it). */
  bool marked = tally_shard_journal_mark_applied(shard, batch->producer, batch->seq);
  assert(marked);
  (void)marked;
  if (batch->attempt >= 1u) {
    uint64_t claims_next = shard->header->claims_next;
    tally_shard_claim_append(shard, batch->producer, batch->seq, batch->attempt);
    assert(shard->header->claims_next == claims_next + 1u);
  }
  shard_drain(shard);
  tally_shard_log_clear(shard);
  assert(shard->producers[producer.slot].producer == batch->producer);
  return TALLY_ACK_APPLIED;
}

enum tally_ack_status tally_shard_apply_batch(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason)
{
  return apply_batch(shard, batch, reason, DEDUP_IN_ORDER);
}

enum tally_ack_status tally_shard_apply_undo(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason)
{
  return apply_batch(shard, batch, reason, DEDUP_ANY_ORDER);
}

bool tally_shard_undo_history_complete(const struct tally_shard *shard)
{
  return __atomic_load_n(&shard->header->undo_history, __ATOMIC_RELAXED) ==
      TALLY_UNDO_HISTORY_COMPLETE &&
    __atomic_load_n(&shard->header->journal_next, __ATOMIC_ACQUIRE) <= TALLY_JOURNAL_ENTRIES;
}

void tally_shard_undo_history_lost(struct tally_shard *shard)
{
  if (shard->header->undo_history == 0) return;
  __atomic_store_n(&shard->header->undo_history, 0, __ATOMIC_RELAXED);
  shard_flush(shard, &shard->header->undo_history, sizeof(uint64_t));
  shard_drain(shard);
}

enum tally_ack_status tally_shard_apply_undo_journaled(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason)
{
  assert(tally_shard_undo_history_complete(shard));
  struct tally_journal_entry entry;
  if (tally_shard_journal_find(shard, batch->producer, batch->seq, &entry)) {
    return TALLY_ACK_DUPLICATE; /* undone before: the journal says so */
  }
  bool found;
  (void)producer_probe(shard, batch->producer, &found);
  if (!found) return tally_shard_apply_undo(shard, batch, reason); /* a first undo: recorded */
  return apply_batch(shard, batch, reason, DEDUP_JOURNALED);
}
