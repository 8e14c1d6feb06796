/*
 * backup_verify.c — tally_backup_verify (backup.h): every file's size and
 * BLAKE2b against the manifest; the checkpoint through the checkpoint reader
 * (header, CRC table, every chunk) and the log of each generation through
 * the log's recovery scan (every record's CRCs and LSN), never re-implemented
 * here; and the chain's LSN continuity from the checkpoint's begin_lsn + 1
 * through the last incremental. Thread: tallyctl's one thread.
 */
#include "backup.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup_files.h"
#include "checkpoint.h"
#include "wal.h"

struct verify {
  const char *dir;
  FILE *stream;
  uint32_t damaged;
  struct tally_backup_progress *progress;
};

static void damage(struct verify *verify, const char *format, ...)
  __attribute__((format(printf, 2, 3)));
static void damage(struct verify *verify, const char *format, ...)
{
  verify->damaged++;
  if (verify->stream == NULL || verify->damaged > TALLY_BACKUP_ERRORS_PRINTED_MAX) return;
  va_list arguments;
  va_start(arguments, format);
  fprintf(verify->stream, "damaged: %s: ", verify->dir);
  vfprintf(verify->stream, format, arguments);
  fputc('\n', verify->stream);
  va_end(arguments);
}

/* Size and BLAKE2b of one listed file. */
static void check_file(struct verify *verify, const struct tally_backup_file *file)
{
  tally_backup_progress_file(verify->progress, file->path);
  int fd = tally_backup_open_in(verify->dir, file->path);
  if (fd < 0) {
    damage(verify, "%s: %s", file->path, strerror(-fd));
    return;
  }
  uint64_t size = 0;
  uint8_t hash[TALLY_BACKUP_HASH_SIZE];
  int rc = tally_backup_hash_file(fd, verify->progress, &size, hash);
  close(fd);
  if (rc != 0) damage(verify, "%s: %s", file->path, strerror(-rc));
  else if (size != file->size) {
    damage(verify, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, file->path, size,
      file->size);
  } else if (sodium_memcmp(hash, file->hash, sizeof hash) != 0) {
    damage(verify, "%s: BLAKE2b mismatch (changed since the backup)", file->path);
  }
}

/* A tally_disk on one generation's directory (the readers work through one). */
static bool open_generation(struct verify *verify, uint32_t number, struct tally_disk *disk,
  struct tally_disk_posix *posix)
{
  char path[4096], error[256];
  snprintf(path, sizeof path, "%s/g%06u", verify->dir, number);
  if (access(path, F_OK) != 0) {
    damage(verify, "g%06u: %s", number, strerror(errno));
    return false;
  }
  if (tally_disk_posix_open(disk, posix, path, error, sizeof error) != 0) {
    damage(verify, "g%06u: %s", number, error);
    return false;
  }
  return true;
}

static int sink_begin(void *context, const struct tally_checkpoint_header *header)
{
  (void)context;
  (void)header;
  return 0;
}

static int sink_chunk(void *context, uint64_t offset, const void *data, size_t size)
{
  (void)offset;
  (void)data;
  tally_backup_progress_add(context, size);
  return 0;
}

/* The full generation's checkpoint, every byte, by the checkpoint reader. */
static void check_checkpoint(struct verify *verify, const struct tally_backup_file *file)
{
  struct tally_disk disk;
  struct tally_disk_posix posix;
  if (!open_generation(verify, file->generation, &disk, &posix)) return;
  struct tally_checkpoint_reader *reader = tally_checkpoint_reader_create();
  struct tally_checkpoint_recovery recovery;
  const struct tally_checkpoint_sink sink = { .begin = sink_begin, .chunk = sink_chunk,
    .context = verify->progress };
  enum tally_checkpoint_status status = reader == NULL ? TALLY_CHECKPOINT_IO_ERROR :
    tally_checkpoint_recover(reader, &disk, &sink, &recovery);
  tally_checkpoint_reader_destroy(reader);
  tally_disk_posix_close(&posix);
  const char *name = strchr(file->path, '/') + 1;
  if (status != TALLY_CHECKPOINT_OK) {
    damage(verify, "%s: the checkpoint reader refuses it: %s%s%s", file->path,
      tally_checkpoint_status_name(status), recovery.report[0] != '\0' ? ": " : "",
      recovery.report);
  } else if (strcmp(recovery.name, name) != 0) {
    damage(verify, "%s: the reader chose %s instead (a file not in the manifest?)", file->path,
      recovery.name);
  } else if (recovery.header.begin_lsn != file->first_lsn ||
             recovery.header.end_lsn != file->last_lsn) {
    damage(verify, "%s: LSNs %" PRIu64 "..%" PRIu64 ", the manifest says %" PRIu64 "..%" PRIu64,
      file->path, recovery.header.begin_lsn, recovery.header.end_lsn, file->first_lsn,
      file->last_lsn);
  }
}

/* One generation's log, by the log's recovery scan: every record, no tear, first..last. */
static void check_log(struct verify *verify, const struct tally_backup_generation *gen)
{
  struct tally_disk disk;
  struct tally_disk_posix posix;
  if (!open_generation(verify, gen->number, &disk, &posix)) return;
  struct tally_wal_scanner *scanner = tally_wal_scanner_create();
  struct tally_wal_scan scan;
  memset(&scan, 0, sizeof scan);
  enum tally_wal_status status = scanner == NULL ? TALLY_WAL_IO_ERROR :
    tally_wal_scan(scanner, &disk, gen->first_lsn, &scan);
  tally_wal_scanner_destroy(scanner);
  tally_disk_posix_close(&posix);
  if (status != TALLY_WAL_OK) {
    damage(verify, "g%06u: the log scan refuses it: %s", gen->number,
      scan.error[0] != '\0' ? scan.error : tally_wal_status_name(status));
  } else if (scan.torn) {
    damage(verify, "g%06u: %" PRIu64 " bytes after LSN %" PRIu64 " are not a record",
      gen->number, scan.torn_bytes, scan.lsn_last);
  } else if (scan.lsn_last != gen->last_lsn) {
    damage(verify, "g%06u: its log ends at LSN %" PRIu64 ", the manifest says %" PRIu64,
      gen->number, scan.lsn_last, gen->last_lsn);
  }
}

/* The chain: the files of each generation, and the generations, follow LSN by LSN. */
static void check_chain(struct verify *verify, const struct tally_backup_manifest *manifest,
  struct tally_backup_summary *summary)
{
  uint64_t next = 0; /* the LSN the next segment must begin at */
  uint32_t checkpoints = 0;
  for (uint32_t f = 0; f < manifest->file_count; f++) {
    const struct tally_backup_file *file = &manifest->files[f];
    if (file->kind == TALLY_BACKUP_CHECKPOINT) {
      checkpoints++;
      if (file->generation != 1u || next != 0) {
        damage(verify, "%s: a checkpoint outside the full generation's start", file->path);
      }
      next = file->first_lsn + 1u;
      summary->checkpoint_begin_lsn = file->first_lsn;
      summary->checkpoint_end_lsn = file->last_lsn;
      continue;
    }
    if (next != 0 && file->first_lsn != next) {
      damage(verify, "%s: begins at LSN %" PRIu64 ", expected %" PRIu64 " (a segment %s)",
        file->path, file->first_lsn, next, file->first_lsn > next ? "is missing" :
        "overlaps or is out of order");
    }
    next = file->last_lsn + 1u;
  }
  if (checkpoints != 1u) damage(verify, "%u checkpoints listed, want 1", checkpoints);
  uint64_t expected = summary->checkpoint_begin_lsn + 1u;
  for (uint32_t g = 0; g < manifest->generation_count; g++) {
    const struct tally_backup_generation *gen = &manifest->generations[g];
    if (gen->first_lsn != expected || gen->last_lsn < gen->first_lsn) {
      damage(verify, "g%06u: LSNs %" PRIu64 "..%" PRIu64 ", expected to begin at %" PRIu64
        " (a generation missing or out of order)", gen->number, gen->first_lsn, gen->last_lsn,
        expected);
    }
    expected = gen->last_lsn + 1u;
  }
  summary->first_lsn = summary->checkpoint_begin_lsn + 1u;
  summary->last_lsn = expected - 1u;
}

enum tally_backup_result tally_backup_verify(const char *dir, FILE *damage_stream,
  struct tally_backup_progress *progress, struct tally_backup_summary *summary,
  char *error, size_t error_size)
{
  memset(summary, 0, sizeof *summary);
  struct tally_backup_manifest *manifest = calloc(1, sizeof *manifest);
  if (manifest == NULL) {
    snprintf(error, error_size, "out of memory");
    return TALLY_BACKUP_FAILED;
  }
  int rc = tally_backup_manifest_read(dir, manifest, error, error_size);
  if (rc != 0) {
    free(manifest);
    return rc == -EILSEQ ? TALLY_BACKUP_DAMAGED : TALLY_BACKUP_FAILED;
  }
  struct verify verify = { .dir = dir, .stream = damage_stream, .progress = progress };
  for (uint32_t f = 0; f < manifest->file_count; f++) {
    progress->total_bytes += 2u * manifest->files[f].size; /* hashed, then read by a reader */
  }
  check_chain(&verify, manifest, summary);
  for (uint32_t f = 0; f < manifest->file_count; f++) check_file(&verify, &manifest->files[f]);
  /* The readers only on files whose bytes are the ones backed up. */
  if (verify.damaged == 0) {
    for (uint32_t f = 0; f < manifest->file_count; f++) {
      if (manifest->files[f].kind == TALLY_BACKUP_CHECKPOINT) {
        check_checkpoint(&verify, &manifest->files[f]);
      }
    }
    for (uint32_t g = 0; g < manifest->generation_count; g++) {
      check_log(&verify, &manifest->generations[g]);
    }
  }
  tally_backup_progress_end(progress);
  summary->generations = manifest->generation_count;
  summary->files = manifest->file_count;
  for (uint32_t f = 0; f < manifest->file_count; f++) summary->bytes += manifest->files[f].size;
  snprintf(summary->node, sizeof summary->node, "%s", manifest->node);
  summary->damaged = verify.damaged;
  if (verify.damaged > TALLY_BACKUP_ERRORS_PRINTED_MAX && damage_stream != NULL) {
    fprintf(damage_stream, "damaged: %s: %u problems in all (the first %u shown)\n", dir,
      verify.damaged, TALLY_BACKUP_ERRORS_PRINTED_MAX);
  }
  free(manifest);
  return verify.damaged == 0 ? TALLY_BACKUP_OK : TALLY_BACKUP_DAMAGED;
}
