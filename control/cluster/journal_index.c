/*
 * journal_index.c — the cluster thread's index of one shard's journal:
 * (producer, seq) -> ring position, in an rte_hash. For an lcore shard a
 * claim asks "did this node apply that batch, and from which attempt?"; for
 * the compensation shard (whose journal holds this node's last undos), "did
 * this node undo it?", exactly, however far its undone set's 3 runs have
 * moved on (docs/cluster.md, "Keeping is exact"). Without the index every
 * answer walks the journal backwards (up to TALLY_JOURNAL_ENTRIES entries of
 * 1088 bytes, a cache miss each), and a peer that restarts gets every claim
 * still in the rings again. The index follows the journal as the lcore
 * writes it (one header read per applied batch), keeps exactly the keys of
 * the ring's current positions (the key a position held is removed when the
 * ring moves past it), and every hit is verified against the entry itself
 * (tally_shard_journal_read_at: producer, seq, crc, applied), so a torn or
 * overwritten entry is a miss, never a wrong answer. An insert the table
 * refuses (full, or keys that collide past its buckets: not expected with
 * extendable buckets sized to the ring, but the keys come from the network)
 * fails closed: the position stays unindexed, it is counted
 * (tally_cluster_journal_index_refused_total), and until the ring has moved
 * past it every miss is answered by walking the journal
 * (tally_shard_journal_find), so the answer stays exact, never a false
 * "not here" (docs/security.md, H1). Opened on the start-up thread; used on
 * the cluster thread only.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <sodium.h>
#include <rte_lcore.h>

#include "journal_index.h"

struct journal_key {
  uint64_t producer;
  uint64_t seq;
};
static_assert(sizeof(struct journal_key) == 16, "hash key without padding");

/* What the index holds for one ring slot: the key, and the position it was at. */
struct journal_slot {
  struct journal_key key;
  uint64_t position;
};

int tally_journal_index_open(struct tally_journal_index *index, uint32_t shard_number,
  uint64_t *refused, char *error, size_t error_size)
{
  assert(index != NULL);
  assert(refused != NULL);
  assert(shard_number <= TALLY_LCORES_MAX); /* the compensation shard: lcore_count */
  memset(index, 0, sizeof *index);
  index->refused = refused;
  /* rte_hash names are process-wide: one per index (tests run several clusters). */
  static uint32_t instances;
  char name[RTE_HASH_NAMESIZE];
  snprintf(name, sizeof name, "tally_journal_%u",
    __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED));
  struct rte_hash_parameters parameters = {
    .name = name,
    .entries = TALLY_JOURNAL_ENTRIES,
    .key_len = sizeof(struct journal_key),
    .hash_func = rte_hash_crc,
    .hash_func_init_val = randombytes_random(), /* producer ids and seqs come from outside */
    .socket_id = (int)rte_socket_id(),
    /* Extendable buckets: every one of the ring's keys fits, whatever they hash to. */
    .extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
  };
  index->hash = rte_hash_create(&parameters);
  index->slots = calloc(TALLY_JOURNAL_ENTRIES, sizeof(struct journal_slot));
  if (index->hash == NULL || index->slots == NULL) {
    tally_journal_index_close(index);
    snprintf(error, error_size, "cluster: cannot allocate the journal index of shard %u",
      shard_number);
    return -1;
  }
  assert(index->indexed == 0);
  return 0;
}

void tally_journal_index_close(struct tally_journal_index *index)
{
  assert(index != NULL);
  rte_hash_free(index->hash); /* NULL is fine */
  free(index->slots);
  index->hash = NULL;
  index->slots = NULL;
}

/* Forgets what a ring slot indexed (unless a newer position owns its key). */
static void forget(struct tally_journal_index *index, struct journal_slot *slot)
{
  if (slot->key.producer == 0) return; /* nothing indexed there */
  void *data = NULL;
  if (rte_hash_lookup_data(index->hash, &slot->key, &data) >= 0 &&
      (uint64_t)(uintptr_t)data == slot->position) {
    int32_t removed = rte_hash_del_key(index->hash, &slot->key);
    assert(removed >= 0);
    (void)removed;
  }
  slot->key = (struct journal_key){ 0, 0 };
  assert(slot->key.producer == 0);
}

void tally_journal_index_catch_up(struct tally_journal_index *index,
  const struct tally_shard *shard)
{
  assert(index->hash != NULL);
  uint64_t next = tally_shard_journal_next(shard);
  assert(next >= index->indexed || next == 0); /* the journal only moves forward */
  if (next < index->indexed) return;           /* (a journal reset: not while running) */
  uint64_t from = index->indexed;
  if (next - from > TALLY_JOURNAL_ENTRIES) from = next - TALLY_JOURNAL_ENTRIES; /* rolled */
  struct journal_slot *slots = index->slots;
  for (uint64_t position = from; position < next; position++) {
    struct journal_slot *slot = &slots[position % TALLY_JOURNAL_ENTRIES];
    forget(index, slot); /* the ring moved past what the slot held */
    struct journal_key key = { 0, 0 };
    tally_shard_journal_key_at(shard, position, &key.producer, &key.seq);
    if (key.producer == 0) continue; /* torn or never written: verified reads miss it anyway */
    *slot = (struct journal_slot){ .key = key, .position = position };
    /* (An existing key is updated in place; only a new key can be refused.) */
    if (rte_hash_add_key_data(index->hash, &key, (void *)(uintptr_t)position) != 0) {
      slot->key = (struct journal_key){ 0, 0 }; /* unindexed: misses walk the ring */
      index->unindexed_until = position + 1u;
      __atomic_fetch_add(index->refused, 1, __ATOMIC_RELAXED);
    }
  }
  index->indexed = next;
  assert(index->indexed == next);
}

bool tally_journal_index_find(struct tally_journal_index *index, const struct tally_shard *shard,
  uint64_t producer, uint64_t seq, struct tally_journal_entry *entry)
{
  assert(index->hash != NULL);
  assert(entry != NULL);
  tally_journal_index_catch_up(index, shard);
  struct journal_key key = { producer, seq };
  void *data = NULL;
  if (rte_hash_lookup_data(index->hash, &key, &data) < 0) {
    /* A refused position still in the ring: the index cannot say "not here". */
    bool complete = index->unindexed_until == 0 ||
      index->indexed - (index->unindexed_until - 1u) > TALLY_JOURNAL_ENTRIES;
    return complete ? false : tally_shard_journal_find(shard, producer, seq, entry);
  }
  uint64_t position = (uint64_t)(uintptr_t)data;
  assert(position < index->indexed);
  if (index->indexed - position > TALLY_JOURNAL_ENTRIES) return false; /* rolled since */
  return tally_shard_journal_read_at(shard, position, producer, seq, entry);
}
