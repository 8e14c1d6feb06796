/*
 * client_internal.h — the pieces libtally is built from: the client's state
 * (shared by client.c, which owns the open batch and the lifecycle, and
 * client_flight.c, which owns sealed batches until they end), the circuit
 * breaker and the backoff (client_policy.c, pure) and the UDP socket with the
 * node addresses (client_net.c). Not installed; not an API.
 */
#ifndef TALLY_CLIENT_INTERNAL_H
#define TALLY_CLIENT_INTERNAL_H

#include <assert.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "tally/client.h"

/* ---- Network (client_net.c) --------------------------------------------------- */

/* Resolves "host:port" (IPv4). Writes a message into error on failure. */
bool client_net_resolve(const char *node, struct sockaddr_in *address, char *error,
  size_t error_size);
/* A non-blocking, close-on-exec UDP socket, or -1 (errno set). */
int client_net_open(void);
/* Sends one datagram. 0, or the errno (EAGAIN included). */
int client_net_send(int fd, const struct sockaddr_in *address, const uint8_t *data,
  size_t size);
/*
 * Receives one datagram without blocking. Returns its size (0 for an empty
 * one), -EAGAIN if none is waiting, or another -errno. *from is its sender.
 */
long client_net_receive(int fd, uint8_t *data, size_t capacity, struct sockaddr_in *from);
/* Waits until readable or timeout_ms. 1 readable, 0 not, -errno. */
int client_net_wait(int fd, uint32_t timeout_ms);

/* ---- Client state (client.c, client_flight.c) --------------------------------- */

enum client_batch_state {
  CLIENT_BATCH_FREE = 0, /* slot holds no seq */
  CLIENT_BATCH_WAITING,  /* latest attempt sent; timer = its ack timeout */
  CLIENT_BATCH_BACKOFF,  /* waiting to resend; timer = end of the backoff */
  CLIENT_BATCH_DONE,     /* ended and reported; holds its seq until older ones end */
};

/*
 * A sealed batch: its datagram (each send rewrites only its attempt field and
 * MAC) and its progress.
 */
struct client_batch {
  enum client_batch_state state;
  uint32_t attempts;
  uint32_t node;           /* node of the latest attempt, TALLY_CLIENT_NODE_NONE before */
  bool probe;              /* the latest attempt holds that node's half-open probe */
  bool uncertain;          /* some attempt went unanswered */
  uint64_t timer_ms;
  uint64_t deadline_ms;
  uint32_t size;           /* datagram bytes */
  struct tally_wire_batch wire; /* decoded view: pairs point into datagram */
  uint8_t datagram[TALLY_DATAGRAM_SIZE_MAX];
};

/* A pair of the open (not yet sealed) batch. */
struct client_open_pair {
  int64_t delta;
  uint32_t name_len;
  char name[TALLY_NAME_LEN_MAX];
};

struct tally_client {
  struct tally_client_config config; /* node strings dropped after new */
  int fd;
  uint32_t node_count;
  struct sockaddr_in addresses[TALLY_CLIENT_NODES_MAX];
  struct tally_breaker breakers[TALLY_CLIENT_NODES_MAX];
  uint64_t next_seq;       /* seq of the next sealed batch */
  uint64_t oldest_seq;     /* oldest seq holding a slot; == next_seq when none */
  uint32_t open_count;
  uint32_t open_size;      /* encoded bytes of the open batch, MAC included */
  struct client_open_pair open[TALLY_BATCH_PAIRS_MAX];
  bool in_callback;
  struct tally_client_stats stats;
  struct client_batch batches[]; /* config.inflight_max slots, slot = seq % inflight_max */
};

/* Encoded size of a batch with no pairs (header + MAC). */
#define CLIENT_BATCH_EMPTY_SIZE (TALLY_WIRE_HEADER_SIZE + TALLY_MAC_SIZE)

/*
 * The client's clock (config.now_ms). Inline here, beside the state, so that
 * client.c and client_flight.c both read it without calling each other.
 */
static inline uint64_t client_now_ms(struct tally_client *client)
{
  assert(client->config.now_ms != NULL);
  uint64_t now_ms = client->config.now_ms(client->config.ops_context);
  assert(now_ms < UINT64_MAX / 2); /* room for now + any duration */
  return now_ms;
}
/* Is there a slot (and room in the seq window) for one more sealed batch? */
bool client_has_room(const struct tally_client *client);
/* Seals open (producer and seq = next_seq set) into a slot and sends its first attempt. */
void client_flight_seal(struct tally_client *client, const struct tally_wire_batch *open,
  uint64_t now_ms);
/* Waits up to timeout_ms, reads acks, runs timers. OK or EIO. */
enum tally_client_status client_flight_poll(struct tally_client *client, uint32_t timeout_ms);
/* Ends every unfinished sealed batch with CANCELLED. */
void client_flight_cancel_all(struct tally_client *client);

#endif
