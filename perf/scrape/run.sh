#!/usr/bin/env bash
# perf/scrape/run.sh — the cost of one GET /counters scrape with N counters
# (docs/benchmarks.md, "Scraping /counters"). For each N: tallyd (one
# dataplane lcore, store.counters_max = N + 4096, store on /tmp) in the
# namespaces of scripts/netns.sh; N distinct statsd counters sent from the
# peer namespace until `counters_in_use` says N; then, per scrape (text
# format, then OpenMetrics as Prometheus asks for it), three runs of: reset
# tallyd's peak RSS (/proc/PID/clear_refs 5), time the scrape with curl from
# the node namespace (body to /dev/null), sample tallyd's RssAnon every 5 ms
# while it runs, read VmHWM after, and the CPU time of each tallyd thread
# over the scrape (/proc/PID/task/*/stat). Prints one line per scrape and a Markdown
# table. Then whether a scrape delays the lcore: for SCRAPE_LOAD_SECONDS (default
# 10; 0 skips it) statsd at SCRAPE_LOAD_RATE datagrams/s (default 4000, 40 lines
# each, over the N counters) with no scrape, then again with a scrape started
# every second; statsd_increments counted against lines sent, for both.
# Timings are this machine's (perf/, never tests/). Root; hugepages.
# Usage: perf/scrape/run.sh BUILD_DIR [N...]   (default: 10000 100000 1000000)
set -uo pipefail
build=${1:?build dir}
shift
counts=("$@")
[ "${#counts[@]}" -gt 0 ] || counts=(10000 100000 1000000)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
work=$(mktemp -d /tmp/tally-scrape.XXXXXX)
sampler=
cleanup() {
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null
  tally_stop KILL
  tally_netns_down
  rm -rf "$work"
}
trap cleanup EXIT
ctl() { "$build/control/tallyctl" -s "$work/sock" "$@"; }
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$TALLYD_PID/status"; }
# thread_cpu: "name ticks" per tallyd thread (utime + stime, clock ticks), sorted by name.
thread_cpu() {
  local task
  for task in /proc/"$TALLYD_PID"/task/*; do
    awk -v name="$(cat "$task/comm")" '{ sub(/^.*\) /, ""); print name, $12 + $13 }' "$task/stat"
  done | awk '{ t[$1] += $2 } END { for (n in t) print n, t[n] }' | sort
}
# cpu_delta BEFORE AFTER: "name=seconds" for each thread that used CPU between them.
cpu_delta() {
  join <(echo "$1") <(echo "$2") | awk -v hz="$(getconf CLK_TCK)" \
    '$3 > $2 { printf "%s%s=%.2fs", sep, $1, ($3 - $2) / hz; sep = " " }'
}

# fill N: N distinct counters bench.c0.. (40 lines per datagram, 4000 datagrams/s:
# the af_packet ring of a 2-core machine drops frames beyond that), resent
# until tallyd holds them all (a resend only adds to counters already there).
fill() {
  local n=$1 round
  for round in 1 2 3 4 5; do
    ip netns exec "$TALLY_PEER_NS" python3 - "$n" <<'PY'
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
lines, start, sent = 40, time.monotonic(), 0
for first in range(0, n, lines):
    s.sendto("\n".join("bench.c%d:1|c" % i for i in range(first, min(n, first + lines))).encode(),
             ("10.77.0.1", 8125))
    sent += 1
    ahead = sent / 4000.0 - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
PY
    sleep 0.5
    [ "$(ctl stats | awk '$1 == "counters_in_use" { print $2 }')" -ge "$n" ] && return 0
  done
  return 1
}

# scrape LABEL ACCEPT: three timed scrapes; one line each.
scrape() {
  local label=$1 accept=$2 run rss_before out max_anon cpu_before cpu
  for run in 1 2 3; do
    rss_before=$(kib VmRSS)
    echo 5 >"/proc/$TALLYD_PID/clear_refs"
    cpu_before=$(thread_cpu)
    (max=0; while :; do a=$(kib RssAnon); [ "${a:-0}" -gt "$max" ] && max=$a && echo "$max" >"$work/anon"; sleep 0.005; done) &
    sampler=$!
    out=$(ip netns exec "$TALLY_NODE_NS" curl -sf -o /dev/null -H "Accept: $accept" \
      -w '%{time_total} %{size_download}' http://127.0.0.1:9125/counters)
    cpu=$(cpu_delta "$cpu_before" "$(thread_cpu)")
    kill "$sampler"; wait "$sampler" 2>/dev/null; sampler=
    max_anon=$(cat "$work/anon")
    read -r seconds bytes <<<"$out"
    echo "$n $label run $run: ${seconds}s, $bytes bytes; tallyd VmRSS before $rss_before KiB," \
      "peak (VmHWM) $(kib VmHWM) KiB, RssAnon peak $max_anon KiB; tallyd CPU by thread: $cpu"
    echo "| $n | $label | $seconds | $((bytes / 1048576)) | $rss_before | $(kib VmHWM) | $max_anon | $cpu |" >>"$work/table"
  done
}

# load N LABEL SCRAPE(0|1): statsd at the load rate for the load seconds; a line.
load() {
  local n=$1 label=$2 scraping=$3 before after sent scraper= scrapes=0
  before=$(ctl stats | awk '$1 == "statsd_increments" { print $2 }')
  if [ "$scraping" = 1 ]; then
    (while :; do
       ip netns exec "$TALLY_NODE_NS" curl -sf -o /dev/null http://127.0.0.1:9125/counters &
       sleep 1
     done) &
    scraper=$!
  fi
  sent=$(ip netns exec "$TALLY_PEER_NS" python3 - "$n" "$load_rate" "$load_seconds" <<'PY'
import socket, sys, time
n, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
grams = ["\n".join("bench.c%d:1|c" % ((g * 40 + i) % n) for i in range(40)).encode() for g in range(256)]
start, sent = time.monotonic(), 0
while time.monotonic() - start < seconds:
    s.sendto(grams[sent % len(grams)], ("10.77.0.1", 8125))
    sent += 1
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent * 40)
PY
)
  if [ -n "$scraper" ]; then kill "$scraper"; wait "$scraper" 2>/dev/null; fi
  sleep 1
  after=$(ctl stats | awk '$1 == "statsd_increments" { print $2 }')
  echo "$n load $label: $sent lines sent in ${load_seconds}s, $((after - before)) counted" \
    "(missing $((sent - (after - before))))"
  echo "| $n | $label | $sent | $((after - before)) | $((sent - (after - before))) |" >>"$work/load"
}
load_seconds=${SCRAPE_LOAD_SECONDS:-10}
load_rate=${SCRAPE_LOAD_RATE:-4000}
echo "| counters | scrapes | lines sent | counted | missing |" >"$work/load"
echo "|---|---|---|---|---|" >>"$work/load"

echo "| counters | format | seconds | MiB | VmRSS before (KiB) | VmHWM during (KiB) | RssAnon peak (KiB) | tallyd CPU by thread |" >"$work/table"
echo "|---|---|---|---|---|---|---|---|" >>"$work/table"
for n in "${counts[@]}"; do
  tally_netns_up "sc$$"
  rm -f "$work/store.pmem"
  tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
  sed -i "s/^counters_max = .*/counters_max = $((n + 4096))/" "$work/tally.ini"
  sed -i 's/^\[ingest\]$/[ingest]\nstatsd_counters_percent = 100/' "$work/tally.ini" # n statsd names
  tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
  tally_wait_ready "$build" "$work/sock" 120 || { cat "$work/tallyd.log"; exit 1; }
  fill "$n" || { echo "could not fill $n counters: $(ctl stats | grep counters_)"; exit 1; }
  echo "$n counters in use: $(ctl stats | awk '$1 == "counters_in_use" { print $2 }')"
  scrape text "text/plain"
  scrape openmetrics "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
  if [ "$load_seconds" != 0 ]; then
    load "$n" none 0
    load "$n" "every 1 s" 1
  fi
  tally_stop TERM
  tally_netns_down
done
cat "$work/table"
[ "$load_seconds" = 0 ] || cat "$work/load"
