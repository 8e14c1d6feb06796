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
 * DogStatsD tags ("|#k:v,k2") are read under the tag policy (drop: skipped
 * unchecked; keep, or allow-list: each kept tag checked) and the kept ones
 * make the counter's key name{k=v,k2} through tally_key_build (key.c), into
 * the counter's own buffer; an untagged line's key stays in the line.
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
    bad_byte |= !tally_key_name_byte_valid(byte);
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

/* The tags a line keeps (pointing into the line), before sorting. */
struct statsd_tags {
  uint32_t count;
  struct tally_tag tags[TALLY_TAGS_MAX];
};

static const enum tally_reason key_reasons[TALLY_KEY_STATUS_COUNT] = {
  [TALLY_KEY_OK] = TALLY_OK,
  [TALLY_KEY_NAME_EMPTY] = TALLY_REASON_STATSD_NAME_EMPTY,
  [TALLY_KEY_NAME_BAD_CHAR] = TALLY_REASON_STATSD_NAME_BAD_CHAR,
  [TALLY_KEY_SYNTAX] = TALLY_REASON_STATSD_MALFORMED,
  [TALLY_KEY_TAG_EMPTY] = TALLY_REASON_STATSD_TAG_EMPTY,
  [TALLY_KEY_TAG_BAD_CHAR] = TALLY_REASON_STATSD_TAG_BAD_CHAR,
  [TALLY_KEY_TAG_TOO_LONG] = TALLY_REASON_STATSD_TAG_TOO_LONG,
  [TALLY_KEY_TAGS_TOO_MANY] = TALLY_REASON_STATSD_TAGS_TOO_MANY,
  [TALLY_KEY_TAG_DUPLICATE] = TALLY_REASON_STATSD_TAG_DUPLICATE,
  [TALLY_KEY_TOO_LONG] = TALLY_REASON_STATSD_KEY_TOO_LONG,
};

enum tally_reason tally_statsd_key_reason(enum tally_key_status status)
{
  assert((unsigned)status < TALLY_KEY_STATUS_COUNT);
  assert(status == TALLY_KEY_OK || key_reasons[status] != TALLY_OK);
  return key_reasons[status];
}

/*
 * Splits a "|#" section's text on ',' into tags (key up to the first ':',
 * the rest its value) and keeps those the policy keeps. An empty text is no
 * tag; an empty element is TAG_EMPTY. The bytes are judged later, by
 * tally_key_build, and only for the tags kept.
 */
static enum tally_reason statsd_parse_tags(const char *text, const char *end,
  const struct tally_tags_policy *policy, struct statsd_tags *tags)
{
  assert(text <= end);
  assert(policy->mode != TALLY_TAGS_DROP);
  if (text == end) return TALLY_OK;
  /* Each pass consumes at least its ',' or the end, so the loop is bounded by the line. */
  for (const char *cursor = text;;) {
    const char *comma = memchr(cursor, ',', (size_t)(end - cursor));
    const char *element_end = comma != NULL ? comma : end;
    if (element_end == cursor) return TALLY_REASON_STATSD_TAG_EMPTY;
    const char *colon = memchr(cursor, ':', (size_t)(element_end - cursor));
    const char *key_end = colon != NULL ? colon : element_end;
    const char *value = colon != NULL ? colon + 1 : element_end;
    if (tally_tags_policy_keeps(policy, cursor, (size_t)(key_end - cursor))) {
      if (tags->count == TALLY_TAGS_MAX) return TALLY_REASON_STATSD_TAGS_TOO_MANY;
      tags->tags[tags->count++] = (struct tally_tag){ .key = cursor,
        .key_len = (uint32_t)(key_end - cursor), .value = value,
        .value_len = (uint32_t)(element_end - value) };
    }
    if (comma == NULL) return TALLY_OK;
    cursor = comma + 1;
    if (cursor == end) return TALLY_REASON_STATSD_TAG_EMPTY; /* a trailing ',' */
  }
}

/*
 * Walks the sections after the type: "|@rate" (at most once), "|#tags" (at
 * most once) and any other "|..." extension, in any order. Extensions are
 * skipped; tags are skipped too when the policy drops them.
 */
static enum tally_reason statsd_parse_sections(const char *cursor, const char *end,
  const struct tally_tags_policy *policy, struct statsd_rate *rate, struct statsd_tags *tags)
{
  assert(cursor <= end);
  assert(cursor == end || *cursor == '|');
  bool seen_rate = false;
  bool seen_tags = false;
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
    } else if (section < section_end && *section == '#' && policy->mode != TALLY_TAGS_DROP) {
      if (seen_tags) return TALLY_REASON_STATSD_MALFORMED;
      seen_tags = true;
      enum tally_reason reason = statsd_parse_tags(section + 1, section_end, policy, tags);
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

/* Every tag kept, checked by nobody before: the default policy. */
static const struct tally_tags_policy keep_every_tag = { .mode = TALLY_TAGS_KEEP };

enum tally_reason tally_statsd_parse_line(const char *line, size_t line_len,
  const struct tally_tags_policy *policy, struct tally_statsd_counter *counter)
{
  if (policy == NULL) policy = &keep_every_tag;
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
  struct statsd_tags tags;
  tags.count = 0;
  reason = statsd_parse_sections(type_end, end, policy, &rate, &tags);
  if (reason != TALLY_OK) return reason;
  int64_t delta = 0;
  reason = statsd_scale(value.value, &rate, &delta);
  if (reason != TALLY_OK) return reason;

  counter->name = line;
  counter->name_len = (uint32_t)name_len;
  if (tags.count > 0) {
    uint32_t key_len = 0;
    enum tally_key_status status =
      tally_key_build(line, name_len, tags.tags, tags.count, counter->key, &key_len);
    if (status != TALLY_KEY_OK) return tally_statsd_key_reason(status);
    assert(key_len > name_len && key_len <= TALLY_NAME_LEN_MAX);
    counter->name = counter->key;
    counter->name_len = key_len;
  }
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
