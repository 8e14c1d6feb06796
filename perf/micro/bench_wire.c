/*
 * bench_wire.c — microbenchmarks of the binary batch path of reliable
 * producers: verifying the MAC (keyed BLAKE2b over the whole datagram) and
 * decoding a batch of 16 or 64 pairs (tally_wire_decode_batch), and applying
 * a decoded batch exactly once through the shard's dedup and redo log
 * (tally_shard_apply_batch). Items = pairs; decode + apply is a producer
 * batch's dataplane cost, the subject of the 100 M increments/s target.
 *
 * Names are 11 bytes ("quota.00017"), so a 64-pair batch is 1320 bytes and
 * fits one datagram as a real producer would send it.
 */
#include <assert.h>
#include <string.h>

#include "tally/batch_wire.h"
#include "tally/limits.h"
#include "tally/name.h"
#include "shard.h"

#include "bench.h"
#include "store_format.h"

#define WIRE_NAME_SIZE 16u
#define WIRE_PRODUCER 7u
#define APPLY_COUNTERS_MAX 1024u

static const uint8_t wire_key[TALLY_KEY_SIZE] = {
  0x54, 0x61, 0x6c, 0x6c, 0x79, 0x20, 0x62, 0x65, 0x6e, 0x63, 0x68, 0x20, 0x6b, 0x65, 0x79, 0x21,
  0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
};

struct wire_fixture {
  char names[TALLY_BATCH_PAIRS_MAX][WIRE_NAME_SIZE];
  struct tally_wire_batch batch;
  uint8_t datagram[TALLY_DATAGRAM_SIZE_MAX];
  size_t datagram_size;
};

/* Builds and encodes a batch of pairs_count distinct names; 0 or -1. */
static int wire_fixture_build(struct wire_fixture *fixture, int64_t pairs_count)
{
  assert(pairs_count >= 1);
  assert(pairs_count <= (int64_t)TALLY_BATCH_PAIRS_MAX);
  memset(fixture, 0, sizeof(*fixture));
  fixture->batch.producer = WIRE_PRODUCER;
  fixture->batch.seq = 1;
  fixture->batch.count = (uint32_t)pairs_count;
  for (uint32_t i = 0; i < fixture->batch.count; i++) {
    struct tally_wire_pair *pair = &fixture->batch.pairs[i];
    pair->name = fixture->names[i];
    pair->name_len = bench_name(fixture->names[i], WIRE_NAME_SIZE, "quota.", 10000u + i);
    pair->delta = (int64_t)i + 1;
  }
  fixture->datagram_size = tally_wire_encode_batch(&fixture->batch, wire_key,
    fixture->datagram, sizeof(fixture->datagram));
  if (fixture->datagram_size == 0) return -1;
  assert(fixture->datagram_size >= TALLY_WIRE_BATCH_SIZE_MIN);
  return 0;
}

void bench_wire_decode_batch(struct bench_state *state)
{
  assert(state != NULL);
  struct wire_fixture fixture;
  int64_t pairs_count = bench_range(state, 0);
  assert(pairs_count >= 1);
  if (wire_fixture_build(&fixture, pairs_count) != 0) {
    bench_fail(state, "wire_decode_batch: the batch does not fit a datagram");
    return;
  }
  struct tally_wire_batch decoded;
  int64_t failed = 0;
  while (bench_keep_running(state)) {
    enum tally_reason reason = tally_wire_decode_batch(fixture.datagram,
      fixture.datagram_size, wire_key, &decoded);
    failed += reason != TALLY_OK;
    bench_keep(&decoded);
  }
  int64_t batches = bench_iterations(state);
  bench_set_items(state, batches * pairs_count);
  bench_set_bytes(state, batches * (int64_t)fixture.datagram_size);
  if (failed != 0 || (batches > 0 && decoded.count != (uint32_t)pairs_count)) {
    bench_fail(state, "wire_decode_batch: a batch did not decode");
  }
}

void bench_wire_apply_batch(struct bench_state *state)
{
  assert(state != NULL);
  struct wire_fixture fixture;
  int64_t pairs_count = bench_range(state, 0);
  assert(pairs_count >= 1);
  if (wire_fixture_build(&fixture, pairs_count) != 0) {
    bench_fail(state, "wire_apply_batch: the batch does not fit a datagram");
    return;
  }
  struct bench_shard shard;
  if (bench_shard_create(&shard, APPLY_COUNTERS_MAX) != 0) {
    bench_fail(state, "wire_apply_batch: cannot map the shard");
    return;
  }
  int64_t rejected = 0;
  while (bench_keep_running(state)) {
    enum tally_reason reason;
    rejected += tally_shard_apply_batch(shard.shard, &fixture.batch, &reason) !=
      TALLY_ACK_APPLIED;
    fixture.batch.seq++;
  }
  int64_t batches = bench_iterations(state);
  bench_set_items(state, batches * pairs_count);
  /* The first pair's counter holds its delta (1) once per batch applied. */
  const struct tally_wire_pair *first = &fixture.batch.pairs[0];
  int64_t slot = tally_shard_find(shard.shard, first->name, first->name_len,
    tally_shard_name_hash(shard.shard, first->name, first->name_len));
  int64_t value = slot < 0 ? 0 : tally_shard_slot_value(shard.shard, (uint32_t)slot);
  if (rejected != 0 || value != batches * first->delta) {
    bench_fail(state, "wire_apply_batch: a batch was not applied exactly once");
  }
  bench_shard_destroy(&shard);
}
