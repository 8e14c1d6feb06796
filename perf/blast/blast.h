/*
 * blast.h — tally-blast, the load generator of the benchmark suite: what the
 * three senders (statsd datagrams, binary batches, Redis INCRBY) share. The
 * options, every limit of the tool, the per-thread state and results, the
 * workload (names drawn uniformly or Zipf-skewed from a seeded generator),
 * the rate pacer and the latency histogram.
 *
 * One sender thread owns its socket, its generator, its totals and its
 * statistics; threads share nothing while they run and are merged at the end.
 */
#ifndef TALLY_BLAST_H
#define TALLY_BLAST_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tally/limits.h"

/* ---- Limits of the tool ---------------------------------------------------- */

#define BLAST_THREADS_MAX 16u
#define BLAST_PRODUCERS_MAX 1024u
#define BLAST_INFLIGHT_MAX TALLY_DEDUP_WINDOW /* never more than the dedup window */
#define BLAST_COUNTERS_MAX 100000000u
#define BLAST_LINES_MAX 256u
#define BLAST_PIPELINE_MAX 4096u
#define BLAST_DURATION_S_MAX 3600.0
#define BLAST_COUNT_MAX 1000000000000ull
#define BLAST_RATE_MAX 1000000000ull
#define BLAST_PREFIX_LEN_MAX 32u
#define BLAST_DELTA_MAX 1000000
/* Messages handed to one sendmmsg / taken by one recvmmsg. */
#define BLAST_MMSG_BATCH 32u
/* Largest datagram built (tallyd's limit; the peers accept it too). */
#define BLAST_DATAGRAM_SIZE_MAX TALLY_DATAGRAM_SIZE_MAX
/* Send attempts of one batch of messages before the rest are counted as errors. */
#define BLAST_SEND_TRIES_MAX 1000u
/* Binary: sends of one batch before it is given up as unacked. */
#define BLAST_ATTEMPTS_MAX 100u
/* Latency histogram: 64 sub-buckets per power of two of nanoseconds. */
#define BLAST_HISTOGRAM_SUB_BITS 6u
#define BLAST_HISTOGRAM_BUCKETS ((64u - BLAST_HISTOGRAM_SUB_BITS + 1u) << BLAST_HISTOGRAM_SUB_BITS)

static_assert(BLAST_INFLIGHT_MAX <= TALLY_DEDUP_WINDOW, "in flight within the dedup window");
static_assert(BLAST_MMSG_BATCH <= 1024u, "sendmmsg takes at most UIO_MAXIOV messages");
static_assert(BLAST_LINES_MAX >= TALLY_BATCH_PAIRS_MAX, "lines cover the pairs of a batch");

enum blast_mode { BLAST_MODE_STATSD, BLAST_MODE_BINARY, BLAST_MODE_REDIS };
enum blast_dist { BLAST_DIST_UNIFORM, BLAST_DIST_ZIPF };

struct blast_options {
  enum blast_mode mode;
  struct sockaddr_in target;
  char target_text[64];
  uint64_t rate_per_s;      /* datagrams, batches or ops per second; 0 = flat out */
  double duration_s;        /* 0 = until count */
  uint64_t count;           /* datagrams, batches or ops; 0 = until duration */
  uint32_t counters;        /* distinct names */
  uint32_t lines;           /* statsd lines per datagram; binary pairs per batch */
  enum blast_dist dist;
  double zipf_s;
  uint64_t seed;
  uint8_t key[TALLY_KEY_SIZE];  /* binary: the ingest key; each producer MACs with its derived key */
  bool key_set;
  bool derived_keys;        /* binary: the node runs ingest.producer_keys = derived: each producer its own key */
  uint32_t threads;
  uint32_t producers;       /* binary */
  uint32_t inflight;        /* binary: unacked batches per producer */
  uint32_t timeout_ms;      /* binary: resend an unacked batch after this */
  double drain_s;           /* binary: how long to wait for the last acks */
  uint64_t producer_base;   /* binary: first producer id */
  uint64_t seq_base;        /* binary: first sequence number */
  uint32_t pipeline;        /* redis: commands per round trip */
  int64_t delta_max;        /* each increment is 1..delta_max */
  char prefix[BLAST_PREFIX_LEN_MAX + 1];
  const char *expect_path;
};

/* xoshiro256** state. */
struct blast_rng {
  uint64_t s[4];
};

/* Rejection-inversion Zipf sampler (Hörmann and Derflinger), O(1) per draw. */
struct blast_zipf {
  double s;
  double n;
  double h_integral_x1;
  double h_integral_n;
  double s_alt;
};

struct blast_workload {
  struct blast_rng rng;
  struct blast_zipf zipf;
  enum blast_dist dist;
  uint32_t counters;
  int64_t delta_max;
  const char *prefix;
  uint32_t prefix_len;
};

struct blast_histogram {
  uint64_t buckets[BLAST_HISTOGRAM_BUCKETS];
  uint64_t count;
  uint64_t max_ns;
};

/* Releases messages at a fixed rate (or as fast as asked when rate is 0). */
struct blast_pacer {
  uint64_t start_ns;
  uint64_t rate_per_s;
  uint64_t released;
};

/* Counts of one thread; merged into the summary. */
struct blast_result {
  uint64_t messages_sent;      /* datagrams / batches (first sends) / pipelines */
  uint64_t increments_sent;    /* lines / pairs / ops handed over */
  uint64_t increments_done;    /* statsd: = sent; binary: pairs acked; redis: ops replied */
  int64_t delta_sum_done;
  uint64_t bytes_sent;
  uint64_t send_errors;        /* messages the kernel refused (not counted in totals) */
  uint64_t batches_acked;
  uint64_t batches_duplicate;
  uint64_t batches_unacked;    /* given up: maybe counted, maybe not */
  uint64_t batches_rejected;   /* final error ack: not counted */
  uint64_t resends;
  uint64_t reply_errors;       /* redis error replies */
  uint64_t last_done_ns;       /* when the last increment was confirmed */
  uint64_t last_sent_ns;       /* when the last new message went out */
};

struct blast_thread {
  uint32_t index;
  pthread_t thread;
  const struct blast_options *options;
  struct blast_workload workload;
  uint64_t quota;              /* messages (redis: ops) this thread sends; 0 = by deadline */
  uint64_t rate_per_s;         /* this thread's share */
  uint64_t start_ns;
  uint64_t deadline_ns;        /* stop sending new messages */
  uint64_t first_producer;     /* binary */
  uint32_t producer_count;     /* binary */
  int64_t *totals;             /* per counter, confirmed; NULL without --expect */
  int64_t *uncertain;          /* binary: pairs of unacked batches; NULL without --expect */
  struct blast_histogram histogram;
  struct blast_result result;
  int failed;                  /* set-up failure: the thread sent nothing */
};

/* ---- workload.c ------------------------------------------------------------ */
uint64_t blast_now_ns(void);
void blast_sleep_ns(uint64_t ns);
void blast_rng_seed(struct blast_rng *rng, uint64_t seed);
uint64_t blast_rng_next(struct blast_rng *rng);
void blast_zipf_init(struct blast_zipf *zipf, uint32_t n, double s);
uint32_t blast_zipf_draw(const struct blast_zipf *zipf, struct blast_rng *rng);
void blast_workload_init(struct blast_workload *workload, const struct blast_options *options,
  uint32_t thread_index);
uint32_t blast_workload_counter(struct blast_workload *workload);
int64_t blast_workload_delta(struct blast_workload *workload);
uint32_t blast_format_name(const struct blast_workload *workload, uint32_t counter, char *out);
uint32_t blast_format_u64(uint64_t value, char *out);
uint32_t blast_name_len_max(const struct blast_options *options);
void blast_pacer_init(struct blast_pacer *pacer, uint64_t rate_per_s, uint64_t start_ns);
uint32_t blast_pacer_allow(struct blast_pacer *pacer, uint32_t wanted);
uint64_t blast_pacer_wait_ns(const struct blast_pacer *pacer);
bool blast_thread_sending(const struct blast_thread *thread, uint64_t sent, uint64_t now_ns);
void blast_histogram_add(struct blast_histogram *histogram, uint64_t ns);
void blast_histogram_merge(struct blast_histogram *into, const struct blast_histogram *from);
double blast_histogram_percentile_us(const struct blast_histogram *histogram, double fraction);

/* ---- net.c ---------------------------------------------------------------------- */
int blast_open_udp(const struct blast_options *options);
int blast_open_tcp(const struct blast_options *options);

/* ---- the senders: each runs one thread to the end ---------------------------- */
void blast_run_statsd(struct blast_thread *thread);
void blast_run_binary(struct blast_thread *thread);
void blast_run_redis(struct blast_thread *thread);

#endif
