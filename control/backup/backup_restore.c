/*
 * backup_restore.c — tally_backup_restore (backup.h): a verified backup
 * written as a new node's log directory: its checkpoint, and its log through
 * to_lsn (each segment copied record by record and cut after to_lsn, later
 * ones left out), so that tallyd, finding no image, loads the checkpoint and
 * replays the log after it (docs/store-layout.md, "Log mode"). Point in time
 * is bounded below by the checkpoint's end_lsn: the fuzzy copy may hold
 * effects of records up to it. Thread: tallyctl's one thread.
 */
#include "backup.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup_files.h"
#include "wal_record.h"

/* Copies one listed file into log_dir, through to_lsn for a segment. 0 or -errno (error set). */
static int restore_file(const char *dir, const struct tally_backup_file *file,
  const char *log_dir, uint64_t to_lsn, struct tally_backup_progress *progress,
  char *error, size_t error_size)
{
  const char *name = strchr(file->path, '/') + 1;
  tally_backup_progress_file(progress, name);
  int src = tally_backup_open_in(dir, file->path);
  int dst = src < 0 ? src : tally_backup_create_in(log_dir, name);
  struct tally_backup_copied copied;
  memset(&copied, 0, sizeof copied);
  int rc = dst < 0 ? dst : 0;
  if (rc == 0 && file->kind == TALLY_BACKUP_CHECKPOINT) {
    rc = tally_backup_copy_file(src, dst, progress, &copied);
    if (rc == 0 && (copied.size != file->size ||
        sodium_memcmp(copied.hash, file->hash, sizeof copied.hash) != 0)) {
      rc = -EILSEQ; /* changed since it was verified */
    }
  } else if (rc == 0) {
    rc = tally_backup_copy_records(src, file->first_lsn, file->first_lsn, to_lsn, dst, progress,
      &copied, error, error_size);
    uint64_t want = file->last_lsn < to_lsn ? file->last_lsn : to_lsn;
    if (rc == 0 && copied.last_lsn != want) rc = -EILSEQ;
  }
  if (src >= 0) close(src);
  if (dst >= 0) close(dst);
  if (rc != 0) {
    snprintf(error, error_size, "restoring %s into %s: %s", file->path, log_dir,
      rc == -EILSEQ ? "not what was verified (changed meanwhile?)" : strerror(-rc));
  }
  return rc;
}

static enum tally_backup_result refuse_target(const char *log_dir, const char *store_path,
  char *error, size_t error_size)
{
  struct stat status;
  if (!tally_backup_dir_empty(log_dir)) {
    snprintf(error, error_size, "%s is not an empty directory: restore only into a new, empty "
      "log directory", log_dir);
    return TALLY_BACKUP_FAILED;
  }
  if (store_path != NULL && lstat(store_path, &status) == 0) {
    snprintf(error, error_size, "%s exists: restore only to a new store (move the old image "
      "aside; tallyd then creates it and recovers from the checkpoint and the log)", store_path);
    return TALLY_BACKUP_FAILED;
  }
  return TALLY_BACKUP_OK;
}

enum tally_backup_result tally_backup_restore(const char *dir, const char *log_dir,
  const char *store_path, uint64_t to_lsn, struct tally_backup_progress *progress,
  struct tally_backup_summary *summary, char *error, size_t error_size)
{
  enum tally_backup_result result = refuse_target(log_dir, store_path, error, error_size);
  if (result != TALLY_BACKUP_OK) return result;
  struct tally_backup_progress quiet;
  tally_backup_progress_init(&quiet, progress->stream, "verify", 0);
  result = tally_backup_verify(dir, stderr, &quiet, summary, error, error_size);
  if (result != TALLY_BACKUP_OK) {
    if (error[0] == '\0') snprintf(error, error_size, "%s: damaged; nothing restored", dir);
    return result;
  }
  if (to_lsn == 0) to_lsn = summary->last_lsn;
  if (to_lsn < summary->checkpoint_end_lsn || to_lsn > summary->last_lsn) {
    snprintf(error, error_size, "--to-lsn %" PRIu64 ": this backup restores to LSNs %" PRIu64
      "..%" PRIu64 " (from its checkpoint's end to its last record)", to_lsn,
      summary->checkpoint_end_lsn, summary->last_lsn);
    return TALLY_BACKUP_FAILED;
  }
  struct tally_backup_manifest *manifest = calloc(1, sizeof *manifest);
  if (manifest == NULL || tally_backup_manifest_read(dir, manifest, error, error_size) != 0) {
    free(manifest);
    return TALLY_BACKUP_FAILED;
  }
  if (mkdir(log_dir, 0700) != 0 && errno != EEXIST) { /* only now: a refusal writes nothing */
    snprintf(error, error_size, "%s: %s", log_dir, strerror(errno));
    free(manifest);
    return TALLY_BACKUP_FAILED;
  }
  progress->total_bytes = summary->bytes;
  summary->files = 0;
  summary->bytes = 0;
  for (uint32_t f = 0; f < manifest->file_count; f++) {
    const struct tally_backup_file *file = &manifest->files[f];
    if (file->kind == TALLY_BACKUP_WAL && file->first_lsn > to_lsn) break; /* in LSN order */
    if (restore_file(dir, file, log_dir, to_lsn, progress, error, error_size) != 0) {
      free(manifest);
      return TALLY_BACKUP_FAILED;
    }
    summary->files++;
    summary->bytes += file->size;
  }
  free(manifest);
  tally_backup_progress_end(progress);
  int rc = tally_backup_sync_dir(log_dir);
  if (rc != 0) {
    snprintf(error, error_size, "%s: fsync: %s", log_dir, strerror(-rc));
    return TALLY_BACKUP_FAILED;
  }
  summary->last_lsn = to_lsn;
  return TALLY_BACKUP_OK;
}
