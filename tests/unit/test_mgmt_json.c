/*
 * test_mgmt_json.c — `tallyctl --json` (control/common/mgmt_json.c): the
 * list, stats and cluster answers as JSON documents with their field names,
 * numbers kept digit for digit (128-bit totals included), strings escaped,
 * and every answer line not of its command's form refused with the line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mgmt_json.h"

/* Renders body; returns the document (caller frees) or NULL, with the error in error. */
static char *render(enum tally_mgmt_json_kind kind, const char *body, char *error, size_t size)
{
  struct tally_out out;
  tally_out_init_memory(&out);
  bool ok = tally_mgmt_json(kind, body, strlen(body), &out, error, size);
  size_t length = 0;
  char *text = tally_out_take(&out, &length);
  if (ok) return text;
  free(text);
  return NULL;
}

static void expect_json(enum tally_mgmt_json_kind kind, const char *body, const char *want)
{
  char error[160] = "";
  char *got = render(kind, body, error, sizeof error);
  if (got == NULL) fail_msg("refused: %s", error);
  if (strcmp(got, want) != 0) fail_msg("got  %s\nwant %s", got, want);
  free(got);
}

static void expect_refused(enum tally_mgmt_json_kind kind, const char *body, const char *why)
{
  char error[160] = "";
  char *got = render(kind, body, error, sizeof error);
  if (got != NULL) fail_msg("accepted: %s", got);
  if (strstr(error, why) == NULL) fail_msg("error '%s' does not say '%s'", error, why);
}

static void test_list(void **unused)
{
  (void)unused;
  expect_json(TALLY_MGMT_JSON_LIST, "", "{\"counters\": []}\n");
  expect_json(TALLY_MGMT_JSON_LIST, "a.b 5\nc -12\n",
    "{\"counters\": [{\"name\": \"a.b\", \"value\": 5}, {\"name\": \"c\", \"value\": -12}]}\n");
  /* A node total beyond int64 keeps every digit. */
  expect_json(TALLY_MGMT_JSON_LIST, "big 147573952589676412928\n",
    "{\"counters\": [{\"name\": \"big\", \"value\": 147573952589676412928}]}\n");
  /* Names may hold quotes, backslashes and (in a tag set) blanks: the last blank splits. */
  expect_json(TALLY_MGMT_JSON_LIST, "q\"\\x 1\nreq{k=a b} 2\n",
    "{\"counters\": [{\"name\": \"q\\\"\\\\x\", \"value\": 1}, "
    "{\"name\": \"req{k=a b}\", \"value\": 2}]}\n");
  expect_refused(TALLY_MGMT_JSON_LIST, "novalue\n", "not 'name value'");
  expect_refused(TALLY_MGMT_JSON_LIST, "a 1.5\n", "value not an integer");
  expect_refused(TALLY_MGMT_JSON_LIST, "a x\n", "value not an integer");
}

static void test_stats(void **unused)
{
  (void)unused;
  expect_json(TALLY_MGMT_JSON_STATS,
    "rx_packets 10\nstore_persist_mode group_commit\nport0_rx_missed 0\n",
    "{\"rx_packets\": 10, \"store_persist_mode\": \"group_commit\", \"port0_rx_missed\": 0}\n");
  /* Not numbers: leading zeros, a bare '-', a trailing '.'. */
  expect_json(TALLY_MGMT_JSON_STATS, "a 007\nb -\nc 1.\n",
    "{\"a\": \"007\", \"b\": \"-\", \"c\": \"1.\"}\n");
  expect_refused(TALLY_MGMT_JSON_STATS, "lonely\n", "not 'key value'");
}

static void test_cluster(void **unused)
{
  (void)unused;
  expect_json(TALLY_MGMT_JSON_CLUSTER, "single node: no [cluster] section in the config\n",
    "{\"mode\": \"single\", \"peers\": []}\n");
  expect_json(TALLY_MGMT_JSON_CLUSTER,
    "self 1 ready=1 read_only=0 peers_up=2\n"
    "fault delay_ms=5 dropped=0\n"
    "peer 2 state=up phi=0.52 breaker=closed\n"
    "peer 3 state=retired held_seq=7\n",
    "{\"mode\": \"cluster\", \"self\": {\"id\": 1, \"ready\": 1, \"read_only\": 0, "
    "\"peers_up\": 2}, \"fault\": {\"delay_ms\": 5, \"dropped\": 0}, \"peers\": ["
    "{\"id\": 2, \"state\": \"up\", \"phi\": 0.52, \"breaker\": \"closed\"}, "
    "{\"id\": 3, \"state\": \"retired\", \"held_seq\": 7}]}\n");
  expect_json(TALLY_MGMT_JSON_CLUSTER, "self 4 members=1\n",
    "{\"mode\": \"cluster\", \"self\": {\"id\": 4, \"members\": 1}, \"peers\": []}\n");
  expect_refused(TALLY_MGMT_JSON_CLUSTER, "", "empty answer");
  expect_refused(TALLY_MGMT_JSON_CLUSTER, "peer 2 state=up\n", "no self line");
  expect_refused(TALLY_MGMT_JSON_CLUSTER, "self x ready=1\n", "no id");
  expect_refused(TALLY_MGMT_JSON_CLUSTER, "self 1 ready\n", "not 'key=value'");
  expect_refused(TALLY_MGMT_JSON_CLUSTER, "self 1\nbogus 2\n", "not a self, fault or peer line");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_list),
    cmocka_unit_test(test_stats),
    cmocka_unit_test(test_cluster),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
