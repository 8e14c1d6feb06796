/*
 * test_replication_wire.c — unit tests of the replication messages
 * (control/cluster/proto/replication_wire.c): the byte layout against a vector made
 * independently (Python hashlib.blake2b), round trips of every type with 0, 1
 * and 34 entries of the longest names (what fits 8 KiB), and
 * TALLY_REPLICATION_ENTRIES_MAX (738) of 1-byte names, at the field limits, every
 * rejection reason and the order of the checks, every single-bit flip and
 * every wrong key rejected, the encoder's refusals (and that it never writes
 * past out_size), and a decoded message left zeroed on any failure. The same
 * for the producer-record variant (flags PRODUCERS on ROUND and RESTORE):
 * an independent vector, round trips of 0, 1, 2, 10 and
 * TALLY_REPLICATION_PRODUCERS_MAX (63) records of 128 bytes (the id, then
 * TALLY_DEDUP_RUNS runs of head_last | head_window[0] | head_window[1] |
 * last_seq | window), 64 refused,
 * every exact body length, the placement of every run field, and every check
 * behind the MAC tested on correctly signed datagrams. And for claims (flags
 * CLAIMS, ROUND only, never with PRODUCERS): an independent vector, round
 * trips of 0, 1, 337 and TALLY_REPLICATION_CLAIMS_MAX (338) claims of 24 bytes
 * (producer | seq | attempt) with and without LAST, 339 refused, every exact
 * body length, CLAIMS on every other type and beside PRODUCERS refused, bad
 * producer ids and attempts (0, 65536) refused at both ends, the limits (1,
 * 65535) accepted, and every bit flip rejected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "replication_wire.h"
#include "tally/mac.h"

enum {
  OFFSET_MAGIC_0 = 0,
  OFFSET_MAGIC_1 = 1,
  OFFSET_VERSION = 2,
  OFFSET_TYPE = 3,
  OFFSET_ORIGIN = 4,
  OFFSET_SENDER = 6,
  OFFSET_COUNT = 8,
  OFFSET_FLAGS = 10,
  OFFSET_PART = 12,
  OFFSET_RESERVED = 14,
  OFFSET_SEQ = 16,
  ENTRY_FIXED_SIZE = 10, /* value i64 + class u8 + name_len u8 */
};
/* Flag bits that mean nothing (yet): every receiver refuses them. */
#define FLAGS_UNKNOWN ((uint16_t)~TALLY_REPLICATION_FLAGS_KNOWN)
#define PRODUCERS_FULL_SIZE                                                         \
  (TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_PRODUCERS_MAX *              \
    TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE)
/*
 * A record: producer u64, then per run head_last | head_window[0] |
 * head_window[1] | last_seq | window.
 */
#define RECORD_ID_SIZE 8u
#define RECORD_RUN_FIELDS 5u /* u64 fields of a run */
#define RECORD_RUN_SIZE (RECORD_RUN_FIELDS * 8u)
#define RECORD_FIELDS (TALLY_DEDUP_RUNS * RECORD_RUN_FIELDS) /* u64 fields behind the id */
static_assert(TALLY_DEDUP_RUNS == 3u, "the runs tested below");
static_assert(RECORD_RUN_SIZE == 40u, "a run on the wire: five u64");
static_assert(TALLY_REPLICATION_PRODUCER_SIZE == 128u, "8 + 3 runs x 40 bytes");
static_assert(TALLY_REPLICATION_PRODUCER_SIZE == RECORD_ID_SIZE + RECORD_FIELDS * 8u,
  "the id and five u64 per run, nothing else");
static_assert(sizeof(((struct tally_replication_producer *)0)->runs[0]) == RECORD_RUN_SIZE,
  "the struct's run: the same five u64");
static_assert(TALLY_REPLICATION_PRODUCERS_MAX == 63u, "the counts tested below");
static_assert(PRODUCERS_FULL_SIZE == 8128u, "48 + 63 x 128 + 16");
static_assert(PRODUCERS_FULL_SIZE + TALLY_REPLICATION_PRODUCER_SIZE > TALLY_REPLICATION_SIZE_MAX,
  "one record over the limit does not fit a datagram: oversize as well as over the count");

/* A claim: producer u64 | seq u64 | attempt u64. */
#define CLAIMS_FULL_SIZE                                                            \
  (TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_CLAIMS_MAX *                 \
    TALLY_REPLICATION_CLAIM_SIZE + TALLY_MAC_SIZE)
static_assert(TALLY_REPLICATION_CLAIM_SIZE == 24u, "three u64 per claim");
static_assert(TALLY_REPLICATION_CLAIMS_MAX == 338u, "the counts tested below");
static_assert(CLAIMS_FULL_SIZE == 8176u, "48 + 338 x 24 + 16");
static_assert(CLAIMS_FULL_SIZE + TALLY_REPLICATION_CLAIM_SIZE > TALLY_REPLICATION_SIZE_MAX,
  "one claim over the limit does not fit a datagram: oversize as well as over the count");
static_assert(TALLY_REPLICATION_FLAG_CLAIMS == 0x0004u, "the flag in the vector below");

#define SIZE_MIN (TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE)
/* The most entries of the longest names one datagram holds (34), and of 1-byte names (738). */
#define LONGEST_MAX TALLY_REPLICATION_ENTRIES_MIN
#define FULL_SIZE                                                                  \
  (TALLY_REPLICATION_HEADER_SIZE +                                                 \
    LONGEST_MAX * (ENTRY_FIXED_SIZE + TALLY_NAME_LEN_MAX) + TALLY_MAC_SIZE)
static_assert(LONGEST_MAX == 34u && TALLY_REPLICATION_ENTRIES_MAX == 738u, "tested below");
static_assert(FULL_SIZE <= TALLY_REPLICATION_SIZE_MAX, "a full message fits one datagram");
static_assert(FULL_SIZE + ENTRY_FIXED_SIZE + TALLY_NAME_LEN_MAX > TALLY_REPLICATION_SIZE_MAX,
  "one more longest name does not");
#define SHORTEST_FULL_SIZE                                                         \
  (TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_ENTRIES_MAX * (ENTRY_FIXED_SIZE + 1u) + \
    TALLY_MAC_SIZE)

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
 * ROUND, origin 0x0102, sender 0x0304, flags LAST, part 0x0506, seq
 * 0x1122334455667788, scan 0x99aabbccddeeff00, session 0x0123456789abcdef,
 * peer_session 0xfedcba9876543210 (version 4), entries (-1, class 0, "a") and
 * (INT64_MAX, class 1, "req.ok"); made by
 * hashlib.blake2b(body, digest_size=16, key=bytes(range(32)),
 * person=b"tally-mac-repl\0\0") (personalised since version 3, issue 14 M2).
 */
static const uint8_t vector[] = {
  0x54, 0x52, 0x04, 0x01, 0x02, 0x01, 0x04, 0x03, 0x02, 0x00, 0x01, 0x00, 0x06, 0x05, 0x00,
  0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb,
  0xaa, 0x99, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 0x10, 0x32, 0x54, 0x76, 0x98,
  0xba, 0xdc, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x61, 0xff,
  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x06, 0x72, 0x65, 0x71, 0x2e, 0x6f, 0x6b,
  0x6b, 0xca, 0xbc, 0xd5, 0x01, 0x8d, 0x32, 0xbd, 0xeb, 0xdf, 0x13, 0x82, 0x55, 0x7e, 0xc9,
  0x71,
};
#define VECTOR_SIZE sizeof(vector)
static_assert(sizeof(vector) == 91u, "vector size as made by Python");
/* Offsets into the vector. */
#define VECTOR_CLASS_0 (TALLY_REPLICATION_HEADER_SIZE + 8u)
#define VECTOR_LEN_0 (TALLY_REPLICATION_HEADER_SIZE + 9u)
#define VECTOR_NAME_0 (TALLY_REPLICATION_HEADER_SIZE + 10u)
#define VECTOR_ENTRY_1 (TALLY_REPLICATION_HEADER_SIZE + 11u)
#define VECTOR_CLASS_1 (VECTOR_ENTRY_1 + 8u)
#define VECTOR_LEN_1 (VECTOR_ENTRY_1 + 9u)
#define VECTOR_NAME_1 (VECTOR_ENTRY_1 + 10u)
#define VECTOR_BODY_END (VECTOR_SIZE - TALLY_MAC_SIZE)

/*
 * RESTORE, origin 0x0102, sender 0x0304, flags PRODUCERS | LAST, part 0x0506,
 * seq 0x1122334455667788, scan 0x99aabbccddeeff00, session 0x0123456789abcdef,
 * peer_session 0xfedcba9876543210 (version 4), producer records, each
 * (producer, then runs 0..2 of head_last, head_window[0], head_window[1],
 * last_seq, window):
 *   1: (0x0102030405060708, 0x8000000000000001, 0x09fedcba87654321,
 *       0xa1a2a3a4a5a6a7a8, 0xb1b2b3b4b5b6b7b8),
 *      (0xc1c2c3c4c5c6c7c8, 0xd1d2d3d4d5d6d7d8, 0x5a5b5c5d5e5f5051,
 *       0xe1e2e3e4e5e6e7e8, 0xf1f2f3f4f5f6f7f8),
 *      (0x1112131415161718, 0x2122232425262728, 0x0f1e2d3c4b5a6978,
 *       0x3132333435363738, 0x4142434445464748);
 *   UINT64_MAX - 1: (0, UINT64_MAX, 0x4000000000000002, 0x3f, 0x8000000000000000),
 *      (0x5152535455565758, 0x6162636465666768, 0xa5a6a7a8a9aaabac,
 *       0x7172737475767778, 0x8182838485868788),
 *      (UINT64_MAX, 0, 0xfffffffffffffffe, 0x9192939495969798, 1);
 * made by struct.pack('<Q', producer) + struct.pack('<QQQQQ', ...) per run and
 * the same hashlib.blake2b.
 */
static const uint8_t producer_vector[] = {
  0x54, 0x52, 0x04, 0x04, 0x02, 0x01, 0x04, 0x03, 0x02, 0x00, 0x03, 0x00, 0x06, 0x05, 0x00,
  0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb,
  0xaa, 0x99, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 0x10, 0x32, 0x54, 0x76, 0x98,
  0xba, 0xdc, 0xfe, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
  0x04, 0x03, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x21, 0x43, 0x65,
  0x87, 0xba, 0xdc, 0xfe, 0x09, 0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1, 0xb8, 0xb7,
  0xb6, 0xb5, 0xb4, 0xb3, 0xb2, 0xb1, 0xc8, 0xc7, 0xc6, 0xc5, 0xc4, 0xc3, 0xc2, 0xc1, 0xd8,
  0xd7, 0xd6, 0xd5, 0xd4, 0xd3, 0xd2, 0xd1, 0x51, 0x50, 0x5f, 0x5e, 0x5d, 0x5c, 0x5b, 0x5a,
  0xe8, 0xe7, 0xe6, 0xe5, 0xe4, 0xe3, 0xe2, 0xe1, 0xf8, 0xf7, 0xf6, 0xf5, 0xf4, 0xf3, 0xf2,
  0xf1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, 0x28, 0x27, 0x26, 0x25, 0x24, 0x23,
  0x22, 0x21, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f, 0x38, 0x37, 0x36, 0x35, 0x34,
  0x33, 0x32, 0x31, 0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41, 0xfe, 0xff, 0xff, 0xff,
  0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
  0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x3f, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x58,
  0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51, 0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,
  0xac, 0xab, 0xaa, 0xa9, 0xa8, 0xa7, 0xa6, 0xa5, 0x78, 0x77, 0x76, 0x75, 0x74, 0x73, 0x72,
  0x71, 0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
  0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff,
  0xff, 0xff, 0xff, 0x98, 0x97, 0x96, 0x95, 0x94, 0x93, 0x92, 0x91, 0x01, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0xc5, 0xe9, 0xa3, 0xdc, 0xb3, 0x36, 0x31, 0xcb, 0xf5, 0x2d, 0x3d,
  0x0c, 0xb5, 0xf1, 0x71, 0x03,
};
#define PRODUCER_VECTOR_SIZE sizeof(producer_vector)
static_assert(sizeof(producer_vector) == 320u, "producer vector size as made by Python");
#define PRODUCER_VECTOR_BODY_END (PRODUCER_VECTOR_SIZE - TALLY_MAC_SIZE)
/* Offsets of the two records' producer ids. */
#define PRODUCER_VECTOR_ID_0 TALLY_REPLICATION_HEADER_SIZE
#define PRODUCER_VECTOR_ID_1 (TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_PRODUCER_SIZE)

/*
 * ROUND, origin 0x0102, sender 0x0304, flags CLAIMS | LAST (0x0005), part
 * 0x0506, seq 0x1122334455667788, scan 0x99aabbccddeeff00, session
 * 0x0123456789abcdef, peer_session 0xfedcba9876543210 (version 4), claims (producer,
 * seq, attempt):
 *   (0x0102030405060708, 0x1112131415161718, 1),
 *   (TALLY_PRODUCER_ID_MAX = 2^63 - 2, UINT64_MAX, 0xffff = TALLY_CLAIM_KEEPER),
 *   (1, 0, 0x0203);
 * made by struct.pack('<QQQ', producer, seq, attempt) per claim behind the
 * header and the same hashlib.blake2b.
 */
static const uint8_t claim_vector[] = {
  0x54, 0x52, 0x04, 0x01, 0x02, 0x01, 0x04, 0x03, 0x03, 0x00, 0x05, 0x00, 0x06, 0x05, 0x00,
  0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb,
  0xaa, 0x99, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 0x10, 0x32, 0x54, 0x76, 0x98,
  0xba, 0xdc, 0xfe, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16, 0x15,
  0x14, 0x13, 0x12, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff,
  0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x41, 0x02, 0xd8, 0x5e, 0x59, 0x17, 0xe9, 0x5e, 0xf6, 0xa5, 0x1c, 0xf9, 0x83, 0x27, 0x8f,
  0xb8,
};
#define CLAIM_VECTOR_SIZE sizeof(claim_vector)
static_assert(sizeof(claim_vector) == 136u, "claim vector size as made by Python");
#define CLAIM_VECTOR_BODY_END (CLAIM_VECTOR_SIZE - TALLY_MAC_SIZE)
#define CLAIM_VECTOR_COUNT 3u
/* Offset of claim i of the vector, and of its fields. */
#define CLAIM_AT(i) (TALLY_REPLICATION_HEADER_SIZE + (size_t)(i) * TALLY_REPLICATION_CLAIM_SIZE)
#define CLAIM_PRODUCER 0u
#define CLAIM_SEQ 8u
#define CLAIM_ATTEMPT 16u

static void vector_message(struct tally_replication_message *message)
{
  memset(message, 0, sizeof(*message));
  message->type = TALLY_REPLICATION_ROUND;
  message->origin = 0x0102;
  message->sender = 0x0304;
  message->flags = TALLY_REPLICATION_FLAG_LAST;
  message->part = 0x0506;
  message->seq = 0x1122334455667788ull;
  message->scan = 0x99aabbccddeeff00ull;
  message->session = 0x0123456789abcdefull;
  message->peer_session = 0xfedcba9876543210ull;
  message->count = 2;
  message->entries[0] = (struct tally_replication_entry){.name = "a", .name_len = 1, .value = -1};
  message->entries[1] =
    (struct tally_replication_entry){.name = "req.ok", .name_len = 6, .value = INT64_MAX,
      .owner_class = 1};
}

static void producer_vector_message(struct tally_replication_message *message)
{
  memset(message, 0, sizeof(*message));
  message->type = TALLY_REPLICATION_RESTORE;
  message->origin = 0x0102;
  message->sender = 0x0304;
  message->flags = TALLY_REPLICATION_FLAG_PRODUCERS | TALLY_REPLICATION_FLAG_LAST;
  message->part = 0x0506;
  message->seq = 0x1122334455667788ull;
  message->scan = 0x99aabbccddeeff00ull;
  message->session = 0x0123456789abcdefull;
  message->peer_session = 0xfedcba9876543210ull;
  message->count = 2;
  message->producers[0] = (struct tally_replication_producer){.producer = 1,
    .runs = {
      {.head_last = 0x0102030405060708ull,
        .head_window = {0x8000000000000001ull, 0x09fedcba87654321ull},
        .last_seq = 0xa1a2a3a4a5a6a7a8ull, .window = 0xb1b2b3b4b5b6b7b8ull},
      {.head_last = 0xc1c2c3c4c5c6c7c8ull,
        .head_window = {0xd1d2d3d4d5d6d7d8ull, 0x5a5b5c5d5e5f5051ull},
        .last_seq = 0xe1e2e3e4e5e6e7e8ull, .window = 0xf1f2f3f4f5f6f7f8ull},
      {.head_last = 0x1112131415161718ull,
        .head_window = {0x2122232425262728ull, 0x0f1e2d3c4b5a6978ull},
        .last_seq = 0x3132333435363738ull, .window = 0x4142434445464748ull},
    }};
  message->producers[1] = (struct tally_replication_producer){.producer = UINT64_MAX - 1,
    .runs = {
      {.head_last = 0, .head_window = {UINT64_MAX, 0x4000000000000002ull}, .last_seq = 0x3f,
        .window = 0x8000000000000000ull},
      {.head_last = 0x5152535455565758ull,
        .head_window = {0x6162636465666768ull, 0xa5a6a7a8a9aaabacull},
        .last_seq = 0x7172737475767778ull, .window = 0x8182838485868788ull},
      {.head_last = UINT64_MAX, .head_window = {0, UINT64_MAX - 1},
        .last_seq = 0x9192939495969798ull, .window = 1},
    }};
}

static void claim_vector_message(struct tally_replication_message *message)
{
  memset(message, 0, sizeof(*message));
  message->type = TALLY_REPLICATION_ROUND;
  message->origin = 0x0102;
  message->sender = 0x0304;
  message->flags = TALLY_REPLICATION_FLAG_CLAIMS | TALLY_REPLICATION_FLAG_LAST;
  message->part = 0x0506;
  message->seq = 0x1122334455667788ull;
  message->scan = 0x99aabbccddeeff00ull;
  message->session = 0x0123456789abcdefull;
  message->peer_session = 0xfedcba9876543210ull;
  message->count = CLAIM_VECTOR_COUNT;
  message->claims[0] = (struct tally_replication_claim){
    .producer = 0x0102030405060708ull, .seq = 0x1112131415161718ull, .attempt = 1};
  message->claims[1] = (struct tally_replication_claim){
    .producer = TALLY_PRODUCER_ID_MAX, .seq = UINT64_MAX, .attempt = 0xffff};
  message->claims[2] = (struct tally_replication_claim){.producer = 1, .seq = 0, .attempt = 0x0203};
}

/* count claims on a ROUND (flags CLAIMS), fields at their limits. */
static void claims_fill(struct tally_replication_message *message, uint32_t count)
{
  static const uint64_t ids[] = {1, TALLY_PRODUCER_ID_MAX, 0x4000000000000000ull,
    0x0123456789abcdefull};
  static const uint64_t seqs[] = {0, UINT64_MAX, 1, 0xfedcba9876543210ull, 1ull << 63};
  static const uint64_t attempts[] = {1, UINT16_MAX, 2, 0x8000, UINT16_MAX - 1};
  memset(message, 0, sizeof(*message));
  message->type = TALLY_REPLICATION_ROUND;
  message->origin = UINT16_MAX;
  message->sender = 0x8001;
  message->flags = TALLY_REPLICATION_FLAG_CLAIMS;
  message->part = UINT16_MAX;
  message->seq = UINT64_MAX;
  message->scan = 0x0102030405060708ull;
  message->count = count;
  for (uint32_t i = 0; i < count; i++) {
    /* Never 0 or above TALLY_PRODUCER_ID_MAX: the high and low bits stay as they are. */
    message->claims[i].producer =
      ids[i % (sizeof(ids) / sizeof(ids[0]))] ^ ((uint64_t)(i / 4u) << 8);
    message->claims[i].seq = seqs[i % (sizeof(seqs) / sizeof(seqs[0]))];
    message->claims[i].attempt = attempts[i % (sizeof(attempts) / sizeof(attempts[0]))];
  }
}

static void assert_claims_zero_from(const struct tally_replication_message *got, uint32_t from)
{
  for (uint32_t i = from; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
    assert_true(got->claims[i].producer == 0);
    assert_true(got->claims[i].seq == 0);
    assert_true(got->claims[i].attempt == 0);
  }
}

/* Field k (0 .. RECORD_FIELDS - 1) of a record's runs, in wire order. */
static uint64_t *record_field(struct tally_replication_producer *record, uint32_t k)
{
  assert_true(k < RECORD_FIELDS);
  const uint32_t r = k / RECORD_RUN_FIELDS;
  switch (k % RECORD_RUN_FIELDS) {
  case 0: return &record->runs[r].head_last;
  case 1: return &record->runs[r].head_window[0];
  case 2: return &record->runs[r].head_window[1];
  case 3: return &record->runs[r].last_seq;
  default: return &record->runs[r].window;
  }
}

static uint64_t record_field_get(const struct tally_replication_producer *record, uint32_t k)
{
  struct tally_replication_producer copy = *record;
  return *record_field(&copy, k);
}

/* Offset of field k of a record from the record's start. */
static size_t record_field_offset(uint32_t k)
{
  return RECORD_ID_SIZE + (size_t)(k / RECORD_RUN_FIELDS) * RECORD_RUN_SIZE +
    (size_t)(k % RECORD_RUN_FIELDS) * 8u;
}

/* count producer records of type (ROUND or RESTORE), fields at their limits. */
static void producers_fill(struct tally_replication_message *message,
  enum tally_replication_type type, uint32_t count)
{
  static const uint64_t ids[] = {1, UINT64_MAX - 1, 0x8000000000000000ull, 0x0123456789abcdefull};
  static const uint64_t others[] = {0, UINT64_MAX, 1, 0xfedcba9876543210ull, 1ull << 63};
  memset(message, 0, sizeof(*message));
  message->type = type;
  message->origin = UINT16_MAX;
  message->sender = 0x8001;
  message->flags = TALLY_REPLICATION_FLAG_PRODUCERS;
  message->part = UINT16_MAX;
  message->seq = UINT64_MAX;
  message->scan = 0x0102030405060708ull;
  message->count = count;
  for (uint32_t i = 0; i < count; i++) {
    /* Never 0 or above TALLY_PRODUCER_ID_MAX: the high and low bits stay as they are. */
    message->producers[i].producer =
      ids[i % (sizeof(ids) / sizeof(ids[0]))] ^ ((uint64_t)(i / 4u) << 8);
    for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
      *record_field(&message->producers[i], k) =
        others[(i + k) % (sizeof(others) / sizeof(others[0]))];
    }
  }
}

/* count entries of 96-byte names (or cycling lengths), values at the i64 limits. */
static void message_fill(struct tally_replication_message *message,
  enum tally_replication_type type, uint32_t count, bool longest)
{
  static const int64_t values[] = {INT64_MIN, INT64_MAX, -1, 0, 1, INT64_MIN + 1};
  memset(message, 0, sizeof(*message));
  message->type = type;
  message->origin = UINT16_MAX;
  message->sender = 0x8001;
  message->flags = TALLY_REPLICATION_FLAG_LAST;
  message->part = UINT16_MAX;
  message->seq = UINT64_MAX;
  message->count = count;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t name_len = longest ? TALLY_NAME_LEN_MAX : 1u + (i * 37u) % TALLY_NAME_LEN_MAX;
    message->entries[i].name = long_name + (TALLY_NAME_LEN_MAX - name_len);
    message->entries[i].name_len = name_len;
    message->entries[i].value = values[i % (sizeof(values) / sizeof(values[0]))];
    message->entries[i].owner_class = (uint8_t)(i % 3u == 1u); /* C1: the class byte */
  }
}

static void assert_message_equal(const struct tally_replication_message *got,
  const struct tally_replication_message *want)
{
  assert_int_equal(got->type, want->type);
  assert_int_equal(got->origin, want->origin);
  assert_int_equal(got->sender, want->sender);
  assert_int_equal(got->flags, want->flags);
  assert_int_equal(got->part, want->part);
  assert_true(got->seq == want->seq);
  assert_true(got->scan == want->scan);
  assert_true(got->session == want->session);
  assert_true(got->peer_session == want->peer_session);
  assert_int_equal(got->count, want->count);
  if ((want->flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) {
    for (uint32_t i = 0; i < want->count; i++) {
      assert_true(got->producers[i].producer == want->producers[i].producer);
      for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
        assert_true(record_field_get(&got->producers[i], k) ==
          record_field_get(&want->producers[i], k));
      }
    }
    /* No counter entries, and nothing beyond count. */
    for (uint32_t i = 0; i < TALLY_REPLICATION_ENTRIES_MAX; i++) {
      assert_null(got->entries[i].name);
      assert_int_equal(got->entries[i].name_len, 0);
    }
    for (uint32_t i = want->count; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
      assert_true(got->producers[i].producer == 0);
      for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
        assert_true(record_field_get(&got->producers[i], k) == 0);
      }
    }
    assert_claims_zero_from(got, 0);
    return;
  }
  /* Records are never decoded beside claims or counter entries. */
  for (uint32_t i = 0; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
    assert_true(got->producers[i].producer == 0);
    for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
      assert_true(record_field_get(&got->producers[i], k) == 0);
    }
  }
  if ((want->flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0) {
    for (uint32_t i = 0; i < want->count; i++) {
      assert_true(got->claims[i].producer == want->claims[i].producer);
      assert_true(got->claims[i].seq == want->claims[i].seq);
      assert_true(got->claims[i].attempt == want->claims[i].attempt);
    }
    /* No counter entries, and nothing beyond count. */
    for (uint32_t i = 0; i < TALLY_REPLICATION_ENTRIES_MAX; i++) {
      assert_null(got->entries[i].name);
      assert_int_equal(got->entries[i].name_len, 0);
    }
    assert_claims_zero_from(got, want->count);
    return;
  }
  assert_claims_zero_from(got, 0);
  for (uint32_t i = 0; i < want->count; i++) {
    assert_int_equal(got->entries[i].name_len, want->entries[i].name_len);
    assert_memory_equal(got->entries[i].name, want->entries[i].name, want->entries[i].name_len);
    assert_true(got->entries[i].value == want->entries[i].value);
    assert_int_equal(got->entries[i].owner_class, want->entries[i].owner_class);
  }
}

/* Every byte zero (decode clears the whole struct, padding included). */
static void assert_zeroed(const struct tally_replication_message *message)
{
  static const struct tally_replication_message zero;
  assert_memory_equal(message, &zero, sizeof(zero));
}

/* Replaces the MAC of data[0..size) with the right one for its (edited) body. */
static void resign(uint8_t *data, size_t size)
{
  assert_true(size >= TALLY_MAC_SIZE);
  size_t body_size = size - TALLY_MAC_SIZE;
  tally_mac_compute(TALLY_MAC_REPLICATION, data, body_size, test_key, data + body_size);
}

static void put16(uint8_t *out, uint16_t value)
{
  out[0] = (uint8_t)value;
  out[1] = (uint8_t)(value >> 8);
}

static bool type_valid(uint8_t type)
{
  return type >= TALLY_REPLICATION_ROUND && type <= TALLY_REPLICATION_TYPE_LAST;
}

static size_t encode_ok(const struct tally_replication_message *message, uint8_t *out,
  size_t out_size)
{
  size_t size = tally_replication_encode(message, test_key, out, out_size);
  assert_true(size >= SIZE_MIN);
  assert_true(size <= TALLY_REPLICATION_SIZE_MAX);
  return size;
}

static enum tally_replication_reason decode(const uint8_t *data, size_t size,
  struct tally_replication_message *message)
{
  memset(message, 0x5a, sizeof(*message)); /* decode must overwrite everything */
  return tally_replication_decode(data, size, test_key, message);
}

static void expect_reason(const uint8_t *data, size_t size, enum tally_replication_reason want)
{
  struct tally_replication_message decoded;
  enum tally_replication_reason got = decode(data, size, &decoded);
  if (got != want) {
    fail_msg("size %zu: got %s, want %s", size, tally_replication_reason_name(got),
      tally_replication_reason_name(want));
  }
  if (want != TALLY_REPLICATION_OK) assert_zeroed(&decoded);
}

/* Edited behind the MAC: BAD_MAC as it is, MALFORMED once signed again. */
static void expect_malformed_signed(uint8_t *data, size_t size)
{
  expect_reason(data, size, TALLY_REPLICATION_BAD_MAC);
  resign(data, size);
  expect_reason(data, size, TALLY_REPLICATION_MALFORMED);
}

/* ---- Round trips ------------------------------------------------------------ */

static void test_vector(void **state)
{
  (void)state;
  struct tally_replication_message message;
  vector_message(&message);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&message, out, sizeof(out)), VECTOR_SIZE);
  assert_memory_equal(out, vector, VECTOR_SIZE);
  struct tally_replication_message decoded;
  assert_int_equal(decode(vector, VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &message);
  /* Names point into the datagram. */
  assert_ptr_equal(decoded.entries[0].name, (const char *)vector + VECTOR_NAME_0);
  assert_ptr_equal(decoded.entries[1].name, (const char *)vector + VECTOR_NAME_1);
  /* Entries beyond count stay zero. */
  assert_null(decoded.entries[2].name);
  assert_int_equal(decoded.entries[2].name_len, 0);
}

static void round_trip(const struct tally_replication_message *message, size_t size_want)
{
  /* At an odd address: fields are read and written byte by byte. */
  static uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  uint8_t *out = buffer + 1;
  size_t size = encode_ok(message, out, TALLY_REPLICATION_SIZE_MAX);
  assert_int_equal(size, size_want);
  struct tally_replication_message decoded;
  assert_int_equal(decode(out, size, &decoded), TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, message);
  bool entries = (message->flags &
    (TALLY_REPLICATION_FLAG_PRODUCERS | TALLY_REPLICATION_FLAG_CLAIMS)) == 0;
  for (uint32_t i = 0; entries && i < decoded.count; i++) {
    assert_true(decoded.entries[i].name >= (const char *)out + TALLY_REPLICATION_HEADER_SIZE);
    assert_true(decoded.entries[i].name + decoded.entries[i].name_len <=
      (const char *)out + size - TALLY_MAC_SIZE);
  }
  /* Exactly that size fits; one byte less does not. */
  uint8_t again[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(tally_replication_encode(message, test_key, again, size), size);
  assert_memory_equal(again, out, size);
  assert_int_equal(tally_replication_encode(message, test_key, again, size - 1), 0);
}

static void test_round_trip_every_type_and_count(void **state)
{
  (void)state;
  const uint32_t counts[] = {0, 1, LONGEST_MAX};
  for (uint8_t type = TALLY_REPLICATION_ROUND; type <= TALLY_REPLICATION_TYPE_LAST; type++) {
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
      struct tally_replication_message message;
      message_fill(&message, (enum tally_replication_type)type, counts[c], true);
      size_t size_want = TALLY_REPLICATION_HEADER_SIZE +
        counts[c] * (ENTRY_FIXED_SIZE + TALLY_NAME_LEN_MAX) + TALLY_MAC_SIZE;
      round_trip(&message, size_want);
      /* All header fields zero, no flag. */
      message.origin = 0;
      message.sender = 0;
      message.flags = 0;
      message.part = 0;
      message.seq = 0;
      round_trip(&message, size_want);
    }
  }
  struct tally_replication_message full;
  message_fill(&full, TALLY_REPLICATION_ROUND, LONGEST_MAX, true);
  round_trip(&full, FULL_SIZE);
  /* One more longest name does not fit: the encoder refuses it. */
  message_fill(&full, TALLY_REPLICATION_ROUND, LONGEST_MAX + 1u, true);
  static uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(tally_replication_encode(&full, test_key, out, sizeof(out)), 0);
  /* ENTRIES_MAX 1-byte names fill the datagram to the byte limit. */
  message_fill(&full, TALLY_REPLICATION_ROUND, TALLY_REPLICATION_ENTRIES_MAX, true);
  for (uint32_t i = 0; i < full.count; i++) {
    full.entries[i].name = long_name + (i % TALLY_NAME_LEN_MAX);
    full.entries[i].name_len = 1;
  }
  round_trip(&full, SHORTEST_FULL_SIZE);
}

static void test_round_trip_mixed_lengths_and_layout(void **state)
{
  (void)state;
  struct tally_replication_message message;
  message_fill(&message, TALLY_REPLICATION_RESTORE, 60, false);
  message.origin = 0x0102;
  message.seq = 0x0807060504030201ull;
  size_t size_want = TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE;
  for (uint32_t i = 0; i < message.count; i++) {
    size_want += ENTRY_FIXED_SIZE + message.entries[i].name_len;
  }
  round_trip(&message, size_want);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  size_t size = encode_ok(&message, out, sizeof(out));
  /* Little-endian on the wire whatever the host; class bytes: entries 1, 4, 7... reliable. */
  assert_int_equal(out[OFFSET_TYPE], TALLY_REPLICATION_RESTORE);
  assert_int_equal(out[OFFSET_ORIGIN], 0x02);
  assert_int_equal(out[OFFSET_ORIGIN + 1], 0x01);
  assert_int_equal(out[OFFSET_COUNT], 60);
  assert_int_equal(out[OFFSET_COUNT + 1], 0);
  assert_int_equal(out[OFFSET_RESERVED], 0);
  assert_int_equal(out[OFFSET_RESERVED + 1], 0);
  size_t at = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < message.count; i++) {
    assert_int_equal(out[at + 8], i % 3u == 1u ? 1 : 0);
    assert_int_equal(out[at + 9], message.entries[i].name_len);
    at += ENTRY_FIXED_SIZE + message.entries[i].name_len;
  }
  assert_int_equal(out[OFFSET_SEQ], 0x01);
  assert_int_equal(out[OFFSET_SEQ + 7], 0x08);
  /* The MAC covers everything before it. */
  uint8_t mac[TALLY_MAC_SIZE];
  tally_mac_compute(TALLY_MAC_REPLICATION, out, size - TALLY_MAC_SIZE, test_key, mac);
  /* Personalised (issue 14, M2): not the unpersonalised BLAKE2b, nor another kind's MAC. */
  uint8_t plain[TALLY_MAC_SIZE];
  assert_int_equal(crypto_generichash(plain, sizeof(plain), out, size - TALLY_MAC_SIZE, test_key,
    TALLY_KEY_SIZE), 0);
  assert_memory_not_equal(plain, out + size - TALLY_MAC_SIZE, TALLY_MAC_SIZE);
  assert_false(tally_mac_verify(TALLY_MAC_HEARTBEAT, out, size - TALLY_MAC_SIZE, test_key,
    out + size - TALLY_MAC_SIZE));
  assert_memory_equal(mac, out + size - TALLY_MAC_SIZE, TALLY_MAC_SIZE);
}

/* ---- Rejections in front of the MAC ---------------------------------------- */

static void test_reject_size(void **state)
{
  (void)state;
  for (size_t size = 0; size < SIZE_MIN; size++) {
    expect_reason(vector, size, TALLY_REPLICATION_TRUNCATED);
  }
  /* Too long, even signed and starting like a message: malformed. */
  static uint8_t big[TALLY_REPLICATION_SIZE_MAX + 64];
  memset(big, 'x', sizeof(big));
  memcpy(big, vector, VECTOR_BODY_END);
  resign(big, TALLY_REPLICATION_SIZE_MAX + 1);
  expect_reason(big, TALLY_REPLICATION_SIZE_MAX + 1, TALLY_REPLICATION_MALFORMED);
  expect_reason(big, sizeof(big), TALLY_REPLICATION_MALFORMED);
  /* At the limit the size is fine: the trailing bytes are what is wrong. */
  resign(big, TALLY_REPLICATION_SIZE_MAX);
  expect_reason(big, TALLY_REPLICATION_SIZE_MAX, TALLY_REPLICATION_MALFORMED);
  big[OFFSET_MAGIC_0] = 'X';
  expect_reason(big, TALLY_REPLICATION_SIZE_MAX, TALLY_REPLICATION_BAD_MAGIC);
  expect_reason(big, TALLY_REPLICATION_SIZE_MAX + 1, TALLY_REPLICATION_MALFORMED);
  /* The smallest message decodes; one byte short of it does not. */
  struct tally_replication_message message;
  message_fill(&message, TALLY_REPLICATION_ACK, 0, true);
  uint8_t small[SIZE_MIN];
  assert_int_equal(encode_ok(&message, small, sizeof(small)), SIZE_MIN);
  expect_reason(small, SIZE_MIN, TALLY_REPLICATION_OK);
  expect_reason(small, SIZE_MIN - 1, TALLY_REPLICATION_TRUNCATED);
  /* A message cut short at the end no longer lines up with its MAC. */
  expect_reason(vector, VECTOR_SIZE - 1, TALLY_REPLICATION_BAD_MAC);
}

static void test_reject_envelope(void **state)
{
  (void)state;
  const struct {
    size_t offset;
    uint8_t value;
    enum tally_replication_reason want;
  } edits[] = {
    {OFFSET_MAGIC_0, 'X', TALLY_REPLICATION_BAD_MAGIC},
    {OFFSET_MAGIC_1, 'H', TALLY_REPLICATION_BAD_MAGIC}, /* a heartbeat's magic */
    {OFFSET_MAGIC_1, 'B', TALLY_REPLICATION_BAD_MAGIC}, /* a batch's magic */
    {OFFSET_VERSION, 0, TALLY_REPLICATION_BAD_VERSION},
    {OFFSET_VERSION, 1, TALLY_REPLICATION_BAD_VERSION}, /* before sessions (issue 14, H4) */
    {OFFSET_VERSION, 2, TALLY_REPLICATION_BAD_VERSION}, /* before MACs per kind (M2) */
    {OFFSET_VERSION, 3, TALLY_REPLICATION_BAD_VERSION}, /* 1472-byte datagrams (issue 12) */
    {OFFSET_VERSION, 5, TALLY_REPLICATION_BAD_VERSION},
    {OFFSET_VERSION, 0xff, TALLY_REPLICATION_BAD_VERSION},
    {OFFSET_TYPE, 0, TALLY_REPLICATION_BAD_MAGIC},
    {OFFSET_TYPE, TALLY_REPLICATION_TYPE_LAST + 1, TALLY_REPLICATION_BAD_MAGIC},
    {OFFSET_TYPE, 0xff, TALLY_REPLICATION_BAD_MAGIC},
    {VECTOR_SIZE - 1, 0x13, TALLY_REPLICATION_BAD_MAC},
    {VECTOR_BODY_END, 0x00, TALLY_REPLICATION_BAD_MAC},
  };
  for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
    uint8_t message[VECTOR_SIZE];
    memcpy(message, vector, sizeof(message));
    assert_int_not_equal(message[edits[i].offset], edits[i].value);
    message[edits[i].offset] = edits[i].value;
    expect_reason(message, sizeof(message), edits[i].want);
    /* Checked before the MAC: a correct MAC changes nothing. */
    if (edits[i].want != TALLY_REPLICATION_BAD_MAC) {
      resign(message, sizeof(message));
      expect_reason(message, sizeof(message), edits[i].want);
    }
  }
  /* Every other type of this version is valid with a good MAC. */
  for (uint8_t type = TALLY_REPLICATION_ROUND; type <= TALLY_REPLICATION_TYPE_LAST; type++) {
    uint8_t message[VECTOR_SIZE];
    memcpy(message, vector, sizeof(message));
    message[OFFSET_TYPE] = type;
    expect_reason(message, sizeof(message),
      type == TALLY_REPLICATION_ROUND ? TALLY_REPLICATION_OK : TALLY_REPLICATION_BAD_MAC);
    resign(message, sizeof(message));
    expect_reason(message, sizeof(message), TALLY_REPLICATION_OK);
  }
}

/* The first failing check wins, in the documented order. */
static void test_reject_order(void **state)
{
  (void)state;
  static uint8_t message[TALLY_REPLICATION_SIZE_MAX + 1];
  memcpy(message, vector, VECTOR_SIZE);
  message[OFFSET_MAGIC_0] = 'X';
  message[OFFSET_VERSION] = 9;
  message[OFFSET_TYPE] = 0;
  message[OFFSET_RESERVED + 1] = 0x80; /* the reserved word is not 0 */
  message[VECTOR_SIZE - 1] ^= 1;
  /* Truncated before too long, too long before everything else. */
  expect_reason(message, SIZE_MIN - 1, TALLY_REPLICATION_TRUNCATED);
  expect_reason(message, sizeof(message), TALLY_REPLICATION_MALFORMED);
  /* Magic before version, version before type, type before MAC. */
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_BAD_MAGIC);
  message[OFFSET_MAGIC_0] = TALLY_REPLICATION_MAGIC_0;
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_BAD_VERSION);
  message[OFFSET_VERSION] = TALLY_REPLICATION_VERSION;
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_BAD_MAGIC);
  message[OFFSET_TYPE] = TALLY_REPLICATION_ACK;
  /* MAC before every field behind it. */
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_BAD_MAC);
  resign(message, VECTOR_SIZE);
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_MALFORMED);
  message[OFFSET_RESERVED + 1] = 0;
  resign(message, VECTOR_SIZE);
  expect_reason(message, VECTOR_SIZE, TALLY_REPLICATION_OK);
}

/* ---- Rejections behind the MAC ---------------------------------------------- */

static void test_reject_header_fields(void **state)
{
  (void)state;
  uint8_t message[VECTOR_SIZE];
  /* The reserved word (version 2's classes): any bit set. */
  for (uint32_t bit = 0; bit < 16; bit++) {
    memcpy(message, vector, sizeof(message));
    message[OFFSET_RESERVED + bit / 8] ^= (uint8_t)(1u << (bit % 8));
    expect_malformed_signed(message, sizeof(message));
  }
  /* The class byte (C1): 0 or 1, nothing else. */
  struct tally_replication_message decoded;
  assert_int_equal(decode(vector, sizeof(vector), &decoded), TALLY_REPLICATION_OK);
  assert_int_equal(decoded.entries[0].owner_class, 0);
  assert_int_equal(decoded.entries[1].owner_class, 1);
  for (uint32_t value = 2; value <= UINT8_MAX; value++) {
    memcpy(message, vector, sizeof(message));
    message[value % 2u ? VECTOR_CLASS_0 : VECTOR_CLASS_1] = (uint8_t)value;
    expect_malformed_signed(message, sizeof(message));
  }
  memcpy(message, vector, sizeof(message));
  message[VECTOR_CLASS_0] = 1;
  message[VECTOR_CLASS_1] = 0;
  resign(message, sizeof(message));
  assert_int_equal(decode(message, sizeof(message), &decoded), TALLY_REPLICATION_OK);
  assert_int_equal(decoded.entries[0].owner_class, 1);
  assert_int_equal(decoded.entries[1].owner_class, 0);
  /* Count over the limit (the entries would also be short: count is checked first). */
  const uint16_t counts[] = {TALLY_REPLICATION_ENTRIES_MAX + 1, 0x1000, UINT16_MAX};
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    memcpy(message, vector, sizeof(message));
    put16(message + OFFSET_COUNT, counts[i]);
    expect_malformed_signed(message, sizeof(message));
  }
  /* Every unknown flag bit, alone and beside LAST. */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    memcpy(message, vector, sizeof(message));
    put16(message + OFFSET_FLAGS, (uint16_t)(1u << bit));
    expect_malformed_signed(message, sizeof(message));
    put16(message + OFFSET_FLAGS, (uint16_t)((1u << bit) | TALLY_REPLICATION_FLAG_LAST));
    expect_malformed_signed(message, sizeof(message));
  }
  /*
   * ENTRIES_MAX well-formed 1-byte entries decode; ENTRIES_MAX + 1, all
   * present (the datagram still within the size limit, checked first), do
   * not: only the count is wrong.
   */
  static uint8_t over[TALLY_REPLICATION_SIZE_MAX + 64];
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  memcpy(over, vector, used);
  put16(over + OFFSET_COUNT, TALLY_REPLICATION_ENTRIES_MAX);
  for (uint32_t i = 0; i <= TALLY_REPLICATION_ENTRIES_MAX; i++) {
    memset(over + used, 0, 8);
    over[used + 8] = (uint8_t)(i & 1u);
    over[used + 9] = 1;
    over[used + 10] = 'k';
    used += ENTRY_FIXED_SIZE + 1u;
  }
  size_t full = used - (ENTRY_FIXED_SIZE + 1u) + TALLY_MAC_SIZE;
  assert_true(full <= TALLY_REPLICATION_SIZE_MAX);
  resign(over, full);
  expect_reason(over, full, TALLY_REPLICATION_OK);
  put16(over + OFFSET_COUNT, TALLY_REPLICATION_ENTRIES_MAX + 1);
  resign(over, full);
  expect_reason(over, full, TALLY_REPLICATION_MALFORMED); /* count over the limit */
  /* The one more entry makes the datagram too long: malformed for its size. */
  assert_true(used + TALLY_MAC_SIZE > TALLY_REPLICATION_SIZE_MAX);
  resign(over, used + TALLY_MAC_SIZE);
  expect_reason(over, used + TALLY_MAC_SIZE, TALLY_REPLICATION_MALFORMED);
}

static void test_reject_entries(void **state)
{
  (void)state;
  uint8_t message[VECTOR_SIZE + 1];
  /* Count claims an entry that is not there. */
  memcpy(message, vector, VECTOR_SIZE);
  put16(message + OFFSET_COUNT, 3);
  expect_malformed_signed(message, VECTOR_SIZE);
  /* The last name runs past the body (by one byte, and by its whole length byte). */
  memcpy(message, vector, VECTOR_SIZE);
  message[VECTOR_LEN_1] = 7;
  expect_malformed_signed(message, VECTOR_SIZE);
  message[VECTOR_LEN_1] = 0xff;
  expect_malformed_signed(message, VECTOR_SIZE);
  /* The first name swallows the second entry and beyond. */
  memcpy(message, vector, VECTOR_SIZE);
  message[VECTOR_LEN_0] = 17;
  expect_malformed_signed(message, VECTOR_SIZE);
  /* Every cut of the body: an entry cut inside its value, length or name. */
  for (size_t body_end = TALLY_REPLICATION_HEADER_SIZE; body_end < VECTOR_BODY_END;
       body_end++) {
    memcpy(message, vector, body_end);
    expect_malformed_signed(message, body_end + TALLY_MAC_SIZE);
  }
  /* Count claims fewer entries: trailing bytes. */
  memcpy(message, vector, VECTOR_SIZE);
  put16(message + OFFSET_COUNT, 1);
  expect_malformed_signed(message, VECTOR_SIZE);
  put16(message + OFFSET_COUNT, 0);
  expect_malformed_signed(message, VECTOR_SIZE);
  /* One trailing byte after the last entry. */
  memcpy(message, vector, VECTOR_BODY_END);
  message[VECTOR_BODY_END] = 'z';
  expect_malformed_signed(message, VECTOR_SIZE + 1);
}

static void test_reject_bad_names(void **state)
{
  (void)state;
  uint8_t message[VECTOR_SIZE];
  /* Empty name: the entry lines up, the name does not. */
  memcpy(message, vector, VECTOR_SIZE);
  message[VECTOR_LEN_0] = 0;
  expect_malformed_signed(message, VECTOR_SIZE);
  const uint8_t bad_bytes[] = {' ', ':', '|', '@', '#', 0x7f, 0x00, 0x80, 0xff, '\n'};
  for (size_t i = 0; i < sizeof(bad_bytes); i++) {
    memcpy(message, vector, VECTOR_SIZE);
    message[VECTOR_NAME_0] = bad_bytes[i];
    expect_malformed_signed(message, VECTOR_SIZE);
    memcpy(message, vector, VECTOR_SIZE);
    message[VECTOR_NAME_1 + 5] = bad_bytes[i]; /* last byte of the last name */
    expect_malformed_signed(message, VECTOR_SIZE);
  }
  /* A name of 225 bytes with all its bytes present. */
  struct tally_replication_message fill;
  message_fill(&fill, TALLY_REPLICATION_ROUND, 1, true);
  uint8_t big[TALLY_REPLICATION_HEADER_SIZE + ENTRY_FIXED_SIZE + TALLY_NAME_LEN_MAX + 1u +
    TALLY_MAC_SIZE];
  size_t size = encode_ok(&fill, big, sizeof(big));
  memmove(big + size - TALLY_MAC_SIZE + 1, big + size - TALLY_MAC_SIZE, TALLY_MAC_SIZE);
  big[size - TALLY_MAC_SIZE] = 'q';
  big[TALLY_REPLICATION_HEADER_SIZE + 9] = TALLY_NAME_LEN_MAX + 1;
  resign(big, size + 1);
  expect_reason(big, size + 1, TALLY_REPLICATION_MALFORMED);
  /* Sanity: the same message with its length of 224 and without the 'q' decodes. */
  big[TALLY_REPLICATION_HEADER_SIZE + 9] = TALLY_NAME_LEN_MAX;
  resign(big, size);
  expect_reason(big, size, TALLY_REPLICATION_OK);
}

/* ---- Bit flips, keys, zeroing ------------------------------------------------ */

static void every_bit_flip_rejected(const uint8_t *good, size_t size)
{
  expect_reason(good, size, TALLY_REPLICATION_OK);
  for (size_t byte = 0; byte < size; byte++) {
    for (uint32_t bit = 0; bit < 8; bit++) {
      uint8_t message[TALLY_REPLICATION_SIZE_MAX];
      memcpy(message, good, size);
      message[byte] ^= (uint8_t)(1u << bit);
      enum tally_replication_reason want = TALLY_REPLICATION_BAD_MAC;
      if (byte == OFFSET_MAGIC_0 || byte == OFFSET_MAGIC_1) want = TALLY_REPLICATION_BAD_MAGIC;
      if (byte == OFFSET_VERSION) want = TALLY_REPLICATION_BAD_VERSION;
      if (byte == OFFSET_TYPE && !type_valid(message[byte])) want = TALLY_REPLICATION_BAD_MAGIC;
      expect_reason(message, size, want);
    }
  }
}

static void test_every_bit_flip_rejected(void **state)
{
  (void)state;
  every_bit_flip_rejected(vector, VECTOR_SIZE);
  every_bit_flip_rejected(producer_vector, PRODUCER_VECTOR_SIZE);
  /* A full producer message too (the flips of its records and MAC). */
  struct tally_replication_message message;
  producers_fill(&message, TALLY_REPLICATION_ROUND, TALLY_REPLICATION_PRODUCERS_MAX);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  every_bit_flip_rejected(out, encode_ok(&message, out, sizeof(out)));
  /* Claims: the vector, and a full message of CLAIMS_MAX claims. */
  every_bit_flip_rejected(claim_vector, CLAIM_VECTOR_SIZE);
  claims_fill(&message, TALLY_REPLICATION_CLAIMS_MAX);
  message.flags |= TALLY_REPLICATION_FLAG_LAST;
  every_bit_flip_rejected(out, encode_ok(&message, out, sizeof(out)));
}

static void test_wrong_key(void **state)
{
  (void)state;
  struct tally_replication_message decoded;
  uint8_t other_key[TALLY_KEY_SIZE];
  memset(other_key, 0, sizeof(other_key));
  memset(&decoded, 0x5a, sizeof(decoded));
  assert_int_equal(tally_replication_decode(vector, VECTOR_SIZE, other_key, &decoded),
    TALLY_REPLICATION_BAD_MAC);
  assert_zeroed(&decoded);
  /* Every key one bit away from the right one. */
  for (size_t byte = 0; byte < TALLY_KEY_SIZE; byte++) {
    for (uint32_t bit = 0; bit < 8; bit++) {
      memcpy(other_key, test_key, sizeof(other_key));
      other_key[byte] ^= (uint8_t)(1u << bit);
      memset(&decoded, 0x5a, sizeof(decoded));
      assert_int_equal(tally_replication_decode(vector, VECTOR_SIZE, other_key, &decoded),
        TALLY_REPLICATION_BAD_MAC);
      assert_zeroed(&decoded);
    }
  }
  /* A message signed with another key is refused under ours, and accepted under its own. */
  struct tally_replication_message message;
  vector_message(&message);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  size_t size = tally_replication_encode(&message, other_key, out, sizeof(out));
  assert_int_equal(size, VECTOR_SIZE);
  expect_reason(out, size, TALLY_REPLICATION_BAD_MAC);
  assert_int_equal(tally_replication_decode(out, size, other_key, &decoded),
    TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &message);
}

static void test_decode_failure_clears_previous(void **state)
{
  (void)state;
  struct tally_replication_message decoded;
  assert_int_equal(decode(vector, VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
  assert_int_equal(decoded.count, 2);
  /* A failure after a success into the same struct leaves nothing of the first. */
  uint8_t message[VECTOR_SIZE];
  memcpy(message, vector, VECTOR_SIZE);
  message[VECTOR_NAME_1] = ':'; /* fails on the second entry, after the first decoded */
  resign(message, VECTOR_SIZE);
  assert_int_equal(tally_replication_decode(message, VECTOR_SIZE, test_key, &decoded),
    TALLY_REPLICATION_MALFORMED);
  assert_zeroed(&decoded);
  assert_int_equal(tally_replication_decode(vector, VECTOR_SIZE, test_key, &decoded),
    TALLY_REPLICATION_OK);
  assert_int_equal(tally_replication_decode(vector, 3, test_key, &decoded),
    TALLY_REPLICATION_TRUNCATED);
  assert_zeroed(&decoded);
}

/* ---- Encoder refusals -------------------------------------------------------- */

/* Refused, and nothing written at or past out_size. */
static void expect_refused(const struct tally_replication_message *message, size_t out_size)
{
  static uint8_t out[TALLY_REPLICATION_SIZE_MAX + 64];
  assert_true(out_size <= TALLY_REPLICATION_SIZE_MAX);
  memset(out, 0xcc, sizeof(out));
  assert_int_equal(tally_replication_encode(message, test_key, out, out_size), 0);
  for (size_t i = out_size; i < sizeof(out); i++) assert_int_equal(out[i], 0xcc);
}

static void test_encode_refuses_invalid(void **state)
{
  (void)state;
  struct tally_replication_message good;
  vector_message(&good);
  struct tally_replication_message bad = good;
  const int types[] = {0, TALLY_REPLICATION_TYPE_LAST + 1, 0xff, -1, 0x101};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    bad.type = (enum tally_replication_type)types[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  bad = good;
  const uint32_t counts[] = {TALLY_REPLICATION_ENTRIES_MAX + 1, 0x10000 + 2, UINT32_MAX};
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    bad.count = counts[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* Invalid names in the last entry: empty, too long, bad bytes, no name at all. */
  bad = good;
  bad.entries[1].name_len = 0;
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  bad.entries[1].name = long_name;
  bad.entries[1].name_len = TALLY_NAME_LEN_MAX + 1;
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  bad.entries[1].name_len = 256 + 1; /* would wrap the u8 length to 1 */
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  bad.entries[1].name = "a:b";
  bad.entries[1].name_len = 3;
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  bad.entries[1].name = "a b";
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  bad.entries[1].name = NULL;
  expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  /* An unknown flag: every receiver would refuse the message. */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    bad = good;
    bad.flags = (uint16_t)(1u << bit);
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* Buffer too small by one byte, for every size of message. */
  struct tally_replication_message fill;
  for (uint32_t count = 0; count <= LONGEST_MAX; count++) {
    message_fill(&fill, TALLY_REPLICATION_RESTORE, count, count % 2 == 0);
    uint8_t out[TALLY_REPLICATION_SIZE_MAX];
    size_t size = encode_ok(&fill, out, sizeof(out));
    expect_refused(&fill, size - 1);
    expect_refused(&fill, 0);
  }
  /* The good message still encodes: nothing above was refused for another reason. */
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&good, out, sizeof(out)), VECTOR_SIZE);
}

/* ---- Producer records (flags PRODUCERS) -------------------------------------- */

static void test_producer_vector(void **state)
{
  (void)state;
  struct tally_replication_message message;
  producer_vector_message(&message);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&message, out, sizeof(out)), PRODUCER_VECTOR_SIZE);
  assert_memory_equal(out, producer_vector, PRODUCER_VECTOR_SIZE);
  struct tally_replication_message decoded;
  assert_int_equal(decode(producer_vector, PRODUCER_VECTOR_SIZE, &decoded),
    TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &message);
  /* The entries[] of the message are not looked at: garbage there changes nothing. */
  message.entries[0] = (struct tally_replication_entry){.name = "a:b", .name_len = 3};
  message.entries[1] = (struct tally_replication_entry){.name = NULL, .name_len = 200};
  assert_int_equal(encode_ok(&message, out, sizeof(out)), PRODUCER_VECTOR_SIZE);
  assert_memory_equal(out, producer_vector, PRODUCER_VECTOR_SIZE);
}

static void test_producer_round_trip(void **state)
{
  (void)state;
  const enum tally_replication_type types[] = {TALLY_REPLICATION_ROUND,
    TALLY_REPLICATION_RESTORE};
  const uint32_t counts[] = {0, 1, 2, TALLY_REPLICATION_PRODUCERS_MAX - 1,
    TALLY_REPLICATION_PRODUCERS_MAX};
  static_assert(TALLY_REPLICATION_PRODUCERS_MAX - 1 == 62u, "counts 0, 1, 2, 62, 63");
  for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
      struct tally_replication_message message;
      producers_fill(&message, types[t], counts[c]);
      size_t size_want = TALLY_REPLICATION_HEADER_SIZE +
        counts[c] * TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE;
      round_trip(&message, size_want);
      message.flags |= TALLY_REPLICATION_FLAG_LAST;
      round_trip(&message, size_want);
      /* All header fields zero but the flag. */
      message.origin = 0;
      message.sender = 0;
      message.flags = TALLY_REPLICATION_FLAG_PRODUCERS;
      message.part = 0;
      message.seq = 0;
      message.scan = 0;
      round_trip(&message, size_want);
    }
  }
  struct tally_replication_message full;
  producers_fill(&full, TALLY_REPLICATION_RESTORE, TALLY_REPLICATION_PRODUCERS_MAX);
  round_trip(&full, PRODUCERS_FULL_SIZE);
  /*
   * Little-endian layout of the records, right behind the header: byte b of
   * field k of record i is (k + 1) << 4 ^ i << 3 ^ b, different for every
   * field of a record, every record and every byte, so a swapped field, run,
   * record or byte shows.
   */
  for (uint32_t i = 0; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
    for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
      uint64_t value = 0;
      for (unsigned b = 0; b < 8; b++) {
        value |= (uint64_t)(uint8_t)(((k + 1u) << 4) ^ (i << 3) ^ b) << (8 * b);
      }
      *record_field(&full.producers[i], k) = value;
    }
  }
  full.producers[0].producer = 0x0102030405060708ull;
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&full, out, sizeof(out)), PRODUCERS_FULL_SIZE);
  assert_int_equal(out[OFFSET_COUNT], TALLY_REPLICATION_PRODUCERS_MAX);
  assert_int_equal(out[OFFSET_FLAGS], TALLY_REPLICATION_FLAG_PRODUCERS);
  const size_t record = TALLY_REPLICATION_HEADER_SIZE;
  assert_int_equal(out[record], 0x08);
  assert_int_equal(out[record + 7], 0x01);
  /*
   * Run 0 of record 0 by hand: head_last, head_window[0], head_window[1],
   * last_seq, window; then run 1 starts 40 bytes after run 0.
   */
  assert_true(record_field_offset(0) == 8u && record_field_offset(1) == 16u);
  assert_true(record_field_offset(2) == 24u && record_field_offset(3) == 32u);
  assert_true(record_field_offset(4) == 40u && record_field_offset(5) == 48u);
  assert_true(record_field_offset(7) == 64u && record_field_offset(14) == 120u);
  assert_int_equal(out[record + 8], 0x10);  /* run 0 head_last */
  assert_int_equal(out[record + 15], 0x17);
  assert_int_equal(out[record + 16], 0x20); /* run 0 head_window[0] */
  assert_int_equal(out[record + 23], 0x27);
  assert_int_equal(out[record + 24], 0x30); /* run 0 head_window[1] */
  assert_int_equal(out[record + 31], 0x37);
  assert_int_equal(out[record + 32], 0x40); /* run 0 last_seq */
  assert_int_equal(out[record + 40], 0x50); /* run 0 window */
  assert_int_equal(out[record + 48], 0x60); /* run 1 head_last */
  assert_int_equal(out[record + 56], 0x70); /* run 1 head_window[0] */
  assert_int_equal(out[record + 64], 0x80); /* run 1 head_window[1] */
  assert_int_equal(out[record + 104], 0xd0); /* run 2 head_window[1] */
  /* Run 2's window: the last 8 bytes of the record. */
  assert_int_equal(out[record + 120], 0xf0);
  assert_int_equal(out[record + 127], 0xf7);
  for (uint32_t i = 0; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
    const size_t at = TALLY_REPLICATION_HEADER_SIZE + (size_t)i * TALLY_REPLICATION_PRODUCER_SIZE;
    for (unsigned b = 0; b < 8; b++) {
      assert_int_equal(out[at + b], (uint8_t)(full.producers[i].producer >> (8 * b)));
    }
    for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
      for (unsigned b = 0; b < 8; b++) {
        assert_int_equal(out[at + record_field_offset(k) + b],
          (uint8_t)(((k + 1u) << 4) ^ (i << 3) ^ b));
      }
    }
  }
  /* The next record right behind it: its id, not a sixteenth field of this one. */
  const size_t next = record + TALLY_REPLICATION_PRODUCER_SIZE;
  assert_true(next == TALLY_REPLICATION_HEADER_SIZE + 128u);
  for (unsigned i = 0; i < 8; i++) {
    assert_int_equal(out[next + i], (uint8_t)(full.producers[1].producer >> (8 * i)));
  }
  /* And back: the decoder puts every byte where the encoder took it from. */
  struct tally_replication_message decoded;
  assert_int_equal(decode(out, PRODUCERS_FULL_SIZE, &decoded), TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &full);
}

/* Every count 0 .. PRODUCERS_MAX: the body is exactly count x 128 bytes, no more, no less. */
static void test_producer_exact_lengths(void **state)
{
  (void)state;
  static uint8_t message[TALLY_REPLICATION_SIZE_MAX + TALLY_REPLICATION_PRODUCER_SIZE];
  for (uint32_t count = 0; count <= TALLY_REPLICATION_PRODUCERS_MAX; count++) {
    struct tally_replication_message fill;
    producers_fill(&fill, count % 2 == 0 ? TALLY_REPLICATION_RESTORE : TALLY_REPLICATION_ROUND,
      count);
    size_t size = encode_ok(&fill, message, TALLY_REPLICATION_SIZE_MAX);
    const size_t body_end = TALLY_REPLICATION_HEADER_SIZE + count * TALLY_REPLICATION_PRODUCER_SIZE;
    assert_int_equal(size, body_end + TALLY_MAC_SIZE);
    struct tally_replication_message decoded;
    assert_int_equal(decode(message, size, &decoded), TALLY_REPLICATION_OK);
    assert_message_equal(&decoded, &fill);
    uint8_t body[TALLY_REPLICATION_SIZE_MAX + TALLY_REPLICATION_PRODUCER_SIZE];
    memcpy(body, message, body_end);
    /* One byte short, one byte over, one record short, one record over. */
    const size_t lengths[] = {body_end - 1, body_end + 1,
      body_end - (count > 0 ? TALLY_REPLICATION_PRODUCER_SIZE : 1),
      body_end + TALLY_REPLICATION_PRODUCER_SIZE};
    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
      if (lengths[l] < TALLY_REPLICATION_HEADER_SIZE) continue;
      memcpy(message, body, body_end);
      if (lengths[l] > body_end) memset(message + body_end, 0x01, lengths[l] - body_end);
      size_t wrong = lengths[l] + TALLY_MAC_SIZE;
      if (wrong > TALLY_REPLICATION_SIZE_MAX) {
        /* Refused for its size before the MAC is looked at. */
        resign(message, wrong);
        expect_reason(message, wrong, TALLY_REPLICATION_MALFORMED);
        continue;
      }
      expect_malformed_signed(message, wrong);
    }
    /* The count off by one either way over the right body. */
    memcpy(message, body, body_end);
    resign(message, size);
    if (count > 0) {
      put16(message + OFFSET_COUNT, (uint16_t)(count - 1));
      expect_malformed_signed(message, size);
    }
    put16(message + OFFSET_COUNT, (uint16_t)(count + 1));
    expect_malformed_signed(message, size);
  }
}

static void test_producer_encode_refuses(void **state)
{
  (void)state;
  struct tally_replication_message good;
  producers_fill(&good, TALLY_REPLICATION_ROUND, TALLY_REPLICATION_PRODUCERS_MAX);
  struct tally_replication_message bad = good;
  /* More records than fit the limit (even though the struct has no room for them). */
  static_assert(TALLY_REPLICATION_PRODUCERS_MAX + 1 == 64u, "64 records refused");
  const uint32_t counts[] = {TALLY_REPLICATION_PRODUCERS_MAX + 1, 0x10000 + 1, UINT32_MAX};
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    bad.count = counts[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* PRODUCERS on every other type, valid or not. */
  const int types[] = {TALLY_REPLICATION_ACK, TALLY_REPLICATION_RESTORE_REQUEST,
    TALLY_REPLICATION_READ_REQUEST, TALLY_REPLICATION_READ_REPLY, 0,
    TALLY_REPLICATION_TYPE_LAST + 1};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    bad = good;
    bad.type = (enum tally_replication_type)types[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.count = 0;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* A producer id of 0 or UINT64_MAX, in the first, a middle or the last record. */
  const uint64_t ids[] = {0, UINT64_MAX};
  const uint32_t at[] = {0, TALLY_REPLICATION_PRODUCERS_MAX / 2,
    TALLY_REPLICATION_PRODUCERS_MAX - 1};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
    for (size_t j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
      bad = good;
      bad.producers[at[j]].producer = ids[i];
      expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    }
  }
  /* ... but not in a record beyond count. */
  bad = good;
  bad.count = 1;
  bad.producers[1].producer = 0;
  bad.producers[2].producer = UINT64_MAX;
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&bad, out, sizeof(out)),
    TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE);
  /* An unknown flag beside PRODUCERS (and beside PRODUCERS | LAST). */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    bad = good;
    bad.flags = (uint16_t)(TALLY_REPLICATION_FLAG_PRODUCERS | (1u << bit));
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.flags |= TALLY_REPLICATION_FLAG_LAST;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* Buffer too small by one byte, for every count. */
  for (uint32_t count = 0; count <= TALLY_REPLICATION_PRODUCERS_MAX; count++) {
    struct tally_replication_message fill;
    producers_fill(&fill, count % 2 == 0 ? TALLY_REPLICATION_ROUND : TALLY_REPLICATION_RESTORE,
      count);
    size_t size = encode_ok(&fill, out, sizeof(out));
    assert_int_equal(size,
      TALLY_REPLICATION_HEADER_SIZE + count * TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE);
    expect_refused(&fill, size - 1);
    expect_refused(&fill, TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE - 1);
    expect_refused(&fill, 0);
  }
  /* The good message still encodes: nothing above was refused for another reason. */
  assert_int_equal(encode_ok(&good, out, sizeof(out)), PRODUCERS_FULL_SIZE);
}

/* Every check behind the MAC, on datagrams signed again after the edit. */
static void test_producer_decode_rejects(void **state)
{
  (void)state;
  static uint8_t message[TALLY_REPLICATION_SIZE_MAX];
  /* Wrong length: every cut of the body, and one to 128 bytes (a record) too many. */
  for (size_t body_end = TALLY_REPLICATION_HEADER_SIZE; body_end < PRODUCER_VECTOR_BODY_END;
       body_end++) {
    memcpy(message, producer_vector, body_end);
    expect_malformed_signed(message, body_end + TALLY_MAC_SIZE);
  }
  for (size_t extra = 1; extra <= TALLY_REPLICATION_PRODUCER_SIZE; extra++) {
    memcpy(message, producer_vector, PRODUCER_VECTOR_BODY_END);
    memset(message + PRODUCER_VECTOR_BODY_END, 0x11, extra);
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE + extra);
    /* With the count raised to match, the extra record decodes (if it is whole). */
    if (extra == TALLY_REPLICATION_PRODUCER_SIZE) {
      put16(message + OFFSET_COUNT, 3);
      resign(message, PRODUCER_VECTOR_SIZE + extra);
      expect_reason(message, PRODUCER_VECTOR_SIZE + extra, TALLY_REPLICATION_OK);
    }
  }
  /* Count off by one either way, or zero with records behind it. */
  const uint16_t wrong_counts[] = {0, 1, 3, TALLY_REPLICATION_PRODUCERS_MAX};
  for (size_t i = 0; i < sizeof(wrong_counts) / sizeof(wrong_counts[0]); i++) {
    memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
    put16(message + OFFSET_COUNT, wrong_counts[i]);
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
  }
  /* A bad producer id in either record. */
  const size_t id_at[] = {PRODUCER_VECTOR_ID_0, PRODUCER_VECTOR_ID_1};
  for (size_t i = 0; i < sizeof(id_at) / sizeof(id_at[0]); i++) {
    memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
    memset(message + id_at[i], 0x00, 8);
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
    memset(message + id_at[i], 0xff, 8);
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
    /* Sanity: one bit away from UINT64_MAX is a valid id. */
    message[id_at[i]] = 0xfe;
    resign(message, PRODUCER_VECTOR_SIZE);
    expect_reason(message, PRODUCER_VECTOR_SIZE, TALLY_REPLICATION_OK);
  }
  /*
   * Every run field (head_last, both head_window words, last_seq, window of each run)
   * takes any value, 0 and UINT64_MAX included, and lands in that field alone.
   */
  struct tally_replication_message want_message;
  producer_vector_message(&want_message);
  for (size_t i = 0; i < sizeof(id_at) / sizeof(id_at[0]); i++) {
    for (uint32_t k = 0; k < RECORD_FIELDS; k++) {
      const uint64_t fills[] = {0, UINT64_MAX, 0x0011223344556677ull ^ k};
      for (size_t f = 0; f < sizeof(fills) / sizeof(fills[0]); f++) {
        memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
        for (unsigned b = 0; b < 8; b++) {
          message[id_at[i] + record_field_offset(k) + b] = (uint8_t)(fills[f] >> (8 * b));
        }
        resign(message, PRODUCER_VECTOR_SIZE);
        struct tally_replication_message decoded;
        assert_int_equal(decode(message, PRODUCER_VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
        struct tally_replication_message want = want_message;
        *record_field(&want.producers[i], k) = fills[f];
        assert_message_equal(&decoded, &want);
      }
    }
  }
  /* PRODUCERS on a type that does not carry records. */
  for (uint8_t type = TALLY_REPLICATION_ROUND; type <= TALLY_REPLICATION_TYPE_LAST; type++) {
    memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
    message[OFFSET_TYPE] = type;
    resign(message, PRODUCER_VECTOR_SIZE);
    bool allowed = type == TALLY_REPLICATION_ROUND || type == TALLY_REPLICATION_RESTORE;
    expect_reason(message, PRODUCER_VECTOR_SIZE,
      allowed ? TALLY_REPLICATION_OK : TALLY_REPLICATION_MALFORMED);
    /* Not even with no records. */
    put16(message + OFFSET_COUNT, 0);
    resign(message, SIZE_MIN);
    expect_reason(message, SIZE_MIN,
      allowed ? TALLY_REPLICATION_OK : TALLY_REPLICATION_MALFORMED);
    if (!allowed) {
      /* Without the flag the same empty message is fine. */
      put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_LAST);
      resign(message, SIZE_MIN);
      expect_reason(message, SIZE_MIN, TALLY_REPLICATION_OK);
    }
  }
  /* Every unknown flag beside PRODUCERS. */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
    put16(message + OFFSET_FLAGS, (uint16_t)(TALLY_REPLICATION_FLAG_PRODUCERS | (1u << bit)));
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
  }
  /* Reserved field not zero. */
  memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
  message[OFFSET_RESERVED + 1] = 0x80;
  expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
  /* Records read as counter entries (flag dropped), and entries read as records. */
  memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_LAST);
  expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
  memcpy(message, vector, VECTOR_SIZE);
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_PRODUCERS);
  expect_malformed_signed(message, VECTOR_SIZE);
  /*
   * PRODUCERS_MAX + 1 valid records, all present: over the count, and too big
   * for a datagram (refused before the MAC).
   */
  struct tally_replication_message fill;
  producers_fill(&fill, TALLY_REPLICATION_ROUND, TALLY_REPLICATION_PRODUCERS_MAX);
  size_t size = encode_ok(&fill, message, sizeof(message));
  assert_int_equal(size, PRODUCERS_FULL_SIZE);
  size_t body_end = size - TALLY_MAC_SIZE;
  static uint8_t over_size[PRODUCERS_FULL_SIZE + TALLY_REPLICATION_PRODUCER_SIZE];
  memcpy(over_size, message, body_end);
  memcpy(over_size + body_end, message + TALLY_REPLICATION_HEADER_SIZE,
    TALLY_REPLICATION_PRODUCER_SIZE);
  put16(over_size + OFFSET_COUNT, TALLY_REPLICATION_PRODUCERS_MAX + 1);
  resign(over_size, sizeof(over_size));
  assert_true(sizeof(over_size) > TALLY_REPLICATION_SIZE_MAX);
  expect_reason(over_size, sizeof(over_size), TALLY_REPLICATION_MALFORMED);
  /* A count over the limit over a full body that fits: refused for the count. */
  const uint16_t over[] = {TALLY_REPLICATION_PRODUCERS_MAX + 1, UINT16_MAX};
  for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
    size = encode_ok(&fill, message, sizeof(message));
    put16(message + OFFSET_COUNT, over[i]);
    expect_malformed_signed(message, size);
  }
  /* A full message of PRODUCERS_MAX records decodes. */
  size = encode_ok(&fill, message, sizeof(message));
  expect_reason(message, size, TALLY_REPLICATION_OK);
  /* A failure on the last record leaves nothing of the records decoded before it. */
  memset(message + body_end - TALLY_REPLICATION_PRODUCER_SIZE, 0, 8);
  expect_malformed_signed(message, size);
}

/* ---- Claims (flags CLAIMS) ---------------------------------------------------- */

static void put64_at(uint8_t *out, uint64_t value)
{
  for (unsigned b = 0; b < 8; b++) out[b] = (uint8_t)(value >> (8 * b));
}

static void test_claim_vector(void **state)
{
  (void)state;
  struct tally_replication_message message;
  claim_vector_message(&message);
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&message, out, sizeof(out)), CLAIM_VECTOR_SIZE);
  assert_memory_equal(out, claim_vector, CLAIM_VECTOR_SIZE);
  struct tally_replication_message decoded;
  assert_int_equal(decode(claim_vector, CLAIM_VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &message);
  /* Neither entries[] nor producers[] are looked at: garbage there changes nothing. */
  message.entries[0] = (struct tally_replication_entry){.name = "a:b", .name_len = 3};
  message.entries[1] = (struct tally_replication_entry){.name = NULL, .name_len = 200};
  message.producers[0].producer = 0;
  message.producers[1].producer = UINT64_MAX;
  /* Nor claims beyond count. */
  message.claims[CLAIM_VECTOR_COUNT] = (struct tally_replication_claim){.producer = 0};
  message.claims[TALLY_REPLICATION_CLAIMS_MAX - 1] =
    (struct tally_replication_claim){.producer = UINT64_MAX, .attempt = 0};
  assert_int_equal(encode_ok(&message, out, sizeof(out)), CLAIM_VECTOR_SIZE);
  assert_memory_equal(out, claim_vector, CLAIM_VECTOR_SIZE);
}

static void test_claim_round_trip(void **state)
{
  (void)state;
  const uint32_t counts[] = {0, 1, 2, TALLY_REPLICATION_CLAIMS_MAX - 1,
    TALLY_REPLICATION_CLAIMS_MAX};
  static_assert(TALLY_REPLICATION_CLAIMS_MAX - 1 == 337u, "counts 0, 1, 2, 337, 338");
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    struct tally_replication_message message;
    claims_fill(&message, counts[c]);
    size_t size_want = TALLY_REPLICATION_HEADER_SIZE +
      counts[c] * TALLY_REPLICATION_CLAIM_SIZE + TALLY_MAC_SIZE;
    round_trip(&message, size_want);
    message.flags |= TALLY_REPLICATION_FLAG_LAST;
    round_trip(&message, size_want);
    /* All header fields zero but the flag. */
    message.origin = 0;
    message.sender = 0;
    message.flags = TALLY_REPLICATION_FLAG_CLAIMS;
    message.part = 0;
    message.seq = 0;
    message.scan = 0;
    round_trip(&message, size_want);
  }
  struct tally_replication_message full;
  claims_fill(&full, TALLY_REPLICATION_CLAIMS_MAX);
  full.flags |= TALLY_REPLICATION_FLAG_LAST;
  round_trip(&full, CLAIMS_FULL_SIZE);
  /*
   * Little-endian layout right behind the header: byte b of field k (producer,
   * seq, attempt) of claim i is (k + 1) << 6 ^ i ^ b << 3 for producer and seq;
   * the attempt (at most 16 bits) has bytes 0 and 1 only.
   */
  for (uint32_t i = 0; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
    const uint32_t j = i % 48u; /* the pattern repeats: ids and attempts stay valid */
    uint64_t fields[2] = {0, 0};
    for (uint32_t k = 0; k < 2; k++) {
      for (unsigned b = 0; b < 8; b++) {
        fields[k] |= (uint64_t)(uint8_t)(((k + 1u) << 6) ^ j ^ (b << 3)) << (8 * b);
      }
    }
    full.claims[i].producer = fields[0];
    full.claims[i].seq = fields[1];
    full.claims[i].attempt = 0xc000u ^ (j << 8) ^ (j + 1u);
  }
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  assert_int_equal(encode_ok(&full, out, sizeof(out)), CLAIMS_FULL_SIZE);
  assert_int_equal(out[OFFSET_TYPE], TALLY_REPLICATION_ROUND);
  assert_int_equal(out[OFFSET_COUNT], TALLY_REPLICATION_CLAIMS_MAX & 0xffu);
  assert_int_equal(out[OFFSET_COUNT + 1], TALLY_REPLICATION_CLAIMS_MAX >> 8);
  assert_int_equal(out[OFFSET_FLAGS], TALLY_REPLICATION_FLAG_CLAIMS | TALLY_REPLICATION_FLAG_LAST);
  assert_int_equal(out[OFFSET_FLAGS + 1], 0);
  for (uint32_t i = 0; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
    const size_t at = CLAIM_AT(i);
    const uint32_t j = i % 48u;
    for (unsigned b = 0; b < 8; b++) {
      assert_int_equal(out[at + CLAIM_PRODUCER + b], (uint8_t)((1u << 6) ^ j ^ (b << 3)));
      assert_int_equal(out[at + CLAIM_SEQ + b], (uint8_t)((2u << 6) ^ j ^ (b << 3)));
    }
    assert_int_equal(out[at + CLAIM_ATTEMPT], (uint8_t)(j + 1u));
    assert_int_equal(out[at + CLAIM_ATTEMPT + 1], (uint8_t)(0xc0u ^ j));
    for (unsigned b = 2; b < 8; b++) assert_int_equal(out[at + CLAIM_ATTEMPT + b], 0);
  }
  /* The last claim ends where the MAC starts. */
  assert_true(CLAIM_AT(TALLY_REPLICATION_CLAIMS_MAX) == CLAIMS_FULL_SIZE - TALLY_MAC_SIZE);
  struct tally_replication_message decoded;
  assert_int_equal(decode(out, CLAIMS_FULL_SIZE, &decoded), TALLY_REPLICATION_OK);
  assert_message_equal(&decoded, &full);
}

/* Every count 0 .. CLAIMS_MAX: the body is exactly count x 24 bytes, no more, no less. */
static void test_claim_exact_lengths(void **state)
{
  (void)state;
  static uint8_t message[TALLY_REPLICATION_SIZE_MAX + 64];
  for (uint32_t count = 0; count <= TALLY_REPLICATION_CLAIMS_MAX; count++) {
    struct tally_replication_message fill;
    claims_fill(&fill, count);
    if (count % 2 == 1) fill.flags |= TALLY_REPLICATION_FLAG_LAST;
    size_t size = encode_ok(&fill, message, TALLY_REPLICATION_SIZE_MAX);
    const size_t body_end = CLAIM_AT(count);
    assert_int_equal(size, body_end + TALLY_MAC_SIZE);
    struct tally_replication_message decoded;
    assert_int_equal(decode(message, size, &decoded), TALLY_REPLICATION_OK);
    assert_message_equal(&decoded, &fill);
    uint8_t body[TALLY_REPLICATION_SIZE_MAX];
    memcpy(body, message, body_end);
    /* One byte short, one byte over, one claim short, one claim over. */
    const size_t lengths[] = {body_end - 1, body_end + 1,
      body_end - (count > 0 ? TALLY_REPLICATION_CLAIM_SIZE : 1),
      body_end + TALLY_REPLICATION_CLAIM_SIZE};
    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
      if (lengths[l] < TALLY_REPLICATION_HEADER_SIZE) continue;
      memcpy(message, body, body_end);
      /* Valid claim bytes (id 1, seq 1, attempt 1) if it were a whole claim. */
      for (size_t at = body_end; at < lengths[l]; at++) {
        message[at] = (uint8_t)((at - body_end) % 8 == 0 ? 1 : 0);
      }
      if (lengths[l] + TALLY_MAC_SIZE > TALLY_REPLICATION_SIZE_MAX) { /* too long: refused */
        resign(message, lengths[l] + TALLY_MAC_SIZE);
        expect_reason(message, lengths[l] + TALLY_MAC_SIZE, TALLY_REPLICATION_MALFORMED);
        continue;
      }
      expect_malformed_signed(message, lengths[l] + TALLY_MAC_SIZE);
    }
    /* The count off by one either way over the right body. */
    memcpy(message, body, body_end);
    resign(message, size);
    if (count > 0) {
      put16(message + OFFSET_COUNT, (uint16_t)(count - 1));
      expect_malformed_signed(message, size);
    }
    put16(message + OFFSET_COUNT, (uint16_t)(count + 1));
    expect_malformed_signed(message, size);
  }
}

static void test_claim_encode_refuses(void **state)
{
  (void)state;
  uint8_t out[TALLY_REPLICATION_SIZE_MAX];
  struct tally_replication_message good;
  claims_fill(&good, TALLY_REPLICATION_CLAIMS_MAX);
  struct tally_replication_message bad = good;
  /* More claims than the limit (even though the struct has no room for them). */
  static_assert(TALLY_REPLICATION_CLAIMS_MAX + 1 == 339u, "339 claims refused");
  const uint32_t counts[] = {TALLY_REPLICATION_CLAIMS_MAX + 1, 0x10000 + 1, UINT32_MAX};
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    bad.count = counts[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* CLAIMS on every other type, valid or not, with claims and with none, with and without LAST. */
  const int types[] = {TALLY_REPLICATION_ACK, TALLY_REPLICATION_RESTORE_REQUEST,
    TALLY_REPLICATION_RESTORE, TALLY_REPLICATION_READ_REQUEST, TALLY_REPLICATION_READ_REPLY, 0,
    TALLY_REPLICATION_TYPE_LAST + 1};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    bad = good;
    bad.type = (enum tally_replication_type)types[i];
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.count = 0;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.flags |= TALLY_REPLICATION_FLAG_LAST;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* CLAIMS beside PRODUCERS: on ROUND and RESTORE, with claims, records or nothing. */
  const enum tally_replication_type both_types[] = {TALLY_REPLICATION_ROUND,
    TALLY_REPLICATION_RESTORE};
  for (size_t i = 0; i < sizeof(both_types) / sizeof(both_types[0]); i++) {
    producers_fill(&bad, both_types[i], 2);
    bad.claims[0] = good.claims[0];
    bad.claims[1] = good.claims[1];
    /* Sanity: the records alone encode. */
    assert_int_equal(encode_ok(&bad, out, sizeof(out)),
      TALLY_REPLICATION_HEADER_SIZE + 2 * TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE);
    bad.flags |= TALLY_REPLICATION_FLAG_CLAIMS;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.flags |= TALLY_REPLICATION_FLAG_LAST;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.count = 0;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* A producer id of 0 or above TALLY_PRODUCER_ID_MAX (an undone record's id,
   * the tombstone), in the first, a middle or the last claim. */
  const uint32_t at[] = {0, TALLY_REPLICATION_CLAIMS_MAX / 2, TALLY_REPLICATION_CLAIMS_MAX - 1};
  const uint64_t ids[] = {0, TALLY_PRODUCER_ID_MAX + 1u, TALLY_PRODUCER_UNDONE_BIT | 1u,
    UINT64_MAX};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
    for (size_t j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
      bad = good;
      bad.claims[at[j]].producer = ids[i];
      expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    }
  }
  /* An attempt of 0 or above UINT16_MAX, likewise; 1 and UINT16_MAX are fine. */
  const uint64_t bad_attempts[] = {0, (uint64_t)UINT16_MAX + 1, 0x10001, 1ull << 32,
    (1ull << 63) | 1, UINT64_MAX};
  for (size_t i = 0; i < sizeof(bad_attempts) / sizeof(bad_attempts[0]); i++) {
    for (size_t j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
      bad = good;
      bad.claims[at[j]].attempt = bad_attempts[i];
      expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    }
  }
  const uint64_t good_attempts[] = {1, UINT16_MAX};
  for (size_t i = 0; i < sizeof(good_attempts) / sizeof(good_attempts[0]); i++) {
    bad = good;
    for (uint32_t j = 0; j < bad.count; j++) bad.claims[j].attempt = good_attempts[i];
    assert_int_equal(encode_ok(&bad, out, sizeof(out)), CLAIMS_FULL_SIZE);
    struct tally_replication_message decoded;
    assert_int_equal(decode(out, CLAIMS_FULL_SIZE, &decoded), TALLY_REPLICATION_OK);
    assert_message_equal(&decoded, &bad);
  }
  /* ... but not in a claim beyond count. */
  bad = good;
  bad.count = 1;
  bad.claims[1] = (struct tally_replication_claim){.producer = 0, .attempt = 0};
  bad.claims[2] = (struct tally_replication_claim){.producer = UINT64_MAX, .attempt = 1u << 16};
  assert_int_equal(encode_ok(&bad, out, sizeof(out)), CLAIM_AT(1) + TALLY_MAC_SIZE);
  /* An unknown flag beside CLAIMS (and beside CLAIMS | LAST). */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    bad = good;
    bad.flags = (uint16_t)(TALLY_REPLICATION_FLAG_CLAIMS | (1u << bit));
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
    bad.flags |= TALLY_REPLICATION_FLAG_LAST;
    expect_refused(&bad, TALLY_REPLICATION_SIZE_MAX);
  }
  /* Buffer too small by one byte, for every count. */
  for (uint32_t count = 0; count <= TALLY_REPLICATION_CLAIMS_MAX; count++) {
    struct tally_replication_message fill;
    claims_fill(&fill, count);
    size_t size = encode_ok(&fill, out, sizeof(out));
    assert_int_equal(size, CLAIM_AT(count) + TALLY_MAC_SIZE);
    expect_refused(&fill, size - 1);
    expect_refused(&fill, TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE - 1);
    expect_refused(&fill, 0);
  }
  /* The good message still encodes: nothing above was refused for another reason. */
  assert_int_equal(encode_ok(&good, out, sizeof(out)), CLAIMS_FULL_SIZE);
}

/* Every check behind the MAC, on datagrams signed again after the edit. */
static void test_claim_decode_rejects(void **state)
{
  (void)state;
  static uint8_t message[TALLY_REPLICATION_SIZE_MAX];
  /* Wrong length: every cut of the body, and one to 24 bytes (a claim) too many. */
  for (size_t body_end = TALLY_REPLICATION_HEADER_SIZE; body_end < CLAIM_VECTOR_BODY_END;
       body_end++) {
    memcpy(message, claim_vector, body_end);
    expect_malformed_signed(message, body_end + TALLY_MAC_SIZE);
  }
  for (size_t extra = 1; extra <= TALLY_REPLICATION_CLAIM_SIZE; extra++) {
    memcpy(message, claim_vector, CLAIM_VECTOR_BODY_END);
    memset(message + CLAIM_VECTOR_BODY_END, 0x01, extra);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE + extra);
    /*
     * With the count raised to match, the extra claim is read (if it is
     * whole): its attempt 0x0101010101010101 is over the limit, and once cut
     * to 0x0101 it decodes.
     */
    if (extra == TALLY_REPLICATION_CLAIM_SIZE) {
      put16(message + OFFSET_COUNT, CLAIM_VECTOR_COUNT + 1);
      expect_malformed_signed(message, CLAIM_VECTOR_SIZE + extra);
      memset(message + CLAIM_AT(CLAIM_VECTOR_COUNT) + CLAIM_ATTEMPT + 2, 0, 6);
      resign(message, CLAIM_VECTOR_SIZE + extra);
      struct tally_replication_message decoded;
      assert_int_equal(decode(message, CLAIM_VECTOR_SIZE + extra, &decoded),
        TALLY_REPLICATION_OK);
      struct tally_replication_message want;
      claim_vector_message(&want);
      want.count = CLAIM_VECTOR_COUNT + 1;
      want.claims[CLAIM_VECTOR_COUNT] = (struct tally_replication_claim){
        .producer = 0x0101010101010101ull, .seq = 0x0101010101010101ull, .attempt = 0x0101};
      assert_message_equal(&decoded, &want);
    }
  }
  /* Count off by one either way, zero with claims behind it, or the limit. */
  const uint16_t wrong_counts[] = {0, CLAIM_VECTOR_COUNT - 1, CLAIM_VECTOR_COUNT + 1,
    TALLY_REPLICATION_CLAIMS_MAX};
  for (size_t i = 0; i < sizeof(wrong_counts) / sizeof(wrong_counts[0]); i++) {
    memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
    put16(message + OFFSET_COUNT, wrong_counts[i]);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
  }
  /* A bad producer id in any claim (0, the top half: undone records and the
   * tombstone); TALLY_PRODUCER_ID_MAX itself is valid. */
  for (uint32_t i = 0; i < CLAIM_VECTOR_COUNT; i++) {
    memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
    put64_at(message + CLAIM_AT(i) + CLAIM_PRODUCER, 0);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
    put64_at(message + CLAIM_AT(i) + CLAIM_PRODUCER, UINT64_MAX);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
    put64_at(message + CLAIM_AT(i) + CLAIM_PRODUCER, TALLY_PRODUCER_ID_MAX + 1u);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
    put64_at(message + CLAIM_AT(i) + CLAIM_PRODUCER, TALLY_PRODUCER_ID_MAX);
    resign(message, CLAIM_VECTOR_SIZE);
    expect_reason(message, CLAIM_VECTOR_SIZE, TALLY_REPLICATION_OK);
  }
  /* Attempts: 0 and anything above UINT16_MAX refused, 1 and UINT16_MAX accepted. */
  struct tally_replication_message want_message;
  claim_vector_message(&want_message);
  const uint64_t bad_attempts[] = {0, (uint64_t)UINT16_MAX + 1, 0x10001, 1ull << 32,
    (1ull << 63) | 1, UINT64_MAX};
  const uint64_t good_attempts[] = {1, 2, 0x0100, UINT16_MAX - 1, UINT16_MAX};
  for (uint32_t i = 0; i < CLAIM_VECTOR_COUNT; i++) {
    for (size_t a = 0; a < sizeof(bad_attempts) / sizeof(bad_attempts[0]); a++) {
      memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
      put64_at(message + CLAIM_AT(i) + CLAIM_ATTEMPT, bad_attempts[a]);
      expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
    }
    for (size_t a = 0; a < sizeof(good_attempts) / sizeof(good_attempts[0]); a++) {
      memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
      put64_at(message + CLAIM_AT(i) + CLAIM_ATTEMPT, good_attempts[a]);
      resign(message, CLAIM_VECTOR_SIZE);
      struct tally_replication_message decoded;
      assert_int_equal(decode(message, CLAIM_VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
      struct tally_replication_message want = want_message;
      want.claims[i].attempt = good_attempts[a];
      assert_message_equal(&decoded, &want);
    }
    /* The seq takes any value, and lands in that claim's seq alone. */
    const uint64_t seqs[] = {0, UINT64_MAX, 0x0011223344556677ull ^ i};
    for (size_t f = 0; f < sizeof(seqs) / sizeof(seqs[0]); f++) {
      memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
      put64_at(message + CLAIM_AT(i) + CLAIM_SEQ, seqs[f]);
      resign(message, CLAIM_VECTOR_SIZE);
      struct tally_replication_message decoded;
      assert_int_equal(decode(message, CLAIM_VECTOR_SIZE, &decoded), TALLY_REPLICATION_OK);
      struct tally_replication_message want = want_message;
      want.claims[i].seq = seqs[f];
      assert_message_equal(&decoded, &want);
    }
  }
  /* CLAIMS on every type but ROUND, with the claims and with none. */
  for (uint8_t type = TALLY_REPLICATION_ROUND; type <= TALLY_REPLICATION_TYPE_LAST; type++) {
    memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
    message[OFFSET_TYPE] = type;
    resign(message, CLAIM_VECTOR_SIZE);
    bool allowed = type == TALLY_REPLICATION_ROUND;
    expect_reason(message, CLAIM_VECTOR_SIZE,
      allowed ? TALLY_REPLICATION_OK : TALLY_REPLICATION_MALFORMED);
    put16(message + OFFSET_COUNT, 0);
    resign(message, SIZE_MIN);
    expect_reason(message, SIZE_MIN, allowed ? TALLY_REPLICATION_OK : TALLY_REPLICATION_MALFORMED);
    /* Without the flag the same empty message is fine. */
    put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_LAST);
    resign(message, SIZE_MIN);
    expect_reason(message, SIZE_MIN, TALLY_REPLICATION_OK);
  }
  /* CLAIMS beside PRODUCERS: over claims, over records, over nothing; ROUND and RESTORE. */
  const uint8_t both_types[] = {TALLY_REPLICATION_ROUND, TALLY_REPLICATION_RESTORE};
  for (size_t t = 0; t < sizeof(both_types); t++) {
    memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
    message[OFFSET_TYPE] = both_types[t];
    put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_CLAIMS | TALLY_REPLICATION_FLAG_PRODUCERS);
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
    memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
    message[OFFSET_TYPE] = both_types[t];
    resign(message, PRODUCER_VECTOR_SIZE);
    expect_reason(message, PRODUCER_VECTOR_SIZE, TALLY_REPLICATION_OK);
    put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_CLAIMS |
      TALLY_REPLICATION_FLAG_PRODUCERS | TALLY_REPLICATION_FLAG_LAST);
    expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
    put16(message + OFFSET_COUNT, 0);
    expect_malformed_signed(message, SIZE_MIN);
  }
  /* Every unknown flag beside CLAIMS. */
  for (uint32_t bit = 0; bit < 16; bit++) {
    if (((1u << bit) & FLAGS_UNKNOWN) == 0) continue;
    memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
    put16(message + OFFSET_FLAGS, (uint16_t)(TALLY_REPLICATION_FLAG_CLAIMS | (1u << bit)));
    expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
  }
  /* Reserved field not zero. */
  memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
  message[OFFSET_RESERVED] = 0x01;
  expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
  /* Claims read as counter entries or records (flag swapped), entries read as claims. */
  memcpy(message, claim_vector, CLAIM_VECTOR_SIZE);
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_LAST);
  expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_PRODUCERS);
  expect_malformed_signed(message, CLAIM_VECTOR_SIZE);
  memcpy(message, vector, VECTOR_SIZE);
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_CLAIMS);
  expect_malformed_signed(message, VECTOR_SIZE);
  memcpy(message, producer_vector, PRODUCER_VECTOR_SIZE);
  message[OFFSET_TYPE] = TALLY_REPLICATION_ROUND;
  put16(message + OFFSET_FLAGS, TALLY_REPLICATION_FLAG_CLAIMS);
  expect_malformed_signed(message, PRODUCER_VECTOR_SIZE);
  /*
   * CLAIMS_MAX + 1 valid claims, all present: the datagram is over the size
   * limit (refused before the MAC). And a count far over it.
   */
  struct tally_replication_message fill;
  claims_fill(&fill, TALLY_REPLICATION_CLAIMS_MAX);
  size_t size = encode_ok(&fill, message, sizeof(message));
  assert_int_equal(size, CLAIMS_FULL_SIZE);
  expect_reason(message, size, TALLY_REPLICATION_OK);
  size_t body_end = size - TALLY_MAC_SIZE;
  static uint8_t over[CLAIMS_FULL_SIZE + TALLY_REPLICATION_CLAIM_SIZE];
  memcpy(over, message, body_end);
  memcpy(over + body_end, message + TALLY_REPLICATION_HEADER_SIZE, TALLY_REPLICATION_CLAIM_SIZE);
  put16(over + OFFSET_COUNT, TALLY_REPLICATION_CLAIMS_MAX + 1);
  assert_true(sizeof(over) > TALLY_REPLICATION_SIZE_MAX);
  resign(over, sizeof(over));
  expect_reason(over, sizeof(over), TALLY_REPLICATION_MALFORMED);
  const uint16_t over_counts[] = {TALLY_REPLICATION_CLAIMS_MAX + 1, UINT16_MAX};
  for (size_t i = 0; i < sizeof(over_counts) / sizeof(over_counts[0]); i++) {
    size = encode_ok(&fill, message, sizeof(message));
    put16(message + OFFSET_COUNT, over_counts[i]);
    expect_malformed_signed(message, size);
  }
  /* A failure on the last claim leaves nothing of the claims decoded before it. */
  size = encode_ok(&fill, message, sizeof(message));
  put64_at(message + CLAIM_AT(TALLY_REPLICATION_CLAIMS_MAX - 1) + CLAIM_ATTEMPT, 0);
  expect_malformed_signed(message, size);
  size = encode_ok(&fill, message, sizeof(message));
  put64_at(message + CLAIM_AT(TALLY_REPLICATION_CLAIMS_MAX - 1) + CLAIM_PRODUCER, UINT64_MAX);
  expect_malformed_signed(message, size);
}

static void test_reason_names(void **state)
{
  (void)state;
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_OK), "ok");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_TRUNCATED), "truncated");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_BAD_MAGIC), "bad_magic");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_BAD_VERSION),
    "bad_version");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_BAD_MAC), "bad_mac");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_MALFORMED), "malformed");
  assert_string_equal(tally_replication_reason_name(TALLY_REPLICATION_REASON_COUNT), "invalid");
  assert_string_equal(tally_replication_reason_name((enum tally_replication_reason)-1),
    "invalid");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vector),
    cmocka_unit_test(test_round_trip_every_type_and_count),
    cmocka_unit_test(test_round_trip_mixed_lengths_and_layout),
    cmocka_unit_test(test_reject_size),
    cmocka_unit_test(test_reject_envelope),
    cmocka_unit_test(test_reject_order),
    cmocka_unit_test(test_reject_header_fields),
    cmocka_unit_test(test_reject_entries),
    cmocka_unit_test(test_reject_bad_names),
    cmocka_unit_test(test_every_bit_flip_rejected),
    cmocka_unit_test(test_wrong_key),
    cmocka_unit_test(test_decode_failure_clears_previous),
    cmocka_unit_test(test_encode_refuses_invalid),
    cmocka_unit_test(test_producer_vector),
    cmocka_unit_test(test_producer_round_trip),
    cmocka_unit_test(test_producer_exact_lengths),
    cmocka_unit_test(test_producer_encode_refuses),
    cmocka_unit_test(test_producer_decode_rejects),
    cmocka_unit_test(test_claim_vector),
    cmocka_unit_test(test_claim_round_trip),
    cmocka_unit_test(test_claim_exact_lengths),
    cmocka_unit_test(test_claim_encode_refuses),
    cmocka_unit_test(test_claim_decode_rejects),
    cmocka_unit_test(test_reason_names),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
