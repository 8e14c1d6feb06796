/*
 * mgmt.c — the management socket server: one short request per connection,
 * served on the control thread with send and receive timeouts, so a stuck
 * client costs at most TALLY_MGMT_TIMEOUT_S and never touches the dataplane.
 * Commands are served from one table (control/common/mgmt_proto.h); the
 * request line is matched against it by control/common/mgmt_line.c.
 *
 * Thread: the control thread.
 */
#include <assert.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "actions.h"
#include "mgmt.h"
#include "mgmt_line.h"

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
  if (lstat(path, &status) == 0 && S_ISSOCK(status.st_mode)) unlink(path); /* stale */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
      chmod(path, 0660) != 0 || listen(fd, (int)TALLY_MGMT_BACKLOG) != 0) {
    snprintf(error, error_size, "control.socket: cannot listen on %s: %s", path,
      strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
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

static enum tally_action_result dispatch(struct tally_appliance *appliance, const char *line,
  size_t line_len, struct tally_out *body)
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
  return command->handler(appliance, argument, argument_len, body);
}

void tally_mgmt_handle(struct tally_appliance *appliance, const char *line, size_t line_len,
  int fd)
{
  assert(line_len <= TALLY_MGMT_LINE_MAX);
  appliance->mgmt_requests++;
  /* The body is built in memory first so the status line can lead it. */
  struct tally_out body;
  tally_out_init_memory(&body);
  enum tally_action_result result = dispatch(appliance, line, line_len, &body);
  if (result != TALLY_ACTION_OK) appliance->mgmt_errors++;
  size_t length = 0;
  char *text = tally_out_take(&body, &length);
  char buffer[TALLY_OUT_CHUNK_SIZE];
  struct tally_out out;
  tally_out_init_fd(&out, fd, buffer, sizeof buffer);
  if (text == NULL) {
    tally_out_printf(&out, "%d\nanswer too large or out of memory\n", TALLY_ACTION_FAILED);
  } else {
    tally_out_printf(&out, "%d\n", (int)result);
    static_assert(TALLY_MGMT_WRITE_CHUNK_SIZE <= TALLY_OUT_CHUNK_SIZE, "a chunk fits the buffer");
    for (size_t done = 0; done < length && !out.failed; done += TALLY_MGMT_WRITE_CHUNK_SIZE) {
      size_t chunk = length - done < TALLY_MGMT_WRITE_CHUNK_SIZE ? length - done :
        TALLY_MGMT_WRITE_CHUNK_SIZE;
      tally_out_printf(&out, "%.*s", (int)chunk, text + done);
    }
  }
  tally_out_printf(&out, TALLY_MGMT_TRAILER);
  tally_out_flush(&out);
  free(text);
}

/* Reads one line (without '\n'); returns its length or -1. */
static ssize_t read_line(int fd, char *line, size_t capacity)
{
  size_t used = 0;
  /* Bounded by capacity: every round adds at least one byte or ends. */
  while (used < capacity) {
    ssize_t n = read(fd, line + used, capacity - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
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
  struct timeval timeout = { .tv_sec = TALLY_MGMT_TIMEOUT_S, .tv_usec = 0 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  char line[TALLY_MGMT_LINE_MAX + 1];
  ssize_t line_len = read_line(fd, line, sizeof line);
  if (line_len < 0 || (size_t)line_len > TALLY_MGMT_LINE_MAX) {
    appliance->mgmt_errors++;
    const char *answer = "2\nrequest line missing, too long or timed out\n.\n";
    ssize_t ignored = write(fd, answer, strlen(answer));
    (void)ignored;
  } else {
    tally_mgmt_handle(appliance, line, (size_t)line_len, fd);
  }
  close(fd);
}

void tally_mgmt_close(int listen_fd, const char *path)
{
  if (listen_fd < 0) return;
  close(listen_fd);
  unlink(path);
}
