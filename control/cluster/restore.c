/*
 * restore.c — a new or damaged store gets this node's own contribution back
 * from its peers before the lcores start: ask every member (resent every
 * TALLY_CLUSTER_RESTORE_RETRY_MS), wait for N - W + 1 of them to answer,
 * take the freshest copy (highest held_scan), apply its parts to shard 0
 * (total minus the other shards) and its producer records to the dedup
 * state, then write keeper claims for the batches the restored records name.
 * Blocking, at most TALLY_CLUSTER_RESTORE_WAIT_MS_MAX. Runs on the start-up
 * thread, before the cluster thread starts; meanwhile it serves peers that
 * restore at the same time (stream_in.c).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster_internal.h"
#include "store_format.h"
#include "tally/name.h"

struct restore_state { /* by peer slot */
  bool answered[TALLY_REPLICA_REGIONS_MAX];
  uint64_t held[TALLY_REPLICA_REGIONS_MAX]; /* each copy's held_scan */
  uint32_t answers;
  int32_t chosen;            /* peer whose copy is applied, -1 before choosing */
  uint8_t *parts_seen;       /* of the chosen copy */
  uint32_t parts_max;
  int32_t last_part;         /* -1 until the LAST part arrives */
  uint32_t statsd_refused;   /* statsd names beyond statsd's share of shard 0 (C1) */
  uint32_t counters_refused; /* names shard 0 had no room for */
  uint64_t stamp_us;         /* of the last request sent (each request a newer one) */
};

static void restore_request(struct tally_cluster *cluster, struct restore_state *state)
{
  /* A fresh stamp each time: a peer serves a request once (session.c). */
  struct tally_replication_message request = { .type = TALLY_REPLICATION_RESTORE_REQUEST,
    .origin = cluster->config->node_id, .sender = cluster->config->node_id,
    .scan = tally_cluster_request_stamp(&state->stamp_us), .session = cluster->session };
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    int32_t i = (int32_t)(peer - cluster->peers);
    if (state->chosen < 0 ? !state->answered[i] : i == state->chosen) {
      tally_cluster_send_message(cluster, &peer->address, &request);
    }
  }
}

/*
 * Shard 0 absorbs each counter of the part: the copy's total minus the other
 * shards, with the class the copy holds (C1): statsd's names take at most
 * statsd's share of shard 0 (the rest refused and counted), so a restored
 * store is not filled with statsd names and reliable producers keep theirs.
 */
static void restore_counters(struct tally_cluster *cluster, struct restore_state *state,
  const struct tally_replication_message *part)
{
  struct tally_store *store = &cluster->appliance->store;
  const struct tally_config *config = &cluster->appliance->config;
  uint32_t statsd_counters_max = (uint32_t)((uint64_t)store->geometry.counters_max *
    config->statsd_counters_percent / 100u);
  for (uint32_t i = 0; i < part->count; i++) {
    const struct tally_replication_entry *entry = &part->entries[i];
    uint32_t hash = tally_store_name_hash(store, entry->name, entry->name_len);
    __int128 others = 0;
    for (uint32_t s = 1; s < store->geometry.shard_count; s++) {
      int64_t slot = tally_shard_find(&store->shards[s], entry->name, entry->name_len, hash);
      if (slot >= 0) others += tally_shard_slot_value(&store->shards[s], (uint32_t)slot);
    }
    __int128 value = (__int128)entry->value - others;
    if (value > INT64_MAX || value < INT64_MIN) continue;
    uint8_t owner_class = entry->owner_class != 0 ? TALLY_CLASS_RELIABLE : TALLY_CLASS_STATSD;
    enum tally_reason reason = tally_shard_set_class(&store->shards[0], entry->name,
      entry->name_len, hash, (int64_t)value, owner_class, statsd_counters_max);
    if (reason == TALLY_REASON_STATSD_SHARE_FULL) state->statsd_refused++;
    if (reason == TALLY_REASON_COUNTERS_FULL) state->counters_refused++;
  }
}

static void restore_part(struct tally_cluster *cluster, struct restore_state *state,
  const struct tally_replication_message *part, uint32_t peer_index)
{
  assert(peer_index < TALLY_REPLICA_REGIONS_MAX);
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
  restore_counters(cluster, state, part);
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
  for (uint32_t n = 0; n < TALLY_CLUSTER_RESTORE_RECEIVE_BURST; n++) {
    struct sockaddr_in source;
    ssize_t size = tally_cluster_io_receive(&cluster->io, buffer, sizeof buffer, &source);
    if (size < 0) return;
    struct tally_replication_message message;
    if (tally_replication_decode(buffer, (size_t)size, cluster->config->key, &message) !=
        TALLY_REPLICATION_OK) {
      continue; /* heartbeats and rounds wait for the thread: peers resend */
    }
    struct tally_cluster_peer *peer = tally_cluster_peer_by_id(cluster, message.sender);
    if (peer == NULL) continue;
    if (!tally_cluster_source_ok(cluster, &peer->address, &source, false)) continue;
    if (!tally_cluster_records_ok(cluster, &message)) continue; /* never reaches the store */
    if (!tally_cluster_session_accept(cluster, peer, &message)) continue; /* replays */
    if (message.type == TALLY_REPLICATION_RESTORE_REQUEST && message.origin == message.sender) {
      tally_cluster_stream_in_restore_request(cluster, peer, &message); /* restoring too */
    } else if (message.type == TALLY_REPLICATION_RESTORE &&
               message.origin == cluster->config->node_id) {
      restore_part(cluster, state, &message, (uint32_t)(peer - cluster->peers));
    }
  }
}

/* Asks, and takes parts, until the chosen copy is complete or the wait ends. */
static void restore_wait(struct tally_cluster *cluster, struct restore_state *state,
  uint32_t required)
{
  uint64_t start = tally_cluster_now_ms(cluster);
  uint64_t next_request = 0;
  while (!restore_complete(state) &&
         tally_cluster_now_ms(cluster) - start < TALLY_CLUSTER_RESTORE_WAIT_MS_MAX) {
    if (state->chosen < 0 && state->answers >= required) restore_choose(cluster, state);
    if (tally_cluster_now_ms(cluster) >= next_request) {
      restore_request(cluster, state);
      next_request = tally_cluster_now_ms(cluster) + TALLY_CLUSTER_RESTORE_RETRY_MS;
    }
    if (tally_cluster_io_wait_readable(&cluster->io, TALLY_CLUSTER_RESTORE_POLL_NS)) {
      restore_receive(cluster, state);
    }
  }
}

int tally_cluster_restore(struct tally_cluster *cluster, char *error, size_t error_size)
{
  const struct tally_cluster_config *config = cluster->config;
  assert(!cluster->running);
  uint32_t required = config->node_count - config->write_quorum + 1u;
  if (required > cluster->peer_count) required = cluster->peer_count;
  struct restore_state state = { .chosen = -1, .last_part = -1,
    .parts_max = cluster->capacity / TALLY_REPLICATION_ENTRIES_MIN + /* parts go by size */
      tally_store_replica_producers(&cluster->appliance->store.geometry) /
      TALLY_REPLICATION_PRODUCERS_MAX + 4u };
  state.parts_seen = calloc(state.parts_max, 1);
  if (state.parts_seen == NULL) return -1;
  fprintf(stderr, "tallyd: cluster: new or damaged store: asking %u peer(s) for this node's "
    "contribution\n", required);
  restore_wait(cluster, &state, required);
  bool done = restore_complete(&state);
  free(state.parts_seen);
  if (!done) {
    snprintf(error, error_size, "cluster: restore: %u of %u peers answered within %u s",
      state.answers, required, TALLY_CLUSTER_RESTORE_WAIT_MS_MAX / 1000u);
    return -1;
  }
  uint32_t claims = tally_cluster_dedup_restore_claims(cluster);
  fprintf(stderr, "tallyd: cluster: restored; %u keeper claim(s) for the batches the restored "
    "records name (a peer that also applied one undoes it); %u statsd counter(s) beyond "
    "statsd's share and %u beyond counters_max not restored\n", claims, state.statsd_refused,
    state.counters_refused);
  tally_store_persist(&cluster->appliance->store);
  return 0;
}
