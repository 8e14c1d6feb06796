/*
 * test_dataplane.c — drives real dataplane lcores by hand over a DPDK ring
 * port (net_ring via rte_eth_from_rings): frames go into the RX rings, one
 * poll runs, replies come out of the TX rings. Covers classification, ARP
 * and ICMP replies, statsd counting, datagrams over the size limit, binary
 * batches with acks held until durable, duplicates, bad MACs, steering
 * between two lcores, and the no-amplification rule on every reply.
 * Issue 14, L1: ARP and ICMP from a source that is not unicast (broadcast,
 * multicast, zero; a group MAC) are not answered, a header with IP options
 * is dropped (never echoed), and replies beyond the lcore's token bucket are
 * dropped and counted (the bucket's clock is the test's: no real time).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_udp.h>
#include <rte_arp.h>
#include <rte_icmp.h>

#include "tally/batch_wire.h"
#include "lcore.h"
#include "tally/name.h"
#include "port.h"
#include "shard.h"
#include "store_format.h"

#define LCORES 2u
#define OUR_IP RTE_IPV4(10, 77, 0, 1)
#define PEER_IP RTE_IPV4(10, 77, 0, 2)
#define COUNTERS 256u
#define PRODUCERS 64u

static struct rte_ring *rx_rings[LCORES];
static struct rte_ring *tx_rings[LCORES];
static struct tally_ports ports;
static struct tally_shard shards[LCORES];
static void *regions[LCORES];
static struct tally_lcore *lcores;
static struct tally_dp_config dp_config;
static struct tally_dp_config *dp_config_pointer = &dp_config;
static volatile bool quit_flag;
static const struct rte_ether_addr peer_mac = { { 0x02, 0, 0, 0, 0, 0x02 } };

static int setup_all(void **state)
{
  (void)state;
  char *argv[] = { "test_dataplane", "--no-huge", "-m", "256", "--no-shconf", "--no-pci", "-l",
    "0", "--log-level=*:error", NULL };
  if (rte_eal_init(9, argv) < 0) return -1;
  for (uint32_t i = 0; i < LCORES; i++) {
    char name[32];
    snprintf(name, sizeof name, "rx%u", i);
    rx_rings[i] = rte_ring_create(name, 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    snprintf(name, sizeof name, "tx%u", i);
    tx_rings[i] = rte_ring_create(name, 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (rx_rings[i] == NULL || tx_rings[i] == NULL) return -1;
  }
  if (rte_eth_from_rings("net_ring_test", rx_rings, LCORES, tx_rings, LCORES, 0) < 0) return -1;
  char error[256];
  if (tally_ports_start(&ports, LCORES, 4 * TALLY_MBUFS_MIN, error, sizeof error) != 0) {
    fprintf(stderr, "%s\n", error);
    return -1;
  }
  return 0;
}

static int setup_one(void **state)
{
  (void)state;
  size_t size = tally_shard_region_size(COUNTERS, PRODUCERS);
  memset(&dp_config, 0, sizeof dp_config);
  dp_config.ipv4_be = rte_cpu_to_be_32(OUR_IP);
  dp_config.statsd_port_be = rte_cpu_to_be_16(8125);
  dp_config.binary_port_be = rte_cpu_to_be_16(8126);
  dp_config.statsd_counters_max = COUNTERS;
  dp_config.statsd_per_poll = TALLY_CLASS_PER_POLL_MAX;
  dp_config.reliable_per_poll = TALLY_CLASS_PER_POLL_MAX;
  dp_config.control_per_poll = TALLY_CLASS_PER_POLL_MAX;
  for (uint32_t i = 0; i < TALLY_KEY_SIZE; i++) dp_config.key[i] = (uint8_t)i;
  dp_config.port_mac[ports.ids[0]] = ports.macs[ports.ids[0]];
  lcores = rte_zmalloc("lcores", sizeof(struct tally_lcore) * LCORES, 64);
  assert_non_null(lcores);
  for (uint32_t i = 0; i < LCORES; i++) {
    regions[i] = aligned_alloc(4096, size);
    assert_non_null(regions[i]);
    memset(regions[i], 0, size);
    assert_int_equal(tally_shard_attach(&shards[i], regions[i], i, COUNTERS, PRODUCERS, true), 0);
    lcores[i].index = i;
    lcores[i].lcore_count = LCORES;
    lcores[i].port_count = 1;
    lcores[i].ports[0] = ports.ids[0];
    lcores[i].shard = &shards[i];
    lcores[i].config = &dp_config_pointer;
    lcores[i].quit = &quit_flag;
    lcores[i].persist = &tally_lcore_group_commit;
  }
  for (uint32_t s = 0; s < LCORES; s++) {
    for (uint32_t d = 0; d < LCORES; d++) {
      if (s == d) continue;
      char name[32];
      snprintf(name, sizeof name, "steer%u%u", s, d);
      struct rte_ring *ring = rte_ring_lookup(name);
      if (ring == NULL) ring = rte_ring_create(name, 64, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      assert_non_null(ring);
      lcores[s].rings_out[d] = ring;
      lcores[d].rings_in[s] = ring;
    }
  }
  return 0;
}

static int teardown_one(void **state)
{
  (void)state;
  for (uint32_t i = 0; i < LCORES; i++) free(regions[i]);
  rte_free(lcores);
  return 0;
}

/* ---- frame building ------------------------------------------------------ */

static struct rte_mbuf *new_frame(uint16_t ether_type, uint32_t l3_size)
{
  struct rte_mbuf *frame = rte_pktmbuf_alloc(ports.pool);
  assert_non_null(frame);
  uint8_t *data = (uint8_t *)rte_pktmbuf_append(frame, (uint16_t)(14 + l3_size));
  assert_non_null(data);
  memset(data, 0, 14 + l3_size);
  struct rte_ether_hdr *ether = (struct rte_ether_hdr *)data;
  ether->dst_addr = ports.macs[ports.ids[0]];
  ether->src_addr = peer_mac;
  ether->ether_type = rte_cpu_to_be_16(ether_type);
  frame->port = ports.ids[0];
  return frame;
}

static struct rte_ipv4_hdr *fill_ipv4(struct rte_mbuf *frame, uint8_t proto, uint32_t l4_size,
  uint32_t destination)
{
  struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(frame, struct rte_ipv4_hdr *, 14);
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16((uint16_t)(20 + l4_size));
  ip->time_to_live = 64;
  ip->next_proto_id = proto;
  ip->src_addr = rte_cpu_to_be_32(PEER_IP);
  ip->dst_addr = rte_cpu_to_be_32(destination);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  return ip;
}

static struct rte_mbuf *udp_frame(uint16_t port, const void *payload, uint32_t size,
  uint32_t destination)
{
  struct rte_mbuf *frame = new_frame(RTE_ETHER_TYPE_IPV4, 20 + 8 + size);
  fill_ipv4(frame, IPPROTO_UDP, 8 + size, destination);
  struct rte_udp_hdr *udp = rte_pktmbuf_mtod_offset(frame, struct rte_udp_hdr *, 34);
  udp->src_port = rte_cpu_to_be_16(40000);
  udp->dst_port = rte_cpu_to_be_16(port);
  udp->dgram_len = rte_cpu_to_be_16((uint16_t)(8 + size));
  memcpy(udp + 1, payload, size);
  return frame;
}

static void inject(uint32_t queue, struct rte_mbuf *frame)
{
  assert_int_equal(rte_ring_enqueue(rx_rings[queue], frame), 0);
}

/* Polls the lcore and returns the number of frames it sent (kept in out). */
static unsigned poll_and_collect(uint32_t index, struct rte_mbuf **out, unsigned capacity)
{
  tally_lcore_poll_once(&lcores[index], &dp_config);
  return rte_ring_dequeue_burst(tx_rings[index], (void **)out, capacity, NULL);
}

static int64_t shard_value(uint32_t index, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  int64_t slot = tally_shard_find(&shards[index], name, len,
    tally_shard_name_hash(&shards[index], name, len));
  if (slot < 0) return INT64_MIN;
  return tally_shard_slot_value(&shards[index], (uint32_t)slot);
}

/* An ARP request for OUR_IP from sender_ip at sender_mac (also the Ethernet source). */
static struct rte_mbuf *arp_frame(uint32_t sender_ip, const struct rte_ether_addr *sender_mac)
{
  struct rte_mbuf *frame = new_frame(RTE_ETHER_TYPE_ARP, sizeof(struct rte_arp_hdr));
  rte_pktmbuf_mtod(frame, struct rte_ether_hdr *)->src_addr = *sender_mac;
  struct rte_arp_hdr *arp = rte_pktmbuf_mtod_offset(frame, struct rte_arp_hdr *, 14);
  arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = 6;
  arp->arp_plen = 4;
  arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
  arp->arp_data.arp_sha = *sender_mac;
  arp->arp_data.arp_sip = rte_cpu_to_be_32(sender_ip);
  arp->arp_data.arp_tip = rte_cpu_to_be_32(OUR_IP);
  return frame;
}

/* ---- tests --------------------------------------------------------------- */

static void test_arp_request_answered(void **state)
{
  (void)state;
  struct rte_mbuf *frame = arp_frame(PEER_IP, &peer_mac);
  uint32_t request_len = rte_pktmbuf_pkt_len(frame);
  inject(0, frame);
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  struct rte_arp_hdr *reply = rte_pktmbuf_mtod_offset(out[0], struct rte_arp_hdr *, 14);
  assert_int_equal(reply->arp_opcode, rte_cpu_to_be_16(RTE_ARP_OP_REPLY));
  assert_int_equal(reply->arp_data.arp_sip, rte_cpu_to_be_32(OUR_IP));
  assert_int_equal(reply->arp_data.arp_tip, rte_cpu_to_be_32(PEER_IP));
  assert_memory_equal(&reply->arp_data.arp_sha, &ports.macs[ports.ids[0]], 6);
  assert_memory_equal(&reply->arp_data.arp_tha, &peer_mac, 6);
  assert_true(rte_pktmbuf_pkt_len(out[0]) <= request_len);
  rte_pktmbuf_free(out[0]);
  assert_int_equal(lcores[0].stats.arp_replies, 1);
  /* ARP for another address: ignored and counted. */
  frame = new_frame(RTE_ETHER_TYPE_ARP, sizeof(struct rte_arp_hdr));
  struct rte_arp_hdr *arp = rte_pktmbuf_mtod_offset(frame, struct rte_arp_hdr *, 14);
  arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = 6;
  arp->arp_plen = 4;
  arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
  arp->arp_data.arp_tip = rte_cpu_to_be_32(RTE_IPV4(10, 77, 0, 9));
  inject(0, frame);
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_ARP_IGNORED], 1);
}

static void test_icmp_echo_answered(void **state)
{
  (void)state;
  uint32_t icmp_size = 8 + 16;
  struct rte_mbuf *frame = new_frame(RTE_ETHER_TYPE_IPV4, 20 + icmp_size);
  fill_ipv4(frame, IPPROTO_ICMP, icmp_size, OUR_IP);
  struct rte_icmp_hdr *icmp = rte_pktmbuf_mtod_offset(frame, struct rte_icmp_hdr *, 34);
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REQUEST;
  icmp->icmp_ident = rte_cpu_to_be_16(7);
  icmp->icmp_seq_nb = rte_cpu_to_be_16(1);
  icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, icmp_size);
  inject(0, frame);
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(out[0], struct rte_ipv4_hdr *, 14);
  assert_int_equal(ip->src_addr, rte_cpu_to_be_32(OUR_IP));
  assert_int_equal(ip->dst_addr, rte_cpu_to_be_32(PEER_IP));
  assert_int_equal(rte_raw_cksum(ip, 20), 0xffff);
  icmp = rte_pktmbuf_mtod_offset(out[0], struct rte_icmp_hdr *, 34);
  assert_int_equal(icmp->icmp_type, RTE_IP_ICMP_ECHO_REPLY);
  assert_int_equal(rte_raw_cksum(icmp, icmp_size), 0xffff);
  rte_pktmbuf_free(out[0]);
}

/* An echo request from src_ip and src_mac to us, with options_words of IP options. */
static struct rte_mbuf *echo_frame(uint32_t src_ip, const struct rte_ether_addr *src_mac,
  uint32_t options_words)
{
  uint32_t icmp_size = 8 + 16;
  uint32_t header_len = 20 + 4 * options_words;
  struct rte_mbuf *frame = new_frame(RTE_ETHER_TYPE_IPV4, header_len + icmp_size);
  struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, struct rte_ether_hdr *);
  ether->src_addr = *src_mac;
  struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(frame, struct rte_ipv4_hdr *, 14);
  ip->version_ihl = (uint8_t)(0x40 | (header_len / 4));
  ip->total_length = rte_cpu_to_be_16((uint16_t)(header_len + icmp_size));
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_ICMP;
  ip->src_addr = rte_cpu_to_be_32(src_ip);
  ip->dst_addr = rte_cpu_to_be_32(OUR_IP);
  uint8_t *options = (uint8_t *)(ip + 1);
  for (uint32_t i = 0; i < 4 * options_words; i++) options[i] = 1; /* NOP */
  if (options_words > 0) { options[0] = 7; options[1] = (uint8_t)(4 * options_words - 1); options[2] = 4; } /* record route */
  ip->hdr_checksum = 0;
  ip->hdr_checksum = (uint16_t)~rte_raw_cksum(ip, header_len);
  struct rte_icmp_hdr *icmp = rte_pktmbuf_mtod_offset(frame, struct rte_icmp_hdr *, 14 + header_len);
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REQUEST;
  icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, icmp_size);
  return frame;
}

/* Before: answered for any source, broadcast and multicast included; options echoed. */
static void test_replies_only_to_unicast_without_options(void **state)
{
  (void)state;
  static const struct rte_ether_addr group_mac = { { 0x01, 0x00, 0x5e, 0, 0, 1 } };
  static const struct rte_ether_addr broadcast_mac = { { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } };
  inject(0, echo_frame(UINT32_C(0xffffffff), &peer_mac, 0));
  inject(0, echo_frame(UINT32_C(0xe0000001) /* 224.0.0.1 */, &peer_mac, 0));
  inject(0, echo_frame(0, &peer_mac, 0));
  inject(0, echo_frame(RTE_IPV4(127, 0, 0, 1), &peer_mac, 0));
  inject(0, echo_frame(PEER_IP, &group_mac, 0));
  inject(0, arp_frame(UINT32_C(0xffffffff), &peer_mac));
  inject(0, arp_frame(PEER_IP, &broadcast_mac));
  inject(0, arp_frame(0, &peer_mac));
  inject(0, echo_frame(PEER_IP, &peer_mac, 9)); /* 36 bytes of record route */
  struct rte_mbuf *out[16];
  unsigned sent = poll_and_collect(0, out, 16);
  for (unsigned i = 0; i < sent; i++) rte_pktmbuf_free(out[i]);
  assert_int_equal(sent, 0);
  const uint64_t *reasons = lcores[0].stats.reasons;
  assert_int_equal(reasons[TALLY_REASON_SOURCE_NOT_UNICAST], 8);
  assert_int_equal(reasons[TALLY_REASON_IP_OPTIONS], 1);
  /* From a unicast source, without options: answered. */
  inject(0, echo_frame(PEER_IP, &peer_mac, 0));
  inject(0, arp_frame(PEER_IP, &peer_mac));
  assert_int_equal(poll_and_collect(0, out, 16), 2);
  rte_pktmbuf_free(out[0]);
  rte_pktmbuf_free(out[1]);
}

static uint64_t frozen_tsc;
static uint64_t frozen_clock(void) { return frozen_tsc; }

/* Before: every request answered, at any rate. */
static void test_replies_rate_limited(void **state)
{
  (void)state;
  frozen_tsc = 1000ull * rte_get_tsc_hz(); /* 1000 s after boot */
  lcores[0].reply_clock = frozen_clock;
  const uint32_t extra = 8;
  for (uint32_t i = 0; i < TALLY_REPLIES_BURST + extra; i++) {
    inject(0, i % 2 == 0 ? echo_frame(PEER_IP, &peer_mac, 0) : arp_frame(PEER_IP, &peer_mac));
  }
  struct rte_mbuf *out[TALLY_REPLIES_BURST + 8];
  unsigned sent = 0;
  /* Bounded: each poll takes up to a burst of the frames injected. */
  for (uint32_t poll = 0; poll < 4; poll++) {
    sent += poll_and_collect(0, out + sent, TALLY_REPLIES_BURST + extra - sent);
  }
  for (unsigned i = 0; i < sent; i++) rte_pktmbuf_free(out[i]);
  assert_int_equal(sent, TALLY_REPLIES_BURST);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_REPLY_RATE_LIMITED], extra);
  /* A tenth of a second later: TALLY_REPLIES_PER_S / 10 tokens more. */
  frozen_tsc += rte_get_tsc_hz() / 10;
  for (uint32_t i = 0; i < TALLY_REPLIES_PER_S / 10 + 1; i++) {
    inject(0, echo_frame(PEER_IP, &peer_mac, 0));
  }
  sent = poll_and_collect(0, out, TALLY_REPLIES_BURST + extra);
  for (unsigned i = 0; i < sent; i++) rte_pktmbuf_free(out[i]);
  assert_int_equal(sent, TALLY_REPLIES_PER_S / 10);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_REPLY_RATE_LIMITED], extra + 1);
  lcores[0].reply_clock = NULL;
}

static void test_statsd_counts_and_rejects(void **state)
{
  (void)state;
  const char *payload = "a.b:5|c\nbroken line\na.b:-2|c\nc:3|c|@0.5|#t:v\ng:1.5|g\n"
    "c:2|c|#u,t:v\nc:1|c|#t:v,u\nc:7|c|#t:v,t:w\n";
  inject(0, udp_frame(8125, payload, (uint32_t)strlen(payload), OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0); /* statsd is never answered */
  assert_int_equal(shard_value(0, "a.b"), 3);
  assert_int_equal(shard_value(0, "c{t=v}"), 6); /* tags are part of the key */
  assert_int_equal(shard_value(0, "c{t=v,u}"), 3); /* in any order */
  assert_int_equal(shard_value(0, "c"), INT64_MIN);
  assert_int_equal(shard_value(0, "g"), INT64_MIN);
  assert_int_equal(lcores[0].stats.statsd_lines, 8);
  assert_int_equal(lcores[0].stats.statsd_increments, 5);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_TAG_DUPLICATE], 1);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_MALFORMED], 1);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_NOT_COUNTER], 1);
}

/* ingest.statsd_tags = drop, then allow: the policy comes with the published config. */
static void test_statsd_tag_policies(void **state)
{
  (void)state;
  const char *payload = "r:1|c|#status:500,host:a\nr:2|c|#host:b,status:500\nr:4|c|#bad:x:y\n";
  struct rte_mbuf *out[4];
  dp_config.statsd_tags.mode = TALLY_TAGS_DROP;
  inject(0, udp_frame(8125, payload, (uint32_t)strlen(payload), OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(shard_value(0, "r"), 7); /* as before tags: one counter, unchecked */
  dp_config.statsd_tags = (struct tally_tags_policy){ .mode = TALLY_TAGS_ALLOW,
    .allow_count = 1, .allow_len = {6}, .allow = {"status"} };
  inject(0, udp_frame(8125, payload, (uint32_t)strlen(payload), OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(shard_value(0, "r{status=500}"), 3);
  assert_int_equal(shard_value(0, "r"), 11); /* "bad" is not allowed: skipped unchecked */
  dp_config.statsd_tags = (struct tally_tags_policy){ .mode = TALLY_TAGS_KEEP };
  inject(0, udp_frame(8125, payload, (uint32_t)strlen(payload), OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(shard_value(0, "r{host=a,status=500}"), 1);
  assert_int_equal(shard_value(0, "r{host=b,status=500}"), 2);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_TAG_BAD_CHAR], 1);
}

static void test_frames_not_for_us_dropped(void **state)
{
  (void)state;
  const char *payload = "x:1|c";
  inject(0, udp_frame(8125, payload, 5, RTE_IPV4(10, 77, 0, 50)));
  inject(0, udp_frame(9999, payload, 5, OUR_IP));
  struct rte_mbuf *fragment = udp_frame(8125, payload, 5, OUR_IP);
  struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(fragment, struct rte_ipv4_hdr *, 14);
  ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG);
  ip->hdr_checksum = 0;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  inject(0, fragment);
  struct rte_mbuf *bad_sum = udp_frame(8125, payload, 5, OUR_IP);
  rte_pktmbuf_mtod_offset(bad_sum, struct rte_ipv4_hdr *, 14)->hdr_checksum ^= 1;
  inject(0, bad_sum);
  struct rte_mbuf *short_frame = new_frame(RTE_ETHER_TYPE_IPV4, 10);
  inject(0, short_frame);
  inject(0, new_frame(0x86dd, 40));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  const uint64_t *reasons = lcores[0].stats.reasons;
  assert_int_equal(reasons[TALLY_REASON_IP_NOT_FOR_US], 1);
  assert_int_equal(reasons[TALLY_REASON_UDP_PORT_UNKNOWN], 1);
  assert_int_equal(reasons[TALLY_REASON_IP_FRAGMENT], 1);
  assert_int_equal(reasons[TALLY_REASON_IP_BAD_HEADER], 1);
  assert_int_equal(reasons[TALLY_REASON_FRAME_TRUNCATED], 1);
  assert_int_equal(reasons[TALLY_REASON_NOT_IPV4], 1);
  assert_int_equal(shard_value(0, "x"), INT64_MIN);
}

/* A batch MAC'd for the node at ip:port (issue 14, H3). */
static size_t make_batch_for(uint8_t *out, size_t capacity, uint64_t producer, uint64_t seq,
  const uint8_t *key, uint32_t ip, uint16_t port)
{
  struct tally_wire_batch batch = { .producer = producer, .seq = seq, .count = 2,
    .node = { .ipv4_be = rte_cpu_to_be_32(ip), .port_be = rte_cpu_to_be_16(port) } };
  batch.pairs[0] = (struct tally_wire_pair){ .name = "pay.ok", .name_len = 6, .delta = 10 };
  batch.pairs[1] = (struct tally_wire_pair){ .name = "pay.fail", .name_len = 8, .delta = -1 };
  size_t size = tally_wire_encode_batch(&batch, key, out, capacity);
  assert_true(size > 0);
  return size;
}

/* A batch MAC'd for this node (OUR_IP, binary port 8126). */
static size_t make_batch(uint8_t *out, size_t capacity, uint64_t producer, uint64_t seq,
  const uint8_t *key)
{
  return make_batch_for(out, capacity, producer, seq, key, OUR_IP, 8126);
}

static void check_ack(struct rte_mbuf *frame, uint64_t producer, uint64_t seq,
  enum tally_ack_status expected, uint32_t request_len)
{
  assert_true(rte_pktmbuf_pkt_len(frame) <= request_len);
  struct rte_udp_hdr *udp = rte_pktmbuf_mtod_offset(frame, struct rte_udp_hdr *, 34);
  assert_int_equal(udp->dst_port, rte_cpu_to_be_16(40000));
  uint64_t got_producer = 0, got_seq = 0;
  enum tally_ack_status status = TALLY_ACK_STATUS_COUNT;
  assert_int_equal(tally_wire_decode_ack((const uint8_t *)(udp + 1),
    rte_be_to_cpu_16(udp->dgram_len) - 8u, dp_config.key, &got_producer, &got_seq, &status), TALLY_OK);
  assert_int_equal(got_producer, producer);
  assert_int_equal(got_seq, seq);
  assert_int_equal(status, expected);
}

static void test_batch_acked_only_when_durable(void **state)
{
  (void)state;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key); /* producer 2: lcore 0 */
  struct rte_mbuf *frame = udp_frame(8126, batch, (uint32_t)size, OUR_IP);
  uint32_t request_len = rte_pktmbuf_pkt_len(frame);
  inject(0, frame);
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0); /* applied, not yet durable */
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  assert_int_equal(lcores[0].stats.applied_seq, 1);
  __atomic_store_n(&lcores[0].durable_seq, 1, __ATOMIC_RELEASE); /* the persister ran */
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  check_ack(out[0], 2, 1, TALLY_ACK_APPLIED, request_len);
  rte_pktmbuf_free(out[0]);
  /* The same batch again: acked DUPLICATE, counted once. */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  check_ack(out[0], 2, 1, TALLY_ACK_DUPLICATE, request_len);
  rte_pktmbuf_free(out[0]);
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  assert_int_equal(shard_value(0, "pay.fail"), -1);
}

/* Tagged pairs: canonical keys in any order; a bad key is answered MALFORMED. */
static void test_batch_tagged_pairs(void **state)
{
  (void)state;
  struct tally_wire_batch batch = { .producer = 2, .seq = 1, .count = 2 };
  batch.pairs[0] = (struct tally_wire_pair){ .name = "pay{z=1,a=2}", .name_len = 12, .delta = 4 };
  batch.pairs[1] = (struct tally_wire_pair){ .name = "pay{a=2,z=1}", .name_len = 12, .delta = 5 };
  uint8_t datagram[256];
  batch.node = (struct tally_wire_node){ rte_cpu_to_be_32(OUR_IP), rte_cpu_to_be_16(8126) };
  size_t size = tally_wire_encode_batch(&batch, dp_config.key, datagram, sizeof datagram);
  assert_true(size > 0);
  inject(0, udp_frame(8126, datagram, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0); /* applied, acked once durable */
  assert_int_equal(shard_value(0, "pay{a=2,z=1}"), 9);
  assert_int_equal(shard_value(0, "pay{z=1,a=2}"), INT64_MIN);
  batch.seq = 2;
  batch.pairs[1] = (struct tally_wire_pair){ .name = "pay{a=2,a=3}", .name_len = 12, .delta = 5 };
  size = tally_wire_encode_batch(&batch, dp_config.key, datagram, sizeof datagram);
  struct rte_mbuf *frame = udp_frame(8126, datagram, (uint32_t)size, OUR_IP);
  uint32_t request_len = rte_pktmbuf_pkt_len(frame);
  inject(0, frame);
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  check_ack(out[0], 2, 2, TALLY_ACK_MALFORMED, request_len);
  rte_pktmbuf_free(out[0]);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_KEY], 1);
  assert_int_equal(shard_value(0, "pay{a=2,z=1}"), 9); /* nothing of it counted */
}

/* Log mode: the applied batch's record goes to the persister's ring, its ack waits. */
static void test_log_mode_record_handed_over(void **state)
{
  (void)state;
  struct tally_log_ring *ring = aligned_alloc(64, sizeof *ring);
  assert_non_null(ring);
  memset(ring, 0, sizeof *ring);
  lcores[0].log_ring = ring;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 7, dp_config.key); /* producer 2: lcore 0 */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0); /* not logged yet: no ack */
  assert_int_equal(tally_log_ring_ready(ring), 1);
  const struct tally_log_record *record = tally_log_ring_peek(ring, 0);
  assert_int_equal(record->applied_seq, 1);
  assert_int_equal(record->effect.producer, 2);
  assert_int_equal(record->effect.seq, 7);
  assert_int_equal(record->effect.shard, 0);
  assert_int_equal(record->effect.batch_seq, 1);
  assert_int_equal(record->effect.count, 2);
  assert_int_equal(record->effect.pairs[0].value, 10);
  assert_int_equal(record->effect.pairs[1].value, -1);
  assert_memory_equal(record->effect.pairs[1].name, "pay.fail", 8);
  assert_int_equal(record->effect.dedup.runs[0].last_seq, 7);
  /* A duplicate adds no record and waits for the same durable point. */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(tally_log_ring_ready(ring), 1);
  tally_log_ring_pop(ring, 1);
  __atomic_store_n(&lcores[0].durable_seq, 1, __ATOMIC_RELEASE); /* the log's fdatasync ran */
  assert_int_equal(poll_and_collect(0, out, 4), 2);
  rte_pktmbuf_free_bulk(out, 2);
  lcores[0].log_ring = NULL;
  free(ring);
}

/* Log mode: a full ring refuses the batch before it is applied, counted, unanswered. */
static void test_log_ring_full_counted(void **state)
{
  (void)state;
  struct tally_log_ring *ring = aligned_alloc(64, sizeof *ring);
  assert_non_null(ring);
  memset(ring, 0, sizeof *ring);
  ring->tail = TALLY_LOG_RING_SIZE; /* the persister is a whole ring behind */
  lcores[0].log_ring = ring;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_LOG_RING_FULL], 1);
  assert_int_equal(ring->full, 1);
  assert_int_equal(lcores[0].stats.applied_seq, 0);
  assert_true(shard_value(0, "pay.ok") == INT64_MIN); /* not applied: not even created */
  /* Room again: the producer's resend is applied and logged. */
  ring->head = TALLY_LOG_RING_SIZE;
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(tally_log_ring_ready(ring), 1);
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  lcores[0].log_ring = NULL;
  free(ring);
}

static void test_batch_bad_mac_unanswered(void **state)
{
  (void)state;
  uint8_t wrong_key[TALLY_KEY_SIZE] = { 0 };
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, wrong_key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  inject(0, udp_frame(8126, batch, 10, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 1);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_TRUNCATED], 1);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);
}

/*
 * ingest.producer_keys = derived (issue 14, M2): producer 2 (A) holds only
 * its derived key. A batch it MACs claiming producer 4 (B) is refused as
 * bad_mac, unanswered, before it touches B's window; its own batch is
 * applied and acked under its key; the shared key no longer speaks for it.
 */
static void test_derived_key_speaks_only_as_itself(void **state)
{
  (void)state;
  dp_config.producer_keys_derived = true;
  uint8_t key_a[TALLY_KEY_SIZE];
  tally_wire_producer_key(dp_config.key, 2, key_a);
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 4, 1000, key_a); /* B's id, A's key */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  size_t shared_size = make_batch(batch + 128, 128, 2, 1, dp_config.key); /* the shared key */
  inject(0, udp_frame(8126, batch + 128, (uint32_t)shared_size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 2);
  assert_int_equal(lcores[0].stats.batches_received, 0);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);

  size = make_batch(batch, sizeof batch, 2, 1, key_a); /* A as itself */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(0, out, 4), 1);
  struct rte_udp_hdr *udp = rte_pktmbuf_mtod_offset(out[0], struct rte_udp_hdr *, 34);
  uint64_t producer = 0, seq = 0;
  enum tally_ack_status status = TALLY_ACK_STATUS_COUNT;
  assert_int_equal(tally_wire_decode_ack((const uint8_t *)(udp + 1), TALLY_WIRE_ACK_SIZE, key_a,
    &producer, &seq, &status), TALLY_OK); /* the ack is MAC'd with A's key */
  assert_int_equal(producer, 2);
  assert_int_equal(seq, 1);
  assert_int_equal(status, TALLY_ACK_APPLIED);
  assert_int_equal(tally_wire_decode_ack((const uint8_t *)(udp + 1), TALLY_WIRE_ACK_SIZE,
    dp_config.key, &producer, &seq, &status), TALLY_REASON_BATCH_BAD_MAC);
  rte_pktmbuf_free(out[0]);
}

/* ingest.producer_keys = shared (the default): a derived key is not the ingest key. */
static void test_shared_mode_refuses_derived_key(void **state)
{
  (void)state;
  assert_false(dp_config.producer_keys_derived);
  uint8_t key_a[TALLY_KEY_SIZE];
  tally_wire_producer_key(dp_config.key, 2, key_a);
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, key_a);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 1);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);
}

static void test_batch_steered_to_owner(void **state)
{
  (void)state;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 3, 9, dp_config.key); /* producer 3: lcore 1 */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(lcores[0].stats.batches_steered, 1);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);
  assert_int_equal(poll_and_collect(1, out, 4), 0);
  assert_int_equal(shard_value(1, "pay.ok"), 10);
  __atomic_store_n(&lcores[1].durable_seq, lcores[1].stats.applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(1, out, 4), 1); /* the owner answers on its queue */
  check_ack(out[0], 3, 9, TALLY_ACK_APPLIED, 14 + 20 + 8 + (uint32_t)size);
  rte_pktmbuf_free(out[0]);
}

/*
 * Issue 14, M1: the MAC is checked on the lcore the NIC gave the datagram,
 * before steering. Forged batches claiming a producer of lcore 1 arrive at
 * lcore 0: refused there (bad_mac), never steered, so they neither aim MAC
 * work at lcore 1 nor fill its ring; a real batch for lcore 1 still gets
 * through. Before, all of them were steered (63 filled the ring, the rest
 * counted steer_ring_full) and lcore 1 checked their MACs.
 */
static void test_forged_batches_never_steered(void **state)
{
  (void)state;
  uint8_t forged[256];
  uint8_t other_key[TALLY_KEY_SIZE] = { 7 };
  struct rte_mbuf *out[8];
  for (uint32_t round = 0; round < 4; round++) {
    for (uint32_t i = 0; i < 25; i++) {
      size_t size = make_batch(forged, sizeof forged, 3, 100 + round * 25 + i, other_key);
      inject(0, udp_frame(8126, forged, (uint32_t)size, OUR_IP));
    }
    assert_int_equal(poll_and_collect(0, out, 8), 0);
  }
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 100);
  assert_int_equal(lcores[0].stats.batches_steered, 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STEER_RING_FULL], 0);
  assert_int_equal(rte_ring_count(lcores[0].rings_out[1]), 0);
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 3, 9, dp_config.key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(lcores[0].stats.batches_steered, 1);
  assert_int_equal(poll_and_collect(1, out, 8), 0);
  assert_int_equal(lcores[1].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 0);
  assert_int_equal(shard_value(1, "pay.ok"), 10);
}

/*
 * Issue 14, H3: a batch MAC'd for another node (captured on the wire there
 * and replayed here) is refused, counted batch_wrong_node, unanswered, not
 * counted, whether this lcore owns its producer or another does; a batch of
 * protocol version 1 (no node) is refused as batch_bad_version. Before, the
 * MAC did not cover the destination and both nodes counted the batch.
 */
static void test_batch_for_another_node_refused(void **state)
{
  (void)state;
  uint8_t batch[256];
  struct rte_mbuf *out[8];
  size_t size = make_batch_for(batch, sizeof batch, 2, 1, dp_config.key, OUR_IP + 1, 8126);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  size = make_batch_for(batch, sizeof batch, 3, 1, dp_config.key, OUR_IP, 8127);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP)); /* producer 3: lcore 1's */
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(poll_and_collect(1, out, 8), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_WRONG_NODE], 2);
  assert_int_equal(lcores[0].stats.batches_steered, 0);
  assert_int_equal(lcores[0].stats.batches_received + lcores[1].stats.batches_received, 0);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);
  assert_int_equal(shard_value(1, "pay.ok"), INT64_MIN);
  size = make_batch(batch, sizeof batch, 2, 1, dp_config.key);
  batch[2] = 1; /* an old producer's version 1 batch */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_VERSION], 1);
  assert_int_equal(shard_value(0, "pay.ok"), INT64_MIN);
}

/*
 * Derived keys are cached per lcore (issue 14, M2): three batches of one
 * producer, each checked and acked, derive its key once on this lcore.
 * Before the cache each batch derived it twice (check, ack): six times.
 */
static void test_derived_key_cached(void **state)
{
  (void)state;
  dp_config.producer_keys_derived = true;
  uint8_t key_a[TALLY_KEY_SIZE];
  tally_wire_producer_key(dp_config.key, 2, key_a);
  uint8_t batch[256];
  struct rte_mbuf *out[8];
  for (uint64_t seq = 1; seq <= 3; seq++) {
    size_t size = make_batch(batch, sizeof batch, 2, seq, key_a);
    inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  }
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(lcores[0].stats.batches_applied, 3);
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(0, out, 8), 3);
  rte_pktmbuf_free_bulk(out, 3);
  assert_int_equal(lcores[0].key_cache.derivations, 1);
  /* A new config generation (a reload may change ingest.key) forgets the cache. */
  dp_config.generation++;
  size_t size = make_batch(batch, sizeof batch, 2, 4, key_a);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(lcores[0].key_cache.derivations, 2);
  assert_int_equal(lcores[0].stats.batches_applied, 4);
}

/* Limits: the steering ring and the pending-ack FIFO refuse and count, never block. */
static void test_steering_ring_full_counted(void **state)
{
  (void)state;
  uint8_t batch[256];
  struct rte_mbuf *out[8];
  uint32_t sent = 0;
  /* 100 batches for lcore 1 arrive at lcore 0; lcore 1 does not poll: its ring holds 63. */
  for (uint32_t round = 0; round < 4; round++) {
    for (uint32_t i = 0; i < 25; i++, sent++) {
      size_t size = make_batch(batch, sizeof batch, 3, 100 + sent, dp_config.key);
      inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
    }
    while (rte_ring_count(rx_rings[0]) > 0) assert_int_equal(poll_and_collect(0, out, 8), 0);
  }
  uint64_t steered = lcores[0].stats.batches_steered;
  uint64_t full = lcores[0].stats.reasons[TALLY_REASON_STEER_RING_FULL];
  assert_int_equal(steered + full, sent);
  assert_true(full > 0);
  assert_int_equal(steered, rte_ring_count(lcores[0].rings_out[1]));
  /* The owner drains its ring afterwards: exactly the steered batches are applied. */
  for (uint32_t i = 0; i < 8; i++) poll_and_collect(1, out, 8);
  assert_int_equal(lcores[1].stats.batches_applied, steered);
  while (rte_ring_dequeue_burst(tx_rings[1], (void **)out, 8, NULL) > 0) {}
}

static void test_acks_pending_full_counted(void **state)
{
  (void)state;
  uint8_t batch[256];
  struct rte_mbuf *out[8];
  uint32_t sent = 0;
  /* The persister never runs: acks pile up to TALLY_ACKS_PENDING_MAX, then batches are refused. */
  while (sent < TALLY_ACKS_PENDING_MAX + 40) {
    for (uint32_t i = 0; i < 100; i++, sent++) {
      size_t size = make_batch(batch, sizeof batch, 2 + 2 * (sent / 64), 1 + sent % 64,
        dp_config.key);
      inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
    }
    while (rte_ring_count(rx_rings[0]) > 0) assert_int_equal(poll_and_collect(0, out, 8), 0);
  }
  assert_int_equal(lcores[0].stats.batches_applied, TALLY_ACKS_PENDING_MAX);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_ACKS_PENDING_FULL],
    sent - TALLY_ACKS_PENDING_MAX);
  /* Durable now: every held ack goes out, none for the refused batches. */
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  uint32_t acks = 0;
  uint32_t polls = 0;
  for (; polls < 2 * TALLY_ACKS_PENDING_MAX / TALLY_ACKS_RELEASE_PER_POLL + 2; polls++) {
    unsigned got = poll_and_collect(0, out, 8);
    do { /* the test's TX ring is small: empty it after every poll */
      acks += got;
      rte_pktmbuf_free_bulk(out, got);
      got = rte_ring_dequeue_burst(tx_rings[0], (void **)out, 8, NULL);
    } while (got > 0);
  }
  assert_int_equal(acks, TALLY_ACKS_PENDING_MAX);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_TX_FULL], 0); /* released in steps */
}

/* Injects `count` copies of one frame's bytes (a replay), polling as the RX ring fills. */
static void replay_frames(const uint8_t *payload, size_t size, uint32_t count)
{
  struct rte_mbuf *out[8];
  for (uint32_t i = 0; i < count; i++) {
    inject(0, udp_frame(8126, payload, (uint32_t)size, OUR_IP));
    if (rte_ring_count(rx_rings[0]) >= 200 || i + 1u == count) {
      while (rte_ring_count(rx_rings[0]) > 0) {
        unsigned got = poll_and_collect(0, out, 8);
        rte_pktmbuf_free_bulk(out, got);
      }
    }
  }
}

/*
 * Issue 14, H3: one valid batch replayed at a high rate while the lcore's
 * writes are not durable yet. Before: every replay took an entry of the
 * pending-ack FIFO (checked before the MAC), so the FIFO filled and every
 * other producer's batch (and a forged one, counted acks_pending_full, not
 * bad_mac) was refused. Now a producer's share is capped (counted), other
 * producers are applied and acked, and the replays get at most the share's
 * acks, each no larger than the batch.
 */
static void test_replayed_batch_cannot_fill_fifo(void **state)
{
  (void)state;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key); /* producer 2: lcore 0 */
  replay_frames(batch, size, 1u + 2u * TALLY_ACKS_PENDING_MAX);
  assert_int_equal(lcores[0].stats.batches_applied, 1);
  uint8_t forged[256];
  uint8_t other_key[TALLY_KEY_SIZE] = { 0 };
  size_t forged_size = make_batch(forged, sizeof forged, 8, 1, other_key);
  replay_frames(forged, forged_size, 1);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_BAD_MAC], 1); /* MAC first */
  for (uint64_t producer = 4; producer <= 6; producer += 2) { /* other producers of lcore 0 */
    size_t other = make_batch(batch, sizeof batch, producer, 1, dp_config.key);
    replay_frames(batch, other, 1);
  }
  assert_int_equal(lcores[0].stats.batches_applied, 3);
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  uint32_t acks[7] = { 0 };
  struct rte_mbuf *out[8];
  for (uint32_t polls = 0; polls < 2u * TALLY_ACKS_PENDING_MAX / TALLY_ACKS_RELEASE_PER_POLL;
       polls++) {
    unsigned got = poll_and_collect(0, out, 8);
    do {
      for (unsigned i = 0; i < got; i++) {
        struct rte_udp_hdr *udp = rte_pktmbuf_mtod_offset(out[i], struct rte_udp_hdr *, 34);
        uint64_t producer;
        memcpy(&producer, (const uint8_t *)(udp + 1) + 8, sizeof producer); /* unaligned */
        producer = rte_le_to_cpu_64(producer);
        assert_true(producer < 7);
        check_ack(out[i], producer, 1, producer == 2 && acks[2] > 0 ? TALLY_ACK_DUPLICATE :
          TALLY_ACK_APPLIED, 14u + 20u + 8u + (uint32_t)size);
        acks[producer]++;
      }
      rte_pktmbuf_free_bulk(out, got);
      got = rte_ring_dequeue_burst(tx_rings[0], (void **)out, 8, NULL);
    } while (got > 0);
  }
  assert_int_equal(acks[4], 1);
  assert_int_equal(acks[6], 1);
  assert_int_equal(acks[2], TALLY_ACKS_PENDING_PER_PRODUCER_MAX); /* never one per replay */
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_ACKS_PENDING_PRODUCER_FULL],
    1u + 2u * TALLY_ACKS_PENDING_MAX - TALLY_ACKS_PENDING_PER_PRODUCER_MAX);
}

/*
 * Issue 14, H3: a batch another cluster node applied (its producer record
 * in a replica table here) is answered DUPLICATE like a local one: through
 * the FIFO, once this lcore's own writes are durable (the peer's record
 * proves two copies, not W: answered at once, chaos with W = 3 lost acked
 * batches); one a dedup window below what that node applied is a replay
 * (captured and sent to this node) and answered STALE at once, never
 * counted again. Before the replay guards the old batch was applied here.
 */
static void test_replay_from_another_node_not_counted(void **state)
{
  (void)state;
  size_t size = tally_shard_region_size(COUNTERS, PRODUCERS);
  void *region = aligned_alloc(4096, size);
  assert_non_null(region);
  memset(region, 0, size);
  struct tally_shard replica;
  assert_int_equal(tally_shard_attach(&replica, region, 0, COUNTERS, PRODUCERS, true), 0);
  enum tally_reason reason;
  for (uint64_t seq = 1; seq <= 200; seq++) { /* node B applied producer 2's 1..200 */
    struct tally_wire_batch applied = { .producer = 2, .seq = seq, .count = 1,
      .pairs = { { .name = "pay.ok", .name_len = 6, .delta = 10 } } };
    assert_int_equal(tally_shard_apply_batch(&replica, &applied, &reason), TALLY_ACK_APPLIED);
  }
  dp_config.remote_dedup[0] = &replica;
  dp_config.remote_dedup_count = 1;
  dp_config.remote_duplicate_is_quorum = true; /* W <= 2 */
  uint8_t batch[256];
  size_t mine = make_batch(batch, sizeof batch, 4, 1, dp_config.key); /* waits: not durable */
  replay_frames(batch, mine, 1);
  struct rte_mbuf *out[8];
  size = make_batch(batch, sizeof batch, 2, 200, dp_config.key); /* applied on node B */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0); /* waits behind producer 4's */
  assert_int_equal(lcores[0].stats.acks_duplicate_now, 0);
  assert_int_equal(lcores[0].stats.batches_duplicate_remote, 1);
  /* A replay of 136: neither in the head (1..64) nor the tail (137..200) B's record keeps. */
  size = make_batch(batch, sizeof batch, 2, 200 - TALLY_DEDUP_WINDOW, dp_config.key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 1);
  check_ack(out[0], 2, 200 - TALLY_DEDUP_WINDOW, TALLY_ACK_STALE, 14u + 20u + 8u + (uint32_t)size);
  rte_pktmbuf_free(out[0]);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BATCH_STALE_REMOTE], 1);
  assert_int_equal(lcores[0].stats.batches_applied, 1); /* only producer 4's */
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(0, out, 8), 2); /* producer 4's APPLIED, then the DUPLICATE */
  check_ack(out[1], 2, 200, TALLY_ACK_DUPLICATE, 14u + 20u + 8u + (uint32_t)make_batch(batch,
    sizeof batch, 2, 200, dp_config.key));
  rte_pktmbuf_free(out[0]);
  rte_pktmbuf_free(out[1]);
  /*
   * W >= 3: the peer's record proves two copies, not W. The batch is applied
   * here like one nobody applied (the claims settle the two applies), never
   * answered DUPLICATE from the record (chaos seed 7510, 2 lcores, W = 3,
   * lost acked batches so). A replay far below the record is still STALE.
   */
  dp_config.remote_duplicate_is_quorum = false;
  size = make_batch(batch, sizeof batch, 2, 199, dp_config.key); /* applied on node B */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0); /* applied: waits to be durable */
  assert_int_equal(lcores[0].stats.batches_duplicate_remote, 1);
  assert_int_equal(lcores[0].stats.batches_duplicate_remote_applied, 1);
  assert_int_equal(lcores[0].stats.batches_applied, 2);
  assert_int_equal(shard_value(0, "pay.ok"), 20);
  __atomic_store_n(&lcores[0].durable_seq, lcores[0].stats.applied_seq, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(0, out, 8), 1);
  check_ack(out[0], 2, 199, TALLY_ACK_APPLIED, 14u + 20u + 8u + (uint32_t)size);
  rte_pktmbuf_free(out[0]);
  size = make_batch(batch, sizeof batch, 2, 200 - TALLY_DEDUP_WINDOW, dp_config.key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 1);
  check_ack(out[0], 2, 200 - TALLY_DEDUP_WINDOW, TALLY_ACK_STALE, 14u + 20u + 8u + (uint32_t)size);
  rte_pktmbuf_free(out[0]);
  dp_config.remote_dedup_count = 0;
  dp_config.remote_duplicate_is_quorum = false;
  free(region);
}

/* A statsd payload of `lines` copies of `line`, then `tail` (fills `out`). */
static uint32_t repeated_payload(char *out, size_t capacity, const char *line, uint32_t lines,
  const char *tail)
{
  size_t used = 0;
  for (uint32_t i = 0; i < lines; i++) {
    assert_true(used + strlen(line) < capacity);
    memcpy(out + used, line, strlen(line));
    used += strlen(line);
  }
  assert_true(used + strlen(tail) <= capacity);
  memcpy(out + used, tail, strlen(tail));
  return (uint32_t)(used + strlen(tail));
}

/*
 * A UDP payload one byte over TALLY_DATAGRAM_SIZE_MAX is dropped whole under
 * datagram_too_large; one of exactly the limit, and the datagram after the
 * large one in the same burst, are counted in full.
 */
/*
 * Idle back-off: off by default; with idle_sleep_us set, a sleep is due only
 * after TALLY_IDLE_POLLS_BEFORE_SLEEP empty polls in a row, and a frame or an
 * ack still waiting for durability ends the streak (counted, no timing).
 */
static void test_idle_backoff_after_empty_polls(void **state)
{
  (void)state;
  struct tally_lcore *lcore = &lcores[0];
  struct rte_mbuf *out[4];
  for (uint32_t i = 0; i < 2u * TALLY_IDLE_POLLS_BEFORE_SLEEP; i++) {
    assert_false(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  }
  assert_int_equal(lcore->stats.idle_sleeps, 0); /* off */
  lcore->idle_sleep_us = 50;
  lcore->idle_streak = 0;
  for (uint32_t i = 0; i < TALLY_IDLE_POLLS_BEFORE_SLEEP; i++) {
    assert_false(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  }
  assert_true(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  assert_true(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  assert_int_equal(lcore->stats.idle_sleeps, 2);
  /* A frame: counted, and the streak starts over. */
  const char line[] = "idle.hit:1|c";
  inject(0, udp_frame(8125, line, sizeof line - 1, OUR_IP));
  uint32_t received = tally_lcore_poll_once(lcore, &dp_config);
  assert_int_equal(received, 1);
  assert_false(tally_lcore_should_sleep(lcore, received));
  assert_int_equal(shard_value(0, "idle.hit"), 1);
  assert_false(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  /* An ack waiting for durability: never a sleep, however long it waits. */
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key);
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0); /* applied, not yet durable */
  for (uint32_t i = 0; i < 2u * TALLY_IDLE_POLLS_BEFORE_SLEEP; i++) {
    assert_false(tally_lcore_should_sleep(lcore, tally_lcore_poll_once(lcore, &dp_config)));
  }
  __atomic_store_n(&lcore->durable_seq, 1, __ATOMIC_RELEASE);
  assert_int_equal(poll_and_collect(0, out, 4), 1); /* the ack goes out */
  rte_pktmbuf_free(out[0]);
  assert_int_equal(lcore->stats.idle_sleeps, 2);
  lcore->idle_sleep_us = 0;
}

/*
 * Per-class budgets per poll (issue 14, C1): a flood of statsd in one poll
 * takes at most statsd_per_poll datagrams of it; batches and ARP/ICMP keep
 * theirs; the rest are dropped and counted by class; the next poll starts
 * afresh. Before, a poll handled every frame of its bursts whatever the class.
 */
static void test_class_budgets_per_poll(void **state)
{
  (void)state;
  dp_config.statsd_per_poll = 4;
  dp_config.reliable_per_poll = 2;
  dp_config.control_per_poll = 1;
  const char *line = "flood.x:1|c";
  uint8_t batch[256];
  for (uint32_t i = 0; i < 5; i++) inject(0, udp_frame(8125, line, (uint32_t)strlen(line), OUR_IP));
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key); /* producer 2: lcore 0 */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  for (uint32_t i = 0; i < 5; i++) inject(0, udp_frame(8125, line, (uint32_t)strlen(line), OUR_IP));
  for (uint64_t seq = 2; seq <= 3; seq++) {
    size = make_batch(batch, sizeof batch, 2, seq, dp_config.key);
    inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  }
  inject(0, echo_frame(PEER_IP, &peer_mac, 0));
  inject(0, echo_frame(PEER_IP, &peer_mac, 0));
  struct rte_mbuf *out[8];
  unsigned sent = poll_and_collect(0, out, 8);
  for (unsigned i = 0; i < sent; i++) rte_pktmbuf_free(out[i]);
  assert_int_equal(sent, 1); /* one echo reply; the batches' acks wait for durability */
  assert_int_equal(lcores[0].stats.rx_packets, 15);
  assert_int_equal(shard_value(0, "flood.x"), 4);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BUDGET_STATSD], 6);
  assert_int_equal(lcores[0].stats.batches_applied, 2);
  assert_int_equal(shard_value(0, "pay.ok"), 20);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BUDGET_RELIABLE], 1);
  assert_int_equal(lcores[0].stats.icmp_replies, 1);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BUDGET_CONTROL], 1);
  /* The next poll has its budget back. */
  inject(0, udp_frame(8125, line, (uint32_t)strlen(line), OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 8), 0);
  assert_int_equal(shard_value(0, "flood.x"), 5);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_BUDGET_STATSD], 6);
}

/* statsd through the lcore: its share of the shard, no writes to a producer's counter (C1). */
static void test_statsd_class_rights(void **state)
{
  (void)state;
  uint8_t batch[256];
  size_t size = make_batch(batch, sizeof batch, 2, 1, dp_config.key); /* pay.ok, pay.fail */
  inject(0, udp_frame(8126, batch, (uint32_t)size, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  dp_config.statsd_counters_max = 3; /* two reliable counters, then statsd's three */
  const char *lines = "pay.ok:9223372036854775000|c\ns.1:1|c\ns.2:1|c\ns.3:1|c\ns.4:1|c\ns.1:1|c\n";
  inject(0, udp_frame(8125, lines, (uint32_t)strlen(lines), OUR_IP));
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  assert_int_equal(shard_value(0, "pay.ok"), 10);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_RELIABLE_COUNTER], 1);
  assert_int_equal(shard_value(0, "s.1"), 2);
  assert_int_equal(shard_value(0, "s.4"), INT64_MIN);
  assert_int_equal(lcores[0].stats.reasons[TALLY_REASON_STATSD_SHARE_FULL], 1);
  assert_int_equal(lcores[0].stats.statsd_increments, 4);
}

static void test_datagram_too_large_dropped_alone(void **state)
{
  (void)state;
  static char payload[TALLY_DATAGRAM_SIZE_MAX + 8];
  uint32_t size = repeated_payload(payload, sizeof payload, "big:1|c\n",
    TALLY_DATAGRAM_SIZE_MAX / 8, "\n");
  assert_int_equal(size, TALLY_DATAGRAM_SIZE_MAX + 1);
  inject(0, udp_frame(8125, payload, size, OUR_IP));
  size = repeated_payload(payload, sizeof payload, "lim:1|c\n", TALLY_DATAGRAM_SIZE_MAX / 8, "");
  assert_int_equal(size, TALLY_DATAGRAM_SIZE_MAX);
  inject(0, udp_frame(8125, payload, size, OUR_IP));
  inject(0, udp_frame(8125, "after:1|c", 9, OUR_IP));
  struct rte_mbuf *out[4];
  assert_int_equal(poll_and_collect(0, out, 4), 0);
  const uint64_t *reasons = lcores[0].stats.reasons;
  assert_int_equal(reasons[TALLY_REASON_DATAGRAM_TOO_LARGE], 1);
  for (uint32_t reason = 0; reason < TALLY_REASON_COUNT; reason++) {
    if (reason != TALLY_REASON_DATAGRAM_TOO_LARGE) assert_int_equal(reasons[reason], 0);
  }
  assert_int_equal(shard_value(0, "big"), INT64_MIN);
  assert_int_equal(shard_value(0, "lim"), TALLY_DATAGRAM_SIZE_MAX / 8);
  assert_int_equal(shard_value(0, "after"), 1);
  assert_int_equal(lcores[0].stats.statsd_increments, TALLY_DATAGRAM_SIZE_MAX / 8 + 1);
}

/*
 * Issue 14, M1: the mbuf pool holds what every queue, FIFO and steering ring
 * can hold at once. Failed before: the pool was dataplane.mbufs whatever the
 * lcore count (4096 here, below the 8768 two lcores on one port can hold).
 */
static void test_mbuf_pool_sized_for_the_queues(void **state)
{
  (void)state;
  assert_int_equal(tally_mbufs_needed(1, 1),
    TALLY_RX_DESC + TALLY_TX_DESC + TALLY_ACKS_PENDING_MAX + TALLY_MBUF_CACHE_SIZE +
    TALLY_BURST_SIZE);
  assert_true(tally_mbufs_needed(1, 16) > tally_mbufs_needed(1, 2) * 8u); /* steering: n^2 */
  assert_true(tally_mbufs_needed(TALLY_PORTS_MAX, TALLY_LCORES_MAX) <= TALLY_MBUFS_NEEDED_MAX);
  assert_true(ports.mbufs >= tally_mbufs_needed(ports.count, LCORES));
  assert_int_equal(rte_mempool_avail_count(ports.pool) + rte_mempool_in_use_count(ports.pool),
    ports.mbufs);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_mbuf_pool_sized_for_the_queues),
    cmocka_unit_test_setup_teardown(test_arp_request_answered, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_icmp_echo_answered, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_statsd_counts_and_rejects, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_statsd_tag_policies, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_replies_only_to_unicast_without_options, setup_one,
      teardown_one),
    cmocka_unit_test_setup_teardown(test_replies_rate_limited, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_frames_not_for_us_dropped, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_datagram_too_large_dropped_alone, setup_one,
      teardown_one),
    cmocka_unit_test_setup_teardown(test_batch_acked_only_when_durable, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_batch_tagged_pairs, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_batch_bad_mac_unanswered, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_derived_key_speaks_only_as_itself, setup_one,
      teardown_one),
    cmocka_unit_test_setup_teardown(test_shared_mode_refuses_derived_key, setup_one,
      teardown_one),
    cmocka_unit_test_setup_teardown(test_log_mode_record_handed_over, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_log_ring_full_counted, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_batch_steered_to_owner, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_forged_batches_never_steered, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_batch_for_another_node_refused, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_derived_key_cached, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_steering_ring_full_counted, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_acks_pending_full_counted, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_replayed_batch_cannot_fill_fifo, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_replay_from_another_node_not_counted, setup_one,
      teardown_one),
    cmocka_unit_test_setup_teardown(test_idle_backoff_after_empty_polls, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_class_budgets_per_poll, setup_one, teardown_one),
    cmocka_unit_test_setup_teardown(test_statsd_class_rights, setup_one, teardown_one),
  };
  return cmocka_run_group_tests(tests, setup_all, NULL);
}
