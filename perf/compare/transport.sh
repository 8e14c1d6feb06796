#!/usr/bin/env bash
# transport.sh — tallyd's statsd intake over DPDK net_af_packet against
# net_af_xdp on the same veth pair, in one run (perf/compare/transport.py):
# builds tallyd and tally-blast, reserves hugepages, creates the test
# namespaces (scripts/netns.sh), alternates the variants round by round over
# the same rate steps, writes JSON and Markdown.
#
# Usage: perf/compare/transport.sh [--build DIR] [--out DIR]
#          [--variants af_packet,af_xdp,af_packet:framecnt=4096+blocksz=8192]
#          [--rates 60000,100000,150000,0] [--rounds 2] [--step-s 2]
#          [--counters N] [--lines L]
# Root (namespaces, hugepages, the bpf syscall for af_xdp). af_xdp locks its
# UMEM, so the locked-memory limit is raised for the run where allowed. tallyd is stopped by
# PID and the namespaces removed on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
out=/var/tmp/tally-compare-results
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(realpath -m "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --variants|--rates|--rounds|--step-s|--counters|--lines|--seed) extra+=("$1" "$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "transport.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "transport.sh: needs root (namespaces, hugepages, bpf)" >&2; exit 2; }
# Best effort: the UMEM is charged to RLIMIT_MEMLOCK only without CAP_IPC_LOCK.
ulimit -l unlimited 2>/dev/null || echo "transport.sh: locked-memory limit stays $(ulimit -l) KiB" >&2

source "$root/perf/compare/harness.sh"
harness_run transport t "$root/perf/compare/transport.py" "${extra[@]}"
