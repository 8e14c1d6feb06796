/*
 * test_client.c — unit tests of libtally (control/client*.c) against fake
 * nodes in this process: UDP sockets on 127.0.0.1 that decode each batch,
 * keep a dedup table and counts like a node, and answer per a script
 * (ack, drop the ack, stay silent, hold the ack, refuse with a status). The
 * client's clock and random source are fakes the tests move by hand, so every
 * retry, backoff, breaker transition and deadline is driven exactly; nothing
 * here asserts a timing. Real waits only bound how long a datagram already
 * sent on loopback may take to be readable.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tally/batch_wire.h"
#include "tally/client.h"

static const uint8_t test_key[TALLY_KEY_SIZE] = {
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};
#define PRODUCER 7u
#define FIRST_SEQ 100u
/* Real time a datagram already on loopback may take to become readable. */
#define ARRIVAL_WAIT_MS 2000u

/* ---- Fake node ------------------------------------------------------------------ */

enum action_kind {
  ANSWER,   /* apply with dedup, ack applied or duplicate */
  SILENT,   /* neither apply nor answer (a node that is gone) */
  DROP_ACK, /* apply, lose the ack */
  HOLD,     /* apply, keep the ack until server_release */
  REFUSE,   /* answer action.status, apply nothing */
};

struct action {
  enum action_kind kind;
  enum tally_ack_status status;
};

#define SCRIPT_MAX 16
#define LOG_MAX 512
#define COUNTERS_MAX 256

struct fake_server {
  int fd;
  char node[32];
  struct tally_wire_node self; /* its address: the batches it takes must be MAC'd for it (H3) */
  struct sockaddr_in client; /* sender of the last batch */
  struct action fallback;
  struct action script[SCRIPT_MAX]; /* taken first, in order */
  uint32_t script_len;
  uint32_t script_pos;
  uint32_t received;
  uint64_t seqs[LOG_MAX];
  uint16_t attempts[LOG_MAX]; /* the attempt each datagram carried */
  uint32_t pair_counts[LOG_MAX];
  size_t sizes[LOG_MAX];
  uint64_t applied[LOG_MAX]; /* seqs applied (dedup) */
  uint32_t applied_count;
  uint64_t held[LOG_MAX];
  uint32_t held_count;
  char names[COUNTERS_MAX][TALLY_NAME_LEN_MAX + 1];
  int64_t values[COUNTERS_MAX];
  uint32_t counter_count;
};

static void server_open(struct fake_server *server)
{
  memset(server, 0, sizeof *server);
  server->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  assert_true(server->fd >= 0);
  struct sockaddr_in address = { .sin_family = AF_INET };
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(server->fd, (struct sockaddr *)&address, sizeof address), 0);
  socklen_t length = sizeof address;
  assert_int_equal(getsockname(server->fd, (struct sockaddr *)&address, &length), 0);
  snprintf(server->node, sizeof server->node, "127.0.0.1:%u", ntohs(address.sin_port));
  server->self = (struct tally_wire_node){ .ipv4_be = address.sin_addr.s_addr,
    .port_be = address.sin_port };
  server->fallback = (struct action){ .kind = ANSWER };
}

static void server_close(struct fake_server *server)
{
  if (server->fd >= 0) close(server->fd);
  server->fd = -1;
}

static void server_script(struct fake_server *server, struct action action)
{
  assert_true(server->script_len < SCRIPT_MAX);
  server->script[server->script_len++] = action;
}

static void server_ack(struct fake_server *server, uint64_t seq, enum tally_ack_status status)
{
  uint8_t ack[TALLY_WIRE_ACK_SIZE];
  tally_wire_encode_ack(PRODUCER, seq, status, server->self, test_key, ack);
  ssize_t sent = sendto(server->fd, ack, sizeof ack, 0, (struct sockaddr *)&server->client,
    sizeof server->client);
  assert_int_equal(sent, (ssize_t)sizeof ack);
}

static int64_t *server_counter(struct fake_server *server, const char *name, uint32_t name_len)
{
  for (uint32_t i = 0; i < server->counter_count; i++) {
    if (strlen(server->names[i]) == name_len && memcmp(server->names[i], name, name_len) == 0)
      return &server->values[i];
  }
  assert_true(server->counter_count < COUNTERS_MAX);
  memcpy(server->names[server->counter_count], name, name_len);
  server->names[server->counter_count][name_len] = '\0';
  return &server->values[server->counter_count++];
}

/* Applies a batch once per seq, like a node's dedup; true if it was new. */
static bool server_apply(struct fake_server *server, const struct tally_wire_batch *batch)
{
  for (uint32_t i = 0; i < server->applied_count; i++) {
    if (server->applied[i] == batch->seq) return false;
  }
  assert_true(server->applied_count < LOG_MAX);
  server->applied[server->applied_count++] = batch->seq;
  for (uint32_t i = 0; i < batch->count; i++) {
    int64_t *value = server_counter(server, batch->pairs[i].name, batch->pairs[i].name_len);
    *value = (int64_t)((uint64_t)*value + (uint64_t)batch->pairs[i].delta); /* a node refuses */
  }
  return true;
}

static void server_handle(struct fake_server *server, const struct tally_wire_batch *batch)
{
  struct action action = server->script_pos < server->script_len ?
    server->script[server->script_pos++] : server->fallback;
  switch (action.kind) {
  case SILENT:
    return;
  case REFUSE:
    server_ack(server, batch->seq, action.status);
    return;
  case DROP_ACK:
    server_apply(server, batch);
    return;
  case HOLD:
    server_apply(server, batch);
    server->held[server->held_count++] = batch->seq;
    return;
  case ANSWER: {
    bool fresh = server_apply(server, batch);
    server_ack(server, batch->seq, fresh ? TALLY_ACK_APPLIED : TALLY_ACK_DUPLICATE);
    return;
  }
  }
  fail();
}

/* Handles every batch waiting (waiting up to wait_ms for the first); returns how many. */
static uint32_t server_pump(struct fake_server *server, uint32_t wait_ms)
{
  uint32_t count = 0;
  struct pollfd readable = { .fd = server->fd, .events = POLLIN };
  if (wait_ms > 0 && poll(&readable, 1, (int)wait_ms) <= 0) return 0;
  for (;;) {
    uint8_t data[TALLY_DATAGRAM_SIZE_MAX + 1];
    socklen_t length = sizeof server->client;
    ssize_t size = recvfrom(server->fd, data, sizeof data, 0, (struct sockaddr *)&server->client,
      &length);
    if (size < 0) break;
    assert_true((size_t)size <= TALLY_DATAGRAM_SIZE_MAX);
    struct tally_wire_batch batch;
    /* Every batch, a failover's resend too, is MAC'd for the node it reaches (H3). */
    assert_int_equal(tally_wire_check_batch(data, (size_t)size, test_key, server->self), TALLY_OK);
    assert_int_equal(tally_wire_decode_batch(data, (size_t)size, test_key, &batch), TALLY_OK);
    assert_int_equal(batch.producer, PRODUCER);
    assert_true(server->received < LOG_MAX);
    server->seqs[server->received] = batch.seq;
    server->attempts[server->received] = batch.attempt;
    server->pair_counts[server->received] = batch.count;
    server->sizes[server->received] = (size_t)size;
    server->received++;
    server_handle(server, &batch);
    count++;
  }
  return count;
}

static void server_release(struct fake_server *server, uint64_t seq)
{
  for (uint32_t i = 0; i < server->held_count; i++) {
    if (server->held[i] != seq) continue;
    server_ack(server, seq, TALLY_ACK_APPLIED);
    server->held[i] = server->held[--server->held_count];
    return;
  }
  fail_msg("seq %llu not held", (unsigned long long)seq);
}

static int64_t server_value(struct fake_server *server, const char *name)
{
  return *server_counter(server, name, (uint32_t)strlen(name));
}

/* ---- Fake clock, random source, completions -------------------------------------- */

struct world {
  uint64_t now_ms;
  uint64_t tick_ms;        /* added on every clock read (drain tests) */
  uint64_t random;         /* what the random source returns */
  struct fake_server servers[2];
  bool pump_on_clock;      /* the nodes answer whenever the client reads the clock */
  struct tally_client_config config;
  struct tally_client *client;
  uint32_t done_count;
  struct tally_client_completion done[LOG_MAX];
  char first_name[LOG_MAX][TALLY_NAME_LEN_MAX + 1];
  int64_t first_delta[LOG_MAX];
};

static uint64_t fake_now_ms(void *context)
{
  struct world *world = context;
  if (world->pump_on_clock) {
    server_pump(&world->servers[0], 0);
    server_pump(&world->servers[1], 0);
  }
  world->now_ms += world->tick_ms;
  return world->now_ms;
}

static uint64_t fake_random_u64(void *context)
{
  struct world *world = context;
  return world->random;
}

static void record_done(void *context, const struct tally_client_completion *completion)
{
  struct world *world = context;
  assert_true(world->done_count < LOG_MAX);
  uint32_t i = world->done_count++;
  world->done[i] = *completion;
  world->done[i].pairs = NULL; /* valid during the callback only */
  if (completion->pair_count > 0) {
    memcpy(world->first_name[i], completion->pairs[0].name, completion->pairs[0].name_len);
    world->first_name[i][completion->pairs[0].name_len] = '\0';
    world->first_delta[i] = completion->pairs[0].delta;
  }
}

static int setup(void **state)
{
  static struct world world;
  memset(&world, 0, sizeof world);
  world.now_ms = 1000;
  server_open(&world.servers[0]);
  server_open(&world.servers[1]);
  struct tally_client_config *config = &world.config;
  tally_client_config_default(config);
  config->nodes[0] = world.servers[0].node;
  config->node_count = 1;
  memcpy(config->key, test_key, sizeof test_key);
  config->producer = PRODUCER;
  config->first_seq = FIRST_SEQ;
  config->ack_timeout_ms = 100;
  config->batch_timeout_ms = 100000;
  config->attempts_max = 20;
  config->block_ms = 0;
  config->on_done = record_done;
  config->on_done_context = &world;
  config->now_ms = fake_now_ms;
  config->random_u64 = fake_random_u64;
  config->ops_context = &world;
  *state = &world;
  return 0;
}

static int teardown(void **state)
{
  struct world *world = *state;
  tally_client_free(world->client);
  world->client = NULL;
  server_close(&world->servers[0]);
  server_close(&world->servers[1]);
  return 0;
}

static struct tally_client *start(struct world *world)
{
  char error[256] = "";
  world->client = tally_client_new(&world->config, error, sizeof error);
  if (world->client == NULL) fail_msg("tally_client_new: %s", error);
  return world->client;
}

/* Advances the fake clock by ms and polls once without waiting. */
static void advance(struct world *world, uint64_t ms)
{
  world->now_ms += ms;
  assert_int_equal(tally_client_poll(world->client, 0), TALLY_CLIENT_OK);
}

/* Polls until an ack that the server sent is read (the clock stands still). */
static void receive(struct world *world)
{
  assert_int_equal(tally_client_poll(world->client, ARRIVAL_WAIT_MS), TALLY_CLIENT_OK);
}

/* Adds name:delta and seals it as its own batch. */
static void send_one(struct world *world, const char *name, int64_t delta)
{
  assert_int_equal(tally_client_add(world->client, name, delta), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_flush(world->client), TALLY_CLIENT_OK);
}

/* ---- Tests ---------------------------------------------------------------------- */

static void test_ack_path(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct tally_client *client = start(world);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ);
  assert_int_equal(tally_client_add(client, "a", 1), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "b", -2), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "a", 3), TALLY_CLIENT_OK);
  assert_int_equal(server_pump(server, 0), 0); /* nothing sent before the seal */
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_inflight(client), 1);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 1);

  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->seqs[0], FIRST_SEQ);
  assert_int_equal(server->pair_counts[0], 2); /* "a" coalesced */
  assert_int_equal(server_value(server, "a"), 4);
  assert_int_equal(server_value(server, "b"), -2);
  assert_int_equal(world->done_count, 0);
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].seq, FIRST_SEQ);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[0].attempts, 1);
  assert_int_equal(world->done[0].node, 0);
  assert_int_equal(world->done[0].pair_count, 2);
  assert_string_equal(world->first_name[0], "a");
  assert_int_equal(world->first_delta[0], 4);
  assert_int_equal(tally_client_inflight(client), 0);
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  assert_int_equal(stats.batches_sealed, 1);
  assert_int_equal(stats.batches_acked, 1);
  assert_int_equal(stats.retransmissions, 0);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK); /* empty: nothing sealed */
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 1);
}

static void test_retry_same_seq_after_dropped_ack(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  server_script(server, (struct action){ .kind = DROP_ACK });
  struct tally_client *client = start(world);
  send_one(world, "x", 5);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  advance(world, 99);
  assert_int_equal(server_pump(server, 0), 0); /* the ack timeout has not passed */
  advance(world, 1); /* timeout; random 0: resent at once */
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->seqs[1], FIRST_SEQ); /* the same seq */
  assert_int_equal(server->attempts[0], 0);
  assert_int_equal(server->attempts[1], 1); /* numbered, even to the same node */
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_DUPLICATE);
  assert_true(tally_client_status_ok(world->done[0].status));
  assert_int_equal(world->done[0].attempts, 2);
  assert_int_equal(server_value(server, "x"), 5); /* counted once */
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 1);
}

static void test_retry_after_silence(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  server_script(server, (struct action){ .kind = SILENT });
  server_script(server, (struct action){ .kind = SILENT });
  start(world);
  send_one(world, "y", 1);
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
    assert_int_equal(server->seqs[i], FIRST_SEQ);
    assert_int_equal(server->attempts[i], i);
    if (i < 2) advance(world, 100);
  }
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[0].attempts, 3);
  assert_int_equal(server_value(server, "y"), 1);
}

/* Every send of a batch carries the number of earlier sends, to whichever node. */
static void test_attempts_numbered_across_nodes(void **state)
{
  struct world *world = *state;
  struct fake_server *first = &world->servers[0];
  struct fake_server *second = &world->servers[1];
  world->config.nodes[1] = second->node;
  world->config.node_count = 2;
  world->config.breaker_failures = 1000; /* alternate between the nodes */
  first->fallback = (struct action){ .kind = SILENT };
  second->fallback = (struct action){ .kind = SILENT };
  server_script(second, (struct action){ .kind = SILENT });
  server_script(second, (struct action){ .kind = SILENT });
  server_script(second, (struct action){ .kind = ANSWER }); /* the sixth send */
  start(world);
  send_one(world, "m", 1);
  for (uint16_t attempt = 0; attempt < 6; attempt++) {
    struct fake_server *server = attempt % 2u == 0 ? first : second;
    struct fake_server *other = attempt % 2u == 0 ? second : first;
    assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
    assert_int_equal(server_pump(other, 0), 0);
    assert_int_equal(server->seqs[server->received - 1], FIRST_SEQ);
    assert_int_equal(server->attempts[server->received - 1], attempt);
    if (attempt < 5) advance(world, 100); /* ack timeout; random 0: resent at once */
  }
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[0].attempts, 6);
  assert_int_equal(world->done[0].node, 1);
  assert_int_equal(server_value(second, "m"), 1);

  /* The next batch starts again at 0. */
  second->fallback = (struct action){ .kind = ANSWER };
  first->fallback = (struct action){ .kind = ANSWER };
  send_one(world, "m", 1);
  assert_int_equal(server_pump(first, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(first->seqs[first->received - 1], FIRST_SEQ + 1);
  assert_int_equal(first->attempts[first->received - 1], 0);
  receive(world);
  assert_int_equal(world->done_count, 2);
  assert_int_equal(world->done[1].attempts, 1);
}

/* Time from an ack timeout to the resend, found by stepping the clock 1 ms at a time. */
static uint64_t measure_backoff_ms(struct world *world, uint64_t limit_ms)
{
  struct fake_server *server = &world->servers[0];
  advance(world, 100); /* the ack timeout */
  for (uint64_t waited_ms = 0; waited_ms <= limit_ms; waited_ms++) {
    if (server_pump(server, 0) == 1) return waited_ms;
    advance(world, 1);
  }
  fail_msg("no resend within %llu ms", (unsigned long long)limit_ms);
  return 0;
}

static void check_backoffs(struct world *world, uint64_t random, const uint64_t *expected_ms,
  uint32_t count)
{
  world->random = random;
  world->config.backoff_base_ms = 10;
  world->config.backoff_cap_ms = 100;
  world->config.breaker_failures = 1000; /* keep the node usable: backoff only */
  world->servers[0].fallback = (struct action){ .kind = SILENT };
  start(world);
  send_one(world, "z", 1);
  assert_int_equal(server_pump(&world->servers[0], ARRIVAL_WAIT_MS), 1);
  for (uint32_t retry = 0; retry < count; retry++) {
    uint64_t delay_ms = measure_backoff_ms(world, 200);
    uint64_t cap_ms = 10u << retry < 100u ? 10u << retry : 100u;
    assert_true(delay_ms <= cap_ms);
    assert_int_equal(delay_ms, expected_ms[retry]);
  }
  assert_int_equal(world->done_count, 0);
}

static void test_backoff_caps_grow_to_the_cap(void **state)
{
  /* random at its maximum: each delay is its cap, min(100, 10 * 2^retry). */
  static const uint64_t expected_ms[] = { 10, 20, 40, 80, 100, 100 };
  check_backoffs(*state, UINT64_MAX, expected_ms, 6);
}

static void test_backoff_full_jitter_low_and_middle(void **state)
{
  struct world *world = *state;
  static const uint64_t zero_ms[] = { 0, 0, 0, 0 };
  check_backoffs(world, 0, zero_ms, 4);
  tally_client_free(world->client);
  world->client = NULL;
  world->done_count = 0;
  /* random at half its range: half of each cap (rounded down, of cap + 1 values). */
  static const uint64_t half_ms[] = { 5, 10, 20, 40, 50, 50 };
  check_backoffs(world, UINT64_C(1) << 63, half_ms, 6);
}

/* One node, silent; resends at once (random 0); the breaker opens after 3 failures. */
static struct tally_client *start_breaker_world(struct world *world)
{
  world->config.breaker_failures = 3;
  world->config.breaker_cooldown_ms = 500;
  world->servers[0].fallback = (struct action){ .kind = SILENT };
  struct tally_client *client = start(world);
  send_one(world, "b", 1);
  for (uint32_t failure = 1; failure <= 3; failure++) {
    assert_int_equal(server_pump(&world->servers[0], ARRIVAL_WAIT_MS), 1);
    assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_CLOSED);
    advance(world, 100);
  }
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_OPEN);
  assert_int_equal(server_pump(&world->servers[0], 0), 0); /* open: nothing goes out */
  return client;
}

static void test_breaker_opens_probes_and_closes(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct tally_client *client = start_breaker_world(world);
  advance(world, 499);
  assert_int_equal(server_pump(server, 0), 0);
  send_one(world, "c", 1); /* seq 101 waits for the node too */
  assert_int_equal(server_pump(server, 0), 0);
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_OPEN);

  server->fallback = (struct action){ .kind = ANSWER };
  advance(world, 1); /* cool-down over: one probe, the oldest batch */
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_HALF_OPEN);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->seqs[server->received - 1], FIRST_SEQ);
  receive(world);
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_CLOSED);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[0].attempts, 4);

  advance(world, 100); /* seq 101 retried once the probe had its answer */
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->seqs[server->received - 1], FIRST_SEQ + 1);
  receive(world);
  assert_int_equal(world->done_count, 2);
  assert_int_equal(world->done[1].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[1].attempts, 1);
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  assert_int_equal(stats.breaker_opens, 1);
}

static void test_breaker_failed_probe_reopens(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct tally_client *client = start_breaker_world(world);
  advance(world, 500);
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_HALF_OPEN);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1); /* the probe */
  advance(world, 50);
  assert_int_equal(server_pump(server, 0), 0); /* half-open: one probe only */
  advance(world, 50); /* the probe times out */
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_OPEN);
  advance(world, 499);
  assert_int_equal(server_pump(server, 0), 0); /* a new cool-down */
  advance(world, 1);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_HALF_OPEN);
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  assert_int_equal(stats.breaker_opens, 2);
  assert_int_equal(world->done_count, 0);
}

static void test_failover_to_the_second_node(void **state)
{
  struct world *world = *state;
  struct fake_server *first = &world->servers[0];
  struct fake_server *second = &world->servers[1];
  first->fallback = (struct action){ .kind = SILENT };
  world->config.nodes[1] = second->node;
  world->config.node_count = 2;
  world->config.breaker_failures = 2;
  struct tally_client *client = start(world);
  for (uint32_t i = 0; i < 2; i++) {
    send_one(world, "f", 1);
    assert_int_equal(server_pump(first, ARRIVAL_WAIT_MS), 1); /* preferred node first */
    assert_int_equal(server_pump(second, 0), 0);
    advance(world, 100);
    assert_int_equal(server_pump(second, ARRIVAL_WAIT_MS), 1); /* the retry fails over */
    receive(world);
    assert_int_equal(world->done_count, i + 1);
    assert_int_equal(world->done[i].status, TALLY_CLIENT_OK);
    assert_int_equal(world->done[i].attempts, 2);
    assert_int_equal(world->done[i].node, 1);
  }
  assert_int_equal(tally_client_breaker(client, 0), TALLY_CLIENT_BREAKER_OPEN);
  send_one(world, "f", 1); /* the first node's breaker is open: straight to the second */
  assert_int_equal(server_pump(second, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server_pump(first, 0), 0);
  receive(world);
  assert_int_equal(world->done_count, 3);
  assert_int_equal(world->done[2].attempts, 1);
  assert_int_equal(world->done[2].node, 1);
  assert_int_equal(server_value(second, "f"), 3);
}

static void test_inflight_bound(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  server->fallback = (struct action){ .kind = HOLD };
  world->config.inflight_max = 2;
  struct tally_client *client = start(world);
  send_one(world, "a", 1);
  send_one(world, "b", 1);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 2);
  assert_int_equal(tally_client_add(client, "c", 1), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_EBUSY);
  assert_int_equal(tally_client_inflight(client), 2);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 2);

  server_release(server, FIRST_SEQ + 1); /* the newer one ends first */
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].seq, FIRST_SEQ + 1);
  /* Still full: seq 100 holds the window (102 - 100 would exceed it). */
  assert_int_equal(tally_client_inflight(client), 2);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_EBUSY);

  /* Fill the open batch to 64 pairs: accepted, but it cannot be sealed. */
  char name[16];
  for (uint32_t i = 1; i < TALLY_BATCH_PAIRS_MAX; i++) {
    snprintf(name, sizeof name, "n%u", i);
    assert_int_equal(tally_client_add(client, name, 1), TALLY_CLIENT_OK);
  }
  assert_int_equal(tally_client_add(client, "one.more", 1), TALLY_CLIENT_EBUSY);
  assert_int_equal(tally_client_add(client, "c", 1), TALLY_CLIENT_OK); /* coalesces */
  assert_int_equal(server_pump(server, 0), 0);

  server_release(server, FIRST_SEQ);
  receive(world); /* the ack frees the window; poll seals the full batch */
  assert_int_equal(world->done_count, 2);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 3);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->pair_counts[2], TALLY_BATCH_PAIRS_MAX);
  assert_int_equal(server_value(server, "c"), 2);
  assert_int_equal(tally_client_add(client, "one.more", 1), TALLY_CLIENT_OK);
}

static void test_non_retryable_reported_once(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  static const enum tally_ack_status refusals[] = { TALLY_ACK_COUNTERS_FULL, TALLY_ACK_STALE,
    TALLY_ACK_MALFORMED, TALLY_ACK_OVERFLOW };
  static const enum tally_client_status expected[] = { TALLY_CLIENT_COUNTERS_FULL,
    TALLY_CLIENT_STALE, TALLY_CLIENT_MALFORMED, TALLY_CLIENT_OVERFLOW };
  for (uint32_t i = 0; i < 4; i++) {
    server_script(server, (struct action){ .kind = REFUSE, .status = refusals[i] });
  }
  server->fallback = (struct action){ .kind = SILENT };
  start(world);
  for (uint32_t i = 0; i < 4; i++) {
    send_one(world, "r", 1);
    assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
    receive(world);
  }
  advance(world, 10000); /* long past every ack timeout and backoff */
  advance(world, 10000);
  assert_int_equal(server_pump(server, 0), 0); /* none was resent */
  assert_int_equal(world->done_count, 4);
  for (uint32_t i = 0; i < 4; i++) {
    assert_int_equal(world->done[i].status, expected[i]);
    assert_int_equal(world->done[i].attempts, 1);
    assert_false(world->done[i].uncertain);
    assert_false(tally_client_status_retryable(world->done[i].status));
    assert_false(tally_client_status_ok(world->done[i].status));
  }
  assert_int_equal(server->applied_count, 0);
}

static void test_read_only_is_retried(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  const struct action read_only = { .kind = REFUSE, .status = TALLY_ACK_READ_ONLY };
  const struct action full = { .kind = REFUSE, .status = TALLY_ACK_PRODUCERS_FULL };
  server_script(server, read_only);
  server_script(server, full);
  world->config.attempts_max = 3;
  start(world);
  send_one(world, "w", 1); /* read-only, producers full, then applied */
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
    receive(world); /* the refusal fails the attempt; random 0: resent at once */
  }
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
  assert_int_equal(world->done[0].attempts, 3);

  server->fallback = read_only; /* then read-only until attempts run out */
  send_one(world, "w", 1);
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
    receive(world);
  }
  assert_int_equal(world->done_count, 2);
  assert_int_equal(world->done[1].status, TALLY_CLIENT_READ_ONLY);
  assert_int_equal(world->done[1].attempts, 3);
  assert_false(world->done[1].uncertain); /* every attempt was answered: not counted */
  assert_true(tally_client_status_retryable(TALLY_CLIENT_READ_ONLY));
  assert_true(tally_client_status_retryable(TALLY_CLIENT_PRODUCERS_FULL));
  assert_int_equal(server_value(server, "w"), 1);
}

static void test_deadline_reported_as_timeout(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  server->fallback = (struct action){ .kind = SILENT };
  world->config.batch_timeout_ms = 450;
  world->config.backoff_base_ms = 100;
  world->config.backoff_cap_ms = 1000;
  world->random = UINT64_MAX;
  start(world);
  send_one(world, "d", 1);
  uint64_t sealed_ms = world->now_ms;
  for (uint32_t step = 0; step < 100 && world->done_count == 0; step++) {
    server_pump(server, 0);
    advance(world, 10);
  }
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->now_ms - sealed_ms, 450); /* ended by the deadline, not earlier */
  assert_int_equal(world->done[0].status, TALLY_CLIENT_TIMEOUT);
  assert_true(world->done[0].uncertain);
  assert_true(world->done[0].attempts >= 2);
  assert_true(world->done[0].attempts < world->config.attempts_max);
  assert_true(tally_client_status_retryable(TALLY_CLIENT_TIMEOUT));
  assert_int_equal(tally_client_inflight(world->client), 0);
}

static void test_attempts_exhausted_reported_as_timeout(void **state)
{
  struct world *world = *state;
  world->servers[0].fallback = (struct action){ .kind = SILENT };
  world->config.attempts_max = 2;
  start(world);
  send_one(world, "e", 1);
  advance(world, 100);
  advance(world, 100);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_TIMEOUT);
  assert_int_equal(world->done[0].attempts, 2);
  assert_true(world->done[0].uncertain);
  assert_int_equal(server_pump(&world->servers[0], ARRIVAL_WAIT_MS), 2);
}

static void test_drain_waits_for_every_batch(void **state)
{
  struct world *world = *state;
  world->pump_on_clock = true; /* the node answers as time passes */
  world->tick_ms = 1;
  world->config.inflight_max = 4;
  world->config.block_ms = 1000;
  struct tally_client *client = start(world);
  char name[16];
  for (uint32_t i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "drain.%u", i);
    send_one(world, name, i);
  }
  assert_int_equal(tally_client_add(client, "drain.open", 1), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_drain(client, 10000), TALLY_CLIENT_OK);
  assert_int_equal(world->done_count, 11); /* the open batch was flushed too */
  for (uint32_t i = 0; i < world->done_count; i++) {
    assert_int_equal(world->done[i].status, TALLY_CLIENT_OK);
  }
  assert_int_equal(tally_client_inflight(client), 0);
  assert_int_equal(server_value(&world->servers[0], "drain.9"), 9);
  assert_int_equal(server_value(&world->servers[0], "drain.open"), 1);
}

static void test_drain_times_out_and_free_cancels(void **state)
{
  struct world *world = *state;
  world->servers[0].fallback = (struct action){ .kind = SILENT };
  world->tick_ms = 1;
  struct tally_client *client = start(world);
  send_one(world, "k1", 1);
  send_one(world, "k2", 2);
  assert_int_equal(tally_client_drain(client, 50), TALLY_CLIENT_TIMEOUT);
  assert_int_equal(world->done_count, 0);
  assert_int_equal(tally_client_inflight(client), 2);
  assert_int_equal(tally_client_add(client, "k3", 3), TALLY_CLIENT_OK);
  tally_client_free(client);
  world->client = NULL;
  assert_int_equal(world->done_count, 3); /* nothing dropped silently */
  assert_int_equal(world->done[0].seq, FIRST_SEQ);
  assert_int_equal(world->done[1].seq, FIRST_SEQ + 1);
  for (uint32_t i = 0; i < 2; i++) {
    assert_int_equal(world->done[i].status, TALLY_CLIENT_CANCELLED);
    assert_int_equal(world->done[i].attempts, 1);
    assert_true(world->done[i].uncertain);
  }
  assert_int_equal(world->done[2].seq, TALLY_CLIENT_SEQ_NONE);
  assert_int_equal(world->done[2].status, TALLY_CLIENT_CANCELLED);
  assert_int_equal(world->done[2].attempts, 0);
  assert_false(world->done[2].uncertain);
  assert_string_equal(world->first_name[2], "k3");
  assert_int_equal(world->first_delta[2], 3);
}

static void test_seal_at_pair_and_byte_limits(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct tally_client *client = start(world);
  char name[TALLY_NAME_LEN_MAX + 1];
  for (uint32_t i = 0; i < TALLY_BATCH_PAIRS_MAX; i++) {
    snprintf(name, sizeof name, "p%u", i);
    assert_int_equal(tally_client_add(client, name, 1), TALLY_CLIENT_OK);
  }
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 1); /* sealed at 64 pairs */
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->pair_counts[0], TALLY_BATCH_PAIRS_MAX);

  /* 224-byte names: 233 bytes a pair, so 6 fit 1472 bytes with header and MAC. */
  static_assert(TALLY_NAME_LEN_MAX == 224u, "the sizes below");
  memset(name, 'L', TALLY_NAME_LEN_MAX);
  name[TALLY_NAME_LEN_MAX] = '\0';
  for (uint32_t i = 0; i < 7; i++) {
    snprintf(name, 4, "%03u", i);
    name[3] = 'L';
    assert_int_equal(tally_client_add(client, name, 1), TALLY_CLIENT_OK);
  }
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 2); /* the 7th did not fit */
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->pair_counts[1], 6);
  assert_true(server->sizes[1] <= TALLY_DATAGRAM_SIZE_MAX);
  assert_int_equal(server->sizes[1], TALLY_WIRE_HEADER_SIZE + 6u * 233u + TALLY_MAC_SIZE);

  /* A sum that would overflow int64 goes into the next batch instead. */
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "big", INT64_MAX), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "big", 1), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ + 5);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 3);
  assert_int_equal(server->pair_counts[3], 1);
  assert_int_equal(server->pair_counts[4], 1);
}

static void test_forged_and_stray_acks_ignored(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct fake_server *stranger = &world->servers[1];
  server->fallback = (struct action){ .kind = SILENT };
  struct tally_client *client = start(world);
  send_one(world, "s", 1);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  uint8_t ack[TALLY_WIRE_ACK_SIZE];
  uint8_t wrong_key[TALLY_KEY_SIZE] = { 9 };
  tally_wire_encode_ack(PRODUCER, FIRST_SEQ, TALLY_ACK_APPLIED, server->self, wrong_key, ack);
  assert_int_equal(sendto(server->fd, ack, sizeof ack, 0, (struct sockaddr *)&server->client,
    sizeof server->client), (ssize_t)sizeof ack);
  tally_wire_encode_ack(PRODUCER + 1, FIRST_SEQ, TALLY_ACK_APPLIED, server->self, test_key, ack);
  assert_int_equal(sendto(server->fd, ack, sizeof ack, 0, (struct sockaddr *)&server->client,
    sizeof server->client), (ssize_t)sizeof ack);
  server_ack(server, FIRST_SEQ + 7, TALLY_ACK_APPLIED); /* a seq not in flight */
  stranger->client = server->client;
  server_ack(stranger, FIRST_SEQ, TALLY_ACK_APPLIED); /* right MAC, not from a node */
  for (uint32_t i = 0; i < 4; i++) receive(world);
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  assert_int_equal(stats.acks_ignored, 4);
  assert_int_equal(world->done_count, 0);
  server_ack(server, FIRST_SEQ, TALLY_ACK_APPLIED);
  receive(world);
  assert_int_equal(world->done_count, 1);
  assert_int_equal(world->done[0].status, TALLY_CLIENT_OK);
}

/* Tagged increments, as key text or tag arrays, in any order: one canonical pair. */
static void test_tagged_adds_canonical(void **state)
{
  struct world *world = *state;
  struct fake_server *server = &world->servers[0];
  struct tally_client *client = start(world);
  const struct tally_tag tags[] = {
    { .key = "status", .key_len = 6, .value = "500", .value_len = 3 },
    { .key = "method", .key_len = 6, .value = "GET", .value_len = 3 },
    { .key = "canary", .key_len = 6, .value = NULL, .value_len = 0 },
  };
  assert_int_equal(tally_client_add_tagged(client, "req", tags, 2, 1), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "req{status=500,method=GET}", 2), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add(client, "req{method=GET,status=500}", 4), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add_tagged(client, "req", tags, 3, 8), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_add_tagged(client, "req", NULL, 0, 16), TALLY_CLIENT_OK);
  assert_memory_equal(tags[0].key, "status", 6); /* the caller's array is not reordered */
  const struct tally_tag twice[] = {
    { .key = "a", .key_len = 1, .value = "1", .value_len = 1 },
    { .key = "a", .key_len = 1, .value = "2", .value_len = 1 },
  };
  assert_int_equal(tally_client_add_tagged(client, "req", twice, 2, 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add_tagged(client, "re{q", tags, 1, 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add_tagged(client, "req", tags, TALLY_TAGS_MAX + 1, 1),
    TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add(client, "req{a=1,a=2}", 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add(client, "req{a=1", 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK);
  assert_int_equal(server_pump(server, ARRIVAL_WAIT_MS), 1);
  assert_int_equal(server->pair_counts[0], 3); /* the first three coalesced */
  assert_int_equal(server_value(server, "req{method=GET,status=500}"), 7);
  assert_int_equal(server_value(server, "req{canary,method=GET,status=500}"), 8);
  assert_int_equal(server_value(server, "req"), 16);
}

static void test_invalid_config_and_names(void **state)
{
  struct world *world = *state;
  struct tally_client_config good = world->config;
  char error[256];
  struct { const char *what; struct tally_client_config config; } bad[9];
  for (uint32_t i = 0; i < 9; i++) bad[i].config = good;
  bad[0].what = "producer 0"; bad[0].config.producer = 0;
  bad[1].what = "inflight 65"; bad[1].config.inflight_max = TALLY_DEDUP_WINDOW + 1;
  bad[2].what = "attempts 0"; bad[2].config.attempts_max = 0;
  bad[3].what = "no callback"; bad[3].config.on_done = NULL;
  bad[4].what = "no nodes"; bad[4].config.node_count = 0;
  bad[5].what = "bad node"; bad[5].config.nodes[0] = "127.0.0.1";
  bad[6].what = "bad port"; bad[6].config.nodes[0] = "127.0.0.1:70000";
  bad[7].what = "twice"; bad[7].config.nodes[1] = good.nodes[0];
  bad[7].config.node_count = 2;
  bad[8].what = "cap < base"; bad[8].config.backoff_cap_ms = bad[8].config.backoff_base_ms - 1;
  for (uint32_t i = 0; i < 9; i++) {
    error[0] = '\0';
    if (tally_client_new(&bad[i].config, error, sizeof error) != NULL) fail_msg("%s", bad[i].what);
    assert_true(strlen(error) > 0);
  }
  struct tally_client *client = start(world);
  char too_long[TALLY_NAME_LEN_MAX + 2];
  memset(too_long, 'a', sizeof too_long - 1);
  too_long[sizeof too_long - 1] = '\0';
  assert_int_equal(tally_client_add(client, too_long, 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add(client, "", 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add(client, "a:b", 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_add(client, "a b", 1), TALLY_CLIENT_EINVAL);
  assert_int_equal(tally_client_next_seq(client), FIRST_SEQ);
  assert_int_equal(tally_client_flush(client), TALLY_CLIENT_OK);
  assert_int_equal(tally_client_inflight(client), 0); /* nothing was accepted */
}

static void test_status_classification(void **state)
{
  (void)state;
  for (uint32_t i = 0; i < TALLY_CLIENT_STATUS_COUNT; i++) {
    enum tally_client_status status = (enum tally_client_status)i;
    bool retryable = status == TALLY_CLIENT_TIMEOUT || status == TALLY_CLIENT_READ_ONLY ||
      status == TALLY_CLIENT_PRODUCERS_FULL || status == TALLY_CLIENT_NETWORK ||
      status == TALLY_CLIENT_CANCELLED || status == TALLY_CLIENT_EBUSY;
    assert_int_equal(tally_client_status_retryable(status), retryable);
    assert_true(strlen(tally_client_status_name(status)) > 0);
    assert_true(strlen(tally_client_status_text(status)) > 0);
  }
  assert_string_equal(tally_client_status_name(TALLY_CLIENT_READ_ONLY), "read_only");
  assert_false(tally_client_status_retryable(TALLY_CLIENT_STATUS_COUNT));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_ack_path, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tagged_adds_canonical, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_same_seq_after_dropped_ack, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_after_silence, setup, teardown),
    cmocka_unit_test_setup_teardown(test_attempts_numbered_across_nodes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_backoff_caps_grow_to_the_cap, setup, teardown),
    cmocka_unit_test_setup_teardown(test_backoff_full_jitter_low_and_middle, setup, teardown),
    cmocka_unit_test_setup_teardown(test_breaker_opens_probes_and_closes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_breaker_failed_probe_reopens, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failover_to_the_second_node, setup, teardown),
    cmocka_unit_test_setup_teardown(test_inflight_bound, setup, teardown),
    cmocka_unit_test_setup_teardown(test_non_retryable_reported_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_only_is_retried, setup, teardown),
    cmocka_unit_test_setup_teardown(test_deadline_reported_as_timeout, setup, teardown),
    cmocka_unit_test_setup_teardown(test_attempts_exhausted_reported_as_timeout, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_drain_waits_for_every_batch, setup, teardown),
    cmocka_unit_test_setup_teardown(test_drain_times_out_and_free_cancels, setup, teardown),
    cmocka_unit_test_setup_teardown(test_seal_at_pair_and_byte_limits, setup, teardown),
    cmocka_unit_test_setup_teardown(test_forged_and_stray_acks_ignored, setup, teardown),
    cmocka_unit_test_setup_teardown(test_invalid_config_and_names, setup, teardown),
    cmocka_unit_test_setup_teardown(test_status_classification, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
