/*
 * test_store.c — the store file through libpmem2, in a fresh mkdtemp
 * directory under /tmp: creation, reopening, clean and unclean shutdowns
 * (a forked child that exits or is killed without closing), kill -9 in the
 * middle of reliable batches, and every way opening must refuse a file
 * (geometry, superblock, size, shard header, persistence mode).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally/name.h"
#include "store.h"
#include "store_format.h"

static char directory[64];
static char path[128];

static const struct tally_store_geometry geometry_small = {
  .shard_count = 2, .counters_max = 1000, .producers_max = 16};

static int setup(void **state)
{
  (void)state;
  snprintf(directory, sizeof(directory), "/tmp/tally_store_test.XXXXXX");
  if (mkdtemp(directory) == NULL) return -1;
  snprintf(path, sizeof(path), "%s/counters.tally", directory);
  unsetenv("PMEM2_FORCE_GRANULARITY");
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  char other[160];
  unlink(path);
  snprintf(other, sizeof(other), "%s.creating", path);
  unlink(other);
  return rmdir(directory);
}

static bool exists(const char *file)
{
  struct stat status;
  return stat(file, &status) == 0;
}

static enum tally_reason add(struct tally_shard *shard, const char *name, int64_t delta)
{
  uint32_t len = (uint32_t)strlen(name);
  return tally_shard_add(shard, name, len, tally_shard_name_hash(shard, name, len), delta);
}

static int64_t value_of(const struct tally_shard *shard, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  int64_t slot = tally_shard_find(shard, name, len, tally_shard_name_hash(shard, name, len));
  if (slot < 0) return INT64_MIN;
  assert_true(tally_shard_slot_readable(shard, (uint32_t)slot));
  return tally_shard_slot_value(shard, (uint32_t)slot);
}

static void open_ok(struct tally_store *store, const struct tally_store_geometry *geometry,
  enum tally_persist_mode mode)
{
  char error[256] = "";
  int rc = tally_store_open(store, path, geometry, mode, error, sizeof(error));
  if (rc != 0) fail_msg("open: %s", error);
}

/* Opens expecting failure; checks the message names what is wrong. */
static void open_fails(const struct tally_store_geometry *geometry, enum tally_persist_mode mode,
  const char *expected)
{
  static struct tally_store store;
  char error[256] = "";
  assert_int_equal(tally_store_open(&store, path, geometry, mode, error, sizeof(error)), -1);
  if (strstr(error, expected) == NULL) fail_msg("error '%s' lacks '%s'", error, expected);
}

/* The record of a producer new with seq: one run. */
static struct tally_dedup dedup_start(uint64_t seq)
{
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  tally_dedup_new_run(&dedup, seq);
  return dedup;
}

static void patch_file(off_t offset, const void *bytes, size_t size)
{
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, bytes, size, offset), (ssize_t)size);
  assert_int_equal(close(fd), 0);
}

/* ---- Create, reopen, shutdowns --------------------------------------------- */

static void test_create_and_reopen(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_true(store.recovery.created);
  assert_true(store.recovery.was_clean);
  assert_int_equal(store.recovery.open_count, 1);
  assert_int_equal(store.mode, TALLY_PERSIST_GROUP_COMMIT);
  assert_string_equal(store.granularity_name, "page");
  assert_int_equal(store.size, tally_store_file_size(&geometry_small));
  assert_null(store.shards[0].flush);
  assert_int_equal(add(&store.shards[0], "a", 5), TALLY_OK);
  assert_int_equal(add(&store.shards[1], "a", 7), TALLY_OK);
  tally_store_persist(&store);
  tally_store_close(&store);

  struct stat status;
  assert_int_equal(stat(path, &status), 0);
  assert_int_equal((size_t)status.st_size, tally_store_file_size(&geometry_small));
  assert_int_equal(status.st_mode & 0777, 0600);

  open_ok(&store, &geometry_small, TALLY_PERSIST_GROUP_COMMIT);
  assert_false(store.recovery.created);
  assert_true(store.recovery.was_clean);
  assert_int_equal(store.recovery.open_count, 2);
  assert_int_equal(store.recovery.shards[1].counters_used, 1);
  assert_int_equal(value_of(&store.shards[0], "a"), 5);
  assert_int_equal(value_of(&store.shards[1], "a"), 7);
  tally_store_close(&store);
}

/* Replica tables (cluster): absolute values and held_seq survive a reopen. */
static void test_replica_tables(void **state)
{
  (void)state;
  static struct tally_store store;
  struct tally_store_geometry geometry = geometry_small;
  geometry.replica_count = 2;
  open_ok(&store, &geometry, TALLY_PERSIST_AUTO);
  assert_int_equal(store.size, tally_store_file_size(&geometry));
  assert_true(store.size > tally_store_file_size(&geometry_small));
  assert_int_equal(tally_store_replica_counters(&geometry), 2000);
  assert_int_equal(tally_store_replica_producers(&geometry), 32);
  char error[256] = "";
  assert_int_equal(tally_store_replica_bind(&store, 7, error, sizeof error), 0);
  assert_int_equal(tally_store_replica_bind(&store, 9, error, sizeof error), 1);
  assert_int_equal(store.replicas[1].producers_max, 32);
  struct tally_shard *replica = &store.replicas[1];
  assert_int_equal(tally_shard_held_seq(replica), 0);
  assert_int_equal(tally_shard_set(replica, "r", 1,
    tally_shard_name_hash(replica, "r", 1), 40), TALLY_OK);
  assert_int_equal(tally_shard_set(replica, "r", 1,
    tally_shard_name_hash(replica, "r", 1), -7), TALLY_OK);
  tally_shard_set_held_seq(replica, 12);
  /* Replica tables hold the origin's producer records, all its shards' worth. */
  for (uint64_t producer = 1; producer <= 32; producer++) {
    struct tally_dedup dedup = dedup_start(100 + producer);
    assert_int_equal(tally_shard_producer_merge(replica, producer, &dedup), TALLY_OK);
  }
  /*
   * Another origin shard's copy of producer 30's run (from 130): 120 applied
   * too, below the run's first (the head's lower word, bit 193 - 64 - 120 = 9).
   */
  struct tally_dedup below = dedup_start(130);
  below.runs[0].window |= 1ull << 10;
  tally_dedup_mark_head(&below.runs[0], 120);
  assert_int_equal(below.runs[0].head_window[1], 1ull << 9);
  assert_int_equal(tally_shard_producer_merge(replica, 30, &below), TALLY_OK);
  /* Producer 32 came back twice more: three runs. */
  struct tally_dedup later = dedup_start(1000);
  assert_int_equal(tally_shard_producer_merge(replica, 32, &later), TALLY_OK);
  later = dedup_start(2000);
  assert_int_equal(tally_shard_producer_merge(replica, 32, &later), TALLY_OK);
  struct tally_dedup first = dedup_start(1);
  assert_int_equal(tally_shard_producer_merge(replica, 33, &first), TALLY_REASON_PRODUCERS_FULL);
  assert_int_equal(add(&store.shards[0], "r", 1), TALLY_OK);
  tally_store_close(&store);

  open_ok(&store, &geometry, TALLY_PERSIST_AUTO);
  assert_int_equal(value_of(&store.replicas[1], "r"), -7);
  assert_int_equal(value_of(&store.replicas[0], "r"), INT64_MIN); /* other peer: nothing */
  assert_int_equal(value_of(&store.shards[0], "r"), 1);
  assert_int_equal(tally_shard_held_seq(&store.replicas[1]), 12);
  assert_int_equal(store.recovery.replicas[1].counters_used, 1);
  assert_int_equal(store.recovery.replicas[1].producers_used, 32);
  assert_int_equal(store.recovery.replicas[1].producers_quarantined, 0);
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  assert_true(tally_shard_producer_read(&store.replicas[1], 31, &dedup));
  assert_int_equal(dedup.runs[0].last_seq, 131);
  assert_int_equal(dedup.runs[0].window, 1);
  assert_int_equal(dedup.runs[0].head_last, 131 + 63); /* the head survives the reopen too */
  assert_int_equal(dedup.runs[0].head_window[0], 1ull << 63);
  assert_int_equal(dedup.runs[0].head_window[1], 0);
  assert_int_equal(dedup.runs[1].head_last, 0);
  /* The head's lower word too. */
  assert_true(tally_shard_producer_read(&store.replicas[1], 30, &dedup));
  assert_int_equal(dedup.runs[0].last_seq, 130);
  assert_int_equal(dedup.runs[0].window, (1ull << 10) | 1u);
  assert_int_equal(dedup.runs[0].head_last, 130 + 63);
  assert_int_equal(dedup.runs[0].head_window[0], 1ull << 63);
  assert_int_equal(dedup.runs[0].head_window[1], 1ull << 9);
  uint64_t head_last = 0;
  assert_true(tally_dedup_in_head(&dedup, 120, &head_last));
  assert_int_equal(head_last, 130 + 63);
  /* Every run survives it. */
  assert_true(tally_shard_producer_read(&store.replicas[1], 32, &dedup));
  const uint64_t firsts[TALLY_DEDUP_RUNS] = {2000, 1000, 132};
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    assert_int_equal(dedup.runs[r].last_seq, firsts[r]);
    assert_int_equal(dedup.runs[r].window, 1);
    assert_int_equal(dedup.runs[r].head_last, firsts[r] + 63);
    assert_int_equal(dedup.runs[r].head_window[0], 1ull << 63);
    assert_int_equal(dedup.runs[r].head_window[1], 0);
  }
  assert_false(tally_shard_producer_read(&store.replicas[0], 32, &dedup));
  tally_store_close(&store);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "replica_count");
}

static void test_replica_producers_capacity(void **state)
{
  (void)state;
  struct tally_store_geometry geometry = {
    .shard_count = 3, .counters_max = 1000, .producers_max = 16, .replica_count = 1};
  assert_int_equal(tally_store_replica_producers(&geometry), 48);
  geometry.shard_count = TALLY_SHARDS_MAX;
  geometry.producers_max = TALLY_PRODUCERS_MAX / 2;
  assert_int_equal(tally_store_replica_producers(&geometry), TALLY_PRODUCERS_MAX);
  geometry.shard_count = 1;
  geometry.producers_max = TALLY_PRODUCERS_MIN;
  assert_int_equal(tally_store_replica_producers(&geometry), TALLY_PRODUCERS_MIN);
  /* The file grows with the replica tables' producer tables and every journal. */
  geometry = (struct tally_store_geometry){
    .shard_count = 2, .counters_max = 16, .producers_max = 1024, .replica_count = 1};
  assert_int_equal(tally_store_replica_offset(&geometry, 0),
    4096 + 2 * tally_shard_region_size(16, 1024));
  size_t replica = tally_shard_region_size(32, 2048);
  assert_int_equal(tally_store_file_size(&geometry),
    4096 + 2 * tally_shard_region_size(16, 1024) + replica);
  assert_true(replica > tally_shard_region_size(32, TALLY_PRODUCERS_MIN));
}

/* A cluster node's store: the lcores' shards plus the compensation shard. */
static void test_compensation_shard_count(void **state)
{
  (void)state;
  static struct tally_store store;
  struct tally_store_geometry geometry = {
    .shard_count = TALLY_SHARDS_MAX, .counters_max = 16, .producers_max = 16,
    .replica_count = 2};
  open_ok(&store, &geometry, TALLY_PERSIST_AUTO);
  assert_int_equal(store.size, tally_store_file_size(&geometry));
  char error[256] = "";
  assert_int_equal(tally_store_replica_bind(&store, 2, error, sizeof error), 0);
  struct tally_shard *last = &store.shards[TALLY_SHARDS_MAX - 1];
  assert_int_equal(last->index, TALLY_SHARDS_MAX - 1);
  assert_int_equal(store.replicas[0].index, TALLY_SHARDS_MAX);
  assert_true((uint8_t *)store.replicas[0].header >=
    (uint8_t *)last->header + tally_shard_region_size(16, 16));
  struct tally_wire_batch batch = {.producer = 6, .seq = 2, .count = 1};
  batch.pairs[0] = (struct tally_wire_pair){.name = "comp", .name_len = 4, .delta = -3};
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(last, &batch, &reason), TALLY_ACK_APPLIED);
  tally_store_close(&store);
  open_ok(&store, &geometry, TALLY_PERSIST_AUTO);
  assert_int_equal(value_of(&store.shards[TALLY_SHARDS_MAX - 1], "comp"), -3);
  assert_int_equal(store.recovery.shards[TALLY_SHARDS_MAX - 1].counters_used, 1);
  tally_store_close(&store);
}

/*
 * A store of an older layout (5: names under the public CRC32C seed, 4:
 * 128-byte slots, ..., 1) is refused, naming both versions and the steps.
 * Failed before layout 6: layout 5 opened, and its names kept hashing under
 * the public seed (issue 14 H1).
 */
static void test_old_layout_refused(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(TALLY_STORE_LAYOUT_VERSION, 6);
  assert_int_equal(store.super->layout_version, 6);
  struct tally_superblock super = *store.super;
  tally_store_close(&store);
  for (uint32_t version = 5; version >= 1; version--) {
    super.layout_version = version;
    super.crc = tally_crc32c(&super, offsetof(struct tally_superblock, crc), 0x53555052u);
    patch_file(0, &super, offsetof(struct tally_superblock, clean_shutdown));
    char expected[64];
    snprintf(expected, sizeof(expected), "layout version %u, this build reads 6", version);
    char error[512] = ""; /* tallyd's (control/daemon/main.c) */
    assert_int_equal(tally_store_open(&store, path, &geometry_small, TALLY_PERSIST_AUTO, error,
      sizeof(error)), -1);
    if (strstr(error, expected) == NULL) fail_msg("error '%s' lacks '%s'", error, expected);
    if (strstr(error, "secret per-store key") == NULL) fail_msg("error '%s': why?", error);
    if (strstr(error, "restores from its peers") == NULL) fail_msg("error '%s': cluster?", error);
    if (strstr(error, "move the file aside") == NULL) fail_msg("error '%s' says no way out", error);
    if (strstr(error, "tallyctl list > counts") == NULL) fail_msg("error '%s' loses counts", error);
    assert_false(store.corrupt); /* a version mismatch, not a damaged file */
  }
}

/*
 * The name hash key: random per store, the same in every table of the store,
 * kept across reopens, and a flipped key byte is a corrupt store (not a
 * silent rehash that would lose every counter). Failed before layout 6:
 * every store hashed names under one public seed.
 */
static void test_name_key_per_store(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  struct tally_name_key first = store.super->name_key;
  assert_memory_equal(store.shards[1].name_key.bytes, first.bytes, sizeof first.bytes);
  static const uint8_t zero[TALLY_NAME_KEY_SIZE];
  assert_memory_not_equal(first.bytes, zero, sizeof zero);
  uint32_t hash_first = tally_store_name_hash(&store, "requests.ok", 11);
  assert_int_equal(add(&store.shards[1], "requests.ok", 5), TALLY_OK);
  tally_store_close(&store);
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO); /* kept: the counter is found */
  assert_memory_equal(store.super->name_key.bytes, first.bytes, sizeof first.bytes);
  assert_int_equal(value_of(&store.shards[1], "requests.ok"), 5);
  tally_store_close(&store);

  assert_int_equal(unlink(path), 0); /* another store: another key, other hashes */
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_memory_not_equal(store.super->name_key.bytes, first.bytes, sizeof first.bytes);
  uint32_t hash_second = tally_store_name_hash(&store, "requests.ok", 11);
  struct tally_name_key second = store.super->name_key;
  tally_store_close(&store);
  /* 2^-32 that two keys give one hash to a name; the keys differ, so check a few names. */
  bool all_equal = hash_first == hash_second;
  for (uint32_t i = 0; i < 8 && all_equal; i++) {
    char name[16];
    int length = snprintf(name, sizeof name, "n%u", i);
    all_equal = tally_name_hash(&first, name, (size_t)length) ==
      tally_name_hash(&second, name, (size_t)length);
  }
  assert_false(all_equal);

  uint8_t flipped = (uint8_t)(second.bytes[3] ^ 0x10u);
  patch_file((off_t)offsetof(struct tally_superblock, name_key) + 3, &flipped, 1);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "name hash key checksum mismatch");
}

/* ---- The replica directory (runtime membership) ------------------------------ */

static const struct tally_store_geometry geometry_cluster = {
  .shard_count = 2, .counters_max = 16, .producers_max = 16, .replica_count = 3};

static off_t directory_offset(uint32_t replica)
{
  return (off_t)(offsetof(struct tally_superblock, replica_directory) +
    replica * sizeof(struct tally_replica_binding));
}

/* Binding: a peer gets the lowest free region, the same one again, and only blocks when bound. */
static void test_replica_bind(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256] = "";
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  struct stat status;
  assert_int_equal(stat(path, &status), 0);
  off_t unbound_blocks = status.st_blocks;
  assert_true((size_t)status.st_blocks * 512u <
    tally_store_replica_offset(&geometry_cluster, 1)); /* the regions are holes */
  assert_int_equal(tally_store_replica_free(&store), 3);
  assert_int_equal(tally_store_replica_find(&store, 5), -1);
  for (uint32_t r = 0; r < 3; r++) assert_false(tally_store_replica_bound(&store, r));
  assert_int_equal(tally_store_replica_bind(&store, 5, error, sizeof error), 0);
  assert_int_equal(tally_store_replica_bind(&store, 300, error, sizeof error), 1);
  assert_int_equal(tally_store_replica_bind(&store, 5, error, sizeof error), 0); /* same */
  assert_int_equal(tally_store_replica_find(&store, 300), 1);
  assert_int_equal(tally_store_replica_free(&store), 1);
  assert_true(tally_store_replica_bound(&store, 1));
  assert_false(tally_store_replica_bound(&store, 2));
  assert_int_equal(store.replicas[1].index, geometry_cluster.shard_count + 1);
  assert_int_equal(stat(path, &status), 0);
  assert_true(status.st_blocks > unbound_blocks); /* allocated at bind */
  assert_int_equal(tally_shard_set(&store.replicas[1], "m", 1,
    tally_shard_name_hash(&store.replicas[1], "m", 1), 11),
    TALLY_OK);
  tally_store_persist_replica(&store, 1);
  tally_store_close(&store);
}

/* After a reopen every binding is where it was; a new peer takes the next free region. */
static void test_replica_rebind_after_reopen(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256] = "";
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_bind(&store, 2, error, sizeof error), 0);
  assert_int_equal(tally_store_replica_bind(&store, 3, error, sizeof error), 1);
  assert_int_equal(tally_shard_set(&store.replicas[1], "n", 1,
    tally_shard_name_hash(&store.replicas[1], "n", 1), 42),
    TALLY_OK);
  tally_store_close(&store);
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_find(&store, 2), 0);
  assert_int_equal(tally_store_replica_find(&store, 3), 1);
  assert_int_equal(store.replica_origin[1], 3);
  assert_int_equal(value_of(&store.replicas[1], "n"), 42); /* its table, recovered */
  assert_int_equal(store.recovery.replicas[1].counters_used, 1);
  assert_int_equal(tally_store_replica_bind(&store, 3, error, sizeof error), 1); /* rebind */
  assert_int_equal(tally_store_replica_bind(&store, 4, error, sizeof error), 2);
  tally_store_close(&store);
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_find(&store, 4), 2);
  assert_int_equal(tally_store_replica_free(&store), 0);
  tally_store_close(&store);
}

/* Every region bound: one more origin is refused, naming why, and nothing changes. */
static void test_replica_directory_full(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256] = "";
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  for (uint16_t origin = 1; origin <= 3; origin++) {
    assert_int_equal(tally_store_replica_bind(&store, origin, error, sizeof error), origin - 1);
  }
  assert_int_equal(tally_store_replica_bind(&store, 4, error, sizeof error), -1);
  if (strstr(error, "replica tables is bound") == NULL) fail_msg("error '%s'", error);
  assert_int_equal(tally_store_replica_find(&store, 4), -1);
  assert_int_equal(tally_store_replica_bind(&store, 2, error, sizeof error), 1); /* still fine */
  tally_store_close(&store);
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_find(&store, 4), -1);
  assert_int_equal(tally_store_replica_free(&store), 0);
  tally_store_close(&store);
}

/* A damaged directory entry (a flipped bit, or an origin named twice) makes the store corrupt. */
static void test_replica_directory_corrupt(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256] = "";
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_bind(&store, 5, error, sizeof error), 0);
  assert_int_equal(tally_store_replica_bind(&store, 6, error, sizeof error), 1);
  struct tally_replica_binding first = store.super->replica_directory[0];
  struct tally_replica_binding second = store.super->replica_directory[1];
  tally_store_close(&store);
  struct tally_replica_binding flipped = first;
  flipped.origin ^= 4u; /* 5 -> 1: a bit flip the crc must catch */
  patch_file(directory_offset(0), &flipped, sizeof flipped);
  assert_int_equal(tally_store_open(&store, path, &geometry_cluster, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  if (strstr(error, "replica directory entry 0 is corrupt") == NULL) fail_msg("'%s'", error);
  assert_true(store.corrupt);
  /* A copy of a good entry in the wrong place (a misdirected write): its crc names its index. */
  patch_file(directory_offset(0), &first, sizeof first);
  patch_file(directory_offset(2), &second, sizeof second);
  assert_int_equal(tally_store_open(&store, path, &geometry_cluster, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  if (strstr(error, "replica directory entry 2 is corrupt") == NULL) fail_msg("'%s'", error);
  assert_true(store.corrupt);
  /* Repaired, it opens again with both bindings. */
  struct tally_replica_binding zero = {0, 0};
  patch_file(directory_offset(2), &zero, sizeof zero);
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_find(&store, 5), 0);
  assert_int_equal(tally_store_replica_find(&store, 6), 1);
  tally_store_close(&store);
  /* A bound region whose header is damaged: corrupt, named. */
  uint64_t garbage = 0x0123456789abcdefull;
  patch_file((off_t)tally_store_replica_offset(&geometry_cluster, 1), &garbage, sizeof garbage);
  assert_int_equal(tally_store_open(&store, path, &geometry_cluster, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  if (strstr(error, "replica table 1 (node 6) header is corrupt") == NULL) fail_msg("'%s'", error);
  assert_true(store.corrupt);
}

/* A crash between formatting a region and writing its entry leaves it free: bound again. */
static void test_replica_bind_interrupted(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256] = "";
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_bind(&store, 8, error, sizeof error), 0);
  assert_int_equal(tally_shard_set(&store.replicas[0], "x", 1,
    tally_shard_name_hash(&store.replicas[0], "x", 1), 3),
    TALLY_OK);
  tally_store_close(&store);
  struct tally_replica_binding zero = {0, 0}; /* the entry never reached the media */
  patch_file(directory_offset(0), &zero, sizeof zero);
  open_ok(&store, &geometry_cluster, TALLY_PERSIST_AUTO);
  assert_int_equal(tally_store_replica_find(&store, 8), -1);
  assert_int_equal(tally_store_replica_bind(&store, 9, error, sizeof error), 0);
  assert_int_equal(value_of(&store.replicas[0], "x"), INT64_MIN); /* formatted afresh */
  tally_store_close(&store);
}

/* A damaged file is told apart from a config mismatch (a cluster node restores the former). */
static void test_corrupt_told_apart(void **state)
{
  (void)state;
  static struct tally_store store;
  char error[256];
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  struct tally_store_geometry other = geometry_small;
  other.counters_max = 2000;
  assert_int_equal(tally_store_open(&store, path, &other, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  assert_false(store.corrupt);
  uint64_t garbage = 0x0123456789abcdefull;
  patch_file(0, &garbage, sizeof garbage);
  assert_int_equal(tally_store_open(&store, path, &geometry_small, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  assert_true(store.corrupt);
  assert_int_equal(truncate(path, 100), 0);
  assert_int_equal(tally_store_open(&store, path, &geometry_small, TALLY_PERSIST_AUTO, error,
    sizeof error), -1);
  assert_true(store.corrupt);
}

/* A second opener (another tallyd on the same store) is refused. */
static void test_second_opener_refused(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(add(&store.shards[0], "held", 1), TALLY_OK);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "in use by another process");
  assert_int_equal(value_of(&store.shards[0], "held"), 1);
  tally_store_close(&store);
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO); /* released on close */
  assert_int_equal(value_of(&store.shards[0], "held"), 1);
  tally_store_close(&store);
}

static void test_unclean_exit_keeps_everything(void **state)
{
  (void)state;
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    static struct tally_store store;
    char error[256];
    if (tally_store_open(&store, path, &geometry_small, TALLY_PERSIST_AUTO, error,
      sizeof(error)) != 0) {
      _exit(2);
    }
    add(&store.shards[0], "crash.a", 11);
    struct tally_wire_batch batch = {.producer = 4, .seq = 1, .count = 1};
    batch.pairs[0] = (struct tally_wire_pair){.name = "crash.b", .name_len = 7, .delta = 3};
    enum tally_reason reason;
    if (tally_shard_apply_batch(&store.shards[1], &batch, &reason) != TALLY_ACK_APPLIED) _exit(3);
    batch.seq = 2;
    batch.attempt = 2; /* a resend: claimed */
    if (tally_shard_apply_batch(&store.shards[1], &batch, &reason) != TALLY_ACK_APPLIED) _exit(4);
    _exit(0); /* no persist, no close */
  }
  int status;
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_false(store.recovery.created);
  assert_false(store.recovery.was_clean);
  assert_int_equal(value_of(&store.shards[0], "crash.a"), 11);
  assert_int_equal(value_of(&store.shards[1], "crash.b"), 6);
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(&store.shards[1], 4, 1, &entry));
  assert_int_equal(entry.count, 1);
  assert_int_equal(entry.pairs[0].delta, 3);
  assert_int_equal(entry.attempt, 0);
  assert_true(tally_shard_journal_find(&store.shards[1], 4, 2, &entry));
  assert_int_equal(entry.attempt, 2);
  assert_int_equal(store.shards[1].header->journal_next, 2);
  /* The resend's claim survives the reopen; the first send made none. */
  assert_int_equal(tally_shard_claims_next(&store.shards[1]), 1);
  assert_int_equal(tally_shard_claims_next(&store.shards[0]), 0);
  struct tally_claim claim;
  assert_true(tally_shard_claim_at(&store.shards[1], 0, &claim));
  assert_int_equal(claim.producer, 4);
  assert_int_equal(claim.seq, 2);
  assert_int_equal(claim.attempt, 2);
  assert_int_equal(claim.position, 0);
  struct tally_wire_batch batch = {.producer = 4, .seq = 1, .count = 1, .attempt = 3};
  batch.pairs[0] = (struct tally_wire_pair){.name = "crash.b", .name_len = 7, .delta = 3};
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&store.shards[1], &batch, &reason),
    TALLY_ACK_DUPLICATE);
  assert_int_equal(store.shards[1].header->journal_next, 2);
  assert_int_equal(tally_shard_claims_next(&store.shards[1]), 1);
  /* And a clean close and reopen keeps it too. */
  tally_store_close(&store);
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_true(store.recovery.was_clean);
  assert_int_equal(tally_shard_claims_next(&store.shards[1]), 1);
  assert_true(tally_shard_claim_at(&store.shards[1], 0, &claim));
  assert_int_equal(claim.seq, 2);
  assert_int_equal(claim.attempt, 2);
  tally_store_close(&store);
}

/*
 * A child applies batch after batch (seq k adds 1 to "n" and k to "sum",
 * with statsd adds in between; seq k is sent as attempt k % 3, so two in
 * three are resends and claimed) until it is killed with SIGKILL at an
 * arbitrary point. Whatever the point, the reopened store must hold exactly
 * the batches its dedup record says were applied, and their claims.
 */
/* Batches a child applies before it tells the parent it is under way. */
#define KILL_AFTER_BATCHES 200u

static void child_apply_forever(uint64_t seq_first, int ready_fd)
{
  static struct tally_store store;
  char error[256];
  if (tally_store_open(&store, path, &geometry_small, TALLY_PERSIST_AUTO, error,
    sizeof(error)) != 0) {
    _exit(2);
  }
  for (uint64_t seq = seq_first; seq < seq_first + 20000000ull; seq++) {
    if (seq == seq_first + KILL_AFTER_BATCHES) { /* applied: the kill may come now */
      if (write(ready_fd, "r", 1) != 1) _exit(4);
    }
    struct tally_wire_batch batch = {.producer = 99, .seq = seq, .count = 2,
      .attempt = (uint16_t)(seq % 3u)};
    batch.pairs[0] = (struct tally_wire_pair){.name = "n", .name_len = 1, .delta = 1};
    batch.pairs[1] = (struct tally_wire_pair){.name = "sum", .name_len = 3,
      .delta = (int64_t)seq};
    enum tally_reason reason;
    if (tally_shard_apply_batch(&store.shards[0], &batch, &reason) != TALLY_ACK_APPLIED) {
      _exit(3);
    }
    add(&store.shards[0], "statsd", 1);
  }
  _exit(0);
}

static uint64_t producer_last_seq(const struct tally_shard *shard, uint64_t producer)
{
  for (uint32_t i = 0; i < shard->producer_slots_count; i++) {
    if (shard->producers[i].producer == producer) {
      return shard->producers[i].dedup.runs[0].last_seq;
    }
  }
  return 0;
}

static void test_kill_during_batches(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  uint64_t next = 1;
  for (int round = 0; round < 4; round++) {
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
      close(ready[0]);
      child_apply_forever(next, ready[1]);
    }
    close(ready[1]);
    /* The child is applying: it has done KILL_AFTER_BATCHES batches (EOF: it died). */
    char byte = 0;
    ssize_t got = read(ready[0], &byte, 1);
    close(ready[0]);
    if (got == 1) usleep(20000u * (useconds_t)round); /* where the kill lands beyond that */
    assert_int_equal(kill(child, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(got, 1);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
    assert_false(store.recovery.was_clean);
    assert_int_equal(store.recovery.shards[0].slots_quarantined, 0);
    assert_int_equal(store.recovery.shards[0].log_discarded, 0);
    uint64_t last = producer_last_seq(&store.shards[0], 99);
    /* The kill point: it came after the child applied what it said it had. */
    assert_true(last >= next + KILL_AFTER_BATCHES - 1u);
    assert_int_equal(value_of(&store.shards[0], "n"), (int64_t)last);
    assert_int_equal(value_of(&store.shards[0], "sum"), (int64_t)(last * (last + 1) / 2));
    /* each kill may land between a batch and its statsd add */
    assert_true(value_of(&store.shards[0], "statsd") >= (int64_t)last - (round + 1));
    assert_true(value_of(&store.shards[0], "statsd") <= (int64_t)last);
    /*
     * Every applied batch has its journal entry (written before its redo
     * record). Each kill may also leave the entry of a batch that never
     * happened (its seq is journaled again by the next child), taking a
     * ring position: the newest TALLY_JOURNAL_ENTRIES - (round + 1) are kept.
     */
    struct tally_journal_entry entry;
    uint64_t kept = TALLY_JOURNAL_ENTRIES - (uint64_t)(round + 1);
    uint64_t oldest = last > kept ? last - kept + 1 : 1;
    for (uint64_t seq = oldest; seq <= last; seq++) {
      if (tally_shard_journal_find(&store.shards[0], 99, seq, &entry)) continue;
      fail_msg("no journal entry for applied seq %llu", (unsigned long long)seq);
    }
    assert_true(tally_shard_journal_find(&store.shards[0], 99, last, &entry));
    assert_int_equal(entry.pairs[1].delta, (int64_t)last);
    /*
     * One run from seq 1 (every child goes on from the last applied seq):
     * the head is 1..64 and holds every applied seq of it, the tail ends
     * at last, however the kills fell.
     */
    struct tally_dedup dedup;
    assert_true(tally_shard_producer_read(&store.shards[0], 99, &dedup));
    assert_int_equal(dedup.runs[0].last_seq, last);
    assert_int_equal(dedup.runs[0].head_last, TALLY_DEDUP_WINDOW);
    uint64_t head_end = last < TALLY_DEDUP_WINDOW ? last : TALLY_DEDUP_WINDOW;
    uint64_t head_bits = head_end == 64 ? UINT64_MAX :
      ((1ull << head_end) - 1u) << (64 - head_end); /* seq s is bit 64 - s */
    assert_int_equal(dedup.runs[0].head_window[0], head_bits);
    assert_int_equal(dedup.runs[0].head_window[1], 0); /* nothing below seq 1 */
    for (uint64_t seq = 1; seq <= head_end; seq++) {
      uint64_t head_last = 0;
      assert_true(tally_dedup_in_head(&dedup, seq, &head_last));
      assert_int_equal(head_last, TALLY_DEDUP_WINDOW);
    }
    /* No kill starts a run: the older runs stay empty. */
    for (uint32_t r = 1; r < TALLY_DEDUP_RUNS; r++) {
      assert_int_equal(dedup.runs[r].head_last, 0);
      assert_int_equal(dedup.runs[r].last_seq, 0);
    }
    /*
     * Exactly one claim per applied resend (seq % 3 != 0), in order, however
     * the kills fell: a claim cut short is written by the replay, never
     * twice. Claim k is seq 3 (k / 2) + k % 2 + 1.
     */
    uint64_t claimed = last - last / 3u;
    assert_int_equal(tally_shard_claims_next(&store.shards[0]), claimed);
    uint64_t first = claimed > TALLY_CLAIMS_ENTRIES ? claimed - TALLY_CLAIMS_ENTRIES : 0;
    for (uint64_t k = first; k < claimed; k++) {
      struct tally_claim claim;
      uint64_t seq = 3u * (k / 2u) + k % 2u + 1u;
      if (!tally_shard_claim_at(&store.shards[0], k, &claim)) {
        fail_msg("claim %llu unreadable", (unsigned long long)k);
      }
      assert_int_equal(claim.producer, 99);
      assert_int_equal(claim.seq, seq);
      assert_int_equal(claim.attempt, seq % 3u);
    }
    next = last + 1;
    tally_store_close(&store);
  }
}

/* ---- Refusals -------------------------------------------------------------- */

static void test_invalid_geometry_creates_nothing(void **state)
{
  (void)state;
  struct tally_store_geometry geometry = geometry_small;
  geometry.shard_count = 0;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "shard_count 0");
  geometry.shard_count = TALLY_SHARDS_MAX + 1;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "shard_count 18 outside 1..17");
  geometry = geometry_small;
  geometry.counters_max = TALLY_COUNTERS_MIN - 1;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "counters_max 15");
  geometry = geometry_small;
  geometry.producers_max = TALLY_PRODUCERS_MAX + 1;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "producers_max");
  assert_false(exists(path));
}

static void test_geometry_mismatch(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  struct tally_store_geometry geometry = geometry_small;
  geometry.counters_max = 2000;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "counters_max is 1000 in the file, 2000 in the config");
  geometry = geometry_small;
  geometry.shard_count = 3;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "is 2 in the file, 3 in the config");
  geometry = geometry_small;
  geometry.producers_max = 32;
  open_fails(&geometry, TALLY_PERSIST_AUTO, "producers_max is 16 in the file, 32 in the config");
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO); /* the file is untouched */
  tally_store_close(&store);
}

static void test_bad_superblock(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  uint64_t created_unix_ns = 12345;
  patch_file(offsetof(struct tally_superblock, created_unix_ns), &created_unix_ns, 8);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "superblock checksum");
  patch_file(0, "NOTTALLY", 8);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "bad superblock magic");
}

static void test_bad_shard_header(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  off_t shard1 = (off_t)((uint8_t *)store.shards[1].header - store.base);
  tally_store_close(&store);
  uint32_t slots_count = 4096;
  patch_file(shard1 + (off_t)offsetof(struct tally_shard_header, slots_count), &slots_count, 4);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "shard 1 header is corrupt");
}

/* Issue 14, L5: before, a symbolic link was followed and any owner's file was opened. */
static void test_symlink_and_foreign_owner_refused(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(add(&store.shards[0], "mine", 1), TALLY_OK);
  tally_store_close(&store);
  char real[sizeof(path)];
  snprintf(real, sizeof(real), "%s", path);
  snprintf(path, sizeof(path), "%s/link.tally", directory);
  assert_int_equal(symlink(real, path), 0);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "a symbolic link (refused)");
  assert_int_equal(unlink(path), 0);
  snprintf(path, sizeof(path), "%s/dangling.tally", directory);
  assert_int_equal(symlink("/nonexistent/tally", path), 0);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "a symbolic link (refused)");
  assert_int_equal(unlink(path), 0);
  snprintf(path, sizeof(path), "%s", real);
  if (geteuid() == 0) { /* root can give the file away */
    assert_int_equal(chown(path, 65534, 65534), 0);
    open_fails(&geometry_small, TALLY_PERSIST_AUTO, "owned by uid 65534, not by tallyd's user");
    assert_int_equal(chown(path, 0, 0), 0);
  }
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(value_of(&store.shards[0], "mine"), 1);
  tally_store_close(&store);
}

static void test_truncated_file(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  size_t size = tally_store_file_size(&geometry_small);
  assert_int_equal(truncate(path, (off_t)(size - 8192)), 0);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "truncated");
  assert_int_equal(truncate(path, 100), 0);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "smaller than a superblock");
  assert_int_equal(truncate(path, 0), 0);
  open_fails(&geometry_small, TALLY_PERSIST_AUTO, "truncated");
}

static void test_corrupt_slot_reported(void **state)
{
  (void)state;
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(add(&store.shards[1], "victim", 1000), TALLY_OK);
  assert_int_equal(add(&store.shards[1], "bystander", 1), TALLY_OK);
  int64_t slot = tally_shard_find(&store.shards[1], "victim", 6,
    tally_shard_name_hash(&store.shards[1], "victim", 6));
  assert_true(slot >= 0);
  off_t offset = (off_t)((uint8_t *)&store.shards[1].slots[slot].value - store.base);
  tally_store_close(&store);
  uint8_t byte = 0x55;
  patch_file(offset + 1, &byte, 1);
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(store.recovery.shards[1].slots_quarantined, 1);
  assert_int_equal(store.recovery.shards[1].counters_used, 2);
  assert_int_equal(value_of(&store.shards[1], "victim"), INT64_MIN);
  assert_int_equal(value_of(&store.shards[1], "bystander"), 1);
  tally_store_close(&store);
}

/* ---- Persistence modes ------------------------------------------------------ */

static void test_per_burst_refused_on_a_file(void **state)
{
  (void)state;
  open_fails(&geometry_small, TALLY_PERSIST_PER_BURST,
    "store.persist = per_burst needs byte or cache-line granularity");
  assert_false(exists(path));
  char creating[160];
  snprintf(creating, sizeof(creating), "%s.creating", path);
  assert_false(exists(creating));
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  tally_store_close(&store);
  open_fails(&geometry_small, TALLY_PERSIST_PER_BURST, "this mapping is page granularity");
}

/* libpmem2's test switch makes a file look like cache-line pmem. */
static void test_per_burst_with_forced_granularity(void **state)
{
  (void)state;
  assert_int_equal(setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 1), 0);
  static struct tally_store store;
  open_ok(&store, &geometry_small, TALLY_PERSIST_AUTO);
  assert_int_equal(store.mode, TALLY_PERSIST_PER_BURST);
  assert_string_equal(store.granularity_name, "cache line");
  assert_non_null(store.shards[0].flush);
  assert_non_null(store.shards[0].drain);
  assert_int_equal(add(&store.shards[0], "fine", 3), TALLY_OK);
  struct tally_wire_batch batch = {.producer = 8, .seq = 1, .count = 1};
  batch.pairs[0] = (struct tally_wire_pair){.name = "fine", .name_len = 4, .delta = 4};
  enum tally_reason reason;
  assert_int_equal(tally_shard_apply_batch(&store.shards[0], &batch, &reason),
    TALLY_ACK_APPLIED);
  store.shards[0].drain();
  tally_store_close(&store);
  open_ok(&store, &geometry_small, TALLY_PERSIST_PER_BURST);
  assert_int_equal(value_of(&store.shards[0], "fine"), 7);
  tally_store_close(&store);
  assert_int_equal(unsetenv("PMEM2_FORCE_GRANULARITY"), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_create_and_reopen, setup, teardown),
    cmocka_unit_test_setup_teardown(test_second_opener_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_tables, setup, teardown),
    cmocka_unit_test(test_replica_producers_capacity),
    cmocka_unit_test_setup_teardown(test_compensation_shard_count, setup, teardown),
    cmocka_unit_test_setup_teardown(test_old_layout_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_name_key_per_store, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_bind, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_rebind_after_reopen, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_directory_full, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_directory_corrupt, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_bind_interrupted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_corrupt_told_apart, setup, teardown),
    cmocka_unit_test_setup_teardown(test_unclean_exit_keeps_everything, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill_during_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_invalid_geometry_creates_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_geometry_mismatch, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_superblock, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_shard_header, setup, teardown),
    cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
    cmocka_unit_test_setup_teardown(test_symlink_and_foreign_owner_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_corrupt_slot_reported, setup, teardown),
    cmocka_unit_test_setup_teardown(test_per_burst_refused_on_a_file, setup, teardown),
    cmocka_unit_test_setup_teardown(test_per_burst_with_forced_granularity, setup, teardown),
  };
  size_t total = sizeof(tests) / sizeof(tests[0]);
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%zu passed, %d failed\n", total - (size_t)failed, failed);
  return failed == 0 ? 0 : 1;
}
