/*
 * persister_log.h — log mode (store.persist = log): the image is a mapping
 * on tmpfs or hugetlbfs that is never persisted while tallyd runs; every
 * applied reliable batch reaches the write-ahead log in store.log_dir
 * (control/persist/wal.h) through its lcore's ring (log_ring.h), and its
 * ack waits for the fdatasync of the group that holds its record.
 *
 * Start-up (before the lcores and the persister): tally_log_open recovers —
 * the image if it survived, else the newest checkpoint loaded into a new one
 * (persister_ckpt.h), else a new one — and reconciles it with the log: records the image lacks are
 * redone, records it holds skipped by its shards' batch_seq, batches it
 * holds that the log lost with a killed process are logged again from the
 * journal. Then the persister thread runs tally_log_loop.
 *
 * Thread: open and close at start-up and shutdown (main thread); the loop
 * and the round on the persister; metrics and ready on the control and HTTP
 * threads (relaxed loads of tally_log_stats).
 */
#ifndef TALLY_PERSISTER_LOG_H
#define TALLY_PERSISTER_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "appliance.h"
#include "out.h"

/* Start-up, after the store is open: recovery, then the log open for appending. 0 or -1. */
int tally_log_open(struct tally_appliance *appliance, char *error, size_t error_size);
/* Persister: drain every lcore's ring, append, commit once, publish durable_seq. */
bool tally_log_round(struct tally_appliance *appliance);
/* Persister: appends and commits the marks record (a checkpoint begins). */
bool tally_log_marks(struct tally_appliance *appliance);
/* Persister: a checkpoint at the next tick; tick: one checkpoint step (persister_ckpt.h). */
void tally_log_checkpoint_request(struct tally_appliance *appliance);
bool tally_log_checkpoint_tick(struct tally_appliance *appliance);
/*
 * Start-up thread, with the persister running: asks for a checkpoint now and
 * waits until it is durable. A cluster node in log mode takes one before its
 * cluster thread and lcores start: what the image holds beyond the log (a
 * surviving image's cluster state, a restore from the peers) is then on disk
 * before anything new is acked. 0, or -1 with one line in error.
 */
int tally_log_checkpoint_wait(struct tally_appliance *appliance, char *error, size_t error_size);
/* Persister: rounds until persister_quit, then a last one. */
void tally_log_loop(struct tally_appliance *appliance);
/* Shutdown, after the persister stopped. */
void tally_log_close(struct tally_appliance *appliance);
/* HTTP thread: the log's Prometheus figures. */
void tally_log_metrics(struct tally_appliance *appliance, struct tally_out *out);
/* Control thread: `tallyctl stats` lines. */
void tally_log_stats_lines(struct tally_appliance *appliance, struct tally_out *out);
const char *tally_log_source_name(uint64_t source);

#endif
