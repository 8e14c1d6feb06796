/*
 * modes.h — the daemon's two modes, each picked once at start-up through a
 * table of operations (as DPDK l3fwd picks its lookup), instead of branches
 * spread through the control plane:
 *
 * - the node mode: a single node (mode_single.c) or a cluster member
 *   (mode_cluster.c, the tally_cluster_* functions of control/cluster/);
 * - the persistence mode: group commit, per burst or log (mode_persist.c), which
 *   also hands the lcores their half (struct tally_lcore_persist, lcore.h).
 *
 * main.c sets appliance->node and appliance->persist before any thread
 * starts; both stay fixed for the process's life. Every operation runs on
 * the thread its caller runs on (noted per operation).
 */
#ifndef TALLY_MODES_H
#define TALLY_MODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actions.h"
#include "appliance.h"
#include "out.h"

/*
 * GET /counters (counters.c): the copies of the counters a node exports,
 * taken once per scrape. A single node: its own shards, no origin. A
 * cluster member: its own contribution (origin = its id, live), and the
 * replica table of every node that is retired or that the failure detector
 * does not say up (origin = that node, complete up to its scan scan_us), so
 * that Prometheus can pick, per origin, the freshest copy it scraped
 * (docs/operations.md, "Prometheus").
 */
struct tally_counters_copy {
  const struct tally_shard *tables;   /* table_count consecutive tables, summed */
  uint32_t table_count;               /* >= 1 */
  bool has_origin;                    /* a cluster member: an origin label */
  bool own;                           /* this node's own contribution (live) */
  uint16_t origin;
  uint64_t scan_us;                   /* a replica: its held_scan (unix microseconds) */
};

struct tally_counters_view {
  uint32_t count;                     /* 1..1 + TALLY_REPLICA_REGIONS_MAX */
  uint32_t members;                   /* a cluster: the running membership; 0: a single node */
  struct tally_counters_copy copies[1u + TALLY_REPLICA_REGIONS_MAX];
};

struct tally_node_ops {
  const char *name;             /* "single node" | "cluster" */
  /* Start-up: shards beyond one per lcore, and replica regions, in the store. */
  uint32_t shards_extra;
  uint32_t replica_regions;
  /* Start-up: a damaged store is set aside and restored from the peers. */
  bool restores_damaged_store;
  /* Start-up, before the lcores launch: the cluster thread. Exits on failure. */
  void (*open)(struct tally_appliance *appliance);
  /* Shutdown, after the lcores stopped. */
  void (*stop)(struct tally_appliance *appliance);
  /* Control thread: `tallyctl get --quorum NAME`. */
  enum tally_action_result (*get_quorum)(struct tally_appliance *appliance, const char *name,
    size_t name_len, struct tally_out *out);
  /* Control thread: `tallyctl cluster`. */
  enum tally_action_result (*describe)(struct tally_appliance *appliance, struct tally_out *out);
  /* Control thread: peers that do not hold all of this node's counts yet (drain). */
  uint32_t (*peers_behind)(struct tally_appliance *appliance);
  /* Control thread: a reload was refused (bad file or membership): counted. */
  void (*reload_refused)(struct tally_appliance *appliance);
  /* Control thread: whether fresh's membership can be applied now. 0, or -1 and error. */
  int (*reload_check)(struct tally_appliance *appliance, const struct tally_config *fresh,
    char *error, size_t error_size);
  /* Control thread, after ingest.key: the reloadable cluster keys. 0 or -1 (said in out). */
  int (*reload_apply)(struct tally_appliance *appliance, const struct tally_config *fresh,
    struct tally_out *out);
  /* Control thread: `tallyctl cluster reload`. */
  enum tally_action_result (*cluster_reload)(struct tally_appliance *appliance,
    struct tally_out *out);
  /* HTTP thread: the mode's own Prometheus figures, appended to /metrics. */
  void (*metrics)(struct tally_appliance *appliance, struct tally_out *out);
  /* HTTP thread: the copies GET /counters exports, now. */
  void (*counters_view)(struct tally_appliance *appliance, struct tally_counters_view *view);
};

extern const struct tally_node_ops tally_node_single;  /* mode_single.c */
extern const struct tally_node_ops tally_node_cluster; /* mode_cluster.c */

struct tally_persist_ops {
  const char *name;             /* `tallyctl stats`: "group_commit" | "per_burst" */
  const char *title;            /* start-up log: "group-commit" | "per-burst" */
  /* Persister thread, each interval, between noting and publishing applied_seq. */
  void (*persist)(struct tally_store *store);
  /* Control and HTTP threads: whether persistence keeps up (readiness); why not in out. */
  bool (*ready)(struct tally_appliance *appliance, struct tally_out *out);
  /* The lcores' half: how an lcore learns durability, what it does after a poll. */
  const struct tally_lcore_persist *lcore;
  /* Persister thread: its whole loop; NULL: persist every store.commit_interval_ms. */
  void (*loop)(struct tally_appliance *appliance);
  /* HTTP thread and control thread: the mode's own figures; NULL: none. */
  void (*metrics)(struct tally_appliance *appliance, struct tally_out *out);
  void (*stats)(struct tally_appliance *appliance, struct tally_out *out);
};

extern const struct tally_persist_ops tally_persist_group_commit; /* mode_persist.c */
extern const struct tally_persist_ops tally_persist_per_burst;
extern const struct tally_persist_ops tally_persist_log;

/* Start-up: the persistence table for the store's resolved mode. */
const struct tally_persist_ops *tally_persist_ops_of(enum tally_persist_mode mode);

#endif
