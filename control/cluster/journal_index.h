/*
 * journal_index.h — the cluster thread's (producer, seq) -> position index of
 * a shard's journal (journal_index.c): an lcore shard's (what this node
 * applied) or the compensation shard's (what it undid), so that a claim is
 * answered with one hash lookup and one verified entry read, not a walk of
 * the ring.
 */
#ifndef TALLY_JOURNAL_INDEX_H
#define TALLY_JOURNAL_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shard.h"

struct rte_hash;

struct tally_journal_index {
  struct rte_hash *hash;   /* (producer, seq) -> journal position */
  void *slots;             /* per ring slot: the key indexed there, and its position */
  uint64_t indexed;        /* journal positions below this are indexed */
  uint64_t unindexed_until; /* 0, or 1 + the newest position whose insert was refused */
  uint64_t *refused;        /* counts refused inserts (a cluster counter; relaxed) */
};

/*
 * Allocates (EAL initialised: rte_hash). -1 with error on failure. An insert
 * the table refuses adds 1 to *refused and leaves the position to the
 * journal walk (find stays exact).
 */
int tally_journal_index_open(struct tally_journal_index *index, uint32_t shard_number,
  uint64_t *refused, char *error, size_t error_size);
void tally_journal_index_close(struct tally_journal_index *index);
/* Indexes the entries the shard's writer appended since the last call. */
void tally_journal_index_catch_up(struct tally_journal_index *index,
  const struct tally_shard *shard);
/*
 * The newest applied journal entry of (producer, seq), as
 * tally_shard_journal_find answers it (catches up first). The cluster thread.
 */
bool tally_journal_index_find(struct tally_journal_index *index, const struct tally_shard *shard,
  uint64_t producer, uint64_t seq, struct tally_journal_entry *entry);

#endif
