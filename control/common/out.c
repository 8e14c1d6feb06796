/*
 * out.c — the bounded output buffer behind every operator action's text.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "out.h"

void tally_out_init_fd(struct tally_out *out, int fd, char *buffer, size_t buffer_size)
{
  assert(fd >= 0);
  assert(buffer_size >= 256);
  *out = (struct tally_out){ .fd = fd, .data = buffer, .capacity = buffer_size };
}

void tally_out_init_memory(struct tally_out *out)
{
  *out = (struct tally_out){ .fd = -1 };
  out->data = malloc(TALLY_OUT_CHUNK_SIZE);
  out->capacity = out->data == NULL ? 0 : TALLY_OUT_CHUNK_SIZE;
  out->failed = out->data == NULL;
}

static bool write_all(int fd, const char *data, size_t size)
{
  size_t done = 0;
  /* Bounded: each round writes at least one byte or fails. */
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false; /* includes the socket's send timeout */
    done += (size_t)n;
  }
  return true;
}

bool tally_out_flush(struct tally_out *out)
{
  if (out->fd < 0 || out->failed) return !out->failed;
  if (out->used > 0 && !write_all(out->fd, out->data, out->used)) out->failed = true;
  out->used = 0;
  return !out->failed;
}

static bool make_room(struct tally_out *out, size_t needed)
{
  if (out->used + needed <= out->capacity) return true; /* needed counts vsnprintf's NUL */
  if (out->fd >= 0) {
    if (!tally_out_flush(out)) return false;
    return needed < out->capacity;
  }
  size_t capacity = out->capacity;
  while (capacity < out->used + needed && capacity <= TALLY_OUT_MEMORY_MAX) capacity *= 2;
  if (capacity > TALLY_OUT_MEMORY_MAX) return false;
  char *data = realloc(out->data, capacity);
  if (data == NULL) return false;
  out->data = data;
  out->capacity = capacity;
  return true;
}

void tally_out_printf(struct tally_out *out, const char *format, ...)
{
  if (out->failed) return;
  assert(out->data != NULL);
  va_list args;
  va_start(args, format);
  int needed = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (needed < 0 || !make_room(out, (size_t)needed + 1)) {
    out->failed = true;
    return;
  }
  va_start(args, format);
  int written = vsnprintf(out->data + out->used, out->capacity - out->used, format, args);
  va_end(args);
  assert(written == needed);
  out->used += (size_t)written;
  assert(out->used < out->capacity);
}

char *tally_out_take(struct tally_out *out, size_t *length)
{
  assert(out->fd < 0);
  if (out->failed) {
    free(out->data);
    out->data = NULL;
    return NULL;
  }
  char *data = out->data;
  *length = out->used;
  out->data = NULL;
  return data;
}
