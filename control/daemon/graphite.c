/*
 * graphite.c — the Graphite push (graphite.h): a thread of its own reads every
 * counter into a bounded byte ring as carbon plaintext lines once per
 * graphite.interval_ms, and writes the ring to carbon over one TCP connection
 * with non-blocking sockets and poll(). Nothing here waits on carbon for
 * longer than one poll (TALLY_GRAPHITE_POLL_MS): a dead carbon fails the
 * connect (backoff with full jitter, then again), a slow one fills the ring,
 * and a line that does not fit is dropped whole and counted. Lines stay
 * whole on the wire: after a failure the line being sent is sent again from
 * its start on the next connection (carbon discards an unterminated line).
 *
 * The ring holds bytes at logical offsets: [line_start, head) was written to
 * the socket but is not yet known to end a line, [head, tail) waits. Space
 * is freed up to line_start only.
 *
 * Thread: tally-graphite (created on the main lcore's thread, so it shares
 * the main lcore's core: never a dataplane lcore); start and stop on the
 * control thread; the figures are read by the control and HTTP threads.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actions.h"
#include "breaker.h"
#include "graphite.h"
#include "graphite_name.h"

struct tally_graphite {
  struct tally_appliance *appliance;
  struct tally_graphite_config config;   /* a copy: graphite keys need a restart */
  pthread_t thread;
  volatile bool quit;
  char *ring;
  uint64_t capacity;
  uint64_t line_start;                   /* logical offsets, see the top of the file */
  uint64_t head;
  uint64_t tail;
  uint64_t snapshot_ends[TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX]; /* each queued snapshot's tail */
  uint32_t snapshot_first;
  uint32_t snapshot_count;
  int fd;                                /* -1: no connection */
  bool connecting;
  uint64_t connect_started_ns;
  uint64_t progress_ns;                  /* last byte carbon took, or the connect */
  uint32_t retry;                        /* failures since bytes last went out */
  uint64_t reconnect_ns;                 /* no connect before this */
  uint64_t random;                       /* splitmix64 state for the jitter */
  /* Read by other threads (relaxed). */
  struct tally_graphite_stats stats;
  uint64_t started_ns;
  uint64_t last_push_ns;                 /* 0: none yet */
  uint64_t buffered;                     /* tail - line_start */
  bool connected;
};

/* A figure written by this thread alone, read by others. */
#define STAT_ADD(graphite, field, amount)                                                    \
  __atomic_store_n(&(graphite)->stats.field, (graphite)->stats.field + (amount),             \
    __ATOMIC_RELAXED)

static uint64_t load(const uint64_t *value)
{
  return __atomic_load_n(value, __ATOMIC_RELAXED);
}

static uint64_t next_random(struct tally_graphite *graphite)
{
  uint64_t z = (graphite->random += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void publish_buffered(struct tally_graphite *graphite)
{
  assert(graphite->line_start <= graphite->head && graphite->head <= graphite->tail);
  assert(graphite->tail - graphite->line_start <= graphite->capacity);
  __atomic_store_n(&graphite->buffered, graphite->tail - graphite->line_start, __ATOMIC_RELAXED);
}

/* ---- The ring: lines in, bytes out -------------------------------------------------- */

/* Appends one whole line, or drops it (counted) if it does not fit. */
static void ring_append(struct tally_graphite *graphite, const char *line, size_t length)
{
  assert(length > 0 && length <= TALLY_GRAPHITE_LINE_SIZE_MAX);
  uint64_t used = graphite->tail - graphite->line_start;
  if (used + length > graphite->capacity) {
    STAT_ADD(graphite, lines_dropped, 1);
    return;
  }
  uint64_t at = graphite->tail % graphite->capacity;
  size_t first = length;
  if (at + first > graphite->capacity) first = (size_t)(graphite->capacity - at);
  memcpy(graphite->ring + at, line, first);
  memcpy(graphite->ring, line + first, length - first);
  graphite->tail += length;
}

struct snapshot {
  struct tally_graphite *graphite;
  uint64_t unix_s;
};

/* One counter's line: "prefix.path value timestamp\n". */
static bool snapshot_line(void *context, const char *name, size_t name_len, __int128 total)
{
  struct snapshot *snapshot = context;
  struct tally_graphite *graphite = snapshot->graphite;
  char line[TALLY_GRAPHITE_LINE_SIZE_MAX + 1];
  size_t prefix_len = strlen(graphite->config.prefix);
  assert(prefix_len <= TALLY_GRAPHITE_PREFIX_LEN_MAX);
  size_t length = 0;
  if (prefix_len > 0) {
    memcpy(line, graphite->config.prefix, prefix_len);
    line[prefix_len] = '.';
    length = prefix_len + 1;
  }
  size_t path_len = tally_graphite_path(name, name_len, line + length,
    TALLY_GRAPHITE_PATH_LEN_MAX + 1 - length);
  if (path_len == 0) {
    STAT_ADD(graphite, lines_dropped, 1);
    return true;
  }
  length += path_len;
  char value[TALLY_ACTION_TOTAL_SIZE];
  tally_action_format_total(value, total);
  int tail = snprintf(line + length, sizeof line - length, " %s %" PRIu64 "\n", value,
    snapshot->unix_s);
  assert(tail > 0 && (size_t)tail < sizeof line - length);
  ring_append(graphite, line, length + (size_t)tail);
  return true;
}

/* Counts a counter of a snapshot that has no room in the queue. */
static bool snapshot_drop(void *context, const char *name, size_t name_len, __int128 total)
{
  (void)name;
  (void)name_len;
  (void)total;
  STAT_ADD((struct tally_graphite *)context, lines_dropped, 1);
  return true;
}

static void take_snapshot(struct tally_graphite *graphite)
{
  STAT_ADD(graphite, snapshots, 1);
  if (graphite->snapshot_count == TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX) {
    tally_action_foreach_counter(graphite->appliance, "", 0, snapshot_drop, graphite);
    return;
  }
  uint64_t before = graphite->tail;
  struct snapshot snapshot = { graphite, tally_clock_unix_ns() / 1000000000ull };
  tally_action_foreach_counter(graphite->appliance, "", 0, snapshot_line, &snapshot);
  /* Nothing was waiting: a stall is measured from now, not from the last send. */
  if (before == graphite->head) graphite->progress_ns = tally_clock_mono_ns();
  if (graphite->tail != before) {
    uint32_t slot = (graphite->snapshot_first + graphite->snapshot_count) %
      TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX;
    graphite->snapshot_ends[slot] = graphite->tail;
    graphite->snapshot_count++;
  }
  publish_buffered(graphite);
}

/* Bytes [head, head + length) went out: lines, pushes, and the space before the last '\n'. */
static void ring_sent(struct tally_graphite *graphite, uint64_t length, uint64_t now_ns)
{
  assert(length > 0 && graphite->head + length <= graphite->tail);
  const char *bytes = graphite->ring + graphite->head % graphite->capacity;
  uint64_t lines = 0;
  for (uint64_t i = 0; i < length; i++) {
    if (bytes[i] != '\n') continue;
    lines++;
    graphite->line_start = graphite->head + i + 1;
  }
  graphite->head += length;
  STAT_ADD(graphite, bytes_sent, length);
  STAT_ADD(graphite, lines_sent, lines);
  graphite->progress_ns = now_ns;
  graphite->retry = 0;
  /* Bounded by the queue: every round retires one snapshot. */
  while (graphite->snapshot_count > 0 &&
         graphite->snapshot_ends[graphite->snapshot_first] <= graphite->line_start) {
    graphite->snapshot_first = (graphite->snapshot_first + 1) % TALLY_GRAPHITE_SNAPSHOTS_QUEUED_MAX;
    graphite->snapshot_count--;
    STAT_ADD(graphite, pushes, 1);
    __atomic_store_n(&graphite->last_push_ns, now_ns, __ATOMIC_RELAXED);
  }
  publish_buffered(graphite);
}

/* ---- The connection ------------------------------------------------------------------ */

/* Counts a failure and sets the next connect: backoff with full jitter, and a floor. */
static void retry_later(struct tally_graphite *graphite, bool connecting, uint64_t now_ns)
{
  assert(graphite->fd < 0);
  if (connecting) STAT_ADD(graphite, connect_failures, 1);
  else STAT_ADD(graphite, send_failures, 1);
  graphite->head = graphite->line_start;
  uint64_t delay_ms = tally_backoff_delay_ms(TALLY_GRAPHITE_BACKOFF_BASE_MS,
    TALLY_GRAPHITE_BACKOFF_MAX_MS, graphite->retry, next_random(graphite));
  if (delay_ms < TALLY_GRAPHITE_RECONNECT_MIN_MS) delay_ms = TALLY_GRAPHITE_RECONNECT_MIN_MS;
  assert(delay_ms <= TALLY_GRAPHITE_BACKOFF_MAX_MS);
  if (graphite->retry < UINT32_MAX) graphite->retry++;
  graphite->reconnect_ns = now_ns + delay_ms * 1000000ull;
  publish_buffered(graphite);
}

/* Closes the connection after a failure; the cut line is sent again on the next one. */
static void connection_failed(struct tally_graphite *graphite, bool connecting, uint64_t now_ns)
{
  assert(graphite->fd >= 0);
  close(graphite->fd);
  graphite->fd = -1;
  graphite->connecting = false;
  __atomic_store_n(&graphite->connected, false, __ATOMIC_RELAXED);
  retry_later(graphite, connecting, now_ns);
}

static void connect_start(struct tally_graphite *graphite, uint64_t now_ns)
{
  assert(graphite->fd < 0);
  struct sockaddr_in address = {
    .sin_family = AF_INET,
    .sin_port = htons(graphite->config.port),
    .sin_addr = { .s_addr = htonl(graphite->config.ipv4) },
  };
  graphite->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (graphite->fd < 0) {
    retry_later(graphite, true, now_ns);
    return;
  }
  graphite->connecting = true;
  graphite->connect_started_ns = now_ns;
  if (connect(graphite->fd, (struct sockaddr *)&address, sizeof address) == 0) {
    graphite->connecting = false;
  } else if (errno != EINPROGRESS) {
    connection_failed(graphite, true, now_ns);
    return;
  }
  if (!graphite->connecting) {
    STAT_ADD(graphite, connects, 1);
    graphite->progress_ns = now_ns;
    __atomic_store_n(&graphite->connected, true, __ATOMIC_RELAXED);
  }
}

/* The connect has an outcome (poll said writable or an error). */
static void connect_finish(struct tally_graphite *graphite, uint64_t now_ns)
{
  assert(graphite->connecting);
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(graphite->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
    connection_failed(graphite, true, now_ns);
    return;
  }
  graphite->connecting = false;
  graphite->progress_ns = now_ns;
  STAT_ADD(graphite, connects, 1);
  __atomic_store_n(&graphite->connected, true, __ATOMIC_RELAXED);
}

/* Writes what waits until the socket is full or the ring empty. */
static void send_some(struct tally_graphite *graphite, uint64_t now_ns)
{
  assert(graphite->fd >= 0 && !graphite->connecting);
  /* Bounded: at most the ring's capacity goes out per call, in chunks. */
  for (uint64_t budget = graphite->capacity; graphite->tail > graphite->head && budget > 0;) {
    uint64_t at = graphite->head % graphite->capacity;
    uint64_t length = graphite->tail - graphite->head;
    if (length > graphite->capacity - at) length = graphite->capacity - at;
    if (length > TALLY_GRAPHITE_SEND_CHUNK_SIZE) length = TALLY_GRAPHITE_SEND_CHUNK_SIZE;
    if (length > budget) length = budget;
    ssize_t sent = send(graphite->fd, graphite->ring + at, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (sent <= 0) {
      connection_failed(graphite, false, now_ns);
      return;
    }
    ring_sent(graphite, (uint64_t)sent, now_ns);
    budget -= (uint64_t)sent;
  }
}

/* carbon never writes: readable means it closed the connection (or reset it). */
static void check_closed(struct tally_graphite *graphite, uint64_t now_ns)
{
  char scratch[256];
  ssize_t got = recv(graphite->fd, scratch, sizeof scratch, MSG_DONTWAIT);
  if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) return;
  connection_failed(graphite, false, now_ns);
}

/* ---- The thread ------------------------------------------------------------------------ */

static int poll_timeout_ms(uint64_t now_ns, uint64_t until_ns)
{
  uint64_t wait_ms = TALLY_GRAPHITE_POLL_MS;
  if (until_ns > now_ns && (until_ns - now_ns) / 1000000ull < wait_ms) {
    wait_ms = (until_ns - now_ns) / 1000000ull + 1;
  }
  if (until_ns <= now_ns) wait_ms = 0;
  return (int)wait_ms;
}

/* One round: a snapshot when due, a connect when due, then one poll and its events. */
static void graphite_round(struct tally_graphite *graphite, uint64_t *snapshot_ns)
{
  uint64_t interval_ns = (uint64_t)graphite->config.interval_ms * 1000000ull;
  uint64_t now_ns = tally_clock_mono_ns();
  if (now_ns >= *snapshot_ns) {
    take_snapshot(graphite);
    *snapshot_ns += interval_ns;
    if (*snapshot_ns <= now_ns) *snapshot_ns = now_ns + interval_ns; /* overran: no burst */
  }
  bool waiting = graphite->tail > graphite->head;
  if (graphite->fd < 0 && waiting && now_ns >= graphite->reconnect_ns) {
    connect_start(graphite, now_ns);
  }
  uint64_t wake_ns = *snapshot_ns;
  if (graphite->fd < 0 && waiting && graphite->reconnect_ns < wake_ns) {
    wake_ns = graphite->reconnect_ns;
  }
  struct pollfd entry = { .fd = graphite->fd, .events = 0 };
  if (graphite->fd >= 0) {
    entry.events = graphite->connecting ? POLLOUT : (short)(POLLIN | (waiting ? POLLOUT : 0));
  }
  int ready = poll(&entry, 1, poll_timeout_ms(now_ns, wake_ns));
  now_ns = tally_clock_mono_ns();
  if (graphite->fd < 0) return;
  if (graphite->connecting) {
    if (ready > 0) connect_finish(graphite, now_ns);
    else if (now_ns - graphite->connect_started_ns >= TALLY_GRAPHITE_CONNECT_TIMEOUT_MS * 1000000ull)
      connection_failed(graphite, true, now_ns);
    return;
  }
  if (ready > 0 && (entry.revents & (POLLIN | POLLHUP | POLLERR))) check_closed(graphite, now_ns);
  if (graphite->fd >= 0 && ready > 0 && (entry.revents & POLLOUT)) send_some(graphite, now_ns);
  if (graphite->fd >= 0 && graphite->tail > graphite->head &&
      now_ns - graphite->progress_ns >= TALLY_GRAPHITE_SEND_STALL_MS * 1000000ull) {
    connection_failed(graphite, false, now_ns); /* carbon took nothing for too long */
  }
}

static void *graphite_main(void *arg)
{
  struct tally_graphite *graphite = arg;
  uint64_t snapshot_ns = tally_clock_mono_ns();
  /* Bounded by quit: every round waits at most TALLY_GRAPHITE_POLL_MS. */
  while (!__atomic_load_n(&graphite->quit, __ATOMIC_RELAXED)) {
    graphite_round(graphite, &snapshot_ns);
  }
  return NULL;
}

int tally_graphite_start(struct tally_appliance *appliance, char *error, size_t error_size)
{
  assert(appliance->graphite == NULL);
  const struct tally_graphite_config *config = &appliance->config.graphite;
  if (!config->enabled) return 0;
  assert(config->buffer_bytes >= TALLY_GRAPHITE_BUFFER_BYTES_MIN);
  struct tally_graphite *graphite = calloc(1, sizeof *graphite);
  char *ring = malloc(config->buffer_bytes);
  if (graphite == NULL || ring == NULL) {
    free(graphite);
    free(ring);
    snprintf(error, error_size, "graphite.buffer_bytes: cannot allocate %u bytes",
      config->buffer_bytes);
    return -1;
  }
  graphite->appliance = appliance;
  graphite->config = *config;
  graphite->ring = ring;
  graphite->capacity = config->buffer_bytes;
  graphite->fd = -1;
  graphite->started_ns = tally_clock_mono_ns();
  graphite->random = graphite->started_ns ^ ((uint64_t)getpid() << 32);
  int rc = pthread_create(&graphite->thread, NULL, graphite_main, graphite);
  if (rc != 0) {
    free(ring);
    free(graphite);
    snprintf(error, error_size, "graphite: cannot start its thread: %s", strerror(rc));
    return -1;
  }
  pthread_setname_np(graphite->thread, "tally-graphite");
  appliance->graphite = graphite;
  return 0;
}

void tally_graphite_stop(struct tally_graphite *graphite)
{
  if (graphite == NULL) return;
  __atomic_store_n(&graphite->quit, true, __ATOMIC_RELAXED);
  int rc = pthread_join(graphite->thread, NULL);
  assert(rc == 0);
  (void)rc;
  if (graphite->fd >= 0) close(graphite->fd);
  free(graphite->ring);
  free(graphite);
}

/* ---- Figures ---------------------------------------------------------------------------- */

/* Seconds since the last completed push (since the start while there was none). */
static double last_push_age_s(const struct tally_graphite *graphite)
{
  uint64_t last_ns = load(&graphite->last_push_ns);
  uint64_t now_ns = tally_clock_mono_ns();
  uint64_t since_ns = last_ns == 0 || last_ns > now_ns ? graphite->started_ns : last_ns;
  return (double)(now_ns - since_ns) / 1e9;
}

void tally_graphite_stats(const struct tally_graphite *graphite, struct tally_out *out)
{
  if (graphite == NULL) return;
#define TALLY_GRAPHITE_STAT_LINE(field, metric, type, help)                                   \
  tally_out_printf(out, "graphite_" #field " %" PRIu64 "\n", load(&graphite->stats.field));
  TALLY_FOREACH_GRAPHITE_STAT(TALLY_GRAPHITE_STAT_LINE)
#undef TALLY_GRAPHITE_STAT_LINE
  tally_out_printf(out, "graphite_connected %d\n",
    __atomic_load_n(&graphite->connected, __ATOMIC_RELAXED) ? 1 : 0);
  tally_out_printf(out, "graphite_buffer_bytes %" PRIu64 "\n", load(&graphite->buffered));
  tally_out_printf(out, "graphite_buffer_capacity_bytes %" PRIu64 "\n", graphite->capacity);
  tally_out_printf(out, "graphite_last_success_age_ms %" PRIu64 "\n",
    (uint64_t)(last_push_age_s(graphite) * 1000.0));
}

static void gauge(struct tally_out *out, const char *name, const char *help)
{
  tally_out_printf(out, "# HELP tally_graphite_%s %s\n# TYPE tally_graphite_%s gauge\n"
    "tally_graphite_%s ", name, help, name, name);
}

void tally_graphite_metrics(const struct tally_graphite *graphite, struct tally_out *out)
{
  if (graphite == NULL) return;
#define TALLY_GRAPHITE_METRIC(field, metric, type, help)                                      \
  tally_out_printf(out, "# HELP tally_graphite_" metric " " help "\n"                         \
    "# TYPE tally_graphite_" metric " " type "\ntally_graphite_" metric " %" PRIu64 "\n",      \
    load(&graphite->stats.field));
  TALLY_FOREACH_GRAPHITE_STAT(TALLY_GRAPHITE_METRIC)
#undef TALLY_GRAPHITE_METRIC
  gauge(out, "connected", "1 while a connection to carbon is established");
  tally_out_printf(out, "%d\n", __atomic_load_n(&graphite->connected, __ATOMIC_RELAXED) ? 1 : 0);
  gauge(out, "buffer_bytes", "bytes of lines waiting for carbon (or cut by a failure)");
  tally_out_printf(out, "%" PRIu64 "\n", load(&graphite->buffered));
  gauge(out, "buffer_capacity_bytes", "graphite.buffer_bytes");
  tally_out_printf(out, "%" PRIu64 "\n", graphite->capacity);
  gauge(out, "last_success_age_seconds",
    "time since a snapshot was last fully written to carbon (since start if never)");
  tally_out_printf(out, "%.3f\n", last_push_age_s(graphite));
}
