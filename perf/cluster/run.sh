#!/usr/bin/env bash
# run.sh — the cluster benchmark (issue 12, item 6): quorum acks against the
# number of counters statsd touches. For each N it builds a fresh 3-node
# cluster in network namespaces (scripts/cluster-netns.sh: W = 2, idle
# back-off on), then, for --seconds, sends reliable batches of 16 pairs to
# node 1 at --batch-rate batches/s (tally-blast --mode binary: the quorum ack
# latency p50/p99/p999) while a second tally-blast sends statsd to node 1 over
# N distinct counters (--statsd-rate datagrams/s of 10 lines). It measures:
#   - ack latency and batches acked (tally-blast's summary);
#   - replication lag: node 1's tally_cluster_replication_lag_counters per
#     peer on /metrics, sampled every 0.5 s (the maximum seen), and the
#     convergence time after the statsd load ends: until every node's values
#     of the statsd counters equal node 1's (tests/chaos/check.py converged,
#     which itself takes a few tallyctl lists; bounded by --converge-s);
#   - bytes sent per replicated counter: node 1's TX bytes on its replication
#     veths (ip -s link: tallyd has no replication byte counter) from the
#     start of load to convergence, over (distinct counters x 2 peers);
#   - false suspicions: a peer seen up, then suspect or down, by any node
#     (tests/chaos/detection_probe.py suspicions, every 200 ms, from the start
#     of load for seconds + 12 s);
#   - with --restore, after the largest N: node 3 killed, its store deleted,
#     restarted, time until `tallyctl ready` (restore from its peers), per GiB
#     of node 1's store file.
# Prints one line per N and a markdown table; writes JSON to --json.
# A benchmark, not a test: it never fails on a figure.
#
# Usage: perf/cluster/run.sh BUILD_DIR [--counters "10 1000 10000 100000"]
#        [--seconds 5] [--batch-rate 1000] [--statsd-rate 10000]
#        [--idle-sleep-us 50] [--converge-s 60] [--restore] [--json FILE]
# Root; hugepages (scripts/hugepages 256); run it under
# flock /tmp/tally-netns.lock on a shared machine.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: run.sh BUILD_DIR [options]}
build=$(cd "$build" && pwd)
shift
counters_list="10 1000 10000 100000"
seconds=5
batch_rate=1000
statsd_rate=10000
idle_sleep_us=50
converge_s=60
restore=0
json=
while [ $# -gt 0 ]; do
  case $1 in
    --counters) counters_list=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --batch-rate) batch_rate=${2:?}; shift 2 ;;
    --statsd-rate) statsd_rate=${2:?}; shift 2 ;;
    --idle-sleep-us) idle_sleep_us=${2:?}; shift 2 ;;
    --converge-s) converge_s=${2:?}; shift 2 ;;
    --restore) restore=1; shift ;;
    --json) json=${2:?}; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
source "$root/scripts/cluster-netns.sh"
tallyctl=$build/control/tallyctl
blast=$build/perf/blast/tally-blast
nodes=3
work=$(mktemp -d /var/tmp/tally-clusterbench.XXXXXX)
results=$work/results.jsonl
: >"$results"
cleanup() {
  trap '' INT TERM HUP PIPE
  cluster_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
now_ms() { date +%s%3N; }
sockets() { local i out=""; for i in $(seq "$nodes"); do out="$out${out:+,}$work/sock$i"; done; echo "$out"; }
# tx_bytes: node 1's TX bytes on its replication veths r2 and r3, summed.
tx_bytes() {
  local total=0 dev b
  for dev in r2 r3; do
    b=$(ip -n "${CLUSTER_NS[1]}" -s -j link show "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])')
    total=$((total + b))
  done
  echo "$total"
}
# lag: the largest tally_cluster_replication_lag_counters node 1 exports.
lag() {
  cluster_exec 1 curl -s --max-time 2 http://127.0.0.1:9125/metrics 2>/dev/null |
    awk '/^tally_cluster_replication_lag_counters/ { if ($2 > m) m = $2 } END { print m + 0 }'
}

one_run() { # one_run N
  local n=$1 counters_max=4096 i t1 ok conv_ms tx0 tx1 lag_max distinct
  while [ "$counters_max" -lt $((n * 2)) ]; do counters_max=$((counters_max * 2)); done
  export CLUSTER_COUNTERS_MAX=$counters_max
  cluster_up "cb$$" "$nodes" || { echo "namespaces failed" >&2; return 1; }
  for i in $(seq "$nodes"); do
    rm -f "$work/store$i.pmem"
    : >"$work/n$i.log"
    cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i" \
      "[dataplane]" "idle_sleep_us = $idle_sleep_us"
    cluster_start "$build" "$i" "$work/n$i.ini" "$work/n$i.log"
  done
  for i in $(seq "$nodes"); do cluster_wait_ready "$build" "$i" "$work/sock$i" 120 || { echo "node $i not ready" >&2; tail -5 "$work/n$i.log" >&2; return 1; }; done
  for _ in $(seq 100); do
    ok=1
    for i in $(seq "$nodes"); do
      [ "$("$tallyctl" -s "$work/sock$i" cluster 2>/dev/null | grep -c '^peer .* state=up ')" = 2 ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  # False suspicions: a peer seen up, then suspect or down, on any node,
  # from the start of load to the end of the convergence wait.
  python3 "$root/tests/chaos/detection_probe.py" suspicions --node "1=$work/sock1" \
    --node "2=$work/sock2" --node "3=$work/sock3" --seconds "$((seconds + 12))" --interval-ms 200 \
    >"$work/suspicions.json" 2>&1 &
  local probe_pid=$!
  local load0
  load0=$(cut -d' ' -f1 /proc/loadavg)
  tx0=$(tx_bytes)
  cluster_producer "$blast" --mode statsd --target 10.77.0.1:8125 --counters "$n" --lines 10 \
    --rate "$statsd_rate" --duration "$seconds" --prefix "sd$n." --seed "$n" \
    --expect "$work/statsd.expect" >"$work/statsd.json" 2>"$work/statsd.err" &
  local statsd_pid=$!
  TALLY_KEY=$CLUSTER_INGEST_KEY cluster_producer "$blast" --mode binary --target 10.77.0.1:8126 \
    --counters 64 --lines 16 --rate "$batch_rate" --duration "$seconds" --prefix "rel$n." \
    --inflight 64 --timeout-ms 1000 --drain-s 10 --producers 1 --producer-base 7 \
    >"$work/binary.json" 2>"$work/binary.err" &
  local binary_pid=$!
  ( # the largest lag node 1 reports, every 0.5 s, until told to stop
    m=0
    while [ ! -e "$work/stop-lag" ]; do
      l=$(lag)
      [ "$l" -le "$m" ] || m=$l
      echo "$m" >"$work/lag-max"
      sleep 0.5
    done
  ) &
  local lag_pid=$!
  wait "$statsd_pid"
  t1=$(now_ms)
  # Convergence: from the end of the statsd load until every node holds node
  # 1's values of the statsd counters (the reliable sender may still be
  # draining its last acks meanwhile).
  conv_ms=-1
  local deadline=$((t1 + converge_s * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if python3 "$root/tests/chaos/check.py" converged --tallyctl "$tallyctl" --sockets "$(sockets)" \
      --prefixes "sd$n." >/dev/null 2>&1; then
      conv_ms=$(($(now_ms) - t1))
      break
    fi
    sleep 0.1
  done
  wait "$binary_pid"
  touch "$work/stop-lag"
  wait "$lag_pid"
  rm -f "$work/stop-lag"
  lag_max=$(cat "$work/lag-max" 2>/dev/null || echo 0)
  tx1=$(tx_bytes)
  wait "$probe_pid"
  distinct=$("$tallyctl" -s "$work/sock1" list "sd$n." 2>/dev/null | wc -l)
  local store_bytes restore_ms=-1
  store_bytes=$(stat -c %s "$work/store1.pmem")
  if [ "$restore" = 1 ] && [ "$n" = "${counters_list##* }" ]; then
    cluster_stop 3 KILL
    rm -f "$work/store3.pmem"
    local r0
    r0=$(now_ms)
    cluster_start "$build" 3 "$work/n3.ini" "$work/n3.log"
    cluster_wait_ready "$build" 3 "$work/sock3" 300 && restore_ms=$(($(now_ms) - r0))
  fi
  python3 - "$n" "$work/binary.json" "$work/statsd.json" "$lag_max" "$conv_ms" "$((tx1 - tx0))" \
    "$distinct" "$work/suspicions.json" "$load0" "$(cut -d' ' -f1 /proc/loadavg)" "$store_bytes" "$restore_ms" \
    "$counters_max" >>"$results" <<'EOF'
import json, sys
(n, bfile, sfile, lag_max, conv_ms, tx, distinct, susp, load0, load1, store, restore_ms,
 counters_max) = sys.argv[1:]
b = json.load(open(bfile))
s = json.load(open(sfile))
lat = b.get("latency_us", {})
distinct = int(distinct)
print(json.dumps({
    "counters": int(n), "counters_max": int(counters_max),
    "statsd_sent": s.get("sent"), "statsd_rate_achieved": round(s.get("sent", 0) / max(s.get("elapsed_s", 1), 1e-9)),
    "distinct_touched": distinct,
    "batches_sent": b.get("sent"), "batches_acked": b.get("acked"), "batches_unacked": b.get("unacked"),
    "resends": b.get("resent", b.get("resends")),
    "ack_p50_ms": lat.get("p50", 0) / 1000, "ack_p99_ms": lat.get("p99", 0) / 1000,
    "ack_p999_ms": lat.get("p999", 0) / 1000, "ack_max_ms": lat.get("max", 0) / 1000,
    "lag_max_counters": int(lag_max), "converge_ms": int(conv_ms),
    "replication_tx_bytes": int(tx),
    "bytes_per_counter_per_peer": round(int(tx) / (2 * distinct), 1) if distinct else None,
    "false_suspicions": (lambda d: d.get("suspect"))(json.load(open(susp))), "load_before": float(load0), "load_after": float(load1),
    "store_bytes": int(store), "restore_ms": int(restore_ms),
    "restore_s_per_gib": round(int(restore_ms) / 1000 / (int(store) / 2**30), 2) if int(restore_ms) >= 0 else None,
}))
EOF
  tail -1 "$results"
  cluster_down
}

bash "$root/scripts/hugepages" 256 >/dev/null
echo "cluster benchmark: N = $counters_list; $seconds s; $batch_rate batches/s of 16 pairs; statsd $statsd_rate datagrams/s x 10 lines; idle_sleep_us $idle_sleep_us; $(uptime)"
for n in $counters_list; do one_run "$n" || echo "N=$n: set-up failed" >&2; done
echo "after: $(uptime)"
[ -z "$json" ] || python3 -c 'import json,sys; json.dump([json.loads(l) for l in open(sys.argv[1])], open(sys.argv[2], "w"), indent=1)' "$results" "$json"
python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| N | statsd lines/s | distinct | acked / sent | ack p50 | p99 | p999 | max lag | converge | bytes/counter/peer | suspicions | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %s / %s | %.1f ms | %.1f ms | %.1f ms | %s | %s | %s | %s | %.1f-%.1f |" % (
        r["counters"], r["statsd_rate_achieved"] * 10, r["distinct_touched"], r["batches_acked"], r["batches_sent"],
        r["ack_p50_ms"], r["ack_p99_ms"], r["ack_p999_ms"], r["lag_max_counters"],
        ("%d ms" % r["converge_ms"]) if r["converge_ms"] >= 0 else "not within bound",
        r["bytes_per_counter_per_peer"], r["false_suspicions"], r["load_before"], r["load_after"]))
    if r["restore_ms"] >= 0:
        print("restore of node 3 (store deleted) after N=%s: %d ms, store %d bytes, %.2f s per GiB" % (
            r["counters"], r["restore_ms"], r["store_bytes"], r["restore_s_per_gib"]))
EOF
