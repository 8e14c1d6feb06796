/*
 * mgmt_line.c — the management request line parser (control thread): the
 * words of a request and its argument, byte by byte with no libc parsing,
 * for a line of any bytes up to TALLY_MGMT_LINE_MAX. mgmt.c dispatches on
 * the result; tests/fuzz/fuzz_mgmt.c checks it against a reference.
 */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "mgmt_line.h"

/* "word" alone (empty argument) or "word ARGUMENT". */
static bool split_command(const char *line, size_t line_len, const char *word,
  const char **argument, size_t *argument_len)
{
  size_t word_len = strlen(word);
  if (line_len < word_len || memcmp(line, word, word_len) != 0) return false;
  if (line_len == word_len) {
    *argument = line + line_len;
    *argument_len = 0;
    return true;
  }
  if (line[word_len] != ' ') return false;
  *argument = line + word_len + 1;
  *argument_len = line_len - word_len - 1;
  return true;
}

static bool is_word(const char *line, size_t line_len, const char *word)
{
  size_t word_len = strlen(word);
  return line_len == word_len && memcmp(line, word, word_len) == 0;
}

enum tally_mgmt_request tally_mgmt_line_parse(const char *line, size_t line_len,
  const char **argument, size_t *argument_len)
{
  assert(line != NULL || line_len == 0);
  assert(argument != NULL && argument_len != NULL);
  static const struct {
    const char *word;
    enum tally_mgmt_request request;
  } words[] = {
    { "stats", TALLY_MGMT_STATS }, { "ready", TALLY_MGMT_READY },
    { "reload", TALLY_MGMT_RELOAD }, { "cluster", TALLY_MGMT_CLUSTER },
    { "cluster reload", TALLY_MGMT_CLUSTER_RELOAD },
    { "readonly on", TALLY_MGMT_READONLY_ON }, { "readonly off", TALLY_MGMT_READONLY_OFF },
    { "drain", TALLY_MGMT_DRAIN }, { "rejoin", TALLY_MGMT_REJOIN },
  };
  if (split_command(line, line_len, "get --quorum", argument, argument_len) &&
      *argument_len > 0) {
    return TALLY_MGMT_GET_QUORUM;
  }
  if (split_command(line, line_len, "get", argument, argument_len) && *argument_len > 0) {
    return TALLY_MGMT_GET;
  }
  if (split_command(line, line_len, "list", argument, argument_len)) return TALLY_MGMT_LIST;
  *argument = line + line_len;
  *argument_len = 0;
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
    if (is_word(line, line_len, words[i].word)) return words[i].request;
  }
  return TALLY_MGMT_UNKNOWN;
}
