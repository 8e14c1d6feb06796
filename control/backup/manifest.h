/*
 * manifest.h — a backup directory's MANIFEST (docs/operations.md, "Backups"):
 * the store it came from, its generations (one full, then incrementals) and
 * every file of each with its size, BLAKE2b-256 and LSN range. A text file,
 * one record a line, ending with a line that holds the BLAKE2b of every byte
 * before it, so a damaged manifest is refused before anything it says is
 * believed:
 *
 *   tally-backup 1
 *   node NAME
 *   store format=XXXXXXXX image_size=N
 *   generation G full|incremental created=UNIX first=LSN last=LSN last_crc=XXXXXXXX
 *   file G checkpoint|wal PATH size=N blake2b=HEX64 first=LSN last=LSN
 *   end blake2b=HEX64
 *
 * A checkpoint's first/last are its begin_lsn/end_lsn; a segment's are its
 * first and last record. A generation's first..last is the log it adds: the
 * full one's starts at its checkpoint's begin_lsn + 1, each incremental's at
 * the previous one's last + 1. last_crc is the header CRC of the record at
 * `last` in the node's log: an incremental checks it there, so a backup
 * directory is never continued from another store's log.
 *
 * Pure parsing and formatting over memory; reading and writing the file is
 * backup_files.c's. Thread: tallyctl's one thread.
 */
#ifndef TALLY_BACKUP_MANIFEST_H
#define TALLY_BACKUP_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_BACKUP_MANIFEST_NAME "MANIFEST"
#define TALLY_BACKUP_MANIFEST_VERSION 1u
#define TALLY_BACKUP_HASH_SIZE 32u          /* BLAKE2b-256 (libsodium crypto_generichash) */
#define TALLY_BACKUP_GENERATIONS_MAX 1024u  /* a full backup and its incrementals */
#define TALLY_BACKUP_FILES_MAX 16384u       /* files in all generations */
#define TALLY_BACKUP_NODE_SIZE 64u          /* the node's name, NUL included */
#define TALLY_BACKUP_PATH_SIZE 64u          /* "g000001/wal-0000000000000001.log" and NUL */
#define TALLY_BACKUP_MANIFEST_SIZE_MAX (2u * 1024u * 1024u)

enum tally_backup_file_kind { TALLY_BACKUP_CHECKPOINT, TALLY_BACKUP_WAL };

struct tally_backup_file {
  uint32_t generation;                   /* 1.. */
  enum tally_backup_file_kind kind;
  char path[TALLY_BACKUP_PATH_SIZE];     /* relative to the backup directory */
  uint64_t size;
  uint8_t hash[TALLY_BACKUP_HASH_SIZE];
  uint64_t first_lsn, last_lsn;          /* checkpoint: begin_lsn, end_lsn */
};

struct tally_backup_generation {
  uint32_t number;      /* 1, 2, 3, ... in order */
  bool full;            /* only generation 1 is full */
  uint64_t created_unix;
  uint64_t first_lsn;   /* the log this generation adds: first..last */
  uint64_t last_lsn;
  uint32_t last_crc;    /* the header CRC of record last_lsn */
};

struct tally_backup_manifest {
  char node[TALLY_BACKUP_NODE_SIZE];
  uint32_t image_format;
  uint64_t image_size;
  uint32_t generation_count;
  struct tally_backup_generation generations[TALLY_BACKUP_GENERATIONS_MAX];
  uint32_t file_count;
  struct tally_backup_file files[TALLY_BACKUP_FILES_MAX];
};

/*
 * Parses text[0..size) (untrusted). true, or false with one line in error
 * naming the line. Checks the end line's hash, the grammar, and that
 * generations are numbered 1, 2, ... with only the first full, and that every
 * file names a listed generation; the chain's LSNs are checked by verify.
 */
bool tally_backup_manifest_parse(const char *text, size_t size,
  struct tally_backup_manifest *manifest, char *error, size_t error_size);

/* The manifest as text (malloc'd, *size set), its end line included; NULL if out of memory. */
char *tally_backup_manifest_format(const struct tally_backup_manifest *manifest, size_t *size);

/* Lowercase hex of a hash into out (2 * TALLY_BACKUP_HASH_SIZE + 1 bytes). */
void tally_backup_hash_hex(char *out, const uint8_t hash[TALLY_BACKUP_HASH_SIZE]);

#endif
