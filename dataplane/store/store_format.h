/*
 * store_format.h — the store's on-media format that is not a struct: the
 * CRC32C used by every on-media check and by the name index, and the hash
 * seeds. Changing anything here is a new store layout (docs/store-layout.md).
 * Header-only; included by the store library and by whoever must compute a
 * name's index hash the way the store does (the lcores, the cluster scan).
 */
#ifndef TALLY_STORE_FORMAT_H
#define TALLY_STORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_hash_crc.h>

/* Seed of the name hash; part of the on-media format (changing it is a new layout). */
#define TALLY_NAME_HASH_SEED 0x7a11c0deu

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
