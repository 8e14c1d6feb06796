/*
 * wal_record.h — the write-ahead log's bytes on disk: the record header and
 * its checks, and the segment file names. Pure functions over buffers (no
 * I/O), so the writer (wal.c), recovery (wal_scan.c) and the fuzzer share one
 * definition. Byte layout, little-endian (docs/store-layout.md, "Write-ahead
 * log (disk tier), step 1"):
 *
 *   +0  u32 magic        "TWL1" (0x314c5754)
 *   +4  u16 type         a known enum tally_wal_type
 *   +6  u16 flags        0
 *   +8  u64 lsn          1, 2, 3, ... with no gap across the whole log
 *   +16 u64 durable_lsn  the log was durable up to here when this record was
 *                        written (the last LSN of the previous commit group):
 *                        < lsn, the same for every record of a group
 *   +24 u32 payload_size 0..TALLY_WAL_PAYLOAD_SIZE_MAX
 *   +28 u32 payload_crc  CRC32C (seed 0x57414c50) of the payload and its zero padding
 *   +32 u32 reserved     0
 *   +36 u32 header_crc   CRC32C (seed 0x57414c48) of bytes 0..35
 *   +40 payload, zero-padded to a multiple of 8 bytes
 *
 * Segment files are named wal-<first LSN as 16 lowercase hex digits>.log.
 */
#ifndef TALLY_PERSIST_WAL_RECORD_H
#define TALLY_PERSIST_WAL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_WAL_MAGIC 0x314c5754u
#define TALLY_WAL_HEADER_CRC_SEED 0x57414c48u
#define TALLY_WAL_PAYLOAD_CRC_SEED 0x57414c50u

enum tally_wal_type {
  /* 1: a reliable batch, payload version 1 — retired, never written by tallyd; refused */
  TALLY_WAL_TYPE_BATCH = 2, /* a reliable batch, payload version 2: wal_batch.h */
  /* each shard's last logged batch_seq, written when a checkpoint begins (persister_log.c) */
  TALLY_WAL_TYPE_MARKS = 3,
  /* what a cluster node's replication thread changed: replica tables, undos, keeper claims (wal_cluster.h) */
  TALLY_WAL_TYPE_CLUSTER = 4,
  TALLY_WAL_TYPE_END
};

/* Why bytes are not a record (diagnostics; every one but VALID means "not a record"). */
enum tally_wal_record_check {
  TALLY_WAL_RECORD_VALID,
  TALLY_WAL_RECORD_TRUNCATED,   /* fewer bytes than the header or the size it declares */
  TALLY_WAL_RECORD_BAD_MAGIC,
  TALLY_WAL_RECORD_BAD_HEADER,  /* header CRC */
  TALLY_WAL_RECORD_BAD_FIELD,   /* flags, reserved, type, size, lsn or durable_lsn out of range */
  TALLY_WAL_RECORD_BAD_PAYLOAD, /* payload CRC */
  TALLY_WAL_RECORD_CHECK_COUNT
};

/* A record as read back: payload points into the checked buffer. */
struct tally_wal_record {
  uint16_t type;
  uint64_t lsn;
  uint64_t durable_lsn;
  const uint8_t *payload;
  uint32_t payload_size;
  uint32_t size; /* header + padded payload: the offset of the next record */
};

/* Bytes a record with payload_size bytes of payload takes on disk. */
static inline uint32_t tally_wal_record_size(uint32_t payload_size)
{
  uint32_t padded = (payload_size + TALLY_WAL_RECORD_ALIGN - 1u) & ~(TALLY_WAL_RECORD_ALIGN - 1u);
  return TALLY_WAL_RECORD_HEADER_SIZE + padded;
}

/*
 * Writes the record into out (tally_wal_record_size(payload_size) bytes).
 * Programmer errors (an unknown type, lsn 0, durable_lsn >= lsn, a payload
 * over the maximum) are assertions.
 */
void tally_wal_record_encode(uint8_t *out, uint16_t type, uint64_t lsn, uint64_t durable_lsn,
  const void *payload, uint32_t payload_size);

/*
 * Checks that bytes[0..available) start with a whole valid record, and
 * fills record (zeroed unless VALID). Untrusted input: any bytes are safe.
 */
enum tally_wal_record_check tally_wal_record_check(const uint8_t *bytes, size_t available,
  struct tally_wal_record *record);

const char *tally_wal_record_check_name(enum tally_wal_record_check check);

/* "wal-%016llx.log" into out (TALLY_DISK_NAME_SIZE_MAX bytes). */
void tally_wal_segment_name(char *out, uint64_t first_lsn);
/* True iff name is exactly a segment name; sets *first_lsn (>= 1). */
bool tally_wal_segment_parse(const char *name, uint64_t *first_lsn);

#endif
