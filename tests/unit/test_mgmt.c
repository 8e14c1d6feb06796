/*
 * test_mgmt.c — the management socket (control/mgmt.c) on a real Unix
 * socket, with the real actions (control/actions.c) and output buffer
 * (control/out.c) around a fake appliance (control_fakes.c), and the real
 * tallyctl as the client where its exit status is the point:
 *   - out.c's in-memory bound (TALLY_OUT_MEMORY_MAX): the byte that crosses
 *     it fails the buffer, for good, and nothing is handed over;
 *   - a request line of TALLY_MGMT_LINE_MAX bytes is read, one byte more is
 *     answered with status 2 unread;
 *   - a client that connects and sends nothing is dropped after
 *     TALLY_MGMT_TIMEOUT_S (status 2), and the next client is served;
 *   - an answer over the bound is status 3, and tallyctl exits 3 with
 *     "answer too large";
 *   - readiness: ready until TALLY_COMMIT_STALL_INTERVALS commit intervals
 *     pass without a persist, then "not ready" (status 4, tallyctl exit 1);
 *   - issue 14, M4: a client trickling its line a byte at a time is dropped
 *     at the connection's absolute deadline (the test's clock moves with
 *     each byte: no real wait); a command that changes state from a user
 *     that is not root, tallyd's or in control.admin_group is refused
 *     (status 6) while reads are served; the socket is 0660 from bind on,
 *     whatever the umask (bind is wrapped to look at it right then); a
 *     socket a live listener holds is never replaced, a stale one is.
 * Usage (meson): test_mgmt PATH_OF_TALLYCTL
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "actions.h"
#include "control_fakes.h"
#include "mgmt.h"
#include "modes.h"

static const char *tallyctl_path;
static struct tally_appliance appliance;
static char socket_path[108];
static int listen_fd = -1;

/*
 * bind and accept4, wrapped: the mode the socket file has the moment bind
 * creates it (before anything could chmod it), and a count of accepts the
 * trickling client waits on.
 */
static mode_t bound_mode;
static uint32_t accepts;

int bind(int fd, const struct sockaddr *address, socklen_t length)
{
  int rc = (int)syscall(SYS_bind, fd, address, length);
  struct stat status;
  if (rc == 0 && address->sa_family == AF_UNIX &&
      lstat(((const struct sockaddr_un *)address)->sun_path, &status) == 0) {
    bound_mode = status.st_mode & 07777;
  }
  return rc;
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags)
{
  int rc = (int)syscall(SYS_accept4, fd, address, length, flags);
  __atomic_add_fetch(&accepts, 1, __ATOMIC_RELEASE);
  return rc;
}

static int setup(void **state)
{
  (void)state;
  fake_appliance_init(&appliance);
  appliance.mgmt_admin_gid = -1;
  fake_body_bytes = 6;
  snprintf(socket_path, sizeof socket_path, "/tmp/tally-test-mgmt.%d/sock", (int)getpid());
  char error[256];
  listen_fd = tally_mgmt_listen(socket_path, error, sizeof error);
  if (listen_fd < 0) fprintf(stderr, "%s\n", error);
  return listen_fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
  (void)state;
  tally_mgmt_close(listen_fd, socket_path);
  char directory[sizeof socket_path];
  snprintf(directory, sizeof directory, "%s", socket_path);
  *strrchr(directory, '/') = '\0';
  rmdir(directory);
  return 0;
}

/* Waits (bounded) for a client to be queued, then serves it as the control loop does. */
static void serve_next(void)
{
  struct pollfd waiting = { .fd = listen_fd, .events = POLLIN };
  assert_int_equal(poll(&waiting, 1, 60 * 1000), 1);
  tally_mgmt_serve_one(&appliance, listen_fd);
}

/* A connected client; the listener queues it until tally_mgmt_serve_one accepts. */
static int client_connect(void)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof address), 0);
  return fd;
}

static void client_send(int fd, const char *data, size_t size)
{
  assert_int_equal(write(fd, data, size), (ssize_t)size);
}

/* Reads until the server closes; returns the answer (static, NUL-terminated). */
static const char *client_answer(int fd)
{
  static char answer[4096];
  size_t used = 0;
  ssize_t n;
  /* Bounded by the buffer: every round reads bytes or ends. */
  while (used < sizeof answer - 1 && (n = read(fd, answer + used, sizeof answer - 1 - used)) > 0) {
    used += (size_t)n;
  }
  answer[used] = '\0';
  close(fd);
  return answer;
}

/* Serves one request over the socket: LINE (no newline added) in, the answer out. */
static const char *request(const char *line, size_t size)
{
  int fd = client_connect();
  client_send(fd, line, size);
  serve_next();
  return client_answer(fd);
}

/* Runs tallyctl -s SOCKET ARGUMENT while this thread serves it; its exit status. */
static int run_tallyctl(const char *argument, char *stderr_text, size_t stderr_size)
{
  int err[2];
  assert_int_equal(pipe(err), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(err[1], 2);
    close(err[0]);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    execl(tallyctl_path, "tallyctl", "-s", socket_path, argument, (char *)NULL);
    _exit(127);
  }
  close(err[1]);
  serve_next();
  size_t used = 0;
  ssize_t n;
  /* Until tallyctl exits (EOF), so it never writes to a closed pipe; bounded by the buffer. */
  while (used < stderr_size - 1 && (n = read(err[0], stderr_text + used, stderr_size - 1 - used)) > 0) {
    used += (size_t)n;
  }
  stderr_text[used] = '\0';
  close(err[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status)) fprintf(stderr, "tallyctl: status %#x, stderr: %s\n", status, stderr_text);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

/* ---- out.c: the in-memory bound ------------------------------------------- */

static void test_out_memory_bound(void **state)
{
  (void)state;
  struct tally_out out;
  tally_out_init_memory(&out);
  static char block[1024 * 1024 + 1];
  memset(block, 'b', sizeof block - 1);
  /* Up to one byte under the bound: every byte kept (the buffer keeps a NUL's room). */
  for (uint32_t i = 0; i < TALLY_OUT_MEMORY_MAX / (sizeof block - 1) - 1; i++) {
    tally_out_printf(&out, "%s", block);
  }
  size_t rest = TALLY_OUT_MEMORY_MAX - out.used - 1;
  assert_true(rest <= sizeof block - 1);
  tally_out_printf(&out, "%.*s", (int)rest, block);
  assert_false(out.failed);
  assert_int_equal(out.used, TALLY_OUT_MEMORY_MAX - 1);
  tally_out_printf(&out, "c"); /* the byte that needs a buffer over the bound */
  assert_true(out.failed);
  tally_out_printf(&out, "d"); /* sticky */
  assert_true(out.failed);
  size_t length = 12345;
  assert_null(tally_out_take(&out, &length));
  assert_int_equal(length, 12345);
}

static void test_out_memory_small_answer_whole(void **state)
{
  (void)state;
  struct tally_out out;
  tally_out_init_memory(&out);
  tally_out_printf(&out, "%s %d\n", "name", 42);
  size_t length = 0;
  char *text = tally_out_take(&out, &length);
  assert_non_null(text);
  assert_int_equal(length, 8);
  assert_memory_equal(text, "name 42\n", 8);
  free(text);
}

/* ---- the request line ------------------------------------------------------ */

static void test_line_of_the_limit_read(void **state)
{
  (void)state;
  char line[TALLY_MGMT_LINE_MAX + 2];
  memset(line, 'a', sizeof line);
  memcpy(line, "list ", 5);
  line[TALLY_MGMT_LINE_MAX] = '\n';
  /* Read and dispatched: "list" answers its own refusal of the long prefix. */
  const char *answer = request(line, TALLY_MGMT_LINE_MAX + 1);
  assert_string_equal(answer, "2\nprefix longer than 224 bytes\n.\n");
  assert_int_equal(appliance.mgmt_requests, 1);
}

static void test_line_over_the_limit_refused(void **state)
{
  (void)state;
  char line[TALLY_MGMT_LINE_MAX + 2];
  memset(line, 'a', sizeof line);
  memcpy(line, "list ", 5);
  line[TALLY_MGMT_LINE_MAX + 1] = '\n';
  const char *answer = request(line, TALLY_MGMT_LINE_MAX + 2);
  assert_string_equal(answer, "2\nrequest line missing, too long or timed out\n.\n");
  assert_int_equal(appliance.mgmt_requests, 0); /* never dispatched */
  assert_int_equal(appliance.mgmt_errors, 1);
}

/* A client that connects and says nothing is dropped after the timeout; the next is served. */
static void test_silent_client_dropped_next_served(void **state)
{
  (void)state;
  int silent = client_connect();
  int next = client_connect();
  client_send(next, "ready\n", 6);
  serve_next(); /* the silent one: returns after TALLY_MGMT_TIMEOUT_S */
  assert_string_equal(client_answer(silent), "2\nrequest line missing, too long or timed out\n.\n");
  serve_next();
  assert_string_equal(client_answer(next), "0\nready\n.\n");
  assert_int_equal(appliance.mgmt_errors, 1);
  assert_int_equal(appliance.mgmt_requests, 1);
}

/* ---- issue 14, M4: the deadline, who may change state, the socket file ---------- */

struct trickle {
  int fd;
  uint32_t accepts_before;
};

/* Sends "ready\n" a byte at a time once the server accepted; the clock moves 2 s per byte. */
static void *trickle_main(void *arg)
{
  struct trickle *trickle = arg;
  /* Bounded: the server accepts right after the test starts this thread. */
  for (uint32_t spin = 0; spin < 100000000u &&
       __atomic_load_n(&accepts, __ATOMIC_ACQUIRE) == trickle->accepts_before; spin++) {
    sched_yield();
  }
  for (const char *c = "ready\n"; *c != '\0'; c++) {
    __atomic_add_fetch(&fake_clock_mono_ns, 2000000000ull, __ATOMIC_RELEASE);
    if (send(trickle->fd, c, 1, MSG_NOSIGNAL) != 1) break; /* dropped: the rest is refused */
  }
  return NULL;
}

/* Before: 5 s per read, so a byte every 4.9 s held the thread for 43 minutes. */
static void test_trickling_client_dropped_at_deadline(void **state)
{
  (void)state;
  struct trickle trickle = { .fd = client_connect(),
    .accepts_before = __atomic_load_n(&accepts, __ATOMIC_ACQUIRE) };
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, trickle_main, &trickle), 0);
  serve_next();
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_string_equal(client_answer(trickle.fd),
    "2\nrequest line missing, too long or timed out\n.\n");
  assert_int_equal(appliance.mgmt_requests, 0);
  assert_int_equal(appliance.mgmt_errors, 1);
  appliance.persister_stats.last_commit_mono_ns = fake_clock_mono_ns; /* the clock moved 12 s */
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n"); /* the next is served */
}

/* Runs LINE as nobody (uid and gid 65534) against the socket; the answer. */
static const char *request_as_nobody(const char *line)
{
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pipe_fds[0]);
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) _exit(3);
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) _exit(4);
    char answer[512];
    ssize_t n;
    size_t used = 0;
    while (used < sizeof answer && (n = read(fd, answer + used, sizeof answer - used)) > 0) {
      used += (size_t)n;
    }
    if (write(pipe_fds[1], answer, used) != (ssize_t)used) _exit(5);
    _exit(0);
  }
  close(pipe_fds[1]);
  serve_next();
  static char answer[512];
  size_t used = 0;
  ssize_t n;
  while (used < sizeof answer - 1 && (n = read(pipe_fds[0], answer + used, sizeof answer - 1 - used)) > 0) {
    used += (size_t)n;
  }
  answer[used] = '\0';
  close(pipe_fds[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  return answer;
}

/* As if nobody were in the socket's group: it may connect. */
static void open_to_everyone(void)
{
  char directory[sizeof socket_path];
  snprintf(directory, sizeof directory, "%s", socket_path);
  *strrchr(directory, '/') = '\0';
  assert_int_equal(chmod(directory, 0755), 0);
  assert_int_equal(chmod(socket_path, 0666), 0);
}

/* Before: anyone who could connect (the socket's group) could run reload, readonly, drain. */
static void test_state_change_needs_permission(void **state)
{
  (void)state;
  if (geteuid() != 0) skip(); /* needs to become nobody */
  open_to_everyone();
  assert_string_equal(request_as_nobody("readonly on\n"), "6\nnot permitted: 'readonly' changes "
    "state (root, tallyd's user or control.admin_group only)\n.\n");
  assert_false(appliance.read_only_forced);
  assert_int_equal(appliance.mgmt_refused, 1);
  assert_string_equal(request_as_nobody("ready\n"), "0\nready\n.\n"); /* reads are served */
  appliance.mgmt_admin_gid = 65534; /* control.admin_group = nogroup */
  assert_string_equal(request_as_nobody("readonly on\n"),
    "0\nread-only on (reliable writes refused with READ_ONLY)\n.\n");
  assert_true(appliance.read_only_forced);
  assert_int_equal(appliance.mgmt_refused, 1);
  /* Root always may. */
  appliance.mgmt_admin_gid = -1;
  assert_string_equal(request("rejoin\n", 7),
    "0\nread-only off (reliable writes accepted)\n.\n");
}

/* tallyctl degrade: admin-only like readonly; auto or one level 0..3; anything else refused. */
static void test_degrade_override(void **state)
{
  (void)state;
  if (geteuid() != 0) skip(); /* needs to become nobody */
  open_to_everyone();
  appliance.mgmt_admin_gid = -1;
  uint64_t refused = appliance.mgmt_refused;
  assert_string_equal(request_as_nobody("degrade 3\n"), "6\nnot permitted: 'degrade' changes "
    "state (root, tallyd's user or control.admin_group only)\n.\n");
  assert_int_equal(appliance.degrade.level, 0);
  assert_int_equal(appliance.mgmt_refused, refused + 1);
  assert_string_equal(request("degrade 2\n", 10),
    "0\ndegradation level 2 (forced; 'degrade auto' ends it)\n.\n");
  assert_int_equal(appliance.degrade.level, 2);
  assert_true(appliance.degrade.overridden);
  assert_int_equal(strncmp(request("degrade 4\n", 10), "2\nunknown request (", 19), 0);
  assert_int_equal(strncmp(request("degrade 22\n", 11), "2\nunknown request (", 19), 0);
  assert_int_equal(appliance.degrade.level, 2);
  assert_string_equal(request("degrade auto\n", 13), "0\ndegradation level automatic (now 0)\n.\n");
  assert_int_equal(appliance.degrade.level, 0);
  assert_false(appliance.degrade.overridden);
}

/* Before: bind made the file under the process umask, chmod narrowed it after. */
static void test_socket_0660_from_bind(void **state)
{
  (void)state;
  tally_mgmt_close(listen_fd, socket_path);
  mode_t saved = umask(0);
  char error[256] = "";
  listen_fd = tally_mgmt_listen(socket_path, error, sizeof error);
  umask(saved);
  assert_true(listen_fd >= 0);
  assert_int_equal(bound_mode, 0660);
  struct stat status;
  assert_int_equal(stat(socket_path, &status), 0);
  assert_int_equal(status.st_mode & 07777, 0660);
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n");
}

/* Before: a second tallyd unlinked the first one's live socket and took it over. */
static void test_live_socket_never_replaced(void **state)
{
  (void)state;
  char error[256] = "";
  assert_int_equal(tally_mgmt_listen(socket_path, error, sizeof error), -1);
  assert_non_null(strstr(error, "is served by a running process"));
  serve_next(); /* the probe's connection: closed at once, refused */
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n"); /* the first still serves */
  /* A stale socket (its listener gone, the file left) is replaced. */
  close(listen_fd);
  listen_fd = tally_mgmt_listen(socket_path, error, sizeof error);
  assert_true(listen_fd >= 0);
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n");
}

/* ---- answers over the bound -------------------------------------------------- */

static void test_answer_too_large_status_3(void **state)
{
  (void)state;
  fake_body_bytes = TALLY_OUT_MEMORY_MAX;
  assert_string_equal(request("stats\n", 6), "3\nanswer too large or out of memory\n.\n");
}

static void test_tallyctl_answer_too_large_exits_3(void **state)
{
  (void)state;
  char text[512];
  fake_body_bytes = TALLY_OUT_MEMORY_MAX;
  assert_int_equal(run_tallyctl("stats", text, sizeof text), 3);
  assert_string_equal(text, "tallyctl: answer too large or out of memory\n");
  fake_body_bytes = TALLY_OUT_MEMORY_MAX - 1; /* the largest body that fits */
  assert_int_equal(run_tallyctl("stats", text, sizeof text), 0);
  assert_string_equal(text, "");
}

/* ---- readiness: the persister's stall ----------------------------------------- */

static void test_ready_until_stall_intervals(void **state)
{
  (void)state;
  uint64_t stall_ns = 10ull * 1000000ull * TALLY_COMMIT_STALL_INTERVALS;
  uint64_t last = appliance.persister_stats.last_commit_mono_ns;
  fake_clock_mono_ns = last + stall_ns; /* exactly 50 intervals: still ready */
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n");
  fake_clock_mono_ns = last + stall_ns + 1;
  assert_string_equal(request("ready\n", 6), "4\nnot ready: no store commit for 50 intervals\n.\n");
  char text[512];
  assert_int_equal(run_tallyctl("ready", text, sizeof text), 1);
  assert_string_equal(text, "tallyctl: not ready: no store commit for 50 intervals\n");
  appliance.persister_stats.last_commit_mono_ns = fake_clock_mono_ns; /* a persist */
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n");
  appliance.persister_stats.last_commit_mono_ns = 0; /* no commit yet, */
  fake_clock_mono_ns = stall_ns / 2; /* though the clock is within 50 intervals of 0 */
  assert_string_equal(request("ready\n", 6), "4\nnot ready: no store commit for 50 intervals\n.\n");
  appliance.store.mode = TALLY_PERSIST_PER_BURST; /* no persister: its stall does not apply */
  appliance.persist = tally_persist_ops_of(TALLY_PERSIST_PER_BURST);
  assert_string_equal(request("ready\n", 6), "0\nready\n.\n");
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: test_mgmt PATH_OF_TALLYCTL\n");
    return 64;
  }
  tallyctl_path = argv[1];
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_out_memory_bound),
    cmocka_unit_test(test_out_memory_small_answer_whole),
    cmocka_unit_test_setup_teardown(test_line_of_the_limit_read, setup, teardown),
    cmocka_unit_test_setup_teardown(test_line_over_the_limit_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_silent_client_dropped_next_served, setup, teardown),
    cmocka_unit_test_setup_teardown(test_answer_too_large_status_3, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tallyctl_answer_too_large_exits_3, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ready_until_stall_intervals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_trickling_client_dropped_at_deadline, setup, teardown),
    cmocka_unit_test_setup_teardown(test_state_change_needs_permission, setup, teardown),
    cmocka_unit_test_setup_teardown(test_degrade_override, setup, teardown),
    cmocka_unit_test_setup_teardown(test_socket_0660_from_bind, setup, teardown),
    cmocka_unit_test_setup_teardown(test_live_socket_never_replaced, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
