/*
 * io_fault.c — the test-only fault stage (cluster.fault_*, cluster_fault.c)
 * as a layer of the cluster's I/O interface (cluster_io.h): every datagram
 * the cluster sends is offered to it and dropped, held back, or passed to
 * the backend below; held ones leave from wait_readable once due.
 * The layer runs on the thread that runs the cluster (the start-up thread
 * while restoring, then the cluster thread); the heartbeat thread has a
 * layer of its own (cluster->heartbeat_fault: the same settings, set
 * together, and its own queue and PRNG). Opening is start-up's, and
 * tally_cluster_fault_reload is any thread's (the settings are one atomic
 * word per stage).
 */
#include <assert.h>
#include <stdio.h>

#include <sodium.h>

#include "cluster_internal.h"
#include "heartbeat_wire.h"

static_assert(TALLY_REPLICATION_SIZE_MAX <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX,
  "a datagram fits a fault slot");
static_assert(TALLY_HEARTBEAT_SIZE <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX, "a heartbeat fits a fault slot");

/* ---- The layer ------------------------------------------------------------- */

static void fault_send(void *context, const struct sockaddr_in *to, const uint8_t *data,
  size_t size)
{
  struct tally_cluster_fault_layer *layer = context;
  assert(size > 0 && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  if (__builtin_expect(tally_cluster_fault_active(layer->fault), 0) &&
      tally_cluster_fault_offer(layer->fault, tally_cluster_io_now_ns(&layer->lower), to, data,
        size) != TALLY_CLUSTER_FAULT_SEND) {
    return; /* dropped on purpose, or held until due */
  }
  tally_cluster_io_send(&layer->lower, to, data, size);
}

/* Sends every held datagram that is due (none unless fault injection ran). */
static void fault_flush(struct tally_cluster_fault_layer *layer)
{
  uint64_t now_ns = tally_cluster_io_now_ns(&layer->lower);
  for (uint32_t n = 0; n < TALLY_CLUSTER_FAULT_QUEUE_MAX; n++) {
    const struct tally_cluster_fault_datagram *datagram =
      tally_cluster_fault_peek(layer->fault, now_ns);
    if (datagram == NULL) return;
    tally_cluster_io_send(&layer->lower, &datagram->address, datagram->data, datagram->size);
    tally_cluster_fault_pop(layer->fault);
  }
}

static ssize_t fault_receive(void *context, uint8_t *buffer, size_t size,
  struct sockaddr_in *from)
{
  struct tally_cluster_fault_layer *layer = context;
  return tally_cluster_io_receive(&layer->lower, buffer, size, from);
}

/*
 * Sends what is due, then waits at most limit_ns and no later than the next
 * held datagram falls due (so it leaves within the loop's round, ~0.1 ms
 * late), then sends what fell due meanwhile.
 */
static bool fault_wait_readable(void *context, uint64_t limit_ns)
{
  struct tally_cluster_fault_layer *layer = context;
  fault_flush(layer);
  uint64_t wait_ns = limit_ns;
  uint64_t due_ns = tally_cluster_fault_next_due_ns(layer->fault);
  if (due_ns != UINT64_MAX) {
    uint64_t now_ns = tally_cluster_io_now_ns(&layer->lower);
    uint64_t until_ns = due_ns > now_ns ? due_ns - now_ns : 0;
    if (until_ns < wait_ns) wait_ns = until_ns;
  }
  bool readable = tally_cluster_io_wait_readable(&layer->lower, wait_ns);
  fault_flush(layer);
  return readable;
}

static uint64_t fault_now_ns(void *context)
{
  struct tally_cluster_fault_layer *layer = context;
  return tally_cluster_io_now_ns(&layer->lower);
}

static const struct tally_cluster_io_ops fault_ops = {
  .send = fault_send, .receive = fault_receive, .wait_readable = fault_wait_readable,
  .now_ns = fault_now_ns,
};

struct tally_cluster_io tally_cluster_fault_layer_io(struct tally_cluster_fault_layer *layer)
{
  assert(layer->fault != NULL && layer->lower.ops != NULL);
  return (struct tally_cluster_io){ .ops = &fault_ops, .context = layer };
}

/* ---- Settings: from the config at start, and at reload ------------------------ */

static void fault_settings_from(const struct tally_cluster_config *config,
  struct tally_cluster_fault_settings *settings)
{
  *settings = (struct tally_cluster_fault_settings){ .delay_ms = config->fault_delay_ms,
    .jitter_ms = config->fault_jitter_ms, .loss_permille = config->fault_loss_permille };
  assert(tally_cluster_fault_settings_valid(settings));
}

static void fault_announce(const struct tally_cluster_fault_settings *settings)
{
  bool on = settings->delay_ms != 0 || settings->jitter_ms != 0 || settings->loss_permille != 0;
  if (!on) {
    fprintf(stderr, "tallyd: cluster: fault injection off\n");
    return;
  }
  fprintf(stderr, "tallyd: cluster: FAULT INJECTION ON (test only, never in production): every "
    "datagram to a peer dropped with probability %u/1000, else delayed %u ms + 0..%u ms\n",
    settings->loss_permille, settings->delay_ms, settings->jitter_ms);
}

int tally_cluster_fault_open(struct tally_cluster *cluster, char *error, size_t error_size)
{
  uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  if (tally_cluster_fault_init(&cluster->fault, seed) != 0) {
    snprintf(error, error_size, "cluster: out of memory for the fault queue");
    return -1;
  }
  struct tally_cluster_fault_settings settings;
  fault_settings_from(cluster->config, &settings);
  tally_cluster_fault_set(&cluster->fault, &settings);
  if (tally_cluster_fault_active(&cluster->fault)) fault_announce(&settings);
  return 0;
}

int tally_cluster_fault_open_beside(struct tally_cluster *cluster,
  struct tally_cluster_fault *fault, char *error, size_t error_size)
{
  uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  if (tally_cluster_fault_init(fault, seed) != 0) {
    snprintf(error, error_size, "cluster: out of memory for the heartbeats' fault queue");
    return -1;
  }
  struct tally_cluster_fault_settings settings;
  tally_cluster_fault_get(&cluster->fault, &settings);
  tally_cluster_fault_set(fault, &settings);
  return 0;
}

bool tally_cluster_fault_reload(struct tally_cluster *cluster,
  const struct tally_cluster_config *config)
{
  struct tally_cluster_fault_settings before, after;
  tally_cluster_fault_get(&cluster->fault, &before);
  fault_settings_from(config, &after);
  if (before.delay_ms == after.delay_ms && before.jitter_ms == after.jitter_ms &&
      before.loss_permille == after.loss_permille) {
    return false;
  }
  tally_cluster_fault_set(&cluster->fault, &after);
  tally_cluster_fault_set(&cluster->heartbeat_fault, &after); /* (the heartbeat thread's) */
  fault_announce(&after);
  return true;
}
