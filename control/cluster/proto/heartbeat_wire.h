/*
 * heartbeat_wire.h — the authenticated heartbeat of the control plane: one
 * fixed-size datagram a node sends to each peer every heartbeat interval.
 * Pure encode/decode over byte buffers; little-endian on the wire.
 *
 *   offset size field
 *        0    2 magic "TH"
 *        2    1 version (2)
 *        3    1 type (1 = HEARTBEAT)
 *        4    2 sender node id
 *        6    2 sender state flags (TALLY_HEARTBEAT_FLAG_*)
 *        8    4 sender incarnation (start time, unix s)
 *       12    4 reserved, zero
 *       16    8 sender's send time, ns of its monotonic clock (orders
 *               heartbeats within one incarnation: the receiver's replay check)
 *       24    8 sender's own replication LSN
 *       32   16 MAC: BLAKE2b-128 keyed with the 32-byte cluster key over
 *               bytes 0..31, personalised "tally-mac-hbeat" (tally/mac.h)
 *   48 bytes in all.
 *
 * The MAC authenticates; it does not make a heartbeat fresh. A recorded
 * heartbeat replayed later verifies again, so the receiver must also check
 * freshness (docs/failure-detection.md, "Replay").
 */
#ifndef TALLY_HEARTBEAT_WIRE_H
#define TALLY_HEARTBEAT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_HEARTBEAT_MAGIC_0 'T'
#define TALLY_HEARTBEAT_MAGIC_1 'H'
#define TALLY_HEARTBEAT_VERSION 2u /* 2: MAC personalised per kind (issue 14, M2) */
#define TALLY_HEARTBEAT_TYPE 1u
#define TALLY_HEARTBEAT_BODY_SIZE 32u
#define TALLY_HEARTBEAT_SIZE (TALLY_HEARTBEAT_BODY_SIZE + TALLY_MAC_SIZE)

static_assert(TALLY_HEARTBEAT_SIZE == 48u, "documented heartbeat size");

/* Sender state flags. Any other bit set is MALFORMED. */
#define TALLY_HEARTBEAT_FLAG_READY 0x0001u     /* /health/ready is true */
#define TALLY_HEARTBEAT_FLAG_READ_ONLY 0x0002u /* refuses reliable writes */
#define TALLY_HEARTBEAT_FLAG_DRAINING 0x0004u  /* operator drain in progress */
#define TALLY_HEARTBEAT_FLAGS_KNOWN \
  (TALLY_HEARTBEAT_FLAG_READY | TALLY_HEARTBEAT_FLAG_READ_ONLY | TALLY_HEARTBEAT_FLAG_DRAINING)

/* Why a heartbeat was refused: X(name, label). Labels are metric labels. */
#define TALLY_HEARTBEAT_FOREACH_REASON(X) \
  X(OK, "ok")                             \
  X(TRUNCATED, "truncated")               \
  X(BAD_MAGIC, "bad_magic")               \
  X(BAD_VERSION, "bad_version")           \
  X(BAD_MAC, "bad_mac")                   \
  X(MALFORMED, "malformed")

enum tally_heartbeat_reason {
#define TALLY_HEARTBEAT_REASON_ENUM(name, label) TALLY_HEARTBEAT_##name,
  TALLY_HEARTBEAT_FOREACH_REASON(TALLY_HEARTBEAT_REASON_ENUM)
#undef TALLY_HEARTBEAT_REASON_ENUM
  TALLY_HEARTBEAT_REASON_COUNT
};

struct tally_heartbeat {
  uint16_t node_id;      /* sender */
  uint16_t flags;        /* TALLY_HEARTBEAT_FLAG_* */
  uint32_t generation;   /* sender's incarnation: its start second, grows across restarts */
  uint64_t send_time_ns; /* sender's monotonic clock: only grows within an incarnation */
  uint64_t lsn;          /* sender's own replication LSN */
};

/*
 * Writes the TALLY_HEARTBEAT_SIZE-byte datagram. heartbeat->flags must hold
 * only known flags (asserted: the sender builds them).
 */
void tally_heartbeat_encode(const struct tally_heartbeat *heartbeat,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t out[TALLY_HEARTBEAT_SIZE]);

/*
 * Verifies and decodes a datagram, checking in this order: size (shorter:
 * TRUNCATED, longer: MALFORMED), magic (BAD_MAGIC), version (BAD_VERSION),
 * type (BAD_MAGIC), MAC in constant time (BAD_MAC), then the fields behind the
 * MAC — reserved bytes zero, no unknown flag (MALFORMED). Returns
 * TALLY_HEARTBEAT_OK and fills *heartbeat, or the reason with *heartbeat zeroed.
 */
enum tally_heartbeat_reason tally_heartbeat_decode(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_heartbeat *heartbeat);

/* Metric label of a reason ("ok", "truncated", ...); "invalid" if out of range. */
const char *tally_heartbeat_reason_name(enum tally_heartbeat_reason reason);

#endif
