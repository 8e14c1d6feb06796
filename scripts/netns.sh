# netns.sh — sourced by the demo and the integration tests. Creates a
# "node" network namespace (where tallyd runs, owning interface tally0 via
# DPDK's net_af_packet) and a "peer" namespace (the producers, 10.77.0.2/24 on
# peer0), joined by a veth pair; and removes them again. The addresses exist
# only inside these namespaces. Needs root.

# tally_netns_up SUFFIX: creates tally-node-SUFFIX and tally-peer-SUFFIX.
tally_netns_up() {
  local suffix=$1
  TALLY_NODE_NS=tally-node-$suffix
  TALLY_PEER_NS=tally-peer-$suffix
  ip netns add "$TALLY_NODE_NS"
  ip netns add "$TALLY_PEER_NS"
  ip link add "tn$suffix" type veth peer name "tp$suffix"
  ip link set "tn$suffix" netns "$TALLY_NODE_NS"
  ip link set "tp$suffix" netns "$TALLY_PEER_NS"
  ip -n "$TALLY_NODE_NS" link set "tn$suffix" name tally0
  ip netns exec "$TALLY_NODE_NS" sysctl -qw net.ipv6.conf.tally0.disable_ipv6=1
  ip -n "$TALLY_NODE_NS" link set tally0 up
  ip -n "$TALLY_NODE_NS" link set lo up
  ip -n "$TALLY_PEER_NS" link set "tp$suffix" name peer0
  ip netns exec "$TALLY_PEER_NS" sysctl -qw net.ipv6.conf.peer0.disable_ipv6=1
  ip -n "$TALLY_PEER_NS" addr add 10.77.0.2/24 dev peer0
  ip -n "$TALLY_PEER_NS" link set peer0 up
  ip -n "$TALLY_PEER_NS" link set lo up
}

# tally_netns_down: removes both namespaces (the veth pair goes with them).
tally_netns_down() {
  [ -n "${TALLY_NODE_NS:-}" ] && ip netns del "$TALLY_NODE_NS" 2>/dev/null
  [ -n "${TALLY_PEER_NS:-}" ] && ip netns del "$TALLY_PEER_NS" 2>/dev/null
  return 0
}

# tally_start BUILD CONFIG LOG: starts tallyd in the node namespace; sets TALLYD_PID.
tally_start() {
  local build=$1 config=$2 log=$3
  ip netns exec "$TALLY_NODE_NS" "$build/control/tallyd" -c "$config" >>"$log" 2>&1 &
  TALLYD_PID=$!
}

# tally_wait_ready BUILD SOCKET [SECONDS]: waits until tallyd answers ready.
tally_wait_ready() {
  local build=$1 socket=$2 seconds=${3:-30}
  local tries=$((seconds * 10))
  for _ in $(seq "$tries"); do
    if "$build/control/tallyctl" -s "$socket" ready >/dev/null 2>&1; then return 0; fi
    if [ -n "${TALLYD_PID:-}" ] && ! kill -0 "$TALLYD_PID" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# tally_stop [SIGNAL]: stops tallyd by PID and waits for it.
tally_stop() {
  local signal=${1:-TERM}
  if [ -n "${TALLYD_PID:-}" ]; then
    kill "-$signal" "$TALLYD_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$TALLYD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TALLYD_PID" 2>/dev/null || true
    wait "$TALLYD_PID" 2>/dev/null || true
    TALLYD_PID=
  fi
}

# tally_write_config FILE STORE SOCKET [extra INI lines...]: a test config for
# the node namespace (one dataplane lcore, DPDK on tally0).
tally_write_config() {
  local file=$1 store=$2 socket=$3
  shift 3
  install -m 600 /dev/null "$file" # it holds a key: tallyd refuses it readable by others
  cat >"$file" <<INI
[eal]
args = -l 0-1 --in-memory --no-pci --file-prefix tally-$$ --vdev=net_af_packet0,iface=tally0 --log-level=lib.eal:warning
[node]
ipv4 = 10.77.0.1
[ingest]
statsd_port = 8125
binary_port = 8126
key = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
[store]
path = $store
counters_max = 4096
producers_max = 256
commit_interval_ms = 2
[control]
socket = $socket
http = 127.0.0.1:9125
INI
  for line in "$@"; do echo "$line" >>"$file"; done
}
