/*
 * workload.c — what tally-blast sends: a seeded generator (xoshiro256**),
 * counter indexes drawn uniformly or from a Zipf law, increments, and the
 * names "PREFIX<index>" formatted without printf on the send path.
 *
 * The Zipf sampler is rejection-inversion (W. Hörmann, G. Derflinger,
 * "Rejection-inversion to generate variates from monotone discrete
 * distributions", 1996): constant time and memory per draw for any number of
 * counters, so 10 M Zipf-skewed names need no table.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "blast.h"

#define ZIPF_TRIES_MAX 64u

static inline uint64_t rotate_left(uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void blast_rng_seed(struct blast_rng *rng, uint64_t seed)
{
  uint64_t state = seed;
  for (uint32_t i = 0; i < 4; i++) rng->s[i] = splitmix64(&state);
  assert((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) != 0);
  assert(rng->s[0] != rng->s[1]);
}

uint64_t blast_rng_next(struct blast_rng *rng)
{
  uint64_t *s = rng->s;
  uint64_t result = rotate_left(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotate_left(s[3], 45);
  return result;
}

/* A double in [0, 1). */
static double rng_unit(struct blast_rng *rng)
{
  return (double)(blast_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* ---- Zipf by rejection-inversion ---------------------------------------------- */

static double helper1(double x) /* log1p(x) / x */
{
  return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double helper2(double x) /* expm1(x) / x */
{
  return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

static double zipf_h(const struct blast_zipf *zipf, double x)
{
  return exp(-zipf->s * log(x));
}

static double zipf_h_integral(const struct blast_zipf *zipf, double x)
{
  double log_x = log(x);
  return helper2((1.0 - zipf->s) * log_x) * log_x;
}

static double zipf_h_integral_inverse(const struct blast_zipf *zipf, double x)
{
  double t = x * (1.0 - zipf->s);
  if (t < -1.0) t = -1.0;
  return exp(helper1(t) * x);
}

void blast_zipf_init(struct blast_zipf *zipf, uint32_t n, double s)
{
  assert(n >= 1);
  assert(s > 0.0);
  zipf->s = s;
  zipf->n = (double)n;
  zipf->h_integral_x1 = zipf_h_integral(zipf, 1.5) - 1.0;
  zipf->h_integral_n = zipf_h_integral(zipf, zipf->n + 0.5);
  zipf->s_alt = 2.0 - zipf_h_integral_inverse(zipf, zipf_h_integral(zipf, 2.5) - zipf_h(zipf, 2.0));
}

/* A rank in 0..n-1, rank 0 the most frequent. */
uint32_t blast_zipf_draw(const struct blast_zipf *zipf, struct blast_rng *rng)
{
  assert(zipf->n >= 1.0);
  double k = 1.0;
  for (uint32_t tries = 0; tries < ZIPF_TRIES_MAX; tries++) {
    double u = zipf->h_integral_n + rng_unit(rng) * (zipf->h_integral_x1 - zipf->h_integral_n);
    double x = zipf_h_integral_inverse(zipf, u);
    k = floor(x + 0.5);
    if (k < 1.0) k = 1.0;
    if (k > zipf->n) k = zipf->n;
    if (k - x <= zipf->s_alt || u >= zipf_h_integral(zipf, k + 0.5) - zipf_h(zipf, k)) break;
  }
  uint32_t rank = (uint32_t)k - 1u;
  assert(rank < (uint32_t)zipf->n);
  return rank;
}

/* ---- Workload ------------------------------------------------------------------ */

void blast_workload_init(struct blast_workload *workload, const struct blast_options *options,
  uint32_t thread_index)
{
  assert(options->counters >= 1);
  assert(thread_index < BLAST_THREADS_MAX);
  memset(workload, 0, sizeof *workload);
  blast_rng_seed(&workload->rng, options->seed * 1000003ull + thread_index);
  workload->dist = options->dist;
  workload->counters = options->counters;
  workload->delta_max = options->delta_max;
  workload->prefix = options->prefix;
  workload->prefix_len = (uint32_t)strlen(options->prefix);
  if (options->dist == BLAST_DIST_ZIPF) blast_zipf_init(&workload->zipf, options->counters, options->zipf_s);
}

uint32_t blast_workload_counter(struct blast_workload *workload)
{
  assert(workload->counters >= 1);
  uint32_t counter;
  if (workload->dist == BLAST_DIST_ZIPF) {
    counter = blast_zipf_draw(&workload->zipf, &workload->rng);
  } else {
    counter = (uint32_t)(((blast_rng_next(&workload->rng) >> 32) * workload->counters) >> 32);
  }
  assert(counter < workload->counters);
  return counter;
}

int64_t blast_workload_delta(struct blast_workload *workload)
{
  assert(workload->delta_max >= 1);
  if (workload->delta_max == 1) return 1;
  int64_t delta = 1 + (int64_t)(blast_rng_next(&workload->rng) % (uint64_t)workload->delta_max);
  assert(delta >= 1 && delta <= workload->delta_max);
  return delta;
}

/* Decimal digits of value into out (no NUL); returns how many. */
uint32_t blast_format_u64(uint64_t value, char *out)
{
  char reversed[20];
  uint32_t length = 0;
  do {
    assert(length < sizeof reversed);
    reversed[length++] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0);
  for (uint32_t i = 0; i < length; i++) out[i] = reversed[length - 1 - i];
  assert(length >= 1);
  return length;
}

/* "PREFIX<counter>" into out (no NUL); returns its length. */
uint32_t blast_format_name(const struct blast_workload *workload, uint32_t counter, char *out)
{
  assert(counter < workload->counters);
  memcpy(out, workload->prefix, workload->prefix_len);
  uint32_t length = workload->prefix_len + blast_format_u64(counter, out + workload->prefix_len);
  assert(length <= TALLY_NAME_LEN_MAX);
  return length;
}

uint32_t blast_name_len_max(const struct blast_options *options)
{
  assert(options->counters >= 1);
  char digits[20];
  uint32_t length = (uint32_t)strlen(options->prefix) + blast_format_u64(options->counters - 1u, digits);
  assert(length >= 1);
  return length;
}
