/*
 * persist_bytes.h — the disk tier's byte helpers, shared by every on-disk
 * format of control/persist (log records, checkpoints): little-endian stores
 * and loads whatever the host, and the 16-digit lowercase hex numbers that
 * file names carry. Pure; any thread.
 */
#ifndef TALLY_PERSIST_BYTES_H
#define TALLY_PERSIST_BYTES_H

#include <stdbool.h>
#include <stdint.h>

static inline void persist_store_u16(uint8_t *out, uint16_t value)
{
  out[0] = (uint8_t)value;
  out[1] = (uint8_t)(value >> 8);
}

static inline void persist_store_u32(uint8_t *out, uint32_t value)
{
  for (int i = 0; i < 4; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static inline void persist_store_u64(uint8_t *out, uint64_t value)
{
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static inline uint16_t persist_load_u16(const uint8_t *in)
{
  return (uint16_t)(in[0] | (in[1] << 8));
}

static inline uint32_t persist_load_u32(const uint8_t *in)
{
  uint32_t value = 0;
  for (int i = 3; i >= 0; i--) value = (value << 8) | in[i];
  return value;
}

static inline uint64_t persist_load_u64(const uint8_t *in)
{
  uint64_t value = 0;
  for (int i = 7; i >= 0; i--) value = (value << 8) | in[i];
  return value;
}

/* Parses exactly 16 lowercase hex digits at text into *value: false on any other character. */
static inline bool persist_parse_hex16(const char *text, uint64_t *value)
{
  uint64_t result = 0;
  for (int i = 0; i < 16; i++) {
    char c = text[i];
    uint64_t digit;
    if (c >= '0' && c <= '9') digit = (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f') digit = (uint64_t)(c - 'a' + 10);
    else return false;
    result = (result << 4) | digit;
  }
  *value = result;
  return true;
}

#endif
