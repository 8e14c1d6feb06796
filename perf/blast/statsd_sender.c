/*
 * statsd_sender.c — one tally-blast thread sending statsd datagrams: each
 * datagram holds --lines counter lines ("name:delta|c", newline-separated),
 * BLAST_MMSG_BATCH datagrams go to the kernel per sendmmsg, at the offered
 * rate or flat out. A datagram counts as sent (and its increments go into
 * the expected totals) only when the kernel took it; a refused one is an
 * error and counts nowhere, so the totals are exactly what left this host.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blast.h"

#define RETRY_SLEEP_NS 20000u
#define IDLE_SLEEP_NS_MAX 1000000u

struct statsd_sender {
  int fd;
  uint32_t lines;
  struct mmsghdr messages[BLAST_MMSG_BATCH];
  struct iovec iovecs[BLAST_MMSG_BATCH];
  uint8_t buffers[BLAST_MMSG_BATCH][BLAST_DATAGRAM_SIZE_MAX];
  uint32_t counters[BLAST_MMSG_BATCH * BLAST_LINES_MAX];
  int64_t deltas[BLAST_MMSG_BATCH * BLAST_LINES_MAX];
};

/* Fills datagram `slot` with its lines and remembers what they add. */
static void build_datagram(struct blast_thread *thread, struct statsd_sender *sender, uint32_t slot)
{
  assert(slot < BLAST_MMSG_BATCH);
  assert(sender->lines >= 1 && sender->lines <= BLAST_LINES_MAX);
  uint8_t *out = sender->buffers[slot];
  uint32_t used = 0;
  for (uint32_t line = 0; line < sender->lines; line++) {
    uint32_t counter = blast_workload_counter(&thread->workload);
    int64_t delta = blast_workload_delta(&thread->workload);
    if (line > 0) out[used++] = '\n';
    used += blast_format_name(&thread->workload, counter, (char *)out + used);
    out[used++] = ':';
    used += blast_format_u64((uint64_t)delta, (char *)out + used);
    out[used++] = '|';
    out[used++] = 'c';
    sender->counters[slot * sender->lines + line] = counter;
    sender->deltas[slot * sender->lines + line] = delta;
  }
  assert(used <= BLAST_DATAGRAM_SIZE_MAX); /* checked against the options at start */
  sender->iovecs[slot].iov_len = used;
}

/* Datagram `slot` left: its increments go into the totals. */
static void credit(struct blast_thread *thread, const struct statsd_sender *sender, uint32_t slot)
{
  assert(slot < BLAST_MMSG_BATCH);
  struct blast_result *result = &thread->result;
  const uint32_t *counters = &sender->counters[slot * sender->lines];
  const int64_t *deltas = &sender->deltas[slot * sender->lines];
  for (uint32_t line = 0; line < sender->lines; line++) {
    if (thread->totals != NULL) thread->totals[counters[line]] += deltas[line];
    result->delta_sum_done += deltas[line];
  }
  result->messages_sent++;
  result->increments_sent += sender->lines;
  result->increments_done += sender->lines;
  result->bytes_sent += sender->iovecs[slot].iov_len;
  assert(result->increments_done == result->increments_sent);
}

/* Hands count datagrams to the kernel; a refused one is counted as an error. */
static void send_datagrams(struct blast_thread *thread, struct statsd_sender *sender, uint32_t count)
{
  assert(count >= 1 && count <= BLAST_MMSG_BATCH);
  uint32_t offset = 0;
  for (uint32_t tries = 0; offset < count && tries < BLAST_SEND_TRIES_MAX; tries++) {
    int sent = sendmmsg(sender->fd, sender->messages + offset, count - offset, 0);
    if (sent > 0) {
      for (uint32_t i = 0; i < (uint32_t)sent; i++) credit(thread, sender, offset + i);
      offset += (uint32_t)sent;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR) {
      blast_sleep_ns(RETRY_SLEEP_NS);
    } else {
      thread->result.send_errors++; /* e.g. ECONNREFUSED: this datagram is dropped */
      offset++;
    }
  }
  assert(offset <= count);
  thread->result.send_errors += count - offset;
  thread->result.last_done_ns = blast_now_ns();
  thread->result.last_sent_ns = thread->result.last_done_ns;
}

static void run_loop(struct blast_thread *thread, struct statsd_sender *sender)
{
  assert(sender->fd >= 0);
  struct blast_pacer pacer;
  blast_pacer_init(&pacer, thread->rate_per_s, thread->start_ns);
  uint64_t attempted = 0;
  uint64_t now_ns = blast_now_ns();
  /* Bounded by the thread's deadline (and its quota, if any). */
  while (blast_thread_sending(thread, attempted, now_ns)) {
    uint64_t wanted = BLAST_MMSG_BATCH;
    if (thread->quota != 0 && thread->quota - attempted < wanted) wanted = thread->quota - attempted;
    uint32_t count = blast_pacer_allow(&pacer, (uint32_t)wanted);
    if (count == 0) {
      uint64_t wait_ns = blast_pacer_wait_ns(&pacer);
      blast_sleep_ns(wait_ns < IDLE_SLEEP_NS_MAX ? wait_ns : IDLE_SLEEP_NS_MAX);
    } else {
      for (uint32_t slot = 0; slot < count; slot++) build_datagram(thread, sender, slot);
      send_datagrams(thread, sender, count);
      attempted += count;
    }
    now_ns = blast_now_ns();
  }
  assert(thread->quota == 0 || attempted <= thread->quota);
}

void blast_run_statsd(struct blast_thread *thread)
{
  const struct blast_options *options = thread->options;
  assert(options->mode == BLAST_MODE_STATSD);
  assert(options->lines >= 1 && options->lines <= BLAST_LINES_MAX);
  struct statsd_sender *sender = calloc(1, sizeof *sender);
  if (sender == NULL) {
    thread->failed = ENOMEM;
    return;
  }
  sender->lines = options->lines;
  sender->fd = blast_open_udp(options);
  if (sender->fd < 0) {
    thread->failed = errno;
    free(sender);
    return;
  }
  for (uint32_t i = 0; i < BLAST_MMSG_BATCH; i++) {
    sender->iovecs[i].iov_base = sender->buffers[i];
    sender->messages[i].msg_hdr.msg_iov = &sender->iovecs[i];
    sender->messages[i].msg_hdr.msg_iovlen = 1;
  }
  run_loop(thread, sender);
  close(sender->fd);
  free(sender);
}
