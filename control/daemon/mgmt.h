/*
 * mgmt.h — the server side of the management Unix socket that tallyctl
 * talks to (the protocol: control/common/mgmt_proto.h). Control thread.
 */
#ifndef TALLY_MGMT_H
#define TALLY_MGMT_H

#include "appliance.h"
#include "mgmt_proto.h"

/*
 * Binds and listens (creates the parent directory if missing); the socket is
 * 0660 from its creation. A stale socket file is replaced; one a live process
 * accepts on is not (-1, one line in error). fd or -1.
 */
int tally_mgmt_listen(const char *path, char *error, size_t error_size);
/* control.admin_group's gid (-1 when the key is empty); -1 with one line if unknown. */
int tally_mgmt_admin_gid(const char *group, int64_t *gid, char *error, size_t error_size);
/*
 * Accepts and serves one waiting client, within TALLY_MGMT_TIMEOUT_S of the
 * accept (one absolute deadline for the line and the answer).
 */
void tally_mgmt_serve_one(struct tally_appliance *appliance, int listen_fd);
void tally_mgmt_close(int listen_fd, const char *path);

#endif
