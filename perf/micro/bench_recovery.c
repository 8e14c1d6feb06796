/*
 * bench_recovery.c — recovery time per GiB of store: tally_store_open on an
 * existing store (map, check the superblock and every shard header, replay
 * or discard the redo log, check every slot's identity and value checksums,
 * every producer record, then persist the superblock), which is what a
 * restart after a crash or kill -9 pays before serving.
 *
 * The store has one shard with counters_max = arg 0 counters, every one of
 * them in use (the worst case: every slot's checksums are computed): 393216
 * counters make a 64 MiB file, 786432 a 128 MiB one, 4096 a 1 MiB one (the
 * CI smoke size). It is built once per size and kept while that size runs.
 * The page cache is warm (dropping it needs root): this is the CPU and
 * mapping cost, a floor under a cold start from disk.
 *
 * Reports bytes/s (bytes = store bytes opened), ns_per_GiB (wall time of
 * tally_store_open per GiB of store) and scan_ns_per_GiB (the store's own
 * recovery_ns: the checks and the persist, without mapping the file).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "shard.h"
#include "store.h"

#include "bench.h"
#include "store_format.h"

#define RECOVERY_PRODUCERS_MAX 16u
#define RECOVERY_NAME_SIZE 32u
#define GIB_BYTES (1024.0 * 1024.0 * 1024.0)

struct recovery_file {
  uint32_t counters; /* 0: none built */
  char path[TALLY_PATH_MAX];
  struct tally_store_geometry geometry;
  size_t file_size;
};

static struct recovery_file recovery_file;
static bool recovery_file_atexit;

static void recovery_file_remove(void)
{
  if (recovery_file.counters == 0) return;
  assert(recovery_file.path[0] != '\0');
  unlink(recovery_file.path);
  memset(&recovery_file, 0, sizeof(recovery_file));
}

static uint64_t monotonic_ns(void)
{
  struct timespec now;
  int rc = clock_gettime(CLOCK_MONOTONIC, &now);
  assert(rc == 0);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Fills every counter of shard 0; 0 or -1. */
static int recovery_fill(struct tally_store *store, uint32_t counters)
{
  struct tally_shard *shard = &store->shards[0];
  assert(shard->counters_max == counters);
  char name[RECOVERY_NAME_SIZE];
  for (uint32_t i = 0; i < counters; i++) {
    uint32_t length = bench_name(name, sizeof(name), "recovery.counter.", i);
    uint32_t hash = tally_shard_name_hash(shard, name, length);
    if (tally_shard_add(shard, name, length, hash, (int64_t)i + 1) != TALLY_OK) return -1;
  }
  assert(tally_shard_counters_used(shard) == counters);
  return 0;
}

/* Creates, fills and cleanly closes the store of counters counters; 0 or -1. */
static int recovery_file_build(uint32_t counters, struct tally_store *store)
{
  assert(counters >= TALLY_COUNTERS_MIN);
  assert(counters <= TALLY_COUNTERS_MAX);
  if (recovery_file.counters == counters) return 0;
  recovery_file_remove();
  char what[32];
  snprintf(what, sizeof(what), "recovery-%u", counters);
  if (bench_store_path(recovery_file.path, sizeof(recovery_file.path), what) != 0) return -1;
  if (unlink(recovery_file.path) != 0 && errno != ENOENT) return -1;
  recovery_file.geometry = (struct tally_store_geometry) {
    .shard_count = 1, .counters_max = counters, .producers_max = RECOVERY_PRODUCERS_MAX,
  };
  char error[256];
  if (tally_store_open(store, recovery_file.path, &recovery_file.geometry,
    TALLY_PERSIST_GROUP_COMMIT, error, sizeof(error)) != 0) {
    fprintf(stderr, "recovery: %s\n", error);
    return -1;
  }
  recovery_file.counters = counters;
  recovery_file.file_size = store->size;
  int rc = recovery_fill(store, counters);
  tally_store_close(store);
  if (rc != 0) recovery_file_remove();
  return rc;
}

/* One open, timed; the checks and the close are not. Returns 0 or -1. */
static int recovery_open_once(struct bench_state *state, struct tally_store *store,
  uint64_t *open_ns, uint64_t *scan_ns)
{
  assert(recovery_file.counters > 0);
  assert(store != NULL);
  char error[256];
  uint64_t start_ns = monotonic_ns();
  int rc = tally_store_open(store, recovery_file.path, &recovery_file.geometry,
    TALLY_PERSIST_GROUP_COMMIT, error, sizeof(error));
  uint64_t elapsed_ns = monotonic_ns() - start_ns;
  bench_pause(state);
  if (rc != 0) {
    fprintf(stderr, "recovery: %s\n", error);
    bench_resume(state);
    return -1;
  }
  *open_ns += elapsed_ns;
  *scan_ns += store->recovery.recovery_ns;
  const struct tally_shard_recovery *shard = &store->recovery.shards[0];
  bool whole = store->recovery.was_clean && shard->counters_used == recovery_file.counters &&
    shard->slots_quarantined == 0 && shard->slots_torn == 0;
  tally_store_close(store);
  bench_resume(state);
  return whole ? 0 : -1;
}

void bench_recovery(struct bench_state *state)
{
  assert(state != NULL);
  int64_t counters = bench_range(state, 0);
  struct tally_store *store = malloc(sizeof(*store));
  if (!recovery_file_atexit) recovery_file_atexit = atexit(recovery_file_remove) == 0;
  if (store == NULL || counters < TALLY_COUNTERS_MIN || counters > TALLY_COUNTERS_MAX ||
    recovery_file_build((uint32_t)counters, store) != 0) {
    bench_fail(state, "recovery: cannot build the store file");
    free(store);
    return;
  }
  assert(recovery_file.counters == (uint32_t)counters);
  assert(recovery_file.file_size > 0);
  uint64_t open_ns = 0;
  uint64_t scan_ns = 0;
  int64_t failed = 0;
  while (bench_keep_running(state)) {
    failed -= recovery_open_once(state, store, &open_ns, &scan_ns);
  }
  int64_t opens = bench_iterations(state);
  double gib = (double)recovery_file.file_size / GIB_BYTES;
  bench_set_bytes(state, opens * (int64_t)recovery_file.file_size);
  if (opens > 0) {
    bench_counter(state, "ns_per_GiB", (double)open_ns / (double)opens / gib);
    bench_counter(state, "scan_ns_per_GiB", (double)scan_ns / (double)opens / gib);
  }
  bench_counter(state, "store_MiB", (double)recovery_file.file_size / (1024.0 * 1024.0));
  if (failed != 0) bench_fail(state, "recovery: an open failed or found damage");
  free(store);
}
