/*
 * batch_wire.h — the binary batched protocol of reliable producers: decoding
 * and MAC verification of batches, encoding of batches (for producers and
 * tests) and of acks. Pure functions over byte buffers; little-endian on the
 * wire. See docs/protocol.md for the byte layout.
 *
 *   header (32 bytes): magic "TB" | version u8 (2) | type u8 | count u16 |
 *                      status u16 | producer u64 | seq u64 |
 *                      node address (4 bytes, network order) |
 *                      node port u16 (network order) | reserved u16 (0)
 *                      (in a batch, the status field is the attempt: how
 *                      many times the producer sent this batch before, to
 *                      any node; cross-node dedup keeps the apply of the
 *                      highest attempt, docs/cluster.md; the node is the
 *                      destination, node.ipv4 and ingest.binary_port of the
 *                      node the batch is sent to, issue 14 H3)
 *   pairs (count):     delta i64 | name_len u8 | name bytes
 *   mac (16 bytes):    BLAKE2b-128 keyed with the producer's key (its
 *                      derived key, or the ingest key in shared mode),
 *                      personalised per kind (tally/mac.h), over all bytes
 *                      before it
 *
 * An ack is a header with type ACK, count 0, the status, the batch's
 * producer, seq and node (the answering node), followed by its own MAC
 * (kind ACK): 48 bytes, always smaller than the smallest valid batch (58
 * bytes), so no reply amplifies.
 */
#ifndef TALLY_BATCH_WIRE_H
#define TALLY_BATCH_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"
#include "tally/reasons.h"

#define TALLY_WIRE_MAGIC_0 'T'
#define TALLY_WIRE_MAGIC_1 'B'
#define TALLY_WIRE_VERSION 2u /* 2: the destination node in the header, MACs per kind (issue 14, H3, M2) */
#define TALLY_WIRE_TYPE_BATCH 1u
#define TALLY_WIRE_TYPE_ACK 2u
#define TALLY_WIRE_HEADER_SIZE 32u
#define TALLY_WIRE_PAIR_FIXED_SIZE 9u /* delta + name_len */
#define TALLY_WIRE_ACK_SIZE (TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE)
#define TALLY_WIRE_BATCH_SIZE_MIN \
  (TALLY_WIRE_HEADER_SIZE + TALLY_WIRE_PAIR_FIXED_SIZE + 1u + TALLY_MAC_SIZE)
#define TALLY_WIRE_BATCH_SIZE_MAX                                                  \
  (TALLY_WIRE_HEADER_SIZE + TALLY_BATCH_PAIRS_MAX * (TALLY_WIRE_PAIR_FIXED_SIZE + \
  TALLY_NAME_LEN_MAX) + TALLY_MAC_SIZE)

static_assert(TALLY_WIRE_ACK_SIZE < TALLY_WIRE_BATCH_SIZE_MIN, "an ack never amplifies");

/* Status carried in an ack. Retryable statuses say "try again or elsewhere". */
enum tally_ack_status {
  TALLY_ACK_APPLIED = 0,     /* durable and counted now */
  TALLY_ACK_DUPLICATE = 1,   /* counted before; durable; not counted again */
  TALLY_ACK_STALE = 2,       /* older than the dedup window: not counted (final) */
  TALLY_ACK_MALFORMED = 3,   /* MAC fine, content invalid: not counted (final) */
  TALLY_ACK_COUNTERS_FULL = 4, /* a new name did not fit: nothing counted (final) */
  TALLY_ACK_OVERFLOW = 5,    /* a delta would overflow int64: nothing counted (final) */
  TALLY_ACK_PRODUCERS_FULL = 6, /* producer table full: nothing counted (retryable) */
  TALLY_ACK_READ_ONLY = 7,   /* node refuses reliable writes now (retryable elsewhere) */
  TALLY_ACK_STATUS_COUNT
};

struct tally_wire_pair {
  const char *name; /* points into the datagram, not NUL-terminated */
  uint32_t name_len;
  int64_t delta;
};

/*
 * The node a batch is for (its MAC covers it): the node's ingest address,
 * node.ipv4 and ingest.binary_port, both in network byte order as in a
 * struct sockaddr_in. A node refuses a batch for another node
 * (TALLY_REASON_BATCH_WRONG_NODE): a batch captured on the wire cannot be
 * replayed to another node.
 */
struct tally_wire_node {
  uint32_t ipv4_be;
  uint16_t port_be;
};

struct tally_wire_batch {
  uint64_t producer;
  uint64_t seq;
  uint16_t attempt; /* earlier sends of this batch, to any node; 0 the first */
  struct tally_wire_node node; /* the destination */
  uint32_t count;
  struct tally_wire_pair pairs[TALLY_BATCH_PAIRS_MAX];
};

/*
 * ingest.producer_keys = derived (issue 14, M2): producer P's batches and
 * acks are MAC'd with BLAKE2b-256 keyed with the ingest key, personalised
 * with TALLY_PRODUCER_KEY_PERSONAL, over P as 8 bytes little-endian. A
 * producer holding only that key can speak only as itself.
 */
#define TALLY_PRODUCER_KEY_PERSONAL "tally-producer\0\0" /* 16 bytes with its padding */

/* Writes producer's derived key into out. */
void tally_wire_producer_key(const uint8_t ingest_key[TALLY_KEY_SIZE], uint64_t producer,
  uint8_t out[TALLY_KEY_SIZE]);

/*
 * The checks a node makes before it hands a batch datagram to the lcore
 * that owns its producer (issue 14, M1): size, magic and type, version, MAC
 * (with key), then that the batch is for this node (node). Returns TALLY_OK
 * or the reason (TRUNCATED, BAD_MAGIC, BAD_VERSION, BAD_MAC, WRONG_NODE);
 * none of them is answered.
 */
enum tally_reason tally_wire_check_batch(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_wire_node node);

/*
 * Decodes a datagram tally_wire_check_batch passed (the MAC is not checked
 * again). Returns TALLY_OK or the reason, as tally_wire_decode_batch does
 * after its MAC check.
 */
enum tally_reason tally_wire_decode_checked_batch(const uint8_t *data, size_t size,
  struct tally_wire_batch *batch);

/*
 * Verifies and decodes a datagram. The MAC is checked before any pair is
 * parsed; the destination is decoded, not checked. Returns TALLY_OK or the reason (TALLY_REASON_BATCH_*). On
 * TALLY_REASON_BATCH_MALFORMED / _TOO_MANY_PAIRS / _BAD_NAME / _BAD_PRODUCER
 * the MAC verified, so *batch->producer and ->seq are set and an ack with
 * TALLY_ACK_MALFORMED may be sent; on every other error nothing is answered.
 */
enum tally_reason tally_wire_decode_batch(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_wire_batch *batch);

/*
 * A pair's name is a counter key (include/tally/key.h): a name, or
 * name{k=v,...} with the tags in any order. Rewrites every tagged pair of a
 * decoded batch to its canonical key, written into keys[i] (pairs without
 * '{' or '}' are left pointing into the datagram). Returns TALLY_OK, or
 * TALLY_REASON_BATCH_BAD_KEY (answered TALLY_ACK_MALFORMED) for a key that
 * is not of that form or breaks a tag limit.
 */
enum tally_reason tally_wire_batch_canonicalize(struct tally_wire_batch *batch,
  char keys[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX]);

/*
 * Encodes a batch into out (capacity out_size). Returns the bytes written, or
 * 0 if it does not fit or a pair is invalid (empty/too long name, count over
 * the limit).
 */
size_t tally_wire_encode_batch(const struct tally_wire_batch *batch,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t *out, size_t out_size);

/* Writes a TALLY_WIRE_ACK_SIZE-byte ack into out; node is the answering node. */
void tally_wire_encode_ack(uint64_t producer, uint64_t seq, enum tally_ack_status status,
  struct tally_wire_node node, const uint8_t key[TALLY_KEY_SIZE],
  uint8_t out[TALLY_WIRE_ACK_SIZE]);

/*
 * Verifies and decodes an ack (for producers). Returns TALLY_OK and fills the
 * out-parameters, or a TALLY_REASON_BATCH_* reason.
 */
enum tally_reason tally_wire_decode_ack(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], uint64_t *producer, uint64_t *seq,
  enum tally_ack_status *status);

/* Name of an ack status ("applied", "duplicate", ...). */
const char *tally_ack_status_name(enum tally_ack_status status);

/*
 * Rewrites the attempt and the destination node of an encoded batch (a
 * producer's resend, to the same node or, failing over, to another) and its
 * MAC. The datagram must be one tally_wire_encode_batch produced with this key.
 */
void tally_wire_set_send(uint8_t *datagram, size_t size, const uint8_t key[TALLY_KEY_SIZE],
  uint16_t attempt, struct tally_wire_node node);

#endif
