/*
 * wal_queue.c — the single-producer single-consumer queue of log payloads
 * from the cluster thread to the persister (wal_queue.h). Acquire/release
 * on tail and head order the payload bytes; the durable ticket is stored
 * only after the persister's commit returned.
 */
#include "wal_queue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_WAIT_NS 100000l /* 100 µs: about one persister round */

int tally_wal_queue_open(struct tally_wal_queue *queue)
{
  memset(queue, 0, sizeof *queue);
  queue->slots = calloc(TALLY_WAL_QUEUE_SLOTS, sizeof queue->slots[0]);
  return queue->slots != NULL ? 0 : -1;
}

void tally_wal_queue_close(struct tally_wal_queue *queue)
{
  free(queue->slots);
  queue->slots = NULL;
}

uint8_t *tally_wal_queue_reserve(struct tally_wal_queue *queue)
{
  assert(queue->slots != NULL);
  const struct timespec pause = { .tv_sec = 0, .tv_nsec = QUEUE_WAIT_NS };
  uint64_t tail = queue->tail;
  bool counted = false;
  while (tail - __atomic_load_n(&queue->head, __ATOMIC_ACQUIRE) >= TALLY_WAL_QUEUE_SLOTS) {
    if (!counted) __atomic_store_n(&queue->waits, queue->waits + 1u, __ATOMIC_RELAXED);
    counted = true;
    nanosleep(&pause, NULL);
  }
  return queue->slots[tail % TALLY_WAL_QUEUE_SLOTS].payload;
}

uint64_t tally_wal_queue_publish(struct tally_wal_queue *queue, uint32_t size)
{
  assert(size >= 1 && size <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  uint64_t tail = queue->tail;
  assert(tail - __atomic_load_n(&queue->head, __ATOMIC_ACQUIRE) < TALLY_WAL_QUEUE_SLOTS);
  queue->slots[tail % TALLY_WAL_QUEUE_SLOTS].size = size;
  __atomic_store_n(&queue->tail, tail + 1u, __ATOMIC_RELEASE);
  return tail + 1u;
}

void tally_wal_queue_enter(struct tally_wal_queue *queue)
{
  assert(queue->left == queue->entered); /* not nested */
  __atomic_store_n(&queue->entered, queue->entered + 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_SEQ_CST); /* before any store to the image */
}

void tally_wal_queue_leave(struct tally_wal_queue *queue)
{
  assert(queue->left + 1u == queue->entered);
  __atomic_store_n(&queue->left, queue->entered, __ATOMIC_RELEASE); /* after the publish */
}

uint64_t tally_wal_queue_ready(const struct tally_wal_queue *queue)
{
  uint64_t ready = __atomic_load_n(&queue->tail, __ATOMIC_ACQUIRE) - queue->head;
  assert(ready <= TALLY_WAL_QUEUE_SLOTS);
  return ready;
}

const struct tally_wal_queue_slot *tally_wal_queue_peek(const struct tally_wal_queue *queue,
  uint64_t i)
{
  assert(i < TALLY_WAL_QUEUE_SLOTS);
  const struct tally_wal_queue_slot *slot = &queue->slots[(queue->head + i) % TALLY_WAL_QUEUE_SLOTS];
  assert(slot->size >= 1 && slot->size <= TALLY_WAL_PAYLOAD_SIZE_MAX);
  return slot;
}

void tally_wal_queue_pop(struct tally_wal_queue *queue, uint64_t n)
{
  assert(n <= tally_wal_queue_ready(queue));
  __atomic_store_n(&queue->head, queue->head + n, __ATOMIC_RELEASE);
}

void tally_wal_queue_set_durable(struct tally_wal_queue *queue)
{
  assert(queue->head >= queue->durable); /* never backwards */
  __atomic_store_n(&queue->durable, queue->head, __ATOMIC_RELEASE);
}

uint64_t tally_wal_queue_durable(const struct tally_wal_queue *queue)
{
  return __atomic_load_n(&queue->durable, __ATOMIC_ACQUIRE);
}

uint64_t tally_wal_queue_entered(const struct tally_wal_queue *queue)
{
  __atomic_thread_fence(__ATOMIC_SEQ_CST); /* after the copy's loads */
  return __atomic_load_n(&queue->entered, __ATOMIC_RELAXED);
}

bool tally_wal_queue_left(const struct tally_wal_queue *queue, uint64_t entered)
{
  return __atomic_load_n(&queue->left, __ATOMIC_ACQUIRE) >= entered;
}
