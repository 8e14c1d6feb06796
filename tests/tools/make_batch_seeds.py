"""make_batch_seeds.py — writes the seed corpus of tests/fuzz/fuzz_batch.c.

Run from the repository root: python3 tests/tools/make_batch_seeds.py
Seeds starting with 0x01 are "structured": the fuzz target signs data[1..]
itself, so they reach the parser behind the MAC. The key is fuzz_batch.c's.
Batches carry an attempt in the header's status field (any value is valid):
most seeds are first sends (attempt 0), the *_attempt ones are resends.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tally_wire as wire  # noqa: E402

KEY = bytes([0x5A, 0x11, 0x7E, 0x00]) + bytes(range(1, 29))
NODE = ("10.77.0.1", 8126)  # the destination every seed batch is MAC'd for (version 2)
OUT = os.path.join("tests", "fuzz", "corpus", "batch")


def unsigned(datagram):
    """The structured form of a signed datagram: 0x01, then all but the MAC."""
    return b"\x01" + datagram[:-wire.MAC_SIZE]


def main():
    one = wire.encode_batch(1, 0, [("a", 1)], KEY, NODE)
    limits = wire.encode_batch(2**64 - 1, 2**64 - 1, [("req.ok", -1), ("x" * 96, -2**63),
                                                      ("y", 2**63 - 1)], KEY, NODE)
    full = wire.encode_batch(9, 3, [("n%02d" % i + "z" * 93, i - 32) for i in range(64)], KEY, NODE)
    resent = wire.encode_batch(1, 0, [("a", 1)], KEY, NODE, attempt=1)
    resent_max = wire.set_attempt(limits, KEY, wire.ATTEMPT_MAX)
    moved = wire.set_attempt(one, KEY, 1, ("10.77.0.2", 8126))  # a failover's resend
    ack = wire.encode_ack(5, 6, wire.ACK_STALE, KEY, NODE)
    old = bytes.fromhex("5442010101000000" "0100000000000000" "0000000000000000"
                        "0100000000000000" "01" "61") + bytes(16)  # version 1: refused
    tagged = wire.encode_batch(3, 1, [("req{status=500,method=GET}", 1),
                                      ("req{method=GET,status=500}", 2), ("req{a,a=,b=1}", 3),
                                      ("req{a=1,a=2}", 4), ("req", 5)], KEY, NODE)
    seeds = {
        "raw_batch_one": one,
        "raw_batch_attempt": resent,
        "raw_ack": ack,
        "raw_short": b"TB\x02\x01",
        "raw_batch_version1": old,
        "raw_batch_moved": moved,
        "signed_batch_one": unsigned(one),
        "signed_batch_limits": unsigned(limits),
        "signed_batch_full": unsigned(full),
        "signed_batch_attempt": unsigned(resent_max),
        "signed_ack": unsigned(ack),
        "signed_trailing_byte": unsigned(one) + b"q",
        "signed_bad_name": unsigned(one).replace(b"\x01a", b"\x01:"),
        "signed_batch_tagged": unsigned(tagged),
        "signed_batch_moved": unsigned(moved),
        "signed_reserved_set": unsigned(one)[:31] + b"\x01" + unsigned(one)[32:],
    }
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as seed:
            seed.write(data)


if __name__ == "__main__":
    main()
