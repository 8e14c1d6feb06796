#!/usr/bin/env bash
# perf/cluster_suspicions.sh — false suspicions under replication load (issue
# 12, item 3): a benchmark, not a test (no assertion on the figures).
#
# 3 nodes in network namespaces this script creates (scripts/cluster-netns.sh),
# every node alive the whole time. For each phase: restart the nodes on fresh
# stores (fresh detectors), wait until every peer is up, then for --seconds:
#   - tally-blast sends statsd to node 1 over --counters distinct names
#     (uniform, --rate datagrams/s of --lines lines), or nothing (phase idle);
#   - tests/chaos/detection_probe.py samples every node's `tallyctl cluster`
#     every 50 ms and counts episodes: a (node, peer) pair seen up, then
#     suspect or down, until up again. Every node lives, so every episode is
#     a false suspicion.
# Prints one JSON line per phase (build, phase, counters, rate, blast's own
# result, suspect and down episodes, samples not up) and a table at the end.
# --compare OTHER_BUILD runs every phase with each build in turn (BUILD_DIR
# first), in one run on the same namespaces: a before/after side by side.
# Store: counters_max = 160000 per table (fills to 3/4: 120k names), about
# 450 MB of store files per node under /tmp; --counters-max for more.
#
# Usage: perf/cluster_suspicions.sh BUILD_DIR [--compare BUILD_DIR2] [--seconds S]
#          [--counters N] [--counters-max M] [--rate R] [--lines L] [--phases "idle load"]
# Root; hugepages reserved; run under `flock /tmp/tally-netns.lock`, alone on
# the machine (CPU contention is what it measures). Every wait is bounded.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
builds=$(cd "${1:?usage: cluster_suspicions.sh BUILD_DIR [options]}" && pwd)
shift
seconds=20
counters=100000
rate=5000
lines=20
phases="idle load"
counters_max=160000
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?}; shift 2 ;;
    --counters) counters=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --lines) lines=${2:?}; shift 2 ;;
    --phases) phases=${2:?}; shift 2 ;;
    --compare) builds="$builds $(cd "${2:?}" && pwd)"; shift 2 ;;
    --counters-max) counters_max=${2:?}; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done
source "$root/scripts/cluster-netns.sh"
work=$(mktemp -d /tmp/tally-suspicions.XXXXXX)
nodes=3
cleanup() {
  trap '' INT TERM HUP PIPE
  cluster_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
probe="python3 $root/tests/chaos/detection_probe.py"
build=${builds%% *}
ctl() { local i=$1; shift; "$build/control/tallyctl" -s "$work/sock$i" "$@"; }
all_up() {
  local i
  for i in $(seq "$nodes"); do
    [ "$(ctl "$i" cluster 2>/dev/null | grep -c '^peer .* state=up ')" = $((nodes - 1)) ] || return 1
  done
}
wait_up() { for _ in $(seq 300); do all_up && return 0; sleep 0.1; done; return 1; }

cluster_up "s$$" "$nodes" || { echo "namespaces not created" >&2; exit 1; }
node_args=()
for i in $(seq "$nodes"); do node_args+=(--node "$i=$work/sock$i"); done
: >"$work/results.jsonl"
for phase in $phases; do
 for build in $builds; do
  for i in $(seq "$nodes"); do cluster_stop "$i" KILL; rm -f "$work/store$i.pmem"; done
  for i in $(seq "$nodes"); do
    cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i"
    sed -i "s/^counters_max = .*/counters_max = $counters_max/" "$work/n$i.ini"
    cluster_start "$build" "$i" "$work/n$i.ini" "$work/n$i.log"
  done
  for i in $(seq "$nodes"); do
    cluster_wait_ready "$build" "$i" "$work/sock$i" 90 || { echo "node $i not ready" >&2; exit 1; }
  done
  wait_up || { echo "peers not all up" >&2; exit 1; }
  sleep 2 # warm-up: the detectors learn the intervals
  blast_pid=
  if [ "$phase" = load ]; then
    cluster_producer "$build/perf/blast/tally-blast" --target 10.77.0.1:8125 --mode statsd \
      --counters "$counters" --lines "$lines" --rate "$rate" --duration "$seconds" \
      >"$work/blast.json" 2>"$work/blast.err" &
    blast_pid=$!
  else
    echo '{}' >"$work/blast.json"
  fi
  $probe suspicions "${node_args[@]}" --seconds "$seconds" >"$work/probe.json"
  [ -n "$blast_pid" ] && wait "$blast_pid"
  # Did the load reach the peers? Rounds of node 1's contribution node 2 applied,
  # and node 1's counters node 2 had not acked at the end.
  scans=$(ip netns exec "${CLUSTER_NS[2]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk '/^tally_cluster_rounds_applied_total / { print $2 }')
  lag=$(ip netns exec "${CLUSTER_NS[1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk '/^tally_cluster_replication_lag_counters\{peer="2"\}/ { print $2 }')
  python3 - "$phase" "$counters" "$rate" "$lines" "$work/blast.json" "$work/probe.json" "${scans:-0}" "${lag:-0}" \
    "$build" >>"$work/results.jsonl" <<'PY'
import json, sys
phase, counters, rate, lines, blast, probe, applied, lag, build = sys.argv[1:10]
b = json.load(open(blast)) if open(blast).read().strip() else {}
p = json.load(open(probe))
build = "/".join(build.rstrip("/").split("/")[-2:])
print(json.dumps({"build": build, "phase": phase, "counters": int(counters) if phase == "load" else 0,
                  "rate": int(rate) if phase == "load" else 0, "lines": int(lines),
                  "seconds": p["seconds"], "samples": p["samples"], "suspect": p["suspect"],
                  "down": p["down"], "not_up_samples": p["not_up_samples"],
                  "max_age_ms": p.get("max_age_ms", 0), "max_phi": p.get("max_phi", 0),
                  "per_node": p["per_node"], "blast": b, "node2_rounds_applied": int(float(applied)),
                  "node1_lag_to_node2_at_end": int(float(lag))}))
PY
  tail -1 "$work/results.jsonl"
 done
done
echo "| build | phase | statsd counters | datagrams/s x lines | seconds | samples | false suspect episodes | false down episodes | samples not up | max heartbeat age ms | max phi | rounds node 2 applied | lag at end |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("| %s | %s | %d | %d x %d | %s | %d | %d | %d | %d | %d | %.2f | %d | %d |" % (r["build"], r["phase"], r["counters"],
          r["rate"], r["lines"], r["seconds"], r["samples"], r["suspect"], r["down"],
          r["not_up_samples"], r["max_age_ms"], r["max_phi"], r["node2_rounds_applied"], r["node1_lag_to_node2_at_end"]))
' "$work/results.jsonl"
