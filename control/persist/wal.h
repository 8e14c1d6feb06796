/*
 * wal.h — the disk tier's write-ahead log: a sequential log of records
 * (wal_record.h) in segment files of bounded size, group-committed with one
 * fdatasync per group, cut behind checkpoints, and read back by a recovery
 * scan that tells a torn tail (dropped, counted) from damage before it (an
 * error naming the LSN, never skipped). All I/O goes through a tally_disk
 * (disk_io.h), so the power-loss simulator drives this exact code.
 *
 * Order of use (the persister, docs/store-layout.md "Write-ahead log"):
 *   scan    tally_wal_scan: reads every segment, decides where the valid
 *           log ends, writes nothing;
 *   replay  tally_wal_replay: delivers the records from_lsn..lsn_last the scan
 *           found, in LSN order, checking each again;
 *   open    tally_wal_open: only after an OK scan; truncates a torn tail,
 *           syncs the tail segment and the directory, allocates the group
 *           buffer; then append / commit / cut.
 *
 * Invariants the recovery rules rest on (asserted in wal.c):
 *   - LSNs are 1, 2, 3, ... with no gap; a segment's name is its first LSN;
 *   - a record never spans segments; only the newest segment is ever written
 *     to, and the previous one was synced before the next was created, so
 *     only the newest segment can hold unsynced bytes;
 *   - a record's durable_lsn is the log's durable LSN when it was appended
 *     (the last LSN of the previous group); a record that names a durable_lsn
 *     >= L proves that L was acknowledged;
 *   - after a failed write or sync the log refuses everything (the pages may
 *     be gone: never retried); the owner must recover from the disk.
 *
 * Thread: the persister, one per log. Not thread-safe.
 */
#ifndef TALLY_PERSIST_WAL_H
#define TALLY_PERSIST_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk_io.h"
#include "wal_record.h"

enum tally_wal_status {
  TALLY_WAL_OK,
  TALLY_WAL_FULL,      /* append: the group (or the segment) is full: commit, then append again */
  TALLY_WAL_CORRUPT,   /* scan: damage before the end of the log (corrupt_lsn, error) */
  TALLY_WAL_IO_ERROR,  /* an I/O call failed; a writer refuses everything after it */
  TALLY_WAL_STOPPED,   /* replay: the visitor asked to stop */
  TALLY_WAL_STATUS_COUNT
};

struct tally_wal_options {
  uint64_t segment_size; /* TALLY_WAL_SEGMENT_SIZE_MIN..MAX, a multiple of 8 */
  uint32_t group_size;   /* TALLY_WAL_GROUP_SIZE_MIN..MAX, <= segment_size */
};

/* What a recovery scan found. */
struct tally_wal_scan {
  enum tally_wal_status status; /* OK, CORRUPT or IO_ERROR */
  uint64_t from_lsn;        /* the first LSN wanted (a checkpoint's LSN + 1; 1 without one) */
  uint64_t lsn_last;        /* the end of the valid log (from_lsn - 1 when empty) */
  uint64_t records;         /* records from_lsn..lsn_last: what replay delivers */
  bool torn;                /* bytes after lsn_last were not a valid record: dropped */
  uint64_t torn_bytes;      /* how many */
  uint32_t torn_records;    /* valid records found beyond the tear (the unacked rest of its group) */
  uint64_t corrupt_lsn;     /* CORRUPT: the first LSN that cannot be read */
  uint64_t tail_segment_lsn; /* the newest segment (0: none) ... */
  uint64_t tail_offset;     /* ... and where its valid bytes end */
  uint32_t segment_count;   /* segments in the directory, oldest first ... */
  const uint64_t *segment_lsns; /* ... their first LSNs (the scanner's memory) */
  char error[192];          /* CORRUPT, IO_ERROR: one line */
};

struct tally_wal_scanner; /* recovery's working memory, allocated once */

struct tally_wal_scanner *tally_wal_scanner_create(void);
void tally_wal_scanner_destroy(struct tally_wal_scanner *scanner);

/* Reads the log in disk from from_lsn (>= 1); writes nothing. Returns scan->status. */
enum tally_wal_status tally_wal_scan(struct tally_wal_scanner *scanner, struct tally_disk *disk,
  uint64_t from_lsn, struct tally_wal_scan *scan);

/* Called once per record, in LSN order; the payload is valid during the call. Non-zero stops. */
typedef int (*tally_wal_visit_fn)(void *context, const struct tally_wal_record *record);

/*
 * Delivers the records an OK scan counted (from_lsn..lsn_last), verifying
 * each again. OK; STOPPED if the visitor stopped; IO_ERROR (error filled) if
 * the disk failed or no longer holds what the scan found.
 */
enum tally_wal_status tally_wal_replay(struct tally_wal_scanner *scanner, struct tally_disk *disk,
  const struct tally_wal_scan *scan, tally_wal_visit_fn visit, void *context,
  char *error, size_t error_size);

/* ---- The writer -------------------------------------------------------------- */

struct tally_wal {
  struct tally_disk *disk;
  struct tally_wal_options options;
  uint8_t *group;            /* options.group_size bytes: records since the last commit */
  uint32_t group_used;       /* bytes of them; 0 after every commit */
  uint32_t group_records;
  int segment_file;          /* the newest segment, open; -1 after close */
  uint64_t segment_lsn;      /* its first LSN (its name) */
  uint64_t segment_used;     /* bytes of it written and synced */
  uint64_t lsn_next;         /* the next LSN to give out */
  uint64_t lsn_durable;      /* every LSN up to here is on the media: lsn_durable < lsn_next */
  uint64_t *segment_lsns;    /* every segment's first LSN, oldest first (the last is the newest) */
  uint32_t segment_count;
  bool failed;               /* a write or sync failed: everything refused */
  int error;                 /* the -errno that failed it */
  uint64_t commits;          /* commits that wrote and synced a group */
  uint64_t bytes_written;
};

/* Where an appended record went (for tests and metrics). */
struct tally_wal_appended {
  uint64_t lsn;
  uint64_t segment_lsn;
  uint64_t offset;
  uint32_t size;
};

void tally_wal_options_default(struct tally_wal_options *options);

/*
 * Opens the log for appending after an OK scan of the same disk: truncates
 * the torn tail, syncs the newest segment and the directory (so that what
 * recovery read is durable before anything is appended), or creates the
 * first segment. 0, or -errno with one line in error.
 */
int tally_wal_open(struct tally_wal *wal, struct tally_disk *disk,
  const struct tally_wal_options *options, const struct tally_wal_scan *scan,
  char *error, size_t error_size);
void tally_wal_close(struct tally_wal *wal);

/*
 * Adds a record to the open group: OK (appended set if not NULL), FULL (the
 * group or the segment has no room: commit first), IO_ERROR (the log failed;
 * or starting a new segment failed).
 */
enum tally_wal_status tally_wal_append(struct tally_wal *wal, uint16_t type, const void *payload,
  uint32_t payload_size, struct tally_wal_appended *appended);

/* Writes the group and fdatasyncs it: OK (every appended LSN is durable) or IO_ERROR. */
enum tally_wal_status tally_wal_commit(struct tally_wal *wal);

static inline uint64_t tally_wal_durable_lsn(const struct tally_wal *wal)
{
  return wal->lsn_durable;
}

/*
 * Removes the segments whose every record is <= lsn (lsn <= the durable
 * LSN: a checkpoint covers them), oldest first, then syncs the directory.
 * The newest segment is always kept. OK or IO_ERROR (not sticky: retry later).
 */
enum tally_wal_status tally_wal_cut(struct tally_wal *wal, uint64_t lsn);

const char *tally_wal_status_name(enum tally_wal_status status);

#endif
