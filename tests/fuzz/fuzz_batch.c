/*
 * fuzz_batch.c — libFuzzer target of the binary batch codec
 * (dataplane/wire/batch_wire.c).
 *
 * Every input is decoded as it came, with a fixed key: that fuzzes the checks
 * in front of the MAC. Random bytes almost never carry a valid MAC, so when
 * the first byte is odd the rest of the input is also signed with the right
 * MAC and decoded again (as a batch and as an ack): that fuzzes the parser
 * behind the MAC. Whatever decodes must be in range, point inside the input,
 * and re-encode to exactly the same bytes; a batch's attempt (any value is
 * valid, read up to 65534) rewritten by tally_wire_set_attempt must decode to the new attempt
 * and the same pairs, and rewriting it back must restore the input.
 *
 * Tagged pairs: tally_wire_batch_canonicalize either refuses the batch
 * (BATCH_BAD_KEY) or turns every pair into a canonical key (a fixed point:
 * canonicalizing it again changes nothing), never longer than the pair's text,
 * with the same name before '{', the same delta, and untagged pairs untouched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tally/batch_wire.h"
#include "tally/mac.h"
#include "tally/key.h"
#include "tally/name.h"

/* Stays on whatever NDEBUG says: a failed check is a finding. */
#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

/* Room for the largest batch plus slack, so oversize inputs are fuzzed too. */
#define FUZZ_SIGNED_SIZE_MAX (TALLY_WIRE_BATCH_SIZE_MAX + 256u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[TALLY_KEY_SIZE] = {
  0x5a, 0x11, 0x7e, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
  0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a,
  0x1b, 0x1c,
};

static void check_keys(const struct tally_wire_batch *decoded)
{
  static struct tally_wire_batch batch;
  static char keys[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX];
  batch = *decoded;
  enum tally_reason reason = tally_wire_batch_canonicalize(&batch, keys);
  FUZZ_CHECK(reason == TALLY_OK || reason == TALLY_REASON_BATCH_BAD_KEY);
  if (reason != TALLY_OK) return;
  for (uint32_t i = 0; i < batch.count; i++) {
    const struct tally_wire_pair *before = &decoded->pairs[i];
    const struct tally_wire_pair *after = &batch.pairs[i];
    FUZZ_CHECK(after->delta == before->delta);
    FUZZ_CHECK(tally_key_is_canonical(after->name, after->name_len));
    FUZZ_CHECK(after->name_len <= before->name_len);
    bool tagged = memchr(before->name, '{', before->name_len) != NULL;
    FUZZ_CHECK(tagged || (after->name == before->name && after->name_len == before->name_len));
    const char *brace = memchr(before->name, '{', before->name_len);
    size_t name_len = brace != NULL ? (size_t)(brace - before->name) : before->name_len;
    FUZZ_CHECK(memcmp(after->name, before->name, name_len) == 0);
    /* Canonical text canonicalizes to itself. */
    char again[TALLY_NAME_LEN_MAX];
    uint32_t again_len = 0;
    FUZZ_CHECK(tally_key_canonicalize(after->name, after->name_len, again, &again_len) ==
      TALLY_KEY_OK);
    FUZZ_CHECK(again_len == after->name_len && memcmp(again, after->name, again_len) == 0);
  }
}

static void check_batch(const uint8_t *data, size_t size)
{
  struct tally_wire_batch batch;
  enum tally_reason reason = tally_wire_decode_batch(data, size, fuzz_key, &batch);
  FUZZ_CHECK(reason < TALLY_REASON_COUNT);
  if (reason != TALLY_OK) {
    FUZZ_CHECK(batch.count == 0);
    return;
  }
  FUZZ_CHECK(batch.count >= 1);
  FUZZ_CHECK(batch.count <= TALLY_BATCH_PAIRS_MAX);
  FUZZ_CHECK(batch.producer != 0);
  FUZZ_CHECK(size >= TALLY_WIRE_BATCH_SIZE_MIN);
  const char *begin = (const char *)data;
  const char *end = begin + size;
  for (uint32_t i = 0; i < batch.count; i++) {
    const struct tally_wire_pair *pair = &batch.pairs[i];
    FUZZ_CHECK(pair->name >= begin + TALLY_WIRE_HEADER_SIZE);
    FUZZ_CHECK(pair->name <= end - TALLY_MAC_SIZE);
    FUZZ_CHECK(pair->name_len <= (size_t)(end - TALLY_MAC_SIZE - pair->name));
    FUZZ_CHECK(tally_name_valid(pair->name, pair->name_len));
  }
  check_keys(&batch);
  /* The attempt (status field, little-endian) is read up to 65534, above as 65534. */
  uint16_t wire_attempt = (uint16_t)(data[6] | (data[7] << 8));
  FUZZ_CHECK(batch.attempt == (wire_attempt > 0xfffeu ? 0xfffeu : wire_attempt));
  batch.attempt = wire_attempt; /* the encoder writes any value: the same bytes again */
  static uint8_t encoded[FUZZ_SIGNED_SIZE_MAX];
  size_t encoded_size = tally_wire_encode_batch(&batch, fuzz_key, encoded, sizeof(encoded));
  FUZZ_CHECK(encoded_size == size);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);

  /* A resend: another attempt, the rest unchanged, and back again. */
  uint16_t attempt = (uint16_t)(batch.attempt ^ 0x8001u);
  struct tally_wire_node other = { .ipv4_be = batch.node.ipv4_be ^ 1u, .port_be = batch.node.port_be };
  tally_wire_set_send(encoded, size, fuzz_key, attempt, other);
  FUZZ_CHECK(tally_wire_check_batch(encoded, size, fuzz_key, other) == TALLY_OK);
  FUZZ_CHECK(tally_wire_check_batch(encoded, size, fuzz_key, batch.node) ==
    TALLY_REASON_BATCH_WRONG_NODE);
  struct tally_wire_batch resent;
  FUZZ_CHECK(tally_wire_decode_batch(encoded, size, fuzz_key, &resent) == TALLY_OK);
  FUZZ_CHECK(resent.attempt == (attempt > 0xfffeu ? 0xfffeu : attempt));
  FUZZ_CHECK(resent.producer == batch.producer && resent.seq == batch.seq);
  FUZZ_CHECK(resent.count == batch.count);
  FUZZ_CHECK(resent.node.ipv4_be == other.ipv4_be && resent.node.port_be == other.port_be);
  FUZZ_CHECK(memcmp(encoded + TALLY_WIRE_HEADER_SIZE, data + TALLY_WIRE_HEADER_SIZE,
    size - TALLY_WIRE_HEADER_SIZE - TALLY_MAC_SIZE) == 0);
  tally_wire_set_send(encoded, size, fuzz_key, batch.attempt, batch.node);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);
}

static void check_ack(const uint8_t *data, size_t size)
{
  uint64_t producer = 0;
  uint64_t seq = 0;
  enum tally_ack_status status = TALLY_ACK_STATUS_COUNT;
  enum tally_reason reason = tally_wire_decode_ack(data, size, fuzz_key, &producer, &seq,
    &status);
  FUZZ_CHECK(reason < TALLY_REASON_COUNT);
  if (reason != TALLY_OK) return;
  FUZZ_CHECK(size == TALLY_WIRE_ACK_SIZE);
  FUZZ_CHECK((uint32_t)status < TALLY_ACK_STATUS_COUNT);
  uint8_t encoded[TALLY_WIRE_ACK_SIZE];
  struct tally_wire_node node; /* the answering node: bytes 24..29, network order */
  memcpy(&node.ipv4_be, data + 24, sizeof node.ipv4_be);
  memcpy(&node.port_be, data + 28, sizeof node.port_be);
  tally_wire_encode_ack(producer, seq, status, node, fuzz_key, encoded);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_batch(data, size);
  check_ack(data, size);
  if (size == 0 || (data[0] & 1u) == 0) return 0;

  /* Structured mode: data[1..] is the body, followed by its correct MAC. */
  static uint8_t signed_data[FUZZ_SIGNED_SIZE_MAX];
  size_t body_size = size - 1;
  if (body_size > FUZZ_SIGNED_SIZE_MAX - TALLY_MAC_SIZE) {
    body_size = FUZZ_SIGNED_SIZE_MAX - TALLY_MAC_SIZE;
  }
  memcpy(signed_data, data + 1, body_size);
  /* Each kind signs with its own personalisation (tally/mac.h). */
  tally_mac_compute(TALLY_MAC_BATCH, signed_data, body_size, fuzz_key, signed_data + body_size);
  check_batch(signed_data, body_size + TALLY_MAC_SIZE);
  tally_mac_compute(TALLY_MAC_ACK, signed_data, body_size, fuzz_key, signed_data + body_size);
  check_ack(signed_data, body_size + TALLY_MAC_SIZE);
  return 0;
}
