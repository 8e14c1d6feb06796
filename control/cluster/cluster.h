/*
 * cluster.h — the node's side of the cluster: one control-plane thread (a
 * bulkhead: slow peers and management requests never stall each other) that
 * owns the replication UDP socket and, for every peer,
 *   - heartbeats out and in, and a phi-accrual failure detector;
 *   - the replication stream of this node's contribution to the peer
 *     (absolute values, stop-and-wait per peer, link sequence numbers,
 *     timeouts, backoff with full jitter, a circuit breaker);
 *   - the peer's stream into this node's replica table for it.
 * From the peers' acks it computes, per lcore, how far reliable batches are
 * held by W - 1 peers (quorum_seq), and whether a write quorum is reachable
 * at all (read_only). See docs/cluster.md.
 *
 * Heartbeats and the detectors run apart from all that, on the heartbeat
 * thread (heartbeat_thread.c), with a socket of its own on the same
 * address and port (SO_REUSEPORT, steered by a classic BPF program; io_udp.c),
 * so a long scan never delays them. What it owns is guarded by
 * `liveness_lock` (see struct tally_cluster_peer, "Liveness").
 *
 * Peers live in fixed slots: peers[r] is the peer whose contribution replica
 * region r of the store holds (the region is bound to its node id for the
 * store's life), so a slot is FREE (region unbound), ACTIVE (a member) or
 * RETIRED (bound, no longer a member: its counts stay, nothing is sent).
 * Membership changes at runtime (cluster_members.c): the control thread
 * hands a new membership over by pointer and the cluster thread applies it
 * at the top of its loop, under `lock`, which readers on other threads
 * (describe, metrics, quorum reads) take too. The lcores never take it.
 */
#ifndef TALLY_CLUSTER_H
#define TALLY_CLUSTER_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "appliance.h"
#include "breaker.h"
#include "cluster_fault.h"
#include "cluster_io.h"
#include "cluster_log.h"
#include "replica_stage.h"
#include "journal_index.h"
#include "out.h"
#include "phi_detector.h"
#include "replication_wire.h"

struct rte_hash;

/*
 * The parts of a scan's list, in the order they are sent (issue 12, item 1).
 * The priority parts carry everything a reliable ack waits for: the records
 * of batches this node undid first (a replica never holds an undo's values
 * without knowing it was an undo), the priority counters (every counter a
 * reliable batch or an undo ever wrote: a reliable slot in any shard, or one
 * in the compensation shard), the records of batches this node applied (never
 * named before their values), then the claims. Their last round carries LAST
 * (the peer commits what it staged) and its ack confirms the scan's capture:
 * quorum_seq moves. The bulk part follows: the statsd-only counters, in
 * rounds of their own, the last one with LAST again. A newer scan does not
 * wait for a bulk part to end: it replaces what is left of it (cluster_scan.c).
 */
enum tally_list_part {
  TALLY_LIST_UNDONE, TALLY_LIST_COUNTERS, TALLY_LIST_PRODUCERS, TALLY_LIST_CLAIMS,
  TALLY_LIST_BULK
};
#define TALLY_LIST_PARTS 5u
#define TALLY_LIST_PRIORITY_PARTS 4u /* the parts before TALLY_LIST_BULK */

/* What a peer slot is (see above). */
enum tally_peer_membership { TALLY_PEER_FREE = 0, TALLY_PEER_ACTIVE, TALLY_PEER_RETIRED };

/* One membership: the [cluster] settings the thread runs with, numbered. */
struct tally_cluster_members {
  uint64_t generation;                /* 1 at start, +1 per applied change */
  struct tally_cluster_config config;
};

/*
 * One peer slot. Its state has one owner, peer.c: every change of a slot's
 * life (activate, retire, resync, a peer's restart, a list confirmed) is a
 * function there, and tally_cluster_peer_assert_invariants checks every
 * relation below at once. In normal progress each field has one writer file,
 * named on the field; all of them run on the cluster thread (the start-up
 * thread before it starts), under `lock` where marked. Readers on other
 * threads (report.c, quorum_read.c) take `lock`.
 */
struct tally_cluster_peer {
  /* Identity (peer.c, under lock). FREE: all zero. Else replica == the slot's index. */
  uint8_t membership;                 /* enum tally_peer_membership */
  uint16_t id;                        /* != 0 unless FREE */
  uint32_t replica;                   /* store->replicas[replica]: always its slot index */
  struct sockaddr_in address;         /* peer.c (activate, retune) */
  /*
   * Liveness (heartbeat.c, on the heartbeat thread; peer.c inits and retunes
   * the detector, on the cluster thread). Every field here, and the slot's
   * identity above, is written only under cluster->liveness_lock, and read
   * under it by any thread but the cluster thread (which reads the identity
   * it writes itself without it). restarts_seen counts the newer
   * incarnations heartbeat.c saw; the cluster thread, which owns the stream,
   * probes the peer again when it differs from restarts_handled (its own).
   */
  struct tally_phi_detector detector;
  uint16_t flags;                     /* of its last heartbeat */
  uint32_t incarnation;               /* of its last heartbeat accepted (only grows); 0: none */
  uint64_t heartbeat_sent_ns;         /* sender's clock in its last heartbeat accepted */
  uint64_t restarts_seen;             /* newer incarnations seen (liveness_lock) */
  uint64_t restarts_handled;          /* of them, handled by the cluster thread (its own) */
  /* Outgoing stream: this node's contribution to the peer (stream_out.c). */
  bool was_synced;                    /* synced before (a restart keeps what it knew) */
  bool synced;                        /* we know which sequence it holds (then was_synced) */
  uint64_t acked_seq;                 /* the peer holds this (durably) */
  uint64_t sent_seq;                  /* 0, or in flight: acked_seq + 1 (synced, pending_valid) */
  uint8_t message[TALLY_REPLICATION_SIZE_MAX]; /* the round in flight, encoded (for resends) */
  size_t message_size;                /* <= TALLY_REPLICATION_SIZE_MAX */
  uint32_t message_count;             /* <= part_left(message_part) while in flight */
  uint8_t message_part;               /* what the round in flight carries: TALLY_LIST_* (< PARTS) */
  bool message_last;                  /* it carries LAST: the peer commits what it staged */
  uint32_t unsealed_rounds;           /* rounds acked since the last LAST acked: staged there,
                                         not in its table yet (a confirmation waits for a LAST) */
  uint32_t message_index[TALLY_REPLICATION_ENTRIES_MAX]; /* snapshot indexes */
  int64_t message_value[TALLY_REPLICATION_ENTRIES_MAX];
  uint64_t sent_ms;
  uint64_t resend_ms;                 /* next resend if unanswered */
  uint64_t waiting_since_ms;          /* first unanswered round or probe; 0: none */
  uint32_t retries;                   /* unanswered resends or probes since the last answer */
  struct tally_breaker breaker;       /* peer.c inits it */
  /*
   * Replay guards (session.c; issue 14, H4). session: the peer's session,
   * learned from the answer to our last probe (0: none yet); probe_nonce:
   * that probe's (an ACK while unsynced must echo it); request_us: the clock
   * stamp of the last restore and quorum-read request served (each only
   * grows, so a request is served once).
   */
  uint64_t session;
  uint64_t probe_nonce;
  uint64_t request_us[2];             /* TALLY_CLUSTER_REQUEST_RESTORE, _READ */
  /*
   * A list is one scan's state, frozen when it is planned: the values and the
   * records go out as they were at that scan, however long the list takes
   * (its records were read before its values, so a replica that completed it
   * names no batch its values lack; docs/cluster.md, "Cross-node dedup").
   * Planned by cluster_scan.c (claims by cluster_dedup.c), advanced by
   * stream_out.c as rounds are acked, emptied by peer.c. Every *_next <= its
   * *_count <= its array's length (allocated once, peer.c).
   */
  uint32_t *pending;                  /* priority counters' snapshot indexes (capacity) */
  int64_t *pending_value;             /* their values at the planning scan */
  uint32_t pending_count;
  uint32_t pending_next;
  uint32_t *bulk_pending;             /* statsd-only counters, after the claims: positions[]
                                         indexes (positions[] only grows while it runs) */
  int64_t *bulk_pending_value;        /* (pending_count + bulk_pending_count <= capacity) */
  uint32_t bulk_pending_count;
  uint32_t bulk_pending_next;
  uint32_t bulk_cursor;               /* positions[] index the next bulk part starts at */
  struct tally_replication_producer *undone_pending; /* undone records to send, first */
  uint32_t undone_pending_count;
  uint32_t undone_pending_next;
  struct tally_replication_producer *producers_pending; /* records, after the counters */
  uint32_t producers_pending_count;
  uint32_t producers_pending_next;
  uint64_t producers_list_scan;       /* scan number the list was planned at */
  uint64_t producers_synced;          /* it holds every record as of this scan (<= list's) */
  struct tally_replication_claim *claims_pending; /* claims still to send, after the records */
  uint32_t claims_pending_count;      /* <= TALLY_CLUSTER_CLAIMS_PER_LIST */
  uint32_t claims_pending_next;
  uint64_t claims_sent[TALLY_CLUSTER_CLAIM_RINGS_MAX];    /* per ring: below this position held */
  uint64_t claims_planned[TALLY_CLUSTER_CLAIM_RINGS_MAX]; /* (>= sent) and below this once acked */
  /* The rings' claims_next noted by the scan of the list being sent, and of
   * the last list the peer confirmed: its values hold every batch claimed
   * below (claims wait for W - 1 peers to hold them: quorum.c). */
  uint64_t claims_capture[TALLY_CLUSTER_CLAIM_RINGS_MAX];
  uint64_t claims_held[TALLY_CLUSTER_CLAIM_RINGS_MAX];
  bool pending_valid;                 /* a scan's list is being sent (priority or bulk) */
  bool list_confirmed;                /* its capture is confirmed (priority part held) */
  uint64_t list_scan;                 /* that scan's stamp (unix microseconds) */
  uint64_t capture[TALLY_LCORES_MAX]; /* lcores' applied_seq when that scan began */
  uint64_t list_scan_number;          /* cluster->scans of that scan (a newer one replaces bulk) */
  uint64_t confirmed[TALLY_LCORES_MAX]; /* applied_seq the peer is known to hold (<= capture) */
  int64_t *acked_value;               /* per snapshot index: what the peer holds (stream_out.c) */
  uint8_t *acked_known;               /* (peer.c clears it at a resync) */
  /* Incoming stream (stream_in.c): the peer's list, staged until its last round. */
  struct tally_replica_stage stage;   /* seq 0, or above the table's held_seq */
  /* Log mode (cluster_log.h): the ticket of the last change to its table; ACKs wait for it. */
  uint64_t log_ticket;
  uint64_t ack_deferred;              /* 0, or the seq of an ACK waiting for log_ticket */
  uint64_t ack_deferred_scan;         /* the deferred ACK's echo of its round's scan */
  uint64_t ack_deferred_session;      /* and of the round's session (session.c) */
  /* Figures, read relaxed: heartbeats_in (heartbeat.c), resyncs (peer.c), others stream_out.c */
  uint64_t heartbeats_in;
  uint64_t rounds_sent;
  uint64_t rounds_acked;
  uint64_t resends;
  uint64_t resyncs;
};

/*
 * The cluster's own counters: one table for the fields and their /metrics
 * names and help (report.c prints tally_cluster_<name>_total). Written by the
 * cluster thread (compensations and the claims figures by cluster_dedup.c),
 * read relaxed on other threads.
 */
#define TALLY_FOREACH_CLUSTER_COUNTER(_)                                                    \
  _(rounds_applied, "rounds applied to replica tables")                                    \
  _(compensations, "reliable batches undone here because a peer also applied them (from a " \
    "later attempt, or keeping them)")                                                     \
  _(compensations_missed, "double applies found too late to undo (counted twice; alert on " \
    "any)")                                                                                \
  _(claims_lost, "claims (batches applied from a resend) overwritten in their ring before a " \
    "peer got them (alert on any)")                                                        \
  _(claims_yielded, "claimed batches applied here with no journal entry left to undo them " \
    "(store restored, journal moved on): kept here, the claimant asked to undo its apply")  \
  _(keeper_claims_received, "peers keeping a batch this node may also have applied, asking " \
    "it to undo its apply")                                                                \
  _(restore_claims, "keeper claims this node sent after a restore, for the batches its "    \
    "restored records name (it has no journal to undo them with)")                         \
  _(keeps_withheld, "batches applied here that this node would keep (a yield, a restore "  \
    "claim) but whose undo here its undone set can no longer rule out: not kept, so never " \
    "lost, counted twice if it was not undone")                                            \
  _(claims_received, "claims received from peers")                                         \
  _(snapshot_insert_failed, "counters the replication snapshot's index refused: that scan "  \
    "planned no list and is retried (alert on any: replication is stalled)")                  \
  _(journal_index_refused, "journal positions the journal index's table refused to index "   \
    "(full, or colliding keys): answered by walking the journal until the ring moves past " \
    "them (exact, slower; alert on any)")                                                     \
  _(totals_saturated, "counters whose node total (sum over shards) left int64: replicated " \
    "as INT64_MAX or INT64_MIN, not dropped")                                                 \
  _(bulk_replaced, "bulk parts (statsd-only counters) a newer scan's list replaced before "  \
    "they ended: what they had not sent went out in the newer list")                         \
  _(peer_restarts, "peers seen starting again (a heartbeat of a newer incarnation): each "  \
    "link is probed again")                                                                \
  _(full_scans, "scans that read every slot of every shard (the first, one after a failed " \
    "scan, or shards whose changes are not tracked); the others read only dirty slots")     \
  _(scan_slots_read, "shard slots the replication scans read (dirty ones, each read once " \
    "more by the next scan, and every slot of a full scan)")

struct tally_cluster {
  struct tally_appliance *appliance;
  const struct tally_cluster_config *config; /* &members->config; swapped under lock */
  struct tally_cluster_members *members;      /* the running membership */
  struct tally_cluster_members *members_next; /* handed over, not applied yet (atomic) */
  uint64_t members_applied;                   /* generation running (release store) */
  pthread_mutex_t lock;                       /* peer slots vs. other threads' readers */
  uint64_t membership_reloads;                /* applied changes */
  uint64_t membership_refused;                /* refused reloads (bad or impossible config) */
  uint64_t not_member;                        /* datagrams from a node not a member */
  uint64_t wrong_source;                      /* a member's datagram from another address */
  uint64_t records_invalid;                   /* producer records no dedup state can be */
  uint64_t session;                           /* random per process start, never 0 */
  uint64_t wrong_session;                     /* messages of another session: ignored */
  uint64_t acks_stale;                        /* acks below the acked position, or not
                                                 echoing our probe: ignored */
  uint64_t requests_replayed;                 /* requests not newer than the last served */
  uint64_t read_stamp_us;                     /* last quorum-read stamp sent (atomic) */
  /* I/O (cluster_io.h): io is what the cluster uses; tallyd's is the fault layer over udp. */
  struct tally_cluster_io io;
  struct tally_cluster_udp udp;
  struct tally_cluster_fault_layer fault_layer;
  /*
   * The heartbeat thread (heartbeat_thread.c): tallyd's has its own socket
   * (heartbeat_udp, in udp's SO_REUSEPORT group; heartbeats are steered to
   * it) behind its own fault layer (heartbeat_fault: the same settings, its
   * own queue). Without one (tests over a fake network: heartbeat_own_thread
   * false) tally_cluster_tick sends and receives heartbeats itself.
   */
  bool heartbeat_own_thread;
  struct tally_cluster_io heartbeat_io;
  struct tally_cluster_udp heartbeat_udp;
  struct tally_cluster_fault heartbeat_fault;
  struct tally_cluster_fault_layer heartbeat_fault_layer;
  pthread_t heartbeat_thread;
  bool heartbeat_running;
  volatile bool heartbeat_quit;
  /*
   * What the heartbeat thread shares with the others: the peers' liveness
   * fields, the slots' identity and config while they change (the cluster
   * thread takes it inside `lock` when it applies a membership), and
   * next_heartbeat_ms. Held for short, bounded work only (never across a
   * scan, a round or a reader's output; a membership change logs its one
   * line under it), so neither thread can delay the other. Lock order:
   * `lock`, then liveness_lock.
   */
  pthread_mutex_t liveness_lock;
  uint64_t scans_published;           /* scans, for heartbeats' lsn field (atomic) */
  uint64_t heartbeats_misrouted;      /* heartbeats the cluster socket got (cluster thread) */
  uint64_t heartbeat_socket_foreign;  /* other datagrams the heartbeat socket got: dropped */
  uint64_t heartbeat_not_member;      /* heartbeats from a node not a member (heartbeat.c) */
  uint64_t heartbeat_wrong_source;    /* a member's heartbeat from another IP (heartbeat.c) */
  uint32_t peer_count;                        /* ACTIVE slots */
  struct tally_cluster_peer peers[TALLY_REPLICA_REGIONS_MAX]; /* by replica region */
  /* Snapshot of this node's contribution: name -> index (rte_hash; cluster_scan.c). */
  struct rte_hash *index;
  uint32_t capacity;
  char (*names)[TALLY_NAME_LEN_MAX];
  uint8_t *name_lens;
  uint8_t *owner_classes;             /* TALLY_CLASS_*: reliable if any shard's slot is (C1) */
  uint8_t *priority;                  /* 1: in the priority part (reliable, or undone here) */
  int64_t *current;
  uint32_t *positions;                /* snapshot indexes in use, in order of first sight */
  uint32_t positions_count;
  uint64_t writes_seen;               /* lcores' increments at the last scan */
  /*
   * Dirty tracking (issue 12; cluster_scan.c): per shard, the dirty bits the
   * last scan took (its slots are read once more by the next scan); whether
   * any were; whether the next scan must read every slot (the first, or the
   * last failed after taking bits). NULL rechecks: a full scan every time.
   */
  uint64_t *recheck[TALLY_SHARDS_MAX];
  bool recheck_pending;
  bool full_scan_needed;
  /*
   * Cross-node dedup (cluster_dedup.c): this node's producer records as of
   * the last scan, by position (shard x producer slot; the lcore shards',
   * then the compensation shard's, whose ids carry TALLY_PRODUCER_UNDONE_BIT),
   * and the scan number at which each last changed.
   */
  uint32_t producer_positions;
  uint64_t *producer_id;              /* 0: no record */
  struct tally_dedup *producer_dedup;
  uint64_t *producer_changed;
  uint64_t dedup_applied_seen[TALLY_LCORES_MAX]; /* lcores' applied_seq at the last record scan */
  struct tally_journal_index journal_index[TALLY_LCORES_MAX]; /* per lcore shard */
  struct tally_journal_index undone_index; /* the compensation shard's journal: undos */
  uint64_t compensations_seen;        /* compensations + missed at the last record scan */
  uint64_t claims_capture[TALLY_CLUSTER_CLAIM_RINGS_MAX]; /* rings' claims_next at the scan */
  uint64_t claims_quorum[TALLY_CLUSTER_CLAIM_RINGS_MAX];  /* sent below: W - 1 peers hold (quorum.c) */
#define TALLY_CLUSTER_COUNTER_FIELD(name, help) uint64_t name;
  TALLY_FOREACH_CLUSTER_COUNTER(TALLY_CLUSTER_COUNTER_FIELD)
#undef TALLY_CLUSTER_COUNTER_FIELD
  uint64_t scans;
  bool snapshot_ok;                   /* the last scan noted every counter: lists may be planned */
  uint64_t scan_capture[TALLY_LCORES_MAX]; /* lcores' applied_seq before that scan's values */
  uint64_t scan_stamp;                /* its unix microseconds (strictly increasing) */
  uint64_t next_scan_ms;
  uint64_t next_heartbeat_ms;          /* (liveness_lock) */
  volatile bool read_only;            /* read by the lcores */
  volatile bool quit;
  bool running;
  pthread_t thread;
  uint64_t rejected[TALLY_REPLICATION_REASON_COUNT + 1]; /* + heartbeats refused */
  uint64_t heartbeats_replayed;       /* same incarnation, not newer than the last: refused */
  uint64_t heartbeats_old_incarnation; /* an incarnation older than the last accepted: refused */
  uint64_t replica_full;              /* entries a full replica table refused */
  struct tally_cluster_log log;       /* log mode: the cluster's records (cluster_log.h) */
  uint64_t random_state;
  uint32_t incarnation;               /* start time (unix s): grows across restarts; heartbeats */
  struct tally_cluster_fault fault;   /* test-only: cluster.fault_* (off by default) */
};

/* A peer's request_us[]: which request. */
#define TALLY_CLUSTER_REQUEST_RESTORE 0u
#define TALLY_CLUSTER_REQUEST_READ 1u

/* rejected[]: heartbeats refused, after the replication reasons. */
#define TALLY_CLUSTER_HEARTBEAT_REJECTED TALLY_REPLICATION_REASON_COUNT

/*
 * Opens the socket and the snapshot; with restore (a new or damaged store),
 * fetches this node's own contribution from the peers first (blocking, until
 * N - W + 1 peers answered) and adds it to shard 0. Before the lcores start.
 * Returns 0 or -1 with error.
 */
int tally_cluster_open(struct tally_cluster *cluster, struct tally_appliance *appliance,
  bool restore, char *error, size_t error_size);
/* The same over another I/O backend (tests: a fake network and clock), no socket. */
int tally_cluster_open_io(struct tally_cluster *cluster, struct tally_appliance *appliance,
  struct tally_cluster_io io, bool restore, char *error, size_t error_size);
/*
 * Starts and stops the cluster thread, and the heartbeat thread if the
 * instance has its socket (stop frees the slots, the fault queues, the sockets).
 */
int tally_cluster_start(struct tally_cluster *cluster);
void tally_cluster_stop(struct tally_cluster *cluster);
/*
 * One round of the thread's loop, waiting at most wait_ns for datagrams (the
 * thread calls it until stopped; tests call it to step an instance).
 */
void tally_cluster_tick(struct tally_cluster *cluster, uint64_t wait_ns);
/* Stops the thread if it runs and frees everything the cluster holds. */
void tally_cluster_close(struct tally_cluster *cluster);
/* Peers that do not hold every counter of this node's latest scan yet. */
uint32_t tally_cluster_peers_behind(struct tally_cluster *cluster);
/*
 * `tallyctl get --quorum`: asks every peer for its copies of the counter and
 * sums, per origin, the freshest copy heard (a node's own contribution beats
 * any replica of it). *answered counts this node too. -1 if no socket.
 */
int tally_cluster_quorum_read(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  __int128 *total, uint32_t *answered, uint32_t *nodes, bool *found);
/* Prometheus figures of the cluster (appended to /metrics). */
void tally_cluster_metrics(struct tally_cluster *cluster, struct tally_out *out);
/* `tallyctl cluster`: the self line and one line per peer. */
void tally_cluster_describe(struct tally_cluster *cluster, struct tally_out *out);
/*
 * `tallyctl reload`, any thread: applies config's fault_* settings (test-only
 * fault injection) to the running cluster thread. Returns true if they changed.
 */
bool tally_cluster_fault_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *config);

/* Internal, cluster_dedup.c: cross-node dedup of reliable batches. */
int tally_cluster_dedup_open(struct tally_cluster *cluster, char *error, size_t error_size);
/* Frees what tally_cluster_dedup_open made (tally_cluster_close calls it). */
void tally_cluster_dedup_close(struct tally_cluster *cluster);
/* Notes this node's changed producer records (before the values are read). */
void tally_cluster_dedup_scan(struct tally_cluster *cluster, uint64_t scan_number);
/* A peer's records (undone or applied): merged into its replica table. false: full. */
/* Log mode: the record just merged into peer's table, as a cluster-record item. */
void tally_cluster_dedup_log_received(struct tally_cluster *cluster,
  const struct tally_cluster_peer *peer, const struct tally_replication_producer *record);
bool tally_cluster_dedup_receive(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_producer *records, uint32_t count);
/* A peer's claims: every batch this node applied from a lower attempt is undone. */
void tally_cluster_dedup_claims(struct tally_cluster *cluster, struct tally_cluster_peer *peer,
  const struct tally_replication_claim *claims, uint32_t count);
/* quorum.c: claims_quorum, how far each claims ring may be sent (W - 1 peers hold its values). */
void tally_cluster_quorum_claims_update(struct tally_cluster *cluster);
/* Plans the claims a peer does not hold yet into its list (cluster_scan.c calls it). */
uint32_t tally_cluster_dedup_plan_claims(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer);
/* A peer that lost its state gets every claim still in the rings again. */
void tally_cluster_dedup_claims_reset(struct tally_cluster *cluster,
  struct tally_cluster_peer *peer);
/* Restore: the records a peer holds of this node, into this node's shards. */
void tally_cluster_dedup_restore(struct tally_cluster *cluster,
  const struct tally_replication_message *part);
/*
 * After a restore: keeper claims for every batch the restored records name
 * (heads and tails of each producer's runs) and the undone set does not;
 * returns how many were written.
 */
uint32_t tally_cluster_dedup_restore_claims(struct tally_cluster *cluster);
/* Claims rings this node sends from: the lcore shards', then the compensation shard's. */
uint32_t tally_cluster_claim_rings(const struct tally_cluster *cluster);
/* A dedup record as replication carries it. */
void tally_cluster_dedup_to_wire(uint64_t producer, const struct tally_dedup *dedup,
  struct tally_replication_producer *record);
/* The compensation shard: this node's undo of batches another node kept. */
struct tally_shard *tally_cluster_compensation_shard(struct tally_cluster *cluster);

/* Whether a slot is a member now (the cluster thread, or a reader under lock). */
static inline bool tally_cluster_peer_active(const struct tally_cluster_peer *peer)
{
  return peer->membership == TALLY_PEER_ACTIVE;
}

/* cluster_members.c: membership at start and at runtime. */
/* Before anything reads cluster->config: generation 1 from the node's config. */
int tally_cluster_members_init(struct tally_cluster *cluster, char *error, size_t error_size);
/* After the snapshot: binds every member's region, fills the slots. */
int tally_cluster_members_open(struct tally_cluster *cluster, char *error, size_t error_size);
/* The cluster thread, top of its loop: applies a membership handed over. */
void tally_cluster_members_apply(struct tally_cluster *cluster);
/*
 * The control thread (`tallyctl cluster reload`, `tallyctl reload`, SIGHUP):
 * checks fresh against the running membership, binds the new members'
 * regions, publishes the lcores' table list (RCU), hands the membership to
 * the cluster thread and waits for it to run it. Writes one line to out.
 * Returns 1 applied, 0 unchanged, -1 refused (nothing changed).
 */
int tally_cluster_members_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, struct tally_out *out);
/* The pure check of fresh against the running membership (any control-plane thread). */
int tally_cluster_members_check(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, char *error, size_t error_size);
/* The replica tables the lcores consult (every bound one) into config. */
void tally_cluster_members_dp(const struct tally_store *store, uint32_t write_quorum,
  struct tally_dp_config *config);
/* Frees what the membership owns (after the thread stopped). */
void tally_cluster_members_close(struct tally_cluster *cluster);

/* Internal, cluster_scan.c: the contribution snapshot and per-peer lists. */
int tally_cluster_snapshot_open(struct tally_cluster *cluster, char *error, size_t error_size);
void tally_cluster_scan(struct tally_cluster *cluster, bool force);

/*
 * GET /counters (control/daemon/counters.c): the replica tables a scrape
 * exports beside this node's own contribution — every retired node's, and
 * every member's that the failure detector does not say up — with the scan
 * each is complete up to (held_scan, unix microseconds). Also this node's id
 * and the running membership's size. Any thread; takes `lock` (report.c).
 */
struct tally_cluster_copy {
  uint16_t origin;
  uint32_t replica;                   /* store->replicas[replica] */
  uint64_t scan_us;
};
uint32_t tally_cluster_export_copies(struct tally_cluster *cluster,
  struct tally_cluster_copy copies[TALLY_REPLICA_REGIONS_MAX], uint16_t *self, uint32_t *members);

#endif
