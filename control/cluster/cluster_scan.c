/*
 * cluster_scan.c — this node's contribution as the replication thread sees
 * it: a snapshot of every counter's node total (sum over the shards), keyed
 * by name in an rte_hash, and for each peer the list of counters whose
 * value the peer does not hold yet. A scan notes each lcore's applied_seq
 * *before* it reads any value, so once a peer has acked the list's priority
 * part (enum tally_list_part) it holds every batch counted up to that point.
 *
 * Dirty slots (issue 12): the first scan reads every slot of every shard;
 * later ones read only the slots the writers marked dirty since (a bit per
 * slot, shard_internal.h), taking each word's bits (an acquiring exchange
 * that clears them) after applied_seq is noted and before the values are
 * read, so a batch counted in applied_seq has its marks taken and its values
 * seen. A value stored while its slot's bit was still set (no new mark) and
 * not yet visible to this scan's read is caught by the next: each scan reads
 * the slots the previous one took once more. A failed scan (fail closed,
 * below) took bits it did not use: the next one reads everything again.
 *
 * Around the priority counters go the producer records that changed since
 * the peer last held them all: the records of batches this node undid before
 * them, the records of batches it applied after them, then the claims
 * (cluster_dedup.c); the statsd-only counters follow as the bulk part, which
 * the next scan's list replaces if it has not ended by then (issue 12, item
 * 1). Runs on the cluster thread (the snapshot is opened and closed on the
 * start-up thread).
 *
 * Nothing drops out silently (issue 14 H1, C1): the index hashes under a
 * random seed with extendable buckets, so names chosen to collide cannot
 * overflow a bucket; if an insert still fails, the scan fails closed —
 * counted (snapshot_insert_failed), no peer gets a list from it (none could
 * confirm a snapshot that lacks a counter), and the next tick scans again.
 * A node total beyond int64 is replicated saturated (totals_saturated).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <sodium.h>

#include "cluster_internal.h"
#include "tally/name.h"

#define KEY_SIZE (TALLY_NAME_LEN_MAX + 1u)

int tally_cluster_snapshot_open(struct tally_cluster *cluster, char *error, size_t error_size)
{
  struct tally_appliance *appliance = cluster->appliance;
  cluster->capacity = tally_store_replica_counters(&appliance->store.geometry);
  assert(cluster->capacity >= TALLY_COUNTERS_MIN);
  /* rte_hash names are process-wide: one per instance (tests run several). */
  static uint32_t instances;
  char name[RTE_HASH_NAMESIZE];
  snprintf(name, sizeof name, "tally_snapshot_%u",
    __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED));
  struct rte_hash_parameters parameters = {
    .name = name,
    .entries = cluster->capacity,
    .key_len = KEY_SIZE,
    .hash_func = rte_hash_crc,
    .hash_func_init_val = randombytes_random(), /* not chosen by whoever picks names */
    .socket_id = (int)rte_socket_id(),
    /* Extendable buckets: every name fits, whatever they hash to. */
    .extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
  };
  cluster->index = rte_hash_create(&parameters);
  cluster->names = calloc(cluster->capacity, sizeof cluster->names[0]);
  cluster->name_lens = calloc(cluster->capacity, 1);
  cluster->owner_classes = calloc(cluster->capacity, 1);
  cluster->priority = calloc(cluster->capacity, 1);
  cluster->current = calloc(cluster->capacity, sizeof(int64_t));
  cluster->positions = calloc(cluster->capacity, sizeof(uint32_t));
  const struct tally_store *store = &appliance->store;
  for (uint32_t s = 0; s < store->geometry.shard_count; s++) {
    if (store->shards[s].dirty == NULL) continue; /* not tracked: read whole every scan */
    cluster->recheck[s] = calloc(tally_shard_dirty_words(&store->shards[s]), sizeof(uint64_t));
    if (cluster->recheck[s] == NULL) {
      snprintf(error, error_size, "cluster: cannot allocate the replication snapshot");
      return -1;
    }
  }
  cluster->full_scan_needed = true;
  bool ok = cluster->index != NULL && cluster->names != NULL && cluster->name_lens != NULL &&
    cluster->owner_classes != NULL && cluster->priority != NULL &&
    cluster->current != NULL && cluster->positions != NULL; /* (each peer's lists: cluster_members.c) */
  if (!ok) snprintf(error, error_size, "cluster: cannot allocate the replication snapshot");
  return ok ? 0 : -1;
}

void tally_cluster_snapshot_close(struct tally_cluster *cluster)
{
  rte_hash_free(cluster->index); /* NULL is fine */
  free(cluster->names);
  free(cluster->name_lens);
  free(cluster->owner_classes);
  free(cluster->priority);
  free(cluster->current);
  free(cluster->positions);
  for (uint32_t s = 0; s < TALLY_SHARDS_MAX; s++) {
    free(cluster->recheck[s]);
    cluster->recheck[s] = NULL;
  }
  cluster->index = NULL;
  cluster->names = NULL;
  cluster->name_lens = NULL;
  cluster->owner_classes = NULL;
  cluster->priority = NULL;
  cluster->current = NULL;
  cluster->positions = NULL;
  cluster->positions_count = 0;
}

/* Whether a shard before `before` holds the name (its total was taken there). */
static bool seen_earlier(const struct tally_store *store, uint32_t before, const char *name,
  uint32_t name_len, uint32_t hash)
{
  assert(before <= store->geometry.shard_count);
  for (uint32_t i = 0; i < before; i++) {
    if (tally_shard_find(&store->shards[i], name, name_len, hash) >= 0) return true;
  }
  return false;
}

/*
 * Sum over this node's shards, saturated to int64 (each shard refuses an
 * increment past int64, but the sum of several can leave it): false if it
 * was saturated. Replicated saturated rather than not at all.
 */
static bool own_total(const struct tally_store *store, const char *name, uint32_t name_len,
  uint32_t hash, int64_t *total)
{
  __int128 sum = 0;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], name, name_len, hash);
    if (slot >= 0) sum += tally_shard_slot_value(&store->shards[i], (uint32_t)slot);
  }
  *total = sum > INT64_MAX ? INT64_MAX : sum < INT64_MIN ? INT64_MIN : (int64_t)sum;
  assert(*total == sum || *total == INT64_MAX || *total == INT64_MIN);
  return sum == *total;
}

/*
 * The counter's class across this node's shards (C1): a reliable producer's
 * if any shard's slot is, so a restore from a peer gives it back as such.
 * *priority: whether a reliable ack may wait for its value (issue 12): a
 * reliable slot in any shard (a reliable batch takes its slot over before it
 * writes, and before its applied_seq is published, so a scan that noted
 * applied_seq first sees the class of every batch up to it), or a slot in
 * the compensation shard (an undo here; last of the shards).
 */
static uint8_t own_class(const struct tally_store *store, const char *name, uint32_t name_len,
  uint32_t hash, bool *priority)
{
  uint32_t last = store->geometry.shard_count - 1u; /* the compensation shard */
  *priority = false;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], name, name_len, hash);
    if (slot < 0) continue;
    if (tally_shard_slot_class(&store->shards[i], (uint32_t)slot) != TALLY_CLASS_STATSD) {
      *priority = true;
      return TALLY_CLASS_RELIABLE;
    }
    if (i == last) *priority = true;
  }
  return TALLY_CLASS_STATSD;
}

/* Notes the counter's total and class; false (counted) if the index refused it. */
static bool record(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  int64_t total, uint8_t owner_class, bool priority)
{
  uint8_t key[KEY_SIZE];
  memset(key, 0, sizeof key);
  key[0] = (uint8_t)name_len;
  memcpy(key + 1, name, name_len);
  int32_t position = rte_hash_add_key(cluster->index, key);
  if (position < 0) { /* never silently: the scan fails and is retried */
    cluster->snapshot_insert_failed++;
    return false;
  }
  assert((uint32_t)position < cluster->capacity);
  if (cluster->name_lens[position] == 0) {
    memcpy(cluster->names[position], name, name_len);
    cluster->name_lens[position] = (uint8_t)name_len;
    assert(cluster->positions_count < cluster->capacity);
    cluster->positions[cluster->positions_count++] = (uint32_t)position;
  }
  cluster->current[position] = total;
  cluster->owner_classes[position] = owner_class;
  cluster->priority[position] = priority ? 1u : 0u;
  return true;
}

/*
 * Notes the counter of shard s's slot: its node total and class; false if
 * the index refused it. With first_only, skipped if an earlier shard has the
 * name (a full scan notes each name once).
 */
static bool scan_slot(struct tally_cluster *cluster, uint32_t s, uint32_t slot, bool first_only)
{
  const struct tally_store *store = &cluster->appliance->store;
  const struct tally_shard *shard = &store->shards[s];
  cluster->scan_slots_read++;
  if (!tally_shard_slot_readable(shard, slot)) return true;
  const struct tally_slot *entry = &shard->slots[slot];
  uint32_t name_len = entry->name_len;
  assert(name_len >= 1 && name_len <= TALLY_NAME_LEN_MAX);
  if (first_only && seen_earlier(store, s, entry->name, name_len, entry->hash)) return true;
  int64_t total = 0;
  if (!own_total(store, entry->name, name_len, entry->hash, &total)) cluster->totals_saturated++;
  bool priority = false;
  uint8_t owner_class = own_class(store, entry->name, name_len, entry->hash, &priority);
  return record(cluster, entry->name, name_len, total, owner_class, priority);
}

/*
 * Takes every counter's node total (a full scan) or those of the slots
 * marked dirty and of those the last scan took; false if one could not be
 * noted (nothing to plan from).
 */
static bool scan_values(struct tally_cluster *cluster)
{
  bool complete = true;
  struct tally_store *store = &cluster->appliance->store;
  bool full = cluster->full_scan_needed;
  for (uint32_t s = 0; s < store->geometry.shard_count; s++) {
    full = full || cluster->recheck[s] == NULL;
  }
  bool pending = false;
  for (uint32_t s = 0; s < store->geometry.shard_count; s++) {
    struct tally_shard *shard = &store->shards[s];
    uint64_t *recheck = cluster->recheck[s];
    uint32_t words = recheck == NULL ? 0 : tally_shard_dirty_words(shard);
    for (uint32_t w = 0; w < words; w++) { /* taken before any value is read */
      uint64_t taken = tally_shard_dirty_take(shard, w);
      uint64_t bits = taken | recheck[w];
      recheck[w] = taken;
      pending = pending || taken != 0;
      while (!full && bits != 0) {
        uint32_t bit = (uint32_t)__builtin_ctzll(bits);
        bits &= bits - 1u;
        complete = scan_slot(cluster, s, w * 64u + bit, false) && complete;
      }
    }
  }
  if (full) {
    cluster->full_scans++;
    for (uint32_t s = 0; s < store->geometry.shard_count; s++) {
      for (uint32_t slot = 0; slot < store->shards[s].slots_count; slot++) {
        complete = scan_slot(cluster, s, slot, true) && complete;
      }
    }
  }
  cluster->recheck_pending = pending;
  cluster->full_scan_needed = !complete; /* the bits it took are spent: read all again */
  return complete;
}

/*
 * The counters the peer does not hold as they are now: the priority ones
 * into pending[], the statsd-only ones into bulk_pending[], the latter from
 * the peer's bulk cursor on (round robin: a bulk part that newer scans keep
 * replacing still reaches every counter in turn).
 */
static void plan_counters(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  uint32_t count = 0;
  uint32_t bulk = 0;
  uint32_t total = cluster->positions_count;
  uint32_t start = peer->bulk_cursor < total ? peer->bulk_cursor : 0;
  for (uint32_t n = 0; n < total; n++) {
    uint32_t position = cluster->positions[(start + n) % total];
    int64_t value = cluster->current[position];
    if (peer->acked_known[position] && peer->acked_value[position] == value) continue;
    if (cluster->priority[position]) {
      peer->pending_value[count] = value;
      peer->pending[count++] = position;
    } else { /* (by positions[] index: the cursor is one) */
      peer->bulk_pending_value[bulk] = value;
      peer->bulk_pending[bulk++] = (start + n) % total;
    }
  }
  assert(count + bulk <= cluster->capacity);
  peer->pending_count = count;
  peer->pending_next = 0;
  peer->bulk_pending_count = bulk;
  peer->bulk_pending_next = 0;
}

/* The producer records it does not hold (those of the compensation shard, last, go first). */
static uint32_t plan_records(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  uint32_t producers = 0;
  uint32_t undone = 0;
  uint32_t first_undone = cluster->producer_positions -
    tally_cluster_compensation_shard(cluster)->producer_slots_count;
  for (uint32_t i = 0; i < cluster->producer_positions; i++) {
    if (cluster->producer_id[i] == 0 || cluster->producer_changed[i] <= peer->producers_synced) {
      continue;
    }
    struct tally_replication_producer *record = i >= first_undone ?
      &peer->undone_pending[undone++] : &peer->producers_pending[producers++];
    tally_cluster_dedup_to_wire(cluster->producer_id[i], &cluster->producer_dedup[i], record);
  }
  assert(producers <= first_undone);
  assert(undone <= cluster->producer_positions - first_undone);
  peer->undone_pending_count = undone;
  peer->undone_pending_next = 0;
  peer->producers_pending_count = producers;
  peer->producers_pending_next = 0;
  peer->producers_list_scan = cluster->scans;
  return undone + producers;
}

/*
 * Gives the peer the list of the last scan, frozen: what it does not hold as
 * it was at that scan. An idle peer's, or one whose list has only bulk left
 * (nothing in flight): the new list replaces that bulk (the counters it had
 * not sent yet are in the new one, at their newer values), so a newer scan's
 * priority part waits for one bulk round at most.
 */
static void plan_peer(struct tally_cluster *cluster, struct tally_cluster_peer *peer)
{
  plan_counters(cluster, peer);
  uint32_t records = plan_records(cluster, peer);
  memcpy(peer->capture, cluster->scan_capture, sizeof peer->capture);
  /* The claims noted by the same scan: confirming this list's priority part
   * (which holds every value a claimed batch wrote) makes them claims_held. */
  memcpy(peer->claims_capture, cluster->claims_capture, sizeof peer->claims_capture);
  peer->list_scan = cluster->scan_stamp;
  peer->list_scan_number = cluster->scans;
  assert(peer->list_scan > 0);
  uint32_t claims = tally_cluster_dedup_plan_claims(cluster, peer); /* then the claims */
  uint32_t priority = peer->pending_count + records + claims;
  if (priority == 0 && peer->unsealed_rounds > 0 && cluster->positions_count > 0) {
    /*
     * Rounds it acked wait for a LAST to reach its table (a replaced bulk
     * part's): one value again as a priority part of its own, the seal, so
     * that the capture is confirmed now, not when some bulk part ends.
     */
    peer->pending[0] = cluster->positions[0];
    peer->pending_value[0] = cluster->current[cluster->positions[0]];
    peer->pending_count = 1;
    priority = 1;
  }
  peer->pending_valid = priority + peer->bulk_pending_count > 0;
  peer->list_confirmed = false;
  /* Nothing of priority to send, and its table has everything acked: it holds the capture. */
  if (priority == 0 && peer->unsealed_rounds == 0) tally_cluster_peer_confirm(cluster, peer);
  tally_cluster_peer_assert_invariants(cluster, peer);
}

/*
 * An idle peer that has the last scan's list still takes it again while that
 * scan's claims wait for it that claims_quorum now allows (W - 1 peers
 * confirmed lists holding their values since it was planned): no newer scan
 * may come (nothing written), and the claims must not wait for one.
 */
static bool claims_due(struct tally_cluster *cluster, const struct tally_cluster_peer *peer)
{
  if (peer->pending_valid) return false;
  for (uint32_t r = 0; r < tally_cluster_claim_rings(cluster); r++) {
    uint64_t until = cluster->claims_quorum[r] < cluster->claims_capture[r] ?
      cluster->claims_quorum[r] : cluster->claims_capture[r];
    if (peer->claims_sent[r] < until) return true;
  }
  return false;
}

/*
 * Whether the peer takes a list of the last scan now (see plan_peer): not
 * planned from it yet (a resync plans again: peer.c zeroes list_scan_number),
 * and idle, or only bulk left and nothing in flight.
 */
static bool plannable(struct tally_cluster *cluster, const struct tally_cluster_peer *peer)
{
  if (!tally_cluster_peer_active(peer) || !peer->synced || peer->sent_seq != 0) return false;
  if (peer->list_scan_number >= cluster->scans) return claims_due(cluster, peer);
  return !peer->pending_valid ||
    tally_cluster_peer_part_next(peer, 0) == TALLY_LIST_BULK;
}

void tally_cluster_plan(struct tally_cluster *cluster)
{
  if (!cluster->snapshot_ok) return; /* fail closed: no list lacks a counter; rescanned */
  for (uint32_t i = 0; i < TALLY_REPLICA_REGIONS_MAX; i++) {
    struct tally_cluster_peer *peer = &cluster->peers[i];
    if (!plannable(cluster, peer)) continue;
    if (peer->pending_valid) { /* the bulk left: from where it stopped, next time */
      uint32_t next = peer->bulk_pending_next;
      peer->bulk_cursor = next < peer->bulk_pending_count ? peer->bulk_pending[next] : 0;
      cluster->bulk_replaced++;
    }
    plan_peer(cluster, peer);
  }
}

void tally_cluster_scan(struct tally_cluster *cluster, bool force)
{
  struct tally_appliance *appliance = cluster->appliance;
  uint64_t capture[TALLY_LCORES_MAX] = { 0 };
  uint64_t writes = 0;
  /* Claims noted before the values: every claimed batch is in the values sent
   * (the compensation shard's keeper claims too: this thread writes them). */
  uint64_t claims[TALLY_CLUSTER_CLAIM_RINGS_MAX] = { 0 };
  for (uint32_t r = 0; r < tally_cluster_claim_rings(cluster); r++) {
    claims[r] = tally_shard_claims_next(&appliance->store.shards[r]);
    writes += claims[r]; /* a keeper claim of this thread's is a change to send too */
  }
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    capture[l] = __atomic_load_n(&appliance->lcores[l].stats.applied_seq, __ATOMIC_ACQUIRE);
    writes += __atomic_load_n(&appliance->lcores[l].stats.statsd_increments, __ATOMIC_RELAXED);
    writes += __atomic_load_n(&appliance->lcores[l].stats.batch_increments, __ATOMIC_RELAXED);
    writes += capture[l];
  }
  uint64_t compensations = cluster->compensations + cluster->compensations_missed;
  writes += compensations;
  bool changed = force || writes != cluster->writes_seen || cluster->scans == 0 ||
    cluster->recheck_pending; /* the last scan's slots are read once more */
  /* Producer records change only with reliable batches and undos. */
  bool batches = cluster->scans == 0 || compensations != cluster->compensations_seen;
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    batches = batches || capture[l] != cluster->dedup_applied_seen[l];
  }
  if (changed) {
    if (batches) { /* records before values */
      tally_cluster_dedup_scan(cluster, cluster->scans + 1u);
      memcpy(cluster->dedup_applied_seen, capture, sizeof cluster->dedup_applied_seen);
      cluster->compensations_seen = compensations;
    }
    cluster->snapshot_ok = scan_values(cluster);
    if (!cluster->snapshot_ok) return; /* fail closed: no list lacks a counter; retried */
    tally_cluster_log_scan_mark(&cluster->log, appliance); /* log mode: what it read */
    cluster->writes_seen = writes;
    cluster->scans++;
    memcpy(cluster->scan_capture, capture, sizeof cluster->scan_capture);
    memcpy(cluster->claims_capture, claims, sizeof cluster->claims_capture); /* (planned from) */
    uint64_t stamp = tally_clock_unix_ns() / 1000u;
    cluster->scan_stamp = stamp > cluster->scan_stamp ? stamp : cluster->scan_stamp + 1u;
  }
}
