/*
 * fuzz_replication_seq.c — stateful libFuzzer target of the cluster's
 * receivers (issue 14, item 7): SEQUENCES of replication messages, not single
 * datagrams, fed to one real cluster instance (node 2 of a two-node cluster,
 * W = 2, on a real store) over a fake network and clock (cluster_io.h). The
 * fuzzer plays node 1: it holds the cluster key and both sessions, so it
 * can send anything a member could, a replayer could, or an earlier process
 * of node 1 could.
 *
 * The input is a list of operations, each one opcode byte and its bytes:
 *   ROUND    a round of node 1's stream (probe, next, resend, gap), counters,
 *            producer records or claims, with or without LAST;
 *   ACK      an ack of node 2's stream: the answer to its last probe (echoing
 *            the nonce), of the round in flight, a stale one, or any;
 *   RESTORE_REQUEST, READ_REQUEST  with a fresh, repeated or old stamp;
 *   REPLAY   one of the last datagrams sent to node 2, again;
 *   TICK     the clock moves on, node 2 runs (and sends probes, rounds);
 *   RAW      input bytes as a datagram;
 *   RESTART  node 1 takes a new session (the old one stays for replays);
 *   HEARTBEAT (opcode byte 8 exactly, so the seeds' opcodes 0..7 keep their
 *            meaning) node 1's heartbeat: of its incarnation, an earlier one,
 *            a newer one (node 1 restarted) or any, with a fresh, repeated,
 *            older or any send time (issue 14, M3).
 * Every message but RAW picks its sessions: right, another peer_session,
 * none, or an earlier session of node 1.
 *
 * Invariants checked after each operation (abort() = a finding):
 *   - everything node 2 sends goes to node 1's configured address;
 *   - in answer to a datagram that is not a request, node 2 sends at most one
 *     datagram, no larger than the one it got (no amplification);
 *   - a datagram naming another session of node 2 (or none, where not
 *     allowed), a replay, a request stamped outside the window: nothing sent;
 *   - a replayed request, or a repeated or old stamp: no dump (nothing sent);
 *   - the replica's held_seq never goes down; a stale ack changes neither
 *     node 2's acked position nor its resync count;
 *   - a heartbeat is accepted exactly when it is newer than the last one
 *     accepted in (incarnation, send time) order; a refused one changes
 *     nothing (no restart seen, nothing sent) and is counted under its
 *     reason; node 2's record of node 1's incarnation never goes down;
 *   - every peer invariant (tally_cluster_tick asserts them).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>

#include "clock.h"
#include "cluster.h"
#include "heartbeat_wire.h"
#include "store.h"
#include "tally/name.h"

#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

#define SEQ_OPS_MAX 64u      /* operations per input */
#define SEQ_HISTORY 8u       /* datagrams kept for REPLAY */
#define SEQ_INBOX_MAX 4u
#define SEQ_PORT_BASE 19400u
#define SEQ_STEP_NS 1000000ull
#define SEQ_OP_HEARTBEAT 8u     /* opcode byte of a heartbeat (exactly; others mod 8) */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct datagram {
  uint32_t size;
  uint8_t data[TALLY_REPLICATION_SIZE_MAX];
};

/* The fake network: node 2's inbox and what it sent (since the last clear). */
static struct {
  uint64_t now_ns;
  struct datagram inbox[SEQ_INBOX_MAX];
  uint32_t inbox_count;
  uint32_t sent;             /* replication datagrams sent */
  uint32_t sent_bytes_max;
  uint32_t sent_restore;     /* RESTORE and READ_REPLY datagrams */
  uint64_t probe_nonce;      /* of node 2's last probe to node 1 */
  uint64_t probe_session;    /* its sender session */
} net;

static struct sockaddr_in address_of(uint32_t index)
{
  return (struct sockaddr_in){ .sin_family = AF_INET,
    .sin_port = htons((uint16_t)(SEQ_PORT_BASE + index + 1u)),
    .sin_addr.s_addr = htonl(0x7f000001) };
}

static uint8_t cluster_key[TALLY_KEY_SIZE];

static void fake_send(void *context, const struct sockaddr_in *to, const uint8_t *data,
  size_t size)
{
  (void)context;
  struct sockaddr_in member = address_of(0);
  FUZZ_CHECK(to->sin_addr.s_addr == member.sin_addr.s_addr && to->sin_port == member.sin_port);
  FUZZ_CHECK(size >= 2 && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  if (data[0] == 'T' && data[1] == 'H') return; /* heartbeats: not replication */
  struct tally_replication_message message;
  FUZZ_CHECK(tally_replication_decode(data, size, cluster_key, &message) == TALLY_REPLICATION_OK);
  net.sent++;
  if (size > net.sent_bytes_max) net.sent_bytes_max = (uint32_t)size;
  if (message.type == TALLY_REPLICATION_RESTORE || message.type == TALLY_REPLICATION_READ_REPLY) {
    net.sent_restore++;
  }
  if (message.type == TALLY_REPLICATION_ROUND && message.seq == 0) {
    net.probe_nonce = message.scan;
    net.probe_session = message.session;
  }
}

static ssize_t fake_receive(void *context, uint8_t *buffer, size_t size, struct sockaddr_in *from)
{
  (void)context;
  if (net.inbox_count == 0) return -1;
  const struct datagram *first = &net.inbox[0];
  FUZZ_CHECK(first->size <= size);
  memcpy(buffer, first->data, first->size);
  ssize_t got = (ssize_t)first->size;
  net.inbox_count--;
  memmove(&net.inbox[0], &net.inbox[1], net.inbox_count * sizeof net.inbox[0]);
  *from = address_of(0);
  return got;
}

static bool fake_wait_readable(void *context, uint64_t limit_ns)
{
  (void)context;
  (void)limit_ns;
  return net.inbox_count > 0;
}

static uint64_t fake_now_ns(void *context)
{
  (void)context;
  return net.now_ns;
}

static const struct tally_cluster_io_ops fake_ops = {
  .send = fake_send, .receive = fake_receive, .wait_readable = fake_wait_readable,
  .now_ns = fake_now_ns,
};

/* ---- The node under test (node 2) and the fuzzer's node 1 -------------------- */

static char store_path[128];
static struct tally_appliance appliance;
static struct tally_cluster cluster;

static struct {
  uint64_t session;          /* node 1's now */
  uint64_t old_session;      /* its previous one (replays of an earlier process) */
  uint64_t stamp_us;         /* its last request stamp */
  uint32_t incarnation;      /* its heartbeats' now, and its previous one */
  uint32_t old_incarnation;
  uint64_t heartbeat_ns;     /* send time of its last heartbeat */
  struct datagram history[SEQ_HISTORY];
  uint32_t history_count;
} peer1;

static void node_open(void)
{
  const struct tally_store_geometry geometry = { .shard_count = 2, .counters_max = 256,
    .producers_max = 16, .replica_count = TALLY_REPLICA_REGIONS_MAX };
  char error[256] = "";
  unlink(store_path);
  memset(&appliance, 0, sizeof appliance);
  if (tally_store_open(&appliance.store, store_path, &geometry, TALLY_PERSIST_GROUP_COMMIT,
        error, sizeof error) != 0) {
    fprintf(stderr, "fuzz_replication_seq: store: %s\n", error);
    abort();
  }
  appliance.lcore_count = 1;
  appliance.lcores = aligned_alloc(64, sizeof(struct tally_lcore));
  FUZZ_CHECK(appliance.lcores != NULL);
  memset(appliance.lcores, 0, sizeof(struct tally_lcore));
  appliance.lcores[0].running = true;
  struct tally_cluster_config *config = &appliance.config.cluster;
  *config = (struct tally_cluster_config){ .enabled = true, .node_id = 2, .node_count = 2,
    .write_quorum = 2, .heartbeat_interval_ms = 10, .replication_interval_ms = 1,
    .suspect_phi = 5, .down_phi = 8 };
  for (uint32_t i = 0; i < 2; i++) {
    struct sockaddr_in address = address_of(i);
    config->nodes[i] = (struct tally_cluster_node){ .id = (uint16_t)(i + 1u),
      .ipv4 = ntohl(address.sin_addr.s_addr), .port = ntohs(address.sin_port) };
  }
  memcpy(config->key, cluster_key, sizeof cluster_key);
  struct tally_cluster_io io = { .ops = &fake_ops, .context = NULL };
  if (tally_cluster_open_io(&cluster, &appliance, io, false, error, sizeof error) != 0) {
    fprintf(stderr, "fuzz_replication_seq: cluster: %s\n", error);
    abort();
  }
}

static void node_close(void)
{
  tally_cluster_close(&cluster);
  tally_store_close(&appliance.store);
  free(appliance.lcores);
  unlink(store_path);
}

static struct tally_cluster_peer *peer_of_node1(void)
{
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    struct tally_cluster_peer *peer = &cluster.peers[i];
    if (tally_cluster_peer_active(peer) && peer->id == 1) return peer;
  }
  abort(); /* node 1 is always a member */
}

static uint64_t replica_held(void)
{
  int32_t r = tally_store_replica_find(&appliance.store, 1);
  FUZZ_CHECK(r >= 0);
  return tally_shard_held_seq(&appliance.store.replicas[r]);
}

/* ---- Reading the input --------------------------------------------------------- */

struct cursor {
  const uint8_t *data;
  size_t size;
  size_t at;
};

static uint8_t take8(struct cursor *in)
{
  return in->at < in->size ? in->data[in->at++] : 0;
}

static uint64_t take64(struct cursor *in)
{
  uint64_t value = 0;
  for (unsigned i = 0; i < 8; i++) value |= (uint64_t)take8(in) << (8 * i);
  return value;
}

/* ---- Sending to node 2 ------------------------------------------------------------ */

enum session_pick { SESSION_RIGHT, SESSION_OTHER_PEER, SESSION_NONE, SESSION_OLD_SENDER };

/* Sets the sessions as picked; returns whether node 2 may accept it on that ground. */
static bool sessions(struct tally_replication_message *message, enum session_pick pick,
  bool unknown_ok)
{
  message->session = pick == SESSION_OLD_SENDER ? peer1.old_session : peer1.session;
  message->peer_session = pick == SESSION_OTHER_PEER ? cluster.session ^ 1u :
    pick == SESSION_NONE ? 0 : cluster.session;
  if (pick == SESSION_OTHER_PEER || pick == SESSION_NONE) return unknown_ok;
  return true;
}

/* Runs node 2 without moving time, so that what it sends next answers only the datagram. */
static void settle(void)
{
  tally_cluster_tick(&cluster, 0);
  net.sent = 0;
  net.sent_bytes_max = 0;
  net.sent_restore = 0;
}

static void deliver_bytes(const uint8_t *data, size_t size, bool keep)
{
  settle();
  FUZZ_CHECK(size <= TALLY_REPLICATION_SIZE_MAX && net.inbox_count < SEQ_INBOX_MAX);
  net.inbox[net.inbox_count].size = (uint32_t)size;
  memcpy(net.inbox[net.inbox_count].data, data, size);
  net.inbox_count++;
  if (keep && size > 0) {
    struct datagram *slot = &peer1.history[peer1.history_count++ % SEQ_HISTORY];
    slot->size = (uint32_t)size;
    memcpy(slot->data, data, size);
  }
  tally_cluster_tick(&cluster, 0);
  FUZZ_CHECK(net.inbox_count == 0);
}

/* Delivers; checks the answer is no larger than the message (requests excepted). */
static void deliver(const struct tally_replication_message *message, bool request)
{
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX];
  size_t size = tally_replication_encode(message, cluster_key, buffer, sizeof buffer);
  if (size == 0) return; /* not a message a member could send */
  deliver_bytes(buffer, size, true);
  if (!request) {
    FUZZ_CHECK(net.sent <= 1 && net.sent_bytes_max <= size && net.sent_restore == 0);
  }
}

static void op_round(struct cursor *in)
{
  uint64_t held = replica_held();
  uint8_t pick = take8(in);
  uint8_t shape = take8(in);
  struct tally_replication_message round = { .type = TALLY_REPLICATION_ROUND, .origin = 1,
    .sender = 1, .scan = take64(in) };
  static const int64_t offsets[4] = { 1, 0, 2, -1 };
  round.seq = (pick & 4u) ? 0 : held + (uint64_t)offsets[(pick >> 3) & 3u];
  if (round.seq == 0) round.count = 0;
  bool ok = sessions(&round, (enum session_pick)(pick & 3u), round.seq == 0);
  round.flags = (shape & 1u) ? TALLY_REPLICATION_FLAG_LAST : 0;
  uint32_t count = round.seq == 0 ? 0 : 1u + (shape >> 1 & 3u);
  char names[4][8];
  for (uint32_t i = 0; i < count; i++) {
    if (shape & 0x20u) { /* producer records, each a valid dedup state */
      round.flags |= TALLY_REPLICATION_FLAG_PRODUCERS;
      round.producers[i].producer = 1u + take8(in) % 8u;
      round.producers[i].runs[0].head_last = 1u + take8(in);
      round.producers[i].runs[0].last_seq = round.producers[i].runs[0].head_last;
      round.producers[i].runs[0].window = 1u | take64(in);
    } else if (shape & 0x40u) {
      round.flags |= TALLY_REPLICATION_FLAG_CLAIMS;
      round.claims[i] = (struct tally_replication_claim){ .producer = 1u + take8(in) % 8u,
        .seq = take8(in), .attempt = 1u + take8(in) % 3u };
    } else {
      int length = snprintf(names[i], sizeof names[i], "c%u", take8(in) % 16u);
      round.entries[i] = (struct tally_replication_entry){ .name = names[i],
        .name_len = (uint32_t)length, .value = (int64_t)take64(in) };
    }
    round.count++;
  }
  uint64_t sent_before = cluster.rounds_applied;
  deliver(&round, false);
  if (!ok) { /* another session of node 2, or none: ignored whole */
    FUZZ_CHECK(net.sent == 0 && cluster.rounds_applied == sent_before);
  }
}

static void op_ack(struct cursor *in)
{
  struct tally_cluster_peer *peer = peer_of_node1();
  uint8_t pick = take8(in);
  uint64_t value = take64(in);
  struct tally_replication_message ack = { .type = TALLY_REPLICATION_ACK, .origin = 2,
    .sender = 1, .scan = value };
  bool ok = sessions(&ack, (enum session_pick)(pick & 3u), false);
  uint32_t kind = (pick >> 2) & 3u;
  bool stale = false;
  if (kind == 0) { /* the answer to node 2's last probe */
    ack.scan = net.probe_nonce;
    ack.seq = value % 64u;
  } else if (kind == 1) {
    ack.seq = peer->sent_seq;
  } else if (kind == 2 && peer->acked_seq > 0) {
    ack.seq = peer->acked_seq - 1u - value % peer->acked_seq; /* below what it acked */
    stale = peer->synced && ok && pick % 4u != SESSION_OLD_SENDER;
  } else {
    ack.seq = value;
  }
  uint64_t resyncs = peer->resyncs, acked = peer->acked_seq;
  deliver(&ack, false);
  FUZZ_CHECK(net.sent == 0); /* an ack is never answered */
  if (stale || !ok) FUZZ_CHECK(peer->resyncs == resyncs && peer->acked_seq == acked);
}

static void op_request(struct cursor *in, enum tally_replication_type type)
{
  uint8_t pick = take8(in);
  struct tally_replication_message request = { .type = type, .origin = 1, .sender = 1,
    .seq = take64(in) };
  if (type == TALLY_REPLICATION_READ_REQUEST) {
    request.count = 1;
    request.entries[0] = (struct tally_replication_entry){ .name = "c1", .name_len = 2 };
  }
  bool ok = sessions(&request, (enum session_pick)(pick & 3u), (pick & 3u) == SESSION_NONE);
  uint64_t now_us = tally_clock_unix_ns() / 1000u;
  uint32_t stamp = (pick >> 2) & 3u;
  if (stamp == 0) {
    request.scan = peer1.stamp_us = (peer1.stamp_us >= now_us ? peer1.stamp_us + 1u : now_us);
  } else if (stamp == 1) {
    request.scan = peer1.stamp_us; /* the last one again */
  } else {
    request.scan = now_us - 2000ull * TALLY_REPLICATION_REQUEST_WINDOW_MS; /* long ago */
  }
  /* Served exactly when its sessions are right and its stamp is new and near. */
  uint32_t kind = type == TALLY_REPLICATION_RESTORE_REQUEST ? TALLY_CLUSTER_REQUEST_RESTORE :
    TALLY_CLUSTER_REQUEST_READ;
  uint64_t window_us = (uint64_t)TALLY_REPLICATION_REQUEST_WINDOW_MS * 1000u;
  bool served = ok && request.scan > peer_of_node1()->request_us[kind] &&
    request.scan + window_us >= now_us;
  deliver(&request, true);
  FUZZ_CHECK(served ? net.sent_restore >= 1 : net.sent == 0);
}

static void op_replay(struct cursor *in)
{
  if (peer1.history_count == 0) return;
  uint32_t kept = peer1.history_count < SEQ_HISTORY ? peer1.history_count : SEQ_HISTORY;
  struct datagram copy = peer1.history[take8(in) % kept];
  struct tally_replication_message message;
  FUZZ_CHECK(tally_replication_decode(copy.data, copy.size, cluster_key, &message) ==
    TALLY_REPLICATION_OK);
  uint64_t held = replica_held();
  deliver_bytes(copy.data, copy.size, false);
  FUZZ_CHECK(net.sent_restore == 0); /* a replayed request makes no dump */
  FUZZ_CHECK(net.sent <= 1 && net.sent_bytes_max <= copy.size);
  FUZZ_CHECK(replica_held() >= held);
}

static void op_tick(struct cursor *in)
{
  uint32_t ms = 1u + take8(in) % 64u;
  for (uint32_t i = 0; i < ms; i++) {
    net.now_ns += SEQ_STEP_NS;
    tally_cluster_tick(&cluster, 0);
  }
}

static void op_raw(struct cursor *in)
{
  size_t size = take8(in) * 6u;
  if (size > in->size - in->at) size = in->size - in->at;
  if (size > TALLY_REPLICATION_SIZE_MAX) size = TALLY_REPLICATION_SIZE_MAX;
  deliver_bytes(in->data + in->at, size, false);
  in->at += size;
  FUZZ_CHECK(net.sent == 0); /* unauthenticated: never answered */
}

/*
 * pick bits 0-1: the incarnation (0 node 1's, 1 its previous one, 2 a newer
 * one: node 1 restarted, 3 any); bits 2-3: the send time (0 after the last,
 * 1 the last again, 2 before it, 3 any).
 */
static void op_heartbeat(struct cursor *in)
{
  uint8_t pick = take8(in);
  uint8_t step = take8(in);
  uint32_t generation = peer1.incarnation;
  switch (pick & 3u) {
  case 1: generation = peer1.old_incarnation; break;
  case 2:
    peer1.old_incarnation = peer1.incarnation;
    peer1.incarnation += 1u + step;
    generation = peer1.incarnation;
    break;
  case 3: generation = (uint32_t)take64(in); break;
  default: break;
  }
  uint64_t sent_ns = peer1.heartbeat_ns;
  switch ((pick >> 2) & 3u) {
  case 0: sent_ns += 1u + step; break;
  case 2: sent_ns = sent_ns > step ? sent_ns - 1u - step : 0; break;
  case 3: sent_ns = take64(in); break;
  default: break;
  }
  if (sent_ns > peer1.heartbeat_ns) peer1.heartbeat_ns = sent_ns;
  struct tally_heartbeat heartbeat = { .node_id = 1, .flags = TALLY_HEARTBEAT_FLAG_READY,
    .generation = generation, .send_time_ns = sent_ns };
  uint8_t buffer[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&heartbeat, cluster_key, buffer);
  const struct tally_cluster_peer *peer = peer_of_node1();
  uint32_t incarnation = peer->incarnation;
  uint64_t last_ns = peer->heartbeat_sent_ns;
  uint64_t in_before = peer->heartbeats_in;
  uint64_t restarts = cluster.peer_restarts;
  uint64_t refused_old = cluster.heartbeats_old_incarnation;
  uint64_t refused_replayed = cluster.heartbeats_replayed;
  bool newer = generation > incarnation || (generation == incarnation && sent_ns > last_ns);
  deliver_bytes(buffer, sizeof buffer, false);
  if (newer) {
    FUZZ_CHECK(peer->heartbeats_in == in_before + 1u && peer->incarnation == generation);
    FUZZ_CHECK(peer->heartbeat_sent_ns == sent_ns);
    bool restart = generation != incarnation && incarnation != 0;
    FUZZ_CHECK(cluster.peer_restarts == restarts + (restart ? 1u : 0u));
    return;
  }
  FUZZ_CHECK(net.sent == 0); /* no probe: nothing about node 1 changed */
  FUZZ_CHECK(peer->heartbeats_in == in_before && peer->incarnation == incarnation);
  FUZZ_CHECK(peer->heartbeat_sent_ns == last_ns && cluster.peer_restarts == restarts);
  bool old = generation < incarnation;
  FUZZ_CHECK(cluster.heartbeats_old_incarnation == refused_old + (old ? 1u : 0u));
  FUZZ_CHECK(cluster.heartbeats_replayed == refused_replayed + (old ? 0u : 1u));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  char *eal[] = { "fuzz_replication_seq", "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
    "-l", "0", "--log-level=*:error", NULL };
  if (rte_eal_init(9, eal) < 0) abort();
  memset(cluster_key, 0x5a, sizeof cluster_key);
  snprintf(store_path, sizeof store_path, "/tmp/tally_fuzz_seq.%d.store", (int)getpid());
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  memset(&net, 0, sizeof net);
  memset(&peer1, 0, sizeof peer1);
  net.now_ns = 1000000000ull;
  peer1.session = 0x1111u;
  peer1.old_session = 0x2222u;
  peer1.incarnation = 1000u;
  peer1.old_incarnation = 999u;
  node_open();
  struct cursor in = { .data = data, .size = size };
  uint64_t held = replica_held();
  uint32_t incarnation = 0;
  for (uint32_t n = 0; n < SEQ_OPS_MAX && in.at < in.size; n++) {
    uint8_t opcode = take8(&in);
    switch (opcode == SEQ_OP_HEARTBEAT ? SEQ_OP_HEARTBEAT : opcode % 8u) {
    case SEQ_OP_HEARTBEAT: op_heartbeat(&in); break;
    case 0: op_round(&in); break;
    case 1: op_ack(&in); break;
    case 2: op_request(&in, TALLY_REPLICATION_RESTORE_REQUEST); break;
    case 3: op_request(&in, TALLY_REPLICATION_READ_REQUEST); break;
    case 4: op_replay(&in); break;
    case 5: op_tick(&in); break;
    case 6: op_raw(&in); break;
    default: /* node 1 restarts: a new session, the old one kept for replays */
      peer1.old_session = peer1.session;
      peer1.session = peer1.session * 6364136223846793005ull + 1442695040888963407ull;
      if (peer1.session == 0) peer1.session = 1;
      break;
    }
    FUZZ_CHECK(replica_held() >= held); /* a replica's held sequence never goes down */
    held = replica_held();
    FUZZ_CHECK(peer_of_node1()->incarnation >= incarnation); /* never goes down */
    incarnation = peer_of_node1()->incarnation;
  }
  node_close();
  return 0;
}
