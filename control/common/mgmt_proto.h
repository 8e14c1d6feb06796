/*
 * mgmt_proto.h — the management socket protocol, shared by tallyd's server
 * (control/daemon/mgmt.c) and tallyctl (control/tools/tallyctl.c).
 *
 * The client sends one request line (at most TALLY_MGMT_LINE_MAX bytes,
 * include/tally/limits.h): a command of the table below. The server answers
 * with a status line ("0" ok, "1" not found, "2" bad request, "3" failed,
 * "4" not ready, "5" partial, "6" not permitted: a command that changes
 * state from a client that is not root, tallyd's user or in
 * control.admin_group), the body, and a final line "." so a cut-off
 * answer is detected; then it closes. Both directions have a timeout.
 */
#ifndef TALLY_MGMT_PROTO_H
#define TALLY_MGMT_PROTO_H

#include <stdbool.h>

#include "tally/limits.h"

#define TALLY_MGMT_TRAILER ".\n"

/* What may follow a command's words on the request line. */
enum tally_mgmt_argument {
  TALLY_MGMT_ARGUMENT_NONE,     /* the words alone */
  TALLY_MGMT_ARGUMENT_REQUIRED, /* the words, one space, a non-empty rest */
  TALLY_MGMT_ARGUMENT_OPTIONAL, /* the words alone, or one space and a rest (maybe empty) */
};

/*
 * The commands, one declaration each (Redis's commands.def):
 *   _(id, handler, words, argument, writes, synopsis, help)
 * id names the command (enum tally_mgmt_command_id); the server serves it
 * with mgmt_command_<handler> (control/daemon/mgmt.c); words are what the request
 * line starts with; argument is an enum tally_mgmt_argument without its
 * prefix; writes says whether the command changes the node's state; synopsis
 * and help are tallyctl's usage lines (help: one text, '\n' between lines).
 * A line is the command whose words are the longest that fit: "get --quorum
 * x" is get --quorum of x, "get --quorum" (no name) is get of "--quorum".
 * Listed in the order tallyctl's usage shows them.
 */
#define TALLY_MGMT_FOREACH_COMMAND(_)                                                            \
  _(GET, get, "get", REQUIRED, false, "get NAME",                                                \
    "the counter's value on this node, alone on a line; NAME\n"                                  \
    "may carry tags in any order: 'req{status=500,method=GET}'")                                 \
  _(GET_QUORUM, get_quorum, "get --quorum", REQUIRED, false, "get --quorum NAME",                \
    "merged from the freshest copy every node holds; exit 2\n"                                   \
    "and 'partial: K of N' on stderr if some node did not answer")                               \
  _(LIST, list, "list", OPTIONAL, false, "list [PREFIX]",                                        \
    "'name value' lines for every counter (with that prefix);\n"                                 \
    "'req{status=500}': every tag set of req holding those tags,\n"                              \
    "'req{}': req and all its tag sets")                                                         \
  _(STATS, stats, "stats", NONE, false, "stats", "the appliance's own figures, 'key value' lines") \
  _(READY, ready, "ready", NONE, false, "ready", "whether the node is ready (exit 1 if not)")    \
  _(RELOAD, reload, "reload", NONE, true, "reload",                                              \
    "re-read the config and apply every reloadable key\n"                                        \
    "(ingest.key, cluster.fault_*, the cluster membership)")                                     \
  _(CLUSTER, cluster, "cluster", NONE, false, "cluster",                                         \
    "this node's view of the cluster: peers, states, replication\n"                              \
    "(members, then retired nodes whose counts it keeps)")                                       \
  _(CLUSTER_RELOAD, cluster_reload, "cluster reload", NONE, true, "cluster reload",              \
    "re-read the config's [cluster]: add, remove or move nodes,\n"                               \
    "write_quorum, intervals, phi (node_id, this node's address\n"                               \
    "and cluster.key need a restart; refused with one line)")                                    \
  _(READONLY, readonly, "readonly", REQUIRED, true, "readonly on|off",                           \
    "refuse (READ_ONLY) or accept reliable writes again")                                        \
  _(DRAIN, drain, "drain", NONE, true, "drain",                                                  \
    "read-only until every peer holds this node's counts\n"                                      \
    "(exit 1 while still draining: repeat until 0)")                                             \
  _(REJOIN, rejoin, "rejoin", NONE, true, "rejoin", "end a drain or a forced read-only")     \
  _(CHECKPOINT, checkpoint, "checkpoint", NONE, true, "checkpoint",                              \
    "log mode: begin a checkpoint now (a fresh one for a full\n"                                 \
    "backup); prints checkpoints_finished: wait for it to grow")                                \
  _(LOG_HOLD, log_hold, "log hold", REQUIRED, true, "log hold LSN",                              \
    "log mode: never cut the log past LSN (tallyctl backup sets\n"                               \
    "it to its last LSN, for the next incremental); 0 releases")                                \
  _(DEGRADE, degrade, "degrade", REQUIRED, true, "degrade auto|0|1|2|3",                        \
    "force a degradation level (0 normal, 1 shed statsd over\n"                                  \
    "budget, 2 shed all statsd, 3 reliable read-only) or auto")

enum tally_mgmt_command_id {
#define TALLY_MGMT_COMMAND_ENUM(id, handler, words, argument, writes, synopsis, help) \
  TALLY_MGMT_##id,
  TALLY_MGMT_FOREACH_COMMAND(TALLY_MGMT_COMMAND_ENUM)
#undef TALLY_MGMT_COMMAND_ENUM
  TALLY_MGMT_COMMAND_COUNT
};

/* Column where tallyctl's usage starts a command's help (after its synopsis). */
#define TALLY_MGMT_USAGE_HELP_COLUMN 19

#endif
