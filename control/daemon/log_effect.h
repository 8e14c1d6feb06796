/*
 * log_effect.h — conversions between an effect record and a WAL batch
 * payload (log_effect.c). Thread: the persister and the main thread.
 */
#ifndef TALLY_LOG_EFFECT_H
#define TALLY_LOG_EFFECT_H

#include "shard.h"
#include "wal_batch.h"

/* batch takes effect's fields; its pairs' names point into effect. */
void tally_log_effect_to_batch(const struct tally_shard_effect *effect,
  struct tally_wal_batch *batch);

/* effect takes batch's fields, the names copied. */
void tally_log_batch_to_effect(const struct tally_wal_batch *batch,
  struct tally_shard_effect *effect);

#endif
