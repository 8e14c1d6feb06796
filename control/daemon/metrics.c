/*
 * metrics.c — the appliance's own figures, as `tallyctl stats` lines and as
 * Prometheus text on /metrics. Both come from the same X-macros (lcore
 * statistics in lcore.h, rejection reasons in reasons.h), so the names in
 * the two views and in docs/operations.md are the same names.
 *
 * Thread: `tallyctl stats` on the control thread, /metrics on the HTTP thread;
 * both only load relaxed figures.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jemalloc/jemalloc.h>
#include <rte_ethdev.h>

#include "actions.h"
#include "graphite.h"
#include "counters.h"
#include "degrade_control.h"
#include "modes.h"

static uint64_t load(const uint64_t *value)
{
  return __atomic_load_n(value, __ATOMIC_RELAXED);
}

static uint64_t counters_in_use(struct tally_appliance *appliance)
{
  uint64_t total = 0;
  for (uint32_t i = 0; i < appliance->store.geometry.shard_count; i++) {
    total += tally_shard_counters_used(&appliance->store.shards[i]);
  }
  return total;
}

/* The longest probe a slot of any shard or replica table sits at (issue 14 H1). */
static uint64_t slot_probe_max(struct tally_appliance *appliance)
{
  const struct tally_store *store = &appliance->store;
  uint32_t longest = 0;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    uint32_t probe = tally_shard_probe_max(&store->shards[i]);
    if (probe > longest) longest = probe;
  }
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) continue;
    uint32_t probe = tally_shard_probe_max(&store->replicas[r]);
    if (probe > longest) longest = probe;
  }
  assert(longest < TALLY_SLOT_PROBE_MAX);
  return longest;
}

static uint64_t persist_lag_ns(struct tally_appliance *appliance)
{
  uint64_t last_ns = load(&appliance->persister_stats.last_commit_mono_ns);
  uint64_t now_ns = tally_clock_mono_ns();
  return last_ns == 0 || last_ns > now_ns ? now_ns - appliance->started_mono_ns : now_ns - last_ns;
}

static uint64_t quarantined_slots(struct tally_appliance *appliance)
{
  uint64_t total = 0;
  for (uint32_t i = 0; i < appliance->store.geometry.shard_count; i++) {
    total += appliance->store.recovery.shards[i].slots_quarantined;
  }
  return total;
}

static uint64_t quarantined_producers(struct tally_appliance *appliance)
{
  uint64_t total = 0;
  for (uint32_t i = 0; i < appliance->store.geometry.shard_count; i++) {
    total += appliance->store.recovery.shards[i].producers_quarantined;
  }
  return total;
}

/*
 * The NIC's own figures: frames it dropped because an RX ring was full
 * (imissed) or no buffer was free (rx_nombuf) are increments lost before
 * tallyd could see them, and are counted here (invariant 3).
 */
#define TALLY_FOREACH_PORT_STAT(_)                                         \
  _(ipackets, "rx_packets", "frames the port received")                    \
  _(opackets, "tx_packets", "frames the port sent")                        \
  _(imissed, "rx_missed", "frames dropped by the port: RX ring full")      \
  _(rx_nombuf, "rx_nombuf", "frames dropped by the port: no mbuf free")    \
  _(ierrors, "rx_errors", "frames received with errors")                   \
  _(oerrors, "tx_errors", "frames the port failed to send")

/* Reads every port's figures once; returns how many ports answered. */
static uint16_t read_port_stats(struct tally_appliance *appliance,
  uint16_t ports[TALLY_PORTS_MAX], struct rte_eth_stats stats[TALLY_PORTS_MAX])
{
  assert(appliance->ports.count <= TALLY_PORTS_MAX);
  uint16_t count = 0;
  for (uint16_t i = 0; i < appliance->ports.count; i++) {
    ports[count] = appliance->ports.ids[i];
    if (rte_eth_stats_get(ports[count], &stats[count]) == 0) count++;
  }
  return count;
}

/* `tallyctl stats`: one line per port and figure. */
static void port_stats(struct tally_appliance *appliance, struct tally_out *out)
{
  uint16_t ports[TALLY_PORTS_MAX];
  struct rte_eth_stats stats[TALLY_PORTS_MAX];
  uint16_t count = read_port_stats(appliance, ports, stats);
  for (uint16_t i = 0; i < count; i++) {
#define TALLY_PORT_STAT_LINE(field, label, text)                                           \
    tally_out_printf(out, "port%u_" label " %" PRIu64 "\n", ports[i], stats[i].field);
    TALLY_FOREACH_PORT_STAT(TALLY_PORT_STAT_LINE)
#undef TALLY_PORT_STAT_LINE
  }
}

/*
 * /metrics: one HELP/TYPE per figure, then its sample for every port. A metric
 * family's header appears once whatever the number of ports (the exposition
 * format refuses a second one: promtool, tests/integration/node.sh).
 */
static void port_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  uint16_t ports[TALLY_PORTS_MAX];
  struct rte_eth_stats stats[TALLY_PORTS_MAX];
  uint16_t count = read_port_stats(appliance, ports, stats);
#define TALLY_PORT_METRIC(field, label, text)                                              \
  tally_out_printf(out, "# HELP tally_port_" label "_total " text "\n"                     \
    "# TYPE tally_port_" label "_total counter\n");                                        \
  for (uint16_t i = 0; i < count; i++) {                                                   \
    tally_out_printf(out, "tally_port_" label "_total{port=\"%u\"} %" PRIu64 "\n",          \
      ports[i], stats[i].field);                                                           \
  }
  TALLY_FOREACH_PORT_STAT(TALLY_PORT_METRIC)
#undef TALLY_PORT_METRIC
}

/*
 * An lcore's page faults (minor, major) from /proc/self/task/TID/stat, fields
 * 10 and 12: read here, on the HTTP or control thread, so the lcore makes no
 * system call. false before the lcore has started.
 */
static bool lcore_faults(const struct tally_lcore *lcore, uint64_t *minor, uint64_t *major)
{
  int tid = __atomic_load_n(&lcore->tid, __ATOMIC_RELAXED);
  if (tid <= 0) return false;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE *file = fopen(path, "r");
  if (file == NULL) return false;
  char text[1024];
  size_t size = fread(text, 1, sizeof text - 1u, file);
  fclose(file);
  text[size] = '\0';
  const char *after_name = strrchr(text, ')'); /* the name (field 2) may hold spaces */
  unsigned long long fields[10];
  if (after_name == NULL || sscanf(after_name + 1, " %*c %*d %*d %*d %*d %*d %*u %llu %llu %llu",
        &fields[0], &fields[1], &fields[2]) != 3) {
    return false;
  }
  *minor = fields[0];
  *major = fields[2];
  return true;
}

static void metric_header(struct tally_out *out, const char *name, const char *type,
  const char *help);

static void lcore_fault_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  metric_header(out, "lcore_page_faults_total", "counter",
    "page faults taken by the lcore's thread (minor: e.g. write-protect after an msync)");
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    uint64_t minor = 0;
    uint64_t major = 0;
    if (!lcore_faults(&appliance->lcores[i], &minor, &major)) continue;
    tally_out_printf(out, "tally_lcore_page_faults_total{lcore=\"%u\",kind=\"minor\"} %" PRIu64
      "\ntally_lcore_page_faults_total{lcore=\"%u\",kind=\"major\"} %" PRIu64 "\n", i, minor, i,
      major);
  }
}

static size_t jemalloc_allocated_bytes(void)
{
  uint64_t epoch = 1;
  size_t size = sizeof epoch;
  mallctl("epoch", &epoch, &size, &epoch, size);
  size_t allocated = 0;
  size = sizeof allocated;
  if (mallctl("stats.allocated", &allocated, &size, NULL, 0) != 0) return 0;
  return allocated;
}

enum tally_action_result tally_action_stats(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->lcore_count >= 1);
  assert(appliance->lcores != NULL);
#define TALLY_STAT_SUM(name, text)                                            \
  {                                                                           \
    uint64_t sum = 0;                                                         \
    for (uint32_t i = 0; i < appliance->lcore_count; i++)                     \
      sum += load(&appliance->lcores[i].stats.name);                          \
    tally_out_printf(out, "%s %" PRIu64 "\n", #name, sum);                    \
  }
  TALLY_FOREACH_LCORE_STAT(TALLY_STAT_SUM)
#undef TALLY_STAT_SUM
  for (uint32_t reason = 1; reason < TALLY_REASON_COUNT; reason++) {
    uint64_t sum = 0;
    for (uint32_t i = 0; i < appliance->lcore_count; i++) {
      sum += load(&appliance->lcores[i].stats.reasons[reason]);
    }
    tally_out_printf(out, "drop_%s %" PRIu64 "\n", tally_reason_label(reason), sum);
  }
  tally_out_printf(out, "dataplane_lcores %u\n", appliance->lcore_count);
  tally_out_printf(out, "counters_in_use %" PRIu64 "\n", counters_in_use(appliance));
  tally_out_printf(out, "counters_capacity %" PRIu64 "\n",
    (uint64_t)appliance->config.counters_max * appliance->lcore_count);
  tally_out_printf(out, "slot_probe_max %" PRIu64 "\n", slot_probe_max(appliance));
  tally_out_printf(out, "slot_probe_limit %u\n", TALLY_SLOT_PROBE_MAX);
  tally_out_printf(out, "store_persist_mode %s\n", appliance->persist->name);
  tally_out_printf(out, "store_granularity %s\n", appliance->store.granularity_name);
  tally_out_printf(out, "store_commits %" PRIu64 "\n", load(&appliance->persister_stats.commits));
  tally_out_printf(out, "store_persist_lag_ns %" PRIu64 "\n", persist_lag_ns(appliance));
  tally_out_printf(out, "store_commit_ns_max %" PRIu64 "\n",
    load(&appliance->persister_stats.commit_ns_max));
  tally_out_printf(out, "store_quarantined_slots %" PRIu64 "\n", quarantined_slots(appliance));
  tally_out_printf(out, "store_quarantined_producers %" PRIu64 "\n",
    quarantined_producers(appliance));
  tally_out_printf(out, "store_recovered_clean %d\n", appliance->store.recovery.was_clean ? 1 : 0);
  if (appliance->persist->stats != NULL) appliance->persist->stats(appliance, out);
  uint64_t faults_minor = 0;
  uint64_t faults_major = 0;
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    uint64_t minor = 0;
    uint64_t major = 0;
    if (!lcore_faults(&appliance->lcores[i], &minor, &major)) continue;
    faults_minor += minor;
    faults_major += major;
  }
  tally_out_printf(out, "lcore_page_faults_minor %" PRIu64 "\nlcore_page_faults_major %" PRIu64
    "\n", faults_minor, faults_major);
  port_stats(appliance, out);
  tally_out_printf(out, "config_reloads %" PRIu64 "\n", appliance->reloads);
  tally_out_printf(out, "mgmt_refused %" PRIu64 "\n", appliance->mgmt_refused);
  tally_degrade_stats(appliance, out);
  tally_out_printf(out, "control_allocated_bytes %zu\n", jemalloc_allocated_bytes());
  tally_graphite_stats(appliance->graphite, out);
  return out->failed ? TALLY_ACTION_FAILED : TALLY_ACTION_OK;
}

static void metric_header(struct tally_out *out, const char *name, const char *type,
  const char *help)
{
  tally_out_printf(out, "# HELP tally_%s %s\n# TYPE tally_%s %s\n", name, help, name, type);
}

static void lcore_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
#define TALLY_STAT_METRIC(name, text)                                                  \
  metric_header(out, "lcore_" #name "_total", "counter", text);                        \
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {                              \
    tally_out_printf(out, "tally_lcore_" #name "_total{lcore=\"%u\"} %" PRIu64 "\n", i, \
      load(&appliance->lcores[i].stats.name));                                         \
  }
  TALLY_FOREACH_LCORE_STAT(TALLY_STAT_METRIC)
#undef TALLY_STAT_METRIC
  metric_header(out, "drops_total", "counter", "input rejected, by reason and lcore");
  for (uint32_t reason = 1; reason < TALLY_REASON_COUNT; reason++) {
    for (uint32_t i = 0; i < appliance->lcore_count; i++) {
      tally_out_printf(out, "tally_drops_total{reason=\"%s\",lcore=\"%u\"} %" PRIu64 "\n",
        tally_reason_label(reason), i, load(&appliance->lcores[i].stats.reasons[reason]));
    }
  }
}

/* The degradation level (degrade.h) and its signals, as the control thread last published them. */
static void degrade_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_degrade *degrade = &appliance->degrade;
  metric_header(out, "degradation_level", "gauge",
    "level in force: 0 normal, 1 statsd budget for all, 2 shed statsd, 3 reliable read-only");
  tally_out_printf(out, "tally_degradation_level %u\n",
    __atomic_load_n(&degrade->level, __ATOMIC_RELAXED));
  metric_header(out, "degradation_overridden", "gauge", "1 while tallyctl degrade forces the level");
  tally_out_printf(out, "tally_degradation_overridden %d\n",
    __atomic_load_n(&degrade->overridden, __ATOMIC_RELAXED) ? 1 : 0);
  metric_header(out, "degradation_signal", "gauge", "measured signal 0..1, last tick");
  for (uint32_t s = 0; s < TALLY_DEGRADE_SIGNAL_COUNT; s++) {
    tally_out_printf(out, "tally_degradation_signal{signal=\"%s\"} %.3f\n",
      tally_degrade_signal_name((enum tally_degrade_signal)s),
      (double)__atomic_load_n(&degrade->signals[s], __ATOMIC_RELAXED) / 1000.0);
  }
}

enum tally_action_result tally_action_metrics(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->lcore_count >= 1);
  lcore_metrics(appliance, out);
  lcore_fault_metrics(appliance, out);
  metric_header(out, "counters_in_use", "gauge", "counter slots in use, all shards");
  tally_out_printf(out, "tally_counters_in_use %" PRIu64 "\n", counters_in_use(appliance));
  metric_header(out, "counters_capacity", "gauge", "counter slots available, all shards");
  tally_out_printf(out, "tally_counters_capacity %" PRIu64 "\n",
    (uint64_t)appliance->config.counters_max * appliance->lcore_count);
  metric_header(out, "slot_probe_max", "gauge",
    "longest probe a counter slot sits at, any table (refused past slot_probe_limit)");
  tally_out_printf(out, "tally_slot_probe_max %" PRIu64 "\n", slot_probe_max(appliance));
  metric_header(out, "slot_probe_limit", "gauge", "the probe bound: longer probes are refused");
  tally_out_printf(out, "tally_slot_probe_limit %u\n", TALLY_SLOT_PROBE_MAX);
  metric_header(out, "store_commits_total", "counter", "group commits completed");
  tally_out_printf(out, "tally_store_commits_total %" PRIu64 "\n",
    load(&appliance->persister_stats.commits));
  metric_header(out, "store_persist_lag_seconds", "gauge", "time since the last completed persist");
  tally_out_printf(out, "tally_store_persist_lag_seconds %.6f\n",
    (double)persist_lag_ns(appliance) / 1e9);
  metric_header(out, "store_commit_seconds_max", "gauge", "longest persist so far");
  tally_out_printf(out, "tally_store_commit_seconds_max %.6f\n",
    (double)load(&appliance->persister_stats.commit_ns_max) / 1e9);
  metric_header(out, "store_quarantined_slots", "gauge", "slots that failed a checksum at start");
  tally_out_printf(out, "tally_store_quarantined_slots %" PRIu64 "\n", quarantined_slots(appliance));
  metric_header(out, "store_quarantined_producers", "gauge",
    "producer records that failed a checksum at start");
  tally_out_printf(out, "tally_store_quarantined_producers %" PRIu64 "\n",
    quarantined_producers(appliance));
  if (appliance->persist->metrics != NULL) appliance->persist->metrics(appliance, out);
  port_metrics(appliance, out);
  metric_header(out, "control_allocated_bytes", "gauge", "control-plane heap (jemalloc)");
  tally_out_printf(out, "tally_control_allocated_bytes %zu\n", jemalloc_allocated_bytes());
  appliance->node->metrics(appliance, out);
  degrade_metrics(appliance, out);
  tally_graphite_metrics(appliance->graphite, out);
  tally_counters_metrics(out);
  struct tally_out scratch;
  tally_out_init_memory(&scratch);
  bool ready = tally_action_ready(appliance, &scratch);
  size_t length = 0;
  free(tally_out_take(&scratch, &length));
  metric_header(out, "build_info", "gauge", "always 1; the version label is tallyd's");
  tally_out_printf(out, "tally_build_info{version=\"%s\"} 1\n", TALLY_VERSION);
  metric_header(out, "ready", "gauge", "1 when /health/ready answers 200");
  tally_out_printf(out, "tally_ready %d\n", ready ? 1 : 0);
  metric_header(out, "read_only_forced", "gauge",
    "1 while an operator holds the node read-only (tallyctl readonly on, drain)");
  tally_out_printf(out, "tally_read_only_forced %d\n", appliance->read_only_forced ? 1 : 0);
  return out->failed ? TALLY_ACTION_FAILED : TALLY_ACTION_OK;
}
