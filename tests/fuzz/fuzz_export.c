/*
 * fuzz_export.c — libFuzzer target for /counters' names (control/daemon/
 * export_name.c): any valid counter key (tally_name_valid; other inputs are
 * skipped). The series stays within its bound (the writer asserts it); its
 * metric name and label names are valid Prometheus names, no label name
 * repeats or starts with "__", every value is properly escaped; and the
 * mapping is one-to-one: a plain series has no statsd_name label and gives
 * its key back exactly (names with '_' read as '.', tags in order), any
 * other series carries statsd_name holding the key. So two keys never
 * become one series.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "export_name.h"
#include "tally/name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool name_char(char c, bool first)
{
  bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return letter || (!first && c >= '0' && c <= '9');
}

/* A label: NAME="VALUE" at text[*at]; its name and unescaped value. Moves *at past it. */
static void read_label(const char *text, size_t end, size_t *at, const char **name,
  size_t *name_len, char *value, size_t *value_len)
{
  size_t start = *at;
  while (*at < end && text[*at] != '=') {
    assert(name_char(text[*at], *at == start));
    (*at)++;
  }
  *name = text + start;
  *name_len = *at - start;
  assert(*name_len >= 1 && *at + 1 < end && text[*at + 1] == '"');
  assert(!(*name_len >= 2 && text[start] == '_' && text[start + 1] == '_'));
  *at += 2;
  *value_len = 0;
  while (text[*at] != '"') {
    assert(*at < end);
    char c = text[(*at)++];
    if (c == '\\') {
      c = text[(*at)++];
      assert(c == '\\' || c == '"' || c == 'n');
      if (c == 'n') c = '\n';
    }
    value[(*value_len)++] = c;
  }
  (*at)++; /* the closing quote */
  assert(*at == end || text[*at] == ',');
  if (*at < end) (*at)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *key = (const char *)data;
  if (!tally_name_valid(key, size)) return 0;
  struct tally_export_series series;
  tally_export_series_of(key, size, &series);
  assert(series.family_len >= 1 && series.length <= sizeof series.text);
  for (uint32_t i = 0; i < series.family_len; i++) assert(name_char(series.text[i], i == 0));
  char rebuilt[TALLY_EXPORT_SERIES_SIZE_MAX];
  size_t rebuilt_len = 0;
  for (uint32_t i = 0; i < series.family_len; i++) {
    rebuilt[rebuilt_len++] = series.text[i] == '_' ? '.' : series.text[i];
  }
  const char *names[TALLY_EXPORT_LABELS_MAX + 1];
  size_t name_lens[TALLY_EXPORT_LABELS_MAX + 1];
  uint32_t labels = 0;
  bool statsd_name = false;
  size_t at = series.family_len;
  while (at < series.length) {
    char value[TALLY_NAME_LEN_MAX];
    size_t value_len = 0;
    assert(labels <= TALLY_EXPORT_LABELS_MAX);
    read_label(series.text, series.length, &at, &names[labels], &name_lens[labels], value,
      &value_len);
    for (uint32_t j = 0; j < labels; j++) {
      assert(name_lens[j] != name_lens[labels] || memcmp(names[j], names[labels], name_lens[j]) != 0);
    }
    if (name_lens[labels] == 11 && memcmp(names[labels], "statsd_name", 11) == 0) {
      assert(value_len == size && memcmp(value, key, size) == 0);
      statsd_name = true;
    } else {
      rebuilt[rebuilt_len++] = labels == 0 ? '{' : ',';
      for (size_t j = 0; j < name_lens[labels]; j++) {
        rebuilt[rebuilt_len++] = names[labels][j] == '_' ? '.' : names[labels][j];
      }
      rebuilt[rebuilt_len++] = '=';
      memcpy(rebuilt + rebuilt_len, value, value_len);
      rebuilt_len += value_len;
    }
    labels++;
  }
  assert(statsd_name == !series.plain);
  if (series.plain) {
    if (labels > 0) rebuilt[rebuilt_len++] = '}';
    assert(rebuilt_len == size && memcmp(rebuilt, key, size) == 0);
  }
  return 0;
}
