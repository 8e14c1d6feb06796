/*
 * key_cache.h — each lcore's cache of producers' derived keys
 * (ingest.producer_keys = derived, issue 14 M2): a producer's key is
 * BLAKE2b of its id under the ingest key, as costly as a MAC. Without the
 * cache a batch derived it twice: once to check its MAC on the receiving
 * lcore, once to MAC its ack on the owner. With it a producer's key is
 * derived once per lcore and ingest key, then looked up.
 *
 * Direct-mapped, TALLY_KEY_CACHE_ENTRIES entries under a keyed hash of the
 * producer id (SipHash, random key set at start: forged ids cannot aim at
 * one entry). A forged id costs one derivation, as it did without the cache,
 * and may evict a real producer's entry, which costs that producer one
 * derivation more. The cache is emptied when the published dataplane config
 * (and so possibly the ingest key) changes generation.
 *
 * Thread: the owning lcore only (zeroed at allocation: empty; its index key
 * is drawn at the first lookup, libsodium initialised).
 */
#ifndef TALLY_KEY_CACHE_H
#define TALLY_KEY_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "tally/limits.h"

struct tally_key_cache_entry {
  uint64_t producer;
  bool valid;
  uint8_t key[TALLY_KEY_SIZE];
};

struct tally_key_cache {
  uint64_t generation; /* of the config the entries were derived under */
  bool keyed;            /* hash_key drawn (at the first lookup) */
  uint8_t hash_key[16];  /* SipHash key of the index */
  uint64_t derivations;  /* keys derived (misses), for tests and stats */
  struct tally_key_cache_entry entries[TALLY_KEY_CACHE_ENTRIES];
};

/*
 * Producer's derived key under ingest_key, of config generation generation:
 * from the cache, or derived and cached. The pointer stays valid until the
 * next call.
 */
const uint8_t *tally_key_cache_get(struct tally_key_cache *cache, uint64_t generation,
  const uint8_t ingest_key[TALLY_KEY_SIZE], uint64_t producer);

#endif
