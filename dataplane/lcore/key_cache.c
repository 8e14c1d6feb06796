/*
 * key_cache.c — each lcore's cache of producers' derived keys (key_cache.h):
 * a direct-mapped table under SipHash of the producer id, emptied when the
 * dataplane config's generation changes.
 *
 * Thread: the owning lcore.
 */
#include "key_cache.h"

#include <assert.h>
#include <string.h>

#include <sodium.h>

#include "tally/batch_wire.h"

static_assert((TALLY_KEY_CACHE_ENTRIES & (TALLY_KEY_CACHE_ENTRIES - 1u)) == 0,
  "entries a power of two");
static_assert(sizeof(((struct tally_key_cache *)0)->hash_key) == crypto_shorthash_KEYBYTES,
  "SipHash key size");

static uint32_t key_cache_index(const struct tally_key_cache *cache, uint64_t producer)
{
  uint8_t id[8];
  for (uint32_t i = 0; i < 8u; i++) id[i] = (uint8_t)(producer >> (8u * i));
  uint8_t hash[crypto_shorthash_BYTES];
  crypto_shorthash(hash, id, sizeof id, cache->hash_key);
  uint32_t index = 0;
  memcpy(&index, hash, sizeof index);
  return index & (TALLY_KEY_CACHE_ENTRIES - 1u);
}

const uint8_t *tally_key_cache_get(struct tally_key_cache *cache, uint64_t generation,
  const uint8_t ingest_key[TALLY_KEY_SIZE], uint64_t producer)
{
  assert(cache != NULL);
  assert(ingest_key != NULL);
  if (!cache->keyed) {
    randombytes_buf(cache->hash_key, sizeof cache->hash_key);
    cache->keyed = true;
  }
  if (cache->generation != generation) { /* the ingest key may have changed: forget all */
    for (uint32_t i = 0; i < TALLY_KEY_CACHE_ENTRIES; i++) cache->entries[i].valid = false;
    cache->generation = generation;
  }
  struct tally_key_cache_entry *entry = &cache->entries[key_cache_index(cache, producer)];
  if (entry->valid && entry->producer == producer) return entry->key;
  tally_wire_producer_key(ingest_key, producer, entry->key);
  entry->producer = producer;
  entry->valid = true;
  cache->derivations++;
  return entry->key;
}
