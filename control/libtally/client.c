/*
 * client.c — libtally's front: the config and its checks, the client's one
 * allocation, the open batch (tally_client_add coalesces repeated names and
 * seals when the batch is full by pairs or by bytes), flush, drain and free.
 * Sealed batches belong to client_flight.c from then on.
 *
 * The bulkhead: every byte the client uses is allocated in tally_client_new
 * (inflight_max slots of one datagram each). When the window is full, add
 * and flush wait up to block_ms for a batch to end, polling meanwhile, and
 * then refuse with EBUSY without accepting anything.
 *
 * Thread: the producer's (the one thread that drives a client, client.h).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client_internal.h"
#include "tally/client.h"
#include "tally/name.h"

/* ---- Clock and random defaults ------------------------------------------------------ */

static uint64_t default_now_ms(void *context)
{
  (void)context;
  struct timespec now;
  int status = clock_gettime(CLOCK_MONOTONIC, &now);
  assert(status == 0); /* CLOCK_MONOTONIC cannot fail on Linux */
  (void)status;
  return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

static uint64_t default_random_u64(void *context)
{
  (void)context;
  uint64_t value = 0;
  randombytes_buf(&value, sizeof value);
  return value;
}

/* ---- Config --------------------------------------------------------------------------- */

void tally_client_config_default(struct tally_client_config *config)
{
  assert(config != NULL);
  *config = (struct tally_client_config){
    .first_seq = 1,
    .inflight_max = TALLY_DEDUP_WINDOW,
    .ack_timeout_ms = TALLY_CLIENT_DEFAULT_ACK_TIMEOUT_MS,
    .attempts_max = TALLY_CLIENT_DEFAULT_ATTEMPTS,
    .batch_timeout_ms = TALLY_CLIENT_DEFAULT_BATCH_TIMEOUT_MS,
    .backoff_base_ms = TALLY_CLIENT_DEFAULT_BACKOFF_BASE_MS,
    .backoff_cap_ms = TALLY_CLIENT_DEFAULT_BACKOFF_CAP_MS,
    .breaker_failures = TALLY_CLIENT_DEFAULT_BREAKER_FAILURES,
    .breaker_cooldown_ms = TALLY_CLIENT_DEFAULT_BREAKER_COOLDOWN_MS,
    .block_ms = TALLY_CLIENT_DEFAULT_BLOCK_MS,
  };
  assert(config->inflight_max <= TALLY_DEDUP_WINDOW);
}

static bool duration_valid(uint32_t value_ms, uint32_t min_ms)
{
  assert(min_ms <= TALLY_CLIENT_DURATION_MS_MAX);
  return value_ms >= min_ms && value_ms <= TALLY_CLIENT_DURATION_MS_MAX;
}

/* The first rule the config breaks, or NULL. */
static const char *config_problem(const struct tally_client_config *config)
{
  assert(config != NULL);
  if (config->node_count < 1 || config->node_count > TALLY_CLIENT_NODES_MAX)
    return "node_count must be 1..16";
  if (config->producer == 0 || config->producer > TALLY_PRODUCER_ID_MAX) {
    return "producer must be 1..2^63-2 (0 and the top half are reserved)";
  }
  if (config->first_seq == TALLY_CLIENT_SEQ_NONE) return "first_seq must be below 2^64-1";
  if (config->inflight_max < 1 || config->inflight_max > TALLY_DEDUP_WINDOW)
    return "inflight_max must be 1..64 (the dedup window)";
  if (!duration_valid(config->ack_timeout_ms, 1)) return "ack_timeout_ms must be 1..3600000";
  if (config->attempts_max < 1 || config->attempts_max > TALLY_CLIENT_ATTEMPTS_MAX)
    return "attempts_max must be 1..64";
  if (!duration_valid(config->batch_timeout_ms, config->ack_timeout_ms))
    return "batch_timeout_ms must be ack_timeout_ms..3600000";
  if (!duration_valid(config->backoff_base_ms, 1)) return "backoff_base_ms must be 1..3600000";
  if (!duration_valid(config->backoff_cap_ms, config->backoff_base_ms))
    return "backoff_cap_ms must be backoff_base_ms..3600000";
  if (config->breaker_failures < 1) return "breaker_failures must be at least 1";
  if (!duration_valid(config->breaker_cooldown_ms, 1))
    return "breaker_cooldown_ms must be 1..3600000";
  if (!duration_valid(config->block_ms, 0)) return "block_ms must be 0..3600000";
  if (config->on_done == NULL) return "on_done is required: every batch is reported";
  return NULL;
}

/* Resolves every node into client->addresses; refuses a node listed twice. */
static bool resolve_nodes(struct tally_client *client, const struct tally_client_config *config,
  char *error, size_t error_size)
{
  assert(config->node_count <= TALLY_CLIENT_NODES_MAX);
  assert(client->node_count == 0);
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (!client_net_resolve(config->nodes[i], &client->addresses[i], error, error_size))
      return false;
    for (uint32_t j = 0; j < i; j++) {
      if (memcmp(&client->addresses[i], &client->addresses[j], sizeof client->addresses[i]) ==
          0) {
        snprintf(error, error_size, "node '%s' is listed twice", config->nodes[i]);
        return false;
      }
    }
    tally_breaker_init(&client->breakers[i], config->breaker_failures,
      config->breaker_cooldown_ms);
    client->node_count++;
  }
  return true;
}

struct tally_client *tally_client_new(const struct tally_client_config *config, char *error,
  size_t error_size)
{
  assert(config != NULL);
  assert(error != NULL || error_size == 0);
  const char *problem = config_problem(config);
  if (problem != NULL) {
    snprintf(error, error_size, "%s", problem);
    return NULL;
  }
  if (sodium_init() < 0) {
    snprintf(error, error_size, "libsodium failed to initialize");
    return NULL;
  }
  size_t size = sizeof(struct tally_client) +
    (size_t)config->inflight_max * sizeof(struct client_batch);
  struct tally_client *client = calloc(1, size);
  if (client == NULL) {
    snprintf(error, error_size, "out of memory (%zu bytes)", size);
    return NULL;
  }
  client->fd = -1;
  client->config = *config;
  memset(client->config.nodes, 0, sizeof client->config.nodes); /* not ours to keep */
  if (client->config.now_ms == NULL) client->config.now_ms = default_now_ms;
  if (client->config.random_u64 == NULL) client->config.random_u64 = default_random_u64;
  client->next_seq = config->first_seq;
  client->oldest_seq = config->first_seq;
  client->open_size = CLIENT_BATCH_EMPTY_SIZE;
  if (!resolve_nodes(client, config, error, error_size)) {
    free(client);
    return NULL;
  }
  client->fd = client_net_open();
  if (client->fd < 0) {
    snprintf(error, error_size, "cannot open a UDP socket");
    free(client);
    return NULL;
  }
  assert(client->node_count == config->node_count);
  return client;
}

/* Builds the wire view of the open batch (names point into client->open). */
static void open_view(const struct tally_client *client, struct tally_wire_batch *view)
{
  assert(client->open_count <= TALLY_BATCH_PAIRS_MAX);
  view->producer = client->config.producer;
  view->seq = client->next_seq;
  view->attempt = 0; /* the first send; client_flight numbers the resends */
  view->count = client->open_count;
  for (uint32_t i = 0; i < client->open_count; i++) {
    view->pairs[i] = (struct tally_wire_pair){ .name = client->open[i].name,
      .name_len = client->open[i].name_len, .delta = client->open[i].delta };
  }
  assert(view->count == client->open_count);
}

void tally_client_free(struct tally_client *client)
{
  if (client == NULL) return;
  assert(!client->in_callback);
  client_flight_cancel_all(client);
  if (client->open_count > 0) {
    struct tally_wire_batch view;
    open_view(client, &view);
    struct tally_client_completion completion = { .seq = TALLY_CLIENT_SEQ_NONE,
      .status = TALLY_CLIENT_CANCELLED, .node = TALLY_CLIENT_NODE_NONE,
      .pair_count = view.count, .pairs = view.pairs };
    client->stats.batches_failed++;
    client->config.on_done(client->config.on_done_context, &completion);
  }
  if (client->fd >= 0) close(client->fd);
  free(client);
}

/* ---- The open batch ----------------------------------------------------------------- */

/* Waits up to wait_ms (polling) until one more batch may be sealed. */
static enum tally_client_status wait_for_room(struct tally_client *client, uint32_t wait_ms)
{
  assert(!client->in_callback);
  assert(wait_ms <= TALLY_CLIENT_DURATION_MS_MAX);
  if (client_has_room(client)) return TALLY_CLIENT_OK;
  if (wait_ms == 0 || client->next_seq == TALLY_CLIENT_SEQ_NONE) return TALLY_CLIENT_EBUSY;
  uint64_t end_ms = client_now_ms(client) + wait_ms;
  /* Bounded in time: each round sleeps until an ack, a timer or end_ms. */
  for (;;) {
    uint64_t now_ms = client_now_ms(client);
    if (client_has_room(client)) return TALLY_CLIENT_OK;
    if (now_ms >= end_ms) return TALLY_CLIENT_EBUSY;
    enum tally_client_status status = client_flight_poll(client, (uint32_t)(end_ms - now_ms));
    if (status != TALLY_CLIENT_OK) return status;
  }
}

static void seal_open(struct tally_client *client)
{
  assert(client->open_count >= 1);
  assert(client_has_room(client));
  struct tally_wire_batch view;
  open_view(client, &view);
  client_flight_seal(client, &view, client_now_ms(client));
  client->open_count = 0;
  client->open_size = CLIENT_BATCH_EMPTY_SIZE;
}

/* Seals a full open batch if there is room, without waiting. */
static void seal_if_full(struct tally_client *client)
{
  assert(client->open_size <= TALLY_DATAGRAM_SIZE_MAX);
  bool full = client->open_count == TALLY_BATCH_PAIRS_MAX ||
    client->open_size + TALLY_WIRE_PAIR_FIXED_SIZE + 1u > TALLY_DATAGRAM_SIZE_MAX;
  if (full && client->open_count > 0 && client_has_room(client)) seal_open(client);
}

static int32_t find_open(const struct tally_client *client, const char *name, uint32_t name_len)
{
  assert(name_len >= 1 && name_len <= TALLY_NAME_LEN_MAX);
  assert(client->open_count <= TALLY_BATCH_PAIRS_MAX);
  for (uint32_t i = 0; i < client->open_count; i++) {
    const struct client_open_pair *pair = &client->open[i];
    if (pair->name_len == name_len && memcmp(pair->name, name, name_len) == 0) return (int32_t)i;
  }
  return -1;
}

/* Adds delta to a canonical key in the open batch. */
static enum tally_client_status add_key(struct tally_client *client, const char *name,
  size_t name_len, int64_t delta)
{
  assert(tally_name_valid(name, name_len));
  int32_t found = find_open(client, name, (uint32_t)name_len);
  if (found >= 0) {
    int64_t sum = 0;
    if (!__builtin_add_overflow(client->open[found].delta, delta, &sum)) {
      client->open[found].delta = sum;
      return TALLY_CLIENT_OK;
    }
  }
  /* A new pair (or one whose sum would overflow: it goes into the next batch). */
  bool fits = found < 0 && client->open_count < TALLY_BATCH_PAIRS_MAX &&
    client->open_size + TALLY_WIRE_PAIR_FIXED_SIZE + name_len <= TALLY_DATAGRAM_SIZE_MAX;
  if (!fits) {
    enum tally_client_status status = wait_for_room(client, client->config.block_ms);
    if (status != TALLY_CLIENT_OK) return status;
    seal_open(client);
  }
  struct client_open_pair *pair = &client->open[client->open_count++];
  pair->delta = delta;
  pair->name_len = (uint32_t)name_len;
  memcpy(pair->name, name, name_len);
  client->open_size += TALLY_WIRE_PAIR_FIXED_SIZE + (uint32_t)name_len;
  assert(client->open_size <= TALLY_DATAGRAM_SIZE_MAX);
  seal_if_full(client);
  return TALLY_CLIENT_OK;
}

enum tally_client_status tally_client_add(struct tally_client *client, const char *name,
  int64_t delta)
{
  assert(client != NULL);
  assert(!client->in_callback);
  if (name == NULL) return TALLY_CLIENT_EINVAL;
  size_t name_len = strnlen(name, TALLY_NAME_LEN_MAX + 1u);
  char key[TALLY_NAME_LEN_MAX];
  uint32_t key_len = 0;
  if (name_len > TALLY_NAME_LEN_MAX ||
    tally_key_canonicalize(name, name_len, key, &key_len) != TALLY_KEY_OK) {
    return TALLY_CLIENT_EINVAL;
  }
  return add_key(client, key, key_len, delta);
}

enum tally_client_status tally_client_add_tagged(struct tally_client *client, const char *name,
  const struct tally_tag *tags, uint32_t tag_count, int64_t delta)
{
  assert(client != NULL);
  assert(!client->in_callback);
  if (name == NULL || (tags == NULL && tag_count > 0)) return TALLY_CLIENT_EINVAL;
  if (tag_count > TALLY_TAGS_MAX) return TALLY_CLIENT_EINVAL;
  struct tally_tag sorted[TALLY_TAGS_MAX];
  for (uint32_t i = 0; i < tag_count; i++) {
    if (tags[i].key == NULL || (tags[i].value == NULL && tags[i].value_len > 0)) {
      return TALLY_CLIENT_EINVAL;
    }
    sorted[i] = tags[i];
  }
  size_t name_len = strnlen(name, TALLY_NAME_LEN_MAX + 1u);
  char key[TALLY_NAME_LEN_MAX];
  uint32_t key_len = 0;
  if (tally_key_build(name, name_len, sorted, tag_count, key, &key_len) != TALLY_KEY_OK) {
    return TALLY_CLIENT_EINVAL;
  }
  return add_key(client, key, key_len, delta);
}

enum tally_client_status tally_client_flush(struct tally_client *client)
{
  assert(client != NULL);
  assert(!client->in_callback);
  if (client->open_count == 0) return TALLY_CLIENT_OK;
  enum tally_client_status status = wait_for_room(client, client->config.block_ms);
  if (status != TALLY_CLIENT_OK) return status;
  seal_open(client);
  assert(client->open_count == 0);
  return TALLY_CLIENT_OK;
}

enum tally_client_status tally_client_poll(struct tally_client *client, uint32_t timeout_ms)
{
  assert(client != NULL);
  assert(!client->in_callback);
  if (timeout_ms > TALLY_CLIENT_DURATION_MS_MAX) timeout_ms = TALLY_CLIENT_DURATION_MS_MAX;
  enum tally_client_status status = client_flight_poll(client, timeout_ms);
  seal_if_full(client);
  return status;
}

enum tally_client_status tally_client_drain(struct tally_client *client, uint32_t timeout_ms)
{
  assert(client != NULL);
  assert(!client->in_callback);
  if (timeout_ms > TALLY_CLIENT_DURATION_MS_MAX) timeout_ms = TALLY_CLIENT_DURATION_MS_MAX;
  uint64_t end_ms = client_now_ms(client) + timeout_ms;
  /* Bounded in time: each round sleeps until an ack, a timer or end_ms. */
  for (;;) {
    if (client->open_count > 0 && client_has_room(client)) seal_open(client);
    if (client->open_count == 0 && client->oldest_seq == client->next_seq) return TALLY_CLIENT_OK;
    uint64_t now_ms = client_now_ms(client);
    if (now_ms >= end_ms) return client->open_count > 0 ? TALLY_CLIENT_EBUSY : TALLY_CLIENT_TIMEOUT;
    enum tally_client_status status = client_flight_poll(client, (uint32_t)(end_ms - now_ms));
    if (status != TALLY_CLIENT_OK) return status;
  }
}

/* ---- Queries ------------------------------------------------------------------------ */

uint64_t tally_client_next_seq(const struct tally_client *client)
{
  assert(client != NULL);
  assert(client->oldest_seq <= client->next_seq);
  return client->next_seq;
}

uint32_t tally_client_inflight(const struct tally_client *client)
{
  assert(client != NULL);
  assert(client->next_seq - client->oldest_seq <= client->config.inflight_max);
  return (uint32_t)(client->next_seq - client->oldest_seq);
}

enum tally_client_breaker_state tally_client_breaker(const struct tally_client *client,
  uint32_t node)
{
  assert(client != NULL);
  assert(node < client->node_count);
  return client->breakers[node].state;
}

void tally_client_stats(const struct tally_client *client, struct tally_client_stats *stats)
{
  assert(client != NULL);
  assert(stats != NULL);
  *stats = client->stats;
  stats->breaker_opens = 0;
  for (uint32_t i = 0; i < client->node_count; i++) stats->breaker_opens += client->breakers[i].opens;
}
