/*
 * client.h — libtally, the C client library of reliable producers.
 *
 * A client accumulates increments into a batch (coalescing repeated names),
 * seals it with the next sequence number of its producer, signs it with the
 * ingest key and sends it over UDP to a node of its list. It waits for the
 * ack with a timeout; retries with the same (producer, seq) after exponential
 * backoff with full jitter; keeps a circuit breaker per node and fails over
 * down the list; and bounds the batches in flight (a bulkhead: all memory is
 * allocated by tally_client_new, so a slow cluster blocks or refuses the
 * producer instead of growing it). Every sealed batch ends exactly once in
 * the completion callback, acked or failed with a status: none is dropped
 * silently. docs/client.md explains the semantics.
 *
 * A client is not thread-safe: one thread drives it (add, flush, poll,
 * drain). Time and randomness come from the config's function pointers, so
 * tests can drive them; the defaults are CLOCK_MONOTONIC and libsodium.
 */
#ifndef TALLY_CLIENT_H
#define TALLY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/batch_wire.h"
#include "tally/key.h"
#include "tally/limits.h"

/* ---- Limits ---------------------------------------------------------------- */

/*
 * The client's limits (TALLY_CLIENT_NODES_MAX, TALLY_CLIENT_NODE_LEN_MAX,
 * TALLY_CLIENT_ATTEMPTS_MAX, TALLY_CLIENT_DURATION_MS_MAX,
 * TALLY_CLIENT_RECV_BURST_MAX) and its config defaults
 * (TALLY_CLIENT_DEFAULT_*) are in tally/limits.h, with every other limit.
 */

/* seq of a completion that never took one (increments not yet sealed). */
#define TALLY_CLIENT_SEQ_NONE UINT64_MAX
/* node of a completion whose batch was never sent. */
#define TALLY_CLIENT_NODE_NONE UINT32_MAX

static_assert(TALLY_WIRE_BATCH_SIZE_MIN <= TALLY_DATAGRAM_SIZE_MAX, "a batch fits a datagram");

/* ---- Results ----------------------------------------------------------------- */

/*
 * One enum for what calls return and how batches end. Success: OK and
 * DUPLICATE. Retryable (tally_client_status_retryable): the cause is
 * transient, submitting the increments again later may succeed. The others
 * are final: resubmitting the same increments fails the same way.
 */
#define TALLY_CLIENT_FOREACH_STATUS(_)                                                   \
  _(OK, "ok", false, "acked: durable and counted")                                      \
  _(DUPLICATE, "duplicate", false, "acked: counted before (a retry whose ack was lost)") \
  _(TIMEOUT, "timeout", true, "no ack before the deadline or the last attempt")         \
  _(READ_ONLY, "read_only", true, "nodes refuse reliable writes now (no write quorum)") \
  _(PRODUCERS_FULL, "producers_full", true, "node's producer table is full")            \
  _(NETWORK, "network", true, "the datagram could not be sent (socket error)")          \
  _(CANCELLED, "cancelled", true, "client freed before the batch ended")                \
  _(EBUSY, "ebusy", true, "in-flight bound reached; nothing was accepted")              \
  _(STALE, "stale", false, "seq older than the node's dedup window: not counted")       \
  _(MALFORMED, "malformed", false, "node refused the batch's content: not counted")     \
  _(COUNTERS_FULL, "counters_full", false, "node's counter table full: not counted")    \
  _(OVERFLOW, "overflow", false, "a delta would overflow a counter: not counted")       \
  _(EINVAL, "einval", false, "invalid argument (name, delta, config)")                  \
  _(EIO, "eio", false, "operating error of the client's socket")

enum tally_client_status {
#define TALLY_CLIENT_STATUS_ENUM(name, label, retryable, text) TALLY_CLIENT_##name,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_ENUM)
#undef TALLY_CLIENT_STATUS_ENUM
  TALLY_CLIENT_STATUS_COUNT
};

/* OK or DUPLICATE: the batch is durable on the cluster. */
bool tally_client_status_ok(enum tally_client_status status);
/* The cause is transient: the same increments may succeed later. */
bool tally_client_status_retryable(enum tally_client_status status);
/* "ok", "timeout", ... (stable, for logs and metrics). */
const char *tally_client_status_name(enum tally_client_status status);
/* One-line meaning. */
const char *tally_client_status_text(enum tally_client_status status);

/* ---- Completion -------------------------------------------------------------- */

struct tally_client_completion {
  uint64_t seq;                  /* TALLY_CLIENT_SEQ_NONE if never sealed */
  enum tally_client_status status;
  uint32_t attempts;             /* datagrams sent for this batch (0: never sent) */
  uint32_t node;                 /* index of the node that answered, else the last tried */
  /*
   * Some attempt got no answer: a node may have counted the batch even if the
   * status is a failure. Resubmitting such increments under a new seq may
   * count them twice; see docs/client.md.
   */
  bool uncertain;
  uint32_t pair_count;
  const struct tally_wire_pair *pairs; /* valid during the callback only */
};

/*
 * Called once per batch when it ends (from add, flush, poll, drain or free).
 * It must not call back into the client except tally_client_next_seq,
 * tally_client_inflight and tally_client_stats.
 */
typedef void (*tally_client_done_fn)(void *context,
  const struct tally_client_completion *completion);

/* ---- Configuration ---------------------------------------------------------- */

struct tally_client_config {
  const char *nodes[TALLY_CLIENT_NODES_MAX]; /* "IPv4-or-host:port", in preference order */
  uint32_t node_count;
  uint8_t key[TALLY_KEY_SIZE];   /* the cluster's ingest key */
  uint64_t producer;             /* 1..2^64-1, one client per producer id at a time */
  uint64_t first_seq;            /* seq of the first batch: the persisted next_seq */
  uint32_t inflight_max;         /* 1..TALLY_DEDUP_WINDOW, default 64 */
  uint32_t ack_timeout_ms;       /* per attempt, default 200 */
  uint32_t attempts_max;         /* 1..TALLY_CLIENT_ATTEMPTS_MAX, default 8 */
  uint32_t batch_timeout_ms;     /* overall deadline from seal, default 10000 */
  uint32_t backoff_base_ms;      /* default 10 */
  uint32_t backoff_cap_ms;       /* default 1000 */
  uint32_t breaker_failures;     /* consecutive failures that open, default 5 */
  uint32_t breaker_cooldown_ms;  /* open -> half-open, default 1000 */
  uint32_t block_ms;             /* add/flush wait for room; 0: EBUSY at once; default 1000 */
  tally_client_done_fn on_done;  /* required */
  void *on_done_context;
  /* Clock and random source; NULL: CLOCK_MONOTONIC and libsodium. */
  uint64_t (*now_ms)(void *context);
  uint64_t (*random_u64)(void *context);
  void *ops_context;
};

/* Fills every default; the caller then sets nodes, key, producer, first_seq, on_done. */
void tally_client_config_default(struct tally_client_config *config);

/* ---- Client ----------------------------------------------------------------- */

struct tally_client;

/*
 * Validates the config, resolves the nodes, opens the socket and allocates
 * everything the client will ever use. Returns NULL with a message in error.
 */
struct tally_client *tally_client_new(const struct tally_client_config *config, char *error,
  size_t error_size);

/*
 * Ends every unfinished batch with CANCELLED through the callback (the
 * unsealed increments too, with seq TALLY_CLIENT_SEQ_NONE), then frees.
 * Call tally_client_drain first to finish them properly.
 */
void tally_client_free(struct tally_client *client);

/*
 * Adds delta to name (NUL-terminated) in the current batch. name is a counter
 * key (tally/key.h): a bare name, or "name{k=v,k2,...}" with the tags in any
 * order, which is sent in its canonical form (so "req{b=2,a=1}" and
 * "req{a=1,b=2}" are one counter and coalesce). A batch is sealed and sent
 * when it has TALLY_BATCH_PAIRS_MAX pairs or the next key would not fit
 * TALLY_DATAGRAM_SIZE_MAX bytes. Returns OK, EINVAL (bad name or tags), EBUSY
 * (the batch had to be sealed and no room came within block_ms: the increment
 * was not accepted) or EIO.
 */
enum tally_client_status tally_client_add(struct tally_client *client, const char *name,
  int64_t delta);

/*
 * tally_client_add of name (NUL-terminated, no tags) with tag_count tags
 * (struct tally_tag: key and value with their lengths; value_len 0 for a tag
 * without a value), in any order: the counter name{tags} in canonical form.
 * EINVAL for a name or tag outside the rules or limits of tally/key.h. The
 * tags array is not kept (nor reordered).
 */
enum tally_client_status tally_client_add_tagged(struct tally_client *client, const char *name,
  const struct tally_tag *tags, uint32_t tag_count, int64_t delta);

/* Seals and sends the current batch if it has pairs. OK, EBUSY or EIO. */
enum tally_client_status tally_client_flush(struct tally_client *client);

/*
 * Waits up to timeout_ms (less when a timer is due) for acks, then processes
 * acks, timeouts, retransmissions and deadlines. OK or EIO.
 */
enum tally_client_status tally_client_poll(struct tally_client *client, uint32_t timeout_ms);

/*
 * Flushes, then polls until every sealed batch has ended or timeout_ms passed.
 * OK (nothing in flight), TIMEOUT, EBUSY (could not flush) or EIO.
 */
enum tally_client_status tally_client_drain(struct tally_client *client, uint32_t timeout_ms);

/* The seq the next sealed batch takes: persist it (docs/client.md, "Sequence numbers"). */
uint64_t tally_client_next_seq(const struct tally_client *client);

/* Sealed batches not ended yet, plus ended ones still holding the seq window. */
uint32_t tally_client_inflight(const struct tally_client *client);

enum tally_client_breaker_state {
  TALLY_CLIENT_BREAKER_CLOSED = 0,
  TALLY_CLIENT_BREAKER_OPEN,
  TALLY_CLIENT_BREAKER_HALF_OPEN,
};

/* Breaker state of node index node (0..node_count-1). */
enum tally_client_breaker_state tally_client_breaker(const struct tally_client *client,
  uint32_t node);

struct tally_client_stats {
  uint64_t batches_sealed;
  uint64_t batches_acked;        /* OK + DUPLICATE */
  uint64_t batches_duplicate;
  uint64_t batches_failed;
  uint64_t datagrams_sent;
  uint64_t retransmissions;      /* datagrams sent beyond each batch's first */
  uint64_t ack_timeouts;
  uint64_t acks_ignored;         /* bad MAC, other producer, unknown seq or sender */
  uint64_t send_errors;
  uint64_t breaker_opens;
};

void tally_client_stats(const struct tally_client *client, struct tally_client_stats *stats);

#endif
