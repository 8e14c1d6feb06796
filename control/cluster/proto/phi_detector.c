/*
 * phi_detector.c — the phi-accrual failure detector (control/cluster/proto/phi_detector.h,
 * docs/failure-detection.md).
 *
 * Owns the per-peer interval statistics and the mapping from "time since the
 * last heartbeat" to phi and to UP / SUSPECT / DOWN. Intervals are stored in
 * whole microseconds in a fixed ring, with the sum and the sum of squares kept
 * as exact u64 integers: no floating-point drift however long a peer lives,
 * and every TALLY_PHI_WINDOW heartbeats the sums are recomputed from the ring
 * and asserted equal. Floating point is used only to evaluate phi, through a
 * softplus form of -log10(1 - F(y)) that neither overflows nor cancels.
 *
 * No clock, no allocation, no I/O: the control thread owns one detector per
 * peer, passes its monotonic receive time in, and reads phi when it reports.
 */
#include "phi_detector.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Beyond |y| = 64 phi is either below 1e-300 or far above TALLY_PHI_MAX. */
#define PHI_Y_LIMIT 64.0

static_assert(TALLY_PHI_WINDOW >= 2u, "the variance needs two intervals");
static_assert(TALLY_PHI_HEARTBEAT_INTERVAL_NS_MIN <= TALLY_PHI_TIME_NS_MAX, "range");
static_assert(TALLY_PHI_MIN_STD_DEVIATION_NS_MIN <= TALLY_PHI_TIME_NS_MAX, "range");

/* ---- Parameters ------------------------------------------------------------ */

void tally_phi_params_default(struct tally_phi_params *params, uint64_t heartbeat_interval_ns)
{
  assert(params != NULL);
  assert(heartbeat_interval_ns >= TALLY_PHI_HEARTBEAT_INTERVAL_NS_MIN);
  assert(heartbeat_interval_ns <= TALLY_PHI_TIME_NS_MAX);
  uint64_t max_interval_ns = TALLY_PHI_TIME_NS_MAX;
  if (heartbeat_interval_ns <= TALLY_PHI_TIME_NS_MAX / 10u) {
    max_interval_ns = 10u * heartbeat_interval_ns;
  }
  *params = (struct tally_phi_params){
    .heartbeat_interval_ns = heartbeat_interval_ns,
    .min_std_deviation_ns = heartbeat_interval_ns,
    .acceptable_pause_ns = heartbeat_interval_ns,
    .max_interval_ns = max_interval_ns,
    .suspect_phi = 5.0,
    .down_phi = 8.0,
  };
  assert(tally_phi_params_check(params) == NULL);
}

const char *tally_phi_params_check(const struct tally_phi_params *params)
{
  assert(params != NULL);
  if (params->heartbeat_interval_ns < TALLY_PHI_HEARTBEAT_INTERVAL_NS_MIN ||
      params->heartbeat_interval_ns > TALLY_PHI_TIME_NS_MAX) {
    return "heartbeat interval out of range (1 ms .. 60 s)";
  }
  if (params->min_std_deviation_ns < TALLY_PHI_MIN_STD_DEVIATION_NS_MIN ||
      params->min_std_deviation_ns > TALLY_PHI_TIME_NS_MAX) {
    return "minimum standard deviation out of range (100 us .. 60 s)";
  }
  if (params->acceptable_pause_ns > TALLY_PHI_TIME_NS_MAX) {
    return "acceptable pause out of range (0 .. 60 s)";
  }
  if (params->max_interval_ns < params->heartbeat_interval_ns ||
      params->max_interval_ns > TALLY_PHI_TIME_NS_MAX) {
    return "maximum interval out of range (heartbeat interval .. 60 s)";
  }
  /* Written so that NaN fails every comparison and is refused. */
  if (!(params->suspect_phi > 0.0 && params->suspect_phi <= TALLY_PHI_MAX)) {
    return "suspect phi out of range (0 < suspect <= 1000)";
  }
  if (!(params->down_phi >= params->suspect_phi && params->down_phi <= TALLY_PHI_MAX)) {
    return "down phi out of range (suspect <= down <= 1000)";
  }
  return NULL;
}

/* ---- Lifecycle ------------------------------------------------------------- */

bool tally_phi_detector_init(struct tally_phi_detector *detector,
  const struct tally_phi_params *params)
{
  assert(detector != NULL);
  assert(params != NULL);
  if (tally_phi_params_check(params) != NULL) return false;
  struct tally_phi_params copy = *params; /* params may point into *detector */
  memset(detector, 0, sizeof(*detector));
  detector->params = copy;
  assert(detector->heartbeats == 0);
  return true;
}

void tally_phi_detector_reset(struct tally_phi_detector *detector)
{
  assert(detector != NULL);
  assert(tally_phi_params_check(&detector->params) == NULL);
  struct tally_phi_params params = detector->params;
  memset(detector, 0, sizeof(*detector));
  detector->params = params;
}

bool tally_phi_detector_retune(struct tally_phi_detector *detector,
  const struct tally_phi_params *params)
{
  assert(detector != NULL);
  assert(params != NULL);
  if (tally_phi_params_check(params) != NULL) return false;
  bool forget = params->heartbeat_interval_ns != detector->params.heartbeat_interval_ns;
  detector->params = *params;
  if (forget) {
    detector->interval_count = 0;
    detector->interval_next = 0;
    detector->interval_sum_us = 0;
    detector->interval_square_sum_us2 = 0;
  }
  assert(detector->heartbeats >= detector->interval_count);
  return true;
}

/* ---- Intervals ------------------------------------------------------------- */

/* Recomputes the sums from the ring and checks the running ones (once a lap). */
static void phi_check_sums(const struct tally_phi_detector *detector)
{
  assert(detector->interval_count <= TALLY_PHI_WINDOW);
  uint64_t sum_us = 0;
  uint64_t square_sum_us2 = 0;
  for (uint32_t i = 0; i < detector->interval_count; i++) {
    uint64_t interval_us = detector->intervals_us[i];
    sum_us += interval_us;
    square_sum_us2 += interval_us * interval_us;
  }
  assert(sum_us == detector->interval_sum_us);
  assert(square_sum_us2 == detector->interval_square_sum_us2);
  (void)sum_us;
  (void)square_sum_us2;
}

static void phi_record_interval(struct tally_phi_detector *detector, uint64_t interval_ns)
{
  assert(interval_ns <= detector->params.max_interval_ns);
  assert(detector->interval_next < TALLY_PHI_WINDOW);
  uint64_t interval_us = (interval_ns + 500u) / 1000u; /* nearest microsecond */
  assert(interval_us <= UINT32_MAX);
  uint32_t slot = detector->interval_next;
  if (detector->interval_count == TALLY_PHI_WINDOW) {
    uint64_t oldest_us = detector->intervals_us[slot];
    assert(detector->interval_sum_us >= oldest_us);
    assert(detector->interval_square_sum_us2 >= oldest_us * oldest_us);
    detector->interval_sum_us -= oldest_us;
    detector->interval_square_sum_us2 -= oldest_us * oldest_us;
  } else {
    detector->interval_count++;
  }
  detector->intervals_us[slot] = (uint32_t)interval_us;
  detector->interval_sum_us += interval_us;
  detector->interval_square_sum_us2 += interval_us * interval_us;
  detector->interval_next = (slot + 1u) % TALLY_PHI_WINDOW;
  if (detector->interval_next == 0) phi_check_sums(detector);
}

void tally_phi_detector_heartbeat(struct tally_phi_detector *detector, uint64_t now_ns)
{
  assert(detector != NULL);
  assert(detector->interval_count <= TALLY_PHI_WINDOW);
  if (detector->heartbeats == 0) {
    detector->last_heartbeat_ns = now_ns;
    detector->heartbeats = 1;
    return;
  }
  if (now_ns < detector->last_heartbeat_ns) {
    detector->heartbeats_time_backwards++;
    return;
  }
  uint64_t interval_ns = now_ns - detector->last_heartbeat_ns;
  if (interval_ns > detector->params.max_interval_ns) {
    detector->intervals_ignored++;
  } else {
    phi_record_interval(detector, interval_ns);
  }
  detector->last_heartbeat_ns = now_ns;
  detector->heartbeats++;
  assert(detector->heartbeats > detector->interval_count);
}

/* ---- Estimates and phi ----------------------------------------------------- */

double tally_phi_detector_mean_ns(const struct tally_phi_detector *detector)
{
  assert(detector != NULL);
  assert(detector->interval_count <= TALLY_PHI_WINDOW);
  if (detector->interval_count < 2u) return (double)detector->params.heartbeat_interval_ns;
  double mean_us = (double)detector->interval_sum_us / (double)detector->interval_count;
  return mean_us * 1000.0;
}

double tally_phi_detector_std_deviation_ns(const struct tally_phi_detector *detector)
{
  assert(detector != NULL);
  assert(detector->interval_count <= TALLY_PHI_WINDOW);
  double floor_ns = (double)detector->params.min_std_deviation_ns;
  double deviation_ns = 0.0;
  if (detector->interval_count < 2u) {
    /* Bootstrap, as Akka's first-heartbeat estimate: a quarter of the period. */
    deviation_ns = (double)detector->params.heartbeat_interval_ns / 4.0;
  } else {
    double count = (double)detector->interval_count;
    double mean_us = (double)detector->interval_sum_us / count;
    double variance_us2 = (double)detector->interval_square_sum_us2 / count - mean_us * mean_us;
    if (variance_us2 < 0.0) variance_us2 = 0.0; /* rounding of a zero variance */
    deviation_ns = sqrt(variance_us2) * 1000.0;
  }
  double result_ns = deviation_ns > floor_ns ? deviation_ns : floor_ns;
  assert(result_ns >= floor_ns);
  assert(isfinite(result_ns));
  return result_ns;
}

/*
 * -log10(1 - F(y)) with F(y) = 1 / (1 + exp(-z)), z = y (1.5976 + 0.070566 y^2):
 * 1 - F = 1 / (1 + exp(z)), so phi = softplus(z) / ln 10, and softplus is
 * evaluated as z + log1p(exp(-z)) for z > 0 so that exp never overflows.
 * z grows monotonically with y, so phi does too.
 */
static double phi_of_y(double y)
{
  assert(!isnan(y));
  if (y > PHI_Y_LIMIT) y = PHI_Y_LIMIT;
  if (y < -PHI_Y_LIMIT) y = -PHI_Y_LIMIT;
  double z = y * (1.5976 + 0.070566 * y * y);
  double softplus = z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z));
  double phi = softplus / M_LN10;
  if (phi > TALLY_PHI_MAX) phi = TALLY_PHI_MAX;
  assert(isfinite(phi));
  assert(phi >= 0.0);
  return phi;
}

double tally_phi_detector_phi(const struct tally_phi_detector *detector, uint64_t now_ns)
{
  assert(detector != NULL);
  assert(detector->interval_count <= TALLY_PHI_WINDOW);
  if (detector->heartbeats == 0) return 0.0;
  uint64_t elapsed_ns = 0;
  if (now_ns > detector->last_heartbeat_ns) elapsed_ns = now_ns - detector->last_heartbeat_ns;
  double mean_ns = tally_phi_detector_mean_ns(detector);
  double deviation_ns = tally_phi_detector_std_deviation_ns(detector);
  assert(deviation_ns >= (double)TALLY_PHI_MIN_STD_DEVIATION_NS_MIN);
  double late_ns = (double)elapsed_ns - (mean_ns + (double)detector->params.acceptable_pause_ns);
  return phi_of_y(late_ns / deviation_ns);
}

enum tally_phi_state tally_phi_detector_state(const struct tally_phi_detector *detector,
  uint64_t now_ns)
{
  assert(detector != NULL);
  assert(detector->params.suspect_phi <= detector->params.down_phi);
  if (detector->heartbeats == 0) return TALLY_PHI_UNKNOWN;
  double phi = tally_phi_detector_phi(detector, now_ns);
  if (phi >= detector->params.down_phi) return TALLY_PHI_DOWN;
  if (phi >= detector->params.suspect_phi) return TALLY_PHI_SUSPECT;
  return TALLY_PHI_UP;
}

uint64_t tally_phi_detector_last_heartbeat_ns(const struct tally_phi_detector *detector)
{
  assert(detector != NULL);
  return detector->last_heartbeat_ns;
}

uint64_t tally_phi_detector_heartbeats(const struct tally_phi_detector *detector)
{
  assert(detector != NULL);
  return detector->heartbeats;
}

const char *tally_phi_state_name(enum tally_phi_state state)
{
  static const char *const names[TALLY_PHI_STATE_COUNT] = {
    [TALLY_PHI_UNKNOWN] = "unknown",
    [TALLY_PHI_UP] = "up",
    [TALLY_PHI_SUSPECT] = "suspect",
    [TALLY_PHI_DOWN] = "down",
  };
  if ((uint32_t)state >= TALLY_PHI_STATE_COUNT) return "invalid";
  assert(names[state] != NULL);
  return names[state];
}
