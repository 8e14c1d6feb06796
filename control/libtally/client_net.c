/*
 * client_net.c — libtally's UDP plumbing: resolving "host:port" node
 * strings to IPv4 addresses (once, in tally_client_new), one non-blocking
 * socket, and send / receive / wait wrappers that turn every operating
 * error into a value the engine (client.c, client_flight.c) decides about.
 *
 * Thread: the producer's (the one thread that drives a client, client.h).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_internal.h"

static bool parse_port(const char *text, uint16_t *port)
{
  assert(text != NULL);
  assert(port != NULL);
  if (*text == '\0' || strlen(text) > 5) return false;
  uint32_t value = 0;
  for (const char *c = text; *c != '\0'; c++) {
    if (*c < '0' || *c > '9') return false;
    value = value * 10u + (uint32_t)(*c - '0');
  }
  if (value == 0 || value > 65535u) return false;
  *port = (uint16_t)value;
  return true;
}

static bool resolve_host(const char *host, struct in_addr *ip)
{
  assert(host != NULL);
  assert(ip != NULL);
  if (inet_pton(AF_INET, host, ip) == 1) return true;
  struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_DGRAM };
  struct addrinfo *found = NULL;
  if (getaddrinfo(host, NULL, &hints, &found) != 0 || found == NULL) return false;
  assert(found->ai_family == AF_INET);
  *ip = ((const struct sockaddr_in *)found->ai_addr)->sin_addr;
  freeaddrinfo(found);
  return true;
}

bool client_net_resolve(const char *node, struct sockaddr_in *address, char *error,
  size_t error_size)
{
  assert(address != NULL);
  assert(error != NULL || error_size == 0);
  char host[TALLY_CLIENT_NODE_LEN_MAX + 1];
  size_t length = node == NULL ? 0 : strlen(node);
  const char *colon = node == NULL ? NULL : strrchr(node, ':');
  if (length == 0 || length > TALLY_CLIENT_NODE_LEN_MAX || colon == NULL || colon == node) {
    snprintf(error, error_size, "node '%s' is not host:port", node == NULL ? "" : node);
    return false;
  }
  size_t host_len = (size_t)(colon - node);
  memcpy(host, node, host_len);
  host[host_len] = '\0';
  uint16_t port = 0;
  if (!parse_port(colon + 1, &port)) {
    snprintf(error, error_size, "node '%s': port must be 1..65535", node);
    return false;
  }
  memset(address, 0, sizeof *address);
  address->sin_family = AF_INET;
  address->sin_port = htons(port);
  if (!resolve_host(host, &address->sin_addr)) {
    snprintf(error, error_size, "node '%s': cannot resolve '%s' to an IPv4 address", node, host);
    return false;
  }
  return true;
}

int client_net_open(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert(fd >= -1);
  return fd;
}

int client_net_send(int fd, const struct sockaddr_in *address, const uint8_t *data,
  size_t size)
{
  assert(fd >= 0);
  assert(size > 0 && size <= TALLY_DATAGRAM_SIZE_MAX);
  /* Bounded: EINTR is retried a few times, then reported like any error. */
  for (int round = 0; round < 4; round++) {
    ssize_t sent = sendto(fd, data, size, 0, (const struct sockaddr *)address, sizeof *address);
    if (sent == (ssize_t)size) return 0;
    if (sent >= 0) return EMSGSIZE; /* a datagram goes whole or not at all */
    if (errno != EINTR) return errno;
  }
  return EINTR;
}

long client_net_receive(int fd, uint8_t *data, size_t capacity, struct sockaddr_in *from)
{
  assert(fd >= 0);
  assert(capacity > 0);
  socklen_t from_len = sizeof *from;
  ssize_t received = recvfrom(fd, data, capacity, MSG_TRUNC, (struct sockaddr *)from,
    &from_len);
  if (received >= 0) return (long)received; /* MSG_TRUNC: the real size, even if larger */
  if (errno == EWOULDBLOCK) return -(long)EAGAIN;
  return -(long)errno;
}

int client_net_wait(int fd, uint32_t timeout_ms)
{
  assert(fd >= 0);
  assert(timeout_ms <= TALLY_CLIENT_DURATION_MS_MAX);
  struct pollfd waiting = { .fd = fd, .events = POLLIN };
  int ready = poll(&waiting, 1, (int)timeout_ms);
  if (ready < 0) return errno == EINTR ? 0 : -errno;
  return ready > 0 ? 1 : 0;
}
