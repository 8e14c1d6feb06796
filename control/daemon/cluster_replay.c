/*
 * cluster_replay.c — log mode on a cluster node: redoes one cluster record
 * (WAL type 4: what the cluster thread wrote: replica values, producer
 * records and held positions, undos in the compensation shard, keeper
 * claims) onto an image rebuilt from a checkpoint or from the log. Every
 * item is absolute or written at its position, so redoing it twice is
 * harmless. docs/store-layout.md, "Log mode on a cluster node".
 *
 * Thread: the main thread, at start-up recovery (persister_log.c), before
 * the lcores and the cluster thread run.
 */
#include "cluster_replay.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "tally/reasons.h"
#include "wal_cluster.h"

/* The table an item names: a replica region (bound on first sight) or the compensation shard. */
static struct tally_shard *item_table(struct tally_store *store, struct tally_shard *compensation,
  uint16_t origin, char *error, size_t error_size)
{
  if (origin == 0) return compensation;
  int32_t region = tally_store_replica_bind(store, origin, error, error_size);
  return region < 0 ? NULL : &store->replicas[region];
}

static int replay_item(struct tally_store *store, struct tally_shard *compensation,
  const struct tally_wal_cluster_item *item, char *error, size_t error_size)
{
  struct tally_shard *table = item_table(store, compensation, item->origin, error, error_size);
  /* Undos replayed without their journal entries: the journal no longer
   * holds every undo (tally_shard_undo_history_complete). */
  if (table == compensation) tally_shard_undo_history_lost(compensation);
  if (table == NULL) return -1;
  enum tally_reason reason = TALLY_OK;
  switch (item->kind) {
  case TALLY_WAL_CLUSTER_VALUE: /* an existing counter keeps its class */
    reason = tally_shard_set(table, item->name, item->name_len,
      tally_shard_name_hash(table, item->name, item->name_len), item->value);
    break;
  case TALLY_WAL_CLUSTER_RELIABLE_VALUE: /* the class comes back with the value (C1) */
    reason = tally_shard_set_class(table, item->name, item->name_len,
      tally_shard_name_hash(table, item->name, item->name_len), item->value,
      TALLY_CLASS_RELIABLE, table->counters_max);
    break;
  case TALLY_WAL_CLUSTER_RECORD: {
    struct tally_dedup dedup;
    memcpy(&dedup, item->dedup, sizeof dedup);
    reason = tally_shard_producer_merge(table, item->producer, &dedup); /* idempotent */
    break;
  }
  case TALLY_WAL_CLUSTER_HELD:
    tally_shard_set_held_seq(table, item->seq);
    if (item->scan > tally_shard_held_scan(table)) tally_shard_set_held_scan(table, item->scan);
    break;
  default:
    assert(item->kind == TALLY_WAL_CLUSTER_CLAIM);
    /* Written at its position once: a copy that already holds it is not written twice. */
    if (tally_shard_claims_next(table) <= item->position) {
      tally_shard_claim_append(table, item->producer, item->seq, (uint16_t)item->attempt);
    }
    break;
  }
  if (reason != TALLY_OK) {
    snprintf(error, error_size, "a cluster record does not fit the image: %s "
      "(store.counters_max or store.producers_max lowered?)", tally_reason_label(reason));
    return -1;
  }
  return 0;
}

int tally_cluster_record_replay(struct tally_store *store, struct tally_shard *compensation,
  const uint8_t *payload, size_t size, char *error, size_t error_size)
{
  enum tally_wal_cluster_check check = tally_wal_cluster_check(payload, size);
  if (check != TALLY_WAL_CLUSTER_OK) {
    snprintf(error, error_size, "cluster record: %s", tally_wal_cluster_check_name(check));
    return -1;
  }
  size_t offset = 0;
  struct tally_wal_cluster_item item;
  while (tally_wal_cluster_next(payload, size, &offset, &item)) {
    if (replay_item(store, compensation, &item, error, error_size) != 0) return -1;
  }
  return 0;
}
