/*
 * breaker.c — the circuit breaker and the backoff of breaker.h. Pure: no
 * clock, no randomness of its own; runs on whichever thread owns the
 * instance (a libtally caller, tallyd's cluster thread).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"

/* ---- Circuit breaker ------------------------------------------------------------ */

void tally_breaker_init(struct tally_breaker *breaker, uint32_t failures_max,
  uint32_t cooldown_ms)
{
  assert(breaker != NULL);
  assert(failures_max >= 1);
  assert(cooldown_ms >= 1);
  *breaker = (struct tally_breaker){
    .state = TALLY_CLIENT_BREAKER_CLOSED,
    .failures_max = failures_max,
    .cooldown_ms = cooldown_ms,
  };
}

bool tally_breaker_acquire(struct tally_breaker *breaker, uint64_t now_ms, bool *probe)
{
  assert(breaker != NULL);
  assert(probe != NULL);
  *probe = false;
  switch (breaker->state) {
  case TALLY_CLIENT_BREAKER_CLOSED:
    assert(breaker->failures < breaker->failures_max);
    return true;
  case TALLY_CLIENT_BREAKER_OPEN:
    if (now_ms < breaker->opened_ms + breaker->cooldown_ms) return false;
    breaker->state = TALLY_CLIENT_BREAKER_HALF_OPEN;
    breaker->probe_out = false;
    break;
  case TALLY_CLIENT_BREAKER_HALF_OPEN:
    break;
  }
  assert(breaker->state == TALLY_CLIENT_BREAKER_HALF_OPEN);
  if (breaker->probe_out) return false;
  breaker->probe_out = true;
  *probe = true;
  return true;
}

void tally_breaker_success(struct tally_breaker *breaker)
{
  assert(breaker != NULL);
  assert(breaker->failures_max >= 1);
  breaker->state = TALLY_CLIENT_BREAKER_CLOSED;
  breaker->failures = 0;
  breaker->probe_out = false;
}

static void breaker_open(struct tally_breaker *breaker, uint64_t now_ms)
{
  assert(breaker->state != TALLY_CLIENT_BREAKER_OPEN);
  breaker->state = TALLY_CLIENT_BREAKER_OPEN;
  breaker->opened_ms = now_ms;
  breaker->failures = 0;
  breaker->probe_out = false;
  breaker->opens++;
  assert(breaker->opens > 0);
}

void tally_breaker_failure(struct tally_breaker *breaker, uint64_t now_ms)
{
  assert(breaker != NULL);
  assert(breaker->failures_max >= 1);
  switch (breaker->state) {
  case TALLY_CLIENT_BREAKER_CLOSED:
    breaker->failures++;
    if (breaker->failures >= breaker->failures_max) breaker_open(breaker, now_ms);
    return;
  case TALLY_CLIENT_BREAKER_HALF_OPEN:
    breaker_open(breaker, now_ms);
    return;
  case TALLY_CLIENT_BREAKER_OPEN:
    return; /* results of datagrams sent before it opened change nothing */
  }
  assert(false);
}

void tally_breaker_release_probe(struct tally_breaker *breaker)
{
  assert(breaker != NULL);
  assert(breaker->failures_max >= 1);
  if (breaker->state == TALLY_CLIENT_BREAKER_HALF_OPEN) breaker->probe_out = false;
}

uint64_t tally_breaker_ready_ms(const struct tally_breaker *breaker, uint64_t now_ms,
  uint64_t retry_ms)
{
  assert(breaker != NULL);
  assert(retry_ms >= 1);
  switch (breaker->state) {
  case TALLY_CLIENT_BREAKER_CLOSED:
    return now_ms;
  case TALLY_CLIENT_BREAKER_OPEN: {
    uint64_t ready_ms = breaker->opened_ms + breaker->cooldown_ms;
    return ready_ms > now_ms ? ready_ms : now_ms;
  }
  case TALLY_CLIENT_BREAKER_HALF_OPEN:
    return breaker->probe_out ? now_ms + retry_ms : now_ms;
  }
  assert(false);
  return now_ms + retry_ms;
}

/* ---- Backoff ---------------------------------------------------------------------- */

uint64_t tally_backoff_cap_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry)
{
  assert(base_ms >= 1);
  assert(cap_ms >= base_ms);
  /* base << retry exceeds cap once retry >= 32 (both fit 32 bits). */
  if (retry >= 32) return cap_ms;
  uint64_t grown_ms = (uint64_t)base_ms << retry;
  return grown_ms < cap_ms ? grown_ms : cap_ms;
}

uint64_t tally_backoff_delay_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry,
  uint64_t random)
{
  uint64_t ceiling_ms = tally_backoff_cap_ms(base_ms, cap_ms, retry);
  assert(ceiling_ms <= cap_ms);
  /* Multiply-shift maps random onto [0, ceiling] monotonically, without modulo bias. */
  unsigned __int128 scaled = (unsigned __int128)random * (ceiling_ms + 1u);
  uint64_t delay_ms = (uint64_t)(scaled >> 64);
  assert(delay_ms <= ceiling_ms);
  return delay_ms;
}
