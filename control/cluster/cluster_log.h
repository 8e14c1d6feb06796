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
 * unlogged. Outside log mode every call is a no-op (log == NULL).
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

/* Items (in a session). origin: a peer's replica table, 0 the compensation shard. */
void tally_cluster_log_value(struct tally_cluster_log *log, uint16_t origin, const char *name,
  uint32_t name_len, int64_t value);
void tally_cluster_log_record(struct tally_cluster_log *log, uint16_t origin, uint64_t producer,
  const struct tally_dedup *dedup);
void tally_cluster_log_held(struct tally_cluster_log *log, uint16_t origin, uint64_t held_seq,
  uint64_t held_scan);
void tally_cluster_log_claim(struct tally_cluster_log *log, uint64_t position, uint64_t producer,
  uint64_t seq, uint64_t attempt);
/* Makes room for bytes of items in one record (an undo's items stay together). */
void tally_cluster_log_room(struct tally_cluster_log *log, uint32_t bytes);

#endif
