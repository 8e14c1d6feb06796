/*
 * cluster_members.c — the cluster's membership, at start and at runtime.
 *
 * Owns which nodes are peers, and how a new membership (`tallyctl cluster
 * reload`, `tallyctl reload`, SIGHUP) reaches every thread without a restart
 * and without pausing the dataplane:
 *
 *   control thread                      cluster thread           lcores
 *   --------------                      --------------           ------
 *   load + check the file (pure:
 *     config_reload.c), refuse with
 *     one line, nothing changed
 *   bind a replica region per new
 *     node (store_replicas.c: blocks,
 *     format, directory entry persisted)
 *   allocate the new slot's lists
 *   new dp_config with every bound  ───────────────────────────► rcu_dereference
 *     table, rcu_xchg_pointer,                                     per poll (QSBR)
 *     synchronize_rcu, free the old
 *   members_next = new (release) ──► top of its loop: trylock,
 *   wait (bounded) for members_        take it, lock liveness_lock
 *     applied == generation            (the heartbeat thread's: it
 *                                      reads the slots), activate /
 *                                      retire / retune slots, swap
 *                                      config, unlock, free the old one
 *
 * A peer slot is the replica region bound to its node id (cluster.h): an
 * added node gets a fresh slot state on its region (probe, then a full send
 * of this node's contribution); a removed node's slot turns RETIRED: nothing
 * is sent to it and nothing from it accepted, its table stays and is still
 * summed into reads and consulted for DUPLICATE answers; re-adding the same
 * id makes the slot active again on the same region.
 *
 * Why a lock and not RCU for the control-plane readers: describe, /metrics
 * and quorum reads run on the control and HTTP threads, which are not RCU
 * readers, read whole peer structures the cluster thread updates in place,
 * and are rare; the cluster thread only trylocks (a slow scrape delays a
 * membership change by a loop, never the thread). The lcores never see the
 * peer slots, only the RCU-published table list in tally_dp_config.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <urcu/urcu-qsbr.h>

#include "cluster_internal.h"

static void phi_params(const struct tally_cluster_config *config, struct tally_phi_params *params)
{
  assert(config->heartbeat_interval_ms >= 1);
  assert(config->suspect_phi < config->down_phi);
  tally_phi_params_default(params, (uint64_t)config->heartbeat_interval_ms * 1000000ull);
  params->suspect_phi = config->suspect_phi;
  params->down_phi = config->down_phi;
}

static struct sockaddr_in node_address(const struct tally_cluster_node *node)
{
  assert(node->id != 0 && node->port != 0);
  return (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(node->port),
    .sin_addr.s_addr = htonl(node->ipv4) };
}

/* The member entry of origin in config (this node excluded), or NULL. */
static const struct tally_cluster_node *member(const struct tally_cluster_config *config,
  uint16_t origin)
{
  assert(config->node_count <= TALLY_NODES_MAX);
  if (origin == config->node_id) return NULL;
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == origin) return &config->nodes[i];
  }
  return NULL;
}

/* ---- Start ----------------------------------------------------------------- */

int tally_cluster_members_init(struct tally_cluster *cluster, char *error, size_t error_size)
{
  assert(cluster->appliance != NULL);
  assert(cluster->appliance->config.cluster.enabled);
  cluster->members = calloc(1, sizeof *cluster->members);
  if (cluster->members == NULL || pthread_mutex_init(&cluster->lock, NULL) != 0) {
    snprintf(error, error_size, "cluster: out of memory for the membership");
    return -1;
  }
  cluster->members->generation = 1;
  cluster->members->config = cluster->appliance->config.cluster;
  cluster->config = &cluster->members->config;
  cluster->members_applied = 1;
  return 0;
}

int tally_cluster_members_open(struct tally_cluster *cluster, char *error, size_t error_size)
{
  struct tally_store *store = &cluster->appliance->store;
  const struct tally_cluster_config *config = cluster->config;
  assert(cluster->peer_count == 0);
  assert(store->geometry.replica_count == TALLY_REPLICA_REGIONS_MAX);
  struct tally_phi_params params;
  phi_params(config, &params);
  for (uint32_t i = 0; i < config->node_count; i++) {
    const struct tally_cluster_node *node = &config->nodes[i];
    if (node->id == config->node_id) continue;
    char reason[256];
    int32_t r = tally_store_replica_bind(store, node->id, reason, sizeof reason);
    if (r < 0) {
      snprintf(error, error_size, "cluster.nodes: node %u: %s", node->id, reason);
      return -1;
    }
    if (tally_cluster_peer_allocate(cluster, &cluster->peers[r]) != 0) {
      snprintf(error, error_size, "cluster: out of memory for peer %u", node->id);
      return -1;
    }
    struct sockaddr_in address = node_address(node);
    tally_cluster_peer_activate(cluster, (uint32_t)r, node->id, &address, &params);
  }
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) { /* bound, not members */
    if (!tally_store_replica_bound(store, r) || tally_cluster_peer_active(&cluster->peers[r])) {
      continue;
    }
    tally_cluster_peer_retired_slot(cluster, r, store->replica_origin[r]);
    fprintf(stderr, "tallyd: cluster: node %u is not a member: retired (its counts stay)\n",
      store->replica_origin[r]);
  }
  assert(cluster->peer_count == config->node_count - 1u);
  return 0;
}

void tally_cluster_members_dp(const struct tally_store *store, uint32_t write_quorum,
  struct tally_dp_config *config)
{
  assert(store->geometry.replica_count <= TALLY_REPLICA_REGIONS_MAX);
  config->remote_duplicate_is_quorum = write_quorum <= 2u;
  config->remote_dedup_count = 0;
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) continue;
    config->remote_dedup[config->remote_dedup_count++] = &store->replicas[r];
  }
  assert(config->remote_dedup_count <= TALLY_REPLICA_REGIONS_MAX);
}

void tally_cluster_members_close(struct tally_cluster *cluster)
{
  assert(!cluster->running);
  free(__atomic_exchange_n(&cluster->members_next, NULL, __ATOMIC_ACQ_REL));
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    tally_cluster_peer_free(&cluster->peers[r]);
  }
  assert(cluster->members_next == NULL);
}

/* ---- The cluster thread: applying a membership ------------------------------ */

static void apply(struct tally_cluster *cluster, struct tally_cluster_members *next)
{
  struct tally_store *store = &cluster->appliance->store;
  const struct tally_cluster_config *config = &next->config;
  assert(next->generation == cluster->members->generation + 1u);
  assert(config->node_id == cluster->config->node_id);
  struct tally_phi_params params;
  phi_params(config, &params);
  char added[128] = "", retired[128] = "";
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    struct tally_cluster_peer *peer = &cluster->peers[r];
    if (!tally_store_replica_bound(store, r)) continue;
    const struct tally_cluster_node *node = member(config, store->replica_origin[r]);
    size_t used_added = strlen(added), used_retired = strlen(retired);
    if (node != NULL && !tally_cluster_peer_active(peer)) {
      struct sockaddr_in address = node_address(node);
      tally_cluster_peer_activate(cluster, r, node->id, &address, &params);
      snprintf(added + used_added, sizeof added - used_added, " %u", node->id);
    } else if (node != NULL) {
      struct sockaddr_in address = node_address(node); /* may have moved */
      tally_cluster_peer_retune(peer, &address, &params);
    } else if (tally_cluster_peer_active(peer)) {
      tally_cluster_peer_retire(cluster, peer);
      snprintf(retired + used_retired, sizeof retired - used_retired, " %u", peer->id);
    }
  }
  assert(cluster->peer_count == config->node_count - 1u);
  struct tally_cluster_members *old = cluster->members;
  cluster->members = next;
  cluster->config = &next->config;
  cluster->next_heartbeat_ms = 0; /* announce ourselves to new members at once */
  free(old);
  fprintf(stderr, "tallyd: cluster: membership generation %" PRIu64 ": %u nodes, write quorum "
    "%u; added:%s; retired:%s\n", next->generation, config->node_count, config->write_quorum,
    added[0] ? added : " none", retired[0] ? retired : " none");
}

void tally_cluster_members_apply(struct tally_cluster *cluster)
{
  if (__atomic_load_n(&cluster->members_next, __ATOMIC_ACQUIRE) == NULL) return;
  if (pthread_mutex_trylock(&cluster->lock) != 0) return; /* a reader: next loop */
  struct tally_cluster_members *next =
    __atomic_exchange_n(&cluster->members_next, NULL, __ATOMIC_ACQ_REL);
  assert(next != NULL);
  /* The heartbeat thread reads the slots and the config under liveness_lock. */
  pthread_mutex_lock(&cluster->liveness_lock);
  apply(cluster, next);
  pthread_mutex_unlock(&cluster->liveness_lock);
  pthread_mutex_unlock(&cluster->lock);
  __atomic_fetch_add(&cluster->membership_reloads, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&cluster->members_applied, next->generation, __ATOMIC_RELEASE);
}

/* ---- The control thread: a reload -------------------------------------------- */

/* Whether fresh differs from the running membership in anything a reload applies. */
static bool changed(const struct tally_cluster_config *running,
  const struct tally_cluster_config *fresh)
{
  return running->node_count != fresh->node_count ||
    memcmp(running->nodes, fresh->nodes, sizeof running->nodes) != 0 ||
    running->write_quorum != fresh->write_quorum ||
    running->heartbeat_interval_ms != fresh->heartbeat_interval_ms ||
    running->replication_interval_ms != fresh->replication_interval_ms ||
    running->suspect_phi != fresh->suspect_phi || running->down_phi != fresh->down_phi;
}

/* Refuses a change that needs more regions than are free, before binding any. */
static int check_regions(const struct tally_store *store, const struct tally_cluster_config *fresh,
  char *error, size_t error_size)
{
  uint32_t needed = 0;
  uint16_t first = 0;
  for (uint32_t i = 0; i < fresh->node_count; i++) {
    uint16_t id = fresh->nodes[i].id;
    if (id == fresh->node_id || tally_store_replica_find(store, id) >= 0) continue;
    if (needed++ == 0) first = id;
  }
  uint32_t free_count = tally_store_replica_free(store);
  if (needed <= free_count) return 0;
  snprintf(error, error_size, "cluster.nodes: node %u and %u more need replica tables; %u of the "
    "store's %u are free (every node ever a member keeps one, retired ones included)", first,
    needed - 1u, free_count, store->geometry.replica_count);
  return -1;
}

/* Binds each new member's region and allocates its slot's lists. */
static int bind_new(struct tally_cluster *cluster, const struct tally_cluster_config *fresh,
  bool *bound_any, char *error, size_t error_size)
{
  struct tally_store *store = &cluster->appliance->store;
  for (uint32_t i = 0; i < fresh->node_count; i++) {
    uint16_t id = fresh->nodes[i].id;
    if (id == fresh->node_id) continue;
    *bound_any = *bound_any || tally_store_replica_find(store, id) < 0;
    char reason[256];
    int32_t r = tally_store_replica_bind(store, id, reason, sizeof reason);
    if (r < 0) {
      snprintf(error, error_size, "cluster.nodes: node %u: %s", id, reason);
      return -1;
    }
    /* Not active (or it has its lists already): the cluster thread does not touch it. */
    if (tally_cluster_peer_allocate(cluster, &cluster->peers[r]) != 0) {
      snprintf(error, error_size, "cluster.nodes: node %u: out of memory for its lists", id);
      return -1;
    }
  }
  return 0;
}

/* The lcores' list of replica tables, with the new ones: RCU, as every dp_config. */
static int publish_dp(struct tally_appliance *appliance, uint32_t write_quorum, char *error,
  size_t error_size)
{
  struct tally_dp_config *next = malloc(sizeof *next);
  if (next == NULL) {
    snprintf(error, error_size, "cluster: out of memory for the dataplane tables");
    return -1;
  }
  *next = *appliance->dp_config;
  tally_cluster_members_dp(&appliance->store, write_quorum, next);
  next->generation++;
  struct tally_dp_config *old = rcu_xchg_pointer(&appliance->dp_config, next);
  urcu_qsbr_synchronize_rcu(); /* every lcore has passed a quiescent state */
  free(old);
  assert(appliance->dp_config == next);
  return 0;
}

static void sleep_ms(uint32_t ms)
{
  struct timespec pause = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000L };
  nanosleep(&pause, NULL);
}

/* Hands next to the cluster thread; true once it runs it (bounded wait). */
static bool hand_over(struct tally_cluster *cluster, struct tally_cluster_members *next)
{
  struct tally_cluster_members *previous =
    __atomic_exchange_n(&cluster->members_next, next, __ATOMIC_ACQ_REL);
  assert(previous == NULL); /* reloads are one at a time, each waits or is taken later */
  (void)previous;
  for (uint32_t waited = 0; waited < TALLY_CLUSTER_MEMBERS_APPLY_WAIT_MS; waited++) {
    if (__atomic_load_n(&cluster->members_applied, __ATOMIC_ACQUIRE) >= next->generation) {
      return true;
    }
    sleep_ms(1);
  }
  return false;
}

/*
 * The running membership, copied under the lock: a handover that timed out
 * earlier may be applied (and the old membership freed) at any moment.
 */
static uint64_t running_copy(struct tally_cluster *cluster, struct tally_cluster_config *config)
{
  pthread_mutex_lock(&cluster->lock);
  *config = cluster->members->config;
  uint64_t generation = cluster->members->generation;
  pthread_mutex_unlock(&cluster->lock);
  assert(generation >= 1);
  assert(config->enabled);
  return generation;
}

int tally_cluster_members_check(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, char *error, size_t error_size)
{
  static struct tally_cluster_config running; /* the control thread's */
  running_copy(cluster, &running);
  return tally_config_cluster_reload_check(&running, fresh, error, error_size);
}

static int refuse(struct tally_cluster *cluster, struct tally_out *out, const char *error)
{
  __atomic_fetch_add(&cluster->membership_refused, 1, __ATOMIC_RELAXED);
  fprintf(stderr, "tallyd: cluster: reload refused: %s\n", error);
  tally_out_printf(out, "cluster reload refused: %s\n", error);
  return -1;
}

int tally_cluster_members_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, struct tally_out *out)
{
  struct tally_appliance *appliance = cluster->appliance;
  char error[384];
  /* Only the control thread reloads, so members_next is ours to fill. */
  if (__atomic_load_n(&cluster->members_next, __ATOMIC_ACQUIRE) != NULL) {
    return refuse(cluster, out, "the previous membership is not applied yet (cluster thread busy)");
  }
  static struct tally_cluster_config running; /* the control thread's copy */
  uint64_t generation = running_copy(cluster, &running);
  if (tally_config_cluster_reload_check(&running, fresh, error, sizeof error) != 0) {
    return refuse(cluster, out, error);
  }
  if (!changed(&running, fresh)) {
    tally_out_printf(out, "cluster: membership unchanged (generation %" PRIu64 ")\n", generation);
    return 0;
  }
  if (check_regions(&appliance->store, fresh, error, sizeof error) != 0) {
    return refuse(cluster, out, error);
  }
  struct tally_cluster_members *next = calloc(1, sizeof *next);
  bool bound_any = false;
  if (next == NULL) return refuse(cluster, out, "cluster: out of memory for the membership");
  if (bind_new(cluster, fresh, &bound_any, error, sizeof error) != 0 ||
      ((bound_any || fresh->write_quorum != running.write_quorum) &&
       publish_dp(appliance, fresh->write_quorum, error, sizeof error) != 0)) {
    free(next);
    return refuse(cluster, out, error);
  }
  next->generation = generation + 1u;
  next->config = *fresh;
  appliance->config.cluster = *fresh; /* the control thread's copy (the thread has its own) */
  bool applied = hand_over(cluster, next);
  tally_out_printf(out, "reloaded: cluster membership generation %" PRIu64 "%s: %u nodes, "
    "write_quorum %u\n", generation + 1u, applied ? "" : " (handed over; the cluster thread "
    "applies it at its next loop)", fresh->node_count, fresh->write_quorum);
  return 1;
}
