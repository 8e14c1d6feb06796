# check.sh — sourced by the integration tests: PASS/FAIL lines that tests/run
# counts, and helpers that compare tallyd's counts with a producer's report.

check() { # check NAME COMMAND...: PASS if the command succeeds
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; fi
}

# verdict NAME COMMAND...: check, and count the result in the caller's
# globals passed and failed (for the "N passed, N failed" summary line).
verdict() {
  local out
  out=$(check "$@")
  echo "$out"
  case "$out" in *"PASS $1") passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
}

# counts_match TALLYCTL SOCKET PREFIX EXPECT_JSON: every total in a
# statsd_send.py expectation equals tallyd's value, and no other counter
# with that prefix exists.
counts_match() {
  python3 - "$@" <<'PY'
import json, subprocess, sys
tallyctl, socket, prefix, expect = sys.argv[1:5]
totals = json.load(open(expect))["totals"]
out = subprocess.run([tallyctl, "-s", socket, "list", prefix], capture_output=True, text=True, check=True).stdout
got = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}
bad = {k: (v, got.get(k)) for k, v in totals.items() if got.get(k) != v}
extra = set(got) - set(totals)
if bad or extra:
    print("mismatch (expected, got):", dict(list(bad.items())[:10]), "extra:", sorted(extra)[:10])
    sys.exit(1)
print("all %d counters exact" % len(totals))
PY
}

# acked_within TALLYCTL SOCKET PREFIX REPORT_JSON [exact]: for every counter of a
# reliable_producer.py report, acked <= value <= attempted (or value == acked).
# A counter named by an acked batch must be listed (a missing one is not read
# as 0), and a report with no counter fails.
acked_within() {
  python3 - "$@" <<'PY'
import json, subprocess, sys
tallyctl, socket, prefix, report = sys.argv[1:5]
exact = len(sys.argv) > 5 and sys.argv[5] == "exact"
counters = json.load(open(report))["counters"]
out = subprocess.run([tallyctl, "-s", socket, "list", prefix], capture_output=True, text=True, check=True).stdout
got = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}
bad, missing = {}, []
for name, c in counters.items():
    if name not in got and c["acked_batches"] > 0:
        missing.append(name)
        continue
    value = got.get(name, 0)
    ok = value == c["acked"] if exact else c["acked"] <= value <= c["attempted"]
    if not ok:
        bad[name] = (c["acked"], value, c["attempted"])
if bad or missing or not counters:
    print("violations (acked, value, attempted):", bad, "missing though acked:", missing[:10],
          "counters in the report:", len(counters))
    sys.exit(1)
print("%d counters: acked <= value <= attempted%s" % (len(counters), " and exact" if exact else ""))
PY
}

# producer_ok REPORT_JSON [MIN_ACKED]: a reliable_producer.py run ended with
# every batch settled, no error ack the test did not allow, and at least
# MIN_ACKED (default 1) batches acked.
producer_ok() {
  python3 - "$1" "${2:-1}" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["outcome"]
print("outcome:", json.dumps(o, sort_keys=True))
sys.exit(1 if o["unacked"] or o["unexpected_errors"] or o["acked"] < int(sys.argv[2]) else 0)
PY
}

# wait_for SECONDS COMMAND...: retries the command quietly every 0.2 s until
# SECONDS have passed; the last try runs with its output shown (a FAIL says why).
wait_for() {
  local end_ms=$(($(date +%s%3N) + $1 * 1000))
  shift
  while [ "$(date +%s%3N)" -lt "$end_ms" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  "$@"
}

# promtool_lint NAMESPACE URL: one scrape from inside the namespace, checked
# by `promtool check metrics` (Debian's prometheus package): it must parse and
# pass promtool's lint with no output at all (a warning is a failure too). A
# failed or empty scrape fails (an empty body would pass promtool). The body
# is left in PROMTOOL_LINT_BODY.
promtool_lint() {
  local ns=$1 url=$2 out status
  PROMTOOL_LINT_BODY=$(ip netns exec "$ns" curl -sf --max-time 10 "$url") ||
    { echo "scrape of $url in $ns failed"; return 1; }
  [ -n "$PROMTOOL_LINT_BODY" ] || { echo "empty answer from $url"; return 1; }
  out=$(promtool check metrics <<<"$PROMTOOL_LINT_BODY" 2>&1); status=$?
  echo "promtool check metrics: exit $status, $(wc -l <<<"$PROMTOOL_LINT_BODY") lines${out:+: $out}"
  [ "$status" -eq 0 ] && [ -z "$out" ]
}

# metrics_lint NAMESPACE [ADDRESS]: /metrics (default 127.0.0.1:9125) passes
# promtool_lint and holds tally_build_info.
metrics_lint() {
  promtool_lint "$1" "http://${2:-127.0.0.1:9125}/metrics" || return 1
  grep -q '^tally_build_info{version="[^"]*"} 1$' <<<"$PROMTOOL_LINT_BODY" ||
    { echo "no tally_build_info sample"; return 1; }
}

# counters_lint NAMESPACE [ADDRESS]: /counters (every counter) passes promtool_lint.
counters_lint() { promtool_lint "$1" "http://${2:-127.0.0.1:9125}/counters"; }

# workload SEED PREFIX LINES INPUT EXPECT_JSON (the cluster tests): "name delta" lines (positive
# deltas over 10 counters) and their totals in counts_match's format.
workload() {
  python3 - "$@" <<'PY'
import json, random, sys
seed, prefix, lines, inp, expect = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = random.Random(seed)
totals = {}
with open(inp, "w") as f:
    for _ in range(lines):
        name = "%s%d" % (prefix, rng.randrange(10))
        delta = rng.randint(1, 1000)
        totals[name] = totals.get(name, 0) + delta
        f.write("%s %d\n" % (name, delta))
json.dump({"totals": totals}, open(expect, "w"))
PY
}
