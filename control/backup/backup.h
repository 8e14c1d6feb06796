/*
 * backup.h — backups of a log-mode node's disk tier, their verification and
 * restore to a new store (docs/operations.md, "Backups and restore"). A
 * backup directory holds a MANIFEST (manifest.h) and one subdirectory per
 * generation: g000001 (full: the newest checkpoint and the log after its
 * begin_lsn), then g000002, ... (incremental: the log after the previous
 * generation's last LSN). Concatenated, the generations' segments are one
 * gapless log from the checkpoint's begin_lsn + 1, in the node's own format,
 * so restore writes a checkpoint and a log that tallyd's ordinary recovery
 * (checkpoint + log replay) starts from.
 *
 * Never stalls the dataplane and never races the log cut or a checkpoint's
 * retention: tallyctl reads the log directory as another process, and opens
 * the checkpoint and every segment it needs before copying a byte. A file
 * unlinked by the cut or by retention afterwards stays readable through its
 * descriptor (POSIX); one unlinked between the listing and the open is
 * seen (ENOENT) and the listing taken again. Checkpoint files are complete
 * when they appear (renamed after fdatasync); a segment is copied record by
 * record up to its last whole valid record, so bytes being appended are
 * never copied half.
 *
 * Thread: tallyctl's one thread.
 */
#ifndef TALLY_BACKUP_H
#define TALLY_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "progress.h"

/* Results, also tallyctl's exit codes for backup, verify and restore. */
enum tally_backup_result {
  TALLY_BACKUP_OK = 0,
  TALLY_BACKUP_DAMAGED = 1, /* verify (and restore): a file or the chain is not intact */
  TALLY_BACKUP_FAILED = 3,  /* could not do it: I/O, refused target, log cut past the backup */
};

/* Listings and opens retried when a file vanishes under them (the log cut, retention). */
#define TALLY_BACKUP_OPEN_TRIES 8u
/* Lines of damage verify prints before it only counts them. */
#define TALLY_BACKUP_ERRORS_PRINTED_MAX 20u

struct tally_backup_request {
  const char *log_dir;   /* the node's store.log_dir (read only) */
  const char *dir;       /* the backup directory */
  const char *node;      /* the node's name for the manifest (no spaces) */
  bool incremental;
};

/* What one backup, verify or restore did. */
struct tally_backup_summary {
  uint32_t generation;   /* backup: the generation written (0: nothing new) */
  uint32_t generations;  /* verify, restore: generations in the chain */
  uint64_t checkpoint_begin_lsn, checkpoint_end_lsn;
  uint64_t first_lsn, last_lsn; /* backup: the log added; verify/restore: the whole chain's */
  uint32_t files;
  uint64_t bytes;
  uint32_t damaged;      /* verify: problems found */
  char node[TALLY_BACKUP_NODE_SIZE];
};

/* Takes a full backup (dir without a MANIFEST) or an incremental (dir with one). */
enum tally_backup_result tally_backup_take(const struct tally_backup_request *request,
  struct tally_backup_progress *progress, struct tally_backup_summary *summary,
  char *error, size_t error_size);

/*
 * Checks every file's size and BLAKE2b, the checkpoint with the checkpoint
 * reader, every generation's log with the log's recovery scan (every record's
 * CRCs and LSN), and the chain: the full generation starts at its
 * checkpoint's begin_lsn + 1 and each generation where the previous ended.
 * Each problem is one line on damage_stream (at most
 * TALLY_BACKUP_ERRORS_PRINTED_MAX); OK, DAMAGED, or FAILED (error set).
 */
enum tally_backup_result tally_backup_verify(const char *dir, FILE *damage_stream,
  struct tally_backup_progress *progress, struct tally_backup_summary *summary,
  char *error, size_t error_size);

/*
 * Verifies dir, then writes its checkpoint and its log through to_lsn (0:
 * all of it; else checkpoint end_lsn <= to_lsn <= the last LSN) into
 * log_dir, which must be absent or empty; store_path (may be NULL) must not
 * exist, so tallyd creates a new image and recovers from checkpoint + log.
 */
enum tally_backup_result tally_backup_restore(const char *dir, const char *log_dir,
  const char *store_path, uint64_t to_lsn, struct tally_backup_progress *progress,
  struct tally_backup_summary *summary, char *error, size_t error_size);

#endif
