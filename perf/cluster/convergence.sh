#!/usr/bin/env bash
# convergence.sh — replication convergence at scale (issue 12, item 2): how
# long after a statsd load ends both peers hold every counter it changed.
# For each build (BUILD_DIR, and with --compare a second one, run in turn in
# the same invocation: side by side) and each N of --counters, it builds a
# fresh 3-node cluster in network namespaces (scripts/cluster-netns.sh: W = 2,
# store.counters_max the power of two >= N, so each lcore shard holds its
# half), sends statsd to node 1 over N names (tally-blast, uniform draws,
# --rate datagrams/s of 10 lines for --seconds), and from the moment the
# sender exits polls node 1's /metrics every 50 ms: converged when
# tally_cluster_replication_lag_counters is 0 for both peers on two samples
# in a row (the time of the first). Then it counts what node 1 holds and
# what node 2 and node 3 hold of the prefix (tallyctl list: node 1's
# contribution reaches them through replication only), so a figure is only
# reported with every counter there. A benchmark, not a test.
#
# Usage: perf/cluster/convergence.sh BUILD_DIR [--compare BUILD_DIR]
#        [--counters "100000 1000000"] [--seconds 5] [--rate 40000] [--bound-s 60]
#        [--hugepages 1024]
# Root; reserves --hugepages 2 MiB pages (each node's snapshot index lives in
# them: about 250 bytes per counter of 2 x counters_max, so about 1,000 pages
# for three nodes at 1M) and puts the reservation back as it was at the end; run it under
# flock /tmp/tally-netns.lock.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
builds=("$(cd "${1:?usage: convergence.sh BUILD_DIR [options]}" && pwd)")
shift
# Defaults: the two sizes of the issue, 5 s of load asked at 400k lines/s, a 60-s bound.
counters_list="100000 1000000" seconds=5 rate=40000 bound_s=60 hugepages=1024
while [ $# -gt 0 ]; do
  case $1 in
    --compare) builds+=("$(cd "${2:?}" && pwd)"); shift 2 ;;
    --counters) counters_list=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --bound-s) bound_s=${2:?}; shift 2 ;;
    --hugepages) hugepages=${2:?}; shift 2 ;;
    *) echo "convergence.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
source "$root/scripts/cluster-netns.sh"
nodes=3
work=$(mktemp -d /var/tmp/tally-convergence.XXXXXX)
pages_file=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
pages_before=$(cat "$pages_file")
trap 'trap "" INT TERM HUP PIPE; cluster_down; rm -rf "$work"; echo "$pages_before" >"$pages_file"' EXIT
trap 'exit 130' INT TERM HUP PIPE
now_ms() { date +%s%3N; }
# lag_max: the largest replication lag node 1 reports over its peers (-1: no answer).
lag_max() {
  cluster_exec 1 curl -s --max-time 2 http://127.0.0.1:9125/metrics 2>/dev/null |
    awk 'BEGIN { m = -1 } /^tally_cluster_replication_lag_counters/ { if ($2 > m) m = $2 } END { print m }'
}

one_run() { # one_run BUILD N
  local build=$1 n=$2 counters_max=4096 i t1 conv_ms=-1 zero_at=0 held1 held2 held3
  local tallyctl=$build/control/tallyctl blast=$build/perf/blast/tally-blast
  while [ "$counters_max" -lt "$n" ]; do counters_max=$((counters_max * 2)); done
  export CLUSTER_COUNTERS_MAX=$counters_max
  cluster_up "cv$$" "$nodes" || { echo "namespaces failed" >&2; return 1; }
  for i in $(seq "$nodes"); do
    rm -f "$work/store$i.pmem"
    : >"$work/n$i.log"
    cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i"
    cluster_start "$build" "$i" "$work/n$i.ini" "$work/n$i.log"
  done
  for i in $(seq "$nodes"); do
    cluster_wait_ready "$build" "$i" "$work/sock$i" 180 ||
      { echo "node $i not ready" >&2; tail -5 "$work/n$i.log" >&2; cluster_down; return 1; }
  done
  sleep 2
  cluster_producer "$blast" --mode statsd --target 10.77.0.1:8125 --counters "$n" --lines 10 \
    --rate "$rate" --duration "$seconds" --prefix "cv$n." --seed "$n" >"$work/statsd.json" \
    2>"$work/statsd.err"
  t1=$(now_ms)
  local deadline=$((t1 + bound_s * 1000)) l
  while [ "$(now_ms)" -lt "$deadline" ]; do
    local t=$(now_ms)
    l=$(lag_max)
    if [ "$l" = 0 ]; then
      if [ "$zero_at" != 0 ]; then conv_ms=$((zero_at - t1)); break; fi
      zero_at=$t
    else
      zero_at=0
    fi
    sleep 0.05
  done
  held1=$("$tallyctl" -s "$work/sock1" list "cv$n." 2>/dev/null | wc -l)
  held2=$("$tallyctl" -s "$work/sock2" list "cv$n." 2>/dev/null | wc -l)
  held3=$("$tallyctl" -s "$work/sock3" list "cv$n." 2>/dev/null | wc -l)
  local sent
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("sent", 0))' "$work/statsd.json" 2>/dev/null || echo 0)
  echo "$build N=$n datagrams=$sent changed=$held1 node2=$held2 node3=$held3 converge_ms=$conv_ms" >&2
  printf '| %s | %s | %s | %s / %s | %s |\n' "$(basename "$(dirname "$build")")/$(basename "$build")" \
    "$n" "$held1" "$held2" "$held3" \
    "$([ "$conv_ms" -ge 0 ] && [ "$held2" = "$held1" ] && [ "$held3" = "$held1" ] && echo "$conv_ms ms" || echo "not within ${bound_s} s ($conv_ms)")" \
    >>"$work/table"
  cluster_down
}

bash "$root/scripts/hugepages" "$hugepages" >/dev/null
echo "convergence: N = $counters_list; statsd $rate datagrams/s x 10 lines for $seconds s; $(uptime)"
: >"$work/table"
for n in $counters_list; do
  for build in "${builds[@]}"; do one_run "$build" "$n" || echo "N=$n $build: set-up failed" >&2; done
done
echo "after: $(uptime)"
echo "| build | N (name space) | changed (node 1) | held by node 2 / node 3 | converged after end of load |"
echo "|---|---|---|---|---|"
cat "$work/table"
