/*
 * wal_queue.h — records handed to the persister by a thread that is not an
 * lcore (the cluster thread): a single-producer single-consumer queue of
 * TALLY_WAL_QUEUE_SLOTS payload slots, each up to one record's payload. The
 * producer reserves a slot, writes a payload into it, publishes it and gets
 * its ticket (1, 2, 3, ...); the persister appends the published payloads in
 * order and, after the fdatasync covering them, publishes the ticket of the
 * last one as durable. A producer that finds every slot taken waits (a
 * counted, short sleep: the persister frees slots every round); it must
 * hold no unlogged change while it waits (docs/store-layout.md, "Log mode on
 * a cluster node").
 *
 * entered / left serve checkpoints as the lcores' rings do: the producer
 * bumps entered before it changes the image and sets left = entered once
 * every change is published, so a checkpoint that copied a change waits for
 * its record to be in the queue.
 *
 * Threads: the producer (reserve, publish, enter, leave), the persister
 * (ready, peek, pop, set_durable); any thread reads durable.
 */
#ifndef TALLY_PERSIST_WAL_QUEUE_H
#define TALLY_PERSIST_WAL_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "tally/limits.h"

#define TALLY_WAL_QUEUE_SLOTS 64u
static_assert((TALLY_WAL_QUEUE_SLOTS & (TALLY_WAL_QUEUE_SLOTS - 1u)) == 0, "a power of two");

struct tally_wal_queue_slot {
  uint32_t size;
  uint8_t payload[TALLY_WAL_PAYLOAD_SIZE_MAX];
};

struct tally_wal_queue {
  struct tally_wal_queue_slot *slots; /* TALLY_WAL_QUEUE_SLOTS */
  uint64_t tail __attribute__((aligned(64))); /* producer: slots published (release) */
  uint64_t entered;                   /* producer: changes begun */
  uint64_t left;                      /* producer: = entered once they are published (release) */
  uint64_t waits;                     /* producer: times it found the queue full */
  uint64_t head __attribute__((aligned(64))); /* persister: slots taken (release) */
  uint64_t durable;                   /* persister: tickets durable (release) */
};

/* 0, or -1 (out of memory). */
int tally_wal_queue_open(struct tally_wal_queue *queue);
void tally_wal_queue_close(struct tally_wal_queue *queue);

/* Producer: the next slot's payload (TALLY_WAL_PAYLOAD_SIZE_MAX bytes), waiting while full. */
uint8_t *tally_wal_queue_reserve(struct tally_wal_queue *queue);
/* Producer: publishes the reserved slot with size bytes (1..max); returns its ticket. */
uint64_t tally_wal_queue_publish(struct tally_wal_queue *queue, uint32_t size);
void tally_wal_queue_enter(struct tally_wal_queue *queue);
void tally_wal_queue_leave(struct tally_wal_queue *queue);

/* Persister: published slots not taken yet. */
uint64_t tally_wal_queue_ready(const struct tally_wal_queue *queue);
/* Persister: the i-th ready slot (i < ready). */
const struct tally_wal_queue_slot *tally_wal_queue_peek(const struct tally_wal_queue *queue,
  uint64_t i);
/* Persister: gives back n slots. */
void tally_wal_queue_pop(struct tally_wal_queue *queue, uint64_t n);
/* Persister, after the fdatasync covering every popped slot: they are durable. */
void tally_wal_queue_set_durable(struct tally_wal_queue *queue);
/* Any thread: the last ticket whose record is durable. */
uint64_t tally_wal_queue_durable(const struct tally_wal_queue *queue);
/* Checkpoint: entered now, and whether left has reached it. */
uint64_t tally_wal_queue_entered(const struct tally_wal_queue *queue);
bool tally_wal_queue_left(const struct tally_wal_queue *queue, uint64_t entered);

#endif
