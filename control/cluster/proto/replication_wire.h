/*
 * replication_wire.h — the authenticated messages of replication between
 * nodes (UDP on the replication address, beside the heartbeats). Pure
 * encode/decode over byte buffers; little-endian on the wire.
 *
 *   header (48 bytes): magic "TR" | version u8 | type u8 | origin u16 |
 *                      sender u16 | count u16 | flags u16 | part u16 |
 *                      reserved u16 (0) | seq u64 | scan u64 |
 *                      session u64 | peer_session u64
 *   entries (count):   value i64 | class u8 | name_len u8 | name bytes
 *                      class 1 = a reliable producer's counter
 *                      (TALLY_CLASS_RELIABLE), 0 = statsd's; nothing else
 *                      (issue 14, C1: a restored store keeps the class
 *                      bulkhead).
 *   mac (16 bytes):    BLAKE2b-128 keyed with the cluster key over all bytes
 *                      before it, personalised "tally-mac-repl" (tally/mac.h)
 *
 * Size (version 4; issue 12): a message is one UDP datagram of at most
 * TALLY_REPLICATION_SIZE_MAX (8 KiB; the kernel fragments it over a 1500-byte
 * MTU). A sender packs as many entries, records or claims as fit; the decoder
 * takes at most TALLY_REPLICATION_ENTRIES_MAX entries (the count of the
 * shortest, 1-byte names that fit), TALLY_REPLICATION_PRODUCERS_MAX records
 * or TALLY_REPLICATION_CLAIMS_MAX claims, and the body must end exactly at
 * the MAC. Version 2 (1472-byte datagrams, a u16 classes word in the header
 * instead of a class byte per entry) is refused as bad_version: a cluster
 * upgrades all nodes together.
 *
 * Sessions (version 2; issue 14, H4): every node picks a random session
 * (never 0) at each process start. session is the sender's, peer_session
 * the receiver's as the sender knows it (0: not known yet); a link's
 * session is the pair. A receiver ignores, and counts, a message whose
 * peer_session is not its own, except a probe (ROUND seq 0) and the two
 * requests, which may carry 0. A reply (ACK, RESTORE, READ_REPLY) carries
 * the session of the message it answers as peer_session, so it is only
 * ever accepted by the process that asked.
 *
 * ROUND    origin -> replica: the origin's absolute contribution to `count`
 *          counters; seq is the origin's sequence on this link. The replica
 *          applies it only on top of seq - 1 (the sequence it holds). scan is
 *          the origin's time stamp (unix microseconds) of the scan the round
 *          belongs to; flags LAST marks the round that completes that scan's
 *          list, after which the replica holds every value as of `scan`.
 *          With flags PRODUCERS the entries are instead the origin's producer
 *          dedup records (cross-node dedup): count x (producer u64, then
 *          per run, newest first, TALLY_DEDUP_RUNS times: head_last u64 |
 *          head_window[0] u64 | head_window[1] u64 | last_seq u64 |
 *          window u64), at most
 *          TALLY_REPLICATION_PRODUCERS_MAX;
 *          producer is never 0 or UINT64_MAX. A scan's list sends its
 *          counters first, then its producer records (read before the values,
 *          so every batch a record names is in the values already sent).
 *          With flags CLAIMS (never with PRODUCERS, only on ROUND) the
 *          entries are claims: count x (producer u64 | seq u64 | attempt
 *          u64), at most TALLY_REPLICATION_CLAIMS_MAX; producer never 0 or
 *          UINT64_MAX, attempt >= 1 and <= UINT16_MAX: "the origin applied
 *          this batch from this attempt". Claims follow the scan's producer
 *          records in its list.
 *          A probe (seq 0, no entries) carries a fresh random nonce in scan.
 * ACK      replica -> origin: seq = the sequence the replica now holds for
 *          this origin (durable). Also the answer to a ROUND it cannot apply.
 *          scan = the answered ROUND's scan (a probe's nonce comes back).
 * RESTORE_REQUEST  a node with an empty store -> each peer: "send me my own
 *          contribution as you hold it". scan = the requester's clock (unix
 *          microseconds), increasing per request: refused if not newer than
 *          the last one served for that peer, or out of the clock window
 *          (TALLY_REPLICATION_REQUEST_WINDOW_MS), so a replay is no dump.
 * RESTORE  peer -> that node: part `part` of its copy of the requester's
 *          contribution (origin = requester), seq = the sequence that copy
 *          holds, scan = the scan it is complete up to (its freshness: scans
 *          are comparable between replicas, link sequences are not); flags
 *          LAST on the final part. Parts with flags PRODUCERS carry the
 *          requester's producer records as held (sent before the LAST part).
 * READ_REQUEST  a node answering `tallyctl get --quorum NAME` -> each peer:
 *          one entry (the name, value 0), seq = a request id, scan = the
 *          requester's clock as for RESTORE_REQUEST (the same checks).
 * READ_REPLY    peer -> the requesting socket: one message per origin the
 *          peer knows (itself and each replica table): origin, scan = the
 *          copy's freshness (UINT64_MAX for the peer's own contribution),
 *          seq = the request id, one entry (name, value) or none if that copy
 *          has no such counter; flags LAST on the peer's final reply.
 */
#ifndef TALLY_REPLICATION_WIRE_H
#define TALLY_REPLICATION_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_REPLICATION_MAGIC_0 'T'
#define TALLY_REPLICATION_MAGIC_1 'R'
/* 2: sessions, request clocks (issue 14, H4); 3: MAC personalised per kind (M2);
 * 4: 8 KiB datagrams, a class byte per entry (issue 12) */
#define TALLY_REPLICATION_VERSION 4u
#define TALLY_REPLICATION_HEADER_SIZE 48u
#define TALLY_REPLICATION_FLAG_LAST 0x0001u
#define TALLY_REPLICATION_FLAG_PRODUCERS 0x0002u /* ROUND, RESTORE: producer records */
#define TALLY_REPLICATION_FLAG_CLAIMS 0x0004u /* ROUND: claims (cross-node dedup) */
#define TALLY_REPLICATION_FLAGS_KNOWN \
  (TALLY_REPLICATION_FLAG_LAST | TALLY_REPLICATION_FLAG_PRODUCERS | \
   TALLY_REPLICATION_FLAG_CLAIMS)
#define TALLY_REPLICATION_CLAIM_SIZE 24u
#define TALLY_REPLICATION_PRODUCER_SIZE (8u + 40u * TALLY_DEDUP_RUNS)
/* Largest message: one datagram of the cluster socket (8 KiB, IP-fragmented). */
#define TALLY_REPLICATION_SIZE_MAX TALLY_CLUSTER_DATAGRAM_SIZE_MAX
/* The bytes between the header and the MAC. */
#define TALLY_REPLICATION_BODY_MAX \
  (TALLY_REPLICATION_SIZE_MAX - TALLY_REPLICATION_HEADER_SIZE - TALLY_MAC_SIZE)
#define TALLY_REPLICATION_ENTRY_FIXED_SIZE 10u /* value i64 | class u8 | name_len u8 */
#define TALLY_REPLICATION_ENTRY_SIZE_MAX (TALLY_REPLICATION_ENTRY_FIXED_SIZE + TALLY_NAME_LEN_MAX)
#define TALLY_REPLICATION_CLASS_RELIABLE 1u /* the largest class byte (TALLY_CLASS_RELIABLE) */
/* Entries of the longest names one message always has room for (restore parts). */
#define TALLY_REPLICATION_ENTRIES_MIN (TALLY_REPLICATION_BODY_MAX / TALLY_REPLICATION_ENTRY_SIZE_MAX)

/* An entry's bytes on the wire. */
static inline size_t tally_replication_entry_size(uint32_t name_len)
{
  return TALLY_REPLICATION_ENTRY_FIXED_SIZE + name_len;
}

static_assert(TALLY_REPLICATION_ENTRIES_MAX * (TALLY_REPLICATION_ENTRY_FIXED_SIZE + 1u) <=
  TALLY_REPLICATION_BODY_MAX, "the most entries (1-byte names) fit one datagram");
static_assert((TALLY_REPLICATION_ENTRIES_MAX + 1u) * (TALLY_REPLICATION_ENTRY_FIXED_SIZE + 1u) >
  TALLY_REPLICATION_BODY_MAX, "and one more would not: the limit is what fits");
static_assert(TALLY_REPLICATION_ENTRIES_MIN >= 1u, "a longest name fits a message");
static_assert(TALLY_REPLICATION_ENTRIES_MAX <= UINT16_MAX, "count is a u16");
static_assert(TALLY_REPLICATION_PRODUCERS_MAX * TALLY_REPLICATION_PRODUCER_SIZE <=
  TALLY_REPLICATION_BODY_MAX, "a full producer message fits one datagram");
static_assert(TALLY_REPLICATION_CLAIMS_MAX * TALLY_REPLICATION_CLAIM_SIZE <=
  TALLY_REPLICATION_BODY_MAX, "a full claim message fits one datagram");

enum tally_replication_type {
  TALLY_REPLICATION_ROUND = 1,
  TALLY_REPLICATION_ACK = 2,
  TALLY_REPLICATION_RESTORE_REQUEST = 3,
  TALLY_REPLICATION_RESTORE = 4,
  TALLY_REPLICATION_READ_REQUEST = 5,
  TALLY_REPLICATION_READ_REPLY = 6,
};
#define TALLY_REPLICATION_TYPE_LAST TALLY_REPLICATION_READ_REPLY

enum tally_replication_reason {
  TALLY_REPLICATION_OK = 0,
  TALLY_REPLICATION_TRUNCATED,
  TALLY_REPLICATION_BAD_MAGIC,
  TALLY_REPLICATION_BAD_VERSION,
  TALLY_REPLICATION_BAD_MAC,
  TALLY_REPLICATION_MALFORMED,
  TALLY_REPLICATION_REASON_COUNT
};

struct tally_replication_entry {
  const char *name; /* into the datagram (decode) or the caller's memory */
  uint32_t name_len;
  int64_t value;
  uint8_t owner_class; /* TALLY_CLASS_STATSD (0) or TALLY_CLASS_RELIABLE (1) */
};

/* One producer dedup record (flags PRODUCERS): its runs, see tally/shard.h. */
struct tally_replication_producer {
  uint64_t producer;
  struct {
    uint64_t head_last;
    uint64_t head_window[2];
    uint64_t last_seq;
    uint64_t window;
  } runs[TALLY_DEDUP_RUNS];
};

/*
 * Whether a record's runs can be a dedup state (tally/shard.h): every run
 * that is there (head_last != 0) holds its last sequence (window bit 0).
 * The codec carries any bits; the cluster checks this before a record
 * reaches a store, whose invariants assert it (issue 14, L3).
 */
static inline bool tally_replication_producer_valid(const struct tally_replication_producer *record)
{
  for (unsigned r = 0; r < TALLY_DEDUP_RUNS; r++) {
    if (record->runs[r].head_last != 0 && (record->runs[r].window & 1u) == 0) return false;
  }
  return true;
}

/* One claim (flags CLAIMS): the origin applied (producer, seq) from this attempt. */
struct tally_replication_claim {
  uint64_t producer;
  uint64_t seq;
  uint64_t attempt;
};

struct tally_replication_message {
  enum tally_replication_type type;
  uint16_t origin;
  uint16_t sender;
  uint16_t flags;
  uint16_t part;
  uint64_t seq;
  uint64_t scan;
  uint64_t session;      /* the sender's (random per process start, never 0) */
  uint64_t peer_session; /* the receiver's as the sender knows it; 0: not known */
  uint32_t count; /* of entries[], or of producers[] with flags PRODUCERS */
  /* At most TALLY_REPLICATION_ENTRIES_MAX, and only as many as fit the datagram. */
  struct tally_replication_entry entries[TALLY_REPLICATION_ENTRIES_MAX];
  struct tally_replication_producer producers[TALLY_REPLICATION_PRODUCERS_MAX];
  struct tally_replication_claim claims[TALLY_REPLICATION_CLAIMS_MAX];
};

/*
 * Encodes; returns bytes written, 0 if invalid (bad name, count, type, flag,
 * PRODUCERS on a type other than ROUND/RESTORE, a producer id 0/UINT64_MAX).
 */
size_t tally_replication_encode(const struct tally_replication_message *message,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t *out, size_t out_size);

/* Verifies (MAC before anything behind it) and decodes. */
enum tally_replication_reason tally_replication_decode(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_replication_message *message);

const char *tally_replication_reason_name(enum tally_replication_reason reason);

#endif
