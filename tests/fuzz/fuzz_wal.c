/*
 * fuzz_wal.c — libFuzzer target of the write-ahead log's readers
 * (control/persist/wal_record.c, wal_batch.c, wal_scan.c): what recovery
 * reads back from a disk is untrusted.
 *
 * Every input is checked as one record and decoded as one batch payload
 * (version 2: shard, batch_seq, dedup state, value after each pair):
 * whatever passes holds what replay relies on and must re-encode to
 * exactly the same bytes; decoded as a cluster record's payload (type 4:
 * replica values, records, held sequences, keeper claims), whatever passes
 * re-encodes item by item to the same bytes. Then it becomes
 * the only segment of a simulated disk and is scanned (twice: the same
 * answer), replayed, reopened, appended to, and scanned again.
 *
 * When the first byte is odd, the input instead describes a log: records
 * with payloads cut from the input (so their checksums are right), split in
 * groups, then the segment truncated and one byte flipped where the input
 * says. The oracle is exact: with nothing changed every record comes back;
 * truncated, the whole records before the cut come back and the rest is a
 * torn tail; with a flipped byte, recovery either names the damaged LSN as
 * CORRUPT or ends the log before it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "disk_sim.h"
#include "wal.h"
#include "wal_batch.h"
#include "wal_cluster.h"

#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

#define FUZZ_RECORDS_MAX 64u
#define FUZZ_SEGMENT "wal-0000000000000001.log"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tally_wal_scanner *scanner;
static uint8_t encoded[TALLY_WAL_RECORD_SIZE_MAX];
static uint8_t segment[FUZZ_RECORDS_MAX * TALLY_WAL_RECORD_SIZE_MAX];

static void check_one_record(const uint8_t *data, size_t size)
{
  struct tally_wal_record record;
  if (tally_wal_record_check(data, size, &record) != TALLY_WAL_RECORD_VALID) return;
  FUZZ_CHECK(record.size <= size && record.size <= TALLY_WAL_RECORD_SIZE_MAX);
  tally_wal_record_encode(encoded, record.type, record.lsn, record.durable_lsn, record.payload,
    record.payload_size);
  FUZZ_CHECK(memcmp(encoded, data, record.size) == 0);
}

static void check_one_batch(const uint8_t *data, size_t size)
{
  static struct tally_wal_batch batch;
  if (tally_wal_batch_decode(data, size, &batch) != TALLY_WAL_BATCH_OK) return;
  /* What replay relies on (version 2): a shard, a batch sequence, a current run. */
  FUZZ_CHECK(batch.shard < TALLY_LCORES_MAX && batch.batch_seq >= 1u);
  FUZZ_CHECK(batch.dedup[0] != 0 && (batch.dedup[4] & 1u) != 0);
  FUZZ_CHECK(batch.count >= 1u && batch.count <= TALLY_BATCH_PAIRS_MAX);
  FUZZ_CHECK(tally_wal_batch_encode(&batch, encoded, sizeof encoded) == size);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);
}

static void check_one_cluster(const uint8_t *data, size_t size)
{
  if (tally_wal_cluster_check(data, size) != TALLY_WAL_CLUSTER_OK) return;
  struct tally_wal_cluster_writer writer;
  static uint8_t cluster[TALLY_WAL_PAYLOAD_SIZE_MAX];
  if (size > sizeof cluster) return; /* valid, but more than one record holds */
  tally_wal_cluster_writer_init(&writer, cluster, sizeof cluster);
  size_t offset = 0;
  struct tally_wal_cluster_item item;
  while (tally_wal_cluster_next(data, size, &offset, &item)) {
    FUZZ_CHECK(item.kind >= TALLY_WAL_CLUSTER_VALUE && item.kind < TALLY_WAL_CLUSTER_KIND_END);
    FUZZ_CHECK(tally_wal_cluster_item_size(&item) != 0);
    FUZZ_CHECK(tally_wal_cluster_add(&writer, &item));
  }
  FUZZ_CHECK(offset == size);
  FUZZ_CHECK(tally_wal_cluster_finish(&writer) == size);
  FUZZ_CHECK(memcmp(cluster, data, size) == 0);
}

static int count_record(void *context, const struct tally_wal_record *record)
{
  uint64_t *count = context;
  FUZZ_CHECK(record->lsn == *count + 1u);
  (*count)++;
  return 0;
}

/* Scans twice, replays, reopens, appends one record and scans again. Returns the first scan. */
static struct tally_wal_scan scan_and_reuse(struct tally_disk_sim *sim, struct tally_disk *disk)
{
  struct tally_wal_scan scan, again;
  enum tally_wal_status status = tally_wal_scan(scanner, disk, 1, &scan);
  FUZZ_CHECK(status == TALLY_WAL_OK || status == TALLY_WAL_CORRUPT);
  FUZZ_CHECK(tally_wal_scan(scanner, disk, 1, &again) == status);
  FUZZ_CHECK(again.lsn_last == scan.lsn_last && again.corrupt_lsn == scan.corrupt_lsn);
  if (status != TALLY_WAL_OK) return scan;
  uint64_t count = 0;
  char error[256];
  FUZZ_CHECK(tally_wal_replay(scanner, disk, &scan, count_record, &count, error, sizeof error) ==
    TALLY_WAL_OK);
  FUZZ_CHECK(count == scan.lsn_last);
  struct tally_wal wal;
  struct tally_wal_options options = {TALLY_WAL_SEGMENT_SIZE_MIN, TALLY_WAL_GROUP_SIZE_MIN};
  FUZZ_CHECK(tally_wal_open(&wal, disk, &options, &scan, error, sizeof error) == 0);
  status = tally_wal_append(&wal, TALLY_WAL_TYPE_BATCH, "fuzz", 4, NULL);
  if (status == TALLY_WAL_OK) FUZZ_CHECK(tally_wal_commit(&wal) == TALLY_WAL_OK);
  tally_wal_close(&wal);
  (void)sim;
  FUZZ_CHECK(tally_wal_scan(scanner, disk, 1, &again) == TALLY_WAL_OK);
  FUZZ_CHECK(!again.torn);
  FUZZ_CHECK(again.lsn_last == scan.lsn_last + (status == TALLY_WAL_OK));
  return scan;
}

static struct tally_disk_sim *disk_with(const uint8_t *bytes, size_t size, struct tally_disk *disk)
{
  struct tally_disk_sim *sim = tally_disk_sim_create(1);
  FUZZ_CHECK(sim != NULL);
  tally_disk_sim_bind(sim, disk);
  int file = disk->ops->open(disk->context, FUZZ_SEGMENT, true);
  FUZZ_CHECK(file >= 0);
  FUZZ_CHECK(disk->ops->write(disk->context, file, bytes, size, 0) == 0);
  return sim;
}

/* Structured mode: records from the input, then a cut and a flipped byte. */
static void fuzz_log(const uint8_t *data, size_t size)
{
  if (size < 6) return;
  uint32_t cut = (uint32_t)(data[1] | (data[2] << 8));
  uint32_t flip = (uint32_t)(data[3] | (data[4] << 8));
  uint8_t mask = data[5];
  size_t at = 6, used = 0;
  uint64_t lsn = 0, durable = 0, ends[FUZZ_RECORDS_MAX + 1] = {0};
  while (at < size && lsn < FUZZ_RECORDS_MAX) {
    uint32_t length = data[at] & 0x7fu;
    bool group_end = (data[at] & 0x80u) != 0;
    at++;
    if (length > size - at) length = (uint32_t)(size - at);
    tally_wal_record_encode(segment + used, TALLY_WAL_TYPE_BATCH, ++lsn, durable, data + at, length);
    used += tally_wal_record_size(length);
    ends[lsn] = used;
    at += length;
    if (group_end) durable = lsn;
  }
  size_t kept = cut != 0 && cut < used ? cut : used;
  uint64_t damaged = 0;
  if (mask != 0 && flip < kept) {
    segment[flip] ^= mask;
    for (damaged = 1; ends[damaged] <= flip; damaged++) continue;
  }
  struct tally_disk disk;
  struct tally_disk_sim *sim = disk_with(segment, kept, &disk);
  struct tally_wal_scan scan = scan_and_reuse(sim, &disk);
  uint64_t whole = 0;
  while (whole < lsn && ends[whole + 1] <= kept) whole++;
  if (damaged == 0) {
    FUZZ_CHECK(scan.status == TALLY_WAL_OK && scan.lsn_last == whole);
    FUZZ_CHECK(scan.torn == (kept != ends[whole]));
  } else if (scan.status == TALLY_WAL_CORRUPT) {
    FUZZ_CHECK(scan.corrupt_lsn == damaged);
  } else {
    FUZZ_CHECK(scan.lsn_last < damaged && scan.torn);
  }
  tally_disk_sim_destroy(sim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (scanner == NULL) scanner = tally_wal_scanner_create();
  FUZZ_CHECK(scanner != NULL);
  check_one_record(data, size);
  check_one_batch(data, size);
  check_one_cluster(data, size);
  if (size > 0 && (data[0] & 1u) != 0) {
    fuzz_log(data, size);
    return 0;
  }
  struct tally_disk disk;
  struct tally_disk_sim *sim = disk_with(data, size, &disk);
  scan_and_reuse(sim, &disk);
  tally_disk_sim_destroy(sim);
  return 0;
}
