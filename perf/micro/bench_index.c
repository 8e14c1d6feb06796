/*
 * bench_index.c — name-to-counter lookup (name hash + tally_shard_find) in a
 * shard holding 1k, 10k, 100k, 1M (and with TALLY_BENCH_LARGE=1, 10M)
 * counters: the slot table is also the on-media index, so this is the cost
 * of finding a counter as the table outgrows the caches and the TLB.
 *
 * Every lookup hits, at a uniformly random slot: the keys are stored in a
 * shuffled order and read sequentially, so reading a key is a streaming
 * access and the cost measured is the table's. The filled table (10M: 2 GiB
 * of slots + 320 MB of keys) is built once per size and kept while that
 * size runs, because Google Benchmark calls the body several times.
 * Items = lookups.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "shard.h"

#include "bench.h"
#include "store_format.h"

#define KEY_NAME_SIZE 28u
#define LOOKUP_BATCH 256u
#define SHUFFLE_SEED 0x9e3779b97f4a7c15ull

struct index_key {
  char name[KEY_NAME_SIZE];
  uint32_t length;
};
static_assert(sizeof(struct index_key) == 32u, "keys are half a cache line");

struct index_table {
  uint32_t counters; /* 0: not built */
  struct bench_shard shard;
  struct index_key *keys;
  size_t keys_size;
};

static struct index_table index_table;
static bool index_table_atexit;

static void index_table_release(void)
{
  if (index_table.counters == 0) return;
  assert(index_table.keys != NULL);
  bench_shard_destroy(&index_table.shard);
  int rc = munmap(index_table.keys, index_table.keys_size);
  assert(rc == 0);
  memset(&index_table, 0, sizeof(index_table));
}

static uint64_t xorshift64(uint64_t *state)
{
  assert(*state != 0);
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

/* Fisher-Yates over the keys with a fixed seed: the same order every run. */
static void keys_shuffle(struct index_key *keys, uint32_t count)
{
  assert(keys != NULL);
  assert(count >= 1);
  uint64_t random = SHUFFLE_SEED;
  for (uint32_t i = count - 1u; i > 0; i--) {
    uint32_t j = (uint32_t)(xorshift64(&random) % ((uint64_t)i + 1u));
    struct index_key swap = keys[i];
    keys[i] = keys[j];
    keys[j] = swap;
  }
}

/* Builds a table of counters names (and its shuffled keys); 0 or -1. */
static int index_table_build(uint32_t counters)
{
  assert(counters >= TALLY_COUNTERS_MIN);
  assert(counters <= TALLY_COUNTERS_MAX);
  if (index_table.counters == counters) return 0;
  index_table_release();
  size_t keys_size = (size_t)counters * sizeof(struct index_key);
  void *keys = mmap(NULL, keys_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (keys == MAP_FAILED) return -1;
  index_table.keys = keys;
  index_table.keys_size = keys_size;
  if (bench_shard_create(&index_table.shard, counters) != 0) {
    munmap(keys, keys_size);
    memset(&index_table, 0, sizeof(index_table));
    return -1;
  }
  index_table.counters = counters;
  for (uint32_t i = 0; i < counters; i++) {
    struct index_key *key = &index_table.keys[i];
    key->length = bench_name(key->name, KEY_NAME_SIZE, "idx.counter.", i);
    uint32_t hash = tally_shard_name_hash(index_table.shard.shard, key->name, key->length);
    if (tally_shard_add(index_table.shard.shard, key->name, key->length, hash, 1) != TALLY_OK) {
      index_table_release();
      return -1;
    }
  }
  keys_shuffle(index_table.keys, counters);
  assert(tally_shard_counters_used(index_table.shard.shard) == counters);
  return 0;
}

void bench_shard_find(struct bench_state *state)
{
  int64_t counters = bench_range(state, 0);
  if (!index_table_atexit) index_table_atexit = atexit(index_table_release) == 0;
  if (counters < TALLY_COUNTERS_MIN || counters > TALLY_COUNTERS_MAX ||
    index_table_build((uint32_t)counters) != 0) {
    bench_fail(state, "shard_find: cannot build the table (memory?)");
    return;
  }
  const struct tally_shard *shard = index_table.shard.shard;
  const struct index_key *keys = index_table.keys;
  assert(shard != NULL);
  assert(index_table.counters == (uint32_t)counters);
  uint32_t cursor = 0;
  int64_t missed = 0;
  while (bench_keep_running_batch(state, LOOKUP_BATCH)) {
    for (uint32_t step = 0; step < LOOKUP_BATCH; step++) {
      const struct index_key *key = &keys[cursor];
      cursor = cursor + 1u == index_table.counters ? 0 : cursor + 1u;
      uint32_t hash = tally_shard_name_hash(shard, key->name, key->length);
      missed += tally_shard_find(shard, key->name, key->length, hash) < 0;
    }
  }
  bench_set_items(state, bench_iterations(state));
  bench_counter(state, "table_MiB",
    (double)index_table.shard.memory_size / (1024.0 * 1024.0));
  if (missed != 0) bench_fail(state, "shard_find: a counter in the table was not found");
}
