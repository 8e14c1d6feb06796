/*
 * checkpoint.h — checkpoints of the image, the second half of the disk tier
 * (docs/store-layout.md, "Checkpoints"): a fuzzy copy of a memory region,
 * written in bounded steps to a temporary file, checksummed per chunk,
 * fdatasync'd, renamed to its final name and the directory fsync'd; the new
 * one and the previous one kept, older ones deleted once the new one is
 * durable. Recovery lists the checkpoints, checks every byte of the newest
 * (header, CRC table, every chunk) and falls back to the previous one when it
 * is damaged, saying which was rejected and why in one line. All I/O goes
 * through a tally_disk (disk_io.h), so the power-loss simulator drives this
 * exact code. libc only.
 *
 * How the persister uses it (one checkpoint at a time):
 *
 *   tally_checkpoint_load(reader, disk, image, size, format, &recovery);  // start-up
 *   writer = tally_checkpoint_writer_create(disk, &options, error, size);
 *   if (recovery.status == TALLY_CHECKPOINT_OK) tally_checkpoint_writer_trust(writer, &recovery);
 *   ...
 *   begin_lsn: every record <= begin_lsn has its effect in the image already
 *   tally_checkpoint_writer_begin(writer, image, image_size, begin_lsn, now_ns);
 *   while (tally_checkpoint_writer_step(writer, budget_bytes) == TALLY_CHECKPOINT_MORE)
 *     ...commit the log, serve everything else, sleep to rate-limit...
 *   end_lsn: no effect in the copy comes from a record > end_lsn (if effects
 *            reach the image before their record is appended, append what was
 *            applied during the copy first); commit the log through end_lsn
 *            (tally_wal_commit), then
 *   tally_checkpoint_writer_finish(writer, end_lsn, &done);
 *   tally_wal_cut(wal, done.cut_lsn);  // never further: recovery may fall back
 *
 * The image may be written by other threads during the copy (fuzzy): each
 * chunk is copied into the writer's own buffer, then checksummed and written
 * from there, so the file is always self-consistent. Replaying the log from
 * begin_lsn + 1 through at least end_lsn onto the copy gives a consistent
 * state (replay must be idempotent: records between the two LSNs may already
 * be in the copy). Keep each step's budget <= sync_bytes and commit the log
 * between steps: a step holds the persister for its writes and at most one
 * fdatasync of sync_bytes.
 *
 * Failures: an I/O error in step or finish abandons the attempt (the
 * temporary file is unlinked, best effort) and the writer is idle again: the
 * previous checkpoints are untouched. A failed fdatasync is never retried on
 * the same file. cancel() abandons an attempt on purpose.
 *
 * Thread: the persister (the writer, not thread-safe); start-up (recovery).
 * The image is read racily by design (other threads write it meanwhile).
 */
#ifndef TALLY_PERSIST_CHECKPOINT_H
#define TALLY_PERSIST_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk_io.h"

/* ---- Format (checkpoint_format.c; docs/store-layout.md, "Checkpoints") ---- */

#define TALLY_CHECKPOINT_MAGIC 0x314b4354u       /* "TCK1" */
#define TALLY_CHECKPOINT_VERSION 1u
#define TALLY_CHECKPOINT_HEADER_CRC_SEED 0x434b5048u /* "HPKC" */
#define TALLY_CHECKPOINT_TABLE_CRC_SEED 0x434b5054u  /* "TPKC" */
#define TALLY_CHECKPOINT_CHUNK_CRC_SEED 0x434b5043u  /* "CPKC" */

/* The header, as decoded (little-endian on disk: see checkpoint_format.c). */
struct tally_checkpoint_header {
  uint64_t sequence;     /* 1, 2, 3, ...: one more than the newest in the directory */
  uint64_t begin_lsn;    /* the log's LSN before the copy began: replay starts after it */
  uint64_t end_lsn;      /* the log was durable through here when the copy ended */
  uint64_t image_size;   /* 1..TALLY_CHECKPOINT_IMAGE_SIZE_MAX */
  uint64_t created_ns;   /* wall clock given to begin (informative) */
  uint64_t data_offset;  /* where chunk 0 starts */
  uint32_t chunk_size;   /* TALLY_CHECKPOINT_CHUNK_SIZE_MIN..MAX, a multiple of 4096 */
  uint32_t chunk_count;  /* ceil(image_size / chunk_size), 1..TALLY_CHECKPOINT_CHUNKS_MAX */
  uint32_t image_format; /* the caller's tag for the image's own layout */
  uint32_t table_crc;    /* CRC32C of the chunk CRC table (chunk_count u32) */
};

/* Why a checkpoint file is not used (one X-macro: enum and names agree). */
#define TALLY_CHECKPOINT_REJECTIONS(X)                                   \
  X(NONE, "valid")                                                     \
  X(READ_ERROR, "read error")                                          \
  X(TRUNCATED, "shorter than its header block")                        \
  X(BAD_MAGIC, "bad magic")                                            \
  X(BAD_VERSION, "unknown version")                                    \
  X(BAD_HEADER_CRC, "header CRC mismatch")                             \
  X(BAD_FIELD, "header field out of range")                            \
  X(BAD_PADDING, "non-zero padding")                                   \
  X(NAME_MISMATCH, "name and header disagree")                         \
  X(BAD_SIZE, "file size does not match the header")                   \
  X(BAD_TABLE_CRC, "chunk CRC table CRC mismatch")                     \
  X(BAD_CHUNK_CRC, "chunk CRC mismatch")                               \
  X(REFUSED, "refused by the loader")

enum tally_checkpoint_rejection {
#define TALLY_CHECKPOINT_REJECTION_ENUM(name, text) TALLY_CHECKPOINT_REJECT_##name,
  TALLY_CHECKPOINT_REJECTIONS(TALLY_CHECKPOINT_REJECTION_ENUM)
#undef TALLY_CHECKPOINT_REJECTION_ENUM
  TALLY_CHECKPOINT_REJECT_COUNT
};

const char *tally_checkpoint_rejection_name(enum tally_checkpoint_rejection rejection);

/* The file size a header describes: the data offset plus the image. */
uint64_t tally_checkpoint_data_offset(uint32_t chunk_count);

/* Writes the header block (TALLY_CHECKPOINT_BLOCK_SIZE bytes) into out. */
void tally_checkpoint_header_encode(uint8_t *out, const struct tally_checkpoint_header *header);

/*
 * Checks a header block: bytes[0..size) are untrusted (any bytes are safe).
 * REJECT_NONE and header filled, or the first reason it is refused.
 */
enum tally_checkpoint_rejection tally_checkpoint_header_decode(const uint8_t *bytes, size_t size,
  struct tally_checkpoint_header *header);

/* CRC32C of chunk index's bytes (its index is in the seed: a chunk at the wrong place fails). */
uint32_t tally_checkpoint_chunk_crc(uint32_t index, const void *data, size_t size);

/* "ckpt-<begin_lsn:016x>-<sequence:016x>.tck" (and ".tmp" while written) into out. */
void tally_checkpoint_name(char *out, uint64_t begin_lsn, uint64_t sequence, bool temporary);
/* True iff name is exactly a checkpoint name (temporary or final); sets the LSN and sequence. */
bool tally_checkpoint_name_parse(const char *name, uint64_t *begin_lsn, uint64_t *sequence,
  bool *temporary);

/* ---- Writing (checkpoint_write.c) ----------------------------------------- */

enum tally_checkpoint_status {
  TALLY_CHECKPOINT_OK,       /* step: every chunk is written (call finish); finish: durable */
  TALLY_CHECKPOINT_MORE,     /* step: chunks remain */
  TALLY_CHECKPOINT_IO_ERROR, /* the attempt is abandoned (writer idle); recovery: listing failed */
  TALLY_CHECKPOINT_NONE,     /* recovery: no checkpoint file at all */
  TALLY_CHECKPOINT_CORRUPT,  /* recovery: checkpoint files, none of them valid */
  TALLY_CHECKPOINT_STATUS_COUNT
};

const char *tally_checkpoint_status_name(enum tally_checkpoint_status status);

struct tally_checkpoint_options {
  uint32_t chunk_size;   /* TALLY_CHECKPOINT_CHUNK_SIZE_MIN..MAX, a multiple of 4096 */
  uint64_t sync_bytes;   /* fdatasync the file every this many bytes written; 0: only at finish */
  uint32_t image_format; /* stored in the header for the loader to check */
};

void tally_checkpoint_options_default(struct tally_checkpoint_options *options);

/* What a finished checkpoint is, and what the caller may do now. */
struct tally_checkpoint_done {
  char name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t sequence;
  uint64_t begin_lsn;
  uint64_t end_lsn;
  uint64_t file_size;
  uint64_t cut_lsn;        /* the oldest kept checkpoint's begin_lsn: cut the log no further */
  uint32_t deleted;        /* older checkpoints (and leftovers) deleted */
  uint32_t delete_failed;  /* deletions that failed (tried again after the next checkpoint) */
};

/* Cumulative figures (for metrics). */
struct tally_checkpoint_writer_stats {
  uint64_t started, finished, failed, cancelled;
  uint64_t bytes_written;  /* file bytes, every attempt */
  uint64_t syncs;          /* fdatasyncs of checkpoint files */
  uint64_t deleted, delete_failed;
  int last_error;          /* -errno of the last failure, 0 if none */
  char last_error_text[192];
};

struct tally_checkpoint_writer;
struct tally_checkpoint_recovery;

/*
 * Allocates the writer (one chunk buffer, the CRC table, a directory
 * listing) once. NULL with one line in error for bad options or no memory.
 */
struct tally_checkpoint_writer *tally_checkpoint_writer_create(struct tally_disk *disk,
  const struct tally_checkpoint_options *options, char *error, size_t error_size);
/* Cancels an attempt in flight, then frees the writer. */
void tally_checkpoint_writer_destroy(struct tally_checkpoint_writer *writer);

/*
 * Starts a checkpoint of image[0..image_size) (image_size 1..the options'
 * chunk_size x TALLY_CHECKPOINT_CHUNKS_MAX, or -EFBIG): removes temporary
 * files left by a crash, picks the next sequence, creates the temporary
 * file. The image must stay mapped until finish or cancel. 0 or -errno
 * (the writer stays idle; -EOVERFLOW if a name holds the largest sequence).
 * The writer must be idle.
 */
int tally_checkpoint_writer_begin(struct tally_checkpoint_writer *writer, const void *image,
  uint64_t image_size, uint64_t begin_lsn, uint64_t created_ns);

/*
 * Copies, checksums and writes whole chunks until at least max_bytes (>= 1)
 * were written or none remain: MORE, OK (all written: call finish), or
 * IO_ERROR (abandoned). Every sync_bytes written, the file is fdatasync'd.
 */
enum tally_checkpoint_status tally_checkpoint_writer_step(struct tally_checkpoint_writer *writer,
  uint64_t max_bytes);

/*
 * After step returned OK, and after the log is durable through end_lsn
 * (>= begin_lsn): writes the table and the header, fdatasyncs, renames to the
 * final name, fsyncs the directory (now it is durable), then deletes all but
 * the new checkpoint and the previous one and fsyncs the directory again.
 * OK (done filled) or IO_ERROR (not known durable; the older ones are kept).
 */
enum tally_checkpoint_status tally_checkpoint_writer_finish(struct tally_checkpoint_writer *writer,
  uint64_t end_lsn, struct tally_checkpoint_done *done);

/*
 * Tells the writer which checkpoint recovery verified and loaded (status OK).
 * Retention keeps as "the previous one" the checkpoint this writer finished
 * last, or else this one; newer files recovery rejected are then deleted
 * rather than kept in its place. Without either, retention keeps the newest
 * older file whose header and table check (a rotted chunk is not seen).
 */
void tally_checkpoint_writer_trust(struct tally_checkpoint_writer *writer,
  const struct tally_checkpoint_recovery *recovery);

/* Abandons the attempt in flight, if any: closes and unlinks the temporary file. */
void tally_checkpoint_writer_cancel(struct tally_checkpoint_writer *writer);

bool tally_checkpoint_writer_active(const struct tally_checkpoint_writer *writer);
/* Image bytes copied and written so far in the attempt in flight. */
uint64_t tally_checkpoint_writer_copied(const struct tally_checkpoint_writer *writer);
const struct tally_checkpoint_writer_stats *tally_checkpoint_writer_stats(
  const struct tally_checkpoint_writer *writer);

/* ---- Recovery (checkpoint_read.c) ----------------------------------------- */

/*
 * Where a checkpoint's bytes go while it is verified. begin() is called for
 * each candidate (non-zero refuses it: REFUSED), then chunk() for each chunk,
 * in order, after that chunk's CRC matched. The image is valid only when the
 * recovery returns OK: a later chunk may still fail, and then begin() is
 * called again for the previous checkpoint, which must replace everything.
 */
struct tally_checkpoint_sink {
  int (*begin)(void *context, const struct tally_checkpoint_header *header);
  int (*chunk)(void *context, uint64_t offset, const void *data, size_t size);
  /* Optional (NULL: the reader's own buffer): where to read the chunk at offset, so a
   * loader into memory is handed its own bytes in chunk() and copies nothing. */
  void *(*place)(void *context, uint64_t offset, size_t size);
  void *context;
};

struct tally_checkpoint_recovery {
  enum tally_checkpoint_status status;   /* OK, NONE, CORRUPT or IO_ERROR */
  char name[TALLY_DISK_NAME_SIZE_MAX];   /* OK: the file chosen */
  struct tally_checkpoint_header header; /* OK: its header */
  uint32_t found;                        /* checkpoint files listed (temporary ones not counted) */
  uint32_t rejected;                     /* newer files tried and refused before the chosen one */
  uint32_t ignored;                      /* beyond TALLY_CHECKPOINT_FILES_MAX, not looked at */
  enum tally_checkpoint_rejection first_rejection;
  char report[TALLY_CHECKPOINT_REPORT_SIZE]; /* one line: each rejected file and why; "" if none */
};

struct tally_checkpoint_reader; /* recovery's working memory, allocated once */

struct tally_checkpoint_reader *tally_checkpoint_reader_create(void);
void tally_checkpoint_reader_destroy(struct tally_checkpoint_reader *reader);

/*
 * Finds the newest valid checkpoint in disk, newest first by sequence,
 * verifying every byte, and streams it to sink. Writes nothing. Returns
 * recovery->status.
 */
enum tally_checkpoint_status tally_checkpoint_recover(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, const struct tally_checkpoint_sink *sink,
  struct tally_checkpoint_recovery *recovery);

/*
 * The same into buffer[0..buffer_size): a checkpoint whose image is larger,
 * or whose image_format differs from image_format (0: any), is refused.
 * Chunks are read straight into the buffer (no copy). After OK, bytes
 * past the chosen image are unspecified: a larger checkpoint rejected first
 * may have been partly read there.
 */
enum tally_checkpoint_status tally_checkpoint_load(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, void *buffer, uint64_t buffer_size, uint32_t image_format,
  struct tally_checkpoint_recovery *recovery);

#endif
