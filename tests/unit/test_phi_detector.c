/*
 * test_phi_detector.c — unit tests of the phi-accrual failure detector
 * (control/cluster/proto/phi_detector.c): parameter checks, regular heartbeats staying UP,
 * phi growing monotonically over a gap, SUSPECT and DOWN reached at the times
 * the formula predicts (computed here independently, to one 1 ms step), no
 * false DOWN under seeded jitter, recovery, the interval ring across
 * wraparound, and phi staying finite whatever time is fed in.
 *
 * The jitter test draws from a seeded generator; it prints its seed, and
 * TALLY_TEST_SEED=<n> replays it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "phi_detector.h"

#define MS 1000000ull
#define US 1000ull
/* Any start time: not zero, so that "0 = no heartbeat" can never pass by luck. */
#define T0 5000000000ull

static struct tally_phi_detector detector; /* 4 KB ring: not on the stack */

/* ---- Reference formula (Akka's, written plainly) ---------------------------- */

static double reference_phi(double y)
{
  double e = exp(-y * (1.5976 + 0.070566 * y * y));
  if (y > 0) return -log10(e / (1.0 + e));
  return -log10(1.0 - 1.0 / (1.0 + e));
}

/* The y at which reference_phi reaches threshold (bisection, 200 steps). */
static double reference_y(double threshold)
{
  double low = -10.0;
  double high = 20.0;
  for (int i = 0; i < 200; i++) {
    double middle = (low + high) / 2.0;
    if (reference_phi(middle) < threshold) low = middle;
    else high = middle;
  }
  return high;
}

/* Time after the last heartbeat at which phi reaches threshold. */
static double expected_delay_ns(double mean_ns, double deviation_ns, double pause_ns,
  double threshold)
{
  return mean_ns + pause_ns + reference_y(threshold) * deviation_ns;
}

static void init_default(uint64_t interval_ns)
{
  struct tally_phi_params params;
  tally_phi_params_default(&params, interval_ns);
  assert_true(tally_phi_detector_init(&detector, &params));
}

/* count regular heartbeats, interval_ns apart, from start_ns; returns the last time. */
static uint64_t beat_regularly(uint64_t start_ns, uint64_t interval_ns, uint32_t count)
{
  uint64_t now_ns = start_ns;
  for (uint32_t i = 0; i < count; i++) {
    if (i > 0) now_ns += interval_ns;
    tally_phi_detector_heartbeat(&detector, now_ns);
  }
  return now_ns;
}

/* First whole-ms step after last_ns at which the state reaches want (10 s max). */
static uint64_t first_step_in_state(uint64_t last_ns, enum tally_phi_state want)
{
  for (uint64_t step = 0; step <= 10000; step++) {
    if (tally_phi_detector_state(&detector, last_ns + step * MS) >= want) return step * MS;
  }
  fail_msg("state %s never reached", tally_phi_state_name(want));
  return 0;
}

static void assert_near(double value, double want, double tolerance)
{
  if (fabs(value - want) > tolerance) {
    fail_msg("%.6f is not within %.6f of %.6f", value, tolerance, want);
  }
}

/* ---- Parameters and lifecycle ---------------------------------------------- */

static void test_params(void **state)
{
  (void)state;
  struct tally_phi_params good;
  tally_phi_params_default(&good, 100 * MS);
  assert_null(tally_phi_params_check(&good));
  assert_int_equal(good.min_std_deviation_ns, 100 * MS);
  assert_int_equal(good.acceptable_pause_ns, 100 * MS);
  assert_int_equal(good.max_interval_ns, 1000 * MS);
  assert_true(good.suspect_phi == 5.0);
  assert_true(good.down_phi == 8.0);
  tally_phi_params_default(&good, TALLY_PHI_TIME_NS_MAX);
  assert_int_equal(good.max_interval_ns, TALLY_PHI_TIME_NS_MAX);

  tally_phi_params_default(&good, 100 * MS);
  struct tally_phi_params bad[12];
  for (int i = 0; i < 12; i++) bad[i] = good;
  bad[0].heartbeat_interval_ns = TALLY_PHI_HEARTBEAT_INTERVAL_NS_MIN - 1;
  bad[1].heartbeat_interval_ns = TALLY_PHI_TIME_NS_MAX + 1;
  bad[2].min_std_deviation_ns = TALLY_PHI_MIN_STD_DEVIATION_NS_MIN - 1;
  bad[3].min_std_deviation_ns = TALLY_PHI_TIME_NS_MAX + 1;
  bad[4].acceptable_pause_ns = TALLY_PHI_TIME_NS_MAX + 1;
  bad[5].max_interval_ns = good.heartbeat_interval_ns - 1;
  bad[6].max_interval_ns = TALLY_PHI_TIME_NS_MAX + 1;
  bad[7].suspect_phi = 0.0;
  bad[8].suspect_phi = NAN;
  bad[9].down_phi = 4.0; /* below suspect */
  bad[10].down_phi = TALLY_PHI_MAX + 1.0;
  bad[11].down_phi = INFINITY;
  for (int i = 0; i < 12; i++) {
    assert_non_null(tally_phi_params_check(&bad[i]));
    memset(&detector, 0xab, sizeof(detector));
    assert_false(tally_phi_detector_init(&detector, &bad[i]));
    assert_int_equal(((uint8_t *)&detector)[sizeof(detector) - 1], 0xab); /* untouched */
  }
  /* The edges are allowed. */
  struct tally_phi_params edge = good;
  edge.acceptable_pause_ns = 0;
  edge.min_std_deviation_ns = TALLY_PHI_MIN_STD_DEVIATION_NS_MIN;
  edge.max_interval_ns = edge.heartbeat_interval_ns;
  edge.down_phi = edge.suspect_phi;
  assert_null(tally_phi_params_check(&edge));
}

static void test_unknown_until_first_heartbeat(void **state)
{
  (void)state;
  init_default(100 * MS);
  assert_int_equal(tally_phi_detector_state(&detector, T0), TALLY_PHI_UNKNOWN);
  assert_true(tally_phi_detector_phi(&detector, T0) == 0.0);
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 0);
  tally_phi_detector_heartbeat(&detector, T0);
  assert_int_equal(tally_phi_detector_state(&detector, T0), TALLY_PHI_UP);
  assert_int_equal(tally_phi_detector_last_heartbeat_ns(&detector), T0);
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 1);
  /* Long silence after one heartbeat: DOWN, not UNKNOWN. */
  assert_int_equal(tally_phi_detector_state(&detector, T0 + 5000 * MS), TALLY_PHI_DOWN);
  beat_regularly(T0 + 100 * MS, 100 * MS, 10);
  tally_phi_detector_reset(&detector);
  assert_int_equal(tally_phi_detector_state(&detector, T0 + 5000 * MS), TALLY_PHI_UNKNOWN);
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 0);
  assert_true(tally_phi_detector_mean_ns(&detector) == 100.0 * MS); /* bootstrap again */
}

/* Until two intervals are known, phi uses the configured period, not the first interval. */
static void test_bootstrap_uses_expected_interval(void **state)
{
  (void)state;
  init_default(100 * MS);
  tally_phi_detector_heartbeat(&detector, T0);
  tally_phi_detector_heartbeat(&detector, T0 + 300 * MS); /* one interval, 300 ms */
  assert_true(tally_phi_detector_mean_ns(&detector) == 100.0 * MS);
  assert_true(tally_phi_detector_std_deviation_ns(&detector) == 100.0 * MS);
  /* 800 ms after it: DOWN by the bootstrap mean (at 100 + 100 pause + 5.23 * 100). */
  assert_int_equal(tally_phi_detector_state(&detector, T0 + 1100 * MS), TALLY_PHI_DOWN);
  tally_phi_detector_heartbeat(&detector, T0 + 600 * MS); /* second interval: measured now */
  assert_true(tally_phi_detector_mean_ns(&detector) == 300.0 * MS);
  assert_int_equal(tally_phi_detector_state(&detector, T0 + 1300 * MS), TALLY_PHI_UP);
}

/* ---- Regular heartbeats, gaps, thresholds ----------------------------------- */

static void test_regular_heartbeats_stay_up(void **state)
{
  (void)state;
  init_default(100 * MS);
  uint64_t now_ns = T0;
  tally_phi_detector_heartbeat(&detector, now_ns);
  for (uint32_t i = 0; i < 3000; i++) {
    /* Just before the next heartbeat is due, and on time. */
    assert_int_equal(tally_phi_detector_state(&detector, now_ns + 100 * MS - 1), TALLY_PHI_UP);
    now_ns += 100 * MS;
    assert_true(tally_phi_detector_phi(&detector, now_ns) < 0.1);
    tally_phi_detector_heartbeat(&detector, now_ns);
    assert_int_equal(tally_phi_detector_state(&detector, now_ns), TALLY_PHI_UP);
  }
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 3001);
  assert_true(tally_phi_detector_mean_ns(&detector) == 100.0 * MS);
  assert_true(tally_phi_detector_std_deviation_ns(&detector) == 100.0 * MS); /* the floor */
}

static void test_gap_grows_phi_monotonically(void **state)
{
  (void)state;
  init_default(100 * MS);
  uint64_t last_ns = beat_regularly(T0, 100 * MS, 100);
  double previous = 0.0;
  enum tally_phi_state previous_state = TALLY_PHI_UP;
  uint32_t increases = 0;
  for (uint64_t step = 0; step <= 3000; step++) {
    uint64_t now_ns = last_ns + step * MS;
    double phi = tally_phi_detector_phi(&detector, now_ns);
    assert_true(phi >= previous);
    if (phi > previous) increases++;
    enum tally_phi_state current = tally_phi_detector_state(&detector, now_ns);
    assert_true(current >= previous_state); /* UP -> SUSPECT -> DOWN, never back */
    previous = phi;
    previous_state = current;
  }
  assert_true(increases > 2000);
  assert_int_equal(previous_state, TALLY_PHI_DOWN);
  assert_true(previous > 100.0); /* 3 s = 28 deviations late */
  assert_true(previous < TALLY_PHI_MAX);
}

/* SUSPECT and DOWN are first seen within one 1 ms step of the formula's times. */
static void check_crossings(const struct tally_phi_params *params, uint32_t heartbeats)
{
  assert_true(tally_phi_detector_init(&detector, params));
  uint64_t last_ns = beat_regularly(T0, params->heartbeat_interval_ns, heartbeats);
  double mean_ns = (double)params->heartbeat_interval_ns;
  double deviation_ns = (double)params->min_std_deviation_ns;
  if (heartbeats < 3 && deviation_ns < mean_ns / 4.0) deviation_ns = mean_ns / 4.0;
  double pause_ns = (double)params->acceptable_pause_ns;
  double suspect_ns = expected_delay_ns(mean_ns, deviation_ns, pause_ns, params->suspect_phi);
  double down_ns = expected_delay_ns(mean_ns, deviation_ns, pause_ns, params->down_phi);
  assert_near((double)first_step_in_state(last_ns, TALLY_PHI_SUSPECT), suspect_ns, 1.0 * MS);
  assert_near((double)first_step_in_state(last_ns, TALLY_PHI_DOWN), down_ns, 1.0 * MS);
}

static void test_thresholds_crossed_at_expected_times(void **state)
{
  (void)state;
  struct tally_phi_params params;
  tally_phi_params_default(&params, 100 * MS);
  check_crossings(&params, 50);
  /* The documented figures for 100 ms: SUSPECT at ~612 ms, DOWN at ~723 ms. */
  assert_int_equal(first_step_in_state(tally_phi_detector_last_heartbeat_ns(&detector),
    TALLY_PHI_SUSPECT), 612 * MS);
  assert_int_equal(first_step_in_state(tally_phi_detector_last_heartbeat_ns(&detector),
    TALLY_PHI_DOWN), 723 * MS);

  params = (struct tally_phi_params){.heartbeat_interval_ns = 50 * MS,
    .min_std_deviation_ns = 10 * MS, .acceptable_pause_ns = 0,
    .max_interval_ns = 1000 * MS, .suspect_phi = 3.0, .down_phi = 12.0};
  check_crossings(&params, 1200); /* after the ring wrapped */
  check_crossings(&params, 2);    /* bootstrap: one interval, deviation = mean / 4 */
  check_crossings(&params, 1);    /* bootstrap: no interval */
  params.suspect_phi = 8.0;
  params.down_phi = 8.0;          /* no SUSPECT band: both at once */
  check_crossings(&params, 20);
}

/* ---- Jitter and recovery --------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull); /* splitmix64 */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void test_jitter_no_false_down(void **state)
{
  (void)state;
  uint64_t seed = 0x7a11e5eedull;
  const char *seed_text = getenv("TALLY_TEST_SEED");
  if (seed_text != NULL) seed = strtoull(seed_text, NULL, 0);
  printf("jitter seed %llu\n", (unsigned long long)seed);
  rng_state = seed;
  /* A tiny floor, so phi must rely on the measured deviation to stay low. */
  struct tally_phi_params params = {.heartbeat_interval_ns = 100 * MS,
    .min_std_deviation_ns = 1 * MS, .acceptable_pause_ns = 0,
    .max_interval_ns = 1000 * MS, .suspect_phi = 5.0, .down_phi = 8.0};
  assert_true(tally_phi_detector_init(&detector, &params));
  const uint64_t jitter_ns = 20 * MS; /* uniform in [-20, +20] ms: mean |jitter| 10 ms */
  const uint64_t mean_jitter_ns = jitter_ns / 2;
  uint64_t now_ns = T0;
  tally_phi_detector_heartbeat(&detector, now_ns);
  uint32_t not_up = 0;
  for (uint32_t i = 0; i < 5000; i++) {
    uint64_t interval_ns = 100 * MS - jitter_ns + rng_next() % (2 * jitter_ns + 1);
    if (i >= 20) { /* after the first intervals taught the deviation */
      uint64_t late_ns = now_ns + 100 * MS + 3 * mean_jitter_ns;
      assert_int_not_equal(tally_phi_detector_state(&detector, late_ns), TALLY_PHI_DOWN);
      if (tally_phi_detector_state(&detector, now_ns + interval_ns) != TALLY_PHI_UP) not_up++;
    }
    now_ns += interval_ns;
    tally_phi_detector_heartbeat(&detector, now_ns);
  }
  assert_int_equal(not_up, 0);
  /* The deviation was measured (uniform: 20 / sqrt(3) = 11.5 ms), not the floor. */
  assert_near(tally_phi_detector_std_deviation_ns(&detector), 11.55 * MS, 1.0 * MS);
  assert_near(tally_phi_detector_mean_ns(&detector), 100.0 * MS, 2.0 * MS);
  /* And a real failure is still found: silent for 1 s is DOWN. */
  assert_int_equal(tally_phi_detector_state(&detector, now_ns + 1000 * MS), TALLY_PHI_DOWN);
}

static void test_recovery_after_heartbeats_resume(void **state)
{
  (void)state;
  init_default(100 * MS);
  uint64_t last_ns = beat_regularly(T0, 100 * MS, 200);
  /* A 900 ms gap (within max_interval: recorded), DOWN before it ends. */
  assert_int_equal(tally_phi_detector_state(&detector, last_ns + 899 * MS), TALLY_PHI_DOWN);
  uint64_t back_ns = last_ns + 900 * MS;
  tally_phi_detector_heartbeat(&detector, back_ns);
  assert_int_equal(tally_phi_detector_state(&detector, back_ns), TALLY_PHI_UP);
  assert_true(tally_phi_detector_mean_ns(&detector) > 100.0 * MS);
  last_ns = beat_regularly(back_ns + 100 * MS, 100 * MS, 50);
  assert_int_equal(tally_phi_detector_state(&detector, last_ns + 100 * MS), TALLY_PHI_UP);

  /* A 30 s outage is longer than max_interval: not recorded, the mean stays. */
  init_default(100 * MS);
  last_ns = beat_regularly(T0, 100 * MS, 200);
  assert_int_equal(tally_phi_detector_state(&detector, last_ns + 30000 * MS), TALLY_PHI_DOWN);
  tally_phi_detector_heartbeat(&detector, last_ns + 30000 * MS);
  assert_int_equal(tally_phi_detector_state(&detector, last_ns + 30000 * MS), TALLY_PHI_UP);
  assert_true(tally_phi_detector_mean_ns(&detector) == 100.0 * MS);
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 201);
  struct tally_phi_params params = detector.params;
  check_crossings(&params, 200); /* detection as before the outage */
}

/* ---- The ring ---------------------------------------------------------------- */

static void test_ring_wraparound(void **state)
{
  (void)state;
  struct tally_phi_params params = {.heartbeat_interval_ns = 100 * MS,
    .min_std_deviation_ns = 100 * US, .acceptable_pause_ns = 0,
    .max_interval_ns = 1000 * MS, .suspect_phi = 5.0, .down_phi = 8.0};
  assert_true(tally_phi_detector_init(&detector, &params));
  uint64_t now_ns = beat_regularly(T0, 200 * MS, TALLY_PHI_WINDOW + 1); /* ring full */
  assert_near(tally_phi_detector_mean_ns(&detector), 200.0 * MS, 1.0);
  assert_near(tally_phi_detector_std_deviation_ns(&detector), 100.0 * US, 1.0);
  now_ns = beat_regularly(now_ns + 100 * MS, 100 * MS, TALLY_PHI_WINDOW / 2);
  /* Half 200 ms, half 100 ms. */
  assert_near(tally_phi_detector_mean_ns(&detector), 150.0 * MS, 1.0);
  assert_near(tally_phi_detector_std_deviation_ns(&detector), 50.0 * MS, 1.0);
  now_ns = beat_regularly(now_ns + 100 * MS, 100 * MS, TALLY_PHI_WINDOW / 2);
  /* Every 200 ms interval evicted. */
  assert_near(tally_phi_detector_mean_ns(&detector), 100.0 * MS, 1.0);
  assert_near(tally_phi_detector_std_deviation_ns(&detector), 100.0 * US, 1.0);
  /* Several more laps alternating 90 / 110 ms: mean 100, deviation 10. */
  for (uint32_t i = 0; i < 5 * TALLY_PHI_WINDOW; i++) {
    now_ns += (i % 2 == 0) ? 90 * MS : 110 * MS;
    tally_phi_detector_heartbeat(&detector, now_ns);
  }
  assert_near(tally_phi_detector_mean_ns(&detector), 100.0 * MS, 1.0);
  assert_near(tally_phi_detector_std_deviation_ns(&detector), 10.0 * MS, 1.0);
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 7 * TALLY_PHI_WINDOW + 1);
}

/* ---- Extremes ------------------------------------------------------------------ */

static void assert_phi_sane_over_time(uint64_t last_ns)
{
  double previous = 0.0;
  uint64_t offset_ns = 1;
  for (uint32_t i = 0; i < 64; i++) {
    double phi = tally_phi_detector_phi(&detector, last_ns + offset_ns);
    assert_true(isfinite(phi));
    assert_true(phi >= previous);
    assert_true(phi <= TALLY_PHI_MAX);
    previous = phi;
    if (offset_ns > (UINT64_MAX - last_ns) / 2) break;
    offset_ns *= 2;
  }
  double far = tally_phi_detector_phi(&detector, UINT64_MAX);
  assert_true(far == TALLY_PHI_MAX);
  assert_int_equal(tally_phi_detector_state(&detector, UINT64_MAX), TALLY_PHI_DOWN);
}

static void test_phi_never_nan_or_inf(void **state)
{
  (void)state;
  /* Zero intervals: mean 0, deviation 0 (the floor applies). */
  init_default(100 * MS);
  beat_regularly(T0, 0, 3 * TALLY_PHI_WINDOW);
  assert_true(tally_phi_detector_mean_ns(&detector) == 0.0);
  assert_true(tally_phi_detector_std_deviation_ns(&detector) == 100.0 * MS);
  assert_phi_sane_over_time(T0);

  /* Huge gaps: a heartbeat at 0, another at 2^63, then the end of time. */
  init_default(100 * MS);
  tally_phi_detector_heartbeat(&detector, 0);
  assert_phi_sane_over_time(0);
  tally_phi_detector_heartbeat(&detector, UINT64_MAX / 2);
  assert_phi_sane_over_time(UINT64_MAX / 2);
  tally_phi_detector_heartbeat(&detector, UINT64_MAX);
  assert_true(tally_phi_detector_phi(&detector, UINT64_MAX) < 1.0);

  /* Largest recordable intervals with the smallest floor and no pause. */
  struct tally_phi_params params = {.heartbeat_interval_ns = TALLY_PHI_TIME_NS_MAX,
    .min_std_deviation_ns = TALLY_PHI_MIN_STD_DEVIATION_NS_MIN, .acceptable_pause_ns = 0,
    .max_interval_ns = TALLY_PHI_TIME_NS_MAX, .suspect_phi = 5.0, .down_phi = 8.0};
  assert_true(tally_phi_detector_init(&detector, &params));
  uint64_t last_ns = beat_regularly(T0, TALLY_PHI_TIME_NS_MAX, 2 * TALLY_PHI_WINDOW + 3);
  assert_true(tally_phi_detector_mean_ns(&detector) == (double)TALLY_PHI_TIME_NS_MAX);
  assert_phi_sane_over_time(last_ns);
  /* Far before its mean, phi is ~0 (not negative, not NaN). */
  assert_true(tally_phi_detector_phi(&detector, last_ns) >= 0.0);
  assert_true(tally_phi_detector_phi(&detector, last_ns) < 1e-9);
}

static void test_time_going_backwards(void **state)
{
  (void)state;
  init_default(100 * MS);
  uint64_t last_ns = beat_regularly(T0, 100 * MS, 10);
  tally_phi_detector_heartbeat(&detector, last_ns - 5 * MS); /* ignored */
  assert_int_equal(tally_phi_detector_heartbeats(&detector), 10);
  assert_int_equal(tally_phi_detector_last_heartbeat_ns(&detector), last_ns);
  assert_true(tally_phi_detector_mean_ns(&detector) == 100.0 * MS);
  /* phi asked with a time before the last heartbeat: as at the heartbeat. */
  assert_true(tally_phi_detector_phi(&detector, last_ns - 50 * MS) ==
    tally_phi_detector_phi(&detector, last_ns));
  assert_int_equal(tally_phi_detector_state(&detector, 0), TALLY_PHI_UP);
}

static void test_state_names(void **state)
{
  (void)state;
  assert_string_equal(tally_phi_state_name(TALLY_PHI_UNKNOWN), "unknown");
  assert_string_equal(tally_phi_state_name(TALLY_PHI_UP), "up");
  assert_string_equal(tally_phi_state_name(TALLY_PHI_SUSPECT), "suspect");
  assert_string_equal(tally_phi_state_name(TALLY_PHI_DOWN), "down");
  assert_string_equal(tally_phi_state_name(TALLY_PHI_STATE_COUNT), "invalid");
}


/* A reload's new thresholds apply at once; a new interval forgets the old intervals, not the peer. */
static void test_retune(void **state)
{
  (void)state;
  struct tally_phi_params params;
  tally_phi_params_default(&params, 100000000ull);
  struct tally_phi_detector retuned;
  assert_true(tally_phi_detector_init(&retuned, &params));
  uint64_t now = 1000000000ull;
  for (int i = 0; i < 20; i++, now += 100000000ull) tally_phi_detector_heartbeat(&retuned, now);
  now -= 100000000ull;
  assert_int_equal(tally_phi_detector_state(&retuned, now + 50000000ull), TALLY_PHI_UP);
  struct tally_phi_params strict = params;
  strict.suspect_phi = 0.01;
  strict.down_phi = 0.02;
  assert_true(tally_phi_detector_retune(&retuned, &strict));
  assert_int_equal(retuned.interval_count, 19); /* same interval: history kept */
  assert_int_equal(tally_phi_detector_state(&retuned, now + 5000000000ull), TALLY_PHI_DOWN);
  struct tally_phi_params slower;
  tally_phi_params_default(&slower, 1000000000ull);
  assert_true(tally_phi_detector_retune(&retuned, &slower));
  assert_int_equal(retuned.interval_count, 0);
  assert_int_equal(tally_phi_detector_heartbeats(&retuned), 20); /* the peer is still known */
  assert_int_equal(tally_phi_detector_last_heartbeat_ns(&retuned), now);
  /* 500 ms without a heartbeat is late under 100 ms, on time under 1 s. */
  assert_int_equal(tally_phi_detector_state(&retuned, now + 500000000ull), TALLY_PHI_UP);
  struct tally_phi_params bad = slower;
  bad.down_phi = bad.suspect_phi / 2;
  assert_false(tally_phi_detector_retune(&retuned, &bad));
  assert_true(retuned.params.down_phi == slower.down_phi);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_params),
    cmocka_unit_test(test_unknown_until_first_heartbeat),
    cmocka_unit_test(test_bootstrap_uses_expected_interval),
    cmocka_unit_test(test_regular_heartbeats_stay_up),
    cmocka_unit_test(test_gap_grows_phi_monotonically),
    cmocka_unit_test(test_thresholds_crossed_at_expected_times),
    cmocka_unit_test(test_jitter_no_false_down),
    cmocka_unit_test(test_recovery_after_heartbeats_resume),
    cmocka_unit_test(test_ring_wraparound),
    cmocka_unit_test(test_phi_never_nan_or_inf),
    cmocka_unit_test(test_time_going_backwards),
    cmocka_unit_test(test_state_names),
    cmocka_unit_test(test_retune),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
