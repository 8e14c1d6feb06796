# cluster-netns.sh — sourced by scripts/cluster-demo, tests/integration/cluster.sh
# and tests/chaos/run.sh. Builds an N-node Tally cluster out of network
# namespaces, and takes it apart again. Needs root. Every address exists only
# inside the namespaces it creates; nothing is sent anywhere else.
#
#   tally-SUFFIX-n1..nN  one per node: tally0 (DPDK net_af_packet, no kernel IP;
#                        tallyd answers ARP for 10.77.0.i itself) and one
#                        point-to-point veth r<j> to every other node j, each
#                        carrying 10.78.0.i/32, with a host route
#                        10.78.0.j/32 dev r<j> (the replication network)
#   tally-SUFFIX-p       the producers: p0 = 10.77.0.100/24
#   tally-SUFFIX-sw      the dataplane switch: bridge br0 with ports d1..dN
#                        (the nodes' tally0 peers) and p (the producers' p0)
#
# One veth per pair of nodes, and no forwarding anywhere, so cutting a single
# link separates exactly that pair (cluster_cut 2 3 leaves node 1 as a bridge
# that still sees both). The dataplane network is never cut by the partition
# functions: a partitioned node is still reachable by producers, which is what
# lets a test see its READ_ONLY answers. cluster_dp_cut/heal take a node off
# the switch when a test wants that.
#
# State (globals): CLUSTER_SUFFIX, CLUSTER_N, CLUSTER_MEMBERS (optional), CLUSTER_NS[i], CLUSTER_PRODUCER_NS,
# CLUSTER_SWITCH_NS, CLUSTER_PID[i] (tallyd by node), CLUSTER_INGEST_KEY,
# CLUSTER_KEY. Optional: CLUSTER_LCORES (EAL lcore map for every node; the
# default lets each node's two lcores float over CPUs 0-1, since N busy
# polling lcores pinned to one CPU starve each other's control threads),
# CLUSTER_QPAIRS (net_af_packet queue pairs: one per dataplane lcore when a
# map has more than one), CLUSTER_COUNTERS_MAX (store.counters_max, 4096) and
# CLUSTER_MBUFS (dataplane.mbufs, 4095).
# Every function returns non-zero on failure and is safe in a caller running
# under set -e (nothing inside fails on purpose).

CLUSTER_REPLICATION_PORT=7100
CLUSTER_NODES_MAX=9 # addresses 10.7x.0.1..9 and interface names r1..r9
CLUSTER_INGEST_KEY=${CLUSTER_INGEST_KEY:-000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}
CLUSTER_KEY=${CLUSTER_KEY:-c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0}
declare -ga CLUSTER_NS=()
declare -ga CLUSTER_PID=()
declare -ga CLUSTER_CREATED=() # namespaces this shell created: the only ones it deletes

# cluster_up SUFFIX N: creates the namespaces, the switch and every link.
cluster_up() {
  local suffix=$1 n=$2 i j ns
  if [ "$n" -lt 1 ] || [ "$n" -gt "$CLUSTER_NODES_MAX" ]; then
    echo "cluster_up: 1..$CLUSTER_NODES_MAX nodes, not $n" >&2
    return 1
  fi
  CLUSTER_SUFFIX=$suffix
  CLUSTER_N=$n
  CLUSTER_BPF_DIR=$(mktemp -d /tmp/tally-cluster-bpf.XXXXXX) || return 1
  CLUSTER_PRODUCER_NS=tally-$suffix-p
  CLUSTER_SWITCH_NS=tally-$suffix-sw
  CLUSTER_NS=()
  for i in $(seq "$n"); do CLUSTER_NS[i]=tally-$suffix-n$i; done
  for ns in "$CLUSTER_SWITCH_NS" "$CLUSTER_PRODUCER_NS" "${CLUSTER_NS[@]}"; do
    ip netns add "$ns" || return 1
    CLUSTER_CREATED+=("$ns")
    _cluster_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up || return 1
  done
  _cluster_switch_up || return 1
  for i in $(seq "$n"); do
    for j in $(seq $((i + 1)) "$n"); do _cluster_link_up "$i" "$j" || return 1; done
  done
}

_cluster_sysctl() { # NS KEY=VALUE...: sysctls inside a namespace
  local ns=$1
  shift
  ip netns exec "$ns" sysctl -qw "$@" >/dev/null 2>&1 || true # (IPv6 off: quieter links)
}

# The dataplane: a bridge in the switch namespace; node i's tally0 <-> d<i>,
# the producers' p0 <-> p. Both veth ends are created in their namespaces
# directly, so no name is ever taken in the caller's namespace.
_cluster_switch_up() {
  local sw=$CLUSTER_SWITCH_NS i
  ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0 || return 1
  ip -n "$sw" link set br0 up || return 1
  for i in $(seq "$CLUSTER_N"); do
    ip link add tally0 netns "${CLUSTER_NS[i]}" type veth peer name "d$i" netns "$sw" || return 1
    ip -n "$sw" link set "d$i" master br0 up || return 1
    ip -n "${CLUSTER_NS[i]}" link set tally0 up || return 1
  done
  ip link add p0 netns "$CLUSTER_PRODUCER_NS" type veth peer name p netns "$sw" || return 1
  ip -n "$sw" link set p master br0 up || return 1
  ip -n "$CLUSTER_PRODUCER_NS" addr add 10.77.0.100/24 dev p0 || return 1
  ip -n "$CLUSTER_PRODUCER_NS" link set p0 up
}

# One point-to-point replication link between nodes i and j: r<j> in node i,
# r<i> in node j.
_cluster_link_up() {
  local i=$1 j=$2
  ip link add "r$j" netns "${CLUSTER_NS[i]}" type veth peer name "r$i" netns "${CLUSTER_NS[j]}" ||
    return 1
  ip -n "${CLUSTER_NS[i]}" addr add "10.78.0.$i/32" dev "r$j" || return 1
  ip -n "${CLUSTER_NS[j]}" addr add "10.78.0.$j/32" dev "r$i" || return 1
  _cluster_link_set "$i" "$j" up
}

# Brings both ends of the i-j link up or down. Taking a device down removes
# the host route through it, so bringing it up puts the route back; up also
# undoes cluster_oneway, cluster_throttle and cluster_lossy on the link.
_cluster_link_set() {
  local i=$1 j=$2 state=$3
  ip -n "${CLUSTER_NS[i]}" link set "r$j" "$state" || return 1
  ip -n "${CLUSTER_NS[j]}" link set "r$i" "$state" || return 1
  [ "$state" = up ] || return 0
  ip -n "${CLUSTER_NS[i]}" route replace "10.78.0.$j/32" dev "r$j" src "10.78.0.$i" || return 1
  ip -n "${CLUSTER_NS[j]}" route replace "10.78.0.$i/32" dev "r$i" src "10.78.0.$j" || return 1
  _cluster_link_clear "$i" "$j"
  _cluster_link_clear "$j" "$i"
}

# Removes node i's bogus neighbour entry, rate limit and BPF fault on its link to j.
_cluster_link_clear() {
  local i=$1 j=$2
  if ip -n "${CLUSTER_NS[i]}" neigh show "10.78.0.$j" dev "r$j" | grep -q PERMANENT; then
    ip -n "${CLUSTER_NS[i]}" neigh del "10.78.0.$j" dev "r$j" 2>/dev/null || true
  fi
  if ip netns exec "${CLUSTER_NS[i]}" tc qdisc show dev "r$j" root | grep -q tbf; then
    ip netns exec "${CLUSTER_NS[i]}" tc qdisc del dev "r$j" root 2>/dev/null || true
  fi
  _cluster_bpf_detach "${CLUSTER_NS[i]}" "r$j"
}

_cluster_check_pair() {
  local i=$1 j=$2
  if [ "$i" = "$j" ] || [ -z "${CLUSTER_NS[i]:-}" ] || [ -z "${CLUSTER_NS[j]:-}" ]; then
    echo "cluster: no link between nodes '$i' and '$j'" >&2
    return 1
  fi
}

# cluster_cut I J: the replication link between nodes I and J goes down at both ends.
cluster_cut() {
  _cluster_check_pair "$1" "$2" || return 1
  _cluster_link_set "$1" "$2" down
}

# cluster_heal I J: the link comes back, with its routes, and without a
# one-way cut, a rate limit, loss or duplication.
cluster_heal() {
  _cluster_check_pair "$1" "$2" || return 1
  _cluster_link_set "$1" "$2" up
}

# cluster_oneway I J: node I's datagrams to J are lost, J's to I still
# arrive (an asymmetric partition, without netfilter: I's neighbour entry for
# J is pinned to a MAC address that J's interface does not have, so J's
# kernel drops every frame I sends it). cluster_heal I J undoes it.
cluster_oneway() {
  _cluster_check_pair "$1" "$2" || return 1
  ip -n "${CLUSTER_NS[$1]}" neigh replace "10.78.0.$2" lladdr 02:00:00:00:00:01 dev "r$2" \
    nud permanent
}

# cluster_throttle I J KBIT: both directions of the I-J link limited to KBIT
# kbit/s by a token bucket (tbf: 2000-byte burst, 100 ms of queue; beyond
# that, datagrams are dropped). The closest this kernel gets to delay and
# loss (no sch_netem): delay and loss only under load, none on an idle link.
# cluster_heal I J undoes it.
cluster_throttle() {
  local i=$1 j=$2 kbit=$3
  _cluster_check_pair "$i" "$j" || return 1
  ip netns exec "${CLUSTER_NS[i]}" tc qdisc replace dev "r$j" root tbf rate "${kbit}kbit" \
    burst 2000 latency 100ms || return 1
  ip netns exec "${CLUSTER_NS[j]}" tc qdisc replace dev "r$i" root tbf rate "${kbit}kbit" \
    burst 2000 latency 100ms
}

# cluster_lossy I J LOSS DUP: on the I-J link, in both directions, each
# datagram is dropped with probability LOSS per mille and otherwise delivered
# twice with probability DUP per mille: silently, at the receiver's ingress
# (a tc BPF program, see below). cluster_heal I J undoes it.
cluster_lossy() {
  local i=$1 j=$2 object
  _cluster_check_pair "$i" "$j" || return 1
  object=$(_cluster_bpf_object "$3" "$4") || return 1
  _cluster_bpf_attach "${CLUSTER_NS[i]}" "r$j" ingress "$object" || return 1
  _cluster_bpf_attach "${CLUSTER_NS[j]}" "r$i" ingress "$object"
}

# cluster_isolate I: cuts node I from every other node (replication only; its
# dataplane stays reachable by producers).
cluster_isolate() {
  local i=$1 j
  for j in $(seq "$CLUSTER_N"); do
    [ "$j" = "$i" ] || cluster_cut "$i" "$j" || return 1
  done
}

# cluster_heal_all: every replication link up, and every node back on the switch.
cluster_heal_all() {
  local i j
  for i in $(seq "$CLUSTER_N"); do
    for j in $(seq $((i + 1)) "$CLUSTER_N"); do cluster_heal "$i" "$j" || return 1; done
    cluster_dp_heal "$i" || return 1
  done
}

# cluster_dp_cut I / cluster_dp_heal I: node I's port on the dataplane switch
# down / up (producers cannot reach it; its replication links are untouched).
# Heal also undoes cluster_dp_lossy.
cluster_dp_cut() { ip -n "$CLUSTER_SWITCH_NS" link set "d$1" down; }
cluster_dp_heal() {
  ip -n "$CLUSTER_SWITCH_NS" link set "d$1" up || return 1
  _cluster_bpf_detach "$CLUSTER_SWITCH_NS" "d$1"
}

# cluster_dp_lossy I LOSS: frames between the switch and node I (batches and
# statsd to it, acks from it) dropped with probability LOSS per mille, on
# the switch port. No duplication here: statsd has no dedup, so a duplicated
# statsd datagram is a correct double count.
cluster_dp_lossy() {
  local object
  object=$(_cluster_bpf_object "$2" 0) || return 1
  _cluster_bpf_attach "$CLUSTER_SWITCH_NS" "d$1" ingress "$object" || return 1
  _cluster_bpf_attach "$CLUSTER_SWITCH_NS" "d$1" egress "$object"
}

# ---- loss and duplication without netem: a tc BPF program --------------------
# The kernel here has no sch_netem and no tc classifiers but cls_bpf, so loss
# and duplication are a 15-line BPF program on a clsact hook, compiled with
# clang for each (loss, duplication) pair into CLUSTER_BPF_DIR. A duplicate is
# a clone re-injected into the same hook, marked so it is not cloned again.
_cluster_bpf_source() {
  cat <<'BPF'
/* link fault: drop LOSS_PERMILLE, else duplicate DUP_PERMILLE (tc, direct action) */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#define CLONE_MARK 0x7a11d0u
static __u32 (*get_prandom_u32)(void) = (void *)BPF_FUNC_get_prandom_u32;
static long (*clone_redirect)(struct __sk_buff *, __u32, __u64) = (void *)BPF_FUNC_clone_redirect;
__attribute__((section("tc"), used)) int link_fault(struct __sk_buff *skb)
{
  if (skb->mark == CLONE_MARK) return TC_ACT_OK;
  if (get_prandom_u32() % 1000u < LOSS_PERMILLE) return TC_ACT_SHOT;
  if (get_prandom_u32() % 1000u < DUP_PERMILLE) {
    __u32 mark = skb->mark;
    skb->mark = CLONE_MARK;
    clone_redirect(skb, skb->ifindex, BPF_F_INGRESS); /* (so: on ingress hooks only) */
    skb->mark = mark;
  }
  return TC_ACT_OK;
}
__attribute__((section("license"), used)) char link_fault_license[] = "GPL";
BPF
}

_cluster_bpf_object() { # LOSS DUP: prints the object's path
  local loss=$1 dup=$2 object
  if [ "$loss" -lt 0 ] || [ "$loss" -gt 1000 ] || [ "$dup" -lt 0 ] || [ "$dup" -gt 1000 ]; then
    echo "cluster: loss and duplication are 0..1000 per mille" >&2
    return 1
  fi
  object=$CLUSTER_BPF_DIR/fault-$loss-$dup.o
  if [ ! -f "$object" ]; then
    _cluster_bpf_source >"$CLUSTER_BPF_DIR/fault.c"
    clang -O2 -target bpf -I"/usr/include/$(gcc -dumpmachine)" -DLOSS_PERMILLE="${loss}u" \
      -DDUP_PERMILLE="${dup}u" -c "$CLUSTER_BPF_DIR/fault.c" -o "$object" >&2 || return 1
  fi
  echo "$object"
}

_cluster_bpf_attach() { # NS DEV ingress|egress OBJECT
  local ns=$1 dev=$2
  ip netns exec "$ns" tc qdisc show dev "$dev" | grep -q clsact ||
    ip netns exec "$ns" tc qdisc add dev "$dev" clsact || return 1
  ip netns exec "$ns" tc filter replace dev "$dev" "$3" pref 1 handle 1 bpf da obj "$4" sec tc
}

_cluster_bpf_detach() { # NS DEV: removes the clsact hook and its programs
  if ip netns exec "$1" tc qdisc show dev "$2" | grep -q clsact; then
    ip netns exec "$1" tc qdisc del dev "$2" clsact 2>/dev/null || true
  fi
}

# cluster_links: "i-j up|down" for every pair (for logs).
cluster_links() {
  local i j state
  for i in $(seq "$CLUSTER_N"); do
    for j in $(seq $((i + 1)) "$CLUSTER_N"); do
      state=$(ip -n "${CLUSTER_NS[i]}" -o link show "r$j" | grep -q '[<,]UP[,>]' && echo up || echo down)
      echo "$i-$j $state"
    done
  done
}

# cluster_exec I COMMAND...: runs a command in node I's namespace.
cluster_exec() {
  local i=$1
  shift
  ip netns exec "${CLUSTER_NS[i]}" "$@"
}

# cluster_producer COMMAND...: runs a command in the producers' namespace.
cluster_producer() { ip netns exec "$CLUSTER_PRODUCER_NS" "$@"; }

# cluster_down: kills any tallyd this shell started (by PID) and removes the
# namespaces it created (every veth and the bridge go with them).
cluster_down() {
  local i ns
  for i in "${!CLUSTER_PID[@]}"; do cluster_stop "$i" KILL; done
  for ns in "${CLUSTER_CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  CLUSTER_CREATED=()
  CLUSTER_NS=()
  CLUSTER_PRODUCER_NS=
  CLUSTER_SWITCH_NS=
  [ -z "${CLUSTER_BPF_DIR:-}" ] || rm -rf "$CLUSTER_BPF_DIR"
  CLUSTER_BPF_DIR=
  return 0
}

# cluster_nodes_line: the [cluster] nodes value, "1@10.78.0.1:7100 2@...":
# every node, or only those in CLUSTER_MEMBERS ("1 2": a membership test
# writes configs of a smaller cluster, then reloads with more or fewer).
cluster_nodes_line() {
  local i out=""
  for i in ${CLUSTER_MEMBERS:-$(seq "$CLUSTER_N")}; do
    out="$out${out:+ }$i@10.78.0.$i:$CLUSTER_REPLICATION_PORT"
  done
  echo "$out"
}

# cluster_write_config I FILE STORE SOCKET [extra INI lines...]: node I's
# config: tally_write_config's sections with node I's dataplane address and
# EAL file prefix, plus [cluster]. Extra lines are appended after [cluster],
# so a line such as "write_quorum = 3" overrides nothing: use
# CLUSTER_WRITE_QUORUM, CLUSTER_HEARTBEAT_MS and CLUSTER_REPLICATION_MS for
# those; extra lines may start new sections ("[dataplane]", "mbufs = 4095").
# CLUSTER_SECTION=0 leaves [cluster] out (a single node, for checks).
cluster_write_config() {
  local i=$1 file=$2 store=$3 socket=$4
  shift 4
  local lcores=${CLUSTER_LCORES:-0@(0-1),1@(0-1)}
  install -m 600 /dev/null "$file" # it holds keys: tallyd refuses them readable by others
  cat >"$file" <<INI
[eal]
args = --lcores=$lcores --in-memory --no-pci --file-prefix tally-$CLUSTER_SUFFIX-$i
  --vdev=net_af_packet0,iface=tally0${CLUSTER_QPAIRS:+,qpairs=$CLUSTER_QPAIRS} --log-level=lib.eal:warning
[node]
ipv4 = 10.77.0.$i
[ingest]
statsd_port = 8125
binary_port = 8126
key = $CLUSTER_INGEST_KEY
[store]
path = $store
counters_max = ${CLUSTER_COUNTERS_MAX:-4096}
producers_max = 256
commit_interval_ms = 2
[dataplane]
mbufs = ${CLUSTER_MBUFS:-4095}
[control]
socket = $socket
http = 127.0.0.1:9125
INI
  if [ "${CLUSTER_SECTION:-1}" = 1 ]; then
    cat >>"$file" <<INI
[cluster]
node_id = $i
nodes = $(cluster_nodes_line)
write_quorum = ${CLUSTER_WRITE_QUORUM:-2}
key = $CLUSTER_KEY
heartbeat_interval_ms = ${CLUSTER_HEARTBEAT_MS:-100}
replication_interval_ms = ${CLUSTER_REPLICATION_MS:-5}
INI
  fi
  local line
  for line in "$@"; do echo "$line" >>"$file"; done
}

# cluster_start BUILD I CONFIG LOG: starts tallyd in node I's namespace;
# CLUSTER_PID[I] is its PID (ip netns exec execs, so it is tallyd's own).
cluster_start() {
  local build=$1 i=$2 config=$3 log=$4
  if [ -n "${CLUSTER_PID[i]:-}" ] && kill -0 "${CLUSTER_PID[i]}" 2>/dev/null; then
    echo "cluster_start: node $i already runs as ${CLUSTER_PID[i]}" >&2
    return 1
  fi
  ip netns exec "${CLUSTER_NS[i]}" "$build/control/tallyd" -c "$config" >>"$log" 2>&1 &
  CLUSTER_PID[i]=$!
}

# cluster_start_all BUILD WORK: writes every node's config (WORK/nI.ini, store
# WORK/storeI.pmem, socket WORK/sockI, log WORK/nI.log) and starts it.
cluster_start_all() {
  local build=$1 work=$2 i
  for i in $(seq "$CLUSTER_N"); do
    cluster_write_config "$i" "$work/n$i.ini" "$work/store$i.pmem" "$work/sock$i" || return 1
    cluster_start "$build" "$i" "$work/n$i.ini" "$work/n$i.log" || return 1
  done
}

# cluster_stop I [SIGNAL]: signals node I's tallyd (default TERM), waits up to
# 10 s for it to exit, then kills it.
cluster_stop() {
  local i=$1 signal=${2:-TERM} pid=${CLUSTER_PID[$1]:-}
  [ -n "$pid" ] || return 0
  # In a group with stderr closed: bash reports the death of a background job
  # ("Killed") on its own stderr, whenever it happens to reap it.
  {
    kill "-$signal" "$pid" || true
    for _ in $(seq 100); do kill -0 "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" || true
    wait "$pid" || true
  } 2>/dev/null
  CLUSTER_PID[i]=
}

# cluster_running I: node I's tallyd is alive.
cluster_running() { [ -n "${CLUSTER_PID[$1]:-}" ] && kill -0 "${CLUSTER_PID[$1]}" 2>/dev/null; }

# cluster_wait_ready BUILD I SOCKET SECONDS: waits until node I answers
# `tallyctl ready` with 0; fails at once if its tallyd has exited.
cluster_wait_ready() {
  local build=$1 i=$2 socket=$3 seconds=${4:-30}
  local tries=$((seconds * 10))
  for _ in $(seq "$tries"); do
    "$build/control/tallyctl" -s "$socket" ready >/dev/null 2>&1 && return 0
    cluster_running "$i" || return 1
    sleep 0.1
  done
  return 1
}
