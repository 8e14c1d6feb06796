/*
 * mgmt_line.h — the management request line, parsed against the command
 * table (mgmt_proto.h): which command and its argument. Pure (no I/O, no
 * state), so it can be fuzzed on its own; the socket and the handlers are in
 * control/daemon/mgmt.c.
 */
#ifndef TALLY_MGMT_LINE_H
#define TALLY_MGMT_LINE_H

#include <stddef.h>

#include "mgmt_proto.h"

/*
 * Parses one request line (without its '\n'; any bytes): the command whose
 * words are the longest that fit the line, or TALLY_MGMT_COMMAND_COUNT when
 * none does. A line fits a command when it is the command's words alone
 * (unless the argument is REQUIRED) or its words, one space and the
 * argument (never for NONE; not empty for REQUIRED). *argument points into
 * line, to its end (argument_len bytes; the end of the line if none).
 */
enum tally_mgmt_command_id tally_mgmt_line_parse(const char *line, size_t line_len,
  const char **argument, size_t *argument_len);

/* The command's words ("get --quorum"). */
const char *tally_mgmt_command_words(enum tally_mgmt_command_id id);

#endif
