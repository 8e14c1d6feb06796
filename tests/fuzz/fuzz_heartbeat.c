/*
 * fuzz_heartbeat.c — libFuzzer target of the heartbeat datagram codec
 * (control/cluster/proto/heartbeat_wire.c).
 *
 * Every input is decoded as it came, with a fixed key: that fuzzes the checks
 * in front of the MAC. Random bytes almost never carry a valid MAC, so when
 * the first byte is odd, the next 32 bytes (zero-padded) become a body that is
 * signed correctly and decoded again; when bit 1 of the first byte is also
 * set, the body's header gets a valid magic, version and type. That fuzzes
 * the checks behind the MAC, with an exact oracle: a signed body with a valid
 * header decodes iff its flags are known and its reserved bytes are zero.
 * Whatever decodes must re-encode to exactly the same bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "heartbeat_wire.h"
#include "tally/mac.h"

/* Stays on whatever NDEBUG says: a failed check is a finding. */
#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) abort(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[TALLY_KEY_SIZE] = {
  0x5a, 0x11, 0x7e, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
  0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a,
  0x1b, 0x1c,
};

static enum tally_heartbeat_reason check_decode(const uint8_t *data, size_t size)
{
  struct tally_heartbeat heartbeat;
  enum tally_heartbeat_reason reason = tally_heartbeat_decode(data, size, fuzz_key, &heartbeat);
  FUZZ_CHECK((uint32_t)reason < TALLY_HEARTBEAT_REASON_COUNT);
  FUZZ_CHECK(tally_heartbeat_reason_name(reason) != NULL);
  if (reason != TALLY_HEARTBEAT_OK) {
    FUZZ_CHECK(heartbeat.node_id == 0 && heartbeat.flags == 0 && heartbeat.generation == 0);
    FUZZ_CHECK(heartbeat.send_time_ns == 0 && heartbeat.lsn == 0);
    if (size < TALLY_HEARTBEAT_SIZE) FUZZ_CHECK(reason == TALLY_HEARTBEAT_TRUNCATED);
    return reason;
  }
  FUZZ_CHECK(size == TALLY_HEARTBEAT_SIZE);
  FUZZ_CHECK((heartbeat.flags & ~TALLY_HEARTBEAT_FLAGS_KNOWN) == 0);
  uint8_t encoded[TALLY_HEARTBEAT_SIZE];
  tally_heartbeat_encode(&heartbeat, fuzz_key, encoded);
  FUZZ_CHECK(memcmp(encoded, data, size) == 0);
  return reason;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_decode(data, size);
  if (size == 0 || (data[0] & 1u) == 0) return 0;

  /* Structured mode: data[1..33), zero-padded, signed with the right MAC. */
  uint8_t message[TALLY_HEARTBEAT_SIZE];
  memset(message, 0, sizeof(message));
  size_t body_size = size - 1 < TALLY_HEARTBEAT_BODY_SIZE ? size - 1 : TALLY_HEARTBEAT_BODY_SIZE;
  memcpy(message, data + 1, body_size);
  bool valid_header = (data[0] & 2u) != 0;
  if (valid_header) {
    message[0] = TALLY_HEARTBEAT_MAGIC_0;
    message[1] = TALLY_HEARTBEAT_MAGIC_1;
    message[2] = TALLY_HEARTBEAT_VERSION;
    message[3] = TALLY_HEARTBEAT_TYPE;
  }
  tally_mac_compute(TALLY_MAC_HEARTBEAT, message, TALLY_HEARTBEAT_BODY_SIZE, fuzz_key,
    message + TALLY_HEARTBEAT_BODY_SIZE);
  enum tally_heartbeat_reason reason = check_decode(message, sizeof(message));
  FUZZ_CHECK(reason != TALLY_HEARTBEAT_BAD_MAC);
  FUZZ_CHECK(reason != TALLY_HEARTBEAT_TRUNCATED);
  if (valid_header) {
    uint16_t flags = (uint16_t)(message[6] | (message[7] << 8));
    bool reserved_zero = (message[12] | message[13] | message[14] | message[15]) == 0;
    bool should_decode = (flags & ~TALLY_HEARTBEAT_FLAGS_KNOWN) == 0 && reserved_zero;
    FUZZ_CHECK((reason == TALLY_HEARTBEAT_OK) == should_decode);
    if (!should_decode) FUZZ_CHECK(reason == TALLY_HEARTBEAT_MALFORMED);
  }
  /* One byte short: never OK. */
  FUZZ_CHECK(check_decode(message, sizeof(message) - 1) == TALLY_HEARTBEAT_TRUNCATED);
  return 0;
}
