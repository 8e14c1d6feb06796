/*
 * disk_sim.c — the power-loss simulator behind the disk ops (disk_sim.h).
 *
 * State: inodes, each with its durable bytes (what the media holds) and its
 * current bytes (what reads see: the page cache); two directories (durable
 * and current name -> inode); and two logs of what is not yet durable: data
 * operations (writes, truncates) and name operations (create, unlink,
 * rename), in call order. sync(file) makes the file's current bytes durable
 * and drops its data operations; sync_dir() does the same for names. A
 * crash rebuilds the durable state from the logs according to the mode, then
 * makes it current.
 *
 * Thread: the single test thread that drives it.
 */
#include "disk_sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_content {
  uint8_t *bytes;
  uint64_t size;
  uint64_t capacity;
};

struct sim_inode {
  bool used;
  struct sim_content durable;
  struct sim_content current;
};

struct sim_entry {
  char name[TALLY_DISK_NAME_SIZE_MAX];
  int inode; /* -1: free entry */
};

struct sim_dir {
  struct sim_entry entries[TALLY_DISK_SIM_FILES_MAX];
};

enum sim_op_kind { SIM_WRITE, SIM_TRUNCATE, SIM_CREATE, SIM_UNLINK, SIM_RENAME };

struct sim_op {
  enum sim_op_kind kind;
  int inode;
  uint64_t offset; /* write: where; truncate: the new size */
  uint64_t size;
  uint8_t *data;
  char name[TALLY_DISK_NAME_SIZE_MAX];
  char to[TALLY_DISK_NAME_SIZE_MAX];
};

struct tally_disk_sim {
  uint64_t seed;
  uint64_t operations;
  uint64_t fail_at; /* the operation count at which the power fails; UINT64_MAX: never */
  bool powered;
  struct sim_inode inodes[TALLY_DISK_SIM_FILES_MAX];
  struct sim_dir durable_dir;
  struct sim_dir current_dir;
  uint32_t data_count;
  uint32_t name_count;
  struct sim_op data_ops[TALLY_DISK_SIM_OPS_MAX];
  struct sim_op name_ops[TALLY_DISK_SIM_OPS_MAX];
};

/* ---- Seeded choices (splitmix64) ------------------------------------------ */

static uint64_t sim_random(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ---- Byte contents --------------------------------------------------------- */

static void content_reserve(struct sim_content *content, uint64_t size)
{
  if (size <= content->capacity) return;
  uint64_t capacity = content->capacity < 4096u ? 4096u : content->capacity;
  while (capacity < size) capacity *= 2u;
  uint8_t *bytes = realloc(content->bytes, capacity);
  if (bytes == NULL) abort(); /* test backend: out of memory ends the test */
  memset(bytes + content->capacity, 0, capacity - content->capacity);
  content->bytes = bytes;
  content->capacity = capacity;
}

static void content_write(struct sim_content *content, uint64_t offset, const uint8_t *data,
  uint64_t size)
{
  assert(data != NULL || size == 0);
  if (size == 0) return; /* a write of nothing changes nothing, not even the size */
  content_reserve(content, offset + size);
  if (offset > content->size) memset(content->bytes + content->size, 0, offset - content->size);
  memcpy(content->bytes + offset, data, size);
  if (offset + size > content->size) content->size = offset + size;
}

static void content_truncate(struct sim_content *content, uint64_t size)
{
  content_reserve(content, size);
  if (size > content->size) memset(content->bytes + content->size, 0, size - content->size);
  content->size = size;
}

static void content_copy(struct sim_content *to, const struct sim_content *from)
{
  content_reserve(to, from->size);
  if (from->size > 0) memcpy(to->bytes, from->bytes, from->size);
  to->size = from->size;
}

/* ---- Directories ----------------------------------------------------------- */

static int dir_find(const struct sim_dir *dir, const char *name)
{
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    const struct sim_entry *entry = &dir->entries[i];
    if (entry->inode >= 0 && strcmp(entry->name, name) == 0) return (int)i;
  }
  return -1;
}

static int dir_add(struct sim_dir *dir, const char *name, int inode)
{
  assert(dir_find(dir, name) < 0);
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    struct sim_entry *entry = &dir->entries[i];
    if (entry->inode >= 0) continue;
    snprintf(entry->name, sizeof entry->name, "%s", name);
    entry->inode = inode;
    return 0;
  }
  return -ENOSPC;
}

static void dir_apply(struct sim_dir *dir, const struct sim_op *op)
{
  int index = dir_find(dir, op->name);
  if (op->kind == SIM_CREATE) {
    if (index < 0) dir_add(dir, op->name, op->inode);
    return;
  }
  if (index < 0) return;
  if (op->kind == SIM_UNLINK) {
    dir->entries[index].inode = -1;
    return;
  }
  assert(op->kind == SIM_RENAME);
  int target = dir_find(dir, op->to);
  if (target >= 0) dir->entries[target].inode = -1;
  snprintf(dir->entries[index].name, sizeof dir->entries[index].name, "%s", op->to);
}

/* ---- Calls ----------------------------------------------------------------- */

/* Every mutating call passes here: counts it, or fails it once the power is gone. */
static int sim_gate(struct tally_disk_sim *sim)
{
  assert(sim != NULL);
  if (!sim->powered) return -EIO;
  if (sim->operations == sim->fail_at) {
    sim->powered = false;
    return -EIO;
  }
  sim->operations++;
  return 0;
}

static struct sim_inode *sim_inode(struct tally_disk_sim *sim, int file)
{
  assert(file >= 0 && (uint32_t)file < TALLY_DISK_SIM_FILES_MAX);
  assert(sim->inodes[file].used);
  return &sim->inodes[file];
}

static struct sim_op *sim_log(struct sim_op *ops, uint32_t *count, enum sim_op_kind kind)
{
  if (*count == TALLY_DISK_SIM_OPS_MAX) return NULL;
  struct sim_op *op = &ops[(*count)++];
  memset(op, 0, sizeof(*op));
  op->kind = kind;
  return op;
}

static int sim_create(struct tally_disk_sim *sim, const char *name)
{
  if (dir_find(&sim->current_dir, name) >= 0) return -EEXIST;
  int inode = -1;
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX && inode < 0; i++) {
    if (!sim->inodes[i].used) inode = (int)i;
  }
  if (inode < 0) return -ENOSPC;
  struct sim_op *op = sim_log(sim->name_ops, &sim->name_count, SIM_CREATE);
  if (op == NULL || dir_add(&sim->current_dir, name, inode) != 0) {
    if (op != NULL) sim->name_count--;
    return -ENOSPC;
  }
  sim->inodes[inode].used = true;
  sim->inodes[inode].durable.size = 0;
  sim->inodes[inode].current.size = 0;
  op->inode = inode;
  snprintf(op->name, sizeof op->name, "%s", name);
  return inode;
}

static int sim_open(void *context, const char *name, bool create)
{
  struct tally_disk_sim *sim = context;
  assert(tally_disk_name_valid(name));
  if (create) {
    int gate = sim_gate(sim);
    return gate != 0 ? gate : sim_create(sim, name);
  }
  if (!sim->powered) return -EIO;
  int index = dir_find(&sim->current_dir, name);
  return index < 0 ? -ENOENT : sim->current_dir.entries[index].inode;
}

static void sim_close(void *context, int file)
{
  assert(context != NULL);
  assert(file >= 0);
}

static int sim_write(void *context, int file, const void *data, size_t size, uint64_t offset)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  struct sim_inode *inode = sim_inode(sim, file);
  struct sim_op *op = sim_log(sim->data_ops, &sim->data_count, SIM_WRITE);
  if (op == NULL) return -ENOSPC;
  op->data = malloc(size > 0 ? size : 1);
  if (op->data == NULL) abort();
  memcpy(op->data, data, size);
  op->inode = file;
  op->offset = offset;
  op->size = size;
  content_write(&inode->current, offset, data, size);
  return 0;
}

static int64_t sim_read(void *context, int file, void *data, size_t size, uint64_t offset)
{
  struct tally_disk_sim *sim = context;
  if (!sim->powered) return -EIO;
  const struct sim_content *current = &sim_inode(sim, file)->current;
  if (offset >= current->size) return 0;
  uint64_t available = current->size - offset;
  size_t count = available < size ? (size_t)available : size;
  memcpy(data, current->bytes + offset, count);
  return (int64_t)count;
}

static int sim_sync(void *context, int file)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  struct sim_inode *inode = sim_inode(sim, file);
  uint32_t kept = 0;
  for (uint32_t i = 0; i < sim->data_count; i++) { /* durable := current, by replaying the file's log */
    struct sim_op *op = &sim->data_ops[i];
    if (op->inode != file) {
      sim->data_ops[kept++] = *op;
      continue;
    }
    if (op->kind == SIM_WRITE) content_write(&inode->durable, op->offset, op->data, op->size);
    else content_truncate(&inode->durable, op->offset);
    free(op->data);
  }
  assert(inode->durable.size == inode->current.size);
  sim->data_count = kept;
  return 0;
}

static int64_t sim_size(void *context, int file)
{
  struct tally_disk_sim *sim = context;
  if (!sim->powered) return -EIO;
  return (int64_t)sim_inode(sim, file)->current.size;
}

static int sim_truncate(void *context, int file, uint64_t size)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  struct sim_op *op = sim_log(sim->data_ops, &sim->data_count, SIM_TRUNCATE);
  if (op == NULL) return -ENOSPC;
  op->inode = file;
  op->offset = size;
  content_truncate(&sim_inode(sim, file)->current, size);
  return 0;
}

static int sim_unlink(void *context, const char *name)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  if (dir_find(&sim->current_dir, name) < 0) return -ENOENT;
  struct sim_op *op = sim_log(sim->name_ops, &sim->name_count, SIM_UNLINK);
  if (op == NULL) return -ENOSPC;
  snprintf(op->name, sizeof op->name, "%s", name);
  dir_apply(&sim->current_dir, op);
  return 0;
}

static int sim_rename(void *context, const char *from, const char *to)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  if (dir_find(&sim->current_dir, from) < 0) return -ENOENT;
  struct sim_op *op = sim_log(sim->name_ops, &sim->name_count, SIM_RENAME);
  if (op == NULL) return -ENOSPC;
  snprintf(op->name, sizeof op->name, "%s", from);
  snprintf(op->to, sizeof op->to, "%s", to);
  dir_apply(&sim->current_dir, op);
  return 0;
}

static int sim_sync_dir(void *context)
{
  struct tally_disk_sim *sim = context;
  int gate = sim_gate(sim);
  if (gate != 0) return gate;
  sim->durable_dir = sim->current_dir;
  sim->name_count = 0;
  return 0;
}

static int sim_list(void *context, char (*names)[TALLY_DISK_NAME_SIZE_MAX], uint32_t names_max)
{
  struct tally_disk_sim *sim = context;
  if (!sim->powered) return -EIO;
  uint32_t count = 0;
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    const struct sim_entry *entry = &sim->current_dir.entries[i];
    if (entry->inode < 0) continue;
    if (count == names_max) return -E2BIG;
    snprintf(names[count++], TALLY_DISK_NAME_SIZE_MAX, "%s", entry->name);
  }
  return (int)count;
}

static const struct tally_disk_ops sim_ops = {
  .open = sim_open, .close = sim_close, .write = sim_write, .read = sim_read,
  .sync = sim_sync, .size = sim_size, .truncate = sim_truncate, .unlink = sim_unlink,
  .rename = sim_rename, .sync_dir = sim_sync_dir, .list = sim_list,
};

/* ---- Life ------------------------------------------------------------------ */

struct tally_disk_sim *tally_disk_sim_create(uint64_t seed)
{
  struct tally_disk_sim *sim = calloc(1, sizeof(*sim));
  if (sim == NULL) return NULL;
  sim->seed = seed;
  sim->fail_at = UINT64_MAX;
  sim->powered = true;
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    sim->durable_dir.entries[i].inode = -1;
    sim->current_dir.entries[i].inode = -1;
  }
  return sim;
}

static void sim_free_ops(struct tally_disk_sim *sim)
{
  for (uint32_t i = 0; i < sim->data_count; i++) free(sim->data_ops[i].data);
  sim->data_count = 0;
  sim->name_count = 0;
}

void tally_disk_sim_destroy(struct tally_disk_sim *sim)
{
  if (sim == NULL) return;
  sim_free_ops(sim);
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    free(sim->inodes[i].durable.bytes);
    free(sim->inodes[i].current.bytes);
  }
  free(sim);
}

void tally_disk_sim_bind(struct tally_disk_sim *sim, struct tally_disk *disk)
{
  assert(sim != NULL);
  assert(disk != NULL);
  disk->ops = &sim_ops;
  disk->context = sim;
}

uint64_t tally_disk_sim_operations(const struct tally_disk_sim *sim)
{
  assert(sim != NULL);
  return sim->operations;
}

void tally_disk_sim_fail_after(struct tally_disk_sim *sim, uint64_t operations)
{
  assert(sim != NULL);
  assert(sim->powered);
  sim->fail_at = sim->operations + operations;
}

bool tally_disk_sim_powered(const struct tally_disk_sim *sim)
{
  assert(sim != NULL);
  return sim->powered;
}

const char *tally_disk_sim_mode_name(enum tally_disk_sim_mode mode)
{
  static const char *const names[TALLY_DISK_SIM_MODE_COUNT] = {
    "process", "drop", "subset", "torn", "rot",
  };
  assert((uint32_t)mode < TALLY_DISK_SIM_MODE_COUNT);
  return names[mode];
}

int tally_disk_sim_corrupt(struct tally_disk_sim *sim, const char *name, uint64_t offset,
  uint8_t mask)
{
  assert(sim != NULL);
  int index = dir_find(&sim->current_dir, name);
  if (index < 0) return -ENOENT;
  struct sim_inode *inode = sim_inode(sim, sim->current_dir.entries[index].inode);
  if (offset >= inode->current.size) return -ENOENT;
  inode->current.bytes[offset] ^= mask;
  if (offset < inode->durable.size) inode->durable.bytes[offset] ^= mask;
  return 0;
}

int64_t tally_disk_sim_file_size(const struct tally_disk_sim *sim, const char *name)
{
  assert(sim != NULL);
  int index = dir_find(&sim->current_dir, name);
  if (index < 0) return -ENOENT;
  return (int64_t)sim->inodes[sim->current_dir.entries[index].inode].current.size;
}

/* ---- Power loss ------------------------------------------------------------ */

/* The name an inode has in dir, or "" if none. */
static const char *sim_name_of(const struct sim_dir *dir, int inode)
{
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    if (dir->entries[i].inode == inode) return dir->entries[i].name;
  }
  return "";
}

/* SUBSET: each sector-aligned piece of the write kept or not. */
static void crash_write_subset(struct sim_content *to, const struct sim_op *op, uint64_t *rng)
{
  uint64_t offset = op->offset;
  uint64_t end = op->offset + op->size;
  while (offset < end) {
    uint64_t sector_end = (offset / TALLY_DISK_SIM_SECTOR_SIZE + 1u) * TALLY_DISK_SIM_SECTOR_SIZE;
    uint64_t piece_end = sector_end < end ? sector_end : end;
    if (sim_random(rng) & 1u) {
      content_write(to, offset, op->data + (offset - op->offset), piece_end - offset);
    }
    offset = piece_end;
  }
}

/* TORN: the write kept but its last sector: a prefix new, the rest old or garbage. */
static uint64_t crash_write_torn(struct sim_content *to, const struct sim_op *op, uint64_t *rng)
{
  assert(op->size > 0);
  uint64_t end = op->offset + op->size;
  uint64_t last = ((end - 1u) / TALLY_DISK_SIM_SECTOR_SIZE) * TALLY_DISK_SIM_SECTOR_SIZE;
  if (last < op->offset) last = op->offset;
  content_write(to, op->offset, op->data, last - op->offset);
  uint64_t piece = end - last;
  uint64_t kept = sim_random(rng) % piece;
  content_write(to, last, op->data + (last - op->offset), kept);
  if (sim_random(rng) & 1u) {
    uint8_t garbage[TALLY_DISK_SIM_SECTOR_SIZE];
    for (uint64_t i = 0; i < piece - kept; i++) garbage[i] = (uint8_t)sim_random(rng);
    content_write(to, last + kept, garbage, piece - kept);
  }
  return last;
}

/* Rebuilds every inode's durable bytes from the unsynced data operations. */
static void crash_data(struct tally_disk_sim *sim, enum tally_disk_sim_mode mode, uint64_t *rng,
  const struct sim_dir *dir, struct tally_disk_sim_report *report)
{
  uint32_t last_write = UINT32_MAX;
  for (uint32_t i = 0; i < sim->data_count; i++) {
    if (sim->data_ops[i].kind == SIM_WRITE && sim->data_ops[i].size > 0) last_write = i;
  }
  bool keep_all = mode == TALLY_DISK_SIM_PROCESS || mode == TALLY_DISK_SIM_TORN;
  bool keep_some = mode == TALLY_DISK_SIM_SUBSET;
  for (uint32_t i = 0; i < sim->data_count && (keep_all || keep_some); i++) {
    const struct sim_op *op = &sim->data_ops[i];
    struct sim_content *to = &sim_inode(sim, op->inode)->durable;
    if (op->kind == SIM_TRUNCATE) {
      if (keep_all || (sim_random(rng) & 1u)) content_truncate(to, op->offset);
    } else if (keep_some) {
      crash_write_subset(to, op, rng);
    } else if (mode == TALLY_DISK_SIM_TORN && i == last_write) {
      report->torn = true;
      report->torn_offset = crash_write_torn(to, op, rng);
      snprintf(report->torn_name, sizeof report->torn_name, "%s", sim_name_of(dir, op->inode));
    } else {
      content_write(to, op->offset, op->data, op->size);
    }
  }
}

/* ROT: one bit of one synced byte of one named, non-empty file. */
static void crash_rot(struct tally_disk_sim *sim, uint64_t *rng,
  struct tally_disk_sim_report *report)
{
  uint32_t candidates = 0;
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    int inode = sim->durable_dir.entries[i].inode;
    if (inode >= 0 && sim->inodes[inode].durable.size > 0) candidates++;
  }
  if (candidates == 0) return;
  uint32_t pick = (uint32_t)(sim_random(rng) % candidates);
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    const struct sim_entry *entry = &sim->durable_dir.entries[i];
    if (entry->inode < 0 || sim->inodes[entry->inode].durable.size == 0) continue;
    if (pick-- != 0) continue;
    struct sim_content *durable = &sim->inodes[entry->inode].durable;
    report->rotted = true;
    report->rot_offset = sim_random(rng) % durable->size;
    snprintf(report->rot_name, sizeof report->rot_name, "%s", entry->name);
    durable->bytes[report->rot_offset] ^= (uint8_t)(1u << (sim_random(rng) % 8u));
    return;
  }
}

void tally_disk_sim_crash(struct tally_disk_sim *sim, enum tally_disk_sim_mode mode,
  uint64_t seed, struct tally_disk_sim_report *report)
{
  assert(sim != NULL);
  assert((uint32_t)mode < TALLY_DISK_SIM_MODE_COUNT);
  assert(report != NULL);
  memset(report, 0, sizeof(*report));
  report->mode = mode;
  report->writes_unsynced = sim->data_count;
  report->names_unsynced = sim->name_count;
  uint64_t rng = seed ^ sim->seed;

  uint32_t names_kept = 0;
  if (mode == TALLY_DISK_SIM_PROCESS || mode == TALLY_DISK_SIM_TORN) names_kept = sim->name_count;
  if (mode == TALLY_DISK_SIM_SUBSET) names_kept = (uint32_t)(sim_random(&rng) % (sim->name_count + 1u));
  for (uint32_t i = 0; i < names_kept; i++) dir_apply(&sim->durable_dir, &sim->name_ops[i]);

  crash_data(sim, mode, &rng, &sim->durable_dir, report);
  sim_free_ops(sim);
  sim->current_dir = sim->durable_dir;
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    struct sim_inode *inode = &sim->inodes[i];
    if (!inode->used) continue;
    if (sim_name_of(&sim->durable_dir, (int)i)[0] == '\0') inode->used = false;
  }
  if (mode == TALLY_DISK_SIM_ROT) crash_rot(sim, &rng, report);
  for (uint32_t i = 0; i < TALLY_DISK_SIM_FILES_MAX; i++) {
    struct sim_inode *inode = &sim->inodes[i];
    if (inode->used) content_copy(&inode->current, &inode->durable);
  }
  sim->powered = true;
  sim->fail_at = UINT64_MAX;
}
