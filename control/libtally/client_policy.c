/*
 * client_policy.c — libtally's classification of results (which are
 * success, which are retryable) and their names, pure. The circuit breaker
 * and backoff libtally applies per node are control/common/breaker.c.
 * Thread: the producer's (the one thread that drives a client, client.h).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "client_internal.h"
#include "tally/client.h"

/* ---- Results ------------------------------------------------------------------ */

static const char *const status_names[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_NAME(name, label, retryable, text) [TALLY_CLIENT_##name] = label,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_NAME)
#undef TALLY_CLIENT_STATUS_NAME
};

static const char *const status_texts[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_TEXT(name, label, retryable, text) [TALLY_CLIENT_##name] = text,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_TEXT)
#undef TALLY_CLIENT_STATUS_TEXT
};

static const bool status_retryable[TALLY_CLIENT_STATUS_COUNT] = {
#define TALLY_CLIENT_STATUS_RETRY(name, label, retryable, text) [TALLY_CLIENT_##name] = retryable,
  TALLY_CLIENT_FOREACH_STATUS(TALLY_CLIENT_STATUS_RETRY)
#undef TALLY_CLIENT_STATUS_RETRY
};

bool tally_client_status_ok(enum tally_client_status status)
{
  assert((uint32_t)status < TALLY_CLIENT_STATUS_COUNT);
  return status == TALLY_CLIENT_OK || status == TALLY_CLIENT_DUPLICATE;
}

bool tally_client_status_retryable(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return false;
  assert(!(status_retryable[status] && tally_client_status_ok(status)));
  return status_retryable[status];
}

const char *tally_client_status_name(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return "unknown";
  assert(status_names[status] != NULL);
  return status_names[status];
}

const char *tally_client_status_text(enum tally_client_status status)
{
  if ((uint32_t)status >= TALLY_CLIENT_STATUS_COUNT) return "unknown status";
  assert(status_texts[status] != NULL);
  return status_texts[status];
}
