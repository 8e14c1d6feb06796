/*
 * ctl_backup.c — tallyctl backup | backup verify | restore: options, the
 * node's name and log directory (from the options, else the config given
 * with -c), progress on stderr, the result on stdout as text or one JSON
 * document. The work itself is control/backup/ (backup.h).
 *
 * Over the management socket (-s, -c, $TALLY_SOCKET), when tallyd answers:
 * --checkpoint asks for a fresh checkpoint first and waits for it; after a
 * backup, "log hold LAST_LSN" keeps the node from cutting its log past
 * what this backup holds, so the next incremental finds the records after
 * it (--no-hold: not). Without an answer the backup still runs (a warning).
 *
 * Exit status: 0 ok; 1 damaged (verify, or restore of a damaged backup);
 * 3 failed (I/O, a refused target, a log cut past the last backup); 64 usage.
 *
 * Thread: tallyctl's one thread.
 */
#include "ctl_backup.h"

#include <getopt.h>
#include <time.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"

#define EXIT_USAGE 64
/* --checkpoint: how long to wait for the fresh checkpoint, and how often to look. */
#define CHECKPOINT_WAIT_S 600u
#define CHECKPOINT_POLL_MS 100u

static void usage(FILE *stream)
{
  fprintf(stream,
    "usage: tallyctl [-s SOCKET | -c CONFIG] backup [--incremental] [--checkpoint]\n"
    "                [--no-hold] [--log-dir DIR] [--node NAME] [--quiet] [--json] BACKUP_DIR\n"
    "       tallyctl backup verify [--quiet] [--json] BACKUP_DIR\n"
    "       tallyctl [-c CONFIG] restore [--log-dir DIR] [--store PATH] [--to-lsn LSN]\n"
    "                [--quiet] [--json] BACKUP_DIR\n"
    "backup: a full backup of a log-mode node (its newest checkpoint and the log after\n"
    "  it) into an empty or new BACKUP_DIR; --incremental adds the log written since the\n"
    "  last backup in BACKUP_DIR. Reads store.log_dir (--log-dir, else the config's).\n"
    "  --checkpoint: ask tallyd for a fresh checkpoint first and wait for it. After it,\n"
    "  tallyd is asked to hold its log from this backup's last LSN on (--no-hold: not).\n"
    "backup verify: every file's BLAKE2b, the checkpoint's and every log record's CRCs,\n"
    "  and the chain's LSN continuity; one line per problem on stderr.\n"
    "restore: verifies, then writes the checkpoint and the log (through --to-lsn, for a\n"
    "  point in time) into an empty --log-dir; --store (else the config's store.path)\n"
    "  must not exist. Start tallyd on them: it recovers from checkpoint + log.\n"
    "progress: a bar on stderr when it is a terminal, else JSON lines; --quiet: none.\n"
    "--json: the result on stdout as one JSON document.\n"
    "exit: 0 ok, 1 damaged, 3 failed, 64 usage\n");
}

bool tally_ctl_backup_command(const char *word)
{
  return strcmp(word, "backup") == 0 || strcmp(word, "restore") == 0;
}

struct options {
  bool verify, restore, incremental, quiet, json, checkpoint, no_hold;
  const char *log_dir, *node, *store, *dir;
  uint64_t to_lsn;
};

static bool parse_lsn(const char *text, uint64_t *lsn)
{
  char *end = NULL;
  unsigned long long value = strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end != '\0' || value == 0) return false;
  *lsn = value;
  return true;
}

/* Parses argv (argv[0] the command); -1 to go on, else an exit status. */
static int parse(int argc, char **argv, struct options *options)
{
  static const struct option long_options[] = {
    { "incremental", no_argument, NULL, 'i' }, { "log-dir", required_argument, NULL, 'l' },
    { "node", required_argument, NULL, 'n' }, { "store", required_argument, NULL, 's' },
    { "to-lsn", required_argument, NULL, 't' }, { "quiet", no_argument, NULL, 'q' },
    { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
    { "checkpoint", no_argument, NULL, 'k' }, { "no-hold", no_argument, NULL, 'o' },
    { NULL, 0, NULL, 0 },
  };
  options->restore = strcmp(argv[0], "restore") == 0;
  int first = 1;
  if (!options->restore && argc >= 2 && strcmp(argv[1], "verify") == 0) {
    options->verify = true;
    first = 2;
  }
  optind = first;
  int option;
  while ((option = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
    if (option == 'h') { usage(stdout); return 0; }
    else if (option == 'i') options->incremental = true;
    else if (option == 'l') options->log_dir = optarg;
    else if (option == 'n') options->node = optarg;
    else if (option == 's') options->store = optarg;
    else if (option == 'q') options->quiet = true;
    else if (option == 'j') options->json = true;
    else if (option == 'k') options->checkpoint = true;
    else if (option == 'o') options->no_hold = true;
    else if (option == 't' && parse_lsn(optarg, &options->to_lsn)) continue;
    else {
      if (option == 't') fprintf(stderr, "tallyctl: --to-lsn %s: not an LSN (1, 2, ...)\n", optarg);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  bool misplaced = (options->incremental || options->node != NULL || options->checkpoint ||
    options->no_hold) &&
    (options->verify || options->restore);
  misplaced = misplaced || ((options->store != NULL || options->to_lsn != 0) && !options->restore);
  misplaced = misplaced || (options->log_dir != NULL && options->verify);
  if (optind != argc - 1 || misplaced) {
    fprintf(stderr, "tallyctl: %s\n", optind != argc - 1 ? "one BACKUP_DIR expected" :
      "an option that this command does not take");
    usage(stderr);
    return EXIT_USAGE;
  }
  options->dir = argv[optind];
  return -1;
}

/* The node's name for the manifest: --node, else node-<id> in a cluster, else the host name. */
static void node_name(const struct options *options, const struct tally_config *config,
  char *name, size_t size)
{
  if (options->node != NULL) snprintf(name, size, "%s", options->node);
  else if (config != NULL && config->cluster.enabled) {
    snprintf(name, size, "node-%u", config->cluster.node_id);
  } else if (gethostname(name, size) != 0) snprintf(name, size, "unknown");
  name[size - 1] = '\0';
  for (char *c = name; *c != '\0'; c++) {
    if (*c <= ' ' || *c > '~') *c = '_'; /* one word in the manifest */
  }
}

static void print_summary(const struct options *options, const char *what,
  enum tally_backup_result result, const struct tally_backup_summary *summary,
  const char *error)
{
  static const char *const results[] = { [TALLY_BACKUP_OK] = "ok",
    [TALLY_BACKUP_DAMAGED] = "damaged", [TALLY_BACKUP_FAILED] = "failed" };
  if (options->json) {
    printf("{\"command\":\"%s\",\"result\":\"%s\",\"dir\":\"%s\",\"node\":\"%s\","
      "\"generation\":%u,\"generations\":%u,\"checkpoint_begin_lsn\":%" PRIu64
      ",\"checkpoint_end_lsn\":%" PRIu64 ",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64
      ",\"files\":%u,\"bytes\":%" PRIu64 ",\"damaged\":%u,\"error\":\"", what, results[result],
      options->dir, summary->node, summary->generation, summary->generations,
      summary->checkpoint_begin_lsn, summary->checkpoint_end_lsn, summary->first_lsn,
      summary->last_lsn, summary->files, summary->bytes, summary->damaged);
    for (const char *c = error; *c != '\0'; c++) {
      if (*c == '"' || *c == '\\') printf("\\%c", *c);
      else if ((unsigned char)*c >= ' ') putchar(*c);
    }
    printf("\"}\n");
  }
  if (result != TALLY_BACKUP_OK) {
    if (error[0] != '\0') fprintf(stderr, "tallyctl: %s: %s\n", what, error);
    return;
  }
  if (options->json) return;
  if (options->verify) {
    printf("%s: ok: node %s, %u generations, checkpoint LSNs %" PRIu64 "..%" PRIu64
      ", log %" PRIu64 "..%" PRIu64 ", %u files, %" PRIu64 " bytes\n", options->dir,
      summary->node, summary->generations, summary->checkpoint_begin_lsn,
      summary->checkpoint_end_lsn, summary->first_lsn, summary->last_lsn, summary->files,
      summary->bytes);
  } else if (options->restore) {
    printf("restored %s into %s: checkpoint at LSN %" PRIu64 ", log through LSN %" PRIu64
      " (%u files); start tallyd on it\n", options->dir, options->log_dir,
      summary->checkpoint_begin_lsn, summary->last_lsn, summary->files);
  } else if (summary->generation == 0) {
    printf("%s: nothing new since LSN %" PRIu64 "\n", options->dir, summary->last_lsn);
  } else {
    printf("%s: generation %u (%s) of node %s: log %" PRIu64 "..%" PRIu64 ", %u files, %"
      PRIu64 " bytes\n", options->dir, summary->generation, summary->generation == 1 ?
      "full" : "incremental", summary->node, summary->first_lsn, summary->last_lsn,
      summary->files, summary->bytes);
  }
}

/* A number after "key " in a body of "key value" lines; false if absent. */
static bool body_number(const char *body, const char *key, uint64_t *value)
{
  size_t length = strlen(key);
  for (const char *at = body; at != NULL && *at != '\0'; at = strchr(at, '\n')) {
    if (*at == '\n') at++;
    if (strncmp(at, key, length) == 0 && at[length] == ' ') {
      *value = strtoull(at + length + 1, NULL, 10);
      return true;
    }
  }
  return false;
}

/* --checkpoint: asks for one and waits until checkpoints_finished grows. */
static bool fresh_checkpoint(const char *socket_path)
{
  char body[8192];
  uint64_t before = 0, now = 0;
  int status = tally_ctl_ask(socket_path, "checkpoint", body, sizeof body);
  const char *finished = status == 0 ? strstr(body, "checkpoints_finished") : NULL;
  if (finished == NULL || !body_number(finished, "checkpoints_finished", &before)) {
    fprintf(stderr, "tallyctl: backup --checkpoint: tallyd did not take the request%s%s",
      status > 0 ? ": " : " (no answer)\n", status > 0 ? body : "");
    return false;
  }
  const struct timespec pause = { .tv_sec = 0, .tv_nsec = CHECKPOINT_POLL_MS * 1000000l };
  for (uint32_t i = 0; i < CHECKPOINT_WAIT_S * 1000u / CHECKPOINT_POLL_MS; i++) {
    if (tally_ctl_ask(socket_path, "stats", body, sizeof body) == 0 &&
        body_number(body, "checkpoints_finished", &now) && now > before) {
      return true;
    }
    nanosleep(&pause, NULL);
  }
  fprintf(stderr, "tallyctl: backup --checkpoint: no checkpoint finished in %u s "
    "(checkpoints_failed in tallyctl stats?)\n", CHECKPOINT_WAIT_S);
  return false;
}

/* After a backup: tallyd keeps every record after last_lsn for the next incremental. */
static void hold_log(const char *socket_path, uint64_t last_lsn)
{
  char line[64], body[512];
  snprintf(line, sizeof line, "log hold %" PRIu64, last_lsn);
  int status = tally_ctl_ask(socket_path, line, body, sizeof body);
  if (status != 0) {
    fprintf(stderr, "tallyctl: backup: warning: tallyd at %s did not hold its log (%s): it "
      "may cut records the next incremental needs (then take a full backup)\n", socket_path,
      status < 0 ? "no answer" : "refused");
  }
}

int tally_ctl_backup_main(int argc, char **argv, const struct tally_config *config,
  const char *socket_path, bool json)
{
  struct options options = { .json = json };
  int status = parse(argc, argv, &options);
  if (status >= 0) return status;
  if (options.log_dir == NULL && config != NULL && config->log_dir[0] != '\0') {
    options.log_dir = config->log_dir;
  }
  if (options.store == NULL && options.restore && config != NULL) options.store = config->store_path;
  if (options.log_dir == NULL && !options.verify) {
    fprintf(stderr, "tallyctl: the log directory: give --log-dir, or -c CONFIG with "
      "store.log_dir\n");
    return EXIT_USAGE;
  }
  const char *what = options.verify ? "backup verify" : options.restore ? "restore" : "backup";
  struct tally_backup_progress progress;
  tally_backup_progress_init(&progress, options.quiet ? NULL : stderr,
    options.verify ? "verify" : options.restore ? "restore" : "backup", 0);
  struct tally_backup_summary summary;
  char error[512] = "";
  enum tally_backup_result result;
  if (options.verify) {
    result = tally_backup_verify(options.dir, stderr, &progress, &summary, error, sizeof error);
  } else if (options.restore) {
    if (config != NULL && config->cluster.enabled && !options.quiet) {
      fprintf(stderr, "tallyctl: restore: a cluster node: restore from a backup only when every "
        "node's store is lost; one node alone starts empty and restores from its peers\n");
    }
    result = tally_backup_restore(options.dir, options.log_dir, options.store, options.to_lsn,
      &progress, &summary, error, sizeof error);
  } else {
    char node[TALLY_BACKUP_NODE_SIZE];
    node_name(&options, config, node, sizeof node);
    const struct tally_backup_request request = { .log_dir = options.log_dir,
      .dir = options.dir, .node = node, .incremental = options.incremental };
    if (options.checkpoint && !fresh_checkpoint(socket_path)) return TALLY_BACKUP_FAILED;
    result = tally_backup_take(&request, &progress, &summary, error, sizeof error);
    if (result == TALLY_BACKUP_OK && !options.no_hold) hold_log(socket_path, summary.last_lsn);
  }
  print_summary(&options, what, result, &summary, error);
  return (int)result;
}
