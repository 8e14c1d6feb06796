/*
 * cluster.c — the cluster thread: the replication socket, heartbeats and
 * failure detection, the outgoing replication stream to every peer, the
 * incoming streams into the replica tables, restore of a node's own
 * contribution from its peers, and the write-quorum bookkeeping (quorum_seq
 * for the lcores' acks, read_only when no quorum is reachable). Every
 * datagram it sends goes through send_datagram, where the test-only fault
 * stage (cluster_fault.c) may drop or hold it; held ones leave from the loop.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "heartbeat_wire.h"
#include "tally/name.h"
#include "store_format.h"

#define RECEIVE_BURST 256u
#define BREAKER_FAILURES 5u
#define BREAKER_COOLDOWN_MS 1000u
#define RESTORE_WAIT_MS_MAX 300000u
#define RESTORE_RETRY_MS 500u
#define HEARTBEAT_REJECTED TALLY_REPLICATION_REASON_COUNT
/*
 * A peer that has not answered a round (or a probe) for this long does not
 * count toward the write quorum, even if its heartbeats arrive: this node
 * cannot get its writes held there (a one-way or muted link, a peer stuck).
 */
#define REPLICATION_STALL_MS 400u
/* The thread's loop waits on the socket at most this long between rounds. */
#define LOOP_WAIT_NS 1000000ull
#define RESTORE_WAIT_NS 10000000ull

static uint64_t now_ms(void)
{
  return tally_clock_mono_ns() / 1000000ull;
}

static uint64_t next_random(struct tally_cluster *cluster)
{
  uint64_t x = cluster->random_state; /* xorshift64*: jitter only, not security */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  cluster->random_state = x;
  return x * 2685821657736338717ull;
}

/* A member by node id (a retired node is not one: NULL). */
static struct tally_cluster_peer *peer_by_id(struct tally_cluster *cluster, uint16_t id)
{
  assert(cluster->peer_count <= TALLY_REPLICA_REGIONS_MAX);
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    struct tally_cluster_peer *peer = &cluster->peers[i];
    if (tally_cluster_peer_active(peer) && peer->id == id) return peer;
  }
  return NULL;
}

/* Every member, in slot order: for (peer = NULL; (peer = next_active(cluster, peer));) */
static struct tally_cluster_peer *next_active(struct tally_cluster *cluster,
  struct tally_cluster_peer *after)
{
  uint32_t start = after == NULL ? 0 : (uint32_t)(after - cluster->peers) + 1u;
  assert(start <= TALLY_REPLICA_REGIONS_MAX);
  for (uint32_t i = start; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    if (tally_cluster_peer_active(&cluster->peers[i])) return &cluster->peers[i];
  }
  return NULL;
}

static_assert(TALLY_REPLICATION_SIZE_MAX <= TALLY_DATAGRAM_SIZE_MAX,
  "a datagram fits a fault slot");
static_assert(TALLY_HEARTBEAT_SIZE <= TALLY_DATAGRAM_SIZE_MAX, "a heartbeat fits a fault slot");

/* Every datagram of the cluster socket leaves here (or, held, from fault_flush). */
static void send_datagram(struct tally_cluster *cluster, const struct sockaddr_in *address,
  const uint8_t *data, size_t size)
{
  assert(size > 0 && size <= TALLY_REPLICATION_SIZE_MAX);
  if (__builtin_expect(tally_cluster_fault_active(&cluster->fault), 0) &&
      tally_cluster_fault_offer(&cluster->fault, tally_clock_mono_ns(), address, data, size) !=
        TALLY_CLUSTER_FAULT_SEND) {
    return; /* dropped on purpose, or held until due */
  }
  ssize_t sent = sendto(cluster->fd, data, size, MSG_DONTWAIT,
    (const struct sockaddr *)address, sizeof *address);
  (void)sent; /* a lost datagram is a timeout like any other */
}

static void send_to(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  const uint8_t *data, size_t size)
{
  send_datagram(cluster, &peer->address, data, size);
}

/* Sends every held datagram that is due (none unless fault injection ran). */
static void fault_flush(struct tally_cluster *cluster, uint64_t now_ns)
{
  struct tally_cluster_fault *fault = &cluster->fault;
  for (uint32_t n = 0; n < TALLY_CLUSTER_FAULT_QUEUE_MAX; n++) {
    const struct tally_cluster_fault_datagram *datagram = tally_cluster_fault_peek(fault, now_ns);
    if (datagram == NULL) return;
    ssize_t sent = sendto(cluster->fd, datagram->data, datagram->size, MSG_DONTWAIT,
      (const struct sockaddr *)&datagram->address, sizeof datagram->address);
    (void)sent;
    tally_cluster_fault_pop(fault);
  }
}

/*
 * Waits until the socket is readable, at most limit_ns, and no later than the
 * next held datagram falls due (so it leaves within the loop's round, ~0.1 ms
 * late). Returns true if readable.
 */
static bool wait_readable(struct tally_cluster *cluster, uint64_t limit_ns)
{
  uint64_t wait_ns = limit_ns;
  uint64_t due_ns = tally_cluster_fault_next_due_ns(&cluster->fault);
  if (due_ns != UINT64_MAX) {
    uint64_t now_ns = tally_clock_mono_ns();
    uint64_t until_ns = due_ns > now_ns ? due_ns - now_ns : 0;
    if (until_ns < wait_ns) wait_ns = until_ns;
  }
  struct timespec timeout = { .tv_sec = (time_t)(wait_ns / 1000000000ull),
    .tv_nsec = (long)(wait_ns % 1000000000ull) };
  struct pollfd descriptor = { .fd = cluster->fd, .events = POLLIN };
  return ppoll(&descriptor, 1, &timeout, NULL) > 0;
}

static void send_message(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
  size_t size = tally_replication_encode(message, cluster->config->key, buffer, sizeof buffer);
  assert(size > 0);
  send_to(cluster, peer, buffer, size);
}

/* ---- Opening ------------------------------------------------------------- */

static int open_socket(struct tally_cluster *cluster, char *error, size_t error_size)
{
  const struct tally_cluster_config *config = cluster->config;
  const struct tally_cluster_node *self = NULL;
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == config->node_id) self = &config->nodes[i];
  }
  assert(self != NULL);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(self->port),
    .sin_addr.s_addr = htonl(self->ipv4) };
  cluster->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int buffer = 4 << 20;
  if (cluster->fd >= 0) {
    setsockopt(cluster->fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    setsockopt(cluster->fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  }
  if (cluster->fd < 0 || bind(cluster->fd, (struct sockaddr *)&address, sizeof address) != 0) {
    snprintf(error, error_size, "cluster.nodes: cannot bind the replication address %s:%u: %s",
      inet_ntoa(address.sin_addr), self->port, strerror(errno));
    return -1;
  }
  return 0;
}

static void fault_settings_from(const struct tally_cluster_config *config,
  struct tally_cluster_fault_settings *settings)
{
  *settings = (struct tally_cluster_fault_settings){ .delay_ms = config->fault_delay_ms,
    .jitter_ms = config->fault_jitter_ms, .loss_permille = config->fault_loss_permille };
  assert(tally_cluster_fault_settings_valid(settings));
}

static void fault_announce(const struct tally_cluster_fault_settings *settings)
{
  bool on = settings->delay_ms != 0 || settings->jitter_ms != 0 || settings->loss_permille != 0;
  if (!on) {
    fprintf(stderr, "tallyd: cluster: fault injection off\n");
    return;
  }
  fprintf(stderr, "tallyd: cluster: FAULT INJECTION ON (test only, never in production): every "
    "datagram to a peer dropped with probability %u/1000, else delayed %u ms + 0..%u ms\n",
    settings->loss_permille, settings->delay_ms, settings->jitter_ms);
}

static int open_fault(struct tally_cluster *cluster, char *error, size_t error_size)
{
  uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  if (tally_cluster_fault_init(&cluster->fault, seed) != 0) {
    snprintf(error, error_size, "cluster: out of memory for the fault queue");
    return -1;
  }
  struct tally_cluster_fault_settings settings;
  fault_settings_from(cluster->config, &settings);
  tally_cluster_fault_set(&cluster->fault, &settings);
  if (tally_cluster_fault_active(&cluster->fault)) fault_announce(&settings);
  return 0;
}

bool tally_cluster_fault_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *config)
{
  struct tally_cluster_fault_settings before, after;
  tally_cluster_fault_get(&cluster->fault, &before);
  fault_settings_from(config, &after);
  if (before.delay_ms == after.delay_ms && before.jitter_ms == after.jitter_ms &&
      before.loss_permille == after.loss_permille) {
    return false;
  }
  tally_cluster_fault_set(&cluster->fault, &after);
  fault_announce(&after);
  return true;
}

/* ---- Incoming replication: rounds into the replica tables ----------------- */

static void send_ack(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  uint64_t held)
{
  struct tally_replication_message ack = { .type = TALLY_REPLICATION_ACK, .origin = peer->id,
    .sender = cluster->config->node_id, .seq = held };
  send_message(cluster, peer, &ack);
}

/* The sequence this node holds of peer's stream: the last round staged, else the table's. */
static uint64_t held_of(const struct tally_cluster *cluster, const struct tally_cluster_peer *peer)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  uint64_t held = tally_shard_held_seq(replica);
  assert(peer->stage.seq == 0 || peer->stage.seq > held);
  return peer->stage.seq != 0 ? peer->stage.seq : held;
}

/* Merges the staged records, the undone ones or the others, into the peer's table. */
static bool merge_staged(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  bool undone)
{
  const struct tally_replica_stage *stage = &peer->stage;
  bool ok = true;
  for (uint32_t i = 0; i < stage->records_count; i++) {
    if (((stage->records[i].producer & TALLY_PRODUCER_UNDONE_BIT) != 0) != undone) continue;
    ok = tally_cluster_dedup_receive(cluster, peer, &stage->records[i], 1) && ok;
  }
  return ok;
}

/*
 * The list's last round arrived: its undone records, values and records go to
 * the replica table in that order (a crash in between leaves values that an
 * undone record explains, and records whose batches the values hold), then the
 * sequence and scan that name them, then its claims (the claimant's records
 * are merged by then).
 */
static void commit_staged(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *last)
{
  struct tally_store *store = &cluster->appliance->store;
  struct tally_shard *replica = &store->replicas[peer->replica];
  struct tally_replica_stage *stage = &peer->stage;
  assert(stage->seq == last->seq);
  bool ok = merge_staged(cluster, peer, true);
  for (uint32_t i = 0; i < stage->count; i++) {
    const struct tally_slot *slot = &replica->slots[stage->slot[i]];
    assert(stage->slot[i] < replica->slots_count && slot->name_len >= 1);
    ok = tally_shard_set(replica, slot->name, slot->name_len, slot->hash, stage->value[i]) ==
      TALLY_OK && ok;
  }
  tally_store_persist_replica(store, peer->replica); /* undone records and values first */
  ok = merge_staged(cluster, peer, false) && ok;
  if (!ok) cluster->replica_full++;
  tally_store_persist_replica(store, peer->replica);
  tally_shard_set_held_seq(replica, last->seq);
  if (last->scan > tally_shard_held_scan(replica)) {
    tally_shard_set_held_scan(replica, last->scan); /* complete up to that scan */
  }
  tally_store_persist_replica(store, peer->replica); /* then what names them */
  tally_cluster_dedup_claims(cluster, peer, stage->claims, stage->claims_count);
  tally_replica_stage_clear(stage);
}

static void receive_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_message *message)
{
  struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  uint64_t held = held_of(cluster, peer);
  if (message->seq != held + 1) {
    send_ack(cluster, peer, held); /* a resend, a probe, or a gap: say what we hold */
    return;
  }
  bool staged = true;
  if (message->flags & TALLY_REPLICATION_FLAG_PRODUCERS) {
    staged = tally_replica_stage_records(&peer->stage, message->producers, message->count);
  } else if (message->flags & TALLY_REPLICATION_FLAG_CLAIMS) {
    if (!tally_replica_stage_claims(&peer->stage, message->claims, message->count)) {
      /* (only after abandoned lists) handled now, undone before the ack */
      tally_cluster_dedup_claims(cluster, peer, message->claims, message->count);
    }
  } else {
    staged = tally_replica_stage_counters(&peer->stage, replica, message->entries,
      message->count);
  }
  if (!staged) {
    cluster->replica_full++;
    send_ack(cluster, peer, held); /* cannot hold it: do not advance */
    return;
  }
  peer->stage.seq = message->seq;
  if (message->flags & TALLY_REPLICATION_FLAG_LAST) commit_staged(cluster, peer, message);
  cluster->rounds_applied++;
  send_ack(cluster, peer, message->seq);
}

/* Sends a restore part once it is full (or, with force, if it holds anything). */
static void restore_part_flush(struct tally_cluster *cluster, const struct tally_cluster_peer *peer,
  struct tally_replication_message *part, uint32_t full, bool force)
{
  assert(part->count <= full);
  if (part->count < full && !(force && part->count > 0)) return;
  send_message(cluster, peer, part);
  part->part++;
  part->count = 0;
}

/*
 * Sends a peer, part by part, our copy of its own contribution: the counters,
 * then its producer records (so that it dedups what it had applied), then an
 * empty LAST part.
 */
static void receive_restore_request(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer)
{
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  struct tally_replication_message part = { .type = TALLY_REPLICATION_RESTORE,
    .origin = peer->id, .sender = cluster->config->node_id, .seq = tally_shard_held_seq(replica),
    .scan = tally_shard_held_scan(replica) };
  for (uint32_t slot = 0; slot < replica->slots_count; slot++) {
    if (!tally_shard_slot_readable(replica, slot)) continue;
    const struct tally_slot *entry = &replica->slots[slot];
    part.entries[part.count++] = (struct tally_replication_entry){ .name = entry->name,
      .name_len = entry->name_len, .value = tally_shard_slot_value(replica, slot) };
    restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_ENTRIES_MAX, false);
  }
  restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_ENTRIES_MAX, true);
  part.flags = TALLY_REPLICATION_FLAG_PRODUCERS;
  for (uint32_t slot = 0; slot < replica->producer_slots_count; slot++) {
    uint64_t producer;
    struct tally_dedup dedup;
    if (!tally_shard_producer_at(replica, slot, &producer, &dedup)) continue;
    tally_cluster_dedup_to_wire(producer, &dedup, &part.producers[part.count]);
    part.count++;
    restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_PRODUCERS_MAX, false);
  }
  restore_part_flush(cluster, peer, &part, TALLY_REPLICATION_PRODUCERS_MAX, true);
  part.flags = TALLY_REPLICATION_FLAG_LAST;
  send_message(cluster, peer, &part);
}

/* ---- Outgoing replication: this node's contribution to each peer ---------- */

static void confirm_peer(struct tally_cluster_peer *peer)
{
  memcpy(peer->confirmed, peer->capture, sizeof peer->confirmed);
  memcpy(peer->claims_sent, peer->claims_planned, sizeof peer->claims_sent);
  peer->producers_synced = peer->producers_list_scan;
  peer->pending_valid = false;
}

/* Entries of a list part the peer has not acked yet. */
static uint32_t part_left(const struct tally_cluster_peer *peer, enum tally_list_part part)
{
  switch (part) {
  case TALLY_LIST_UNDONE:
    assert(peer->undone_pending_next <= peer->undone_pending_count);
    return peer->undone_pending_count - peer->undone_pending_next;
  case TALLY_LIST_COUNTERS:
    assert(peer->pending_next <= peer->pending_count);
    return peer->pending_count - peer->pending_next;
  case TALLY_LIST_PRODUCERS:
    assert(peer->producers_pending_next <= peer->producers_pending_count);
    return peer->producers_pending_count - peer->producers_pending_next;
  case TALLY_LIST_CLAIMS:
    assert(peer->claims_pending_next <= peer->claims_pending_count);
    return peer->claims_pending_count - peer->claims_pending_next;
  }
  return 0;
}

/* The first part (from `from` on) with entries left; TALLY_LIST_PARTS if none. */
static uint32_t part_next(const struct tally_cluster_peer *peer, uint32_t from)
{
  uint32_t part = from;
  while (part < TALLY_LIST_PARTS && part_left(peer, (enum tally_list_part)part) == 0) part++;
  assert(part <= TALLY_LIST_PARTS);
  return part;
}

static bool list_done(const struct tally_cluster_peer *peer)
{
  return part_next(peer, 0) == TALLY_LIST_PARTS;
}

static void receive_ack(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t held)
{
  tally_breaker_success(&peer->breaker);
  peer->waiting_since_ms = 0; /* it answers */
  if (!peer->synced) {
    bool same_state = peer->was_synced && held == peer->acked_seq;
    peer->synced = true;
    peer->was_synced = true;
    if (same_state) return; /* it restarted with its store intact: go on */
    peer->acked_seq = held;
    tally_cluster_peer_reset(cluster, peer);
    return;
  }
  if (peer->sent_seq != 0 && held == peer->sent_seq) {
    assert(peer->message_count <= part_left(peer, peer->message_part));
    switch ((enum tally_list_part)peer->message_part) {
    case TALLY_LIST_UNDONE:
      peer->undone_pending_next += peer->message_count;
      break;
    case TALLY_LIST_COUNTERS:
      for (uint32_t i = 0; i < peer->message_count; i++) {
        peer->acked_value[peer->message_index[i]] = peer->message_value[i];
        peer->acked_known[peer->message_index[i]] = 1;
      }
      peer->pending_next += peer->message_count;
      break;
    case TALLY_LIST_PRODUCERS:
      peer->producers_pending_next += peer->message_count;
      break;
    case TALLY_LIST_CLAIMS:
      peer->claims_pending_next += peer->message_count;
      break;
    }
    peer->acked_seq = held;
    peer->sent_seq = 0;
    peer->retries = 0;
    peer->rounds_acked++;
    if (list_done(peer)) confirm_peer(peer);
    return;
  }
  if (held == peer->acked_seq) return; /* an old ack, or the round was refused: resend */
  peer->acked_seq = held;              /* the peer lost or moved its state: start over */
  tally_cluster_peer_reset(cluster, peer);
}

/* Fills a round from the first list part with entries left: counters, records, claims. */
/* Fills a round with producer records (undone or applied) as the list was planned. */
static void fill_records(const struct tally_replication_producer *pending, uint32_t left,
  struct tally_replication_message *round)
{
  assert(left >= 1);
  round->flags = TALLY_REPLICATION_FLAG_PRODUCERS;
  while (round->count < TALLY_REPLICATION_PRODUCERS_MAX && round->count < left) {
    assert(pending[round->count].producer != 0);
    round->producers[round->count] = pending[round->count];
    round->count++;
  }
  assert(round->count >= 1);
}

/* Fills a round from the first list part with entries left (enum tally_list_part order). */
static void fill_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  struct tally_replication_message *round)
{
  uint32_t next = part_next(peer, 0);
  assert(next < TALLY_LIST_PARTS);
  enum tally_list_part part = (enum tally_list_part)next;
  peer->message_part = (uint8_t)part;
  uint32_t left = part_left(peer, part);
  assert(left >= 1);
  if (part == TALLY_LIST_UNDONE) {
    fill_records(peer->undone_pending + peer->undone_pending_next, left, round);
  } else if (part == TALLY_LIST_COUNTERS) {
    while (round->count < TALLY_REPLICATION_ENTRIES_MAX && round->count < left) {
      uint32_t position = peer->pending[peer->pending_next + round->count];
      int64_t value = peer->pending_value[peer->pending_next + round->count]; /* as planned */
      peer->message_index[round->count] = position;
      peer->message_value[round->count] = value;
      round->entries[round->count] = (struct tally_replication_entry){
        .name = cluster->names[position], .name_len = cluster->name_lens[position],
        .value = value };
      round->count++;
    }
  } else if (part == TALLY_LIST_PRODUCERS) {
    fill_records(peer->producers_pending + peer->producers_pending_next, left, round);
  } else {
    round->flags = TALLY_REPLICATION_FLAG_CLAIMS;
    while (round->count < TALLY_REPLICATION_CLAIMS_MAX && round->count < left) {
      round->claims[round->count] = peer->claims_pending[peer->claims_pending_next + round->count];
      round->count++;
    }
  }
  assert(round->count >= 1 && round->count <= left);
  bool last = round->count == left && part_next(peer, next + 1u) == TALLY_LIST_PARTS;
  if (last) round->flags |= TALLY_REPLICATION_FLAG_LAST; /* completes the scan's list */
}

static void send_round(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t now)
{
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id,
    .seq = peer->acked_seq + 1, .scan = peer->list_scan };
  fill_round(cluster, peer, &round);
  peer->message_count = round.count;
  peer->message_size = tally_replication_encode(&round, cluster->config->key, peer->message,
    sizeof peer->message);
  assert(peer->message_size > 0);
  peer->sent_seq = round.seq;
  peer->sent_ms = now;
  if (peer->waiting_since_ms == 0) peer->waiting_since_ms = now;
  peer->resend_ms = now + TALLY_REPLICATION_TIMEOUT_MS;
  peer->rounds_sent++;
  send_to(cluster, peer, peer->message, peer->message_size);
}

static void pump_peer(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  uint64_t now)
{
  bool probe = false;
  if (!peer->synced || peer->sent_seq != 0) {
    if (now < peer->resend_ms) return;
    if (peer->sent_seq != 0 || peer->retries > 0) tally_breaker_failure(&peer->breaker, now);
    if (!tally_breaker_acquire(&peer->breaker, now, &probe)) return;
    peer->retries++;
    peer->resend_ms = now + TALLY_REPLICATION_TIMEOUT_MS + tally_backoff_delay_ms(
      TALLY_REPLICATION_TIMEOUT_MS, TALLY_REPLICATION_BACKOFF_MAX_MS, peer->retries,
      next_random(cluster));
    if (!peer->synced) {
      struct tally_replication_message hello = { .type = TALLY_REPLICATION_ROUND,
        .origin = cluster->config->node_id, .sender = cluster->config->node_id, .seq = 0 };
      if (peer->waiting_since_ms == 0) peer->waiting_since_ms = now;
      send_message(cluster, peer, &hello); /* answered with the sequence it holds */
    } else {
      peer->resends++;
      send_to(cluster, peer, peer->message, peer->message_size);
    }
    return;
  }
  if (peer->pending_valid && !list_done(peer) &&
      tally_breaker_acquire(&peer->breaker, now, &probe)) {
    send_round(cluster, peer, now);
  }
}

/* ---- Quorum, read-only, heartbeats --------------------------------------- */

static uint32_t peers_up(struct tally_cluster *cluster, uint64_t now_ns)
{
  uint32_t up = 0;
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    if (tally_phi_detector_state(&peer->detector, now_ns) == TALLY_PHI_UP) up++;
  }
  assert(up <= cluster->peer_count);
  return up;
}

/* Peers that can hold this node's writes: up, and answering its rounds. */
static uint32_t peers_writable(struct tally_cluster *cluster, uint64_t now_ns)
{
  uint64_t now = now_ns / 1000000u;
  uint32_t writable = 0;
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    bool stalled = peer->waiting_since_ms != 0 && now > peer->waiting_since_ms &&
      now - peer->waiting_since_ms > REPLICATION_STALL_MS;
    if (!stalled && tally_phi_detector_state(&peer->detector, now_ns) == TALLY_PHI_UP) writable++;
  }
  assert(writable <= cluster->peer_count);
  return writable;
}

static void update_quorum(struct tally_cluster *cluster)
{
  struct tally_appliance *appliance = cluster->appliance;
  uint32_t needed = cluster->config->write_quorum - 1u; /* peers besides this node */
  assert(needed <= cluster->peer_count);
  bool read_only = peers_writable(cluster, tally_clock_mono_ns()) < needed;
  if (read_only != cluster->read_only) {
    __atomic_store_n(&cluster->read_only, read_only, __ATOMIC_RELAXED);
    fprintf(stderr, "tallyd: cluster: %s\n", read_only ?
      "write quorum lost: read-only for reliable writes" : "write quorum reached: writable");
  }
  if (needed == 0) { /* W = 1 (it may change at runtime): this node alone holds enough */
    for (uint32_t l = 0; l < appliance->lcore_count; l++) {
      uint64_t applied = __atomic_load_n(&appliance->lcores[l].stats.applied_seq, __ATOMIC_ACQUIRE);
      if (applied > appliance->lcores[l].quorum_seq) {
        __atomic_store_n(&appliance->lcores[l].quorum_seq, applied, __ATOMIC_RELEASE);
      }
    }
    return;
  }
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    uint64_t values[TALLY_REPLICA_REGIONS_MAX];
    uint32_t count = 0;
    for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
      values[count++] = peer->confirmed[l];
    }
    assert(count == cluster->peer_count);
    for (uint32_t i = 1; i < count; i++) { /* insertion sort, descending */
      for (uint32_t j = i; j > 0 && values[j] > values[j - 1]; j--) {
        uint64_t swap = values[j];
        values[j] = values[j - 1];
        values[j - 1] = swap;
      }
    }
    uint64_t quorum = values[needed - 1];
    if (quorum > appliance->lcores[l].quorum_seq) {
      __atomic_store_n(&appliance->lcores[l].quorum_seq, quorum, __ATOMIC_RELEASE);
    }
  }
}

static void send_heartbeats(struct tally_cluster *cluster)
{
  bool ready = tally_lcores_running(cluster->appliance);
  struct tally_heartbeat heartbeat = { .node_id = cluster->config->node_id,
    .flags = (uint16_t)((ready ? TALLY_HEARTBEAT_FLAG_READY : 0) |
      (cluster->read_only || cluster->appliance->read_only_forced ?
        TALLY_HEARTBEAT_FLAG_READ_ONLY : 0) |
      (cluster->appliance->draining ? TALLY_HEARTBEAT_FLAG_DRAINING : 0)),
    .generation = cluster->incarnation, .send_time_ns = tally_clock_mono_ns(),
    .lsn = cluster->scans };
  uint8_t buffer[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&heartbeat, cluster->config->key, buffer);
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    send_to(cluster, peer, buffer, sizeof buffer);
  }
}

/* ---- Receiving ------------------------------------------------------------ */

static void receive_heartbeat(struct tally_cluster *cluster, const uint8_t *data, size_t size)
{
  struct tally_heartbeat heartbeat;
  if (tally_heartbeat_decode(data, size, cluster->config->key, &heartbeat) != TALLY_HEARTBEAT_OK) {
    cluster->rejected[HEARTBEAT_REJECTED]++;
    return;
  }
  struct tally_cluster_peer *peer = peer_by_id(cluster, heartbeat.node_id);
  if (peer == NULL) { /* authentic, but not a member (retired, or not added here yet) */
    cluster->not_member++;
    return;
  }
  /*
   * Replay protection: within one incarnation the sender's clock only goes
   * forward, so a heartbeat not newer than the last one accepted is an old
   * datagram (duplicated by the network, or replayed) and must not keep a
   * dead peer looking alive.
   */
  if (peer->incarnation == heartbeat.generation && heartbeat.send_time_ns <= peer->heartbeat_sent_ns) {
    cluster->heartbeats_replayed++;
    return;
  }
  peer->heartbeat_sent_ns = heartbeat.send_time_ns;
  tally_phi_detector_heartbeat(&peer->detector, tally_clock_mono_ns());
  peer->flags = heartbeat.flags;
  if (peer->incarnation != heartbeat.generation) {
    /*
     * The peer started again (a new incarnation): what it holds of this node
     * may be gone. Ask (a probe) before sending more; an intact store answers
     * with the sequence already acked and nothing is resent.
     */
    if (peer->incarnation != 0 && peer->synced) {
      peer->synced = false;
      peer->waiting_since_ms = 0; /* the probe that follows starts the wait anew */
      peer->sent_seq = 0; /* abandoned: its answer would be about the old incarnation */
      peer->retries = 0;
      peer->resend_ms = 0;
      tally_breaker_release_probe(&peer->breaker); /* else half-open waits forever */
    }
    peer->incarnation = heartbeat.generation;
  }
  peer->heartbeats_in++;
}

/* Answers a quorum read: every copy of the counter this node holds. */
static void receive_read_request(struct tally_cluster *cluster,
  const struct tally_replication_message *request, const struct sockaddr_in *source)
{
  if (request->count != 1) return;
  const struct tally_replication_entry *entry = &request->entries[0];
  uint32_t hash = tally_name_hash(entry->name, entry->name_len);
  struct tally_store *store = &cluster->appliance->store;
  struct tally_replication_message reply = { .type = TALLY_REPLICATION_READ_REPLY,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id, .seq = request->seq,
    .scan = UINT64_MAX };
  __int128 own = 0;
  bool found = false;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], entry->name, entry->name_len, hash);
    if (slot < 0) continue;
    own += tally_shard_slot_value(&store->shards[i], (uint32_t)slot);
    found = true;
  }
  /* This node's own copy, then every replica table (members and retired nodes alike). */
  uint32_t last = 0;
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (tally_store_replica_bound(store, r)) last = r + 1u;
  }
  for (uint32_t r = 0; r <= last; r++) {
    reply.count = 0;
    if (r > 0) { /* a replica copy: the origin's contribution as held here */
      if (!tally_store_replica_bound(store, r - 1u)) continue;
      const struct tally_shard *replica = &store->replicas[r - 1u];
      reply.origin = store->replica_origin[r - 1u];
      reply.scan = tally_shard_held_scan(replica);
      int64_t slot = tally_shard_find(replica, entry->name, entry->name_len, hash);
      found = slot >= 0;
      own = found ? tally_shard_slot_value(replica, (uint32_t)slot) : 0;
    }
    if (found && own <= INT64_MAX && own >= INT64_MIN) {
      reply.entries[0] = (struct tally_replication_entry){ .name = entry->name,
        .name_len = entry->name_len, .value = (int64_t)own };
      reply.count = 1;
    }
    reply.flags = r == last ? TALLY_REPLICATION_FLAG_LAST : 0;
    uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
    size_t size = tally_replication_encode(&reply, cluster->config->key, buffer, sizeof buffer);
    assert(size > 0);
    send_datagram(cluster, source, buffer, size);
  }
}

static void receive_replication(struct tally_cluster *cluster, const uint8_t *data, size_t size,
  const struct sockaddr_in *source)
{
  struct tally_replication_message message;
  enum tally_replication_reason reason =
    tally_replication_decode(data, size, cluster->config->key, &message);
  if (reason != TALLY_REPLICATION_OK) {
    cluster->rejected[reason]++;
    return;
  }
  struct tally_cluster_peer *peer = peer_by_id(cluster, message.sender);
  if (peer == NULL) { /* authentic, but not a member (retired, or not added here yet) */
    cluster->not_member++;
    return;
  }
  uint16_t self = cluster->config->node_id;
  switch (message.type) {
  case TALLY_REPLICATION_ROUND:
    if (message.origin == message.sender) receive_round(cluster, peer, &message);
    return;
  case TALLY_REPLICATION_ACK:
    if (message.origin == self) receive_ack(cluster, peer, message.seq);
    return;
  case TALLY_REPLICATION_RESTORE_REQUEST:
    if (message.origin == message.sender) receive_restore_request(cluster, peer);
    return;
  case TALLY_REPLICATION_RESTORE:
    return; /* only wanted while restoring, before the thread runs */
  case TALLY_REPLICATION_READ_REQUEST:
    receive_read_request(cluster, &message, source);
    return;
  case TALLY_REPLICATION_READ_REPLY:
    return; /* answers go to the requesting socket, not this one */
  }
}

static void receive_all(struct tally_cluster *cluster)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  for (uint32_t i = 0; i < RECEIVE_BURST; i++) {
    struct sockaddr_in source;
    socklen_t source_len = sizeof source;
    ssize_t size = recvfrom(cluster->fd, buffer, sizeof buffer, MSG_DONTWAIT,
      (struct sockaddr *)&source, &source_len);
    if (size < 0) return;
    if (size >= 2 && buffer[0] == TALLY_HEARTBEAT_MAGIC_0 && buffer[1] == TALLY_HEARTBEAT_MAGIC_1) {
      receive_heartbeat(cluster, buffer, (size_t)size);
    } else {
      receive_replication(cluster, buffer, (size_t)size, &source);
    }
  }
}

/* ---- The thread ------------------------------------------------------------ */

static void *cluster_main(void *arg)
{
  struct tally_cluster *cluster = arg;
  assert(cluster->members != NULL);
  while (!__atomic_load_n(&cluster->quit, __ATOMIC_RELAXED)) {
    tally_cluster_members_apply(cluster); /* a new membership, if one was handed over */
    const struct tally_cluster_config *config = cluster->config;
    assert(config->heartbeat_interval_ms >= 1 && config->replication_interval_ms >= 1);
    uint64_t now_ns = tally_clock_mono_ns();
    uint64_t now = now_ns / 1000000u;
    fault_flush(cluster, now_ns);
    if (now >= cluster->next_heartbeat_ms) {
      send_heartbeats(cluster);
      cluster->next_heartbeat_ms = now + config->heartbeat_interval_ms;
    }
    if (now >= cluster->next_scan_ms) {
      tally_cluster_scan(cluster, false);
      cluster->next_scan_ms = now + config->replication_interval_ms;
    }
    for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
      pump_peer(cluster, peer, now);
    }
    update_quorum(cluster);
    if (wait_readable(cluster, LOOP_WAIT_NS)) receive_all(cluster);
  }
  return NULL;
}

int tally_cluster_start(struct tally_cluster *cluster)
{
  assert(!cluster->running);
  cluster->quit = false;
  int rc = pthread_create(&cluster->thread, NULL, cluster_main, cluster);
  if (rc != 0) return -1;
  pthread_setname_np(cluster->thread, "tally-cluster");
  cluster->running = true;
  return 0;
}

void tally_cluster_stop(struct tally_cluster *cluster)
{
  if (!cluster->running) return;
  __atomic_store_n(&cluster->quit, true, __ATOMIC_RELAXED);
  pthread_join(cluster->thread, NULL);
  cluster->running = false;
  tally_cluster_fault_free(&cluster->fault); /* what it still held is lost */
  tally_cluster_members_close(cluster);
  if (cluster->fd >= 0) close(cluster->fd);
  cluster->fd = -1;
}

/* ---- Restore: this node's own contribution, from its peers ---------------- */

struct restore_state { /* by peer slot */
  bool answered[TALLY_REPLICA_REGIONS_MAX];
  uint64_t held[TALLY_REPLICA_REGIONS_MAX]; /* each copy's held_scan */
  uint32_t answers;
  int32_t chosen;            /* peer whose copy is applied, -1 before choosing */
  uint8_t *parts_seen;       /* of the chosen copy */
  uint32_t parts_max;
  int32_t last_part;         /* -1 until the LAST part arrives */
};

static void restore_request(struct tally_cluster *cluster, const struct restore_state *state)
{
  struct tally_replication_message request = { .type = TALLY_REPLICATION_RESTORE_REQUEST,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id };
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    int32_t i = (int32_t)(peer - cluster->peers);
    if (state->chosen < 0 ? !state->answered[i] : i == state->chosen) {
      send_message(cluster, peer, &request);
    }
  }
}

static void restore_part(struct tally_cluster *cluster, struct restore_state *state,
  const struct tally_replication_message *part, uint32_t peer_index)
{
  if (!state->answered[peer_index]) {
    state->answered[peer_index] = true;
    state->held[peer_index] = part->scan; /* freshness: comparable between peers */
    state->answers++;
  }
  if ((int32_t)peer_index != state->chosen || part->part >= state->parts_max) return;
  if (state->parts_seen[part->part]) return; /* a repeated part (the request is resent) */
  if (part->flags & TALLY_REPLICATION_FLAG_PRODUCERS) {
    tally_cluster_dedup_restore(cluster, part); /* which batches were applied: dedup */
    state->parts_seen[part->part] = 1;
    return;
  }
  struct tally_store *store = &cluster->appliance->store;
  for (uint32_t i = 0; i < part->count; i++) { /* shard 0 absorbs: total - other shards */
    const struct tally_replication_entry *entry = &part->entries[i];
    uint32_t hash = tally_name_hash(entry->name, entry->name_len);
    __int128 others = 0;
    for (uint32_t s = 1; s < store->geometry.shard_count; s++) {
      int64_t slot = tally_shard_find(&store->shards[s], entry->name, entry->name_len, hash);
      if (slot >= 0) others += tally_shard_slot_value(&store->shards[s], (uint32_t)slot);
    }
    __int128 value = (__int128)entry->value - others;
    if (value > INT64_MAX || value < INT64_MIN) continue;
    tally_shard_set(&store->shards[0], entry->name, entry->name_len, hash, (int64_t)value);
  }
  state->parts_seen[part->part] = 1;
  if (part->flags & TALLY_REPLICATION_FLAG_LAST) state->last_part = part->part;
}

static bool restore_complete(const struct restore_state *state)
{
  if (state->chosen < 0 || state->last_part < 0) return false;
  for (int32_t i = 0; i <= state->last_part; i++) {
    if (!state->parts_seen[i]) return false;
  }
  return true;
}

static void restore_choose(struct tally_cluster *cluster, struct restore_state *state)
{
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    if (!state->answered[i]) continue; /* (only members answer) */
    if (state->chosen < 0 || state->held[i] > state->held[state->chosen]) state->chosen = (int32_t)i;
  }
  assert(state->chosen >= 0);
  fprintf(stderr, "tallyd: cluster: restoring this node's contribution from node %u "
    "(complete up to scan %" PRIu64 " us)\n", cluster->peers[state->chosen].id,
    state->held[state->chosen]);
}

static void restore_receive(struct tally_cluster *cluster, struct restore_state *state)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  for (uint32_t n = 0; n < 4096; n++) {
    ssize_t size = recv(cluster->fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (size < 0) return;
    struct tally_replication_message message;
    if (tally_replication_decode(buffer, (size_t)size, cluster->config->key, &message) !=
        TALLY_REPLICATION_OK) {
      continue; /* heartbeats and rounds wait for the thread: peers resend */
    }
    struct tally_cluster_peer *peer = peer_by_id(cluster, message.sender);
    if (peer == NULL) continue;
    if (message.type == TALLY_REPLICATION_RESTORE_REQUEST && message.origin == message.sender) {
      receive_restore_request(cluster, peer); /* peers restoring at the same time */
    } else if (message.type == TALLY_REPLICATION_RESTORE &&
               message.origin == cluster->config->node_id) {
      restore_part(cluster, state, &message, (uint32_t)(peer - cluster->peers));
    }
  }
}

static int restore(struct tally_cluster *cluster, char *error, size_t error_size)
{
  const struct tally_cluster_config *config = cluster->config;
  uint32_t required = config->node_count - config->write_quorum + 1u;
  if (required > cluster->peer_count) required = cluster->peer_count;
  struct restore_state state = { .chosen = -1, .last_part = -1,
    .parts_max = cluster->capacity / TALLY_REPLICATION_ENTRIES_MAX +
      tally_store_replica_producers(&cluster->appliance->store.geometry) /
      TALLY_REPLICATION_PRODUCERS_MAX + 4u };
  state.parts_seen = calloc(state.parts_max, 1);
  if (state.parts_seen == NULL) return -1;
  fprintf(stderr, "tallyd: cluster: new or damaged store: asking %u peer(s) for this node's "
    "contribution\n", required);
  uint64_t start = now_ms();
  uint64_t next_request = 0;
  while (!restore_complete(&state) && now_ms() - start < RESTORE_WAIT_MS_MAX) {
    if (state.chosen < 0 && state.answers >= required) restore_choose(cluster, &state);
    if (now_ms() >= next_request) {
      restore_request(cluster, &state);
      next_request = now_ms() + RESTORE_RETRY_MS;
    }
    fault_flush(cluster, tally_clock_mono_ns());
    if (wait_readable(cluster, RESTORE_WAIT_NS)) restore_receive(cluster, &state);
  }
  bool done = restore_complete(&state);
  free(state.parts_seen);
  if (!done) {
    snprintf(error, error_size, "cluster: restore: %u of %u peers answered within %u s",
      state.answers, required, RESTORE_WAIT_MS_MAX / 1000u);
    return -1;
  }
  uint32_t claims = tally_cluster_dedup_restore_claims(cluster);
  fprintf(stderr, "tallyd: cluster: restored; %u keeper claim(s) for the batches the restored "
    "records name (a peer that also applied one undoes it)\n", claims);
  tally_store_persist(&cluster->appliance->store);
  return 0;
}

int tally_cluster_open(struct tally_cluster *cluster, struct tally_appliance *appliance,
  bool restore_first, char *error, size_t error_size)
{
  memset(cluster, 0, sizeof *cluster);
  cluster->appliance = appliance;
  cluster->fd = -1;
  assert(appliance->config.cluster.enabled);
  cluster->random_state = tally_clock_mono_ns() | 1u;
  randombytes_buf(&cluster->incarnation, sizeof cluster->incarnation);
  if (cluster->incarnation == 0) cluster->incarnation = 1;
  if (tally_cluster_members_init(cluster, error, error_size) != 0) return -1;
  if (open_fault(cluster, error, error_size) != 0) return -1;
  if (open_socket(cluster, error, error_size) != 0) return -1;
  if (tally_cluster_snapshot_open(cluster, error, error_size) != 0) return -1;
  if (tally_cluster_dedup_open(cluster, error, error_size) != 0) return -1;
  if (tally_cluster_members_open(cluster, error, error_size) != 0) return -1;
  if (restore_first && restore(cluster, error, error_size) != 0) return -1;
  return 0;
}

/* ---- Description (tallyctl cluster) --------------------------------------- */

/* Lag: counters and producer records of the current list the peer has not acked. */
static uint32_t pending_entries(const struct tally_cluster_peer *peer)
{
  if (!peer->pending_valid) return 0;
  return part_left(peer, TALLY_LIST_COUNTERS) + part_left(peer, TALLY_LIST_PRODUCERS) +
    part_left(peer, TALLY_LIST_CLAIMS);
}

static const char *breaker_name(enum tally_client_breaker_state state)
{
  switch (state) {
  case TALLY_CLIENT_BREAKER_CLOSED: return "closed";
  case TALLY_CLIENT_BREAKER_OPEN: return "open";
  case TALLY_CLIENT_BREAKER_HALF_OPEN: return "half_open";
  }
  return "unknown";
}

/* Readers on other threads: the slots and config do not change while they look. */
static void describe_retired(struct tally_cluster *cluster, struct tally_out *out)
{
  const struct tally_store *store = &cluster->appliance->store;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    const struct tally_cluster_peer *peer = &cluster->peers[r];
    if (peer->membership != TALLY_PEER_RETIRED) continue;
    assert(tally_store_replica_bound(store, r) && store->replica_origin[r] == peer->id);
    tally_out_printf(out, "peer %u state=retired held_seq=%" PRIu64 " held_scan=%" PRIu64
      " counters=%u\n", peer->id, tally_shard_held_seq(&store->replicas[r]),
      tally_shard_held_scan(&store->replicas[r]), tally_shard_counters_used(&store->replicas[r]));
  }
}

void tally_cluster_describe(struct tally_cluster *cluster, struct tally_out *out)
{
  pthread_mutex_lock(&cluster->lock);
  uint64_t now_ns = tally_clock_mono_ns();
  struct tally_appliance *appliance = cluster->appliance;
  bool ready = tally_lcores_running(appliance);
  tally_out_printf(out, "self %u ready=%d read_only=%d peers_up=%u write_quorum=%u"
    " compensations=%" PRIu64 " compensations_missed=%" PRIu64 " yielded=%" PRIu64
    " members=%u generation=%" PRIu64 "\n", cluster->config->node_id, ready ? 1 : 0,
    cluster->read_only || appliance->read_only_forced ? 1 : 0,
    peers_up(cluster, now_ns), cluster->config->write_quorum,
    __atomic_load_n(&cluster->compensations, __ATOMIC_RELAXED),
    __atomic_load_n(&cluster->compensations_missed, __ATOMIC_RELAXED),
    __atomic_load_n(&cluster->claims_yielded, __ATOMIC_RELAXED),
    cluster->config->node_count, cluster->members->generation);
  if (tally_cluster_fault_active(&cluster->fault)) { /* test-only: shown only when on */
    struct tally_cluster_fault_settings fault;
    tally_cluster_fault_get(&cluster->fault, &fault);
    tally_out_printf(out, "fault delay_ms=%u jitter_ms=%u loss_permille=%u dropped=%" PRIu64
      " delayed=%" PRIu64 "\n", fault.delay_ms, fault.jitter_ms, fault.loss_permille,
      __atomic_load_n(&cluster->fault.dropped, __ATOMIC_RELAXED),
      __atomic_load_n(&cluster->fault.delayed, __ATOMIC_RELAXED));
  }
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    uint64_t last = tally_phi_detector_last_heartbeat_ns(&peer->detector);
    uint32_t pending = pending_entries(peer);
    tally_out_printf(out, "peer %u state=%s phi=%.2f heartbeat_age_ms=%" PRIu64
      " sent_seq=%" PRIu64 " acked_seq=%" PRIu64 " pending=%u breaker=%s"
      " held_seq=%" PRIu64 " held_scan=%" PRIu64 " rounds_sent=%" PRIu64 " resends=%" PRIu64
      " resyncs=%" PRIu64 "\n",
      peer->id, tally_phi_state_name(tally_phi_detector_state(&peer->detector, now_ns)),
      tally_phi_detector_phi(&peer->detector, now_ns),
      last == 0 ? (uint64_t)0 : (uint64_t)((now_ns - last) / 1000000u), peer->sent_seq, peer->acked_seq, pending,
      breaker_name(peer->breaker.state),
      tally_shard_held_seq(&appliance->store.replicas[peer->replica]),
      tally_shard_held_scan(&appliance->store.replicas[peer->replica]), peer->rounds_sent,
      peer->resends, peer->resyncs);
  }
  describe_retired(cluster, out);
  pthread_mutex_unlock(&cluster->lock);
}

uint32_t tally_cluster_peers_behind(struct tally_cluster *cluster)
{
  pthread_mutex_lock(&cluster->lock);
  uint32_t behind = 0;
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    bool caught_up = peer->synced && !peer->pending_valid && peer->sent_seq == 0;
    if (!caught_up) behind++;
  }
  assert(behind <= cluster->peer_count);
  pthread_mutex_unlock(&cluster->lock);
  return behind;
}

/* ---- Metrics (/metrics) ------------------------------------------------------ */

/* values[] by peer slot; members only (under lock). */
static void peer_metric(struct tally_out *out, const char *name, const char *type,
  const char *help, struct tally_cluster *cluster, const uint64_t *values)
{
  tally_out_printf(out, "# HELP tally_cluster_%s %s\n# TYPE tally_cluster_%s %s\n", name, help,
    name, type);
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    tally_out_printf(out, "tally_cluster_%s{peer=\"%u\"} %" PRIu64 "\n", name, peer->id,
      values[peer - cluster->peers]);
  }
}

static void membership_metrics(struct tally_cluster *cluster, struct tally_out *out)
{
  uint32_t retired = 0;
  for (uint32_t r = 0; r < TALLY_REPLICA_REGIONS_MAX; r++) {
    if (cluster->peers[r].membership == TALLY_PEER_RETIRED) retired++;
  }
  assert(retired + cluster->peer_count <= TALLY_REPLICA_REGIONS_MAX);
  tally_out_printf(out, "# HELP tally_cluster_members nodes in the running membership, this one "
    "included\n# TYPE tally_cluster_members gauge\ntally_cluster_members %u\n"
    "# HELP tally_cluster_retired_peers nodes removed from the membership whose counts this node "
    "keeps (replica tables still summed)\n# TYPE tally_cluster_retired_peers gauge\n"
    "tally_cluster_retired_peers %u\n"
    "# HELP tally_cluster_replica_tables_free replica tables of the store not bound to a node "
    "yet (0: no new node id can join)\n# TYPE tally_cluster_replica_tables_free gauge\n"
    "tally_cluster_replica_tables_free %u\n"
    "# HELP tally_cluster_membership_generation the running membership (1 at start, +1 per change)"
    "\n# TYPE tally_cluster_membership_generation gauge\n"
    "tally_cluster_membership_generation %" PRIu64 "\n"
    "# HELP tally_cluster_membership_reloads_total membership changes applied at runtime\n"
    "# TYPE tally_cluster_membership_reloads_total counter\n"
    "tally_cluster_membership_reloads_total %" PRIu64 "\n"
    "# HELP tally_cluster_membership_refused_total cluster reloads refused (the running "
    "membership unchanged)\n# TYPE tally_cluster_membership_refused_total counter\n"
    "tally_cluster_membership_refused_total %" PRIu64 "\n",
    cluster->config->node_count, retired, tally_store_replica_free(&cluster->appliance->store),
    cluster->members->generation, __atomic_load_n(&cluster->membership_reloads, __ATOMIC_RELAXED),
    __atomic_load_n(&cluster->membership_refused, __ATOMIC_RELAXED));
}

void tally_cluster_metrics(struct tally_cluster *cluster, struct tally_out *out)
{
  pthread_mutex_lock(&cluster->lock);
  uint64_t now_ns = tally_clock_mono_ns();
  uint64_t up[TALLY_REPLICA_REGIONS_MAX], pending[TALLY_REPLICA_REGIONS_MAX];
  uint64_t resends[TALLY_REPLICA_REGIONS_MAX], acked[TALLY_REPLICA_REGIONS_MAX];
  uint64_t resyncs[TALLY_REPLICA_REGIONS_MAX], age_ms[TALLY_REPLICA_REGIONS_MAX];
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    uint32_t i = (uint32_t)(peer - cluster->peers);
    up[i] = tally_phi_detector_state(&peer->detector, now_ns) == TALLY_PHI_UP;
    pending[i] = pending_entries(peer);
    resends[i] = peer->resends;
    acked[i] = peer->acked_seq;
    resyncs[i] = peer->resyncs;
    uint64_t last = tally_phi_detector_last_heartbeat_ns(&peer->detector);
    age_ms[i] = last == 0 ? 0 : (now_ns - last) / 1000000u;
  }
  tally_out_printf(out, "# HELP tally_cluster_read_only 1 when no write quorum is reachable\n"
    "# TYPE tally_cluster_read_only gauge\ntally_cluster_read_only %d\n",
    cluster->read_only ? 1 : 0);
  peer_metric(out, "peer_up", "gauge", "1 when the failure detector says up", cluster, up);
  peer_metric(out, "heartbeat_age_ms", "gauge", "time since the peer's last heartbeat",
    cluster, age_ms);
  peer_metric(out, "replication_lag_counters", "gauge",
    "counters and producer records of this node's scan the peer has not acked yet", cluster,
    pending);
  peer_metric(out, "replication_acked_seq", "counter", "sequence the peer holds of this node",
    cluster, acked);
  peer_metric(out, "replication_resends_total", "counter", "rounds resent after a timeout",
    cluster, resends);
  peer_metric(out, "replication_resyncs_total", "counter",
    "full resends after the peer lost or changed its state", cluster, resyncs);
  tally_out_printf(out, "# HELP tally_cluster_rounds_applied_total rounds applied to replica "
    "tables\n# TYPE tally_cluster_rounds_applied_total counter\n"
    "tally_cluster_rounds_applied_total %" PRIu64 "\n", cluster->rounds_applied);
  tally_out_printf(out, "# HELP tally_cluster_compensations_total reliable batches undone here "
    "because a peer also applied them (from a later attempt, or keeping them)\n"
    "# TYPE tally_cluster_compensations_total counter\n"
    "tally_cluster_compensations_total %" PRIu64 "\n",
    __atomic_load_n(&cluster->compensations, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_compensations_missed_total double applies found "
    "too late to undo (counted twice; alert on any)\n"
    "# TYPE tally_cluster_compensations_missed_total counter\n"
    "tally_cluster_compensations_missed_total %" PRIu64 "\n",
    __atomic_load_n(&cluster->compensations_missed, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_claims_lost_total claims (batches applied from a "
    "resend) overwritten in their ring before a peer got them (alert on any)\n"
    "# TYPE tally_cluster_claims_lost_total counter\ntally_cluster_claims_lost_total %" PRIu64
    "\n", __atomic_load_n(&cluster->claims_lost, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_claims_yielded_total claimed batches applied here "
    "with no journal entry left to undo them (store restored, journal moved on): kept here, "
    "the claimant asked to undo its apply\n# TYPE tally_cluster_claims_yielded_total counter\n"
    "tally_cluster_claims_yielded_total %" PRIu64 "\n",
    __atomic_load_n(&cluster->claims_yielded, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_keeper_claims_received_total peers keeping a batch "
    "this node may also have applied, asking it to undo its apply\n"
    "# TYPE tally_cluster_keeper_claims_received_total counter\n"
    "tally_cluster_keeper_claims_received_total %" PRIu64 "\n",
    __atomic_load_n(&cluster->keeper_claims_received, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_restore_claims_total keeper claims this node sent "
    "after a restore, for the batches its restored records name (it has no journal to undo "
    "them with)\n# TYPE tally_cluster_restore_claims_total counter\n"
    "tally_cluster_restore_claims_total %" PRIu64 "\n",
    __atomic_load_n(&cluster->restore_claims, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_claims_received_total claims received from peers\n"
    "# TYPE tally_cluster_claims_received_total counter\ntally_cluster_claims_received_total %"
    PRIu64 "\n", __atomic_load_n(&cluster->claims_received, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_rejected_total cluster datagrams refused\n"
    "# TYPE tally_cluster_rejected_total counter\n");
  for (uint32_t r = 1; r < TALLY_REPLICATION_REASON_COUNT; r++) {
    tally_out_printf(out, "tally_cluster_rejected_total{kind=\"replication\",reason=\"%s\"} %"
      PRIu64 "\n", tally_replication_reason_name(r), cluster->rejected[r]);
  }
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"heartbeat\",reason=\"any\"} %" PRIu64
    "\n", cluster->rejected[HEARTBEAT_REJECTED]);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"heartbeat\",reason=\"replayed\"} %"
    PRIu64 "\n", cluster->heartbeats_replayed);
  tally_out_printf(out, "tally_cluster_rejected_total{kind=\"any\",reason=\"not_member\"} %"
    PRIu64 "\n", cluster->not_member);
  membership_metrics(cluster, out);
  tally_out_printf(out, "# HELP tally_cluster_fault_active 1 while test-only fault injection "
    "(cluster.fault_*) is on; alert on any in production\n"
    "# TYPE tally_cluster_fault_active gauge\ntally_cluster_fault_active %d\n",
    tally_cluster_fault_active(&cluster->fault) ? 1 : 0);
  tally_out_printf(out, "# HELP tally_cluster_fault_dropped_total datagrams to peers dropped by "
    "fault injection (loss, or its delay queue full)\n"
    "# TYPE tally_cluster_fault_dropped_total counter\ntally_cluster_fault_dropped_total %" PRIu64
    "\n", __atomic_load_n(&cluster->fault.dropped, __ATOMIC_RELAXED));
  tally_out_printf(out, "# HELP tally_cluster_fault_delayed_total datagrams to peers held back by "
    "fault injection (delay and jitter)\n"
    "# TYPE tally_cluster_fault_delayed_total counter\ntally_cluster_fault_delayed_total %" PRIu64
    "\n", __atomic_load_n(&cluster->fault.delayed, __ATOMIC_RELAXED));
  pthread_mutex_unlock(&cluster->lock);
}

/* ---- Quorum reads (tallyctl get --quorum) ---------------------------------- */

#define QUORUM_READ_TIMEOUT_MS 500u

struct quorum_copy {
  bool known;
  uint64_t scan;    /* freshness; UINT64_MAX: the origin's own */
  int64_t value;
};

static void quorum_consider(struct quorum_copy *copy, uint64_t scan, bool has, int64_t value)
{
  if (copy->known && copy->scan >= scan) return;
  copy->known = true;
  copy->scan = scan;
  copy->value = has ? value : 0;
}

/*
 * What a quorum read needs of the membership, copied under the lock so that
 * the read's network wait (up to 500 ms) never holds it. Copies are indexed
 * by replica region (the origin's slot), this node's own last.
 */
struct quorum_view {
  uint16_t self;
  uint32_t self_ipv4;
  uint8_t key[TALLY_KEY_SIZE];
  uint32_t nodes;                     /* members, this node included */
  uint32_t asked;
  uint16_t ids[TALLY_REPLICA_REGIONS_MAX];
  struct sockaddr_in addresses[TALLY_REPLICA_REGIONS_MAX];
};

#define QUORUM_SELF TALLY_REPLICA_REGIONS_MAX

static void quorum_view_take(struct tally_cluster *cluster, struct quorum_view *view)
{
  pthread_mutex_lock(&cluster->lock);
  const struct tally_cluster_config *config = cluster->config;
  view->self = config->node_id;
  memcpy(view->key, config->key, sizeof view->key);
  view->nodes = config->node_count;
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == config->node_id) view->self_ipv4 = config->nodes[i].ipv4;
  }
  view->asked = 0;
  for (struct tally_cluster_peer *peer = NULL; (peer = next_active(cluster, peer)) != NULL;) {
    view->ids[view->asked] = peer->id;
    view->addresses[view->asked++] = peer->address;
  }
  assert(view->asked + 1u == view->nodes);
  pthread_mutex_unlock(&cluster->lock);
}

/* This node's own copies (its contribution and every replica table it holds). */
static void quorum_local(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  struct quorum_copy *copies, bool *found)
{
  const struct tally_store *store = &cluster->appliance->store;
  uint32_t hash = tally_name_hash(name, name_len);
  __int128 own = 0;
  bool has = false;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], name, name_len, hash);
    if (slot < 0) continue;
    own += tally_shard_slot_value(&store->shards[i], (uint32_t)slot);
    has = true;
  }
  *found = *found || has;
  quorum_consider(&copies[QUORUM_SELF], UINT64_MAX, has,
    own > INT64_MAX || own < INT64_MIN ? 0 : (int64_t)own);
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) continue;
    const struct tally_shard *replica = &store->replicas[r];
    int64_t slot = tally_shard_find(replica, name, name_len, hash);
    *found = *found || slot >= 0;
    quorum_consider(&copies[r], tally_shard_held_scan(replica), slot >= 0,
      slot >= 0 ? tally_shard_slot_value(replica, (uint32_t)slot) : 0);
  }
}

static int quorum_socket(const struct quorum_view *view)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0,
    .sin_addr.s_addr = htonl(view->self_ipv4) };
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/*
 * Folds one reply into the copies; returns true if it was the peer's last.
 * An origin this node holds no table of (a node it never had as a member)
 * is not summed.
 */
static bool quorum_reply(struct tally_cluster *cluster, const struct quorum_view *view,
  const struct tally_replication_message *reply, uint64_t request, struct quorum_copy *copies,
  bool *found)
{
  if (reply->type != TALLY_REPLICATION_READ_REPLY || reply->seq != request) return false;
  int32_t index = reply->origin == view->self ? (int32_t)QUORUM_SELF :
    tally_store_replica_find(&cluster->appliance->store, reply->origin);
  if (index >= 0) {
    *found = *found || reply->count == 1;
    quorum_consider(&copies[index], reply->scan, reply->count == 1,
      reply->count == 1 ? reply->entries[0].value : 0);
  }
  return (reply->flags & TALLY_REPLICATION_FLAG_LAST) != 0;
}

int tally_cluster_quorum_read(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  __int128 *total, uint32_t *answered, uint32_t *nodes, bool *found)
{
  assert(tally_name_valid(name, name_len));
  struct quorum_view view;
  quorum_view_take(cluster, &view);
  struct quorum_copy copies[TALLY_REPLICA_REGIONS_MAX + 1u];
  memset(copies, 0, sizeof copies);
  *found = false;
  *answered = 1;
  *nodes = view.nodes;
  quorum_local(cluster, name, name_len, copies, found);
  int fd = quorum_socket(&view);
  if (fd < 0) return -1;
  uint64_t request = 0;
  randombytes_buf(&request, sizeof request);
  struct tally_replication_message ask = { .type = TALLY_REPLICATION_READ_REQUEST,
    .origin = view.self, .sender = view.self, .seq = request,
    .count = 1, .entries = { { .name = name, .name_len = name_len, .value = 0 } } };
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  size_t size = tally_replication_encode(&ask, view.key, buffer, sizeof buffer);
  assert(size > 0);
  for (uint32_t p = 0; p < view.asked; p++) {
    ssize_t sent = sendto(fd, buffer, size, 0, (const struct sockaddr *)&view.addresses[p],
      sizeof view.addresses[p]);
    (void)sent;
  }
  bool done[TALLY_REPLICA_REGIONS_MAX] = { false };
  uint64_t deadline = now_ms() + QUORUM_READ_TIMEOUT_MS;
  while (*answered < view.asked + 1u && now_ms() < deadline) {
    struct pollfd descriptor = { .fd = fd, .events = POLLIN };
    if (poll(&descriptor, 1, (int)(deadline - now_ms())) <= 0) continue;
    ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    struct tally_replication_message reply;
    if (got < 0 || tally_replication_decode(buffer, (size_t)got, view.key, &reply) !=
        TALLY_REPLICATION_OK) {
      continue;
    }
    uint32_t p = 0;
    while (p < view.asked && view.ids[p] != reply.sender) p++;
    if (p == view.asked || done[p]) continue; /* not asked (not a member), or finished */
    if (quorum_reply(cluster, &view, &reply, request, copies, found)) {
      done[p] = true;
      (*answered)++;
    }
  }
  close(fd);
  *total = 0;
  for (uint32_t i = 0; i <= TALLY_REPLICA_REGIONS_MAX; i++) *total += copies[i].value;
  assert(*answered >= 1 && *answered <= *nodes);
  return 0;
}
