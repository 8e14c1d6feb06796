/*
 * tallyctl.c — the operator's command line for a running tallyd. Speaks the
 * management socket protocol (control/common/mgmt_proto.h): one request, a status line,
 * the body, and a trailer that proves the answer is complete.
 *
 * Exit status: 0 ok, 1 counter not found / not ready, 2 partial (get
 * --quorum: the value is printed, but not every node answered), 3 error (bad
 * request, failure, no answer, cut-off answer), 64 usage. Its usage comes
 * from the command table (mgmt_proto.h).
 *
 * --json (before the command, or right after list, stats or cluster) prints
 * the answer of those tabular commands as one JSON document
 * (control/common/mgmt_json.c); any other command with --json is a usage error.
 *
 * Thread: its own process, one thread.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_backup.h"
#include "ctl_producer_key.h"
#include "mgmt_json.h"
#include "mgmt_proto.h"
#include "config.h"

#define DEFAULT_SOCKET "/run/tally/tally.sock"
#define EXIT_NOT_FOUND 1
#define EXIT_PARTIAL 2
#define EXIT_ERROR 3
#define EXIT_USAGE 64

/* The commands' usage, from their one declaration (control/common/mgmt_proto.h). */
static const struct {
  const char *synopsis;
  const char *help;
} commands[TALLY_MGMT_COMMAND_COUNT] = {
#define TALLY_MGMT_COMMAND_USAGE(id, handler, words, argument, writes, usage, text) \
  [TALLY_MGMT_##id] = { .synopsis = usage, .help = text },
  TALLY_MGMT_FOREACH_COMMAND(TALLY_MGMT_COMMAND_USAGE)
#undef TALLY_MGMT_COMMAND_USAGE
};

/* "  synopsis  help", the help's further lines indented to the same column. */
static void usage_command(FILE *stream, const char *synopsis, const char *help)
{
  int column = fprintf(stream, "  %s", synopsis);
  int pad = TALLY_MGMT_USAGE_HELP_COLUMN - column;
  fprintf(stream, "%*s", pad < 2 ? 2 : pad, "");
  /* Bounded by the help text: every round prints one line of it. */
  for (const char *line = help; *line != '\0';) {
    const char *newline = strchr(line, '\n');
    size_t length = newline == NULL ? strlen(line) : (size_t)(newline - line);
    if (line != help) fprintf(stream, "%*s", TALLY_MGMT_USAGE_HELP_COLUMN, "");
    fprintf(stream, "%.*s\n", (int)length, line);
    line += newline == NULL ? length : length + 1;
  }
}

static void usage(FILE *stream)
{
  fprintf(stream, "usage: tallyctl [-s SOCKET | -c CONFIG] [--json] COMMAND\n"
    "       tallyctl -h | --help | --version\ncommands:\n");
  for (uint32_t i = 0; i < TALLY_MGMT_COMMAND_COUNT; i++) {
    assert(commands[i].synopsis != NULL && commands[i].help != NULL);
    usage_command(stream, commands[i].synopsis, commands[i].help);
  }
  fprintf(stream, "--json: list, stats and cluster print one JSON document (also as\n"
    "  'list --json [PREFIX]', 'stats --json', 'cluster --json')\n"
    "socket: -s, else the config's control.socket with -c, else $TALLY_SOCKET, "
    "else " DEFAULT_SOCKET "\n"
    "backup and restore (files, not the socket; 'tallyctl backup --help'):\n"
    "  backup [--incremental] DIR, backup verify DIR, restore DIR --log-dir DIR\n"
    "a producer's own key (ingest.producer_keys = derived; from the config, not the socket):\n"
    "  producer-key ID [--config CONFIG] --out FILE\n"
    "exit: 0 ok, 1 not found or not ready (backup verify: damaged), 2 partial\n"
    "  (get --quorum), 3 error, 64 usage\n");
}

static int connect_socket(const char *path)
{
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof address.sun_path) {
    fprintf(stderr, "tallyctl: socket path too long: %s\n", path);
    return -1;
  }
  memcpy(address.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    fprintf(stderr, "tallyctl: cannot connect to %s: %s (is tallyd running?)\n", path,
      strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  struct timeval timeout = { .tv_sec = TALLY_CTL_ANSWER_TIMEOUT_S, .tv_usec = 0 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

/* Builds "word arg...\n" into request; returns its length or 0 if too long. */
static size_t build_request(int argc, char **argv, char *request, size_t capacity)
{
  assert(argc >= 1);
  size_t used = 0;
  for (int i = 0; i < argc; i++) {
    int n = snprintf(request + used, capacity - used, "%s%s", i == 0 ? "" : " ", argv[i]);
    if (n < 0 || (size_t)n >= capacity - used) return 0;
    used += (size_t)n;
  }
  if (used + 1 >= capacity || used > TALLY_MGMT_LINE_MAX) return 0;
  request[used++] = '\n';
  return used;
}

/* Reads the whole answer into a growing buffer. Returns it (caller frees). */
static char *read_answer(int fd, size_t *length)
{
  size_t capacity = TALLY_CTL_ANSWER_SIZE_INITIAL;
  size_t used = 0;
  char *data = malloc(capacity);
  /* Bounded by the answer size: every round reads bytes or ends. */
  while (data != NULL) {
    if (used + TALLY_CTL_READ_SIZE > capacity) {
      char *grown = realloc(data, capacity * 2);
      if (grown == NULL) break;
      data = grown;
      capacity *= 2;
    }
    ssize_t n = read(fd, data + used, capacity - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fprintf(stderr, "tallyctl: no answer: %s\n", strerror(errno));
      free(data);
      return NULL;
    }
    if (n == 0) {
      *length = used;
      return data;
    }
    used += (size_t)n;
  }
  free(data);
  fprintf(stderr, "tallyctl: out of memory\n");
  return NULL;
}

/* A successful answer's body as JSON on stdout; exit 3 if it is not of the command's form. */
static int print_json(enum tally_mgmt_json_kind kind, const char *body, size_t body_len)
{
  char buffer[TALLY_OUT_CHUNK_SIZE];
  struct tally_out out;
  tally_out_init_fd(&out, STDOUT_FILENO, buffer, sizeof buffer);
  char error[160];
  if (!tally_mgmt_json(kind, body, body_len, &out, error, sizeof error)) {
    fprintf(stderr, "tallyctl: --json: answer not in the expected form: %s\n", error);
    return EXIT_ERROR;
  }
  if (!tally_out_flush(&out)) {
    fprintf(stderr, "tallyctl: cannot write to stdout\n");
    return EXIT_ERROR;
  }
  return 0;
}

/* json: -1 for text, else the enum tally_mgmt_json_kind of the command. */
static int print_answer(const char *answer, size_t length, int json)
{
  size_t trailer = strlen(TALLY_MGMT_TRAILER);
  const char *newline = memchr(answer, '\n', length);
  if (newline == NULL || length < trailer + 2 ||
      memcmp(answer + length - trailer, TALLY_MGMT_TRAILER, trailer) != 0 ||
      (newline != answer + length - trailer - 1 && answer[length - trailer - 1] != '\n')) {
    fprintf(stderr, "tallyctl: answer cut off or malformed\n");
    return EXIT_ERROR;
  }
  int status = atoi(answer);
  const char *body = newline + 1;
  size_t body_len = (size_t)(answer + length - trailer - body);
  if (newline + 1 > answer + length - trailer) body_len = 0;
  if (status == 5) { /* partial: the value on stdout, the why on stderr */
    const char *second = memchr(body, '\n', body_len);
    size_t first_len = second == NULL ? body_len : (size_t)(second - body) + 1;
    fwrite(body, 1, first_len, stdout);
    fputs("tallyctl: ", stderr);
    fwrite(body + first_len, 1, body_len - first_len, stderr);
    return EXIT_PARTIAL;
  }
  if (status == 0 && json >= 0) return print_json((enum tally_mgmt_json_kind)json, body, body_len);
  FILE *stream = status == 0 ? stdout : stderr;
  if (status != 0 && body_len > 0) fputs("tallyctl: ", stream);
  fwrite(body, 1, body_len, stream);
  if (status == 0) return 0;
  return status == 1 || status == 4 ? EXIT_NOT_FOUND : EXIT_ERROR;
}

/* The config -c loaded (backup and restore read store.log_dir and store.path from it). */
static struct tally_config config;

int tally_ctl_ask(const char *socket_path, const char *line, char *body, size_t body_size)
{
  char request[TALLY_MGMT_LINE_MAX + 2];
  char *words[] = { (char *)line };
  size_t request_len = build_request(1, words, request, sizeof request);
  if (request_len == 0) return -1;
  int fd = connect_socket(socket_path);
  if (fd < 0) return -1;
  bool sent = write(fd, request, request_len) == (ssize_t)request_len;
  size_t length = 0;
  char *answer = sent ? read_answer(fd, &length) : NULL;
  close(fd);
  const char *newline = answer == NULL ? NULL : memchr(answer, '\n', length);
  size_t trailer = strlen(TALLY_MGMT_TRAILER);
  if (newline == NULL || length < trailer ||
      memcmp(answer + length - trailer, TALLY_MGMT_TRAILER, trailer) != 0) {
    free(answer);
    return -1;
  }
  int status = atoi(answer);
  size_t body_len = (size_t)(answer + length - trailer - (newline + 1));
  if (newline + 1 > answer + length - trailer) body_len = 0;
  snprintf(body, body_size, "%.*s", (int)body_len, newline + 1);
  free(answer);
  return status;
}

static const char *socket_from_config(const char *path)
{
  char error[512];
  if (tally_config_load(path, &config, error, sizeof error) != 0) {
    fprintf(stderr, "tallyctl: %s\n", error);
    exit(EXIT_ERROR);
  }
  return config.socket_path;
}

/*
 * Takes --json off the command's words (right after list, stats or cluster)
 * and says which document the command gives: -1 without --json; -2 for
 * --json on a command without tabular output (a usage error).
 */
static int json_kind(int *argc, char **argv, bool json)
{
  assert(*argc >= 1);
  if (*argc >= 2 && strcmp(argv[1], "--json") == 0 &&
      (strcmp(argv[0], "list") == 0 || strcmp(argv[0], "stats") == 0 ||
       strcmp(argv[0], "cluster") == 0)) {
    memmove(&argv[1], &argv[2], (size_t)(*argc - 2) * sizeof argv[0]);
    (*argc)--;
    json = true;
  }
  if (!json) return -1;
  if (strcmp(argv[0], "list") == 0 && *argc <= 2) return TALLY_MGMT_JSON_LIST;
  if (strcmp(argv[0], "stats") == 0 && *argc == 1) return TALLY_MGMT_JSON_STATS;
  if (strcmp(argv[0], "cluster") == 0 && *argc == 1) return TALLY_MGMT_JSON_CLUSTER;
  return -2;
}

int main(int argc, char **argv)
{
  const char *socket_path = getenv("TALLY_SOCKET");
  bool config_loaded = false;
  if (socket_path == NULL) socket_path = DEFAULT_SOCKET;
  static const struct option options[] = {
    { "socket", required_argument, NULL, 's' },
    { "config", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 },
  };
  int option;
  bool json = false;
  /* "+": options end at the command, so its own arguments (get --quorum) pass through. */
  while ((option = getopt_long(argc, argv, "+s:c:h", options, NULL)) != -1) {
    if (option == 's') socket_path = optarg;
    else if (option == 'c') {
      socket_path = socket_from_config(optarg);
      config_loaded = true;
    }
    else if (option == 'h') { usage(stdout); return 0; }
    else if (option == 'V') { printf("tallyctl %s\n", TALLY_VERSION); return 0; }
    else if (option == 'j') json = true;
    else { usage(stderr); return EXIT_USAGE; }
  }
  if (optind >= argc) { usage(stderr); return EXIT_USAGE; }
  int words = argc - optind;
  if (tally_ctl_backup_command(argv[optind])) { /* files, not the socket: ctl_backup.c */
    return tally_ctl_backup_main(words, argv + optind, config_loaded ? &config : NULL,
      socket_path, json);
  }
  if (tally_ctl_producer_key_command(argv[optind])) { /* a local derivation: ctl_producer_key.c */
    return tally_ctl_producer_key_main(words, argv + optind, config_loaded ? &config : NULL);
  }
  int kind = json_kind(&words, argv + optind, json);
  if (kind == -2) {
    fprintf(stderr, "tallyctl: --json: only list [PREFIX], stats and cluster print tables\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  char request[TALLY_MGMT_LINE_MAX + 2];
  size_t request_len = build_request(words, argv + optind, request, sizeof request);
  if (request_len == 0) {
    fprintf(stderr, "tallyctl: request longer than %u bytes\n", TALLY_MGMT_LINE_MAX);
    return EXIT_USAGE;
  }
  int fd = connect_socket(socket_path);
  if (fd < 0) return EXIT_ERROR;
  if (write(fd, request, request_len) != (ssize_t)request_len) {
    fprintf(stderr, "tallyctl: cannot send the request: %s\n", strerror(errno));
    close(fd);
    return EXIT_ERROR;
  }
  size_t length = 0;
  char *answer = read_answer(fd, &length);
  close(fd);
  if (answer == NULL) return EXIT_ERROR;
  int status = print_answer(answer, length, kind);
  free(answer);
  return status;
}
