/*
 * store.h — the persistent store: one PMDK (libpmem2) mapped file holding a
 * superblock, one shard region per dataplane lcore (on a cluster node, plus
 * the compensation shard after them, written by the cluster thread) and one
 * replica table per cluster peer. Owns creating, opening, checking and
 * recovering the file, and persisting it.
 *
 * Layout (docs/store-layout.md has the byte map):
 *   [superblock 4 KiB][shard 0 region]...[shard n-1 region][replica 0]...[replica r-1]
 * A cluster node reserves TALLY_REPLICA_REGIONS_MAX replica regions whatever
 * its node count; each is bound to one origin node id in the superblock's
 * replica directory (checksummed, persisted before the region is used) the
 * first time that node is a member, and stays bound to it for the store's
 * life (store_replicas.c). Unbound regions are never touched: the file is
 * sparse there, and a region's blocks are allocated when it is bound.
 *
 * Persistence modes:
 *   - group commit: a persister thread calls tally_store_persist() every
 *     store.commit_interval_ms (msync at page granularity); acks wait for it.
 *   - per burst: on byte/cache-line granularity (real pmem, DAX) each lcore
 *     flushes what it wrote and drains once per burst; acks go out at once.
 *   - log: the file is an image on memory that outlives the process (tmpfs,
 *     hugetlbfs), persisted only at open and close; acks wait for the
 *     persister's write-ahead log (control/daemon/persister_log.c).
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"
#include "persist_mode.h"
#include "shard.h"
#include "store_format.h"

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
  uint32_t replica_count; /* replica regions reserved after the shards */
  uint32_t crc; /* over every field above */
  /*
   * Layout 6: the secret key of the name index hash (tally_name_hash),
   * random at creation, never changed; name_key_crc covers it.
   */
  struct tally_name_key name_key;
  uint32_t name_key_crc;
  /* Mutable line. */
  uint64_t clean_shutdown __attribute__((aligned(64))); /* 1 after a clean close */
  uint64_t open_count;
  /*
   * The replica directory (its own cache line): entry r names the origin
   * node whose contribution replica region r holds. An entry is one aligned
   * 8-byte store (power-fail atomic): all zero = free; otherwise origin
   * 1..65535 and crc = tally_replica_binding_crc(r, origin) (store_format.h).
   */
  struct tally_replica_binding {
    uint32_t origin;
    uint32_t crc;
  } replica_directory[TALLY_REPLICA_REGIONS_MAX] __attribute__((aligned(64)));
};

struct tally_store_geometry {
  uint32_t shard_count;   /* lcores, plus the compensation shard on a cluster node */
  uint32_t counters_max;
  uint32_t producers_max;
  uint32_t replica_count; /* regions reserved: 0 single node; cluster TALLY_REPLICA_REGIONS_MAX */
};

struct tally_store_recovery {
  bool created;        /* the file did not exist and was made */
  bool was_clean;      /* the last run closed it cleanly */
  uint64_t open_count;
  struct tally_shard_recovery shards[TALLY_SHARDS_MAX];
  struct tally_shard_recovery replicas[TALLY_REPLICA_REGIONS_MAX]; /* bound regions only */
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
  enum tally_persist_mode mode;  /* resolved: GROUP_COMMIT, PER_BURST or LOG */
  const char *granularity_name;  /* "page", "cache line" or "byte" */
  void (*persist)(const void *address, size_t size);
  struct tally_shard shards[TALLY_SHARDS_MAX];
  /*
   * Replica tables: replicas[r] holds the contribution of node
   * replica_origin[r], valid once replica_bound[r] (release store after the
   * region is formatted or checked, and its binding persisted; readers on
   * any thread load it with acquire: tally_store_replica_bound). Same format
   * as a shard, sized for every counter and every producer record of every
   * shard of the origin, written only by the replication thread. A region is
   * never unbound.
   */
  struct tally_shard replicas[TALLY_REPLICA_REGIONS_MAX];
  uint16_t replica_origin[TALLY_REPLICA_REGIONS_MAX];
  bool replica_bound[TALLY_REPLICA_REGIONS_MAX];
  struct tally_store_recovery recovery;
  /*
   * After a failed open: the file exists but is damaged (bad superblock,
   * truncated, a corrupt shard or replica header), as opposed to a config
   * mismatch or an I/O error. A cluster node moves such a store aside and
   * restores from its peers.
   */
  bool corrupt;
};

/* The file's geometry (sizes and offsets) and checksums: store_format.h. */

/* Persists one replica table (its whole region; it must be bound). Any thread. */
void tally_store_persist_replica(struct tally_store *store, uint32_t replica);

/* store_replicas.c: the replica directory. */
/* Whether region r is bound (acquire: its table may be read after true). Any thread. */
bool tally_store_replica_bound(const struct tally_store *store, uint32_t replica);
/* The region bound to origin, or -1. Any thread. */
int32_t tally_store_replica_find(const struct tally_store *store, uint16_t origin);
/* Regions not bound yet. */
uint32_t tally_store_replica_free(const struct tally_store *store);
/*
 * The region bound to origin; binds the lowest free one first if there is
 * none: allocates its blocks, formats it, persists it, then writes and
 * persists the directory entry, then marks it bound. One thread at a time
 * (the control thread). Returns the region or -1 with error (all regions
 * bound, or the blocks cannot be allocated); nothing changes on error.
 */
int32_t tally_store_replica_bind(struct tally_store *store, uint16_t origin, char *error,
  size_t error_size);
/* Internal to the store: reads and checks the directory, attaches bound regions. */
int tally_store_replicas_open(struct tally_store *store, const char *path, char *error,
  size_t error_size);
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

/*
 * A name's index hash in this store (its secret key): valid in every shard
 * and replica table of the store, never in another node's. Any thread.
 */
static inline uint32_t tally_store_name_hash(const struct tally_store *store, const char *name,
  size_t name_len)
{
  return tally_shard_name_hash(&store->shards[0], name, name_len); /* every table: one key */
}

#endif
