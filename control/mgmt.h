/*
 * mgmt.h — the management Unix socket that tallyctl talks to.
 *
 * Protocol: the client sends one request line (at most TALLY_MGMT_LINE_MAX
 * bytes): "get NAME", "get --quorum NAME", "list [PREFIX]", "stats", "ready", "reload", "cluster". The server
 * answers with a status line ("0" ok, "1" not found, "2" bad request,
 * "3" failed, "4" not ready, "5" partial), the body, and a final line "." so a cut-off answer is
 * detected; then it closes. Both directions have a timeout.
 */
#ifndef TALLY_MGMT_H
#define TALLY_MGMT_H

#include "appliance.h"

#define TALLY_MGMT_TRAILER ".\n"

/* Binds and listens (creates the parent directory if missing). fd or -1. */
int tally_mgmt_listen(const char *path, char *error, size_t error_size);
/* Accepts and serves one waiting client. */
void tally_mgmt_serve_one(struct tally_appliance *appliance, int listen_fd);
/* Serves one request line already read (used by tests), writing to fd. */
void tally_mgmt_handle(struct tally_appliance *appliance, const char *line, size_t line_len,
  int fd);
void tally_mgmt_close(int listen_fd, const char *path);

#endif
