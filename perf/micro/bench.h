/*
 * bench.h — the C side of Tally's microbenchmarks. Benchmark bodies are C
 * functions over an opaque handle to a Google Benchmark state; shim.cc (the
 * only C++ file) implements the handle's functions and registers the bodies
 * with their arguments and thread counts. bench_util.c holds the set-up the
 * bodies share (shards in DRAM, counter names, store paths).
 *
 * A body is shaped like a Google Benchmark function:
 *
 *   void bench_x(struct bench_state *state)
 *   {
 *     ...set up (not timed)...
 *     while (bench_keep_running(state)) { ...one operation... }
 *     bench_set_items(state, bench_iterations(state));
 *     ...check the result; bench_fail() on a wrong one...
 *   }
 *
 * Benchmarks report numbers and never assert a time. bench_fail() marks the
 * benchmark as errored and makes the binary exit non-zero, so the CI smoke
 * run catches a body that breaks (a wrong count, a store that will not open).
 */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The shim: a C view of benchmark::State (shim.cc) -------------------- */

struct bench_state; /* really a benchmark::State */

/* One more operation? (State::KeepRunning) */
bool bench_keep_running(struct bench_state *state);
/* count more operations? (State::KeepRunningBatch; may overshoot by count) */
bool bench_keep_running_batch(struct bench_state *state, int64_t count);
/* Operations run so far by this thread (after the loop: all of them). */
int64_t bench_iterations(const struct bench_state *state);
/* The benchmark's argument number index (State::range). */
int64_t bench_range(const struct bench_state *state, int index);
/* This thread's index in 0..bench_threads()-1, and the thread count. */
int bench_thread_index(const struct bench_state *state);
int bench_threads(const struct bench_state *state);
/* Items and bytes processed by this thread (reported as rates). */
void bench_set_items(struct bench_state *state, int64_t items);
void bench_set_bytes(struct bench_state *state, int64_t bytes);
/* Stop and restart the timer (costly: not per operation). */
void bench_pause(struct bench_state *state);
void bench_resume(struct bench_state *state);
/* A named user counter (summed over threads). */
void bench_counter(struct bench_state *state, const char *name, double value);
/* Marks the benchmark as failed: reported as an error, binary exits 1. */
void bench_fail(struct bench_state *state, const char *message);

/* Keeps the compiler from discarding the computation behind pointer. */
static inline void bench_keep(const void *pointer)
{
  __asm__ volatile("" : : "r"(pointer) : "memory");
}

/* ---- Shared set-up (bench_util.c) ----------------------------------------- */

struct tally_shard;

/* A shard in anonymous memory (DRAM), formatted, with no persistence. */
struct bench_shard {
  struct tally_shard *shard;
  void *memory;
  size_t memory_size;
};

/* Maps and formats a shard for counters_max counters; 0 or -1 (errno set). */
int bench_shard_create(struct bench_shard *bench_shard, uint32_t counters_max);
void bench_shard_destroy(struct bench_shard *bench_shard);

/* Writes prefix followed by index in decimal; returns the length (< out_size). */
uint32_t bench_name(char *out, size_t out_size, const char *prefix, uint64_t index);

/*
 * A fresh path for a store file: $TALLY_BENCH_DIR (default /tmp) /
 * tally-bench-<what>-<pid>.store. Returns 0, or -1 if it does not fit.
 */
int bench_store_path(char *out, size_t out_size, const char *what);

/* ---- The bodies (one file per subject) -------------------------------------- */

/* bench_statsd.c: a 60-line datagram; items = lines (parse), counters (apply). */
void bench_statsd_parse(struct bench_state *state);
void bench_statsd_parse_apply(struct bench_state *state);
/* bench_statsd.c: 24 lines of three DogStatsD tags each; items = lines. */
void bench_statsd_parse_tagged(struct bench_state *state);
/* bench_wire.c: arg 0 = pairs per batch; items = pairs. */
void bench_wire_decode_batch(struct bench_state *state);
void bench_wire_apply_batch(struct bench_state *state);
/* bench_shard.c: run at 1 and 2 threads; items = increments. */
void bench_shard_add_per_thread(struct bench_state *state);
void bench_atomic_add_shared(struct bench_state *state);
void bench_atomic_add_shared_table(struct bench_state *state);
/* bench_index.c: arg 0 = counters in the table; items = lookups. */
void bench_shard_find(struct bench_state *state);
/* bench_persist.c: a real store file; items = increments. */
void bench_persist_msync_per_add(struct bench_state *state);
void bench_persist_group_commit(struct bench_state *state); /* arg 0 = adds per persist */
/* bench_recovery.c: arg 0 = counters_max of the store; bytes = store bytes opened. */
void bench_recovery(struct bench_state *state);
/* bench_wal.c: a real log directory; arg 0 = records per commit; items = records. */
void bench_wal_commit(struct bench_state *state);
/* bench_checkpoint.c: a real directory; arg 0 = image MiB (load: arg 1 = cold cache); bytes. */
void bench_checkpoint_write(struct bench_state *state);
void bench_checkpoint_load(struct bench_state *state);

#ifdef __cplusplus
}
#endif

#endif
