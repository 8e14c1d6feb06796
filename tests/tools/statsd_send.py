#!/usr/bin/env python3
"""statsd_send.py — a statsd producer for tests and the demo.

Sends a deterministic workload (from --seed) of statsd datagrams over an
ordinary UDP socket: many counter lines per datagram (plain, sampled,
negative, DogStatsD-tagged), plus a fraction of gauges and malformed lines.
Writes a JSON file with the exact total each counter must reach (a tagged
line's counter is its canonical key, name{env=test,host=hN}) and how
many lines of each rejected kind were sent. SIGTERM stops it early: the
file then holds what was sent up to that moment ("datagrams" says how many).
"""
import argparse
import json
import random
import signal
import socket
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="10.77.0.1:8125")
    p.add_argument("--datagrams", type=int, default=1000)
    p.add_argument("--lines", type=int, default=20, help="lines per datagram")
    p.add_argument("--counters", type=int, default=50)
    p.add_argument("--prefix", default="app.")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=20000.0, help="datagrams per second")
    p.add_argument("--bad", action="store_true", help="mix in gauges and malformed lines")
    p.add_argument("--positive", action="store_true", help="only positive values")
    p.add_argument("--expect", required=True, help="JSON file to write")
    return p.parse_args()


def make_line(rng, args, totals, rejected):
    roll = rng.random()
    name = "%s%d" % (args.prefix, rng.randrange(args.counters))
    if args.bad and roll < 0.04:
        rejected["statsd_not_counter"] += 1
        return "%s:%d.5|g" % (name, rng.randrange(100))
    if args.bad and roll < 0.08:
        rejected["statsd_malformed"] += 1
        return "%s%d" % (name, rng.randrange(100))  # no ':'
    if args.bad and roll < 0.10:
        rejected["statsd_bad_value"] += 1
        return "%s:1.5|c" % name
    value = rng.randint(1 if args.positive else -3, 50)
    kind = rng.random()
    if kind < 0.2:
        totals[name] = totals.get(name, 0) + value * 10
        return "%s:%d|c|@0.1" % (name, value)
    if kind < 0.3:
        # Tags are dimensions (ingest.statsd_tags = keep, the default): the
        # counter is the canonical key, tags sorted by key (docs/protocol.md).
        host = rng.randrange(4)
        key = "%s{env=test,host=h%d}" % (name, host)
        totals[key] = totals.get(key, 0) + value
        return "%s:%d|c|#host:h%d,env:test" % (name, value, host)
    totals[name] = totals.get(name, 0) + value
    return "%s:%d|c" % (name, value)


def main():
    args = parse_args()
    host, port = args.target.rsplit(":", 1)
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    totals = {}
    rejected = {"statsd_not_counter": 0, "statsd_malformed": 0, "statsd_bad_value": 0}
    start = time.monotonic()
    lines_sent = 0
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    sent = 0
    for i in range(args.datagrams):
        if stopped:
            break
        lines = [make_line(rng, args, totals, rejected) for _ in range(args.lines)]
        lines_sent += len(lines)
        sock.sendto(("\n".join(lines) + "\n").encode("ascii"), (host, int(port)))
        sent += 1
        due = start + (i + 1) / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    with open(args.expect, "w") as f:
        json.dump({"seed": args.seed, "datagrams": sent, "lines": lines_sent,
                   "totals": totals, "rejected": rejected}, f, indent=1, sort_keys=True)
    print("statsd_send: seed %d: %d datagrams, %d lines, %d counters" %
          (args.seed, sent, lines_sent, len(totals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
