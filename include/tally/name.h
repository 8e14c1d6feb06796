/*
 * name.h — what a counter name may be, and its hash. Shared by both ingest
 * protocols and the store so that every path accepts exactly the same names.
 */
#ifndef TALLY_NAME_H
#define TALLY_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_hash_crc.h>

#include "tally/limits.h"

/* Seed of the name hash; part of the on-media format (changing it is a new layout). */
#define TALLY_NAME_HASH_SEED 0x7a11c0deu

/* A name byte: printable ASCII except the statsd separators ':' '|' '@' '#'. */
static inline bool tally_name_byte_valid(uint8_t byte)
{
  return byte >= 0x21u && byte <= 0x7eu && byte != ':' && byte != '|' && byte != '@' &&
    byte != '#';
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

/* CRC32C of the name (hardware instruction where present; stable on media). */
static inline uint32_t tally_name_hash(const char *name, size_t name_len)
{
  return rte_hash_crc(name, (uint32_t)name_len, TALLY_NAME_HASH_SEED);
}

#endif
