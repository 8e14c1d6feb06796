/*
 * test_cluster_udp.c — unit tests of the cluster's UDP backend
 * (control/cluster/io_udp.c) on loopback: the steered pair that gives the
 * heartbeat thread a socket of its own on the replication port. Every
 * datagram whose payload starts with the two magic bytes reaches the
 * steered socket, every other one (other first bytes, one byte, empty) the
 * primary, in order; the steered socket sends from the shared port (peers
 * check the source IP, and a reply to it reaches the same group); a socket
 * without SO_REUSEPORT cannot bind the port beside them.
 *
 * No timing: each socket is read until a sentinel sent last arrives
 * (loopback keeps a socket's order), with a bound of seconds that only a
 * broken steering reaches.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster_io.h"

#define LOOPBACK 0x7f000001u
#define WAIT_NS 5000000000ull /* liveness only: a datagram that never comes */

static const uint8_t magic[2] = { 'T', 'H' };

struct pair {
  struct tally_cluster_udp primary, steered;
  uint16_t port;
};

/* A port free now (bound with 0, read back, closed). */
static uint16_t free_port(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(LOOPBACK) };
  assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof address), 0);
  socklen_t length = sizeof address;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

static void pair_open(struct pair *pair)
{
  char error[256];
  for (int attempt = 0; attempt < 20; attempt++) { /* another process may take a free port */
    pair->port = free_port();
    if (tally_cluster_udp_open_steered(&pair->primary, &pair->steered, LOOPBACK, pair->port,
          magic, error, sizeof error) == 0) {
      return;
    }
    assert_int_equal(pair->primary.fd, -1);
    assert_int_equal(pair->steered.fd, -1);
  }
  fail_msg("no steered pair: %s", error);
}

static void pair_close(struct pair *pair)
{
  tally_cluster_udp_close(&pair->primary);
  tally_cluster_udp_close(&pair->steered);
  assert_int_equal(pair->primary.fd, -1);
}

static void send_to(int fd, uint16_t port, const char *data, size_t size)
{
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port),
    .sin_addr.s_addr = htonl(LOOPBACK) };
  assert_int_equal(sendto(fd, data, size, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)size);
}

/* Reads udp's datagrams until one equal to sentinel; "|"-joined into log. */
static void read_until(struct tally_cluster_udp *udp, const char *sentinel, char *log,
  size_t log_size)
{
  struct tally_cluster_io io = tally_cluster_udp_io(udp);
  log[0] = '\0';
  for (int n = 0; n < 64; n++) {
    char buffer[256];
    struct sockaddr_in from;
    ssize_t size;
    while ((size = tally_cluster_io_receive(&io, (uint8_t *)buffer, sizeof buffer - 1,
              &from)) < 0) {
      assert_true(tally_cluster_io_wait_readable(&io, WAIT_NS));
    }
    buffer[size] = '\0';
    if (strcmp(buffer, sentinel) == 0) return;
    size_t used = strlen(log);
    snprintf(log + used, log_size - used, "%s|", size == 0 ? "(empty)" : buffer);
  }
  fail_msg("no sentinel %s", sentinel);
}

static void test_heartbeats_steered_others_primary(void **state)
{
  (void)state;
  struct pair pair;
  pair_open(&pair);
  int client = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(client >= 0);
  const char *sent[] = { "THbeat1", "TRround", "T", "", "HTx", "tHx", "THbeat2", "Th", "TH" };
  for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++) {
    send_to(client, pair.port, sent[i], strlen(sent[i]));
  }
  send_to(client, pair.port, "THend", 5);
  send_to(client, pair.port, "end", 3);
  char steered[512], primary[512];
  read_until(&pair.steered, "THend", steered, sizeof steered);
  read_until(&pair.primary, "end", primary, sizeof primary);
  assert_string_equal(steered, "THbeat1|THbeat2|TH|");
  assert_string_equal(primary, "TRround|T|(empty)|HTx|tHx|Th|");
  close(client);
  pair_close(&pair);
}

/* Heartbeats leave from the member's own address and port, as before the split. */
static void test_steered_sends_from_the_shared_port(void **state)
{
  (void)state;
  struct pair pair;
  pair_open(&pair);
  int peer = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(LOOPBACK) };
  assert_int_equal(bind(peer, (struct sockaddr *)&address, sizeof address), 0);
  socklen_t length = sizeof address;
  assert_int_equal(getsockname(peer, (struct sockaddr *)&address, &length), 0);
  struct tally_cluster_io io = tally_cluster_udp_io(&pair.steered);
  tally_cluster_io_send(&io, &address, (const uint8_t *)"THx", 3);
  struct tally_cluster_udp peer_udp = { .fd = peer };
  struct tally_cluster_io peer_io = tally_cluster_udp_io(&peer_udp);
  assert_true(tally_cluster_io_wait_readable(&peer_io, WAIT_NS));
  uint8_t buffer[16];
  struct sockaddr_in from;
  assert_int_equal(tally_cluster_io_receive(&peer_io, buffer, sizeof buffer, &from), 3);
  assert_int_equal(ntohs(from.sin_port), pair.port);
  assert_int_equal(ntohl(from.sin_addr.s_addr), LOOPBACK);
  close(peer);
  pair_close(&pair);
}

/* A socket without SO_REUSEPORT (another program, a tallyd of before) cannot take the port. */
static void test_port_stays_taken(void **state)
{
  (void)state;
  struct pair pair;
  pair_open(&pair);
  struct tally_cluster_udp plain;
  char error[256] = "";
  assert_int_equal(tally_cluster_udp_open(&plain, LOOPBACK, pair.port, error, sizeof error), -1);
  assert_int_equal(plain.fd, -1);
  assert_non_null(strstr(error, "cannot bind the replication address"));
  pair_close(&pair);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_heartbeats_steered_others_primary),
    cmocka_unit_test(test_steered_sends_from_the_shared_port),
    cmocka_unit_test(test_port_stays_taken),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
