/*
 * test_shard.c — the shard on a plain aligned, zeroed DRAM region (no pmem):
 * geometry and header checks, counting, limits, concurrent readers, reliable
 * batches (dedup window, all-or-nothing, same name twice), redo-log replay
 * after simulated crashes, what recovery does with corrupted records, and
 * cross-node dedup: the journal ring, producer records read from any thread
 * and merged into replica tables; in per-burst mode, the order in which the
 * redo record, its state and the values reach media. And the dirty bits the
 * cluster's scan takes (issue 12): every value write marks its slot, and the
 * scan's take-then-read-again protocol loses no change against a live writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <emmintrin.h>
#include <pthread.h>
#include <sched.h>

#include "tally/name.h"
#include "shard.h"
#include "store_format.h"

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
  return tally_shard_add(shard, name, len, tally_shard_name_hash(shard, name, len), delta);
}

static int64_t find(const struct tally_shard *shard, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  return tally_shard_find(shard, name, len, tally_shard_name_hash(shard, name, len));
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

/* The same, sent for the (attempt + 1)-th time. */
static enum tally_ack_status apply_attempt(struct tally_shard *shard, uint64_t producer,
  uint64_t seq, uint16_t attempt, const char *name, int64_t delta, enum tally_reason *reason)
{
  struct tally_wire_batch batch;
  batch_init(&batch, producer, seq);
  batch.attempt = attempt;
  batch_pair(&batch, name, delta);
  return tally_shard_apply_batch(shard, &batch, reason);
}

/*
 * Helpers take a run's fields in the order (last_seq, window, head_last,
 * head_window[0]): the tail, then the head. head_window[0] holds the head's
 * upper 64 (bit i: head_last - i, the run's first sequence and the 63 after
 * it); the *_below variants also take head_window[1], the 64 below those
 * (bit i: head_last - 64 - i), which the others leave 0.
 */
static struct tally_dedup_run run_make_below(uint64_t last_seq, uint64_t window,
  uint64_t head_last, uint64_t head_window, uint64_t head_below)
{
  struct tally_dedup_run run = {.head_last = head_last, .head_window = {head_window, head_below},
    .last_seq = last_seq, .window = window};
  return run;
}

static struct tally_dedup_run run_make(uint64_t last_seq, uint64_t window, uint64_t head_last,
  uint64_t head_window)
{
  return run_make_below(last_seq, window, head_last, head_window, 0);
}

/* A record of one run (the others empty). */
static struct tally_dedup dedup_make_below(uint64_t last_seq, uint64_t window,
  uint64_t head_last, uint64_t head_window, uint64_t head_below)
{
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  dedup.runs[0] = run_make_below(last_seq, window, head_last, head_window, head_below);
  return dedup;
}

static struct tally_dedup dedup_make(uint64_t last_seq, uint64_t window, uint64_t head_last,
  uint64_t head_window)
{
  return dedup_make_below(last_seq, window, head_last, head_window, 0);
}

/* A record of up to TALLY_DEDUP_RUNS runs, newest first (fewer: the rest empty). */
static struct tally_dedup dedup_runs(const struct tally_dedup_run *runs, uint32_t count)
{
  assert_true(count <= TALLY_DEDUP_RUNS);
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  for (uint32_t r = 0; r < count; r++) dedup.runs[r] = runs[r];
  return dedup;
}

/* The record of a producer new with seq: one run. */
static struct tally_dedup dedup_start(uint64_t seq)
{
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  tally_dedup_new_run(&dedup, seq);
  return dedup;
}

/* producer's dedup record, which must read intact. */
static struct tally_dedup dedup_read(const struct tally_shard *shard, uint64_t producer)
{
  struct tally_dedup dedup;
  memset(&dedup, 0xee, sizeof(dedup));
  assert_true(tally_shard_producer_read(shard, producer, &dedup));
  return dedup;
}

static void assert_run_below(const struct tally_dedup_run *run, uint64_t last_seq,
  uint64_t window, uint64_t head_last, uint64_t head_window, uint64_t head_below)
{
  assert_int_equal(run->last_seq, last_seq);
  assert_int_equal(run->window, window);
  assert_int_equal(run->head_last, head_last);
  assert_int_equal(run->head_window[0], head_window);
  assert_int_equal(run->head_window[1], head_below);
}

/* head_window[1] must be 0 (nothing below the run's first seq applied). */
static void assert_run(const struct tally_dedup_run *run, uint64_t last_seq, uint64_t window,
  uint64_t head_last, uint64_t head_window)
{
  assert_run_below(run, last_seq, window, head_last, head_window, 0);
}

static void assert_no_run(const struct tally_dedup_run *run)
{
  assert_run(run, 0, 0, 0, 0);
}

/* The current run (runs[0]) only. */
static void assert_dedup(const struct tally_dedup *dedup, uint64_t last_seq, uint64_t window,
  uint64_t head_last, uint64_t head_window)
{
  assert_run(&dedup->runs[0], last_seq, window, head_last, head_window);
}

/* A record of exactly one run. */
static void assert_dedup_one_below(const struct tally_dedup *dedup, uint64_t last_seq,
  uint64_t window, uint64_t head_last, uint64_t head_window, uint64_t head_below)
{
  assert_run_below(&dedup->runs[0], last_seq, window, head_last, head_window, head_below);
  for (uint32_t r = 1; r < TALLY_DEDUP_RUNS; r++) assert_no_run(&dedup->runs[r]);
}

static void assert_dedup_one(const struct tally_dedup *dedup, uint64_t last_seq,
  uint64_t window, uint64_t head_last, uint64_t head_window)
{
  assert_dedup_one_below(dedup, last_seq, window, head_last, head_window, 0);
}

/*
 * Whether seq is in some run's head; when it is, the head_last given back
 * must be that of a run of the record whose head holds seq.
 */
static bool in_head(const struct tally_dedup *dedup, uint64_t seq)
{
  uint64_t head_last = 0xdeadbeefull;
  bool found = tally_dedup_in_head(dedup, seq, &head_last);
  if (!found) {
    assert_int_equal(head_last, 0xdeadbeefull); /* untouched */
    return false;
  }
  bool known = false;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    const struct tally_dedup_run *run = &dedup->runs[r];
    if (run->head_last == head_last && tally_dedup_head_has(run, seq)) {
      known = true;
    }
  }
  assert_true(known);
  return true;
}

static enum tally_reason merge_below(struct tally_shard *shard, uint64_t producer,
  uint64_t last_seq, uint64_t window, uint64_t head_last, uint64_t head_window,
  uint64_t head_below)
{
  struct tally_dedup dedup = dedup_make_below(last_seq, window, head_last, head_window,
    head_below);
  return tally_shard_producer_merge(shard, producer, &dedup);
}

static enum tally_reason merge(struct tally_shard *shard, uint64_t producer, uint64_t last_seq,
  uint64_t window, uint64_t head_last, uint64_t head_window)
{
  return merge_below(shard, producer, last_seq, window, head_last, head_window, 0);
}

/*
 * Tail-only merges: every record given has the same head (a run that started
 * at seq 7: head_last 70, seq 7 applied), so merging never changes it.
 */
#define TAIL_HEAD_LAST 70u
#define TAIL_HEAD_WINDOW (1ull << 63)

static enum tally_reason merge_tail(struct tally_shard *shard, uint64_t producer,
  uint64_t last_seq, uint64_t window)
{
  return merge(shard, producer, last_seq, window, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW);
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
  assert_true(size >= 4096 + 4096 + 2048 * 256 + 256 * 192);
  /*
   * The journal ring, whole blocks, after the producer table; then the claims
   * ring, whole blocks, last.
   */
  size_t journal = TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry);
  size_t claims = TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim);
  assert_int_equal(sizeof(struct tally_journal_entry), 1088);
  assert_int_equal(journal % 4096, 0);
  assert_int_equal(sizeof(struct tally_claim), 32);
  assert_int_equal(claims % 4096, 0);
  /* 8192 + 524288 + 49152 = 581632 (256-byte slots): already a multiple of 4096. */
  assert_int_equal(size, 4096 + 4096 + 2048 * 256 + 256 * 192 + journal + claims);
  assert_int_equal(size, 9756672);
  /* 8192 + 8192 + 6144 = 22528: the journal starts at the next block, 24576. */
  assert_int_equal(tally_shard_region_size(16, 16), 24576 + journal + claims);
  assert_int_equal(tally_shard_region_size(16, 16), 9199616);
  assert_int_equal(TALLY_JOURNAL_ENTRIES, 8192);
  assert_int_equal(journal, 8192 * 1088);
  assert_int_equal(TALLY_CLAIMS_ENTRIES, 8192);
  assert_int_equal(claims, 8192 * 32);
  assert_int_equal(claims, 262144);
  /* Journal entry, claim and shard header offsets (docs/store-layout.md). */
  assert_int_equal(offsetof(struct tally_journal_entry, producer), 0);
  assert_int_equal(offsetof(struct tally_journal_entry, seq), 8);
  assert_int_equal(offsetof(struct tally_journal_entry, count), 16);
  assert_int_equal(offsetof(struct tally_journal_entry, crc), 20);
  assert_int_equal(offsetof(struct tally_journal_entry, attempt), 24);
  assert_int_equal(offsetof(struct tally_journal_entry, applied), 28);
  assert_int_equal(offsetof(struct tally_journal_entry, reserved), 32);
  assert_int_equal(offsetof(struct tally_journal_entry, pairs), 64);
  assert_int_equal(offsetof(struct tally_claim, producer), 0);
  assert_int_equal(offsetof(struct tally_claim, seq), 8);
  assert_int_equal(offsetof(struct tally_claim, attempt), 16);
  assert_int_equal(offsetof(struct tally_claim, crc), 20);
  assert_int_equal(offsetof(struct tally_claim, position), 24);
  assert_int_equal(offsetof(struct tally_shard_header, counters_used), 64);
  assert_int_equal(offsetof(struct tally_shard_header, held_seq), 72);
  assert_int_equal(offsetof(struct tally_shard_header, held_scan), 80);
  assert_int_equal(offsetof(struct tally_shard_header, journal_next), 88);
  assert_int_equal(offsetof(struct tally_shard_header, claims_next), 96);
  assert_int_equal(sizeof(struct tally_shard_header), 128);
  /* The on-media offsets docs/store-layout.md gives. */
  assert_int_equal(TALLY_DEDUP_RUNS, 3);
  assert_int_equal(TALLY_DEDUP_WINDOW, 64);
  assert_int_equal(sizeof(struct tally_dedup_run), 40);
  assert_int_equal(offsetof(struct tally_dedup_run, head_last), 0);
  assert_int_equal(offsetof(struct tally_dedup_run, head_window), 8);
  assert_int_equal(offsetof(struct tally_dedup_run, head_window[0]), 8);
  assert_int_equal(offsetof(struct tally_dedup_run, head_window[1]), 16);
  assert_int_equal(offsetof(struct tally_dedup_run, last_seq), 24);
  assert_int_equal(offsetof(struct tally_dedup_run, window), 32);
  assert_int_equal(sizeof(struct tally_dedup), 120);
  assert_int_equal(sizeof(struct tally_producer), 192);
  assert_int_equal(TALLY_PRODUCER_SIZE, 192);
  assert_int_equal(offsetof(struct tally_producer, producer), 0);
  assert_int_equal(offsetof(struct tally_producer, crc), 8);
  assert_int_equal(offsetof(struct tally_producer, reserved), 12);
  assert_int_equal(offsetof(struct tally_producer, dedup), 16);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[0].head_window[1]), 32);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[0].last_seq), 40);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[0].window), 48);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[1]), 56);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[2]), 96);
  assert_int_equal(offsetof(struct tally_producer, dedup.runs[2].window), 128);
  assert_int_equal(offsetof(struct tally_producer, padding), 136);
  assert_int_equal(sizeof(((struct tally_producer *)NULL)->padding), 56);
  assert_int_equal(offsetof(struct tally_batch_log, producer_slot), 32);
  assert_int_equal(offsetof(struct tally_batch_log, producer_dedup), 40);
  assert_int_equal(offsetof(struct tally_batch_log, producer_dedup.runs[0].head_window[1]), 56);
  assert_int_equal(offsetof(struct tally_batch_log, producer_dedup.runs[1]), 80);
  assert_int_equal(offsetof(struct tally_batch_log, producer_dedup.runs[2]), 120);
  assert_int_equal(offsetof(struct tally_batch_log, entries), 160);
  assert_int_equal(sizeof(struct tally_batch_log), 1216);
  assert_int_equal(offsetof(struct tally_batch_log, entries) +
    TALLY_BATCH_PAIRS_MAX * sizeof(struct tally_log_entry), 1184);
  assert_true(offsetof(struct tally_batch_log, entries) +
    TALLY_BATCH_PAIRS_MAX * sizeof(struct tally_log_entry) <= 4096);
  /*
   * The example in docs/store-layout.md: J = 8192 + 131072 * 256 + 8192 * 192 =
   * 35,135,488 (a multiple of 4096), C = J + 8,912,896 = 44,048,384,
   * R = C + 262,144 = 44,310,528.
   */
  assert_int_equal(tally_shard_slots_for(65536), 131072);
  assert_int_equal(tally_shard_producer_slots_for(4096), 8192);
  assert_int_equal(8192 + 131072 * 256 + 8192 * 192, 35135488);
  assert_int_equal(35135488 % 4096, 0);
  assert_int_equal(35135488 + 8912896, 44048384);
  assert_int_equal(tally_shard_region_size(65536, 4096), 44048384 + 262144);
  assert_int_equal(tally_shard_region_size(65536, 4096), 44310528);
}

static void test_attach_places_journal(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(1000, 100);
  const uint8_t *base = f->region;
  const uint8_t *journal = (const uint8_t *)f->shard.journal;
  const uint8_t *producers_end =
    (const uint8_t *)(f->shard.producers + f->shard.producer_slots_count);
  const uint8_t *claims = (const uint8_t *)f->shard.claims;
  assert_true(journal >= producers_end);
  assert_int_equal((size_t)(journal - base) % 4096, 0);
  assert_int_equal((size_t)(journal - base), 581632);
  /* The claims ring right after the journal (whole blocks), and last. */
  assert_int_equal((size_t)(claims - base),
    (size_t)(journal - base) + TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry));
  assert_int_equal((size_t)(claims - base) % 4096, 0);
  assert_int_equal((size_t)(claims - base), 9494528);
  assert_int_equal((size_t)(claims - base) +
    TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim), f->size);
  assert_int_equal(f->shard.header->journal_next, 0);
  assert_int_equal(f->shard.header->claims_next, 0);
  assert_int_equal(tally_shard_claims_next(&f->shard), 0);
  struct tally_shard other;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 1000, 100, false), 0);
  assert_ptr_equal(other.journal, f->shard.journal);
  assert_ptr_equal(other.claims, f->shard.claims);
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

/* ---- The probe bound and the keyed hash (issue 14 H1) ------------------- */

#define PROBE_COUNTERS 1536u /* a 2048-slot table: longer than the probe bound */
#define PROBE_NAMES (TALLY_SLOT_PROBE_MAX + 2u)

/* Names whose hash (under hash_of) sends them all to home slot `home` of a 2048-slot table. */
static char (*colliding_names(uint32_t (*hash_of)(const struct tally_shard *, const char *,
  size_t), const struct tally_shard *shard, uint32_t home, uint32_t count))[32]
{
  char (*names)[32] = calloc(count, 32);
  assert_non_null(names);
  uint32_t found = 0;
  for (uint32_t candidate = 0; found < count; candidate++) {
    assert_true(candidate < 64u * 2048u * count); /* 2048 tries a name on average */
    char name[32];
    int length = snprintf(name, sizeof name, "probe.%u", candidate);
    if ((hash_of(shard, name, (size_t)length) & 2047u) != home) continue;
    memcpy(names[found++], name, (size_t)length + 1u);
  }
  return names;
}

static uint32_t keyed_hash(const struct tally_shard *shard, const char *name, size_t length)
{
  return tally_shard_name_hash(shard, name, length);
}

/* The name hash before layout 6: CRC32C under the public seed 0x7a11c0de. */
static uint32_t old_public_hash(const struct tally_shard *shard, const char *name, size_t length)
{
  (void)shard;
  return tally_crc32c(name, length, 0x7a11c0deu);
}

static void random_key(struct tally_shard *shard)
{
  struct tally_name_key key;
  randombytes_buf(key.bytes, sizeof key.bytes);
  tally_shard_set_name_key(shard, &key);
}

/*
 * A run of names with one home slot: the first TALLY_SLOT_PROBE_MAX fit (the
 * last at probe TALLY_SLOT_PROBE_MAX - 1), the next is refused with a counted
 * reason, whether it comes as an add, a set or in a batch (final
 * counters_full), and a lookup stops at the bound. Names elsewhere still fit;
 * recovery finds the same longest probe. Failed before the bound: the next
 * name walked on and was created at probe 1024.
 */
static void test_probe_bound(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(PROBE_COUNTERS, 16);
  assert_int_equal(f->shard.slots_count, 2048);
  random_key(&f->shard);
  char (*names)[32] = colliding_names(keyed_hash, &f->shard, 7, PROBE_NAMES);
  for (uint32_t i = 0; i < TALLY_SLOT_PROBE_MAX; i++) {
    assert_int_equal(add(&f->shard, names[i], 1), TALLY_OK);
  }
  assert_int_equal(tally_shard_probe_max(&f->shard), TALLY_SLOT_PROBE_MAX - 1u);
  const char *over = names[TALLY_SLOT_PROBE_MAX];
  uint32_t over_len = (uint32_t)strlen(over);
  assert_int_equal(add(&f->shard, over, 1), TALLY_REASON_PROBE_LIMIT);
  assert_int_equal(tally_shard_set(&f->shard, over, over_len,
    tally_shard_name_hash(&f->shard, over, over_len), 5), TALLY_REASON_PROBE_LIMIT);
  assert_int_equal(find(&f->shard, over), -1);
  assert_int_equal(tally_shard_counters_used(&f->shard), TALLY_SLOT_PROBE_MAX);

  struct tally_wire_batch batch;
  batch_init(&batch, 9, 1);
  batch_pair(&batch, names[3], 1);                     /* known */
  batch_pair(&batch, names[TALLY_SLOT_PROBE_MAX + 1u], 1); /* new, past the bound */
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_COUNTERS_FULL);
  assert_int_equal(reason, TALLY_REASON_PROBE_LIMIT);
  assert_int_equal(value_of(&f->shard, names[3]), 1); /* nothing of the batch counted */
  assert_int_equal(f->shard.header->producers_used, 0);

  assert_int_equal(add(&f->shard, "elsewhere", 4), TALLY_OK); /* another run: room */
  assert_int_equal(value_of(&f->shard, "elsewhere"), 4);
  uint32_t probe_max = tally_shard_probe_max(&f->shard);
  f->shard.probe_max = 0;
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(tally_shard_probe_max(&f->shard), probe_max);
  assert_int_equal(report.slots_quarantined, 0);
  free(names);
  fixture_free(f);
}

/*
 * Names chosen to collide under the old public hash (CRC32C, seed
 * 0x7a11c0de: one home slot) spread under the keyed hash: the longest probe
 * stays short. Failed before layout 6 (the run was 1024 long).
 */
static void test_old_collisions_spread(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(PROBE_COUNTERS, 16);
  random_key(&f->shard);
  char (*names)[32] = colliding_names(old_public_hash, &f->shard, 0, TALLY_SLOT_PROBE_MAX);
  for (uint32_t i = 0; i < TALLY_SLOT_PROBE_MAX; i++) {
    assert_int_equal(add(&f->shard, names[i], 1), TALLY_OK);
  }
  /* 1024 names in 2048 slots at random: a probe past 192 is about e^-37 likely per name. */
  assert_in_range(tally_shard_probe_max(&f->shard), 0, 192);
  free(names);
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
  uint64_t rounds;     /* the reader's rounds so far: the writer waits on them */
  int done;
  uint64_t writes;     /* odd while the writer is inside an add (a sequence lock) */
  uint64_t reads;
  uint64_t bad;        /* a value that went down */
  uint64_t torn;       /* value and check from two stores (a split load), counted only */
  uint64_t corrupt;    /* value and check disagree with no add in flight */
  uint64_t unresolved; /* re-read too often without a quiet moment */
};

static const char *reader_name(int i)
{
  static const char *names[READER_NAMES] = {"r.a", "r.b", "r.c", "r.d", "r.e", "r.f", "r.g",
    "r.h"};
  return names[i];
}

/*
 * One read of a slot's value and check as a 16-byte load. *quiet: no add was
 * in flight from before the load to after it (the writer's sequence did not
 * move and was even), so the pair read is the pair at rest.
 */
static bool read_pair(struct reader_args *args, const struct tally_slot *s, int64_t *value,
  bool *quiet)
{
  uint64_t before = __atomic_load_n(&args->writes, __ATOMIC_ACQUIRE);
  __m128i pair = _mm_load_si128((const __m128i *)(const void *)&s->value);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  uint64_t after = __atomic_load_n(&args->writes, __ATOMIC_RELAXED);
  *quiet = before == after && before % 2u == 0;
  *value = _mm_cvtsi128_si64(pair);
  uint64_t check = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(pair, pair));
  return check == tally_slot_value_check(s->ident_crc, *value);
}

/*
 * Checks every read: values never go down. Value and check are one 16-byte
 * store; whether a concurrent 16-byte load sees them as one depends on the
 * CPU and the compiler (an unoptimised sanitizer build may split it), and no
 * reader relies on it (readers use the value; recovery, single-threaded,
 * checks the pair). So a read whose check disagrees while an add is in flight
 * is torn, counted only, and read again until a read with no add in flight,
 * which must agree; a pair that disagrees with no add in flight is corrupt.
 */
static void *reader_main(void *arg)
{
  struct reader_args *args = arg;
  int64_t last[READER_NAMES] = {0};
  for (uint64_t round = 0; round < 100000000ull; round++) {
    bool done = __atomic_load_n(&args->done, __ATOMIC_ACQUIRE);
    for (int i = 0; i < READER_NAMES; i++) {
      int64_t slot = find(args->shard, reader_name(i));
      if (slot < 0) continue;
      const struct tally_slot *s = &args->shard->slots[slot];
      int64_t value;
      bool quiet;
      bool agrees = read_pair(args, s, &value, &quiet);
      if (!agrees && !quiet) {
        args->torn++;
        uint64_t again = 0;
        do { /* the re-read: until a quiet moment (the writer moves on, or ends) */
          agrees = read_pair(args, s, &value, &quiet);
        } while (!quiet && ++again < 100000000ull);
        if (!quiet) args->unresolved++;
      }
      if (!agrees && quiet) args->corrupt++;
      if (value < last[i]) args->bad++;
      last[i] = value;
      args->reads++;
    }
    __atomic_store_n(&args->rounds, round + 1u, __ATOMIC_RELEASE);
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
    if (round % 256 == 0) { /* the reader reads all along, however the threads are scheduled */
      uint64_t seen = __atomic_load_n(&args.rounds, __ATOMIC_ACQUIRE);
      while (__atomic_load_n(&args.rounds, __ATOMIC_ACQUIRE) < seen + 2u) sched_yield();
    }
    __atomic_store_n(&args.writes, 2u * (uint64_t)round + 1u, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the odd mark before the add's stores */
    assert_int_equal(add(&f->shard, reader_name(round % READER_NAMES), 1 + round % 3), TALLY_OK);
    __atomic_store_n(&args.writes, 2u * (uint64_t)round + 2u, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&args.done, 1, __ATOMIC_RELEASE);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(args.bad, 0);
  assert_true(args.reads > 0);
  assert_int_equal(args.corrupt, 0);
  assert_int_equal(args.unresolved, 0);
  int64_t total = 0;
  for (int i = 0; i < READER_NAMES; i++) {
    total += value_of(&f->shard, reader_name(i));
    const struct tally_slot *s = &f->shard.slots[find(&f->shard, reader_name(i))];
    assert_int_equal(s->value_check, tally_slot_value_check(s->ident_crc, s->value)); /* at rest */
  }
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
  /* b is a reliable producer's (a statsd counter would give its value up instead: C1). */
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 4, 1, "b", INT64_MAX - 5, &reason), TALLY_ACK_APPLIED);
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  struct tally_wire_batch batch;
  batch_init(&batch, 5, 1);
  batch_pair(&batch, "a", 1);
  batch_pair(&batch, "b", 3);
  batch_pair(&batch, "new", 1);
  batch_pair(&batch, "b", 3); /* 6 in all: one too many */
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

/*
 * A shard with a few counters and one producer, 77, that already had the
 * batches of seqs prior[] (each adding 1 to old.a), and a batch of seq
 * touching them.
 */
static struct fixture *crash_fixture_after(struct tally_wire_batch *batch,
  const uint64_t *prior, uint32_t prior_count, uint64_t seq)
{
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(add(&f->shard, "old.a", 7), TALLY_OK);
  assert_int_equal(add(&f->shard, "old.b", -3), TALLY_OK);
  for (uint32_t i = 0; i < prior_count; i++) {
    assert_int_equal(apply(&f->shard, 77, prior[i], "old.a", 1, &reason), TALLY_ACK_APPLIED);
  }
  batch_init(batch, 77, seq);
  batch_pair(batch, "old.a", 10);
  batch_pair(batch, "new.c", 5);
  batch_pair(batch, "old.b", 4);
  batch_pair(batch, "old.a", 100);
  return f;
}

/* The same with producer 77 having had seq 1 only (one run, head_last 64). */
static struct fixture *crash_fixture(struct tally_wire_batch *batch, uint64_t seq)
{
  const uint64_t prior[] = {1};
  return crash_fixture_after(batch, prior, 1, seq);
}

/* The claims ring and claims_next rolled back to their bytes in `pre`. */
static void claims_roll_back(struct fixture *f, const uint8_t *pre)
{
  size_t offset = (size_t)((uint8_t *)f->shard.claims - (uint8_t *)f->region);
  memcpy(f->shard.claims, pre + offset, TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim));
  f->shard.header->claims_next =
    ((const struct tally_shard_header *)(const void *)pre)->claims_next;
}

/*
 * Builds the state a crash leaves after the redo record became valid: the
 * post-batch region with the first `applied` entries' slots (and, unless all
 * are applied, the producer record) rolled back to their pre-batch bytes,
 * the batch's journal entry not yet marked applied, no claim written.
 */
static void crash_after_log(struct fixture *f, const uint8_t *pre, const uint8_t *post,
  uint32_t applied)
{
  memcpy(f->region, post, f->size);
  uint64_t newest = f->shard.header->journal_next - 1u;
  struct tally_journal_entry *entry = &f->shard.journal[newest % TALLY_JOURNAL_ENTRIES];
  assert_int_equal(entry->producer, f->shard.log->producer);
  assert_int_equal(entry->seq, f->shard.log->seq);
  assert_int_equal(entry->applied, 1);
  entry->applied = 0;
  claims_roll_back(f, pre);
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

/*
 * Recovers a crashed region whose redo record is VALID: the record is
 * replayed, the region ends up as the batch left it (post), the producer's
 * record being `after`; recovering again changes nothing.
 */
static void replay_and_check(struct fixture *f, const uint8_t *post,
  const struct tally_dedup *after)
{
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.log_replayed, 1);
  assert_int_equal(report.log_discarded, 0);
  assert_int_equal(report.slots_quarantined, 0);
  assert_int_equal(report.slots_torn, 0);
  assert_int_equal(report.counters_used, 3);
  assert_int_equal(report.producers_used, 1);
  assert_int_equal(report.producers_quarantined, 0);
  assert_memory_equal(f->region, post, f->size);
  struct tally_dedup dedup = dedup_read(&f->shard, 77);
  assert_memory_equal(&dedup, after, sizeof(dedup));
  recover(f, &report); /* recovering again changes nothing */
  assert_int_equal(report.log_replayed, 0);
  assert_memory_equal(f->region, post, f->size);
}

/*
 * Recovers a crashed region whose redo record is VALID (any batch): the
 * record is replayed and the region ends up byte for byte as the batch left
 * it (post): values, producer record, the journal entry marked applied, the
 * claim.
 */
static void replay_entry_check(struct fixture *f, const uint8_t *post)
{
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.log_replayed, 1);
  assert_int_equal(report.log_discarded, 0);
  assert_memory_equal(f->region, post, f->size);
}

/*
 * Replays the redo record of the batch of seq (producer 77 having had the
 * batches of prior[], leaving its record `before`) after a crash at every
 * point of its apply: the region ends up byte for byte as the batch left
 * it, the producer's record (every run, head and tail) being `after`.
 */
static void redo_replay(const uint64_t *prior, uint32_t prior_count, uint64_t seq,
  const struct tally_dedup *before, const struct tally_dedup *after)
{
  struct tally_wire_batch batch;
  struct fixture *f = crash_fixture_after(&batch, prior, prior_count, seq);
  struct tally_dedup before_batch = dedup_read(&f->shard, 77);
  assert_memory_equal(&before_batch, before, sizeof(before_batch));
  uint8_t *pre = malloc(f->size);
  uint8_t *post = malloc(f->size);
  assert_non_null(pre);
  assert_non_null(post);
  memcpy(pre, f->region, f->size);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  memcpy(post, f->region, f->size);
  const int64_t a = 7 + (int64_t)prior_count + 110;
  assert_int_equal(value_of(&f->shard, "old.a"), a);
  /* The redo record holds the producer's whole state after the batch: every run. */
  assert_memory_equal(&f->shard.log->producer_dedup, after, sizeof(*after));
  struct tally_dedup dedup = dedup_read(&f->shard, 77);
  assert_memory_equal(&dedup, after, sizeof(dedup));

  for (uint32_t applied = 0; applied <= batch.count; applied++) {
    crash_after_log(f, pre, post, applied);
    if (applied < batch.count) {
      assert_memory_not_equal(f->region, post, f->size);
      dedup = dedup_read(&f->shard, 77); /* the record as it was before the batch */
      assert_memory_equal(&dedup, &before_batch, sizeof(dedup));
    }
    replay_and_check(f, post, after);
  }

  /*
   * Killed inside the producer record's rewrite (every value applied): the
   * first `stored` words of the new runs are on media, the rest and the crc
   * still the old ones. Such a record fails its crc (unless it happens to
   * be the old record whole) until the replay rewrites it.
   */
  const uint32_t words = (uint32_t)(sizeof(struct tally_dedup) / sizeof(uint64_t));
  assert_int_equal(words, 5 * TALLY_DEDUP_RUNS);
  for (uint32_t stored = 0; stored <= words; stored++) {
    crash_after_log(f, pre, post, batch.count);
    uint32_t slot = f->shard.log->producer_slot;
    struct tally_producer *record = &f->shard.producers[slot];
    uint64_t *to = (uint64_t *)(void *)&record->dedup;
    const uint64_t *old = (const uint64_t *)(const void *)&before_batch;
    for (uint32_t i = stored; i < words; i++) to[i] = old[i];
    record->crc = tally_producer_crc(slot, 77, &before_batch);
    if (memcmp(&record->dedup, &before_batch, sizeof(before_batch)) == 0) {
      dedup = dedup_read(&f->shard, 77);
      assert_memory_equal(&dedup, &before_batch, sizeof(dedup));
    } else {
      assert_false(tally_shard_producer_read(&f->shard, 77, &dedup));
    }
    if (stored == words) assert_false(tally_shard_producer_read(&f->shard, 77, &dedup));
    replay_and_check(f, post, after);
  }

  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(value_of(&f->shard, "old.a"), a);
  assert_int_equal(value_of(&f->shard, "new.c"), 5);
  assert_int_equal(value_of(&f->shard, "old.b"), 1);
  free(pre);
  free(post);
  fixture_free(f);
}

static void test_redo_replay_is_exact_and_idempotent(void **state)
{
  (void)state;
  /* seq 2 in the run that started at 1: a second bit in the head. */
  const uint64_t prior[] = {1};
  struct tally_dedup before = dedup_make(1, 1, 64, 1ull << 63);
  struct tally_dedup after = dedup_make(2, 3, 64, 3ull << 62);
  redo_replay(prior, 1, 2, &before, &after);
}

static void test_redo_replay_moves_head(void **state)
{
  (void)state;
  /* seq 65, 64 after 1: a new run (head 65..128); the run from 1 moves to runs[1]. */
  const uint64_t prior[] = {1};
  struct tally_dedup before = dedup_make(1, 1, 64, 1ull << 63);
  const struct tally_dedup_run runs[] = {run_make(65, 1, 128, 1ull << 63),
    run_make(1, 1, 64, 1ull << 63)};
  struct tally_dedup after = dedup_runs(runs, 2);
  redo_replay(prior, 1, 65, &before, &after);
}

/* A crash replay restores every run of the record, not only the current one. */
static void test_redo_replay_restores_all_runs(void **state)
{
  (void)state;
  /* Three runs: 1, 2 (head 1..64); 100 (head 100..163); 200, 202 (head 200..263). */
  const uint64_t prior[] = {1, 2, 100, 200, 202};
  const struct tally_dedup_run run_a = run_make(2, 3, 64, 3ull << 62);
  const struct tally_dedup_run run_b = run_make(100, 1, 163, 1ull << 63);
  const struct tally_dedup_run run_c = run_make(202, 5, 263, (1ull << 63) | (1ull << 61));
  const struct tally_dedup_run three[] = {run_c, run_b, run_a};
  struct tally_dedup before = dedup_runs(three, 3);
  /* 201: late, inside the current run's tail and head; the older runs unchanged. */
  const struct tally_dedup_run late[] = {run_make(202, 7, 263, 7ull << 61), run_b, run_a};
  struct tally_dedup after = dedup_runs(late, 3);
  redo_replay(prior, 5, 201, &before, &after);
  /* 300 (202 + 98): a fourth run; the oldest (from 1) is dropped. */
  const struct tally_dedup_run fourth[] = {run_make(300, 1, 363, 1ull << 63), run_c, run_b};
  after = dedup_runs(fourth, 3);
  redo_replay(prior, 5, 300, &before, &after);
}

/*
 * A late seq below the run's first (in the tail, in the head's lower word):
 * the replay restores head_window[1] too.
 */
static void test_redo_replay_head_below(void **state)
{
  (void)state;
  /* The run from 100 (head_last 163), 150 after it; 90 is 73 below head_last. */
  const uint64_t prior[] = {100, 150};
  struct tally_dedup before = dedup_make(150, (1ull << 50) | 1u, 163,
    (1ull << 63) | (1ull << 13));
  struct tally_dedup after = dedup_make_below(150, (1ull << 60) | (1ull << 50) | 1u, 163,
    (1ull << 63) | (1ull << 13), 1ull << 9);
  redo_replay(prior, 2, 90, &before, &after);
}

static void test_redo_bad_crc_discarded(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  struct fixture *f = crash_fixture(&batch, 2);
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
  /*
   * The crc covers the producer's whole new record: every word of every run,
   * the current one's head and the empty older runs included (the last
   * fields before the entries).
   */
  struct tally_dedup dedup = dedup_read(&f->shard, 77);
  f->shard.log->entries[0].value -= 1000;
  uint64_t *words = (uint64_t *)(void *)&f->shard.log->producer_dedup;
  for (size_t i = 0; i < sizeof(struct tally_dedup) / sizeof(uint64_t); i++) {
    words[i] ^= 1ull << (7 + i);
    f->shard.log->state = TALLY_LOG_STATE_VALID;
    recover(f, &report);
    assert_int_equal(report.log_replayed, 0);
    assert_int_equal(report.log_discarded, 1);
    words[i] ^= 1ull << (7 + i);
  }
  f->shard.log->producer_dedup.runs[0].head_last += 1;
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  recover(f, &report);
  assert_int_equal(report.log_discarded, 1);
  f->shard.log->producer_dedup.runs[0].head_last -= 1; /* intact again: replayed */
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  recover(f, &report);
  assert_int_equal(report.log_replayed, 1);
  struct tally_dedup replayed = dedup_read(&f->shard, 77);
  assert_memory_equal(&replayed, &dedup, sizeof(dedup));
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
  struct fixture *f = crash_fixture(&batch, 2);
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
  f->shard.producers[corrupt].dedup.runs[0].window ^= 4;
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
  assert_int_equal(entry.attempt, 0); /* a first send */
  assert_int_equal(entry.applied, 1);
  assert_int_equal(f->shard.journal[0].applied, 1);
  assert_int_equal(f->shard.header->claims_next, 0); /* and no claim */
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
    if (f->shard.producers[i].producer == 4) f->shard.producers[i].dedup.runs[0].window ^= 8;
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

/* The entry of the batch at ring position `position`. */
static struct tally_journal_entry *journal_at(struct fixture *f, uint64_t position)
{
  assert_true(position < f->shard.header->journal_next);
  return &f->shard.journal[position % TALLY_JOURNAL_ENTRIES];
}

static void test_journal_attempt_round_trip(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint16_t attempts[] = {0, 1, 7, TALLY_ATTEMPT_MAX};
  for (uint32_t i = 0; i < 4; i++) {
    assert_int_equal(apply_attempt(&f->shard, 6, 1 + i, attempts[i], "t", 1, &reason),
      TALLY_ACK_APPLIED);
    assert_int_equal(journal_at(f, i)->attempt, attempts[i]);
  }
  struct tally_journal_entry entry;
  for (uint32_t i = 0; i < 4; i++) {
    memset(&entry, 0xee, sizeof(entry));
    assert_true(tally_shard_journal_find(&f->shard, 6, 1 + i, &entry));
    assert_int_equal(entry.attempt, attempts[i]);
    assert_int_equal(entry.applied, 1);
    assert_int_equal(entry.crc, tally_journal_crc(&entry));
  }
  /* The crc covers the attempt: a flipped attempt is refused... */
  struct tally_journal_entry *stored = journal_at(f, 2);
  uint32_t crc = stored->crc;
  stored->attempt ^= 2;
  assert_int_not_equal(tally_journal_crc(stored), crc);
  assert_false(tally_shard_journal_find(&f->shard, 6, 3, &entry));
  stored->attempt ^= 2;
  assert_true(tally_shard_journal_find(&f->shard, 6, 3, &entry));
  /* ... but not applied, which changes after the crc is written. */
  struct tally_journal_entry copy = *stored;
  copy.applied = 0;
  assert_int_equal(tally_journal_crc(&copy), crc);
  copy.applied = 0xabcd;
  assert_int_equal(tally_journal_crc(&copy), crc);
  fixture_free(f);
}

/*
 * An entry written but not applied (a kill between the entry and the end of
 * the batch's apply): never found. Recovery marks the newest entry applied
 * when it replays that batch's redo record.
 */
static void test_journal_unapplied_not_found(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 8, 1, "u", 5, &reason), TALLY_ACK_APPLIED);
  uint8_t *pre = malloc(f->size);
  uint8_t *post = malloc(f->size);
  assert_non_null(pre);
  assert_non_null(post);
  memcpy(pre, f->region, f->size);
  assert_int_equal(apply_attempt(&f->shard, 8, 2, 3, "u", 6, &reason), TALLY_ACK_APPLIED);
  memcpy(post, f->region, f->size);
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  /* Only the flag differs: the entry is whole but not applied. */
  struct tally_journal_entry *stored = journal_at(f, 1);
  stored->applied = 0;
  assert_int_equal(stored->crc, tally_journal_crc(stored));
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  assert_true(tally_shard_journal_find(&f->shard, 8, 1, &entry)); /* the older one still is */
  stored->applied = 2; /* anything but 1 */
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  /* Recovery without a redo record leaves the journal alone. */
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.log_replayed, 0);
  assert_int_equal(stored->applied, 2);
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));

  /* Killed after the values, before the flag: the replay marks the entry. */
  crash_after_log(f, pre, post, 1);
  assert_int_equal(stored->applied, 0);
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  replay_entry_check(f, post);
  assert_true(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  assert_int_equal(entry.attempt, 3);
  assert_int_equal(entry.pairs[0].delta, 6);

  /* Killed before any value: the same. */
  crash_after_log(f, pre, post, 0);
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  replay_entry_check(f, post);
  assert_true(tally_shard_journal_find(&f->shard, 8, 2, &entry));

  /* The newest entry names another batch: the replay leaves it as it is. */
  crash_after_log(f, pre, post, 0);
  stored->seq = 99;
  stored->crc = tally_journal_crc(stored);
  recover(f, &report);
  assert_int_equal(report.log_replayed, 1);
  assert_int_equal(stored->applied, 0);
  assert_false(tally_shard_journal_find(&f->shard, 8, 99, &entry));
  assert_false(tally_shard_journal_find(&f->shard, 8, 2, &entry));
  assert_int_equal(value_of(&f->shard, "u"), 11);
  free(pre);
  free(post);
  fixture_free(f);
}

/* ---- Claims --------------------------------------------------------------- */

static uint64_t claims_next(const struct fixture *f)
{
  return tally_shard_claims_next(&f->shard);
}

static void assert_claim(const struct fixture *f, uint64_t position, uint64_t producer,
  uint64_t seq, uint32_t attempt)
{
  struct tally_claim claim;
  memset(&claim, 0xee, sizeof(claim));
  assert_true(tally_shard_claim_at(&f->shard, position, &claim));
  assert_int_equal(claim.producer, producer);
  assert_int_equal(claim.seq, seq);
  assert_int_equal(claim.attempt, attempt);
  assert_int_equal(claim.position, position);
  assert_int_equal(claim.crc, tally_claim_crc(&claim));
  const struct tally_claim *stored = &f->shard.claims[position % TALLY_CLAIMS_ENTRIES];
  assert_memory_equal(&claim, stored, sizeof(claim));
}

static void test_claims_only_for_applied_resends(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  enum tally_reason reason;
  /* A first send (attempt 0) is no claim. */
  assert_int_equal(apply(&f->shard, 1, 100, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 0);
  /* A resend applied here is one. */
  assert_int_equal(apply_attempt(&f->shard, 1, 101, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 1);
  assert_claim(f, 0, 1, 101, 1);
  assert_int_equal(apply_attempt(&f->shard, 2, 7, 4, "y", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 2);
  assert_claim(f, 1, 2, 7, 4);
  assert_claim(f, 0, 1, 101, 1);
  /* The claim's batch is the journal's newest entry, applied, with its attempt. */
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(&f->shard, 2, 7, &entry));
  assert_int_equal(entry.attempt, 4);

  /* Not applied: no claim, nothing written at all. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(apply_attempt(&f->shard, 1, 101, 2, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply_attempt(&f->shard, 1, 100, 1, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply_attempt(&f->shard, 1, 37, 1, "x", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply_attempt(&f->shard, 0, 1, 1, "x", 1, &reason), TALLY_ACK_MALFORMED);
  assert_int_equal(apply_attempt(&f->shard, UINT64_MAX, 1, 1, "x", 1, &reason),
    TALLY_ACK_MALFORMED);
  assert_int_equal(apply_attempt(&f->shard, 1, 102, 1, "x", INT64_MAX, &reason),
    TALLY_ACK_OVERFLOW);
  assert_memory_equal(before, f->region, f->size);
  for (uint64_t producer = 3; producer <= 16; producer++) {
    assert_int_equal(apply(&f->shard, producer, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  }
  memcpy(before, f->region, f->size);
  assert_int_equal(apply_attempt(&f->shard, 17, 1, 1, "x", 1, &reason),
    TALLY_ACK_PRODUCERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  char name[16];
  for (int i = 0; i < 14; i++) {
    snprintf(name, sizeof(name), "c.%d", i);
    assert_int_equal(add(&f->shard, name, 1), TALLY_OK);
  }
  memcpy(before, f->region, f->size);
  assert_int_equal(apply_attempt(&f->shard, 1, 102, 1, "one.too.many", 1, &reason),
    TALLY_ACK_COUNTERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  assert_int_equal(claims_next(f), 2);
  assert_claim(f, 0, 1, 101, 1);
  assert_claim(f, 1, 2, 7, 4);
  /* Applied later, from a resend: claimed then. */
  assert_int_equal(apply_attempt(&f->shard, 1, 102, 9, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 3);
  assert_claim(f, 2, 1, 102, 9);
  free(before);
  fixture_free(f);
}

static void test_claims_ring_wraps(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint64_t total = TALLY_CLAIMS_ENTRIES + 10;
  for (uint64_t seq = 1; seq <= total; seq++) {
    uint16_t attempt = (uint16_t)(1u + seq % 5u);
    assert_int_equal(apply_attempt(&f->shard, 7, seq, attempt, "w", 1, &reason),
      TALLY_ACK_APPLIED);
  }
  assert_int_equal(claims_next(f), total);
  /* Claim p is the batch of seq p + 1: the newest TALLY_CLAIMS_ENTRIES are kept. */
  for (uint64_t position = total - TALLY_CLAIMS_ENTRIES; position < total; position++) {
    assert_claim(f, position, 7, position + 1, 1u + (uint32_t)((position + 1) % 5u));
  }
  /* The oldest were overwritten by the next lap: their slots name later positions. */
  struct tally_claim claim;
  for (uint64_t position = 0; position < total - TALLY_CLAIMS_ENTRIES; position++) {
    assert_false(tally_shard_claim_at(&f->shard, position, &claim));
  }
  fixture_free(f);
}

static void test_claim_corrupt_refused(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply_attempt(&f->shard, 5, 1, 2, "k", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply_attempt(&f->shard, 5, 2, 3, "k", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 2);
  struct tally_claim *stored = &f->shard.claims[1];
  struct tally_claim claim;
  uint8_t *bytes = (uint8_t *)stored;
  /* A flipped bit anywhere in the claim is refused; the other claim is unharmed. */
  for (size_t i = 0; i < sizeof(*stored) * 8u; i++) {
    bytes[i / 8u] ^= (uint8_t)(1u << (i % 8u));
    assert_false(tally_shard_claim_at(&f->shard, 1, &claim));
    assert_claim(f, 0, 5, 1, 2);
    bytes[i / 8u] ^= (uint8_t)(1u << (i % 8u));
    assert_claim(f, 1, 5, 2, 3);
  }
  /* A whole claim in the wrong slot (its crc good) names another position. */
  f->shard.claims[0] = f->shard.claims[1];
  assert_false(tally_shard_claim_at(&f->shard, 0, &claim));
  assert_claim(f, 1, 5, 2, 3);
  /* A zeroed slot is no claim. */
  memset(&f->shard.claims[0], 0, sizeof(struct tally_claim));
  assert_false(tally_shard_claim_at(&f->shard, 0, &claim));
  /* An invalid producer or attempt 0 is refused even with a matching crc. */
  struct tally_claim forged = {.producer = 0, .seq = 1, .attempt = 1, .position = 0};
  forged.crc = tally_claim_crc(&forged);
  f->shard.claims[0] = forged;
  assert_false(tally_shard_claim_at(&f->shard, 0, &claim));
  forged = (struct tally_claim){.producer = 5, .seq = 1, .attempt = 0, .position = 0};
  forged.crc = tally_claim_crc(&forged);
  f->shard.claims[0] = forged;
  assert_false(tally_shard_claim_at(&f->shard, 0, &claim));
  fixture_free(f);
}

/*
 * Recovery after a crash in a resend's apply (redo record VALID): with the
 * claim missing, written but not counted, or written and counted, the
 * replay leaves exactly the bytes the batch left: one claim.
 */
static void test_claim_recovered_after_crash(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply_attempt(&f->shard, 9, 1, 1, "c", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 1);
  uint8_t *pre = malloc(f->size);
  uint8_t *post = malloc(f->size);
  assert_non_null(pre);
  assert_non_null(post);
  memcpy(pre, f->region, f->size);
  assert_int_equal(apply_attempt(&f->shard, 9, 2, 5, "c", 2, &reason), TALLY_ACK_APPLIED);
  memcpy(post, f->region, f->size);
  assert_int_equal(claims_next(f), 2);
  assert_claim(f, 1, 9, 2, 5);
  struct tally_shard_recovery report;
  for (uint32_t applied = 0; applied <= 1; applied++) {
    /* No claim yet (nor the applied flag). */
    crash_after_log(f, pre, post, applied);
    assert_int_equal(claims_next(f), 1);
    replay_entry_check(f, post);
    assert_claim(f, 1, 9, 2, 5);
    assert_claim(f, 0, 9, 1, 1);
  }
  /* The claim written, claims_next not yet advanced. */
  memcpy(f->region, post, f->size);
  f->shard.header->claims_next = 1;
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  replay_entry_check(f, post);
  /* Everything written, the redo record not yet cleared: no second claim. */
  memcpy(f->region, post, f->size);
  f->shard.log->state = TALLY_LOG_STATE_VALID;
  replay_entry_check(f, post);
  assert_int_equal(claims_next(f), 2);
  /* A first send cut short: its replay claims nothing. */
  memcpy(pre, f->region, f->size);
  assert_int_equal(apply(&f->shard, 9, 3, "c", 4, &reason), TALLY_ACK_APPLIED);
  memcpy(post, f->region, f->size);
  crash_after_log(f, pre, post, 0);
  replay_entry_check(f, post);
  assert_int_equal(claims_next(f), 2);
  recover(f, &report);
  assert_int_equal(report.log_replayed, 0);
  assert_memory_equal(f->region, post, f->size);
  free(pre);
  free(post);
  fixture_free(f);
}

static void test_claims_survive_recovery(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  for (uint64_t seq = 1; seq <= 5; seq++) {
    assert_int_equal(apply_attempt(&f->shard, 2, seq, (uint16_t)seq, "k", 3, &reason),
      TALLY_ACK_APPLIED);
  }
  size_t claims_size = TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim);
  void *before = malloc(claims_size);
  assert_non_null(before);
  memcpy(before, f->shard.claims, claims_size);
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_memory_equal(before, f->shard.claims, claims_size);
  assert_int_equal(claims_next(f), 5);
  struct tally_shard other;
  assert_int_equal(tally_shard_attach(&other, f->region, 3, 100, 20, false), 0);
  assert_int_equal(tally_shard_claims_next(&other), 5);
  for (uint64_t position = 0; position < 5; position++) assert_claim(f, position, 2,
    position + 1, (uint32_t)position + 1u);
  assert_int_equal(apply_attempt(&f->shard, 2, 6, 1, "k", 3, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(claims_next(f), 6);
  assert_claim(f, 5, 2, 6, 1);
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

static void test_dedup_start_and_head(void **state)
{
  (void)state;
  struct tally_dedup_run run = tally_dedup_run_start(1);
  assert_run(&run, 1, 1, 64, 1ull << 63);
  run = tally_dedup_run_start(0);
  assert_run(&run, 0, 1, 63, 1ull << 63);
  /* Near UINT64_MAX: head_last saturates, the seq's bit moves down with it. */
  run = tally_dedup_run_start(UINT64_MAX - 64);
  assert_run(&run, UINT64_MAX - 64, 1, UINT64_MAX - 1, 1ull << 63);
  run = tally_dedup_run_start(UINT64_MAX - 63); /* exactly fits */
  assert_run(&run, UINT64_MAX - 63, 1, UINT64_MAX, 1ull << 63);
  run = tally_dedup_run_start(UINT64_MAX - 62);
  assert_run(&run, UINT64_MAX - 62, 1, UINT64_MAX, 1ull << 62);
  run = tally_dedup_run_start(UINT64_MAX - 1);
  assert_run(&run, UINT64_MAX - 1, 1, UINT64_MAX, 2);
  run = tally_dedup_run_start(UINT64_MAX);
  assert_run(&run, UINT64_MAX, 1, UINT64_MAX, 1);
  /* A real run's head_last is never 0 (0 means no run): at least 63. */
  assert_true(tally_dedup_run_start(0).head_last >= TALLY_DEDUP_WINDOW - 1u);
  /* Whatever the start, the seq itself is in the head, and nothing before it. */
  const uint64_t starts[] = {0, 1, 1000, UINT64_MAX - 64, UINT64_MAX - 63, UINT64_MAX - 62,
    UINT64_MAX - 1, UINT64_MAX};
  for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
    struct tally_dedup dedup = dedup_start(starts[i]);
    assert_dedup_one(&dedup, starts[i], 1, tally_dedup_run_start(starts[i]).head_last,
      tally_dedup_run_start(starts[i]).head_window[0]);
    uint64_t head_last = 0;
    assert_true(tally_dedup_in_head(&dedup, starts[i], &head_last));
    assert_int_equal(head_last, dedup.runs[0].head_last);
    assert_true(tally_dedup_applied(&dedup, starts[i]));
    if (starts[i] > 0) assert_false(in_head(&dedup, starts[i] - 1));
    if (starts[i] < UINT64_MAX) assert_false(tally_dedup_applied(&dedup, starts[i] + 1));
  }

  /*
   * mark_head: only seqs among the head's 128, head_last - 127 .. head_last
   * (word 0: head_last - 63 .. head_last; word 1: the 64 below).
   */
  run = tally_dedup_run_start(UINT64_MAX - 62);
  tally_dedup_mark_head(&run, UINT64_MAX);
  tally_dedup_mark_head(&run, UINT64_MAX - 10);
  tally_dedup_mark_head(&run, UINT64_MAX - 64); /* 64 below head_last: word 1, bit 0 */
  assert_run_below(&run, UINT64_MAX - 62, 1, UINT64_MAX, (1ull << 62) | (1ull << 10) | 1u, 1);
  /*
   * Saturated, the head's upper 64 reach below the run's first seq
   * (UINT64_MAX - 63 here): word 0 is always head_last - 63 .. head_last.
   */
  tally_dedup_mark_head(&run, UINT64_MAX - 63);
  tally_dedup_mark_head(&run, UINT64_MAX - 127); /* the lowest seq of the head */
  tally_dedup_mark_head(&run, UINT64_MAX - 128); /* below it: never marked */
  tally_dedup_mark_head(&run, 0);
  assert_run_below(&run, UINT64_MAX - 62, 1, UINT64_MAX, (3ull << 62) | (1ull << 10) | 1u,
    (1ull << 63) | 1u);
  run = tally_dedup_run_start(100);
  tally_dedup_mark_head(&run, 163);
  tally_dedup_mark_head(&run, 164); /* past the head */
  tally_dedup_mark_head(&run, 99);  /* just before the run's first: word 1, bit 0 */
  tally_dedup_mark_head(&run, 36);  /* head_last - 127: word 1, bit 63 */
  tally_dedup_mark_head(&run, 35);  /* head_last - 128: outside, never marked */
  tally_dedup_mark_head(&run, 0);
  assert_run_below(&run, 100, 1, 163, (1ull << 63) | 1u, (1ull << 63) | 1u);
  assert_int_equal(run.last_seq, 100); /* the tail is not touched */
  assert_int_equal(run.window, 1);
  for (uint64_t seq = 0; seq <= 200; seq++) {
    bool head = seq == 36 || seq == 99 || seq == 100 || seq == 163;
    assert_int_equal(tally_dedup_head_has(&run, seq), head);
  }
  /* Near 0 the head's lower word covers what there is: run from 10, head 0..73. */
  run = tally_dedup_run_start(10);
  tally_dedup_mark_head(&run, 0);
  tally_dedup_mark_head(&run, 9);
  assert_run_below(&run, 10, 1, 73, 1ull << 63, (1ull << 9) | 1u);
  assert_true(tally_dedup_head_has(&run, 0));
  /* head_has: the same range; nothing above head_last or below head_last - 127. */
  run = run_make_below(0, 0, 500, UINT64_MAX, UINT64_MAX);
  assert_false(tally_dedup_head_has(&run, 501));
  assert_true(tally_dedup_head_has(&run, 500));
  assert_true(tally_dedup_head_has(&run, 437));
  assert_true(tally_dedup_head_has(&run, 436));
  assert_true(tally_dedup_head_has(&run, 373));
  assert_false(tally_dedup_head_has(&run, 372));
  assert_false(tally_dedup_head_has(&run, 0));
  run = run_make_below(0, 0, UINT64_MAX, UINT64_MAX, UINT64_MAX);
  assert_true(tally_dedup_head_has(&run, UINT64_MAX));
  assert_true(tally_dedup_head_has(&run, UINT64_MAX - 127));
  assert_false(tally_dedup_head_has(&run, UINT64_MAX - 128));

  /* applied: the tail or the head; a seq that left the tail is still in the head. */
  struct tally_dedup dedup = dedup_make(200, UINT64_MAX, 64, (1ull << 63) | (1ull << 54));
  assert_true(tally_dedup_applied(&dedup, 1));
  assert_true(tally_dedup_applied(&dedup, 10));
  assert_false(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window, 10));
  assert_false(tally_dedup_applied(&dedup, 2));
  assert_false(tally_dedup_applied(&dedup, 64));
  assert_false(tally_dedup_applied(&dedup, 100));
  assert_true(tally_dedup_applied(&dedup, 137));
  assert_false(in_head(&dedup, 137));
  assert_false(tally_dedup_applied(&dedup, 201));
  /* An empty head says nothing, not even for head_last. */
  dedup = dedup_make(5, 1, 64, 0);
  assert_false(in_head(&dedup, 64));
  assert_false(tally_dedup_applied(&dedup, 64));
  /* A record with no run says nothing at all. */
  memset(&dedup, 0, sizeof(dedup));
  assert_false(tally_dedup_applied(&dedup, 0));
  assert_false(in_head(&dedup, 0));
}

/* new_run: the runs move down one place, the oldest falls off. */
static void test_dedup_new_run_shifts(void **state)
{
  (void)state;
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  tally_dedup_new_run(&dedup, 10);
  assert_dedup_one(&dedup, 10, 1, 73, 1ull << 63);
  dedup.runs[0].last_seq = 20; /* as if 20 came in the run too */
  dedup.runs[0].window = (1ull << 10) | 1u;
  tally_dedup_new_run(&dedup, 200);
  assert_dedup(&dedup, 200, 1, 263, 1ull << 63);
  assert_run(&dedup.runs[1], 20, (1ull << 10) | 1u, 73, 1ull << 63);
  assert_no_run(&dedup.runs[2]);
  tally_dedup_new_run(&dedup, 400);
  assert_dedup(&dedup, 400, 1, 463, 1ull << 63);
  assert_run(&dedup.runs[1], 200, 1, 263, 1ull << 63);
  assert_run(&dedup.runs[2], 20, (1ull << 10) | 1u, 73, 1ull << 63);
  assert_true(tally_dedup_applied(&dedup, 10));  /* the oldest run's head */
  assert_true(tally_dedup_applied(&dedup, 20));  /* and its tail */
  tally_dedup_new_run(&dedup, 600);
  assert_dedup(&dedup, 600, 1, 663, 1ull << 63);
  assert_run(&dedup.runs[1], 400, 1, 463, 1ull << 63);
  assert_run(&dedup.runs[2], 200, 1, 263, 1ull << 63);
  assert_false(tally_dedup_applied(&dedup, 10)); /* dropped */
  assert_false(tally_dedup_applied(&dedup, 20));
}

/* applied and in_head look at every run: heads and tails of the older ones too. */
static void test_dedup_applied_and_in_head_over_runs(void **state)
{
  (void)state;
  /*
   * Oldest: 1..100 (head 1..64, tail 37..100). Middle: 300, 302, 360, 364
   * (head 300..363 holds 300, 302, 360; tail 301..364 holds 302, 360, 364).
   * Current: 1000, 1001 (head 1000..1063).
   */
  const struct tally_dedup_run runs[] = {
    run_make(1001, 3, 1063, 3ull << 62),
    run_make(364, (1ull << 62) | (1ull << 4) | 1u, 363,
      (1ull << 63) | (1ull << 61) | (1ull << 3)),
    run_make(100, UINT64_MAX, 64, UINT64_MAX),
  };
  struct tally_dedup dedup = dedup_runs(runs, 3);
  uint64_t head_last;
  for (uint64_t seq = 0; seq <= 1100; seq++) {
    bool head = (seq >= 1 && seq <= 64) || seq == 300 || seq == 302 || seq == 360 ||
      seq == 1000 || seq == 1001;
    bool tail = (seq >= 37 && seq <= 100) || seq == 302 || seq == 360 || seq == 364 ||
      seq == 1000 || seq == 1001;
    assert_int_equal(in_head(&dedup, seq), head);
    assert_int_equal(tally_dedup_applied(&dedup, seq), head || tail);
  }
  /* The head_last given back is that of the run whose head holds the seq. */
  assert_true(tally_dedup_in_head(&dedup, 1001, &head_last));
  assert_int_equal(head_last, 1063);
  assert_true(tally_dedup_in_head(&dedup, 302, &head_last));
  assert_int_equal(head_last, 363);
  assert_true(tally_dedup_in_head(&dedup, 1, &head_last));
  assert_int_equal(head_last, 64);
  assert_true(tally_dedup_in_head(&dedup, 64, &head_last));
  assert_int_equal(head_last, 64);
  /* In an older run's tail only: applied, not in any head (head_last untouched). */
  head_last = 12345;
  assert_false(tally_dedup_in_head(&dedup, 364, &head_last));
  assert_false(tally_dedup_in_head(&dedup, 65, &head_last));
  assert_int_equal(head_last, 12345);
  assert_true(tally_dedup_applied(&dedup, 364));
  assert_true(tally_dedup_applied(&dedup, 65));
  /* Not applied in between. */
  assert_false(tally_dedup_applied(&dedup, 301));
  assert_false(tally_dedup_applied(&dedup, 363));
  assert_false(tally_dedup_applied(&dedup, 999));
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
  struct tally_dedup dedup = dedup_read(&f->shard, 11);
  /*
   * 3 came before the run's first seq (5): in the tail, and in the head's
   * lower word (head_last 68 - 64 - 1: bit 1).
   */
  assert_dedup_one_below(&dedup, 5, 0x5, 5 + 63, 1ull << 63, 1ull << 1);
  dedup = dedup_read(&f->shard, 12);
  assert_dedup_one(&dedup, 1, 1, 64, 1ull << 63);
  assert_false(tally_shard_producer_read(&f->shard, 99, &dedup));
  assert_false(tally_shard_producer_read(&f->shard, 0, &dedup));
  assert_false(tally_shard_producer_read(&f->shard, UINT64_MAX, &dedup));

  /* A record failing its crc is not returned, by either read. */
  uint32_t corrupt = producer_slot(f, 12);
  f->shard.producers[corrupt].dedup.runs[0].last_seq ^= 1ull << 33;
  assert_false(tally_shard_producer_read(&f->shard, 12, &dedup));

  /* A scan sees every intact record once and nothing else. */
  uint32_t seen = 0;
  for (uint32_t slot = 0; slot < f->shard.producer_slots_count; slot++) {
    uint64_t producer = 0;
    if (!tally_shard_producer_at(&f->shard, slot, &producer, &dedup)) continue;
    seen++;
    assert_int_not_equal(slot, corrupt);
    assert_int_equal(slot, producer_slot(f, producer));
    assert_true(producer == 11 || producer == 13);
    assert_int_equal(dedup.runs[0].last_seq, producer == 11 ? 5 : 1);
    assert_int_equal(dedup.runs[0].head_last, producer == 11 ? 68 : 64);
    assert_int_equal(dedup.runs[0].head_window[0], 1ull << 63);
    assert_int_equal(dedup.runs[0].head_window[1], producer == 11 ? 1ull << 1 : 0);
    assert_no_run(&dedup.runs[1]);
  }
  assert_int_equal(seen, 2);
  /* A tombstone (after recovery) reads as nothing. */
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  uint64_t producer = 0;
  assert_false(tally_shard_producer_at(&f->shard, corrupt, &producer, &dedup));
  assert_false(tally_shard_producer_read(&f->shard, 12, &dedup));
  assert_true(tally_shard_producer_read(&f->shard, 13, &dedup));
  fixture_free(f);
}

static void test_producer_merge(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  /* New: the record taken as given, counted, with a valid crc. */
  assert_int_equal(merge_tail(&f->shard, 9, 10, 0xb), TALLY_OK);
  assert_int_equal(f->shard.header->producers_used, 1);
  struct tally_dedup dedup = dedup_read(&f->shard, 9);
  assert_dedup_one(&dedup, 10, 0xb, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW); /* 10, 9, 7 */
  /* Incoming ahead: the union at the later last_seq. */
  assert_int_equal(merge_tail(&f->shard, 9, 12, 0x5), TALLY_OK); /* 12, 10 */
  dedup = dedup_read(&f->shard, 9);
  assert_int_equal(dedup.runs[0].last_seq, 12);
  assert_int_equal(dedup.runs[0].window, 0x2d); /* 12, 10, 9, 7 */
  /* Incoming behind: the union at the record's last_seq. */
  assert_int_equal(merge_tail(&f->shard, 9, 8, 0x3), TALLY_OK); /* 8, 7 */
  dedup = dedup_read(&f->shard, 9);
  assert_dedup_one(&dedup, 12, 0x3d, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW); /* 12, 10, 9, 8, 7 */
  for (uint64_t seq = 1; seq <= 13; seq++) {
    bool expected = seq == 12 || (seq >= 7 && seq <= 10);
    assert_int_equal(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window, seq),
      expected);
  }
  assert_int_equal(f->shard.header->producers_used, 1);
  /* Idempotent: merging any record already covered changes no byte. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(merge_tail(&f->shard, 9, 12, 0x5), TALLY_OK);
  assert_int_equal(merge_tail(&f->shard, 9, 8, 0x3), TALLY_OK);
  assert_int_equal(merge_tail(&f->shard, 9, 12, 0x3d), TALLY_OK);
  assert_int_equal(merge_tail(&f->shard, 9, 1, 0), TALLY_OK);
  assert_memory_equal(before, f->region, f->size);
  free(before);
  /* The record stays what a batch's dedup sees. */
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 9, 8, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 9, 11, "x", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 9);
  assert_dedup_one(&dedup, 12, 0x3f, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW | (1ull << (70 - 11)));
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
  struct tally_dedup dedup;
  assert_int_equal(merge_tail(&f->shard, 5, 100, UINT64_MAX), TALLY_OK);
  /* 63 later: only the oldest bit of the old window (seq 100) is still inside. */
  assert_int_equal(merge_tail(&f->shard, 5, 163, 1), TALLY_OK);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 163, (1ull << 63) | 1u, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW);
  /* 64 or more later: every old bit falls off. */
  assert_int_equal(merge_tail(&f->shard, 5, 1000, 1), TALLY_OK);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 1000, 1, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW);
  /* A record far behind adds nothing. */
  assert_int_equal(merge_tail(&f->shard, 5, 936, UINT64_MAX), TALLY_OK);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 1000, 1, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW);
  assert_int_equal(merge_tail(&f->shard, 5, 937, 1), TALLY_OK);
  dedup = dedup_read(&f->shard, 5);
  /* The head was the same in every record (one run): untouched by the tails' sliding. */
  assert_dedup_one(&dedup, 1000, (1ull << 63) | 1u, TAIL_HEAD_LAST, TAIL_HEAD_WINDOW);
  fixture_free(f);
}

/*
 * Heads: runs are matched by head_last. The same run (equal head_last) gives
 * the union of both heads (and of both tails); a different run is another
 * run of the record, kept beside it, newest first.
 */
static void test_producer_merge_heads(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  struct tally_dedup dedup;
  /* The run that started at 10 (head 10..73): 10 and 12 applied on one node ... */
  assert_int_equal(merge(&f->shard, 9, 12, 0x5, 73, (1ull << 63) | (1ull << 61)), TALLY_OK);
  /* ... 11 and 40 on another (the same run: equal head_last): the union. */
  assert_int_equal(merge(&f->shard, 9, 40, 1, 73, (1ull << 62) | (1ull << 33)), TALLY_OK);
  dedup = dedup_read(&f->shard, 9);
  const struct tally_dedup_run run_10 =
    run_make(40, (0x5ull << 28) | 1u, 73, (7ull << 61) | (1ull << 33));
  assert_dedup_one(&dedup, 40, (0x5ull << 28) | 1u, 73, (7ull << 61) | (1ull << 33));
  for (uint64_t seq = 9; seq <= 74; seq++) {
    bool expected = (seq >= 10 && seq <= 12) || seq == 40;
    assert_int_equal(in_head(&dedup, seq), expected);
    assert_int_equal(tally_dedup_applied(&dedup, seq), expected);
  }

  /* A later run (incoming head_last higher): the current run; the earlier one is kept. */
  assert_int_equal(merge(&f->shard, 9, 500, 1, 563, 1ull << 63), TALLY_OK);
  dedup = dedup_read(&f->shard, 9);
  assert_dedup(&dedup, 500, 1, 563, 1ull << 63);
  assert_memory_equal(&dedup.runs[1], &run_10, sizeof(run_10));
  assert_no_run(&dedup.runs[2]);
  assert_true(tally_dedup_applied(&dedup, 10));
  assert_true(tally_dedup_applied(&dedup, 40));
  assert_true(tally_dedup_applied(&dedup, 500));
  assert_false(tally_dedup_applied(&dedup, 13));

  /* The earlier run arriving late, saying nothing new: no byte changes. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(merge(&f->shard, 9, 40, 1, 73, (1ull << 62) | (1ull << 33)), TALLY_OK);
  assert_int_equal(merge(&f->shard, 9, 12, 0x5, 73, (1ull << 63) | (1ull << 61)), TALLY_OK);
  /* Idempotent: the record itself, or a part of it, again. */
  assert_int_equal(merge(&f->shard, 9, 500, 1, 563, 1ull << 63), TALLY_OK);
  assert_int_equal(merge(&f->shard, 9, 500, 1, 563, 0), TALLY_OK);
  assert_int_equal(merge(&f->shard, 9, 450, 0, 563, 0), TALLY_OK);
  struct tally_dedup whole = dedup_read(&f->shard, 9);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &whole), TALLY_OK);
  /* An incoming record with no run at all says nothing. */
  struct tally_dedup empty;
  memset(&empty, 0, sizeof(empty));
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &empty), TALLY_OK);
  assert_memory_equal(before, f->region, f->size);
  /* The earlier run arriving late with more of its head: only that run grows. */
  assert_int_equal(merge(&f->shard, 9, 40, 1, 73, UINT64_MAX), TALLY_OK);
  dedup = dedup_read(&f->shard, 9);
  assert_dedup(&dedup, 500, 1, 563, 1ull << 63);
  assert_run(&dedup.runs[1], 40, (0x5ull << 28) | 1u, 73, UINT64_MAX);
  assert_no_run(&dedup.runs[2]);
  free(before);

  /* The record holds the later run, the incoming an earlier one: both kept, later first. */
  assert_int_equal(merge(&f->shard, 10, 300, 3, 363, (1ull << 63) | (1ull << 62)), TALLY_OK);
  assert_int_equal(merge(&f->shard, 10, 299, 1, 100, 1ull << 63), TALLY_OK);
  dedup = dedup_read(&f->shard, 10);
  assert_dedup(&dedup, 300, 3, 363, (1ull << 63) | (1ull << 62));
  assert_run(&dedup.runs[1], 299, 1, 100, 1ull << 63); /* tails of two runs: not united */
  assert_no_run(&dedup.runs[2]);
  /* And the record the earlier, the incoming the later: the later becomes current. */
  assert_int_equal(merge(&f->shard, 11, 40, 1, 100, 1ull << 63), TALLY_OK);
  assert_int_equal(merge(&f->shard, 11, 38, 1, 101, 1ull << 63), TALLY_OK);
  dedup = dedup_read(&f->shard, 11);
  assert_dedup(&dedup, 38, 1, 101, 1ull << 63);
  assert_run(&dedup.runs[1], 40, 1, 100, 1ull << 63);
  assert_no_run(&dedup.runs[2]);

  /*
   * Whatever the order, merging the same records gives the same record: with
   * a later run among them (two runs), and with one run only (the union).
   */
  const struct tally_dedup parts[2][3] = {
    {dedup_make(70, 1, 73, 1ull << 60), dedup_make(73, 0x9, 73, (1ull << 63) | (1ull << 3)),
      dedup_make(80, 1, 143, 1ull << 63)},
    {dedup_make(70, 1, 73, 1ull << 60), dedup_make(73, 0x9, 73, (1ull << 63) | (1ull << 3)),
      dedup_make(80, 1, 73, 1ull << 5)},
  };
  const struct tally_dedup_run expected_runs[2][2] = {
    {run_make(80, 1, 143, 1ull << 63),
      run_make(73, 0x9, 73, (1ull << 63) | (1ull << 60) | (1ull << 3))},
    {run_make(80, (1ull << 10) | (1ull << 7) | 1u, 73,
      (1ull << 63) | (1ull << 60) | (1ull << 5) | (1ull << 3))},
  };
  const struct tally_dedup expected[2] = {dedup_runs(expected_runs[0], 2),
    dedup_runs(expected_runs[1], 1)};
  const uint32_t orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1},
    {2, 1, 0}};
  for (uint32_t set = 0; set < 2; set++) {
    for (uint32_t o = 0; o < 6; o++) {
      uint64_t producer = 100 + 10 * set + o;
      for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(tally_shard_producer_merge(&f->shard, producer,
          &parts[set][orders[o][i]]), TALLY_OK);
      }
      dedup = dedup_read(&f->shard, producer);
      assert_memory_equal(&dedup, &expected[set], sizeof(dedup));
    }
  }

  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 0);
  assert_int_equal(report.producers_used, 15);
  fixture_free(f);
}

/*
 * The same run's heads are OR'd word by word: head_window[1] (seqs below the
 * run's first) as well as head_window[0]; another run's lower word is kept
 * with that run, never OR'd into this one.
 */
static void test_producer_merge_head_below(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  /* The run from 100 (head_last 163): 90 applied on one node, 95 on another. */
  const struct tally_dedup a = dedup_make_below(100, (1ull << 10) | 1u, 163, 1ull << 63,
    1ull << 9);
  const struct tally_dedup b = dedup_make_below(100, (1ull << 5) | 1u, 163, 1ull << 63,
    1ull << 4);
  const struct tally_dedup united = dedup_make_below(100, (1ull << 10) | (1ull << 5) | 1u,
    163, 1ull << 63, (1ull << 9) | (1ull << 4));
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &a), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &b), TALLY_OK);
  struct tally_dedup dedup = dedup_read(&f->shard, 9);
  assert_memory_equal(&dedup, &united, sizeof(dedup));
  assert_int_equal(tally_shard_producer_merge(&f->shard, 10, &b), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 10, &a), TALLY_OK);
  dedup = dedup_read(&f->shard, 10);
  assert_memory_equal(&dedup, &united, sizeof(dedup));
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, 90, &head_last));
  assert_int_equal(head_last, 163);
  assert_true(in_head(&dedup, 95));
  assert_false(in_head(&dedup, 91));

  /* Idempotent: either part, or the union, again changes no byte. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &a), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &b), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 9, &united), TALLY_OK);
  assert_memory_equal(before, f->region, f->size);
  free(before);

  /*
   * Only the lower word new (36, the head's lowest, from a record whose tail
   * is long gone): it alone changes; the tail stays the later one.
   */
  assert_int_equal(merge_below(&f->shard, 9, 40, 0, 163, 0, 1ull << 63), TALLY_OK);
  dedup = dedup_read(&f->shard, 9);
  assert_dedup_one_below(&dedup, 100, (1ull << 10) | (1ull << 5) | 1u, 163, 1ull << 63,
    (1ull << 63) | (1ull << 9) | (1ull << 4));
  assert_true(in_head(&dedup, 36));

  /* A later run with a lower word of its own: kept beside, its bits its own. */
  assert_int_equal(merge_below(&f->shard, 9, 500, (1ull << 20) | 1u, 563, 1ull << 63,
    1ull << 19), TALLY_OK);
  dedup = dedup_read(&f->shard, 9);
  assert_run_below(&dedup.runs[0], 500, (1ull << 20) | 1u, 563, 1ull << 63, 1ull << 19);
  assert_run_below(&dedup.runs[1], 100, (1ull << 10) | (1ull << 5) | 1u, 163, 1ull << 63,
    (1ull << 63) | (1ull << 9) | (1ull << 4));
  assert_no_run(&dedup.runs[2]);
  assert_true(tally_dedup_in_head(&dedup, 480, &head_last));
  assert_int_equal(head_last, 563);
  assert_true(tally_dedup_in_head(&dedup, 90, &head_last));
  assert_int_equal(head_last, 163);

  /* The table record, lower words included, is under its crc: a scan reads it intact. */
  uint64_t producer = 0;
  struct tally_dedup scanned;
  assert_true(tally_shard_producer_at(&f->shard, producer_slot(f, 9), &producer, &scanned));
  assert_int_equal(producer, 9);
  assert_memory_equal(&scanned, &dedup, sizeof(dedup));
  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 0);
  f->shard.producers[producer_slot(f, 9)].dedup.runs[1].head_window[1] ^= 1ull << 9;
  assert_false(tally_shard_producer_read(&f->shard, 9, &scanned));
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 1);
  fixture_free(f);
}

/* Merges every record of records[] into producer's, in the order given. */
static struct tally_dedup merge_all(struct tally_shard *shard, uint64_t producer,
  const struct tally_dedup *records, const uint32_t *order, uint32_t count)
{
  for (uint32_t i = 0; i < count; i++) {
    assert_int_equal(tally_shard_producer_merge(shard, producer, &records[order[i]]),
      TALLY_OK);
  }
  return dedup_read(shard, producer);
}

/*
 * Runs from both sides, interleaved (a producer that bounced between two
 * nodes): every run is matched by head_last, the same run's heads OR'd and
 * tails united, and the TALLY_DEDUP_RUNS newest runs kept, newest first.
 * Idempotent, and every order of merging gives the same record.
 */
static void test_producer_merge_runs(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 1024);
  /*
   * The producer's runs, by first seq: 100 (A), 300 (B), 500 (C), 700 (D),
   * 900 (E). Record X has A, C and E; record Y has B and D, and C too, with
   * other bits of it (the same run: equal head_last): 500 in Y's copy, 501
   * and 520 in X's.
   */
  const struct tally_dedup_run a = run_make(110, (1ull << 10) | 1u, 163, (1ull << 63) | (1ull << 53));
  const struct tally_dedup_run b = run_make(300, 1, 363, 1ull << 63);
  const struct tally_dedup_run c_y = run_make(500, 1, 563, 1ull << 63);
  const struct tally_dedup_run c_x = run_make(520, (1ull << 19) | 1u, 563,
    (1ull << 62) | (1ull << 43));
  const struct tally_dedup_run d = run_make(701, 3, 763, 3ull << 62);
  const struct tally_dedup_run e = run_make(900, 1, 963, 1ull << 63);
  const struct tally_dedup_run x_runs[] = {e, c_x, a};
  const struct tally_dedup_run y_runs[] = {d, c_y, b};
  const struct tally_dedup x = dedup_runs(x_runs, 3);
  const struct tally_dedup y = dedup_runs(y_runs, 3);
  /* C united: heads OR'd (500, 501, 520), tails within 520 (500, 501, 520). */
  const struct tally_dedup_run c = run_make(520, (1ull << 20) | (1ull << 19) | 1u, 563,
    (1ull << 63) | (1ull << 62) | (1ull << 43));
  const struct tally_dedup_run newest[] = {e, d, c};
  const struct tally_dedup expected = dedup_runs(newest, 3);

  /* X then Y, Y then X. */
  const struct tally_dedup both[2] = {x, y};
  const uint32_t xy[] = {0, 1};
  const uint32_t yx[] = {1, 0};
  struct tally_dedup dedup = merge_all(&f->shard, 1, both, xy, 2);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  dedup = merge_all(&f->shard, 2, both, yx, 2);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  /* Sorted newest first, every kept run real. */
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    assert_true(dedup.runs[r].head_last != 0);
    if (r > 0) assert_true(dedup.runs[r].head_last < dedup.runs[r - 1].head_last);
  }
  assert_false(tally_dedup_applied(&dedup, 100)); /* A and B are older than the 3 kept */
  assert_false(tally_dedup_applied(&dedup, 300));
  assert_true(tally_dedup_applied(&dedup, 501));
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, 500, &head_last));
  assert_int_equal(head_last, 563);

  /* Idempotent: X, Y, the result, a part of it again change no byte. */
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &x), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &y), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &expected), TALLY_OK);
  const struct tally_dedup_run part_runs[] = {d, c_y};
  struct tally_dedup part = dedup_runs(part_runs, 2);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &part), TALLY_OK);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 2, &part), TALLY_OK);
  /* A run older than the 3 kept changes nothing either. */
  struct tally_dedup old = dedup_runs(&a, 1);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &old), TALLY_OK);
  assert_memory_equal(before, f->region, f->size);
  free(before);

  /*
   * Every order of the single runs (one record each, as a replica receives
   * them from different origins over time): the same record.
   */
  const struct tally_dedup singles[] = {dedup_runs(&a, 1), dedup_runs(&b, 1),
    dedup_runs(&c_y, 1), dedup_runs(&c_x, 1), dedup_runs(&d, 1), dedup_runs(&e, 1)};
  uint32_t order[6] = {0, 1, 2, 3, 4, 5};
  uint32_t permutations = 0;
  for (;;) {
    dedup = merge_all(&f->shard, 1000 + permutations, singles, order, 6);
    assert_memory_equal(&dedup, &expected, sizeof(dedup));
    permutations++;
    /* The next permutation in lexicographic order. */
    uint32_t i = 5;
    while (i > 0 && order[i - 1] > order[i]) i--;
    if (i == 0) break;
    uint32_t j = 5;
    while (order[j] < order[i - 1]) j--;
    uint32_t t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
    for (uint32_t lo = i, hi = 5; lo < hi; lo++, hi--) {
      t = order[lo];
      order[lo] = order[hi];
      order[hi] = t;
    }
  }
  assert_int_equal(permutations, 720);

  /* Mixed records in every order of three: the same. */
  const struct tally_dedup mixed[] = {x, y, dedup_runs(&c_y, 1)};
  const uint32_t orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1},
    {2, 1, 0}};
  for (uint32_t o = 0; o < 6; o++) {
    dedup = merge_all(&f->shard, 200 + o, mixed, orders[o], 3);
    assert_memory_equal(&dedup, &expected, sizeof(dedup));
  }

  /* A newer run still: the oldest kept (C) drops. */
  const struct tally_dedup_run g = run_make(1100, 1, 1163, 1ull << 63);
  struct tally_dedup later = dedup_runs(&g, 1);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 1, &later), TALLY_OK);
  dedup = dedup_read(&f->shard, 1);
  const struct tally_dedup_run shifted[] = {g, e, d};
  struct tally_dedup expected_later = dedup_runs(shifted, 3);
  assert_memory_equal(&dedup, &expected_later, sizeof(dedup));

  struct tally_shard_recovery report;
  tally_shard_recover(&f->shard, &report);
  assert_int_equal(report.producers_quarantined, 0);
  fixture_free(f);
}

static void test_producer_merge_full(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 16);
  for (uint64_t producer = 1; producer <= 16; producer++) {
    struct tally_dedup start = dedup_start(producer);
    assert_int_equal(tally_shard_producer_merge(&f->shard, producer, &start), TALLY_OK);
  }
  assert_int_equal(f->shard.header->producers_used, 16);
  void *before = malloc(f->size);
  assert_non_null(before);
  memcpy(before, f->region, f->size);
  struct tally_dedup start = dedup_start(1);
  assert_int_equal(tally_shard_producer_merge(&f->shard, 17, &start),
    TALLY_REASON_PRODUCERS_FULL);
  assert_memory_equal(before, f->region, f->size);
  free(before);
  struct tally_dedup dedup;
  assert_false(tally_shard_producer_read(&f->shard, 17, &dedup));
  /* A known producer still merges (16 applied, then 17 in the same run). */
  assert_int_equal(merge(&f->shard, 16, 17, 1, 16 + 63, 1ull << 62), TALLY_OK);
  dedup = dedup_read(&f->shard, 16);
  assert_dedup_one(&dedup, 17, 3, 16 + 63, 3ull << 62);
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

/*
 * Merging the run that starts at seq, for seq = 1..n: each is a new run (its
 * own head_last), so the record holds the runs of n, n - 1 and n - 2.
 */
static bool record_of_rounds(const struct tally_dedup *dedup, uint64_t *n)
{
  uint64_t last = dedup->runs[0].last_seq;
  bool good = last >= 1;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    struct tally_dedup_run run;
    memset(&run, 0, sizeof(run));
    if (last > r) run = tally_dedup_run_start(last - r);
    if (memcmp(&dedup->runs[r], &run, sizeof(run)) != 0) good = false;
  }
  *n = last;
  return good;
}

static void *merge_reader_main(void *arg)
{
  struct merge_reader_args *args = arg;
  uint64_t previous = 0;
  for (;;) {
    bool done = __atomic_load_n(&args->done, __ATOMIC_ACQUIRE);
    struct tally_dedup dedup;
    if (tally_shard_producer_read(args->shard, 77, &dedup)) {
      /* Each merge brings a later run: the whole record one merge wrote, never a mix. */
      uint64_t n = 0;
      if (!record_of_rounds(&dedup, &n)) args->bad++;
      if (n < previous) args->bad++;
      previous = n;
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
    struct tally_dedup start = dedup_start(seq);
    assert_int_equal(tally_shard_producer_merge(&f->shard, 77, &start), TALLY_OK);
  }
  __atomic_store_n(&args.done, 1, __ATOMIC_RELEASE);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(args.bad, 0);
  assert_true(args.reads > 0); /* at least the read after the last merge */
  struct tally_dedup dedup = dedup_read(&f->shard, 77);
  uint64_t n = 0;
  assert_true(record_of_rounds(&dedup, &n));
  assert_int_equal(n, MERGE_ROUNDS);
  fixture_free(f);
}

/* ---- Heads: the first window of a producer's run, through batches -------- */

static void test_head_of_new_producer(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 7, 10, "h", 1, &reason), TALLY_ACK_APPLIED);
  struct tally_dedup dedup = dedup_read(&f->shard, 7);
  assert_dedup_one(&dedup, 10, 1, 10 + 63, 1ull << 63);
  /* On media: runs[0] head and tail, no older run, under the record's crc, padding zero. */
  uint32_t slot = producer_slot(f, 7);
  const struct tally_producer *record = &f->shard.producers[slot];
  assert_int_equal(record->dedup.runs[0].head_last, 73);
  assert_int_equal(record->dedup.runs[0].head_window[0], 1ull << 63);
  assert_int_equal(record->dedup.runs[0].head_window[1], 0);
  assert_int_equal(record->dedup.runs[0].last_seq, 10);
  assert_int_equal(record->dedup.runs[0].window, 1);
  assert_memory_equal(&record->dedup, &dedup, sizeof(dedup));
  assert_int_equal(record->crc, tally_producer_crc(slot, 7, &dedup));
  assert_int_equal(record->reserved, 0);
  for (size_t i = 0; i < sizeof(record->padding) / sizeof(record->padding[0]); i++) {
    assert_int_equal(record->padding[i], 0);
  }

  /* Later seqs among the run's first 64 (10..73), in any order, go into the head. */
  const uint64_t later[] = {12, 11, 40, 73};
  for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
    assert_int_equal(apply(&f->shard, 7, later[i], "h", 1, &reason), TALLY_ACK_APPLIED);
  }
  const uint64_t bits = (7ull << 61) | (1ull << 33) | 1u; /* 10, 11, 12, 40, 73 */
  dedup = dedup_read(&f->shard, 7);
  assert_dedup_one(&dedup, 73, bits, 73, bits); /* the tail ends where the head does */
  /* 74 is past the head: the tail's only. */
  assert_int_equal(apply(&f->shard, 7, 74, "h", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 7);
  assert_dedup_one(&dedup, 74, (bits << 1) | 1u, 73, bits);
  for (uint64_t seq = 9; seq <= 75; seq++) {
    bool head = seq == 10 || seq == 11 || seq == 12 || seq == 40 || seq == 73;
    assert_int_equal(in_head(&dedup, seq), head);
    assert_int_equal(tally_dedup_applied(&dedup, seq), head || seq == 74);
  }
  assert_int_equal(apply(&f->shard, 7, 12, "h", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(value_of(&f->shard, "h"), 6);

  /* At the end of the sequence space the head saturates at UINT64_MAX. */
  assert_int_equal(apply(&f->shard, 8, UINT64_MAX - 10, "h", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 8);
  assert_dedup_one(&dedup, UINT64_MAX - 10, 1, UINT64_MAX, 1ull << 10);
  assert_int_equal(apply(&f->shard, 8, UINT64_MAX, "h", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 8, UINT64_MAX - 63, "h", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 8);
  assert_dedup_one(&dedup, UINT64_MAX, (1ull << 63) | (1ull << 10) | 1u, UINT64_MAX,
    (1ull << 63) | (1ull << 10) | 1u);
  fixture_free(f);
}

static void test_head_stays_while_tail_slides(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  for (uint64_t seq = 1; seq <= 200; seq++) {
    assert_int_equal(apply(&f->shard, 5, seq, "s", 1, &reason), TALLY_ACK_APPLIED);
  }
  struct tally_dedup dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 200, UINT64_MAX, 64, UINT64_MAX); /* tail 137..200, head 1..64 */
  for (uint64_t seq = 1; seq <= 201; seq++) {
    bool tail = seq >= 137 && seq <= 200;
    bool head = seq <= 64;
    assert_int_equal(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window, seq), tail);
    assert_int_equal(in_head(&dedup, seq), head);
    assert_int_equal(tally_dedup_applied(&dedup, seq), tail || head);
  }
  /* The tail alone decides a batch: a seq only the head still holds is STALE. */
  assert_int_equal(apply(&f->shard, 5, 1, "s", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 5, 64, "s", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 5, 136, "s", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 5, 137, "s", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 5, 201, "s", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "s"), 201);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 201, UINT64_MAX, 64, UINT64_MAX);
  fixture_free(f);
}

static void test_head_moves_on_gap(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  struct tally_dedup dedup;
  assert_int_equal(apply(&f->shard, 5, 1, "g", 1, &reason), TALLY_ACK_APPLIED);
  /* A gap of exactly 63 (seq = last + 63): the same run. 64 is its head's last seq. */
  assert_int_equal(apply(&f->shard, 5, 64, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 64, (1ull << 63) | 1u, 64, (1ull << 63) | 1u);
  assert_int_equal(apply(&f->shard, 5, 127, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  const struct tally_dedup_run first = run_make(127, (1ull << 63) | 1u, 64, (1ull << 63) | 1u);
  assert_dedup_one(&dedup, 127, (1ull << 63) | 1u, 64, (1ull << 63) | 1u);
  /* A gap of 64 (seq = last + 64): the tail would reset, a new run starts. */
  assert_int_equal(apply(&f->shard, 5, 191, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup(&dedup, 191, 1, 191 + 63, 1ull << 63);
  /* The run before is remembered whole, as runs[1]. */
  assert_memory_equal(&dedup.runs[1], &first, sizeof(first));
  assert_no_run(&dedup.runs[2]);
  /* The current run's tail no longer holds them; the older run's head and tail do. */
  for (uint64_t seq = 1; seq <= 127; seq++) {
    assert_false(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window, seq));
  }
  assert_true(tally_dedup_applied(&dedup, 1));
  assert_true(tally_dedup_applied(&dedup, 64));
  assert_true(tally_dedup_applied(&dedup, 127));
  assert_false(tally_dedup_applied(&dedup, 2));
  assert_false(tally_dedup_applied(&dedup, 126));
  assert_false(tally_dedup_applied(&dedup, 190));
  /* The new run's next seqs fill its head. */
  assert_int_equal(apply(&f->shard, 5, 192, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  const struct tally_dedup_run second = run_make(192, 3, 254, 3ull << 62);
  assert_dedup(&dedup, 192, 3, 254, 3ull << 62);
  assert_memory_equal(&dedup.runs[1], &first, sizeof(first));
  /* Any larger gap too. */
  assert_int_equal(apply(&f->shard, 5, 100000, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup(&dedup, 100000, 1, 100063, 1ull << 63);
  assert_memory_equal(&dedup.runs[1], &second, sizeof(second));
  assert_memory_equal(&dedup.runs[2], &first, sizeof(first));
  assert_int_equal(apply(&f->shard, 5, 100063, "g", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup(&dedup, 100063, (1ull << 63) | 1u, 100063, (1ull << 63) | 1u);
  assert_memory_equal(&dedup.runs[1], &second, sizeof(second));
  assert_memory_equal(&dedup.runs[2], &first, sizeof(first));
  /* A seq behind last_seq never starts a run, however far behind (STALE). */
  assert_int_equal(apply(&f->shard, 5, 2, "g", 1, &reason), TALLY_ACK_STALE);
  /* Nor does one an older run holds: DUPLICATE/STALE are the current tail's alone. */
  assert_int_equal(apply(&f->shard, 5, 192, "g", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 5, 1, "g", 1, &reason), TALLY_ACK_STALE);
  struct tally_dedup unchanged = dedup_read(&f->shard, 5);
  assert_memory_equal(&unchanged, &dedup, sizeof(dedup));
  assert_int_equal(value_of(&f->shard, "g"), 7);
  fixture_free(f);
}

/*
 * Runs shift on each new run: three bounces keep the last three runs' heads
 * and tails; the fourth drops the oldest. Batches are decided by the current
 * run's tail alone.
 */
static void test_runs_shift_on_bounces(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  struct tally_dedup dedup;
  /* Run A: 1..100 here (head 1..64, tail 37..100), then the producer went elsewhere. */
  for (uint64_t seq = 1; seq <= 100; seq++) {
    assert_int_equal(apply(&f->shard, 4, seq, "b", 1, &reason), TALLY_ACK_APPLIED);
  }
  const struct tally_dedup_run run_a = run_make(100, UINT64_MAX, 64, UINT64_MAX);
  dedup = dedup_read(&f->shard, 4);
  assert_memory_equal(&dedup.runs[0], &run_a, sizeof(run_a));
  /*
   * Bounce 1, run B: 500, 502, 501 (out of order), 560, 564 (head 500..563
   * holds 500..502 and 560; tail 501..564 holds 501, 502, 560, 564).
   */
  const uint64_t b_seqs[] = {500, 502, 501, 560, 564};
  for (size_t i = 0; i < sizeof(b_seqs) / sizeof(b_seqs[0]); i++) {
    assert_int_equal(apply(&f->shard, 4, b_seqs[i], "b", 1, &reason), TALLY_ACK_APPLIED);
  }
  const struct tally_dedup_run run_b = run_make(564, (3ull << 62) | (1ull << 4) | 1u, 563,
    (7ull << 61) | (1ull << 3));
  dedup = dedup_read(&f->shard, 4);
  const struct tally_dedup_run ab[] = {run_b, run_a};
  struct tally_dedup expected = dedup_runs(ab, 2);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  /* Bounce 2, run C: 1000. */
  assert_int_equal(apply(&f->shard, 4, 1000, "b", 1, &reason), TALLY_ACK_APPLIED);
  const struct tally_dedup_run run_c = run_make(1000, 1, 1063, 1ull << 63);
  dedup = dedup_read(&f->shard, 4);
  const struct tally_dedup_run abc[] = {run_c, run_b, run_a};
  expected = dedup_runs(abc, 3);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  /* All three runs' heads and tails are remembered. */
  for (uint64_t seq = 0; seq <= 1100; seq++) {
    bool a = seq >= 1 && seq <= 100;
    bool b = seq == 500 || seq == 501 || seq == 502 || seq == 560 || seq == 564;
    assert_int_equal(tally_dedup_applied(&dedup, seq), a || b || seq == 1000);
  }
  assert_true(tally_dedup_applied(&dedup, 80));  /* A's tail only */
  assert_false(in_head(&dedup, 80));
  assert_true(tally_dedup_applied(&dedup, 564)); /* B's tail only */
  assert_false(in_head(&dedup, 564));
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, 10, &head_last));
  assert_int_equal(head_last, 64);
  assert_true(tally_dedup_in_head(&dedup, 501, &head_last));
  assert_int_equal(head_last, 563);
  assert_true(tally_dedup_in_head(&dedup, 1000, &head_last));
  assert_int_equal(head_last, 1063);
  /* Batches: the current tail decides; what only an older run holds is STALE. */
  assert_int_equal(apply(&f->shard, 4, 564, "b", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 4, 10, "b", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 4, 1000, "b", 1, &reason), TALLY_ACK_DUPLICATE);
  struct tally_dedup unchanged = dedup_read(&f->shard, 4);
  assert_memory_equal(&unchanged, &dedup, sizeof(dedup));
  /* Bounce 3, run D: 1200, 1201. A, the oldest, is dropped. */
  assert_int_equal(apply(&f->shard, 4, 1200, "b", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 4, 1201, "b", 1, &reason), TALLY_ACK_APPLIED);
  const struct tally_dedup_run run_d = run_make(1201, 3, 1263, 3ull << 62);
  dedup = dedup_read(&f->shard, 4);
  const struct tally_dedup_run bcd[] = {run_d, run_c, run_b};
  expected = dedup_runs(bcd, 3);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  for (uint64_t seq = 1; seq <= 100; seq++) assert_false(tally_dedup_applied(&dedup, seq));
  assert_true(tally_dedup_applied(&dedup, 501));
  assert_true(tally_dedup_applied(&dedup, 564));
  assert_true(tally_dedup_applied(&dedup, 1000));
  assert_true(tally_dedup_applied(&dedup, 1201));
  /* Bounce 4, run E: B goes too. */
  assert_int_equal(apply(&f->shard, 4, 5000, "b", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 4);
  const struct tally_dedup_run cde[] = {run_make(5000, 1, 5063, 1ull << 63), run_d, run_c};
  expected = dedup_runs(cde, 3);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  assert_false(tally_dedup_applied(&dedup, 501));
  assert_int_equal(value_of(&f->shard, "b"), 100 + 5 + 1 + 2 + 1);
  fixture_free(f);
}

/*
 * Out-of-order seqs inside the current run (older runs present): each marks
 * its tail bit, and its head bit when in the head; the older runs stay.
 */
static void test_runs_out_of_order_in_current(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 6, 10, "o", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 6, 200, "o", 1, &reason), TALLY_ACK_APPLIED);
  const struct tally_dedup_run run_10 = run_make(10, 1, 73, 1ull << 63);
  const struct tally_dedup_run run_200 = run_make(200, 1, 263, 1ull << 63);
  /*
   * The run from 300 (head 300..363): 330, then 310 and 305 late; 370 past
   * the head (305 and 300 leave the tail), 364 late past the head, 320 late
   * inside both.
   */
  const uint64_t seqs[] = {300, 330, 310, 305, 370, 364, 320};
  for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
    assert_int_equal(apply(&f->shard, 6, seqs[i], "o", 1, &reason), TALLY_ACK_APPLIED);
  }
  struct tally_dedup dedup = dedup_read(&f->shard, 6);
  const uint64_t tail = 1u | (1ull << (370 - 364)) | (1ull << (370 - 330)) |
    (1ull << (370 - 320)) | (1ull << (370 - 310));
  const uint64_t head = (1ull << (363 - 300)) | (1ull << (363 - 305)) |
    (1ull << (363 - 310)) | (1ull << (363 - 320)) | (1ull << (363 - 330));
  const struct tally_dedup_run runs[] = {run_make(370, tail, 363, head), run_200, run_10};
  struct tally_dedup expected = dedup_runs(runs, 3);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, 305, &head_last));
  assert_int_equal(head_last, 363);
  assert_false(in_head(&dedup, 364));
  assert_true(tally_dedup_applied(&dedup, 364));
  assert_false(tally_dedup_applied(&dedup, 306));
  /* 305 again: in the head, but 65 behind the tail: STALE; 320 again: DUPLICATE. */
  assert_int_equal(apply(&f->shard, 6, 305, "o", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 6, 320, "o", 1, &reason), TALLY_ACK_DUPLICATE);
  struct tally_dedup unchanged = dedup_read(&f->shard, 6);
  assert_memory_equal(&unchanged, &dedup, sizeof(dedup));
  assert_int_equal(value_of(&f->shard, "o"), 9);
  fixture_free(f);
}

static void test_head_out_of_order(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint64_t seqs[] = {1, 2, 3, 5, 60, 66, 68};
  for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
    assert_int_equal(apply(&f->shard, 5, seqs[i], "o", 1, &reason), TALLY_ACK_APPLIED);
  }
  struct tally_dedup dedup = dedup_read(&f->shard, 5);
  uint64_t tail = (1ull << 63) | (1ull << 8) | (1ull << 2) | 1u;           /* 5, 60, 66, 68 */
  uint64_t head = (7ull << 61) | (1ull << 59) | (1ull << 4);               /* 1, 2, 3, 5, 60 */
  assert_dedup_one(&dedup, 68, tail, 64, head);
  /* 6: late, inside the tail (5..68) and inside the head (1..64): both marked. */
  assert_int_equal(apply(&f->shard, 5, 6, "o", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 68, tail | (1ull << 62), 64, head | (1ull << 58));
  /* 65: late, inside the tail, past the head: the tail only. */
  assert_int_equal(apply(&f->shard, 5, 65, "o", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 5);
  assert_dedup_one(&dedup, 68, tail | (1ull << 62) | (1ull << 3), 64, head | (1ull << 58));
  /* 4: inside the head's range but outside the tail: STALE, nothing marked. */
  assert_int_equal(apply(&f->shard, 5, 4, "o", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 5, 6, "o", 1, &reason), TALLY_ACK_DUPLICATE);
  struct tally_dedup unchanged = dedup_read(&f->shard, 5);
  assert_memory_equal(&unchanged, &dedup, sizeof(dedup));
  /*
   * A late seq from before the run's first (a failed-over producer resending
   * its in-flight window): the tail, and the head's lower word (163 - 90 =
   * 73: word 1, bit 9).
   */
  assert_int_equal(apply(&f->shard, 6, 100, "o", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 6, 90, "o", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 6);
  assert_dedup_one_below(&dedup, 100, (1ull << 10) | 1u, 163, 1ull << 63, 1ull << 9);
  assert_true(in_head(&dedup, 90));
  assert_false(in_head(&dedup, 91));
  assert_true(tally_dedup_applied(&dedup, 90));
  assert_int_equal(value_of(&f->shard, "o"), 11);
  fixture_free(f);
}

/*
 * A producer failing over resends its in-flight window in any order, so the
 * first seq to arrive here (100) need not be the lowest: 60..99 arriving
 * after it, out of order (all inside the tail), belong to the run's head
 * (its lower word), and stay there after the tail has slid far away.
 */
static void test_head_below_first_out_of_order(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  uint64_t head_last = 0;
  assert_int_equal(apply(&f->shard, 3, 100, "u", 1, &reason), TALLY_ACK_APPLIED);
  /* 60..99 in a scrambled order (17 is prime to 40: every one once). */
  for (uint64_t i = 0; i < 40; i++) {
    uint64_t seq = 60 + (i * 17) % 40;
    struct tally_dedup dedup = dedup_read(&f->shard, 3);
    assert_false(in_head(&dedup, seq));
    assert_int_equal(apply(&f->shard, 3, seq, "u", 1, &reason), TALLY_ACK_APPLIED);
    dedup = dedup_read(&f->shard, 3);
    assert_true(in_head(&dedup, seq));
    assert_int_equal(dedup.runs[0].head_last, 163); /* the head never moves */
    assert_int_equal(dedup.runs[0].last_seq, 100);  /* nor does the tail's end */
  }
  /* seq s is bit 163 - 64 - s = 99 - s of the lower word: 60..99 are bits 0..39. */
  const uint64_t below = (1ull << 40) - 1u;
  struct tally_dedup dedup = dedup_read(&f->shard, 3);
  assert_dedup_one_below(&dedup, 100, (1ull << 41) - 1u, 163, 1ull << 63, below);
  /*
   * The lowest seq a batch can bring is 63 behind last_seq: 37 (163 - 126,
   * bit 62). 36 (head_last - 127, the head's lowest) is 64 behind: STALE,
   * nothing marked. Lower seqs are outside the head altogether.
   */
  assert_int_equal(apply(&f->shard, 3, 37, "u", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 3, 36, "u", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 3, 35, "u", 1, &reason), TALLY_ACK_STALE);
  dedup = dedup_read(&f->shard, 3);
  assert_dedup_one_below(&dedup, 100, ((1ull << 41) - 1u) | (1ull << 63), 163, 1ull << 63,
    below | (1ull << 62));
  /* The tail slides on, 101..400 in order: 337..400 at the end. */
  for (uint64_t seq = 101; seq <= 400; seq++) {
    assert_int_equal(apply(&f->shard, 3, seq, "u", 1, &reason), TALLY_ACK_APPLIED);
  }
  dedup = dedup_read(&f->shard, 3);
  assert_dedup_one_below(&dedup, 400, UINT64_MAX, 163, UINT64_MAX, below | (1ull << 62));
  for (uint64_t seq = 0; seq <= 401; seq++) {
    bool head = seq == 37 || (seq >= 60 && seq <= 163);
    bool tail = seq >= 337 && seq <= 400;
    assert_int_equal(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window, seq), tail);
    assert_int_equal(in_head(&dedup, seq), head);
    assert_int_equal(tally_dedup_applied(&dedup, seq), head || tail);
  }
  for (uint64_t seq = 60; seq <= 99; seq++) {
    head_last = 0;
    assert_true(tally_dedup_in_head(&dedup, seq, &head_last));
    assert_int_equal(head_last, 163);
  }
  /* Only the tail decides a batch: 60 again is STALE, nothing changes. */
  assert_int_equal(apply(&f->shard, 3, 60, "u", 1, &reason), TALLY_ACK_STALE);
  struct tally_dedup unchanged = dedup_read(&f->shard, 3);
  assert_memory_equal(&unchanged, &dedup, sizeof(dedup));

  /* A new run (1000): the old one, lower word and all, moves to runs[1] whole. */
  assert_int_equal(apply(&f->shard, 3, 1000, "u", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 3, 950, "u", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 3);
  const struct tally_dedup_run runs[] = {
    run_make_below(1000, (1ull << 50) | 1u, 1063, 1ull << 63, 1ull << (1063 - 64 - 950)),
    run_make_below(400, UINT64_MAX, 163, UINT64_MAX, below | (1ull << 62))};
  struct tally_dedup expected = dedup_runs(runs, 2);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  assert_true(tally_dedup_in_head(&dedup, 75, &head_last));
  assert_int_equal(head_last, 163);
  assert_true(tally_dedup_in_head(&dedup, 950, &head_last));
  assert_int_equal(head_last, 1063);
  assert_false(in_head(&dedup, 951));
  assert_int_equal(value_of(&f->shard, "u"), 1 + 40 + 1 + 300 + 2);
  fixture_free(f);
}

/*
 * At the end of the sequence space head_last saturates at UINT64_MAX; the
 * head is still head_last - 127 .. head_last, and seqs below the run's first
 * go to its lower word.
 */
static void test_head_below_first_saturated(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  const uint64_t first = UINT64_MAX - 10;
  assert_int_equal(apply(&f->shard, 8, first, "m", 1, &reason), TALLY_ACK_APPLIED);
  struct tally_dedup dedup = dedup_read(&f->shard, 8);
  assert_dedup_one(&dedup, first, 1, UINT64_MAX, 1ull << 10);
  /* 60 and 63 behind the tail's end: 70 and 73 below head_last (word 1, bits 6 and 9). */
  assert_int_equal(apply(&f->shard, 8, first - 60, "m", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 8, first - 63, "m", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 8, first - 64, "m", 1, &reason), TALLY_ACK_STALE);
  assert_int_equal(apply(&f->shard, 8, first - 40, "m", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 8);
  assert_dedup_one_below(&dedup, first, (1ull << 63) | (1ull << 60) | (1ull << 40) | 1u,
    UINT64_MAX, (1ull << 50) | (1ull << 10), (1ull << 9) | (1ull << 6));
  /* The last seq there is: the tail slides by 10, the head stays. */
  assert_int_equal(apply(&f->shard, 8, UINT64_MAX, "m", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 8);
  assert_dedup_one_below(&dedup, UINT64_MAX, (1ull << 50) | (1ull << 10) | 1u, UINT64_MAX,
    (1ull << 50) | (1ull << 10) | 1u, (1ull << 9) | (1ull << 6));
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, UINT64_MAX - 73, &head_last));
  assert_int_equal(head_last, UINT64_MAX);
  assert_true(tally_dedup_applied(&dedup, UINT64_MAX - 70)); /* left the tail, in the head */
  assert_false(tally_dedup_has(dedup.runs[0].last_seq, dedup.runs[0].window,
    UINT64_MAX - 70));
  assert_false(tally_dedup_applied(&dedup, UINT64_MAX - 74));
  assert_false(tally_dedup_applied(&dedup, UINT64_MAX - 127));
  assert_false(tally_dedup_applied(&dedup, 0));
  /* A record's head, saturated or not, never holds anything below head_last - 127. */
  struct tally_dedup_run run = dedup.runs[0];
  for (uint64_t distance = 0; distance < 300; distance++) {
    tally_dedup_mark_head(&run, UINT64_MAX - distance);
  }
  assert_run_below(&run, UINT64_MAX, dedup.runs[0].window, UINT64_MAX, UINT64_MAX,
    UINT64_MAX);
  for (uint64_t distance = 0; distance < 300; distance++) {
    assert_int_equal(tally_dedup_head_has(&run, UINT64_MAX - distance), distance < 128);
  }
  assert_int_equal(value_of(&f->shard, "m"), 5);
  fixture_free(f);
}

/*
 * Recovery tombstones a record whose head no longer matches its crc: either
 * word of head_window, or head_last.
 */
/*
 * Issue 14, L3: a checksum-valid record no producer could have (window bit 0
 * clear; a run after an empty one) is quarantined by recovery. Before, it was
 * kept and the producer's next batch hit an assert.
 */
static void test_crafted_producer_record_quarantined(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 1, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 2, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 3, 1, "x", 1, &reason), TALLY_ACK_APPLIED);
  uint32_t slot = producer_slot(f, 2);
  struct tally_producer *record = &f->shard.producers[slot];
  record->dedup.runs[0].window &= ~1ull; /* its last sequence not in its window */
  record->crc = tally_producer_crc(slot, 2, &record->dedup); /* and a good checksum */
  uint32_t gap_slot = producer_slot(f, 3);
  struct tally_producer *gap = &f->shard.producers[gap_slot];
  gap->dedup.runs[2] = gap->dedup.runs[0]; /* a run after an empty one */
  gap->crc = tally_producer_crc(gap_slot, 3, &gap->dedup);
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.producers_quarantined, 2);
  assert_int_equal(f->shard.producers[slot].producer, UINT64_MAX);
  assert_int_equal(f->shard.producers[gap_slot].producer, UINT64_MAX);
  /* Their next batches start new records; producer 1 is untouched. */
  assert_int_equal(apply(&f->shard, 2, 2, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 3, 2, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 1, 1, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(value_of(&f->shard, "x"), 5);
  fixture_free(f);
}

static void test_corrupt_producer_head_quarantined(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  enum tally_reason reason;
  /* Producers 1..5: 10, 11, then 5 (below the run's first: head_window[1] bit 4). */
  for (uint64_t producer = 1; producer <= 5; producer++) {
    assert_int_equal(apply(&f->shard, producer, 10, "x", 1, &reason), TALLY_ACK_APPLIED);
    assert_int_equal(apply(&f->shard, producer, 11, "x", 1, &reason), TALLY_ACK_APPLIED);
    assert_int_equal(apply(&f->shard, producer, 5, "x", 1, &reason), TALLY_ACK_APPLIED);
  }
  struct tally_dedup dedup = dedup_read(&f->shard, 1);
  assert_dedup_one_below(&dedup, 11, (1ull << 6) | 3u, 73, 3ull << 62, 1ull << 4);
  uint32_t window_slot = producer_slot(f, 2);
  uint32_t last_slot = producer_slot(f, 3);
  uint32_t below_slot = producer_slot(f, 4);
  uint32_t below_set_slot = producer_slot(f, 5);
  f->shard.producers[window_slot].dedup.runs[0].head_window[0] ^= 1ull << 20;
  f->shard.producers[last_slot].dedup.runs[0].head_last ^= 1ull << 40;
  /* head_window[1]: a bit set where none was, and the one bit it had cleared. */
  f->shard.producers[below_slot].dedup.runs[0].head_window[1] ^= 1ull << 37;
  f->shard.producers[below_set_slot].dedup.runs[0].head_window[1] ^= 1ull << 4;
  /* Bytes outside the crc (padding) are not checked, the last word included. */
  f->shard.producers[producer_slot(f, 1)].padding[1] = 0x1234;
  f->shard.producers[producer_slot(f, 1)].padding[6] = 0x5678;
  for (uint64_t producer = 2; producer <= 5; producer++) {
    assert_false(tally_shard_producer_read(&f->shard, producer, &dedup)); /* readers check */
  }
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.producers_quarantined, 4);
  assert_int_equal(report.producers_used, 5);
  assert_int_equal(f->shard.producers[window_slot].producer, UINT64_MAX);
  assert_int_equal(f->shard.producers[last_slot].producer, UINT64_MAX);
  assert_int_equal(f->shard.producers[below_slot].producer, UINT64_MAX);
  assert_int_equal(f->shard.producers[below_set_slot].producer, UINT64_MAX);
  dedup = dedup_read(&f->shard, 1);
  assert_dedup_one_below(&dedup, 11, (1ull << 6) | 3u, 73, 3ull << 62, 1ull << 4);
  /* Producer 1 keeps its record; 2 and 4 start a new run in a new record. */
  assert_int_equal(apply(&f->shard, 1, 11, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 1, 5, "x", 1, &reason), TALLY_ACK_DUPLICATE);
  assert_int_equal(apply(&f->shard, 2, 12, "x", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 2);
  assert_dedup_one(&dedup, 12, 1, 75, 1ull << 63);
  assert_int_equal(apply(&f->shard, 4, 12, "x", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(f->shard.header->producers_used, 7);
  fixture_free(f);
}

/*
 * The crc covers every run: recovery tombstones a record whose older run
 * (not the current one) was corrupted, any word of it.
 */
static void test_corrupt_producer_older_run_quarantined(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 64);
  enum tally_reason reason;
  /* One corrupt producer per word of runs[1] and runs[2] (5 words each), one intact. */
  enum {
    RUN_WORDS = sizeof(struct tally_dedup_run) / sizeof(uint64_t),
    CORRUPT = (TALLY_DEDUP_RUNS - 1) * RUN_WORDS,
  };
  assert_int_equal(RUN_WORDS, 5);
  assert_int_equal(CORRUPT, 10);
  const uint64_t intact = CORRUPT + 1;
  /* Producers 1..11: three runs each (10, 11; 200; 400). */
  const uint64_t seqs[] = {10, 11, 200, 400};
  for (uint64_t producer = 1; producer <= intact; producer++) {
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
      assert_int_equal(apply(&f->shard, producer, seqs[i], "x", 1, &reason),
        TALLY_ACK_APPLIED);
    }
  }
  const struct tally_dedup_run runs[] = {run_make(400, 1, 463, 1ull << 63),
    run_make(200, 1, 263, 1ull << 63), run_make(11, 3, 73, 3ull << 62)};
  const struct tally_dedup expected = dedup_runs(runs, 3);
  struct tally_dedup dedup = dedup_read(&f->shard, intact);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  /*
   * One flipped bit per producer 1..10, in the words of runs[1] and runs[2]
   * (head_last, head_window[0], head_window[1], last_seq, window each).
   */
  uint32_t slots[CORRUPT + 1];
  for (uint64_t producer = 1; producer <= intact; producer++) {
    slots[producer - 1] = producer_slot(f, producer);
  }
  for (uint32_t k = 0; k < CORRUPT; k++) {
    struct tally_producer *record = &f->shard.producers[slots[k]];
    uint64_t *words = (uint64_t *)(void *)&record->dedup;
    words[RUN_WORDS + k] ^= 1ull << (3 * k + 1); /* runs[1] words 0..4, then runs[2] */
    assert_false(tally_shard_producer_read(&f->shard, k + 1, &dedup));
    uint64_t producer = 0;
    assert_false(tally_shard_producer_at(&f->shard, slots[k], &producer, &dedup));
  }
  struct tally_shard_recovery report;
  recover(f, &report);
  assert_int_equal(report.producers_quarantined, CORRUPT);
  assert_int_equal(report.producers_used, intact);
  for (uint32_t k = 0; k < CORRUPT; k++) {
    assert_int_equal(f->shard.producers[slots[k]].producer, UINT64_MAX);
  }
  /* Producer 11 is intact: kept whole, every run. */
  dedup = dedup_read(&f->shard, intact);
  assert_memory_equal(&dedup, &expected, sizeof(dedup));
  assert_int_equal(f->shard.producers[slots[CORRUPT]].producer, intact);
  /* A tombstoned producer starts over: one run, in a new record. */
  assert_int_equal(apply(&f->shard, 1, 401, "x", 1, &reason), TALLY_ACK_APPLIED);
  dedup = dedup_read(&f->shard, 1);
  assert_dedup_one(&dedup, 401, 1, 464, 1ull << 63);
  assert_int_equal(f->shard.header->producers_used, intact + 1);
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
  fixture_free(f);
}

/*
 * What media holds in per-burst mode, for one batch: a flush takes the bytes
 * as they are then, a drain makes every flush since the last drain durable,
 * in any order among themselves. Three pieces are followed: the redo record
 * (crc .. the batch's entries), the record's state word, and the value of
 * the batch's slot. At every drain the media must recover to the batch all
 * or nothing:
 *   - the state may turn VALID on media only once the whole record is there;
 *   - the value may change on media only while VALID is there (before, in an
 *     earlier drain, so a crash in between replays the record);
 *   - the state may go back to EMPTY on media only once the value is there.
 */
struct media_piece {
  const void *address;
  size_t size;
  uint8_t pending[sizeof(struct tally_batch_log)]; /* as flushed */
  uint8_t durable[sizeof(struct tally_batch_log)]; /* as on media */
  bool flushed;                                    /* since the last drain */
};

enum { PIECE_RECORD, PIECE_STATE, PIECE_VALUE, PIECES };

static struct media_model {
  struct media_piece piece[PIECES];
  int64_t value_new;
  uint32_t drains;
  const char *violation; /* the first rule broken, NULL if none */
} media;

static void media_follow(uint32_t index, const void *address, size_t size)
{
  struct media_piece *piece = &media.piece[index];
  assert_true(size <= sizeof(piece->durable));
  piece->address = address;
  piece->size = size;
  memcpy(piece->durable, address, size); /* what media holds before the batch */
  piece->flushed = false;
}

static void media_flush(const void *address, size_t size)
{
  const uint8_t *begin = address;
  for (uint32_t i = 0; i < PIECES; i++) {
    struct media_piece *piece = &media.piece[i];
    const uint8_t *piece_begin = piece->address;
    if (begin > piece_begin || begin + size < piece_begin + piece->size) {
      /* a flush of part of a piece would leave it torn on media: not followed */
      bool overlaps = begin < piece_begin + piece->size && piece_begin < begin + size;
      if (overlaps && media.violation == NULL) media.violation = "a piece flushed in part";
      continue;
    }
    memcpy(piece->pending, piece->address, piece->size);
    piece->flushed = true;
  }
}

static uint64_t media_state(const uint8_t *bytes)
{
  uint64_t state;
  memcpy(&state, bytes, sizeof(state));
  return state;
}

static int64_t media_value(const uint8_t *bytes)
{
  int64_t value;
  memcpy(&value, bytes, sizeof(value));
  return value;
}

static void media_drain(void)
{
  struct media_piece *record = &media.piece[PIECE_RECORD];
  struct media_piece *state = &media.piece[PIECE_STATE];
  struct media_piece *value = &media.piece[PIECE_VALUE];
  bool state_was_valid = media_state(state->durable) == TALLY_LOG_STATE_VALID;
  bool value_was_new = media_value(value->durable) == media.value_new;
  bool record_was_whole = memcmp(record->durable, record->address, record->size) == 0;
  const char *broken = NULL;
  if (state->flushed && media_state(state->pending) == TALLY_LOG_STATE_VALID &&
      !state_was_valid && (!record_was_whole || record->flushed)) {
    broken = "the state turned VALID before the record was durable";
  }
  if (value->flushed && media_value(value->pending) == media.value_new && !value_was_new &&
      (!state_was_valid || state->flushed)) {
    broken = "the value changed before VALID was durable";
  }
  if (state->flushed && media_state(state->pending) == TALLY_LOG_STATE_EMPTY &&
      state_was_valid && (!value_was_new || value->flushed)) {
    broken = "the state went back to EMPTY before the value was durable";
  }
  if (broken != NULL && media.violation == NULL) media.violation = broken;
  for (uint32_t i = 0; i < PIECES; i++) {
    if (media.piece[i].flushed) memcpy(media.piece[i].durable, media.piece[i].pending,
      media.piece[i].size);
    media.piece[i].flushed = false;
  }
  media.drains++;
}

static void test_per_burst_record_durable_before_values(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(100, 20);
  assert_int_equal(add(&f->shard, "a", 2), TALLY_OK); /* the slot exists before */
  f->shard.flush = media_flush;
  f->shard.drain = media_drain;
  memset(&media, 0, sizeof(media));
  media.value_new = 3;
  const struct tally_batch_log *log = f->shard.log;
  size_t record_begin = offsetof(struct tally_batch_log, crc);
  size_t record_end = offsetof(struct tally_batch_log, entries) + sizeof(log->entries[0]);
  media_follow(PIECE_RECORD, (const uint8_t *)log + record_begin, record_end - record_begin);
  media_follow(PIECE_STATE, &log->state, sizeof(log->state));
  media_follow(PIECE_VALUE, &f->shard.slots[find(&f->shard, "a")].value, sizeof(int64_t));
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 3, 1, "a", 1, &reason), TALLY_ACK_APPLIED);
  media_drain(); /* the caller's drain at the end of the burst */
  if (media.violation != NULL) fail_msg("per-burst order: %s", media.violation);
  /* Every step reached media: the record, VALID, the value, EMPTY again. */
  assert_true(media.drains >= 3);
  assert_int_equal(media_value(media.piece[PIECE_VALUE].durable), 3);
  assert_int_equal(media_state(media.piece[PIECE_STATE].durable), TALLY_LOG_STATE_EMPTY);
  assert_memory_equal(media.piece[PIECE_RECORD].durable, media.piece[PIECE_RECORD].address,
    media.piece[PIECE_RECORD].size);
  assert_int_equal(value_of(&f->shard, "a"), 3);
  fixture_free(f);
}

/* ---- Traffic classes as bulkheads (issue 14, C1) ---------------------------- */

static enum tally_reason add_statsd(struct tally_shard *shard, const char *name, int64_t delta,
  uint32_t statsd_counters_max, bool writes_reliable)
{
  uint32_t len = (uint32_t)strlen(name);
  const struct tally_statsd_rights rights = { .statsd_counters_max = statsd_counters_max,
    .writes_reliable = writes_reliable };
  return tally_shard_add_statsd(shard, name, len, tally_shard_name_hash(shard, name, len), delta, &rights);
}

static uint8_t class_of(const struct tally_shard *shard, const char *name)
{
  int64_t slot = find(shard, name);
  assert_true(slot >= 0);
  return tally_shard_slot_class(shard, (uint32_t)slot);
}

/*
 * statsd spoofing new names fills only its share: reliable batches still
 * create names in the rest (before: every new reliable name got
 * counters_full once statsd had filled the table).
 */
static void test_statsd_share_keeps_room_for_reliable(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  char name[32];
  uint32_t refused = 0;
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof(name), "junk.%d", i);
    enum tally_reason reason = add_statsd(&f->shard, name, 1, 12, false);
    if (reason != TALLY_OK) {
      assert_int_equal(reason, TALLY_REASON_STATSD_SHARE_FULL);
      refused++;
    }
  }
  assert_int_equal(refused, 28);
  assert_int_equal(f->shard.statsd_used, 12);
  assert_int_equal(tally_shard_counters_used(&f->shard), 12);
  assert_int_equal(add_statsd(&f->shard, "junk.0", 5, 12, false), TALLY_OK); /* old names count */
  assert_int_equal(value_of(&f->shard, "junk.0"), 6);
  enum tally_reason reason;
  for (uint64_t seq = 1; seq <= 4; seq++) {
    snprintf(name, sizeof(name), "billing.%u", (unsigned)seq);
    assert_int_equal(apply(&f->shard, 9, seq, name, 1, &reason), TALLY_ACK_APPLIED);
    assert_int_equal(class_of(&f->shard, name), TALLY_CLASS_RELIABLE);
  }
  assert_int_equal(apply(&f->shard, 9, 5, "billing.5", 1, &reason), TALLY_ACK_COUNTERS_FULL);
  assert_int_equal(f->shard.statsd_used, 12);
  /* The whole table full: statsd's new name gets counters_full, whatever its share. */
  assert_int_equal(add_statsd(&f->shard, "junk.new", 1, 16, false), TALLY_REASON_COUNTERS_FULL);
  /* A lower share after a restart: statsd creates nothing more, keeps counting. */
  assert_int_equal(add_statsd(&f->shard, "junk.1", 1, 4, false), TALLY_OK);
  fixture_free(f);
}

/*
 * statsd cannot add to a counter a reliable producer owns (before: it could
 * push it to INT64_MAX so the producer's next batch got the final overflow).
 */
static void test_statsd_cannot_write_reliable_counter(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  enum tally_reason reason;
  assert_int_equal(apply(&f->shard, 9, 1, "billing.total", 5, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(add_statsd(&f->shard, "billing.total", INT64_MAX - 5, 16, false),
    TALLY_REASON_STATSD_RELIABLE_COUNTER);
  assert_int_equal(value_of(&f->shard, "billing.total"), 5);
  assert_int_equal(apply(&f->shard, 9, 2, "billing.total", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "billing.total"), 6);
  /* The operator allowed it: statsd adds, within int64. */
  assert_int_equal(add_statsd(&f->shard, "billing.total", 10, 16, true), TALLY_OK);
  assert_int_equal(value_of(&f->shard, "billing.total"), 16);
  assert_int_equal(f->shard.statsd_used, 0);
  fixture_free(f);
}

/*
 * A counter statsd created and a reliable producer then writes becomes the
 * producer's: its value is kept unless keeping it would overflow the batch,
 * then statsd's value is dropped (counted), so a squatter cannot give the
 * producer the overflow ack either. statsd may not write it afterwards.
 */
static void test_reliable_takes_over_statsd_counter(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  enum tally_reason reason;
  assert_int_equal(add_statsd(&f->shard, "shared.ok", 7, 16, false), TALLY_OK);
  assert_int_equal(add_statsd(&f->shard, "squatted", INT64_MAX - 1, 16, false), TALLY_OK);
  assert_int_equal(f->shard.statsd_used, 2);
  assert_int_equal(apply(&f->shard, 9, 1, "shared.ok", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "shared.ok"), 8);
  assert_int_equal(class_of(&f->shard, "shared.ok"), TALLY_CLASS_RELIABLE);
  assert_int_equal(f->shard.statsd_used, 1);
  assert_int_equal(f->shard.statsd_taken_over, 1);
  assert_int_equal(f->shard.statsd_values_dropped, 0);
  struct tally_wire_batch batch;
  batch_init(&batch, 9, 2);
  batch_pair(&batch, "squatted", 2);
  batch_pair(&batch, "shared.ok", 1);
  batch_pair(&batch, "squatted", 3);
  assert_int_equal(tally_shard_apply_batch(&f->shard, &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(value_of(&f->shard, "squatted"), 5);
  assert_int_equal(value_of(&f->shard, "shared.ok"), 9);
  assert_int_equal(f->shard.statsd_values_dropped, 1);
  assert_int_equal(f->shard.statsd_taken_over, 2);
  assert_int_equal(f->shard.statsd_used, 0);
  assert_int_equal(add_statsd(&f->shard, "squatted", INT64_MAX - 5, 16, false),
    TALLY_REASON_STATSD_RELIABLE_COUNTER);
  /* A reliable producer's own overflow is still its own. */
  assert_int_equal(apply(&f->shard, 9, 3, "squatted", INT64_MAX, &reason), TALLY_ACK_OVERFLOW);
  assert_int_equal(reason, TALLY_REASON_COUNTER_OVERFLOW);
  assert_int_equal(value_of(&f->shard, "squatted"), 5);
  fixture_free(f);
}

/* Recovery counts statsd's share again from the slots' class bytes. */
static void test_recovery_recounts_statsd_share(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  enum tally_reason reason;
  assert_int_equal(add_statsd(&f->shard, "s.1", 1, 8, false), TALLY_OK);
  assert_int_equal(add_statsd(&f->shard, "s.2", 1, 8, false), TALLY_OK);
  assert_int_equal(add_statsd(&f->shard, "s.3", 1, 8, false), TALLY_OK);
  assert_int_equal(apply(&f->shard, 9, 1, "s.3", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 9, 2, "r.1", 1, &reason), TALLY_ACK_APPLIED);
  struct tally_shard_recovery report;
  assert_int_equal(tally_shard_attach(&f->shard, f->region, 3, 16, 16, false), 0);
  assert_int_equal(f->shard.statsd_used, 0);
  recover(f, &report);
  assert_int_equal(report.counters_used, 4);
  assert_int_equal(f->shard.statsd_used, 2);
  assert_int_equal(class_of(&f->shard, "s.3"), TALLY_CLASS_RELIABLE);
  assert_int_equal(class_of(&f->shard, "s.1"), TALLY_CLASS_STATSD);
  fixture_free(f);
}

/* Restore and replica tables keep the class and statsd's share (tally_shard_set_class). */
static void test_set_class_keeps_share(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(16, 16);
  char name[32];
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof(name), "junk.%d", i);
    assert_int_equal(tally_shard_set_class(&f->shard, name, (uint32_t)strlen(name),
      tally_shard_name_hash(&f->shard, name, strlen(name)), 1, TALLY_CLASS_STATSD, 4), TALLY_OK);
  }
  assert_int_equal(tally_shard_set_class(&f->shard, "junk.9", 6, tally_shard_name_hash(&f->shard, "junk.9", 6), 1,
    TALLY_CLASS_STATSD, 4), TALLY_REASON_STATSD_SHARE_FULL);
  assert_int_equal(tally_shard_set_class(&f->shard, "bill", 4, tally_shard_name_hash(&f->shard, "bill", 4), 3,
    TALLY_CLASS_RELIABLE, 4), TALLY_OK);
  assert_int_equal(class_of(&f->shard, "bill"), TALLY_CLASS_RELIABLE);
  assert_int_equal(tally_shard_set_class(&f->shard, "junk.0", 6, tally_shard_name_hash(&f->shard, "junk.0", 6), 2,
    TALLY_CLASS_RELIABLE, 4), TALLY_OK);
  assert_int_equal(class_of(&f->shard, "junk.0"), TALLY_CLASS_RELIABLE);
  assert_int_equal(value_of(&f->shard, "junk.0"), 2);
  assert_int_equal(f->shard.statsd_used, 3);
  fixture_free(f);
}

/* ---- Dirty slots (issue 12): every value write marks its slot ------------------ */

/* The dirty bits of every word, taken (cleared), as slot indexes in a bitmap copy. */
static uint32_t dirty_take_all(struct tally_shard *shard, uint64_t *bits)
{
  uint32_t marked = 0;
  for (uint32_t w = 0; w < tally_shard_dirty_words(shard); w++) {
    bits[w] = tally_shard_dirty_take(shard, w);
    marked += (uint32_t)__builtin_popcountll(bits[w]);
  }
  return marked;
}

static bool dirty_has(const uint64_t *bits, int64_t slot)
{
  assert_true(slot >= 0);
  return (bits[slot / 64] >> (slot % 64)) & 1u;
}

static void test_dirty_marks_every_write(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(200, 16);
  static uint64_t bits[1024];
  assert_true(tally_shard_dirty_words(&f->shard) <= 1024u);
  /* Not tracked: writes go on, nothing to take. */
  assert_null(f->shard.dirty);
  assert_int_equal(add(&f->shard, "before", 1), TALLY_OK);
  assert_int_equal(tally_shard_dirty_open(&f->shard), 0);
  assert_int_equal(dirty_take_all(&f->shard, bits), 0);
  /* A new counter, an increment, a set, a reliable batch: each marks its slot. */
  assert_int_equal(add(&f->shard, "a", 5), TALLY_OK);
  assert_int_equal(dirty_take_all(&f->shard, bits), 1);
  assert_true(dirty_has(bits, find(&f->shard, "a")));
  assert_int_equal(dirty_take_all(&f->shard, bits), 0); /* taken: clear */
  assert_int_equal(add(&f->shard, "before", 2), TALLY_OK);
  assert_int_equal(add(&f->shard, "before", 3), TALLY_OK); /* still dirty: one bit */
  assert_int_equal(dirty_take_all(&f->shard, bits), 1);
  assert_true(dirty_has(bits, find(&f->shard, "before")));
  assert_int_equal(tally_shard_set(&f->shard, "a", 1, tally_shard_name_hash(&f->shard, "a", 1),
    42), TALLY_OK);
  assert_int_equal(dirty_take_all(&f->shard, bits), 1);
  assert_true(dirty_has(bits, find(&f->shard, "a")));
  enum tally_reason reason = TALLY_OK; /* two reliable batches, taken together */
  assert_int_equal(apply(&f->shard, 7, 1, "a", 1, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(apply(&f->shard, 7, 2, "b", 2, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(dirty_take_all(&f->shard, bits), 2);
  assert_true(dirty_has(bits, find(&f->shard, "a")) && dirty_has(bits, find(&f->shard, "b")));
  /* A refused write (an overflow) changes nothing and marks nothing. */
  assert_int_equal(add(&f->shard, "max", INT64_MAX), TALLY_OK);
  assert_int_equal(dirty_take_all(&f->shard, bits), 1);
  assert_int_equal(add(&f->shard, "max", 1), TALLY_REASON_COUNTER_OVERFLOW);
  assert_int_equal(dirty_take_all(&f->shard, bits), 0);
  tally_shard_dirty_close(&f->shard);
  assert_null(f->shard.dirty);
  fixture_free(f);
}

#define DIRTY_NAMES 64u
#define DIRTY_ROUNDS 20000u

struct dirty_writer {
  struct tally_shard *shard;
  uint32_t hash[DIRTY_NAMES];
  char names[DIRTY_NAMES][8];
  bool done; /* atomic */
};

static void *dirty_writer_main(void *argument)
{
  struct dirty_writer *writer = argument;
  for (uint32_t round = 0; round < DIRTY_ROUNDS; round++) {
    uint32_t k = (round * 7u) % DIRTY_NAMES;
    assert(tally_shard_add(writer->shard, writer->names[k], (uint32_t)strlen(writer->names[k]),
      writer->hash[k], 1) == TALLY_OK);
  }
  __atomic_store_n(&writer->done, true, __ATOMIC_RELEASE);
  return NULL;
}

/*
 * The scan's protocol (cluster_scan.c) against a live writer: take the bits,
 * read the slots taken now and those taken the time before. Once the writer
 * stops, two more passes leave the reader's copy equal to every value: no
 * change is lost, however the marks and the reads interleaved.
 */
static void test_dirty_take_loses_nothing(void **state)
{
  (void)state;
  struct fixture *f = fixture_new(200, 16);
  assert_int_equal(tally_shard_dirty_open(&f->shard), 0);
  static struct dirty_writer writer;
  memset(&writer, 0, sizeof writer);
  writer.shard = &f->shard;
  for (uint32_t k = 0; k < DIRTY_NAMES; k++) {
    snprintf(writer.names[k], sizeof writer.names[k], "d%u", k);
    uint32_t len = (uint32_t)strlen(writer.names[k]);
    writer.hash[k] = tally_shard_name_hash(&f->shard, writer.names[k], len);
    assert_int_equal(tally_shard_add(&f->shard, writer.names[k], len, writer.hash[k], 0), TALLY_OK);
  }
  uint32_t words = tally_shard_dirty_words(&f->shard);
  uint64_t *recheck = calloc(words, sizeof(uint64_t));
  int64_t *seen = calloc(f->shard.slots_count, sizeof(int64_t));
  assert_non_null(recheck);
  assert_non_null(seen);
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, dirty_writer_main, &writer), 0);
  uint32_t after_done = 0;
  while (after_done < 2) {
    bool done = __atomic_load_n(&writer.done, __ATOMIC_ACQUIRE);
    for (uint32_t w = 0; w < words; w++) {
      uint64_t taken = tally_shard_dirty_take(&f->shard, w);
      uint64_t bits = taken | recheck[w];
      recheck[w] = taken;
      while (bits != 0) {
        uint32_t slot = w * 64u + (uint32_t)__builtin_ctzll(bits);
        bits &= bits - 1u;
        seen[slot] = tally_shard_slot_value(&f->shard, slot);
      }
    }
    if (done) after_done++;
    sched_yield();
  }
  assert_int_equal(pthread_join(thread, NULL), 0);
  int64_t total = 0;
  for (uint32_t k = 0; k < DIRTY_NAMES; k++) {
    int64_t slot = find(&f->shard, writer.names[k]);
    assert_true(slot >= 0);
    assert_int_equal(seen[slot], tally_shard_slot_value(&f->shard, (uint32_t)slot));
    total += seen[slot];
  }
  assert_int_equal(total, DIRTY_ROUNDS);
  free(recheck);
  free(seen);
  tally_shard_dirty_close(&f->shard);
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
    cmocka_unit_test(test_probe_bound),
    cmocka_unit_test(test_old_collisions_spread),
    cmocka_unit_test(test_statsd_share_keeps_room_for_reliable),
    cmocka_unit_test(test_statsd_cannot_write_reliable_counter),
    cmocka_unit_test(test_reliable_takes_over_statsd_counter),
    cmocka_unit_test(test_recovery_recounts_statsd_share),
    cmocka_unit_test(test_set_class_keeps_share),
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
    cmocka_unit_test(test_redo_replay_moves_head),
    cmocka_unit_test(test_redo_replay_restores_all_runs),
    cmocka_unit_test(test_redo_replay_head_below),
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
    cmocka_unit_test(test_journal_attempt_round_trip),
    cmocka_unit_test(test_journal_unapplied_not_found),
    cmocka_unit_test(test_claims_only_for_applied_resends),
    cmocka_unit_test(test_claims_ring_wraps),
    cmocka_unit_test(test_claim_corrupt_refused),
    cmocka_unit_test(test_claim_recovered_after_crash),
    cmocka_unit_test(test_claims_survive_recovery),
    cmocka_unit_test(test_dedup_helpers),
    cmocka_unit_test(test_dedup_start_and_head),
    cmocka_unit_test(test_dedup_new_run_shifts),
    cmocka_unit_test(test_dedup_applied_and_in_head_over_runs),
    cmocka_unit_test(test_producer_read_and_at),
    cmocka_unit_test(test_producer_merge),
    cmocka_unit_test(test_producer_merge_far_apart),
    cmocka_unit_test(test_producer_merge_heads),
    cmocka_unit_test(test_producer_merge_head_below),
    cmocka_unit_test(test_producer_merge_runs),
    cmocka_unit_test(test_producer_merge_full),
    cmocka_unit_test(test_producer_merge_concurrent_reader),
    cmocka_unit_test(test_dirty_marks_every_write),
    cmocka_unit_test(test_dirty_take_loses_nothing),
    cmocka_unit_test(test_head_of_new_producer),
    cmocka_unit_test(test_head_stays_while_tail_slides),
    cmocka_unit_test(test_head_moves_on_gap),
    cmocka_unit_test(test_runs_shift_on_bounces),
    cmocka_unit_test(test_runs_out_of_order_in_current),
    cmocka_unit_test(test_head_out_of_order),
    cmocka_unit_test(test_head_below_first_out_of_order),
    cmocka_unit_test(test_head_below_first_saturated),
    cmocka_unit_test(test_corrupt_producer_head_quarantined),
    cmocka_unit_test(test_corrupt_producer_older_run_quarantined),
    cmocka_unit_test(test_crafted_producer_record_quarantined),
    cmocka_unit_test(test_per_burst_hooks_called),
    cmocka_unit_test(test_per_burst_record_durable_before_values),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
