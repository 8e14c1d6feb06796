/*
 * mgmt_line.h — the management request line, parsed: which request and its
 * argument. Pure (no I/O, no state), so it can be fuzzed on its own; the
 * socket and the actions are in mgmt.c.
 */
#ifndef TALLY_MGMT_LINE_H
#define TALLY_MGMT_LINE_H

#include <stddef.h>

enum tally_mgmt_request {
  TALLY_MGMT_UNKNOWN = 0,
  TALLY_MGMT_GET,            /* "get NAME" (argument: NAME, never empty) */
  TALLY_MGMT_GET_QUORUM,     /* "get --quorum NAME" (argument: NAME, never empty) */
  TALLY_MGMT_LIST,           /* "list" or "list PREFIX" (argument: PREFIX, may be empty) */
  TALLY_MGMT_STATS,
  TALLY_MGMT_READY,
  TALLY_MGMT_RELOAD,
  TALLY_MGMT_CLUSTER,
  TALLY_MGMT_CLUSTER_RELOAD,
  TALLY_MGMT_READONLY_ON,
  TALLY_MGMT_READONLY_OFF,
  TALLY_MGMT_DRAIN,
  TALLY_MGMT_REJOIN,
};

/*
 * Parses one request line (without its '\n'; any bytes). *argument points
 * into line (argument_len bytes) for GET, GET_QUORUM and LIST, and is the
 * end of the line otherwise.
 */
enum tally_mgmt_request tally_mgmt_line_parse(const char *line, size_t line_len,
  const char **argument, size_t *argument_len);

#endif
