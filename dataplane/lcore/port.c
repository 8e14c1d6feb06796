/*
 * port.c — configures and starts the Ethernet ports the dataplane polls.
 * The (port, queue, lcore) table is checked here, before any lcore starts:
 * a port that cannot give every dataplane lcore its own queue pair is a
 * start-up error, never a silent fallback.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "port.h"

static int port_configure(uint16_t port, uint32_t queue_count, struct rte_mempool *pool,
  char *error, size_t error_size)
{
  struct rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(port, &info);
  if (rc != 0) {
    snprintf(error, error_size, "port %u: cannot read device info: %s", port, rte_strerror(-rc));
    return -1;
  }
  if (info.max_rx_queues < queue_count || info.max_tx_queues < queue_count) {
    snprintf(error, error_size,
      "port %u (%s): %u dataplane lcores need %u RX/TX queues, the port has %u/%u", port,
      info.driver_name, queue_count, queue_count, info.max_rx_queues, info.max_tx_queues);
    return -1;
  }
  struct rte_eth_conf conf;
  memset(&conf, 0, sizeof conf);
  uint64_t rss = info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP);
  if (queue_count > 1 && rss != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss;
  }
  if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_CHECKSUM) {
    conf.rxmode.offloads |= info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_CHECKSUM;
  }
  rc = rte_eth_dev_configure(port, (uint16_t)queue_count, (uint16_t)queue_count, &conf);
  if (rc != 0) {
    snprintf(error, error_size, "port %u: configure failed: %s", port, rte_strerror(-rc));
    return -1;
  }
  uint16_t rx_desc = TALLY_RX_DESC;
  uint16_t tx_desc = TALLY_TX_DESC;
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
  if (rc != 0) {
    snprintf(error, error_size, "port %u: descriptor counts rejected: %s", port,
      rte_strerror(-rc));
    return -1;
  }
  int socket = rte_eth_dev_socket_id(port);
  for (uint32_t queue = 0; queue < queue_count; queue++) {
    rc = rte_eth_rx_queue_setup(port, (uint16_t)queue, rx_desc, (unsigned)socket, NULL, pool);
    if (rc == 0) {
      rc = rte_eth_tx_queue_setup(port, (uint16_t)queue, tx_desc, (unsigned)socket, NULL);
    }
    if (rc != 0) {
      snprintf(error, error_size, "port %u queue %u: set-up failed: %s", port, queue,
        rte_strerror(-rc));
      return -1;
    }
  }
  return 0;
}

uint64_t tally_mbufs_needed(uint32_t port_count, uint32_t queue_count)
{
  assert(port_count >= 1 && port_count <= TALLY_PORTS_MAX);
  assert(queue_count >= 1 && queue_count <= TALLY_LCORES_MAX);
  uint64_t descriptors = (uint64_t)port_count * queue_count * (TALLY_RX_DESC + TALLY_TX_DESC);
  uint64_t per_lcore = TALLY_ACKS_PENDING_MAX + (uint64_t)(queue_count - 1u) *
    TALLY_STEER_RING_SIZE + TALLY_MBUF_CACHE_SIZE + TALLY_BURST_SIZE;
  return descriptors + queue_count * per_lcore;
}

int tally_ports_start(struct tally_ports *ports, uint32_t queue_count, uint32_t mbufs,
  char *error, size_t error_size)
{
  assert(queue_count >= 1 && queue_count <= TALLY_LCORES_MAX);
  assert(mbufs >= TALLY_MBUFS_MIN && mbufs <= TALLY_MBUFS_MAX);
  memset(ports, 0, sizeof *ports);
  uint16_t available = rte_eth_dev_count_avail();
  if (available == 0) {
    snprintf(error, error_size, "no Ethernet port: bind a NIC or add --vdev to eal.args");
    return -1;
  }
  uint32_t port_count = available < TALLY_PORTS_MAX ? available : TALLY_PORTS_MAX;
  uint64_t needed = tally_mbufs_needed(port_count, queue_count);
  if (mbufs < needed) { /* never smaller than what the queues can hold (issue 14, M1) */
    assert(needed <= TALLY_MBUFS_NEEDED_MAX);
    fprintf(stderr, "tallyd: dataplane.mbufs %u raised to %" PRIu64 " for %u lcores and %u ports"
      " (RX and TX rings, steering rings, pending acks, caches)\n", mbufs, needed, queue_count,
      port_count);
    mbufs = (uint32_t)needed;
  }
  ports->mbufs = mbufs;
  ports->pool = rte_pktmbuf_pool_create("tally_mbufs", mbufs, TALLY_MBUF_CACHE_SIZE, 0,
    RTE_PKTMBUF_HEADROOM + TALLY_MBUF_DATA_SIZE, (int)rte_socket_id());
  if (ports->pool == NULL) {
    snprintf(error, error_size, "mbuf pool of %u: %s (hugepages reserved?)", mbufs,
      rte_strerror(rte_errno));
    return -1;
  }
  uint16_t port;
  RTE_ETH_FOREACH_DEV(port) {
    if (ports->count == TALLY_PORTS_MAX || port >= TALLY_PORTS_MAX) {
      snprintf(error, error_size, "more than %u ports (port id %u)", TALLY_PORTS_MAX, port);
      return -1;
    }
    if (port_configure(port, queue_count, ports->pool, error, error_size) != 0) return -1;
    int rc = rte_eth_macaddr_get(port, &ports->macs[port]);
    if (rc == 0) rc = rte_eth_dev_start(port);
    if (rc != 0) {
      snprintf(error, error_size, "port %u: start failed: %s", port, rte_strerror(-rc));
      return -1;
    }
    ports->ids[ports->count++] = port;
  }
  assert(ports->count >= 1);
  return 0;
}

void tally_ports_stop(struct tally_ports *ports)
{
  assert(ports->count <= TALLY_PORTS_MAX);
  for (uint16_t i = 0; i < ports->count; i++) {
    assert(ports->ids[i] < TALLY_PORTS_MAX);
    rte_eth_dev_stop(ports->ids[i]);
    rte_eth_dev_close(ports->ids[i]);
  }
  ports->count = 0;
}
