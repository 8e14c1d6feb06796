#!/usr/bin/env bash
# cluster_log.sh — a 3-node cluster with every node in log mode
# (store.persist = log: the image on /dev/shm, the write-ahead log in the
# work directory; docs/store-layout.md, "Log mode on a cluster node"):
# reliable batches to nodes 1 and 2 acked with W = 2; node 3 killed -9
# under reliable load, its image deleted (what a reboot does to /dev/shm),
# restarted: it recovers from its start-up checkpoint + its log, and every
# acked increment is exact on every node. Then nodes 1 and 2 are stopped
# and node 3 loses its image again and starts alone: what it acked to its
# peers (their contributions, in its replica tables) must come back from
# its own log, exactly — checkpoints are spaced so that only the start-up
# checkpoint and the log's cluster records can hold them. Every wait is
# bounded. Prints PASS/FAIL lines and "N passed, N failed".
# Usage: cluster_log.sh BUILD_DIR   (root; hugepages reserved: 3 nodes)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-clog.XXXXXX)
image_dir=/dev/shm/tally-clog.$$
nodes=3
passed=0
failed=0
load_pid=
cleanup() {
  trap '' INT TERM HUP PIPE
  [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null
  cluster_down
  rm -rf "$work" "$image_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
mkdir -p "$image_dir"
tallyctl=$build/control/tallyctl
produce=$build/control/tally-produce
export TALLY_KEY=$CLUSTER_INGEST_KEY
ctl() { local i=$1; shift; "$tallyctl" -s "$work/sock$i" "$@"; }
match_on() { counts_match "$tallyctl" "$work/sock$1" "$2" "$3"; }
match_all() { match_on 1 "$@" && match_on 2 "$@" && match_on 3 "$@"; } # PREFIX EXPECT_JSON
produce_to() { # produce_to NODES PRODUCER INPUT OUT [OPTION...]
  local nodes=$1 producer=$2 input=$3 out=$4
  shift 4
  timeout 120 ip netns exec "$CLUSTER_PRODUCER_NS" "$produce" --nodes "$nodes" \
    --producer "$producer" --flush-every 10 --ack-timeout-ms 200 --timeout-ms 30000 "$@" \
    <"$input" >"$out" 2>&1
}
all_acked() { cat "$1"; grep -qx "failed 0 batches" "$1"; }
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }
cluster_records_logged() { # I: node I's log took cluster records since it started
  local n
  n=$(ctl "$1" stats | awk '$1 == "log_cluster_records" { print $2 }')
  echo "node $1: log_cluster_records ${n:-none}"
  [ "${n:-0}" -gt 0 ]
}
listed() { [ -n "$(ctl "$1" list "$2" 2>/dev/null)" ]; }
all_exact() { match_all a. "$work/a.json" && match_all b. "$work/b.json" && match_all c. "$work/c.json"; }
alone_exact() { match_on 3 a. "$work/a.json" && match_on 3 b. "$work/b.json" && match_on 3 c. "$work/c.json"; }

cluster_up "l$$" "$nodes" || { echo "FAIL namespaces created"; echo "0 passed, 1 failed"; exit 1; }
for i in $(seq "$nodes"); do
  # Checkpoints an hour apart: after the start-up one, only the log holds what changes.
  cluster_write_config "$i" "$work/n$i.ini" "$image_dir/store$i.pmem" "$work/sock$i" \
    "[store]" "persist = log" "log_dir = $work/log$i" "checkpoint_interval_ms = 3600000" \
    "log_segment_bytes = 65536" "log_group_bytes = 16384"
  mkdir -p "$work/log$i"
  start_node "$i"
done
for i in $(seq "$nodes"); do
  verdict "node $i (log mode, [cluster]) becomes ready" cluster_wait_ready "$build" "$i" "$work/sock$i" 60
done
seed=${TALLY_SEED:-$RANDOM}
echo "seed $seed"

# 1. Reliable batches to node 1 and to node 2, acked with W = 2, exact everywhere.
workload "$seed" a. 500 "$work/a.in" "$work/a.json"
workload "$((seed + 1))" b. 500 "$work/b.in" "$work/b.json"
produce_to 10.77.0.1:8126 201 "$work/a.in" "$work/a.out"
verdict "log mode: 50 batches via node 1 all acked" all_acked "$work/a.out"
produce_to 10.77.0.2:8126 202 "$work/b.in" "$work/b.out"
verdict "log mode: 50 batches via node 2 all acked" all_acked "$work/b.out"
ab_exact() { match_all a. "$work/a.json" && match_all b. "$work/b.json"; }
verdict "log mode: exact sums on all 3 nodes within 10 s" wait_for 10 ab_exact
verdict "log mode: node 3 logged cluster records (replica tables)" \
  cluster_records_logged 3

# 2. kill -9 node 3 under reliable load; a reboot empties /dev/shm; restart.
# One batch in flight at a time: the load lasts across the kill and the restart.
workload "$((seed + 2))" c. 6000 "$work/c.in" "$work/c.json"
produce_to 10.77.0.1:8126,10.77.0.2:8126 203 "$work/c.in" "$work/c.out" --inflight 1 &
load_pid=$!
wait_for 20 listed 3 c. >/dev/null
cluster_stop 3 KILL
rm -f "$image_dir/store3.pmem"
start_node 3
verdict "node 3 (image deleted) restarts and becomes ready" cluster_wait_ready "$build" 3 "$work/sock3" 60
wait "$load_pid"
load_pid=
verdict "the load through node 3's kill: every batch acked" all_acked "$work/c.out"
verdict "the load outlasted node 3's restart: it logged cluster records after its start-up checkpoint" \
  cluster_records_logged 3
verdict "node 3 recovered from checkpoint+log" grep -q "recovered from checkpoint+log:" "$work/n3.log"
verdict "every acked increment exact on all 3 nodes within 20 s" wait_for 20 all_exact
verdict "node 3 replayed records after the checkpoint" grep -q "recovered from checkpoint+log: [1-9]" "$work/n3.log"

# 3. Nodes 1 and 2 stop; node 3 loses its image again and starts alone. Its
# own contribution and its replicas of theirs (what it acked) come back from
# its start-up checkpoint + its log alone: no peer is there to restore from.
for i in 1 2; do cluster_stop "$i"; done
cluster_stop 3 KILL
rm -f "$image_dir/store3.pmem"
start_node 3
alone_up() { ctl 3 list a. >/dev/null 2>&1; }
verdict "node 3 alone (image deleted, no peer up) answers" wait_for 60 alone_up
verdict "node 3 alone: every acked increment of the cluster exact from its own log" alone_exact
verdict "node 3 alone: recovered from checkpoint+log twice, records replayed both times" \
  test "$(grep -c 'recovered from checkpoint+log: [1-9]' "$work/n3.log")" -eq 2
verdict "no tallyd exited on its own" cluster_running 3
if [ "$failed" -gt 0 ]; then
  for i in $(seq "$nodes"); do echo "--- node $i log (tail)"; tail -25 "$work/n$i.log"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
