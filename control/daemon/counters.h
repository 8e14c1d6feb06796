/*
 * counters.h — GET /counters: every counter as a Prometheus series, in the
 * text format (0.0.4) or OpenMetrics 1.0, streamed in bounded chunks
 * (counters.c). http.c opens a stream per request and hands the read and
 * close functions to libmicrohttpd as a callback response.
 */
#ifndef TALLY_COUNTERS_H
#define TALLY_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "appliance.h"
#include "out.h"

struct tally_counters_stream;

/*
 * A stream of every counter whose key starts with prefix (prefix_len 0: all),
 * or NULL with the HTTP status and a one-line reason in error: 400 for a bad
 * prefix, 503 with TALLY_HTTP_COUNTERS_STREAMS_MAX streams open or no memory.
 */
struct tally_counters_stream *tally_counters_open(struct tally_appliance *appliance,
  const char *prefix, size_t prefix_len, bool openmetrics, unsigned *status,
  struct tally_out *error);
/* libmicrohttpd's content reader (MHD_ContentReaderCallback) over a stream. */
ssize_t tally_counters_read(void *stream, uint64_t position, char *buffer, size_t size);
/* libmicrohttpd's free callback: ends a stream (read to the end or not). */
void tally_counters_close(void *stream);
/* The Content-Type of a stream's format. */
const char *tally_counters_content_type(bool openmetrics);
/* The /counters figures for /metrics (scrapes, refusals, failures, series). */
void tally_counters_metrics(struct tally_out *out);

#endif
