/*
 * fuzz_statsd.c — libFuzzer target for the statsd parser: splits the input
 * into lines with tally_statsd_next_line, parses each, and checks the
 * invariants (lines and names inside the input, valid names, the loop ends).
 * It also runs a differential check against a slow reference built on
 * strtoll: the parser accepts a line exactly when the reference does, with
 * the same name and delta. The reference reads a sample rate ("|@r") on its
 * own terms, as the decimal text docs/protocol.md describes (digits, at most
 * one point, 1..18 fraction digits, a value in (0, 1]), and scales as
 * quotient and remainder: delta = q + (2 r >= m), where value * 10^k = q m + r
 * — not the parser's (2 n + m) / 2m.
 *
 * Tags: the differential above runs with the policy "drop" (tags skipped, as
 * before tags). With "keep", a line is accepted exactly when the "drop" parse
 * accepts it and its "|#" text, rewritten as key text (each element's first
 * ':' as '=', in braces after the name) and canonicalized by
 * tally_key_canonicalize, is a key — and the keys are equal. With an
 * allow-list, an accepted line is one "drop" accepts, with the same delta.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally/key.h"
#include "tally/limits.h"
#include "tally/name.h"
#include "statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A value copy for strtoll; longer values are checked without a copy. */
#define REFERENCE_VALUE_MAX 64u

/* The rate as m / 10^k, read from its decimal text; false if it is not one. */
static bool reference_rate(const char *text, size_t text_len, uint64_t *mantissa,
  uint32_t *digits_after)
{
  const char *point = memchr(text, '.', text_len);
  size_t whole_len = point != NULL ? (size_t)(point - text) : text_len;
  size_t fraction_len = point != NULL ? text_len - whole_len - 1u : 0u;
  const char *fraction = point != NULL ? point + 1 : text + text_len;
  if (whole_len + fraction_len == 0 || fraction_len > 18u) return false;
  for (size_t i = 0; i < text_len; i++) {
    if (text + i != point && (text[i] < '0' || text[i] > '9')) return false;
  }
  size_t skip = 0; /* leading zeros of the whole part */
  while (skip < whole_len && text[skip] == '0') skip++;
  bool one = whole_len - skip == 1u && text[skip] == '1';
  if (whole_len - skip > 1u || (whole_len - skip == 1u && !one)) return false; /* above 1 */
  uint64_t value = one ? 1u : 0u;
  for (size_t i = 0; i < fraction_len; i++) value = value * 10u + (uint64_t)(fraction[i] - '0');
  uint64_t scale = 1;
  for (size_t i = 0; i < fraction_len; i++) scale *= 10u;
  if (one && value != scale) return false; /* 1.000..01 is above 1 */
  if (value == 0) return false;
  *mantissa = value;
  *digits_after = (uint32_t)fraction_len;
  return true;
}

/* Reads the sections after the type: at most one rate, anything else skipped. */
static bool reference_sections(const char *cursor, const char *end, uint64_t *mantissa,
  uint32_t *digits_after)
{
  bool seen = false;
  while (cursor < end) { /* *cursor == '|' */
    const char *section = cursor + 1;
    const char *next = memchr(section, '|', (size_t)(end - section));
    if (next == NULL) next = end;
    if (next > section && section[0] == '@') {
      if (seen) return false;
      seen = true;
      if (!reference_rate(section + 1, (size_t)(next - section - 1), mantissa, digits_after)) {
        return false;
      }
    }
    cursor = next;
  }
  return true;
}

/* value * 10^k / m rounded half away from zero, by quotient and remainder. */
static bool reference_scale(int64_t value, uint64_t mantissa, uint32_t digits_after,
  int64_t *delta)
{
  unsigned __int128 scale = 1;
  for (uint32_t i = 0; i < digits_after; i++) scale *= 10u;
  unsigned __int128 magnitude = value < 0 ? (unsigned __int128)(-(value + 1)) + 1u
                                          : (unsigned __int128)value;
  unsigned __int128 product = magnitude * scale;
  unsigned __int128 quotient = product / mantissa;
  unsigned __int128 remainder = product % mantissa;
  if (2u * remainder >= mantissa) quotient++;
  if (value < 0) {
    if (quotient > (unsigned __int128)INT64_MAX + 1u) return false;
    *delta = quotient == (unsigned __int128)INT64_MAX + 1u ? INT64_MIN : -(int64_t)quotient;
  } else {
    if (quotient > (unsigned __int128)INT64_MAX) return false;
    *delta = (int64_t)quotient;
  }
  return true;
}

/*
 * Slow reference: name up to the first ':' valid, the value up to the next
 * '|' a whole base-10 int64 for strtoll (no leading space), the type field
 * exactly "c", the sections as above. Fills *delta when it accepts.
 */
static bool reference_parse(const char *line, size_t line_len, size_t *name_len, int64_t *delta)
{
  const char *colon = memchr(line, ':', line_len);
  if (colon == NULL) return false;
  *name_len = (size_t)(colon - line);
  if (!tally_name_valid(line, *name_len)) return false;
  if (memchr(line, '{', *name_len) != NULL || memchr(line, '}', *name_len) != NULL) return false;
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
  uint64_t mantissa = 1;
  uint32_t digits_after = 0;
  if (!reference_sections(type_end, end, &mantissa, &digits_after)) return false;
  return reference_scale((int64_t)parsed, mantissa, digits_after, delta);
}

/*
 * The key a line's tags make with the policy "keep", by another road: the
 * one "|#" section (none, or an empty one: the name) as key text through
 * tally_key_canonicalize. False when the parser must refuse the tags.
 */
static bool reference_key(const char *line, size_t line_len, size_t name_len,
  char key[TALLY_NAME_LEN_MAX], uint32_t *key_len)
{
  const char *end = line + line_len;
  const char *bar = memchr(line + name_len, '|', line_len - name_len);
  assert(bar != NULL); /* the "drop" parse accepted the line */
  const char *cursor = memchr(bar + 1, '|', (size_t)(end - bar - 1));
  const char *tags = NULL;
  const char *tags_end = NULL;
  while (cursor != NULL) {
    const char *section = cursor + 1;
    const char *next = memchr(section, '|', (size_t)(end - section));
    const char *section_end = next != NULL ? next : end;
    if (section < section_end && *section == '#') {
      if (tags != NULL) return false; /* one tag section */
      tags = section + 1;
      tags_end = section_end;
    }
    cursor = next;
  }
  static char text[TALLY_DATAGRAM_SIZE_MAX + 3u];
  memcpy(text, line, name_len);
  size_t used = name_len;
  if (tags != NULL && tags < tags_end) {
    text[used++] = '{';
    bool key_part = true;
    for (const char *byte = tags; byte < tags_end; byte++) {
      if (*byte == '=' || *byte == '{' || *byte == '}') return false;
      char out = *byte;
      if (*byte == ',') key_part = true;
      if (*byte == ':' && key_part) {
        out = '=';
        key_part = false;
      }
      text[used++] = out;
    }
    text[used++] = '}';
  }
  /* Text longer than a key may still canonicalize into one (repeated tags collapse). */
  return tally_key_canonicalize(text, used, key, key_len) == TALLY_KEY_OK;
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

static const struct tally_tags_policy policy_drop = { .mode = TALLY_TAGS_DROP };
static const struct tally_tags_policy policy_allow = { .mode = TALLY_TAGS_ALLOW,
  .allow_count = 2, .allow_len = {1, 1}, .allow = {"a", "b"} };

/* "keep" and an allow-list against the "drop" parse of the same line. */
static void check_tags(const char *line, size_t line_len, enum tally_reason dropped,
  const struct tally_statsd_counter *drop)
{
  static struct tally_statsd_counter keep;
  enum tally_reason reason = tally_statsd_parse_line(line, line_len, NULL, &keep);
  assert(reason == TALLY_OK || reason >= TALLY_REASON_STATSD_MALFORMED);
  assert(reason <= TALLY_REASON_STATSD_KEY_TOO_LONG);
  if (dropped != TALLY_OK) {
    assert(reason != TALLY_OK);
  } else {
    char key[TALLY_NAME_LEN_MAX];
    uint32_t key_len = 0;
    bool reference_ok = reference_key(line, line_len, drop->name_len, key, &key_len);
    assert((reason == TALLY_OK) == reference_ok);
    if (reason == TALLY_OK) {
      assert(keep.delta == drop->delta);
      assert(keep.name_len == key_len && memcmp(keep.name, key, key_len) == 0);
      assert(tally_key_is_canonical(keep.name, keep.name_len));
      assert(memcmp(keep.name, line, drop->name_len) == 0);
    }
  }
  reason = tally_statsd_parse_line(line, line_len, &policy_allow, &keep);
  if (reason == TALLY_OK) {
    assert(dropped == TALLY_OK && keep.delta == drop->delta);
    assert(tally_key_is_canonical(keep.name, keep.name_len));
  }
}

static void check_line(const char *line, size_t line_len)
{
  struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
  enum tally_reason reason = tally_statsd_parse_line(line, line_len, &policy_drop, &counter);
  /* Only the statsd reasons can come out of the parser; "drop" judges no tag. */
  assert(reason == TALLY_OK || reason >= TALLY_REASON_STATSD_MALFORMED);
  assert(reason <= TALLY_REASON_STATSD_NOT_COUNTER);
  check_tags(line, line_len, reason, &counter);
  if (reason == TALLY_OK) check_counter(line, line_len, &counter);
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
