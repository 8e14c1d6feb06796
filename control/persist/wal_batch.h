/*
 * wal_batch.h — the payload of a TALLY_WAL_TYPE_BATCH log record: one
 * reliable batch as it was applied, so that replaying the log redoes its
 * effect and its dedup state. Little-endian:
 *
 *   +0  u64 producer  1..TALLY_PRODUCER_ID_MAX
 *   +8  u64 seq
 *   +16 u16 attempt   0..TALLY_ATTEMPT_MAX
 *   +18 u16 count     1..TALLY_BATCH_PAIRS_MAX
 *   +20 u32 reserved  0
 *   +24 count pairs:  i64 delta | u8 name_len | name (a valid counter name)
 *   nothing after the last pair
 *
 * Decoding treats the bytes as untrusted (they come back from disk, even
 * behind a good CRC: a bug or a future version may have written them).
 * Pure; runs on the persister and in recovery.
 */
#ifndef TALLY_PERSIST_WAL_BATCH_H
#define TALLY_PERSIST_WAL_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_WAL_BATCH_HEADER_SIZE 24u
#define TALLY_WAL_BATCH_PAIR_FIXED_SIZE 9u
#define TALLY_WAL_BATCH_SIZE_MAX (TALLY_WAL_BATCH_HEADER_SIZE + \
  TALLY_BATCH_PAIRS_MAX * (TALLY_WAL_BATCH_PAIR_FIXED_SIZE + TALLY_NAME_LEN_MAX))

static_assert(TALLY_WAL_BATCH_SIZE_MAX <= TALLY_WAL_PAYLOAD_SIZE_MAX,
  "the largest batch fits one log record");

struct tally_wal_pair {
  const char *name; /* not NUL-terminated; decoded: points into the payload */
  uint32_t name_len;
  int64_t delta;
};

struct tally_wal_batch {
  uint64_t producer;
  uint64_t seq;
  uint16_t attempt;
  uint32_t count;
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
