/*
 * seeded.h — what the seeded crash-point harnesses share (test_wal_crash.c,
 * test_checkpoint_crash.c): the splitmix64 generator every choice is drawn
 * from, so that a seed replays a point exactly, and the numbers read from
 * the environment (point counts for a soak, the first seed). Test thread.
 */
#ifndef TALLY_TEST_SEEDED_H
#define TALLY_TEST_SEEDED_H

#include <stdint.h>
#include <stdlib.h>

/* The next number of the splitmix64 sequence in *state. */
static inline uint64_t seeded_next(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The decimal number in environment variable name, or fallback when unset or empty. */
static inline uint64_t seeded_env_number(const char *name, uint64_t fallback)
{
  const char *text = getenv(name);
  return text != NULL && *text != '\0' ? strtoull(text, NULL, 10) : fallback;
}

#endif
