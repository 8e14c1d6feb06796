#!/usr/bin/env python3
"""statsd_load.py — the chaos suite's statsd producer.

Sends statsd datagrams (--lines counter lines each, positive values 1..9) at
--rate datagrams per second, round-robin over --targets, until a stop file
appears or --deadline-s passes. Counters are named PREFIX<t>.<k>, where t is
the target's position in the list (1-based: node t when the targets are the
nodes in order), so each bound is per node that was sent to. A datagram is
added to the "sent" totals when sendto() accepted it (a node that is down
loses it: statsd is fire-and-forget; the checker's rule is value <= sent).
Writes a JSON report at the end (also on SIGTERM). Deterministic from --seed.
"""
import argparse
import json
import os
import random
import signal
import socket
import sys
import time

stopping = False


def on_sigterm(signum, frame):
    global stopping
    stopping = True


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", required=True, help="HOST:PORT,HOST:PORT,...")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefix", default="st.")
    p.add_argument("--counters", type=int, default=10, help="per target")
    p.add_argument("--lines", type=int, default=10)
    p.add_argument("--rate", type=float, default=200.0, help="datagrams per second")
    p.add_argument("--stop-file", required=True)
    p.add_argument("--deadline-s", type=float, default=600.0)
    p.add_argument("--report", required=True)
    return p.parse_args()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    targets = []
    for target in args.targets.split(","):
        host, port = target.rsplit(":", 1)
        targets.append((host, int(port)))
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, datagrams, errors = {}, 0, 0
    start = time.monotonic()
    deadline = start + args.deadline_s
    i = 0
    while not stopping and time.monotonic() < deadline:
        if i % 100 == 0 and os.path.exists(args.stop_file):
            break
        t = i % len(targets)
        lines = [("%s%d.%d" % (args.prefix, t + 1, rng.randrange(args.counters)), rng.randint(1, 9))
                 for _ in range(args.lines)]
        try:
            sock.sendto("".join("%s:%d|c\n" % line for line in lines).encode(), targets[t])
            datagrams += 1
            for name, value in lines:
                sent[name] = sent.get(name, 0) + value
        except OSError:
            errors += 1
        i += 1
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    with open(args.report, "w") as f:
        json.dump({"seed": args.seed, "datagrams": datagrams, "send_errors": errors,
                   "sent": dict(sorted(sent.items()))}, f, indent=1)
    print("statsd_load: %d datagrams sent, %d send errors, %d counters" % (datagrams, errors, len(sent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
