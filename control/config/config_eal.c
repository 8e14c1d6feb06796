/*
 * config_eal.c — splitting eal.args (whitespace-separated) into the argv
 * that rte_eal_init takes, and counting its arguments for validation.
 * At most TALLY_EAL_ARGC_MAX arguments with the program name.
 *
 * Thread: start-up before the lcores (tallyd's first load, and tallyctl's),
 * and the control thread on a reload. Pure: no state outside the parse.
 */
#include <assert.h>
#include <string.h>

#include "config_internal.h"

static_assert(TALLY_EAL_ARGC_MAX >= 2u, "room for the program and one argument");

static bool eal_separator(char c) {
  return c == ' ' || c == '\t';
}

/* Arguments in args, not counting the program. */
uint32_t config_eal_args_count(const char *args) {
  assert(args != NULL);
  size_t length = strnlen(args, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  uint32_t count = 0;
  for (size_t i = 0; i < length; i++) {
    if (!eal_separator(args[i]) && (i == 0 || eal_separator(args[i - 1]))) count++;
  }
  assert(count <= length);
  return count;
}

int tally_config_eal_argv(const struct tally_config *config, const char *program,
  char *storage, char **argv) {
  assert(config != NULL);
  assert(program != NULL);
  assert(storage != NULL);
  assert(argv != NULL);
  size_t length = strnlen(config->eal_args, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  memcpy(storage, config->eal_args, length + 1u);
  int argc = 0;
  argv[argc++] = (char *)program;
  for (size_t i = 0; i < length; i++) {
    if (eal_separator(storage[i])) {
      storage[i] = '\0';
      continue;
    }
    if (i > 0 && storage[i - 1] != '\0') continue;
    if (argc == (int)TALLY_EAL_ARGC_MAX) return -1;
    argv[argc++] = &storage[i];
  }
  argv[argc] = NULL;
  assert(argc >= 1);
  assert(argc <= (int)TALLY_EAL_ARGC_MAX);
  return argc;
}
