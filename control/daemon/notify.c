/*
 * notify.c — tallyd's side of systemd's notification protocol
 * (config/systemd/tallyd.service is Type=notify with WatchdogSec=). The
 * readiness action (actions.c) is the one judge of health, so READY=1,
 * the watchdog, `tallyctl ready` and /health/ready can never disagree:
 *
 *   start      sd_watchdog_enabled -> interval = WATCHDOG_USEC / 2
 *   each turn  verdict = tally_action_ready()
 *              verdict's first line changed -> STATUS=<line>
 *              ready and READY=1 not yet sent -> READY=1 (once)
 *              ready and the interval elapsed -> WATCHDOG=1
 *   shutdown   STOPPING=1
 *
 * Not healthy (an lcore stopped polling, no store commit for
 * TALLY_COMMIT_STALL_INTERVALS) means no WATCHDOG=1: systemd then kills and
 * restarts the node after WatchdogSec. libsystemd sends nothing when
 * NOTIFY_SOCKET is unset, so a tallyd started by hand behaves as before.
 *
 * Thread: the control thread.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "actions.h"
#include "notify.h"

void tally_notify_start(struct tally_notify *notify, uint64_t now_ns)
{
  assert(notify != NULL);
  memset(notify, 0, sizeof *notify);
  uint64_t watchdog_us = 0;
  if (sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us > 0) {
    notify->watchdog_interval_ns = watchdog_us * 1000ull / 2;
    notify->watchdog_next_ns = now_ns;
    fprintf(stderr, "tallyd: systemd watchdog: WATCHDOG=1 every %llu ms while healthy\n",
      (unsigned long long)(notify->watchdog_interval_ns / 1000000ull));
    if (notify->watchdog_interval_ns < TALLY_CONTROL_POLL_MS * 1000000ull) {
      fprintf(stderr, "tallyd: systemd watchdog: WatchdogSec= is shorter than two control-loop "
        "turns (%u ms): raise it\n", TALLY_CONTROL_POLL_MS);
    }
  }
  assert(!notify->ready_sent);
}

/* The verdict's first line, cut to fit, into line (TALLY_NOTIFY_STATUS_LEN_MAX + 1 bytes). */
static void first_line(const char *text, size_t length, char *line)
{
  const char *newline = text == NULL ? NULL : memchr(text, '\n', length);
  size_t used = text == NULL ? 0 : newline == NULL ? length : (size_t)(newline - text);
  if (used > TALLY_NOTIFY_STATUS_LEN_MAX) used = TALLY_NOTIFY_STATUS_LEN_MAX;
  if (used > 0) memcpy(line, text, used);
  line[used] = '\0';
  assert(strlen(line) <= TALLY_NOTIFY_STATUS_LEN_MAX);
}

void tally_notify_tick(struct tally_notify *notify, struct tally_appliance *appliance,
  uint64_t now_ns)
{
  assert(notify != NULL && appliance != NULL);
  struct tally_out out;
  tally_out_init_memory(&out);
  bool ready = tally_action_ready(appliance, &out);
  size_t length = 0;
  char *text = tally_out_take(&out, &length);
  char line[TALLY_NOTIFY_STATUS_LEN_MAX + 1];
  first_line(text, length, line);
  free(text);
  if (strcmp(line, notify->status) != 0) {
    memcpy(notify->status, line, sizeof notify->status);
    sd_notifyf(0, "STATUS=%s", notify->status);
  }
  if (!ready) return; /* no READY=1 and no WATCHDOG=1 while not healthy */
  if (!notify->ready_sent) {
    sd_notify(0, "READY=1");
    notify->ready_sent = true;
  }
  if (notify->watchdog_interval_ns != 0 && now_ns >= notify->watchdog_next_ns) {
    sd_notify(0, "WATCHDOG=1");
    notify->watchdog_next_ns = now_ns + notify->watchdog_interval_ns;
  }
  assert(notify->ready_sent);
}

void tally_notify_stopping(struct tally_notify *notify)
{
  assert(notify != NULL);
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  memcpy(notify->status, "stopping", sizeof "stopping");
}
