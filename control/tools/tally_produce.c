/*
 * tally_produce.c — `tally-produce`, a reliable producer on the command line,
 * built on libtally (include/tally/client.h): increments from arguments
 * (NAME:DELTA) or from stdin ("NAME DELTA" lines) are batched, signed, sent,
 * retried and failed over by the library; the command prints how every batch
 * ended and the next seq to persist.
 *
 * Exit status: 0 every batch acked; 1 some batch failed (or an increment could
 * not be sent); 2 all sent batches acked but some input was rejected; 64 usage.
 *
 * Thread: its own process, one thread (the one that drives the client).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tally/client.h"

#define EXIT_FAILED 1
#define EXIT_REJECTED 2
#define EXIT_USAGE 64
/* Its bounds (line size, failures listed, poll cadence, input lines): TALLY_PRODUCE_* in
 * include/tally/limits.h. */

struct failure {
  uint64_t seq;
  enum tally_client_status status;
  uint32_t attempts;
  uint32_t pairs;
  bool uncertain;
};

struct outcome {
  uint64_t acked;
  uint64_t duplicate;
  uint64_t duplicate_first; /* DUPLICATE on the first attempt: seq reused? */
  uint64_t failed;
  uint32_t listed;
  struct failure failures[TALLY_PRODUCE_FAILURES_LISTED_MAX];
};

struct options {
  struct tally_client_config config;
  char nodes[TALLY_CLIENT_NODES_MAX][TALLY_CLIENT_NODE_LEN_MAX + 1];
  uint32_t flush_every;
};

static void usage(FILE *stream)
{
  fprintf(stream,
    "usage: tally-produce --nodes HOST:PORT[,HOST:PORT...] --key-file PATH --producer ID\n"
    "                     [options] [NAME:DELTA...]\n"
    "Sends counter increments as acked, deduplicated batches. Without NAME:DELTA\n"
    "arguments, reads 'NAME DELTA' lines from stdin (blank lines are skipped).\n"
    "The key (64 hex digits) comes from --key-file (a file only its owner may\n"
    "access) or, without it, from the environment variable TALLY_KEY; never from\n"
    "the command line, where every user sees it (/proc/PID/cmdline).\n"
    "options:\n"
    "  --key-file PATH          the file holding the key\n"
    "  --seq N                  seq of the first batch (default 1); persist the\n"
    "                           printed next_seq and pass it next time\n"
    "  --timeout-ms MS          per-batch deadline (default 10000)\n"
    "  --ack-timeout-ms MS      per-attempt ack timeout (default 200)\n"
    "  --retries N              resends after the first attempt (default 7)\n"
    "  --inflight N             batches in flight, 1..64 (default 64)\n"
    "  --flush-every N          seal a batch every N increments (default: when full)\n"
    "  --breaker-failures N     consecutive failures that open a node's breaker (5)\n"
    "  --breaker-cooldown-ms MS open -> half-open (default 1000)\n"
    "  -h, --help               print this help and exit\n"
    "  --version                print the version and exit\n"
    "exit: 0 all acked, 1 some batch failed, 2 input rejected, 64 usage\n");
}

static bool parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
  assert(text != NULL);
  assert(min <= max);
  if (*text < '0' || *text > '9') return false;
  errno = 0;
  char *end = NULL;
  unsigned long long parsed = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || parsed < min || parsed > max) return false;
  *value = parsed;
  return true;
}

static bool parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *value)
{
  uint64_t parsed = 0;
  if (!parse_u64(text, min, max, &parsed)) return false;
  assert(parsed <= UINT32_MAX);
  *value = (uint32_t)parsed;
  return true;
}

static bool parse_delta(const char *text, int64_t *delta)
{
  assert(text != NULL);
  assert(delta != NULL);
  if (*text == '\0') return false;
  errno = 0;
  char *end = NULL;
  long long parsed = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || end == text) return false;
  *delta = parsed;
  return true;
}

static bool parse_nodes(const char *text, struct options *options)
{
  assert(text != NULL);
  assert(options != NULL);
  const char *start = text;
  options->config.node_count = 0;
  /* Bounded: one round per comma-separated node, at most TALLY_CLIENT_NODES_MAX. */
  for (;;) {
    const char *comma = strchr(start, ',');
    size_t length = comma == NULL ? strlen(start) : (size_t)(comma - start);
    uint32_t index = options->config.node_count;
    if (length == 0 || length > TALLY_CLIENT_NODE_LEN_MAX || index == TALLY_CLIENT_NODES_MAX)
      return false;
    memcpy(options->nodes[index], start, length);
    options->nodes[index][length] = '\0';
    options->config.nodes[index] = options->nodes[index];
    options->config.node_count++;
    if (comma == NULL) return true;
    start = comma + 1;
  }
}

static bool parse_key(const char *text, size_t length, uint8_t key[TALLY_KEY_SIZE])
{
  assert(text != NULL);
  size_t written = 0;
  if (length != 2u * TALLY_KEY_SIZE) return false;
  if (sodium_hex2bin(key, TALLY_KEY_SIZE, text, length, NULL, &written, NULL) != 0)
    return false;
  return written == TALLY_KEY_SIZE;
}

/*
 * The key from a file: 64 hex digits, then optional whitespace. The file must
 * be a regular file that group and others cannot access (as tallyd's config).
 */
static bool read_key_file(const char *path, uint8_t key[TALLY_KEY_SIZE])
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat status;
  if (fd < 0 || fstat(fd, &status) != 0) {
    fprintf(stderr, "tally-produce: --key-file %s: %s\n", path, strerror(errno));
    if (fd >= 0) close(fd);
    return false;
  }
  if (!S_ISREG(status.st_mode) || (status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    fprintf(stderr, "tally-produce: --key-file %s: not a regular file that only its owner may "
      "access (chmod 600)\n", path);
    close(fd);
    return false;
  }
  char text[TALLY_PRODUCE_KEY_FILE_SIZE_MAX + 1];
  ssize_t size = read(fd, text, sizeof text);
  close(fd);
  size_t length = size < 0 ? 0 : (size_t)size;
  /* Bounded by the buffer. */
  while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == ' ' ||
         text[length - 1] == '\r' || text[length - 1] == '\t')) {
    length--;
  }
  bool ok = size > 0 && (size_t)size <= TALLY_PRODUCE_KEY_FILE_SIZE_MAX &&
    parse_key(text, length, key);
  sodium_memzero(text, sizeof text);
  if (!ok) fprintf(stderr, "tally-produce: --key-file %s: not 64 hex digits\n", path);
  return ok;
}

enum {
  OPTION_NODES = 256,
  OPTION_KEY,
  OPTION_KEY_FILE,
  OPTION_PRODUCER,
  OPTION_SEQ,
  OPTION_TIMEOUT_MS,
  OPTION_ACK_TIMEOUT_MS,
  OPTION_RETRIES,
  OPTION_INFLIGHT,
  OPTION_FLUSH_EVERY,
  OPTION_BREAKER_FAILURES,
  OPTION_BREAKER_COOLDOWN_MS,
  OPTION_HELP,
  OPTION_VERSION,
};

/* Applies one option; false (with a message) if its value is invalid. */
static bool apply_option(int option, const char *value, struct options *options, bool *key_set)
{
  assert(value != NULL);
  assert(key_set != NULL);
  struct tally_client_config *config = &options->config;
  const uint32_t ms_max = TALLY_CLIENT_DURATION_MS_MAX;
  uint32_t retries = 0;
  bool ok = false;
  switch (option) {
  case OPTION_NODES: ok = parse_nodes(value, options); break;
  case OPTION_KEY:
    fprintf(stderr, "tally-produce: --key puts the key on the command line, where every user "
      "sees it; use --key-file PATH or TALLY_KEY\n");
    return false;
  case OPTION_KEY_FILE: ok = *key_set = read_key_file(value, config->key); break;
  case OPTION_PRODUCER: ok = parse_u64(value, 1, TALLY_PRODUCER_ID_MAX, &config->producer); break;
  case OPTION_SEQ: ok = parse_u64(value, 0, UINT64_MAX - 1u, &config->first_seq); break;
  case OPTION_TIMEOUT_MS: ok = parse_u32(value, 1, ms_max, &config->batch_timeout_ms); break;
  case OPTION_ACK_TIMEOUT_MS: ok = parse_u32(value, 1, ms_max, &config->ack_timeout_ms); break;
  case OPTION_RETRIES:
    ok = parse_u32(value, 0, TALLY_CLIENT_ATTEMPTS_MAX - 1u, &retries);
    config->attempts_max = retries + 1u;
    break;
  case OPTION_INFLIGHT: ok = parse_u32(value, 1, TALLY_DEDUP_WINDOW, &config->inflight_max); break;
  case OPTION_FLUSH_EVERY: ok = parse_u32(value, 1, UINT32_MAX, &options->flush_every); break;
  case OPTION_BREAKER_FAILURES:
    ok = parse_u32(value, 1, UINT32_MAX, &config->breaker_failures);
    break;
  case OPTION_BREAKER_COOLDOWN_MS:
    ok = parse_u32(value, 1, ms_max, &config->breaker_cooldown_ms);
    break;
  default: assert(false);
  }
  if (!ok && option != OPTION_KEY_FILE) fprintf(stderr, "tally-produce: invalid value '%s'\n", value);
  return ok;
}

/* Parses argv into options; returns the index of the first NAME:DELTA, or -1. */
static int parse_options(int argc, char **argv, struct options *options)
{
  static const struct option long_options[] = {
    { "nodes", required_argument, NULL, OPTION_NODES },
    { "key", required_argument, NULL, OPTION_KEY },
    { "key-file", required_argument, NULL, OPTION_KEY_FILE },
    { "producer", required_argument, NULL, OPTION_PRODUCER },
    { "seq", required_argument, NULL, OPTION_SEQ },
    { "timeout-ms", required_argument, NULL, OPTION_TIMEOUT_MS },
    { "ack-timeout-ms", required_argument, NULL, OPTION_ACK_TIMEOUT_MS },
    { "retries", required_argument, NULL, OPTION_RETRIES },
    { "inflight", required_argument, NULL, OPTION_INFLIGHT },
    { "flush-every", required_argument, NULL, OPTION_FLUSH_EVERY },
    { "breaker-failures", required_argument, NULL, OPTION_BREAKER_FAILURES },
    { "breaker-cooldown-ms", required_argument, NULL, OPTION_BREAKER_COOLDOWN_MS },
    { "help", no_argument, NULL, OPTION_HELP },
    { "version", no_argument, NULL, OPTION_VERSION },
    { NULL, 0, NULL, 0 },
  };
  assert(argc >= 1);
  bool key_set = false;
  /* Bounded by argc. */
  for (int round = 0; round <= argc; round++) {
    int option = getopt_long(argc, argv, "h", long_options, NULL);
    if (option == -1) break;
    if (option == OPTION_HELP || option == 'h') {
      usage(stdout);
      exit(0);
    }
    if (option == OPTION_VERSION) {
      printf("tally-produce %s\n", TALLY_VERSION);
      exit(0);
    }
    if (option == '?' || !apply_option(option, optarg, options, &key_set)) return -1;
  }
  const char *key_env = getenv("TALLY_KEY");
  if (!key_set && key_env != NULL) {
    key_set = parse_key(key_env, strlen(key_env), options->config.key);
    if (!key_set) {
      fprintf(stderr, "tally-produce: TALLY_KEY: not 64 hex digits\n");
      return -1;
    }
  }
  if (options->config.node_count == 0 || !key_set || options->config.producer == 0) {
    fprintf(stderr, "tally-produce: --nodes, --key-file (or TALLY_KEY) and --producer are "
      "required\n");
    return -1;
  }
  assert(optind <= argc);
  return optind;
}

static void on_done(void *context, const struct tally_client_completion *completion)
{
  struct outcome *outcome = context;
  assert(outcome != NULL);
  assert(completion != NULL);
  if (tally_client_status_ok(completion->status)) {
    outcome->acked++;
    if (completion->status != TALLY_CLIENT_DUPLICATE) return;
    outcome->duplicate++;
    if (completion->attempts == 1) outcome->duplicate_first++;
    return;
  }
  outcome->failed++;
  if (outcome->listed == TALLY_PRODUCE_FAILURES_LISTED_MAX) return;
  outcome->failures[outcome->listed++] = (struct failure){ .seq = completion->seq,
    .status = completion->status, .attempts = completion->attempts,
    .pairs = completion->pair_count, .uncertain = completion->uncertain };
}

struct input {
  uint64_t increments;
  uint64_t rejected;
  uint64_t unsent;      /* refused by the client (EBUSY / EIO): not in any batch */
  uint32_t since_flush;
};

/* Hands one increment to the client; name is NUL-terminated. */
static void produce(struct tally_client *client, const struct options *options,
  struct input *input, const char *name, int64_t delta, const char *where)
{
  assert(client != NULL);
  assert(name != NULL);
  enum tally_client_status status = tally_client_add(client, name, delta);
  if (status == TALLY_CLIENT_EINVAL) {
    fprintf(stderr, "tally-produce: %s: invalid counter name '%s'\n", where, name);
    input->rejected++;
    return;
  }
  if (status != TALLY_CLIENT_OK) {
    fprintf(stderr, "tally-produce: %s: not sent: %s\n", where, tally_client_status_name(status));
    input->unsent++;
    return;
  }
  input->increments++;
  input->since_flush++;
  if (options->flush_every != 0 && input->since_flush >= options->flush_every) {
    input->since_flush = 0;
    status = tally_client_flush(client);
    if (status != TALLY_CLIENT_OK && status != TALLY_CLIENT_EBUSY) {
      fprintf(stderr, "tally-produce: flush: %s\n", tally_client_status_name(status));
    }
  }
  if (input->increments % TALLY_PRODUCE_POLL_EVERY_INCREMENTS == 0) {
    (void)tally_client_poll(client, 0);
  }
}

/* NAME:DELTA arguments (the name cannot hold ':', so split at the last one). */
static void produce_arguments(struct tally_client *client, const struct options *options,
  struct input *input, int argc, char **argv, int first)
{
  assert(first >= 1 && first <= argc);
  assert(input != NULL);
  for (int i = first; i < argc; i++) {
    char *colon = strrchr(argv[i], ':');
    int64_t delta = 0;
    if (colon == NULL || !parse_delta(colon + 1, &delta)) {
      fprintf(stderr, "tally-produce: argument '%s' is not NAME:DELTA\n", argv[i]);
      input->rejected++;
      continue;
    }
    *colon = '\0';
    produce(client, options, input, argv[i], delta, "argument");
  }
}

/* Splits "NAME DELTA" (blanks around and between); false if it is not that. */
static bool split_line(char *line, char **name, int64_t *delta)
{
  assert(line != NULL);
  assert(name != NULL);
  char *save = NULL;
  char *first = strtok_r(line, " \t\r\n", &save);
  char *second = first == NULL ? NULL : strtok_r(NULL, " \t\r\n", &save);
  char *third = second == NULL ? NULL : strtok_r(NULL, " \t\r\n", &save);
  if (first == NULL || second == NULL || third != NULL) return false;
  *name = first;
  return parse_delta(second, delta);
}

static void produce_stdin(struct tally_client *client, const struct options *options,
  struct input *input)
{
  assert(client != NULL);
  assert(input != NULL);
  char line[TALLY_PRODUCE_LINE_SIZE_MAX];
  char where[48];
  for (uint64_t number = 1; number <= TALLY_PRODUCE_INPUT_LINES_MAX; number++) {
    if (fgets(line, sizeof line, stdin) == NULL) break;
    snprintf(where, sizeof where, "line %" PRIu64, number);
    size_t length = strlen(line);
    if (length == sizeof line - 1u && line[length - 1u] != '\n' && !feof(stdin)) {
      fprintf(stderr, "tally-produce: %s: longer than %u bytes\n", where,
        TALLY_PRODUCE_LINE_SIZE_MAX - 1u);
      input->rejected++;
      int c = 0;
      /* Bounded by the input: skip to the end of the long line. */
      while ((c = getchar()) != EOF && c != '\n') {}
      continue;
    }
    if (strspn(line, " \t\r\n") == length) continue; /* blank */
    char *name = NULL;
    int64_t delta = 0;
    if (!split_line(line, &name, &delta)) {
      fprintf(stderr, "tally-produce: %s: not 'NAME DELTA'\n", where);
      input->rejected++;
      continue;
    }
    produce(client, options, input, name, delta, where);
  }
  if (ferror(stdin)) {
    fprintf(stderr, "tally-produce: reading stdin: %s\n", strerror(errno));
    input->rejected++;
  }
}

static int summarize(const struct outcome *outcome, const struct input *input,
  const struct tally_client_stats *client_stats, uint64_t next_seq)
{
  assert(outcome != NULL);
  assert(input != NULL);
  const struct tally_client_stats stats = *client_stats;
  printf("acked %" PRIu64 " batches (applied %" PRIu64 ", duplicate %" PRIu64 ")\n",
    outcome->acked, outcome->acked - outcome->duplicate, outcome->duplicate);
  printf("failed %" PRIu64 " batches\n", outcome->failed);
  for (uint32_t i = 0; i < outcome->listed; i++) {
    const struct failure *failure = &outcome->failures[i];
    printf("failed seq %" PRIu64 " status %s attempts %u pairs %u%s\n", failure->seq,
      tally_client_status_name(failure->status), failure->attempts, failure->pairs,
      failure->uncertain ? " uncertain" : "");
  }
  if (outcome->failed > outcome->listed) {
    printf("failed ... and %" PRIu64 " more\n", outcome->failed - outcome->listed);
  }
  printf("increments %" PRIu64 " rejected %" PRIu64 " unsent %" PRIu64 "\n", input->increments,
    input->rejected, input->unsent);
  printf("datagrams %" PRIu64 " retransmissions %" PRIu64 " ack_timeouts %" PRIu64
    " breaker_opens %" PRIu64 "\n", stats.datagrams_sent, stats.retransmissions,
    stats.ack_timeouts, stats.breaker_opens);
  printf("next_seq %" PRIu64 "\n", next_seq);
  if (outcome->duplicate_first > 0) {
    fprintf(stderr, "tally-produce: %" PRIu64 " batches were answered duplicate on their first "
      "attempt: their seq was used before (pass the persisted next_seq with --seq); their "
      "increments were not counted again\n", outcome->duplicate_first);
  }
  if (outcome->failed > 0 || input->unsent > 0) return EXIT_FAILED;
  return input->rejected > 0 ? EXIT_REJECTED : 0;
}

int main(int argc, char **argv)
{
  static struct options options;
  static struct outcome outcome;
  struct input input = { 0 };
  tally_client_config_default(&options.config);
  int first = parse_options(argc, argv, &options);
  if (first < 0) {
    usage(stderr);
    return EXIT_USAGE;
  }
  assert(first >= 1 && first <= argc);
  struct tally_client_config *config = &options.config;
  assert(config->node_count >= 1 && config->producer != 0);
  config->on_done = on_done;
  config->on_done_context = &outcome;
  /* add/flush wait as long as one batch may live: by then a slot has freed. */
  config->block_ms = config->batch_timeout_ms + config->ack_timeout_ms;
  if (config->block_ms > TALLY_CLIENT_DURATION_MS_MAX) config->block_ms = TALLY_CLIENT_DURATION_MS_MAX;
  if (config->batch_timeout_ms < config->ack_timeout_ms) config->ack_timeout_ms = config->batch_timeout_ms;
  char error[256];
  struct tally_client *client = tally_client_new(config, error, sizeof error);
  if (client == NULL) {
    fprintf(stderr, "tally-produce: %s\n", error);
    return EXIT_USAGE;
  }
  if (first < argc) produce_arguments(client, &options, &input, argc, argv, first);
  else produce_stdin(client, &options, &input);
  enum tally_client_status status = tally_client_drain(client,
    config->batch_timeout_ms + config->ack_timeout_ms);
  if (status != TALLY_CLIENT_OK) {
    fprintf(stderr, "tally-produce: drain: %s\n", tally_client_status_name(status));
  }
  struct tally_client_stats stats;
  tally_client_stats(client, &stats);
  uint64_t next_seq = tally_client_next_seq(client);
  /* Anything still unfinished is reported CANCELLED (so counted as failed) by free. */
  tally_client_free(client);
  return summarize(&outcome, &input, &stats, next_seq);
}
