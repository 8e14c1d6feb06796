#!/usr/bin/env bash
# crash.sh — kill -9 tallyd at random moments under reliable-producer and
# statsd load, restart it, let producers retry, and check for every counter:
# reliable: acked <= value <= attempted, and since every batch ends acked
# (no error ack), value == acked (no batch lost, none counted twice);
# statsd: what was read just before each kill <= value <= sent. Each round
# must show a kill under load: at least MIN_ACKED batches acked before the
# kill and after it, both producers running at the kill, and resends or
# duplicate acks after it. Recovery must report every shard of every start
# with nothing quarantined or discarded. Prints its seed and kill schedule;
# TALLY_SEED=N replays a run.
#
# MODE (default group): group runs the store in group-commit mode; log runs
# store.persist = log with the image on /dev/shm and the log in the work
# directory (every kill leaves the image); power does as log and, after
# every even-numbered kill, deletes the image as a power loss does to tmpfs,
# with checkpoints every 300 ms and 64 KiB log segments: the restart loads
# the newest checkpoint and replays the log after it (asserted: recovered
# from checkpoint+log, the log cut), and still value == acked for every
# reliable counter; statsd then only needs value <= sent (its increments
# reach the disk only with checkpoints), and the reads before a power loss
# no longer bound it.
# Usage: crash.sh BUILD_DIR [KILLS] [group|log|power]   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
kills=${2:-${TALLY_CRASH_KILLS:-5}}
mode=${3:-${TALLY_CRASH_MODE:-group}}
case $mode in group|log|power) ;; *) echo "crash.sh: mode $mode: not group, log or power"; exit 64 ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-crash.XXXXXX)
image_dir=/dev/shm/tally-crash.$$ # log and power modes: the image on tmpfs
suffix=c$$
producer_pid=
statsd_pid=
cleanup() {
  [ -n "$producer_pid" ] && kill "$producer_pid" 2>/dev/null
  [ -n "$statsd_pid" ] && kill "$statsd_pid" 2>/dev/null
  tally_stop KILL; tally_netns_down; rm -rf "$work" "$image_dir"
}
trap cleanup EXIT
tools=$root/tests/tools
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
seed=${TALLY_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "seed $seed kills $kills mode $mode (replay: TALLY_SEED=$seed bash $0 BUILD $kills $mode)"

tally_netns_up "$suffix"
store=$work/store.pmem
if [ "$mode" != group ]; then
  mkdir -p "$image_dir"
  store=$image_dir/image
fi
tally_write_config "$work/tally.ini" "$store" "$work/sock"
if [ "$mode" != group ]; then
  sed -i "s|^commit_interval_ms = .*|&\npersist = log\nlog_dir = $work/log|" "$work/tally.ini"
fi
# Power mode: checkpoints every 300 ms, so every power loss recovers from the
# newest checkpoint plus the log after it (and the log is cut meanwhile).
if [ "$mode" = power ]; then
  sed -i "s|^log_dir = .*|&\ncheckpoint_interval_ms = 300\nlog_segment_bytes = 65536\nlog_group_bytes = 16384|" "$work/tally.ini"
fi
# A long commit interval widens the window between apply and ack, so kills
# land there and retries must be answered DUPLICATE, not counted again.
sed -i "s/^commit_interval_ms = .*/commit_interval_ms = 40/" "$work/tally.ini"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
tally_wait_ready "$build" "$work/sock" 30 || { echo "FAIL tallyd did not start"; exit 1; }

# Log mode acks within a round trip or two of the fdatasync (no 40 ms commit
# interval): its producers need more batches to be still running at the last kill.
per_round=100
[ "$mode" != group ] && per_round=250
batches=$((per_round * kills + 100))
TALLY_KEY=$key ip netns exec "$TALLY_PEER_NS" python3 "$tools/reliable_producer.py" \
  --seed "$seed" --producers 4 --batches "$batches" --retry-ms 30 --deadline-s 240 \
  --progress "$work/progress.json" --report "$work/reliable.json" >"$work/producer.log" 2>&1 &
producer_pid=$!
# statsd runs until stopped (SIGTERM) after the last round: it is under load at every kill.
ip netns exec "$TALLY_PEER_NS" python3 "$tools/statsd_send.py" --seed "$seed" --positive \
  --datagrams 10000000 --lines 10 --rate 1500 --prefix fire. --expect "$work/statsd.json" \
  >"$work/statsd.log" 2>&1 &
statsd_pid=$!

min_acked=20 # batches acked in each round before the kill, and again after it
ctl="$build/control/tallyctl -s $work/sock"
field() { # field FILE KEY: a field of a reliable_producer.py progress file
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
acked_at_least() { # acked_at_least N: the producers have N batches acked
  local now
  now=$(field "$work/progress.json" acked 2>/dev/null)
  echo "acked ${now:-?}, want >= $1"
  [ -n "$now" ] && [ "$now" -ge "$1" ]
}
under_load() { # under_load ROUND: both producers alive, batches in flight
  kill -0 "$producer_pid" 2>/dev/null || { echo "reliable producer exited"; return 1; }
  kill -0 "$statsd_pid" 2>/dev/null || { echo "statsd sender exited"; return 1; }
  cp "$work/progress.json" "$work/at_kill.$1.json"
  [ "$(field "$work/at_kill.$1.json" finished)" = False ] &&
    [ "$(field "$work/at_kill.$1.json" in_flight)" -gt 0 ]
}
retried() { # retried ROUND: resends or duplicate acks since the kill
  local before after
  before=$(( $(field "$work/killed.$1.json" resends) + $(field "$work/killed.$1.json" duplicate_acks) ))
  after=$(( $(field "$work/progress.json" resends) + $(field "$work/progress.json" duplicate_acks) ))
  echo "resends + duplicate acks: $before at the kill, $after now"
  [ "$after" -gt "$before" ]
}
snapshot() { # snapshot FILE: tallyd's statsd counts, read with exit 0, not empty
  $ctl list fire. >"$1" && [ -s "$1" ]
}

# checkpoints_cut: a checkpoint file exists and the oldest log segment is not LSN 1.
checkpoints_cut() {
  ls "$work/log" | grep -q '^ckpt-.*\.tck$' &&
    ! ls "$work/log" | grep -v '^ckpt-' | sort | head -1 | grep -q '0000000000000001'
}

base=0
power_losses=0
for i in $(seq "$kills"); do
  check "round $i: $min_acked batches acked before the kill" \
    wait_for 60 acked_at_least $((base + min_acked))
  pause_ms=$((200 + RANDOM % 1300))
  echo "kill $i: after ${pause_ms} ms more of load"
  sleep "$(printf '0.%03d' "$pause_ms")"; [ "$pause_ms" -ge 1000 ] && sleep 1
  check "round $i: statsd counts read just before the kill" snapshot "$work/fire.$i"
  check "round $i: producers running at the kill, batches in flight" under_load "$i"
  kill -KILL "$TALLYD_PID"; wait "$TALLYD_PID" 2>/dev/null || true
  if [ "$mode" = power ] && [ $((i % 2)) -eq 0 ]; then
    rm -f "$store" "$work"/fire.* # power loss: the image is gone, statsd reads no longer bound
    power_losses=$((power_losses + 1))
    echo "kill $i: power loss (image deleted)"
  fi
  sleep 0.2 # (the progress file then holds every ack sent before the kill)
  cp "$work/progress.json" "$work/killed.$i.json"
  killed_acked=$(field "$work/killed.$i.json" acked)
  echo "kill $i: $((killed_acked - base)) batches acked in this round before it"
  tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
  if ! tally_wait_ready "$build" "$work/sock" 30; then
    echo "FAIL restart $i: tallyd not ready"; tail -20 "$work/tallyd.log"; exit 1
  fi
  check "round $i: $min_acked batches acked after the restart" \
    wait_for 60 acked_at_least $((killed_acked + min_acked))
  check "round $i: producers resent (or got duplicate acks) after the kill" retried "$i"
  base=$(field "$work/progress.json" acked)
done
wait "$producer_pid"; producer_status=$?; producer_pid=
kill -TERM "$statsd_pid"; wait "$statsd_pid"; statsd_status=$?; statsd_pid=
sleep 0.5
cat "$work/producer.log" "$work/statsd.log"

check "tallyd restarted $kills times after kill -9 ($power_losses of them after a power loss)" \
  test "$(grep -c 'unclean shutdown' "$work/tallyd.log")" -eq "$((kills - power_losses))"
if [ "$mode" = log ]; then
  check "log mode: $power_losses starts recovered from the log, $((kills - power_losses)) from the image" \
    test "$(grep -c 'recovered from log:' "$work/tallyd.log")" -eq "$power_losses" -a \
    "$(grep -c 'recovered from image:' "$work/tallyd.log")" -eq "$((kills - power_losses))"
elif [ "$mode" = power ]; then
  check "power mode: $power_losses starts recovered from a checkpoint + the log, $((kills - power_losses)) from the image" \
    test "$(grep -c 'recovered from checkpoint+log:' "$work/tallyd.log")" -eq "$power_losses" -a \
    "$(grep -c 'recovered from image:' "$work/tallyd.log")" -eq "$((kills - power_losses))"
  check "power mode: checkpoints were taken and the log was cut behind them" \
    checkpoints_cut
fi
check "reliable producer exited 0 (every batch settled, no error ack)" test "$producer_status" -eq 0
check "reliable: all $((4 * batches)) batches acked, no error ack" \
  producer_ok "$work/reliable.json" $((4 * batches))
check "reliable: acked <= value <= attempted for every counter" \
  acked_within "$build/control/tallyctl" "$work/sock" rel. "$work/reliable.json"
check "reliable: value == acked for every counter (none lost, none twice)" \
  acked_within "$build/control/tallyctl" "$work/sock" rel. "$work/reliable.json" exact
check "statsd sender stopped cleanly (exit 0)" test "$statsd_status" -eq 0
# fire_bounded: for every statsd counter, the most read before any kill <=
# value <= sent (counts are positive, so they only grow).
fire_bounded() {
  python3 - "$build/control/tallyctl" "$work/sock" "$work/statsd.json" "$mode" $(ls "$work"/fire.* 2>/dev/null) <<'PY'
import json, subprocess, sys
tallyctl, sock, expect, mode = sys.argv[1:5]
del sys.argv[4]
totals = json.load(open(expect))["totals"]
out = subprocess.run([tallyctl, "-s", sock, "list", "fire."], capture_output=True, text=True, check=True).stdout
got = {l.split()[0]: int(l.split()[1]) for l in out.splitlines()}
floor = {}
for path in sys.argv[4:]:
    for line in open(path):
        name, value = line.split()
        floor[name] = max(floor.get(name, 0), int(value))
over = {k: (got[k], totals.get(k)) for k in got if got[k] > totals.get(k, 0)}
under = {k: (got.get(k), v) for k, v in floor.items() if got.get(k, 0) < v}
print("statsd: sent %d, read before the last kill %d, counted %d; %d snapshots" %
      (sum(totals.values()), sum(floor.values()), sum(got.values()), len(sys.argv) - 4))
if over or under:
    print("above sent (value, sent):", over, "below a read before a kill (value, read):", under)
# After a power loss no read bounds statsd from below (its increments are not logged).
sys.exit(1 if over or under or (len(sys.argv) == 4 and mode != "power") or not got else 0)
PY
}
check "statsd: every counter between what was read before the kills and what was sent" fire_bounded
# recovered_clean: the log holds every start's shard lines, with nothing
# quarantined (slots or producers) and no redo record discarded.
recovered_clean() {
  python3 - "$work/tallyd.log" "$((kills + 1))" <<'PY'
import re, sys
log, starts = sys.argv[1], int(sys.argv[2])
text = open(log).read()
stores = re.findall(r"^tallyd: store .*, (\d+) shards,", text, re.M)
shards = re.findall(r"^tallyd: shard \d+: .* discarded (\d+), quarantined (\d+) slots (\d+) producers,", text, re.M)
bad = [s for s in shards if s != ("0", "0", "0")]
print("%d starts, %d shard reports, %d with something discarded or quarantined" %
      (len(stores), len(shards), len(bad)))
sys.exit(0 if len(stores) == starts and len(shards) == sum(map(int, stores)) and not bad else 1)
PY
}
check "recovery found no corrupt record (every shard of every start reported)" recovered_clean
if [ "$mode" != group ]; then
  # The log's figures on /metrics (commit histogram, bytes, recovery source) pass promtool.
  check "log mode: /metrics passes promtool check metrics" metrics_lint "$TALLY_NODE_NS"
  log_metrics() { # the log's commit histogram, where the last start came from, the faults
    local body
    body=$(ip netns exec "$TALLY_NODE_NS" curl -sf --max-time 5 http://127.0.0.1:9125/metrics) ||
      return 1
    grep -qE '^tally_log_commit_seconds_count [1-9]' <<<"$body" &&
      grep -qE '^tally_log_recovery_source\{source="(image|log|checkpoint\+log)"\} 1$' <<<"$body" &&
      grep -qE '^tally_lcore_page_faults_total\{lcore="0",kind="minor"\} [0-9]+$' <<<"$body" &&
      { [ "$mode" != power ] || { grep -qE '^tally_checkpoints_finished_total [1-9]' <<<"$body" &&
        grep -qE '^tally_statsd_window_seconds 0\.3$' <<<"$body"; }; }
  }
  check "log mode: /metrics has the log's commit histogram, recovery source and faults" log_metrics
fi
