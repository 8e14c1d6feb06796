/*
 * actions.c — the operator actions: reads that sum a counter over the
 * shards, listings, the appliance's figures, readiness and reload. Reads
 * run on control-plane threads concurrently with the lcores; they only load
 * published slots and relaxed statistics, never take a lock the dataplane
 * takes. Reload swaps ingest.key (RCU), the cluster's test-only fault
 * settings (one atomic word) and the cluster membership (cluster_members.c);
 * every other key waits for a restart. What differs between one node and a
 * cluster, or between persistence modes, is the modes' (modes.h).
 *
 * Thread: the control thread (tallyctl, SIGHUP); readiness also on the HTTP
 * thread (/health/ready, /metrics).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_lcore.h>
#include <urcu/urcu-qsbr.h>

#include "actions.h"
#include "modes.h"
#include "tally/key.h"
#include "tally/name.h"
#include "store_format.h"

/* Node totals are exact in 128 bits: shards are int64 each, at most 16. */
size_t tally_action_format_total(char text[TALLY_ACTION_TOTAL_SIZE], __int128 value)
{
  char digits[48];
  size_t count = 0;
  unsigned __int128 magnitude = value < 0 ? -(unsigned __int128)value : (unsigned __int128)value;
  do {
    assert(count < sizeof digits);
    digits[count++] = (char)('0' + (int)(magnitude % 10));
    magnitude /= 10;
  } while (magnitude != 0);
  size_t length = 0;
  if (value < 0) text[length++] = '-';
  while (count > 0) text[length++] = digits[--count];
  assert(length < TALLY_ACTION_TOTAL_SIZE);
  text[length] = '\0';
  return length;
}

void tally_action_print_total(struct tally_out *out, __int128 value)
{
  char text[TALLY_ACTION_TOTAL_SIZE];
  tally_action_format_total(text, value);
  tally_out_printf(out, "%s", text);
}

/*
 * The tables a read sums: this node's shards, then (in a cluster) the replica
 * table of every peer's contribution.
 */
static uint32_t table_count(const struct tally_appliance *appliance)
{
  return appliance->store.geometry.shard_count + appliance->store.geometry.replica_count;
}

/*
 * Table i, or NULL for a replica region not bound (to any node) yet. Bound
 * regions hold members and retired nodes alike: a retired node's counts are
 * real increments and stay in the sum. A region bound by a reload while a
 * read runs is seen from its binding on (acquire), fully formatted.
 */
static const struct tally_shard *table_at(const struct tally_appliance *appliance, uint32_t i)
{
  uint32_t shards = appliance->store.geometry.shard_count;
  assert(i < table_count(appliance));
  if (i < shards) return &appliance->store.shards[i];
  assert(i - shards < TALLY_REPLICA_REGIONS_MAX);
  if (!tally_store_replica_bound(&appliance->store, i - shards)) return NULL;
  return &appliance->store.replicas[i - shards];
}

/* Sums name over every table; returns false if none holds it. */
static bool counter_total(struct tally_appliance *appliance, const char *name, uint32_t name_len,
  __int128 *total)
{
  uint32_t hash = tally_store_name_hash(&appliance->store, name, name_len);
  bool found = false;
  *total = 0;
  for (uint32_t i = 0; i < table_count(appliance); i++) {
    const struct tally_shard *shard = table_at(appliance, i);
    if (shard == NULL) continue;
    int64_t slot = tally_shard_find(shard, name, name_len, hash);
    if (slot < 0) continue;
    assert(slot < (int64_t)shard->slots_count);
    *total += tally_shard_slot_value(shard, (uint32_t)slot);
    found = true;
  }
  return found;
}

/*
 * The canonical key of what the operator typed: a name, or name{k=v,...}
 * with the tags in any order (include/tally/key.h). False after the refusal.
 */
static bool canonical_key(const char *text, size_t text_len, char key[TALLY_NAME_LEN_MAX],
  uint32_t *key_len, struct tally_out *out)
{
  enum tally_key_status status = text_len > TALLY_NAME_LEN_MAX ? TALLY_KEY_TOO_LONG :
    tally_key_canonicalize(text, text_len, key, key_len);
  if (status == TALLY_KEY_OK) return true;
  tally_out_printf(out, "invalid counter name: %s\n", tally_key_status_text(status));
  return false;
}

enum tally_action_result tally_action_get(struct tally_appliance *appliance, const char *text,
  size_t text_len, struct tally_out *out)
{
  assert(appliance != NULL && out != NULL);
  char name[TALLY_NAME_LEN_MAX];
  uint32_t name_len = 0;
  if (!canonical_key(text, text_len, name, &name_len, out)) return TALLY_ACTION_BAD_REQUEST;
  assert(tally_name_valid(name, name_len));
  __int128 total = 0;
  if (!counter_total(appliance, name, (uint32_t)name_len, &total)) {
    tally_out_printf(out, "no counter %.*s\n", (int)name_len, name);
    return TALLY_ACTION_NOT_FOUND;
  }
  tally_action_print_total(out, total);
  tally_out_printf(out, "\n");
  return TALLY_ACTION_OK;
}

enum tally_action_result tally_action_get_quorum(struct tally_appliance *appliance,
  const char *text, size_t text_len, struct tally_out *out)
{
  assert(appliance->node != NULL);
  char name[TALLY_NAME_LEN_MAX];
  uint32_t name_len = 0;
  if (!canonical_key(text, text_len, name, &name_len, out)) return TALLY_ACTION_BAD_REQUEST;
  return appliance->node->get_quorum(appliance, name, name_len, out);
}

/*
 * Whether a stored key has the filter's name and every one of its tags
 * (both canonical: "name" or "name{t1,t2}"; a tag is the text between ','
 * or braces). A filter without tags matches the name with any tags.
 */
static bool key_has_tags(const char *key, uint32_t key_len, const char *filter,
  uint32_t filter_len)
{
  const char *brace = memchr(filter, '{', filter_len);
  uint32_t name_len = brace != NULL ? (uint32_t)(brace - filter) : filter_len;
  if (key_len < name_len || memcmp(key, filter, name_len) != 0) return false;
  if (key_len == name_len) return brace == NULL;
  if (key[name_len] != '{') return false;
  if (brace == NULL) return true;
  assert(filter[filter_len - 1] == '}');
  /* Not a key with tags (a name an older build took, replicated here): no match. */
  if (key[key_len - 1] != '}') return false;
  const char *tags = key + name_len + 1;
  size_t tags_len = key_len - name_len - 2u;
  /* At most TALLY_TAGS_MAX tags each side: bounded by 16 x 16 comparisons. */
  for (const char *wanted = brace + 1; wanted < filter + filter_len - 1;) {
    const char *wanted_end = wanted;
    while (*wanted_end != ',' && *wanted_end != '}') wanted_end++;
    size_t wanted_len = (size_t)(wanted_end - wanted);
    bool found = false;
    for (size_t at = 0; at < tags_len && !found;) {
      const char *comma = memchr(tags + at, ',', tags_len - at);
      size_t element_len = comma != NULL ? (size_t)(comma - tags) - at : tags_len - at;
      found = element_len == wanted_len && memcmp(tags + at, wanted, wanted_len) == 0;
      at += element_len + 1u;
    }
    if (!found) return false;
    wanted = wanted_end + 1;
  }
  return true;
}

/* Whether a shard before `before` already holds the name (listed there). */
static bool listed_earlier(struct tally_appliance *appliance, uint32_t before, const char *name,
  uint32_t name_len, uint32_t hash)
{
  assert(before < TALLY_LCORES_MAX + TALLY_NODES_MAX);
  for (uint32_t i = 0; i < before; i++) {
    const struct tally_shard *shard = table_at(appliance, i);
    if (shard != NULL && tally_shard_find(shard, name, name_len, hash) >= 0) return true;
  }
  return false;
}

bool tally_action_foreach_counter(struct tally_appliance *appliance, const char *prefix,
  size_t prefix_len, tally_action_counter_fn visit, void *context)
{
  assert(prefix_len <= TALLY_NAME_LEN_MAX);
  assert(visit != NULL);
  for (uint32_t s = 0; s < table_count(appliance); s++) {
    const struct tally_shard *shard = table_at(appliance, s);
    for (uint32_t slot = 0; shard != NULL && slot < shard->slots_count; slot++) {
      if (!tally_shard_slot_readable(shard, slot)) continue;
      const struct tally_slot *entry = &shard->slots[slot];
      uint32_t name_len = entry->name_len;
      assert(name_len >= 1 && name_len <= TALLY_NAME_LEN_MAX);
      if (name_len < prefix_len || memcmp(entry->name, prefix, prefix_len) != 0) continue;
      if (listed_earlier(appliance, s, entry->name, name_len, entry->hash)) continue;
      __int128 total = 0;
      bool found = counter_total(appliance, entry->name, name_len, &total);
      assert(found);
      (void)found;
      if (!visit(context, entry->name, name_len, total)) return false;
    }
  }
  return true;
}

/* What `list` prints: every key under a prefix, or a name's keys holding tags. */
struct list_filter {
  struct tally_out *out;
  bool tagged;          /* filter is a canonical key with tags (or "name{}") */
  const char *filter;
  uint32_t filter_len;
};

/* One "name value" line of `list`; stops the walk once the output failed. */
static bool list_line(void *context, const char *name, size_t name_len, __int128 total)
{
  struct list_filter *list = context;
  if (list->tagged && !key_has_tags(name, (uint32_t)name_len, list->filter, list->filter_len)) {
    return true;
  }
  tally_out_printf(list->out, "%.*s ", (int)name_len, name);
  tally_action_print_total(list->out, total);
  tally_out_printf(list->out, "\n");
  return !list->out->failed;
}

enum tally_action_result tally_action_list(struct tally_appliance *appliance,
  const char *text, size_t text_len, struct tally_out *out)
{
  assert(text_len <= TALLY_NAME_LEN_MAX);
  char filter[TALLY_NAME_LEN_MAX];
  struct list_filter list = { .out = out, .tagged = memchr(text, '{', text_len) != NULL,
    .filter = filter };
  const char *prefix = text; /* without tags: a prefix, as before tags */
  size_t prefix_len = text_len;
  if (list.tagged) {
    if (!canonical_key(text, text_len, filter, &list.filter_len, out)) {
      return TALLY_ACTION_BAD_REQUEST;
    }
    /* The walk's prefix is the name; key_has_tags then wants it whole, with the tags. */
    const char *brace = memchr(filter, '{', list.filter_len);
    prefix = filter;
    prefix_len = brace != NULL ? (size_t)(brace - filter) : list.filter_len;
  }
  tally_action_foreach_counter(appliance, prefix, prefix_len, list_line, &list);
  return out->failed ? TALLY_ACTION_FAILED : TALLY_ACTION_OK;
}

bool tally_action_ready(struct tally_appliance *appliance, struct tally_out *out)
{
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    if (!__atomic_load_n(&appliance->lcores[i].running, __ATOMIC_ACQUIRE)) {
      tally_out_printf(out, "not ready: dataplane lcore %u not polling\n", i);
      return false;
    }
  }
  assert(appliance->persist != NULL);
  if (!appliance->persist->ready(appliance, out)) return false;
  tally_out_printf(out, "ready\n");
  return true;
}

enum tally_action_result tally_action_cluster(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->node != NULL);
  return appliance->node->describe(appliance, out);
}

enum tally_action_result tally_action_readonly(struct tally_appliance *appliance, bool on,
  struct tally_out *out)
{
  __atomic_store_n(&appliance->read_only_forced, on, __ATOMIC_RELAXED);
  if (!on) appliance->draining = false;
  fprintf(stderr, "tallyd: operator: read-only %s\n", on ? "on" : "off");
  tally_out_printf(out, "read-only %s (reliable writes %s)\n", on ? "on" : "off",
    on ? "refused with READ_ONLY" : "accepted");
  return TALLY_ACTION_OK;
}

enum tally_action_result tally_action_drain(struct tally_appliance *appliance,
  struct tally_out *out)
{
  __atomic_store_n(&appliance->read_only_forced, true, __ATOMIC_RELAXED);
  appliance->draining = true;
  uint32_t behind = appliance->node->peers_behind(appliance);
  tally_out_printf(out, "%s: read-only; %u peer(s) still catching up\n",
    behind == 0 ? "drained" : "draining", behind);
  return behind == 0 ? TALLY_ACTION_OK : TALLY_ACTION_NOT_READY;
}

enum tally_action_result tally_action_rejoin(struct tally_appliance *appliance,
  struct tally_out *out)
{
  return tally_action_readonly(appliance, false, out);
}

static bool log_mode(const struct tally_appliance *appliance, struct tally_out *out)
{
  if (appliance->config.persist_mode == TALLY_PERSIST_LOG) return true;
  tally_out_printf(out, "not in log mode (store.persist = log): no checkpoints or log to back up\n");
  return false;
}

enum tally_action_result tally_action_checkpoint(struct tally_appliance *appliance,
  struct tally_out *out)
{
  if (!log_mode(appliance, out)) return TALLY_ACTION_FAILED;
  struct tally_log_stats *stats = &appliance->log_stats;
  uint64_t finished = __atomic_load_n(&stats->checkpoints_finished, __ATOMIC_RELAXED);
  __atomic_store_n(&stats->checkpoint_requested, 1u, __ATOMIC_RELAXED);
  fprintf(stderr, "tallyd: operator: checkpoint requested\n");
  tally_out_printf(out, "checkpoint requested; checkpoints_finished %" PRIu64 "\n", finished);
  return TALLY_ACTION_OK;
}

enum tally_action_result tally_action_log_hold(struct tally_appliance *appliance, uint64_t lsn,
  struct tally_out *out)
{
  if (!log_mode(appliance, out)) return TALLY_ACTION_FAILED;
  __atomic_store_n(&appliance->log_stats.backup_hold_lsn, lsn, __ATOMIC_RELAXED);
  fprintf(stderr, "tallyd: operator: log hold %" PRIu64 "%s\n", lsn, lsn == 0 ? " (released)" : "");
  tally_out_printf(out, "log hold %" PRIu64 "%s\n", lsn, lsn == 0 ? " (released)" :
    ": the log is not cut past it");
  return TALLY_ACTION_OK;
}

bool tally_action_reload_load(struct tally_appliance *appliance, struct tally_config *fresh,
  struct tally_out *out)
{
  char error[256];
  if (tally_config_load(appliance->config_path, fresh, error, sizeof error) == 0) return true;
  appliance->reload_failures++;
  appliance->node->reload_refused(appliance);
  tally_out_printf(out, "reload refused: %s\n", error);
  return false;
}

enum tally_action_result tally_action_cluster_reload(struct tally_appliance *appliance,
  struct tally_out *out)
{
  assert(appliance->node != NULL);
  return appliance->node->cluster_reload(appliance, out);
}

enum tally_action_result tally_action_reload(struct tally_appliance *appliance,
  struct tally_out *out)
{
  static struct tally_config fresh; /* control thread only; large */
  char error[384];
  if (!tally_action_reload_load(appliance, &fresh, out)) return TALLY_ACTION_FAILED;
  /* A membership change that cannot be applied refuses the whole reload, before any key. */
  if (appliance->node->reload_check(appliance, &fresh, error, sizeof error) != 0) {
    appliance->reload_failures++;
    appliance->node->reload_refused(appliance);
    tally_out_printf(out, "reload refused: %s\n", error);
    return TALLY_ACTION_FAILED;
  }
  struct tally_dp_config *next = malloc(sizeof *next);
  if (next == NULL) {
    appliance->reload_failures++;
    tally_out_printf(out, "reload failed: out of memory\n");
    return TALLY_ACTION_FAILED;
  }
  *next = *appliance->dp_config;
  assert(next->generation == appliance->dp_config->generation);
  memcpy(next->key, fresh.key, sizeof next->key);
  memcpy(appliance->config.key, fresh.key, sizeof appliance->config.key);
  next->generation++;
  struct tally_dp_config *old = rcu_xchg_pointer(&appliance->dp_config, next);
  urcu_qsbr_synchronize_rcu(); /* every lcore has passed a quiescent state */
  free(old);
  appliance->reloads++;
  tally_out_printf(out, "reloaded: ingest.key (generation %" PRIu64 ")\n", next->generation);
  /* The mode's reloadable keys: cluster.fault_* and the membership (mode_cluster.c). */
  if (appliance->node->reload_apply(appliance, &fresh, out) < 0) {
    appliance->reload_failures++;
    return TALLY_ACTION_FAILED; /* ingest.key applied; the membership unchanged (said above) */
  }
  return TALLY_ACTION_OK;
}
