#!/usr/bin/env bash
# tests/adversary/run.sh — the adversarial suite of issue 14 against a real
# tallyd in network namespaces this script creates (scripts/netns.sh): one
# attack per finding fixed, each followed by the same three assertions —
# tallyd still runs, a reliable producer still gets every batch acked (and
# counted exactly), and no reply seen was larger than its request.
#   L1  ICMP/ARP from non-unicast sources and with IP options, never answered;
#       a burst of echo requests answered at most at the reply budget, every
#       one answered or counted (reply_rate_limited, or budget_control when a
#       poll brought more than dataplane.control_per_poll of them);
#   L2  a slowloris of 100 HTTP connections from one address: /health/live
#       answers another address meanwhile, the attacker holds at most 4;
#   M4  a management client trickling a byte a second is cut at the deadline
#       while tallyctl is served; a state change from nobody is refused
#       (exit 3, "not permitted") and reads are not; a second tallyd does not
#       take the live socket over;
#   M2/L4  a config with ingest.key == cluster.key, the demo key without
#       node.demo, or a secret key in a file others may read: refused with
#       one line; tally-produce --key refused, and a running tally-produce's
#       /proc/PID/cmdline holds no key;
#   L5  a store path that is a symbolic link: tallyd refuses to start;
#   H1  2048 statsd names that all collide under the name hash before layout 6
#       (CRC32C, public seed), sent again and again while a reliable producer
#       runs (half the shard's counters_max of 4096: filling the table is C1,
#       traffic classes, not this finding): its batches are acked, the longest slot probe stays short
#       (slot_probe_max under 256, the bound is 1024) and nothing is refused
#       for the probe bound (drop_probe_limit 0).
#   C1  statsd from varied source ports floods new names until statsd's share
#       of the table is full (statsd_share_full counted): a reliable producer
#       still creates new counters and gets every batch acked; statsd cannot add
#       to a reliable producer's counter (statsd_reliable_counter counted), so
#       the producer's next batch is acked, not answered overflow.
#       BULKHEADS_OFF=1 runs it with the bulkheads configured away
#       (statsd_counters_percent = 100, statsd_writes_reliable = true), to see
#       this part fail as the code did before them.
#   C1 shedding  one spoofed source floods statsd: it is held to its token
#       bucket (statsd_source_over_budget counted) while a second source's
#       statsd is counted exactly; a source outside statsd_allow_cidrs is not
#       counted at all; tallyctl degrade 2 sheds all statsd, degrade auto
#       ends it; reliable producers are acked throughout. Then tallyctl
#       degrade 3 (reliable read-only, never reached by a real node's
#       signals here): reliable batches answered READ_ONLY and counted
#       batches_read_only, statsd shed; a producer retrying through it gets
#       every batch acked, exactly, after degrade auto. It runs last, on
#       tallyd restarted with the budget and the allow-list (so the sections
#       before it see no budget). SHEDDING_OFF=1 runs
#       it without the budget and the allow-list, to see this part fail as the
#       code did before them.
#   H3  a batch MAC'd for another node (10.77.0.2), captured and replayed here
#       300 times: never answered, never counted, counted batch_wrong_node; a
#       reliable producer keeps its acks. REPLAY_NODE_OFF=1 replays one MAC'd
#       for this node (as before version 2), to see this part fail.
#   M2 producer keys  tallyd restarted with ingest.producer_keys = derived on a
#       fresh store: producer A, holding only its own key (tallyctl
#       producer-key, a 0600 file), sends a batch claiming producer B at a far
#       seq to jump B's window: no ack, counted batch_bad_mac, and B's own
#       batches are all acked and exact; A's own batch is acked.
#       PRODUCER_KEYS_OFF=1 runs it with producer_keys = shared (A then holds
#       ingest.key), to see this part fail as the code did before.
#   M3  (heartbeat_replay.sh, on a 3-node cluster once the single node is
#       stopped) heartbeats of a dead peer's two incarnations replayed in turn:
#       the peer is seen down, every replay refused, the link never reset.
# L3 and H4 (cluster receivers) are covered by test_cluster_streams, test_shard,
# fuzz_replication and fuzz_replication_seq, and H4's replays from a member's own
# address on a real 3-node cluster by tests/integration/cluster.sh step 12 (no
# cluster here); H3 (batch replay: a producer's share of the pending acks, a
# producer's own resend to another node answered from replicated records) by
# test_dataplane, and a batch of another node replayed here by the H3 section.
# Run under
# `flock /tmp/tally-netns.lock`; every wait is bounded; processes stopped by PID.
# Prints PASS/FAIL lines and "N passed, N failed".
# Usage: tests/adversary/run.sh BUILD_DIR   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-adversary.XXXXXX)
suffix=a$$
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  tally_stop KILL
  tally_netns_down; rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
tools=$root/tests/tools
attack=$root/tests/adversary/attack.py
ctl="$build/control/tallyctl -s $work/sock"
export TALLY_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
peer() { ip netns exec "$TALLY_PEER_NS" "$@"; }
node() { ip netns exec "$TALLY_NODE_NS" "$@"; }
stat() { $ctl stats | awk -v k="$1" '$1 == k { print $2 }'; }
# exited_with STATUS TEXT / failed_with TEXT: the last command's $code and $said
# (not "out": verdict has a local of that name).
exited_with() { [ "$code" -eq "$1" ] && grep -q "$2" <<<"$said"; }
failed_with() { [ "$code" -ne 0 ] && grep -q "$1" <<<"$said"; }
json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

tally_netns_up "$suffix"
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
if [ "${BULKHEADS_OFF:-0}" = 1 ]; then
  sed -i 's/^\[ingest\]$/[ingest]\nstatsd_counters_percent = 100\nstatsd_writes_reliable = true/' "$work/tally.ini"
fi
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
verdict "tallyd becomes ready" tally_wait_ready "$build" "$work/sock" 30
node_mac=$(ip -n "$TALLY_NODE_NS" link show tally0 | awk '/link\/ether/ { print $2 }')
peer ping -c 1 -W 2 10.77.0.1 >/dev/null # the peer learns the node's MAC

# still_serving LABEL N: tallyd alive, and producer N's 20 batches all acked and exact.
still_serving() {
  local label=$1 n=$2
  verdict "$label: tallyd still running" kill -0 "$TALLYD_PID"
  peer timeout 60 python3 "$tools/reliable_producer.py" --seed "$n" --producers 1 --batches 20 \
    --first-producer "$((9000 + n))" --prefix "adv$n." --report "$work/rel$n.json" >/dev/null
  verdict "$label: a reliable producer gets all 20 batches acked" producer_ok "$work/rel$n.json" 20
  verdict "$label: and they are counted exactly" \
    acked_within "$build/control/tallyctl" "$work/sock" "adv$n." "$work/rel$n.json" exact
}
still_serving "before any attack" 1

# ---- C1: traffic classes as bulkheads -------------------------------------------------
# One dataplane lcore, counters_max 4096: statsd may take 3072 (75 %). 100 datagrams
# of 60 new names each (6000) would fill the whole table without the bulkhead.
datagrams_seen() { echo $(( $(stat statsd_datagrams) + $(stat drop_budget_statsd) + 0 )); }
wait_datagrams() { local want=$1; for _ in $(seq 1 200); do
  [ "$(datagrams_seen)" -ge "$want" ] && return 0; sleep 0.1; done; return 1; }
flood_base=$(datagrams_seen)
for round in 0 1 2 3 4; do
  peer timeout 60 python3 "$attack" statsd 10.77.0.1 8125 --datagrams 20 --lines 60 \
    --first $((round * 1200)) >"$work/c1.$round.json"
  wait_datagrams $((flood_base + 20 * (round + 1))) || echo "C1: round $round: some datagrams lost on the veth"
done
echo "C1: counters_in_use $(stat counters_in_use) statsd_share_full $(stat drop_statsd_share_full)" \
  "counters_full $(stat drop_counters_full)"
verdict "C1: statsd's new names beyond its share refused and counted" \
  test "$(( $(stat drop_statsd_share_full) + 0 ))" -gt 0
verdict "C1: statsd filled at most its share (3072 of 4096)" \
  test "$(stat counters_in_use)" -le 3200
# The reliable producer brings new names (prefix adv6.): all created and acked.
still_serving "C1: after statsd filled its share" 6
# statsd against a counter a reliable producer owns.
peer env TALLY_KEY="$TALLY_KEY" "$build/control/tally-produce" --nodes 10.77.0.1:8126 \
  --producer 9201 adv.c1.bill:5 >"$work/c1p1.out" 2>&1
verdict "C1: the producer's counter is created and acked" grep -q "^acked 1 batches" "$work/c1p1.out"
refused_before=$(( $(stat drop_statsd_reliable_counter) + 0 ))
peer python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"adv.c1.bill:9223372036854775800|c\nadv.c1.bill:1|c", ("10.77.0.1", 8125))'
for _ in $(seq 1 100); do
  [ "$(( $(stat drop_statsd_reliable_counter) + 0 ))" -ge $((refused_before + 2)) ] && break; sleep 0.1
done
verdict "C1: statsd's lines to the producer's counter refused and counted" \
  test "$(( $(stat drop_statsd_reliable_counter) + 0 ))" -ge $((refused_before + 2))
peer env TALLY_KEY="$TALLY_KEY" "$build/control/tally-produce" --nodes 10.77.0.1:8126 \
  --producer 9201 --seq 2 adv.c1.bill:10 >"$work/c1p2.out" 2>&1
cat "$work/c1p2.out"
verdict "C1: the producer's next batch is acked (no overflow)" grep -q "^acked 1 batches" "$work/c1p2.out"
verdict "C1: the producer's counter holds only its own increments" test "$($ctl get adv.c1.bill)" = 15

# ---- L1: ARP and ICMP ------------------------------------------------------------
reasons_before=$(( $(stat drop_source_not_unicast) + 0 ))
peer timeout 30 python3 "$attack" l1 peer0 "$node_mac" 10.77.0.1 10.77.0.2 --flood 200 \
  >"$work/l1.json" 2>"$work/l1.err"
cat "$work/l1.json" "$work/l1.err"
verdict "L1: no answer to a non-unicast source or to IP options" \
  test "$(json "$work/l1.json" bad_answered)" = 0
verdict "L1: no reply larger than the largest request" \
  test "$(json "$work/l1.json" largest_reply)" -le "$(json "$work/l1.json" largest_request)"
l1_counted() {
  local limited replies
  limited=$(stat drop_reply_rate_limited); replies=$(json "$work/l1.json" flood_replies)
  budget=$(( $(stat drop_budget_control) + 0 )) # over dataplane.control_per_poll (C1)
  echo "replies $replies, rate limited ${limited:-?}, over the poll budget $budget, non-unicast $(stat drop_source_not_unicast), options $(stat drop_ip_options)"
  [ "${limited:-0}" -ge 1 ] && [ "$((replies + limited + budget))" -ge 200 ] &&
    [ "$(stat drop_source_not_unicast)" -ge "$((reasons_before + 6))" ] &&
    [ "$(stat drop_ip_options)" -ge 1 ]
}
verdict "L1: the burst is answered up to the budget, every request answered or counted" l1_counted
still_serving "after L1" 2

# ---- L2: HTTP slowloris --------------------------------------------------------------
node timeout 90 python3 "$attack" slowloris 127.0.0.1 9125 127.0.0.9 100 --ready "$work/slow.ready" \
  --until "$work/slow.stop" --hold-s 60 >"$work/slow.json" 2>&1 &
pids+=($!); slow_pid=$!
wait_for 30 test -e "$work/slow.ready"
live_from_other() {
  node curl -s --max-time 5 --interface 127.0.0.2 -o /dev/null -w '%{http_code}' \
    http://127.0.0.1:9125/health/live | grep -qx 200
}
verdict "L2: /health/live answers another address during the slowloris" live_from_other
touch "$work/slow.stop"
wait "$slow_pid"
cat "$work/slow.json"
verdict "L2: one address holds at most 4 connections" \
  test "$(json "$work/slow.json" held_at_end)" -le 4
still_serving "after L2" 3

# ---- M4: the management socket ----------------------------------------------------
python3 "$attack" trickle "$work/sock" --every-s 1 --bytes 15 >"$work/trickle.json" 2>&1 &
pids+=($!); trickle_pid=$!
sleep 0.5
verdict "M4: tallyctl is served while a client trickles bytes" timeout 40 $ctl ready
wait "$trickle_pid"
cat "$work/trickle.json"
verdict "M4: the trickling client is cut at the deadline (within 15 bytes)" \
  test "$(json "$work/trickle.json" closed_after_s)" != None
chmod 755 "$work"; chmod 666 "$work/sock" # as if nobody were in the socket's group
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
said=$(as_nobody $ctl readonly on 2>&1); code=$?
echo "$said"
verdict "M4: readonly from nobody refused (exit 3, not permitted)" exited_with 3 "not permitted"
verdict "M4: reads from nobody are served" as_nobody $ctl ready
verdict "M4: the refusal is counted (mgmt_refused)" test "$(stat mgmt_refused)" -ge 1
chmod 700 "$work"; chmod 660 "$work/sock"
# A second tallyd on the same socket (its own store, a null port): refused, the first serves.
sed -e 's|--vdev=net_af_packet0,iface=tally0|--vdev=net_null0|' -e "s|tally-$$|tally-second-$$|" \
  -e "s|^path = .*|path = $work/second.pmem|" -e 's|^http = .*|http = off|' \
  "$work/tally.ini" >"$work/second.ini"
chmod 600 "$work/second.ini"
said=$(timeout 60 "$build/control/tallyd" -c "$work/second.ini" 2>&1); code=$?
echo "$said" | tail -2
verdict "M4: a second tallyd refuses the live socket (one line, non-zero exit)" \
  failed_with "is served by a running process"
verdict "M4: the first tallyd still serves its socket" $ctl ready
still_serving "after M4" 4

# ---- M2, L4: keys ------------------------------------------------------------------
refused() { # refused CONFIG TEXT: --check-config exits 2 naming TEXT
  local out status
  out=$("$build/control/tallyd" -c "$1" --check-config 2>&1); status=$?
  echo "$out"
  [ "$status" -eq 2 ] && grep -q "$2" <<<"$out"
}
cp "$work/tally.ini" "$work/same.ini"
printf '[cluster]\nnode_id = 1\nnodes = 1@10.78.0.1:7100\nkey = %s\n' "$TALLY_KEY" >>"$work/same.ini"
verdict "M2: cluster.key equal to ingest.key refused" refused "$work/same.ini" "the same as ingest.key"
sed 's/^key = .*/key = 74616c6c792064656d6f206b6579202d206e6f74206120736563726574212121/' \
  "$work/tally.ini" >"$work/demo.ini"
chmod 600 "$work/demo.ini"
verdict "M2: the demo key refused without node.demo" refused "$work/demo.ini" "public demo or template key"
cp "$work/tally.ini" "$work/open.ini"; chmod 644 "$work/open.ini"
verdict "L4: a config holding a key that others may read refused" refused "$work/open.ini" "chmod 600"
said=$(peer "$build/control/tally-produce" --nodes 10.77.0.1:8126 --key "$TALLY_KEY" --producer 5 x:1 2>&1)
code=$?
verdict "L4: tally-produce --key refused (exit 64)" exited_with 64 "key-file"
mkfifo "$work/produce.in"
peer "$build/control/tally-produce" --nodes 10.77.0.1:8126 --producer 9100 <"$work/produce.in" \
  >"$work/produce.out" 2>&1 &
produce_pid=$!; pids+=($produce_pid)
exec 7>"$work/produce.in"
echo "adv.l4 3" >&7
cmdline_clean() {
  local pid
  pid=$(pgrep -P "$produce_pid" -x tally-produce || echo "$produce_pid")
  ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$TALLY_KEY"
}
verdict "L4: a running tally-produce's command line holds no key" cmdline_clean
exec 7>&-
wait "$produce_pid"
verdict "L4: that tally-produce (key from TALLY_KEY) got its batch acked" \
  grep -q "^acked 1 batches" "$work/produce.out"

# ---- L5: the store through a symbolic link -----------------------------------------
ln -s "$work/store.pmem" "$work/link.pmem"
sed -e "s|^path = .*|path = $work/link.pmem|" -e 's|--vdev=net_af_packet0,iface=tally0|--vdev=net_null0|' \
  -e "s|tally-$$|tally-link-$$|" -e "s|^socket = .*|socket = $work/link.sock|" -e 's|^http = .*|http = off|' \
  "$work/tally.ini" >"$work/link.ini"
chmod 600 "$work/link.ini"
said=$(timeout 60 "$build/control/tallyd" -c "$work/link.ini" 2>&1); code=$?
echo "$said" | tail -2
verdict "L5: a store path that is a symbolic link is refused" failed_with "symbolic link"

# ---- H1: names colliding under the old public hash -----------------------------------
# On a fresh store: C1 above filled statsd's share of the first one, so H1's names
# would be refused as statsd_share_full and never probe at all.
tally_stop TERM
tally_write_config "$work/tally.ini" "$work/store-h1.pmem" "$work/sock"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
verdict "H1: tallyd on a fresh store becomes ready" tally_wait_ready "$build" "$work/sock" 30
peer timeout 120 python3 "$attack" h1 10.77.0.1 8125 --names 2048 --rounds 100 \
  >"$work/h1.json" 2>"$work/h1.err" &
pids+=($!); h1_pid=$!
still_serving "during H1" 6
wait "$h1_pid"
cat "$work/h1.json" "$work/h1.err"
verdict "H1: the flood was 2048 names of one old hash" \
  test "$(json "$work/h1.json" distinct_old_hashes)" = 1
h1_probes() {
  echo "slot_probe_max $(stat slot_probe_max) (limit $(stat slot_probe_limit)), probe_limit $(stat drop_probe_limit), counters_in_use $(stat counters_in_use)"
  [ -n "$(stat slot_probe_max)" ] && [ "$(stat slot_probe_max)" -lt 256 ] &&
    [ "$(stat drop_probe_limit)" = 0 ] && [ "$(stat counters_in_use)" -ge 2048 ] &&
    [ "$(stat drop_counters_full)" = 0 ] && [ "$(( $(stat drop_statsd_share_full) + 0 ))" = 0 ]
}
verdict "H1: the longest probe stays short and nothing hit the probe bound" h1_probes
still_serving "at the end" 5

# ---- H3: a batch captured on the wire at another node, replayed here -----------------
# The attacker recorded a real batch a producer sent to another node (10.77.0.2)
# and replays it to this one, 300 times, while a reliable producer runs. Its
# MAC covers its destination (protocol version 2): refused unanswered, counted
# batch_wrong_node, never counted. REPLAY_NODE_OFF=1 replays a batch MAC'd for
# this node instead (what every batch was before version 2, when the MAC named
# no node): it is counted and answered, and this part fails.
h3_for=10.77.0.2
[ "${REPLAY_NODE_OFF:-0}" = 1 ] && h3_for=10.77.0.1
wrong_node_before=$(( $(stat drop_batch_wrong_node) + 0 ))
peer timeout 60 python3 - "$tools" "$h3_for" >"$work/h3.out" 2>&1 <<'PY'
import os, socket, sys
sys.path.insert(0, sys.argv[1])
import tally_wire
key = bytes.fromhex(os.environ["TALLY_KEY"])
captured = tally_wire.encode_batch(9401, 1, [("adv.h3.replayed", 1000)], key, (sys.argv[2], 8126))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.002)
answers = 0
for _ in range(300):
    s.sendto(captured, ("10.77.0.1", 8126))
    try:
        s.recv(2048)
        answers += 1
    except socket.timeout:
        pass
s.settimeout(1.0)
try:
    while True:
        s.recv(2048)
        answers += 1
except socket.timeout:
    pass
print("answers", answers)
PY
cat "$work/h3.out"
verdict "H3: the replayed batch of another node is never answered" grep -q "^answers 0$" "$work/h3.out"
verdict "H3: and never counted" test "$($ctl get adv.h3.replayed 2>/dev/null || echo 0)" = 0
h3_counted() { local now; now=$(( $(stat drop_batch_wrong_node) + 0 )); echo "batch_wrong_node: $wrong_node_before -> $now"; [ "$now" -ge $((wrong_node_before + 250)) ]; }
verdict "H3: and counted batch_wrong_node (each replay that reached the node)" h3_counted
still_serving "H3: after the replays" 8

# ---- C1 shedding: per-source token buckets, the allow-list, degradation levels ------
# Budget: 50 datagrams a second per source, bursts of 200, statsd only from
# 10.77.0.0/24: tallyd restarted with them on a fresh store (the sections above
# ran without, so their floods were not held to a budget; C1's junk names fill
# statsd's share of the old store).
tally_stop TERM
tally_write_config "$work/tally.ini" "$work/store-shedding.pmem" "$work/sock"
if [ "${SHEDDING_OFF:-0}" != 1 ]; then
  sed -i 's|^\[ingest\]$|[ingest]\nstatsd_source_rate = 50\nstatsd_source_burst = 200\nstatsd_allow_cidrs = 10.77.0.0/24|' \
    "$work/tally.ini"
fi
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
verdict "C1 shedding: tallyd restarted with the budget becomes ready" \
  tally_wait_ready "$build" "$work/sock" 30
statsd_seen() {
  echo $(( $(stat statsd_datagrams) + $(stat drop_statsd_source_over_budget) +
    $(stat drop_statsd_source_not_allowed) + $(stat drop_statsd_shed) + 0 ))
}
wait_statsd() { # wait_statsd N: until tallyd has taken N statsd datagrams in all (bounded)
  for _ in $(seq 1 100); do [ "$(statsd_seen)" -ge "$1" ] && return 0; sleep 0.1; done
  echo "C1 shedding: tallyd saw $(statsd_seen) of $1 statsd datagrams (the veth dropped some)"
  return 1
}
spoof() { peer timeout 60 python3 "$attack" spoofed_statsd peer0 "$node_mac" 10.77.0.1 "$@"; }
base=$(statsd_seen)
spoof 10.77.0.99 3000 --name adv.c1s.flood
wait_statsd $((base + 3000))
flood=$($ctl get adv.c1s.flood); flood=${flood:-0}
echo "C1 shedding: flood counted $flood of 3000, over budget $(stat drop_statsd_source_over_budget)"
verdict "C1 shedding: the flooding source is held to its budget" test "$flood" -lt 1000
verdict "C1 shedding: its datagrams over budget are counted" \
  test "$(( $(stat drop_statsd_source_over_budget) + 0 ))" -ge $((3000 - flood - 100))
base=$(statsd_seen)
spoof 10.77.0.51 150 --name adv.c1s.good
wait_statsd $((base + 150))
verdict "C1 shedding: a second source's 150 datagrams are counted exactly" \
  test "$($ctl get adv.c1s.good)" = 150
base=$(statsd_seen)
spoof 10.78.5.9 40 --name adv.c1s.outside
wait_statsd $((base + 40))
verdict "C1 shedding: a source outside statsd_allow_cidrs is not counted" \
  test "$($ctl get adv.c1s.outside 2>/dev/null || echo 0)" = 0
verdict "C1 shedding: and its datagrams are counted as not allowed" \
  test "$(( $(stat drop_statsd_source_not_allowed) + 0 ))" -ge 1
still_serving "C1 shedding: after the flood" 16
said=$($ctl degrade 2 2>&1); code=$?
echo "$said"
verdict "C1 shedding: tallyctl degrade 2 is accepted" exited_with 0 "degradation level 2"
verdict "C1 shedding: stats show level 2 (also --json)" \
  test "$(stat degradation_level)/$($ctl --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["degradation_level"])')" = 2/2
shed_all() { # shed_all LABEL SOURCE NAME: 20 statsd datagrams, every one shed and counted
  local shed_before base
  shed_before=$(( $(stat drop_statsd_shed) + 0 ))
  base=$(statsd_seen)
  spoof "$2" 20 --name "$3"
  wait_statsd $((base + 20))
  verdict "$1 every statsd datagram is shed and counted" \
    test "$(( $(stat drop_statsd_shed) + 0 ))" -ge $((shed_before + 20))
  verdict "$1 and none counted" test "$($ctl get "$3" 2>/dev/null || echo 0)" = 0
}
shed_all "C1 shedding: at level 2" 10.77.0.52 adv.c1s.shed
still_serving "C1 shedding: at level 2" 17
said=$($ctl degrade auto 2>&1); code=$?
verdict "C1 shedding: tallyctl degrade auto hands the level back" exited_with 0 "automatic"
verdict "C1 shedding: the level is 0 again" test "$(stat degradation_level)" = 0
# Level 3 (reliable read-only), forced: reliable batches are answered READ_ONLY
# (retryable, never acked, never counted), statsd is shed; a producer that keeps
# retrying through it is acked once degrade auto hands the level back, exactly.
said=$($ctl degrade 3 2>&1); code=$?
verdict "level 3: tallyctl degrade 3 is accepted" exited_with 0 "degradation level 3"
verdict "level 3: stats show level 3" test "$(stat degradation_level)" = 3
read_only_before=$(( $(stat batches_read_only) + 0 ))
said=$(peer "$build/control/tally-produce" --nodes 10.77.0.1:8126 --producer 9401 \
  --timeout-ms 1500 --ack-timeout-ms 100 adv.l3.x:1 2>&1); code=$?
echo "$said" | tail -3
# Every attempt answered (no ack timeout), none acked: READ_ONLY until the deadline.
verdict "level 3: a reliable batch is answered READ_ONLY, never acked" exited_with 1 "ack_timeouts 0"
verdict "level 3: the refusals are counted" \
  test "$(( $(stat batches_read_only) + 0 ))" -gt "$read_only_before"
verdict "level 3: the refused batch is not counted" \
  test "$($ctl get adv.l3.x 2>/dev/null || echo 0)" = 0
shed_all "level 3:" 10.77.0.53 adv.l3.shed
read_only_before=$(( $(stat batches_read_only) + 0 ))
peer timeout 90 python3 "$tools/reliable_producer.py" --seed 18 --producers 1 --batches 20 \
  --first-producer 9018 --prefix adv18. --deadline-s 80 --report "$work/rel18.json" >/dev/null &
waiting=$!
pids+=("$waiting")
refused_more() { # refused_more N: until N more batches were answered READ_ONLY (bounded)
  for _ in $(seq 1 100); do
    [ "$(( $(stat batches_read_only) + 0 ))" -ge $((read_only_before + $1)) ] && return 0
    sleep 0.1
  done
  return 1
}
verdict "level 3: a producer's retries are answered READ_ONLY meanwhile" refused_more 3
verdict "level 3: nothing of it is counted yet" test -z "$($ctl list adv18. 2>/dev/null)"
said=$($ctl degrade auto 2>&1); code=$?
verdict "level 3: tallyctl degrade auto hands the level back" exited_with 0 "automatic"
verdict "level 3: the level is 0 again" test "$(stat degradation_level)" = 0
wait "$waiting"
verdict "level 3: after degrade auto the waiting producer's 20 batches are all acked" \
  producer_ok "$work/rel18.json" 20
verdict "level 3: and counted exactly (nothing acked lost, nothing twice)" \
  acked_within "$build/control/tallyctl" "$work/sock" "adv18." "$work/rel18.json" exact
still_serving "level 3: after it" 19

# ---- M2: each producer's own key (ingest.producer_keys = derived) -----------------
# Last, on tallyd restarted on a fresh store: the sections above produce with
# the shared ingest.key.
tally_stop TERM
tally_write_config "$work/tally.ini" "$work/store-m2.pmem" "$work/sock"
keys_mode=derived
[ "${PRODUCER_KEYS_OFF:-0}" = 1 ] && keys_mode=shared
sed -i "s|^\[ingest\]$|[ingest]\nproducer_keys = $keys_mode|" "$work/tally.ini"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
verdict "M2: tallyd restarted with producer_keys = $keys_mode becomes ready" \
  tally_wait_ready "$build" "$work/sock" 30
for who in a:9301 b:9302; do
  if [ "$keys_mode" = derived ]; then
    "$build/control/tallyctl" producer-key "${who#*:}" --config "$work/tally.ini" \
      --out "$work/key-${who%%:*}"
  else # shared: every producer holds ingest.key
    (umask 077; echo "$TALLY_KEY" >"$work/key-${who%%:*}")
  fi
done
verdict "M2: tallyctl producer-key writes a file only its owner may read" \
  test "$(command stat -c %a "$work/key-a")" = 600
derived_hex() { # derived_hex ID: the derived key, as tallyd's lcores compute it
  python3 -c 'import hashlib, os, sys; print(hashlib.blake2b(int(sys.argv[1]).to_bytes(8, "little"), digest_size=32, key=bytes.fromhex(os.environ["TALLY_KEY"]), person=b"tally-producer\0\0").hexdigest())' "$1"
}
verdict "M2: and it holds A's derived key" test "$(cat "$work/key-a")" = "$(derived_hex 9301)"
bad_mac_before=$(( $(stat drop_batch_bad_mac) + 0 ))
peer timeout 60 "$build/control/tally-produce" --nodes 10.77.0.1:8126 --key-file "$work/key-a" \
  --producer 9302 --seq 1000000 --timeout-ms 2000 adv.m2.forged:1000 >"$work/m2a.out" 2>&1
code=$?
cat "$work/m2a.out"
verdict "M2: A's batch claiming B's id is not acked" test "$code" -ne 0
verdict "M2: and is counted batch_bad_mac" \
  test "$(( $(stat drop_batch_bad_mac) + 0 ))" -ge $((bad_mac_before + 1))
verdict "M2: and nothing of it is counted" test "$($ctl get adv.m2.forged 2>/dev/null || echo 0)" = 0
peer env TALLY_KEY="$(cat "$work/key-b")" timeout 60 python3 "$tools/reliable_producer.py" \
  --seed 31 --producers 1 --batches 20 --first-producer 9302 --prefix adv.m2. \
  --report "$work/m2b.json" >/dev/null
verdict "M2: B's own 20 batches are all acked (its window not jumped)" producer_ok "$work/m2b.json" 20
verdict "M2: and counted exactly" \
  acked_within "$build/control/tallyctl" "$work/sock" "adv.m2." "$work/m2b.json" exact
peer timeout 60 "$build/control/tally-produce" --nodes 10.77.0.1:8126 --key-file "$work/key-a" \
  --producer 9301 adv.m2a:7 >"$work/m2own.out" 2>&1
verdict "M2: A's own batch, under its own key, is acked" grep -q "^acked 1 batches" "$work/m2own.out"
verdict "M2: and counted" test "$($ctl get adv.m2a)" = 7

if [ "$failed" -gt 0 ]; then echo "--- tallyd log (tail)"; tail -25 "$work/tallyd.log"; fi

# ---- M3: heartbeats of two incarnations replayed, on a 3-node cluster ---------------
tally_stop TERM
tally_netns_down
bash "$root/tests/adversary/heartbeat_replay.sh" "$build" >"$work/m3.out" 2>&1
grep -E '^(PASS|FAIL) |passed,|^restarts seen' "$work/m3.out"
m3_passed=$(awk '/ passed, / { print $1 }' "$work/m3.out")
m3_failed=$(awk '/ passed, / { print $3 }' "$work/m3.out")
passed=$((passed + ${m3_passed:-0}))
failed=$((failed + ${m3_failed:-1}))
[ "${m3_failed:-1}" = 0 ] || tail -40 "$work/m3.out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
