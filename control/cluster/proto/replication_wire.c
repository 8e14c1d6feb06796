/*
 * replication_wire.c — encoding and verified decoding of replication
 * messages (control/cluster/proto/replication_wire.h). The MAC is checked over the
 * whole datagram before any field behind the header is trusted.
 */
#include <assert.h>
#include <string.h>

#include <sodium.h>

#include "tally/name.h"
#include "replication_wire.h"

#include "tally/mac.h"

static void put16(uint8_t *out, uint16_t value)
{
  out[0] = (uint8_t)value;
  out[1] = (uint8_t)(value >> 8);
}

static void put64(uint8_t *out, uint64_t value)
{
  for (unsigned i = 0; i < 8; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static uint16_t get16(const uint8_t *in)
{
  return (uint16_t)(in[0] | (in[1] << 8));
}

static uint64_t get64(const uint8_t *in)
{
  uint64_t value = 0;
  for (unsigned i = 0; i < 8; i++) value |= (uint64_t)in[i] << (8 * i);
  return value;
}

static bool type_valid(unsigned type)
{
  return type >= TALLY_REPLICATION_ROUND && type <= TALLY_REPLICATION_TYPE_LAST;
}

/* The MAC of kind REPLICATION (tally/mac.h): never a heartbeat's or a batch's (issue 14, M2). */
static void mac(const uint8_t *data, size_t size, const uint8_t key[TALLY_KEY_SIZE],
  uint8_t out[TALLY_MAC_SIZE])
{
  tally_mac_compute(TALLY_MAC_REPLICATION, data, size, key, out);
}

/* Flags PRODUCERS: only on ROUND and RESTORE. */
static bool producers_allowed(unsigned type)
{
  return type == TALLY_REPLICATION_ROUND || type == TALLY_REPLICATION_RESTORE;
}

/*
 * A producer record on the wire: producer u64, then per run (newest first)
 * head_last u64 | head_window[0] u64 | head_window[1] u64 | last_seq u64 |
 * window u64.
 */
#define PRODUCER_ID_SIZE 8u
#define PRODUCER_RUN_SIZE 40u
static_assert(TALLY_REPLICATION_PRODUCER_SIZE ==
  PRODUCER_ID_SIZE + TALLY_DEDUP_RUNS * PRODUCER_RUN_SIZE, "producer record layout");
static_assert(TALLY_REPLICATION_PRODUCER_SIZE == 128u, "8 + 3 runs x 40 bytes");
static_assert(sizeof(((struct tally_replication_producer *)0)->runs) ==
  TALLY_DEDUP_RUNS * PRODUCER_RUN_SIZE, "five u64 per run");

static bool producer_id_valid(uint64_t producer)
{
  return producer != 0 && producer != UINT64_MAX;
}

/* A claim on the wire: producer u64 | seq u64 | attempt u64. */
static_assert(TALLY_REPLICATION_CLAIM_SIZE == 24u, "three u64 per claim");
static_assert(TALLY_REPLICATION_HEADER_SIZE + TALLY_REPLICATION_CLAIMS_MAX *
  TALLY_REPLICATION_CLAIM_SIZE + TALLY_MAC_SIZE <= TALLY_REPLICATION_SIZE_MAX,
  "a full claim message fits one datagram");

static bool claim_valid(const struct tally_replication_claim *claim)
{
  /* A claim names a batch: a producer's own id (never an undone record's). */
  return claim->producer != 0 && claim->producer <= TALLY_PRODUCER_ID_MAX &&
    claim->attempt >= 1 && claim->attempt <= TALLY_CLAIM_KEEPER;
}

/*
 * Flags for a type: nothing unknown, PRODUCERS only on ROUND and RESTORE,
 * CLAIMS only on ROUND and never with PRODUCERS (LAST goes with anything).
 */
static bool flags_valid(unsigned type, uint16_t flags)
{
  if ((flags & ~TALLY_REPLICATION_FLAGS_KNOWN) != 0) return false;
  bool producers = (flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0;
  bool claims = (flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0;
  if (producers && !producers_allowed(type)) return false;
  if (claims && (producers || type != TALLY_REPLICATION_ROUND)) return false;
  return true;
}

/* The count limit of valid flags: records, claims or counter entries. */
static uint32_t count_max(uint16_t flags)
{
  if ((flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0) return TALLY_REPLICATION_PRODUCERS_MAX;
  if ((flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0) return TALLY_REPLICATION_CLAIMS_MAX;
  return TALLY_REPLICATION_ENTRIES_MAX;
}

/* Writes the body behind the header; returns its end, 0 if invalid or out of room. */
static size_t encode_entries(const struct tally_replication_message *message, uint8_t *out,
  size_t out_size)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < message->count; i++) {
    const struct tally_replication_entry *entry = &message->entries[i];
    if (entry->name == NULL || !tally_name_valid(entry->name, entry->name_len)) return 0;
    if (entry->owner_class > TALLY_REPLICATION_CLASS_RELIABLE) return 0;
    size_t entry_size = tally_replication_entry_size(entry->name_len);
    if (used + entry_size + TALLY_MAC_SIZE > out_size) return 0;
    put64(out + used, (uint64_t)entry->value);
    out[used + 8] = entry->owner_class;
    out[used + 9] = (uint8_t)entry->name_len;
    memcpy(out + used + TALLY_REPLICATION_ENTRY_FIXED_SIZE, entry->name, entry->name_len);
    used += entry_size;
  }
  return used;
}

static size_t encode_producers(const struct tally_replication_message *message, uint8_t *out,
  size_t out_size)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < message->count; i++) {
    const struct tally_replication_producer *record = &message->producers[i];
    if (!producer_id_valid(record->producer)) return 0;
    if (used + TALLY_REPLICATION_PRODUCER_SIZE + TALLY_MAC_SIZE > out_size) return 0;
    put64(out + used, record->producer);
    for (unsigned r = 0; r < TALLY_DEDUP_RUNS; r++) {
      uint8_t *run = out + used + PRODUCER_ID_SIZE + (size_t)r * PRODUCER_RUN_SIZE;
      put64(run, record->runs[r].head_last);
      put64(run + 8, record->runs[r].head_window[0]);
      put64(run + 16, record->runs[r].head_window[1]);
      put64(run + 24, record->runs[r].last_seq);
      put64(run + 32, record->runs[r].window);
    }
    used += TALLY_REPLICATION_PRODUCER_SIZE;
  }
  return used;
}

static size_t encode_claims(const struct tally_replication_message *message, uint8_t *out,
  size_t out_size)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < message->count; i++) {
    const struct tally_replication_claim *claim = &message->claims[i];
    if (!claim_valid(claim)) return 0;
    if (used + TALLY_REPLICATION_CLAIM_SIZE + TALLY_MAC_SIZE > out_size) return 0;
    put64(out + used, claim->producer);
    put64(out + used + 8, claim->seq);
    put64(out + used + 16, claim->attempt);
    used += TALLY_REPLICATION_CLAIM_SIZE;
  }
  return used;
}

size_t tally_replication_encode(const struct tally_replication_message *message,
  const uint8_t key[TALLY_KEY_SIZE], uint8_t *out, size_t out_size)
{
  assert(message != NULL && out != NULL);
  if (!type_valid(message->type)) return 0;
  /*
   * An unknown flag, or a known one where it does not belong, would make
   * every receiver refuse the message as malformed.
   */
  if (!flags_valid(message->type, message->flags)) return 0;
  if (message->count > count_max(message->flags)) return 0;
  bool producers = (message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0;
  bool claims = (message->flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0;
  if (out_size < TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE) return 0;
  out[0] = TALLY_REPLICATION_MAGIC_0;
  out[1] = TALLY_REPLICATION_MAGIC_1;
  out[2] = TALLY_REPLICATION_VERSION;
  out[3] = (uint8_t)message->type;
  put16(out + 4, message->origin);
  put16(out + 6, message->sender);
  put16(out + 8, (uint16_t)message->count);
  put16(out + 10, message->flags);
  put16(out + 12, message->part);
  put16(out + 14, 0); /* reserved (version 2's classes word) */
  put64(out + 16, message->seq);
  put64(out + 24, message->scan);
  put64(out + 32, message->session);
  put64(out + 40, message->peer_session);
  size_t used = producers ? encode_producers(message, out, out_size) :
    claims ? encode_claims(message, out, out_size) : encode_entries(message, out, out_size);
  if (used == 0) return 0;
  mac(out, used, key, out + used);
  assert(used + TALLY_MAC_SIZE <= out_size);
  return used + TALLY_MAC_SIZE;
}

static enum tally_replication_reason decode_entries(const uint8_t *data, size_t body_end,
  struct tally_replication_message *message)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  for (uint32_t i = 0; i < message->count; i++) {
    if (used + TALLY_REPLICATION_ENTRY_FIXED_SIZE > body_end) return TALLY_REPLICATION_MALFORMED;
    struct tally_replication_entry *entry = &message->entries[i];
    entry->value = (int64_t)get64(data + used);
    entry->owner_class = data[used + 8];
    entry->name_len = data[used + 9];
    entry->name = (const char *)data + used + TALLY_REPLICATION_ENTRY_FIXED_SIZE;
    if (entry->owner_class > TALLY_REPLICATION_CLASS_RELIABLE) return TALLY_REPLICATION_MALFORMED;
    size_t entry_size = tally_replication_entry_size(entry->name_len);
    if (used + entry_size > body_end) return TALLY_REPLICATION_MALFORMED;
    if (!tally_name_valid(entry->name, entry->name_len)) return TALLY_REPLICATION_MALFORMED;
    used += entry_size;
  }
  return used == body_end ? TALLY_REPLICATION_OK : TALLY_REPLICATION_MALFORMED;
}

static enum tally_replication_reason decode_producers(const uint8_t *data, size_t body_end,
  struct tally_replication_message *message)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  if (body_end - used != (size_t)message->count * TALLY_REPLICATION_PRODUCER_SIZE) {
    return TALLY_REPLICATION_MALFORMED;
  }
  for (uint32_t i = 0; i < message->count; i++) {
    struct tally_replication_producer *record = &message->producers[i];
    record->producer = get64(data + used);
    for (unsigned r = 0; r < TALLY_DEDUP_RUNS; r++) {
      const uint8_t *run = data + used + PRODUCER_ID_SIZE + (size_t)r * PRODUCER_RUN_SIZE;
      record->runs[r].head_last = get64(run);
      record->runs[r].head_window[0] = get64(run + 8);
      record->runs[r].head_window[1] = get64(run + 16);
      record->runs[r].last_seq = get64(run + 24);
      record->runs[r].window = get64(run + 32);
    }
    if (!producer_id_valid(record->producer)) return TALLY_REPLICATION_MALFORMED;
    used += TALLY_REPLICATION_PRODUCER_SIZE;
  }
  return TALLY_REPLICATION_OK;
}

static enum tally_replication_reason decode_claims(const uint8_t *data, size_t body_end,
  struct tally_replication_message *message)
{
  size_t used = TALLY_REPLICATION_HEADER_SIZE;
  if (body_end - used != (size_t)message->count * TALLY_REPLICATION_CLAIM_SIZE) {
    return TALLY_REPLICATION_MALFORMED;
  }
  for (uint32_t i = 0; i < message->count; i++) {
    struct tally_replication_claim *claim = &message->claims[i];
    claim->producer = get64(data + used);
    claim->seq = get64(data + used + 8);
    claim->attempt = get64(data + used + 16);
    if (!claim_valid(claim)) return TALLY_REPLICATION_MALFORMED;
    used += TALLY_REPLICATION_CLAIM_SIZE;
  }
  return TALLY_REPLICATION_OK;
}

enum tally_replication_reason tally_replication_decode(const uint8_t *data, size_t size,
  const uint8_t key[TALLY_KEY_SIZE], struct tally_replication_message *message)
{
  assert(data != NULL && message != NULL);
  memset(message, 0, sizeof *message);
  if (size < TALLY_REPLICATION_HEADER_SIZE + TALLY_MAC_SIZE) return TALLY_REPLICATION_TRUNCATED;
  if (size > TALLY_REPLICATION_SIZE_MAX) return TALLY_REPLICATION_MALFORMED;
  if (data[0] != TALLY_REPLICATION_MAGIC_0 || data[1] != TALLY_REPLICATION_MAGIC_1) {
    return TALLY_REPLICATION_BAD_MAGIC;
  }
  if (data[2] != TALLY_REPLICATION_VERSION) return TALLY_REPLICATION_BAD_VERSION;
  if (!type_valid(data[3])) return TALLY_REPLICATION_BAD_MAGIC;
  size_t body_end = size - TALLY_MAC_SIZE;
  uint8_t expected[TALLY_MAC_SIZE];
  mac(data, body_end, key, expected);
  if (sodium_memcmp(expected, data + body_end, TALLY_MAC_SIZE) != 0) {
    return TALLY_REPLICATION_BAD_MAC;
  }
  message->type = (enum tally_replication_type)data[3];
  message->origin = get16(data + 4);
  message->sender = get16(data + 6);
  message->count = get16(data + 8);
  message->flags = get16(data + 10);
  message->part = get16(data + 12);
  message->seq = get64(data + 16);
  message->scan = get64(data + 24);
  message->session = get64(data + 32);
  message->peer_session = get64(data + 40);
  bool producers = (message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) != 0;
  bool claims = (message->flags & TALLY_REPLICATION_FLAG_CLAIMS) != 0;
  if (!flags_valid(message->type, message->flags) ||
      message->count > count_max(message->flags) || get16(data + 14) != 0) {
    memset(message, 0, sizeof *message);
    return TALLY_REPLICATION_MALFORMED;
  }
  enum tally_replication_reason reason = producers ? decode_producers(data, body_end, message) :
    claims ? decode_claims(data, body_end, message) : decode_entries(data, body_end, message);
  if (reason != TALLY_REPLICATION_OK) memset(message, 0, sizeof *message);
  return reason;
}

const char *tally_replication_reason_name(enum tally_replication_reason reason)
{
  static const char *const names[TALLY_REPLICATION_REASON_COUNT] = {
    "ok", "truncated", "bad_magic", "bad_version", "bad_mac", "malformed",
  };
  if ((unsigned)reason >= TALLY_REPLICATION_REASON_COUNT) return "invalid";
  assert(names[reason] != NULL);
  return names[reason];
}
