/*
 * wal_batch.c — encoding and decoding a reliable batch as a log record's
 * payload, version 2 (wal_batch.h). Pure; decoding checks every field of bytes read
 * back from disk. Runs on the persister, in recovery and in the fuzzer.
 */
#include "wal_batch.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "tally/name.h"

enum {
  OFFSET_PRODUCER = 0,
  OFFSET_SEQ = 8,
  OFFSET_ATTEMPT = 16,
  OFFSET_COUNT = 18,
  OFFSET_SHARD = 20,
  OFFSET_RESERVED = 22,
  OFFSET_BATCH_SEQ = 24,
  OFFSET_DEDUP = 32,
};

/* runs[0] (words 0..4: head_last, head_window[0..1], last_seq, window) is a run. */
static bool dedup_valid(const uint64_t *dedup)
{
  return dedup[0] != 0 && (dedup[4] & 1u) != 0;
}

static void put_le(uint8_t *out, uint64_t value, int bytes)
{
  for (int i = 0; i < bytes; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_le(const uint8_t *in, int bytes)
{
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; i--) value = (value << 8) | in[i];
  return value;
}

size_t tally_wal_batch_size(const struct tally_wal_batch *batch)
{
  assert(batch != NULL);
  if (batch->producer == 0 || batch->producer > TALLY_PRODUCER_ID_MAX) return 0;
  if (batch->attempt > TALLY_ATTEMPT_MAX) return 0;
  if (batch->count == 0 || batch->count > TALLY_BATCH_PAIRS_MAX) return 0;
  if (batch->shard >= TALLY_LCORES_MAX || batch->batch_seq == 0) return 0;
  if (!dedup_valid(batch->dedup)) return 0;
  size_t size = TALLY_WAL_BATCH_HEADER_SIZE;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wal_pair *pair = &batch->pairs[i];
    if (pair->name == NULL || !tally_name_valid(pair->name, pair->name_len)) return 0;
    size += TALLY_WAL_BATCH_PAIR_FIXED_SIZE + pair->name_len;
  }
  assert(size <= TALLY_WAL_BATCH_SIZE_MAX);
  return size;
}

size_t tally_wal_batch_encode(const struct tally_wal_batch *batch, uint8_t *out, size_t out_size)
{
  assert(batch != NULL);
  size_t size = tally_wal_batch_size(batch);
  if (size == 0 || size > out_size) return 0;
  assert(out != NULL);
  put_le(out + OFFSET_PRODUCER, batch->producer, 8);
  put_le(out + OFFSET_SEQ, batch->seq, 8);
  put_le(out + OFFSET_ATTEMPT, batch->attempt, 2);
  put_le(out + OFFSET_COUNT, batch->count, 2);
  put_le(out + OFFSET_SHARD, batch->shard, 2);
  put_le(out + OFFSET_RESERVED, 0, 2);
  put_le(out + OFFSET_BATCH_SEQ, batch->batch_seq, 8);
  for (uint32_t w = 0; w < TALLY_WAL_BATCH_DEDUP_WORDS; w++) {
    put_le(out + OFFSET_DEDUP + 8u * w, batch->dedup[w], 8);
  }
  size_t offset = TALLY_WAL_BATCH_HEADER_SIZE;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wal_pair *pair = &batch->pairs[i];
    put_le(out + offset, (uint64_t)pair->delta, 8);
    put_le(out + offset + 8, (uint64_t)pair->value, 8);
    out[offset + 16] = (uint8_t)pair->name_len;
    memcpy(out + offset + TALLY_WAL_BATCH_PAIR_FIXED_SIZE, pair->name, pair->name_len);
    offset += TALLY_WAL_BATCH_PAIR_FIXED_SIZE + pair->name_len;
  }
  assert(offset == size);
  return size;
}

/* The fixed header's fields, each in range. */
static enum tally_wal_batch_check batch_decode_header(const uint8_t *payload, size_t size,
  struct tally_wal_batch *batch)
{
  if (size < TALLY_WAL_BATCH_HEADER_SIZE) return TALLY_WAL_BATCH_TRUNCATED;
  batch->producer = get_le(payload + OFFSET_PRODUCER, 8);
  batch->seq = get_le(payload + OFFSET_SEQ, 8);
  uint64_t attempt = get_le(payload + OFFSET_ATTEMPT, 2);
  uint64_t count = get_le(payload + OFFSET_COUNT, 2);
  if (batch->producer == 0 || batch->producer > TALLY_PRODUCER_ID_MAX) {
    return TALLY_WAL_BATCH_BAD_PRODUCER;
  }
  if (attempt > TALLY_ATTEMPT_MAX) return TALLY_WAL_BATCH_BAD_ATTEMPT;
  if (count == 0 || count > TALLY_BATCH_PAIRS_MAX) return TALLY_WAL_BATCH_BAD_COUNT;
  uint64_t shard = get_le(payload + OFFSET_SHARD, 2);
  if (shard >= TALLY_LCORES_MAX) return TALLY_WAL_BATCH_BAD_SHARD;
  if (get_le(payload + OFFSET_RESERVED, 2) != 0) return TALLY_WAL_BATCH_BAD_RESERVED;
  batch->batch_seq = get_le(payload + OFFSET_BATCH_SEQ, 8);
  if (batch->batch_seq == 0) return TALLY_WAL_BATCH_BAD_SEQUENCE;
  for (uint32_t w = 0; w < TALLY_WAL_BATCH_DEDUP_WORDS; w++) {
    batch->dedup[w] = get_le(payload + OFFSET_DEDUP + 8u * w, 8);
  }
  if (!dedup_valid(batch->dedup)) return TALLY_WAL_BATCH_BAD_DEDUP;
  batch->attempt = (uint16_t)attempt;
  batch->shard = (uint16_t)shard;
  batch->count = (uint32_t)count;
  return TALLY_WAL_BATCH_OK;
}

/* The pairs, which must fill payload[TALLY_WAL_BATCH_HEADER_SIZE..size) exactly. */
static enum tally_wal_batch_check batch_decode_pairs(const uint8_t *payload, size_t size,
  struct tally_wal_batch *batch)
{
  assert(batch->count >= 1 && batch->count <= TALLY_BATCH_PAIRS_MAX);
  size_t offset = TALLY_WAL_BATCH_HEADER_SIZE;
  for (uint32_t i = 0; i < batch->count; i++) {
    assert(offset <= size);
    if (size - offset < TALLY_WAL_BATCH_PAIR_FIXED_SIZE) return TALLY_WAL_BATCH_TRUNCATED;
    uint32_t name_len = payload[offset + 16];
    const char *name = (const char *)payload + offset + TALLY_WAL_BATCH_PAIR_FIXED_SIZE;
    if (size - offset - TALLY_WAL_BATCH_PAIR_FIXED_SIZE < name_len) return TALLY_WAL_BATCH_TRUNCATED;
    if (!tally_name_valid(name, name_len)) return TALLY_WAL_BATCH_BAD_NAME;
    batch->pairs[i].delta = (int64_t)get_le(payload + offset, 8);
    batch->pairs[i].value = (int64_t)get_le(payload + offset + 8, 8);
    batch->pairs[i].name = name;
    batch->pairs[i].name_len = name_len;
    offset += TALLY_WAL_BATCH_PAIR_FIXED_SIZE + name_len;
  }
  return offset == size ? TALLY_WAL_BATCH_OK : TALLY_WAL_BATCH_TRAILING;
}

enum tally_wal_batch_check tally_wal_batch_decode(const uint8_t *payload, size_t size,
  struct tally_wal_batch *batch)
{
  assert(batch != NULL);
  assert(payload != NULL || size == 0);
  memset(batch, 0, sizeof(*batch));
  enum tally_wal_batch_check check = batch_decode_header(payload, size, batch);
  if (check == TALLY_WAL_BATCH_OK) check = batch_decode_pairs(payload, size, batch);
  if (check != TALLY_WAL_BATCH_OK) memset(batch, 0, sizeof(*batch));
  return check;
}

const char *tally_wal_batch_check_name(enum tally_wal_batch_check check)
{
  static const char *const names[TALLY_WAL_BATCH_CHECK_COUNT] = {
    "ok", "truncated", "bad producer", "bad attempt", "bad count", "bad reserved bytes",
    "bad name", "trailing bytes", "bad shard", "bad batch sequence", "bad dedup state",
  };
  assert((uint32_t)check < TALLY_WAL_BATCH_CHECK_COUNT);
  return names[check];
}
