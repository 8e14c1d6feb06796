/*
 * test_http.c — the HTTP interface (control/http.c, libmicrohttpd on its own
 * thread) on a loopback port, with the real actions (control/actions.c) and
 * output buffer (control/out.c) around a fake appliance (control_fakes.c):
 *   - /health/ready answers 200, and 503 once TALLY_COMMIT_STALL_INTERVALS
 *     commit intervals pass without a persist (the fake clock moves; no
 *     persister is stalled), and 200 again after a persist;
 *   - a /metrics body over TALLY_OUT_MEMORY_MAX closes the connection
 *     unanswered;
 *   - TALLY_HTTP_CONNECTIONS_MAX connections held open (from as many loopback
 *     addresses as the per-address limit needs): the next connection is not
 *     served while they are open, and is served once one closes;
 *   - /counters on two DRAM shards (control/daemon/counters.c): a body of
 *     many chunks with every counter once (summed over the shards), one
 *     HELP/TYPE per family, names, tags and statsd_name labels, ?prefix=,
 *     OpenMetrics ending "# EOF"; TALLY_HTTP_COUNTERS_STREAMS_MAX scrapes
 *     held unread, the next answered 503, served again once they close.
 *   - issue 14, L2: a slowloris from one address holding every connection it
 *     can get (twice the total limit tried) keeps at most
 *     TALLY_HTTP_CONNECTIONS_PER_IP_MAX, and /health/live from another
 *     address is answered 200 meanwhile.
 * The test thread is the client; it changes the fake clock and body size
 * only between requests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "actions.h"
#include "control_fakes.h"
#include "shard.h"
#include "store_format.h"
#include "http.h"

#define ANSWER_WAIT_S 60

static struct tally_appliance appliance;
static struct MHD_Daemon *daemon_http;

/* A loopback port free at this moment (the kernel's choice). */
static uint16_t free_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof address), 0);
  socklen_t size = sizeof address;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &size), 0);
  close(fd);
  return ntohs(address.sin_port);
}

static int setup(void **state)
{
  (void)state;
  fake_appliance_init(&appliance);
  fake_body_bytes = 6;
  appliance.config.http_ipv4 = INADDR_LOOPBACK;
  appliance.config.http_port = free_port();
  char error[256];
  daemon_http = tally_http_start(&appliance, error, sizeof error);
  if (daemon_http == NULL) fprintf(stderr, "%s\n", error);
  return daemon_http == NULL ? -1 : 0;
}

static int teardown(void **state)
{
  (void)state;
  tally_http_stop(daemon_http);
  return 0;
}

/* A connection from 127.0.0.source (1: the default loopback address). */
static int http_connect_from(uint32_t source)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_true(source >= 1 && source <= 254);
  struct sockaddr_in local = { .sin_family = AF_INET,
    .sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1u + source) };
  assert_int_equal(bind(fd, (struct sockaddr *)&local, sizeof local), 0);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(appliance.config.http_port),
    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof address), 0);
  struct timeval wait = { .tv_sec = ANSWER_WAIT_S };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  return fd;
}

static int http_connect(void) { return http_connect_from(1); }

static void send_request(int fd, const char *path)
{
  char request[256];
  int size = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\n\r\n", path);
  assert_int_equal(write(fd, request, (size_t)size), size);
}

/*
 * Reads the whole answer (HTTP/1.0: the server closes). Returns the status
 * code, 0 if the server closed without a byte; body points into a static buffer.
 */
static int read_answer(int fd, const char **body)
{
  static char answer[8192];
  size_t used = 0;
  ssize_t n;
  /* Bounded by the buffer; a read that times out (ANSWER_WAIT_S) fails the test. */
  while (used < sizeof answer - 1 && (n = read(fd, answer + used, sizeof answer - 1 - used)) != 0) {
    if (n < 0) {
      assert_true(errno == ECONNRESET); /* not EAGAIN: no answer at all is a failure */
      break;
    }
    used += (size_t)n;
  }
  answer[used] = '\0';
  close(fd);
  if (used == 0) return 0;
  int status = 0;
  assert_int_equal(sscanf(answer, "HTTP/1.%*d %d", &status), 1);
  const char *end = strstr(answer, "\r\n\r\n");
  assert_non_null(end);
  *body = end + 4;
  return status;
}

static int http_get(const char *path, const char **body)
{
  int fd = http_connect();
  send_request(fd, path);
  return read_answer(fd, body);
}

/* ---- /health/ready ------------------------------------------------------------ */

static void test_ready_503_after_stall_intervals(void **state)
{
  (void)state;
  const char *body = NULL;
  assert_int_equal(http_get("/health/ready", &body), 200);
  assert_string_equal(body, "ready\n");
  uint64_t last = appliance.persister_stats.last_commit_mono_ns;
  uint64_t stall_ns = (uint64_t)appliance.config.commit_interval_ms * 1000000ull *
    TALLY_COMMIT_STALL_INTERVALS;
  __atomic_store_n(&fake_clock_mono_ns, last + stall_ns, __ATOMIC_RELEASE);
  assert_int_equal(http_get("/health/ready", &body), 200); /* 50 intervals exactly */
  __atomic_store_n(&fake_clock_mono_ns, last + stall_ns + 1, __ATOMIC_RELEASE);
  assert_int_equal(http_get("/health/ready", &body), 503);
  assert_string_equal(body, "not ready: no store commit for 50 intervals\n");
  assert_int_equal(http_get("/health/live", &body), 200); /* live all along */
  __atomic_store_n(&appliance.persister_stats.last_commit_mono_ns, last + stall_ns + 1,
    __ATOMIC_RELEASE); /* a persist */
  assert_int_equal(http_get("/health/ready", &body), 200);
}

/* ---- the body bound ------------------------------------------------------------- */

static void test_metrics_over_bound_closed_unanswered(void **state)
{
  (void)state;
  const char *body = NULL;
  fake_body_bytes = TALLY_OUT_MEMORY_MAX;
  assert_int_equal(http_get("/metrics", &body), 0);
  fake_body_bytes = 100;
  assert_int_equal(http_get("/metrics", &body), 200);
  assert_int_equal(strlen(body), 100);
}

/* ---- the connection limit ----------------------------------------------------- */

/* Whether fd has bytes (or EOF) to read within wait_ms. */
static bool readable(int fd, int wait_ms)
{
  struct pollfd one = { .fd = fd, .events = POLLIN };
  int ready = poll(&one, 1, wait_ms);
  assert_true(ready >= 0);
  return ready == 1;
}

/* GET path until it is served (a connection refused at the limit answers nothing). */
static int get_until_served(const char *path, uint32_t attempts_max)
{
  const char *body = NULL;
  /* Bounded: attempts_max tries, each answered or refused at once. */
  for (uint32_t attempt = 1; attempt <= attempts_max; attempt++) {
    int status = http_get(path, &body);
    if (status != 0) return status;
  }
  return 0;
}

/*
 * One round: TALLY_HTTP_CONNECTIONS_MAX connections held open (a request
 * line, no end of headers), then one more. Returns whether the round was
 * clean: every held connection still open after the extra one was tried (an
 * idle one could have met HTTP_TIMEOUT_S if this thread was descheduled that
 * long). *extra_status: the extra connection's answer (0: closed unanswered).
 */
static bool limit_round(int *held, int *extra_status)
{
  for (uint32_t i = 0; i < TALLY_HTTP_CONNECTIONS_MAX; i++) {
    held[i] = http_connect_from(2u + i / TALLY_HTTP_CONNECTIONS_PER_IP_MAX);
    assert_int_equal(write(held[i], "GET /health/live HTTP/1.0\r\n", 27), 27);
  }
  const char *body = NULL;
  *extra_status = http_get("/health/live", &body);
  bool clean = true;
  for (uint32_t i = 0; i < TALLY_HTTP_CONNECTIONS_MAX; i++) {
    if (readable(held[i], 0)) clean = false; /* the server closed it */
  }
  return clean;
}

static void test_connection_limit(void **state)
{
  (void)state;
  int held[TALLY_HTTP_CONNECTIONS_MAX];
  int extra_status = -1;
  bool clean = false;
  /* Bounded: three rounds; a round is unclean only if a held connection timed out. */
  for (uint32_t round = 0; round < 3 && !clean; round++) {
    clean = limit_round(held, &extra_status);
    if (!clean) {
      for (uint32_t i = 0; i < TALLY_HTTP_CONNECTIONS_MAX; i++) close(held[i]);
    }
  }
  assert_true(clean);
  assert_int_equal(extra_status, 0); /* one over the limit: closed, unanswered */
  /* One closes: a connection is served again (once the daemon has seen the close). */
  close(held[0]);
  assert_int_equal(get_until_served("/health/live", 1000), 200);
  for (uint32_t i = 1; i < TALLY_HTTP_CONNECTIONS_MAX; i++) close(held[i]);
  assert_int_equal(get_until_served("/health/ready", 1000), 200);
}


/* ---- /counters, streamed ---------------------------------------------------------- */

#define COUNTERS_MANY 60000u
#define COUNTERS_SHARD_MAX 65536u

static void *counters_regions[2];

/* Two DRAM shards in the fake store; "t.c<i>" = i for i < COUNTERS_MANY, and a few more. */
static void counters_fill(void)
{
  size_t size = tally_shard_region_size(COUNTERS_SHARD_MAX, 16);
  for (uint32_t i = 0; i < 2; i++) {
    counters_regions[i] = aligned_alloc(4096, size);
    assert_non_null(counters_regions[i]);
    memset(counters_regions[i], 0, size);
    assert_int_equal(tally_shard_attach(&appliance.store.shards[i], counters_regions[i], i,
      COUNTERS_SHARD_MAX, 16, true), 0);
  }
  appliance.store.geometry.shard_count = 2;
  char name[32];
  for (uint32_t i = 0; i < COUNTERS_MANY; i++) {
    uint32_t length = (uint32_t)snprintf(name, sizeof name, "t.c%u", i);
    assert_int_equal(tally_shard_add(&appliance.store.shards[i % 2], name, length,
      tally_store_name_hash(&appliance.store, name, length), (int64_t)i), TALLY_OK);
  }
  const struct { const char *name; uint32_t shard; int64_t delta; } more[] = {
    { "t.both", 0, 3 }, { "t.both", 1, 4 }, { "t_x", 1, -7 }, { "t{k=v}", 0, 5 },
    { "t{k=w}", 1, 6 }, { "other.x", 0, 1 },
  };
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
    uint32_t length = (uint32_t)strlen(more[i].name);
    assert_int_equal(tally_shard_add(&appliance.store.shards[more[i].shard], more[i].name, length,
      tally_store_name_hash(&appliance.store, more[i].name, length), more[i].delta), TALLY_OK);
  }
}

static void counters_empty(void)
{
  appliance.store.geometry.shard_count = 0;
  for (uint32_t i = 0; i < 2; i++) free(counters_regions[i]);
}

/* GET with headers; the whole HTTP/1.0 answer (the server closes) in a malloc'd buffer. */
static char *get_all(const char *path, const char *headers, int *status)
{
  int fd = http_connect();
  char request[512];
  int size = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\n%s\r\n", path, headers);
  assert_int_equal(write(fd, request, (size_t)size), size);
  size_t capacity = 16u << 20, used = 0; /* bounded: 16 MiB */
  char *answer = malloc(capacity);
  assert_non_null(answer);
  ssize_t n;
  while (used < capacity - 1 && (n = read(fd, answer + used, capacity - 1 - used)) > 0) {
    used += (size_t)n;
  }
  answer[used] = '\0';
  close(fd);
  *status = 0;
  if (used > 0) assert_int_equal(sscanf(answer, "HTTP/1.%*d %d", status), 1);
  return answer;
}

static size_t count_lines(const char *text, const char *start)
{
  size_t count = 0, length = strlen(start);
  for (const char *line = text; line != NULL && *line != '\0'; line = strchr(line, '\n')) {
    if (*line == '\n') line++;
    if (strncmp(line, start, length) == 0) count++;
  }
  return count;
}

static void test_counters_streamed(void **state)
{
  (void)state;
  counters_fill();
  int status = 0;
  char *answer = get_all("/counters?prefix=t", "", &status);
  assert_int_equal(status, 200);
  assert_non_null(strstr(answer, "Content-Type: text/plain; version=0.0.4"));
  assert_true(strlen(answer) > 8u * TALLY_HTTP_COUNTERS_CHUNK_SIZE); /* many refills */
  assert_int_equal(count_lines(answer, "t_c"), COUNTERS_MANY);
  assert_int_equal(count_lines(answer, "# TYPE t_c"), COUNTERS_MANY);
  assert_non_null(strstr(answer, "\nt_c59999 59999\n"));
  assert_non_null(strstr(answer, "\nt_both 7\n")); /* summed over both shards, once */
  assert_int_equal(count_lines(answer, "t_both"), 1);
  assert_non_null(strstr(answer, "\nt_x{statsd_name=\"t_x\"} -7\n"));
  assert_non_null(strstr(answer, "\nt{k=\"v\"} 5\n"));
  assert_non_null(strstr(answer, "\nt{k=\"w\"} 6\n"));
  assert_int_equal(count_lines(answer, "# TYPE t gauge"), 1); /* one family, two series */
  assert_int_equal(count_lines(answer, "other_x"), 0);
  assert_null(strstr(answer, "# EOF"));
  free(answer);
  answer = get_all("/counters?prefix=other", "Accept: application/openmetrics-text; "
    "version=1.0.0,text/plain;q=0.5\r\n", &status);
  assert_int_equal(status, 200);
  assert_non_null(strstr(answer, "Content-Type: application/openmetrics-text; version=1.0.0"));
  const char *body = strstr(answer, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "# HELP other_x Tally counter other.x\n# TYPE other_x gauge\n"
    "other_x 1\n# EOF\n");
  free(answer);
  answer = get_all("/counters?prefix=a%7Cb", "", &status);
  assert_int_equal(status, 400);
  free(answer);
  counters_empty();
}

/* Scrapes held unread: the next is 503 while they stream, served once they are gone. */
static void test_counters_streams_limit(void **state)
{
  (void)state;
  counters_fill();
  int held[TALLY_HTTP_COUNTERS_STREAMS_MAX];
  for (uint32_t i = 0; i < TALLY_HTTP_COUNTERS_STREAMS_MAX; i++) {
    held[i] = http_connect();
    send_request(held[i], "/counters");
    assert_true(readable(held[i], ANSWER_WAIT_S * 1000)); /* its stream is open */
  }
  int status = 0;
  char *answer = get_all("/counters", "", &status);
  assert_int_equal(status, 503);
  assert_non_null(strstr(answer, "too many /counters scrapes at once"));
  free(answer);
  for (uint32_t i = 0; i < TALLY_HTTP_COUNTERS_STREAMS_MAX; i++) close(held[i]);
  /* Bounded: the daemon notices each close at its next write. */
  for (uint32_t attempt = 0; attempt < 1000 && status != 200; attempt++) {
    answer = get_all("/counters?prefix=other", "", &status);
    free(answer);
  }
  assert_int_equal(status, 200);
  counters_empty();
}

/* ---- issue 14, L2: one source cannot take every connection ---------------------- */

/*
 * Before: 16 connections in all, none per source: a client holding them
 * made /health/live fail, and an orchestrator restarted the node.
 */
static void test_slowloris_one_source_live_answers(void **state)
{
  (void)state;
  enum { TRIES = 2 * TALLY_HTTP_CONNECTIONS_MAX };
  int attacker[TRIES];
  uint32_t held = 0;
  /* Each connection sends a request line and never ends its headers. */
  for (uint32_t i = 0; i < TRIES; i++) {
    attacker[i] = http_connect_from(9);
    ssize_t sent = send(attacker[i], "GET /health/live HTTP/1.0\r\n", 27, MSG_NOSIGNAL);
    (void)sent; /* refused ones may already be closed */
  }
  const char *body = NULL;
  int status = http_get("/health/live", &body); /* another source */
  for (uint32_t i = 0; i < TRIES; i++) {
    if (!readable(attacker[i], 0)) held++; /* still open: the server keeps it */
    close(attacker[i]);
  }
  assert_int_equal(status, 200);
  assert_string_equal(body, "live\n");
  assert_true(held <= TALLY_HTTP_CONNECTIONS_PER_IP_MAX);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_ready_503_after_stall_intervals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_metrics_over_bound_closed_unanswered, setup, teardown),
    cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_counters_streamed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_counters_streams_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_slowloris_one_source_live_answers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
