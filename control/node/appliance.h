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

struct tally_cluster;
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
  volatile bool read_only_forced;       /* operator: tallyctl readonly on / drain */
  bool draining;                        /* operator: tallyctl drain (until rejoin) */
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
