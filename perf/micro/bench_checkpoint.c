/*
 * bench_checkpoint.c — what checkpoints of the image cost on a real disk
 * (control/persist/checkpoint*.c over the POSIX backend), in a fresh
 * directory under $TALLY_CHECKPOINT_BENCH_DIR (default /var/tmp, which is on
 * the disk where /tmp may be tmpfs). The image is N MiB of anonymous memory.
 *
 *   checkpoint_write/mib:N     one whole checkpoint per iteration: copy each
 *                              1 MiB chunk, CRC32C it, pwrite it (in steps
 *                              of 8 MiB, an fdatasync every 8 MiB), the
 *                              table and header, fdatasync, rename, fsync
 *                              of the directory, retention. bytes = image
 *                              bytes (MB/s of image checkpointed).
 *   checkpoint_load/mib:N/cold:C   recovery: list, check the header and
 *                              table, read and CRC every chunk, copy into
 *                              a buffer. cold:1 first evicts the file from
 *                              the page cache (posix_fadvise DONTNEED after
 *                              the fdatasync, timer paused), so the disk is
 *                              read; cold:0 reads the page cache. bytes =
 *                              image bytes: recovery time per GiB is the
 *                              inverse of the rate.
 *
 * Every load is checked byte for byte against the image at the end
 * (bench_fail on a mismatch); then the directory is removed.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "disk_io.h"

#include "bench.h"

#define CHECKPOINT_BENCH_STEP_BYTES (8u * 1024u * 1024u)

struct checkpoint_bench {
  char path[TALLY_PATH_MAX];
  struct tally_disk disk;
  struct tally_disk_posix posix;
  struct tally_checkpoint_writer *writer;
  uint8_t *image;
  uint64_t image_size;
  char last_name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t lsn;
};

static void checkpoint_bench_close(struct bench_state *state, struct checkpoint_bench *bench)
{
  tally_checkpoint_writer_destroy(bench->writer);
  static char names[64][TALLY_DISK_NAME_SIZE_MAX];
  int count = bench->disk.ops->list(bench->disk.context, names, 64);
  for (int i = 0; i < count; i++) bench->disk.ops->unlink(bench->disk.context, names[i]);
  tally_disk_posix_close(&bench->posix);
  if (rmdir(bench->path) != 0) bench_fail(state, "checkpoint: cannot remove the directory");
  free(bench->image);
  free(bench);
}

static struct checkpoint_bench *checkpoint_bench_open(struct bench_state *state)
{
  struct checkpoint_bench *bench = calloc(1, sizeof(*bench));
  if (bench == NULL) return NULL;
  bench->image_size = (uint64_t)bench_range(state, 0) * 1024u * 1024u;
  bench->image = malloc(bench->image_size);
  const char *directory = getenv("TALLY_CHECKPOINT_BENCH_DIR");
  if (directory == NULL || directory[0] == '\0') directory = "/var/tmp";
  snprintf(bench->path, sizeof bench->path, "%s/tally-bench-checkpoint-%ld", directory,
    (long)getpid());
  char error[256] = "";
  struct tally_checkpoint_options options;
  tally_checkpoint_options_default(&options);
  if (bench->image == NULL ||
    tally_disk_posix_open(&bench->disk, &bench->posix, bench->path, error, sizeof error) != 0 ||
    (bench->writer = tally_checkpoint_writer_create(&bench->disk, &options, error,
       sizeof error)) == NULL) {
    fprintf(stderr, "checkpoint bench: %s %s\n", bench->path, error);
    bench_fail(state, "checkpoint: cannot set up");
    free(bench->image);
    free(bench);
    return NULL;
  }
  for (uint64_t i = 0; i < bench->image_size; i += 8) {
    uint64_t value = i * 0x9e3779b97f4a7c15ull;
    memcpy(bench->image + i, &value, sizeof value);
  }
  return bench;
}

/* One whole checkpoint; false if any call failed. */
static bool checkpoint_bench_write(struct checkpoint_bench *bench)
{
  bench->lsn++;
  if (tally_checkpoint_writer_begin(bench->writer, bench->image, bench->image_size, bench->lsn,
      0) != 0) {
    return false;
  }
  enum tally_checkpoint_status status;
  do {
    status = tally_checkpoint_writer_step(bench->writer, CHECKPOINT_BENCH_STEP_BYTES);
  } while (status == TALLY_CHECKPOINT_MORE);
  struct tally_checkpoint_done done;
  if (status != TALLY_CHECKPOINT_OK ||
    tally_checkpoint_writer_finish(bench->writer, bench->lsn, &done) != TALLY_CHECKPOINT_OK) {
    return false;
  }
  memcpy(bench->last_name, done.name, sizeof bench->last_name);
  return true;
}

void bench_checkpoint_write(struct bench_state *state)
{
  struct checkpoint_bench *bench = checkpoint_bench_open(state);
  if (bench == NULL) return;
  int64_t failed = 0;
  while (bench_keep_running(state)) failed += !checkpoint_bench_write(bench);
  bench_set_bytes(state, bench_iterations(state) * (int64_t)bench->image_size);
  if (failed != 0) bench_fail(state, "checkpoint_write: a checkpoint failed");
  checkpoint_bench_close(state, bench);
}

/* Drops the newest checkpoint's pages from the page cache (they are clean after fdatasync). */
static void checkpoint_bench_evict(struct checkpoint_bench *bench)
{
  char file[TALLY_PATH_MAX + TALLY_DISK_NAME_SIZE_MAX + 2];
  snprintf(file, sizeof file, "%s/%s", bench->path, bench->last_name);
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

void bench_checkpoint_load(struct bench_state *state)
{
  bool cold = bench_range(state, 1) != 0;
  struct checkpoint_bench *bench = checkpoint_bench_open(state);
  if (bench == NULL) return;
  struct tally_checkpoint_reader *reader = tally_checkpoint_reader_create();
  uint8_t *buffer = malloc(bench->image_size);
  bool ok = reader != NULL && buffer != NULL && checkpoint_bench_write(bench);
  int64_t failed = ok ? 0 : 1;
  while (ok && bench_keep_running(state)) {
    if (cold) {
      bench_pause(state);
      checkpoint_bench_evict(bench);
      bench_resume(state);
    }
    struct tally_checkpoint_recovery recovery;
    failed += tally_checkpoint_load(reader, &bench->disk, buffer, bench->image_size, 0,
      &recovery) != TALLY_CHECKPOINT_OK;
  }
  if (ok && memcmp(buffer, bench->image, bench->image_size) != 0) failed++;
  int64_t iterations = bench_iterations(state);
  bench_set_bytes(state, iterations * (int64_t)bench->image_size);
  if (failed != 0) bench_fail(state, "checkpoint_load: a load failed or differed from the image");
  free(buffer);
  tally_checkpoint_reader_destroy(reader);
  checkpoint_bench_close(state, bench);
}
