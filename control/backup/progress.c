/*
 * progress.c — progress.h: a bar on a terminal, JSON lines otherwise.
 * Thread: tallyctl's one thread.
 */
#include "progress.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

void tally_backup_progress_init(struct tally_backup_progress *progress, FILE *stream,
  const char *phase, uint64_t total_bytes)
{
  memset(progress, 0, sizeof *progress);
  progress->stream = stream;
  progress->terminal = stream != NULL && isatty(fileno(stream));
  progress->phase = phase;
  progress->file = "";
  progress->total_bytes = total_bytes;
}

static void report(struct tally_backup_progress *progress)
{
  if (progress->stream == NULL) return;
  progress->printed_ns = now_ns();
  uint64_t total = progress->total_bytes;
  uint64_t done = progress->done_bytes > total ? total : progress->done_bytes;
  if (progress->terminal) {
    unsigned filled = total == 0 ? TALLY_BACKUP_PROGRESS_BAR_WIDTH :
      (unsigned)(done * TALLY_BACKUP_PROGRESS_BAR_WIDTH / total);
    assert(filled <= TALLY_BACKUP_PROGRESS_BAR_WIDTH);
    char bar[TALLY_BACKUP_PROGRESS_BAR_WIDTH + 1];
    memset(bar, '#', filled);
    memset(bar + filled, ' ', TALLY_BACKUP_PROGRESS_BAR_WIDTH - filled);
    bar[TALLY_BACKUP_PROGRESS_BAR_WIDTH] = '\0';
    fprintf(progress->stream, "\r%s [%s] %3u%% %.1f/%.1f MiB %-40.40s", progress->phase, bar,
      total == 0 ? 100u : (unsigned)(done * 100u / total), (double)done / 1048576.0,
      (double)total / 1048576.0, progress->file);
  } else {
    fprintf(progress->stream, "{\"phase\":\"%s\",\"file\":\"%s\",\"done_bytes\":%" PRIu64
      ",\"total_bytes\":%" PRIu64 "}\n", progress->phase, progress->file, done, total);
  }
  fflush(progress->stream);
}

void tally_backup_progress_file(struct tally_backup_progress *progress, const char *file)
{
  if (progress == NULL) return;
  progress->file = file;
  report(progress);
}

void tally_backup_progress_add(struct tally_backup_progress *progress, uint64_t bytes)
{
  if (progress == NULL) return;
  progress->done_bytes += bytes;
  if (progress->stream == NULL) return;
  if (now_ns() - progress->printed_ns >= TALLY_BACKUP_PROGRESS_INTERVAL_MS * 1000000ull) {
    report(progress);
  }
}

void tally_backup_progress_end(struct tally_backup_progress *progress)
{
  if (progress == NULL || progress->stream == NULL) return;
  progress->file = "done";
  report(progress);
  if (progress->terminal) fputc('\n', progress->stream);
}
