/*
 * test_statsd_sources.c — statsd admission (dataplane/lcore/statsd_sources.c)
 * on a hand-driven TSC: a flooding source is held to its burst plus its rate
 * while a second source keeps its whole budget; the table is bounded and new
 * sources beyond it share the overflow bucket; idle slots are reused; the
 * allow-list and the levels (1: a built-in budget, 2 and 3: shed) apply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <sodium.h>

#include "config.h"
#include "statsd_sources.h"

static struct tally_statsd_sources *table;
static uint64_t hz;

static int setup_all(void **state)
{
  (void)state;
  char *argv[] = { "test_statsd_sources", "--no-huge", "-m", "64", "--no-shconf", "--no-pci",
    "-l", "0", "--log-level=*:error", NULL };
  if (rte_eal_init(9, argv) < 0) return -1;
  if (sodium_init() < 0) return -1;
  table = aligned_alloc(RTE_CACHE_LINE_SIZE, sizeof *table);
  hz = rte_get_tsc_hz();
  return table == NULL || hz == 0 ? -1 : 0;
}

static struct tally_statsd_policy policy_of(uint32_t rate, uint32_t burst)
{
  struct tally_statsd_policy policy;
  memset(&policy, 0, sizeof policy);
  policy.source_rate = rate;
  policy.source_burst = burst;
  return policy;
}

/* Datagrams admitted of count sent by address at now, level 0. */
static uint32_t admitted(const struct tally_statsd_policy *policy, uint32_t address,
  uint32_t count, uint64_t now, uint32_t level)
{
  uint32_t ok = 0;
  for (uint32_t i = 0; i < count; i++) {
    enum tally_reason reason = tally_statsd_sources_admit(table, policy, address, level, now);
    if (reason == TALLY_OK) {
      ok++;
    } else {
      assert_int_equal(reason, TALLY_REASON_STATSD_SOURCE_OVER_BUDGET);
    }
  }
  return ok;
}

static void test_flood_held_to_budget_other_source_intact(void **unused)
{
  (void)unused;
  struct tally_statsd_policy policy = policy_of(100, 20);
  uint64_t start = rte_get_tsc_cycles();
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  uint32_t attacker = 0x0a000063u;
  uint32_t honest = 0x0a000002u;
  assert_int_equal(admitted(&policy, attacker, 10000, start, 0), 20); /* the burst, no more */
  assert_int_equal(admitted(&policy, honest, 20, start, 0), 20);      /* untouched by the flood */
  /* A second later: the rate refilled 100 (capped by the burst of 20). */
  assert_int_equal(admitted(&policy, attacker, 10000, start + hz, 0), 20);
  /* Half a second: 50 tokens, capped at 20 again; a tenth: 10. */
  assert_int_equal(admitted(&policy, attacker, 10000, start + hz + hz / 10, 0), 10);
  assert_int_equal(table->sources_used, 2);
  assert_int_equal(table->overflow_checks, 0);
}

static void test_no_budget_at_level_0(void **unused)
{
  (void)unused;
  struct tally_statsd_policy policy = policy_of(0, 100);
  uint64_t start = rte_get_tsc_cycles();
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  assert_int_equal(admitted(&policy, 0x0a000001u, 5000, start, 0), 5000);
  assert_int_equal(table->sources_used, 0);
  /* Level 1 without a configured budget: the built-in one. */
  assert_int_equal(admitted(&policy, 0x0a000001u, 5000, start, 1),
    TALLY_STATSD_SOURCE_BURST_DEGRADED);
}

static void test_table_bounded_overflow_shared(void **unused)
{
  (void)unused;
  struct tally_statsd_policy policy = policy_of(1, 1);
  uint64_t start = rte_get_tsc_cycles();
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  /* Many more sources than slots, each sending once. */
  uint32_t sources = 4u * TALLY_STATSD_SOURCES_MAX;
  uint32_t ok = 0;
  for (uint32_t i = 0; i < sources; i++) ok += admitted(&policy, 0x0b000000u + i, 1, start, 0);
  assert_true(table->sources_used <= TALLY_STATSD_SOURCES_MAX);
  assert_true(table->sources_used > TALLY_STATSD_SOURCES_MAX / 2u); /* probing fills most of it */
  assert_true(table->overflow_checks >= sources - TALLY_STATSD_SOURCES_MAX);
  /* Each tabled source got its one datagram; the overflow bucket admitted one in all. */
  assert_int_equal(ok, table->sources_used + 1u);
  /* After the idle time, slots are free for new sources again. */
  uint64_t later = start + hz * (TALLY_STATSD_SOURCE_IDLE_S + 1u);
  uint64_t overflow_before = table->overflow_checks;
  assert_int_equal(admitted(&policy, 0x0c000001u, 1, later, 0), 1);
  assert_int_equal(table->overflow_checks, overflow_before);
}

static void test_allow_list_and_shedding(void **unused)
{
  (void)unused;
  struct tally_statsd_policy policy = policy_of(0, 100);
  policy.allow_count = 1;
  policy.allow[0] = (struct tally_cidr){ .network = 0x0a000000u, .mask = 0xffffff00u };
  uint64_t start = rte_get_tsc_cycles();
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  assert_int_equal(tally_statsd_sources_admit(table, &policy, 0x0a0000feu, 0, start), TALLY_OK);
  assert_int_equal(tally_statsd_sources_admit(table, &policy, 0x0a000100u, 0, start),
    TALLY_REASON_STATSD_SOURCE_NOT_ALLOWED);
  assert_int_equal(tally_statsd_sources_admit(table, &policy, 0x0a0000feu, 2, start),
    TALLY_REASON_STATSD_SHED);
  assert_int_equal(tally_statsd_sources_admit(table, &policy, 0x0a0000feu, 3, start),
    TALLY_REASON_STATSD_SHED);
}

static void test_hash_key_differs_per_table(void **unused)
{
  (void)unused;
  struct tally_statsd_policy policy = policy_of(10, 10);
  uint64_t start = rte_get_tsc_cycles();
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  uint8_t first[16];
  memcpy(first, table->hash_key, sizeof first);
  assert_int_equal(tally_statsd_sources_init(table, &policy, hz, start), 0);
  assert_memory_not_equal(first, table->hash_key, sizeof first);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_flood_held_to_budget_other_source_intact),
    cmocka_unit_test(test_no_budget_at_level_0),
    cmocka_unit_test(test_table_bounded_overflow_shared),
    cmocka_unit_test(test_allow_list_and_shedding),
    cmocka_unit_test(test_hash_key_differs_per_table),
  };
  return cmocka_run_group_tests(tests, setup_all, NULL);
}
