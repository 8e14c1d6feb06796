/*
 * statsd.h — the statsd text protocol parser (pure functions, no I/O).
 *
 * A datagram is split into lines on '\n' (a trailing '\r' is stripped); each
 * line is parsed alone, so a malformed line is dropped without harming the
 * rest of its datagram. Grammar (docs/protocol.md):
 *
 *   line   = name ":" value "|" type [ "|@" rate ] [ "|#" tags ] [ "|" ext ]
 *   name   = 1..TALLY_NAME_LEN_MAX bytes of 0x21..0x7e except ':' '|' '@' '#' '{' '}'
 *   tags   = tag *( "," tag ), tag = key [ ":" value ]   (DogStatsD)
 *   value  = [ "+" / "-" ] 1*DIGIT            (counters: integers only)
 *   type   = "c" | "g" | "ms" | "h" | "s" | "d"
 *   rate   = decimal in (0, 1]                 (counters are scaled by 1/rate)
 *
 * Only "c" lines are counted; other known types are recognised and reported
 * as TALLY_REASON_STATSD_NOT_COUNTER. DogStatsD tags, as the tag policy
 * (ingest.statsd_tags) says, are part of the counter's key: name{k=v,...} in
 * the canonical form of include/tally/key.h.
 */
#ifndef TALLY_STATSD_H
#define TALLY_STATSD_H

#include <stddef.h>
#include <stdint.h>

#include "tally/key.h"
#include "tally/reasons.h"

struct tally_statsd_counter {
  /*
   * The counter's key, not NUL-terminated: into the parsed line when no tag
   * is kept (the name), else into key below (the canonical name{tags}).
   */
  const char *name;
  uint32_t name_len;
  int64_t delta; /* value scaled by 1/rate, rounded to nearest */
  char key[TALLY_NAME_LEN_MAX];
};

/*
 * Parses one line (no newline inside) under a tag policy (NULL: keep every
 * tag). Returns TALLY_OK and fills *counter for a counter line; otherwise the
 * reason it is not counted.
 */
enum tally_reason tally_statsd_parse_line(const char *line, size_t line_len,
  const struct tally_tags_policy *policy, struct tally_statsd_counter *counter);

/* The statsd reason of a key status (tally_key_build of a line's name and tags). */
enum tally_reason tally_statsd_key_reason(enum tally_key_status status);

/*
 * Iterates lines of a datagram. *cursor starts at the payload and advances
 * past each line; returns 0 when no line is left, else 1 with [*line,
 * *line + *line_len) set (without '\n' and a trailing '\r'). Empty lines are
 * skipped, not reported.
 */
int tally_statsd_next_line(const char **cursor, const char *end, const char **line,
  size_t *line_len);

#endif
