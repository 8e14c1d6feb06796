/*
 * wal_record.c — encoding and checking one write-ahead log record, and the
 * segment names (wal_record.h). Pure; the checks treat their input as
 * untrusted (it is read back from a disk that may tear or rot). Runs on the
 * persister thread, in recovery before the lcores start, and in the fuzzer.
 */
#include "wal_record.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"
#include "persist_bytes.h"

enum {
  OFFSET_MAGIC = 0,
  OFFSET_TYPE = 4,
  OFFSET_FLAGS = 6,
  OFFSET_LSN = 8,
  OFFSET_DURABLE_LSN = 16,
  OFFSET_PAYLOAD_SIZE = 24,
  OFFSET_PAYLOAD_CRC = 28,
  OFFSET_RESERVED = 32,
  OFFSET_HEADER_CRC = 36,
};
static_assert(OFFSET_HEADER_CRC + 4 == TALLY_WAL_RECORD_HEADER_SIZE, "header layout");

void tally_wal_record_encode(uint8_t *out, uint16_t type, uint64_t lsn, uint64_t durable_lsn,
  const void *payload, uint32_t payload_size)
{
  assert(out != NULL);
  assert(type >= TALLY_WAL_TYPE_BATCH && type < TALLY_WAL_TYPE_END);
  assert(lsn >= 1);
  assert(durable_lsn < lsn);
  assert(payload_size <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  assert(payload != NULL || payload_size == 0);
  uint32_t size = tally_wal_record_size(payload_size);
  uint8_t *body = out + TALLY_WAL_RECORD_HEADER_SIZE;
  if (payload_size > 0) memcpy(body, payload, payload_size);
  memset(body + payload_size, 0, size - TALLY_WAL_RECORD_HEADER_SIZE - payload_size);
  persist_store_u32(out + OFFSET_MAGIC, TALLY_WAL_MAGIC);
  persist_store_u16(out + OFFSET_TYPE, type);
  persist_store_u16(out + OFFSET_FLAGS, 0);
  persist_store_u64(out + OFFSET_LSN, lsn);
  persist_store_u64(out + OFFSET_DURABLE_LSN, durable_lsn);
  persist_store_u32(out + OFFSET_PAYLOAD_SIZE, payload_size);
  persist_store_u32(out + OFFSET_PAYLOAD_CRC, tally_persist_crc32c(body,
    size - TALLY_WAL_RECORD_HEADER_SIZE, TALLY_WAL_PAYLOAD_CRC_SEED));
  persist_store_u32(out + OFFSET_RESERVED, 0);
  persist_store_u32(out + OFFSET_HEADER_CRC, tally_persist_crc32c(out, OFFSET_HEADER_CRC,
    TALLY_WAL_HEADER_CRC_SEED));
}

/* The header's own checks: magic, CRC, then every field in range. */
static enum tally_wal_record_check record_check_header(const uint8_t *bytes)
{
  if (persist_load_u32(bytes + OFFSET_MAGIC) != TALLY_WAL_MAGIC) return TALLY_WAL_RECORD_BAD_MAGIC;
  uint32_t crc = tally_persist_crc32c(bytes, OFFSET_HEADER_CRC, TALLY_WAL_HEADER_CRC_SEED);
  if (persist_load_u32(bytes + OFFSET_HEADER_CRC) != crc) return TALLY_WAL_RECORD_BAD_HEADER;
  uint16_t type = persist_load_u16(bytes + OFFSET_TYPE);
  if (type < TALLY_WAL_TYPE_BATCH || type >= TALLY_WAL_TYPE_END) return TALLY_WAL_RECORD_BAD_FIELD;
  if (persist_load_u16(bytes + OFFSET_FLAGS) != 0) return TALLY_WAL_RECORD_BAD_FIELD;
  if (persist_load_u32(bytes + OFFSET_RESERVED) != 0) return TALLY_WAL_RECORD_BAD_FIELD;
  uint64_t lsn = persist_load_u64(bytes + OFFSET_LSN);
  if (lsn == 0 || persist_load_u64(bytes + OFFSET_DURABLE_LSN) >= lsn) return TALLY_WAL_RECORD_BAD_FIELD;
  if (persist_load_u32(bytes + OFFSET_PAYLOAD_SIZE) > TALLY_WAL_PAYLOAD_SIZE_MAX) {
    return TALLY_WAL_RECORD_BAD_FIELD;
  }
  return TALLY_WAL_RECORD_VALID;
}

enum tally_wal_record_check tally_wal_record_check(const uint8_t *bytes, size_t available,
  struct tally_wal_record *record)
{
  assert(record != NULL);
  assert(bytes != NULL || available == 0);
  memset(record, 0, sizeof(*record));
  if (available < TALLY_WAL_RECORD_HEADER_SIZE) return TALLY_WAL_RECORD_TRUNCATED;
  enum tally_wal_record_check check = record_check_header(bytes);
  if (check != TALLY_WAL_RECORD_VALID) return check;
  uint32_t payload_size = persist_load_u32(bytes + OFFSET_PAYLOAD_SIZE);
  uint32_t size = tally_wal_record_size(payload_size);
  if (available < size) return TALLY_WAL_RECORD_TRUNCATED;
  const uint8_t *body = bytes + TALLY_WAL_RECORD_HEADER_SIZE;
  uint32_t crc = tally_persist_crc32c(body, size - TALLY_WAL_RECORD_HEADER_SIZE,
    TALLY_WAL_PAYLOAD_CRC_SEED);
  if (persist_load_u32(bytes + OFFSET_PAYLOAD_CRC) != crc) return TALLY_WAL_RECORD_BAD_PAYLOAD;
  record->type = persist_load_u16(bytes + OFFSET_TYPE);
  record->lsn = persist_load_u64(bytes + OFFSET_LSN);
  record->durable_lsn = persist_load_u64(bytes + OFFSET_DURABLE_LSN);
  record->payload = body;
  record->payload_size = payload_size;
  record->size = size;
  assert(record->durable_lsn < record->lsn);
  return TALLY_WAL_RECORD_VALID;
}

const char *tally_wal_record_check_name(enum tally_wal_record_check check)
{
  static const char *const names[TALLY_WAL_RECORD_CHECK_COUNT] = {
    "valid", "truncated", "bad magic", "bad header checksum", "bad header field",
    "bad payload checksum",
  };
  assert((uint32_t)check < TALLY_WAL_RECORD_CHECK_COUNT);
  return names[check];
}

#define SEGMENT_PREFIX "wal-"
#define SEGMENT_SUFFIX ".log"
#define SEGMENT_DIGITS 16u

void tally_wal_segment_name(char *out, uint64_t first_lsn)
{
  assert(out != NULL);
  assert(first_lsn >= 1);
  int length = snprintf(out, TALLY_DISK_NAME_SIZE_MAX, SEGMENT_PREFIX "%016llx" SEGMENT_SUFFIX,
    (unsigned long long)first_lsn);
  assert(length > 0 && length < (int)TALLY_DISK_NAME_SIZE_MAX);
  (void)length;
}

bool tally_wal_segment_parse(const char *name, uint64_t *first_lsn)
{
  assert(name != NULL);
  assert(first_lsn != NULL);
  size_t prefix = sizeof(SEGMENT_PREFIX) - 1u;
  size_t suffix = sizeof(SEGMENT_SUFFIX) - 1u;
  if (strlen(name) != prefix + SEGMENT_DIGITS + suffix) return false;
  if (memcmp(name, SEGMENT_PREFIX, prefix) != 0) return false;
  if (strcmp(name + prefix + SEGMENT_DIGITS, SEGMENT_SUFFIX) != 0) return false;
  uint64_t value;
  if (!persist_parse_hex16(name + prefix, &value)) return false;
  if (value == 0) return false;
  *first_lsn = value;
  return true;
}
