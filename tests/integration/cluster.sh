#!/usr/bin/env bash
# cluster.sh — a 3-node cluster end to end in the network namespaces this test
# creates (scripts/cluster-netns.sh: a bridge for the dataplane, one veth per
# pair of nodes for replication): every node ready and every peer up;
# statsd sent to node 1 and reliable batches sent to node 2 read back with
# the exact totals from all three nodes; kill -9 of node 3 with batches still
# acked (W = 2), its restart on its store (catching up, nothing counted
# twice), then with the store deleted (resync before ready, convergence);
# node 1 cut off from both peers: read_only=1, a reliable batch sent only to
# it refused READ_ONLY (and never counted), statsd still counted locally, and
# after the heal every node converges to the exact totals; node 1 muted (a
# one-way cut: it hears its peers, they do not hear it) never acks a batch it
# cannot replicate; batches sprayed to two nodes at once are counted once
# (cross-node dedup), a batch one node acked is answered DUPLICATE by
# another, and a replayed heartbeat is refused; replication replays from a
# member's own address (an old ack, a RESTORE_REQUEST) are ignored (issue 14, H4),
# and a batch replayed to another node is not counted again (issue 14, H3). /metrics passes `promtool
# check metrics` on every node, and with a peer down. Every wait is bounded. Prints PASS/FAIL lines and "N passed, N failed".
# Usage: cluster.sh BUILD_DIR   (root; hugepages reserved: 3 nodes)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-cluster.XXXXXX)
nodes=3
passed=0
failed=0
cleanup() {
  trap '' INT TERM HUP PIPE # (a closed stdout must not cut the clean-up short)
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
sockets() { local i; for i in $(seq "$nodes"); do echo "$work/sock$i"; done; }


# self_field I KEY: a field of node I's `tallyctl cluster` first line.
self_field() {
  ctl "$1" cluster 2>/dev/null | awk -v key="$2" 'NR == 1 && $1 == "self" {
    for (f = 3; f <= NF; f++) if (index($f, key "=") == 1) print substr($f, length(key) + 2) }'
}
# peer_state I J: node I's view of peer J.
peer_state() {
  ctl "$1" cluster 2>/dev/null | awk -v peer="$2" '$1 == "peer" && $2 == peer {
    for (f = 3; f <= NF; f++) if ($f ~ /^state=/) print substr($f, 7) }'
}
self_is() { # self_is I KEY VALUE
  local got
  got=$(self_field "$1" "$2")
  [ "$got" = "$3" ] || { echo "node $1: $2=$got, want $3"; return 1; }
}
peer_is() { # peer_is I J STATE
  local got
  got=$(peer_state "$1" "$2")
  [ "$got" = "$3" ] || { echo "node $1 sees peer $2 $got, want $3"; return 1; }
}
all_peers_up() {
  local i j
  for i in $(seq "$nodes"); do
    for j in $(seq "$nodes"); do
      [ "$i" = "$j" ] || peer_is "$i" "$j" up || return 1
    done
  done
}
# cluster_output_ok I: the `tallyctl cluster` format of the interface.
cluster_output_ok() {
  local out
  out=$(ctl "$1" cluster) || return 1
  echo "$out"
  head -1 <<<"$out" | grep -Eq "^self $1 ready=[01] read_only=[01] peers_up=[0-9]+ write_quorum=2( |$)" ||
    return 1
  [ "$(grep -Ec '^peer [0-9]+ state=(unknown|up|suspect|down) phi=[0-9.einf+-]+ heartbeat_age_ms=[0-9]+ sent_seq=[0-9]+ acked_seq=[0-9]+ pending=[0-9]+ breaker=(closed|open|half_open)( |$)' <<<"$out")" \
    -eq $((nodes - 1)) ]
}
# cluster_json_ok I: `tallyctl --json cluster` on node I is one JSON document
# (parsed by Python) with the documented fields: mode, self.id, the peers.
cluster_json_ok() {
  python3 - "$tallyctl" "$work/sock$1" "$1" "$((nodes - 1))" <<'PY'
import json, subprocess, sys
ctl, sock, me, peers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = subprocess.run([ctl, "-s", sock, "--json", "cluster"], capture_output=True, text=True,
                     check=True).stdout
doc = json.loads(out)
print(out[:400].strip())
active = [p for p in doc["peers"] if p["state"] != "retired"]
ok = (doc["mode"] == "cluster" and doc["self"]["id"] == me and doc["self"]["write_quorum"] == 2
      and doc["self"]["ready"] in (0, 1) and len(active) == peers
      and all(isinstance(p["id"], int) and isinstance(p["acked_seq"], int)
              and p["breaker"] in ("closed", "open", "half_open") for p in active))
sys.exit(0 if ok else 1)
PY
}
# match_on I PREFIX EXPECT_JSON: node I holds exactly the expected totals.
match_on() { counts_match "$tallyctl" "$work/sock$1" "$2" "$3"; }
match_all() { # match_all PREFIX EXPECT_JSON: on every node
  local i
  for i in $(seq "$nodes"); do
    match_on "$i" "$1" "$2" | sed "s/^/node $i: /"
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
  done
}
# lists_identical: `tallyctl list` is the same on every node.
lists_identical() {
  local i
  ctl 1 list | sort >"$work/list1" || return 1
  for i in $(seq 2 "$nodes"); do
    ctl "$i" list | sort >"$work/list$i" || return 1
    diff -q "$work/list1" "$work/list$i" >/dev/null || { echo "node $i differs from node 1"; return 1; }
  done
  echo "$(wc -l <"$work/list1") counters identical on $nodes nodes"
}
# produce_ok NODES PRODUCER INPUT OUT: every batch acked (exit 0, none failed).
produce_ok() {
  timeout 60 ip netns exec "$CLUSTER_PRODUCER_NS" "$produce" --nodes "$1" \
    --producer "$2" --flush-every 10 --ack-timeout-ms 200 --timeout-ms 10000 <"$3" >"$4" 2>&1
  local status=$?
  cat "$4"
  [ "$status" -eq 0 ] && grep -qx "failed 0 batches" "$4"
}
statsd() { # statsd NODE SEED PREFIX EXPECT_JSON
  cluster_producer timeout 60 python3 "$tools/statsd_send.py" --target "10.77.0.$1:8125" \
    --seed "$2" --datagrams 1000 --lines 20 --counters 20 --prefix "$3" --rate 5000 \
    --expect "$4"
}
# Compound conditions, as functions so that check/wait_for can run them.
healthy() { cluster_output_ok "$1" && self_is "$1" ready 1 && self_is "$1" read_only 0 &&
  self_is "$1" peers_up $((nodes - 1)); }
seen_down() { # seen_down J I...: every node I sees peer J down
  local j=$1 i
  shift
  for i in "$@"; do peer_is "$i" "$j" down || return 1; done
}
writable() { local i; for i in "$@"; do self_is "$i" read_only 0 || return 1; done; }
all_exact() { match_all sd. "$work/sd.json" && match_all rel. "$work/rel.json" &&
  match_all down. "$work/down.json"; }
node3_resynced() { match_on 3 sd. "$work/sd.json" && match_on 3 rel. "$work/rel.json" &&
  match_on 3 down. "$work/down.json"; }
nowhere() { # nowhere PREFIX NODE...: these nodes answer and list no counter with that prefix
  local prefix=$1 i out
  shift
  for i in "$@"; do
    out=$(ctl "$i" list "$prefix") || return 1
    [ -z "$out" ] || { echo "node $i: $out"; return 1; }
  done
}
healthy_all() { local i; for i in $(seq "$nodes"); do self_is "$i" read_only 0 || return 1; done; all_peers_up; }
all_running() { local i; for i in $(seq "$nodes"); do cluster_running "$i" || return 1; done; }
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }

cluster_up "k$$" "$nodes" || { echo "FAIL namespaces created"; echo "0 passed, 1 failed"; exit 1; }
cluster_start_all "$build" "$work"
for i in $(seq "$nodes"); do
  verdict "node $i becomes ready" cluster_wait_ready "$build" "$i" "$work/sock$i" 60
done
seed=${TALLY_SEED:-$RANDOM}
echo "seed $seed"

# 1. Heartbeats.
verdict "heartbeats: every peer state=up within 5 s" wait_for 5 all_peers_up
for i in $(seq "$nodes"); do
  verdict "node $i: tallyctl cluster format, ready=1 read_only=0 peers_up=2 within 5 s" \
    wait_for 5 healthy "$i"
  verdict "node $i: tallyctl --json cluster is one JSON document with mode, self, peers" \
    cluster_json_ok "$i"
done

# /metrics of node I passes promtool with its cluster figures: every peer
# (N - 1) has a heartbeat age in seconds (three decimals).
cluster_metrics_ok() {
  local ages
  metrics_lint "${CLUSTER_NS[$1]}" || return 1
  ages=$(ip netns exec "${CLUSTER_NS[$1]}" curl -sf --max-time 5 http://127.0.0.1:9125/metrics |
    grep -Ec '^tally_cluster_heartbeat_age_seconds\{peer="[0-9]+"\} [0-9]+\.[0-9]{3}$')
  [ "$ages" -eq $((nodes - 1)) ] || { echo "node $1: $ages heartbeat ages, want $((nodes - 1))"; return 1; }
}
for i in $(seq "$nodes"); do
  verdict "node $i: /metrics passes promtool check metrics, a heartbeat age per peer" \
    cluster_metrics_ok "$i"
  verdict "node $i: /counters passes promtool check metrics" counters_lint "${CLUSTER_NS[$i]}"
done

# 2. statsd to node 1 converges everywhere, exactly.
statsd 1 "$seed" sd. "$work/sd.json"
verdict "statsd to node 1: exact totals on all 3 nodes within 10 s" wait_for 10 match_all sd. "$work/sd.json"

# 3. Reliable batches to node 2: all acked, identical on every node.
workload "$seed" rel. 500 "$work/rel.in" "$work/rel.json"
verdict "reliable via node 2: all 50 batches acked" produce_ok 10.77.0.2:8126 101 "$work/rel.in" "$work/rel.out"
verdict "reliable via node 2: exact sums on all 3 nodes within 10 s" wait_for 10 match_all rel. "$work/rel.json"

# Quorum reads: every node answers, the merged value is the exact total.
quorum_exact() { # quorum_exact NODE NAME EXPECT_JSON
  local want got
  want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"][sys.argv[2]])' "$3" "$2")
  got=$(ctl "$1" get --quorum "$2") || return 1
  [ "$got" = "$want" ]
}
first_rel=$(python3 -c 'import json,sys; print(sorted(json.load(open(sys.argv[1]))["totals"])[0])' "$work/rel.json")
verdict "get --quorum on node 3: exact, exit 0 (all nodes answered)" quorum_exact 3 "$first_rel" "$work/rel.json"

# 4. kill -9 node 3: W = 2 still reachable, batches still acked.
cluster_stop 3 KILL
verdict "node 3 killed: nodes 1 and 2 see it down within 5 s" wait_for 5 seen_down 3 1 2
verdict "node 3 down: nodes 1 and 2 stay writable (read_only=0)" writable 1 2
verdict "node 3 down: node 1's /metrics passes promtool check metrics" cluster_metrics_ok 1
# /counters of node 1 with node 3 down: promtool passes, and node 3's contribution
# comes as node 1's replica of it (docs/operations.md, "Prometheus").
replica_exported() {
  counters_lint "${CLUSTER_NS[1]}" || return 1
  grep -q '^tally_counters_copy_timestamp_seconds{origin="3",copy="replica"} [0-9]' <<<"$PROMTOOL_LINT_BODY" &&
    grep -q '^tally_counters_copy_timestamp_seconds{origin="1",copy="own"} +Inf$' <<<"$PROMTOOL_LINT_BODY"
}
verdict "node 3 down: node 1's /counters passes promtool, exports its replica of node 3" replica_exported
workload "$((seed + 1))" down. 500 "$work/down.in" "$work/down.json"
verdict "node 3 down: batches via node 1 still acked" \
  produce_ok 10.77.0.1:8126,10.77.0.2:8126 102 "$work/down.in" "$work/down.out"

# 5. Restart node 3 on its intact store: it catches up with what was written
# while it was down, and nothing is counted twice anywhere.
start_node 3
verdict "node 3 restarted on its store becomes ready" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "node 3 back on its store: every total exact on all 3 nodes within 10 s" \
  wait_for 10 all_exact
statsd 3 "$((seed + 9))" own3. "$work/own3.json" # node 3's own contribution, for 5b
verdict "statsd to node 3: exact totals on all 3 nodes within 10 s" \
  wait_for 10 match_all own3. "$work/own3.json"
cluster_stop 3 KILL

# 5b. Restart node 3 on a store with one counter value corrupted (a bit flipped
# behind its checksum): recovery quarantines the slot, and a cluster node then
# replaces the store whole and restores it from its peers (never patched:
# docs/cluster.md, "Keeping is exact"), so every total is exact again.
node3_restored() { node3_resynced && match_on 3 own3. "$work/own3.json"; }
corrupt_first_value() { # corrupt_first_value STORE: flips a bit of shard 0's first counter value
  python3 - "$1" <<'PY'
import struct, sys
# docs/store-layout.md: shard 0 at 4096; slots after its 8192-byte header, 128 bytes
# each, value (int64) at 0, name_len (u16) at 24.
with open(sys.argv[1], 'r+b') as f:
    data = f.read()
    slots, = struct.unpack_from('<I', data, 4096 + 12)
    for i in range(slots):
        off = 4096 + 8192 + 128 * i
        if struct.unpack_from('<H', data, off + 24)[0]:
            f.seek(off)
            f.write(bytes([data[off] ^ 1]))
            sys.exit(0)
sys.exit(1)
PY
}
verdict "node 3 stopped: a counter value of its store corrupted" corrupt_first_value "$work/store3.pmem"
start_node 3
verdict "node 3 on a damaged store becomes ready" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "damaged store: recovery quarantined a slot, and tallyd says so" \
  grep -q "recovery quarantined 1 slot(s) or producer record(s)" "$work/n3.log"
verdict "damaged store: moved aside as store3.pmem.corrupt-TIME" \
  grep -q "moved the damaged store to $work/store3.pmem.corrupt-" "$work/n3.log"
verdict "damaged store replaced: every total exact on node 3 within 10 s" \
  wait_for 10 node3_restored
cluster_stop 3 KILL

# 6. Restart node 3 with its store deleted: resync before ready, then convergence.
rm -f "$work/store3.pmem"
start_node 3
verdict "node 3 restarted with an empty store becomes ready" cluster_wait_ready "$build" 3 "$work/sock3" 60
verdict "node 3 resynced: every total exact on node 3 within 10 s" wait_for 10 node3_resynced
verdict "node 3 back: every peer up within 5 s" wait_for 5 all_peers_up

# 7. Isolate node 1 (replication links only; producers still reach it).
cluster_isolate 1
verdict "isolated node 1 goes read_only=1 within 5 s" wait_for 5 self_is 1 read_only 1
verdict "majority side (nodes 2, 3) stays read_only=0" writable 2 3
cluster_producer timeout 30 "$produce" --nodes 10.77.0.1:8126 --producer 103 \
  --retries 2 --ack-timeout-ms 200 --timeout-ms 3000 iso.refused:7 >"$work/iso.out" 2>&1
status=$?
cat "$work/iso.out"
verdict "batch sent only to isolated node 1: tally-produce exits 1 (a batch failed; got $status)" test "$status" -eq 1
verdict "batch sent only to isolated node 1: refused read_only" grep -q "status read_only" "$work/iso.out"
quorum_partial() { # quorum_partial NODE NAME K: exit 2, a value, "partial: K of 3"
  local out status
  out=$(ctl "$1" get --quorum "$2" 2>"$work/quorum.err"); status=$?
  cat "$work/quorum.err"
  [ "$status" -eq 2 ] && [ -n "$out" ] && grep -q "partial: $3 of 3" "$work/quorum.err"
}
verdict "get --quorum on isolated node 1: value printed, partial 1 of 3, exit 2" \
  quorum_partial 1 "$first_rel" 1
verdict "get --quorum on node 2 (node 1 unreachable): partial 2 of 3, exit 2" \
  quorum_partial 2 "$first_rel" 2
workload "$((seed + 2))" maj. 200 "$work/maj.in" "$work/maj.json"
verdict "majority side: batches via node 2 acked during the partition" \
  produce_ok 10.77.0.2:8126 104 "$work/maj.in" "$work/maj.out"
statsd 1 "$((seed + 3))" part1. "$work/part1.json"
statsd 3 "$((seed + 4))" part3. "$work/part3.json"
verdict "statsd to isolated node 1 counted locally (exact on node 1)" \
  wait_for 5 match_on 1 part1. "$work/part1.json"
verdict "partition is real: nodes 2 and 3 do not see node 1's new statsd counts" nowhere part1. 2 3

# 8. Heal: node 1 writable again, every node exact on every workload.
cluster_heal_all
verdict "healed: node 1 read_only=0 within 5 s" wait_for 5 self_is 1 read_only 0
verdict "healed: every peer up within 5 s" wait_for 5 all_peers_up
for prefix in sd rel down maj part1 part3; do
  verdict "healed: $prefix. exact on all 3 nodes within 15 s" wait_for 15 match_all "$prefix." "$work/$prefix.json"
done
verdict "READ_ONLY batch never counted on any node" nowhere iso. 1 2 3

# 9. Node 1 muted: it hears its peers (they look up to it) but is not heard.
# A batch it takes cannot reach the write quorum, so it must never be acked.
cluster_oneway 1 2
cluster_oneway 1 3
cluster_producer timeout 30 "$produce" --nodes 10.77.0.1:8126 --producer 105 \
  --retries 2 --ack-timeout-ms 300 --timeout-ms 3000 mute.x:3 >"$work/mute.out" 2>&1
status=$?
cat "$work/mute.out"
verdict "muted node 1: a batch sent only to it is not acked: exit 1 (no quorum; got $status)" test "$status" -eq 1
verdict "muted node 1: the batch failed with timeout or read_only" \
  grep -Eq "^failed seq 1 status (timeout|read_only) " "$work/mute.out"
cluster_heal 1 2
cluster_heal 1 3
verdict "unmuted: every peer up and node 1 writable within 5 s" wait_for 5 healthy_all

# 10. Cross-node dedup. (a) Every batch sprayed to nodes 1 and 3 at once (the
# worst case of a producer failing over): node 1 gets attempt 0, node 3
# attempt 1; both may apply it. Node 3's claims reach node 1, which undoes its
# lower-attempt apply. Every node ends with each batch counted once.
cluster_producer timeout 90 python3 "$tools/reliable_producer.py" \
  --target 10.77.0.1:8126,10.77.0.3:8126 --spray --producers 4 \
  --first-producer 200 --batches 40 --counters 6 --prefix dd. --seed "$seed" \
  --retry-ms 100 --deadline-s 60 --report "$work/dd.json"
exact_on_all() { # exact_on_all PREFIX REPORT: value == acked on every node
  local i
  for i in $(seq "$nodes"); do
    acked_within "$tallyctl" "$work/sock$i" "$1" "$2" exact | sed "s/^/node $i: /"
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
  done
}
verdict "sprayed to nodes 1 and 3: all 160 batches acked, no error ack" producer_ok "$work/dd.json" 160
verdict "sprayed to nodes 1 and 3: each batch counted once on all 3 nodes within 20 s" \
  wait_for 20 exact_on_all dd. "$work/dd.json"
positive() { local v; v=$(self_field "$1" "$2"); echo "node $1: $2=$v"; [ "${v:-0}" -gt 0 ]; }
verdict "node 1 (attempt 0) undid the batches node 3 applied from attempt 1 (compensations > 0)" \
  positive 1 compensations
verdict "node 3 (the higher attempt) keeps its count: no compensation there" \
  self_is 3 compensations 0
for i in $(seq "$nodes"); do
  verdict "node $i: no double apply missed (compensations_missed=0)" self_is "$i" compensations_missed 0
done
# Heartbeats on their own thread and socket (issue 12, item 3): the steering
# program put every heartbeat on the heartbeat socket and nothing else there.
for i in $(seq "$nodes"); do
  verdict "node $i: heartbeats on their own thread (heartbeat_thread=1)" self_is "$i" heartbeat_thread 1
  verdict "node $i: no datagram on the wrong socket (heartbeats_misrouted=0)" \
    self_is "$i" heartbeats_misrouted 0
done
# (b) A batch acked by node 2, sent again later to node 1 (a producer retrying
# after a lost ack): node 1 holds node 2's record of it, answers DUPLICATE and
# counts nothing.
resend_once() { # resend_once NODE PRODUCER SEQ: prints the ack status of one send
  cluster_producer python3 - "$tools" "$key" "10.77.0.$1" "$2" "$3" <<'PY'
import socket, sys
sys.path.insert(0, sys.argv[1])
import tally_wire
key, host, producer, seq = bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = tally_wire.encode_batch(producer, seq, [("dd2.once", 5)], key, (host, 8126))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(20):
    s.sendto(data, (host, 8126))
    try:
        _, _, status = tally_wire.decode_ack(s.recv(2048), key)
    except (OSError, tally_wire.WireError):
        continue
    if status != tally_wire.ACK_READ_ONLY:
        print(tally_wire.ACK_STATUS_NAMES[status])
        sys.exit(0)
print("no answer")
PY
}
status=$(resend_once 2 301 1)
verdict "batch 301:1 to node 2: applied" test "$status" = applied
echo '{"totals": {"dd2.once": 5}}' >"$work/dd2.json"
verdict "batch 301:1 replicated to node 1 within 10 s" wait_for 10 match_on 1 dd2. "$work/dd2.json"
status=$(resend_once 1 301 1)
verdict "the same batch to node 1 later: answered duplicate (got $status)" test "$status" = duplicate
verdict "batch 301:1 counted once on all 3 nodes" wait_for 10 match_all dd2. "$work/dd2.json"
# 11. Heartbeat replay (issue 14, M3): one heartbeat in node 3's name (a
# valid MAC) of an older incarnation (incarnations are start seconds, so
# 0x5eed5eed is from 2020) sent twice to node 1 from node 3's namespace. Node
# 1 refuses and counts both (reason old_incarnation): neither looks like a
# restart of node 3, so no probe (a ROUND with seq 0, watched on node 3's link
# from node 1 by probe_sniff.py) follows in the 2 s after. Replays of the
# current incarnation: test_cluster_streams.
replayed_count() {
  ip netns exec "${CLUSTER_NS[1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk '/^tally_cluster_rejected_total\{kind="heartbeat",reason="old_incarnation"\}/ { print $2 }'
}
before=$(replayed_count)
ip netns exec "${CLUSTER_NS[3]}" timeout 120 python3 "$tools/probe_sniff.py" r1 1 \
  "$CLUSTER_REPLICATION_PORT" "$work/sniff.go" "$work/sniff.ready" --seconds 2 >"$work/sniff.out" 2>&1 &
sniff_pid=$!
wait_for 10 test -e "$work/sniff.ready" || echo "probe_sniff.py did not start: $(cat "$work/sniff.out")"
sleep 1 # the baseline: a settled link sends no probe
touch "$work/sniff.go"
ip netns exec "${CLUSTER_NS[3]}" python3 - "$CLUSTER_KEY" "10.78.0.1" "$CLUSTER_REPLICATION_PORT" <<'PY'
import hashlib, socket, struct, sys
key, host, port = bytes.fromhex(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = struct.pack("<2sBBHHIIQQ", b"TH", 2, 1, 3, 1, 0x5eed5eed, 0, 123456789, 0)
datagram = body + hashlib.blake2b(body, key=key, digest_size=16,
                                  person=b"tally-mac-hbeat\0").digest()  # version 2 (M2)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.78.0.3", 0))
for _ in range(2):
    s.sendto(datagram, (host, port))
PY
wait "$sniff_pid"
sniff_status=$?
sniffed=$(cat "$work/sniff.out")
echo "probes from node 1 on node 3's link: $sniffed"
verdict "a heartbeat of an older incarnation: node 1 does not probe node 3 again" \
  test "$sniff_status" -eq 1
verdict "no probe on the link before or after it" \
  eval "[[ '$sniffed' == 'baseline 0 after 0'* ]]"
replay_counted() { local now; now=$(replayed_count); echo "old incarnation: ${before:-?} -> ${now:-?}"; [ -n "$now" ] && [ "$now" -ge $((${before:-0} + 2)) ]; }
verdict "both copies refused as of an old incarnation (tally_cluster_rejected_total)" \
  wait_for 5 replay_counted
verdict "after the replay: every peer up and writable within 5 s" wait_for 5 healthy_all
# 12. Issue 14, H4: replays from a member's own address and port (a raw
# socket in node 3's namespace, while node 3's tallyd holds them). (a) An ack
# node 3 sent node 1, captured, replayed once node 1's stream to node 3 moved
# on: ignored (ack_stale), no resync of node 3, quorum acks go on. (b) A
# RESTORE_REQUEST of node 3 sent twice, and one stamped 2 minutes ago: node 1
# serves the first only (request_replayed +2): a replay makes no dump.
cluster_rejected() { # cluster_rejected NODE REASON: tally_cluster_rejected_total of a reason
  ip netns exec "${CLUSTER_NS[$1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk -v want="tally_cluster_rejected_total{kind=\"replication\",reason=\"$2\"}" \
      '$1 == want { print $2 }'
}
resyncs_1_of_3() {
  ip netns exec "${CLUSTER_NS[1]}" curl -s --max-time 2 http://127.0.0.1:9125/metrics |
    awk '$1 == "tally_cluster_replication_resyncs_total{peer=\"3\"}" { print $2 }'
}
statsd_line() { # statsd_line NODE LINE
  cluster_producer python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), (sys.argv[1], 8125))' "10.77.0.$1" "$2"
}
replay=$tools/replication_replay.py
ip netns exec "${CLUSTER_NS[1]}" timeout 90 python3 "$replay" capture-ack r3 3 \
  "$CLUSTER_REPLICATION_PORT" "$work/ack.bin" "$work/ack.ready" >"$work/ack.out" 2>&1 &
ack_pid=$!
wait_for 10 test -e "$work/ack.ready" || echo "capture-ack did not start: $(cat "$work/ack.out")"
statsd_line 1 "h4.a:1|c"
wait "$ack_pid"
verdict "an ack of node 3 to node 1 captured ($(cat "$work/ack.out"))" test -s "$work/ack.bin"
statsd_line 1 "h4.b:2|c"
echo '{"totals": {"h4.a": 1, "h4.b": 2}}' >"$work/h4.json"
verdict "node 1's stream to node 3 moved on past the captured ack" wait_for 10 match_on 3 h4. "$work/h4.json"
stale_before=$(cluster_rejected 1 ack_stale)
resyncs_before=$(resyncs_1_of_3)
ip netns exec "${CLUSTER_NS[3]}" python3 "$replay" send 10.78.0.3 "$CLUSTER_REPLICATION_PORT" \
  10.78.0.1 "$work/ack.bin"
stale_counted() { local now; now=$(cluster_rejected 1 ack_stale); echo "ack_stale: ${stale_before:-?} -> ${now:-?}"; [ -n "$now" ] && [ "$now" -gt "${stale_before:-0}" ]; }
verdict "the replayed old ack is ignored and counted (ack_stale)" wait_for 5 stale_counted
verdict "no resync of node 3 for it (resyncs ${resyncs_before:-?} -> $(resyncs_1_of_3))" \
  test "$(resyncs_1_of_3)" = "${resyncs_before:-x}"
status=$(resend_once 1 401 1)
verdict "a reliable batch to node 1 after the replay: applied (quorum acks go on; got $status)" \
  test "$status" = applied
replayed_before=$(cluster_rejected 1 request_replayed)
ip netns exec "${CLUSTER_NS[3]}" python3 "$replay" restore-request "$CLUSTER_KEY" 10.78.0.3 \
  "$CLUSTER_REPLICATION_PORT" 10.78.0.1 3 0 2
ip netns exec "${CLUSTER_NS[3]}" python3 "$replay" restore-request "$CLUSTER_KEY" 10.78.0.3 \
  "$CLUSTER_REPLICATION_PORT" 10.78.0.1 3 120 1
requests_counted() { local now; now=$(cluster_rejected 1 request_replayed); echo "request_replayed: ${replayed_before:-?} -> ${now:-?}"; [ -n "$now" ] && [ "$now" -eq "$((${replayed_before:-0} + 2))" ]; }
verdict "a RESTORE_REQUEST sent again, and one from 2 minutes ago: refused (request_replayed +2)" \
  wait_for 5 requests_counted
verdict "after the replays: every peer up and writable within 5 s" wait_for 5 healthy_all
# 13. Issue 14, H3: a batch captured on the wire and replayed to another node.
# Producer 501 sends seqs 1..200 to node 2 (each acked); once node 1 holds
# node 2's copy, the batches 136 (neither in the head nor the tail node 2's
# record keeps) and 200 are sent again to node 1: answered STALE and
# DUPLICATE, and h3.replay stays 200 on every node (counted once).
send_range() { # send_range NODE PRODUCER FIRST LAST [FOR_NODE]: the ack statuses, counted
  # FOR_NODE: the node the batches are MAC'd for (default NODE): another
  # node's copy replayed verbatim (H3).
  cluster_producer python3 - "$tools" "$key" "10.77.0.$1" "$2" "$3" "$4" "10.77.0.${5:-$1}" <<'PY'
import collections, socket, sys
sys.path.insert(0, sys.argv[1])
import tally_wire
key, host, for_host = bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[7]
producer, first, last = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
seen = collections.Counter()
for seq in range(first, last + 1):
    data = tally_wire.encode_batch(producer, seq, [("h3.replay", 1)], key, (for_host, 8126))
    status = "none"
    for _ in range(20):
        s.sendto(data, (host, 8126))
        try:
            _, got_seq, code = tally_wire.decode_ack(s.recv(2048), key)
        except (OSError, tally_wire.WireError):
            continue
        if got_seq == seq and code != tally_wire.ACK_READ_ONLY:
            status = tally_wire.ACK_STATUS_NAMES[code]
            break
    seen[status] += 1
print(" ".join("%s=%d" % item for item in sorted(seen.items())))
PY
}
statuses=$(send_range 2 501 1 200)
verdict "producer 501's batches 1..200 to node 2: all applied (got $statuses)" \
  test "$statuses" = "applied=200"
echo '{"totals": {"h3.replay": 200}}' >"$work/h3.json"
verdict "node 1 holds node 2's copy of them" wait_for 10 match_on 1 h3. "$work/h3.json"
# The bytes node 2 took, replayed verbatim to node 1: MAC'd for node 2, so
# refused unanswered and counted (batch_wrong_node), at once, not only once
# node 2's record replicated.
wrong_node_1() { ctl 1 stats | awk '$1 == "drop_batch_wrong_node" { print $2 }'; }
wrong_before=$(wrong_node_1)
statuses=$(send_range 1 501 195 195 2)
verdict "batch 501:195 as node 2 took it, replayed to node 1: unanswered (got $statuses)" \
  test "$statuses" = "none=1"
verdict "node 1 counted it batch_wrong_node (${wrong_before:-?} -> $(wrong_node_1))" \
  test "$(wrong_node_1)" -gt "${wrong_before:-0}"
# A producer's own resend to node 1 (MAC'd for node 1) meets node 2's record.
statuses=$(send_range 1 501 136 136)
verdict "batch 501:136 replayed to node 1: answered stale (got $statuses)" test "$statuses" = "stale=1"
statuses=$(send_range 1 501 200 200)
verdict "batch 501:200 replayed to node 1: answered duplicate (got $statuses)" \
  test "$statuses" = "duplicate=1"
verdict "h3.replay counted once on all 3 nodes (200)" wait_for 10 match_all h3. "$work/h3.json"
verdict "every node lists the same counters and values" wait_for 5 lists_identical
verdict "no tallyd exited on its own" all_running
if [ "$failed" -gt 0 ]; then
  for i in $(seq "$nodes"); do echo "--- node $i log (tail)"; tail -25 "$work/n$i.log"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
