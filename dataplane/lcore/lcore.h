/*
 * lcore.h — one dataplane lcore: its shard, its RX/TX queues (queue number =
 * lcore index on every port), its pending acks and its statistics, and the
 * polling loop that ties them together.
 *
 * Sharing rules: the lcore is the only writer of its shard and its stats
 * (readers load them relaxed). The persister thread writes durable_seq;
 * the lcore reads it. Binary batches whose producer another lcore owns
 * travel over a single-producer/single-consumer ring (src, dst) to it. The
 * dataplane config is read through liburcu QSBR: dereferenced once per
 * burst, with a quiescent state per loop.
 */
#ifndef TALLY_LCORE_H
#define TALLY_LCORE_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "tally/limits.h"
#include "key_cache.h"
#include "log_ring.h"
#include "packet.h"
#include "tally/reasons.h"
#include "shard.h"
#include "statsd_sources.h"

/* Statistics one lcore publishes (single writer; readers load relaxed). */
#define TALLY_FOREACH_LCORE_STAT(_)                                              \
  _(rx_packets, "frames received")                                               \
  _(rx_bytes, "bytes received")                                                  \
  _(tx_packets, "frames sent (ARP, ICMP replies and acks)")                      \
  _(polls, "RX polls")                                                           \
  _(idle_polls, "RX polls that returned no frame")                               \
  _(full_polls, "RX polls that returned a full burst (the RX queue had more)")   \
  _(idle_sleeps, "idle back-off sleeps (dataplane.idle_sleep_us)")                \
  _(arp_replies, "ARP replies sent")                                             \
  _(icmp_replies, "ICMP echo replies sent")                                      \
  _(statsd_datagrams, "statsd datagrams")                                        \
  _(statsd_lines, "statsd lines parsed")                                         \
  _(statsd_increments, "statsd counter lines applied")                           \
  _(batches_received, "binary batches that passed the MAC")                      \
  _(batches_applied, "binary batches applied")                                   \
  _(batches_duplicate, "binary batches answered DUPLICATE")                      \
  _(batches_duplicate_remote, "of those, batches another cluster node applied")   \
  _(batches_duplicate_remote_applied, "batches another node applied, applied here (W >= 3)") \
  _(batch_increments, "pairs applied from binary batches")                       \
  _(batches_steered, "binary batches handed to their producer's lcore")          \
  _(acks_sent, "acks sent")                                                      \
  _(acks_duplicate_now, "of those, DUPLICATE acks sent at once (already durable)") \
  _(acks_error, "error acks sent (batch not counted)")                           \
  _(batches_read_only, "batches refused READ_ONLY (no write quorum)")            \
  _(statsd_taken_over, "statsd counters a reliable batch took over (statsd may no longer write them)") \
  _(statsd_values_dropped, "statsd values dropped so a reliable batch would not overflow on them") \
  _(applied_seq, "reliable writes applied (the ack sequence; release-stored)")    \
  _(durable_seq_seen, "reliable writes known durable")

struct tally_lcore_stats {
#define TALLY_LCORE_STAT_FIELD(name, text) uint64_t name;
  TALLY_FOREACH_LCORE_STAT(TALLY_LCORE_STAT_FIELD)
#undef TALLY_LCORE_STAT_FIELD
  uint64_t reasons[TALLY_REASON_COUNT];
} __rte_cache_aligned;

/* Frames this lcore will send on one port, flushed per poll. */
struct tally_tx_buffer {
  uint16_t count;
  struct rte_mbuf *frames[TALLY_BURST_SIZE];
};

/* An ack waiting for the persist that covers its batch. */
struct tally_pending_ack {
  struct rte_mbuf *frame;
  uint64_t applied_seq;
  uint32_t bucket;          /* its producer's, in acks_by_producer[] */
};

struct tally_lcore;

/* The classes with a per-poll budget (dataplane.*_per_poll; issue 14, C1). */
enum tally_traffic_class {
  TALLY_TRAFFIC_STATSD = 0,
  TALLY_TRAFFIC_RELIABLE,
  TALLY_TRAFFIC_CONTROL, /* ARP and ICMP */
  TALLY_TRAFFIC_CLASS_COUNT
};

/*
 * The persistence mode's half of the loop, chosen once at start-up
 * (control/daemon/modes.h): which reliable writes are durable, and what the
 * lcore does after each poll. One call of each per poll, none per packet.
 */
struct tally_lcore_persist {
  uint64_t (*durable_seq)(const struct tally_lcore *lcore);
  void (*after_poll)(struct tally_lcore *lcore);
};
/* Group commit: durable up to the persister's durable_seq; nothing after a poll. */
extern const struct tally_lcore_persist tally_lcore_group_commit;
/* Per burst: the shard flushed each write; the poll ends with its drain. */
extern const struct tally_lcore_persist tally_lcore_per_burst;

struct tally_lcore {
  /* Set before launch, then read-only. */
  uint32_t index;            /* shard, RX and TX queue number */
  uint32_t lcore_count;      /* dataplane lcores in all */
  unsigned lcore_id;
  uint16_t port_count;
  uint16_t ports[TALLY_PORTS_MAX];
  const struct tally_lcore_persist *persist; /* the persistence mode's half */
  /*
   * Log mode: each applied reliable batch's record goes here, to the
   * persister, before applied_seq counts it (log_ring.h). NULL otherwise.
   */
  struct tally_log_ring *log_ring;
  struct tally_shard *shard;
  struct tally_dp_config **config; /* RCU-protected pointer owned by control */
  volatile bool *quit;
  /* Steering: rings_in[src] carries batches from lcore src to this one. */
  struct rte_ring *rings_in[TALLY_LCORES_MAX];
  struct rte_ring *rings_out[TALLY_LCORES_MAX]; /* rings_out[dst] */
  /* Cluster: acks also wait until W - 1 peers hold the batch (quorum_seq). */
  bool wait_quorum;
  /* Idle back-off (dataplane.idle_sleep_us): 0 polls flat out. */
  uint32_t idle_sleep_us;
  /*
   * Reliable batches are answered READ_ONLY while either is set: the cluster
   * thread's "no write quorum reachable", or the operator's override
   * (tallyctl readonly on / drain). NULL: not in use.
   */
  volatile bool *read_only;
  volatile bool *read_only_forced;
  /*
   * The degradation level (0..TALLY_DEGRADE_LEVEL_MAX) the control thread
   * publishes (control/daemon/degrade.c), loaded relaxed per datagram: 2 and
   * above shed statsd, 3 answers reliable batches READ_ONLY. NULL: level 0.
   */
  volatile uint32_t *degradation_level;
  /* statsd admission: per-source buckets (statsd_sources.h). NULL: no budget. */
  struct tally_statsd_sources *statsd_sources;
  /* Written by the persister thread, read here. */
  uint64_t durable_seq __rte_cache_aligned;
  /* Written by the cluster thread, read here (when wait_quorum). */
  uint64_t quorum_seq;
  /* Owned by the lcore. */
  uint64_t acks_head __rte_cache_aligned; /* next to send */
  uint64_t acks_tail;                     /* next free */
  uint32_t idle_streak;                   /* empty polls in a row, ack FIFO empty */
  uint32_t class_used[TALLY_TRAFFIC_CLASS_COUNT]; /* this poll's packets per class (C1) */
  struct tally_pending_ack acks[TALLY_ACKS_PENDING_MAX];
  struct tally_key_cache key_cache; /* producers' derived keys (issue 14, M2) */
  /* Pending acks per producer bucket (issue 14, H3): each <= _PER_PRODUCER_MAX. */
  uint16_t acks_by_producer[TALLY_ACKS_PRODUCER_BUCKETS];
  struct tally_tx_buffer tx[TALLY_PORTS_MAX]; /* indexed by port id */
  struct tally_lcore_stats stats;
  struct tally_reply_bucket reply_bucket; /* ARP and ICMP replies (zeroed: full) */
  uint64_t (*reply_clock)(void);          /* the bucket's TSC; NULL: rte_get_tsc_cycles (tests set it) */
  volatile bool running;     /* set by the lcore once its loop runs */
  int tid;                   /* its thread id (set once at launch): page faults in /proc */
} __rte_cache_aligned;

/* The polling loop (rte_eal_remote_launch entry); arg is a struct tally_lcore. */
int tally_lcore_main(void *arg);

/*
 * One iteration of the loop without RCU bookkeeping: poll every port once,
 * handle the frames, drain steering rings, release durable acks. Exposed for
 * tests that drive an lcore by hand. Returns frames received.
 */
uint32_t tally_lcore_poll_once(struct tally_lcore *lcore, const struct tally_dp_config *config);

/*
 * The idle back-off, after one poll that received `received` frames: true
 * (counted in idle_sleeps) when the lcore should now sleep idle_sleep_us —
 * idle_sleep_us is set and TALLY_IDLE_POLLS_BEFORE_SLEEP empty polls came in
 * a row with no ack pending. A frame or a pending ack ends the streak: acks
 * waiting for durability or the quorum are released at full polling speed.
 * tally_lcore_main sleeps (offline for RCU meanwhile).
 */
bool tally_lcore_should_sleep(struct tally_lcore *lcore, uint32_t received);

/* Relaxed read of a stat by another thread. */
static inline uint64_t tally_lcore_stat_load(const uint64_t *stat)
{
  return __atomic_load_n(stat, __ATOMIC_RELAXED);
}

#endif
