/*
 * persister_log.c — log mode's persister (persister_log.h): recovery at
 * start-up (scan the write-ahead log, redo what the image lacks, log again
 * what the log lost), then rounds on the persister thread: drain each
 * lcore's ring in order, append each record, commit the group with one
 * pwrite + one fdatasync, and only then publish each lcore's durable_seq.
 *
 * The order acks rest on (asserted below):
 *   lcore:     apply the batch; fill its record; ring tail (release);
 *              applied_seq (release); later ack once durable_seq >= its seq
 *   persister: ring tail (acquire) -> read the records -> append -> commit
 *              (fdatasync returned 0) -> durable_seq (release)
 * so an lcore that sees durable_seq >= s (acquire) sees it only after the
 * record of batch s is on the media. Records carry applied_seq 1, 2, 3, ...
 * per lcore with no gap (one per applied batch, in order): the persister
 * asserts that, and publishes the applied_seq of the last committed record.
 *
 * Thread: tally_log_open / _close at start-up and shutdown (main thread),
 * tally_log_round / _loop on the persister, metrics on control and HTTP.
 */
#include "persister_log.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>

#include "disk_io.h"
#include "lcore.h"
#include "log_ring.h"
#include "cluster_replay.h"
#include "log_effect.h"
#include "persister_ckpt.h"
#include "tally/name.h"
#include "wal.h"
#include "wal_batch.h"
#include "wal_cluster.h"
#include "wal_queue.h"

struct tally_log {
  struct tally_disk disk;
  struct tally_disk_posix posix;
  struct tally_wal wal;
  bool wal_open;
  /* Per lcore: applied_seq of the last record appended, and of the last one committed. */
  uint64_t appended[TALLY_LCORES_MAX];
  uint64_t committed[TALLY_LCORES_MAX];
  /* The highest batch_seq the log holds per shard (recovery, then every append). */
  uint64_t logged_batch_seq[TALLY_LCORES_MAX];
  /* Recovery from a checkpoint: the marks record after its begin_lsn was met. */
  bool checkpoint_loaded;
  bool marks_seen;
  uint64_t from_lsn;
  struct tally_ckpt *ckpt;
  struct tally_wal_scanner *scanner;
  char *error;
  size_t error_size;
  uint8_t payload[TALLY_WAL_BATCH_SIZE_MAX];
  struct tally_wal_batch batch;
  struct tally_shard_effect effect;
  /* A cluster node: the cluster thread's records (wal_queue.h), appended after the rings'. */
  bool cluster;
  struct tally_wal_queue cluster_queue;
  bool image_survived; /* recovery: cluster records are skipped (the image is newer) */
};

static const uint32_t commit_bucket_us[TALLY_LOG_COMMIT_BUCKETS] = TALLY_LOG_COMMIT_BUCKETS_US;

static void stat_store(uint64_t *stat, uint64_t value)
{
  __atomic_store_n(stat, value, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *stat)
{
  return __atomic_load_n(stat, __ATOMIC_RELAXED);
}

const char *tally_log_source_name(uint64_t source)
{
  static const char *const names[TALLY_LOG_SOURCE_COUNT] = {
    [TALLY_LOG_SOURCE_NEW] = "new",
    [TALLY_LOG_SOURCE_IMAGE] = "image",
    [TALLY_LOG_SOURCE_LOG] = "log",
    [TALLY_LOG_SOURCE_CHECKPOINT] = "checkpoint+log",
  };
  assert(source < TALLY_LOG_SOURCE_COUNT);
  return names[source];
}

/* ---- Writing ------------------------------------------------------------------ */

static void log_failed(struct tally_appliance *appliance, const char *what)
{
  struct tally_log *log = appliance->log;
  if (load(&appliance->log_stats.failed) == 0) {
    fprintf(stderr, "tallyd: store.log_dir %s: %s failed: %s; reliable acks stop (restart "
      "to recover from the disk)\n", appliance->config.log_dir, what,
      strerror(-log->wal.error));
  }
  stat_store(&appliance->log_stats.failed, 1);
}

/* One group commit, timed; on success every appended record is committed. */
static bool log_commit(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  struct tally_log_stats *stats = &appliance->log_stats;
  uint64_t start_ns = tally_clock_mono_ns();
  enum tally_wal_status status = tally_wal_commit(&log->wal);
  uint64_t duration_ns = tally_clock_mono_ns() - start_ns;
  if (status != TALLY_WAL_OK) {
    log_failed(appliance, "commit (pwrite + fdatasync)");
    return false;
  }
  assert(tally_wal_durable_lsn(&log->wal) + 1u == log->wal.lsn_next); /* all of it */
  memcpy(log->committed, log->appended, sizeof log->committed);
  uint32_t bucket = 0;
  while (bucket < TALLY_LOG_COMMIT_BUCKETS && duration_ns > commit_bucket_us[bucket] * 1000ull) {
    bucket++;
  }
  stat_store(&stats->commit_buckets[bucket], stats->commit_buckets[bucket] + 1u);
  stat_store(&stats->commit_ns_sum, stats->commit_ns_sum + duration_ns);
  if (duration_ns > stats->commit_ns_max) stat_store(&stats->commit_ns_max, duration_ns);
  stat_store(&stats->commits, stats->commits + 1u);
  stat_store(&stats->bytes_written, log->wal.bytes_written);
  return true;
}

/* Appends one effect, committing first when the group is full. */
static bool log_append(struct tally_appliance *appliance, const struct tally_shard_effect *effect)
{
  struct tally_log *log = appliance->log;
  tally_log_effect_to_batch(effect, &log->batch);
  size_t size = tally_wal_batch_encode(&log->batch, log->payload, sizeof log->payload);
  assert(size > 0); /* an effect the lcore filled is always a valid payload */
  enum tally_wal_status status =
    tally_wal_append(&log->wal, TALLY_WAL_TYPE_BATCH, log->payload, (uint32_t)size, NULL);
  if (status == TALLY_WAL_FULL) {
    if (!log_commit(appliance)) return false;
    status = tally_wal_append(&log->wal, TALLY_WAL_TYPE_BATCH, log->payload, (uint32_t)size, NULL);
  }
  if (status != TALLY_WAL_OK) {
    log_failed(appliance, "append");
    return false;
  }
  stat_store(&appliance->log_stats.records, appliance->log_stats.records + 1u);
  assert(effect->batch_seq > log->logged_batch_seq[effect->shard]); /* per shard, in order */
  log->logged_batch_seq[effect->shard] = effect->batch_seq;
  return true;
}

/*
 * Appends the marks record (each shard's last logged batch_seq) and commits
 * it: the first record after a checkpoint's begin_lsn. Recovery from that
 * checkpoint sets each shard's batch_seq to its mark (the copied header may
 * be ahead of the copied values), and any recovery knows from it what the
 * log held for a shard whose records were cut.
 */
bool tally_log_marks(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  uint8_t *out = log->payload;
  uint32_t count = appliance->lcore_count;
  size_t size = 8u + 8u * (size_t)count;
  static_assert(8u + 8u * TALLY_LCORES_MAX <= sizeof log->payload, "marks fit");
  for (uint32_t b = 0; b < 4; b++) out[b] = (uint8_t)(count >> (8u * b));
  memset(out + 4, 0, 4);
  for (uint32_t s = 0; s < count; s++) {
    uint64_t mark = log->logged_batch_seq[s];
    for (uint32_t b = 0; b < 8; b++) out[8u + 8u * s + b] = (uint8_t)(mark >> (8u * b));
  }
  enum tally_wal_status status =
    tally_wal_append(&log->wal, TALLY_WAL_TYPE_MARKS, out, (uint32_t)size, NULL);
  if (status == TALLY_WAL_FULL) {
    if (!log_commit(appliance)) return false;
    status = tally_wal_append(&log->wal, TALLY_WAL_TYPE_MARKS, out, (uint32_t)size, NULL);
  }
  if (status != TALLY_WAL_OK) {
    log_failed(appliance, "append");
    return false;
  }
  return log_commit(appliance);
}

/* Moves lcore i's ready records into the group; returns how many. */
static uint64_t drain_ring(struct tally_appliance *appliance, uint32_t i)
{
  struct tally_log *log = appliance->log;
  struct tally_log_ring *ring = appliance->lcores[i].log_ring;
  assert(ring != NULL);
  uint64_t ready = tally_log_ring_ready(ring); /* acquire: the records are whole */
  uint64_t taken = 0;
  while (taken < ready) {
    const struct tally_log_record *record = tally_log_ring_peek(ring, taken);
    /* One record per applied batch, in order: no gap, no repeat. */
    assert(record->applied_seq == log->appended[i] + 1u);
    assert(record->effect.shard == i);
    if (!log_append(appliance, &record->effect)) break;
    log->appended[i] = record->applied_seq;
    taken++;
  }
  tally_log_ring_pop(ring, taken); /* release: the slots may be reused */
  return taken;
}

/* Moves the cluster thread's ready records into the group; returns how many. */
static uint64_t drain_cluster(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  if (!log->cluster) return 0;
  uint64_t ready = tally_wal_queue_ready(&log->cluster_queue); /* acquire: whole payloads */
  uint64_t taken = 0;
  while (taken < ready) {
    const struct tally_wal_queue_slot *slot = tally_wal_queue_peek(&log->cluster_queue, taken);
    assert(tally_wal_cluster_check(slot->payload, slot->size) == TALLY_WAL_CLUSTER_OK);
    enum tally_wal_status status =
      tally_wal_append(&log->wal, TALLY_WAL_TYPE_CLUSTER, slot->payload, slot->size, NULL);
    if (status == TALLY_WAL_FULL) {
      if (!log_commit(appliance)) break;
      status = tally_wal_append(&log->wal, TALLY_WAL_TYPE_CLUSTER, slot->payload, slot->size,
        NULL);
    }
    if (status != TALLY_WAL_OK) {
      log_failed(appliance, "append");
      break;
    }
    stat_store(&appliance->log_stats.cluster_records, appliance->log_stats.cluster_records + 1u);
    taken++;
  }
  tally_wal_queue_pop(&log->cluster_queue, taken); /* release: the slots may be reused */
  return taken;
}

bool tally_log_round(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  assert(log != NULL && log->wal_open);
  assert(appliance->lcore_count >= 1u && appliance->lcore_count <= TALLY_LCORES_MAX);
  if (load(&appliance->log_stats.failed) != 0) return false; /* sticky: nothing is acked */
  uint64_t taken = 0;
  for (uint32_t i = 0; i < appliance->lcore_count; i++) taken += drain_ring(appliance, i);
  taken += drain_cluster(appliance);
  if (load(&appliance->log_stats.failed) != 0) return false;
  if (log->wal.group_records > 0 && !log_commit(appliance)) return false;
  /* Release, after the fdatasync: the cluster thread's deferred ACKs may go. */
  if (log->cluster) tally_wal_queue_set_durable(&log->cluster_queue);
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    struct tally_lcore *lcore = &appliance->lcores[i];
    assert(log->committed[i] == log->appended[i]);
    assert(log->committed[i] >= lcore->durable_seq); /* never backwards */
    /* Release, after the fdatasync that made these records durable returned. */
    __atomic_store_n(&lcore->durable_seq, log->committed[i], __ATOMIC_RELEASE);
  }
  struct tally_persister_stats *stats = &appliance->persister_stats;
  uint64_t now_ns = tally_clock_mono_ns();
  stat_store(&stats->last_commit_mono_ns, now_ns);
  stat_store(&stats->last_commit_unix_ns, tally_clock_unix_ns());
  stat_store(&stats->commits, stats->commits + 1u);
  return taken > 0;
}

void tally_log_checkpoint_request(struct tally_appliance *appliance)
{
  tally_ckpt_request(appliance->log->ckpt);
}

bool tally_log_checkpoint_tick(struct tally_appliance *appliance)
{
  return tally_ckpt_tick(appliance->log->ckpt, appliance, &appliance->log->wal);
}

int tally_log_checkpoint_wait(struct tally_appliance *appliance, char *error, size_t error_size)
{
  const struct tally_log_stats *stats = &appliance->log_stats;
  assert(appliance->config.checkpoint_interval_ms != 0); /* the config refuses 0 on a cluster */
  uint64_t finished = load(&stats->checkpoints_finished);
  uint64_t failed = load(&stats->checkpoints_failed);
  tally_ckpt_request(appliance->log->ckpt);
  const struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000l };
  while (load(&stats->checkpoints_finished) == finished) {
    if (load(&stats->checkpoints_failed) != failed || load(&stats->failed) != 0) {
      snprintf(error, error_size, "store.log_dir %s: the start-up checkpoint failed (see above)",
        appliance->config.log_dir);
      return -1;
    }
    nanosleep(&pause, NULL);
  }
  return 0;
}

void tally_log_loop(struct tally_appliance *appliance)
{
  const struct timespec idle = { .tv_sec = 0, .tv_nsec = TALLY_LOG_IDLE_SLEEP_US * 1000l };
  while (!__atomic_load_n(&appliance->persister_quit, __ATOMIC_RELAXED)) {
    bool worked = tally_log_round(appliance);
    /* A checkpoint's step between two rounds: acks keep flowing during it. */
    if (tally_log_checkpoint_tick(appliance)) worked = true;
    if (!worked) nanosleep(&idle, NULL);
  }
  (void)tally_log_round(appliance); /* what the stopped lcores left in their rings */
}

/* ---- Recovery ---------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static int recovery_error(struct tally_log *log, const char *format, ...)
{
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(log->error, log->error_size, format, arguments);
  va_end(arguments);
  return -1;
}

struct replay_context {
  struct tally_appliance *appliance;
  int failed;
};

/*
 * A marks record: what the log held per shard when a checkpoint began. The
 * first record replayed after a loaded checkpoint is its marks: each
 * shard's batch_seq is set to its mark, so every batch after it is redone
 * onto the fuzzy copy (docs/store-layout.md, "Log mode: checkpoints").
 */
static int replay_marks(struct replay_context *replay, const struct tally_wal_record *record)
{
  struct tally_appliance *appliance = replay->appliance;
  struct tally_log *log = appliance->log;
  const char *dir = appliance->config.log_dir;
  const uint8_t *in = record->payload;
  uint32_t count = 0;
  if (record->payload_size >= 8u) {
    for (uint32_t b = 0; b < 4; b++) count |= (uint32_t)in[b] << (8u * b);
  }
  if (record->payload_size < 8u || count != appliance->lcore_count ||
    record->payload_size != 8u + 8u * (uint64_t)count) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 ": marks for %u "
      "shards, this node has %u (eal.args lcores changed?)", dir, record->lsn, count,
      appliance->lcore_count);
    return 1;
  }
  bool first = log->checkpoint_loaded && record->lsn == log->from_lsn;
  for (uint32_t s = 0; s < count; s++) {
    uint64_t mark = 0;
    for (uint32_t b = 0; b < 8; b++) mark |= (uint64_t)in[8u + 8u * s + b] << (8u * b);
    if (mark > log->logged_batch_seq[s]) log->logged_batch_seq[s] = mark;
    if (first && !tally_shard_rewind(&appliance->store.shards[s], mark + 1u)) {
      replay->failed = recovery_error(log, "store.log_dir %s: the checkpoint's shard %u is at "
        "batch %" PRIu64 ", before the log's mark %" PRIu64 " (record %" PRIu64 ")", dir, s,
        tally_shard_batch_seq(&appliance->store.shards[s]), mark, record->lsn);
      return 1;
    }
  }
  if (first) log->marks_seen = true;
  return 0;
}

/*
 * A cluster record: redone onto an image rebuilt from a checkpoint or the
 * log; skipped on a surviving image, which holds everything the cluster
 * thread did (the start-up checkpoint makes that durable before the cluster
 * thread runs: docs/store-layout.md, "Log mode on a cluster node").
 */
static int replay_cluster(struct replay_context *replay, const struct tally_wal_record *record)
{
  struct tally_appliance *appliance = replay->appliance;
  struct tally_log *log = appliance->log;
  struct tally_log_stats *stats = &appliance->log_stats;
  if (!log->cluster) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 " is a cluster "
      "record and this node has no [cluster]", appliance->config.log_dir, record->lsn);
    return 1;
  }
  if (log->image_survived) {
    stat_store(&stats->records_skipped, stats->records_skipped + 1u);
    return 0;
  }
  struct tally_store *store = &appliance->store;
  assert(store->geometry.shard_count == appliance->lcore_count + 1u);
  char error[256];
  if (tally_cluster_record_replay(store, &store->shards[appliance->lcore_count], record->payload,
        record->payload_size, error, sizeof error) != 0) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 ": %s",
      appliance->config.log_dir, record->lsn, error);
    return 1;
  }
  stat_store(&stats->records_replayed, stats->records_replayed + 1u);
  return 0;
}

/* Replay visitor: redo a record the image lacks, skip one it holds. */
static int replay_record(void *context, const struct tally_wal_record *record)
{
  struct replay_context *replay = context;
  struct tally_appliance *appliance = replay->appliance;
  struct tally_log *log = appliance->log;
  const char *dir = appliance->config.log_dir;
  if (record->type == TALLY_WAL_TYPE_MARKS) return replay_marks(replay, record);
  if (log->checkpoint_loaded && !log->marks_seen) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 " follows the "
      "loaded checkpoint, its marks record does not (the log and the checkpoints disagree)",
      dir, record->lsn);
    return 1;
  }
  if (record->type == TALLY_WAL_TYPE_CLUSTER) return replay_cluster(replay, record);
  if (record->type != TALLY_WAL_TYPE_BATCH) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 " has type %u, this "
      "build reads %u", dir, record->lsn, record->type, TALLY_WAL_TYPE_BATCH);
    return 1;
  }
  enum tally_wal_batch_check check =
    tally_wal_batch_decode(record->payload, record->payload_size, &log->batch);
  if (check != TALLY_WAL_BATCH_OK || log->batch.shard >= appliance->lcore_count) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 ": %s", dir,
      record->lsn, check != TALLY_WAL_BATCH_OK ? tally_wal_batch_check_name(check) :
      "names a shard this node does not have (eal.args lcores changed?)");
    return 1;
  }
  tally_log_batch_to_effect(&log->batch, &log->effect);
  uint32_t shard = log->effect.shard;
  if (log->effect.batch_seq > log->logged_batch_seq[shard]) {
    log->logged_batch_seq[shard] = log->effect.batch_seq;
  }
  /* A shard's records are consecutive: a jump means the image lacks batches the log lost. */
  uint64_t image = tally_shard_batch_seq(&appliance->store.shards[shard]);
  if (log->effect.batch_seq > image + 1u) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 ": shard %u's "
      "image is at batch %" PRIu64 ", the log goes on from %" PRIu64 " (cut behind a newer "
      "checkpoint): move the image aside to recover from the checkpoint", dir, record->lsn,
      shard, image, log->effect.batch_seq);
    return 1;
  }
  bool replayed = false;
  enum tally_reason reason =
    tally_shard_replay(&appliance->store.shards[shard], &log->effect, &replayed);
  if (reason != TALLY_OK) {
    replay->failed = recovery_error(log, "store.log_dir %s: record %" PRIu64 " does not fit the "
      "image: %s (store.counters_max or store.producers_max lowered?)", dir, record->lsn,
      tally_reason_label(reason));
    return 1;
  }
  uint64_t *count = replayed ? &appliance->log_stats.records_replayed :
    &appliance->log_stats.records_skipped;
  stat_store(count, *count + 1u);
  return 0;
}

/* Re-log visitor: a batch the image holds that the log lost (the process was killed). */
static int relog_effect(void *context, const struct tally_shard_effect *effect)
{
  struct replay_context *relog = context;
  if (!log_append(relog->appliance, effect)) {
    relog->failed = recovery_error(relog->appliance->log, "store.log_dir %s: cannot append",
      relog->appliance->config.log_dir);
    return 1;
  }
  struct tally_log_stats *stats = &relog->appliance->log_stats;
  stat_store(&stats->records_relogged, stats->records_relogged + 1u);
  return 0;
}

/* Logs again, from the journal, the batches the image holds past the log's end. */
static int reconcile_ahead(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  struct replay_context relog = { .appliance = appliance, .failed = 0 };
  for (uint32_t s = 0; s < appliance->lcore_count; s++) {
    uint64_t image = tally_shard_batch_seq(&appliance->store.shards[s]);
    if (image <= log->logged_batch_seq[s]) continue;
    uint64_t missing = image - log->logged_batch_seq[s];
    if (tally_shard_effects_from_journal(&appliance->store.shards[s], missing, relog_effect,
          &relog) != 0) {
      return recovery_error(log, "store %s: shard %u holds %" PRIu64 " batches the log in %s "
        "lacks and its journal cannot rebuild them: move the image aside to rebuild it from "
        "the log (unacked batches are lost, acked ones are not)", appliance->config.store_path,
        s, missing, appliance->config.log_dir);
    }
    if (relog.failed != 0) return -1;
  }
  if (log->wal.group_records > 0 && !log_commit(appliance)) {
    return recovery_error(log, "store.log_dir %s: cannot commit the batches logged again",
      appliance->config.log_dir);
  }
  return 0;
}

static int log_recover(struct tally_appliance *appliance, uint64_t from_lsn)
{
  struct tally_log *log = appliance->log;
  const char *dir = appliance->config.log_dir;
  struct tally_wal_scan scan;
  enum tally_wal_status status = tally_wal_scan(log->scanner, &log->disk, from_lsn, &scan);
  if (status != TALLY_WAL_OK) {
    return recovery_error(log, "store.log_dir %s: %s: %s", dir, tally_wal_status_name(status),
      scan.error);
  }
  if (scan.torn) {
    fprintf(stderr, "tallyd: store.log_dir %s: torn tail dropped: %" PRIu64 " bytes, %u records "
      "(an unacknowledged group)\n", dir, scan.torn_bytes, scan.torn_records);
  }
  struct replay_context replay = { .appliance = appliance, .failed = 0 };
  char error[192];
  status = tally_wal_replay(log->scanner, &log->disk, &scan, replay_record, &replay, error,
    sizeof error);
  if (replay.failed != 0) return -1;
  if (status != TALLY_WAL_OK) {
    return recovery_error(log, "store.log_dir %s: replay: %s", dir, error);
  }
  struct tally_wal_options options = {
    .segment_size = appliance->config.log_segment_bytes,
    .group_size = appliance->config.log_group_bytes,
  };
  if (tally_wal_open(&log->wal, &log->disk, &options, &scan, error, sizeof error) != 0) {
    return recovery_error(log, "store.log_dir %s: %s", dir, error);
  }
  log->wal_open = true;
  return reconcile_ahead(appliance);
}

/*
 * A surviving image holds every record the log held before its oldest
 * segment (a checkpoint covered them before the log was cut): replay starts
 * at the oldest segment's first LSN (1 if there is none). 0 if the
 * directory cannot be listed.
 */
static uint64_t oldest_lsn(struct tally_log *log)
{
  uint32_t names_max = TALLY_WAL_SEGMENTS_MAX + 64u;
  char (*names)[TALLY_DISK_NAME_SIZE_MAX] = malloc(names_max * sizeof *names);
  if (names == NULL) return 0;
  int count = log->disk.ops->list(log->disk.context, names, names_max);
  uint64_t oldest = count < 0 ? 0 : UINT64_MAX;
  for (int i = 0; i < count; i++) {
    uint64_t lsn;
    if (tally_wal_segment_parse(names[i], &lsn) && lsn < oldest) oldest = lsn;
  }
  free(names);
  return oldest == UINT64_MAX ? 1u : oldest;
}

/* The image should live on memory that outlives the process but never writes back. */
static void check_image_filesystem(const struct tally_appliance *appliance)
{
  struct statfs status;
  if (statfs(appliance->config.store_path, &status) != 0) return;
  if (status.f_type == TMPFS_MAGIC || status.f_type == HUGETLBFS_MAGIC) return;
  fprintf(stderr, "tallyd: store.path %s is not on tmpfs or hugetlbfs: with store.persist = "
    "log the kernel's writeback of the image still write-protects the lcores' pages\n",
    appliance->config.store_path);
}

int tally_log_open(struct tally_appliance *appliance, char *error, size_t error_size)
{
  assert(appliance->store.mode == TALLY_PERSIST_LOG);
  assert(appliance->log == NULL);
  assert(appliance->lcore_count <= TALLY_LCORES_MAX);
  struct tally_log *log = calloc(1, sizeof *log);
  if (log == NULL) {
    snprintf(error, error_size, "store.log_dir: out of memory");
    return -1;
  }
  appliance->log = log;
  log->error = error;
  log->error_size = error_size;
  check_image_filesystem(appliance);
  if (tally_disk_posix_open(&log->disk, &log->posix, appliance->config.log_dir, error,
        error_size) != 0) {
    return -1;
  }
  log->scanner = tally_wal_scanner_create();
  if (log->scanner == NULL) return recovery_error(log, "store.log_dir: out of memory");
  log->ckpt = tally_ckpt_create(appliance, &log->disk, error, error_size);
  if (log->ckpt == NULL) return -1;
  uint64_t start_ns = tally_clock_mono_ns();
  bool image_survived = !appliance->store.recovery.created;
  log->image_survived = image_survived;
  log->cluster = appliance->config.cluster.enabled;
  if (log->cluster) {
    if (tally_wal_queue_open(&log->cluster_queue) != 0) {
      return recovery_error(log, "store.log_dir: out of memory");
    }
    appliance->cluster_log_queue = &log->cluster_queue;
  }
  uint64_t from_lsn = image_survived ? oldest_lsn(log) : 1u;
  if (from_lsn == 0) return recovery_error(log, "store.log_dir %s: cannot list it",
    appliance->config.log_dir);
  if (!image_survived &&
    tally_ckpt_load(log->ckpt, appliance, &from_lsn, error, error_size) != 0) {
    return -1;
  }
  log->from_lsn = image_survived ? 1u : from_lsn;
  /* A checkpoint's begin_lsn may be 0 (a cluster node's first, taken at its first start). */
  log->checkpoint_loaded = !image_survived && appliance->log_stats.checkpoint_loaded;
  if (log_recover(appliance, from_lsn) != 0) return -1;
  struct tally_log_stats *stats = &appliance->log_stats;
  stats->recovery_source = image_survived ? TALLY_LOG_SOURCE_IMAGE :
    log->checkpoint_loaded ? TALLY_LOG_SOURCE_CHECKPOINT :
    stats->records_replayed > 0 ? TALLY_LOG_SOURCE_LOG : TALLY_LOG_SOURCE_NEW;
  tally_wal_scanner_destroy(log->scanner);
  log->scanner = NULL;
  stats->recovery_ns = tally_clock_mono_ns() - start_ns;
  fprintf(stderr, "tallyd: log %s: recovered from %s: %" PRIu64 " records replayed, %" PRIu64
    " already in the image, %" PRIu64 " logged again from the image's journal, in %.3f ms\n",
    appliance->config.log_dir, tally_log_source_name(stats->recovery_source),
    stats->records_replayed, stats->records_skipped, stats->records_relogged,
    (double)stats->recovery_ns / 1e6);
  return 0;
}

void tally_log_close(struct tally_appliance *appliance)
{
  struct tally_log *log = appliance->log;
  if (log == NULL) return;
  tally_ckpt_destroy(log->ckpt);
  if (log->cluster) tally_wal_queue_close(&log->cluster_queue);
  appliance->cluster_log_queue = NULL;
  if (log->wal_open) tally_wal_close(&log->wal);
  if (log->scanner != NULL) tally_wal_scanner_destroy(log->scanner);
  tally_disk_posix_close(&log->posix);
  free(log);
  appliance->log = NULL;
}

/* ---- Figures ------------------------------------------------------------------- */

void tally_log_stats_lines(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_log_stats *stats = &appliance->log_stats;
  tally_out_printf(out, "log_records %" PRIu64 "\nlog_bytes_written %" PRIu64 "\n"
    "log_commits %" PRIu64 "\nlog_commit_ns_max %" PRIu64 "\nlog_failed %" PRIu64 "\n"
    "log_recovery_source %s\nlog_records_replayed %" PRIu64 "\nlog_records_skipped %" PRIu64
    "\nlog_records_relogged %" PRIu64 "\nlog_recovery_ns %" PRIu64 "\nlog_cluster_records %"
    PRIu64 "\n", load(&stats->records),
    load(&stats->bytes_written), load(&stats->commits), load(&stats->commit_ns_max),
    load(&stats->failed), tally_log_source_name(stats->recovery_source), stats->records_replayed,
    stats->records_skipped, stats->records_relogged, stats->recovery_ns,
    load(&stats->cluster_records));
  tally_ckpt_stats_lines(appliance, out);
}

static void metric(struct tally_out *out, const char *name, const char *type, const char *help,
  uint64_t value)
{
  tally_out_printf(out, "# HELP tally_%s %s\n# TYPE tally_%s %s\ntally_%s %" PRIu64 "\n", name,
    help, name, type, name, value);
}

void tally_log_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_log_stats *stats = &appliance->log_stats;
  tally_out_printf(out, "# HELP tally_log_commit_seconds one log group commit: pwrite, then "
    "fdatasync\n# TYPE tally_log_commit_seconds histogram\n");
  uint64_t cumulative = 0;
  for (uint32_t b = 0; b < TALLY_LOG_COMMIT_BUCKETS; b++) {
    cumulative += load(&stats->commit_buckets[b]);
    tally_out_printf(out, "tally_log_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
      (double)commit_bucket_us[b] / 1e6, cumulative);
  }
  cumulative += load(&stats->commit_buckets[TALLY_LOG_COMMIT_BUCKETS]);
  tally_out_printf(out, "tally_log_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
    "tally_log_commit_seconds_sum %.9f\ntally_log_commit_seconds_count %" PRIu64 "\n", cumulative,
    (double)load(&stats->commit_ns_sum) / 1e9, cumulative);
  metric(out, "log_records_total", "counter", "batch records appended to the log",
    load(&stats->records));
  metric(out, "log_written_bytes_total", "counter", "bytes written to the log",
    load(&stats->bytes_written));
  if (appliance->log->cluster) {
    metric(out, "log_cluster_records_total", "counter", "cluster records appended to the log "
      "(replica tables, undos, keeper claims)", load(&stats->cluster_records));
    metric(out, "log_cluster_queue_waits_total", "counter", "times the cluster thread found "
      "the persister's queue full and waited", load(&appliance->log->cluster_queue.waits));
  }
  metric(out, "log_failed", "gauge", "1 once a log write or fdatasync failed (acks stopped)",
    load(&stats->failed));
  metric(out, "log_records_replayed", "gauge", "log records redone onto the image at start",
    stats->records_replayed);
  metric(out, "log_records_relogged", "gauge",
    "batches the image held and the log lacked, logged again at start", stats->records_relogged);
  tally_out_printf(out, "# HELP tally_log_recovery_seconds the log's part of the last start "
    "(scan, replay, re-log)\n# TYPE tally_log_recovery_seconds gauge\n"
    "tally_log_recovery_seconds %.6f\n", (double)stats->recovery_ns / 1e9);
  tally_out_printf(out, "# HELP tally_log_recovery_source where start-up took the image from\n"
    "# TYPE tally_log_recovery_source gauge\n");
  for (uint64_t s = 0; s < TALLY_LOG_SOURCE_COUNT; s++) {
    tally_out_printf(out, "tally_log_recovery_source{source=\"%s\"} %d\n",
      tally_log_source_name(s), stats->recovery_source == s ? 1 : 0);
  }
  tally_ckpt_metrics(appliance, out);
}
