/*
 * heartbeat_thread.c — the heartbeat thread (issue 12, item 3): heartbeats
 * out every heartbeat_interval and in as they arrive, fed to the detectors
 * (heartbeat.c), on a thread of its own, so that however long the cluster
 * thread scans or sends rounds, heartbeats leave on time and are received on
 * time. Its socket (heartbeat_udp) shares the replication address and port:
 * io_udp.c opens both in one SO_REUSEPORT group whose classic BPF program
 * steers every datagram that starts with the heartbeat magic to it; it sends
 * through a fault layer of its own (heartbeat_fault: the same cluster.fault_*
 * settings, its own queue), so the test-only fault stage still reaches
 * heartbeats.
 *
 * Owns: heartbeat_io and what is under it, the thread. Shares with the
 * cluster thread only what liveness_lock guards (cluster.h). Opening and
 * release run on the start-up thread, start and stop on it too
 * (tally_cluster_start / _stop); the loop on the heartbeat thread.
 */
#include <assert.h>

#include "cluster_internal.h"
#include "heartbeat_wire.h"

int tally_cluster_heartbeat_open(struct tally_cluster *cluster, char *error, size_t error_size)
{
  assert(cluster->heartbeat_udp.fd >= 0 && !cluster->heartbeat_running);
  if (tally_cluster_fault_open_beside(cluster, &cluster->heartbeat_fault, error,
        error_size) != 0) {
    return -1;
  }
  cluster->heartbeat_fault_layer = (struct tally_cluster_fault_layer){
    .fault = &cluster->heartbeat_fault, .lower = tally_cluster_udp_io(&cluster->heartbeat_udp) };
  cluster->heartbeat_io = tally_cluster_fault_layer_io(&cluster->heartbeat_fault_layer);
  cluster->heartbeat_own_thread = true;
  return 0;
}

/* Every datagram waiting on the heartbeat socket (a burst at most). */
static void receive_all(struct tally_cluster *cluster)
{
  uint8_t buffer[TALLY_HEARTBEAT_SIZE + 1]; /* a longer one is malformed: a byte tells */
  for (uint32_t i = 0; i < TALLY_CLUSTER_RECEIVE_BURST; i++) {
    struct sockaddr_in source;
    ssize_t size = tally_cluster_io_receive(&cluster->heartbeat_io, buffer, sizeof buffer,
      &source);
    if (size < 0) return;
    if (size >= 2 && buffer[0] == TALLY_HEARTBEAT_MAGIC_0 && buffer[1] == TALLY_HEARTBEAT_MAGIC_1) {
      tally_cluster_heartbeat_receive(cluster, buffer, (size_t)size, &source);
    } else { /* the steering program sends only heartbeats here */
      __atomic_fetch_add(&cluster->heartbeat_socket_foreign, 1, __ATOMIC_RELAXED);
    }
  }
}

static void *heartbeat_main(void *arg)
{
  struct tally_cluster *cluster = arg;
  const struct tally_cluster_io *io = &cluster->heartbeat_io;
  while (!__atomic_load_n(&cluster->heartbeat_quit, __ATOMIC_RELAXED)) {
    uint64_t now_ms = tally_cluster_io_now_ns(io) / 1000000u;
    uint64_t until_ms = tally_cluster_heartbeat_due(cluster, io, now_ms);
    /* Wake for the next heartbeat, a datagram, a held one falling due, or a stop. */
    uint64_t wait_ns = until_ms * 1000000u;
    if (wait_ns > TALLY_CLUSTER_HEARTBEAT_WAIT_MAX_NS) wait_ns = TALLY_CLUSTER_HEARTBEAT_WAIT_MAX_NS;
    if (tally_cluster_io_wait_readable(io, wait_ns)) receive_all(cluster);
  }
  return NULL;
}

int tally_cluster_heartbeat_start(struct tally_cluster *cluster)
{
  assert(!cluster->heartbeat_running);
  if (!cluster->heartbeat_own_thread) return 0;
  cluster->heartbeat_quit = false;
  if (pthread_create(&cluster->heartbeat_thread, NULL, heartbeat_main, cluster) != 0) return -1;
  pthread_setname_np(cluster->heartbeat_thread, "tally-heartbeat");
  cluster->heartbeat_running = true;
  return 0;
}

void tally_cluster_heartbeat_stop(struct tally_cluster *cluster)
{
  if (!cluster->heartbeat_running) return;
  __atomic_store_n(&cluster->heartbeat_quit, true, __ATOMIC_RELAXED);
  pthread_join(cluster->heartbeat_thread, NULL);
  cluster->heartbeat_running = false;
}

void tally_cluster_heartbeat_release(struct tally_cluster *cluster)
{
  assert(!cluster->heartbeat_running);
  tally_cluster_fault_free(&cluster->heartbeat_fault);
  tally_cluster_udp_close(&cluster->heartbeat_udp);
}
