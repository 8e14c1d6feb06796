/*
 * net.c — the sockets of tally-blast: a connected UDP socket (statsd and
 * binary; connected so that the kernel reports a refused port and only the
 * target's acks come back) and a TCP connection (Redis), each with bounded
 * send and receive timeouts so that no call can block for ever.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blast.h"

#define UDP_BUFFER_BYTES (4 << 20)
#define TIMEOUT_S 5

static void set_timeouts(int fd)
{
  assert(fd >= 0);
  struct timeval timeout = { .tv_sec = TIMEOUT_S, .tv_usec = 0 };
  int rc = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (rc == 0) rc = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  assert(rc == 0); /* valid options on a valid socket */
  (void)rc;
}

/* Sets timeouts and connects fd to the target; closes it on error (errno kept). */
static int connect_or_close(int fd, const struct blast_options *options)
{
  assert(fd >= 0);
  set_timeouts(fd);
  if (connect(fd, (const struct sockaddr *)&options->target, sizeof options->target) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

/* A connected UDP socket with large buffers; -1 (errno set) on error. */
int blast_open_udp(const struct blast_options *options)
{
  assert(options->target.sin_family == AF_INET);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int size = UDP_BUFFER_BYTES;
  /* The kernel caps these at wmem_max / rmem_max; a smaller buffer is fine. */
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return connect_or_close(fd, options);
}

/* A TCP connection with Nagle off; -1 (errno set) on error. */
int blast_open_tcp(const struct blast_options *options)
{
  assert(options->target.sin_family == AF_INET);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return connect_or_close(fd, options);
}
