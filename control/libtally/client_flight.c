/*
 * client_flight.c — libtally's sealed batches, from seal to their one
 * completion: the first send, acks, ack timeouts, backoff and resends with
 * the same (producer, seq) and a growing attempt number, failover down the
 * node list through the per-node breakers, the per-batch deadline, and the
 * completion callback.
 *
 * Batches live in a ring of config.inflight_max slots indexed by seq. A slot
 * is reused only once every older seq has ended, so the seqs in flight never
 * span more than inflight_max <= TALLY_DEDUP_WINDOW: the node never answers
 * STALE to a batch this client still waits for. Everything is bounded by the
 * ring: each poll reads at most TALLY_CLIENT_RECV_BURST_MAX datagrams and
 * visits every slot once.
 *
 * Thread: the producer's (the one thread that drives a client, client.h).
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "client_internal.h"

static struct client_batch *slot_of(struct tally_client *client, uint64_t seq)
{
  assert(client->config.inflight_max >= 1);
  assert(seq >= client->oldest_seq && seq < client->next_seq);
  return &client->batches[seq % client->config.inflight_max];
}

bool client_has_room(const struct tally_client *client)
{
  assert(client->oldest_seq <= client->next_seq);
  assert(client->next_seq - client->oldest_seq <= client->config.inflight_max);
  return client->next_seq - client->oldest_seq < client->config.inflight_max &&
    client->next_seq != TALLY_CLIENT_SEQ_NONE;
}

/* Frees the slots of ended batches at the old end of the window. */
static void retire(struct tally_client *client)
{
  assert(client->oldest_seq <= client->next_seq);
  /* Bounded by the window: at most inflight_max slots. */
  while (client->oldest_seq < client->next_seq) {
    struct client_batch *batch = slot_of(client, client->oldest_seq);
    if (batch->state != CLIENT_BATCH_DONE) break;
    batch->state = CLIENT_BATCH_FREE;
    client->oldest_seq++;
  }
  assert(client->next_seq - client->oldest_seq <= client->config.inflight_max);
}

/*
 * Ends a batch: decided_node is the node whose answer decided it, or
 * TALLY_CLIENT_NODE_NONE (deadline, attempts exhausted without an answer,
 * cancellation). Reports it, then frees what it can of the window.
 */
static void finish(struct tally_client *client, struct client_batch *batch,
  enum tally_client_status status, uint32_t decided_node)
{
  assert(batch->state == CLIENT_BATCH_WAITING || batch->state == CLIENT_BATCH_BACKOFF);
  assert((uint32_t)status < TALLY_CLIENT_STATUS_COUNT);
  if (batch->state == CLIENT_BATCH_WAITING) {
    /* The latest attempt's own answer will never be looked at. */
    if (batch->probe) tally_breaker_release_probe(&client->breakers[batch->node]);
    if (decided_node != batch->node) batch->uncertain = true;
  }
  bool ok = tally_client_status_ok(status);
  struct tally_client_completion completion = {
    .seq = batch->wire.seq,
    .status = status,
    .attempts = batch->attempts,
    .node = decided_node != TALLY_CLIENT_NODE_NONE ? decided_node : batch->node,
    .uncertain = ok ? false : batch->uncertain,
    .pair_count = batch->wire.count,
    .pairs = batch->wire.pairs,
  };
  batch->state = CLIENT_BATCH_DONE;
  if (ok) client->stats.batches_acked++;
  if (status == TALLY_CLIENT_DUPLICATE) client->stats.batches_duplicate++;
  if (!ok) client->stats.batches_failed++;
  client->in_callback = true;
  client->config.on_done(client->config.on_done_context, &completion);
  client->in_callback = false;
  retire(client);
}

/* Node index as a batch's destination: its resolved ingest address. */
static struct tally_wire_node client_node_of(const struct tally_client *client, uint32_t node)
{
  assert(node < client->node_count);
  return (struct tally_wire_node){ .ipv4_be = client->addresses[node].sin_addr.s_addr,
    .port_be = client->addresses[node].sin_port };
}

/* First node at or after start (wrapping) whose breaker lets a datagram through. */
static bool pick_node(struct tally_client *client, uint32_t start, uint64_t now_ms,
  uint32_t *node, bool *probe)
{
  assert(start < client->node_count);
  assert(node != NULL);
  for (uint32_t i = 0; i < client->node_count; i++) {
    uint32_t candidate = (start + i) % client->node_count;
    if (tally_breaker_acquire(&client->breakers[candidate], now_ms, probe)) {
      *node = candidate;
      return true;
    }
  }
  return false;
}

/* Every breaker is open: wait, without spending an attempt, until one may let through. */
static void wait_for_a_node(struct tally_client *client, struct client_batch *batch,
  uint64_t now_ms)
{
  uint64_t ready_ms = UINT64_MAX;
  for (uint32_t i = 0; i < client->node_count; i++) {
    uint64_t node_ready_ms = tally_breaker_ready_ms(&client->breakers[i], now_ms,
      client->config.ack_timeout_ms);
    if (node_ready_ms < ready_ms) ready_ms = node_ready_ms;
  }
  assert(ready_ms > now_ms);
  assert(ready_ms != UINT64_MAX);
  batch->state = CLIENT_BATCH_BACKOFF;
  batch->timer_ms = ready_ms;
}

/* The latest attempt failed with status: retry after a backoff, or end. */
static void attempt_failed(struct tally_client *client, struct client_batch *batch,
  enum tally_client_status status, uint64_t now_ms)
{
  assert(tally_client_status_retryable(status));
  assert(batch->attempts >= 1);
  batch->state = CLIENT_BATCH_BACKOFF; /* no attempt outstanding any more */
  batch->probe = false;
  if (batch->attempts >= client->config.attempts_max) {
    finish(client, batch, status, TALLY_CLIENT_NODE_NONE);
    return;
  }
  uint64_t delay_ms = tally_backoff_delay_ms(client->config.backoff_base_ms,
    client->config.backoff_cap_ms, batch->attempts - 1u,
    client->config.random_u64(client->config.ops_context));
  batch->timer_ms = now_ms + delay_ms;
}

/* Sends the next attempt: the first to the most preferred node, a retry to the next one. */
static void send_attempt(struct tally_client *client, struct client_batch *batch,
  uint64_t now_ms)
{
  assert(batch->state == CLIENT_BATCH_BACKOFF);
  assert(batch->attempts < client->config.attempts_max);
  uint32_t start = batch->node == TALLY_CLIENT_NODE_NONE ? 0 :
    (batch->node + 1u) % client->node_count;
  uint32_t node = 0;
  bool probe = false;
  if (!pick_node(client, start, now_ms, &node, &probe)) {
    wait_for_a_node(client, batch, now_ms);
    return;
  }
  /* The attempt on the wire counts the earlier sends, to any node: it strictly
   * increases with every send, so of two nodes that both applied this batch
   * the one that got the later send keeps it (docs/cluster.md). The first
   * send's datagram already says 0. */
  uint16_t attempt = batch->attempts < UINT16_MAX ? (uint16_t)batch->attempts : UINT16_MAX;
  /* The MAC covers the destination (issue 14, H3): a batch failing over to
   * another node is MAC'd again for that node, and no node counts a batch
   * MAC'd for another. */
  struct tally_wire_node to = client_node_of(client, node);
  if (attempt != batch->wire.attempt || to.ipv4_be != batch->wire.node.ipv4_be ||
      to.port_be != batch->wire.node.port_be) {
    tally_wire_set_send(batch->datagram, batch->size, client->config.key, attempt, to);
    batch->wire.attempt = attempt;
    batch->wire.node = to;
  }
  batch->attempts++;
  batch->node = node;
  batch->probe = probe;
  int error = client_net_send(client->fd, &client->addresses[node], batch->datagram,
    batch->size);
  if (error != 0) {
    client->stats.send_errors++;
    batch->probe = false;
    tally_breaker_failure(&client->breakers[node], now_ms);
    attempt_failed(client, batch, TALLY_CLIENT_NETWORK, now_ms);
    return;
  }
  client->stats.datagrams_sent++;
  if (batch->attempts > 1) client->stats.retransmissions++;
  batch->state = CLIENT_BATCH_WAITING;
  batch->timer_ms = now_ms + client->config.ack_timeout_ms;
}

void client_flight_seal(struct tally_client *client, const struct tally_wire_batch *open,
  uint64_t now_ms)
{
  assert(client_has_room(client));
  assert(open->count >= 1 && open->count <= TALLY_BATCH_PAIRS_MAX);
  assert(open->seq == client->next_seq && open->producer == client->config.producer);
  assert(open->attempt == 0);
  uint64_t seq = client->next_seq++;
  struct client_batch *batch = slot_of(client, seq);
  assert(batch->state == CLIENT_BATCH_FREE);
  /* MAC'd for the most preferred node, where most first sends go (send_attempt
   * MACs again for another). */
  struct tally_wire_batch addressed = *open;
  addressed.node = client_node_of(client, 0);
  size_t size = tally_wire_encode_batch(&addressed, client->config.key, batch->datagram,
    sizeof batch->datagram);
  assert(size >= TALLY_WIRE_BATCH_SIZE_MIN && size <= TALLY_DATAGRAM_SIZE_MAX);
  /* Read it back: the pairs the callback sees are the bytes that were signed. */
  enum tally_reason reason = tally_wire_decode_batch(batch->datagram, size, client->config.key,
    &batch->wire);
  assert(reason == TALLY_OK);
  assert(batch->wire.seq == seq && batch->wire.count == open->count);
  assert(batch->wire.attempt == 0);
  batch->size = (uint32_t)size;
  batch->state = CLIENT_BATCH_BACKOFF;
  batch->attempts = 0;
  batch->node = TALLY_CLIENT_NODE_NONE;
  batch->probe = false;
  batch->uncertain = false;
  batch->timer_ms = now_ms;
  batch->deadline_ms = now_ms + client->config.batch_timeout_ms;
  client->stats.batches_sealed++;
  send_attempt(client, batch, now_ms);
}

/* ---- Acks ------------------------------------------------------------------------- */

static enum tally_client_status status_of_ack(enum tally_ack_status ack)
{
  assert((uint32_t)ack < TALLY_ACK_STATUS_COUNT);
  static const enum tally_client_status statuses[TALLY_ACK_STATUS_COUNT] = {
    [TALLY_ACK_APPLIED] = TALLY_CLIENT_OK,
    [TALLY_ACK_DUPLICATE] = TALLY_CLIENT_DUPLICATE,
    [TALLY_ACK_STALE] = TALLY_CLIENT_STALE,
    [TALLY_ACK_MALFORMED] = TALLY_CLIENT_MALFORMED,
    [TALLY_ACK_COUNTERS_FULL] = TALLY_CLIENT_COUNTERS_FULL,
    [TALLY_ACK_OVERFLOW] = TALLY_CLIENT_OVERFLOW,
    [TALLY_ACK_PRODUCERS_FULL] = TALLY_CLIENT_PRODUCERS_FULL,
    [TALLY_ACK_READ_ONLY] = TALLY_CLIENT_READ_ONLY,
  };
  static_assert(TALLY_ACK_STATUS_COUNT == 8, "every ack status is mapped");
  return statuses[ack];
}

/* A verified ack for seq from node: decides the batch, or fails the attempt it answers. */
static void on_ack(struct tally_client *client, uint32_t node, uint64_t seq,
  enum tally_ack_status ack, uint64_t now_ms)
{
  assert(node < client->node_count);
  assert((uint32_t)ack < TALLY_ACK_STATUS_COUNT);
  if (seq < client->oldest_seq || seq >= client->next_seq) {
    client->stats.acks_ignored++;
    return;
  }
  struct client_batch *batch = slot_of(client, seq);
  assert(batch->wire.seq == seq);
  if (batch->state == CLIENT_BATCH_DONE) {
    client->stats.acks_ignored++; /* a late answer to an ended batch */
    return;
  }
  enum tally_client_status status = status_of_ack(ack);
  if (!tally_client_status_retryable(status)) {
    /* Applied, duplicate or a final refusal: the node is healthy and decided. */
    tally_breaker_success(&client->breakers[node]);
    finish(client, batch, status, node);
    return;
  }
  /* Retryable: only an answer to the outstanding attempt fails it; an earlier
   * attempt's late answer was already counted as that attempt's timeout. */
  if (batch->state != CLIENT_BATCH_WAITING || batch->node != node) {
    client->stats.acks_ignored++;
    return;
  }
  batch->probe = false;
  tally_breaker_failure(&client->breakers[node], now_ms);
  attempt_failed(client, batch, status, now_ms);
}

/* Node index of a sender, or TALLY_CLIENT_NODE_NONE. */
static uint32_t node_of(const struct tally_client *client, const struct sockaddr_in *from)
{
  assert(client->node_count >= 1);
  assert(client->node_count <= TALLY_CLIENT_NODES_MAX);
  for (uint32_t i = 0; i < client->node_count; i++) {
    const struct sockaddr_in *address = &client->addresses[i];
    if (address->sin_addr.s_addr == from->sin_addr.s_addr &&
        address->sin_port == from->sin_port) {
      return i;
    }
  }
  return TALLY_CLIENT_NODE_NONE;
}

/* Reads what is waiting (at most a burst). OK or EIO. */
static enum tally_client_status receive_acks(struct tally_client *client)
{
  assert(client->fd >= 0);
  uint8_t data[TALLY_WIRE_ACK_SIZE + 1];
  for (uint32_t i = 0; i < TALLY_CLIENT_RECV_BURST_MAX; i++) {
    struct sockaddr_in from;
    memset(&from, 0, sizeof from);
    long size = client_net_receive(client->fd, data, sizeof data, &from);
    if (size == -EAGAIN) break;
    /* ICMP errors are reported only on connected sockets; anything else is ours. */
    if (size == -ECONNREFUSED || size == -EHOSTUNREACH || size == -ENETUNREACH) continue;
    if (size < 0) return TALLY_CLIENT_EIO;
    uint64_t producer = 0;
    uint64_t seq = 0;
    enum tally_ack_status ack = TALLY_ACK_APPLIED;
    uint32_t node = node_of(client, &from);
    size_t length = (size_t)size < sizeof data ? (size_t)size : sizeof data;
    if (node == TALLY_CLIENT_NODE_NONE ||
        tally_wire_decode_ack(data, length, client->config.key, &producer, &seq, &ack) !=
          TALLY_OK ||
        producer != client->config.producer) {
      client->stats.acks_ignored++;
      continue;
    }
    on_ack(client, node, seq, ack, client_now_ms(client));
  }
  assert(client->oldest_seq <= client->next_seq);
  return TALLY_CLIENT_OK;
}

/* ---- Timers ----------------------------------------------------------------------- */

static void run_timer(struct tally_client *client, struct client_batch *batch, uint64_t now_ms)
{
  assert(batch->state == CLIENT_BATCH_WAITING || batch->state == CLIENT_BATCH_BACKOFF);
  assert(batch->attempts <= client->config.attempts_max);
  if (now_ms >= batch->deadline_ms) {
    if (batch->state == CLIENT_BATCH_WAITING) {
      batch->probe = false;
      tally_breaker_failure(&client->breakers[batch->node], now_ms);
    }
    finish(client, batch, TALLY_CLIENT_TIMEOUT, TALLY_CLIENT_NODE_NONE);
    return;
  }
  if (now_ms < batch->timer_ms) return;
  if (batch->state == CLIENT_BATCH_WAITING) {
    client->stats.ack_timeouts++;
    batch->uncertain = true;
    batch->probe = false;
    tally_breaker_failure(&client->breakers[batch->node], now_ms);
    attempt_failed(client, batch, TALLY_CLIENT_TIMEOUT, now_ms);
    if (batch->state != CLIENT_BATCH_BACKOFF || now_ms < batch->timer_ms) return;
  }
  send_attempt(client, batch, now_ms); /* the backoff is over (or was 0 ms) */
}

static void run_timers(struct tally_client *client, uint64_t now_ms)
{
  assert(client->oldest_seq <= client->next_seq);
  uint64_t end_seq = client->next_seq;
  /* Oldest first; finish() may retire slots, so re-check the window each step. */
  for (uint64_t seq = client->oldest_seq; seq < end_seq; seq++) {
    if (seq < client->oldest_seq) continue;
    struct client_batch *batch = slot_of(client, seq);
    if (batch->state == CLIENT_BATCH_DONE) continue;
    run_timer(client, batch, now_ms);
  }
  assert(client->next_seq == end_seq);
}

/* Earliest time any batch needs attention, or UINT64_MAX. */
static uint64_t next_timer_ms(struct tally_client *client)
{
  uint64_t next_ms = UINT64_MAX;
  for (uint64_t seq = client->oldest_seq; seq < client->next_seq; seq++) {
    const struct client_batch *batch = slot_of(client, seq);
    if (batch->state == CLIENT_BATCH_DONE) continue;
    assert(batch->state != CLIENT_BATCH_FREE);
    if (batch->timer_ms < next_ms) next_ms = batch->timer_ms;
    if (batch->deadline_ms < next_ms) next_ms = batch->deadline_ms;
  }
  return next_ms;
}

enum tally_client_status client_flight_poll(struct tally_client *client, uint32_t timeout_ms)
{
  assert(!client->in_callback);
  assert(timeout_ms <= TALLY_CLIENT_DURATION_MS_MAX);
  uint64_t now_ms = client_now_ms(client);
  uint64_t next_ms = next_timer_ms(client);
  uint32_t wait_ms = timeout_ms;
  if (next_ms <= now_ms) wait_ms = 0;
  else if (next_ms - now_ms < wait_ms) wait_ms = (uint32_t)(next_ms - now_ms);
  int ready = client_net_wait(client->fd, wait_ms);
  if (ready < 0) return TALLY_CLIENT_EIO;
  if (ready > 0 && receive_acks(client) != TALLY_CLIENT_OK) return TALLY_CLIENT_EIO;
  run_timers(client, client_now_ms(client));
  return TALLY_CLIENT_OK;
}

void client_flight_cancel_all(struct tally_client *client)
{
  assert(!client->in_callback);
  uint64_t end_seq = client->next_seq;
  for (uint64_t seq = client->oldest_seq; seq < end_seq; seq++) {
    if (seq < client->oldest_seq) continue;
    struct client_batch *batch = slot_of(client, seq);
    if (batch->state == CLIENT_BATCH_DONE) continue;
    finish(client, batch, TALLY_CLIENT_CANCELLED, TALLY_CLIENT_NODE_NONE);
  }
  assert(client->oldest_seq == client->next_seq);
}
