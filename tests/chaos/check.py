#!/usr/bin/env python3
"""check.py — the chaos suite's checker: reads every node with `tallyctl list`
and holds the final values to the producers' ledgers, batch by batch.

    check.py converged --tallyctl T --sockets S1,S2,.. --prefixes P1,P2,..
        exit 0 when every node answers, lists at least one counter under
        every prefix, and every counter under the prefixes has the same value
        on every node (a counter a node does not list is 0)

    check.py bounds --tallyctl T --sockets .. --ledger L1 L2 .. --statsd S.json
                    [--min-acked N]
        prints PASS/FAIL lines, exit 1 if any FAIL (and non-zero if it cannot
        run: run.sh counts that as a FAIL too). Per producer (producer.py
        --ledger: every batch's lines and how it ended), on every node:
          every acked batch counted exactly once, every uncertain batch 0 or
          1 times, every refused batch never: decided per batch from the
          fingerprint counters (below), then every counter of the producer
          must equal, exactly, the sum of the batches found counted;
          at least N batches acked (a run that got nothing through is no test);
        and no two producers share a counter; statsd (statsd_load.py's
        report): 0 <= value <= sent; no counter under the prefixes that
        nobody sent.

The per-batch verdict. Batch seq s of a producer carries one fingerprint
line, PREFIXf<s % 64>, with a seeded delta in [2^40, 2^41) (the ledger has
it). For one fingerprint counter, the residual r = value - (sum of its acked
batches' fingerprints) must be the sum of some subset of its uncertain
batches' fingerprints; the subset is searched for exhaustively (meet in the
middle), and must exist and be the only one: then it is exactly the set of
uncertain batches counted. No match means some batch was counted twice, a
refused batch was counted or an acked one lost (the checker names the batch
when one batch explains it); two matches would be undecidable and fail too
(with 40-bit fingerprints it does not happen). The plain counters then have
no slack left: each must equal the sum over acked and counted batches.
"""
import argparse
import json
import subprocess
import sys

UNCERTAIN_PER_CLASS_MAX = 40  # meet in the middle: 2^20 subset sums per half
EXPLAIN_UNCERTAIN_MAX = 16  # naming the culprit tries every batch of the class
EXAMPLES = 5


def read_node(tallyctl, sock, prefixes):
    values = {}
    for prefix in prefixes:
        done = subprocess.run([tallyctl, "-s", sock, "list", prefix], capture_output=True,
                              text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError("%s: tallyctl list %s: exit %d %s" %
                               (sock, prefix, done.returncode, done.stderr.strip()))
        for line in done.stdout.splitlines():
            name, value = line.split()
            values[name] = int(value)
    return values


def read_all(args):
    return [read_node(args.tallyctl, s, args.prefixes.split(",")) for s in args.sockets.split(",")]


def converged(args):
    try:
        views = read_all(args)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
        print("not converged:", error)
        return 1
    for number, view in enumerate(views, 1):
        empty = [p for p in args.prefixes.split(",") if not any(n.startswith(p) for n in view)]
        if empty:
            print("not converged: node %d lists no counter under %s" % (number, empty))
            return 1
    names = set().union(*views)
    differ = {n: [v.get(n, 0) for v in views] for n in sorted(names)
              if len({v.get(n, 0) for v in views}) > 1}
    if differ:
        print("not converged: %d of %d counters differ, e.g. %s" %
              (len(differ), len(names), dict(list(differ.items())[:5])))
        return 1
    print("converged: %d counters identical on %d nodes" % (len(names), len(views)))
    return 0


def verdict(ok, name, detail):
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if ok else ": " + detail))
    return ok


class Batch:
    def __init__(self, seq, t, lines):
        self.seq, self.t = seq, t
        self.fingerprint = tuple(lines[0])  # (counter, delta)
        self.deltas = {}
        for name, delta in lines:
            self.deltas[name] = self.deltas.get(name, 0) + delta
        self.outcome = "U"  # until the run's outcome line says otherwise


def read_ledger(path):
    """{seq: Batch}: every batch of one producer, with its outcome (A, U or F)."""
    batches = {}
    with open(path) as f:
        for line in f:
            run = json.loads(line)
            if "lines" in run:
                pairs, lines = run["pairs"], run["lines"]
                for k in range(len(lines) // pairs):
                    batches[run["seq"] + k] = Batch(run["seq"] + k, run["t"],
                                                    lines[k * pairs:(k + 1) * pairs])
            else:
                for k, letter in enumerate(run["outcome"]):
                    batches[run["seq"] + k].outcome = letter
    return batches


def subset_sums(items):
    """{sum: [subset as a tuple of seqs]} over every subset of [(seq, delta)]."""
    sums = {0: [()]}
    for seq, delta in items:
        grown = {}
        for total, subsets in sums.items():
            grown.setdefault(total, []).extend(subsets)
            grown.setdefault(total + delta, []).extend(s + (seq,) for s in subsets)
        sums = grown
    return sums


class Subsets:
    """Every subset of some (seq, delta) pairs whose deltas add up to a target."""

    def __init__(self, items):
        half = len(items) // 2
        self.left, self.right = subset_sums(items[:half]), subset_sums(items[half:])

    def matching(self, target, most=2):
        found = []
        for total, lefts in self.left.items():
            for right in self.right.get(target - total, ()):
                found.extend(left + right for left in lefts)
                if len(found) >= most:
                    return found[:most]
        return found


def explain(residual, members, subsets):
    """Single batches whose extra count (or, if acked, absence) makes the residual decodable."""
    out = []
    for b in members:
        _, delta = b.fingerprint
        if subsets.matching(residual - delta, 1):
            out.append("seq %d (%s, run started t=%.1f s) counted once more than allowed" %
                       (b.seq, {"A": "acked", "U": "uncertain", "F": "refused"}[b.outcome], b.t))
        if b.outcome == "A" and subsets.matching(residual + delta, 1):
            out.append("seq %d (acked, run started t=%.1f s) not counted" % (b.seq, b.t))
        if len(out) >= EXAMPLES:
            break
    return out


def decide(view, batches):
    """(set of uncertain seqs counted, [problems]) from the fingerprint counters."""
    classes = {}
    for b in batches.values():
        classes.setdefault(b.fingerprint[0], []).append(b)
    counted, problems = set(), []
    for counter in sorted(classes):
        members = sorted(classes[counter], key=lambda b: b.seq)
        residual = view.get(counter, 0) - sum(b.fingerprint[1] for b in members if b.outcome == "A")
        uncertain = [(b.seq, b.fingerprint[1]) for b in members if b.outcome == "U"]
        if len(uncertain) > UNCERTAIN_PER_CLASS_MAX:
            problems.append("%s: %d uncertain batches, more than the %d the search takes" %
                            (counter, len(uncertain), UNCERTAIN_PER_CLASS_MAX))
            continue
        subsets = Subsets(uncertain)
        found = subsets.matching(residual)
        if len(found) == 1:
            counted.update(found[0])
            continue
        if found:
            problems.append("%s: residual %d is two different sets of uncertain batches %s" %
                            (counter, residual, found))
            continue
        why = explain(residual, members, subsets) if len(uncertain) <= EXPLAIN_UNCERTAIN_MAX else []
        problems.append("%s: residual %d over %d acked and %d uncertain batches is no set of "
                        "uncertain batches; %s" % (counter, residual,
                                                   sum(b.outcome == "A" for b in members),
                                                   len(uncertain),
                                                   "; ".join(why) or "no single batch explains it"))
    return counted, problems


def check_producer(number, producer, view, batches):
    ok = True
    counted, problems = decide(view, batches)
    acked = [b for b in batches.values() if b.outcome == "A"]
    uncertain = [b for b in batches.values() if b.outcome == "U"]
    refused = len(batches) - len(acked) - len(uncertain)
    ok &= verdict(not problems, "node %d: producer %d: every acked batch counted once, every "
                  "uncertain one 0 or 1 times, no refused one (%d acked, %d of %d uncertain "
                  "counted, %d refused)" % (number, producer, len(acked), len(counted),
                                            len(uncertain), refused),
                  " | ".join(problems[:EXAMPLES]))
    expected = {}
    for b in batches.values():
        if b.outcome == "A" or b.seq in counted:
            for name, delta in b.deltas.items():
                expected[name] = expected.get(name, 0) + delta
    names = {name for b in batches.values() for name in b.deltas}
    off = {n: (view.get(n, 0), expected.get(n, 0)) for n in sorted(names)
           if view.get(n, 0) != expected.get(n, 0)}
    ok &= verdict(not off, "node %d: producer %d: each of its %d counters equals its counted "
                  "batches exactly" % (number, producer, len(names)),
                  "(value, expected) %s" % dict(list(off.items())[:8]))
    return ok


def bounds(args):
    ledgers = [read_ledger(path) for path in args.ledger]
    sent = json.load(open(args.statsd))["sent"]
    ok = True
    owners = {}
    for producer, batches in enumerate(ledgers, 1):
        for name in {n for b in batches.values() for n in b.deltas}:
            owners.setdefault(name, set()).add(producer)
    shared = sorted(n for n, p in owners.items() if len(p) > 1 or n in sent)
    ok &= verdict(not shared, "every producer has its own counters", str(shared[:8]))
    for producer, batches in enumerate(ledgers, 1):
        acked = sum(b.outcome == "A" for b in batches.values())
        ok &= verdict(acked >= args.min_acked, "producer %d: at least %d batches acked (%d of %d)" %
                      (producer, args.min_acked, acked, len(batches)), "too few: no test")
    views = read_all(args)
    for number, view in enumerate(views, 1):
        for producer, batches in enumerate(ledgers, 1):
            ok &= check_producer(number, producer, view, batches)
        over = {n: (view.get(n, 0), s) for n, s in sent.items() if not 0 <= view.get(n, 0) <= s}
        phantom = sorted(set(view) - set(owners) - set(sent))
        ok &= verdict(not over, "node %d: statsd: 0 <= value <= sent" % number,
                      "(value, sent) %s" % dict(list(over.items())[:8]))
        ok &= verdict(not phantom, "node %d: no counter that nobody sent" % number, str(phantom[:8]))
    view = views[0]
    for producer, batches in enumerate(ledgers, 1):
        outcomes = [b.outcome for b in batches.values()]
        print("producer %d: %d batches: %d acked, %d uncertain, %d refused" %
              (producer, len(outcomes), outcomes.count("A"), outcomes.count("U"), outcomes.count("F")))
    total_sent = sum(sent.values())
    statsd_counted = sum(view.get(n, 0) for n in sent)
    print("statsd: counted %d of %d sent (%.3f%% lost while nodes were down or cut off)" %
          (statsd_counted, total_sent, 100.0 * (total_sent - statsd_counted) / max(total_sent, 1)))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("converged", "bounds"))
    p.add_argument("--tallyctl", required=True)
    p.add_argument("--sockets", required=True)
    p.add_argument("--prefixes", default="rel.,st.")
    p.add_argument("--ledger", nargs="*", default=[], help="one per producer, in producer order")
    p.add_argument("--statsd")
    p.add_argument("--min-acked", type=int, default=1, help="per producer")
    args = p.parse_args()
    if args.mode == "converged":
        return converged(args)
    if args.statsd is None or not args.ledger:
        p.error("bounds needs --ledger and --statsd")
    return bounds(args)


if __name__ == "__main__":
    sys.exit(main())
