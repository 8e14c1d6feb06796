/*
 * cluster.c — the cluster thread and the cluster's lifecycle. Opening (on
 * the start-up thread): the membership, the I/O (the replication socket and
 * the clock, behind the test-only fault layer; cluster_io.h), the snapshot,
 * the dedup state, the peer slots, and with a new or damaged store the
 * restore (restore.c). Then the thread's loop, one tick at a time: apply a
 * membership handed over, the restarts the heartbeats showed, a scan that
 * plans the idle peers' lists (cluster_scan.c), each member's outgoing
 * stream (stream_out.c), the quorum (quorum.c), and a wait on the socket,
 * after which every datagram is handed to the file that owns its kind.
 * Heartbeats run on the heartbeat thread (heartbeat_thread.c), started and
 * stopped here with the cluster thread; an instance without its socket
 * (tests over a fake network) sends and receives them in the tick instead.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#include "cluster_internal.h"
#include "heartbeat_wire.h"

/* ---- Receiving: each datagram to the file that owns its kind -------------------- */

static void receive_replication(struct tally_cluster *cluster, const uint8_t *data, size_t size,
  const struct sockaddr_in *source)
{
  struct tally_replication_message message;
  enum tally_replication_reason reason =
    tally_replication_decode(data, size, cluster->config->key, &message);
  if (reason != TALLY_REPLICATION_OK) {
    cluster->rejected[reason]++;
    return;
  }
  struct tally_cluster_peer *peer = tally_cluster_peer_by_id(cluster, message.sender);
  if (peer == NULL) { /* authentic, but not a member (retired, or not added here yet) */
    cluster->not_member++;
    return;
  }
  /* Only from the member's own address; a quorum read from any port of its IP. */
  bool read = message.type == TALLY_REPLICATION_READ_REQUEST;
  if (!tally_cluster_source_ok(cluster, &peer->address, source, read)) return;
  if (!tally_cluster_records_ok(cluster, &message)) return;
  if (!tally_cluster_session_accept(cluster, peer, &message)) return;
  uint16_t self = cluster->config->node_id;
  switch (message.type) {
  case TALLY_REPLICATION_ROUND:
    if (message.origin == message.sender) tally_cluster_stream_in_round(cluster, peer, &message);
    return;
  case TALLY_REPLICATION_ACK:
    if (message.origin == self) tally_cluster_stream_out_ack(cluster, peer, message.seq);
    return;
  case TALLY_REPLICATION_RESTORE_REQUEST:
    if (message.origin == message.sender) {
      tally_cluster_stream_in_restore_request(cluster, peer, &message);
    }
    return;
  case TALLY_REPLICATION_RESTORE:
    return; /* only wanted while restoring, before the thread runs */
  case TALLY_REPLICATION_READ_REQUEST: {
    /* Answered on the member's IP only, whatever the datagram claims (no reflection). */
    struct sockaddr_in reply_to = peer->address;
    reply_to.sin_port = source->sin_port;
    tally_cluster_stream_in_read_request(cluster, &message, &reply_to);
    return;
  }
  case TALLY_REPLICATION_READ_REPLY:
    return; /* answers go to the requesting socket, not this one */
  }
}

static void receive_all(struct tally_cluster *cluster)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  for (uint32_t i = 0; i < TALLY_CLUSTER_RECEIVE_BURST; i++) {
    struct sockaddr_in source;
    ssize_t size = tally_cluster_io_receive(&cluster->io, buffer, sizeof buffer, &source);
    if (size < 0) return;
    if (size >= 2 && buffer[0] == TALLY_HEARTBEAT_MAGIC_0 && buffer[1] == TALLY_HEARTBEAT_MAGIC_1) {
      /* With a heartbeat thread only if steering failed (counted): still fed. */
      if (cluster->heartbeat_own_thread) cluster->heartbeats_misrouted++;
      tally_cluster_heartbeat_receive(cluster, buffer, (size_t)size, &source);
    } else {
      receive_replication(cluster, buffer, (size_t)size, &source);
    }
  }
}

/* ---- The thread ------------------------------------------------------------------- */

void tally_cluster_tick(struct tally_cluster *cluster, uint64_t wait_ns)
{
  assert(cluster->members != NULL);
  tally_cluster_members_apply(cluster); /* a new membership, if one was handed over */
  const struct tally_cluster_config *config = cluster->config;
  assert(config->heartbeat_interval_ms >= 1 && config->replication_interval_ms >= 1);
  uint64_t now = tally_cluster_now_ms(cluster);
  if (!cluster->heartbeat_own_thread) tally_cluster_heartbeat_due(cluster, &cluster->io, now);
  tally_cluster_heartbeat_restarts(cluster); /* before a round goes to a restarted peer */
  if (now >= cluster->next_scan_ms) {
    tally_cluster_scan(cluster, false);
    __atomic_store_n(&cluster->scans_published, cluster->scans, __ATOMIC_RELAXED);
    cluster->next_scan_ms = now + config->replication_interval_ms;
  }
  tally_cluster_plan(cluster); /* a newer scan's priority part need not wait for bulk */
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    tally_cluster_stream_out_pump(cluster, peer, now);
    tally_cluster_peer_assert_invariants(cluster, peer);
  }
  tally_cluster_quorum_update(cluster);
  /* Log mode: ACKs that wait for the log are polled for at the persister's pace. */
  bool deferred = tally_cluster_stream_in_deferred_acks(cluster);
  if (deferred && wait_ns > TALLY_CLUSTER_ACK_POLL_NS) wait_ns = TALLY_CLUSTER_ACK_POLL_NS;
  if (tally_cluster_io_wait_readable(&cluster->io, wait_ns)) receive_all(cluster);
  tally_cluster_heartbeat_restarts(cluster); /* (a restart this tick's heartbeats showed) */
}

static void *cluster_main(void *arg)
{
  struct tally_cluster *cluster = arg;
  while (!__atomic_load_n(&cluster->quit, __ATOMIC_RELAXED)) {
    tally_cluster_tick(cluster, TALLY_CLUSTER_LOOP_WAIT_NS);
  }
  return NULL;
}

int tally_cluster_start(struct tally_cluster *cluster)
{
  assert(!cluster->running);
  cluster->quit = false;
  int rc = pthread_create(&cluster->thread, NULL, cluster_main, cluster);
  if (rc != 0) return -1;
  pthread_setname_np(cluster->thread, "tally-cluster");
  cluster->running = true;
  if (tally_cluster_heartbeat_start(cluster) != 0) {
    tally_cluster_stop(cluster);
    return -1;
  }
  return 0;
}

/* What the threads used: the fault queues (what they still held is lost), the slots, the sockets. */
static void release(struct tally_cluster *cluster)
{
  assert(!cluster->running && !cluster->heartbeat_running);
  tally_cluster_heartbeat_release(cluster);
  tally_cluster_fault_free(&cluster->fault);
  tally_cluster_members_close(cluster);
  tally_cluster_udp_close(&cluster->udp);
}

void tally_cluster_stop(struct tally_cluster *cluster)
{
  if (!cluster->running) return;
  tally_cluster_heartbeat_stop(cluster);
  __atomic_store_n(&cluster->quit, true, __ATOMIC_RELAXED);
  pthread_join(cluster->thread, NULL);
  cluster->running = false;
  release(cluster);
}

void tally_cluster_close(struct tally_cluster *cluster)
{
  if (cluster->running) tally_cluster_stop(cluster);
  release(cluster); /* (each part is idempotent) */
  tally_cluster_snapshot_close(cluster);
  tally_cluster_dedup_close(cluster);
  free(cluster->members);
  cluster->members = NULL;
  pthread_mutex_destroy(&cluster->lock);
  pthread_mutex_destroy(&cluster->liveness_lock);
}

/* ---- Opening (start-up) ------------------------------------------------------------ */

/* The replication socket and, steered to it on the same port, the heartbeat thread's. */
static int open_socket(struct tally_cluster *cluster, char *error, size_t error_size)
{
  const struct tally_cluster_config *config = cluster->config;
  const struct tally_cluster_node *self = NULL;
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == config->node_id) self = &config->nodes[i];
  }
  assert(self != NULL);
  static const uint8_t magic[2] = { TALLY_HEARTBEAT_MAGIC_0, TALLY_HEARTBEAT_MAGIC_1 };
  if (tally_cluster_udp_open_steered(&cluster->udp, &cluster->heartbeat_udp, self->ipv4,
        self->port, magic, error, error_size) != 0) {
    return -1;
  }
  return tally_cluster_heartbeat_open(cluster, error, error_size);
}

/* Everything but the socket: over lower (through the fault layer). */
static int open_over(struct tally_cluster *cluster, struct tally_cluster_io lower,
  bool restore_first, char *error, size_t error_size)
{
  cluster->fault_layer = (struct tally_cluster_fault_layer){ .fault = &cluster->fault,
    .lower = lower };
  cluster->io = tally_cluster_fault_layer_io(&cluster->fault_layer);
  cluster->random_state = tally_cluster_now_ns(cluster) | 1u;
  if (tally_cluster_snapshot_open(cluster, error, error_size) != 0) return -1;
  if (tally_cluster_dedup_open(cluster, error, error_size) != 0) return -1;
  if (tally_cluster_members_open(cluster, error, error_size) != 0) return -1;
  if (restore_first && tally_cluster_restore(cluster, error, error_size) != 0) return -1;
  return 0;
}

/*
 * This start's incarnation (issue 14, M3): the wall clock's second, and
 * above any incarnation this process used before (tests reopen instances).
 * Peers accept heartbeats only in (incarnation, send time) order, so it must
 * grow across restarts: tally_cluster_open waits for the next second before
 * the node can serve (so before it can exit), so the next start reads a
 * later one (a wall clock
 * stepped back makes the peers refuse this node's heartbeats until it
 * passes its last incarnation again; docs/failure-detection.md). Good until
 * 2106. Start-up thread.
 */
static uint32_t incarnation_last;

static uint32_t next_incarnation(void)
{
  uint64_t seconds = tally_clock_unix_ns() / 1000000000ull;
  assert(seconds > 0 && seconds < UINT32_MAX);
  uint32_t incarnation = (uint32_t)seconds;
  if (incarnation <= incarnation_last) incarnation = incarnation_last + 1u;
  incarnation_last = incarnation;
  return incarnation;
}

/* Bounded (about 1 s): until the wall clock is past this start's incarnation. */
static void wait_past_incarnation(const struct tally_cluster *cluster)
{
  assert(cluster->incarnation != 0);
  for (uint32_t i = 0; i < 2000u; i++) {
    if (tally_clock_unix_ns() / 1000000000ull > cluster->incarnation) return;
    struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000 };
    nanosleep(&pause, NULL);
  }
}

/* The parts every instance has before its I/O: identity, membership, fault stage. */
static int open_start(struct tally_cluster *cluster, struct tally_appliance *appliance,
  char *error, size_t error_size)
{
  memset(cluster, 0, sizeof *cluster);
  cluster->appliance = appliance;
  cluster->udp.fd = -1;
  cluster->heartbeat_udp.fd = -1;
  if (pthread_mutex_init(&cluster->liveness_lock, NULL) != 0) {
    snprintf(error, error_size, "cluster: cannot create the liveness lock");
    return -1;
  }
  tally_cluster_log_attach(&cluster->log, appliance->cluster_log_queue); /* NULL: not log mode */
  assert(appliance->config.cluster.enabled);
  cluster->incarnation = next_incarnation();
  cluster->session = tally_cluster_session_new();
  if (tally_cluster_members_init(cluster, error, error_size) != 0) return -1;
  return tally_cluster_fault_open(cluster, error, error_size);
}

int tally_cluster_open(struct tally_cluster *cluster, struct tally_appliance *appliance,
  bool restore_first, char *error, size_t error_size)
{
  if (open_start(cluster, appliance, error, error_size) != 0) return -1;
  if (open_socket(cluster, error, error_size) != 0) return -1;
  wait_past_incarnation(cluster);
  return open_over(cluster, tally_cluster_udp_io(&cluster->udp), restore_first, error,
    error_size);
}

int tally_cluster_open_io(struct tally_cluster *cluster, struct tally_appliance *appliance,
  struct tally_cluster_io io, bool restore_first, char *error, size_t error_size)
{
  assert(io.ops != NULL);
  if (open_start(cluster, appliance, error, error_size) != 0) return -1;
  return open_over(cluster, io, restore_first, error, error_size);
}
