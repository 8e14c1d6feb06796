/*
 * control_fakes.c — the fakes of control_fakes.h: the clock, the stats and
 * metrics bodies; the appliance runs the real single-node and persistence
 * modes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actions.h"
#include "control_fakes.h"
#include "modes.h"

uint64_t fake_clock_mono_ns = 1000000000ull;
size_t fake_body_bytes = 6;

uint64_t tally_clock_mono_ns(void) { return __atomic_load_n(&fake_clock_mono_ns, __ATOMIC_ACQUIRE); }
uint64_t tally_clock_unix_ns(void) { return tally_clock_mono_ns(); }

void fake_appliance_init(struct tally_appliance *appliance)
{
  memset(appliance, 0, sizeof *appliance);
  appliance->store.mode = TALLY_PERSIST_GROUP_COMMIT;
  appliance->node = &tally_node_single;     /* the real single-node mode (mode_single.c) */
  appliance->persist = tally_persist_ops_of(TALLY_PERSIST_GROUP_COMMIT);
  appliance->config.commit_interval_ms = 10;
  appliance->persister_stats.last_commit_mono_ns = fake_clock_mono_ns;
  appliance->lcore_count = 0;
  appliance->mgmt_admin_gid = -1; /* no control.admin_group */
}

/* fake_body_bytes of text in lines of 63 "x" and a newline (the last one shorter). */
static enum tally_action_result fake_body(struct tally_out *out)
{
  char line[65];
  memset(line, 'x', 63);
  line[63] = '\n';
  line[64] = '\0';
  size_t left = fake_body_bytes;
  /* Bounded: every round writes at least one byte, or the out has failed. */
  while (left > 0 && !out->failed) {
    size_t chunk = left < 64 ? left : 64;
    tally_out_printf(out, "%.*s", (int)chunk, line + 64 - chunk);
    left -= chunk;
  }
  return out->failed ? TALLY_ACTION_FAILED : TALLY_ACTION_OK;
}

enum tally_action_result tally_action_stats(struct tally_appliance *appliance,
  struct tally_out *out)
{
  (void)appliance;
  return fake_body(out);
}

enum tally_action_result tally_action_metrics(struct tally_appliance *appliance,
  struct tally_out *out)
{
  (void)appliance;
  return fake_body(out);
}
