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
# between a node and its producers (a tc BPF program: there is no netem here).
# Every injection is verified: the helper's exit status, and that the fault
# shows (links down, ping unanswered, peers not up, the cut-off node
# read-only, the qdisc or BPF program in place). Then it heals everything,
# stops the producers, waits (bounded) for every node to be ready and to
# agree, and checks every counter (tests/chaos/check.py, whose exit status
# counts): per producer, per batch, every acked batch counted exactly once and
# every uncertain one 0 or 1 times, every reliable counter exact; statsd
# value <= sent; the same value on every node. Prints its seed and fault
# schedule first (the same seed gives the same schedule and workload), PASS/FAIL
# lines, and "N passed, N failed".
#
# Usage: run.sh BUILD_DIR [--seed N] [--duration S] [--kinds K,K...] [--persist log] [SHAPE] [--keep]
#        run.sh BUILD_DIR --soak [--minutes M] [--seed FIRST] [--duration S] [--persist log] [SHAPE]
#   SHAPE: [--lcores 1|2] [--write-quorum 1..3] [--statsd-counters N] [--idle-sleep-us US]
#   --duration  seconds of faults (default 60; about 2 minutes in all)
#   --kinds     only these fault kinds (tests/chaos/nemesis.py; default all)
#   --persist log  every node in log mode (store.persist = log): the image on
#               /dev/shm (what wipe, truncate and corrupt hit: a power loss or a
#               damaged image), the write-ahead log and checkpoints (1 s apart)
#               in the work directory (docs/store-layout.md, "Log mode on a
#               cluster node"); default: the shipped persist mode
#   --lcores    dataplane lcores per node (default 1; 2: three EAL lcores
#               floating over CPUs 0-1, net_af_packet qpairs=2, mbufs 8191)
#   --write-quorum  cluster.write_quorum (default 2; 3: every node must hold
#               a batch, so any fault that takes a node away stops acks)
#   --statsd-counters  distinct statsd counters per node (default 10;
#               store.counters_max grows to hold them, at least 4 x N)
#   --idle-sleep-us  dataplane.idle_sleep_us on every node (default 0, off)
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
persist=
lcores=1
write_quorum=2
statsd_counters=10
idle_sleep_us=0
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=${2:?}; shift 2 ;;
    --duration) duration=${2:?}; shift 2 ;;
    --kinds) kinds=${2:?}; shift 2 ;;
    --soak) soak=1; shift ;;
    --minutes) minutes=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --persist) persist=${2:?}; shift 2 ;;
    --lcores) lcores=${2:?}; shift 2 ;;
    --write-quorum) write_quorum=${2:?}; shift 2 ;;
    --statsd-counters) statsd_counters=${2:?}; shift 2 ;;
    --idle-sleep-us) idle_sleep_us=${2:?}; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
case $persist in ''|log) ;; *) echo "run.sh: --persist $persist: only log" >&2; exit 64 ;; esac
case $lcores in 1|2) ;; *) echo "run.sh: --lcores $lcores: 1 or 2" >&2; exit 64 ;; esac
case $write_quorum in 1|2|3) ;; *) echo "run.sh: --write-quorum $write_quorum: 1..3" >&2; exit 64 ;; esac
case $statsd_counters in '' | *[!0-9]*) echo "run.sh: --statsd-counters $statsd_counters: a number" >&2; exit 64 ;; esac
if [ "$statsd_counters" -lt 1 ] || [ "$statsd_counters" -gt 1000000 ]; then
  echo "run.sh: --statsd-counters $statsd_counters: 1..1000000" >&2
  exit 64
fi
case $idle_sleep_us in '' | *[!0-9]*) echo "run.sh: --idle-sleep-us $idle_sleep_us: a number" >&2; exit 64 ;; esac
# The shape options, as given to a replay or a soak's runs (defaults left out).
shape=
[ "$lcores" = 1 ] || shape="$shape --lcores $lcores"
[ "$write_quorum" = 2 ] || shape="$shape --write-quorum $write_quorum"
[ "$statsd_counters" = 10 ] || shape="$shape --statsd-counters $statsd_counters"
[ "$idle_sleep_us" = 0 ] || shape="$shape --idle-sleep-us $idle_sleep_us"

# ---- soak: many seeds, each a fresh run of this script ------------------------
if [ "$soak" = 1 ]; then
  duration=${duration:-120}
  end=$(($(date +%s) + minutes * 60))
  seeds_passed=0
  seeds_failed=0
  summary() { grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1; }
  echo "soak: seeds from $seed, $duration s of faults each, for $minutes minutes${shape:+ (shape:$shape)}"
  while [ "$(date +%s)" -lt "$end" ]; do
    log=/tmp/tally-chaos-seed-$seed.log
    # shellcheck disable=SC2086 # $shape is a list of options
    if bash "$0" "$build" --seed "$seed" --duration "$duration" ${kinds:+--kinds "$kinds"} \
      ${persist:+--persist "$persist"} $shape >"$log" 2>&1; then
      seeds_passed=$((seeds_passed + 1))
      echo "PASS seed $seed: $(summary "$log")"
      rm -f "$log"
    else
      seeds_failed=$((seeds_failed + 1))
      echo "FAIL seed $seed: $(summary "$log") (log $log)"
      grep '^FAIL ' "$log" | head -5 | sed 's/^/    /'
      echo "    replay: tests/chaos/run.sh $build --seed $seed --duration $duration${persist:+ --persist $persist}$shape"
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
fault_s=${TALLY_CHAOS_FAULT_S:-15}       # an injected fault shows (links, peers, read-only)
# Each reliable producer must get at least this many batches acked (a healthy
# run of seed 4242, 60 s of faults, acks thousands each: docs/cluster-testing.md).
min_acked=${TALLY_CHAOS_MIN_ACKED:-1000}
# The sanitizer the build has (meson's b_sanitize), for the log check.
sanitizer=$(python3 -c 'import json, sys; print(next((o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "b_sanitize"), "none"))' \
  "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo none)
sanitizer_note=
[ "$sanitizer" = none ] || sanitizer_note=" and sanitizer reports ($sanitizer)"
work=$(mktemp -d /tmp/tally-chaos.XXXXXX)
store_dir=$work # where the stores (log mode: the images) live
[ "$persist" != log ] || store_dir=/dev/shm/tally-chaos.$$
mkdir -p "$store_dir"
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
  [ "$store_dir" = "$work" ] || rm -rf "$store_dir"
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
  mv -f "$store_dir/store$n.pmem" "$store_dir/store$n.pmem.refused-$(date +%s%N)" 2>/dev/null
  log "operator action: node $n's store moved aside, starting on an empty store"
  start_node "$n"
  cluster_wait_ready "$build" "$n" "$work/sock$n" "$ready_s" ||
    verdict 1 "node $n ready on an empty store after its store was moved aside"
}
# garbage SEED LENGTH FILE: LENGTH bytes from a seeded generator.
garbage() {
  python3 -c 'import random, sys; r = random.Random(int(sys.argv[1])); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[2]))))' "$1" "$2" >"$3"
}
# ---- faults, verified ---------------------------------------------------------------
# A fault helper that fails is a FAIL line, and so is a fault that does not
# show within fault_s: the link really down (and ping across it unanswered),
# the peers really see the node not up, a node cut off from its quorum really
# read-only, the qdisc or BPF program really on the device.
# inject NUMBER WHAT COMMAND...: runs a fault helper; non-zero is a FAIL.
inject() {
  local number=$1 what=$2
  shift 2
  "$@" 2>"$work/inject.err" && return 0
  verdict 1 "step $number: $what: the fault helper succeeded" "$* exited non-zero: $(tr '\n' ' ' <"$work/inject.err")"
  return 1
}
# took_effect NUMBER WHAT CHECK...: the check holds within fault_s.
took_effect() {
  local number=$1 what=$2
  shift 2
  wait_for "$fault_s" "$@" >"$work/effect" 2>&1
  verdict $? "step $number: $what took effect" "$(tail -3 "$work/effect" | tr '\n' ' ')"
}
heal() { # heal NUMBER COMMAND...: a heal helper that fails is a FAIL
  local number=$1
  shift
  "$@" || verdict 1 "step $number: heal ($*)" "exited non-zero"
}
# unanswered NS ADDRESS: ping from NS gets no reply (exit 1) or has no route
# (exit 2); anything else (the probe itself broken) is not a cut. The probe
# is shown to work on every link before the first fault (probes_answer).
unanswered() {
  ip netns exec "$1" ping -c 2 -i 0.2 -W 1 -q "$2"
  local rc=$?
  [ "$rc" = 1 ] || [ "$rc" = 2 ]
}
answered() { ip netns exec "$1" ping -c 3 -i 0.2 -W 1 -q "$2"; }
probes_answer() {
  local i j
  for i in $(seq "$nodes"); do
    answered "$CLUSTER_PRODUCER_NS" "10.77.0.$i" || return 1
    for j in $(seq "$nodes"); do [ "$i" = "$j" ] || answered "${CLUSTER_NS[i]}" "10.78.0.$j" || return 1; done
  done
}
link_down() { # link_down NS DEV: the device exists and is not up
  local out
  out=$(ip -n "$1" -o link show "$2") || return 1
  echo "$out"
  ! grep -q '[<,]UP[,>]' <<<"$out"
}
peer_not_up() { # peer_not_up I J: node I lists peer J in a state other than up
  local out state
  out=$(ctl "$1" cluster) || return 1
  state=$(awk -v p="$2" '$1 == "peer" && $2 == p { sub("state=", "", $3); print $3 }' <<<"$out")
  echo "node $1 sees peer $2 state '$state'"
  [ -n "$state" ] && [ "$state" != up ]
}
read_only() { # read_only N: node N says it is read-only
  local out
  out=$(ctl "$1" cluster) || return 1
  head -1 <<<"$out"
  head -1 <<<"$out" | grep -q ' read_only=1 '
}
cut_pair() { # cut_pair I J: the I-J link down at both ends, no ping across, both see the other not up
  link_down "${CLUSTER_NS[$1]}" "r$2" && link_down "${CLUSTER_NS[$2]}" "r$1" &&
    unanswered "${CLUSTER_NS[$1]}" "10.78.0.$2" && peer_not_up "$1" "$2" && peer_not_up "$2" "$1"
}
isolated() { # isolated N: cut from every peer, and read-only
  local a
  for a in $(seq "$nodes"); do [ "$a" = "$1" ] || cut_pair "$1" "$a" || return 1; done
  read_only "$1"
}
unheard() { # unheard I J: I's datagrams do not reach J (ping unanswered), J sees I not up
  ip -n "${CLUSTER_NS[$1]}" neigh show "10.78.0.$2" dev "r$2" | grep PERMANENT &&
    unanswered "${CLUSTER_NS[$1]}" "10.78.0.$2" && peer_not_up "$2" "$1"
}
muted() { local a; for a in $(seq "$nodes"); do [ "$a" = "$1" ] || unheard "$1" "$a" || return 1; done; }
off_switch() { link_down "$CLUSTER_SWITCH_NS" "d$1" && unanswered "$CLUSTER_PRODUCER_NS" "10.77.0.$1"; }
throttled() { # throttled I J KBIT: a tbf at KBIT on both ends of the I-J link
  ip netns exec "${CLUSTER_NS[$1]}" tc qdisc show dev "r$2" root | grep "tbf .*rate ${3}Kbit" &&
    ip netns exec "${CLUSTER_NS[$2]}" tc qdisc show dev "r$1" root | grep "tbf .*rate ${3}Kbit"
}
bpf_on() { ip netns exec "$1" tc filter show dev "$2" "$3" | grep ' bpf '; } # bpf_on NS DEV DIRECTION
down() { ! cluster_running "$1"; }

run_step() { # run_step NUMBER KIND ARGS... hold_ms=H gap_ms=G
  local number=$1 kind=$2 hold=0 gap=0 a size offset t0
  local args=()
  shift 2
  for a in "$@"; do
    case $a in
      hold_ms=*) hold=${a#hold_ms=} ;;
      gap_ms=*) gap=${a#gap_ms=} ;;
      *) args+=("$a") ;;
    esac
  done
  local n=${args[0]} m=${args[1]:-} store="$store_dir/store${args[0]}.pmem"
  log "step $number: $kind ${args[*]} (hold $hold ms)"
  hold_rest() { # the hold counts from the injection, verification included
    local left=$((hold - ($(date +%s%3N) - t0)))
    [ "$left" -le 0 ] || sleep_ms "$left"
  }
  t0=$(date +%s%3N)
  case $kind in
    kill|wipe|truncate|corrupt)
      crash "$n"
      took_effect "$number" "kill -9 of node $n" down "$n"
      ;;
  esac
  case $kind in
    kill) hold_rest; restart "$n" "kill -9" ;;
    wipe) rm -f "$store"; hold_rest; restart "$n" "kill -9 and its store deleted" ;;
    truncate)
      size=$(stat -c %s "$store" 2>/dev/null || echo 0)
      truncate -s $((size * args[1] / 1000)) "$store"
      log "node $n store truncated from $size to $((size * args[1] / 1000)) bytes"
      hold_rest
      restart "$n" "kill -9 and its store truncated to ${args[1]} per mille"
      ;;
    corrupt)
      size=$(stat -c %s "$store" 2>/dev/null || echo 0)
      offset=$((size * args[1] / 1000))
      garbage "${args[3]}" "${args[2]}" "$work/garbage"
      dd if="$work/garbage" of="$store" bs=4096 seek="$offset" oflag=seek_bytes conv=notrunc status=none
      log "node $n store: ${args[2]} garbage bytes written at offset $offset of $size"
      hold_rest
      restart "$n" "kill -9 and ${args[2]} bytes of its store overwritten"
      ;;
    isolate)
      inject "$number" "isolate $n" cluster_isolate "$n" &&
        took_effect "$number" "isolate $n (links down, no ping, peers down, node $n read-only)" isolated "$n"
      hold_rest
      heal "$number" cluster_heal_all
      ;;
    bridge)
      inject "$number" "cut $n-$m" cluster_cut "$n" "$m" &&
        took_effect "$number" "cut $n-$m (link down, no ping, each sees the other not up)" cut_pair "$n" "$m"
      hold_rest
      heal "$number" cluster_heal "$n" "$m"
      ;;
    unreachable)
      inject "$number" "node $n off the switch" cluster_dp_cut "$n" &&
        took_effect "$number" "node $n off the switch (port down, producers' ping unanswered)" off_switch "$n"
      hold_rest
      heal "$number" cluster_dp_heal "$n"
      ;;
    mute)
      a=0
      for m in $(seq "$nodes"); do [ "$m" = "$n" ] || inject "$number" "oneway $n-$m" cluster_oneway "$n" "$m" || a=1; done
      [ "$a" = 1 ] ||
        took_effect "$number" "mute $n (its datagrams lost to every peer, every peer sees it not up)" muted "$n"
      hold_rest
      for m in $(seq "$nodes"); do [ "$m" = "$n" ] || heal "$number" cluster_heal "$n" "$m"; done
      ;;
    oneway)
      inject "$number" "oneway $n-$m" cluster_oneway "$n" "$m" &&
        took_effect "$number" "oneway $n-$m (no ping from $n, node $m sees $n not up)" unheard "$n" "$m"
      hold_rest
      heal "$number" cluster_heal "$n" "$m"
      ;;
    throttle)
      inject "$number" "throttle $n-$m" cluster_throttle "$n" "$m" "${args[2]}" &&
        took_effect "$number" "throttle $n-$m (tbf ${args[2]} kbit/s at both ends)" throttled "$n" "$m" "${args[2]}"
      hold_rest
      heal "$number" cluster_heal "$n" "$m"
      ;;
    lossy)
      inject "$number" "loss and duplication on $n-$m (tc BPF, clang)" cluster_lossy "$n" "$m" "${args[2]}" "${args[3]}" &&
        took_effect "$number" "loss and duplication on $n-$m (BPF on both ends)" \
          eval 'bpf_on "${CLUSTER_NS[n]}" "r$m" ingress && bpf_on "${CLUSTER_NS[m]}" "r$n" ingress'
      hold_rest
      heal "$number" cluster_heal "$n" "$m"
      ;;
    dplossy)
      inject "$number" "dataplane loss at node $n (tc BPF)" cluster_dp_lossy "$n" "${args[1]}" &&
        took_effect "$number" "dataplane loss at node $n (BPF both ways on its switch port)" \
          eval 'bpf_on "$CLUSTER_SWITCH_NS" "d$n" ingress && bpf_on "$CLUSTER_SWITCH_NS" "d$n" egress'
      hold_rest
      heal "$number" cluster_dp_heal "$n"
      ;;
    *) verdict 1 "step $number: known fault kind" "$kind" ;;
  esac
  sleep_ms "$gap"
}

# log_clean I: node I's log exists and shows its starts ("tallyd: serving"),
# and holds no failed assertion (asserts are on unless the build sets
# b_ndebug) nor, in a sanitizer build, a sanitizer report. A gcc build has no
# sanitizer, so nothing pretends to look for one there.
log_clean() {
  local file="$work/n$1.log" pattern='Assertion .* failed'
  [ "$sanitizer" = none ] || pattern="$pattern|ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer"
  if ! grep -q '^tallyd: serving ' "$file" 2>/dev/null; then
    verdict 1 "node $1 log free of assertion failures${sanitizer_note}" "no 'tallyd: serving' line in $file"
    return
  fi
  grep -Eq "$pattern" "$file"
  case $? in
    1) verdict 0 "node $1 log free of assertion failures${sanitizer_note}" ;;
    0) verdict 1 "node $1 log free of assertion failures${sanitizer_note}" "$(grep -Em3 "$pattern" "$file" | tr '\n' ' ')" ;;
    *) verdict 1 "node $1 log free of assertion failures${sanitizer_note}" "grep could not read $file" ;;
  esac
}

# ---- the run ----------------------------------------------------------------------
echo "seed $seed"
echo "replay: tests/chaos/run.sh BUILD --seed $seed --duration $duration${kinds:+ --kinds $kinds}${persist:+ --persist $persist}$shape"
python3 "$chaos/nemesis.py" --seed "$seed" --duration "$duration" --nodes "$nodes" \
  ${kinds:+--kinds "$kinds"} >"$work/schedule" ||
  exit 1
echo "fault schedule ($(wc -l <"$work/schedule") steps):"
sed 's/^/  /' "$work/schedule"

# The node shape (scripts/cluster-netns.sh reads these).
export CLUSTER_WRITE_QUORUM=$write_quorum
if [ "$lcores" = 2 ]; then
  export CLUSTER_LCORES='0@(0-1),1@(0-1),2@(0-1)' CLUSTER_QPAIRS=2 CLUSTER_MBUFS=8191
fi
# statsd_load.py's counters land on one lcore (one socket: one RSS queue) of
# the node they are sent to; the table holds 3/4 of counters_max, statsd 75 % of it.
counters_max=4096
while [ "$counters_max" -lt $((statsd_counters * 4)) ]; do counters_max=$((counters_max * 2)); done
export CLUSTER_COUNTERS_MAX=$counters_max
# Each reliable producer speaks only as itself (issue 14, M2): the nodes
# derive producers' keys, and each producer holds only its own
# (tallyctl producer-key, below), never ingest.key.
extra=("[ingest]" "producer_keys = derived")
[ "$idle_sleep_us" = 0 ] || extra+=("[dataplane]" "idle_sleep_us = $idle_sleep_us")
echo "shape: $lcores dataplane lcore(s) per node, write_quorum $write_quorum, statsd over $statsd_counters counters per node, counters_max $counters_max, idle_sleep_us $idle_sleep_us"
cluster_up "x$$" "$nodes" || { verdict 1 "namespaces created"; echo "$passed passed, $failed failed"; exit 1; }
for i in $(seq "$nodes"); do
  if [ "$persist" = log ]; then
    mkdir -p "$work/log$i"
    cluster_write_config "$i" "$work/n$i.ini" "$store_dir/store$i.pmem" "$work/sock$i" \
      "[store]" "persist = log" "log_dir = $work/log$i" "checkpoint_interval_ms = 1000" \
      "log_segment_bytes = 1048576" "${extra[@]}"
  else
    cluster_write_config "$i" "$work/n$i.ini" "$store_dir/store$i.pmem" "$work/sock$i" "${extra[@]}"
  fi
  start_node "$i"
done
ok=0
for i in $(seq "$nodes"); do cluster_wait_ready "$build" "$i" "$work/sock$i" "$ready_s" || ok=1; done
verdict "$ok" "3 nodes ready"
wait_for 10 all_healthy
verdict $? "every node writable and every peer up"
wait_for 10 probes_answer
verdict $? "ping answers on every link and from the producers to every node (the probe that verifies cuts works)"

nodelist=10.77.0.1:8126,10.77.0.2:8126,10.77.0.3:8126
reverse=10.77.0.3:8126,10.77.0.2:8126,10.77.0.1:8126
hard_stop=$((duration * 3 + 300))
for p in 1 2; do
  list=$nodelist
  [ "$p" = 2 ] && list=$reverse
  "$tallyctl" producer-key "$p" --config "$work/n1.ini" --out "$work/producer$p.key" ||
    verdict 1 "tallyctl producer-key $p"
  cluster_producer python3 "$chaos/producer.py" --produce "$build/control/tally-produce" \
    --key-file "$work/producer$p.key" \
    --nodes "$list" --producer "$p" --seed "$((seed + p))" \
    --stop-file "$work/stop" --deadline-s "$hard_stop" --report "$work/reliable$p.json" \
    --prefix "rel.p$p." --ledger "$work/ledger$p" >"$work/producer$p.out" 2>&1 &
  producer_pids+=($!)
done
cluster_producer python3 "$chaos/statsd_load.py" \
  --targets 10.77.0.1:8125,10.77.0.2:8125,10.77.0.3:8125 --seed "$seed" --counters "$statsd_counters" \
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
  --ledger "$work/ledger1" "$work/ledger2" --statsd "$work/statsd.json" \
  --min-acked "$min_acked" >"$work/bounds" 2>&1
status=$?
cat "$work/bounds"
passed=$((passed + $(grep -c '^PASS ' "$work/bounds")))
failed=$((failed + $(grep -c '^FAIL ' "$work/bounds")))
verdict "$status" "the checker (check.py bounds) ran to the end and found nothing" "exit $status"
for i in $(seq "$nodes"); do log_clean "$i"; done
if [ "$failed" -gt 0 ]; then
  for i in $(seq "$nodes"); do
    echo "--- node $i log (tail)"; tail -15 "$work/n$i.log"
    echo "--- node $i cross-node dedup events (every start)"
    grep -E 'tallyd: (cluster|restore|store)' "$work/n$i.log" | grep -vE 'peer [0-9]+ (up|down|suspect)' | tail -40
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
