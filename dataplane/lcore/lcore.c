/*
 * lcore.c — the dataplane polling loop: burst frames from this lcore's RX
 * queue on every port, classify them, count statsd lines and reliable
 * batches into this lcore's shard, answer ARP / ICMP / acks in place, and
 * send acks only once the persist that covers their batch has completed.
 * Replayed batches (issue 14, H3) take no more than their producer's share
 * of the pending-ack FIFO, which only a batch with a good MAC reaches; a
 * duplicate of what is durable (or a peer applied) is answered at once.
 *
 * Nothing here takes a lock, allocates, or makes a system call, but the
 * idle back-off's sleep (dataplane.idle_sleep_us, off by default), taken
 * only after TALLY_IDLE_POLLS_BEFORE_SLEEP empty polls. Statistics
 * accumulate in the lcore's own cache lines and are read relaxed by the
 * control thread.
 */
#include <assert.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>
#include <urcu/urcu-qsbr.h>

#include "tally/batch_wire.h"
#include "lcore.h"
#include "tally/name.h"
#include "statsd.h"
#include "store_format.h"

#define PREFETCH_OFFSET 3u

/* Single-writer statistic update: a plain load and a relaxed store, no lock. */
static inline void stat_add(uint64_t *stat, uint64_t amount)
{
  __atomic_store_n(stat, *stat + amount, __ATOMIC_RELAXED);
}

static inline void count_reason(struct tally_lcore *lcore, enum tally_reason reason)
{
  assert(reason != TALLY_OK);
  assert((unsigned)reason < TALLY_REASON_COUNT);
  stat_add(&lcore->stats.reasons[reason], 1);
}

static void tx_flush(struct tally_lcore *lcore, uint16_t port)
{
  struct tally_tx_buffer *buffer = &lcore->tx[port];
  assert(buffer->count <= TALLY_BURST_SIZE);
  if (buffer->count == 0) return;
  uint16_t sent = rte_eth_tx_burst(port, (uint16_t)lcore->index, buffer->frames, buffer->count);
  assert(sent <= buffer->count);
  for (uint16_t i = sent; i < buffer->count; i++) {
    rte_pktmbuf_free(buffer->frames[i]);
    count_reason(lcore, TALLY_REASON_TX_FULL);
  }
  stat_add(&lcore->stats.tx_packets, sent);
  buffer->count = 0;
}

static void tx_frame(struct tally_lcore *lcore, struct rte_mbuf *frame)
{
  uint16_t port = frame->port;
  assert(port < TALLY_PORTS_MAX);
  struct tally_tx_buffer *buffer = &lcore->tx[port];
  if (buffer->count == TALLY_BURST_SIZE) tx_flush(lcore, port);
  buffer->frames[buffer->count++] = frame;
}

/*
 * One parsed statsd counter into the shard, within statsd's class rights
 * (issue 14, C1): its share of the table and no writes to reliable counters.
 */
static enum tally_reason statsd_apply(struct tally_lcore *lcore,
  const struct tally_statsd_counter *counter, const struct tally_dp_config *config)
{
  assert(config->statsd_counters_max <= lcore->shard->counters_max);
  const struct tally_statsd_rights rights = {
    .statsd_counters_max = config->statsd_counters_max,
    .writes_reliable = config->statsd_writes_reliable,
  };
  uint32_t hash = tally_shard_name_hash(lcore->shard, counter->name, counter->name_len);
  return tally_shard_add_statsd(lcore->shard, counter->name, counter->name_len, hash,
    counter->delta, &rights);
}

/*
 * The per-poll budget of a class (issue 14, C1): true while the lcore has
 * handled fewer than the class's packets this poll; false (counted by the
 * caller) once a flood of it has used its share of the poll.
 */
static bool class_budget_take(struct tally_lcore *lcore, const struct tally_dp_config *config,
  enum tally_traffic_class traffic)
{
  assert(traffic < TALLY_TRAFFIC_CLASS_COUNT);
  const uint32_t budget[TALLY_TRAFFIC_CLASS_COUNT] = {
    [TALLY_TRAFFIC_STATSD] = config->statsd_per_poll,
    [TALLY_TRAFFIC_RELIABLE] = config->reliable_per_poll,
    [TALLY_TRAFFIC_CONTROL] = config->control_per_poll,
  };
  assert(budget[traffic] >= 1u && budget[traffic] <= TALLY_CLASS_PER_POLL_MAX);
  if (lcore->class_used[traffic] >= budget[traffic]) return false;
  lcore->class_used[traffic]++;
  return true;
}

/* Takes the budget of the frame's class: false (counted) once the class used this poll's. */
static bool frame_within_budget(struct tally_lcore *lcore, const struct tally_dp_config *config,
  enum tally_packet_kind kind)
{
  static const enum tally_reason over[TALLY_TRAFFIC_CLASS_COUNT] = {
    [TALLY_TRAFFIC_STATSD] = TALLY_REASON_BUDGET_STATSD,
    [TALLY_TRAFFIC_RELIABLE] = TALLY_REASON_BUDGET_RELIABLE,
    [TALLY_TRAFFIC_CONTROL] = TALLY_REASON_BUDGET_CONTROL,
  };
  enum tally_traffic_class traffic;
  if (kind == TALLY_PACKET_STATSD) {
    traffic = TALLY_TRAFFIC_STATSD;
  } else if (kind == TALLY_PACKET_BINARY) {
    traffic = TALLY_TRAFFIC_RELIABLE;
  } else if (kind == TALLY_PACKET_ARP_REQUEST || kind == TALLY_PACKET_ICMP_ECHO) {
    traffic = TALLY_TRAFFIC_CONTROL;
  } else {
    return true; /* drops cost a classification only */
  }
  if (class_budget_take(lcore, config, traffic)) return true;
  count_reason(lcore, over[traffic]);
  return false;
}

/* The degradation level published by the control thread (0 when none is). */
static uint32_t degradation_level(const struct tally_lcore *lcore)
{
  if (lcore->degradation_level == NULL) return 0;
  uint32_t level = __atomic_load_n(lcore->degradation_level, __ATOMIC_RELAXED);
  assert(level <= TALLY_DEGRADE_LEVEL_MAX);
  return level;
}

/* statsd admission before any parsing (statsd_sources.h): false after counting the drop. */
static bool statsd_admitted(struct tally_lcore *lcore, const struct tally_packet *packet,
  const struct tally_dp_config *config)
{
  enum tally_reason reason = tally_statsd_sources_admit(lcore->statsd_sources,
    &config->statsd_policy, packet->source_ipv4, degradation_level(lcore), rte_get_tsc_cycles());
  if (reason == TALLY_OK) return true;
  count_reason(lcore, reason);
  return false;
}

static void handle_statsd(struct tally_lcore *lcore, const struct tally_packet *packet,
  const struct tally_dp_config *config)
{
  if (!statsd_admitted(lcore, packet, config)) return;
  const char *cursor = (const char *)packet->payload;
  const char *end = cursor + packet->payload_len;
  const char *line = NULL;
  size_t line_len = 0;
  uint64_t lines = 0;
  uint64_t increments = 0;
  /* Bounded: each line consumes at least one byte of the datagram. */
  while (tally_statsd_next_line(&cursor, end, &line, &line_len)) {
    assert(lines < TALLY_DATAGRAM_SIZE_MAX);
    lines++;
    struct tally_statsd_counter counter;
    enum tally_reason reason =
      tally_statsd_parse_line(line, line_len, &config->statsd_tags, &counter);
    if (reason == TALLY_OK) reason = statsd_apply(lcore, &counter, config);
    if (reason == TALLY_OK) {
      increments++;
    } else {
      count_reason(lcore, reason);
    }
  }
  stat_add(&lcore->stats.statsd_datagrams, 1);
  stat_add(&lcore->stats.statsd_lines, lines);
  stat_add(&lcore->stats.statsd_increments, increments);
}

/* A producer's bucket of pending acks (splitmix64's finalizer: ids in any pattern spread). */
static uint32_t producer_bucket(uint64_t producer)
{
  uint64_t x = producer;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return (uint32_t)(x & (TALLY_ACKS_PRODUCER_BUCKETS - 1u));
}

/*
 * Whether an ack of this producer can wait in the FIFO: room in it, and in
 * the producer's share (issue 14, H3). Counted when not.
 */
static bool ack_room(struct tally_lcore *lcore, uint64_t producer)
{
  if (lcore->acks_tail - lcore->acks_head >= TALLY_ACKS_PENDING_MAX) {
    count_reason(lcore, TALLY_REASON_ACKS_PENDING_FULL);
    return false;
  }
  if (lcore->acks_by_producer[producer_bucket(producer)] >= TALLY_ACKS_PENDING_PER_PRODUCER_MAX) {
    count_reason(lcore, TALLY_REASON_ACKS_PENDING_PRODUCER_FULL);
    return false;
  }
  return true;
}

/* The reliable writes an ack may go out for: durable, and in a cluster held by a quorum. */
static uint64_t durable_now(struct tally_lcore *lcore)
{
  uint64_t durable = lcore->persist->durable_seq(lcore);
  if (lcore->wait_quorum) {
    uint64_t quorum = __atomic_load_n(&lcore->quorum_seq, __ATOMIC_ACQUIRE);
    if (quorum < durable) durable = quorum;
  }
  assert(durable <= lcore->stats.applied_seq);
  return durable;
}

/* Whether every reliable write this lcore applied may be acked now. */
static bool all_durable(struct tally_lcore *lcore)
{
  return durable_now(lcore) == lcore->stats.applied_seq;
}

/* The key producer's batches and acks are MAC'd with: its cached derived key, or the ingest key. */
static const uint8_t *producer_key(struct tally_lcore *lcore, const struct tally_dp_config *config,
  uint64_t producer)
{
  if (!config->producer_keys_derived) return config->key;
  return tally_key_cache_get(&lcore->key_cache, config->generation, config->key, producer);
}

/* This node as a batch's destination: its ingest address (issue 14, H3). */
static struct tally_wire_node this_node(const struct tally_dp_config *config)
{
  return (struct tally_wire_node){ .ipv4_be = config->ipv4_be, .port_be = config->binary_port_be };
}

/* Turns the batch frame into its ack and sends it now or when durable. */
static void answer_batch(struct tally_lcore *lcore, struct rte_mbuf *frame,
  const struct tally_dp_config *config, const struct tally_wire_batch *batch,
  enum tally_ack_status status, bool wait_for_persist)
{
  uint8_t *payload = tally_packet_udp_payload(frame);
  const uint8_t *key = producer_key(lcore, config, batch->producer);
  tally_wire_encode_ack(batch->producer, batch->seq, status, this_node(config), key, payload);
  tally_packet_udp_reply(frame, TALLY_WIRE_ACK_SIZE);
  if (!wait_for_persist) {
    if (status == TALLY_ACK_DUPLICATE) { /* a duplicate of what is durable already */
      stat_add(&lcore->stats.acks_sent, 1);
      stat_add(&lcore->stats.acks_duplicate_now, 1);
    } else {
      stat_add(&lcore->stats.acks_error, 1);
    }
    tx_frame(lcore, frame);
    return;
  }
  assert(lcore->acks_tail - lcore->acks_head < TALLY_ACKS_PENDING_MAX);
  uint32_t bucket = producer_bucket(batch->producer);
  assert(lcore->acks_by_producer[bucket] < TALLY_ACKS_PENDING_PER_PRODUCER_MAX);
  struct tally_pending_ack *ack = &lcore->acks[lcore->acks_tail % TALLY_ACKS_PENDING_MAX];
  ack->frame = frame;
  ack->applied_seq = lcore->stats.applied_seq;
  ack->bucket = bucket;
  lcore->acks_by_producer[bucket]++;
  lcore->acks_tail++;
}

/* An ack leaves the FIFO (sent or dropped): its producer's share frees up. */
static void ack_leaves(struct tally_lcore *lcore, struct tally_pending_ack *ack)
{
  assert(ack->bucket < TALLY_ACKS_PRODUCER_BUCKETS);
  assert(lcore->acks_by_producer[ack->bucket] > 0);
  lcore->acks_by_producer[ack->bucket]--;
  ack->frame = NULL;
  lcore->acks_head++;
}

static bool reason_gets_malformed_ack(enum tally_reason reason)
{
  return reason == TALLY_REASON_BATCH_MALFORMED || reason == TALLY_REASON_BATCH_TOO_MANY_PAIRS ||
    reason == TALLY_REASON_BATCH_BAD_NAME || reason == TALLY_REASON_BATCH_BAD_PRODUCER ||
    reason == TALLY_REASON_BATCH_BAD_KEY;
}

/* Decodes and applies a batch this lcore owns. Consumes the frame. */

/*
 * Cross-node dedup: what a peer's producer record (replicated into its
 * replica table here, with the values it covers) says of this batch.
 * DUPLICATE: the peer applied it; it is held by that peer and by this
 * node's replica of it, answered at once and not counted again. STALE: the
 * peer applied a sequence a dedup window or more above it, which the
 * producer sends only once this one is acked (its window of batches in
 * flight), so this is a replay (issue 14, H3: a batch captured on the wire
 * and sent to another node), answered STALE as the owner would. APPLIED:
 * nothing known (a record being rewritten reads as absent: the batch is
 * applied and the cluster thread compensates).
 */
static enum tally_ack_status peer_verdict(const struct tally_dp_config *config,
  const struct tally_wire_batch *batch)
{
  assert(config->remote_dedup_count <= TALLY_REPLICA_REGIONS_MAX);
  if (batch->producer == 0 || batch->producer > TALLY_PRODUCER_ID_MAX) {
    return TALLY_ACK_APPLIED; /* MALFORMED, from the shard */
  }
  enum tally_ack_status verdict = TALLY_ACK_APPLIED;
  for (uint32_t r = 0; r < config->remote_dedup_count; r++) {
    assert(config->remote_dedup[r] != NULL);
    struct tally_dedup dedup;
    if (!tally_shard_producer_read(config->remote_dedup[r], batch->producer, &dedup)) continue;
    if (tally_dedup_applied(&dedup, batch->seq)) return TALLY_ACK_DUPLICATE;
    for (uint32_t k = 0; k < TALLY_DEDUP_RUNS && dedup.runs[k].head_last != 0; k++) {
      if (dedup.runs[k].last_seq >= batch->seq &&
          dedup.runs[k].last_seq - batch->seq >= TALLY_DEDUP_WINDOW) {
        verdict = TALLY_ACK_STALE;
      }
    }
  }
  return verdict;
}

/* The shard's takeovers of statsd counters (C1), as lcore statistics. */
static void publish_class_stats(struct tally_lcore *lcore)
{
  const struct tally_shard *shard = lcore->shard;
  assert(shard->statsd_taken_over >= lcore->stats.statsd_taken_over);
  assert(shard->statsd_values_dropped >= lcore->stats.statsd_values_dropped);
  __atomic_store_n(&lcore->stats.statsd_taken_over, shard->statsd_taken_over, __ATOMIC_RELAXED);
  __atomic_store_n(&lcore->stats.statsd_values_dropped, shard->statsd_values_dropped,
    __ATOMIC_RELAXED);
}

/*
 * Applies and answers a batch whose MAC and destination route_batch checked
 * (on this lcore or on the one that steered it here).
 */
static void process_batch(struct tally_lcore *lcore, struct rte_mbuf *frame,
  const struct tally_packet *packet, const struct tally_dp_config *config)
{
  assert(packet->kind == TALLY_PACKET_BINARY);
  struct tally_wire_batch batch;
  char keys[TALLY_BATCH_PAIRS_MAX][TALLY_NAME_LEN_MAX]; /* tagged pairs' canonical keys */
  enum tally_reason reason =
    tally_wire_decode_checked_batch(packet->payload, packet->payload_len, &batch);
  if (reason == TALLY_OK) reason = tally_wire_batch_canonicalize(&batch, keys);
  if (reason != TALLY_OK) {
    count_reason(lcore, reason);
    if (reason_gets_malformed_ack(reason)) {
      answer_batch(lcore, frame, config, &batch, TALLY_ACK_MALFORMED, false);
    } else {
      rte_pktmbuf_free(frame);
    }
    return;
  }
  assert(batch.count >= 1 && batch.count <= TALLY_BATCH_PAIRS_MAX);
  stat_add(&lcore->stats.batches_received, 1);
  bool read_only = (lcore->read_only != NULL &&
    __atomic_load_n(lcore->read_only, __ATOMIC_RELAXED)) ||
    (lcore->read_only_forced != NULL &&
    __atomic_load_n(lcore->read_only_forced, __ATOMIC_RELAXED)) ||
    degradation_level(lcore) == TALLY_DEGRADE_LEVEL_MAX; /* level 3: reliable read-only */
  if (read_only) {
    stat_add(&lcore->stats.batches_read_only, 1);
    answer_batch(lcore, frame, config, &batch, TALLY_ACK_READ_ONLY, false);
    return;
  }
  /*
   * What a peer applied is a DUPLICATE, answered like any other: through the
   * FIFO, once what this lcore applied is durable (quorum-acked in a
   * cluster). Not at once: holding the peer's record proves two copies (the
   * peer's and this node's replica of it), not W; answered at once with
   * W = 3, a batch was acked on two nodes and lost when the origin's store
   * was lost and restored from the third (chaos seed 4243, --lcores 2
   * --write-quorum 3 --statsd-counters 2000). The FIFO entry is capped per
   * producer (ack_room), so replays of it cannot fill the FIFO. And only
   * with W <= 2: with W >= 3 the FIFO wait proves nothing about the third
   * copy (chaos seed 7510, 2 lcores, W = 3: a batch the origin applied was
   * answered DUPLICATE here, the origin's store was lost and restored from
   * the third node, which never had it). There the batch is applied here
   * like one nobody applied, and the claims settle the two applies.
   */
  enum tally_ack_status verdict = peer_verdict(config, &batch);
  if (verdict == TALLY_ACK_DUPLICATE && !config->remote_duplicate_is_quorum) {
    stat_add(&lcore->stats.batches_duplicate_remote_applied, 1);
    verdict = TALLY_ACK_APPLIED;
  }
  if (verdict == TALLY_ACK_DUPLICATE) {
    if (!ack_room(lcore, batch.producer)) {
      rte_pktmbuf_free(frame); /* not answered: the producer resends */
      return;
    }
    stat_add(&lcore->stats.batches_duplicate, 1);
    stat_add(&lcore->stats.batches_duplicate_remote, 1);
    answer_batch(lcore, frame, config, &batch, TALLY_ACK_DUPLICATE, true);
    return;
  }
  if (verdict == TALLY_ACK_STALE) {
    count_reason(lcore, TALLY_REASON_BATCH_STALE_REMOTE);
    answer_batch(lcore, frame, config, &batch, TALLY_ACK_STALE, false);
    return;
  }
  /* Checked after the MAC (issue 14, H3): forged batches never take or fill the FIFO. */
  if (!ack_room(lcore, batch.producer)) {
    rte_pktmbuf_free(frame); /* not applied, not answered: the producer resends */
    return;
  }
  /* Log mode: room for the batch's record first; without it the batch is not applied. */
  struct tally_log_record *record = NULL;
  if (lcore->log_ring != NULL) {
    record = tally_log_ring_claim(lcore->log_ring);
    if (record == NULL) {
      stat_add(&lcore->log_ring->full, 1);
      count_reason(lcore, TALLY_REASON_LOG_RING_FULL);
      rte_pktmbuf_free(frame); /* not applied, not answered: the producer resends */
      return;
    }
    tally_log_ring_enter(lcore->log_ring); /* a checkpoint's copy may see the apply from here */
  }
  enum tally_ack_status status = tally_shard_apply_batch(lcore->shard, &batch, &reason);
  publish_class_stats(lcore);
  if (status == TALLY_ACK_APPLIED) {
    stat_add(&lcore->stats.batches_applied, 1);
    stat_add(&lcore->stats.batch_increments, batch.count);
    uint64_t applied_seq = lcore->stats.applied_seq + 1u;
    if (record != NULL) {
      tally_shard_effect_of_last(lcore->shard, &batch, &record->effect);
      record->applied_seq = applied_seq;
      tally_log_ring_push(lcore->log_ring); /* release: the record before its applied_seq */
    }
    /* Release: the batch (and its record) before the sequence that counts it. */
    __atomic_store_n(&lcore->stats.applied_seq, applied_seq, __ATOMIC_RELEASE);
  } else if (status == TALLY_ACK_DUPLICATE) {
    stat_add(&lcore->stats.batches_duplicate, 1);
  } else {
    count_reason(lcore, reason);
  }
  if (record != NULL) tally_log_ring_leave(lcore->log_ring);
  /* A duplicate waits only while something applied here is not durable yet. */
  bool durable_answer = status == TALLY_ACK_APPLIED ||
    (status == TALLY_ACK_DUPLICATE && !all_durable(lcore));
  answer_batch(lcore, frame, config, &batch, status, durable_answer);
}

/*
 * Checks a batch's MAC and destination here, on the receiving lcore (issue
 * 14, M1: a forged datagram costs the lcore the NIC gave it one MAC and is
 * never steered, so forgeries cannot aim MAC work or fill one lcore's
 * ring), then sends it to the lcore that owns its producer or processes it
 * here. The owner trusts a steered frame's check: rings carry only frames
 * that passed it.
 */
static void route_batch(struct tally_lcore *lcore, struct rte_mbuf *frame,
  const struct tally_packet *packet, const struct tally_dp_config *config)
{
  if (packet->payload_len < TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE) {
    count_reason(lcore, TALLY_REASON_BATCH_TRUNCATED);
    rte_pktmbuf_free(frame);
    return;
  }
  uint64_t producer = 0;
  memcpy(&producer, packet->payload + 8, sizeof producer);
  producer = rte_le_to_cpu_64(producer);
  /* The claimed producer's key: a wrong claim fails the MAC (M2). */
  const uint8_t *key = producer_key(lcore, config, producer);
  enum tally_reason reason =
    tally_wire_check_batch(packet->payload, packet->payload_len, key, this_node(config));
  if (reason != TALLY_OK) {
    count_reason(lcore, reason); /* never answered, never steered */
    rte_pktmbuf_free(frame);
    return;
  }
  uint32_t owner = (uint32_t)(producer % lcore->lcore_count);
  assert(owner < lcore->lcore_count);
  if (owner == lcore->index) {
    process_batch(lcore, frame, packet, config);
    return;
  }
  if (rte_ring_sp_enqueue(lcore->rings_out[owner], frame) != 0) {
    count_reason(lcore, TALLY_REASON_STEER_RING_FULL);
    rte_pktmbuf_free(frame);
    return;
  }
  stat_add(&lcore->stats.batches_steered, 1);
}

/* The ARP and ICMP replies' token bucket (issue 14, L1): false over the rate. */
static bool reply_allowed(struct tally_lcore *lcore)
{
  uint64_t now = lcore->reply_clock != NULL ? lcore->reply_clock() : rte_get_tsc_cycles();
  return tally_reply_bucket_take(&lcore->reply_bucket, now, rte_get_tsc_hz());
}

static void handle_frame(struct tally_lcore *lcore, struct rte_mbuf *frame,
  const struct tally_dp_config *config)
{
  struct tally_packet packet;
  tally_packet_classify(frame, config, &packet);
  if (!frame_within_budget(lcore, config, packet.kind)) {
    rte_pktmbuf_free(frame);
    return;
  }
  switch (packet.kind) {
  case TALLY_PACKET_STATSD:
    handle_statsd(lcore, &packet, config);
    rte_pktmbuf_free(frame);
    return;
  case TALLY_PACKET_BINARY:
    route_batch(lcore, frame, &packet, config);
    return;
  case TALLY_PACKET_ARP_REQUEST:
  case TALLY_PACKET_ICMP_ECHO:
    if (!reply_allowed(lcore)) {
      count_reason(lcore, TALLY_REASON_REPLY_RATE_LIMITED);
      rte_pktmbuf_free(frame);
      return;
    }
    break;
  case TALLY_PACKET_DROP:
    count_reason(lcore, packet.reason);
    rte_pktmbuf_free(frame);
    return;
  }
  if (packet.kind == TALLY_PACKET_ARP_REQUEST) {
    assert(frame->port < TALLY_PORTS_MAX);
    tally_packet_arp_reply(frame, &config->port_mac[frame->port]);
    stat_add(&lcore->stats.arp_replies, 1);
  } else {
    assert(packet.kind == TALLY_PACKET_ICMP_ECHO);
    tally_packet_icmp_reply(frame);
    stat_add(&lcore->stats.icmp_replies, 1);
  }
  tx_frame(lcore, frame);
}

static uint32_t poll_port(struct tally_lcore *lcore, uint16_t port,
  const struct tally_dp_config *config)
{
  struct rte_mbuf *frames[TALLY_BURST_SIZE];
  uint16_t count = rte_eth_rx_burst(port, (uint16_t)lcore->index, frames, TALLY_BURST_SIZE);
  assert(count <= TALLY_BURST_SIZE);
  stat_add(&lcore->stats.polls, 1);
  if (count == 0) {
    stat_add(&lcore->stats.idle_polls, 1);
    return 0;
  }
  if (count == TALLY_BURST_SIZE) stat_add(&lcore->stats.full_polls, 1);
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < count && i < PREFETCH_OFFSET; i++) {
    rte_prefetch0(rte_pktmbuf_mtod(frames[i], void *));
  }
  for (uint16_t i = 0; i < count; i++) {
    if (i + PREFETCH_OFFSET < count) {
      rte_prefetch0(rte_pktmbuf_mtod(frames[i + PREFETCH_OFFSET], void *));
    }
    bytes += rte_pktmbuf_pkt_len(frames[i]);
    handle_frame(lcore, frames[i], config);
  }
  stat_add(&lcore->stats.rx_packets, count);
  stat_add(&lcore->stats.rx_bytes, bytes);
  return count;
}

static void drain_steering(struct tally_lcore *lcore, const struct tally_dp_config *config)
{
  for (uint32_t source = 0; source < lcore->lcore_count; source++) {
    if (source == lcore->index) continue;
    assert(lcore->rings_in[source] != NULL);
    void *frames[TALLY_BURST_SIZE];
    unsigned count =
      rte_ring_sc_dequeue_burst(lcore->rings_in[source], frames, TALLY_BURST_SIZE, NULL);
    for (unsigned i = 0; i < count; i++) {
      struct rte_mbuf *frame = frames[i];
      struct tally_packet packet;
      tally_packet_classify(frame, config, &packet);
      assert(packet.kind == TALLY_PACKET_BINARY || packet.kind == TALLY_PACKET_DROP);
      if (packet.kind == TALLY_PACKET_BINARY) {
        process_batch(lcore, frame, &packet, config);
      } else {
        count_reason(lcore, packet.reason); /* the config changed under it */
        rte_pktmbuf_free(frame);
      }
    }
  }
}

static uint64_t group_commit_durable_seq(const struct tally_lcore *lcore)
{
  return __atomic_load_n(&lcore->durable_seq, __ATOMIC_ACQUIRE);
}

static void group_commit_after_poll(struct tally_lcore *lcore)
{
  (void)lcore; /* the persister thread persists */
}

const struct tally_lcore_persist tally_lcore_group_commit = {
  .durable_seq = group_commit_durable_seq,
  .after_poll = group_commit_after_poll,
};

static uint64_t per_burst_durable_seq(const struct tally_lcore *lcore)
{
  return lcore->stats.applied_seq; /* drained at the end of the poll that applied it */
}

static void per_burst_after_poll(struct tally_lcore *lcore)
{
  if (lcore->shard->drain != NULL) lcore->shard->drain();
}

const struct tally_lcore_persist tally_lcore_per_burst = {
  .durable_seq = per_burst_durable_seq,
  .after_poll = per_burst_after_poll,
};

static void release_durable_acks(struct tally_lcore *lcore)
{
  uint64_t durable = durable_now(lcore);
  stat_add(&lcore->stats.durable_seq_seen, durable - lcore->stats.durable_seq_seen);
  uint64_t sent = 0;
  while (lcore->acks_head < lcore->acks_tail && sent < TALLY_ACKS_RELEASE_PER_POLL) {
    struct tally_pending_ack *ack = &lcore->acks[lcore->acks_head % TALLY_ACKS_PENDING_MAX];
    if (ack->applied_seq > durable) break;
    tx_frame(lcore, ack->frame);
    ack_leaves(lcore, ack);
    sent++;
  }
  stat_add(&lcore->stats.acks_sent, sent);
}

uint32_t tally_lcore_poll_once(struct tally_lcore *lcore, const struct tally_dp_config *config)
{
  assert(lcore != NULL && config != NULL);
  assert(lcore->index < lcore->lcore_count);
  assert(lcore->persist != NULL);
  uint32_t received = 0;
  memset(lcore->class_used, 0, sizeof lcore->class_used); /* a fresh budget each poll */
  for (uint16_t i = 0; i < lcore->port_count; i++) {
    received += poll_port(lcore, lcore->ports[i], config);
  }
  if (lcore->lcore_count > 1) drain_steering(lcore, config);
  lcore->persist->after_poll(lcore);
  release_durable_acks(lcore);
  for (uint16_t i = 0; i < lcore->port_count; i++) tx_flush(lcore, lcore->ports[i]);
  return received;
}

bool tally_lcore_should_sleep(struct tally_lcore *lcore, uint32_t received)
{
  assert(lcore->idle_sleep_us <= TALLY_IDLE_SLEEP_US_MAX);
  if (received != 0 || lcore->acks_head != lcore->acks_tail) {
    lcore->idle_streak = 0;
    return false;
  }
  if (lcore->idle_sleep_us == 0) return false;
  if (lcore->idle_streak < TALLY_IDLE_POLLS_BEFORE_SLEEP) {
    lcore->idle_streak++;
    return false;
  }
  stat_add(&lcore->stats.idle_sleeps, 1);
  return true;
}

static void drop_pending_acks(struct tally_lcore *lcore)
{
  uint64_t count = 0;
  while (lcore->acks_head < lcore->acks_tail && count <= TALLY_ACKS_PENDING_MAX) {
    struct tally_pending_ack *ack = &lcore->acks[lcore->acks_head % TALLY_ACKS_PENDING_MAX];
    rte_pktmbuf_free(ack->frame);
    ack_leaves(lcore, ack);
    count++;
  }
  assert(lcore->acks_head == lcore->acks_tail);
}

int tally_lcore_main(void *arg)
{
  struct tally_lcore *lcore = arg;
  assert(lcore != NULL);
  assert(lcore->shard != NULL && lcore->config != NULL);
  urcu_qsbr_register_thread();
  __atomic_store_n(&lcore->tid, rte_sys_gettid(), __ATOMIC_RELAXED); /* once, before the loop */
  __atomic_store_n(&lcore->running, true, __ATOMIC_RELEASE);
  while (!__atomic_load_n(lcore->quit, __ATOMIC_RELAXED)) {
    const struct tally_dp_config *config = rcu_dereference(*lcore->config);
    uint32_t received = tally_lcore_poll_once(lcore, config);
    urcu_qsbr_quiescent_state();
    if (tally_lcore_should_sleep(lcore, received)) {
      urcu_qsbr_thread_offline(); /* a grace period does not wait for the sleep */
      rte_delay_us_sleep(lcore->idle_sleep_us); /* nanosleep: the core is free meanwhile */
      urcu_qsbr_thread_online();
    }
  }
  urcu_qsbr_unregister_thread();
  /* Acks not yet durable are not sent: their producers retry. */
  drop_pending_acks(lcore);
  __atomic_store_n(&lcore->running, false, __ATOMIC_RELEASE);
  return 0;
}
