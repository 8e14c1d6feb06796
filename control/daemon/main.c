/*
 * main.c — tallyd: loads and checks the config (nothing is created before
 * it is valid), starts DPDK's EAL, opens and recovers the persistent store,
 * starts the ports, launches one polling lcore per shard, then runs the
 * control thread on the main lcore: management socket, HTTP, signals, and
 * the Graphite push's thread when [graphite] is configured. The
 * two modes (node, persistence) are picked here once (modes.h).
 *
 * Thread: start-up before the lcores, then the control thread (the main
 * lcore) until shutdown, which it also runs.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sysexits.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring.h>
#include <sodium.h>
#include <urcu/urcu-qsbr.h>

#include "actions.h"
#include "degrade_control.h"
#include "graphite.h"
#include "http.h"
#include "mgmt.h"
#include "modes.h"
#include "notify.h"
#include "persister.h"
#include "persister_log.h"

static struct tally_appliance appliance;
static struct tally_notify notify; /* systemd: READY=1, STATUS=, WATCHDOG=1 (notify.c) */

static void die(const char *message)
{
  fprintf(stderr, "tallyd: %s\n", message);
  exit(1);
}

static void usage(FILE *stream)
{
  fprintf(stream, "usage: tallyd -c CONFIG [--check-config]\n"
    "  -c, --config FILE   INI configuration (see config/tally.ini.template)\n"
    "  --check-config      validate the configuration and exit\n"
    "  -h, --help          print this help and exit\n"
    "  --version           print the version and exit\n"
    "exit: 0 stopped cleanly (or config valid), 1 start-up or runtime failure,\n"
    "      2 invalid configuration, 64 usage\n");
}

static void parse_arguments(int argc, char **argv, bool *check_only)
{
  static const struct option options[] = {
    { "config", required_argument, NULL, 'c' },
    { "check-config", no_argument, NULL, 'k' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  int option;
  while ((option = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
    if (option == 'c') {
      if (strlen(optarg) >= sizeof appliance.config_path) die("config path too long");
      snprintf(appliance.config_path, sizeof appliance.config_path, "%s", optarg);
    } else if (option == 'k') {
      *check_only = true;
    } else if (option == 'h') {
      usage(stdout);
      exit(0);
    } else if (option == 'V') {
      printf("tallyd %s\n", TALLY_VERSION);
      exit(0);
    } else {
      usage(stderr);
      exit(EX_USAGE);
    }
  }
  if (appliance.config_path[0] == '\0' || optind != argc) {
    usage(stderr);
    exit(EX_USAGE);
  }
}

static void start_eal(void)
{
  static char storage[TALLY_EAL_ARGS_LEN_MAX + 16];
  static char *argv[TALLY_EAL_ARGC_MAX + 2];
  int argc = tally_config_eal_argv(&appliance.config, "tallyd", storage, argv);
  if (argc < 0) die("eal.args: too many arguments");
  if (rte_eal_init(argc, argv) < 0) {
    fprintf(stderr, "tallyd: eal.args: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
    exit(1);
  }
  uint32_t workers = rte_lcore_count() - 1;
  if (workers < 1 || workers > TALLY_LCORES_MAX) {
    fprintf(stderr, "tallyd: eal.args: need 1..%u dataplane lcores besides the main lcore, got %u\n",
      TALLY_LCORES_MAX, workers);
    exit(1);
  }
  appliance.lcore_count = workers;
}

/*
 * A cluster node's data lives on its peers too: keep the damaged file for
 * inspection, start on a new store and restore from them (node->open).
 */
static void replace_damaged_store(const struct tally_store_geometry *geometry, const char *why)
{
  char error[512];
  char aside[TALLY_PATH_MAX + 64];
  snprintf(aside, sizeof aside, "%s.corrupt-%llu", appliance.config.store_path,
    (unsigned long long)(tally_clock_unix_ns() / 1000000000ull));
  if (rename(appliance.config.store_path, aside) != 0) die(why);
  fprintf(stderr, "tallyd: %s\ntallyd: cluster: moved the damaged store to %s; starting on a "
    "new store, to be restored from the peers\n", why, aside);
  if (tally_store_open(&appliance.store, appliance.config.store_path, geometry,
        appliance.config.persist_mode, error, sizeof error) != 0) {
    die(error);
  }
  assert(appliance.store.recovery.created);
}

/* Slots or producer records of the node's own shards that recovery quarantined. */
static uint64_t store_quarantined(const struct tally_store *store)
{
  uint64_t quarantined = 0;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    quarantined += (uint64_t)store->recovery.shards[i].slots_quarantined +
      store->recovery.shards[i].producers_quarantined;
  }
  return quarantined;
}

static void open_store(void)
{
  char error[512];
  /* A cluster node has one more shard: the compensation shard (cluster thread). */
  struct tally_store_geometry geometry = {
    .shard_count = appliance.lcore_count + appliance.node->shards_extra,
    .counters_max = appliance.config.counters_max,
    .producers_max = appliance.config.producers_max,
    .replica_count = appliance.node->replica_regions,
  };
  if (tally_store_open(&appliance.store, appliance.config.store_path, &geometry,
        appliance.config.persist_mode, error, sizeof error) != 0) {
    if (!appliance.store.corrupt || !appliance.node->restores_damaged_store) die(error);
    replace_damaged_store(&geometry, error);
  } else if (appliance.node->restores_damaged_store && store_quarantined(&appliance.store) > 0) {
    /*
     * Damaged (values or dedup records lost): replaced whole, not patched.
     * A restore makes the node's values, records, journals and undone set
     * all the peer's copy, so that each names exactly what the others hold
     * (docs/cluster.md, "Keeping is exact"); patching would keep journal
     * entries and records of batches the restored values lack.
     */
    snprintf(error, sizeof error, "store %s: recovery quarantined %" PRIu64 " slot(s) or "
      "producer record(s)", appliance.config.store_path, store_quarantined(&appliance.store));
    tally_store_close(&appliance.store);
    replace_damaged_store(&geometry, error);
  }
  appliance.persist = tally_persist_ops_of(appliance.store.mode);
  if (appliance.store.mode == TALLY_PERSIST_LOG) {
    if (tally_log_open(&appliance, error, sizeof error) != 0) die(error);
  }
  const struct tally_store_recovery *recovery = &appliance.store.recovery;
  const char *state = recovery->created ? "created new" :
    recovery->was_clean ? "opened after a clean shutdown" : "opened after an unclean shutdown";
  fprintf(stderr, "tallyd: store %s: %s, %u shards, %s granularity, %s mode, "
    "recovered in %.3f ms\n", appliance.config.store_path, state,
    geometry.shard_count, appliance.store.granularity_name,
    appliance.persist->title,
    (double)recovery->recovery_ns / 1e6);
  for (uint32_t i = 0; i < geometry.shard_count; i++) {
    const struct tally_shard_recovery *shard = &recovery->shards[i];
    fprintf(stderr, "tallyd: shard %u: %u counters, %u producers, log replayed %u discarded %u, "
      "quarantined %u slots %u producers, torn %u\n", i, shard->counters_used,
      shard->producers_used, shard->log_replayed, shard->log_discarded, shard->slots_quarantined,
      shard->producers_quarantined, shard->slots_torn);
  }
}

static struct tally_dp_config *make_dp_config(void)
{
  struct tally_dp_config *config = calloc(1, sizeof *config);
  if (config == NULL) die("out of memory");
  config->generation = 1;
  config->ipv4_be = rte_cpu_to_be_32(appliance.config.ipv4);
  config->statsd_port_be = rte_cpu_to_be_16(appliance.config.statsd_port);
  config->binary_port_be = rte_cpu_to_be_16(appliance.config.binary_port);
  memcpy(config->key, appliance.config.key, sizeof config->key);
  config->producer_keys_derived = appliance.config.producer_keys_derived;
  config->statsd_tags = appliance.config.statsd_tags;
  config->statsd_counters_max = (uint32_t)((uint64_t)appliance.config.counters_max *
    appliance.config.statsd_counters_percent / 100u);
  config->statsd_writes_reliable = appliance.config.statsd_writes_reliable;
  config->statsd_per_poll = appliance.config.statsd_per_poll;
  config->reliable_per_poll = appliance.config.reliable_per_poll;
  config->control_per_poll = appliance.config.control_per_poll;
  config->statsd_policy = appliance.config.statsd_policy;
  for (uint32_t i = 0; i < TALLY_PORTS_MAX; i++) config->port_mac[i] = appliance.ports.macs[i];
  return config;
}

/* One lcore's statsd source table (statsd_sources.h), in hugepage memory. */
static struct tally_statsd_sources *make_statsd_sources(void)
{
  struct tally_statsd_sources *table = rte_zmalloc("tally_statsd_sources", sizeof *table,
    RTE_CACHE_LINE_SIZE);
  if (table == NULL) die("cannot allocate a statsd source table (hugepages)");
  if (tally_statsd_sources_init(table, &appliance.config.statsd_policy, rte_get_tsc_hz(),
        rte_get_tsc_cycles()) != 0) {
    die("ingest.statsd_source_rate: rte_meter refused the token bucket");
  }
  return table;
}

static struct rte_ring *make_ring(uint32_t source, uint32_t destination)
{
  char name[64]; /* rte_ring_create checks RTE_RING_NAMESIZE */
  assert(source < TALLY_LCORES_MAX && destination < TALLY_LCORES_MAX);
  snprintf(name, sizeof name, "tally_steer_%u_%u", (unsigned)(uint8_t)source,
    (unsigned)(uint8_t)destination);
  struct rte_ring *ring = rte_ring_create(name, TALLY_STEER_RING_SIZE, (int)rte_socket_id(),
    RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (ring == NULL) die("cannot create steering ring");
  return ring;
}

static void make_lcores(void)
{
  uint32_t count = appliance.lcore_count;
  appliance.lcores = rte_zmalloc("tally_lcores", sizeof(struct tally_lcore) * count,
    RTE_CACHE_LINE_SIZE);
  if (appliance.lcores == NULL) die("cannot allocate lcore state");
  unsigned lcore_id;
  uint32_t index = 0;
  RTE_LCORE_FOREACH_WORKER(lcore_id) {
    assert(index < count);
    struct tally_lcore *lcore = &appliance.lcores[index];
    lcore->index = index;
    lcore->lcore_count = count;
    lcore->lcore_id = lcore_id;
    lcore->port_count = appliance.ports.count;
    memcpy(lcore->ports, appliance.ports.ids, sizeof lcore->ports);
    lcore->shard = &appliance.store.shards[index];
    lcore->persist = appliance.persist->lcore;
    if (appliance.store.mode == TALLY_PERSIST_LOG) {
      lcore->log_ring = rte_zmalloc("tally_log_ring", sizeof(struct tally_log_ring),
        RTE_CACHE_LINE_SIZE);
      if (lcore->log_ring == NULL) die("cannot allocate the log ring (hugepages)");
    }
    lcore->config = &appliance.dp_config;
    lcore->quit = &appliance.quit;
    lcore->read_only_forced = &appliance.read_only_forced;
    lcore->degradation_level = &appliance.degrade.level;
    lcore->statsd_sources = make_statsd_sources();
    lcore->idle_sleep_us = appliance.config.idle_sleep_us;
    index++;
  }
  assert(index == count);
  for (uint32_t source = 0; source < count; source++) {
    for (uint32_t destination = 0; destination < count; destination++) {
      if (source == destination) continue;
      struct rte_ring *ring = make_ring(source, destination);
      appliance.lcores[source].rings_out[destination] = ring;
      appliance.lcores[destination].rings_in[source] = ring;
    }
  }
}

static void launch_lcores(void)
{
  for (uint32_t i = 0; i < appliance.lcore_count; i++) {
    struct tally_lcore *lcore = &appliance.lcores[i];
    int rc = rte_eal_remote_launch(tally_lcore_main, lcore, lcore->lcore_id);
    if (rc != 0) die("cannot launch a dataplane lcore");
    fprintf(stderr, "tallyd: dataplane lcore %u polls queue %u on %u port(s)\n",
      lcore->lcore_id, i, lcore->port_count);
  }
}

static int make_signal_fd(void)
{
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  /* Blocked before EAL starts its threads, so only the signalfd sees them. */
  if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0) die("cannot block signals");
  int fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) die("cannot create signalfd");
  return fd;
}

static void handle_signal(int signal_fd)
{
  struct signalfd_siginfo info;
  if (read(signal_fd, &info, sizeof info) != (ssize_t)sizeof info) return;
  if (info.ssi_signo == SIGHUP) {
    struct tally_out out;
    tally_out_init_memory(&out);
    tally_action_reload(&appliance, &out);
    size_t length = 0;
    char *text = tally_out_take(&out, &length);
    if (text != NULL) fprintf(stderr, "tallyd: SIGHUP: %.*s", (int)length, text);
    free(text);
    return;
  }
  fprintf(stderr, "tallyd: signal %u: stopping\n", info.ssi_signo);
  appliance.quit = true;
}

static void control_loop(int mgmt_fd, int signal_fd)
{
  tally_notify_start(&notify, tally_clock_mono_ns());
  while (!appliance.quit) {
    tally_notify_tick(&notify, &appliance, tally_clock_mono_ns());
    tally_degrade_tick(&appliance, tally_clock_mono_ns());
    struct pollfd fds[2] = {
      { .fd = mgmt_fd, .events = POLLIN },
      { .fd = signal_fd, .events = POLLIN },
    };
    int ready = poll(fds, 2, (int)TALLY_CONTROL_POLL_MS);
    if (ready < 0 && errno != EINTR) die("poll failed");
    if (ready <= 0) continue;
    if (fds[1].revents & POLLIN) handle_signal(signal_fd);
    if (fds[0].revents & POLLIN) tally_mgmt_serve_one(&appliance, mgmt_fd);
  }
}

static void shut_down(struct MHD_Daemon *http, int mgmt_fd)
{
  tally_notify_stopping(&notify);
  appliance.quit = true;
  rte_eal_mp_wait_lcore();
  appliance.node->stop(&appliance);
  tally_persister_stop(&appliance);
  tally_graphite_stop(appliance.graphite);
  appliance.graphite = NULL;
  tally_http_stop(http);
  tally_log_close(&appliance);
  tally_mgmt_close(mgmt_fd, appliance.config.socket_path);
  tally_ports_stop(&appliance.ports);
  tally_store_close(&appliance.store);
  free(appliance.dp_config);
  rte_eal_cleanup();
  fprintf(stderr, "tallyd: stopped cleanly\n");
}

int main(int argc, char **argv)
{
  bool check_only = false;
  char error[512];
  parse_arguments(argc, argv, &check_only);
  if (tally_config_load(appliance.config_path, &appliance.config, error, sizeof error) != 0) {
    fprintf(stderr, "tallyd: %s\n", error);
    return 2;
  }
  if (tally_mgmt_admin_gid(appliance.config.admin_group, &appliance.mgmt_admin_gid, error,
        sizeof error) != 0) {
    fprintf(stderr, "tallyd: %s: %s\n", appliance.config_path, error);
    return 2;
  }
  if (appliance.config.demo) {
    fprintf(stderr, "tallyd: node.demo = true: the public demo keys are accepted; never in "
      "production\n");
  }
  if (check_only) {
    printf("%s: configuration valid\n", appliance.config_path);
    return 0;
  }
  /* The node mode, once: everything that differs between one node and a cluster. */
  appliance.node = appliance.config.cluster.enabled ? &tally_node_cluster : &tally_node_single;
  if (sodium_init() < 0) die("libsodium initialisation failed");
  int signal_fd = make_signal_fd();
  appliance.started_mono_ns = tally_clock_mono_ns();
  start_eal();
  open_store();
  if (tally_ports_start(&appliance.ports, appliance.lcore_count, appliance.config.mbufs, error,
        sizeof error) != 0) {
    die(error);
  }
  appliance.dp_config = make_dp_config();
  tally_degrade_init(&appliance.degrade);
  make_lcores();
  if (tally_persister_start(&appliance) != 0) die("cannot start the persister thread");
  appliance.node->open(&appliance);
  int mgmt_fd = tally_mgmt_listen(appliance.config.socket_path, error, sizeof error);
  if (mgmt_fd < 0) die(error);
  struct MHD_Daemon *http = NULL;
  if (appliance.config.http_port != 0) {
    http = tally_http_start(&appliance, error, sizeof error);
    if (http == NULL) die(error);
  }
  if (tally_graphite_start(&appliance, error, sizeof error) != 0) die(error);
  launch_lcores();
  fprintf(stderr, "tallyd: serving (statsd udp/%u, binary udp/%u, socket %s)\n",
    appliance.config.statsd_port, appliance.config.binary_port, appliance.config.socket_path);
  control_loop(mgmt_fd, signal_fd);
  shut_down(http, mgmt_fd);
  close(signal_fd);
  return 0;
}
