#!/usr/bin/env bash
# membership.sh — runtime membership changes end to end, in the network
# namespaces this test creates (scripts/cluster-netns.sh, prefix tally-mNNN):
# nodes 1 and 2 start as a 2-node cluster; under statsd and reliable load,
# node 3 starts with a 3-node config and nodes 1 and 2 add it with
# `tallyctl cluster reload` (no restart: the load's counts stay exact and
# every reliable batch is acked); node 3 converges to the same values; a bad
# reload (node_id changed, a write quorum above the node count) is refused
# with one line naming the key and changes nothing (generation, metrics);
# node 3, after counting statsd of its own, is removed by a reload (SIGHUP on
# node 2) and stopped: `tallyctl cluster` shows it retired, its counts stay
# in every read, reliable writes go on with the two members; re-adding it
# resumes on its replica table; node 3 removed again and a new node 4 added
# holds exactly nodes 1 and 2's counts and none of node 3's (docs/cluster.md,
# "Membership": replication carries each node's own contribution only),
# while nodes 1 and 2 still hold node 3's. Every wait is bounded (wait_for),
# no fixed sleeps. Prints PASS/FAIL lines and "N passed, N failed".
# Usage: membership.sh BUILD_DIR   (root; hugepages reserved: 3 nodes; 4
# namespaces, at most 3 tallyd at a time)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-membership.XXXXXX)
nodes=4
passed=0
failed=0
load_pids=()
cleanup() {
  trap '' INT TERM HUP PIPE
  local pid
  for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  cluster_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
tools=$root/tests/tools
tallyctl=$build/control/tallyctl
produce=$build/control/tally-produce
key=$CLUSTER_INGEST_KEY
export TALLY_KEY=$key # tally-produce takes its key from here, never from its command line

ctl() { local i=$1; shift; "$tallyctl" -s "$work/sock$i" "$@"; }
field() { # field I KIND ID KEY: a field of node I's `tallyctl cluster` line "KIND ID ..."
  ctl "$1" cluster 2>/dev/null | awk -v kind="$2" -v id="$3" -v key="$4" '$1 == kind && $2 == id {
    for (f = 3; f <= NF; f++) if (index($f, key "=") == 1) print substr($f, length(key) + 2) }'
}
is() { # is I KIND ID KEY VALUE
  local got
  got=$(field "$1" "$2" "$3" "$4")
  [ "$got" = "$5" ] || { echo "node $1: $2 $3 $4=$got, want $5"; return 1; }
}
metric() { # metric I NAME: its value in node I's /metrics
  ip netns exec "${CLUSTER_NS[$1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk -v name="$2" '$1 == name { print $2 }'
}
metric_is() { local got; got=$(metric "$1" "$2"); [ "$got" = "$3" ] || { echo "$2=$got, want $3"; return 1; }; }
write_config() { # write_config I MEMBERS [extra lines]
  local i=$1
  CLUSTER_MEMBERS=$2
  shift 2
  cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i" "$@"
  CLUSTER_MEMBERS=
}
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }
sums() { # sums I...: the totals of every expectation file, exact on each node
  local i f
  for i in "$@"; do
    for f in "$work"/*.json; do
      case "$f" in *report.json) continue ;; esac
      counts_match "$tallyctl" "$work/sock$i" "$(basename "$f" .json)." "$f" | sed "s/^/node $i: /"
      [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    done
  done
}
members_up() { # members_up I PEER...: node I has exactly these peers, all up, and is writable
  local i=$1 j
  shift
  is "$i" self "$i" read_only 0 || return 1
  for j in "$@"; do is "$i" peer "$j" state up || return 1; done
  [ "$(ctl "$i" cluster | grep -c '^peer [0-9]* state=\(up\|down\|suspect\|unknown\)')" -eq $# ]
}
statsd_to() { # statsd_to NODE PREFIX DATAGRAMS RATE: exact expectation in PREFIX.json
  cluster_producer timeout 60 python3 "$tools/statsd_send.py" --target "10.77.0.$1:8125" \
    --seed "$seed" --datagrams "$3" --lines 10 --counters 10 --prefix "$2." --rate "$4" \
    --positive --expect "$work/$2.json"
}
workload() { # workload LINES INPUT EXPECT_JSON PREFIX: reliable deltas and their totals
  python3 - "$seed" "$@" <<'PY'
import json, random, sys
seed, lines, inp, expect, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rng = random.Random(seed)
totals = {}
with open(inp, "w") as f:
    for _ in range(lines):
        name = "%s.%d" % (prefix, rng.randrange(10))
        delta = rng.randint(1, 1000)
        totals[name] = totals.get(name, 0) + delta
        f.write("%s %d\n" % (name, delta))
json.dump({"totals": totals}, open(expect, "w"))
PY
}
produce_ok() { # produce_ok NODES PRODUCER INPUT OUT: every batch acked
  timeout 60 ip netns exec "$CLUSTER_PRODUCER_NS" "$produce" --nodes "$1" \
    --producer "$2" --flush-every 10 --ack-timeout-ms 200 --timeout-ms 10000 <"$3" >"$4" 2>&1
  local status=$?
  tail -2 "$4"
  [ "$status" -eq 0 ] && grep -qx "failed 0 batches" "$4"
}

cluster_up "m$$" "$nodes" || { echo "FAIL namespaces created"; echo "0 passed, 1 failed"; exit 1; }
seed=${TALLY_SEED:-$RANDOM}
echo "seed $seed"

# 1. A 2-node cluster (W = 2).
for i in 1 2; do write_config "$i" "1 2"; start_node "$i"; done
for i in 1 2; do verdict "node $i ready (2-node cluster)" cluster_wait_ready "$build" "$i" "$work/sock$i" 60; done
verdict "nodes 1 and 2: peers up, writable within 5 s" wait_for 5 eval 'members_up 1 2 && members_up 2 1'
verdict "node 1: members=2 generation=1" eval 'is 1 self 1 members 2 && is 1 self 1 generation 1'

# 2. Under load, node 3 starts (3-node config) and nodes 1 and 2 add it by reload.
workload 3000 "$work/rel.in" "$work/rel.json" rel
statsd_to 1 sd 3000 1000 >/dev/null &
load_pids+=($!)
produce_ok 10.77.0.1:8126,10.77.0.2:8126 301 "$work/rel.in" "$work/rel.out" >"$work/produce.log" &
load_pids+=($!)
for i in 1 2 3; do write_config "$i" "1 2 3"; done
start_node 3
for i in 1 2; do
  verdict "node $i: tallyctl cluster reload adds node 3 (generation 2)" \
    eval "ctl $i cluster reload | tee /dev/stderr | grep -q 'generation 2'"
done
wait "${load_pids[0]}"
verdict "statsd to node 1 during the reload: sent" test $? -eq 0
wait "${load_pids[1]}"
status=$?
cat "$work/produce.log"
verdict "reliable batches via nodes 1 and 2 during the reload: every one acked" test "$status" -eq 0
load_pids=()
verdict "node 3 ready (restored from its new peers)" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "every node sees the other two up, writable, within 10 s" \
  wait_for 10 eval 'members_up 1 2 3 && members_up 2 1 3 && members_up 3 1 2'
verdict "counts exact on nodes 1 and 2 (nothing lost or doubled by the reload)" wait_for 10 sums 1 2
verdict "node 3 converges to the same exact counts within 15 s" wait_for 15 sums 3
verdict "node 1: members=3 generation=2, membership_reloads_total 1" \
  eval 'is 1 self 1 members 3 && is 1 self 1 generation 2 && metric_is 1 tally_cluster_membership_reloads_total 1'

# 3. Bad reloads are refused with one line naming the key; nothing changes.
cp "$work/n1.ini" "$work/n1.good"
sed -i 's/^node_id = 1$/node_id = 2/' "$work/n1.ini"
ctl 1 cluster reload >"$work/bad1.out" 2>&1
bad_status=$?
cat "$work/bad1.out"
verdict "reload with node_id changed: refused (exit 3), naming cluster.node_id" \
  eval "[ $bad_status -eq 3 ] && grep -q 'cluster reload refused: cluster.node_id: 2 in the file, 1 running' '$work/bad1.out'"
CLUSTER_WRITE_QUORUM=4 write_config 1 "1 2 3"
ctl 1 reload >"$work/bad2.out" 2>&1
bad_status=$?
cat "$work/bad2.out"
verdict "reload with write_quorum 4 of 3 nodes: refused, naming cluster.write_quorum" \
  eval "[ $bad_status -eq 3 ] && [ \$(wc -l <'$work/bad2.out') -eq 1 ] && grep -q 'cluster.write_quorum' '$work/bad2.out'"
verdict "after the refusals: generation 2, 3 members, peers up, refused_total 2" \
  eval 'is 1 self 1 generation 2 && is 1 self 1 members 3 && members_up 1 2 3 && metric_is 1 tally_cluster_membership_refused_total 2'
cp "$work/n1.good" "$work/n1.ini"
verdict "the same file again: unchanged, no new generation" \
  eval "ctl 1 cluster reload | grep -q 'membership unchanged (generation 2)'"

# 4. Node 3 counts statsd of its own; then it is removed (reload on 1, SIGHUP on 2) and stopped.
statsd_to 3 own3 300 2000 >/dev/null
verdict "node 3's own statsd reaches nodes 1 and 2 within 10 s" wait_for 10 sums 1 2 3
for i in 1 2; do write_config "$i" "1 2"; done
verdict "node 1: cluster reload removes node 3" eval "ctl 1 cluster reload | grep -q 'generation 3'"
kill -HUP "${CLUSTER_PID[2]}"
verdict "node 2: SIGHUP removes node 3 (generation 3 within 5 s)" wait_for 5 is 2 self 2 generation 3
cluster_stop 3
for i in 1 2; do
  verdict "node $i: tallyctl cluster shows node 3 retired, one member peer up" \
    eval "is $i peer 3 state retired && members_up $i $((3 - i))"
done
verdict "node 1: /metrics tally_cluster_retired_peers 1, tally_cluster_members 2" \
  eval 'metric_is 1 tally_cluster_retired_peers 1 && metric_is 1 tally_cluster_members 2'
verdict "reads on nodes 1 and 2 still sum node 3's counts exactly" sums 1 2
workload 200 "$work/after.in" "$work/after.json" after
verdict "reliable writes after the removal: acked by the two members (W = 2)" \
  produce_ok 10.77.0.1:8126 302 "$work/after.in" "$work/after.out"
verdict "nodes 1 and 2 exact after the removal within 10 s" wait_for 10 sums 1 2
verdict "get --quorum on node 1: 2 of 2 nodes answer (exit 0)" \
  eval "ctl 1 get --quorum after.0 >/dev/null"

# 5. Node 3 re-added: it resumes on its replica table (the same counts, nothing twice).
for i in 1 2; do write_config "$i" "1 2 3"; done
start_node 3
for i in 1 2; do
  verdict "node $i: node 3 re-added (generation 4)" eval "ctl $i cluster reload | grep -q 'generation 4'"
done
verdict "node 3 ready again" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "all three up and exact again within 15 s" \
  wait_for 15 eval 'members_up 1 2 3 && members_up 3 1 2 && sums 1 2 3'

# 6. A node added after a removal: node 3 removed again and stopped, then node 4
# (a new store) added. Nodes 1 and 2 send node 4 their own contributions; node 3
# sends nothing any more, so node 4 never gets node 3's: it holds sd, rel and
# after exactly and nothing of own3 (counted by node 3 alone, section 4), with no
# table for node 3; nodes 1 and 2 still hold all four exactly.
merge_expect() { # merge_expect OUT PREFIX...: one expectation of several prefixes' totals
  python3 - "$work" "$@" <<'PY'
import json, sys
work, out, prefixes = sys.argv[1], sys.argv[2], sys.argv[3:]
totals = {}
for prefix in prefixes:
    totals.update(json.load(open("%s/%s.json" % (work, prefix)))["totals"])
json.dump({"totals": totals}, open(out, "w"))
PY
}
merge_expect "$work/all_but_own3.expect" sd rel after
merge_expect "$work/all.expect" sd rel after own3
holds() { counts_match "$tallyctl" "$work/sock$1" "" "$2"; } # holds I EXPECT: exactly these counters
for i in 1 2; do write_config "$i" "1 2"; done
for i in 1 2; do
  verdict "node $i: node 3 removed again (generation 5)" eval "ctl $i cluster reload | grep -q 'generation 5'"
done
cluster_stop 3
for i in 1 2 4; do write_config "$i" "1 2 4"; done
start_node 4
for i in 1 2; do
  verdict "node $i: node 4 added after node 3's removal (generation 6)" \
    eval "ctl $i cluster reload | grep -q 'generation 6'"
done
verdict "node 4 ready (restored from nodes 1 and 2)" cluster_wait_ready "$build" 4 "$work/sock4" 60
verdict "nodes 1, 2 and 4 see each other up, writable, within 10 s" \
  wait_for 10 eval 'members_up 1 2 4 && members_up 2 1 4 && members_up 4 1 2'
verdict "node 4 holds nodes 1 and 2's counts exactly, and no counter of node 3's, within 15 s" \
  wait_for 15 holds 4 "$work/all_but_own3.expect"
verdict "node 4: list own3. is empty (exit 0, no line)" \
  eval "out=\$(ctl 4 list own3.) && [ -z \"\$out\" ]"
verdict "node 4: no peer 3 line in tallyctl cluster (no table bound for node 3)" \
  eval "ctl 4 cluster >'$work/c4.out' && ! grep -q '^peer 3 ' '$work/c4.out' && grep -q '^peer 1 ' '$work/c4.out'"
for i in 1 2; do
  verdict "node $i still holds node 3's counts, and every other, exactly" holds "$i" "$work/all.expect"
done
verdict "no node crashed" eval 'cluster_running 1 && cluster_running 2 && cluster_running 4'
if [ "$failed" -gt 0 ]; then
  for i in 1 2 3 4; do
    [ -f "$work/n$i.log" ] && { echo "--- node $i log (tail)"; tail -20 "$work/n$i.log"; }
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
