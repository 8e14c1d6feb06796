/*
 * cluster_fault.h — test-only fault injection on the cluster socket (this
 * kernel has no sch_netem): every datagram the cluster thread sends to a peer
 * (heartbeats, rounds, acks, restore parts, quorum-read replies) is offered
 * here first, and is
 *   - dropped with probability loss_permille / 1000, or
 *   - held back for delay_ms plus a uniform jitter in [0, jitter_ms] in a
 *     bounded queue, and handed back to the cluster thread once due (jitter
 *     reorders, as a real network does; a full queue drops and counts it), or
 *   - sent at once (delay and jitter both 0).
 * Off by default: with every setting 0, a datagram costs one relaxed load and
 * a branch. Set from cluster.fault_* at start and by `tallyctl reload` (any
 * thread, atomically: the three settings are one 64-bit word).
 *
 * Pure and clock-free: time is an argument and nothing here does I/O (the
 * caller sends what offer passes and what peek hands back), so the unit test
 * drives it exactly. The queue is allocated once, at init. Everything but
 * set, settings and the counters belongs to one thread (the cluster thread).
 */
#ifndef TALLY_CLUSTER_FAULT_H
#define TALLY_CLUSTER_FAULT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/limits.h"

struct tally_cluster_fault_settings {
  uint32_t delay_ms;      /* 0..TALLY_CLUSTER_FAULT_DELAY_MS_MAX */
  uint32_t jitter_ms;     /* 0..TALLY_CLUSTER_FAULT_JITTER_MS_MAX */
  uint32_t loss_permille; /* 0..TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX */
};

/* One held datagram. */
struct tally_cluster_fault_datagram {
  uint64_t due_ns;              /* send at or after this (the caller's clock) */
  uint64_t order;               /* offer number: FIFO among equal due times */
  struct sockaddr_in address;
  uint32_t size;
  uint8_t data[TALLY_CLUSTER_DATAGRAM_SIZE_MAX];
};

struct tally_cluster_fault {
  uint64_t settings;            /* packed delay, jitter, loss; 0: off (atomic) */
  uint64_t random_state;        /* xorshift64*, seeded at init; never 0 */
  struct tally_cluster_fault_datagram *slots; /* TALLY_CLUSTER_FAULT_QUEUE_MAX */
  uint32_t *heap;               /* slot indexes, a min-heap by (due_ns, order) */
  uint32_t *free_slots;         /* a stack of unused slot indexes */
  uint32_t count;               /* held: heap entries */
  uint32_t free_count;          /* count + free_count == TALLY_CLUSTER_FAULT_QUEUE_MAX */
  uint64_t offers;
  /* Figures (written by the owning thread, read relaxed by /metrics). */
  uint64_t dropped;             /* lost on purpose, or the queue was full */
  uint64_t delayed;             /* held back (sent later, unless the thread stops first) */
};

enum tally_cluster_fault_verdict {
  TALLY_CLUSTER_FAULT_SEND = 0, /* send it now */
  TALLY_CLUSTER_FAULT_DROP,     /* do not send it (counted in dropped) */
  TALLY_CLUSTER_FAULT_HELD,     /* copied into the queue (counted in delayed) */
};

/* Allocates the queue; settings 0 (off). seed: any value. Returns 0 or -1 (ENOMEM). */
int tally_cluster_fault_init(struct tally_cluster_fault *fault, uint64_t seed);
void tally_cluster_fault_free(struct tally_cluster_fault *fault);

/* Whether settings are within their ranges (the config loader enforces them). */
bool tally_cluster_fault_settings_valid(const struct tally_cluster_fault_settings *settings);
/* Any thread: replaces the settings; held datagrams keep their due times. */
void tally_cluster_fault_set(struct tally_cluster_fault *fault,
  const struct tally_cluster_fault_settings *settings);
/* Any thread: the current settings. */
void tally_cluster_fault_get(const struct tally_cluster_fault *fault,
  struct tally_cluster_fault_settings *settings);

/* Any setting non-zero: datagrams must be offered. The only cost when off. */
static inline bool tally_cluster_fault_active(const struct tally_cluster_fault *fault)
{
  return __atomic_load_n(&fault->settings, __ATOMIC_RELAXED) != 0;
}

/*
 * Decides one datagram's fate at now_ns (size 1..TALLY_CLUSTER_DATAGRAM_SIZE_MAX). On
 * HELD the bytes are copied: the caller may reuse its buffer.
 */
enum tally_cluster_fault_verdict tally_cluster_fault_offer(struct tally_cluster_fault *fault,
  uint64_t now_ns, const struct sockaddr_in *address, const uint8_t *data, size_t size);

/* The earliest held datagram if it is due at now_ns, else NULL. */
const struct tally_cluster_fault_datagram *tally_cluster_fault_peek(
  const struct tally_cluster_fault *fault, uint64_t now_ns);
/* Removes the earliest held datagram (the one peek returned). */
void tally_cluster_fault_pop(struct tally_cluster_fault *fault);
/* Due time of the earliest held datagram; UINT64_MAX when none is held. */
uint64_t tally_cluster_fault_next_due_ns(const struct tally_cluster_fault *fault);

#endif
