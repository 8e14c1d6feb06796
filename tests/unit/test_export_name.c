/*
 * test_export_name.c — control/daemon/export_name.c: statsd names as metric
 * names, the canonical tag form NAME{k=v,...} split into labels, label
 * sanitising and escaping, and the plain-key rule (a key that is not plain
 * carries statsd_name, so two keys never become one series). Runs on the
 * test's thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "export_name.h"

/* The series of KEY as "family{labels}" (or "family" without labels). */
static const char *series_text(const char *key, bool *plain)
{
  static char text[TALLY_EXPORT_SERIES_SIZE_MAX + 4];
  struct tally_export_series series;
  tally_export_series_of(key, strlen(key), &series);
  if (plain != NULL) *plain = series.plain;
  if (series.length == series.family_len) {
    snprintf(text, sizeof text, "%.*s", (int)series.family_len, series.text);
  } else {
    snprintf(text, sizeof text, "%.*s{%.*s}", (int)series.family_len, series.text,
      (int)(series.length - series.family_len), series.text + series.family_len);
  }
  return text;
}

static void test_plain_names(void **state)
{
  (void)state;
  bool plain = false;
  assert_string_equal(series_text("requests.ok", &plain), "requests_ok");
  assert_true(plain);
  assert_string_equal(series_text("a..b", &plain), "a__b");
  assert_true(plain);
  assert_string_equal(series_text("API.v2.Hits", &plain), "API_v2_Hits");
  assert_true(plain);
}

static void test_names_needing_the_label(void **state)
{
  (void)state;
  bool plain = true;
  /* An underscore could come from a dot: a_b and a.b would be one series without the label. */
  assert_string_equal(series_text("a_b", &plain), "a_b{statsd_name=\"a_b\"}");
  assert_false(plain);
  assert_string_equal(series_text("a.b", &plain), "a_b");
  assert_true(plain);
  assert_string_equal(series_text("5xx.count", &plain), "_5xx_count{statsd_name=\"5xx.count\"}");
  assert_false(plain);
  assert_string_equal(series_text("req-ms/s", &plain), "req_ms_s{statsd_name=\"req-ms/s\"}");
  assert_string_equal(series_text("q\"x\\y", &plain), "q_x_y{statsd_name=\"q\\\"x\\\\y\"}");
  /* Prometheus's own series names. */
  assert_string_equal(series_text("up", &plain), "up{statsd_name=\"up\"}");
  assert_false(plain);
  assert_string_equal(series_text("scrape.x", &plain), "scrape_x{statsd_name=\"scrape.x\"}");
  assert_string_equal(series_text("upper", &plain), "upper");
  assert_true(plain);
}

static void test_split(void **state)
{
  (void)state;
  struct tally_export_tag tags[4];
  size_t name_len = 0;
  const char *key = "req{code=500,path=/a=b,z}";
  assert_int_equal(tally_export_key_split(key, strlen(key), &name_len, tags, 4), 3);
  assert_int_equal(name_len, 3);
  assert_int_equal(tags[0].key_len, 4);
  assert_memory_equal(tags[0].key, "code", 4);
  assert_int_equal(tags[0].value_len, 3);
  assert_memory_equal(tags[0].value, "500", 3);
  assert_int_equal(tags[1].value_len, 4);
  assert_memory_equal(tags[1].value, "/a=b", 4);
  assert_int_equal(tags[2].key_len, 1);
  assert_false(tags[2].has_equals);
  assert_int_equal(tags[2].value_len, 0);
  assert_int_equal(tally_export_key_split("plain", 5, &name_len, tags, 4), 0);
  assert_int_equal(name_len, 5);
  const char *bad[] = { "{a=1}", "a{}", "a{b=1", "a{b=1}x", "a{,b=1}", "a{b=1,}", "a{=1}",
    "a{b{=1}", "a{b=1,c=2,d=3,e=4,f=5}" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(tally_export_key_split(bad[i], strlen(bad[i]), &name_len, tags, 4), -1);
    assert_int_equal(name_len, strlen(bad[i]));
  }
}

static void test_tags_as_labels(void **state)
{
  (void)state;
  bool plain = false;
  assert_string_equal(series_text("req{code=500,host=web.1}", &plain),
    "req{code=\"500\",host=\"web.1\"}");
  assert_true(plain);
  /* The same name untagged and tagged are two series of one family. */
  assert_string_equal(series_text("req", &plain), "req");
  /* Sanitised label names: the statsd_name label keeps them apart. */
  assert_string_equal(series_text("req{a-b=1}", &plain), "req{a_b=\"1\",statsd_name=\"req{a-b=1}\"}");
  assert_false(plain);
  assert_string_equal(series_text("req{a.b=1}", &plain), "req{a_b=\"1\"}");
  assert_true(plain);
  assert_string_equal(series_text("req{9x=1}", &plain), "req{_9x=\"1\",statsd_name=\"req{9x=1}\"}");
  /* Values are escaped, any byte kept. */
  assert_string_equal(series_text("req{p=a\"b\\c}", &plain), "req{p=\"a\\\"b\\\\c\"}");
  assert_true(plain);
  /* Not plain: a name with '_', a tag without a value (Prometheus drops empty labels). */
  assert_string_equal(series_text("http_req{code=1}", &plain),
    "http_req{code=\"1\",statsd_name=\"http_req{code=1}\"}");
  assert_false(plain);
  assert_string_equal(series_text("req{flag}", &plain), "req{flag=\"\",statsd_name=\"req{flag}\"}");
  assert_false(plain);
  /* Unsorted tags could repeat a sorted key's label set. */
  assert_string_equal(series_text("req{b=1,a=2}", &plain),
    "req{b=\"1\",a=\"2\",statsd_name=\"req{b=1,a=2}\"}");
  assert_false(plain);
}

static void test_reserved_and_colliding_labels(void **state)
{
  (void)state;
  bool plain = true;
  assert_string_equal(series_text("req{origin=x}", &plain),
    "req{tag_origin=\"x\",statsd_name=\"req{origin=x}\"}");
  assert_false(plain);
  assert_string_equal(series_text("req{statsd_name=x}", &plain),
    "req{tag_statsd_name=\"x\",statsd_name=\"req{statsd_name=x}\"}");
  assert_string_equal(series_text("req{__x=1}", &plain),
    "req{tag___x=\"1\",statsd_name=\"req{__x=1}\"}");
  /* a.b and a-b both map to a_b: one label name twice, so only statsd_name. */
  assert_string_equal(series_text("req{a-b=2,a.b=1}", &plain),
    "req{statsd_name=\"req{a-b=2,a.b=1}\"}");
  assert_false(plain);
  /* A key not of the tag form: the whole key is the name. */
  assert_string_equal(series_text("req{}", &plain), "req__{statsd_name=\"req{}\"}");
  assert_false(plain);
}

/* The longest key whose every byte escapes fits the series bound. */
static void test_longest_key(void **state)
{
  (void)state;
  char key[TALLY_NAME_LEN_MAX];
  memset(key, '"', sizeof key);
  key[0] = 'a';
  key[1] = '{';
  key[3] = '=';
  key[sizeof key - 1] = '}';
  struct tally_export_series series;
  tally_export_series_of(key, sizeof key, &series);
  assert_false(series.plain);
  assert_true(series.length <= sizeof series.text);
  memset(key, '\\', sizeof key);
  tally_export_series_of(key, sizeof key, &series);
  assert_int_equal(series.family_len, TALLY_NAME_LEN_MAX);
  assert_int_equal(series.length, TALLY_NAME_LEN_MAX + 14u + 2u * TALLY_NAME_LEN_MAX);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_plain_names),
    cmocka_unit_test(test_names_needing_the_label),
    cmocka_unit_test(test_split),
    cmocka_unit_test(test_tags_as_labels),
    cmocka_unit_test(test_reserved_and_colliding_labels),
    cmocka_unit_test(test_longest_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
