/*
 * store_format.h — the store's on-media format in one place: the layout
 * version and magics, every CRC32C seed, the sentinels written to media, the
 * block and table sizes, the geometry (where every region and table sits in
 * the file) and the checksum of every record. The records' byte layout is the
 * structs in shard.h and store.h; store_format.c pins their offsets and sizes
 * with compile-time asserts and computes the geometry and the checksums.
 * Changing anything here is a new store layout (docs/store-layout.md has the
 * byte map).
 *
 * Header-only part (CRC32C, the name hash) is included by whoever must
 * compute a name's index hash the way the store does (the lcores, the cluster
 * scan). Pure functions: any thread.
 */
#ifndef TALLY_STORE_FORMAT_H
#define TALLY_STORE_FORMAT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_hash_crc.h>
#include <sodium.h>

#include "tally/limits.h"

/* ---- The file ------------------------------------------------------------ */

#define TALLY_STORE_MAGIC 0x3154535943414c54ull /* "TLACYST1" */
#define TALLY_STORE_LAYOUT_VERSION 6u
/* Unit of the file's regions: the superblock, a shard's header and redo log. */
#define TALLY_STORE_BLOCK_SIZE 4096u
/* Alignment of every record that is written as a whole (slots, producers, entries). */
#define TALLY_STORE_CACHE_LINE_SIZE 64u

/* ---- A shard region ------------------------------------------------------- */

#define TALLY_SHARD_MAGIC 0x44485359414c4154ull /* "TALLYSHD" */
/* shard header undo_history: the journal holds every undo ("UNDOHIST"). */
#define TALLY_UNDO_HISTORY_COMPLETE 0x545349484f444e55ull
/* The redo record's state word. */
#define TALLY_LOG_STATE_EMPTY 0ull
#define TALLY_LOG_STATE_VALID 0x44494c4147474f4cull /* "LOGGALID" */
/* A slot's flags (set only by recovery). */
#define TALLY_SLOT_FLAG_QUARANTINED 1u
/*
 * A slot's owner_class: the traffic class that created it (issue 14, C1).
 * Layout 5 always wrote 0 there, so every slot of an older store reads as
 * statsd's until a reliable batch takes it over. Not under ident_crc: a
 * single byte, written before the slot is published or alone; any value but
 * STATSD reads as RELIABLE (a damaged byte never opens a counter to statsd).
 */
#define TALLY_CLASS_STATSD 0u
#define TALLY_CLASS_RELIABLE 1u
/* A producer record whose checksum failed; never a valid producer id. */
#define TALLY_PRODUCER_TOMBSTONE UINT64_MAX
/* Smallest slot or producer table (a power of two). */
#define TALLY_STORE_TABLE_SLOTS_MIN 16u

/* ---- CRC32C seeds (one per record kind, so no record checks as another) ---- */

#define TALLY_SUPERBLOCK_CRC_SEED 0x53555052u        /* "SUPR" */
#define TALLY_REPLICA_DIRECTORY_CRC_SEED 0x5245504cu /* "REPL" */
#define TALLY_SHARD_HEADER_CRC_SEED 0x5348445fu      /* "SHD_" */
#define TALLY_SLOT_IDENT_CRC_SEED 0x534c4f54u        /* "SLOT" */
#define TALLY_PRODUCER_CRC_SEED 0x50524f44u          /* "PROD" */
#define TALLY_LOG_CRC_SEED 0x4c4f4752u               /* "LOGR" */
#define TALLY_JOURNAL_CRC_SEED 0x4a524e4cu           /* "JRNL" */
#define TALLY_CLAIM_CRC_SEED 0x434c414du             /* "CLAM" */
#define TALLY_NAME_KEY_CRC_SEED 0x4e4b4559u          /* "NKEY" */
/* Hash seed: where a producer's record probes from (names: the store's secret key). */
#define TALLY_PRODUCER_HASH_SEED 0x70726f64u         /* "prod" */

/* ---- Relations ------------------------------------------------------------ */

static_assert((TALLY_STORE_BLOCK_SIZE & (TALLY_STORE_BLOCK_SIZE - 1u)) == 0, "block is 2^n");
static_assert(TALLY_STORE_BLOCK_SIZE % TALLY_STORE_CACHE_LINE_SIZE == 0, "blocks hold lines");
static_assert(TALLY_SLOT_SIZE % TALLY_STORE_CACHE_LINE_SIZE == 0, "a slot is whole lines");
static_assert(TALLY_PRODUCER_SIZE % TALLY_STORE_CACHE_LINE_SIZE == 0, "a record is whole lines");
static_assert((TALLY_STORE_TABLE_SLOTS_MIN & (TALLY_STORE_TABLE_SLOTS_MIN - 1u)) == 0,
  "tables are 2^n");
static_assert(TALLY_STORE_TABLE_SLOTS_MIN * TALLY_SLOT_LOAD_NUM / TALLY_SLOT_LOAD_DEN >= 1u,
  "the smallest table holds an entry");
static_assert(TALLY_SLOT_LOAD_NUM < TALLY_SLOT_LOAD_DEN, "a table always keeps an empty slot");
static_assert(TALLY_PRODUCER_ID_MAX < TALLY_PRODUCER_TOMBSTONE, "the tombstone is no producer");
static_assert(TALLY_LOG_STATE_VALID != TALLY_LOG_STATE_EMPTY, "log states differ");
static_assert(TALLY_SHARD_MAGIC != TALLY_STORE_MAGIC, "a shard is no superblock");
static_assert(TALLY_SUPERBLOCK_CRC_SEED != TALLY_SHARD_HEADER_CRC_SEED &&
  TALLY_SHARD_HEADER_CRC_SEED != TALLY_SLOT_IDENT_CRC_SEED &&
  TALLY_SLOT_IDENT_CRC_SEED != TALLY_PRODUCER_CRC_SEED &&
  TALLY_PRODUCER_CRC_SEED != TALLY_LOG_CRC_SEED && TALLY_LOG_CRC_SEED != TALLY_JOURNAL_CRC_SEED &&
  TALLY_JOURNAL_CRC_SEED != TALLY_CLAIM_CRC_SEED &&
  TALLY_CLAIM_CRC_SEED != TALLY_REPLICA_DIRECTORY_CRC_SEED &&
  TALLY_REPLICA_DIRECTORY_CRC_SEED != TALLY_NAME_KEY_CRC_SEED, "record seeds differ");

/* ---- CRC32C --------------------------------------------------------------- */

/*
 * CRC32C of any bytes (hardware instruction where present; stable on media):
 * the same chunking as rte_hash_crc(), but loading through memcpy, because
 * names sit at any alignment inside datagrams. Not the name index hash:
 * that is keyed (tally_name_hash below).
 */
static inline uint32_t tally_crc32c(const void *data, size_t size, uint32_t crc)
{
  const char *name = (const char *)data;
  size_t name_len = size;
  size_t offset = 0;
  for (; offset + 8 <= name_len; offset += 8) {
    uint64_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_8byte(word, crc);
  }
  if (name_len & 4u) {
    uint32_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_4byte(word, crc);
    offset += 4;
  }
  if (name_len & 2u) {
    uint16_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_2byte(word, crc);
    offset += 2;
  }
  if (name_len & 1u) crc = rte_hash_crc_1byte((uint8_t)name[offset], crc);
  return crc;
}

/*
 * The name index hash: SipHash-2-4 (libsodium crypto_shorthash) under the
 * store's secret key (random at creation, in the superblock, layout 6), low
 * 32 bits. Nobody without the key can pick names that collide, so probe runs
 * stay short (issue 14 H1); the probe bound (TALLY_SLOT_PROBE_MAX) still
 * fails closed if they do not. A hash means something only under its store's
 * key: it never travels between nodes (each recomputes from the name).
 */
#define TALLY_NAME_KEY_SIZE 16u
struct tally_name_key {
  uint8_t bytes[TALLY_NAME_KEY_SIZE];
};
static_assert(TALLY_NAME_KEY_SIZE == crypto_shorthash_KEYBYTES, "SipHash key");

static inline uint32_t tally_name_hash(const struct tally_name_key *key, const char *name,
  size_t name_len)
{
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, (const unsigned char *)name, name_len, key->bytes);
  uint32_t hash;
  memcpy(&hash, out, sizeof hash);
  return hash;
}

/* Where a producer's record probe starts (before masking by the table size). */
static inline uint32_t tally_producer_hash(uint64_t producer)
{
  return rte_hash_crc_8byte(producer, TALLY_PRODUCER_HASH_SEED);
}

/* ---- Geometry (store_format.c) -------------------------------------------- */

/*
 * A shard region, from its start:
 *   [header: 1 block][redo log: 1 block][slots][producers]
 *   [journal, block aligned][claims, block aligned], rounded up to a block.
 */
struct tally_shard_layout {
  uint32_t slots_count;          /* power of two, load <= 3/4 */
  uint32_t producer_slots_count; /* power of two, load <= 3/4 */
  size_t log_offset;
  size_t slots_offset;
  size_t producers_offset;
  size_t journal_offset;
  size_t claims_offset;
  size_t size;                   /* the whole region, whole blocks */
};

/* Slot table size for a capacity: the power of two keeping load <= 3/4. */
uint32_t tally_shard_slots_for(uint32_t counters_max);
/* Producer table size for a capacity, same rule. */
uint32_t tally_shard_producer_slots_for(uint32_t producers_max);
/* Where everything sits in a shard region of this capacity. */
void tally_shard_layout(uint32_t counters_max, uint32_t producers_max,
  struct tally_shard_layout *layout);
/* Bytes of one shard region (header, log, slots, producers, journal, claims), 4 KiB aligned. */
size_t tally_shard_region_size(uint32_t counters_max, uint32_t producers_max);

/*
 * The file: [superblock: 1 block][shard 0]...[shard n-1][replica 0]...[replica r-1].
 * struct tally_store_geometry is in store.h.
 */
struct tally_store_geometry;
/* Bytes of a store file of this geometry. */
size_t tally_store_file_size(const struct tally_store_geometry *geometry);
/* The byte offset of shard region `shard`. */
size_t tally_store_shard_offset(const struct tally_store_geometry *geometry, uint32_t shard);
/* Counters one replica table holds: counters_max * shard_count, capped. */
uint32_t tally_store_replica_counters(const struct tally_store_geometry *geometry);
/*
 * Producer records one replica table holds (the origin's, merged from all its
 * shards): producers_max * shard_count, within TALLY_PRODUCERS_MIN..MAX.
 */
uint32_t tally_store_replica_producers(const struct tally_store_geometry *geometry);
/* The byte offset (replica == replica_count: the end of the file) and size of replica region r. */
size_t tally_store_replica_offset(const struct tally_store_geometry *geometry, uint32_t replica);
size_t tally_store_replica_size(const struct tally_store_geometry *geometry);

/* ---- Checksums (store_format.c) ------------------------------------------- */

struct tally_dedup;
struct tally_shard_header;
struct tally_batch_log;
struct tally_journal_entry;
struct tally_claim;
struct tally_superblock;

uint32_t tally_slot_ident_crc(uint32_t slot_index, uint32_t hash, const char *name,
  uint32_t name_len);
uint64_t tally_slot_value_check(uint32_t ident_crc, int64_t value);
uint32_t tally_producer_crc(uint32_t producer_slot, uint64_t producer,
  const struct tally_dedup *dedup);
uint32_t tally_shard_header_crc(const struct tally_shard_header *header);
uint32_t tally_batch_log_crc(const struct tally_batch_log *log);
uint32_t tally_journal_crc(const struct tally_journal_entry *entry);
uint32_t tally_claim_crc(const struct tally_claim *claim);
uint32_t tally_superblock_crc(const struct tally_superblock *super);
uint32_t tally_name_key_crc(const struct tally_superblock *super);
uint32_t tally_replica_binding_crc(uint32_t replica, uint32_t origin);

#endif
