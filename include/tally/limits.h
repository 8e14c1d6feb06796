/*
 * limits.h — every limit Tally enforces, in one place, units in the names.
 *
 * Anything that can grow (names, batches, queues, tables, connections) has a
 * fixed upper bound here, and the relations between bounds are checked at
 * compile time. Configurable limits have their allowed range here too; the
 * config loader rejects values outside it.
 */
#ifndef TALLY_LIMITS_H
#define TALLY_LIMITS_H

#include <assert.h>
#include <stdint.h>

/* ---- Counters and names ------------------------------------------------ */

/*
 * Longest counter key in bytes: the name alone, or the name with its tags in
 * canonical form (include/tally/key.h). A slot is 256 bytes; the key takes
 * 224 (96 in 128-byte slots until store layout 5).
 */
#define TALLY_NAME_LEN_MAX 224u
/* Size of one counter slot in the persistent store. */
#define TALLY_SLOT_SIZE 256u
/* Tags in one counter key (DogStatsD "|#k:v,...", binary "name{k=v,...}", libtally). */
#define TALLY_TAGS_MAX 16u
/* Longest tag key and tag value, in bytes. */
#define TALLY_TAG_KEY_LEN_MAX 64u
#define TALLY_TAG_VALUE_LEN_MAX 128u
/* Tag keys in ingest.statsd_tags_allow. */
#define TALLY_STATSD_TAGS_ALLOW_MAX 32u
/* Configurable counters per shard (store.counters_max): allowed range. */
#define TALLY_COUNTERS_MIN 16u
#define TALLY_COUNTERS_MAX (1u << 26)
/* Slot tables are filled to at most 3/4 so that probe chains stay short. */
#define TALLY_SLOT_LOAD_NUM 3u
#define TALLY_SLOT_LOAD_DEN 4u
/*
 * Longest probe in a slot table (slots walked from a name's home slot). A
 * lookup or insert that would walk further is refused (probe_limit; a
 * reliable batch gets the final counters_full): names chosen to collide can
 * cost an lcore at most this many slots each (issue 14 H1). Under the keyed
 * hash at load <= 3/4, linear probing runs past d slots with probability
 * about e^(-0.0377 d) per name: e^-38 at 1024, never in practice.
 */
#define TALLY_SLOT_PROBE_MAX 1024u

/* ---- Reliable producers -------------------------------------------------- */

/* Configurable producers tracked per shard (store.producers_max). */
#define TALLY_PRODUCERS_MIN 16u
#define TALLY_PRODUCERS_MAX (1u << 20)
/*
 * Producer ids a batch may carry: 1..TALLY_PRODUCER_ID_MAX (0 and the top
 * half are reserved: replication marks a node's record of batches it undid
 * with TALLY_PRODUCER_UNDONE_BIT, docs/cluster.md). Others are BAD_PRODUCER.
 */
#define TALLY_PRODUCER_ID_MAX ((1ull << 63) - 2u)
#define TALLY_PRODUCER_UNDONE_BIT (1ull << 63)
/*
 * The attempt a batch header carries (how many times it was sent before) is
 * read up to TALLY_ATTEMPT_MAX; a higher one counts as TALLY_ATTEMPT_MAX. A
 * claim of attempt TALLY_CLAIM_KEEPER says "the sender keeps this batch and
 * cannot undo it: undo yours" (docs/cluster.md, "Cross-node dedup").
 */
#define TALLY_ATTEMPT_MAX 65534u
#define TALLY_CLAIM_KEEPER 65535u
/* Size of one producer (dedup) record in the persistent store. */
#define TALLY_PRODUCER_SIZE 192u
/* Runs of a producer (arrivals at a node) each dedup record remembers. */
#define TALLY_DEDUP_RUNS 3u
/*
 * Dedup window per producer, in sequence numbers. A producer may have at most
 * this many batches in flight; a batch older than the window is answered
 * STALE (never counted, never acked as counted).
 */
#define TALLY_DEDUP_WINDOW 64u
/* Pairs (counter, delta) in one binary batch. */
#define TALLY_BATCH_PAIRS_MAX 64u
/*
 * Applied reliable batches each shard remembers (with their deltas) in its
 * journal ring, so that a batch another node also applied can be undone
 * (compensated) once replication shows the double apply. A double apply
 * found after this many later batches on the same shard cannot be undone and
 * is counted (tally_cluster_compensations_missed_total).
 */
#define TALLY_JOURNAL_ENTRIES 8192u
/*
 * Claims (batches applied from a resend) each shard keeps until every peer
 * has them. A peer unreachable for longer than this many resends applied on
 * one shard misses the oldest (counted: tally_cluster_claims_lost_total).
 */
#define TALLY_CLAIMS_ENTRIES 8192u

/* ---- Packets ------------------------------------------------------------- */

/* Packets taken from an RX queue per burst. */
#define TALLY_BURST_SIZE 32u
/* Largest UDP payload accepted (single-segment frames of a 1500-byte MTU). */
#define TALLY_DATAGRAM_SIZE_MAX 1472u
/* Frame buffer data room (mbuf); must hold a full frame. */
#define TALLY_MBUF_DATA_SIZE 2048u
/* Configurable mbufs per pool (dataplane.mbufs). */
#define TALLY_MBUFS_MIN 1024u
#define TALLY_MBUFS_MAX (1u << 20)
#define TALLY_MBUF_CACHE_SIZE 256u
/* The most tally_mbufs_needed() can ask (port.h): every port and lcore at their maxima. */
#define TALLY_MBUFS_NEEDED_MAX                                                             \
  ((uint64_t)TALLY_PORTS_MAX * TALLY_LCORES_MAX * (TALLY_RX_DESC + TALLY_TX_DESC) +         \
    (uint64_t)TALLY_LCORES_MAX * (TALLY_ACKS_PENDING_MAX +                                  \
      (TALLY_LCORES_MAX - 1u) * TALLY_STEER_RING_SIZE + TALLY_MBUF_CACHE_SIZE + TALLY_BURST_SIZE))
/*
 * Idle back-off of a polling lcore (dataplane.idle_sleep_us, 0 = off): after
 * this many empty polls in a row with no ack pending, each further empty poll
 * sleeps idle_sleep_us (counted in tally_lcore_idle_sleeps_total).
 */
#define TALLY_IDLE_POLLS_BEFORE_SLEEP 1024u
#define TALLY_IDLE_SLEEP_US_MAX 1000u
/*
 * Traffic classes as bulkheads (issue 14, C1): packets of one class an
 * lcore handles per poll (dataplane.statsd_per_poll, reliable_per_poll,
 * control_per_poll), 1..TALLY_CLASS_PER_POLL_MAX; the rest are dropped and
 * counted (budget_statsd, budget_reliable, budget_control). Defaults: a
 * statsd burst (one port's RX burst), reliable a burst plus a burst of
 * steered batches, control a quarter burst.
 */
#define TALLY_CLASS_PER_POLL_MAX 4096u
#define TALLY_STATSD_PER_POLL_DEFAULT 32u
#define TALLY_RELIABLE_PER_POLL_DEFAULT 64u
#define TALLY_CONTROL_PER_POLL_DEFAULT 8u
/* ingest.statsd_counters_percent: statsd's share of each shard's counters_max. */
#define TALLY_STATSD_COUNTERS_PERCENT_DEFAULT 75u
/* ARP and ICMP echo replies per lcore: a token bucket of this rate and depth (issue 14, L1).
 * Over it a request is dropped, counted as reply_rate_limited. */
#define TALLY_REPLIES_PER_S 100u
#define TALLY_REPLIES_BURST 16u
static_assert(TALLY_REPLIES_BURST >= 1 && TALLY_REPLIES_PER_S >= TALLY_REPLIES_BURST,
  "a second refills the whole bucket");
/*
 * Per-source statsd token buckets (issue 14, C1; dataplane/lcore/statsd_sources.c):
 * sources each lcore meters (a power of two), the slots one source may probe
 * (a keyed hash picks the first), and after how long without a datagram a
 * slot may be taken by another source. A source that finds no slot shares
 * the one overflow bucket. ingest.statsd_source_rate is datagrams per second
 * per source (0: off), ingest.statsd_source_burst datagrams.
 */
#define TALLY_STATSD_SOURCES_MAX 1024u
#define TALLY_STATSD_SOURCE_PROBES_MAX 8u
#define TALLY_STATSD_SOURCE_IDLE_S 60u
#define TALLY_STATSD_SOURCE_RATE_MAX 1000000u
#define TALLY_STATSD_SOURCE_BURST_MAX 1000000u
#define TALLY_STATSD_SOURCE_BURST_DEFAULT 100u
/* At degradation level 1 with ingest.statsd_source_rate = 0, the budget that applies. */
#define TALLY_STATSD_SOURCE_RATE_DEGRADED 1000u
#define TALLY_STATSD_SOURCE_BURST_DEGRADED 100u
/* ingest.statsd_allow_cidrs: networks in the list (the line limit holds about 11 of the longest). */
#define TALLY_STATSD_ALLOW_CIDRS_MAX 16u
static_assert((TALLY_STATSD_SOURCES_MAX & (TALLY_STATSD_SOURCES_MAX - 1u)) == 0, "2^n sources");
static_assert(TALLY_STATSD_SOURCE_PROBES_MAX <= TALLY_STATSD_SOURCES_MAX, "probes in the table");
static_assert(TALLY_STATSD_SOURCE_RATE_DEGRADED <= TALLY_STATSD_SOURCE_RATE_MAX, "degraded rate");

/*
 * Degradation levels (issue 14; control/daemon/degrade.c): the control
 * thread measures every TALLY_DEGRADE_TICK_MS; a level is entered after its
 * signal stayed at or above its high mark for TALLY_DEGRADE_ENTER_TICKS
 * ticks and left after it stayed below its low mark for
 * TALLY_DEGRADE_LEAVE_TICKS ticks. Signals are per mille.
 */
#define TALLY_DEGRADE_LEVEL_MAX 3u
#define TALLY_DEGRADE_TICK_MS 1000u
#define TALLY_DEGRADE_ENTER_TICKS 3u
#define TALLY_DEGRADE_LEAVE_TICKS 10u
#define TALLY_DEGRADE_PERMILLE_MAX 1000u
static_assert(TALLY_DEGRADE_LEAVE_TICKS > TALLY_DEGRADE_ENTER_TICKS, "leave slower than enter");

/* RX and TX descriptors per queue. */
#define TALLY_RX_DESC 1024u
#define TALLY_TX_DESC 1024u

/* ---- Lcores, ports, queues ---------------------------------------------- */

/* Dataplane lcores (= shards = RX queues per port). */
#define TALLY_LCORES_MAX 16u
/* Shards in a store: one per lcore, plus a cluster node's compensation shard. */
#define TALLY_SHARDS_MAX (TALLY_LCORES_MAX + 1u)
/* Ethernet ports. */
#define TALLY_PORTS_MAX 4u
/* Acks waiting for the persist that covers them, per lcore. */
#define TALLY_ACKS_PENDING_MAX 1024u
/*
 * Of those, at most this many per producer (counted per bucket of a mixed
 * producer id; issue 14, H3): one replayed batch cannot fill the FIFO and
 * starve every other producer of the lcore. A producer keeps at most
 * TALLY_DEDUP_WINDOW batches in flight, each possibly sent twice.
 */
#define TALLY_ACKS_PENDING_PER_PRODUCER_MAX 128u
#define TALLY_ACKS_PRODUCER_BUCKETS 1024u
/* Acks released per poll, so a burst of durable acks never overflows TX. */
#define TALLY_ACKS_RELEASE_PER_POLL 128u
/* Producers' derived keys each lcore caches (dataplane/lcore/key_cache.h; a power of two). */
#define TALLY_KEY_CACHE_ENTRIES 256u
/* Binary batches handed to the lcore that owns their producer, per ring. */
#define TALLY_STEER_RING_SIZE 1024u
/*
 * Log mode: applied batches' records waiting for the persister, per lcore
 * (each about 7.8 KiB, in hugepage memory). As many as acks may wait, so a
 * full ring means the persister is behind; a batch that finds it full is
 * not applied and not answered (log_ring_full; its producer retries).
 */
#define TALLY_LOG_RING_SIZE 1024u
/* Log mode: how long the persister sleeps when a round found nothing to log. */
#define TALLY_LOG_IDLE_SLEEP_US 100u
/*
 * Log mode: store.checkpoint_interval_ms, how often the persister starts a
 * checkpoint of the image (0: never; statsd increments reach the disk only
 * through checkpoints, so this is also their loss window on a power loss).
 */
#define TALLY_CHECKPOINT_INTERVAL_MS_DEFAULT 60000u
#define TALLY_CHECKPOINT_INTERVAL_MS_MIN 100u
#define TALLY_CHECKPOINT_INTERVAL_MS_MAX 86400000u
/* Log mode: image bytes a checkpoint copies and writes between two log rounds. */
#define TALLY_CHECKPOINT_STEP_BYTES (1024u * 1024u)

/* ---- Cluster ------------------------------------------------------------ */

/* Nodes in a cluster (this one included). */
#define TALLY_NODES_MAX 8u
/*
 * Replica regions a cluster node's store reserves (whatever its node count),
 * each bound for good to one origin node id the first time that node is a
 * member: the distinct peers one store can ever hold. A node retired from
 * the membership keeps its region (its counts stay summed), so at most this
 * many different peer ids over the store's life; a reload that needs one
 * more is refused (docs/cluster.md, "Membership").
 */
#define TALLY_REPLICA_REGIONS_MAX (TALLY_NODES_MAX - 1u)
/*
 * The cluster socket's largest datagram (replication between nodes over
 * kernel UDP; IP fragments it over a 1500-byte MTU): 8 KiB, so one round
 * carries hundreds of counters (issue 12).
 */
#define TALLY_CLUSTER_DATAGRAM_SIZE_MAX 8192u
/*
 * Counter values one replication message can hold: as many of the shortest
 * (1-byte) names as fit 8 KiB less the 48-byte header and 16-byte MAC, 11
 * bytes each (control/cluster/proto/replication_wire.h checks the sum). A
 * sender packs by size, so long names give fewer (34 of the longest).
 */
#define TALLY_REPLICATION_ENTRIES_MAX ((TALLY_CLUSTER_DATAGRAM_SIZE_MAX - 48u - 16u) / 11u)
/* Producer dedup records in one replication message (128 bytes each): as many as fit. */
#define TALLY_REPLICATION_PRODUCERS_MAX ((TALLY_CLUSTER_DATAGRAM_SIZE_MAX - 48u - 16u) / 128u)
/* Claims (producer, seq, attempt: 24 bytes each) in one replication message: as many as fit. */
#define TALLY_REPLICATION_CLAIMS_MAX ((TALLY_CLUSTER_DATAGRAM_SIZE_MAX - 48u - 16u) / 24u)
/* A replication message is unanswered after this long: resend. */
#define TALLY_REPLICATION_TIMEOUT_MS 50u
/* Backoff cap of replication resends to an unresponsive peer. */
#define TALLY_REPLICATION_BACKOFF_MAX_MS 1000u
/*
 * Test-only fault injection on the cluster socket (cluster.fault_*, see
 * control/cluster/cluster_fault.h): the allowed ranges, and how many delayed
 * datagrams are held at once (one more is dropped and counted as dropped).
 * At the longest delay (20 s) a 3-node cluster holds about 400 heartbeats
 * and a few rounds, acks and resends; a restore burst of a large replica can
 * overflow it (the restoring node asks again).
 */
#define TALLY_CLUSTER_FAULT_DELAY_MS_MAX 10000u
#define TALLY_CLUSTER_FAULT_JITTER_MS_MAX 10000u
#define TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX 1000u
#define TALLY_CLUSTER_FAULT_QUEUE_MAX 1024u

/* ---- Persistence --------------------------------------------------------- */

/* Group-commit interval (store.commit_interval_ms): allowed range. */
#define TALLY_COMMIT_INTERVAL_MS_MIN 1u
#define TALLY_COMMIT_INTERVAL_MS_MAX 1000u
/* Readiness fails when no commit succeeded for this many intervals. */
#define TALLY_COMMIT_STALL_INTERVALS 50u

/* ---- Management ---------------------------------------------------------- */

/* One request line on the management socket. */
#define TALLY_MGMT_LINE_MAX 512u
/* Seconds a management connection may last, from accept to its answer's last byte (absolute). */
#define TALLY_MGMT_TIMEOUT_S 5u
/* Concurrent HTTP connections, in all and from one IPv4 address (a slowloris from one source
 * cannot hold them all, so /health/live keeps answering others). */
#define TALLY_HTTP_CONNECTIONS_MAX 64u
#define TALLY_HTTP_CONNECTIONS_PER_IP_MAX 4u
/* HTTP: libmicrohttpd's memory pool per connection (request line, headers; bodies are refused). */
#define TALLY_HTTP_CONNECTION_MEMORY_BYTES 16384u
/* Longest group name (control.admin_group). */
#define TALLY_GROUP_NAME_LEN_MAX 32u
/* Longest path (store, socket) in the config. */
#define TALLY_PATH_MAX 256u
/* Longest EAL argument string and most EAL arguments. */
#define TALLY_EAL_ARGS_LEN_MAX 1024u
#define TALLY_EAL_ARGC_MAX 64u

/* ---- Keys ----------------------------------------------------------------- */

/* Ingest MAC key (BLAKE2b keyed, libsodium crypto_generichash). */
#define TALLY_KEY_SIZE 32u
/* MAC tag carried by batches and acks. */
#define TALLY_MAC_SIZE 16u

/* ---- Relations ----------------------------------------------------------- */

static_assert(TALLY_NAME_LEN_MAX + 32u == TALLY_SLOT_SIZE,
  "slot = 32 bytes of header + name");
static_assert(TALLY_SLOT_PROBE_MAX >= 64u, "a probe bound far above the expected run");
static_assert((TALLY_SLOT_PROBE_MAX & (TALLY_SLOT_PROBE_MAX - 1u)) == 0, "a power of two");
static_assert(TALLY_NAME_LEN_MAX <= UINT8_MAX, "a key's length fits the wire's u8 name_len");
static_assert(TALLY_TAG_KEY_LEN_MAX < TALLY_NAME_LEN_MAX &&
  TALLY_TAG_VALUE_LEN_MAX < TALLY_NAME_LEN_MAX, "a tag fits a key");
static_assert((TALLY_SLOT_SIZE & (TALLY_SLOT_SIZE - 1u)) == 0, "slot size is a power of two");
static_assert(TALLY_MBUF_CACHE_SIZE >= TALLY_BURST_SIZE, "mempool cache holds a burst");
static_assert(TALLY_MBUFS_MIN >= 4u * TALLY_MBUF_CACHE_SIZE, "pool larger than caches");
static_assert(TALLY_DATAGRAM_SIZE_MAX + 14u + 20u + 8u <= TALLY_MBUF_DATA_SIZE,
  "a full frame fits one mbuf");
static_assert(TALLY_DEDUP_WINDOW == 64u, "the dedup window is one 64-bit bitmap");
static_assert((TALLY_JOURNAL_ENTRIES & (TALLY_JOURNAL_ENTRIES - 1u)) == 0, "journal ring 2^n");
static_assert((TALLY_CLAIMS_ENTRIES & (TALLY_CLAIMS_ENTRIES - 1u)) == 0, "claims ring 2^n");
static_assert((TALLY_PRODUCER_ID_MAX | TALLY_PRODUCER_UNDONE_BIT) < UINT64_MAX,
  "an undone record's id never collides with the producer tombstone (2^64 - 1)");
static_assert((TALLY_PRODUCER_ID_MAX & TALLY_PRODUCER_UNDONE_BIT) == 0, "the bit is free");
static_assert(TALLY_ATTEMPT_MAX < TALLY_CLAIM_KEEPER && TALLY_CLAIM_KEEPER <= UINT16_MAX,
  "a keeper claim outranks every attempt and fits the claim's 16-bit field");
static_assert(TALLY_COUNTERS_MAX <= (1u << 30), "slot indexes fit 31 bits after load factor");
static_assert((TALLY_STEER_RING_SIZE & (TALLY_STEER_RING_SIZE - 1u)) == 0, "ring size is 2^n");
static_assert((TALLY_ACKS_PENDING_MAX & (TALLY_ACKS_PENDING_MAX - 1u)) == 0, "fifo size is 2^n");
static_assert((TALLY_LOG_RING_SIZE & (TALLY_LOG_RING_SIZE - 1u)) == 0, "log ring size is 2^n");
static_assert(TALLY_LOG_RING_SIZE >= TALLY_ACKS_PENDING_MAX, "a record per ack that may wait");
static_assert(TALLY_COMMIT_INTERVAL_MS_MIN <= TALLY_COMMIT_INTERVAL_MS_MAX, "range");
static_assert(TALLY_ACKS_RELEASE_PER_POLL <= TALLY_TX_DESC / 2, "released acks fit the TX ring");
static_assert(TALLY_ACKS_RELEASE_PER_POLL <= TALLY_ACKS_PENDING_MAX, "release within the fifo");
static_assert(TALLY_ACKS_PENDING_PER_PRODUCER_MAX < TALLY_ACKS_PENDING_MAX &&
  TALLY_ACKS_PENDING_PER_PRODUCER_MAX <= UINT16_MAX, "a producer's share of the fifo");
static_assert((TALLY_ACKS_PRODUCER_BUCKETS & (TALLY_ACKS_PRODUCER_BUCKETS - 1u)) == 0,
  "producer buckets: 2^n");
static_assert(TALLY_REPLICA_REGIONS_MAX + 1u >= TALLY_NODES_MAX,
  "every peer of a full cluster has a replica region");
static_assert(TALLY_REPLICA_REGIONS_MAX * 8u <= 64u, "the replica directory fits one cache line");

/* ---- Write-ahead log, the disk tier (control/persist/, the persister) ----- */

/*
 * One log record: a 40-byte header, then the payload zero-padded to 8 bytes
 * (docs/store-layout.md, "Write-ahead log"). A record never spans segments.
 */
#define TALLY_WAL_RECORD_HEADER_SIZE 40u
#define TALLY_WAL_RECORD_ALIGN 8u
#define TALLY_WAL_RECORD_SIZE_MAX 16384u /* a batch of 64 pairs with 224-byte keys */
#define TALLY_WAL_PAYLOAD_SIZE_MAX (TALLY_WAL_RECORD_SIZE_MAX - TALLY_WAL_RECORD_HEADER_SIZE)
/* A segment file's size: the writer starts a new one before passing it. */
#define TALLY_WAL_SEGMENT_SIZE_MIN (64u * 1024u)
#define TALLY_WAL_SEGMENT_SIZE_DEFAULT (64u * 1024u * 1024u)
#define TALLY_WAL_SEGMENT_SIZE_MAX (1024u * 1024u * 1024u)
/* Segment files a log may hold (recovery lists at most this many). */
#define TALLY_WAL_SEGMENTS_MAX 4096u
/* The group-commit buffer: records appended since the last commit. */
#define TALLY_WAL_GROUP_SIZE_MIN TALLY_WAL_RECORD_SIZE_MAX
#define TALLY_WAL_GROUP_SIZE_DEFAULT (1024u * 1024u)
#define TALLY_WAL_GROUP_SIZE_MAX (16u * 1024u * 1024u)
/* Recovery reads segments through a window of this size. */
#define TALLY_WAL_SCAN_WINDOW_SIZE (1024u * 1024u)
/* A file name in the log's directory (segments, later checkpoints). */
#define TALLY_DISK_NAME_SIZE_MAX 64u

static_assert(TALLY_WAL_RECORD_HEADER_SIZE % TALLY_WAL_RECORD_ALIGN == 0, "headers stay aligned");
static_assert(TALLY_WAL_RECORD_SIZE_MAX % TALLY_WAL_RECORD_ALIGN == 0, "records stay aligned");
static_assert(TALLY_WAL_GROUP_SIZE_MIN >= TALLY_WAL_RECORD_SIZE_MAX, "a group holds a record");
static_assert(TALLY_WAL_GROUP_SIZE_MIN <= TALLY_WAL_GROUP_SIZE_DEFAULT &&
  TALLY_WAL_GROUP_SIZE_DEFAULT <= TALLY_WAL_GROUP_SIZE_MAX, "group size range");
static_assert(TALLY_WAL_SEGMENT_SIZE_MIN <= TALLY_WAL_SEGMENT_SIZE_DEFAULT &&
  TALLY_WAL_SEGMENT_SIZE_DEFAULT <= TALLY_WAL_SEGMENT_SIZE_MAX, "segment size range");
static_assert(TALLY_WAL_SEGMENT_SIZE_MIN >= TALLY_WAL_GROUP_SIZE_MIN,
  "the smallest segment holds the smallest group");
static_assert(TALLY_WAL_SEGMENT_SIZE_DEFAULT >= TALLY_WAL_GROUP_SIZE_DEFAULT,
  "a default segment holds a default group");
static_assert(TALLY_WAL_SCAN_WINDOW_SIZE >= 2u * TALLY_WAL_RECORD_SIZE_MAX,
  "the recovery window holds any record at any offset");

/*
 * Checkpoints of the image (control/persist/checkpoint*.c; docs/store-layout.md,
 * "Checkpoints"). A file is a 4 KiB header block, the chunk CRC table padded to
 * 4 KiB, then the image in chunks of chunk_size bytes.
 */
#define TALLY_CHECKPOINT_BLOCK_SIZE 4096u
#define TALLY_CHECKPOINT_HEADER_SIZE 128u
#define TALLY_CHECKPOINT_CHUNK_SIZE_MIN 4096u
#define TALLY_CHECKPOINT_CHUNK_SIZE_DEFAULT (1024u * 1024u)
#define TALLY_CHECKPOINT_CHUNK_SIZE_MAX (4u * 1024u * 1024u)
/* Chunks per checkpoint: the CRC table is at most 256 KiB. */
#define TALLY_CHECKPOINT_CHUNKS_MAX 65536u
/* The largest image a checkpoint holds (with chunks of the largest size). */
#define TALLY_CHECKPOINT_IMAGE_SIZE_MAX \
  ((uint64_t)TALLY_CHECKPOINT_CHUNKS_MAX * TALLY_CHECKPOINT_CHUNK_SIZE_MAX)
/* The writer fdatasyncs the file being written after this many bytes (bounds each sync). */
#define TALLY_CHECKPOINT_SYNC_BYTES_DEFAULT (8u * 1024u * 1024u)
/* Checkpoint files kept once a new one is durable: the new one and the previous one. */
#define TALLY_CHECKPOINT_KEEP 2u
/* Checkpoint files recovery considers, newest first (the rest are ignored and counted). */
#define TALLY_CHECKPOINT_FILES_MAX 64u
/* Names listed in the checkpoint directory (it may share the log's directory). */
#define TALLY_CHECKPOINT_DIR_NAMES_MAX (TALLY_WAL_SEGMENTS_MAX + 256u)
/* Recovery's one-line report of the checkpoints it rejected. */
#define TALLY_CHECKPOINT_REPORT_SIZE 384u

static_assert(TALLY_CHECKPOINT_HEADER_SIZE <= TALLY_CHECKPOINT_BLOCK_SIZE, "header fits its block");
static_assert(TALLY_CHECKPOINT_CHUNK_SIZE_MIN % TALLY_CHECKPOINT_BLOCK_SIZE == 0 &&
  TALLY_CHECKPOINT_CHUNK_SIZE_MIN <= TALLY_CHECKPOINT_CHUNK_SIZE_DEFAULT &&
  TALLY_CHECKPOINT_CHUNK_SIZE_DEFAULT <= TALLY_CHECKPOINT_CHUNK_SIZE_MAX, "chunk size range");
static_assert(TALLY_CHECKPOINT_KEEP >= 2u, "the last good checkpoint is kept beside a new one");
static_assert(TALLY_CHECKPOINT_FILES_MAX >= TALLY_CHECKPOINT_KEEP + 1u,
  "recovery sees a new checkpoint, the kept ones and one left by an interrupted cleanup");

/* ---- Daemon, tools and libtally (control/daemon/, control/tools/, control/libtally/) ---- */

/* libtally: nodes in a client's list, and the longest "host:port" node string. */
#define TALLY_CLIENT_NODES_MAX 16u
#define TALLY_CLIENT_NODE_LEN_MAX 255u
/* libtally: attempts (first send + retries) per batch. */
#define TALLY_CLIENT_ATTEMPTS_MAX 64u
/* libtally: any configured duration (timeouts, backoff, cool-down, blocking). */
#define TALLY_CLIENT_DURATION_MS_MAX (3600u * 1000u)
/* libtally: datagrams read per poll before timers run again. */
#define TALLY_CLIENT_RECV_BURST_MAX 256u
/* libtally: tally_client_config_default's values (include/tally/client.h). */
#define TALLY_CLIENT_DEFAULT_ACK_TIMEOUT_MS 200u
#define TALLY_CLIENT_DEFAULT_ATTEMPTS 8u
#define TALLY_CLIENT_DEFAULT_BATCH_TIMEOUT_MS 10000u
#define TALLY_CLIENT_DEFAULT_BACKOFF_BASE_MS 10u
#define TALLY_CLIENT_DEFAULT_BACKOFF_CAP_MS 1000u
#define TALLY_CLIENT_DEFAULT_BREAKER_FAILURES 5u
#define TALLY_CLIENT_DEFAULT_BREAKER_COOLDOWN_MS 1000u
#define TALLY_CLIENT_DEFAULT_BLOCK_MS 1000u

static_assert(TALLY_DEDUP_WINDOW <= 64u, "in-flight bound fits the server's dedup window");
static_assert(TALLY_CLIENT_DURATION_MS_MAX < UINT32_MAX / 2, "deadlines add two durations");
static_assert(TALLY_CLIENT_DEFAULT_ATTEMPTS >= 1 &&
  TALLY_CLIENT_DEFAULT_ATTEMPTS <= TALLY_CLIENT_ATTEMPTS_MAX, "default attempts in range");
static_assert(TALLY_CLIENT_DEFAULT_ACK_TIMEOUT_MS >= 1 &&
  TALLY_CLIENT_DEFAULT_ACK_TIMEOUT_MS <= TALLY_CLIENT_DEFAULT_BATCH_TIMEOUT_MS,
  "a batch outlives one attempt");
static_assert(TALLY_CLIENT_DEFAULT_BATCH_TIMEOUT_MS <= TALLY_CLIENT_DURATION_MS_MAX, "range");
static_assert(TALLY_CLIENT_DEFAULT_BACKOFF_BASE_MS >= 1 &&
  TALLY_CLIENT_DEFAULT_BACKOFF_BASE_MS <= TALLY_CLIENT_DEFAULT_BACKOFF_CAP_MS,
  "backoff grows from base to cap");
static_assert(TALLY_CLIENT_DEFAULT_BACKOFF_CAP_MS <= TALLY_CLIENT_DURATION_MS_MAX, "range");
static_assert(TALLY_CLIENT_DEFAULT_BREAKER_FAILURES >= 1, "a breaker opens after a failure");
static_assert(TALLY_CLIENT_DEFAULT_BREAKER_COOLDOWN_MS >= 1 &&
  TALLY_CLIENT_DEFAULT_BREAKER_COOLDOWN_MS <= TALLY_CLIENT_DURATION_MS_MAX, "range");
static_assert(TALLY_CLIENT_DEFAULT_BLOCK_MS <= TALLY_CLIENT_DURATION_MS_MAX, "range");

/* Control thread: longest wait in poll() for the management socket and signals. */
#define TALLY_CONTROL_POLL_MS 100u
/* Management socket: connections waiting to be accepted (the listen backlog). */
#define TALLY_MGMT_BACKLOG 16u
/* Management socket: supplementary groups of a client read (SO_PEERGROUPS); more: primary only. */
#define TALLY_MGMT_PEER_GROUPS_MAX 64u
/* Management socket: getgrnam_r's buffer for control.admin_group. */
#define TALLY_MGMT_GROUP_BUFFER_SIZE 16384u
/* Management socket: answer bytes written per call. */
#define TALLY_MGMT_WRITE_CHUNK_SIZE 4096u
/* tallyctl: seconds to send the request and to read the answer (get --quorum asks every node). */
#define TALLY_CTL_ANSWER_TIMEOUT_S 30u
/* tallyctl: first size of the answer buffer (doubled as needed), and bytes read per call. */
#define TALLY_CTL_ANSWER_SIZE_INITIAL 65536u
#define TALLY_CTL_READ_SIZE 4096u
/* HTTP: seconds an idle connection may stay open (with TALLY_HTTP_CONNECTIONS_MAX). */
#define TALLY_HTTP_TIMEOUT_S 5u
/*
 * GET /counters (control/daemon/counters.c): scrapes streamed at once (a
 * further one is answered 503 and counted), the staging buffer each streams
 * through, and the slots one refill scans at most. Each stream also holds a
 * table of the metric families it has announced (8 bytes per entry, at most
 * half full, doubled as needed: at most 32 bytes per family).
 */
#define TALLY_HTTP_COUNTERS_STREAMS_MAX 2u
#define TALLY_HTTP_COUNTERS_CHUNK_SIZE 65536u
#define TALLY_HTTP_COUNTERS_SLOTS_PER_REFILL 4096u
/* Longest sample line of /counters: name, labels (every byte escaped), origin, a 128-bit value. */
#define TALLY_EXPORT_SERIES_SIZE_MAX (8u * TALLY_NAME_LEN_MAX + 64u)
#define TALLY_EXPORT_LINE_SIZE_MAX (TALLY_EXPORT_SERIES_SIZE_MAX + 128u)
/* Tags of one counter key NAME{k=v,...} read as labels; a key with more is exported unsplit. */
#define TALLY_EXPORT_LABELS_MAX 32u
/* Persister: sleeps interrupted (EINTR) and resumed per interval, at most. */
#define TALLY_PERSISTER_SLEEP_RETRIES_MAX 1000u
/* tally-produce: an input line "NAME DELTA\n" (a 224-byte key, a 20-character delta, blanks). */
#define TALLY_PRODUCE_LINE_SIZE_MAX 256u
/* tally-produce: bytes of a --key-file (64 hex digits and a line end, with room to spare). */
#define TALLY_PRODUCE_KEY_FILE_SIZE_MAX 256u
/* tally-produce: failed batches listed one per line in the summary; the rest are counted. */
#define TALLY_PRODUCE_FAILURES_LISTED_MAX 32u
/* tally-produce: increments between two non-blocking polls (acks read while input flows). */
#define TALLY_PRODUCE_POLL_EVERY_INCREMENTS 16u
/* tally-produce: input lines, a bound on the loop far beyond any real use. */
#define TALLY_PRODUCE_INPUT_LINES_MAX (UINT64_C(1) << 40)

static_assert(TALLY_CONTROL_POLL_MS >= 1 && TALLY_CONTROL_POLL_MS < 1000u * TALLY_MGMT_TIMEOUT_S,
  "the control thread sees quit and signals well within a client's timeout");
static_assert(TALLY_CTL_ANSWER_TIMEOUT_S >= TALLY_MGMT_TIMEOUT_S,
  "tallyctl waits at least as long as the server gives a client");
static_assert(TALLY_CTL_READ_SIZE <= TALLY_CTL_ANSWER_SIZE_INITIAL, "a read fits the buffer");
static_assert(TALLY_MGMT_LINE_MAX < TALLY_CTL_ANSWER_SIZE_INITIAL, "buffer sizes are sane");
static_assert(TALLY_HTTP_TIMEOUT_S >= 1 && TALLY_HTTP_CONNECTIONS_MAX >= 1, "HTTP serves");
static_assert(TALLY_HTTP_CONNECTIONS_PER_IP_MAX >= 1 &&
  TALLY_HTTP_CONNECTIONS_PER_IP_MAX * 4u <= TALLY_HTTP_CONNECTIONS_MAX,
  "one source holds at most a quarter of the connections");
static_assert(TALLY_PERSISTER_SLEEP_RETRIES_MAX >= 1, "the persister sleeps");
static_assert(TALLY_HTTP_COUNTERS_STREAMS_MAX >= 1 &&
  TALLY_HTTP_COUNTERS_STREAMS_MAX <= TALLY_HTTP_CONNECTIONS_MAX, "some scrapes stream, not all");
static_assert(TALLY_HTTP_COUNTERS_CHUNK_SIZE >= 4u * TALLY_EXPORT_LINE_SIZE_MAX,
  "a chunk holds several of the longest lines");
static_assert(TALLY_EXPORT_LABELS_MAX * 4u >= TALLY_NAME_LEN_MAX / 4u, "room for short tags");
static_assert(TALLY_PRODUCE_LINE_SIZE_MAX >= TALLY_NAME_LEN_MAX + 1u + 20u + 2u,
  "a line holds the longest name, a blank, a 20-character delta and its end");
static_assert(TALLY_PRODUCE_POLL_EVERY_INCREMENTS >= 1, "polls happen");

/* ---- store, wire, config (dataplane/store/, dataplane/wire/, control/config/) ---- */

/*
 * Reads of a producer record being rewritten (its checksum fails) before a
 * reader on another thread gives up on it (tally_shard_producer_read).
 */
#define TALLY_PRODUCER_READ_ATTEMPTS_MAX 4u
/* Most fraction digits of a statsd sample rate ("|@0.000001"): 10^18 still fits a uint64. */
#define TALLY_STATSD_RATE_FRACTION_DIGITS_MAX 18u
/* Largest config text accepted, from a file or by tally_config_parse. */
#define TALLY_CONFIG_TEXT_SIZE_MAX (64u * 1024u)
/* Interrupted reads (EINTR) of the config file retried before giving up. */
#define TALLY_CONFIG_READ_INTERRUPTS_MAX 64u
/* Longest piece of config input echoed in an error message. */
#define TALLY_CONFIG_ECHO_LEN_MAX 48u
/*
 * Longest cluster.nodes entry that is looked into; a longer one is refused
 * whole. A valid one is at most 27 bytes ("65535@255.255.255.255:65535"); the
 * slack lets "0007100" or an id of 20 digits get its precise message.
 */
#define TALLY_CONFIG_NODE_ENTRY_LEN_MAX 40u
/* Longest control.socket path: sockaddr_un.sun_path (108 on Linux) less its NUL. */
#define TALLY_SOCKET_PATH_LEN_MAX 107u
/* cluster.heartbeat_interval_ms and cluster.replication_interval_ms: allowed ranges. */
#define TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MIN 10u
#define TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MAX 10000u
#define TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN 1u
#define TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MAX 1000u
/*
 * cluster.suspect_phi and cluster.down_phi: at most this (and above 0); below
 * the detector's clamp (TALLY_PHI_MAX, control/cluster/proto/phi_detector.h).
 */
#define TALLY_CLUSTER_PHI_THRESHOLD_MAX 100.0

static_assert(TALLY_PRODUCER_READ_ATTEMPTS_MAX >= 1u, "a reader reads at least once");
static_assert(TALLY_STATSD_RATE_FRACTION_DIGITS_MAX <= 19u, "10^digits fits a uint64");
static_assert(TALLY_CONFIG_TEXT_SIZE_MAX >= TALLY_EAL_ARGS_LEN_MAX, "a config holds eal.args");
static_assert(TALLY_CONFIG_NODE_ENTRY_LEN_MAX <= TALLY_CONFIG_ECHO_LEN_MAX,
  "a bad cluster.nodes entry is echoed whole");
static_assert(TALLY_CONFIG_NODE_ENTRY_LEN_MAX >= 27u, "the longest valid entry fits");
static_assert(TALLY_SOCKET_PATH_LEN_MAX < TALLY_PATH_MAX, "socket path fits the config buffer");
static_assert(TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MIN <= TALLY_CLUSTER_HEARTBEAT_INTERVAL_MS_MAX,
  "range");
static_assert(TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN <=
  TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MAX, "range");
static_assert(TALLY_CLUSTER_REPLICATION_INTERVAL_MS_MIN >= 1u, "replication never spins");

/* ---- cluster thread (control/cluster/) ------------------------------------ */

/* Claims rings a node sends from: one per lcore shard, and the compensation
 * shard's (keeper claims, cluster_dedup.c). */
#define TALLY_CLUSTER_CLAIM_RINGS_MAX (TALLY_LCORES_MAX + 1u)
/* Claims planned into one list at most (the rest go with the next). */
#define TALLY_CLUSTER_CLAIMS_PER_LIST 4096u
/* The replication socket's send and receive buffers (SO_SNDBUF, SO_RCVBUF). */
#define TALLY_CLUSTER_SOCKET_BUFFER_BYTES (4u << 20)
/* The thread's loop waits on the socket at most this long between rounds. */
#define TALLY_CLUSTER_LOOP_WAIT_NS 1000000ull
/* Log mode: the loop's wait while a replication ACK waits for the log's fdatasync. */
#define TALLY_CLUSTER_ACK_POLL_NS 100000ull
/* Datagrams taken per wake-up of the loop. */
#define TALLY_CLUSTER_RECEIVE_BURST 256u
/* The heartbeat thread's wait on its socket at most (how soon it sees a stop). */
#define TALLY_CLUSTER_HEARTBEAT_WAIT_MAX_NS 10000000ull
/* A replication link's circuit breaker: open after this many unanswered rounds in a row, */
#define TALLY_REPLICATION_BREAKER_FAILURES 5u
/* and probe again after this long. */
#define TALLY_REPLICATION_BREAKER_COOLDOWN_MS 1000u
/*
 * A peer that has not answered a round (or a probe) for this long does not
 * count toward the write quorum, even if its heartbeats arrive: this node
 * cannot get its writes held there (a one-way or muted link, a peer stuck).
 */
#define TALLY_REPLICATION_STALL_MS 400u
/*
 * A restore or quorum-read request is served only if its sender's clock
 * stamp is within this of ours (and newer than the last one served from
 * that peer): a replay captured earlier is refused (issue 14, H4).
 */
#define TALLY_REPLICATION_REQUEST_WINDOW_MS 60000u
/* Restore of a new store: the longest wait for the peers, */
#define TALLY_CLUSTER_RESTORE_WAIT_MS_MAX 300000u
/* how often the request is sent again, */
#define TALLY_CLUSTER_RESTORE_RETRY_MS 500u
/* the longest wait on the socket between checks, */
#define TALLY_CLUSTER_RESTORE_POLL_NS 10000000ull
/* and the datagrams taken per wake-up. */
#define TALLY_CLUSTER_RESTORE_RECEIVE_BURST 4096u
/* `tallyctl get --quorum`: the longest wait for the members' answers. */
#define TALLY_CLUSTER_QUORUM_READ_TIMEOUT_MS 500u
/* How long a membership reload waits for the cluster thread to run it. */
#define TALLY_CLUSTER_MEMBERS_APPLY_WAIT_MS 2000u

static_assert(TALLY_CLUSTER_CLAIMS_PER_LIST >= TALLY_REPLICATION_CLAIMS_MAX,
  "a list holds at least one round of claims");
static_assert(TALLY_CLUSTER_LOOP_WAIT_NS < TALLY_REPLICATION_TIMEOUT_MS * 1000000ull,
  "the loop wakes before a round times out");
static_assert(TALLY_REPLICATION_STALL_MS > 2u * TALLY_REPLICATION_TIMEOUT_MS,
  "a stall is several unanswered timeouts, not one lost datagram");
static_assert(TALLY_REPLICATION_BREAKER_FAILURES >= 1u, "the breaker opens after a failure");
static_assert(TALLY_REPLICATION_BREAKER_COOLDOWN_MS <= TALLY_REPLICATION_BACKOFF_MAX_MS,
  "a breaker's cool-down is no longer than the resend backoff's cap");
static_assert(TALLY_CLUSTER_RESTORE_RETRY_MS < TALLY_CLUSTER_RESTORE_WAIT_MS_MAX,
  "a restore asks more than once");
static_assert(TALLY_CLUSTER_RESTORE_POLL_NS < TALLY_CLUSTER_RESTORE_RETRY_MS * 1000000ull,
  "a restore checks for answers between its requests");
static_assert(TALLY_CLUSTER_QUORUM_READ_TIMEOUT_MS < TALLY_MGMT_TIMEOUT_S * 1000u,
  "a quorum read answers before the management client gives up");
static_assert(TALLY_CLUSTER_MEMBERS_APPLY_WAIT_MS < TALLY_MGMT_TIMEOUT_S * 1000u,
  "a reload answers before the management client gives up");

/* ---- Output buffers (control/common/out.c: tallyctl answers, HTTP bodies) ---- */

/* Bytes written per chunk when an answer streams to a socket. */
#define TALLY_OUT_CHUNK_SIZE 16384u
/* Largest in-memory buffer (an HTTP /metrics page): a body of this less one byte (the NUL). */
#define TALLY_OUT_MEMORY_MAX (64u * 1024u * 1024u)

static_assert(TALLY_OUT_CHUNK_SIZE <= TALLY_OUT_MEMORY_MAX, "a chunk fits the in-memory bound");

/* ---- systemd notification (control/daemon/notify.c, the control thread) ---- */

/* A STATUS= line: the readiness verdict's first line, cut to this many bytes. */
#define TALLY_NOTIFY_STATUS_LEN_MAX 160u

static_assert(TALLY_NOTIFY_STATUS_LEN_MAX >= 64u, "a readiness verdict fits a STATUS= line");

/* ---- Graphite push (control/daemon/graphite.c, its own thread) ------------ */

/* graphite.interval_ms: how often every counter is pushed; allowed range, default. */
#define TALLY_GRAPHITE_INTERVAL_MS_MIN 1000u
#define TALLY_GRAPHITE_INTERVAL_MS_MAX 3600000u
#define TALLY_GRAPHITE_INTERVAL_MS_DEFAULT 10000u
/*
 * graphite.buffer_bytes: the bounded buffer of lines waiting for carbon,
 * allocated once at start; a line that does not fit is dropped and counted
 * (tally_graphite_lines_dropped_total). Allowed range, default.
 */
#define TALLY_GRAPHITE_BUFFER_BYTES_MIN (64u * 1024u)
#define TALLY_GRAPHITE_BUFFER_BYTES_MAX (256u * 1024u * 1024u)
#define TALLY_GRAPHITE_BUFFER_BYTES_DEFAULT (8u * 1024u * 1024u)
/* graphite.prefix: at most this many bytes (dot-separated [A-Za-z0-9_-] components). */
#define TALLY_GRAPHITE_PREFIX_LEN_MAX 64u
/*
 * A counter's carbon path: the prefix, a dot, the mapped key (as long as the
 * key, but for a '_' per empty tag key or value: control/common/graphite_name.h;
 * a longer one is dropped and counted). A line adds a blank, the value (an
 * int128: at most 40 characters), a blank, the timestamp (at most 20) and the
 * newline.
 */
#define TALLY_GRAPHITE_PATH_LEN_MAX (TALLY_GRAPHITE_PREFIX_LEN_MAX + 1u + 2u * TALLY_NAME_LEN_MAX)
#define TALLY_GRAPHITE_LINE_SIZE_MAX (TALLY_GRAPHITE_PATH_LEN_MAX + 1u + 40u + 1u + 20u + 1u)
/* Snapshots queued in the buffer at once; one more is dropped whole (its lines counted). */
#define TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX 64u
/* Reconnects after a failure: exponential backoff with full jitter, from base to cap, */
#define TALLY_GRAPHITE_BACKOFF_BASE_MS 200u
#define TALLY_GRAPHITE_BACKOFF_MAX_MS 10000u
/* and never sooner than this after the failure. */
#define TALLY_GRAPHITE_RECONNECT_MIN_MS 50u
/* A connect that has not completed after this long fails (counted, backoff). */
#define TALLY_GRAPHITE_CONNECT_TIMEOUT_MS 2000u
/* A connection on which carbon took no byte for this long is closed (counted, backoff). */
#define TALLY_GRAPHITE_SEND_STALL_MS 10000u
/* The thread's longest wait in poll(): how soon it sees shutdown. */
#define TALLY_GRAPHITE_POLL_MS 100u
/* Bytes handed to one send() call. */
#define TALLY_GRAPHITE_SEND_CHUNK_SIZE 65536u

static_assert(TALLY_GRAPHITE_INTERVAL_MS_MIN <= TALLY_GRAPHITE_INTERVAL_MS_DEFAULT &&
  TALLY_GRAPHITE_INTERVAL_MS_DEFAULT <= TALLY_GRAPHITE_INTERVAL_MS_MAX, "interval range");
static_assert(TALLY_GRAPHITE_BUFFER_BYTES_MIN <= TALLY_GRAPHITE_BUFFER_BYTES_DEFAULT &&
  TALLY_GRAPHITE_BUFFER_BYTES_DEFAULT <= TALLY_GRAPHITE_BUFFER_BYTES_MAX, "buffer range");
static_assert(TALLY_GRAPHITE_BUFFER_BYTES_MIN >= 4u * TALLY_GRAPHITE_LINE_SIZE_MAX,
  "the smallest buffer holds several of the longest lines");
static_assert(TALLY_GRAPHITE_BACKOFF_BASE_MS >= 1u &&
  TALLY_GRAPHITE_BACKOFF_BASE_MS <= TALLY_GRAPHITE_BACKOFF_MAX_MS, "backoff grows from base to cap");
static_assert(TALLY_GRAPHITE_RECONNECT_MIN_MS <= TALLY_GRAPHITE_BACKOFF_BASE_MS, "a floor below base");
static_assert(TALLY_GRAPHITE_POLL_MS <= TALLY_GRAPHITE_INTERVAL_MS_MIN, "polls within an interval");
static_assert(TALLY_GRAPHITE_SEND_STALL_MS > TALLY_GRAPHITE_POLL_MS, "a stall is many polls");
static_assert(TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX >= 2u, "a snapshot queues behind one in flight");

#endif
