/*
 * binary_sender.c — one tally-blast thread acting as reliable producers of
 * the binary protocol (docs/protocol-binary.md). Each producer keeps a
 * window of at most --inflight unacked batches (never more than the dedup
 * window), resends a batch with the same (producer, seq) when no ack came
 * within --timeout-ms, and gives it up after BLAST_ATTEMPTS_MAX sends. An
 * applied or duplicate ack settles the batch: its pairs go into the expected
 * totals and the time from its first send into the latency histogram. A
 * batch given up goes into "uncertain" (it may or may not have counted).
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blast.h"
#include "tally/batch_wire.h"

#define NS_PER_MS 1000000ull
#define IDLE_WAIT_NS_MAX 1000000u
#define RECEIVE_ROUNDS_MAX 16u

struct batch_slot {
  uint64_t seq;
  uint64_t first_sent_ns;
  uint64_t last_sent_ns;
  uint32_t attempts;
  uint32_t size;
  bool busy;
  uint32_t counters[TALLY_BATCH_PAIRS_MAX];
  int64_t deltas[TALLY_BATCH_PAIRS_MAX];
  uint8_t bytes[BLAST_DATAGRAM_SIZE_MAX];
};

struct producer {
  uint64_t id;
  uint8_t key[TALLY_KEY_SIZE]; /* its derived key (--producer-keys derived) or the ingest key, derived once */
  uint64_t next_seq;   /* the next batch gets this seq */
  uint64_t oldest_seq; /* the oldest batch not settled (== next_seq when none) */
  struct batch_slot *slots; /* inflight of them; seq % inflight */
};

struct binary_sender {
  int fd;
  uint32_t inflight;
  uint32_t pairs;
  uint64_t timeout_ns;
  uint32_t producer_count;
  uint32_t round_robin;
  uint64_t outstanding;
  uint64_t next_scan_ns;
  struct producer producers[BLAST_PRODUCERS_MAX];
  uint32_t pending;    /* datagrams queued for the next sendmmsg */
  struct mmsghdr out[BLAST_MMSG_BATCH];
  struct iovec out_iovecs[BLAST_MMSG_BATCH];
  struct mmsghdr in[BLAST_MMSG_BATCH];
  struct iovec in_iovecs[BLAST_MMSG_BATCH];
  uint8_t in_buffers[BLAST_MMSG_BATCH][64];
};

/* ---- Sending ---------------------------------------------------------------------- */

static void flush_sends(struct blast_thread *thread, struct binary_sender *sender)
{
  assert(sender->pending <= BLAST_MMSG_BATCH);
  uint32_t offset = 0;
  for (uint32_t tries = 0; offset < sender->pending && tries < BLAST_SEND_TRIES_MAX; tries++) {
    int sent = sendmmsg(sender->fd, sender->out + offset, sender->pending - offset, 0);
    if (sent > 0) {
      for (uint32_t i = 0; i < (uint32_t)sent; i++) {
        thread->result.bytes_sent += sender->out_iovecs[offset + i].iov_len;
      }
      offset += (uint32_t)sent;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR) {
      blast_sleep_ns(20000);
    } else {
      thread->result.send_errors++; /* lost like a dropped datagram: resent on timeout */
      offset++;
    }
  }
  assert(offset <= sender->pending);
  thread->result.send_errors += sender->pending - offset;
  sender->pending = 0;
}

static void queue_send(struct blast_thread *thread, struct binary_sender *sender,
  struct batch_slot *slot, uint64_t now_ns)
{
  assert(slot->busy);
  assert(slot->size >= TALLY_WIRE_BATCH_SIZE_MIN && slot->size <= BLAST_DATAGRAM_SIZE_MAX);
  if (sender->pending == BLAST_MMSG_BATCH) flush_sends(thread, sender);
  sender->out_iovecs[sender->pending].iov_base = slot->bytes;
  sender->out_iovecs[sender->pending].iov_len = slot->size;
  sender->pending++;
  if (slot->attempts == 0) slot->first_sent_ns = now_ns;
  slot->last_sent_ns = now_ns;
  slot->attempts++;
}

/* Encodes the producer's next batch into its slot. */
static void build_batch(struct blast_thread *thread, struct binary_sender *sender,
  struct producer *producer, struct batch_slot *slot)
{
  assert(!slot->busy);
  assert(producer->next_seq - producer->oldest_seq < sender->inflight);
  static __thread struct tally_wire_batch batch;
  static __thread char names[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX];
  batch.producer = producer->id;
  batch.seq = producer->next_seq++;
  batch.count = sender->pairs;
  for (uint32_t i = 0; i < sender->pairs; i++) {
    slot->counters[i] = blast_workload_counter(&thread->workload);
    slot->deltas[i] = blast_workload_delta(&thread->workload);
    batch.pairs[i].name = names[i];
    batch.pairs[i].name_len = blast_format_name(&thread->workload, slot->counters[i], names[i]);
    batch.pairs[i].delta = slot->deltas[i];
  }
  /* MAC'd for the target node (issue 14, H3), with the producer's key (M2). */
  batch.node = (struct tally_wire_node){ .ipv4_be = thread->options->target.sin_addr.s_addr,
    .port_be = thread->options->target.sin_port };
  size_t size = tally_wire_encode_batch(&batch, producer->key, slot->bytes, sizeof slot->bytes);
  assert(size > 0); /* sizes were checked against the options at start */
  slot->size = (uint32_t)size;
  slot->seq = batch.seq;
  slot->attempts = 0;
  slot->busy = true;
  sender->outstanding++;
}

/* Starts up to `allowed` new batches, round robin over producers with room. */
static uint32_t send_new(struct blast_thread *thread, struct binary_sender *sender,
  uint32_t allowed, uint64_t now_ns)
{
  assert(allowed <= BLAST_MMSG_BATCH);
  uint32_t started = 0;
  for (uint32_t i = 0; i < sender->producer_count && started < allowed; i++) {
    uint32_t index = (sender->round_robin + i) % sender->producer_count;
    struct producer *producer = &sender->producers[index];
    while (started < allowed && producer->next_seq - producer->oldest_seq < sender->inflight) {
      struct batch_slot *slot = &producer->slots[producer->next_seq % sender->inflight];
      build_batch(thread, sender, producer, slot);
      queue_send(thread, sender, slot, now_ns);
      started++;
    }
  }
  sender->round_robin = (sender->round_robin + 1) % sender->producer_count;
  thread->result.messages_sent += started;
  if (started > 0) thread->result.last_sent_ns = now_ns;
  thread->result.increments_sent += (uint64_t)started * sender->pairs;
  assert(started <= allowed);
  return started;
}

static uint64_t window_room(const struct binary_sender *sender)
{
  uint64_t room = 0;
  for (uint32_t i = 0; i < sender->producer_count; i++) {
    const struct producer *producer = &sender->producers[i];
    assert(producer->next_seq - producer->oldest_seq <= sender->inflight);
    room += sender->inflight - (producer->next_seq - producer->oldest_seq);
  }
  assert(room <= (uint64_t)sender->inflight * sender->producer_count);
  return room;
}

/* ---- Settling ---------------------------------------------------------------------- */

static void settle(struct binary_sender *sender, struct producer *producer, struct batch_slot *slot)
{
  assert(slot->busy);
  assert(sender->outstanding >= 1);
  slot->busy = false;
  sender->outstanding--;
  for (uint32_t i = 0; i < sender->inflight && producer->oldest_seq < producer->next_seq; i++) {
    if (producer->slots[producer->oldest_seq % sender->inflight].busy) break;
    producer->oldest_seq++;
  }
}

/* Adds the batch's pairs to the totals (acked) or to the uncertain totals. */
static void credit_pairs(struct blast_thread *thread, const struct binary_sender *sender,
  const struct batch_slot *slot, bool acked)
{
  assert(slot->busy);
  assert(sender->pairs >= 1);
  int64_t *totals = acked ? thread->totals : thread->uncertain;
  for (uint32_t i = 0; i < sender->pairs; i++) {
    if (totals != NULL) totals[slot->counters[i]] += slot->deltas[i];
    if (acked) thread->result.delta_sum_done += slot->deltas[i];
  }
}

static void handle_ack(struct blast_thread *thread, struct binary_sender *sender,
  const uint8_t *data, size_t size, uint64_t now_ns)
{
  uint64_t producer_id = 0;
  uint64_t seq = 0;
  enum tally_ack_status status = TALLY_ACK_APPLIED;
  /* The producer the ack claims picks the key it is checked with (its MAC decides). */
  if (size < TALLY_WIRE_HEADER_SIZE) {
    thread->result.reply_errors++;
    return;
  }
  uint64_t claimed = 0;
  for (uint32_t i = 0; i < 8u; i++) claimed |= (uint64_t)data[8u + i] << (8u * i);
  uint64_t index = claimed - thread->first_producer;
  if (claimed < thread->first_producer || index >= sender->producer_count) {
    thread->result.reply_errors++;
    return;
  }
  struct producer *producer = &sender->producers[index];
  if (tally_wire_decode_ack(data, size, producer->key, &producer_id, &seq, &status) != TALLY_OK) {
    thread->result.reply_errors++;
    return;
  }
  assert(producer_id == claimed);
  struct batch_slot *slot = &producer->slots[seq % sender->inflight];
  if (!slot->busy || slot->seq != seq) return; /* an ack of a resend already settled */
  assert(seq >= producer->oldest_seq && seq < producer->next_seq);
  if (status == TALLY_ACK_APPLIED || status == TALLY_ACK_DUPLICATE) {
    credit_pairs(thread, sender, slot, true);
    thread->result.batches_acked++;
    thread->result.batches_duplicate += status == TALLY_ACK_DUPLICATE;
    thread->result.increments_done += sender->pairs;
    thread->result.last_done_ns = now_ns;
    blast_histogram_add(&thread->histogram, now_ns - slot->first_sent_ns);
    settle(sender, producer, slot);
  } else if (status != TALLY_ACK_PRODUCERS_FULL && status != TALLY_ACK_READ_ONLY) {
    thread->result.batches_rejected++; /* final: not counted, never resent */
    settle(sender, producer, slot);
  } /* retryable: resent on timeout */
}

/* Takes every ack waiting on the socket. Returns how many datagrams came. */
static uint32_t receive_acks(struct blast_thread *thread, struct binary_sender *sender)
{
  assert(sender->fd >= 0);
  uint32_t received = 0;
  for (uint32_t round = 0; round < RECEIVE_ROUNDS_MAX; round++) {
    for (uint32_t i = 0; i < BLAST_MMSG_BATCH; i++) sender->in[i].msg_len = 0;
    int count = recvmmsg(sender->fd, sender->in, BLAST_MMSG_BATCH, MSG_DONTWAIT, NULL);
    if (count <= 0) break; /* EAGAIN, or a queued ECONNREFUSED: nothing to read */
    uint64_t now_ns = blast_now_ns();
    for (int i = 0; i < count; i++) {
      handle_ack(thread, sender, sender->in_buffers[i], sender->in[i].msg_len, now_ns);
    }
    received += (uint32_t)count;
    if ((uint32_t)count < BLAST_MMSG_BATCH) break;
  }
  assert(received <= RECEIVE_ROUNDS_MAX * BLAST_MMSG_BATCH);
  return received;
}

/* Resends batches whose ack is late; gives up those sent too often. */
static void resend_late(struct blast_thread *thread, struct binary_sender *sender, uint64_t now_ns)
{
  assert(sender->timeout_ns > 0);
  if (now_ns < sender->next_scan_ns) return;
  sender->next_scan_ns = now_ns + sender->timeout_ns / 4;
  for (uint32_t p = 0; p < sender->producer_count; p++) {
    struct producer *producer = &sender->producers[p];
    for (uint64_t seq = producer->oldest_seq; seq < producer->next_seq; seq++) {
      struct batch_slot *slot = &producer->slots[seq % sender->inflight];
      if (!slot->busy || now_ns - slot->last_sent_ns < sender->timeout_ns) continue;
      if (slot->attempts >= BLAST_ATTEMPTS_MAX) {
        credit_pairs(thread, sender, slot, false);
        thread->result.batches_unacked++;
        settle(sender, producer, slot);
        continue;
      }
      thread->result.resends++;
      queue_send(thread, sender, slot, now_ns);
    }
  }
  assert(sender->pending <= BLAST_MMSG_BATCH);
}

/* ---- The loop ---------------------------------------------------------------------- */

/* Sleeps until an ack arrives, the next batch is due, or 1 ms passed. */
static void wait_for_work(const struct binary_sender *sender, const struct blast_pacer *pacer,
  bool can_start)
{
  assert(sender->fd >= 0);
  uint64_t wait_ns = IDLE_WAIT_NS_MAX;
  if (can_start) {
    uint64_t due_ns = blast_pacer_wait_ns(pacer);
    if (due_ns < wait_ns) wait_ns = due_ns;
  }
  if (wait_ns == 0) return;
  struct pollfd poll_fd = { .fd = sender->fd, .events = POLLIN, .revents = 0 };
  struct timespec timeout = { .tv_sec = 0, .tv_nsec = (long)wait_ns };
  (void)ppoll(&poll_fd, 1, &timeout, NULL); /* an error or signal just ends the wait */
  assert(wait_ns <= IDLE_WAIT_NS_MAX);
}

/* Starts what the pacer and the windows allow. Returns batches started. */
static uint32_t start_batches(struct blast_thread *thread, struct binary_sender *sender,
  struct blast_pacer *pacer, uint64_t now_ns)
{
  uint64_t wanted = window_room(sender);
  if (wanted > BLAST_MMSG_BATCH) wanted = BLAST_MMSG_BATCH;
  uint64_t sent = thread->result.messages_sent;
  if (thread->quota != 0 && thread->quota - sent < wanted) wanted = thread->quota - sent;
  if (wanted == 0) return 0;
  uint32_t allowed = blast_pacer_allow(pacer, (uint32_t)wanted);
  uint32_t started = send_new(thread, sender, allowed, now_ns);
  assert(started == allowed); /* wanted fitted the windows */
  assert(thread->quota == 0 || thread->result.messages_sent <= thread->quota);
  return started;
}

/*
 * Sends until the deadline or quota, then drains acks for --drain-s. Bounded
 * by the clock: the thread's deadline plus the drain time.
 */
static void run_loop(struct blast_thread *thread, struct binary_sender *sender)
{
  assert(sender->fd >= 0);
  struct blast_pacer pacer;
  blast_pacer_init(&pacer, thread->rate_per_s, thread->start_ns);
  bool sending = true;
  uint64_t drain_deadline_ns = 0;
  for (;;) {
    uint32_t received = receive_acks(thread, sender);
    uint64_t now_ns = blast_now_ns();
    resend_late(thread, sender, now_ns);
    if (sending && !blast_thread_sending(thread, thread->result.messages_sent, now_ns)) {
      sending = false;
      drain_deadline_ns = now_ns + (uint64_t)(thread->options->drain_s * 1e9);
    }
    uint32_t started = sending ? start_batches(thread, sender, &pacer, now_ns) : 0;
    if (sender->pending > 0) flush_sends(thread, sender);
    if (!sending && (sender->outstanding == 0 || now_ns >= drain_deadline_ns)) break;
    if (received == 0 && started == 0) wait_for_work(sender, &pacer, sending && window_room(sender) > 0);
  }
  assert(!sending);
  assert(sender->pending == 0);
}

/* Batches still unacked after the drain: maybe counted, maybe not. */
static void give_up_outstanding(struct blast_thread *thread, struct binary_sender *sender)
{
  for (uint32_t p = 0; p < sender->producer_count; p++) {
    struct producer *producer = &sender->producers[p];
    for (uint64_t seq = producer->oldest_seq; seq < producer->next_seq; seq++) {
      struct batch_slot *slot = &producer->slots[seq % sender->inflight];
      if (!slot->busy) continue;
      credit_pairs(thread, sender, slot, false);
      thread->result.batches_unacked++;
      settle(sender, producer, slot);
    }
  }
  assert(sender->outstanding == 0);
  assert(thread->result.batches_acked + thread->result.batches_unacked +
    thread->result.batches_rejected == thread->result.messages_sent);
}

static struct binary_sender *sender_create(struct blast_thread *thread)
{
  const struct blast_options *options = thread->options;
  assert(thread->producer_count >= 1 && thread->producer_count <= BLAST_PRODUCERS_MAX);
  assert(options->inflight >= 1 && options->inflight <= BLAST_INFLIGHT_MAX);
  struct binary_sender *sender = calloc(1, sizeof *sender);
  if (sender == NULL) return NULL;
  sender->inflight = options->inflight;
  sender->pairs = options->lines;
  sender->timeout_ns = (uint64_t)options->timeout_ms * NS_PER_MS;
  sender->producer_count = thread->producer_count;
  for (uint32_t i = 0; i < sender->producer_count; i++) {
    struct producer *producer = &sender->producers[i];
    producer->id = thread->first_producer + i;
    if (options->derived_keys) {
      tally_wire_producer_key(options->key, producer->id, producer->key);
    } else {
      memcpy(producer->key, options->key, TALLY_KEY_SIZE);
    }
    producer->next_seq = options->seq_base;
    producer->oldest_seq = options->seq_base;
    producer->slots = calloc(sender->inflight, sizeof *producer->slots);
    if (producer->slots == NULL) return sender; /* the caller sees the NULL slots */
  }
  for (uint32_t i = 0; i < BLAST_MMSG_BATCH; i++) {
    sender->out[i].msg_hdr.msg_iov = &sender->out_iovecs[i];
    sender->out[i].msg_hdr.msg_iovlen = 1;
    sender->in_iovecs[i].iov_base = sender->in_buffers[i];
    sender->in_iovecs[i].iov_len = sizeof sender->in_buffers[i];
    sender->in[i].msg_hdr.msg_iov = &sender->in_iovecs[i];
    sender->in[i].msg_hdr.msg_iovlen = 1;
  }
  return sender;
}

static void sender_destroy(struct binary_sender *sender)
{
  assert(sender->producer_count <= BLAST_PRODUCERS_MAX);
  for (uint32_t i = 0; i < sender->producer_count; i++) free(sender->producers[i].slots);
  if (sender->fd >= 0) close(sender->fd);
  free(sender);
}

void blast_run_binary(struct blast_thread *thread)
{
  assert(thread->options->mode == BLAST_MODE_BINARY);
  assert(thread->options->key_set);
  struct binary_sender *sender = sender_create(thread);
  if (sender == NULL) {
    thread->failed = ENOMEM;
    return;
  }
  sender->fd = -1;
  for (uint32_t i = 0; i < sender->producer_count; i++) {
    if (sender->producers[i].slots == NULL) thread->failed = ENOMEM;
  }
  if (thread->failed == 0) {
    sender->fd = blast_open_udp(thread->options);
    if (sender->fd < 0) thread->failed = errno;
  }
  if (thread->failed == 0) {
    run_loop(thread, sender);
    give_up_outstanding(thread, sender);
  }
  sender_destroy(sender);
}
