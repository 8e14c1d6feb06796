#!/usr/bin/env python3
"""scaling.py — tallyd's scaling curves (run by perf/compare/scaling.sh,
which builds, reserves hugepages and creates the namespaces). Each point is
a fresh tallyd over the veth pair and one flat-out tally-blast step from the
peer namespace; the point reports increments counted per second, what was
lost (counted against tally-blast's total), the dataplane lcores' busy share
and, for reliable writes, ack latency at a fixed modest rate.

Curves: dataplane lcores / RX queues (--lcores "1 2 4"), distinct counters
(1k..1M, 10M with --big), persistence mode (group commit 1/10/100 ms,
per-burst), datagram size (1, 10, 60 lines). And a net_null probe: what the
poll loop does with frames no sender made.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

BLAST_CPU = 0
PMEM_ENV = {"PMEM2_FORCE_GRANULARITY": "CACHE_LINE"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--node-ns", required=True)
    p.add_argument("--peer-ns", required=True)
    p.add_argument("--lcores", default="1 2", help="dataplane lcore counts, e.g. \"1 2 4\"")
    p.add_argument("--counters", default="1000 10000 100000 1000000")
    p.add_argument("--big", action="store_true", help="add 10 M counters (a 2 GiB store)")
    p.add_argument("--curves", default="lcores,counters,persistence,size,null")
    p.add_argument("--quick", action="store_true", help="1 s steps instead of 3 s")
    p.add_argument("--json", required=True)
    p.add_argument("--markdown", required=True)
    return p.parse_args()


class Point:
    """One tallyd configuration and one workload."""

    def __init__(self, curve, label, config, workload, mode="statsd", env=None, threads=1):
        self.curve, self.label, self.config, self.workload = curve, label, config, workload
        self.mode, self.env, self.threads = mode, env, threads


def totals(tally):
    stats = tally.stats()
    return int(stats["statsd_increments"]) + int(stats["batch_increments"])


def blast_args(point, rate, duration_s=None, count=None):
    port = 8125 if point.mode == "statsd" else 8126
    args = ["--target", "%s:%d" % (bench.TALLY_NODE_IP, port), "--mode", point.mode,
            "--rate", rate, "--threads", point.threads] + bench.workload_args(point.workload, point.mode)
    if duration_s:
        args += ["--duration", duration_s]
    if count:
        args += ["--count", count]
    if point.mode == "binary":
        args += ["--key", bench.TALLY_KEY, "--producers", 4 * point.threads, "--inflight", 64,
                 "--timeout-ms", 50, "--drain-s", 2]
    return args


def measure(args, tally, point, rate, duration_s, meter):
    counted0 = totals(tally)
    meter.start()
    summary = bench.blast(args.build, blast_args(point, rate, duration_s), netns=args.peer_ns, cpu=BLAST_CPU)
    lcores = meter.stop()
    time.sleep(0.3)
    counted1 = totals(tally)
    counted = counted1 - counted0
    sent = summary["increments"] if point.mode == "statsd" else summary["increments_sent"]
    return {
        "rate_offered": rate, "sent_msgs_per_s": round(summary["sent_per_s"], 1),
        "increments_sent": sent, "increments_counted": counted,
        "counted_per_s": round(counted / summary["elapsed_s"], 1),
        "lost": sent - counted if point.mode == "statsd" else summary.get("unacked", 0),
        "exact": counted == (summary["increments"]),
        "blast": summary,
        **lcores,
    }


def run_point(args, point, step_s):
    bench.log("== %s: %s" % (point.curve, point.label))
    tally = bench.Tallyd(args.build, args.work, args.node_ns, args.peer_ns, env=point.env, tag="scale",
                         **point.config)
    result = {"curve": point.curve, "label": point.label, "mode": point.mode,
              "config": point.config, "workload": point.workload}
    try:
        subprocess.run(["ip", "netns", "exec", args.peer_ns, "ping", "-c", "1", "-W", "2",
                        bench.TALLY_NODE_IP], capture_output=True, timeout=10)
        quiet = bench.LcoreMeter(tally, point.config.get("lcores", 1))
        # Warm-up: every name once or twice, at a rate every mode keeps up with.
        warm = max(10, 2 * point.workload["counters"] // point.workload["lines"])
        bench.blast(args.build, blast_args(point, 20000, count=warm), netns=args.peer_ns, cpu=BLAST_CPU)
        time.sleep(0.3)
        result["flat_out"] = measure(args, tally, point, 0, step_s, quiet)
        if point.mode == "binary":
            result["latency_1k"] = measure(args, tally, point, 1000, max(1.0, step_s / 2), quiet)
        flat = result["flat_out"]
        bench.log("  counted %.2f M incr/s, lost %d, lcore busy %.0f%%, lcore held its CPU %.0f%%%s" % (
            flat["counted_per_s"] / 1e6, flat["lost"], flat["lcore_busy"] * 100, flat["lcore_cpu_share"] * 100,
            "" if point.mode == "statsd" else ", ack p99 at 1k/s %.0f us" %
            result["latency_1k"]["blast"]["latency_us"]["p99"]))
    finally:
        tally.stop()
    return result


def null_probe(args, step_s):
    """tallyd on net_null: its RX returns frames of 64 bytes nobody wrote."""
    bench.log("== null: net_null RX")
    tally = bench.Tallyd(args.build, args.work, args.node_ns, args.peer_ns, tag="null",
                         vdev="net_null0", persist="per_burst", env=PMEM_ENV)
    try:
        before = tally.stats()
        time.sleep(step_s)
        after = tally.stats()
    finally:
        tally.stop()
    delta = {k: int(after[k]) - int(before[k]) for k in after
             if k in before and after[k].strip().isdigit() and int(after[k]) != int(before[k])}
    drops = {k: v for k, v in delta.items() if k.startswith("drop_")}
    bench.log("  rx %.1f M frames/s, counted %d, drops %s" % (
        delta.get("rx_packets", 0) / step_s / 1e6, delta.get("statsd_increments", 0), drops))
    return {"curve": "null", "label": "net_null RX", "rx_frames_per_s": delta.get("rx_packets", 0) / step_s,
            "increments": delta.get("statsd_increments", 0), "drops_per_s":
            {k: v / step_s for k, v in drops.items()}}


def points(args):
    base = {"counters": 10000, "lines": 60, "seed": 7, "prefix": "s."}
    pmem = {"persist": "per_burst", "counters_max": 65536}
    curves = set(args.curves.split(","))
    out = []
    if "lcores" in curves:
        for n in [int(x) for x in args.lcores.split()]:
            out.append(Point("lcores", "%d lcore(s), %d RX queue(s)" % (n, n), dict(pmem, lcores=n),
                             base, env=PMEM_ENV, threads=n))
    if "counters" in curves:
        sizes = [int(x) for x in args.counters.split()] + ([10000000] if args.big else [])
        for n in sizes:
            config = dict(pmem, counters_max=max(65536, n * 4 // 3 + 16))
            out.append(Point("counters", "%d counters" % n, config, dict(base, counters=n), env=PMEM_ENV))
    if "persistence" in curves:
        for mode in ("statsd", "binary"):
            for ms in (1, 10, 100):
                out.append(Point("persistence", "group commit %d ms" % ms,
                                 {"persist": "group_commit", "commit_interval_ms": ms}, base, mode=mode))
            out.append(Point("persistence", "per burst (emulated pmem)", pmem, base, mode=mode, env=PMEM_ENV))
    if "size" in curves:
        for lines in (1, 10, 60):
            out.append(Point("size", "%d lines per datagram" % lines, pmem, dict(base, lines=lines), env=PMEM_ENV))
    return out


def markdown(results, meta):
    out = ["| curve | point | protocol | counted increments/s (flat out) | lost | lcore busy | lcore held its CPU | ack p50/p99/p999 us at 1k batches/s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.get("curve") == "null" or "flat_out" not in r:
            continue
        f = r["flat_out"]
        lat = r.get("latency_1k", {}).get("blast", {}).get("latency_us")
        out.append("| %s | %s | %s | %.2f M | %s | %.0f%% | %.0f%% | %s |" % (
            r["curve"], r["label"], r["mode"], f["counted_per_s"] / 1e6,
            "%d (%.1f%%)" % (f["lost"], 100.0 * f["lost"] / max(1, f["increments_sent"])),
            f["lcore_busy"] * 100, f["lcore_cpu_share"] * 100, "%.0f / %.0f / %.0f" % (lat["p50"], lat["p99"], lat["p999"]) if lat else "-"))
    for r in results:
        if r.get("curve") == "null":
            out.append("")
            out.append("net_null probe: %.1f M frames/s received by one lcore, %d increments counted, drops/s: %s" % (
                r["rx_frames_per_s"] / 1e6, r["increments"],
                ", ".join("%s %.1f M" % (k, v / 1e6) for k, v in r["drops_per_s"].items()) or "none"))
    out.append("")
    out.append("Steps of %(step_s)s s flat out from one tally-blast sender per lcore on CPU 0; %(cpus)d CPUs; "
               "kernel %(kernel)s." % meta)
    return "\n".join(out) + "\n"


def main():
    args = parse_args()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    step_s = 1.0 if args.quick else 3.0
    results = []
    start = time.monotonic()
    load = float(open("/proc/loadavg").read().split()[0])
    if load > 0.5:
        bench.log("warning: load average %.2f before the run: other work will disturb the numbers "
                  "(each step reports how much of the server's CPU others took)" % load)
    for point in points(args):
        try:
            results.append(run_point(args, point, step_s))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            bench.log("%s %s failed: %s" % (point.curve, point.label, error))
            results.append({"curve": point.curve, "label": point.label, "error": str(error)})
    if "null" in args.curves.split(","):
        try:
            results.append(null_probe(args, step_s))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            results.append({"curve": "null", "label": "net_null RX", "error": str(error)})
    meta = {"step_s": step_s, "cpus": os.cpu_count(), "kernel": os.uname().release,
            "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
            "elapsed_s": round(time.monotonic() - start, 1)}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    text = markdown(results, meta)
    with open(args.markdown, "w") as f:
        f.write(text)
    print(text)
    return 0 if not any("error" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
