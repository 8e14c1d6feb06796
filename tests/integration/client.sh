#!/usr/bin/env bash
# client.sh — libtally through tally-produce against a real tallyd, in the
# network namespaces this test creates (scripts/netns.sh): 50 batches all
# acked and counted exactly; NAME:DELTA arguments; a rerun with the same
# (producer, seq) answered duplicate and not counted twice; failover past a
# silent first node (10.77.0.9, inside the test subnet, where nothing
# answers) with every batch still acked and counted once; and a node that is
# down reported as failed batches with exit 1, never as success.
# Prints PASS/FAIL lines. Usage: client.sh BUILD_DIR   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-client.XXXXXX)
suffix=c$$
cleanup() { tally_stop KILL; tally_netns_down; rm -rf "$work"; }
trap cleanup EXIT
produce=$build/control/tally-produce
ctl="$build/control/tallyctl -s $work/sock"
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
export TALLY_KEY=$key # tally-produce takes its key from here, never from its command line
peer() { ip netns exec "$TALLY_PEER_NS" "$@"; }

# workload SEED PREFIX LINES INPUT EXPECT: LINES "name delta" lines over 10
# counters (negative deltas too) and the sum per counter.
workload() {
  python3 - "$@" <<'PY'
import random, sys
seed, prefix, lines, inp, expect = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = random.Random(seed)
sums = {}
with open(inp, "w") as f:
    for _ in range(lines):
        name = "%s%d" % (prefix, rng.randrange(10))
        delta = rng.randint(-50, 1000)
        sums[name] = sums.get(name, 0) + delta
        f.write("%s %d\n" % (name, delta))
with open(expect, "w") as f:
    for name in sorted(sums):
        f.write("%s %d\n" % (name, sums[name]))
PY
}

# sums_exact PREFIX EXPECT: tallyctl get of every expected counter gives its
# sum, and tallyctl list PREFIX shows no other counter.
sums_exact() {
  local name sum got bad=0
  while read -r name sum; do
    got=$($ctl get "$name")
    if [ "$got" != "$sum" ]; then echo "$name: expected $sum, got $got"; bad=1; fi
  done <"$2"
  if [ "$($ctl list "$1" | wc -l)" -ne "$(wc -l <"$2")" ]; then echo "extra counters"; bad=1; fi
  [ "$bad" -eq 0 ] && echo "$(wc -l <"$2") counters exact"
  return "$bad"
}

tally_netns_up "$suffix"
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
check "tallyd becomes ready" tally_wait_ready "$build" "$work/sock" 30
seed=${TALLY_SEED:-$RANDOM}
echo "seed $seed"

# 1. 50 batches of 10 increments from stdin: all acked, exact sums.
workload "$seed" cl. 500 "$work/in1" "$work/expect1"
peer "$produce" --nodes 10.77.0.1:8126 --producer 4001 --seq 1 --flush-every 10 \
  <"$work/in1" >"$work/out1" 2>"$work/err1"
status=$?
cat "$work/out1" "$work/err1"
check "tally-produce: exit 0 when every batch is acked" test "$status" -eq 0
check "tally-produce: 50 batches acked" grep -qx "acked 50 batches (applied 50, duplicate 0)" "$work/out1"
check "tally-produce: no batch failed" grep -qx "failed 0 batches" "$work/out1"
check "tally-produce: next_seq to persist is 51" grep -qx "next_seq 51" "$work/out1"
check "tallyctl get: the exact sums" sums_exact cl. "$work/expect1"

# 2. NAME:DELTA arguments (coalesced into one batch).
peer "$produce" --nodes 10.77.0.1:8126 --producer 4002 args.a:5 args.b:-7 args.a:10 \
  >"$work/out2" 2>&1
status=$?
check "arguments: exit 0, one batch acked" bash -c \
  "test $status -eq 0 && grep -qx 'acked 1 batches (applied 1, duplicate 0)' $work/out2"
check "arguments: counted" test "$($ctl get args.a) $($ctl get args.b)" = "15 -7"

# 3. The same producer and seqs again: every batch answered duplicate, nothing counted twice.
peer "$produce" --nodes 10.77.0.1:8126 --producer 4001 --seq 1 --flush-every 10 \
  <"$work/in1" >"$work/out3" 2>"$work/err3"
status=$?
check "rerun: acked as 50 duplicates" grep -qx "acked 50 batches (applied 0, duplicate 50)" "$work/out3"
check "rerun: warns that the seqs were used before" grep -q "seq was used before" "$work/err3"
check "rerun: sums unchanged (dedup)" sums_exact cl. "$work/expect1"

# 4. Failover: the first node is silent; every batch is still acked, via the second.
workload "$((seed + 1))" fo. 500 "$work/in4" "$work/expect4"
peer "$produce" --nodes 10.77.0.9:8126,10.77.0.1:8126 --producer 4003 \
  --flush-every 10 --ack-timeout-ms 100 <"$work/in4" >"$work/out4" 2>"$work/err4"
status=$?
cat "$work/out4" "$work/err4"
check "failover: exit 0" test "$status" -eq 0
check "failover: 50 batches acked" grep -qx "acked 50 batches (applied 50, duplicate 0)" "$work/out4"
check "failover: the silent node's breaker opened" \
  bash -c "grep -q ' breaker_opens [1-9]' $work/out4"
check "failover: retries went out" grep -Eq ' retransmissions [1-9][0-9]* ' "$work/out4"
check "failover: exact sums (counted once)" sums_exact fo. "$work/expect4"

# 5. No node answers: the batches are reported failed (timeout), exit 1.
tally_stop TERM
peer "$produce" --nodes 10.77.0.1:8126 --producer 4004 --timeout-ms 400 \
  --ack-timeout-ms 50 --retries 3 down.a:1 >"$work/out5" 2>&1
status=$?
cat "$work/out5"
check "node down: exit 1" test "$status" -eq 1
check "node down: the batch is reported failed with timeout" \
  grep -q "^failed seq 1 status timeout attempts [1-4] pairs 1" "$work/out5"
