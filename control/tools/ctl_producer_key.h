/*
 * ctl_producer_key.h — tallyctl's producer-key command (ctl_producer_key.c):
 * writes one producer's derived key (ingest.producer_keys = derived, issue
 * 14 M2) to a new 0600 file, derived locally from the config file. The
 * master key never crosses a socket or a command line.
 * Thread: tallyctl's one thread.
 */
#ifndef TALLY_CTL_PRODUCER_KEY_H
#define TALLY_CTL_PRODUCER_KEY_H

#include <stdbool.h>

#include "config.h"

/* True iff word names this command. */
bool tally_ctl_producer_key_command(const char *word);

/*
 * Runs "producer-key ID [--config FILE] --out FILE" (argv[0] is the
 * command); config is the one -c loaded (NULL without -c, then --config is
 * required). Returns the exit status: 0 ok, 3 failed, 64 usage.
 */
int tally_ctl_producer_key_main(int argc, char **argv, const struct tally_config *config);

#endif
