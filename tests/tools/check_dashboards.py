#!/usr/bin/env python3
"""check_dashboards.py ROOT — the monitoring files name only what tallyd exports.

The exported metric names are read from the source, from the same X-macros and
header calls that write /metrics:
  dataplane/lcore/lcore.h    TALLY_FOREACH_LCORE_STAT       tally_lcore_<name>_total
  control/daemon/metrics.c   TALLY_FOREACH_PORT_STAT        tally_port_<label>_total
                             metric_header(out, "<name>"    tally_<name>
  control/cluster/report.c   TALLY_FOREACH_CLUSTER_{PEER,NODE}_METRIC, metric_head
                                                            tally_cluster_<name>
  control/cluster/cluster.h  TALLY_FOREACH_CLUSTER_COUNTER  tally_cluster_<name>_total
  control/daemon/graphite.h  TALLY_FOREACH_GRAPHITE_STAT    tally_graphite_<metric>
  control/daemon/graphite.c  gauge(out, "<name>"            tally_graphite_<name>
  include/tally/reasons.h    TALLY_FOREACH_REASON           reason="<label>" of tally_drops_total
Then every PromQL expression of config/grafana/*.json (panel targets and
template queries) and config/prometheus/*.rules.yml is checked: each tally_*
name must be exported, each reason matcher on tally_drops_total must name a
reason, and each expression must use at least one tally_* name (`up`, which
Prometheus itself writes, is the only other name allowed). The dashboard must
be valid JSON with a schemaVersion. One PASS/FAIL line per file; exit 1 on any
FAIL.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")


def xmacro(path, macro):
    """First arguments of _(...) in `#define MACRO(_)` and its continuation lines."""
    text = (ROOT / path).read_text()
    match = re.search(r"#define " + macro + r"\(_\)((?:.*\\\n)*.*)", text)
    if not match:
        raise SystemExit(f"FAIL check_dashboards: no {macro} in {path}")
    pairs = re.findall(r"\b_\(\s*(\w+)\s*,\s*(\"[^\"]*\"|\w+)", match.group(1))
    return [(name, second.strip('"')) for name, second in pairs]


def exported():
    names = {f"tally_lcore_{n}_total" for n, _ in xmacro("dataplane/lcore/lcore.h",
                                                         "TALLY_FOREACH_LCORE_STAT")}
    metrics_c = "control/daemon/metrics.c"
    names |= {f"tally_port_{label}_total"
              for _, label in xmacro(metrics_c, "TALLY_FOREACH_PORT_STAT")}
    names |= {f"tally_{n}" for n in
              re.findall(r'metric_header\(out, "(\w+)",', (ROOT / metrics_c).read_text())}
    report_c = "control/cluster/report.c"
    for macro in ("TALLY_FOREACH_CLUSTER_PEER_METRIC", "TALLY_FOREACH_CLUSTER_NODE_METRIC"):
        names |= {f"tally_cluster_{n}" for n, _ in xmacro(report_c, macro)}
    names |= {f"tally_cluster_{n}" for n in
              re.findall(r'metric_head\(out, "(\w+)",', (ROOT / report_c).read_text())}
    names |= {f"tally_cluster_{n}_total" for n, _ in xmacro("control/cluster/cluster.h",
                                                            "TALLY_FOREACH_CLUSTER_COUNTER")}
    names |= {f"tally_graphite_{metric}" for _, metric in
              xmacro("control/daemon/graphite.h", "TALLY_FOREACH_GRAPHITE_STAT")}
    names |= {f"tally_graphite_{n}" for n in
              re.findall(r'gauge\(out, "(\w+)",', (ROOT / "control/daemon/graphite.c").read_text())}
    reasons = {label for _, label in xmacro("include/tally/reasons.h",
                                                       "TALLY_FOREACH_REASON")}
    return names, reasons


def problems_of(expr, names, reasons):
    found = []
    used = set(re.findall(r"\btally_\w+", expr))
    found += [f"unknown metric {n}" for n in sorted(used - names)]
    if not used and not re.search(r"\bup\{", expr):
        found.append(f"no tally_* metric in {expr!r}")
    for matchers in re.findall(r"tally_drops_total\{([^}]*)\}", expr):
        for op, value in re.findall(r'reason\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
            labels = value.split("|") if "~" in op else [value]
            found += [f"unknown reason {r!r}" for r in labels if r not in reasons]
    return found


def dashboard_exprs(path):
    dash = json.loads(path.read_text())  # invalid JSON raises: reported by main
    if not isinstance(dash.get("schemaVersion"), int):
        yield None, "no integer schemaVersion"
    for panel in dash.get("panels", []):
        targets = panel.get("targets") or []
        if not targets:
            yield None, f"panel {panel.get('title')!r} has no query"
        for target in targets:
            yield f"panel {panel.get('title')!r}", target.get("expr", "")
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            yield f"variable {var['name']}", query.get("query") if isinstance(query, dict) else query


def rules_exprs(path):
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


def main():
    names, reasons = exported()
    files = sorted((ROOT / "config/grafana").glob("*.json")) + \
        sorted((ROOT / "config/prometheus").glob("*.rules.yml"))
    failed = not files
    if not files:
        print("FAIL check_dashboards: no dashboard or rules file found")
    for path in files:
        reader = dashboard_exprs if path.suffix == ".json" else rules_exprs
        problems, count = [], 0
        try:
            for where, expr in reader(path):
                if where is None:
                    problems.append(expr)
                    continue
                count += 1
                problems += [f"{where}: {p}" for p in problems_of(expr, names, reasons)]
        except (ValueError, KeyError, TypeError, yaml.YAMLError) as error:
            problems.append(f"does not parse: {error}")
        rel = path.relative_to(ROOT)
        if problems:
            failed = True
            print(f"FAIL {rel}: " + "; ".join(problems))
        else:
            print(f"PASS {rel}: {count} expressions use only metrics tallyd exports")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
