/*
 * http.h — the HTTP interface (libmicrohttpd, its own thread): Prometheus
 * text on /metrics, /health/live and /health/ready.
 */
#ifndef TALLY_HTTP_H
#define TALLY_HTTP_H

#include "appliance.h"

struct MHD_Daemon;

/* Starts serving on config.http_ipv4:http_port. NULL with error on failure. */
struct MHD_Daemon *tally_http_start(struct tally_appliance *appliance, char *error,
  size_t error_size);
void tally_http_stop(struct MHD_Daemon *daemon);

#endif
