/*
 * test_statsd.c — unit tests of the statsd text parser (dataplane/wire/statsd_parse.c):
 * every STATSD_* rejection reason, int64 edges, exact sampled-rate rounding,
 * tags and extensions in any order, and splitting datagrams into lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "tally/reasons.h"
#include "statsd.h"

/* ---- Helpers ------------------------------------------------------------- */

static enum tally_reason parse_text(const char *text, struct tally_statsd_counter *counter)
{
  return tally_statsd_parse_line(text, strlen(text), NULL, counter);
}

static void expect_reason(const char *text, enum tally_reason expected)
{
  struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
  enum tally_reason got = parse_text(text, &counter);
  if (got != expected) {
    fail_msg("\"%s\": got %s, want %s", text, tally_reason_label(got),
      tally_reason_label(expected));
  }
}

static void expect_counter(const char *text, const char *name, int64_t delta)
{
  struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
  enum tally_reason got = parse_text(text, &counter);
  if (got != TALLY_OK) fail_msg("\"%s\": got %s, want ok", text, tally_reason_label(got));
  assert_ptr_equal(counter.name, text);
  assert_int_equal(counter.name_len, strlen(name));
  assert_memory_equal(counter.name, name, strlen(name));
  if (counter.delta != delta) {
    fail_msg("\"%s\": delta %lld, want %lld", text, (long long)counter.delta, (long long)delta);
  }
}

/* Builds a line "<name_len times 'n'>:1|c" into buffer. */
static void build_long_name_line(char *buffer, size_t buffer_size, size_t name_len,
  const char *rest)
{
  assert_true(name_len + strlen(rest) + 1 <= buffer_size);
  memset(buffer, 'n', name_len);
  memcpy(buffer + name_len, rest, strlen(rest) + 1);
}

/* ---- Counters and values ------------------------------------------------- */

static void test_counter_basic(void **state)
{
  (void)state;
  expect_counter("requests.ok:1|c", "requests.ok", 1);
  expect_counter("a:42|c", "a", 42);
  expect_counter("a:+5|c", "a", 5);
  expect_counter("a:-3|c", "a", -3);
  expect_counter("a:0|c", "a", 0);
  expect_counter("a:-0|c", "a", 0);
  expect_counter("a:007|c", "a", 7);
  expect_counter("svc.http-5xx_total/x~y!:12|c", "svc.http-5xx_total/x~y!", 12);
}

static void test_counter_int64_edges(void **state)
{
  (void)state;
  expect_counter("a:9223372036854775807|c", "a", INT64_MAX);
  expect_counter("a:-9223372036854775808|c", "a", INT64_MIN);
  expect_counter("a:+9223372036854775807|c", "a", INT64_MAX);
  expect_reason("a:9223372036854775808|c", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:-9223372036854775809|c", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:18446744073709551615|c", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:18446744073709551616|c", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:99999999999999999999999999999999|c", TALLY_REASON_STATSD_VALUE_RANGE);
}

static void test_counter_bad_value(void **state)
{
  (void)state;
  expect_reason("a:|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:-|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:+|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:1.5|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:1.|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:1e3|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:0x10|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a: 1|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:1 |c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:--1|c", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("a:1:2|c", TALLY_REASON_STATSD_BAD_VALUE);
  /* Syntax is judged before range. */
  expect_reason("a:99999999999999999999x|c", TALLY_REASON_STATSD_BAD_VALUE);
}

/* ---- Types --------------------------------------------------------------- */

static void test_type_not_counter(void **state)
{
  (void)state;
  /* Values that are not counter integers must not be reported as bad values. */
  expect_reason("cpu:1.5|g", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("cpu:+3|g", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("cpu:-3|g", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("lat:12.25|ms", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("lat:12|ms|@0.1", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("size:3|h", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("users:user42|s", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("size:1e9|d|#a:b", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("cpu:1.5|g|@7", TALLY_REASON_STATSD_NOT_COUNTER);
  expect_reason("cpu:|g", TALLY_REASON_STATSD_NOT_COUNTER);
}

static void test_type_bad(void **state)
{
  (void)state;
  expect_reason("a:1|", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1||c", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1|cc", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1|C", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1|m", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1|msx", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1|c@0.1", TALLY_REASON_STATSD_BAD_TYPE);
  expect_reason("a:1| c", TALLY_REASON_STATSD_BAD_TYPE);
  /* The type is judged before the value. */
  expect_reason("a:x|q", TALLY_REASON_STATSD_BAD_TYPE);
}

static void test_malformed(void **state)
{
  (void)state;
  expect_reason("a", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a1|c", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:1", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:1c", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:1.5", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:1|c|@0.5|@0.5", TALLY_REASON_STATSD_MALFORMED);
  expect_reason("a:1|c|@0.5|#t:1|@1", TALLY_REASON_STATSD_MALFORMED);
  char line[512];
  build_long_name_line(line, sizeof(line), 300, "");
  expect_reason(line, TALLY_REASON_STATSD_MALFORMED);
}

/* ---- Names --------------------------------------------------------------- */

static void test_name_length(void **state)
{
  (void)state;
  char line[512];
  char name[TALLY_NAME_LEN_MAX + 1];
  memset(name, 'n', TALLY_NAME_LEN_MAX);
  name[TALLY_NAME_LEN_MAX] = '\0';
  build_long_name_line(line, sizeof(line), TALLY_NAME_LEN_MAX, ":1|c");
  expect_counter(line, name, 1);
  build_long_name_line(line, sizeof(line), TALLY_NAME_LEN_MAX + 1, ":1|c");
  expect_reason(line, TALLY_REASON_STATSD_NAME_TOO_LONG);
  build_long_name_line(line, sizeof(line), 400, ":1|c");
  expect_reason(line, TALLY_REASON_STATSD_NAME_TOO_LONG);
  build_long_name_line(line, sizeof(line), TALLY_NAME_LEN_MAX + 1, ":1.5|g");
  expect_reason(line, TALLY_REASON_STATSD_NAME_TOO_LONG);
  expect_reason(":1|c", TALLY_REASON_STATSD_NAME_EMPTY);
  expect_reason(":1|g", TALLY_REASON_STATSD_NAME_EMPTY);
  expect_reason("::1|c", TALLY_REASON_STATSD_NAME_EMPTY);
}

static void test_name_bad_char(void **state)
{
  (void)state;
  expect_reason("a b:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("a\tb:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("a@b:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("a#b:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("a|b:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("a\x7f:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("caf\xc3\xa9:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  /* The name is judged before anything after it. */
  expect_reason("a b:x|q", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  static const char line_with_nul[] = "a\0b:1|c";
  struct tally_statsd_counter counter;
  assert_int_equal(tally_statsd_parse_line(line_with_nul, sizeof(line_with_nul) - 1, NULL, &counter),
    TALLY_REASON_STATSD_NAME_BAD_CHAR);
}

/* Every byte value in a name is accepted exactly when key.h says it is valid. */
static void test_name_every_byte(void **state)
{
  (void)state;
  for (unsigned byte = 0; byte < 256u; byte++) {
    char line[] = "a?b:1|c";
    line[1] = (char)byte;
    struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
    enum tally_reason got = tally_statsd_parse_line(line, sizeof(line) - 1, NULL, &counter);
    enum tally_reason want = tally_key_name_byte_valid((uint8_t)byte)
      ? TALLY_OK
      : TALLY_REASON_STATSD_NAME_BAD_CHAR;
    if (byte == ':') want = TALLY_REASON_STATSD_BAD_VALUE; /* name "a", value "b:1" */
    if (got != want) {
      fail_msg("byte 0x%02x: got %s, want %s", byte, tally_reason_label(got),
        tally_reason_label(want));
    }
    if (got == TALLY_OK) assert_int_equal(counter.name_len, 3);
  }
}

/* ---- Sample rates -------------------------------------------------------- */

static void test_rate_rounding(void **state)
{
  (void)state;
  expect_counter("a:1|c|@0.1", "a", 10);
  expect_counter("a:3|c|@0.3", "a", 10);
  expect_counter("a:1|c|@0.3", "a", 3);
  expect_counter("a:2|c|@0.3", "a", 7);
  expect_counter("a:-1|c|@0.5", "a", -2);
  expect_counter("a:1|c|@0.4", "a", 3); /* 2.5 rounds away from zero */
  expect_counter("a:-1|c|@0.4", "a", -3);
  expect_counter("a:7|c|@0.7", "a", 10);
  expect_counter("a:1|c|@.5", "a", 2);
  expect_counter("a:1|c|@0.001", "a", 1000);
  expect_counter("a:0|c|@0.001", "a", 0);
  expect_counter("a:1|c|@0.000000000000000001", "a", 1000000000000000000);
  expect_counter("a:1|c|@0.000000000000000003", "a", 333333333333333333);
  expect_counter("a:2|c|@0.000000000000000003", "a", 666666666666666667);
  expect_counter("a:5|c|@0.999999999999999999", "a", 5);
  /* Beyond 2^53, where a double would lose the last digits (it gives ...984). */
  expect_counter("a:9007199254740993|c|@0.5", "a", 18014398509481986);
}

static void test_rate_one(void **state)
{
  (void)state;
  expect_counter("a:5|c|@1", "a", 5);
  expect_counter("a:5|c|@1.", "a", 5);
  expect_counter("a:5|c|@1.0", "a", 5);
  expect_counter("a:5|c|@01.000000000000000000", "a", 5);
  expect_counter("a:9223372036854775807|c|@1", "a", INT64_MAX);
  expect_counter("a:-9223372036854775808|c|@1.0", "a", INT64_MIN);
}

static void test_rate_range(void **state)
{
  (void)state;
  expect_counter("a:4611686018427387903|c|@0.5", "a", INT64_MAX - 1);
  expect_reason("a:4611686018427387904|c|@0.5", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_counter("a:-4611686018427387904|c|@0.5", "a", INT64_MIN);
  expect_reason("a:-4611686018427387905|c|@0.5", TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:9223372036854775807|c|@0.999999999999999999",
    TALLY_REASON_STATSD_VALUE_RANGE);
  expect_reason("a:-9223372036854775808|c|@0.000000000000000001",
    TALLY_REASON_STATSD_VALUE_RANGE);
}

static void test_rate_bad(void **state)
{
  (void)state;
  static const char *const lines[] = {
    "a:1|c|@", "a:1|c|@.", "a:1|c|@0", "a:1|c|@0.0", "a:1|c|@00", "a:1|c|@1.1",
    "a:1|c|@1.000000000000000001", "a:1|c|@2", "a:1|c|@-0.5", "a:1|c|@+0.5",
    "a:1|c|@1e-1", "a:1|c|@0.5.5", "a:1|c|@..5", "a:1|c|@abc", "a:1|c|@ 0.5",
    "a:1|c|@0.5 ", "a:1|c|@0.1000000000000000000", "a:1|c|@0.0000000000000000001",
    "a:1|c|@99999999999999999999999999", "a:1|c|@0x1", "a:1|c|#t|@0",
  };
  for (size_t index = 0; index < sizeof(lines) / sizeof(lines[0]); index++) {
    expect_reason(lines[index], TALLY_REASON_STATSD_BAD_RATE);
  }
  /* The value is judged before the rate. */
  expect_reason("a:x|c|@2", TALLY_REASON_STATSD_BAD_VALUE);
}

/* ---- Tags and extensions ------------------------------------------------- */

/* A line's key under a policy (NULL: keep every tag), as a string. */
static void expect_key(const char *text, const struct tally_tags_policy *policy,
  const char *key, int64_t delta)
{
  struct tally_statsd_counter counter = { .name = NULL, .name_len = 0, .delta = 0 };
  enum tally_reason got = tally_statsd_parse_line(text, strlen(text), policy, &counter);
  if (got != TALLY_OK) fail_msg("\"%s\": got %s, want ok", text, tally_reason_label(got));
  if (counter.name_len != strlen(key) || memcmp(counter.name, key, strlen(key)) != 0) {
    fail_msg("\"%s\": key \"%.*s\", want \"%s\"", text, (int)counter.name_len, counter.name,
      key);
  }
  assert_int_equal(counter.delta, delta);
}

static void expect_reason_policy(const char *text, const struct tally_tags_policy *policy,
  enum tally_reason expected)
{
  struct tally_statsd_counter counter;
  enum tally_reason got = tally_statsd_parse_line(text, strlen(text), policy, &counter);
  if (got != expected) {
    fail_msg("\"%s\": got %s, want %s", text, tally_reason_label(got),
      tally_reason_label(expected));
  }
}

static void test_tags_and_extensions(void **state)
{
  (void)state;
  expect_key("a:1|c|#env:prod,az:1", NULL, "a{az=1,env=prod}", 1);
  expect_key("a:1|c|@0.5|#env:prod,az:1", NULL, "a{az=1,env=prod}", 2);
  expect_key("a:1|c|#env:prod,az:1|@0.5", NULL, "a{az=1,env=prod}", 2);
  expect_counter("a:1|c|#", "a", 1); /* no tag: the name is the key, in the line */
  expect_counter("a:1|c|c:container123|T1700000000", "a", 1);
  expect_key("a:1|c|#t:1|c:abc|@0.25|T1", NULL, "a{t=1}", 4);
  expect_counter("a:1|c|", "a", 1);
  expect_counter("a:1|c||", "a", 1);
}

/* Tags in any order, repeated, valueless: one key; every rejection. */
static void test_tags_canonical(void **state)
{
  (void)state;
  expect_key("req:1|c|#status:500,method:GET", NULL, "req{method=GET,status=500}", 1);
  expect_key("req:1|c|#method:GET,status:500", NULL, "req{method=GET,status=500}", 1);
  expect_key("req:1|c|#status:500,method:GET,status:500", NULL, "req{method=GET,status=500}", 1);
  expect_key("req:1|c|#canary,env:", NULL, "req{canary,env}", 1); /* empty value: no value */
  expect_key("req:1|c|#b,a,ab,B", NULL, "req{B,a,ab,b}", 1);       /* bytewise */
  expect_reason("req:1|c|#a:1,a:2", TALLY_REASON_STATSD_TAG_DUPLICATE);
  expect_reason("req:1|c|#a:1,,b:2", TALLY_REASON_STATSD_TAG_EMPTY);
  expect_reason("req:1|c|#a:1,", TALLY_REASON_STATSD_TAG_EMPTY);
  expect_reason("req:1|c|#:v", TALLY_REASON_STATSD_TAG_EMPTY);
  expect_reason("req:1|c|#url:http://x", TALLY_REASON_STATSD_TAG_BAD_CHAR);
  expect_reason("req:1|c|#a=b", TALLY_REASON_STATSD_TAG_BAD_CHAR);
  expect_reason("req:1|c|#a:{b}", TALLY_REASON_STATSD_TAG_BAD_CHAR);
  expect_reason("req:1|c|#a:b c", TALLY_REASON_STATSD_TAG_BAD_CHAR);
  expect_reason("req:1|c|#weird @ bytes\x01\xff", TALLY_REASON_STATSD_TAG_BAD_CHAR);
  expect_reason("req:1|c|#a|#b", TALLY_REASON_STATSD_MALFORMED); /* one tag section */
  expect_reason("re{q:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  expect_reason("req}:1|c", TALLY_REASON_STATSD_NAME_BAD_CHAR);
  /* The type and value are judged before the tags. */
  expect_reason("req:x|c|#a:1,a:2", TALLY_REASON_STATSD_BAD_VALUE);
  expect_reason("req:1|g|#a:1,a:2", TALLY_REASON_STATSD_NOT_COUNTER);
}

static void test_tags_limits(void **state)
{
  (void)state;
  char line[1024];
  char key[TALLY_NAME_LEN_MAX + 1];
  /* 16 tags fit, 17 do not (counted as sent, before repeats collapse). */
  strcpy(line, "n:1|c|#");
  for (unsigned i = 0; i < TALLY_TAGS_MAX; i++) {
    sprintf(line + strlen(line), "%s%c", i == 0 ? "" : ",", 'a' + i);
  }
  expect_key(line, NULL, "n{a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p}", 1);
  strcat(line, ",a");
  expect_reason(line, TALLY_REASON_STATSD_TAGS_TOO_MANY);
  /* A tag key of 64 bytes and a value of 128 fit; one more of either does not. */
  strcpy(line, "n:1|c|#");
  memset(line + 7, 'k', TALLY_TAG_KEY_LEN_MAX);
  line[7 + TALLY_TAG_KEY_LEN_MAX] = ':';
  memset(line + 8 + TALLY_TAG_KEY_LEN_MAX, 'v', TALLY_TAG_VALUE_LEN_MAX);
  line[8 + TALLY_TAG_KEY_LEN_MAX + TALLY_TAG_VALUE_LEN_MAX] = '\0';
  strcpy(key, "n{");
  memset(key + 2, 'k', TALLY_TAG_KEY_LEN_MAX);
  key[2 + TALLY_TAG_KEY_LEN_MAX] = '=';
  memset(key + 3 + TALLY_TAG_KEY_LEN_MAX, 'v', TALLY_TAG_VALUE_LEN_MAX);
  strcpy(key + 3 + TALLY_TAG_KEY_LEN_MAX + TALLY_TAG_VALUE_LEN_MAX, "}");
  expect_key(line, NULL, key, 1);
  strcat(line, "v");
  expect_reason(line, TALLY_REASON_STATSD_TAG_TOO_LONG);
  strcpy(line, "n:1|c|#");
  memset(line + 7, 'k', TALLY_TAG_KEY_LEN_MAX + 1u);
  line[8 + TALLY_TAG_KEY_LEN_MAX] = '\0';
  expect_reason(line, TALLY_REASON_STATSD_TAG_TOO_LONG);
  /* The whole key: 224 bytes fit, 225 do not. A name of 200 and a tag "t=" + 20 = 224. */
  memset(line, 'n', 200);
  strcpy(line + 200, ":1|c|#t:");
  memset(line + 208, 'v', 21);
  line[229] = '\0';
  expect_reason(line, TALLY_REASON_STATSD_KEY_TOO_LONG);
  line[228] = '\0';
  memset(key, 'n', 200);
  strcpy(key + 200, "{t=vvvvvvvvvvvvvvvvvvvv}");
  assert_int_equal(strlen(key), TALLY_NAME_LEN_MAX);
  expect_key(line, NULL, key, 1);
}

static void test_tags_policies(void **state)
{
  (void)state;
  const struct tally_tags_policy drop = { .mode = TALLY_TAGS_DROP };
  const struct tally_tags_policy allow = { .mode = TALLY_TAGS_ALLOW, .allow_count = 2,
    .allow_len = {6, 3}, .allow = {"status", "env"} };
  const char *line = "req:1|c|#status:500,host:web1,env:prod";
  expect_key(line, &drop, "req", 1);
  expect_key(line, &allow, "req{env=prod,status=500}", 1);
  expect_key("req:1|c|#host:web1", &allow, "req", 1);
  /* Tags the policy skips are not judged; tags it keeps are. */
  expect_key("req:1|c|#host:a:b,status:1", &allow, "req{status=1}", 1);
  expect_key("req:1|c|#a:1,a:2,,x y", &drop, "req", 1);
  expect_reason_policy("req:1|c|#status:1,status:2", &allow, TALLY_REASON_STATSD_TAG_DUPLICATE);
  expect_reason_policy("req:1|c|#a|#b", &allow, TALLY_REASON_STATSD_MALFORMED);
}

/* ---- Lines of a datagram ------------------------------------------------- */

/* Collects the lines of payload; returns how many. */
static size_t split_lines(const char *payload, size_t payload_len, const char **lines,
  size_t *lengths, size_t lines_max)
{
  const char *cursor = payload;
  const char *end = payload + payload_len;
  size_t count = 0;
  const char *line = NULL;
  size_t line_len = 0;
  while (tally_statsd_next_line(&cursor, end, &line, &line_len) == 1) {
    assert_true(count < lines_max);
    assert_true(line >= payload);
    assert_true(line + line_len <= end);
    lines[count] = line;
    lengths[count] = line_len;
    count++;
  }
  assert_ptr_equal(cursor, end);
  assert_int_equal(tally_statsd_next_line(&cursor, end, &line, &line_len), 0);
  return count;
}

static void expect_line(const char *line, size_t line_len, const char *want)
{
  assert_int_equal(line_len, strlen(want));
  assert_memory_equal(line, want, line_len);
}

static void test_lines_empty(void **state)
{
  (void)state;
  const char *lines[8];
  size_t lengths[8];
  static const char empty[] = "";
  assert_int_equal(split_lines(empty, 0, lines, lengths, 8), 0);
  static const char newlines[] = "\n\n\n";
  assert_int_equal(split_lines(newlines, 3, lines, lengths, 8), 0);
  static const char carriage[] = "\r\n\r\n\r";
  assert_int_equal(split_lines(carriage, 5, lines, lengths, 8), 0);
}

static void test_lines_endings(void **state)
{
  (void)state;
  const char *lines[8];
  size_t lengths[8];
  static const char no_trailing[] = "a:1|c\nb:2|c";
  assert_int_equal(split_lines(no_trailing, strlen(no_trailing), lines, lengths, 8), 2);
  expect_line(lines[0], lengths[0], "a:1|c");
  expect_line(lines[1], lengths[1], "b:2|c");
  static const char crlf[] = "a:1|c\r\n\r\nb:2|c\r\nc:3|c\r\r\n";
  assert_int_equal(split_lines(crlf, strlen(crlf), lines, lengths, 8), 3);
  expect_line(lines[0], lengths[0], "a:1|c");
  expect_line(lines[1], lengths[1], "b:2|c");
  expect_line(lines[2], lengths[2], "c:3|c\r"); /* only one '\r' is stripped */
  static const char single[] = "a:1|c";
  assert_int_equal(split_lines(single, strlen(single), lines, lengths, 8), 1);
  expect_line(lines[0], lengths[0], "a:1|c");
}

static void test_datagram_malformed_middle(void **state)
{
  (void)state;
  static const char payload[] =
    "a:1|c\nb:garbage|c\nnot a line\nc:2|c|@0.5\r\n:1|c\nd:1.5|g\ne:-4|c";
  const char *cursor = payload;
  const char *end = payload + strlen(payload);
  const char *line = NULL;
  size_t line_len = 0;
  static const enum tally_reason want[] = {
    TALLY_OK, TALLY_REASON_STATSD_BAD_VALUE, TALLY_REASON_STATSD_MALFORMED, TALLY_OK,
    TALLY_REASON_STATSD_NAME_EMPTY, TALLY_REASON_STATSD_NOT_COUNTER, TALLY_OK,
  };
  size_t count = 0;
  int64_t sum = 0;
  while (tally_statsd_next_line(&cursor, end, &line, &line_len) == 1) {
    assert_true(count < sizeof(want) / sizeof(want[0]));
    struct tally_statsd_counter counter;
    assert_int_equal(tally_statsd_parse_line(line, line_len, NULL, &counter), want[count]);
    if (want[count] == TALLY_OK) sum += counter.delta;
    count++;
  }
  assert_int_equal(count, sizeof(want) / sizeof(want[0]));
  assert_int_equal(sum, 1 + 4 - 4);
}

/* The name byte table against the rule written out (not against itself). */
static void test_name_byte_table_matches_rule(void **state)
{
  (void)state;
  for (unsigned byte = 0; byte < 256; byte++) {
    bool rule = byte >= 0x21 && byte <= 0x7e && byte != ':' && byte != '|' && byte != '@' &&
      byte != '#';
    assert_int_equal(tally_name_byte_valid((uint8_t)byte), rule);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_name_byte_table_matches_rule),
    cmocka_unit_test(test_counter_basic),
    cmocka_unit_test(test_counter_int64_edges),
    cmocka_unit_test(test_counter_bad_value),
    cmocka_unit_test(test_type_not_counter),
    cmocka_unit_test(test_type_bad),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_name_length),
    cmocka_unit_test(test_name_bad_char),
    cmocka_unit_test(test_name_every_byte),
    cmocka_unit_test(test_rate_rounding),
    cmocka_unit_test(test_rate_one),
    cmocka_unit_test(test_rate_range),
    cmocka_unit_test(test_rate_bad),
    cmocka_unit_test(test_tags_and_extensions),
    cmocka_unit_test(test_tags_canonical),
    cmocka_unit_test(test_tags_limits),
    cmocka_unit_test(test_tags_policies),
    cmocka_unit_test(test_lines_empty),
    cmocka_unit_test(test_lines_endings),
    cmocka_unit_test(test_datagram_malformed_middle),
  };
  int total = (int)(sizeof(tests) / sizeof(tests[0]));
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%d passed, %d failed\n", total - failed, failed);
  return failed == 0 ? 0 : 1;
}
