/*
 * degrade_control.c — the control thread's half of the degradation levels
 * (control/node/degrade.h): once per TALLY_DEGRADE_TICK_MS it measures the
 * signals from the lcores' own figures (relaxed loads, no lock), steps the
 * state machine and publishes the level the lcores load. Also the operator
 * override (tallyctl degrade) and the level's lines in stats and /metrics.
 *
 * Thread: tick and override on the control thread; the stats and metrics
 * lines on the control and HTTP threads (relaxed loads only).
 *
 * Not measured: the NIC RX ring (rte_eth_rx_queue_count is not safe against
 * the lcore's rx_burst on every driver) and replication lag (the cluster
 * thread's, not cheap to read here); the steering rings stand in for RX.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "actions.h"
#include "degrade_control.h"

static uint64_t load(const uint64_t *value)
{
  return __atomic_load_n(value, __ATOMIC_RELAXED);
}

static uint32_t permille(uint64_t part, uint64_t whole)
{
  assert(whole > 0);
  if (part >= whole) return TALLY_DEGRADE_PERMILLE_MAX;
  return (uint32_t)(part * TALLY_DEGRADE_PERMILLE_MAX / whole);
}

static uint32_t max_of(uint32_t a, uint32_t b)
{
  return a > b ? a : b;
}

/*
 * Busy: the share of the tick's polls that returned a full burst, i.e. found
 * more frames waiting than one burst takes: the lcore is falling behind its
 * RX queue. (Polls that merely received frames would read near 1000 for an
 * lcore keeping up with a steady stream, and shed load it can carry.)
 */
static uint32_t lcore_busy(struct tally_appliance *appliance, uint32_t index)
{
  struct tally_degrade_probe *probe = &appliance->degrade_probe;
  const struct tally_lcore *lcore = &appliance->lcores[index];
  uint64_t polls = load(&lcore->stats.polls);
  uint64_t full = load(&lcore->stats.full_polls);
  uint64_t polls_delta = polls - probe->polls[index];
  uint64_t full_delta = full - probe->full_polls[index];
  probe->polls[index] = polls;
  probe->full_polls[index] = full;
  if (polls_delta == 0 || full_delta > polls_delta) return 0; /* not polling: another signal's job */
  return permille(full_delta, polls_delta);
}

static void measure(struct tally_appliance *appliance, uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT])
{
  for (uint32_t s = 0; s < TALLY_DEGRADE_SIGNAL_COUNT; s++) signals[s] = 0;
  assert(appliance->lcore_count <= TALLY_LCORES_MAX);
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    struct tally_lcore *lcore = &appliance->lcores[i];
    signals[TALLY_DEGRADE_LCORE_BUSY] = max_of(signals[TALLY_DEGRADE_LCORE_BUSY],
      lcore_busy(appliance, i));
    for (uint32_t source = 0; source < appliance->lcore_count; source++) {
      if (lcore->rings_in[source] == NULL) continue;
      signals[TALLY_DEGRADE_STEER_RING] = max_of(signals[TALLY_DEGRADE_STEER_RING],
        permille(rte_ring_count(lcore->rings_in[source]), TALLY_STEER_RING_SIZE));
    }
    uint64_t head = __atomic_load_n(&lcore->acks_head, __ATOMIC_RELAXED);
    uint64_t tail = __atomic_load_n(&lcore->acks_tail, __ATOMIC_RELAXED);
    signals[TALLY_DEGRADE_ACK_FIFO] = max_of(signals[TALLY_DEGRADE_ACK_FIFO],
      permille(tail > head ? tail - head : 0, TALLY_ACKS_PENDING_MAX));
    if (lcore->log_ring != NULL) {
      uint64_t log_head = __atomic_load_n(&lcore->log_ring->head, __ATOMIC_RELAXED);
      uint64_t log_tail = __atomic_load_n(&lcore->log_ring->tail, __ATOMIC_RELAXED);
      signals[TALLY_DEGRADE_LOG_RING] = max_of(signals[TALLY_DEGRADE_LOG_RING],
        permille(log_tail > log_head ? log_tail - log_head : 0, TALLY_LOG_RING_SIZE));
    }
    uint64_t applied = load(&lcore->stats.applied_seq);
    uint64_t durable = load(&lcore->stats.durable_seq_seen);
    signals[TALLY_DEGRADE_PERSIST_LAG] = max_of(signals[TALLY_DEGRADE_PERSIST_LAG],
      permille(applied > durable ? applied - durable : 0, TALLY_ACKS_PENDING_MAX));
  }
}

void tally_degrade_tick(struct tally_appliance *appliance, uint64_t now_ns)
{
  struct tally_degrade_probe *probe = &appliance->degrade_probe;
  if (probe->last_ns != 0 && now_ns - probe->last_ns < TALLY_DEGRADE_TICK_MS * 1000000ull) return;
  bool first = probe->last_ns == 0;
  probe->last_ns = now_ns;
  uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT];
  measure(appliance, signals);
  if (first) return; /* the busy deltas start here */
  uint32_t before = appliance->degrade.level;
  uint32_t level = tally_degrade_step(&appliance->degrade, signals);
  if (level != before) {
    fprintf(stderr, "tallyd: degradation level %u -> %u (pressure %u per mille)\n", before, level,
      appliance->degrade.pressure);
  }
}

enum tally_action_result tally_action_degrade(struct tally_appliance *appliance, bool automatic,
  uint32_t level, struct tally_out *out)
{
  assert(level <= TALLY_DEGRADE_LEVEL_MAX);
  uint32_t in_force = tally_degrade_override(&appliance->degrade, !automatic, level);
  if (automatic) {
    fprintf(stderr, "tallyd: operator: degrade auto (level now %u)\n", in_force);
    tally_out_printf(out, "degradation level automatic (now %u)\n", in_force);
  } else {
    fprintf(stderr, "tallyd: operator: degrade %u\n", in_force);
    tally_out_printf(out, "degradation level %u (forced; 'degrade auto' ends it)\n", in_force);
  }
  return TALLY_ACTION_OK;
}

static uint32_t load32(const uint32_t *value)
{
  return __atomic_load_n(value, __ATOMIC_RELAXED);
}

void tally_degrade_stats(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_degrade *degrade = &appliance->degrade;
  tally_out_printf(out, "degradation_level %u\n", load32(&degrade->level));
  tally_out_printf(out, "degradation_automatic %u\n", load32(&degrade->automatic));
  tally_out_printf(out, "degradation_overridden %d\n",
    __atomic_load_n(&degrade->overridden, __ATOMIC_RELAXED) ? 1 : 0);
  tally_out_printf(out, "degradation_pressure_permille %u\n", load32(&degrade->pressure));
  for (uint32_t s = 0; s < TALLY_DEGRADE_SIGNAL_COUNT; s++) {
    tally_out_printf(out, "degradation_signal_%s_permille %u\n",
      tally_degrade_signal_name((enum tally_degrade_signal)s), load32(&degrade->signals[s]));
  }
}
