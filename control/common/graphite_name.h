/*
 * graphite_name.h — a counter's key as a carbon metric path (pure, any
 * thread: tallyd's graphite thread, the unit test). docs/operations.md,
 * "Graphite", documents the mapping.
 */
#ifndef TALLY_GRAPHITE_NAME_H
#define TALLY_GRAPHITE_NAME_H

#include <stddef.h>

/*
 * Writes key (a counter's identity: a statsd name, or name{k=v,...} with its
 * canonical tag set) as a carbon path into out, NUL-terminated; returns the
 * path's length, or 0 if out is too small or the key is empty. A path is
 * the key's length or shorter, except that each empty tag key or value
 * (never in the canonical form) adds a '_'.
 *
 * The name: statsd names are already dot-separated; every byte outside
 * [A-Za-z0-9_-.] becomes '_' (carbon splits lines on blanks, whisper makes
 * '/' a directory, graphite-web's queries treat ( ) { } [ ] , * ? ; = ~ " '
 * specially), and a '.' that would start an empty component (leading, doubled,
 * trailing) becomes '_' (carbon would collapse "a..b" onto "a.b").
 * Tags: name{k=v,k2=v2} becomes Graphite's tagged form name;k=v;k2=v2. A tag
 * key loses ; ! ^ = and blanks, a tag value ; ~ and blanks (each becomes '_');
 * an empty key or value becomes "_". A key without a well-formed {...} tail
 * is all name.
 */
size_t tally_graphite_path(const char *key, size_t key_len, char *out, size_t out_size);

#endif
