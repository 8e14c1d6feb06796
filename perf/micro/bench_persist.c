/*
 * bench_persist.c — what durability costs per increment, on a real store
 * file (tally_store_open in $TALLY_BENCH_DIR, default /tmp; page
 * granularity, so a persist is an msync):
 *
 *   persist_msync_per_add          tally_shard_add, then msync(MS_SYNC) of the
 *                                  4 KiB page holding the counter's slot: the
 *                                  price of making every increment durable
 *                                  on its own;
 *   persist_group_commit/adds:N    N adds, then one tally_store_persist (what
 *                                  the persister thread does every
 *                                  commit_interval_ms); N = 32 is a burst.
 *
 * Both count one operation per add (ns/op is per increment, the persist
 * amortised), over 64 hot names spread across the slot table. Items = adds.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "shard.h"
#include "store.h"

#include "bench.h"
#include "store_format.h"

#define PERSIST_COUNTERS_MAX 4096u
#define PERSIST_PRODUCERS_MAX 16u
#define PERSIST_NAMES 64u
#define PERSIST_NAME_SIZE 24u
#define PERSIST_PAGE_SIZE 4096u

struct persist_fixture {
  char path[TALLY_PATH_MAX];
  struct tally_store store;
  struct tally_shard *shard;
  char names[PERSIST_NAMES][PERSIST_NAME_SIZE];
  uint32_t lengths[PERSIST_NAMES];
  void *pages[PERSIST_NAMES]; /* the page holding each name's slot */
};

/* Creates every name with value 0 and finds its slot's page; 0 or -1. */
static int persist_names_create(struct persist_fixture *fixture)
{
  assert(fixture->shard != NULL);
  assert(tally_shard_counters_used(fixture->shard) == 0);
  for (uint32_t i = 0; i < PERSIST_NAMES; i++) {
    const char *name = fixture->names[i];
    uint32_t length = bench_name(fixture->names[i], PERSIST_NAME_SIZE, "persist.hot.", i);
    fixture->lengths[i] = length;
    uint32_t hash = tally_shard_name_hash(fixture->shard, name, length);
    if (tally_shard_add(fixture->shard, name, length, hash, 0) != TALLY_OK) return -1;
    int64_t slot = tally_shard_find(fixture->shard, name, length, hash);
    if (slot < 0) return -1;
    uintptr_t address = (uintptr_t)&fixture->shard->slots[slot];
    fixture->pages[i] = (void *)(address & ~(uintptr_t)(PERSIST_PAGE_SIZE - 1u));
  }
  return 0;
}

/* Opens a fresh store; returns the fixture or NULL (reported through state). */
static struct persist_fixture *persist_open(struct bench_state *state)
{
  assert(state != NULL);
  struct persist_fixture *fixture = calloc(1, sizeof(*fixture));
  if (fixture == NULL) {
    bench_fail(state, "persist: out of memory");
    return NULL;
  }
  char error[256] = "path too long";
  struct tally_store_geometry geometry = {
    .shard_count = 1, .counters_max = PERSIST_COUNTERS_MAX,
    .producers_max = PERSIST_PRODUCERS_MAX,
  };
  if (bench_store_path(fixture->path, sizeof(fixture->path), "persist") != 0 ||
    (unlink(fixture->path) != 0 && errno != ENOENT) ||
    tally_store_open(&fixture->store, fixture->path, &geometry, TALLY_PERSIST_GROUP_COMMIT,
      error, sizeof(error)) != 0) {
    fprintf(stderr, "persist: %s\n", error);
    bench_fail(state, "persist: cannot create the store file");
    free(fixture);
    return NULL;
  }
  fixture->shard = &fixture->store.shards[0];
  if (persist_names_create(fixture) != 0) {
    bench_fail(state, "persist: cannot create the counters");
    tally_store_close(&fixture->store);
    unlink(fixture->path);
    free(fixture);
    return NULL;
  }
  assert(fixture->store.super != NULL);
  return fixture;
}

/* Checks that every add landed, closes and removes the store. */
static void persist_close(struct bench_state *state, struct persist_fixture *fixture,
  int64_t adds)
{
  assert(fixture != NULL);
  assert(adds >= 0);
  int64_t sum = 0;
  for (uint32_t i = 0; i < PERSIST_NAMES; i++) {
    const char *name = fixture->names[i];
    uint32_t length = fixture->lengths[i];
    int64_t slot = tally_shard_find(fixture->shard, name, length,
      tally_shard_name_hash(fixture->shard, name, length));
    if (slot >= 0) sum += tally_shard_slot_value(fixture->shard, (uint32_t)slot);
  }
  if (sum != adds) bench_fail(state, "persist: the store lost an increment");
  tally_store_close(&fixture->store);
  if (unlink(fixture->path) != 0) bench_fail(state, "persist: cannot remove the store file");
  free(fixture);
}

/* One increment of name i (hash included, as on the dataplane); 0 or 1 on failure. */
static inline int64_t persist_add(struct persist_fixture *fixture, uint32_t i)
{
  assert(i < PERSIST_NAMES);
  const char *name = fixture->names[i];
  uint32_t length = fixture->lengths[i];
  uint32_t hash = tally_shard_name_hash(fixture->shard, name, length);
  return tally_shard_add(fixture->shard, name, length, hash, 1) != TALLY_OK;
}

void bench_persist_msync_per_add(struct bench_state *state)
{
  struct persist_fixture *fixture = persist_open(state);
  if (fixture == NULL) return;
  assert(fixture->shard != NULL);
  assert(fixture->store.mode == TALLY_PERSIST_GROUP_COMMIT);
  uint32_t i = 0;
  int64_t failed = 0;
  while (bench_keep_running(state)) {
    failed += persist_add(fixture, i);
    failed += msync(fixture->pages[i], PERSIST_PAGE_SIZE, MS_SYNC) != 0;
    i = (i + 1u) % PERSIST_NAMES;
  }
  int64_t adds = bench_iterations(state);
  bench_set_items(state, adds);
  if (failed != 0) bench_fail(state, "persist_msync_per_add: an add or msync failed");
  persist_close(state, fixture, adds);
}

void bench_persist_group_commit(struct bench_state *state)
{
  int64_t adds_per_persist = bench_range(state, 0);
  assert(adds_per_persist >= 1);
  struct persist_fixture *fixture = persist_open(state);
  if (fixture == NULL) return;
  assert(fixture->shard != NULL);
  assert(fixture->store.mode == TALLY_PERSIST_GROUP_COMMIT);
  uint32_t i = 0;
  int64_t failed = 0;
  while (bench_keep_running_batch(state, adds_per_persist)) {
    for (int64_t step = 0; step < adds_per_persist; step++) {
      failed += persist_add(fixture, i);
      i = (i + 1u) % PERSIST_NAMES;
    }
    tally_store_persist(&fixture->store);
  }
  int64_t adds = bench_iterations(state);
  bench_set_items(state, adds);
  if (failed != 0) bench_fail(state, "persist_group_commit: an add failed");
  persist_close(state, fixture, adds);
}
