#!/usr/bin/env bash
# systemd_verify.sh BUILD — checks the shipped systemd files without a running
# systemd (CI's machine, like this one, has no systemd as PID 1):
#   config/systemd/tallyd.service  `systemd-analyze verify` on a copy whose
#       ExecStart/ExecStartPre point at BUILD/control/tallyd instead of the
#       installed /usr/local/bin/tallyd: verify insists that the command exists,
#       and the suite does not install into the host's /usr/local. Only that
#       path is rewritten; every other line is verified as shipped.
#   config/systemd/tally.tmpfiles  `systemd-tmpfiles --create` under a
#       temporary --root: the entries parse and create /run/tally, /run/dpdk.
# systemd-analyze exits 0 on warnings (an unknown key, a bad value "ignoring"),
# so any output at all fails the check. Exit 0 when both pass.
set -uo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

[ -x "$build/control/tallyd" ] || { echo "systemd_verify: no $build/control/tallyd"; exit 1; }
sed "s#/usr/local/bin/tallyd#$build/control/tallyd#g" "$root/config/systemd/tallyd.service" \
  >"$work/tallyd.service"
output=$(systemd-analyze verify "$work/tallyd.service" 2>&1)
verify=$?
if [ "$verify" -ne 0 ] || [ -n "$output" ]; then
  echo "systemd_verify: systemd-analyze verify tallyd.service exited $verify:"
  echo "$output"
  status=1
fi

output=$(systemd-tmpfiles --create --root="$work/root" - <"$root/config/systemd/tally.tmpfiles" 2>&1)
created=$?
if [ "$created" -ne 0 ] || [ -n "$output" ] || [ ! -d "$work/root/run/tally" ]; then
  echo "systemd_verify: systemd-tmpfiles tally.tmpfiles exited $created (/run/tally made?):"
  echo "$output"
  status=1
fi
exit "$status"
