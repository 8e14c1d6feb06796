/*
 * measure.c — time in tally-blast: the monotonic clock, bounded sleeps, the
 * pacer that releases messages at the offered rate, the stop condition of a
 * sender, and the latency histogram (log-linear: 64 sub-buckets per power of
 * two nanoseconds, so any percentile is within 1.6 % of the true value).
 */
#include <assert.h>
#include <time.h>

#include "blast.h"

#define NS_PER_S 1000000000ull

uint64_t blast_now_ns(void)
{
  struct timespec now;
  int rc = clock_gettime(CLOCK_MONOTONIC, &now);
  assert(rc == 0);
  (void)rc;
  return (uint64_t)now.tv_sec * NS_PER_S + (uint64_t)now.tv_nsec;
}

void blast_sleep_ns(uint64_t ns)
{
  assert(ns < 10ull * NS_PER_S);
  struct timespec delay = { .tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S) };
  /* An interrupted sleep is just shorter: every caller re-checks the clock. */
  nanosleep(&delay, NULL);
}

/* ---- Pacer ------------------------------------------------------------------------ */

void blast_pacer_init(struct blast_pacer *pacer, uint64_t rate_per_s, uint64_t start_ns)
{
  assert(rate_per_s <= BLAST_RATE_MAX);
  assert(start_ns > 0);
  pacer->start_ns = start_ns;
  pacer->rate_per_s = rate_per_s;
  pacer->released = 0;
}

/*
 * How many of wanted messages are due now (all of them when flat out). Never
 * sleeps; when none is due the caller waits (sleep or poll) and asks again.
 */
uint32_t blast_pacer_allow(struct blast_pacer *pacer, uint32_t wanted)
{
  assert(wanted >= 1);
  if (pacer->rate_per_s == 0) {
    pacer->released += wanted;
    return wanted;
  }
  uint64_t elapsed_ns = blast_now_ns() - pacer->start_ns;
  uint64_t due = (uint64_t)((unsigned __int128)elapsed_ns * pacer->rate_per_s / NS_PER_S);
  if (due <= pacer->released) return 0;
  uint64_t allowed = due - pacer->released;
  if (allowed > wanted) allowed = wanted;
  pacer->released += allowed;
  assert(pacer->released <= due);
  return (uint32_t)allowed;
}

/* Nanoseconds until the next message is due (0 if one is due or flat out). */
uint64_t blast_pacer_wait_ns(const struct blast_pacer *pacer)
{
  if (pacer->rate_per_s == 0) return 0;
  uint64_t next_ns = pacer->start_ns +
    (uint64_t)((unsigned __int128)(pacer->released + 1) * NS_PER_S / pacer->rate_per_s);
  uint64_t now_ns = blast_now_ns();
  assert(next_ns > pacer->start_ns);
  return next_ns > now_ns ? next_ns - now_ns : 0;
}

/* Whether the thread still sends new messages: within its quota and deadline. */
bool blast_thread_sending(const struct blast_thread *thread, uint64_t sent, uint64_t now_ns)
{
  assert(thread->deadline_ns > thread->start_ns);
  assert(thread->quota == 0 || sent <= thread->quota);
  if (now_ns >= thread->deadline_ns) return false;
  return thread->quota == 0 || sent < thread->quota;
}

/* ---- Histogram --------------------------------------------------------------------- */

static uint32_t bucket_of(uint64_t ns)
{
  const uint64_t sub_count = 1ull << BLAST_HISTOGRAM_SUB_BITS;
  if (ns < sub_count) return (uint32_t)ns;
  uint32_t exponent = 63u - (uint32_t)__builtin_clzll(ns); /* >= SUB_BITS */
  uint32_t shift = exponent - BLAST_HISTOGRAM_SUB_BITS;
  uint32_t bucket = ((shift + 1u) << BLAST_HISTOGRAM_SUB_BITS) +
    (uint32_t)((ns >> shift) & (sub_count - 1u));
  assert(bucket < BLAST_HISTOGRAM_BUCKETS);
  return bucket;
}

/* The upper bound (ns) of a bucket: a percentile never reads low. */
static uint64_t bucket_ceiling_ns(uint32_t bucket)
{
  const uint32_t sub_count = 1u << BLAST_HISTOGRAM_SUB_BITS;
  assert(bucket < BLAST_HISTOGRAM_BUCKETS);
  if (bucket < sub_count) return bucket;
  uint32_t shift = (bucket >> BLAST_HISTOGRAM_SUB_BITS) - 1u;
  uint64_t low = ((uint64_t)(sub_count + (bucket & (sub_count - 1u)))) << shift;
  return low + ((1ull << shift) - 1u);
}

void blast_histogram_add(struct blast_histogram *histogram, uint64_t ns)
{
  uint32_t bucket = bucket_of(ns);
  assert(bucket < BLAST_HISTOGRAM_BUCKETS);
  histogram->buckets[bucket]++;
  histogram->count++;
  if (ns > histogram->max_ns) histogram->max_ns = ns;
  assert(histogram->count >= histogram->buckets[bucket]);
}

void blast_histogram_merge(struct blast_histogram *into, const struct blast_histogram *from)
{
  assert(into != from);
  uint64_t before = into->count;
  for (uint32_t i = 0; i < BLAST_HISTOGRAM_BUCKETS; i++) into->buckets[i] += from->buckets[i];
  into->count += from->count;
  if (from->max_ns > into->max_ns) into->max_ns = from->max_ns;
  assert(into->count == before + from->count);
}

/* The value at a fraction (0.5, 0.99, 0.999) in microseconds; 0 if empty. */
double blast_histogram_percentile_us(const struct blast_histogram *histogram, double fraction)
{
  assert(fraction > 0.0 && fraction <= 1.0);
  if (histogram->count == 0) return 0.0;
  uint64_t rank = (uint64_t)((double)histogram->count * fraction + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < BLAST_HISTOGRAM_BUCKETS; i++) {
    seen += histogram->buckets[i];
    if (seen >= rank) {
      uint64_t ns = bucket_ceiling_ns(i);
      if (ns > histogram->max_ns) ns = histogram->max_ns;
      return (double)ns / 1000.0;
    }
  }
  assert(0 && "histogram count disagrees with its buckets");
  return (double)histogram->max_ns / 1000.0;
}
