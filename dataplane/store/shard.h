/*
 * shard.h — one dataplane lcore's shard of the persistent store: its counter
 * slot table (an open-addressing hash table that *is* the on-media index),
 * its producers' dedup records, its batch redo log and its journal of recent
 * batches (for undoing a batch another cluster node also applied).
 *
 * Ownership: exactly one lcore writes a shard (no locks, no atomic
 * read-modify-write). Any thread may read published slots concurrently: a
 * slot is published by the release-store of its name_len, written last.
 * Recovery (tally_shard_recover) runs before any lcore starts.
 *
 * Integrity: a slot's identity (hash, length, name, position) is covered by
 * ident_crc; its value by value_check, written together with the value in a
 * single 16-byte store so kill -9 can never tear them apart. A reliable batch
 * is applied through the redo log (absolute new values + new dedup state),
 * so replaying it after a crash is idempotent. See docs/store-layout.md.
 */
#ifndef TALLY_SHARD_H
#define TALLY_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/batch_wire.h"
#include "tally/limits.h"
#include "tally/reasons.h"
#include "store_format.h"

/* One counter: 128 bytes, two cache lines, the first holding all hot fields. */
struct tally_slot {
  int64_t value;          /* this shard's running sum */
  uint64_t value_check;   /* tally_slot_value_check(ident_crc, value) */
  uint32_t hash;          /* tally_name_hash(store's key, name) */
  uint32_t ident_crc;     /* tally_slot_ident_crc(index, hash, name) */
  uint16_t name_len;      /* 0: empty; stored last, with release, to publish */
  uint16_t flags;         /* TALLY_SLOT_FLAG_*; set only by recovery */
  uint8_t owner_class;    /* TALLY_CLASS_*: who may write it (0, statsd, in older stores) */
  uint8_t reserved[3];
  char name[TALLY_NAME_LEN_MAX];
} __attribute__((aligned(64)));
static_assert(sizeof(struct tally_slot) == TALLY_SLOT_SIZE, "slot layout");

/*
 * A producer's dedup state on one node, as runs. A run starts when the
 * producer first arrives, or comes back after a window or more of sequences
 * went elsewhere (it failed over and back). Each run keeps its
 * head (the TALLY_DEDUP_WINDOW sequences from its first one on, and the
 * TALLY_DEDUP_WINDOW below it: a producer that fails over resends its whole
 * in-flight window, in any order, so the first to arrive need not be the
 * lowest) and its tail (its latest TALLY_DEDUP_WINDOW); runs[0] is the
 * current run, whose tail decides
 * DUPLICATE and STALE, and TALLY_DEDUP_RUNS - 1 earlier runs are remembered.
 * A producer that fails over overlaps two nodes only at run boundaries — the
 * tail of a run on one node, the head of a run on the next — so these windows
 * are what cross-node dedup compares, however far the producer went on since
 * and even after it bounced back and forth (docs/cluster.md).
 */
struct tally_dedup_run {
  uint64_t head_last;      /* the run's first sequence + 63 (saturated); 0: no run */
  uint64_t head_window[2]; /* bit i of word w: sequence head_last - 64 w - i applied */
  uint64_t last_seq;       /* the run's highest sequence applied */
  uint64_t window;         /* bit i: sequence last_seq - i applied */
};

struct tally_dedup {
  struct tally_dedup_run runs[TALLY_DEDUP_RUNS]; /* newest first */
};

/* One reliable producer's dedup record: 192 bytes, three cache lines. */
struct tally_producer {
  uint64_t producer;    /* 0: empty */
  uint32_t crc;         /* over index, producer and dedup */
  uint32_t reserved;
  struct tally_dedup dedup;
  uint64_t padding[7];
} __attribute__((aligned(64)));
static_assert(sizeof(struct tally_producer) == TALLY_PRODUCER_SIZE, "producer layout");

struct tally_log_entry {
  uint32_t slot;
  uint32_t reserved;
  int64_t value; /* absolute value of the slot after this entry */
};

/* The redo record of the batch being applied (one per shard). */
struct tally_batch_log {
  uint64_t state;          /* TALLY_LOG_STATE_*; stored last */
  uint32_t crc;            /* over every field below, entries[0..count) */
  uint32_t count;
  uint64_t producer;
  uint64_t seq;
  uint32_t producer_slot;
  uint32_t reserved;
  struct tally_dedup producer_dedup; /* dedup state after the batch */
  struct tally_log_entry entries[TALLY_BATCH_PAIRS_MAX];
  /*
   * The shard's batch sequence after this batch (header batch_seq + 1):
   * under the crc, stored by the apply into the header after the values and
   * the producer record. Always at +1184, whatever count is.
   */
  uint64_t batch_seq;
  /*
   * The compensation shard: TALLY_UNDO_HISTORY_COMPLETE while its journal
   * holds every undo this shard ever made (set when formatted; cleared for
   * good when undone records arrive without their journal entries: a
   * restore from the peers, a log replay). While it is set and the journal
   * has not wrapped, the journal alone tells whether a batch was undone
   * (tally_shard_undo_history_complete). 0 in stores of earlier builds
   * (this word was padding): not complete.
   */
  uint64_t undo_history;
} __attribute__((aligned(64)));

/*
 * The journal: the last TALLY_JOURNAL_ENTRIES reliable batches this shard
 * applied, with their deltas and attempts, in a ring. Written by the owning
 * lcore before the batch's redo record (so every applied batch has its
 * entry) and marked applied after the batch is (recovery marks it when it
 * replays the redo record); only applied entries are ever used. The cluster
 * thread reads entries (checksum-verified) to undo a batch another node also
 * applied. See docs/cluster.md, "Cross-node dedup".
 */
struct tally_journal_pair {
  uint32_t slot;     /* the shard's slot the delta went to */
  uint32_t reserved;
  int64_t delta;
};

struct tally_journal_entry {
  uint64_t producer; /* 0: never written */
  uint64_t seq;
  uint32_t count;
  uint32_t crc;      /* over producer, seq, count, attempt and pairs[0..count) */
  uint32_t attempt;  /* the batch's attempt (tally_wire_batch) */
  uint32_t applied;  /* 1 once the batch is applied (set after it, and by recovery's replay) */
  uint64_t reserved[4];
  struct tally_journal_pair pairs[TALLY_BATCH_PAIRS_MAX];
} __attribute__((aligned(64)));
static_assert(sizeof(struct tally_journal_entry) == 64u + 16u * TALLY_BATCH_PAIRS_MAX,
  "journal entry layout");

/*
 * A claim: this shard applied (producer, seq) from a resend (attempt >= 1).
 * Claims are kept in a ring (TALLY_CLAIMS_ENTRIES, apart from the journal,
 * so that a long partition does not push them out) until replication has
 * delivered them to every peer: a peer that applied the same batch with a
 * lower attempt undoes its apply (docs/cluster.md). Written by the owning
 * lcore after the batch is applied.
 */
struct tally_claim {
  uint64_t producer; /* 0: never written */
  uint64_t seq;
  uint32_t attempt;
  uint32_t crc;      /* over producer, seq, attempt and the ring position */
  uint64_t position; /* claims_next when written */
};
static_assert(sizeof(struct tally_claim) == 32u, "claim layout");

/* First 4 KiB of a shard region. Immutable part, then a mutable line. */
struct tally_shard_header {
  uint64_t magic;
  uint32_t shard_index;
  uint32_t slots_count;
  uint32_t counters_max;
  uint32_t producer_slots_count;
  uint32_t producers_max;
  uint32_t header_crc; /* over the fields above */
  uint8_t reserved[32];
  /* Mutable, written by the owning lcore; recomputed by recovery. */
  uint32_t counters_used; /* published slots, quarantined included */
  uint32_t producers_used;
  /*
   * Replica tables only (a peer's contribution held here): the origin's
   * replication sequence number this table holds, written by the
   * replication thread after the values it covers are persisted.
   */
  uint64_t held_seq;
  /*
   * Replica tables only: the origin's scan stamp (unix microseconds) this
   * table is complete up to — every value the origin had at that scan is
   * here. Comparable between replicas (held_seq, per link, is not): a
   * restore takes the copy with the highest held_scan.
   */
  uint64_t held_scan;
  /* Journal entries ever written; the next goes to journal_next % entries. */
  uint64_t journal_next;
  /* Claims ever written; the next goes to claims_next % TALLY_CLAIMS_ENTRIES. */
  uint64_t claims_next;
  /*
   * Reliable batches this shard has applied since it was formatted (1, 2,
   * 3, ...), written (release) by tally_shard_log_apply after the batch's
   * values and producer record, so it never counts a batch the image lacks;
   * log replay sets it too. The disk tier's records carry it: a record whose
   * batch_seq is <= this one is already in the image (docs/store-layout.md,
   * "Log mode").
   */
  uint64_t batch_seq;
  /*
   * The compensation shard: TALLY_UNDO_HISTORY_COMPLETE while its journal
   * holds every undo this shard ever made (set when formatted; cleared for
   * good when undone records arrive without their journal entries: a
   * restore from the peers, a log replay). While it is set and the journal
   * has not wrapped, the journal alone tells whether a batch was undone
   * (tally_shard_undo_history_complete). 0 in stores of earlier builds
   * (this word was padding): not complete.
   */
  uint64_t undo_history;
} __attribute__((aligned(64)));

/* What recovery found in one shard. */
struct tally_shard_recovery {
  uint32_t log_replayed;          /* a valid redo record was re-applied */
  uint32_t log_discarded;         /* a redo record failed its checksum */
  uint32_t counters_used;
  uint32_t slots_quarantined;     /* identity or value checksum failed */
  uint32_t slots_torn;            /* unpublished slot with stray bytes, cleared */
  uint32_t producers_used;
  uint32_t producers_quarantined; /* producer record checksum failed */
};

/* The DRAM handle of a shard: pointers into the mapping plus geometry. */
struct tally_shard {
  struct tally_shard_header *header;
  struct tally_batch_log *log;
  struct tally_slot *slots;
  struct tally_producer *producers;
  struct tally_journal_entry *journal; /* TALLY_JOURNAL_ENTRIES */
  struct tally_claim *claims;          /* TALLY_CLAIMS_ENTRIES */
  uint32_t index;
  uint32_t slots_count;     /* power of two */
  uint32_t counters_max;    /* < slots_count * 3/4 */
  uint32_t producer_slots_count; /* power of two */
  uint32_t producers_max;
  /* The store's name hash key (superblock); zero until tally_shard_set_name_key. */
  struct tally_name_key name_key;
  /*
   * Longest probe a slot of this table sits at (0: at its home slot), kept by
   * the writer (relaxed store; recovery recomputes it); read by any thread for
   * /metrics. Never above TALLY_SLOT_PROBE_MAX.
   */
  uint32_t probe_max;
  /*
   * DRAM only, the shard's writer: published slots of class statsd
   * (recomputed by recovery), reliable takeovers of statsd counters, and
   * statsd values a reliable batch dropped rather than overflow on them.
   */
  uint32_t statsd_used;
  uint64_t statsd_taken_over;
  uint64_t statsd_values_dropped;
  /*
   * Fine-grained persistence (real pmem, per-burst mode): flush a range and
   * drain. NULL when the store is group-committed by the control plane.
   */
  void (*flush)(const void *address, size_t size);
  void (*drain)(void);
  /*
   * DRAM only (issue 12): a bit per slot, set by the shard's writer when the
   * slot's value changes (shard_internal.h), taken and cleared by the
   * cluster thread's scan (tally_shard_dirty_take). NULL: not tracked (the
   * scan reads the whole shard). tally_shard_dirty_open after recovery.
   */
  uint64_t *dirty;
};

/* ---- Dirty slots (issue 12): which values changed since the scan took them ---- */

/* Starts tracking (every bit clear); 0, or -1 (not tracked) if out of memory. */
int tally_shard_dirty_open(struct tally_shard *shard);
void tally_shard_dirty_close(struct tally_shard *shard);

/* Words of the bitmap: slot i is bit i % 64 of word i / 64. */
static inline uint32_t tally_shard_dirty_words(const struct tally_shard *shard)
{
  return (shard->slots_count + 63u) / 64u;
}

/*
 * Takes word w's dirty bits and clears them (the cluster thread): an
 * acquiring exchange, so each value marked before is read as stored, or
 * later. A clean word costs a plain load.
 */
static inline uint64_t tally_shard_dirty_take(struct tally_shard *shard, uint32_t w)
{
  assert(shard->dirty != NULL && w < tally_shard_dirty_words(shard));
  if (__atomic_load_n(&shard->dirty[w], __ATOMIC_RELAXED) == 0) return 0;
  return __atomic_exchange_n(&shard->dirty[w], 0, __ATOMIC_ACQ_REL);
}

/* ---- Attaching (geometry and checksums: store_format.h) ---------------- */

/*
 * Points the handle into a region of tally_shard_region_size() bytes. With
 * format, writes a fresh header (the region must be zeroed); without, checks
 * the header (magic, crc, geometry) and returns -1 if it does not match.
 */
int tally_shard_attach(struct tally_shard *shard, void *region, uint32_t index,
  uint32_t counters_max, uint32_t producers_max, bool format);

/* Sets the key names hash under in this table (the store's; before any use). */
void tally_shard_set_name_key(struct tally_shard *shard, const struct tally_name_key *key);

/* A name's index hash in this table (its store's key). Any thread. */
static inline uint32_t tally_shard_name_hash(const struct tally_shard *shard, const char *name,
  size_t name_len)
{
  return tally_name_hash(&shard->name_key, name, name_len);
}

/* ---- Recovery (single-threaded, before the lcores start) ---------------- */

void tally_shard_recover(struct tally_shard *shard, struct tally_shard_recovery *report);

/* ---- Reads (any thread) ---------------------------------------------- */

/* Slot index of the published, healthy slot holding name, or -1. */
int64_t tally_shard_find(const struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash);
/* Whether slot i is published and healthy (readable). */
bool tally_shard_slot_readable(const struct tally_shard *shard, uint32_t slot_index);
/* Current value of a published slot. */
int64_t tally_shard_slot_value(const struct tally_shard *shard, uint32_t slot_index);
/* Published slots (quarantined included). */
uint32_t tally_shard_counters_used(const struct tally_shard *shard);
/* Longest probe a slot of the table sits at (< TALLY_SLOT_PROBE_MAX). */
uint32_t tally_shard_probe_max(const struct tally_shard *shard);

/* ---- Writes (the owning lcore only) ----------------------------------- */

/*
 * Traffic classes as bulkheads (issue 14, C1): what statsd may do to the
 * shard's table. statsd creates names only while fewer than
 * statsd_counters_max of the shard's slots are statsd's (the rest is kept
 * for reliable producers), and adds to a counter a reliable producer owns
 * only if writes_reliable.
 */
struct tally_statsd_rights {
  uint32_t statsd_counters_max; /* <= the shard's counters_max */
  bool writes_reliable;
};

/*
 * A statsd line: like tally_shard_add, but a new name beyond statsd's share
 * gets TALLY_REASON_STATSD_SHARE_FULL, and a reliable-owned counter
 * TALLY_REASON_STATSD_RELIABLE_COUNTER unless rights->writes_reliable.
 * Names it creates are of class statsd.
 */
enum tally_reason tally_shard_add_statsd(struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, int64_t delta, const struct tally_statsd_rights *rights);

/*
 * A reliable write to published slot i: a statsd counter becomes a reliable
 * producer's (counted in statsd_taken_over); statsd may no longer write it
 * unless ingest.statsd_writes_reliable. Idempotent. The slot's writer only
 * (the lcore; the replication thread for a replica table).
 */
void tally_shard_slot_take_over(struct tally_shard *shard, uint32_t slot_index);

/* The class of a published slot (TALLY_CLASS_RELIABLE for any value but statsd's). */
uint8_t tally_shard_slot_class(const struct tally_shard *shard, uint32_t slot_index);

/*
 * Adds delta to the counter name, creating it when new. Returns TALLY_OK,
 * TALLY_REASON_COUNTERS_FULL (new name, table full),
 * TALLY_REASON_PROBE_LIMIT (new name, no empty slot within the probe bound) or
 * TALLY_REASON_COUNTER_OVERFLOW (the sum would leave int64; nothing changes).
 */
enum tally_reason tally_shard_add(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t delta);

/*
 * Applies a reliable batch exactly once: dedup on (producer, seq), every
 * pair or none (overflow or a full table rejects the whole batch), through
 * the redo log. Returns the ack status; for a rejection *reason is the
 * counted reason (TALLY_OK for APPLIED and DUPLICATE).
 */
enum tally_ack_status tally_shard_apply_batch(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason);

/*
 * The same for the compensation shard (the cluster thread): undos of one
 * producer come in any order (claims from several claimants, each delayed its
 * own way), so (producer, seq) is checked against every run of the record,
 * not only the newest one's tail (tally_dedup_plan_any_order). STALE only
 * where the record cannot tell whether seq was undone.
 */
enum tally_ack_status tally_shard_apply_undo(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason);

/*
 * An undo the record cannot tell about (tally_shard_apply_undo said STALE)
 * that the journal proves was never made (tally_shard_undo_history_complete,
 * and no journal entry of it): applied, journaled, and the record left as it
 * is. A repeated claim then finds the journal entry (the journal alone is
 * what dedups it); the record goes on answering STALE for it, so a store
 * restored from its copy never takes the batch as counted here.
 */
enum tally_ack_status tally_shard_apply_undo_journaled(struct tally_shard *shard,
  const struct tally_wire_batch *batch, enum tally_reason *reason);

/* Whether the journal holds every undo this (compensation) shard made. */
bool tally_shard_undo_history_complete(const struct tally_shard *shard);
/* Undone records arrived without their journal entries: never complete again. */
void tally_shard_undo_history_lost(struct tally_shard *shard);

/*
 * Replica tables (single writer: the replication thread): sets the counter
 * to an absolute value, creating it when new. TALLY_OK,
 * TALLY_REASON_COUNTERS_FULL or TALLY_REASON_PROBE_LIMIT.
 */
enum tally_reason tally_shard_set(struct tally_shard *shard, const char *name, uint32_t name_len,
  uint32_t hash, int64_t value);
/*
 * The same, keeping the counter's class: a reliable counter becomes (or
 * stays) reliable, a statsd one is created as statsd and never takes a slot
 * beyond statsd_counters_max (TALLY_REASON_STATSD_SHARE_FULL): restore and
 * replica tables keep the bulkhead (a restored store is not filled with
 * statsd names).
 */
enum tally_reason tally_shard_set_class(struct tally_shard *shard, const char *name,
  uint32_t name_len, uint32_t hash, int64_t value, uint8_t owner_class,
  uint32_t statsd_counters_max);
/* The origin sequence a replica table holds, and advancing it. */
uint64_t tally_shard_held_seq(const struct tally_shard *shard);
void tally_shard_set_held_seq(struct tally_shard *shard, uint64_t seq);
uint64_t tally_shard_held_scan(const struct tally_shard *shard);
void tally_shard_set_held_scan(struct tally_shard *shard, uint64_t scan);

/* ---- Log mode: a batch's effect, logged and replayed (shard_replay.c) ---- */

/* One pair of an applied batch: its name, its delta, the slot's value after it. */
struct tally_shard_effect_pair {
  int64_t delta;
  int64_t value;
  uint8_t name_len;
  char name[TALLY_NAME_LEN_MAX];
};

/*
 * What one applied reliable batch did to one shard, self-contained (names
 * copied): what the disk tier's log record carries. Replaying it sets every
 * pair's slot to its value, the producer's record to dedup and the shard's
 * batch_seq to batch_seq, so replaying it twice, or onto an image that
 * already holds it, changes nothing (docs/store-layout.md, "Log mode").
 */
struct tally_shard_effect {
  uint64_t producer;
  uint64_t seq;
  uint64_t batch_seq;     /* the shard's batch_seq after this batch (>= 1) */
  uint16_t attempt;
  uint16_t shard;
  uint32_t count;         /* 1..TALLY_BATCH_PAIRS_MAX */
  struct tally_dedup dedup; /* the producer's state after the batch */
  struct tally_shard_effect_pair pairs[TALLY_BATCH_PAIRS_MAX];
};

/* The shard's batch sequence (acquire; any thread). */
uint64_t tally_shard_batch_seq(const struct tally_shard *shard);

/*
 * The owning lcore, right after tally_shard_apply_batch answered APPLIED for
 * batch: its effect (values and dedup state from the cleared redo record,
 * names and deltas from batch). No syscall, no allocation.
 */
void tally_shard_effect_of_last(const struct tally_shard *shard,
  const struct tally_wire_batch *batch, struct tally_shard_effect *effect);

/*
 * Recovery, single-threaded: redoes effect onto the shard if its batch_seq
 * is above the shard's (returns TALLY_OK and *replayed true), skips it
 * otherwise (TALLY_OK, *replayed false). TALLY_REASON_COUNTERS_FULL,
 * PROBE_LIMIT or PRODUCERS_FULL if the image cannot hold it (nothing is half-done: the
 * shard's batch_seq is stored last, so a replay cut short is redone whole).
 */
enum tally_reason tally_shard_replay(struct tally_shard *shard,
  const struct tally_shard_effect *effect, bool *replayed);

/*
 * Recovery, single-threaded: the effects of the shard's last `count`
 * applied batches, rebuilt from its journal, oldest first, each with the
 * slots' and the producer's *current* values (what the image holds now:
 * replaying them in order onto an older copy ends in this image's state).
 * visit returns non-zero to stop. -1 if the journal no longer holds that
 * many applied batches.
 */
int tally_shard_effects_from_journal(const struct tally_shard *shard, uint64_t count,
  int (*visit)(void *context, const struct tally_shard_effect *effect), void *context);

/*
 * Recovery from a checkpoint (a fuzzy copy), on the loaded bytes before the
 * store's own recovery: a slot whose name checks but whose value and
 * value_check were copied at different moments gets its value_check
 * recomputed, and a producer record whose fields were copied at different
 * moments its crc, instead of being quarantined (the log replay that
 * follows rewrites every one a batch touched during the copy; a statsd
 * slot keeps a value it held during the copy). Returns how many.
 */
uint32_t tally_shard_settle_copy(struct tally_shard *shard);
/*
 * Recovery from a checkpoint: the first log record after the checkpoint's
 * begin_lsn for this shard has batch_seq first; the copied header may say
 * more (its fuzzy slots may lack those batches), so batch_seq is set to
 * first - 1 and every record from there is redone. False (nothing changed)
 * if the shard's batch_seq is below first - 1: the log has a gap.
 */
bool tally_shard_rewind(struct tally_shard *shard, uint64_t first);

/* ---- Cross-node dedup (docs/cluster.md) --------------------------------- */

/* Whether a window (last_seq, window) says seq was applied. */
static inline bool tally_dedup_has(uint64_t last_seq, uint64_t window, uint64_t seq)
{
  if (seq > last_seq) return false;
  uint64_t distance = last_seq - seq;
  return distance < TALLY_DEDUP_WINDOW && ((window >> distance) & 1u) != 0;
}

/* A window moved forward to a later last_seq (bits that fall off are lost). */
static inline uint64_t tally_dedup_shift(uint64_t last_seq, uint64_t window, uint64_t to)
{
  if (to < last_seq) return 0; /* callers only move forward */
  uint64_t shift = to - last_seq;
  return shift >= TALLY_DEDUP_WINDOW ? 0 : window << shift;
}

/* Whether a run's head (its first sequences and the window below) has seq. */
static inline bool tally_dedup_head_has(const struct tally_dedup_run *run, uint64_t seq)
{
  if (seq > run->head_last) return false;
  uint64_t distance = run->head_last - seq;
  if (distance >= 2u * TALLY_DEDUP_WINDOW) return false;
  return ((run->head_window[distance / 64u] >> (distance % 64u)) & 1u) != 0;
}

/* Whether a record says seq was applied (in some run's head or tail). */
static inline bool tally_dedup_applied(const struct tally_dedup *dedup, uint64_t seq)
{
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    const struct tally_dedup_run *run = &dedup->runs[r];
    if (run->head_last == 0) break;
    if (tally_dedup_has(run->last_seq, run->window, seq) || tally_dedup_head_has(run, seq)) {
      return true;
    }
  }
  return false;
}

/*
 * Whether seq is in the head of one of the record's runs (among the first of
 * that run); *head_last gets that run's head_last.
 */
static inline bool tally_dedup_in_head(const struct tally_dedup *dedup, uint64_t seq,
  uint64_t *head_last)
{
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    const struct tally_dedup_run *run = &dedup->runs[r];
    if (run->head_last == 0) break;
    if (tally_dedup_head_has(run, seq)) {
      *head_last = run->head_last;
      return true;
    }
  }
  return false;
}

/* Marks seq in a run's head, if it falls in it. */
static inline void tally_dedup_mark_head(struct tally_dedup_run *run, uint64_t seq)
{
  if (seq > run->head_last) return;
  uint64_t distance = run->head_last - seq;
  if (distance >= 2u * TALLY_DEDUP_WINDOW) return;
  run->head_window[distance / 64u] |= 1ull << (distance % 64u);
}

/*
 * Whether a record read from the store can be a dedup state: a current run,
 * runs only at the front (an empty one ends them), each holding its last
 * sequence (window bit 0). What the lcores and merges assert; recovery
 * quarantines a record (or discards a redo record) that is not, however
 * good its checksum (issue 14, L3).
 */
static inline bool tally_dedup_valid(const struct tally_dedup *dedup)
{
  if (dedup->runs[0].head_last == 0) return false;
  bool ended = false;
  for (uint32_t r = 0; r < TALLY_DEDUP_RUNS; r++) {
    const struct tally_dedup_run *run = &dedup->runs[r];
    if (run->head_last == 0) {
      ended = true;
      continue;
    }
    if (ended || (run->window & 1u) == 0) return false;
  }
  return true;
}

/* A run that starts with seq. */
static inline struct tally_dedup_run tally_dedup_run_start(uint64_t seq)
{
  uint64_t head_last = seq > UINT64_MAX - (TALLY_DEDUP_WINDOW - 1u) ? UINT64_MAX :
    seq + (TALLY_DEDUP_WINDOW - 1u);
  struct tally_dedup_run run = { .head_last = head_last, .last_seq = seq, .window = 1u };
  tally_dedup_mark_head(&run, seq);
  return run;
}

/* Starts a new current run with seq; the oldest remembered run is dropped. */
static inline void tally_dedup_new_run(struct tally_dedup *dedup, uint64_t seq)
{
  for (uint32_t r = TALLY_DEDUP_RUNS - 1u; r > 0; r--) dedup->runs[r] = dedup->runs[r - 1];
  dedup->runs[0] = tally_dedup_run_start(seq);
}

/*
 * What a record of undos (the compensation shard's, whose runs are made in
 * any order) can tell of seq: undone (in a run's tail or head), never undone
 * (above every run, between two, inside a run's tail window or head with
 * its bit clear, or below the runs while none was ever dropped), or unknown
 * (between a run's head and its tail, or below the oldest run once one may
 * have been dropped). The same decision tally_shard_apply_undo takes, without
 * writing: exact wherever it answers SEEN or UNSEEN (docs/cluster.md, "The
 * undone set is exact where it answers"). An empty record: UNSEEN.
 */
enum tally_dedup_knows { TALLY_DEDUP_SEEN, TALLY_DEDUP_UNSEEN, TALLY_DEDUP_UNKNOWN };
enum tally_dedup_knows tally_dedup_decide(const struct tally_dedup *undone, uint64_t seq);

/*
 * Reads producer's dedup record from any thread: checksum-verified (a record
 * being rewritten is read again, a few times). false if the shard has no
 * intact record of the producer.
 */
bool tally_shard_producer_read(const struct tally_shard *shard, uint64_t producer,
  struct tally_dedup *dedup);

/*
 * The record in producer slot `slot` (scans walk 0..producer_slots_count):
 * false if the slot is empty, a tombstone, or fails its checksum. Any thread.
 */
bool tally_shard_producer_at(const struct tally_shard *shard, uint32_t slot, uint64_t *producer,
  struct tally_dedup *dedup);

/*
 * Replica tables (single writer: the replication thread), and a restoring
 * node's own shards: merges an origin's record of producer into this table's.
 * Runs are matched by their head_last (their first sequence): the same run's
 * heads are OR'd and tails united within the later window; of all runs the
 * TALLY_DEDUP_RUNS latest are kept. TALLY_OK or TALLY_REASON_PRODUCERS_FULL.
 */
enum tally_reason tally_shard_producer_merge(struct tally_shard *shard, uint64_t producer,
  const struct tally_dedup *dedup);

/*
 * Copies the newest intact, applied journal entry of (producer, seq) into
 * *entry; any thread (an entry being overwritten fails its checksum and is
 * skipped).
 */
bool tally_shard_journal_find(const struct tally_shard *shard, uint64_t producer, uint64_t seq,
  struct tally_journal_entry *entry);
/* Journal entries ever written (any thread; acquire). */
uint64_t tally_shard_journal_next(const struct tally_shard *shard);
/* The producer and seq the entry at journal position `position` names (unverified: an index hint). */
void tally_shard_journal_key_at(const struct tally_shard *shard, uint64_t position,
  uint64_t *producer, uint64_t *seq);
/*
 * The entry at journal position `position` if it is still in the ring, names
 * (producer, seq), and passes every check tally_shard_journal_find makes.
 */
bool tally_shard_journal_read_at(const struct tally_shard *shard, uint64_t position,
  uint64_t producer, uint64_t seq, struct tally_journal_entry *entry);

/*
 * Appends the claim of (producer, seq, attempt), 1 <= attempt <=
 * TALLY_CLAIM_KEEPER, at claims_next and advances claims_next. The shard's
 * only writer: its lcore, after the batch's journal entry is marked applied;
 * for the compensation shard, the cluster thread (keeper claims). Flushed,
 * not drained.
 */
void tally_shard_claim_append(struct tally_shard *shard, uint64_t producer, uint64_t seq,
  uint32_t attempt);
/* Claims written so far (any thread; acquire). */
uint64_t tally_shard_claims_next(const struct tally_shard *shard);
/*
 * Copies the claim written at ring position `position` (< claims_next, and
 * not yet overwritten: claims_next - position <= TALLY_CLAIMS_ENTRIES);
 * false if it fails its checksum or names another position. Any thread.
 */
bool tally_shard_claim_at(const struct tally_shard *shard, uint64_t position,
  struct tally_claim *claim);

#endif
