/*
 * checkpoint_read.c — recovery of checkpoints (checkpoint.h): lists the
 * checkpoint files, tries them newest first, checks every byte of each
 * (header block, name, size, CRC table, every chunk), streams the first valid
 * one to a sink, and says in one line which newer ones it rejected and why.
 * Writes nothing. Every size read from a file is checked against the limits
 * before it is used, so any bytes are safe. Memory: one allocation at create
 * (a chunk of the largest size, the largest table, a directory listing).
 *
 * Also the listing and the per-file check the writer uses for its retention
 * (checkpoint_internal.h). Thread: start-up (recovery); the persister.
 */
#include "checkpoint_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "persist_bytes.h"

/* ---- Listing ------------------------------------------------------------------ */

bool checkpoint_listing_init(struct checkpoint_listing *listing)
{
  assert(listing != NULL);
  memset(listing, 0, sizeof(*listing));
  listing->names = calloc(TALLY_CHECKPOINT_DIR_NAMES_MAX, sizeof(*listing->names));
  return listing->names != NULL;
}

void checkpoint_listing_free(struct checkpoint_listing *listing)
{
  assert(listing != NULL);
  free(listing->names);
  listing->names = NULL;
}

static int entry_newer_first(const void *a, const void *b)
{
  uint64_t left = ((const struct checkpoint_entry *)a)->sequence;
  uint64_t right = ((const struct checkpoint_entry *)b)->sequence;
  return (left < right) - (left > right);
}

/* Keeps the TALLY_CHECKPOINT_FILES_MAX newest: a new entry replaces the oldest held when full. */
static void listing_add(struct checkpoint_listing *listing, const struct checkpoint_entry *entry)
{
  if (listing->count < TALLY_CHECKPOINT_FILES_MAX) {
    listing->entries[listing->count++] = *entry;
    return;
  }
  listing->ignored++;
  uint32_t oldest = 0;
  for (uint32_t i = 1; i < listing->count; i++) {
    if (listing->entries[i].sequence < listing->entries[oldest].sequence) oldest = i;
  }
  if (listing->entries[oldest].sequence < entry->sequence) listing->entries[oldest] = *entry;
}

int checkpoint_list(struct tally_disk *disk, struct checkpoint_listing *listing, bool temporary)
{
  assert(disk != NULL);
  assert(listing != NULL && listing->names != NULL);
  listing->count = 0;
  listing->ignored = 0;
  listing->sequence_max = 0;
  int count = disk->ops->list(disk->context, listing->names, TALLY_CHECKPOINT_DIR_NAMES_MAX);
  if (count < 0) return count;
  assert((uint32_t)count <= TALLY_CHECKPOINT_DIR_NAMES_MAX);
  for (int i = 0; i < count; i++) {
    struct checkpoint_entry entry;
    bool is_temporary;
    if (!tally_checkpoint_name_parse(listing->names[i], &entry.begin_lsn, &entry.sequence,
        &is_temporary)) {
      continue; /* log segments and anything else: not ours */
    }
    if (entry.sequence > listing->sequence_max) listing->sequence_max = entry.sequence;
    if (is_temporary != temporary) continue;
    memcpy(entry.name, listing->names[i], sizeof entry.name);
    listing_add(listing, &entry);
  }
  qsort(listing->entries, listing->count, sizeof(listing->entries[0]), entry_newer_first);
  return 0;
}

/* ---- One file --------------------------------------------------------------------- */

/* Reads exactly size bytes at offset: REJECT_NONE, TRUNCATED (short) or READ_ERROR. */
static enum tally_checkpoint_rejection read_exact(struct tally_disk *disk, int file, void *data,
  size_t size, uint64_t offset)
{
  int64_t got = disk->ops->read(disk->context, file, data, size, offset);
  if (got < 0) return TALLY_CHECKPOINT_REJECT_READ_ERROR;
  return (uint64_t)got == size ? TALLY_CHECKPOINT_REJECT_NONE : TALLY_CHECKPOINT_REJECT_TRUNCATED;
}

/* The checks after the header decoded: name, size, table. */
static enum tally_checkpoint_rejection check_body(struct tally_disk *disk, int file,
  const struct checkpoint_entry *entry, const struct tally_checkpoint_header *header,
  uint8_t *table)
{
  if (header->begin_lsn != entry->begin_lsn || header->sequence != entry->sequence) {
    return TALLY_CHECKPOINT_REJECT_NAME_MISMATCH;
  }
  int64_t size = disk->ops->size(disk->context, file);
  if (size < 0) return TALLY_CHECKPOINT_REJECT_READ_ERROR;
  if ((uint64_t)size != header->data_offset + header->image_size) return TALLY_CHECKPOINT_REJECT_BAD_SIZE;
  size_t region = (size_t)(header->data_offset - TALLY_CHECKPOINT_BLOCK_SIZE);
  assert(region <= CHECKPOINT_TABLE_REGION_MAX);
  enum tally_checkpoint_rejection read = read_exact(disk, file, table, region,
    TALLY_CHECKPOINT_BLOCK_SIZE);
  if (read != TALLY_CHECKPOINT_REJECT_NONE) {
    return read == TALLY_CHECKPOINT_REJECT_TRUNCATED ? TALLY_CHECKPOINT_REJECT_BAD_SIZE : read;
  }
  size_t used = (size_t)header->chunk_count * sizeof(uint32_t);
  if (tally_persist_crc32c(table, used, TALLY_CHECKPOINT_TABLE_CRC_SEED) != header->table_crc) {
    return TALLY_CHECKPOINT_REJECT_BAD_TABLE_CRC;
  }
  for (size_t i = used; i < region; i++) {
    if (table[i] != 0) return TALLY_CHECKPOINT_REJECT_BAD_PADDING;
  }
  return TALLY_CHECKPOINT_REJECT_NONE;
}

enum tally_checkpoint_rejection checkpoint_check_file(struct tally_disk *disk,
  const struct checkpoint_entry *entry, uint8_t *block, uint8_t *table,
  struct tally_checkpoint_header *header, int *file)
{
  assert(disk != NULL && entry != NULL && block != NULL && table != NULL);
  assert(header != NULL && file != NULL);
  *file = -1;
  int opened = disk->ops->open(disk->context, entry->name, false);
  if (opened < 0) return TALLY_CHECKPOINT_REJECT_READ_ERROR;
  enum tally_checkpoint_rejection rejection = read_exact(disk, opened, block,
    TALLY_CHECKPOINT_BLOCK_SIZE, 0);
  if (rejection == TALLY_CHECKPOINT_REJECT_NONE) {
    rejection = tally_checkpoint_header_decode(block, TALLY_CHECKPOINT_BLOCK_SIZE, header);
  }
  if (rejection == TALLY_CHECKPOINT_REJECT_NONE) {
    rejection = check_body(disk, opened, entry, header, table);
  }
  if (rejection != TALLY_CHECKPOINT_REJECT_NONE) {
    disk->ops->close(disk->context, opened);
    return rejection;
  }
  *file = opened;
  return TALLY_CHECKPOINT_REJECT_NONE;
}

/* ---- Recovery ----------------------------------------------------------------------- */

struct tally_checkpoint_reader {
  struct checkpoint_listing listing;
  uint8_t *block; /* TALLY_CHECKPOINT_BLOCK_SIZE */
  uint8_t *table; /* CHECKPOINT_TABLE_REGION_MAX */
  uint8_t *chunk; /* TALLY_CHECKPOINT_CHUNK_SIZE_MAX */
};

struct tally_checkpoint_reader *tally_checkpoint_reader_create(void)
{
  struct tally_checkpoint_reader *reader = calloc(1, sizeof(*reader));
  if (reader == NULL) return NULL;
  size_t size = TALLY_CHECKPOINT_BLOCK_SIZE + CHECKPOINT_TABLE_REGION_MAX +
    TALLY_CHECKPOINT_CHUNK_SIZE_MAX;
  uint8_t *memory = aligned_alloc(TALLY_CHECKPOINT_BLOCK_SIZE, size);
  if (memory == NULL || !checkpoint_listing_init(&reader->listing)) {
    free(memory);
    free(reader);
    return NULL;
  }
  reader->block = memory;
  reader->table = memory + TALLY_CHECKPOINT_BLOCK_SIZE;
  reader->chunk = reader->table + CHECKPOINT_TABLE_REGION_MAX;
  return reader;
}

void tally_checkpoint_reader_destroy(struct tally_checkpoint_reader *reader)
{
  if (reader == NULL) return;
  checkpoint_listing_free(&reader->listing);
  free(reader->block);
  free(reader);
}

/* Reads, checks and delivers every chunk of an open, checked file. *chunk_failed: which failed. */
static enum tally_checkpoint_rejection deliver_chunks(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, int file, const struct tally_checkpoint_header *header,
  const struct tally_checkpoint_sink *sink, uint32_t *chunk_failed)
{
  for (uint32_t index = 0; index < header->chunk_count; index++) {
    *chunk_failed = index;
    uint64_t offset = (uint64_t)index * header->chunk_size;
    uint64_t left = header->image_size - offset;
    size_t size = left < header->chunk_size ? (size_t)left : header->chunk_size;
    assert(size >= 1 && size <= TALLY_CHECKPOINT_CHUNK_SIZE_MAX);
    uint8_t *into = sink->place != NULL ? sink->place(sink->context, offset, size) : NULL;
    if (into == NULL) into = reader->chunk;
    enum tally_checkpoint_rejection read = read_exact(disk, file, into, size,
      header->data_offset + offset);
    if (read != TALLY_CHECKPOINT_REJECT_NONE) {
      return read == TALLY_CHECKPOINT_REJECT_TRUNCATED ? TALLY_CHECKPOINT_REJECT_BAD_SIZE : read;
    }
    uint32_t expected = persist_load_u32(reader->table + (size_t)index * sizeof(uint32_t));
    if (tally_checkpoint_chunk_crc(index, into, size) != expected) {
      return TALLY_CHECKPOINT_REJECT_BAD_CHUNK_CRC;
    }
    if (sink->chunk(sink->context, offset, into, size) != 0) {
      return TALLY_CHECKPOINT_REJECT_REFUSED;
    }
  }
  return TALLY_CHECKPOINT_REJECT_NONE;
}

static enum tally_checkpoint_rejection recover_one(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, const struct checkpoint_entry *entry,
  const struct tally_checkpoint_sink *sink, struct tally_checkpoint_header *header,
  uint32_t *chunk_failed)
{
  int file;
  enum tally_checkpoint_rejection rejection = checkpoint_check_file(disk, entry, reader->block,
    reader->table, header, &file);
  if (rejection != TALLY_CHECKPOINT_REJECT_NONE) return rejection;
  if (sink->begin(sink->context, header) != 0) rejection = TALLY_CHECKPOINT_REJECT_REFUSED;
  else rejection = deliver_chunks(reader, disk, file, header, sink, chunk_failed);
  disk->ops->close(disk->context, file);
  return rejection;
}

/* Adds "name: reason" to the one-line report (cut short, never overrun). */
static void report_add(struct tally_checkpoint_recovery *recovery, const char *name,
  enum tally_checkpoint_rejection rejection, uint32_t chunk, uint32_t chunk_count)
{
  size_t used = strlen(recovery->report);
  size_t room = sizeof recovery->report - used;
  if (room <= 1) return;
  const char *lead = used == 0 ? "rejected " : "; ";
  if (rejection == TALLY_CHECKPOINT_REJECT_BAD_CHUNK_CRC) {
    snprintf(recovery->report + used, room, "%s%s: %s (chunk %u of %u)", lead, name,
      tally_checkpoint_rejection_name(rejection), chunk + 1u, chunk_count);
  } else {
    snprintf(recovery->report + used, room, "%s%s: %s", lead, name,
      tally_checkpoint_rejection_name(rejection));
  }
}

enum tally_checkpoint_status tally_checkpoint_recover(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, const struct tally_checkpoint_sink *sink,
  struct tally_checkpoint_recovery *recovery)
{
  assert(reader != NULL && disk != NULL && recovery != NULL);
  assert(sink != NULL && sink->begin != NULL && sink->chunk != NULL);
  memset(recovery, 0, sizeof(*recovery));
  struct checkpoint_listing *listing = &reader->listing;
  int listed = checkpoint_list(disk, listing, false);
  if (listed != 0) {
    snprintf(recovery->report, sizeof recovery->report, "cannot list the checkpoints: %s",
      strerror(-listed));
    return recovery->status = TALLY_CHECKPOINT_IO_ERROR;
  }
  recovery->found = listing->count + listing->ignored;
  recovery->ignored = listing->ignored;
  if (listing->count == 0) return recovery->status = TALLY_CHECKPOINT_NONE;
  for (uint32_t i = 0; i < listing->count; i++) {
    const struct checkpoint_entry *entry = &listing->entries[i];
    struct tally_checkpoint_header header = {0};
    uint32_t chunk_failed = 0;
    enum tally_checkpoint_rejection rejection = recover_one(reader, disk, entry, sink, &header,
      &chunk_failed);
    if (rejection == TALLY_CHECKPOINT_REJECT_NONE) {
      memcpy(recovery->name, entry->name, sizeof recovery->name);
      recovery->header = header;
      return recovery->status = TALLY_CHECKPOINT_OK;
    }
    if (recovery->rejected++ == 0) recovery->first_rejection = rejection;
    report_add(recovery, entry->name, rejection, chunk_failed, header.chunk_count);
  }
  return recovery->status = TALLY_CHECKPOINT_CORRUPT;
}

/* ---- Into a buffer ---------------------------------------------------------------- */

struct buffer_sink {
  uint8_t *buffer;
  uint64_t buffer_size;
  uint32_t image_format;
};

static int buffer_begin(void *context, const struct tally_checkpoint_header *header)
{
  const struct buffer_sink *sink = context;
  if (header->image_size > sink->buffer_size) return -1;
  return sink->image_format != 0 && header->image_format != sink->image_format ? -1 : 0;
}

/* The chunk is read straight into its place in the buffer (begin checked the image fits). */
static void *buffer_place(void *context, uint64_t offset, size_t size)
{
  const struct buffer_sink *sink = context;
  assert(offset + size <= sink->buffer_size);
  return sink->buffer + offset;
}

static int buffer_chunk(void *context, uint64_t offset, const void *data, size_t size)
{
  const struct buffer_sink *sink = context;
  assert(data == sink->buffer + offset); /* placed there: nothing to copy */
  (void)sink;
  (void)offset;
  (void)data;
  (void)size;
  return 0;
}

enum tally_checkpoint_status tally_checkpoint_load(struct tally_checkpoint_reader *reader,
  struct tally_disk *disk, void *buffer, uint64_t buffer_size, uint32_t image_format,
  struct tally_checkpoint_recovery *recovery)
{
  assert(buffer != NULL || buffer_size == 0);
  struct buffer_sink context = {
    .buffer = buffer, .buffer_size = buffer_size, .image_format = image_format,
  };
  struct tally_checkpoint_sink sink = {
    .begin = buffer_begin, .chunk = buffer_chunk, .place = buffer_place, .context = &context,
  };
  return tally_checkpoint_recover(reader, disk, &sink, recovery);
}
