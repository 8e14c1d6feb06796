/*
 * test_cluster_streams.c — the cluster's real stream logic (stream_out.c,
 * stream_in.c, quorum.c, heartbeat.c, restore.c, peer.c, cluster_scan.c)
 * between two or three in-process cluster instances, each on its own real
 * store, connected by a fake network and clock: a backend of the cluster's
 * I/O interface (control/cluster/cluster_io.h) in this file. Time moves
 * only when the test says; every instance is stepped with tally_cluster_tick
 * (no threads), so every run is the same run. What it checks:
 *   - rounds and acks: a node's contribution (more counters than one round
 *     holds) reaches the peer's replica table, and quorum_seq follows;
 *   - resends: rounds lost on the way are resent until acked;
 *   - a gap (a round ahead of what the peer holds) is answered with what it
 *     holds and changes nothing; a peer that lost its state is resynced;
 *   - restore: a node with a new store gets its contribution back from a peer;
 *   - quorum_seq advances only with W - 1 peers' acks;
 *   - read-only without a write quorum, writable again once it returns;
 *   - issue 14, H4: a member's datagram from an address other than the
 *     member's is dropped and counted (a READ_REQUEST from a foreign IP is
 *     not answered: no reflection; a ROUND from another port is ignored);
 *   - issue 14, H4, replays: a replayed old ACK is ignored (no resync), a
 *     message of another session is ignored, a replayed RESTORE_REQUEST or
 *     READ_REQUEST is not served again;
 *   - issue 14, M3: heartbeats of a peer's two incarnations, replayed in
 *     turn after it died, are refused and counted: the peer is seen down and
 *     no replay makes it look restarted (no probe, no link reset); replayed
 *     to a live peer (its old incarnation's and its current one's), refused
 *     and counted, no link reset; a real restart after them still seen;
 *   - issue 14, L3: a producer record whose run lacks its last sequence
 *     (window bit 0) is refused and counted before it reaches a store;
 *   - log mode (cluster_log.c): a peer's list reaches the replica table and
 *     the log queue, and its ACK (what the origin's quorum counts) leaves
 *     only once the fake persister has made the queue durable; the records
 *     hold every value and the held position.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>

#include "cluster.h"
#include "log_ring.h"
#include "wal_cluster.h"
#include "wal_queue.h"
#include "heartbeat_wire.h"
#include "store.h"
#include "clock.h"
#include "store_format.h"
#include "tally/name.h"

#define NODES_MAX 3u
#define INBOX_MAX 8192u
#define PORT_BASE 19000u
#define STEP_NS 1000000ull /* one tick of every node per simulated millisecond */

/* ---- The fake network and clock ---------------------------------------------- */

struct datagram {
  struct sockaddr_in from;
  uint32_t size;
  uint8_t data[TALLY_CLUSTER_DATAGRAM_SIZE_MAX];
};

struct net;

struct port {
  struct net *net;
  uint32_t index;
  struct datagram *inbox;   /* a ring of INBOX_MAX */
  uint32_t head;
  uint32_t count;
};

struct net {
  uint64_t now_ns;
  struct port ports[NODES_MAX];
  bool cut[NODES_MAX][NODES_MAX];         /* [from][to]: every datagram lost */
  uint32_t drop_next[NODES_MAX][NODES_MAX]; /* [from][to]: the next n replication datagrams lost */
  uint64_t dropped;
  /* While a node blocks (restore), the rest of the world runs: */
  void (*idle)(struct net *net, uint64_t limit_ns);
  uint32_t blocked;          /* the blocking node */
};

static struct sockaddr_in address_of(uint32_t index)
{
  return (struct sockaddr_in){ .sin_family = AF_INET,
    .sin_port = htons((uint16_t)(PORT_BASE + index + 1u)), .sin_addr.s_addr = htonl(0x7f000001) };
}

static void fake_send(void *context, const struct sockaddr_in *to, const uint8_t *data,
  size_t size)
{
  struct port *from = context;
  struct net *net = from->net;
  uint32_t index = ntohs(to->sin_port) - PORT_BASE - 1u;
  assert_true(index < NODES_MAX);
  assert_true(size >= 2 && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  bool heartbeat = data[0] == 'T' && data[1] == 'H';
  if (net->cut[from->index][index]) {
    net->dropped++;
    return;
  }
  if (!heartbeat && net->drop_next[from->index][index] > 0) {
    net->drop_next[from->index][index]--;
    net->dropped++;
    return;
  }
  struct port *port = &net->ports[index];
  if (port->inbox == NULL || port->count == INBOX_MAX) return; /* no one there, or full */
  struct datagram *slot = &port->inbox[(port->head + port->count) % INBOX_MAX];
  slot->from = address_of(from->index);
  slot->size = (uint32_t)size;
  memcpy(slot->data, data, size);
  port->count++;
}

static ssize_t fake_receive(void *context, uint8_t *buffer, size_t size, struct sockaddr_in *from)
{
  struct port *port = context;
  if (port->count == 0) return -1;
  const struct datagram *slot = &port->inbox[port->head];
  assert_true(slot->size <= size);
  memcpy(buffer, slot->data, slot->size);
  *from = slot->from;
  port->head = (port->head + 1u) % INBOX_MAX;
  port->count--;
  return (ssize_t)slot->size;
}

static bool fake_wait_readable(void *context, uint64_t limit_ns)
{
  struct port *port = context;
  if (port->count == 0 && port->net->idle != NULL && port->net->blocked == port->index) {
    port->net->idle(port->net, limit_ns);
  }
  return port->count > 0;
}

static uint64_t fake_now_ns(void *context)
{
  const struct port *port = context;
  return port->net->now_ns;
}

static const struct tally_cluster_io_ops fake_ops = {
  .send = fake_send, .receive = fake_receive, .wait_readable = fake_wait_readable,
  .now_ns = fake_now_ns,
};

/* ---- Nodes: a store, one lcore's figures, a cluster instance ------------------- */

struct node {
  bool open;
  struct tally_wal_queue queue; /* log mode only (log_node) */
  char directory[64];
  char path[128];
  struct tally_appliance appliance;
  struct tally_cluster cluster;
};

struct world {
  struct net net;
  uint32_t count;
  uint32_t write_quorum;
  struct node *nodes[NODES_MAX];
};

static struct world *world_of_idle; /* the world the restore's idle hook steps */
static uint32_t log_node = UINT32_MAX; /* the node opened in log mode (cluster_log.h) */

static void config_for(const struct world *world, uint32_t index, struct tally_cluster_config *config)
{
  *config = (struct tally_cluster_config){ .enabled = true, .node_id = (uint16_t)(index + 1u),
    .node_count = world->count, .write_quorum = world->write_quorum,
    .heartbeat_interval_ms = 10, .replication_interval_ms = 1, .suspect_phi = 5, .down_phi = 8 };
  for (uint32_t i = 0; i < world->count; i++) {
    struct sockaddr_in address = address_of(i);
    config->nodes[i] = (struct tally_cluster_node){ .id = (uint16_t)(i + 1u),
      .ipv4 = ntohl(address.sin_addr.s_addr), .port = ntohs(address.sin_port) };
  }
  memset(config->key, 0x5a, sizeof config->key);
}

/*
 * Each node's counters_max: room for several full 8 KiB rounds of short
 * names (3 x ENTRIES_MAX); a test of the statsd share sets 256 first.
 */
static uint32_t counters_max = 4096;
/* The priority/bulk tests' (up to 18 x ENTRIES_MAX statsd-only counters, within their share). */
#define BULK_COUNTERS_MAX 32768u

static void node_open(struct world *world, uint32_t index, bool restore)
{
  struct node *node = calloc(1, sizeof *node);
  assert_non_null(node);
  snprintf(node->directory, sizeof node->directory, "/tmp/tally_streams_test.XXXXXX");
  assert_non_null(mkdtemp(node->directory));
  snprintf(node->path, sizeof node->path, "%s/store.tally", node->directory);
  const struct tally_store_geometry geometry = { .shard_count = 2, .counters_max = counters_max,
    .producers_max = 16, .replica_count = TALLY_REPLICA_REGIONS_MAX };
  char error[256] = "";
  struct tally_appliance *appliance = &node->appliance;
  assert_int_equal(tally_store_open(&appliance->store, node->path, &geometry,
    TALLY_PERSIST_GROUP_COMMIT, error, sizeof error), 0);
  appliance->lcore_count = 1;
  appliance->lcores = aligned_alloc(64, sizeof(struct tally_lcore));
  assert_non_null(appliance->lcores);
  memset(appliance->lcores, 0, sizeof(struct tally_lcore));
  appliance->lcores[0].running = true;
  if (index == log_node) { /* log mode: the persister's queue, the lcore's ring (scan gate) */
    assert_int_equal(tally_wal_queue_open(&node->queue), 0);
    appliance->cluster_log_queue = &node->queue;
    appliance->lcores[0].log_ring = calloc(1, sizeof(struct tally_log_ring));
    assert_non_null(appliance->lcores[0].log_ring);
  }
  config_for(world, index, &appliance->config.cluster);
  appliance->config.statsd_counters_percent = TALLY_STATSD_COUNTERS_PERCENT_DEFAULT; /* 192 */
  struct port *port = &world->net.ports[index];
  *port = (struct port){ .net = &world->net, .index = index,
    .inbox = calloc(INBOX_MAX, sizeof(struct datagram)) };
  assert_non_null(port->inbox);
  world->nodes[index] = node;
  struct tally_cluster_io io = { .ops = &fake_ops, .context = port };
  world->net.blocked = index;
  int rc = tally_cluster_open_io(&node->cluster, appliance, io, restore, error, sizeof error);
  world->net.blocked = UINT32_MAX;
  if (rc != 0) fprintf(stderr, "open node %u: %s\n", index + 1u, error);
  assert_int_equal(rc, 0);
  node->open = true;
}

static void node_close(struct world *world, uint32_t index)
{
  struct node *node = world->nodes[index];
  if (node == NULL) return;
  if (node->open) tally_cluster_close(&node->cluster);
  tally_store_close(&node->appliance.store);
  if (node->appliance.cluster_log_queue != NULL) tally_wal_queue_close(&node->queue);
  free(node->appliance.lcores[0].log_ring);
  free(node->appliance.lcores);
  unlink(node->path);
  rmdir(node->directory);
  free(node);
  world->nodes[index] = NULL;
  free(world->net.ports[index].inbox);
  world->net.ports[index] = (struct port){ 0 };
}

/* Every open node but the blocked one, one tick each per simulated millisecond. */
static void run_ms(struct world *world, uint32_t ms)
{
  for (uint32_t t = 0; t < ms; t++) {
    world->net.now_ns += STEP_NS;
    for (uint32_t i = 0; i < world->count; i++) {
      struct node *node = world->nodes[i];
      if (node != NULL && node->open && world->net.blocked != i) {
        tally_cluster_tick(&node->cluster, 0);
      }
    }
  }
}

static void idle_run(struct net *net, uint64_t limit_ns)
{
  (void)net;
  uint32_t ms = (uint32_t)(limit_ns / STEP_NS);
  run_ms(world_of_idle, ms == 0 ? 1u : ms);
}

static struct world *world_new(uint32_t count, uint32_t write_quorum)
{
  struct world *world = calloc(1, sizeof *world);
  assert_non_null(world);
  world->count = count;
  world->write_quorum = write_quorum;
  world->net.now_ns = 1000000000ull;
  world->net.blocked = UINT32_MAX;
  for (uint32_t i = 0; i < count; i++) node_open(world, i, false);
  run_ms(world, 300); /* heartbeats, probes, first scans: every link synced */
  return world;
}

static void world_free(struct world *world)
{
  for (uint32_t i = 0; i < world->count; i++) node_close(world, i);
  free(world);
}

static struct tally_cluster *cluster_of(struct world *world, uint32_t index)
{
  return &world->nodes[index]->cluster;
}

/*
 * Counters "c<k>" = value + k on node index's lcore shard; one reliable batch
 * more applied. As a reliable batch does, it takes the slots over (reliable
 * class) before it publishes applied_seq: the counters a reliable ack waits for.
 */
static void write_counters(struct world *world, uint32_t index, uint32_t count, int64_t value)
{
  struct tally_appliance *appliance = &world->nodes[index]->appliance;
  struct tally_shard *shard = &appliance->store.shards[0];
  for (uint32_t k = 0; k < count; k++) {
    char name[16];
    int length = snprintf(name, sizeof name, "c%u", k);
    assert_int_equal(tally_shard_set_class(shard, name, (uint32_t)length,
      tally_store_name_hash(&appliance->store, name, (size_t)length), value + k,
      TALLY_CLASS_RELIABLE, shard->counters_max), TALLY_OK);
  }
  __atomic_fetch_add(&appliance->lcores[0].stats.applied_seq, 1, __ATOMIC_RELEASE);
}

/* What node `holder` holds of origin's counter (format, k); -1 if it holds no such counter. */
static int64_t replica_named(struct world *world, uint32_t holder, uint32_t origin,
  const char *format, uint32_t k)
{
  const struct tally_store *store = &world->nodes[holder]->appliance.store;
  int32_t r = tally_store_replica_find(store, (uint16_t)(origin + 1u));
  assert_true(r >= 0);
  char name[16];
  int length = snprintf(name, sizeof name, format, k);
  int64_t slot = tally_shard_find(&store->replicas[r], name, (uint32_t)length,
    tally_store_name_hash(store, name, (size_t)length));
  return slot < 0 ? -1 : tally_shard_slot_value(&store->replicas[r], (uint32_t)slot);
}

/* ... of origin's counter "c<k>" (write_counters'). */
static int64_t replica_value(struct world *world, uint32_t holder, uint32_t origin, uint32_t k)
{
  return replica_named(world, holder, origin, "c%u", k);
}

static const struct tally_cluster_peer *peer_of(struct world *world, uint32_t index,
  uint32_t peer_index)
{
  const struct tally_cluster *cluster = cluster_of(world, index);
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    if (tally_cluster_peer_active(&cluster->peers[i]) && cluster->peers[i].id == peer_index + 1u) {
      return &cluster->peers[i];
    }
  }
  fail_msg("node %u has no peer %u", index + 1u, peer_index + 1u);
  return NULL;
}

static uint64_t quorum_seq(struct world *world, uint32_t index)
{
  return __atomic_load_n(&world->nodes[index]->appliance.lcores[0].quorum_seq, __ATOMIC_ACQUIRE);
}

static void cut_node(struct world *world, uint32_t index, bool cut)
{
  for (uint32_t i = 0; i < NODES_MAX; i++) {
    world->net.cut[index][i] = cut;
    world->net.cut[i][index] = cut;
  }
}

/* ---- Tests ------------------------------------------------------------------------ */

/* More counters than a round holds: several rounds, each acked, the list confirmed. */
static void test_rounds_and_acks(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  assert_int_equal(quorum_seq(world, 0), 0);
  const uint32_t count = 3u * TALLY_REPLICATION_ENTRIES_MAX + 5u;
  write_counters(world, 0, count, 100);
  run_ms(world, 200);
  for (uint32_t k = 0; k < count; k++) assert_int_equal(replica_value(world, 1, 0, k), 100 + k);
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->rounds_acked >= 4u);            /* at least ceil(count / per round) */
  assert_int_equal(peer->rounds_acked, peer->rounds_sent);
  assert_int_equal(peer->resends, 0);
  assert_int_equal(peer->acked_seq, tally_shard_held_seq(
    &world->nodes[1]->appliance.store.replicas[tally_store_replica_find(
      &world->nodes[1]->appliance.store, 1)]));
  assert_int_equal(quorum_seq(world, 0), 1);        /* the one batch is held by W - 1 = 1 peer */
  assert_false(cluster_of(world, 0)->read_only);
  /* A change later: only what changed goes (one round). */
  uint64_t sent = peer->rounds_sent;
  write_counters(world, 0, 1, 7);
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 7);
  assert_int_equal(peer->rounds_sent, sent + 1u);
  assert_int_equal(quorum_seq(world, 0), 2);
  world_free(world);
}

/*
 * Dirty slots (issue 12): the first scan reads every slot; after it, a
 * change to one counter costs the scans only that slot (read when taken and
 * once more by the next scan), not a full scan, and still reaches the peer.
 */
static void test_scan_reads_only_dirty_slots(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  struct tally_cluster *cluster = cluster_of(world, 0);
  write_counters(world, 0, 300, 1);
  run_ms(world, 200);
  for (uint32_t k = 0; k < 300; k++) assert_int_equal(replica_value(world, 1, 0, k), 1 + k);
  uint64_t full = cluster->full_scans;
  uint64_t read = cluster->scan_slots_read;
  assert_int_equal(full, 1u); /* the first scan only */
  const struct tally_store *store = &world->nodes[0]->appliance.store;
  assert_true(read >= store->shards[0].slots_count + store->shards[1].slots_count);
  write_counters(world, 0, 1, 7); /* c0: 1 -> 7 */
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 7);
  assert_int_equal(cluster->full_scans, full);
  assert_int_equal(cluster->scan_slots_read - read, 2u); /* taken, then read once more */
  world_free(world);
}

/*
 * The snapshot's index refusing a counter (here: swapped for one of 16
 * entries while node 1 holds 24 counters) is counted and fails the scan
 * closed: no list goes out, so the batch is never held by the peer and never
 * acked (quorum_seq stays 0), and every tick retries. Failed before: the
 * refused counters were skipped silently, the peer confirmed the short list
 * and the batch was acked with 8 counters never replicated.
 */
static void test_snapshot_insert_failure_surfaced(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  struct tally_cluster *cluster = cluster_of(world, 0);
  struct rte_hash *original = cluster->index;
  struct rte_hash_parameters parameters = { .name = "tally_snapshot_small", .entries = 16,
    .key_len = TALLY_NAME_LEN_MAX + 1u, .hash_func = rte_hash_crc,
    .socket_id = (int)rte_socket_id() };
  cluster->index = rte_hash_create(&parameters);
  assert_non_null(cluster->index);
  write_counters(world, 0, 24, 100);
  run_ms(world, 200);
  uint64_t failed = __atomic_load_n(&cluster->snapshot_insert_failed, __ATOMIC_RELAXED);
  assert_true(failed >= 2u); /* at least one counter per scan, several scans */
  assert_int_equal(quorum_seq(world, 0), 0); /* never acked on a list that lacks counters */
  for (uint32_t k = 0; k < 24; k++) assert_int_equal(replica_value(world, 1, 0, k), -1);
  run_ms(world, 50);
  assert_true(__atomic_load_n(&cluster->snapshot_insert_failed, __ATOMIC_RELAXED) > failed);
  rte_hash_free(cluster->index);
  cluster->index = original;
  world_free(world);
}

/*
 * A counter whose node total (sum over the shards) leaves int64 is
 * replicated saturated and counted. Failed before: own_total() failed and
 * the counter silently dropped out of replication while acks went on.
 */
static void test_total_beyond_int64_saturates(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  struct tally_appliance *appliance = &world->nodes[0]->appliance;
  struct tally_store *store = &appliance->store;
  uint32_t hash = tally_store_name_hash(store, "c0", 2);
  assert_int_equal(tally_shard_set(&store->shards[0], "c0", 2, hash, INT64_MAX), TALLY_OK);
  assert_int_equal(tally_shard_set(&store->shards[1], "c0", 2, hash, 5), TALLY_OK);
  hash = tally_store_name_hash(store, "c1", 2);
  assert_int_equal(tally_shard_set(&store->shards[0], "c1", 2, hash, INT64_MIN), TALLY_OK);
  assert_int_equal(tally_shard_set(&store->shards[1], "c1", 2, hash, -1), TALLY_OK);
  __atomic_fetch_add(&appliance->lcores[0].stats.applied_seq, 1, __ATOMIC_RELEASE);
  run_ms(world, 200);
  assert_int_equal(replica_value(world, 1, 0, 0), INT64_MAX);
  assert_int_equal(replica_value(world, 1, 0, 1), INT64_MIN);
  assert_true(__atomic_load_n(&cluster_of(world, 0)->totals_saturated, __ATOMIC_RELAXED) >= 2u);
  assert_int_equal(quorum_seq(world, 0), 1);
  world_free(world);
}

/* Whether the last value item of "c<k>" persist() saw was a reliable one (C1). */
static bool logged_reliable[3u * TALLY_REPLICATION_ENTRIES_MAX];

/*
 * The fake persister of node index: takes every published payload (checked),
 * counts its value items of "c<k>" from origin (and their class) and its held
 * items, then makes them durable.
 */
static void persist(struct world *world, uint32_t index, uint16_t origin, int64_t *value,
  uint32_t count, uint64_t *held)
{
  struct tally_wal_queue *queue = &world->nodes[index]->queue;
  uint64_t ready = tally_wal_queue_ready(queue);
  for (uint64_t i = 0; i < ready; i++) {
    const struct tally_wal_queue_slot *slot = tally_wal_queue_peek(queue, i);
    assert_int_equal(tally_wal_cluster_check(slot->payload, slot->size), TALLY_WAL_CLUSTER_OK);
    size_t offset = 0;
    struct tally_wal_cluster_item item;
    while (tally_wal_cluster_next(slot->payload, slot->size, &offset, &item)) {
      if (item.origin != origin) continue;
      if (item.kind == TALLY_WAL_CLUSTER_HELD) *held = item.seq;
      unsigned k;
      if (tally_wal_cluster_is_value(item.kind) && item.name_len < 16 && item.name[0] == 'c' &&
          sscanf(item.name + 1, "%u", &k) == 1 && k < count) {
        value[k] = item.value;
        logged_reliable[k] = item.kind == TALLY_WAL_CLUSTER_RELIABLE_VALUE;
      }
    }
  }
  tally_wal_queue_pop(queue, ready);
  tally_wal_queue_set_durable(queue);
}

/* Log mode: the replica table changes at once, the ACK waits for the log. */
static void test_log_mode_ack_waits_for_the_log(void **state)
{
  (void)state;
  log_node = 1;
  struct world *world = world_new(2, 2);
  log_node = UINT32_MAX;
  static int64_t logged[3u * TALLY_REPLICATION_ENTRIES_MAX];
  const uint32_t count = 3u * TALLY_REPLICATION_ENTRIES_MAX;
  for (uint32_t k = 0; k < count; k++) logged[k] = -1;
  uint64_t held = 0;
  for (uint32_t t = 0; t < 200; t++) { /* the first lists, persisted as they come */
    run_ms(world, 1);
    persist(world, 1, 1, logged, count, &held);
  }
  assert_int_equal(quorum_seq(world, 0), 0);
  /* c0..c9 reliable-owned: their values go to the log as reliable (a replay keeps the class);
   * the others statsd-only (write_counters would take them all over as reliable). */
  struct tally_shard *shard = &world->nodes[0]->appliance.store.shards[0];
  for (uint32_t k = 0; k < count; k++) {
    char name[16];
    int length = snprintf(name, sizeof name, "c%u", k);
    assert_int_equal(tally_shard_set_class(shard, name, (uint32_t)length,
      tally_shard_name_hash(shard, name, (size_t)length), 500 + k,
      k < 10 ? TALLY_CLASS_RELIABLE : TALLY_CLASS_STATSD, shard->counters_max), TALLY_OK);
  }
  __atomic_fetch_add(&world->nodes[0]->appliance.lcores[0].stats.applied_seq, 1, __ATOMIC_RELEASE);
  run_ms(world, 300); /* nothing persisted: the priority part lands, its LAST's ACK does not
                       * leave (so the statsd-only bulk part, after it, has not started) */
  for (uint32_t k = 0; k < 10; k++) assert_int_equal(replica_value(world, 1, 0, k), 500 + k);
  assert_int_equal(quorum_seq(world, 0), 0);
  const struct tally_cluster_peer *receiver = peer_of(world, 1, 0);
  assert_true(receiver->ack_deferred != 0);
  assert_true(cluster_of(world, 1)->log.acks_deferred >= 1u);
  assert_true(tally_wal_queue_ready(&world->nodes[1]->queue) >= 1u);
  for (uint32_t t = 0; t < 300; t++) { /* durable: the ACK goes, the quorum counts it */
    persist(world, 1, 1, logged, count, &held);
    run_ms(world, 1);
  }
  assert_int_equal(quorum_seq(world, 0), 1);
  assert_int_equal(receiver->ack_deferred, 0);
  for (uint32_t k = 0; k < count; k++) assert_int_equal(replica_value(world, 1, 0, k), 500 + k);
  for (uint32_t k = 0; k < count; k++) assert_int_equal(logged[k], 500 + k);
  for (uint32_t k = 0; k < count; k++) assert_int_equal(logged_reliable[k], k < 10);
  const struct tally_store *store = &world->nodes[1]->appliance.store;
  assert_int_equal(held, tally_shard_held_seq(&store->replicas[tally_store_replica_find(store, 1)]));
  world_free(world);
}

/* Lost rounds are resent after the timeout, and the list completes. */
static void test_resend_after_loss(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  world->net.drop_next[0][1] = 3;
  write_counters(world, 0, 2u * TALLY_REPLICATION_ENTRIES_MAX, 40);
  run_ms(world, 20);
  assert_int_equal(replica_value(world, 1, 0, 0), -1); /* not there yet: lost */
  assert_int_equal(quorum_seq(world, 0), 0);
  run_ms(world, 2000);
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_int_equal(world->net.dropped, 3);
  assert_true(peer->resends >= 3u);
  for (uint32_t k = 0; k < 2u * TALLY_REPLICATION_ENTRIES_MAX; k++) {
    assert_int_equal(replica_value(world, 1, 0, k), 40 + k);
  }
  assert_int_equal(quorum_seq(world, 0), 1);
  world_free(world);
}

static void set_named(struct tally_shard *shard, const char *format, uint32_t k, int64_t value,
  uint8_t owner_class)
{
  char name[16];
  int length = snprintf(name, sizeof name, format, k);
  assert_int_equal(tally_shard_set_class(shard, name, (uint32_t)length,
    tally_shard_name_hash(shard, name, (size_t)length), value, owner_class, shard->counters_max), TALLY_OK);
}

/* The class a node's replica of origin holds for name (format, k); asserts it holds it. */
static uint8_t held_class(struct world *world, uint32_t holder, uint32_t origin,
  const char *format, uint32_t k)
{
  const struct tally_store *store = &world->nodes[holder]->appliance.store;
  int32_t r = tally_store_replica_find(store, (uint16_t)(origin + 1u));
  assert_true(r >= 0);
  char name[16];
  int length = snprintf(name, sizeof name, format, k);
  int64_t slot = tally_shard_find(&store->replicas[r], name, (uint32_t)length,
    tally_shard_name_hash(&store->replicas[r], name, (size_t)length));
  assert_true(slot >= 0);
  return tally_shard_slot_class(&store->replicas[r], (uint32_t)slot);
}

/* ---- Priority and bulk parts (issue 12, item 1) ----------------------------------- */

/* count statsd-only counters "s<k>" = value + k on node index's lcore shard (no batch). */
static void write_statsd(struct world *world, uint32_t index, uint32_t count, int64_t value)
{
  struct tally_shard *shard = &world->nodes[index]->appliance.store.shards[0];
  for (uint32_t k = 0; k < count; k++) set_named(shard, "s%u", k, value + k, TALLY_CLASS_STATSD);
  __atomic_fetch_add(&world->nodes[index]->appliance.lcores[0].stats.statsd_increments, count,
    __ATOMIC_RELAXED); /* what makes the next scan read the values */
}

/* What node holder's replica of origin holds of "s<k>" (-1: nothing). */
static int64_t replica_statsd(struct world *world, uint32_t holder, uint32_t origin, uint32_t k)
{
  return replica_named(world, holder, origin, "s%u", k);
}

/*
 * Steps the world a millisecond at a time (at most ms) until node 0's
 * quorum_seq reaches seq; at every step, the guarantee: while quorum_seq
 * covers a batch, the peer's replica TABLE (not its stage) holds the values
 * of every reliable counter as that batch left them ("c<k>" = value + k).
 * Returns the milliseconds it took.
 */
static uint32_t run_until_quorum(struct world *world, uint64_t seq, uint32_t count,
  int64_t value, uint32_t ms)
{
  for (uint32_t t = 1; t <= ms; t++) {
    run_ms(world, 1);
    if (quorum_seq(world, 0) < seq) continue;
    for (uint32_t k = 0; k < count; k++) assert_int_equal(replica_value(world, 1, 0, k), value + k);
    return t;
  }
  fail_msg("quorum_seq did not reach %lu in %u ms", (unsigned long)seq, ms);
  return ms;
}

/*
 * The priority part goes first and its ack moves quorum_seq: a reliable
 * batch is acked while most statsd-only counters are still to come, and they
 * all come after it. Before, the ack waited for every counter of the list.
 */
static void test_priority_part_acked_before_bulk(void **state)
{
  (void)state;
  counters_max = BULK_COUNTERS_MAX;
  struct world *world = world_new(2, 2);
  const uint32_t statsd = 16u * TALLY_REPLICATION_ENTRIES_MAX; /* 16 bulk rounds */
  write_statsd(world, 0, statsd, 1000);
  write_counters(world, 0, 5, 10); /* one reliable batch, 5 counters */
  uint32_t took = run_until_quorum(world, 1, 5, 10, 100);
  uint32_t held = 0;
  for (uint32_t k = 0; k < statsd; k++) held += replica_statsd(world, 1, 0, k) >= 0;
  assert_true(held < statsd / 2u); /* acked with most of the bulk still to go */
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->pending_valid && peer->list_confirmed);
  assert_true(took < 16u);
  run_ms(world, 300);
  for (uint32_t k = 0; k < statsd; k++) assert_int_equal(replica_statsd(world, 1, 0, k), 1000 + k);
  assert_false(peer->pending_valid);
  assert_int_equal(peer->unsealed_rounds, 0);
  world_free(world);
  counters_max = 4096;
}

/*
 * A newer scan's priority part does not wait for an older bulk part to end:
 * the bulk is replaced (what it had not sent goes in the new list, from where
 * it stopped), the new batch is acked within a few rounds, and every statsd
 * counter still arrives at its newest value.
 */
static void test_new_priority_part_replaces_bulk(void **state)
{
  (void)state;
  counters_max = BULK_COUNTERS_MAX;
  struct world *world = world_new(2, 2);
  const uint32_t statsd = 18u * TALLY_REPLICATION_ENTRIES_MAX;
  write_statsd(world, 0, statsd, 1);
  run_ms(world, 8); /* the bulk part is under way (after the next scan's dirty-slot recheck
                      * replaced the first list's bulk and sealed its one staged round) */
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->pending_valid && peer->bulk_pending_next > 0);
  assert_true(peer->bulk_pending_next < peer->bulk_pending_count);
  uint64_t replaced = cluster_of(world, 0)->bulk_replaced;
  write_counters(world, 0, 3, 50);
  run_until_quorum(world, 1, 3, 50, 10); /* not after the 18 rounds of bulk */
  assert_true(cluster_of(world, 0)->bulk_replaced > replaced);
  write_statsd(world, 0, statsd, 2); /* and statsd moves on meanwhile */
  write_counters(world, 0, 3, 60);
  run_until_quorum(world, 2, 3, 60, 10);
  run_ms(world, 300);
  for (uint32_t k = 0; k < statsd; k++) assert_int_equal(replica_statsd(world, 1, 0, k), 2 + k);
  assert_false(peer->pending_valid);
  world_free(world);
  counters_max = 4096;
}

/*
 * The seal: a batch that changed no value and no record (applied_seq moved
 * alone) while bulk rounds were acked but not committed (staged at the peer,
 * no LAST yet). The new list has nothing of priority; it sends one value
 * again as its priority part, whose LAST commits what was staged, and only
 * that ack confirms: not at once (the table lacks the staged rounds), not
 * after the whole bulk.
 */
static void test_seal_commits_staged_rounds_first(void **state)
{
  (void)state;
  counters_max = BULK_COUNTERS_MAX;
  struct world *world = world_new(2, 2);
  const uint32_t statsd = 18u * TALLY_REPLICATION_ENTRIES_MAX;
  write_statsd(world, 0, statsd, 1);
  run_ms(world, 8); /* bulk rounds acked, staged at the peer, not committed (past the
                      * dirty-slot recheck's list, whose seal committed the first round) */
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->unsealed_rounds > 0);
  __atomic_fetch_add(&world->nodes[0]->appliance.lcores[0].stats.applied_seq, 1,
    __ATOMIC_RELEASE);
  uint32_t t = 0;
  for (; t < 40 && quorum_seq(world, 0) < 1; t++) {
    run_ms(world, 1);
    if (quorum_seq(world, 0) >= 1) assert_int_equal(peer->unsealed_rounds, 0);
  }
  assert_int_equal(quorum_seq(world, 0), 1);
  assert_true(t < 10u); /* not after the 18 rounds of bulk */
  assert_true(peer->pending_valid); /* the bulk goes on */
  run_ms(world, 300);
  for (uint32_t k = 0; k < statsd; k++) assert_int_equal(replica_statsd(world, 1, 0, k), 1 + k);
  world_free(world);
  counters_max = 4096;
}

/*
 * A counter statsd created and a reliable batch then wrote (the batch takes
 * its slot over) is a priority counter from then on: the ack of that batch
 * waits for its value, even while an older value of it is in a bulk part,
 * staged at the peer or still to be sent. And statsd writing a reliable
 * counter (ingest.statsd_writes_reliable) keeps it a priority counter.
 */
static void test_statsd_counter_written_by_a_batch_is_priority(void **state)
{
  (void)state;
  counters_max = BULK_COUNTERS_MAX;
  struct world *world = world_new(2, 2);
  const uint32_t statsd = 12u * TALLY_REPLICATION_ENTRIES_MAX;
  struct tally_shard *shard = &world->nodes[0]->appliance.store.shards[0];
  write_statsd(world, 0, statsd, 100);
  run_ms(world, 3); /* "s0".. in flight or staged as statsd's, the rest still to come */
  /* A batch writes "s0" and the last statsd counter: both taken over. */
  set_named(shard, "s%u", 0, 7000, TALLY_CLASS_RELIABLE);
  set_named(shard, "s%u", statsd - 1u, 7001, TALLY_CLASS_RELIABLE);
  __atomic_fetch_add(&world->nodes[0]->appliance.lcores[0].stats.applied_seq, 1,
    __ATOMIC_RELEASE);
  for (uint32_t t = 0; t < 50 && quorum_seq(world, 0) < 1; t++) run_ms(world, 1);
  assert_int_equal(quorum_seq(world, 0), 1);
  assert_int_equal(replica_statsd(world, 1, 0, 0), 7000);          /* in the table when acked */
  assert_int_equal(replica_statsd(world, 1, 0, statsd - 1u), 7001);
  assert_int_equal(held_class(world, 1, 0, "s%u", 0), TALLY_CLASS_RELIABLE);
  run_ms(world, 300);
  /* statsd now writes the reliable "s0" (writes_reliable): the next batch waits for it too. */
  write_statsd(world, 0, statsd - 1u, 200); /* "s0" = 200 (all but the last: it stays 7001) */
  write_counters(world, 0, 2, 5);
  for (uint32_t t = 0; t < 50 && quorum_seq(world, 0) < 2; t++) run_ms(world, 1);
  assert_int_equal(quorum_seq(world, 0), 2);
  assert_int_equal(replica_value(world, 1, 0, 1), 6);
  assert_int_equal(replica_statsd(world, 1, 0, 0), 200); /* in the table with the batch's ack */
  assert_int_equal(replica_statsd(world, 1, 0, statsd - 1u), 7001);
  run_ms(world, 300);
  for (uint32_t k = 1; k + 1u < statsd; k++) {
    assert_int_equal(replica_statsd(world, 1, 0, k), 200 + k);
  }
  world_free(world);
  counters_max = 4096;
}

/* A round ahead of what the peer holds: answered with what it holds, nothing applied. */
/* A message as node from's process would send it to node to's: their sessions. */
static void sessions(struct world *world, uint32_t from, uint32_t to,
  struct tally_replication_message *message)
{
  message->session = cluster_of(world, from)->session;
  message->peer_session = cluster_of(world, to)->session;
  assert_true(message->session != 0 && message->peer_session != 0);
}

static void test_gap_is_answered_with_held(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  write_counters(world, 0, 1, 5);
  run_ms(world, 100);
  const struct tally_store *store = &world->nodes[1]->appliance.store;
  const struct tally_shard *replica = &store->replicas[tally_store_replica_find(store, 1)];
  uint64_t held = tally_shard_held_seq(replica);
  assert_true(held >= 1);
  /* Node 1 "sends" a round three ahead, out of order. */
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND, .origin = 1,
    .sender = 1, .seq = held + 3u, .scan = 1, .count = 1, .flags = TALLY_REPLICATION_FLAG_LAST,
    .entries = { { .name = "c0", .name_len = 2, .value = 999 } } };
  sessions(world, 0, 1, &round);
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
  size_t size = tally_replication_encode(&round, world->nodes[0]->appliance.config.cluster.key,
    buffer, sizeof buffer);
  assert_true(size > 0);
  struct port *from = &world->net.ports[0];
  struct sockaddr_in to = address_of(1);
  fake_send(from, &to, buffer, size);
  world->net.ports[0].count = 0; /* node 1's inbox: only the answer from here on */
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(cluster_of(world, 1), 0);
  assert_int_equal(tally_shard_held_seq(replica), held);
  assert_int_equal(replica_value(world, 1, 0, 0), 5);
  bool acked_held = false;
  uint8_t data[TALLY_REPLICATION_SIZE_MAX + 1];
  struct sockaddr_in source;
  ssize_t got;
  while ((got = fake_receive(&world->net.ports[0], data, sizeof data, &source)) >= 0) {
    struct tally_replication_message answer;
    if (tally_replication_decode(data, (size_t)got, world->nodes[0]->appliance.config.cluster.key,
          &answer) != TALLY_REPLICATION_OK) {
      continue; /* a heartbeat */
    }
    if (answer.type == TALLY_REPLICATION_ACK) acked_held = acked_held || answer.seq == held;
  }
  assert_true(acked_held);
  /* The stream goes on unharmed. */
  write_counters(world, 0, 1, 6);
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 6);
  world_free(world);
}

/* Puts a datagram signed with the cluster key into node to's inbox, as if from source. */
static void inject_from(struct world *world, uint32_t to, struct sockaddr_in source,
  const struct tally_replication_message *message)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
  size_t size = tally_replication_encode(message, world->nodes[0]->appliance.config.cluster.key,
    buffer, sizeof buffer);
  assert_true(size > 0);
  struct port *port = &world->net.ports[to];
  assert_true(port->count < INBOX_MAX);
  struct datagram *slot = &port->inbox[(port->head + port->count) % INBOX_MAX];
  slot->from = source;
  slot->size = (uint32_t)size;
  memcpy(slot->data, buffer, size);
  port->count++;
}

/* Replication datagrams of a kind in node index's inbox (taken out). */
static uint32_t take_of_type(struct world *world, uint32_t index, unsigned type)
{
  uint32_t found = 0;
  uint8_t data[TALLY_REPLICATION_SIZE_MAX + 1];
  struct sockaddr_in source;
  ssize_t got;
  while ((got = fake_receive(&world->net.ports[index], data, sizeof data, &source)) >= 0) {
    struct tally_replication_message message;
    if (tally_replication_decode(data, (size_t)got, world->nodes[0]->appliance.config.cluster.key,
          &message) == TALLY_REPLICATION_OK && message.type == type) {
      found++;
    }
  }
  return found;
}

/* Before: the UDP source was never compared, and a READ_REPLY went to whoever asked. */
static void test_wrong_source_dropped(void **state)
{
  (void)state;
  struct world *world = world_new(3, 2);
  write_counters(world, 0, 1, 5);
  run_ms(world, 100);
  struct tally_cluster *node2 = cluster_of(world, 1);
  uint64_t before = node2->wrong_source;
  /* A quorum read in node 1's name from a foreign IP, whose port is node 3's. */
  struct sockaddr_in foreign = address_of(2);
  foreign.sin_addr.s_addr = htonl(0x7f000002);
  struct tally_replication_message read = { .type = TALLY_REPLICATION_READ_REQUEST,
    .origin = 1, .sender = 1, .seq = 77, .count = 1,
    .entries = { { .name = "c0", .name_len = 2, .value = 0 } } };
  sessions(world, 0, 1, &read);
  read.scan = tally_clock_unix_ns() / 1000u; /* the request's stamp */
  world->net.ports[2].count = 0; /* node 3's inbox: only what comes now */
  inject_from(world, 1, foreign, &read);
  /* A round in node 1's name from node 3's address (its port, not node 1's). */
  const struct tally_store *store = &world->nodes[1]->appliance.store;
  const struct tally_shard *replica = &store->replicas[tally_store_replica_find(store, 1)];
  uint64_t held = tally_shard_held_seq(replica);
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND, .origin = 1,
    .sender = 1, .seq = held + 1u, .scan = 1, .count = 1, .flags = TALLY_REPLICATION_FLAG_LAST,
    .entries = { { .name = "c0", .name_len = 2, .value = 999 } } };
  sessions(world, 0, 1, &round);
  inject_from(world, 1, address_of(2), &round);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(node2->wrong_source - before, 2);
  assert_int_equal(take_of_type(world, 2, TALLY_REPLICATION_READ_REPLY), 0);
  assert_int_equal(replica_value(world, 1, 0, 0), 5); /* the forged round changed nothing */
  /* From node 1's IP (any port): a quorum read is answered there. */
  struct sockaddr_in own_ip = address_of(2); /* 127.0.0.1, node 3's port */
  inject_from(world, 1, own_ip, &read);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(take_of_type(world, 2, TALLY_REPLICATION_READ_REPLY), 3); /* own + 2 replicas */
  write_counters(world, 0, 1, 6);
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 6);
  world_free(world);
}

/* Before: a record with window bit 0 clear passed decode and hit an assert in the store. */
static void test_invalid_producer_record_refused(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  write_counters(world, 0, 1, 5);
  run_ms(world, 100);
  struct tally_cluster *node2 = cluster_of(world, 1);
  const struct tally_store *store = &world->nodes[1]->appliance.store;
  const struct tally_shard *replica = &store->replicas[tally_store_replica_find(store, 1)];
  uint64_t held = tally_shard_held_seq(replica);
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND, .origin = 1,
    .sender = 1, .seq = held + 1u, .scan = 1, .count = 1,
    .flags = TALLY_REPLICATION_FLAG_PRODUCERS | TALLY_REPLICATION_FLAG_LAST };
  round.producers[0].producer = 7;
  round.producers[0].runs[0].head_last = 70;
  round.producers[0].runs[0].last_seq = 10;
  round.producers[0].runs[0].window = 2; /* bit 0 clear: no dedup state looks like this */
  sessions(world, 0, 1, &round);
  inject_from(world, 1, address_of(0), &round);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(node2->records_invalid, 1);
  assert_int_equal(tally_shard_held_seq(replica), held);
  write_counters(world, 0, 1, 6); /* the stream goes on */
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 6);
  world_free(world);
}

/* Node 1's next write reaches node 2's table: the stream goes on unharmed. */
static void stream_goes_on(struct world *world)
{
  write_counters(world, 0, 1, 6);
  run_ms(world, 100);
  assert_int_equal(replica_value(world, 1, 0, 0), 6);
}

/* Node 2's replica table of node 1. */
static const struct tally_shard *replica_of_node1(struct world *world)
{
  const struct tally_store *store = &world->nodes[1]->appliance.store;
  int32_t r = tally_store_replica_find(store, 1);
  assert_true(r >= 0);
  return &store->replicas[r];
}

/* A round of node 1's to node 2 (this session's) that no scan made: c0 = 999. */
static struct tally_replication_message forged_round(struct world *world, uint64_t seq)
{
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND, .origin = 1,
    .sender = 1, .seq = seq, .scan = 1, .count = 1, .flags = TALLY_REPLICATION_FLAG_LAST,
    .entries = { { .name = "c0", .name_len = 2, .value = 999 } } };
  sessions(world, 0, 1, &round);
  return round;
}

/*
 * Issue 14, H4: a replayed old ACK (authentic, this session's, from the
 * peer's own address) is ignored and counted; before, an ack below the
 * acked position reset the stream (a full resync), and one every ~0.5 s
 * froze the quorum. Quorum acks go on.
 */
static void test_old_ack_ignored(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  const uint32_t count = 3u * TALLY_REPLICATION_ENTRIES_MAX;
  write_counters(world, 0, count, 5);
  run_ms(world, 200);
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->synced && peer->acked_seq >= 3);
  uint64_t resyncs = peer->resyncs;
  uint64_t acked = peer->acked_seq;
  struct tally_replication_message old = { .type = TALLY_REPLICATION_ACK, .origin = 1,
    .sender = 2, .seq = acked - 2u, .scan = 1 };
  sessions(world, 1, 0, &old);
  for (uint32_t i = 0; i < 4; i++) inject_from(world, 0, address_of(1), &old);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(cluster_of(world, 0), 0);
  assert_int_equal(peer->resyncs, resyncs);
  assert_true(peer->acked_seq == acked);
  assert_int_equal(cluster_of(world, 0)->acks_stale, 4);
  write_counters(world, 0, count, 9); /* the stream and the quorum go on */
  run_ms(world, 200);
  assert_int_equal(peer->resyncs, resyncs);
  assert_true(peer->acked_seq > acked);
  assert_int_equal(replica_value(world, 1, 0, count - 1u), 9 + count - 1u);
  world_free(world);
}

/*
 * Issue 14, H4: messages of another session are ignored and counted: a
 * round or an ack meant for an earlier process of this node (its
 * peer_session), and an ack of another session of the peer (recorded before
 * it restarted), which makes this node probe it again, never resync it.
 */
static void test_other_session_ignored(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  write_counters(world, 0, 1, 5);
  run_ms(world, 100);
  struct tally_cluster *node2 = cluster_of(world, 1);
  const struct tally_shard *replica = replica_of_node1(world);
  uint64_t held = tally_shard_held_seq(replica);
  struct tally_replication_message round = forged_round(world, held + 1u);
  round.peer_session ^= 1u; /* to an earlier process of node 2 */
  inject_from(world, 1, address_of(0), &round);
  round.peer_session = 0; /* or to none */
  inject_from(world, 1, address_of(0), &round);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(node2->wrong_session, 2);
  assert_int_equal(tally_shard_held_seq(replica), held);
  assert_int_equal(replica_value(world, 1, 0, 0), 5);
  /* An ack from another session of node 2: ignored; node 1 asks node 2 again. */
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  uint64_t resyncs = peer->resyncs;
  struct tally_replication_message ack = { .type = TALLY_REPLICATION_ACK, .origin = 1,
    .sender = 2, .seq = 1 };
  sessions(world, 1, 0, &ack);
  ack.session ^= 1u;
  inject_from(world, 0, address_of(1), &ack);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(cluster_of(world, 0), 0);
  assert_int_equal(cluster_of(world, 0)->wrong_session, 1);
  run_ms(world, 100);
  assert_true(peer->synced);
  assert_int_equal(peer->resyncs, resyncs); /* the probe found its state intact */
  stream_goes_on(world);
  world_free(world);
}

/*
 * Issue 14, H4: a RESTORE_REQUEST is served once per stamp: the same
 * request again (replayed from the member's own address), or one stamped
 * outside the clock window, makes no dump; a quorum read's request likewise
 * gets one set of replies. Before, the request was the same bytes every
 * time and each copy made every peer dump its replica.
 */
static void test_replayed_requests_refused(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  write_counters(world, 0, 2u * TALLY_REPLICATION_ENTRIES_MAX, 5);
  run_ms(world, 200);
  struct tally_cluster *node2 = cluster_of(world, 1);
  uint64_t now_us = tally_clock_unix_ns() / 1000u;
  struct tally_replication_message request = { .type = TALLY_REPLICATION_RESTORE_REQUEST,
    .origin = 1, .sender = 1, .scan = now_us };
  sessions(world, 0, 1, &request);
  request.peer_session = 0; /* a restoring node knows no session yet */
  world->net.ports[0].count = 0;
  inject_from(world, 1, address_of(0), &request);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_true(take_of_type(world, 0, TALLY_REPLICATION_RESTORE) >= 3); /* counters + LAST */
  for (uint32_t i = 0; i < 3; i++) inject_from(world, 1, address_of(0), &request);
  request.scan = now_us - 2000ull * TALLY_REPLICATION_REQUEST_WINDOW_MS; /* captured long ago */
  inject_from(world, 1, address_of(0), &request);
  request.scan = now_us + 2000ull * TALLY_REPLICATION_REQUEST_WINDOW_MS;
  inject_from(world, 1, address_of(0), &request);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(take_of_type(world, 0, TALLY_REPLICATION_RESTORE), 0);
  assert_int_equal(node2->requests_replayed, 5);
  /* A quorum read's request: one set of replies, however often it comes. */
  struct tally_replication_message read = { .type = TALLY_REPLICATION_READ_REQUEST,
    .origin = 1, .sender = 1, .seq = 77, .scan = now_us, .count = 1,
    .entries = { { .name = "c0", .name_len = 2, .value = 0 } } };
  sessions(world, 0, 1, &read);
  for (uint32_t i = 0; i < 4; i++) inject_from(world, 1, address_of(0), &read);
  world->net.now_ns += STEP_NS;
  tally_cluster_tick(node2, 0);
  assert_int_equal(take_of_type(world, 0, TALLY_REPLICATION_READ_REPLY), 2); /* own + 1 replica */
  assert_int_equal(node2->requests_replayed, 8);
  stream_goes_on(world);
  world_free(world);
}

/* A peer that comes back with nothing (a new store): the stream starts over, everything again. */
static void test_peer_lost_state_is_resynced(void **state)
{
  (void)state;
  struct world *world = world_new(2, 2);
  const uint32_t count = 2u * TALLY_REPLICATION_ENTRIES_MAX;
  write_counters(world, 0, count, 11);
  run_ms(world, 200);
  assert_int_equal(replica_value(world, 1, 0, count - 1u), 11 + count - 1u);
  uint64_t resyncs = peer_of(world, 0, 1)->resyncs;
  node_close(world, 1);
  run_ms(world, 50);
  node_open(world, 1, false); /* a new incarnation with an empty store */
  run_ms(world, 500);
  const struct tally_cluster_peer *peer = peer_of(world, 0, 1);
  assert_true(peer->resyncs > resyncs);
  for (uint32_t k = 0; k < count; k++) assert_int_equal(replica_value(world, 1, 0, k), 11 + k);
  world_free(world);
}

/* Sets name (printf-style with k) in shard, of owner_class, outside statsd's share. */
/*
 * A restored store keeps the traffic classes (issue 14, C1): the class
 * travels with each counter, every reliable counter comes back as the
 * producer's, and statsd's names take at most statsd's share of shard 0
 * (192 of 256). Before, the 320 names went back as they came and shard 0
 * held 256 of them: reliable ones among those left out.
 */
static void test_restore_keeps_classes(void **state)
{
  (void)state;
  counters_max = 256;
  struct world *world = world_new(3, 2);
  struct tally_store *store = &world->nodes[0]->appliance.store;
  for (uint32_t k = 0; k < 20; k++) set_named(&store->shards[0], "r%u", k, 500 + k, TALLY_CLASS_RELIABLE);
  for (uint32_t k = 0; k < 100; k++) set_named(&store->shards[0], "a%u", k, 1, TALLY_CLASS_STATSD);
  for (uint32_t k = 0; k < 200; k++) set_named(&store->shards[1], "b%u", k, 1, TALLY_CLASS_STATSD);
  __atomic_fetch_add(&world->nodes[0]->appliance.lcores[0].stats.applied_seq, 1, __ATOMIC_RELEASE);
  for (uint32_t i = 0; i < 100; i++) {
    run_ms(world, 100);
    const struct tally_store *holder = &world->nodes[1]->appliance.store;
    int32_t r = tally_store_replica_find(holder, 1);
    if (r >= 0 && tally_shard_counters_used(&holder->replicas[r]) == 320u) break;
  }
  assert_int_equal(held_class(world, 1, 0, "r%u", 7), TALLY_CLASS_RELIABLE);
  assert_int_equal(held_class(world, 1, 0, "b%u", 7), TALLY_CLASS_STATSD);
  node_close(world, 0);
  world_of_idle = world;
  world->net.idle = idle_run;
  node_open(world, 0, true); /* blocks in restore while nodes 2 and 3 run */
  world->net.idle = NULL;
  store = &world->nodes[0]->appliance.store;
  struct tally_shard *shard = &store->shards[0];
  for (uint32_t k = 0; k < 20; k++) {
    char name[16];
    int length = snprintf(name, sizeof name, "r%u", k);
    int64_t slot = tally_shard_find(shard, name, (uint32_t)length,
      tally_shard_name_hash(shard, name, (size_t)length));
    assert_true(slot >= 0);
    assert_int_equal(tally_shard_slot_value(shard, (uint32_t)slot), 500 + k);
    assert_int_equal(tally_shard_slot_class(shard, (uint32_t)slot), TALLY_CLASS_RELIABLE);
  }
  assert_int_equal(shard->statsd_used, 192);
  assert_int_equal(tally_shard_counters_used(shard), 212);
  world_free(world);
  counters_max = 4096;
}

/* A node whose store is new gets its own contribution back from a peer. */
static void test_restore_from_peers(void **state)
{
  (void)state;
  struct world *world = world_new(3, 2);
  const uint32_t count = 2u * TALLY_REPLICATION_ENTRIES_MAX + 3u;
  write_counters(world, 0, count, 1000);
  run_ms(world, 300);
  assert_int_equal(replica_value(world, 1, 0, count - 1u), 1000 + count - 1u);
  assert_int_equal(replica_value(world, 2, 0, count - 1u), 1000 + count - 1u);
  node_close(world, 0);
  world_of_idle = world;
  world->net.idle = idle_run;
  node_open(world, 0, true); /* blocks in restore while nodes 2 and 3 run */
  world->net.idle = NULL;
  const struct tally_store *store = &world->nodes[0]->appliance.store;
  for (uint32_t k = 0; k < count; k++) {
    char name[16];
    int length = snprintf(name, sizeof name, "c%u", k);
    int64_t slot = tally_shard_find(&store->shards[0], name, (uint32_t)length,
      tally_store_name_hash(store, name, (size_t)length));
    assert_true(slot >= 0);
    assert_int_equal(tally_shard_slot_value(&store->shards[0], (uint32_t)slot), 1000 + k);
  }
  world_free(world);
}

/* quorum_seq: held by W - 1 peers. W = 3 with one peer cut: it waits; healed: it follows. */
static void test_quorum_seq_needs_w_minus_1_peers(void **state)
{
  (void)state;
  struct world *world = world_new(3, 3);
  world->net.cut[0][2] = true; /* node 1's datagrams to node 3 are lost */
  write_counters(world, 0, 3, 1);
  run_ms(world, 300);
  assert_int_equal(replica_value(world, 1, 0, 2), 3);  /* node 2 holds it */
  assert_int_equal(replica_value(world, 2, 0, 2), -1); /* node 3 does not */
  assert_int_equal(quorum_seq(world, 0), 0);           /* so W - 1 = 2 peers do not */
  world->net.cut[0][2] = false;
  run_ms(world, 3000);
  assert_int_equal(replica_value(world, 2, 0, 2), 3);
  assert_int_equal(quorum_seq(world, 0), 1);
  world_free(world);
}

/* W = 2 of 3: one peer's acks are enough, the other may be gone. */
static void test_quorum_seq_with_one_peer_of_two(void **state)
{
  (void)state;
  struct world *world = world_new(3, 2);
  cut_node(world, 2, true);
  write_counters(world, 0, 3, 1);
  run_ms(world, 300);
  assert_int_equal(quorum_seq(world, 0), 1);
  assert_false(cluster_of(world, 0)->read_only);
  world_free(world);
}

/* No write quorum reachable: read-only; reachable again: writable. */
static void test_read_only_without_write_quorum(void **state)
{
  (void)state;
  struct world *world = world_new(3, 3);
  assert_false(cluster_of(world, 0)->read_only);
  cut_node(world, 2, true);
  run_ms(world, 3000);
  assert_true(cluster_of(world, 0)->read_only);
  assert_true(cluster_of(world, 1)->read_only);
  cut_node(world, 2, false);
  run_ms(world, 3000);
  assert_false(cluster_of(world, 0)->read_only);
  assert_false(cluster_of(world, 1)->read_only);
  world_free(world);
}

/* What node index last accepted from peer_index, signed again: a recorded heartbeat. */
static void record_heartbeat(struct world *world, uint32_t index, uint32_t peer_index,
  uint8_t out[TALLY_HEARTBEAT_SIZE])
{
  const struct tally_cluster_peer *peer = peer_of(world, index, peer_index);
  assert_true(peer->incarnation != 0 && peer->heartbeat_sent_ns != 0);
  struct tally_heartbeat heartbeat = { .node_id = (uint16_t)(peer_index + 1u),
    .flags = TALLY_HEARTBEAT_FLAG_READY, .generation = peer->incarnation,
    .send_time_ns = peer->heartbeat_sent_ns };
  tally_heartbeat_encode(&heartbeat, world->nodes[index]->appliance.config.cluster.key, out);
}

static void inject_raw(struct world *world, uint32_t to, struct sockaddr_in source,
  const uint8_t *data, uint32_t size)
{
  struct port *port = &world->net.ports[to];
  assert_true(port->count < INBOX_MAX && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  struct datagram *slot = &port->inbox[(port->head + port->count) % INBOX_MAX];
  slot->from = source;
  slot->size = size;
  memcpy(slot->data, data, size);
  port->count++;
}

/*
 * A 3-node world in which node 1 recorded a heartbeat of node 3 (into
 * recorded) and then saw node 3 start again (a newer incarnation): one
 * restart seen.
 */
static struct world *world_after_a_restart(uint8_t recorded[TALLY_HEARTBEAT_SIZE])
{
  struct world *world = world_new(3, 2);
  record_heartbeat(world, 0, 2, recorded);
  node_close(world, 2);
  node_open(world, 2, false); /* node 3 starts again: a newer incarnation */
  run_ms(world, 300);
  assert_int_equal(cluster_of(world, 0)->peer_restarts, 1);
  return world;
}

/*
 * Before: an incarnation was random per start and any other one was taken
 * as a restart, so heartbeats of node 3's two incarnations replayed in turn
 * kept the dead node up, and each one reset node 1's link to it.
 */
static void test_heartbeats_of_two_incarnations_replayed(void **state)
{
  (void)state;
  uint8_t first[TALLY_HEARTBEAT_SIZE];
  uint8_t second[TALLY_HEARTBEAT_SIZE];
  struct world *world = world_after_a_restart(first);
  struct tally_cluster *node1 = cluster_of(world, 0);
  record_heartbeat(world, 0, 2, second);
  node_close(world, 2); /* node 3 dies */
  uint64_t refused = node1->heartbeats_replayed + node1->heartbeats_old_incarnation;
  uint32_t replays = 0;
  for (uint32_t t = 0; t < 200; t++) { /* 2 s of replays, one every 10 ms, in turn */
    inject_raw(world, 0, address_of(2), t % 2 == 0 ? first : second, TALLY_HEARTBEAT_SIZE);
    replays++;
    run_ms(world, 10);
  }
  assert_int_equal(node1->heartbeats_replayed + node1->heartbeats_old_incarnation - refused,
    replays);
  assert_true(node1->heartbeats_old_incarnation >= replays / 2);
  assert_int_equal(node1->peer_restarts, 1); /* no replay made it look restarted */
  const struct tally_cluster_peer *peer = peer_of(world, 0, 2);
  assert_int_equal(tally_phi_detector_state(&peer->detector, world->net.now_ns), TALLY_PHI_DOWN);
  world_free(world);
}

/*
 * Node 3 alive and synced: its previous incarnation's heartbeat, and its own
 * current one, replayed to node 1 are refused and counted; neither resets
 * the link (no restart seen, the incarnation stays the newer one). A real
 * restart after the replays (a newer incarnation) still resets it. Before:
 * any other incarnation was taken as a restart, so each replay of the old
 * one, and each heartbeat of the live node after it, reset the link.
 */
static void test_old_incarnation_never_resets_a_live_link(void **state)
{
  (void)state;
  uint8_t old[TALLY_HEARTBEAT_SIZE];
  uint8_t current[TALLY_HEARTBEAT_SIZE];
  struct world *world = world_after_a_restart(old);
  struct tally_cluster *node1 = cluster_of(world, 0);
  const struct tally_cluster_peer *peer = peer_of(world, 0, 2);
  uint32_t live = cluster_of(world, 2)->incarnation;
  assert_int_equal(peer->incarnation, live);
  assert_true(peer->synced);
  record_heartbeat(world, 0, 2, current);
  run_ms(world, 20); /* node 3 sends newer ones: the recorded one is now old */
  uint64_t old_refused = node1->heartbeats_old_incarnation;
  uint64_t replayed = node1->heartbeats_replayed;
  for (uint32_t t = 0; t < 50; t++) {
    inject_raw(world, 0, address_of(2), old, TALLY_HEARTBEAT_SIZE);
    inject_raw(world, 0, address_of(2), current, TALLY_HEARTBEAT_SIZE);
    run_ms(world, 10);
    assert_int_equal(node1->peer_restarts, 1); /* no replay reset the link */
    assert_int_equal(peer->incarnation, live);
  }
  assert_int_equal(node1->heartbeats_old_incarnation - old_refused, 50);
  assert_int_equal(node1->heartbeats_replayed - replayed, 50);
  assert_true(peer->synced);
  assert_int_equal(tally_phi_detector_state(&peer->detector, world->net.now_ns), TALLY_PHI_UP);
  node_close(world, 2);
  node_open(world, 2, false); /* a real restart: newer still, still seen */
  run_ms(world, 300);
  assert_int_equal(node1->peer_restarts, 2);
  assert_int_equal(peer->incarnation, cluster_of(world, 2)->incarnation);
  assert_true(peer->incarnation > live);
  assert_true(peer->synced);
  world_free(world);
}

int main(void)
{
  /* rte_hash (the snapshot, the journal index) needs the EAL: no hugepages, no devices. */
  char *argv[] = { "test_cluster_streams", "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
    "-l", "0", "--log-level=*:error", NULL };
  if (rte_eal_init(9, argv) < 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rounds_and_acks),
    cmocka_unit_test(test_scan_reads_only_dirty_slots),
    cmocka_unit_test(test_resend_after_loss),
    cmocka_unit_test(test_priority_part_acked_before_bulk),
    cmocka_unit_test(test_new_priority_part_replaces_bulk),
    cmocka_unit_test(test_seal_commits_staged_rounds_first),
    cmocka_unit_test(test_statsd_counter_written_by_a_batch_is_priority),
    cmocka_unit_test(test_snapshot_insert_failure_surfaced),
    cmocka_unit_test(test_total_beyond_int64_saturates),
    cmocka_unit_test(test_gap_is_answered_with_held),
    cmocka_unit_test(test_peer_lost_state_is_resynced),
    cmocka_unit_test(test_restore_from_peers),
    cmocka_unit_test(test_restore_keeps_classes),
    cmocka_unit_test(test_quorum_seq_needs_w_minus_1_peers),
    cmocka_unit_test(test_quorum_seq_with_one_peer_of_two),
    cmocka_unit_test(test_read_only_without_write_quorum),
    cmocka_unit_test(test_wrong_source_dropped),
    cmocka_unit_test(test_invalid_producer_record_refused),
    cmocka_unit_test(test_old_ack_ignored),
    cmocka_unit_test(test_other_session_ignored),
    cmocka_unit_test(test_replayed_requests_refused),
    cmocka_unit_test(test_log_mode_ack_waits_for_the_log),
    cmocka_unit_test(test_heartbeats_of_two_incarnations_replayed),
    cmocka_unit_test(test_old_incarnation_never_resets_a_live_link),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
