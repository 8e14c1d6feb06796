#!/usr/bin/env bash
# run.sh — the end-to-end comparison in one command: installs the peers
# (Debian: redis-server, collectd-core; npm: Etsy statsd into a private
# prefix), builds tallyd and tally-blast, reserves hugepages, creates the
# test namespaces (scripts/netns.sh), and runs perf/compare/compare.py:
# the same workload against tallyd (statsd and reliable binary, over the
# veth pair) and each peer (on 127.0.0.1, private ports and directories),
# one at a time. Prints the table and writes JSON and Markdown.
#
# Usage: perf/compare/run.sh [--quick] [--build DIR] [--out DIR] [--systems a,b]
#                            [--counters N] [--lines L] [--seed N]
#                            [--transport af_packet|af_xdp]
#   --quick   3 steps of 2 s per system (about 2-3 minutes in all);
#             default 6 steps of 4 s (about 10 minutes at most).
#   --transport tallyd's DPDK port on the veth: net_af_packet (default) or
#             net_af_xdp (perf/compare/transport.sh measures both side by side).
# Root (namespaces, hugepages, apt). Everything it starts is stopped by PID
# and the namespaces are removed on exit, also on Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
out=/var/tmp/tally-compare-results
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) extra+=(--quick); shift ;;
    --build) build=$(realpath -m "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --systems|--counters|--lines|--seed|--budget-s|--transport) extra+=("$1" "$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (namespaces, hugepages, apt)" >&2; exit 2; }

peers=/var/tmp/tally-peers   # npm prefix, kept between runs
install_peers() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v collectd >/dev/null || missing+=(collectd-core)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    # The packaged redis-server and collectd services must not start: only the
    # private instances this script runs may. A policy-rc.d that denies starts
    # does that (Debian's own mechanism); ours is removed right after.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      own_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || status=$?
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$status" = 0 ] || { echo "run.sh: apt-get install failed" >&2; exit 1; }
  fi
  if [ ! -f "$peers/node_modules/statsd/stats.js" ]; then
    echo "run.sh: npm install statsd into $peers" >&2
    mkdir -p "$peers"
    npm install --prefix "$peers" --no-audit --no-fund --ignore-scripts statsd@0.9.0 >&2
  fi
}
install_peers

source "$root/perf/compare/harness.sh"
harness_run compare c "$root/perf/compare/compare.py" \
  --statsd-dir "$peers/node_modules/statsd" "${extra[@]}"
