/*
 * backup_files.c — backup_files.h: copies that hash what they write, the
 * record-by-record copy of a log segment (the log's own record check on every
 * record), and the manifest's file. Thread: tallyctl's one thread.
 */
#include "backup_files.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_record.h"

static_assert(TALLY_BACKUP_COPY_WINDOW_SIZE >= 2u * TALLY_WAL_RECORD_SIZE_MAX,
  "a record always fits in the window after a refill");

static int read_at(int fd, uint8_t *buffer, size_t size, uint64_t offset, size_t *got)
{
  *got = 0;
  /* Bounded by size: every round reads bytes or ends. */
  while (*got < size) {
    ssize_t n = pread(fd, buffer + *got, size - *got, (off_t)(offset + *got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    *got += (size_t)n;
  }
  return 0;
}

static int write_all(int fd, const uint8_t *data, size_t size)
{
  /* Bounded by size: every round writes bytes or fails. */
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    data += n;
    size -= (size_t)n;
  }
  return 0;
}

int tally_backup_copy_file(int src, int dst, struct tally_backup_progress *progress,
  struct tally_backup_copied *copied)
{
  memset(copied, 0, sizeof *copied);
  uint8_t *buffer = malloc(TALLY_BACKUP_COPY_WINDOW_SIZE);
  if (buffer == NULL) return -ENOMEM;
  crypto_generichash_state state;
  crypto_generichash_init(&state, NULL, 0, TALLY_BACKUP_HASH_SIZE);
  int rc = 0;
  /* Bounded by the file's size: every round copies a window or ends. */
  for (;;) {
    size_t got = 0;
    rc = read_at(src, buffer, TALLY_BACKUP_COPY_WINDOW_SIZE, copied->size, &got);
    if (rc != 0 || got == 0) break;
    if (dst >= 0 && (rc = write_all(dst, buffer, got)) != 0) break;
    crypto_generichash_update(&state, buffer, got);
    copied->size += got;
    tally_backup_progress_add(progress, got);
  }
  crypto_generichash_final(&state, copied->hash, TALLY_BACKUP_HASH_SIZE);
  free(buffer);
  if (rc == 0 && dst >= 0 && fsync(dst) != 0) rc = -errno;
  return rc;
}

int tally_backup_hash_file(int fd, struct tally_backup_progress *progress, uint64_t *size,
  uint8_t hash[TALLY_BACKUP_HASH_SIZE])
{
  struct tally_backup_copied copied;
  int rc = tally_backup_copy_file(fd, -1, progress, &copied);
  *size = copied.size;
  memcpy(hash, copied.hash, TALLY_BACKUP_HASH_SIZE);
  return rc;
}

/* One record at buffer[at..): false at the end of the valid records. */
static bool next_record(const uint8_t *buffer, size_t size, size_t at,
  struct tally_wal_record *record)
{
  if (at >= size) return false;
  return tally_wal_record_check(buffer + at, size - at, record) == TALLY_WAL_RECORD_VALID;
}

int tally_backup_copy_records(int src, uint64_t segment_lsn, uint64_t from_lsn, uint64_t to_lsn,
  int dst, struct tally_backup_progress *progress, struct tally_backup_copied *copied,
  char *error, size_t error_size)
{
  assert(segment_lsn >= 1 && from_lsn >= segment_lsn && to_lsn >= from_lsn);
  memset(copied, 0, sizeof *copied);
  uint8_t *buffer = malloc(TALLY_BACKUP_COPY_WINDOW_SIZE);
  if (buffer == NULL) return -ENOMEM;
  crypto_generichash_state state;
  crypto_generichash_init(&state, NULL, 0, TALLY_BACKUP_HASH_SIZE);
  uint64_t expected = segment_lsn;
  uint64_t window_offset = 0; /* the file offset of buffer[0] */
  size_t window_size = 0, at = 0;
  bool end_read = false;      /* the window holds the end of the file */
  bool refilled = false;      /* the window was just refilled at this record */
  int rc = 0;
  /* Bounded by the segment's size: every round consumes a record, refills once, or ends. */
  while (expected <= to_lsn) {
    struct tally_wal_record record;
    if (!next_record(buffer, window_size, at, &record)) {
      if (end_read || refilled) break; /* the valid records end here */
      window_offset += at;
      at = 0;
      rc = read_at(src, buffer, TALLY_BACKUP_COPY_WINDOW_SIZE, window_offset, &window_size);
      if (rc != 0) break;
      end_read = window_size < TALLY_BACKUP_COPY_WINDOW_SIZE;
      refilled = true;
      continue;
    }
    refilled = false;
    if (record.lsn != expected) {
      snprintf(error, error_size, "segment wal-%016" PRIx64 ".log: record at offset %" PRIu64
        " has LSN %" PRIu64 ", expected %" PRIu64, segment_lsn, window_offset + at, record.lsn,
        expected);
      rc = -EILSEQ;
      break;
    }
    if (record.lsn >= from_lsn) {
      if (dst >= 0 && (rc = write_all(dst, buffer + at, record.size)) != 0) break;
      crypto_generichash_update(&state, buffer + at, record.size);
      if (copied->records == 0) copied->first_lsn = record.lsn;
      copied->last_lsn = record.lsn;
      copied->last_crc = (uint32_t)buffer[at + 36] | (uint32_t)buffer[at + 37] << 8 |
        (uint32_t)buffer[at + 38] << 16 | (uint32_t)buffer[at + 39] << 24;
      copied->records++;
      copied->size += record.size;
    }
    tally_backup_progress_add(progress, record.size);
    at += record.size;
    expected++;
  }
  crypto_generichash_final(&state, copied->hash, TALLY_BACKUP_HASH_SIZE);
  free(buffer);
  if (rc == 0 && dst >= 0 && fsync(dst) != 0) rc = -errno;
  return rc;
}

int tally_backup_path(char *out, size_t size, const char *dir, const char *name)
{
  int n = snprintf(out, size, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int tally_backup_open_in(const char *dir, const char *name)
{
  char path[4096];
  int rc = tally_backup_path(path, sizeof path, dir, name);
  if (rc != 0) return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

int tally_backup_create_in(const char *dir, const char *name)
{
  char path[4096];
  int rc = tally_backup_path(path, sizeof path, dir, name);
  if (rc != 0) return rc;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  return fd >= 0 ? fd : -errno;
}

int tally_backup_manifest_read(const char *dir, struct tally_backup_manifest *manifest,
  char *error, size_t error_size)
{
  int fd = tally_backup_open_in(dir, TALLY_BACKUP_MANIFEST_NAME);
  if (fd < 0) {
    snprintf(error, error_size, "%s/%s: %s", dir, TALLY_BACKUP_MANIFEST_NAME, strerror(-fd));
    return fd;
  }
  char *text = malloc(TALLY_BACKUP_MANIFEST_SIZE_MAX + 1u);
  size_t got = 0;
  int rc = text == NULL ? -ENOMEM :
    read_at(fd, (uint8_t *)text, TALLY_BACKUP_MANIFEST_SIZE_MAX + 1u, 0, &got);
  close(fd);
  if (rc != 0) {
    snprintf(error, error_size, "%s/%s: %s", dir, TALLY_BACKUP_MANIFEST_NAME, strerror(-rc));
  } else if (!tally_backup_manifest_parse(text, got, manifest, error, error_size)) {
    rc = -EILSEQ;
  }
  free(text);
  return rc;
}

int tally_backup_sync_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

int tally_backup_manifest_write(const char *dir, const struct tally_backup_manifest *manifest)
{
  size_t size = 0;
  char *text = tally_backup_manifest_format(manifest, &size);
  if (text == NULL) return -ENOMEM;
  char temporary[4096], final[4096];
  snprintf(temporary, sizeof temporary, "%s/%s.tmp", dir, TALLY_BACKUP_MANIFEST_NAME);
  snprintf(final, sizeof final, "%s/%s", dir, TALLY_BACKUP_MANIFEST_NAME);
  int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd < 0 ? -errno : write_all(fd, (const uint8_t *)text, size);
  if (rc == 0 && fsync(fd) != 0) rc = -errno;
  if (fd >= 0) close(fd);
  free(text);
  if (rc == 0 && rename(temporary, final) != 0) rc = -errno;
  if (rc == 0) rc = tally_backup_sync_dir(dir);
  return rc;
}

bool tally_backup_dir_empty(const char *path)
{
  DIR *directory = opendir(path);
  if (directory == NULL) return errno == ENOENT;
  bool empty = true;
  struct dirent *entry;
  /* Bounded by the directory: stops at its first real entry. */
  while (empty && (entry = readdir(directory)) != NULL) {
    empty = strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0;
  }
  closedir(directory);
  return empty;
}
