#!/usr/bin/env python3
"""probe_sniff.py — watches one interface (run it inside a node's namespace,
as root) for replication probes from one origin node: a ROUND with seq 0
and no entries (docs/cluster.md: "a probe, sequence 0, is answered with the
held sequence"). Counts the probes seen before a go file appears (the
baseline) and after it, and prints "baseline N after M".

  probe_sniff.py IFACE ORIGIN PORT GO_FILE READY_FILE [--seconds S]

Writes READY_FILE once the socket is bound, so the caller knows the capture
is on before it starts the baseline. Stops at the first probe after GO_FILE
appears, or S seconds (default 15) after it, whichever comes first. Exits 0
if at least one probe came after GO_FILE, else 1. The MAC is not checked:
this only watches what the node under test sends.
"""
import os
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
HEADER = struct.Struct("<2sBBHHHHHHQQQQ")  # replication_wire.h, version 2: 48 bytes
TYPE_ROUND = 1


def is_probe(frame, origin, port):
    if len(frame) < 14 + 20 + 8 + HEADER.size:
        return False
    if struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return False
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != socket.IPPROTO_UDP:
        return False
    udp = 14 + ihl
    if struct.unpack_from("!H", frame, udp + 2)[0] != port:
        return False
    fields = HEADER.unpack_from(frame, udp + 8)
    (magic, _version, kind, sender_origin, _sender, count, _flags, _part, _reserved, seq, _scan,
     _session, _peer_session) = fields
    return magic == b"TR" and kind == TYPE_ROUND and sender_origin == origin and count == 0 and seq == 0


def main():
    iface, origin, port, go_file, ready_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    seconds = float(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[6] == "--seconds" else 15.0
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((iface, 0))
    s.settimeout(0.1)
    open(ready_file, "w").close()
    baseline = after = 0
    go_at = None
    started = time.monotonic()
    # Bounded: GO_FILE within 60 s, then `seconds`.
    while go_at is None or (after == 0 and time.monotonic() - go_at < seconds):
        if go_at is None and os.path.exists(go_file):
            go_at = time.monotonic()
        if go_at is None and time.monotonic() - started > 60:
            print("baseline %d, no go file within 60 s" % baseline)
            return 2
        try:
            frame, address = s.recvfrom(65535)
        except socket.timeout:
            continue
        if address[2] == socket.PACKET_OUTGOING or not is_probe(frame, origin, port):
            continue
        if go_at is None:
            baseline += 1
        else:
            after += 1
    print("baseline %d after %d" % (baseline, after))
    return 0 if after > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
