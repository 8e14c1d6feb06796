/*
 * disk_sim.h — the disk tier's test backend (after TigerBeetle's storage
 * fault injection and the ALICE / CrashMonkey approach): a directory in
 * memory behind the same ops as disk_io.c, which records every write, every
 * sync and every name change, and can turn itself into the files a power
 * loss at that moment would leave. Deterministic: the same seed and the same
 * calls give the same bytes.
 *
 * What a crash keeps, by mode:
 *   PROCESS  kill -9: the page cache survives, every write and name change is kept;
 *   DROP     power loss: every write and name change not yet synced is lost;
 *   SUBSET   power loss: each unsynced write is split into 512-byte sectors and a
 *            seeded subset of them is kept (in any order, as a disk may), and a
 *            seeded prefix of the unsynced name changes (a journalling fs keeps
 *            them in order);
 *   TORN     power loss mid-write: every unsynced write kept, but the last sector of
 *            the last one is torn: a seeded prefix of it new, the rest old bytes
 *            or garbage;
 *   ROT      DROP, then one bit of a synced byte flipped (bit rot on the media).
 * A power loss is also injectable mid-run: after fail_after(n) the n+1-th
 * mutating call (open-create, write, sync, truncate, unlink, rename,
 * sync_dir) and every call after it fails with -EIO, and is not recorded,
 * until crash() restores the power. Handles are invalid after a crash.
 *
 * Test code: it allocates as files grow (malloc), unlike production code.
 * Thread: whichever single thread drives it (the tests).
 */
#ifndef TALLY_PERSIST_DISK_SIM_H
#define TALLY_PERSIST_DISK_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "disk_io.h"

#define TALLY_DISK_SIM_SECTOR_SIZE 512u
#define TALLY_DISK_SIM_FILES_MAX 256u
#define TALLY_DISK_SIM_OPS_MAX 4096u

enum tally_disk_sim_mode {
  TALLY_DISK_SIM_PROCESS,
  TALLY_DISK_SIM_DROP,
  TALLY_DISK_SIM_SUBSET,
  TALLY_DISK_SIM_TORN,
  TALLY_DISK_SIM_ROT,
  TALLY_DISK_SIM_MODE_COUNT
};

/* What a crash did (for the checker). */
struct tally_disk_sim_report {
  enum tally_disk_sim_mode mode;
  uint32_t writes_unsynced;  /* data writes and truncates not yet synced */
  uint32_t names_unsynced;   /* name changes not yet synced */
  bool rotted;               /* ROT: a bit was flipped at rot_name + rot_offset */
  char rot_name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t rot_offset;
  bool torn;                 /* TORN: a sector was torn at torn_name + torn_offset */
  char torn_name[TALLY_DISK_NAME_SIZE_MAX];
  uint64_t torn_offset;
};

struct tally_disk_sim;

struct tally_disk_sim *tally_disk_sim_create(uint64_t seed);
void tally_disk_sim_destroy(struct tally_disk_sim *sim);
/* Binds disk to the simulator's directory. */
void tally_disk_sim_bind(struct tally_disk_sim *sim, struct tally_disk *disk);

/* Mutating calls made so far. */
uint64_t tally_disk_sim_operations(const struct tally_disk_sim *sim);
/* Power fails after operations more mutating calls succeed (0: it fails at the next one). */
void tally_disk_sim_fail_after(struct tally_disk_sim *sim, uint64_t operations);
bool tally_disk_sim_powered(const struct tally_disk_sim *sim);

/*
 * Loses the power (or kills the process) in the given mode, the choices
 * drawn from seed; then everything left is durable and the power is back.
 */
void tally_disk_sim_crash(struct tally_disk_sim *sim, enum tally_disk_sim_mode mode,
  uint64_t seed, struct tally_disk_sim_report *report);

/* XORs mask into the byte at offset of name (durable and current): 0, or -ENOENT. */
int tally_disk_sim_corrupt(struct tally_disk_sim *sim, const char *name, uint64_t offset,
  uint8_t mask);
/* Current size of name, or -ENOENT. */
int64_t tally_disk_sim_file_size(const struct tally_disk_sim *sim, const char *name);

const char *tally_disk_sim_mode_name(enum tally_disk_sim_mode mode);

#endif
