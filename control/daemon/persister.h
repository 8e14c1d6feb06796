/*
 * persister.h — the group-commit thread: every store.commit_interval_ms it
 * notes how far each lcore has applied, persists the store, then tells each
 * lcore that everything up to the noted point is durable (so its acks may
 * go). In per-burst mode the lcores persist themselves and this thread only
 * keeps the figures.
 */
#ifndef TALLY_PERSISTER_H
#define TALLY_PERSISTER_H

#include "appliance.h"

/* Starts the thread. Returns 0 or -1 (errno). */
int tally_persister_start(struct tally_appliance *appliance);
/* Stops it after one last commit. */
void tally_persister_stop(struct tally_appliance *appliance);
/* One commit round (also used by tests and at shutdown). */
void tally_persister_commit(struct tally_appliance *appliance);

#endif
