/*
 * test_wal.c — unit tests of the write-ahead log (control/persist/wal.c,
 * wal_scan.c) and its I/O backends (disk_io.c, disk_sim.c): append, commit
 * and replay round trips on the simulator and on a real directory; one
 * sync per group; segments rolled at their size and cut behind a
 * checkpoint; recovery's rules one by one (a torn tail dropped and
 * truncated; damage before the tail, a gap, a wrong LSN, a missing start
 * all CORRUPT with the LSN named; scanning twice gives the same answer);
 * a failed sync refusing everything after it; the simulator's crash modes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk_sim.h"
#include "wal.h"

struct fixture {
  struct tally_disk_sim *sim;
  struct tally_disk disk;
  struct tally_wal_scanner *scanner;
  struct tally_wal_scan scan;
  struct tally_wal wal;
  struct tally_wal_options options;
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->sim = tally_disk_sim_create(11);
  f->scanner = tally_wal_scanner_create();
  assert_non_null(f->sim);
  assert_non_null(f->scanner);
  tally_disk_sim_bind(f->sim, &f->disk);
  f->options.segment_size = TALLY_WAL_SEGMENT_SIZE_MIN;
  f->options.group_size = TALLY_WAL_GROUP_SIZE_MIN;
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tally_wal_scanner_destroy(f->scanner);
  tally_disk_sim_destroy(f->sim);
  free(f);
  return 0;
}

/* Scans from from_lsn and opens the writer; the scan must be OK. */
static void recover_open(struct fixture *f, uint64_t from_lsn)
{
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, from_lsn, &f->scan), TALLY_WAL_OK);
  char error[256] = "";
  assert_int_equal(tally_wal_open(&f->wal, &f->disk, &f->options, &f->scan, error, sizeof error), 0);
}

/* A payload whose bytes say which LSN it is meant for. */
static uint32_t payload_for(uint64_t lsn, uint8_t *out)
{
  uint32_t size = (uint32_t)(lsn * 37u % 300u) + 8u;
  for (uint32_t i = 0; i < size; i++) out[i] = (uint8_t)(lsn * 7u + i);
  return size;
}

/* Appends and commits count records, groups of group_records. */
static void append_records(struct fixture *f, uint64_t count, uint32_t group_records)
{
  uint8_t payload[512];
  for (uint64_t i = 0; i < count; i++) {
    uint64_t lsn = f->wal.lsn_next;
    uint32_t size = payload_for(lsn, payload);
    struct tally_wal_appended appended;
    enum tally_wal_status status = tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, size,
      &appended);
    if (status == TALLY_WAL_FULL) {
      assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
      status = tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, size, &appended);
    }
    assert_int_equal(status, TALLY_WAL_OK);
    assert_int_equal(appended.lsn, lsn);
    if ((i + 1) % group_records == 0) assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
  }
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
}

struct collected {
  uint64_t count;
  uint64_t lsn_first;
  uint64_t lsn_last;
  uint64_t stop_at;
};

static int collect(void *context, const struct tally_wal_record *record)
{
  struct collected *collected = context;
  uint8_t expected[512];
  uint32_t size = payload_for(record->lsn, expected);
  assert_int_equal(record->payload_size, size);
  assert_memory_equal(record->payload, expected, size);
  if (collected->count == 0) collected->lsn_first = record->lsn;
  else assert_int_equal(record->lsn, collected->lsn_last + 1);
  collected->lsn_last = record->lsn;
  collected->count++;
  return collected->stop_at != 0 && record->lsn == collected->stop_at;
}

static struct collected replay(struct fixture *f)
{
  struct collected collected = {0};
  char error[256] = "";
  assert_int_equal(tally_wal_replay(f->scanner, &f->disk, &f->scan, collect, &collected, error,
    sizeof error), TALLY_WAL_OK);
  assert_int_equal(collected.count, f->scan.records);
  return collected;
}

static void reopen_and_replay(struct fixture *f, uint64_t from_lsn, uint64_t lsn_last)
{
  recover_open(f, from_lsn);
  assert_int_equal(f->scan.lsn_last, lsn_last);
  struct collected collected = replay(f);
  if (lsn_last >= from_lsn) {
    assert_int_equal(collected.lsn_first, from_lsn);
    assert_int_equal(collected.lsn_last, lsn_last);
  }
}

static void test_round_trip(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  assert_int_equal(f->scan.records, 0);
  assert_int_equal(f->wal.lsn_next, 1);
  uint64_t operations = tally_disk_sim_operations(f->sim);
  append_records(f, 40, 8);
  /* One write and one sync per group: 5 groups. */
  assert_int_equal(tally_disk_sim_operations(f->sim) - operations, 10);
  assert_int_equal(f->wal.commits, 5);
  assert_int_equal(tally_wal_durable_lsn(&f->wal), 40);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, 1, 40);
  assert_false(f->scan.torn);
  append_records(f, 10, 3); /* the log goes on after a reopen */
  tally_wal_close(&f->wal);
  reopen_and_replay(f, 1, 50);
  tally_wal_close(&f->wal);
  /* A visitor may stop the replay. */
  struct collected collected = {.stop_at = 20};
  char error[128];
  assert_int_equal(tally_wal_replay(f->scanner, &f->disk, &f->scan, collect, &collected, error,
    sizeof error), TALLY_WAL_STOPPED);
  assert_int_equal(collected.count, 20);
}

static void test_full_and_options(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  static uint8_t payload[TALLY_WAL_PAYLOAD_SIZE_MAX];
  /* A minimal group holds one largest record; the second says FULL until a commit. */
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, sizeof payload, NULL),
    TALLY_WAL_OK);
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, 1, NULL), TALLY_WAL_FULL);
  assert_int_equal(tally_wal_durable_lsn(&f->wal), 0);
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, 1, NULL), TALLY_WAL_OK);
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
  assert_int_equal(tally_wal_durable_lsn(&f->wal), 2);
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK); /* nothing to do */
  tally_wal_close(&f->wal);
  /* Options out of range are refused, naming them. */
  struct tally_wal_options bad[] = {
    {TALLY_WAL_SEGMENT_SIZE_MIN - 8, TALLY_WAL_GROUP_SIZE_MIN},
    {TALLY_WAL_SEGMENT_SIZE_MAX + 8ull, TALLY_WAL_GROUP_SIZE_MIN},
    {TALLY_WAL_SEGMENT_SIZE_MIN + 4, TALLY_WAL_GROUP_SIZE_MIN},
    {TALLY_WAL_SEGMENT_SIZE_MIN, TALLY_WAL_GROUP_SIZE_MIN - 1},
    {TALLY_WAL_SEGMENT_SIZE_MAX, TALLY_WAL_GROUP_SIZE_MAX + 1},
    {TALLY_WAL_SEGMENT_SIZE_MIN, TALLY_WAL_SEGMENT_SIZE_MIN + 8},
  };
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_OK);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char error[256] = "";
    assert_int_equal(tally_wal_open(&f->wal, &f->disk, &bad[i], &f->scan, error, sizeof error),
      -EINVAL);
    assert_non_null(strstr(error, "log options out of range"));
  }
  struct tally_wal_options defaults;
  tally_wal_options_default(&defaults);
  assert_int_equal(defaults.segment_size, TALLY_WAL_SEGMENT_SIZE_DEFAULT);
  assert_int_equal(defaults.group_size, TALLY_WAL_GROUP_SIZE_DEFAULT);
}

static void test_segments_roll_and_cut(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  append_records(f, 2000, 16); /* ~400 KB: several 64 KiB segments */
  uint32_t segments = f->wal.segment_count;
  assert_true(segments >= 5);
  for (uint32_t i = 0; i < segments; i++) {
    char name[TALLY_DISK_NAME_SIZE_MAX];
    tally_wal_segment_name(name, f->wal.segment_lsns[i]);
    int64_t size = tally_disk_sim_file_size(f->sim, name);
    assert_true(size > 0 && size <= (int64_t)TALLY_WAL_SEGMENT_SIZE_MIN);
  }
  /* Cut behind a checkpoint at LSN c: segments wholly <= c go, the one holding c + 1 stays. */
  uint64_t c = f->wal.segment_lsns[3] + 5;
  assert_int_equal(tally_wal_cut(&f->wal, c), TALLY_WAL_OK);
  assert_int_equal(f->wal.segment_count, segments - 3);
  assert_true(f->wal.segment_lsns[0] <= c + 1);
  assert_int_equal(tally_wal_cut(&f->wal, c), TALLY_WAL_OK); /* again: nothing more */
  assert_int_equal(f->wal.segment_count, segments - 3);
  /* A cut exactly at a segment's end removes it too. */
  uint64_t end = f->wal.segment_lsns[1] - 1;
  assert_int_equal(tally_wal_cut(&f->wal, end), TALLY_WAL_OK);
  assert_int_equal(f->wal.segment_count, segments - 4);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, end + 1, 2000);
  /* The log no longer holds LSN 1: scanning from it is CORRUPT, naming LSN 1. */
  tally_wal_close(&f->wal);
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 1);
  /* Cutting everything keeps the newest segment. */
  recover_open(f, end + 1);
  assert_int_equal(tally_wal_cut(&f->wal, 2000), TALLY_WAL_OK);
  assert_int_equal(f->wal.segment_count, 1);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, 2001, 2000);
  tally_wal_close(&f->wal);
  /* A checkpoint past the end of the log: CORRUPT. */
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 2002, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 2001);
}

/* The newest segment's name and size. */
static int64_t newest(struct fixture *f, char *name)
{
  tally_wal_segment_name(name, f->wal.segment_lsns[f->wal.segment_count - 1]);
  return tally_disk_sim_file_size(f->sim, name);
}

static void test_torn_tail(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  append_records(f, 30, 10);
  char name[TALLY_DISK_NAME_SIZE_MAX];
  int64_t size = newest(f, name);
  /* The last record loses its last byte (a torn write): LSN 30 is dropped, torn. */
  struct tally_disk disk = f->disk;
  int file = disk.ops->open(disk.context, name, false);
  assert_int_equal(disk.ops->truncate(disk.context, file, (uint64_t)size - 1), 0);
  tally_wal_close(&f->wal);
  for (int pass = 0; pass < 2; pass++) { /* twice: the same answer, nothing written */
    uint64_t operations = tally_disk_sim_operations(f->sim);
    assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_OK);
    assert_int_equal(tally_disk_sim_operations(f->sim), operations);
    assert_int_equal(f->scan.lsn_last, 29);
    assert_true(f->scan.torn);
    assert_int_equal(f->scan.torn_records, 0);
    assert_int_equal(f->scan.torn_bytes + f->scan.tail_offset, (uint64_t)size - 1);
  }
  /* Opening cuts the torn bytes; the log goes on from LSN 30 and is whole again. */
  char error[256];
  assert_int_equal(tally_wal_open(&f->wal, &f->disk, &f->options, &f->scan, error, sizeof error), 0);
  assert_int_equal(tally_disk_sim_file_size(f->sim, name), (int64_t)f->scan.tail_offset);
  append_records(f, 5, 5);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, 1, 34);
  assert_false(f->scan.torn);
  tally_wal_close(&f->wal);
}

/* Flips a byte of the record at LSN lsn (found by its position when appended). */
static void damage(struct fixture *f, const struct tally_wal_appended *at, uint32_t delta)
{
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, at->segment_lsn);
  assert_int_equal(tally_disk_sim_corrupt(f->sim, name, at->offset + delta, 0x10), 0);
}

static void test_damage_before_tail_is_an_error(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  uint8_t payload[64] = {1};
  struct tally_wal_appended at[12];
  for (int i = 0; i < 12; i++) {
    assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, 64, &at[i]),
      TALLY_WAL_OK);
    if (i % 4 == 3) assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_OK);
  }
  tally_wal_close(&f->wal);
  /* LSN 6, in the middle of the second group: the third group proves it durable. */
  damage(f, &at[5], 50);
  for (int pass = 0; pass < 2; pass++) {
    assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_CORRUPT);
    assert_int_equal(f->scan.corrupt_lsn, 6);
    assert_non_null(strstr(f->scan.error, "LSN 6 is damaged"));
  }
  char error[256] = "";
  assert_int_equal(tally_wal_open(&f->wal, &f->disk, &f->options, &f->scan, error, sizeof error),
    -EINVAL);
  assert_non_null(strstr(error, "did not recover"));
  damage(f, &at[5], 50); /* healed */
  /* LSN 11 in the last group, with LSN 12 after it: indistinguishable from a torn write. */
  damage(f, &at[10], 3);
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_OK);
  assert_int_equal(f->scan.lsn_last, 10);
  assert_true(f->scan.torn);
  assert_int_equal(f->scan.torn_records, 1);
}

static void test_damage_in_older_segment(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  uint8_t payload[1000] = {2};
  struct tally_wal_appended first;
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, 1000, &first),
    TALLY_WAL_OK);
  append_records(f, 400, 50);
  assert_true(f->wal.segment_count >= 2);
  tally_wal_close(&f->wal);
  /* Even in the last record of the oldest segment's group: newer segments follow. */
  damage(f, &first, 900);
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 1);
  assert_non_null(strstr(f->scan.error, "newer segments follow"));
}

static void test_gap_and_wrong_lsn(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  append_records(f, 1500, 40);
  assert_true(f->wal.segment_count >= 3);
  uint64_t second = f->wal.segment_lsns[1];
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, second);
  tally_wal_close(&f->wal);
  /* A middle segment gone: CORRUPT at its first LSN. */
  assert_int_equal(f->disk.ops->unlink(f->disk.context, name), 0);
  assert_int_equal(tally_wal_scan(f->scanner, &f->disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, second);
  assert_non_null(strstr(f->scan.error, "missing"));
  /* A whole valid record with the wrong LSN (a misdirected write): CORRUPT. */
  struct tally_disk_sim *sim = tally_disk_sim_create(3);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  int file = disk.ops->open(disk.context, "wal-0000000000000001.log", true);
  uint8_t record[TALLY_WAL_RECORD_HEADER_SIZE + 8];
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 1, 0, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, 0), 0);
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 3, 1, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, sizeof record), 0);
  assert_int_equal(tally_wal_scan(f->scanner, &disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 2);
  /* durable_lsn going back: CORRUPT at that record. */
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 2, 0, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, 0), 0);
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 1, 0, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, 0), 0);
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 2, 1, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, sizeof record), 0);
  tally_wal_record_encode(record, TALLY_WAL_TYPE_BATCH, 3, 0, "abcdefgh", 8);
  assert_int_equal(disk.ops->write(disk.context, file, record, sizeof record, 2 * sizeof record), 0);
  assert_int_equal(tally_wal_scan(f->scanner, &disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 3);
  /* A segment named after LSN 5 alone, scanned from 1: the log does not hold LSN 1. */
  tally_disk_sim_destroy(sim);
  sim = tally_disk_sim_create(4);
  tally_disk_sim_bind(sim, &disk);
  assert_true(disk.ops->open(disk.context, "wal-0000000000000005.log", true) >= 0);
  assert_int_equal(tally_wal_scan(f->scanner, &disk, 1, &f->scan), TALLY_WAL_CORRUPT);
  assert_int_equal(f->scan.corrupt_lsn, 1);
  assert_int_equal(tally_wal_scan(f->scanner, &disk, 5, &f->scan), TALLY_WAL_OK);
  assert_int_equal(f->scan.lsn_last, 4);
  tally_disk_sim_destroy(sim);
}

static void test_failed_sync_is_final(void **state)
{
  struct fixture *f = *state;
  recover_open(f, 1);
  append_records(f, 10, 10);
  uint8_t payload[512];
  uint32_t size = payload_for(11, payload);
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, size, NULL), TALLY_WAL_OK);
  tally_disk_sim_fail_after(f->sim, 1); /* the write passes, the sync fails */
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_IO_ERROR);
  assert_true(f->wal.failed);
  assert_int_equal(f->wal.error, -EIO);
  assert_int_equal(tally_wal_durable_lsn(&f->wal), 10);
  struct tally_disk_sim_report report;
  tally_disk_sim_crash(f->sim, TALLY_DISK_SIM_PROCESS, 1, &report); /* power back */
  assert_int_equal(tally_wal_commit(&f->wal), TALLY_WAL_IO_ERROR); /* never retried */
  assert_int_equal(tally_wal_append(&f->wal, TALLY_WAL_TYPE_BATCH, payload, size, NULL),
    TALLY_WAL_IO_ERROR);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, 1, 11); /* the page cache kept it (kill -9) */
  tally_wal_close(&f->wal);
}

static void test_sim_modes(void **state)
{
  (void)state;
  struct tally_disk_sim *sim = tally_disk_sim_create(5);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  int file = disk.ops->open(disk.context, "a", true);
  uint8_t bytes[2048];
  memset(bytes, 0xaa, sizeof bytes);
  assert_int_equal(disk.ops->write(disk.context, file, bytes, 1024, 0), 0);
  assert_int_equal(disk.ops->sync(disk.context, file), 0);
  assert_int_equal(disk.ops->sync_dir(disk.context), 0);
  memset(bytes, 0xbb, sizeof bytes);
  assert_int_equal(disk.ops->write(disk.context, file, bytes, 2048, 1024), 0);
  assert_true(disk.ops->open(disk.context, "b", true) >= 0);
  struct tally_disk_sim_report report;
  tally_disk_sim_crash(sim, TALLY_DISK_SIM_DROP, 1, &report);
  assert_int_equal(report.writes_unsynced, 1);
  assert_int_equal(report.names_unsynced, 1);
  assert_int_equal(tally_disk_sim_file_size(sim, "a"), 1024);
  assert_int_equal(tally_disk_sim_file_size(sim, "b"), -ENOENT);
  file = disk.ops->open(disk.context, "a", false);
  assert_int_equal(disk.ops->write(disk.context, file, bytes, 2048, 1024), 0);
  tally_disk_sim_crash(sim, TALLY_DISK_SIM_TORN, 2, &report);
  assert_true(report.torn);
  assert_string_equal(report.torn_name, "a");
  assert_int_equal(report.torn_offset, 2560);
  int64_t size = tally_disk_sim_file_size(sim, "a");
  assert_true(size >= 2560 && size <= 3072);
  file = disk.ops->open(disk.context, "a", false);
  uint8_t read_back[3072];
  assert_int_equal(disk.ops->read(disk.context, file, read_back, sizeof read_back, 0), size);
  for (int i = 1024; i < 2560; i++) assert_int_equal(read_back[i], 0xbb);
  tally_disk_sim_crash(sim, TALLY_DISK_SIM_ROT, 3, &report);
  assert_true(report.rotted);
  assert_string_equal(report.rot_name, "a");
  assert_int_equal(disk.ops->read(disk.context, file, bytes, sizeof bytes, 0), size > 2048 ? 2048 : size);
  /* Power loss mid-run: the failing call and all after it get -EIO, recorded nowhere. */
  tally_disk_sim_fail_after(sim, 0);
  assert_int_equal(disk.ops->write(disk.context, file, bytes, 10, 0), -EIO);
  assert_false(tally_disk_sim_powered(sim));
  assert_int_equal(disk.ops->read(disk.context, file, bytes, 10, 0), -EIO);
  tally_disk_sim_crash(sim, TALLY_DISK_SIM_PROCESS, 4, &report);
  assert_int_equal(report.writes_unsynced, 0);
  assert_string_equal(tally_disk_sim_mode_name(TALLY_DISK_SIM_SUBSET), "subset");
  tally_disk_sim_destroy(sim);
}

static void test_posix_backend(void **state)
{
  struct fixture *f = *state;
  char path[] = "/tmp/tally-wal-test-XXXXXX";
  assert_non_null(mkdtemp(path));
  char directory[sizeof path + 8];
  snprintf(directory, sizeof directory, "%s/log", path);
  struct tally_disk_posix posix;
  char error[256] = "";
  assert_int_equal(tally_disk_posix_open(&f->disk, &posix, directory, error, sizeof error), 0);
  recover_open(f, 1);
  append_records(f, 700, 64);
  assert_true(f->wal.segment_count >= 2);
  uint64_t second = f->wal.segment_lsns[1];
  assert_int_equal(tally_wal_cut(&f->wal, second), TALLY_WAL_OK);
  uint64_t oldest = f->wal.segment_lsns[0];
  assert_int_equal(oldest, second);
  tally_wal_close(&f->wal);
  reopen_and_replay(f, oldest, 700);
  uint32_t segments = f->wal.segment_count;
  tally_wal_close(&f->wal);
  /* Remove every file, then the directories. */
  char names[8][TALLY_DISK_NAME_SIZE_MAX];
  int count = f->disk.ops->list(f->disk.context, names, 8);
  assert_int_equal(count, (int)segments);
  assert_int_equal(f->disk.ops->list(f->disk.context, names, (uint32_t)count - 1), -E2BIG);
  for (int i = 0; i < count; i++) assert_int_equal(f->disk.ops->unlink(f->disk.context, names[i]), 0);
  tally_disk_posix_close(&posix);
  assert_int_equal(rmdir(directory), 0);
  assert_int_equal(rmdir(path), 0);
  assert_int_equal(tally_disk_posix_open(&f->disk, &posix, "/proc/no/such/dir", error, sizeof error),
    -ENOENT);
  assert_non_null(strstr(error, "cannot create the log directory"));
  assert_false(tally_disk_name_valid("a/b"));
  assert_false(tally_disk_name_valid(".."));
  assert_true(tally_disk_name_valid("wal-0000000000000001.log"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
    cmocka_unit_test_setup_teardown(test_full_and_options, setup, teardown),
    cmocka_unit_test_setup_teardown(test_segments_roll_and_cut, setup, teardown),
    cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
    cmocka_unit_test_setup_teardown(test_damage_before_tail_is_an_error, setup, teardown),
    cmocka_unit_test_setup_teardown(test_damage_in_older_segment, setup, teardown),
    cmocka_unit_test_setup_teardown(test_gap_and_wrong_lsn, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_sync_is_final, setup, teardown),
    cmocka_unit_test(test_sim_modes),
    cmocka_unit_test_setup_teardown(test_posix_backend, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
