/*
 * test_log_mode.c — log mode's persister and recovery (control/daemon/
 * persister_log.c) on a real store file and a real log directory under
 * /tmp: records handed over per lcore (as lcore.c does after an apply) are
 * logged, committed and only then published as durable_seq; a power loss
 * (the image deleted) rebuilds the image from the log exactly; a process
 * kill with records still in the rings recovers from the image and logs the
 * lost records again from the journal; an older copy of the image (what a
 * checkpoint would load) is brought up to date by replay, exactly; a
 * checkpoint taken in steps while batches keep being applied and acked,
 * then a power loss: the image comes back from the checkpoint plus the log
 * after it, exactly, and the log before it is cut. On a cluster node: what
 * the cluster thread hands over (replica values, records, held positions, an
 * undo, a keeper claim) is committed with the batches, its ticket published
 * durable after the commit, and a power loss rebuilds the replica tables and
 * the compensation shard from the log, and from a checkpoint plus the log.
 *
 * Thread: the test's own (it plays the lcores and the persister in turn).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "persister_log.h"
#include "store.h"
#include "store_format.h"
#include "wal_batch.h"
#include "wal_cluster.h"
#include "wal_queue.h"
#include "wal_record.h"
#include "tally/name.h"

#define LCORES 2u
#define COUNTERS 1000u
#define PRODUCERS 100u
#define NAMES 40u

static char directory[128];
static struct tally_appliance appliance;
/* What every acked batch added, per name: the exact expectation after any recovery. */
static int64_t expected[NAMES];
static char names[NAMES][16];
static uint64_t next_seq[128]; /* by producer id (the tests use 1..64) */

static void store_open(void)
{
  bool cluster = appliance.config.cluster.enabled; /* + the compensation shard, replicas */
  struct tally_store_geometry geometry = {
    .shard_count = LCORES + (cluster ? 1u : 0u), .counters_max = COUNTERS,
    .producers_max = PRODUCERS, .replica_count = cluster ? TALLY_REPLICA_REGIONS_MAX : 0u,
  };
  char error[256];
  int rc = tally_store_open(&appliance.store, appliance.config.store_path, &geometry,
    TALLY_PERSIST_LOG, error, sizeof error);
  if (rc != 0) fprintf(stderr, "%s\n", error);
  assert_int_equal(rc, 0);
  for (uint32_t i = 0; i < LCORES; i++) {
    struct tally_lcore *lcore = &appliance.lcores[i];
    lcore->shard = &appliance.store.shards[i];
    memset(lcore->log_ring, 0, sizeof *lcore->log_ring);
    memset(&lcore->stats, 0, sizeof lcore->stats);
    lcore->durable_seq = 0;
  }
  memset(&appliance.log_stats, 0, sizeof appliance.log_stats);
}

/* Start-up in log mode: the store, then the log's recovery. */
static void start(void)
{
  store_open();
  char error[512];
  int rc = tally_log_open(&appliance, error, sizeof error);
  if (rc != 0) fprintf(stderr, "%s\n", error);
  assert_int_equal(rc, 0);
}

/* kill -9: the rings (process memory) are gone; the image and the log stay. */
static void kill_process(void)
{
  tally_log_close(&appliance);
  tally_store_close(&appliance.store);
}

/* Power loss: as a kill, and the image on tmpfs is gone too. */
static void lose_power(void)
{
  kill_process();
  assert_int_equal(unlink(appliance.config.store_path), 0);
}

static int setup(void **state)
{
  (void)state;
  snprintf(directory, sizeof directory, "/tmp/tally_log_test.XXXXXX");
  assert_non_null(mkdtemp(directory));
  memset(&appliance, 0, sizeof appliance);
  tally_config_defaults(&appliance.config);
  snprintf(appliance.config.store_path, sizeof appliance.config.store_path, "%s/image",
    directory);
  snprintf(appliance.config.log_dir, sizeof appliance.config.log_dir, "%s/log", directory);
  appliance.config.persist_mode = TALLY_PERSIST_LOG;
  appliance.config.log_group_bytes = TALLY_WAL_GROUP_SIZE_MIN; /* FULL within a round */
  appliance.config.log_segment_bytes = TALLY_WAL_SEGMENT_SIZE_MIN; /* segments roll */
  appliance.lcore_count = LCORES;
  appliance.lcores = aligned_alloc(64, sizeof(struct tally_lcore) * LCORES);
  assert_non_null(appliance.lcores);
  memset(appliance.lcores, 0, sizeof(struct tally_lcore) * LCORES);
  for (uint32_t i = 0; i < LCORES; i++) {
    appliance.lcores[i].index = i;
    appliance.lcores[i].lcore_count = LCORES;
    appliance.lcores[i].log_ring = aligned_alloc(64, sizeof(struct tally_log_ring));
    assert_non_null(appliance.lcores[i].log_ring);
  }
  for (uint32_t n = 0; n < NAMES; n++) snprintf(names[n], sizeof names[n], "c.%u", n);
  memset(expected, 0, sizeof expected);
  memset(next_seq, 0, sizeof next_seq);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  tally_log_close(&appliance);
  if (appliance.store.super != NULL) tally_store_close(&appliance.store);
  for (uint32_t i = 0; i < LCORES; i++) free(appliance.lcores[i].log_ring);
  free(appliance.lcores);
  char command[256];
  snprintf(command, sizeof command, "rm -rf %s", directory);
  assert_int_equal(system(command), 0);
  return 0;
}

/*
 * What lcore.c does for one reliable batch of producer p: room in the ring,
 * apply, the record, push, then applied_seq (release). Statsd adds to the
 * same shard in between, on name "mixed". Returns the lcore.
 */
static uint32_t lcore_apply(uint64_t producer, uint32_t first_name)
{
  uint32_t i = (uint32_t)(producer % LCORES);
  struct tally_lcore *lcore = &appliance.lcores[i];
  assert_true(producer < sizeof next_seq / sizeof next_seq[0]);
  struct tally_wire_batch batch = { .producer = producer, .seq = ++next_seq[producer], .count = 3 };
  for (uint32_t k = 0; k < batch.count; k++) {
    uint32_t n = (first_name + k * 7u) % NAMES;
    batch.pairs[k] = (struct tally_wire_pair){ .name = names[n],
      .name_len = (uint32_t)strlen(names[n]), .delta = (int64_t)(n + 1u) * (k == 2 ? -3 : 5) };
  }
  struct tally_log_record *record = tally_log_ring_claim(lcore->log_ring);
  assert_non_null(record);
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(lcore->shard, &batch, &reason), TALLY_ACK_APPLIED);
  uint64_t applied_seq = lcore->stats.applied_seq + 1u;
  tally_shard_effect_of_last(lcore->shard, &batch, &record->effect);
  record->applied_seq = applied_seq;
  tally_log_ring_push(lcore->log_ring);
  __atomic_store_n(&lcore->stats.applied_seq, applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(tally_shard_add(lcore->shard, "mixed", 5,
    tally_shard_name_hash(lcore->shard, "mixed", 5), 1),
    TALLY_OK);
  return i;
}

/* Applies and (once the round ran) acks: the expectation grows only for acked batches. */
static void acked_batches(uint32_t count, uint64_t producer_base)
{
  for (uint32_t b = 0; b < count; b++) {
    uint64_t producer = producer_base + b % 5u;
    uint32_t first = (uint32_t)(b * 3u + producer) % NAMES;
    uint32_t i = lcore_apply(producer, first);
    (void)i;
    for (uint32_t k = 0; k < 3; k++) {
      uint32_t n = (first + k * 7u) % NAMES;
      expected[n] += (int64_t)(n + 1u) * (k == 2 ? -3 : 5);
    }
  }
}

/* The node's value of every name (the sum of its shards) against expected. */
static void check_exact(void)
{
  for (uint32_t n = 0; n < NAMES; n++) {
    int64_t sum = 0;
    for (uint32_t s = 0; s < LCORES; s++) {
      const struct tally_shard *shard = &appliance.store.shards[s];
      uint32_t len = (uint32_t)strlen(names[n]);
      int64_t slot = tally_shard_find(shard, names[n], len,
        tally_shard_name_hash(shard, names[n], len));
      if (slot >= 0) sum += tally_shard_slot_value(shard, (uint32_t)slot);
    }
    assert_int_equal(sum, expected[n]);
  }
}

static void test_records_logged_then_published(void **state)
{
  (void)state;
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_NEW);
  acked_batches(300, 10);
  for (uint32_t i = 0; i < LCORES; i++) {
    assert_true(appliance.lcores[i].stats.applied_seq > 0);
    assert_int_equal(appliance.lcores[i].durable_seq, 0); /* nothing before the fdatasync */
  }
  assert_true(tally_log_round(&appliance));
  for (uint32_t i = 0; i < LCORES; i++) {
    assert_int_equal(appliance.lcores[i].durable_seq, appliance.lcores[i].stats.applied_seq);
    assert_int_equal(tally_log_ring_ready(appliance.lcores[i].log_ring), 0);
  }
  assert_int_equal(appliance.log_stats.records, 300);
  assert_true(appliance.log_stats.commits >= 2); /* the 8 KiB group filled within the round */
  assert_true(appliance.log_stats.bytes_written > 300u * TALLY_WAL_BATCH_HEADER_SIZE);
  assert_false(tally_log_round(&appliance)); /* nothing new: nothing logged */
  check_exact();
}

static void test_power_loss_rebuilds_from_log(void **state)
{
  (void)state;
  start();
  acked_batches(200, 20);
  assert_true(tally_log_round(&appliance));
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_LOG);
  assert_int_equal(appliance.log_stats.records_replayed, 200);
  check_exact();
  /* The producers' dedup came back too: an acked batch sent again is a duplicate. */
  struct tally_wire_batch again = { .producer = 20, .seq = next_seq[20], .count = 1 };
  again.pairs[0] = (struct tally_wire_pair){ .name = "c.1", .name_len = 3, .delta = 1 };
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&appliance.store.shards[20 % LCORES], &again, &reason),
    TALLY_ACK_DUPLICATE);
  /* And the shards go on from their batch_seq: more batches, another power loss. */
  acked_batches(50, 20);
  assert_true(tally_log_round(&appliance));
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.records_replayed, 250);
  check_exact();
}

static void test_kill_relogs_from_journal(void **state)
{
  (void)state;
  start();
  acked_batches(100, 30);
  assert_true(tally_log_round(&appliance));
  /* Applied, handed over, never logged: the process dies with them in its rings. */
  acked_batches(40, 30);
  kill_process();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_IMAGE);
  assert_int_equal(appliance.log_stats.records_skipped, 100);
  assert_int_equal(appliance.log_stats.records_replayed, 0);
  assert_int_equal(appliance.log_stats.records_relogged, 40);
  check_exact();
  /* The image is lost now: the log must hold all 140. */
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.records_replayed, 140);
  check_exact();
}

/* An older copy of the image (as a checkpoint would load it) is brought up to date. */
static void test_older_image_caught_up(void **state)
{
  (void)state;
  start();
  acked_batches(60, 40);
  assert_true(tally_log_round(&appliance));
  kill_process();
  char copy[256];
  char command[600];
  snprintf(copy, sizeof copy, "%s/image.old", directory);
  snprintf(command, sizeof command, "cp %s %s", appliance.config.store_path, copy);
  assert_int_equal(system(command), 0);
  start();
  acked_batches(90, 40);
  assert_true(tally_log_round(&appliance));
  kill_process();
  assert_int_equal(rename(copy, appliance.config.store_path), 0);
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_IMAGE);
  assert_int_equal(appliance.log_stats.records_skipped, 60);
  assert_int_equal(appliance.log_stats.records_replayed, 90);
  check_exact();
}

/* The first LSN of the oldest log segment left in the log directory. */
static uint64_t oldest_segment(void)
{
  DIR *dir = opendir(appliance.config.log_dir);
  assert_non_null(dir);
  uint64_t oldest = UINT64_MAX;
  for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
    uint64_t lsn;
    if (tally_wal_segment_parse(entry->d_name, &lsn) && lsn < oldest) oldest = lsn;
  }
  closedir(dir);
  return oldest;
}

/* A checkpoint in steps, batches applied and acked between every two steps. */
static uint32_t checkpoint_under_load(uint64_t producer_base)
{
  uint64_t finished = appliance.log_stats.checkpoints_finished;
  tally_log_checkpoint_request(&appliance);
  uint32_t ticks = 0;
  while (appliance.log_stats.checkpoints_finished == finished) {
    assert_true(tally_log_checkpoint_tick(&appliance));
    assert_int_equal(appliance.log_stats.checkpoints_failed, 0);
    acked_batches(7, producer_base);
    (void)tally_log_round(&appliance);
    ticks++;
    assert_true(ticks < 1000);
  }
  return ticks;
}

static void test_checkpoint_then_power_loss(void **state)
{
  (void)state;
  start();
  acked_batches(600, 50); /* several 64 KiB segments */
  assert_true(tally_log_round(&appliance));
  assert_int_equal(oldest_segment(), 1);
  uint32_t ticks = checkpoint_under_load(50);
  assert_true(ticks >= 3); /* begin, at least two steps (the image is > 1 MiB), finish */
  assert_true(appliance.log_stats.checkpoint_last_bytes > appliance.store.size);
  uint64_t cut_to = oldest_segment();
  assert_true(cut_to > 1); /* the log before the checkpoint is gone */
  acked_batches(40, 50);
  assert_true(tally_log_round(&appliance));
  uint64_t logged = appliance.log_stats.records;
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_CHECKPOINT);
  assert_true(appliance.log_stats.checkpoint_loaded_lsn > 0);
  assert_true(appliance.log_stats.records_replayed + appliance.log_stats.records_skipped <
    logged); /* not the whole log */
  assert_true(appliance.log_stats.records_replayed >= 40);
  check_exact();
  struct tally_wire_batch again = { .producer = 51, .seq = next_seq[51], .count = 1 };
  again.pairs[0] = (struct tally_wire_pair){ .name = "c.1", .name_len = 3, .delta = 1 };
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&appliance.store.shards[51 % LCORES], &again, &reason),
    TALLY_ACK_DUPLICATE);
  /* A second checkpoint on the recovered image, a kill (the image survives a cut log),
   * then a power loss. */
  acked_batches(30, 50);
  assert_true(tally_log_round(&appliance));
  (void)checkpoint_under_load(50);
  acked_batches(25, 50);
  assert_true(tally_log_round(&appliance));
  kill_process();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_IMAGE);
  check_exact();
  acked_batches(10, 50);
  assert_true(tally_log_round(&appliance));
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_CHECKPOINT);
  check_exact();
}

/* ---- A cluster node ---------------------------------------------------------------- */

/*
 * What the cluster thread hands the persister after a peer's list: node 2's
 * counters "r.<k>" = base + k in its replica table, a record, the held
 * position; an undo in the compensation shard and a keeper claim at ring
 * position `claim`. Returns the ticket.
 */
static uint64_t cluster_hand_over(int64_t base, uint64_t held, uint64_t claim)
{
  struct tally_wal_queue *queue = appliance.cluster_log_queue;
  assert_non_null(queue);
  struct tally_wal_cluster_writer writer;
  tally_wal_cluster_writer_init(&writer, tally_wal_queue_reserve(queue), TALLY_WAL_PAYLOAD_SIZE_MAX);
  char name[16];
  for (uint32_t k = 0; k < 20; k++) { /* r.0..r.9 reliable-owned (C1), the others statsd */
    int length = snprintf(name, sizeof name, "r.%u", k);
    struct tally_wal_cluster_item value = { .kind = k < 10 ? TALLY_WAL_CLUSTER_RELIABLE_VALUE :
      TALLY_WAL_CLUSTER_VALUE, .origin = 2,
      .name = name, .name_len = (uint32_t)length, .value = base + k };
    assert_true(tally_wal_cluster_add(&writer, &value));
  }
  struct tally_wal_cluster_item record = { .kind = TALLY_WAL_CLUSTER_RECORD, .origin = 2,
    .producer = 9 };
  record.dedup[0] = held; /* runs[0]: head_last, ..., last_seq, window */
  record.dedup[3] = held;
  record.dedup[4] = 1;
  struct tally_wal_cluster_item undo = { .kind = TALLY_WAL_CLUSTER_VALUE, .origin = 0,
    .name = "u.0", .name_len = 3, .value = -base };
  struct tally_wal_cluster_item position = { .kind = TALLY_WAL_CLUSTER_HELD, .origin = 2,
    .seq = held, .scan = held * 10u };
  struct tally_wal_cluster_item keeper = { .kind = TALLY_WAL_CLUSTER_CLAIM, .origin = 0,
    .position = claim, .producer = 9, .seq = held, .attempt = TALLY_CLAIM_KEEPER };
  assert_true(tally_wal_cluster_add(&writer, &record));
  assert_true(tally_wal_cluster_add(&writer, &undo));
  assert_true(tally_wal_cluster_add(&writer, &position));
  assert_true(tally_wal_cluster_add(&writer, &keeper));
  return tally_wal_queue_publish(queue, tally_wal_cluster_finish(&writer));
}

/* The image holds what cluster_hand_over(base, held, claims - 1) handed over last. */
static void check_cluster(int64_t base, uint64_t held, uint64_t claims)
{
  const struct tally_store *store = &appliance.store;
  int32_t r = tally_store_replica_find(store, 2);
  assert_true(r >= 0);
  const struct tally_shard *replica = &store->replicas[r];
  char name[16];
  for (uint32_t k = 0; k < 20; k++) {
    int length = snprintf(name, sizeof name, "r.%u", k);
    int64_t slot = tally_shard_find(replica, name, (uint32_t)length,
      tally_shard_name_hash(replica, name, (size_t)length));
    assert_true(slot >= 0);
    assert_int_equal(tally_shard_slot_value(replica, (uint32_t)slot), base + k);
    /* The class comes back with the value: a restore from this copy keeps the bulkhead. */
    assert_int_equal(tally_shard_slot_class(replica, (uint32_t)slot),
      k < 10 ? TALLY_CLASS_RELIABLE : TALLY_CLASS_STATSD);
  }
  assert_int_equal(tally_shard_held_seq(replica), held);
  assert_int_equal(tally_shard_held_scan(replica), held * 10u);
  struct tally_dedup dedup;
  assert_true(tally_shard_producer_read(replica, 9, &dedup));
  assert_int_equal(dedup.runs[0].last_seq, held);
  const struct tally_shard *compensation = &store->shards[LCORES];
  int64_t slot = tally_shard_find(compensation, "u.0", 3, tally_shard_name_hash(compensation, "u.0", 3));
  assert_true(slot >= 0);
  assert_int_equal(tally_shard_slot_value(compensation, (uint32_t)slot), -base);
  assert_int_equal(tally_shard_claims_next(compensation), claims);
}

static void test_cluster_records_rebuilt(void **state)
{
  (void)state;
  appliance.config.cluster.enabled = true;
  start();
  acked_batches(50, 30);
  uint64_t ticket = cluster_hand_over(1000, 5, 0);
  assert_int_equal(tally_wal_queue_durable(appliance.cluster_log_queue), 0);
  assert_true(tally_log_round(&appliance));
  assert_int_equal(tally_wal_queue_durable(appliance.cluster_log_queue), ticket); /* after the sync */
  assert_int_equal(appliance.log_stats.cluster_records, 1);
  lose_power(); /* nothing of it was ever in this image: only the log has it */
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_LOG);
  check_exact();
  check_cluster(1000, 5, 1);
  /* A checkpoint, a newer list after it, a power loss: checkpoint + log. */
  (void)checkpoint_under_load(30);
  (void)cluster_hand_over(2000, 6, 1);
  acked_batches(10, 30);
  assert_true(tally_log_round(&appliance));
  lose_power();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_CHECKPOINT);
  check_exact();
  check_cluster(2000, 6, 2);
  /* A kill: the image survives and its cluster records are skipped, not replayed over it. */
  kill_process();
  start();
  assert_int_equal(appliance.log_stats.recovery_source, TALLY_LOG_SOURCE_IMAGE);
  check_cluster(2000, 6, 2);
}

/* A checkpoint of another geometry is refused with one line, not loaded. */
static void test_checkpoint_other_geometry_refused(void **state)
{
  (void)state;
  start();
  acked_batches(50, 60);
  assert_true(tally_log_round(&appliance));
  (void)checkpoint_under_load(60);
  lose_power();
  struct tally_store_geometry geometry = {
    .shard_count = LCORES, .counters_max = COUNTERS * 2u, .producers_max = PRODUCERS,
  };
  char error[512];
  assert_int_equal(tally_store_open(&appliance.store, appliance.config.store_path, &geometry,
    TALLY_PERSIST_LOG, error, sizeof error), 0);
  memset(&appliance.log_stats, 0, sizeof appliance.log_stats);
  assert_int_equal(tally_log_open(&appliance, error, sizeof error), -1);
  assert_non_null(strstr(error, "another store layout or geometry"));
  assert_null(strchr(error, '\n'));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_records_logged_then_published, setup, teardown),
    cmocka_unit_test_setup_teardown(test_power_loss_rebuilds_from_log, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill_relogs_from_journal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_older_image_caught_up, setup, teardown),
    cmocka_unit_test_setup_teardown(test_checkpoint_then_power_loss, setup, teardown),
    cmocka_unit_test_setup_teardown(test_checkpoint_other_geometry_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cluster_records_rebuilt, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
