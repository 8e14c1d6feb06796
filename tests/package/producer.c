/*
 * producer.c — a reliable producer built against the INSTALLED libtally, as a
 * user of the Debian package would build one (tests/package/deb.sh):
 *
 *   cc producer.c $(pkg-config --cflags --libs libtally)
 *
 * It uses only the public headers (<tally/client.h> and what it includes) and
 * the library's exported API. It plays both ends over loopback, in one
 * process, so no tallyd is needed: a UDP socket on 127.0.0.1 stands in for a
 * node. The client batches three increments (two coalesce), signs and sends
 * the batch; the "node" decodes and verifies it with the library's wire codec
 * (tally_wire_decode_batch: MAC, producer, seq, pairs) and answers with a
 * signed APPLIED ack (tally_wire_encode_ack); the client's drain must then end
 * the batch exactly once with OK.
 *
 * Prints "producer: ok ..." and exits 0, or names the first check that failed
 * and exits 1.
 *
 * Thread: its own process, one thread (drives the client and the node socket).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tally/client.h>
#include <tally/name.h>

#define PRODUCER_ID 4242u
#define FIRST_SEQ 7u
/* Bounds on waiting, so that a broken library fails the test instead of hanging it. */
#define WAIT_MS_MAX 10000

struct outcome {
  unsigned completions;
  enum tally_client_status status;
  uint64_t seq;
};

static int fail(const char *what)
{
  fprintf(stderr, "producer: FAILED: %s\n", what);
  return 1;
}

static void on_done(void *context, const struct tally_client_completion *done)
{
  struct outcome *outcome = context;
  outcome->completions++;
  outcome->status = done->status;
  outcome->seq = done->seq;
}

/* The stand-in node: a UDP socket bound to 127.0.0.1 on a port the kernel picks. */
static int node_open(char *address, size_t address_size)
{
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in self = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t length = sizeof self;
  if (fd < 0 || bind(fd, (struct sockaddr *)&self, sizeof self) != 0 ||
      getsockname(fd, (struct sockaddr *)&self, &length) != 0)
    return -1;
  snprintf(address, address_size, "127.0.0.1:%u", (unsigned)ntohs(self.sin_port));
  return fd;
}

static int64_t pair_delta(const struct tally_wire_batch *batch, const char *name)
{
  for (uint32_t i = 0; i < batch->count; i++)
    if (batch->pairs[i].name_len == strlen(name) &&
        memcmp(batch->pairs[i].name, name, batch->pairs[i].name_len) == 0)
      return batch->pairs[i].delta;
  return INT64_MIN;
}

/* Receives the client's batch, checks it, answers APPLIED. 0 on success. */
static int node_answer(int fd, const uint8_t key[TALLY_KEY_SIZE])
{
  static uint8_t datagram[TALLY_DATAGRAM_SIZE_MAX];
  static struct tally_wire_batch batch;
  struct sockaddr_in client;
  socklen_t length = sizeof client;
  struct pollfd ready = {.fd = fd, .events = POLLIN};
  if (poll(&ready, 1, WAIT_MS_MAX) != 1)
    return fail("no batch datagram reached the node");
  ssize_t size = recvfrom(fd, datagram, sizeof datagram, 0, (struct sockaddr *)&client, &length);
  if (size <= 0)
    return fail("recvfrom");
  enum tally_reason reason = tally_wire_decode_batch(datagram, (size_t)size, key, &batch);
  if (reason != TALLY_OK) {
    fprintf(stderr, "producer: decode: %s\n", tally_reason_text(reason));
    return fail("the batch did not decode under the ingest key");
  }
  if (batch.producer != PRODUCER_ID || batch.seq != FIRST_SEQ || batch.attempt != 0)
    return fail("batch producer, seq or attempt");
  if (batch.count != 2 || pair_delta(&batch, "pkg.requests") != 3 ||
      pair_delta(&batch, "pkg.bytes") != 1500)
    return fail("batch pairs (two names, pkg.requests coalesced to 3)");
  uint8_t ack[TALLY_WIRE_ACK_SIZE];
  tally_wire_encode_ack(batch.producer, batch.seq, TALLY_ACK_APPLIED, batch.node, key, ack);
  if (sendto(fd, ack, sizeof ack, 0, (struct sockaddr *)&client, length) != (ssize_t)sizeof ack)
    return fail("sendto (ack)");
  return 0;
}

int main(void)
{
  uint8_t key[TALLY_KEY_SIZE];
  for (unsigned i = 0; i < TALLY_KEY_SIZE; i++)
    key[i] = (uint8_t)(i * 7u + 1u);
  if (!tally_name_valid("pkg.requests", strlen("pkg.requests")) || tally_name_valid("a:b", 3))
    return fail("tally_name_valid (tally/name.h)");

  char address[32];
  int node = node_open(address, sizeof address);
  if (node < 0)
    return fail("node socket on 127.0.0.1");

  struct outcome outcome = {0};
  struct tally_client_config config;
  tally_client_config_default(&config);
  config.nodes[0] = address;
  config.node_count = 1;
  memcpy(config.key, key, sizeof key);
  config.producer = PRODUCER_ID;
  config.first_seq = FIRST_SEQ;
  config.ack_timeout_ms = WAIT_MS_MAX;
  config.batch_timeout_ms = 3 * WAIT_MS_MAX;
  config.on_done = on_done;
  config.on_done_context = &outcome;

  char error[256];
  struct tally_client *client = tally_client_new(&config, error, sizeof error);
  if (client == NULL) {
    fprintf(stderr, "producer: tally_client_new: %s\n", error);
    return fail("tally_client_new");
  }
  if (tally_client_add(client, "pkg.requests", 1) != TALLY_CLIENT_OK ||
      tally_client_add(client, "pkg.bytes", 1500) != TALLY_CLIENT_OK ||
      tally_client_add(client, "pkg.requests", 2) != TALLY_CLIENT_OK)
    return fail("tally_client_add");
  if (tally_client_add(client, "bad name", 1) != TALLY_CLIENT_EINVAL)
    return fail("tally_client_add of an invalid name is EINVAL");
  if (tally_client_flush(client) != TALLY_CLIENT_OK)
    return fail("tally_client_flush");
  if (node_answer(node, key) != 0)
    return 1;
  enum tally_client_status drained = tally_client_drain(client, 3 * WAIT_MS_MAX);
  if (drained != TALLY_CLIENT_OK) {
    fprintf(stderr, "producer: drain: %s\n", tally_client_status_name(drained));
    return fail("tally_client_drain");
  }
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  if (outcome.completions != 1 || outcome.status != TALLY_CLIENT_OK || outcome.seq != FIRST_SEQ)
    return fail("exactly one completion, OK, with the first seq");
  if (stats.batches_sealed != 1 || stats.batches_acked != 1 ||
      tally_client_next_seq(client) != FIRST_SEQ + 1)
    return fail("client stats and next seq");
  tally_client_free(client);
  close(node);
  printf("producer: ok: batch seq %u acked (%s), %llu datagram(s) sent\n", FIRST_SEQ,
    tally_client_status_name(outcome.status), (unsigned long long)stats.datagrams_sent);
  return 0;
}
