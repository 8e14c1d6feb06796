/*
 * cluster_fault.c — the cluster socket's test-only fault stage (see
 * cluster_fault.h): the loss draw, the delay draw, and the bounded queue of
 * held datagrams, a binary min-heap of slot indexes ordered by due time and,
 * among equal due times, by offer (so a fixed delay keeps the send order).
 * Pure: the I/O layer around it is io_fault.c. Runs on the thread that runs
 * the cluster (start-up while restoring, then the cluster thread); the
 * settings are set from any thread.
 */
#include "cluster_fault.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000ull

/* Packing: delay << 32 | jitter << 16 | loss, each below 2^16. */
static_assert(TALLY_CLUSTER_FAULT_DELAY_MS_MAX < (1u << 16), "delay fits its 16 bits");
static_assert(TALLY_CLUSTER_FAULT_JITTER_MS_MAX < (1u << 16), "jitter fits its 16 bits");
static_assert(TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX == 1000u, "loss is per mille");
static_assert(TALLY_CLUSTER_FAULT_QUEUE_MAX >= 1u, "the queue holds something");
static_assert(TALLY_CLUSTER_FAULT_QUEUE_MAX <= UINT32_MAX / 2u, "heap indexes fit u32");

static uint64_t settings_pack(const struct tally_cluster_fault_settings *settings)
{
  return (uint64_t)settings->delay_ms << 32 | (uint64_t)settings->jitter_ms << 16 |
    (uint64_t)settings->loss_permille;
}

static void settings_unpack(uint64_t packed, struct tally_cluster_fault_settings *settings)
{
  settings->delay_ms = (uint32_t)(packed >> 32);
  settings->jitter_ms = (uint32_t)(packed >> 16) & 0xffffu;
  settings->loss_permille = (uint32_t)packed & 0xffffu;
}

static uint64_t next_random(struct tally_cluster_fault *fault)
{
  uint64_t x = fault->random_state; /* xorshift64*: fault draws only, not security */
  assert(x != 0);
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  fault->random_state = x;
  return x * 2685821657736338717ull;
}

/* Heap order: earlier due first, then earlier offer. */
static bool before(const struct tally_cluster_fault *fault, uint32_t a, uint32_t b)
{
  const struct tally_cluster_fault_datagram *x = &fault->slots[a];
  const struct tally_cluster_fault_datagram *y = &fault->slots[b];
  if (x->due_ns != y->due_ns) return x->due_ns < y->due_ns;
  assert(x->order != y->order);
  return x->order < y->order;
}

static void heap_swap(struct tally_cluster_fault *fault, uint32_t i, uint32_t j)
{
  uint32_t slot = fault->heap[i];
  fault->heap[i] = fault->heap[j];
  fault->heap[j] = slot;
}

static void sift_up(struct tally_cluster_fault *fault, uint32_t i)
{
  assert(i < fault->count);
  while (i > 0) { /* bounded: i halves */
    uint32_t parent = (i - 1u) / 2u;
    if (!before(fault, fault->heap[i], fault->heap[parent])) return;
    heap_swap(fault, i, parent);
    i = parent;
  }
}

static void sift_down(struct tally_cluster_fault *fault, uint32_t i)
{
  while (true) { /* bounded: i at least doubles */
    uint32_t left = 2u * i + 1u;
    if (left >= fault->count) return;
    uint32_t child = left;
    if (left + 1u < fault->count && before(fault, fault->heap[left + 1u], fault->heap[left])) {
      child = left + 1u;
    }
    if (!before(fault, fault->heap[child], fault->heap[i])) return;
    heap_swap(fault, i, child);
    i = child;
  }
}

int tally_cluster_fault_init(struct tally_cluster_fault *fault, uint64_t seed)
{
  memset(fault, 0, sizeof *fault);
  /* calloc: pages of a queue never used are never touched. */
  fault->slots = calloc(TALLY_CLUSTER_FAULT_QUEUE_MAX, sizeof *fault->slots);
  fault->heap = calloc(TALLY_CLUSTER_FAULT_QUEUE_MAX, sizeof *fault->heap);
  fault->free_slots = calloc(TALLY_CLUSTER_FAULT_QUEUE_MAX, sizeof *fault->free_slots);
  if (fault->slots == NULL || fault->heap == NULL || fault->free_slots == NULL) {
    tally_cluster_fault_free(fault);
    return -1;
  }
  for (uint32_t i = 0; i < TALLY_CLUSTER_FAULT_QUEUE_MAX; i++) {
    fault->free_slots[i] = TALLY_CLUSTER_FAULT_QUEUE_MAX - 1u - i; /* slot 0 used first */
  }
  fault->free_count = TALLY_CLUSTER_FAULT_QUEUE_MAX;
  fault->random_state = seed ^ 0x9e3779b97f4a7c15ull; /* any seed, 0 included */
  if (fault->random_state == 0) fault->random_state = 1;
  return 0;
}

void tally_cluster_fault_free(struct tally_cluster_fault *fault)
{
  free(fault->slots);
  free(fault->heap);
  free(fault->free_slots);
  fault->slots = NULL;
  fault->heap = NULL;
  fault->free_slots = NULL;
  fault->count = 0;
  fault->free_count = 0;
}

bool tally_cluster_fault_settings_valid(const struct tally_cluster_fault_settings *settings)
{
  return settings->delay_ms <= TALLY_CLUSTER_FAULT_DELAY_MS_MAX &&
    settings->jitter_ms <= TALLY_CLUSTER_FAULT_JITTER_MS_MAX &&
    settings->loss_permille <= TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX;
}

void tally_cluster_fault_set(struct tally_cluster_fault *fault,
  const struct tally_cluster_fault_settings *settings)
{
  assert(tally_cluster_fault_settings_valid(settings));
  __atomic_store_n(&fault->settings, settings_pack(settings), __ATOMIC_RELAXED);
}

void tally_cluster_fault_get(const struct tally_cluster_fault *fault,
  struct tally_cluster_fault_settings *settings)
{
  settings_unpack(__atomic_load_n(&fault->settings, __ATOMIC_RELAXED), settings);
  assert(tally_cluster_fault_settings_valid(settings));
}

static void count(uint64_t *figure)
{
  __atomic_store_n(figure, *figure + 1u, __ATOMIC_RELAXED); /* one writer */
}

enum tally_cluster_fault_verdict tally_cluster_fault_offer(struct tally_cluster_fault *fault,
  uint64_t now_ns, const struct sockaddr_in *address, const uint8_t *data, size_t size)
{
  assert(size >= 1u && size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  assert(fault->count + fault->free_count == TALLY_CLUSTER_FAULT_QUEUE_MAX);
  struct tally_cluster_fault_settings settings;
  tally_cluster_fault_get(fault, &settings); /* one load: a consistent triple */
  fault->offers++;
  if (settings.loss_permille > 0 && next_random(fault) % 1000u < settings.loss_permille) {
    count(&fault->dropped);
    return TALLY_CLUSTER_FAULT_DROP;
  }
  uint64_t delay_ns = (uint64_t)settings.delay_ms * NS_PER_MS;
  if (settings.jitter_ms > 0) {
    delay_ns += next_random(fault) % ((uint64_t)settings.jitter_ms * NS_PER_MS + 1u);
  }
  if (delay_ns == 0) return TALLY_CLUSTER_FAULT_SEND;
  if (fault->free_count == 0) {
    count(&fault->dropped); /* the queue is full: a congested link drops */
    return TALLY_CLUSTER_FAULT_DROP;
  }
  uint32_t slot = fault->free_slots[--fault->free_count];
  assert(slot < TALLY_CLUSTER_FAULT_QUEUE_MAX);
  struct tally_cluster_fault_datagram *datagram = &fault->slots[slot];
  datagram->due_ns = now_ns + delay_ns;
  datagram->order = fault->offers;
  datagram->address = *address;
  datagram->size = (uint32_t)size;
  memcpy(datagram->data, data, size);
  fault->heap[fault->count++] = slot;
  sift_up(fault, fault->count - 1u);
  count(&fault->delayed);
  return TALLY_CLUSTER_FAULT_HELD;
}

const struct tally_cluster_fault_datagram *tally_cluster_fault_peek(
  const struct tally_cluster_fault *fault, uint64_t now_ns)
{
  if (fault->count == 0) return NULL;
  const struct tally_cluster_fault_datagram *first = &fault->slots[fault->heap[0]];
  return first->due_ns <= now_ns ? first : NULL;
}

void tally_cluster_fault_pop(struct tally_cluster_fault *fault)
{
  assert(fault->count > 0);
  assert(fault->free_count < TALLY_CLUSTER_FAULT_QUEUE_MAX);
  fault->free_slots[fault->free_count++] = fault->heap[0];
  fault->count--;
  if (fault->count == 0) return;
  fault->heap[0] = fault->heap[fault->count];
  sift_down(fault, 0);
}

uint64_t tally_cluster_fault_next_due_ns(const struct tally_cluster_fault *fault)
{
  if (fault->count == 0) return UINT64_MAX;
  return fault->slots[fault->heap[0]].due_ns;
}
