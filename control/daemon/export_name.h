/*
 * export_name.h — a counter key as a Prometheus series: the metric name
 * mapped from the statsd name, DogStatsD tags (a key of the canonical form
 * NAME{k=v,...}) as labels with sanitised names, and the `statsd_name`
 * label that keeps the mapping one-to-one. The rules, with examples, are in
 * docs/operations.md, "Prometheus". Pure functions (export_name.c).
 */
#ifndef TALLY_EXPORT_NAME_H
#define TALLY_EXPORT_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

/* One tag of a key: slices of the key itself. */
struct tally_export_tag {
  const char *key;
  uint32_t key_len;       /* >= 1 */
  const char *value;
  uint32_t value_len;     /* 0 for a tag without '=' or with nothing after it */
  bool has_equals;
};

/*
 * Splits KEY into its name and tags. A key without '{' is a plain name (0
 * tags, *name_len = key_len). NAME{k=v,k2=v2} (NAME non-empty, the key ending
 * in the one '}' that closes, no empty tag and no empty tag key) gives its
 * tags in key order, split at the first '=' of each. Anything else with a
 * '{', or more than tags_max tags, returns -1 and the whole key is the name.
 * The one function to adjust if the canonical tag form changes.
 */
int tally_export_key_split(const char *key, size_t key_len, size_t *name_len,
  struct tally_export_tag *tags, uint32_t tags_max);

/* A key as a series: text[0, family_len) the metric name; then its labels. */
struct tally_export_series {
  char text[TALLY_EXPORT_SERIES_SIZE_MAX];
  uint32_t family_len;    /* >= 1 */
  uint32_t length;        /* text[family_len, length): `a="b",c="d"` without braces; may be empty */
  bool plain;             /* the name and tags map one-to-one: no statsd_name label */
};

/*
 * The series of KEY (a valid counter key, 1..TALLY_NAME_LEN_MAX bytes).
 * Metric and label names: every byte outside [A-Za-z0-9_] becomes '_', a
 * leading digit gets a '_' before it. A key is plain when its name and tag
 * keys are made only of letters, digits and dots and start with a letter,
 * its tag keys are in strictly increasing byte order and none is reserved
 * (origin, copy, statsd_name), every tag has a non-empty value, and its
 * metric name is neither `up` nor `scrape_*`. A key that is not plain also
 * carries statsd_name="KEY", so two keys never become one series; its
 * reserved or `__` tag names get a `tag_` prefix, and if two of its tags map
 * to one label name, only statsd_name is kept.
 */
void tally_export_series_of(const char *key, size_t key_len, struct tally_export_series *series);

/* Label value escaping of the exposition formats (\\, \", \n); returns bytes written. */
size_t tally_export_escape(const char *value, size_t value_len, char *out, size_t out_size);

#endif
