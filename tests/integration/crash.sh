#!/usr/bin/env bash
# crash.sh — kill -9 tallyd at random moments under reliable-producer and
# statsd load, restart it, let producers retry, and check for every counter:
# reliable: acked <= value <= attempted, and since every batch ends acked,
# value == acked (no batch lost, none counted twice); statsd: value <= sent.
# Prints its seed and kill schedule; TALLY_SEED=N replays a run.
# Usage: crash.sh BUILD_DIR [KILLS]   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
kills=${2:-${TALLY_CRASH_KILLS:-5}}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-crash.XXXXXX)
suffix=c$$
producer_pid=
statsd_pid=
cleanup() {
  [ -n "$producer_pid" ] && kill "$producer_pid" 2>/dev/null
  [ -n "$statsd_pid" ] && kill "$statsd_pid" 2>/dev/null
  tally_stop KILL; tally_netns_down; rm -rf "$work"
}
trap cleanup EXIT
tools=$root/tests/tools
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
seed=${TALLY_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "seed $seed kills $kills (replay: TALLY_SEED=$seed bash $0 BUILD $kills)"

tally_netns_up "$suffix"
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
# A long commit interval widens the window between apply and ack, so kills
# land there and retries must be answered DUPLICATE, not counted again.
sed -i "s/^commit_interval_ms = .*/commit_interval_ms = 40/" "$work/tally.ini"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
tally_wait_ready "$build" "$work/sock" 30 || { echo "FAIL tallyd did not start"; exit 1; }

ip netns exec "$TALLY_PEER_NS" python3 "$tools/reliable_producer.py" --key "$key" \
  --seed "$seed" --producers 4 --batches 600 --retry-ms 30 --deadline-s 240 \
  --report "$work/reliable.json" >"$work/producer.log" 2>&1 &
producer_pid=$!
ip netns exec "$TALLY_PEER_NS" python3 "$tools/statsd_send.py" --seed "$seed" --positive \
  --datagrams 6000 --lines 10 --rate 1500 --prefix fire. --expect "$work/statsd.json" \
  >"$work/statsd.log" 2>&1 &
statsd_pid=$!

for i in $(seq "$kills"); do
  pause_ms=$((200 + RANDOM % 1300))
  echo "kill $i: after ${pause_ms} ms of load"
  sleep "$(printf '0.%03d' "$pause_ms")"; [ "$pause_ms" -ge 1000 ] && sleep 1
  kill -KILL "$TALLYD_PID"; wait "$TALLYD_PID" 2>/dev/null || true
  tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
  if ! tally_wait_ready "$build" "$work/sock" 30; then
    echo "FAIL restart $i: tallyd not ready"; tail -20 "$work/tallyd.log"; exit 1
  fi
done
wait "$producer_pid"; producer_pid=
wait "$statsd_pid"; statsd_pid=
sleep 0.5
cat "$work/producer.log"

check "tallyd restarted $kills times after kill -9" \
  test "$(grep -c 'unclean shutdown' "$work/tallyd.log")" -eq "$kills"
check "reliable: acked <= value <= attempted for every counter" \
  acked_within "$build/control/tallyctl" "$work/sock" rel. "$work/reliable.json"
unacked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"]["unacked"])' "$work/reliable.json")
check "reliable: every batch ended acked" test "$unacked" -eq 0
check "reliable: value == acked for every counter (none lost, none twice)" \
  acked_within "$build/control/tallyctl" "$work/sock" rel. "$work/reliable.json" exact
fire_bounded() {
  python3 - "$build/control/tallyctl" "$work/sock" "$work/statsd.json" <<'PY'
import json, subprocess, sys
tallyctl, sock, expect = sys.argv[1:4]
totals = json.load(open(expect))["totals"]
out = subprocess.run([tallyctl, "-s", sock, "list", "fire."], capture_output=True, text=True, check=True).stdout
got = {l.split()[0]: int(l.split()[1]) for l in out.splitlines()}
over = {k: (got[k], totals.get(k)) for k in got if got[k] > totals.get(k, 0)}
lost = sum(totals.values()) - sum(got.values())
print("statsd: sent %d, counted %d, lost while down %d" % (sum(totals.values()), sum(got.values()), lost))
sys.exit(1 if over else 0)
PY
}
check "statsd: no counter above what was sent" fire_bounded
check "recovery found no corrupt record" bash -c "! grep -E 'quarantined [1-9]|discarded [1-9]' '$work/tallyd.log'"
