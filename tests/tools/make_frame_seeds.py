"""make_frame_seeds.py — writes the seed corpora of tests/fuzz/fuzz_packet.c
(frames), tests/fuzz/fuzz_mgmt.c (request lines) and the sample-rate seeds
of tests/fuzz/fuzz_statsd.c.

Run from the repository root: python3 tests/tools/make_frame_seeds.py
A packet seed is one byte of RX flags (fuzz_packet.c: bits 0-1 the IP
checksum flag, 2-3 the L4 flag, 4 statsd off, 5 binary off, 7 two segments),
one byte choosing the reply length, then the frame. The node is 10.0.0.1,
statsd on 8125, binary on 8126.
"""

import os
import struct

ROOT = os.path.join("tests", "fuzz", "corpus")
OUR_MAC = bytes([2, 0, 0, 0, 0, 1])
PEER_MAC = bytes([2, 0, 0, 0, 0, 2])
OUR_IP = bytes([10, 0, 0, 1])
PEER_IP = bytes([10, 0, 0, 2])


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ether(kind, payload):
    return OUR_MAC + PEER_MAC + struct.pack("!H", kind) + payload


def ipv4(proto, payload, options=b"", dst=OUR_IP, fragment=0):
    header_len = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | header_len // 4, 0, header_len + len(payload),
                         1, fragment, 64, proto, 0, PEER_IP, dst) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return ether(0x0800, header + payload)


def udp(port, payload, **kwargs):
    datagram = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    return ipv4(17, datagram, **kwargs)


def icmp_echo(data):
    message = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + data
    message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
    return ipv4(1, message)


def arp_request(target=OUR_IP):
    return ether(0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + PEER_MAC + PEER_IP +
                 bytes(6) + target)


def write(directory, name, data):
    path = os.path.join(ROOT, directory)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as handle:
        handle.write(data)


def main():
    frames = {
        "arp_request": (0x00, arp_request()),
        "arp_other": (0x00, arp_request(bytes([10, 0, 0, 9]))),
        "icmp_echo": (0x00, icmp_echo(b"ping" * 8)),
        "statsd": (0x0A, udp(8125, b"a:1|c\nb:2|c|@0.5")),
        "statsd_off": (0x1A, udp(8125, b"a:1|c")),
        "binary": (0x00, udp(8126, b"TB" + bytes(40))),
        "udp_unknown_port": (0x00, udp(9999, b"x")),
        "udp_options": (0x02, udp(8125, b"o:1|c", options=bytes([1, 1, 1, 0]))),
        "udp_fragment": (0x00, udp(8125, b"f:1|c", fragment=0x2000)),
        "udp_not_for_us": (0x00, udp(8125, b"n:1|c", dst=bytes([10, 0, 0, 3]))),
        "udp_l4_bad": (0x04, udp(8125, b"a:1|c")),
        "ip_checksum_bad": (0x01, udp(8125, b"a:1|c")),
        "two_segments": (0x80, udp(8125, b"a:1|c")),
        "ipv6": (0x00, ether(0x86DD, bytes(40))),
        "truncated": (0x00, udp(8125, b"a:1|c")[:30]),
    }
    for name, (flags, frame) in frames.items():
        write("packet", name, bytes([flags, 0xFF]) + frame)
    lines = ["get a.b", "get --quorum a.b", "get --quorum", "get --quorum ", "get ", "list",
             "list ", "list req.", "stats", "ready", "reload", "cluster", "cluster reload",
             "readonly on", "readonly off", "drain", "rejoin", "statsx", "get\tx", ""]
    for index, line in enumerate(lines):
        write("mgmt", "line%02d" % index, line.encode())
    write("statsd", "rates", b"a:1|c|@0.1\nb:3|c|@0.3\nc:1|c|@0.4\nd:-1|c|@0.5\n"
          b"e:9007199254740993|c|@0.5\nf:1|c|@1.\ng:4611686018427387904|c|@0.5\n"
          b"h:1|c|@.000000000000000001\ni:7|c|#t:1|@0.25\nj:1|c|@1.000000000000000001\n")


if __name__ == "__main__":
    main()
