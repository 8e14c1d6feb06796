/*
 * wal.c — the write-ahead log's writer (wal.h): records appended into one
 * group buffer, written with one pwrite and made durable with one fdatasync
 * per commit; segments started when the next record would not fit, each only
 * after the previous one was synced; segments behind a checkpoint removed.
 * Memory: one allocation at open (the group buffer and the segment list).
 *
 * Thread: the persister (not thread-safe).
 */
#include "wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tally_wal_options_default(struct tally_wal_options *options)
{
  assert(options != NULL);
  options->segment_size = TALLY_WAL_SEGMENT_SIZE_DEFAULT;
  options->group_size = TALLY_WAL_GROUP_SIZE_DEFAULT;
}

const char *tally_wal_status_name(enum tally_wal_status status)
{
  static const char *const names[TALLY_WAL_STATUS_COUNT] = {
    "ok", "full", "corrupt", "i/o error", "stopped",
  };
  assert((uint32_t)status < TALLY_WAL_STATUS_COUNT);
  return names[status];
}

static bool wal_options_valid(const struct tally_wal_options *options)
{
  if (options->segment_size < TALLY_WAL_SEGMENT_SIZE_MIN) return false;
  if (options->segment_size > TALLY_WAL_SEGMENT_SIZE_MAX) return false;
  if (options->segment_size % TALLY_WAL_RECORD_ALIGN != 0) return false;
  if (options->group_size < TALLY_WAL_GROUP_SIZE_MIN) return false;
  if (options->group_size > TALLY_WAL_GROUP_SIZE_MAX) return false;
  return options->group_size <= options->segment_size;
}

/* A write or sync failed: the pages it covered may be lost, so nothing is trusted after it. */
static enum tally_wal_status wal_fail(struct tally_wal *wal, int error)
{
  assert(error < 0);
  wal->failed = true;
  wal->error = error;
  return TALLY_WAL_IO_ERROR;
}

/* Creates the segment for lsn_next and makes its name durable. 0 or -errno. */
static int wal_segment_create(struct tally_wal *wal)
{
  assert(wal->group_used == 0);
  if (wal->segment_count == TALLY_WAL_SEGMENTS_MAX) return -ENOSPC;
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, wal->lsn_next);
  int file = wal->disk->ops->open(wal->disk->context, name, true);
  if (file < 0) return file;
  int result = wal->disk->ops->sync_dir(wal->disk->context);
  if (result != 0) {
    wal->disk->ops->close(wal->disk->context, file);
    return result;
  }
  wal->segment_file = file;
  wal->segment_lsn = wal->lsn_next;
  wal->segment_used = 0;
  wal->segment_lsns[wal->segment_count++] = wal->lsn_next;
  return 0;
}

/* Re-opens the newest segment, cuts its torn tail, and syncs it and the directory. */
static int wal_segment_resume(struct tally_wal *wal, const struct tally_wal_scan *scan)
{
  assert(scan->tail_segment_lsn != 0);
  assert(scan->tail_offset % TALLY_WAL_RECORD_ALIGN == 0);
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, scan->tail_segment_lsn);
  const struct tally_disk_ops *ops = wal->disk->ops;
  int file = ops->open(wal->disk->context, name, false);
  if (file < 0) return file;
  int64_t size = ops->size(wal->disk->context, file);
  int result = size < 0 ? (int)size : 0;
  if (result == 0 && (uint64_t)size != scan->tail_offset) {
    result = ops->truncate(wal->disk->context, file, scan->tail_offset);
  }
  if (result == 0) result = ops->sync(wal->disk->context, file);
  if (result == 0) result = ops->sync_dir(wal->disk->context);
  if (result != 0) {
    ops->close(wal->disk->context, file);
    return result;
  }
  wal->segment_file = file;
  wal->segment_lsn = scan->tail_segment_lsn;
  wal->segment_used = scan->tail_offset;
  return 0;
}

/* The group buffer and the segment list, in one allocation. */
static int wal_allocate(struct tally_wal *wal, const struct tally_wal_scan *scan)
{
  size_t list_size = TALLY_WAL_SEGMENTS_MAX * sizeof(uint64_t);
  uint8_t *memory = aligned_alloc(4096, list_size + wal->options.group_size);
  if (memory == NULL) return -ENOMEM;
  wal->segment_lsns = (uint64_t *)memory;
  wal->group = memory + list_size;
  assert(scan->segment_count <= TALLY_WAL_SEGMENTS_MAX);
  if (scan->segment_count > 0) {
    memcpy(wal->segment_lsns, scan->segment_lsns, scan->segment_count * sizeof(uint64_t));
  }
  wal->segment_count = scan->segment_count;
  return 0;
}

int tally_wal_open(struct tally_wal *wal, struct tally_disk *disk,
  const struct tally_wal_options *options, const struct tally_wal_scan *scan,
  char *error, size_t error_size)
{
  assert(wal != NULL && disk != NULL && options != NULL && scan != NULL);
  memset(wal, 0, sizeof(*wal));
  wal->segment_file = -1;
  if (!wal_options_valid(options)) {
    snprintf(error, error_size, "log options out of range (segment %" PRIu64 ", group %u bytes)",
      options->segment_size, options->group_size);
    return -EINVAL;
  }
  if (scan->status != TALLY_WAL_OK) {
    snprintf(error, error_size, "the log did not recover: %s", scan->error);
    return -EINVAL;
  }
  wal->disk = disk;
  wal->options = *options;
  wal->lsn_durable = scan->lsn_last;
  wal->lsn_next = scan->lsn_last + 1u;
  int result = wal_allocate(wal, scan);
  if (result == 0 && scan->tail_segment_lsn != 0) result = wal_segment_resume(wal, scan);
  else if (result == 0) result = wal_segment_create(wal);
  if (result != 0) {
    snprintf(error, error_size, "cannot open the log for writing: %s", strerror(-result));
    free(wal->segment_lsns);
    memset(wal, 0, sizeof(*wal));
    wal->segment_file = -1;
    return result;
  }
  assert(wal->segment_count >= 1);
  assert(wal->segment_lsns[wal->segment_count - 1u] == wal->segment_lsn);
  return 0;
}

void tally_wal_close(struct tally_wal *wal)
{
  assert(wal != NULL);
  if (wal->segment_file >= 0) wal->disk->ops->close(wal->disk->context, wal->segment_file);
  wal->segment_file = -1;
  free(wal->segment_lsns); /* the start of the one allocation */
  wal->segment_lsns = NULL;
  wal->group = NULL;
}

/* The group is empty and the next record does not fit the segment: start the next one. */
static enum tally_wal_status wal_roll(struct tally_wal *wal)
{
  assert(wal->group_used == 0);
  assert(wal->lsn_durable + 1u == wal->lsn_next);
  wal->disk->ops->close(wal->disk->context, wal->segment_file); /* synced by the last commit */
  wal->segment_file = -1;
  int result = wal_segment_create(wal);
  return result == 0 ? TALLY_WAL_OK : wal_fail(wal, result);
}

enum tally_wal_status tally_wal_append(struct tally_wal *wal, uint16_t type, const void *payload,
  uint32_t payload_size, struct tally_wal_appended *appended)
{
  assert(wal != NULL && wal->group != NULL);
  assert(payload_size <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  if (wal->failed) return TALLY_WAL_IO_ERROR;
  uint32_t size = tally_wal_record_size(payload_size);
  if (wal->segment_used + wal->group_used + size > wal->options.segment_size) {
    if (wal->group_used > 0) return TALLY_WAL_FULL;
    enum tally_wal_status status = wal_roll(wal);
    if (status != TALLY_WAL_OK) return status;
  }
  if (wal->group_used + size > wal->options.group_size) return TALLY_WAL_FULL;
  tally_wal_record_encode(wal->group + wal->group_used, type, wal->lsn_next, wal->lsn_durable,
    payload, payload_size);
  if (appended != NULL) {
    appended->lsn = wal->lsn_next;
    appended->segment_lsn = wal->segment_lsn;
    appended->offset = wal->segment_used + wal->group_used;
    appended->size = size;
  }
  wal->group_used += size;
  wal->group_records++;
  wal->lsn_next++;
  assert(wal->segment_used + wal->group_used <= wal->options.segment_size);
  return TALLY_WAL_OK;
}

enum tally_wal_status tally_wal_commit(struct tally_wal *wal)
{
  assert(wal != NULL && wal->group != NULL);
  if (wal->failed) return TALLY_WAL_IO_ERROR;
  if (wal->group_used == 0) return TALLY_WAL_OK;
  assert(wal->lsn_durable + wal->group_records + 1u == wal->lsn_next);
  const struct tally_disk_ops *ops = wal->disk->ops;
  int result = ops->write(wal->disk->context, wal->segment_file, wal->group, wal->group_used,
    wal->segment_used);
  if (result == 0) result = ops->sync(wal->disk->context, wal->segment_file);
  if (result != 0) return wal_fail(wal, result);
  wal->segment_used += wal->group_used;
  wal->bytes_written += wal->group_used;
  wal->commits++;
  wal->lsn_durable = wal->lsn_next - 1u;
  wal->group_used = 0;
  wal->group_records = 0;
  return TALLY_WAL_OK;
}

enum tally_wal_status tally_wal_cut(struct tally_wal *wal, uint64_t lsn)
{
  assert(wal != NULL && wal->group != NULL);
  assert(lsn <= wal->lsn_durable);
  uint32_t removed = 0;
  int result = 0;
  while (removed + 1u < wal->segment_count && wal->segment_lsns[removed + 1u] <= lsn + 1u) {
    char name[TALLY_DISK_NAME_SIZE_MAX];
    tally_wal_segment_name(name, wal->segment_lsns[removed]);
    result = wal->disk->ops->unlink(wal->disk->context, name);
    if (result != 0 && result != -ENOENT) break;
    result = 0;
    removed++;
  }
  if (removed > 0) {
    int synced = wal->disk->ops->sync_dir(wal->disk->context);
    if (result == 0) result = synced;
    memmove(wal->segment_lsns, wal->segment_lsns + removed,
      (wal->segment_count - removed) * sizeof(uint64_t));
    wal->segment_count -= removed;
  }
  assert(wal->segment_count >= 1);
  return result == 0 ? TALLY_WAL_OK : TALLY_WAL_IO_ERROR;
}
