/*
 * control_fakes.c — the fakes of control_fakes.h: the clock, the stats and
 * metrics bodies, and the cluster functions a single node never calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actions.h"
#include "cluster.h"
#include "control_fakes.h"

uint64_t fake_clock_mono_ns = 1000000000ull;
size_t fake_body_bytes = 6;

uint64_t tally_clock_mono_ns(void) { return __atomic_load_n(&fake_clock_mono_ns, __ATOMIC_ACQUIRE); }
uint64_t tally_clock_unix_ns(void) { return tally_clock_mono_ns(); }

void fake_appliance_init(struct tally_appliance *appliance)
{
  memset(appliance, 0, sizeof *appliance);
  appliance->store.mode = TALLY_PERSIST_GROUP_COMMIT;
  appliance->config.commit_interval_ms = 10;
  appliance->persister_stats.last_commit_mono_ns = fake_clock_mono_ns;
  appliance->lcore_count = 0;
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

/* A single node (appliance->cluster == NULL) never reaches these. */
#define NEVER_CALLED(...) { fprintf(stderr, "control_fakes: %s called\n", __func__); abort(); }
#pragma GCC diagnostic ignored "-Wunused-parameter"
uint32_t tally_cluster_peers_behind(struct tally_cluster *cluster) NEVER_CALLED()
int tally_cluster_quorum_read(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  __int128 *total, uint32_t *answered, uint32_t *nodes, bool *found) NEVER_CALLED()
void tally_cluster_describe(struct tally_cluster *cluster, struct tally_out *out) NEVER_CALLED()
bool tally_cluster_fault_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *config) NEVER_CALLED()
int tally_cluster_members_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, struct tally_out *out) NEVER_CALLED()
int tally_cluster_members_check(struct tally_cluster *cluster,
  const struct tally_cluster_config *fresh, char *error, size_t error_size) NEVER_CALLED()
