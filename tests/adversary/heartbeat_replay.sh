#!/usr/bin/env bash
# tests/adversary/heartbeat_replay.sh — issue 14, M3, against a real 3-node
# cluster in network namespaces this script creates (scripts/cluster-netns.sh);
# run.sh runs it after its single-node attacks. An attacker on node 1's link
# to node 3 records one of node 3's heartbeats (attack.py hb-record), node 3
# is killed and started again (a new incarnation), a second heartbeat is
# recorded, node 3 is killed for good, and the two recordings are replayed to
# node 1 in turn from node 3's address for 4 s (attack.py hb-replay). Node 1
# must see node 3 down while the replays go on, refuse and count them
# (tally_cluster_rejected_total{kind="heartbeat",reason=~"old_incarnation|replayed"}),
# and never take one for a restart (tally_cluster_peer_restarts_total does not
# move: the link is not reset). Nodes 1 and 2 still run, writable (W = 2).
# Run under `flock /tmp/tally-netns.lock`; every wait is bounded; processes
# stopped by PID. Prints PASS/FAIL lines and "N passed, N failed".
# Usage: tests/adversary/heartbeat_replay.sh BUILD_DIR   (root; hugepages: 3 nodes)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-adversary-m3.XXXXXX)
nodes=3
passed=0
failed=0
cleanup() {
  trap '' INT TERM HUP PIPE
  cluster_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
attack=$root/tests/adversary/attack.py
port=$CLUSTER_REPLICATION_PORT
ctl() { local i=$1; shift; "$build/control/tallyctl" -s "$work/sock$i" "$@"; }
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }
peer_is() { # peer_is I J STATE: node I's view of peer J
  local got
  got=$(ctl "$1" cluster 2>/dev/null | awk -v peer="$2" '$1 == "peer" && $2 == peer {
    for (f = 3; f <= NF; f++) if ($f ~ /^state=/) print substr($f, 7) }')
  [ "$got" = "$3" ] || { echo "node $1 sees peer $2 ${got:-?}, want $3"; return 1; }
}
metric() { # metric I PATTERN: the value of node I's first /metrics line matching
  ip netns exec "${CLUSTER_NS[$1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk -v pattern="$2" 'index($0, pattern) == 1 { print $2; exit }'
}
refused() {
  echo $(( $(metric 1 'tally_cluster_rejected_total{kind="heartbeat",reason="old_incarnation"}') +
    $(metric 1 'tally_cluster_rejected_total{kind="heartbeat",reason="replayed"}') ))
}
record() { # record FILE: node 3's latest heartbeat as node 1's link carries it
  ip netns exec "${CLUSTER_NS[1]}" timeout 10 python3 "$attack" hb-record r3 3 "$port" "$1" \
    --seconds 1
}

cluster_up "m3$$" "$nodes" || { echo "FAIL namespaces created"; echo "0 passed, 1 failed"; exit 1; }
cluster_start_all "$build" "$work"
for i in $(seq "$nodes"); do
  verdict "node $i becomes ready" cluster_wait_ready "$build" "$i" "$work/sock$i" 60
done
verdict "node 1 sees node 3 up" wait_for 10 peer_is 1 3 up
verdict "M3: a heartbeat of node 3's first incarnation recorded" record "$work/hb1.hex"
cluster_stop 3 KILL
start_node 3
verdict "node 3 starts again on its store" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "node 1 sees node 3 up again" wait_for 10 peer_is 1 3 up
verdict "M3: a heartbeat of node 3's second incarnation recorded" record "$work/hb2.hex"
restarts_before=$(metric 1 tally_cluster_peer_restarts_total)
refused_before=$(refused)
cluster_stop 3 KILL
ip netns exec "${CLUSTER_NS[3]}" timeout 20 python3 "$attack" hb-replay 10.78.0.3 "$port" \
  10.78.0.1 "$work/hb1.hex" "$work/hb2.hex" --every-ms 20 --seconds 4 >"$work/replay.json" &
replay_pid=$!
sleep 3 # down is due about 0.7 s after the last real heartbeat; the replays go on meanwhile
verdict "M3: node 1 sees node 3 down while its two incarnations' heartbeats are replayed" \
  peer_is 1 3 down
wait "$replay_pid"
cat "$work/replay.json"
sent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sent"])' "$work/replay.json")
restarts_after=$(metric 1 tally_cluster_peer_restarts_total)
refused_after=$(refused)
echo "restarts seen by node 1: $restarts_before -> $restarts_after; heartbeats refused: $refused_before -> $refused_after of $sent replayed"
verdict "M3: no replay taken for a restart (the link is not reset)" \
  test "${restarts_after:-x}" = "${restarts_before:-y}"
verdict "M3: every replay refused and counted" test "$((refused_after - refused_before))" -ge "$sent"
verdict "node 1 still runs" cluster_running 1
verdict "node 2 still runs" cluster_running 2
writable() { ctl 1 cluster | awk 'NR == 1' | grep -q " read_only=0 "; }
verdict "node 1 writable with node 2 (W = 2)" wait_for 5 writable
if [ "$failed" -gt 0 ]; then
  for i in $(seq "$nodes"); do echo "--- node $i log (tail)"; tail -15 "$work/n$i.log"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
