/*
 * statsd.h — the statsd text protocol parser (pure functions, no I/O).
 *
 * A datagram is split into lines on '\n' (a trailing '\r' is stripped); each
 * line is parsed alone, so a malformed line is dropped without harming the
 * rest of its datagram. Grammar (docs/protocol.md):
 *
 *   line   = name ":" value "|" type [ "|@" rate ] [ "|#" tags ] [ "|" ext ]
 *   name   = 1..TALLY_NAME_LEN_MAX bytes of 0x21..0x7e except ':' '|' '@' '#'
 *   value  = [ "+" / "-" ] 1*DIGIT            (counters: integers only)
 *   type   = "c" | "g" | "ms" | "h" | "s" | "d"
 *   rate   = decimal in (0, 1]                 (counters are scaled by 1/rate)
 *
 * Only "c" lines are counted; other known types are recognised and reported
 * as TALLY_REASON_STATSD_NOT_COUNTER. DogStatsD tags are accepted and are not
 * part of the counter's name.
 */
#ifndef TALLY_STATSD_H
#define TALLY_STATSD_H

#include <stddef.h>
#include <stdint.h>

#include "tally/reasons.h"

struct tally_statsd_counter {
  const char *name; /* points into the parsed line, not NUL-terminated */
  uint32_t name_len;
  int64_t delta; /* value scaled by 1/rate, rounded to nearest */
};

/*
 * Parses one line (no newline inside). Returns TALLY_OK and fills *counter
 * for a counter line; otherwise the reason it is not counted.
 */
enum tally_reason tally_statsd_parse_line(const char *line, size_t line_len,
  struct tally_statsd_counter *counter);

/*
 * Iterates lines of a datagram. *cursor starts at the payload and advances
 * past each line; returns 0 when no line is left, else 1 with [*line,
 * *line + *line_len) set (without '\n' and a trailing '\r'). Empty lines are
 * skipped, not reported.
 */
int tally_statsd_next_line(const char **cursor, const char *end, const char **line,
  size_t *line_len);

#endif
