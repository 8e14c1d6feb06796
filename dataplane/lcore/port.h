/*
 * port.h — Ethernet port set-up for the dataplane: every port EAL probed (a
 * real NIC bound to vfio-pci, or a virtual device such as net_af_packet,
 * net_tap or net_ring) gets one RX and one TX queue per dataplane lcore, with
 * RSS when the port has several queues and supports it.
 */
#ifndef TALLY_PORT_H
#define TALLY_PORT_H

#include <stddef.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_mempool.h>

#include "tally/limits.h"

struct tally_ports {
  uint16_t count;
  uint16_t ids[TALLY_PORTS_MAX];
  struct rte_ether_addr macs[TALLY_PORTS_MAX]; /* indexed by port id */
  struct rte_mempool *pool;
  uint32_t mbufs;                              /* the pool's size: >= tally_mbufs_needed() */
};

/*
 * The mbufs the dataplane can hold at once with port_count ports and
 * queue_count lcores (issue 14, M1): every RX and TX descriptor of every
 * queue, each lcore's pending-ack FIFO and its steering rings from the other
 * lcores full, and each lcore's mempool cache and one burst in hand. A pool
 * smaller than this can run dry under a flood, and then every lcore drops.
 */
uint64_t tally_mbufs_needed(uint32_t port_count, uint32_t queue_count);

/*
 * Creates the mbuf pool and configures and starts every available port with
 * queue_count RX/TX queues. The pool has max(mbufs, tally_mbufs_needed()) for
 * the ports EAL probed (raised with one line on stderr). Returns 0, or -1 with
 * a one-line error.
 */
int tally_ports_start(struct tally_ports *ports, uint32_t queue_count, uint32_t mbufs,
  char *error, size_t error_size);

/* Stops and closes every port. */
void tally_ports_stop(struct tally_ports *ports);

#endif
