/*
 * cluster_log.c — the cluster thread's records in the write-ahead log, and
 * the ACKs that wait for them (cluster_log.h; the replay is persister_log.c's). Why replaying them is exact and what each
 * fault loses: docs/store-layout.md, "Log mode on a cluster node".
 */
#include "cluster_log.h"

#include <assert.h>
#include <string.h>
#include <time.h>

#include "appliance.h"
#include "lcore.h"
#include "log_ring.h"


static_assert(sizeof(struct tally_dedup) == 8u * TALLY_WAL_CLUSTER_DEDUP_WORDS,
  "a dedup record is 15 words");

void tally_cluster_log_attach(struct tally_cluster_log *log, struct tally_wal_queue *queue)
{
  memset(log, 0, sizeof *log);
  log->queue = queue;
}

static void reserve(struct tally_cluster_log *log)
{
  assert(!log->reserved);
  uint8_t *out = tally_wal_queue_reserve(log->queue);
  tally_wal_cluster_writer_init(&log->writer, out, TALLY_WAL_PAYLOAD_SIZE_MAX);
  log->reserved = true;
}

static void publish(struct tally_cluster_log *log)
{
  assert(log->reserved);
  uint32_t size = tally_wal_cluster_finish(&log->writer);
  log->reserved = false;
  if (size == 0) return; /* nothing in it: the slot stays free */
  log->ticket = tally_wal_queue_publish(log->queue, size);
  __atomic_store_n(&log->records, log->records + 1u, __ATOMIC_RELAXED);
}

void tally_cluster_log_begin(struct tally_cluster_log *log)
{
  if (!tally_cluster_log_on(log)) return;
  assert(!log->session && !log->reserved);
  reserve(log); /* may wait for room: nothing is changed yet */
  tally_wal_queue_enter(log->queue);
  log->session = true;
}

uint64_t tally_cluster_log_end(struct tally_cluster_log *log)
{
  if (!tally_cluster_log_on(log)) return 0;
  assert(log->session);
  publish(log);
  tally_wal_queue_leave(log->queue);
  log->session = false;
  return log->ticket;
}

bool tally_cluster_log_durable(const struct tally_cluster_log *log, uint64_t ticket)
{
  if (!tally_cluster_log_on(log)) return true;
  return tally_wal_queue_durable(log->queue) >= ticket;
}

/*
 * A full slot: publish it (every change it names is already in the image
 * and in it), then reserve the next. The wait for room happens with the
 * session's changes so far all published; leave and enter around it so a
 * checkpoint waiting for the session does not wait for the persister.
 */
static void next_slot(struct tally_cluster_log *log)
{
  publish(log);
  tally_wal_queue_leave(log->queue);
  reserve(log);
  tally_wal_queue_enter(log->queue);
}

static void add(struct tally_cluster_log *log, const struct tally_wal_cluster_item *item)
{
  if (!tally_cluster_log_on(log)) return;
  assert(log->session && log->reserved);
  if (!tally_wal_cluster_add(&log->writer, item)) {
    next_slot(log);
    bool added = tally_wal_cluster_add(&log->writer, item);
    assert(added); /* an empty slot holds the largest item */
    (void)added;
  }
  __atomic_store_n(&log->items, log->items + 1u, __ATOMIC_RELAXED);
}

void tally_cluster_log_room(struct tally_cluster_log *log, uint32_t bytes)
{
  if (!tally_cluster_log_on(log)) return;
  assert(log->session && log->reserved);
  assert(bytes <= TALLY_WAL_PAYLOAD_SIZE_MAX - TALLY_WAL_CLUSTER_HEADER_SIZE);
  if (log->writer.capacity - log->writer.size < bytes) next_slot(log);
}

void tally_cluster_log_value(struct tally_cluster_log *log, uint16_t origin, const char *name,
  uint32_t name_len, int64_t value, uint8_t owner_class)
{
  assert(owner_class == TALLY_CLASS_STATSD || owner_class == TALLY_CLASS_RELIABLE);
  struct tally_wal_cluster_item item = { .kind = owner_class == TALLY_CLASS_RELIABLE ?
    TALLY_WAL_CLUSTER_RELIABLE_VALUE : TALLY_WAL_CLUSTER_VALUE, .origin = origin,
    .name = name, .name_len = name_len, .value = value };
  add(log, &item);
}

void tally_cluster_log_record(struct tally_cluster_log *log, uint16_t origin, uint64_t producer,
  const struct tally_dedup *dedup)
{
  struct tally_wal_cluster_item item = { .kind = TALLY_WAL_CLUSTER_RECORD, .origin = origin,
    .producer = producer };
  memcpy(item.dedup, dedup, sizeof item.dedup);
  add(log, &item);
}

void tally_cluster_log_held(struct tally_cluster_log *log, uint16_t origin, uint64_t held_seq,
  uint64_t held_scan)
{
  struct tally_wal_cluster_item item = { .kind = TALLY_WAL_CLUSTER_HELD, .origin = origin,
    .seq = held_seq, .scan = held_scan };
  add(log, &item);
}

void tally_cluster_log_claim(struct tally_cluster_log *log, uint64_t position, uint64_t producer,
  uint64_t seq, uint64_t attempt)
{
  struct tally_wal_cluster_item item = { .kind = TALLY_WAL_CLUSTER_CLAIM, .origin = 0,
    .position = position, .producer = producer, .seq = seq, .attempt = attempt };
  add(log, &item);
}

/* ---- Scans: ship only what is durable here ---------------------------------------- */

void tally_cluster_log_scan_mark(struct tally_cluster_log *log, struct tally_appliance *appliance)
{
  if (!tally_cluster_log_on(log)) return;
  assert(appliance->lcore_count <= TALLY_LCORES_MAX);
  const struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000l };
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    const struct tally_lcore *lcore = &appliance->lcores[l];
    assert(lcore->log_ring != NULL);
    /* An apply the scan saw had entered before this load: wait until it has
     * pushed its record and counted it in applied_seq (lcore.c: leave is last). */
    uint64_t entered = tally_log_ring_entered(lcore->log_ring);
    while (!tally_log_ring_left(lcore->log_ring, entered)) nanosleep(&pause, NULL);
    log->scan_need[l] = __atomic_load_n(&lcore->stats.applied_seq, __ATOMIC_ACQUIRE);
  }
  log->scan_ticket = log->ticket; /* every undo the scan read was published */
}

bool tally_cluster_log_scan_durable(struct tally_cluster_log *log,
  const struct tally_appliance *appliance)
{
  if (!tally_cluster_log_on(log)) return true;
  for (uint32_t l = 0; l < appliance->lcore_count; l++) {
    const struct tally_lcore *lcore = &appliance->lcores[l];
    if (__atomic_load_n(&lcore->durable_seq, __ATOMIC_ACQUIRE) < log->scan_need[l]) {
      __atomic_store_n(&log->rounds_held, log->rounds_held + 1u, __ATOMIC_RELAXED);
      return false;
    }
  }
  if (!tally_cluster_log_durable(log, log->scan_ticket)) {
    __atomic_store_n(&log->rounds_held, log->rounds_held + 1u, __ATOMIC_RELAXED);
    return false;
  }
  return true;
}
