/*
 * test_batch_wire.c — unit tests of the binary batch codec
 * (dataplane/wire/batch_wire.c): round trips at the limits, every rejection
 * reason and the order in which they are checked, bit flips caught by the
 * MAC, the attempt carried in a batch's status field, acks, refusals of the
 * encoder, and byte vectors shared with the Python producer in
 * tests/tools/tally_wire.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "tally/batch_wire.h"
#include "tally/mac.h"

static const uint8_t test_key[TALLY_KEY_SIZE] = {
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

/* Names of every length 1..224 carved out of one buffer. */
static const char long_name[] =
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/"
  "abcdefghijklmnopqrstuvwxyz0123"
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/"
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
static_assert(sizeof(long_name) == TALLY_NAME_LEN_MAX + 1, "224 name bytes + NUL");

/*
 * Same vectors as tests/tools/tally_wire.py (VECTOR_BATCH, VECTOR_BATCH_ATTEMPT,
 * VECTOR_ACK), made there.
 */
static const uint8_t vector_ack[TALLY_WIRE_ACK_SIZE] = {
  0x54, 0x42, 0x02, 0x02, 0x00, 0x00, 0x01, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
  0x1f, 0xbe, 0x00, 0x00, 0x3b, 0x81, 0x29, 0xd6, 0xce, 0x76, 0x5e, 0x2c, 0x0a, 0xc7,
  0xd0, 0x2c, 0xf0, 0x68, 0x28, 0x68,
};
#define VECTOR_X96                                                                   \
  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
  "xxxxxxxxxxxxxxxx"
/* Node 10.0.0.1, port 8126 (0x1fbe), reserved 0. */
#define VECTOR_NODE "\x0a\x00\x00\x01\x1f\xbe\x00\x00"
static const struct tally_wire_node vector_node = { .ipv4_be = 0x0100000au, .port_be = 0xbe1fu };
static const struct tally_wire_node vector_node_other = { .ipv4_be = 0x0200000au, .port_be = 0xbe1fu };
static const uint8_t vector_batch[] =
  "TB\x02\x01\x03\x00\x00\x00"
  "\x07\x00\x00\x00\x00\x00\x00\x00"
  "\x09\x00\x00\x00\x00\x00\x00\x00" VECTOR_NODE
  "\xff\xff\xff\xff\xff\xff\xff\xff\x01" "a"
  "\xff\xff\xff\xff\xff\xff\xff\x7f\x06" "req.ok"
  "\x00\x00\x00\x00\x00\x00\x00\x80\x60" VECTOR_X96
  "\xdf\x8f\xbd\xf8\xda\xbb\xce\x0f\xfb\x58\x5d\x56\x93\xc8\xca\x1e";
#define VECTOR_BATCH_SIZE (sizeof(vector_batch) - 1u) /* without the literal's NUL */
static_assert(VECTOR_BATCH_SIZE == 178u, "vector size as made by tally_wire.py");
/* The same batch with attempt 0x102 (status bytes 02 01), hence another MAC. */
static const uint8_t vector_batch_attempt[] =
  "TB\x02\x01\x03\x00\x02\x01"
  "\x07\x00\x00\x00\x00\x00\x00\x00"
  "\x09\x00\x00\x00\x00\x00\x00\x00" VECTOR_NODE
  "\xff\xff\xff\xff\xff\xff\xff\xff\x01" "a"
  "\xff\xff\xff\xff\xff\xff\xff\x7f\x06" "req.ok"
  "\x00\x00\x00\x00\x00\x00\x00\x80\x60" VECTOR_X96
  "\xd2\x6e\x79\x38\xb1\xc6\x23\x82\xa4\xfe\x0e\xd3\x0f\x59\x15\x04";
/* VECTOR_BATCH sent to 10.0.0.2 instead (a failover): VECTOR_BATCH_OTHER_NODE_MAC. */
static const uint8_t vector_batch_other_node_mac[TALLY_MAC_SIZE] = {
  0x7a, 0xed, 0x68, 0x53, 0x4c, 0x23, 0x5c, 0x5d, 0x30, 0x29, 0xeb, 0x0f, 0xaf, 0x36, 0xe7, 0x28,
};
static_assert(sizeof(vector_batch_attempt) - 1u == VECTOR_BATCH_SIZE, "same size");
#define VECTOR_ATTEMPT 0x102u

/* A batch of count pairs: name lengths cycle through 1..96, deltas vary in sign. */
static void batch_fill(struct tally_wire_batch *batch, uint32_t count, uint64_t producer,
  uint64_t seq)
{
  memset(batch, 0, sizeof(*batch));
  batch->node = vector_node;
  batch->producer = producer;
  batch->seq = seq;
  batch->count = count;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t name_len = 1u + (i * 37u) % TALLY_NAME_LEN_MAX;
    batch->pairs[i].name = long_name + (TALLY_NAME_LEN_MAX - name_len);
    batch->pairs[i].name_len = name_len;
    batch->pairs[i].delta = (i % 2u == 0) ? (int64_t)i * 1000 + 1 : -(int64_t)i * 7;
  }
}

static void batch_assert_equal(const struct tally_wire_batch *got,
  const struct tally_wire_batch *want)
{
  assert_int_equal(got->producer, want->producer);
  assert_int_equal(got->seq, want->seq);
  assert_int_equal(got->attempt, want->attempt);
  assert_int_equal(got->node.ipv4_be, want->node.ipv4_be);
  assert_int_equal(got->node.port_be, want->node.port_be);
  assert_int_equal(got->count, want->count);
  for (uint32_t i = 0; i < want->count; i++) {
    assert_int_equal(got->pairs[i].name_len, want->pairs[i].name_len);
    assert_memory_equal(got->pairs[i].name, want->pairs[i].name, want->pairs[i].name_len);
    assert_true(got->pairs[i].delta == want->pairs[i].delta);
  }
}

/* Re-signs raw bytes, so a test can build content that is invalid behind a good MAC. */
static void remac(uint8_t *data, size_t size)
{
  assert_true(size >= TALLY_MAC_SIZE);
  size_t body_size = size - TALLY_MAC_SIZE;
  tally_mac_compute(TALLY_MAC_BATCH, data, body_size, test_key, data + body_size);
}

static size_t encode_ok(const struct tally_wire_batch *batch, uint8_t *out, size_t out_size)
{
  size_t size = tally_wire_encode_batch(batch, test_key, out, out_size);
  assert_true(size >= TALLY_WIRE_BATCH_SIZE_MIN);
  assert_true(size <= TALLY_WIRE_BATCH_SIZE_MAX);
  return size;
}

static enum tally_reason decode(const uint8_t *data, size_t size, struct tally_wire_batch *out)
{
  return tally_wire_decode_batch(data, size, test_key, out);
}

/* ---- Round trips ------------------------------------------------------- */

static void test_round_trip_one_pair(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  batch_fill(&batch, 1, 1, 0);
  batch.pairs[0].delta = -5;
  uint8_t buffer[TALLY_WIRE_BATCH_SIZE_MAX];
  size_t size = encode_ok(&batch, buffer, sizeof(buffer));
  assert_int_equal(size, TALLY_WIRE_BATCH_SIZE_MIN);

  struct tally_wire_batch decoded;
  assert_int_equal(decode(buffer, size, &decoded), TALLY_OK);
  batch_assert_equal(&decoded, &batch);
  /* Names point into the datagram. */
  assert_ptr_equal(decoded.pairs[0].name, (const char *)buffer + TALLY_WIRE_HEADER_SIZE + 9);
}

static void test_round_trip_64_pairs_limits(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  batch_fill(&batch, TALLY_BATCH_PAIRS_MAX, UINT64_MAX, UINT64_MAX);
  for (uint32_t i = 0; i < TALLY_BATCH_PAIRS_MAX; i++) {
    batch.pairs[i].name = long_name;
    batch.pairs[i].name_len = TALLY_NAME_LEN_MAX;
  }
  batch.pairs[0].delta = INT64_MIN;
  batch.pairs[1].delta = INT64_MAX;
  batch.pairs[2].delta = -1;
  batch.pairs[3].delta = 0;
  static uint8_t buffer[TALLY_WIRE_BATCH_SIZE_MAX];
  size_t size = encode_ok(&batch, buffer, sizeof(buffer));
  assert_int_equal(size, TALLY_WIRE_BATCH_SIZE_MAX);

  struct tally_wire_batch decoded;
  assert_int_equal(decode(buffer, size, &decoded), TALLY_OK);
  batch_assert_equal(&decoded, &batch);
}

static void test_round_trip_mixed_lengths_unaligned(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  batch_fill(&batch, 20, 0x0102030405060708u, 0x1112131415161718u);
  static uint8_t buffer[TALLY_WIRE_BATCH_SIZE_MAX + 1];
  /* Encode and decode at an odd address: fields are read byte by byte. */
  size_t size = encode_ok(&batch, buffer + 1, sizeof(buffer) - 1);
  struct tally_wire_batch decoded;
  assert_int_equal(decode(buffer + 1, size, &decoded), TALLY_OK);
  batch_assert_equal(&decoded, &batch);
  /* Little-endian on the wire whatever the host. */
  assert_int_equal(buffer[1 + 8], 0x08);
  assert_int_equal(buffer[1 + 15], 0x01);
  assert_int_equal(buffer[1 + 4], 20);
  assert_int_equal(buffer[1 + 5], 0);
}

/* ---- Rejections -------------------------------------------------------- */

/* A valid 2-pair batch in buffer; returns its size. */
static size_t valid_small(uint8_t *buffer, size_t buffer_size)
{
  struct tally_wire_batch batch;
  batch_fill(&batch, 2, 42, 7);
  return encode_ok(&batch, buffer, buffer_size);
}

/* Checks a rejection and whether the MAC-verified identity was filled in. */
static void expect_reject(const uint8_t *data, size_t size, enum tally_reason want,
  uint64_t producer_want)
{
  struct tally_wire_batch decoded;
  memset(&decoded, 0xa5, sizeof(decoded));
  assert_int_equal(decode(data, size, &decoded), want);
  assert_int_equal(decoded.count, 0);
  assert_int_equal(decoded.producer, producer_want);
}

static void test_reject_before_mac(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));

  expect_reject(buffer, 0, TALLY_REASON_BATCH_TRUNCATED, 0);
  expect_reject(buffer, TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE - 1,
    TALLY_REASON_BATCH_TRUNCATED, 0);
  uint8_t copy[256];
  for (uint32_t offset = 0; offset < 4; offset++) {
    memcpy(copy, buffer, size);
    copy[offset] ^= 0x40;
    enum tally_reason want =
      offset == 2 ? TALLY_REASON_BATCH_BAD_VERSION : TALLY_REASON_BATCH_BAD_MAGIC;
    expect_reject(copy, size, want, 0);
    /* Still rejected for the same reason with a good MAC: checked before it. */
    remac(copy, size);
    expect_reject(copy, size, want, 0);
  }
  memcpy(copy, buffer, size);
  copy[3] = TALLY_WIRE_TYPE_ACK;
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_MAGIC, 0);
  memcpy(copy, buffer, size);
  copy[size - 1] ^= 1;
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_MAC, 0);
  /* Truncated by one byte: the MAC no longer lines up. */
  expect_reject(buffer, size - 1, TALLY_REASON_BATCH_BAD_MAC, 0);

  struct tally_wire_batch decoded;
  uint8_t other_key[TALLY_KEY_SIZE];
  memcpy(other_key, test_key, sizeof(other_key));
  other_key[31] ^= 0x80;
  assert_int_equal(tally_wire_decode_batch(buffer, size, other_key, &decoded),
    TALLY_REASON_BATCH_BAD_MAC);
}

static void test_reject_order(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));
  /* Short and bad magic: truncated wins. */
  uint8_t copy[256];
  memcpy(copy, buffer, size);
  copy[0] = 'X';
  expect_reject(copy, 39, TALLY_REASON_BATCH_TRUNCATED, 0);
  /* Bad magic and version: magic wins. */
  copy[2] = 9;
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_MAGIC, 0);
  /* Bad version and MAC: version wins. */
  memcpy(copy, buffer, size);
  copy[2] = 9;
  copy[size - 1] ^= 1;
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_VERSION, 0);
  /* Bad MAC and bad content: MAC wins, so no identity comes out. */
  memcpy(copy, buffer, size);
  copy[8] = 0; /* producer 42 -> 0 */
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_MAC, 0);
  /* Too many pairs and producer 0: too many wins. */
  memcpy(copy, buffer, size);
  copy[4] = 65;
  copy[8] = 0;
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_TOO_MANY_PAIRS, 0);
}

static void test_reject_after_mac(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));
  uint8_t copy[256];

  memcpy(copy, buffer, size);
  copy[4] = 0; /* count 0 */
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_MALFORMED, 42);

  memcpy(copy, buffer, size);
  copy[4] = 65; /* count over the limit */
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_TOO_MANY_PAIRS, 42);
  copy[4] = 0xff;
  copy[5] = 0xff;
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_TOO_MANY_PAIRS, 42);

  memcpy(copy, buffer, size);
  copy[8] = 0; /* producer 0 */
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_BAD_PRODUCER, 0);

  memcpy(copy, buffer, size);
  copy[4] = 3; /* count claims a pair that is not there */
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_MALFORMED, 42);

  memcpy(copy, buffer, size);
  copy[4] = 1; /* count claims fewer pairs: trailing bytes */
  remac(copy, size);
  expect_reject(copy, size, TALLY_REASON_BATCH_MALFORMED, 42);

  /* One trailing byte after the last pair. */
  memcpy(copy, buffer, size - TALLY_MAC_SIZE);
  copy[size - TALLY_MAC_SIZE] = 'z';
  remac(copy, size + 1);
  expect_reject(copy, size + 1, TALLY_REASON_BATCH_MALFORMED, 42);

  /* The last pair cut short inside its name. */
  memcpy(copy, buffer, size - TALLY_MAC_SIZE - 1);
  remac(copy, size - 1);
  expect_reject(copy, size - 1, TALLY_REASON_BATCH_MALFORMED, 42);
}

/* ---- The attempt (a batch's status field) ------------------------------- */

static void test_attempt_round_trip(void **state)
{
  (void)state;
  static const uint16_t attempts[] = {0, 1, 2, 0xff, 0x100, 0x7fff, 0x8000, UINT16_MAX};
  for (uint32_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
    struct tally_wire_batch batch;
    batch_fill(&batch, 3, 42, 7);
    batch.attempt = attempts[i];
    uint8_t buffer[512];
    size_t size = encode_ok(&batch, buffer, sizeof(buffer));
    /* Little-endian in the status field. */
    assert_int_equal(buffer[6], attempts[i] & 0xffu);
    assert_int_equal(buffer[7], attempts[i] >> 8);
    struct tally_wire_batch decoded;
    assert_int_equal(decode(buffer, size, &decoded), TALLY_OK);
    /* Read up to TALLY_ATTEMPT_MAX; above, as it (TALLY_CLAIM_KEEPER is taken). */
    if (batch.attempt > TALLY_ATTEMPT_MAX) {
      assert_int_equal(decoded.attempt, TALLY_ATTEMPT_MAX);
      batch.attempt = TALLY_ATTEMPT_MAX;
    }
    batch_assert_equal(&decoded, &batch);
  }
}

static void test_attempt_any_value_valid(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));
  uint8_t copy[256];
  /* Every value a sender could put there decodes (raw bytes, re-signed). */
  for (uint32_t attempt = 0; attempt <= UINT16_MAX; attempt += 257u) {
    memcpy(copy, buffer, size);
    copy[6] = (uint8_t)(attempt & 0xffu);
    copy[7] = (uint8_t)(attempt >> 8);
    remac(copy, size);
    struct tally_wire_batch decoded;
    assert_int_equal(decode(copy, size, &decoded), TALLY_OK);
    assert_int_equal(decoded.attempt, attempt > TALLY_ATTEMPT_MAX ? TALLY_ATTEMPT_MAX : attempt);
    assert_int_equal(decoded.producer, 42);
    assert_int_equal(decoded.count, 2);
  }
  /* The two highest values: the cap, and the one above it (read as the cap). */
  for (uint32_t attempt = TALLY_ATTEMPT_MAX; attempt <= UINT16_MAX; attempt++) {
    memcpy(copy, buffer, size);
    copy[6] = (uint8_t)(attempt & 0xffu);
    copy[7] = (uint8_t)(attempt >> 8);
    remac(copy, size);
    struct tally_wire_batch decoded;
    assert_int_equal(decode(copy, size, &decoded), TALLY_OK);
    assert_int_equal(decoded.attempt, TALLY_ATTEMPT_MAX);
  }
  /* A rejection after the MAC still reports the attempt with the identity. */
  memcpy(copy, buffer, size);
  copy[4] = 0; /* count 0 */
  copy[6] = 5;
  remac(copy, size);
  struct tally_wire_batch decoded;
  assert_int_equal(decode(copy, size, &decoded), TALLY_REASON_BATCH_MALFORMED);
  assert_int_equal(decoded.producer, 42);
  assert_int_equal(decoded.attempt, 5);
  /* Before the MAC nothing is trusted: attempt 0. */
  copy[size - 1] ^= 1;
  assert_int_equal(decode(copy, size, &decoded), TALLY_REASON_BATCH_BAD_MAC);
  assert_int_equal(decoded.attempt, 0);
}

static void test_set_attempt(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  batch_fill(&batch, 5, 42, 7);
  uint8_t first[512];
  size_t size = encode_ok(&batch, first, sizeof(first));
  for (uint32_t attempt = 1; attempt <= 4; attempt++) {
    uint8_t resent[512];
    memcpy(resent, first, size);
    tally_wire_set_send(resent, size, test_key, (uint16_t)attempt, vector_node);
    /* The same bytes as encoding the batch with that attempt. */
    batch.attempt = (uint16_t)attempt;
    uint8_t encoded[512];
    assert_int_equal(encode_ok(&batch, encoded, sizeof(encoded)), size);
    assert_memory_equal(resent, encoded, size);
    struct tally_wire_batch decoded;
    assert_int_equal(decode(resent, size, &decoded), TALLY_OK);
    batch_assert_equal(&decoded, &batch);
    /* Only the status field and the MAC changed. */
    assert_memory_equal(resent, first, 6);
    assert_memory_equal(resent + 24, first + 24, 8); /* same node */
    assert_memory_equal(resent + 8, first + 8, size - 8 - TALLY_MAC_SIZE);
    assert_memory_not_equal(resent + size - TALLY_MAC_SIZE, first + size - TALLY_MAC_SIZE,
      TALLY_MAC_SIZE);
  }
  /* Back to 0: the original datagram again. */
  uint8_t again[512];
  memcpy(again, first, size);
  tally_wire_set_send(again, size, test_key, UINT16_MAX, vector_node_other);
  tally_wire_set_send(again, size, test_key, 0, vector_node);
  assert_memory_equal(again, first, size);
}

/* First pair has name length 1 (see batch_fill); rewrite its length byte or name byte. */
static void expect_bad_name(const uint8_t *buffer, size_t size, uint32_t offset, uint8_t value,
  enum tally_reason want)
{
  uint8_t copy[256];
  assert_true(size <= sizeof(copy));
  memcpy(copy, buffer, size);
  copy[offset] = value;
  remac(copy, size);
  expect_reject(copy, size, want, 42);
}

static void test_reject_bad_names(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));
  const uint32_t len_offset = TALLY_WIRE_HEADER_SIZE + 8;
  const uint32_t name_offset = TALLY_WIRE_HEADER_SIZE + 9;
  assert_int_equal(buffer[len_offset], 1);

  expect_bad_name(buffer, size, len_offset, 0, TALLY_REASON_BATCH_BAD_NAME);
  const uint8_t bad_bytes[] = {' ', ':', '|', '@', '#', 0x7f, 0x00, 0x80, 0xff, '\n'};
  for (uint32_t i = 0; i < sizeof(bad_bytes); i++) {
    expect_bad_name(buffer, size, name_offset, bad_bytes[i], TALLY_REASON_BATCH_BAD_NAME);
  }
  /* A name of 225 bytes with the bytes present is a bad name, not a short datagram. */
  struct tally_wire_batch batch;
  batch_fill(&batch, 1, 42, 7);
  batch.pairs[0].name = long_name;
  batch.pairs[0].name_len = TALLY_NAME_LEN_MAX;
  uint8_t big[512];
  size_t big_size = encode_ok(&batch, big, sizeof(big));
  memmove(big + big_size - TALLY_MAC_SIZE + 1, big + big_size - TALLY_MAC_SIZE, TALLY_MAC_SIZE);
  big[big_size - TALLY_MAC_SIZE] = 'q';
  big[len_offset] = TALLY_NAME_LEN_MAX + 1;
  remac(big, big_size + 1);
  expect_reject(big, big_size + 1, TALLY_REASON_BATCH_BAD_NAME, 42);
  /* Without the bytes, a long length runs off the end: malformed. */
  expect_bad_name(buffer, size, len_offset, 0xff, TALLY_REASON_BATCH_MALFORMED);
}

/* Tagged pairs: key text in any order round-trips to one canonical key. */
static void test_tagged_pairs_round_trip(void **state)
{
  (void)state;
  static const char *const texts[] = {"req{status=500,method=GET}", "req{method=GET,status=500}",
    "req{status=500,method=GET,status=500}", "req{method=GET,status=500,}", "req", "req{}",
    "req{a=1,a=2}", "req}", "{a=1}", "req{a=1", "req{x=y=z}", "req{canary=,env=prod}"};
  static const char *const want[] = {"req{method=GET,status=500}", "req{method=GET,status=500}",
    "req{method=GET,status=500}", NULL, "req", "req", NULL, NULL, NULL, NULL, NULL,
    "req{canary,env=prod}"};
  for (uint32_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    struct tally_wire_batch batch;
    batch_fill(&batch, 2, 42, 7);
    batch.pairs[1].name = texts[i];
    batch.pairs[1].name_len = (uint32_t)strlen(texts[i]);
    uint8_t datagram[512];
    size_t size = encode_ok(&batch, datagram, sizeof(datagram));
    struct tally_wire_batch decoded;
    assert_int_equal(decode(datagram, size, &decoded), TALLY_OK);
    const char *before = decoded.pairs[0].name;
    char keys[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX];
    enum tally_reason reason = tally_wire_batch_canonicalize(&decoded, keys);
    if (want[i] == NULL) {
      assert_int_equal(reason, TALLY_REASON_BATCH_BAD_KEY);
      continue;
    }
    assert_int_equal(reason, TALLY_OK);
    assert_ptr_equal(decoded.pairs[0].name, before); /* an untagged pair stays in place */
    assert_int_equal(decoded.pairs[1].name_len, strlen(want[i]));
    assert_memory_equal(decoded.pairs[1].name, want[i], strlen(want[i]));
    assert_int_equal(decoded.pairs[1].delta, batch.pairs[1].delta);
  }
}

static void test_bit_flips_rejected(void **state)
{
  (void)state;
  uint8_t buffer[256];
  size_t size = valid_small(buffer, sizeof(buffer));
  uint8_t copy[256];
  for (size_t bit = 0; bit < size * 8u; bit++) {
    memcpy(copy, buffer, size);
    copy[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
    struct tally_wire_batch decoded;
    enum tally_reason reason = decode(copy, size, &decoded);
    assert_int_not_equal(reason, TALLY_OK);
    assert_int_equal(decoded.count, 0);
  }
}

/* ---- Encoder refusals -------------------------------------------------- */

static void test_encode_refuses_invalid(void **state)
{
  (void)state;
  uint8_t buffer[TALLY_WIRE_BATCH_SIZE_MAX];
  struct tally_wire_batch batch;
  batch_fill(&batch, 2, 42, 7);
  size_t size = encode_ok(&batch, buffer, sizeof(buffer));
  /* Exact fit works; one byte less does not. */
  assert_int_equal(tally_wire_encode_batch(&batch, test_key, buffer, size), size);
  assert_int_equal(tally_wire_encode_batch(&batch, test_key, buffer, size - 1), 0);

  struct tally_wire_batch bad = batch;
  bad.count = 0;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.count = TALLY_BATCH_PAIRS_MAX + 1;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.producer = 0;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.pairs[1].name_len = 0;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.pairs[1].name = long_name;
  bad.pairs[1].name_len = TALLY_NAME_LEN_MAX + 1;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.pairs[1].name = "a:b";
  bad.pairs[1].name_len = 3;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
  bad = batch;
  bad.pairs[1].name = NULL;
  assert_int_equal(tally_wire_encode_batch(&bad, test_key, buffer, sizeof(buffer)), 0);
}

/* ---- Acks -------------------------------------------------------------- */

static void test_ack_round_trip(void **state)
{
  (void)state;
  assert_true(TALLY_WIRE_ACK_SIZE < TALLY_WIRE_BATCH_SIZE_MIN);
  for (uint32_t status = 0; status < TALLY_ACK_STATUS_COUNT; status++) {
    uint8_t ack[TALLY_WIRE_ACK_SIZE];
    tally_wire_encode_ack(0xdeadbeefcafef00du, status, (enum tally_ack_status)status,
      vector_node, test_key, ack);
    uint64_t producer = 0;
    uint64_t seq = 0;
    enum tally_ack_status got = TALLY_ACK_STATUS_COUNT;
    assert_int_equal(tally_wire_decode_ack(ack, sizeof(ack), test_key, &producer, &seq, &got),
      TALLY_OK);
    assert_true(producer == 0xdeadbeefcafef00du);
    assert_int_equal(seq, status);
    assert_int_equal(got, status);
    /* An ack is never taken for a batch. */
    struct tally_wire_batch decoded;
    assert_int_equal(decode(ack, sizeof(ack), &decoded), TALLY_REASON_BATCH_BAD_MAGIC);
  }
}

static enum tally_reason decode_ack(const uint8_t *data, size_t size)
{
  uint64_t producer;
  uint64_t seq;
  enum tally_ack_status status;
  return tally_wire_decode_ack(data, size, test_key, &producer, &seq, &status);
}

static void test_ack_rejections(void **state)
{
  (void)state;
  uint8_t ack[TALLY_WIRE_ACK_SIZE + 1];
  tally_wire_encode_ack(5, 6, TALLY_ACK_APPLIED, vector_node, test_key, ack);
  assert_int_equal(decode_ack(ack, TALLY_WIRE_ACK_SIZE), TALLY_OK);
  assert_int_equal(decode_ack(ack, TALLY_WIRE_ACK_SIZE - 1), TALLY_REASON_BATCH_TRUNCATED);
  assert_int_equal(decode_ack(ack, 0), TALLY_REASON_BATCH_TRUNCATED);
  ack[TALLY_WIRE_ACK_SIZE] = 0;
  assert_int_equal(decode_ack(ack, TALLY_WIRE_ACK_SIZE + 1), TALLY_REASON_BATCH_MALFORMED);

  uint8_t copy[TALLY_WIRE_ACK_SIZE];
  const struct {
    uint32_t offset;
    uint8_t value;
    enum tally_reason want;
  } cases[] = {
    {0, 'X', TALLY_REASON_BATCH_BAD_MAGIC},
    {3, TALLY_WIRE_TYPE_BATCH, TALLY_REASON_BATCH_BAD_MAGIC},
    {2, 1, TALLY_REASON_BATCH_BAD_VERSION}, /* version 1: before the node (H3) */
    {4, 1, TALLY_REASON_BATCH_MALFORMED}, /* count must be 0 */
    {6, TALLY_ACK_STATUS_COUNT, TALLY_REASON_BATCH_MALFORMED},
    {7, 1, TALLY_REASON_BATCH_MALFORMED},
  };
  for (uint32_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memcpy(copy, ack, sizeof(copy));
    copy[cases[i].offset] = cases[i].value;
    tally_mac_compute(TALLY_MAC_ACK, copy, TALLY_WIRE_HEADER_SIZE, test_key,
      copy + TALLY_WIRE_HEADER_SIZE);
    assert_int_equal(decode_ack(copy, sizeof(copy)), cases[i].want);
  }
  for (size_t bit = 0; bit < sizeof(copy) * 8u; bit++) {
    memcpy(copy, ack, sizeof(copy));
    copy[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
    assert_int_not_equal(decode_ack(copy, sizeof(copy)), TALLY_OK);
  }
  uint8_t other_key[TALLY_KEY_SIZE] = {0};
  uint64_t producer;
  uint64_t seq;
  enum tally_ack_status status;
  assert_int_equal(tally_wire_decode_ack(ack, TALLY_WIRE_ACK_SIZE, other_key, &producer, &seq,
    &status), TALLY_REASON_BATCH_BAD_MAC);
}

static void test_ack_status_names(void **state)
{
  (void)state;
  assert_string_equal(tally_ack_status_name(TALLY_ACK_APPLIED), "applied");
  assert_string_equal(tally_ack_status_name(TALLY_ACK_DUPLICATE), "duplicate");
  assert_string_equal(tally_ack_status_name(TALLY_ACK_READ_ONLY), "read_only");
  assert_string_equal(tally_ack_status_name(TALLY_ACK_STATUS_COUNT), "unknown");
  for (uint32_t i = 0; i < TALLY_ACK_STATUS_COUNT; i++) {
    for (uint32_t j = i + 1; j < TALLY_ACK_STATUS_COUNT; j++) {
      assert_string_not_equal(tally_ack_status_name((enum tally_ack_status)i),
        tally_ack_status_name((enum tally_ack_status)j));
    }
  }
}

/* ---- Vectors shared with tests/tools/tally_wire.py ---------------------- */

static void test_python_vectors(void **state)
{
  (void)state;
  struct tally_wire_batch decoded;
  assert_int_equal(decode(vector_batch, VECTOR_BATCH_SIZE, &decoded), TALLY_OK);
  struct tally_wire_batch want = {.producer = 7, .seq = 9, .count = 3, .node = vector_node};
  want.pairs[0] = (struct tally_wire_pair){.name = "a", .name_len = 1, .delta = -1};
  want.pairs[1] = (struct tally_wire_pair){.name = "req.ok", .name_len = 6, .delta = INT64_MAX};
  want.pairs[2] = (struct tally_wire_pair){.name = VECTOR_X96, .name_len = 96,
    .delta = INT64_MIN};
  batch_assert_equal(&decoded, &want);
  uint8_t buffer[256];
  assert_int_equal(tally_wire_encode_batch(&want, test_key, buffer, sizeof(buffer)),
    VECTOR_BATCH_SIZE);
  assert_memory_equal(buffer, vector_batch, VECTOR_BATCH_SIZE);

  /* A resend of it: attempt 0x102. */
  assert_int_equal(decode(vector_batch_attempt, VECTOR_BATCH_SIZE, &decoded), TALLY_OK);
  want.attempt = VECTOR_ATTEMPT;
  batch_assert_equal(&decoded, &want);
  assert_int_equal(tally_wire_encode_batch(&want, test_key, buffer, sizeof(buffer)),
    VECTOR_BATCH_SIZE);
  assert_memory_equal(buffer, vector_batch_attempt, VECTOR_BATCH_SIZE);
  memcpy(buffer, vector_batch, VECTOR_BATCH_SIZE);
  tally_wire_set_send(buffer, VECTOR_BATCH_SIZE, test_key, VECTOR_ATTEMPT, vector_node);
  assert_memory_equal(buffer, vector_batch_attempt, VECTOR_BATCH_SIZE);
  /* Failing over to 10.0.0.2: the node and the MAC change, nothing else. */
  memcpy(buffer, vector_batch, VECTOR_BATCH_SIZE);
  tally_wire_set_send(buffer, VECTOR_BATCH_SIZE, test_key, 0, vector_node_other);
  assert_memory_equal(buffer + VECTOR_BATCH_SIZE - TALLY_MAC_SIZE, vector_batch_other_node_mac,
    TALLY_MAC_SIZE);
  assert_int_equal(decode(buffer, VECTOR_BATCH_SIZE, &decoded), TALLY_OK);
  assert_int_equal(decoded.node.ipv4_be, vector_node_other.ipv4_be);

  uint8_t ack[TALLY_WIRE_ACK_SIZE];
  tally_wire_encode_ack(0x102, 0x304, TALLY_ACK_DUPLICATE, vector_node, test_key, ack);
  assert_memory_equal(ack, vector_ack, sizeof(ack));
}

/* ---- Derived producer keys (issue 14, M2) ------------------------------- */

/*
 * BLAKE2b-256(key = test_key, personal = "tally-producer\0\0", 1 as 8 bytes
 * LE), made with Python's hashlib.blake2b (tests/tools/reliable_producer.py).
 */
static const uint8_t vector_producer_1_key[TALLY_KEY_SIZE] = {
  0xfc, 0x38, 0x40, 0xf6, 0xb2, 0x6e, 0x03, 0x17, 0xf8, 0x68, 0x61, 0x8e, 0xc2, 0xde, 0x5e, 0xb5,
  0x8d, 0x13, 0x62, 0x2c, 0xb6, 0xb3, 0x56, 0x8f, 0xce, 0xcb, 0x97, 0x1a, 0x22, 0xb0, 0xe0, 0xa1,
};

static void test_producer_key_vector_and_per_id(void **state)
{
  (void)state;
  uint8_t one[TALLY_KEY_SIZE], two[TALLY_KEY_SIZE];
  tally_wire_producer_key(test_key, 1, one);
  assert_memory_equal(one, vector_producer_1_key, TALLY_KEY_SIZE);
  tally_wire_producer_key(test_key, 2, two);
  assert_memory_not_equal(one, two, TALLY_KEY_SIZE);
  assert_memory_not_equal(one, test_key, TALLY_KEY_SIZE);
}

/* ---- The destination node (issue 14, H3) and MAC kinds (M2) ----------------- */

/*
 * A batch MAC'd for one node is refused by another (wrong_node), after the
 * MAC: a forgery stays bad_mac. Before version 2 a batch named no node, so a
 * batch captured on the wire was accepted by every node holding the key.
 */
static void test_batch_for_another_node_refused(void **state)
{
  (void)state;
  struct tally_wire_batch batch;
  batch_fill(&batch, 3, 9, 1);
  uint8_t buffer[1024];
  size_t size = encode_ok(&batch, buffer, sizeof(buffer));
  assert_int_equal(tally_wire_check_batch(buffer, size, test_key, vector_node), TALLY_OK);
  assert_int_equal(tally_wire_check_batch(buffer, size, test_key, vector_node_other),
    TALLY_REASON_BATCH_WRONG_NODE);
  struct tally_wire_node other_port = vector_node;
  other_port.port_be = 0x1f00u;
  assert_int_equal(tally_wire_check_batch(buffer, size, test_key, other_port),
    TALLY_REASON_BATCH_WRONG_NODE);
  /* Rewriting the node in flight breaks the MAC: bad_mac, not wrong_node. */
  uint8_t moved[1024];
  memcpy(moved, buffer, size);
  moved[27] ^= 0x03; /* 10.0.0.1 -> 10.0.0.2 */
  assert_int_equal(tally_wire_check_batch(moved, size, test_key, vector_node_other),
    TALLY_REASON_BATCH_BAD_MAC);
  /* Re-MAC'd by the producer for the other node (a failover): accepted there only. */
  tally_wire_set_send(moved, size, test_key, 1, vector_node_other);
  assert_int_equal(tally_wire_check_batch(moved, size, test_key, vector_node_other), TALLY_OK);
  assert_int_equal(tally_wire_check_batch(moved, size, test_key, vector_node),
    TALLY_REASON_BATCH_WRONG_NODE);
  struct tally_wire_batch decoded;
  assert_int_equal(tally_wire_decode_checked_batch(moved, size, &decoded), TALLY_OK);
  assert_int_equal(decoded.attempt, 1);
  assert_int_equal(decoded.node.ipv4_be, vector_node_other.ipv4_be);
  /* A version 1 batch (24-byte header, no node) is refused as such, before its MAC. */
  memcpy(moved, buffer, size);
  moved[2] = 1;
  assert_int_equal(tally_wire_check_batch(moved, size, test_key, vector_node),
    TALLY_REASON_BATCH_BAD_VERSION);
}

/* Each kind's MAC differs over the same bytes: no MAC of one kind verifies as another. */
static void test_mac_kinds_separated(void **state)
{
  (void)state;
  const uint8_t data[] = "the same bytes under the same key";
  uint8_t macs[TALLY_MAC_KIND_COUNT][TALLY_MAC_SIZE];
  for (uint32_t kind = 0; kind < TALLY_MAC_KIND_COUNT; kind++) {
    tally_mac_compute((enum tally_mac_kind)kind, data, sizeof data, test_key, macs[kind]);
    assert_true(tally_mac_verify((enum tally_mac_kind)kind, data, sizeof data, test_key,
      macs[kind]));
    for (uint32_t other = 0; other < kind; other++) {
      assert_memory_not_equal(macs[kind], macs[other], TALLY_MAC_SIZE);
      assert_false(tally_mac_verify((enum tally_mac_kind)other, data, sizeof data, test_key,
        macs[kind]));
    }
  }
  /* An ack's header MAC'd as a batch does not verify as an ack (and vice versa). */
  uint8_t ack[TALLY_WIRE_ACK_SIZE];
  tally_wire_encode_ack(5, 6, TALLY_ACK_APPLIED, vector_node, test_key, ack);
  tally_mac_compute(TALLY_MAC_BATCH, ack, TALLY_WIRE_HEADER_SIZE, test_key,
    ack + TALLY_WIRE_HEADER_SIZE);
  assert_int_equal(decode_ack(ack, sizeof ack), TALLY_REASON_BATCH_BAD_MAC);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip_one_pair),
    cmocka_unit_test(test_producer_key_vector_and_per_id),
    cmocka_unit_test(test_round_trip_64_pairs_limits),
    cmocka_unit_test(test_round_trip_mixed_lengths_unaligned),
    cmocka_unit_test(test_reject_before_mac),
    cmocka_unit_test(test_reject_order),
    cmocka_unit_test(test_reject_after_mac),
    cmocka_unit_test(test_reject_bad_names),
    cmocka_unit_test(test_attempt_round_trip),
    cmocka_unit_test(test_attempt_any_value_valid),
    cmocka_unit_test(test_set_attempt),
    cmocka_unit_test(test_bit_flips_rejected),
    cmocka_unit_test(test_encode_refuses_invalid),
    cmocka_unit_test(test_tagged_pairs_round_trip),
    cmocka_unit_test(test_ack_round_trip),
    cmocka_unit_test(test_ack_rejections),
    cmocka_unit_test(test_ack_status_names),
    cmocka_unit_test(test_python_vectors),
    cmocka_unit_test(test_batch_for_another_node_refused),
    cmocka_unit_test(test_mac_kinds_separated),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
