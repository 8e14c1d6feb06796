/*
 * wal_batch.h — the payload of a TALLY_WAL_TYPE_BATCH log record (record
 * type 2, payload version 2): one reliable batch as one shard applied it,
 * with what replay needs to redo it exactly onto any image: each pair's
 * absolute value after it, the producer's whole dedup state after it, and
 * the shard's batch sequence (docs/store-layout.md, "Log mode: replay is
 * exact"). Little-endian:
 *
 *   +0   u64 producer   1..TALLY_PRODUCER_ID_MAX
 *   +8   u64 seq
 *   +16  u16 attempt    0..TALLY_ATTEMPT_MAX
 *   +18  u16 count      1..TALLY_BATCH_PAIRS_MAX
 *   +20  u16 shard      0..TALLY_LCORES_MAX - 1 (the applying lcore's shard)
 *   +22  u16 reserved   0
 *   +24  u64 batch_seq  >= 1: the shard's batch sequence after this batch
 *   +32  15 x u64 dedup the producer's dedup state after the batch: for each
 *                       of 3 runs head_last, head_window[0..1], last_seq,
 *                       window (the shard's struct tally_dedup); runs[0] is
 *                       a run (head_last != 0, window bit 0 set)
 *   +152 count pairs:   i64 delta | i64 value | u8 name_len | name
 *   nothing after the last pair
 *
 * Version 1 (type 1: producer, seq, attempt, count, then delta | name_len |
 * name) was never written by tallyd; type 1 is now refused by the record
 * check. Decoding treats the bytes as untrusted (they come back from disk,
 * even behind a good CRC). Pure; runs on the persister and in recovery.
 */
#ifndef TALLY_PERSIST_WAL_BATCH_H
#define TALLY_PERSIST_WAL_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_WAL_BATCH_DEDUP_WORDS (TALLY_DEDUP_RUNS * 5u)
#define TALLY_WAL_BATCH_HEADER_SIZE (32u + 8u * TALLY_WAL_BATCH_DEDUP_WORDS)
#define TALLY_WAL_BATCH_PAIR_FIXED_SIZE 17u
#define TALLY_WAL_BATCH_SIZE_MAX (TALLY_WAL_BATCH_HEADER_SIZE + \
  TALLY_BATCH_PAIRS_MAX * (TALLY_WAL_BATCH_PAIR_FIXED_SIZE + TALLY_NAME_LEN_MAX))

static_assert(TALLY_WAL_BATCH_HEADER_SIZE == 152u, "the payload's fixed part");
static_assert(TALLY_WAL_BATCH_SIZE_MAX <= TALLY_WAL_PAYLOAD_SIZE_MAX,
  "the largest batch fits one log record");

struct tally_wal_pair {
  const char *name; /* not NUL-terminated; decoded: points into the payload */
  uint32_t name_len;
  int64_t delta;
  int64_t value;    /* the shard slot's absolute value after this pair */
};

struct tally_wal_batch {
  uint64_t producer;
  uint64_t seq;
  uint16_t attempt;
  uint16_t shard;
  uint32_t count;
  uint64_t batch_seq;
  uint64_t dedup[TALLY_WAL_BATCH_DEDUP_WORDS];
  struct tally_wal_pair pairs[TALLY_BATCH_PAIRS_MAX];
};

enum tally_wal_batch_check {
  TALLY_WAL_BATCH_OK,
  TALLY_WAL_BATCH_TRUNCATED,     /* shorter than its header or its pairs */
  TALLY_WAL_BATCH_BAD_PRODUCER,  /* 0 or above TALLY_PRODUCER_ID_MAX */
  TALLY_WAL_BATCH_BAD_ATTEMPT,   /* above TALLY_ATTEMPT_MAX */
  TALLY_WAL_BATCH_BAD_COUNT,     /* 0 or above TALLY_BATCH_PAIRS_MAX */
  TALLY_WAL_BATCH_BAD_RESERVED,  /* reserved bytes not 0 */
  TALLY_WAL_BATCH_BAD_NAME,      /* not a valid counter name */
  TALLY_WAL_BATCH_TRAILING,      /* bytes after the last pair */
  TALLY_WAL_BATCH_BAD_SHARD,     /* shard >= TALLY_LCORES_MAX */
  TALLY_WAL_BATCH_BAD_SEQUENCE,  /* batch_seq 0 */
  TALLY_WAL_BATCH_BAD_DEDUP,     /* runs[0] is not a run */
  TALLY_WAL_BATCH_CHECK_COUNT
};

/* Encoded size of batch, or 0 if the decoder would refuse it. */
size_t tally_wal_batch_size(const struct tally_wal_batch *batch);
/* Encodes batch into out: the size written, or 0 if invalid or out_size too small. */
size_t tally_wal_batch_encode(const struct tally_wal_batch *batch, uint8_t *out, size_t out_size);
/* Decodes and checks every field; on anything but OK, *batch is zeroed. */
enum tally_wal_batch_check tally_wal_batch_decode(const uint8_t *payload, size_t size,
  struct tally_wal_batch *batch);
const char *tally_wal_batch_check_name(enum tally_wal_batch_check check);

#endif
