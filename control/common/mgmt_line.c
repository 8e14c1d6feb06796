/*
 * mgmt_line.c — the management request line parser (control thread; pure):
 * a line of any bytes up to TALLY_MGMT_LINE_MAX matched against the command
 * table's words and argument kinds (mgmt_proto.h), byte by byte with no libc
 * parsing. control/daemon/mgmt.c dispatches on the result;
 * tests/fuzz/fuzz_mgmt.c checks it against a reference written the other way
 * round.
 */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "mgmt_line.h"

struct command_shape {
  const char *words;
  enum tally_mgmt_argument argument;
};

static const struct command_shape shapes[TALLY_MGMT_COMMAND_COUNT] = {
#define TALLY_MGMT_COMMAND_SHAPE(id, command, words_text, argument_kind, changes, usage, help) \
  [TALLY_MGMT_##id] = { .words = words_text, .argument = TALLY_MGMT_ARGUMENT_##argument_kind },
  TALLY_MGMT_FOREACH_COMMAND(TALLY_MGMT_COMMAND_SHAPE)
#undef TALLY_MGMT_COMMAND_SHAPE
};

const char *tally_mgmt_command_words(enum tally_mgmt_command_id id)
{
  assert((unsigned)id < TALLY_MGMT_COMMAND_COUNT);
  assert(shapes[id].words != NULL);
  return shapes[id].words;
}

/* Whether line is the command's words with an argument it takes; sets the argument. */
static bool command_fits(const struct command_shape *shape, const char *line, size_t line_len,
  const char **argument, size_t *argument_len)
{
  size_t words_len = strlen(shape->words);
  assert(words_len > 0);
  if (line_len < words_len || memcmp(line, shape->words, words_len) != 0) return false;
  if (line_len == words_len) {
    *argument = line + line_len;
    *argument_len = 0;
    return shape->argument != TALLY_MGMT_ARGUMENT_REQUIRED;
  }
  if (line[words_len] != ' ') return false;
  *argument = line + words_len + 1;
  *argument_len = line_len - words_len - 1;
  if (shape->argument == TALLY_MGMT_ARGUMENT_NONE) return false;
  return shape->argument == TALLY_MGMT_ARGUMENT_OPTIONAL || *argument_len > 0;
}

enum tally_mgmt_command_id tally_mgmt_line_parse(const char *line, size_t line_len,
  const char **argument, size_t *argument_len)
{
  assert(line != NULL || line_len == 0);
  assert(argument != NULL && argument_len != NULL);
  enum tally_mgmt_command_id found = TALLY_MGMT_COMMAND_COUNT;
  size_t found_words_len = 0;
  *argument = line + line_len;
  *argument_len = 0;
  for (unsigned i = 0; i < TALLY_MGMT_COMMAND_COUNT; i++) {
    const struct command_shape *shape = &shapes[i];
    const char *fit_argument = NULL;
    size_t fit_argument_len = 0;
    if (!command_fits(shape, line, line_len, &fit_argument, &fit_argument_len)) continue;
    size_t words_len = strlen(shape->words);
    if (found != TALLY_MGMT_COMMAND_COUNT && found_words_len >= words_len) continue;
    found = (enum tally_mgmt_command_id)i;
    found_words_len = words_len;
    *argument = fit_argument;
    *argument_len = fit_argument_len;
  }
  assert(*argument + *argument_len == line + line_len);
  return found;
}
