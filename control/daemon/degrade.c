/*
 * degrade.c — the degradation levels' state machine (control/node/degrade.h):
 * hysteresis between levels and the operator override. Pure; the control
 * thread steps it (degrade_control.c) and tests step it by hand.
 */
#include <assert.h>
#include <string.h>

#include "degrade.h"

static const uint32_t high_marks[TALLY_DEGRADE_LEVEL_MAX + 1u] = TALLY_DEGRADE_HIGH_MARKS;
static const uint32_t low_marks[TALLY_DEGRADE_LEVEL_MAX + 1u] = TALLY_DEGRADE_LOW_MARKS;
static const uint32_t signal_caps[TALLY_DEGRADE_SIGNAL_COUNT] = {
#define TALLY_DEGRADE_SIGNAL_CAP(id, name, cap, text) [TALLY_DEGRADE_##id] = cap,
  TALLY_FOREACH_DEGRADE_SIGNAL(TALLY_DEGRADE_SIGNAL_CAP)
#undef TALLY_DEGRADE_SIGNAL_CAP
};

static void publish(uint32_t *field, uint32_t value)
{
  __atomic_store_n(field, value, __ATOMIC_RELAXED);
}

void tally_degrade_init(struct tally_degrade *degrade)
{
  memset(degrade, 0, sizeof *degrade);
  for (uint32_t level = 1; level <= TALLY_DEGRADE_LEVEL_MAX; level++) {
    assert(low_marks[level] < high_marks[level]);
    assert(high_marks[level - 1u] < high_marks[level]);
  }
  assert(high_marks[TALLY_DEGRADE_LEVEL_MAX] <= TALLY_DEGRADE_PERMILLE_MAX);
}

/* A signal's share of the pressure: no higher than the high mark of the level above its cap. */
static uint32_t capped(enum tally_degrade_signal signal, uint32_t permille)
{
  uint32_t cap = signal_caps[signal];
  assert(cap >= 1 && cap <= TALLY_DEGRADE_LEVEL_MAX);
  if (permille > TALLY_DEGRADE_PERMILLE_MAX) permille = TALLY_DEGRADE_PERMILLE_MAX;
  if (cap < TALLY_DEGRADE_LEVEL_MAX && permille >= high_marks[cap + 1u]) {
    permille = high_marks[cap + 1u] - 1u;
  }
  return permille;
}

/* The highest level whose high mark the pressure reaches. */
static uint32_t level_for(uint32_t pressure)
{
  uint32_t level = 0;
  while (level < TALLY_DEGRADE_LEVEL_MAX && pressure >= high_marks[level + 1u]) level++;
  return level;
}

static uint32_t in_force(struct tally_degrade *degrade)
{
  uint32_t level = degrade->overridden ? degrade->override_level : degrade->automatic;
  assert(level <= TALLY_DEGRADE_LEVEL_MAX);
  if (level != degrade->level) {
    degrade->changes++;
    publish(&degrade->level, level);
  }
  return level;
}

uint32_t tally_degrade_step(struct tally_degrade *degrade,
  const uint32_t signals[TALLY_DEGRADE_SIGNAL_COUNT])
{
  assert(degrade->automatic <= TALLY_DEGRADE_LEVEL_MAX);
  uint32_t pressure = 0;
  for (uint32_t i = 0; i < TALLY_DEGRADE_SIGNAL_COUNT; i++) {
    uint32_t value = capped((enum tally_degrade_signal)i, signals[i]);
    publish(&degrade->signals[i], value);
    if (value > pressure) pressure = value;
  }
  publish(&degrade->pressure, pressure);
  uint32_t target = level_for(pressure);
  uint32_t automatic = degrade->automatic;
  if (target > automatic) {
    degrade->ticks_below = 0;
    if (++degrade->ticks_above >= TALLY_DEGRADE_ENTER_TICKS) {
      automatic = target;
      degrade->ticks_above = 0;
    }
  } else if (automatic > 0 && pressure < low_marks[automatic]) {
    degrade->ticks_above = 0;
    if (++degrade->ticks_below >= TALLY_DEGRADE_LEAVE_TICKS) {
      automatic--; /* one level at a time */
      degrade->ticks_below = 0;
    }
  } else {
    degrade->ticks_above = 0;
    degrade->ticks_below = 0;
  }
  assert(degrade->ticks_above < TALLY_DEGRADE_ENTER_TICKS);
  assert(degrade->ticks_below < TALLY_DEGRADE_LEAVE_TICKS);
  publish(&degrade->automatic, automatic);
  return in_force(degrade);
}

uint32_t tally_degrade_override(struct tally_degrade *degrade, bool override, uint32_t level)
{
  assert(level <= TALLY_DEGRADE_LEVEL_MAX);
  degrade->override_level = override ? level : 0;
  __atomic_store_n(&degrade->overridden, override, __ATOMIC_RELAXED);
  return in_force(degrade);
}

const char *tally_degrade_signal_name(enum tally_degrade_signal signal)
{
  static const char *const names[TALLY_DEGRADE_SIGNAL_COUNT] = {
#define TALLY_DEGRADE_SIGNAL_NAME(id, name, cap, text) [TALLY_DEGRADE_##id] = #name,
    TALLY_FOREACH_DEGRADE_SIGNAL(TALLY_DEGRADE_SIGNAL_NAME)
#undef TALLY_DEGRADE_SIGNAL_NAME
  };
  assert((unsigned)signal < TALLY_DEGRADE_SIGNAL_COUNT);
  return names[signal];
}
