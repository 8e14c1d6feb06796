/*
 * mode_persist.c — the persistence mode's operations (modes.h), picked once
 * at start-up from the store's resolved mode:
 *
 * - group commit: the persister thread persists the store every interval,
 *   then publishes durable_seq; readiness fails when no commit succeeded for
 *   TALLY_COMMIT_STALL_INTERVALS intervals; the lcores wait for durable_seq.
 * - per burst: each lcore's shard flushes its writes and the lcore drains at
 *   the end of every poll (byte or cache-line pmem), so its acks need no
 *   persister; the persister thread only keeps the figures.
 *
 * - log: the image (tmpfs, hugetlbfs) is never persisted while running;
 *   the persister thread logs each applied batch's record and publishes
 *   durable_seq after the log's fdatasync (persister_log.c); the lcores wait
 *   for durable_seq exactly as in group commit. Readiness also fails once
 *   the log failed.
 *
 * persist runs on the persister thread, ready on the control and HTTP
 * threads; the lcores' half is dataplane/lcore/lcore.c's.
 */
#include <assert.h>

#include "modes.h"
#include "persister_log.h"

static void group_commit_persist(struct tally_store *store)
{
  assert(store->mode == TALLY_PERSIST_GROUP_COMMIT);
  tally_store_persist(store);
}

static bool commits_stalled(struct tally_appliance *appliance, struct tally_out *out)
{
  uint64_t last_ns =
    __atomic_load_n(&appliance->persister_stats.last_commit_mono_ns, __ATOMIC_RELAXED);
  uint64_t stall_ns = (uint64_t)appliance->config.commit_interval_ms * 1000000ull *
    TALLY_COMMIT_STALL_INTERVALS;
  if (last_ns == 0 || tally_clock_mono_ns() - last_ns > stall_ns) {
    tally_out_printf(out, "not ready: no store commit for %u intervals\n",
      TALLY_COMMIT_STALL_INTERVALS);
    return true;
  }
  return false;
}

static bool group_commit_ready(struct tally_appliance *appliance, struct tally_out *out)
{
  return !commits_stalled(appliance, out);
}

static void per_burst_persist(struct tally_store *store)
{
  assert(store->mode == TALLY_PERSIST_PER_BURST); /* the lcores persisted every burst */
}

static bool per_burst_ready(struct tally_appliance *appliance, struct tally_out *out)
{
  assert(appliance->store.mode == TALLY_PERSIST_PER_BURST);
  (void)out;
  return true;
}

static void log_persist(struct tally_store *store)
{
  assert(store->mode == TALLY_PERSIST_LOG); /* the log is the durable copy: never the image */
}

static bool log_ready(struct tally_appliance *appliance, struct tally_out *out)
{
  if (__atomic_load_n(&appliance->log_stats.failed, __ATOMIC_RELAXED) != 0) {
    tally_out_printf(out, "not ready: the log in %s failed (a write or fdatasync)\n",
      appliance->config.log_dir);
    return false;
  }
  return !commits_stalled(appliance, out);
}

const struct tally_persist_ops tally_persist_group_commit = {
  .name = "group_commit",
  .title = "group-commit",
  .persist = group_commit_persist,
  .ready = group_commit_ready,
  .lcore = &tally_lcore_group_commit,
};

const struct tally_persist_ops tally_persist_per_burst = {
  .name = "per_burst",
  .title = "per-burst",
  .persist = per_burst_persist,
  .ready = per_burst_ready,
  .lcore = &tally_lcore_per_burst,
};

/* The lcores' half is group commit's: acks wait for the persister's durable_seq. */
const struct tally_persist_ops tally_persist_log = {
  .name = "log",
  .title = "log",
  .persist = log_persist,
  .ready = log_ready,
  .lcore = &tally_lcore_group_commit,
  .loop = tally_log_loop,
  .metrics = tally_log_metrics,
  .stats = tally_log_stats_lines,
};

const struct tally_persist_ops *tally_persist_ops_of(enum tally_persist_mode mode)
{
  static const struct tally_persist_ops *const by_mode[] = {
    [TALLY_PERSIST_GROUP_COMMIT] = &tally_persist_group_commit,
    [TALLY_PERSIST_PER_BURST] = &tally_persist_per_burst,
    [TALLY_PERSIST_LOG] = &tally_persist_log,
  };
  assert(mode == TALLY_PERSIST_GROUP_COMMIT || mode == TALLY_PERSIST_PER_BURST ||
    mode == TALLY_PERSIST_LOG);
  assert(by_mode[mode] != NULL);
  return by_mode[mode];
}
