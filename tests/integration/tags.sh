#!/usr/bin/env bash
# tags.sh — DogStatsD tags as dimensions, end to end on a veth pair between
# network namespaces this test creates (scripts/netns.sh): tagged and
# untagged statsd lines (tags in any order, repeated, valueless) counted
# exactly per tag set; every tag rejection counted by reason; the npm
# hot-shots client's tagged counters (global and per-call tags) exact per tag
# set; binary tagged pairs through libtally (tally-produce) in any order on
# one key; tallyctl get and list with tags in any order; ingest.statsd_tags =
# drop (one counter per name, as before tags) and allow (an allow-list);
# store.counters_max bounding the tag sets, the rest counted as
# counters_full; the single-node upgrade path (list, then tally-produce on a
# fresh store) keeps every key. hot-shots is installed with npm into /var/tmp/tally-npm
# (pinned; kept between runs). Prints PASS/FAIL lines.
# Usage: tags.sh BUILD_DIR   (root; hugepages reserved; run under flock /tmp/tally-netns.lock)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-tags.XXXXXX)
suffix=t$$
cleanup() { tally_stop KILL; tally_netns_down; rm -rf "$work"; }
trap cleanup EXIT
ctl="$build/control/tallyctl -s $work/sock"
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
npm_prefix=/var/tmp/tally-npm
hot_shots_version=11.2.0 # engines: node >= 16 (Debian 12 has 18)
peer() { ip netns exec "$TALLY_PEER_NS" "$@"; }
stat() { $ctl stats | awk -v k="$1" '$1 == k { print $2 }'; }

# get_is KEY VALUE: tallyctl get KEY prints exactly VALUE.
get_is() {
  local got
  got=$($ctl get "$1" 2>&1)
  [ "$got" = "$2" ] || { echo "get $1: expected $2, got $got"; return 1; }
}

# list_is ARGUMENT EXPECTED_FILE: tallyctl list ARGUMENT prints exactly those lines (sorted).
list_is() {
  local got
  if [ -n "$1" ]; then got=$($ctl list "$1" | sort); else got=$($ctl list | sort); fi
  if ! diff <(echo "$got") <(sort "$2"); then echo "list $1 differs (<got >want)"; return 1; fi
}

# wait_lines N: waits (bounded) until tallyd has parsed N statsd lines in all.
wait_lines() {
  for _ in $(seq 100); do
    [ "$(stat statsd_lines)" = "$1" ] && return 0
    sleep 0.1
  done
  echo "statsd_lines $(stat statsd_lines), expected $1"
  return 1
}

# send FILE: sends each line of FILE as one statsd datagram from the peer namespace.
send() {
  peer python3 - "$1" <<'PY'
import socket, sys, time
lines = open(sys.argv[1]).read().splitlines()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i, line in enumerate(lines):
    s.sendto(line.encode(), ("10.77.0.1", 8125))
    if i % 50 == 49:
        time.sleep(0.01)  # pacing only (the kernel's af_packet ring), never an assertion
PY
}

# restart EXTRA_INGEST_LINES...: tallyd again on the same store, with these [ingest] lines.
restart() {
  tally_stop TERM
  tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
  for line in "$@"; do sed -i "/^binary_port/a $line" "$work/tally.ini"; done
  tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
  tally_wait_ready "$build" "$work/sock" 30
}

tally_netns_up "$suffix"
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
check "tallyd becomes ready" tally_wait_ready "$build" "$work/sock" 30
check "ICMP echo answered (ARP resolved)" peer ping -c 2 -W 2 10.77.0.1

# 1. statsd, keep (the default): one counter per name and tag set, tags in any order.
{
  for _ in $(seq 40); do echo 'req:1|c|#status:500,method:GET'; done
  for _ in $(seq 30); do echo 'req:2|c|#method:GET,status:500'; done
  for _ in $(seq 25); do echo 'req:1|c|#status:200,method:GET,status:200'; done
  for _ in $(seq 20); do echo 'req:5|c'; done
  for _ in $(seq 10); do echo 'req:1|c|#canary,env:'; done
  for _ in $(seq 10); do echo 'req:4|c|@0.5|#status:500'; done
  echo 'req:1|c|#a:1,a:2'         # statsd_tag_duplicate
  echo 'req:1|c|#url:http://x'    # statsd_tag_bad_char
  echo 'req:1|c|#a:1,,b:2'        # statsd_tag_empty
  echo 're{q:1|c|#a:1'            # statsd_name_bad_char
} >"$work/lines1"
send "$work/lines1"
check "statsd: every line parsed" wait_lines "$(wc -l <"$work/lines1")"
check "statsd: tags in any order are one counter" get_is 'req{method=GET,status=500}' 100
check "tallyctl get: tags in any order" get_is 'req{status=500,method=GET}' 100
check "statsd: a repeated tag counts once" get_is 'req{status=200,method=GET}' 25
check "statsd: the untagged name is its own counter" get_is req 100
check "statsd: valueless tags (env: is env)" get_is 'req{env,canary}' 10
check "statsd: a sampled tagged line" get_is 'req{status=500}' 80
printf '%s\n' 'req 100' 'req{canary,env} 10' 'req{method=GET,status=200} 25' \
  'req{method=GET,status=500} 100' 'req{status=500} 80' >"$work/want_all"
check "tallyctl list 'req{}': the name with every tag set" list_is 'req{}' "$work/want_all"
printf '%s\n' 'req{method=GET,status=500} 100' 'req{status=500} 80' >"$work/want_500"
check "tallyctl list 'req{status=500}': the tag sets holding it" list_is 'req{status=500}' "$work/want_500"
check "tallyctl list 'req{GET=x}': none" test -z "$($ctl list 'req{GET=x}')"
check "tallyctl get: a bad tag set is refused (exit 3)" bash -c \
  "$ctl get 'req{a=1,a=2}' 2>&1 | grep -q 'one tag key with two different values'; test \${PIPESTATUS[0]} -eq 3"
check "tallyctl get: a missing tag set is not found (exit 1)" bash -c \
  "$ctl get 'req{status=404}' >/dev/null 2>&1; test \$? -eq 1"
for reason in statsd_tag_duplicate statsd_tag_bad_char statsd_tag_empty statsd_name_bad_char; do
  check "statsd: $reason counted" test "$(stat "drop_$reason")" = 1
done
check "/metrics: the tag rejection reasons are exported" bash -c \
  "ip netns exec $TALLY_NODE_NS curl -s http://127.0.0.1:9125/metrics | grep -q 'reason=\"statsd_tag_duplicate\"'"

# 2. hot-shots (npm), the DogStatsD client: global and per-call tags, object and array forms.
if [ ! -f "$npm_prefix/node_modules/hot-shots/package.json" ]; then
  mkdir -p "$npm_prefix"
  npm install --prefix "$npm_prefix" --no-audit --no-fund --ignore-scripts \
    "hot-shots@$hot_shots_version" >"$work/npm.log" 2>&1 || cat "$work/npm.log"
fi
check "hot-shots $hot_shots_version installed (npm)" \
  test -f "$npm_prefix/node_modules/hot-shots/package.json"
before=$(stat statsd_lines)
peer env NODE_PATH="$npm_prefix/node_modules" node - <<'JS' >"$work/hot-shots.log" 2>&1
const StatsD = require('hot-shots');
const client = new StatsD({ host: '10.77.0.1', port: 8125, globalTags: { env: 'ci' },
  errorHandler: (error) => { console.error('hot-shots:', error); process.exitCode = 1; } });
let sent = 0;
function burst() {
  // 50 increments per tick: pacing only (the kernel's af_packet ring), never an assertion.
  for (let i = 0; i < 50 && sent < 600; i++, sent++) {
    if (sent % 3 === 0) client.increment('hs.req', 1, { status: '500', route: '/api' });
    else if (sent % 3 === 1) client.increment('hs.req', 2, ['route:/api', 'status:200']);
    else client.increment('hs.req', 3);
  }
  if (sent < 600) setTimeout(burst, 20); else client.close(() => console.log('sent', sent));
}
burst();
JS
cat "$work/hot-shots.log"
check "hot-shots: 600 increments sent" grep -qx "sent 600" "$work/hot-shots.log"
check "hot-shots: every line parsed" wait_lines "$((before + 600))"
check "hot-shots: tags as an object, exact" get_is 'hs.req{status=500,route=/api,env=ci}' 200
check "hot-shots: tags as an array, exact" get_is 'hs.req{env=ci,route=/api,status=200}' 400
check "hot-shots: global tags alone, exact" get_is 'hs.req{env=ci}' 600
printf '%s\n' 'hs.req{env=ci} 600' 'hs.req{env=ci,route=/api,status=200} 400' \
  'hs.req{env=ci,route=/api,status=500} 200' >"$work/want_hs"
check "hot-shots: one counter per tag set, no other" list_is 'hs.req{}' "$work/want_hs"

# 3. Binary tagged pairs through libtally (tally-produce): any order, one key, acked.
peer env TALLY_KEY="$key" "$build/control/tally-produce" --nodes 10.77.0.1:8126 --producer 7001 \
  'pay{region=eu,method=card}:5' 'pay{method=card,region=eu}:7' 'pay:1' >"$work/produce" 2>&1
status=$?
cat "$work/produce"
check "binary: the batch is acked" bash -c \
  "test $status -eq 0 && grep -qx 'acked 1 batches (applied 1, duplicate 0)' $work/produce"
check "binary: tagged pairs in any order on one key" get_is 'pay{region=eu,method=card}' 12
check "binary: the untagged pair apart" get_is pay 1
peer env TALLY_KEY="$key" "$build/control/tally-produce" --nodes 10.77.0.1:8126 --producer 7002 \
  'pay{a=1,a=2}:5' >"$work/produce_bad" 2>&1
status=$?
cat "$work/produce_bad"
check "binary: a bad tag set is refused before sending (libtally EINVAL)" test "$status" -ne 0

# 4. ingest.statsd_tags = drop: tags skipped, one counter per name (as before tags).
check "restart with statsd_tags = drop" restart 'statsd_tags = drop'
before=$(stat statsd_lines)
printf '%s\n' 'drop:1|c|#a:1' 'drop:2|c|#a:2' 'drop:4|c|#a:1,a:2' 'drop:8|c' >"$work/lines4"
send "$work/lines4"
check "drop: every line parsed" wait_lines "$((before + 4))"
check "drop: every tag set in the bare name" get_is drop 15
check "drop: no tagged counter" test -z "$($ctl list 'drop{a=1}')"

# 5. ingest.statsd_tags = allow: only the allow-list's tag keys.
check "restart with statsd_tags = allow, statsd_tags_allow = status" \
  restart 'statsd_tags = allow' 'statsd_tags_allow = status'
before=$(stat statsd_lines)
printf '%s\n' 'allow:1|c|#status:500,host:web1' 'allow:2|c|#host:web2,status:500' \
  'allow:4|c|#host:web3' >"$work/lines5"
send "$work/lines5"
check "allow: every line parsed" wait_lines "$((before + 3))"
check "allow: the allowed tag kept, others skipped" get_is 'allow{status=500}' 3
check "allow: no allowed tag: the bare name" get_is allow 4
check "allow: counts from before the restart kept" get_is 'req{method=GET,status=500}' 100

# 6. The upgrade path of docs/store-layout.md (layout 5) for a single node: every
# key saved with tallyctl list, re-added on a fresh store through tally-produce.
$ctl list >"$work/counts"
tally_stop TERM
tally_write_config "$work/fresh.ini" "$work/fresh.pmem" "$work/sock"
tally_start "$build" "$work/fresh.ini" "$work/tallyd.log"
check "restart on a fresh store" tally_wait_ready "$build" "$work/sock" 30
peer env TALLY_KEY="$key" "$build/control/tally-produce" --nodes 10.77.0.1:8126 --producer 7003 \
  --flush-every 20 <"$work/counts" >"$work/readd" 2>&1
status=$?
tail -3 "$work/readd"
check "upgrade path: every saved key re-added (tally-produce exit 0)" test "$status" -eq 0
check "upgrade path: the fresh store lists exactly the saved keys and values" list_is '' "$work/counts"

# 7. store.counters_max bounds tag sets as it bounds names: the rest is counters_full.
tally_stop TERM
tally_write_config "$work/small.ini" "$work/small.pmem" "$work/sock"
sed -i 's/^counters_max = .*/counters_max = 16/' "$work/small.ini"
sed -i 's/^\[ingest\]$/[ingest]\nstatsd_counters_percent = 100/' "$work/small.ini" # statsd's whole table
tally_start "$build" "$work/small.ini" "$work/tallyd.log"
check "restart on a store of counters_max 16" tally_wait_ready "$build" "$work/sock" 30
for i in $(seq 0 39); do echo "card:1|c|#id:$i"; done >"$work/lines6"
send "$work/lines6"
check "cardinality: every line parsed" wait_lines 40
check "cardinality: 16 tag sets counted" test "$($ctl list 'card{}' | wc -l)" -eq 16
check "cardinality: 24 refused as counters_full" test "$(stat drop_counters_full)" = 24

check "tallyd log has no assertion failure" bash -c "! grep -q 'Assertion' $work/tallyd.log"
