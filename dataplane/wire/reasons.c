/*
 * reasons.c — labels and meanings of the rejection reasons, generated from
 * the one X-macro in reasons.h.
 *
 * Thread: any (constant tables: /metrics on HTTP, tallyctl, the logs).
 */
#include <assert.h>

#include "tally/reasons.h"

static const char *const reason_labels[TALLY_REASON_COUNT] = {
  [TALLY_OK] = "ok",
#define TALLY_REASON_LABEL(name, label, text) [TALLY_REASON_##name] = label,
  TALLY_FOREACH_REASON(TALLY_REASON_LABEL)
#undef TALLY_REASON_LABEL
};

static const char *const reason_texts[TALLY_REASON_COUNT] = {
  [TALLY_OK] = "accepted",
#define TALLY_REASON_TEXT(name, label, text) [TALLY_REASON_##name] = text,
  TALLY_FOREACH_REASON(TALLY_REASON_TEXT)
#undef TALLY_REASON_TEXT
};

const char *tally_reason_label(enum tally_reason reason)
{
  assert((unsigned)reason < TALLY_REASON_COUNT);
  assert(reason_labels[reason] != 0);
  return reason_labels[reason];
}

const char *tally_reason_text(enum tally_reason reason)
{
  assert((unsigned)reason < TALLY_REASON_COUNT);
  assert(reason_texts[reason] != 0);
  return reason_texts[reason];
}
