/*
 * config.h — tallyd's configuration: the INI file (parsed with libinih),
 * validated in full before anything is created. Every key, its default and
 * range are in config/tally.ini.template and docs/config-keys.md.
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/key.h"
#include "tally/limits.h"
#include "tally/statsd_policy.h"
#include "persist_mode.h"

/* One member of the cluster (its replication / control-plane address). */
struct tally_cluster_node {
  uint16_t id;      /* 1..65535, unique */
  uint32_t ipv4;    /* host byte order */
  uint16_t port;    /* UDP port of heartbeats and replication */
};

/* [cluster]: absent means a single node (enabled = false). */
struct tally_cluster_config {
  bool enabled;
  uint16_t node_id;                 /* this node; must be one of nodes */
  uint32_t node_count;              /* 1..TALLY_NODES_MAX */
  struct tally_cluster_node nodes[TALLY_NODES_MAX]; /* in the order given */
  uint32_t write_quorum;            /* 1..node_count; default min(2, node_count) */
  uint8_t key[TALLY_KEY_SIZE];      /* cluster key, 64 hex digits (required) */
  uint32_t heartbeat_interval_ms;   /* default 100; 10..10000 */
  uint32_t replication_interval_ms; /* default 5; 1..1000 */
  double suspect_phi;               /* default 5; (0, 100] */
  double down_phi;                  /* default 8; > suspect_phi, <= 100 */
  /* Test-only fault injection on every datagram sent to peers (never in
   * production; control/cluster/cluster_fault.h). Default 0: off. Reloadable. */
  uint32_t fault_delay_ms;          /* 0..TALLY_CLUSTER_FAULT_DELAY_MS_MAX */
  uint32_t fault_jitter_ms;         /* 0..TALLY_CLUSTER_FAULT_JITTER_MS_MAX */
  uint32_t fault_loss_permille;     /* 0..TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX */
};

/* [graphite]: absent means no push (enabled = false). */
struct tally_graphite_config {
  bool enabled;
  uint32_t ipv4;                    /* carbon's address, host byte order */
  uint16_t port;                    /* carbon's plaintext TCP port */
  uint32_t interval_ms;             /* TALLY_GRAPHITE_INTERVAL_MS_MIN..MAX; default 10000 */
  uint32_t buffer_bytes;            /* TALLY_GRAPHITE_BUFFER_BYTES_MIN..MAX; default 8 MiB */
  char prefix[TALLY_GRAPHITE_PREFIX_LEN_MAX + 1]; /* "" or dot-separated [A-Za-z0-9_-] */
};

struct tally_config {
  /* [eal] */
  char eal_args[TALLY_EAL_ARGS_LEN_MAX]; /* whitespace-separated EAL arguments */
  /* [node] */
  uint32_t ipv4;              /* our address, host byte order (required) */
  bool demo;                  /* the demo: the public demo and template keys are accepted */
  /* [ingest] */
  uint16_t statsd_port;       /* default 8125; 0 disables statsd */
  uint16_t binary_port;       /* default 8126; 0 disables the binary protocol */
  uint8_t key[TALLY_KEY_SIZE];/* 64 hex digits (required when binary_port != 0) */
  bool key_set;
  /* ingest.producer_keys: shared (default) | derived, each producer's own key (M2) */
  bool producer_keys_derived;
  /* DogStatsD tags: keep (default) | drop | allow, with the allow-list's keys */
  struct tally_tags_policy statsd_tags;
  /*
   * Traffic classes (issue 14, C1): statsd's share of each shard's
   * counters_max in percent (0..100, default 75; the rest is kept for
   * reliable producers), and whether statsd may add to a counter a reliable
   * producer owns (default false).
   */
  uint32_t statsd_counters_percent;
  bool statsd_writes_reliable;
  /* Who may send statsd: per-source budget and allowed networks (config_statsd.c). */
  struct tally_statsd_policy statsd_policy;
  /* [store] */
  char store_path[TALLY_PATH_MAX]; /* required */
  uint32_t counters_max;      /* per shard; default 65536 */
  uint32_t producers_max;     /* per shard; default 4096 */
  uint32_t commit_interval_ms;/* default 2 */
  enum tally_persist_mode persist_mode; /* auto | group_commit | per_burst | log */
  char log_dir[TALLY_PATH_MAX];   /* the write-ahead log's directory (required with log) */
  uint32_t log_group_bytes;   /* the log's group buffer; default 1 MiB */
  uint32_t log_segment_bytes; /* the log's segment size; default 64 MiB */
  uint32_t checkpoint_interval_ms; /* log mode: checkpoint every; default 60000, 0: never */
  /* [dataplane] */
  uint32_t mbufs;             /* per pool; default 16383 */
  uint32_t idle_sleep_us;     /* idle back-off of the lcores; 0 (default): poll flat out */
  /* Per-class packets per lcore poll, 1..TALLY_CLASS_PER_POLL_MAX (issue 14, C1). */
  uint32_t statsd_per_poll;
  uint32_t reliable_per_poll;
  uint32_t control_per_poll;
  /* [control] */
  char socket_path[TALLY_PATH_MAX]; /* default /run/tally/tally.sock */
  uint32_t http_ipv4;         /* host byte order; default 127.0.0.1 */
  uint16_t http_port;         /* default 9125; 0 disables HTTP */
  char admin_group[TALLY_GROUP_NAME_LEN_MAX + 1]; /* may change state over the socket; "" none */
  /* [cluster] */
  struct tally_cluster_config cluster;
  /* [graphite] */
  struct tally_graphite_config graphite;
};

/* Fills every default. */
void tally_config_defaults(struct tally_config *config);

/*
 * Parses INI text over the defaults and validates it. On error returns -1
 * and writes one line naming the section.key (or line) into error.
 */
int tally_config_parse(const char *text, size_t text_size, struct tally_config *config,
  char *error, size_t error_size);

/* Reads the file and parses it (errors name the file too). */
int tally_config_load(const char *path, struct tally_config *config, char *error,
  size_t error_size);

/*
 * config_reload.c: whether fresh (a re-read config file) may replace the
 * running [cluster] membership at runtime. The members (add, remove, change a
 * peer's address), write_quorum, the intervals and the phi thresholds may
 * change; the section may not go away, and cluster.node_id, this node's own
 * address and cluster.key may not change (a restart is needed). Returns 0, or
 * -1 with one line naming the key in error.
 */
int tally_config_cluster_reload_check(const struct tally_cluster_config *running,
  const struct tally_cluster_config *fresh, char *error, size_t error_size);

/*
 * Splits eal_args on whitespace into argv (argv[0] = program). Returns argc,
 * or -1 if there are more than TALLY_EAL_ARGC_MAX. The strings point into
 * storage (TALLY_EAL_ARGS_LEN_MAX bytes).
 */
int tally_config_eal_argv(const struct tally_config *config, const char *program,
  char *storage, char **argv);

#endif
