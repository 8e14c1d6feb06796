/*
 * backup_take.c — tally_backup_take (backup.h): a full backup (the node's
 * newest checkpoint and its log after begin_lsn) or an incremental (the log
 * after the last generation). The source is held open before anything is
 * copied (backup.h: why that never races the log cut or retention); every
 * copied segment is cut at its last whole record and renamed for the first
 * LSN it holds; the new generation is durable before the manifest that names
 * it replaces the old one. Thread: tallyctl's one thread.
 */
#include "backup.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup_files.h"
#include "checkpoint.h"
#include "wal_record.h"

/* The node's log directory, held open: the checkpoint and the segments a backup needs. */
struct source {
  uint64_t segment_lsns[TALLY_WAL_SEGMENTS_MAX]; /* every segment listed, oldest first */
  uint32_t segment_count;
  uint64_t checkpoint_sequence;                  /* the newest final checkpoint; 0: none */
  uint64_t checkpoint_begin_lsn;
  char checkpoint_name[TALLY_DISK_NAME_SIZE_MAX];
  int checkpoint_fd;
  struct tally_checkpoint_header header;
  uint32_t first_open;                           /* segment_lsns[first_open..] are open */
  int segment_fds[TALLY_WAL_SEGMENTS_MAX];
};

static int compare_lsn(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void source_close(struct source *source)
{
  if (source->checkpoint_fd >= 0) close(source->checkpoint_fd);
  source->checkpoint_fd = -1;
  for (uint32_t i = source->first_open; i < source->segment_count; i++) {
    if (source->segment_fds[i] >= 0) close(source->segment_fds[i]);
    source->segment_fds[i] = -1;
  }
}

static int source_list(struct source *source, const char *log_dir, char *error, size_t error_size)
{
  source->segment_count = 0;
  source->checkpoint_sequence = 0;
  DIR *directory = opendir(log_dir);
  if (directory == NULL) {
    snprintf(error, error_size, "log directory %s: %s", log_dir, strerror(errno));
    return -errno;
  }
  struct dirent *entry;
  int rc = 0;
  /* Bounded by the directory's entries. */
  while ((entry = readdir(directory)) != NULL) {
    uint64_t lsn = 0, sequence = 0;
    bool temporary = false;
    if (tally_wal_segment_parse(entry->d_name, &lsn)) {
      if (source->segment_count == TALLY_WAL_SEGMENTS_MAX) {
        snprintf(error, error_size, "log directory %s: more than %u segments", log_dir,
          TALLY_WAL_SEGMENTS_MAX);
        rc = -E2BIG;
        break;
      }
      source->segment_lsns[source->segment_count++] = lsn;
    } else if (tally_checkpoint_name_parse(entry->d_name, &lsn, &sequence, &temporary) &&
      !temporary && sequence > source->checkpoint_sequence) {
      source->checkpoint_sequence = sequence;
      source->checkpoint_begin_lsn = lsn;
      size_t length = strlen(entry->d_name); /* a parsed name: 38 bytes */
      assert(length < sizeof source->checkpoint_name);
      memcpy(source->checkpoint_name, entry->d_name, length + 1u);
    }
  }
  closedir(directory);
  qsort(source->segment_lsns, source->segment_count, sizeof source->segment_lsns[0], compare_lsn);
  return rc;
}

/* The index of the newest segment whose first LSN is <= lsn; segment_count if none. */
static uint32_t segment_holding(const struct source *source, uint64_t lsn)
{
  uint32_t found = source->segment_count;
  for (uint32_t i = 0; i < source->segment_count && source->segment_lsns[i] <= lsn; i++) found = i;
  return found;
}

/* Opens segments first..; -ENOENT when one vanished since the listing. */
static int open_segments(struct source *source, const char *log_dir, uint32_t first)
{
  source->first_open = first;
  for (uint32_t i = first; i < source->segment_count; i++) source->segment_fds[i] = -1;
  for (uint32_t i = first; i < source->segment_count; i++) {
    char name[TALLY_DISK_NAME_SIZE_MAX];
    tally_wal_segment_name(name, source->segment_lsns[i]);
    source->segment_fds[i] = tally_backup_open_in(log_dir, name);
    if (source->segment_fds[i] < 0) return source->segment_fds[i];
  }
  return 0;
}

static int read_checkpoint_header(struct source *source, char *error, size_t error_size)
{
  uint8_t block[TALLY_CHECKPOINT_BLOCK_SIZE];
  ssize_t got = pread(source->checkpoint_fd, block, sizeof block, 0);
  enum tally_checkpoint_rejection rejection = got < 0 ? TALLY_CHECKPOINT_REJECT_READ_ERROR :
    tally_checkpoint_header_decode(block, (size_t)got, &source->header);
  if (rejection != TALLY_CHECKPOINT_REJECT_NONE) {
    snprintf(error, error_size, "checkpoint %s: %s", source->checkpoint_name,
      tally_checkpoint_rejection_name(rejection));
    return -EILSEQ;
  }
  return 0;
}

/*
 * Lists the log directory and opens what a backup from from_lsn needs (and,
 * for a full one, the newest checkpoint, from_lsn then its begin_lsn + 1),
 * listing again when a file vanished in between.
 */
static int source_open(struct source *source, const char *log_dir, bool full, uint64_t from_lsn,
  char *error, size_t error_size)
{
  for (uint32_t attempt = 0; attempt < TALLY_BACKUP_OPEN_TRIES; attempt++) {
    int rc = source_list(source, log_dir, error, error_size);
    if (rc != 0) return rc;
    if (full) {
      if (source->checkpoint_sequence == 0) {
        snprintf(error, error_size, "log directory %s: no checkpoint yet (store.persist = log "
          "with store.checkpoint_interval_ms > 0; wait for the first)", log_dir);
        return -ENOENT;
      }
      source->checkpoint_fd = tally_backup_open_in(log_dir, source->checkpoint_name);
      if (source->checkpoint_fd == -ENOENT) continue;
      if (source->checkpoint_fd < 0) {
        snprintf(error, error_size, "%s/%s: %s", log_dir, source->checkpoint_name,
          strerror(-source->checkpoint_fd));
        return source->checkpoint_fd;
      }
      from_lsn = source->checkpoint_begin_lsn + 1u;
    }
    uint32_t first = segment_holding(source, from_lsn);
    if (first == source->segment_count) {
      source_close(source);
      snprintf(error, error_size, "log directory %s: the log no longer holds LSN %" PRIu64
        " (cut since the last backup%s): take a full backup into a new directory", log_dir,
        from_lsn, source->segment_count == 0 ? "; no segment at all" : "");
      return -ERANGE;
    }
    rc = open_segments(source, log_dir, first);
    if (rc == 0) return full ? read_checkpoint_header(source, error, error_size) : 0;
    source_close(source);
    if (rc != -ENOENT) {
      snprintf(error, error_size, "log directory %s: %s", log_dir, strerror(-rc));
      return rc;
    }
  }
  snprintf(error, error_size, "log directory %s: files kept vanishing while listed (%u tries)",
    log_dir, TALLY_BACKUP_OPEN_TRIES);
  return -EAGAIN;
}

/*
 * Creates dir and any missing parent (each 0700), as `mkdir -p` does: a
 * backup goes to /var/backups/tally/DATE without the operator making the
 * parents first. 0, or -errno of the first component that failed.
 */
static int make_dirs(const char *dir)
{
  char path[PATH_MAX];
  size_t length = strlen(dir);
  if (length == 0 || length >= sizeof path) return -ENAMETOOLONG;
  memcpy(path, dir, length + 1);
  /* Bounded by the path's length: one mkdir per component. */
  for (size_t i = 1; i <= length; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) return -errno;
    path[i] = saved;
  }
  return 0;
}

/* dir/gNNNNNN, created empty (a leftover of a crashed run, never in the manifest, emptied). */
static int generation_dir(const char *dir, uint32_t generation, char *path, size_t path_size)
{
  snprintf(path, path_size, "%s/g%06u", dir, generation);
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return -errno;
  DIR *directory = opendir(path);
  if (directory == NULL) return -errno;
  struct dirent *entry;
  /* Bounded by the leftover's entries. */
  while ((entry = readdir(directory)) != NULL) {
    if (entry->d_name[0] != '.') unlinkat(dirfd(directory), entry->d_name, 0);
  }
  closedir(directory);
  return 0;
}

static struct tally_backup_file *add_file(struct tally_backup_manifest *manifest,
  uint32_t generation, enum tally_backup_file_kind kind, const char *name,
  const struct tally_backup_copied *copied)
{
  assert(manifest->file_count < TALLY_BACKUP_FILES_MAX);
  struct tally_backup_file *file = &manifest->files[manifest->file_count++];
  memset(file, 0, sizeof *file);
  file->generation = generation;
  file->kind = kind;
  snprintf(file->path, sizeof file->path, "g%06u/%s", generation, name);
  file->size = copied->size;
  memcpy(file->hash, copied->hash, sizeof file->hash);
  file->first_lsn = copied->first_lsn;
  file->last_lsn = copied->last_lsn;
  return file;
}

static int copy_checkpoint(struct source *source, const char *gen_path,
  struct tally_backup_manifest *manifest, uint32_t generation,
  struct tally_backup_progress *progress, char *error, size_t error_size)
{
  tally_backup_progress_file(progress, source->checkpoint_name);
  int dst = tally_backup_create_in(gen_path, source->checkpoint_name);
  struct tally_backup_copied copied;
  int rc = dst < 0 ? dst : tally_backup_copy_file(source->checkpoint_fd, dst, progress, &copied);
  if (dst >= 0) close(dst);
  if (rc != 0) {
    snprintf(error, error_size, "copying checkpoint %s: %s", source->checkpoint_name,
      strerror(-rc));
    return rc;
  }
  copied.first_lsn = source->header.begin_lsn;
  copied.last_lsn = source->header.end_lsn;
  add_file(manifest, generation, TALLY_BACKUP_CHECKPOINT, source->checkpoint_name, &copied);
  return 0;
}

/*
 * Copies the open segments' records from from_lsn on into gen_path, one file
 * per segment named for its first copied LSN, requiring each to begin where
 * the one before ended. *last_lsn: the last record copied (from_lsn - 1 if
 * none).
 */
static int copy_segments(struct source *source, const char *gen_path, uint64_t from_lsn,
  struct tally_backup_manifest *manifest, uint32_t generation,
  struct tally_backup_progress *progress, uint64_t *last_lsn, uint32_t *last_crc,
  char *error, size_t error_size)
{
  *last_lsn = from_lsn - 1u;
  for (uint32_t i = source->first_open; i < source->segment_count; i++) {
    uint64_t segment_lsn = source->segment_lsns[i];
    uint64_t from = *last_lsn + 1u;
    if (segment_lsn > from) {
      snprintf(error, error_size, "the node's log has a gap: LSN %" PRIu64 " is in no segment "
        "(segment wal-%016" PRIx64 ".log damaged?)", from, source->segment_lsns[i - 1u]);
      return -EILSEQ;
    }
    if (manifest->file_count == TALLY_BACKUP_FILES_MAX) {
      snprintf(error, error_size, "more than %u files in the backup", TALLY_BACKUP_FILES_MAX);
      return -E2BIG;
    }
    char name[TALLY_DISK_NAME_SIZE_MAX];
    tally_wal_segment_name(name, from);
    tally_backup_progress_file(progress, name);
    int dst = tally_backup_create_in(gen_path, name);
    if (dst < 0) {
      snprintf(error, error_size, "%s/%s: %s", gen_path, name, strerror(-dst));
      return dst;
    }
    struct tally_backup_copied copied;
    int rc = tally_backup_copy_records(source->segment_fds[i], segment_lsn, from, UINT64_MAX,
      dst, progress, &copied, error, error_size);
    close(dst);
    if (rc == 0 && copied.records == 0) { /* nothing after from here (an empty newest one) */
      char path[4096];
      if (tally_backup_path(path, sizeof path, gen_path, name) == 0) unlink(path);
      continue;
    }
    if (rc != 0) {
      if (rc != -EILSEQ) snprintf(error, error_size, "copying %s: %s", name, strerror(-rc));
      return rc;
    }
    assert(copied.first_lsn == from);
    add_file(manifest, generation, TALLY_BACKUP_WAL, name, &copied);
    *last_lsn = copied.last_lsn;
    *last_crc = copied.last_crc;
  }
  return 0;
}

/* An incremental continues this store's log: the record at the backup's last LSN must match. */
static int same_log(struct source *source, const struct tally_backup_generation *last,
  char *error, size_t error_size)
{
  uint32_t holding = segment_holding(source, last->last_lsn);
  if (holding == source->segment_count || holding < source->first_open) {
    return 0; /* the record itself was cut: LSN continuity is all there is to check */
  }
  struct tally_backup_copied copied;
  char scratch[192];
  int rc = tally_backup_copy_records(source->segment_fds[holding], source->segment_lsns[holding],
    last->last_lsn, last->last_lsn, -1, NULL, &copied, scratch, sizeof scratch);
  if (rc == 0 && copied.records == 1 && copied.last_crc == last->last_crc) return 0;
  snprintf(error, error_size, "the node's log %s LSN %" PRIu64 " of the backup's last "
    "generation: another store, or restored to an earlier point; take a full backup into a "
    "new directory", copied.records == 0 ? "does not reach" : "holds another record at",
    last->last_lsn);
  return -EILSEQ;
}

static void summarize(const struct tally_backup_manifest *manifest, uint32_t generation,
  uint32_t first_file, struct tally_backup_summary *summary)
{
  summary->generation = generation;
  summary->generations = manifest->generation_count;
  snprintf(summary->node, sizeof summary->node, "%s", manifest->node);
  for (uint32_t f = first_file; f < manifest->file_count; f++) {
    const struct tally_backup_file *file = &manifest->files[f];
    summary->files++;
    summary->bytes += file->size;
    if (file->kind == TALLY_BACKUP_CHECKPOINT) {
      summary->checkpoint_begin_lsn = file->first_lsn;
      summary->checkpoint_end_lsn = file->last_lsn;
    }
  }
}

static uint64_t source_bytes(const struct source *source)
{
  uint64_t total = 0;
  struct stat status;
  if (source->checkpoint_fd >= 0 && fstat(source->checkpoint_fd, &status) == 0) {
    total += (uint64_t)status.st_size;
  }
  for (uint32_t i = source->first_open; i < source->segment_count; i++) {
    if (fstat(source->segment_fds[i], &status) == 0) total += (uint64_t)status.st_size;
  }
  return total;
}

/* Copies one generation from the open source and writes the manifest that lists it. */
static enum tally_backup_result take_generation(struct source *source,
  const struct tally_backup_request *request, struct tally_backup_manifest *manifest,
  uint64_t from_lsn, struct tally_backup_progress *progress, struct tally_backup_summary *summary,
  char *error, size_t error_size)
{
  uint32_t generation = manifest->generation_count + 1u;
  bool full = generation == 1u;
  char gen_path[4096];
  int rc = generation_dir(request->dir, generation, gen_path, sizeof gen_path);
  if (rc != 0) {
    snprintf(error, error_size, "%s/g%06u: %s", request->dir, generation, strerror(-rc));
    return TALLY_BACKUP_FAILED;
  }
  uint32_t first_file = manifest->file_count;
  progress->total_bytes = source_bytes(source);
  if (full && copy_checkpoint(source, gen_path, manifest, generation, progress, error,
      error_size) != 0) {
    return TALLY_BACKUP_FAILED;
  }
  uint64_t last_lsn = 0;
  uint32_t last_crc = 0;
  if (copy_segments(source, gen_path, from_lsn, manifest, generation, progress, &last_lsn,
      &last_crc, error, error_size) != 0) {
    return TALLY_BACKUP_FAILED;
  }
  tally_backup_progress_end(progress);
  if (last_lsn < from_lsn) { /* an incremental with nothing new (a full one has its marks) */
    rmdir(gen_path);
    summarize(manifest, 0, manifest->file_count, summary);
    summary->first_lsn = from_lsn;
    summary->last_lsn = from_lsn - 1u;
    return TALLY_BACKUP_OK;
  }
  struct tally_backup_generation *gen = &manifest->generations[manifest->generation_count++];
  *gen = (struct tally_backup_generation){ .number = generation, .full = full,
    .created_unix = (uint64_t)time(NULL), .first_lsn = from_lsn, .last_lsn = last_lsn,
    .last_crc = last_crc };
  if ((rc = tally_backup_sync_dir(gen_path)) != 0 ||
      (rc = tally_backup_manifest_write(request->dir, manifest)) != 0) {
    snprintf(error, error_size, "%s: writing the manifest: %s", request->dir, strerror(-rc));
    return TALLY_BACKUP_FAILED;
  }
  summarize(manifest, generation, first_file, summary);
  summary->first_lsn = from_lsn;
  summary->last_lsn = last_lsn;
  return TALLY_BACKUP_OK;
}

enum tally_backup_result tally_backup_take(const struct tally_backup_request *request,
  struct tally_backup_progress *progress, struct tally_backup_summary *summary,
  char *error, size_t error_size)
{
  memset(summary, 0, sizeof *summary);
  struct tally_backup_manifest *manifest = calloc(1, sizeof *manifest);
  struct source *source = calloc(1, sizeof *source);
  enum tally_backup_result result = TALLY_BACKUP_FAILED;
  if (manifest == NULL || source == NULL) {
    snprintf(error, error_size, "out of memory");
    goto out;
  }
  source->checkpoint_fd = -1;
  int rc = tally_backup_manifest_read(request->dir, manifest, error, error_size);
  bool full = rc == -ENOENT;
  if (full) error[0] = '\0'; /* no MANIFEST: a full backup */
  if (full && request->incremental) {
    snprintf(error, error_size, "%s: no backup to add to (no %s): take a full backup first",
      request->dir, TALLY_BACKUP_MANIFEST_NAME);
    goto out;
  }
  if (!full && rc != 0) goto out;
  if (!full && !request->incremental) {
    snprintf(error, error_size, "%s holds a backup already: add to it with --incremental, or "
      "give an empty directory", request->dir);
    goto out;
  }
  if (full) {
    int made = make_dirs(request->dir);
    if (made != 0) {
      snprintf(error, error_size, "%s: %s", request->dir, strerror(-made));
      goto out;
    }
    memset(manifest, 0, sizeof *manifest);
    snprintf(manifest->node, sizeof manifest->node, "%s", request->node);
  } else if (strcmp(manifest->node, request->node) != 0) {
    snprintf(error, error_size, "%s holds a backup of node %s, not %s", request->dir,
      manifest->node, request->node);
    goto out;
  } else if (manifest->generation_count == TALLY_BACKUP_GENERATIONS_MAX) {
    snprintf(error, error_size, "%s: %u generations already: take a full backup into a new "
      "directory", request->dir, TALLY_BACKUP_GENERATIONS_MAX);
    goto out;
  }
  const struct tally_backup_generation *last = full ? NULL :
    &manifest->generations[manifest->generation_count - 1u];
  uint64_t from_lsn = full ? 0 : last->last_lsn + 1u;
  if (source_open(source, request->log_dir, full, from_lsn, error, error_size) != 0) goto out;
  if (full) {
    from_lsn = source->header.begin_lsn + 1u;
    manifest->image_format = source->header.image_format;
    manifest->image_size = source->header.image_size;
  } else if (same_log(source, last, error, error_size) != 0) {
    goto out;
  }
  result = take_generation(source, request, manifest, from_lsn, progress, summary, error,
    error_size);
out:
  if (source != NULL) source_close(source);
  free(source);
  free(manifest);
  return result;
}
