/*
 * statsd_policy.h — who may send statsd (issue 14, C1): the per-source
 * budget (ingest.statsd_source_rate / statsd_source_burst) and the optional
 * allow-list of source networks (ingest.statsd_allow_cidrs). The config
 * parses it (control/config/config_cidr.c), the control thread publishes a
 * copy in the dataplane config, the lcores read it (dataplane/lcore/
 * statsd_sources.c). Plain data and one pure check; no thread of its own.
 */
#ifndef TALLY_STATSD_POLICY_H
#define TALLY_STATSD_POLICY_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "tally/limits.h"

/* An IPv4 network, host byte order: address & mask == network. */
struct tally_cidr {
  uint32_t network;
  uint32_t mask;
};

struct tally_statsd_policy {
  uint32_t source_rate;   /* datagrams per second per source; 0: no per-source budget */
  uint32_t source_burst;  /* datagrams a source may send at once (1..TALLY_STATSD_SOURCE_BURST_MAX) */
  uint32_t allow_count;   /* 0: every source is allowed */
  struct tally_cidr allow[TALLY_STATSD_ALLOW_CIDRS_MAX];
};

/* Whether statsd from address (host byte order) may be counted. Linear: the list is short. */
static inline bool tally_statsd_source_allowed(const struct tally_statsd_policy *policy,
  uint32_t address)
{
  assert(policy->allow_count <= TALLY_STATSD_ALLOW_CIDRS_MAX);
  if (policy->allow_count == 0) return true;
  for (uint32_t i = 0; i < policy->allow_count; i++) {
    assert((policy->allow[i].network & ~policy->allow[i].mask) == 0);
    if ((address & policy->allow[i].mask) == policy->allow[i].network) return true;
  }
  return false;
}

/*
 * Parses "a.b.c.d/len" (len 0..32; host bits must be zero) into cidr.
 * Returns NULL, or what is wrong with it (static text).
 */
const char *tally_cidr_parse(const char *text, size_t text_len, struct tally_cidr *cidr);

#endif
