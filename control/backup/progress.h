/*
 * progress.h — progress of long work (backup, verify, restore) on stderr: a
 * bar redrawn in place when stderr is a terminal, else one JSON line per
 * file and at most one a second in between, so a log or a pipe gets a
 * parsable record ({"phase":..,"file":..,"done_bytes":..,"total_bytes":..}).
 * Off (quiet) prints nothing; a NULL reporter (file, add, end) counts nothing. Thread: tallyctl's one thread.
 */
#ifndef TALLY_BACKUP_PROGRESS_H
#define TALLY_BACKUP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct tally_backup_progress {
  FILE *stream;        /* NULL: quiet */
  bool terminal;
  const char *phase;   /* "backup", "verify", "restore" */
  const char *file;    /* the file being worked on */
  uint64_t total_bytes;
  uint64_t done_bytes;
  uint64_t printed_ns; /* monotonic: the last line or redraw */
};

/* Quiet when stream is NULL; a bar iff stream is a terminal. */
void tally_backup_progress_init(struct tally_backup_progress *progress, FILE *stream,
  const char *phase, uint64_t total_bytes);
/* A new file begins (always reported). */
void tally_backup_progress_file(struct tally_backup_progress *progress, const char *file);
/* Bytes done (reported at most every TALLY_BACKUP_PROGRESS_INTERVAL_MS). */
void tally_backup_progress_add(struct tally_backup_progress *progress, uint64_t bytes);
/* The last report (the bar ends its line). */
void tally_backup_progress_end(struct tally_backup_progress *progress);

#define TALLY_BACKUP_PROGRESS_INTERVAL_MS 1000u
#define TALLY_BACKUP_PROGRESS_BAR_WIDTH 30u

#endif
