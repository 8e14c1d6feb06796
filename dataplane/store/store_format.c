/*
 * store_format.c — the computed part of the on-media format (store_format.h):
 * the geometry (table sizes, every region's offset, the file's size) and the
 * checksum of every record kind, with compile-time asserts pinning each
 * record's byte layout (the structs of shard.h and store.h) to
 * docs/store-layout.md. Calls nothing else in the store: every other store
 * file calls down into it.
 *
 * Thread: any (pure functions of their arguments and of bytes they are given).
 */
#include <assert.h>

#include "store_format.h"
#include "shard.h"
#include "store.h"

/* ---- Byte layout of every record ------------------------------------------ */

static_assert(sizeof(struct tally_superblock) <= TALLY_STORE_BLOCK_SIZE, "superblock fits");
static_assert(offsetof(struct tally_superblock, crc) == 68u, "superblock crc covers 0..67");
static_assert(offsetof(struct tally_superblock, name_key) == 72u, "name key at 72");
static_assert(offsetof(struct tally_superblock, name_key_crc) == 88u, "its crc at 88");
static_assert(offsetof(struct tally_superblock, clean_shutdown) % 64u == 0, "mutable line");
static_assert(offsetof(struct tally_superblock, replica_directory) == 192u, "directory line");
static_assert(sizeof(struct tally_replica_binding) == 8u, "one 8-byte store per binding");

static_assert(sizeof(struct tally_shard_header) <= TALLY_STORE_BLOCK_SIZE, "header fits its block");
static_assert(offsetof(struct tally_shard_header, header_crc) == 28u, "header crc covers 0..27");
static_assert(offsetof(struct tally_shard_header, counters_used) == TALLY_STORE_CACHE_LINE_SIZE,
  "the header's mutable line");
static_assert(offsetof(struct tally_shard_header, journal_next) == 88, "header layout");
static_assert(offsetof(struct tally_shard_header, claims_next) == 96, "header layout");
static_assert(sizeof(struct tally_shard_header) == 2u * TALLY_STORE_CACHE_LINE_SIZE,
  "header: two lines");

static_assert(sizeof(struct tally_batch_log) <= TALLY_STORE_BLOCK_SIZE, "the redo log: one block");
static_assert(offsetof(struct tally_batch_log, crc) == 8, "log crc after state");
static_assert(offsetof(struct tally_batch_log, count) == 12, "log crc covers from count");
static_assert(offsetof(struct tally_batch_log, producer) == 16, "then from producer on");
static_assert(offsetof(struct tally_batch_log, entries) == 160, "entries after the dedup state");
static_assert(offsetof(struct tally_batch_log, batch_seq) == 1184, "batch_seq after every entry");
static_assert(offsetof(struct tally_shard_header, batch_seq) == 104, "batch_seq after claims_next");
static_assert(sizeof(struct tally_shard_header) == 128, "the header stays two lines");
static_assert(sizeof(struct tally_log_entry) == 16, "log entry layout");

static_assert(offsetof(struct tally_slot, value) == 0, "value first, 16-byte aligned");
static_assert(offsetof(struct tally_slot, value_check) == 8, "check beside the value");
static_assert(offsetof(struct tally_slot, name_len) < TALLY_STORE_CACHE_LINE_SIZE,
  "hot fields in line 0");
static_assert(offsetof(struct tally_slot, name) == 32u, "name after the 32-byte header");
static_assert(offsetof(struct tally_slot, owner_class) == 28u, "owner class: the first byte layout 5 left zero");

static_assert(offsetof(struct tally_producer, crc) == 8, "producer record layout");
static_assert(offsetof(struct tally_producer, dedup) == 16, "producer record layout");
static_assert(sizeof(struct tally_dedup) == 120u, "dedup: 15 words");
static_assert(sizeof(struct tally_dedup) % sizeof(uint64_t) == 0, "dedup is words");

static_assert(offsetof(struct tally_journal_entry, producer) == 0, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, seq) == 8, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, count) == 16, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, crc) == 20, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, attempt) == 24, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, applied) == 28, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, reserved) == 32, "journal entry layout");
static_assert(offsetof(struct tally_journal_entry, pairs) == 64, "pairs on the second line");
static_assert(sizeof(struct tally_journal_pair) == 16, "journal pair layout");
static_assert(sizeof(struct tally_journal_entry) % TALLY_STORE_CACHE_LINE_SIZE == 0,
  "entries line aligned");
static_assert(TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry) %
  TALLY_STORE_BLOCK_SIZE == 0, "the journal is whole blocks");

static_assert(offsetof(struct tally_claim, producer) == 0, "claim layout");
static_assert(offsetof(struct tally_claim, seq) == 8, "claim layout");
static_assert(offsetof(struct tally_claim, attempt) == 16, "claim layout");
static_assert(offsetof(struct tally_claim, crc) == 20, "claim layout");
static_assert(offsetof(struct tally_claim, position) == 24, "claim layout");
static_assert(TALLY_STORE_CACHE_LINE_SIZE % sizeof(struct tally_claim) == 0,
  "a claim never spans lines");
static_assert(TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim) % TALLY_STORE_BLOCK_SIZE == 0,
  "the claims ring is whole blocks");
static_assert(TALLY_JOURNAL_ENTRIES <= UINT32_MAX && TALLY_CLAIMS_ENTRIES <= UINT32_MAX,
  "ring indexes fit 32 bits");

/* ---- Shard geometry ------------------------------------------------------- */

static uint32_t table_size_for(uint32_t capacity)
{
  uint64_t size = TALLY_STORE_TABLE_SLOTS_MIN;
  for (uint32_t step = 0; step < 32u; step++) {
    if ((uint64_t)capacity * TALLY_SLOT_LOAD_DEN <= size * TALLY_SLOT_LOAD_NUM) break;
    size *= 2u;
  }
  assert(size <= (1ull << 31));
  assert((uint64_t)capacity * TALLY_SLOT_LOAD_DEN <= size * TALLY_SLOT_LOAD_NUM);
  return (uint32_t)size;
}

uint32_t tally_shard_slots_for(uint32_t counters_max)
{
  assert(counters_max <= TALLY_COUNTERS_MAX);
  return table_size_for(counters_max);
}

uint32_t tally_shard_producer_slots_for(uint32_t producers_max)
{
  assert(producers_max <= TALLY_PRODUCERS_MAX);
  return table_size_for(producers_max);
}

static size_t round_block(size_t size)
{
  return (size + TALLY_STORE_BLOCK_SIZE - 1u) / TALLY_STORE_BLOCK_SIZE * TALLY_STORE_BLOCK_SIZE;
}

void tally_shard_layout(uint32_t counters_max, uint32_t producers_max,
  struct tally_shard_layout *layout)
{
  assert(layout != NULL);
  layout->slots_count = tally_shard_slots_for(counters_max);
  layout->producer_slots_count = tally_shard_producer_slots_for(producers_max);
  layout->log_offset = TALLY_STORE_BLOCK_SIZE; /* after the header's block */
  layout->slots_offset = layout->log_offset + round_block(sizeof(struct tally_batch_log));
  layout->producers_offset =
    layout->slots_offset + (size_t)layout->slots_count * sizeof(struct tally_slot);
  size_t producers_end = layout->producers_offset +
    (size_t)layout->producer_slots_count * sizeof(struct tally_producer);
  layout->journal_offset = round_block(producers_end);
  size_t journal_end = layout->journal_offset +
    (size_t)TALLY_JOURNAL_ENTRIES * sizeof(struct tally_journal_entry);
  layout->claims_offset = round_block(journal_end);
  size_t claims_end =
    layout->claims_offset + (size_t)TALLY_CLAIMS_ENTRIES * sizeof(struct tally_claim);
  layout->size = round_block(claims_end);
  assert(layout->journal_offset % TALLY_STORE_BLOCK_SIZE == 0);
  assert(layout->claims_offset % TALLY_STORE_BLOCK_SIZE == 0);
  assert(layout->size % TALLY_STORE_BLOCK_SIZE == 0);
  assert(layout->journal_offset >= producers_end);
  assert(layout->claims_offset >= journal_end);
  assert(layout->size >= claims_end);
}

size_t tally_shard_region_size(uint32_t counters_max, uint32_t producers_max)
{
  struct tally_shard_layout layout;
  tally_shard_layout(counters_max, producers_max, &layout);
  assert(layout.size % TALLY_STORE_BLOCK_SIZE == 0);
  assert(layout.size > layout.claims_offset);
  return layout.size;
}

/* ---- File geometry -------------------------------------------------------- */

uint32_t tally_store_replica_counters(const struct tally_store_geometry *geometry)
{
  assert(geometry != NULL);
  assert(geometry->shard_count <= TALLY_SHARDS_MAX);
  uint64_t counters = (uint64_t)geometry->counters_max * geometry->shard_count;
  if (counters > TALLY_COUNTERS_MAX) counters = TALLY_COUNTERS_MAX;
  if (counters < TALLY_COUNTERS_MIN) counters = TALLY_COUNTERS_MIN;
  assert(counters >= TALLY_COUNTERS_MIN && counters <= TALLY_COUNTERS_MAX);
  return (uint32_t)counters;
}

uint32_t tally_store_replica_producers(const struct tally_store_geometry *geometry)
{
  assert(geometry != NULL);
  assert(geometry->shard_count <= TALLY_SHARDS_MAX);
  uint64_t producers = (uint64_t)geometry->producers_max * geometry->shard_count;
  if (producers > TALLY_PRODUCERS_MAX) producers = TALLY_PRODUCERS_MAX;
  if (producers < TALLY_PRODUCERS_MIN) producers = TALLY_PRODUCERS_MIN;
  assert(producers >= TALLY_PRODUCERS_MIN && producers <= TALLY_PRODUCERS_MAX);
  return (uint32_t)producers;
}

size_t tally_store_replica_size(const struct tally_store_geometry *geometry)
{
  assert(geometry != NULL);
  size_t size = tally_shard_region_size(tally_store_replica_counters(geometry),
    tally_store_replica_producers(geometry));
  assert(size % TALLY_STORE_BLOCK_SIZE == 0);
  return size;
}

size_t tally_store_shard_offset(const struct tally_store_geometry *geometry, uint32_t shard)
{
  assert(geometry != NULL);
  assert(shard <= geometry->shard_count); /* == count: where the replicas start */
  size_t region = tally_shard_region_size(geometry->counters_max, geometry->producers_max);
  assert(region % TALLY_STORE_BLOCK_SIZE == 0);
  return TALLY_STORE_BLOCK_SIZE + (size_t)shard * region;
}

size_t tally_store_replica_offset(const struct tally_store_geometry *geometry, uint32_t replica)
{
  assert(geometry != NULL);
  assert(replica <= geometry->replica_count); /* == count: the end of the file */
  return tally_store_shard_offset(geometry, geometry->shard_count) +
    (size_t)replica * tally_store_replica_size(geometry);
}

size_t tally_store_file_size(const struct tally_store_geometry *geometry)
{
  assert(geometry != NULL);
  assert(geometry->shard_count <= TALLY_SHARDS_MAX);
  assert(geometry->replica_count <= TALLY_REPLICA_REGIONS_MAX);
  size_t size = tally_store_replica_offset(geometry, geometry->replica_count);
  assert(size % TALLY_STORE_BLOCK_SIZE == 0);
  return size;
}

/* ---- Checksums ------------------------------------------------------------ */

uint32_t tally_slot_ident_crc(uint32_t slot_index, uint32_t hash, const char *name,
  uint32_t name_len)
{
  assert(name != NULL);
  assert(name_len <= TALLY_NAME_LEN_MAX);
  uint32_t crc = rte_hash_crc_4byte(slot_index, TALLY_SLOT_IDENT_CRC_SEED);
  crc = rte_hash_crc_4byte(hash, crc);
  crc = rte_hash_crc_4byte(name_len, crc);
  return tally_crc32c(name, name_len, crc);
}

uint64_t tally_slot_value_check(uint32_t ident_crc, int64_t value)
{
  return (uint64_t)rte_hash_crc_8byte((uint64_t)value, ident_crc);
}

uint32_t tally_producer_crc(uint32_t producer_slot, uint64_t producer,
  const struct tally_dedup *dedup)
{
  assert(dedup != NULL);
  uint32_t crc = rte_hash_crc_4byte(producer_slot, TALLY_PRODUCER_CRC_SEED);
  crc = rte_hash_crc_8byte(producer, crc);
  const uint64_t *words = (const uint64_t *)(const void *)dedup;
  for (size_t i = 0; i < sizeof(struct tally_dedup) / sizeof(uint64_t); i++) {
    crc = rte_hash_crc_8byte(words[i], crc);
  }
  return crc;
}

uint32_t tally_shard_header_crc(const struct tally_shard_header *header)
{
  assert(header != NULL);
  return tally_crc32c(header, (uint32_t)offsetof(struct tally_shard_header, header_crc),
    TALLY_SHARD_HEADER_CRC_SEED);
}

/*
 * Over every field after crc, up to entries[count]: count, then the 8-byte
 * aligned rest (rte_hash_crc reads 8 bytes at a time; keep its loads aligned).
 */
uint32_t tally_batch_log_crc(const struct tally_batch_log *log)
{
  assert(log->count <= TALLY_BATCH_PAIRS_MAX);
  size_t begin = offsetof(struct tally_batch_log, producer);
  size_t end = offsetof(struct tally_batch_log, entries) +
    (size_t)log->count * sizeof(struct tally_log_entry);
  assert(begin % 8u == 0);
  uint32_t crc = rte_hash_crc_4byte(log->count, TALLY_LOG_CRC_SEED);
  crc = tally_crc32c((const uint8_t *)log + begin, (uint32_t)(end - begin), crc);
  return rte_hash_crc_8byte(log->batch_seq, crc);
}

/*
 * Over producer, seq, count and attempt (4-byte words), then
 * pairs[0..count). Not applied: it changes after the crc is written.
 */
uint32_t tally_journal_crc(const struct tally_journal_entry *entry)
{
  assert(entry != NULL);
  assert(entry->count <= TALLY_BATCH_PAIRS_MAX);
  uint32_t crc = rte_hash_crc_8byte(entry->producer, TALLY_JOURNAL_CRC_SEED);
  crc = rte_hash_crc_8byte(entry->seq, crc);
  crc = rte_hash_crc_4byte(entry->count, crc);
  crc = rte_hash_crc_4byte(entry->attempt, crc);
  return tally_crc32c(entry->pairs, (size_t)entry->count * sizeof(struct tally_journal_pair),
    crc);
}

/* Over producer, seq, attempt (a 4-byte word) and position. */
uint32_t tally_claim_crc(const struct tally_claim *claim)
{
  assert(claim != NULL);
  uint32_t crc = rte_hash_crc_8byte(claim->producer, TALLY_CLAIM_CRC_SEED);
  crc = rte_hash_crc_8byte(claim->seq, crc);
  crc = rte_hash_crc_4byte(claim->attempt, crc);
  return rte_hash_crc_8byte(claim->position, crc);
}

uint32_t tally_superblock_crc(const struct tally_superblock *super)
{
  assert(super != NULL);
  return tally_crc32c(super, (uint32_t)offsetof(struct tally_superblock, crc),
    TALLY_SUPERBLOCK_CRC_SEED);
}

uint32_t tally_name_key_crc(const struct tally_superblock *super)
{
  assert(super != NULL);
  return tally_crc32c(&super->name_key, sizeof super->name_key, TALLY_NAME_KEY_CRC_SEED);
}

uint32_t tally_replica_binding_crc(uint32_t replica, uint32_t origin)
{
  assert(replica < TALLY_REPLICA_REGIONS_MAX);
  uint32_t words[2] = { replica, origin };
  return tally_crc32c(words, sizeof words, TALLY_REPLICA_DIRECTORY_CRC_SEED);
}
