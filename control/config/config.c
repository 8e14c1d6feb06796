/*
 * config.c — tallyd's configuration: reads the INI file (libinih), checks
 * every key against the ranges in limits.h and fills struct tally_config.
 *
 * Everything is validated before anything is created: the loader itself
 * creates and writes nothing, and on any error the caller's struct is left
 * untouched and one line names what is wrong ("config: store.path: ...").
 *
 * libinih is fed through ini_parse_stream() with a reader over the caller's
 * buffer, so the text need not be NUL-terminated, and so that the reader can
 * see what inih does not report: the line number of each handler call, lines
 * longer than inih's line buffer (it would silently split them), NUL bytes,
 * section headers with no keys, and indented continuation lines (inih hands
 * those to the handler as the previous key again; only eal.args and
 * cluster.nodes may span lines, everything else would look like a duplicate).
 *
 * [cluster] is optional: absent, the node runs alone (cluster.enabled false,
 * one member, write quorum 1); present, it must name this node, every member
 * and the cluster key, and what spans keys (node_id among the nodes, the write
 * quorum within the member count, suspect_phi below down_phi) is checked once
 * the whole file is read. Its fault_* keys (test-only fault injection on the
 * cluster socket) default to 0, off.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Largest config text accepted, by tally_config_parse and from a file. */
#define CONFIG_TEXT_SIZE_MAX (64u * 1024u)
/* Longest piece of input echoed in an error message. */
#define CONFIG_ECHO_LEN_MAX 48u
/* [cluster] ranges (the contract is in config.h). */
#define CONFIG_HEARTBEAT_INTERVAL_MS_MIN 10u
#define CONFIG_HEARTBEAT_INTERVAL_MS_MAX 10000u
#define CONFIG_REPLICATION_INTERVAL_MS_MIN 1u
#define CONFIG_REPLICATION_INTERVAL_MS_MAX 1000u
#define CONFIG_PHI_MAX 100.0
/* Defaults of the [cluster] keys. */
#define CONFIG_WRITE_QUORUM_DEFAULT 2u
#define CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT 100u
#define CONFIG_REPLICATION_INTERVAL_MS_DEFAULT 5u
#define CONFIG_SUSPECT_PHI_DEFAULT 5.0
#define CONFIG_DOWN_PHI_DEFAULT 8.0
/*
 * Longest cluster.nodes entry that is looked into; a longer one is refused
 * whole. A valid one is at most 27 bytes ("65535@255.255.255.255:65535"); the
 * slack lets "0007100" or an id of 20 digits get its precise message.
 */
#define CONFIG_NODE_ENTRY_LEN_MAX 40u
/* A Unix socket path must fit sockaddr_un.sun_path with its NUL. */
#define CONFIG_SOCKET_PATH_LEN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1u)

static_assert(CONFIG_SOCKET_PATH_LEN_MAX < TALLY_PATH_MAX, "socket path fits the config buffer");
static_assert(TALLY_EAL_ARGC_MAX >= 2u, "room for the program and one argument");
static_assert(TALLY_NODES_MAX >= 1u, "a cluster holds this node");
static_assert(TALLY_NODES_MAX <= UINT16_MAX, "node ids are 16-bit");
static_assert(CONFIG_NODE_ENTRY_LEN_MAX <= CONFIG_ECHO_LEN_MAX, "a bad entry is echoed whole");
static_assert(CONFIG_HEARTBEAT_INTERVAL_MS_MIN <= CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT, "range");
static_assert(CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT <= CONFIG_HEARTBEAT_INTERVAL_MS_MAX, "range");
static_assert(CONFIG_REPLICATION_INTERVAL_MS_MIN <= CONFIG_REPLICATION_INTERVAL_MS_DEFAULT,
  "range");
static_assert(CONFIG_REPLICATION_INTERVAL_MS_DEFAULT <= CONFIG_REPLICATION_INTERVAL_MS_MAX,
  "range");

/* ---- Keys ----------------------------------------------------------------- */

enum config_key {
  KEY_EAL_ARGS,
  KEY_NODE_IPV4,
  KEY_INGEST_STATSD_PORT,
  KEY_INGEST_BINARY_PORT,
  KEY_INGEST_KEY,
  KEY_STORE_PATH,
  KEY_STORE_COUNTERS_MAX,
  KEY_STORE_PRODUCERS_MAX,
  KEY_STORE_COMMIT_INTERVAL_MS,
  KEY_STORE_PERSIST,
  KEY_DATAPLANE_MBUFS,
  KEY_CONTROL_SOCKET,
  KEY_CONTROL_HTTP,
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
  KEY_COUNT,
};

static_assert(KEY_COUNT <= 32, "keys_seen is a 32-bit mask");

struct parse_state;
typedef int (*key_parse_fn)(struct parse_state *state, enum config_key key, const char *value);

struct key_spec {
  const char *section;
  const char *name;
  key_parse_fn parse;
};

struct parse_state {
  struct tally_config config;
  const char *text;
  size_t text_size;
  size_t offset;            /* of the next line in text */
  int line_number;          /* of the line last handed to inih */
  bool line_indented;       /* that line starts with whitespace */
  bool key_previous_valid;  /* a key was set since the last section header */
  enum config_key key_previous;
  uint32_t keys_seen;       /* bit per enum config_key */
  bool cluster_seen;        /* a [cluster] header, even with no key under it */
  int key_line[KEY_COUNT];  /* where each key was first set */
  bool failed;
  int error_line;           /* line of the first error (0: after parsing) */
  char *error;
  size_t error_size;
};

static const char *const section_names[] = {"eal", "node", "ingest", "store", "dataplane",
  "control", "cluster"};

static const char *const persist_names[] = {
  [TALLY_PERSIST_AUTO] = "auto",
  [TALLY_PERSIST_GROUP_COMMIT] = "group_commit",
  [TALLY_PERSIST_PER_BURST] = "per_burst",
};

/* ---- Errors --------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void error_write(char *error, size_t error_size, const char *format, ...) {
  assert(error != NULL);
  assert(error_size > 0);
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(error, error_size, format, arguments);
  va_end(arguments);
}

/* Copies input into out for an error message: printable ASCII only, cut short. */
static void echo(char out[CONFIG_ECHO_LEN_MAX + 4], const char *input) {
  assert(out != NULL);
  assert(input != NULL);
  size_t length = strnlen(input, CONFIG_ECHO_LEN_MAX + 1);
  bool cut = length > CONFIG_ECHO_LEN_MAX;
  if (cut) length = CONFIG_ECHO_LEN_MAX;
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)input[i];
    out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (cut) {
    memcpy(out + length, "...", 3);
    length += 3;
  }
  out[length] = '\0';
}

/* Records the first error: "config: <section>.<name>: <what>". Returns 0 for inih. */
__attribute__((format(printf, 4, 5)))
static int fail_key(struct parse_state *state, const char *section, const char *name,
  const char *format, ...) {
  assert(state != NULL);
  assert(format != NULL);
  if (state->failed) return 0;
  state->failed = true;
  state->error_line = state->line_number;
  int prefix = snprintf(state->error, state->error_size, "config: %s.%s: ", section, name);
  assert(prefix > 0);
  if ((size_t)prefix < state->error_size) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(state->error + prefix, state->error_size - (size_t)prefix, format, arguments);
    va_end(arguments);
  }
  return 0;
}

/* Records the first error: "config: line N: <what>". */
__attribute__((format(printf, 3, 4)))
static void fail_line(struct parse_state *state, int line_number, const char *format, ...) {
  assert(state != NULL);
  assert(line_number > 0);
  if (state->failed) return;
  state->failed = true;
  state->error_line = line_number;
  int prefix = snprintf(state->error, state->error_size, "config: line %d: ", line_number);
  assert(prefix > 0);
  if ((size_t)prefix < state->error_size) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(state->error + prefix, state->error_size - (size_t)prefix, format, arguments);
    va_end(arguments);
  }
}

/* ---- Value parsers -------------------------------------------------------- */

static const struct key_spec *key_spec_get(enum config_key key);

static int fail(struct parse_state *state, enum config_key key, const char *what) {
  const struct key_spec *spec = key_spec_get(key);
  return fail_key(state, spec->section, spec->name, "%s", what);
}

static bool has_control_char(const char *value) {
  assert(value != NULL);
  size_t length = strlen(value);
  assert(length < INT32_MAX);
  for (size_t i = 0; i < length; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

/*
 * Decimal digits only, at least one: no sign, no prefix, no junk. A number
 * above UINT32_MAX stays above it (it stops growing), never wraps.
 */
static bool decimal_parse(const char *text, size_t length, uint64_t *out) {
  assert(text != NULL);
  assert(out != NULL);
  uint64_t number = 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < '0' || text[i] > '9') return false;
    if (number <= UINT32_MAX) number = number * 10u + (uint64_t)(text[i] - '0');
  }
  *out = number;
  return length > 0;
}

static int parse_uint(struct parse_state *state, enum config_key key, const char *value,
  uint32_t minimum, uint32_t maximum, uint32_t *out) {
  assert(minimum <= maximum);
  assert(out != NULL);
  const struct key_spec *spec = key_spec_get(key);
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, value);
  uint64_t number = 0;
  if (!decimal_parse(value, strlen(value), &number)) {
    return fail_key(state, spec->section, spec->name, "'%s' is not a decimal number", shown);
  }
  if (number < minimum) {
    return fail_key(state, spec->section, spec->name, "%s is below the minimum %u", shown,
      minimum);
  }
  if (number > maximum) {
    return fail_key(state, spec->section, spec->name, "%s is above the maximum %u", shown,
      maximum);
  }
  *out = (uint32_t)number;
  return 1;
}

static int parse_string(struct parse_state *state, enum config_key key, const char *value,
  char *out, size_t length_max) {
  assert(out != NULL);
  assert(length_max > 0);
  const struct key_spec *spec = key_spec_get(key);
  size_t length = strnlen(value, length_max + 1);
  if (length > length_max) {
    return fail_key(state, spec->section, spec->name, "longer than %zu bytes", length_max);
  }
  if (has_control_char(value)) return fail(state, key, "contains a control character");
  memcpy(out, value, length);
  out[length] = '\0';
  return 1;
}

static int parse_eal_args(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_EAL_ARGS);
  assert(value[0] != '\0');
  return parse_string(state, key, value, state->config.eal_args, TALLY_EAL_ARGS_LEN_MAX - 1u);
}

/* Strict dotted quad (inet_pton); *address in host byte order. */
static bool ipv4_parse(const char *text, uint32_t *address) {
  assert(text != NULL);
  assert(address != NULL);
  struct in_addr parsed;
  if (inet_pton(AF_INET, text, &parsed) != 1) return false;
  *address = ntohl(parsed.s_addr);
  return true;
}

/* Not 0.0.0.0, not 255.255.255.255, not multicast (224.0.0.0/4). */
static bool ipv4_unicast(uint32_t address) {
  bool multicast = (address >> 28) == 0xeu;
  return address != 0 && address != UINT32_MAX && !multicast;
}

static int parse_node_ipv4(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_NODE_IPV4);
  assert(value != NULL);
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, value);
  const struct key_spec *spec = key_spec_get(key);
  uint32_t address = 0;
  if (!ipv4_parse(value, &address)) {
    return fail_key(state, spec->section, spec->name, "'%s' is not an IPv4 address (a.b.c.d)",
      shown);
  }
  if (!ipv4_unicast(address)) {
    return fail_key(state, spec->section, spec->name, "'%s' is not a unicast address", shown);
  }
  state->config.ipv4 = address;
  return 1;
}

static int parse_port(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_INGEST_STATSD_PORT || key == KEY_INGEST_BINARY_PORT);
  assert(value != NULL);
  uint32_t port = 0;
  if (!parse_uint(state, key, value, 0, UINT16_MAX, &port)) return 0;
  if (key == KEY_INGEST_STATSD_PORT) state->config.statsd_port = (uint16_t)port;
  if (key == KEY_INGEST_BINARY_PORT) state->config.binary_port = (uint16_t)port;
  return 1;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* ingest.key or cluster.key. A key is a secret: errors never echo it. */
static int parse_key(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_INGEST_KEY || key == KEY_CLUSTER_KEY);
  assert(value != NULL);
  const struct key_spec *spec = key_spec_get(key);
  uint8_t *out = key == KEY_INGEST_KEY ? state->config.key : state->config.cluster.key;
  size_t length = strnlen(value, 2u * TALLY_KEY_SIZE + 1u);
  if (length != 2u * TALLY_KEY_SIZE) {
    return fail_key(state, spec->section, spec->name, "must be %u hex digits, got %s%zu",
      2u * TALLY_KEY_SIZE, length > 2u * TALLY_KEY_SIZE ? "more than " : "",
      length > 2u * TALLY_KEY_SIZE ? (size_t)(2u * TALLY_KEY_SIZE) : length);
  }
  uint8_t bits_any = 0;
  for (size_t i = 0; i < length; i++) {
    int digit = hex_digit(value[i]);
    if (digit < 0) {
      return fail_key(state, spec->section, spec->name, "character %zu is not a hex digit",
        i + 1u);
    }
    uint8_t *byte = &out[i / 2u];
    *byte = (i % 2u == 0) ? (uint8_t)(digit << 4) : (uint8_t)(*byte | digit);
    bits_any |= (uint8_t)digit;
  }
  if (bits_any == 0) return fail(state, key, "must not be all zeros");
  if (key == KEY_INGEST_KEY) state->config.key_set = true;
  return 1;
}

static int parse_store_path(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_STORE_PATH);
  assert(value[0] != '\0');
  return parse_string(state, key, value, state->config.store_path, TALLY_PATH_MAX - 1u);
}

static int parse_number(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(value != NULL);
  struct tally_config *config = &state->config;
  switch (key) {
  case KEY_STORE_COUNTERS_MAX:
    return parse_uint(state, key, value, TALLY_COUNTERS_MIN, TALLY_COUNTERS_MAX,
      &config->counters_max);
  case KEY_STORE_PRODUCERS_MAX:
    return parse_uint(state, key, value, TALLY_PRODUCERS_MIN, TALLY_PRODUCERS_MAX,
      &config->producers_max);
  case KEY_STORE_COMMIT_INTERVAL_MS:
    return parse_uint(state, key, value, TALLY_COMMIT_INTERVAL_MS_MIN,
      TALLY_COMMIT_INTERVAL_MS_MAX, &config->commit_interval_ms);
  case KEY_DATAPLANE_MBUFS:
    return parse_uint(state, key, value, TALLY_MBUFS_MIN, TALLY_MBUFS_MAX, &config->mbufs);
  case KEY_CLUSTER_WRITE_QUORUM: /* and at most the node count, checked after the file */
    return parse_uint(state, key, value, 1, TALLY_NODES_MAX, &config->cluster.write_quorum);
  case KEY_CLUSTER_HEARTBEAT_INTERVAL_MS:
    return parse_uint(state, key, value, CONFIG_HEARTBEAT_INTERVAL_MS_MIN,
      CONFIG_HEARTBEAT_INTERVAL_MS_MAX, &config->cluster.heartbeat_interval_ms);
  case KEY_CLUSTER_REPLICATION_INTERVAL_MS:
    return parse_uint(state, key, value, CONFIG_REPLICATION_INTERVAL_MS_MIN,
      CONFIG_REPLICATION_INTERVAL_MS_MAX, &config->cluster.replication_interval_ms);
  case KEY_CLUSTER_FAULT_DELAY_MS:
    return parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_DELAY_MS_MAX,
      &config->cluster.fault_delay_ms);
  case KEY_CLUSTER_FAULT_JITTER_MS:
    return parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_JITTER_MS_MAX,
      &config->cluster.fault_jitter_ms);
  case KEY_CLUSTER_FAULT_LOSS_PERMILLE:
    return parse_uint(state, key, value, 0, TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX,
      &config->cluster.fault_loss_permille);
  default:
    assert(false && "not a numeric key");
    return 0;
  }
}

static int parse_store_persist(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_STORE_PERSIST);
  assert(value != NULL);
  size_t count = sizeof(persist_names) / sizeof(persist_names[0]);
  for (size_t i = 0; i < count; i++) {
    if (strcmp(value, persist_names[i]) == 0) {
      state->config.persist_mode = (enum tally_persist_mode)i;
      return 1;
    }
  }
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, value);
  const struct key_spec *spec = key_spec_get(key);
  return fail_key(state, spec->section, spec->name,
    "'%s' is not one of auto, group_commit, per_burst", shown);
}

static int parse_control_socket(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CONTROL_SOCKET);
  assert(value[0] != '\0');
  return parse_string(state, key, value, state->config.socket_path, CONFIG_SOCKET_PATH_LEN_MAX);
}

/* "a.b.c.d:port" or "off". */
static int parse_control_http(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CONTROL_HTTP);
  assert(value != NULL);
  if (strcmp(value, "off") == 0) {
    state->config.http_port = 0;
    return 1;
  }
  const struct key_spec *spec = key_spec_get(key);
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, value);
  const char *colon = strrchr(value, ':');
  char address_text[INET_ADDRSTRLEN];
  size_t address_length = colon == NULL ? 0 : (size_t)(colon - value);
  uint32_t address = 0;
  if (colon == NULL || address_length >= sizeof(address_text)) {
    return fail_key(state, spec->section, spec->name, "'%s' is not a.b.c.d:port or off", shown);
  }
  memcpy(address_text, value, address_length);
  address_text[address_length] = '\0';
  if (!ipv4_parse(address_text, &address)) {
    return fail_key(state, spec->section, spec->name, "'%s' is not a.b.c.d:port or off", shown);
  }
  uint32_t port = 0;
  if (!parse_uint(state, key, colon + 1, 0, UINT16_MAX, &port)) return 0;
  if (port == 0) return fail(state, key, "port 0: write 'off' to disable HTTP");
  state->config.http_ipv4 = address;
  state->config.http_port = (uint16_t)port;
  return 1;
}

/* ---- [cluster] ------------------------------------------------------------ */

static bool is_space(char c);

static int parse_cluster_node_id(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CLUSTER_NODE_ID);
  assert(value != NULL);
  uint32_t node_id = 0;
  if (!parse_uint(state, key, value, 1, UINT16_MAX, &node_id)) return 0;
  state->config.cluster.node_id = (uint16_t)node_id;
  return 1;
}

/* "ID@a.b.c.d:PORT", syntax only: the numbers come back unchecked. */
static bool node_entry_parse(const char *entry, uint64_t *id, uint32_t *address,
  uint64_t *port) {
  assert(entry != NULL);
  assert(strlen(entry) <= CONFIG_NODE_ENTRY_LEN_MAX);
  const char *at = strchr(entry, '@');
  const char *colon = strrchr(entry, ':');
  if (at == NULL || colon == NULL || colon < at) return false;
  char address_text[INET_ADDRSTRLEN];
  size_t address_length = (size_t)(colon - at) - 1u;
  if (address_length >= sizeof(address_text)) return false;
  memcpy(address_text, at + 1, address_length);
  address_text[address_length] = '\0';
  if (!decimal_parse(entry, (size_t)(at - entry), id)) return false;
  if (!ipv4_parse(address_text, address)) return false;
  return decimal_parse(colon + 1, strlen(colon + 1), port);
}

/* Checks one entry (NUL-terminated, cut for the echo) and appends it. */
static int node_entry_add(struct parse_state *state, const char *entry, size_t entry_length) {
  struct tally_cluster_config *cluster = &state->config.cluster;
  assert(entry_length > 0);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, entry);
  if (cluster->node_count == TALLY_NODES_MAX) {
    return fail_key(state, "cluster", "nodes", "more than %u nodes", TALLY_NODES_MAX);
  }
  uint64_t id = 0;
  uint64_t port = 0;
  uint32_t address = 0;
  if (entry_length > CONFIG_NODE_ENTRY_LEN_MAX || !node_entry_parse(entry, &id, &address, &port)) {
    return fail_key(state, "cluster", "nodes", "'%s' is not id@a.b.c.d:port", shown);
  }
  if (id == 0 || id > UINT16_MAX) {
    return fail_key(state, "cluster", "nodes", "'%s': the id must be 1..65535", shown);
  }
  if (port == 0 || port > UINT16_MAX) {
    return fail_key(state, "cluster", "nodes", "'%s': the port must be 1..65535", shown);
  }
  if (!ipv4_unicast(address)) {
    return fail_key(state, "cluster", "nodes", "'%s': not a unicast address", shown);
  }
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    const struct tally_cluster_node *other = &cluster->nodes[i];
    if (other->id == id) {
      return fail_key(state, "cluster", "nodes", "id %u is listed twice", (unsigned)id);
    }
    if (other->ipv4 == address && other->port == port) {
      return fail_key(state, "cluster", "nodes", "%u.%u.%u.%u:%u is listed twice",
        address >> 24, (address >> 16) & 0xffu, (address >> 8) & 0xffu, address & 0xffu,
        (unsigned)port);
    }
  }
  cluster->nodes[cluster->node_count++] =
    (struct tally_cluster_node){.id = (uint16_t)id, .ipv4 = address, .port = (uint16_t)port};
  return 1;
}

/* Appends the whitespace-separated entries in text[0, length). */
static int nodes_append(struct parse_state *state, const char *text, size_t length) {
  assert(text != NULL);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  size_t i = 0;
  while (i < length) { /* bounded: every pass moves i forward */
    if (is_space(text[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < length && !is_space(text[i])) i++;
    char entry[CONFIG_ECHO_LEN_MAX + 2];
    size_t copied = i - start <= CONFIG_ECHO_LEN_MAX ? i - start : CONFIG_ECHO_LEN_MAX + 1u;
    memcpy(entry, text + start, copied);
    entry[copied] = '\0';
    if (!node_entry_add(state, entry, i - start)) return 0;
  }
  assert(i == length);
  return 1;
}

static int parse_cluster_nodes(struct parse_state *state, enum config_key key,
  const char *value) {
  assert(key == KEY_CLUSTER_NODES);
  assert(value[0] != '\0');
  struct tally_cluster_config *cluster = &state->config.cluster;
  cluster->node_count = 0; /* the single-node default is replaced, not added to */
  memset(cluster->nodes, 0, sizeof(cluster->nodes));
  return nodes_append(state, value, strnlen(value, TALLY_EAL_ARGS_LEN_MAX - 1u));
}

/*
 * suspect_phi, down_phi: digits with at most one '.', in (0, 100]. The text
 * is checked before strtod, so no sign, exponent, hex, nan or inf gets in
 * (tallyd never calls setlocale: strtod's radix is '.').
 */
static int parse_cluster_phi(struct parse_state *state, enum config_key key, const char *value) {
  assert(key == KEY_CLUSTER_SUSPECT_PHI || key == KEY_CLUSTER_DOWN_PHI);
  assert(value != NULL);
  const struct key_spec *spec = key_spec_get(key);
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, value);
  size_t length = strlen(value);
  uint32_t digits = 0;
  uint32_t points = 0;
  for (size_t i = 0; i < length; i++) {
    if (value[i] >= '0' && value[i] <= '9') digits++;
    else if (value[i] == '.') points++;
    else return fail_key(state, spec->section, spec->name, "'%s' is not a decimal number", shown);
  }
  if (digits == 0 || points > 1) {
    return fail_key(state, spec->section, spec->name, "'%s' is not a decimal number", shown);
  }
  char *end = NULL;
  double phi = strtod(value, &end);
  assert(end == value + length);
  if (!(phi > 0.0)) return fail_key(state, spec->section, spec->name, "%s is not above 0", shown);
  if (phi > CONFIG_PHI_MAX) {
    return fail_key(state, spec->section, spec->name, "%s is above the maximum %g", shown,
      CONFIG_PHI_MAX);
  }
  if (key == KEY_CLUSTER_SUSPECT_PHI) state->config.cluster.suspect_phi = phi;
  if (key == KEY_CLUSTER_DOWN_PHI) state->config.cluster.down_phi = phi;
  return 1;
}

/* ---- Key table ------------------------------------------------------------ */

static const struct key_spec key_specs[KEY_COUNT] = {
  [KEY_EAL_ARGS] = {"eal", "args", parse_eal_args},
  [KEY_NODE_IPV4] = {"node", "ipv4", parse_node_ipv4},
  [KEY_INGEST_STATSD_PORT] = {"ingest", "statsd_port", parse_port},
  [KEY_INGEST_BINARY_PORT] = {"ingest", "binary_port", parse_port},
  [KEY_INGEST_KEY] = {"ingest", "key", parse_key},
  [KEY_STORE_PATH] = {"store", "path", parse_store_path},
  [KEY_STORE_COUNTERS_MAX] = {"store", "counters_max", parse_number},
  [KEY_STORE_PRODUCERS_MAX] = {"store", "producers_max", parse_number},
  [KEY_STORE_COMMIT_INTERVAL_MS] = {"store", "commit_interval_ms", parse_number},
  [KEY_STORE_PERSIST] = {"store", "persist", parse_store_persist},
  [KEY_DATAPLANE_MBUFS] = {"dataplane", "mbufs", parse_number},
  [KEY_CONTROL_SOCKET] = {"control", "socket", parse_control_socket},
  [KEY_CONTROL_HTTP] = {"control", "http", parse_control_http},
  [KEY_CLUSTER_NODE_ID] = {"cluster", "node_id", parse_cluster_node_id},
  [KEY_CLUSTER_NODES] = {"cluster", "nodes", parse_cluster_nodes},
  [KEY_CLUSTER_WRITE_QUORUM] = {"cluster", "write_quorum", parse_number},
  [KEY_CLUSTER_KEY] = {"cluster", "key", parse_key},
  [KEY_CLUSTER_HEARTBEAT_INTERVAL_MS] = {"cluster", "heartbeat_interval_ms", parse_number},
  [KEY_CLUSTER_REPLICATION_INTERVAL_MS] = {"cluster", "replication_interval_ms", parse_number},
  [KEY_CLUSTER_SUSPECT_PHI] = {"cluster", "suspect_phi", parse_cluster_phi},
  [KEY_CLUSTER_DOWN_PHI] = {"cluster", "down_phi", parse_cluster_phi},
  [KEY_CLUSTER_FAULT_DELAY_MS] = {"cluster", "fault_delay_ms", parse_number},
  [KEY_CLUSTER_FAULT_JITTER_MS] = {"cluster", "fault_jitter_ms", parse_number},
  [KEY_CLUSTER_FAULT_LOSS_PERMILLE] = {"cluster", "fault_loss_permille", parse_number},
};

static const struct key_spec *key_spec_get(enum config_key key) {
  assert(key < KEY_COUNT);
  assert(key_specs[key].parse != NULL);
  return &key_specs[key];
}

static bool section_known(const char *name, size_t length) {
  assert(name != NULL);
  size_t count = sizeof(section_names) / sizeof(section_names[0]);
  for (size_t i = 0; i < count; i++) {
    if (strlen(section_names[i]) == length && memcmp(section_names[i], name, length) == 0) {
      return true;
    }
  }
  return false;
}

static enum config_key key_find(const char *section, const char *name) {
  assert(section != NULL);
  assert(name != NULL);
  for (int key = 0; key < KEY_COUNT; key++) {
    if (strcmp(key_specs[key].section, section) == 0 && strcmp(key_specs[key].name, name) == 0) {
      return (enum config_key)key;
    }
  }
  return KEY_COUNT;
}

/* ---- EAL arguments -------------------------------------------------------- */

static bool eal_separator(char c) {
  return c == ' ' || c == '\t';
}

/* Arguments in args, not counting the program. */
static uint32_t eal_args_count(const char *args) {
  assert(args != NULL);
  size_t length = strnlen(args, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  uint32_t count = 0;
  for (size_t i = 0; i < length; i++) {
    if (!eal_separator(args[i]) && (i == 0 || eal_separator(args[i - 1]))) count++;
  }
  assert(count <= length);
  return count;
}

int tally_config_eal_argv(const struct tally_config *config, const char *program,
  char *storage, char **argv) {
  assert(config != NULL);
  assert(program != NULL);
  assert(storage != NULL);
  assert(argv != NULL);
  size_t length = strnlen(config->eal_args, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  memcpy(storage, config->eal_args, length + 1u);
  int argc = 0;
  argv[argc++] = (char *)program;
  for (size_t i = 0; i < length; i++) {
    if (eal_separator(storage[i])) {
      storage[i] = '\0';
      continue;
    }
    if (i > 0 && storage[i - 1] != '\0') continue;
    if (argc == (int)TALLY_EAL_ARGC_MAX) return -1;
    argv[argc++] = &storage[i];
  }
  argv[argc] = NULL;
  assert(argc >= 1);
  assert(argc <= (int)TALLY_EAL_ARGC_MAX);
  return argc;
}

/* ---- inih reader and handler ---------------------------------------------- */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '\n';
}

/*
 * Mirrors inih's section-header rule (first non-space byte '[', name up to
 * ']', untrimmed) to catch unknown sections even when they hold no key.
 * Returns false once it has recorded an error.
 */
static bool reader_check_section(struct parse_state *state, const char *line, size_t length) {
  assert(line != NULL);
  assert(length <= CONFIG_TEXT_SIZE_MAX);
  size_t i = 0;
  if (state->line_number == 1 && length >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) i = 3;
  while (i < length && is_space(line[i])) i++;
  if (i == length || line[i] != '[') return true;
  /* inih takes an indented line after a key as a continuation, even "  [x]". */
  if (state->line_indented && state->key_previous_valid) return true;
  state->key_previous_valid = false;
  const char *name = line + i + 1;
  const char *end = memchr(name, ']', length - i - 1u);
  if (end == NULL) return true; /* inih reports it as a syntax error */
  size_t name_length = (size_t)(end - name);
  if (section_known(name, name_length)) {
    if (name_length == 7u && memcmp(name, "cluster", 7u) == 0) state->cluster_seen = true;
    return true;
  }
  char copy[CONFIG_ECHO_LEN_MAX + 1];
  size_t copy_length = name_length < CONFIG_ECHO_LEN_MAX ? name_length : CONFIG_ECHO_LEN_MAX;
  memcpy(copy, name, copy_length);
  copy[copy_length] = '\0';
  char shown[CONFIG_ECHO_LEN_MAX + 4];
  echo(shown, copy);
  fail_line(state, state->line_number, "unknown section [%s]", shown);
  return false;
}

/* fgets() over the text, one line per call, refusing lines inih would split. */
static char *config_reader(char *line, int line_size, void *stream) {
  struct parse_state *state = stream;
  assert(line_size > 2);
  assert(state->offset <= state->text_size);
  if (state->failed || state->offset == state->text_size) return NULL;
  const char *start = state->text + state->offset;
  size_t remaining = state->text_size - state->offset;
  const char *newline = memchr(start, '\n', remaining);
  size_t length = newline == NULL ? remaining : (size_t)(newline - start) + 1u;
  size_t content = newline == NULL ? length : length - 1u;
  state->line_number++;
  if (content > (size_t)line_size - 2u) {
    fail_line(state, state->line_number, "longer than %d bytes", line_size - 2);
    return NULL;
  }
  if (memchr(start, '\0', length) != NULL) {
    fail_line(state, state->line_number, "contains a NUL byte");
    return NULL;
  }
  memcpy(line, start, length);
  line[length] = '\0';
  state->offset += length;
  state->line_indented = length > 0 && is_space(line[0]) && line[0] != '\n';
  if (!reader_check_section(state, line, length)) return NULL;
  return line;
}

/* Cuts an inline comment (';' after whitespace) that inih r55 leaves in continuations. */
static size_t continuation_trim(const char *value) {
  size_t length = strnlen(value, TALLY_EAL_ARGS_LEN_MAX);
  assert(length < TALLY_EAL_ARGS_LEN_MAX);
  for (size_t i = 1; i < length; i++) {
    if (value[i] == ';' && is_space(value[i - 1])) {
      length = i;
      break;
    }
  }
  while (length > 0 && is_space(value[length - 1])) length--;
  return length;
}

/*
 * An indented line after eal.args (appended with one space) or after
 * cluster.nodes (more entries).
 */
static int config_continue(struct parse_state *state, enum config_key key, const char *value) {
  assert(state->key_previous_valid);
  assert(state->keys_seen & (1u << key));
  if (key != KEY_EAL_ARGS && key != KEY_CLUSTER_NODES) {
    return fail(state, key, "an indented line continues the previous value, and only eal.args "
                            "and cluster.nodes may span lines");
  }
  size_t length = continuation_trim(value);
  if (length == 0) return 1;
  if (key == KEY_CLUSTER_NODES) return nodes_append(state, value, length);
  char *args = state->config.eal_args;
  size_t used = strnlen(args, TALLY_EAL_ARGS_LEN_MAX);
  assert(used < TALLY_EAL_ARGS_LEN_MAX);
  if (used + 1u + length > TALLY_EAL_ARGS_LEN_MAX - 1u) {
    return fail_key(state, "eal", "args", "longer than %u bytes", TALLY_EAL_ARGS_LEN_MAX - 1u);
  }
  char piece[TALLY_EAL_ARGS_LEN_MAX];
  memcpy(piece, value, length);
  piece[length] = '\0';
  if (has_control_char(piece)) return fail(state, key, "contains a control character");
  args[used] = ' ';
  memcpy(args + used + 1u, piece, length + 1u);
  return 1;
}

static int config_handler(void *user, const char *section, const char *name,
  const char *value) {
  struct parse_state *state = user;
  assert(state != NULL);
  assert(section != NULL);
  assert(name != NULL);
  assert(value != NULL);
  if (state->failed) return 0;
  enum config_key key = key_find(section, name);
  if (key == KEY_COUNT && section[0] == '\0') {
    char name_shown[CONFIG_ECHO_LEN_MAX + 4];
    echo(name_shown, name);
    fail_line(state, state->line_number, "key '%s' is outside any section", name_shown);
    return 0;
  }
  if (key == KEY_COUNT) {
    char section_shown[CONFIG_ECHO_LEN_MAX + 4];
    char name_shown[CONFIG_ECHO_LEN_MAX + 4];
    echo(section_shown, section);
    echo(name_shown, name);
    bool known = section_known(section, strlen(section));
    return fail_key(state, section_shown, name_shown, known ? "unknown key" : "unknown section");
  }
  uint32_t bit = 1u << key;
  if (state->line_indented && state->key_previous_valid && state->key_previous == key) {
    return config_continue(state, key, value);
  }
  if (state->keys_seen & bit) {
    char what[64];
    snprintf(what, sizeof(what), "duplicate (first set on line %d)", state->key_line[key]);
    return fail(state, key, what);
  }
  state->keys_seen |= bit;
  state->key_line[key] = state->line_number;
  if (strcmp(section, "cluster") == 0) state->cluster_seen = true; /* the reader saw it too */
  state->key_previous = key;
  state->key_previous_valid = true;
  if (value[0] == '\0') return fail(state, key, "empty value");
  return key_spec_get(key)->parse(state, key, value);
}

/* ---- Parse ---------------------------------------------------------------- */

/* Describes the syntax error inih found on line_number. */
static void fail_syntax(struct parse_state *state, int line_number) {
  assert(line_number > 0);
  assert(line_number <= state->line_number);
  const char *line = state->text;
  const char *end = state->text + state->text_size;
  for (int i = 1; i < line_number; i++) {
    const char *newline = memchr(line, '\n', (size_t)(end - line));
    assert(newline != NULL);
    line = newline + 1;
  }
  while (line < end && is_space(*line) && *line != '\n') line++;
  bool section = line < end && *line == '[';
  state->failed = false; /* the syntax error came first: it replaces any later one */
  fail_line(state, line_number, "%s",
    section ? "section header without a closing ']'" : "expected 'key = value'");
}

/* Without [cluster], one node; with it, what spans its keys. */
static int cluster_validate(struct parse_state *state) {
  struct tally_cluster_config *cluster = &state->config.cluster;
  assert(!state->failed);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  if (!state->cluster_seen) {
    assert(cluster->node_count == 1u);
    cluster->nodes[0].ipv4 = state->config.ipv4;
    return 1;
  }
  static const enum config_key required[] = {KEY_CLUSTER_NODE_ID, KEY_CLUSTER_NODES,
    KEY_CLUSTER_KEY};
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    if (!(state->keys_seen & (1u << required[i]))) return fail(state, required[i], "required");
  }
  assert(cluster->node_count >= 1u);
  bool member = false;
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    if (cluster->nodes[i].id == cluster->node_id) member = true;
  }
  if (!member) {
    return fail_key(state, "cluster", "node_id", "%u is not in cluster.nodes",
      (unsigned)cluster->node_id);
  }
  if (!(state->keys_seen & (1u << KEY_CLUSTER_WRITE_QUORUM))) {
    cluster->write_quorum = cluster->node_count < CONFIG_WRITE_QUORUM_DEFAULT
                              ? cluster->node_count
                              : CONFIG_WRITE_QUORUM_DEFAULT;
  }
  if (cluster->write_quorum > cluster->node_count) {
    return fail_key(state, "cluster", "write_quorum",
      "%u is above the maximum %u (the number of cluster.nodes)", cluster->write_quorum,
      cluster->node_count);
  }
  if (!(cluster->down_phi > cluster->suspect_phi)) {
    if (state->keys_seen & (1u << KEY_CLUSTER_DOWN_PHI)) {
      return fail_key(state, "cluster", "down_phi", "%g is not above cluster.suspect_phi %g",
        cluster->down_phi, cluster->suspect_phi);
    }
    return fail_key(state, "cluster", "suspect_phi", "%g is not below cluster.down_phi %g",
      cluster->suspect_phi, cluster->down_phi);
  }
  cluster->enabled = true;
  return 1;
}

/* Checks what spans keys: required keys, ports, the key, EAL argument count, [cluster]. */
static int config_validate(struct parse_state *state) {
  const struct tally_config *config = &state->config;
  assert(!state->failed);
  assert(state->error_line == 0);
  uint32_t argc = 1u + eal_args_count(config->eal_args);
  if (argc > TALLY_EAL_ARGC_MAX) {
    return fail_key(state, "eal", "args", "%u arguments, at most %u with the program name",
      argc, TALLY_EAL_ARGC_MAX);
  }
  static const enum config_key required[] = {KEY_EAL_ARGS, KEY_NODE_IPV4, KEY_STORE_PATH};
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    if (!(state->keys_seen & (1u << required[i]))) return fail(state, required[i], "required");
  }
  if (config->binary_port != 0 && !config->key_set) return fail(state, KEY_INGEST_KEY, "required");
  if (config->statsd_port != 0 && config->statsd_port == config->binary_port) {
    return fail_key(state, "ingest", "binary_port", "%u is the same as ingest.statsd_port",
      (unsigned)config->binary_port);
  }
  return cluster_validate(state);
}

/* What every successfully parsed [cluster] holds, enabled or not. */
static void cluster_assert_valid(const struct tally_cluster_config *cluster) {
  assert(cluster->node_count >= 1u);
  assert(cluster->node_count <= TALLY_NODES_MAX);
  assert(cluster->write_quorum >= 1u);
  assert(cluster->write_quorum <= cluster->node_count);
  assert(cluster->heartbeat_interval_ms >= CONFIG_HEARTBEAT_INTERVAL_MS_MIN);
  assert(cluster->heartbeat_interval_ms <= CONFIG_HEARTBEAT_INTERVAL_MS_MAX);
  assert(cluster->replication_interval_ms >= CONFIG_REPLICATION_INTERVAL_MS_MIN);
  assert(cluster->replication_interval_ms <= CONFIG_REPLICATION_INTERVAL_MS_MAX);
  assert(cluster->suspect_phi > 0.0);
  assert(cluster->suspect_phi < cluster->down_phi);
  assert(cluster->down_phi <= CONFIG_PHI_MAX);
  assert(cluster->fault_delay_ms <= TALLY_CLUSTER_FAULT_DELAY_MS_MAX);
  assert(cluster->fault_jitter_ms <= TALLY_CLUSTER_FAULT_JITTER_MS_MAX);
  assert(cluster->fault_loss_permille <= TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX);
  bool member = false;
  for (uint32_t i = 0; i < cluster->node_count; i++) {
    assert(cluster->nodes[i].id != 0);
    assert(!cluster->enabled || cluster->nodes[i].port != 0);
    assert(!cluster->enabled || ipv4_unicast(cluster->nodes[i].ipv4));
    if (cluster->nodes[i].id == cluster->node_id) member = true;
  }
  assert(member);
}

/* What every successfully parsed config holds. */
static void config_assert_valid(const struct tally_config *config) {
  assert(strnlen(config->eal_args, TALLY_EAL_ARGS_LEN_MAX) < TALLY_EAL_ARGS_LEN_MAX);
  assert(strnlen(config->store_path, TALLY_PATH_MAX) < TALLY_PATH_MAX);
  assert(strnlen(config->socket_path, TALLY_PATH_MAX) <= CONFIG_SOCKET_PATH_LEN_MAX);
  assert(config->store_path[0] != '\0');
  assert(config->counters_max >= TALLY_COUNTERS_MIN);
  assert(config->counters_max <= TALLY_COUNTERS_MAX);
  assert(config->producers_max >= TALLY_PRODUCERS_MIN);
  assert(config->producers_max <= TALLY_PRODUCERS_MAX);
  assert(config->commit_interval_ms >= TALLY_COMMIT_INTERVAL_MS_MIN);
  assert(config->commit_interval_ms <= TALLY_COMMIT_INTERVAL_MS_MAX);
  assert(config->mbufs >= TALLY_MBUFS_MIN);
  assert(config->mbufs <= TALLY_MBUFS_MAX);
  assert(config->persist_mode <= TALLY_PERSIST_PER_BURST);
  assert(config->binary_port == 0 || config->key_set);
  cluster_assert_valid(&config->cluster);
}

void tally_config_defaults(struct tally_config *config) {
  assert(config != NULL);
  memset(config, 0, sizeof(*config));
  config->statsd_port = 8125;
  config->binary_port = 8126;
  config->counters_max = 65536;
  config->producers_max = 4096;
  config->commit_interval_ms = 2;
  config->persist_mode = TALLY_PERSIST_AUTO;
  config->mbufs = 16383;
  snprintf(config->socket_path, sizeof(config->socket_path), "%s", "/run/tally/tally.sock");
  config->http_ipv4 = 0x7f000001u; /* 127.0.0.1 */
  config->http_port = 9125;
  /* No [cluster]: this node alone, id 1, its own write quorum. */
  struct tally_cluster_config *cluster = &config->cluster;
  cluster->enabled = false;
  cluster->node_id = 1;
  cluster->node_count = 1;
  cluster->nodes[0].id = 1;
  cluster->write_quorum = 1;
  cluster->heartbeat_interval_ms = CONFIG_HEARTBEAT_INTERVAL_MS_DEFAULT;
  cluster->replication_interval_ms = CONFIG_REPLICATION_INTERVAL_MS_DEFAULT;
  cluster->suspect_phi = CONFIG_SUSPECT_PHI_DEFAULT;
  cluster->down_phi = CONFIG_DOWN_PHI_DEFAULT;
  cluster->fault_delay_ms = 0; /* fault injection off */
  cluster->fault_jitter_ms = 0;
  cluster->fault_loss_permille = 0;
  assert(config->mbufs >= TALLY_MBUFS_MIN);
  assert(config->counters_max >= TALLY_COUNTERS_MIN);
}

int tally_config_parse(const char *text, size_t text_size, struct tally_config *config,
  char *error, size_t error_size) {
  assert(text != NULL || text_size == 0);
  assert(config != NULL);
  assert(error != NULL);
  assert(error_size > 0);
  error[0] = '\0';
  /* One trailing NUL, as from sizeof of a string literal, is not part of the text. */
  if (text_size > 0 && text[text_size - 1] == '\0') text_size--;
  if (text_size > CONFIG_TEXT_SIZE_MAX) {
    error_write(error, error_size, "config: config too large: %zu bytes, at most %u", text_size,
      CONFIG_TEXT_SIZE_MAX);
    return -1;
  }
  struct parse_state state;
  memset(&state, 0, sizeof(state));
  tally_config_defaults(&state.config);
  state.text = text == NULL ? "" : text;
  state.text_size = text_size;
  state.error = error;
  state.error_size = error_size;
  int result = ini_parse_stream(config_reader, &state, config_handler, &state);
  if (result > 0 && (!state.failed || result < state.error_line)) fail_syntax(&state, result);
  if (result < 0 && !state.failed) {
    error_write(error, error_size, "config: the INI parser failed (%d)", result);
    state.failed = true;
  }
  if (!state.failed) config_validate(&state);
  if (!state.failed) {
    config_assert_valid(&state.config);
    *config = state.config;
  }
  bool failed = state.failed;
  explicit_bzero(&state, sizeof(state)); /* it held the key */
  assert(failed || error[0] == '\0');
  return failed ? -1 : 0;
}

/* ---- Load ----------------------------------------------------------------- */

/* Not an errno: the path names something other than a regular file. */
#define FILE_NOT_REGULAR (-1)

/* Reads at most size bytes; a larger file reads as size + 1 (too large). */
static int file_read(const char *path, char *buffer, size_t size, size_t *read_size) {
  assert(buffer != NULL);
  assert(size > 0);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return errno;
  struct stat status;
  if (fstat(fd, &status) != 0) {
    int saved = errno;
    close(fd);
    return saved;
  }
  if (!S_ISREG(status.st_mode)) {
    close(fd);
    return FILE_NOT_REGULAR;
  }
  size_t done = 0;
  /* Bounded: each pass reads at least one byte, or ends, or is an EINTR (capped). */
  uint32_t interrupts = 0;
  while (done <= size) {
    ssize_t got = read(fd, buffer + done, size + 1u - done);
    if (got < 0 && errno == EINTR && interrupts++ < 64u) continue;
    if (got < 0) {
      int saved = errno;
      close(fd);
      return saved;
    }
    if (got == 0) break;
    done += (size_t)got;
  }
  close(fd);
  assert(done <= size + 1u);
  *read_size = done;
  return 0;
}

int tally_config_load(const char *path, struct tally_config *config, char *error,
  size_t error_size) {
  assert(path != NULL);
  assert(config != NULL);
  assert(error != NULL);
  assert(error_size > 0);
  char *text = malloc(CONFIG_TEXT_SIZE_MAX + 1u);
  if (text == NULL) {
    error_write(error, error_size, "%s: cannot read: %s", path, strerror(ENOMEM));
    return -1;
  }
  size_t text_size = 0;
  int read_error = file_read(path, text, CONFIG_TEXT_SIZE_MAX, &text_size);
  if (read_error != 0) {
    error_write(error, error_size, "%s: cannot read: %s", path,
      read_error == FILE_NOT_REGULAR ? "not a regular file" : strerror(read_error));
    free(text);
    return -1;
  }
  if (text_size > CONFIG_TEXT_SIZE_MAX) {
    error_write(error, error_size, "%s: config: config too large: more than %u bytes", path,
      CONFIG_TEXT_SIZE_MAX);
    explicit_bzero(text, text_size);
    free(text);
    return -1;
  }
  char message[512];
  int result = tally_config_parse(text, text_size, config, message, sizeof(message));
  explicit_bzero(text, text_size);
  free(text);
  if (result != 0) {
    error_write(error, error_size, "%s: %s", path, message);
    return -1;
  }
  error[0] = '\0';
  return 0;
}
