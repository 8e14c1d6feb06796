/*
 * test_key.c — unit tests of the canonical counter key (dataplane/wire/key.c,
 * include/tally/key.h): the byte tables against their definitions, the same
 * key for the same tags in every order, repeats, valueless tags, every
 * status, every limit at and one past it, and the allow-list policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tally/key.h"
#include "tally/limits.h"

static void expect_canonical(const char *text, const char *want)
{
  char key[TALLY_NAME_LEN_MAX];
  uint32_t key_len = 0;
  enum tally_key_status got = tally_key_canonicalize(text, strlen(text), key, &key_len);
  if (got != TALLY_KEY_OK) fail_msg("\"%s\": %s", text, tally_key_status_text(got));
  if (key_len != strlen(want) || memcmp(key, want, key_len) != 0) {
    fail_msg("\"%s\": \"%.*s\", want \"%s\"", text, (int)key_len, key, want);
  }
  assert_true(key_len <= strlen(text)); /* never longer than the text */
  assert_true(tally_name_valid(key, key_len));
  assert_true(tally_key_is_canonical(key, key_len));
}

static void expect_status(const char *text, enum tally_key_status want)
{
  char key[TALLY_NAME_LEN_MAX];
  uint32_t key_len = 0;
  enum tally_key_status got = tally_key_canonicalize(text, strlen(text), key, &key_len);
  if (got != want) {
    fail_msg("\"%s\": %s, want %s", text, tally_key_status_text(got), tally_key_status_text(want));
  }
  assert_false(tally_key_is_canonical(text, strlen(text)));
}

/* The byte tables are the name table less '{' '}', and that less ',' '='. */
static void test_byte_tables(void **state)
{
  (void)state;
  for (unsigned byte = 0; byte < 256u; byte++) {
    bool name = tally_name_byte_valid((uint8_t)byte);
    bool key_name = name && byte != '{' && byte != '}';
    bool tag = key_name && byte != ',' && byte != '=';
    assert_int_equal(tally_key_name_byte_valid((uint8_t)byte), key_name);
    assert_int_equal(tally_tag_byte_valid((uint8_t)byte), tag);
  }
}

/* Every order of four tags gives one key; repeats collapse; valueless tags. */
static void test_every_order_one_key(void **state)
{
  (void)state;
  static const char *const tags[] = {"status=500", "method=GET", "canary", "az=eu-1"};
  static const unsigned orders[24][4] = {
    {0, 1, 2, 3}, {0, 1, 3, 2}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 3, 1, 2}, {0, 3, 2, 1},
    {1, 0, 2, 3}, {1, 0, 3, 2}, {1, 2, 0, 3}, {1, 2, 3, 0}, {1, 3, 0, 2}, {1, 3, 2, 0},
    {2, 0, 1, 3}, {2, 0, 3, 1}, {2, 1, 0, 3}, {2, 1, 3, 0}, {2, 3, 0, 1}, {2, 3, 1, 0},
    {3, 0, 1, 2}, {3, 0, 2, 1}, {3, 1, 0, 2}, {3, 1, 2, 0}, {3, 2, 0, 1}, {3, 2, 1, 0},
  };
  for (unsigned o = 0; o < 24; o++) {
    char text[128];
    snprintf(text, sizeof text, "req{%s,%s,%s,%s}", tags[orders[o][0]], tags[orders[o][1]],
      tags[orders[o][2]], tags[orders[o][3]]);
    expect_canonical(text, "req{az=eu-1,canary,method=GET,status=500}");
  }
  expect_canonical("req", "req");
  expect_canonical("req{}", "req");
  expect_canonical("req{a=1,a=1}", "req{a=1}");
  expect_canonical("req{b,a=,a}", "req{a,b}"); /* "a=" is "a" */
  expect_canonical("req{b=1,B=1,ab=1,a=1}", "req{B=1,a=1,ab=1,b=1}"); /* bytewise */
  expect_canonical("a.b-c_d/e{k.1=v-2/x}", "a.b-c_d/e{k.1=v-2/x}");
}

/* The same tags through tally_key_build (statsd, libtally) as through text. */
static void test_build_matches_text(void **state)
{
  (void)state;
  struct tally_tag tags[] = {
    { .key = "status", .key_len = 6, .value = "500", .value_len = 3 },
    { .key = "canary", .key_len = 6, .value = "", .value_len = 0 },
    { .key = "status", .key_len = 6, .value = "500", .value_len = 3 },
  };
  char key[TALLY_NAME_LEN_MAX];
  uint32_t key_len = 0;
  assert_int_equal(tally_key_build("req", 3, tags, 3, key, &key_len), TALLY_KEY_OK);
  assert_int_equal(key_len, strlen("req{canary,status=500}"));
  assert_memory_equal(key, "req{canary,status=500}", key_len);
  assert_int_equal(tally_key_build("req", 3, NULL, 0, key, &key_len), TALLY_KEY_OK);
  assert_int_equal(key_len, 3);
  tags[2].value = "200";
  assert_int_equal(tally_key_build("req", 3, tags, 3, key, &key_len), TALLY_KEY_TAG_DUPLICATE);
  assert_int_equal(tally_key_build("", 0, NULL, 0, key, &key_len), TALLY_KEY_NAME_EMPTY);
}

static void test_every_status(void **state)
{
  (void)state;
  expect_status("", TALLY_KEY_NAME_EMPTY);
  expect_status("{a=1}", TALLY_KEY_NAME_EMPTY);
  expect_status("re}q", TALLY_KEY_NAME_BAD_CHAR);
  expect_status("r q", TALLY_KEY_NAME_BAD_CHAR);
  expect_status("r:q{a=1}", TALLY_KEY_NAME_BAD_CHAR);
  expect_status("req{a=1", TALLY_KEY_SYNTAX);
  expect_status("req{", TALLY_KEY_SYNTAX);
  expect_status("req{a=1}x", TALLY_KEY_SYNTAX);
  expect_status("req{a=1,}", TALLY_KEY_TAG_EMPTY);
  expect_status("req{,a=1}", TALLY_KEY_TAG_EMPTY);
  expect_status("req{=1}", TALLY_KEY_TAG_EMPTY);
  expect_status("req{a=1}}", TALLY_KEY_TAG_BAD_CHAR);
  expect_status("req{a{=1}", TALLY_KEY_TAG_BAD_CHAR);
  expect_status("req{a=b=c}", TALLY_KEY_TAG_BAD_CHAR);
  expect_status("req{a:b=c}", TALLY_KEY_TAG_BAD_CHAR);
  expect_status("req{a=b c}", TALLY_KEY_TAG_BAD_CHAR);
  expect_status("req{a=1,a=2}", TALLY_KEY_TAG_DUPLICATE);
  expect_status("req{a,a=2}", TALLY_KEY_TAG_DUPLICATE);
  for (unsigned status = 0; status < TALLY_KEY_STATUS_COUNT; status++) {
    assert_true(strlen(tally_key_status_text((enum tally_key_status)status)) > 0);
  }
  /* Canonical already, or not. */
  assert_true(tally_key_is_canonical("req{a=1,b}", 10));
  assert_false(tally_key_is_canonical("req{b,a=1}", 10));
  assert_false(tally_key_is_canonical("req{}", 5));
}

static void test_limits(void **state)
{
  (void)state;
  char text[1024];
  char want[1024];
  /* 16 tags; 17 refused. */
  strcpy(text, "n{");
  for (unsigned i = 0; i < TALLY_TAGS_MAX; i++) sprintf(text + strlen(text), "%s%c", i ? "," : "", 'a' + i);
  strcat(text, "}");
  expect_canonical(text, text);
  text[strlen(text) - 1] = '\0';
  strcat(text, ",q}");
  expect_status(text, TALLY_KEY_TAGS_TOO_MANY);
  /* A tag key of 64 bytes, a value of 128; one more of either refused. */
  memset(text, 0, sizeof text);
  strcpy(text, "n{");
  memset(text + 2, 'k', TALLY_TAG_KEY_LEN_MAX);
  text[2 + TALLY_TAG_KEY_LEN_MAX] = '=';
  memset(text + 3 + TALLY_TAG_KEY_LEN_MAX, 'v', TALLY_TAG_VALUE_LEN_MAX);
  strcat(text, "}");
  expect_canonical(text, text);
  memmove(text + 3, text + 2, strlen(text + 2) + 1); /* 65-byte tag key */
  expect_status(text, TALLY_KEY_TAG_TOO_LONG);
  memset(text, 0, sizeof text);
  strcpy(text, "n{k=");
  memset(text + 4, 'v', TALLY_TAG_VALUE_LEN_MAX + 1u);
  strcat(text, "}");
  expect_status(text, TALLY_KEY_TAG_TOO_LONG);
  /* The whole key: 224 bytes; 225 refused (name alone, and name with tags). */
  memset(want, 0, sizeof want);
  memset(want, 'n', TALLY_NAME_LEN_MAX);
  expect_canonical(want, want);
  memset(want, 'n', TALLY_NAME_LEN_MAX + 1u);
  expect_status(want, TALLY_KEY_TOO_LONG);
  memset(want, 0, sizeof want);
  memset(want, 'n', TALLY_NAME_LEN_MAX - 5u);
  strcat(want, "{a=b}");
  expect_canonical(want, want);
  want[strlen(want) - 1] = '\0';
  strcat(want, "c}");
  expect_status(want, TALLY_KEY_TOO_LONG);
}

static void test_policy(void **state)
{
  (void)state;
  const struct tally_tags_policy keep = { .mode = TALLY_TAGS_KEEP };
  const struct tally_tags_policy drop = { .mode = TALLY_TAGS_DROP };
  const struct tally_tags_policy allow = { .mode = TALLY_TAGS_ALLOW, .allow_count = 2,
    .allow_len = {3, 6}, .allow = {"env", "status"} };
  assert_true(tally_tags_policy_keeps(&keep, "host", 4));
  assert_false(tally_tags_policy_keeps(&drop, "env", 3));
  assert_true(tally_tags_policy_keeps(&allow, "env", 3));
  assert_true(tally_tags_policy_keeps(&allow, "status", 6));
  assert_false(tally_tags_policy_keeps(&allow, "en", 2));
  assert_false(tally_tags_policy_keeps(&allow, "envx", 4));
  assert_false(tally_tags_policy_keeps(&allow, "host", 4));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_byte_tables),
    cmocka_unit_test(test_every_order_one_key),
    cmocka_unit_test(test_build_matches_text),
    cmocka_unit_test(test_every_status),
    cmocka_unit_test(test_limits),
    cmocka_unit_test(test_policy),
  };
  int total = (int)(sizeof(tests) / sizeof(tests[0]));
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%d passed, %d failed\n", total - failed, failed);
  return failed == 0 ? 0 : 1;
}
