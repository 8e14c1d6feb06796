/*
 * mac.h — every MAC Tally puts on the wire, one personalisation per kind of
 * message (issue 14, M2), so that a MAC of one kind never verifies as
 * another: a batch's MAC is not an ack's, a replication message's is not a
 * heartbeat's, even under the same key and over the same bytes.
 *
 * The MAC is BLAKE2b-128 keyed with a 32-byte key (libsodium
 * crypto_generichash_blake2b_salt_personal, no salt), its 16-byte
 * personalisation naming the kind. Producer key derivation has a
 * personalisation of its own (TALLY_PRODUCER_KEY_PERSONAL, batch_wire.h),
 * distinct from all of these. docs/protocol.md lists the strings; the
 * Python codecs in tests/tools repeat them.
 *
 * Not installed: the wire codec (dataplane/wire) and the cluster's codecs
 * (control/cluster/proto) include it; libtally reaches it only through
 * batch_wire.c. Pure; crypto_generichash needs no sodium_init().
 *
 * Thread: any.
 */
#ifndef TALLY_MAC_H
#define TALLY_MAC_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "tally/limits.h"

enum tally_mac_kind {
  TALLY_MAC_BATCH = 0,   /* a reliable batch (dataplane/wire/batch_wire.c) */
  TALLY_MAC_ACK,         /* an ack of a batch */
  TALLY_MAC_REPLICATION, /* a replication message (control/cluster/proto/replication_wire.c) */
  TALLY_MAC_HEARTBEAT,   /* a heartbeat (control/cluster/proto/heartbeat_wire.c) */
  TALLY_MAC_KIND_COUNT
};

/* Each kind's personalisation: exactly 16 bytes (BLAKE2b's personal field), padding included. */
#define TALLY_MAC_PERSONAL_SIZE 16u
static_assert(TALLY_MAC_PERSONAL_SIZE == crypto_generichash_blake2b_PERSONALBYTES,
  "personalisation fills BLAKE2b's personal field");
static_assert(TALLY_MAC_SIZE >= crypto_generichash_blake2b_BYTES_MIN, "MAC size allowed");
static_assert(TALLY_MAC_SIZE <= crypto_generichash_blake2b_BYTES_MAX, "MAC size allowed");
static_assert(TALLY_KEY_SIZE >= crypto_generichash_blake2b_KEYBYTES_MIN, "key size allowed");
static_assert(TALLY_KEY_SIZE <= crypto_generichash_blake2b_KEYBYTES_MAX, "key size allowed");

static inline const unsigned char *tally_mac_personal(enum tally_mac_kind kind)
{
  static const char personal[TALLY_MAC_KIND_COUNT][TALLY_MAC_PERSONAL_SIZE + 1u] = {
    [TALLY_MAC_BATCH] = "tally-mac-batch\0",
    [TALLY_MAC_ACK] = "tally-mac-ack\0\0\0",
    [TALLY_MAC_REPLICATION] = "tally-mac-repl\0\0",
    [TALLY_MAC_HEARTBEAT] = "tally-mac-hbeat\0",
  };
  assert((uint32_t)kind < TALLY_MAC_KIND_COUNT);
  return (const unsigned char *)personal[kind];
}

/* Writes the MAC of kind over data[0..size) under key to mac (TALLY_MAC_SIZE bytes). */
static inline void tally_mac_compute(enum tally_mac_kind kind, const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t mac[TALLY_MAC_SIZE])
{
  assert(key != NULL && mac != NULL);
  assert(data != NULL || size == 0);
  int rc = crypto_generichash_blake2b_salt_personal(mac, TALLY_MAC_SIZE, data, size, key,
    TALLY_KEY_SIZE, NULL, tally_mac_personal(kind));
  assert(rc == 0); /* fails only on sizes out of range: the static_asserts exclude them */
  (void)rc;
}

/* True if mac is the MAC of kind over data[0..size) under key (constant-time compare). */
static inline bool tally_mac_verify(enum tally_mac_kind kind, const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], const uint8_t mac[TALLY_MAC_SIZE])
{
  uint8_t expected[TALLY_MAC_SIZE];
  tally_mac_compute(kind, data, size, key, expected);
  return sodium_memcmp(expected, mac, TALLY_MAC_SIZE) == 0;
}

#endif
