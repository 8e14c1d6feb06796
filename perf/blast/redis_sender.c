/*
 * redis_sender.c — one tally-blast thread as a Redis client: `INCRBY name
 * delta` in RESP, --pipeline commands per round trip on one TCP connection,
 * pipelines released at the offered rate or flat out. An integer reply
 * confirms its command: its increment goes into the expected totals and the
 * time since its pipeline was written into the latency histogram (with
 * appendfsync always, Redis replies only after the fsync, so this is the
 * durable-ack latency). An error reply is counted; a broken connection ends
 * the thread (what was not answered is not in the totals).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blast.h"

#define COMMAND_SIZE_MAX (32u + TALLY_NAME_LEN_MAX + 24u)
#define INPUT_SIZE (64u * 1024u)
#define IDLE_SLEEP_NS_MAX 1000000u

struct redis_sender {
  int fd;
  uint32_t pipeline;
  char *output;            /* pipeline * COMMAND_SIZE_MAX */
  uint32_t *counters;      /* per command of the pipeline */
  int64_t *deltas;
  size_t input_used;
  char input[INPUT_SIZE];
};

/* Appends "*3 $6 INCRBY $n name $m delta" (RESP) at out; returns its length. */
static uint32_t format_incrby(const struct blast_workload *workload, uint32_t counter,
  int64_t delta, char *out)
{
  assert(delta >= 1);
  char name[TALLY_NAME_LEN_MAX];
  char digits[20];
  uint32_t name_len = blast_format_name(workload, counter, name);
  uint32_t delta_len = blast_format_u64((uint64_t)delta, digits);
  uint32_t used = 0;
  memcpy(out, "*3\r\n$6\r\nINCRBY\r\n$", 17);
  used = 17;
  used += blast_format_u64(name_len, out + used);
  memcpy(out + used, "\r\n", 2);
  memcpy(out + used + 2, name, name_len);
  used += 2 + name_len;
  memcpy(out + used, "\r\n$", 3);
  used += 3;
  used += blast_format_u64(delta_len, out + used);
  memcpy(out + used, "\r\n", 2);
  memcpy(out + used + 2, digits, delta_len);
  used += 2 + delta_len;
  memcpy(out + used, "\r\n", 2);
  used += 2;
  assert(used <= COMMAND_SIZE_MAX);
  return used;
}

/* Writes all of data; false if the connection failed or timed out. */
static bool write_all(int fd, const char *data, size_t size)
{
  assert(fd >= 0);
  size_t written = 0;
  /* Bounded: each pass writes at least a byte, or fails after SO_SNDTIMEO. */
  while (written < size) {
    ssize_t n = send(fd, data + written, size - written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += (size_t)n;
  }
  assert(written == size);
  return true;
}

/*
 * Parses complete reply lines from the input buffer into the pipeline's
 * results, from reply index *done on. Returns false on a reply that is not
 * an integer or an error (the connection is out of step).
 */
static bool parse_replies(struct blast_thread *thread, struct redis_sender *sender,
  uint32_t count, uint32_t *done, uint64_t sent_ns)
{
  assert(*done <= count);
  size_t position = 0;
  uint64_t now_ns = blast_now_ns();
  while (*done < count) {
    char *end = memchr(sender->input + position, '\n', sender->input_used - position);
    if (end == NULL) break;
    char kind = sender->input[position];
    if (kind == ':') {
      uint32_t index = *done;
      if (thread->totals != NULL) thread->totals[sender->counters[index]] += sender->deltas[index];
      thread->result.delta_sum_done += sender->deltas[index];
      thread->result.increments_done++;
      blast_histogram_add(&thread->histogram, now_ns - sent_ns);
    } else if (kind == '-') {
      thread->result.reply_errors++;
    } else {
      return false;
    }
    (*done)++;
    position = (size_t)(end - sender->input) + 1;
  }
  memmove(sender->input, sender->input + position, sender->input_used - position);
  sender->input_used -= position;
  assert(sender->input_used < INPUT_SIZE);
  return true;
}

/* Sends one pipeline of count commands and reads its replies. */
static bool round_trip(struct blast_thread *thread, struct redis_sender *sender, uint32_t count)
{
  assert(count >= 1 && count <= sender->pipeline);
  size_t size = 0;
  for (uint32_t i = 0; i < count; i++) {
    sender->counters[i] = blast_workload_counter(&thread->workload);
    sender->deltas[i] = blast_workload_delta(&thread->workload);
    size += format_incrby(&thread->workload, sender->counters[i], sender->deltas[i],
      sender->output + size);
  }
  uint64_t sent_ns = blast_now_ns();
  if (!write_all(sender->fd, sender->output, size)) return false;
  thread->result.messages_sent++;
  thread->result.last_sent_ns = sent_ns;
  thread->result.increments_sent += count;
  thread->result.bytes_sent += size;
  uint32_t done = 0;
  /* Bounded: each read brings at least a byte or fails after SO_RCVTIMEO. */
  while (done < count) {
    if (sender->input_used == INPUT_SIZE - 1) return false; /* a reply line this long is not ours */
    ssize_t n = recv(sender->fd, sender->input + sender->input_used,
      INPUT_SIZE - 1 - sender->input_used, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sender->input_used += (size_t)n;
    if (!parse_replies(thread, sender, count, &done, sent_ns)) return false;
  }
  thread->result.last_done_ns = blast_now_ns();
  assert(done == count);
  return true;
}

static void run_loop(struct blast_thread *thread, struct redis_sender *sender)
{
  assert(sender->fd >= 0);
  struct blast_pacer pacer; /* in pipelines per second */
  blast_pacer_init(&pacer, thread->rate_per_s, thread->start_ns);
  uint64_t now_ns = blast_now_ns();
  /* Bounded by the deadline (and the quota of ops, if any). */
  while (blast_thread_sending(thread, thread->result.increments_sent, now_ns)) {
    if (blast_pacer_allow(&pacer, 1) == 0) {
      uint64_t wait_ns = blast_pacer_wait_ns(&pacer);
      blast_sleep_ns(wait_ns < IDLE_SLEEP_NS_MAX ? wait_ns : IDLE_SLEEP_NS_MAX);
    } else {
      uint64_t count = sender->pipeline;
      uint64_t left = thread->quota - thread->result.increments_sent;
      if (thread->quota != 0 && left < count) count = left;
      if (!round_trip(thread, sender, (uint32_t)count)) {
        thread->result.send_errors++;
        return;
      }
    }
    now_ns = blast_now_ns();
  }
  assert(thread->quota == 0 || thread->result.increments_sent <= thread->quota);
}

void blast_run_redis(struct blast_thread *thread)
{
  const struct blast_options *options = thread->options;
  assert(options->mode == BLAST_MODE_REDIS);
  assert(options->pipeline >= 1 && options->pipeline <= BLAST_PIPELINE_MAX);
  struct redis_sender *sender = calloc(1, sizeof *sender);
  if (sender == NULL) {
    thread->failed = ENOMEM;
    return;
  }
  sender->pipeline = options->pipeline;
  sender->output = malloc((size_t)options->pipeline * COMMAND_SIZE_MAX);
  sender->counters = calloc(options->pipeline, sizeof *sender->counters);
  sender->deltas = calloc(options->pipeline, sizeof *sender->deltas);
  sender->fd = -1;
  if (sender->output == NULL || sender->counters == NULL || sender->deltas == NULL) {
    thread->failed = ENOMEM;
  } else {
    sender->fd = blast_open_tcp(options);
    if (sender->fd < 0) thread->failed = errno;
  }
  if (thread->failed == 0) run_loop(thread, sender);
  if (sender->fd >= 0) close(sender->fd);
  free(sender->output);
  free(sender->counters);
  free(sender->deltas);
  free(sender);
}
