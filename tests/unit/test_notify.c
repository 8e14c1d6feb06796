/*
 * test_notify.c — tallyd's systemd notifications (control/daemon/notify.c)
 * around a fake single-node appliance (control_fakes.c): the test binds the
 * Unix datagram socket that NOTIFY_SOCKET names and reads what each round
 * sent. The clock is the test's (fake_clock_mono_ns and the now_ns argument),
 * so no check depends on timing:
 *   - STATUS= follows the readiness verdict's first line, sent when it changes;
 *   - READY=1 only once the readiness action says ready (an lcore polling,
 *     a recent store commit), and only once;
 *   - WATCHDOG=1 at half of WATCHDOG_USEC, only while ready; none without
 *     WATCHDOG_USEC;
 *   - STOPPING=1 at shutdown; nothing at all with NOTIFY_SOCKET unset.
 * Thread: the test's (as the control thread).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "control_fakes.h"
#include "notify.h"

#define SECOND_NS 1000000000ull

static char socket_path[108];
static int listen_fd = -1;
static struct tally_appliance appliance;
static struct tally_lcore lcore;

static int set_up(void **state)
{
  (void)state;
  snprintf(socket_path, sizeof socket_path, "/tmp/tally-test-notify-%d.sock", (int)getpid());
  unlink(socket_path);
  listen_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(listen_fd >= 0);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
  assert_int_equal(bind(listen_fd, (struct sockaddr *)&address, sizeof address), 0);
  assert_int_equal(setenv("NOTIFY_SOCKET", socket_path, 1), 0);
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  fake_appliance_init(&appliance);
  memset(&lcore, 0, sizeof lcore);
  appliance.lcores = &lcore;
  appliance.lcore_count = 1; /* not polling until a test says so */
  return 0;
}

static int tear_down(void **state)
{
  (void)state;
  close(listen_fd);
  unlink(socket_path);
  return 0;
}

/* Every datagram queued so far, joined with '|' (sd_notify's lines with '\n' kept). */
static const char *received(void)
{
  static char all[4096];
  all[0] = '\0';
  char message[1024];
  /* Bounded: each round takes one queued datagram, and the test sends few. */
  for (int round = 0; round < 64; round++) {
    ssize_t n = recv(listen_fd, message, sizeof message - 1, MSG_DONTWAIT);
    if (n < 0) break;
    message[n] = '\0';
    if (all[0] != '\0') strncat(all, "|", sizeof all - strlen(all) - 1);
    strncat(all, message, sizeof all - strlen(all) - 1);
  }
  return all;
}

static void set_polling(bool polling)
{
  __atomic_store_n(&lcore.running, polling, __ATOMIC_RELEASE);
}

static void test_ready_only_when_ready(void **state)
{
  (void)state;
  struct tally_notify notify;
  uint64_t now_ns = fake_clock_mono_ns;
  tally_notify_start(&notify, now_ns);
  tally_notify_tick(&notify, &appliance, now_ns);
  assert_string_equal(received(), "STATUS=not ready: dataplane lcore 0 not polling");
  tally_notify_tick(&notify, &appliance, now_ns);
  assert_string_equal(received(), ""); /* the same verdict: nothing new */
  set_polling(true);
  appliance.persister_stats.last_commit_mono_ns = 0; /* no commit yet */
  tally_notify_tick(&notify, &appliance, now_ns);
  const char *text = received();
  assert_non_null(strstr(text, "STATUS=not ready: no store commit"));
  assert_null(strstr(text, "READY=1"));
  appliance.persister_stats.last_commit_mono_ns = fake_clock_mono_ns;
  tally_notify_tick(&notify, &appliance, now_ns);
  assert_string_equal(received(), "STATUS=ready|READY=1");
  tally_notify_tick(&notify, &appliance, now_ns + 100 * SECOND_NS);
  assert_string_equal(received(), ""); /* READY=1 once; no watchdog asked for */
  tally_notify_stopping(&notify);
  assert_string_equal(received(), "STOPPING=1\nSTATUS=stopping");
}

static void test_watchdog_only_while_healthy(void **state)
{
  (void)state;
  assert_int_equal(setenv("WATCHDOG_USEC", "2000000", 1), 0); /* 2 s: a kick every 1 s */
  struct tally_notify notify;
  uint64_t now_ns = fake_clock_mono_ns;
  tally_notify_start(&notify, now_ns);
  assert_int_equal(notify.watchdog_interval_ns, SECOND_NS);
  tally_notify_tick(&notify, &appliance, now_ns); /* lcore not polling */
  assert_null(strstr(received(), "WATCHDOG=1"));
  set_polling(true);
  tally_notify_tick(&notify, &appliance, now_ns);
  assert_string_equal(received(), "STATUS=ready|READY=1|WATCHDOG=1");
  tally_notify_tick(&notify, &appliance, now_ns + SECOND_NS - 1);
  assert_string_equal(received(), ""); /* not due yet */
  tally_notify_tick(&notify, &appliance, now_ns + SECOND_NS);
  assert_string_equal(received(), "WATCHDOG=1");
  /* The persister stops committing: past the stall bound, no more kicks. */
  fake_clock_mono_ns += 10 * SECOND_NS;
  tally_notify_tick(&notify, &appliance, now_ns + 10 * SECOND_NS);
  assert_string_equal(received(), "STATUS=not ready: no store commit for 50 intervals");
  tally_notify_tick(&notify, &appliance, now_ns + 20 * SECOND_NS);
  assert_string_equal(received(), "");
  /* An lcore stops polling, commits resume: still no kick. */
  appliance.persister_stats.last_commit_mono_ns = fake_clock_mono_ns;
  set_polling(false);
  tally_notify_tick(&notify, &appliance, now_ns + 30 * SECOND_NS);
  assert_string_equal(received(), "STATUS=not ready: dataplane lcore 0 not polling");
  /* Healthy again: kicks resume, READY=1 is not sent twice. */
  set_polling(true);
  tally_notify_tick(&notify, &appliance, now_ns + 31 * SECOND_NS);
  assert_string_equal(received(), "STATUS=ready|WATCHDOG=1");
  fake_clock_mono_ns -= 10 * SECOND_NS;
}

static void test_nothing_without_notify_socket(void **state)
{
  (void)state;
  unsetenv("NOTIFY_SOCKET");
  assert_int_equal(setenv("WATCHDOG_USEC", "2000000", 1), 0);
  struct tally_notify notify;
  set_polling(true);
  tally_notify_start(&notify, fake_clock_mono_ns);
  tally_notify_tick(&notify, &appliance, fake_clock_mono_ns);
  tally_notify_tick(&notify, &appliance, fake_clock_mono_ns + 5 * SECOND_NS);
  tally_notify_stopping(&notify);
  assert_string_equal(received(), "");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_ready_only_when_ready, set_up, tear_down),
    cmocka_unit_test_setup_teardown(test_watchdog_only_while_healthy, set_up, tear_down),
    cmocka_unit_test_setup_teardown(test_nothing_without_notify_socket, set_up, tear_down),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
