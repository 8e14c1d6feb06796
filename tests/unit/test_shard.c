/*
 * test_shard.c — the shard on a plain aligned, zeroed DRAM region (no pmem):
 * geometry and header checks, counting, limits, concurrent readers, reliable
 * batches (dedup window, all-or-nothing, same name twice), redo-log replay
 * after simulated crashes, and what recovery does with corrupted records.
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
    cmocka_unit_test(test_per_burst_hooks_called),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
