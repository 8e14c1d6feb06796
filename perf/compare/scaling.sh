#!/usr/bin/env bash
# scaling.sh — tallyd's scaling curves in one command: builds tallyd and
# tally-blast, reserves hugepages, creates the test namespaces
# (scripts/netns.sh) and runs perf/compare/scaling.py: throughput against
# dataplane lcores / RX queues, distinct counters, persistence mode and
# datagram size, plus a net_null probe. Prints a table, writes JSON and
# Markdown.
#
# Usage: perf/compare/scaling.sh [--quick] [--build DIR] [--out DIR]
#          [--lcores "1 2 4"] [--counters "1000 10000 100000 1000000"] [--big]
#          [--curves lcores,counters,persistence,size,null]
#   --lcores  dataplane lcore counts; each gets as many af_packet queue
#             pairs, and the EAL core list is built from it (lcores beyond
#             the host's CPUs are mapped onto them round robin).
#   --big     adds a 10 M counter point (a 2 GiB store file).
# Root. tallyd is stopped by PID and the namespaces removed on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
out=/var/tmp/tally-compare-results
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick|--big) extra+=("$1"); shift ;;
    --build) build=$(realpath -m "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --lcores|--counters|--curves) extra+=("$1" "$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "scaling.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "scaling.sh: needs root (namespaces, hugepages)" >&2; exit 2; }

if [ ! -f "$build/build.ninja" ]; then meson setup "$build" >&2; fi
ninja -C "$build" control/tallyd control/tallyctl perf/blast/tally-blast >&2
bash "$root/scripts/hugepages" 256

work=$(mktemp -d /var/tmp/tally-scaling.XXXXXX)
mkdir -p "$out"
source "$root/scripts/netns.sh"
scaling_pid=
cleanup() {
  if [ -n "$scaling_pid" ] && kill -0 "$scaling_pid" 2>/dev/null; then
    kill -TERM "$scaling_pid" 2>/dev/null || true
    wait "$scaling_pid" 2>/dev/null || true
  fi
  tally_netns_down
  # Keep the servers' logs beside the results (a server that died says why).
  mkdir -p "$out/logs-$stamp"
  find "$work" -name '*.log' -exec cp --backup=numbered {} "$out/logs-$stamp/" \; 2>/dev/null || true
  rm -rf "$work"
}
stamp=$(date +%Y%m%d-%H%M%S)
trap cleanup EXIT
trap 'exit 130' INT TERM
tally_netns_up "s$$"

python3 "$root/perf/compare/scaling.py" --build "$build" --work "$work" \
  --node-ns "$TALLY_NODE_NS" --peer-ns "$TALLY_PEER_NS" \
  --json "$out/scaling-$stamp.json" --markdown "$out/scaling-$stamp.md" "${extra[@]}" &
scaling_pid=$!
status=0
wait "$scaling_pid" || status=$?
scaling_pid=
echo "results: $out/scaling-$stamp.json $out/scaling-$stamp.md" >&2
exit "$status"
