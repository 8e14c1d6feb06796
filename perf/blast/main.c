/*
 * main.c — tally-blast: reads and checks the options, splits the work over
 * sender threads (counts, rates and binary producers), runs them, merges
 * their results and prints one JSON summary line. With --expect it also
 * writes the exact total each counter must reach at the target, so that
 * the caller can compare what was sent with what was counted: exactness is
 * part of every benchmark result.
 *
 * Exit status: 0 the run completed (losses, errors and unacked batches are
 * in the summary, for the caller to judge), 1 set-up failure, 64 usage
 * (EX_USAGE, as every Tally command).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sysexits.h>
#include <time.h>

#include "blast.h"
#include "tally/batch_wire.h"
#include "tally/name.h"

#define NS_PER_S 1000000000ull

static void usage(FILE *stream)
{
  fprintf(stream,
    "usage: tally-blast --target IP:PORT [options]\n"
    "  --mode statsd|binary|redis  what to send (default statsd)\n"
    "  --rate N            datagrams (statsd), batches (binary) or ops (redis) per second; 0 = flat out\n"
    "  --duration S        seconds to send (at most 3600)\n"
    "  --count N           datagrams / batches / ops to send (default: 10 s if neither is given)\n"
    "  --counters N        distinct counter names (default 1000)\n"
    "  --lines L           statsd lines per datagram, binary pairs per batch (default 1)\n"
    "  --dist uniform|zipf how names are drawn (default uniform); --zipf-s S (default 1.1)\n"
    "  --seed N            generator seed (default 1)\n"
    "  --prefix P          name prefix (default \"blast.\"); names are PREFIX<index>\n"
    "  --delta-max D       each increment is 1..D (default 1)\n"
    "  --threads T         sender threads (default 1)\n"
    "  --key HEX           binary: the 64-hex-digit ingest key (better: TALLY_KEY in the\n"
    "                      environment; a command line is visible to every user)\n"
    "  --producer-keys M   binary: the node's ingest.producer_keys, shared (default: MAC with\n"
    "                      the key itself) or derived (each producer MACs with its own key,\n"
    "                      derived from the ingest key as libtally and tallyctl derive it)\n"
    "  --producers N       binary: producer ids, spread over the threads (default = threads)\n"
    "  --producer-base N   binary: first producer id (default 1)\n"
    "  --seq-base N        binary: first seq (default: CLOCK_REALTIME in ns, above any earlier run)\n"
    "  --inflight N        binary: unacked batches per producer, 1..64 (default 16)\n"
    "  --timeout-ms N      binary: resend a batch unacked this long (default 20)\n"
    "  --drain-s S         binary: wait this long for the last acks (default 2)\n"
    "  --pipeline N        redis: INCRBY commands per round trip (default 1)\n"
    "  --expect FILE       write the exact totals per counter that the target must hold\n"
    "  -h, --help          print this help and exit\n"
    "  --version           print the version and exit\n"
    "Prints one JSON line. Exit 0 when the run completed, 1 on set-up failure, 64 on usage.\n");
}

static void die_usage(const char *what, const char *value)
{
  fprintf(stderr, "tally-blast: %s: %s\n", what, value);
  exit(EX_USAGE);
}

static uint64_t parse_u64(const char *what, const char *text, uint64_t low, uint64_t high)
{
  char *end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < low || value > high) {
    fprintf(stderr, "tally-blast: %s: '%s' is not a number in %llu..%llu\n", what, text,
      (unsigned long long)low, (unsigned long long)high);
    exit(EX_USAGE);
  }
  assert(value >= low);
  assert(value <= high);
  return value;
}

static double parse_double(const char *what, const char *text, double low, double high)
{
  char *end = NULL;
  errno = 0;
  double value = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(value >= low && value <= high)) {
    fprintf(stderr, "tally-blast: %s: '%s' is not a number in %g..%g\n", what, text, low, high);
    exit(EX_USAGE);
  }
  assert(value >= low);
  assert(value <= high);
  return value;
}

static void parse_target(struct blast_options *options, const char *text)
{
  const char *colon = strrchr(text, ':');
  if (colon == NULL || (size_t)(colon - text) >= 32 || strlen(text) >= sizeof options->target_text) {
    die_usage("--target wants IP:PORT", text);
  }
  char host[32];
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = '\0';
  options->target.sin_family = AF_INET;
  options->target.sin_port = htons((uint16_t)parse_u64("--target port", colon + 1, 1, 65535));
  if (inet_pton(AF_INET, host, &options->target.sin_addr) != 1) die_usage("--target address", host);
  snprintf(options->target_text, sizeof options->target_text, "%s", text);
  assert(options->target.sin_port != 0);
  assert(options->target_text[0] != '\0');
}

static void parse_key(struct blast_options *options, const char *text)
{
  if (strlen(text) != 2u * TALLY_KEY_SIZE) die_usage("--key wants 64 hex digits", "(not shown)");
  for (uint32_t i = 0; i < TALLY_KEY_SIZE; i++) {
    unsigned int byte = 0;
    char pair[3] = { text[2 * i], text[2 * i + 1], '\0' };
    char *end = NULL;
    byte = (unsigned int)strtoul(pair, &end, 16);
    if (end != pair + 2) die_usage("--key wants 64 hex digits", "(not shown)");
    options->key[i] = (uint8_t)byte;
  }
  options->key_set = true;
  assert(options->key_set);
}

static uint64_t realtime_ns(void)
{
  struct timespec now;
  int rc = clock_gettime(CLOCK_REALTIME, &now);
  assert(rc == 0);
  (void)rc;
  return (uint64_t)now.tv_sec * NS_PER_S + (uint64_t)now.tv_nsec;
}

static void set_defaults(struct blast_options *options)
{
  memset(options, 0, sizeof *options);
  options->mode = BLAST_MODE_STATSD;
  options->counters = 1000;
  options->lines = 1;
  options->dist = BLAST_DIST_UNIFORM;
  options->zipf_s = 1.1;
  options->seed = 1;
  options->threads = 1;
  options->inflight = 16;
  options->timeout_ms = 20;
  options->drain_s = 2.0;
  options->producer_base = 1;
  options->seq_base = realtime_ns();
  options->pipeline = 1;
  options->delta_max = 1;
  snprintf(options->prefix, sizeof options->prefix, "blast.");
  assert(options->seq_base > 0);
  assert(options->counters >= 1);
}

enum {
  OPT_TARGET = 256, OPT_MODE, OPT_RATE, OPT_DURATION, OPT_COUNT, OPT_COUNTERS, OPT_LINES,
  OPT_DIST, OPT_ZIPF_S, OPT_SEED, OPT_PREFIX, OPT_DELTA_MAX, OPT_THREADS, OPT_KEY, OPT_PRODUCER_KEYS,
  OPT_PRODUCERS, OPT_PRODUCER_BASE, OPT_SEQ_BASE, OPT_INFLIGHT, OPT_TIMEOUT_MS, OPT_DRAIN_S,
  OPT_PIPELINE, OPT_EXPECT, OPT_HELP, OPT_VERSION,
};

static const struct option long_options[] = {
  { "target", required_argument, NULL, OPT_TARGET },
  { "mode", required_argument, NULL, OPT_MODE },
  { "rate", required_argument, NULL, OPT_RATE },
  { "duration", required_argument, NULL, OPT_DURATION },
  { "count", required_argument, NULL, OPT_COUNT },
  { "counters", required_argument, NULL, OPT_COUNTERS },
  { "lines", required_argument, NULL, OPT_LINES },
  { "dist", required_argument, NULL, OPT_DIST },
  { "zipf-s", required_argument, NULL, OPT_ZIPF_S },
  { "seed", required_argument, NULL, OPT_SEED },
  { "prefix", required_argument, NULL, OPT_PREFIX },
  { "delta-max", required_argument, NULL, OPT_DELTA_MAX },
  { "threads", required_argument, NULL, OPT_THREADS },
  { "key", required_argument, NULL, OPT_KEY },
  { "producer-keys", required_argument, NULL, OPT_PRODUCER_KEYS },
  { "producers", required_argument, NULL, OPT_PRODUCERS },
  { "producer-base", required_argument, NULL, OPT_PRODUCER_BASE },
  { "seq-base", required_argument, NULL, OPT_SEQ_BASE },
  { "inflight", required_argument, NULL, OPT_INFLIGHT },
  { "timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS },
  { "drain-s", required_argument, NULL, OPT_DRAIN_S },
  { "pipeline", required_argument, NULL, OPT_PIPELINE },
  { "expect", required_argument, NULL, OPT_EXPECT },
  { "help", no_argument, NULL, OPT_HELP },
  { "version", no_argument, NULL, OPT_VERSION },
  { NULL, 0, NULL, 0 },
};

static void parse_mode(struct blast_options *options, const char *text)
{
  if (strcmp(text, "statsd") == 0) {
    options->mode = BLAST_MODE_STATSD;
  } else if (strcmp(text, "binary") == 0) {
    options->mode = BLAST_MODE_BINARY;
  } else if (strcmp(text, "redis") == 0) {
    options->mode = BLAST_MODE_REDIS;
  } else {
    die_usage("--mode wants statsd, binary or redis", text);
  }
  assert(options->mode <= BLAST_MODE_REDIS);
  assert(text[0] != '\0');
}

static void parse_prefix(struct blast_options *options, const char *text)
{
  if (strlen(text) > BLAST_PREFIX_LEN_MAX) die_usage("--prefix is too long", text);
  if (!tally_name_valid(text, strlen(text)) && text[0] != '\0') die_usage("--prefix has a byte names may not hold", text);
  snprintf(options->prefix, sizeof options->prefix, "%s", text);
  assert(strlen(options->prefix) <= BLAST_PREFIX_LEN_MAX);
  assert(strcmp(options->prefix, text) == 0);
}

/* One option; false if it is not known. */
static bool parse_one(struct blast_options *options, int option, const char *arg)
{
  switch (option) {
  case OPT_TARGET: parse_target(options, arg); return true;
  case OPT_MODE: parse_mode(options, arg); return true;
  case OPT_RATE: options->rate_per_s = parse_u64("--rate", arg, 0, BLAST_RATE_MAX); return true;
  case OPT_DURATION: options->duration_s = parse_double("--duration", arg, 0.001, BLAST_DURATION_S_MAX); return true;
  case OPT_COUNT: options->count = parse_u64("--count", arg, 1, BLAST_COUNT_MAX); return true;
  case OPT_COUNTERS: options->counters = (uint32_t)parse_u64("--counters", arg, 1, BLAST_COUNTERS_MAX); return true;
  case OPT_LINES: options->lines = (uint32_t)parse_u64("--lines", arg, 1, BLAST_LINES_MAX); return true;
  case OPT_DIST:
    if (strcmp(arg, "uniform") != 0 && strcmp(arg, "zipf") != 0) die_usage("--dist wants uniform or zipf", arg);
    options->dist = strcmp(arg, "zipf") == 0 ? BLAST_DIST_ZIPF : BLAST_DIST_UNIFORM;
    return true;
  case OPT_ZIPF_S: options->zipf_s = parse_double("--zipf-s", arg, 0.01, 10.0); return true;
  case OPT_SEED: options->seed = parse_u64("--seed", arg, 0, UINT64_MAX); return true;
  case OPT_PREFIX: parse_prefix(options, arg); return true;
  case OPT_DELTA_MAX: options->delta_max = (int64_t)parse_u64("--delta-max", arg, 1, BLAST_DELTA_MAX); return true;
  case OPT_THREADS: options->threads = (uint32_t)parse_u64("--threads", arg, 1, BLAST_THREADS_MAX); return true;
  case OPT_KEY: parse_key(options, arg); return true;
  case OPT_PRODUCER_KEYS:
    if (strcmp(arg, "shared") != 0 && strcmp(arg, "derived") != 0) die_usage("--producer-keys wants shared or derived", arg);
    options->derived_keys = strcmp(arg, "derived") == 0;
    return true;
  case OPT_PRODUCERS: options->producers = (uint32_t)parse_u64("--producers", arg, 1, BLAST_PRODUCERS_MAX); return true;
  case OPT_PRODUCER_BASE: options->producer_base = parse_u64("--producer-base", arg, 1, UINT64_MAX / 2); return true;
  case OPT_SEQ_BASE: options->seq_base = parse_u64("--seq-base", arg, 0, UINT64_MAX / 2); return true;
  case OPT_INFLIGHT: options->inflight = (uint32_t)parse_u64("--inflight", arg, 1, BLAST_INFLIGHT_MAX); return true;
  case OPT_TIMEOUT_MS: options->timeout_ms = (uint32_t)parse_u64("--timeout-ms", arg, 1, 10000); return true;
  case OPT_DRAIN_S: options->drain_s = parse_double("--drain-s", arg, 0.0, 60.0); return true;
  case OPT_PIPELINE: options->pipeline = (uint32_t)parse_u64("--pipeline", arg, 1, BLAST_PIPELINE_MAX); return true;
  case OPT_EXPECT: options->expect_path = arg; return true;
  default: return false;
  }
}

/* Relations between options: what would not fit a datagram, a window, a thread. */
static void check_options(struct blast_options *options)
{
  if (options->target.sin_family != AF_INET) die_usage("--target", "required");
  if (options->count != 0 && options->count < options->threads) {
    options->threads = (uint32_t)options->count; /* no thread without work */
  }
  if (options->producers == 0) options->producers = options->threads;
  if (options->duration_s == 0.0 && options->count == 0) options->duration_s = 10.0;
  uint32_t name_len = blast_name_len_max(options);
  if (name_len > TALLY_NAME_LEN_MAX) die_usage("names would be too long", options->prefix);
  char digits[20];
  uint32_t delta_len = blast_format_u64((uint64_t)options->delta_max, digits);
  if (options->mode == BLAST_MODE_STATSD &&
      (uint64_t)options->lines * (name_len + delta_len + 4u) > BLAST_DATAGRAM_SIZE_MAX) {
    die_usage("--lines: the datagram would exceed 1472 bytes", "use fewer lines or a shorter prefix");
  }
  if (options->mode == BLAST_MODE_BINARY) {
    /* The key from the environment, off the command line (issue 14, L4). */
    if (!options->key_set && getenv("TALLY_KEY") != NULL) parse_key(options, getenv("TALLY_KEY"));
    if (!options->key_set) die_usage("--mode binary", "needs TALLY_KEY or --key");
    if (options->lines > TALLY_BATCH_PAIRS_MAX) die_usage("--lines (pairs per batch)", "at most 64");
    if (TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE + (uint64_t)options->lines *
        (TALLY_WIRE_PAIR_FIXED_SIZE + name_len) > BLAST_DATAGRAM_SIZE_MAX) {
      die_usage("--lines: the batch would exceed 1472 bytes", "use fewer pairs or a shorter prefix");
    }
    if (options->producers < options->threads) die_usage("--producers", "at least one per thread");
  }
  if (options->rate_per_s != 0 && options->rate_per_s < options->threads) {
    die_usage("--rate", "at least one per second per thread");
  }
  assert(options->lines >= 1);
  assert(options->threads >= 1 && options->threads <= BLAST_THREADS_MAX);
}

static void parse_options(int argc, char **argv, struct blast_options *options)
{
  set_defaults(options);
  int option;
  /* Bounded: getopt consumes at least one argument per call. */
  while ((option = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
    if (option == OPT_HELP || option == 'h') {
      usage(stdout);
      exit(0);
    }
    if (option == OPT_VERSION) {
      printf("tally-blast %s\n", TALLY_VERSION);
      exit(0);
    }
    if (!parse_one(options, option, optarg)) {
      usage(stderr);
      exit(EX_USAGE);
    }
  }
  if (optind != argc) die_usage("unexpected argument", argv[optind]);
  check_options(options);
}

/* ---- Threads -------------------------------------------------------------------- */

static void *thread_main(void *arg)
{
  struct blast_thread *thread = arg;
  assert(thread->options != NULL);
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* precise pacing sleeps */
  switch (thread->options->mode) {
  case BLAST_MODE_STATSD: blast_run_statsd(thread); break;
  case BLAST_MODE_BINARY: blast_run_binary(thread); break;
  case BLAST_MODE_REDIS: blast_run_redis(thread); break;
  }
  assert(thread->failed != 0 || thread->result.bytes_sent > 0 || thread->result.send_errors > 0 ||
    thread->quota == 0 || thread->result.messages_sent == 0);
  return NULL;
}

/* Share i of total split over parts (the first ones take the remainder). */
static uint64_t share(uint64_t total, uint32_t parts, uint32_t i)
{
  assert(parts >= 1);
  assert(i < parts);
  return total / parts + (i < total % parts ? 1u : 0u);
}

static int prepare_thread(struct blast_thread *thread, const struct blast_options *options,
  uint32_t index, uint64_t start_ns)
{
  assert(index < options->threads);
  memset(thread, 0, sizeof *thread);
  thread->index = index;
  thread->options = options;
  blast_workload_init(&thread->workload, options, index);
  thread->quota = share(options->count, options->threads, index);
  uint64_t rate = share(options->rate_per_s, options->threads, index);
  if (options->mode == BLAST_MODE_REDIS && rate != 0) {
    rate = rate / options->pipeline > 0 ? rate / options->pipeline : 1; /* pipelines per second */
  }
  thread->rate_per_s = rate;
  thread->start_ns = start_ns;
  double duration_s = options->duration_s > 0.0 ? options->duration_s : BLAST_DURATION_S_MAX;
  thread->deadline_ns = start_ns + (uint64_t)(duration_s * 1e9);
  thread->first_producer = options->producer_base;
  for (uint32_t i = 0; i < index; i++) thread->first_producer += share(options->producers, options->threads, i);
  thread->producer_count = (uint32_t)share(options->producers, options->threads, index);
  if (options->expect_path != NULL) {
    thread->totals = calloc(options->counters, sizeof *thread->totals);
    thread->uncertain = calloc(options->counters, sizeof *thread->uncertain);
    if (thread->totals == NULL || thread->uncertain == NULL) return -1;
  }
  assert(thread->deadline_ns > thread->start_ns);
  return 0;
}

/* ---- Results -------------------------------------------------------------------- */

struct summary {
  struct blast_result total;
  struct blast_histogram histogram;
  uint64_t end_ns;      /* last confirmed increment */
  uint64_t sent_end_ns; /* last new message */
  uint32_t failed_threads;
  int first_error;
};

static void merge(struct summary *summary, struct blast_thread *threads, uint32_t count,
  uint32_t counters)
{
  assert(count >= 1);
  memset(summary, 0, sizeof *summary);
  for (uint32_t i = 0; i < count; i++) {
    const struct blast_result *r = &threads[i].result;
    struct blast_result *t = &summary->total;
    t->messages_sent += r->messages_sent;
    t->increments_sent += r->increments_sent;
    t->increments_done += r->increments_done;
    t->delta_sum_done += r->delta_sum_done;
    t->bytes_sent += r->bytes_sent;
    t->send_errors += r->send_errors;
    t->batches_acked += r->batches_acked;
    t->batches_duplicate += r->batches_duplicate;
    t->batches_unacked += r->batches_unacked;
    t->batches_rejected += r->batches_rejected;
    t->resends += r->resends;
    t->reply_errors += r->reply_errors;
    if (r->last_done_ns > summary->end_ns) summary->end_ns = r->last_done_ns;
    if (r->last_sent_ns > summary->sent_end_ns) summary->sent_end_ns = r->last_sent_ns;
    blast_histogram_merge(&summary->histogram, &threads[i].histogram);
    if (threads[i].failed != 0 && summary->failed_threads++ == 0) summary->first_error = threads[i].failed;
    if (i > 0 && threads[0].totals != NULL) {
      for (uint32_t c = 0; c < counters; c++) {
        threads[0].totals[c] += threads[i].totals[c];
        threads[0].uncertain[c] += threads[i].uncertain[c];
      }
    }
  }
  assert(summary->failed_threads <= count);
}

static const char *mode_name(enum blast_mode mode)
{
  return mode == BLAST_MODE_STATSD ? "statsd" : mode == BLAST_MODE_BINARY ? "binary" : "redis";
}

static void print_summary(const struct blast_options *options, const struct summary *summary,
  uint64_t start_ns, uint64_t wall_ns)
{
  const struct blast_result *t = &summary->total;
  /* Rates over the time until the last confirmation (or send), never zero. */
  uint64_t end_ns = summary->end_ns > summary->sent_end_ns ? summary->end_ns : summary->sent_end_ns;
  uint64_t active_ns = end_ns > start_ns ? end_ns - start_ns : wall_ns;
  double active_s = active_ns > 0 ? (double)active_ns / 1e9 : 1e-9;
  printf("{\"tool\":\"tally-blast\",\"mode\":\"%s\",\"target\":\"%s\",\"seed\":%llu,"
    "\"threads\":%u,\"counters\":%u,\"lines\":%u,\"dist\":\"%s\",\"rate_offered\":%llu,",
    mode_name(options->mode), options->target_text, (unsigned long long)options->seed,
    options->threads, options->counters, options->lines,
    options->dist == BLAST_DIST_ZIPF ? "zipf" : "uniform", (unsigned long long)options->rate_per_s);
  printf("\"elapsed_s\":%.6f,\"wall_s\":%.6f,\"sent\":%llu,\"bytes\":%llu,"
    "\"increments_sent\":%llu,\"increments\":%llu,\"delta_sum\":%lld,"
    "\"sent_per_s\":%.1f,\"increments_per_s\":%.1f,\"errors\":%llu,",
    active_s, (double)wall_ns / 1e9, (unsigned long long)t->messages_sent,
    (unsigned long long)t->bytes_sent, (unsigned long long)t->increments_sent,
    (unsigned long long)t->increments_done, (long long)t->delta_sum_done,
    (double)t->messages_sent / active_s, (double)t->increments_done / active_s,
    (unsigned long long)(t->send_errors + t->reply_errors));
  if (options->mode == BLAST_MODE_BINARY) {
    printf("\"producers\":%u,\"inflight\":%u,\"acked\":%llu,\"duplicate\":%llu,\"unacked\":%llu,"
      "\"rejected\":%llu,\"resends\":%llu,", options->producers, options->inflight,
      (unsigned long long)t->batches_acked, (unsigned long long)t->batches_duplicate,
      (unsigned long long)t->batches_unacked, (unsigned long long)t->batches_rejected,
      (unsigned long long)t->resends);
  }
  if (options->mode == BLAST_MODE_REDIS) printf("\"pipeline\":%u,", options->pipeline);
  if (options->mode != BLAST_MODE_STATSD) {
    const struct blast_histogram *h = &summary->histogram;
    printf("\"latency_us\":{\"count\":%llu,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},",
      (unsigned long long)h->count, blast_histogram_percentile_us(h, 0.5),
      blast_histogram_percentile_us(h, 0.99), blast_histogram_percentile_us(h, 0.999),
      (double)h->max_ns / 1000.0);
  }
  printf("\"failed_threads\":%u,\"error\":\"%s\"}\n", summary->failed_threads,
    summary->failed_threads ? strerror(summary->first_error) : "");
  fflush(stdout);
  assert(active_s > 0.0);
}

/* Writes {"totals": {name: total}, "uncertain": {...}} for counters touched. */
static int write_expect(const struct blast_options *options, const struct blast_thread *thread,
  const struct summary *summary)
{
  assert(thread->totals != NULL);
  assert(options->expect_path != NULL);
  FILE *file = fopen(options->expect_path, "w");
  if (file == NULL) return -1;
  fprintf(file, "{\"mode\":\"%s\",\"prefix\":\"%s\",\"increments\":%llu,\"delta_sum\":%lld,"
    "\"totals\":{", mode_name(options->mode), options->prefix,
    (unsigned long long)summary->total.increments_done, (long long)summary->total.delta_sum_done);
  char name[TALLY_NAME_LEN_MAX + 1];
  const int64_t *maps[2] = { thread->totals, thread->uncertain };
  for (uint32_t m = 0; m < 2; m++) {
    if (m == 1) fprintf(file, "},\"uncertain\":{");
    bool first = true;
    for (uint32_t c = 0; c < options->counters; c++) {
      if (maps[m][c] == 0) continue;
      uint32_t length = blast_format_name(&thread->workload, c, name);
      name[length] = '\0';
      fprintf(file, "%s\"%s\":%lld", first ? "" : ",", name, (long long)maps[m][c]);
      first = false;
    }
  }
  fprintf(file, "}}\n");
  return fclose(file) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
  static struct blast_options options;
  static struct blast_thread threads[BLAST_THREADS_MAX];
  parse_options(argc, argv, &options);
  uint64_t start_ns = blast_now_ns();
  for (uint32_t i = 0; i < options.threads; i++) {
    if (prepare_thread(&threads[i], &options, i, start_ns) != 0) {
      fprintf(stderr, "tally-blast: out of memory for the totals of %u counters\n", options.counters);
      return 1;
    }
  }
  uint32_t started = 0;
  for (; started < options.threads; started++) {
    int rc = pthread_create(&threads[started].thread, NULL, thread_main, &threads[started]);
    if (rc != 0) {
      fprintf(stderr, "tally-blast: cannot start a thread: %s\n", strerror(rc));
      break;
    }
  }
  for (uint32_t i = 0; i < started; i++) pthread_join(threads[i].thread, NULL);
  uint64_t wall_ns = blast_now_ns() - start_ns;
  static struct summary summary;
  merge(&summary, threads, started > 0 ? started : 1, options.counters);
  print_summary(&options, &summary, start_ns, wall_ns);
  if (options.expect_path != NULL && write_expect(&options, &threads[0], &summary) != 0) {
    fprintf(stderr, "tally-blast: cannot write %s: %s\n", options.expect_path, strerror(errno));
    return 1;
  }
  if (started < options.threads || summary.failed_threads == started) {
    fprintf(stderr, "tally-blast: %s: %s\n", options.target_text, strerror(summary.first_error));
    return 1;
  }
  assert(started == options.threads);
  return 0;
}
