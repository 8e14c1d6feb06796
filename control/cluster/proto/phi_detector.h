/*
 * phi_detector.h — the phi-accrual failure detector of the control plane
 * (Hayashibara et al., 2004; the variant of Akka and Cassandra), one per peer.
 *
 * Each heartbeat received from a peer records the interval since the previous
 * one in a fixed ring of the last TALLY_PHI_WINDOW intervals, with running
 * sums for the mean and the variance. phi(now) says how unlikely it is that
 * a heartbeat is still to come, given the time since the last one:
 *
 *   y   = (now - last_heartbeat - (mean + acceptable_pause)) / max(stddev, min_stddev)
 *   phi = -log10(1 - F(y)),  F(y) = 1 / (1 + exp(-y * (1.5976 + 0.070566 * y^2)))
 *
 * (F is Akka's logistic approximation of the normal CDF), computed without
 * cancellation and clamped to [0, TALLY_PHI_MAX]: never inf, never NaN.
 * phi >= down_phi is DOWN, phi >= suspect_phi is SUSPECT, else UP; before the
 * first heartbeat the state is UNKNOWN. docs/failure-detection.md gives the
 * detection time as a function of the parameters.
 *
 * Pure and clock-free: time is an argument (monotonic nanoseconds of the
 * receiver), so tests and a simulator drive it exactly. The detector is a
 * plain struct sized at compile time; nothing is allocated after init.
 */
#ifndef TALLY_PHI_DETECTOR_H
#define TALLY_PHI_DETECTOR_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

/* Intervals remembered per peer (a ring; the oldest is dropped). */
#define TALLY_PHI_WINDOW 1000u
/* phi is clamped to this; a peer silent for long reads exactly this. */
#define TALLY_PHI_MAX 1000.0
/* Allowed ranges of the parameters (the config loader enforces them). */
#define TALLY_PHI_HEARTBEAT_INTERVAL_NS_MIN 1000000ull /* 1 ms */
#define TALLY_PHI_MIN_STD_DEVIATION_NS_MIN 100000ull   /* 100 us */
#define TALLY_PHI_TIME_NS_MAX 60000000000ull           /* 60 s: every duration */

/* Intervals are kept in microseconds so the sum of squares is exact in u64. */
static_assert(TALLY_PHI_TIME_NS_MAX / 1000u <= UINT32_MAX, "an interval fits u32 microseconds");
static_assert((uint64_t)TALLY_PHI_WINDOW * (TALLY_PHI_TIME_NS_MAX / 1000u) <=
  UINT64_MAX / (TALLY_PHI_TIME_NS_MAX / 1000u), "sum of squared intervals fits u64");
static_assert(TALLY_PHI_MIN_STD_DEVIATION_NS_MIN >= 1000u, "stddev floor >= 1 us");

enum tally_phi_state {
  TALLY_PHI_UNKNOWN = 0, /* no heartbeat since init or reset: treat as not up */
  TALLY_PHI_UP = 1,
  TALLY_PHI_SUSPECT = 2,
  TALLY_PHI_DOWN = 3,
  TALLY_PHI_STATE_COUNT
};

struct tally_phi_params {
  /* The peer's heartbeat period: the mean assumed until 2 intervals are known. */
  uint64_t heartbeat_interval_ns;
  /* Floor of the standard deviation (a LAN's real jitter is far smaller). */
  uint64_t min_std_deviation_ns;
  /* Added to the mean: this much lateness costs nothing (Akka's
   * acceptable-heartbeat-pause). */
  uint64_t acceptable_pause_ns;
  /* An interval longer than this (an outage, not jitter) is not recorded, so
   * one outage does not inflate the mean for the next TALLY_PHI_WINDOW
   * heartbeats (as Cassandra's MAX_INTERVAL). */
  uint64_t max_interval_ns;
  double suspect_phi; /* 0 < suspect_phi <= down_phi <= TALLY_PHI_MAX */
  double down_phi;
};

/* One peer's detector. Fields are private: use the functions. */
struct tally_phi_detector {
  struct tally_phi_params params;
  uint64_t last_heartbeat_ns;
  uint64_t heartbeats;               /* accepted since init/reset */
  uint64_t heartbeats_time_backwards; /* now_ns before the last heartbeat: ignored */
  uint64_t intervals_ignored;        /* longer than max_interval_ns: not recorded */
  uint64_t interval_sum_us;          /* of the intervals in the ring */
  uint64_t interval_square_sum_us2;
  uint32_t interval_count;           /* <= TALLY_PHI_WINDOW */
  uint32_t interval_next;            /* ring slot written next */
  uint32_t intervals_us[TALLY_PHI_WINDOW];
};

/*
 * Defaults for a heartbeat period: min_std_deviation = acceptable_pause =
 * the period, max_interval = 10 periods (capped at TALLY_PHI_TIME_NS_MAX),
 * suspect_phi 5, down_phi 8. For 100 ms: SUSPECT ~0.61 s and DOWN ~0.72 s
 * after the last heartbeat of a regular peer.
 */
void tally_phi_params_default(struct tally_phi_params *params, uint64_t heartbeat_interval_ns);

/* NULL if the parameters are in range, else what is wrong (for the config loader). */
const char *tally_phi_params_check(const struct tally_phi_params *params);

/* Returns false (detector untouched) if tally_phi_params_check() fails. */
bool tally_phi_detector_init(struct tally_phi_detector *detector,
  const struct tally_phi_params *params);

/* Forgets every heartbeat and interval; keeps the parameters. State: UNKNOWN. */
void tally_phi_detector_reset(struct tally_phi_detector *detector);

/*
 * New parameters for a running detector (a membership reload). New
 * thresholds apply at once; a new heartbeat interval also forgets the
 * intervals recorded under the old one (the assumed mean is the new interval
 * until 2 are known again), keeping the last heartbeat, so the peer's state
 * does not drop to unknown. Returns false (nothing changes) if params are
 * invalid.
 */
bool tally_phi_detector_retune(struct tally_phi_detector *detector,
  const struct tally_phi_params *params);

/*
 * Records a heartbeat received at now_ns. A now_ns before the last heartbeat
 * (the caller sampled its clock early) is counted and ignored; an interval
 * longer than max_interval_ns updates the last heartbeat but is not recorded.
 */
void tally_phi_detector_heartbeat(struct tally_phi_detector *detector, uint64_t now_ns);

/* phi at now_ns, in [0, TALLY_PHI_MAX]; 0 before the first heartbeat. */
double tally_phi_detector_phi(const struct tally_phi_detector *detector, uint64_t now_ns);

enum tally_phi_state tally_phi_detector_state(const struct tally_phi_detector *detector,
  uint64_t now_ns);

/* Time of the last heartbeat; meaningful only when heartbeats() > 0. */
uint64_t tally_phi_detector_last_heartbeat_ns(const struct tally_phi_detector *detector);
uint64_t tally_phi_detector_heartbeats(const struct tally_phi_detector *detector);

/* The mean interval and standard deviation phi uses now (bootstrap values
 * while fewer than 2 intervals are known; the deviation after its floor). */
double tally_phi_detector_mean_ns(const struct tally_phi_detector *detector);
double tally_phi_detector_std_deviation_ns(const struct tally_phi_detector *detector);

/* "unknown", "up", "suspect", "down". */
const char *tally_phi_state_name(enum tally_phi_state state);

#endif
