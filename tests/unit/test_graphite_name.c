/*
 * test_graphite_name.c — a counter's key as a carbon path
 * (control/common/graphite_name.c): plain statsd names unchanged, every byte
 * carbon or graphite-web dislikes replaced, empty components never made,
 * tags in the canonical name{k=v,...} form as Graphite's name;k=v;..., and
 * the output bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "graphite_name.h"
#include "tally/limits.h"

static void expect_path(const char *key, const char *want)
{
  char out[TALLY_GRAPHITE_PATH_LEN_MAX + 1];
  size_t length = tally_graphite_path(key, strlen(key), out, sizeof out);
  if (length != strlen(want) || strcmp(out, want) != 0) {
    fail_msg("\"%s\": got \"%s\" (%zu), want \"%s\"", key, length ? out : "", length, want);
  }
}

static void test_plain_names_unchanged(void **unused)
{
  (void)unused;
  expect_path("requests.ok", "requests.ok");
  expect_path("a", "a");
  expect_path("app.svc-1.req_total", "app.svc-1.req_total");
  expect_path("A.Z.0.9", "A.Z.0.9");
}

static void test_bytes_carbon_dislikes(void **unused)
{
  (void)unused;
  expect_path("a b", "a_b");                 /* carbon splits a line on blanks */
  expect_path("a/b", "a_b");                 /* whisper: a directory */
  expect_path("f(x)*[y]?,z", "f_x___y___z");
  expect_path("a;b=c~d\"e'f\\g", "a_b_c_d_e_f_g");
  expect_path("a{b", "a_b");                 /* not a tag tail */
  expect_path("a}", "a_");
  expect_path("%$&", "___");
}

static void test_no_empty_components(void **unused)
{
  (void)unused;
  expect_path(".a", "_a");
  expect_path("a.", "a_");
  expect_path("a..b", "a._b");
  expect_path("a...b", "a.__b");
  expect_path(".", "_");
  expect_path("..", "__");
}

static void test_tags(void **unused)
{
  (void)unused;
  expect_path("req{status=500}", "req;status=500");
  expect_path("req{a=1,b=2}", "req;a=1;b=2");
  expect_path("app.req{host=web-1,status=200}", "app.req;host=web-1;status=200");
  /* A tag key loses ; ! ^ = (and blanks), a tag value ; and a leading ~. */
  expect_path("m{k!^x=v;w}", "m;k__x=v_w");
  expect_path("m{k=~v~}", "m;k=_v~");
  expect_path("m{k=a.b/c}", "m;k=a.b/c");    /* values may hold dots and slashes */
  expect_path("m{k=a=b}", "m;k=a=b");        /* the first '=' splits */
  /* The name part of a tagged key is mapped as a name. */
  expect_path("a b.{k=v}", "a_b_;k=v");
  /* Malformed tags still give a well-formed tagged path. */
  expect_path("m{=}", "m;_=_");
  expect_path("m{k}", "m;k=_");
  expect_path("m{k=v,}", "m;k=v;_=_");
  /* No name before the braces: all name. */
  expect_path("{k=v}", "_k_v_");
}

static void test_bounds(void **unused)
{
  (void)unused;
  char out[8];
  assert_int_equal(tally_graphite_path("abcdefg", 7, out, sizeof out), 7);
  assert_string_equal(out, "abcdefg");
  assert_int_equal(tally_graphite_path("abcdefgh", 8, out, sizeof out), 0);
  assert_int_equal(tally_graphite_path("ab{k=vv}", 8, out, sizeof out), 7);
  assert_string_equal(out, "ab;k=vv");
  assert_int_equal(tally_graphite_path("ab{k=vvv}", 9, out, sizeof out), 0);
  assert_int_equal(tally_graphite_path("", 0, out, sizeof out), 0);
  assert_int_equal(tally_graphite_path("a", 1, out, 0), 0);
  /* The longest name fits the path bound with the longest prefix. */
  char name[TALLY_NAME_LEN_MAX];
  memset(name, 'n', sizeof name);
  char path[TALLY_GRAPHITE_PATH_LEN_MAX + 1];
  assert_int_equal(tally_graphite_path(name, sizeof name, path, sizeof path), sizeof name);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_plain_names_unchanged),
    cmocka_unit_test(test_bytes_carbon_dislikes),
    cmocka_unit_test(test_no_empty_components),
    cmocka_unit_test(test_tags),
    cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
