#!/usr/bin/env bash
# graphite.sh — the Graphite push against a real carbon (Debian's
# graphite-carbon: carbon-cache, with a private config, storage and ports on
# the node namespace's loopback, where tallyd's graphite thread connects
# through the namespace's kernel stack, not the DPDK port). First carbon is
# down at start: connects fail and are retried with backoff, the bounded
# buffer drops lines and counts them, /metrics says so; then carbon starts
# and the pushes resume. Then statsd counts (negative ones and names carbon
# dislikes included) are read back from carbon's whisper files with
# whisper-fetch and must equal what was sent. Also: a bad [graphite] value is
# refused with one line naming the key, and /metrics with the push's figures
# passes promtool check metrics. Prints PASS/FAIL lines.
# Usage: graphite.sh BUILD_DIR   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-graphite.XXXXXX)
suffix=g$$
carbon_pid=
carbon_stop() {
  [ -n "$carbon_pid" ] || return 0
  kill "$carbon_pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$carbon_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$carbon_pid" 2>/dev/null
  wait "$carbon_pid" 2>/dev/null
  carbon_pid=
}
cleanup() { tally_stop KILL; carbon_stop; tally_netns_down; rm -rf "$work"; }
trap cleanup EXIT
tools=$root/tests/tools
ctl="$build/control/tallyctl -s $work/sock"
peer() { ip netns exec "$TALLY_PEER_NS" "$@"; }
node() { ip netns exec "$TALLY_NODE_NS" "$@"; }
stat() { $ctl stats | awk -v k="$1" '$1 == k { print $2 }'; }
stat_at_least() { local v; v=$(stat "$1"); echo "$1 = ${v:-none}"; [ -n "$v" ] && [ "$v" -ge "$2" ]; }

# carbon-cache with everything private: config, storage, logs, pid file, and
# ports on the node namespace's loopback (nothing of the host's is touched).
carbon_port=22003
whisper=$work/carbon/storage/whisper
mkdir -p "$work/carbon/conf" "$work/carbon/log" "$whisper"
cat >"$work/carbon/conf/carbon.conf" <<INI
[cache]
STORAGE_DIR = $work/carbon/storage/
LOCAL_DATA_DIR = $whisper/
WHITELISTS_DIR = $work/carbon/storage/lists/
CONF_DIR = $work/carbon/conf/
LOG_DIR = $work/carbon/log/
PID_DIR = $work/carbon/
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = $carbon_port
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 22004
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = 22002
ENABLE_TAGS = False
WHISPER_AUTOFLUSH = True
INI
printf '[all]\npattern = .*\nretentions = 1s:1h\n' >"$work/carbon/conf/storage-schemas.conf"
carbon_start() { # not through node(): $! must be carbon's own PID (ip netns exec execs it)
  ip netns exec "$TALLY_NODE_NS" carbon-cache --config="$work/carbon/conf/carbon.conf" --pidfile="$work/carbon/carbon.pid" \
    --logdir="$work/carbon/log" --nodaemon start >>"$work/carbon.log" 2>&1 &
  carbon_pid=$!
}
carbon_listening() { node ss -Hltn "sport = :$carbon_port" | grep -q LISTEN; }

tally_netns_up "$suffix"
# A 64 KiB buffer (the minimum): 1500 counters take about 46 KiB a snapshot,
# so the second snapshot with carbon down cannot fit whole.
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock" "[graphite]" \
  "address = 127.0.0.1:$carbon_port" "interval_ms = 1000" "prefix = tally.t" "buffer_bytes = 65536"

# A bad value: one line naming the key, exit 2.
sed 's/^address = .*/address = carbon.example:2003/' "$work/tally.ini" >"$work/bad.ini"
out=$("$build/control/tallyd" -c "$work/bad.ini" 2>&1); status=$?
echo "$out"
check "bad graphite.address refused with exit 2, naming the key" \
  bash -c "[ $status -eq 2 ] && grep -q 'graphite.address' <<<'$out' && [ $(wc -l <<<"$out") -eq 1 ]"

# ---- carbon down at start ----
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
check "tallyd ready (carbon down)" tally_wait_ready "$build" "$work/sock" 30
load() {
  python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
names = ["load.%d:1|c" % i for i in range(1500)]
for i in range(0, len(names), 50):
    s.sendto("\n".join(names[i:i + 50]).encode(), ("10.77.0.1", 8125))
PY
}
peer bash -c "$(declare -f load); load"
check "1500 counters counted" wait_for 10 stat_at_least counters_in_use 1500
check "carbon down: connects fail and are retried" wait_for 30 stat_at_least graphite_connect_failures 2
check "carbon down: not connected, nothing pushed" \
  bash -c "[ '$(stat graphite_connected)' = 0 ] && [ '$(stat graphite_pushes)' = 0 ]"
check "carbon down: the full buffer drops lines and counts them" \
  wait_for 30 stat_at_least graphite_lines_dropped 1
check "carbon down: the buffer stays within its bound" \
  test "$(stat graphite_buffer_bytes)" -le "$(stat graphite_buffer_capacity_bytes)"
check "carbon down: tallyd still counts and answers (ready)" $ctl ready
check "carbon down: /metrics (with tally_graphite_*) passes promtool check metrics" \
  metrics_lint "$TALLY_NODE_NS"
$ctl stats | grep '^graphite_'

# ---- carbon starts: the pushes resume ----
carbon_start
check "carbon listening on the node namespace's loopback" wait_for 30 carbon_listening
check "carbon up: the pushes resume (backoff retried)" wait_for 30 stat_at_least graphite_pushes 1
check "carbon up: connected" test "$(stat graphite_connected)" = 1
printf '{%s}\n' "$(for i in 0 1 2 3 4 5 6 7 8 9 1499; do printf '"tally.t.load.%d": 1,' "$i"; done |
  sed 's/,$//')" >"$work/load.json"
check "carbon up: pushed values reach whisper" \
  wait_for 30 python3 "$tools/carbon_fetch.py" "$whisper" "$work/load.json"

# ---- exact values through carbon ----
send_exact() { # sends a seeded workload; writes the carbon path -> total map
  python3 - "$1" <<'PY'
import json, random, socket, sys
rng = random.Random(20261207)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# statsd name -> carbon path: plain names keep their dots; others are mapped.
names = {"gr.c%d" % i: "tally.t.gr.c%d" % i for i in range(40)}
names["gr.odd/name(1)"] = "tally.t.gr.odd_name_1_"
names["gr..dots"] = "tally.t.gr._dots"
totals = dict.fromkeys(names, 0)
for _ in range(200):
    lines = []
    for _ in range(20):
        name = rng.choice(sorted(names))
        delta = rng.randrange(-50, 1000)
        totals[name] += delta
        lines.append("%s:%d|c" % (name, delta))
    s.sendto("\n".join(lines).encode(), ("10.77.0.1", 8125))
json.dump({names[n]: v for n, v in totals.items()}, open(sys.argv[1], "w"))
json.dump(totals, open(sys.argv[1] + ".names", "w"))
PY
}
peer bash -c "$(declare -f send_exact); send_exact $work/exact.json"
tally_exact() {
  python3 - "$build/control/tallyctl" "$work/sock" "$work/exact.json.names" <<'PY'
import json, subprocess, sys
ctl, sock, names = sys.argv[1:4]
bad = {}
for name, total in json.load(open(names)).items():
    out = subprocess.run([ctl, "-s", sock, "get", name], capture_output=True, text=True).stdout
    if out.strip() != str(total):
        bad[name] = (total, out.strip())
print("tallyd differs:", bad) if bad else print("tallyd holds every total")
sys.exit(1 if bad else 0)
PY
}
check "statsd: tallyd holds every total exactly" wait_for 10 tally_exact
check "carbon: whisper-fetch reads back exactly what was sent (names mapped)" \
  wait_for 30 python3 "$tools/carbon_fetch.py" "$whisper" "$work/exact.json"
check "/metrics with carbon up passes promtool check metrics" metrics_lint "$TALLY_NODE_NS"
$ctl stats | grep '^graphite_'
tally_stop TERM
check "tallyd stops cleanly with the push running" grep -q "stopped cleanly" "$work/tallyd.log"
# Against a sanitizer build (ASan/UBSan: the runtime's name is in the binary),
# tallyd's log must hold no report.
if grep -qa AddressSanitizer "$build/control/tallyd"; then
  check "sanitizer build: tallyd's log holds no sanitizer report" bash -c \
    "test -s '$work/tallyd.log' && ! grep -E 'Sanitizer|runtime error' '$work/tallyd.log'"
fi
