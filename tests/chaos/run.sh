#!/usr/bin/env bash
# run.sh — the chaos suite: 3 tallyd nodes in network namespaces that this
# script creates (scripts/cluster-netns.sh), reliable producers (libtally
# through tally-produce, every node in their list) and a statsd producer
# running throughout, and a seeded nemesis (tests/chaos/nemesis.py) that, one
# fault at a time: kill -9s and restarts nodes, restarts them on a deleted,
# truncated or corrupted store, isolates a node (minority/majority), cuts one
# link so the third node bridges both sides, takes a node off the producers'
# network, makes links one-way (a node that hears its peers but is not heard),
# throttles a link (tbf: delay and drops under load), and drops and
# duplicates datagrams at random on a replication link or drops frames
# between a node and its producers (a tc BPF program: there is no netem here). Then it heals everything, stops the producers, waits
# (bounded) for every node to be ready and to agree, and checks every counter
# (tests/chaos/check.py): reliable acked <= value <= attempted, statsd
# value <= sent, the same value on every node. Prints its seed and fault
# schedule first (the same seed gives the same schedule and workload), PASS/FAIL
# lines, and "N passed, N failed".
#
# Usage: run.sh BUILD_DIR [--seed N] [--duration S] [--kinds K,K...] [--keep]
#        run.sh BUILD_DIR --soak [--minutes M] [--seed FIRST] [--duration S]
#   --duration  seconds of faults (default 60; about 2 minutes in all)
#   --kinds     only these fault kinds (tests/chaos/nemesis.py; default all)
#   --keep      keep the work directory (logs, stores, reports)
#   --soak      runs seed FIRST, FIRST+1, ... (default --duration 120) for M
#               minutes (default 30); prints one line per seed, the replay
#               command of each failed seed, and "N passed, N failed" (seeds)
# Root; hugepages reserved (scripts/hugepages 256).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: run.sh BUILD_DIR [--seed N] [--duration S] [--keep] [--soak [--minutes M]]}
build=$(cd "$build" && pwd)
shift
seed=$((RANDOM * 32768 + RANDOM))
duration=
kinds=
soak=0
minutes=30
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=${2:?}; shift 2 ;;
    --duration) duration=${2:?}; shift 2 ;;
    --kinds) kinds=${2:?}; shift 2 ;;
    --soak) soak=1; shift ;;
    --minutes) minutes=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

# ---- soak: many seeds, each a fresh run of this script ------------------------
if [ "$soak" = 1 ]; then
  duration=${duration:-120}
  end=$(($(date +%s) + minutes * 60))
  seeds_passed=0
  seeds_failed=0
  summary() { grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1; }
  echo "soak: seeds from $seed, $duration s of faults each, for $minutes minutes"
  while [ "$(date +%s)" -lt "$end" ]; do
    log=/tmp/tally-chaos-seed-$seed.log
    if bash "$0" "$build" --seed "$seed" --duration "$duration" ${kinds:+--kinds "$kinds"} >"$log" 2>&1; then
      seeds_passed=$((seeds_passed + 1))
      echo "PASS seed $seed: $(summary "$log")"
      rm -f "$log"
    else
      seeds_failed=$((seeds_failed + 1))
      echo "FAIL seed $seed: $(summary "$log") (log $log)"
      grep '^FAIL ' "$log" | head -5 | sed 's/^/    /'
      echo "    replay: tests/chaos/run.sh $build --seed $seed --duration $duration"
    fi
    seed=$((seed + 1))
  done
  echo "$seeds_passed passed, $seeds_failed failed"
  [ "$seeds_failed" -eq 0 ]
  exit
fi

# ---- one run --------------------------------------------------------------------
duration=${duration:-60}
source "$root/scripts/cluster-netns.sh"
source "$root/tests/lib/check.sh"
chaos=$root/tests/chaos
tallyctl=$build/control/tallyctl
nodes=3
ready_s=${TALLY_CHAOS_READY_S:-60}       # a restarted node (resync included) is ready
healthy_s=${TALLY_CHAOS_HEALTHY_S:-30}   # every node ready, writable, every peer up
converge_s=${TALLY_CHAOS_CONVERGE_S:-30} # after the heal, traffic stopped: all agree
work=$(mktemp -d /tmp/tally-chaos.XXXXXX)
passed=0
failed=0
producer_pids=()
start_ms=$(date +%s%3N)

log() { echo "t=$(awk -v ms=$(($(date +%s%3N) - start_ms)) 'BEGIN { printf "%.1f", ms / 1000 }')s $*"; }
verdict() { # verdict OK NAME [DETAIL]
  if [ "$1" = 0 ]; then
    echo "PASS $2"
    passed=$((passed + 1))
  else
    echo "FAIL $2${3:+: $3}"
    failed=$((failed + 1))
  fi
}
cleanup() {
  trap '' INT TERM HUP PIPE # (a closed stdout must not cut the clean-up short)
  local pid
  for pid in "${producer_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${producer_pids[@]}"; do { wait "$pid"; } 2>/dev/null; done
  cluster_down
  if [ "$keep" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

ctl() { local i=$1; shift; "$tallyctl" -s "$work/sock$i" "$@"; }
sleep_ms() { sleep "$(awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }')"; }
start_node() { cluster_start "$build" "$1" "$work/n$1.ini" "$work/n$1.log"; }
sockets() { local i out=""; for i in $(seq "$nodes"); do out="$out${out:+,}$work/sock$i"; done; echo "$out"; }
# healthy I: node I answers ready, is writable and sees every peer up.
healthy() {
  local out
  out=$(ctl "$1" cluster 2>/dev/null) || return 1
  ctl "$1" ready >/dev/null 2>&1 || return 1
  head -1 <<<"$out" | grep -q " read_only=0 " || return 1
  [ "$(grep -c '^peer .* state=up ' <<<"$out")" -eq $((nodes - 1)) ]
}
all_healthy() { local i; for i in $(seq "$nodes"); do healthy "$i" || return 1; done; }
# Every node that should run does; one that exited on its own is a FAIL and
# is started again, so the run goes on.
check_alive() {
  local i
  for i in $(seq "$nodes"); do
    cluster_running "$i" && continue
    verdict 1 "node $i did not exit on its own ($1)" "$(tail -3 "$work/n$i.log" | tr '\n' ' ')"
    CLUSTER_PID[i]=
    start_node "$i"
    cluster_wait_ready "$build" "$i" "$work/sock$i" "$ready_s" || true
  done
}

# ---- faults ---------------------------------------------------------------------
crash() { cluster_stop "$1" KILL; }
# restart N WHAT: node N back up and ready (resync included) within ready_s.
# If tallyd refuses its store, that is a FAIL; the operator's runbook action
# (move the store aside, start on an empty one, which resyncs) keeps the run
# going.
restart() {
  local n=$1 what=$2 t0
  t0=$(date +%s%3N)
  start_node "$n"
  if cluster_wait_ready "$build" "$n" "$work/sock$n" "$ready_s"; then
    verdict 0 "node $n ready again after $what"
    log "node $n ready after $(( $(date +%s%3N) - t0 )) ms"
    return 0
  fi
  verdict 1 "node $n ready again after $what" "$(tail -3 "$work/n$n.log" | tr '\n' ' ')"
  cluster_stop "$n" KILL
  mv -f "$work/store$n.pmem" "$work/store$n.pmem.refused-$(date +%s%N)" 2>/dev/null
  log "operator action: node $n's store moved aside, starting on an empty store"
  start_node "$n"
  cluster_wait_ready "$build" "$n" "$work/sock$n" "$ready_s" ||
    verdict 1 "node $n ready on an empty store after its store was moved aside"
}
# garbage SEED LENGTH FILE: LENGTH bytes from a seeded generator.
garbage() {
  python3 -c 'import random, sys; r = random.Random(int(sys.argv[1])); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[2]))))' "$1" "$2" >"$3"
}
run_step() { # run_step NUMBER KIND ARGS... hold_ms=H gap_ms=G
  local number=$1 kind=$2 hold=0 gap=0 a size offset
  local args=()
  shift 2
  for a in "$@"; do
    case $a in
      hold_ms=*) hold=${a#hold_ms=} ;;
      gap_ms=*) gap=${a#gap_ms=} ;;
      *) args+=("$a") ;;
    esac
  done
  local n=${args[0]} store="$work/store${args[0]}.pmem"
  log "step $number: $kind ${args[*]} (hold $hold ms)"
  case $kind in
    kill) crash "$n"; sleep_ms "$hold"; restart "$n" "kill -9" ;;
    wipe) crash "$n"; rm -f "$store"; sleep_ms "$hold"; restart "$n" "kill -9 and its store deleted" ;;
    truncate)
      crash "$n"
      size=$(stat -c %s "$store" 2>/dev/null || echo 0)
      truncate -s $((size * args[1] / 1000)) "$store"
      log "node $n store truncated from $size to $((size * args[1] / 1000)) bytes"
      sleep_ms "$hold"
      restart "$n" "kill -9 and its store truncated to ${args[1]} per mille"
      ;;
    corrupt)
      crash "$n"
      size=$(stat -c %s "$store" 2>/dev/null || echo 0)
      offset=$((size * args[1] / 1000))
      garbage "${args[3]}" "${args[2]}" "$work/garbage"
      dd if="$work/garbage" of="$store" bs=4096 seek="$offset" oflag=seek_bytes conv=notrunc status=none
      log "node $n store: ${args[2]} garbage bytes written at offset $offset of $size"
      sleep_ms "$hold"
      restart "$n" "kill -9 and ${args[2]} bytes of its store overwritten"
      ;;
    isolate) cluster_isolate "$n"; sleep_ms "$hold"; cluster_heal_all ;;
    bridge) cluster_cut "$n" "${args[1]}"; sleep_ms "$hold"; cluster_heal "$n" "${args[1]}" ;;
    unreachable) cluster_dp_cut "$n"; sleep_ms "$hold"; cluster_dp_heal "$n" ;;
    mute)
      for a in $(seq "$nodes"); do [ "$a" = "$n" ] || cluster_oneway "$n" "$a"; done
      sleep_ms "$hold"
      for a in $(seq "$nodes"); do [ "$a" = "$n" ] || cluster_heal "$n" "$a"; done
      ;;
    oneway) cluster_oneway "$n" "${args[1]}"; sleep_ms "$hold"; cluster_heal "$n" "${args[1]}" ;;
    throttle) cluster_throttle "$n" "${args[1]}" "${args[2]}"; sleep_ms "$hold"; cluster_heal "$n" "${args[1]}" ;;
    lossy)
      cluster_lossy "$n" "${args[1]}" "${args[2]}" "${args[3]}" ||
        verdict 1 "step $number: loss and duplication injected (tc BPF, clang)"
      sleep_ms "$hold"
      cluster_heal "$n" "${args[1]}"
      ;;
    dplossy)
      cluster_dp_lossy "$n" "${args[1]}" || verdict 1 "step $number: dataplane loss injected (tc BPF)"
      sleep_ms "$hold"
      cluster_dp_heal "$n"
      ;;
    *) verdict 1 "step $number: known fault kind" "$kind" ;;
  esac
  sleep_ms "$gap"
}

# ---- the run ----------------------------------------------------------------------
echo "seed $seed"
echo "replay: tests/chaos/run.sh BUILD --seed $seed --duration $duration${kinds:+ --kinds $kinds}"
python3 "$chaos/nemesis.py" --seed "$seed" --duration "$duration" --nodes "$nodes" \
  ${kinds:+--kinds "$kinds"} >"$work/schedule" ||
  exit 1
echo "fault schedule ($(wc -l <"$work/schedule") steps):"
sed 's/^/  /' "$work/schedule"

cluster_up "x$$" "$nodes" || { verdict 1 "namespaces created"; echo "$passed passed, $failed failed"; exit 1; }
for i in $(seq "$nodes"); do
  cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i"
  start_node "$i"
done
ok=0
for i in $(seq "$nodes"); do cluster_wait_ready "$build" "$i" "$work/sock$i" "$ready_s" || ok=1; done
verdict "$ok" "3 nodes ready"
wait_for 10 all_healthy
verdict $? "every node writable and every peer up"

nodelist=10.77.0.1:8126,10.77.0.2:8126,10.77.0.3:8126
reverse=10.77.0.3:8126,10.77.0.2:8126,10.77.0.1:8126
hard_stop=$((duration * 3 + 300))
for p in 1 2; do
  list=$nodelist
  [ "$p" = 2 ] && list=$reverse
  cluster_producer python3 "$chaos/producer.py" --produce "$build/control/tally-produce" \
    --nodes "$list" --key "$CLUSTER_INGEST_KEY" --producer "$p" --seed "$((seed + p))" \
    --stop-file "$work/stop" --deadline-s "$hard_stop" --report "$work/reliable$p.json" \
    --ledger "$work/ledger$p" >"$work/producer$p.out" 2>&1 &
  producer_pids+=($!)
done
cluster_producer python3 "$chaos/statsd_load.py" \
  --targets 10.77.0.1:8125,10.77.0.2:8125,10.77.0.3:8125 --seed "$seed" \
  --stop-file "$work/stop" --deadline-s "$hard_stop" --report "$work/statsd.json" \
  >"$work/statsd.out" 2>&1 &
producer_pids+=($!)
log "producers running: reliable 1 ($nodelist), reliable 2 ($reverse), statsd to every node"
sleep 2

while read -r line; do
  check_alive "before step ${line%% *}"
  if ! wait_for "$healthy_s" all_healthy; then
    verdict 1 "cluster healthy within ${healthy_s} s before step ${line%% *}"
  fi
  # shellcheck disable=SC2086
  run_step $line
done <"$work/schedule"
check_alive "after the last step"

log "faults over: healing everything, stopping the producers"
cluster_heal_all
touch "$work/stop"
for pid in "${producer_pids[@]}"; do
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null
  { wait "$pid"; } 2>/dev/null
done
producer_pids=()
cat "$work/producer1.out" "$work/producer2.out" "$work/statsd.out"

ok=0
for i in $(seq "$nodes"); do cluster_wait_ready "$build" "$i" "$work/sock$i" "$ready_s" || ok=1; done
verdict "$ok" "after the heal: every node ready within ${ready_s} s"
wait_for "$healthy_s" all_healthy
verdict $? "after the heal: every node writable and every peer up within ${healthy_s} s"
for i in $(seq "$nodes"); do ctl "$i" cluster 2>&1 | sed "s/^/  node $i: /"; done
t0=$(date +%s%3N)
wait_for "$converge_s" python3 "$chaos/check.py" converged --tallyctl "$tallyctl" --sockets "$(sockets)"
status=$?
log "convergence took $(( $(date +%s%3N) - t0 )) ms"
python3 "$chaos/check.py" converged --tallyctl "$tallyctl" --sockets "$(sockets)"
verdict "$status" "every node reports the same value for every counter within ${converge_s} s"
python3 "$chaos/check.py" bounds --tallyctl "$tallyctl" --sockets "$(sockets)" \
  --reliable "$work/reliable1.json" "$work/reliable2.json" --statsd "$work/statsd.json" >"$work/bounds"
cat "$work/bounds"
passed=$((passed + $(grep -c '^PASS ' "$work/bounds")))
failed=$((failed + $(grep -c '^FAIL ' "$work/bounds")))
acked=$(python3 -c 'import json, sys; print(sum(json.load(open(p))["outcome"]["acked"] for p in sys.argv[1:]))' \
  "$work/reliable1.json" "$work/reliable2.json" 2>/dev/null || echo 0)
[ "$acked" -gt 0 ]
verdict $? "reliable producers got batches acked ($acked)"
for i in $(seq "$nodes"); do
  ! grep -Eq 'Assertion|AddressSanitizer|runtime error|Segmentation' "$work/n$i.log"
  verdict $? "node $i log free of assertion failures and crashes"
done
if [ "$failed" -gt 0 ]; then
  if grep -q '^FAIL .*value <= attempted' "$work/bounds"; then # which batches counted twice
    python3 "$chaos/double.py" --bounds "$work/bounds" --ledger "$work/ledger1" "$work/ledger2"
  fi
  for i in $(seq "$nodes"); do
    echo "--- node $i log (tail)"; tail -15 "$work/n$i.log"
    echo "--- node $i cross-node dedup events (every start)"
    grep -E 'tallyd: (cluster|restore|store)' "$work/n$i.log" | grep -vE 'peer [0-9]+ (up|down|suspect)' | tail -40
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
