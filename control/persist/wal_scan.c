/*
 * wal_scan.c — recovery of the write-ahead log (wal.h): the scan, which reads
 * every segment from the one holding from_lsn and decides where the valid
 * log ends without writing anything, and the replay, which walks the same
 * records again and hands them to the caller.
 *
 * The rules (docs/store-layout.md, "Write-ahead log (disk tier), step 1"):
 *   - records must run LSN by LSN with no gap, each segment starting at the
 *     LSN its name says, durable_lsn never going back;
 *   - the first bytes that are not a valid record end the log if, and only
 *     if, they are in the newest segment and no valid record after them
 *     proves they were durable (a durable_lsn >= their LSN): that is a torn
 *     tail, dropped and counted. The writer syncs a segment before it starts
 *     the next and never writes before a synced group, so nothing else can
 *     legitimately be unreadable;
 *   - anything else (damage in an older segment, a record proven durable, a
 *     gap, a record with the wrong LSN) is CORRUPT, naming the first LSN that
 *     cannot be read. Nothing after it is delivered, and nothing is skipped.
 * Damage confined to the newest commit group is indistinguishable from a
 * torn write and is reported as torn (the group was possibly acked).
 *
 * Thread: the persister, at start-up, before the writer opens.
 */
#include "wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The directory may hold a few other files (checkpoints, later) beside the segments. */
#define SCAN_NAMES_MAX (TALLY_WAL_SEGMENTS_MAX + 64u)

struct tally_wal_scanner {
  uint8_t *window;        /* TALLY_WAL_SCAN_WINDOW_SIZE bytes of the open segment ... */
  uint64_t window_offset; /* ... from this offset ... */
  uint64_t window_bytes;  /* ... this many valid */
  int file;               /* the open segment, -1 none */
  uint64_t file_size;
  char file_name[TALLY_DISK_NAME_SIZE_MAX];
  uint32_t segment_count;
  uint64_t segment_lsns[TALLY_WAL_SEGMENTS_MAX];
  char names[SCAN_NAMES_MAX][TALLY_DISK_NAME_SIZE_MAX];
};

/* One pass over the log: the scan (stop_lsn UINT64_MAX, no visitor) or a replay. */
struct scan_walk {
  struct tally_wal_scanner *scanner;
  struct tally_disk *disk;
  struct tally_wal_scan *scan;
  uint64_t stop_lsn;
  uint64_t expected_lsn;  /* the LSN the next record must carry */
  uint64_t durable_prev;  /* durable_lsn of the last valid record */
  uint64_t delivered;     /* records >= from_lsn passed */
  bool done;              /* replay: stop_lsn passed */
  tally_wal_visit_fn visit;
  void *context;
};

struct tally_wal_scanner *tally_wal_scanner_create(void)
{
  struct tally_wal_scanner *scanner = calloc(1, sizeof(*scanner));
  if (scanner == NULL) return NULL;
  scanner->window = malloc(TALLY_WAL_SCAN_WINDOW_SIZE);
  if (scanner->window == NULL) {
    free(scanner);
    return NULL;
  }
  scanner->file = -1;
  return scanner;
}

void tally_wal_scanner_destroy(struct tally_wal_scanner *scanner)
{
  if (scanner == NULL) return;
  assert(scanner->file < 0);
  free(scanner->window);
  free(scanner);
}

__attribute__((format(printf, 4, 5)))
static enum tally_wal_status walk_fail(struct scan_walk *walk, enum tally_wal_status status,
  uint64_t corrupt_lsn, const char *format, ...)
{
  assert(status == TALLY_WAL_CORRUPT || status == TALLY_WAL_IO_ERROR);
  struct tally_wal_scan *scan = walk->scan;
  scan->status = status;
  scan->corrupt_lsn = status == TALLY_WAL_CORRUPT ? corrupt_lsn : 0;
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(scan->error, sizeof scan->error, format, arguments);
  va_end(arguments);
  return status;
}

static int compare_lsn(const void *a, const void *b)
{
  uint64_t left = *(const uint64_t *)a;
  uint64_t right = *(const uint64_t *)b;
  return (left > right) - (left < right);
}

/* Lists the segment files, oldest first. */
static enum tally_wal_status walk_list(struct scan_walk *walk)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  int count = walk->disk->ops->list(walk->disk->context, scanner->names, SCAN_NAMES_MAX);
  if (count < 0) {
    return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "cannot list the log directory: %s",
      strerror(-count));
  }
  scanner->segment_count = 0;
  for (int i = 0; i < count; i++) {
    uint64_t lsn;
    if (!tally_wal_segment_parse(scanner->names[i], &lsn)) continue;
    if (scanner->segment_count == TALLY_WAL_SEGMENTS_MAX) {
      return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "more than %u log segments",
        TALLY_WAL_SEGMENTS_MAX);
    }
    scanner->segment_lsns[scanner->segment_count++] = lsn;
  }
  qsort(scanner->segment_lsns, scanner->segment_count, sizeof(uint64_t), compare_lsn);
  walk->scan->segment_count = scanner->segment_count;
  walk->scan->segment_lsns = scanner->segment_lsns;
  return TALLY_WAL_OK;
}

static enum tally_wal_status walk_open_segment(struct scan_walk *walk, uint32_t index)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  assert(scanner->file < 0);
  assert(index < scanner->segment_count);
  tally_wal_segment_name(scanner->file_name, scanner->segment_lsns[index]);
  int file = walk->disk->ops->open(walk->disk->context, scanner->file_name, false);
  if (file < 0) {
    return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "cannot open %s: %s", scanner->file_name,
      strerror(-file));
  }
  int64_t size = walk->disk->ops->size(walk->disk->context, file);
  if (size < 0) {
    walk->disk->ops->close(walk->disk->context, file);
    return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "cannot size %s: %s", scanner->file_name,
      strerror((int)-size));
  }
  scanner->file = file;
  scanner->file_size = (uint64_t)size;
  scanner->window_offset = 0;
  scanner->window_bytes = 0;
  return TALLY_WAL_OK;
}

static void walk_close_segment(struct scan_walk *walk)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  if (scanner->file < 0) return;
  walk->disk->ops->close(walk->disk->context, scanner->file);
  scanner->file = -1;
}

/* Bytes of the open segment from offset: at least a whole record's worth, or up to its end. */
static int walk_bytes(struct scan_walk *walk, uint64_t offset, const uint8_t **bytes,
  size_t *available)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  assert(offset < scanner->file_size);
  uint64_t rest = scanner->file_size - offset;
  uint64_t want = rest < TALLY_WAL_RECORD_SIZE_MAX ? rest : TALLY_WAL_RECORD_SIZE_MAX;
  bool inside = offset >= scanner->window_offset &&
    offset + want <= scanner->window_offset + scanner->window_bytes;
  if (!inside) {
    size_t size = rest < TALLY_WAL_SCAN_WINDOW_SIZE ? (size_t)rest : TALLY_WAL_SCAN_WINDOW_SIZE;
    int64_t got = walk->disk->ops->read(walk->disk->context, scanner->file, scanner->window,
      size, offset);
    if (got < 0) return (int)got;
    scanner->window_offset = offset;
    scanner->window_bytes = (uint64_t)got;
  }
  *bytes = scanner->window + (offset - scanner->window_offset);
  *available = (size_t)(scanner->window_offset + scanner->window_bytes - offset);
  return 0;
}

/* A valid record: must be the next LSN; delivered if wanted. */
static enum tally_wal_status walk_record(struct scan_walk *walk,
  const struct tally_wal_record *record, uint64_t offset)
{
  const char *name = walk->scanner->file_name;
  if (record->lsn != walk->expected_lsn) {
    return walk_fail(walk, TALLY_WAL_CORRUPT, walk->expected_lsn,
      "%s offset %" PRIu64 ": a record with LSN %" PRIu64 " where LSN %" PRIu64 " belongs", name,
      offset, record->lsn, walk->expected_lsn);
  }
  if (record->durable_lsn < walk->durable_prev) {
    return walk_fail(walk, TALLY_WAL_CORRUPT, record->lsn,
      "%s offset %" PRIu64 ": LSN %" PRIu64 " says the log was durable to %" PRIu64
      ", before the %" PRIu64 " an earlier record said", name, offset, record->lsn,
      record->durable_lsn, walk->durable_prev);
  }
  walk->durable_prev = record->durable_lsn;
  walk->expected_lsn++;
  if (record->lsn < walk->scan->from_lsn) return TALLY_WAL_OK;
  walk->delivered++;
  if (record->lsn == walk->stop_lsn) walk->done = true;
  if (walk->visit != NULL && walk->visit(walk->context, record) != 0) return TALLY_WAL_STOPPED;
  return TALLY_WAL_OK;
}

/*
 * The newest segment is unreadable from offset: look at every 8-byte
 * position after it for valid records. One whose durable_lsn reaches the
 * damaged LSN proves it was acknowledged: CORRUPT. Otherwise a torn tail.
 */
static enum tally_wal_status walk_tail(struct scan_walk *walk, uint64_t offset,
  enum tally_wal_record_check check)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  struct tally_wal_scan *scan = walk->scan;
  uint32_t found = 0;
  for (uint64_t at = offset + TALLY_WAL_RECORD_ALIGN; at < scanner->file_size;) {
    const uint8_t *bytes;
    size_t available;
    int result = walk_bytes(walk, at, &bytes, &available);
    if (result < 0) {
      return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "cannot read %s: %s", scanner->file_name,
        strerror(-result));
    }
    struct tally_wal_record record;
    if (tally_wal_record_check(bytes, available, &record) != TALLY_WAL_RECORD_VALID) {
      at += TALLY_WAL_RECORD_ALIGN;
      continue;
    }
    if (record.durable_lsn >= walk->expected_lsn) {
      return walk_fail(walk, TALLY_WAL_CORRUPT, walk->expected_lsn,
        "%s offset %" PRIu64 ": LSN %" PRIu64 " is damaged (%s), but LSN %" PRIu64
        " after it says it was durable", scanner->file_name, offset, walk->expected_lsn,
        tally_wal_record_check_name(check), record.lsn);
    }
    found++;
    at += record.size;
  }
  scan->torn = true;
  scan->torn_bytes = scanner->file_size - offset;
  scan->torn_records = found;
  return TALLY_WAL_OK;
}

/* Walks one segment's records; index + 1 == segment_count for the newest. */
static enum tally_wal_status walk_segment(struct scan_walk *walk, uint32_t index)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  bool newest = index + 1u == scanner->segment_count;
  enum tally_wal_status status = walk_open_segment(walk, index);
  if (status != TALLY_WAL_OK) return status;
  uint64_t offset = 0;
  while (offset < scanner->file_size && !walk->done && status == TALLY_WAL_OK) {
    const uint8_t *bytes;
    size_t available;
    int result = walk_bytes(walk, offset, &bytes, &available);
    if (result < 0) {
      return walk_fail(walk, TALLY_WAL_IO_ERROR, 0, "cannot read %s: %s", scanner->file_name,
        strerror(-result));
    }
    struct tally_wal_record record;
    enum tally_wal_record_check check = tally_wal_record_check(bytes, available, &record);
    if (check != TALLY_WAL_RECORD_VALID && newest) {
      status = walk_tail(walk, offset, check);
      break;
    }
    if (check != TALLY_WAL_RECORD_VALID) {
      return walk_fail(walk, TALLY_WAL_CORRUPT, walk->expected_lsn,
        "%s offset %" PRIu64 ": LSN %" PRIu64 " is damaged (%s) and newer segments follow",
        scanner->file_name, offset, walk->expected_lsn, tally_wal_record_check_name(check));
    }
    status = walk_record(walk, &record, offset);
    offset += record.size;
  }
  if (newest) {
    walk->scan->tail_segment_lsn = scanner->segment_lsns[index];
    walk->scan->tail_offset = offset;
  }
  return status;
}

/* The segment holding from_lsn: the newest whose first LSN is <= it. */
static enum tally_wal_status walk_first(struct scan_walk *walk, uint32_t *first)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  uint64_t from_lsn = walk->scan->from_lsn;
  if (scanner->segment_count == 0 || scanner->segment_lsns[0] > from_lsn) {
    uint64_t start = scanner->segment_count == 0 ? 0 : scanner->segment_lsns[0];
    if (from_lsn == 1 && start == 0) return TALLY_WAL_OK;
    return walk_fail(walk, TALLY_WAL_CORRUPT, from_lsn,
      "the log must hold LSN %" PRIu64 " but starts at %" PRIu64 " (0: no segment)", from_lsn,
      start);
  }
  uint32_t index = 0;
  while (index + 1u < scanner->segment_count && scanner->segment_lsns[index + 1u] <= from_lsn) {
    index++;
  }
  *first = index;
  return TALLY_WAL_OK;
}

/* Walks every segment from the one holding from_lsn; checks each starts where the last ended. */
static enum tally_wal_status walk_run(struct scan_walk *walk)
{
  struct tally_wal_scanner *scanner = walk->scanner;
  uint32_t first = UINT32_MAX;
  enum tally_wal_status status = walk_first(walk, &first);
  if (status != TALLY_WAL_OK || first == UINT32_MAX) return status;
  walk->expected_lsn = scanner->segment_lsns[first];
  for (uint32_t index = first; index < scanner->segment_count && !walk->done; index++) {
    uint64_t segment_lsn = scanner->segment_lsns[index];
    if (segment_lsn != walk->expected_lsn) {
      return walk_fail(walk, TALLY_WAL_CORRUPT, walk->expected_lsn,
        "segment for LSN %" PRIu64 " missing: the next starts at LSN %" PRIu64,
        walk->expected_lsn, segment_lsn);
    }
    status = walk_segment(walk, index);
    walk_close_segment(walk);
    if (status != TALLY_WAL_OK) return status;
  }
  return TALLY_WAL_OK;
}

enum tally_wal_status tally_wal_scan(struct tally_wal_scanner *scanner, struct tally_disk *disk,
  uint64_t from_lsn, struct tally_wal_scan *scan)
{
  assert(scanner != NULL);
  assert(disk != NULL && disk->ops != NULL);
  assert(from_lsn >= 1);
  memset(scan, 0, sizeof(*scan));
  scan->from_lsn = from_lsn;
  struct scan_walk walk = {
    .scanner = scanner, .disk = disk, .scan = scan, .stop_lsn = UINT64_MAX,
    .expected_lsn = from_lsn,
  };
  enum tally_wal_status status = walk_list(&walk);
  if (status == TALLY_WAL_OK) status = walk_run(&walk);
  if (status != TALLY_WAL_OK) return scan->status;
  scan->lsn_last = walk.expected_lsn - 1u;
  if (scan->lsn_last + 1u < from_lsn) {
    return walk_fail(&walk, TALLY_WAL_CORRUPT, scan->lsn_last + 1u,
      "the log ends at LSN %" PRIu64 ", before LSN %" PRIu64 " it must hold", scan->lsn_last,
      from_lsn - 1u);
  }
  scan->records = walk.delivered;
  assert(scan->records == scan->lsn_last + 1u - from_lsn);
  scan->status = TALLY_WAL_OK;
  return TALLY_WAL_OK;
}

enum tally_wal_status tally_wal_replay(struct tally_wal_scanner *scanner, struct tally_disk *disk,
  const struct tally_wal_scan *scan, tally_wal_visit_fn visit, void *context,
  char *error, size_t error_size)
{
  assert(scanner != NULL);
  assert(scan != NULL && scan->status == TALLY_WAL_OK);
  assert(visit != NULL);
  if (scan->records == 0) return TALLY_WAL_OK;
  struct tally_wal_scan again;
  memset(&again, 0, sizeof(again));
  again.from_lsn = scan->from_lsn;
  struct scan_walk walk = {
    .scanner = scanner, .disk = disk, .scan = &again, .stop_lsn = scan->lsn_last,
    .expected_lsn = scan->from_lsn, .visit = visit, .context = context,
  };
  enum tally_wal_status status = walk_list(&walk);
  if (status == TALLY_WAL_OK) status = walk_run(&walk);
  if (status == TALLY_WAL_STOPPED) walk_close_segment(&walk);
  if (status == TALLY_WAL_STOPPED) return status;
  if (status == TALLY_WAL_OK && (!walk.done || walk.delivered != scan->records)) {
    snprintf(again.error, sizeof again.error, "the log ended at LSN %" PRIu64 " of %" PRIu64,
      walk.expected_lsn - 1u, scan->lsn_last);
    status = TALLY_WAL_IO_ERROR;
  }
  if (status == TALLY_WAL_OK) return status;
  snprintf(error, error_size, "the log changed since it was scanned: %s", again.error);
  return TALLY_WAL_IO_ERROR;
}
