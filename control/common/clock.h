/*
 * clock.h — monotonic and wall clocks in nanoseconds, for the control plane.
 */
#ifndef TALLY_CLOCK_H
#define TALLY_CLOCK_H

#include <stdint.h>

uint64_t tally_clock_mono_ns(void);
uint64_t tally_clock_unix_ns(void);

#endif
