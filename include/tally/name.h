/*
 * name.h — what a counter name may be. Shared by both ingest protocols, the
 * store and libtally so that every path accepts exactly the same names. (The
 * name hash is part of the on-media format: dataplane/store/store_format.h.)
 */
#ifndef TALLY_NAME_H
#define TALLY_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tally/limits.h"

/*
 * A name byte: printable ASCII except the statsd separators ':' '|' '@' '#'.
 * A table, not a chain of comparisons: the name check was a fifth of the
 * statsd hot loop (docs/benchmarks.md).
 */
static const uint8_t tally_name_byte_table[256] = {
  /* 0x21..0x7e without '#' (0x23), ':' (0x3a), '@' (0x40), '|' (0x7c) */
  [0x21 ... 0x22] = 1, [0x24 ... 0x39] = 1, [0x3b ... 0x3f] = 1, [0x41 ... 0x7b] = 1,
  [0x7d ... 0x7e] = 1,
};

static inline bool tally_name_byte_valid(uint8_t byte)
{
  return tally_name_byte_table[byte] != 0;
}

/* Length 1..TALLY_NAME_LEN_MAX and every byte valid. */
static inline bool tally_name_valid(const char *name, size_t name_len)
{
  if (name_len == 0 || name_len > TALLY_NAME_LEN_MAX) return false;
  for (size_t i = 0; i < name_len; i++) {
    if (!tally_name_byte_valid((uint8_t)name[i])) return false;
  }
  return true;
}

#endif
