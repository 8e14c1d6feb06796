/*
 * persister.c — group commit. Order matters and is asserted: the applied
 * sequence of every lcore is read (acquire) *before* the persist, so the
 * persist covers every batch counted in it; only then is durable_seq
 * published (release) for the lcore to release the matching acks. What
 * the persist is depends on the persistence mode (mode_persist.c).
 *
 * Thread: the persister (start and stop: start-up and shutdown, main thread).
 */
#include <assert.h>
#include <errno.h>
#include <time.h>

#include "modes.h"
#include "persister.h"

static void stat_store(uint64_t *stat, uint64_t value)
{
  __atomic_store_n(stat, value, __ATOMIC_RELAXED);
}

void tally_persister_commit(struct tally_appliance *appliance)
{
  assert(appliance->lcore_count >= 1);
  assert(appliance->lcore_count <= TALLY_LCORES_MAX);
  assert(appliance->persist != NULL);
  assert(appliance->persist->loop == NULL); /* log mode publishes in persister_log.c */
  uint64_t applied[TALLY_LCORES_MAX];
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    applied[i] = __atomic_load_n(&appliance->lcores[i].stats.applied_seq, __ATOMIC_ACQUIRE);
  }
  uint64_t start_ns = tally_clock_mono_ns();
  appliance->persist->persist(&appliance->store); /* group commit: msync; per burst: nothing */
  uint64_t end_ns = tally_clock_mono_ns();
  for (uint32_t i = 0; i < appliance->lcore_count; i++) {
    assert(applied[i] >= appliance->lcores[i].durable_seq);
    __atomic_store_n(&appliance->lcores[i].durable_seq, applied[i], __ATOMIC_RELEASE);
  }
  struct tally_persister_stats *stats = &appliance->persister_stats;
  uint64_t duration_ns = end_ns - start_ns;
  stat_store(&stats->commit_ns_last, duration_ns);
  if (duration_ns > stats->commit_ns_max) stat_store(&stats->commit_ns_max, duration_ns);
  stat_store(&stats->last_commit_mono_ns, end_ns);
  stat_store(&stats->last_commit_unix_ns, tally_clock_unix_ns());
  stat_store(&stats->commits, stats->commits + 1);
}

static void sleep_until(uint64_t deadline_mono_ns)
{
  struct timespec deadline = {
    .tv_sec = (time_t)(deadline_mono_ns / 1000000000ull),
    .tv_nsec = (long)(deadline_mono_ns % 1000000000ull),
  };
  /* Bounded: EINTR retries at most a few times per interval in practice. */
  for (uint32_t attempt = 0; attempt < TALLY_PERSISTER_SLEEP_RETRIES_MAX; attempt++) {
    if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) != EINTR) return;
  }
}

static void *persister_main(void *arg)
{
  struct tally_appliance *appliance = arg;
  if (appliance->persist->loop != NULL) { /* log mode: persister_log.c */
    appliance->persist->loop(appliance);
    return NULL;
  }
  uint64_t interval_ns = (uint64_t)appliance->config.commit_interval_ms * 1000000ull;
  assert(interval_ns >= TALLY_COMMIT_INTERVAL_MS_MIN * 1000000ull);
  assert(interval_ns <= TALLY_COMMIT_INTERVAL_MS_MAX * 1000000ull);
  uint64_t next_ns = tally_clock_mono_ns() + interval_ns;
  while (!__atomic_load_n(&appliance->persister_quit, __ATOMIC_RELAXED)) {
    sleep_until(next_ns);
    tally_persister_commit(appliance);
    uint64_t now_ns = tally_clock_mono_ns();
    next_ns += interval_ns;
    if (next_ns < now_ns) next_ns = now_ns + interval_ns; /* overran: do not burst */
  }
  tally_persister_commit(appliance);
  return NULL;
}

int tally_persister_start(struct tally_appliance *appliance)
{
  assert(!appliance->persister_running);
  assert(appliance->lcores != NULL);
  appliance->persister_quit = false;
  int rc = pthread_create(&appliance->persister, NULL, persister_main, appliance);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  pthread_setname_np(appliance->persister, "tally-persist");
  appliance->persister_running = true;
  return 0;
}

void tally_persister_stop(struct tally_appliance *appliance)
{
  if (!appliance->persister_running) return;
  __atomic_store_n(&appliance->persister_quit, true, __ATOMIC_RELAXED);
  int rc = pthread_join(appliance->persister, NULL);
  assert(rc == 0);
  (void)rc;
  appliance->persister_running = false;
}
