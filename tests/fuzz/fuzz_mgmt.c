/*
 * fuzz_mgmt.c — libFuzzer target for the management request line parser
 * (control/common/mgmt_line.c, matching the command table of
 * control/common/mgmt_proto.h): any bytes up to TALLY_MGMT_LINE_MAX. The argument
 * lies inside the line; GET, GET_QUORUM, READONLY, LOG_HOLD and DEGRADE never have an
 * empty one; and the
 * result agrees with a reference written the other way round (prefixes
 * peeled off, then the words spelt out), and the line can be rebuilt from
 * it: the request's words, a space and the argument.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "mgmt_line.h"
#include "tally/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UNKNOWN TALLY_MGMT_COMMAND_COUNT

/* The commands whose whole line is their words (no argument), spelt out here. */
static const enum tally_mgmt_command_id plain[] = {
  TALLY_MGMT_STATS, TALLY_MGMT_READY, TALLY_MGMT_RELOAD, TALLY_MGMT_CLUSTER,
  TALLY_MGMT_CLUSTER_RELOAD, TALLY_MGMT_DRAIN, TALLY_MGMT_REJOIN, TALLY_MGMT_CHECKPOINT,
};
static const char *const plain_words[] = {
  "stats", "ready", "reload", "cluster", "cluster reload", "drain", "rejoin", "checkpoint",
};

/* The commands whose argument is required, spelt out here: words, a space, the argument. */
static const enum tally_mgmt_command_id required[] = {
  TALLY_MGMT_READONLY, TALLY_MGMT_LOG_HOLD, TALLY_MGMT_DEGRADE,
};
static const char *const required_prefixes[] = { "readonly ", "log hold ", "degrade " };
static_assert(sizeof(required) / sizeof(required[0]) ==
  sizeof(required_prefixes) / sizeof(required_prefixes[0]), "one spelling per command");
static_assert(sizeof(plain) / sizeof(plain[0]) == sizeof(plain_words) / sizeof(plain_words[0]),
  "one spelling per plain command");

/* line starts with prefix: the rest. */
static bool peel(const char *line, size_t line_len, const char *prefix, const char **rest,
  size_t *rest_len)
{
  size_t prefix_len = strlen(prefix);
  if (line_len < prefix_len) return false;
  for (size_t i = 0; i < prefix_len; i++) {
    if (line[i] != prefix[i]) return false;
  }
  *rest = line + prefix_len;
  *rest_len = line_len - prefix_len;
  return true;
}

static enum tally_mgmt_command_id reference(const char *line, size_t line_len,
  const char **argument, size_t *argument_len)
{
  const char *rest;
  size_t rest_len;
  if (peel(line, line_len, "get ", &rest, &rest_len) && rest_len > 0) {
    const char *name;
    size_t name_len;
    if (peel(rest, rest_len, "--quorum ", &name, &name_len) && name_len > 0) {
      *argument = name;
      *argument_len = name_len;
      return TALLY_MGMT_GET_QUORUM;
    }
    *argument = rest;
    *argument_len = rest_len;
    return TALLY_MGMT_GET;
  }
  if (peel(line, line_len, "list ", &rest, &rest_len) || (line_len == 4 &&
        peel(line, line_len, "list", &rest, &rest_len))) {
    *argument = rest;
    *argument_len = rest_len;
    return TALLY_MGMT_LIST;
  }
  for (size_t r = 0; r < sizeof(required) / sizeof(required[0]); r++) {
    if (peel(line, line_len, required_prefixes[r], &rest, &rest_len) && rest_len > 0) {
      *argument = rest;
      *argument_len = rest_len;
      return required[r];
    }
  }
  for (size_t w = 0; w < sizeof(plain) / sizeof(plain[0]); w++) {
    if (peel(line, line_len, plain_words[w], &rest, &rest_len) && rest_len == 0) return plain[w];
  }
  return UNKNOWN;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > TALLY_MGMT_LINE_MAX) return 0;
  const char *line = (const char *)data;
  const char *argument = NULL;
  size_t argument_len = 0;
  enum tally_mgmt_command_id request = tally_mgmt_line_parse(line, size, &argument, &argument_len);
  assert(request <= UNKNOWN);
  assert(argument != NULL || size == 0);
  assert(argument >= line && argument + argument_len == line + size); /* inside, to the end */
  const char *expected_argument = NULL;
  size_t expected_len = 0;
  assert(reference(line, size, &expected_argument, &expected_len) == request);
  if (request == UNKNOWN) return 0;
  bool required_argument = request == TALLY_MGMT_GET || request == TALLY_MGMT_GET_QUORUM ||
    request == TALLY_MGMT_READONLY || request == TALLY_MGMT_LOG_HOLD ||
    request == TALLY_MGMT_DEGRADE;
  bool has_argument = required_argument || request == TALLY_MGMT_LIST;
  if (required_argument) {
    assert(argument_len > 0);
  }
  if (!has_argument) assert(argument_len == 0);
  if (has_argument) {
    assert(argument == expected_argument);
    assert(argument_len == expected_len);
  }
  /* The line is the request's words, then " ARGUMENT" when there is one
   * ("list " is "list" with an empty prefix). */
  const char *words = tally_mgmt_command_words(request);
  size_t word_len = strlen(words);
  assert(memcmp(line, words, word_len) == 0);
  if (size == word_len) {
    assert(argument_len == 0);
  } else if (argument_len == 0) {
    assert(request == TALLY_MGMT_LIST);
    assert(size == word_len + 1u && line[word_len] == ' ');
  } else {
    assert(size == word_len + 1u + argument_len);
    assert(line[word_len] == ' ');
    assert(argument == line + word_len + 1u);
  }
  return 0;
}
