/*
 * fuzz_replication.c — libFuzzer target of the replication message codec
 * (control/cluster/proto/replication_wire.c).
 *
 * The first byte of the input picks a mode; in every mode the input itself is
 * first decoded as it came, with a fixed key, which fuzzes the checks in
 * front of the MAC.
 *   odd:      data[1..] becomes a body signed with the right MAC and is decoded
 *             again, which reaches the parser behind the MAC. If bit 1 is set,
 *             the body's header gets a valid magic, version and type (bits 2-3),
 *             and the result must match an independent reference validator.
 *   2 mod 4:  data[1..] is read as the fields of a message (any type, count,
 *             flags, names, producer records or claims, output size) that is
 *             encoded: the encoder must refuse exactly the invalid ones, and
 *             what it writes must decode back to the same message.
 * Both paths cover the producer-record variant (flags PRODUCERS, ROUND and
 * RESTORE only, count x 128-byte records: the id, then TALLY_DEDUP_RUNS (3)
 * runs of head_last | head_window[0] | head_window[1] | last_seq | window;
 * producer id never 0 or UINT64_MAX; at most 63) and the claim variant (flags
 * CLAIMS, ROUND only, never with PRODUCERS, count x 24-byte claims: producer |
 * seq | attempt; producer 1 .. 2^63 - 2, attempt 1 .. UINT16_MAX; at
 * most 338). Counter entries (version 3): value | class (0 or 1) | name_len |
 * name, at most 738, the reserved header word 0, all within 8 KiB.
 * Whatever decodes must be in range, point inside the input, and re-encode
 * to exactly the same bytes; whatever fails must leave the message zeroed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tally/name.h"
#include "replication_wire.h"
#include "tally/mac.h"
#include "shard.h"

/* Stays on whatever NDEBUG says: a failed check is a finding. */
#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

/* Room for the largest message plus slack, so oversize inputs are signed too. */
#define FUZZ_SIGNED_SIZE_MAX (TALLY_REPLICATION_SIZE_MAX + 64u)
#define FUZZ_SIZE_MIN (TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[TALLY_KEY_SIZE] = {
  0x5a, 0x11, 0x7e, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
  0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a,
  0x1b, 0x1c,
};

static const struct tally_replication_message zero_message;

static bool type_valid(uint32_t type)
{
  return type >= TALLY_REPLICATION_ROUND && type <= TALLY_REPLICATION_TYPE_LAST;
}

static bool producer_id_valid(uint64_t producer)
{
  return producer != 0 && producer != UINT64_MAX;
}

static uint64_t load64(const uint8_t *in)
{
  uint64_t value = 0;
  for (unsigned i = 0; i < 8; i++) value |= (uint64_t)in[i] << (8u * i);
  return value;
}

/*
 * Flags PRODUCERS: count records of 128 bytes (producer u64, then 3 runs of
 * head_last u64 | head_window[0] u64 | head_window[1] u64 | last_seq u64 |
 * window u64), nothing else, at most 63 (what fits 8 KiB), on ROUND or RESTORE.
 */
#define REFERENCE_RUNS 3u
#define REFERENCE_RUN_SIZE 40u
#define REFERENCE_RECORD_SIZE 128u
#define REFERENCE_RECORDS_MAX 63u
static_assert(REFERENCE_RUNS == TALLY_DEDUP_RUNS, "runs per record");
static_assert(REFERENCE_RECORD_SIZE == 8u + REFERENCE_RUNS * REFERENCE_RUN_SIZE, "record layout");
static_assert(REFERENCE_RECORD_SIZE == TALLY_REPLICATION_PRODUCER_SIZE, "record layout");
static_assert(REFERENCE_RECORDS_MAX == TALLY_REPLICATION_PRODUCERS_MAX, "record limit");
static bool reference_producers_valid(const uint8_t *body, size_t body_size, uint32_t count)
{
  if (body[3] != TALLY_REPLICATION_ROUND && body[3] != TALLY_REPLICATION_RESTORE) return false;
  if (count > REFERENCE_RECORDS_MAX) return false;
  if (body_size != TALLY_REPLICATION_HEADER_SIZE + (size_t)count * REFERENCE_RECORD_SIZE) {
    return false;
  }
  for (uint32_t i = 0; i < count; i++) {
    size_t record = TALLY_REPLICATION_HEADER_SIZE + (size_t)i * REFERENCE_RECORD_SIZE;
    if (!producer_id_valid(load64(body + record))) {
      return false;
    }
  }
  return true;
}

/*
 * Flags CLAIMS: count claims of 24 bytes (producer u64 | seq u64 | attempt
 * u64), nothing else, at most 338 (what fits 8 KiB), on ROUND only and never with PRODUCERS.
 */
#define REFERENCE_FLAG_CLAIMS 0x0004u
#define REFERENCE_CLAIM_SIZE 24u
#define REFERENCE_CLAIMS_MAX 338u
/* Counter entries: value i64 | class u8 (0 or 1) | name_len u8 | name; at most 738. */
#define REFERENCE_ENTRY_FIXED 10u
#define REFERENCE_ENTRIES_MAX 738u
static_assert(REFERENCE_ENTRIES_MAX == TALLY_REPLICATION_ENTRIES_MAX, "entry limit");
static_assert(REFERENCE_ENTRY_FIXED == TALLY_REPLICATION_ENTRY_FIXED_SIZE, "entry layout");
static_assert(REFERENCE_FLAG_CLAIMS == TALLY_REPLICATION_FLAG_CLAIMS, "claims flag");
static_assert(REFERENCE_CLAIM_SIZE == TALLY_REPLICATION_CLAIM_SIZE, "claim layout");
static_assert(REFERENCE_CLAIMS_MAX == TALLY_REPLICATION_CLAIMS_MAX, "claim limit");

static bool attempt_valid(uint64_t attempt)
{
  return attempt >= 1 && attempt <= 0xffffu;
}

/* A claim names a producer's own id: 1 .. 2^63 - 2 (the top half is reserved). */
static bool claim_producer_valid(uint64_t producer)
{
  return producer != 0 && producer <= 0x7ffffffffffffffeull;
}

static bool reference_claims_valid(const uint8_t *body, size_t body_size, uint32_t count,
  uint32_t flags)
{
  if (body[3] != TALLY_REPLICATION_ROUND) return false;
  if ((flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) return false;
  if (count > REFERENCE_CLAIMS_MAX) return false;
  if (body_size != TALLY_REPLICATION_HEADER_SIZE + (size_t)count * REFERENCE_CLAIM_SIZE) {
    return false;
  }
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *claim = body + TALLY_REPLICATION_HEADER_SIZE + (size_t)i * REFERENCE_CLAIM_SIZE;
    if (!claim_producer_valid(load64(claim)) || !attempt_valid(load64(claim + 16))) return false;
  }
  return true;
}

/* Written from the header comment, not from the decoder: the body (MAC excluded). */
static bool reference_valid(const uint8_t *body, size_t body_size)
{
  uint32_t count = (uint32_t)(body[8] | (body[9] << 8));
  uint32_t flags = (uint32_t)(body[10] | (body[11] << 8));
  if (body[14] != 0 || body[15] != 0) return false; /* reserved */
  if ((flags & ~(uint32_t)(TALLY_REPLICATION_FLAG_LAST | TALLY_REPLICATION_FLAG_PRODUCERS |
         REFERENCE_FLAG_CLAIMS)) != 0) {
    return false;
  }
  if ((flags & REFERENCE_FLAG_CLAIMS) != 0) {
    return reference_claims_valid(body, body_size, count, flags);
  }
  if ((flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) {
    return reference_producers_valid(body, body_size, count);
  }
  if (count > REFERENCE_ENTRIES_MAX) return false;
  size_t at = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    if (body_size - at < REFERENCE_ENTRY_FIXED) return false;
    if (body[at + 8] > 1) return false; /* the class: statsd 0, reliable 1 */
    size_t name_len = body[at + 9];
    if (name_len == 0 || name_len > TALLY_NAME_LEN_MAX) return false;
    if (body_size - at - REFERENCE_ENTRY_FIXED < name_len) return false;
    for (size_t j = 0; j < name_len; j++) {
      uint8_t byte = body[at + REFERENCE_ENTRY_FIXED + j];
      if (byte < 0x21 || byte > 0x7e || byte == ':' || byte == '|' || byte == '@' ||
          byte == '#') {
        return false;
      }
    }
    at += REFERENCE_ENTRY_FIXED + name_len;
  }
  return at == body_size;
}

static bool record_zero(const struct tally_replication_producer *record)
{
  if (record->producer != 0) return false;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    if (record->runs[r].head_last != 0 || record->runs[r].head_window[0] != 0 ||
        record->runs[r].head_window[1] != 0 || record->runs[r].last_seq != 0 ||
        record->runs[r].window != 0) {
      return false;
    }
  }
  return true;
}

static bool claim_zero(const struct tally_replication_claim *claim)
{
  return claim->producer == 0 && claim->seq == 0 && claim->attempt == 0;
}

static void check_decoded(const uint8_t *data, size_t size,
  const struct tally_replication_message *message)
{
  FUZZ_CHECK(size >= FUZZ_SIZE_MIN);
  FUZZ_CHECK(size <= TALLY_REPLICATION_SIZE_MAX);
  FUZZ_CHECK(type_valid(message->type));
  FUZZ_CHECK((message->flags & ~TALLY_REPLICATION_FLAGS_KNOWN) == 0);
  if ((message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) {
    FUZZ_CHECK(message->type == TALLY_REPLICATION_ROUND ||
      message->type == TALLY_REPLICATION_RESTORE);
    FUZZ_CHECK(message->count <= TALLY_REPLICATION_PRODUCERS_MAX);
    FUZZ_CHECK(size == FUZZ_SIZE_MIN + (size_t)message->count * TALLY_REPLICATION_PRODUCER_SIZE);
    for (uint32_t i = 0; i < message->count; i++) {
      const struct tally_replication_producer *record = &message->producers[i];
      const uint8_t *at = data + TALLY_REPLICATION_HEADER_SIZE + (size_t)i * REFERENCE_RECORD_SIZE;
      FUZZ_CHECK(producer_id_valid(record->producer));
      FUZZ_CHECK(record->producer == load64(at));
      for (uint32_t r = 0; r < REFERENCE_RUNS; r++) {
        const uint8_t *run = at + 8 + (size_t)r * REFERENCE_RUN_SIZE;
        FUZZ_CHECK(record->runs[r].head_last == load64(run));
        FUZZ_CHECK(record->runs[r].head_window[0] == load64(run + 8));
        FUZZ_CHECK(record->runs[r].head_window[1] == load64(run + 16));
        FUZZ_CHECK(record->runs[r].last_seq == load64(run + 24));
        FUZZ_CHECK(record->runs[r].window == load64(run + 32));
      }
    }
    for (uint32_t i = message->count; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
      FUZZ_CHECK(record_zero(&message->producers[i]));
    }
    for (uint32_t i = 0; i < TALLY_REPLICATION_ENTRIES_MAX; i++) {
      FUZZ_CHECK(message->entries[i].name == NULL && message->entries[i].name_len == 0);
    }
    for (uint32_t i = 0; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
      FUZZ_CHECK(claim_zero(&message->claims[i]));
    }
  } else if ((message->flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0) {
    FUZZ_CHECK(message->type == TALLY_REPLICATION_ROUND);
    FUZZ_CHECK(message->count <= TALLY_REPLICATION_CLAIMS_MAX);
    FUZZ_CHECK(size == FUZZ_SIZE_MIN + (size_t)message->count * REFERENCE_CLAIM_SIZE);
    for (uint32_t i = 0; i < message->count; i++) {
      const struct tally_replication_claim *claim = &message->claims[i];
      const uint8_t *at = data + TALLY_REPLICATION_HEADER_SIZE + (size_t)i * REFERENCE_CLAIM_SIZE;
      FUZZ_CHECK(claim_producer_valid(claim->producer));
      FUZZ_CHECK(attempt_valid(claim->attempt));
      FUZZ_CHECK(claim->producer == load64(at));
      FUZZ_CHECK(claim->seq == load64(at + 8));
      FUZZ_CHECK(claim->attempt == load64(at + 16));
    }
    for (uint32_t i = message->count; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
      FUZZ_CHECK(claim_zero(&message->claims[i]));
    }
    for (uint32_t i = 0; i < TALLY_REPLICATION_ENTRIES_MAX; i++) {
      FUZZ_CHECK(message->entries[i].name == NULL && message->entries[i].name_len == 0);
    }
    for (uint32_t i = 0; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
      FUZZ_CHECK(record_zero(&message->producers[i]));
    }
  } else {
    FUZZ_CHECK(message->count <= TALLY_REPLICATION_ENTRIES_MAX);
    for (uint32_t i = 0; i < TALLY_REPLICATION_PRODUCERS_MAX; i++) {
      FUZZ_CHECK(record_zero(&message->producers[i]));
    }
    for (uint32_t i = 0; i < TALLY_REPLICATION_CLAIMS_MAX; i++) {
      FUZZ_CHECK(claim_zero(&message->claims[i]));
    }
  }
  bool entries = (message->flags &
    (TALLY_REPLICATION_FLAG_PRODUCERS | TALLY_REPLICATION_FLAG_CLAIMS)) == 0;
  const char *begin = (const char *)data + TALLY_REPLICATION_HEADER_SIZE;
  const char *end = (const char *)data + size - TALLY_MAC_SIZE;
  for (uint32_t i = 0; entries && i < message->count; i++) {
    const struct tally_replication_entry *entry = &message->entries[i];
    FUZZ_CHECK(entry->name >= begin);
    FUZZ_CHECK(entry->name <= end);
    FUZZ_CHECK(entry->name_len <= (size_t)(end - entry->name));
    FUZZ_CHECK(tally_name_valid(entry->name, entry->name_len));
    FUZZ_CHECK(entry->owner_class <= 1u);
  }
  static uint8_t encoded[FUZZ_SIGNED_SIZE_MAX];
  FUZZ_CHECK(!entries || message->count <= TALLY_REPLICATION_ENTRIES_MAX);
  FUZZ_CHECK(tally_replication_encode(message, fuzz_key, encoded, size) == size);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);
  FUZZ_CHECK(tally_replication_encode(message, fuzz_key, encoded, size - 1) == 0);
}

/*
 * Issue 14, L3: what the cluster does with a decoded message's producer
 * records. Those tally_replication_producer_valid passes are merged into a
 * replica table (a small shard in memory), as stream_in.c and restore.c hand
 * them on; the store's asserts on a dedup state must never fire. Those it
 * refuses must be ones no dedup state can be (window bit 0 clear in a run).
 */
#define FUZZ_SHARD_COUNTERS 16u
#define FUZZ_SHARD_PRODUCERS 16u
static void check_records_reach_store(const struct tally_replication_message *message)
{
  if ((message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) == 0) return;
  static struct tally_shard shard;
  static void *region;
  static size_t region_size;
  if (region == NULL) {
    region_size = tally_shard_region_size(FUZZ_SHARD_COUNTERS, FUZZ_SHARD_PRODUCERS);
    region = aligned_alloc(4096, region_size);
    FUZZ_CHECK(region != NULL);
  }
  memset(region, 0, region_size); /* a fresh table per input: runs stay reproducible */
  FUZZ_CHECK(tally_shard_attach(&shard, region, 0, FUZZ_SHARD_COUNTERS, FUZZ_SHARD_PRODUCERS,
    true) == 0);
  for (uint32_t i = 0; i < message->count; i++) {
    const struct tally_replication_producer *record = &message->producers[i];
    bool valid = tally_replication_producer_valid(record);
    bool bit0_missing = false;
    struct tally_dedup dedup;
    memset(&dedup, 0, sizeof(dedup));
    for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
      dedup.runs[r].head_last = record->runs[r].head_last;
      dedup.runs[r].head_window[0] = record->runs[r].head_window[0];
      dedup.runs[r].head_window[1] = record->runs[r].head_window[1];
      dedup.runs[r].last_seq = record->runs[r].last_seq;
      dedup.runs[r].window = record->runs[r].window;
      bit0_missing = bit0_missing || (dedup.runs[r].head_last != 0 && (dedup.runs[r].window & 1u) == 0);
    }
    FUZZ_CHECK(valid == !bit0_missing);
    if (valid) (void)tally_shard_producer_merge(&shard, record->producer, &dedup);
  }
}

static enum tally_replication_reason check_decode(const uint8_t *data, size_t size)
{
  static struct tally_replication_message message;
  memset(&message, 0xa5, sizeof(message));
  enum tally_replication_reason reason = tally_replication_decode(data, size, fuzz_key,
    &message);
  FUZZ_CHECK((uint32_t)reason < TALLY_REPLICATION_REASON_COUNT);
  FUZZ_CHECK(strcmp(tally_replication_reason_name(reason), "invalid") != 0);
  if (size < FUZZ_SIZE_MIN) FUZZ_CHECK(reason == TALLY_REPLICATION_TRUNCATED);
  if (size > TALLY_REPLICATION_SIZE_MAX) FUZZ_CHECK(reason == TALLY_REPLICATION_MALFORMED);
  if (reason != TALLY_REPLICATION_OK) {
    FUZZ_CHECK(memcmp(&message, &zero_message, sizeof(message)) == 0);
    return reason;
  }
  check_decoded(data, size, &message);
  check_records_reach_store(&message);
  return reason;
}

/* Odd first byte: data[1..] (padded to a header) signed with the right MAC. */
static void fuzz_signed(const uint8_t *data, size_t size)
{
  static uint8_t message[FUZZ_SIGNED_SIZE_MAX];
  bool valid_header = (data[0] & 2u) != 0;
  size_t body_size = size - 1;
  if (body_size > FUZZ_SIGNED_SIZE_MAX - TALLY_MAC_SIZE) {
    body_size = FUZZ_SIGNED_SIZE_MAX - TALLY_MAC_SIZE;
  }
  memcpy(message, data + 1, body_size);
  if (valid_header) {
    if (body_size < TALLY_REPLICATION_HEADER_SIZE) {
      memset(message + body_size, 0, TALLY_REPLICATION_HEADER_SIZE - body_size);
      body_size = TALLY_REPLICATION_HEADER_SIZE;
    }
    message[0] = TALLY_REPLICATION_MAGIC_0;
    message[1] = TALLY_REPLICATION_MAGIC_1;
    message[2] = TALLY_REPLICATION_VERSION;
    message[3] = (uint8_t)(TALLY_REPLICATION_ROUND + ((data[0] >> 2) & 3u));
  }
  size_t signed_size = body_size + TALLY_MAC_SIZE;
  tally_mac_compute(TALLY_MAC_REPLICATION, message, body_size, fuzz_key, message + body_size);
  enum tally_replication_reason reason = check_decode(message, signed_size);
  FUZZ_CHECK(reason != TALLY_REPLICATION_BAD_MAC);
  if (valid_header && signed_size <= TALLY_REPLICATION_SIZE_MAX) {
    bool should_decode = reference_valid(message, body_size);
    FUZZ_CHECK((reason == TALLY_REPLICATION_OK) == should_decode);
    if (!should_decode) FUZZ_CHECK(reason == TALLY_REPLICATION_MALFORMED);
  }
  /* One byte short: never OK (the MAC no longer lines up). */
  FUZZ_CHECK(check_decode(message, signed_size - 1) != TALLY_REPLICATION_OK);
}

/* Reads n bytes little-endian from the input, zero past its end. */
static uint64_t take(const uint8_t *data, size_t size, size_t *at, uint32_t n)
{
  uint64_t value = 0;
  for (uint32_t i = 0; i < n; i++, (*at)++) {
    if (*at < size) value |= (uint64_t)data[*at] << (8u * i);
  }
  return value;
}

/* The output room: exactly what is needed, one byte short, or the most (never more). */
static size_t out_size(size_t needed, size_t slack)
{
  size_t room = slack < 128 ? needed - (slack & 1u) : TALLY_REPLICATION_SIZE_MAX;
  return room < TALLY_REPLICATION_SIZE_MAX ? room : TALLY_REPLICATION_SIZE_MAX;
}

/* Fills message from the input; returns whether the encoder must accept it. */
static bool message_from_input(const uint8_t *data, size_t size,
  struct tally_replication_message *message, size_t *encoded_size)
{
  size_t at = 1;
  memset(message, 0, sizeof(*message));
  /* 0 (invalid) and every type. */
  uint32_t type = (uint32_t)take(data, size, &at, 1) % (TALLY_REPLICATION_TYPE_LAST + 1u);
  message->type = (enum tally_replication_type)type;
  message->origin = (uint16_t)take(data, size, &at, 2);
  message->sender = (uint16_t)take(data, size, &at, 2);
  /* LAST, PRODUCERS, CLAIMS and one unknown bit. */
  message->flags = (uint16_t)(take(data, size, &at, 2) & 0x8007u);
  message->part = (uint16_t)take(data, size, &at, 2);
  message->seq = take(data, size, &at, 8);
  bool valid = type_valid(type) && (message->flags & ~TALLY_REPLICATION_FLAGS_KNOWN) == 0;
  size_t needed = FUZZ_SIZE_MIN;
  bool claims = (message->flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0;
  if ((message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) {
    message->count = (uint32_t)take(data, size, &at, 2) % (TALLY_REPLICATION_PRODUCERS_MAX + 2u);
    /* Never beside CLAIMS: refused whatever the records. */
    valid = valid && !claims &&
      (type == TALLY_REPLICATION_ROUND || type == TALLY_REPLICATION_RESTORE) &&
      message->count <= TALLY_REPLICATION_PRODUCERS_MAX;
    uint32_t records = message->count < TALLY_REPLICATION_PRODUCERS_MAX ?
      message->count : TALLY_REPLICATION_PRODUCERS_MAX;
    for (uint32_t i = 0; i < records; i++) {
      struct tally_replication_producer *record = &message->producers[i];
      /* Zero past the input's end: an id of 0 the encoder must refuse. */
      record->producer = take(data, size, &at, 8);
      for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
        record->runs[r].head_last = take(data, size, &at, 8);
        record->runs[r].head_window[0] = take(data, size, &at, 8);
        record->runs[r].head_window[1] = take(data, size, &at, 8);
        record->runs[r].last_seq = take(data, size, &at, 8);
        record->runs[r].window = take(data, size, &at, 8);
      }
      valid = valid && producer_id_valid(record->producer);
      needed += TALLY_REPLICATION_PRODUCER_SIZE;
    }
    size_t slack = (size_t)take(data, size, &at, 1);
    *encoded_size = out_size(needed, slack);
    return valid && needed <= *encoded_size;
  }
  if (claims) {
    message->count = (uint32_t)take(data, size, &at, 2) % (TALLY_REPLICATION_CLAIMS_MAX + 2u);
    valid = valid && type == TALLY_REPLICATION_ROUND &&
      message->count <= TALLY_REPLICATION_CLAIMS_MAX;
    uint32_t filled = message->count < TALLY_REPLICATION_CLAIMS_MAX ?
      message->count : TALLY_REPLICATION_CLAIMS_MAX;
    for (uint32_t i = 0; i < filled; i++) {
      struct tally_replication_claim *claim = &message->claims[i];
      /* Zero past the input's end: an id and attempt of 0 the encoder must refuse. */
      claim->producer = take(data, size, &at, 8);
      claim->seq = take(data, size, &at, 8);
      claim->attempt = take(data, size, &at, 8);
      valid = valid && claim_producer_valid(claim->producer) && attempt_valid(claim->attempt);
      needed += REFERENCE_CLAIM_SIZE;
    }
    size_t slack = (size_t)take(data, size, &at, 1);
    *encoded_size = out_size(needed, slack);
    return valid && needed <= *encoded_size;
  }
  message->count = (uint32_t)take(data, size, &at, 2) % (TALLY_REPLICATION_ENTRIES_MAX + 2u);
  valid = valid && message->count <= TALLY_REPLICATION_ENTRIES_MAX;
  uint32_t filled = message->count < TALLY_REPLICATION_ENTRIES_MAX ?
    message->count : TALLY_REPLICATION_ENTRIES_MAX;
  for (uint32_t i = 0; i < filled; i++) {
    struct tally_replication_entry *entry = &message->entries[i];
    entry->value = (int64_t)take(data, size, &at, 8);
    entry->name_len = (uint32_t)take(data, size, &at, 1) % (TALLY_NAME_LEN_MAX + 4u);
    entry->owner_class = (uint8_t)(take(data, size, &at, 1) % 3u); /* C1: 2 is refused */
    /* A name the input cannot supply is NULL: the encoder must refuse it. */
    entry->name = at + entry->name_len <= size ? (const char *)data + at : NULL;
    at += entry->name_len;
    valid = valid && entry->name != NULL && tally_name_valid(entry->name, entry->name_len) &&
      entry->owner_class <= 1u;
    needed += REFERENCE_ENTRY_FIXED + entry->name_len;
  }
  size_t slack = (size_t)take(data, size, &at, 1);
  *encoded_size = out_size(needed, slack);
  return valid && needed <= *encoded_size;
}

/* 2 mod 4: a message built from the input, through the encoder and back. */
static void fuzz_encode(const uint8_t *data, size_t size)
{
  static struct tally_replication_message message;
  static struct tally_replication_message decoded;
  static uint8_t encoded[TALLY_REPLICATION_SIZE_MAX];
  size_t out_size = 0;
  bool valid = message_from_input(data, size, &message, &out_size);
  FUZZ_CHECK(out_size <= sizeof(encoded));
  size_t encoded_size = tally_replication_encode(&message, fuzz_key, encoded, out_size);
  FUZZ_CHECK((encoded_size != 0) == valid);
  if (!valid) return;
  FUZZ_CHECK(encoded_size <= out_size);
  FUZZ_CHECK(check_decode(encoded, encoded_size) == TALLY_REPLICATION_OK);
  enum tally_replication_reason reason = tally_replication_decode(encoded, encoded_size,
    fuzz_key, &decoded);
  FUZZ_CHECK(reason == TALLY_REPLICATION_OK);
  FUZZ_CHECK(decoded.type == message.type && decoded.origin == message.origin);
  FUZZ_CHECK(decoded.sender == message.sender && decoded.flags == message.flags);
  FUZZ_CHECK(decoded.part == message.part && decoded.seq == message.seq);
  FUZZ_CHECK(decoded.count == message.count);
  if ((message.flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) {
    for (uint32_t i = 0; i < message.count; i++) {
      const struct tally_replication_producer *got = &decoded.producers[i];
      const struct tally_replication_producer *want = &message.producers[i];
      FUZZ_CHECK(got->producer == want->producer);
      for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
        FUZZ_CHECK(got->runs[r].head_last == want->runs[r].head_last);
        FUZZ_CHECK(got->runs[r].head_window[0] == want->runs[r].head_window[0]);
        FUZZ_CHECK(got->runs[r].head_window[1] == want->runs[r].head_window[1]);
        FUZZ_CHECK(got->runs[r].last_seq == want->runs[r].last_seq);
        FUZZ_CHECK(got->runs[r].window == want->runs[r].window);
      }
    }
    return;
  }
  if ((message.flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0) {
    for (uint32_t i = 0; i < message.count; i++) {
      FUZZ_CHECK(decoded.claims[i].producer == message.claims[i].producer);
      FUZZ_CHECK(decoded.claims[i].seq == message.claims[i].seq);
      FUZZ_CHECK(decoded.claims[i].attempt == message.claims[i].attempt);
    }
    return;
  }
  for (uint32_t i = 0; i < message.count; i++) {
    FUZZ_CHECK(decoded.entries[i].value == message.entries[i].value);
    FUZZ_CHECK(decoded.entries[i].owner_class == message.entries[i].owner_class);
    FUZZ_CHECK(decoded.entries[i].name_len == message.entries[i].name_len);
    FUZZ_CHECK(memcmp(decoded.entries[i].name, message.entries[i].name,
      message.entries[i].name_len) == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_decode(data, size);
  if (size == 0) return 0;
  if ((data[0] & 1u) != 0) fuzz_signed(data, size);
  if ((data[0] & 3u) == 2u) fuzz_encode(data, size);
  return 0;
}
