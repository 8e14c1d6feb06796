#!/usr/bin/env python3
"""reliable_producer.py — a reliable producer for tests and the demo.

Sends binary batches (tests/tools/tally_wire.py) to tallyd over ordinary UDP
sockets, one socket per producer id, stop-and-wait per producer: a batch is
resent with the same (producer, seq) until an ack arrives or the deadline
passes, and the next seq goes out only after that. Writes a JSON report:
for every counter the sum over batches sent ("attempted") and over batches
acked ("acked"), plus how batches ended. Deterministic from --seed.

With --spray and several --target addresses, every send of a batch goes to
all of them at once: the same (producer, seq) reaches several cluster nodes,
the worst case of a producer failing over (cross-node dedup must count it
once). The copy sent to the i-th target (0-based) carries attempt i in its
header, so of two nodes that both apply it the later target's apply is the
one kept (docs/cluster.md); resends to a target repeat its copy. Without
--spray there is one target and every send, resends included, carries
attempt 0. Acks from any target settle the batch. Each copy is MAC'd for
the target it goes to (protocol version 2: a node refuses a batch MAC'd for
another, batch_wrong_node).

Keys (issue 14, M2, L4): the ingest key comes from TALLY_KEY or --key-file,
never the command line. With --producer-keys derived (a node running
ingest.producer_keys = derived) each producer MACs with its own key derived
from it (tally_wire.producer_key, what tallyctl producer-key and libtally
derive); with shared (tallyd's default still) every producer MACs with the
key itself.

An error ack (stale, malformed, counters_full, overflow) settles a batch
too, but it is a failure unless its status is named in --allow-errors: the
report's outcome counts each status ("errors") and those not allowed
("unexpected_errors"). For every counter the report also gives the number of
acked batches that named it ("acked_batches"): tallyd must then list it.
--progress FILE is rewritten (atomically) while it runs: the outcome so far,
with "in_flight" (batches sent and not yet settled) and "finished".
Exit status: 0 when every batch ended acked or with an allowed error, 1
otherwise (unacked at the deadline, or an unexpected error ack).
"""
import argparse
import json
import os
import random
import select
import socket
import sys
import time

import tally_wire


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="10.77.0.1:8126", help="HOST:PORT[,HOST:PORT...]")
    p.add_argument("--spray", action="store_true", help="send every batch to every target")
    p.add_argument("--key-file", help="file holding the 64-hex-digit ingest key "
                   "(default: $TALLY_KEY; a key never goes on a command line)")
    p.add_argument("--producer-keys", choices=("shared", "derived"), default="shared",
                   help="the node's ingest.producer_keys: MAC with the key itself, or "
                   "each producer with its derived key")
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--first-producer", type=int, default=1)
    p.add_argument("--batches", type=int, default=100, help="per producer")
    p.add_argument("--counters", type=int, default=8)
    p.add_argument("--pairs-max", type=int, default=4)
    p.add_argument("--prefix", default="rel.")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--retry-ms", type=int, default=40)
    p.add_argument("--deadline-s", type=float, default=60.0)
    p.add_argument("--negative", action="store_true", help="allow negative deltas")
    p.add_argument("--allow-errors", default="",
                   help="error ack statuses the test expects (e.g. stale,malformed)")
    p.add_argument("--progress", help="JSON file rewritten with the outcome so far")
    p.add_argument("--report", required=True)
    return p.parse_args()


class Producer:
    def __init__(self, producer_id, args, rng, key):
        self.id = producer_id
        self.args = args
        self.rng = rng
        self.key = key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.seq = 0
        self.done = 0
        self.batch = None  # one datagram per target: attempt i for target i
        self.pairs = None
        self.sent_at = 0.0
        self.attempts = 0

    def next_batch(self, target_count):
        if self.done >= self.args.batches:
            self.batch = None
            return
        self.seq += 1
        count = self.rng.randint(1, self.args.pairs_max)
        low = -5 if self.args.negative else 1
        self.pairs = [("%s%d" % (self.args.prefix, self.rng.randrange(self.args.counters)),
                       self.rng.randint(low, 20)) for _ in range(count)]
        first = tally_wire.encode_batch(self.id, self.seq, self.pairs, self.key,
                                        self.args.nodes[0])
        self.batch = [first] + [tally_wire.set_attempt(first, self.key, attempt,
                                                       self.args.nodes[attempt])
                                for attempt in range(1, target_count)]
        self.attempts = 0


def read_key(args):
    """The ingest key from --key-file or TALLY_KEY (64 hex digits), or None."""
    text = os.environ.get("TALLY_KEY")
    if args.key_file:
        with open(args.key_file) as f:
            text = f.read()
    return bytes.fromhex(text.strip()) if text else None


def write_json(path, data):
    """Writes data to path through a rename, so a reader sees a whole file."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def main():
    args = parse_args()
    allowed = set(filter(None, args.allow_errors.split(",")))
    unknown = allowed - set(tally_wire.ACK_STATUS_NAMES)
    if unknown:
        print("reliable_producer: unknown status in --allow-errors: %s" % sorted(unknown))
        return 2
    targets = []
    for address in args.target.split(","):
        host, port = address.rsplit(":", 1)
        targets.append((host, int(port)))
    if not args.spray:
        targets = targets[:1]
    # Each copy is MAC'd for its target's address (H3).
    args.nodes = [(socket.gethostbyname(host), port) for host, port in targets]
    ingest_key = read_key(args)
    if ingest_key is None:
        print("reliable_producer: no key: set TALLY_KEY or --key-file")
        return 2
    rng = random.Random(args.seed)

    def key_of(producer_id):
        if args.producer_keys == "shared":
            return ingest_key
        return tally_wire.producer_key(ingest_key, producer_id)

    keys = {}
    producers = []
    for i in range(args.producers):
        producer_id = args.first_producer + i
        keys[producer_id] = key_of(producer_id)
        producers.append(Producer(producer_id, args, rng, keys[producer_id]))
    attempted, acked, acked_batches = {}, {}, {}
    outcome = {"acked": 0, "duplicate_acks": 0, "error_acks": 0, "unexpected_errors": 0,
               "errors": {}, "unacked": 0, "resends": 0}
    progress_at = 0.0
    for p in producers:
        p.next_batch(len(targets))
        for name, delta in p.pairs or []:
            attempted[name] = attempted.get(name, 0) + delta
    deadline = time.monotonic() + args.deadline_s
    by_fd = {p.sock.fileno(): p for p in producers}
    while any(p.batch for p in producers) and time.monotonic() < deadline:
        now = time.monotonic()
        if args.progress and now - progress_at >= 0.05:
            in_flight = sum(1 for p in producers if p.batch)
            write_json(args.progress, dict(outcome, in_flight=in_flight, finished=False))
            progress_at = now
        for p in producers:
            if p.batch and now - p.sent_at >= args.retry_ms / 1000.0:
                if p.attempts:
                    outcome["resends"] += 1
                for target, datagram in zip(targets, p.batch):
                    try:
                        p.sock.sendto(datagram, target)
                    except OSError:
                        pass
                p.sent_at = now
                p.attempts += 1
        readable, _, _ = select.select(list(by_fd), [], [], args.retry_ms / 4000.0)
        for fd in readable:
            p = by_fd[fd]
            try:
                data = p.sock.recv(2048)
                pid, seq, status = tally_wire.decode_ack(data, p.key)
            except (OSError, tally_wire.WireError):
                continue
            if pid != p.id or p.batch is None or seq != p.seq:
                continue  # an ack of an earlier send of a batch already settled
            if status in (tally_wire.ACK_APPLIED, tally_wire.ACK_DUPLICATE):
                outcome["acked"] += 1
                if status == tally_wire.ACK_DUPLICATE:
                    outcome["duplicate_acks"] += 1
                for name, delta in p.pairs:
                    acked[name] = acked.get(name, 0) + delta
                for name in set(name for name, _ in p.pairs):
                    acked_batches[name] = acked_batches.get(name, 0) + 1
            elif status in tally_wire.ACK_RETRYABLE:
                continue
            else:
                name = tally_wire.ACK_STATUS_NAMES[status]
                outcome["error_acks"] += 1
                outcome["errors"][name] = outcome["errors"].get(name, 0) + 1
                if name not in allowed:
                    outcome["unexpected_errors"] += 1
            p.done += 1
            p.next_batch(len(targets))
            for name, delta in p.pairs or []:
                attempted[name] = attempted.get(name, 0) + delta
    outcome["unacked"] = sum(1 for p in producers if p.batch)
    if args.progress:
        write_json(args.progress, dict(outcome, in_flight=outcome["unacked"], finished=True))
    report = {"seed": args.seed, "outcome": outcome,
              "counters": {n: {"attempted": attempted[n], "acked": acked.get(n, 0),
                               "acked_batches": acked_batches.get(n, 0)}
                           for n in sorted(attempted)}}
    write_json(args.report, report)
    print("reliable_producer: seed %d: %s" % (args.seed, json.dumps(outcome, sort_keys=True)))
    if outcome["unacked"] or outcome["unexpected_errors"]:
        print("reliable_producer: FAILED: %d batches unacked, %d unexpected error acks %s" %
              (outcome["unacked"], outcome["unexpected_errors"], outcome["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
