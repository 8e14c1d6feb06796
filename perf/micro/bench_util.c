/*
 * bench_util.c — set-up shared by the microbenchmark bodies: shards in
 * anonymous memory (the dataplane's shard code without a store file behind
 * it), counter names, and paths for store files. Never on a timed path.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tally/limits.h"
#include "shard.h"

#include "bench.h"

/* Producers a DRAM shard has room for (the batch benchmarks use one). */
#define BENCH_SHARD_PRODUCERS_MAX 16u

int bench_shard_create(struct bench_shard *bench_shard, uint32_t counters_max)
{
  assert(bench_shard != NULL);
  assert(counters_max >= TALLY_COUNTERS_MIN);
  assert(counters_max <= TALLY_COUNTERS_MAX);
  memset(bench_shard, 0, sizeof(*bench_shard));
  size_t size = tally_shard_region_size(counters_max, BENCH_SHARD_PRODUCERS_MAX);
  void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return -1;
  struct tally_shard *shard = malloc(sizeof(*shard));
  if (shard == NULL) {
    munmap(memory, size);
    errno = ENOMEM;
    return -1;
  }
  int rc = tally_shard_attach(shard, memory, 0, counters_max, BENCH_SHARD_PRODUCERS_MAX, true);
  assert(rc == 0);
  bench_shard->shard = shard;
  bench_shard->memory = memory;
  bench_shard->memory_size = size;
  assert(tally_shard_counters_used(shard) == 0);
  return 0;
}

void bench_shard_destroy(struct bench_shard *bench_shard)
{
  assert(bench_shard != NULL);
  if (bench_shard->memory == NULL) return;
  assert(bench_shard->shard != NULL);
  int rc = munmap(bench_shard->memory, bench_shard->memory_size);
  assert(rc == 0);
  free(bench_shard->shard);
  memset(bench_shard, 0, sizeof(*bench_shard));
}

uint32_t bench_name(char *out, size_t out_size, const char *prefix, uint64_t index)
{
  assert(out != NULL);
  assert(prefix != NULL);
  int length = snprintf(out, out_size, "%s%llu", prefix, (unsigned long long)index);
  assert(length > 0);
  assert((size_t)length < out_size);
  return (uint32_t)length;
}

int bench_store_path(char *out, size_t out_size, const char *what)
{
  assert(out != NULL);
  assert(what != NULL);
  const char *directory = getenv("TALLY_BENCH_DIR");
  if (directory == NULL || directory[0] == '\0') directory = "/tmp";
  int length = snprintf(out, out_size, "%s/tally-bench-%s-%ld.store", directory, what,
    (long)getpid());
  if (length < 0 || (size_t)length >= out_size) return -1;
  return 0;
}
