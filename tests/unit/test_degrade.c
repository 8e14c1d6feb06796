/*
 * test_degrade.c — the degradation levels' state machine (control/node/
 * degrade.h), stepped by hand: a level is entered only after its high mark
 * held TALLY_DEGRADE_ENTER_TICKS ticks, left one level at a time only after
 * the low mark held TALLY_DEGRADE_LEAVE_TICKS ticks; ingest signals never
 * reach level 3; the operator override wins until auto.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "degrade.h"

static uint32_t step(struct tally_degrade *degrade, enum tally_degrade_signal signal,
  uint32_t permille)
{
  uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT] = { 0 };
  signals[signal] = permille;
  return tally_degrade_step(degrade, signals);
}

static uint32_t steps(struct tally_degrade *degrade, enum tally_degrade_signal signal,
  uint32_t permille, uint32_t count)
{
  uint32_t level = 0;
  for (uint32_t i = 0; i < count; i++) level = step(degrade, signal, permille);
  return level;
}

static void test_enter_after_hold(void **unused)
{
  (void)unused;
  struct tally_degrade degrade;
  tally_degrade_init(&degrade);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_ACK_FIFO, 750, TALLY_DEGRADE_ENTER_TICKS - 1), 0);
  assert_int_equal(step(&degrade, TALLY_DEGRADE_ACK_FIFO, 750), 1);
  /* A dip below the high mark restarts the count. */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_ACK_FIFO, 900, TALLY_DEGRADE_ENTER_TICKS - 1), 1);
  assert_int_equal(step(&degrade, TALLY_DEGRADE_ACK_FIFO, 600), 1);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_ACK_FIFO, 900, TALLY_DEGRADE_ENTER_TICKS - 1), 1);
  assert_int_equal(step(&degrade, TALLY_DEGRADE_ACK_FIFO, 900), 2);
  /* A spike straight to 3. */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_PERSIST_LAG, 1000, TALLY_DEGRADE_ENTER_TICKS), 3);
  assert_int_equal(degrade.pressure, 1000);
  assert_int_equal(degrade.changes, 3);
}

static void test_leave_slowly_one_level_at_a_time(void **unused)
{
  (void)unused;
  struct tally_degrade degrade;
  tally_degrade_init(&degrade);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 990, TALLY_DEGRADE_ENTER_TICKS), 3);
  /* Between the marks: stays (hysteresis). */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 900, 10 * TALLY_DEGRADE_LEAVE_TICKS), 3);
  /* Below level 3's low mark, but not long enough. */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 0, TALLY_DEGRADE_LEAVE_TICKS - 1), 3);
  assert_int_equal(step(&degrade, TALLY_DEGRADE_LOG_RING, 900), 3); /* restarts the count */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 0, TALLY_DEGRADE_LEAVE_TICKS - 1), 3);
  assert_int_equal(step(&degrade, TALLY_DEGRADE_LOG_RING, 0), 2);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 0, TALLY_DEGRADE_LEAVE_TICKS), 1);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 0, TALLY_DEGRADE_LEAVE_TICKS), 0);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LOG_RING, 0, TALLY_DEGRADE_LEAVE_TICKS), 0);
}

static void test_ingest_signals_stop_at_level_2(void **unused)
{
  (void)unused;
  struct tally_degrade degrade;
  tally_degrade_init(&degrade);
  /* A statsd flood keeps every lcore busy: statsd is shed, reliable writes never refused. */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_LCORE_BUSY, 1000, 5 * TALLY_DEGRADE_ENTER_TICKS), 2);
  assert_true(degrade.signals[TALLY_DEGRADE_LCORE_BUSY] < 950);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_STEER_RING, 1000, 5 * TALLY_DEGRADE_ENTER_TICKS), 2);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_PERSIST_LAG, 1000, TALLY_DEGRADE_ENTER_TICKS), 3);
}

static void test_override(void **unused)
{
  (void)unused;
  struct tally_degrade degrade;
  tally_degrade_init(&degrade);
  assert_int_equal(tally_degrade_override(&degrade, true, 3), 3);
  assert_int_equal(degrade.level, 3);
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_ACK_FIFO, 0, 3 * TALLY_DEGRADE_LEAVE_TICKS), 3);
  assert_int_equal(degrade.automatic, 0);
  assert_int_equal(tally_degrade_override(&degrade, true, 0), 0);
  /* The automatic level keeps running under an override. */
  assert_int_equal(steps(&degrade, TALLY_DEGRADE_ACK_FIFO, 800, TALLY_DEGRADE_ENTER_TICKS), 0);
  assert_int_equal(degrade.automatic, 1);
  assert_int_equal(tally_degrade_override(&degrade, false, 0), 1);
  assert_false(degrade.overridden);
  assert_int_equal(degrade.changes, 3);
}

static void test_signal_names(void **unused)
{
  (void)unused;
  assert_string_equal(tally_degrade_signal_name(TALLY_DEGRADE_LCORE_BUSY), "lcore_busy");
  assert_string_equal(tally_degrade_signal_name(TALLY_DEGRADE_PERSIST_LAG), "persist_lag");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_enter_after_hold),
    cmocka_unit_test(test_leave_slowly_one_level_at_a_time),
    cmocka_unit_test(test_ingest_signals_stop_at_level_2),
    cmocka_unit_test(test_override),
    cmocka_unit_test(test_signal_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
