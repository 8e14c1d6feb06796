/*
 * key.h — a counter's identity: its name plus its tag set, in ONE canonical
 * text form, which is what the store keeps as the counter's key and what
 * every path (statsd, the binary protocol, libtally, tallyctl) produces for
 * the same name and tags given in any order (docs/protocol.md, "Counter
 * keys and tags"):
 *
 *   key  = name                          ; no tags
 *        / name "{" tag *( "," tag ) "}" ; tags sorted by key, bytewise
 *   tag  = tkey [ "=" value ]            ; a tag without a value: tkey alone
 *
 *   name : 1.. bytes of 0x21..0x7e except ':' '|' '@' '#' '{' '}'
 *   tkey : 1..TALLY_TAG_KEY_LEN_MAX bytes, value: 1..TALLY_TAG_VALUE_LEN_MAX
 *          bytes, both of 0x21..0x7e except ':' '|' '@' '#' ',' '=' '{' '}'
 *   the whole key: at most TALLY_NAME_LEN_MAX bytes, at most TALLY_TAGS_MAX tags
 *
 * A key is therefore always a valid name byte string (tally/name.h), so the
 * store, the wire codecs and replication carry it unchanged. Reserved bytes
 * are refused, never escaped or rewritten: two different tag sets can never
 * share a key. The same tag key twice: identical tags count once; two values
 * for one tag key are refused (TALLY_KEY_TAG_DUPLICATE). An empty value
 * ("env:" in statsd, "env=" in key text) is the tag without a value ("env").
 *
 * Also the statsd tag policy (ingest.statsd_tags): keep every tag, drop them
 * all, or keep only an allow-list of tag keys. Pure; any thread (the
 * parser runs on lcores; libtally, tallyd's control thread and tests too).
 */
#ifndef TALLY_KEY_H
#define TALLY_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tally/limits.h"
#include "tally/name.h"

/* Why a name and tags make no key (labels in tally_key_status_text). */
enum tally_key_status {
  TALLY_KEY_OK = 0,
  TALLY_KEY_NAME_EMPTY,     /* nothing before the tags */
  TALLY_KEY_NAME_BAD_CHAR,  /* a name byte outside the name set ('{' '}' included) */
  TALLY_KEY_SYNTAX,         /* key text: '{' without a final '}' */
  TALLY_KEY_TAG_EMPTY,      /* an empty tag, or a tag with an empty key */
  TALLY_KEY_TAG_BAD_CHAR,   /* a tag byte outside the tag set */
  TALLY_KEY_TAG_TOO_LONG,   /* tag key over TALLY_TAG_KEY_LEN_MAX or value over _VALUE_ */
  TALLY_KEY_TAGS_TOO_MANY,  /* more than TALLY_TAGS_MAX tags */
  TALLY_KEY_TAG_DUPLICATE,  /* one tag key with two different values */
  TALLY_KEY_TOO_LONG,       /* the canonical key over TALLY_NAME_LEN_MAX bytes */
  TALLY_KEY_STATUS_COUNT
};

/* One tag as given (not NUL-terminated). value_len 0: a tag without a value. */
struct tally_tag {
  const char *key;
  uint32_t key_len;
  const char *value;
  uint32_t value_len;
};

/*
 * A byte of a counter name inside a key: a name byte but '{' (0x7b) and '}'
 * (0x7d). A table, as tally/name.h's: the statsd name check is hot.
 */
static const uint8_t tally_key_name_byte_table[256] = {
  [0x21 ... 0x22] = 1, [0x24 ... 0x39] = 1, [0x3b ... 0x3f] = 1, [0x41 ... 0x7a] = 1,
  [0x7e] = 1,
};

/* A byte of a tag key or value: a key name byte but ',' (0x2c) and '=' (0x3d). */
static const uint8_t tally_tag_byte_table[256] = {
  [0x21 ... 0x22] = 1, [0x24 ... 0x2b] = 1, [0x2d ... 0x39] = 1, [0x3b ... 0x3c] = 1,
  [0x3e ... 0x3f] = 1, [0x41 ... 0x7a] = 1, [0x7e] = 1,
};

static inline bool tally_key_name_byte_valid(uint8_t byte)
{
  return tally_key_name_byte_table[byte] != 0;
}

static inline bool tally_tag_byte_valid(uint8_t byte)
{
  return tally_tag_byte_table[byte] != 0;
}

/*
 * Writes the canonical key of name and tags into out and its length into
 * *out_len. Sorts tags in place (the caller's array). With no tag the key is
 * the name. Checks everything in the grammar above.
 */
enum tally_key_status tally_key_build(const char *name, size_t name_len, struct tally_tag *tags,
  uint32_t tag_count, char out[TALLY_NAME_LEN_MAX], uint32_t *out_len);

/*
 * Reads key text, "name" or "name{k=v,k2,...}" with the tags in any order
 * (and "k=" for "k"), and writes its canonical form as tally_key_build does.
 * The canonical form is never longer than the text.
 */
enum tally_key_status tally_key_canonicalize(const char *text, size_t text_len,
  char out[TALLY_NAME_LEN_MAX], uint32_t *out_len);

/* Whether text (at most TALLY_NAME_LEN_MAX bytes) is already a canonical key. */
bool tally_key_is_canonical(const char *text, size_t text_len);

/* One line of meaning ("tag key given twice with different values"). */
const char *tally_key_status_text(enum tally_key_status status);

/* ---- The statsd tag policy (ingest.statsd_tags, ingest.statsd_tags_allow) ---- */

enum tally_tags_mode {
  TALLY_TAGS_KEEP = 0, /* every tag is part of the key (the default) */
  TALLY_TAGS_DROP,     /* tags are skipped unchecked: one counter per name */
  TALLY_TAGS_ALLOW,    /* only tags whose key is in the allow-list; others skipped unchecked */
};

struct tally_tags_policy {
  enum tally_tags_mode mode;
  uint32_t allow_count; /* TALLY_TAGS_ALLOW: 1..TALLY_STATSD_TAGS_ALLOW_MAX */
  uint8_t allow_len[TALLY_STATSD_TAGS_ALLOW_MAX];
  char allow[TALLY_STATSD_TAGS_ALLOW_MAX][TALLY_TAG_KEY_LEN_MAX];
};

static_assert(TALLY_TAG_KEY_LEN_MAX <= UINT8_MAX, "an allowed key's length fits a byte");

/* Whether the policy keeps a tag with this key (DROP keeps none). */
static inline bool tally_tags_policy_keeps(const struct tally_tags_policy *policy,
  const char *key, size_t key_len)
{
  if (policy->mode == TALLY_TAGS_KEEP) return true;
  if (policy->mode == TALLY_TAGS_DROP) return false;
  for (uint32_t i = 0; i < policy->allow_count && i < TALLY_STATSD_TAGS_ALLOW_MAX; i++) {
    if (policy->allow_len[i] == key_len && memcmp(policy->allow[i], key, key_len) == 0) {
      return true;
    }
  }
  return false;
}

#endif
