/*
 * log_ring.h — log mode's per-lcore ring of applied-batch records, from the
 * lcore (single producer) to the persister (single consumer): a bounded
 * array of fixed-size records in the lcore's hugepage memory, with a head
 * and a tail on their own cache lines. No lock, no atomic read-modify-write.
 *
 * Ordering (asserted where it is used): the lcore fills a record, then
 * stores tail + 1 with release; the persister loads tail with acquire, so
 * it reads whole records. The persister stores head with release after it
 * has copied the records out; the lcore loads head with acquire before it
 * reuses a slot. Each record carries the lcore's applied_seq after its
 * batch: records leave the ring in applied_seq order, one per applied batch.
 *
 * Thread: tally_log_ring_claim / _push on the owning lcore; _peek / _pop on
 * the persister.
 */
#ifndef TALLY_LOG_RING_H
#define TALLY_LOG_RING_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>

#include "tally/limits.h"
#include "shard.h"

/* One applied reliable batch, handed to the persister to be logged. */
struct tally_log_record {
  uint64_t applied_seq; /* the lcore's applied_seq after this batch (its ack waits for it) */
  struct tally_shard_effect effect;
};

struct tally_log_ring {
  uint64_t head __rte_cache_aligned; /* next record to log: written by the persister */
  uint64_t tail __rte_cache_aligned; /* next free record: written by the lcore */
  uint64_t full __rte_cache_aligned; /* claims refused (also the lcore's log_ring_full) */
  /* Applies begun and ended (written by the lcore): a checkpoint waits for one in flight. */
  uint64_t entered __rte_cache_aligned;
  uint64_t left;
  struct tally_log_record records[TALLY_LOG_RING_SIZE] __rte_cache_aligned;
};

/* Lcore: the next free record, or NULL (the ring is full). */
static inline struct tally_log_record *tally_log_ring_claim(struct tally_log_ring *ring)
{
  uint64_t head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
  uint64_t tail = ring->tail;
  assert(tail - head <= TALLY_LOG_RING_SIZE);
  if (tail - head == TALLY_LOG_RING_SIZE) return NULL;
  return &ring->records[tail % TALLY_LOG_RING_SIZE];
}

/* Lcore: publishes the record claim returned (filled). */
static inline void tally_log_ring_push(struct tally_log_ring *ring)
{
  __atomic_store_n(&ring->tail, ring->tail + 1u, __ATOMIC_RELEASE);
}

/*
 * Lcore: around each apply (whatever its outcome). The release fence orders
 * entered before the apply's stores to the image, so a checkpoint that
 * copied any of them, then loads entered (after an acquire fence), waits
 * for left to reach it: by then the batch's record is in the ring.
 */
static inline void tally_log_ring_enter(struct tally_log_ring *ring)
{
  __atomic_store_n(&ring->entered, ring->entered + 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void tally_log_ring_leave(struct tally_log_ring *ring)
{
  __atomic_store_n(&ring->left, ring->entered, __ATOMIC_RELEASE); /* after the push */
}

/* Persister: true once every apply begun before this call has ended and pushed its record. */
static inline uint64_t tally_log_ring_entered(const struct tally_log_ring *ring)
{
  __atomic_thread_fence(__ATOMIC_ACQUIRE); /* after the copy's loads */
  return __atomic_load_n(&ring->entered, __ATOMIC_RELAXED);
}

static inline bool tally_log_ring_left(const struct tally_log_ring *ring, uint64_t entered)
{
  return __atomic_load_n(&ring->left, __ATOMIC_ACQUIRE) >= entered;
}

/* Persister: records ready to log (at most TALLY_LOG_RING_SIZE). */
static inline uint64_t tally_log_ring_ready(const struct tally_log_ring *ring)
{
  uint64_t tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
  uint64_t head = ring->head;
  assert(tail - head <= TALLY_LOG_RING_SIZE);
  return tail - head;
}

/* Persister: the i-th ready record (i < tally_log_ring_ready). */
static inline const struct tally_log_record *tally_log_ring_peek(const struct tally_log_ring *ring,
  uint64_t i)
{
  return &ring->records[(ring->head + i) % TALLY_LOG_RING_SIZE];
}

/* Persister: gives back the first count ready records (after copying them out). */
static inline void tally_log_ring_pop(struct tally_log_ring *ring, uint64_t count)
{
  assert(count <= TALLY_LOG_RING_SIZE);
  __atomic_store_n(&ring->head, ring->head + count, __ATOMIC_RELEASE);
}

#endif
