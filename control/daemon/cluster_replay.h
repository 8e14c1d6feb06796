/*
 * cluster_replay.h — redoing a cluster record of the write-ahead log onto a
 * rebuilt image (cluster_replay.c). Thread: the main thread, at start-up.
 */
#ifndef TALLY_CLUSTER_REPLAY_H
#define TALLY_CLUSTER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * Checks the record's payload whole, then applies each item to its table (a
 * replica region of store, bound on first sight, or compensation). 0, or -1
 * with a one-line error (damaged payload, or an item the image has no room
 * for).
 */
int tally_cluster_record_replay(struct tally_store *store, struct tally_shard *compensation,
  const uint8_t *payload, size_t size, char *error, size_t error_size);

#endif
