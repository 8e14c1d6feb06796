/*
 * manifest.c — the backup MANIFEST's text (manifest.h): formatting with its
 * closing hash line, and a strict parser for untrusted bytes (every line
 * matched whole, every number in range, the hash checked first).
 * Thread: tallyctl's one thread.
 */
#include "manifest.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define END_PREFIX "end blake2b="

void tally_backup_hash_hex(char *out, const uint8_t hash[TALLY_BACKUP_HASH_SIZE])
{
  sodium_bin2hex(out, 2u * TALLY_BACKUP_HASH_SIZE + 1u, hash, TALLY_BACKUP_HASH_SIZE);
}

static bool hash_parse(const char *hex, uint8_t hash[TALLY_BACKUP_HASH_SIZE])
{
  size_t length = 0;
  if (strlen(hex) != 2u * TALLY_BACKUP_HASH_SIZE) return false;
  return sodium_hex2bin(hash, TALLY_BACKUP_HASH_SIZE, hex, strlen(hex), NULL, &length, NULL) == 0 &&
    length == TALLY_BACKUP_HASH_SIZE;
}

static const char *kind_name(enum tally_backup_file_kind kind)
{
  return kind == TALLY_BACKUP_CHECKPOINT ? "checkpoint" : "wal";
}

char *tally_backup_manifest_format(const struct tally_backup_manifest *manifest, size_t *size)
{
  assert(manifest->generation_count <= TALLY_BACKUP_GENERATIONS_MAX);
  assert(manifest->file_count <= TALLY_BACKUP_FILES_MAX);
  char *text = NULL;
  size_t length = 0;
  FILE *stream = open_memstream(&text, &length);
  if (stream == NULL) return NULL;
  fprintf(stream, "tally-backup %u\nnode %s\nstore format=%08x image_size=%" PRIu64 "\n",
    TALLY_BACKUP_MANIFEST_VERSION, manifest->node, manifest->image_format, manifest->image_size);
  for (uint32_t g = 0; g < manifest->generation_count; g++) {
    const struct tally_backup_generation *gen = &manifest->generations[g];
    fprintf(stream, "generation %u %s created=%" PRIu64 " first=%" PRIu64 " last=%" PRIu64
      " last_crc=%08x\n", gen->number, gen->full ? "full" : "incremental", gen->created_unix,
      gen->first_lsn, gen->last_lsn, gen->last_crc);
  }
  for (uint32_t f = 0; f < manifest->file_count; f++) {
    const struct tally_backup_file *file = &manifest->files[f];
    char hex[2u * TALLY_BACKUP_HASH_SIZE + 1u];
    tally_backup_hash_hex(hex, file->hash);
    fprintf(stream, "file %u %s %s size=%" PRIu64 " blake2b=%s first=%" PRIu64 " last=%" PRIu64
      "\n", file->generation, kind_name(file->kind), file->path, file->size, hex,
      file->first_lsn, file->last_lsn);
  }
  if (fclose(stream) != 0) {
    free(text);
    return NULL;
  }
  uint8_t hash[TALLY_BACKUP_HASH_SIZE];
  crypto_generichash(hash, sizeof hash, (const uint8_t *)text, length, NULL, 0);
  char hex[2u * TALLY_BACKUP_HASH_SIZE + 1u];
  tally_backup_hash_hex(hex, hash);
  size_t end_size = strlen(END_PREFIX) + 2u * TALLY_BACKUP_HASH_SIZE + 2u;
  char *whole = realloc(text, length + end_size);
  if (whole == NULL) {
    free(text);
    return NULL;
  }
  snprintf(whole + length, end_size, END_PREFIX "%s\n", hex);
  *size = length + end_size - 1u;
  return whole;
}

/* A path the manifest may name: "gNNNNNN/" and a checkpoint or segment name. */
static bool path_valid(const char *path, uint32_t generation)
{
  char prefix[16];
  snprintf(prefix, sizeof prefix, "g%06u/", generation);
  if (strncmp(path, prefix, strlen(prefix)) != 0) return false;
  const char *name = path + strlen(prefix);
  if (strchr(name, '/') != NULL || name[0] == '.' || name[0] == '\0') return false;
  return strncmp(name, "ckpt-", 5) == 0 || strncmp(name, "wal-", 4) == 0;
}

static bool parse_generation(const char *line, struct tally_backup_manifest *manifest)
{
  if (manifest->generation_count >= TALLY_BACKUP_GENERATIONS_MAX) return false;
  struct tally_backup_generation *gen = &manifest->generations[manifest->generation_count];
  char kind[16];
  int end = 0;
  if (sscanf(line, "generation %u %15s created=%" SCNu64 " first=%" SCNu64 " last=%" SCNu64
      " last_crc=%8x%n", &gen->number, kind, &gen->created_unix, &gen->first_lsn, &gen->last_lsn,
      &gen->last_crc, &end) != 6 || line[end] != '\0') {
    return false;
  }
  gen->full = strcmp(kind, "full") == 0;
  if (!gen->full && strcmp(kind, "incremental") != 0) return false;
  /* Numbered 1, 2, ... in order; only the first is full. */
  if (gen->number != manifest->generation_count + 1u || gen->full != (gen->number == 1u)) {
    return false;
  }
  manifest->generation_count++;
  return true;
}

static bool parse_file(const char *line, struct tally_backup_manifest *manifest)
{
  if (manifest->file_count >= TALLY_BACKUP_FILES_MAX) return false;
  struct tally_backup_file *file = &manifest->files[manifest->file_count];
  char kind[16];
  char hex[2u * TALLY_BACKUP_HASH_SIZE + 2u];
  int end = 0;
  static_assert(TALLY_BACKUP_PATH_SIZE == 64u, "the scanf width below");
  if (sscanf(line, "file %u %15s %63s size=%" SCNu64 " blake2b=%65s first=%" SCNu64 " last=%"
      SCNu64 "%n", &file->generation, kind, file->path, &file->size, hex, &file->first_lsn,
      &file->last_lsn, &end) != 7 || line[end] != '\0') {
    return false;
  }
  if (strcmp(kind, "checkpoint") == 0) file->kind = TALLY_BACKUP_CHECKPOINT;
  else if (strcmp(kind, "wal") == 0) file->kind = TALLY_BACKUP_WAL;
  else return false;
  if (!hash_parse(hex, file->hash)) return false;
  if (file->generation == 0 || file->generation > manifest->generation_count) return false;
  if (!path_valid(file->path, file->generation)) return false;
  if (file->first_lsn > file->last_lsn || file->last_lsn == 0) return false;
  manifest->file_count++;
  return true;
}

/* The end line's hash against every byte before it: false if absent or different. */
static bool end_checks(const char *text, size_t size, size_t *body_size)
{
  if (size < 2 || text[size - 1] != '\n') return false;
  const char *last = text + size - 1;
  while (last > text && last[-1] != '\n') last--;
  size_t line_size = (size_t)(text + size - 1 - last);
  if (line_size != strlen(END_PREFIX) + 2u * TALLY_BACKUP_HASH_SIZE ||
      memcmp(last, END_PREFIX, strlen(END_PREFIX)) != 0) {
    return false;
  }
  char hex[2u * TALLY_BACKUP_HASH_SIZE + 1u];
  memcpy(hex, last + strlen(END_PREFIX), 2u * TALLY_BACKUP_HASH_SIZE);
  hex[2u * TALLY_BACKUP_HASH_SIZE] = '\0';
  uint8_t want[TALLY_BACKUP_HASH_SIZE];
  uint8_t got[TALLY_BACKUP_HASH_SIZE];
  if (!hash_parse(hex, want)) return false;
  *body_size = (size_t)(last - text);
  crypto_generichash(got, sizeof got, (const uint8_t *)text, *body_size, NULL, 0);
  return sodium_memcmp(want, got, sizeof got) == 0;
}

static bool parse_line(const char *line, uint32_t number, struct tally_backup_manifest *manifest)
{
  unsigned version = 0;
  int end = 0;
  if (number == 1) {
    return sscanf(line, "tally-backup %u%n", &version, &end) == 1 && line[end] == '\0' &&
      version == TALLY_BACKUP_MANIFEST_VERSION;
  }
  if (number == 2) {
    return sscanf(line, "node %63s%n", manifest->node, &end) == 1 && line[end] == '\0';
  }
  if (number == 3) {
    return sscanf(line, "store format=%8x image_size=%" SCNu64 "%n", &manifest->image_format,
      &manifest->image_size, &end) == 2 && line[end] == '\0';
  }
  if (strncmp(line, "generation ", 11) == 0) {
    return manifest->file_count == 0 && parse_generation(line, manifest);
  }
  if (strncmp(line, "file ", 5) == 0) return parse_file(line, manifest);
  return false;
}

bool tally_backup_manifest_parse(const char *text, size_t size,
  struct tally_backup_manifest *manifest, char *error, size_t error_size)
{
  memset(manifest, 0, sizeof *manifest);
  size_t body_size = 0;
  if (size > TALLY_BACKUP_MANIFEST_SIZE_MAX || memchr(text, '\0', size) != NULL ||
      !end_checks(text, size, &body_size)) {
    snprintf(error, error_size, "manifest damaged: its end line's BLAKE2b does not match "
      "(or it is missing, cut off or larger than %u bytes)", TALLY_BACKUP_MANIFEST_SIZE_MAX);
    return false;
  }
  char line[512];
  uint32_t number = 0;
  /* Bounded by body_size: every round consumes one line. */
  for (size_t at = 0; at < body_size;) {
    const char *newline = memchr(text + at, '\n', body_size - at);
    assert(newline != NULL); /* the body ends where the end line begins */
    size_t length = (size_t)(newline - (text + at));
    number++;
    if (length >= sizeof line) {
      snprintf(error, error_size, "manifest line %u: longer than %zu bytes", number,
        sizeof line - 1);
      return false;
    }
    memcpy(line, text + at, length);
    line[length] = '\0';
    if (!parse_line(line, number, manifest)) {
      snprintf(error, error_size, "manifest line %u: not understood: %.120s", number, line);
      return false;
    }
    at += length + 1u;
  }
  if (number < 4 || manifest->generation_count == 0) {
    snprintf(error, error_size, "manifest: no generation listed");
    return false;
  }
  return true;
}
