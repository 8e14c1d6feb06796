#!/usr/bin/env bash
# backup.sh — backups and restore of a log-mode node, end to end in network
# namespaces (docs/operations.md, "Backups and restore"): a full backup
# (with a fresh checkpoint asked over the socket), reliable load, an
# incremental, more load while checkpoints every 300 ms keep cutting the log
# (the backup's hold must keep the records after it), a second incremental,
# verify; then kill -9, the image
# and the log deleted, restore into a new log directory, start: every acked
# increment of both loads is there, exactly, and recovery came from
# checkpoint + log. Point in time: restored to the first incremental's last
# LSN, the node holds exactly the first load's counts. Refusals: a non-empty
# target, a damaged backup (exit 1), an LSN past the backup (the unit test
# covers one before the checkpoint's end). Who may: a throwaway user (useradd,
# removed at the end) outside control.admin_group is refused the backup's
# requests over the socket (checkpoint, log hold: SO_PEERCRED), a member is
# served. A restart releases the log hold (in memory only): once checkpoints cut
# the log past the last backup, the next incremental is refused, never taken
# with a gap.
# Prints PASS/FAIL lines and "N passed, N failed".
# Usage: backup.sh BUILD_DIR   (root; hugepages reserved)
set -uo pipefail
build=${1:?build dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/netns.sh"
source "$root/tests/lib/check.sh"
work=$(mktemp -d /tmp/tally-backup.XXXXXX)
image_dir=/dev/shm/tally-backup.$$
suffix=b$$
passed=0
failed=0
# Every tallyd this test started runs with its own config path: none may outlive it (a
# stray one would keep the netns lock's descriptor, inherited, and block every other test).
stop_ours() {
  tally_stop KILL
  local pid
  for pid in $(pgrep -f "tallyd -c $work/tally.ini"); do kill -KILL "$pid" 2>/dev/null; done
}
user=tallybk$$       # a throwaway user, not in the admin group
admins=tallyadm$$    # the throwaway control.admin_group
cleanup() {
  stop_ours; tally_netns_down; rm -rf "$work" "$image_dir"
  userdel "$user" 2>/dev/null; groupdel "$admins" 2>/dev/null
}
trap cleanup EXIT
tools=$root/tests/tools
export TALLY_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
ctl="$build/control/tallyctl -s $work/sock"
seed=${TALLY_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $seed (replay: TALLY_SEED=$seed bash $0 BUILD)"

tally_netns_up "$suffix"
mkdir -p "$image_dir"
groupadd "$admins" && useradd --no-create-home --user-group --shell /usr/sbin/nologin "$user"
tally_write_config "$work/tally.ini" "$image_dir/image" "$work/sock" "admin_group = $admins"
sed -i "s|^commit_interval_ms = .*|&\npersist = log\nlog_dir = $work/log\ncheckpoint_interval_ms = 300\nlog_segment_bytes = 65536\nlog_group_bytes = 16384|" "$work/tally.ini"
start() {
  tally_start "$build" "$work/tally.ini" "$work/tallyd.log"
  tally_wait_ready "$build" "$work/sock" 60
}
load() { # load FIRST_PRODUCER REPORT: 4 producers, 150 batches each, all acked
  ip netns exec "$TALLY_PEER_NS" python3 "$tools/reliable_producer.py" --seed "$seed$1" \
    --first-producer "$1" --producers 4 --batches 150 --counters 12 --retry-ms 30 \
    --deadline-s 120 --report "$2" >>"$work/producer.log" 2>&1
}
merge() { # merge OUT REPORT...: the per-counter sums of several producer reports
  python3 - "$@" <<'PY'
import json, sys
out, total = sys.argv[1], {}
for path in sys.argv[2:]:
    for name, c in json.load(open(path))["counters"].items():
        t = total.setdefault(name, {"attempted": 0, "acked": 0, "acked_batches": 0})
        for k in t: t[k] += c[k]
json.dump({"counters": total}, open(out, "w"))
PY
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
stat() { $ctl stats | awk -v k="$1" '$1 == k { print $2 }'; }
# (start and restore_and_start set TALLYD_PID: never inside verdict's subshell.)
restore_and_start() { # restore_and_start [--to-lsn N]: the node's store lost, restored
  stop_ours
  rm -rf "$image_dir/image" "$work/log"
  $build/control/tallyctl -c "$work/tally.ini" restore --quiet "$@" "$work/bk" >>"$work/restore.log" 2>&1 &&
    start
}

start
verdict "tallyd starts in log mode" test $? -eq 0
# A full backup first, from a fresh checkpoint (asked over the socket), before any load:
# what follows comes back only through the incrementals' log. Progress as JSON lines.
$build/control/tallyctl -c "$work/tally.ini" backup --checkpoint --json "$work/bk" \
  >"$work/full.json" 2>"$work/full.progress"
verdict "full backup exit 0" test $? -eq 0
verdict "full backup: progress as JSON lines" python3 -c '
import json,sys; lines=[json.loads(l) for l in open(sys.argv[1])]; assert lines and lines[-1]["file"]=="done"' "$work/full.progress"
full_last=$(json_field "$work/full.json" last_lsn)
echo "full backup: $(cat "$work/full.json")"
verdict "the node holds its log from the backup on" test "$(stat backup_hold_lsn)" = "$full_last"
# Who may back up: a user outside control.admin_group can open the socket (here) but is
# refused what changes state, so tallyctl backup --checkpoint fails before copying.
chmod 755 "$work"; chmod 666 "$work/sock"
as_user() { setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups "$@"; }
refused_before=$(( $(stat mgmt_refused) + 0 ))
said=$(as_user "$build/control/tallyctl" -s "$work/sock" backup --checkpoint --log-dir "$work/log" \
  --quiet "$work/bk-user" 2>&1); code=$?
echo "$said"
verdict "a non-admin user's backup --checkpoint is refused: exit 3, not permitted" \
  bash -c '[ "$1" -eq 3 ] && grep -q "not permitted" <<<"$2"' _ "$code" "$said"
verdict "  and nothing written" test ! -e "$work/bk-user"
said=$(as_user "$build/control/tallyctl" -s "$work/sock" log hold 1 2>&1); code=$?
verdict "a non-admin user's log hold is refused: exit 3" test "$code" -eq 3
verdict "  the hold unchanged" test "$(stat backup_hold_lsn)" = "$full_last"
verdict "  the refusals counted (mgmt_refused)" test "$(stat mgmt_refused)" -ge $((refused_before + 2))
verdict "a member of control.admin_group may hold the log" setpriv --reuid="$(id -u "$user")" \
  --regid="$(id -g "$user")" --groups="$(getent group "$admins" | cut -d: -f3)" \
  "$build/control/tallyctl" -s "$work/sock" log hold "$full_last"
chmod 700 "$work"; chmod 660 "$work/sock"
verdict "load 1: every batch acked" load 1 "$work/r1.json"
verdict "load 1 producer ok" producer_ok "$work/r1.json" 600
$build/control/tallyctl -c "$work/tally.ini" backup --incremental --quiet --json "$work/bk" >"$work/incr1.json"
verdict "incremental 1 exit 0" test $? -eq 0
verdict "incremental 1 is generation 2 from the full backup's end" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["generation"]==2 and d["first_lsn"]==int(sys.argv[2])+1, d' \
  "$work/incr1.json" "$full_last"
load1_last=$(json_field "$work/incr1.json" last_lsn)
verdict "load 2: every batch acked" load 5 "$work/r2.json"
sleep 1.5 # several checkpoints and cuts meanwhile: the hold keeps the records after the backup
verdict "checkpoints ran and cut the log" test "$(stat checkpoints_finished)" -ge 3
$build/control/tallyctl -c "$work/tally.ini" backup --incremental --quiet --json "$work/bk" >"$work/incr2.json"
verdict "incremental 2 exit 0" test $? -eq 0
verdict "incremental 2 is generation 3 from incremental 1's end" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["generation"]==3 and d["first_lsn"]==int(sys.argv[2])+1, d' \
  "$work/incr2.json" "$load1_last"
verdict "backup verify exit 0" $build/control/tallyctl backup verify --quiet "$work/bk"
merge "$work/r12.json" "$work/r1.json" "$work/r2.json"

# A restart releases the hold: checkpoints may then cut the log past the last backup,
# and the next incremental is refused (take a full backup), never taken with a gap.
load2_last=$(json_field "$work/incr2.json" last_lsn)
tally_stop TERM
start
verdict "after a restart tallyd is ready" test $? -eq 0
verdict "a restart releases the log hold" test "$(stat backup_hold_lsn)" = 0
oldest_segment_lsn() { # the first LSN of the oldest segment left in the log
  local name
  name=$(ls "$work/log" | grep -E '^wal-[0-9a-f]{16}\.log$' | sort | head -1)
  [ -n "$name" ] && echo $((16#${name:4:16}))
}
cut_past_backup() { # load until the log no longer holds the LSN after the backup (bounded)
  local round
  for round in 1 2 3 4 5 6; do
    [ "$(oldest_segment_lsn)" -gt $((load2_last + 1)) ] && return 0
    load $((20 + 4 * round)) "$work/r3.$round.json" || return 1
  done
  [ "$(oldest_segment_lsn)" -gt $((load2_last + 1)) ]
}
verdict "more load, and checkpoints cut the log past the last backup" cut_past_backup
$build/control/tallyctl -c "$work/tally.ini" backup --incremental --quiet "$work/bk" 2>"$work/gap.txt"
verdict "the next incremental is refused: exit 3" test $? -eq 3
verdict "  with one line: the log no longer holds the LSN, take a full backup" \
  grep -q "no longer holds LSN $((load2_last + 1)).*take a full backup" "$work/gap.txt"
verdict "  and the backup still verifies" $build/control/tallyctl backup verify --quiet "$work/bk"

# The node is lost: killed, its image and its log deleted; restored from the backup.
restore_and_start
verdict "restore into a new store, tallyd ready" test $? -eq 0
verdict "recovered from checkpoint+log" test "$(stat log_recovery_source)" = "checkpoint+log"
verdict "every acked increment of both loads, exactly" acked_within "$build/control/tallyctl" \
  "$work/sock" rel. "$work/r12.json" exact

# Point in time: incremental 1's last LSN gives exactly the first load (replayed from the log).
restore_and_start --to-lsn "$load1_last"
verdict "restore --to-lsn incremental 1's end, tallyd ready" test $? -eq 0
verdict "point in time: exactly load 1" acked_within "$build/control/tallyctl" "$work/sock" rel. \
  "$work/r1.json" exact

# Refusals.
$build/control/tallyctl restore --quiet --log-dir "$work/log" "$work/bk" 2>"$work/refused.txt"
verdict "restore into a non-empty log dir: exit 3" test $? -eq 3
verdict "  with one line naming it" grep -q "not an empty directory" "$work/refused.txt"
$build/control/tallyctl restore --quiet --log-dir "$work/other" --to-lsn 999999999 "$work/bk" 2>"$work/refused.txt"
verdict "restore to an LSN past the backup: exit 3" test $? -eq 3
verdict "  with one line giving the range" grep -q "this backup restores to LSNs" "$work/refused.txt"
verdict "  and nothing written" test ! -e "$work/other"
segment=$(ls "$work/bk/g000002" | head -1)
printf 'x' | dd of="$work/bk/g000002/$segment" bs=1 seek=100 conv=notrunc status=none
$build/control/tallyctl backup verify --quiet "$work/bk" 2>"$work/damaged.txt"
verdict "a corrupted byte: verify exit 1" test $? -eq 1
verdict "  with one line naming the file" grep -q "g000002/$segment: BLAKE2b mismatch" "$work/damaged.txt"
$build/control/tallyctl restore --quiet --log-dir "$work/other" "$work/bk" 2>/dev/null
verdict "a damaged backup is not restored: exit 1" test $? -eq 1
verdict "  and nothing written" test ! -e "$work/other/$segment"
tally_stop TERM
verdict "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$work/tallyd.log'"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
