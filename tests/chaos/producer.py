#!/usr/bin/env python3
"""producer.py — the chaos suite's reliable producer: libtally, through tally-produce.

Runs `tally-produce` again and again until a stop file appears (or a hard
deadline passes), each run with --batches batches of --pairs "NAME DELTA"
lines (positive deltas, --flush-every PAIRS, so batch k of a run is seq
first_seq + k and holds lines k*PAIRS .. k*PAIRS + PAIRS - 1), the node list
of every node, and the seq continued from the previous run's `next_seq`.

tally-produce's summary says how every batch ended; failed batches are listed
by seq with their status and whether any attempt went unanswered
(`uncertain`). From it, per counter:

    attempted  every delta handed to tally-produce (an upper bound)
    acked      deltas of batches acked OK or DUPLICATE (must be counted)
    uncertain  deltas of failed batches with an unanswered attempt (may be counted)

A run whose summary cannot be mapped to its batches (killed at its deadline,
unsent increments, more failures than listed) counts all its deltas as
uncertain: acked stays a lower bound. Writes a JSON report at the end (also
on SIGTERM). The workload is deterministic from --seed.
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

ACKED_RE = re.compile(r"^acked (\d+) batches \(applied (\d+), duplicate (\d+)\)$")
FAILED_RE = re.compile(r"^failed (\d+) batches$")
FAILURE_RE = re.compile(r"^failed seq (\d+) status (\S+) attempts (\d+) pairs (\d+)( uncertain)?$")
INCREMENTS_RE = re.compile(r"^increments (\d+) rejected (\d+) unsent (\d+)$")
NEXT_SEQ_RE = re.compile(r"^next_seq (\d+)$")
LISTED_MAX = 32  # tally-produce lists at most 32 failed batches

stopping = False
START = time.monotonic()


def on_sigterm(signum, frame):
    global stopping
    stopping = True


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--produce", required=True, help="path of tally-produce")
    p.add_argument("--nodes", required=True, help="HOST:PORT,HOST:PORT,...")
    p.add_argument("--key", required=True)
    p.add_argument("--producer", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefix", default="rel.")
    p.add_argument("--ledger", help="append one JSON line per run (first seq, time, lines) "
                   "for tests/chaos/double.py")
    p.add_argument("--counters", type=int, default=8)
    p.add_argument("--pairs", type=int, default=4, help="lines per batch")
    p.add_argument("--batches", type=int, default=20, help="batches per run (<= 32)")
    p.add_argument("--timeout-ms", type=int, default=4000, help="per-batch deadline")
    p.add_argument("--ack-timeout-ms", type=int, default=150)
    p.add_argument("--pause-ms", type=int, default=20, help="between runs")
    p.add_argument("--stop-file", required=True)
    p.add_argument("--deadline-s", type=float, default=600.0, help="hard stop")
    p.add_argument("--report", required=True)
    args = p.parse_args()
    if not 1 <= args.batches <= LISTED_MAX or not 1 <= args.pairs <= 16:
        p.error("--batches 1..32 and --pairs 1..16")
    return args


class Totals:
    def __init__(self):
        self.counters = {}
        self.outcome = {"runs": 0, "ambiguous_runs": 0, "batches": 0, "acked": 0,
                        "duplicate": 0, "failed": {}, "uncertain_batches": 0, "exits": {}}

    def add(self, kind, lines):
        for name, delta in lines:
            c = self.counters.setdefault(name, {"attempted": 0, "acked": 0, "uncertain": 0})
            c[kind] += delta

    def report(self, seed):
        return {"seed": seed, "outcome": self.outcome,
                "counters": {n: self.counters[n] for n in sorted(self.counters)}}


def parse_summary(text, first_seq, batches):
    """({failed seq: (status, uncertain)}, duplicates, next_seq), or None if it does not map."""
    acked = failed = next_seq = None
    duplicates = 0
    failures = {}
    unsent = 0
    for line in text.splitlines():
        if (m := ACKED_RE.match(line)):
            acked, duplicates = int(m.group(1)), int(m.group(3))
        elif (m := FAILED_RE.match(line)):
            failed = int(m.group(1))
        elif (m := FAILURE_RE.match(line)):
            failures[int(m.group(1))] = (m.group(2), m.group(5) is not None)
        elif (m := INCREMENTS_RE.match(line)):
            unsent = int(m.group(2)) + int(m.group(3))
        elif (m := NEXT_SEQ_RE.match(line)):
            next_seq = int(m.group(1))
    if None in (acked, failed, next_seq) or unsent or acked + failed != batches:
        return None
    if next_seq != first_seq + batches or len(failures) != failed:
        return None
    if any(not first_seq <= seq < first_seq + batches for seq in failures):
        return None
    return failures, duplicates, next_seq


def one_run(args, rng, seq, totals):
    lines = [("%s%d" % (args.prefix, rng.randrange(args.counters)), rng.randint(1, 100))
             for _ in range(args.pairs * args.batches)]
    totals.add("attempted", lines)
    command = [args.produce, "--nodes", args.nodes, "--key", args.key,
               "--producer", str(args.producer), "--seq", str(seq),
               "--flush-every", str(args.pairs), "--timeout-ms", str(args.timeout_ms),
               "--ack-timeout-ms", str(args.ack_timeout_ms), "--retries", "40",
               "--breaker-failures", "3", "--breaker-cooldown-ms", "500"]
    text = "".join("%s %d\n" % line for line in lines)
    if args.ledger:
        with open(args.ledger, "a") as f:
            f.write(json.dumps({"seq": seq, "t": round(time.monotonic() - START, 3),
                                "pairs": args.pairs, "lines": lines}) + "\n")
    try:
        done = subprocess.run(command, input=text, capture_output=True, text=True,
                              timeout=args.timeout_ms / 1000.0 + 10)
        status, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired:
        status, out = "killed", ""
    totals.outcome["runs"] += 1
    totals.outcome["exits"][str(status)] = totals.outcome["exits"].get(str(status), 0) + 1
    totals.outcome["batches"] += args.batches
    parsed = parse_summary(out, seq, args.batches)
    if parsed is None:
        totals.outcome["ambiguous_runs"] += 1
        totals.add("uncertain", lines)
        return seq + args.batches + 64  # past anything this run may have used
    failures, duplicates, next_seq = parsed
    totals.outcome["duplicate"] += duplicates
    for k in range(args.batches):
        batch = lines[k * args.pairs:(k + 1) * args.pairs]
        failure = failures.get(seq + k)
        if failure is None:
            totals.outcome["acked"] += 1
            totals.add("acked", batch)
            continue
        name, uncertain = failure
        totals.outcome["failed"][name] = totals.outcome["failed"].get(name, 0) + 1
        if uncertain:
            totals.outcome["uncertain_batches"] += 1
            totals.add("uncertain", batch)
    return next_seq


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    rng = random.Random(args.seed)
    totals = Totals()
    seq = 1
    deadline = time.monotonic() + args.deadline_s
    while not stopping and not os.path.exists(args.stop_file) and time.monotonic() < deadline:
        seq = one_run(args, rng, seq, totals)
        time.sleep(args.pause_ms / 1000.0)
    with open(args.report, "w") as f:
        json.dump(totals.report(args.seed), f, indent=1, sort_keys=True)
    o = totals.outcome
    print("producer %d: %d runs, %d batches, %d acked, failed %s, %d uncertain, %d ambiguous runs" %
          (args.producer, o["runs"], o["batches"], o["acked"], o["failed"], o["uncertain_batches"],
           o["ambiguous_runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
