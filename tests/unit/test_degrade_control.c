/*
 * test_degrade_control.c — the control thread's half of the degradation
 * levels (control/daemon/degrade_control.c) on the fake appliance
 * (control_fakes.c) with two lcores whose figures the test sets: what each
 * signal reads (full polls, the ack FIFO, the log ring, the persistence
 * lag), that a tick measures at most once per TALLY_DEGRADE_TICK_MS and the
 * first only sets the baseline, level transitions and hysteresis as ticks
 * see them, ingest signals never leading to level 3, and the operator
 * override (tallyctl degrade N / auto) with the stats lines it shows. The
 * state machine alone is test_degrade.c. Runs on the test's thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "actions.h"
#include "control_fakes.h"
#include "degrade_control.h"

#define TICK_NS (TALLY_DEGRADE_TICK_MS * 1000000ull)

struct fixture {
  struct tally_appliance appliance;
  struct tally_lcore *lcores;
  struct tally_log_ring *log_ring;
  uint64_t now_ns;
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  fake_appliance_init(&f->appliance);
  tally_degrade_init(&f->appliance.degrade);
  f->lcores = calloc(2, sizeof *f->lcores);
  f->log_ring = calloc(1, sizeof *f->log_ring);
  if (f->lcores == NULL || f->log_ring == NULL) return -1;
  f->lcores[1].log_ring = f->log_ring; /* log mode on the second lcore only */
  f->appliance.lcores = f->lcores;
  f->appliance.lcore_count = 2;
  f->now_ns = 5 * TICK_NS;
  tally_degrade_tick(&f->appliance, f->now_ns); /* the baseline: measures, never steps */
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  free(f->log_ring);
  free(f->lcores);
  free(f);
  return 0;
}

/* One tick a whole TALLY_DEGRADE_TICK_MS after the last; lcore 0 polled 100 times, `full` full. */
static uint32_t tick(struct fixture *f, uint64_t full)
{
  f->lcores[0].stats.polls += 100;
  f->lcores[0].stats.full_polls += full;
  f->lcores[1].stats.polls += 100;
  f->now_ns += TICK_NS;
  tally_degrade_tick(&f->appliance, f->now_ns);
  return f->appliance.degrade.level;
}

static uint32_t ticks(struct fixture *f, uint64_t full, uint32_t count)
{
  uint32_t level = f->appliance.degrade.level;
  for (uint32_t i = 0; i < count; i++) level = tick(f, full);
  return level;
}

static uint32_t signal(struct fixture *f, enum tally_degrade_signal which)
{
  return f->appliance.degrade.signals[which];
}

/* Acks waiting in lcore `index`'s FIFO. */
static void fifo_hold(struct fixture *f, uint32_t index, uint64_t waiting)
{
  f->lcores[index].acks_tail = f->lcores[index].acks_head + waiting;
}

static void test_first_tick_and_tick_interval(void **state)
{
  struct fixture *f = *state;
  /* The baseline tick stepped nothing: no signal published yet. */
  assert_int_equal(f->appliance.degrade.pressure, 0);
  f->lcores[0].stats.polls += 100;
  f->lcores[0].stats.full_polls += 100;
  /* Less than a tick later: not measured (the deltas stay for the next tick). */
  tally_degrade_tick(&f->appliance, f->now_ns + TICK_NS - 1u);
  assert_int_equal(signal(f, TALLY_DEGRADE_LCORE_BUSY), 0);
  f->now_ns += TICK_NS;
  tally_degrade_tick(&f->appliance, f->now_ns);
  /* All polls full: 1000, capped below level 3's high mark (an ingest signal). */
  assert_int_equal(signal(f, TALLY_DEGRADE_LCORE_BUSY), 949);
  assert_int_equal(f->appliance.degrade.pressure, 949);
}

static void test_busy_sheds_statsd_never_read_only(void **state)
{
  struct fixture *f = *state;
  /* 75% of polls full: level 1 after TALLY_DEGRADE_ENTER_TICKS ticks, not before. */
  assert_int_equal(ticks(f, 75, TALLY_DEGRADE_ENTER_TICKS - 1u), 0);
  assert_int_equal(tick(f, 75), 1);
  assert_int_equal(signal(f, TALLY_DEGRADE_LCORE_BUSY), 750);
  /* Every poll full, for long: level 2 (shed statsd), never 3. */
  assert_int_equal(ticks(f, 100, 10u * TALLY_DEGRADE_ENTER_TICKS), 2);
  /* An lcore that did not poll, or whose figures went back: 0, not a wrap. */
  f->lcores[0].stats.full_polls = 0;
  f->now_ns += TICK_NS;
  tally_degrade_tick(&f->appliance, f->now_ns);
  assert_int_equal(signal(f, TALLY_DEGRADE_LCORE_BUSY), 0);
  assert_int_equal(f->appliance.degrade.level, 2); /* hysteresis: one quiet tick is not enough */
}

static void test_persistence_signals_reach_read_only(void **state)
{
  struct fixture *f = *state;
  /* The fullest ack FIFO of the two lcores. */
  fifo_hold(f, 0, TALLY_ACKS_PENDING_MAX / 10u);
  fifo_hold(f, 1, TALLY_ACKS_PENDING_MAX);
  assert_int_equal(ticks(f, 0, TALLY_DEGRADE_ENTER_TICKS), 3);
  assert_int_equal(signal(f, TALLY_DEGRADE_ACK_FIFO), 1000);
  fifo_hold(f, 1, 0);
  /* The log ring (lcore 1 only) at 31/32. */
  f->log_ring->head = 7;
  f->log_ring->tail = 7u + TALLY_LOG_RING_SIZE - TALLY_LOG_RING_SIZE / 32u;
  tick(f, 0);
  assert_int_equal(signal(f, TALLY_DEGRADE_LOG_RING), 968);
  assert_int_equal(signal(f, TALLY_DEGRADE_ACK_FIFO),
    TALLY_ACKS_PENDING_MAX / 10u * 1000u / TALLY_ACKS_PENDING_MAX);
  f->log_ring->tail = f->log_ring->head;
  /* applied_seq ahead of durable_seq_seen by a FIFO's worth. */
  f->lcores[0].stats.applied_seq = TALLY_ACKS_PENDING_MAX + 5u;
  f->lcores[0].stats.durable_seq_seen = 5;
  tick(f, 0);
  assert_int_equal(signal(f, TALLY_DEGRADE_PERSIST_LAG), 1000);
  assert_int_equal(f->appliance.degrade.level, 3);
  /* durable ahead of applied (read in that order, relaxed): no lag, not a wrap. */
  f->lcores[0].stats.durable_seq_seen = TALLY_ACKS_PENDING_MAX + 9u;
  tick(f, 0);
  assert_int_equal(signal(f, TALLY_DEGRADE_PERSIST_LAG), 0);
}

static void test_leaves_one_level_at_a_time(void **state)
{
  struct fixture *f = *state;
  fifo_hold(f, 0, TALLY_ACKS_PENDING_MAX);
  assert_int_equal(ticks(f, 0, TALLY_DEGRADE_ENTER_TICKS), 3);
  /* 90%: below level 3's high mark, above its low mark: stays (hysteresis). */
  fifo_hold(f, 0, TALLY_ACKS_PENDING_MAX / 10u * 9u);
  assert_int_equal(ticks(f, 0, 5u * TALLY_DEGRADE_LEAVE_TICKS), 3);
  /* Empty: down one level per TALLY_DEGRADE_LEAVE_TICKS quiet ticks. */
  fifo_hold(f, 0, 0);
  assert_int_equal(ticks(f, 0, TALLY_DEGRADE_LEAVE_TICKS - 1u), 3);
  assert_int_equal(tick(f, 0), 2);
  assert_int_equal(ticks(f, 0, TALLY_DEGRADE_LEAVE_TICKS), 1);
  assert_int_equal(ticks(f, 0, TALLY_DEGRADE_LEAVE_TICKS), 0);
  assert_int_equal(f->appliance.degrade.changes, 4);
}

static char *take(struct tally_out *out)
{
  size_t length = 0;
  char *text = tally_out_take(out, &length);
  assert_non_null(text);
  return text;
}

static void test_operator_override(void **state)
{
  struct fixture *f = *state;
  struct tally_out out;
  tally_out_init_memory(&out);
  assert_int_equal(tally_action_degrade(&f->appliance, false, 3, &out), TALLY_ACTION_OK);
  char *text = take(&out);
  assert_string_equal(text, "degradation level 3 (forced; 'degrade auto' ends it)\n");
  free(text);
  assert_int_equal(f->appliance.degrade.level, 3); /* at once, not at the next tick */
  /* Quiet signals: the automatic level stays 0 under the override, which wins. */
  assert_int_equal(ticks(f, 0, 3u * TALLY_DEGRADE_LEAVE_TICKS), 3);
  assert_int_equal(f->appliance.degrade.automatic, 0);
  tally_out_init_memory(&out);
  tally_degrade_stats(&f->appliance, &out);
  text = take(&out);
  assert_non_null(strstr(text, "degradation_level 3\n"));
  assert_non_null(strstr(text, "degradation_automatic 0\n"));
  assert_non_null(strstr(text, "degradation_overridden 1\n"));
  assert_non_null(strstr(text, "degradation_signal_ack_fifo_permille 0\n"));
  free(text);
  /* The signals keep being measured: the automatic level climbs meanwhile. */
  ticks(f, 80, TALLY_DEGRADE_ENTER_TICKS);
  assert_int_equal(f->appliance.degrade.automatic, 1);
  assert_int_equal(f->appliance.degrade.level, 3);
  /* An override to 0 holds even under pressure. */
  tally_out_init_memory(&out);
  tally_action_degrade(&f->appliance, false, 0, &out);
  free(take(&out));
  assert_int_equal(ticks(f, 100, 10u * TALLY_DEGRADE_ENTER_TICKS), 0);
  assert_int_equal(f->appliance.degrade.automatic, 2);
  /* auto: the automatic level, at once. */
  tally_out_init_memory(&out);
  assert_int_equal(tally_action_degrade(&f->appliance, true, 0, &out), TALLY_ACTION_OK);
  text = take(&out);
  assert_string_equal(text, "degradation level automatic (now 2)\n");
  free(text);
  assert_int_equal(f->appliance.degrade.level, 2);
  assert_false(f->appliance.degrade.overridden);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_first_tick_and_tick_interval, setup, teardown),
    cmocka_unit_test_setup_teardown(test_busy_sheds_statsd_never_read_only, setup, teardown),
    cmocka_unit_test_setup_teardown(test_persistence_signals_reach_read_only, setup, teardown),
    cmocka_unit_test_setup_teardown(test_leaves_one_level_at_a_time, setup, teardown),
    cmocka_unit_test_setup_teardown(test_operator_override, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
