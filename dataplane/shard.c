/*
 * shard.c — one dataplane lcore's shard of the persistent store: the counter
 * slot table (open addressing, linear probing; the table is the on-media
 * index), the producers' dedup records, the batch redo log and recovery. The
 * journal of applied batches, the claims ring and the cross-node producer
 * functions are in shard_journal.c.
 *
 * One writer per shard (its lcore), readers anywhere: a slot is published by
 * the release-store of name_len, written after everything else in the slot.
 * A value and its check are written by one 16-byte aligned SSE2 store, so a
 * killed process can never leave them apart. A reliable batch goes through
 * the redo log (absolute values + the producer's new dedup state), so a
 * replay after a crash is idempotent. Recovery checks every record and
 * quarantines what fails its checksum. Byte map: docs/store-layout.md.
 *
 * Hot path rules: no syscalls, no allocation, no locks, no atomic RMW.
 */
#include <assert.h>
#include <emmintrin.h>
#include <string.h>

#include <rte_hash_crc.h>

#include "shard_internal.h"
#include "tally/name.h"
#include "tally/shard.h"

/* CRC32C seeds; part of the on-media format (changing one is a new layout). */
#define SHARD_HEADER_CRC_SEED 0x5348445fu /* "SHD_" */
#define SLOT_IDENT_CRC_SEED 0x534c4f54u   /* "SLOT" */
#define PRODUCER_CRC_SEED 0x50524f44u     /* "PROD" */
#define LOG_CRC_SEED 0x4c4f4752u          /* "LOGR" */

#define TABLE_SIZE_MIN 16u

static_assert(sizeof(struct tally_shard_header) <= BLOCK_SIZE, "header fits its block");
static_assert(offsetof(struct tally_slot, value) == 0, "value first, 16-byte aligned");
static_assert(offsetof(struct tally_slot, value_check) == 8, "check beside the value");
static_assert(offsetof(struct tally_slot, name_len) < CACHE_LINE_SIZE, "hot fields in line 0");
static_assert(offsetof(struct tally_shard_header, counters_used) == CACHE_LINE_SIZE,
  "the header's mutable line");
static_assert(offsetof(struct tally_shard_header, journal_next) == 88, "header layout");
static_assert(offsetof(struct tally_shard_header, claims_next) == 96, "header layout");
static_assert(sizeof(struct tally_shard_header) == 2u * CACHE_LINE_SIZE, "header: two lines");
static_assert(offsetof(struct tally_batch_log, crc) == 8, "log crc after state");
static_assert(offsetof(struct tally_batch_log, count) == 12, "log crc covers from count");
static_assert(offsetof(struct tally_batch_log, producer) == 16, "then from producer on");
static_assert(sizeof(struct tally_log_entry) == 16, "log entry layout");
static_assert(TALLY_BATCH_PAIRS_MAX <= 255u, "batch plan indexes fit a byte");

/* ---- Checksums ----------------------------------------------------------- */

uint32_t tally_slot_ident_crc(uint32_t slot_index, uint32_t hash, const char *name,
  uint32_t name_len)
{
  assert(name != NULL);
  assert(name_len <= TALLY_NAME_LEN_MAX);
  uint32_t crc = rte_hash_crc_4byte(slot_index, SLOT_IDENT_CRC_SEED);
  crc = rte_hash_crc_4byte(hash, crc);
  crc = rte_hash_crc_4byte(name_len, crc);
  return tally_crc32c(name, name_len, crc);
}

uint64_t tally_slot_value_check(uint32_t ident_crc, int64_t value)
{
  return (uint64_t)rte_hash_crc_8byte((uint64_t)value, ident_crc);
}

uint32_t tally_producer_crc(uint32_t producer_slot, uint64_t producer,
  const struct tally_dedup *dedup)
{
  assert(dedup != NULL);
  uint32_t crc = rte_hash_crc_4byte(producer_slot, PRODUCER_CRC_SEED);
  crc = rte_hash_crc_8byte(producer, crc);
  static_assert(sizeof(struct tally_dedup) % sizeof(uint64_t) == 0, "dedup is words");
  const uint64_t *words = (const uint64_t *)(const void *)dedup;
  for (size_t i = 0; i < sizeof(struct tally_dedup) / sizeof(uint64_t); i++) {
    crc = rte_hash_crc_8byte(words[i], crc);
  }
  return crc;
}

static uint32_t header_crc(const struct tally_shard_header *header)
{
  return tally_crc32c(header, (uint32_t)offsetof(struct tally_shard_header, header_crc),
    SHARD_HEADER_CRC_SEED);
}

/*
 * Over every field after crc, up to entries[count]: count, then the 8-byte
 * aligned rest (rte_hash_crc reads 8 bytes at a time; keep its loads aligned).
 */
static uint32_t log_crc(const struct tally_batch_log *log)
{
  assert(log->count <= TALLY_BATCH_PAIRS_MAX);
  size_t begin = offsetof(struct tally_batch_log, producer);
  size_t end = offsetof(struct tally_batch_log, entries) +
    (size_t)log->count * sizeof(struct tally_log_entry);
  assert(begin % 8u == 0);
  uint32_t crc = rte_hash_crc_4byte(log->count, LOG_CRC_SEED);
  return tally_crc32c((const uint8_t *)log + begin, (uint32_t)(end - begin), crc);
}

/* ---- Persistence helpers ------------------------------------------------- */

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

static inline void header_set_counters_used(struct tally_shard *shard, uint32_t used)
{
  __atomic_store_n(&shard->header->counters_used, used, __ATOMIC_RELAXED);
  shard_flush(shard, &shard->header->counters_used, sizeof(uint32_t));
}

/* ---- Geometry ------------------------------------------------------------ */

static uint32_t table_size_for(uint32_t capacity)
{
  uint64_t size = TABLE_SIZE_MIN;
  for (uint32_t step = 0; step < 32u; step++) {
    if ((uint64_t)capacity * TALLY_SLOT_LOAD_DEN <= size * TALLY_SLOT_LOAD_NUM) break;
    size *= 2u;
  }
  assert(size <= (1ull << 31));
  assert((uint64_t)capacity * TALLY_SLOT_LOAD_DEN <= size * TALLY_SLOT_LOAD_NUM);
  return (uint32_t)size;
}

uint32_t tally_shard_slots_for(uint32_t counters_max)
{
  assert(counters_max <= TALLY_COUNTERS_MAX);
  return table_size_for(counters_max);
}

uint32_t tally_shard_producer_slots_for(uint32_t producers_max)
{
  assert(producers_max <= TALLY_PRODUCERS_MAX);
  return table_size_for(producers_max);
}

static size_t round_block(size_t size)
{
  return (size + BLOCK_SIZE - 1u) / BLOCK_SIZE * BLOCK_SIZE;
}

static size_t log_offset(void)
{
  return BLOCK_SIZE;
}

static size_t slots_offset(void)
{
  return log_offset() + round_block(sizeof(struct tally_batch_log));
}

static size_t producers_offset(uint32_t slots_count)
{
  return slots_offset() + (size_t)slots_count * sizeof(struct tally_slot);
}

/* The journal ring, block aligned after the producer table. */
static size_t journal_offset(uint32_t slots_count, uint32_t producer_slots_count)
{
  return round_block(producers_offset(slots_count) +
    (size_t)producer_slots_count * sizeof(struct tally_producer));
}

/* The claims ring, block aligned after the journal. */
static size_t claims_offset(uint32_t slots_count, uint32_t producer_slots_count)
{
  return round_block(journal_offset(slots_count, producer_slots_count) +
    (size_t)TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry));
}

size_t tally_shard_region_size(uint32_t counters_max, uint32_t producers_max)
{
  uint32_t slots_count = tally_shard_slots_for(counters_max);
  uint32_t producer_slots_count = tally_shard_producer_slots_for(producers_max);
  size_t journal = journal_offset(slots_count, producer_slots_count);
  size_t claims = claims_offset(slots_count, producer_slots_count);
  size_t size = round_block(claims + (size_t)TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim));
  assert(size % BLOCK_SIZE == 0);
  assert(journal % BLOCK_SIZE == 0);
  assert(claims % BLOCK_SIZE == 0);
  assert(journal >= producers_offset(slots_count) +
    (size_t)producer_slots_count * sizeof(struct tally_producer));
  assert(claims >= journal + (size_t)TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry));
  assert(size >= claims + (size_t)TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim));
  return size;
}

int tally_shard_attach(struct tally_shard *shard, void *region, uint32_t index,
  uint32_t counters_max, uint32_t producers_max, bool format)
{
  assert(shard != NULL);
  assert(region != NULL);
  assert(((uintptr_t)region % CACHE_LINE_SIZE) == 0);
  memset(shard, 0, sizeof(*shard));
  uint8_t *base = region;
  shard->header = region;
  shard->log = (struct tally_batch_log *)(void *)(base + log_offset());
  shard->index = index;
  shard->counters_max = counters_max;
  shard->slots_count = tally_shard_slots_for(counters_max);
  shard->producers_max = producers_max;
  shard->producer_slots_count = tally_shard_producer_slots_for(producers_max);
  shard->slots = (struct tally_slot *)(void *)(base + slots_offset());
  shard->producers =
    (struct tally_producer *)(void *)(base + producers_offset(shard->slots_count));
  shard->journal = (struct tally_journal_entry *)(void *)(base +
    journal_offset(shard->slots_count, shard->producer_slots_count));
  shard->claims = (struct tally_claim *)(void *)(base +
    claims_offset(shard->slots_count, shard->producer_slots_count));
  assert(((uintptr_t)shard->journal % CACHE_LINE_SIZE) == 0);
  assert(((uintptr_t)shard->claims % CACHE_LINE_SIZE) == 0);
  assert((uint8_t *)shard->claims >= (uint8_t *)(shard->journal + TALLY_JOURNAL_ENTRIES));

  struct tally_shard_header *header = shard->header;
  if (format) {
    header->magic = TALLY_SHARD_MAGIC;
    header->shard_index = index;
    header->slots_count = shard->slots_count;
    header->counters_max = counters_max;
    header->producer_slots_count = shard->producer_slots_count;
    header->producers_max = producers_max;
    header->header_crc = header_crc(header);
    header->counters_used = 0;
    header->producers_used = 0;
    header->held_seq = 0;
    header->held_scan = 0;
    header->journal_next = 0;
    header->claims_next = 0;
    return 0;
  }
  if (header->magic != TALLY_SHARD_MAGIC) return -1;
  if (header->header_crc != header_crc(header)) return -1;
  if (header->shard_index != index) return -1;
  if (header->slots_count != shard->slots_count) return -1;
  if (header->counters_max != counters_max) return -1;
  if (header->producer_slots_count != shard->producer_slots_count) return -1;
  if (header->producers_max != producers_max) return -1;
  return 0;
}

/* ---- Lookup -------------------------------------------------------------- */

/*
 * Probes for name. Returns its healthy published slot or SLOT_NONE; *empty
 * gets the first empty slot of the probe (SLOT_NONE if the table is full).
 */
static uint32_t slot_probe(const struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, uint32_t *empty)
{
  assert(name_len >= 1u);
  assert(name_len <= TALLY_NAME_LEN_MAX);
  uint32_t mask = shard->slots_count - 1u;
  uint32_t index = hash & mask;
  *empty = SLOT_NONE;
  for (uint32_t step = 0; step < shard->slots_count; step++) {
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

int64_t tally_shard_find(const struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash)
{
  assert(shard != NULL);
  assert(name != NULL);
  if (name_len == 0 || name_len > TALLY_NAME_LEN_MAX) return -1;
  uint32_t empty;
  uint32_t index = slot_probe(shard, name, name_len, hash, &empty);
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
 * Creates name at the empty slot index with value, publishes it and counts
 * it. With fine-grained persistence the body is made durable before the
 * name_len that publishes it, so a published slot is always whole on media.
 */
static void slot_create(struct tally_shard *shard, uint32_t index, const char *name,
  uint32_t name_len, uint32_t hash, int64_t value)
{
  struct tally_slot *slot = &shard->slots[index];
  assert(index < shard->slots_count);
  assert(slot->name_len == 0);
  memcpy(slot->name, name, name_len);
  slot->hash = hash;
  slot->ident_crc = tally_slot_ident_crc(index, hash, name, name_len);
  slot->flags = 0;
  slot->reserved = 0;
  slot_store_value(slot, value);
  if (shard->flush != NULL) {
    shard->flush(slot, sizeof(*slot));
    shard->drain();
  }
  __atomic_store_n(&slot->name_len, (uint16_t)name_len, __ATOMIC_RELEASE);
  shard_flush(shard, slot, CACHE_LINE_SIZE);
  header_set_counters_used(shard, shard->header->counters_used + 1u);
  assert(tally_shard_slot_readable(shard, index));
}

enum tally_reason tally_shard_add(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t delta)
{
  assert(shard != NULL);
  assert(name != NULL);
  uint32_t empty;
  uint32_t index = slot_probe(shard, name, name_len, hash, &empty);
  if (index != SLOT_NONE) {
    struct tally_slot *slot = &shard->slots[index];
    int64_t sum;
    if (__builtin_add_overflow(slot->value, delta, &sum)) return TALLY_REASON_COUNTER_OVERFLOW;
    slot_store_value(slot, sum);
    shard_flush(shard, slot, 16u);
    return TALLY_OK;
  }
  if (shard->header->counters_used >= shard->counters_max || empty == SLOT_NONE) {
    return TALLY_REASON_COUNTERS_FULL;
  }
  slot_create(shard, empty, name, name_len, hash, delta);
  return TALLY_OK;
}

enum tally_reason tally_shard_set(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t value)
{
  assert(shard != NULL);
  assert(name_len >= 1 && name_len <= TALLY_NAME_LEN_MAX);
  uint32_t empty;
  uint32_t index = slot_probe(shard, name, name_len, hash, &empty);
  if (index != SLOT_NONE) {
    struct tally_slot *slot = &shard->slots[index];
    slot_store_value(slot, value);
    shard_flush(shard, slot, 16u);
    assert(slot->value == value);
    return TALLY_OK;
  }
  if (shard->header->counters_used >= shard->counters_max || empty == SLOT_NONE) {
    return TALLY_REASON_COUNTERS_FULL;
  }
  slot_create(shard, empty, name, name_len, hash, value);
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
  uint32_t new_names;
};

/*
 * Dedup: decides whether (producer, seq) is applied, and the state after it.
 * any_order: undos (tally_shard_apply_undo), checked against every run.
 */
static enum tally_ack_status plan_producer(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct producer_plan *plan, enum tally_reason *reason,
  bool any_order)
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
  if (any_order) return tally_dedup_plan_any_order(&plan->state, batch->seq, reason);
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
 * Finds every pair's slot and running absolute value without writing
 * anything: a full table or an overflow rejects the whole batch here.
 */
static enum tally_ack_status plan_pairs(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct pairs_plan *plan, enum tally_reason *reason)
{
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  assert(shard->counters_max < shard->slots_count);
  uint32_t hash[TALLY_BATCH_PAIRS_MAX];
  int64_t running[TALLY_BATCH_PAIRS_MAX]; /* indexed by a name's first pair */
  plan->new_names = 0;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wire_pair *pair = &batch->pairs[i];
    assert(tally_name_valid(pair->name, pair->name_len));
    hash[i] = tally_name_hash(pair->name, pair->name_len);
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
      plan->slot[i] = slot_probe(shard, pair->name, pair->name_len, hash[i], &empty);
      if (plan->slot[i] == SLOT_NONE) plan->new_names++;
      before = plan->slot[i] == SLOT_NONE ? 0 : shard->slots[plan->slot[i]].value;
    } else {
      plan->slot[i] = plan->slot[first];
      before = running[first];
    }
    if (__builtin_add_overflow(before, pair->delta, &plan->value[i])) {
      *reason = TALLY_REASON_COUNTER_OVERFLOW;
      return TALLY_ACK_OVERFLOW;
    }
    running[first] = plan->value[i];
  }
  if ((uint64_t)shard->header->counters_used + plan->new_names > shard->counters_max) {
    *reason = TALLY_REASON_COUNTERS_FULL;
    return TALLY_ACK_COUNTERS_FULL;
  }
  return TALLY_ACK_APPLIED;
}

/* Creates the batch's new names with value 0 (harmless if the batch dies). */
static void create_new_names(struct tally_shard *shard, const struct tally_wire_batch *batch,
  struct pairs_plan *plan)
{
  uint32_t created = 0;
  for (uint32_t i = 0; i < batch->count; i++) {
    if (plan->first[i] != i) {
      plan->slot[i] = plan->slot[plan->first[i]];
      continue;
    }
    if (plan->slot[i] != SLOT_NONE) continue;
    const struct tally_wire_pair *pair = &batch->pairs[i];
    uint32_t hash = tally_name_hash(pair->name, pair->name_len);
    uint32_t empty;
    uint32_t found = slot_probe(shard, pair->name, pair->name_len, hash, &empty);
    assert(found == SLOT_NONE);
    assert(empty != SLOT_NONE); /* counters_used + new_names <= counters_max < slots */
    slot_create(shard, empty, pair->name, pair->name_len, hash, 0);
    plan->slot[i] = empty;
    created++;
  }
  assert(created == plan->new_names);
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
  for (uint32_t i = 0; i < batch->count; i++) {
    assert(plan->slot[i] < shard->slots_count);
    log->entries[i].slot = plan->slot[i];
    log->entries[i].reserved = 0;
    log->entries[i].value = plan->value[i];
  }
  log->crc = log_crc(log);
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

/* Applies a valid redo record (idempotent: absolute values, absolute state). */
static void log_apply(struct tally_shard *shard)
{
  const struct tally_batch_log *log = shard->log;
  assert(log->state == TALLY_LOG_STATE_VALID);
  assert(log->count <= TALLY_BATCH_PAIRS_MAX);
  for (uint32_t i = 0; i < log->count; i++) {
    struct tally_slot *slot = &shard->slots[log->entries[i].slot];
    slot_store_value(slot, log->entries[i].value);
    shard_flush(shard, slot, 16u);
  }
  producer_store(shard, log->producer_slot, log->producer, &log->producer_dedup);
}

static void log_clear(struct tally_shard *shard)
{
  order_stores();
  __atomic_store_n(&shard->log->state, TALLY_LOG_STATE_EMPTY, __ATOMIC_RELAXED);
  shard_flush(shard, &shard->log->state, sizeof(shard->log->state));
  assert(shard->log->state == TALLY_LOG_STATE_EMPTY);
}

static enum tally_ack_status apply_batch(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason, bool any_order)
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
  enum tally_ack_status status = plan_producer(shard, batch, &producer, reason, any_order);
  if (status != TALLY_ACK_APPLIED) return status;
  struct pairs_plan plan;
  status = plan_pairs(shard, batch, &plan, reason);
  if (status != TALLY_ACK_APPLIED) return status;

  create_new_names(shard, batch, &plan);
  uint64_t journal_next = shard->header->journal_next;
  tally_shard_journal_append(shard, batch, plan.slot); /* before the redo record */
  assert(shard->header->journal_next == journal_next + 1u);
  log_write(shard, batch, &producer, &plan);
  log_apply(shard);
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
  log_clear(shard);
  assert(shard->producers[producer.slot].producer == batch->producer);
  return TALLY_ACK_APPLIED;
}

enum tally_ack_status tally_shard_apply_batch(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason)
{
  return apply_batch(shard, batch, reason, false);
}

enum tally_ack_status tally_shard_apply_undo(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason)
{
  return apply_batch(shard, batch, reason, true);
}

/* ---- Recovery ------------------------------------------------------------ */

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
  if (log->crc != log_crc(log)) return false;
  if (log->producer == 0 || log->producer == PRODUCER_TOMBSTONE) return false;
  if (log->producer_slot >= shard->producer_slots_count) return false;
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
    log_apply(shard);
    /* What the kill cut short after the values: the applied flag, the claim. */
    (void)tally_shard_journal_mark_applied(shard, log->producer, log->seq);
    tally_shard_claim_recover(shard, log->producer, log->seq);
    report->log_replayed++;
  } else {
    report->log_discarded++;
  }
  log_clear(shard);
  assert(report->log_replayed + report->log_discarded == 1u);
}

static bool slot_healthy(const struct tally_slot *slot, uint32_t index)
{
  assert(slot != NULL);
  uint32_t len = slot->name_len;
  assert(len != 0);
  if (len == 0 || len > TALLY_NAME_LEN_MAX) return false;
  if ((slot->flags & TALLY_SLOT_FLAG_QUARANTINED) != 0) return false;
  if (!tally_name_valid(slot->name, len)) return false;
  if (slot->hash != tally_name_hash(slot->name, len)) return false;
  if (slot->ident_crc != tally_slot_ident_crc(index, slot->hash, slot->name, len)) return false;
  return slot->value_check == tally_slot_value_check(slot->ident_crc, slot->value);
}

/*
 * Unpublished slots with stray bytes are cleared; published slots that fail
 * a check are quarantined for good (kept in place so probe chains hold).
 */
static void recover_slots(struct tally_shard *shard, struct tally_shard_recovery *report)
{
  assert(shard->slots_count > shard->counters_max);
  uint32_t used = 0;
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
    if (slot_healthy(slot, i)) continue;
    if ((slot->flags & TALLY_SLOT_FLAG_QUARANTINED) == 0) {
      slot->flags |= TALLY_SLOT_FLAG_QUARANTINED;
      shard_flush(shard, slot, CACHE_LINE_SIZE);
    }
    report->slots_quarantined++;
  }
  assert(used <= shard->slots_count);
  report->counters_used = used;
  header_set_counters_used(shard, used);
}

/* Producer records failing their checksum become tombstones (slot stays taken). */
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
    if (record->producer == PRODUCER_TOMBSTONE) {
      report->producers_quarantined++;
      continue;
    }
    if (record->crc == tally_producer_crc(i, record->producer, &record->dedup)) continue;
    record->producer = PRODUCER_TOMBSTONE;
    shard_flush(shard, record, CACHE_LINE_SIZE);
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
