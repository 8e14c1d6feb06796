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

source "$root/perf/compare/harness.sh"
harness_run scaling s "$root/perf/compare/scaling.py" "${extra[@]}"
