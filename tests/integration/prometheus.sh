#!/usr/bin/env bash
# prometheus.sh — GET /counters read by a real Prometheus server (Debian's
# prometheus package), in network namespaces this test creates.
#
# One node: statsd (with negative deltas, sampled and DogStatsD-tagged lines)
# and reliable batches; /counters passes `promtool check metrics` and
# /metrics too, answers OpenMetrics (ending "# EOF") when asked, filters by
# ?prefix=; two statsd names that map to one metric name stay two series; a
# Prometheus server on the shipped config/prometheus/prometheus.yml (scraping
# every second) then answers a PromQL instant query per metric
# (docs/operations.md, "Prometheus") with exactly the totals sent.
#
# Three nodes: statsd to node 1 and reliable batches through node 2; once
# replicated, Prometheus (in node 3's namespace, scraping all three) answers
# the documented cluster-wide query exactly and the partial marker is 0; node
# 1 is killed (-9), and once nodes 2 and 3 see it down the same query is still
# exact (from their replicas of node 1) and the partial marker says 1.
#
# Every wait is a bounded wait for a condition. Processes are stopped by PID.
# Run under `flock /tmp/tally-netns.lock`. Prints PASS/FAIL lines and
# "N passed, N failed".
# Usage: prometheus.sh BUILD_DIR   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-prometheus.XXXXXX)
tools=$root/tests/tools
tallyctl=$build/control/tallyctl
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
passed=0
failed=0
prom_pid=
prom_ns=

stop_prometheus() {
  [ -n "$prom_pid" ] || return 0
  {
    kill -TERM "$prom_pid"
    for _ in $(seq 100); do kill -0 "$prom_pid" || break; sleep 0.1; done
    kill -KILL "$prom_pid"
    wait "$prom_pid"
  } 2>/dev/null
  prom_pid=
}
cleanup() {
  stop_prometheus
  tally_stop KILL
  tally_netns_down
  cluster_down
  rm -rf "$work"
}
trap cleanup EXIT

# start_prometheus NS CONFIG: a Prometheus server in NS on 127.0.0.1:9190 on
# that config (checked by promtool first), its storage in $work.
start_prometheus() {
  prom_ns=$1
  promtool check config "$2" >/dev/null || { echo "promtool check config $2 failed"; return 1; }
  rm -rf "$work/prom-data"
  ip netns exec "$prom_ns" prometheus --config.file="$2" \
    --storage.tsdb.path="$work/prom-data" --web.listen-address=127.0.0.1:9190 \
    --log.level=warn >>"$work/prometheus.log" 2>&1 &
  prom_pid=$!
}
# shipped_config: config/prometheus/prometheus.yml as docs/operations.md gives
# it for the demo (jobs tally and tally-counters on 127.0.0.1:9125, the alert
# rules), scraping every second instead of every 5 s.
shipped_config() {
  cp "$root/config/prometheus/prometheus.yml" "$root/config/prometheus/tally.rules.yml" "$work/"
  sed -i 's/^\(  [a-z_]*_interval:\) 5s$/\1 1s/' "$work/prometheus.yml"
  grep -q '^  scrape_interval: 1s$' "$work/prometheus.yml"
}
# cluster_config TARGET...: /counters of every target each second.
cluster_config() {
  local targets
  targets=$(printf "'%s'," "$@")
  cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tally-counters
    metrics_path: /counters
    static_configs:
      - targets: [${targets%,}]
YML
}
prom_ready() { ip netns exec "$prom_ns" curl -sf --max-time 2 http://127.0.0.1:9190/-/ready >/dev/null; }
# up_is INSTANCE VALUE: Prometheus's own `up` for that target.
up_is() {
  local got
  got=$(ip netns exec "$prom_ns" curl -sf --max-time 2 http://127.0.0.1:9190/api/v1/query \
    --data-urlencode "query=up{job=\"tally-counters\",instance=\"$1\"}" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")')
  [ "$got" = "$2" ] || { echo "up{instance=\"$1\"} is $got, want $2"; return 1; }
}
prom_exact() { ip netns exec "$prom_ns" python3 "$tools/prom_check.py" "$@"; }

openmetrics_ok() { # the OpenMetrics answer: its content type, HELP/TYPE, ends with # EOF
  local ns=$1 headers body
  headers=$(ip netns exec "$ns" curl -sf --max-time 10 -D - -o "$work/om.txt" \
    -H 'Accept: application/openmetrics-text; version=1.0.0' http://127.0.0.1:9125/counters) || return 1
  grep -qi '^content-type: application/openmetrics-text; version=1.0.0' <<<"$headers" ||
    { echo "content type: $headers"; return 1; }
  [ "$(tail -1 "$work/om.txt")" = "# EOF" ] || { echo "no # EOF at the end"; return 1; }
  grep -q '^# TYPE app_1 gauge$' "$work/om.txt"
}
prefix_ok() { # ?prefix=svc lists the svc keys only, and a bad prefix is answered 400
  local ns=$1 lines code
  lines=$(ip netns exec "$ns" curl -sf --max-time 5 'http://127.0.0.1:9125/counters?prefix=svc' |
    grep -vc '^#')
  [ "$lines" -eq 2 ] || { echo "prefix=svc: $lines samples, want 2"; return 1; }
  code=$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    'http://127.0.0.1:9125/counters?prefix=a%7Cb')
  [ "$code" = 400 ] || { echo "prefix a|b answered $code, want 400"; return 1; }
}
collision_ok() { # svc.x.hits and svc_x.hits: one family, two series, their own values
  local body
  body=$(ip netns exec "$1" curl -sf --max-time 5 'http://127.0.0.1:9125/counters?prefix=svc')
  grep -qx 'svc_x_hits 5' <<<"$body" && grep -qx 'svc_x_hits{statsd_name="svc_x.hits"} 7' <<<"$body" &&
    [ "$(grep -c '^# TYPE svc_x_hits gauge$' <<<"$body")" -eq 1 ] || { echo "$body"; return 1; }
}
svc_totals() { echo '{"totals": {"svc.x.hits": 5, "svc_x.hits": 7}}' >"$1"; }

seed=${TALLY_SEED:-$RANDOM}
echo "seed $seed"

# ---- One node -----------------------------------------------------------------
tally_netns_up "pm$$"
tally_write_config "$work/tally.ini" "$work/store.pmem" "$work/sock"
tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
verdict "one node: tallyd becomes ready" tally_wait_ready "$build" "$work/sock" 30
peer() { ip netns exec "$TALLY_PEER_NS" "$@"; }
peer timeout 60 python3 "$tools/statsd_send.py" --target 10.77.0.1:8125 --seed "$seed" \
  --datagrams 1000 --lines 20 --counters 40 --prefix app. --rate 5000 --expect "$work/app.json" >/dev/null
peer python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"svc.x.hits:5|c\nsvc_x.hits:7|c", ("10.77.0.1", 8125))
PY
svc_totals "$work/svc.json"
TALLY_KEY=$key peer timeout 60 python3 "$tools/reliable_producer.py" --target 10.77.0.1:8126 \
  --producers 2 --batches 40 --counters 6 --prefix rel. --seed "$seed" --negative \
  --report "$work/rel.json" >/dev/null
verdict "one node: reliable batches all acked" producer_ok "$work/rel.json"
verdict "one node: tallyctl holds what was sent" \
  wait_for 10 counts_match "$tallyctl" "$work/sock" app. "$work/app.json"
verdict "one node: /counters passes promtool check metrics" counters_lint "$TALLY_NODE_NS"
verdict "one node: /metrics passes promtool check metrics" metrics_lint "$TALLY_NODE_NS"
verdict "one node: OpenMetrics when asked, ending # EOF" openmetrics_ok "$TALLY_NODE_NS"
verdict "one node: ?prefix= filters, a bad prefix is 400" prefix_ok "$TALLY_NODE_NS"
verdict "one node: two names mapping to one metric name stay two series" collision_ok "$TALLY_NODE_NS"
verdict "one node: the shipped prometheus.yml, scraping each second" shipped_config
start_prometheus "$TALLY_NODE_NS" "$work/prometheus.yml"
verdict "one node: prometheus server ready" wait_for 30 prom_ready
verdict "one node: prometheus scraped /counters (up 1)" wait_for 20 up_is 127.0.0.1:9125 1
verdict "one node: PromQL values equal what was sent (statsd, colliding names, reliable)" \
  wait_for 20 prom_exact --expect "$work/app.json" --expect "$work/svc.json" --expect "$work/rel.json"
stop_prometheus
tally_stop TERM
tally_netns_down

# ---- Three nodes, then one killed ---------------------------------------------
nodes=3
ctl() { local i=$1; shift; "$tallyctl" -s "$work/sock$i" "$@"; }
# seen_down J I...: every node I sees peer J down.
seen_down() {
  local j=$1 i
  shift
  for i in "$@"; do ctl "$i" cluster | grep -q "^peer $j state=down " || return 1; done
}
match_all() { # match_all PREFIX EXPECT_JSON: every node's local view exact
  local i
  for i in $(seq "$nodes"); do counts_match "$tallyctl" "$work/sock$i" "$1" "$2" || return 1; done
}
rel_exact_all() { local i; for i in $(seq "$nodes"); do acked_within "$tallyctl" "$work/sock$i" rel. "$work/crel.json" exact || return 1; done; }
cluster_up "pc$$" "$nodes" || { echo "FAIL namespaces created"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
for i in $(seq "$nodes"); do
  cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i"
  # HTTP on every address of the node, so that one Prometheus reaches all three
  # over the replication links (10.78.0.i).
  sed -i 's/^http = 127.0.0.1:9125$/http = 0.0.0.0:9125/' "$work/n$i.ini"
  cluster_start "$build" "$i" "$work/n$i.ini" "$work/n$i.log"
done
for i in $(seq "$nodes"); do
  verdict "cluster: node $i becomes ready" cluster_wait_ready "$build" "$i" "$work/sock$i" 60
done
cluster_producer timeout 60 python3 "$tools/statsd_send.py" --target 10.77.0.1:8125 --seed "$seed" \
  --datagrams 600 --lines 20 --counters 20 --prefix sd. --rate 5000 --expect "$work/sd.json" >/dev/null
TALLY_KEY=$key cluster_producer timeout 60 python3 "$tools/reliable_producer.py" --target 10.77.0.2:8126 \
  --producers 2 --batches 30 --counters 6 --prefix rel. --seed "$seed" --report "$work/crel.json" >/dev/null
verdict "cluster: reliable batches through node 2 all acked" producer_ok "$work/crel.json"
cluster_totals_ok() { match_all sd. "$work/sd.json" && rel_exact_all; }
verdict "cluster: every node holds the statsd and reliable totals" wait_for 20 cluster_totals_ok
for i in $(seq "$nodes"); do
  verdict "cluster: node $i /counters passes promtool check metrics" counters_lint "${CLUSTER_NS[$i]}"
done
cluster_config 10.78.0.1:9125 10.78.0.2:9125 10.78.0.3:9125
start_prometheus "${CLUSTER_NS[3]}" "$work/prometheus.yml"
verdict "cluster: prometheus server ready" wait_for 30 prom_ready
for i in $(seq "$nodes"); do
  verdict "cluster: prometheus scrapes node $i (up 1)" wait_for 20 up_is "10.78.0.$i:9125" 1
done
verdict "cluster: the cluster-wide query is exact, partial marker 0" \
  wait_for 20 prom_exact --cluster --partial 0 --expect "$work/sd.json" --expect "$work/crel.json"
cluster_stop 1 KILL
verdict "cluster: nodes 2 and 3 see node 1 down" wait_for 15 seen_down 1 2 3
verdict "cluster: prometheus sees node 1 gone (up 0)" wait_for 20 up_is 10.78.0.1:9125 0
verdict "cluster: node 2 /counters with node 1 down passes promtool check metrics" \
  counters_lint "${CLUSTER_NS[2]}"
verdict "cluster: node 1 killed: the cluster-wide query is still exact, partial marker 1" \
  wait_for 20 prom_exact --cluster --partial 1 --expect "$work/sd.json" --expect "$work/crel.json"
stop_prometheus
echo "prometheus.sh took $SECONDS s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
