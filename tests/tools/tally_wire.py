"""tally_wire.py — the binary batched protocol of reliable producers, in Python.

Stdlib only (Python 3). Used by the integration tests to act as a reliable
producer: encode_batch() builds a batch datagram, set_attempt() renumbers it
for a resend, decode_ack() verifies and reads the ack that tallyd sends back.
The byte layout and MAC are those of include/tally/batch_wire.h and
docs/protocol.md:

    header (32 bytes): "TB" | version u8 (2) | type u8 | count u16 | status u16 |
                       producer u64 | seq u64            (little-endian) |
                       node address (4 bytes) | node port u16 (network order) |
                       reserved u16 (0)
                       (in a batch, status is the attempt: how many times the
                       producer sent this batch before, to any node; node is
                       the destination's ingest address, node.ipv4 and
                       ingest.binary_port: another node refuses the batch)
    pair:              delta i64 | name_len u8 | name bytes
    mac (16 bytes):    BLAKE2b-128 keyed with the 32-byte key, personalised
                       per kind (PERSONAL_BATCH, PERSONAL_ACK; include/tally/mac.h),
                       over all bytes before it

The key is the producer's: its derived key (producer_key(), or from
`tallyctl producer-key`) unless the node runs ingest.producer_keys = shared.

Run it (python3 tests/tools/tally_wire.py) to check it against the byte
vectors at the end of this file; tests/unit/test_batch_wire.c holds the same
vectors and checks that the C codec (dataplane/wire/batch_wire.c) encodes exactly
these bytes and decodes them, so the two implementations agree.
"""

import hashlib
import hmac
import socket
import struct

MAGIC = b"TB"
VERSION = 2
TYPE_BATCH = 1
TYPE_ACK = 2
HEADER_SIZE = 32
MAC_SIZE = 16
KEY_SIZE = 32
ACK_SIZE = HEADER_SIZE + MAC_SIZE
ATTEMPT_MAX = 0xFFFF
NAME_LEN_MAX = 224  # a counter key: name or name{k=v,...} (include/tally/key.h)
BATCH_PAIRS_MAX = 64
DEDUP_WINDOW = 64

# Ack statuses (enum tally_ack_status).
ACK_APPLIED = 0
ACK_DUPLICATE = 1
ACK_STALE = 2
ACK_MALFORMED = 3
ACK_COUNTERS_FULL = 4
ACK_OVERFLOW = 5
ACK_PRODUCERS_FULL = 6
ACK_READ_ONLY = 7
ACK_STATUS_NAMES = ("applied", "duplicate", "stale", "malformed", "counters_full",
                    "overflow", "producers_full", "read_only")
# Statuses after which the producer may send the same batch again (here or elsewhere).
ACK_RETRYABLE = frozenset((ACK_PRODUCERS_FULL, ACK_READ_ONLY))

# Personalisations (include/tally/mac.h, batch_wire.h): one per kind of MAC.
PERSONAL_BATCH = b"tally-mac-batch\0"
PERSONAL_ACK = b"tally-mac-ack\0\0\0"
PERSONAL_PRODUCER_KEY = b"tally-producer\0\0"

_HEADER = struct.Struct("<2sBBHHQQ4s2sH")
_PAIR = struct.Struct("<qB")
assert _HEADER.size == HEADER_SIZE


class WireError(ValueError):
    """A datagram that does not verify or parse; .reason is the reasons.h label."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def mac(data, key, person=PERSONAL_BATCH):
    """The 16-byte MAC of data under the 32-byte key, of the kind person names."""
    if len(key) != KEY_SIZE:
        raise ValueError("key must be %d bytes" % KEY_SIZE)
    return hashlib.blake2b(data, digest_size=MAC_SIZE, key=key, person=person).digest()


def producer_key(ingest_key, producer):
    """Producer's derived key (ingest.producer_keys = derived; = tallyctl producer-key)."""
    if len(ingest_key) != KEY_SIZE:
        raise ValueError("key must be %d bytes" % KEY_SIZE)
    return hashlib.blake2b(struct.pack("<Q", producer), digest_size=KEY_SIZE, key=ingest_key,
                           person=PERSONAL_PRODUCER_KEY).digest()


def node_bytes(node):
    """A destination (ip str, port int) as the header's 6 bytes: address and port, network order."""
    ip, port = node
    if not 0 < port < 1 << 16:
        raise ValueError("port must be 1..65535")
    return socket.inet_aton(ip), struct.pack(">H", port)


def _node_of(raw_ip, raw_port):
    return socket.inet_ntoa(raw_ip), struct.unpack(">H", raw_port)[0]


def _name_valid(name):
    if not 1 <= len(name) <= NAME_LEN_MAX:
        return False
    return all(0x21 <= b <= 0x7E and b not in b":|@#" for b in name)


def _check_attempt(attempt):
    if not 0 <= attempt <= ATTEMPT_MAX:
        raise ValueError("attempt must be 0..%d" % ATTEMPT_MAX)


def encode_batch(producer, seq, pairs, key, node, attempt=0):
    """A batch datagram for node (ip, port): pairs is a sequence of (name, delta).

    node: the ingest address (node.ipv4, ingest.binary_port) of the node it is
    sent to; any other node refuses it (batch_wrong_node).

    attempt: how many times this batch was sent before, to any node (0 for
    the first send); of two nodes that applied it, the higher attempt's apply
    is kept.
    """
    if not 1 <= len(pairs) <= BATCH_PAIRS_MAX:
        raise ValueError("a batch has 1..%d pairs" % BATCH_PAIRS_MAX)
    if not 0 < producer < 1 << 64 or not 0 <= seq < 1 << 64:
        raise ValueError("producer must be 1..2^64-1 and seq 0..2^64-1")
    _check_attempt(attempt)
    out = bytearray(_HEADER.pack(MAGIC, VERSION, TYPE_BATCH, len(pairs), attempt, producer,
                                 seq, *node_bytes(node), 0))
    for name, delta in pairs:
        name = name.encode("ascii") if isinstance(name, str) else bytes(name)
        if not _name_valid(name):
            raise ValueError("invalid counter name %r" % name)
        out += _PAIR.pack(delta, len(name)) + name
    return bytes(out) + mac(bytes(out), key)


def set_attempt(datagram, key, attempt, node=None):
    """The batch datagram (from encode_batch with this key) with another attempt
    (and, given node, another destination: a failover) and its MAC."""
    _check_attempt(attempt)
    datagram = bytes(datagram)
    if len(datagram) < HEADER_SIZE + MAC_SIZE or datagram[0:2] != MAGIC or \
            datagram[3] != TYPE_BATCH:
        raise ValueError("not a batch datagram")
    to = b"".join(node_bytes(node)) if node is not None else datagram[24:30]
    body = datagram[:6] + struct.pack("<H", attempt) + datagram[8:24] + to + \
        b"\0\0" + datagram[32:-MAC_SIZE]
    return body + mac(body, key)


def encode_ack(producer, seq, status, key, node):
    """An ack datagram from node (ip, port), as tallyd sends it (for fake servers in tests)."""
    if not 0 <= status < len(ACK_STATUS_NAMES):
        raise ValueError("unknown ack status %r" % status)
    header = _HEADER.pack(MAGIC, VERSION, TYPE_ACK, 0, status, producer, seq,
                          *node_bytes(node), 0)
    return header + mac(header, key, PERSONAL_ACK)


def _check_envelope(data, kind, key):
    if len(data) < HEADER_SIZE + MAC_SIZE:
        raise WireError("batch_truncated")
    magic, version, kind_got = data[0:2], data[2], data[3]
    if magic != MAGIC or kind_got != kind:
        raise WireError("batch_bad_magic")
    if version != VERSION:
        raise WireError("batch_bad_version")
    person = PERSONAL_BATCH if kind == TYPE_BATCH else PERSONAL_ACK
    if not hmac.compare_digest(mac(data[:-MAC_SIZE], key, person), data[-MAC_SIZE:]):
        raise WireError("batch_bad_mac")


def decode_ack(data, key):
    """Verifies an ack; returns (producer, seq, status) or raises WireError."""
    data = bytes(data)
    if len(data) < ACK_SIZE:
        raise WireError("batch_truncated")
    if len(data) > ACK_SIZE:
        raise WireError("batch_malformed")
    _check_envelope(data, TYPE_ACK, key)
    _, _, _, count, status, producer, seq, _, _, _ = _HEADER.unpack_from(data)
    if count != 0 or status >= len(ACK_STATUS_NAMES):
        raise WireError("batch_malformed")
    return producer, seq, status


def decode_batch(data, key):
    """Verifies a batch; returns (producer, seq, [(name bytes, delta)], attempt, node)
    or raises WireError. Any attempt 0..65535 is valid; node is (ip, port)."""
    data = bytes(data)
    _check_envelope(data, TYPE_BATCH, key)
    _, _, _, count, attempt, producer, seq, raw_ip, raw_port, _ = _HEADER.unpack_from(data)
    if count == 0:
        raise WireError("batch_malformed")
    if count > BATCH_PAIRS_MAX:
        raise WireError("batch_too_many_pairs")
    if producer == 0:
        raise WireError("batch_bad_producer")
    end = len(data) - MAC_SIZE
    offset = HEADER_SIZE
    pairs = []
    for _ in range(count):
        if end - offset < _PAIR.size:
            raise WireError("batch_malformed")
        delta, name_len = _PAIR.unpack_from(data, offset)
        offset += _PAIR.size
        if end - offset < name_len:
            raise WireError("batch_malformed")
        name = data[offset:offset + name_len]
        if not _name_valid(name):
            raise WireError("batch_bad_name")
        pairs.append((name, delta))
        offset += name_len
    if offset != end:
        raise WireError("batch_malformed")
    return producer, seq, pairs, attempt, _node_of(raw_ip, raw_port)


# Vectors shared with tests/unit/test_batch_wire.c, which checks that the C
# codec encodes exactly these bytes and decodes them back. Key: bytes 0..31;
# node: 10.0.0.1:8126 (VECTOR_NODE_OTHER: 10.0.0.2:8126).
TEST_KEY = bytes(range(KEY_SIZE))
VECTOR_NODE = ("10.0.0.1", 8126)
VECTOR_NODE_OTHER = ("10.0.0.2", 8126)
VECTOR_ACK = bytes.fromhex(
    "5442020200000100"  # "TB", version 2, type ACK, count 0, status 1 (duplicate)
    "0201000000000000"  # producer 0x102
    "0403000000000000"  # seq 0x304
    "0a0000011fbe0000"  # node 10.0.0.1, port 8126, reserved 0
    "3b8129d6ce765e2c0ac7d02cf0682868")  # MAC (kind ACK)
_VECTOR_BATCH_BODY = (
    "0700000000000000"  # producer 7
    "0900000000000000"  # seq 9
    "0a0000011fbe0000"  # node 10.0.0.1, port 8126, reserved 0
    "ffffffffffffffff" "01" "61"  # -1, "a"
    "ffffffffffffff7f" "06" "7265712e6f6b"  # INT64_MAX, "req.ok"
    "0000000000000080" "60" + "78" * 96)  # INT64_MIN, "x" * 96
VECTOR_BATCH = bytes.fromhex(
    "5442020103000000"  # "TB", version 2, type BATCH, count 3, status 0
    + _VECTOR_BATCH_BODY +
    "df8fbdf8dabbce0ffb585d5693c8ca1e")  # MAC (kind BATCH)
# The same batch resent: attempt 0x102 (two earlier sends: 258), so a new MAC.
VECTOR_BATCH_ATTEMPT = bytes.fromhex(
    "5442020103000201"  # "TB", version 2, type BATCH, count 3, status = attempt 0x102
    + _VECTOR_BATCH_BODY +
    "d26e7938b1c62382a4fe0ed30f591504")  # MAC
# The same batch sent to 10.0.0.2 instead (a failover): node bytes and MAC differ.
VECTOR_BATCH_OTHER_NODE_MAC = bytes.fromhex("7aed68534c235c5d3029eb0faf36e728")


def _self_test():
    ack = encode_ack(0x102, 0x304, ACK_DUPLICATE, TEST_KEY, VECTOR_NODE)
    assert ack == VECTOR_ACK, ack.hex()
    assert decode_ack(ack, TEST_KEY) == (0x102, 0x304, ACK_DUPLICATE)
    pairs = [("a", -1), ("req.ok", 2**63 - 1), ("x" * 96, -2**63)]
    decoded_pairs = [(name.encode("ascii"), delta) for name, delta in pairs]
    batch = encode_batch(7, 9, pairs, TEST_KEY, VECTOR_NODE)
    assert batch == VECTOR_BATCH, batch.hex()
    assert decode_batch(batch, TEST_KEY) == (7, 9, decoded_pairs, 0, VECTOR_NODE)
    resent = encode_batch(7, 9, pairs, TEST_KEY, VECTOR_NODE, attempt=0x102)
    assert resent == VECTOR_BATCH_ATTEMPT, resent.hex()
    assert decode_batch(resent, TEST_KEY) == (7, 9, decoded_pairs, 0x102, VECTOR_NODE)
    moved = set_attempt(VECTOR_BATCH, TEST_KEY, 0, VECTOR_NODE_OTHER)
    assert moved[-MAC_SIZE:] == VECTOR_BATCH_OTHER_NODE_MAC, moved.hex()
    assert decode_batch(moved, TEST_KEY)[4] == VECTOR_NODE_OTHER
    assert set_attempt(moved, TEST_KEY, 0, VECTOR_NODE) == VECTOR_BATCH
    # A MAC of one kind never verifies as another: the ack's bytes re-typed as a batch.
    as_batch = ack[:3] + bytes([TYPE_BATCH]) + ack[4:]
    try:
        _check_envelope(as_batch, TYPE_BATCH, TEST_KEY)
    except WireError as error:
        assert error.reason == "batch_bad_mac", error.reason
    else:
        raise AssertionError("an ack's MAC verified as a batch's")
    assert set_attempt(VECTOR_BATCH, TEST_KEY, 0x102) == VECTOR_BATCH_ATTEMPT
    assert set_attempt(VECTOR_BATCH_ATTEMPT, TEST_KEY, 0) == VECTOR_BATCH
    assert decode_batch(set_attempt(batch, TEST_KEY, ATTEMPT_MAX), TEST_KEY)[3] == ATTEMPT_MAX
    for bad_attempt in (-1, ATTEMPT_MAX + 1):
        try:
            encode_batch(7, 9, pairs, TEST_KEY, VECTOR_NODE, attempt=bad_attempt)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted attempt %d" % bad_attempt)
    for reason, bad in (("batch_bad_mac", ack[:-1] + bytes([ack[-1] ^ 1])),
                        ("batch_truncated", ack[:-1]),
                        ("batch_malformed", ack + b"\0"),
                        ("batch_bad_magic", batch[:ACK_SIZE])):
        try:
            decode_ack(bad, TEST_KEY)
        except WireError as error:
            assert error.reason == reason, (error.reason, reason)
        else:
            raise AssertionError("accepted a bad ack: " + reason)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    _self_test()
