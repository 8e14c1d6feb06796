/*
 * config_statsd.c — the [ingest] keys that say who may send statsd (issue
 * 14, C1): statsd_source_rate and statsd_source_burst (the per-source token
 * bucket, include/tally/statsd_policy.h) and statsd_allow_cidrs (the
 * allow-list of source networks, checked before a datagram is parsed). A bad
 * value is one line naming the key. Runs on whichever thread loads the config.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "tally/statsd_policy.h"

/* "a.b.c.d/len" is at most 18 bytes. */
#define CIDR_TEXT_LEN_MAX 18u

const char *tally_cidr_parse(const char *text, size_t text_len, struct tally_cidr *cidr)
{
  assert(text != NULL && cidr != NULL);
  if (text_len == 0) return "an empty entry";
  if (text_len > CIDR_TEXT_LEN_MAX) return "not an IPv4 network a.b.c.d/len";
  char copy[CIDR_TEXT_LEN_MAX + 1u];
  memcpy(copy, text, text_len);
  copy[text_len] = '\0';
  char *slash = strchr(copy, '/');
  if (slash == NULL) return "no /len (write a.b.c.d/32 for one address)";
  *slash = '\0';
  uint32_t address = 0;
  if (!config_ipv4_parse(copy, &address)) return "not an IPv4 network a.b.c.d/len";
  uint64_t length = 0;
  if (!config_decimal_parse(slash + 1, strlen(slash + 1), &length) || length > 32u) {
    return "prefix length not 0..32";
  }
  uint32_t mask = length == 0 ? 0u : ~0u << (32u - (uint32_t)length);
  if ((address & ~mask) != 0) return "host bits set after the prefix length";
  cidr->network = address;
  cidr->mask = mask;
  assert((cidr->network & ~cidr->mask) == 0);
  return NULL;
}

/* One trimmed entry of statsd_allow_cidrs, [start, end). */
static int allow_cidr(struct parse_state *state, enum config_key key, const char *start,
  const char *end)
{
  struct tally_statsd_policy *policy = &state->config.statsd_policy;
  if (policy->allow_count == TALLY_STATSD_ALLOW_CIDRS_MAX) {
    return config_fail(state, key, "more networks than the limit (16)");
  }
  struct tally_cidr cidr;
  const char *what = tally_cidr_parse(start, (size_t)(end - start), &cidr);
  if (what != NULL) {
    char message[96];
    snprintf(message, sizeof message, "'%.*s': %s", (int)(end - start > 24 ? 24 : end - start),
      start, what);
    return config_fail(state, key, message);
  }
  policy->allow[policy->allow_count++] = cidr;
  return 1;
}

int config_parse_statsd_allow_cidrs(struct parse_state *state, enum config_key key,
  const char *value)
{
  assert(key == KEY_INGEST_STATSD_ALLOW_CIDRS);
  assert(value != NULL);
  state->config.statsd_policy.allow_count = 0;
  size_t total = strlen(value);
  size_t position = 0;
  /* Bounded by the value: each round consumes one entry and its ','. */
  while (position <= total) {
    size_t length = strcspn(value + position, ",");
    const char *start = value + position;
    const char *end = start + length;
    while (start < end && config_is_space(*start)) start++;
    while (end > start && config_is_space(end[-1])) end--;
    if (allow_cidr(state, key, start, end) == 0) return 0;
    position += length + 1u;
  }
  return 1;
}

int config_parse_statsd_source(struct parse_state *state, enum config_key key,
  const char *value)
{
  struct tally_statsd_policy *policy = &state->config.statsd_policy;
  if (key == KEY_INGEST_STATSD_SOURCE_RATE) {
    return config_parse_uint(state, key, value, 0, TALLY_STATSD_SOURCE_RATE_MAX,
      &policy->source_rate);
  }
  assert(key == KEY_INGEST_STATSD_SOURCE_BURST);
  return config_parse_uint(state, key, value, 1, TALLY_STATSD_SOURCE_BURST_MAX,
    &policy->source_burst);
}
