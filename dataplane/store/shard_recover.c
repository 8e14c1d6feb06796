/*
 * shard_recover.c — recovering a shard after any stop, kill -9 included: the
 * redo record is replayed if whole (with the journal's applied mark and the
 * claim the kill cut short) or discarded, every slot and producer record is
 * checked against its checksum, unpublished slots with stray bytes are
 * cleared, and what fails is quarantined (slots) or made a tombstone
 * (producer records) in place, so probe chains hold. Recomputes the header's
 * counts. Byte map: docs/store-layout.md.
 *
 * Thread: start-up, before any lcore starts (single-threaded; the store
 * recovers every shard and bound replica table when it opens).
 */
#include <assert.h>
#include <string.h>

#include "shard_internal.h"
#include "tally/name.h"
#include "shard.h"
#include "store_format.h"

static bool bytes_zero(const void *data, size_t size)
{
  const uint8_t *bytes = data;
  for (size_t i = 0; i < size; i++) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

/* A redo record is replayed only if it is whole and every target exists. */
static bool log_replayable(const struct tally_shard *shard)
{
  const struct tally_batch_log *log = shard->log;
  assert(log->state == TALLY_LOG_STATE_VALID);
  assert(shard->slots_count > 0);
  if (log->count > TALLY_BATCH_PAIRS_MAX) return false;
  if (log->crc != tally_batch_log_crc(log)) return false;
  if (log->producer == 0 || log->producer == TALLY_PRODUCER_TOMBSTONE) return false;
  if (log->producer_slot >= shard->producer_slots_count) return false;
  if (!tally_dedup_valid(&log->producer_dedup)) return false; /* a checksum is not a proof */
  for (uint32_t i = 0; i < log->count; i++) {
    uint32_t slot = log->entries[i].slot;
    if (slot >= shard->slots_count) return false;
    if (shard->slots[slot].name_len == 0) return false; /* its creation never landed */
  }
  return true;
}

static void recover_log(struct tally_shard *shard, struct tally_shard_recovery *report)
{
  struct tally_batch_log *log = shard->log;
  assert(report->log_replayed == 0);
  if (log->state == TALLY_LOG_STATE_EMPTY) return;
  if (log->state == TALLY_LOG_STATE_VALID && log_replayable(shard)) {
    tally_shard_log_apply(shard);
    /* What the kill cut short after the values: the applied flag, the claim. */
    (void)tally_shard_journal_mark_applied(shard, log->producer, log->seq);
    tally_shard_claim_recover(shard, log->producer, log->seq);
    report->log_replayed++;
  } else {
    report->log_discarded++;
  }
  tally_shard_log_clear(shard);
  assert(report->log_replayed + report->log_discarded == 1u);
}

/* A slot beyond the probe bound is never reached by a lookup (crafted, or another build). */
static bool slot_healthy(const struct tally_shard *shard, const struct tally_slot *slot,
  uint32_t index)
{
  assert(slot != NULL);
  uint32_t len = slot->name_len;
  assert(len != 0);
  if (len == 0 || len > TALLY_NAME_LEN_MAX) return false;
  if ((slot->flags & TALLY_SLOT_FLAG_QUARANTINED) != 0) return false;
  if (!tally_name_valid(slot->name, len)) return false;
  if (slot->hash != tally_shard_name_hash(shard, slot->name, len)) return false;
  if (slot_probe_distance(shard, slot->hash, index) >= TALLY_SLOT_PROBE_MAX) return false;
  if (slot->ident_crc != tally_slot_ident_crc(index, slot->hash, slot->name, len)) return false;
  return slot->value_check == tally_slot_value_check(slot->ident_crc, slot->value);
}

/*
 * Unpublished slots with stray bytes are cleared; published slots that fail
 * a check are quarantined for good (kept in place so probe chains hold).
 * Recomputes the longest probe of the healthy slots (probe_max).
 */
static void recover_slots(struct tally_shard *shard, struct tally_shard_recovery *report)
{
  assert(shard->slots_count > shard->counters_max);
  uint32_t used = 0;
  uint32_t probe_max = 0;
  uint32_t statsd_used = 0;
  for (uint32_t i = 0; i < shard->slots_count; i++) {
    struct tally_slot *slot = &shard->slots[i];
    if (slot->name_len == 0) {
      if (!bytes_zero(slot, sizeof(*slot))) {
        memset(slot, 0, sizeof(*slot));
        shard_flush(shard, slot, sizeof(*slot));
        report->slots_torn++;
      }
      continue;
    }
    used++;
    if (tally_shard_slot_class(shard, i) == TALLY_CLASS_STATSD) statsd_used++;
    if (slot_healthy(shard, slot, i)) {
      uint32_t distance = slot_probe_distance(shard, slot->hash, i);
      if (distance > probe_max) probe_max = distance;
      continue;
    }
    if ((slot->flags & TALLY_SLOT_FLAG_QUARANTINED) == 0) {
      slot->flags |= TALLY_SLOT_FLAG_QUARANTINED;
      shard_flush(shard, slot, TALLY_STORE_CACHE_LINE_SIZE);
    }
    report->slots_quarantined++;
  }
  assert(used <= shard->slots_count);
  assert(probe_max < TALLY_SLOT_PROBE_MAX);
  report->counters_used = used;
  shard->probe_max = probe_max;
  header_set_counters_used(shard, used);
  assert(statsd_used <= used);
  shard->statsd_used = statsd_used; /* DRAM: the class bulkhead's count (C1) */
}

/*
 * Producer records failing their checksum, or whose dedup state no producer
 * could have (tally_dedup_valid: crafted, or a bug), become tombstones (the
 * slot stays taken).
 */
static void recover_producers(struct tally_shard *shard, struct tally_shard_recovery *report)
{
  assert(shard->producer_slots_count >= shard->producers_max);
  uint32_t used = 0;
  for (uint32_t i = 0; i < shard->producer_slots_count; i++) {
    struct tally_producer *record = &shard->producers[i];
    if (record->producer == 0) {
      if (!bytes_zero(record, sizeof(*record))) {
        memset(record, 0, sizeof(*record));
        shard_flush(shard, record, sizeof(*record));
      }
      continue;
    }
    used++;
    if (record->producer == TALLY_PRODUCER_TOMBSTONE) {
      report->producers_quarantined++;
      continue;
    }
    if (record->crc == tally_producer_crc(i, record->producer, &record->dedup) &&
        tally_dedup_valid(&record->dedup)) {
      continue;
    }
    record->producer = TALLY_PRODUCER_TOMBSTONE;
    shard_flush(shard, record, TALLY_STORE_CACHE_LINE_SIZE);
    report->producers_quarantined++;
  }
  assert(used <= shard->producer_slots_count);
  report->producers_used = used;
  shard->header->producers_used = used;
  shard_flush(shard, &shard->header->producers_used, sizeof(uint32_t));
}

void tally_shard_recover(struct tally_shard *shard, struct tally_shard_recovery *report)
{
  assert(shard != NULL);
  assert(report != NULL);
  assert(shard->header->magic == TALLY_SHARD_MAGIC);
  memset(report, 0, sizeof(*report));
  recover_log(shard, report);
  recover_slots(shard, report);
  recover_producers(shard, report);
  shard_drain(shard);
  assert(shard->log->state == TALLY_LOG_STATE_EMPTY);
  assert(report->counters_used == shard->header->counters_used);
}
