#!/usr/bin/env python3
"""compare.py — the end-to-end comparison (run by perf/compare/run.sh, which
installs the peers and creates the namespaces). The same workload goes to
tallyd and to each peer on this machine, one server at a time, each server
fresh and confined to CPU 1 while tally-blast runs on CPU 0:

  1. warm-up at a low rate: every name created once (checked exact); the
     resident-memory growth over it, divided by the names, is bytes/counter;
  2. a bounded search for the highest offered rate at which the count is
     exact: first flat out, then paced steps between the last exact and the
     first lossy rate (each step a few seconds, read back and compared);
  3. for reliable writes, the ack latency at a modest fixed rate.

Prints the table (with ratios tally/peer) and writes JSON and Markdown.
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SERVER_CPU = 1
BLAST_CPU = 0
SETTLE_S = 0.5
PRODUCERS = 4  # binary producers, all on one sender thread
REDIS_CONNECTIONS = 8  # a sender thread each (they mostly wait for replies)
LATENCY_RATE = 1000  # messages (datagrams, batches, pipelines) per second


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build")
    p.add_argument("--work")
    p.add_argument("--node-ns")
    p.add_argument("--peer-ns")
    p.add_argument("--statsd-dir", help="the Etsy statsd package directory")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--systems", default="all", help="comma-separated keys, or all")
    p.add_argument("--counters", type=int, default=10000)
    p.add_argument("--lines", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--transport", choices=bench.TRANSPORTS, default="af_packet",
                   help="tallyd's DPDK port on the veth")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="no run: the table of earlier result files (the last result of each system wins)")
    p.add_argument("--budget-s", type=float, default=0, help="stop starting systems after this")
    p.add_argument("--json")
    p.add_argument("--markdown")
    return p.parse_args()


# ---- Systems -----------------------------------------------------------------------

def systems_table():
    """key, label, protocol, durability, how to start."""
    return [
        ("tally-statsd", "tallyd statsd", "statsd", "group commit 2 ms (msync)",
         {"kind": "tally", "persist": "group_commit"}),
        ("tally-statsd-pmem", "tallyd statsd, per-burst", "statsd", "per burst (emulated pmem: not durable on this disk)",
         {"kind": "tally", "persist": "per_burst"}),
        ("tally-statsd-log", "tallyd statsd, log mode", "statsd", "image on tmpfs, not logged (statsd)",
         {"kind": "tally", "persist": "log"}),
        ("tally-binary", "tallyd binary (acked)", "binary", "ack after group commit 2 ms (msync)",
         {"kind": "tally", "persist": "group_commit"}),
        ("tally-binary-log", "tallyd binary (acked), log mode", "binary", "ack after the log's fdatasync",
         {"kind": "tally", "persist": "log"}),
        ("tally-binary-pmem", "tallyd binary (acked), per-burst", "binary", "ack after per-burst flush (emulated pmem)",
         {"kind": "tally", "persist": "per_burst"}),
        ("redis-none", "Redis INCRBY, appendonly no", "redis", "none", {"kind": "redis", "aof": False}),
        ("redis-everysec", "Redis INCRBY, appendfsync everysec", "redis", "fsync every second",
         {"kind": "redis", "aof": True, "fsync": "everysec"}),
        ("redis-always", "Redis INCRBY, appendfsync always", "redis", "fsync before reply",
         {"kind": "redis", "aof": True, "fsync": "always"}),
        ("etsy-statsd", "Etsy statsd 0.9 (node)", "statsd", "none (memory, flushed to backends)",
         {"kind": "etsy"}),
        ("collectd", "collectd statsd plugin", "statsd", "none (memory, dispatched per interval)",
         {"kind": "collectd"}),
    ]


class Target:
    """A started server, how to reach it, and how to read its counts."""

    def __init__(self, args, key, protocol, how, ports):
        self.key = key
        self.protocol = protocol
        self.kind = how["kind"]
        self.netns = None
        self.settle = lambda: time.sleep(SETTLE_S)
        if self.kind == "tally":
            env = {"PMEM2_FORCE_GRANULARITY": "CACHE_LINE"} if how["persist"] == "per_burst" else None
            self.server = bench.Tallyd(args.build, args.work, args.node_ns, args.peer_ns, env=env,
                                       persist=how["persist"], commit_interval_ms=2,
                                       counters_max=max(65536, args.counters * 2),
                                       transport=getattr(args, "transport", "af_packet"),
                                       vdev=getattr(args, "vdev", None))
            self.netns = args.peer_ns
            port = 8125 if protocol == "statsd" else 8126
            self.target = "%s:%d" % (bench.TALLY_NODE_IP, port)
            subprocess.run(["ip", "netns", "exec", args.peer_ns, "ping", "-c", "1", "-W", "2",
                            bench.TALLY_NODE_IP], capture_output=True, timeout=10)
        elif self.kind == "redis":
            self.server = bench.Redis(args.work, ports["redis"], how["aof"], how.get("fsync", "everysec"),
                                      cpu=SERVER_CPU, tag=key)
            self.target = "127.0.0.1:%d" % ports["redis"]
        elif self.kind == "etsy":
            self.server = bench.EtsyStatsd(args.work, args.statsd_dir, ports["statsd"], ports["mgmt"],
                                           cpu=SERVER_CPU)
            self.target = "127.0.0.1:%d" % ports["statsd"]
        else:
            self.server = bench.Collectd(args.work, ports["collectd"], interval_s=2, cpu=SERVER_CPU)
            self.settle = self.server.settle
            self.target = "127.0.0.1:%d" % ports["collectd"]
        self.pid = self.server.pid
        self.meter = bench.LcoreMeter(self.server, 1) if self.kind == "tally" else None

    def read(self, workload):
        return self.server.read(workload)

    def stop(self):
        self.server.stop()


# ---- One step -------------------------------------------------------------------------

def blast_args(target, workload, rate_msgs, duration_s=None, count=None):
    mode = target.protocol
    args = ["--target", target.target, "--mode", mode] + bench.workload_args(workload, mode)
    rate = int(rate_msgs * workload["lines"]) if mode == "redis" else int(rate_msgs)
    args += ["--rate", rate]
    if duration_s is not None:
        args += ["--duration", duration_s]
    if count is not None:
        args += ["--count", count]
    if mode == "binary":
        args += ["--key", bench.TALLY_KEY, "--producers", PRODUCERS, "--inflight", 64,
                 "--timeout-ms", 50, "--drain-s", 2]
    if mode == "redis":
        args += ["--threads", REDIS_CONNECTIONS]
    return args


def step(args, target, workload, rate_msgs, duration_s=None, count=None):
    """Sends at rate_msgs (0 = flat out); returns the trial: exact or not,
    counted increments, CPU and memory of the server over it."""
    expect = os.path.join(args.work, "expect.json")
    before = target.read(workload)
    if target.meter:
        target.meter.start()
    t0 = time.monotonic()
    cpu0 = bench.cpu_seconds(target.pid)
    faults0 = bench.minor_faults(target.pid)
    # Who else ran on the server's CPU (other work on a shared machine disturbs a step).
    worker = "rte-worker" if target.kind == "tally" else ""
    others0 = bench.cpu_busy_ticks(SERVER_CPU) - bench.thread_ticks(target.pid, worker)
    commits0 = int(target.server.stats()["store_commits"]) if target.kind == "tally" else 0
    rss0 = bench.rss_bytes(target.pid)
    summary = bench.blast(args.build, blast_args(target, workload, rate_msgs, duration_s, count),
                          netns=target.netns, cpu=BLAST_CPU, expect=expect)
    cpu_blast_end = bench.cpu_seconds(target.pid)
    lcore = target.meter.stop() if target.meter else None
    faults1 = bench.minor_faults(target.pid)
    others1 = bench.cpu_busy_ticks(SERVER_CPU) - bench.thread_ticks(target.pid, worker)
    t_end = time.monotonic()
    commits1 = int(target.server.stats()["store_commits"]) if target.kind == "tally" else 0
    target.settle()
    cpu1 = bench.cpu_seconds(target.pid)
    t2 = time.monotonic()
    after = target.read(workload)
    exact, counted, wrong = bench.compare_counts(before, after, summary.pop("expect"))
    # tallyd polls: its lcore is busy whether frames come or not, so its CPU is
    # taken over the send window; the event-driven peers also get the drain.
    cpu_s = (cpu_blast_end if target.kind == "tally" else cpu1) - cpu0
    elapsed = summary["elapsed_s"]
    if lcore:
        busy = lcore["lcore_busy"]  # of the time the lcore held its CPU
    else:
        busy = cpu_s / (t2 - t0)
    trial = {
        "rate_offered_msgs": rate_msgs, "sent_msgs_per_s": round(summary["sent_per_s"], 1),
        "increments_sent": summary["increments"], "increments_counted": counted,
        "exact": exact, "wrong_counters": wrong,
        "counted_per_s": round(counted / elapsed, 1) if elapsed > 0 else 0.0,
        "lost": summary["increments"] - counted, "cpu_s": round(cpu_s, 3),
        "server_busy": round(max(0.0, busy), 3),
        "minor_faults": faults1 - faults0, "store_commits": commits1 - commits0,
        "others_on_server_cpu": round((others1 - others0) / bench.CLOCK_TICKS / (t_end - t0), 3),
        "cpu_s_per_m": round(cpu_s / (counted / 1e6), 3) if counted > 0 else None,
        "rss_before": rss0, "rss_after": bench.rss_bytes(target.pid), "blast": summary,
        **(lcore or {}),
    }
    bench.log("  %-18s rate %-9s sent %9.0f msg/s  counted %11.0f incr/s  %-14s cpu %.2f s  busy %3.0f%%" % (
        target.key, rate_msgs or "flat-out", summary["sent_per_s"], trial["counted_per_s"],
        "exact" if exact else "LOST %d" % trial["lost"], cpu_s, trial["server_busy"] * 100)
        + "  others %2.0f%%" % (trial["others_on_server_cpu"] * 100)
        + ("  faults %d  commits %d" % (trial["minor_faults"], trial["store_commits"]) if target.kind == "tally" else ""))
    return trial


def undisturbed_step(args, target, workload, rate_msgs, duration_s):
    """A step; if it lost counts while other processes held more than 10 % of
    the server's CPU, it is run once more (this machine is shared)."""
    trial = step(args, target, workload, rate_msgs, duration_s=duration_s)
    if not trial["exact"] and trial["others_on_server_cpu"] > 0.10:
        bench.log("  (disturbed by other work on CPU %d: once more)" % SERVER_CPU)
        trial = step(args, target, workload, rate_msgs, duration_s=duration_s)
        trial["retried"] = True
    return trial


def search(args, target, workload, steps, step_s, warm):
    """Highest offered rate with an exact count: flat out first; if that
    lost counts, a geometric bisection between the highest exact rate known
    (the warm-up's, if it was exact) and the lowest lossy one."""
    trials = [step(args, target, workload, 0, duration_s=step_s)]
    if trials[0]["exact"]:
        return trials, trials[0]
    best = warm if warm["exact"] else None
    lossy = trials[0]["sent_msgs_per_s"]
    for _ in range(steps - 1):
        if best is None:
            rate = lossy / 4.0
        elif lossy / best["rate_offered_msgs"] < 1.15:
            break
        else:
            rate = math.sqrt(best["rate_offered_msgs"] * lossy)
        trial = undisturbed_step(args, target, workload, max(10, int(rate)), step_s)
        trials.append(trial)
        if trial["exact"]:
            best = trial
        else:
            lossy = min(lossy, trial["rate_offered_msgs"])
    return trials, best


def measure_system(args, entry, ports, workload, steps, step_s):
    key, label, protocol, durability, how = entry
    bench.log("== %s" % label)
    target = Target(args, key, protocol, how, ports)
    result = {"key": key, "label": label, "protocol": protocol, "durability": durability}
    try:
        time.sleep(0.5)
        rss_fresh = bench.rss_bytes(target.pid)
        warm_msgs = max(10, workload["counters"] * 3 // workload["lines"])
        warm = step(args, target, workload, 1000, count=warm_msgs * (workload["lines"] if protocol == "redis" else 1))
        result["warmup_exact"] = warm["exact"]
        result["rss_bytes_per_counter"] = round((warm["rss_after"] - rss_fresh) / workload["counters"], 1)
        result["rss_fresh"] = rss_fresh
        if target.kind == "tally":
            stats = target.server.stats()
            store = target.server.store_path
            result["store_bytes_per_counter"] = round(os.path.getsize(store) / int(stats["counters_capacity"]), 1)
        trials, best = search(args, target, workload, steps, step_s, warm)
        result["trials"] = [warm] + trials
        result["flat_out"] = trials[0]
        result["best"] = best
        if protocol != "statsd":
            latency = step(args, target, workload, LATENCY_RATE, duration_s=max(1.0, step_s / 2))
            result["latency_probe"] = latency
            result["trials"].append(latency)
    finally:
        target.stop()
    return result


# ---- Output ----------------------------------------------------------------------------

def fmt_rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return "%.2f M" % (value / 1e6)
    if value >= 1e3:
        return "%.0f k" % (value / 1e3)
    return "%.0f" % value


def latency_text(trial):
    if not trial or "latency_us" not in trial["blast"]:
        return "-"
    lat = trial["blast"]["latency_us"]
    return "%.0f / %.0f / %.0f" % (lat["p50"], lat["p99"], lat["p999"])


def row(result):
    best = result.get("best")
    flat = result.get("flat_out") or {}
    loss = (flat.get("lost", 0) / flat["increments_sent"] * 100) if flat.get("increments_sent") else 0
    return [
        result["label"], result["durability"],
        fmt_rate(best["rate_offered_msgs"] or best["sent_msgs_per_s"]) + (" (flat out)" if best and not best["rate_offered_msgs"] else "") if best else "none exact",
        fmt_rate(best["counted_per_s"]) if best else "-",
        "%s (%.0f%% lost)" % (fmt_rate(flat.get("counted_per_s")), loss) if flat else "-",
        "%.0f%%" % (best["server_busy"] * 100) if best else "-",
        "%.0f%%" % (max(0.0, best["others_on_server_cpu"]) * 100) if best else "-",
        "%.3f" % best["cpu_s_per_m"] if best and best["cpu_s_per_m"] is not None else "-",
        ("%.0f" % result["rss_bytes_per_counter"] if "rss_bytes_per_counter" in result else "-") +
        (" (store file: %.0f)" % result["store_bytes_per_counter"] if "store_bytes_per_counter" in result else ""),
        latency_text(best) if result["protocol"] != "statsd" else "-",
        latency_text(result.get("latency_probe")) if result["protocol"] != "statsd" else "-",
    ]


HEADER = ["system", "durability", "highest exact rate (msgs/s)", "increments/s at it",
          "flat out: counted incr/s", "server busy at it", "other load on server CPU", "CPU s / M incr", "RSS B / counter",
          "ack p50/p99/p999 us at it", "ack p50/p99/p999 us at 1k msgs/s"]


def ratios(results):
    """tally / peer for exact increments/s and CPU per increment."""
    by_key = {r["key"]: r for r in results if r.get("best")}
    pairs = [("tally-statsd", p) for p in ("etsy-statsd", "collectd")]
    pairs += [("tally-statsd-pmem", p) for p in ("etsy-statsd", "collectd")]
    pairs += [("tally-binary", p) for p in ("redis-none", "redis-everysec", "redis-always")]
    pairs += [("tally-binary-pmem", p) for p in ("redis-none", "redis-everysec", "redis-always")]
    lines = []
    for tally, peer in pairs:
        if tally in by_key and peer in by_key:
            t, p = by_key[tally]["best"], by_key[peer]["best"]
            speed = t["counted_per_s"] / p["counted_per_s"] if p["counted_per_s"] else float("nan")
            cpu = (p["cpu_s_per_m"] / t["cpu_s_per_m"]) if t["cpu_s_per_m"] and p["cpu_s_per_m"] else float("nan")
            lines.append([by_key[tally]["label"], by_key[peer]["label"], "%.1fx" % speed, "%.2fx" % cpu])
    return lines


def markdown(results, meta):
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row(r)) + " |" for r in results if "trials" in r]
    out += ["", "| tally | peer | exact increments/s, tally/peer | CPU per increment, peer/tally |",
            "|---|---|---|---|"]
    out += ["| " + " | ".join(line) + " |" for line in ratios(results)]
    out += ["", "Workload: %(counters)d counters, %(lines)d increments per message (statsd lines per "
            "datagram, binary pairs per batch, Redis commands per pipeline), uniform names, seed %(seed)d; "
            "%(steps)d steps of %(step_s)s s per system; machine: %(cpus)d CPUs, %(kernel)s." % meta]
    return "\n".join(out) + "\n"


def merge(files):
    """One table from several runs, e.g. a system re-run when the machine was quiet."""
    by_key, metas = {}, []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        metas.append(data["meta"])
        for result in data["results"]:
            if "trials" in result:
                by_key[result["key"]] = dict(result, source=os.path.basename(path))
    order = [entry[0] for entry in systems_table()]
    results = [by_key[k] for k in order if k in by_key]
    text = markdown(results, metas[-1])
    text += "\nRows from: " + ", ".join("%s (%s)" % (r["key"], r["source"]) for r in results) + "\n"
    print(text)
    return 0


def main():
    args = parse_args()
    if args.merge:
        return merge(args.merge)
    for required in ("build", "work", "node_ns", "peer_ns", "statsd_dir", "json", "markdown"):
        if getattr(args, required) is None:
            sys.exit("compare.py: --%s is required" % required.replace("_", "-"))
    # run.sh stops us with SIGTERM: unwind so that every server is stopped by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    steps, step_s = (3, 2.0) if args.quick else (6, 4.0)
    workload = {"counters": args.counters, "lines": args.lines, "seed": args.seed, "prefix": "blast."}
    base = 20000 + os.getpid() % 10000
    ports = {"redis": base, "statsd": base + 1, "mgmt": base + 2, "collectd": base + 3}
    wanted = None if args.systems == "all" else set(args.systems.split(","))
    start = time.monotonic()
    load = float(open("/proc/loadavg").read().split()[0])
    if load > 0.5:
        bench.log("warning: load average %.2f before the run: other work will disturb the numbers "
                  "(each step reports how much of the server's CPU others took)" % load)
    budget = args.budget_s or (150 if args.quick else 600)
    results = []
    for entry in systems_table():
        if wanted is not None and entry[0] not in wanted:
            continue
        if time.monotonic() - start > budget:
            bench.log("time budget spent: %s skipped" % entry[1])
            results.append({"key": entry[0], "label": entry[1], "skipped": "time budget"})
            continue
        try:
            results.append(measure_system(args, entry, ports, workload, steps, step_s))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            bench.log("%s failed: %s" % (entry[1], error))
            results.append({"key": entry[0], "label": entry[1], "error": str(error)})
    meta = {"counters": args.counters, "lines": args.lines, "seed": args.seed, "steps": steps,
            "step_s": step_s, "cpus": os.cpu_count(), "kernel": os.uname().release,
            "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
            "elapsed_s": round(time.monotonic() - start, 1)}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    text = markdown(results, meta)
    with open(args.markdown, "w") as f:
        f.write(text)
    print(text)
    return 0 if all("trials" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
