/*
 * test_cluster_fault.c — unit tests of the cluster socket's test-only fault
 * stage (control/cluster/cluster_fault.c): off by default, settings packed and
 * unpacked, loss accounting (all, none, a seeded fraction), a fixed delay
 * keeping the send order, jitter within its bounds and reordering, the
 * queue's bound (overflow counted as dropped) and slot reuse, settings
 * changed while datagrams are held, and the heap against a sorted reference
 * under random offers and pops.
 *
 * The draws come from the stage's own generator, seeded here; the random
 * test prints its seed, and TALLY_TEST_SEED=<n> replays it.
 */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cluster_fault.h"

#define MS 1000000ull
/* Any start time: not zero. */
#define T0 7000000000ull

static struct tally_cluster_fault fault;

static const struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0x1c1b,
  .sin_addr.s_addr = 0x0300004eu };

static int setup(void **unused)
{
  (void)unused;
  return tally_cluster_fault_init(&fault, 42);
}

static int teardown(void **unused)
{
  (void)unused;
  tally_cluster_fault_free(&fault);
  return 0;
}

static void set(uint32_t delay_ms, uint32_t jitter_ms, uint32_t loss_permille)
{
  struct tally_cluster_fault_settings settings = { .delay_ms = delay_ms, .jitter_ms = jitter_ms,
    .loss_permille = loss_permille };
  assert_true(tally_cluster_fault_settings_valid(&settings));
  tally_cluster_fault_set(&fault, &settings);
}

/* Offers a datagram whose payload is id (4 bytes, then size - 4 filler bytes). */
static enum tally_cluster_fault_verdict offer(uint64_t now_ns, uint32_t id, size_t size)
{
  uint8_t data[TALLY_CLUSTER_DATAGRAM_SIZE_MAX];
  assert_true(size >= sizeof id && size <= sizeof data);
  memset(data, (int)(id & 0xffu), size);
  memcpy(data, &id, sizeof id);
  return tally_cluster_fault_offer(&fault, now_ns, &address, data, size);
}

/* Pops the earliest datagram due at now_ns; returns its id, or -1 if none is due. */
static int64_t pop(uint64_t now_ns, uint64_t *due_ns)
{
  const struct tally_cluster_fault_datagram *datagram = tally_cluster_fault_peek(&fault, now_ns);
  if (datagram == NULL) return -1;
  assert_true(datagram->due_ns <= now_ns);
  assert_true(datagram->size >= 4 && datagram->size <= TALLY_CLUSTER_DATAGRAM_SIZE_MAX);
  assert_memory_equal(&datagram->address, &address, sizeof address);
  uint32_t id;
  memcpy(&id, datagram->data, sizeof id);
  for (uint32_t i = 4; i < datagram->size; i++) assert_int_equal(datagram->data[i], id & 0xffu);
  if (due_ns != NULL) *due_ns = datagram->due_ns;
  tally_cluster_fault_pop(&fault);
  return id;
}

static void test_off_by_default(void **unused)
{
  (void)unused;
  assert_false(tally_cluster_fault_active(&fault));
  struct tally_cluster_fault_settings settings;
  tally_cluster_fault_get(&fault, &settings);
  assert_int_equal(settings.delay_ms, 0);
  assert_int_equal(settings.jitter_ms, 0);
  assert_int_equal(settings.loss_permille, 0);
  assert_int_equal(tally_cluster_fault_next_due_ns(&fault), UINT64_MAX);
  assert_null(tally_cluster_fault_peek(&fault, UINT64_MAX));
  /* Offered anyway while off: sent at once, nothing counted. */
  assert_int_equal(offer(T0, 1, 48), TALLY_CLUSTER_FAULT_SEND);
  assert_int_equal(fault.dropped, 0);
  assert_int_equal(fault.delayed, 0);
}

static void test_settings(void **unused)
{
  (void)unused;
  set(TALLY_CLUSTER_FAULT_DELAY_MS_MAX, TALLY_CLUSTER_FAULT_JITTER_MS_MAX,
    TALLY_CLUSTER_FAULT_LOSS_PERMILLE_MAX);
  assert_true(tally_cluster_fault_active(&fault));
  struct tally_cluster_fault_settings settings;
  tally_cluster_fault_get(&fault, &settings);
  assert_int_equal(settings.delay_ms, 10000);
  assert_int_equal(settings.jitter_ms, 10000);
  assert_int_equal(settings.loss_permille, 1000);
  for (uint32_t which = 0; which < 3; which++) { /* each alone turns it on */
    set(which == 0 ? 1 : 0, which == 1 ? 1 : 0, which == 2 ? 1 : 0);
    assert_true(tally_cluster_fault_active(&fault));
    tally_cluster_fault_get(&fault, &settings);
    assert_int_equal(settings.delay_ms + settings.jitter_ms + settings.loss_permille, 1);
  }
  set(0, 0, 0);
  assert_false(tally_cluster_fault_active(&fault));
  struct tally_cluster_fault_settings bad = { .delay_ms = 10001 };
  assert_false(tally_cluster_fault_settings_valid(&bad));
  bad = (struct tally_cluster_fault_settings){ .jitter_ms = 10001 };
  assert_false(tally_cluster_fault_settings_valid(&bad));
  bad = (struct tally_cluster_fault_settings){ .loss_permille = 1001 };
  assert_false(tally_cluster_fault_settings_valid(&bad));
}

static void test_loss_all_and_fraction(void **unused)
{
  (void)unused;
  set(0, 0, 1000); /* everything lost, nothing held */
  for (uint32_t i = 0; i < 1000; i++) assert_int_equal(offer(T0, i, 48), TALLY_CLUSTER_FAULT_DROP);
  assert_int_equal(fault.dropped, 1000);
  assert_int_equal(fault.delayed, 0);
  assert_int_equal(tally_cluster_fault_next_due_ns(&fault), UINT64_MAX);

  set(0, 0, 300); /* loss alone: sent or dropped, never held */
  uint32_t dropped = 0;
  for (uint32_t i = 0; i < 20000; i++) {
    enum tally_cluster_fault_verdict verdict = offer(T0, i, 48);
    assert_true(verdict == TALLY_CLUSTER_FAULT_SEND || verdict == TALLY_CLUSTER_FAULT_DROP);
    if (verdict == TALLY_CLUSTER_FAULT_DROP) dropped++;
  }
  assert_int_equal(fault.dropped, 1000u + dropped);
  assert_int_equal(fault.delayed, 0);
  assert_in_range(dropped, 5400, 6600); /* 30 % of 20000, +-10 %: far beyond 10 sigma */

  set(100, 0, 500); /* loss and delay: what is not dropped is held */
  uint32_t held = 0;
  for (uint32_t i = 0; i < 1000; i++) {
    enum tally_cluster_fault_verdict verdict = offer(T0, i, 48);
    assert_true(verdict == TALLY_CLUSTER_FAULT_HELD || verdict == TALLY_CLUSTER_FAULT_DROP);
    if (verdict == TALLY_CLUSTER_FAULT_HELD) held++;
  }
  assert_int_equal(fault.delayed, held);
  assert_int_equal(fault.dropped + fault.delayed, 1000u + dropped + 1000u); /* each counted once */
  assert_in_range(held, 400, 600);
}

static void test_fixed_delay_keeps_order(void **unused)
{
  (void)unused;
  set(50, 0, 0);
  /* Three at the same instant, then one a millisecond later each. */
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(offer(T0, i, 100 + i), TALLY_CLUSTER_FAULT_HELD);
  }
  for (uint32_t i = 3; i < 10; i++) {
    assert_int_equal(offer(T0 + (i - 2) * MS, i, TALLY_CLUSTER_DATAGRAM_SIZE_MAX),
      TALLY_CLUSTER_FAULT_HELD);
  }
  assert_int_equal(fault.delayed, 10);
  assert_int_equal(tally_cluster_fault_next_due_ns(&fault), T0 + 50 * MS);
  assert_null(tally_cluster_fault_peek(&fault, T0 + 50 * MS - 1)); /* not yet due */
  uint64_t due = 0;
  for (uint32_t i = 0; i < 3; i++) { /* equal due times: in offer order */
    assert_int_equal(pop(T0 + 50 * MS, &due), i);
    assert_int_equal(due, T0 + 50 * MS);
  }
  assert_int_equal(pop(T0 + 50 * MS, NULL), -1);
  for (uint32_t i = 3; i < 10; i++) {
    assert_int_equal(pop(T0 + 100 * MS, &due), i);
    assert_int_equal(due, T0 + (i - 2 + 50) * MS);
  }
  assert_int_equal(tally_cluster_fault_next_due_ns(&fault), UINT64_MAX);
  assert_int_equal(fault.dropped, 0);
}

static void test_jitter_bounds_and_reorder(void **unused)
{
  (void)unused;
  set(50, 100, 0);
  enum { COUNT = 1000 };
  for (uint32_t i = 0; i < COUNT; i++) {
    assert_int_equal(offer(T0 + i * MS / 10, i, 48), TALLY_CLUSTER_FAULT_HELD);
  }
  static uint8_t seen[COUNT];
  memset(seen, 0, sizeof seen);
  uint64_t previous_due = 0;
  int64_t previous_id = -1;
  uint32_t inversions = 0;
  uint64_t low = UINT64_MAX, high = 0;
  for (uint32_t n = 0; n < COUNT; n++) {
    uint64_t due = 0;
    int64_t id = pop(UINT64_MAX, &due);
    assert_true(id >= 0 && id < COUNT);
    assert_int_equal(seen[id], 0);
    seen[id] = 1;
    uint64_t offered = T0 + (uint64_t)id * MS / 10;
    assert_true(due >= offered + 50 * MS && due <= offered + 150 * MS);
    if (due - offered < low) low = due - offered;
    if (due - offered > high) high = due - offered;
    assert_true(due >= previous_due); /* out in due order */
    if (id < previous_id) inversions++;
    previous_due = due;
    previous_id = id;
  }
  assert_int_equal(pop(UINT64_MAX, NULL), -1);
  assert_true(inversions > COUNT / 10); /* jitter reorders */
  assert_true(low < 55 * MS && high > 145 * MS); /* the whole range is used */
}

static void test_queue_bound_and_reuse(void **unused)
{
  (void)unused;
  set(1000, 0, 0);
  for (uint32_t round = 0; round < 3; round++) {
    uint64_t start = T0 + round * 10000 * MS;
    for (uint32_t i = 0; i < TALLY_CLUSTER_FAULT_QUEUE_MAX; i++) {
      assert_int_equal(offer(start + i, i, 64), TALLY_CLUSTER_FAULT_HELD);
    }
    for (uint32_t i = 0; i < 5; i++) { /* full: dropped and counted */
      assert_int_equal(offer(start, 99999, 64), TALLY_CLUSTER_FAULT_DROP);
    }
    /* Each earlier round held one more and dropped one more (below). */
    assert_int_equal(fault.delayed, (round + 1u) * TALLY_CLUSTER_FAULT_QUEUE_MAX + round);
    assert_int_equal(fault.dropped, (round + 1u) * 5u + round);
    /* One out makes room for one more (due last). */
    assert_int_equal(pop(start + 1000 * MS, NULL), 0);
    uint32_t last = TALLY_CLUSTER_FAULT_QUEUE_MAX;
    assert_int_equal(offer(start + last, last, 64), TALLY_CLUSTER_FAULT_HELD);
    assert_int_equal(offer(start + 1, 99999, 64), TALLY_CLUSTER_FAULT_DROP);
    for (uint32_t i = 1; i <= TALLY_CLUSTER_FAULT_QUEUE_MAX; i++) {
      assert_int_equal(pop(UINT64_MAX, NULL), i);
    }
    assert_int_equal(tally_cluster_fault_next_due_ns(&fault), UINT64_MAX);
  }
}

static void test_settings_change_while_held(void **unused)
{
  (void)unused;
  set(200, 0, 0);
  assert_int_equal(offer(T0, 1, 48), TALLY_CLUSTER_FAULT_HELD);
  set(10, 0, 0);
  assert_int_equal(offer(T0, 2, 48), TALLY_CLUSTER_FAULT_HELD);
  set(0, 0, 0); /* off: new ones go at once, held ones keep their due times */
  assert_false(tally_cluster_fault_active(&fault));
  assert_int_equal(offer(T0, 3, 48), TALLY_CLUSTER_FAULT_SEND);
  assert_int_equal(tally_cluster_fault_next_due_ns(&fault), T0 + 10 * MS);
  assert_int_equal(pop(T0 + 10 * MS, NULL), 2);
  assert_int_equal(pop(T0 + 199 * MS, NULL), -1);
  assert_int_equal(pop(T0 + 200 * MS, NULL), 1);
}

/*
 * The heap against a sorted reference: random offers with random delays (no
 * jitter, so every due time is known here), clock steps, and drains.
 */
struct reference {
  uint64_t due_ns;
  uint64_t order;
  uint32_t id;
};

static int reference_compare(const void *a, const void *b)
{
  const struct reference *x = a, *y = b;
  if (x->due_ns != y->due_ns) return x->due_ns < y->due_ns ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order ? 1 : 0;
}

static uint64_t test_random(uint64_t *state)
{
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

static void test_heap_against_reference(void **unused)
{
  (void)unused;
  const char *replay = getenv("TALLY_TEST_SEED");
  uint64_t seed = replay != NULL ? strtoull(replay, NULL, 10) : (uint64_t)time(NULL);
  print_message("seed %llu (TALLY_TEST_SEED=%llu replays it)\n", (unsigned long long)seed,
    (unsigned long long)seed);
  uint64_t state = seed | 1u;
  static struct reference held[TALLY_CLUSTER_FAULT_QUEUE_MAX];
  uint32_t held_count = 0;
  uint64_t now = T0;
  uint32_t next_id = 0;
  uint64_t drops = 0;
  uint64_t popped = 0;
  for (uint32_t step = 0; step < 300000; step++) {
    uint64_t choice = test_random(&state) % 100;
    if (choice < 50) { /* offer with a delay of 1..40 ms */
      uint32_t delay_ms = 1u + (uint32_t)(test_random(&state) % 40u);
      set(delay_ms, 0, 0);
      enum tally_cluster_fault_verdict verdict = offer(now, next_id, 4 + test_random(&state) % 60);
      if (held_count == TALLY_CLUSTER_FAULT_QUEUE_MAX) {
        assert_int_equal(verdict, TALLY_CLUSTER_FAULT_DROP);
        drops++;
      } else {
        assert_int_equal(verdict, TALLY_CLUSTER_FAULT_HELD);
        held[held_count++] = (struct reference){ .due_ns = now + delay_ms * MS, .order = next_id,
          .id = next_id };
      }
      next_id++;
    } else if (choice < 95) { /* time passes: 0..20 us, so the queue fills at times */
      now += test_random(&state) % (MS / 50u);
    } else { /* drain what is due, in the reference's order */
      qsort(held, held_count, sizeof held[0], reference_compare);
      uint32_t due_count = 0;
      while (due_count < held_count && held[due_count].due_ns <= now) {
        uint64_t due = 0;
        assert_int_equal(pop(now, &due), held[due_count].id);
        assert_int_equal(due, held[due_count].due_ns);
        due_count++;
      }
      assert_int_equal(pop(now, NULL), -1);
      memmove(held, held + due_count, (held_count - due_count) * sizeof held[0]);
      held_count -= due_count;
      popped += due_count;
      assert_int_equal(tally_cluster_fault_next_due_ns(&fault),
        held_count == 0 ? UINT64_MAX : held[0].due_ns);
    }
  }
  assert_int_equal(fault.dropped, drops);
  assert_int_equal(fault.delayed, popped + held_count);
  assert_true(drops > 0 && popped > 10000); /* the run reached the bound and drained a lot */
  qsort(held, held_count, sizeof held[0], reference_compare);
  for (uint32_t i = 0; i < held_count; i++) assert_int_equal(pop(UINT64_MAX, NULL), held[i].id);
  assert_int_equal(pop(UINT64_MAX, NULL), -1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_off_by_default, setup, teardown),
    cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
    cmocka_unit_test_setup_teardown(test_loss_all_and_fraction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fixed_delay_keeps_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_jitter_bounds_and_reorder, setup, teardown),
    cmocka_unit_test_setup_teardown(test_queue_bound_and_reuse, setup, teardown),
    cmocka_unit_test_setup_teardown(test_settings_change_while_held, setup, teardown),
    cmocka_unit_test_setup_teardown(test_heap_against_reference, setup, teardown),
  };
  int count = (int)(sizeof(tests) / sizeof(tests[0]));
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("%d passed, %d failed\n", count - failed, failed);
  return failed == 0 ? 0 : 1;
}
