/*
 * replica_stage.h — the rounds of a peer's replication list, held in memory
 * until the list's last round, so that a replica table only ever changes by
 * a whole list (docs/cluster.md, "Replica tables"). Owns the staged counters
 * (replica slot, value), records and claims, their bounds and compaction;
 * cluster.c writes them to the table when the list completes.
 */
#ifndef TALLY_REPLICA_STAGE_H
#define TALLY_REPLICA_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "replication_wire.h"
#include "shard.h"

struct tally_replica_stage {
  uint64_t seq;                              /* last round staged; 0: nothing staged */
  uint32_t slots_count;                      /* of the replica table staged for */
  uint32_t records_max;                      /* 2 x the table's producer slots */
  uint32_t claims_max;
  uint32_t count;                            /* counters staged */
  uint32_t *slot;                            /* 2 x slots_count: abandoned lists pile up */
  int64_t *value;
  uint8_t *seen;                             /* per slot, compaction scratch */
  uint32_t records_count;
  struct tally_replication_producer *records;
  uint32_t claims_count;
  struct tally_replication_claim *claims;
};

/* Allocates for a table of this geometry (claims_max claims). -1: out of memory. */
int tally_replica_stage_open(struct tally_replica_stage *stage, uint32_t slots_count,
  uint32_t producer_slots_count, uint32_t claims_max);
void tally_replica_stage_close(struct tally_replica_stage *stage);
/* Empties it (the allocations stay). */
void tally_replica_stage_clear(struct tally_replica_stage *stage);
/*
 * Stages a round's counters: each name gets its slot in replica now (a new
 * one at 0, its value here so far), the value waits. false: the table is
 * full (nothing of the round is staged).
 */
bool tally_replica_stage_counters(struct tally_replica_stage *stage, struct tally_shard *replica,
  const struct tally_replication_entry *entries, uint32_t count);
/* Stages records. false: no room even after compaction (nothing staged). */
bool tally_replica_stage_records(struct tally_replica_stage *stage,
  const struct tally_replication_producer *records, uint32_t count);
/* Stages claims. false: no room (the caller handles them at once). */
bool tally_replica_stage_claims(struct tally_replica_stage *stage,
  const struct tally_replication_claim *claims, uint32_t count);

#endif
