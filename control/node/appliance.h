/*
 * appliance.h — the running tallyd: config, store, ports, dataplane lcores,
 * the RCU-published dataplane config, and the control plane's own state
 * (persister figures, readiness). One instance, owned by control/daemon/main.c and
 * handed to every control-plane module.
 */
#ifndef TALLY_APPLIANCE_H
#define TALLY_APPLIANCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "degrade.h"
#include "lcore.h"
#include "packet.h"
#include "port.h"
#include "store.h"

/* Figures of the group-commit persister (written by it, read relaxed). */
struct tally_persister_stats {
  uint64_t commits;
  uint64_t last_commit_unix_ns;   /* wall clock of the last completed commit */
  uint64_t last_commit_mono_ns;   /* monotonic clock of the same */
  uint64_t commit_ns_last;        /* duration of the last persist */
  uint64_t commit_ns_max;
};

/* Log mode's buckets of the commit-latency histogram, upper bounds in µs (+Inf after). */
#define TALLY_LOG_COMMIT_BUCKETS_US {100u, 250u, 500u, 1000u, 2500u, 5000u, 10000u, 25000u, \
  100000u, 1000000u}
#define TALLY_LOG_COMMIT_BUCKETS 10u

/* Where log-mode recovery took the image from (tally_log_stats.recovery_source). */
enum tally_log_source {
  TALLY_LOG_SOURCE_NEW,        /* no image and an empty log: a new store */
  TALLY_LOG_SOURCE_IMAGE,      /* the image survived (process crash, restart) and passed */
  TALLY_LOG_SOURCE_LOG,        /* no image: a new one, the whole log replayed */
  TALLY_LOG_SOURCE_CHECKPOINT, /* no image: the newest checkpoint, then the log (not built) */
  TALLY_LOG_SOURCE_COUNT
};

/* Figures of the log-mode persister (written by it or at start-up, read relaxed). */
struct tally_log_stats {
  uint64_t records;          /* records appended (and committed or in the open group) */
  uint64_t bytes_written;    /* bytes the log wrote (pwrite) */
  uint64_t commits;          /* group commits (one pwrite + one fdatasync each) */
  uint64_t commit_ns_sum;
  uint64_t commit_ns_max;
  uint64_t commit_buckets[TALLY_LOG_COMMIT_BUCKETS + 1u]; /* not cumulative; last: +Inf */
  uint64_t failed;           /* 1 once a write or fdatasync failed: acks stop */
  uint64_t recovery_source;  /* enum tally_log_source */
  uint64_t records_replayed; /* log records redone onto the image at start */
  uint64_t records_skipped;  /* log records the image already held */
  uint64_t records_relogged; /* batches the image held and the log lacked, logged at start */
  uint64_t cluster_records;  /* cluster records appended (replica tables, undos, keeper claims) */
  uint64_t recovery_ns;      /* the log's part of start-up: scan, replay, re-log, open */
  /* Checkpoints of the image (persister_ckpt.c): written by the persister, relaxed. */
  uint64_t checkpoints_finished;
  uint64_t checkpoints_failed;
  uint64_t checkpoint_last_unix_ns;     /* when the last one became durable (0: none yet) */
  uint64_t checkpoint_last_ns;          /* how long it took, begin to durable */
  uint64_t checkpoint_last_bytes;       /* its file size */
  uint64_t checkpoint_bytes_written;    /* checkpoint file bytes, every attempt */
  uint64_t checkpoint_loaded_lsn;       /* start-up: the loaded checkpoint's begin_lsn */
  bool checkpoint_loaded;               /* start-up: recovery loaded a checkpoint (its begin_lsn may be 0) */
  uint64_t checkpoint_settled;          /* start-up: torn values and records settled in the copy */
  uint64_t started_unix_ns;             /* the log opened (the age's origin before a checkpoint) */
  /* Backups (tallyctl backup; docs/operations.md): written by the control thread (mgmt),
   * read by the persister, relaxed. */
  uint64_t backup_hold_lsn;      /* the log is never cut past this LSN (0: no hold) */
  uint64_t checkpoint_requested; /* 1: the persister begins a checkpoint at its next tick */
};

struct tally_cluster;
struct tally_graphite;
struct tally_log;
struct tally_wal_queue;
struct tally_node_ops;
struct tally_persist_ops;

struct tally_appliance {
  char config_path[TALLY_PATH_MAX];
  struct tally_config config;
  struct tally_store store;
  struct tally_ports ports;
  uint32_t lcore_count;
  struct tally_lcore *lcores;           /* lcore_count entries, hugepage memory */
  struct tally_dp_config *dp_config;    /* RCU: read by lcores, swapped by control */
  volatile bool quit;                   /* lcores and threads stop when set */
  volatile bool persister_quit;
  bool persister_running;
  pthread_t persister;
  struct tally_persister_stats persister_stats;
  struct tally_log *log;                /* log mode's persister state; NULL in other modes */
  struct tally_wal_queue *cluster_log_queue; /* log mode on a cluster node: the cluster's records */
  struct tally_log_stats log_stats;
  uint64_t started_mono_ns;
  uint64_t reloads;
  uint64_t reload_failures;
  uint64_t mgmt_requests;
  uint64_t mgmt_errors;
  uint64_t mgmt_refused;                /* state-changing commands from a peer not allowed */
  /* control.admin_group resolved at start-up (control/daemon/mgmt.c); -1: none. Root and
   * tallyd's own user may always change state; members of this group may too. */
  int64_t mgmt_admin_gid;
  /* The modes (control/daemon/modes.h): set once at start-up, then read-only. */
  const struct tally_node_ops *node;        /* single node or cluster */
  const struct tally_persist_ops *persist;  /* group commit or per burst */
  struct tally_cluster *cluster;        /* the cluster mode's state; NULL for a single node */
  struct tally_graphite *graphite;      /* the Graphite push (graphite.c); NULL without [graphite] */
  volatile bool read_only_forced;       /* operator: tallyctl readonly on / drain */
  bool draining;                        /* operator: tallyctl drain (until rejoin) */
  /* Degradation levels (degrade.h): level published to the lcores; the control thread's probe. */
  struct tally_degrade degrade;
  struct tally_degrade_probe {
    uint64_t last_ns;                   /* last tick; 0: none yet */
    uint64_t polls[TALLY_LCORES_MAX];   /* each lcore's polls and idle polls at that tick */
    uint64_t full_polls[TALLY_LCORES_MAX];
  } degrade_probe;
};

/* Whether every dataplane lcore has entered its polling loop. */
static inline bool tally_lcores_running(const struct tally_appliance *appliance)
{
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    if (!__atomic_load_n(&appliance->lcores[i].running, __ATOMIC_ACQUIRE)) return false;
  }
  return true;
}

#endif
