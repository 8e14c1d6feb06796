/*
 * test_shard.c — the shard on a plain aligned, zeroed DRAM region (no pmem):
 * geometry and header checks, counting, limits, concurrent readers, reliable
 * batches (dedup window, all-or-nothing, same name twice), redo-log replay
 * after simulated crashes, what recovery does with corrupted records, and
 * cross-node dedup: the journal ring, producer records read from any thread
 * and merged into replica tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <emmintrin.h>
#include <pthread.h>

#include "tally/name.h"
#include "tally/shard.h"

struct fixture {
  void *region;
  size_t size;
  struct tally_shard shard;
};

static struct fixture *fixture_new(uint32_t counters_max, uint32_t producers_max)
{
  struct fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->size = tally_shard_region_size(counters_max, producers_max);
  f->region = aligned_alloc(4096, f->size);
  assert_non_null(f->region);
  memset(f->region, 0, f->size);
  assert_int_equal(tally_shard_attach(&f->shard, f->region, 3, counters_max, producers_max,
    true), 0);
  return f;
}

static void fixture_free(struct fixture *f)
{
  free(f->region);
  free(f);
}

static enum tally_reason add(struct tally_shard *shard, const char *name, int64_t delta)
{
  uint32_t len = (uint32_t)strlen(name);
  return tally_shard_add(shard, name, len, tally_name_hash(name, len), delta);
}

static int64_t find(const struct tally_shard *shard, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  return tally_shard_find(shard, name, len, tally_name_hash(name, len));
}

/* Value of name, asserting it is readable. */
static int64_t value_of(const struct tally_shard *shard, const char *name)
{
  int64_t slot = find(shard, name);
  assert_true(slot >= 0);
  assert_true(tally_shard_slot_readable(shard, (uint32_t)slot));
  return tally_shard_slot_value(shard, (uint32_t)slot);
}

static void batch_init(struct tally_wire_batch *batch, uint64_t producer, uint64_t seq)
{
  memset(batch, 0, sizeof(*batch));
  batch->producer = producer;
  batch->seq = seq;
}

static void batch_pair(struct tally_wire_batch *batch, const char *name, int64_t delta)
{
  assert_true(batch->count < TALLY_BATCH_PAIRS_MAX);
  batch->pairs[batch->count].name = name;
  batch->pairs[batch->count].name_len = (uint32_t)strlen(name);
  batch->pairs[batch->count].delta = delta;
  batch->count++;
}

static enum tally_ack_status apply(struct tally_shard *shard, uint64_t producer, uint64_t seq,
  const char *name, int64_t delta, enum tally_reason *reason)
{
  struct tally_wire_batch batch;
  batch_init(&batch, producer, seq);
  batch_pair(&batch, name, delta);
  return tally_shard_apply_batch(shard, &batch, reason);
}

/* ---- Geometry and header ------------------------------------------------- */

static void test_geometry(void **state)
{
  (void)state;
  assert_int_equal(tally_shard_slots_for(12), 16);
  assert_int_equal(tally_shard_slots_for(16), 32);
  assert_int_equal(tally_shard_slots_for(48), 64);
  assert_int_equal(tally_shard_slots_for(49), 128);
  assert_int_equal(tally_shard_slots_for(TALLY_COUNTERS_MAX), 1u << 27);
  assert_int_equal(tally_shard_producer_slots_for(16), 32);
  size_t size = tally_shard_region_size(1000, 100);
  assert_int_equal(size % 4096, 0);
  assert_true(size >= 4096 + 4096 + 2048 * 128 + 256 * 64);
  /* The journal ring comes last, whole blocks, after the producer table. */
  size_t journal = TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry);
  assert_int_equal(sizeof(struct tally_journal_entry), 1088);
  assert_int_equal(journal % 4096, 0);
  assert_int_equal(size, 4096 + 4096 + 2048 * 128 + 256 * 64 + journal);
  assert_int_equal(tally_shard_region_size(16, 16), 4096 + 4096 + 32 * 128 + 4096 + journal);
}

static void test_attach_places_journal(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(1000, 100);
  const uint8_t *base = f->region;
  const uint8_t *journal = (const uint8_t *)f->shard.journal;
  const uint8_t *producers_end =
    (const uint8_t *)(f->shard.producers + f->shard.producer_slots_count);
  assert_true(journal >= producers_end);
  assert_int_equal((size_t)(journal - base) % 4096, 0);
  assert_int_equal((size_t)(journal - base) +
    TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry), f->size);
  assert_int_equal(f->shard.header->journal_next, 0);
  struct tally_shard other;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 1000, 100, false), 0);
  assert_ptr_equal(other.journal, f->shard.journal);
  fixture_free(f);
}

static void test_attach_checks_header(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  struct tally_shard other;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 20, false), 0);
  assert_ptr_equal(other.slots, f->shard.slots);
  assert_int_equal(tally_shard_attach(&other, f->region, 4, 100, 20, false), -1);
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 200, 20, false), -1);
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 40, false), -1);
  f->shard.header->reserved[0] = 0; /* outside the crc: harmless */
  f->shard.header->counters_max ^= 1u << 20;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 20, false), -1);
  f->shard.header->counters_max ^= 1u << 20;
  f->shard.header->header_crc ^= 1u;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 20, false), -1);
  f->shard.header->header_crc ^= 1u;
  f->shard.header->magic = 0;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 20, false), -1);
  fixture_free(f);
}

/* ---- Counting ------------------------------------------------------------ */

static void test_add_and_find(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(find(&f->shard, "requests.ok"), -1);
  assert_int_equal(add(&f->shard, "requests.ok", 5), TALLY_OK);
  assert_int_equal(add(&f->shard, "requests.ok", 3), TALLY_OK);
  assert_int_equal(add(&f->shard, "requests.err", -2), TALLY_OK);
  assert_int_equal(value_of(&f->shard, "requests.ok"), 8);
  assert_int_equal(value_of(&f->shard, "requests.err"), -2);
  assert_int_equal(tally_shard_counters_used(&f->shard), 2);
  assert_int_equal(find(&f->shard, "requests"), -1);
  assert_int_equal(tally_shard_find(&f->shard, "x", 0, 0), -1);
  int64_t slot = find(&f->shard, "requests.ok");
  const struct tally_slot *s = &f->shard.slots[slot];
  assert_int_equal(s->value_check, tally_slot_value_check(s->ident_crc, 8));
  assert_int_equal(s->ident_crc, tally_slot_ident_crc((uint32_t)slot, s->hash, "requests.ok", 11));
  fixture_free(f);
}

static void test_counters_full(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  char name[32];
  for (int i = 0; i < 16; i++) {
    snprintf(name, sizeof(name), "counter.%d", i);
    assert_int_equal(add(&f->shard, name, i), TALLY_OK);
  }
  assert_int_equal(add(&f->shard, "one.too.many", 1), TALLY_REASON_COUNTERS_FULL);
  assert_int_equal(find(&f->shard, "one.too.many"), -1);
  assert_int_equal(tally_shard_counters_used(&f->shard), 16);
  for (int i = 0; i < 16; i++) {
    snprintf(name, sizeof(name), "counter.%d", i);
    assert_int_equal(add(&f->shard, name, 100), TALLY_OK);
    assert_int_equal(value_of(&f->shard, name), i + 100);
  }
  fixture_free(f);
}

static void test_overflow_rejected(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "big", INT64_MAX), TALLY_OK);
  assert_int_equal(add(&f->shard, "big", 1), TALLY_REASON_COUNTER_OVERFLOW);
  assert_int_equal(value_of(&f->shard, "big"), INT64_MAX);
  assert_int_equal(add(&f->shard, "small", INT64_MIN), TALLY_OK);
  assert_int_equal(add(&f->shard, "small", -1), TALLY_REASON_COUNTER_OVERFLOW);
  assert_int_equal(value_of(&f->shard, "small"), INT64_MIN);
  assert_int_equal(add(&f->shard, "small", INT64_MAX), TALLY_OK);
  assert_int_equal(value_of(&f->shard, "small"), -1);
  fixture_free(f);
}

/* ---- Concurrent reader --------------------------------------------------- */

#define READER_NAMES 8
#define WRITER_ROUNDS 100000

struct reader_args {
  const struct tally_shard *shard;
  int done;
  uint64_t reads;
  uint64_t bad;
};

static const char *reader_name(int i)
{
  static const char *names[READER_NAMES] = {"r.a", "r.b", "r.c", "r.d", "r.e", "r.f", "r.g",
    "r.h"};
  return names[i];
}

/* Checks every read: value and check agree (one 16-byte load), values never go down. */
static void *reader_main(void *arg)
{
  struct reader_args *args = arg;
  int64_t last[READER_NAMES] = {0};
  bool avx = __builtin_cpu_supports("avx"); /* 16-byte aligned loads are atomic with AVX */
  for (uint64_t round = 0; round < 100000000ull; round++) {
    bool done = __atomic_load_n(&args->done, __ATOMIC_ACQUIRE);
    for (int i = 0; i < READER_NAMES; i++) {
      int64_t slot = find(args->shard, reader_name(i));
      if (slot < 0) continue;
      const struct tally_slot *s = &args->shard->slots[slot];
      __m128i pair = _mm_load_si128((const __m128i *)(const void *)&s->value);
      int64_t value = _mm_cvtsi128_si64(pair);
      uint64_t check = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(pair, pair));
      if (avx && check != tally_slot_value_check(s->ident_crc, value)) args->bad++;
      if (value < last[i]) args->bad++;
      last[i] = value;
      args->reads++;
    }
    if (done) break;
  }
  return NULL;
}

static void test_concurrent_reader(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  struct reader_args args = {.shard = &f->shard};
  pthread_t reader;
  assert_int_equal(pthread_create(&reader, NULL, reader_main, &args), 0);
  for (int round = 0; round < WRITER_ROUNDS; round++) {
    assert_int_equal(add(&f->shard, reader_name(round % READER_NAMES), 1 + round % 3), TALLY_OK);
  }
  __atomic_store_n(&args.done, 1, __ATOMIC_RELEASE);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(args.bad, 0);
  assert_true(args.reads > 0);
  int64_t total = 0;
  for (int i = 0; i < READER_NAMES; i++) total += value_of(&f->shard, reader_name(i));
  assert_int_equal(total, WRITER_ROUNDS / 3 * 6 + 1); /* 1+2+3 per 3 rounds, then a 1 */
  fixture_free(f);
}

/* ---- Reliable batches ---------------------------------------------------- */

static void test_batch_applied_then_duplicate(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  struct tally_wire_batch batch;
  batch_init(&batch, 42, 1);
  batch_pair(&batch, "billing.eu", 10);
  batch_pair(&batch, "billing.us", 20);
  enum tally_reason reason = TALLY_REASON_COUNT;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(reason, TALLY_OK);
  assert_int_equal(f->shard.log->state, TALLY_LOG_STATE_EMPTY);
  reason = TALLY_REASON_COUNT;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(reason, TALLY_OK);
  assert_int_equal(value_of(&f->shard, "billing.eu"), 10);
  assert_int_equal(value_of(&f->shard, "billing.us"), 20);
  assert_int_equal(f->shard.header->producers_used, 1);
  assert_int_equal(f->shard.header->counters_used, 2);
  fixture_free(f);
}

static void test_batch_window(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint64_t order[] = {5, 3, 4, 1, 2};
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(apply(&f->shard, 9, order[i], "q", 1, &reason), TALLY_ACK_APPLIED);
  }
  for (uint64_t seq = 1; seq <= 5; seq++) {
    assert_int_equal(apply(&f->shard, 9, seq, "q", 1, &reason), TALLY_ACK_DUPLICATE);
  }
  assert_int_equal(value_of(&f->shard, "q"), 5);
  assert_int_equal(apply(&f->shard, 9, 69, "q", 1, &reason), TALLY_ACK_APPLIED);
  /* 69 - 5 = 64: outside the window */
  assert_int_equal(apply(&f->shard, 9, 5, "q", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(reason, TALLY_REASON_BATCH_STALE);
  assert_int_equal(apply(&f->shard, 9, 6, "q", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 9, 6, "q", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 9, 68, "q", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 9, 1000, "q", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 9, 999, "q", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 9, 69, "q", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(value_of(&f->shard, "q"), 10);
  /* Another producer has its own window. */
  assert_int_equal(apply(&f->shard, 10, 5, "q", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "q"), 11);
  fixture_free(f);
}

static void test_batch_bad_producer(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 0, 1, "q", 1, &reason), TALLY_ACK_MALFORMED);
  assert_int_equal(reason, TALLY_REASON_BATCH_BAD_PRODUCER);
  assert_int_equal(apply(&f->shard, UINT64_MAX, 1, "q", 1, &reason), TALLY_ACK_MALFORMED);
  assert_int_equal(reason, TALLY_REASON_BATCH_BAD_PRODUCER);
  assert_int_equal(find(&f->shard, "q"), -1);
  fixture_free(f);
}

static void test_batch_producers_full(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 16);
  enum tally_reason reason;
  for (uint64_t producer = 1; producer <= 16; producer++) {
    assert_int_equal(apply(&f->shard, producer, 1, "p", 1, &reason), TALLY_ACK_APPLIED);
  }
  assert_int_equal(apply(&f->shard, 17, 1, "p", 1, &reason), TALLY_ACK_PRODUCERS_FULL);
  assert_int_equal(reason, TALLY_REASON_PRODUCERS_FULL);
  assert_int_equal(apply(&f->shard, 16, 2, "p", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "p"), 17);
  assert_int_equal(f->shard.header->producers_used, 16);
  fixture_free(f);
}

static void test_batch_counters_full_changes_nothing(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  char name[32];
  for (int i = 0; i < 15; i++) {
    snprintf(name, sizeof(name), "c.%d", i);
    assert_int_equal(add(&f->shard, name, 1), TALLY_OK);
  }
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  struct tally_wire_batch batch;
  batch_init(&batch, 5, 1);
  batch_pair(&batch, "c.0", 10);
  batch_pair(&batch, "new.1", 1);
  batch_pair(&batch, "new.1", 1); /* the same new name twice needs one slot */
  batch_pair(&batch, "new.2", 1);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason),
    TALLY_ACK_COUNTERS_FULL);
  assert_int_equal(reason, TALLY_REASON_COUNTERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  batch.count = 3; /* drop new.2: one new name fits */
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "c.0"), 11);
  assert_int_equal(value_of(&f->shard, "new.1"), 2);
  assert_int_equal(tally_shard_counters_used(&f->shard), 16);
  free(before);
  fixture_free(f);
}

static void test_batch_overflow_changes_nothing(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "a", 1), TALLY_OK);
  assert_int_equal(add(&f->shard, "b", INT64_MAX - 5), TALLY_OK);
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  struct tally_wire_batch batch;
  batch_init(&batch, 5, 1);
  batch_pair(&batch, "a", 1);
  batch_pair(&batch, "b", 3);
  batch_pair(&batch, "new", 1);
  batch_pair(&batch, "b", 3); /* 6 in all: one too many */
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_OVERFLOW);
  assert_int_equal(reason, TALLY_REASON_COUNTER_OVERFLOW);
  assert_memory_equal(before, f->region, f->size);
  free(before);
  fixture_free(f);
}

static void test_batch_same_name_twice(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "a", 100), TALLY_OK);
  struct tally_wire_batch batch;
  batch_init(&batch, 5, 1);
  batch_pair(&batch, "a", 1);
  batch_pair(&batch, "b", 2);
  batch_pair(&batch, "a", 3);
  batch_pair(&batch, "b", -7);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "a"), 104);
  assert_int_equal(value_of(&f->shard, "b"), -5);
  /* The redo record holds the running values, in order. */
  assert_int_equal(f->shard.log->count, 4);
  assert_int_equal(f->shard.log->entries[0].value, 101);
  assert_int_equal(f->shard.log->entries[1].value, 2);
  assert_int_equal(f->shard.log->entries[2].value, 104);
  assert_int_equal(f->shard.log->entries[3].value, -5);
  assert_int_equal(f->shard.log->entries[0].slot, f->shard.log->entries[2].slot);
  fixture_free(f);
}

/* ---- Redo log and recovery ----------------------------------------------- */

static void recover(struct fixture *f, struct tally_shard_recovery *report)
{
  memset(report, 0xff, sizeof(*report));
  tally_shard_recover(&f->shard, report);
}

/* A shard with a few counters and one producer, and a batch touching them. */
static struct fixture *crash_fixture(struct tally_wire_batch *batch)
{
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(add(&f->shard, "old.a", 7), TALLY_OK);
  assert_int_equal(add(&f->shard, "old.b", -3), TALLY_OK);
  assert_int_equal(apply(&f->shard, 77, 1, "old.a", 1, &reason), TALLY_ACK_APPLIED);
  batch_init(batch, 77, 2);
  batch_pair(batch, "old.a", 10);
  batch_pair(batch, "new.c", 5);
  batch_pair(batch, "old.b", 4);
  batch_pair(batch, "old.a", 100);
  return f;
}

/*
 * Builds the state a crash leaves after the redo record became valid: the
 * post-batch region with the first `applied` entries' slots (and, unless all
 * are applied, the producer record) rolled back to their pre-batch bytes.
 */
static void crash_after_log(struct fixture *f, const uint8_t *pre, const uint8_t *post,
  uint32_t applied)
{
  memcpy(f->region, post, f->size);
  const struct tally_batch_log *log = f->shard.log;
  for (uint32_t i = log->count; i > applied; i--) {
    uint32_t slot = log->entries[i - 1].slot;
    size_t offset = (size_t)((uint8_t *)&f->shard.slots[slot] - (uint8_t *)f->region);
    const struct tally_slot *old = (const void *)(pre + offset);
    if (old->name_len != 0) {
      memcpy(&f->shard.slots[slot], old, 16); /* value + check */
    } else { /* created by the batch with value 0 before the log */
      f->shard.slots[slot].value = 0;
      f->shard.slots[slot].value_check =
        tally_slot_value_check(f->shard.slots[slot].ident_crc, 0);
    }
  }
  if (applied < log->count) {
    size_t offset = (size_t)((uint8_t *)f->shard.producers - (uint8_t *)f->region);
    size_t size = f->shard.producer_slots_count * sizeof(struct tally_producer);
    memcpy(f->shard.producers, pre + offset, size);
    f->shard.header->producers_used = ((const struct tally_shard_header *)(const void *)pre)
      ->producers_used;
  }
  f->shard.log->state = TALLY_LOG_STATE_VALID;
}

static void test_redo_replay_is_exact_and_idempotent(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  struct fixture *f = crash_fixture(&batch);
  uint8_t *pre = malloc(f->size);
  uint8_t *post = malloc(f->size);
  assert_non_null(pre);
  assert_non_null(post);
  memcpy(pre, f->region, f->size);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  memcpy(post, f->region, f->size);
  assert_int_equal(value_of(&f->shard, "old.a"), 118);

  for (uint32_t applied = 0; applied <= batch.count; applied++) {
    crash_after_log(f, pre, post, applied);
    if (applied < batch.count) assert_memory_not_equal(f->region, post, f->size);
    struct tally_shard_recovery report;
    recover(f, &report);
    assert_int_equal(report.log_replayed, 1);
    assert_int_equal(report.log_discarded, 0);
    assert_int_equal(report.slots_quarantined, 0);
    assert_int_equal(report.slots_torn, 0);
    assert_int_equal(report.counters_used, 3);
    assert_int_equal(report.producers_used, 1);
    assert_memory_equal(f->region, post, f->size);
    recover(f, &report); /* recovering again changes nothing */
    assert_int_equal(report.log_replayed, 0);
    assert_memory_equal(f->region, post, f->size);
  }
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(value_of(&f->shard, "old.a"), 118);
  assert_int_equal(value_of(&f->shard, "new.c"), 5);
  assert_int_equal(value_of(&f->shard, "old.b"), 1);
  free(pre);
  free(post);
  fixture_free(f);
}

static void test_redo_bad_crc_discarded(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  struct fixture *f = crash_fixture(&batch);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  int64_t a = value_of(&f->shard, "old.a");
  f->shard.log->entries[0].value += 1000; /* torn or corrupt record */
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.log_replayed, 0);
  assert_int_equal(report.log_discarded, 1);
  assert_int_equal(f->shard.log->state, TALLY_LOG_STATE_EMPTY);
  assert_int_equal(value_of(&f->shard, "old.a"), a);
  /* A garbage state word is discarded too. */
  f->shard.log->state = 12345;
  recover(f, &report);
  assert_int_equal(report.log_discarded, 1);
  assert_int_equal(value_of(&f->shard, "old.a"), a);
  fixture_free(f);
}

static void test_redo_unpublished_target_discarded(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  struct fixture *f = crash_fixture(&batch);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  /* The new slot never reached the media, the record did. */
  uint32_t slot = f->shard.log->entries[1].slot;
  memset(&f->shard.slots[slot], 0, sizeof(struct tally_slot));
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.log_discarded, 1);
  assert_int_equal(report.counters_used, 2);
  assert_int_equal(find(&f->shard, "new.c"), -1);
  fixture_free(f);
}

static void test_corrupt_slots_quarantined(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  const char *names[] = {"name.byte", "value.byte", "ident.crc", "value.check", "healthy"};
  int64_t slots[5];
  for (int i = 0; i < 5; i++) {
    assert_int_equal(add(&f->shard, names[i], 40 + i), TALLY_OK);
    slots[i] = find(&f->shard, names[i]);
  }
  f->shard.slots[slots[0]].name[2] ^= 0x01;
  ((uint8_t *)&f->shard.slots[slots[1]].value)[3] ^= 0x10;
  f->shard.slots[slots[2]].ident_crc ^= 0x100;
  f->shard.slots[slots[3]].value_check ^= 1ull << 40;
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.slots_quarantined, 4);
  assert_int_equal(report.counters_used, 5);
  for (int i = 0; i < 4; i++) {
    assert_false(tally_shard_slot_readable(&f->shard, (uint32_t)slots[i]));
    assert_int_equal(f->shard.slots[slots[i]].flags & TALLY_SLOT_FLAG_QUARANTINED, 1);
  }
  assert_int_equal(value_of(&f->shard, "healthy"), 44);
  assert_int_equal(find(&f->shard, "value.byte"), -1);
  assert_int_equal(add(&f->shard, "value.byte", 2), TALLY_OK); /* a fresh slot */
  assert_true(find(&f->shard, "value.byte") != slots[1]);
  assert_int_equal(value_of(&f->shard, "value.byte"), 2);
  assert_int_equal(tally_shard_counters_used(&f->shard), 6);
  recover(f, &report); /* quarantine is sticky and recovery is idempotent */
  assert_int_equal(report.slots_quarantined, 4);
  assert_int_equal(report.counters_used, 6);
  assert_int_equal(value_of(&f->shard, "value.byte"), 2);
  fixture_free(f);
}

static void test_torn_unpublished_slot_cleared(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "kept", 1), TALLY_OK);
  uint32_t torn = (uint32_t)((find(&f->shard, "kept") + 5) & (f->shard.slots_count - 1));
  memcpy(f->shard.slots[torn].name, "half", 4);
  f->shard.slots[torn].value = 99;
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.slots_torn, 1);
  assert_int_equal(report.counters_used, 1);
  const uint8_t *bytes = (const uint8_t *)&f->shard.slots[torn];
  for (size_t i = 0; i < sizeof(struct tally_slot); i++) assert_int_equal(bytes[i], 0);
  assert_int_equal(value_of(&f->shard, "kept"), 1);
  fixture_free(f);
}

static void test_corrupt_producer_quarantined(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 1, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 2, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  uint32_t corrupt = UINT32_MAX;
  for (uint32_t i = 0; i < f->shard.producer_slots_count; i++) {
    if (f->shard.producers[i].producer == 2) corrupt = i;
  }
  assert_true(corrupt != UINT32_MAX);
  f->shard.producers[corrupt].window ^= 4;
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.producers_quarantined, 1);
  assert_int_equal(report.producers_used, 2);
  assert_int_equal(f->shard.producers[corrupt].producer, UINT64_MAX);
  /* Producer 1 keeps its window; producer 2 starts over in a new record. */
  assert_int_equal(apply(&f->shard, 1, 1, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 2, 5, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(f->shard.header->producers_used, 3);
  assert_int_equal(value_of(&f->shard, "x"), 3);
  fixture_free(f);
}

/* ---- Journal ------------------------------------------------------------- */

static uint64_t journal_next(const struct fixture *f)
{
  return f->shard.header->journal_next;
}

static void test_journal_entry_per_batch(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "a", 100), TALLY_OK);
  struct tally_wire_batch batch;
  batch_init(&batch, 5, 9);
  batch_pair(&batch, "a", 1);
  batch_pair(&batch, "b", 2);  /* new: its slot is created before the entry */
  batch_pair(&batch, "a", 3);  /* a name twice: two pairs, the same slot */
  batch_pair(&batch, "b", -7);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(journal_next(f), 1);
  struct tally_journal_entry entry;
  memset(&entry, 0xee, sizeof(entry));
  assert_true(tally_shard_journal_find(&f->shard, 5, 9, &entry));
  assert_int_equal(entry.producer, 5);
  assert_int_equal(entry.seq, 9);
  assert_int_equal(entry.count, 4);
  assert_int_equal(entry.crc, tally_journal_crc(&entry));
  uint32_t slot_a = (uint32_t)find(&f->shard, "a");
  uint32_t slot_b = (uint32_t)find(&f->shard, "b");
  const uint32_t slots[4] = {slot_a, slot_b, slot_a, slot_b};
  const int64_t deltas[4] = {1, 2, 3, -7};
  for (uint32_t i = 0; i < 4; i++) {
    assert_int_equal(entry.pairs[i].slot, slots[i]);
    assert_int_equal(entry.pairs[i].delta, deltas[i]);
  }
  assert_memory_equal(&entry, &f->shard.journal[0],
    offsetof(struct tally_journal_entry, pairs) + 4 * sizeof(struct tally_journal_pair));
  /* Not found: another seq, another producer, the invalid producer ids. */
  assert_false(tally_shard_journal_find(&f->shard, 5, 8, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 6, 9, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 0, 9, &entry));
  assert_false(tally_shard_journal_find(&f->shard, UINT64_MAX, 9, &entry));

  assert_int_equal(apply(&f->shard, 5, 10, "c", 42, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(journal_next(f), 2);
  assert_true(tally_shard_journal_find(&f->shard, 5, 10, &entry));
  assert_int_equal(entry.count, 1);
  assert_int_equal(entry.pairs[0].slot, (uint32_t)find(&f->shard, "c"));
  assert_int_equal(entry.pairs[0].delta, 42);
  assert_true(tally_shard_journal_find(&f->shard, 5, 9, &entry)); /* the older is kept */
  assert_int_equal(entry.count, 4);
  /* Statsd adds are not reliable batches: no entry. */
  assert_int_equal(add(&f->shard, "a", 1), TALLY_OK);
  assert_int_equal(journal_next(f), 2);
  fixture_free(f);
}

static void test_journal_not_written_unless_applied(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 1, 100, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(journal_next(f), 1);
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);

  assert_int_equal(apply(&f->shard, 1, 100, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 1, 36, "x", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 0, 1, "x", 1, &reason), TALLY_ACK_MALFORMED);
  assert_int_equal(apply(&f->shard, 1, 101, "x", INT64_MAX, &reason), TALLY_ACK_OVERFLOW);
  assert_memory_equal(before, f->region, f->size);
  for (uint64_t producer = 2; producer <= 16; producer++) {
    assert_int_equal(apply(&f->shard, producer, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  }
  assert_int_equal(journal_next(f), 16);
  memcpy(before, f->region, f->size);
  assert_int_equal(apply(&f->shard, 17, 1, "x", 1, &reason), TALLY_ACK_PRODUCERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  char name[16];
  for (int i = 0; i < 15; i++) {
    snprintf(name, sizeof(name), "c.%d", i);
    assert_int_equal(add(&f->shard, name, 1), TALLY_OK);
  }
  memcpy(before, f->region, f->size);
  assert_int_equal(apply(&f->shard, 1, 102, "one.too.many", 1, &reason),
    TALLY_ACK_COUNTERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  assert_int_equal(journal_next(f), 16);

  struct tally_journal_entry entry;
  assert_false(tally_shard_journal_find(&f->shard, 1, 36, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 1, 101, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 1, 102, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 17, 1, &entry));
  assert_true(tally_shard_journal_find(&f->shard, 1, 100, &entry));
  assert_true(tally_shard_journal_find(&f->shard, 16, 1, &entry));
  free(before);
  fixture_free(f);
}

static void test_journal_ring_wraps(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint64_t total = TALLY_JOURNAL_ENTRIES + 10;
  for (uint64_t seq = 1; seq <= total; seq++) {
    assert_int_equal(apply(&f->shard, 7, seq, "w", (int64_t)seq, &reason), TALLY_ACK_APPLIED);
  }
  assert_int_equal(journal_next(f), total);
  struct tally_journal_entry entry;
  for (uint64_t seq = total - TALLY_JOURNAL_ENTRIES + 1; seq <= total; seq++) {
    assert_true(tally_shard_journal_find(&f->shard, 7, seq, &entry));
    assert_int_equal(entry.seq, seq);
    assert_int_equal(entry.pairs[0].delta, (int64_t)seq);
  }
  for (uint64_t seq = 1; seq <= total - TALLY_JOURNAL_ENTRIES; seq++) {
    assert_false(tally_shard_journal_find(&f->shard, 7, seq, &entry)); /* overwritten */
  }
  fixture_free(f);
}

/* Two entries of one (producer, seq): the record tombstoned, the batch applied again. */
static struct fixture *fixture_with_reapplied_batch(void)
{
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 4, 1, "r", 10, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 3, 1, "s", 1, &reason), TALLY_ACK_APPLIED);
  for (uint32_t i = 0; i < f->shard.producer_slots_count; i++) {
    if (f->shard.producers[i].producer == 4) f->shard.producers[i].window ^= 8;
  }
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 1);
  assert_int_equal(apply(&f->shard, 4, 1, "r", 20, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(journal_next(f), 3);
  return f;
}

static void test_journal_find_returns_newest(void **state)
{
  (void)state;
  struct fixture *f = fixture_with_reapplied_batch();
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(&f->shard, 4, 1, &entry));
  assert_int_equal(entry.pairs[0].delta, 20);
  fixture_free(f);
}

static void test_journal_corrupt_entry_skipped(void **state)
{
  (void)state;
  struct fixture *f = fixture_with_reapplied_batch();
  struct tally_journal_entry entry;
  struct tally_journal_entry *newest = &f->shard.journal[2];
  assert_int_equal(newest->pairs[0].delta, 20);
  /* A flipped byte in the newest entry: the older intact one is found. */
  ((uint8_t *)&newest->pairs[0].delta)[1] ^= 0x40;
  assert_true(tally_shard_journal_find(&f->shard, 4, 1, &entry));
  assert_int_equal(entry.pairs[0].delta, 10);
  /* Both corrupt: nothing. */
  f->shard.journal[0].crc ^= 1;
  assert_false(tally_shard_journal_find(&f->shard, 4, 1, &entry));
  f->shard.journal[0].crc ^= 1;
  ((uint8_t *)&newest->pairs[0].delta)[1] ^= 0x40;
  assert_true(tally_shard_journal_find(&f->shard, 4, 1, &entry));
  assert_int_equal(entry.pairs[0].delta, 20);
  /* A count beyond a batch is never trusted, even with a matching crc. */
  struct tally_journal_entry *other = &f->shard.journal[1];
  assert_true(tally_shard_journal_find(&f->shard, 3, 1, &entry));
  other->count = TALLY_BATCH_PAIRS_MAX + 1;
  assert_false(tally_shard_journal_find(&f->shard, 3, 1, &entry));
  other->count = 1;
  assert_true(tally_shard_journal_find(&f->shard, 3, 1, &entry));
  /* A slot outside the table is refused, even with a matching crc. */
  other->pairs[0].slot = f->shard.slots_count;
  other->crc = tally_journal_crc(other);
  assert_false(tally_shard_journal_find(&f->shard, 3, 1, &entry));
  /* A flipped byte in the producer id or seq: no longer names the batch. */
  f->shard.journal[0].crc ^= 1;
  newest->seq ^= 2;
  assert_false(tally_shard_journal_find(&f->shard, 4, 1, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 4, 3, &entry));
  fixture_free(f);
}

static void test_journal_survives_recovery(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  for (uint64_t seq = 1; seq <= 5; seq++) {
    assert_int_equal(apply(&f->shard, 2, seq, "k", 3, &reason), TALLY_ACK_APPLIED);
  }
  size_t journal_size = TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry);
  void *before = malloc(journal_size);
  assert_non_null(before);
  memcpy(before, f->shard.journal, journal_size);
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_memory_equal(before, f->shard.journal, journal_size);
  assert_int_equal(journal_next(f), 5);
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(&f->shard, 2, 3, &entry));
  assert_int_equal(apply(&f->shard, 2, 6, "k", 3, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(journal_next(f), 6);
  free(before);
  fixture_free(f);
}

/* ---- Producer records: reads from any thread, merges -------------------- */

static uint32_t producer_slot(const struct fixture *f, uint64_t producer)
{
  for (uint32_t i = 0; i < f->shard.producer_slots_count; i++) {
    if (f->shard.producers[i].producer == producer) return i;
  }
  fail_msg("producer %llu has no record", (unsigned long long)producer);
  return UINT32_MAX;
}

static void test_dedup_helpers(void **state)
{
  (void)state;
  assert_true(tally_dedup_has(10, 1, 10));
  assert_false(tally_dedup_has(10, 2, 10));
  assert_false(tally_dedup_has(10, UINT64_MAX, 11)); /* ahead of the record */
  assert_true(tally_dedup_has(10, 1ull << 9, 1));
  assert_true(tally_dedup_has(100, 1ull << 63, 37));  /* distance 63: the last bit */
  assert_false(tally_dedup_has(100, UINT64_MAX, 36)); /* distance 64: outside */
  assert_false(tally_dedup_has(100, UINT64_MAX, 0));
  assert_true(tally_dedup_has(0, 1, 0));
  assert_false(tally_dedup_has(0, 0, 0));
  assert_true(tally_dedup_has(UINT64_MAX, 1, UINT64_MAX));
  assert_true(tally_dedup_has(UINT64_MAX, 1ull << 63, UINT64_MAX - 63));
  assert_false(tally_dedup_has(UINT64_MAX, UINT64_MAX, 0));

  assert_int_equal(tally_dedup_shift(10, 0x5, 10), 0x5);
  assert_int_equal(tally_dedup_shift(10, 0x5, 12), 0x14);
  assert_int_equal(tally_dedup_shift(10, 0x3, 73), 1ull << 63); /* the top bit survives */
  assert_int_equal(tally_dedup_shift(10, UINT64_MAX, 74), 0);   /* 64 later: nothing */
  assert_int_equal(tally_dedup_shift(10, UINT64_MAX, UINT64_MAX), 0);
  assert_int_equal(tally_dedup_shift(10, 0x5, 9), 0);           /* backwards: never */
  /* A shifted window says the same about every seq still inside it. */
  for (uint64_t seq = 0; seq <= 12; seq++) {
    assert_int_equal(tally_dedup_has(10, 0x25, seq),
      tally_dedup_has(12, tally_dedup_shift(10, 0x25, 12), seq));
  }
}

static void test_producer_read_and_at(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 11, 5, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 11, 3, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 12, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 13, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  uint64_t last_seq = 0;
  uint64_t window = 0;
  assert_true(tally_shard_producer_read(&f->shard, 11, &last_seq, &window));
  assert_int_equal(last_seq, 5);
  assert_int_equal(window, 0x5);
  assert_true(tally_shard_producer_read(&f->shard, 12, &last_seq, &window));
  assert_int_equal(last_seq, 1);
  assert_int_equal(window, 1);
  assert_false(tally_shard_producer_read(&f->shard, 99, &last_seq, &window));
  assert_false(tally_shard_producer_read(&f->shard, 0, &last_seq, &window));
  assert_false(tally_shard_producer_read(&f->shard, UINT64_MAX, &last_seq, &window));

  /* A record failing its crc is not returned, by either read. */
  uint32_t corrupt = producer_slot(f, 12);
  f->shard.producers[corrupt].last_seq ^= 1ull << 33;
  assert_false(tally_shard_producer_read(&f->shard, 12, &last_seq, &window));

  /* A scan sees every intact record once and nothing else. */
  uint32_t seen = 0;
  for (uint32_t slot = 0; slot < f->shard.producer_slots_count; slot++) {
    uint64_t producer = 0;
    if (!tally_shard_producer_at(&f->shard, slot, &producer, &last_seq, &window)) continue;
    seen++;
    assert_int_not_equal(slot, corrupt);
    assert_int_equal(slot, producer_slot(f, producer));
    assert_true(producer == 11 || producer == 13);
    assert_int_equal(last_seq, producer == 11 ? 5 : 1);
  }
  assert_int_equal(seen, 2);
  /* A tombstone (after recovery) reads as nothing. */
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  uint64_t producer = 0;
  assert_false(tally_shard_producer_at(&f->shard, corrupt, &producer, &last_seq, &window));
  assert_false(tally_shard_producer_read(&f->shard, 12, &last_seq, &window));
  assert_true(tally_shard_producer_read(&f->shard, 13, &last_seq, &window));
  fixture_free(f);
}

static void test_producer_merge(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  uint64_t last_seq = 0;
  uint64_t window = 0;
  /* New: the record taken as given, counted, with a valid crc. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 10, 0xb), TALLY_OK);
  assert_int_equal(f->shard.header->producers_used, 1);
  assert_true(tally_shard_producer_read(&f->shard, 9, &last_seq, &window));
  assert_int_equal(last_seq, 10);
  assert_int_equal(window, 0xb); /* 10, 9, 7 */
  /* Incoming ahead: the union at the later last_seq. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 12, 0x5), TALLY_OK); /* 12, 10 */
  assert_true(tally_shard_producer_read(&f->shard, 9, &last_seq, &window));
  assert_int_equal(last_seq, 12);
  assert_int_equal(window, 0x2d); /* 12, 10, 9, 7 */
  /* Incoming behind: the union at the record's last_seq. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 8, 0x3), TALLY_OK); /* 8, 7 */
  assert_true(tally_shard_producer_read(&f->shard, 9, &last_seq, &window));
  assert_int_equal(last_seq, 12);
  assert_int_equal(window, 0x3d); /* 12, 10, 9, 8, 7 */
  for (uint64_t seq = 1; seq <= 13; seq++) {
    bool expected = seq == 12 || (seq >= 7 && seq <= 10);
    assert_int_equal(tally_dedup_has(last_seq, window, seq), expected);
  }
  assert_int_equal(f->shard.header->producers_used, 1);
  /* Idempotent: merging any record already covered changes no byte. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 12, 0x5), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 8, 0x3), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 12, 0x3d), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, 1, 0), TALLY_OK);
  assert_memory_equal(before, f->region, f->size);
  free(before);
  /* The record stays what a batch's dedup sees. */
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 9, 8, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 9, 11, "x", 1, &reason), TALLY_ACK_APPLIED);
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 0);
  assert_int_equal(report.producers_used, 1);
  fixture_free(f);
}

static void test_producer_merge_far_apart(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  uint64_t last_seq = 0;
  uint64_t window = 0;
  assert_int_equal(tally_shard_producer_merge(&f->shard, 5, 100, UINT64_MAX), TALLY_OK);
  /* 63 later: only the oldest bit of the old window (seq 100) is still inside. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 5, 163, 1), TALLY_OK);
  assert_true(tally_shard_producer_read(&f->shard, 5, &last_seq, &window));
  assert_int_equal(last_seq, 163);
  assert_int_equal(window, (1ull << 63) | 1u);
  /* 64 or more later: every old bit falls off. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 5, 1000, 1), TALLY_OK);
  assert_true(tally_shard_producer_read(&f->shard, 5, &last_seq, &window));
  assert_int_equal(last_seq, 1000);
  assert_int_equal(window, 1);
  /* A record far behind adds nothing. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 5, 936, UINT64_MAX), TALLY_OK);
  assert_true(tally_shard_producer_read(&f->shard, 5, &last_seq, &window));
  assert_int_equal(last_seq, 1000);
  assert_int_equal(window, 1);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 5, 937, 1), TALLY_OK);
  assert_true(tally_shard_producer_read(&f->shard, 5, &last_seq, &window));
  assert_int_equal(window, (1ull << 63) | 1u);
  fixture_free(f);
}

static void test_producer_merge_full(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 16);
  for (uint64_t producer = 1; producer <= 16; producer++) {
    assert_int_equal(tally_shard_producer_merge(&f->shard, producer, producer, 1), TALLY_OK);
  }
  assert_int_equal(f->shard.header->producers_used, 16);
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 17, 1, 1),
    TALLY_REASON_PRODUCERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  free(before);
  uint64_t last_seq = 0;
  uint64_t window = 0;
  assert_false(tally_shard_producer_read(&f->shard, 17, &last_seq, &window));
  /* A known producer still merges. */
  assert_int_equal(tally_shard_producer_merge(&f->shard, 16, 17, 1), TALLY_OK);
  assert_true(tally_shard_producer_read(&f->shard, 16, &last_seq, &window));
  assert_int_equal(last_seq, 17);
  assert_int_equal(window, 3);
  /* A batch from a new producer is refused the same way. */
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 17, 1, "x", 1, &reason), TALLY_ACK_PRODUCERS_FULL);
  assert_int_equal(f->shard.header->producers_used, 16);
  fixture_free(f);
}

/* A record read while the merging thread rewrites it is always one it wrote whole. */
#define MERGE_ROUNDS 200000u

struct merge_reader_args {
  const struct tally_shard *shard;
  int done;
  uint64_t reads;
  uint64_t bad;
};

/* After merging (seq, 1) for seq = 1..n the record says every seq in the window applied. */
static uint64_t full_window(uint64_t last_seq)
{
  return last_seq >= 64 ? UINT64_MAX : (1ull << last_seq) - 1u;
}

static void *merge_reader_main(void *arg)
{
  struct merge_reader_args *args = arg;
  uint64_t previous = 0;
  for (;;) {
    bool done = __atomic_load_n(&args->done, __ATOMIC_ACQUIRE);
    uint64_t last_seq;
    uint64_t window;
    if (tally_shard_producer_read(args->shard, 77, &last_seq, &window)) {
      if (window != full_window(last_seq)) args->bad++;
      if (last_seq < previous) args->bad++;
      previous = last_seq;
      args->reads++;
    }
    if (done) break;
  }
  return NULL;
}

static void test_producer_merge_concurrent_reader(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  struct merge_reader_args args = {.shard = &f->shard};
  pthread_t reader;
  assert_int_equal(pthread_create(&reader, NULL, merge_reader_main, &args), 0);
  for (uint64_t seq = 1; seq <= MERGE_ROUNDS; seq++) {
    assert_int_equal(tally_shard_producer_merge(&f->shard, 77, seq, 1), TALLY_OK);
  }
  __atomic_store_n(&args.done, 1, __ATOMIC_RELEASE);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(args.bad, 0);
  assert_true(args.reads > 0); /* at least the read after the last merge */
  uint64_t last_seq = 0;
  uint64_t window = 0;
  assert_true(tally_shard_producer_read(&f->shard, 77, &last_seq, &window));
  assert_int_equal(last_seq, MERGE_ROUNDS);
  assert_int_equal(window, UINT64_MAX);
  fixture_free(f);
}

/* ---- Fine-grained persistence hooks -------------------------------------- */

static uint64_t flushed_bytes;
static uint64_t drains;

static void count_flush(const void *address, size_t size)
{
  assert_non_null(address);
  flushed_bytes += size;
}

static void count_drain(void)
{
  drains++;
}

static void test_per_burst_hooks_called(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  f->shard.flush = count_flush;
  f->shard.drain = count_drain;
  flushed_bytes = 0;
  drains = 0;
  assert_int_equal(add(&f->shard, "a", 1), TALLY_OK);
  assert_true(flushed_bytes >= sizeof(struct tally_slot));
  assert_int_equal(drains, 1); /* a new slot is durable before it is published */
  uint64_t before = flushed_bytes;
  assert_int_equal(add(&f->shard, "a", 1), TALLY_OK);
  assert_true(flushed_bytes > before);
  assert_int_equal(drains, 1); /* the caller drains per burst */
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 3, 1, "a", 1, &reason), TALLY_ACK_APPLIED);
  assert_true(drains >= 4); /* record, valid state, applied values */
  assert_int_equal(value_of(&f->shard, "a"), 3);
  fixture_free(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_geometry),
    cmocka_unit_test(test_attach_checks_header),
    cmocka_unit_test(test_attach_places_journal),
    cmocka_unit_test(test_add_and_find),
    cmocka_unit_test(test_counters_full),
    cmocka_unit_test(test_overflow_rejected),
    cmocka_unit_test(test_concurrent_reader),
    cmocka_unit_test(test_batch_applied_then_duplicate),
    cmocka_unit_test(test_batch_window),
    cmocka_unit_test(test_batch_bad_producer),
    cmocka_unit_test(test_batch_producers_full),
    cmocka_unit_test(test_batch_counters_full_changes_nothing),
    cmocka_unit_test(test_batch_overflow_changes_nothing),
    cmocka_unit_test(test_batch_same_name_twice),
    cmocka_unit_test(test_redo_replay_is_exact_and_idempotent),
    cmocka_unit_test(test_redo_bad_crc_discarded),
    cmocka_unit_test(test_redo_unpublished_target_discarded),
    cmocka_unit_test(test_corrupt_slots_quarantined),
    cmocka_unit_test(test_torn_unpublished_slot_cleared),
    cmocka_unit_test(test_corrupt_producer_quarantined),
    cmocka_unit_test(test_journal_entry_per_batch),
    cmocka_unit_test(test_journal_not_written_unless_applied),
    cmocka_unit_test(test_journal_ring_wraps),
    cmocka_unit_test(test_journal_find_returns_newest),
    cmocka_unit_test(test_journal_corrupt_entry_skipped),
    cmocka_unit_test(test_journal_survives_recovery),
    cmocka_unit_test(test_dedup_helpers),
    cmocka_unit_test(test_producer_read_and_at),
    cmocka_unit_test(test_producer_merge),
    cmocka_unit_test(test_producer_merge_far_apart),
    cmocka_unit_test(test_producer_merge_full),
    cmocka_unit_test(test_producer_merge_concurrent_reader),
    cmocka_unit_test(test_per_burst_hooks_called),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
