/*
 * degrade.h — degradation levels (issue 14; the fault-tolerance playbook's
 * load shedding). The control thread measures the signals once per
 * TALLY_DEGRADE_TICK_MS, steps this state machine and publishes the level
 * with an atomic store; the lcores load it (lcore.h, degradation_level).
 *
 *   0 normal           statsd counted (within a configured per-source budget)
 *   1 shed over budget  every statsd source held to a budget: the configured
 *                      one, or TALLY_STATSD_SOURCE_RATE_DEGRADED without one
 *   2 shed statsd      every statsd datagram dropped (statsd_shed)
 *   3 read-only        also reliable batches answered READ_ONLY (retryable:
 *                      producers retry or go to another node); only the
 *                      persistence signals can lead here, so a statsd flood
 *                      that keeps the lcores busy never stops reliable writes
 *
 * A level is entered when the pressure (the highest signal, each capped at
 * the highest level it may cause) stays at or above its high mark for
 * TALLY_DEGRADE_ENTER_TICKS ticks, and left one level at a time when it
 * stays below the level's low mark for TALLY_DEGRADE_LEAVE_TICKS ticks. An
 * operator override (tallyctl degrade 0..3) wins until `degrade auto`; the
 * automatic level keeps being computed meanwhile. Pure: no clock, no I/O.
 */
#ifndef TALLY_DEGRADE_H
#define TALLY_DEGRADE_H

#include <stdbool.h>
#include <stdint.h>

#include "tally/limits.h"

/* name, the highest level it may cause, what it measures (per mille). */
#define TALLY_FOREACH_DEGRADE_SIGNAL(_)                                                    \
  _(LCORE_BUSY, lcore_busy, 2u, "polls that returned a full burst, busiest lcore, last tick")\
  _(STEER_RING, steer_ring, 2u, "fullest steering ring between lcores")                   \
  _(ACK_FIFO, ack_fifo, 3u, "fullest pending-ack FIFO (acks waiting for persistence)")     \
  _(LOG_RING, log_ring, 3u, "fullest log ring to the persister (log mode)")               \
  _(PERSIST_LAG, persist_lag, 3u, "largest applied_seq - durable_seq, per FIFO size")

enum tally_degrade_signal {
#define TALLY_DEGRADE_SIGNAL_ENUM(id, name, cap, text) TALLY_DEGRADE_##id,
  TALLY_FOREACH_DEGRADE_SIGNAL(TALLY_DEGRADE_SIGNAL_ENUM)
#undef TALLY_DEGRADE_SIGNAL_ENUM
  TALLY_DEGRADE_SIGNAL_COUNT
};

/* Per-mille marks: enter level L at or above high[L], leave it below low[L]. */
#define TALLY_DEGRADE_HIGH_MARKS { 0u, 700u, 850u, 950u }
#define TALLY_DEGRADE_LOW_MARKS { 0u, 500u, 700u, 850u }

struct tally_degrade {
  /* Read relaxed by other threads (metrics on HTTP); written by the control thread. */
  uint32_t level;             /* the level in force: the override, or automatic */
  uint32_t automatic;         /* what the signals say */
  uint32_t pressure;          /* per mille, the last tick */
  uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT]; /* per mille, the last tick */
  bool overridden;
  uint32_t override_level;
  uint64_t changes;           /* times the level in force changed */
  /* The control thread's own. */
  uint32_t ticks_above;
  uint32_t ticks_below;
};

/* Level 0, automatic, no signal. */
void tally_degrade_init(struct tally_degrade *degrade);
/* One tick: signals per mille (clamped to 1000). Returns the level in force. */
uint32_t tally_degrade_step(struct tally_degrade *degrade,
  const uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT]);
/* tallyctl degrade: automatic (override false) or level 0..3. Returns the level in force. */
uint32_t tally_degrade_override(struct tally_degrade *degrade, bool override, uint32_t level);
/* The signal's name (lcore_busy ...), for stats and metrics. */
const char *tally_degrade_signal_name(enum tally_degrade_signal signal);

#endif
