/*
 * fuzz_checkpoint.c — libFuzzer target of the checkpoint reader
 * (control/persist/checkpoint_format.c, checkpoint_read.c): what recovery
 * reads back from a disk is untrusted.
 *
 * The first byte picks the mode:
 *   0  raw: the rest is a header block: whatever decodes must re-encode to
 *      exactly the same block; then it is a checkpoint file on a simulated
 *      disk, and recovery must answer OK (image within the buffer) or
 *      CORRUPT, the same twice. With the second byte odd, the header CRC,
 *      every chunk CRC and the table CRC are first made right (and the name
 *      made to match), so the checks behind the CRCs are reached.
 *   1  structured: an image cut from the input is checkpointed by the real
 *      writer (one or two checkpoints), then the newest file is truncated or
 *      a byte flipped where the input says. The oracle is exact: untouched,
 *      the newest comes back byte for byte; damaged, it is always rejected
 *      (every byte of a checkpoint is covered) and the older one comes back
 *      byte for byte, or CORRUPT when there is none.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "disk_sim.h"

#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

#define FUZZ_CHUNK 4096u
#define FUZZ_IMAGE_MAX (64u * 1024u)
#define FUZZ_FILE_MAX (2u * TALLY_CHECKPOINT_BLOCK_SIZE + FUZZ_IMAGE_MAX)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tally_checkpoint_reader *reader;
static uint8_t file_bytes[FUZZ_FILE_MAX];
static uint8_t loaded[FUZZ_IMAGE_MAX];
static uint8_t images[2][FUZZ_IMAGE_MAX];

static void store_u32(uint8_t *out, uint32_t value)
{
  for (int i = 0; i < 4; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static struct tally_disk_sim *disk_with(const char *name, const uint8_t *bytes, size_t size,
  struct tally_disk *disk)
{
  struct tally_disk_sim *sim = tally_disk_sim_create(1);
  FUZZ_CHECK(sim != NULL);
  tally_disk_sim_bind(sim, disk);
  int file = disk->ops->open(disk->context, name, true);
  FUZZ_CHECK(file >= 0);
  FUZZ_CHECK(disk->ops->write(disk->context, file, bytes, size, 0) == 0);
  return sim;
}

/* Makes the CRCs of a file right, so the checks behind them are reached. */
static void fix_crcs(uint8_t *bytes, size_t size)
{
  store_u32(bytes + 124, tally_persist_crc32c(bytes, 124, TALLY_CHECKPOINT_HEADER_CRC_SEED));
  struct tally_checkpoint_header header;
  if (tally_checkpoint_header_decode(bytes, size, &header) != TALLY_CHECKPOINT_REJECT_NONE) return;
  if (size < header.data_offset) return;
  for (uint32_t i = 0; i < header.chunk_count; i++) {
    uint64_t offset = header.data_offset + (uint64_t)i * header.chunk_size;
    if (offset >= size) break;
    uint64_t length = size - offset < header.chunk_size ? size - offset : header.chunk_size;
    store_u32(bytes + TALLY_CHECKPOINT_BLOCK_SIZE + 4u * i,
      tally_checkpoint_chunk_crc(i, bytes + offset, (size_t)length));
  }
  store_u32(bytes + 72, tally_persist_crc32c(bytes + TALLY_CHECKPOINT_BLOCK_SIZE,
    4u * header.chunk_count, TALLY_CHECKPOINT_TABLE_CRC_SEED));
  store_u32(bytes + 124, tally_persist_crc32c(bytes, 124, TALLY_CHECKPOINT_HEADER_CRC_SEED));
}

static void fuzz_raw(const uint8_t *data, size_t size)
{
  if (size < 1) return;
  bool fix = (data[0] & 1u) != 0;
  data++;
  size--;
  struct tally_checkpoint_header header;
  if (tally_checkpoint_header_decode(data, size, &header) == TALLY_CHECKPOINT_REJECT_NONE) {
    static uint8_t block[TALLY_CHECKPOINT_BLOCK_SIZE];
    tally_checkpoint_header_encode(block, &header);
    FUZZ_CHECK(memcmp(block, data, sizeof block) == 0);
  }
  size_t kept = size < FUZZ_FILE_MAX ? size : FUZZ_FILE_MAX;
  memcpy(file_bytes, data, kept);
  if (fix && kept >= TALLY_CHECKPOINT_BLOCK_SIZE) fix_crcs(file_bytes, kept);
  char name[TALLY_DISK_NAME_SIZE_MAX];
  if (tally_checkpoint_header_decode(file_bytes, kept, &header) == TALLY_CHECKPOINT_REJECT_NONE) {
    tally_checkpoint_name(name, header.begin_lsn, header.sequence, false);
  } else {
    tally_checkpoint_name(name, 1, 1, false);
  }
  struct tally_disk disk;
  struct tally_disk_sim *sim = disk_with(name, file_bytes, kept, &disk);
  struct tally_checkpoint_recovery recovery, again;
  enum tally_checkpoint_status status = tally_checkpoint_load(reader, &disk, loaded, sizeof loaded,
    0, &recovery);
  FUZZ_CHECK(status == TALLY_CHECKPOINT_OK || status == TALLY_CHECKPOINT_CORRUPT);
  FUZZ_CHECK(recovery.found == 1 && recovery.rejected == (status != TALLY_CHECKPOINT_OK));
  FUZZ_CHECK(memchr(recovery.report, '\n', sizeof recovery.report) == NULL);
  if (status == TALLY_CHECKPOINT_OK) {
    FUZZ_CHECK(recovery.header.image_size <= sizeof loaded);
    FUZZ_CHECK(memcmp(loaded, file_bytes + recovery.header.data_offset,
      recovery.header.image_size) == 0);
  }
  FUZZ_CHECK(tally_checkpoint_load(reader, &disk, loaded, sizeof loaded, 0, &again) == status);
  FUZZ_CHECK(again.first_rejection == recovery.first_rejection);
  tally_disk_sim_destroy(sim);
}

static void write_one(struct tally_checkpoint_writer *writer, const uint8_t *image, size_t size,
  uint64_t lsn, struct tally_checkpoint_done *done)
{
  FUZZ_CHECK(tally_checkpoint_writer_begin(writer, image, size, lsn, 0) == 0);
  while (tally_checkpoint_writer_step(writer, FUZZ_CHUNK) == TALLY_CHECKPOINT_MORE) continue;
  FUZZ_CHECK(tally_checkpoint_writer_finish(writer, lsn, done) == TALLY_CHECKPOINT_OK);
}

/* Structured: [flags][cut u16][flip u16][mask] image... */
static void fuzz_structured(const uint8_t *data, size_t size)
{
  if (size < 7) return;
  bool two = (data[0] & 1u) != 0;
  uint32_t cut = (uint32_t)(data[1] | (data[2] << 8)) * 2u;
  uint32_t flip = (uint32_t)(data[3] | (data[4] << 8)) * 2u;
  uint8_t mask = data[5];
  size_t image_size = size - 6u < FUZZ_IMAGE_MAX ? size - 6u : FUZZ_IMAGE_MAX;
  memcpy(images[1], data + 6, image_size);
  for (size_t i = 0; i < image_size; i++) images[0][i] = (uint8_t)~images[1][i];
  struct tally_disk_sim *sim = tally_disk_sim_create(2);
  FUZZ_CHECK(sim != NULL);
  struct tally_disk disk;
  tally_disk_sim_bind(sim, &disk);
  struct tally_checkpoint_options options = {.chunk_size = FUZZ_CHUNK, .sync_bytes = 0};
  char error[192];
  struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&disk, &options, error,
    sizeof error);
  FUZZ_CHECK(writer != NULL);
  struct tally_checkpoint_done done;
  if (two) write_one(writer, images[0], image_size, 5, &done);
  write_one(writer, images[1], image_size, 9, &done);
  tally_checkpoint_writer_destroy(writer);
  bool damaged = false;
  int file = disk.ops->open(disk.context, done.name, false);
  FUZZ_CHECK(file >= 0);
  if (cut != 0 && cut != done.file_size) {
    FUZZ_CHECK(disk.ops->truncate(disk.context, file, cut) == 0);
    damaged = true;
  } else if (mask != 0 && flip < done.file_size) {
    FUZZ_CHECK(tally_disk_sim_corrupt(sim, done.name, flip, mask) == 0);
    damaged = true;
  }
  struct tally_checkpoint_recovery recovery;
  enum tally_checkpoint_status status = tally_checkpoint_load(reader, &disk, loaded, sizeof loaded,
    0, &recovery);
  if (damaged && !two) {
    FUZZ_CHECK(status == TALLY_CHECKPOINT_CORRUPT && recovery.rejected == 1);
  } else {
    const uint8_t *expected = damaged ? images[0] : images[1];
    FUZZ_CHECK(status == TALLY_CHECKPOINT_OK && recovery.rejected == (uint32_t)damaged);
    FUZZ_CHECK(recovery.header.image_size == image_size);
    FUZZ_CHECK(memcmp(loaded, expected, image_size) == 0);
  }
  tally_disk_sim_destroy(sim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (reader == NULL) reader = tally_checkpoint_reader_create();
  FUZZ_CHECK(reader != NULL);
  if (size < 1) return 0;
  if ((data[0] & 1u) == 0) fuzz_raw(data + 1, size - 1u);
  else fuzz_structured(data + 1, size - 1u);
  return 0;
}
