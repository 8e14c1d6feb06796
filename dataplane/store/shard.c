/*
 * shard.c — one dataplane lcore's shard of the persistent store: attaching a
 * region (formatting or checking its header) and the counter slot table
 * (open addressing, linear probing; the table is the on-media index): lookup,
 * add, set, and a replica table's held_seq / held_scan. Reliable batches are
 * in shard_batch.c, recovery in shard_recover.c, the journal, claims and
 * producer records read from any thread in shard_journal.c; geometry and
 * checksums in store_format.c.
 *
 * Thread: writes from the shard's one writer (its lcore; for a replica table
 * or the compensation shard, the cluster thread), reads from any thread,
 * attach at start-up before the lcores. A slot is published by the
 * release-store of name_len, written after everything else in the slot; a
 * value and its check are written by one 16-byte aligned SSE2 store, so a
 * killed process can never leave them apart. Byte map: docs/store-layout.md.
 *
 * Hot path rules: no syscalls, no allocation, no locks, no atomic RMW.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "shard_internal.h"
#include "shard.h"
#include "store_format.h"

/* ---- Attaching ------------------------------------------------------------ */

int tally_shard_attach(struct tally_shard *shard, void *region, uint32_t index,
  uint32_t counters_max, uint32_t producers_max, bool format)
{
  assert(shard != NULL);
  assert(region != NULL);
  assert(((uintptr_t)region % TALLY_STORE_CACHE_LINE_SIZE) == 0);
  memset(shard, 0, sizeof(*shard));
  struct tally_shard_layout layout;
  tally_shard_layout(counters_max, producers_max, &layout);
  uint8_t *base = region;
  shard->header = region;
  shard->log = (struct tally_batch_log *)(void *)(base + layout.log_offset);
  shard->index = index;
  shard->counters_max = counters_max;
  shard->slots_count = layout.slots_count;
  shard->producers_max = producers_max;
  shard->producer_slots_count = layout.producer_slots_count;
  shard->slots = (struct tally_slot *)(void *)(base + layout.slots_offset);
  shard->producers = (struct tally_producer *)(void *)(base + layout.producers_offset);
  shard->journal = (struct tally_journal_entry *)(void *)(base + layout.journal_offset);
  shard->claims = (struct tally_claim *)(void *)(base + layout.claims_offset);
  assert(((uintptr_t)shard->journal % TALLY_STORE_CACHE_LINE_SIZE) == 0);
  assert(((uintptr_t)shard->claims % TALLY_STORE_CACHE_LINE_SIZE) == 0);
  assert((uint8_t *)shard->claims >= (uint8_t *)(shard->journal + TALLY_JOURNAL_ENTRIES));

  struct tally_shard_header *header = shard->header;
  if (format) {
    header->magic = TALLY_SHARD_MAGIC;
    header->shard_index = index;
    header->slots_count = shard->slots_count;
    header->counters_max = counters_max;
    header->producer_slots_count = shard->producer_slots_count;
    header->producers_max = producers_max;
    header->header_crc = tally_shard_header_crc(header);
    header->counters_used = 0;
    header->producers_used = 0;
    header->held_seq = 0;
    header->held_scan = 0;
    header->journal_next = 0;
    header->claims_next = 0;
    header->undo_history = TALLY_UNDO_HISTORY_COMPLETE; /* nothing undone, nothing lost */
    return 0;
  }
  if (header->magic != TALLY_SHARD_MAGIC) return -1;
  if (header->header_crc != tally_shard_header_crc(header)) return -1;
  if (header->shard_index != index) return -1;
  if (header->slots_count != shard->slots_count) return -1;
  if (header->counters_max != counters_max) return -1;
  if (header->producer_slots_count != shard->producer_slots_count) return -1;
  if (header->producers_max != producers_max) return -1;
  return 0;
}

/* ---- Lookup -------------------------------------------------------------- */

uint32_t tally_shard_slot_probe(const struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, uint32_t *empty)
{
  assert(name_len >= 1u);
  assert(name_len <= TALLY_NAME_LEN_MAX);
  uint32_t mask = shard->slots_count - 1u;
  uint32_t index = hash & mask;
  uint32_t bound = shard->slots_count < TALLY_SLOT_PROBE_MAX ? shard->slots_count :
    TALLY_SLOT_PROBE_MAX;
  *empty = bound < shard->slots_count ? SLOT_PROBE_LIMIT : SLOT_NONE;
  for (uint32_t step = 0; step < bound; step++) {
    const struct tally_slot *slot = &shard->slots[index];
    uint16_t len = __atomic_load_n(&slot->name_len, __ATOMIC_ACQUIRE);
    if (len == 0) {
      *empty = index;
      return SLOT_NONE;
    }
    if ((slot->flags & TALLY_SLOT_FLAG_QUARANTINED) == 0 && slot->hash == hash &&
      len == name_len && memcmp(slot->name, name, name_len) == 0) {
      return index;
    }
    index = (index + 1u) & mask;
  }
  return SLOT_NONE;
}

enum tally_reason tally_shard_slot_room(const struct tally_shard *shard, uint32_t empty)
{
  assert(shard != NULL);
  assert(empty < shard->slots_count || empty == SLOT_NONE || empty == SLOT_PROBE_LIMIT);
  if (shard->header->counters_used >= shard->counters_max || empty == SLOT_NONE) {
    return TALLY_REASON_COUNTERS_FULL;
  }
  if (empty == SLOT_PROBE_LIMIT) return TALLY_REASON_PROBE_LIMIT;
  return TALLY_OK;
}

int tally_shard_dirty_open(struct tally_shard *shard)
{
  assert(shard != NULL && shard->dirty == NULL && shard->slots_count > 0);
  shard->dirty = calloc(tally_shard_dirty_words(shard), sizeof shard->dirty[0]);
  return shard->dirty != NULL ? 0 : -1;
}

void tally_shard_dirty_close(struct tally_shard *shard)
{
  assert(shard != NULL);
  free(shard->dirty); /* NULL is fine */
  shard->dirty = NULL;
}

void tally_shard_set_name_key(struct tally_shard *shard, const struct tally_name_key *key)
{
  assert(shard != NULL);
  assert(key != NULL);
  shard->name_key = *key;
}

uint32_t tally_shard_probe_max(const struct tally_shard *shard)
{
  assert(shard != NULL);
  uint32_t probe_max = __atomic_load_n(&shard->probe_max, __ATOMIC_RELAXED);
  assert(probe_max < TALLY_SLOT_PROBE_MAX);
  return probe_max;
}

int64_t tally_shard_find(const struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash)
{
  assert(shard != NULL);
  assert(name != NULL);
  if (name_len == 0 || name_len > TALLY_NAME_LEN_MAX) return -1;
  uint32_t empty;
  uint32_t index = tally_shard_slot_probe(shard, name, name_len, hash, &empty);
  return index == SLOT_NONE ? -1 : (int64_t)index;
}

bool tally_shard_slot_readable(const struct tally_shard *shard, uint32_t slot_index)
{
  assert(shard != NULL);
  assert(slot_index < shard->slots_count);
  const struct tally_slot *slot = &shard->slots[slot_index];
  if (__atomic_load_n(&slot->name_len, __ATOMIC_ACQUIRE) == 0) return false;
  return (slot->flags & TALLY_SLOT_FLAG_QUARANTINED) == 0;
}

int64_t tally_shard_slot_value(const struct tally_shard *shard, uint32_t slot_index)
{
  assert(shard != NULL);
  assert(slot_index < shard->slots_count);
  return __atomic_load_n(&shard->slots[slot_index].value, __ATOMIC_RELAXED);
}

uint32_t tally_shard_counters_used(const struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  return __atomic_load_n(&shard->header->counters_used, __ATOMIC_RELAXED);
}

/* ---- Writes -------------------------------------------------------------- */

/*
 * With fine-grained persistence the body is made durable before the
 * name_len that publishes it, so a published slot is always whole on media.
 */
void tally_shard_slot_create(struct tally_shard *shard, uint32_t index, const char *name,
  uint32_t name_len, uint32_t hash, int64_t value, uint8_t owner_class)
{
  struct tally_slot *slot = &shard->slots[index];
  assert(index < shard->slots_count);
  assert(slot->name_len == 0);
  memcpy(slot->name, name, name_len);
  slot->hash = hash;
  slot->ident_crc = tally_slot_ident_crc(index, hash, name, name_len);
  slot->flags = 0;
  slot->owner_class = owner_class;
  memset(slot->reserved, 0, sizeof slot->reserved);
  slot_store_value(slot, value); /* marked dirty once published, below */
  if (shard->flush != NULL) {
    shard->flush(slot, sizeof(*slot));
    shard->drain();
  }
  __atomic_store_n(&slot->name_len, (uint16_t)name_len, __ATOMIC_RELEASE);
  shard_flush(shard, slot, TALLY_STORE_CACHE_LINE_SIZE);
  shard_mark_dirty(shard, index);
  header_set_counters_used(shard, shard->header->counters_used + 1u);
  uint32_t distance = slot_probe_distance(shard, hash, index);
  assert(distance < TALLY_SLOT_PROBE_MAX);
  if (distance > shard->probe_max) __atomic_store_n(&shard->probe_max, distance, __ATOMIC_RELAXED);
  if (owner_class == TALLY_CLASS_STATSD) shard->statsd_used++;
  assert(shard->statsd_used <= shard->header->counters_used);
  assert(tally_shard_slot_readable(shard, index));
}

void tally_shard_slot_take_over(struct tally_shard *shard, uint32_t index)
{
  assert(index < shard->slots_count);
  struct tally_slot *slot = &shard->slots[index];
  assert(slot->name_len != 0);
  if (slot->owner_class != TALLY_CLASS_STATSD) return;
  __atomic_store_n(&slot->owner_class, (uint8_t)TALLY_CLASS_RELIABLE, __ATOMIC_RELAXED);
  shard_flush(shard, &slot->owner_class, 1u);
  if (shard->statsd_used > 0) shard->statsd_used--; /* 0 while recovery replays the log */
  shard->statsd_taken_over++;
}

uint8_t tally_shard_slot_class(const struct tally_shard *shard, uint32_t slot_index)
{
  assert(shard != NULL);
  assert(slot_index < shard->slots_count);
  uint8_t owner = __atomic_load_n(&shard->slots[slot_index].owner_class, __ATOMIC_RELAXED);
  return owner == TALLY_CLASS_STATSD ? TALLY_CLASS_STATSD : TALLY_CLASS_RELIABLE;
}

/* Adds delta to the published slot index, unless the sum would leave int64. */
static enum tally_reason slot_add(struct tally_shard *shard, uint32_t index, int64_t delta)
{
  assert(index < shard->slots_count);
  struct tally_slot *slot = &shard->slots[index];
  int64_t sum;
  if (__builtin_add_overflow(slot->value, delta, &sum)) return TALLY_REASON_COUNTER_OVERFLOW;
  shard_store_value(shard, index, sum);
  shard_flush(shard, slot, 16u);
  return TALLY_OK;
}

enum tally_reason tally_shard_add(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t delta)
{
  assert(shard != NULL);
  assert(name != NULL);
  uint32_t empty;
  uint32_t index = tally_shard_slot_probe(shard, name, name_len, hash, &empty);
  if (index != SLOT_NONE) return slot_add(shard, index, delta);
  enum tally_reason room = tally_shard_slot_room(shard, empty);
  if (room != TALLY_OK) return room;
  tally_shard_slot_create(shard, empty, name, name_len, hash, delta, TALLY_CLASS_STATSD);
  return TALLY_OK;
}

enum tally_reason tally_shard_add_statsd(struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, int64_t delta, const struct tally_statsd_rights *rights)
{
  assert(shard != NULL && name != NULL);
  assert(rights != NULL && rights->statsd_counters_max <= shard->counters_max);
  uint32_t empty;
  uint32_t index = tally_shard_slot_probe(shard, name, name_len, hash, &empty);
  if (index != SLOT_NONE) {
    if (!rights->writes_reliable &&
        tally_shard_slot_class(shard, index) != TALLY_CLASS_STATSD) {
      return TALLY_REASON_STATSD_RELIABLE_COUNTER;
    }
    return slot_add(shard, index, delta); /* one probe per line, as before */
  }
  enum tally_reason room = tally_shard_slot_room(shard, empty);
  if (room != TALLY_OK) return room;
  if (shard->statsd_used >= rights->statsd_counters_max) return TALLY_REASON_STATSD_SHARE_FULL;
  tally_shard_slot_create(shard, empty, name, name_len, hash, delta, TALLY_CLASS_STATSD);
  return TALLY_OK;
}

enum tally_reason tally_shard_set(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t value)
{
  return tally_shard_set_class(shard, name, name_len, hash, value, TALLY_CLASS_STATSD,
    shard->counters_max);
}

enum tally_reason tally_shard_set_class(struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, int64_t value, uint8_t owner_class,
  uint32_t statsd_counters_max)
{
  assert(shard != NULL);
  assert(name_len >= 1 && name_len <= TALLY_NAME_LEN_MAX);
  assert(owner_class == TALLY_CLASS_STATSD || owner_class == TALLY_CLASS_RELIABLE);
  uint32_t empty;
  uint32_t index = tally_shard_slot_probe(shard, name, name_len, hash, &empty);
  if (index != SLOT_NONE) {
    struct tally_slot *slot = &shard->slots[index];
    if (owner_class == TALLY_CLASS_RELIABLE) tally_shard_slot_take_over(shard, index);
    shard_store_value(shard, index, value);
    shard_flush(shard, slot, 16u);
    assert(slot->value == value);
    return TALLY_OK;
  }
  enum tally_reason room = tally_shard_slot_room(shard, empty);
  if (room != TALLY_OK) return room;
  if (owner_class == TALLY_CLASS_STATSD && shard->statsd_used >= statsd_counters_max) {
    return TALLY_REASON_STATSD_SHARE_FULL;
  }
  tally_shard_slot_create(shard, empty, name, name_len, hash, value, owner_class);
  return TALLY_OK;
}

uint64_t tally_shard_held_seq(const struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  return __atomic_load_n(&shard->header->held_seq, __ATOMIC_RELAXED);
}

void tally_shard_set_held_seq(struct tally_shard *shard, uint64_t seq)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  __atomic_store_n(&shard->header->held_seq, seq, __ATOMIC_RELEASE);
  shard_flush(shard, &shard->header->held_seq, sizeof(uint64_t));
}

uint64_t tally_shard_held_scan(const struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  return __atomic_load_n(&shard->header->held_scan, __ATOMIC_RELAXED);
}

void tally_shard_set_held_scan(struct tally_shard *shard, uint64_t scan)
{
  assert(shard != NULL);
  assert(shard->header != NULL);
  __atomic_store_n(&shard->header->held_scan, scan, __ATOMIC_RELEASE);
  shard_flush(shard, &shard->header->held_scan, sizeof(uint64_t));
}
