#!/usr/bin/env python3
"""check.py — the chaos suite's checker: reads every node with `tallyctl list`
and holds the final values to the producers' reports.

    check.py converged --tallyctl T --sockets S1,S2,.. --prefixes P1,P2,..
        exit 0 when every node answers and every counter under the prefixes
        has the same value on every node (a counter a node does not list is 0)

    check.py bounds --tallyctl T --sockets .. --reliable R.json.. --statsd S.json
        prints PASS/FAIL lines, exit 1 if any FAIL. Per counter:
          reliable (producer.py reports, summed):
            acked <= value <= attempted        (the rule of the brief)
            value <= acked + uncertain         (a batch refused by every node
                                                it reached was never counted)
          statsd (statsd_load.py report):  0 <= value <= sent
          and no counter under the prefixes that no producer sent
        on every node (after `converged`, the nodes agree anyway).
"""
import argparse
import json
import subprocess
import sys


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


def bounds(args):
    reliable = {}
    for path in args.reliable:
        for name, c in json.load(open(path))["counters"].items():
            r = reliable.setdefault(name, {"attempted": 0, "acked": 0, "uncertain": 0})
            for k in r:
                r[k] += c[k]
    sent = json.load(open(args.statsd))["sent"]
    views = read_all(args)
    ok = True
    for number, view in enumerate(views, 1):
        low, high, refused, over, phantom = {}, {}, {}, {}, []
        for name, r in reliable.items():
            value = view.get(name, 0)
            if value < r["acked"]:
                low[name] = (r["acked"], value)
            if value > r["attempted"]:
                high[name] = (value, r["attempted"])
            if value > r["acked"] + r["uncertain"]:
                refused[name] = (value, r["acked"], r["uncertain"])
        for name, s in sent.items():
            if not 0 <= view.get(name, 0) <= s:
                over[name] = (view.get(name, 0), s)
        phantom = sorted(set(view) - set(reliable) - set(sent))
        ok &= verdict(not low, "node %d: reliable: acked <= value (no acked increment lost)" % number,
                      "(acked, value) %s" % dict(list(low.items())[:8]))
        ok &= verdict(not high, "node %d: reliable: value <= attempted (nothing counted twice)" % number,
                      "(value, attempted) %s" % dict(list(high.items())[:8]))
        ok &= verdict(not refused, "node %d: reliable: value <= acked + uncertain" % number,
                      "(value, acked, uncertain) %s" % dict(list(refused.items())[:8]))
        ok &= verdict(not over, "node %d: statsd: 0 <= value <= sent" % number,
                      "(value, sent) %s" % dict(list(over.items())[:8]))
        ok &= verdict(not phantom, "node %d: no counter that nobody sent" % number, str(phantom[:8]))
    view = views[0]
    acked = sum(r["acked"] for r in reliable.values())
    counted = sum(view.get(n, 0) for n in reliable)
    attempted = sum(r["attempted"] for r in reliable.values())
    total_sent = sum(sent.values())
    statsd_counted = sum(view.get(n, 0) for n in sent)
    print("reliable: acked %d <= counted %d <= attempted %d over %d counters" %
          (acked, counted, attempted, len(reliable)))
    print("statsd: counted %d of %d sent (%.3f%% lost while nodes were down or cut off)" %
          (statsd_counted, total_sent, 100.0 * (total_sent - statsd_counted) / max(total_sent, 1)))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("converged", "bounds"))
    p.add_argument("--tallyctl", required=True)
    p.add_argument("--sockets", required=True)
    p.add_argument("--prefixes", default="rel.,st.")
    p.add_argument("--reliable", nargs="*", default=[])
    p.add_argument("--statsd")
    args = p.parse_args()
    if args.mode == "converged":
        return converged(args)
    if args.statsd is None:
        p.error("bounds needs --statsd")
    return bounds(args)


if __name__ == "__main__":
    sys.exit(main())
