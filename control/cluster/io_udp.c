/*
 * io_udp.c — the cluster's real I/O backend (cluster_io.h): the replication
 * UDP socket (non-blocking, 4 MiB buffers) and CLOCK_MONOTONIC; in tallyd
 * two sockets on its port, heartbeats steered by a classic BPF program to
 * the heartbeat thread's (open_steered). Opened and closed on the start-up
 * thread; a socket is used by the start-up thread while it restores, then
 * by one thread only (the cluster thread, or the heartbeat thread). now_ns
 * is any thread's.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <linux/filter.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cluster_io.h"
#include "tally/limits.h"

void tally_cluster_udp_close(struct tally_cluster_udp *udp)
{
  if (udp->fd >= 0) close(udp->fd);
  udp->fd = -1;
}

static int udp_open(struct tally_cluster_udp *udp, uint32_t ipv4, uint16_t port, bool reuse,
  char *error, size_t error_size)
{
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port),
    .sin_addr.s_addr = htonl(ipv4) };
  udp->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int buffer = TALLY_CLUSTER_SOCKET_BUFFER_BYTES, one = 1;
  if (udp->fd >= 0) {
    setsockopt(udp->fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    setsockopt(udp->fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  }
  if (udp->fd < 0 ||
      (reuse && setsockopt(udp->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      bind(udp->fd, (struct sockaddr *)&address, sizeof address) != 0) {
    snprintf(error, error_size, "cluster.nodes: cannot bind the replication address %s:%u: %s",
      inet_ntoa(address.sin_addr), port, strerror(errno));
    tally_cluster_udp_close(udp);
    return -1;
  }
  assert(udp->fd >= 0);
  return 0;
}

int tally_cluster_udp_open(struct tally_cluster_udp *udp, uint32_t ipv4, uint16_t port,
  char *error, size_t error_size)
{
  return udp_open(udp, ipv4, port, false, error, error_size);
}

/*
 * The group's sockets are numbered in the order they joined it (primary 0,
 * steered 1). The program runs with the UDP payload at offset 0; a load past
 * the end (a datagram under 2 bytes) ends it with 0: primary.
 */
int tally_cluster_udp_open_steered(struct tally_cluster_udp *primary, struct tally_cluster_udp *steered,
  uint32_t ipv4, uint16_t port, const uint8_t magic[2], char *error, size_t error_size)
{
  struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0),                                  /* A = bytes 0-1 */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)magic[0] << 8 | magic[1], 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 1),                                           /* steered */
    BPF_STMT(BPF_RET | BPF_K, 0),                                           /* primary */
  };
  struct sock_fprog program = { .len = sizeof code / sizeof code[0], .filter = code };
  if (udp_open(primary, ipv4, port, true, error, error_size) != 0) return -1;
  if (udp_open(steered, ipv4, port, true, error, error_size) != 0) {
    tally_cluster_udp_close(primary);
    return -1;
  }
  if (setsockopt(primary->fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) != 0) {
    snprintf(error, error_size, "cluster: cannot steer heartbeats to their socket "
      "(SO_ATTACH_REUSEPORT_CBPF): %s", strerror(errno));
    tally_cluster_udp_close(primary);
    tally_cluster_udp_close(steered);
    return -1;
  }
  return 0;
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
