/*
 * client_policy.c — libtally's retry policy, pure and clock-free: the
 * per-node circuit breaker, exponential backoff with full jitter, and the
 * classification of results (which are success, which are retryable).
 * Time and randomness are arguments, so tests drive them exactly.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "client_internal.h"
#include "tally/client.h"

/* ---- Results ------------------------------------------------------------------ */

static const char *const status_names[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_NAME(name, label, retryable, text) [TALLY_CLIENT_##name] = label,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_NAME)
#undef TALLY_CLIENT_STATUS_NAME
};

static const char *const status_texts[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_TEXT(name, label, retryable, text) [TALLY_CLIENT_##name] = text,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_TEXT)
#undef TALLY_CLIENT_STATUS_TEXT
};

static const bool status_retryable[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_RETRY(name, label, retryable, text) [TALLY_CLIENT_##name] = retryable,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_RETRY)
#undef TALLY_CLIENT_STATUS_RETRY
};

bool tally_client_status_ok(enum tally_client_status status)
{
  assert((uint32_t)status < TALLY_CLIENT_STATUS_COUNT);
  return status == TALLY_CLIENT_OK || status == TALLY_CLIENT_DUPLICATE;
}

bool tally_client_status_retryable(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return false;
  assert(!(status_retryable[status] && tally_client_status_ok(status)));
  return status_retryable[status];
}

const char *tally_client_status_name(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return "unknown";
  assert(status_names[status] != NULL);
  return status_names[status];
}

const char *tally_client_status_text(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return "unknown status";
  assert(status_texts[status] != NULL);
  return status_texts[status];
}

/* ---- Circuit breaker ------------------------------------------------------------ */

void client_breaker_init(struct client_breaker *breaker, uint32_t failures_max,
  uint32_t cooldown_ms)
{
  assert(breaker != NULL);
  assert(failures_max >= 1);
  assert(cooldown_ms >= 1);
  *breaker = (struct client_breaker){
    .state = TALLY_CLIENT_BREAKER_CLOSED,
    .failures_max = failures_max,
    .cooldown_ms = cooldown_ms,
  };
}

bool client_breaker_acquire(struct client_breaker *breaker, uint64_t now_ms, bool *probe)
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

void client_breaker_success(struct client_breaker *breaker)
{
  assert(breaker != NULL);
  assert(breaker->failures_max >= 1);
  breaker->state = TALLY_CLIENT_BREAKER_CLOSED;
  breaker->failures = 0;
  breaker->probe_out = false;
}

static void breaker_open(struct client_breaker *breaker, uint64_t now_ms)
{
  assert(breaker->state != TALLY_CLIENT_BREAKER_OPEN);
  breaker->state = TALLY_CLIENT_BREAKER_OPEN;
  breaker->opened_ms = now_ms;
  breaker->failures = 0;
  breaker->probe_out = false;
  breaker->opens++;
  assert(breaker->opens > 0);
}

void client_breaker_failure(struct client_breaker *breaker, uint64_t now_ms)
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

void client_breaker_release_probe(struct client_breaker *breaker)
{
  assert(breaker != NULL);
  assert(breaker->failures_max >= 1);
  if (breaker->state == TALLY_CLIENT_BREAKER_HALF_OPEN) breaker->probe_out = false;
}

uint64_t client_breaker_ready_ms(const struct client_breaker *breaker, uint64_t now_ms,
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

uint64_t client_backoff_cap_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry)
{
  assert(base_ms >= 1);
  assert(cap_ms >= base_ms);
  /* base << retry exceeds cap once retry >= 32 (both fit 32 bits). */
  if (retry >= 32) return cap_ms;
  uint64_t grown_ms = (uint64_t)base_ms << retry;
  return grown_ms < cap_ms ? grown_ms : cap_ms;
}

uint64_t client_backoff_delay_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry,
  uint64_t random)
{
  uint64_t ceiling_ms = client_backoff_cap_ms(base_ms, cap_ms, retry);
  assert(ceiling_ms <= cap_ms);
  /* Multiply-shift maps random onto [0, ceiling] monotonically, without modulo bias. */
  unsigned __int128 scaled = (unsigned __int128)random * (ceiling_ms + 1u);
  uint64_t delay_ms = (uint64_t)(scaled >> 64);
  assert(delay_ms <= ceiling_ms);
  return delay_ms;
}
