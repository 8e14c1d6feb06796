/*
 * test_heartbeat_wire.c — unit tests of the heartbeat datagram
 * (control/cluster/proto/heartbeat_wire.c): round trips at the field limits, the byte
 * layout against a vector made independently (Python hashlib.blake2b), every
 * rejection reason and the order of the checks, every single-bit flip
 * rejected, and every wrong key rejected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "heartbeat_wire.h"
#include "tally/mac.h"

static const uint8_t test_key[TALLY_KEY_SIZE] = {
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

/*
 * Node 0x0102, flags READY|DRAINING, generation 0x0a0b0c0d, send time
 * 0x1122334455667788, LSN 0x0123456789abcdef, keyed with test_key; made by
 * hashlib.blake2b(body, digest_size=16, key=bytes(range(32)),
 * person=b"tally-mac-hbeat\0") (version 2: personalised, issue 14 M2).
 */
static const uint8_t vector[TALLY_HEARTBEAT_SIZE] = {
  0x54, 0x48, 0x02, 0x01, 0x02, 0x01, 0x05, 0x00, 0x0d, 0x0c, 0x0b, 0x0a, 0x00, 0x00, 0x00,
  0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45,
  0x23, 0x01, 0x92, 0x36, 0xa3, 0xbc, 0xe8, 0x09, 0xdd, 0x45, 0xab, 0xf0, 0xd3, 0x12, 0xa6,
  0xca, 0xbb, 0xaa,
};

static const struct tally_heartbeat vector_heartbeat = {
  .node_id = 0x0102,
  .flags = TALLY_HEARTBEAT_FLAG_READY | TALLY_HEARTBEAT_FLAG_DRAINING,
  .generation = 0x0a0b0c0d,
  .send_time_ns = 0x1122334455667788ull,
  .lsn = 0x0123456789abcdefull,
};

static void assert_heartbeat_equal(const struct tally_heartbeat *a,
  const struct tally_heartbeat *b)
{
  assert_int_equal(a->node_id, b->node_id);
  assert_int_equal(a->flags, b->flags);
  assert_int_equal(a->generation, b->generation);
  assert_int_equal(a->send_time_ns, b->send_time_ns);
  assert_int_equal(a->lsn, b->lsn);
}

static void assert_zeroed(const struct tally_heartbeat *heartbeat)
{
  struct tally_heartbeat zero;
  memset(&zero, 0, sizeof(zero));
  assert_heartbeat_equal(heartbeat, &zero);
}

/* Replaces the MAC of message with the right one for its (possibly edited) body. */
static void resign(uint8_t message[TALLY_HEARTBEAT_SIZE])
{
  tally_mac_compute(TALLY_MAC_HEARTBEAT, message, TALLY_HEARTBEAT_BODY_SIZE, test_key,
    message + TALLY_HEARTBEAT_BODY_SIZE);
}

static enum tally_heartbeat_reason decode(const uint8_t *data, size_t size,
  struct tally_heartbeat *heartbeat)
{
  memset(heartbeat, 0x5a, sizeof(*heartbeat)); /* decode must overwrite everything */
  return tally_heartbeat_decode(data, size, test_key, heartbeat);
}

/* ---- Round trips ------------------------------------------------------------ */

static void test_vector(void **state)
{
  (void)state;
  uint8_t message[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&vector_heartbeat, test_key, message);
  assert_memory_equal(message, vector, sizeof(vector));
  struct tally_heartbeat decoded;
  assert_int_equal(decode(vector, sizeof(vector), &decoded), TALLY_HEARTBEAT_OK);
  assert_heartbeat_equal(&decoded, &vector_heartbeat);
}

static void test_round_trip_limits(void **state)
{
  (void)state;
  const struct tally_heartbeat cases[] = {
    {0},
    {.node_id = UINT16_MAX, .flags = TALLY_HEARTBEAT_FLAGS_KNOWN, .generation = UINT32_MAX,
     .send_time_ns = UINT64_MAX, .lsn = UINT64_MAX},
    {.node_id = 1, .flags = TALLY_HEARTBEAT_FLAG_READ_ONLY, .generation = 1,
     .send_time_ns = 1, .lsn = 1},
    {.node_id = 0x8000, .flags = TALLY_HEARTBEAT_FLAG_READY, .generation = 0x80000000u,
     .send_time_ns = 0x8000000000000000ull, .lsn = 0x8000000000000000ull},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t message[TALLY_HEARTBEAT_SIZE];
    tally_heartbeat_encode(&cases[i], test_key, message);
    struct tally_heartbeat decoded;
    assert_int_equal(decode(message, sizeof(message), &decoded), TALLY_HEARTBEAT_OK);
    assert_heartbeat_equal(&decoded, &cases[i]);
  }
  /* Every combination of known flags. */
  for (uint16_t flags = 0; flags <= TALLY_HEARTBEAT_FLAGS_KNOWN; flags++) {
    struct tally_heartbeat heartbeat = vector_heartbeat;
    heartbeat.flags = flags;
    uint8_t message[TALLY_HEARTBEAT_SIZE];
    tally_heartbeat_encode(&heartbeat, test_key, message);
    struct tally_heartbeat decoded;
    assert_int_equal(decode(message, sizeof(message), &decoded), TALLY_HEARTBEAT_OK);
    assert_int_equal(decoded.flags, flags);
  }
}

/* ---- Rejections ------------------------------------------------------------- */

static void expect_reason(const uint8_t *data, size_t size, enum tally_heartbeat_reason want)
{
  struct tally_heartbeat decoded;
  enum tally_heartbeat_reason got = decode(data, size, &decoded);
  if (got != want) {
    fail_msg("got %s, want %s", tally_heartbeat_reason_name(got),
      tally_heartbeat_reason_name(want));
  }
  if (want != TALLY_HEARTBEAT_OK) assert_zeroed(&decoded);
}

static void test_rejections(void **state)
{
  (void)state;
  uint8_t big[TALLY_HEARTBEAT_SIZE + 8];
  memcpy(big, vector, sizeof(vector));
  memset(big + sizeof(vector), 0, 8);
  expect_reason(NULL, 0, TALLY_HEARTBEAT_TRUNCATED);
  for (size_t size = 0; size < TALLY_HEARTBEAT_SIZE; size++) {
    expect_reason(vector, size, TALLY_HEARTBEAT_TRUNCATED);
  }
  expect_reason(big, TALLY_HEARTBEAT_SIZE + 1, TALLY_HEARTBEAT_MALFORMED);
  expect_reason(big, sizeof(big), TALLY_HEARTBEAT_MALFORMED);

  uint8_t message[TALLY_HEARTBEAT_SIZE];
  const struct {
    size_t offset;
    uint8_t value;
    enum tally_heartbeat_reason want;
  } edits[] = {
    {0, 'X', TALLY_HEARTBEAT_BAD_MAGIC},
    {1, 'B', TALLY_HEARTBEAT_BAD_MAGIC}, /* a batch's magic */
    {2, 0, TALLY_HEARTBEAT_BAD_VERSION},
    {2, 1, TALLY_HEARTBEAT_BAD_VERSION}, /* version 1: an unpersonalised MAC */
    {2, 3, TALLY_HEARTBEAT_BAD_VERSION},
    {3, 0, TALLY_HEARTBEAT_BAD_MAGIC},   /* another type */
    {3, 2, TALLY_HEARTBEAT_BAD_MAGIC},
    {47, 0x80, TALLY_HEARTBEAT_BAD_MAC},
  };
  for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
    memcpy(message, vector, sizeof(message));
    message[edits[i].offset] = edits[i].value;
    expect_reason(message, sizeof(message), edits[i].want);
    /* Checked before the MAC: a correct MAC changes nothing. */
    if (edits[i].want != TALLY_HEARTBEAT_BAD_MAC) {
      resign(message);
      expect_reason(message, sizeof(message), edits[i].want);
    }
  }
}

static void test_rejections_behind_the_mac(void **state)
{
  (void)state;
  uint8_t message[TALLY_HEARTBEAT_SIZE];
  /* Unknown flag bits and reserved bytes: BAD_MAC unsigned, MALFORMED signed. */
  for (uint32_t bit = 3; bit < 16; bit++) {
    memcpy(message, vector, sizeof(message));
    message[6 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
    expect_reason(message, sizeof(message), TALLY_HEARTBEAT_BAD_MAC);
    resign(message);
    expect_reason(message, sizeof(message), TALLY_HEARTBEAT_MALFORMED);
  }
  for (size_t offset = 12; offset < 16; offset++) {
    memcpy(message, vector, sizeof(message));
    message[offset] = 1;
    expect_reason(message, sizeof(message), TALLY_HEARTBEAT_BAD_MAC);
    resign(message);
    expect_reason(message, sizeof(message), TALLY_HEARTBEAT_MALFORMED);
  }
  /* Order: the first failing check wins. */
  memcpy(message, vector, sizeof(message));
  message[0] = 'X';
  message[2] = 9;
  expect_reason(message, TALLY_HEARTBEAT_SIZE - 1, TALLY_HEARTBEAT_TRUNCATED);
  expect_reason(message, sizeof(message), TALLY_HEARTBEAT_BAD_MAGIC);
  message[0] = 'T';
  message[3] = 7;
  expect_reason(message, sizeof(message), TALLY_HEARTBEAT_BAD_VERSION);
}

/* ---- Bit flips and keys ------------------------------------------------------ */

static void test_every_bit_flip_rejected(void **state)
{
  (void)state;
  for (size_t byte = 0; byte < TALLY_HEARTBEAT_SIZE; byte++) {
    for (uint32_t bit = 0; bit < 8; bit++) {
      uint8_t message[TALLY_HEARTBEAT_SIZE];
      memcpy(message, vector, sizeof(message));
      message[byte] ^= (uint8_t)(1u << bit);
      enum tally_heartbeat_reason want = TALLY_HEARTBEAT_BAD_MAC;
      if (byte <= 1 || byte == 3) want = TALLY_HEARTBEAT_BAD_MAGIC;
      if (byte == 2) want = TALLY_HEARTBEAT_BAD_VERSION;
      expect_reason(message, sizeof(message), want);
    }
  }
}

static void test_wrong_key(void **state)
{
  (void)state;
  struct tally_heartbeat decoded;
  uint8_t other_key[TALLY_KEY_SIZE];
  memset(other_key, 0, sizeof(other_key));
  assert_int_equal(tally_heartbeat_decode(vector, sizeof(vector), other_key, &decoded),
    TALLY_HEARTBEAT_BAD_MAC);
  assert_zeroed(&decoded);
  /* Issue 14, M2: the right key, but the MAC of another kind (a replication
   * other_kind's, a batch's) or unpersonalised (version 1's): refused. */
  uint8_t other_kind[TALLY_HEARTBEAT_SIZE];
  memcpy(other_kind, vector, sizeof(other_kind));
  for (uint32_t kind = 0; kind < TALLY_MAC_KIND_COUNT; kind++) {
    if (kind == TALLY_MAC_HEARTBEAT) continue;
    tally_mac_compute((enum tally_mac_kind)kind, other_kind, TALLY_HEARTBEAT_BODY_SIZE, test_key,
      other_kind + TALLY_HEARTBEAT_BODY_SIZE);
    assert_int_equal(tally_heartbeat_decode(other_kind, sizeof(other_kind), test_key, &decoded),
      TALLY_HEARTBEAT_BAD_MAC);
  }
  assert_int_equal(crypto_generichash(other_kind + TALLY_HEARTBEAT_BODY_SIZE, TALLY_MAC_SIZE,
    other_kind, TALLY_HEARTBEAT_BODY_SIZE, test_key, TALLY_KEY_SIZE), 0);
  assert_int_equal(tally_heartbeat_decode(other_kind, sizeof(other_kind), test_key, &decoded),
    TALLY_HEARTBEAT_BAD_MAC);
  /* Every key one bit away from the right one. */
  for (size_t byte = 0; byte < TALLY_KEY_SIZE; byte++) {
    for (uint32_t bit = 0; bit < 8; bit++) {
      memcpy(other_key, test_key, sizeof(other_key));
      other_key[byte] ^= (uint8_t)(1u << bit);
      assert_int_equal(tally_heartbeat_decode(vector, sizeof(vector), other_key, &decoded),
        TALLY_HEARTBEAT_BAD_MAC);
    }
  }
  /* And a heartbeat signed with another key is refused under ours. */
  uint8_t message[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&vector_heartbeat, other_key, message);
  expect_reason(message, sizeof(message), TALLY_HEARTBEAT_BAD_MAC);
}

static void test_reason_names(void **state)
{
  (void)state;
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_OK), "ok");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_TRUNCATED), "truncated");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_BAD_MAGIC), "bad_magic");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_BAD_VERSION), "bad_version");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_BAD_MAC), "bad_mac");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_MALFORMED), "malformed");
  assert_string_equal(tally_heartbeat_reason_name(TALLY_HEARTBEAT_REASON_COUNT), "invalid");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vector),
    cmocka_unit_test(test_round_trip_limits),
    cmocka_unit_test(test_rejections),
    cmocka_unit_test(test_rejections_behind_the_mac),
    cmocka_unit_test(test_every_bit_flip_rejected),
    cmocka_unit_test(test_wrong_key),
    cmocka_unit_test(test_reason_names),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
