/*
 * io_udp.c — the cluster's real I/O backend (cluster_io.h): the replication
 * UDP socket (non-blocking, 4 MiB buffers) and CLOCK_MONOTONIC. Opened and
 * closed on the start-up thread; used by the start-up thread while it
 * restores, then by the cluster thread only. now_ns is any thread's.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cluster_io.h"
#include "tally/limits.h"

int tally_cluster_udp_open(struct tally_cluster_udp *udp, uint32_t ipv4, uint16_t port,
  char *error, size_t error_size)
{
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port),
    .sin_addr.s_addr = htonl(ipv4) };
  udp->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int buffer = TALLY_CLUSTER_SOCKET_BUFFER_BYTES;
  if (udp->fd >= 0) {
    setsockopt(udp->fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    setsockopt(udp->fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  }
  if (udp->fd < 0 || bind(udp->fd, (struct sockaddr *)&address, sizeof address) != 0) {
    snprintf(error, error_size, "cluster.nodes: cannot bind the replication address %s:%u: %s",
      inet_ntoa(address.sin_addr), port, strerror(errno));
    return -1;
  }
  assert(udp->fd >= 0);
  return 0;
}

void tally_cluster_udp_close(struct tally_cluster_udp *udp)
{
  if (udp->fd >= 0) close(udp->fd);
  udp->fd = -1;
}

static void udp_send(void *context, const struct sockaddr_in *to, const uint8_t *data,
  size_t size)
{
  const struct tally_cluster_udp *udp = context;
  assert(size > 0 && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  ssize_t sent = sendto(udp->fd, data, size, MSG_DONTWAIT, (const struct sockaddr *)to,
    sizeof *to);
  (void)sent; /* a lost datagram is a timeout like any other */
}

static ssize_t udp_receive(void *context, uint8_t *buffer, size_t size, struct sockaddr_in *from)
{
  const struct tally_cluster_udp *udp = context;
  socklen_t from_len = sizeof *from;
  assert(size > 0);
  return recvfrom(udp->fd, buffer, size, MSG_DONTWAIT, (struct sockaddr *)from, &from_len);
}

static bool udp_wait_readable(void *context, uint64_t limit_ns)
{
  const struct tally_cluster_udp *udp = context;
  struct timespec timeout = { .tv_sec = (time_t)(limit_ns / 1000000000ull),
    .tv_nsec = (long)(limit_ns % 1000000000ull) };
  struct pollfd descriptor = { .fd = udp->fd, .events = POLLIN };
  return ppoll(&descriptor, 1, &timeout, NULL) > 0;
}

static uint64_t udp_now_ns(void *context)
{
  (void)context;
  return tally_clock_mono_ns();
}

static const struct tally_cluster_io_ops udp_ops = {
  .send = udp_send, .receive = udp_receive, .wait_readable = udp_wait_readable,
  .now_ns = udp_now_ns,
};

struct tally_cluster_io tally_cluster_udp_io(struct tally_cluster_udp *udp)
{
  assert(udp->fd >= 0);
  return (struct tally_cluster_io){ .ops = &udp_ops, .context = udp };
}
