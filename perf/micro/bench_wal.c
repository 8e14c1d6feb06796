/*
 * bench_wal.c — what the write-ahead log's group commit costs on a real
 * disk (control/persist/wal.c over the POSIX backend: pwrite + fdatasync),
 * in a fresh log directory under $TALLY_WAL_BENCH_DIR (default /var/tmp,
 * which is on the disk where /tmp may be tmpfs):
 *
 *   wal_commit/records:N   N reliable-batch records of 16 pairs (~500 bytes
 *                          each) appended, then one commit (one write, one
 *                          fdatasync). One iteration is one commit, so the
 *                          time per iteration is the mean commit latency;
 *                          items = records (records/s). Counters:
 *                          commit_p50_us and commit_p99_us over the run.
 *
 * The log is recovered and replayed at the end and every record counted
 * (bench_fail on a mismatch); then the directory is removed.
 */
#include <assert.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "disk_io.h"
#include "wal.h"
#include "wal_batch.h"

#include "bench.h"

#define WAL_BENCH_PAIRS 16u
#define WAL_BENCH_SAMPLES_MAX 65536u

struct wal_bench {
  char path[TALLY_PATH_MAX];
  struct tally_disk disk;
  struct tally_disk_posix posix;
  struct tally_wal_scanner *scanner;
  struct tally_wal wal;
  uint8_t payload[TALLY_WAL_BATCH_SIZE_MAX];
  uint32_t payload_size;
  uint64_t samples_ns[WAL_BENCH_SAMPLES_MAX];
  uint32_t samples;
};

static uint64_t wal_bench_now_ns(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* One 16-pair batch, the payload every record carries. */
static void wal_bench_payload(struct wal_bench *bench)
{
  static char names[WAL_BENCH_PAIRS][24];
  struct tally_wal_batch batch;
  memset(&batch, 0, sizeof batch);
  batch.producer = 1;
  batch.seq = 1;
  batch.count = WAL_BENCH_PAIRS;
  batch.batch_seq = 1;
  batch.dedup[0] = 64; /* runs[0]: head_last, ..., window bit 0 */
  batch.dedup[4] = 1;
  for (uint32_t i = 0; i < WAL_BENCH_PAIRS; i++) {
    uint32_t length = bench_name(names[i], sizeof names[i], "bench.wal.counter.", i);
    batch.pairs[i] = (struct tally_wal_pair){.name = names[i], .name_len = length, .delta = 1,
      .value = 1};
  }
  bench->payload_size = (uint32_t)tally_wal_batch_encode(&batch, bench->payload,
    sizeof bench->payload);
  assert(bench->payload_size > 0);
}

static struct wal_bench *wal_bench_open(struct bench_state *state)
{
  struct wal_bench *bench = calloc(1, sizeof(*bench));
  if (bench == NULL) return NULL;
  const char *directory = getenv("TALLY_WAL_BENCH_DIR");
  if (directory == NULL || directory[0] == '\0') directory = "/var/tmp";
  snprintf(bench->path, sizeof bench->path, "%s/tally-bench-wal-%ld", directory, (long)getpid());
  char error[256] = "";
  struct tally_wal_scan scan;
  struct tally_wal_options options;
  tally_wal_options_default(&options);
  bench->scanner = tally_wal_scanner_create();
  if (bench->scanner == NULL ||
    tally_disk_posix_open(&bench->disk, &bench->posix, bench->path, error, sizeof error) != 0 ||
    tally_wal_scan(bench->scanner, &bench->disk, 1, &scan) != TALLY_WAL_OK ||
    tally_wal_open(&bench->wal, &bench->disk, &options, &scan, error, sizeof error) != 0) {
    fprintf(stderr, "wal bench: %s %s\n", bench->path, error);
    bench_fail(state, "wal: cannot open a log");
    tally_wal_scanner_destroy(bench->scanner);
    free(bench);
    return NULL;
  }
  wal_bench_payload(bench);
  return bench;
}

static int wal_bench_count(void *context, const struct tally_wal_record *record)
{
  (void)record;
  (*(uint64_t *)context)++;
  return 0;
}

/* Recovers the log, checks it holds records records, removes it. */
static void wal_bench_close(struct bench_state *state, struct wal_bench *bench, uint64_t records)
{
  tally_wal_close(&bench->wal);
  struct tally_wal_scan scan;
  uint64_t counted = 0;
  char error[256] = "";
  if (tally_wal_scan(bench->scanner, &bench->disk, 1, &scan) != TALLY_WAL_OK ||
    tally_wal_replay(bench->scanner, &bench->disk, &scan, wal_bench_count, &counted, error,
      sizeof error) != TALLY_WAL_OK || counted != records) {
    bench_fail(state, "wal: the log did not recover every record");
  }
  for (uint32_t i = 0; i < scan.segment_count; i++) {
    char name[TALLY_DISK_NAME_SIZE_MAX];
    tally_wal_segment_name(name, scan.segment_lsns[i]);
    bench->disk.ops->unlink(bench->disk.context, name);
  }
  tally_disk_posix_close(&bench->posix);
  if (rmdir(bench->path) != 0) bench_fail(state, "wal: cannot remove the log directory");
  tally_wal_scanner_destroy(bench->scanner);
  free(bench);
}

static int compare_u64(const void *a, const void *b)
{
  uint64_t left = *(const uint64_t *)a;
  uint64_t right = *(const uint64_t *)b;
  return (left > right) - (left < right);
}

static void wal_bench_percentiles(struct bench_state *state, struct wal_bench *bench)
{
  if (bench->samples == 0) return;
  qsort(bench->samples_ns, bench->samples, sizeof(uint64_t), compare_u64);
  uint32_t p50 = bench->samples / 2u;
  uint32_t p99 = (uint32_t)((uint64_t)bench->samples * 99u / 100u);
  bench_counter(state, "commit_p50_us", (double)bench->samples_ns[p50] / 1000.0);
  bench_counter(state, "commit_p99_us", (double)bench->samples_ns[p99] / 1000.0);
}

void bench_wal_commit(struct bench_state *state)
{
  int64_t records_per_commit = bench_range(state, 0);
  assert(records_per_commit >= 1);
  struct wal_bench *bench = wal_bench_open(state);
  if (bench == NULL) return;
  int64_t failed = 0;
  while (bench_keep_running(state)) {
    uint64_t start_ns = wal_bench_now_ns();
    for (int64_t i = 0; i < records_per_commit; i++) {
      enum tally_wal_status status = tally_wal_append(&bench->wal, TALLY_WAL_TYPE_BATCH,
        bench->payload, bench->payload_size, NULL);
      if (status == TALLY_WAL_FULL) status = tally_wal_commit(&bench->wal);
      if (status == TALLY_WAL_OK && bench->wal.group_used == 0) {
        status = tally_wal_append(&bench->wal, TALLY_WAL_TYPE_BATCH, bench->payload,
          bench->payload_size, NULL);
      }
      failed += status != TALLY_WAL_OK;
    }
    failed += tally_wal_commit(&bench->wal) != TALLY_WAL_OK;
    if (bench->samples < WAL_BENCH_SAMPLES_MAX) {
      bench->samples_ns[bench->samples++] = wal_bench_now_ns() - start_ns;
    }
  }
  int64_t records = bench_iterations(state) * records_per_commit;
  bench_set_items(state, records);
  bench_set_bytes(state, (int64_t)bench->wal.bytes_written);
  wal_bench_percentiles(state, bench);
  if (failed != 0) bench_fail(state, "wal_commit: an append or commit failed");
  wal_bench_close(state, bench, (uint64_t)records);
}
