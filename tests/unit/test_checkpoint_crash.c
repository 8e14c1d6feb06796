/*
 * test_checkpoint_crash.c — the checkpoints' seeded crash-point harness (in
 * the style of test_wal_crash.c, after ALICE and TigerBeetle's storage fault
 * injection): for each point a fresh simulated disk (disk_sim.c) and a seed;
 * checkpoints of an image that changes between steps (the fuzzy copy), some
 * cancelled; the power lost after a random number of I/O calls (mid-write,
 * mid-sync, mid-rename, mid-retention) in one of the simulator's modes
 * (process kill, unsynced writes dropped, a seeded subset of sectors and a
 * prefix of name changes kept, the last sector torn, a synced bit rotted);
 * recovery; then, against an independent model of what was copied:
 *   - the chosen checkpoint is the first that exists and is not rotted of:
 *     the one in flight (only once its finish was called: renamed before the
 *     crash), the last whose finish returned OK, the one before it. Never a
 *     corrupt one, never an older one, NONE only when none of them exists;
 *   - its bytes are byte-identical to the image as the steps copied it, its
 *     LSNs those given to begin and finish;
 *   - a rotted candidate is rejected and counted, and nothing else is;
 *   - after every finish that returned OK with its deletions done, the
 *     directory holds at most two checkpoints and no temporary file.
 * Several crash cycles per point (the point ends after a rot).
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

#define CRASH_POINTS_DEFAULT 2000u
#define CHUNK 4096u
#define IMAGE_MAX (12u * CHUNK + 2000u)
#define CYCLES_MAX 3u
#define CHECKPOINTS_PER_CYCLE_MAX 6u
#define OPERATIONS_MAX 160u

/* One checkpoint as the model knows it: what its steps copied. */
struct model_checkpoint {
  bool present;
  char name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t begin_lsn, end_lsn, size;
  uint8_t bytes[IMAGE_MAX];
};

struct model {
  uint64_t rng;
  uint64_t lsn;
  uint8_t image[IMAGE_MAX];
  uint64_t image_size;
  struct model_checkpoint last, previous; /* the last two whose finish returned OK */
  struct model_checkpoint flight;        /* begun; present once its finish was called */
};

struct totals {
  uint64_t points, cycles, finished, cancelled, chose_flight, chose_last, chose_previous;
  uint64_t none, corrupt, rejected;
  uint64_t by_mode[TALLY_DISK_SIM_MODE_COUNT];
};

static struct model model;
static struct totals totals;
static struct tally_checkpoint_reader *reader;
static uint8_t loaded[IMAGE_MAX];

static uint64_t next_random(void)
{
  uint64_t z = (model.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t env_number(const char *name, uint64_t fallback)
{
  const char *text = getenv(name);
  return text != NULL && *text != '\0' ? strtoull(text, NULL, 10) : fallback;
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
  uint64_t sequence = (uint64_t)sequence_max + 1u;
  if (tally_checkpoint_writer_begin(writer, model.image, model.image_size, begin_lsn, 1) != 0) {
    return false;
  }
  struct model_checkpoint *flight = &model.flight;
  flight->present = false;
  flight->size = model.image_size;
  flight->begin_lsn = begin_lsn;
  tally_checkpoint_name(flight->name, begin_lsn, sequence, false);
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
  flight->present = true; /* from here its rename may reach the disk */
  struct tally_checkpoint_done done;
  if (tally_checkpoint_writer_finish(writer, flight->end_lsn, &done) != TALLY_CHECKPOINT_OK) {
    return false;
  }
  assert_string_equal(flight->name, done.name);
  model.previous = model.last;
  model.last = *flight;
  flight->present = false;
  totals.finished++;
  if (done.delete_failed == 0) {
    assert_true(count_files(disk, &finals, &temporaries) >= 0);
    if (finals > TALLY_CHECKPOINT_KEEP || temporaries != 0) {
      fail_msg("seed %llu: %u checkpoints and %u temporary files after a finish",
        (unsigned long long)seed, finals, temporaries);
    }
    if (model.previous.present && done.cut_lsn != model.previous.begin_lsn) {
      fail_msg("seed %llu: cut_lsn %llu, the previous checkpoint begins at %llu",
        (unsigned long long)seed, (unsigned long long)done.cut_lsn,
        (unsigned long long)model.previous.begin_lsn);
    }
  }
  return true;
}

/* ---- The checks ------------------------------------------------------------- */

static void check_recovery(uint64_t seed, struct tally_disk_sim *sim, struct tally_disk *disk,
  const struct tally_disk_sim_report *report)
{
  struct model_checkpoint *candidates[3] = {&model.flight, &model.last, &model.previous};
  struct model_checkpoint *expected = NULL;
  uint32_t rotted_before = 0;
  for (uint32_t i = 0; i < 3 && expected == NULL; i++) {
    struct model_checkpoint *candidate = candidates[i];
    if (!candidate->present) continue;
    if (tally_disk_sim_file_size(sim, candidate->name) < 0) {
      if (i == 0) continue; /* the rename of the one in flight did not survive */
      fail_msg("seed %llu: %s, finished, is gone", (unsigned long long)seed, candidate->name);
    }
    if (report->rotted && strcmp(report->rot_name, candidate->name) == 0) {
      rotted_before++;
      continue;
    }
    expected = candidate;
  }
  struct tally_checkpoint_recovery recovery;
  memset(loaded, 0xee, sizeof loaded);
  enum tally_checkpoint_status status = tally_checkpoint_load(reader, disk, loaded, sizeof loaded,
    0, &recovery);
  if (expected == NULL) {
    if (status != TALLY_CHECKPOINT_NONE && status != TALLY_CHECKPOINT_CORRUPT) {
      fail_msg("seed %llu, mode %s: no valid checkpoint expected, got %s (%s)",
        (unsigned long long)seed, tally_disk_sim_mode_name(report->mode),
        tally_checkpoint_status_name(status), recovery.name);
    }
    totals.none += status == TALLY_CHECKPOINT_NONE;
    totals.corrupt += status == TALLY_CHECKPOINT_CORRUPT;
    return;
  }
  if (status != TALLY_CHECKPOINT_OK || strcmp(recovery.name, expected->name) != 0) {
    fail_msg("seed %llu, mode %s: expected %s, got %s %s (%s)", (unsigned long long)seed,
      tally_disk_sim_mode_name(report->mode), expected->name,
      tally_checkpoint_status_name(status), recovery.name, recovery.report);
  }
  if (recovery.header.image_size != expected->size ||
    memcmp(loaded, expected->bytes, expected->size) != 0 ||
    recovery.header.begin_lsn != expected->begin_lsn ||
    recovery.header.end_lsn != expected->end_lsn) {
    fail_msg("seed %llu: %s loaded with bytes or LSNs that were not copied",
      (unsigned long long)seed, expected->name);
  }
  if (recovery.rejected != rotted_before) {
    fail_msg("seed %llu: %u rejected, %u rotted candidates (%s)", (unsigned long long)seed,
      recovery.rejected, rotted_before, recovery.report);
  }
  totals.rejected += recovery.rejected;
  totals.chose_flight += expected == &model.flight;
  totals.chose_last += expected == &model.last;
  totals.chose_previous += expected == &model.previous;
  if (expected == &model.flight) { /* it is a finished checkpoint now */
    model.previous = model.last;
    model.last = model.flight;
  }
}

/* ---- One crash point ---------------------------------------------------------- */

static void run_point(uint64_t seed)
{
  memset(&model, 0, sizeof model);
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
  uint32_t cycles = 1u + (uint32_t)(next_random() % CYCLES_MAX);
  for (uint32_t cycle = 0; cycle < cycles; cycle++) {
    char error[192] = "";
    struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&disk, &options, error,
      sizeof error);
    assert_non_null(writer);
    model.flight.present = false;
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
    check_recovery(seed, sim, &disk, &report);
    if (report.rotted) break; /* the disk holds a rotted file now: the point ends */
  }
  totals.points++;
  totals.by_mode[mode]++;
  tally_disk_sim_destroy(sim);
}

static void test_crash_points(void **state)
{
  (void)state;
  uint64_t points = env_number("TALLY_CHECKPOINT_CRASH_POINTS", CRASH_POINTS_DEFAULT);
  uint64_t base = env_number("TALLY_TEST_SEED", 1);
  printf("checkpoint crash harness: %llu points from seed %llu "
    "(TALLY_CHECKPOINT_CRASH_POINTS, TALLY_TEST_SEED)\n",
    (unsigned long long)points, (unsigned long long)base);
  reader = tally_checkpoint_reader_create();
  assert_non_null(reader);
  for (uint64_t point = 0; point < points; point++) run_point(base + point);
  tally_checkpoint_reader_destroy(reader);
  printf("checkpoint crash harness: %llu points, %llu crashes, %llu checkpoints finished, "
    "%llu cancelled; recovered the one in flight %llu, the last finished %llu, the previous "
    "%llu; none %llu, corrupt %llu; rotted files rejected %llu\n",
    (unsigned long long)totals.points, (unsigned long long)totals.cycles,
    (unsigned long long)totals.finished, (unsigned long long)totals.cancelled,
    (unsigned long long)totals.chose_flight, (unsigned long long)totals.chose_last,
    (unsigned long long)totals.chose_previous, (unsigned long long)totals.none,
    (unsigned long long)totals.corrupt, (unsigned long long)totals.rejected);
  /* The harness must have exercised what it claims to (at CI size and above). */
  if (points >= 500) {
    assert_true(totals.chose_flight > 0);
    assert_true(totals.chose_last > 0);
    assert_true(totals.chose_previous > 0);
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
