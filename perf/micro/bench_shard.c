/*
 * bench_shard.c — the case for sharding. The same stream of increments over
 * 1024 hot names, run at 1 and 2 threads, three ways:
 *
 *   shard_add_per_thread     each thread owns a shard (Tally's design):
 *                            name hash + tally_shard_add, no shared writes;
 *   atomic_add_shared        every thread does __atomic_fetch_add on one
 *                            shared int64 (the floor of any shared-counter
 *                            design: no hash, no lookup, one cache line);
 *   atomic_add_shared_table  one shared table: name hash + tally_shard_find,
 *                            then __atomic_fetch_add on the slot's value (what
 *                            a shared-table design really does per increment).
 *
 * Items = increments, summed over threads; registered with real time, so
 * items/s is the aggregate rate of all threads.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

#include "tally/name.h"
#include "shard.h"

#include "bench.h"
#include "store_format.h"

#define HOT_NAMES 1024u
#define HOT_NAME_SIZE 32u
#define HOT_COUNTERS_MAX 4096u

struct hot_names {
  char names[HOT_NAMES][HOT_NAME_SIZE];
  uint32_t lengths[HOT_NAMES];
};

static struct hot_names hot_names;
static pthread_once_t hot_names_once = PTHREAD_ONCE_INIT;

/* Written by every thread of atomic_add_shared: one cache line, shared. */
static int64_t shared_counter __attribute__((aligned(64)));

/* The table of atomic_add_shared_table, built once, kept for the process. */
static struct bench_shard shared_table;
static int shared_table_rc = -1;
static pthread_once_t shared_table_once = PTHREAD_ONCE_INIT;

static void hot_names_build(void)
{
  for (uint32_t i = 0; i < HOT_NAMES; i++) {
    hot_names.lengths[i] = bench_name(hot_names.names[i], HOT_NAME_SIZE, "svc.requests.", i);
    assert(tally_name_valid(hot_names.names[i], hot_names.lengths[i]));
  }
  assert(hot_names.lengths[HOT_NAMES - 1u] > 0);
}

/* Creates every hot name with value 0; 0 or -1. */
static int hot_names_create(struct tally_shard *shard)
{
  assert(shard != NULL);
  assert(hot_names.lengths[0] > 0);
  for (uint32_t i = 0; i < HOT_NAMES; i++) {
    const char *name = hot_names.names[i];
    uint32_t length = hot_names.lengths[i];
    uint32_t hash = tally_shard_name_hash(shard, name, length);
    if (tally_shard_add(shard, name, length, hash, 0) != TALLY_OK) {
      return -1;
    }
  }
  return 0;
}

/* Sum of every hot name's value in shard. */
static int64_t hot_names_sum(const struct tally_shard *shard)
{
  assert(shard != NULL);
  int64_t sum = 0;
  for (uint32_t i = 0; i < HOT_NAMES; i++) {
    const char *name = hot_names.names[i];
    uint32_t length = hot_names.lengths[i];
    int64_t slot = tally_shard_find(shard, name, length,
      tally_shard_name_hash(shard, name, length));
    if (slot >= 0) sum += tally_shard_slot_value(shard, (uint32_t)slot);
  }
  assert(sum >= 0);
  return sum;
}

static void shared_table_build(void)
{
  pthread_once(&hot_names_once, hot_names_build);
  assert(hot_names.lengths[0] > 0);
  shared_table_rc = bench_shard_create(&shared_table, HOT_COUNTERS_MAX);
  if (shared_table_rc == 0) shared_table_rc = hot_names_create(shared_table.shard);
  assert(shared_table_rc == 0 || shared_table_rc == -1);
}

/* Where a thread starts in the names, so threads are not in lockstep. */
static uint32_t thread_start(const struct bench_state *state)
{
  int threads = bench_threads(state);
  int index = bench_thread_index(state);
  assert(threads >= 1);
  assert(index >= 0);
  assert(index < threads);
  return (uint32_t)index * (HOT_NAMES / (uint32_t)threads);
}

void bench_shard_add_per_thread(struct bench_state *state)
{
  assert(state != NULL);
  pthread_once(&hot_names_once, hot_names_build);
  assert(hot_names.lengths[0] > 0);
  struct bench_shard shard;
  if (bench_shard_create(&shard, HOT_COUNTERS_MAX) != 0 || hot_names_create(shard.shard) != 0) {
    bench_fail(state, "shard_add_per_thread: cannot set up the shard");
    return;
  }
  uint32_t start = thread_start(state);
  int64_t failed = 0;
  while (bench_keep_running_batch(state, HOT_NAMES)) {
    for (uint32_t step = 0; step < HOT_NAMES; step++) {
      uint32_t i = (start + step) % HOT_NAMES;
      const char *name = hot_names.names[i];
      uint32_t length = hot_names.lengths[i];
      uint32_t hash = tally_shard_name_hash(shard.shard, name, length);
      failed += tally_shard_add(shard.shard, name, length, hash, 1) != TALLY_OK;
    }
  }
  int64_t increments = bench_iterations(state);
  bench_set_items(state, increments);
  if (failed != 0 || hot_names_sum(shard.shard) != increments) {
    bench_fail(state, "shard_add_per_thread: the shard lost an increment");
  }
  bench_shard_destroy(&shard);
}

void bench_atomic_add_shared(struct bench_state *state)
{
  assert(state != NULL);
  assert(((uintptr_t)&shared_counter % 64u) == 0);
  int64_t before = __atomic_load_n(&shared_counter, __ATOMIC_RELAXED);
  while (bench_keep_running_batch(state, HOT_NAMES)) {
    for (uint32_t step = 0; step < HOT_NAMES; step++) {
      __atomic_fetch_add(&shared_counter, 1, __ATOMIC_RELAXED);
    }
  }
  int64_t increments = bench_iterations(state);
  bench_set_items(state, increments);
  /* Other threads add too, so only a lower bound holds for this thread. */
  if (__atomic_load_n(&shared_counter, __ATOMIC_RELAXED) - before < increments) {
    bench_fail(state, "atomic_add_shared: the shared counter lost an increment");
  }
}

void bench_atomic_add_shared_table(struct bench_state *state)
{
  pthread_once(&shared_table_once, shared_table_build);
  if (shared_table_rc != 0) {
    bench_fail(state, "atomic_add_shared_table: cannot set up the table");
    return;
  }
  struct tally_shard *table = shared_table.shard;
  assert(table != NULL);
  assert(tally_shard_counters_used(table) == HOT_NAMES);
  uint32_t start = thread_start(state);
  int64_t missed = 0;
  while (bench_keep_running_batch(state, HOT_NAMES)) {
    for (uint32_t step = 0; step < HOT_NAMES; step++) {
      uint32_t i = (start + step) % HOT_NAMES;
      const char *name = hot_names.names[i];
      uint32_t length = hot_names.lengths[i];
      int64_t slot = tally_shard_find(table, name, length,
        tally_shard_name_hash(table, name, length));
      if (slot < 0) {
        missed++;
        continue;
      }
      __atomic_fetch_add(&table->slots[slot].value, 1, __ATOMIC_RELAXED);
    }
  }
  bench_set_items(state, bench_iterations(state));
  if (missed != 0) bench_fail(state, "atomic_add_shared_table: a hot name was not found");
}
