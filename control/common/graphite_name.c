/*
 * graphite_name.c — a counter's key as a carbon metric path, tags as
 * Graphite's tagged form (graphite_name.h). Pure; runs on the caller's thread
 * (tallyd's graphite thread).
 */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "graphite_name.h"

/* Which part of the key a byte belongs to: each has its own forbidden set. */
enum part { PART_NAME, PART_TAG_KEY, PART_TAG_VALUE };

static bool plain(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
    c == '_' || c == '-';
}

static bool printable(char c)
{
  return c > ' ' && c < 0x7f;
}

/* The byte carbon gets for c at position i of a part of length n. */
static char map_byte(enum part part, const char *text, size_t i, size_t n)
{
  char c = text[i];
  assert(i < n);
  switch (part) {
  case PART_NAME:
    if (plain(c)) return c;
    if (c == '.' && i > 0 && i + 1 < n && text[i - 1] != '.') return '.';
    return '_';
  case PART_TAG_KEY:
    return printable(c) && strchr(";!^=", c) == NULL ? c : '_';
  case PART_TAG_VALUE:
    return printable(c) && c != ';' && !(i == 0 && c == '~') ? c : '_';
  }
  return '_';
}

/* Appends part text[0, n) mapped (or "_" if empty); false if out is full. */
static bool append(enum part part, const char *text, size_t n, char *out, size_t out_size,
  size_t *used)
{
  if (n == 0) {
    if (*used + 1 >= out_size) return false;
    out[(*used)++] = '_';
    return true;
  }
  if (*used + n >= out_size) return false;
  for (size_t i = 0; i < n; i++) out[(*used)++] = map_byte(part, text, i, n);
  return true;
}

/* Where the tags start ('{'), or key_len if the key has no well-formed {...} tail. */
static size_t tags_start(const char *key, size_t key_len)
{
  if (key_len < 3 || key[key_len - 1] != '}') return key_len;
  const char *brace = memchr(key, '{', key_len);
  if (brace == NULL || brace == key) return key_len;
  return (size_t)(brace - key);
}

size_t tally_graphite_path(const char *key, size_t key_len, char *out, size_t out_size)
{
  assert(key != NULL && out != NULL);
  if (key_len == 0 || out_size == 0) return 0;
  size_t name_len = tags_start(key, key_len);
  size_t used = 0;
  if (!append(PART_NAME, key, name_len, out, out_size, &used)) return 0;
  /* Bounded by the key: every round takes one k=v and moves past it. */
  size_t at = name_len + 1;
  size_t end = key_len - 1; /* the closing '}' */
  while (name_len < key_len && at <= end) {
    const char *comma = memchr(key + at, ',', end - at);
    size_t tag_end = comma == NULL ? end : (size_t)(comma - key);
    const char *equals = memchr(key + at, '=', tag_end - at);
    size_t key_end = equals == NULL ? tag_end : (size_t)(equals - key);
    size_t value_at = equals == NULL ? tag_end : key_end + 1;
    if (used + 1 >= out_size) return 0;
    out[used++] = ';';
    if (!append(PART_TAG_KEY, key + at, key_end - at, out, out_size, &used)) return 0;
    if (used + 1 >= out_size) return 0;
    out[used++] = '=';
    if (!append(PART_TAG_VALUE, key + value_at, tag_end - value_at, out, out_size, &used)) {
      return 0;
    }
    at = tag_end + 1;
  }
  assert(used < out_size);
  out[used] = '\0';
  return used;
}
