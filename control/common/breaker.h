/*
 * breaker.h — a circuit breaker and exponential backoff with full jitter,
 * pure and clock-free (time and randomness are arguments). Used by libtally
 * per node and by tallyd's cluster thread per replication link; each caller
 * owns its instances, so any thread may use them on its own state.
 */
#ifndef TALLY_BREAKER_H
#define TALLY_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "tally/client.h" /* enum tally_client_breaker_state: the public names of the states */

/* ---- Circuit breaker------------------------------------ */

/*
 * closed --(failures_max consecutive failures)--> open
 * open --(cooldown_ms elapsed, on the next acquire)--> half-open: one probe
 * half-open --success--> closed;  half-open --failure--> open (cool-down again)
 * A success in any state closes (a late ack still proves the node alive); a
 * failure while open changes nothing.
 */
struct tally_breaker {
  enum tally_client_breaker_state state;
  uint32_t failures;       /* consecutive, while closed */
  uint32_t failures_max;
  bool probe_out;          /* half-open: the one probe is in flight */
  uint64_t opened_ms;
  uint64_t cooldown_ms;
  uint64_t opens;          /* closed/half-open -> open transitions */
};

void tally_breaker_init(struct tally_breaker *breaker, uint32_t failures_max,
  uint32_t cooldown_ms);
/* May this node take a datagram now? Takes the probe when half-open. */
bool tally_breaker_acquire(struct tally_breaker *breaker, uint64_t now_ms, bool *probe);
void tally_breaker_success(struct tally_breaker *breaker);
void tally_breaker_failure(struct tally_breaker *breaker, uint64_t now_ms);
/* The probe's batch ended without an outcome for this node: free the probe. */
void tally_breaker_release_probe(struct tally_breaker *breaker);
/* Earliest time acquire may succeed (now_ms if it may now; retry_ms later if a probe is out). */
uint64_t tally_breaker_ready_ms(const struct tally_breaker *breaker, uint64_t now_ms,
  uint64_t retry_ms);

/* ---- Backoff-------------------------------------------- */

/* min(cap_ms, base_ms * 2^retry), without overflow. */
uint64_t tally_backoff_cap_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry);
/* Full jitter: uniform in [0, tally_backoff_cap_ms], random 0 -> 0, UINT64_MAX -> cap. */
uint64_t tally_backoff_delay_ms(uint32_t base_ms, uint32_t cap_ms, uint32_t retry,
  uint64_t random);

#endif
