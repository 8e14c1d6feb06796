// shim.cc — the only C++ in Tally: implements bench.h over Google Benchmark's
// benchmark::State and registers each C benchmark body with its arguments and
// thread counts, then runs them. Everything measured lives in the C files.
//
// Sizes that need a lot of memory (name lookup over 10M counters, ~2.5 GB)
// are registered only when TALLY_BENCH_LARGE=1. The exit status is non-zero
// when a body called bench_fail() or the filter matched nothing, so the CI
// smoke run (meson test --suite perf-smoke) catches broken benchmarks; it
// never looks at a time.
#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <benchmark/benchmark.h>

#include "bench.h"

namespace {

std::atomic<bool> bench_failed{false};

benchmark::State &state_of(struct bench_state *state)
{
  assert(state != nullptr);
  return *reinterpret_cast<benchmark::State *>(state);
}

const benchmark::State &state_of(const struct bench_state *state)
{
  assert(state != nullptr);
  return *reinterpret_cast<const benchmark::State *>(state);
}

using bench_body = void (*)(struct bench_state *);

benchmark::internal::Benchmark *add(const char *name, bench_body body)
{
  assert(name != nullptr);
  assert(body != nullptr);
  // Wall-clock rates everywhere: msync and recovery wait on I/O, and the
  // threaded runs must report the aggregate rate of all threads.
  return benchmark::RegisterBenchmark(name, [body](benchmark::State &state) {
    body(reinterpret_cast<struct bench_state *>(&state));
  })->UseRealTime();
}

bool large_enabled()
{
  const char *large = std::getenv("TALLY_BENCH_LARGE");
  return large != nullptr && std::strcmp(large, "1") == 0;
}

void register_all()
{
  add("statsd_parse", bench_statsd_parse);
  add("statsd_parse_apply", bench_statsd_parse_apply);
  add("statsd_parse_tagged", bench_statsd_parse_tagged);
  add("wire_decode_batch", bench_wire_decode_batch)->ArgName("pairs")->Arg(16)->Arg(64);
  add("wire_apply_batch", bench_wire_apply_batch)->ArgName("pairs")->Arg(16)->Arg(64);

  // The case for sharding: same increments, own shard per thread vs shared memory.
  add("shard_add_per_thread", bench_shard_add_per_thread)->Threads(1)->Threads(2);
  add("atomic_add_shared", bench_atomic_add_shared)->Threads(1)->Threads(2);
  add("atomic_add_shared_table", bench_atomic_add_shared_table)->Threads(1)->Threads(2);

  auto *find = add("shard_find", bench_shard_find)->ArgName("counters");
  find->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000);
  if (large_enabled()) find->Arg(10000000);

  add("persist_msync_per_add", bench_persist_msync_per_add)
    ->Unit(benchmark::kMicrosecond);
  add("persist_group_commit", bench_persist_group_commit)->ArgName("adds")
    ->Arg(32)->Arg(1024)->Arg(32768)->Unit(benchmark::kMicrosecond);

  // 4096 counters: a 1 MiB store (smoke size); 393216: 64 MiB; 786432: 128 MiB.
  add("recovery", bench_recovery)->ArgName("counters")
    ->Arg(4096)->Arg(393216)->Arg(786432)->Unit(benchmark::kMillisecond);

  // Group commit with a real fdatasync (in /var/tmp): records per commit.
  add("wal_commit", bench_wal_commit)->ArgName("records")
    ->Arg(1)->Arg(16)->Arg(256)->Unit(benchmark::kMicrosecond);

  // Checkpoints of an image of N MiB with a real fdatasync (in /var/tmp); load from the
  // page cache (cold:0) or from the disk (cold:1, pages evicted before each load).
  add("checkpoint_write", bench_checkpoint_write)->ArgName("mib")
    ->Arg(1)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);
  add("checkpoint_load", bench_checkpoint_load)->ArgNames({"mib", "cold"})
    ->Args({1, 0})->Args({64, 0})->Args({64, 1})->Args({256, 0})->Args({256, 1})
    ->Unit(benchmark::kMillisecond);
}

}  // namespace

extern "C" {

bool bench_keep_running(struct bench_state *state)
{
  return state_of(state).KeepRunning();
}

bool bench_keep_running_batch(struct bench_state *state, int64_t count)
{
  assert(count > 0);
  return state_of(state).KeepRunningBatch(count);
}

int64_t bench_iterations(const struct bench_state *state)
{
  return static_cast<int64_t>(state_of(state).iterations());
}

int64_t bench_range(const struct bench_state *state, int index)
{
  assert(index >= 0);
  return state_of(state).range(static_cast<std::size_t>(index));
}

int bench_thread_index(const struct bench_state *state)
{
  return state_of(state).thread_index();
}

int bench_threads(const struct bench_state *state)
{
  return state_of(state).threads();
}

void bench_set_items(struct bench_state *state, int64_t items)
{
  assert(items >= 0);
  state_of(state).SetItemsProcessed(items);
}

void bench_set_bytes(struct bench_state *state, int64_t bytes)
{
  assert(bytes >= 0);
  state_of(state).SetBytesProcessed(bytes);
}

void bench_pause(struct bench_state *state)
{
  state_of(state).PauseTiming();
}

void bench_resume(struct bench_state *state)
{
  state_of(state).ResumeTiming();
}

void bench_counter(struct bench_state *state, const char *name, double value)
{
  assert(name != nullptr);
  state_of(state).counters[name] = benchmark::Counter(value);
}

void bench_fail(struct bench_state *state, const char *message)
{
  assert(message != nullptr);
  bench_failed.store(true);
  std::fprintf(stderr, "benchmark failed: %s\n", message);
  state_of(state).SkipWithError(message);
}

}  // extern "C"

int main(int argc, char **argv)
{
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (ran == 0) {
    std::fprintf(stderr, "no benchmark matched the filter\n");
    return 2;
  }
  return bench_failed.load() ? 1 : 0;
}
