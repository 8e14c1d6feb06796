/*
 * mgmt_json.h — `tallyctl --json`: the answers of the tabular commands
 * (list, stats, cluster), rendered as one JSON document each from the lines
 * the management socket sends (mgmt_proto.h). Pure; tallyctl's thread and
 * the unit test. The documents and their field names: docs/operations.md,
 * "tallyctl --json".
 */
#ifndef TALLY_MGMT_JSON_H
#define TALLY_MGMT_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "out.h"

enum tally_mgmt_json_kind {
  TALLY_MGMT_JSON_LIST,    /* "name value" lines -> {"counters": [{"name", "value"}...]} */
  TALLY_MGMT_JSON_STATS,   /* "key value" lines -> {"key": value, ...} */
  TALLY_MGMT_JSON_CLUSTER, /* self/fault/peer lines -> {"mode", "self", "fault", "peers"} */
};

/*
 * Writes the JSON document (and a newline) of a successful answer's body
 * into out. A line not of the kind's form: false, and error says which line.
 */
bool tally_mgmt_json(enum tally_mgmt_json_kind kind, const char *body, size_t body_len,
  struct tally_out *out, char *error, size_t error_size);

#endif
