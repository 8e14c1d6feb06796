/*
 * graphite.h — the Graphite push: every graphite.interval_ms its own thread
 * (tally-graphite, on the main lcore's core like the persister, never on a
 * dataplane lcore) reads every counter's node total into a bounded buffer as
 * carbon plaintext lines ("path value timestamp\n") and writes them to
 * carbon over TCP with non-blocking sockets. A dead or slow carbon only
 * fills the buffer: lines that do not fit are dropped and counted; failed
 * connections are retried with exponential backoff and full jitter.
 * docs/operations.md, "Graphite".
 */
#ifndef TALLY_GRAPHITE_H
#define TALLY_GRAPHITE_H

#include "appliance.h"
#include "out.h"

/*
 * The push's figures: (field, metric name, type, help). Written by the
 * graphite thread alone (relaxed stores), read relaxed by the control
 * (tallyctl stats) and HTTP (/metrics) threads.
 */
#define TALLY_FOREACH_GRAPHITE_STAT(_)                                                         \
  _(snapshots, "snapshots_total", "counter",                                                 \
    "intervals on which every counter was read into the buffer")                             \
  _(pushes, "pushes_total", "counter",                                                       \
    "snapshots whose every buffered line was written to carbon's socket")                   \
  _(lines_sent, "lines_sent_total", "counter", "lines written to carbon's socket")           \
  _(bytes_sent, "bytes_sent_total", "counter",                                               \
    "bytes written to carbon's socket (a line cut by a failure is sent again)")              \
  _(lines_dropped, "lines_dropped_total", "counter",                                         \
    "lines dropped: the buffer or the snapshot queue was full, or the path too long")        \
  _(connects, "connects_total", "counter", "connections to carbon established")              \
  _(connect_failures, "connect_failures_total", "counter",                                   \
    "connections to carbon refused, failed or timed out")                                    \
  _(send_failures, "send_failures_total", "counter",                                         \
    "connections lost or closed by carbon, or stalled while sending")

struct tally_graphite_stats {
#define TALLY_GRAPHITE_STAT_FIELD(field, metric, type, help) uint64_t field;
  TALLY_FOREACH_GRAPHITE_STAT(TALLY_GRAPHITE_STAT_FIELD)
#undef TALLY_GRAPHITE_STAT_FIELD
};

struct tally_graphite;

/*
 * Allocates the buffer and starts the thread when config.graphite is on
 * (appliance->graphite stays NULL when it is off). -1 with error on failure.
 */
int tally_graphite_start(struct tally_appliance *appliance, char *error, size_t error_size);
/* Stops and joins the thread, frees everything; NULL is fine. */
void tally_graphite_stop(struct tally_graphite *graphite);
/* `tallyctl stats` lines ("graphite_<name> value"), and /metrics (tally_graphite_*). */
void tally_graphite_stats(const struct tally_graphite *graphite, struct tally_out *out);
void tally_graphite_metrics(const struct tally_graphite *graphite, struct tally_out *out);

#endif
