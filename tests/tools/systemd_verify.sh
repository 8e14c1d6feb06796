#!/usr/bin/env bash
# systemd_verify.sh BUILD | --installed — checks the systemd files without a
# running systemd (CI's machine, like this one, has no systemd as PID 1).
#
# systemd_verify.sh BUILD: the shipped files in the source tree:
#   config/systemd/tallyd.service  `systemd-analyze verify` on a copy whose
#       ExecStart/ExecStartPre point at BUILD/control/tallyd instead of the
#       installed /usr/local/sbin/tallyd: verify insists that the command exists,
#       and the suite does not install into the host's /usr/local. Only that
#       path is rewritten; every other line is verified as shipped.
#   config/systemd/tally.tmpfiles  `systemd-tmpfiles --create` under a
#       temporary --root: the entries parse and create /run/tally, /run/dpdk.
# systemd_verify.sh --installed: the same two checks on the files the Debian
#   package installed (/lib/systemd/system/tallyd.service, verified as
#   installed, and /usr/lib/tmpfiles.d/tally.conf); tests/package/deb.sh.
#
# systemd-analyze exits 0 on warnings (an unknown key, a bad value "ignoring"),
# so any output about tallyd's unit fails the check. Lines about other units
# on the host (verify loads what multi-user.target pulls in, e.g. another
# package's "syslog is obsolete") are shown but are not tallyd's. The manual
# pages that Documentation= names are checked only where they are installed
# (--installed; the build tree does not install them). Exit 0 when both pass.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

if [ "${1:-}" = --installed ]; then
  unit=/lib/systemd/system/tallyd.service
  tmpfiles=/usr/lib/tmpfiles.d/tally.conf
  man=yes
  [ -f "$unit" ] && [ -f "$tmpfiles" ] || { echo "systemd_verify: $unit or $tmpfiles missing"; exit 1; }
else
  build=$(cd "$1" && pwd)
  [ -x "$build/control/tallyd" ] || { echo "systemd_verify: no $build/control/tallyd"; exit 1; }
  unit=$work/tallyd.service
  sed "s#/usr/local/sbin/tallyd#$build/control/tallyd#g" "$root/config/systemd/tallyd.service" >"$unit"
  tmpfiles=$root/config/systemd/tally.tmpfiles
  man=no
fi

output=$(systemd-analyze verify --man="$man" "$unit" 2>&1)
verify=$?
other='^/[^ ]*\.(service|socket|target|timer|mount|path):[0-9]+: '
ours=$(printf '%s\n' "$output" | grep -Ev "$other" | grep -v '^$')
ours+=$(printf '%s\n' "$output" | grep -E "$other" | grep 'tallyd\.service:')
if [ "$verify" -ne 0 ] || [ -n "$ours" ]; then
  echo "systemd_verify: systemd-analyze verify $unit exited $verify:"
  echo "$output"
  status=1
elif [ -n "$output" ]; then
  echo "systemd_verify: about other units on this host (not tallyd's):"
  echo "$output"
fi

output=$(systemd-tmpfiles --create --root="$work/root" - <"$tmpfiles" 2>&1)
created=$?
if [ "$created" -ne 0 ] || [ -n "$output" ] || [ ! -d "$work/root/run/tally" ]; then
  echo "systemd_verify: systemd-tmpfiles $tmpfiles exited $created (/run/tally made?):"
  echo "$output"
  status=1
fi
exit "$status"
