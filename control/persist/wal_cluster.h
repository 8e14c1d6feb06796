/*
 * wal_cluster.h — the payload of a TALLY_WAL_TYPE_CLUSTER log record (record
 * type 4, payload version 1): what the cluster thread changed in the image
 * outside the lcores' shards, as absolute or idempotent items, so that a
 * replay in LSN order ends in the state the node had acked
 * (docs/store-layout.md, "Log mode on a cluster node"). A table is named by
 * an origin: 1..65535 the replica table of that peer, 0 the compensation
 * shard. Little-endian; every item starts with
 *
 *   +0 u8 kind   1 value, 2 record, 3 held, 4 claim, 5 reliable value
 *   +1 u8 name_len (value: 1..TALLY_NAME_LEN_MAX; others 0)
 *   +2 u16 origin (held: 1..65535; claim: 0)
 *
 * then: value  i64 value, name (absolute: the slot's value after the change)
 *       reliable value  the same, of a counter whose class is reliable (C1):
 *              the replay makes (or keeps) it reliable; a value item leaves
 *              an existing counter's class as it is and creates a statsd one
 *       record u64 producer (TALLY_PRODUCER_UNDONE_BIT allowed), 15 x u64
 *              dedup state (merged on replay: idempotent, monotone)
 *       held   u64 held_seq >= 1, u64 held_scan
 *       claim  u64 position, u64 producer, u64 seq, u64 attempt
 *              (written to the compensation shard's claims ring at position)
 * The payload starts with u32 count (>= 1 items), u32 reserved (0); nothing
 * follows the last item. Pure; decoding treats the bytes as untrusted.
 */
#ifndef TALLY_PERSIST_WAL_CLUSTER_H
#define TALLY_PERSIST_WAL_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

enum tally_wal_cluster_kind {
  TALLY_WAL_CLUSTER_VALUE = 1,
  TALLY_WAL_CLUSTER_RECORD = 2,
  TALLY_WAL_CLUSTER_HELD = 3,
  TALLY_WAL_CLUSTER_CLAIM = 4,
  TALLY_WAL_CLUSTER_RELIABLE_VALUE = 5,
  TALLY_WAL_CLUSTER_KIND_END
};

#define TALLY_WAL_CLUSTER_HEADER_SIZE 8u
#define TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE 4u
#define TALLY_WAL_CLUSTER_DEDUP_WORDS (TALLY_DEDUP_RUNS * 5u)
#define TALLY_WAL_CLUSTER_VALUE_SIZE_MAX (TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE + 8u + TALLY_NAME_LEN_MAX)
#define TALLY_WAL_CLUSTER_RECORD_SIZE (TALLY_WAL_CLUSTER_ITEM_HEADER_SIZE + 8u + \
  8u * TALLY_WAL_CLUSTER_DEDUP_WORDS)
/* The largest item. */
#define TALLY_WAL_CLUSTER_ITEM_SIZE_MAX \
  (TALLY_WAL_CLUSTER_VALUE_SIZE_MAX > TALLY_WAL_CLUSTER_RECORD_SIZE ? \
   TALLY_WAL_CLUSTER_VALUE_SIZE_MAX : TALLY_WAL_CLUSTER_RECORD_SIZE)
/* An undo's items (its values and its record) fit one record. */
static_assert(TALLY_WAL_CLUSTER_HEADER_SIZE + TALLY_BATCH_PAIRS_MAX *
  TALLY_WAL_CLUSTER_VALUE_SIZE_MAX + TALLY_WAL_CLUSTER_RECORD_SIZE <= TALLY_WAL_PAYLOAD_SIZE_MAX,
  "an undo fits one cluster record");

/* A value item, of either class. */
static inline bool tally_wal_cluster_is_value(uint8_t kind)
{
  return kind == TALLY_WAL_CLUSTER_VALUE || kind == TALLY_WAL_CLUSTER_RELIABLE_VALUE;
}

struct tally_wal_cluster_item {
  uint8_t kind;
  uint16_t origin;
  uint32_t name_len;
  const char *name;   /* value: not NUL-terminated; decoded: points into the payload */
  int64_t value;      /* value */
  uint64_t producer;  /* record, claim */
  uint64_t dedup[TALLY_WAL_CLUSTER_DEDUP_WORDS]; /* record */
  uint64_t seq;       /* held: held_seq; claim: seq */
  uint64_t scan;      /* held */
  uint64_t position;  /* claim */
  uint64_t attempt;   /* claim */
};

/* Builds one payload in a caller's buffer (TALLY_WAL_PAYLOAD_SIZE_MAX bytes). */
struct tally_wal_cluster_writer {
  uint8_t *out;
  uint32_t capacity;
  uint32_t size;  /* bytes so far, the header included */
  uint32_t count; /* items so far */
};

enum tally_wal_cluster_check {
  TALLY_WAL_CLUSTER_OK,
  TALLY_WAL_CLUSTER_TRUNCATED,    /* shorter than its header or an item */
  TALLY_WAL_CLUSTER_BAD_COUNT,    /* 0 items, or not as many as it says */
  TALLY_WAL_CLUSTER_BAD_RESERVED, /* reserved bytes not 0 */
  TALLY_WAL_CLUSTER_BAD_KIND,
  TALLY_WAL_CLUSTER_BAD_NAME,     /* a value's name is not a valid counter key */
  TALLY_WAL_CLUSTER_BAD_ORIGIN,   /* a held item for origin 0, a claim for another */
  TALLY_WAL_CLUSTER_BAD_FIELD,    /* a name_len where none belongs, held_seq 0, producer 0, a claim's attempt */
  TALLY_WAL_CLUSTER_TRAILING,     /* bytes after the last item */
  TALLY_WAL_CLUSTER_CHECK_COUNT
};

void tally_wal_cluster_writer_init(struct tally_wal_cluster_writer *writer, uint8_t *out,
  uint32_t capacity);
/* Bytes the item takes encoded; 0 if the decoder would refuse it. */
uint32_t tally_wal_cluster_item_size(const struct tally_wal_cluster_item *item);
/* Adds the item: true, or false (nothing written) when it does not fit. Asserts it is valid. */
bool tally_wal_cluster_add(struct tally_wal_cluster_writer *writer,
  const struct tally_wal_cluster_item *item);
/* The payload's size once finished (count written); 0 when it holds no item. */
uint32_t tally_wal_cluster_finish(struct tally_wal_cluster_writer *writer);

/* Checks the whole payload; OK means every item decodes. */
enum tally_wal_cluster_check tally_wal_cluster_check(const uint8_t *payload, size_t size);
/*
 * Item by item over a payload that checked OK: *offset starts at 0; true
 * and item filled while there is one.
 */
bool tally_wal_cluster_next(const uint8_t *payload, size_t size, size_t *offset,
  struct tally_wal_cluster_item *item);
const char *tally_wal_cluster_check_name(enum tally_wal_cluster_check check);

#endif
