/*
 * mgmt.h — the server side of the management Unix socket that tallyctl
 * talks to (the protocol: control/common/mgmt_proto.h). Control thread.
 */
#ifndef TALLY_MGMT_H
#define TALLY_MGMT_H

#include "appliance.h"
#include "mgmt_proto.h"

/* Binds and listens (creates the parent directory if missing). fd or -1. */
int tally_mgmt_listen(const char *path, char *error, size_t error_size);
/* Accepts and serves one waiting client. */
void tally_mgmt_serve_one(struct tally_appliance *appliance, int listen_fd);
/* Serves one request line already read (used by tests), writing to fd. */
void tally_mgmt_handle(struct tally_appliance *appliance, const char *line, size_t line_len,
  int fd);
void tally_mgmt_close(int listen_fd, const char *path);

#endif
