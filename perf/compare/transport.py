#!/usr/bin/env python3
"""transport.py — tallyd's statsd intake over DPDK net_af_packet against
net_af_xdp on the same veth pair, side by side in one run (run by
perf/compare/transport.sh, which creates the namespaces). For each round and
each variant in turn (alternating, so both see the same load from other
work on a shared machine): a fresh tallyd in log mode (image on tmpfs, so
nothing durable is on the path), a warm-up that creates every name, then
the same paced rate steps and one flat-out step, each read back and
compared with tally-blast's exact expectation (compare.step).
Writes JSON and Markdown.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import compare  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("--build", "--work", "--node-ns", "--peer-ns", "--json", "--markdown"):
        p.add_argument(name)
    p.add_argument("--variants", default="af_packet,af_xdp",
                   help="comma-separated TRANSPORT[:DEVARGS], devargs joined by '+' "
                        "(e.g. af_packet:framecnt=4096+blocksz=8192)")
    p.add_argument("--rates", default="60000,100000,150000,0", help="datagrams/s; 0 = flat out")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--step-s", type=float, default=2.0)
    p.add_argument("--counters", type=int, default=10000)
    p.add_argument("--lines", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def variant_args(args, variant):
    transport, _, extra = variant.partition(":")
    run = argparse.Namespace(**vars(args))
    run.transport = transport
    run.vdev = bench.vdev_for(transport, 1, extra.replace("+", ","))
    return run


def main():
    args = parse_args()
    workload = {"counters": args.counters, "lines": args.lines, "seed": args.seed}
    rates = [int(r) for r in args.rates.split(",")]
    variants = args.variants.split(",")
    how = {"kind": "tally", "persist": "log"}
    results = []
    for rnd in range(1, args.rounds + 1):
        for variant in variants:
            run = variant_args(args, variant)
            bench.log("== round %d: %s (%s)" % (rnd, variant, run.vdev))
            load = os.getloadavg()
            entry = {"round": rnd, "variant": variant, "vdev": run.vdev,
                     "loadavg_1m": round(load[0], 2), "trials": []}
            results.append(entry)
            try:
                target = compare.Target(run, "tally-statsd-" + variant, "statsd", how, {})
            except RuntimeError as e:
                entry["error"] = str(e)
                bench.log("  did not start: %s" % e)
                continue
            # Which XDP attach mode the kernel gave af_xdp (xdp = native, xdpgeneric = skb).
            link = subprocess.run(["ip", "-n", args.node_ns, "-d", "link", "show", "tally0"],
                                  capture_output=True, text=True, timeout=10).stdout
            entry["xdp_mode"] = next((w for w in link.split() if w.startswith("xdp")), "none")
            bench.log("  tally0 XDP attach: %s" % entry["xdp_mode"])
            try:
                warm_msgs = max(10, args.counters * 3 // args.lines)
                entry["warmup_exact"] = compare.step(run, target, workload, 1000, count=warm_msgs)["exact"]
                for rate in rates:
                    trial = compare.step(run, target, workload, rate, duration_s=args.step_s)
                    entry["trials"].append(trial)
                stats = target.server.stats()
                entry["port_stats"] = {k: v for k, v in stats.items()
                                       if k.startswith("port0_") or (k.startswith("drop_") and v != "0")}
            finally:
                target.stop()
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "workload": workload, "step_s": args.step_s, "loadavg_end": os.getloadavg()}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    lines = ["| round | variant | load 1m | offered dgram/s | sent dgram/s | incr sent | incr counted "
             "| lost | counted incr/s | others on CPU 1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in results:
        if "error" in entry:
            lines.append("| %d | %s | %.2f | did not start: %s |||||||" % (
                entry["round"], entry["variant"], entry["loadavg_1m"], entry["error"]))
        for t in entry["trials"]:
            lost = "exact" if t["exact"] else "%d (%.3f %%)" % (t["lost"], 100.0 * t["lost"] / max(1, t["increments_sent"]))
            lines.append("| %d | %s | %.2f | %s | %.0f | %d | %d | %s | %.2f M | %.0f %% |" % (
                entry["round"], entry["variant"], entry["loadavg_1m"],
                t["rate_offered_msgs"] or "flat out", t["sent_msgs_per_s"], t["increments_sent"],
                t["increments_counted"], lost, t["counted_per_s"] / 1e6, 100 * t["others_on_server_cpu"]))
    text = "\n".join(lines) + "\n"
    with open(args.markdown, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
