#!/usr/bin/env bash
# dr_drill.sh — the DR drill (scripts/dr-drill) in its bounded CI form: a
# 3-node log-mode cluster, backed up, every store lost, restored from the
# backups; RPO and RTO printed, every increment acked before the last backup
# checked on every node. Prints the drill's PASS/FAIL lines.
# Usage: dr_drill.sh BUILD_DIR   (root; hugepages reserved: 3 nodes)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec bash "$root/scripts/dr-drill" "${1:?build dir}" --lines 300
