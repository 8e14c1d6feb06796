/*
 * mgmt_proto.h — the management socket protocol, shared by tallyd's server
 * (control/daemon/mgmt.c) and tallyctl (control/tools/tallyctl.c).
 *
 * The client sends one request line (at most TALLY_MGMT_LINE_MAX bytes,
 * include/tally/limits.h): "get NAME", "get --quorum NAME", "list [PREFIX]",
 * "stats", "ready", "reload", "cluster", ... The server answers with a status
 * line ("0" ok, "1" not found, "2" bad request, "3" failed, "4" not ready,
 * "5" partial), the body, and a final line "." so a cut-off answer is
 * detected; then it closes. Both directions have a timeout.
 */
#ifndef TALLY_MGMT_PROTO_H
#define TALLY_MGMT_PROTO_H

#include "tally/limits.h"

#define TALLY_MGMT_TRAILER ".\n"

#endif
