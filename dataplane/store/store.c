/*
 * store.c — the persistent store file: creating, opening, checking,
 * recovering, persisting and closing it through libpmem2.
 *
 * A new store is built under "<path>.creating" (sized, formatted, persisted)
 * and linked into place only when whole, so a crash during creation never
 * leaves a half-made store at path. An existing store is checked (superblock
 * magic, version, checksum and geometry against the config, file size, every
 * shard header) before any shard is recovered. The mapping is asked for page
 * granularity, which every file allows; on real pmem libpmem2 reports a finer
 * one and the store can persist per burst. On hugetlbfs the file is padded
 * to whole huge pages (log mode's image; docs/store-layout.md). Byte map and geometry:
 * store_format.h; the replica directory: store_replicas.c.
 *
 * Thread: start-up before the lcores (open, create, recover), the persister
 * or the control thread (persist), shutdown after the lcores stop (close).
 * Never an lcore: this file may block, allocate and make syscalls.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <libpmem2.h>

#include "tally/name.h"
#include "store.h"
#include "store_format.h"

static void store_error(char *error, size_t error_size, const char *format, ...)
  __attribute__((format(printf, 3, 4)));

static void store_error(char *error, size_t error_size, const char *format, ...)
{
  if (error == NULL || error_size == 0) return;
  va_list args;
  va_start(args, format);
  vsnprintf(error, error_size, format, args);
  va_end(args);
}

static uint64_t clock_ns(clockid_t clock)
{
  struct timespec now;
  int rc = clock_gettime(clock, &now);
  assert(rc == 0);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static int geometry_check(const struct tally_store_geometry *geometry, const char *path,
  char *error, size_t error_size)
{
  assert(geometry != NULL);
  assert(path != NULL);
  if (geometry->shard_count < 1u || geometry->shard_count > TALLY_SHARDS_MAX) {
    store_error(error, error_size,
      "store %s: shard_count %u outside 1..%u (lcores, plus one on a cluster node)", path,
      geometry->shard_count, TALLY_SHARDS_MAX);
    return -1;
  }
  if (geometry->counters_max < TALLY_COUNTERS_MIN ||
    geometry->counters_max > TALLY_COUNTERS_MAX) {
    store_error(error, error_size, "store %s: counters_max %u outside %u..%u", path,
      geometry->counters_max, TALLY_COUNTERS_MIN, TALLY_COUNTERS_MAX);
    return -1;
  }
  if (geometry->replica_count > TALLY_REPLICA_REGIONS_MAX) {
    store_error(error, error_size, "store %s: replica_count %u outside 0..%u", path,
      geometry->replica_count, TALLY_REPLICA_REGIONS_MAX);
    return -1;
  }
  if (geometry->producers_max < TALLY_PRODUCERS_MIN ||
    geometry->producers_max > TALLY_PRODUCERS_MAX) {
    store_error(error, error_size, "store %s: producers_max %u outside %u..%u", path,
      geometry->producers_max, TALLY_PRODUCERS_MIN, TALLY_PRODUCERS_MAX);
    return -1;
  }
  return 0;
}

/* ---- Mapping ------------------------------------------------------------- */

static const char *granularity_name(enum pmem2_granularity granularity)
{
  switch (granularity) {
  case PMEM2_GRANULARITY_BYTE: return "byte";
  case PMEM2_GRANULARITY_CACHE_LINE: return "cache line";
  case PMEM2_GRANULARITY_PAGE: return "page";
  }
  return "unknown";
}

/* Maps store->fd whole (page granularity required, finer accepted). */
static int store_map(struct tally_store *store, const char *path, char *error,
  size_t error_size)
{
  assert(store->fd >= 0);
  assert(store->map == NULL);
  struct pmem2_config *config = NULL;
  if (pmem2_config_new(&config) != 0 || pmem2_source_from_fd(&store->source, store->fd) != 0 ||
    pmem2_config_set_required_store_granularity(config, PMEM2_GRANULARITY_PAGE) != 0 ||
    pmem2_map_new(&store->map, config, store->source) != 0) {
    store_error(error, error_size, "store %s: cannot map: %s", path, pmem2_errormsg());
    if (config != NULL) pmem2_config_delete(&config);
    return -1;
  }
  pmem2_config_delete(&config);
  store->base = pmem2_map_get_address(store->map);
  store->size = pmem2_map_get_size(store->map);
  store->super = (struct tally_superblock *)(void *)store->base;
  store->persist = pmem2_get_persist_fn(store->map);
  store->granularity_name = granularity_name(pmem2_map_get_store_granularity(store->map));
  assert(store->base != NULL);
  assert(store->persist != NULL);
  return 0;
}

/* Resolves the persistence mode against the granularity the mapping got. */
static int store_resolve_mode(struct tally_store *store, enum tally_persist_mode mode,
  const char *path, char *error, size_t error_size)
{
  assert(store->map != NULL);
  bool page = pmem2_map_get_store_granularity(store->map) == PMEM2_GRANULARITY_PAGE;
  if (mode == TALLY_PERSIST_PER_BURST && page) {
    store_error(error, error_size,
      "store %s: store.persist = per_burst needs byte or cache-line granularity "
      "(this mapping is page granularity)", path);
    return -1;
  }
  if (mode == TALLY_PERSIST_AUTO) mode = page ? TALLY_PERSIST_GROUP_COMMIT : TALLY_PERSIST_PER_BURST;
  store->mode = mode; /* LOG: any granularity; the image is never persisted while running */
  assert(store->mode == TALLY_PERSIST_GROUP_COMMIT || store->mode == TALLY_PERSIST_PER_BURST ||
    store->mode == TALLY_PERSIST_LOG);
  return 0;
}

/* Undoes store_map and closes the file; safe on a partly opened store. */
static void store_release(struct tally_store *store)
{
  for (uint32_t i = 0; i < TALLY_SHARDS_MAX; i++) tally_shard_dirty_close(&store->shards[i]);
  if (store->map != NULL) pmem2_map_delete(&store->map);
  if (store->source != NULL) pmem2_source_delete(&store->source);
  if (store->fd >= 0) close(store->fd);
  store->fd = -1;
  store->base = NULL;
  store->super = NULL;
  assert(store->map == NULL);
  assert(store->source == NULL);
}

static uint8_t *shard_region(const struct tally_store *store, uint32_t index)
{
  assert(index < store->geometry.shard_count);
  size_t region = tally_shard_region_size(store->geometry.counters_max,
    store->geometry.producers_max);
  size_t offset = tally_store_shard_offset(&store->geometry, index);
  assert(offset + region <= store->size);
  return store->base + offset;
}

void tally_store_persist_replica(struct tally_store *store, uint32_t replica)
{
  assert(replica < store->geometry.replica_count);
  assert(tally_store_replica_bound(store, replica));
  size_t offset = tally_store_replica_offset(&store->geometry, replica);
  size_t size = tally_store_replica_size(&store->geometry);
  assert(offset + size <= store->size);
  store->persist(store->base + offset, size);
}

/* ---- Creating ------------------------------------------------------------ */

static int fsync_parent(const char *path, char *error, size_t error_size)
{
  assert(path != NULL);
  char copy[PATH_MAX];
  if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy)) return -1;
  int dir = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0 || fsync(dir) != 0) {
    store_error(error, error_size, "store %s: cannot fsync its directory: %s", path,
      strerror(errno));
    if (dir >= 0) close(dir);
    return -1;
  }
  close(dir);
  return 0;
}

/*
 * Sizes the new file; blocks are reserved up front where the filesystem can,
 * for the superblock and the shards (the first `reserve` bytes). The replica
 * regions stay holes until one is bound (tally_store_replica_bind allocates
 * its blocks then), so reserving every region costs nothing until used.
 */
/*
 * hugetlbfs sizes files in whole huge pages only (ftruncate to anything else
 * is EINVAL): there the file is padded up to a whole number of them, the
 * padding never used. 0 elsewhere.
 */
static size_t huge_page_size(int fd)
{
  struct statfs status;
  if (fstatfs(fd, &status) != 0 || status.f_type != HUGETLBFS_MAGIC) return 0;
  assert(status.f_bsize > 0 && (status.f_bsize & (status.f_bsize - 1)) == 0);
  return (size_t)status.f_bsize;
}

static size_t padded_size(int fd, size_t size)
{
  size_t huge = huge_page_size(fd);
  return huge == 0 ? size : (size + huge - 1u) / huge * huge;
}

static int store_size_file(int fd, size_t size, size_t reserve, const char *path, char *error,
  size_t error_size)
{
  assert(fd >= 0);
  assert(size % TALLY_STORE_BLOCK_SIZE == 0);
  assert(reserve <= size);
  size = padded_size(fd, size);
  if (ftruncate(fd, (off_t)size) != 0) {
    store_error(error, error_size, "store %s: cannot size to %zu bytes: %s", path, size,
      strerror(errno));
    return -1;
  }
  int rc = posix_fallocate(fd, 0, (off_t)reserve);
  if (rc != 0 && rc != EOPNOTSUPP) { /* unsupported: ftruncate already sized it */
    store_error(error, error_size, "store %s: cannot allocate %zu bytes: %s", path, size,
      strerror(rc));
    return -1;
  }
  return 0;
}

static int store_format(struct tally_store *store, char *error, size_t error_size)
{
  struct tally_superblock *super = store->super;
  assert(store->size == padded_size(store->fd, tally_store_file_size(&store->geometry)));
  /* The name hash key: secret, random, this store's own (issue 14 H1). */
  if (sodium_init() < 0) {
    store_error(error, error_size, "store: libsodium initialisation failed");
    return -1;
  }
  randombytes_buf(super->name_key.bytes, sizeof super->name_key.bytes);
  super->name_key_crc = tally_name_key_crc(super);
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int rc = tally_shard_attach(&store->shards[i], shard_region(store, i), i,
      store->geometry.counters_max, store->geometry.producers_max, true);
    assert(rc == 0);
    tally_shard_set_name_key(&store->shards[i], &super->name_key);
  }
  /* Replica regions: none bound yet (the directory is zero: all free). */
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    assert(super->replica_directory[r].origin == 0 && super->replica_directory[r].crc == 0);
  }
  if (getrandom(super->store_uuid, sizeof(super->store_uuid), 0) !=
    (ssize_t)sizeof(super->store_uuid)) {
    store_error(error, error_size, "store: cannot get random bytes: %s", strerror(errno));
    return -1;
  }
  super->layout_version = TALLY_STORE_LAYOUT_VERSION;
  super->shard_count = store->geometry.shard_count;
  super->counters_max = store->geometry.counters_max;
  super->producers_max = store->geometry.producers_max;
  super->replica_count = store->geometry.replica_count;
  super->shard_region_size =
    tally_shard_region_size(store->geometry.counters_max, store->geometry.producers_max);
  super->file_size = tally_store_file_size(&store->geometry); /* hugetlbfs: without padding */
  super->created_unix_ns = clock_ns(CLOCK_REALTIME);
  super->clean_shutdown = 1; /* nothing to recover in a new store */
  super->open_count = 0;
  store->persist(store->base + TALLY_STORE_BLOCK_SIZE, store->size - TALLY_STORE_BLOCK_SIZE);
  super->magic = TALLY_STORE_MAGIC; /* the superblock last: shards before what names them */
  super->crc = tally_superblock_crc(super);
  store->persist(super, sizeof(*super));
  assert(super->crc == tally_superblock_crc(super));
  return 0;
}

/*
 * Builds the store under a temporary name and links it into place when
 * whole; link() fails if path appeared meanwhile, so nothing is clobbered.
 */
/*
 * One process at a time: an exclusive advisory lock on the store file, held
 * for as long as the descriptor is open (released by the kernel on exit,
 * kill -9 included). A second tallyd on the same store is refused.
 */
static int store_lock(int fd, const char *path, char *error, size_t error_size)
{
  assert(fd >= 0);
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
  if (errno == EWOULDBLOCK) {
    store_error(error, error_size, "store %s: in use by another process (locked)", path);
  } else {
    store_error(error, error_size, "store %s: cannot lock: %s", path, strerror(errno));
  }
  return -1;
}

static int store_create(struct tally_store *store, const char *path,
  enum tally_persist_mode mode, char *error, size_t error_size)
{
  assert(store->fd == -1);
  assert(store->geometry.shard_count >= 1u);
  char temporary[PATH_MAX];
  if (snprintf(temporary, sizeof(temporary), "%s.creating", path) >= (int)sizeof(temporary)) {
    store_error(error, error_size, "store %s: path too long", path);
    return -1;
  }
  (void)unlink(temporary); /* left by a creation that crashed */
  store->fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (store->fd < 0) {
    store_error(error, error_size, "store %s: cannot create %s: %s", path, temporary,
      strerror(errno));
    return -1;
  }
  size_t size = tally_store_file_size(&store->geometry);
  size_t reserve = tally_store_replica_offset(&store->geometry, 0);
  int rc = store_lock(store->fd, path, error, error_size);
  if (rc == 0) rc = store_size_file(store->fd, size, reserve, path, error, error_size);
  if (rc == 0) rc = store_map(store, path, error, error_size);
  if (rc == 0) rc = store_resolve_mode(store, mode, path, error, error_size);
  if (rc == 0) rc = store_format(store, error, error_size);
  if (rc == 0 && fsync(store->fd) != 0) {
    store_error(error, error_size, "store %s: fsync: %s", path, strerror(errno));
    rc = -1;
  }
  if (rc == 0 && link(temporary, path) != 0) {
    store_error(error, error_size, "store %s: cannot link %s into place: %s", path, temporary,
      strerror(errno));
    rc = -1;
  }
  (void)unlink(temporary);
  if (rc == 0) rc = fsync_parent(path, error, error_size);
  if (rc != 0) store_release(store);
  store->recovery.created = rc == 0;
  return rc;
}

/* ---- Opening an existing store ------------------------------------------- */


/* Names the first geometry field that differs between the file and the config. */
static int superblock_check_geometry(const struct tally_store *store, const char *path,
  char *error, size_t error_size)
{
  const struct tally_superblock *super = store->super;
  const struct tally_store_geometry *geometry = &store->geometry;
  assert(super->magic == TALLY_STORE_MAGIC);
  assert(super->crc == tally_superblock_crc(super));
  const char *field = NULL;
  uint64_t in_file = 0;
  uint64_t in_config = 0;
  if (super->shard_count != geometry->shard_count) {
    field = "shard_count (dataplane lcores, plus one on a cluster node)";
    in_file = super->shard_count;
    in_config = geometry->shard_count;
  } else if (super->counters_max != geometry->counters_max) {
    field = "counters_max";
    in_file = super->counters_max;
    in_config = geometry->counters_max;
  } else if (super->producers_max != geometry->producers_max) {
    field = "producers_max";
    in_file = super->producers_max;
    in_config = geometry->producers_max;
  } else if (super->replica_count != geometry->replica_count) {
    field = "replica_count (cluster nodes - 1)";
    in_file = super->replica_count;
    in_config = geometry->replica_count;
  }
  if (field == NULL) return 0;
  store_error(error, error_size, "store %s: %s is %llu in the file, %llu in the config", path,
    field, (unsigned long long)in_file, (unsigned long long)in_config);
  return -1;
}

static int superblock_check(struct tally_store *store, const char *path, char *error,
  size_t error_size)
{
  const struct tally_superblock *super = store->super;
  size_t expected = tally_store_file_size(&store->geometry);
  assert(store->base != NULL);
  assert(expected > TALLY_STORE_BLOCK_SIZE);
  if (super->magic != TALLY_STORE_MAGIC) {
    store_error(error, error_size, "store %s: not a tally store (bad superblock magic)", path);
    store->corrupt = true;
    return -1;
  }
  if (super->crc != tally_superblock_crc(super)) {
    store_error(error, error_size, "store %s: superblock checksum mismatch (corrupt)", path);
    store->corrupt = true;
    return -1;
  }
  if (super->layout_version != TALLY_STORE_LAYOUT_VERSION) {
    store_error(error, error_size, "store %s: layout version %u, this build reads %u%s", path,
      super->layout_version, TALLY_STORE_LAYOUT_VERSION, super->layout_version < 6u ?
      " (6: names hash under a secret per-store key; 5: 256-byte slots for tagged keys; no "
      "converter: move the file aside; a cluster node restores from its peers; a single node: "
      "save the counts with the old build, tallyctl list > counts, re-add them with "
      "tally-produce < counts; docs/store-layout.md)" : "");
    return -1;
  }
  if (super->name_key_crc != tally_name_key_crc(super)) {
    store_error(error, error_size, "store %s: name hash key checksum mismatch (corrupt)", path);
    store->corrupt = true;
    return -1;
  }
  if (superblock_check_geometry(store, path, error, error_size) != 0) return -1;
  if (super->file_size != expected || store->size != padded_size(store->fd, expected) ||
    super->shard_region_size !=
      tally_shard_region_size(store->geometry.counters_max, store->geometry.producers_max)) {
    store_error(error, error_size,
      "store %s: file is %zu bytes, superblock says %llu, geometry needs %zu (truncated?)",
      path, store->size, (unsigned long long)super->file_size, expected);
    store->corrupt = true;
    return -1;
  }
  return 0;
}

static int store_open_existing(struct tally_store *store, const char *path,
  enum tally_persist_mode mode, char *error, size_t error_size)
{
  assert(store->fd == -1);
  assert(store->map == NULL);
  /* Not through a symbolic link: whoever can plant one could aim tallyd at any file. */
  store->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (store->fd < 0) {
    store_error(error, error_size, "store %s: cannot open: %s", path,
      errno == ELOOP ? "a symbolic link (refused)" : strerror(errno));
    return -1;
  }
  if (store_lock(store->fd, path, error, error_size) != 0) {
    store_release(store);
    return -1;
  }
  struct stat status;
  if (fstat(store->fd, &status) != 0) {
    store_error(error, error_size, "store %s: fstat: %s", path, strerror(errno));
    store_release(store);
    return -1;
  }
  if (status.st_uid != geteuid()) {
    store_error(error, error_size, "store %s: owned by uid %u, not by tallyd's user (uid %u): "
      "refused", path, (unsigned)status.st_uid, (unsigned)geteuid());
    store_release(store);
    return -1;
  }
  if (S_ISREG(status.st_mode) && (size_t)status.st_size < TALLY_STORE_BLOCK_SIZE) {
    store_error(error, error_size, "store %s: file is %lld bytes, smaller than a superblock "
      "(truncated?)", path, (long long)status.st_size);
    store->corrupt = true;
    store_release(store);
    return -1;
  }
  if (store_map(store, path, error, error_size) != 0 ||
    store_resolve_mode(store, mode, path, error, error_size) != 0 ||
    superblock_check(store, path, error, error_size) != 0) {
    store_release(store);
    return -1;
  }
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    if (tally_shard_attach(&store->shards[i], shard_region(store, i), i,
      store->geometry.counters_max, store->geometry.producers_max, false) != 0) {
      store_error(error, error_size, "store %s: shard %u header is corrupt", path, i);
      store->corrupt = true;
      store_release(store);
      return -1;
    }
    tally_shard_set_name_key(&store->shards[i], &store->super->name_key);
  }
  if (tally_store_replicas_open(store, path, error, error_size) != 0) {
    store->corrupt = true; /* a bad directory entry or a bound region's header */
    store_release(store);
    return -1;
  }
  return 0;
}

/* ---- Open, persist, close ------------------------------------------------ */

static void store_recover(struct tally_store *store)
{
  uint64_t start_ns = clock_ns(CLOCK_MONOTONIC);
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    struct tally_shard *shard = &store->shards[i];
    if (store->mode == TALLY_PERSIST_PER_BURST) {
      shard->flush = pmem2_get_flush_fn(store->map);
      shard->drain = pmem2_get_drain_fn(store->map);
      assert(shard->flush != NULL);
      assert(shard->drain != NULL);
    }
    tally_shard_recover(shard, &store->recovery.shards[i]);
    /* Changes from here on are tracked for the cluster's scan (issue 12); out of
     * memory, the shard is not, and every scan reads it whole. */
    (void)tally_shard_dirty_open(shard);
  }
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) continue; /* never touched */
    tally_shard_recover(&store->replicas[r], &store->recovery.replicas[r]);
  }
  struct tally_superblock *super = store->super;
  store->recovery.was_clean = super->clean_shutdown == 1;
  super->clean_shutdown = 0;
  super->open_count++;
  store->recovery.open_count = super->open_count;
  store->persist(store->base, store->size);
  store->recovery.recovery_ns = clock_ns(CLOCK_MONOTONIC) - start_ns;
}

int tally_store_open(struct tally_store *store, const char *path,
  const struct tally_store_geometry *geometry, enum tally_persist_mode mode, char *error,
  size_t error_size)
{
  assert(store != NULL);
  assert(path != NULL);
  assert(geometry != NULL);
  memset(store, 0, sizeof(*store));
  store->fd = -1;
  if (geometry_check(geometry, path, error, error_size) != 0) return -1;
  store->geometry = *geometry;
  int rc;
  struct stat link_status; /* the path itself: a symbolic link is opened (and refused) */
  if (lstat(path, &link_status) == 0) {
    rc = store_open_existing(store, path, mode, error, error_size);
  } else if (errno == ENOENT) {
    rc = store_create(store, path, mode, error, error_size);
  } else {
    store_error(error, error_size, "store %s: %s", path, strerror(errno));
    rc = -1;
  }
  if (rc != 0) return -1;
  store_recover(store);
  assert(store->super->magic == TALLY_STORE_MAGIC);
  assert(store->super->clean_shutdown == 0);
  return 0;
}

void tally_store_persist(struct tally_store *store)
{
  assert(store != NULL);
  assert(store->base != NULL);
  store->persist(store->base, store->size);
}

void tally_store_close(struct tally_store *store)
{
  assert(store != NULL);
  assert(store->super != NULL);
  store->persist(store->base, store->size);
  store->super->clean_shutdown = 1;
  store->persist(&store->super->clean_shutdown, sizeof(store->super->clean_shutdown));
  store_release(store);
  assert(store->fd == -1);
}
