/*
 * test_wal_crash.c — the write-ahead log's seeded crash-point harness (after
 * TigerBeetle's storage fault injection and ALICE): for each point, a fresh
 * simulated disk (control/persist/disk_sim.c) and a seed; random reliable
 * batches appended and group-committed, sometimes a checkpoint cut; the
 * power lost after a random number of I/O calls (mid-write, mid-sync,
 * mid-roll, mid-cut) in one of the simulator's modes (process kill, unsynced
 * writes dropped, a seeded subset of sectors kept, the last sector torn, a
 * synced bit rotted); recovery; then, against an independent model of what
 * was appended and acknowledged:
 *   - every record whose commit returned OK is delivered, exactly once;
 *   - records come back LSN by LSN, each byte-identical to what was appended
 *     with that LSN (nothing invented, nothing corrupt), and each decodes;
 *   - nothing beyond the acked prefix but a prefix of the group in flight;
 *   - the scan is torn exactly when bytes lie after the valid end, and
 *     scanning twice gives the same answer;
 *   - a rotted bit is CORRUPT naming its record's LSN, or (only when it is in
 *     the newest segment's last group) a torn tail cut just before it.
 * Several crash cycles per point: the log is reopened and written again.
 *
 * Points: TALLY_WAL_CRASH_POINTS (default 2000, the CI bound; raise it for a
 * soak), seeds from TALLY_TEST_SEED (default 1): prints both; a failure
 * prints the point's seed, and TALLY_TEST_SEED=<seed> TALLY_WAL_CRASH_POINTS=1
 * replays it alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "disk_sim.h"
#include "seeded.h"
#include "wal.h"
#include "wal_batch.h"

#define CRASH_POINTS_DEFAULT 2000u
#define MODEL_RECORDS_MAX 20000u
#define CYCLES_MAX 3u
#define OPERATIONS_MAX 400u

struct model_record {
  uint64_t durable_lsn;  /* of its group */
  uint64_t segment_lsn;
  uint64_t offset;
  uint32_t size;         /* record bytes on disk */
  uint32_t payload_size;
  uint8_t payload[TALLY_WAL_BATCH_SIZE_MAX];
};

/* What the harness knows, independently of the log's own bookkeeping. */
struct model {
  uint64_t rng;
  uint64_t seq;
  uint64_t appended_last; /* the highest LSN appended (acked or not) */
  uint64_t acked_last;    /* every LSN up to here had its commit return OK */
  uint64_t checkpoint;    /* a cut said the log may drop everything up to here */
  struct model_record records[MODEL_RECORDS_MAX + 1];
};

struct totals {
  uint64_t points, cycles, acked, torn, corrupt, rot_torn, rot_hidden;
  uint64_t by_mode[TALLY_DISK_SIM_MODE_COUNT];
};

static struct model model;
static struct totals totals;
static struct tally_wal_scanner *scanner;

static uint64_t next_random(void)
{
  return seeded_next(&model.rng);
}

/* ---- The workload ----------------------------------------------------------- */

/* A random valid batch (unique seq), encoded into payload; its size. */
static uint32_t random_batch(uint8_t *payload)
{
  static char names[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX];
  struct tally_wal_batch batch;
  memset(&batch, 0, sizeof batch);
  batch.producer = 1u + next_random() % 1000u;
  batch.seq = ++model.seq;
  batch.attempt = (uint16_t)(next_random() % 3u);
  batch.shard = (uint16_t)(next_random() % TALLY_LCORES_MAX);
  batch.batch_seq = model.seq;
  batch.dedup[0] = batch.seq + 63u; /* runs[0]: head_last .. window */
  batch.dedup[3] = batch.seq;
  batch.dedup[4] = 1u | next_random();
  bool big = next_random() % 16u == 0;
  batch.count = big ? TALLY_BATCH_PAIRS_MAX : 1u + (uint32_t)(next_random() % 4u);
  for (uint32_t i = 0; i < batch.count; i++) {
    uint32_t length = big ? TALLY_NAME_LEN_MAX : 3u + (uint32_t)(next_random() % 20u);
    for (uint32_t j = 0; j < length; j++) names[i][j] = (char)('a' + next_random() % 26u);
    batch.pairs[i] = (struct tally_wal_pair){
      .name = names[i], .name_len = length, .delta = (int64_t)next_random(),
      .value = (int64_t)next_random(),
    };
  }
  size_t size = tally_wal_batch_encode(&batch, payload, TALLY_WAL_BATCH_SIZE_MAX);
  assert_true(size > 0);
  return (uint32_t)size;
}

/* Appends one random batch, committing first when the log says FULL. false: the power is gone. */
static bool append_one(struct tally_wal *wal)
{
  uint64_t lsn = wal->lsn_next;
  assert_true(lsn <= MODEL_RECORDS_MAX);
  struct model_record *record = &model.records[lsn];
  uint64_t seq = model.seq;
  record->payload_size = random_batch(record->payload);
  struct tally_wal_appended appended;
  enum tally_wal_status status = tally_wal_append(wal, TALLY_WAL_TYPE_BATCH, record->payload,
    record->payload_size, &appended);
  if (status == TALLY_WAL_FULL) {
    if (tally_wal_commit(wal) != TALLY_WAL_OK) return false;
    model.acked_last = tally_wal_durable_lsn(wal);
    status = tally_wal_append(wal, TALLY_WAL_TYPE_BATCH, record->payload, record->payload_size,
      &appended);
  }
  if (status != TALLY_WAL_OK) {
    model.seq = seq;
    return false;
  }
  assert_int_equal(appended.lsn, lsn);
  record->durable_lsn = wal->lsn_durable;
  record->segment_lsn = appended.segment_lsn;
  record->offset = appended.offset;
  record->size = appended.size;
  model.appended_last = lsn;
  return true;
}

/* Groups of random batches, committed; sometimes a checkpoint cut. Runs until the power fails. */
static void workload(struct tally_wal *wal)
{
  for (uint32_t group = 0; group < 200u; group++) {
    uint32_t records = 1u + (uint32_t)(next_random() % 8u);
    for (uint32_t i = 0; i < records; i++) {
      if (!append_one(wal)) return;
    }
    if (tally_wal_commit(wal) != TALLY_WAL_OK) return;
    model.acked_last = tally_wal_durable_lsn(wal);
    if (next_random() % 10u == 0 && model.acked_last > model.checkpoint) {
      uint64_t lsn = model.checkpoint + next_random() % (model.acked_last - model.checkpoint + 1u);
      model.checkpoint = lsn; /* a checkpoint is durable before its cut starts */
      if (tally_wal_cut(wal, lsn) != TALLY_WAL_OK) return;
    }
  }
}

/* ---- The checks ------------------------------------------------------------- */

struct delivery {
  uint64_t seed;
  uint64_t count;
  uint64_t lsn_last;
};

static int check_record(void *context, const struct tally_wal_record *record)
{
  struct delivery *delivery = context;
  uint64_t lsn = record->lsn;
  if (lsn != delivery->lsn_last + 1u || lsn > model.appended_last) {
    fail_msg("seed %llu: LSN %llu delivered after %llu (appended up to %llu)",
      (unsigned long long)delivery->seed, (unsigned long long)lsn,
      (unsigned long long)delivery->lsn_last, (unsigned long long)model.appended_last);
  }
  const struct model_record *expected = &model.records[lsn];
  if (record->payload_size != expected->payload_size ||
    memcmp(record->payload, expected->payload, expected->payload_size) != 0) {
    fail_msg("seed %llu: LSN %llu delivered with bytes that were not appended",
      (unsigned long long)delivery->seed, (unsigned long long)lsn);
  }
  struct tally_wal_batch batch;
  assert_int_equal(tally_wal_batch_decode(record->payload, record->payload_size, &batch),
    TALLY_WAL_BATCH_OK);
  delivery->count++;
  delivery->lsn_last = lsn;
  return 0;
}

/* The record holding byte offset of segment segment_lsn, or 0. */
static uint64_t model_record_at(uint64_t segment_lsn, uint64_t offset)
{
  for (uint64_t lsn = 1; lsn <= model.acked_last; lsn++) {
    const struct model_record *record = &model.records[lsn];
    if (record->segment_lsn == segment_lsn && offset >= record->offset &&
      offset < record->offset + record->size) {
      return lsn;
    }
  }
  return 0;
}

/* What a rotted bit must do: 0 (nothing: outside what is read), or the LSN and whether torn. */
static uint64_t rot_expectation(const struct tally_disk_sim_report *report,
  const struct tally_wal_scan *scan, bool *torn)
{
  uint64_t segment_lsn;
  assert_true(tally_wal_segment_parse(report->rot_name, &segment_lsn));
  uint64_t lsn = model_record_at(segment_lsn, report->rot_offset);
  if (lsn == 0) fail_msg("rot at %s+%llu hit no acked record", report->rot_name,
    (unsigned long long)report->rot_offset);
  uint64_t newest = scan->segment_lsns[scan->segment_count - 1u];
  uint64_t first = 0;
  for (uint32_t i = 0; i < scan->segment_count; i++) {
    if (scan->segment_lsns[i] <= model.checkpoint + 1u) first = scan->segment_lsns[i];
  }
  if (segment_lsn < first) return 0;
  /* In the newest segment's last group, a rotted record reads as a torn tail, unless a
   * checkpoint already covers it: then the log ends before the checkpoint, CORRUPT. */
  *torn = segment_lsn == newest &&
    model.records[lsn].durable_lsn == model.records[model.acked_last].durable_lsn &&
    lsn > model.checkpoint;
  return lsn;
}

static void check_scan_shape(uint64_t seed, struct tally_disk_sim *sim,
  const struct tally_wal_scan *scan)
{
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, scan->tail_segment_lsn);
  int64_t size = tally_disk_sim_file_size(sim, name);
  assert_true(size >= 0);
  if (scan->torn != ((uint64_t)size > scan->tail_offset) ||
    (scan->torn && scan->torn_bytes != (uint64_t)size - scan->tail_offset)) {
    fail_msg("seed %llu: torn %d but %llu bytes after the end at %llu", (unsigned long long)seed,
      scan->torn, (unsigned long long)size, (unsigned long long)scan->tail_offset);
  }
}

/* Scans twice (same answer), then replays and checks every record. false: the point ends. */
static bool recover_and_check(uint64_t seed, struct tally_disk_sim *sim, struct tally_disk *disk,
  const struct tally_disk_sim_report *report, struct tally_wal_scan *scan)
{
  struct tally_wal_scan again;
  enum tally_wal_status status = tally_wal_scan(scanner, disk, model.checkpoint + 1u, scan);
  assert_int_equal(tally_wal_scan(scanner, disk, model.checkpoint + 1u, &again), status);
  assert_true(again.lsn_last == scan->lsn_last && again.corrupt_lsn == scan->corrupt_lsn);
  assert_true(again.torn == scan->torn && again.torn_bytes == scan->torn_bytes);
  status = tally_wal_scan(scanner, disk, model.checkpoint + 1u, scan);
  bool torn_by_rot = false;
  uint64_t rot_lsn = report->rotted ? rot_expectation(report, scan, &torn_by_rot) : 0;
  if (rot_lsn != 0 && !torn_by_rot) {
    if (status != TALLY_WAL_CORRUPT || scan->corrupt_lsn != rot_lsn) {
      fail_msg("seed %llu: rot in LSN %llu: status %s, corrupt_lsn %llu (%s)",
        (unsigned long long)seed, (unsigned long long)rot_lsn, tally_wal_status_name(status),
        (unsigned long long)scan->corrupt_lsn, scan->error);
    }
    totals.corrupt++;
    return false;
  }
  if (status != TALLY_WAL_OK) {
    fail_msg("seed %llu, mode %s: recovery failed: %s", (unsigned long long)seed,
      tally_disk_sim_mode_name(report->mode), scan->error);
  }
  if (report->rotted && rot_lsn == 0) totals.rot_hidden++;
  uint64_t acked_needed = torn_by_rot ? rot_lsn - 1u : model.acked_last;
  if (torn_by_rot && (scan->lsn_last != rot_lsn - 1u || !scan->torn)) {
    fail_msg("seed %llu: rot in the last group at LSN %llu, but the log ends at %llu",
      (unsigned long long)seed, (unsigned long long)rot_lsn, (unsigned long long)scan->lsn_last);
  }
  if (scan->lsn_last < acked_needed) {
    fail_msg("seed %llu, mode %s: acked up to LSN %llu, recovered up to %llu",
      (unsigned long long)seed, tally_disk_sim_mode_name(report->mode),
      (unsigned long long)acked_needed, (unsigned long long)scan->lsn_last);
  }
  check_scan_shape(seed, sim, scan);
  struct delivery delivery = {.seed = seed, .lsn_last = model.checkpoint};
  char error[256] = "";
  assert_int_equal(tally_wal_replay(scanner, disk, scan, check_record, &delivery, error,
    sizeof error), TALLY_WAL_OK);
  assert_int_equal(delivery.lsn_last, scan->lsn_last);
  assert_int_equal(delivery.count, scan->records);
  totals.torn += scan->torn;
  totals.rot_torn += torn_by_rot;
  return true;
}

/* ---- One crash point ---------------------------------------------------------- */

static void run_point(uint64_t seed)
{
  memset(&model, 0, offsetof(struct model, records));
  model.rng = seed;
  struct tally_disk_sim *sim = tally_disk_sim_create(seed);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  enum tally_disk_sim_mode mode = (enum tally_disk_sim_mode)(seed % TALLY_DISK_SIM_MODE_COUNT);
  struct tally_wal_options options = {
    .segment_size = TALLY_WAL_SEGMENT_SIZE_MIN,
    .group_size = TALLY_WAL_GROUP_SIZE_MIN + (uint32_t)(next_random() % 4u) * 8192u,
  };
  struct tally_wal_scan scan;
  assert_int_equal(tally_wal_scan(scanner, &disk, 1, &scan), TALLY_WAL_OK);
  uint32_t cycles = 1u + (uint32_t)(next_random() % CYCLES_MAX);
  for (uint32_t cycle = 0; cycle < cycles; cycle++) {
    struct tally_wal wal;
    char error[256] = "";
    if (tally_wal_open(&wal, &disk, &options, &scan, error, sizeof error) != 0) {
      fail_msg("seed %llu: open after recovery: %s", (unsigned long long)seed, error);
    }
    model.acked_last = tally_wal_durable_lsn(&wal); /* open synced what recovery found */
    model.appended_last = model.acked_last;
    tally_disk_sim_fail_after(sim, next_random() % OPERATIONS_MAX);
    workload(&wal);
    if (tally_disk_sim_powered(sim)) tally_disk_sim_fail_after(sim, 0);
    tally_wal_close(&wal);
    struct tally_disk_sim_report report;
    tally_disk_sim_crash(sim, mode, next_random(), &report);
    totals.cycles++;
    totals.acked += model.acked_last;
    if (!recover_and_check(seed, sim, &disk, &report, &scan)) break;
  }
  totals.points++;
  totals.by_mode[mode]++;
  tally_disk_sim_destroy(sim);
}

static void test_crash_points(void **state)
{
  (void)state;
  uint64_t points = seeded_env_number("TALLY_WAL_CRASH_POINTS", CRASH_POINTS_DEFAULT);
  uint64_t base = seeded_env_number("TALLY_TEST_SEED", 1);
  printf("wal crash harness: %llu points from seed %llu (TALLY_WAL_CRASH_POINTS, TALLY_TEST_SEED)\n",
    (unsigned long long)points, (unsigned long long)base);
  scanner = tally_wal_scanner_create();
  assert_non_null(scanner);
  for (uint64_t point = 0; point < points; point++) run_point(base + point);
  tally_wal_scanner_destroy(scanner);
  printf("wal crash harness: %llu points, %llu crashes, %llu acked records checked; "
    "torn tails %llu, corrupt %llu, rot in the last group %llu, rot behind a checkpoint %llu\n",
    (unsigned long long)totals.points, (unsigned long long)totals.cycles,
    (unsigned long long)totals.acked, (unsigned long long)totals.torn,
    (unsigned long long)totals.corrupt, (unsigned long long)totals.rot_torn,
    (unsigned long long)totals.rot_hidden);
  /* The harness must have exercised what it claims to (at CI size and above). */
  if (points >= 500) {
    assert_true(totals.torn > 0);
    assert_true(totals.corrupt > 0);
    assert_true(totals.rot_torn > 0);
    for (uint32_t mode = 0; mode < TALLY_DISK_SIM_MODE_COUNT; mode++) {
      assert_true(totals.by_mode[mode] > 0);
    }
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crash_points),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
