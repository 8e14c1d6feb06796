/*
 * fuzz_packet.c — libFuzzer target for dataplane/packet.c, the first code to
 * see untrusted frames: classification, then the in-place reply the lcore
 * would send. The frame lives in a stack mbuf (no EAL, no mempool); the first
 * input byte picks the RX offload flags and which ports are on, the second
 * the reply's payload length, the rest is the frame.
 *
 * Invariants: exactly one outcome (a drop with a reason, or a kind with no
 * reason); a payload lies inside the frame, within TALLY_DATAGRAM_SIZE_MAX,
 * and is what the IPv4/UDP headers say (checked here from the bytes); each
 * kind matches the frame's headers; a reply is never larger than its
 * request, keeps every byte it does not own, and carries valid checksums.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FRAME_SIZE_MAX 2048u
#define ETHER_SIZE 14u
#define OUR_IPV4 RTE_BE32(RTE_IPV4(10, 0, 0, 1))
#define STATSD_PORT 8125u
#define BINARY_PORT 8126u

static const uint64_t ip_flags[4] = { RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN,
  RTE_MBUF_F_RX_IP_CKSUM_BAD, RTE_MBUF_F_RX_IP_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_NONE };
static const uint64_t l4_flags[4] = { RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN,
  RTE_MBUF_F_RX_L4_CKSUM_BAD, RTE_MBUF_F_RX_L4_CKSUM_GOOD, RTE_MBUF_F_RX_L4_CKSUM_NONE };

static uint16_t be16(const uint8_t *bytes)
{
  return (uint16_t)(bytes[0] << 8 | bytes[1]);
}

/* The payload a UDP frame must have, read from its bytes; false if not UDP to us. */
static bool udp_payload_of(const uint8_t *frame, uint32_t frame_len, uint32_t *offset,
  uint32_t *length, uint16_t *port)
{
  if (frame_len < ETHER_SIZE + 20u || be16(frame + 12) != RTE_ETHER_TYPE_IPV4) return false;
  const uint8_t *ip = frame + ETHER_SIZE;
  uint32_t header_len = (uint32_t)(ip[0] & 0x0fu) * 4u;
  uint32_t total_len = be16(ip + 2);
  if (ip[9] != IPPROTO_UDP || header_len < 20u || total_len > frame_len - ETHER_SIZE) {
    return false;
  }
  if (total_len < header_len + 8u) return false;
  const uint8_t *udp = ip + header_len;
  *offset = ETHER_SIZE + header_len + 8u;
  *length = be16(udp + 4) - 8u;
  *port = be16(udp + 2);
  return true;
}

static void check_classified(const uint8_t *frame, uint32_t frame_len,
  const struct tally_dp_config *config, const struct tally_packet *packet)
{
  assert(packet->kind <= TALLY_PACKET_BINARY);
  if (packet->kind == TALLY_PACKET_DROP) {
    assert(packet->reason != TALLY_OK);
    assert(packet->reason < TALLY_REASON_COUNT);
    return;
  }
  assert(packet->reason == TALLY_OK);
  if (packet->kind == TALLY_PACKET_ARP_REQUEST) {
    assert(frame_len >= ETHER_SIZE + sizeof(struct rte_arp_hdr));
    assert(be16(frame + 12) == RTE_ETHER_TYPE_ARP);
    assert(be16(frame + ETHER_SIZE + 6) == RTE_ARP_OP_REQUEST);
    assert(memcmp(frame + ETHER_SIZE + 24, &config->ipv4_be, 4) == 0); /* target IP */
    return;
  }
  assert(be16(frame + 12) == RTE_ETHER_TYPE_IPV4);
  assert(memcmp(frame + ETHER_SIZE + 16, &config->ipv4_be, 4) == 0); /* to us */
  if (packet->kind == TALLY_PACKET_ICMP_ECHO) {
    assert(frame[ETHER_SIZE + 9] == IPPROTO_ICMP);
    return;
  }
  uint32_t offset = 0, length = 0;
  uint16_t port = 0;
  assert(udp_payload_of(frame, frame_len, &offset, &length, &port));
  assert(packet->payload == frame + offset);
  assert(packet->payload_len == length);
  assert(packet->payload_len <= TALLY_DATAGRAM_SIZE_MAX);
  assert(offset + length <= frame_len);
  assert(port == (packet->kind == TALLY_PACKET_STATSD ? STATSD_PORT : BINARY_PORT));
}

/* The UDP checksum over the pseudo-header, summed here byte by byte. */
static bool udp_checksum_ok(const uint8_t *ip, const uint8_t *udp, uint32_t udp_len)
{
  if (be16(udp + 6) == 0) return false; /* the reply always carries one */
  uint32_t sum = 0;
  for (uint32_t i = 12; i < 20; i += 2) sum += be16(ip + i); /* addresses */
  sum += IPPROTO_UDP;
  sum += udp_len;
  for (uint32_t i = 0; i + 1u < udp_len; i += 2) sum += be16(udp + i);
  if (udp_len % 2u) sum += (uint32_t)udp[udp_len - 1u] << 8;
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return sum == 0xffffu;
}

/* What every IPv4 reply holds: swapped addresses, a valid header checksum. */
static void check_ipv4_reply(const uint8_t *request, const uint8_t *reply)
{
  assert(memcmp(reply, request + 6, 6) == 0);     /* to the sender's MAC */
  assert(memcmp(reply + 6, request, 6) == 0);     /* from the MAC it was sent to */
  const uint8_t *ip = reply + ETHER_SIZE;
  assert(memcmp(ip + 12, request + ETHER_SIZE + 16, 4) == 0);
  assert(memcmp(ip + 16, request + ETHER_SIZE + 12, 4) == 0);
  uint32_t header_len = (uint32_t)(ip[0] & 0x0fu) * 4u;
  assert(rte_raw_cksum(ip, header_len) == 0xffff);
}

static void check_reply(struct rte_mbuf *mbuf, const struct tally_packet *packet,
  const uint8_t *request, uint32_t request_len, uint8_t length_byte)
{
  const struct rte_ether_addr our_mac = { .addr_bytes = { 2, 0, 0, 0, 0, 1 } };
  uint8_t *frame = rte_pktmbuf_mtod(mbuf, uint8_t *);
  if (packet->kind == TALLY_PACKET_ARP_REQUEST) {
    tally_packet_arp_reply(mbuf, &our_mac);
    assert(rte_pktmbuf_data_len(mbuf) == request_len);
    assert(be16(frame + ETHER_SIZE + 6) == RTE_ARP_OP_REPLY);
    assert(memcmp(frame, request + 6, 6) == 0);
    assert(memcmp(frame + ETHER_SIZE + 14, request + ETHER_SIZE + 24, 4) == 0); /* our IP */
    assert(memcmp(frame + ETHER_SIZE + 24, request + ETHER_SIZE + 14, 4) == 0); /* theirs */
    uint32_t arp_end = ETHER_SIZE + (uint32_t)sizeof(struct rte_arp_hdr);
    assert(memcmp(frame + arp_end, request + arp_end, request_len - arp_end) == 0);
    return;
  }
  if (packet->kind == TALLY_PACKET_ICMP_ECHO) {
    tally_packet_icmp_reply(mbuf);
    assert(rte_pktmbuf_data_len(mbuf) == request_len);
    check_ipv4_reply(request, frame);
    const uint8_t *ip = frame + ETHER_SIZE;
    uint32_t header_len = (uint32_t)(ip[0] & 0x0fu) * 4u;
    uint32_t icmp_len = be16(ip + 2) - header_len;
    assert(ip[header_len] == RTE_IP_ICMP_ECHO_REPLY);
    assert(rte_raw_cksum(ip + header_len, icmp_len) == 0xffff);
    /* The echo data comes back as it was sent. */
    assert(memcmp(ip + header_len + 4, request + ETHER_SIZE + header_len + 4, icmp_len - 4) == 0);
    return;
  }
  /* STATSD or BINARY: the lcore answers in place with at most the request's payload. */
  uint32_t payload_len = packet->payload_len == 0 ? 0 : length_byte % (packet->payload_len + 1u);
  uint8_t *payload = tally_packet_udp_payload(mbuf);
  assert(payload == packet->payload);
  memset(payload, 0xa5, payload_len);
  tally_packet_udp_reply(mbuf, payload_len);
  uint32_t reply_len = rte_pktmbuf_data_len(mbuf);
  assert(reply_len <= request_len);
  assert(mbuf->pkt_len == reply_len);
  check_ipv4_reply(request, frame);
  const uint8_t *ip = frame + ETHER_SIZE;
  uint32_t header_len = (uint32_t)(ip[0] & 0x0fu) * 4u;
  const uint8_t *udp = ip + header_len;
  assert(reply_len == ETHER_SIZE + header_len + 8u + payload_len);
  assert(be16(ip + 2) == header_len + 8u + payload_len);
  assert(be16(udp + 4) == 8u + payload_len);
  assert(memcmp(udp, request + ETHER_SIZE + header_len + 2, 2) == 0); /* ports swapped */
  assert(memcmp(udp + 2, request + ETHER_SIZE + header_len, 2) == 0);
  assert(udp_checksum_ok(ip, udp, 8u + payload_len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2) return 0;
  uint8_t flags = data[0];
  uint8_t length_byte = data[1];
  data += 2;
  size -= 2;
  if (size > FRAME_SIZE_MAX) size = FRAME_SIZE_MAX;
  static uint8_t buffer[RTE_PKTMBUF_HEADROOM + FRAME_SIZE_MAX] __attribute__((aligned(64)));
  static uint8_t request[FRAME_SIZE_MAX];
  memcpy(buffer + RTE_PKTMBUF_HEADROOM, data, size);
  memcpy(request, data, size);
  struct rte_mbuf mbuf;
  memset(&mbuf, 0, sizeof(mbuf));
  mbuf.buf_addr = buffer;
  mbuf.buf_len = sizeof(buffer);
  mbuf.data_off = RTE_PKTMBUF_HEADROOM;
  mbuf.data_len = (uint16_t)size;
  mbuf.pkt_len = (uint32_t)size;
  mbuf.nb_segs = (flags & 0x80u) ? 2 : 1;
  mbuf.ol_flags = ip_flags[flags & 3u] | l4_flags[(flags >> 2) & 3u];
  struct tally_dp_config config;
  memset(&config, 0, sizeof(config));
  config.ipv4_be = OUR_IPV4;
  config.statsd_port_be = (flags & 0x10u) ? 0 : rte_cpu_to_be_16(STATSD_PORT);
  config.binary_port_be = (flags & 0x20u) ? 0 : rte_cpu_to_be_16(BINARY_PORT);
  struct tally_packet packet;
  memset(&packet, 0x5a, sizeof(packet));
  tally_packet_classify(&mbuf, &config, &packet);
  if (mbuf.nb_segs != 1) {
    assert(packet.kind == TALLY_PACKET_DROP);
    assert(packet.reason == TALLY_REASON_FRAME_MULTI_SEGMENT);
    return 0;
  }
  const uint8_t *frame = buffer + RTE_PKTMBUF_HEADROOM;
  assert(memcmp(frame, request, size) == 0); /* classifying writes nothing */
  check_classified(frame, (uint32_t)size, &config, &packet);
  if (packet.kind != TALLY_PACKET_DROP) check_reply(&mbuf, &packet, request, (uint32_t)size,
    length_byte);
  return 0;
}
