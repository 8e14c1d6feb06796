/*
 * heartbeat_wire.c — the authenticated heartbeat datagram of the control
 * plane (control/cluster/proto/heartbeat_wire.h, docs/failure-detection.md).
 *
 * Owns the 48-byte layout: encoding with the BLAKE2b keyed MAC of the cluster
 * key, and decoding that checks the envelope (size, magic, type, version),
 * then the MAC in constant time, and only then the fields behind it. Pure
 * functions over byte buffers: no allocation, no syscalls, no state. Fields
 * are read and written byte by byte (little-endian, any alignment). Like
 * dataplane/wire/batch_wire.c, it relies on crypto_generichash needing no
 * sodium_init(); tallyd initializes libsodium once at start-up anyway.
 */
#include "heartbeat_wire.h"

#include "tally/mac.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

enum {
  HEARTBEAT_OFFSET_MAGIC_0 = 0,
  HEARTBEAT_OFFSET_MAGIC_1 = 1,
  HEARTBEAT_OFFSET_VERSION = 2,
  HEARTBEAT_OFFSET_TYPE = 3,
  HEARTBEAT_OFFSET_NODE_ID = 4,
  HEARTBEAT_OFFSET_FLAGS = 6,
  HEARTBEAT_OFFSET_GENERATION = 8,
  HEARTBEAT_OFFSET_RESERVED = 12,
  HEARTBEAT_OFFSET_SEND_TIME = 16,
  HEARTBEAT_OFFSET_LSN = 24,
  HEARTBEAT_OFFSET_MAC = 32,
};

static_assert(HEARTBEAT_OFFSET_MAC == TALLY_HEARTBEAT_BODY_SIZE, "layout");
static_assert(HEARTBEAT_OFFSET_MAC + TALLY_MAC_SIZE == TALLY_HEARTBEAT_SIZE, "layout");
static_assert(TALLY_MAC_SIZE >= crypto_generichash_BYTES_MIN, "MAC size allowed by BLAKE2b");
static_assert(TALLY_MAC_SIZE <= crypto_generichash_BYTES_MAX, "MAC size allowed by BLAKE2b");
static_assert(TALLY_KEY_SIZE >= crypto_generichash_KEYBYTES_MIN, "key size allowed by BLAKE2b");
static_assert(TALLY_KEY_SIZE <= crypto_generichash_KEYBYTES_MAX, "key size allowed by BLAKE2b");
static_assert(TALLY_HEARTBEAT_FLAGS_KNOWN <= UINT16_MAX, "flags fit their u16 field");

/* ---- Little-endian fields ------------------------------------------------ */

static uint64_t heartbeat_load(const uint8_t *bytes, uint32_t size)
{
  assert(size == 2u || size == 4u || size == 8u);
  assert(bytes != NULL);
  uint64_t value = 0;
  for (uint32_t i = 0; i < size; i++) value |= (uint64_t)bytes[i] << (8u * i);
  return value;
}

static void heartbeat_store(uint8_t *bytes, uint32_t size, uint64_t value)
{
  assert(size == 2u || size == 4u || size == 8u);
  assert(size == 8u || value >> (8u * size) == 0);
  for (uint32_t i = 0; i < size; i++) bytes[i] = (uint8_t)((value >> (8u * i)) & 0xffu);
}

/* ---- MAC ----------------------------------------------------------------- */

static void heartbeat_mac(const uint8_t body[TALLY_HEARTBEAT_BODY_SIZE],
  const uint8_t key[TALLY_KEY_SIZE], uint8_t mac[TALLY_MAC_SIZE])
{
  assert(body != NULL);
  assert(key != NULL);
  /* Kind HEARTBEAT (tally/mac.h): never a replication message's MAC (issue 14, M2). */
  tally_mac_compute(TALLY_MAC_HEARTBEAT, body, TALLY_HEARTBEAT_BODY_SIZE, key, mac);
}

/* ---- Encode / decode ----------------------------------------------------- */

void tally_heartbeat_encode(const struct tally_heartbeat *heartbeat,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t out[TALLY_HEARTBEAT_SIZE])
{
  assert(heartbeat != NULL);
  assert((heartbeat->flags & ~TALLY_HEARTBEAT_FLAGS_KNOWN) == 0);
  assert(out != NULL);
  out[HEARTBEAT_OFFSET_MAGIC_0] = TALLY_HEARTBEAT_MAGIC_0;
  out[HEARTBEAT_OFFSET_MAGIC_1] = TALLY_HEARTBEAT_MAGIC_1;
  out[HEARTBEAT_OFFSET_VERSION] = TALLY_HEARTBEAT_VERSION;
  out[HEARTBEAT_OFFSET_TYPE] = TALLY_HEARTBEAT_TYPE;
  heartbeat_store(out + HEARTBEAT_OFFSET_NODE_ID, 2u, heartbeat->node_id);
  heartbeat_store(out + HEARTBEAT_OFFSET_FLAGS, 2u, heartbeat->flags);
  heartbeat_store(out + HEARTBEAT_OFFSET_GENERATION, 4u, heartbeat->generation);
  heartbeat_store(out + HEARTBEAT_OFFSET_RESERVED, 4u, 0);
  heartbeat_store(out + HEARTBEAT_OFFSET_SEND_TIME, 8u, heartbeat->send_time_ns);
  heartbeat_store(out + HEARTBEAT_OFFSET_LSN, 8u, heartbeat->lsn);
  heartbeat_mac(out, key, out + HEARTBEAT_OFFSET_MAC);
}

/* Everything checked before a byte of the body is trusted. */
static enum tally_heartbeat_reason heartbeat_check_envelope(const uint8_t *data, size_t size,
  const uint8_t *key)
{
  assert(key != NULL);
  if (size < TALLY_HEARTBEAT_SIZE) return TALLY_HEARTBEAT_TRUNCATED;
  if (size > TALLY_HEARTBEAT_SIZE) return TALLY_HEARTBEAT_MALFORMED;
  assert(data != NULL);
  if (data[HEARTBEAT_OFFSET_MAGIC_0] != TALLY_HEARTBEAT_MAGIC_0) return TALLY_HEARTBEAT_BAD_MAGIC;
  if (data[HEARTBEAT_OFFSET_MAGIC_1] != TALLY_HEARTBEAT_MAGIC_1) return TALLY_HEARTBEAT_BAD_MAGIC;
  if (data[HEARTBEAT_OFFSET_VERSION] != TALLY_HEARTBEAT_VERSION) {
    return TALLY_HEARTBEAT_BAD_VERSION;
  }
  /* Checked after the version: another version may number its types differently. */
  if (data[HEARTBEAT_OFFSET_TYPE] != TALLY_HEARTBEAT_TYPE) return TALLY_HEARTBEAT_BAD_MAGIC;
  uint8_t mac[TALLY_MAC_SIZE];
  heartbeat_mac(data, key, mac);
  if (sodium_memcmp(mac, data + HEARTBEAT_OFFSET_MAC, TALLY_MAC_SIZE) != 0) {
    return TALLY_HEARTBEAT_BAD_MAC;
  }
  return TALLY_HEARTBEAT_OK;
}

enum tally_heartbeat_reason tally_heartbeat_decode(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_heartbeat *heartbeat)
{
  assert(heartbeat != NULL);
  assert(key != NULL);
  memset(heartbeat, 0, sizeof(*heartbeat));
  enum tally_heartbeat_reason reason = heartbeat_check_envelope(data, size, key);
  if (reason != TALLY_HEARTBEAT_OK) return reason;
  assert(size == TALLY_HEARTBEAT_SIZE);
  uint64_t flags = heartbeat_load(data + HEARTBEAT_OFFSET_FLAGS, 2u);
  if ((flags & ~(uint64_t)TALLY_HEARTBEAT_FLAGS_KNOWN) != 0) return TALLY_HEARTBEAT_MALFORMED;
  if (heartbeat_load(data + HEARTBEAT_OFFSET_RESERVED, 4u) != 0) return TALLY_HEARTBEAT_MALFORMED;
  heartbeat->node_id = (uint16_t)heartbeat_load(data + HEARTBEAT_OFFSET_NODE_ID, 2u);
  heartbeat->flags = (uint16_t)flags;
  heartbeat->generation = (uint32_t)heartbeat_load(data + HEARTBEAT_OFFSET_GENERATION, 4u);
  heartbeat->send_time_ns = heartbeat_load(data + HEARTBEAT_OFFSET_SEND_TIME, 8u);
  heartbeat->lsn = heartbeat_load(data + HEARTBEAT_OFFSET_LSN, 8u);
  return TALLY_HEARTBEAT_OK;
}

const char *tally_heartbeat_reason_name(enum tally_heartbeat_reason reason)
{
  static const char *const names[TALLY_HEARTBEAT_REASON_COUNT] = {
#define TALLY_HEARTBEAT_REASON_LABEL(name, label) [TALLY_HEARTBEAT_##name] = label,
    TALLY_HEARTBEAT_FOREACH_REASON(TALLY_HEARTBEAT_REASON_LABEL)
#undef TALLY_HEARTBEAT_REASON_LABEL
  };
  if ((uint32_t)reason >= TALLY_HEARTBEAT_REASON_COUNT) return "invalid";
  assert(names[reason] != NULL);
  return names[reason];
}
