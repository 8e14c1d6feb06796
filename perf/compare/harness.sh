# harness.sh — sourced by perf/compare/run.sh and scaling.sh: the part both
# share. harness_run NAME SUFFIX SCRIPT [ARGS...] builds tallyd, tallyctl and
# tally-blast in $build, reserves hugepages, creates the test namespaces
# (scripts/netns.sh), runs the Python SCRIPT with the namespaces and a work
# directory, writes $out/NAME-STAMP.{json,md}, and on exit (also Ctrl-C)
# stops the script, keeps the servers' logs beside the results and removes the
# namespaces and the work directory. Expects $root, $build and $out.

harness_run() {
  local name=$1 suffix=$2 script=$3
  shift 3
  if [ ! -f "$build/build.ninja" ]; then meson setup "$build" >&2; fi
  ninja -C "$build" control/tallyd control/tallyctl perf/blast/tally-blast >&2
  bash "$root/scripts/hugepages" 256
  harness_work=$(mktemp -d "/var/tmp/tally-$name.XXXXXX")
  harness_stamp=$(date +%Y%m%d-%H%M%S)
  harness_pid=
  mkdir -p "$out"
  source "$root/scripts/netns.sh"
  trap harness_cleanup EXIT
  trap 'exit 130' INT TERM
  tally_netns_up "$suffix$$"
  python3 "$script" --build "$build" --work "$harness_work" \
    --node-ns "$TALLY_NODE_NS" --peer-ns "$TALLY_PEER_NS" \
    --json "$out/$name-$harness_stamp.json" --markdown "$out/$name-$harness_stamp.md" "$@" &
  harness_pid=$!
  local status=0
  wait "$harness_pid" || status=$?
  harness_pid=
  echo "results: $out/$name-$harness_stamp.json $out/$name-$harness_stamp.md" >&2
  return "$status"
}

harness_cleanup() {
  if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    wait "$harness_pid" 2>/dev/null || true
  fi
  tally_netns_down
  # Keep the servers' logs beside the results (a server that died says why).
  mkdir -p "$out/logs-$harness_stamp"
  find "$harness_work" -name '*.log' -exec cp --backup=numbered {} "$out/logs-$harness_stamp/" \; \
    2>/dev/null || true
  rm -rf "$harness_work"
}
