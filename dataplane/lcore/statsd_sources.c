/*
 * statsd_sources.c — the per-lcore statsd admission check: shedding by
 * degradation level, the source allow-list, and per-source token buckets
 * (rte_meter srTCM with 1 "byte" per datagram, so rates are datagrams per
 * second). Runs on the lcore that owns the table; set up by the control
 * thread before launch. See statsd_sources.h for the table's bounds.
 */
#include <assert.h>
#include <string.h>

#include <sodium.h>

#include "statsd_sources.h"

static_assert(crypto_shorthash_KEYBYTES == 16, "SipHash-2-4 key");

static int profile_for(struct rte_meter_srtcm_profile *profile, uint32_t rate, uint32_t burst)
{
  assert(rate >= 1 && rate <= TALLY_STATSD_SOURCE_RATE_MAX);
  assert(burst >= 1 && burst <= TALLY_STATSD_SOURCE_BURST_MAX);
  struct rte_meter_srtcm_params params = { .cir = rate, .cbs = burst, .ebs = 0 };
  return rte_meter_srtcm_profile_config(profile, &params);
}

int tally_statsd_sources_init(struct tally_statsd_sources *table,
  const struct tally_statsd_policy *policy, uint64_t tsc_hz, uint64_t now_tsc)
{
  assert(table != NULL && policy != NULL);
  assert(tsc_hz > 0);
  memset(table, 0, sizeof *table);
  randombytes_buf(table->hash_key, sizeof table->hash_key);
  table->budget_configured = policy->source_rate > 0;
  if (table->budget_configured &&
      profile_for(&table->profile, policy->source_rate, policy->source_burst) != 0) {
    return -1;
  }
  if (profile_for(&table->degraded, TALLY_STATSD_SOURCE_RATE_DEGRADED,
        TALLY_STATSD_SOURCE_BURST_DEGRADED) != 0) {
    return -1;
  }
  table->idle_tsc = tsc_hz * TALLY_STATSD_SOURCE_IDLE_S;
  const struct rte_meter_srtcm_profile *profile =
    table->budget_configured ? &table->profile : &table->degraded;
  if (rte_meter_srtcm_config(&table->overflow.meter,
        (struct rte_meter_srtcm_profile *)profile) != 0) {
    return -1;
  }
  table->overflow.meter.time = now_tsc;
  table->overflow.used = true;
  return 0;
}

static uint32_t source_slot(const struct tally_statsd_sources *table, uint32_t address)
{
  uint8_t hash[crypto_shorthash_BYTES];
  crypto_shorthash(hash, (const unsigned char *)&address, sizeof address, table->hash_key);
  uint32_t value;
  memcpy(&value, hash, sizeof value);
  return value & (TALLY_STATSD_SOURCES_MAX - 1u);
}

/* The source's bucket: its own slot, a free or idle one it takes, or the overflow bucket. */
static struct tally_statsd_source *source_find(struct tally_statsd_sources *table,
  uint32_t address, const struct rte_meter_srtcm_profile *profile, uint64_t now_tsc)
{
  uint32_t first = source_slot(table, address);
  struct tally_statsd_source *free_slot = NULL;
  for (uint32_t probe = 0; probe < TALLY_STATSD_SOURCE_PROBES_MAX; probe++) {
    struct tally_statsd_source *slot =
      &table->slots[(first + probe) & (TALLY_STATSD_SOURCES_MAX - 1u)];
    if (slot->used && slot->address == address) return slot;
    bool idle = !slot->used || now_tsc - slot->last_tsc > table->idle_tsc;
    if (free_slot == NULL && idle) free_slot = slot;
  }
  if (free_slot == NULL) {
    table->overflow_checks++;
    return &table->overflow;
  }
  if (!free_slot->used) table->sources_used++;
  assert(table->sources_used <= TALLY_STATSD_SOURCES_MAX);
  free_slot->used = true;
  free_slot->address = address;
  int rc = rte_meter_srtcm_config(&free_slot->meter, (struct rte_meter_srtcm_profile *)profile);
  assert(rc == 0); /* the profile was accepted at init */
  (void)rc;
  free_slot->meter.time = now_tsc; /* rte_meter reads the TSC itself; the caller's clock rules */
  return free_slot;
}

enum tally_reason tally_statsd_sources_admit(struct tally_statsd_sources *table,
  const struct tally_statsd_policy *policy, uint32_t address, uint32_t level, uint64_t now_tsc)
{
  assert(policy != NULL);
  assert(level <= TALLY_DEGRADE_LEVEL_MAX);
  if (level >= 2u) return TALLY_REASON_STATSD_SHED;
  if (!tally_statsd_source_allowed(policy, address)) return TALLY_REASON_STATSD_SOURCE_NOT_ALLOWED;
  if (table == NULL) return TALLY_OK;
  if (!table->budget_configured && level == 0) return TALLY_OK;
  struct rte_meter_srtcm_profile *profile =
    table->budget_configured ? &table->profile : &table->degraded;
  struct tally_statsd_source *source = source_find(table, address, profile, now_tsc);
  assert(source->used);
  if (now_tsc > source->last_tsc) source->last_tsc = now_tsc;
  if (now_tsc < source->meter.time) return TALLY_OK; /* a clock behind the slot's: never penalise */
  enum rte_color color = rte_meter_srtcm_color_blind_check(&source->meter, profile, now_tsc, 1);
  return color == RTE_COLOR_GREEN ? TALLY_OK : TALLY_REASON_STATSD_SOURCE_OVER_BUDGET;
}
