/*
 * test_config.c — unit tests for control/config/config.c: defaults, a full valid
 * file, every class of error with its exact message, continuation lines,
 * EAL argv splitting, loading from a path, the [cluster] section (absent,
 * full, every error, nodes over several lines, the test-only fault_* keys),
 * and that config/local.ini and config/tally.ini.template themselves parse,
 * the template also with its commented-out [cluster] example turned on.
 * Issue 14 (M2, L4, M4): ingest.key equal to cluster.key is refused, the
 * public demo and template keys only with node.demo = true, a file holding a
 * secret key that group or others can access is refused by the loader;
 * control.admin_group's names.
 *
 * The two shipped files are found from TALLY_SOURCE_DIR if set, else from
 * the source root derived from __FILE__, else from ".." and ".".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define ERROR_SIZE 256
#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
#define CLUSTER_KEY_HEX "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define NODES3 "1@10.78.0.1:7100 2@10.78.0.2:7100 3@10.78.0.3:7100"

/* Eight lines: extra text starts on line 9. */
#define BASE                                                                            \
  "[eal]\nargs = -l 0\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /tmp/x.pmem\n[ingest]\n" \
  "key = " KEY_HEX "\n"

static char text_buffer[96 * 1024];

static const char *with_base(const char *extra) {
  int written = snprintf(text_buffer, sizeof(text_buffer), "%s%s", BASE, extra);
  assert_true(written > 0);
  assert_true((size_t)written < sizeof(text_buffer));
  return text_buffer;
}

static int parse_text(const char *text, struct tally_config *config, char *error) {
  return tally_config_parse(text, strlen(text), config, error, ERROR_SIZE);
}

static void expect_error(const char *text, const char *message) {
  struct tally_config config;
  char error[ERROR_SIZE];
  int result = parse_text(text, &config, error);
  if (result == 0 || strcmp(error, message) != 0) {
    print_error("text:\n%s\nwant: %s\ngot:  %s (result %d)\n", text, message, error, result);
  }
  assert_int_equal(result, -1);
  assert_string_equal(error, message);
  assert_null(strchr(error, '\n'));
}

static void expect_ok(const char *text, struct tally_config *config) {
  char error[ERROR_SIZE];
  int result = parse_text(text, config, error);
  if (result != 0) print_error("text:\n%s\nerror: %s\n", text, error);
  assert_int_equal(result, 0);
  assert_string_equal(error, "");
}

static void test_defaults(void **unused) {
  (void)unused;
  struct tally_config config;
  tally_config_defaults(&config);
  assert_int_equal(config.statsd_port, 8125);
  assert_int_equal(config.binary_port, 8126);
  assert_int_equal(config.counters_max, 65536);
  assert_int_equal(config.producers_max, 4096);
  assert_int_equal(config.commit_interval_ms, 2);
  assert_int_equal(config.persist_mode, TALLY_PERSIST_AUTO);
  assert_int_equal(config.mbufs, 16383);
  assert_int_equal(config.idle_sleep_us, 0); /* off: a NIC host polls flat out */
  assert_int_equal(config.statsd_counters_percent, 75); /* a quarter kept for reliable */
  assert_false(config.statsd_writes_reliable);
  assert_int_equal(config.statsd_per_poll, TALLY_STATSD_PER_POLL_DEFAULT);
  assert_int_equal(config.reliable_per_poll, TALLY_RELIABLE_PER_POLL_DEFAULT);
  assert_int_equal(config.control_per_poll, TALLY_CONTROL_PER_POLL_DEFAULT);
  assert_string_equal(config.socket_path, "/run/tally/tally.sock");
  assert_int_equal(config.http_ipv4, 0x7f000001u);
  assert_int_equal(config.http_port, 9125);
  assert_false(config.key_set);
  assert_false(config.cluster.enabled);
  assert_int_equal(config.cluster.node_id, 1);
  assert_int_equal(config.cluster.node_count, 1);
  assert_int_equal(config.cluster.nodes[0].id, 1);
  assert_int_equal(config.cluster.write_quorum, 1);
  assert_int_equal(config.cluster.heartbeat_interval_ms, 100);
  assert_int_equal(config.cluster.replication_interval_ms, 5);
  assert_true(config.cluster.suspect_phi == 5.0);
  assert_true(config.cluster.down_phi == 8.0);

  /* A minimal file keeps every default it does not set. */
  struct tally_config parsed;
  expect_ok(BASE, &parsed);
  assert_string_equal(parsed.eal_args, "-l 0");
  assert_int_equal(parsed.ipv4, 0x0a000001u);
  assert_string_equal(parsed.store_path, "/tmp/x.pmem");
  assert_true(parsed.key_set);
  assert_int_equal(parsed.key[0], 0x00);
  assert_int_equal(parsed.key[1], 0x11);
  assert_int_equal(parsed.key[31], 0xff);
  assert_int_equal(parsed.counters_max, 65536);
  assert_int_equal(parsed.mbufs, 16383);
  assert_string_equal(parsed.socket_path, "/run/tally/tally.sock");
  assert_int_equal(parsed.http_port, 9125);
  /* No [cluster]: this node alone, at node.ipv4, no replication port, quorum 1. */
  assert_false(parsed.cluster.enabled);
  assert_int_equal(parsed.cluster.node_id, 1);
  assert_int_equal(parsed.cluster.node_count, 1);
  assert_int_equal(parsed.cluster.nodes[0].id, 1);
  assert_int_equal(parsed.cluster.nodes[0].ipv4, 0x0a000001u);
  assert_int_equal(parsed.cluster.nodes[0].port, 0);
  assert_int_equal(parsed.cluster.write_quorum, 1);
  assert_int_equal(parsed.cluster.heartbeat_interval_ms, 100);
  assert_int_equal(parsed.cluster.replication_interval_ms, 5);
  assert_true(parsed.cluster.suspect_phi == 5.0);
  assert_true(parsed.cluster.down_phi == 8.0);
  static const uint8_t zeros[TALLY_KEY_SIZE];
  assert_memory_equal(parsed.cluster.key, zeros, TALLY_KEY_SIZE);
}

static void test_full_file(void **unused) {
  (void)unused;
  const char *text =
    "; every key\n"
    "# both comment styles\n"
    "[eal]\n"
    "args = -l 0-3 --in-memory ; inline comment\n"
    "[node]\n"
    "ipv4 = 192.0.2.7\n"
    "[ingest]\n"
    "statsd_port = 9000\n"
    "binary_port = 0\n"
    "key = " KEY_HEX "\n"
    "[store]\n"
    "path = /dev/dax0.0\n"
    "counters_max = 16\n"
    "producers_max = 1048576\n"
    "commit_interval_ms = 1000\n"
    "persist = per_burst\n"
    "[dataplane]\n"
    "mbufs = 1024\n"
    "idle_sleep_us = 1000\n"
    "statsd_per_poll = 1\n"
    "reliable_per_poll = 4096\n"
    "control_per_poll = 2\n"
    "[control]\n"
    "socket = /run/t.sock\n"
    "http = 0.0.0.0:8080\n";
  struct tally_config config;
  expect_ok(text, &config);
  assert_string_equal(config.eal_args, "-l 0-3 --in-memory");
  assert_int_equal(config.ipv4, 0xc0000207u);
  assert_int_equal(config.statsd_port, 9000);
  assert_int_equal(config.binary_port, 0);
  assert_true(config.key_set);
  assert_string_equal(config.store_path, "/dev/dax0.0");
  assert_int_equal(config.counters_max, 16);
  assert_int_equal(config.producers_max, 1048576);
  assert_int_equal(config.commit_interval_ms, 1000);
  assert_int_equal(config.persist_mode, TALLY_PERSIST_PER_BURST);
  assert_int_equal(config.mbufs, 1024);
  assert_int_equal(config.idle_sleep_us, 1000);
  assert_int_equal(config.statsd_per_poll, 1);
  assert_int_equal(config.reliable_per_poll, 4096);
  assert_int_equal(config.control_per_poll, 2);
  assert_string_equal(config.socket_path, "/run/t.sock");
  assert_int_equal(config.http_ipv4, 0);
  assert_int_equal(config.http_port, 8080);

  expect_ok(with_base("[store]\npersist = group_commit\n[control]\nhttp = off\n"), &config);
  assert_int_equal(config.persist_mode, TALLY_PERSIST_GROUP_COMMIT);
  assert_int_equal(config.http_port, 0);
  expect_ok(with_base("[store]\ncounters_max = 67108864\n[ingest]\nstatsd_port = 65535\n"),
    &config);
  assert_int_equal(config.counters_max, 67108864);
  assert_int_equal(config.statsd_port, 65535);
}

static void test_unknown_and_duplicate(void **unused) {
  (void)unused;
  expect_error(with_base("[store]\nbogus = 1\n"), "config: store.bogus: unknown key");
  expect_error(with_base("[node]\nIPV4 = 1.2.3.4\n"), "config: node.IPV4: unknown key");
  expect_error(with_base("[bogus]\nx = 1\n"), "config: line 9: unknown section [bogus]");
  expect_error(with_base("\n[bogus]\n"), "config: line 10: unknown section [bogus]");
  expect_error("x = 1\n", "config: line 1: key 'x' is outside any section");
  expect_error(with_base("[store]\npath = /b\n"),
    "config: store.path: duplicate (first set on line 6)");
  expect_error(with_base("[ingest]\nstatsd_port = 1\nstatsd_port = 2\n"),
    "config: ingest.statsd_port: duplicate (first set on line 10)");
  /* A section may appear twice; its keys still may not. */
  struct tally_config config;
  expect_ok(with_base("[store]\ncounters_max = 32\n"), &config);
  assert_int_equal(config.counters_max, 32);
}

static void test_numbers(void **unused) {
  (void)unused;
  expect_error(with_base("[store]\ncounters_max = 5\n"),
    "config: store.counters_max: 5 is below the minimum 16");
  expect_error(with_base("[store]\ncounters_max = 67108865\n"),
    "config: store.counters_max: 67108865 is above the maximum 67108864");
  expect_error(with_base("[store]\ncounters_max = 99999999999999999999\n"),
    "config: store.counters_max: 99999999999999999999 is above the maximum 67108864");
  expect_error(with_base("[store]\nproducers_max = 15\n"),
    "config: store.producers_max: 15 is below the minimum 16");
  expect_error(with_base("[store]\nproducers_max = 1048577\n"),
    "config: store.producers_max: 1048577 is above the maximum 1048576");
  expect_error(with_base("[store]\ncommit_interval_ms = 0\n"),
    "config: store.commit_interval_ms: 0 is below the minimum 1");
  expect_error(with_base("[store]\ncommit_interval_ms = 1001\n"),
    "config: store.commit_interval_ms: 1001 is above the maximum 1000");
  expect_error(with_base("[dataplane]\nmbufs = 1023\n"),
    "config: dataplane.mbufs: 1023 is below the minimum 1024");
  expect_error(with_base("[dataplane]\nidle_sleep_us = 1001\n"),
    "config: dataplane.idle_sleep_us: 1001 is above the maximum 1000");
  expect_error(with_base("[ingest]\nstatsd_counters_percent = 101\n"),
    "config: ingest.statsd_counters_percent: 101 is above the maximum 100");
  expect_error(with_base("[ingest]\nstatsd_writes_reliable = yes\n"),
    "config: ingest.statsd_writes_reliable: 'yes' is not true or false");
  expect_error(with_base("[dataplane]\nstatsd_per_poll = 0\n"),
    "config: dataplane.statsd_per_poll: 0 is below the minimum 1");
  expect_error(with_base("[dataplane]\nreliable_per_poll = 4097\n"),
    "config: dataplane.reliable_per_poll: 4097 is above the maximum 4096");
  expect_error(with_base("[dataplane]\ncontrol_per_poll = x\n"),
    "config: dataplane.control_per_poll: 'x' is not a decimal number");
  expect_error(with_base("[ingest]\nstatsd_port = 65536\n"),
    "config: ingest.statsd_port: 65536 is above the maximum 65535");
  expect_error(with_base("[store]\ncounters_max = 12x\n"),
    "config: store.counters_max: '12x' is not a decimal number");
  expect_error(with_base("[store]\ncounters_max = -5\n"),
    "config: store.counters_max: '-5' is not a decimal number");
  expect_error(with_base("[store]\ncounters_max = +5\n"),
    "config: store.counters_max: '+5' is not a decimal number");
  expect_error(with_base("[store]\ncounters_max = 0x10\n"),
    "config: store.counters_max: '0x10' is not a decimal number");
  expect_error(with_base("[store]\ncounters_max = 1 000\n"),
    "config: store.counters_max: '1 000' is not a decimal number");
  expect_error(with_base("[store]\ncounters_max =\n"), "config: store.counters_max: empty value");
}

/* ingest.statsd_source_rate / _burst and statsd_allow_cidrs (issue 14, C1): values, refusals. */
static void test_statsd_policy(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(BASE, &config);
  assert_int_equal(config.statsd_policy.source_rate, 0); /* off */
  assert_int_equal(config.statsd_policy.source_burst, TALLY_STATSD_SOURCE_BURST_DEFAULT);
  assert_int_equal(config.statsd_policy.allow_count, 0);
  assert_true(tally_statsd_source_allowed(&config.statsd_policy, 0xc0000201u)); /* no list: all */
  expect_ok(with_base("statsd_source_rate = 500\nstatsd_source_burst = 20\n"
    "statsd_allow_cidrs = 10.0.0.0/8, 192.0.2.0/24 ,198.51.100.7/32,0.0.0.0/0\n"), &config);
  assert_int_equal(config.statsd_policy.source_rate, 500);
  assert_int_equal(config.statsd_policy.source_burst, 20);
  assert_int_equal(config.statsd_policy.allow_count, 4);
  assert_int_equal(config.statsd_policy.allow[0].network, 0x0a000000u);
  assert_int_equal(config.statsd_policy.allow[0].mask, 0xff000000u);
  assert_int_equal(config.statsd_policy.allow[2].mask, 0xffffffffu);
  assert_int_equal(config.statsd_policy.allow[3].mask, 0);
  expect_ok(with_base("statsd_allow_cidrs = 10.0.0.0/8, 192.0.2.0/24\n"), &config);
  assert_true(tally_statsd_source_allowed(&config.statsd_policy, 0x0a010203u));
  assert_true(tally_statsd_source_allowed(&config.statsd_policy, 0xc00002ffu));
  assert_false(tally_statsd_source_allowed(&config.statsd_policy, 0xc0000301u));
  assert_false(tally_statsd_source_allowed(&config.statsd_policy, 0x0b000001u));
  expect_error(with_base("statsd_source_rate = 1000001\n"),
    "config: ingest.statsd_source_rate: 1000001 is above the maximum 1000000");
  expect_error(with_base("statsd_source_burst = 0\n"),
    "config: ingest.statsd_source_burst: 0 is below the minimum 1");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.1/8\n"),
    "config: ingest.statsd_allow_cidrs: '10.0.0.1/8': host bits set after the prefix length");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.0/33\n"),
    "config: ingest.statsd_allow_cidrs: '10.0.0.0/33': prefix length not 0..32");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.0\n"),
    "config: ingest.statsd_allow_cidrs: '10.0.0.0': no /len (write a.b.c.d/32 for one address)");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.0/8,,192.0.2.0/24\n"),
    "config: ingest.statsd_allow_cidrs: '': an empty entry");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.0/8,\n"),
    "config: ingest.statsd_allow_cidrs: '': an empty entry");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0/8\n"),
    "config: ingest.statsd_allow_cidrs: '10.0.0/8': not an IPv4 network a.b.c.d/len");
  expect_error(with_base("statsd_allow_cidrs = 10.0.0.0/x\n"),
    "config: ingest.statsd_allow_cidrs: '10.0.0.0/x': prefix length not 0..32");
  char text[2048] = "statsd_allow_cidrs = ";
  for (unsigned i = 0; i <= TALLY_STATSD_ALLOW_CIDRS_MAX; i++) {
    sprintf(text + strlen(text), "%s%u.0.0.0/8", i == 0 ? "" : ",", i + 1u);
  }
  strcat(text, "\n");
  expect_error(with_base(text), "config: ingest.statsd_allow_cidrs: more networks than the limit (16)");
}

/* ingest.producer_keys (issue 14, M2): shared (the default) or derived. */
static void test_producer_keys(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(BASE, &config);
  assert_false(config.producer_keys_derived); /* the default: shared */
  expect_ok(with_base("producer_keys = derived\n"), &config);
  assert_true(config.producer_keys_derived);
  expect_ok(with_base("producer_keys = shared\n"), &config);
  assert_false(config.producer_keys_derived);
  expect_error(with_base("producer_keys = own\n"),
    "config: ingest.producer_keys: 'own' is not one of shared, derived");
  expect_error(with_base("producer_keys = \n"),
    "config: ingest.producer_keys: empty value");
}

/* ingest.statsd_tags and ingest.statsd_tags_allow: modes, the list, every refusal. */
static void test_statsd_tags(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(BASE, &config);
  assert_int_equal(config.statsd_tags.mode, TALLY_TAGS_KEEP); /* the default */
  assert_int_equal(config.statsd_tags.allow_count, 0);
  expect_ok(with_base("statsd_tags = drop\n"), &config);
  assert_int_equal(config.statsd_tags.mode, TALLY_TAGS_DROP);
  expect_ok(with_base("statsd_tags = keep\n"), &config);
  assert_int_equal(config.statsd_tags.mode, TALLY_TAGS_KEEP);
  expect_ok(with_base("statsd_tags = allow\nstatsd_tags_allow = status, env ,region\n"), &config);
  assert_int_equal(config.statsd_tags.mode, TALLY_TAGS_ALLOW);
  assert_int_equal(config.statsd_tags.allow_count, 3);
  assert_true(tally_tags_policy_keeps(&config.statsd_tags, "env", 3));
  assert_true(tally_tags_policy_keeps(&config.statsd_tags, "region", 6));
  assert_false(tally_tags_policy_keeps(&config.statsd_tags, "host", 4));
  assert_false(tally_tags_policy_keeps(&config.statsd_tags, "en", 2));
  expect_error(with_base("statsd_tags = all\n"),
    "config: ingest.statsd_tags: 'all' is not one of keep, drop, allow");
  expect_error(with_base("statsd_tags = allow\n"),
    "config: ingest.statsd_tags_allow: required with statsd_tags = allow");
  expect_error(with_base("statsd_tags_allow = env\n"),
    "config: ingest.statsd_tags_allow: set, but ingest.statsd_tags is not allow");
  expect_error(with_base("statsd_tags = allow\nstatsd_tags_allow = env,,host\n"),
    "config: ingest.statsd_tags_allow: entry 2 is empty");
  expect_error(with_base("statsd_tags = allow\nstatsd_tags_allow = env,\n"),
    "config: ingest.statsd_tags_allow: entry 2 is empty");
  expect_error(with_base("statsd_tags = allow\nstatsd_tags_allow = env,host,env\n"),
    "config: ingest.statsd_tags_allow: entry 3 repeats entry 1");
  expect_error(with_base("statsd_tags = allow\nstatsd_tags_allow = a=b\n"),
    "config: ingest.statsd_tags_allow: entry 1: byte 2 is not allowed in a tag key "
    "(0x21..0x7e but : | @ # , = { })");
  expect_error(with_base("statsd_tags = allow\nstatsd_tags_allow = "
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n"),
    "config: ingest.statsd_tags_allow: entry 1 is longer than 64 bytes");
  char text[2048] = "statsd_tags = allow\nstatsd_tags_allow = ";
  for (unsigned i = 0; i <= TALLY_STATSD_TAGS_ALLOW_MAX; i++) {
    sprintf(text + strlen(text), "%sk%u", i == 0 ? "" : ",", i);
  }
  strcat(text, "\n");
  expect_error(with_base(text), "config: ingest.statsd_tags_allow: more than 32 tag keys");
}

static void test_addresses(void **unused) {
  (void)unused;
  expect_error("[eal]\nargs = x\n[node]\nipv4 = 10.0.0\n",
    "config: node.ipv4: '10.0.0' is not an IPv4 address (a.b.c.d)");
  expect_error("[node]\nipv4 = 10.0.0.256\n",
    "config: node.ipv4: '10.0.0.256' is not an IPv4 address (a.b.c.d)");
  expect_error("[node]\nipv4 = 0.0.0.0\n", "config: node.ipv4: '0.0.0.0' is not a unicast address");
  expect_error("[node]\nipv4 = 224.0.0.1\n",
    "config: node.ipv4: '224.0.0.1' is not a unicast address");
  expect_error(with_base("[control]\nhttp = localhost:80\n"),
    "config: control.http: 'localhost:80' is not a.b.c.d:port or off");
  expect_error(with_base("[control]\nhttp = 127.0.0.1\n"),
    "config: control.http: '127.0.0.1' is not a.b.c.d:port or off");
  expect_error(with_base("[control]\nhttp = 127.0.0.1:x\n"),
    "config: control.http: 'x' is not a decimal number");
  expect_error(with_base("[control]\nhttp = 127.0.0.1:65536\n"),
    "config: control.http: 65536 is above the maximum 65535");
  expect_error(with_base("[control]\nhttp = 127.0.0.1:0\n"),
    "config: control.http: port 0: write 'off' to disable HTTP");
}

/* [graphite]: off without it, on with it; every bad value one line naming the key. */
static void test_graphite(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(with_base(""), &config);
  assert_false(config.graphite.enabled);
  expect_ok(with_base("[graphite]\naddress = 127.0.0.1:2003\n"), &config);
  assert_true(config.graphite.enabled);
  assert_int_equal(config.graphite.ipv4, 0x7f000001u);
  assert_int_equal(config.graphite.port, 2003);
  assert_int_equal(config.graphite.interval_ms, TALLY_GRAPHITE_INTERVAL_MS_DEFAULT);
  assert_int_equal(config.graphite.buffer_bytes, TALLY_GRAPHITE_BUFFER_BYTES_DEFAULT);
  assert_string_equal(config.graphite.prefix, "");
  expect_ok(with_base("[graphite]\nprefix = a-1.B_2\naddress = 10.0.0.9:1\ninterval_ms = 1000\n"
    "buffer_bytes = 65536\n"), &config);
  assert_string_equal(config.graphite.prefix, "a-1.B_2");
  expect_error(with_base("[graphite]\n"), "config: graphite.address: required");
  expect_error(with_base("[graphite]\nprefix = x\n"), "config: graphite.address: required");
  expect_error(with_base("[graphite]\naddress = carbon:2003\n"), "config: graphite.address: "
    "'carbon:2003' is not a.b.c.d:port (an IPv4 address, no host name)");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:0\n"),
    "config: graphite.address: port 0: the port must be 1..65535");
  expect_error(with_base("[graphite]\naddress = 0.0.0.0:2003\n"),
    "config: graphite.address: '0.0.0.0:2003' is not a unicast address");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\ninterval_ms = 999\n"),
    "config: graphite.interval_ms: 999 is below the minimum 1000");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\nbuffer_bytes = 268435457\n"),
    "config: graphite.buffer_bytes: 268435457 is above the maximum 268435456");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\nprefix = a..b\n"),
    "config: graphite.prefix: byte 2: dot-separated components of A-Z a-z 0-9 _ - only, none empty");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\nprefix = a b\n"),
    "config: graphite.prefix: byte 2: dot-separated components of A-Z a-z 0-9 _ - only, none empty");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\nprefix = .a\n"),
    "config: graphite.prefix: byte 1: dot-separated components of A-Z a-z 0-9 _ - only, none empty");
  expect_error(with_base("[graphite]\naddress = 127.0.0.1:2003\nprefix = "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"),
    "config: graphite.prefix: longer than 64 bytes");
}

static void test_key(void **unused) {
  (void)unused;
  const char *base_no_key =
    "[eal]\nargs = x\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /p\n[ingest]\n";
  char text[512];
  snprintf(text, sizeof(text), "%skey = %.63s\n", base_no_key, KEY_HEX);
  expect_error(text, "config: ingest.key: must be 64 hex digits, got 63");
  snprintf(text, sizeof(text), "%skey = %s0\n", base_no_key, KEY_HEX);
  expect_error(text, "config: ingest.key: must be 64 hex digits, got more than 64");
  snprintf(text, sizeof(text), "%skey = 0011g%s\n", base_no_key, &KEY_HEX[5]);
  expect_error(text, "config: ingest.key: character 5 is not a hex digit");
  snprintf(text, sizeof(text), "%skey = %064d\n", base_no_key, 0);
  expect_error(text, "config: ingest.key: must not be all zeros");
  /* The key is never echoed in a message. */
  struct tally_config config;
  char error[ERROR_SIZE];
  snprintf(text, sizeof(text), "%skey = %.62szz\n", base_no_key, KEY_HEX);
  assert_int_equal(parse_text(text, &config, error), -1);
  assert_null(strstr(error, "00112233"));
}

static void test_required(void **unused) {
  (void)unused;
  expect_error("[node]\nipv4 = 10.0.0.1\n[store]\npath = /p\n[ingest]\nbinary_port = 0\n",
    "config: eal.args: required");
  expect_error("[eal]\nargs = x\n[store]\npath = /p\n[ingest]\nbinary_port = 0\n",
    "config: node.ipv4: required");
  expect_error("[eal]\nargs = x\n[node]\nipv4 = 10.0.0.1\n[ingest]\nbinary_port = 0\n",
    "config: store.path: required");
  expect_error("[eal]\nargs = x\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /p\n",
    "config: ingest.key: required");
  expect_error("", "config: eal.args: required");
  struct tally_config config;
  expect_ok("[eal]\nargs = x\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /p\n"
            "[ingest]\nbinary_port = 0\n",
    &config);
  assert_false(config.key_set);
}

static void test_ports_and_persist(void **unused) {
  (void)unused;
  expect_error(with_base("[ingest]\nstatsd_port = 9000\nbinary_port = 9000\n"),
    "config: ingest.binary_port: 9000 is the same as ingest.statsd_port");
  expect_error(with_base("[ingest]\nbinary_port = 8125\n"),
    "config: ingest.binary_port: 8125 is the same as ingest.statsd_port");
  struct tally_config config;
  expect_ok(with_base("[ingest]\nstatsd_port = 0\nbinary_port = 0\n"), &config);
  assert_int_equal(config.statsd_port, 0);
  assert_int_equal(config.binary_port, 0);
  expect_error(with_base("[store]\npersist = fast\n"),
    "config: store.persist: 'fast' is not one of auto, group_commit, per_burst, log");
  expect_error(with_base("[store]\npersist = AUTO\n"),
    "config: store.persist: 'AUTO' is not one of auto, group_commit, per_burst, log");
}

/* store.persist = log and the log's keys: each bad value one line naming its key. */
static void test_log_mode(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(with_base("[store]\npersist = log\nlog_dir = /var/lib/tally/log\n"), &config);
  assert_int_equal(config.persist_mode, TALLY_PERSIST_LOG);
  assert_string_equal(config.log_dir, "/var/lib/tally/log");
  assert_int_equal(config.log_group_bytes, TALLY_WAL_GROUP_SIZE_DEFAULT);
  assert_int_equal(config.log_segment_bytes, TALLY_WAL_SEGMENT_SIZE_DEFAULT);
  expect_ok(with_base("[store]\npersist = log\nlog_dir = /l\nlog_group_bytes = 65536\n"
    "log_segment_bytes = 65536\n"), &config);
  assert_int_equal(config.log_group_bytes, 65536);
  assert_int_equal(config.log_segment_bytes, 65536);
  assert_int_equal(config.checkpoint_interval_ms, TALLY_CHECKPOINT_INTERVAL_MS_DEFAULT);
  expect_ok(with_base("[store]\ncheckpoint_interval_ms = 0\n"), &config);
  assert_int_equal(config.checkpoint_interval_ms, 0);
  expect_ok(with_base("[store]\ncheckpoint_interval_ms = 100\n"), &config);
  assert_int_equal(config.checkpoint_interval_ms, 100);
  expect_error(with_base("[store]\ncheckpoint_interval_ms = 99\n"),
    "config: store.checkpoint_interval_ms: 99 is below 100 (0 turns checkpoints off)");
  expect_error(with_base("[store]\ncheckpoint_interval_ms = 86400001\n"),
    "config: store.checkpoint_interval_ms: 86400001 is above the maximum 86400000");
  expect_error(with_base("[store]\npersist = log\n"),
    "config: store.log_dir: required with store.persist = log");
  expect_error(with_base("[store]\nlog_group_bytes = 100\n"),
    "config: store.log_group_bytes: 100 is below the minimum 16384");
  expect_error(with_base("[store]\nlog_segment_bytes = 2147483648\n"),
    "config: store.log_segment_bytes: 2147483648 is above the maximum 1073741824");
  expect_error(with_base("[store]\nlog_segment_bytes = 65540\n"),
    "config: store.log_segment_bytes: 65540 is not a multiple of 8");
  expect_error(with_base("[store]\nlog_group_bytes = 131072\nlog_segment_bytes = 65536\n"),
    "config: store.log_group_bytes: 131072 is larger than store.log_segment_bytes (65536)");
  /* Log mode on a cluster node: accepted, with checkpoints (one is taken at every start). */
  static struct tally_config cluster_log;
  expect_ok(with_base("[store]\npersist = log\nlog_dir = /l\n[cluster]\nnode_id = 1\n"
    "nodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n"), &cluster_log);
  assert_int_equal(cluster_log.persist_mode, TALLY_PERSIST_LOG);
  assert_true(cluster_log.cluster.enabled);
  expect_error(with_base("[store]\npersist = log\nlog_dir = /l\ncheckpoint_interval_ms = 0\n"
    "[cluster]\nnode_id = 1\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n"),
    "config: store.checkpoint_interval_ms: 0 (no checkpoints) is refused with store.persist = "
    "log on a cluster node");
}

static void test_syntax(void **unused) {
  (void)unused;
  expect_error(with_base("[store]\nno equals here\n"), "config: line 10: expected 'key = value'");
  expect_error(with_base("[store\npath = /p\n"),
    "config: line 9: section header without a closing ']'");
  /* inih reads an indented line after a key as a continuation, even a header. */
  expect_error(with_base("  [store]\n"),
    "config: ingest.key: an indented line continues the previous value, and only eal.args and "
    "cluster.nodes may span lines");
  /* A syntax error before a bad value is the one reported... */
  expect_error(with_base("junk\n[store]\ncounters_max = 5\n"),
    "config: line 9: expected 'key = value'");
  /* ...and a bad value before a syntax error is. */
  expect_error(with_base("[store]\ncounters_max = 5\njunk\n"),
    "config: store.counters_max: 5 is below the minimum 16");
  char text[1024];
  char long_value[400];
  memset(long_value, 'a', sizeof(long_value) - 1);
  long_value[sizeof(long_value) - 1] = '\0';
  snprintf(text, sizeof(text), "[store]\npath = /%s\n", long_value);
  char message[128];
  snprintf(message, sizeof(message), "config: line 2: longer than %d bytes", INI_MAX_LINE - 2);
  expect_error(text, message);
  static const char with_nul[] = "[store]\npath = /a\0b\n";
  struct tally_config config;
  char error[ERROR_SIZE];
  assert_int_equal(tally_config_parse(with_nul, sizeof(with_nul) - 1, &config, error, ERROR_SIZE),
    -1);
  assert_string_equal(error, "config: line 2: contains a NUL byte");
  expect_error(with_base("[control]\nsocket = /a\tb\n"),
    "config: control.socket: contains a control character");
  expect_error(with_base("[eal]\nargs = x\n"), "config: eal.args: duplicate (first set on line 2)");
}

static void test_continuation(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok("[eal]\nargs = -l 0\n  --in-memory ; a comment\n\t--no-pci\n  ; comment line\n"
            "[node]\nipv4 = 10.0.0.1\n[store]\npath = /p\n[ingest]\nbinary_port = 0\n",
    &config);
  assert_string_equal(config.eal_args, "-l 0 --in-memory --no-pci");
  expect_error(with_base("[store]\ncounters_max = 32\n  64\n"),
    "config: store.counters_max: an indented line continues the previous value, and only "
    "eal.args and cluster.nodes may span lines");
  /* eal.args may span lines, but not past its limit. */
  char text[4096] = "[eal]\nargs = x\n";
  char piece[160];
  memset(piece, 'a', sizeof(piece) - 1);
  piece[sizeof(piece) - 1] = '\0';
  for (int i = 0; i < 7; i++) {
    strcat(text, "  ");
    strcat(text, piece);
    strcat(text, "\n");
  }
  expect_error(text, "config: eal.args: longer than 1023 bytes");
  /* An indented key after a section header is an ordinary key. */
  expect_ok("[eal]\n  args = x\n[node]\n  ipv4 = 10.0.0.1\n[store]\npath = /p\n"
            "[ingest]\nbinary_port = 0\n",
    &config);
  assert_string_equal(config.eal_args, "x");
}

static void test_sizes_and_buffers(void **unused) {
  (void)unused;
  struct tally_config config;
  char error[ERROR_SIZE];
  /* Oversize text. */
  size_t big_size = 64u * 1024u + 1u;
  char *big = malloc(big_size);
  assert_non_null(big);
  memset(big, '\n', big_size);
  assert_int_equal(tally_config_parse(big, big_size, &config, error, ERROR_SIZE), -1);
  assert_string_equal(error, "config: config too large: 65537 bytes, at most 65536");
  assert_int_equal(tally_config_parse(big, big_size - 1u, &config, error, ERROR_SIZE), -1);
  assert_string_equal(error, "config: eal.args: required");
  free(big);
  /* The text need not be NUL-terminated: only text_size bytes are read. */
  const char *text = BASE "[store]\ncounters_max = 32JUNK";
  size_t size = strlen(text) - 4u;
  char *exact = malloc(size);
  assert_non_null(exact);
  memcpy(exact, text, size);
  assert_int_equal(tally_config_parse(exact, size, &config, error, ERROR_SIZE), 0);
  assert_int_equal(config.counters_max, 32);
  free(exact);
  /* One trailing NUL (sizeof a literal) is accepted. */
  static const char literal[] = BASE;
  assert_int_equal(tally_config_parse(literal, sizeof(literal), &config, error, ERROR_SIZE), 0);
  /* CRLF line ends and a UTF-8 byte order mark. */
  expect_ok("\xEF\xBB\xBF[eal]\r\nargs = x\r\n[node]\r\nipv4 = 10.0.0.1\r\n[store]\r\n"
            "path = /p\r\n[ingest]\r\nbinary_port = 0\r\n",
    &config);
  assert_string_equal(config.store_path, "/p");
  /* Socket path beyond sun_path. */
  char socket_text[512];
  snprintf(socket_text, sizeof(socket_text), "[control]\nsocket = /%0108d\n", 0);
  expect_error(socket_text, "config: control.socket: longer than 107 bytes");
  /* A tiny error buffer is cut, never overrun. */
  char small[8];
  assert_int_equal(tally_config_parse("x", 1, &config, small, sizeof(small)), -1);
  assert_int_equal(strlen(small), sizeof(small) - 1u);
  /* On failure the caller's struct is left alone. */
  memset(&config, 0xab, sizeof(config));
  assert_int_equal(parse_text(with_base("[store]\ncounters_max = 1\n"), &config, error), -1);
  const unsigned char *bytes = (const unsigned char *)&config;
  for (size_t i = 0; i < sizeof(config); i++) assert_int_equal(bytes[i], 0xab);
}

static void test_eal_argv(void **unused) {
  (void)unused;
  struct tally_config config;
  tally_config_defaults(&config);
  char storage[TALLY_EAL_ARGS_LEN_MAX];
  char *argv[TALLY_EAL_ARGC_MAX + 1];
  snprintf(config.eal_args, sizeof(config.eal_args), "%s", "-l 0-1  --in-memory\t--no-pci ");
  assert_int_equal(tally_config_eal_argv(&config, "tallyd", storage, argv), 5);
  assert_string_equal(argv[0], "tallyd");
  assert_string_equal(argv[1], "-l");
  assert_string_equal(argv[2], "0-1");
  assert_string_equal(argv[3], "--in-memory");
  assert_string_equal(argv[4], "--no-pci");
  assert_null(argv[5]);
  assert_string_equal(config.eal_args, "-l 0-1  --in-memory\t--no-pci ");

  config.eal_args[0] = '\0';
  assert_int_equal(tally_config_eal_argv(&config, "p", storage, argv), 1);
  assert_null(argv[1]);
  snprintf(config.eal_args, sizeof(config.eal_args), "%s", " \t ");
  assert_int_equal(tally_config_eal_argv(&config, "p", storage, argv), 1);

  /* 63 arguments + the program fit; 64 do not. */
  char args[TALLY_EAL_ARGS_LEN_MAX] = "";
  for (unsigned i = 0; i < TALLY_EAL_ARGC_MAX - 1u; i++) strcat(args, " a");
  snprintf(config.eal_args, sizeof(config.eal_args), "%s", args);
  assert_int_equal(tally_config_eal_argv(&config, "p", storage, argv), (int)TALLY_EAL_ARGC_MAX);
  assert_null(argv[TALLY_EAL_ARGC_MAX]);
  strcat(args, " b");
  snprintf(config.eal_args, sizeof(config.eal_args), "%s", args);
  assert_int_equal(tally_config_eal_argv(&config, "p", storage, argv), -1);

  /* The parser refuses the same. */
  char text[TALLY_EAL_ARGS_LEN_MAX + 64];
  snprintf(text, sizeof(text), "[eal]\nargs =%s\n", args);
  expect_error(text, "config: eal.args: 65 arguments, at most 64 with the program name");
}

/* ---- [cluster] ------------------------------------------------------------ */

/* BASE, then "[cluster]" on line 9, then body from line 10. */
static const char *with_cluster(const char *body) {
  int written = snprintf(text_buffer, sizeof(text_buffer), "%s[cluster]\n%s", BASE, body);
  assert_true(written > 0);
  assert_true((size_t)written < sizeof(text_buffer));
  return text_buffer;
}

/* The required keys, and extra after them. */
static const char *with_cluster_required(const char *extra) {
  static char body[4096];
  snprintf(body, sizeof(body), "node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n%s",
    extra);
  return with_cluster(body);
}

static void test_cluster_full(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(with_cluster("node_id = 2\n"
                         "nodes = " NODES3 "\n"
                         "write_quorum = 3\n"
                         "key = " CLUSTER_KEY_HEX "\n"
                         "heartbeat_interval_ms = 250\n"
                         "replication_interval_ms = 20\n"
                         "suspect_phi = 6.5\n"
                         "down_phi = 12 ; a comment\n"),
    &config);
  const struct tally_cluster_config *cluster = &config.cluster;
  assert_true(cluster->enabled);
  assert_int_equal(cluster->node_id, 2);
  assert_int_equal(cluster->node_count, 3);
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(cluster->nodes[i].id, i + 1u);
    assert_int_equal(cluster->nodes[i].ipv4, 0x0a4e0001u + i);
    assert_int_equal(cluster->nodes[i].port, 7100);
  }
  assert_int_equal(cluster->write_quorum, 3);
  assert_int_equal(cluster->key[0], 0xff);
  assert_int_equal(cluster->key[1], 0xee);
  assert_int_equal(cluster->key[31], 0x00);
  assert_int_equal(config.key[0], 0x00); /* ingest.key is its own */
  assert_int_equal(cluster->heartbeat_interval_ms, 250);
  assert_int_equal(cluster->replication_interval_ms, 20);
  assert_true(cluster->suspect_phi == 6.5);
  assert_true(cluster->down_phi == 12.0);

  /* Only the required keys: every other one at its default, W = min(2, n). */
  expect_ok(with_cluster_required(""), &config);
  assert_true(cluster->enabled);
  assert_int_equal(cluster->write_quorum, 2);
  assert_int_equal(cluster->heartbeat_interval_ms, 100);
  assert_int_equal(cluster->replication_interval_ms, 5);
  assert_true(cluster->suspect_phi == 5.0);
  assert_true(cluster->down_phi == 8.0);
  expect_ok(with_cluster("node_id = 7\nnodes = 7@10.78.0.7:7100\nkey = " CLUSTER_KEY_HEX "\n"),
    &config);
  assert_int_equal(cluster->node_count, 1);
  assert_int_equal(cluster->write_quorum, 1);
  expect_ok(with_cluster("nodes = 5@10.0.0.1:1 9@10.0.0.1:2\nnode_id = 9\nkey = " CLUSTER_KEY_HEX
                         "\n"),
    &config);
  assert_int_equal(cluster->node_count, 2);
  assert_int_equal(cluster->write_quorum, 2);
  assert_int_equal(cluster->nodes[0].id, 5);
  assert_int_equal(cluster->nodes[1].port, 2); /* same address, another port */
}

static void test_cluster_bounds(void **unused) {
  (void)unused;
  struct tally_config config;
  const struct tally_cluster_config *cluster = &config.cluster;
  /* Bounds, tabs between entries, the section split in two, before [eal]. */
  const char *bounds = "[cluster]\nnode_id = 65535\n"
                       "nodes = 65535@255.255.255.254:65535\t1@1.0.0.0:1 2@10.0.0.2:7100 "
                       "3@10.0.0.3:7100 4@10.0.0.4:7100 5@10.0.0.5:7100 6@10.0.0.6:7100 "
                       "7@10.0.0.7:7100\n"
                       "write_quorum = 8\nheartbeat_interval_ms = 10\nreplication_interval_ms = 1\n"
                       "suspect_phi = .5\ndown_phi = 100\n" BASE
                       "[cluster]\nkey = " CLUSTER_KEY_HEX "\n";
  expect_ok(bounds, &config);
  assert_int_equal(cluster->node_count, 8);
  assert_int_equal(cluster->nodes[0].id, 65535);
  assert_int_equal(cluster->nodes[0].ipv4, 0xfffffffeu);
  assert_int_equal(cluster->nodes[0].port, 65535);
  assert_int_equal(cluster->nodes[1].ipv4, 0x01000000u);
  assert_int_equal(cluster->write_quorum, 8);
  assert_int_equal(cluster->heartbeat_interval_ms, 10);
  assert_int_equal(cluster->replication_interval_ms, 1);
  assert_true(cluster->suspect_phi == 0.5);
  assert_true(cluster->down_phi == 100.0);
  expect_ok(with_cluster_required("heartbeat_interval_ms = 10000\nreplication_interval_ms = 1000\n"
                                  "suspect_phi = 99.99\ndown_phi = 100.\n"),
    &config);
  assert_int_equal(cluster->heartbeat_interval_ms, 10000);
  assert_int_equal(cluster->replication_interval_ms, 1000);
  assert_true(cluster->suspect_phi == 99.99);

  /* suspect < down is checked after the file: either may come first, or use the default. */
  expect_ok(with_cluster_required("suspect_phi = 9\ndown_phi = 10\n"), &config);
  assert_true(cluster->suspect_phi == 9.0);
  expect_ok(with_cluster_required("down_phi = 3\nsuspect_phi = 2\n"), &config);
  assert_true(cluster->down_phi == 3.0);
}

static void test_cluster_required(void **unused) {
  (void)unused;
  /* An empty section is present: the cluster is on and its keys are required. */
  expect_error(with_cluster(""), "config: cluster.node_id: required");
  expect_error(with_cluster("write_quorum = 1\n"), "config: cluster.node_id: required");
  expect_error(with_cluster("node_id = 1\n"), "config: cluster.nodes: required");
  expect_error(with_cluster("node_id = 1\nnodes = 1@10.0.0.1:7100\n"),
    "config: cluster.key: required");
  expect_error(with_cluster("nodes = 1@10.0.0.1:7100\nkey = " CLUSTER_KEY_HEX "\n"),
    "config: cluster.node_id: required");
  expect_error(with_cluster("node_id = 1\nkey = " CLUSTER_KEY_HEX "\n"),
    "config: cluster.nodes: required");
  /* Even an empty section at the very start of the file (after a byte order mark). */
  expect_error("\xEF\xBB\xBF[cluster]\n" BASE, "config: cluster.node_id: required");
  /* The other required keys come first. */
  expect_error("[cluster]\n", "config: eal.args: required");
}

static void test_cluster_node_id_and_quorum(void **unused) {
  (void)unused;
  expect_error(with_cluster_required("node_id = 3\n"),
    "config: cluster.node_id: duplicate (first set on line 10)");
  expect_error(with_cluster("node_id = 0\n"), "config: cluster.node_id: 0 is below the minimum 1");
  expect_error(with_cluster("node_id = 65536\n"),
    "config: cluster.node_id: 65536 is above the maximum 65535");
  expect_error(with_cluster("node_id = one\n"),
    "config: cluster.node_id: 'one' is not a decimal number");
  expect_error(with_cluster("node_id =\n"), "config: cluster.node_id: empty value");
  expect_error(with_cluster("node_id = 4\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n"),
    "config: cluster.node_id: 4 is not in cluster.nodes");
  /* node_id may come before or after nodes. */
  expect_error(with_cluster("nodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\nnode_id = 65535\n"),
    "config: cluster.node_id: 65535 is not in cluster.nodes");
  expect_error(with_cluster_required("write_quorum = 0\n"),
    "config: cluster.write_quorum: 0 is below the minimum 1");
  expect_error(with_cluster_required("write_quorum = 9\n"),
    "config: cluster.write_quorum: 9 is above the maximum 8");
  expect_error(with_cluster_required("write_quorum = 4\n"),
    "config: cluster.write_quorum: 4 is above the maximum 3 (the number of cluster.nodes)");
  expect_error(with_cluster("write_quorum = 2\nnode_id = 1\nnodes = 1@10.0.0.1:7100\n"
                            "key = " CLUSTER_KEY_HEX "\n"),
    "config: cluster.write_quorum: 2 is above the maximum 1 (the number of cluster.nodes)");
  expect_error(with_cluster_required("write_quorum = 2x\n"),
    "config: cluster.write_quorum: '2x' is not a decimal number");
  expect_error(with_cluster_required("bogus = 1\n"), "config: cluster.bogus: unknown key");
}

static void test_cluster_nodes_errors(void **unused) {
  (void)unused;
  static const struct {
    const char *nodes;
    const char *message;
  } cases[] = {
    {"1@10.0.0.1", "'1@10.0.0.1' is not id@a.b.c.d:port"},
    {"10.0.0.1:7100", "'10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"1@10.0.0.1:7100,2@10.0.0.2:7100", "'1@10.0.0.1:7100,2@10.0.0.2:7100' is not id@a.b.c.d:port"},
    {"@10.0.0.1:7100", "'@10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"x@10.0.0.1:7100", "'x@10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"-1@10.0.0.1:7100", "'-1@10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"+1@10.0.0.1:7100", "'+1@10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"1@10.0.0.1:", "'1@10.0.0.1:' is not id@a.b.c.d:port"},
    {"1@10.0.0.1:0x1c", "'1@10.0.0.1:0x1c' is not id@a.b.c.d:port"},
    {"1@10.0.0.1:7100:1", "'1@10.0.0.1:7100:1' is not id@a.b.c.d:port"},
    {"1@:7100", "'1@:7100' is not id@a.b.c.d:port"},
    {"1@host:7100", "'1@host:7100' is not id@a.b.c.d:port"},
    {"1@10.0.0:7100", "'1@10.0.0:7100' is not id@a.b.c.d:port"},
    {"1@10.0.0.256:7100", "'1@10.0.0.256:7100' is not id@a.b.c.d:port"},
    {"1:7100@10.0.0.1", "'1:7100@10.0.0.1' is not id@a.b.c.d:port"},
    {"1@2@10.0.0.1:7100", "'1@2@10.0.0.1:7100' is not id@a.b.c.d:port"},
    {"1@[::1]:7100", "'1@[::1]:7100' is not id@a.b.c.d:port"},
    {"1@10.0.0.1:00000000000000000000000000000000000000000007100",
      "'1@10.0.0.1:0000000000000000000000000000000000000...' is not id@a.b.c.d:port"},
    {"0@10.0.0.1:7100", "'0@10.0.0.1:7100': the id must be 1..65535"},
    {"65536@10.0.0.1:7100", "'65536@10.0.0.1:7100': the id must be 1..65535"},
    {"99999999999999999999@1.2.3.4:1", "'99999999999999999999@1.2.3.4:1': the id must be 1..65535"},
    {"1@10.0.0.1:0", "'1@10.0.0.1:0': the port must be 1..65535"},
    {"1@10.0.0.1:65536", "'1@10.0.0.1:65536': the port must be 1..65535"},
    {"1@0.0.0.0:7100", "'1@0.0.0.0:7100': not a unicast address"},
    {"1@255.255.255.255:7100", "'1@255.255.255.255:7100': not a unicast address"},
    {"1@224.0.0.1:7100", "'1@224.0.0.1:7100': not a unicast address"},
    {"1@239.255.255.255:7100", "'1@239.255.255.255:7100': not a unicast address"},
    {"1@10.0.0.1:7100 2@10.0.0.2:7100 1@10.0.0.3:7100", "id 1 is listed twice"},
    {"1@10.0.0.1:7100 2@10.0.0.1:7100", "10.0.0.1:7100 is listed twice"},
    {"1@10.0.0.1:1 2@10.0.0.2:2 3@10.0.0.3:3 4@10.0.0.4:4 5@10.0.0.5:5 6@10.0.0.6:6 "
     "7@10.0.0.7:7 8@10.0.0.8:8 9@10.0.0.9:9", "more than 8 nodes"},
  };
  char body[512];
  char message[256];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(body, sizeof(body), "node_id = 1\nnodes = %s\nkey = " CLUSTER_KEY_HEX "\n",
      cases[i].nodes);
    snprintf(message, sizeof(message), "config: cluster.nodes: %s", cases[i].message);
    expect_error(with_cluster(body), message);
  }
  expect_error(with_cluster("nodes =\n"), "config: cluster.nodes: empty value");
  expect_error(with_cluster("nodes = ; only a comment\n"), "config: cluster.nodes: empty value");
  expect_error(with_cluster_required("nodes = 9@10.0.0.9:7100\n"),
    "config: cluster.nodes: duplicate (first set on line 11)");
}

static void test_cluster_key_and_numbers(void **unused) {
  (void)unused;
  char body[512];
  snprintf(body, sizeof(body), "key = %.63s\n", CLUSTER_KEY_HEX);
  expect_error(with_cluster(body), "config: cluster.key: must be 64 hex digits, got 63");
  snprintf(body, sizeof(body), "key = %s0\n", CLUSTER_KEY_HEX);
  expect_error(with_cluster(body), "config: cluster.key: must be 64 hex digits, got more than 64");
  snprintf(body, sizeof(body), "key = ffeeg%s\n", &CLUSTER_KEY_HEX[5]);
  expect_error(with_cluster(body), "config: cluster.key: character 5 is not a hex digit");
  snprintf(body, sizeof(body), "key = %064d\n", 0);
  expect_error(with_cluster(body), "config: cluster.key: must not be all zeros");
  /* The key is never echoed in a message. */
  struct tally_config config;
  char error[ERROR_SIZE];
  snprintf(body, sizeof(body), "key = %.62szz\n", CLUSTER_KEY_HEX);
  assert_int_equal(parse_text(with_cluster(body), &config, error), -1);
  assert_null(strstr(error, "ffeedd"));

  expect_error(with_cluster_required("heartbeat_interval_ms = 9\n"),
    "config: cluster.heartbeat_interval_ms: 9 is below the minimum 10");
  expect_error(with_cluster_required("heartbeat_interval_ms = 10001\n"),
    "config: cluster.heartbeat_interval_ms: 10001 is above the maximum 10000");
  expect_error(with_cluster_required("heartbeat_interval_ms = 1s\n"),
    "config: cluster.heartbeat_interval_ms: '1s' is not a decimal number");
  expect_error(with_cluster_required("replication_interval_ms = 0\n"),
    "config: cluster.replication_interval_ms: 0 is below the minimum 1");
  expect_error(with_cluster_required("replication_interval_ms = 1001\n"),
    "config: cluster.replication_interval_ms: 1001 is above the maximum 1000");
}

static void test_cluster_phi(void **unused) {
  (void)unused;
  static const char *const not_numbers[] = {"nan", "NAN", "inf", "infinity", "-1", "+5", "5e1",
    "1E2", "0x10", "0x1p3", "5.5.5", ".", "5,5", "5 x", "five", "5.0f"};
  char body[256];
  char message[256];
  for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
    snprintf(body, sizeof(body), "suspect_phi = %s\n", not_numbers[i]);
    snprintf(message, sizeof(message), "config: cluster.suspect_phi: '%s' is not a decimal number",
      not_numbers[i]);
    expect_error(with_cluster_required(body), message);
    snprintf(body, sizeof(body), "down_phi = %s\n", not_numbers[i]);
    snprintf(message, sizeof(message), "config: cluster.down_phi: '%s' is not a decimal number",
      not_numbers[i]);
    expect_error(with_cluster_required(body), message);
  }
  expect_error(with_cluster_required("suspect_phi =\n"), "config: cluster.suspect_phi: empty value");
  expect_error(with_cluster_required("suspect_phi = 0\n"),
    "config: cluster.suspect_phi: 0 is not above 0");
  expect_error(with_cluster_required("suspect_phi = 0.000\n"),
    "config: cluster.suspect_phi: 0.000 is not above 0");
  expect_error(with_cluster_required("down_phi = 100.001\n"),
    "config: cluster.down_phi: 100.001 is above the maximum 100");
  expect_error(with_cluster_required("suspect_phi = 101\n"),
    "config: cluster.suspect_phi: 101 is above the maximum 100");
  expect_error(with_cluster_required("down_phi = 1000000000000000000000000000000000000000\n"),
    "config: cluster.down_phi: 1000000000000000000000000000000000000000 is above the maximum 100");
  /* The order is checked once the file is read, on the key that was set. */
  expect_error(with_cluster_required("suspect_phi = 8\ndown_phi = 8\n"),
    "config: cluster.down_phi: 8 is not above cluster.suspect_phi 8");
  expect_error(with_cluster_required("down_phi = 6\nsuspect_phi = 7.5\n"),
    "config: cluster.down_phi: 6 is not above cluster.suspect_phi 7.5");
  expect_error(with_cluster_required("down_phi = 4\n"),
    "config: cluster.down_phi: 4 is not above cluster.suspect_phi 5");
  expect_error(with_cluster_required("suspect_phi = 9\n"),
    "config: cluster.suspect_phi: 9 is not below cluster.down_phi 8");
}

/* cluster.fault_*: test-only fault injection, off by default, reloadable. */
static void test_cluster_fault(void **unused) {
  (void)unused;
  struct tally_config config;
  const struct tally_cluster_config *cluster = &config.cluster;
  tally_config_defaults(&config);
  assert_int_equal(cluster->fault_delay_ms, 0);
  assert_int_equal(cluster->fault_jitter_ms, 0);
  assert_int_equal(cluster->fault_loss_permille, 0);
  expect_ok(with_cluster_required(""), &config);
  assert_int_equal(cluster->fault_delay_ms, 0);
  assert_int_equal(cluster->fault_jitter_ms, 0);
  assert_int_equal(cluster->fault_loss_permille, 0);
  expect_ok(with_cluster_required("fault_delay_ms = 50\nfault_jitter_ms = 20\n"
                                  "fault_loss_permille = 100\n"),
    &config);
  assert_int_equal(cluster->fault_delay_ms, 50);
  assert_int_equal(cluster->fault_jitter_ms, 20);
  assert_int_equal(cluster->fault_loss_permille, 100);
  expect_ok(with_cluster_required("fault_loss_permille = 1000\nfault_delay_ms = 10000\n"
                                  "fault_jitter_ms = 10000\n"),
    &config);
  assert_int_equal(cluster->fault_delay_ms, 10000);
  assert_int_equal(cluster->fault_jitter_ms, 10000);
  assert_int_equal(cluster->fault_loss_permille, 1000);
  expect_ok(with_cluster_required("fault_delay_ms = 0\nfault_jitter_ms = 0\n"
                                  "fault_loss_permille = 0\n"),
    &config);
  assert_int_equal(cluster->fault_delay_ms + cluster->fault_jitter_ms +
    cluster->fault_loss_permille, 0);

  expect_error(with_cluster_required("fault_delay_ms = 10001\n"),
    "config: cluster.fault_delay_ms: 10001 is above the maximum 10000");
  expect_error(with_cluster_required("fault_jitter_ms = 10001\n"),
    "config: cluster.fault_jitter_ms: 10001 is above the maximum 10000");
  expect_error(with_cluster_required("fault_loss_permille = 1001\n"),
    "config: cluster.fault_loss_permille: 1001 is above the maximum 1000");
  expect_error(with_cluster_required("fault_loss_permille = 10%\n"),
    "config: cluster.fault_loss_permille: '10%' is not a decimal number");
  expect_error(with_cluster_required("fault_delay_ms = -1\n"),
    "config: cluster.fault_delay_ms: '-1' is not a decimal number");
  expect_error(with_cluster_required("fault_jitter_ms =\n"),
    "config: cluster.fault_jitter_ms: empty value");
  expect_error(with_cluster_required("fault_delay_ms = 1\nfault_delay_ms = 2\n"),
    "config: cluster.fault_delay_ms: duplicate (first set on line 13)");
  /* Under [cluster] only: elsewhere unknown; alone, [cluster] still wants its keys. */
  expect_error(with_base("[store]\nfault_delay_ms = 1\n"),
    "config: store.fault_delay_ms: unknown key");
  expect_error(with_cluster("fault_loss_permille = 10\n"), "config: cluster.node_id: required");
}


/* ---- Runtime reload of [cluster] (config_reload.c) --------------------------- */

/* Parses a [cluster] body over BASE; fails the test if it does not parse. */
static struct tally_cluster_config cluster_of(const char *body) {
  struct tally_config config;
  expect_ok(with_cluster(body), &config);
  assert_true(config.cluster.enabled);
  return config.cluster;
}

static void expect_reload_refused(const struct tally_cluster_config *running,
  const struct tally_cluster_config *fresh, const char *message) {
  char error[ERROR_SIZE] = "";
  assert_int_equal(tally_config_cluster_reload_check(running, fresh, error, sizeof error), -1);
  if (strstr(error, message) == NULL) fail_msg("error '%s' lacks '%s'", error, message);
  assert_null(strchr(error, '\n')); /* one line */
}

static void test_cluster_reload_allowed(void **unused) {
  (void)unused;
  char error[ERROR_SIZE] = "";
  struct tally_cluster_config running =
    cluster_of("node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n");
  /* The same file, a node added, one removed, a peer moved, every other setting. */
  const char *allowed[] = {
    "node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n",
    "node_id = 2\nnodes = " NODES3 " 4@10.78.0.4:7100\nkey = " CLUSTER_KEY_HEX "\n",
    "node_id = 2\nnodes = 2@10.78.0.2:7100 3@10.78.0.3:7100\nkey = " CLUSTER_KEY_HEX "\n",
    "node_id = 2\nnodes = 2@10.78.0.2:7100\nkey = " CLUSTER_KEY_HEX "\n",
    "node_id = 2\nnodes = 1@10.78.0.9:7200 2@10.78.0.2:7100\nkey = " CLUSTER_KEY_HEX "\n",
    "node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\nwrite_quorum = 3\n"
      "heartbeat_interval_ms = 50\nreplication_interval_ms = 20\nsuspect_phi = 3\n"
      "down_phi = 12\n",
  };
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
    struct tally_cluster_config fresh = cluster_of(allowed[i]);
    if (tally_config_cluster_reload_check(&running, &fresh, error, sizeof error) != 0) {
      fail_msg("case %zu refused: %s", i, error);
    }
  }
}

static void test_cluster_reload_refused(void **unused) {
  (void)unused;
  struct tally_cluster_config running =
    cluster_of("node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n");
  struct tally_cluster_config fresh =
    cluster_of("node_id = 3\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX "\n");
  expect_reload_refused(&running, &fresh, "cluster.node_id: 3 in the file, 2 running");
  fresh = cluster_of("node_id = 2\nnodes = 1@10.78.0.1:7100 2@10.78.0.7:7100\nkey = "
    CLUSTER_KEY_HEX "\n");
  expect_reload_refused(&running, &fresh,
    "cluster.nodes: this node (2) is at 10.78.0.7:7100 in the file, 10.78.0.2:7100 running");
  fresh = cluster_of("node_id = 2\nnodes = 1@10.78.0.1:7100 2@10.78.0.2:7101\nkey = "
    CLUSTER_KEY_HEX "\n");
  expect_reload_refused(&running, &fresh, "its own replication address cannot change");
  fresh = cluster_of("node_id = 2\nnodes = " NODES3 "\nkey = "
    "0000000000000000000000000000000000000000000000000000000000000001\n");
  expect_reload_refused(&running, &fresh, "cluster.key: differs from the running key");
  struct tally_config single;
  expect_ok(BASE, &single);
  expect_reload_refused(&running, &single.cluster, "the [cluster] section is gone");
  /* A file that does not parse never gets this far: the loader names the key. */
  expect_error(with_cluster("node_id = 2\nnodes = " NODES3 "\nkey = " CLUSTER_KEY_HEX
    "\nwrite_quorum = 4\n"),
    "config: cluster.write_quorum: 4 is above the maximum 3 (the number of cluster.nodes)");
}

static void test_cluster_continuation(void **unused) {
  (void)unused;
  struct tally_config config;
  expect_ok(with_cluster("node_id = 4\n"
                         "nodes = 1@10.78.0.1:7100\n"
                         "  2@10.78.0.2:7100 3@10.78.0.3:7100 ; a comment\n"
                         "; a comment line\n"
                         "\t4@10.78.0.4:7100\n"
                         "  ; an indented comment line\n"
                         "key = " CLUSTER_KEY_HEX "\n"),
    &config);
  assert_int_equal(config.cluster.node_count, 4);
  for (uint32_t i = 0; i < 4; i++) {
    assert_int_equal(config.cluster.nodes[i].id, i + 1u);
    assert_int_equal(config.cluster.nodes[i].ipv4, 0x0a4e0001u + i);
  }
  assert_int_equal(config.cluster.node_id, 4);
  /* Eight entries of the longest form do not fit one 198-byte line; over two they do. */
  char body[1024] = "node_id = 65535\nnodes =";
  for (unsigned i = 0; i < TALLY_NODES_MAX; i++) {
    char entry[64];
    snprintf(entry, sizeof(entry), "%s%u@255.255.255.%u:65535", i == 4 ? "\n   " : " ",
      65535u - i, 200u + i);
    strcat(body, entry);
  }
  strcat(body, "\nkey = " CLUSTER_KEY_HEX "\n");
  expect_ok(with_cluster(body), &config);
  assert_int_equal(config.cluster.node_count, TALLY_NODES_MAX);
  assert_int_equal(config.cluster.nodes[7].id, 65528);
  assert_int_equal(config.cluster.nodes[7].ipv4, 0xffffffcfu);
  /* Every rule holds across lines. */
  expect_error(with_cluster("nodes = 1@10.0.0.1:1 2@10.0.0.2:2 3@10.0.0.3:3 4@10.0.0.4:4\n"
                            "  5@10.0.0.5:5 6@10.0.0.6:6 7@10.0.0.7:7 8@10.0.0.8:8\n"
                            "  9@10.0.0.9:9\n"),
    "config: cluster.nodes: more than 8 nodes");
  expect_error(with_cluster("nodes = 1@10.0.0.1:1\n  1@10.0.0.2:2\n"),
    "config: cluster.nodes: id 1 is listed twice");
  expect_error(with_cluster("nodes = 1@10.0.0.1:1\n  2@10.0.0.1:1\n"),
    "config: cluster.nodes: 10.0.0.1:1 is listed twice");
  expect_error(with_cluster("nodes = 1@10.0.0.1:1\n  2@10.0.0.2\n"),
    "config: cluster.nodes: '2@10.0.0.2' is not id@a.b.c.d:port");
  /* An indented header after nodes is a continuation, and not an entry. */
  expect_error(with_cluster("nodes = 1@10.0.0.1:1\n  [store]\n"),
    "config: cluster.nodes: '[store]' is not id@a.b.c.d:port");
  /* No other cluster key spans lines. */
  expect_error(with_cluster("node_id = 1\n  2\n"),
    "config: cluster.node_id: an indented line continues the previous value, and only "
    "eal.args and cluster.nodes may span lines");
  expect_error(with_cluster("key = " CLUSTER_KEY_HEX "\n  00\n"),
    "config: cluster.key: an indented line continues the previous value, and only "
    "eal.args and cluster.nodes may span lines");
}

/* Finds relative under the source root; false if no candidate has it. */
static bool source_path(const char *relative, char *path, size_t path_size) {
  char candidates[5][512];
  int count = 0;
  const char *env = getenv("TALLY_SOURCE_DIR");
  if (env != NULL) snprintf(candidates[count++], sizeof(candidates[0]), "%s", env);
  /* meson compiles from the build root, so a relative __FILE__ is relative to it. */
  const char *file = __FILE__;
  const char *suffix = "tests/unit/test_config.c";
  size_t file_length = strlen(file);
  size_t suffix_length = strlen(suffix);
  if (file_length >= suffix_length &&
      strcmp(file + file_length - suffix_length, suffix) == 0) {
    int root_length = (int)(file_length - suffix_length);
    snprintf(candidates[count++], sizeof(candidates[0]), "%.*s.", root_length, file);
    /* Run by hand from elsewhere: the binary is <build root>/tests/test_config. */
    char exe[256];
    ssize_t exe_length = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash = exe_length > 0 ? memrchr(exe, '/', (size_t)exe_length) : NULL;
    if (file[0] != '/' && slash != NULL) {
      *slash = '\0';
      snprintf(candidates[count++], sizeof(candidates[0]), "%s/../%.*s.", exe, root_length, file);
    }
  }
  snprintf(candidates[count++], sizeof(candidates[0]), "%s", "..");
  snprintf(candidates[count++], sizeof(candidates[0]), "%s", ".");
  for (int i = 0; i < count; i++) {
    int written = snprintf(path, path_size, "%s/%s", candidates[i], relative);
    if (written < 0 || (size_t)written >= path_size) continue;
    if (access(path, R_OK) == 0) return true;
  }
  print_error("cannot find %s: set TALLY_SOURCE_DIR\n", relative);
  return false;
}

/* ---- Issue 14: keys ---------------------------------------------------------- */

#define DEMO_KEY_HEX "74616c6c792064656d6f206b6579202d206e6f74206120736563726574212121"
#define TEMPLATE_CLUSTER_KEY_HEX "636c7573746572206b65793a205245504c414345206265666f72652075736521"

static void test_keys_refused(void **unused) {
  (void)unused;
  struct tally_config config;
  /* ingest.key is every producer's: as cluster.key, any producer could forge replication. */
  expect_error(with_cluster("node_id = 2\nnodes = " NODES3 "\nkey = " KEY_HEX "\n"),
    "config: cluster.key: the same as ingest.key (every producer holds that one): give the "
    "cluster its own key");
  expect_error(with_cluster("node_id = 2\nnodes = " NODES3 "\nkey = " KEY_HEX "\n"
                            "[node]\ndemo = true\n"),
    "config: cluster.key: the same as ingest.key (every producer holds that one): give the "
    "cluster its own key");
  /* The public keys: only in the demo. */
  const char *demo_base = "[eal]\nargs = -l 0\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /x\n"
    "[ingest]\nkey = " DEMO_KEY_HEX "\n";
  expect_error(demo_base, "config: ingest.key: the public demo or template key (only with "
    "node.demo = true): generate one with 'openssl rand -hex 32'");
  snprintf(text_buffer, sizeof(text_buffer), "%s[node]\ndemo = true\n", demo_base);
  expect_ok(text_buffer, &config);
  assert_true(config.demo);
  expect_error(with_cluster("node_id = 2\nnodes = " NODES3 "\nkey = " TEMPLATE_CLUSTER_KEY_HEX
    "\n"), "config: cluster.key: the public template key (only with node.demo = true): "
    "generate one with 'openssl rand -hex 32'");
  expect_error(with_base("[node]\ndemo = yes\n"), "config: node.demo: 'yes' is not true or false");
  /* control.admin_group */
  expect_ok(with_base("[control]\nadmin_group = tally-admin\n"), &config);
  assert_string_equal(config.admin_group, "tally-admin");
  expect_error(with_base("[control]\nadmin_group = -x\n"), "config: control.admin_group: not a "
    "group name ([A-Za-z0-9_.-], not starting with '-')");
  expect_error(with_base("[control]\nadmin_group = a b\n"), "config: control.admin_group: not a "
    "group name ([A-Za-z0-9_.-], not starting with '-')");
}

/* Writes text to a new file of mode; its path (static). */
static const char *write_config(const char *text, mode_t mode) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/tally-test-config.%d.ini", (int)getpid());
  unlink(path);
  FILE *file = fopen(path, "wb");
  assert_non_null(file);
  assert_int_equal(fwrite(text, 1, strlen(text), file), strlen(text));
  assert_int_equal(fclose(file), 0);
  assert_int_equal(chmod(path, mode), 0);
  return path;
}

/* A file holding a secret key is refused unless only its owner can access it. */
static void test_key_file_mode(void **unused) {
  (void)unused;
  struct tally_config config;
  char error[ERROR_SIZE];
  const char *path = write_config(BASE, 0644);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), -1);
  char want[ERROR_SIZE];
  snprintf(want, sizeof(want), "%s: holds keys but group or others have access (mode 0644): "
    "chmod 600 %s", path, path);
  assert_string_equal(error, want);
  path = write_config(BASE, 0640);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), -1);
  path = write_config(BASE, 0600);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), 0);
  /* No secret in it (statsd only; or the demo's public key): any mode. */
  path = write_config("[eal]\nargs = -l 0\n[node]\nipv4 = 10.0.0.1\n[store]\npath = /x\n"
    "[ingest]\nbinary_port = 0\n", 0644);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), 0);
  path = write_config("[eal]\nargs = -l 0\n[node]\nipv4 = 10.0.0.1\ndemo = true\n[store]\n"
    "path = /x\n[ingest]\nkey = " DEMO_KEY_HEX "\n", 0644);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), 0);
  unlink(path);
}

static void test_shipped_files(void **unused) {
  (void)unused;
  char path[1024];
  char error[ERROR_SIZE];
  struct tally_config config;
  assert_true(source_path("config/local.ini", path, sizeof(path)));
  int result = tally_config_load(path, &config, error, sizeof(error));
  if (result != 0) print_error("%s\n", error);
  assert_int_equal(result, 0);
  assert_string_equal(config.eal_args, "-l 0-1 --in-memory --no-pci --file-prefix tally-local "
                                       "--vdev=net_af_packet0,iface=tally0");
  assert_int_equal(config.ipv4, 0x0a4d0001u);
  assert_string_equal(config.store_path, "/dev/shm/tally/local.image");
  assert_int_equal(config.persist_mode, TALLY_PERSIST_LOG);
  assert_string_equal(config.log_dir, "/var/lib/tally/local.log");
  assert_int_equal(config.producers_max, 1024);
  assert_string_equal(config.socket_path, "/run/tally/local.sock");
  assert_memory_equal(config.key, "tally demo key - not a secret!!!", TALLY_KEY_SIZE);
  assert_true(config.demo);
  assert_false(config.cluster.enabled);

  /* The template as shipped: its placeholder key is refused outside the demo. */
  assert_true(source_path("config/tally.ini.template", path, sizeof(path)));
  result = tally_config_load(path, &config, error, sizeof(error));
  assert_int_equal(result, -1);
  assert_non_null(strstr(error, ": config: ingest.key: the public demo or template key (only "
    "with node.demo = true): generate one with 'openssl rand -hex 32'"));
  /* With demo = true it parses. */
  static char text[64 * 1024];
  FILE *file = fopen(path, "rb");
  assert_non_null(file);
  size_t size = fread(text, 1, sizeof(text) - 1, file);
  assert_int_equal(fclose(file), 0);
  text[size] = '\0';
  char *demo = strstr(text, "\ndemo = false\n");
  assert_non_null(demo);
  memcpy(demo, "\ndemo = true \n", strlen("\ndemo = true \n"));
  result = tally_config_parse(text, size, &config, error, sizeof(error));
  if (result != 0) print_error("%s\n", error);
  assert_int_equal(result, 0);
  assert_non_null(strstr(config.eal_args, "-l 0,2-5"));
  assert_non_null(strstr(config.eal_args, " -a 0000:3b:00.0 "));
  assert_string_equal(config.store_path, "/mnt/pmem0/tally/store.pmem");
  assert_int_equal(config.counters_max, 65536);
  assert_int_equal(config.producers_max, 4096);
  assert_int_equal(config.http_port, 9125);
  assert_false(config.cluster.enabled);
}

/* The template with its '#' lines (the [cluster] example) turned on. */
static void test_template_cluster(void **unused) {
  (void)unused;
  char path[1024];
  assert_true(source_path("config/tally.ini.template", path, sizeof(path)));
  FILE *file = fopen(path, "rb");
  assert_non_null(file);
  static char text[64 * 1024];
  size_t size = 0;
  char line[512];
  int uncommented = 0;
  while (fgets(line, sizeof(line), file) != NULL) {
    const char *from = line[0] == '#' ? line + 1 : line;
    if (line[0] == '#') uncommented++;
    if (strcmp(line, "demo = false\n") == 0) from = "demo = true\n"; /* placeholder keys */
    size_t length = strlen(from);
    assert_true(size + length < sizeof(text));
    memcpy(text + size, from, length);
    size += length;
  }
  assert_int_equal(fclose(file), 0);
  assert_int_equal(uncommented, 14);
  struct tally_config config;
  char error[ERROR_SIZE];
  int result = tally_config_parse(text, size, &config, error, sizeof(error));
  if (result != 0) print_error("%s\n", error);
  assert_int_equal(result, 0);
  const struct tally_cluster_config *cluster = &config.cluster;
  assert_true(config.graphite.enabled);
  assert_int_equal(config.graphite.ipv4, 0xc0000232u); /* 192.0.2.50 */
  assert_int_equal(config.graphite.port, 2003);
  assert_int_equal(config.graphite.interval_ms, 10000);
  assert_int_equal(config.graphite.buffer_bytes, 8388608);
  assert_string_equal(config.graphite.prefix, "tally.node1");
  assert_true(cluster->enabled);
  assert_int_equal(cluster->node_id, 1);
  assert_int_equal(cluster->node_count, 3);
  assert_int_equal(cluster->nodes[2].id, 3);
  assert_int_equal(cluster->nodes[2].ipv4, 0x0a4e0003u);
  assert_int_equal(cluster->nodes[2].port, 7100);
  assert_int_equal(cluster->write_quorum, 2);
  assert_memory_equal(cluster->key, "cluster key: REPLACE before use!", TALLY_KEY_SIZE);
  assert_int_equal(cluster->heartbeat_interval_ms, 100);
  assert_int_equal(cluster->replication_interval_ms, 5);
  assert_true(cluster->suspect_phi == 5.0);
  assert_true(cluster->down_phi == 8.0);
}

static void write_file(const char *path, const char *text, size_t size) {
  FILE *file = fopen(path, "wb");
  assert_non_null(file);
  assert_int_equal(fwrite(text, 1, size, file), size);
  assert_int_equal(fclose(file), 0);
}

static void test_load(void **unused) {
  (void)unused;
  char directory[] = "/tmp/tally_test_config_XXXXXX";
  assert_non_null(mkdtemp(directory));
  char path[256];
  char error[ERROR_SIZE];
  char expected[512];
  struct tally_config config;
  snprintf(path, sizeof(path), "%s/missing.ini", directory);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), -1);
  snprintf(expected, sizeof(expected), "%s: cannot read: No such file or directory", path);
  assert_string_equal(error, expected);
  assert_int_equal(tally_config_load(directory, &config, error, sizeof(error)), -1);
  snprintf(expected, sizeof(expected), "%s: cannot read: not a regular file", directory);
  assert_string_equal(error, expected);

  snprintf(path, sizeof(path), "%s/bad.ini", directory);
  const char *bad = with_base("[store]\ncounters_max = 5\n");
  write_file(path, bad, strlen(bad));
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), -1);
  snprintf(expected, sizeof(expected),
    "%s: config: store.counters_max: 5 is below the minimum 16", path);
  assert_string_equal(error, expected);
  assert_int_equal(unlink(path), 0);

  snprintf(path, sizeof(path), "%s/big.ini", directory);
  char *big = malloc(70000);
  assert_non_null(big);
  memset(big, '\n', 70000);
  write_file(path, big, 70000);
  free(big);
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), -1);
  snprintf(expected, sizeof(expected), "%s: config: config too large: more than 65536 bytes",
    path);
  assert_string_equal(error, expected);
  assert_int_equal(unlink(path), 0);

  snprintf(path, sizeof(path), "%s/good.ini", directory);
  write_file(path, BASE, strlen(BASE));
  assert_int_equal(chmod(path, 0600), 0); /* it holds a key (test_key_file_mode) */
  assert_int_equal(tally_config_load(path, &config, error, sizeof(error)), 0);
  assert_string_equal(error, "");
  assert_string_equal(config.store_path, "/tmp/x.pmem");
  assert_int_equal(unlink(path), 0);
  assert_int_equal(rmdir(directory), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_defaults),
    cmocka_unit_test(test_full_file),
    cmocka_unit_test(test_unknown_and_duplicate),
    cmocka_unit_test(test_numbers),
    cmocka_unit_test(test_statsd_tags),
    cmocka_unit_test(test_producer_keys),
    cmocka_unit_test(test_statsd_policy),
    cmocka_unit_test(test_addresses),
    cmocka_unit_test(test_graphite),
    cmocka_unit_test(test_key),
    cmocka_unit_test(test_required),
    cmocka_unit_test(test_ports_and_persist),
    cmocka_unit_test(test_log_mode),
    cmocka_unit_test(test_syntax),
    cmocka_unit_test(test_continuation),
    cmocka_unit_test(test_sizes_and_buffers),
    cmocka_unit_test(test_eal_argv),
    cmocka_unit_test(test_cluster_full),
    cmocka_unit_test(test_cluster_bounds),
    cmocka_unit_test(test_cluster_required),
    cmocka_unit_test(test_cluster_node_id_and_quorum),
    cmocka_unit_test(test_cluster_nodes_errors),
    cmocka_unit_test(test_cluster_key_and_numbers),
    cmocka_unit_test(test_cluster_phi),
    cmocka_unit_test(test_cluster_fault),
    cmocka_unit_test(test_cluster_continuation),
    cmocka_unit_test(test_shipped_files),
    cmocka_unit_test(test_keys_refused),
    cmocka_unit_test(test_key_file_mode),
    cmocka_unit_test(test_template_cluster),
    cmocka_unit_test(test_load),
    cmocka_unit_test(test_cluster_reload_allowed),
    cmocka_unit_test(test_cluster_reload_refused),
  };
  int count = (int)(sizeof(tests) / sizeof(tests[0]));
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%d passed, %d failed\n", count - failed, failed);
  return failed == 0 ? 0 : 1;
}
