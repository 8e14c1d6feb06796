/*
 * backup_files.h — the file work behind backup, verify and restore: a file
 * copied and hashed (BLAKE2b-256) in bounded reads, a log segment's records
 * copied from an LSN to an LSN (each record checked by the log's own record
 * check, wal_record.h, and its LSN required to follow the last), the
 * manifest read and replaced atomically (temporary file, fsync, rename,
 * directory fsync). Every byte counted into a progress reporter.
 * Thread: tallyctl's one thread.
 */
#ifndef TALLY_BACKUP_FILES_H
#define TALLY_BACKUP_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "progress.h"

/* The buffer every copy reads through; a whole record always fits twice. */
#define TALLY_BACKUP_COPY_WINDOW_SIZE (1024u * 1024u)

/* What a copy wrote. */
struct tally_backup_copied {
  uint64_t size;
  uint8_t hash[TALLY_BACKUP_HASH_SIZE];
  uint64_t first_lsn, last_lsn; /* records copied (segments); 0, 0 if none */
  uint32_t last_crc;            /* the last copied record's header CRC */
  uint64_t records;
};

/* Copies every byte of src to dst (both open fds), hashing them. 0 or -errno. */
int tally_backup_copy_file(int src, int dst, struct tally_backup_progress *progress,
  struct tally_backup_copied *copied);

/*
 * Copies the records with from_lsn <= LSN <= to_lsn from the segment open on
 * src (named segment_lsn) to dst, stopping at the first bytes that are not a
 * whole valid record (the tail the log is writing). 0 (copied->records may
 * be 0: the segment ends before from_lsn); -EILSEQ with a line in error when
 * a record carries an LSN out of sequence; -errno on I/O.
 */
int tally_backup_copy_records(int src, uint64_t segment_lsn, uint64_t from_lsn, uint64_t to_lsn,
  int dst, struct tally_backup_progress *progress, struct tally_backup_copied *copied,
  char *error, size_t error_size);

/* Hashes a whole file: 0 (size and hash set) or -errno. */
int tally_backup_hash_file(int fd, struct tally_backup_progress *progress, uint64_t *size,
  uint8_t hash[TALLY_BACKUP_HASH_SIZE]);

/* Reads and parses dir/MANIFEST. 0; -ENOENT if absent; -EILSEQ (error set) if damaged. */
int tally_backup_manifest_read(const char *dir, struct tally_backup_manifest *manifest,
  char *error, size_t error_size);
/* Replaces dir/MANIFEST atomically and durably. 0 or -errno. */
int tally_backup_manifest_write(const char *dir, const struct tally_backup_manifest *manifest);

/* fsync of a directory by path. 0 or -errno. */
int tally_backup_sync_dir(const char *path);
/* dir/name into out: 0, or -ENAMETOOLONG. */
int tally_backup_path(char *out, size_t size, const char *dir, const char *name);
/* Creates dir/name (it must not exist) for writing, mode 0600: the fd or -errno. */
int tally_backup_create_in(const char *dir, const char *name);
/* Opens dir/name read-only (-errno on failure). */
int tally_backup_open_in(const char *dir, const char *name);
/* True iff path is absent or an empty directory. */
bool tally_backup_dir_empty(const char *path);

#endif
