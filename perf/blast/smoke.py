#!/usr/bin/env python3
"""smoke.py — the perf-smoke checks of tally-blast: it must do what its summary
says. The test opens a UDP socket on loopback, runs tally-blast at it, and
reads back every datagram the tool sent.

  statsd: every datagram arrives, every line is "name:delta|c", and the lines
          add up to the summary's counts and to the --expect totals.
  binary: nothing answers, so every batch times out: each datagram must be a
          batch signed with the key (tests/tools/tally_wire.py), resends carry
          the same pairs and attempt, and the summary must report
          every batch unacked and none acked (the timeouts as failures), with
          the batches' pairs as the uncertain totals.

Usage: smoke.py statsd|binary TALLY_BLAST. Exit 0 when every check holds.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "tools"))
import tally_wire  # noqa: E402

COUNT = 10
KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
DATAGRAM_MAX = 65535
DATAGRAMS_MAX = 100000  # bound on what one run can send (COUNT * resends)

failures = []


def check(condition, what):
    print(("PASS " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def run_blast(blast, port, mode_args):
    with tempfile.TemporaryDirectory() as directory:
        expect_path = os.path.join(directory, "expect.json")
        result = subprocess.run(
            [blast, "--target", "127.0.0.1:%d" % port, "--count", str(COUNT),
             "--expect", expect_path] + mode_args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
            env=dict(os.environ, TALLY_KEY=KEY_HEX))  # the key off the command line
        sys.stderr.write(result.stderr)
        check(result.returncode == 0, "tally-blast exited %d" % result.returncode)
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        with open(expect_path) as handle:
            expect = json.load(handle)
    return summary, expect


def drain(sock):
    """Every datagram queued (loopback delivers at send: all are there at exit)."""
    sock.setblocking(False)
    datagrams = []
    while len(datagrams) < DATAGRAMS_MAX:
        try:
            datagrams.append(sock.recv(DATAGRAM_MAX))
        except BlockingIOError:
            break
    return datagrams


def smoke_statsd(blast, sock, port):
    summary, expect = run_blast(blast, port, ["--mode", "statsd", "--lines", "5",
                                              "--counters", "7", "--delta-max", "9"])
    datagrams = drain(sock)
    check(summary["sent"] == COUNT, "summary: %d datagrams sent" % summary["sent"])
    check(summary["errors"] == 0, "summary: %d send errors" % summary["errors"])
    check(len(datagrams) == COUNT, "%d datagrams received of %d" % (len(datagrams), COUNT))
    totals = Counter()
    lines = 0
    bad = []
    for datagram in datagrams:
        for line in datagram.decode("ascii", "replace").split("\n"):
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            lines += 1
            if kind != "c" or not value.isdigit() or not name.startswith("blast."):
                bad.append(line)
                continue
            totals[name] += int(value)
    check(not bad, "every line is blast.N:delta|c (bad: %r)" % bad[:3])
    check(lines == COUNT * 5, "%d lines received of %d" % (lines, COUNT * 5))
    check(summary["increments"] == lines, "summary: %d increments" % summary["increments"])
    check(summary["delta_sum"] == sum(totals.values()),
          "summary: delta_sum %d, received %d" % (summary["delta_sum"], sum(totals.values())))
    check(dict(totals) == expect["totals"], "--expect totals are what was received")


def smoke_binary(blast, sock, port):
    summary, expect = run_blast(blast, port, [
        "--mode", "binary", "--lines", "4",
        "--timeout-ms", "5", "--drain-s", "0.1"])
    datagrams = drain(sock)
    key = bytes.fromhex(KEY_HEX)
    batches = {}
    attempts = {}
    for datagram in datagrams:
        try:
            producer, seq, pairs, attempt, node = tally_wire.decode_batch(datagram, key)
        except tally_wire.WireError as error:
            check(False, "a datagram is not a signed batch: %s" % error.reason)
            continue
        check(node == ("127.0.0.1", port), "batch MAC'd for %s:%d, sent to 127.0.0.1:%d" % (
            node[0], node[1], port))
        first = batches.setdefault((producer, seq), pairs)
        if first != pairs:
            check(False, "batch %d:%d resent with other pairs" % (producer, seq))
        attempts.setdefault((producer, seq), []).append(attempt)
    check(len(batches) == COUNT, "%d distinct batches received of %d" % (len(batches), COUNT))
    check(all(len(pairs) == 4 for pairs in batches.values()), "4 pairs in every batch")
    check(all(len(set(a)) == 1 for a in attempts.values()),
          "resends carry the attempt of the first send (tally-blast does not number them)")
    sends = summary["sent"] + summary["resends"]
    check(len(datagrams) == sends, "%d datagrams received, summary says %d sends" % (
        len(datagrams), sends))
    check(summary["acked"] == 0 and summary["increments"] == 0,
          "summary: %d acked, %d increments (nothing answered)" % (
              summary["acked"], summary["increments"]))
    check(summary["unacked"] == COUNT, "summary: %d of %d batches timed out unacked" % (
        summary["unacked"], COUNT))
    uncertain = Counter()
    for pairs in batches.values():
        for name, delta in pairs:
            uncertain[name.decode("ascii")] += delta
    check(dict(uncertain) == expect["uncertain"] and expect["totals"] == {},
          "--expect: the timed-out batches' pairs are uncertain, none certain")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("statsd", "binary"):
        sys.exit("usage: smoke.py statsd|binary TALLY_BLAST")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    (smoke_statsd if sys.argv[1] == "statsd" else smoke_binary)(sys.argv[2], sock, port)
    sock.close()
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
