/*
 * checkpoint_format.c — a checkpoint file's bytes (checkpoint.h): the header
 * block, the per-chunk CRC, the file names. Pure functions over buffers; the
 * decoder treats its input as untrusted (read back from a disk that may tear
 * or rot). Header block layout, little-endian (docs/store-layout.md,
 * "Checkpoints"):
 *
 *   +0   u32 magic "TCK1"      +40  u64 image_size
 *   +4   u16 version 1         +48  u64 created_ns
 *   +6   u16 flags 0           +56  u64 data_offset
 *   +8   u32 header_size 128   +64  u32 chunk_count
 *   +12  u32 chunk_size        +68  u32 image_format
 *   +16  u64 sequence          +72  u32 table_crc
 *   +24  u64 begin_lsn         +76  48 bytes reserved, 0
 *   +32  u64 end_lsn           +124 u32 header_crc of bytes 0..123
 *   +128 zero up to 4096 (checked: every byte of a checkpoint is covered)
 *
 * Runs on the persister, in recovery at start-up, and in the fuzzer.
 */
#include "checkpoint.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"
#include "persist_bytes.h"

enum {
  OFFSET_MAGIC = 0,
  OFFSET_VERSION = 4,
  OFFSET_FLAGS = 6,
  OFFSET_HEADER_SIZE = 8,
  OFFSET_CHUNK_SIZE = 12,
  OFFSET_SEQUENCE = 16,
  OFFSET_BEGIN_LSN = 24,
  OFFSET_END_LSN = 32,
  OFFSET_IMAGE_SIZE = 40,
  OFFSET_CREATED_NS = 48,
  OFFSET_DATA_OFFSET = 56,
  OFFSET_CHUNK_COUNT = 64,
  OFFSET_IMAGE_FORMAT = 68,
  OFFSET_TABLE_CRC = 72,
  OFFSET_RESERVED = 76,
  OFFSET_HEADER_CRC = 124,
};
static_assert(OFFSET_HEADER_CRC + 4 == TALLY_CHECKPOINT_HEADER_SIZE, "header layout");

const char *tally_checkpoint_rejection_name(enum tally_checkpoint_rejection rejection)
{
  static const char *const names[TALLY_CHECKPOINT_REJECT_COUNT] = {
#define TALLY_CHECKPOINT_REJECTION_TEXT(name, text) text,
    TALLY_CHECKPOINT_REJECTIONS(TALLY_CHECKPOINT_REJECTION_TEXT)
#undef TALLY_CHECKPOINT_REJECTION_TEXT
  };
  assert((uint32_t)rejection < TALLY_CHECKPOINT_REJECT_COUNT);
  return names[rejection];
}

const char *tally_checkpoint_status_name(enum tally_checkpoint_status status)
{
  static const char *const names[TALLY_CHECKPOINT_STATUS_COUNT] = {
    "ok", "more", "i/o error", "none", "corrupt",
  };
  assert((uint32_t)status < TALLY_CHECKPOINT_STATUS_COUNT);
  return names[status];
}

static uint64_t align_block(uint64_t size)
{
  return (size + TALLY_CHECKPOINT_BLOCK_SIZE - 1u) / TALLY_CHECKPOINT_BLOCK_SIZE *
    TALLY_CHECKPOINT_BLOCK_SIZE;
}

uint64_t tally_checkpoint_data_offset(uint32_t chunk_count)
{
  assert(chunk_count >= 1 && chunk_count <= TALLY_CHECKPOINT_CHUNKS_MAX);
  return TALLY_CHECKPOINT_BLOCK_SIZE + align_block((uint64_t)chunk_count * sizeof(uint32_t));
}

void tally_checkpoint_header_encode(uint8_t *out, const struct tally_checkpoint_header *header)
{
  assert(out != NULL);
  assert(header->sequence >= 1);
  assert(header->end_lsn >= header->begin_lsn);
  assert(header->chunk_count >= 1 && header->chunk_count <= TALLY_CHECKPOINT_CHUNKS_MAX);
  assert(header->data_offset == tally_checkpoint_data_offset(header->chunk_count));
  memset(out, 0, TALLY_CHECKPOINT_BLOCK_SIZE);
  persist_store_u32(out + OFFSET_MAGIC, TALLY_CHECKPOINT_MAGIC);
  persist_store_u16(out + OFFSET_VERSION, TALLY_CHECKPOINT_VERSION);
  persist_store_u32(out + OFFSET_HEADER_SIZE, TALLY_CHECKPOINT_HEADER_SIZE);
  persist_store_u32(out + OFFSET_CHUNK_SIZE, header->chunk_size);
  persist_store_u64(out + OFFSET_SEQUENCE, header->sequence);
  persist_store_u64(out + OFFSET_BEGIN_LSN, header->begin_lsn);
  persist_store_u64(out + OFFSET_END_LSN, header->end_lsn);
  persist_store_u64(out + OFFSET_IMAGE_SIZE, header->image_size);
  persist_store_u64(out + OFFSET_CREATED_NS, header->created_ns);
  persist_store_u64(out + OFFSET_DATA_OFFSET, header->data_offset);
  persist_store_u32(out + OFFSET_CHUNK_COUNT, header->chunk_count);
  persist_store_u32(out + OFFSET_IMAGE_FORMAT, header->image_format);
  persist_store_u32(out + OFFSET_TABLE_CRC, header->table_crc);
  persist_store_u32(out + OFFSET_HEADER_CRC,
    tally_persist_crc32c(out, OFFSET_HEADER_CRC, TALLY_CHECKPOINT_HEADER_CRC_SEED));
  struct tally_checkpoint_header check;
  assert(tally_checkpoint_header_decode(out, TALLY_CHECKPOINT_BLOCK_SIZE, &check) ==
    TALLY_CHECKPOINT_REJECT_NONE);
  (void)check;
}

static bool all_zero(const uint8_t *bytes, size_t size)
{
  for (size_t i = 0; i < size; i++) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

/* The fields' relations, once the CRC says the bytes are the ones written. */
static bool header_fields_valid(const struct tally_checkpoint_header *header)
{
  if (header->sequence == 0 || header->end_lsn < header->begin_lsn) return false;
  if (header->chunk_size < TALLY_CHECKPOINT_CHUNK_SIZE_MIN) return false;
  if (header->chunk_size > TALLY_CHECKPOINT_CHUNK_SIZE_MAX) return false;
  if (header->chunk_size % TALLY_CHECKPOINT_BLOCK_SIZE != 0) return false;
  if (header->image_size == 0 || header->image_size > TALLY_CHECKPOINT_IMAGE_SIZE_MAX) return false;
  uint64_t chunks = (header->image_size + header->chunk_size - 1u) / header->chunk_size;
  if (chunks > TALLY_CHECKPOINT_CHUNKS_MAX || header->chunk_count != chunks) return false;
  return header->data_offset == tally_checkpoint_data_offset(header->chunk_count);
}

enum tally_checkpoint_rejection tally_checkpoint_header_decode(const uint8_t *bytes, size_t size,
  struct tally_checkpoint_header *header)
{
  assert(header != NULL);
  memset(header, 0, sizeof(*header));
  if (bytes == NULL || size < TALLY_CHECKPOINT_BLOCK_SIZE) return TALLY_CHECKPOINT_REJECT_TRUNCATED;
  if (persist_load_u32(bytes + OFFSET_MAGIC) != TALLY_CHECKPOINT_MAGIC) {
    return TALLY_CHECKPOINT_REJECT_BAD_MAGIC;
  }
  if (persist_load_u16(bytes + OFFSET_VERSION) != TALLY_CHECKPOINT_VERSION) {
    return TALLY_CHECKPOINT_REJECT_BAD_VERSION;
  }
  uint32_t crc = tally_persist_crc32c(bytes, OFFSET_HEADER_CRC, TALLY_CHECKPOINT_HEADER_CRC_SEED);
  if (persist_load_u32(bytes + OFFSET_HEADER_CRC) != crc) return TALLY_CHECKPOINT_REJECT_BAD_HEADER_CRC;
  if (!all_zero(bytes + TALLY_CHECKPOINT_HEADER_SIZE,
      TALLY_CHECKPOINT_BLOCK_SIZE - TALLY_CHECKPOINT_HEADER_SIZE)) {
    return TALLY_CHECKPOINT_REJECT_BAD_PADDING;
  }
  struct tally_checkpoint_header decoded = {
    .sequence = persist_load_u64(bytes + OFFSET_SEQUENCE),
    .begin_lsn = persist_load_u64(bytes + OFFSET_BEGIN_LSN),
    .end_lsn = persist_load_u64(bytes + OFFSET_END_LSN),
    .image_size = persist_load_u64(bytes + OFFSET_IMAGE_SIZE),
    .created_ns = persist_load_u64(bytes + OFFSET_CREATED_NS),
    .data_offset = persist_load_u64(bytes + OFFSET_DATA_OFFSET),
    .chunk_size = persist_load_u32(bytes + OFFSET_CHUNK_SIZE),
    .chunk_count = persist_load_u32(bytes + OFFSET_CHUNK_COUNT),
    .image_format = persist_load_u32(bytes + OFFSET_IMAGE_FORMAT),
    .table_crc = persist_load_u32(bytes + OFFSET_TABLE_CRC),
  };
  bool fixed_valid = persist_load_u16(bytes + OFFSET_FLAGS) == 0 &&
    persist_load_u32(bytes + OFFSET_HEADER_SIZE) == TALLY_CHECKPOINT_HEADER_SIZE &&
    all_zero(bytes + OFFSET_RESERVED, OFFSET_HEADER_CRC - OFFSET_RESERVED);
  if (!fixed_valid || !header_fields_valid(&decoded)) return TALLY_CHECKPOINT_REJECT_BAD_FIELD;
  *header = decoded;
  return TALLY_CHECKPOINT_REJECT_NONE;
}

uint32_t tally_checkpoint_chunk_crc(uint32_t index, const void *data, size_t size)
{
  assert(data != NULL || size == 0);
  uint8_t index_bytes[4];
  persist_store_u32(index_bytes, index);
  uint32_t crc = tally_persist_crc32c(index_bytes, sizeof index_bytes,
    TALLY_CHECKPOINT_CHUNK_CRC_SEED);
  return tally_persist_crc32c(data, size, crc);
}

#define NAME_PREFIX "ckpt-"
#define NAME_FINAL ".tck"
#define NAME_TEMPORARY ".tmp"

void tally_checkpoint_name(char *out, uint64_t begin_lsn, uint64_t sequence, bool temporary)
{
  assert(out != NULL);
  assert(sequence >= 1);
  int length = snprintf(out, TALLY_DISK_NAME_SIZE_MAX, NAME_PREFIX "%016llx-%016llx%s",
    (unsigned long long)begin_lsn, (unsigned long long)sequence,
    temporary ? NAME_TEMPORARY : NAME_FINAL);
  assert(length > 0 && length < (int)TALLY_DISK_NAME_SIZE_MAX);
  (void)length;
}

bool tally_checkpoint_name_parse(const char *name, uint64_t *begin_lsn, uint64_t *sequence,
  bool *temporary)
{
  assert(name != NULL);
  size_t prefix = sizeof(NAME_PREFIX) - 1u;
  size_t suffix = sizeof(NAME_FINAL) - 1u;
  static_assert(sizeof(NAME_FINAL) == sizeof(NAME_TEMPORARY), "suffixes of one length");
  if (strnlen(name, TALLY_DISK_NAME_SIZE_MAX) != prefix + 16u + 1u + 16u + suffix) return false;
  if (memcmp(name, NAME_PREFIX, prefix) != 0 || name[prefix + 16u] != '-') return false;
  const char *end = name + prefix + 33u;
  bool is_temporary = strcmp(end, NAME_TEMPORARY) == 0;
  if (!is_temporary && strcmp(end, NAME_FINAL) != 0) return false;
  uint64_t lsn, number;
  if (!persist_parse_hex16(name + prefix, &lsn)) return false;
  if (!persist_parse_hex16(name + prefix + 17u, &number) || number == 0) return false;
  *begin_lsn = lsn;
  *sequence = number;
  *temporary = is_temporary;
  return true;
}
