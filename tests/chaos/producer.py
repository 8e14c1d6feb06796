#!/usr/bin/env python3
"""producer.py — the chaos suite's reliable producer: libtally, through tally-produce.

Runs `tally-produce` again and again until a stop file appears (or a hard
deadline passes), each run with --batches batches, the node list of every
node, and the seq continued from the previous run's `next_seq`. A batch is
one fingerprint line then --pairs "NAME DELTA" lines (--flush-every
PAIRS + 1, so batch k of a run is seq first_seq + k and holds lines
k*(PAIRS+1) .. k*(PAIRS+1) + PAIRS):

    PREFIXf<seq % 64>  a seeded delta in [2^40, 2^41): the batch's fingerprint
    PREFIX<0..7>       --pairs positive deltas 1..100 over --counters counters

The counters are this producer's own (PREFIX defaults to rel.p<producer>.),
so nothing pools with another producer. The fingerprints make every batch's
count decidable from the final values (tests/chaos/check.py, and
docs/cluster-testing.md "The per-batch verdict").

The ledger (--ledger, required) gets two JSON lines per run: before it runs
{"seq", "t", "pairs", "lines"} (every line of every batch) and after it
{"seq", "outcome"}: one letter per batch, from tally-produce's summary:

    A  acked OK or DUPLICATE: must be counted exactly once
    U  failed with an unanswered attempt: counted 0 or 1 times
    F  failed, every attempt answered (refused): never counted

A run whose summary cannot be mapped to its batches (killed at its deadline,
unsent increments, more failures than listed) is all U, and so is a run
with no outcome line (the producer was killed during it). Writes a JSON
report of the outcome at the end (also on SIGTERM). The workload is
deterministic from --seed.
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
    p.add_argument("--key-file", help="this producer's key file (tallyctl producer-key: its "
                   "derived key, issue 14 M2), handed to tally-produce --key-file; without it "
                   "the key comes from $TALLY_KEY")
    p.add_argument("--producer", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefix", help="counter name prefix (default rel.p<producer>.)")
    p.add_argument("--ledger", required=True, help="append each run's batches and outcome "
                   "(JSON lines) for tests/chaos/check.py")
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
    if args.prefix is None:
        args.prefix = "rel.p%d." % args.producer
    return args


FINGERPRINT_CLASSES = 64  # fingerprint counters per producer (seq % 64)
FINGERPRINT_MIN = 1 << 40  # deltas in [2^40, 2^41): 2^22 batches per class fit an int64


class Totals:
    def __init__(self):
        self.outcome = {"runs": 0, "ambiguous_runs": 0, "batches": 0, "acked": 0,
                        "duplicate": 0, "failed": {}, "uncertain_batches": 0, "exits": {}}

    def report(self, seed):
        return {"seed": seed, "outcome": self.outcome}


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


def batch_lines(args, rng, seq):
    """One batch: its fingerprint line, then --pairs lines over the plain counters."""
    lines = [("%sf%d" % (args.prefix, seq % FINGERPRINT_CLASSES),
              rng.randrange(FINGERPRINT_MIN, 2 * FINGERPRINT_MIN))]
    return lines + [("%s%d" % (args.prefix, rng.randrange(args.counters)), rng.randint(1, 100))
                    for _ in range(args.pairs)]


def ledger_write(args, record):
    with open(args.ledger, "a") as f:
        f.write(json.dumps(record) + "\n")


def one_run(args, rng, seq, totals):
    per_batch = args.pairs + 1
    lines = [line for k in range(args.batches) for line in batch_lines(args, rng, seq + k)]
    command = [args.produce, "--nodes", args.nodes,
               "--producer", str(args.producer), "--seq", str(seq),
               "--flush-every", str(per_batch), "--timeout-ms", str(args.timeout_ms),
               "--ack-timeout-ms", str(args.ack_timeout_ms), "--retries", "40",
               "--breaker-failures", "3", "--breaker-cooldown-ms", "500"]
    if args.key_file:
        command += ["--key-file", args.key_file]
    text = "".join("%s %d\n" % line for line in lines)
    ledger_write(args, {"seq": seq, "t": round(time.monotonic() - START, 3),
                        "pairs": per_batch, "lines": lines})
    try:
        done = subprocess.run(command, input=text, capture_output=True, text=True,
                              timeout=args.timeout_ms / 1000.0 + 10,
                              env=os.environ)
        status, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired:
        status, out = "killed", ""
    totals.outcome["runs"] += 1
    totals.outcome["exits"][str(status)] = totals.outcome["exits"].get(str(status), 0) + 1
    totals.outcome["batches"] += args.batches
    parsed = parse_summary(out, seq, args.batches)
    if parsed is None:
        totals.outcome["ambiguous_runs"] += 1
        totals.outcome["uncertain_batches"] += args.batches
        ledger_write(args, {"seq": seq, "outcome": "U" * args.batches})
        return seq + args.batches + 64  # past anything this run may have used
    failures, duplicates, next_seq = parsed
    totals.outcome["duplicate"] += duplicates
    outcome = ""
    for k in range(args.batches):
        failure = failures.get(seq + k)
        if failure is None:
            totals.outcome["acked"] += 1
            outcome += "A"
            continue
        name, uncertain = failure
        totals.outcome["failed"][name] = totals.outcome["failed"].get(name, 0) + 1
        if uncertain:
            totals.outcome["uncertain_batches"] += 1
        outcome += "U" if uncertain else "F"
    ledger_write(args, {"seq": seq, "outcome": outcome})
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
