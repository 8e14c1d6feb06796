/*
 * crc32c.h — CRC32C (Castagnoli) for the disk tier, without DPDK: the
 * persister library links no DPDK, so it cannot use rte_hash_crc.h as the
 * store does. Same arithmetic as the store's tally_crc32c(): a raw update
 * from the given seed, no pre- or post-inversion, so either may check the
 * other's bytes. The SSE4.2 instruction where the CPU has it (chosen once, at
 * load), a table otherwise. Thread-safe; runs on any thread.
 */
#ifndef TALLY_PERSIST_CRC32C_H
#define TALLY_PERSIST_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC32C of size bytes at data, continuing from crc (a seed or a previous result). */
uint32_t tally_persist_crc32c(const void *data, size_t size, uint32_t crc);

/* The table version, whatever the CPU (for tests: both must agree). */
uint32_t tally_persist_crc32c_software(const void *data, size_t size, uint32_t crc);

#endif
