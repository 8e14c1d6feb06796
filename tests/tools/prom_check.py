#!/usr/bin/env python3
"""prom_check.py — reads counters back from a real Prometheus server's HTTP API.

Used by tests/integration/prometheus.sh, run inside the namespace where the
Prometheus server listens. For every metric name whose statsd key starts with
one of the expected totals' prefixes it runs the documented query
(docs/operations.md, "Prometheus"):

  single node:  NAME
  cluster:      sum without (instance, origin) (NAME and on (instance, origin)
                  topk by (origin) (1, tally_counters_copy_timestamp_seconds))

and maps each resulting series back to its statsd key (the statsd_name label
when there is one, else the metric name with '_' read as '.'). Every expected
total must be there with exactly its value, and no other key under the same
prefixes. `--partial N` also asks the documented partial marker
  max(tally_counters_members) - count(tally_counters_copy_timestamp_seconds{copy="own"})
and wants N. Exit 0 when all holds; else 1 with what differs.
"""
import argparse
import json
import sys
import urllib.parse
import urllib.request

CLUSTER_QUERY = ("sum without (instance, origin) ({name} and on (instance, origin) "
                 "topk by (origin) (1, tally_counters_copy_timestamp_seconds))")
PARTIAL_QUERY = ("max(tally_counters_members) - "
                 "count(tally_counters_copy_timestamp_seconds{copy=\"own\"})")


def api(base, path, **params):
    url = "%s%s?%s" % (base, path, urllib.parse.urlencode(params))
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError("%s: %s" % (url, body))
    return body["data"]


def expected_totals(paths):
    totals = {}
    for path in paths:
        data = json.load(open(path))
        if "totals" in data:  # statsd_send.py, or a plain {"totals": {...}}
            totals.update(data["totals"])
        else:  # reliable_producer.py's report: every batch acked, so acked is the value
            totals.update({name: c["acked"] for name, c in data["counters"].items()})
    return totals


TARGET_LABELS = {"__name__", "job", "instance", "origin"}


def key_of(metric, labels):
    """The statsd key of a series: its statsd_name, else the plain mapping read back
    (metric and tag label names with '_' read as '.', tags in key order)."""
    if "statsd_name" in labels:
        return labels["statsd_name"]
    tags = sorted((k.replace("_", "."), v) for k, v in labels.items() if k not in TARGET_LABELS)
    name = metric.replace("_", ".")
    return name + ("{%s}" % ",".join("%s=%s" % tag for tag in tags) if tags else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--api", default="http://127.0.0.1:9190")
    p.add_argument("--cluster", action="store_true", help="the cluster-wide query")
    p.add_argument("--partial", type=int, help="the partial marker must equal this")
    p.add_argument("--expect", action="append", required=True, help="JSON totals (repeatable)")
    p.add_argument("--show", action="store_true", help="print each key: sent, Prometheus's value")
    args = p.parse_args()
    totals = expected_totals(args.expect)
    prefixes = sorted({name.split(".")[0] + "." for name in totals})
    metric_prefixes = tuple(prefix.replace(".", "_") for prefix in prefixes)
    names = [n for n in api(args.api, "/api/v1/label/__name__/values")
             if n.startswith(metric_prefixes)]
    got = {}
    for name in names:
        query = CLUSTER_QUERY.format(name=name) if args.cluster else name
        for series in api(args.api, "/api/v1/query", query=query)["result"]:
            key = key_of(name, series["metric"])
            if not key.startswith(tuple(prefixes)):
                continue
            if key in got:
                print("key %s twice (query %s)" % (key, query))
                return 1
            got[key] = float(series["value"][1])
    if args.show:
        print("%-22s %12s %14s" % ("counter", "sent", "prometheus"))
        for key in sorted(totals):
            value = got.get(key)
            print("%-22s %12d %14s %s" % (key, totals[key], "-" if value is None else "%.0f" % value,
                                          "" if value == float(totals[key]) else "MISMATCH"))
    bad = {k: (v, got.get(k)) for k, v in totals.items() if got.get(k) != float(v)}
    extra = sorted(set(got) - set(totals))
    status = 0
    if bad or extra:
        print("mismatch (sent, prometheus):", dict(sorted(bad.items())[:10]), "extra:", extra[:10])
        status = 1
    else:
        print("prometheus: %d counters exact (%s query, %d metric names)" %
              (len(totals), "cluster" if args.cluster else "node", len(names)))
    if args.partial is not None:
        result = api(args.api, "/api/v1/query", query=PARTIAL_QUERY)["result"]
        marker = int(float(result[0]["value"][1])) if result else None
        print("partial marker: %s (want %d)" % (marker, args.partial))
        if marker != args.partial:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
