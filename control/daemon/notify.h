/*
 * notify.h — tallyd's messages to its service manager (systemd's sd_notify,
 * through libsystemd): READY=1 once the readiness action first says ready,
 * STATUS= whenever its verdict changes, WATCHDOG=1 at half the watchdog
 * interval while the node is healthy, STOPPING=1 at shutdown. With
 * NOTIFY_SOCKET unset (not started by systemd) every call sends nothing.
 *
 * Thread: the control thread only (start-up's tail, the control loop, shutdown).
 */
#ifndef TALLY_NOTIFY_H
#define TALLY_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "appliance.h"

struct tally_notify {
  uint64_t watchdog_interval_ns; /* half of $WATCHDOG_USEC; 0: no watchdog asked for */
  uint64_t watchdog_next_ns;     /* the next WATCHDOG=1 is due at or after this */
  bool ready_sent;               /* READY=1 went out: never again */
  char status[TALLY_NOTIFY_STATUS_LEN_MAX + 1]; /* the last STATUS= sent */
};

/* Reads the watchdog interval (sd_watchdog_enabled); says on stderr what it found. */
void tally_notify_start(struct tally_notify *notify, uint64_t now_ns);
/*
 * One round, every control-loop turn: asks the readiness action (lcores
 * polling, the persister committing) and sends what is due.
 */
void tally_notify_tick(struct tally_notify *notify, struct tally_appliance *appliance,
  uint64_t now_ns);
/* STOPPING=1: shutdown has begun (before the lcores are stopped). */
void tally_notify_stopping(struct tally_notify *notify);

#endif
