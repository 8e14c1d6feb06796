/*
 * replica_stage.c — a peer's replication list held until its last round
 * (replica_stage.h). A list the peer abandoned (it started over) leaves its
 * rounds staged under the new list's, so a counter or a producer can be
 * staged more than once; when the stage is full it is compacted to the
 * newest entry of each, which says all an older one did (values are
 * absolute, a record is the producer's whole state on the peer). At most 3/4
 * of a table's slots are ever used, so after compaction a round always fits.
 * Runs on the cluster thread (stream_in.c); opened on the start-up or control
 * thread with a peer's lists (peer.c).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "replica_stage.h"
#include "tally/name.h"
#include "store_format.h"

int tally_replica_stage_open(struct tally_replica_stage *stage, uint32_t slots_count,
  uint32_t producer_slots_count, uint32_t claims_max)
{
  assert(slots_count >= 1 && producer_slots_count >= 1 && claims_max >= 1);
  if (stage->slot != NULL) return 0; /* allocated once, kept */
  memset(stage, 0, sizeof *stage);
  stage->slots_count = slots_count;
  stage->records_max = 2u * producer_slots_count;
  stage->claims_max = claims_max;
  stage->slot = calloc(2u * (size_t)slots_count, sizeof stage->slot[0]);
  stage->value = calloc(2u * (size_t)slots_count, sizeof stage->value[0]);
  stage->seen = calloc(slots_count, 1);
  stage->records = calloc(stage->records_max, sizeof stage->records[0]);
  stage->claims = calloc(claims_max, sizeof stage->claims[0]);
  if (stage->slot != NULL && stage->value != NULL && stage->seen != NULL &&
      stage->records != NULL && stage->claims != NULL) {
    return 0;
  }
  tally_replica_stage_close(stage);
  return -1;
}

void tally_replica_stage_close(struct tally_replica_stage *stage)
{
  free(stage->slot);
  free(stage->value);
  free(stage->seen);
  free(stage->records);
  free(stage->claims);
  memset(stage, 0, sizeof *stage);
}

void tally_replica_stage_clear(struct tally_replica_stage *stage)
{
  stage->seq = 0;
  stage->count = 0;
  stage->records_count = 0;
  stage->claims_count = 0;
}

/* Keeps the newest staged value of each slot (their order does not matter). */
static void compact_counters(struct tally_replica_stage *stage)
{
  uint32_t kept = 0;
  for (uint32_t i = stage->count; i-- > 0;) { /* newest first: the first seen is kept */
    uint32_t slot = stage->slot[i];
    assert(slot < stage->slots_count);
    if (stage->seen[slot]) continue;
    stage->seen[slot] = 1;
    stage->slot[kept] = slot;
    stage->value[kept] = stage->value[i];
    kept++;
  }
  for (uint32_t i = 0; i < kept; i++) stage->seen[stage->slot[i]] = 0;
  assert(kept <= stage->slots_count);
  stage->count = kept;
}

bool tally_replica_stage_counters(struct tally_replica_stage *stage, struct tally_shard *replica,
  const struct tally_replication_entry *entries, uint32_t count)
{
  assert(replica->slots_count == stage->slots_count);
  uint32_t room = 2u * stage->slots_count;
  if (stage->count + count > room) compact_counters(stage);
  uint32_t before = stage->count;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t hash = tally_shard_name_hash(replica, entries[i].name, entries[i].name_len);
    int64_t slot = tally_shard_find(replica, entries[i].name, entries[i].name_len, hash);
    if (slot < 0 &&
        tally_shard_add(replica, entries[i].name, entries[i].name_len, hash, 0) == TALLY_OK) {
      slot = tally_shard_find(replica, entries[i].name, entries[i].name_len, hash);
    }
    if (slot < 0 || stage->count >= room) {
      stage->count = before; /* none of this round */
      return false;
    }
    if (entries[i].owner_class == TALLY_CLASS_RELIABLE) { /* kept for a restore (C1) */
      tally_shard_slot_take_over(replica, (uint32_t)slot);
    }
    stage->slot[stage->count] = (uint32_t)slot;
    stage->value[stage->count] = entries[i].value;
    stage->count++;
  }
  return true;
}

/* By producer id, then newest (the higher position) first. */
static int by_producer_newest(const void *a, const void *b)
{
  const uint64_t *x = a; /* { producer, position } */
  const uint64_t *y = b;
  if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
  return x[1] > y[1] ? -1 : (x[1] < y[1] ? 1 : 0);
}

/* Keeps the newest staged record of each producer id (undone ids are ids of their own). */
static bool compact_records(struct tally_replica_stage *stage)
{
  uint32_t n = stage->records_count;
  uint64_t (*order)[2] = malloc((size_t)n * sizeof *order + 1u);
  struct tally_replication_producer *copy = malloc((size_t)n * sizeof *copy + 1u);
  if (order == NULL || copy == NULL) {
    free(order);
    free(copy);
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    order[i][0] = stage->records[i].producer;
    order[i][1] = i;
  }
  qsort(order, n, sizeof *order, by_producer_newest);
  memcpy(copy, stage->records, (size_t)n * sizeof *copy);
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0 && order[i][0] == order[i - 1][0]) continue;
    stage->records[kept++] = copy[order[i][1]];
  }
  stage->records_count = kept;
  free(order);
  free(copy);
  return true;
}

bool tally_replica_stage_records(struct tally_replica_stage *stage,
  const struct tally_replication_producer *records, uint32_t count)
{
  if (stage->records_count + count > stage->records_max && !compact_records(stage)) return false;
  if (stage->records_count + count > stage->records_max) return false;
  memcpy(stage->records + stage->records_count, records, count * sizeof records[0]);
  stage->records_count += count;
  return true;
}

bool tally_replica_stage_claims(struct tally_replica_stage *stage,
  const struct tally_replication_claim *claims, uint32_t count)
{
  if (stage->claims_count + count > stage->claims_max) return false;
  memcpy(stage->claims + stage->claims_count, claims, count * sizeof claims[0]);
  stage->claims_count += count;
  return true;
}
