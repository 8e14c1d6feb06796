#!/usr/bin/env python3
"""double.py — names the reliable batches a failed chaos run counted twice.

The checker knows only sums: per counter, how far the final value is above
what the producers attempted. The producers' ledgers (producer.py --ledger:
every run's first seq, start time and lines) give every batch's deltas, so
the batches whose deltas add up to exactly that excess can be searched for:
one contiguous seq range of one producer, or one range of each producer
(ranges up to --max-len batches). Eight counters make a match all but
certain. Prints each match with the time its runs started (seconds since
the producers started; run.sh's clock is about 3 s ahead), to hold against
the fault schedule and the nodes' dedup logs.

    double.py --bounds WORK/bounds --ledger WORK/ledger1 WORK/ledger2
"""
import argparse
import ast
import json
import re
import sys


def excess_from_bounds(path):
    """{counter: value - attempted} from the first 'value <= attempted' FAIL line."""
    with open(path) as f:
        for line in f:
            if line.startswith("FAIL ") and "value <= attempted" in line:
                pairs = ast.literal_eval(line[line.index("{"):].strip())
                return {name: value - attempted for name, (value, attempted) in pairs.items()}
    return None


def read_ledger(path):
    """[(seq, t, {counter: delta})] in seq order."""
    batches = []
    with open(path) as f:
        for line in f:
            run = json.loads(line)
            pairs = run["pairs"]
            lines = run["lines"]
            for k in range(len(lines) // pairs):
                deltas = {}
                for name, delta in lines[k * pairs:(k + 1) * pairs]:
                    deltas[name] = deltas.get(name, 0) + delta
                batches.append((run["seq"] + k, run["t"], deltas))
    batches.sort(key=lambda b: b[0])
    return batches


def vector(deltas, names):
    return tuple(deltas.get(n, 0) for n in names)


def range_sums(batches, names, max_len):
    """{sum vector: (first index, last index)} over ranges of up to max_len batches."""
    sums = {}
    for i in range(len(batches)):
        total = [0] * len(names)
        for j in range(i, min(len(batches), i + max_len)):
            if j > i and batches[j][0] != batches[j - 1][0] + 1:
                break  # a gap in seqs: not one range
            for c, d in enumerate(vector(batches[j][2], names)):
                total[c] += d
            sums.setdefault(tuple(total), (i, j))
    return sums


def describe(producer, batches, span):
    i, j = span
    return "producer %d seqs %d..%d (%d batches, runs started t=%.1f..%.1f s)" % (
        producer, batches[i][0], batches[j][0], j - i + 1, batches[i][1], batches[j][1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bounds", required=True)
    p.add_argument("--ledger", nargs="+", required=True, help="producer 1's, producer 2's, ...")
    p.add_argument("--max-len", type=int, default=64)
    args = p.parse_args()
    excess = excess_from_bounds(args.bounds)
    if not excess:
        print("double.py: no 'value <= attempted' failure in %s" % args.bounds)
        return 1
    ledgers = [read_ledger(path) for path in args.ledger]
    # Every counter the producers sent; one the FAIL line does not list was not above.
    names = sorted(set(excess) | {n for b in ledgers for _, _, d in b for n in d})
    target = vector(excess, names)
    print("double.py: excess per counter %s" % dict(zip(names, target)))
    sums = [range_sums(b, names, args.max_len) for b in ledgers]
    found = 0
    for k, s in enumerate(sums):
        if target in s:
            print("  one range: " + describe(k + 1, ledgers[k], s[target]))
            found += 1
    if len(sums) == 2:
        for v, span in sums[0].items():
            rest = tuple(a - b for a, b in zip(target, v))
            if rest in sums[1]:
                print("  two ranges: " + describe(1, ledgers[0], span) + " + " +
                      describe(2, ledgers[1], sums[1][rest]))
                found += 1
                if found >= 5:
                    break
    if found == 0:
        print("  no contiguous range (or one per producer) of up to %d batches adds up to it"
              % args.max_len)
    return 0


if __name__ == "__main__":
    sys.exit(main())
