/*
 * export_name.c — counter keys as Prometheus series names and labels
 * (export_name.h): the statsd name mapped to a metric name, a key's
 * DogStatsD tags (NAME{k=v,...}) split into sanitised labels, and the
 * plain-key rule that decides when the statsd_name label must keep two keys
 * apart. Pure: no state, no allocation; every write is bounds-checked
 * against TALLY_EXPORT_SERIES_SIZE_MAX by assertion (the bound is computed
 * from TALLY_NAME_LEN_MAX in limits.h).
 *
 * Thread: the HTTP thread (GET /counters, counters.c); the unit test.
 */
#include <assert.h>
#include <string.h>

#include "export_name.h"

int tally_export_key_split(const char *key, size_t key_len, size_t *name_len,
  struct tally_export_tag *tags, uint32_t tags_max)
{
  assert(key != NULL && key_len >= 1);
  const char *open = memchr(key, '{', key_len);
  *name_len = key_len;
  if (open == NULL) return 0;
  size_t name = (size_t)(open - key);
  if (name == 0 || key[key_len - 1] != '}' || name + 2 >= key_len) return -1;
  uint32_t count = 0;
  size_t at = name + 1;
  size_t end = key_len - 1; /* the closing brace */
  while (at <= end) {
    const char *comma = memchr(key + at, ',', end - at);
    size_t stop = comma == NULL ? end : (size_t)(comma - key);
    if (stop == at || count == tags_max) return -1; /* an empty tag, or too many */
    const char *equals = memchr(key + at, '=', stop - at);
    size_t key_stop = equals == NULL ? stop : (size_t)(equals - key);
    if (key_stop == at) return -1; /* an empty tag key */
    if (memchr(key + at, '{', stop - at) != NULL) return -1;
    tags[count] = (struct tally_export_tag){ .key = key + at, .key_len = (uint32_t)(key_stop - at),
      .value = equals == NULL ? key + stop : equals + 1,
      .value_len = equals == NULL ? 0u : (uint32_t)(stop - key_stop - 1),
      .has_equals = equals != NULL };
    count++;
    at = stop + 1;
  }
  assert(count >= 1 && count <= tags_max);
  *name_len = name;
  return (int)count;
}

/* A bounded writer into series->text. */
static void put(struct tally_export_series *series, const char *bytes, size_t count)
{
  assert(series->length + count <= sizeof series->text);
  memcpy(series->text + series->length, bytes, count);
  series->length += (uint32_t)count;
}

static bool is_letter(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

/* Letters, digits and dots, starting with a letter: what maps one-to-one. */
static bool plain_word(const char *word, size_t length)
{
  if (length == 0 || !is_letter(word[0])) return false;
  for (size_t i = 0; i < length; i++) {
    if (!is_letter(word[i]) && !is_digit(word[i]) && word[i] != '.') return false;
  }
  return true;
}

/* Writes WORD as a metric or label name: [A-Za-z0-9_] kept, any other byte '_'. */
static void put_name(struct tally_export_series *series, const char *word, size_t length)
{
  assert(length >= 1);
  if (is_digit(word[0])) put(series, "_", 1);
  for (size_t i = 0; i < length; i++) {
    char c = word[i];
    char mapped = is_letter(c) || is_digit(c) || c == '_' ? c : '_';
    put(series, &mapped, 1);
  }
}

size_t tally_export_escape(const char *value, size_t value_len, char *out, size_t out_size)
{
  size_t used = 0;
  for (size_t i = 0; i < value_len; i++) {
    char c = value[i];
    bool escaped = c == '\\' || c == '"' || c == '\n';
    assert(used + (escaped ? 2u : 1u) <= out_size);
    if (escaped) out[used++] = '\\';
    out[used++] = c == '\n' ? 'n' : c;
  }
  return used;
}

static void put_value(struct tally_export_series *series, const char *value, size_t length)
{
  put(series, "=\"", 2);
  series->length += (uint32_t)tally_export_escape(value, length, series->text + series->length,
    sizeof series->text - series->length);
  put(series, "\"", 1);
}

static const char *const reserved_labels[] = { "origin", "copy", "statsd_name" };

/* Whether the mapped label name text[from, length) is reserved (or starts with "__"). */
static bool label_reserved(const struct tally_export_series *series, uint32_t from)
{
  const char *name = series->text + from;
  size_t length = series->length - from;
  if (length >= 2 && name[0] == '_' && name[1] == '_') return true;
  for (size_t i = 0; i < sizeof reserved_labels / sizeof reserved_labels[0]; i++) {
    if (strlen(reserved_labels[i]) == length && memcmp(reserved_labels[i], name, length) == 0) {
      return true;
    }
  }
  return false;
}

/* Writes one tag as a label; returns false if its name repeats an earlier label's. */
static bool put_tag(struct tally_export_series *series, const struct tally_export_tag *tag,
  const uint32_t *starts, const uint32_t *lengths, uint32_t index)
{
  uint32_t from = series->length;
  put_name(series, tag->key, tag->key_len);
  if (label_reserved(series, from)) {
    char mapped[TALLY_NAME_LEN_MAX + 1];
    size_t length = series->length - from;
    assert(length <= sizeof mapped);
    memcpy(mapped, series->text + from, length);
    series->length = from;
    put(series, "tag_", 4);
    put(series, mapped, length);
    series->plain = false;
  }
  uint32_t length = series->length - from;
  for (uint32_t i = 0; i < index; i++) {
    if (lengths[i] == length && memcmp(series->text + starts[i], series->text + from, length) == 0) {
      return false;
    }
  }
  put_value(series, tag->value, tag->value_len);
  return true;
}

/* Whether the tags keep the key plain: plain keys, increasing, each with a value. */
static bool tags_plain(const struct tally_export_tag *tags, uint32_t count)
{
  for (uint32_t i = 0; i < count; i++) {
    if (!plain_word(tags[i].key, tags[i].key_len) || tags[i].value_len == 0) return false;
    if (i == 0) continue;
    size_t shorter = tags[i - 1].key_len < tags[i].key_len ? tags[i - 1].key_len : tags[i].key_len;
    int order = memcmp(tags[i - 1].key, tags[i].key, shorter);
    if (order > 0 || (order == 0 && tags[i - 1].key_len >= tags[i].key_len)) return false;
  }
  return true;
}

static bool metric_reserved(const struct tally_export_series *series)
{
  const char *name = series->text;
  return (series->family_len == 2 && memcmp(name, "up", 2) == 0) ||
    (series->family_len >= 7 && memcmp(name, "scrape_", 7) == 0);
}

/* The tags as labels; false (and the text cut back) if two map to one label name. */
static bool put_tags(struct tally_export_series *series, const struct tally_export_tag *tags,
  uint32_t count)
{
  uint32_t starts[TALLY_EXPORT_LABELS_MAX];
  uint32_t lengths[TALLY_EXPORT_LABELS_MAX];
  assert(count <= TALLY_EXPORT_LABELS_MAX);
  uint32_t from = series->length;
  for (uint32_t i = 0; i < count; i++) {
    if (i > 0) put(series, ",", 1);
    starts[i] = series->length;
    if (!put_tag(series, &tags[i], starts, lengths, i)) {
      series->length = from;
      return false;
    }
    const char *equals = memchr(series->text + starts[i], '=', series->length - starts[i]);
    assert(equals != NULL);
    lengths[i] = (uint32_t)(equals - (series->text + starts[i]));
  }
  return true;
}

void tally_export_series_of(const char *key, size_t key_len, struct tally_export_series *series)
{
  assert(key_len >= 1 && key_len <= TALLY_NAME_LEN_MAX);
  struct tally_export_tag tags[TALLY_EXPORT_LABELS_MAX];
  size_t name_len = 0;
  int count = tally_export_key_split(key, key_len, &name_len, tags, TALLY_EXPORT_LABELS_MAX);
  series->length = 0;
  put_name(series, key, name_len);
  series->family_len = series->length;
  series->plain = count >= 0 && plain_word(key, name_len) && !metric_reserved(series) &&
    (count == 0 || tags_plain(tags, (uint32_t)count));
  if (count > 0 && !put_tags(series, tags, (uint32_t)count)) series->plain = false;
  if (series->plain) return;
  if (series->length > series->family_len) put(series, ",", 1);
  put(series, "statsd_name", 11);
  put_value(series, key, key_len);
  assert(series->family_len >= 1 && series->length > series->family_len);
}
