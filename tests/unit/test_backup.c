/*
 * test_backup.c — backups of the disk tier (control/backup/): a real log
 * directory written by the log writer and the checkpoint writer, a full
 * backup and an incremental, verify, restore (whole and to an LSN), and
 * every refusal: a corrupted byte (caught by BLAKE2b, and by the log's own
 * CRCs when the manifest is made to agree), a dropped segment, files and
 * generations out of order, a damaged manifest, a non-empty target, an LSN
 * before the checkpoint's end, a log cut past the last backup, another
 * store's log.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup.h"
#include "backup_files.h"
#include "checkpoint.h"
#include "wal.h"

#define PAYLOAD_SIZE 1000u
#define IMAGE_SIZE (64u * 1024u)

static char root[64];
static uint8_t image[IMAGE_SIZE];

struct node_log {
  char path[128];
  struct tally_disk disk;
  struct tally_disk_posix posix;
  struct tally_wal wal;
};

static void path_of(char *out, size_t size, const char *name)
{
  int n = snprintf(out, size, "%.63s/", root);
  assert_true(n > 0 && (size_t)n + strlen(name) < size);
  memcpy(out + n, name, strlen(name) + 1u);
}

static void log_open(struct node_log *log, const char *name)
{
  path_of(log->path, sizeof log->path, name);
  char error[256];
  assert_int_equal(tally_disk_posix_open(&log->disk, &log->posix, log->path, error, sizeof error), 0);
  struct tally_wal_scanner *scanner = tally_wal_scanner_create();
  struct tally_wal_scan scan;
  assert_int_equal(tally_wal_scan(scanner, &log->disk, 1, &scan), TALLY_WAL_OK);
  tally_wal_scanner_destroy(scanner);
  struct tally_wal_options options = { .segment_size = 64u * 1024u, .group_size = 16u * 1024u };
  assert_int_equal(tally_wal_open(&log->wal, &log->disk, &options, &scan, error, sizeof error), 0);
}

static void log_close(struct node_log *log)
{
  tally_wal_close(&log->wal);
  tally_disk_posix_close(&log->posix);
}

/* Appends count records (their payload names their LSN), committing every 8. */
static void append(struct node_log *log, uint32_t count)
{
  uint8_t payload[PAYLOAD_SIZE];
  for (uint32_t i = 0; i < count; i++) {
    memset(payload, (int)(log->wal.lsn_next & 0xffu), sizeof payload);
    enum tally_wal_status status = tally_wal_append(&log->wal, TALLY_WAL_TYPE_BATCH, payload,
      sizeof payload, NULL);
    if (status == TALLY_WAL_FULL) {
      assert_int_equal(tally_wal_commit(&log->wal), TALLY_WAL_OK);
      status = tally_wal_append(&log->wal, TALLY_WAL_TYPE_BATCH, payload, sizeof payload, NULL);
    }
    assert_int_equal(status, TALLY_WAL_OK);
    if (i % 8u == 7u) assert_int_equal(tally_wal_commit(&log->wal), TALLY_WAL_OK);
  }
  assert_int_equal(tally_wal_commit(&log->wal), TALLY_WAL_OK);
}

static void checkpoint(struct node_log *log, uint64_t begin_lsn, uint64_t end_lsn)
{
  char error[256];
  struct tally_checkpoint_options options;
  tally_checkpoint_options_default(&options);
  options.chunk_size = 4096u;
  options.image_format = 0x1234u;
  struct tally_checkpoint_writer *writer = tally_checkpoint_writer_create(&log->disk, &options,
    error, sizeof error);
  assert_non_null(writer);
  for (uint32_t i = 0; i < IMAGE_SIZE; i++) image[i] = (uint8_t)(i * 7u + begin_lsn);
  assert_int_equal(tally_checkpoint_writer_begin(writer, image, IMAGE_SIZE, begin_lsn, 1), 0);
  while (tally_checkpoint_writer_step(writer, 1u << 20) == TALLY_CHECKPOINT_MORE) {}
  struct tally_checkpoint_done done;
  assert_int_equal(tally_checkpoint_writer_finish(writer, end_lsn, &done), TALLY_CHECKPOINT_OK);
  tally_checkpoint_writer_destroy(writer);
}

static enum tally_backup_result take(const char *log_dir, const char *name, bool incremental,
  struct tally_backup_summary *summary)
{
  char dir[128], error[512] = "";
  path_of(dir, sizeof dir, name);
  struct tally_backup_request request = { .log_dir = log_dir, .dir = dir, .node = "n1",
    .incremental = incremental };
  struct tally_backup_progress progress;
  tally_backup_progress_init(&progress, NULL, "backup", 0);
  enum tally_backup_result result = tally_backup_take(&request, &progress, summary, error,
    sizeof error);
  if (result != TALLY_BACKUP_OK) printf("backup: %s\n", error);
  return result;
}

static enum tally_backup_result verify(const char *name)
{
  char dir[128], error[512] = "";
  path_of(dir, sizeof dir, name);
  struct tally_backup_progress progress;
  tally_backup_progress_init(&progress, NULL, "verify", 0);
  struct tally_backup_summary summary;
  enum tally_backup_result result = tally_backup_verify(dir, stdout, &progress, &summary,
    error, sizeof error);
  if (error[0] != '\0') printf("verify: %s\n", error);
  return result;
}

static enum tally_backup_result restore(const char *name, const char *target, uint64_t to_lsn)
{
  char dir[128], log_dir[128], error[512] = "";
  path_of(dir, sizeof dir, name);
  path_of(log_dir, sizeof log_dir, target);
  struct tally_backup_progress progress;
  tally_backup_progress_init(&progress, NULL, "restore", 0);
  struct tally_backup_summary summary;
  enum tally_backup_result result = tally_backup_restore(dir, log_dir, NULL, to_lsn, &progress,
    &summary, error, sizeof error);
  if (result != TALLY_BACKUP_OK) printf("restore: %s\n", error);
  return result;
}

/* The restored log, scanned as tallyd's recovery does: from from_lsn, its last LSN. */
static uint64_t restored_last(const char *target, uint64_t from_lsn)
{
  struct tally_disk disk;
  struct tally_disk_posix posix;
  char path[128], error[256];
  path_of(path, sizeof path, target);
  assert_int_equal(tally_disk_posix_open(&disk, &posix, path, error, sizeof error), 0);
  struct tally_wal_scanner *scanner = tally_wal_scanner_create();
  struct tally_wal_scan scan;
  assert_int_equal(tally_wal_scan(scanner, &disk, from_lsn, &scan), TALLY_WAL_OK);
  assert_false(scan.torn);
  tally_wal_scanner_destroy(scanner);
  struct tally_checkpoint_reader *reader = tally_checkpoint_reader_create();
  struct tally_checkpoint_recovery recovery;
  static uint8_t loaded[IMAGE_SIZE];
  assert_int_equal(tally_checkpoint_load(reader, &disk, loaded, sizeof loaded, 0x1234u, &recovery),
    TALLY_CHECKPOINT_OK);
  assert_int_equal(recovery.header.begin_lsn + 1u, from_lsn);
  tally_checkpoint_reader_destroy(reader);
  tally_disk_posix_close(&posix);
  return scan.lsn_last;
}

/* Flips one byte of root/name at offset (twice restores it). */
static void flip(const char *name, uint64_t offset)
{
  char path[256];
  path_of(path, sizeof path, name);
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  uint8_t byte;
  assert_int_equal(pread(fd, &byte, 1, (off_t)offset), 1);
  byte ^= 0x20u;
  assert_int_equal(pwrite(fd, &byte, 1, (off_t)offset), 1);
  close(fd);
}

static void manifest_load(const char *name, struct tally_backup_manifest *manifest)
{
  char dir[128], error[256];
  path_of(dir, sizeof dir, name);
  assert_int_equal(tally_backup_manifest_read(dir, manifest, error, sizeof error), 0);
}

static void manifest_store(const char *name, const struct tally_backup_manifest *manifest)
{
  char dir[128];
  path_of(dir, sizeof dir, name);
  assert_int_equal(tally_backup_manifest_write(dir, manifest), 0);
}

static struct tally_backup_manifest manifest, saved;

static void test_backup_verify_restore(void **state)
{
  (void)state;
  struct node_log log;
  log_open(&log, "log");
  append(&log, 100);              /* LSNs 1..100, two segments */
  checkpoint(&log, 20, 25);
  assert_int_equal(tally_wal_cut(&log.wal, 20), TALLY_WAL_OK);
  struct tally_backup_summary summary;
  assert_int_equal(take(log.path, "b", false, &summary), TALLY_BACKUP_OK);
  assert_int_equal(summary.generation, 1);
  assert_int_equal(summary.first_lsn, 21);
  assert_int_equal(summary.last_lsn, 100);
  assert_int_equal(take(log.path, "b", false, &summary), TALLY_BACKUP_FAILED); /* not empty */
  /* A full backup into missing parents creates them (mkdir -p). Failed before: ENOENT. */
  assert_int_equal(take(log.path, "new/parents/b", false, &summary), TALLY_BACKUP_OK);
  assert_int_equal(verify("new/parents/b"), TALLY_BACKUP_OK);
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);
  append(&log, 50);               /* 101..150 */
  assert_int_equal(take(log.path, "b", true, &summary), TALLY_BACKUP_OK);
  assert_int_equal(summary.generation, 2);
  assert_int_equal(summary.first_lsn, 101);
  assert_int_equal(summary.last_lsn, 150);
  assert_int_equal(take(log.path, "b", true, &summary), TALLY_BACKUP_OK);
  assert_int_equal(summary.generation, 0); /* nothing new */
  append(&log, 30);               /* 151..180 */
  assert_int_equal(take(log.path, "b", true, &summary), TALLY_BACKUP_OK);
  assert_int_equal(summary.generation, 3);
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);

  assert_int_equal(restore("b", "r1", 0), TALLY_BACKUP_OK);
  assert_int_equal(restored_last("r1", 21), 180);
  assert_int_equal(restore("b", "r2", 120), TALLY_BACKUP_OK);
  assert_int_equal(restored_last("r2", 21), 120);
  assert_int_equal(restore("b", "r1", 0), TALLY_BACKUP_FAILED);   /* not empty */
  assert_int_equal(restore("b", "r3", 24), TALLY_BACKUP_FAILED);  /* before the end_lsn 25 */
  assert_int_equal(restore("b", "r3", 181), TALLY_BACKUP_FAILED); /* past the backup */
  assert_int_equal(restore("b", "r3", 25), TALLY_BACKUP_OK);
  assert_int_equal(restored_last("r3", 21), 25);

  /* The log cut past the last backup: the next incremental is refused. */
  append(&log, 200);
  assert_int_equal(tally_wal_cut(&log.wal, 300), TALLY_WAL_OK);
  assert_int_equal(take(log.path, "b", true, &summary), TALLY_BACKUP_FAILED);
  log_close(&log);

  /* Another store's log (same LSNs, other records) cannot continue this backup. */
  struct node_log other;
  log_open(&other, "other");
  uint8_t payload[16] = { 0 };
  for (uint32_t i = 0; i < 200; i++) {
    assert_int_equal(tally_wal_append(&other.wal, TALLY_WAL_TYPE_BATCH, payload, sizeof payload,
      NULL), TALLY_WAL_OK);
    if (i % 64u == 63u) assert_int_equal(tally_wal_commit(&other.wal), TALLY_WAL_OK);
  }
  assert_int_equal(tally_wal_commit(&other.wal), TALLY_WAL_OK);
  assert_int_equal(take(other.path, "b", true, &summary), TALLY_BACKUP_FAILED);
  log_close(&other);
}

static void test_damage_refused(void **state)
{
  (void)state;
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);
  manifest_load("b", &manifest);
  saved = manifest;
  const struct tally_backup_file *checkpoint_file = &manifest.files[0];
  const struct tally_backup_file *segment = &manifest.files[manifest.file_count - 1u];
  char path[256];
  assert_int_equal(checkpoint_file->kind, TALLY_BACKUP_CHECKPOINT);

  /* A corrupted byte: in a segment, in the checkpoint, in the manifest. */
  snprintf(path, sizeof path, "b/%s", segment->path);
  flip(path, 100);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  flip(path, 100);
  snprintf(path, sizeof path, "b/%s", checkpoint_file->path);
  flip(path, 8192);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  flip(path, 8192);
  flip("b/MANIFEST", 20);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  flip("b/MANIFEST", 20);
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);

  /* The same byte with the manifest made to agree: the log's own CRCs refuse it. */
  snprintf(path, sizeof path, "b/%s", manifest.files[1].path);
  flip(path, 60);
  char full[256];
  path_of(full, sizeof full, path);
  int fd = open(full, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(tally_backup_hash_file(fd, &(struct tally_backup_progress){0},
    &manifest.files[1].size, manifest.files[1].hash), 0);
  close(fd);
  manifest_store("b", &manifest);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  flip(path, 60);
  manifest_store("b", &saved);
  /* And in the checkpoint: its chunk CRC refuses it. */
  snprintf(path, sizeof path, "b/%s", checkpoint_file->path);
  flip(path, 8192);
  path_of(full, sizeof full, path);
  fd = open(full, O_RDONLY);
  manifest = saved;
  assert_int_equal(tally_backup_hash_file(fd, &(struct tally_backup_progress){0},
    &manifest.files[0].size, manifest.files[0].hash), 0);
  close(fd);
  manifest_store("b", &manifest);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  flip(path, 8192);
  manifest_store("b", &saved);
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);

  /* A dropped segment, listed or not. */
  char from[256], to[300];
  snprintf(path, sizeof path, "b/%s", manifest.files[1].path);
  path_of(from, sizeof from, path);
  snprintf(to, sizeof to, "%s.aside", from);
  assert_int_equal(rename(from, to), 0);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  manifest = saved;
  memmove(&manifest.files[1], &manifest.files[2],
    (manifest.file_count - 2u) * sizeof manifest.files[0]);
  manifest.file_count--;
  manifest_store("b", &manifest);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  assert_int_equal(restore("b", "r4", 0), TALLY_BACKUP_DAMAGED); /* nothing restored */
  assert_int_equal(rename(to, from), 0);
  manifest_store("b", &saved);

  /* Files out of order; a generation dropped. */
  manifest = saved;
  struct tally_backup_file swap = manifest.files[1];
  manifest.files[1] = manifest.files[2];
  manifest.files[2] = swap;
  manifest_store("b", &manifest);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  manifest = saved;
  manifest.generations[1].last_lsn = manifest.generations[1].first_lsn; /* 2 and 3 no longer meet */
  manifest_store("b", &manifest);
  assert_int_equal(verify("b"), TALLY_BACKUP_DAMAGED);
  manifest_store("b", &saved);
  assert_int_equal(verify("b"), TALLY_BACKUP_OK);
}

static void test_manifest_text(void **state)
{
  (void)state;
  manifest_load("b", &manifest);
  size_t size = 0;
  char *text = tally_backup_manifest_format(&manifest, &size);
  assert_non_null(text);
  char error[256];
  assert_true(tally_backup_manifest_parse(text, size, &saved, error, sizeof error));
  assert_int_equal(saved.file_count, manifest.file_count);
  assert_memory_equal(saved.files, manifest.files, manifest.file_count * sizeof manifest.files[0]);
  assert_false(tally_backup_manifest_parse(text, size - 1u, &saved, error, sizeof error));
  for (size_t i = 0; i < size; i++) { /* every byte changed is refused */
    text[i] ^= 0x01;
    assert_false(tally_backup_manifest_parse(text, size, &saved, error, sizeof error));
    text[i] ^= 0x01;
  }
  free(text);
}

static int setup(void **state)
{
  (void)state;
  snprintf(root, sizeof root, "/tmp/tally-backup-test.XXXXXX");
  return mkdtemp(root) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
  (void)state;
  char command[128];
  snprintf(command, sizeof command, "rm -rf %s", root);
  return system(command) == 0 ? 0 : -1;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_backup_verify_restore),
    cmocka_unit_test(test_damage_refused),
    cmocka_unit_test(test_manifest_text),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
