"""make_replication_seeds.py — writes the seed corpus of tests/fuzz/fuzz_replication.c.

Run from the repository root: python3 tests/tools/make_replication_seeds.py
Written from control/cluster/proto/replication_wire.h (48-byte header of version 4 with scan,
session and peer_session, MACs personalised per kind, datagrams of at most 8192 bytes;
counter entries value i64 | class u8 | name_len u8 | name, or producer records with flags PRODUCERS: producer u64, then
per run, DEDUP_RUNS times, head_last u64 | head_window[0] u64 |
head_window[1] u64 | last_seq u64 | window u64: 128 bytes, or claims with
flags CLAIMS, ROUND only: producer u64 | seq u64 | attempt u64: 24 bytes,
producer 1 .. 2^63 - 2, attempt 1 .. 65535), not from the C encoder. The key is fuzz_replication.c's.
The first byte of a seed picks the fuzz target's mode:
  raw_*         a whole datagram (first byte 'T'), decoded as it is;
  signed_*      0x01, then a body without its MAC: the target signs it;
  structured_*  0x03 | (type - ROUND) << 2, then a body without its MAC: the
                target signs it after setting magic, version and that type;
  encode_*      0x02 or 0x06, then the fields of a message the target encodes
                (no header of the wire, so unaffected by the header layout).
Every seed is (re)written here.
"""

import hashlib
import os
import struct

KEY = bytes([0x5A, 0x11, 0x7E, 0x00]) + bytes(range(1, 29))
OUT = os.path.join("tests", "fuzz", "corpus", "replication")

MAC_SIZE = 16
SIZE_MAX = 8192  # version 4 (issue 12): one 8 KiB datagram
HEADER_SIZE = 48  # version 2: + session u64 | peer_session u64
SIZE_MIN = HEADER_SIZE + MAC_SIZE
ROUND, ACK, RESTORE_REQUEST, RESTORE = 1, 2, 3, 4
VERSION = 4  # 3: MACs personalised per kind (include/tally/mac.h); 4: 8 KiB, class bytes
PERSONAL = b"tally-mac-repl\0\0"
FLAG_LAST = 0x0001
FLAG_PRODUCERS = 0x0002
FLAG_CLAIMS = 0x0004
# structured_unknown_flag was written when 0x0004 meant nothing; its bytes are
# kept (now CLAIMS on an ACK, still refused). 0x0008 is the lowest unknown bit.
FLAG_UNKNOWN_OLD = 0x0004
ENTRIES_MAX = 738  # 1-byte names: (8192 - 64) // 11
DEDUP_RUNS = 3
PRODUCERS_MAX = 63
CLAIMS_MAX = 338
ATTEMPT_MAX = 2**16 - 1
U64_MAX = 2**64 - 1
PRODUCER_ID_MAX = 2**63 - 2  # TALLY_PRODUCER_ID_MAX: a claim names a producer below the undone bit
I64_MIN, I64_MAX = -2**63, 2**63 - 1
SCAN = 1_700_000_000_000_000  # unix microseconds

_HEADER = struct.Struct("<2sBBHHHHHHQQQQ")
assert _HEADER.size == HEADER_SIZE
SESSION, PEER_SESSION = 0x1111222233334444, 0x5555666677778888
_ENTRY = struct.Struct("<qBB")  # value | class | name_len
_RUN = "QQQQQ"  # head_last | head_window[0] | head_window[1] | last_seq | window
_RUN_FIELDS = len(_RUN)
_RECORD = struct.Struct("<Q" + _RUN * DEDUP_RUNS)
assert _RECORD.size == 8 + 40 * DEDUP_RUNS == 128
assert HEADER_SIZE + PRODUCERS_MAX * _RECORD.size + MAC_SIZE <= SIZE_MAX
assert HEADER_SIZE + (PRODUCERS_MAX + 1) * _RECORD.size + MAC_SIZE > SIZE_MAX
_CLAIM = struct.Struct("<QQQ")  # producer | seq | attempt
assert _CLAIM.size == 24
assert HEADER_SIZE + CLAIMS_MAX * _CLAIM.size + MAC_SIZE <= SIZE_MAX
assert HEADER_SIZE + (CLAIMS_MAX + 1) * _CLAIM.size + MAC_SIZE > SIZE_MAX
assert HEADER_SIZE + ENTRIES_MAX * (_ENTRY.size + 1) + MAC_SIZE <= SIZE_MAX
assert HEADER_SIZE + (ENTRIES_MAX + 1) * (_ENTRY.size + 1) + MAC_SIZE > SIZE_MAX


def header(kind, origin, sender, count, flags, part, seq, scan, reserved=0, magic=b"TR",
           session=SESSION, peer_session=PEER_SESSION):
    return _HEADER.pack(magic, VERSION, kind, origin, sender, count, flags, part, reserved, seq, scan,
                        session, peer_session)


def entries(pairs, classes=None):
    """Counter entries (value, name); classes[i] is entry i's class (0 statsd, 1 reliable)."""
    classes = classes or [0] * len(pairs)
    return b"".join(_ENTRY.pack(value, klass, len(name)) + name
                    for (value, name), klass in zip(pairs, classes))


def record(producer, *runs):
    """A record as a flat tuple: producer, then each run (head_last,
    head_window[0], head_window[1], last_seq, window), newest first; runs not
    given are all zero."""
    assert len(runs) <= DEDUP_RUNS and all(len(run) == _RUN_FIELDS for run in runs)
    runs = list(runs) + [(0,) * _RUN_FIELDS] * (DEDUP_RUNS - len(runs))
    return (producer,) + tuple(field for run in runs for field in run)


def records(items):
    """Producer records (flat tuples, see record())."""
    return b"".join(_RECORD.pack(*item) for item in items)


def claims(items):
    """Claims (producer, seq, attempt)."""
    return b"".join(_CLAIM.pack(*item) for item in items)


def signed(data):
    """MAC'd as a replication message: personalised (version 3, issue 14 M2)."""
    return data + hashlib.blake2b(data, digest_size=MAC_SIZE, key=KEY, person=PERSONAL).digest()


def unsigned(data):
    """The target's signed mode: it signs data itself."""
    return b"\x01" + data


def structured(kind, data):
    """The target's signed mode with a valid header of type `kind`."""
    return bytes([0x03 | ((kind - ROUND) << 2)]) + data


def encode_input(kind, origin, sender, flags, part, seq, items, slack=0xFF):
    """The target's encode mode with producer records."""
    fields = struct.pack("<BBHHHHQH", 0x02, kind, origin, sender, flags, part, seq, len(items))
    return fields + records(items) + bytes([slack])


def encode_claims_input(kind, origin, sender, flags, part, seq, items, slack=0xFF):
    """The target's encode mode with claims (flags CLAIMS without PRODUCERS)."""
    fields = struct.pack("<BBHHHHQH", 0x02, kind, origin, sender, flags, part, seq, len(items))
    return fields + claims(items) + bytes([slack])


def encode_entries_input(kind, origin, sender, flags, part, seq, items, slack=0xFF):
    """The target's encode mode with counter entries (value, name, class); slack 0: the
    exact size, 1: one byte short, >= 128: room for the largest message."""
    fields = struct.pack("<BBHHHHQH", 0x02, kind, origin, sender, flags, part, seq, len(items))
    body = b"".join(struct.pack("<qBB", value, len(name), klass) + name
                    for value, name, klass in items)
    return fields + body + bytes([slack])


def full_claims():
    """CLAIMS_MAX claims, ids, seqs and attempts at their limits."""
    ids = (1, PRODUCER_ID_MAX, 2**62, 0x0123456789ABCDEF)
    seqs = (0, U64_MAX, 1, 2**63, 0xFEDCBA9876543210)
    attempts = (1, ATTEMPT_MAX, 2, 0x8000, ATTEMPT_MAX - 1)
    return [(ids[i % 4] ^ ((i // 4) << 8), seqs[i % 5], attempts[i % 5])
            for i in range(CLAIMS_MAX)]


def full_records():
    """PRODUCERS_MAX records, ids and values at their limits (never id 0 or U64_MAX)."""
    ids = (1, U64_MAX - 1, 2**63, 0x0123456789ABCDEF)
    others = (0, U64_MAX, 1, 2**63)
    return [(ids[i % 4] ^ ((i // 4) << 8),) +
            tuple(others[(i + k) % 4] for k in range(_RUN_FIELDS * DEDUP_RUNS))
            for i in range(PRODUCERS_MAX)]


def main():
    long_name = (b"abcdefghijklmnopqrstuvwxyz" * 4)[:96]
    restore = (header(RESTORE, 2, 5, 2, FLAG_LAST, 7, 9, SCAN) +
               entries([(-1, b"a"), (I64_MAX, b"req.ok")]))
    restore_signed = signed(restore)
    bad_mac = bytearray(restore_signed)
    bad_mac[-1] ^= 0x01
    long_full = (SIZE_MAX - HEADER_SIZE - MAC_SIZE) // (_ENTRY.size + len(long_name))  # 76
    full_values = [I64_MIN if i == 0 else (I64_MIN + i + 1 if i % 2 else I64_MAX - i)
                   for i in range(ENTRIES_MAX)]
    round_full = (header(ROUND, 0xFFFF, 1, long_full, FLAG_LAST, 0, U64_MAX, U64_MAX) +
                  entries([(value, long_name) for value in full_values[:long_full]],
                          [i % 2 for i in range(long_full)]))
    short_names = [bytes([0x21 + i % 94]) for i in range(ENTRIES_MAX)]
    short_names = [b"k" if name in (b":", b"|", b"@", b"#") else name for name in short_names]
    round_full_short = (header(ROUND, 3, 3, ENTRIES_MAX, 0, 0, 5, SCAN) +
                        entries(list(zip(full_values, short_names)),
                                [i % 3 == 1 for i in range(ENTRIES_MAX)]))
    assert len(round_full_short) + MAC_SIZE <= SIZE_MAX
    one_k = entries([(1, b"k")])
    # Runs (head_last, head_window[0], head_window[1], last_seq, window), newest
    # first: heads at or below their tails, older runs below newer ones; the
    # second head word holds the sequences below a run's first one.
    three = [record(0x1000000000000001, (263, 0x8000000000000001, 0xF000000000000000, 341,
                                         U64_MAX),
                    (100, 0xFFFF, 0x1, 110, 0x3FF), (5, 0x3F, 0, 5, 0x3F)),
             record(2, (1, 1, 0, 1, 1)),
             record(U64_MAX - 1)]
    # Field values at their limits, the two head words always different.
    two = [record(7, (70, 0xFFFFFFFF00000001, 0x00000000FFFFFFFF, 100, 0x8000000000000001),
                  (50, 1, 2, 60, 3),
                  (10, U64_MAX, 2**63, 20, 0x00FF00FF00FF00FF)),
           record(9, (U64_MAX, U64_MAX, 0, 1, 0), (0, 0, 0, 0, 0),
                  (U64_MAX, 0, U64_MAX, U64_MAX, 0))]
    round_producers = header(ROUND, 2, 2, 3, FLAG_PRODUCERS, 0, 7, SCAN) + records(three)
    restore_producers = (header(RESTORE, 1, 3, 2, FLAG_PRODUCERS, 2, 12, SCAN + 500_000) +
                         records(two))
    restore_producers_full = (header(RESTORE, 1, 3, PRODUCERS_MAX, FLAG_PRODUCERS | FLAG_LAST,
                                     3, 12, SCAN + 500_000) + records(full_records()))
    # Claims (producer, seq, attempt): attempts at both limits, ids next to the
    # forbidden ones.
    some_claims = [(0x1000000000000001, 341, 1), (PRODUCER_ID_MAX, U64_MAX, ATTEMPT_MAX),
                   (1, 0, 2)]
    round_claims = (header(ROUND, 2, 2, len(some_claims), FLAG_CLAIMS | FLAG_LAST, 0, 8, SCAN) +
                    claims(some_claims))
    seeds = {
        # Checks in front of the MAC, and whole valid datagrams.
        "raw_ack_empty": signed(header(ACK, 3, 1, 0, 0, 0, 42, 0)),
        "raw_bad_mac": bytes(bad_mac),
        "raw_truncated": restore_signed[:SIZE_MIN - 1],
        "raw_oversize": restore_signed + b"x" * (SIZE_MAX + 1 - len(restore_signed)),
        "raw_round_full": signed(round_full),
        "raw_round_full_short": signed(round_full_short),
        "raw_round_producers": signed(round_producers),
        "raw_restore_producers": signed(restore_producers),
        # Signed by the target: the parser behind the MAC.
        "signed_restore_last": unsigned(restore),
        "signed_restore_request": unsigned(header(RESTORE_REQUEST, 4, 4, 0, 0, 0, 0, 0)),
        "structured_valid": structured(ROUND, header(ROUND, 1, 2, 2, FLAG_LAST, 3, 100, SCAN,
                                                     magic=b"??") +
                                       entries([(5, b"x.y"), (-5, b"z")])),
        "structured_bad_name": structured(RESTORE, header(ROUND, 1, 2, 1, 0, 0, 1, 1) +
                                          entries([(1, b"a:b")])),
        "structured_bad_class": structured(ROUND, header(ROUND, 1, 2, 2, 0, 0, 1, 1) +
                                           entries([(1, b"a"), (2, b"b")], [1, 2])),
        "structured_reserved": structured(RESTORE_REQUEST,
                                          header(ROUND, 1, 2, 1, 0, 0, 1, 1, reserved=0x0100) +
                                          one_k),
        "structured_trailing": structured(ROUND, header(ROUND, 1, 2, 1, 0, 0, 1, 1) + one_k +
                                          b"!"),
        "structured_unknown_flag": structured(ACK, header(ROUND, 1, 2, 1,
                                                          FLAG_UNKNOWN_OLD | FLAG_LAST, 0, 1,
                                                          1) +
                                              one_k),
        "structured_count_over": structured(ROUND,
                                            header(ROUND, 1, 2, ENTRIES_MAX + 1, 0, 0, 1, 0) +
                                            entries([(i, b"k") for i in range(ENTRIES_MAX + 1)])),
        # Producer records (flags PRODUCERS): valid, on a type without them, id 0.
        "structured_round_producers": structured(ROUND, round_producers),
        # Issue 14, L3: a record whose current run lacks its last sequence (window
        # bit 0): decoded, refused by the cluster before it reaches a store.
        "structured_round_producer_window_bit0": structured(
            ROUND, header(ROUND, 2, 2, 1, FLAG_PRODUCERS | FLAG_LAST, 0, 7, SCAN) +
            records([record(5, (70, 1 << 63, 0, 10, 2))])),
        "structured_restore_producers_full": structured(RESTORE, restore_producers_full),
        "structured_ack_producers": structured(ACK, round_producers),
        "structured_producers_zero_id": structured(ROUND, header(ROUND, 2, 2, 1, FLAG_PRODUCERS,
                                                                 0, 8, 1) +
                                                   records([record(0, (1, 1, 1, 1, 1),
                                                                   (1, 1, 1, 1, 1))])),
        "encode_round_producers": encode_input(ROUND, 2, 2, FLAG_PRODUCERS, 0, 7, three),
        "encode_restore_producers_full": encode_input(RESTORE, 1, 3, FLAG_PRODUCERS | FLAG_LAST,
                                                      3, 12, full_records()),
        # Claims (flags CLAIMS): valid, an attempt one over its limit, a full list.
        "raw_round_claims": signed(round_claims),
        "structured_claims_attempt_over": structured(ROUND,
                                                     header(ROUND, 2, 2, 2, FLAG_CLAIMS, 0, 9,
                                                            SCAN) +
                                                     claims([(5, 10, ATTEMPT_MAX),
                                                             (5, 11, ATTEMPT_MAX + 1)])),
        # Counter entries (value, name, class): as many as fit, an exact fit,
        # one byte short, a bad name.
        "encode_full": encode_entries_input(ROUND, 0xFFFF, 1, FLAG_LAST, 0, U64_MAX,
                                            [(v, long_name, i % 2) for i, v in
                                             enumerate(full_values[:long_full])]),
        "encode_exact_fit": encode_entries_input(RESTORE, 2, 5, FLAG_LAST, 7, 9,
                                                 [(-1, b"a", 0), (I64_MAX, b"req.ok", 1)], 0),
        "encode_short_by_one": encode_entries_input(RESTORE, 2, 5, 0, 7, 9,
                                                    [(-1, b"a", 1), (I64_MIN, b"x.y", 0)], 1),
        "encode_bad_name": encode_entries_input(ROUND, 1, 1, 0, 0, 1, [(1, b"a b", 0)]),
        "encode_round_claims_full": encode_claims_input(ROUND, 3, 1, FLAG_CLAIMS | FLAG_LAST, 0,
                                                        U64_MAX, full_claims()),
    }
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as seed:
            seed.write(data)
    write_sequence_seeds()


# tests/fuzz/fuzz_replication_seq.c: a list of operations, each an opcode byte
# (mod 8) and its bytes; sessions are picked by the low two bits of `pick`
# (0 right, 1 another peer_session, 2 none, 3 node 1's earlier session).
SEQ_OUT = os.path.join("tests", "fuzz", "corpus", "replication_seq")
OP_ROUND, OP_ACK, OP_RESTORE_REQUEST, OP_READ_REQUEST, OP_REPLAY, OP_TICK, OP_RAW, OP_RESTART = \
    range(8)
OP_HEARTBEAT = 8  # exactly 8, not mod 8


def op_heartbeat(pick, step=0):
    """pick bits 0-1: incarnation (0 node 1's, 1 its previous, 2 newer: a restart, 3 any);
    bits 2-3: send time (0 after the last, 1 the last again, 2 before it, 3 any)."""
    return bytes([OP_HEARTBEAT, pick, step])


def op_tick(ms):
    return bytes([OP_TICK, ms - 1])


def op_ack(pick, value=0):
    """pick bits 2-3: 0 answers the last probe, 1 acks the round in flight, 2 stale, 3 any."""
    return bytes([OP_ACK, pick]) + struct.pack("<Q", value)


def op_round(pick, shape, scan, items):
    """pick bit 2: a probe; bits 3-4: seq = held + (1, 0, 2, -1); shape bit 0: LAST,
    bits 1-2: entries - 1, bit 5 records, bit 6 claims; items: the entries' bytes."""
    return bytes([OP_ROUND, pick, shape]) + struct.pack("<Q", scan) + items


def op_request(op, pick, seq=0):
    """pick bits 2-3: 0 a fresh stamp, 1 the last one again, 2 one from long ago."""
    return bytes([op, pick]) + struct.pack("<Q", seq)


def write_sequence_seeds():
    sync = op_tick(40) + op_ack(0, 0) + op_tick(20)  # node 2's probe answered: synced
    counter = bytes([3]) + struct.pack("<q", 41)  # "c3" = 41
    seeds = {
        "sync_round_replay": sync + op_round(0, 1, SCAN, counter) +
        bytes([OP_REPLAY, 1]) + op_tick(5),
        "restore_request_replayed": sync + op_request(OP_RESTORE_REQUEST, 0) +
        bytes([OP_REPLAY, 1]) + op_request(OP_RESTORE_REQUEST, 4) +
        op_request(OP_RESTORE_REQUEST, 8),
        "read_request_replayed": sync + op_request(OP_READ_REQUEST, 0, 77) +
        bytes([OP_REPLAY, 1]) + op_request(OP_READ_REQUEST, 2, 78),
        # node 2's probe answered "holds 5": acks below 5 are stale
        "stale_ack": op_tick(40) + op_ack(0, 5) + op_tick(30) + op_ack(8, 0) + op_tick(30) +
        op_ack(8, 3) + op_ack(4, 0),
        "other_sessions": sync + op_round(1, 1, SCAN, counter) + op_round(2, 1, SCAN, counter) +
        op_round(3, 1, SCAN, counter) + bytes([OP_RESTART]) + op_round(0, 1, SCAN, counter) +
        op_ack(3, 1) + op_tick(30),
        "gap_and_probe": sync + op_round(0x10, 1, SCAN, counter) + op_round(4, 0, 99, b"") +
        op_round(0x18, 0, SCAN, counter),
        "records_and_claims": sync +
        op_round(0, 0x20, SCAN, bytes([2, 5]) + struct.pack("<Q", 3)) +
        op_round(0, 0x41, SCAN, bytes([2, 5, 1])) + op_tick(10),
        "raw": sync + bytes([OP_RAW, 4]) + b"TR" + bytes([VERSION, 1]) + bytes(20),
        # issue 14, M3: node 1 heard, restarts (a newer incarnation), then its previous
        # incarnation's heartbeat and its own last one are replayed, in turn
        "heartbeat_incarnations": op_heartbeat(0) + op_tick(10) + op_heartbeat(0) +
        op_heartbeat(2) + op_tick(10) + op_heartbeat(1) + op_heartbeat(4) +
        op_heartbeat(1 | 8, 3) + op_heartbeat(0) + op_heartbeat(5) + op_tick(10),
    }
    os.makedirs(SEQ_OUT, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(SEQ_OUT, name), "wb") as seed:
            seed.write(data)


if __name__ == "__main__":
    main()
