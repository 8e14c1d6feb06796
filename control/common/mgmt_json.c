/*
 * mgmt_json.c — the tabular answers of the management socket as JSON
 * (mgmt_json.h), for `tallyctl --json`. The server keeps one line format for
 * people and scripts alike; this renders it once, here, with fixed rules:
 * a value that is a decimal number (-?(0|[1-9][0-9]*)(.[0-9]+)?) is a JSON
 * number written with the same digits (counter totals are exact 128-bit
 * integers: JSON numbers have no size limit, but a reader that parses them
 * as doubles rounds beyond 2^53), anything else a string.
 *
 * Thread: tallyctl's (its own process); pure.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "mgmt_json.h"

/* One line of the body: [start, start + length), without its '\n'. */
struct line {
  const char *start;
  size_t length;
};

static bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

static bool is_number(const char *text, size_t length)
{
  size_t i = 0;
  if (i < length && text[i] == '-') i++;
  if (i == length || !is_digit(text[i])) return false;
  if (text[i] == '0' && i + 1 < length && is_digit(text[i + 1])) return false;
  while (i < length && is_digit(text[i])) i++;
  if (i < length && text[i] == '.') {
    i++;
    if (i == length || !is_digit(text[i])) return false;
    while (i < length && is_digit(text[i])) i++;
  }
  return i == length;
}

static void json_string(struct tally_out *out, const char *text, size_t length)
{
  tally_out_printf(out, "\"");
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') tally_out_printf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) tally_out_printf(out, "\\u%04x", c);
    else tally_out_printf(out, "%c", c);
  }
  tally_out_printf(out, "\"");
}

static void json_value(struct tally_out *out, const char *text, size_t length)
{
  if (is_number(text, length)) tally_out_printf(out, "%.*s", (int)length, text);
  else json_string(out, text, length);
}

/* "key": value */
static void json_member(struct tally_out *out, const char *key, size_t key_len, const char *value,
  size_t value_len)
{
  json_string(out, key, key_len);
  tally_out_printf(out, ": ");
  json_value(out, value, value_len);
}

/* The next line of [*at, end), or false at the end. */
static bool next_line(const char **at, const char *end, struct line *line)
{
  if (*at >= end) return false;
  const char *newline = memchr(*at, '\n', (size_t)(end - *at));
  line->start = *at;
  line->length = newline == NULL ? (size_t)(end - *at) : (size_t)(newline - *at);
  *at = newline == NULL ? end : newline + 1;
  return true;
}

static bool refuse(const struct line *line, char *error, size_t error_size, const char *what)
{
  snprintf(error, error_size, "%s: '%.*s'", what, (int)(line->length > 80 ? 80 : line->length),
    line->start);
  return false;
}

/* "name value": the name is everything before the last blank (a tag set may hold blanks). */
static bool render_list(const char *body, const char *end, struct tally_out *out, char *error,
  size_t error_size)
{
  tally_out_printf(out, "{\"counters\": [");
  struct line line;
  bool first = true;
  for (const char *at = body; next_line(&at, end, &line);) {
    const char *blank = NULL;
    for (size_t i = line.length; i > 0 && blank == NULL; i--) {
      if (line.start[i - 1] == ' ') blank = line.start + i - 1;
    }
    if (blank == NULL || blank == line.start) return refuse(&line, error, error_size, "not 'name value'");
    size_t name_len = (size_t)(blank - line.start);
    size_t value_len = line.length - name_len - 1;
    if (!is_number(blank + 1, value_len) || memchr(blank + 1, '.', value_len) != NULL) {
      return refuse(&line, error, error_size, "value not an integer");
    }
    tally_out_printf(out, "%s{\"name\": ", first ? "" : ", ");
    json_string(out, line.start, name_len);
    tally_out_printf(out, ", \"value\": %.*s}", (int)value_len, blank + 1);
    first = false;
  }
  tally_out_printf(out, "]}\n");
  return true;
}

/* "key value" lines as one flat object. */
static bool render_stats(const char *body, const char *end, struct tally_out *out, char *error,
  size_t error_size)
{
  tally_out_printf(out, "{");
  struct line line;
  bool first = true;
  for (const char *at = body; next_line(&at, end, &line);) {
    const char *blank = memchr(line.start, ' ', line.length);
    if (blank == NULL || blank == line.start) return refuse(&line, error, error_size, "not 'key value'");
    size_t key_len = (size_t)(blank - line.start);
    tally_out_printf(out, "%s", first ? "" : ", ");
    json_member(out, line.start, key_len, blank + 1, line.length - key_len - 1);
    first = false;
  }
  tally_out_printf(out, "}\n");
  return true;
}

/*
 * The fields of a cluster line after its kind word: "ID k=v k=v..." (self,
 * peer) or "k=v k=v..." (fault), as the members of an object.
 */
static bool render_fields(const struct line *line, size_t skip, bool with_id, struct tally_out *out,
  char *error, size_t error_size)
{
  const char *at = line->start + skip;
  const char *end = line->start + line->length;
  bool first = true;
  tally_out_printf(out, "{");
  /* Bounded by the line: every round takes one blank-separated field. */
  while (at < end) {
    const char *blank = memchr(at, ' ', (size_t)(end - at));
    const char *field_end = blank == NULL ? end : blank;
    size_t length = (size_t)(field_end - at);
    const char *equals = memchr(at, '=', length);
    tally_out_printf(out, "%s", first ? "" : ", ");
    if (first && with_id) {
      if (equals != NULL || !is_number(at, length)) return refuse(line, error, error_size, "no id");
      json_member(out, "id", 2, at, length);
    } else {
      if (equals == NULL || equals == at) return refuse(line, error, error_size, "not 'key=value'");
      json_member(out, at, (size_t)(equals - at), equals + 1, (size_t)(field_end - equals - 1));
    }
    first = false;
    at = blank == NULL ? end : blank + 1;
  }
  tally_out_printf(out, "}");
  return true;
}

static bool starts_with(const struct line *line, const char *word)
{
  size_t length = strlen(word);
  return line->length >= length && memcmp(line->start, word, length) == 0;
}

/* The single mode answers one sentence (control/daemon/mode_single.c). */
#define SINGLE_NODE_ANSWER "single node"

static bool render_cluster(const char *body, const char *end, struct tally_out *out, char *error,
  size_t error_size)
{
  struct line line;
  const char *at = body;
  if (!next_line(&at, end, &line)) {
    snprintf(error, error_size, "empty answer");
    return false;
  }
  if (starts_with(&line, SINGLE_NODE_ANSWER)) {
    tally_out_printf(out, "{\"mode\": \"single\", \"peers\": []}\n");
    return true;
  }
  if (!starts_with(&line, "self ")) return refuse(&line, error, error_size, "no self line");
  tally_out_printf(out, "{\"mode\": \"cluster\", \"self\": ");
  if (!render_fields(&line, strlen("self "), true, out, error, error_size)) return false;
  bool peers = false;
  /* Bounded by the body: every round takes one line. */
  while (next_line(&at, end, &line)) {
    if (starts_with(&line, "fault ") && !peers) {
      tally_out_printf(out, ", \"fault\": ");
      if (!render_fields(&line, strlen("fault "), false, out, error, error_size)) return false;
    } else if (starts_with(&line, "peer ")) {
      tally_out_printf(out, peers ? ", " : ", \"peers\": [");
      if (!render_fields(&line, strlen("peer "), true, out, error, error_size)) return false;
      peers = true;
    } else {
      return refuse(&line, error, error_size, "not a self, fault or peer line");
    }
  }
  tally_out_printf(out, "%s}\n", peers ? "]" : ", \"peers\": []");
  return true;
}

bool tally_mgmt_json(enum tally_mgmt_json_kind kind, const char *body, size_t body_len,
  struct tally_out *out, char *error, size_t error_size)
{
  assert(body != NULL || body_len == 0);
  assert(out != NULL && error != NULL && error_size > 0);
  const char *end = body + body_len;
  switch (kind) {
  case TALLY_MGMT_JSON_LIST: return render_list(body, end, out, error, error_size);
  case TALLY_MGMT_JSON_STATS: return render_stats(body, end, out, error, error_size);
  case TALLY_MGMT_JSON_CLUSTER: return render_cluster(body, end, out, error, error_size);
  }
  snprintf(error, error_size, "unknown kind");
  return false;
}
