/*
 * bench_statsd.c — microbenchmarks of the statsd text path over one realistic
 * 60-line datagram: splitting and parsing it (tally_statsd_next_line +
 * tally_statsd_parse_line; items = lines), and the dataplane's whole per-line
 * work, parse + name hash + tally_shard_add into a DRAM shard (items =
 * counter lines applied), which is what the 20 M increments/s target is
 * about.
 *
 * The datagram mixes what producers send: plain counters, sampled counters
 * (|@0.1), DogStatsD tags (|#env:prod) and timers (|ms, recognised and not
 * counted), 60 lines in about 1.2 KB (under the 1472-byte datagram limit).
 * statsd_parse_tagged parses a datagram of 24 lines with three tags each, out
 * of key order: what building the canonical key (key.c) costs per line.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "tally/limits.h"
#include "tally/name.h"
#include "shard.h"
#include "statsd.h"

#include "bench.h"
#include "store_format.h"

#define DATAGRAM_LINES 60u
/* Counter table of the apply benchmark: room for every name of the datagram. */
#define APPLY_COUNTERS_MAX 1024u

/* The tagged datagram: lines with three DogStatsD tags each, out of key order. */
#define TAGGED_LINES 24u

struct statsd_datagram {
  char bytes[TALLY_DATAGRAM_SIZE_MAX];
  size_t size;
  uint32_t lines;
  uint32_t counter_lines; /* lines that are counters (all but the timers) */
};

/* Appends line i of the datagram; returns whether it is a counter. */
static bool datagram_line(struct statsd_datagram *datagram, uint32_t i)
{
  static const char *const outcomes[] = { "2xx", "3xx", "4xx", "5xx" };
  char *out = datagram->bytes + datagram->size;
  size_t room = sizeof(datagram->bytes) - datagram->size;
  const char *outcome = outcomes[i % 4u];
  bool counter = true;
  int length;
  switch (i % 10u) {
  case 3u:
    length = snprintf(out, room, "web%02u.req.%s:1|c|@0.1\n", i, outcome);
    break;
  case 5u:
    length = snprintf(out, room, "db%02u.query:%u|c|#env:prod\n", i, i + 1u);
    break;
  case 7u:
    length = snprintf(out, room, "web%02u.latency:%u|ms\n", i, 10u + i);
    counter = false;
    break;
  default:
    length = snprintf(out, room, "web%02u.req.%s:%u|c\n", i, outcome, 1u + i % 3u);
    break;
  }
  assert(length > 0);
  assert((size_t)length < room);
  datagram->size += (size_t)length;
  return counter;
}

static void datagram_build(struct statsd_datagram *datagram)
{
  memset(datagram, 0, sizeof(*datagram));
  datagram->lines = DATAGRAM_LINES;
  for (uint32_t i = 0; i < DATAGRAM_LINES; i++) {
    if (datagram_line(datagram, i)) datagram->counter_lines++;
  }
  assert(datagram->size <= TALLY_DATAGRAM_SIZE_MAX);
  assert(datagram->counter_lines < DATAGRAM_LINES);
}

/* Parses every line; returns the counter lines that parsed. */
static uint32_t datagram_parse(const struct statsd_datagram *datagram)
{
  const char *cursor = datagram->bytes;
  const char *end = cursor + datagram->size;
  const char *line = NULL;
  size_t line_len = 0;
  uint32_t counted = 0;
  uint32_t lines = 0;
  while (tally_statsd_next_line(&cursor, end, &line, &line_len)) {
    assert(lines < datagram->lines);
    lines++;
    struct tally_statsd_counter counter;
    if (tally_statsd_parse_line(line, line_len, NULL, &counter) == TALLY_OK) counted++;
    bench_keep(&counter);
  }
  assert(lines == datagram->lines);
  return counted;
}

/* 24 counter lines, each with status, route and env tags (canonical key: sorted). */
static void datagram_build_tagged(struct statsd_datagram *datagram)
{
  static const char *const statuses[] = { "200", "302", "404", "500" };
  memset(datagram, 0, sizeof(*datagram));
  datagram->lines = TAGGED_LINES;
  for (uint32_t i = 0; i < TAGGED_LINES; i++) {
    char *out = datagram->bytes + datagram->size;
    size_t room = sizeof(datagram->bytes) - datagram->size;
    int length = snprintf(out, room, "web%02u.req:1|c|#status:%s,route:/api/v%u,env:prod\n",
      i % 8u, statuses[i % 4u], i % 3u);
    assert(length > 0 && (size_t)length < room);
    datagram->size += (size_t)length;
    datagram->counter_lines++;
  }
  assert(datagram->size <= TALLY_DATAGRAM_SIZE_MAX);
}

/* What the dataplane does per datagram: parse, hash, add. Returns the increments. */
static uint32_t datagram_apply(const struct statsd_datagram *datagram,
  struct tally_shard *shard)
{
  const char *cursor = datagram->bytes;
  const char *end = cursor + datagram->size;
  const char *line = NULL;
  size_t line_len = 0;
  uint32_t applied = 0;
  uint32_t lines = 0;
  while (tally_statsd_next_line(&cursor, end, &line, &line_len)) {
    assert(lines < DATAGRAM_LINES);
    lines++;
    struct tally_statsd_counter counter;
    enum tally_reason reason = tally_statsd_parse_line(line, line_len, NULL, &counter);
    if (reason != TALLY_OK) continue;
    uint32_t hash = tally_shard_name_hash(shard, counter.name, counter.name_len);
    reason = tally_shard_add(shard, counter.name, counter.name_len, hash, counter.delta);
    if (reason == TALLY_OK) applied++;
  }
  assert(lines == DATAGRAM_LINES);
  return applied;
}

void bench_statsd_parse(struct bench_state *state)
{
  assert(state != NULL);
  struct statsd_datagram datagram;
  datagram_build(&datagram);
  assert(datagram.counter_lines > 0);
  int64_t counted = 0;
  while (bench_keep_running(state)) {
    counted += datagram_parse(&datagram);
  }
  int64_t datagrams = bench_iterations(state);
  bench_set_items(state, datagrams * DATAGRAM_LINES);
  bench_set_bytes(state, datagrams * (int64_t)datagram.size);
  if (counted != datagrams * datagram.counter_lines) {
    bench_fail(state, "statsd_parse: a counter line of the datagram did not parse");
  }
}

void bench_statsd_parse_tagged(struct bench_state *state)
{
  assert(state != NULL);
  struct statsd_datagram datagram;
  datagram_build_tagged(&datagram);
  int64_t counted = 0;
  while (bench_keep_running(state)) {
    counted += datagram_parse(&datagram);
  }
  int64_t datagrams = bench_iterations(state);
  bench_set_items(state, datagrams * TAGGED_LINES);
  bench_set_bytes(state, datagrams * (int64_t)datagram.size);
  if (counted != datagrams * datagram.counter_lines) {
    bench_fail(state, "statsd_parse_tagged: a tagged line did not parse");
  }
}

void bench_statsd_parse_apply(struct bench_state *state)
{
  assert(state != NULL);
  struct statsd_datagram datagram;
  datagram_build(&datagram);
  assert(datagram.counter_lines < APPLY_COUNTERS_MAX);
  struct bench_shard shard;
  if (bench_shard_create(&shard, APPLY_COUNTERS_MAX) != 0) {
    bench_fail(state, "statsd_parse_apply: cannot map the shard");
    return;
  }
  int64_t applied = 0;
  while (bench_keep_running(state)) {
    applied += datagram_apply(&datagram, shard.shard);
  }
  int64_t datagrams = bench_iterations(state);
  bench_set_items(state, applied);
  bench_set_bytes(state, datagrams * (int64_t)datagram.size);
  if (applied != datagrams * datagram.counter_lines) {
    bench_fail(state, "statsd_parse_apply: an increment was not applied");
  }
  bench_shard_destroy(&shard);
}
