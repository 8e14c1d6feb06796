/*
 * wal_cluster.c — encoding and checking the cluster record's payload
 * (wal_cluster.h). Pure; the checks treat their input as untrusted. Runs on
 * the cluster thread (encoding into the persister's queue), in recovery
 * before the lcores start, and in the fuzzer.
 */
#include "wal_cluster.h"

#include <assert.h>
#include <string.h>

#include "persist_bytes.h"
#include "tally/name.h"

static_assert(TALLY_WAL_CLUSTER_ITEM_SIZE_MAX + TALLY_WAL_CLUSTER_HEADER_SIZE <=
  TALLY_WAL_PAYLOAD_SIZE_MAX, "an item fits a record");

void tally_wal_cluster_writer_init(struct tally_wal_cluster_writer *writer, uint8_t *out,
  uint32_t capacity)
{
  assert(writer != NULL && out != NULL);
  assert(capacity >= TALLY_WAL_CLUSTER_HEADER_SIZE + TALLY_WAL_CLUSTER_ITEM_SIZE_MAX);
  assert(capacity <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  *writer = (struct tally_wal_cluster_writer){ .out = out, .capacity = capacity,
    .size = TALLY_WAL_CLUSTER_HEADER_SIZE, .count = 0 };
}

/* The fixed bytes after an item's header, by kind (0: not a kind). */
static uint32_t body_size(uint8_t kind, uint32_t name_len)
{
  switch (kind) {
  case TALLY_WAL_CLUSTER_VALUE:
  case TALLY_WAL_CLUSTER_RELIABLE_VALUE: return 8u + name_len;
  case TALLY_WAL_CLUSTER_RECORD: return 8u + 8u * TALLY_WAL_CLUSTER_DEDUP_WORDS;
  case TALLY_WAL_CLUSTER_HELD: return 16u;
  case TALLY_WAL_CLUSTER_CLAIM: return 32u;
  default: return 0;
  }
}

/* The checks shared by the encoder (asserted) and the decoder (refused). */
static enum tally_wal_cluster_check item_check(const struct tally_wal_cluster_item *item)
{
  if (item->kind < TALLY_WAL_CLUSTER_VALUE || item->kind >= TALLY_WAL_CLUSTER_KIND_END) {
    return TALLY_WAL_CLUSTER_BAD_KIND;
  }
  if (tally_wal_cluster_is_value(item->kind)) {
    return tally_name_valid(item->name, item->name_len) ? TALLY_WAL_CLUSTER_OK :
      TALLY_WAL_CLUSTER_BAD_NAME;
  }
  if (item->name_len != 0) return TALLY_WAL_CLUSTER_BAD_FIELD;
  if (item->kind == TALLY_WAL_CLUSTER_HELD && item->origin == 0) return TALLY_WAL_CLUSTER_BAD_ORIGIN;
  if (item->kind == TALLY_WAL_CLUSTER_CLAIM && item->origin != 0) return TALLY_WAL_CLUSTER_BAD_ORIGIN;
  if (item->kind == TALLY_WAL_CLUSTER_HELD && item->seq == 0) return TALLY_WAL_CLUSTER_BAD_FIELD;
  if (item->kind != TALLY_WAL_CLUSTER_HELD && item->producer == 0) return TALLY_WAL_CLUSTER_BAD_FIELD;
  if (item->kind == TALLY_WAL_CLUSTER_CLAIM &&
    (item->attempt == 0 || item->attempt > TALLY_CLAIM_KEEPER ||
     item->producer > TALLY_PRODUCER_ID_MAX)) {
    return TALLY_WAL_CLUSTER_BAD_FIELD;
  }
  return TALLY_WAL_CLUSTER_OK;
}

uint32_t tally_wal_cluster_item_size(const struct tally_wal_cluster_item *item)
{
  assert(item != NULL);
  if (item_check(item) != TALLY_WAL_CLUSTER_OK) return 0;
  return TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE + body_size(item->kind, item->name_len);
}

bool tally_wal_cluster_add(struct tally_wal_cluster_writer *writer,
  const struct tally_wal_cluster_item *item)
{
  uint32_t size = tally_wal_cluster_item_size(item);
  assert(size >= TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE); /* the caller's items are valid */
  assert(writer->size <= writer->capacity);
  if (writer->capacity - writer->size < size) return false;
  uint8_t *out = writer->out + writer->size;
  out[0] = item->kind;
  out[1] = (uint8_t)item->name_len;
  persist_store_u16(out + 2, item->origin);
  uint8_t *body = out + TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE;
  switch (item->kind) {
  case TALLY_WAL_CLUSTER_VALUE:
  case TALLY_WAL_CLUSTER_RELIABLE_VALUE:
    persist_store_u64(body, (uint64_t)item->value);
    memcpy(body + 8, item->name, item->name_len);
    break;
  case TALLY_WAL_CLUSTER_RECORD:
    persist_store_u64(body, item->producer);
    for (uint32_t w = 0; w < TALLY_WAL_CLUSTER_DEDUP_WORDS; w++) {
      persist_store_u64(body + 8u + 8u * w, item->dedup[w]);
    }
    break;
  case TALLY_WAL_CLUSTER_HELD:
    persist_store_u64(body, item->seq);
    persist_store_u64(body + 8, item->scan);
    break;
  default:
    assert(item->kind == TALLY_WAL_CLUSTER_CLAIM);
    persist_store_u64(body, item->position);
    persist_store_u64(body + 8, item->producer);
    persist_store_u64(body + 16, item->seq);
    persist_store_u64(body + 24, item->attempt);
    break;
  }
  writer->size += size;
  writer->count++;
  assert(writer->size <= writer->capacity);
  return true;
}

uint32_t tally_wal_cluster_finish(struct tally_wal_cluster_writer *writer)
{
  assert(writer->size >= TALLY_WAL_CLUSTER_HEADER_SIZE);
  if (writer->count == 0) return 0;
  persist_store_u32(writer->out, writer->count);
  persist_store_u32(writer->out + 4, 0);
  return writer->size;
}

/* Decodes the item at offset (bounds checked); *check says why not. */
static bool item_decode(const uint8_t *payload, size_t size, size_t offset,
  struct tally_wal_cluster_item *item, size_t *item_size, enum tally_wal_cluster_check *check)
{
  memset(item, 0, sizeof *item);
  *check = TALLY_WAL_CLUSTER_TRUNCATED;
  if (size - offset < TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE) return false;
  const uint8_t *in = payload + offset;
  item->kind = in[0];
  item->name_len = in[1];
  item->origin = persist_load_u16(in + 2);
  uint32_t body = body_size(item->kind, item->name_len);
  if (body == 0) {
    *check = TALLY_WAL_CLUSTER_BAD_KIND;
    return false;
  }
  if (size - offset - TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE < body) return false;
  in += TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE;
  if (tally_wal_cluster_is_value(item->kind)) {
    item->value = (int64_t)persist_load_u64(in);
    item->name = (const char *)(in + 8);
  } else if (item->kind == TALLY_WAL_CLUSTER_RECORD) {
    item->producer = persist_load_u64(in);
    for (uint32_t w = 0; w < TALLY_WAL_CLUSTER_DEDUP_WORDS; w++) {
      item->dedup[w] = persist_load_u64(in + 8u + 8u * w);
    }
  } else if (item->kind == TALLY_WAL_CLUSTER_HELD) {
    item->seq = persist_load_u64(in);
    item->scan = persist_load_u64(in + 8);
  } else {
    item->position = persist_load_u64(in);
    item->producer = persist_load_u64(in + 8);
    item->seq = persist_load_u64(in + 16);
    item->attempt = persist_load_u64(in + 24);
  }
  *check = item_check(item);
  *item_size = TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE + body;
  return *check == TALLY_WAL_CLUSTER_OK;
}

enum tally_wal_cluster_check tally_wal_cluster_check(const uint8_t *payload, size_t size)
{
  assert(payload != NULL || size == 0);
  if (size < TALLY_WAL_CLUSTER_HEADER_SIZE) return TALLY_WAL_CLUSTER_TRUNCATED;
  uint32_t count = persist_load_u32(payload);
  if (persist_load_u32(payload + 4) != 0) return TALLY_WAL_CLUSTER_BAD_RESERVED;
  if (count == 0) return TALLY_WAL_CLUSTER_BAD_COUNT;
  size_t offset = TALLY_WAL_CLUSTER_HEADER_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    if (offset == size) return TALLY_WAL_CLUSTER_BAD_COUNT;
    struct tally_wal_cluster_item item;
    size_t item_size = 0;
    enum tally_wal_cluster_check check;
    if (!item_decode(payload, size, offset, &item, &item_size, &check)) return check;
    offset += item_size;
  }
  return offset == size ? TALLY_WAL_CLUSTER_OK : TALLY_WAL_CLUSTER_TRAILING;
}

bool tally_wal_cluster_next(const uint8_t *payload, size_t size, size_t *offset,
  struct tally_wal_cluster_item *item)
{
  assert(offset != NULL && item != NULL);
  if (*offset == 0) *offset = TALLY_WAL_CLUSTER_HEADER_SIZE;
  if (*offset >= size) return false;
  size_t item_size = 0;
  enum tally_wal_cluster_check check;
  bool ok = item_decode(payload, size, *offset, item, &item_size, &check);
  assert(ok); /* the payload checked OK */
  (void)ok;
  *offset += item_size;
  return true;
}

const char *tally_wal_cluster_check_name(enum tally_wal_cluster_check check)
{
  static const char *const names[TALLY_WAL_CLUSTER_CHECK_COUNT] = {
    "ok", "truncated", "bad item count", "reserved bytes not zero", "unknown item kind",
    "invalid counter name", "origin out of range", "field out of range", "trailing bytes",
  };
  assert((uint32_t)check < TALLY_WAL_CLUSTER_CHECK_COUNT);
  return names[check];
}
