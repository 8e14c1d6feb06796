/*
 * clock.c — the monotonic and wall clocks in nanoseconds (clock.h). Any
 * thread of the control plane; never called by an lcore (they use the TSC).
 */
#include <assert.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"

static uint64_t clock_ns(clockid_t clock)
{
  struct timespec now;
  int rc = clock_gettime(clock, &now);
  assert(rc == 0);
  (void)rc;
  assert(now.tv_sec >= 0);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

uint64_t tally_clock_mono_ns(void)
{
  return clock_ns(CLOCK_MONOTONIC);
}

uint64_t tally_clock_unix_ns(void)
{
  return clock_ns(CLOCK_REALTIME);
}
