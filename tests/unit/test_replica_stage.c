/*
 * test_replica_stage.c — a peer's list staged until its last round
 * (control/cluster/replica_stage.c), on a real replica table: staging gives each name
 * its slot but never its value; the bounds (2 x the table's slots and
 * records, the claims given) refuse a round whole; abandoned lists are
 * compacted to the newest value of each counter and record of each producer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replica_stage.h"
#include "tally/name.h"
#include "store.h"
#include "store_format.h"

static char directory[64];
static char path[128];

struct fixture {
  struct tally_store store;
  struct tally_replica_stage stage;
};

static int setup(void **state)
{
  snprintf(directory, sizeof(directory), "/tmp/tally_stage_test.XXXXXX");
  if (mkdtemp(directory) == NULL) return -1;
  snprintf(path, sizeof(path), "%s/store.tally", directory);
  struct fixture *f = calloc(1, sizeof(*f));
  if (f == NULL) return -1;
  /* 16 counters and 16 producers per shard: the replica table has 32 slots, 32 records. */
  const struct tally_store_geometry geometry = {
    .shard_count = 1, .counters_max = 16, .producers_max = 16, .replica_count = 1};
  char error[256] = "";
  if (tally_store_open(&f->store, path, &geometry, TALLY_PERSIST_GROUP_COMMIT, error,
        sizeof(error)) != 0) {
    fprintf(stderr, "open: %s\n", error);
    return -1;
  }
  char reason[128];
  if (tally_store_replica_bind(&f->store, 2, reason, sizeof(reason)) != 0) return -1;
  const struct tally_shard *replica = &f->store.replicas[0];
  if (tally_replica_stage_open(&f->stage, replica->slots_count, replica->producer_slots_count,
        4) != 0) {
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tally_replica_stage_close(&f->stage);
  tally_store_close(&f->store);
  free(f);
  unlink(path);
  return rmdir(directory);
}

static struct tally_replication_entry entry(const char *name, int64_t value)
{
  return (struct tally_replication_entry){ .name = name, .name_len = (uint16_t)strlen(name),
    .value = value };
}

static int64_t table_value(struct fixture *f, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  int64_t slot = tally_shard_find(&f->store.replicas[0], name, len,
    tally_shard_name_hash(&f->store.replicas[0], name, len));
  assert_true(slot >= 0);
  return tally_shard_slot_value(&f->store.replicas[0], (uint32_t)slot);
}

static void test_staging_names_slots_not_values(void **state)
{
  struct fixture *f = *state;
  struct tally_shard *replica = &f->store.replicas[0];
  assert_int_equal(tally_shard_set(replica, "old", 3,
    tally_shard_name_hash(replica, "old", 3), 7), TALLY_OK);
  struct tally_replication_entry round[2] = { entry("old", 9), entry("new", 5) };
  assert_true(tally_replica_stage_counters(&f->stage, replica, round, 2));
  assert_int_equal(f->stage.count, 2);
  assert_int_equal(table_value(f, "old"), 7); /* the table still holds the last whole list */
  assert_int_equal(table_value(f, "new"), 0); /* a new name: its slot, at 0 until the commit */
  assert_int_equal(f->stage.value[0], 9);
  assert_int_equal(f->stage.value[1], 5);
  tally_replica_stage_clear(&f->stage);
  assert_int_equal(f->stage.count, 0);
  assert_int_equal(f->stage.seq, 0);
}

static void test_abandoned_lists_compact_to_the_newest_value(void **state)
{
  struct fixture *f = *state;
  struct tally_shard *replica = &f->store.replicas[0];
  uint32_t room = 2u * replica->slots_count;
  /* The same three counters sent again and again (lists started over): past the room. */
  for (int64_t v = 1; v <= (int64_t)room; v++) {
    struct tally_replication_entry round[3] = { entry("a", v), entry("b", 10 * v),
      entry("c", 100 * v) };
    assert_true(tally_replica_stage_counters(&f->stage, replica, round, 3));
    assert_true(f->stage.count <= room);
  }
  assert_true(f->stage.count < 3u * room); /* compacted at least once */
  /* What a commit would write last for each counter (the stage's last entry of its slot). */
  int64_t last = (int64_t)room;
  int64_t written[3] = { 0, 0, 0 };
  for (uint32_t i = 0; i < f->stage.count; i++) {
    written[replica->slots[f->stage.slot[i]].name[0] - 'a'] = f->stage.value[i];
  }
  assert_int_equal(written[0], last);
  assert_int_equal(written[1], 10 * last);
  assert_int_equal(written[2], 100 * last);
}

static void test_full_table_refuses_the_whole_round(void **state)
{
  struct fixture *f = *state;
  struct tally_shard *replica = &f->store.replicas[0];
  char names[64][8];
  uint32_t accepted = 0;
  for (uint32_t i = 0; i < 64; i++) {
    snprintf(names[i], sizeof(names[i]), "n%u", i);
    struct tally_replication_entry round[1] = { entry(names[i], 1) };
    if (!tally_replica_stage_counters(&f->stage, replica, round, 1)) break;
    accepted++;
  }
  assert_true(accepted >= 16 && accepted < 64); /* the table's 3/4 limit, not the stage's */
  uint32_t before = f->stage.count;
  struct tally_replication_entry round[2] = { entry(names[0], 2), entry("zz-new", 3) };
  assert_false(tally_replica_stage_counters(&f->stage, replica, round, 2));
  assert_int_equal(f->stage.count, before); /* not even names[0] of that round */
}

static void test_records_compact_to_the_newest_per_producer(void **state)
{
  struct fixture *f = *state;
  uint32_t max = f->stage.records_max;
  struct tally_replication_producer record;
  memset(&record, 0, sizeof(record));
  for (uint64_t n = 1; n <= 3u * max; n++) { /* producers 1 and 2, alternately, ever newer */
    record.producer = 1u + n % 2u;
    record.runs[0].last_seq = n;
    assert_true(tally_replica_stage_records(&f->stage, &record, 1));
    assert_true(f->stage.records_count <= max);
  }
  uint64_t newest[3] = { 0, 0, 0 };
  for (uint32_t i = 0; i < f->stage.records_count; i++) {
    uint64_t p = f->stage.records[i].producer;
    assert_true(p == 1 || p == 2);
    uint64_t seq = f->stage.records[i].runs[0].last_seq;
    if (seq > newest[p]) newest[p] = seq;
  }
  assert_int_equal(newest[1], 3u * max); /* even n: producer 1 (max is even); odd n: 2 */
  assert_int_equal(newest[2], 3u * max - 1u);
  /* Distinct producers beyond the room: refused, nothing staged. */
  tally_replica_stage_clear(&f->stage);
  for (uint64_t p = 1; p <= max; p++) {
    record.producer = p;
    assert_true(tally_replica_stage_records(&f->stage, &record, 1));
  }
  record.producer = max + 1u;
  assert_false(tally_replica_stage_records(&f->stage, &record, 1));
  assert_int_equal(f->stage.records_count, max);
}

static void test_claims_beyond_the_room_are_refused(void **state)
{
  struct fixture *f = *state;
  struct tally_replication_claim claims[3] = { { .producer = 1, .seq = 1, .attempt = 1 },
    { .producer = 1, .seq = 2, .attempt = 1 }, { .producer = 1, .seq = 3, .attempt = 1 } };
  assert_true(tally_replica_stage_claims(&f->stage, claims, 3));
  assert_false(tally_replica_stage_claims(&f->stage, claims, 2)); /* 5 > 4 */
  assert_int_equal(f->stage.claims_count, 3);
  assert_true(tally_replica_stage_claims(&f->stage, claims, 1));
  assert_int_equal(f->stage.claims[3].seq, 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_staging_names_slots_not_values, setup, teardown),
    cmocka_unit_test_setup_teardown(test_abandoned_lists_compact_to_the_newest_value, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_full_table_refuses_the_whole_round, setup, teardown),
    cmocka_unit_test_setup_teardown(test_records_compact_to_the_newest_per_producer, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_claims_beyond_the_room_are_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
