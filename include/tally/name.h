/*
 * name.h — what a counter name may be, and its hash. Shared by both ingest
 * protocols and the store so that every path accepts exactly the same names.
 */
#ifndef TALLY_NAME_H
#define TALLY_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_hash_crc.h>

#include "tally/limits.h"

/* Seed of the name hash; part of the on-media format (changing it is a new layout). */
#define TALLY_NAME_HASH_SEED 0x7a11c0deu

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

/*
 * CRC32C of any bytes (hardware instruction where present; stable on media):
 * the same chunking as rte_hash_crc(), but loading through memcpy, because
 * names sit at any alignment inside datagrams. tally_name_hash is the name
 * index hash.
 */
static inline uint32_t tally_crc32c(const void *data, size_t size, uint32_t crc)
{
  const char *name = (const char *)data;
  size_t name_len = size;
  size_t offset = 0;
  for (; offset + 8 <= name_len; offset += 8) {
    uint64_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_8byte(word, crc);
  }
  if (name_len & 4u) {
    uint32_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_4byte(word, crc);
    offset += 4;
  }
  if (name_len & 2u) {
    uint16_t word;
    memcpy(&word, name + offset, sizeof word);
    crc = rte_hash_crc_2byte(word, crc);
    offset += 2;
  }
  if (name_len & 1u) crc = rte_hash_crc_1byte((uint8_t)name[offset], crc);
  return crc;
}

static inline uint32_t tally_name_hash(const char *name, size_t name_len)
{
  return tally_crc32c(name, name_len, TALLY_NAME_HASH_SEED);
}

#endif
