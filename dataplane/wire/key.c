/*
 * key.c — the canonical counter key: name plus tag set in one text form
 * (include/tally/key.h has the grammar; docs/protocol.md, "Counter keys and
 * tags", the rules). Builds it from a name and tags (statsd's DogStatsD tags,
 * libtally's tag arrays) and canonicalizes key text (binary-protocol pairs,
 * libtally names, tallyctl's get and list), so every path stores the same key
 * for the same name and tags in any order.
 *
 * Bounded and allocation-free: at most TALLY_TAGS_MAX tags, sorted by
 * insertion (at most 120 comparisons), written into a caller's buffer of
 * TALLY_NAME_LEN_MAX bytes. Runs on an lcore per tagged line or pair, so no
 * libc call but memcmp/memcpy/memchr.
 *
 * Thread: any (pure).
 */
#include <assert.h>

#include "tally/key.h"

static_assert(TALLY_TAGS_MAX >= 1u, "a key may carry a tag");
static_assert(2u + TALLY_TAG_KEY_LEN_MAX + 1u + TALLY_TAG_VALUE_LEN_MAX + 1u <=
  TALLY_NAME_LEN_MAX, "a 1-byte name with one tag of the longest key and value is a key");

static const char *const status_texts[TALLY_KEY_STATUS_COUNT] = {
  [TALLY_KEY_OK] = "a valid key",
  [TALLY_KEY_NAME_EMPTY] = "empty counter name",
  [TALLY_KEY_NAME_BAD_CHAR] = "name byte outside 0x21..0x7e or one of : | @ # { }",
  [TALLY_KEY_SYNTAX] = "not of the form name or name{k=v,...}",
  [TALLY_KEY_TAG_EMPTY] = "empty tag or empty tag key",
  [TALLY_KEY_TAG_BAD_CHAR] = "tag byte outside 0x21..0x7e or one of : | @ # , = { }",
  [TALLY_KEY_TAG_TOO_LONG] = "tag key over 64 bytes or tag value over 128 bytes",
  [TALLY_KEY_TAGS_TOO_MANY] = "more than 16 tags",
  [TALLY_KEY_TAG_DUPLICATE] = "one tag key with two different values",
  [TALLY_KEY_TOO_LONG] = "key (name and tags) longer than 224 bytes",
};

static_assert(TALLY_TAG_KEY_LEN_MAX == 64u && TALLY_TAG_VALUE_LEN_MAX == 128u &&
  TALLY_TAGS_MAX == 16u && TALLY_NAME_LEN_MAX == 224u, "the texts above say these numbers");

const char *tally_key_status_text(enum tally_key_status status)
{
  assert((unsigned)status < TALLY_KEY_STATUS_COUNT);
  assert(status_texts[status] != NULL);
  return status_texts[status];
}

static bool tag_bytes_valid(const char *bytes, uint32_t length)
{
  for (uint32_t i = 0; i < length; i++) {
    if (!tally_tag_byte_valid((uint8_t)bytes[i])) return false;
  }
  return true;
}

static enum tally_key_status tag_check(const struct tally_tag *tag)
{
  assert(tag != NULL);
  if (tag->key_len == 0) return TALLY_KEY_TAG_EMPTY;
  if (tag->key_len > TALLY_TAG_KEY_LEN_MAX || tag->value_len > TALLY_TAG_VALUE_LEN_MAX) {
    return TALLY_KEY_TAG_TOO_LONG;
  }
  if (!tag_bytes_valid(tag->key, tag->key_len)) return TALLY_KEY_TAG_BAD_CHAR;
  if (!tag_bytes_valid(tag->value, tag->value_len)) return TALLY_KEY_TAG_BAD_CHAR;
  return TALLY_KEY_OK;
}

/* Bytewise order of two strings, a shorter prefix first. */
static int bytes_compare(const char *a, uint32_t a_len, const char *b, uint32_t b_len)
{
  uint32_t common = a_len < b_len ? a_len : b_len;
  int order = common == 0 ? 0 : memcmp(a, b, common);
  if (order != 0) return order;
  return (a_len > b_len) - (a_len < b_len);
}

/*
 * Sorts by tag key and collapses identical tags; two values for one key is
 * TAG_DUPLICATE. Returns the tags left in *count.
 */
static enum tally_key_status tags_sort(struct tally_tag *tags, uint32_t *count)
{
  assert(*count <= TALLY_TAGS_MAX);
  for (uint32_t i = 1; i < *count; i++) {
    struct tally_tag moving = tags[i];
    uint32_t j = i;
    while (j > 0 && bytes_compare(tags[j - 1].key, tags[j - 1].key_len, moving.key,
      moving.key_len) > 0) {
      tags[j] = tags[j - 1];
      j--;
    }
    tags[j] = moving;
  }
  uint32_t kept = 0;
  for (uint32_t i = 0; i < *count; i++) {
    const struct tally_tag *previous = kept > 0 ? &tags[kept - 1] : NULL;
    if (previous != NULL &&
      bytes_compare(previous->key, previous->key_len, tags[i].key, tags[i].key_len) == 0) {
      if (bytes_compare(previous->value, previous->value_len, tags[i].value,
        tags[i].value_len) != 0) {
        return TALLY_KEY_TAG_DUPLICATE;
      }
      continue; /* the same tag again: once */
    }
    tags[kept++] = tags[i];
  }
  assert(kept <= *count);
  *count = kept;
  return TALLY_KEY_OK;
}

/* Appends bytes at *used if they fit the key; false if the key would be too long. */
static bool key_append(char *out, uint32_t *used, const char *bytes, uint32_t length)
{
  assert(*used <= TALLY_NAME_LEN_MAX);
  if (length > TALLY_NAME_LEN_MAX - *used) return false;
  if (length > 0) memcpy(out + *used, bytes, length);
  *used += length;
  return true;
}

enum tally_key_status tally_key_build(const char *name, size_t name_len, struct tally_tag *tags,
  uint32_t tag_count, char out[TALLY_NAME_LEN_MAX], uint32_t *out_len)
{
  assert(name != NULL || name_len == 0);
  assert(out != NULL && out_len != NULL);
  if (name_len == 0) return TALLY_KEY_NAME_EMPTY;
  if (name_len > TALLY_NAME_LEN_MAX) return TALLY_KEY_TOO_LONG;
  for (size_t i = 0; i < name_len; i++) {
    if (!tally_key_name_byte_valid((uint8_t)name[i])) return TALLY_KEY_NAME_BAD_CHAR;
  }
  if (tag_count > TALLY_TAGS_MAX) return TALLY_KEY_TAGS_TOO_MANY;
  for (uint32_t i = 0; i < tag_count; i++) {
    enum tally_key_status status = tag_check(&tags[i]);
    if (status != TALLY_KEY_OK) return status;
  }
  enum tally_key_status status = tags_sort(tags, &tag_count);
  if (status != TALLY_KEY_OK) return status;
  uint32_t used = 0;
  bool fits = key_append(out, &used, name, (uint32_t)name_len);
  for (uint32_t i = 0; i < tag_count && fits; i++) {
    fits = key_append(out, &used, i == 0 ? "{" : ",", 1) &&
      key_append(out, &used, tags[i].key, tags[i].key_len) &&
      (tags[i].value_len == 0 || (key_append(out, &used, "=", 1) &&
        key_append(out, &used, tags[i].value, tags[i].value_len)));
  }
  if (fits && tag_count > 0) fits = key_append(out, &used, "}", 1);
  if (!fits) return TALLY_KEY_TOO_LONG;
  assert(used >= name_len && used <= TALLY_NAME_LEN_MAX);
  assert(tally_name_valid(out, used));
  *out_len = used;
  return TALLY_KEY_OK;
}

/* Splits "k=v,k2,..." (the text between the braces) into tags. */
static enum tally_key_status tags_split(const char *text, size_t text_len,
  struct tally_tag tags[TALLY_TAGS_MAX], uint32_t *count)
{
  *count = 0;
  if (text_len == 0) return TALLY_KEY_OK; /* "name{}": no tags */
  const char *end = text + text_len;
  const char *cursor = text;
  /* Bounded: each element consumes at least its ',' or the end. */
  for (;;) {
    const char *comma = memchr(cursor, ',', (size_t)(end - cursor));
    const char *element_end = comma != NULL ? comma : end;
    if (element_end == cursor) return TALLY_KEY_TAG_EMPTY;
    if (*count == TALLY_TAGS_MAX) return TALLY_KEY_TAGS_TOO_MANY;
    const char *equals = memchr(cursor, '=', (size_t)(element_end - cursor));
    const char *key_end = equals != NULL ? equals : element_end;
    const char *value = equals != NULL ? equals + 1 : element_end;
    tags[*count] = (struct tally_tag){ .key = cursor, .key_len = (uint32_t)(key_end - cursor),
      .value = value, .value_len = (uint32_t)(element_end - value) };
    (*count)++;
    if (comma == NULL) return TALLY_KEY_OK;
    cursor = comma + 1;
    if (cursor == end) return TALLY_KEY_TAG_EMPTY; /* a trailing ',' */
  }
}

enum tally_key_status tally_key_canonicalize(const char *text, size_t text_len,
  char out[TALLY_NAME_LEN_MAX], uint32_t *out_len)
{
  assert(text != NULL || text_len == 0);
  const char *brace = text_len == 0 ? NULL : memchr(text, '{', text_len);
  if (brace == NULL) return tally_key_build(text, text_len, NULL, 0, out, out_len);
  size_t name_len = (size_t)(brace - text);
  if (text[text_len - 1] != '}' || (size_t)(brace - text) + 1u == text_len) {
    return name_len == 0 ? TALLY_KEY_NAME_EMPTY : TALLY_KEY_SYNTAX;
  }
  struct tally_tag tags[TALLY_TAGS_MAX];
  uint32_t count = 0;
  enum tally_key_status status =
    tags_split(brace + 1, text_len - name_len - 2u, tags, &count);
  if (status != TALLY_KEY_OK) return name_len == 0 ? TALLY_KEY_NAME_EMPTY : status;
  return tally_key_build(text, name_len, tags, count, out, out_len);
}

bool tally_key_is_canonical(const char *text, size_t text_len)
{
  if (text_len == 0 || text_len > TALLY_NAME_LEN_MAX) return false;
  char canonical[TALLY_NAME_LEN_MAX];
  uint32_t canonical_len = 0;
  if (tally_key_canonicalize(text, text_len, canonical, &canonical_len) != TALLY_KEY_OK) {
    return false;
  }
  return canonical_len == text_len && memcmp(canonical, text, text_len) == 0;
}
