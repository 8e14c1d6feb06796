/*
 * packet.c — frame classification and in-place replies for the dataplane:
 * ARP for our address, ICMP echo, and UDP to the statsd and binary ports.
 * Every header is bounds-checked against the frame before it is read; a
 * frame that is not for us leaves with exactly one counted reason. Nothing
 * is answered to a source that is not unicast (broadcast, multicast, zero,
 * loopback; a group MAC), and an IPv4 header with options is dropped, so a
 * reply never carries options back (issue 14, L1). Replies to ARP and ICMP
 * are rate-limited by the lcore (tally_reply_bucket_take).
 */
#include <assert.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "packet.h"

#define ETHER_HEADER_SIZE ((uint32_t)sizeof(struct rte_ether_hdr))
#define IPV4_HEADER_SIZE_MIN ((uint32_t)sizeof(struct rte_ipv4_hdr))
#define UDP_HEADER_SIZE ((uint32_t)sizeof(struct rte_udp_hdr))
#define ICMP_HEADER_SIZE ((uint32_t)sizeof(struct rte_icmp_hdr))
#define REPLY_TTL 64u

static_assert(sizeof(struct rte_ether_hdr) == 14, "ethernet header");
static_assert(sizeof(struct rte_ipv4_hdr) == 20, "ipv4 header");
static_assert(sizeof(struct rte_udp_hdr) == 8, "udp header");

static void drop(struct tally_packet *packet, enum tally_reason reason)
{
  assert(reason != TALLY_OK);
  assert(reason < TALLY_REASON_COUNT);
  packet->kind = TALLY_PACKET_DROP;
  packet->reason = reason;
}

/* An address a reply may go to: not 0/8, 127/8, multicast (224/4) or broadcast. */
static bool ipv4_unicast_source(rte_be32_t address_be)
{
  uint32_t address = rte_be_to_cpu_32(address_be);
  uint32_t first = address >> 24;
  return first != 0u && first != 127u && first < 224u;
}

static void classify_arp(const struct rte_mbuf *frame, const struct tally_dp_config *config,
  struct tally_packet *packet)
{
  uint32_t frame_len = rte_pktmbuf_data_len(frame);
  if (frame_len < ETHER_HEADER_SIZE + (uint32_t)sizeof(struct rte_arp_hdr)) {
    drop(packet, TALLY_REASON_FRAME_TRUNCATED);
    return;
  }
  const struct rte_arp_hdr *arp =
    rte_pktmbuf_mtod_offset(frame, const struct rte_arp_hdr *, ETHER_HEADER_SIZE);
  bool request = arp->arp_hardware == rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) &&
    arp->arp_protocol == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) &&
    arp->arp_hlen == RTE_ETHER_ADDR_LEN && arp->arp_plen == 4 &&
    arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
  if (!request || arp->arp_data.arp_tip != config->ipv4_be) {
    drop(packet, TALLY_REASON_ARP_IGNORED);
    return;
  }
  const struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, const struct rte_ether_hdr *);
  if (!rte_is_valid_assigned_ether_addr(&ether->src_addr) ||
      !rte_is_valid_assigned_ether_addr(&arp->arp_data.arp_sha) ||
      !ipv4_unicast_source(arp->arp_data.arp_sip)) {
    drop(packet, TALLY_REASON_SOURCE_NOT_UNICAST);
    return;
  }
  packet->kind = TALLY_PACKET_ARP_REQUEST;
}

static void classify_icmp(const uint8_t *l4, uint32_t l4_len, struct tally_packet *packet)
{
  assert(l4 != NULL);
  if (l4_len < ICMP_HEADER_SIZE) {
    drop(packet, TALLY_REASON_ICMP_IGNORED);
    return;
  }
  const struct rte_icmp_hdr *icmp = (const struct rte_icmp_hdr *)l4;
  if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0 ||
      rte_raw_cksum(l4, l4_len) != 0xffff) {
    drop(packet, TALLY_REASON_ICMP_IGNORED);
    return;
  }
  packet->kind = TALLY_PACKET_ICMP_ECHO;
}

static void classify_udp(const struct rte_mbuf *frame, const uint8_t *l4, uint32_t l4_len,
  const struct tally_dp_config *config, struct tally_packet *packet)
{
  assert(l4 != NULL);
  if (l4_len < UDP_HEADER_SIZE) {
    drop(packet, TALLY_REASON_FRAME_TRUNCATED);
    return;
  }
  const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
  uint32_t udp_len = rte_be_to_cpu_16(udp->dgram_len);
  if (udp_len < UDP_HEADER_SIZE || udp_len > l4_len) {
    drop(packet, TALLY_REASON_FRAME_TRUNCATED);
    return;
  }
  if ((frame->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD) {
    drop(packet, TALLY_REASON_L4_CHECKSUM_BAD);
    return;
  }
  uint32_t payload_len = udp_len - UDP_HEADER_SIZE;
  if (payload_len > TALLY_DATAGRAM_SIZE_MAX) {
    drop(packet, TALLY_REASON_DATAGRAM_TOO_LARGE);
    return;
  }
  packet->payload = l4 + UDP_HEADER_SIZE;
  packet->payload_len = payload_len;
  if (config->statsd_port_be != 0 && udp->dst_port == config->statsd_port_be) {
    packet->kind = TALLY_PACKET_STATSD;
  } else if (config->binary_port_be != 0 && udp->dst_port == config->binary_port_be) {
    packet->kind = TALLY_PACKET_BINARY;
  } else {
    drop(packet, TALLY_REASON_UDP_PORT_UNKNOWN);
  }
}

/* Checks the IPv4 header; returns its length, or 0 after recording the drop. */
static uint32_t check_ipv4(const struct rte_mbuf *frame, const struct rte_ipv4_hdr *ip,
  uint32_t ip_len_available, const struct tally_dp_config *config, struct tally_packet *packet)
{
  uint32_t header_len = (uint32_t)(ip->version_ihl & 0x0fu) * 4u;
  uint32_t total_len = rte_be_to_cpu_16(ip->total_length);
  if ((ip->version_ihl >> 4) != 4u || header_len < IPV4_HEADER_SIZE_MIN ||
      header_len > ip_len_available || total_len < header_len ||
      total_len > ip_len_available) {
    drop(packet, TALLY_REASON_IP_BAD_HEADER);
    return 0;
  }
  uint64_t ip_flags = frame->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
  if (ip_flags == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
      (ip_flags != RTE_MBUF_F_RX_IP_CKSUM_GOOD && rte_raw_cksum(ip, header_len) != 0xffff)) {
    drop(packet, TALLY_REASON_IP_BAD_HEADER);
    return 0;
  }
  if (ip->dst_addr != config->ipv4_be) {
    drop(packet, TALLY_REASON_IP_NOT_FOR_US);
    return 0;
  }
  if ((ip->fragment_offset &
       rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0) {
    drop(packet, TALLY_REASON_IP_FRAGMENT);
    return 0;
  }
  if (header_len != IPV4_HEADER_SIZE_MIN) { /* a reply would echo them (record route...) */
    drop(packet, TALLY_REASON_IP_OPTIONS);
    return 0;
  }
  const struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, const struct rte_ether_hdr *);
  if (!ipv4_unicast_source(ip->src_addr) || !rte_is_valid_assigned_ether_addr(&ether->src_addr)) {
    drop(packet, TALLY_REASON_SOURCE_NOT_UNICAST);
    return 0;
  }
  return header_len;
}

void tally_packet_classify(const struct rte_mbuf *frame, const struct tally_dp_config *config,
  struct tally_packet *packet)
{
  assert(frame != NULL);
  assert(config != NULL);
  packet->payload = NULL;
  packet->payload_len = 0;
  packet->source_ipv4 = 0;
  packet->reason = TALLY_OK;
  if (frame->nb_segs != 1) {
    drop(packet, TALLY_REASON_FRAME_MULTI_SEGMENT);
    return;
  }
  uint32_t frame_len = rte_pktmbuf_data_len(frame);
  if (frame_len < ETHER_HEADER_SIZE) {
    drop(packet, TALLY_REASON_FRAME_TRUNCATED);
    return;
  }
  const struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, const struct rte_ether_hdr *);
  if (ether->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
    classify_arp(frame, config, packet);
    return;
  }
  if (ether->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
    drop(packet, TALLY_REASON_NOT_IPV4);
    return;
  }
  if (frame_len < ETHER_HEADER_SIZE + IPV4_HEADER_SIZE_MIN) {
    drop(packet, TALLY_REASON_FRAME_TRUNCATED);
    return;
  }
  const struct rte_ipv4_hdr *ip =
    rte_pktmbuf_mtod_offset(frame, const struct rte_ipv4_hdr *, ETHER_HEADER_SIZE);
  uint32_t header_len = check_ipv4(frame, ip, frame_len - ETHER_HEADER_SIZE, config, packet);
  if (header_len == 0) return;
  const uint8_t *l4 = (const uint8_t *)ip + header_len;
  uint32_t l4_len = rte_be_to_cpu_16(ip->total_length) - header_len;
  if (ip->next_proto_id == IPPROTO_UDP) {
    packet->source_ipv4 = rte_be_to_cpu_32(ip->src_addr);
    classify_udp(frame, l4, l4_len, config, packet);
  } else if (ip->next_proto_id == IPPROTO_ICMP) {
    classify_icmp(l4, l4_len, packet);
  } else {
    drop(packet, TALLY_REASON_IP_PROTO_UNKNOWN);
  }
}

bool tally_reply_bucket_take(struct tally_reply_bucket *bucket, uint64_t now_tsc,
  uint64_t tsc_hz)
{
  assert(tsc_hz > 0);
  assert(bucket->tokens <= TALLY_REPLIES_BURST);
  if (now_tsc > bucket->last_tsc) {
    uint64_t elapsed = now_tsc - bucket->last_tsc;
    if (elapsed >= tsc_hz) { /* a second or more: full (TALLY_REPLIES_PER_S >= the depth) */
      bucket->tokens = TALLY_REPLIES_BURST;
      bucket->last_tsc = now_tsc;
    } else {
      /* elapsed < tsc_hz, so the product stays far below 2^64 for any real TSC. */
      uint64_t added = elapsed * TALLY_REPLIES_PER_S / tsc_hz;
      if (added > 0) {
        bucket->tokens = bucket->tokens + added > TALLY_REPLIES_BURST ? TALLY_REPLIES_BURST :
          bucket->tokens + added;
        bucket->last_tsc += added * tsc_hz / TALLY_REPLIES_PER_S; /* keeps the remainder */
      }
    }
  }
  if (bucket->tokens == 0) return false;
  bucket->tokens--;
  return true;
}

void tally_packet_arp_reply(struct rte_mbuf *frame, const struct rte_ether_addr *our_mac)
{
  assert(rte_pktmbuf_data_len(frame) >= ETHER_HEADER_SIZE + sizeof(struct rte_arp_hdr));
  struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, struct rte_ether_hdr *);
  struct rte_arp_hdr *arp =
    rte_pktmbuf_mtod_offset(frame, struct rte_arp_hdr *, ETHER_HEADER_SIZE);
  assert(arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST));
  rte_ether_addr_copy(&ether->src_addr, &ether->dst_addr);
  rte_ether_addr_copy(our_mac, &ether->src_addr);
  arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
  uint32_t our_ip = arp->arp_data.arp_tip;
  rte_ether_addr_copy(&arp->arp_data.arp_sha, &arp->arp_data.arp_tha);
  arp->arp_data.arp_tip = arp->arp_data.arp_sip;
  rte_ether_addr_copy(our_mac, &arp->arp_data.arp_sha);
  arp->arp_data.arp_sip = our_ip;
  frame->ol_flags = 0;
}

/* Swaps Ethernet and IPv4 addresses, resets TTL; returns the IPv4 header. */
static struct rte_ipv4_hdr *reverse_ipv4(struct rte_mbuf *frame)
{
  struct rte_ether_hdr *ether = rte_pktmbuf_mtod(frame, struct rte_ether_hdr *);
  struct rte_ether_addr mac = ether->src_addr;
  ether->src_addr = ether->dst_addr;
  ether->dst_addr = mac;
  struct rte_ipv4_hdr *ip =
    rte_pktmbuf_mtod_offset(frame, struct rte_ipv4_hdr *, ETHER_HEADER_SIZE);
  uint32_t address = ip->src_addr;
  ip->src_addr = ip->dst_addr;
  ip->dst_addr = address;
  ip->time_to_live = REPLY_TTL;
  ip->fragment_offset = 0;
  frame->ol_flags = 0;
  assert((ip->version_ihl >> 4) == 4u);
  assert(ip->src_addr != 0);
  return ip;
}

static void ipv4_checksum(struct rte_ipv4_hdr *ip, uint32_t header_len)
{
  ip->hdr_checksum = 0;
  ip->hdr_checksum = (uint16_t)~rte_raw_cksum(ip, header_len);
  assert(rte_raw_cksum(ip, header_len) == 0xffff);
}

void tally_packet_icmp_reply(struct rte_mbuf *frame)
{
  struct rte_ipv4_hdr *ip = reverse_ipv4(frame);
  uint32_t header_len = (uint32_t)(ip->version_ihl & 0x0fu) * 4u;
  uint32_t icmp_len = rte_be_to_cpu_16(ip->total_length) - header_len;
  assert(icmp_len >= ICMP_HEADER_SIZE);
  ipv4_checksum(ip, header_len);
  struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)((uint8_t *)ip + header_len);
  assert(icmp->icmp_type == RTE_IP_ICMP_ECHO_REQUEST);
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
  icmp->icmp_cksum = 0;
  icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, icmp_len);
}

uint8_t *tally_packet_udp_payload(struct rte_mbuf *frame)
{
  struct rte_ipv4_hdr *ip =
    rte_pktmbuf_mtod_offset(frame, struct rte_ipv4_hdr *, ETHER_HEADER_SIZE);
  uint32_t header_len = (uint32_t)(ip->version_ihl & 0x0fu) * 4u;
  assert(header_len >= IPV4_HEADER_SIZE_MIN);
  assert(ip->next_proto_id == IPPROTO_UDP);
  return (uint8_t *)ip + header_len + UDP_HEADER_SIZE;
}

void tally_packet_udp_reply(struct rte_mbuf *frame, uint32_t payload_len)
{
  struct rte_ipv4_hdr *ip = reverse_ipv4(frame);
  uint32_t header_len = (uint32_t)(ip->version_ihl & 0x0fu) * 4u;
  struct rte_udp_hdr *udp = (struct rte_udp_hdr *)((uint8_t *)ip + header_len);
  uint32_t request_payload_len = rte_be_to_cpu_16(udp->dgram_len) - UDP_HEADER_SIZE;
  assert(payload_len <= request_payload_len);
  uint16_t port = udp->src_port;
  udp->src_port = udp->dst_port;
  udp->dst_port = port;
  udp->dgram_len = rte_cpu_to_be_16((uint16_t)(UDP_HEADER_SIZE + payload_len));
  ip->total_length = rte_cpu_to_be_16((uint16_t)(header_len + UDP_HEADER_SIZE + payload_len));
  ipv4_checksum(ip, header_len);
  udp->dgram_cksum = 0;
  uint16_t sum = rte_ipv4_udptcp_cksum(ip, udp);
  udp->dgram_cksum = sum == 0 ? 0xffff : sum;
  uint32_t frame_len = ETHER_HEADER_SIZE + header_len + UDP_HEADER_SIZE + payload_len;
  assert(frame_len <= rte_pktmbuf_data_len(frame));
  frame->data_len = (uint16_t)frame_len;
  frame->pkt_len = frame_len;
}
