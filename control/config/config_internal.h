/*
 * config_internal.h — what the config library's files share and nobody else
 * may use: the key enumeration, the parse state, and the calls between the
 * files, each declared with the file that defines it. Calls only go down:
 *   config.c -> config_reader.c -> config_values.c, config_cluster.c
 *            -> config_keys.c (key names, errors, primitives)
 *   config.c -> config_eal.c, config_cluster.c
 */
#ifndef TALLY_CONFIG_INTERNAL_H
#define TALLY_CONFIG_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum config_key {
  KEY_EAL_ARGS,
  KEY_NODE_IPV4,
  KEY_NODE_DEMO,
  KEY_INGEST_STATSD_PORT,
  KEY_INGEST_BINARY_PORT,
  KEY_INGEST_KEY,
  KEY_INGEST_PRODUCER_KEYS,
  KEY_INGEST_STATSD_TAGS,
  KEY_INGEST_STATSD_TAGS_ALLOW,
  KEY_INGEST_STATSD_COUNTERS_PERCENT,
  KEY_INGEST_STATSD_WRITES_RELIABLE,
  KEY_INGEST_STATSD_SOURCE_RATE,
  KEY_INGEST_STATSD_SOURCE_BURST,
  KEY_INGEST_STATSD_ALLOW_CIDRS,
  KEY_STORE_PATH,
  KEY_STORE_COUNTERS_MAX,
  KEY_STORE_PRODUCERS_MAX,
  KEY_STORE_COMMIT_INTERVAL_MS,
  KEY_STORE_PERSIST,
  KEY_STORE_LOG_DIR,
  KEY_STORE_LOG_GROUP_BYTES,
  KEY_STORE_LOG_SEGMENT_BYTES,
  KEY_STORE_CHECKPOINT_INTERVAL_MS,
  KEY_DATAPLANE_MBUFS,
  KEY_DATAPLANE_IDLE_SLEEP_US,
  KEY_DATAPLANE_STATSD_PER_POLL,
  KEY_DATAPLANE_RELIABLE_PER_POLL,
  KEY_DATAPLANE_CONTROL_PER_POLL,
  KEY_CONTROL_SOCKET,
  KEY_CONTROL_HTTP,
  KEY_CONTROL_ADMIN_GROUP,
  KEY_CLUSTER_NODE_ID,
  KEY_CLUSTER_NODES,
  KEY_CLUSTER_WRITE_QUORUM,
  KEY_CLUSTER_KEY,
  KEY_CLUSTER_HEARTBEAT_INTERVAL_MS,
  KEY_CLUSTER_REPLICATION_INTERVAL_MS,
  KEY_CLUSTER_SUSPECT_PHI,
  KEY_CLUSTER_DOWN_PHI,
  KEY_CLUSTER_FAULT_DELAY_MS,
  KEY_CLUSTER_FAULT_JITTER_MS,
  KEY_CLUSTER_FAULT_LOSS_PERMILLE,
  KEY_GRAPHITE_ADDRESS,
  KEY_GRAPHITE_INTERVAL_MS,
  KEY_GRAPHITE_PREFIX,
  KEY_GRAPHITE_BUFFER_BYTES,
  KEY_COUNT,
};

static_assert(KEY_COUNT <= 64, "keys_seen is a 64-bit mask");

struct parse_state {
  struct tally_config config;
  const char *text;
  size_t text_size;
  size_t offset;            /* of the next line in text */
  int line_number;          /* of the line last handed to inih */
  bool line_indented;       /* that line starts with whitespace */
  bool key_previous_valid;  /* a key was set since the last section header */
  enum config_key key_previous;
  uint64_t keys_seen;       /* bit per enum config_key */
  bool cluster_seen;        /* a [cluster] header, even with no key under it */
  bool graphite_seen;       /* a [graphite] header, even with no key under it */
  int key_line[KEY_COUNT];  /* where each key was first set */
  bool failed;
  int error_line;           /* line of the first error (0: after parsing) */
  char *error;
  size_t error_size;
};

/* A key's section and name, as written in the file. */
struct config_key_name {
  const char *section;
  const char *name;
};

/* Parses one key's value into state->config: 1, or 0 after recording the error. */
typedef int (*config_parse_fn)(struct parse_state *state, enum config_key key, const char *value);

/* ---- config_keys.c: key names, errors, primitives ------------------------ */

const struct config_key_name *config_key_name(enum config_key key);
/* The key named section.name, or KEY_COUNT. */
enum config_key config_key_find(const char *section, const char *name);
bool config_section_known(const char *name, size_t length);
/* Copies input into out for an error message: printable ASCII only, cut short. */
void config_echo(char out[TALLY_CONFIG_ECHO_LEN_MAX + 4], const char *input);
/* Records the first error: "config: <section>.<name>: <what>". Returns 0 for inih. */
__attribute__((format(printf, 4, 5)))
int config_fail_key(struct parse_state *state, const char *section, const char *name,
  const char *format, ...);
/* Records the first error: "config: line N: <what>". */
__attribute__((format(printf, 3, 4)))
void config_fail_line(struct parse_state *state, int line_number, const char *format, ...);
/* config_fail_key for a key, with a fixed message. */
int config_fail(struct parse_state *state, enum config_key key, const char *what);
bool config_has_control_char(const char *value);
bool config_is_space(char c);
/* Decimal digits only, at least one; a number above UINT32_MAX stays above it. */
bool config_decimal_parse(const char *text, size_t length, uint64_t *out);
int config_parse_uint(struct parse_state *state, enum config_key key, const char *value,
  uint32_t minimum, uint32_t maximum, uint32_t *out);
int config_parse_string(struct parse_state *state, enum config_key key, const char *value,
  char *out, size_t length_max);
/* One of names[0..count) into *chosen; else "'x' is not one of a, b, c". */
int config_parse_choice(struct parse_state *state, enum config_key key, const char *value,
  const char *const *names, size_t count, size_t *chosen);
/* Strict dotted quad (inet_pton); *address in host byte order. */
bool config_ipv4_parse(const char *text, uint32_t *address);
/* Not 0.0.0.0, not 255.255.255.255, not multicast (224.0.0.0/4). */
bool config_ipv4_unicast(uint32_t address);

/* ---- config_values.c: [eal], [node], [ingest], [store], [dataplane], [control] ---- */

int config_parse_eal_args(struct parse_state *state, enum config_key key, const char *value);
int config_parse_node_ipv4(struct parse_state *state, enum config_key key, const char *value);
int config_parse_port(struct parse_state *state, enum config_key key, const char *value);
int config_parse_key(struct parse_state *state, enum config_key key, const char *value);
int config_parse_statsd_tags(struct parse_state *state, enum config_key key, const char *value);
int config_parse_producer_keys(struct parse_state *state, enum config_key key, const char *value);
int config_parse_statsd_tags_allow(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_store_path(struct parse_state *state, enum config_key key, const char *value);
int config_parse_store_log_dir(struct parse_state *state, enum config_key key, const char *value);
int config_parse_number(struct parse_state *state, enum config_key key, const char *value);
int config_parse_store_persist(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_control_socket(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_control_http(struct parse_state *state, enum config_key key,
  const char *value);
/* graphite.address ("a.b.c.d:port") and graphite.prefix. */
int config_parse_graphite_address(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_graphite_prefix(struct parse_state *state, enum config_key key,
  const char *value);
/* With [graphite], graphite.address is required. */
int config_graphite_validate(struct parse_state *state);
int config_parse_bool(struct parse_state *state, enum config_key key, const char *value);
int config_parse_control_admin_group(struct parse_state *state, enum config_key key,
  const char *value);

/* ---- config_statsd.c: who may send statsd ------------------------------- */

/* ingest.statsd_source_rate and ingest.statsd_source_burst. */
int config_parse_statsd_source(struct parse_state *state, enum config_key key,
  const char *value);
/* ingest.statsd_allow_cidrs: a.b.c.d/len entries separated by ','. */
int config_parse_statsd_allow_cidrs(struct parse_state *state, enum config_key key,
  const char *value);

/* ---- config_cluster.c: [cluster] ----------------------------------------- */

int config_parse_cluster_node_id(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_cluster_nodes(struct parse_state *state, enum config_key key,
  const char *value);
int config_parse_cluster_phi(struct parse_state *state, enum config_key key, const char *value);
/* Appends the whitespace-separated cluster.nodes entries in text[0, length). */
int config_nodes_append(struct parse_state *state, const char *text, size_t length);
/* Without [cluster], one node; with it, what spans its keys. */
int config_cluster_validate(struct parse_state *state);
/* What every successfully parsed [cluster] holds, enabled or not. */
void config_cluster_assert_valid(const struct tally_cluster_config *cluster);

/* ---- config_eal.c --------------------------------------------------------- */

/* Arguments in args, not counting the program. */
uint32_t config_eal_args_count(const char *args);

/* ---- config_reader.c: the inih reader and handler ------------------------- */

/* fgets() over state's text for ini_parse_stream, one line per call. */
char *config_reader(char *line, int line_size, void *stream);
/* inih's handler: one key = value. */
int config_handler(void *user, const char *section, const char *name, const char *value);
/* Describes the syntax error inih found on line_number. */
void config_fail_syntax(struct parse_state *state, int line_number);

#endif
