#!/usr/bin/env bash
# monitoring_check.sh [ROOT] — checks the shipped monitoring files, no build
# and no running tallyd needed; one PASS/FAIL line each, exit 1 on any FAIL:
#   promtool check rules   config/prometheus/tally.rules.yml parses, exprs valid
#   promtool test rules    config/prometheus/tally.rules.test.yml: each alert
#                          fires on its series and not on the other one
#   promtool check config  config/prometheus/prometheus.yml (with its rule file)
#   amtool check-config    config/prometheus/alertmanager.yml
#   check_dashboards.py    rules and config/grafana/*.json use only metric
#                          names (and drop reasons) tallyd exports
# promtool: Debian's prometheus; amtool: prometheus-alertmanager.
set -uo pipefail
root=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
prom="$root/config/prometheus"
status=0

check() { # check NAME COMMAND...: PASS/FAIL NAME, the output on failure
  local output
  if output=$("${@:2}" 2>&1); then
    echo "PASS $1"
  else
    echo "$output" | sed 's/^/  /'
    echo "FAIL $1"
    status=1
  fi
}

check "promtool check rules tally.rules.yml" promtool check rules "$prom/tally.rules.yml"
# promtool resolves rule_files against the test file's directory.
check "promtool test rules tally.rules.test.yml" promtool test rules "$prom/tally.rules.test.yml"
check "promtool check config prometheus.yml" promtool check config "$prom/prometheus.yml"
check "amtool check-config alertmanager.yml" amtool check-config "$prom/alertmanager.yml"
python3 "$root/tests/tools/check_dashboards.py" "$root" || status=1
exit "$status"
