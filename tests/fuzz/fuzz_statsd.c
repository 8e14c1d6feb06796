/*
 * fuzz_statsd.c — libFuzzer target for the statsd parser: splits the input
 * into lines with tally_statsd_next_line, parses each, and checks the
 * invariants (lines and names inside the input, valid names, the loop ends).
 * It also runs a differential check against a slow reference built on
 * strtoll: for a line without '@' (no sample rate), the parser accepts the
 * line exactly when the reference does, with the same name and delta.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A value copy for strtoll; longer values are checked without a copy. */
#define REFERENCE_VALUE_MAX 64u

/*
 * Slow reference for a line with no '@': name up to the first ':' valid, the
 * value up to the next '|' a whole base-10 int64 for strtoll (no leading
 * space), and the type field exactly "c". Fills *delta when it accepts.
 */
static bool reference_parse(const char *line, size_t line_len, size_t *name_len, int64_t *delta)
{
  const char *colon = memchr(line, ':', line_len);
  if (colon == NULL) return false;
  *name_len = (size_t)(colon - line);
  if (!tally_name_valid(line, *name_len)) return false;
  const char *value = colon + 1;
  const char *end = line + line_len;
  const char *bar = memchr(value, '|', (size_t)(end - value));
  if (bar == NULL) return false;
  const char *type_end = memchr(bar + 1, '|', (size_t)(end - bar - 1));
  if (type_end == NULL) type_end = end;
  if (type_end - bar != 2 || bar[1] != 'c') return false;
  size_t value_len = (size_t)(bar - value);
  if (value_len == 0 || value_len >= REFERENCE_VALUE_MAX) return false;
  char copy[REFERENCE_VALUE_MAX];
  memcpy(copy, value, value_len);
  copy[value_len] = '\0';
  if (copy[0] != '+' && copy[0] != '-' && (copy[0] < '0' || copy[0] > '9')) return false;
  char *parsed_end = NULL;
  errno = 0;
  long long parsed = strtoll(copy, &parsed_end, 10);
  if (errno != 0 || parsed_end != copy + value_len) return false;
  *delta = (int64_t)parsed;
  return true;
}

static void check_counter(const char *line, size_t line_len,
  const struct tally_statsd_counter *counter)
{
  assert(counter->name == line);
  assert(counter->name_len >= 1);
  assert(counter->name_len <= TALLY_NAME_LEN_MAX);
  assert(counter->name_len < line_len);
  assert(tally_name_valid(counter->name, counter->name_len));
  assert(line[counter->name_len] == ':');
}

static void check_line(const char *line, size_t line_len)
{
  struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
  enum tally_reason reason = tally_statsd_parse_line(line, line_len, &counter);
  /* Only the statsd reasons can come out of the parser. */
  assert(reason == TALLY_OK || reason >= TALLY_REASON_STATSD_MALFORMED);
  assert(reason <= TALLY_REASON_STATSD_NOT_COUNTER);
  if (reason == TALLY_OK) check_counter(line, line_len, &counter);
  if (memchr(line, '@', line_len) != NULL) return;
  size_t reference_name_len = 0;
  int64_t reference_delta = 0;
  bool reference_ok = reference_parse(line, line_len, &reference_name_len, &reference_delta);
  const char *value = memchr(line, ':', line_len);
  const char *bar = value != NULL ? memchr(value, '|', (size_t)(line + line_len - value)) : NULL;
  bool value_long = bar != NULL && (size_t)(bar - value - 1) >= REFERENCE_VALUE_MAX;
  if (value_long) return; /* e.g. zero-padded values the reference does not copy */
  assert((reason == TALLY_OK) == reference_ok);
  if (reason != TALLY_OK) return;
  assert(counter.name_len == reference_name_len);
  assert(counter.delta == reference_delta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *payload = (const char *)data;
  const char *end = payload + size;
  const char *cursor = payload;
  const char *line = NULL;
  size_t line_len = 0;
  size_t lines = 0;
  while (tally_statsd_next_line(&cursor, end, &line, &line_len) == 1) {
    assert(lines < size);
    lines++;
    assert(line >= payload);
    assert(line_len >= 1);
    assert(line + line_len <= end);
    assert(cursor > line);
    assert(cursor <= end);
    assert(memchr(line, '\n', line_len) == NULL);
    check_line(line, line_len);
  }
  assert(cursor == end);
  return 0;
}
