/*
 * ctl_backup.h — tallyctl's backup, backup verify and restore commands
 * (ctl_backup.c). They work on files, not over the management socket.
 * Thread: tallyctl's one thread.
 */
#ifndef TALLY_CTL_BACKUP_H
#define TALLY_CTL_BACKUP_H

#include <stdbool.h>

#include "config.h"

/* True iff argv[0] names one of these commands. */
bool tally_ctl_backup_command(const char *word);

/*
 * One request over the management socket (tallyctl.c): the answer's status
 * (0 ok), its body into body; -1 when there is no answer.
 */
int tally_ctl_ask(const char *socket_path, const char *line, char *body, size_t body_size);

/*
 * Runs "backup ...", "backup verify ..." or "restore ..." (argv[0] is the
 * command); config is the one -c loaded (NULL without -c). Returns the exit
 * status: 0 ok, 1 damaged, 3 failed, 64 usage.
 */
int tally_ctl_backup_main(int argc, char **argv, const struct tally_config *config,
  const char *socket_path, bool json);

#endif
