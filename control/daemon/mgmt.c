/*
 * mgmt.c — the management socket server: one short request per connection,
 * served on the control thread. Each connection has one absolute deadline
 * (TALLY_MGMT_TIMEOUT_S from its accept, on the monotonic clock) for reading
 * its line and writing its answer, so a client that trickles bytes costs at
 * most that long and never holds SIGTERM or SIGHUP behind it. A command that
 * changes state (the table's "writes") is served only to root, to tallyd's
 * own user, or to a member of control.admin_group (SO_PEERCRED and
 * SO_PEERGROUPS); others get status 6. The socket is created under a umask
 * that leaves it 0660 from the moment it exists, and a socket some live
 * process still accepts on is never unlinked: tallyd refuses to start.
 * Commands are served from one table (control/common/mgmt_proto.h); the
 * request line is matched against it by control/common/mgmt_line.c.
 *
 * Thread: the control thread.
 */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "actions.h"
#include "clock.h"
#include "mgmt.h"
#include "mgmt_line.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13 (asm-generic/socket.h) */
#endif

/* The socket file's mode from its creation: owner and group may connect. */
#define MGMT_SOCKET_UMASK 0117u
static_assert((0777u & ~MGMT_SOCKET_UMASK) == 0660u, "the socket is created 0660");

/*
 * Whether a process still accepts connections on path: a connect that
 * succeeds (or finds a full backlog) says so; ECONNREFUSED says the socket
 * is stale (its owner died without unlinking it).
 */
static bool socket_live(const struct sockaddr_un *address)
{
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) return true; /* cannot tell: never unlink what might be live */
  int rc = connect(probe, (const struct sockaddr *)address, sizeof *address);
  int saved = errno;
  close(probe);
  return rc == 0 || saved == EAGAIN || saved == EINPROGRESS;
}

int tally_mgmt_listen(const char *path, char *error, size_t error_size)
{
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof address.sun_path) {
    snprintf(error, error_size, "control.socket: path longer than %zu bytes",
      sizeof address.sun_path - 1);
    return -1;
  }
  memcpy(address.sun_path, path, strlen(path) + 1);
  char directory[TALLY_PATH_MAX];
  snprintf(directory, sizeof directory, "%s", path);
  if (mkdir(dirname(directory), 0750) != 0 && errno != EEXIST) {
    snprintf(error, error_size, "control.socket: cannot create directory of %s: %s", path,
      strerror(errno));
    return -1;
  }
  struct stat status;
  if (lstat(path, &status) == 0 && S_ISSOCK(status.st_mode)) {
    if (socket_live(&address)) {
      snprintf(error, error_size, "control.socket: %s is served by a running process "
        "(another tallyd?); not replacing it", path);
      return -1;
    }
    unlink(path); /* stale: nobody accepts on it */
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  /* The umask makes bind create the file 0660: no window in which it is wider. */
  mode_t saved_umask = umask(MGMT_SOCKET_UMASK);
  int bound = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&address, sizeof address);
  int bind_errno = errno;
  umask(saved_umask);
  errno = bind_errno;
  if (fd < 0 || bound != 0 || listen(fd, (int)TALLY_MGMT_BACKLOG) != 0) {
    snprintf(error, error_size, "control.socket: cannot listen on %s: %s", path,
      strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

int tally_mgmt_admin_gid(const char *group, int64_t *gid, char *error, size_t error_size)
{
  *gid = -1;
  if (group[0] == '\0') return 0;
  char buffer[TALLY_MGMT_GROUP_BUFFER_SIZE];
  struct group entry;
  struct group *found = NULL;
  int rc = getgrnam_r(group, &entry, buffer, sizeof buffer, &found);
  if (rc != 0 || found == NULL) {
    snprintf(error, error_size, "control.admin_group: no group named %s%s%s", group,
      rc != 0 ? ": " : "", rc != 0 ? strerror(rc) : "");
    return -1;
  }
  *gid = (int64_t)found->gr_gid;
  return 0;
}

/* ---- The command table (control/common/mgmt_proto.h) ---------------------------- */

typedef enum tally_action_result (*mgmt_handler)(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body);

struct mgmt_command {
  const char *words;
  enum tally_mgmt_argument argument;
  bool writes;             /* changes the node's state */
  const char *synopsis;
  mgmt_handler handler;
};

static void unknown_request(struct tally_out *body);

static enum tally_action_result mgmt_command_get(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  return tally_action_get(appliance, argument, argument_len, body);
}

static enum tally_action_result mgmt_command_get_quorum(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  return tally_action_get_quorum(appliance, argument, argument_len, body);
}

static enum tally_action_result mgmt_command_list(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  if (argument_len > TALLY_NAME_LEN_MAX) {
    tally_out_printf(body, "prefix longer than %u bytes\n", TALLY_NAME_LEN_MAX);
    return TALLY_ACTION_BAD_REQUEST;
  }
  return tally_action_list(appliance, argument, argument_len, body);
}

/* A command without an argument, served by the action of the same name. */
#define MGMT_COMMAND_PLAIN(name)                                                              \
  static enum tally_action_result mgmt_command_##name(struct tally_appliance *appliance,      \
    const char *argument, size_t argument_len, struct tally_out *body)                        \
  {                                                                                           \
    assert(argument_len == 0);                                                                \
    (void)argument;                                                                           \
    return tally_action_##name(appliance, body);                                              \
  }
MGMT_COMMAND_PLAIN(stats)
MGMT_COMMAND_PLAIN(reload)
MGMT_COMMAND_PLAIN(cluster)
MGMT_COMMAND_PLAIN(cluster_reload)
MGMT_COMMAND_PLAIN(drain)
MGMT_COMMAND_PLAIN(rejoin)
MGMT_COMMAND_PLAIN(checkpoint)
#undef MGMT_COMMAND_PLAIN

static enum tally_action_result mgmt_command_ready(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  assert(argument_len == 0);
  (void)argument;
  return tally_action_ready(appliance, body) ? TALLY_ACTION_OK : TALLY_ACTION_NOT_READY;
}

/* "on" or "off"; anything else is an unknown request, as an unknown command is. */
static enum tally_action_result mgmt_command_readonly(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  assert(argument_len > 0);
  if (argument_len == strlen("on") && memcmp(argument, "on", argument_len) == 0) {
    return tally_action_readonly(appliance, true, body);
  }
  if (argument_len == strlen("off") && memcmp(argument, "off", argument_len) == 0) {
    return tally_action_readonly(appliance, false, body);
  }
  unknown_request(body);
  return TALLY_ACTION_BAD_REQUEST;
}

/* An LSN in decimal, 0 releasing the hold. */
static enum tally_action_result mgmt_command_log_hold(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  assert(argument_len > 0);
  uint64_t lsn = 0;
  for (size_t i = 0; i < argument_len; i++) {
    if (argument[i] < '0' || argument[i] > '9' || lsn > (UINT64_MAX - 9u) / 10u || i >= 20u) {
      tally_out_printf(body, "log hold: not an LSN (decimal; 0 releases)\n");
      return TALLY_ACTION_BAD_REQUEST;
    }
    lsn = lsn * 10u + (uint64_t)(argument[i] - '0');
  }
  return tally_action_log_hold(appliance, lsn, body);
}

/* "auto" or one digit 0..TALLY_DEGRADE_LEVEL_MAX; anything else is an unknown request. */
static enum tally_action_result mgmt_command_degrade(struct tally_appliance *appliance,
  const char *argument, size_t argument_len, struct tally_out *body)
{
  assert(argument_len > 0);
  if (argument_len == strlen("auto") && memcmp(argument, "auto", argument_len) == 0) {
    return tally_action_degrade(appliance, true, 0, body);
  }
  if (argument_len == 1 && argument[0] >= '0' &&
      (uint32_t)(argument[0] - '0') <= TALLY_DEGRADE_LEVEL_MAX) {
    return tally_action_degrade(appliance, false, (uint32_t)(argument[0] - '0'), body);
  }
  unknown_request(body);
  return TALLY_ACTION_BAD_REQUEST;
}

static const struct mgmt_command commands[TALLY_MGMT_COMMAND_COUNT] = {
#define TALLY_MGMT_COMMAND_ENTRY(id, command, words_text, argument_kind, changes, usage, help) \
  [TALLY_MGMT_##id] = {                                                                      \
    .words = words_text,                                                                     \
    .argument = TALLY_MGMT_ARGUMENT_##argument_kind,                                         \
    .writes = changes,                                                                       \
    .synopsis = usage,                                                                       \
    .handler = mgmt_command_##command,                                                       \
  },
  TALLY_MGMT_FOREACH_COMMAND(TALLY_MGMT_COMMAND_ENTRY)
#undef TALLY_MGMT_COMMAND_ENTRY
};

static void unknown_request(struct tally_out *body)
{
  tally_out_printf(body, "unknown request (");
  for (uint32_t i = 0; i < TALLY_MGMT_COMMAND_COUNT; i++) {
    tally_out_printf(body, "%s%s", i == 0 ? "" : " | ", commands[i].synopsis);
  }
  tally_out_printf(body, ")\n");
}

/* Who is on the other end of a connection (SO_PEERCRED, SO_PEERGROUPS). */
struct mgmt_peer {
  bool known;
  uid_t uid;
  gid_t gid;
  uint32_t group_count;
  gid_t groups[TALLY_MGMT_PEER_GROUPS_MAX];
};

static void peer_read(int fd, struct mgmt_peer *peer)
{
  memset(peer, 0, sizeof *peer);
  struct ucred credentials;
  socklen_t length = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0 ||
      length != sizeof credentials) {
    return; /* unknown: refused anything that changes state */
  }
  peer->known = true;
  peer->uid = credentials.uid;
  peer->gid = credentials.gid;
  socklen_t groups_length = sizeof peer->groups;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer->groups, &groups_length) == 0) {
    peer->group_count = groups_length / (socklen_t)sizeof peer->groups[0];
  } /* more groups than the buffer (ERANGE): only the primary group counts */
  assert(peer->group_count <= TALLY_MGMT_PEER_GROUPS_MAX);
}

/* Root, tallyd's own user, or a member of control.admin_group may change state. */
static bool peer_may_write(const struct tally_appliance *appliance, const struct mgmt_peer *peer)
{
  if (!peer->known) return false;
  if (peer->uid == 0 || peer->uid == geteuid()) return true;
  if (appliance->mgmt_admin_gid < 0) return false;
  gid_t admin = (gid_t)appliance->mgmt_admin_gid;
  if (peer->gid == admin) return true;
  for (uint32_t i = 0; i < peer->group_count; i++) {
    if (peer->groups[i] == admin) return true;
  }
  return false;
}

static enum tally_action_result dispatch(struct tally_appliance *appliance, const char *line,
  size_t line_len, const struct mgmt_peer *peer, struct tally_out *body)
{
  const char *argument = NULL;
  size_t argument_len = 0;
  enum tally_mgmt_command_id id = tally_mgmt_line_parse(line, line_len, &argument, &argument_len);
  if (id == TALLY_MGMT_COMMAND_COUNT) {
    unknown_request(body);
    return TALLY_ACTION_BAD_REQUEST;
  }
  const struct mgmt_command *command = &commands[id];
  assert(command->handler != NULL);
  assert(argument != NULL && argument + argument_len == line + line_len);
  if (command->writes && !peer_may_write(appliance, peer)) {
    appliance->mgmt_refused++;
    tally_out_printf(body, "not permitted: '%s' changes state (root, tallyd's user or "
      "control.admin_group only)\n", command->words);
    return TALLY_ACTION_NOT_PERMITTED;
  }
  return command->handler(appliance, argument, argument_len, body);
}

/* Milliseconds left until deadline_ns (0: passed), for poll and SO_SNDTIMEO. */
static int remaining_ms(uint64_t deadline_ns)
{
  uint64_t now = tally_clock_mono_ns();
  if (now >= deadline_ns) return 0;
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  return ms > 1000u * TALLY_MGMT_TIMEOUT_S ? (int)(1000u * TALLY_MGMT_TIMEOUT_S) : (int)ms;
}

/* Bounds the next blocking write by what is left of the deadline; false once it passed. */
static bool send_window(int fd, uint64_t deadline_ns)
{
  int ms = remaining_ms(deadline_ns);
  if (ms == 0) return false;
  struct timeval timeout = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return true;
}

static void answer(struct tally_appliance *appliance, const char *line, size_t line_len,
  int fd, const struct mgmt_peer *peer, uint64_t deadline_ns)
{
  assert(line_len <= TALLY_MGMT_LINE_MAX);
  appliance->mgmt_requests++;
  /* The body is built in memory first so the status line can lead it. */
  struct tally_out body;
  tally_out_init_memory(&body);
  enum tally_action_result result = dispatch(appliance, line, line_len, peer, &body);
  if (result != TALLY_ACTION_OK) appliance->mgmt_errors++;
  size_t length = 0;
  char *text = tally_out_take(&body, &length);
  char buffer[TALLY_OUT_CHUNK_SIZE];
  struct tally_out out;
  tally_out_init_fd(&out, fd, buffer, sizeof buffer);
  if (!send_window(fd, deadline_ns)) out.failed = true;
  if (text == NULL) {
    tally_out_printf(&out, "%d\nanswer too large or out of memory\n", TALLY_ACTION_FAILED);
  } else {
    tally_out_printf(&out, "%d\n", (int)result);
    static_assert(TALLY_MGMT_WRITE_CHUNK_SIZE <= TALLY_OUT_CHUNK_SIZE, "a chunk fits the buffer");
    for (size_t done = 0; done < length && !out.failed; done += TALLY_MGMT_WRITE_CHUNK_SIZE) {
      if (!send_window(fd, deadline_ns)) { /* a slow reader: the deadline ends it */
        out.failed = true;
        break;
      }
      size_t chunk = length - done < TALLY_MGMT_WRITE_CHUNK_SIZE ? length - done :
        TALLY_MGMT_WRITE_CHUNK_SIZE;
      tally_out_printf(&out, "%.*s", (int)chunk, text + done);
    }
  }
  tally_out_printf(&out, TALLY_MGMT_TRAILER);
  if (send_window(fd, deadline_ns)) tally_out_flush(&out);
  free(text);
}

/*
 * Reads one line (without '\n') before deadline_ns; returns its length or -1.
 * The deadline is absolute: a client trickling a byte at a time gets no more
 * time than a silent one.
 */
static ssize_t read_line(int fd, char *line, size_t capacity, uint64_t deadline_ns)
{
  size_t used = 0;
  /* Bounded by capacity and the deadline: every round adds a byte, ends, or waits less. */
  while (used < capacity) {
    int ms = remaining_ms(deadline_ns);
    if (ms == 0) return -1;
    struct pollfd readable = { .fd = fd, .events = POLLIN };
    int ready = poll(&readable, 1, ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return -1;
    ssize_t n = read(fd, line + used, capacity - used);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return -1;
    if (tally_clock_mono_ns() >= deadline_ns) return -1; /* completed too late */
    char *newline = memchr(line + used, '\n', (size_t)n);
    if (newline != NULL) return newline - line;
    used += (size_t)n;
  }
  return -1;
}

void tally_mgmt_serve_one(struct tally_appliance *appliance, int listen_fd)
{
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  uint64_t deadline_ns = tally_clock_mono_ns() + 1000000000ull * TALLY_MGMT_TIMEOUT_S;
  struct mgmt_peer peer;
  peer_read(fd, &peer);
  /* Reads wait in poll; writes block, each bounded by what is left of the deadline. */
  char line[TALLY_MGMT_LINE_MAX + 1];
  ssize_t line_len = read_line(fd, line, sizeof line, deadline_ns);
  if (line_len < 0 || (size_t)line_len > TALLY_MGMT_LINE_MAX) {
    appliance->mgmt_errors++;
    const char *refusal = "2\nrequest line missing, too long or timed out\n.\n";
    /* Never waits, even past the deadline: a short answer into an empty send buffer. */
    ssize_t ignored = send(fd, refusal, strlen(refusal), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)ignored;
  } else {
    answer(appliance, line, (size_t)line_len, fd, &peer, deadline_ns);
  }
  close(fd);
}

void tally_mgmt_close(int listen_fd, const char *path)
{
  if (listen_fd < 0) return;
  close(listen_fd);
  unlink(path);
}
