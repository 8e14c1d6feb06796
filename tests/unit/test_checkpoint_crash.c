/*
 * test_checkpoint_crash.c — the checkpoints' seeded crash-point harness (in
 * the style of test_wal_crash.c, after ALICE and TigerBeetle's storage fault
 * injection): for each point a fresh simulated disk (disk_sim.c) and a seed;
 * checkpoints of an image that changes between steps (the fuzzy copy), some
 * cancelled; the power lost after a random number of I/O calls (mid-write,
 * mid-sync, mid-rename, mid-retention) in one of the simulator's modes
 * (process kill, unsynced writes dropped, a seeded subset of sectors and a
 * prefix of name changes kept, the last sector torn, a synced bit rotted);
 * recovery; then, against an independent model of what was copied and of
 * what retention must keep:
 *   - the chosen checkpoint is the first, newest first, that exists and is
 *     not rotted of: the one in flight (once its finish was called: renamed
 *     before the crash), then every finished one. Never a corrupt one;
 *     NONE or CORRUPT only when none of them is left;
 *   - its bytes are byte-identical to the image as the steps copied it, its
 *     LSNs those given to begin and finish;
 *   - exactly the rotted files newer than it are rejected;
 *   - the last good checkpoint is always kept: the newest finished one, and
 *     the previous one each finish kept (the one this writer finished
 *     before, or the one recovery loaded and the new writer was told to
 *     trust), exist unless rotted;
 *   - after every finish that returned OK with its deletions done, at most
 *     two checkpoints and no temporary file remain, and cut_lsn is the kept
 *     previous one's begin_lsn.
 * Several crash cycles per point, each a restart: a new writer, told what
 * recovery loaded. Rotted files stay on the disk for the next cycles.
 *
 * Points: TALLY_CHECKPOINT_CRASH_POINTS (default 2000, the CI bound; raise
 * it for a soak), seeds from TALLY_TEST_SEED (default 1): prints both; a
 * failure prints the point's seed, and TALLY_TEST_SEED=<seed>
 * TALLY_CHECKPOINT_CRASH_POINTS=1 replays it alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "disk_sim.h"
#include "seeded.h"

#define CRASH_POINTS_DEFAULT 2000u
#define CHUNK 4096u
#define IMAGE_MAX (12u * CHUNK + 2000u)
#define CYCLES_MAX 4u
#define CHECKPOINTS_PER_CYCLE_MAX 6u
#define HISTORY_MAX (CYCLES_MAX * (CHECKPOINTS_PER_CYCLE_MAX + 1u))
#define OPERATIONS_MAX 160u

/* One checkpoint as the model knows it: what its steps copied, and whether it must exist. */
struct model_checkpoint {
  char name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t begin_lsn, end_lsn, size;
  bool kept; /* the newest finished one, or the previous one its successor's retention kept */
  uint8_t bytes[IMAGE_MAX];
};

struct model {
  uint64_t rng;
  uint64_t lsn;
  uint8_t image[IMAGE_MAX];
  uint64_t image_size;
  struct model_checkpoint history[HISTORY_MAX]; /* every finished checkpoint, oldest first */
  uint32_t history_count;
  int32_t trusted;  /* the history index the writer keeps as the previous one; -1: unknown */
  struct model_checkpoint flight; /* begun ... */
  bool flight_finishing;          /* ... and its finish called: its rename may be on the disk */
  char rotted[CYCLES_MAX][TALLY_DISK_NAME_SIZE_MAX];
  uint32_t rotted_count;
};

struct totals {
  uint64_t points, cycles, finished, cancelled, chose_flight, chose_last, chose_older;
  uint64_t none, corrupt, rejected;
  uint64_t by_mode[TALLY_DISK_SIM_MODE_COUNT];
};

static struct model model;
static struct totals totals;
static struct tally_checkpoint_reader *reader;
static uint8_t loaded[IMAGE_MAX];

static uint64_t next_random(void)
{
  return seeded_next(&model.rng);
}

/* The other threads write on: a few random runs of the image change. */
static void mutate_image(void)
{
  uint32_t runs = 1u + (uint32_t)(next_random() % 4u);
  for (uint32_t i = 0; i < runs; i++) {
    uint64_t at = next_random() % model.image_size;
    uint64_t length = 1u + next_random() % 64u;
    for (uint64_t j = at; j < at + length && j < model.image_size; j++) {
      model.image[j] = (uint8_t)next_random();
    }
  }
}

/* ---- The workload ----------------------------------------------------------- */

/* Checkpoint files in the directory now, and the highest final sequence; -1: no power. */
static int64_t count_files(struct tally_disk *disk, uint32_t *finals, uint32_t *temporaries)
{
  static char names[TALLY_DISK_SIM_FILES_MAX][TALLY_DISK_NAME_SIZE_MAX];
  int count = disk->ops->list(disk->context, names, TALLY_DISK_SIM_FILES_MAX);
  *finals = *temporaries = 0;
  if (count < 0) return -1;
  uint64_t sequence_max = 0;
  for (int i = 0; i < count; i++) {
    uint64_t lsn, sequence;
    bool temporary;
    if (!tally_checkpoint_name_parse(names[i], &lsn, &sequence, &temporary)) continue;
    if (temporary) (*temporaries)++;
    else (*finals)++;
    if (!temporary && sequence > sequence_max) sequence_max = sequence;
  }
  return (int64_t)sequence_max;
}

static bool model_rotted(const char *name)
{
  for (uint32_t i = 0; i < model.rotted_count; i++) {
    if (strcmp(model.rotted[i], name) == 0) return true;
  }
  return false;
}

/* The in-flight checkpoint is finished: the newest in the history, kept with the trusted one. */
static void model_finish(void)
{
  assert_true(model.history_count < HISTORY_MAX);
  for (uint32_t i = 0; i < model.history_count; i++) {
    model.history[i].kept = model.trusted >= 0 && (uint32_t)model.trusted == i;
  }
  model.history[model.history_count] = model.flight;
  model.history[model.history_count].kept = true;
  model.trusted = (int32_t)model.history_count++;
  model.flight_finishing = false;
}

/* After a finish with its deletions done: two checkpoints at most, no temporary, the cut. */
static void check_retention(uint64_t seed, struct tally_disk *disk,
  const struct tally_checkpoint_done *done, int32_t trusted)
{
  uint32_t finals, temporaries;
  assert_true(count_files(disk, &finals, &temporaries) >= 0);
  if (finals > TALLY_CHECKPOINT_KEEP || temporaries != 0) {
    fail_msg("seed %llu: %u checkpoints and %u temporary files after a finish",
      (unsigned long long)seed, finals, temporaries);
  }
  if (trusted < 0 || model_rotted(model.history[trusted].name)) return;
  if (done->cut_lsn != model.history[trusted].begin_lsn) {
    fail_msg("seed %llu: cut_lsn %llu, the previous checkpoint begins at %llu",
      (unsigned long long)seed, (unsigned long long)done->cut_lsn,
      (unsigned long long)model.history[trusted].begin_lsn);
  }
}

/* One checkpoint in random steps, the image changing between them. false: stop (power gone). */
static bool one_checkpoint(uint64_t seed, struct tally_checkpoint_writer *writer,
  struct tally_disk *disk)
{
  mutate_image();
  model.lsn += next_random() % 5u;
  uint64_t begin_lsn = model.lsn;
  uint32_t finals, temporaries;
  /* Its name: the next sequence after the newest final one (begin removes temporary files). */
  int64_t sequence_max = count_files(disk, &finals, &temporaries);
  if (sequence_max < 0) return false; /* a cancel's unlink found the power gone */
  if (tally_checkpoint_writer_begin(writer, model.image, model.image_size, begin_lsn, 1) != 0) {
    return false;
  }
  struct model_checkpoint *flight = &model.flight;
  model.flight_finishing = false;
  flight->size = model.image_size;
  flight->begin_lsn = begin_lsn;
  tally_checkpoint_name(flight->name, begin_lsn, (uint64_t)sequence_max + 1u, false);
  uint64_t before = 0;
  bool cancel = next_random() % 8u == 0;
  enum tally_checkpoint_status status;
  do {
    status = tally_checkpoint_writer_step(writer, 1u + next_random() % (3u * CHUNK));
    uint64_t after = tally_checkpoint_writer_copied(writer);
    if (status == TALLY_CHECKPOINT_IO_ERROR) return false;
    memcpy(flight->bytes + before, model.image + before, after - before);
    before = after;
    mutate_image();
    model.lsn += next_random() % 3u; /* the log goes on meanwhile */
    if (cancel && status == TALLY_CHECKPOINT_MORE) {
      tally_checkpoint_writer_cancel(writer);
      totals.cancelled++;
      return true;
    }
  } while (status == TALLY_CHECKPOINT_MORE);
  assert_int_equal(status, TALLY_CHECKPOINT_OK);
  flight->end_lsn = model.lsn;
  model.flight_finishing = true; /* from here its rename may reach the disk */
  struct tally_checkpoint_done done;
  if (tally_checkpoint_writer_finish(writer, flight->end_lsn, &done) != TALLY_CHECKPOINT_OK) {
    return false;
  }
  assert_string_equal(flight->name, done.name);
  int32_t trusted = model.trusted;
  model_finish();
  totals.finished++;
  if (done.delete_failed == 0) check_retention(seed, disk, &done, trusted);
  return true;
}

/* ---- The checks ------------------------------------------------------------- */

/* The history index recovery must choose (-1: none), and the rotted files newer than it. */
static int32_t expected_choice(uint64_t seed, struct tally_disk_sim *sim, uint32_t *rotted_before)
{
  *rotted_before = 0;
  for (int32_t i = (int32_t)model.history_count - 1; i >= 0; i--) {
    const struct model_checkpoint *candidate = &model.history[i];
    bool rotted = model_rotted(candidate->name);
    if (tally_disk_sim_file_size(sim, candidate->name) < 0) {
      if (candidate->kept && !rotted) {
        fail_msg("seed %llu: %s, a checkpoint retention keeps, is gone", (unsigned long long)seed,
          candidate->name);
      }
      continue;
    }
    if (!rotted) return i;
    (*rotted_before)++;
  }
  return -1;
}

static void check_recovery(uint64_t seed, struct tally_disk_sim *sim, struct tally_disk *disk,
  const struct tally_disk_sim_report *report, struct tally_checkpoint_recovery *recovery)
{
  if (report->rotted) {
    assert_true(model.rotted_count < CYCLES_MAX);
    memcpy(model.rotted[model.rotted_count++], report->rot_name, TALLY_DISK_NAME_SIZE_MAX);
  }
  /* The one in flight is on the disk if its rename survived: a finished checkpoint now. */
  bool flight_landed = model.flight_finishing &&
    tally_disk_sim_file_size(sim, model.flight.name) >= 0;
  if (flight_landed) model_finish();
  model.flight_finishing = false;
  uint32_t rotted_before;
  int32_t expected = expected_choice(seed, sim, &rotted_before);
  memset(loaded, 0xee, sizeof loaded);
  enum tally_checkpoint_status status = tally_checkpoint_load(reader, disk, loaded, sizeof loaded,
    0, recovery);
  model.trusted = -1;
  if (expected < 0) {
    if (status != TALLY_CHECKPOINT_NONE && status != TALLY_CHECKPOINT_CORRUPT) {
      fail_msg("seed %llu, mode %s: no valid checkpoint expected, got %s (%s)",
        (unsigned long long)seed, tally_disk_sim_mode_name(report->mode),
        tally_checkpoint_status_name(status), recovery->name);
    }
    totals.none += status == TALLY_CHECKPOINT_NONE;
    totals.corrupt += status == TALLY_CHECKPOINT_CORRUPT;
    return;
  }
  const struct model_checkpoint *chosen = &model.history[expected];
  if (status != TALLY_CHECKPOINT_OK || strcmp(recovery->name, chosen->name) != 0) {
    fail_msg("seed %llu, mode %s: expected %s, got %s %s (%s)", (unsigned long long)seed,
      tally_disk_sim_mode_name(report->mode), chosen->name,
      tally_checkpoint_status_name(status), recovery->name, recovery->report);
  }
  if (recovery->header.image_size != chosen->size ||
    memcmp(loaded, chosen->bytes, chosen->size) != 0 ||
    recovery->header.begin_lsn != chosen->begin_lsn ||
    recovery->header.end_lsn != chosen->end_lsn) {
    fail_msg("seed %llu: %s loaded with bytes or LSNs that were not copied",
      (unsigned long long)seed, chosen->name);
  }
  if (recovery->rejected != rotted_before) {
    fail_msg("seed %llu: %u rejected, %u rotted files newer than the chosen one (%s)",
      (unsigned long long)seed, recovery->rejected, rotted_before, recovery->report);
  }
  model.trusted = expected; /* the next writer is told to trust it */
  totals.rejected += recovery->rejected;
  bool newest = (uint32_t)expected == model.history_count - 1u;
  totals.chose_flight += newest && flight_landed;
  totals.chose_last += newest && !flight_landed;
  totals.chose_older += !newest;
}

/* ---- One crash point ---------------------------------------------------------- */

static void run_point(uint64_t seed)
{
  memset(&model, 0, offsetof(struct model, history));
  model.history_count = 0;
  model.trusted = -1;
  model.flight_finishing = false;
  model.rotted_count = 0;
  model.rng = seed;
  model.image_size = 1u + next_random() % IMAGE_MAX;
  for (uint64_t i = 0; i < model.image_size; i++) model.image[i] = (uint8_t)next_random();
  struct tally_disk_sim *sim = tally_disk_sim_create(seed);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  enum tally_disk_sim_mode mode = (enum tally_disk_sim_mode)(seed % TALLY_DISK_SIM_MODE_COUNT);
  struct tally_checkpoint_options options = {
    .chunk_size = CHUNK * (1u + (uint32_t)(next_random() % 2u)),
    .sync_bytes = (next_random() % 3u) * CHUNK,
  };
  struct tally_checkpoint_recovery recovery = {.status = TALLY_CHECKPOINT_NONE};
  uint32_t cycles = 1u + (uint32_t)(next_random() % CYCLES_MAX);
  for (uint32_t cycle = 0; cycle < cycles; cycle++) {
    char error[192] = "";
    struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&disk, &options, error,
      sizeof error);
    assert_non_null(writer);
    if (recovery.status == TALLY_CHECKPOINT_OK) tally_checkpoint_writer_trust(writer, &recovery);
    tally_disk_sim_fail_after(sim, next_random() % OPERATIONS_MAX);
    uint32_t checkpoints = 1u + (uint32_t)(next_random() % CHECKPOINTS_PER_CYCLE_MAX);
    for (uint32_t i = 0; i < checkpoints; i++) {
      if (!one_checkpoint(seed, writer, &disk)) break;
    }
    if (tally_disk_sim_powered(sim)) tally_disk_sim_fail_after(sim, 0);
    tally_checkpoint_writer_destroy(writer);
    struct tally_disk_sim_report report;
    tally_disk_sim_crash(sim, mode, next_random(), &report);
    totals.cycles++;
    check_recovery(seed, sim, &disk, &report, &recovery);
  }
  totals.points++;
  totals.by_mode[mode]++;
  tally_disk_sim_destroy(sim);
}

static void test_crash_points(void **state)
{
  (void)state;
  uint64_t points = seeded_env_number("TALLY_CHECKPOINT_CRASH_POINTS", CRASH_POINTS_DEFAULT);
  uint64_t base = seeded_env_number("TALLY_TEST_SEED", 1);
  printf("checkpoint crash harness: %llu points from seed %llu "
    "(TALLY_CHECKPOINT_CRASH_POINTS, TALLY_TEST_SEED)\n",
    (unsigned long long)points, (unsigned long long)base);
  reader = tally_checkpoint_reader_create();
  assert_non_null(reader);
  for (uint64_t point = 0; point < points; point++) run_point(base + point);
  tally_checkpoint_reader_destroy(reader);
  printf("checkpoint crash harness: %llu points, %llu crashes, %llu checkpoints finished, "
    "%llu cancelled; recovered the one in flight %llu, the last finished %llu, an older one "
    "%llu; none %llu, corrupt %llu; rotted files rejected %llu\n",
    (unsigned long long)totals.points, (unsigned long long)totals.cycles,
    (unsigned long long)totals.finished, (unsigned long long)totals.cancelled,
    (unsigned long long)totals.chose_flight, (unsigned long long)totals.chose_last,
    (unsigned long long)totals.chose_older, (unsigned long long)totals.none,
    (unsigned long long)totals.corrupt, (unsigned long long)totals.rejected);
  /* The harness must have exercised what it claims to (at CI size and above). */
  if (points >= 500) {
    assert_true(totals.chose_flight > 0);
    assert_true(totals.chose_last > 0);
    assert_true(totals.chose_older > 0);
    assert_true(totals.rejected > 0);
    assert_true(totals.cancelled > 0);
    for (uint32_t mode = 0; mode < TALLY_DISK_SIM_MODE_COUNT; mode++) {
      assert_true(totals.by_mode[mode] > 0);
    }
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crash_points),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
