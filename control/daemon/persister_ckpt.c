/*
 * persister_ckpt.c — log mode's checkpoints (persister_ckpt.h): when to
 * begin one and with which begin_lsn, its steps between log rounds, the
 * wait for applies in flight and the last drain that give end_lsn, the log
 * cut behind the oldest kept checkpoint; and at start-up the load of the
 * newest valid one into a new image (torn values settled, the store
 * reopened on those bytes). Why replaying from begin_lsn + 1 onto the fuzzy
 * copy is exact: docs/store-layout.md, "Log mode: checkpoints".
 *
 * Thread: create, load and destroy on the main thread at start-up and
 * shutdown; tick on the persister; metrics on the control and HTTP threads.
 */
#include "persister_ckpt.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "lcore.h"
#include "log_ring.h"
#include "persister_log.h"
#include "store_format.h"
#include "wal_queue.h"

struct tally_ckpt {
  struct tally_disk *disk;
  struct tally_checkpoint_writer *writer;
  uint32_t image_format;
  uint64_t due_ns;     /* monotonic: when the next checkpoint begins */
  uint64_t started_ns; /* monotonic: when the one in flight began */
};

static void stat_store(uint64_t *stat, uint64_t value)
{
  __atomic_store_n(stat, value, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *stat)
{
  return __atomic_load_n(stat, __ATOMIC_RELAXED);
}

/* The image's layout and geometry as one tag: a checkpoint of another one is refused. */
static uint32_t image_format(const struct tally_store *store)
{
  const uint64_t words[] = { TALLY_STORE_LAYOUT_VERSION, store->geometry.shard_count,
    store->geometry.counters_max, store->geometry.producers_max,
    store->geometry.replica_count, store->size };
  uint32_t hash = 2166136261u; /* FNV-1a */
  const uint8_t *bytes = (const uint8_t *)words;
  for (size_t i = 0; i < sizeof words; i++) hash = (hash ^ bytes[i]) * 16777619u;
  return hash != 0 ? hash : 1u; /* 0 would mean "any" to the loader */
}

static uint64_t interval_ns(const struct tally_appliance *appliance)
{
  return (uint64_t)appliance->config.checkpoint_interval_ms * 1000000ull;
}

struct tally_ckpt *tally_ckpt_create(struct tally_appliance *appliance, struct tally_disk *disk,
  char *error, size_t error_size)
{
  struct tally_ckpt *ckpt = calloc(1, sizeof *ckpt);
  if (ckpt == NULL) {
    snprintf(error, error_size, "store.log_dir: out of memory");
    return NULL;
  }
  ckpt->disk = disk;
  ckpt->image_format = image_format(&appliance->store);
  struct tally_checkpoint_options options;
  tally_checkpoint_options_default(&options);
  options.sync_bytes = TALLY_CHECKPOINT_STEP_BYTES; /* one fdatasync at most per step */
  options.image_format = ckpt->image_format;
  ckpt->writer = tally_checkpoint_writer_create(disk, &options, error, error_size);
  if (ckpt->writer == NULL) {
    free(ckpt);
    return NULL;
  }
  ckpt->due_ns = tally_clock_mono_ns() + interval_ns(appliance);
  stat_store(&appliance->log_stats.started_unix_ns, tally_clock_unix_ns());
  return ckpt;
}

void tally_ckpt_destroy(struct tally_ckpt *ckpt)
{
  if (ckpt == NULL) return;
  tally_checkpoint_writer_destroy(ckpt->writer); /* cancels one in flight */
  free(ckpt);
}

/* ---- Start-up: load ---------------------------------------------------------- */

/* Settles the fuzzy copy's torn values, then reopens the store on the loaded bytes. */
static int reopen_on_copy(struct tally_appliance *appliance, char *error, size_t error_size)
{
  struct tally_store *store = &appliance->store;
  uint64_t settled = 0;
  for (uint32_t s = 0; s < store->geometry.shard_count; s++) {
    settled += tally_shard_settle_copy(&store->shards[s]);
  }
  appliance->log_stats.checkpoint_settled = settled;
  struct tally_store_geometry geometry = store->geometry;
  tally_store_close(store);
  return tally_store_open(store, appliance->config.store_path, &geometry, TALLY_PERSIST_LOG,
    error, error_size);
}

int tally_ckpt_load(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  uint64_t *from_lsn, char *error, size_t error_size)
{
  const char *dir = appliance->config.log_dir;
  struct tally_checkpoint_reader *reader = tally_checkpoint_reader_create();
  if (reader == NULL) {
    snprintf(error, error_size, "store.log_dir %s: out of memory", dir);
    return -1;
  }
  struct tally_checkpoint_recovery recovery;
  enum tally_checkpoint_status status = tally_checkpoint_load(reader, ckpt->disk,
    appliance->store.base, appliance->store.size, ckpt->image_format, &recovery);
  tally_checkpoint_reader_destroy(reader);
  *from_lsn = 1u;
  if (status == TALLY_CHECKPOINT_NONE) return 0;
  if (recovery.report[0] != '\0') {
    fprintf(stderr, "tallyd: store.log_dir %s: checkpoints rejected: %s\n", dir, recovery.report);
  }
  if (status == TALLY_CHECKPOINT_CORRUPT && recovery.first_rejection ==
    TALLY_CHECKPOINT_REJECT_REFUSED) {
    snprintf(error, error_size, "store.log_dir %s: the checkpoints hold an image of another "
      "store layout or geometry (store.counters_max, store.producers_max, eal.args lcores "
      "changed?): start with the old values, or move the checkpoints and the log aside", dir);
    return -1;
  }
  if (status != TALLY_CHECKPOINT_OK) {
    snprintf(error, error_size, "store.log_dir %s: checkpoints: %s (%u found, none usable)", dir,
      tally_checkpoint_status_name(status), recovery.found);
    return -1;
  }
  if (reopen_on_copy(appliance, error, error_size) != 0) return -1;
  tally_checkpoint_writer_trust(ckpt->writer, &recovery);
  appliance->log_stats.checkpoint_loaded_lsn = recovery.header.begin_lsn;
  appliance->log_stats.checkpoint_loaded = true;
  *from_lsn = recovery.header.begin_lsn + 1u;
  fprintf(stderr, "tallyd: store.log_dir %s: loaded checkpoint %s (log %" PRIu64 "..%" PRIu64
    ", %" PRIu64 " torn values settled); replaying the log after it\n", dir, recovery.name,
    recovery.header.begin_lsn, recovery.header.end_lsn, appliance->log_stats.checkpoint_settled);
  return 0;
}

/* ---- Persister: write ---------------------------------------------------------- */

static void failed(struct tally_appliance *appliance, const char *what)
{
  struct tally_log_stats *stats = &appliance->log_stats;
  stat_store(&stats->checkpoints_failed, stats->checkpoints_failed + 1u);
  fprintf(stderr, "tallyd: store.log_dir %s: checkpoint %s failed; the log is kept whole, "
    "next attempt in store.checkpoint_interval_ms\n", appliance->config.log_dir, what);
}

/* Drains and commits every ring: then every record handed over is durable. */
static bool drain_all(struct tally_appliance *appliance)
{
  (void)tally_log_round(appliance);
  return load(&appliance->log_stats.failed) == 0;
}

static void begin(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  struct tally_wal *wal)
{
  uint64_t now_ns = tally_clock_mono_ns();
  __atomic_store_n(&ckpt->due_ns, now_ns + interval_ns(appliance), __ATOMIC_RELAXED);
  if (!drain_all(appliance)) return;
  /* Every record <= begin_lsn was applied before it was handed over: its effect is in. */
  uint64_t begin_lsn = tally_wal_durable_lsn(wal);
  if (!tally_log_marks(appliance)) return; /* begin_lsn + 1: what the log held per shard */
  assert(tally_wal_durable_lsn(wal) == begin_lsn + 1u);
  int rc = tally_checkpoint_writer_begin(ckpt->writer, appliance->store.base,
    appliance->store.size, begin_lsn, tally_clock_unix_ns());
  if (rc != 0) {
    failed(appliance, "begin");
    return;
  }
  ckpt->started_ns = now_ns;
}

/*
 * An apply may have stored into the image (and the copy) before its record
 * reached the ring: wait until every apply that began before the copy
 * ended has pushed its record (one apply: microseconds), then drain.
 */
static void wait_applies(struct tally_appliance *appliance)
{
  const struct timespec pause = { .tv_sec = 0, .tv_nsec = TALLY_LOG_IDLE_SLEEP_US * 1000l };
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    const struct tally_log_ring *ring = appliance->lcores[i].log_ring;
    uint64_t entered = tally_log_ring_entered(ring);
    while (!tally_log_ring_left(ring, entered)) nanosleep(&pause, NULL);
  }
  /* A cluster node: the cluster thread's change in flight, the same way (wal_queue.h). */
  const struct tally_wal_queue *queue = appliance->cluster_log_queue;
  if (queue == NULL) return;
  uint64_t entered = tally_wal_queue_entered(queue);
  while (!tally_wal_queue_left(queue, entered)) nanosleep(&pause, NULL);
}

static void finish(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  struct tally_wal *wal)
{
  wait_applies(appliance);
  if (!drain_all(appliance)) {
    tally_checkpoint_writer_cancel(ckpt->writer);
    return;
  }
  uint64_t end_lsn = tally_wal_durable_lsn(wal); /* every effect in the copy is <= here */
  struct tally_checkpoint_done done;
  if (tally_checkpoint_writer_finish(ckpt->writer, end_lsn, &done) != TALLY_CHECKPOINT_OK) {
    failed(appliance, "finish");
    return;
  }
  struct tally_log_stats *stats = &appliance->log_stats;
  stat_store(&stats->checkpoint_last_ns, tally_clock_mono_ns() - ckpt->started_ns);
  stat_store(&stats->checkpoint_last_bytes, done.file_size);
  stat_store(&stats->checkpoint_last_unix_ns, tally_clock_unix_ns());
  stat_store(&stats->checkpoints_finished, stats->checkpoints_finished + 1u);
  /* Never past the oldest kept checkpoint's begin_lsn: recovery may fall back to it; and
   * never past a backup's hold: its next incremental starts after that LSN. */
  uint64_t cut_lsn = done.cut_lsn;
  uint64_t hold_lsn = load(&stats->backup_hold_lsn);
  if (hold_lsn != 0 && hold_lsn < cut_lsn) cut_lsn = hold_lsn;
  if (tally_wal_cut(wal, cut_lsn) != TALLY_WAL_OK) {
    fprintf(stderr, "tallyd: store.log_dir %s: cutting the log through %" PRIu64 " failed "
      "(tried again after the next checkpoint)\n", appliance->config.log_dir, cut_lsn);
  }
}

bool tally_ckpt_tick(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  struct tally_wal *wal)
{
  if (load(&appliance->log_stats.failed) != 0) return false;
  struct tally_checkpoint_writer *writer = ckpt->writer;
  if (!tally_checkpoint_writer_active(writer)) {
    /* tallyctl checkpoint (a backup wants a fresh one): now, even with the interval 0. */
    if (__atomic_exchange_n(&appliance->log_stats.checkpoint_requested, 0, __ATOMIC_RELAXED)) {
      __atomic_store_n(&ckpt->due_ns, 0, __ATOMIC_RELAXED);
    } else if (appliance->config.checkpoint_interval_ms == 0) {
      return false;
    }
    if (tally_clock_mono_ns() < __atomic_load_n(&ckpt->due_ns, __ATOMIC_RELAXED)) return false;
    begin(ckpt, appliance, wal);
    return true;
  }
  enum tally_checkpoint_status status =
    tally_checkpoint_writer_step(writer, TALLY_CHECKPOINT_STEP_BYTES);
  if (status == TALLY_CHECKPOINT_OK) {
    finish(ckpt, appliance, wal);
  } else if (status != TALLY_CHECKPOINT_MORE) {
    failed(appliance, "write");
  }
  stat_store(&appliance->log_stats.checkpoint_bytes_written,
    tally_checkpoint_writer_stats(writer)->bytes_written);
  return true;
}

void tally_ckpt_request(struct tally_ckpt *ckpt)
{
  __atomic_store_n(&ckpt->due_ns, 0, __ATOMIC_RELAXED); /* (the start-up thread may ask) */
}

/* ---- Figures ------------------------------------------------------------------- */

/* Seconds since the last checkpoint became durable (since the start before the first). */
static double age_seconds(const struct tally_log_stats *stats)
{
  uint64_t last = load(&stats->checkpoint_last_unix_ns);
  if (last == 0) last = load(&stats->started_unix_ns);
  uint64_t now = tally_clock_unix_ns();
  return now > last ? (double)(now - last) / 1e9 : 0.0;
}

void tally_ckpt_stats_lines(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_log_stats *stats = &appliance->log_stats;
  tally_out_printf(out, "checkpoints_finished %" PRIu64 "\ncheckpoints_failed %" PRIu64 "\n"
    "checkpoint_age_seconds %.3f\ncheckpoint_last_duration_ns %" PRIu64 "\n"
    "checkpoint_last_bytes %" PRIu64 "\ncheckpoint_bytes_written %" PRIu64 "\n"
    "checkpoint_loaded_lsn %" PRIu64 "\nstatsd_window_ms %u\nbackup_hold_lsn %" PRIu64 "\n",
    load(&stats->checkpoints_finished),
    load(&stats->checkpoints_failed), age_seconds(stats), load(&stats->checkpoint_last_ns),
    load(&stats->checkpoint_last_bytes), load(&stats->checkpoint_bytes_written),
    stats->checkpoint_loaded_lsn, appliance->config.checkpoint_interval_ms,
    load(&stats->backup_hold_lsn));
}

static void gauge(struct tally_out *out, const char *name, const char *type, const char *help,
  double value)
{
  tally_out_printf(out, "# HELP tally_%s %s\n# TYPE tally_%s %s\ntally_%s %.9g\n", name, help,
    name, type, name, value);
}

void tally_ckpt_metrics(struct tally_appliance *appliance, struct tally_out *out)
{
  const struct tally_log_stats *stats = &appliance->log_stats;
  gauge(out, "checkpoint_age_seconds", "gauge",
    "seconds since the last checkpoint became durable (since the start before the first)",
    age_seconds(stats));
  gauge(out, "checkpoint_last_duration_seconds", "gauge",
    "the last checkpoint, from its begin to durable",
    (double)load(&stats->checkpoint_last_ns) / 1e9);
  gauge(out, "checkpoint_last_bytes", "gauge", "the last checkpoint's file size",
    (double)load(&stats->checkpoint_last_bytes));
  gauge(out, "checkpoints_finished_total", "counter", "checkpoints made durable",
    (double)load(&stats->checkpoints_finished));
  gauge(out, "checkpoints_failed_total", "counter", "checkpoint attempts abandoned on an error",
    (double)load(&stats->checkpoints_failed));
  gauge(out, "checkpoint_written_bytes_total", "counter", "checkpoint file bytes written",
    (double)load(&stats->checkpoint_bytes_written));
  gauge(out, "statsd_window_seconds", "gauge", "statsd increments reach the disk only with "
    "checkpoints: what a power loss may lose (store.checkpoint_interval_ms; 0: no checkpoints)",
    (double)appliance->config.checkpoint_interval_ms / 1e3);
}
