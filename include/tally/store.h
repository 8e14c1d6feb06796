/*
 * store.h — the persistent store: one PMDK (libpmem2) mapped file holding a
 * superblock, one shard region per dataplane lcore (on a cluster node, plus
 * the compensation shard after them, written by the cluster thread) and one
 * replica table per cluster peer. Owns creating, opening, checking and
 * recovering the file, and persisting it.
 *
 * Layout (docs/store-layout.md has the byte map):
 *   [superblock 4 KiB][shard 0 region]...[shard n-1 region][replica 0]...[replica r-1]
 *
 * Persistence modes:
 *   - group commit: a persister thread calls tally_store_persist() every
 *     store.commit_interval_ms (msync at page granularity); acks wait for it.
 *   - per burst: on byte/cache-line granularity (real pmem, DAX) each lcore
 *     flushes what it wrote and drains once per burst; acks go out at once.
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"
#include "tally/shard.h"

#define TALLY_STORE_MAGIC 0x3154535943414c54ull /* "TLACYST1" */
#define TALLY_STORE_LAYOUT_VERSION 4u
#define TALLY_STORE_BLOCK_SIZE 4096u

/* First 4 KiB of the file. */
struct tally_superblock {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t shard_count;
  uint32_t counters_max;
  uint32_t producers_max;
  uint64_t shard_region_size;
  uint64_t file_size;
  uint64_t created_unix_ns;
  uint8_t store_uuid[16];
  uint32_t replica_count; /* replica tables after the shards (cluster peers) */
  uint32_t crc; /* over every field above */
  /* Mutable line. */
  uint64_t clean_shutdown __attribute__((aligned(64))); /* 1 after a clean close */
  uint64_t open_count;
};

struct tally_store_geometry {
  uint32_t shard_count;   /* lcores, plus the compensation shard on a cluster node */
  uint32_t counters_max;
  uint32_t producers_max;
  uint32_t replica_count; /* 0 for a single node; cluster: nodes - 1 */
};

enum tally_persist_mode {
  TALLY_PERSIST_AUTO = 0,     /* per burst if the mapping allows it, else group commit */
  TALLY_PERSIST_GROUP_COMMIT, /* persister thread, msync every interval */
  TALLY_PERSIST_PER_BURST,    /* lcores flush + drain per burst (needs byte/cache-line pmem) */
};

struct tally_store_recovery {
  bool created;        /* the file did not exist and was made */
  bool was_clean;      /* the last run closed it cleanly */
  uint64_t open_count;
  struct tally_shard_recovery shards[TALLY_SHARDS_MAX];
  struct tally_shard_recovery replicas[TALLY_NODES_MAX - 1];
  uint64_t recovery_ns; /* time spent checking and recovering */
};

struct tally_store {
  int fd;
  struct pmem2_source *source;
  struct pmem2_map *map;
  uint8_t *base;
  size_t size;
  struct tally_superblock *super;
  struct tally_store_geometry geometry;
  enum tally_persist_mode mode;  /* resolved: GROUP_COMMIT or PER_BURST */
  const char *granularity_name;  /* "page", "cache line" or "byte" */
  void (*persist)(const void *address, size_t size);
  struct tally_shard shards[TALLY_SHARDS_MAX];
  /*
   * Replica tables: replicas[r] holds the contribution of the r-th peer
   * (cluster order, this node skipped). Same format as a shard, sized for
   * every counter and every producer record of every shard of the origin,
   * written only by the replication thread.
   */
  struct tally_shard replicas[TALLY_NODES_MAX - 1];
  struct tally_store_recovery recovery;
  /*
   * After a failed open: the file exists but is damaged (bad superblock,
   * truncated, a corrupt shard or replica header), as opposed to a config
   * mismatch or an I/O error. A cluster node moves such a store aside and
   * restores from its peers.
   */
  bool corrupt;
};

/* Counters one replica table holds: counters_max * shard_count, capped. */
uint32_t tally_store_replica_counters(const struct tally_store_geometry *geometry);
/*
 * Producer records one replica table holds (the origin's, merged from all its
 * shards): producers_max * shard_count, within TALLY_PRODUCERS_MIN..MAX.
 */
uint32_t tally_store_replica_producers(const struct tally_store_geometry *geometry);

/* Persists one replica table (its whole region). Any thread. */
void tally_store_persist_replica(struct tally_store *store, uint32_t replica);

/* Bytes of a store file of this geometry. */
size_t tally_store_file_size(const struct tally_store_geometry *geometry);

/*
 * Opens the store at path, creating it (sized, zeroed, formatted, persisted)
 * when it does not exist, then checks and recovers every shard. A geometry
 * that differs from the file's, a bad superblock or a size mismatch is an
 * error (message in error). mode PER_BURST fails on page granularity.
 * Returns 0 or -1.
 */
int tally_store_open(struct tally_store *store, const char *path,
  const struct tally_store_geometry *geometry, enum tally_persist_mode mode, char *error,
  size_t error_size);

/* Persists the whole mapping (msync on a file). Any thread. */
void tally_store_persist(struct tally_store *store);

/* Persists, marks the store clean and unmaps it. */
void tally_store_close(struct tally_store *store);

#endif
