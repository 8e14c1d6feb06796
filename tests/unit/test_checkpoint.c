/*
 * test_checkpoint.c — checkpoints of the image (control/persist/checkpoint*.c):
 * the header bytes and names (every bit of the header block flipped is
 * refused), round trips on the power-loss simulator and on a real directory,
 * steps of bounded size, the fuzzy copy, fdatasync every sync_bytes, each
 * rejection (and its one-line report) with the fallback to the previous
 * checkpoint, retention (the new one and the previous valid one kept, the
 * log cut no further than the oldest kept; after a restart, the checkpoint
 * recovery loaded trusted and the one it rejected deleted), cancel, a failure
 * mid-write, and temporary files left by a crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "disk_sim.h"

#define CHUNK 4096u
#define IMAGE_MAX (64u * 1024u)

static uint8_t image[IMAGE_MAX];
static uint8_t loaded[IMAGE_MAX];

static void fill(uint8_t *bytes, size_t size, uint32_t seed)
{
  for (size_t i = 0; i < size; i++) bytes[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

struct fixture {
  struct tally_disk_sim *sim;
  struct tally_disk disk;
  struct tally_checkpoint_writer *writer;
  struct tally_checkpoint_reader *reader;
};

static void fixture_open(struct fixture *fixture, uint64_t sync_bytes)
{
  fixture->sim = tally_disk_sim_create(7);
  assert_non_null(fixture->sim);
  tally_disk_sim_bind(fixture->sim, &fixture->disk);
  struct tally_checkpoint_options options = {.chunk_size = CHUNK, .sync_bytes = sync_bytes,
    .image_format = 3};
  char error[192] = "";
  fixture->writer = tally_checkpoint_writer_create(&fixture->disk, &options, error, sizeof error);
  assert_non_null(fixture->writer);
  fixture->reader = tally_checkpoint_reader_create();
  assert_non_null(fixture->reader);
}

/* A restart: a new writer (sync_bytes 0) on the same disk. */
static void fixture_restart(struct fixture *fixture, uint32_t image_format)
{
  tally_checkpoint_writer_destroy(fixture->writer);
  struct tally_checkpoint_options options = {.chunk_size = CHUNK, .image_format = image_format};
  char error[192] = "";
  fixture->writer = tally_checkpoint_writer_create(&fixture->disk, &options, error, sizeof error);
  assert_non_null(fixture->writer);
}

static void fixture_close(struct fixture *fixture)
{
  tally_checkpoint_writer_destroy(fixture->writer);
  tally_checkpoint_reader_destroy(fixture->reader);
  tally_disk_sim_destroy(fixture->sim);
}

/* A whole checkpoint of bytes[0..size), in steps of step_bytes. */
static struct tally_checkpoint_done write_checkpoint(struct tally_checkpoint_writer *writer,
  const uint8_t *bytes, uint64_t size, uint64_t begin_lsn, uint64_t end_lsn, uint64_t step_bytes)
{
  assert_int_equal(tally_checkpoint_writer_begin(writer, bytes, size, begin_lsn, 1234), 0);
  uint32_t steps = 0;
  enum tally_checkpoint_status status;
  do {
    status = tally_checkpoint_writer_step(writer, step_bytes);
    steps++;
  } while (status == TALLY_CHECKPOINT_MORE);
  assert_int_equal(status, TALLY_CHECKPOINT_OK);
  if (step_bytes == 1) assert_int_equal(steps, (size + CHUNK - 1u) / CHUNK);
  struct tally_checkpoint_done done;
  assert_int_equal(tally_checkpoint_writer_finish(writer, end_lsn, &done), TALLY_CHECKPOINT_OK);
  assert_false(tally_checkpoint_writer_active(writer));
  return done;
}

static enum tally_checkpoint_status load(struct fixture *fixture,
  struct tally_checkpoint_recovery *recovery)
{
  memset(loaded, 0xee, sizeof loaded);
  return tally_checkpoint_load(fixture->reader, &fixture->disk, loaded, sizeof loaded, 3,
    recovery);
}

/* ---- Bytes and names ------------------------------------------------------------- */

static void test_header_and_names(void **state)
{
  (void)state;
  struct tally_checkpoint_header header = {
    .sequence = 9, .begin_lsn = 100, .end_lsn = 140, .image_size = 3u * CHUNK + 1u,
    .created_ns = 77, .data_offset = tally_checkpoint_data_offset(4), .chunk_size = CHUNK,
    .chunk_count = 4, .image_format = 5, .table_crc = 0xabcdef01u,
  };
  static uint8_t block[TALLY_CHECKPOINT_BLOCK_SIZE];
  tally_checkpoint_header_encode(block, &header);
  struct tally_checkpoint_header decoded;
  assert_int_equal(tally_checkpoint_header_decode(block, sizeof block, &decoded),
    TALLY_CHECKPOINT_REJECT_NONE);
  assert_memory_equal(&decoded, &header, sizeof header);
  assert_int_equal(tally_checkpoint_header_decode(block, sizeof block - 1u, &decoded),
    TALLY_CHECKPOINT_REJECT_TRUNCATED);
  for (uint32_t bit = 0; bit < TALLY_CHECKPOINT_BLOCK_SIZE * 8u; bit++) {
    block[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
    assert_int_not_equal(tally_checkpoint_header_decode(block, sizeof block, &decoded),
      TALLY_CHECKPOINT_REJECT_NONE);
    block[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
  }
  char name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t lsn, sequence;
  bool temporary;
  tally_checkpoint_name(name, 0x1234, 7, false);
  assert_string_equal(name, "ckpt-0000000000001234-0000000000000007.tck");
  assert_true(tally_checkpoint_name_parse(name, &lsn, &sequence, &temporary));
  assert_true(lsn == 0x1234 && sequence == 7 && !temporary);
  tally_checkpoint_name(name, 0, 1, true);
  assert_true(tally_checkpoint_name_parse(name, &lsn, &sequence, &temporary) && temporary);
  const char *bad[] = {"ckpt-0000000000001234-0000000000000000.tck",
    "ckpt-000000000000123A-0000000000000001.tck", "ckpt-0000000000001234-0000000000000001.tc",
    "ckpt-0000000000001234_0000000000000001.tck", "wal-0000000000000001.log", "",
    "ckpt-0000000000001234-0000000000000001.tckx"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(tally_checkpoint_name_parse(bad[i], &lsn, &sequence, &temporary));
  }
}

/* ---- Round trips ------------------------------------------------------------------ */

static void test_round_trip_sim(void **state)
{
  (void)state;
  const uint64_t sizes[] = {1, CHUNK - 1u, CHUNK, CHUNK + 1u, 3u * CHUNK + 5u, IMAGE_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    struct fixture fixture;
    fixture_open(&fixture, 0);
    struct tally_checkpoint_recovery recovery;
    assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_NONE);
    fill(image, sizes[i], (uint32_t)i);
    struct tally_checkpoint_done done = write_checkpoint(fixture.writer, image, sizes[i], 10, 12, 1);
    assert_int_equal(done.sequence, 1);
    assert_int_equal(done.cut_lsn, 10);
    assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
    assert_memory_equal(loaded, image, sizes[i]);
    if (sizes[i] < IMAGE_MAX) assert_int_equal(loaded[sizes[i]], 0xee);
    assert_string_equal(recovery.name, done.name);
    assert_true(recovery.header.begin_lsn == 10 && recovery.header.end_lsn == 12);
    assert_true(recovery.header.image_size == sizes[i] && recovery.header.created_ns == 1234);
    assert_true(recovery.header.image_format == 3 && recovery.rejected == 0);
    assert_int_equal(tally_disk_sim_file_size(fixture.sim, done.name), done.file_size);
    fixture_close(&fixture);
  }
}

/* Names of kind suffix in path's directory. */
static uint32_t count_files(const char *path, const char *suffix)
{
  char command[512];
  snprintf(command, sizeof command, "ls %s | grep -c '%s$'", path, suffix);
  FILE *pipe = popen(command, "r");
  assert_non_null(pipe);
  unsigned count = 0;
  assert_int_equal(fscanf(pipe, "%u", &count), 1);
  pclose(pipe);
  return count;
}

static void test_round_trip_posix(void **state)
{
  (void)state;
  char path[] = "/tmp/tally-test-checkpoint-XXXXXX";
  assert_non_null(mkdtemp(path));
  struct tally_disk disk;
  struct tally_disk_posix posix;
  char error[192] = "";
  assert_int_equal(tally_disk_posix_open(&disk, &posix, path, error, sizeof error), 0);
  struct tally_checkpoint_options options;
  tally_checkpoint_options_default(&options);
  options.chunk_size = 16384;
  options.sync_bytes = 32768;
  struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&disk, &options, error,
    sizeof error);
  struct tally_checkpoint_reader *reader = tally_checkpoint_reader_create();
  assert_non_null(writer);
  assert_non_null(reader);
  uint64_t previous_lsn = 0;
  for (uint32_t round = 0; round < 4; round++) {
    fill(image, IMAGE_MAX - round, round);
    uint64_t lsn = 100u * (round + 1u);
    struct tally_checkpoint_done done = write_checkpoint(writer, image, IMAGE_MAX - round, lsn,
      lsn + 5u, 20000);
    assert_int_equal(done.cut_lsn, round == 0 ? lsn : previous_lsn);
    assert_int_equal(done.deleted, round >= 2 ? 1 : 0);
    previous_lsn = lsn;
    assert_int_equal(count_files(path, ".tck"), round == 0 ? 1 : 2);
    assert_int_equal(count_files(path, ".tmp"), 0);
    struct tally_checkpoint_recovery recovery;
    memset(loaded, 0, sizeof loaded);
    assert_int_equal(tally_checkpoint_load(reader, &disk, loaded, sizeof loaded, 0, &recovery),
      TALLY_CHECKPOINT_OK);
    assert_string_equal(recovery.name, done.name);
    assert_memory_equal(loaded, image, IMAGE_MAX - round);
  }
  const struct tally_checkpoint_writer_stats *stats = tally_checkpoint_writer_stats(writer);
  assert_int_equal(stats->finished, 4);
  assert_int_equal(stats->deleted, 2);
  /* 4 chunks of 16 KiB, a sync every 32 KiB: 2 + the final one in round 0; then the last
   * chunk is short, so 1 + the final one. */
  assert_int_equal(stats->syncs, 3u + 3u * 2u);
  tally_checkpoint_writer_destroy(writer);
  tally_checkpoint_reader_destroy(reader);
  tally_disk_posix_close(&posix);
  char command[600];
  snprintf(command, sizeof command, "rm -rf %s", path);
  assert_int_equal(system(command), 0);
}

/* Steps write whole chunks up to their budget; the image may change between them. */
static void test_steps_and_fuzzy_copy(void **state)
{
  (void)state;
  struct fixture fixture;
  fixture_open(&fixture, 2u * CHUNK);
  static uint8_t copied[IMAGE_MAX];
  fill(image, IMAGE_MAX, 1);
  assert_int_equal(tally_checkpoint_writer_begin(fixture.writer, image, IMAGE_MAX, 5, 0), 0);
  uint64_t before = 0;
  for (uint32_t step = 0;; step++) {
    enum tally_checkpoint_status status = tally_checkpoint_writer_step(fixture.writer, 2u * CHUNK + 1u);
    uint64_t after = tally_checkpoint_writer_copied(fixture.writer);
    assert_int_equal(after - before, status == TALLY_CHECKPOINT_OK ? after - before : 3u * CHUNK);
    memcpy(copied + before, image + before, after - before);
    before = after;
    fill(image, IMAGE_MAX, 100u + step); /* the other threads write on */
    if (status == TALLY_CHECKPOINT_OK) break;
    assert_int_equal(status, TALLY_CHECKPOINT_MORE);
  }
  struct tally_checkpoint_done done;
  assert_int_equal(tally_checkpoint_writer_finish(fixture.writer, 9, &done), TALLY_CHECKPOINT_OK);
  /* 16 chunks, a sync after every second one, then the final one. */
  assert_int_equal(tally_checkpoint_writer_stats(fixture.writer)->syncs, 8u + 1u);
  struct tally_checkpoint_recovery recovery;
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
  assert_memory_equal(loaded, copied, IMAGE_MAX);
  fixture_close(&fixture);
}

/* ---- Rejections and fallback ---------------------------------------------------------- */

enum damage {
  DAMAGE_MAGIC, DAMAGE_VERSION, DAMAGE_HEADER_CRC, DAMAGE_FIELD, DAMAGE_HEADER_PADDING,
  DAMAGE_TABLE_PADDING, DAMAGE_NAME, DAMAGE_SHORTER, DAMAGE_LONGER, DAMAGE_TRUNCATED,
  DAMAGE_TABLE_CRC, DAMAGE_CHUNK, DAMAGE_FORMAT, DAMAGE_COUNT
};

static const enum tally_checkpoint_rejection damage_reason[DAMAGE_COUNT] = {
  TALLY_CHECKPOINT_REJECT_BAD_MAGIC, TALLY_CHECKPOINT_REJECT_BAD_VERSION,
  TALLY_CHECKPOINT_REJECT_BAD_HEADER_CRC, TALLY_CHECKPOINT_REJECT_BAD_FIELD,
  TALLY_CHECKPOINT_REJECT_BAD_PADDING, TALLY_CHECKPOINT_REJECT_BAD_PADDING,
  TALLY_CHECKPOINT_REJECT_NAME_MISMATCH, TALLY_CHECKPOINT_REJECT_BAD_SIZE,
  TALLY_CHECKPOINT_REJECT_BAD_SIZE, TALLY_CHECKPOINT_REJECT_TRUNCATED,
  TALLY_CHECKPOINT_REJECT_BAD_TABLE_CRC, TALLY_CHECKPOINT_REJECT_BAD_CHUNK_CRC,
  TALLY_CHECKPOINT_REJECT_REFUSED,
};

/* Rewrites the header block of name with flags set to 1 and a correct CRC. */
static void damage_field(struct fixture *fixture, const char *name)
{
  struct tally_disk *disk = &fixture->disk;
  int file = disk->ops->open(disk->context, name, false);
  assert_true(file >= 0);
  static uint8_t block[TALLY_CHECKPOINT_BLOCK_SIZE];
  assert_int_equal(disk->ops->read(disk->context, file, block, sizeof block, 0), sizeof block);
  block[6] = 1;
  uint32_t crc = tally_persist_crc32c(block, 124, TALLY_CHECKPOINT_HEADER_CRC_SEED);
  for (int i = 0; i < 4; i++) block[124 + i] = (uint8_t)(crc >> (8 * i));
  assert_int_equal(disk->ops->write(disk->context, file, block, sizeof block, 0), 0);
}

static void damage_size(struct fixture *fixture, const char *name, int64_t change)
{
  struct tally_disk *disk = &fixture->disk;
  int file = disk->ops->open(disk->context, name, false);
  assert_true(file >= 0);
  int64_t size = tally_disk_sim_file_size(fixture->sim, name);
  uint64_t target = change == 0 ? 100u : (uint64_t)(size + change);
  assert_int_equal(disk->ops->truncate(disk->context, file, target), 0);
}

static void apply_damage(struct fixture *fixture, enum damage damage,
  const struct tally_checkpoint_done *done)
{
  const char *name = done->name;
  const uint64_t block = TALLY_CHECKPOINT_BLOCK_SIZE;
  char renamed[TALLY_DISK_NAME_SIZE_MAX];
  switch (damage) {
  case DAMAGE_MAGIC: assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, 1, 0x10), 0); break;
  case DAMAGE_VERSION: assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, 4, 2), 0); break;
  case DAMAGE_HEADER_CRC: assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, 30, 1), 0); break;
  case DAMAGE_FIELD: damage_field(fixture, name); break;
  case DAMAGE_HEADER_PADDING: assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, 900, 4), 0); break;
  case DAMAGE_TABLE_PADDING:
    assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, block + 100u, 4), 0);
    break;
  case DAMAGE_NAME:
    tally_checkpoint_name(renamed, 15, done->sequence, false); /* written as LSN 20 */
    assert_int_equal(fixture->disk.ops->rename(fixture->disk.context, name, renamed), 0);
    break;
  case DAMAGE_SHORTER: damage_size(fixture, name, -1); break;
  case DAMAGE_LONGER: damage_size(fixture, name, 1); break;
  case DAMAGE_TRUNCATED: damage_size(fixture, name, 0); break;
  case DAMAGE_TABLE_CRC: assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, block + 5u, 8), 0); break;
  case DAMAGE_CHUNK:
    assert_int_equal(tally_disk_sim_corrupt(fixture->sim, name, 2u * block + CHUNK + 7u, 0x80), 0);
    break;
  default: break; /* DAMAGE_FORMAT: written with another image_format */
  }
}

static void test_rejections_and_fallback(void **state)
{
  (void)state;
  for (uint32_t damage = 0; damage < DAMAGE_COUNT; damage++) {
    for (uint32_t with_previous = 0; with_previous < 2; with_previous++) {
      struct fixture fixture;
      fixture_open(&fixture, 0);
      static uint8_t older[3u * CHUNK];
      fill(older, sizeof older, 11);
      if (with_previous) write_checkpoint(fixture.writer, older, sizeof older, 10, 10, 1u << 20);
      fill(image, 3u * CHUNK, 12);
      if (damage == DAMAGE_FORMAT) {
        fixture_restart(&fixture, 4);
      }
      struct tally_checkpoint_done done = write_checkpoint(fixture.writer, image, 3u * CHUNK, 20, 21,
        1u << 20);
      assert_int_equal(done.sequence, with_previous + 1u);
      apply_damage(&fixture, (enum damage)damage, &done);
      struct tally_checkpoint_recovery recovery;
      enum tally_checkpoint_status status = load(&fixture, &recovery);
      assert_int_equal(recovery.found, with_previous + 1u);
      assert_int_equal(recovery.rejected, 1);
      assert_int_equal(recovery.first_rejection, damage_reason[damage]);
      assert_non_null(strstr(recovery.report, tally_checkpoint_rejection_name(damage_reason[damage])));
      assert_null(strchr(recovery.report, '\n'));
      if (damage != DAMAGE_NAME) assert_non_null(strstr(recovery.report, done.name));
      if (damage == DAMAGE_CHUNK) assert_non_null(strstr(recovery.report, "(chunk 2 of 3)"));
      if (with_previous) {
        assert_int_equal(status, TALLY_CHECKPOINT_OK);
        assert_int_equal(recovery.header.begin_lsn, 10);
        assert_memory_equal(loaded, older, sizeof older);
      } else {
        assert_int_equal(status, TALLY_CHECKPOINT_CORRUPT);
      }
      fixture_close(&fixture);
    }
  }
}

/* A sink that refuses the second chunk of the newest: its begin() is called again for the next. */
struct refusing_sink {
  uint32_t begins, chunks;
  uint64_t next_offset;
};

static int refusing_begin(void *context, const struct tally_checkpoint_header *header)
{
  struct refusing_sink *sink = context;
  (void)header;
  sink->begins++;
  sink->next_offset = 0;
  return 0;
}

static int refusing_chunk(void *context, uint64_t offset, const void *data, size_t size)
{
  struct refusing_sink *sink = context;
  (void)data;
  assert_int_equal(offset, sink->next_offset);
  sink->next_offset += size;
  sink->chunks++;
  return sink->begins == 1 && offset > 0 ? -1 : 0;
}

static void test_retention_and_stream(void **state)
{
  (void)state;
  struct fixture fixture;
  fixture_open(&fixture, 0);
  for (uint32_t round = 1; round <= 3; round++) {
    fill(image, 2u * CHUNK, round);
    write_checkpoint(fixture.writer, image, 2u * CHUNK, 10u * round, 10u * round, 1u << 20);
  }
  /* The newest (LSN 30) rots: the next checkpoint keeps itself and LSN 20, the last good one. */
  char newest[TALLY_DISK_NAME_SIZE_MAX];
  tally_checkpoint_name(newest, 30, 3, false);
  assert_int_equal(tally_disk_sim_corrupt(fixture.sim, newest, 9u * 1024u, 1), 0);
  char previous[TALLY_DISK_NAME_SIZE_MAX];
  tally_checkpoint_name(previous, 20, 2, false);
  assert_true(tally_disk_sim_file_size(fixture.sim, previous) > 0);
  fill(image, 2u * CHUNK, 4);
  struct tally_checkpoint_done done = write_checkpoint(fixture.writer, image, 2u * CHUNK, 40, 40,
    1u << 20);
  /* The header of LSN 30 is intact, so retention keeps it as the previous one: a rot in a
   * chunk is found by recovery, not by the retention's header check. */
  assert_int_equal(done.cut_lsn, 30);
  assert_true(tally_disk_sim_file_size(fixture.sim, previous) < 0);
  /* A rot in the header is found by retention: it keeps the newest valid older one. */
  assert_int_equal(tally_disk_sim_corrupt(fixture.sim, done.name, 3, 1), 0);
  fill(image, 2u * CHUNK, 5);
  done = write_checkpoint(fixture.writer, image, 2u * CHUNK, 50, 50, 1u << 20);
  assert_int_equal(done.cut_lsn, 30);
  assert_int_equal(done.deleted, 1);
  /* Streamed: the sink refuses a chunk of LSN 50; the recovery starts LSN 30 again. */
  struct refusing_sink context = {0};
  struct tally_checkpoint_sink sink = {.begin = refusing_begin, .chunk = refusing_chunk,
    .context = &context};
  struct tally_checkpoint_recovery recovery;
  assert_int_equal(tally_checkpoint_recover(fixture.reader, &fixture.disk, &sink, &recovery),
    TALLY_CHECKPOINT_CORRUPT); /* LSN 30 has the rotted chunk */
  assert_int_equal(recovery.rejected, 2);
  assert_int_equal(recovery.first_rejection, TALLY_CHECKPOINT_REJECT_REFUSED);
  assert_non_null(strstr(recovery.report, "chunk CRC mismatch (chunk 1 of 2)"));
  assert_int_equal(context.begins, 2);
  fixture_close(&fixture);
}

/* After a restart, the writer trusts what recovery loaded: the file it rejected goes. */
static void test_trust_after_recovery(void **state)
{
  (void)state;
  struct fixture fixture;
  fixture_open(&fixture, 0);
  static uint8_t good[2u * CHUNK];
  for (uint32_t round = 1; round <= 3; round++) {
    fill(image, 2u * CHUNK, round);
    if (round == 2) memcpy(good, image, sizeof good);
    write_checkpoint(fixture.writer, image, 2u * CHUNK, 10u * round, 10u * round, 1u << 20);
  }
  char rotted[TALLY_DISK_NAME_SIZE_MAX];
  tally_checkpoint_name(rotted, 30, 3, false);
  assert_int_equal(tally_disk_sim_corrupt(fixture.sim, rotted, 3u * TALLY_CHECKPOINT_BLOCK_SIZE, 1), 0);
  struct tally_checkpoint_recovery recovery;
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
  assert_int_equal(recovery.header.begin_lsn, 20);
  assert_int_equal(recovery.rejected, 1);
  /* The restart: a new writer, told what recovery loaded. */
  fixture_restart(&fixture, 3);
  tally_checkpoint_writer_trust(fixture.writer, &recovery);
  fill(image, 2u * CHUNK, 4);
  struct tally_checkpoint_done done = write_checkpoint(fixture.writer, image, 2u * CHUNK, 40, 40,
    1u << 20);
  assert_int_equal(done.cut_lsn, 20);
  assert_true(tally_disk_sim_file_size(fixture.sim, rotted) < 0);
  /* The new one rots too: the last good one is still there. */
  assert_int_equal(tally_disk_sim_corrupt(fixture.sim, done.name, 9000, 2), 0);
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
  assert_int_equal(recovery.header.begin_lsn, 20);
  assert_memory_equal(loaded, good, sizeof good);
  fixture_close(&fixture);
}

/* ---- Cancel, failures, leftovers --------------------------------------------------------- */

static void test_cancel_and_failures(void **state)
{
  (void)state;
  struct fixture fixture;
  fixture_open(&fixture, 0);
  fill(image, IMAGE_MAX, 1);
  write_checkpoint(fixture.writer, image, IMAGE_MAX, 1, 1, 1u << 20);
  /* Cancel mid-way: the temporary file goes, nothing else changes. */
  static uint8_t other[IMAGE_MAX];
  fill(other, IMAGE_MAX, 2);
  assert_int_equal(tally_checkpoint_writer_begin(fixture.writer, other, IMAGE_MAX, 2, 0), 0);
  assert_int_equal(tally_checkpoint_writer_step(fixture.writer, 1), TALLY_CHECKPOINT_MORE);
  char temporary[TALLY_DISK_NAME_SIZE_MAX];
  tally_checkpoint_name(temporary, 2, 2, true);
  assert_true(tally_disk_sim_file_size(fixture.sim, temporary) > 0);
  tally_checkpoint_writer_cancel(fixture.writer);
  assert_false(tally_checkpoint_writer_active(fixture.writer));
  assert_true(tally_disk_sim_file_size(fixture.sim, temporary) < 0);
  assert_int_equal(tally_checkpoint_writer_stats(fixture.writer)->cancelled, 1);
  /* The power fails mid-write: IO_ERROR, the writer idle, the reason kept. */
  assert_int_equal(tally_checkpoint_writer_begin(fixture.writer, other, IMAGE_MAX, 2, 0), 0);
  tally_disk_sim_fail_after(fixture.sim, 3);
  enum tally_checkpoint_status status;
  while ((status = tally_checkpoint_writer_step(fixture.writer, 1)) == TALLY_CHECKPOINT_MORE) {}
  assert_int_equal(status, TALLY_CHECKPOINT_IO_ERROR);
  assert_false(tally_checkpoint_writer_active(fixture.writer));
  const struct tally_checkpoint_writer_stats *stats = tally_checkpoint_writer_stats(fixture.writer);
  assert_int_equal(stats->failed, 1);
  assert_non_null(strstr(stats->last_error_text, "write failed"));
  /* After the crash (page cache kept), the temporary file is left; the next begin removes it. */
  struct tally_disk_sim_report report;
  tally_disk_sim_crash(fixture.sim, TALLY_DISK_SIM_PROCESS, 1, &report);
  assert_true(tally_disk_sim_file_size(fixture.sim, temporary) > 0);
  struct tally_checkpoint_recovery recovery;
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
  assert_int_equal(recovery.found, 1);
  assert_memory_equal(loaded, image, IMAGE_MAX);
  fixture_restart(&fixture, 3);
  write_checkpoint(fixture.writer, other, IMAGE_MAX, 2, 3, 1u << 20);
  assert_true(tally_disk_sim_file_size(fixture.sim, temporary) < 0);
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_OK);
  assert_memory_equal(loaded, other, IMAGE_MAX);
  /* Listing fails without power: IO_ERROR, not NONE. */
  tally_disk_sim_fail_after(fixture.sim, 0);
  assert_int_equal(tally_checkpoint_writer_begin(fixture.writer, other, IMAGE_MAX, 4, 0), -EIO);
  assert_int_equal(load(&fixture, &recovery), TALLY_CHECKPOINT_IO_ERROR);
  fixture_close(&fixture);
}

static void test_options_and_limits(void **state)
{
  (void)state;
  struct tally_disk_sim *sim = tally_disk_sim_create(1);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  char error[192] = "";
  const uint32_t bad_sizes[] = {0, 4095, 6000, TALLY_CHECKPOINT_CHUNK_SIZE_MAX + 4096u};
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    struct tally_checkpoint_options options = {.chunk_size = bad_sizes[i]};
    assert_null(tally_checkpoint_writer_create(&disk, &options, error, sizeof error));
    assert_non_null(strstr(error, "chunk size"));
  }
  struct tally_checkpoint_options options = {.chunk_size = CHUNK};
  struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&disk, &options, error,
    sizeof error);
  assert_non_null(writer);
  assert_int_equal(tally_checkpoint_writer_begin(writer, image,
    (uint64_t)CHUNK * TALLY_CHECKPOINT_CHUNKS_MAX + 1u, 1, 0), -EFBIG);
  assert_false(tally_checkpoint_writer_active(writer));
  /* A file named with the largest sequence: refused, not wrapped to 0. */
  char name[TALLY_DISK_NAME_SIZE_MAX];
  tally_checkpoint_name(name, 1, UINT64_MAX, false);
  assert_true(disk.ops->open(disk.context, name, true) >= 0);
  assert_int_equal(tally_checkpoint_writer_begin(writer, image, 1, 1, 0), -EOVERFLOW);
  tally_checkpoint_writer_destroy(writer);
  tally_disk_sim_destroy(sim);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_header_and_names),
    cmocka_unit_test(test_round_trip_sim),
    cmocka_unit_test(test_round_trip_posix),
    cmocka_unit_test(test_steps_and_fuzzy_copy),
    cmocka_unit_test(test_rejections_and_fallback),
    cmocka_unit_test(test_retention_and_stream),
    cmocka_unit_test(test_trust_after_recovery),
    cmocka_unit_test(test_cancel_and_failures),
    cmocka_unit_test(test_options_and_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
