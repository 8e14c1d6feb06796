/*
 * statsd_parse.c — the statsd text parser: splits a datagram into lines and
 * turns one line into (name, delta) or the reason it is not counted.
 *
 * This is the hot path of statsd ingest (tens of millions of lines per second
 * per core), so it is one left-to-right pass over the bytes with no
 * allocation, no locale, no strtol/strtod and no libc call but memchr. The
 * only out-of-order check is the type: it is read before the value is judged,
 * because gauges, timers and sets carry values that are not integers ("1.5",
 * "+3", "user42") and must be reported as "not a counter", not "bad value".
 *
 * Sampled counters ("|@0.1") are scaled exactly: the rate is read as the
 * integer fraction mantissa / 10^k and the delta is round(value * 10^k /
 * mantissa), ties away from zero, in 128-bit integers. A delta that leaves
 * int64 is rejected, never saturated. The grammar and every rejection are
 * documented in docs/protocol.md (section "statsd").
 *
 * Thread: an lcore (per datagram); pure, so the fuzzer and tests call it too.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "statsd.h"

/* 10^k for every fraction digit count a sample rate may have (limits.h). */
static const uint64_t power_of_ten[TALLY_STATSD_RATE_FRACTION_DIGITS_MAX + 1u] = {
  1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
  1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
  100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
  1000000000000000000ull,
};

static_assert(TALLY_NAME_LEN_MAX > 0u, "a name has at least one byte");
static_assert(1000000000000000000ull <= UINT64_MAX / 10u, "10^18 * 10 fits a uint64");

/* Magnitude of the most negative int64 (2^63), the most a value may have. */
#define STATSD_MAGNITUDE_NEGATIVE_MAX ((uint64_t)INT64_MAX + 1u)

/* A sample rate as the exact fraction mantissa / 10^fraction_digits. */
struct statsd_rate {
  uint64_t mantissa;
  uint32_t fraction_digits;
};

/* The counter value, judged lazily (only once the type says "counter"). */
struct statsd_value {
  int64_t value;
  enum tally_reason reason; /* TALLY_OK, STATSD_BAD_VALUE or STATSD_VALUE_RANGE */
};

/* ---- Name ---------------------------------------------------------------- */

/*
 * Finds the ':' that ends the name and checks the name. Scans at most
 * TALLY_NAME_LEN_MAX + 1 bytes byte by byte; a longer name is found with
 * memchr only to tell "too long" from "no ':' at all".
 */
static enum tally_reason statsd_parse_name(const char *line, size_t line_len, size_t *name_len)
{
  assert(line != NULL);
  assert(name_len != NULL);
  size_t scan_len = line_len < TALLY_NAME_LEN_MAX + 1u ? line_len : TALLY_NAME_LEN_MAX + 1u;
  bool bad_byte = false;
  size_t index = 0;
  for (; index < scan_len; index++) {
    uint8_t byte = (uint8_t)line[index];
    if (byte == ':') break;
    bad_byte |= !tally_name_byte_valid(byte);
  }
  assert(index <= TALLY_NAME_LEN_MAX + 1u);
  if (index == scan_len) {
    /* No ':' in the first TALLY_NAME_LEN_MAX + 1 bytes: too long, or none at all. */
    if (memchr(line + scan_len, ':', line_len - scan_len) == NULL) {
      return TALLY_REASON_STATSD_MALFORMED;
    }
    return TALLY_REASON_STATSD_NAME_TOO_LONG;
  }
  assert(line[index] == ':');
  if (index == 0) return TALLY_REASON_STATSD_NAME_EMPTY;
  if (bad_byte) return TALLY_REASON_STATSD_NAME_BAD_CHAR;
  *name_len = index;
  return TALLY_OK;
}

/* ---- Value --------------------------------------------------------------- */

/*
 * Reads the value up to the next '|' (or the end), returning where it
 * stopped. The value is judged as a counter value into *value, but the
 * judgement is only used if the type turns out to be "c".
 */
static const char *statsd_scan_value(const char *cursor, const char *end,
  struct statsd_value *value)
{
  assert(cursor <= end);
  assert(value != NULL);
  bool negative = false;
  if (cursor < end && (*cursor == '-' || *cursor == '+')) {
    negative = *cursor == '-';
    cursor++;
  }
  const char *digits = cursor;
  uint64_t magnitude = 0;
  bool overflow = false;
  for (; cursor < end && *cursor != '|'; cursor++) {
    uint8_t digit = (uint8_t)(*cursor - '0');
    if (digit > 9u) {
      value->reason = TALLY_REASON_STATSD_BAD_VALUE;
      const char *bar = memchr(cursor, '|', (size_t)(end - cursor));
      return bar != NULL ? bar : end;
    }
    overflow |= __builtin_mul_overflow(magnitude, 10u, &magnitude);
    overflow |= __builtin_add_overflow(magnitude, digit, &magnitude);
  }
  assert(cursor <= end);
  uint64_t magnitude_max = negative ? STATSD_MAGNITUDE_NEGATIVE_MAX : (uint64_t)INT64_MAX;
  if (cursor == digits) {
    value->reason = TALLY_REASON_STATSD_BAD_VALUE;
  } else if (overflow || magnitude > magnitude_max) {
    value->reason = TALLY_REASON_STATSD_VALUE_RANGE;
  } else {
    value->reason = TALLY_OK;
    /* 0 - magnitude in uint64 then to int64: exact for 2^63 (INT64_MIN) too. */
    value->value = negative ? (int64_t)(0u - magnitude) : (int64_t)magnitude;
  }
  return cursor;
}

/* ---- Type ---------------------------------------------------------------- */

/* "c" is counted; the other statsd types are known but not counted. */
static enum tally_reason statsd_parse_type(const char *type, size_t type_len)
{
  assert(type != NULL);
  assert(type_len == 0 || type[0] != '|');
  if (type_len == 1) {
    switch (type[0]) {
    case 'c': return TALLY_OK;
    case 'g':
    case 'h':
    case 's':
    case 'd': return TALLY_REASON_STATSD_NOT_COUNTER;
    default: return TALLY_REASON_STATSD_BAD_TYPE;
    }
  }
  if (type_len == 2 && type[0] == 'm' && type[1] == 's') {
    return TALLY_REASON_STATSD_NOT_COUNTER;
  }
  return TALLY_REASON_STATSD_BAD_TYPE;
}

/* ---- Sample rate --------------------------------------------------------- */

/*
 * A rate is digits with at most one '.', at most 18 digits after it, no sign
 * and no exponent, and its value is in (0, 1]. Any digit before the point is
 * a leading zero or the 1 of "1", so the mantissa only overflows for rates
 * far above 1.
 */
static enum tally_reason statsd_parse_rate(const char *text, size_t text_len,
  struct statsd_rate *rate)
{
  assert(text != NULL);
  assert(rate != NULL);
  uint64_t mantissa = 0;
  bool overflow = false;
  bool seen_point = false;
  uint32_t digits = 0;
  uint32_t fraction_digits = 0;
  for (size_t index = 0; index < text_len; index++) {
    char byte = text[index];
    if (byte == '.' && !seen_point) {
      seen_point = true;
      continue;
    }
    uint8_t digit = (uint8_t)(byte - '0');
    if (digit > 9u) return TALLY_REASON_STATSD_BAD_RATE;
    digits++;
    fraction_digits += seen_point ? 1u : 0u;
    if (fraction_digits > TALLY_STATSD_RATE_FRACTION_DIGITS_MAX) {
      return TALLY_REASON_STATSD_BAD_RATE;
    }
    overflow |= __builtin_mul_overflow(mantissa, 10u, &mantissa);
    overflow |= __builtin_add_overflow(mantissa, digit, &mantissa);
  }
  assert(fraction_digits <= TALLY_STATSD_RATE_FRACTION_DIGITS_MAX);
  if (digits == 0 || overflow || mantissa == 0) return TALLY_REASON_STATSD_BAD_RATE;
  if (mantissa > power_of_ten[fraction_digits]) return TALLY_REASON_STATSD_BAD_RATE;
  rate->mantissa = mantissa;
  rate->fraction_digits = fraction_digits;
  return TALLY_OK;
}

/*
 * Walks the sections after the type: "|@rate" (at most once), "|#tags" and
 * any other "|..." extension, in any order. Tags and extensions are skipped.
 */
static enum tally_reason statsd_parse_sections(const char *cursor, const char *end,
  struct statsd_rate *rate)
{
  assert(cursor <= end);
  assert(cursor == end || *cursor == '|');
  bool seen_rate = false;
  /* Each pass consumes at least the '|', so the loop is bounded by the line. */
  while (cursor < end) {
    assert(*cursor == '|');
    const char *section = cursor + 1;
    const char *section_end = memchr(section, '|', (size_t)(end - section));
    if (section_end == NULL) section_end = end;
    if (section < section_end && *section == '@') {
      if (seen_rate) return TALLY_REASON_STATSD_MALFORMED;
      seen_rate = true;
      enum tally_reason reason =
        statsd_parse_rate(section + 1, (size_t)(section_end - section - 1), rate);
      if (reason != TALLY_OK) return reason;
    }
    cursor = section_end;
  }
  assert(cursor == end);
  return TALLY_OK;
}

/*
 * delta = round(value * 10^k / mantissa), ties away from zero, exactly:
 * |value| < 2^64 and 10^k < 2^60, so 2 * |value| * 10^k + mantissa < 2^125.
 */
static enum tally_reason statsd_scale(int64_t value, const struct statsd_rate *rate,
  int64_t *delta)
{
  assert(rate->fraction_digits <= TALLY_STATSD_RATE_FRACTION_DIGITS_MAX);
  uint64_t scale = power_of_ten[rate->fraction_digits];
  assert(rate->mantissa > 0);
  assert(rate->mantissa <= scale);
  if (rate->mantissa == scale) {
    *delta = value;
    return TALLY_OK;
  }
  bool negative = value < 0;
  uint64_t magnitude = negative ? 0u - (uint64_t)value : (uint64_t)value;
  unsigned __int128 numerator = (unsigned __int128)magnitude * scale;
  unsigned __int128 twice_mantissa = 2u * (unsigned __int128)rate->mantissa;
  unsigned __int128 rounded = (2u * numerator + rate->mantissa) / twice_mantissa;
  assert(rounded >= magnitude);
  uint64_t magnitude_max = negative ? STATSD_MAGNITUDE_NEGATIVE_MAX : (uint64_t)INT64_MAX;
  if (rounded > magnitude_max) return TALLY_REASON_STATSD_VALUE_RANGE;
  uint64_t result = (uint64_t)rounded;
  *delta = negative ? (int64_t)(0u - result) : (int64_t)result;
  return TALLY_OK;
}

/* ---- Lines --------------------------------------------------------------- */

enum tally_reason tally_statsd_parse_line(const char *line, size_t line_len,
  struct tally_statsd_counter *counter)
{
  assert(line != NULL);
  assert(counter != NULL);
  const char *end = line + line_len;
  size_t name_len = 0;
  enum tally_reason reason = statsd_parse_name(line, line_len, &name_len);
  if (reason != TALLY_OK) return reason;
  assert(name_len >= 1);
  assert(name_len <= TALLY_NAME_LEN_MAX);
  assert(line[name_len] == ':');

  struct statsd_value value = { .value = 0, .reason = TALLY_REASON_STATSD_BAD_VALUE };
  const char *type = statsd_scan_value(line + name_len + 1, end, &value);
  if (type == end) return TALLY_REASON_STATSD_MALFORMED;
  assert(*type == '|');
  type++;
  const char *type_end = memchr(type, '|', (size_t)(end - type));
  if (type_end == NULL) type_end = end;
  reason = statsd_parse_type(type, (size_t)(type_end - type));
  if (reason != TALLY_OK) return reason;
  if (value.reason != TALLY_OK) return value.reason;

  struct statsd_rate rate = { .mantissa = 1, .fraction_digits = 0 };
  reason = statsd_parse_sections(type_end, end, &rate);
  if (reason != TALLY_OK) return reason;
  int64_t delta = 0;
  reason = statsd_scale(value.value, &rate, &delta);
  if (reason != TALLY_OK) return reason;

  counter->name = line;
  counter->name_len = (uint32_t)name_len;
  counter->delta = delta;
  return TALLY_OK;
}

int tally_statsd_next_line(const char **cursor, const char *end, const char **line,
  size_t *line_len)
{
  assert(cursor != NULL);
  assert(line != NULL);
  assert(line_len != NULL);
  const char *position = *cursor;
  assert(position <= end);
  /* Each pass consumes at least one byte, so the loop is bounded by the payload. */
  while (position < end) {
    const char *newline = memchr(position, '\n', (size_t)(end - position));
    const char *line_end = newline != NULL ? newline : end;
    const char *line_start = position;
    position = newline != NULL ? newline + 1 : end;
    if (line_end > line_start && line_end[-1] == '\r') line_end--;
    if (line_end == line_start) continue;
    assert(position <= end);
    *cursor = position;
    *line = line_start;
    *line_len = (size_t)(line_end - line_start);
    return 1;
  }
  assert(position == end);
  *cursor = end;
  return 0;
}
