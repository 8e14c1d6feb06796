/*
 * degrade_control.h — the control thread's half of the degradation levels:
 * measure, step, publish (degrade_control.c). The state machine is
 * control/node/degrade.h; the operator action is in actions.h.
 */
#ifndef TALLY_DEGRADE_CONTROL_H
#define TALLY_DEGRADE_CONTROL_H

#include <stdint.h>

#include "appliance.h"
#include "out.h"

/* Control loop: measures and steps once per TALLY_DEGRADE_TICK_MS (cheap otherwise). */
void tally_degrade_tick(struct tally_appliance *appliance, uint64_t now_ns);
/* The level and signals as `tallyctl stats` lines (/metrics: metrics.c, degrade_metrics). */
void tally_degrade_stats(struct tally_appliance *appliance, struct tally_out *out);

#endif
