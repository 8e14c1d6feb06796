#!/usr/bin/env bash
# detection.sh — failure-detection time and false suspicions of the cluster
# under delay, jitter and loss on the replication/heartbeat links. This
# kernel has no sch_netem (docs/cluster-testing.md), so the faults come from
# tallyd's own test-only fault stage on its cluster socket (cluster.fault_*,
# control/cluster/cluster_fault.c), applied to every datagram every node sends.
#
# 3 nodes in network namespaces this script creates (scripts/cluster-netns.sh).
# For each setting (delay, jitter, loss) of a grid, on ALL nodes: restart the
# nodes with it (fresh detectors: their history holds only this setting), wait
# until every peer is up, warm up, then
#   (a) false suspicions: every node's `cluster` sampled every 50 ms for
#       --sample-s seconds while every node lives; an episode is a peer seen
#       up, then suspect or down, until up again (tests/chaos/detection_probe.py);
#   (b) detection: kill -9 node 3 (by PID) and time, on nodes 1 and 2, the
#       first sample (every 10 ms) that shows it down; restart it, wait until
#       every peer is up again, repeat --kills times.
# Prints the expected duration first, then one row per setting, then the
# table: detection median/min/max ms (over both observers and every kill),
# the observers' heartbeat_age_ms at that verdict (last heard -> down, what
# the phi parameters govern), false suspect/down episodes per node-minute,
# and the fault stage's own counts on node 1 (dropped, delayed, measured
# loss). At the first setting it also checks that `tallyctl reload` changes
# the fault settings at runtime and that /metrics counts them.
#
# Note: the fault stage holds delayed datagrams inside the sender, so a
# killed node's held heartbeats die with it. Detection times are from the
# kill, as with a network delay, but without the in-flight heartbeats a
# real delay would still deliver (add the one-way delay for a real network).
#
# Not part of CI (the full grid of 36 settings takes about 50 minutes). Every wait is bounded,
# and no setting starts after twice the expected duration.
#
# Usage: detection.sh BUILD_DIR [--quick] [--settings LIST] [--sample-s S] [--kills K] [--keep]
#   --quick     2 settings, 5 s of sampling, 1 kill each (a smoke test, ~40 s)
#   --settings  the grid as "DELAY JITTER LOSS,DELAY JITTER LOSS,..." (ms, ms,
#               per mille) instead of the full 36
#   --sample-s  seconds of suspicion sampling per setting (default 30)
#   --kills     kill -9s per setting (default 3)
#   --keep      keep the work directory (configs, logs, results.jsonl)
# Root; hugepages reserved (scripts/hugepages 256). Do not run it beside
# another multi-node test on a small machine: CPU contention delays
# heartbeats and shows up as false suspicions.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: detection.sh BUILD_DIR [--quick] [--sample-s S] [--kills K] [--keep]}
build=$(cd "$build" && pwd)
shift
quick=0
chosen=
sample_s=
kills=
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --settings) chosen=${2:?}; shift 2 ;;
    --sample-s) sample_s=${2:?}; shift 2 ;;
    --kills) kills=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "detection.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

# The grid: "delay_ms jitter_ms loss_permille".
settings=()
if [ "$quick" = 1 ]; then
  settings=("0 0 0" "200 100 300")
  sample_s=${sample_s:-5}
  kills=${kills:-1}
  warmup_s=3
  settle_s=2
elif [ -n "$chosen" ]; then
  IFS=, read -r -a settings <<<"$chosen"
  for setting in "${settings[@]}"; do
    [[ $setting =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]] ||
      { echo "detection.sh: --settings: \"$setting\" is not DELAY JITTER LOSS" >&2; exit 64; }
  done
  sample_s=${sample_s:-30}
  kills=${kills:-3}
  warmup_s=10
  settle_s=5
else
  for delay in 0 50 200; do
    for jitter in 0 50 100; do
      for loss in 0 100 200 300; do settings+=("$delay $jitter $loss"); done
    done
  done
  sample_s=${sample_s:-30}
  kills=${kills:-3}
  warmup_s=10
  settle_s=5
fi
nodes=3
victim=3
ready_s=60        # a node must answer `tallyctl ready` within this
up_s=30           # every peer up within this
detect_s=15       # the victim seen down within this, else counted missed
# Per setting, measured on this 2-CPU machine (--quick: 17 s a setting): ~4 s
# to restart 3 nodes, ~6 s per kill besides the settle (detection, restart,
# peers up).
per_setting_s=$((4 + warmup_s + sample_s + kills * (6 + settle_s)))
expected_s=$((${#settings[@]} * per_setting_s + 15))
bound_s=$((2 * expected_s))
echo "detection: ${#settings[@]} setting(s) x (${sample_s} s sampling + $kills kill(s)):" \
  "expected about $(((expected_s + 59) / 60)) min; no setting starts after $(((bound_s + 59) / 60)) min"

source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-detection.XXXXXX)
results=$work/results.jsonl
: >"$results"
cleanup() {
  trap '' INT TERM HUP PIPE # (a closed stdout must not cut the clean-up short)
  cluster_down
  if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
tallyctl=$build/control/tallyctl
probe="python3 $root/tests/chaos/detection_probe.py"
start_s=$(date +%s)
log() { echo "[$(($(date +%s) - start_s))s] $*"; }
ctl() { local i=$1; shift; "$tallyctl" -s "$work/sock$i" "$@"; }

peer_state() { # peer_state I J: node I's view of peer J
  ctl "$1" cluster 2>/dev/null | awk -v peer="$2" '$1 == "peer" && $2 == peer {
    for (f = 3; f <= NF; f++) if ($f ~ /^state=/) print substr($f, 7) }'
}
all_peers_up() {
  local i j
  for i in $(seq "$nodes"); do
    for j in $(seq "$nodes"); do
      [ "$i" = "$j" ] || [ "$(peer_state "$i" "$j")" = up ] || return 1
    done
  done
}
fault_line() { ctl "$1" cluster 2>/dev/null | awk '$1 == "fault"'; }
fault_field() { # fault_field I KEY: a field of node I's fault line (empty if off)
  fault_line "$1" | awk -v key="$2" '{ for (f = 2; f <= NF; f++)
    if (index($f, key "=") == 1) print substr($f, length(key) + 2) }'
}
write_config() { # write_config I DELAY JITTER LOSS
  cluster_write_config "$1" "$work/n$1.ini" "$work/store$1.pmem" "$work/sock$1" \
    "fault_delay_ms = $2" "fault_jitter_ms = $3" "fault_loss_permille = $4"
}
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }
restart_all() { # restart_all DELAY JITTER LOSS: every node stopped, reconfigured, started, ready
  local i
  for i in $(seq "$nodes"); do cluster_stop "$i"; done
  for i in $(seq "$nodes"); do write_config "$i" "$@"; start_node "$i"; done
  for i in $(seq "$nodes"); do
    cluster_wait_ready "$build" "$i" "$work/sock$i" "$ready_s" || return 1
  done
}
settings_shown() { # settings_shown DELAY JITTER LOSS: every node reports them (no line when 0 0 0)
  local i
  for i in $(seq "$nodes"); do
    if [ "$1$2$3" = 000 ]; then
      [ -z "$(fault_line "$i")" ] || return 1
    else
      [ "$(fault_field "$i" delay_ms)" = "$1" ] && [ "$(fault_field "$i" jitter_ms)" = "$2" ] &&
        [ "$(fault_field "$i" loss_permille)" = "$3" ] || return 1
    fi
  done
}
node_args() { local i; for i in "$@"; do printf -- '--node %s=%s ' "$i" "$work/sock$i"; done; }

# Runtime change: node 1 reloads 20 ms of delay, then off again.
reload_check() {
  local out
  write_config 1 20 0 0
  out=$(ctl 1 reload 2>&1)
  echo "$out" | sed 's/^/    /'
  if ! grep -q "fault_delay_ms=20 .*FAULT INJECTION ON" <<<"$out" ||
     [ "$(fault_field 1 delay_ms)" != 20 ]; then
    echo "FAIL reload: node 1 did not take fault_delay_ms = 20 at runtime"
    return 1
  fi
  cluster_exec 1 python3 -c 'import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9125/metrics", timeout=2).read().decode())' |
    grep '^tally_cluster_fault_' | sed 's/^/    /'
  write_config 1 0 0 0
  out=$(ctl 1 reload 2>&1)
  echo "$out" | sed 's/^/    /'
  if ! grep -q "(off)" <<<"$out" || [ -n "$(fault_line 1)" ]; then
    echo "FAIL reload: node 1 did not turn fault injection off at runtime"
    return 1
  fi
  echo "PASS reload: fault settings changed at runtime (tallyctl reload), and /metrics counts them"
}

# One setting: prints its JSON line into $results.
measure() {
  local delay=$1 jitter=$2 loss=$3 errors=() detect_ms=() age_ms=() missed=0 k json pid got v
  local suspicions='{}' dropped=null delayed=null
  log "setting delay ${delay} ms, jitter ${jitter} ms, loss ${loss}/1000: restarting the nodes"
  if ! restart_all "$delay" "$jitter" "$loss"; then
    errors+=("a node was not ready in ${ready_s} s")
  elif ! wait_for "$up_s" all_peers_up; then
    errors+=("peers not all up in ${up_s} s")
  elif ! settings_shown "$delay" "$jitter" "$loss"; then
    errors+=("tallyctl cluster does not show the settings")
  else
    if [ "$first" = 1 ]; then reload_check || errors+=("reload check failed"); first=0; fi
    sleep "$warmup_s"
    log "  sampling every node's view every 50 ms for ${sample_s} s"
    # shellcheck disable=SC2046
    suspicions=$($probe suspicions $(node_args $(seq "$nodes")) --seconds "$sample_s") ||
      { suspicions='{}'; errors+=("the sampler failed"); }
    dropped=$(fault_field 1 dropped)
    delayed=$(fault_field 1 delayed)
    for k in $(seq "$kills"); do
      pid=${CLUSTER_PID[victim]}
      # shellcheck disable=SC2046
      json=$($probe detect --kill-pid "$pid" --victim "$victim" \
        $(node_args $(seq "$((victim - 1))")) --timeout-s "$detect_s") || json='{}'
      cluster_stop "$victim" KILL # (reaps it)
      mapfile -t got < <(python3 -c 'import json, sys
o = json.loads(sys.argv[1])
for k, v in o.get("down_ms", {}).items():
    age = o.get("age_ms", {}).get(k)
    print("miss" if v is None else "%s %s" % (v, "-" if age is None else age))' "$json")
      for v in "${got[@]}"; do
        if [ "$v" = miss ]; then missed=$((missed + 1)); continue; fi
        detect_ms+=("${v% *}")
        [ "${v#* }" = - ] || age_ms+=("${v#* }")
      done
      log "  kill -9 node $victim ($k/$kills): $json"
      start_node "$victim"
      if ! cluster_wait_ready "$build" "$victim" "$work/sock$victim" "$ready_s"; then
        errors+=("node $victim not ready after kill $k"); break
      fi
      if ! wait_for "$up_s" all_peers_up; then errors+=("peers not all up after kill $k"); break; fi
      sleep "$settle_s"
    done
  fi
  for k in $(seq "$nodes"); do cluster_running "$k" || errors+=("node $k exited"); done
  if grep -qE 'Assertion|AddressSanitizer|runtime error' "$work"/n*.log 2>/dev/null; then
    errors+=("a node log shows an assertion or sanitizer report")
  fi
  python3 - "$delay" "$jitter" "$loss" "$suspicions" "${dropped:-null}" "${delayed:-null}" \
    "$missed" "${#detect_ms[@]}" "${detect_ms[@]}" "${#age_ms[@]}" "${age_ms[@]}" \
    "${errors[@]}" >>"$results" <<'PY'
import json, sys
a = sys.argv[1:]
delay, jitter, loss, sus = int(a[0]), int(a[1]), int(a[2]), json.loads(a[3])
dropped = None if a[4] in ("", "null") else int(a[4])
delayed = None if a[5] in ("", "null") else int(a[5])
missed, n = int(a[6]), int(a[7])
times = [float(v) for v in a[8:8 + n]]
m = int(a[8 + n])
ages = [float(v) for v in a[9 + n:9 + n + m]]
errors = a[9 + n + m:]
print(json.dumps({"delay_ms": delay, "jitter_ms": jitter, "loss_permille": loss,
                  "detect_ms": times, "age_ms": ages, "missed": missed,
                  "suspect": sus.get("suspect", 0), "down": sus.get("down", 0),
                  "node_minutes": sus.get("nodes", 0) * sus.get("seconds", 0) / 60.0,
                  "samples": sus.get("samples", 0), "sample_failures": sus.get("failures", 0),
                  "per_node": sus.get("per_node", {}),
                  "dropped": dropped, "delayed": delayed, "errors": errors}))
PY
  log "  $(tail -1 "$results")"
}

log "creating the namespaces (3 nodes)"
cluster_up "d$$" "$nodes" || { echo "FAIL namespaces created"; exit 1; }
first=1
done_count=0
for setting in "${settings[@]}"; do
  if [ $(($(date +%s) - start_s)) -gt "$bound_s" ]; then
    log "time bound reached: $((${#settings[@]} - done_count)) setting(s) not measured"
    break
  fi
  # shellcheck disable=SC2086
  measure $setting
  done_count=$((done_count + 1))
done
echo
echo "detection: $done_count of ${#settings[@]} settings in $(($(date +%s) - start_s)) s" \
  "(heartbeat 100 ms, suspect_phi 5, down_phi 8; faults on every node's sends)"
$probe table "$results"
