/*
 * test_cluster_dedup.c — cross-node dedup on the cluster thread
 * (control/cluster_dedup.c), driven directly on a real store: one lcore
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
 * restored into the compensation shard; and that after a restore every batch
 * the records name, but not the undone ones, is claimed as keeper.
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

#include "cluster.h"
#include "tally/name.h"
#include "tally/shard.h"
#include "tally/store.h"

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
  tally_journal_index_close(&f->cluster.journal_index[0]);
  free(f->cluster.producer_id);
  free(f->cluster.producer_dedup);
  free(f->cluster.producer_changed);
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
    int64_t slot = tally_shard_find(shard, name, len, tally_name_hash(name, len));
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
  claim(f, 100, 1); /* below the oldest kept run: refused, never undone twice */
  assert_int_equal(f->cluster.compensations, 4);
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(node_total(f, "a"), 0);
}

/*
 * A keeper claim is not taken out of order: the keeper's undone set may have
 * forgotten that it undid the batch itself (chaos seed 4243: a restored node
 * yielded batches it had undone, and both undid them). Only the window
 * takes it, as before.
 */
static void test_keeper_claims_only_in_the_window(void **state)
{
  struct fixture *f = *state;
  apply(f, 100, 1, 1);
  apply(f, 300, 1, 1);
  claim(f, 300, TALLY_CLAIM_KEEPER);
  claim(f, 100, TALLY_CLAIM_KEEPER); /* far behind the newest undo: refused */
  assert_int_equal(f->cluster.compensations, 1);
  assert_int_equal(f->cluster.compensations_missed, 1);
  assert_int_equal(node_total(f, "a"), 1);
  assert_false(undone_here(f, 100));
}

/*
 * What the undone set can no longer tell is refused, never undone twice: an
 * undo that fell off its run's tail and is not in its head.
 */
static void test_forgotten_undo_is_never_undone_twice(void **state)
{
  struct fixture *f = *state;
  apply_range(f, 1000, 1200);
  claim_range(f, 1000, 1200);
  assert_int_equal(f->cluster.compensations, 201);
  assert_int_equal(node_total(f, "a"), 0);
  assert_false(undone_here(f, 1100)); /* undone, but no longer in the record */
  claim(f, 1100, 1);
  assert_int_equal(node_total(f, "a"), 0);
  assert_int_equal(f->cluster.compensations, 201);
  assert_int_equal(f->cluster.compensations_missed, 1);
}

/* ---- No journal entry: a restored store ------------------------------------ */

/* What a restore leaves: the values and the record of (PRODUCER, seq), no journal. */
static void restore_applied(struct fixture *f, uint64_t seq, int64_t delta)
{
  struct tally_shard *shard = lcore_shard(f);
  assert_int_equal(tally_shard_set(shard, "a", 1, tally_name_hash("a", 1), delta), TALLY_OK);
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
  for (uint32_t r = 0; r < tally_cluster_claim_rings(&f->cluster); r++) {
    f->cluster.claims_capture[r] = tally_shard_claims_next(&f->appliance.store.shards[r]);
  }
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
    cmocka_unit_test_setup_teardown(test_keeper_claims_only_in_the_window, setup, teardown),
    cmocka_unit_test_setup_teardown(test_forgotten_undo_is_never_undone_twice, setup, teardown),
    cmocka_unit_test_setup_teardown(test_no_journal_yields_to_the_claimant, setup, teardown),
    cmocka_unit_test_setup_teardown(test_keeper_claim_without_journal_never_yields_back, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_journal_index_follows_the_ring, setup, teardown),
    cmocka_unit_test_setup_teardown(test_undone_set_is_scanned_marked, setup, teardown),
    cmocka_unit_test_setup_teardown(test_restored_undone_set_is_not_undone_again, setup,
      teardown),
    cmocka_unit_test_setup_teardown(test_restore_claims_every_named_batch_not_undone, setup,
      teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  rte_eal_cleanup();
  return failed;
}
