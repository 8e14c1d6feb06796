/*
 * out.h — a bounded output buffer that the operator actions write into:
 * either flushed to a file descriptor as it fills (management socket), or
 * grown in memory up to a limit (HTTP bodies). A write error or the limit
 * makes it sticky-failed, like Redis's rio.
 */
#ifndef TALLY_OUT_H
#define TALLY_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include "tally/limits.h"

/* TALLY_OUT_CHUNK_SIZE and TALLY_OUT_MEMORY_MAX: include/tally/limits.h. */

struct tally_out {
  int fd;          /* >= 0: flush to it; -1: grow in memory */
  char *data;
  size_t used;
  size_t capacity;
  bool failed;     /* sticky */
};

void tally_out_init_fd(struct tally_out *out, int fd, char *buffer, size_t buffer_size);
void tally_out_init_memory(struct tally_out *out);
void tally_out_printf(struct tally_out *out, const char *format, ...)
  __attribute__((format(printf, 2, 3)));
/* Flushes to the fd; returns false if anything failed. */
bool tally_out_flush(struct tally_out *out);
/* Memory mode: hands over the buffer (caller frees) and its length. */
char *tally_out_take(struct tally_out *out, size_t *length);

#endif
