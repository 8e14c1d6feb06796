#!/usr/bin/env python3
"""replication_replay.py — replays of replication datagrams from a member's own
address (issue 14, H4), for tests/integration/cluster.sh. Run inside a node's
namespace, as root. Written from control/cluster/proto/replication_wire.h
(version 3: a 48-byte header with session and peer_session).

  replication_replay.py capture-ack IFACE SENDER PORT OUT READY_FILE
      Writes READY_FILE once the capture is on, then saves the UDP payload of
      the first replication ACK from node SENDER arriving on IFACE (to PORT)
      into OUT. Gives up after 60 s (exit 1).
  replication_replay.py send SRC_IP PORT DST_IP FILE
      Sends FILE's bytes once from SRC_IP:PORT to DST_IP:PORT through a raw
      socket: the member's own address and port, while its tallyd holds them.
  replication_replay.py restore-request KEY SRC_IP PORT DST_IP SENDER AGE_S COUNT
      Sends COUNT copies of one RESTORE_REQUEST of node SENDER (signed with
      the cluster KEY, peer_session 0, stamped AGE_S seconds ago) the same way.
"""
import hashlib
import os
import secrets
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
HEADER = struct.Struct("<2sBBHHHHHHQQQQ")  # 48 bytes (version 2 on)
VERSION = 4  # TALLY_REPLICATION_VERSION (3: MACs personalised, M2; 4: 8 KiB datagrams, issue 12)
TYPE_ACK, TYPE_RESTORE_REQUEST = 2, 3
MAC_SIZE = 16


def capture_ack(iface, sender, port, out, ready):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((iface, 0))
    s.settimeout(0.2)
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            frame, address = s.recvfrom(65535)
        except socket.timeout:
            continue
        if address[2] == socket.PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + HEADER.size:
            continue
        if frame[14 + 9] != socket.IPPROTO_UDP:
            continue
        udp = 14 + (frame[14] & 0x0F) * 4
        if struct.unpack_from("!H", frame, udp + 2)[0] != port:
            continue
        fields = HEADER.unpack_from(frame, udp + 8)
        if fields[0] == b"TR" and fields[2] == TYPE_ACK and fields[4] == sender:
            length = struct.unpack_from("!H", frame, udp + 4)[0] - 8
            with open(out, "wb") as f:
                f.write(frame[udp + 8:udp + 8 + length])
            print("captured an ack of seq %d" % fields[9])
            return 0
    print("no ack within 60 s")
    return 1


def send_raw(src_ip, port, dst_ip, payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    s.bind((src_ip, 0))
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0)  # checksum 0: none (IPv4)
    s.sendto(udp + payload, (dst_ip, 0))


def restore_request(key, sender, age_s):
    stamp = int(time.time() * 1e6) - int(age_s * 1e6)
    session = secrets.randbits(64) | 1
    body = HEADER.pack(b"TR", VERSION, TYPE_RESTORE_REQUEST, sender, sender, 0, 0, 0, 0, 0, stamp,
                       session, 0)
    return body + hashlib.blake2b(body, key=key, digest_size=MAC_SIZE,
                                  person=b"tally-mac-repl\0\0").digest()  # personalised (M2)


def main():
    command = sys.argv[1]
    if command == "capture-ack":
        iface, sender, port, out, ready = sys.argv[2:7]
        return capture_ack(iface, int(sender), int(port), out, ready)
    if command == "send":
        src_ip, port, dst_ip, path = sys.argv[2:6]
        with open(path, "rb") as f:
            send_raw(src_ip, int(port), dst_ip, f.read())
        return 0
    if command == "restore-request":
        key, src_ip, port, dst_ip, sender, age_s, count = sys.argv[2:9]
        datagram = restore_request(bytes.fromhex(key), int(sender), float(age_s))
        for _ in range(int(count)):
            send_raw(src_ip, int(port), dst_ip, datagram)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
