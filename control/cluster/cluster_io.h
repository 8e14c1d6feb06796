/*
 * cluster_io.h — the cluster's network and clock, behind one small
 * interface, so that the stream logic is generic over its I/O (TigerBeetle's
 * MessageBus/Time): every datagram the cluster sends or receives, every wait
 * on the socket, and every reading of the clock by the cluster thread and
 * the restore go through a struct tally_cluster_io.
 *
 * Backends:
 *   - io_udp.c: the real one, the replication UDP socket and CLOCK_MONOTONIC
 *     (in tallyd two sockets on one port: the cluster thread's and the
 *     heartbeat thread's, heartbeats steered to the latter);
 *   - io_fault.c: a layer over another backend, the test-only fault stage
 *     (cluster.fault_*: drop, delay, jitter; cluster_fault.c);
 *   - tests/unit/test_cluster_streams.c: a fake network and clock that
 *     connects in-process cluster instances.
 * A backend's context belongs to the thread that runs the cluster (the
 * start-up thread during restore, then the cluster thread), or to the
 * heartbeat thread (its own io); now_ns may be called from any thread.
 */
#ifndef TALLY_CLUSTER_IO_H
#define TALLY_CLUSTER_IO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tally_cluster_io_ops {
  /* Sends one datagram of 1..TALLY_CLUSTER_DATAGRAM_SIZE_MAX bytes; a loss is a timeout like any other. */
  void (*send)(void *context, const struct sockaddr_in *to, const uint8_t *data, size_t size);
  /* Takes one datagram without waiting: its size (from filled in), or -1 if none is there. */
  ssize_t (*receive)(void *context, uint8_t *buffer, size_t size, struct sockaddr_in *from);
  /* Waits at most limit_ns until a datagram can be received; true if one can. */
  bool (*wait_readable)(void *context, uint64_t limit_ns);
  /* A monotonic clock, nanoseconds. */
  uint64_t (*now_ns)(void *context);
};

struct tally_cluster_io {
  const struct tally_cluster_io_ops *ops;
  void *context;
};

static inline void tally_cluster_io_send(const struct tally_cluster_io *io,
  const struct sockaddr_in *to, const uint8_t *data, size_t size)
{
  io->ops->send(io->context, to, data, size);
}

static inline ssize_t tally_cluster_io_receive(const struct tally_cluster_io *io,
  uint8_t *buffer, size_t size, struct sockaddr_in *from)
{
  return io->ops->receive(io->context, buffer, size, from);
}

static inline bool tally_cluster_io_wait_readable(const struct tally_cluster_io *io,
  uint64_t limit_ns)
{
  return io->ops->wait_readable(io->context, limit_ns);
}

static inline uint64_t tally_cluster_io_now_ns(const struct tally_cluster_io *io)
{
  return io->ops->now_ns(io->context);
}

/* ---- io_udp.c: the replication socket and CLOCK_MONOTONIC ---------------- */

struct tally_cluster_udp {
  int fd; /* -1: closed */
};

/* Opens and binds the socket to ipv4:port (host order); 0 or -1 with error. */
int tally_cluster_udp_open(struct tally_cluster_udp *udp, uint32_t ipv4, uint16_t port,
  char *error, size_t error_size);
/*
 * Two sockets on the same ipv4:port, in one SO_REUSEPORT group with a
 * classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that steers each datagram
 * whose payload starts with the two bytes magic[0], magic[1] to steered and
 * every other one to primary (the heartbeat thread's socket and the cluster
 * thread's). 0, or -1 with error and both closed.
 */
int tally_cluster_udp_open_steered(struct tally_cluster_udp *primary, struct tally_cluster_udp *steered,
  uint32_t ipv4, uint16_t port, const uint8_t magic[2], char *error, size_t error_size);
void tally_cluster_udp_close(struct tally_cluster_udp *udp);
/* The backend over an open socket. */
struct tally_cluster_io tally_cluster_udp_io(struct tally_cluster_udp *udp);

/* ---- io_fault.c: the test-only fault stage as a layer ---------------------- */

struct tally_cluster_fault;

struct tally_cluster_fault_layer {
  struct tally_cluster_fault *fault; /* drop / hold decisions and the held queue */
  struct tally_cluster_io lower;     /* where datagrams go once they pass or fall due */
};

/*
 * The layer over lower: send offers every datagram to the fault stage (one
 * relaxed load when it is off); wait_readable sends what fell due, waits no
 * longer than the next held datagram's due time, and sends what fell due
 * meanwhile. receive and now_ns are lower's.
 */
struct tally_cluster_io tally_cluster_fault_layer_io(struct tally_cluster_fault_layer *layer);

#endif
