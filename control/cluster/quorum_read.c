/*
 * quorum_read.c — `tallyctl get --quorum`: asks every member for its copies
 * of one counter (stream_in.c answers), on a socket of its own so that the
 * cluster thread's socket stays the cluster thread's, and sums per origin the
 * freshest copy heard (a node's own contribution beats any replica of it).
 * Waits at most TALLY_CLUSTER_QUORUM_READ_TIMEOUT_MS, on the real clock.
 * Runs on the control thread; the membership is copied under `lock` first,
 * so the wait never holds it.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster_internal.h"
#include "store_format.h"
#include "tally/name.h"

static uint64_t now_ms(void)
{
  return tally_clock_mono_ns() / 1000000ull;
}

struct quorum_copy {
  bool known;
  uint64_t scan;    /* freshness; UINT64_MAX: the origin's own */
  int64_t value;
};

static void quorum_consider(struct quorum_copy *copy, uint64_t scan, bool has, int64_t value)
{
  if (copy->known && copy->scan >= scan) return;
  copy->known = true;
  copy->scan = scan;
  copy->value = has ? value : 0;
}

/*
 * What a quorum read needs of the membership, copied under the lock so that
 * the read's network wait (up to 500 ms) never holds it. Copies are indexed
 * by replica region (the origin's slot), this node's own last.
 */
struct quorum_view {
  uint16_t self;
  uint32_t self_ipv4;
  uint8_t key[TALLY_KEY_SIZE];
  uint32_t nodes;                     /* members, this node included */
  uint32_t asked;
  uint16_t ids[TALLY_REPLICA_REGIONS_MAX];
  struct sockaddr_in addresses[TALLY_REPLICA_REGIONS_MAX];
};

#define QUORUM_SELF TALLY_REPLICA_REGIONS_MAX

static void quorum_view_take(struct tally_cluster *cluster, struct quorum_view *view)
{
  pthread_mutex_lock(&cluster->lock);
  const struct tally_cluster_config *config = cluster->config;
  view->self = config->node_id;
  memcpy(view->key, config->key, sizeof view->key);
  view->nodes = config->node_count;
  for (uint32_t i = 0; i < config->node_count; i++) {
    if (config->nodes[i].id == config->node_id) view->self_ipv4 = config->nodes[i].ipv4;
  }
  view->asked = 0;
  for (struct tally_cluster_peer *peer = NULL;
       (peer = tally_cluster_next_active(cluster, peer)) != NULL;) {
    view->ids[view->asked] = peer->id;
    view->addresses[view->asked++] = peer->address;
  }
  assert(view->asked + 1u == view->nodes);
  pthread_mutex_unlock(&cluster->lock);
}

/* This node's own copies (its contribution and every replica table it holds). */
static void quorum_local(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  struct quorum_copy *copies, bool *found)
{
  const struct tally_store *store = &cluster->appliance->store;
  uint32_t hash = tally_store_name_hash(store, name, name_len);
  __int128 own = 0;
  bool has = false;
  for (uint32_t i = 0; i < store->geometry.shard_count; i++) {
    int64_t slot = tally_shard_find(&store->shards[i], name, name_len, hash);
    if (slot < 0) continue;
    own += tally_shard_slot_value(&store->shards[i], (uint32_t)slot);
    has = true;
  }
  *found = *found || has;
  quorum_consider(&copies[QUORUM_SELF], UINT64_MAX, has,
    own > INT64_MAX || own < INT64_MIN ? 0 : (int64_t)own);
  for (uint32_t r = 0; r < store->geometry.replica_count; r++) {
    if (!tally_store_replica_bound(store, r)) continue;
    const struct tally_shard *replica = &store->replicas[r];
    int64_t slot = tally_shard_find(replica, name, name_len, hash);
    *found = *found || slot >= 0;
    quorum_consider(&copies[r], tally_shard_held_scan(replica), slot >= 0,
      slot >= 0 ? tally_shard_slot_value(replica, (uint32_t)slot) : 0);
  }
}

static int quorum_socket(const struct quorum_view *view)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0,
    .sin_addr.s_addr = htonl(view->self_ipv4) };
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/*
 * Folds one reply into the copies; returns true if it was the peer's last.
 * An origin this node holds no table of (a node it never had as a member)
 * is not summed.
 */
static bool quorum_reply(struct tally_cluster *cluster, const struct quorum_view *view,
  const struct tally_replication_message *reply, uint64_t request, struct quorum_copy *copies,
  bool *found)
{
  if (reply->type != TALLY_REPLICATION_READ_REPLY || reply->seq != request ||
      reply->peer_session != cluster->session) {
    return false; /* not an answer to this request of this process */
  }
  int32_t index = reply->origin == view->self ? (int32_t)QUORUM_SELF :
    tally_store_replica_find(&cluster->appliance->store, reply->origin);
  if (index >= 0) {
    *found = *found || reply->count == 1;
    quorum_consider(&copies[index], reply->scan, reply->count == 1,
      reply->count == 1 ? reply->entries[0].value : 0);
  }
  return (reply->flags & TALLY_REPLICATION_FLAG_LAST) != 0;
}

int tally_cluster_quorum_read(struct tally_cluster *cluster, const char *name, uint32_t name_len,
  __int128 *total, uint32_t *answered, uint32_t *nodes, bool *found)
{
  assert(tally_name_valid(name, name_len));
  struct quorum_view view;
  quorum_view_take(cluster, &view);
  struct quorum_copy copies[TALLY_REPLICA_REGIONS_MAX + 1u];
  memset(copies, 0, sizeof copies);
  *found = false;
  *answered = 1;
  *nodes = view.nodes;
  quorum_local(cluster, name, name_len, copies, found);
  int fd = quorum_socket(&view);
  if (fd < 0) return -1;
  uint64_t request = 0;
  randombytes_buf(&request, sizeof request);
  struct tally_replication_message ask = { .type = TALLY_REPLICATION_READ_REQUEST,
    .origin = view.self, .sender = view.self, .seq = request,
    .scan = tally_cluster_request_stamp(&cluster->read_stamp_us), .session = cluster->session,
    .count = 1, .entries = { { .name = name, .name_len = name_len, .value = 0 } } };
  uint8_t buffer[TALLY_REPLICATION_SIZE_MAX + 1];
  size_t size = tally_replication_encode(&ask, view.key, buffer, sizeof buffer);
  assert(size > 0);
  for (uint32_t p = 0; p < view.asked; p++) {
    ssize_t sent = sendto(fd, buffer, size, 0, (const struct sockaddr *)&view.addresses[p],
      sizeof view.addresses[p]);
    (void)sent;
  }
  bool done[TALLY_REPLICA_REGIONS_MAX] = { false };
  uint64_t deadline = now_ms() + TALLY_CLUSTER_QUORUM_READ_TIMEOUT_MS;
  while (*answered < view.asked + 1u && now_ms() < deadline) {
    struct pollfd descriptor = { .fd = fd, .events = POLLIN };
    if (poll(&descriptor, 1, (int)(deadline - now_ms())) <= 0) continue;
    ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    struct tally_replication_message reply;
    if (got < 0 || tally_replication_decode(buffer, (size_t)got, view.key, &reply) !=
        TALLY_REPLICATION_OK) {
      continue;
    }
    uint32_t p = 0;
    while (p < view.asked && view.ids[p] != reply.sender) p++;
    if (p == view.asked || done[p]) continue; /* not asked (not a member), or finished */
    if (quorum_reply(cluster, &view, &reply, request, copies, found)) {
      done[p] = true;
      (*answered)++;
    }
  }
  close(fd);
  *total = 0;
  for (uint32_t i = 0; i <= TALLY_REPLICA_REGIONS_MAX; i++) *total += copies[i].value;
  assert(*answered >= 1 && *answered <= *nodes);
  return 0;
}
