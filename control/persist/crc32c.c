/*
 * crc32c.c — CRC32C for the disk tier (crc32c.h): the SSE4.2 crc32
 * instruction 8 bytes at a time where the CPU has it, else slicing-by-8 over
 * tables built at load. Which one is chosen once, by a constructor, before
 * main; after that everything here is read-only, so any thread may call it
 * (the persister does).
 */
#include "crc32c.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82f63b78u

static uint32_t crc32c_table[8][256];
static bool crc32c_hardware;

__attribute__((constructor)) static void crc32c_init(void)
{
  for (uint32_t byte = 0; byte < 256; byte++) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (crc & 1u)));
    crc32c_table[0][byte] = crc;
  }
  for (uint32_t byte = 0; byte < 256; byte++) {
    for (int slice = 1; slice < 8; slice++) {
      uint32_t previous = crc32c_table[slice - 1][byte];
      crc32c_table[slice][byte] = (previous >> 8) ^ crc32c_table[0][previous & 0xffu];
    }
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc32c_hardware = __builtin_cpu_supports("sse4.2");
#endif
  assert(crc32c_table[0][1] == 0xf26b8303u);
}

uint32_t tally_persist_crc32c_software(const void *data, size_t size, uint32_t crc)
{
  assert(data != NULL || size == 0);
  assert(crc32c_table[0][1] != 0);
  const uint8_t *bytes = data;
  for (; size >= 8; size -= 8, bytes += 8) {
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    word ^= crc;
    crc = crc32c_table[7][word & 0xffu] ^ crc32c_table[6][(word >> 8) & 0xffu] ^
      crc32c_table[5][(word >> 16) & 0xffu] ^ crc32c_table[4][(word >> 24) & 0xffu] ^
      crc32c_table[3][(word >> 32) & 0xffu] ^ crc32c_table[2][(word >> 40) & 0xffu] ^
      crc32c_table[1][(word >> 48) & 0xffu] ^ crc32c_table[0][word >> 56];
  }
  for (; size > 0; size--, bytes++) crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *bytes) & 0xffu];
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(const uint8_t *bytes, size_t size,
  uint32_t crc)
{
  uint64_t crc64 = crc;
  for (; size >= 8; size -= 8, bytes += 8) {
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    crc64 = __builtin_ia32_crc32di(crc64, word);
  }
  crc = (uint32_t)crc64;
  for (; size > 0; size--, bytes++) crc = __builtin_ia32_crc32qi(crc, *bytes);
  return crc;
}
#endif

uint32_t tally_persist_crc32c(const void *data, size_t size, uint32_t crc)
{
  assert(data != NULL || size == 0);
#if defined(__x86_64__)
  if (crc32c_hardware) return crc32c_sse42(data, size, crc);
#endif
  return tally_persist_crc32c_software(data, size, crc);
}
