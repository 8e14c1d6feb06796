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
 * persist runs on the persister thread, ready on the control and HTTP
 * threads; the lcores' half is dataplane/lcore/lcore.c's.
 */
#include <assert.h>

#include "modes.h"

static void group_commit_persist(struct tally_store *store)
{
  assert(store->mode == TALLY_PERSIST_GROUP_COMMIT);
  tally_store_persist(store);
}

static bool group_commit_ready(struct tally_appliance *appliance, struct tally_out *out)
{
  uint64_t last_ns =
    __atomic_load_n(&appliance->persister_stats.last_commit_mono_ns, __ATOMIC_RELAXED);
  uint64_t stall_ns = (uint64_t)appliance->config.commit_interval_ms * 1000000ull *
    TALLY_COMMIT_STALL_INTERVALS;
  if (last_ns == 0 || tally_clock_mono_ns() - last_ns > stall_ns) {
    tally_out_printf(out, "not ready: no store commit for %u intervals\n",
      TALLY_COMMIT_STALL_INTERVALS);
    return false;
  }
  return true;
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

const struct tally_persist_ops *tally_persist_ops_of(enum tally_persist_mode mode)
{
  static const struct tally_persist_ops *const by_mode[] = {
    [TALLY_PERSIST_GROUP_COMMIT] = &tally_persist_group_commit,
    [TALLY_PERSIST_PER_BURST] = &tally_persist_per_burst,
  };
  assert(mode == TALLY_PERSIST_GROUP_COMMIT || mode == TALLY_PERSIST_PER_BURST);
  assert(by_mode[mode] != NULL);
  return by_mode[mode];
}
