/*
 * persister_ckpt.h — log mode's checkpoints (docs/store-layout.md, "Log
 * mode: checkpoints"): every store.checkpoint_interval_ms the persister
 * copies the image into a checkpoint file (control/persist/checkpoint.h)
 * in bounded steps between its log rounds, then cuts the log behind the
 * oldest checkpoint kept; at start-up with the image gone, the newest valid
 * checkpoint is loaded into the new image and the log replayed after it.
 *
 * Thread: create, load and destroy at start-up and shutdown (main thread);
 * tick on the persister; metrics on the control and HTTP threads (relaxed
 * loads of tally_log_stats).
 */
#ifndef TALLY_PERSISTER_CKPT_H
#define TALLY_PERSISTER_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "appliance.h"
#include "disk_io.h"
#include "out.h"
#include "wal.h"

struct tally_ckpt;

/* The writer, in the log's directory. NULL with one line in error. */
struct tally_ckpt *tally_ckpt_create(struct tally_appliance *appliance, struct tally_disk *disk,
  char *error, size_t error_size);
void tally_ckpt_destroy(struct tally_ckpt *ckpt);

/*
 * Start-up, the image just created (empty): loads the newest valid
 * checkpoint into it and reopens the store on those bytes. *from_lsn: the
 * first log record to replay (1 if there is no checkpoint). 0, or -1 with
 * one line in error (checkpoints of another geometry, none valid).
 */
int tally_ckpt_load(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  uint64_t *from_lsn, char *error, size_t error_size);

/*
 * Persister, after each log round: begins a checkpoint when one is due,
 * else writes one step of the one in flight, else finishes it (the rings
 * drained and committed once more) and cuts the log. Returns true if it
 * did any work.
 */
bool tally_ckpt_tick(struct tally_ckpt *ckpt, struct tally_appliance *appliance,
  struct tally_wal *wal);

/* Persister: the next tick begins a checkpoint (if none is in flight). */
void tally_ckpt_request(struct tally_ckpt *ckpt);

void tally_ckpt_metrics(struct tally_appliance *appliance, struct tally_out *out);
void tally_ckpt_stats_lines(struct tally_appliance *appliance, struct tally_out *out);

#endif
