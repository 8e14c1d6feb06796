/*
 * cluster_log.h — log mode on a cluster node: what the cluster thread
 * changes in the image outside the lcores' shards (a peer's list committed
 * to its replica table, an undo in the compensation shard, a keeper claim)
 * goes to the write-ahead log as cluster records (wal_cluster.h) through the
 * persister's queue (wal_queue.h), and the replication ACK that tells the
 * peer this node holds the list waits until the persister made the record
 * durable (stream_in.c defers it; the thread's loop sends it). Their replay
 * at start-up onto a rebuilt image is persister_log.c's.
 * docs/store-layout.md, "Log mode on a cluster node".
 *
 * A session (begin .. end) brackets every change: begin enters the queue
 * (checkpoints wait for the session to end) and reserves a slot, each
 * change to the image is followed by its item before the session ends,
 * and a full slot is published (its changes are all written) before the
 * next is reserved, so the thread waits for room only with nothing
 * unlogged. Outside log mode (no queue attached) every call is a no-op.
 *
 * Thread: the cluster thread.
 */
#ifndef TALLY_CLUSTER_LOG_H
#define TALLY_CLUSTER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication_wire.h"
#include "shard.h"
#include "wal_cluster.h"
#include "wal_queue.h"

struct tally_cluster_log {
  struct tally_wal_queue *queue;   /* the persister's; NULL: not log mode */
  struct tally_wal_cluster_writer writer;
  bool reserved;                   /* a slot is reserved: writer writes into it */
  bool session;                    /* between begin and end */
  uint64_t ticket;                 /* of the last slot published */
  uint64_t records;                /* slots published (figures, read relaxed) */
  uint64_t items;
  uint64_t acks_deferred;          /* ACKs that waited for the log */
  /* What the last scan read is durable once these are (tally_cluster_log_scan_*). */
  uint64_t scan_need[TALLY_LCORES_MAX]; /* per lcore: applied_seq after the scan's reads */
  uint64_t scan_ticket;            /* the cluster thread's own last change (its undos) */
  uint64_t rounds_held;            /* rounds held back until the scan they carry was durable */
};

void tally_cluster_log_attach(struct tally_cluster_log *log, struct tally_wal_queue *queue);
static inline bool tally_cluster_log_on(const struct tally_cluster_log *log)
{
  return log->queue != NULL;
}
void tally_cluster_log_begin(struct tally_cluster_log *log);
/* Ends the session: its last slot published. The ticket that covers every change so far. */
uint64_t tally_cluster_log_end(struct tally_cluster_log *log);
/* Whether the change of ticket is durable. */
bool tally_cluster_log_durable(const struct tally_cluster_log *log, uint64_t ticket);

/*
 * A scan read this node's records and values, which may name batches whose
 * records are still on their way to the disk: a peer holding them would
 * answer a resend of such a batch DUPLICATE, and a power loss here would
 * lose it. So, after the scan's reads, note what they can hold (each lcore
 * waits for its apply in flight: microseconds), and send no round until
 * that is durable (one group commit).
 */
struct tally_appliance;
void tally_cluster_log_scan_mark(struct tally_cluster_log *log, struct tally_appliance *appliance);
bool tally_cluster_log_scan_durable(struct tally_cluster_log *log,
  const struct tally_appliance *appliance);

/*
 * Items (in a session). origin: a peer's replica table, 0 the compensation
 * shard. A value carries its counter's class (TALLY_CLASS_*): a replay after a
 * power loss gives a reliable counter its class back (C1).
 */
void tally_cluster_log_value(struct tally_cluster_log *log, uint16_t origin, const char *name,
  uint32_t name_len, int64_t value, uint8_t owner_class);
void tally_cluster_log_record(struct tally_cluster_log *log, uint16_t origin, uint64_t producer,
  const struct tally_dedup *dedup);
void tally_cluster_log_held(struct tally_cluster_log *log, uint16_t origin, uint64_t held_seq,
  uint64_t held_scan);
void tally_cluster_log_claim(struct tally_cluster_log *log, uint64_t position, uint64_t producer,
  uint64_t seq, uint64_t attempt);
/* Makes room for bytes of items in one record (an undo's items stay together). */
void tally_cluster_log_room(struct tally_cluster_log *log, uint32_t bytes);

#endif
