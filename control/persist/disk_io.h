/*
 * disk_io.h — the disk tier's I/O, behind one small ops struct, so that the
 * write-ahead log (and later the checkpoints) run unchanged on a real
 * directory (disk_io.c: pwrite + fdatasync) or on the power-loss simulator
 * (disk_sim.c). A tally_disk is one directory; files are named inside it
 * (no slashes, at most TALLY_DISK_NAME_SIZE_MAX - 1 bytes).
 *
 * Contract of every backend (what the log relies on):
 *   - write() writes all size bytes or fails; nothing written is durable
 *     until sync() of that file returns 0 (fdatasync: data, and the size
 *     when it grew or shrank);
 *   - create() / unlink() / rename() are durable only after sync_dir()
 *     returns 0 (a new file whose entry was not synced may vanish);
 *   - a failed sync() is final: what it covered may or may not be on the
 *     media, and a retry proves nothing (Linux drops the dirty pages:
 *     "fsyncgate"). Callers stop using the file.
 * Errors are returned as -errno; nothing here prints.
 *
 * io_uring (liburing) is a later backend behind the same ops: one ring, the
 * write and the fdatasync linked, no change to the log.
 *
 * Thread: the persister (one thread per tally_disk; backends do not lock).
 */
#ifndef TALLY_PERSIST_DISK_IO_H
#define TALLY_PERSIST_DISK_IO_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

struct tally_disk_ops {
  /* Opens name: an existing file, or (create) a new one that must not exist. Handle >= 0. */
  int (*open)(void *context, const char *name, bool create);
  void (*close)(void *context, int file);
  /* Writes all size bytes at offset: 0 or -errno. */
  int (*write)(void *context, int file, const void *data, size_t size, uint64_t offset);
  /* Reads up to size bytes at offset: bytes read (short only at the end of file) or -errno. */
  int64_t (*read)(void *context, int file, void *data, size_t size, uint64_t offset);
  /* fdatasync: 0 or -errno. */
  int (*sync)(void *context, int file);
  /* The file's current size, or -errno. */
  int64_t (*size)(void *context, int file);
  int (*truncate)(void *context, int file, uint64_t size);
  int (*unlink)(void *context, const char *name);
  int (*rename)(void *context, const char *from, const char *to);
  /* fsync of the directory: makes created, unlinked and renamed names durable. */
  int (*sync_dir)(void *context);
  /*
   * Every name in the directory (unsorted) into names[0..names_max): the
   * count, or -E2BIG if there are more, or -errno.
   */
  int (*list)(void *context, char (*names)[TALLY_DISK_NAME_SIZE_MAX], uint32_t names_max);
};

struct tally_disk {
  const struct tally_disk_ops *ops;
  void *context;
};

/* ---- The POSIX backend (disk_io.c) ------------------------------------------ */

struct tally_disk_posix {
  int directory_fd;
};

/*
 * Opens (and, if absent, creates with mode 0700) the directory path and
 * binds disk to it. 0, or -errno with a one-line reason in error.
 */
int tally_disk_posix_open(struct tally_disk *disk, struct tally_disk_posix *posix,
  const char *path, char *error, size_t error_size);
void tally_disk_posix_close(struct tally_disk_posix *posix);

/* True iff name is a plain file name a backend accepts. */
bool tally_disk_name_valid(const char *name);

#endif
