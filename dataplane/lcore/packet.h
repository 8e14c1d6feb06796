/*
 * packet.h — what the dataplane does with one frame, before and after the
 * counting: classify it (ARP, ICMP echo, statsd UDP, binary UDP, or a drop
 * with its reason) and turn it, in place, into its reply. No allocation, no
 * copies of payloads; every header read is bounds-checked against the frame.
 */
#ifndef TALLY_PACKET_H
#define TALLY_PACKET_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "tally/key.h"
#include "tally/limits.h"
#include "tally/reasons.h"
#include "tally/statsd_policy.h"

struct tally_shard;

/* The tables the dataplane reads, published by the control thread via RCU. */
struct tally_dp_config {
  uint64_t generation;        /* bumped on every swap */
  uint32_t ipv4_be;           /* our address, network byte order */
  uint16_t statsd_port_be;    /* 0: statsd disabled */
  uint16_t binary_port_be;    /* 0: binary protocol disabled */
  uint8_t key[TALLY_KEY_SIZE];/* ingest MAC key */
  /* ingest.producer_keys = derived: each producer's MAC key is derived from key (M2). */
  bool producer_keys_derived;
  struct rte_ether_addr port_mac[TALLY_PORTS_MAX];
  /*
   * Cross-node dedup (cluster): the bound replica tables, members and
   * retired nodes alike, whose producer records say which batches each peer
   * applied (written by the cluster thread, read checksum-verified). A batch
   * one of them applied is answered DUPLICATE. A membership reload that binds
   * a region publishes a new copy; a table is never unbound, so a pointer
   * stays valid for the store's life. 0: single node.
   */
  const struct tally_shard *remote_dedup[TALLY_REPLICA_REGIONS_MAX];
  uint32_t remote_dedup_count;
  /*
   * Whether a peer's record of a batch may be answered DUPLICATE: it proves
   * two copies (the peer's and this node's replica of it), a write quorum
   * only with W <= 2. false (W >= 3, and any config built without the
   * cluster): the batch is applied here, and the cluster thread's claims
   * settle the two applies (docs/cluster.md, cross-node dedup).
   */
  bool remote_duplicate_is_quorum;
  /* DogStatsD tags: keep, drop, or an allow-list (ingest.statsd_tags; restart to change). */
  struct tally_tags_policy statsd_tags;
  /*
   * Traffic classes as bulkheads (issue 14, C1): statsd's share of each
   * shard's counters (ingest.statsd_counters_percent of counters_max),
   * whether statsd may add to a reliable producer's counter
   * (ingest.statsd_writes_reliable), and each class's packets per poll
   * (dataplane.*_per_poll, each >= 1).
   */
  uint32_t statsd_counters_max;
  bool statsd_writes_reliable;
  uint32_t statsd_per_poll;
  uint32_t reliable_per_poll;
  uint32_t control_per_poll;
  /* Who may send statsd: allow-list and per-source budget (restart to change). */
  struct tally_statsd_policy statsd_policy;
};

enum tally_packet_kind {
  TALLY_PACKET_DROP = 0,  /* reason says why */
  TALLY_PACKET_ARP_REQUEST,
  TALLY_PACKET_ICMP_ECHO,
  TALLY_PACKET_STATSD,
  TALLY_PACKET_BINARY,
};

struct tally_packet {
  enum tally_packet_kind kind;
  enum tally_reason reason;   /* for DROP */
  const uint8_t *payload;     /* UDP payload (STATSD, BINARY) */
  uint32_t source_ipv4;       /* IPv4 source, host byte order (STATSD, BINARY) */
  uint32_t payload_len;
};

/*
 * The token bucket that limits an lcore's ARP and ICMP replies
 * (TALLY_REPLIES_PER_S, depth TALLY_REPLIES_BURST). Zeroed, it starts full.
 */
struct tally_reply_bucket {
  uint64_t tokens;
  uint64_t last_tsc;  /* when tokens were last added */
};

/* Takes a token at now_tsc (a TSC of tsc_hz ticks a second): true to reply. Pure. */
bool tally_reply_bucket_take(struct tally_reply_bucket *bucket, uint64_t now_tsc,
  uint64_t tsc_hz);

/* Classifies a frame received on port (its MAC is in config). */
void tally_packet_classify(const struct rte_mbuf *frame, const struct tally_dp_config *config,
  struct tally_packet *packet);

/* Rewrites an ARP request for our address into the reply (same size). */
void tally_packet_arp_reply(struct rte_mbuf *frame, const struct rte_ether_addr *our_mac);

/* Rewrites an ICMP echo request into the echo reply (same size). */
void tally_packet_icmp_reply(struct rte_mbuf *frame);

/*
 * Rewrites a UDP datagram into a reply from us to its sender whose payload
 * is the first payload_len bytes at the datagram's payload (the caller has
 * written them). payload_len must not exceed the request's payload length:
 * a reply is never larger than its request.
 */
void tally_packet_udp_reply(struct rte_mbuf *frame, uint32_t payload_len);

/* Pointer to the UDP payload of a classified STATSD/BINARY frame (writable). */
uint8_t *tally_packet_udp_payload(struct rte_mbuf *frame);

#endif
