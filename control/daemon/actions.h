/*
 * actions.h — every operator action, one function each. The management
 * socket (tallyctl), HTTP and the tests all call these, so they can never
 * disagree. Each writes its text into a struct tally_out.
 */
#ifndef TALLY_ACTIONS_H
#define TALLY_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "appliance.h"
#include "out.h"

enum tally_action_result {
  TALLY_ACTION_OK = 0,
  TALLY_ACTION_NOT_FOUND = 1,
  TALLY_ACTION_BAD_REQUEST = 2,
  TALLY_ACTION_FAILED = 3,
  TALLY_ACTION_NOT_READY = 4,
  TALLY_ACTION_PARTIAL = 5,   /* an answer, but not every node answered */
  TALLY_ACTION_NOT_PERMITTED = 6, /* a state-changing command from a peer not allowed */
};

/*
 * The node's value of one counter (its shards, plus in a cluster every peer's
 * contribution as this node holds it), alone on a line. The name is a counter
 * key, its tags in any order (name{k=v,...}, include/tally/key.h); get and
 * get --quorum canonicalize it.
 */
enum tally_action_result tally_action_get(struct tally_appliance *appliance, const char *name,
  size_t name_len, struct tally_out *out);
/*
 * The cluster-wide value merged from the freshest copy of every node's
 * contribution that this node and the peers that answer hold. The value
 * line, then (PARTIAL) "partial: K of N nodes answered" when some did not.
 */
enum tally_action_result tally_action_get_quorum(struct tally_appliance *appliance,
  const char *name, size_t name_len, struct tally_out *out);
/*
 * Calls visit for every counter whose key starts with prefix, once each, with
 * its node total (as get gives it), until visit returns false. Returns
 * whether it visited them all. Any control-side thread (list on the control
 * thread, the Graphite push on its own).
 */
typedef bool (*tally_action_counter_fn)(void *context, const char *name, size_t name_len,
  __int128 total);
bool tally_action_foreach_counter(struct tally_appliance *appliance, const char *prefix,
  size_t prefix_len, tally_action_counter_fn visit, void *context);
/*
 * "name value" lines for every counter whose key starts with prefix; or, when
 * the argument has tags (name{k=v,...} in any order, or name{}), for every
 * counter of that name whose tag set holds all of them.
 */
enum tally_action_result tally_action_list(struct tally_appliance *appliance,
  const char *prefix, size_t prefix_len, struct tally_out *out);
/* "key value" lines: the appliance's own figures. */
enum tally_action_result tally_action_stats(struct tally_appliance *appliance,
  struct tally_out *out);
/* Prometheus text exposition for /metrics. */
enum tally_action_result tally_action_metrics(struct tally_appliance *appliance,
  struct tally_out *out);
/* The cluster as this node sees it: a self line, then a line per peer. */
enum tally_action_result tally_action_cluster(struct tally_appliance *appliance,
  struct tally_out *out);
/*
 * Operator overrides. readonly on|off: refuse reliable writes (READ_ONLY
 * acks, producers go elsewhere) or accept them again. drain: read-only, and
 * reports whether every peer holds all of this node's counts yet (run it
 * until it says drained). rejoin: ends a drain or a forced read-only.
 */
enum tally_action_result tally_action_readonly(struct tally_appliance *appliance, bool on,
  struct tally_out *out);
enum tally_action_result tally_action_drain(struct tally_appliance *appliance,
  struct tally_out *out);
/*
 * tallyctl degrade auto|0|1|2|3: force a degradation level (degrade.h), or
 * hand it back to the signals (automatic true; level ignored).
 */
enum tally_action_result tally_action_degrade(struct tally_appliance *appliance, bool automatic,
  uint32_t level, struct tally_out *out);
enum tally_action_result tally_action_rejoin(struct tally_appliance *appliance,
  struct tally_out *out);
/*
 * Backups (log mode only; docs/operations.md, "Backups and restore").
 * checkpoint: the persister begins one at its next tick; the answer gives
 * checkpoints_finished so the caller can wait for it to grow. log_hold: the
 * log is never cut past lsn (0 releases), so the next incremental backup
 * finds every record after it. Held in memory: a restart releases it.
 */
enum tally_action_result tally_action_checkpoint(struct tally_appliance *appliance,
  struct tally_out *out);
enum tally_action_result tally_action_log_hold(struct tally_appliance *appliance, uint64_t lsn,
  struct tally_out *out);
/*
 * Re-reads the config file and applies every reloadable key: ingest.key
 * (RCU), cluster.fault_*, and the cluster membership (as cluster reload). A
 * [cluster] change that may not happen at runtime refuses it all.
 */
enum tally_action_result tally_action_reload(struct tally_appliance *appliance,
  struct tally_out *out);
/*
 * `tallyctl cluster reload`: re-reads the config file and applies its
 * [cluster] membership and settings only (cluster_members.c); a refusal
 * names the key and changes nothing.
 */
enum tally_action_result tally_action_cluster_reload(struct tally_appliance *appliance,
  struct tally_out *out);
/* Readiness: every lcore polling and the persister keeping up; why not, if not. */
bool tally_action_ready(struct tally_appliance *appliance, struct tally_out *out);

/*
 * For the modes' implementations (control/daemon/mode_*.c). Loads the config
 * file for a reload into fresh; on failure counts it (node->reload_refused
 * too), says why in out and returns false.
 */
bool tally_action_reload_load(struct tally_appliance *appliance, struct tally_config *fresh,
  struct tally_out *out);
/* A node total (exact in 128 bits), without a newline. */
void tally_action_print_total(struct tally_out *out, __int128 value);
/* The same into text (NUL-terminated); returns its length. */
#define TALLY_ACTION_TOTAL_SIZE 48u
size_t tally_action_format_total(char text[TALLY_ACTION_TOTAL_SIZE], __int128 value);

#endif
