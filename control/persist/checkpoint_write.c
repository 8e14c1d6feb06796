/*
 * checkpoint_write.c — the checkpoint writer (checkpoint.h): a fuzzy copy of
 * the image, chunk by chunk into the writer's own buffer, each chunk
 * checksummed and written from that buffer, in steps of a bounded number of
 * bytes; then the CRC table and the header, one fdatasync, the rename to the
 * final name, the directory fsync; then the retention (all but the new
 * checkpoint and the previous one deleted, the directory fsync'd again).
 * Write order and why it is crash-safe: docs/store-layout.md, "Checkpoints".
 * Memory: one allocation at create (a chunk, the table, a directory listing).
 *
 * Thread: the persister (not thread-safe). The image is read while other
 * threads write it: that is the fuzzy copy, made consistent by log replay.
 */
#include "checkpoint_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "persist_bytes.h"

struct tally_checkpoint_writer {
  struct tally_disk *disk;
  struct tally_checkpoint_options options;
  struct checkpoint_listing listing;
  uint8_t *chunk;  /* options.chunk_size: the private copy of one chunk */
  uint8_t *block;  /* TALLY_CHECKPOINT_BLOCK_SIZE: the header block */
  uint8_t *table;  /* CHECKPOINT_TABLE_REGION_MAX: the chunk CRCs (little-endian), zero-padded */
  /* The attempt in flight. */
  bool active;
  const uint8_t *image;
  struct tally_checkpoint_header header;
  int file;        /* the temporary file, -1 when closed */
  char temporary_name[TALLY_DISK_NAME_SIZE_MAX];
  char final_name[TALLY_DISK_NAME_SIZE_MAX];
  uint32_t chunk_next;
  uint64_t copied;
  uint64_t unsynced; /* bytes written since the last fdatasync */
  uint64_t trusted_sequence; /* kept as the previous one by retention (0: none known) */
  struct tally_checkpoint_writer_stats stats;
};

void tally_checkpoint_options_default(struct tally_checkpoint_options *options)
{
  assert(options != NULL);
  options->chunk_size = TALLY_CHECKPOINT_CHUNK_SIZE_DEFAULT;
  options->sync_bytes = TALLY_CHECKPOINT_SYNC_BYTES_DEFAULT;
  options->image_format = 0;
}

struct tally_checkpoint_writer *tally_checkpoint_writer_create(struct tally_disk *disk,
  const struct tally_checkpoint_options *options, char *error, size_t error_size)
{
  assert(disk != NULL && disk->ops != NULL);
  assert(options != NULL);
  uint32_t chunk_size = options->chunk_size;
  if (chunk_size < TALLY_CHECKPOINT_CHUNK_SIZE_MIN || chunk_size > TALLY_CHECKPOINT_CHUNK_SIZE_MAX ||
    chunk_size % TALLY_CHECKPOINT_BLOCK_SIZE != 0) {
    snprintf(error, error_size, "checkpoint chunk size %u: want a multiple of %u in %u..%u",
      chunk_size, TALLY_CHECKPOINT_BLOCK_SIZE, TALLY_CHECKPOINT_CHUNK_SIZE_MIN,
      TALLY_CHECKPOINT_CHUNK_SIZE_MAX);
    return NULL;
  }
  struct tally_checkpoint_writer *writer = calloc(1, sizeof(*writer));
  uint8_t *memory = aligned_alloc(TALLY_CHECKPOINT_BLOCK_SIZE,
    (size_t)chunk_size + TALLY_CHECKPOINT_BLOCK_SIZE + CHECKPOINT_TABLE_REGION_MAX);
  if (writer == NULL || memory == NULL || !checkpoint_listing_init(&writer->listing)) {
    if (writer != NULL) checkpoint_listing_free(&writer->listing);
    free(memory);
    free(writer);
    snprintf(error, error_size, "checkpoint writer: out of memory");
    return NULL;
  }
  writer->disk = disk;
  writer->options = *options;
  writer->chunk = memory;
  writer->block = memory + chunk_size;
  writer->table = writer->block + TALLY_CHECKPOINT_BLOCK_SIZE;
  writer->file = -1;
  return writer;
}

void tally_checkpoint_writer_destroy(struct tally_checkpoint_writer *writer)
{
  if (writer == NULL) return;
  tally_checkpoint_writer_cancel(writer);
  checkpoint_listing_free(&writer->listing);
  free(writer->chunk);
  free(writer);
}

bool tally_checkpoint_writer_active(const struct tally_checkpoint_writer *writer)
{
  assert(writer != NULL);
  return writer->active;
}

uint64_t tally_checkpoint_writer_copied(const struct tally_checkpoint_writer *writer)
{
  assert(writer != NULL);
  return writer->copied;
}

const struct tally_checkpoint_writer_stats *tally_checkpoint_writer_stats(
  const struct tally_checkpoint_writer *writer)
{
  assert(writer != NULL);
  return &writer->stats;
}

/* Closes and unlinks the temporary file (best effort: leftovers are removed by the next begin). */
static void writer_discard(struct tally_checkpoint_writer *writer)
{
  const struct tally_disk_ops *ops = writer->disk->ops;
  if (writer->file >= 0) {
    ops->close(writer->disk->context, writer->file);
    writer->file = -1;
  }
  ops->unlink(writer->disk->context, writer->temporary_name);
  writer->active = false;
}

/* An I/O call failed: the attempt is over (a failed fdatasync is never retried). */
static enum tally_checkpoint_status writer_fail(struct tally_checkpoint_writer *writer, int error,
  const char *what)
{
  assert(error < 0);
  writer->stats.failed++;
  writer->stats.last_error = error;
  snprintf(writer->stats.last_error_text, sizeof writer->stats.last_error_text,
    "checkpoint %s: %s failed: %s", writer->temporary_name, what, strerror(-error));
  writer_discard(writer);
  return TALLY_CHECKPOINT_IO_ERROR;
}

void tally_checkpoint_writer_cancel(struct tally_checkpoint_writer *writer)
{
  assert(writer != NULL);
  if (!writer->active) return;
  writer_discard(writer);
  writer->stats.cancelled++;
}

/* Unlinks temporary files a crash left behind, and learns the highest sequence in use. */
static int writer_clean_temporaries(struct tally_checkpoint_writer *writer)
{
  int result = checkpoint_list(writer->disk, &writer->listing, true);
  if (result != 0) return result;
  for (uint32_t i = 0; i < writer->listing.count; i++) {
    result = writer->disk->ops->unlink(writer->disk->context, writer->listing.entries[i].name);
    if (result != 0 && result != -ENOENT) return result;
  }
  return 0;
}

int tally_checkpoint_writer_begin(struct tally_checkpoint_writer *writer, const void *image,
  uint64_t image_size, uint64_t begin_lsn, uint64_t created_ns)
{
  assert(writer != NULL);
  assert(!writer->active);
  assert(image != NULL && image_size >= 1);
  uint32_t chunk_size = writer->options.chunk_size;
  uint64_t chunks = (image_size + chunk_size - 1u) / chunk_size;
  if (chunks > TALLY_CHECKPOINT_CHUNKS_MAX || image_size > TALLY_CHECKPOINT_IMAGE_SIZE_MAX) {
    return -EFBIG;
  }
  int result = writer_clean_temporaries(writer);
  if (result == 0) result = checkpoint_list(writer->disk, &writer->listing, false);
  if (result != 0) return result;
  if (writer->listing.sequence_max == UINT64_MAX) return -EOVERFLOW; /* a name no writer made */
  uint64_t sequence = writer->listing.sequence_max + 1u;
  tally_checkpoint_name(writer->temporary_name, begin_lsn, sequence, true);
  tally_checkpoint_name(writer->final_name, begin_lsn, sequence, false);
  int file = writer->disk->ops->open(writer->disk->context, writer->temporary_name, true);
  if (file < 0) return file;
  writer->header = (struct tally_checkpoint_header){
    .sequence = sequence, .begin_lsn = begin_lsn, .end_lsn = begin_lsn,
    .image_size = image_size, .created_ns = created_ns,
    .data_offset = tally_checkpoint_data_offset((uint32_t)chunks),
    .chunk_size = chunk_size, .chunk_count = (uint32_t)chunks,
    .image_format = writer->options.image_format,
  };
  memset(writer->table, 0, CHECKPOINT_TABLE_REGION_MAX);
  writer->file = file;
  writer->image = image;
  writer->chunk_next = 0;
  writer->copied = 0;
  writer->unsynced = 0;
  writer->active = true;
  writer->stats.started++;
  return 0;
}

/* Copies chunk chunk_next into the private buffer, checksums it there, writes it. 0 or -errno. */
static int writer_chunk(struct tally_checkpoint_writer *writer, uint64_t *written)
{
  const struct tally_checkpoint_header *header = &writer->header;
  uint32_t index = writer->chunk_next;
  assert(index < header->chunk_count);
  uint64_t offset = (uint64_t)index * header->chunk_size;
  uint64_t left = header->image_size - offset;
  size_t size = left < header->chunk_size ? (size_t)left : header->chunk_size;
  memcpy(writer->chunk, writer->image + offset, size); /* fuzzy: the image may change meanwhile */
  persist_store_u32(writer->table + (size_t)index * sizeof(uint32_t),
    tally_checkpoint_chunk_crc(index, writer->chunk, size));
  int result = writer->disk->ops->write(writer->disk->context, writer->file, writer->chunk, size,
    header->data_offset + offset);
  if (result != 0) return result;
  writer->chunk_next++;
  writer->copied += size;
  writer->unsynced += size;
  writer->stats.bytes_written += size;
  *written += size;
  return 0;
}

enum tally_checkpoint_status tally_checkpoint_writer_step(struct tally_checkpoint_writer *writer,
  uint64_t max_bytes)
{
  assert(writer != NULL);
  assert(writer->active);
  assert(max_bytes >= 1);
  uint64_t written = 0;
  while (writer->chunk_next < writer->header.chunk_count && written < max_bytes) {
    int result = writer_chunk(writer, &written);
    if (result != 0) return writer_fail(writer, result, "write");
    if (writer->options.sync_bytes != 0 && writer->unsynced >= writer->options.sync_bytes) {
      result = writer->disk->ops->sync(writer->disk->context, writer->file);
      if (result != 0) return writer_fail(writer, result, "fdatasync");
      writer->stats.syncs++;
      writer->unsynced = 0;
    }
  }
  return writer->chunk_next == writer->header.chunk_count ? TALLY_CHECKPOINT_OK
                                                         : TALLY_CHECKPOINT_MORE;
}

void tally_checkpoint_writer_trust(struct tally_checkpoint_writer *writer,
  const struct tally_checkpoint_recovery *recovery)
{
  assert(writer != NULL && recovery != NULL);
  assert(recovery->status == TALLY_CHECKPOINT_OK);
  assert(recovery->header.sequence >= 1);
  writer->trusted_sequence = recovery->header.sequence;
}

/* Whether the trusted checkpoint is listed, older than the new one. */
static bool writer_trusted_listed(const struct tally_checkpoint_writer *writer)
{
  if (writer->trusted_sequence == 0 || writer->trusted_sequence >= writer->header.sequence) {
    return false;
  }
  for (uint32_t i = 0; i < writer->listing.count; i++) {
    if (writer->listing.entries[i].sequence == writer->trusted_sequence) return true;
  }
  return false;
}

/* Without a trusted one: the newest older file whose header and table check. */
static bool writer_header_keeps(struct tally_checkpoint_writer *writer,
  const struct checkpoint_entry *entry, bool *previous_kept)
{
  struct tally_checkpoint_header header;
  int file;
  enum tally_checkpoint_rejection rejection = checkpoint_check_file(writer->disk, entry,
    writer->block, writer->table, &header, &file);
  if (rejection == TALLY_CHECKPOINT_REJECT_NONE) writer->disk->ops->close(writer->disk->context, file);
  *previous_kept = rejection == TALLY_CHECKPOINT_REJECT_NONE;
  /* A file that cannot be read is kept (the error may pass), but is not the previous one. */
  return rejection == TALLY_CHECKPOINT_REJECT_NONE || rejection == TALLY_CHECKPOINT_REJECT_READ_ERROR;
}

/*
 * After the new checkpoint is durable: keeps it and the previous one, deletes
 * the others. The previous one is the newest older file whose header and
 * table check, not newer than the trusted one (the last this writer finished,
 * or the one recovery verified and loaded: tally_checkpoint_writer_trust) when
 * that is listed, so files recovery rejected go. Returns the oldest kept
 * begin_lsn.
 */
static uint64_t writer_retain(struct tally_checkpoint_writer *writer,
  struct tally_checkpoint_done *done)
{
  const struct tally_disk_ops *ops = writer->disk->ops;
  uint64_t cut_lsn = writer->header.begin_lsn;
  if (checkpoint_list(writer->disk, &writer->listing, false) != 0) return cut_lsn;
  bool trusted_listed = writer_trusted_listed(writer);
  bool previous_kept = false;
  uint32_t deleted = 0;
  for (uint32_t i = 0; i < writer->listing.count; i++) {
    const struct checkpoint_entry *entry = &writer->listing.entries[i];
    if (entry->sequence >= writer->header.sequence) continue; /* the new one */
    bool keep = false;
    bool rejected = trusted_listed && entry->sequence > writer->trusted_sequence;
    if (!previous_kept && !rejected) keep = writer_header_keeps(writer, entry, &previous_kept);
    if (keep) {
      if (entry->begin_lsn < cut_lsn) cut_lsn = entry->begin_lsn;
      continue;
    }
    if (ops->unlink(writer->disk->context, entry->name) == 0) deleted++;
    else done->delete_failed++;
  }
  if (deleted > 0 && ops->sync_dir(writer->disk->context) != 0) done->delete_failed++;
  done->deleted = deleted;
  writer->stats.deleted += deleted;
  writer->stats.delete_failed += done->delete_failed;
  return cut_lsn;
}

enum tally_checkpoint_status tally_checkpoint_writer_finish(struct tally_checkpoint_writer *writer,
  uint64_t end_lsn, struct tally_checkpoint_done *done)
{
  assert(writer != NULL && done != NULL);
  assert(writer->active);
  assert(writer->chunk_next == writer->header.chunk_count); /* step returned OK */
  assert(end_lsn >= writer->header.begin_lsn);
  memset(done, 0, sizeof(*done));
  struct tally_checkpoint_header *header = &writer->header;
  header->end_lsn = end_lsn;
  header->table_crc = tally_persist_crc32c(writer->table,
    (size_t)header->chunk_count * sizeof(uint32_t), TALLY_CHECKPOINT_TABLE_CRC_SEED);
  tally_checkpoint_header_encode(writer->block, header);
  const struct tally_disk_ops *ops = writer->disk->ops;
  void *context = writer->disk->context;
  size_t region = (size_t)(header->data_offset - TALLY_CHECKPOINT_BLOCK_SIZE);
  int result = ops->write(context, writer->file, writer->table, region, TALLY_CHECKPOINT_BLOCK_SIZE);
  if (result != 0) return writer_fail(writer, result, "write");
  result = ops->write(context, writer->file, writer->block, TALLY_CHECKPOINT_BLOCK_SIZE, 0);
  if (result != 0) return writer_fail(writer, result, "write");
  writer->stats.bytes_written += region + TALLY_CHECKPOINT_BLOCK_SIZE;
  result = ops->sync(context, writer->file);
  if (result != 0) return writer_fail(writer, result, "fdatasync");
  writer->stats.syncs++;
  ops->close(context, writer->file);
  writer->file = -1;
  result = ops->rename(context, writer->temporary_name, writer->final_name);
  if (result != 0) return writer_fail(writer, result, "rename");
  /* From here the file is whole and synced under its final name; until the directory is
   * synced it may or may not survive a power loss, and either is a valid state. */
  result = ops->sync_dir(context);
  if (result != 0) return writer_fail(writer, result, "directory fsync");
  writer->active = false;
  writer->stats.finished++;
  memcpy(done->name, writer->final_name, sizeof done->name);
  done->sequence = header->sequence;
  done->begin_lsn = header->begin_lsn;
  done->end_lsn = end_lsn;
  done->file_size = header->data_offset + header->image_size;
  done->cut_lsn = writer_retain(writer, done);
  writer->trusted_sequence = header->sequence; /* the previous one of the next retention */
  assert(done->cut_lsn <= done->begin_lsn);
  return TALLY_CHECKPOINT_OK;
}
