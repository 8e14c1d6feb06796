/*
 * counters.c — GET /counters: every counter as a Prometheus gauge, in the
 * text format (0.0.4) or OpenMetrics 1.0 (then ending "# EOF"), streamed.
 *
 * A scrape never builds its answer in memory: libmicrohttpd pulls bytes
 * through tally_counters_read, and each refill walks at most
 * TALLY_HTTP_COUNTERS_SLOTS_PER_REFILL slots of the store (published slots
 * only, as `tallyctl list` reads them: no lock, nothing the lcores wait for)
 * into one TALLY_HTTP_COUNTERS_CHUNK_SIZE buffer. The one structure that
 * grows is the set of metric families already announced (a HELP and TYPE
 * line once per family, as the text format requires, however the family's
 * series are spread over the slot tables): 8-byte hashes, at most half full,
 * doubled as needed. At most TALLY_HTTP_COUNTERS_STREAMS_MAX streams at once.
 * Names and labels come from export_name.c; which tables are exported
 * (a node's own shards, and in a cluster the replicas Prometheus needs) from
 * the node mode (modes.h, counters_view).
 *
 * Thread: the HTTP thread (libmicrohttpd's polling thread) only.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "counters.h"
#include "export_name.h"
#include "modes.h"
#include "store_format.h"
#include "tally/name.h"

/* Bytes one key may add to the chunk: HELP, TYPE and its sample line. */
#define COUNTERS_KEY_ROOM (3u * TALLY_EXPORT_LINE_SIZE_MAX)
/* Bytes of the companion series (cluster: one line per copy and the members). */
#define COUNTERS_COMPANION_ROOM (512u + 160u * (1u + TALLY_REPLICA_REGIONS_MAX))

static_assert(COUNTERS_KEY_ROOM * 4u <= TALLY_HTTP_COUNTERS_CHUNK_SIZE, "keys fit a chunk");
static_assert(COUNTERS_COMPANION_ROOM <= TALLY_HTTP_COUNTERS_CHUNK_SIZE, "companions fit");

enum counters_phase { PHASE_COUNTERS, PHASE_COMPANIONS, PHASE_END, PHASE_DONE };

struct tally_counters_stream {
  struct tally_appliance *appliance;
  struct tally_counters_view view;
  bool openmetrics;
  bool failed;                        /* sticky: the answer ends with an error */
  enum counters_phase phase;
  uint32_t prefix_len;
  char prefix[TALLY_NAME_LEN_MAX];
  char origin_text[1u + TALLY_REPLICA_REGIONS_MAX][24]; /* per copy: origin="ID" */
  uint32_t copy;                      /* cursor: view.copies[copy] */
  uint32_t table;                     /* its table */
  uint32_t slot;                      /* that table's slot */
  uint64_t *families;                 /* announced families' hashes; 0: empty */
  uint64_t families_capacity;         /* a power of two */
  uint64_t families_used;             /* < capacity / 2 */
  uint64_t series;                    /* samples written */
  size_t used;                        /* chunk[sent, used) still to hand out */
  size_t sent;
  char chunk[TALLY_HTTP_COUNTERS_CHUNK_SIZE];
};

/* Figures for /metrics; the HTTP thread writes them, relaxed (test threads read). */
static struct {
  uint64_t open;
  uint64_t scrapes;
  uint64_t refused;
  uint64_t failed;
  uint64_t series_last;
} figures;

static uint64_t figure(const uint64_t *value)
{
  return __atomic_load_n(value, __ATOMIC_RELAXED);
}

static void figure_add(uint64_t *value, int64_t delta)
{
  __atomic_fetch_add(value, (uint64_t)delta, __ATOMIC_RELAXED);
}

/* ---- the chunk -------------------------------------------------------------------- */

static void append(struct tally_counters_stream *stream, const char *bytes, size_t count)
{
  assert(stream->used + count <= sizeof stream->chunk);
  memcpy(stream->chunk + stream->used, bytes, count);
  stream->used += count;
}

static void append_format(struct tally_counters_stream *stream, const char *format, ...)
  __attribute__((format(printf, 2, 3)));

static void append_format(struct tally_counters_stream *stream, const char *format, ...)
{
  va_list arguments;
  va_start(arguments, format);
  size_t room = sizeof stream->chunk - stream->used;
  int length = vsnprintf(stream->chunk + stream->used, room, format, arguments);
  va_end(arguments);
  assert(length >= 0 && (size_t)length < room);
  stream->used += (size_t)length;
}

/* ---- families announced ------------------------------------------------------------ */

static uint64_t family_hash(const char *name, size_t length)
{
  uint64_t hash = 14695981039346656037ull; /* FNV-1a */
  for (size_t i = 0; i < length; i++) hash = (hash ^ (uint8_t)name[i]) * 1099511628211ull;
  return hash == 0 ? 1 : hash;
}

static bool families_alloc(struct tally_counters_stream *stream, uint64_t capacity)
{
  assert(capacity >= 16 && (capacity & (capacity - 1)) == 0);
  uint64_t *table = calloc(capacity, sizeof *table);
  if (table == NULL) return false;
  for (uint64_t i = 0; i < stream->families_capacity; i++) {
    uint64_t hash = stream->families[i];
    if (hash == 0) continue;
    uint64_t at = hash & (capacity - 1);
    while (table[at] != 0) at = (at + 1) & (capacity - 1);
    table[at] = hash;
  }
  free(stream->families);
  stream->families = table;
  stream->families_capacity = capacity;
  return true;
}

/* Adds a family; true if it is new (announce it). Fails the stream without memory. */
static bool family_new(struct tally_counters_stream *stream, const char *name, size_t length)
{
  if (2u * (stream->families_used + 1u) > stream->families_capacity &&
      !families_alloc(stream, 2u * stream->families_capacity)) {
    stream->failed = true;
    return false;
  }
  uint64_t hash = family_hash(name, length);
  uint64_t mask = stream->families_capacity - 1;
  uint64_t at = hash & mask;
  for (uint64_t probes = 0; stream->families[at] != 0; probes++) {
    assert(probes < stream->families_capacity);
    if (stream->families[at] == hash) return false;
    at = (at + 1) & mask;
  }
  stream->families[at] = hash;
  stream->families_used++;
  return true;
}

/*
 * HELP and TYPE lines for a family not announced yet; help_name (the statsd
 * name, or NULL) ends the help text. Plain copies, no printf: at a million
 * counters these lines are two thirds of the answer.
 */
static void announce(struct tally_counters_stream *stream, const char *family, size_t length,
  const char *help, const char *help_name, size_t help_name_len)
{
  if (!family_new(stream, family, length)) return;
  assert(length + strlen(help) + help_name_len + 32u <= TALLY_EXPORT_LINE_SIZE_MAX);
  append(stream, "# HELP ", 7);
  append(stream, family, length);
  append(stream, " ", 1);
  append(stream, help, strlen(help));
  if (help_name != NULL) append(stream, help_name, help_name_len);
  append(stream, "\n# TYPE ", 8);
  append(stream, family, length);
  append(stream, " gauge\n", 7);
}

/* ---- counters ---------------------------------------------------------------------- */

/* Whether a table of the copy before `before` holds the key (summed there already). */
static bool found_earlier(const struct tally_counters_copy *copy, uint32_t before,
  const char *key, uint32_t key_len, uint32_t hash)
{
  assert(before < copy->table_count);
  for (uint32_t t = 0; t < before; t++) {
    if (tally_shard_find(&copy->tables[t], key, key_len, hash) >= 0) return true;
  }
  return false;
}

/*
 * The key's value in the copy (exact in 128 bits): the slot at the cursor
 * (table `from`), plus the key's slot in each later table.
 */
static __int128 copy_total(const struct tally_counters_copy *copy, uint32_t from, uint32_t slot,
  const char *key, uint32_t key_len, uint32_t hash)
{
  __int128 total = tally_shard_slot_value(&copy->tables[from], slot);
  for (uint32_t t = from + 1; t < copy->table_count; t++) {
    int64_t found = tally_shard_find(&copy->tables[t], key, key_len, hash);
    if (found >= 0) total += tally_shard_slot_value(&copy->tables[t], (uint32_t)found);
  }
  return total;
}

static void emit_sample(struct tally_counters_stream *stream,
  const struct tally_counters_copy *copy, const char *key, uint32_t key_len, __int128 total)
{
  struct tally_export_series series;
  tally_export_series_of(key, key_len, &series);
  size_t name_len = key_len;
  const char *brace = memchr(key, '{', key_len);
  if (brace != NULL) name_len = (size_t)(brace - key);
  /* A plain name is letters, digits and dots: safe in a HELP text as it is. */
  announce(stream, series.text, series.family_len,
    series.plain ? "Tally counter " : "Tally counter (its key in the statsd_name label)",
    series.plain ? key : NULL, series.plain ? name_len : 0);
  append(stream, series.text, series.family_len);
  bool labels = series.length > series.family_len;
  if (labels || copy->has_origin) append(stream, "{", 1);
  append(stream, series.text + series.family_len, series.length - series.family_len);
  if (labels && copy->has_origin) append(stream, ",", 1);
  if (copy->has_origin) {
    const char *origin = stream->origin_text[stream->copy];
    append(stream, origin, strlen(origin));
  }
  if (labels || copy->has_origin) append(stream, "}", 1);
  char value[TALLY_ACTION_TOTAL_SIZE + 2];
  value[0] = ' ';
  size_t length = tally_action_format_total(value + 1, total);
  value[1 + length] = '\n';
  append(stream, value, length + 2);
  stream->series++;
}

/* One slot at the cursor: a sample if it is a new key of its copy under the prefix. */
static void counters_slot(struct tally_counters_stream *stream)
{
  const struct tally_counters_copy *copy = &stream->view.copies[stream->copy];
  const struct tally_shard *table = &copy->tables[stream->table];
  uint32_t slot = stream->slot;
  if (!tally_shard_slot_readable(table, slot)) return;
  const struct tally_slot *entry = &table->slots[slot];
  uint32_t key_len = entry->name_len;
  assert(key_len >= 1 && key_len <= TALLY_NAME_LEN_MAX);
  if (key_len < stream->prefix_len || memcmp(entry->name, stream->prefix, stream->prefix_len) != 0) {
    return;
  }
  if (stream->table > 0 && found_earlier(copy, stream->table, entry->name, key_len, entry->hash)) {
    return;
  }
  __int128 total = copy_total(copy, stream->table, slot, entry->name, key_len, entry->hash);
  emit_sample(stream, copy, entry->name, key_len, total);
}

/* Moves the cursor one slot on; false once every copy is done. */
static bool cursor_next(struct tally_counters_stream *stream)
{
  const struct tally_counters_copy *copy = &stream->view.copies[stream->copy];
  if (++stream->slot < copy->tables[stream->table].slots_count) return true;
  stream->slot = 0;
  if (++stream->table < copy->table_count) return true;
  stream->table = 0;
  return ++stream->copy < stream->view.count;
}

/* ---- companions (a cluster): which copy of each origin, how fresh ------------------- */

static void companions(struct tally_counters_stream *stream)
{
  if (stream->view.members == 0) return; /* a single node: no origins */
  static const char copy_family[] = "tally_counters_copy_timestamp_seconds";
  announce(stream, copy_family, sizeof copy_family - 1,
    "scan time the copy of an origin's counters is complete up to (+Inf: the origin's own, live)",
    NULL, 0);
  for (uint32_t i = 0; i < stream->view.count; i++) {
    const struct tally_counters_copy *copy = &stream->view.copies[i];
    assert(copy->has_origin);
    if (copy->own) {
      append_format(stream, "%s{origin=\"%u\",copy=\"own\"} +Inf\n", copy_family, copy->origin);
    } else {
      append_format(stream, "%s{origin=\"%u\",copy=\"replica\"} %" PRIu64 ".%06" PRIu64 "\n",
        copy_family, copy->origin, copy->scan_us / 1000000u, copy->scan_us % 1000000u);
    }
  }
  static const char members_family[] = "tally_counters_members";
  announce(stream, members_family, sizeof members_family - 1,
    "nodes in the running membership (a cluster-wide read is whole with this many origins live)",
    NULL, 0);
  append_format(stream, "%s %u\n", members_family, stream->view.members);
}

/* Fills the (empty) chunk with what comes next; bounded work per call. */
static void refill(struct tally_counters_stream *stream)
{
  assert(stream->used == 0 && stream->sent == 0);
  uint32_t budget = TALLY_HTTP_COUNTERS_SLOTS_PER_REFILL;
  while (stream->phase == PHASE_COUNTERS && budget-- > 0 && !stream->failed &&
         stream->used + COUNTERS_KEY_ROOM <= sizeof stream->chunk) {
    counters_slot(stream);
    if (!cursor_next(stream)) stream->phase = PHASE_COMPANIONS;
  }
  if (stream->phase == PHASE_COMPANIONS && !stream->failed &&
      stream->used + COUNTERS_COMPANION_ROOM <= sizeof stream->chunk) {
    companions(stream);
    stream->phase = PHASE_END;
  }
  if (stream->phase == PHASE_END && stream->used + 8u <= sizeof stream->chunk) {
    if (stream->openmetrics) append(stream, "# EOF\n", 6);
    stream->phase = PHASE_DONE;
  }
}

ssize_t tally_counters_read(void *context, uint64_t position, char *buffer, size_t size)
{
  struct tally_counters_stream *stream = context;
  (void)position;
  assert(size >= 1);
  size_t copied = 0;
  while (copied < size) {
    if (stream->sent == stream->used) {
      stream->used = stream->sent = 0;
      if (stream->phase == PHASE_DONE || stream->failed) break;
      refill(stream);
      continue;
    }
    size_t count = stream->used - stream->sent;
    if (count > size - copied) count = size - copied;
    memcpy(buffer + copied, stream->chunk + stream->sent, count);
    stream->sent += count;
    copied += count;
  }
  if (copied > 0) return (ssize_t)copied;
  if (stream->failed) return MHD_CONTENT_READER_END_WITH_ERROR; /* never a silent cut */
  return MHD_CONTENT_READER_END_OF_STREAM;
}

void tally_counters_close(void *context)
{
  struct tally_counters_stream *stream = context;
  assert(figure(&figures.open) >= 1);
  if (stream->phase == PHASE_DONE && !stream->failed) {
    __atomic_store_n(&figures.series_last, stream->series, __ATOMIC_RELAXED);
  } else {
    figure_add(&figures.failed, 1); /* out of memory, or the client went away */
  }
  figure_add(&figures.open, -1);
  free(stream->families);
  free(stream);
}

static struct tally_counters_stream *refuse(unsigned *status, unsigned code,
  struct tally_out *error, const char *reason)
{
  *status = code;
  tally_out_printf(error, "%s\n", reason);
  if (code == MHD_HTTP_SERVICE_UNAVAILABLE) figure_add(&figures.refused, 1);
  return NULL;
}

/* Families to expect: counters in the exported tables (an upper bound), and companions. */
static uint64_t families_expected(const struct tally_counters_view *view)
{
  uint64_t count = 8;
  for (uint32_t i = 0; i < view->count; i++) {
    for (uint32_t t = 0; t < view->copies[i].table_count; t++) {
      count += tally_shard_counters_used(&view->copies[i].tables[t]);
    }
  }
  return count;
}

struct tally_counters_stream *tally_counters_open(struct tally_appliance *appliance,
  const char *prefix, size_t prefix_len, bool openmetrics, unsigned *status,
  struct tally_out *error)
{
  assert(appliance->node != NULL && (prefix != NULL || prefix_len == 0));
  for (size_t i = 0; i < prefix_len; i++) {
    if (prefix_len > TALLY_NAME_LEN_MAX || !tally_name_byte_valid((uint8_t)prefix[i])) {
      return refuse(status, MHD_HTTP_BAD_REQUEST, error, "invalid prefix");
    }
  }
  if (figure(&figures.open) >= TALLY_HTTP_COUNTERS_STREAMS_MAX) {
    return refuse(status, MHD_HTTP_SERVICE_UNAVAILABLE, error,
      "too many /counters scrapes at once; try again");
  }
  struct tally_counters_stream *stream = malloc(sizeof *stream);
  if (stream == NULL) return refuse(status, MHD_HTTP_SERVICE_UNAVAILABLE, error, "out of memory");
  memset(stream, 0, offsetof(struct tally_counters_stream, chunk));
  stream->appliance = appliance;
  stream->openmetrics = openmetrics;
  stream->prefix_len = (uint32_t)prefix_len;
  if (prefix_len > 0) memcpy(stream->prefix, prefix, prefix_len);
  appliance->node->counters_view(appliance, &stream->view);
  assert(stream->view.count >= 1 && stream->view.count <= 1u + TALLY_REPLICA_REGIONS_MAX);
  for (uint32_t i = 0; i < stream->view.count; i++) {
    snprintf(stream->origin_text[i], sizeof stream->origin_text[i], "origin=\"%u\"",
      stream->view.copies[i].origin);
  }
  uint64_t capacity = 16;
  while (capacity < 2u * families_expected(&stream->view)) capacity *= 2;
  if (!families_alloc(stream, capacity)) {
    free(stream);
    return refuse(status, MHD_HTTP_SERVICE_UNAVAILABLE, error, "out of memory");
  }
  /* A node with no tables (no lcores: the unit tests' appliance) has no counters. */
  stream->phase = stream->view.copies[0].table_count == 0 ? PHASE_COMPANIONS : PHASE_COUNTERS;
  figure_add(&figures.open, 1);
  figure_add(&figures.scrapes, 1);
  *status = MHD_HTTP_OK;
  return stream;
}

const char *tally_counters_content_type(bool openmetrics)
{
  return openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8" :
    "text/plain; version=0.0.4; charset=utf-8";
}

void tally_counters_metrics(struct tally_out *out)
{
  tally_out_printf(out, "# HELP tally_http_counters_scrapes_total GET /counters answers begun\n"
    "# TYPE tally_http_counters_scrapes_total counter\n"
    "tally_http_counters_scrapes_total %" PRIu64 "\n", figure(&figures.scrapes));
  tally_out_printf(out, "# HELP tally_http_counters_refused_total GET /counters answered 503 "
    "(too many at once, or no memory)\n# TYPE tally_http_counters_refused_total counter\n"
    "tally_http_counters_refused_total %" PRIu64 "\n", figure(&figures.refused));
  tally_out_printf(out, "# HELP tally_http_counters_failed_total GET /counters answers not "
    "finished (client gone, or no memory: the answer was cut with an error)\n"
    "# TYPE tally_http_counters_failed_total counter\n"
    "tally_http_counters_failed_total %" PRIu64 "\n", figure(&figures.failed));
  tally_out_printf(out, "# HELP tally_http_counters_series series in the last whole GET "
    "/counters answer\n# TYPE tally_http_counters_series gauge\n"
    "tally_http_counters_series %" PRIu64 "\n", figure(&figures.series_last));
}
