/*
 * peer.c — the one owner of a peer slot's life (struct tally_cluster_peer,
 * cluster.h): its lists allocated once and freed, a fresh state when a node
 * becomes a member, retirement, the resync when a peer lost or moved what it
 * held of this node, the probe after a peer restarted, the confirmation of a
 * whole list, and the one helper that checks every field's invariant
 * together. The other files call these instead of writing their own resets.
 * Runs on the cluster thread (on the start-up thread before it starts);
 * activate and retire run under `lock` (cluster_members.c takes it), and
 * the readers (iteration, lag) also run on the control and HTTP threads
 * under `lock`. A list's priority parts come before its bulk part (enum
 * tally_list_part); confirming a list means its priority parts are held.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"

/* ---- Finding slots ----------------------------------------------------------- */

struct tally_cluster_peer *tally_cluster_peer_by_id(struct tally_cluster *cluster, uint16_t id)
{
  assert(cluster->peer_count <= TALLY_REPLICA_REGIONS_MAX);
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    struct tally_cluster_peer *peer = &cluster->peers[i];
    if (tally_cluster_peer_active(peer) && peer->id == id) return peer;
  }
  return NULL;
}

struct tally_cluster_peer *tally_cluster_next_active(struct tally_cluster *cluster,
  struct tally_cluster_peer *after)
{
  uint32_t start = after == NULL ? 0 : (uint32_t)(after - cluster->peers) + 1u;
  assert(start <= TALLY_REPLICA_REGIONS_MAX);
  for (uint32_t i = start; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    if (tally_cluster_peer_active(&cluster->peers[i])) return &cluster->peers[i];
  }
  return NULL;
}

/* ---- The list being sent -------------------------------------------------------- */

uint32_t tally_cluster_peer_part_left(const struct tally_cluster_peer *peer,
  enum tally_list_part part)
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
  case TALLY_LIST_BULK:
    assert(peer->bulk_pending_next <= peer->bulk_pending_count);
    return peer->bulk_pending_count - peer->bulk_pending_next;
  }
  return 0;
}

uint32_t tally_cluster_peer_part_next(const struct tally_cluster_peer *peer, uint32_t from)
{
  uint32_t part = from;
  while (part < TALLY_LIST_PARTS &&
         tally_cluster_peer_part_left(peer, (enum tally_list_part)part) == 0) {
    part++;
  }
  assert(part <= TALLY_LIST_PARTS);
  return part;
}

bool tally_cluster_peer_list_done(const struct tally_cluster_peer *peer)
{
  return tally_cluster_peer_part_next(peer, 0) == TALLY_LIST_PARTS;
}

uint32_t tally_cluster_peer_lag(const struct tally_cluster_peer *peer)
{
  if (!peer->pending_valid) return 0;
  return tally_cluster_peer_part_left(peer, TALLY_LIST_COUNTERS) +
    tally_cluster_peer_part_left(peer, TALLY_LIST_PRODUCERS) +
    tally_cluster_peer_part_left(peer, TALLY_LIST_CLAIMS) +
    tally_cluster_peer_part_left(peer, TALLY_LIST_BULK);
}

bool tally_cluster_peer_idle(const struct tally_cluster_peer *peer)
{
  return peer->synced && !peer->pending_valid && peer->sent_seq == 0;
}

/* ---- Invariants ------------------------------------------------------------------ */

static void assert_list(const struct tally_cluster *cluster, const struct tally_cluster_peer *peer)
{
  assert(peer->pending_next <= peer->pending_count);
  assert(peer->pending_count <= cluster->capacity);
  assert(peer->bulk_pending_next <= peer->bulk_pending_count);
  assert(peer->pending_count + peer->bulk_pending_count <= cluster->capacity);
  assert(peer->list_scan_number <= cluster->scans);
  /* Confirmed only with nothing of priority left, and with no round waiting for a LAST. */
  assert(!peer->pending_valid || !peer->list_confirmed ||
    tally_cluster_peer_part_next(peer, 0) >= TALLY_LIST_BULK);
  assert(peer->undone_pending_next <= peer->undone_pending_count);
  assert(peer->undone_pending_count <= cluster->producer_positions);
  assert(peer->producers_pending_next <= peer->producers_pending_count);
  assert(peer->producers_pending_count <= cluster->producer_positions);
  assert(peer->claims_pending_next <= peer->claims_pending_count);
  assert(peer->claims_pending_count <= TALLY_CLUSTER_CLAIMS_PER_LIST);
  assert(peer->producers_synced <= peer->producers_list_scan);
  for (uint32_t r = 0; r < TALLY_CLUSTER_CLAIM_RINGS_MAX; r++) {
    assert(peer->claims_sent[r] <= peer->claims_planned[r]);
    assert(peer->claims_held[r] <= peer->claims_capture[r]);
  }
  for (uint32_t l = 0; l < TALLY_LCORES_MAX; l++) assert(peer->confirmed[l] <= peer->capture[l]);
}

static void assert_stream_out(const struct tally_cluster_peer *peer)
{
  assert(!peer->synced || peer->was_synced);
  assert(peer->message_part < TALLY_LIST_PARTS);
  assert(peer->message_size <= TALLY_REPLICATION_SIZE_MAX);
  if (peer->sent_seq == 0) return;
  assert(peer->sent_seq == peer->acked_seq + 1u);
  assert(peer->synced);
  assert(peer->pending_valid);
  assert(peer->message_size > 0);
  assert(peer->message_count >= 1);
  assert(peer->message_count <= tally_cluster_peer_part_left(peer,
    (enum tally_list_part)peer->message_part));
  assert(!peer->message_last || peer->message_part == TALLY_LIST_BULK ||
    tally_cluster_peer_part_next(peer, peer->message_part + 1u) >= TALLY_LIST_BULK);
}

void tally_cluster_peer_assert_invariants(const struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer)
{
  assert(peer >= cluster->peers && peer < cluster->peers + TALLY_REPLICA_REGIONS_MAX);
  assert(peer->membership <= TALLY_PEER_RETIRED);
  if (peer->membership == TALLY_PEER_FREE) return;
  assert(peer->replica == (uint32_t)(peer - cluster->peers));
  assert(peer->id != 0);
  if (peer->membership == TALLY_PEER_RETIRED) { /* nothing to or from it */
    assert(peer->sent_seq == 0);
    assert(!peer->pending_valid);
    assert(!peer->synced);
    return;
  }
  assert(peer->pending != NULL && peer->pending_value != NULL);
  assert(peer->bulk_pending != NULL && peer->bulk_pending_value != NULL);
  assert(peer->acked_value != NULL && peer->acked_known != NULL);
  assert(peer->undone_pending != NULL && peer->producers_pending != NULL);
  assert(peer->claims_pending != NULL);
  assert_list(cluster, peer);
  assert_stream_out(peer);
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer->replica];
  assert(peer->stage.seq == 0 || peer->stage.seq > tally_shard_held_seq(replica));
}

/* ---- Allocation (start-up, and the control thread before a reload) --------------- */

void tally_cluster_peer_free(struct tally_cluster_peer *peer)
{
  free(peer->pending);
  free(peer->pending_value);
  free(peer->bulk_pending);
  free(peer->bulk_pending_value);
  free(peer->acked_value);
  free(peer->acked_known);
  free(peer->undone_pending);
  free(peer->producers_pending);
  free(peer->claims_pending);
  tally_replica_stage_close(&peer->stage);
  peer->pending = NULL;
  peer->pending_value = NULL;
  peer->bulk_pending = NULL;
  peer->bulk_pending_value = NULL;
  peer->acked_value = NULL;
  peer->acked_known = NULL;
  peer->undone_pending = NULL;
  peer->producers_pending = NULL;
  peer->claims_pending = NULL;
  assert(peer->pending == NULL && peer->claims_pending == NULL);
}

int tally_cluster_peer_allocate(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  assert(cluster->capacity >= TALLY_COUNTERS_MIN);
  assert(cluster->producer_positions >= TALLY_PRODUCERS_MIN);
  if (peer->pending != NULL) return 0;
  peer->pending = calloc(cluster->capacity, sizeof(uint32_t));
  peer->pending_value = calloc(cluster->capacity, sizeof(int64_t));
  peer->bulk_pending = calloc(cluster->capacity, sizeof(uint32_t));
  peer->bulk_pending_value = calloc(cluster->capacity, sizeof(int64_t));
  peer->acked_value = calloc(cluster->capacity, sizeof(int64_t));
  peer->acked_known = calloc(cluster->capacity, 1);
  peer->undone_pending = calloc(tally_cluster_compensation_shard(cluster)->producer_slots_count,
    sizeof peer->undone_pending[0]);
  peer->producers_pending = calloc(cluster->producer_positions, sizeof peer->producers_pending[0]);
  peer->claims_pending = calloc(TALLY_CLUSTER_CLAIMS_PER_LIST, sizeof peer->claims_pending[0]);
  /* (bound before this: its table is mapped; every replica table has one geometry) */
  const struct tally_shard *replica = &cluster->appliance->store.replicas[peer - cluster->peers];
  int staged = tally_replica_stage_open(&peer->stage, replica->slots_count,
    replica->producer_slots_count, 2u * TALLY_CLUSTER_CLAIMS_PER_LIST);
  if (staged == 0 &&
      peer->pending != NULL && peer->pending_value != NULL && peer->acked_value != NULL &&
      peer->bulk_pending != NULL && peer->bulk_pending_value != NULL &&
      peer->acked_known != NULL &&
      peer->undone_pending != NULL && peer->producers_pending != NULL &&
      peer->claims_pending != NULL) {
    return 0;
  }
  tally_cluster_peer_free(peer);
  return -1;
}

/* ---- Transitions ------------------------------------------------------------------- */

void tally_cluster_peer_activate(struct tally_cluster *cluster, uint32_t r, uint16_t id,
  const struct sockaddr_in *address, const struct tally_phi_params *params)
{
  struct tally_cluster_peer *peer = &cluster->peers[r];
  assert(peer->membership != TALLY_PEER_ACTIVE && peer->pending != NULL);
  assert(cluster->appliance->store.replica_origin[r] == id);
  struct tally_cluster_peer kept = *peer; /* the allocated lists stay */
  memset(peer, 0, sizeof *peer);
  peer->pending = kept.pending;
  peer->pending_value = kept.pending_value;
  peer->bulk_pending = kept.bulk_pending;
  peer->bulk_pending_value = kept.bulk_pending_value;
  peer->acked_value = kept.acked_value;
  peer->acked_known = kept.acked_known;
  peer->undone_pending = kept.undone_pending;
  peer->producers_pending = kept.producers_pending;
  peer->claims_pending = kept.claims_pending;
  peer->stage = kept.stage;
  tally_replica_stage_clear(&peer->stage);
  peer->id = id;
  peer->replica = r;
  peer->address = *address;
  bool ok = tally_phi_detector_init(&peer->detector, params);
  assert(ok);
  (void)ok;
  tally_breaker_init(&peer->breaker, TALLY_REPLICATION_BREAKER_FAILURES,
    TALLY_REPLICATION_BREAKER_COOLDOWN_MS);
  tally_cluster_dedup_claims_reset(cluster, peer); /* every claim the rings still hold */
  peer->membership = TALLY_PEER_ACTIVE;
  cluster->peer_count++;
  tally_cluster_peer_assert_invariants(cluster, peer);
}

void tally_cluster_peer_retune(struct tally_cluster_peer *peer,
  const struct sockaddr_in *address, const struct tally_phi_params *params)
{
  assert(tally_cluster_peer_active(peer));
  peer->address = *address; /* may have moved */
  bool ok = tally_phi_detector_retune(&peer->detector, params);
  assert(ok);
  (void)ok;
}

void tally_cluster_peer_retire(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  assert(tally_cluster_peer_active(peer));
  assert(cluster->peer_count >= 1);
  peer->membership = TALLY_PEER_RETIRED;
  peer->pending_valid = false;
  peer->sent_seq = 0;
  peer->synced = false;
  cluster->peer_count--;
  tally_cluster_peer_assert_invariants(cluster, peer);
}

void tally_cluster_peer_retired_slot(struct tally_cluster *cluster, uint32_t r, uint16_t id)
{
  struct tally_cluster_peer *peer = &cluster->peers[r];
  assert(peer->membership == TALLY_PEER_FREE);
  peer->membership = TALLY_PEER_RETIRED;
  peer->id = id;
  peer->replica = r;
  tally_cluster_peer_assert_invariants(cluster, peer);
}

void tally_cluster_peer_reset(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  assert(peer->acked_known != NULL);
  memset(peer->acked_known, 0, cluster->capacity);
  peer->pending_valid = false;
  peer->pending_count = 0;
  peer->pending_next = 0;
  peer->bulk_pending_count = 0;
  peer->bulk_pending_next = 0;
  peer->list_scan_number = 0; /* planned again from the last scan */
  peer->list_confirmed = false;
  peer->undone_pending_count = 0;
  peer->undone_pending_next = 0;
  peer->producers_pending_count = 0;
  peer->producers_pending_next = 0;
  peer->producers_synced = 0; /* it holds none of this node's records: send them all */
  peer->claims_pending_count = 0;
  peer->claims_pending_next = 0;
  tally_cluster_dedup_claims_reset(cluster, peer);
  peer->sent_seq = 0;
  peer->retries = 0;
  peer->resyncs++;
  assert(!peer->pending_valid);
  tally_cluster_peer_assert_invariants(cluster, peer);
}

void tally_cluster_peer_restarted(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  assert(peer->synced);
  peer->synced = false;
  peer->waiting_since_ms = 0; /* the probe that follows starts the wait anew */
  peer->sent_seq = 0; /* abandoned: its answer would be about the old incarnation */
  peer->retries = 0;
  peer->resend_ms = 0;
  tally_breaker_release_probe(&peer->breaker); /* else half-open waits forever */
  tally_cluster_peer_assert_invariants(cluster, peer);
}

void tally_cluster_peer_confirm(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  assert(!peer->list_confirmed);
  assert(tally_cluster_peer_part_next(peer, 0) >= TALLY_LIST_BULK);
  assert(peer->unsealed_rounds == 0);
  memcpy(peer->confirmed, peer->capture, sizeof peer->confirmed);
  memcpy(peer->claims_held, peer->claims_capture, sizeof peer->claims_held);
  memcpy(peer->claims_sent, peer->claims_planned, sizeof peer->claims_sent);
  peer->producers_synced = peer->producers_list_scan;
  peer->list_confirmed = true;
  tally_cluster_peer_assert_invariants(cluster, peer);
}
