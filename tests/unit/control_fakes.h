/*
 * control_fakes.h — what the control-plane unit tests (test_mgmt.c,
 * test_http.c) put around the real mgmt.c, http.c, actions.c and out.c: a
 * clock the test sets, a single-node appliance with no lcores and no store
 * behind it, /metrics and stats bodies of a size the test chooses, and
 * cluster functions that abort (a single node never calls them). Runs on
 * the test's thread; the HTTP daemon's thread reads what the test set
 * before it sent the request.
 */
#ifndef TALLY_CONTROL_FAKES_H
#define TALLY_CONTROL_FAKES_H

#include <stddef.h>
#include <stdint.h>

#include "appliance.h"

/* What tally_clock_mono_ns() answers. */
extern uint64_t fake_clock_mono_ns;
/* Bytes of text tally_action_stats and tally_action_metrics write ("x" lines). */
extern size_t fake_body_bytes;

/*
 * A single node in group-commit mode, commit interval 10 ms, whose last
 * commit is at fake_clock_mono_ns (so it is ready), no lcores.
 */
void fake_appliance_init(struct tally_appliance *appliance);

#endif
