/*
 * log_effect.c — log mode: an applied batch's effect record (the lcore's
 * struct tally_shard_effect, store library) to and from the write-ahead
 * log's batch payload (struct tally_wal_batch, persist library, libc only):
 * the same record in the two libraries' terms. The names are not copied on
 * the way out (the payload points into the effect).
 *
 * Thread: the persister (appending) and the main thread (recovery).
 */
#include "log_effect.h"

#include <assert.h>
#include <string.h>

void tally_log_effect_to_batch(const struct tally_shard_effect *effect, struct tally_wal_batch *batch)
{
  static_assert(sizeof effect->dedup == sizeof batch->dedup, "15 words of dedup state");
  batch->producer = effect->producer;
  batch->seq = effect->seq;
  batch->attempt = effect->attempt;
  batch->shard = effect->shard;
  batch->count = effect->count;
  batch->batch_seq = effect->batch_seq;
  memcpy(batch->dedup, &effect->dedup, sizeof batch->dedup);
  for (uint32_t i = 0; i < effect->count; i++) {
    batch->pairs[i] = (struct tally_wal_pair){
      .name = effect->pairs[i].name, .name_len = effect->pairs[i].name_len,
      .delta = effect->pairs[i].delta, .value = effect->pairs[i].value,
    };
  }
}

void tally_log_batch_to_effect(const struct tally_wal_batch *batch, struct tally_shard_effect *effect)
{
  effect->producer = batch->producer;
  effect->seq = batch->seq;
  effect->attempt = batch->attempt;
  effect->shard = batch->shard;
  effect->count = batch->count;
  effect->batch_seq = batch->batch_seq;
  memcpy(&effect->dedup, batch->dedup, sizeof effect->dedup);
  for (uint32_t i = 0; i < batch->count; i++) {
    struct tally_shard_effect_pair *pair = &effect->pairs[i];
    pair->delta = batch->pairs[i].delta;
    pair->value = batch->pairs[i].value;
    pair->name_len = (uint8_t)batch->pairs[i].name_len;
    memcpy(pair->name, batch->pairs[i].name, batch->pairs[i].name_len);
  }
}
