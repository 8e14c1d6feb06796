/*
 * test_wal_format.c — unit tests of the write-ahead log's bytes
 * (control/persist/crc32c.c, wal_record.c, wal_batch.c): CRC32C against the
 * published check value and the store's raw-update convention, hardware and
 * table paths agreeing; a record round trip and every rejection of the
 * record check; the batch payload round trip at its limits and every
 * rejection of its decoder; the segment names; the cluster record's payload
 * (wal_cluster.c: every item kind round trip, a full writer, every
 * rejection) and the queue that hands it to the persister (wal_queue.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"
#include "wal_batch.h"
#include "wal_cluster.h"
#include "wal_queue.h"
#include "wal_record.h"

/* ---- CRC32C --------------------------------------------------------------- */

static void test_crc32c_check_value(void **state)
{
  (void)state;
  /* The standard check value: CRC-32C("123456789") = 0xe3069283 (init and xor ~0). */
  const char *text = "123456789";
  assert_int_equal(~tally_persist_crc32c(text, 9, 0xffffffffu), 0xe3069283u);
  assert_int_equal(~tally_persist_crc32c_software(text, 9, 0xffffffffu), 0xe3069283u);
  assert_int_equal(tally_persist_crc32c(text, 0, 0x1234u), 0x1234u);
}

static void test_crc32c_paths_agree(void **state)
{
  (void)state;
  uint8_t bytes[1024];
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 131u + 7u);
  for (size_t offset = 0; offset < 9; offset++) {
    for (size_t size = 0; size + offset <= sizeof bytes; size += 37) {
      uint32_t hardware = tally_persist_crc32c(bytes + offset, size, 0x57414c48u);
      uint32_t software = tally_persist_crc32c_software(bytes + offset, size, 0x57414c48u);
      assert_int_equal(hardware, software);
    }
  }
  /* Chaining: the CRC of a whole equals the CRC of its parts continued. */
  uint32_t whole = tally_persist_crc32c(bytes, 1000, 7u);
  assert_int_equal(tally_persist_crc32c(bytes + 333, 667, tally_persist_crc32c(bytes, 333, 7u)),
    whole);
}

/* ---- Records --------------------------------------------------------------- */

static uint8_t record_bytes[TALLY_WAL_RECORD_SIZE_MAX + 64];

static uint32_t encode_sample(uint32_t payload_size)
{
  uint8_t payload[TALLY_WAL_PAYLOAD_SIZE_MAX];
  for (uint32_t i = 0; i < payload_size; i++) payload[i] = (uint8_t)(i ^ 0x5a);
  tally_wal_record_encode(record_bytes, TALLY_WAL_TYPE_BATCH, 42, 40, payload, payload_size);
  return tally_wal_record_size(payload_size);
}

static void test_record_round_trip(void **state)
{
  (void)state;
  uint32_t sizes[] = {0, 1, 7, 8, 9, 100, TALLY_WAL_PAYLOAD_SIZE_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint32_t size = encode_sample(sizes[i]);
    assert_int_equal(size % TALLY_WAL_RECORD_ALIGN, 0);
    assert_true(size <= TALLY_WAL_RECORD_SIZE_MAX);
    struct tally_wal_record record;
    assert_int_equal(tally_wal_record_check(record_bytes, size, &record), TALLY_WAL_RECORD_VALID);
    assert_int_equal(record.type, TALLY_WAL_TYPE_BATCH);
    assert_int_equal(record.lsn, 42);
    assert_int_equal(record.durable_lsn, 40);
    assert_int_equal(record.payload_size, sizes[i]);
    assert_int_equal(record.size, size);
    for (uint32_t j = 0; j < sizes[i]; j++) assert_int_equal(record.payload[j], (uint8_t)(j ^ 0x5a));
    /* More bytes after it change nothing. */
    assert_int_equal(tally_wal_record_check(record_bytes, size + 8, &record), TALLY_WAL_RECORD_VALID);
  }
}

/* Rewrites a header field and re-seals the header CRC, to reach the field checks. */
static void reseal(void)
{
  uint32_t crc = tally_persist_crc32c(record_bytes, 36, TALLY_WAL_HEADER_CRC_SEED);
  for (int i = 0; i < 4; i++) record_bytes[36 + i] = (uint8_t)(crc >> (8 * i));
}

static void expect_record(uint32_t size, enum tally_wal_record_check expected)
{
  struct tally_wal_record record;
  memset(&record, 0xff, sizeof record);
  assert_int_equal(tally_wal_record_check(record_bytes, size, &record), expected);
  assert_int_equal(record.lsn, 0);
  assert_null(record.payload);
}

static void test_record_rejections(void **state)
{
  (void)state;
  uint32_t size = encode_sample(20);
  expect_record(0, TALLY_WAL_RECORD_TRUNCATED);
  expect_record(TALLY_WAL_RECORD_HEADER_SIZE - 1, TALLY_WAL_RECORD_TRUNCATED);
  expect_record(size - 1, TALLY_WAL_RECORD_TRUNCATED);
  /* Every single bit flipped anywhere in the record is caught. */
  for (uint32_t bit = 0; bit < size * 8; bit++) {
    encode_sample(20);
    record_bytes[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    struct tally_wal_record record;
    assert_int_not_equal(tally_wal_record_check(record_bytes, size, &record), TALLY_WAL_RECORD_VALID);
  }
  encode_sample(20);
  record_bytes[0] ^= 1;
  expect_record(size, TALLY_WAL_RECORD_BAD_MAGIC);
  encode_sample(20);
  record_bytes[12] ^= 1; /* lsn, header CRC not resealed */
  expect_record(size, TALLY_WAL_RECORD_BAD_HEADER);
  encode_sample(20);
  record_bytes[TALLY_WAL_RECORD_HEADER_SIZE + 3] ^= 1;
  expect_record(size, TALLY_WAL_RECORD_BAD_PAYLOAD);
  encode_sample(20);
  record_bytes[TALLY_WAL_RECORD_HEADER_SIZE + 20] = 1; /* the zero padding */
  expect_record(size, TALLY_WAL_RECORD_BAD_PAYLOAD);
  /* Fields out of range behind a good header CRC: type 0, the retired type 1 (batch payload
   * version 1), unknown type, flags, reserved,
   * lsn 0, durable_lsn = lsn, a payload over the maximum. */
  const struct { uint32_t offset; uint8_t value; } fields[] = {
    {4, 0}, {4, 1}, {4, TALLY_WAL_TYPE_END}, {6, 1}, {32, 1}, {8, 0}, {16, 42}, {26, 1},
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    encode_sample(20);
    if (fields[i].offset == 8) memset(record_bytes + 8, 0, 8);
    else record_bytes[fields[i].offset] = fields[i].value;
    reseal();
    expect_record(size, TALLY_WAL_RECORD_BAD_FIELD);
  }
  assert_string_equal(tally_wal_record_check_name(TALLY_WAL_RECORD_BAD_PAYLOAD),
    "bad payload checksum");
}

static void test_segment_names(void **state)
{
  (void)state;
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_wal_segment_name(name, 0x1234abcdull);
  assert_string_equal(name, "wal-000000001234abcd.log");
  uint64_t lsn = 0;
  assert_true(tally_wal_segment_parse(name, &lsn));
  assert_int_equal(lsn, 0x1234abcdull);
  tally_wal_segment_name(name, UINT64_MAX);
  assert_true(tally_wal_segment_parse(name, &lsn));
  assert_true(lsn == UINT64_MAX);
  const char *bad[] = {
    "wal-0000000000000000.log", "wal-000000001234ABCD.log", "wal-000000001234abc.log",
    "wal-000000001234abcde.log", "wal-000000001234abcd.lo", "wal-000000001234abcd.logx",
    "xal-000000001234abcd.log", "wal-00000000-234abcd.log", "", "checkpoint-1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lsn = 77;
    assert_false(tally_wal_segment_parse(bad[i], &lsn));
    assert_int_equal(lsn, 77);
  }
}

/* ---- Batch payloads ---------------------------------------------------------- */

static char long_names[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX];

static void full_batch(struct tally_wal_batch *batch)
{
  memset(batch, 0, sizeof(*batch));
  batch->producer = TALLY_PRODUCER_ID_MAX;
  batch->seq = UINT64_MAX;
  batch->attempt = TALLY_ATTEMPT_MAX;
  batch->count = TALLY_BATCH_PAIRS_MAX;
  batch->shard = TALLY_LCORES_MAX - 1u;
  batch->batch_seq = UINT64_MAX;
  for (uint32_t w = 0; w < TALLY_WAL_BATCH_DEDUP_WORDS; w++) batch->dedup[w] = UINT64_MAX - w;
  for (uint32_t i = 0; i < batch->count; i++) {
    memset(long_names[i], 'a' + (int)(i % 26), TALLY_NAME_LEN_MAX);
    long_names[i][0] = (char)('0' + i % 10);
    batch->pairs[i].name = long_names[i];
    batch->pairs[i].name_len = TALLY_NAME_LEN_MAX;
    batch->pairs[i].delta = i % 2 ? INT64_MIN + (int64_t)i : INT64_MAX - (int64_t)i;
    batch->pairs[i].value = i % 2 ? INT64_MAX - (int64_t)i : INT64_MIN + (int64_t)i;
  }
}

static void test_batch_round_trip(void **state)
{
  (void)state;
  static struct tally_wal_batch batch, decoded;
  uint8_t out[TALLY_WAL_BATCH_SIZE_MAX];
  full_batch(&batch);
  size_t size = tally_wal_batch_encode(&batch, out, sizeof out);
  assert_int_equal(size, TALLY_WAL_BATCH_SIZE_MAX);
  assert_int_equal(tally_wal_batch_decode(out, size, &decoded), TALLY_WAL_BATCH_OK);
  assert_true(decoded.producer == batch.producer && decoded.seq == batch.seq);
  assert_int_equal(decoded.attempt, batch.attempt);
  assert_int_equal(decoded.count, batch.count);
  assert_int_equal(decoded.shard, batch.shard);
  assert_true(decoded.batch_seq == batch.batch_seq);
  assert_memory_equal(decoded.dedup, batch.dedup, sizeof batch.dedup);
  for (uint32_t i = 0; i < batch.count; i++) {
    assert_true(decoded.pairs[i].delta == batch.pairs[i].delta);
    assert_true(decoded.pairs[i].value == batch.pairs[i].value);
    assert_int_equal(decoded.pairs[i].name_len, TALLY_NAME_LEN_MAX);
    assert_memory_equal(decoded.pairs[i].name, long_names[i], TALLY_NAME_LEN_MAX);
  }
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out - 1), 0); /* no room */
  /* The smallest: one pair, one-byte name. */
  memset(&batch, 0, sizeof batch);
  batch.producer = 1;
  batch.count = 1;
  batch.batch_seq = 1;
  batch.dedup[0] = 63;
  batch.dedup[4] = 1;
  batch.pairs[0] = (struct tally_wal_pair){.name = "x", .name_len = 1, .delta = -1, .value = 3};
  size = tally_wal_batch_encode(&batch, out, sizeof out);
  assert_int_equal(size, TALLY_WAL_BATCH_HEADER_SIZE + TALLY_WAL_BATCH_PAIR_FIXED_SIZE + 1);
  assert_int_equal(tally_wal_batch_decode(out, size, &decoded), TALLY_WAL_BATCH_OK);
  assert_true(decoded.pairs[0].delta == -1);
}

static void test_batch_encode_refuses(void **state)
{
  (void)state;
  static struct tally_wal_batch batch;
  uint8_t out[TALLY_WAL_BATCH_SIZE_MAX];
  full_batch(&batch); batch.producer = 0;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.producer = TALLY_PRODUCER_ID_MAX + 1;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.attempt = TALLY_ATTEMPT_MAX + 1;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.count = 0;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.count = TALLY_BATCH_PAIRS_MAX + 1;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.pairs[5].name = "a:b"; batch.pairs[5].name_len = 3;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.pairs[5].name_len = 0;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.shard = TALLY_LCORES_MAX;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.batch_seq = 0;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.dedup[0] = 0;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
  full_batch(&batch); batch.dedup[4] = 2;
  assert_int_equal(tally_wal_batch_encode(&batch, out, sizeof out), 0);
}

/* Offsets in small_batch's bytes. */
enum { H = TALLY_WAL_BATCH_HEADER_SIZE, P = TALLY_WAL_BATCH_PAIR_FIXED_SIZE };

/* Encodes a 2-pair batch into out; returns its size. */
static size_t small_batch(uint8_t *out)
{
  struct tally_wal_batch batch;
  memset(&batch, 0, sizeof batch);
  batch.producer = 7;
  batch.seq = 9;
  batch.attempt = 1;
  batch.count = 2;
  batch.shard = 3;
  batch.batch_seq = 11;
  batch.dedup[0] = 9 + 63;
  batch.dedup[4] = 1;
  batch.pairs[0] = (struct tally_wal_pair){.name = "hits", .name_len = 4, .delta = 5, .value = 5};
  batch.pairs[1] =
    (struct tally_wal_pair){.name = "misses", .name_len = 6, .delta = -2, .value = 8};
  size_t size = tally_wal_batch_encode(&batch, out, 512);
  assert_int_equal(size, H + P + 4 + P + 6);
  return size;
}

static void expect_batch(const uint8_t *bytes, size_t size, enum tally_wal_batch_check expected)
{
  static struct tally_wal_batch decoded;
  memset(&decoded, 0xff, sizeof decoded);
  assert_int_equal(tally_wal_batch_decode(bytes, size, &decoded), expected);
  assert_true(decoded.producer == 0 && decoded.count == 0 && decoded.pairs[0].name == NULL);
}

static void test_batch_decode_rejections(void **state)
{
  (void)state;
  uint8_t bytes[512];
  size_t size = small_batch(bytes);
  for (size_t cut = 0; cut < size; cut++) {
    static struct tally_wal_batch decoded;
    assert_int_not_equal(tally_wal_batch_decode(bytes, cut, &decoded), TALLY_WAL_BATCH_OK);
  }
  expect_batch(bytes, H - 1, TALLY_WAL_BATCH_TRUNCATED);
  expect_batch(bytes, H + 16, TALLY_WAL_BATCH_TRUNCATED);
  expect_batch(bytes, size - 1, TALLY_WAL_BATCH_TRUNCATED);
  bytes[size] = 0;
  expect_batch(bytes, size + 1, TALLY_WAL_BATCH_TRAILING);
  small_batch(bytes); memset(bytes, 0, 8);
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_PRODUCER);
  small_batch(bytes); bytes[7] = 0x80;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_PRODUCER);
  small_batch(bytes); bytes[16] = 0xff; bytes[17] = 0xff;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_ATTEMPT);
  small_batch(bytes); bytes[18] = 0; bytes[19] = 0;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_COUNT);
  small_batch(bytes); bytes[18] = TALLY_BATCH_PAIRS_MAX + 1;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_COUNT);
  small_batch(bytes); bytes[18] = 3; /* a third pair that is not there */
  expect_batch(bytes, size, TALLY_WAL_BATCH_TRUNCATED);
  small_batch(bytes); bytes[18] = 1; /* the second pair is left over */
  expect_batch(bytes, size, TALLY_WAL_BATCH_TRAILING);
  small_batch(bytes); bytes[22] = 1;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_RESERVED);
  small_batch(bytes); bytes[20] = TALLY_LCORES_MAX;
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_SHARD);
  small_batch(bytes); memset(bytes + 24, 0, 8);
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_SEQUENCE);
  small_batch(bytes); memset(bytes + 32, 0, 8); /* runs[0].head_last 0: no run */
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_DEDUP);
  small_batch(bytes); bytes[32 + 32] = 2; /* runs[0].window without its last_seq bit */
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_DEDUP);
  small_batch(bytes); bytes[H + P + 1] = '|';
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_NAME);
  small_batch(bytes); bytes[H + 16] = 0; /* a zero-length name */
  expect_batch(bytes, size, TALLY_WAL_BATCH_BAD_NAME);
  small_batch(bytes); bytes[H + 16] = 200; /* longer than what is left */
  expect_batch(bytes, size, TALLY_WAL_BATCH_TRUNCATED);
  assert_string_equal(tally_wal_batch_check_name(TALLY_WAL_BATCH_TRAILING), "trailing bytes");
}

/* ---- Cluster record payload (type 4) ------------------------------------------ */

/* One item of every kind; returns the payload's size. */
static uint32_t small_cluster(uint8_t *out, uint32_t capacity)
{
  struct tally_wal_cluster_writer writer;
  tally_wal_cluster_writer_init(&writer, out, capacity);
  struct tally_wal_cluster_item value = { .kind = TALLY_WAL_CLUSTER_VALUE, .origin = 2,
    .name = "rel.1", .name_len = 5, .value = -42 };
  struct tally_wal_cluster_item record = { .kind = TALLY_WAL_CLUSTER_RECORD, .origin = 3,
    .producer = 7u | TALLY_PRODUCER_UNDONE_BIT };
  for (uint32_t w = 0; w < TALLY_WAL_CLUSTER_DEDUP_WORDS; w++) record.dedup[w] = 100u + w;
  struct tally_wal_cluster_item held = { .kind = TALLY_WAL_CLUSTER_HELD, .origin = 65535,
    .seq = 9, .scan = 1234567 };
  struct tally_wal_cluster_item claim = { .kind = TALLY_WAL_CLUSTER_CLAIM, .origin = 0,
    .position = 5, .producer = 8, .seq = 77, .attempt = TALLY_CLAIM_KEEPER };
  assert_true(tally_wal_cluster_add(&writer, &value));
  assert_true(tally_wal_cluster_add(&writer, &record));
  assert_true(tally_wal_cluster_add(&writer, &held));
  assert_true(tally_wal_cluster_add(&writer, &claim));
  uint32_t size = tally_wal_cluster_finish(&writer);
  assert_int_equal(size, 8u + (4u + 8u + 5u) + (4u + 8u + 120u) + (4u + 16u) + (4u + 32u));
  return size;
}

static void test_cluster_round_trip(void **state)
{
  (void)state;
  static uint8_t bytes[TALLY_WAL_PAYLOAD_SIZE_MAX];
  uint32_t size = small_cluster(bytes, sizeof bytes);
  assert_int_equal(tally_wal_cluster_check(bytes, size), TALLY_WAL_CLUSTER_OK);
  size_t offset = 0;
  struct tally_wal_cluster_item item;
  assert_true(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(item.kind, TALLY_WAL_CLUSTER_VALUE);
  assert_int_equal(item.origin, 2);
  assert_int_equal(item.value, -42);
  assert_int_equal(item.name_len, 5);
  assert_memory_equal(item.name, "rel.1", 5);
  assert_true(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(item.kind, TALLY_WAL_CLUSTER_RECORD);
  assert_true(item.producer == (7u | TALLY_PRODUCER_UNDONE_BIT));
  assert_int_equal(item.dedup[14], 114);
  assert_true(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(item.kind, TALLY_WAL_CLUSTER_HELD);
  assert_int_equal(item.origin, 65535);
  assert_int_equal(item.seq, 9);
  assert_int_equal(item.scan, 1234567);
  assert_true(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(item.kind, TALLY_WAL_CLUSTER_CLAIM);
  assert_int_equal(item.position, 5);
  assert_int_equal(item.seq, 77);
  assert_int_equal(item.attempt, TALLY_CLAIM_KEEPER);
  assert_false(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(offset, size);
  /* A writer with nothing in it gives no payload. */
  struct tally_wal_cluster_writer empty;
  tally_wal_cluster_writer_init(&empty, bytes, sizeof bytes);
  assert_int_equal(tally_wal_cluster_finish(&empty), 0);
}

/* A reliable counter's value (kind 5): same bytes as a value but the kind, decoded as such. */
static void test_cluster_reliable_value(void **state)
{
  (void)state;
  static uint8_t bytes[TALLY_WAL_PAYLOAD_SIZE_MAX];
  struct tally_wal_cluster_writer writer;
  tally_wal_cluster_writer_init(&writer, bytes, sizeof bytes);
  struct tally_wal_cluster_item value = { .kind = TALLY_WAL_CLUSTER_RELIABLE_VALUE, .origin = 0,
    .name = "bill", .name_len = 4, .value = 12 };
  assert_int_equal(tally_wal_cluster_item_size(&value), 4u + 8u + 4u);
  assert_true(tally_wal_cluster_add(&writer, &value));
  uint32_t size = tally_wal_cluster_finish(&writer);
  assert_int_equal(tally_wal_cluster_check(bytes, size), TALLY_WAL_CLUSTER_OK);
  assert_int_equal(bytes[8], 5);
  size_t offset = 0;
  struct tally_wal_cluster_item item;
  assert_true(tally_wal_cluster_next(bytes, size, &offset, &item));
  assert_int_equal(item.kind, TALLY_WAL_CLUSTER_RELIABLE_VALUE);
  assert_true(tally_wal_cluster_is_value(item.kind));
  assert_int_equal(item.value, 12);
  assert_memory_equal(item.name, "bill", 4);
  bytes[8 + 12] = '|'; /* its name is checked like a value's */
  assert_int_equal(tally_wal_cluster_check(bytes, size), TALLY_WAL_CLUSTER_BAD_NAME);
  bytes[8 + 12] = 'b';
  bytes[8] = 6; /* the kind after it is unknown */
  assert_int_equal(tally_wal_cluster_check(bytes, size), TALLY_WAL_CLUSTER_BAD_KIND);
}

static void test_cluster_writer_full(void **state)
{
  (void)state;
  static uint8_t bytes[TALLY_WAL_PAYLOAD_SIZE_MAX];
  struct tally_wal_cluster_writer writer;
  tally_wal_cluster_writer_init(&writer, bytes, sizeof bytes);
  char name[TALLY_NAME_LEN_MAX];
  memset(name, 'n', sizeof name);
  struct tally_wal_cluster_item value = { .kind = TALLY_WAL_CLUSTER_VALUE, .origin = 1,
    .name = name, .name_len = TALLY_NAME_LEN_MAX, .value = 1 };
  assert_int_equal(tally_wal_cluster_item_size(&value), TALLY_WAL_CLUSTER_VALUE_SIZE_MAX);
  uint32_t added = 0;
  while (tally_wal_cluster_add(&writer, &value)) added++;
  assert_int_equal(added, (TALLY_WAL_PAYLOAD_SIZE_MAX - 8u) / TALLY_WAL_CLUSTER_VALUE_SIZE_MAX);
  uint32_t size = tally_wal_cluster_finish(&writer);
  assert_true(size <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  assert_int_equal(tally_wal_cluster_check(bytes, size), TALLY_WAL_CLUSTER_OK);
  /* An item the decoder would refuse has no size. */
  struct tally_wal_cluster_item bad = { .kind = TALLY_WAL_CLUSTER_HELD, .origin = 0, .seq = 1 };
  assert_int_equal(tally_wal_cluster_item_size(&bad), 0);
}

static void expect_cluster(const uint8_t *bytes, size_t size, enum tally_wal_cluster_check want)
{
  assert_int_equal(tally_wal_cluster_check(bytes, size), want);
}

static void test_cluster_rejections(void **state)
{
  (void)state;
  static uint8_t bytes[TALLY_WAL_PAYLOAD_SIZE_MAX];
  uint32_t size = small_cluster(bytes, sizeof bytes);
  for (uint32_t cut = 0; cut < size; cut++) {
    assert_int_not_equal(tally_wal_cluster_check(bytes, cut), TALLY_WAL_CLUSTER_OK);
  }
  /* Offsets: header 8; value at 8 (17 bytes); record at 25 (132); held at 157 (20); claim at 177. */
  expect_cluster(bytes, 7, TALLY_WAL_CLUSTER_TRUNCATED);
  bytes[size] = 0;
  expect_cluster(bytes, size + 1u, TALLY_WAL_CLUSTER_TRAILING);
  small_cluster(bytes, sizeof bytes); bytes[0] = 0;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_COUNT);
  small_cluster(bytes, sizeof bytes); bytes[0] = 5;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_COUNT);
  small_cluster(bytes, sizeof bytes); bytes[0] = 3;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_TRAILING);
  small_cluster(bytes, sizeof bytes); bytes[5] = 1;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_RESERVED);
  small_cluster(bytes, sizeof bytes); bytes[8] = 9;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_KIND);
  small_cluster(bytes, sizeof bytes); bytes[8] = 0;
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_KIND);
  small_cluster(bytes, sizeof bytes); bytes[8 + 12] = '|';
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_NAME);
  small_cluster(bytes, sizeof bytes); bytes[8 + 1] = 0; /* a value with no name */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_NAME);
  small_cluster(bytes, sizeof bytes); bytes[25 + 1] = 1; /* a record with a name length */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); memset(bytes + 25 + 4, 0, 8); /* producer 0 */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); bytes[157 + 2] = 0; bytes[157 + 3] = 0; /* held, origin 0 */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_ORIGIN);
  small_cluster(bytes, sizeof bytes); memset(bytes + 157 + 4, 0, 8); /* held_seq 0 */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); bytes[177 + 2] = 1; /* a claim for a replica */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_ORIGIN);
  small_cluster(bytes, sizeof bytes); memset(bytes + 177 + 28, 0, 8); /* attempt 0 */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); bytes[177 + 28 + 2] = 1; /* attempt above the keeper's */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); bytes[177 + 12 + 7] = 0x80; /* a claim's producer too big */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_BAD_FIELD);
  small_cluster(bytes, sizeof bytes); bytes[8 + 1] = 200; /* a name longer than what is left */
  expect_cluster(bytes, size, TALLY_WAL_CLUSTER_TRUNCATED);
  assert_string_equal(tally_wal_cluster_check_name(TALLY_WAL_CLUSTER_TRAILING), "trailing bytes");
}

/* The queue: tickets in order, durable only when the persister says, a slot reused. */
static void test_wal_queue(void **state)
{
  (void)state;
  static struct tally_wal_queue queue;
  assert_int_equal(tally_wal_queue_open(&queue), 0);
  for (uint64_t round = 0; round < 3u * TALLY_WAL_QUEUE_SLOTS; round++) {
    uint8_t *out = tally_wal_queue_reserve(&queue); /* never waits: one slot in use */
    out[0] = (uint8_t)round;
    tally_wal_queue_enter(&queue);
    assert_false(tally_wal_queue_left(&queue, tally_wal_queue_entered(&queue)));
    assert_int_equal(tally_wal_queue_publish(&queue, 1u + (uint32_t)(round % 7u)), round + 1u);
    tally_wal_queue_leave(&queue);
    assert_true(tally_wal_queue_left(&queue, tally_wal_queue_entered(&queue)));
    assert_int_equal(tally_wal_queue_ready(&queue), 1);
    const struct tally_wal_queue_slot *slot = tally_wal_queue_peek(&queue, 0);
    assert_int_equal(slot->size, 1u + round % 7u);
    assert_int_equal(slot->payload[0], (uint8_t)round);
    assert_int_equal(tally_wal_queue_durable(&queue), round);
    tally_wal_queue_pop(&queue, 1);
    assert_int_equal(tally_wal_queue_durable(&queue), round); /* not before the sync */
    tally_wal_queue_set_durable(&queue);
    assert_int_equal(tally_wal_queue_durable(&queue), round + 1u);
  }
  assert_int_equal(queue.waits, 0);
  tally_wal_queue_close(&queue);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crc32c_check_value),
    cmocka_unit_test(test_crc32c_paths_agree),
    cmocka_unit_test(test_record_round_trip),
    cmocka_unit_test(test_record_rejections),
    cmocka_unit_test(test_segment_names),
    cmocka_unit_test(test_batch_round_trip),
    cmocka_unit_test(test_batch_encode_refuses),
    cmocka_unit_test(test_batch_decode_rejections),
    cmocka_unit_test(test_cluster_round_trip),
    cmocka_unit_test(test_cluster_reliable_value),
    cmocka_unit_test(test_cluster_writer_full),
    cmocka_unit_test(test_cluster_rejections),
    cmocka_unit_test(test_wal_queue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
