/*
 * store_replicas.c — the store's replica directory: which origin node's
 * contribution each replica region holds.
 *
 * A cluster node's store reserves TALLY_REPLICA_REGIONS_MAX replica regions
 * after its shards, whatever the configured node count, so that membership
 * can change at runtime without a new store. A region is bound to an origin
 * node id the first time that node is a member, and stays bound to it for the
 * store's life: a node removed from the membership keeps its region (its
 * counts are real increments and stay summed), and a node re-added resumes on
 * it. Binding order, so that a crash anywhere leaves either a free region or
 * a whole bound one:
 *   1. allocate the region's blocks (posix_fallocate: a write into a hole of
 *      a full filesystem would be SIGBUS, not an error);
 *   2. zero and format the region (header, empty log) and persist it;
 *   3. write the directory entry (origin, crc: one aligned 8-byte store) and
 *      persist it;
 *   4. publish replica_bound[r] (release) for readers on other threads.
 * A crash after 2 and before 3 leaves a formatted but free region, formatted
 * again by the next bind. At open every entry is checked (crc, no origin
 * twice) and every bound region's header; a bad one makes the store corrupt
 * (a cluster node moves it aside and restores from its peers). Byte map:
 * docs/store-layout.md, "Replica directory"; the regions' offsets and the
 * entries' checksum: store_format.c.
 *
 * Thread: start-up before the lcores (tally_store_replicas_open, from
 * store.c), the control thread (tally_store_replica_bind), any thread (bound,
 * find, free). Calls nothing in store.c.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libpmem2.h>

#include "tally/name.h"
#include "store.h"
#include "store_format.h"

bool tally_store_replica_bound(const struct tally_store *store, uint32_t replica)
{
  assert(store != NULL);
  assert(replica < TALLY_REPLICA_REGIONS_MAX);
  return __atomic_load_n(&store->replica_bound[replica], __ATOMIC_ACQUIRE);
}

int32_t tally_store_replica_find(const struct tally_store *store, uint16_t origin)
{
  assert(store != NULL);
  assert(origin != 0);
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (tally_store_replica_bound(store, r) && store->replica_origin[r] == origin) {
      return (int32_t)r;
    }
  }
  return -1;
}

uint32_t tally_store_replica_free(const struct tally_store *store)
{
  assert(store != NULL);
  uint32_t free_count = 0;
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) free_count++;
  }
  assert(free_count <= TALLY_REPLICA_REGIONS_MAX);
  return free_count;
}

/* Points the region's shard view at its bytes (and with format, formats it). */
static int attach(struct tally_store *store, uint32_t replica, bool format)
{
  size_t offset = tally_store_replica_offset(&store->geometry, replica);
  assert(offset + tally_store_replica_size(&store->geometry) <= store->size);
  struct tally_shard *shard = &store->replicas[replica];
  int rc = tally_shard_attach(shard, store->base + offset, store->geometry.shard_count + replica,
    tally_store_replica_counters(&store->geometry), tally_store_replica_producers(&store->geometry),
    format);
  if (rc == 0) tally_shard_set_name_key(shard, &store->super->name_key); /* the store's */
  if (rc == 0 && store->mode == TALLY_PERSIST_PER_BURST) {
    shard->flush = pmem2_get_flush_fn(store->map);
    shard->drain = pmem2_get_drain_fn(store->map);
  }
  assert(rc != 0 || shard->header != NULL);
  return rc;
}

int tally_store_replicas_open(struct tally_store *store, const char *path, char *error,
  size_t error_size)
{
  assert(store != NULL && store->super != NULL);
  assert(store->geometry.replica_count <= TALLY_REPLICA_REGIONS_MAX);
  const struct tally_superblock *super = store->super;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    struct tally_replica_binding binding = super->replica_directory[r];
    if (binding.origin == 0 && binding.crc == 0) continue; /* free */
    if (r >= store->geometry.replica_count || binding.origin == 0 ||
        binding.origin > UINT16_MAX ||
        binding.crc != tally_replica_binding_crc(r, binding.origin)) {
      snprintf(error, error_size, "store %s: replica directory entry %u is corrupt", path, r);
      return -1;
    }
    if (tally_store_replica_find(store, (uint16_t)binding.origin) >= 0) {
      snprintf(error, error_size, "store %s: replica directory names node %u twice (corrupt)",
        path, binding.origin);
      return -1;
    }
    if (attach(store, r, false) != 0) {
      snprintf(error, error_size, "store %s: replica table %u (node %u) header is corrupt", path,
        r, binding.origin);
      return -1;
    }
    store->replica_origin[r] = (uint16_t)binding.origin;
    __atomic_store_n(&store->replica_bound[r], true, __ATOMIC_RELEASE);
  }
  return 0;
}

/* Step 1: the region's blocks, so that writing it can never fault on a full disk. */
static int allocate(struct tally_store *store, uint32_t replica, char *error, size_t error_size)
{
  struct stat status;
  if (fstat(store->fd, &status) != 0 || !S_ISREG(status.st_mode)) return 0; /* a device */
  size_t offset = tally_store_replica_offset(&store->geometry, replica);
  size_t size = tally_store_replica_size(&store->geometry);
  assert(offset + size <= (size_t)status.st_size);
  int rc = posix_fallocate(store->fd, (off_t)offset, (off_t)size);
  if (rc != 0 && rc != EOPNOTSUPP) {
    snprintf(error, error_size, "store: cannot allocate %zu bytes for a replica table: %s", size,
      strerror(rc));
    return -1;
  }
  return 0;
}

int32_t tally_store_replica_bind(struct tally_store *store, uint16_t origin, char *error,
  size_t error_size)
{
  assert(store != NULL && store->super != NULL);
  assert(origin != 0);
  int32_t found = tally_store_replica_find(store, origin);
  if (found >= 0) return found;
  uint32_t replica = 0;
  while (replica < store->geometry.replica_count && tally_store_replica_bound(store, replica)) {
    replica++;
  }
  if (replica == store->geometry.replica_count) {
    snprintf(error, error_size, "every one of the store's %u replica tables is bound to another "
      "node (a store holds at most %u distinct peers over its life)",
      store->geometry.replica_count, store->geometry.replica_count);
    return -1;
  }
  if (allocate(store, replica, error, error_size) != 0) return -1;
  /* Step 2, on zeroes: whatever an interrupted bind (or a stray write) left is gone. */
  memset(store->base + tally_store_replica_offset(&store->geometry, replica), 0,
    tally_store_replica_size(&store->geometry));
  int rc = attach(store, replica, true);
  assert(rc == 0);
  (void)rc;
  store->persist(store->base + tally_store_replica_offset(&store->geometry, replica),
    tally_store_replica_size(&store->geometry));
  struct tally_replica_binding binding = { .origin = origin,
    .crc = tally_replica_binding_crc(replica, origin) };
  uint64_t word;
  memcpy(&word, &binding, sizeof word);
  __atomic_store_n((uint64_t *)(void *)&store->super->replica_directory[replica], word,
    __ATOMIC_RELEASE); /* step 3: one 8-byte store */
  store->persist(&store->super->replica_directory[replica], sizeof binding);
  store->replica_origin[replica] = origin;
  __atomic_store_n(&store->replica_bound[replica], true, __ATOMIC_RELEASE); /* step 4 */
  assert(tally_store_replica_find(store, origin) == (int32_t)replica);
  return (int32_t)replica;
}
