/*
 * http.c — /metrics, /counters, /health/live and /health/ready over
 * libmicrohttpd.
 * The daemon runs its own polling thread with a connection limit, a
 * per-source-address limit, a memory pool bound per connection and an idle
 * timeout, so a slow scraper cannot stall the control thread (bulkhead) and
 * one slowloris source cannot take every connection from /health/live.
 * Bodies come from the same actions tallyctl uses; /counters is streamed
 * (counters.c), never built in memory.
 *
 * Thread: start and stop on the main thread (start-up, shutdown); requests on
 * libmicrohttpd's own polling thread (the HTTP thread).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "actions.h"
#include "counters.h"
#include "http.h"

/* Queues a response with its content type, and lets go of it. */
static enum MHD_Result queue(struct MHD_Connection *connection, unsigned status,
  struct MHD_Response *response, const char *content_type)
{
  assert(response != NULL);
  MHD_add_response_header(response, "Content-Type", content_type);
  enum MHD_Result result = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return result;
}

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned status,
  struct tally_out *out, const char *content_type)
{
  size_t length = 0;
  char *body = tally_out_take(out, &length);
  if (body == NULL) return MHD_NO;
  struct MHD_Response *response =
    MHD_create_response_from_buffer(length, body, MHD_RESPMEM_MUST_FREE);
  if (response == NULL) {
    free(body);
    return MHD_NO;
  }
  return queue(connection, status, response, content_type);
}

/*
 * GET /counters[?prefix=P]: OpenMetrics when the Accept header names
 * application/openmetrics-text (as Prometheus's does), else the text format.
 * HEAD answers the headers without opening a stream.
 */
static enum MHD_Result counters(struct tally_appliance *appliance,
  struct MHD_Connection *connection, bool head, struct tally_out *out)
{
  const char *accept = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
    MHD_HTTP_HEADER_ACCEPT);
  bool openmetrics = accept != NULL && strstr(accept, "application/openmetrics-text") != NULL;
  const char *content_type = tally_counters_content_type(openmetrics);
  if (head) return respond(connection, MHD_HTTP_OK, out, content_type);
  const char *prefix = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "prefix");
  unsigned status = 0;
  struct tally_counters_stream *stream = tally_counters_open(appliance, prefix,
    prefix == NULL ? 0 : strlen(prefix), openmetrics, &status, out);
  if (stream == NULL) return respond(connection, status, out, "text/plain; charset=utf-8");
  size_t length = 0;
  free(tally_out_take(out, &length));
  struct MHD_Response *response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN,
    TALLY_HTTP_COUNTERS_CHUNK_SIZE, tally_counters_read, stream, tally_counters_close);
  if (response == NULL) {
    tally_counters_close(stream);
    return MHD_NO;
  }
  return queue(connection, MHD_HTTP_OK, response, content_type);
}

static enum MHD_Result handle_request(void *context, struct MHD_Connection *connection,
  const char *url, const char *method, const char *version, const char *upload_data,
  size_t *upload_data_size, void **request_state)
{
  (void)version;
  (void)upload_data;
  struct tally_appliance *appliance = context;
  assert(appliance != NULL);
  assert(url != NULL);
  static int first_call_marker;
  if (*request_state == NULL) { /* headers only so far; answer on the next call */
    *request_state = &first_call_marker;
    return MHD_YES;
  }
  if (*upload_data_size != 0) return MHD_NO; /* no bodies accepted */
  struct tally_out out;
  tally_out_init_memory(&out);
  const char *text = "text/plain; charset=utf-8";
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    tally_out_printf(&out, "method not allowed\n");
    return respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, &out, text);
  }
  if (strcmp(url, "/metrics") == 0) {
    enum tally_action_result result = tally_action_metrics(appliance, &out);
    unsigned status = result == TALLY_ACTION_OK ? MHD_HTTP_OK : MHD_HTTP_INTERNAL_SERVER_ERROR;
    return respond(connection, status, &out, "text/plain; version=0.0.4; charset=utf-8");
  }
  if (strcmp(url, "/counters") == 0) {
    return counters(appliance, connection, strcmp(method, "HEAD") == 0, &out);
  }
  if (strcmp(url, "/health/live") == 0) {
    tally_out_printf(&out, "live\n");
    return respond(connection, MHD_HTTP_OK, &out, text);
  }
  if (strcmp(url, "/health/ready") == 0) {
    bool ready = tally_action_ready(appliance, &out);
    return respond(connection, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, &out, text);
  }
  tally_out_printf(&out, "not found\n");
  return respond(connection, MHD_HTTP_NOT_FOUND, &out, text);
}

struct MHD_Daemon *tally_http_start(struct tally_appliance *appliance, char *error,
  size_t error_size)
{
  assert(appliance->config.http_port != 0);
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_port = htons(appliance->config.http_port);
  address.sin_addr.s_addr = htonl(appliance->config.http_ipv4);
  struct MHD_Daemon *daemon = MHD_start_daemon(
    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, appliance->config.http_port, NULL,
    NULL, handle_request, appliance, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
    MHD_OPTION_CONNECTION_LIMIT, (unsigned)TALLY_HTTP_CONNECTIONS_MAX,
    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)TALLY_HTTP_CONNECTIONS_PER_IP_MAX,
    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)TALLY_HTTP_CONNECTION_MEMORY_BYTES,
    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)TALLY_HTTP_TIMEOUT_S, MHD_OPTION_END);
  if (daemon == NULL) {
    char text[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
    snprintf(error, error_size, "control.http: cannot listen on %s:%u", text,
      appliance->config.http_port);
  }
  return daemon;
}

void tally_http_stop(struct MHD_Daemon *daemon)
{
  if (daemon != NULL) MHD_stop_daemon(daemon);
}
