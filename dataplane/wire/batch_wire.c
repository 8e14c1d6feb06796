/*
 * batch_wire.c — the binary batched protocol of reliable producers.
 *
 * Owns the byte layout of batches and acks (include/tally/batch_wire.h,
 * docs/protocol.md): decoding with the MAC checked before a single
 * pair is parsed, encoding for producers and tests, and ack encode/decode.
 * Pure functions over byte buffers: no allocation, no syscalls, no state, so
 * the dataplane can call them per packet. Fields are little-endian and read
 * byte by byte, which is safe at any alignment and on any host endianness.
 *
 * The MAC is BLAKE2b keyed with the producer's key (derived from the ingest
 * key, tally_wire_producer_key; or, with ingest.producer_keys = shared, the
 * ingest key itself), personalised per kind (tally/mac.h: a batch's MAC
 * never verifies as an ack's), 16 bytes long, over every byte before it; it
 * is compared in constant time. It covers the destination node (version 2,
 * issue 14 H3). crypto_generichash needs no sodium_init(), so the caller
 * initializes libsodium once at start-up and never per packet.
 *
 * Thread: any — the lcores (decode batches, encode acks, per packet), the
 * producers' threads in libtally and tally-produce (encode, decode acks).
 */
#include "tally/batch_wire.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "tally/key.h"
#include "tally/mac.h"
#include "tally/name.h"

/* Header field offsets (see the layout in batch_wire.h). */
enum {
  WIRE_OFFSET_MAGIC_0 = 0,
  WIRE_OFFSET_MAGIC_1 = 1,
  WIRE_OFFSET_VERSION = 2,
  WIRE_OFFSET_TYPE = 3,
  WIRE_OFFSET_COUNT = 4,
  WIRE_OFFSET_STATUS = 6,
  WIRE_OFFSET_PRODUCER = 8,
  WIRE_OFFSET_SEQ = 16,
  WIRE_OFFSET_NODE_IPV4 = 24, /* network order, as in the IP header */
  WIRE_OFFSET_NODE_PORT = 28, /* network order, as in the UDP header */
  WIRE_OFFSET_RESERVED = 30,  /* 0 */
  WIRE_OFFSET_HEADER_END = 32,
};
/* Pair field offsets, relative to the pair. */
enum {
  WIRE_PAIR_OFFSET_DELTA = 0,
  WIRE_PAIR_OFFSET_NAME_LEN = 8,
  WIRE_PAIR_OFFSET_NAME = 9,
};

static_assert(WIRE_OFFSET_HEADER_END == TALLY_WIRE_HEADER_SIZE, "header layout");
static_assert(WIRE_PAIR_OFFSET_NAME == TALLY_WIRE_PAIR_FIXED_SIZE, "pair layout");
static_assert(TALLY_BATCH_PAIRS_MAX <= UINT16_MAX, "count fits its u16 field");
static_assert(TALLY_NAME_LEN_MAX <= UINT8_MAX, "name length fits its u8 field");
static_assert(TALLY_ACK_STATUS_COUNT <= UINT16_MAX, "ack status fits its u16 field");
static_assert(TALLY_MAC_SIZE >= crypto_generichash_BYTES_MIN, "MAC size allowed by BLAKE2b");
static_assert(TALLY_MAC_SIZE <= crypto_generichash_BYTES_MAX, "MAC size allowed by BLAKE2b");
static_assert(TALLY_KEY_SIZE >= crypto_generichash_KEYBYTES_MIN, "key size allowed by BLAKE2b");
static_assert(TALLY_KEY_SIZE <= crypto_generichash_KEYBYTES_MAX, "key size allowed by BLAKE2b");
static_assert(TALLY_WIRE_BATCH_SIZE_MIN == 58u, "smallest batch: one pair, 1-byte name");
static_assert(TALLY_WIRE_ACK_SIZE == 48u, "documented ack size");

/* ---- Little-endian fields ------------------------------------------------ */

static uint16_t wire_load_u16(const uint8_t *bytes)
{
  return (uint16_t)((uint16_t)bytes[0] | (uint16_t)((uint16_t)bytes[1] << 8));
}

static uint64_t wire_load_u64(const uint8_t *bytes)
{
  uint64_t value = 0;
  for (uint32_t i = 0; i < 8u; i++) value |= (uint64_t)bytes[i] << (8u * i);
  return value;
}

static void wire_store_u16(uint8_t *bytes, uint16_t value)
{
  bytes[0] = (uint8_t)(value & 0xffu);
  bytes[1] = (uint8_t)(value >> 8);
}

static void wire_store_u64(uint8_t *bytes, uint64_t value)
{
  for (uint32_t i = 0; i < 8u; i++) bytes[i] = (uint8_t)((value >> (8u * i)) & 0xffu);
}

/* Two's complement both ways without implementation-defined conversions. */
static int64_t wire_int64_from_bits(uint64_t bits)
{
  int64_t value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

static uint64_t wire_bits_from_int64(int64_t value)
{
  uint64_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

/* ---- MAC ----------------------------------------------------------------- */

/* The MAC kind of a datagram of this type. */
static enum tally_mac_kind wire_mac_kind(uint8_t type)
{
  assert(type == TALLY_WIRE_TYPE_BATCH || type == TALLY_WIRE_TYPE_ACK);
  return type == TALLY_WIRE_TYPE_BATCH ? TALLY_MAC_BATCH : TALLY_MAC_ACK;
}

/* True if the last TALLY_MAC_SIZE bytes are the MAC (of the type's kind) of the bytes before them. */
static bool wire_mac_verify(const uint8_t *data, size_t size, uint8_t type, const uint8_t *key)
{
  assert(size >= TALLY_MAC_SIZE);
  assert(key != NULL);
  size_t body_size = size - TALLY_MAC_SIZE;
  return tally_mac_verify(wire_mac_kind(type), data, body_size, key, data + body_size);
}

void tally_wire_producer_key(const uint8_t ingest_key[TALLY_KEY_SIZE], uint64_t producer,
  uint8_t out[TALLY_KEY_SIZE])
{
  assert(ingest_key != NULL);
  assert(out != NULL);
  static_assert(sizeof(TALLY_PRODUCER_KEY_PERSONAL) - 1 == crypto_generichash_blake2b_PERSONALBYTES,
    "personal string fills BLAKE2b's personal field");
  uint8_t input[8];
  wire_store_u64(input, producer);
  int rc = crypto_generichash_blake2b_salt_personal(out, TALLY_KEY_SIZE, input, sizeof(input),
    ingest_key, TALLY_KEY_SIZE, NULL, (const unsigned char *)TALLY_PRODUCER_KEY_PERSONAL);
  assert(rc == 0); /* sizes are in range (static_asserts above) */
  (void)rc;
}

/*
 * The checks every datagram gets before anything in it is trusted: size,
 * magic and type, version, MAC. A datagram failing these gets no answer.
 */
static enum tally_reason wire_check_envelope(const uint8_t *data, size_t size, uint8_t type,
  const uint8_t *key)
{
  assert(type == TALLY_WIRE_TYPE_BATCH || type == TALLY_WIRE_TYPE_ACK);
  assert(key != NULL);
  if (size < TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE) return TALLY_REASON_BATCH_TRUNCATED;
  assert(data != NULL);
  if (data[WIRE_OFFSET_MAGIC_0] != TALLY_WIRE_MAGIC_0) return TALLY_REASON_BATCH_BAD_MAGIC;
  if (data[WIRE_OFFSET_MAGIC_1] != TALLY_WIRE_MAGIC_1) return TALLY_REASON_BATCH_BAD_MAGIC;
  if (data[WIRE_OFFSET_TYPE] != type) return TALLY_REASON_BATCH_BAD_MAGIC;
  if (data[WIRE_OFFSET_VERSION] != TALLY_WIRE_VERSION) return TALLY_REASON_BATCH_BAD_VERSION;
  if (!wire_mac_verify(data, size, type, key)) return TALLY_REASON_BATCH_BAD_MAC;
  return TALLY_OK;
}

static struct tally_wire_node wire_load_node(const uint8_t *header)
{
  struct tally_wire_node node;
  memcpy(&node.ipv4_be, header + WIRE_OFFSET_NODE_IPV4, sizeof node.ipv4_be);
  memcpy(&node.port_be, header + WIRE_OFFSET_NODE_PORT, sizeof node.port_be);
  return node;
}

static void wire_store_node(uint8_t *header, struct tally_wire_node node)
{
  memcpy(header + WIRE_OFFSET_NODE_IPV4, &node.ipv4_be, sizeof node.ipv4_be);
  memcpy(header + WIRE_OFFSET_NODE_PORT, &node.port_be, sizeof node.port_be);
  header[WIRE_OFFSET_RESERVED] = 0;
  header[WIRE_OFFSET_RESERVED + 1] = 0;
}

/* status is the ack status in an ack and the attempt in a batch. */
static void wire_store_header(uint8_t *out, uint8_t type, uint16_t count, uint16_t status,
  uint64_t producer, uint64_t seq, struct tally_wire_node node)
{
  assert(type == TALLY_WIRE_TYPE_BATCH || type == TALLY_WIRE_TYPE_ACK);
  assert(out != NULL);
  out[WIRE_OFFSET_MAGIC_0] = TALLY_WIRE_MAGIC_0;
  out[WIRE_OFFSET_MAGIC_1] = TALLY_WIRE_MAGIC_1;
  out[WIRE_OFFSET_VERSION] = TALLY_WIRE_VERSION;
  out[WIRE_OFFSET_TYPE] = type;
  wire_store_u16(out + WIRE_OFFSET_COUNT, count);
  wire_store_u16(out + WIRE_OFFSET_STATUS, status);
  wire_store_u64(out + WIRE_OFFSET_PRODUCER, producer);
  wire_store_u64(out + WIRE_OFFSET_SEQ, seq);
  wire_store_node(out, node);
}

/* ---- Batches ------------------------------------------------------------- */

/*
 * Parses count pairs that must fill body[0..body_size) exactly. Names point
 * into body. Called only once the MAC verified.
 */
static enum tally_reason wire_decode_pairs(const uint8_t *body, size_t body_size,
  uint32_t count, struct tally_wire_pair *pairs)
{
  assert(count >= 1);
  assert(count <= TALLY_BATCH_PAIRS_MAX);
  size_t offset = 0;
  for (uint32_t i = 0; i < count; i++) {
    assert(offset <= body_size);
    if (body_size - offset < TALLY_WIRE_PAIR_FIXED_SIZE) return TALLY_REASON_BATCH_MALFORMED;
    const uint8_t *pair = body + offset;
    uint32_t name_len = pair[WIRE_PAIR_OFFSET_NAME_LEN];
    offset += TALLY_WIRE_PAIR_FIXED_SIZE;
    if (body_size - offset < name_len) return TALLY_REASON_BATCH_MALFORMED;
    const char *name = (const char *)(pair + WIRE_PAIR_OFFSET_NAME);
    if (!tally_name_valid(name, name_len)) return TALLY_REASON_BATCH_BAD_NAME;
    pairs[i].name = name;
    pairs[i].name_len = name_len;
    pairs[i].delta = wire_int64_from_bits(wire_load_u64(pair + WIRE_PAIR_OFFSET_DELTA));
    offset += name_len;
  }
  if (offset != body_size) return TALLY_REASON_BATCH_MALFORMED;
  return TALLY_OK;
}

enum tally_reason tally_wire_check_batch(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_wire_node node)
{
  assert(key != NULL);
  enum tally_reason reason = wire_check_envelope(data, size, TALLY_WIRE_TYPE_BATCH, key);
  if (reason != TALLY_OK) return reason;
  /* Checked after the MAC: a forgery is bad_mac, a real batch for another node wrong_node. */
  struct tally_wire_node to = wire_load_node(data);
  if (to.ipv4_be != node.ipv4_be || to.port_be != node.port_be) {
    return TALLY_REASON_BATCH_WRONG_NODE;
  }
  return TALLY_OK;
}

static void wire_batch_clear(struct tally_wire_batch *batch)
{
  assert(batch != NULL);
  batch->producer = 0;
  batch->seq = 0;
  batch->attempt = 0;
  batch->node = (struct tally_wire_node){ 0, 0 };
  batch->count = 0;
}

enum tally_reason tally_wire_decode_batch(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_wire_batch *batch)
{
  assert(key != NULL);
  wire_batch_clear(batch);
  enum tally_reason reason = wire_check_envelope(data, size, TALLY_WIRE_TYPE_BATCH, key);
  if (reason != TALLY_OK) return reason;
  return tally_wire_decode_checked_batch(data, size, batch);
}

enum tally_reason tally_wire_decode_checked_batch(const uint8_t *data, size_t size,
  struct tally_wire_batch *batch)
{
  wire_batch_clear(batch);
  assert(size >= TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE);
  assert(data[WIRE_OFFSET_VERSION] == TALLY_WIRE_VERSION);
  /* The MAC verified: from here on the sender is known and may be answered. */
  batch->node = wire_load_node(data);
  batch->producer = wire_load_u64(data + WIRE_OFFSET_PRODUCER);
  batch->seq = wire_load_u64(data + WIRE_OFFSET_SEQ);
  /* In a batch the status field is the attempt; every value is valid, and
   * one above TALLY_ATTEMPT_MAX counts as it (TALLY_CLAIM_KEEPER is taken). */
  batch->attempt = wire_load_u16(data + WIRE_OFFSET_STATUS);
  if (batch->attempt > TALLY_ATTEMPT_MAX) batch->attempt = TALLY_ATTEMPT_MAX;
  uint32_t count = wire_load_u16(data + WIRE_OFFSET_COUNT);
  if (wire_load_u16(data + WIRE_OFFSET_RESERVED) != 0) return TALLY_REASON_BATCH_MALFORMED;
  if (count == 0) return TALLY_REASON_BATCH_MALFORMED;
  if (count > TALLY_BATCH_PAIRS_MAX) return TALLY_REASON_BATCH_TOO_MANY_PAIRS;
  if (batch->producer == 0) return TALLY_REASON_BATCH_BAD_PRODUCER;

  assert(size >= TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE);
  size_t body_size = size - TALLY_WIRE_HEADER_SIZE - TALLY_MAC_SIZE;
  enum tally_reason reason = wire_decode_pairs(data + TALLY_WIRE_HEADER_SIZE, body_size, count, batch->pairs);
  if (reason != TALLY_OK) return reason;
  batch->count = count;
  assert(size >= TALLY_WIRE_BATCH_SIZE_MIN);
  return TALLY_OK;
}

enum tally_reason tally_wire_batch_canonicalize(struct tally_wire_batch *batch,
  char keys[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX])
{
  assert(batch != NULL && keys != NULL);
  assert(batch->count <= TALLY_BATCH_PAIRS_MAX);
  for (uint32_t i = 0; i < batch->count; i++) {
    struct tally_wire_pair *pair = &batch->pairs[i];
    assert(tally_name_valid(pair->name, pair->name_len));
    if (memchr(pair->name, '{', pair->name_len) == NULL &&
      memchr(pair->name, '}', pair->name_len) == NULL) {
      continue; /* a bare name: its own key */
    }
    uint32_t key_len = 0;
    if (tally_key_canonicalize(pair->name, pair->name_len, keys[i], &key_len) != TALLY_KEY_OK) {
      return TALLY_REASON_BATCH_BAD_KEY;
    }
    assert(key_len >= 1 && key_len <= pair->name_len);
    pair->name = keys[i];
    pair->name_len = key_len;
  }
  return TALLY_OK;
}

/* Encoded size of a batch, or 0 if the batch is not one the decoder accepts. */
static size_t wire_batch_size(const struct tally_wire_batch *batch)
{
  assert(batch != NULL);
  if (batch->count == 0 || batch->count > TALLY_BATCH_PAIRS_MAX) return 0;
  if (batch->producer == 0) return 0;
  size_t size = TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wire_pair *pair = &batch->pairs[i];
    if (pair->name == NULL) return 0;
    if (!tally_name_valid(pair->name, pair->name_len)) return 0;
    size += TALLY_WIRE_PAIR_FIXED_SIZE + pair->name_len;
  }
  assert(size >= TALLY_WIRE_BATCH_SIZE_MIN);
  assert(size <= TALLY_WIRE_BATCH_SIZE_MAX);
  return size;
}

size_t tally_wire_encode_batch(const struct tally_wire_batch *batch,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t *out, size_t out_size)
{
  assert(batch != NULL);
  assert(key != NULL);
  size_t size = wire_batch_size(batch);
  if (size == 0 || size > out_size) return 0;
  assert(out != NULL);

  wire_store_header(out, TALLY_WIRE_TYPE_BATCH, (uint16_t)batch->count, batch->attempt,
    batch->producer, batch->seq, batch->node);
  size_t offset = TALLY_WIRE_HEADER_SIZE;
  for (uint32_t i = 0; i < batch->count; i++) {
    const struct tally_wire_pair *pair = &batch->pairs[i];
    wire_store_u64(out + offset + WIRE_PAIR_OFFSET_DELTA, wire_bits_from_int64(pair->delta));
    out[offset + WIRE_PAIR_OFFSET_NAME_LEN] = (uint8_t)pair->name_len;
    memcpy(out + offset + WIRE_PAIR_OFFSET_NAME, pair->name, pair->name_len);
    offset += TALLY_WIRE_PAIR_FIXED_SIZE + pair->name_len;
  }
  assert(offset + TALLY_MAC_SIZE == size);
  tally_mac_compute(TALLY_MAC_BATCH, out, offset, key, out + offset);
  return size;
}

void tally_wire_set_send(uint8_t *datagram, size_t size, const uint8_t key[TALLY_KEY_SIZE],
  uint16_t attempt, struct tally_wire_node node)
{
  assert(datagram != NULL);
  assert(key != NULL);
  assert(size >= TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE);
  assert(datagram[WIRE_OFFSET_MAGIC_0] == TALLY_WIRE_MAGIC_0);
  assert(datagram[WIRE_OFFSET_MAGIC_1] == TALLY_WIRE_MAGIC_1);
  assert(datagram[WIRE_OFFSET_TYPE] == TALLY_WIRE_TYPE_BATCH);
  wire_store_u16(datagram + WIRE_OFFSET_STATUS, attempt);
  wire_store_node(datagram, node);
  size_t body_size = size - TALLY_MAC_SIZE;
  tally_mac_compute(TALLY_MAC_BATCH, datagram, body_size, key, datagram + body_size);
}

/* ---- Acks ---------------------------------------------------------------- */

void tally_wire_encode_ack(uint64_t producer, uint64_t seq, enum tally_ack_status status,
  struct tally_wire_node node, const uint8_t key[TALLY_KEY_SIZE],
  uint8_t out[TALLY_WIRE_ACK_SIZE])
{
  assert((uint32_t)status < TALLY_ACK_STATUS_COUNT);
  assert(key != NULL);
  assert(out != NULL);
  wire_store_header(out, TALLY_WIRE_TYPE_ACK, 0, (uint16_t)status, producer, seq, node);
  tally_mac_compute(TALLY_MAC_ACK, out, TALLY_WIRE_HEADER_SIZE, key, out + TALLY_WIRE_HEADER_SIZE);
}

enum tally_reason tally_wire_decode_ack(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], uint64_t *producer, uint64_t *seq,
  enum tally_ack_status *status)
{
  assert(key != NULL);
  assert(producer != NULL);
  assert(seq != NULL);
  assert(status != NULL);
  if (size < TALLY_WIRE_ACK_SIZE) return TALLY_REASON_BATCH_TRUNCATED;
  if (size > TALLY_WIRE_ACK_SIZE) return TALLY_REASON_BATCH_MALFORMED;
  enum tally_reason reason = wire_check_envelope(data, size, TALLY_WIRE_TYPE_ACK, key);
  if (reason != TALLY_OK) return reason;

  if (wire_load_u16(data + WIRE_OFFSET_COUNT) != 0) return TALLY_REASON_BATCH_MALFORMED;
  if (wire_load_u16(data + WIRE_OFFSET_RESERVED) != 0) return TALLY_REASON_BATCH_MALFORMED;
  uint16_t status_raw = wire_load_u16(data + WIRE_OFFSET_STATUS);
  if (status_raw >= TALLY_ACK_STATUS_COUNT) return TALLY_REASON_BATCH_MALFORMED;
  *producer = wire_load_u64(data + WIRE_OFFSET_PRODUCER);
  *seq = wire_load_u64(data + WIRE_OFFSET_SEQ);
  *status = (enum tally_ack_status)status_raw;
  return TALLY_OK;
}

const char *tally_ack_status_name(enum tally_ack_status status)
{
  static const char *const names[TALLY_ACK_STATUS_COUNT] = {
    [TALLY_ACK_APPLIED] = "applied",
    [TALLY_ACK_DUPLICATE] = "duplicate",
    [TALLY_ACK_STALE] = "stale",
    [TALLY_ACK_MALFORMED] = "malformed",
    [TALLY_ACK_COUNTERS_FULL] = "counters_full",
    [TALLY_ACK_OVERFLOW] = "overflow",
    [TALLY_ACK_PRODUCERS_FULL] = "producers_full",
    [TALLY_ACK_READ_ONLY] = "read_only",
  };
  static_assert(sizeof(names) / sizeof(names[0]) == TALLY_ACK_STATUS_COUNT, "one name each");
  if ((uint32_t)status >= TALLY_ACK_STATUS_COUNT) return "unknown";
  assert(names[status] != NULL);
  return names[status];
}
