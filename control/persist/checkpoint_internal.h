/*
 * checkpoint_internal.h — what the checkpoint writer (checkpoint_write.c)
 * and recovery (checkpoint_read.c) share and nothing else should use: the
 * listing of a directory's checkpoint files and the check of one file's
 * header, name, size and CRC table. Not installed; not for callers.
 * Thread: the persister, or start-up.
 */
#ifndef TALLY_PERSIST_CHECKPOINT_INTERNAL_H
#define TALLY_PERSIST_CHECKPOINT_INTERNAL_H

#include "checkpoint.h"

/* Bytes of the CRC table region a reader or writer needs at most (padded). */
#define CHECKPOINT_TABLE_REGION_MAX \
  ((TALLY_CHECKPOINT_CHUNKS_MAX * 4u + TALLY_CHECKPOINT_BLOCK_SIZE - 1u) / \
    TALLY_CHECKPOINT_BLOCK_SIZE * TALLY_CHECKPOINT_BLOCK_SIZE)

struct checkpoint_entry {
  uint64_t sequence;
  uint64_t begin_lsn;
  char name[TALLY_DISK_NAME_SIZE_MAX];
};

/* A directory listing's memory: names as listed, then the checkpoints among them. */
struct checkpoint_listing {
  char (*names)[TALLY_DISK_NAME_SIZE_MAX]; /* TALLY_CHECKPOINT_DIR_NAMES_MAX */
  struct checkpoint_entry entries[TALLY_CHECKPOINT_FILES_MAX];
  uint32_t count;         /* entries: the newest final (or temporary) files, newest first */
  uint32_t ignored;       /* more files of the kind than entries can hold (the oldest) */
  uint64_t sequence_max;  /* the highest sequence of any final or temporary name; 0: none */
};

/* Allocates names; false when out of memory. */
bool checkpoint_listing_init(struct checkpoint_listing *listing);
void checkpoint_listing_free(struct checkpoint_listing *listing);

/* Lists disk's checkpoint files of one kind (temporary or final) into listing: 0 or -errno. */
int checkpoint_list(struct tally_disk *disk, struct checkpoint_listing *listing, bool temporary);

/*
 * Opens entry and checks its header block, its name, its size and its CRC
 * table (into block and table, CHECKPOINT_TABLE_REGION_MAX bytes). REJECT_NONE
 * with the file left open in *file, or the reason (file closed).
 */
enum tally_checkpoint_rejection checkpoint_check_file(struct tally_disk *disk,
  const struct checkpoint_entry *entry, uint8_t *block, uint8_t *table,
  struct tally_checkpoint_header *header, int *file);

#endif
