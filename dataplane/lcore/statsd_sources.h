/*
 * statsd_sources.h — the statsd admission check of one lcore (issue 14, C1
 * and the degradation levels): is statsd shed at this degradation level, is
 * the source in ingest.statsd_allow_cidrs, and is it within its token bucket
 * (DPDK rte_meter srTCM, one per source IPv4 address, in datagrams).
 *
 * The table is bounded (TALLY_STATSD_SOURCES_MAX) and owned by its lcore:
 * no lock, no allocation after start-up. A source's slot is found by a keyed
 * hash (SipHash-2-4 under a random key drawn at start-up), probing at most
 * TALLY_STATSD_SOURCE_PROBES_MAX slots, so nobody can aim sources at one run
 * of slots. A slot idle for TALLY_STATSD_SOURCE_IDLE_S may be taken by a
 * new source; a source that finds no slot shares the one overflow bucket
 * (counted in overflow_checks).
 */
#ifndef TALLY_STATSD_SOURCES_H
#define TALLY_STATSD_SOURCES_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_meter.h>

#include "tally/limits.h"
#include "tally/reasons.h"
#include "tally/statsd_policy.h"

struct tally_statsd_source {
  uint32_t address;   /* host byte order */
  bool used;
  uint64_t last_tsc;  /* last datagram metered */
  struct rte_meter_srtcm meter;
};

struct tally_statsd_sources {
  uint8_t hash_key[16];                       /* SipHash key: random, per table */
  bool budget_configured;                     /* ingest.statsd_source_rate > 0 */
  struct rte_meter_srtcm_profile profile;     /* the configured budget */
  struct rte_meter_srtcm_profile degraded;    /* level 1's budget when none is configured */
  uint64_t idle_tsc;                          /* TALLY_STATSD_SOURCE_IDLE_S in TSC ticks */
  /* Counted by the lcore, read relaxed by the control thread. */
  uint64_t sources_used;                      /* slots holding a source */
  uint64_t overflow_checks;                   /* datagrams metered in the overflow bucket */
  struct tally_statsd_source overflow;
  struct tally_statsd_source slots[TALLY_STATSD_SOURCES_MAX];
} __rte_cache_aligned;

/*
 * Sets the table up empty for policy, with a fresh random hash key, at
 * now_tsc on a TSC of tsc_hz. Returns 0, or -1 if rte_meter refuses the
 * profile (never for a policy the config accepted).
 */
int tally_statsd_sources_init(struct tally_statsd_sources *table,
  const struct tally_statsd_policy *policy, uint64_t tsc_hz, uint64_t now_tsc);

/*
 * Whether a statsd datagram from address (host byte order) is counted at
 * degradation level: TALLY_OK, or the reason it is dropped
 * (STATSD_SHED at level 2 and above, STATSD_SOURCE_NOT_ALLOWED,
 * STATSD_SOURCE_OVER_BUDGET). The budget holds at every level when
 * configured; at level 1 without one, the built-in
 * TALLY_STATSD_SOURCE_RATE_DEGRADED applies. table may be NULL only when no
 * budget can ever apply (tests of other parts).
 */
enum tally_reason tally_statsd_sources_admit(struct tally_statsd_sources *table,
  const struct tally_statsd_policy *policy, uint32_t address, uint32_t level, uint64_t now_tsc);

#endif
