/*
 * test_cluster_dedup.c — cross-node dedup on the cluster thread
 * (control/cluster/cluster_dedup.c), driven directly on a real store: one lcore
 * shard, the compensation shard and one replica table (a peer, node 2; this
 * node is 1). What a claim does here:
 *   - a batch applied here from a lower attempt is undone, once, however
 *     often the claim comes;
 *   - a batch applied here from a higher attempt, or not applied here, is
 *     left alone;
 *   - a batch applied here with no journal entry (a restored store) is kept
 *     and the claimant is asked to undo (a keeper claim, sent with the
 *     others), unless this node's undone set says it undid it already;
 *   - a keeper claim undoes from the journal, and never yields back;
 * and how the undone set travels: scanned with TALLY_PRODUCER_UNDONE_BIT,
 * restored into the compensation shard; that after a restore every batch
 * the records name, but not the undone ones, is claimed as keeper; and the
 * overflows: a journal moved on (compensations_missed), a claims ring that
 * lapped a peer (claims_lost); and that claims go out only once W - 1 peers
 * hold the values they name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_hash.h>

#include "cluster.h"
#include "tally/name.h"
#include "shard.h"
#include "store.h"
#include "store_format.h"

#define PRODUCER 7u

static char directory[64];
static char path[128];

struct fixture {
  struct tally_appliance appliance;
  struct tally_cluster cluster;
  struct tally_cluster_config config;
};

static uint32_t compensation_slots(struct fixture *f)
{
  return tally_cluster_compensation_shard(&f->cluster)->producer_slots_count;
}

static int setup(void **state)
{
  snprintf(directory, sizeof(directory), "/tmp/tally_dedup_test.XXXXXX");
  if (mkdtemp(directory) == NULL) return -1;
  snprintf(path, sizeof(path), "%s/store.tally", directory);
  struct fixture *f = calloc(1, sizeof(*f));
  if (f == NULL) return -1;
  /* One lcore shard + the compensation shard; one replica (the peer). */
  const struct tally_store_geometry geometry = {
    .shard_count = 2, .counters_max = 1000, .producers_max = 16, .replica_count = 1};
  char error[256] = "";
  if (tally_store_open(&f->appliance.store, path, &geometry, TALLY_PERSIST_GROUP_COMMIT, error,
        sizeof(error)) != 0) {
    fprintf(stderr, "open: %s\n", error);
    return -1;
  }
  f->appliance.lcore_count = 1;
  f->config = (struct tally_cluster_config){ .enabled = true, .node_id = 1, .node_count = 2,
    .write_quorum = 2 };
  f->cluster.appliance = &f->appliance;
  f->cluster.config = &f->config;
  f->cluster.peer_count = 1;
  f->cluster.peers[0].id = 2;
  f->cluster.peers[0].replica = 0;
  f->cluster.peers[0].membership = TALLY_PEER_ACTIVE;
  if (tally_cluster_dedup_open(&f->cluster, error, sizeof(error)) != 0) return -1;
  /* The peer's lists (tallyd allocates them in cluster_members.c). */
  struct tally_cluster_peer *peer = &f->cluster.peers[0];
  peer->undone_pending = calloc(compensation_slots(f), sizeof(peer->undone_pending[0]));
  peer->producers_pending = calloc(f->cluster.producer_positions,
    sizeof(peer->producers_pending[0]));
  peer->claims_pending = calloc(TALLY_CLUSTER_CLAIMS_PER_LIST, sizeof(peer->claims_pending[0]));
  if (peer->undone_pending == NULL || peer->producers_pending == NULL ||
      peer->claims_pending == NULL) {
    return -1;
  }
  tally_cluster_dedup_claims_reset(&f->cluster, peer);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tally_cluster_dedup_close(&f->cluster); /* the indexes and the record snapshot */
  free(f->cluster.peers[0].undone_pending);
  free(f->cluster.peers[0].producers_pending);
  free(f->cluster.peers[0].claims_pending);
  tally_store_close(&f->appliance.store);
  free(f);
  unlink(path);
  return rmdir(directory);
}

static struct tally_shard *lcore_shard(struct fixture *f)
{
  return &f->appliance.store.shards[0];
}

static struct tally_shard *compensation(struct fixture *f)
{
  return tally_cluster_compensation_shard(&f->cluster);
}

/* This node's contribution to a counter: the lcore shard plus the compensation shard. */
static int64_t node_total(struct fixture *f, const char *name)
{
  uint32_t len = (uint32_t)strlen(name);
  int64_t total = 0;
  for (uint32_t s = 0; s < f->appliance.store.geometry.shard_count; s++) {
    const struct tally_shard *shard = &f->appliance.store.shards[s];
    int64_t slot = tally_shard_find(shard, name, len, tally_shard_name_hash(shard, name, len));
    if (slot >= 0) total += tally_shard_slot_value(shard, (uint32_t)slot);
  }
  return total;
}

/* Applies (PRODUCER, seq) from the given attempt: two counters. */
static void apply(struct fixture *f, uint64_t seq, uint16_t attempt, int64_t delta)
{
  struct tally_wire_batch batch = { .producer = PRODUCER, .seq = seq, .attempt = attempt,
    .count = 2 };
  batch.pairs[0] = (struct tally_wire_pair){ .name = "a", .name_len = 1, .delta = delta };
  batch.pairs[1] = (struct tally_wire_pair){ .name = "b", .name_len = 1, .delta = 2 * delta };
  enum tally_reason reason = TALLY_OK;
  assert_int_equal(tally_shard_apply_batch(lcore_shard(f), &batch, &reason), TALLY_ACK_APPLIED);
  assert_int_equal(reason, TALLY_OK);
}

/* The peer (node 2) claims (PRODUCER, seq) from attempt. */
static void claim(struct fixture *f, uint64_t seq, uint32_t attempt)
{
  struct tally_replication_message message = { .type = TALLY_REPLICATION_ROUND,
    .origin = 2, .sender = 2, .flags = TALLY_REPLICATION_FLAG_CLAIMS, .seq = 1, .count = 1 };
  message.claims[0] = (struct tally_replication_claim){ .producer = PRODUCER, .seq = seq,
    .attempt = attempt };
  tally_cluster_dedup_claims(&f->cluster, &f->cluster.peers[0], message.claims, message.count);
}

static bool undone_here(struct fixture *f, uint64_t seq)
{
  struct tally_dedup undone;
  return tally_shard_producer_read(compensation(f), PRODUCER, &undone) &&
    tally_dedup_applied(&undone, seq);
}

/* ---- Claims against the journal ------------------------------------------- */

static void test_lower_attempt_is_undone_once(void **state)
{
  struct fixture *f = *state;
  apply(f, 10, 0, 5);
  assert_int_equal(node_total(f, "a"), 5);
  claim(f, 10, 1);
  assert_int_equal(node_total(f, "a"), 0);
  assert_int_equal(node_total(f, "b"), 0);
  assert_true(undone_here(f, 10));
  assert_int_equal(f->cluster.compensations, 1);
  /* The claim again (a resend, another claimant, a keeper claim): nothing more. */
  claim(f, 10, 1);
  claim(f, 10, 3);
  claim(f, 10, TALLY_CLAIM_KEEPER);
  assert_int_equal(node_total(f, "a"), 0);
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_int_equal(f->cluster.claims_received, 4);
}

static void test_higher_attempt_or_not_applied_is_kept(void **state)
{
  struct fixture *f = *state;
  apply(f, 20, 2, 5);
  claim(f, 20, 1);           /* the peer applied a lower attempt: it undoes, not us */
  claim(f, 21, 1);           /* never applied here */
  assert_int_equal(node_total(f, "a"), 5);
  assert_false(undone_here(f, 20));
  assert_false(undone_here(f, 21));
  /* Equal attempts: the lower node id keeps it (we are 1, the peer 2). */
  claim(f, 20, 2);
  assert_int_equal(node_total(f, "a"), 5);
  assert_int_equal(f->cluster.compensations, 0);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_int_equal(tally_shard_claims_next(compensation(f)), 0);
}

static void test_keeper_claim_undoes_from_the_journal(void **state)
{
  struct fixture *f = *state;
  apply(f, 30, 4, 6); /* even a high attempt: the keeper outranks every attempt */
  claim(f, 30, TALLY_CLAIM_KEEPER);
  assert_int_equal(node_total(f, "a"), 0);
  assert_int_equal(node_total(f, "b"), 0);
  assert_true(undone_here(f, 30));
  assert_int_equal(f->cluster.keeper_claims_received, 1);
  assert_int_equal(f->cluster.compensations, 1);
}

/* Applies seq from .. to (attempt 0, 1 each) here, and the peer claims them (attempt 1). */
static void apply_range(struct fixture *f, uint64_t from, uint64_t to)
{
  for (uint64_t seq = from; seq <= to; seq++) apply(f, seq, 0, 1);
}

static void claim_range(struct fixture *f, uint64_t from, uint64_t to)
{
  for (uint64_t seq = from; seq <= to; seq++) claim(f, seq, 1);
}

/*
 * Claims of one producer come from several claimants, each stream delayed
 * its own way (a claimant cut off for seconds): here 421..440 arrive after
 * 541..580 were undone, more than a window behind. Each is undone, once
 * (chaos seed 4242: 421..440 stayed counted twice, refused as STALE).
 */
static void test_undos_in_any_order_each_once(void **state)
{
  struct fixture *f = *state;
  apply_range(f, 401, 440);
  apply(f, 470, 0, 5);
  apply_range(f, 541, 580);
  claim_range(f, 401, 420);
  claim_range(f, 541, 580);
  claim_range(f, 421, 440); /* late, from the other claimant */
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(f->cluster.compensations, 80);
  assert_int_equal(node_total(f, "a"), 5);
  assert_int_equal(node_total(f, "b"), 10);
  for (uint64_t seq = 401; seq <= 580; seq++) {
    assert_int_equal(undone_here(f, seq), seq <= 440 || seq >= 541);
  }
  /* Every claim again (a resync resends the rings), in any order: nothing more. */
  claim_range(f, 541, 580);
  claim_range(f, 401, 440);
  assert_int_equal(f->cluster.compensations, 80);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 5);
  /* Between the two: applied here, never undone, claimed now: undone. */
  claim(f, 470, 1);
  assert_int_equal(f->cluster.compensations, 81);
  assert_int_equal(node_total(f, "a"), 0);
}

/*
 * Undos between runs, or below them while none was dropped, were never made:
 * taken (a new run there; the oldest drops when three are kept). Below the
 * oldest kept run once one was dropped it cannot tell: refused.
 */
static void test_undos_between_and_below_runs(void **state)
{
  struct fixture *f = *state;
  for (uint64_t seq = 100; seq <= 700; seq += 200) apply(f, seq, 0, 1); /* four runs */
  claim(f, 300, 1);
  claim(f, 100, 1); /* below the only run */
  claim(f, 700, 1);
  claim(f, 500, 1); /* between 300 and 700: a run there, the one of 100 drops */
  assert_int_equal(f->cluster.compensations, 4);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
  assert_false(undone_here(f, 100));
  assert_int_equal(tally_dedup_decide(&(struct tally_dedup){ 0 }, 100), TALLY_DEDUP_UNSEEN);
  struct tally_dedup record;
  assert_true(tally_shard_producer_read(compensation(f), PRODUCER, &record));
  assert_int_equal(tally_dedup_decide(&record, 100), TALLY_DEDUP_UNKNOWN); /* below, dropped */
  assert_int_equal(tally_dedup_decide(&record, 500), TALLY_DEDUP_SEEN);
  assert_int_equal(tally_dedup_decide(&record, 600), TALLY_DEDUP_UNSEEN); /* between runs */
  assert_int_equal(tally_dedup_decide(&record, 900), TALLY_DEDUP_UNSEEN); /* above them */
  /* Below the oldest kept run: the record cannot tell, the compensation
   * shard's journal can (it undid 100): never undone twice, not missed. */
  claim(f, 100, 1);
  assert_int_equal(f->cluster.compensations, 4);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
}

/*
 * An undo between a run's head and its tail: the record cannot tell whether
 * it was made. While the compensation journal holds every undo this store
 * made (formatted here, never restored, not wrapped) it can, and the undo is
 * taken, once; repeated, the journal answers. Before, it was refused and the
 * batch stayed counted twice (the 2-lcore W = 3 chaos soak, seed 7502: "cannot
 * undo it here (stale)"). Once undone records came without their journal (a
 * restore, a log replay), the journal proves nothing: refused as before.
 */
static void undo_gap_setup(struct fixture *f)
{
  const uint64_t seqs[] = { 100, 160, 200, 220, 280 };
  for (uint32_t i = 0; i < 5; i++) apply(f, seqs[i], 0, 1);
  claim(f, 100, 1);
  claim(f, 160, 1);
  claim(f, 220, 1);
  claim(f, 280, 1); /* the tail has moved past 200; the head ends below it */
  assert_int_equal(f->cluster.compensations, 4);
  struct tally_dedup record;
  assert_true(tally_shard_producer_read(compensation(f), PRODUCER, &record));
  assert_int_equal(tally_dedup_decide(&record, 200), TALLY_DEDUP_UNKNOWN);
}

static void test_undo_the_record_cannot_tell_is_taken_from_a_complete_journal(void **state)
{
  struct fixture *f = *state;
  undo_gap_setup(f);
  assert_true(tally_shard_undo_history_complete(compensation(f)));
  claim(f, 200, 1);
  assert_int_equal(f->cluster.compensations, 5);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
  claim(f, 200, 1); /* repeated: the journal dedups it */
  claim(f, 200, TALLY_CLAIM_KEEPER);
  assert_int_equal(f->cluster.compensations, 5);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
}

static void test_undo_the_record_cannot_tell_is_refused_once_history_is_lost(void **state)
{
  struct fixture *f = *state;
  undo_gap_setup(f);
  tally_shard_undo_history_lost(compensation(f)); /* what a restore or a log replay does */
  assert_false(tally_shard_undo_history_complete(compensation(f)));
  claim(f, 200, 1);
  assert_int_equal(f->cluster.compensations, 4);
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(node_total(f, "a"), 1);
}

/*
 * A keeper claim is taken in any order, like a claim from a higher attempt:
 * a keeper keeps only a batch it provably counts (its undone set or its
 * compensation journal rules out an undo: test_forgotten_undo_is_never_yielded,
 * test_restore_never_keeps_a_forgotten_undo), so undoing here leaves its
 * apply. Before that rule keeper claims were refused more than a window
 * behind the newest undo, and such a batch stayed counted twice (chaos seed
 * 4242, store-loss kinds: 7509-7513 of producer 2).
 */
static void test_keeper_claims_in_any_order(void **state)
{
  struct fixture *f = *state;
  apply(f, 100, 1, 1);
  apply(f, 300, 1, 1);
  claim(f, 300, TALLY_CLAIM_KEEPER);
  claim(f, 100, TALLY_CLAIM_KEEPER); /* far behind the newest undo: taken */
  claim(f, 100, TALLY_CLAIM_KEEPER); /* once */
  assert_int_equal(f->cluster.compensations, 2);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
  assert_true(undone_here(f, 100));
}

/*
 * What the undone set's record can no longer tell (an undo that fell off its
 * run's tail and is not in its head) is never undone twice: the compensation
 * shard's journal says it was undone (before it did, this was refused as
 * STALE and counted as missed).
 */
static void test_forgotten_undo_is_never_undone_twice(void **state)
{
  struct fixture *f = *state;
  apply_range(f, 1000, 1200);
  claim_range(f, 1000, 1200);
  assert_int_equal(f->cluster.compensations, 201);
  assert_int_equal(node_total(f, "a"), 0);
  assert_false(undone_here(f, 1100)); /* undone, but no longer in the record */
  struct tally_dedup record;
  assert_true(tally_shard_producer_read(compensation(f), PRODUCER, &record));
  assert_int_equal(tally_dedup_decide(&record, 1100), TALLY_DEDUP_UNKNOWN);
  claim(f, 1100, 1);
  assert_int_equal(node_total(f, "a"), 0);
  assert_int_equal(f->cluster.compensations, 201);
  assert_int_equal(f->cluster.compensations_missed, 0);
}

/*
 * An undo a window or more behind its run's newest, but in the run's head
 * (its first 64 sequences and the 63 below): the head tells exactly, so it
 * is taken once (chaos seed 4243, store-loss kinds: 1121-1140 were refused
 * as STALE and stayed counted twice).
 */
static void test_undo_in_a_runs_head_is_taken(void **state)
{
  struct fixture *f = *state;
  apply_range(f, 1000, 1100);
  claim_range(f, 1000, 1029);
  claim_range(f, 1031, 1100); /* one run, head 937..1063, tail 1037..1100 */
  assert_int_equal(f->cluster.compensations, 100);
  struct tally_dedup record;
  assert_true(tally_shard_producer_read(compensation(f), PRODUCER, &record));
  assert_int_equal(tally_dedup_decide(&record, 1030), TALLY_DEDUP_UNSEEN);
  assert_int_equal(tally_dedup_decide(&record, 1020), TALLY_DEDUP_SEEN);
  claim(f, 1030, 1);
  claim(f, 1030, 1);
  assert_int_equal(f->cluster.compensations, 101);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
  assert_true(undone_here(f, 1030));
}

/* ---- No journal entry: a restored store ------------------------------------ */

/* What a restore leaves: the values and the record of (PRODUCER, seq), no journal. */
static void restore_applied(struct fixture *f, uint64_t seq, int64_t delta)
{
  struct tally_shard *shard = lcore_shard(f);
  assert_int_equal(tally_shard_set(shard, "a", 1,
    tally_shard_name_hash(shard, "a", 1), delta), TALLY_OK);
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  tally_dedup_new_run(&dedup, seq);
  struct tally_replication_message part = { .type = TALLY_REPLICATION_RESTORE, .origin = 1,
    .sender = 2, .flags = TALLY_REPLICATION_FLAG_PRODUCERS, .count = 1 };
  tally_cluster_dedup_to_wire(PRODUCER, &dedup, &part.producers[0]);
  tally_cluster_dedup_restore(&f->cluster, &part);
  struct tally_journal_entry entry;
  assert_false(tally_shard_journal_find(shard, PRODUCER, seq, &entry));
  struct tally_dedup read;
  assert_true(tally_shard_producer_read(shard, PRODUCER, &read));
  assert_true(tally_dedup_applied(&read, seq));
}

/* Notes the rings' ends for the next list, as the scan does. */
static void capture_claims(struct fixture *f)
{
  for (uint32_t r = 0; r < tally_cluster_claim_rings(&f->cluster); r++) {
    f->cluster.claims_capture[r] = tally_shard_claims_next(&f->appliance.store.shards[r]);
  }
  tally_cluster_quorum_claims_update(&f->cluster);
}

/*
 * The peer confirms a list planned at the last capture_claims: it holds the
 * values of every batch claimed below the noted positions (peer.c).
 */
static void peer_holds_the_list(struct fixture *f)
{
  struct tally_cluster_peer *peer = &f->cluster.peers[0];
  memcpy(peer->claims_capture, f->cluster.claims_capture, sizeof(peer->claims_capture));
  memcpy(peer->claims_held, peer->claims_capture, sizeof(peer->claims_held));
  tally_cluster_quorum_claims_update(&f->cluster); /* as the tick does */
}

static void test_no_journal_yields_to_the_claimant(void **state)
{
  struct fixture *f = *state;
  restore_applied(f, 40, 9);
  claim(f, 40, 1);
  /* Kept here (nothing to undo it with), and a keeper claim for the peer. */
  assert_int_equal(node_total(f, "a"), 9);
  assert_false(undone_here(f, 40));
  assert_int_equal(f->cluster.claims_yielded, 1);
  assert_int_equal(f->cluster.compensations, 0);
  assert_int_equal(tally_shard_claims_next(compensation(f)), 1);
  struct tally_claim keeper;
  assert_true(tally_shard_claim_at(compensation(f), 0, &keeper));
  assert_int_equal(keeper.producer, PRODUCER);
  assert_int_equal(keeper.seq, 40);
  assert_int_equal(keeper.attempt, TALLY_CLAIM_KEEPER);
  /* It goes out with the claims of the next list, from the compensation ring. */
  struct tally_cluster_peer *peer = &f->cluster.peers[0];
  capture_claims(f);
  peer_holds_the_list(f); /* (claims wait for W - 1 peers to hold their values) */
  assert_int_equal(tally_cluster_dedup_plan_claims(&f->cluster, peer), 1);
  assert_int_equal(peer->claims_pending[0].producer, PRODUCER);
  assert_int_equal(peer->claims_pending[0].seq, 40);
  assert_int_equal(peer->claims_pending[0].attempt, TALLY_CLAIM_KEEPER);
}

static void test_keeper_claim_without_journal_never_yields_back(void **state)
{
  struct fixture *f = *state;
  restore_applied(f, 50, 3);
  claim(f, 50, TALLY_CLAIM_KEEPER);
  /* Both keep it and neither can undo: counted as missed, no keeper claim back. */
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_int_equal(tally_shard_claims_next(compensation(f)), 0);
  assert_int_equal(node_total(f, "a"), 3);
}

/* A batch of another producer (same shard), to move the journal on. */
static void apply_other(struct fixture *f, uint64_t seq)
{
  struct tally_wire_batch batch = { .producer = PRODUCER + 1u, .seq = seq, .count = 1 };
  batch.pairs[0] = (struct tally_wire_pair){ .name = "c", .name_len = 1, .delta = 1 };
  enum tally_reason reason = TALLY_OK;
  assert_int_equal(tally_shard_apply_batch(lcore_shard(f), &batch, &reason), TALLY_ACK_APPLIED);
}

static void test_journal_index_follows_the_ring(void **state)
{
  struct fixture *f = *state;
  apply(f, 80, 0, 5); /* soon out of the journal */
  for (uint64_t seq = 1; seq <= TALLY_JOURNAL_ENTRIES; seq++) {
    apply_other(f, seq);
    if (seq == TALLY_JOURNAL_ENTRIES / 2) {
      claim(f, 1, 1); /* a claim half way: the index catches up in two steps */
      assert_int_equal(f->cluster.compensations, 0);
    }
  }
  apply(f, 81, 0, 7); /* recent */
  struct tally_journal_entry entry;
  assert_false(tally_shard_journal_find(lcore_shard(f), PRODUCER, 80, &entry));
  claim(f, 81, 1); /* found through the index: undone */
  assert_int_equal(f->cluster.compensations, 1);
  assert_true(undone_here(f, 81));
  assert_int_equal(node_total(f, "a"), 5);
  claim(f, 80, 1); /* applied here, out of the journal: kept, the claimant asked */
  assert_int_equal(f->cluster.claims_yielded, 1);
  assert_int_equal(node_total(f, "a"), 5);
  /* Another producer's recent batch from an older attempt is found too. */
  claim(f, 1, 1);
  assert_int_equal(f->cluster.compensations, 1); /* seq 1 of producer 8 is out of the ring */
  struct tally_replication_message message = { .type = TALLY_REPLICATION_ROUND, .origin = 2,
    .sender = 2, .flags = TALLY_REPLICATION_FLAG_CLAIMS, .seq = 1, .count = 1 };
  message.claims[0] = (struct tally_replication_claim){ .producer = PRODUCER + 1u,
    .seq = TALLY_JOURNAL_ENTRIES, .attempt = 2 };
  tally_cluster_dedup_claims(&f->cluster, &f->cluster.peers[0], message.claims, message.count);
  assert_int_equal(f->cluster.compensations, 2);
  assert_int_equal(node_total(f, "c"), TALLY_JOURNAL_ENTRIES - 1);
}

/* Fills an index's table with keys no journal holds, until it refuses one. */
static void fill_index(struct tally_journal_index *index)
{
  for (uint64_t i = 1;; i++) {
    uint64_t key[2] = { UINT64_MAX, i }; /* (producer, seq): no producer has that id */
    if (rte_hash_add_key_data(index->hash, key, (void *)(uintptr_t)0) != 0) break;
    assert_true(i <= 2u * TALLY_JOURNAL_ENTRIES);
  }
}

/*
 * H1: an insert the journal index refuses (a full table; colliding keys from
 * the network) fails closed — counted, and the position is answered from the
 * journal itself until the ring moves past it — never an assert, never a
 * false "not here". Before: catch_up asserted (abort).
 */
static void test_refused_index_insert_fails_closed(void **state)
{
  struct fixture *f = *state;
  fill_index(&f->cluster.journal_index[0]);
  fill_index(&f->cluster.undone_index);
  apply(f, 10, 0, 5);
  claim(f, 10, 1); /* the apply's position is refused: found by the walk, undone */
  assert_int_equal(f->cluster.journal_index_refused, 1);
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(node_total(f, "a"), 0);
  claim(f, 10, 1); /* the undo's position is refused too: the walk says undone already */
  assert_int_equal(f->cluster.journal_index_refused, 2);
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(node_total(f, "a"), 0);
  claim(f, 11, 1); /* never applied: the walk finds nothing, nothing is done */
  assert_int_equal(f->cluster.claims_yielded, 0);
  apply(f, 12, 0, 3);
  claim(f, 12, TALLY_CLAIM_KEEPER); /* undone from the journal, not "entry gone" */
  assert_int_equal(f->cluster.journal_index_refused, 3);
  assert_int_equal(f->cluster.compensations, 2);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(f->cluster.keeps_withheld, 0);
  assert_int_equal(node_total(f, "a"), 0);
}

/* ---- Overflow: the journal and the claims ring (8192 each) ------------------ */

/*
 * A batch stays undoable while it is among the last TALLY_JOURNAL_ENTRIES
 * this shard applied; one batch more and a keeper claim for it can only be
 * counted: compensations_missed, once, and the batch stays counted twice.
 */
static void test_journal_overflow_counts_missed(void **state)
{
  struct fixture *f = *state;
  apply(f, 1, 0, 5); /* the oldest of a full journal */
  for (uint64_t seq = 1; seq < TALLY_JOURNAL_ENTRIES; seq++) apply_other(f, seq);
  struct tally_journal_entry entry;
  assert_true(tally_shard_journal_find(lcore_shard(f), PRODUCER, 1, &entry));
  claim(f, 1, TALLY_CLAIM_KEEPER);
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(node_total(f, "a"), 0);
  apply(f, 2, 0, 3); /* then one batch more than the journal holds after it */
  for (uint64_t seq = TALLY_JOURNAL_ENTRIES; seq < 2u * TALLY_JOURNAL_ENTRIES + 1u; seq++) {
    apply_other(f, seq);
  }
  assert_false(tally_shard_journal_find(lcore_shard(f), PRODUCER, 2, &entry));
  claim(f, 2, TALLY_CLAIM_KEEPER);
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(f->cluster.claims_yielded, 0); /* a keeper claim never yields back */
  assert_int_equal(node_total(f, "a"), 3);        /* still counted here */
  assert_true(undone_here(f, 2));                 /* handled: never counted again */
  claim(f, 2, TALLY_CLAIM_KEEPER);
  claim(f, 2, 1);
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_int_equal(node_total(f, "c"), 2 * TALLY_JOURNAL_ENTRIES);
}

/*
 * A peer away while more than TALLY_CLAIMS_ENTRIES claims are written misses
 * the oldest (counted in bulk), and a claim overwritten between the scan that
 * noted it and the list that sends it is counted one by one: claims_lost.
 */
static void test_claims_ring_overflow_counts_lost(void **state)
{
  struct fixture *f = *state;
  struct tally_cluster_peer *peer = &f->cluster.peers[0];
  const uint64_t extra = 100;
  for (uint64_t seq = 1; seq <= TALLY_CLAIMS_ENTRIES + extra; seq++) apply(f, seq, 1, 1);
  assert_int_equal(tally_shard_claims_next(lcore_shard(f)), TALLY_CLAIMS_ENTRIES + extra);
  capture_claims(f);
  peer_holds_the_list(f);
  assert_int_equal(tally_cluster_dedup_plan_claims(&f->cluster, peer),
    TALLY_CLUSTER_CLAIMS_PER_LIST);
  assert_int_equal(f->cluster.claims_lost, extra);
  /* The oldest the ring still holds comes first: position extra, seq extra + 1. */
  assert_int_equal(peer->claims_pending[0].seq, extra + 1u);
  assert_int_equal(peer->claims_pending[TALLY_CLUSTER_CLAIMS_PER_LIST - 1].seq,
    extra + TALLY_CLUSTER_CLAIMS_PER_LIST);
  assert_int_equal(peer->claims_planned[0], extra + TALLY_CLUSTER_CLAIMS_PER_LIST);
  /* That list is delivered; before the next one, the ring laps 4 of the noted claims. */
  peer->claims_sent[0] = peer->claims_planned[0];
  const uint64_t lapped = 4;
  uint64_t first_new = TALLY_CLAIMS_ENTRIES + extra + 1u;
  uint64_t more = peer->claims_sent[0] + lapped + TALLY_CLAIMS_ENTRIES -
    tally_shard_claims_next(lcore_shard(f));
  for (uint64_t seq = first_new; seq < first_new + more; seq++) apply(f, seq, 1, 1);
  uint32_t planned = tally_cluster_dedup_plan_claims(&f->cluster, peer); /* same note */
  assert_int_equal(f->cluster.claims_lost, extra + lapped);
  assert_int_equal(planned, TALLY_CLAIMS_ENTRIES + extra - peer->claims_sent[0] - lapped);
  assert_int_equal(peer->claims_pending[0].seq, peer->claims_sent[0] + lapped + 1u);
  assert_int_equal(peer->claims_planned[0], TALLY_CLAIMS_ENTRIES + extra);
  for (uint32_t i = 0; i < planned; i++) {
    assert_int_equal(peer->claims_pending[i].producer, PRODUCER);
    assert_int_equal(peer->claims_pending[i].attempt, 1);
  }
}

/*
 * A claim makes the peer undo its own apply, so the batch is then counted
 * only here: it goes out only once W - 1 peers hold the values it names (a
 * list planned after the claim, confirmed). Else a restore of this node from
 * N - W + 1 peers could miss the batch and it would be counted nowhere (the
 * W = 3 chaos soak lost acked batches so). With W = 1 it goes at once.
 */
static void test_claims_wait_for_the_quorum_to_hold_their_values(void **state)
{
  struct fixture *f = *state;
  struct tally_cluster_peer *peer = &f->cluster.peers[0];
  capture_claims(f);
  peer_holds_the_list(f); /* a list from before the claim */
  apply(f, 1, 1, 5);      /* a resend applied here: a claim */
  capture_claims(f);
  assert_int_equal(tally_cluster_dedup_plan_claims(&f->cluster, peer), 0);
  assert_int_equal(peer->claims_planned[0], 0);
  peer_holds_the_list(f); /* the list with its values, confirmed */
  assert_int_equal(tally_cluster_dedup_plan_claims(&f->cluster, peer), 1);
  assert_int_equal(peer->claims_pending[0].seq, 1);
  assert_int_equal(peer->claims_planned[0], 1);
  /* W = 1: this node alone is the quorum. */
  peer->claims_sent[0] = peer->claims_planned[0];
  f->config.write_quorum = 1;
  apply(f, 2, 1, 5);
  capture_claims(f);
  assert_int_equal(tally_cluster_dedup_plan_claims(&f->cluster, peer), 1);
  assert_int_equal(peer->claims_pending[0].seq, 2);
}

/* ---- The undone set ---------------------------------------------------------- */

static void test_undone_set_is_scanned_marked(void **state)
{
  struct fixture *f = *state;
  apply(f, 60, 0, 4);
  claim(f, 60, 1);
  tally_cluster_dedup_scan(&f->cluster, 1);
  bool applied = false;
  bool undone = false;
  for (uint32_t i = 0; i < f->cluster.producer_positions; i++) {
    if (f->cluster.producer_id[i] == PRODUCER) applied = true;
    if (f->cluster.producer_id[i] == (PRODUCER | TALLY_PRODUCER_UNDONE_BIT)) {
      undone = true;
      assert_true(tally_dedup_applied(&f->cluster.producer_dedup[i], 60));
      assert_int_equal(f->cluster.producer_changed[i], 1);
    }
  }
  assert_true(applied);
  assert_true(undone);
}

static void test_restored_undone_set_is_not_undone_again(void **state)
{
  struct fixture *f = *state;
  /* A restore: the values already carry the undo (0), both records come back. */
  restore_applied(f, 70, 0);
  struct tally_dedup dedup;
  memset(&dedup, 0, sizeof(dedup));
  tally_dedup_new_run(&dedup, 70);
  struct tally_replication_message part = { .type = TALLY_REPLICATION_RESTORE, .origin = 1,
    .sender = 2, .flags = TALLY_REPLICATION_FLAG_PRODUCERS, .count = 1 };
  tally_cluster_dedup_to_wire(PRODUCER | TALLY_PRODUCER_UNDONE_BIT, &dedup, &part.producers[0]);
  tally_cluster_dedup_restore(&f->cluster, &part);
  assert_true(undone_here(f, 70));
  /* Nor does the lcore shard get a record under the marked id. */
  struct tally_dedup read;
  assert_false(tally_shard_producer_read(lcore_shard(f), PRODUCER | TALLY_PRODUCER_UNDONE_BIT,
    &read));
  claim(f, 70, 1);
  assert_int_equal(f->cluster.claims_yielded, 0); /* it undid it before: no keeper claim */
  assert_int_equal(f->cluster.compensations, 0);
  assert_int_equal(f->cluster.compensations_missed, 0);
  assert_int_equal(node_total(f, "a"), 0);
}

static void test_restore_claims_every_named_batch_not_undone(void **state)
{
  struct fixture *f = *state;
  /* Applied 100..102 and 300 (a second run: the producer came back), undid 101. */
  apply(f, 100, 0, 1);
  apply(f, 101, 0, 1);
  apply(f, 102, 0, 1);
  apply(f, 300, 0, 1);
  claim(f, 101, 1);
  assert_true(undone_here(f, 101));
  uint64_t before = tally_shard_claims_next(compensation(f));
  uint32_t written = tally_cluster_dedup_restore_claims(&f->cluster);
  assert_int_equal(written, 3);
  assert_int_equal(f->cluster.restore_claims, 3);
  assert_int_equal(tally_shard_claims_next(compensation(f)), before + 3);
  bool seen[4] = { false, false, false, false }; /* 100, 102, 300, other */
  for (uint64_t position = before; position < before + 3; position++) {
    struct tally_claim keeper;
    assert_true(tally_shard_claim_at(compensation(f), position, &keeper));
    assert_int_equal(keeper.producer, PRODUCER);
    assert_int_equal(keeper.attempt, TALLY_CLAIM_KEEPER);
    seen[keeper.seq == 100 ? 0 : keeper.seq == 102 ? 1 : keeper.seq == 300 ? 2 : 3] = true;
  }
  assert_true(seen[0] && seen[1] && seen[2]);
  assert_false(seen[3]); /* never 101 (undone here: the peer keeps it), never twice */
  assert_int_equal(f->cluster.claims_lost, 0);
}

/* ---- A node never keeps a batch it undid (invariant 1) ---------------------- */

/*
 * The history of chaos seed 4242 (store-loss kinds), producer 2 on node 3: it
 * applied 100..400 from attempt 0 in one run (its record names 100, in the
 * run's head), and undid 100, 200, 300 and 390 on the claimant's claims
 * (attempt 1): four runs of undos, so its undone set (3 runs) forgot 100.
 */
static void undo_four_runs(struct fixture *f)
{
  apply_range(f, 100, 400);
  claim(f, 100, 1);
  claim(f, 200, 1);
  claim(f, 300, 1);
  claim(f, 390, 1);
  assert_int_equal(f->cluster.compensations, 4);
  assert_false(undone_here(f, 100)); /* the undone set forgot it ... */
  struct tally_dedup applied;
  assert_true(tally_shard_producer_read(lcore_shard(f), PRODUCER, &applied));
  assert_true(tally_dedup_applied(&applied, 100)); /* ... while the record still names it */
  assert_int_equal(node_total(f, "a"), 301 - 4);
}

/* Whether the compensation shard's ring holds a keeper claim of (PRODUCER, seq). */
static bool keeper_claimed(struct fixture *f, uint64_t seq)
{
  const struct tally_shard *ring = compensation(f);
  for (uint64_t position = 0; position < tally_shard_claims_next(ring); position++) {
    struct tally_claim keeper;
    assert_true(tally_shard_claim_at(ring, position, &keeper));
    assert_int_equal(keeper.attempt, TALLY_CLAIM_KEEPER);
    if (keeper.producer == PRODUCER && keeper.seq == seq) return true;
  }
  return false;
}

/*
 * The claim of 100 comes again (the claimant resends its ring to a peer that
 * restarted) after the journal moved on: this node undid 100, so it must not
 * keep it and ask the claimant to undo its apply too (that loses the batch:
 * neither node counts it). On main it yielded.
 */
static void test_forgotten_undo_is_never_yielded(void **state)
{
  struct fixture *f = *state;
  undo_four_runs(f);
  for (uint64_t seq = 1; seq <= TALLY_JOURNAL_ENTRIES; seq++) apply_other(f, seq);
  struct tally_journal_entry entry;
  assert_false(tally_shard_journal_find(lcore_shard(f), PRODUCER, 100, &entry));
  claim(f, 100, 1);
  claim(f, 100, 2);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_false(keeper_claimed(f, 100));
  assert_int_equal(f->cluster.compensations, 4);
  assert_int_equal(f->cluster.compensations_missed, 0); /* it knows it undid it */
  assert_int_equal(node_total(f, "a"), 301 - 4);
  /* A batch of the run it never undid is still kept and yielded (it counts it). */
  claim(f, 150, 1);
  assert_int_equal(f->cluster.claims_yielded, 1);
  assert_true(keeper_claimed(f, 150));
}

/* The store is lost: a new one, empty, with new journal indexes (tallyd's start). */
static void lose_store(struct fixture *f)
{
  tally_cluster_dedup_close(&f->cluster);
  tally_store_close(&f->appliance.store);
  assert_int_equal(unlink(path), 0);
  const struct tally_store_geometry geometry = {
    .shard_count = 2, .counters_max = 1000, .producers_max = 16, .replica_count = 1};
  char error[256] = "";
  assert_int_equal(tally_store_open(&f->appliance.store, path, &geometry,
    TALLY_PERSIST_GROUP_COMMIT, error, sizeof(error)), 0);
  assert_int_equal(tally_cluster_dedup_open(&f->cluster, error, sizeof(error)), 0);
}

/*
 * The same history, then the store is lost and restored from a peer's copy
 * (the values and both records, as the last scan sent them): the restored
 * node must not claim 100 as keeper (nor yield it when the claim comes
 * again), since it no longer counts it. On main both happened, and the
 * claimant undid its apply too: seqs 1536, 1537, 1546-1548 lost.
 */
static void test_restore_never_keeps_a_forgotten_undo(void **state)
{
  struct fixture *f = *state;
  undo_four_runs(f);
  int64_t a = node_total(f, "a");
  int64_t b = node_total(f, "b");
  tally_cluster_dedup_scan(&f->cluster, 1);
  struct tally_replication_message part = { .type = TALLY_REPLICATION_RESTORE, .origin = 1,
    .sender = 2, .flags = TALLY_REPLICATION_FLAG_PRODUCERS };
  for (uint32_t i = 0; i < f->cluster.producer_positions; i++) {
    if (f->cluster.producer_id[i] == 0) continue;
    assert_true(part.count < TALLY_REPLICATION_PRODUCERS_MAX);
    tally_cluster_dedup_to_wire(f->cluster.producer_id[i], &f->cluster.producer_dedup[i],
      &part.producers[part.count++]);
  }
  assert_int_equal(part.count, 2); /* applied, and undone */
  lose_store(f);
  struct tally_shard *shard = lcore_shard(f);
  assert_int_equal(tally_shard_set(shard, "a", 1,
    tally_shard_name_hash(shard, "a", 1), a), TALLY_OK);
  assert_int_equal(tally_shard_set(shard, "b", 1,
    tally_shard_name_hash(shard, "b", 1), b), TALLY_OK);
  tally_cluster_dedup_restore(&f->cluster, &part);
  assert_false(undone_here(f, 100));
  uint32_t written = tally_cluster_dedup_restore_claims(&f->cluster);
  assert_true(written > 0);
  assert_false(keeper_claimed(f, 100)); /* undone, forgotten: never kept */
  assert_false(keeper_claimed(f, 200)); /* undone, remembered */
  assert_true(keeper_claimed(f, 400));  /* applied, provably never undone: kept */
  assert_true(keeper_claimed(f, 150));  /* in the span of the undos of 200, not one */
  /* 100..136 (the run's head below the oldest run of undos kept) may have
   * been undone: withheld, counted. 137..163 and 337..400 but 390: claimed. */
  assert_int_equal(f->cluster.keeps_withheld, 37);
  assert_int_equal(written, 27 + 63);
  claim(f, 100, 1); /* the claimant resends its ring to the restarted node */
  assert_false(keeper_claimed(f, 100));
  assert_int_equal(f->cluster.keeps_withheld, 38);
  assert_int_equal(f->cluster.claims_yielded, 0);
  assert_int_equal(node_total(f, "a"), a);
}

int main(void)
{
  /* rte_hash (the journal index) needs the EAL: no hugepages, no devices. */
  char *argv[] = { "test_cluster_dedup", "--no-huge", "-m", "64", "--no-shconf", "--no-pci",
    "-l", "0", "--log-level=*:error", NULL };
  if (rte_eal_init(9, argv) < 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_lower_attempt_is_undone_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_higher_attempt_or_not_applied_is_kept, setup, teardown),
    cmocka_unit_test_setup_teardown(test_keeper_claim_undoes_from_the_journal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_undos_in_any_order_each_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_undos_between_and_below_runs, setup, teardown),
    cmocka_unit_test_setup_teardown(
      test_undo_the_record_cannot_tell_is_taken_from_a_complete_journal, setup, teardown),
    cmocka_unit_test_setup_teardown(
      test_undo_the_record_cannot_tell_is_refused_once_history_is_lost, setup, teardown),
    cmocka_unit_test_setup_teardown(test_keeper_claims_in_any_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_forgotten_undo_is_never_undone_twice, setup, teardown),
    cmocka_unit_test_setup_teardown(test_undo_in_a_runs_head_is_taken, setup, teardown),
    cmocka_unit_test_setup_teardown(test_no_journal_yields_to_the_claimant, setup, teardown),
    cmocka_unit_test_setup_teardown(test_keeper_claim_without_journal_never_yields_back, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_journal_index_follows_the_ring, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refused_index_insert_fails_closed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_journal_overflow_counts_missed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_claims_ring_overflow_counts_lost, setup, teardown),
    cmocka_unit_test_setup_teardown(test_claims_wait_for_the_quorum_to_hold_their_values, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_undone_set_is_scanned_marked, setup, teardown),
    cmocka_unit_test_setup_teardown(test_restored_undone_set_is_not_undone_again, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_restore_claims_every_named_batch_not_undone, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_forgotten_undo_is_never_yielded, setup, teardown),
    cmocka_unit_test_setup_teardown(test_restore_never_keeps_a_forgotten_undo, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  rte_eal_cleanup();
  return failed;
}
