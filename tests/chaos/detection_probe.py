#!/usr/bin/env python3
"""detection_probe.py — the sampler of tests/chaos/detection.sh. Talks to
tallyd's management sockets itself (one short connection per request, as
tallyctl does, but without starting a process per sample, which on a 2-CPU
machine would itself delay heartbeats), and prints one JSON object.

  suspicions --node ID=SOCKET... --seconds S [--interval-ms 50]
      Asks every node for `cluster` every interval for S seconds. An episode
      is a (node, peer) pair seen `up`, then `suspect` or `down`, until seen
      `up` again; an episode that reached `down` is also a down episode.
      Prints {"seconds", "nodes", "samples", "failures", "suspect", "down",
      "not_up_samples", "max_age_ms", "max_phi", "per_node": {ID: [suspect, down]}};
      max_age_ms and max_phi: the largest heartbeat_age_ms and phi any node
      showed for a peer (how near a suspicion the run came).
  detect --kill-pid PID --victim ID --node ID=SOCKET... [--timeout-s T]
         [--interval-ms 10]
      kill -9 PID (the victim's tallyd), then asks the observers (--node)
      until each sees peer ID `down`. Prints {"down_ms": {ID: ms or null},
      "suspect_ms": {ID: ms or null}, "age_ms": {ID: ms or null}}: from the
      kill to the first sample showing it down (suspect), null if not within
      T seconds; age_ms is that sample's heartbeat_age_ms, the time from the
      last heartbeat the observer received to its verdict.
  table FILE
      The table of the JSON lines detection.sh wrote, one per setting.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import sys
import time

TRAILER = b".\n"
NOT_UP = ("suspect", "down")


def ask(path, request, timeout_s=1.0):
    """The body of tallyd's answer to request, or None (no answer, not OK)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(path)
        s.sendall(request.encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        s.close()
    answer = b"".join(chunks)
    if not answer.endswith(TRAILER) or not answer.startswith(b"0\n"):
        return None
    return answer[2:-len(TRAILER)].decode(errors="replace")


def peer_lines(path):
    """{peer id: {field: value}} from `cluster` ("peer J state=S phi=... ..."), or None."""
    body = ask(path, "cluster")
    if body is None:
        return None
    peers = {}
    for line in body.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "peer":
            peers[int(fields[1])] = dict(f.split("=", 1) for f in fields[2:] if "=" in f)
    return peers


def peer_states(path):
    """{peer id: state} from `cluster`, or None."""
    peers = peer_lines(path)
    return None if peers is None else {p: f.get("state") for p, f in peers.items()}


def nodes_arg(values):
    nodes = {}
    for value in values:
        node, _, path = value.partition("=")
        nodes[int(node)] = path
    return nodes


def suspicions(args):
    nodes = nodes_arg(args.node)
    interval = args.interval_ms / 1000.0
    previous = {}    # (node, peer) -> last state seen
    in_episode = {}  # (node, peer) -> reached down yet
    per_node = {node: [0, 0] for node in nodes}
    samples = failures = not_up = max_age = 0
    max_phi = 0.0
    start = time.monotonic()
    tick = start
    while tick - start < args.seconds:
        for node, path in nodes.items():
            peers = peer_lines(path)
            samples += 1
            if peers is None:
                failures += 1
                continue
            for fields in peers.values():
                max_age = max(max_age, int(fields.get("heartbeat_age_ms", "0")))
                max_phi = max(max_phi, float(fields.get("phi", "0")))
            states = {p: f.get("state") for p, f in peers.items()}
            for peer, state in states.items():
                key = (node, peer)
                if state in NOT_UP:
                    not_up += 1
                if key in in_episode:
                    if state == "up":
                        del in_episode[key]
                    elif state == "down" and not in_episode[key]:
                        in_episode[key] = True
                        per_node[node][1] += 1
                elif previous.get(key) == "up" and state in NOT_UP:
                    in_episode[key] = state == "down"
                    per_node[node][0] += 1
                    if state == "down":
                        per_node[node][1] += 1
                previous[key] = state
        tick += interval
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            tick = time.monotonic()  # late: do not burst to catch up
    seconds = time.monotonic() - start
    print(json.dumps({"seconds": round(seconds, 3), "nodes": len(nodes), "samples": samples,
                      "failures": failures, "not_up_samples": not_up,
                      "max_age_ms": max_age, "max_phi": round(max_phi, 2),
                      "suspect": sum(v[0] for v in per_node.values()),
                      "down": sum(v[1] for v in per_node.values()),
                      "per_node": {str(k): v for k, v in per_node.items()}}))


def detect(args):
    observers = nodes_arg(args.node)
    interval = args.interval_ms / 1000.0
    down_ms = {node: None for node in observers}
    suspect_ms = {node: None for node in observers}
    age_ms = {node: None for node in observers}
    start = time.monotonic()
    os.kill(args.kill_pid, signal.SIGKILL)
    while time.monotonic() - start < args.timeout_s:
        for node, path in observers.items():
            if down_ms[node] is not None:
                continue
            peers = peer_lines(path)
            now_ms = round((time.monotonic() - start) * 1000.0, 1)
            fields = {} if peers is None else peers.get(args.victim, {})
            state = fields.get("state")
            if state in NOT_UP and suspect_ms[node] is None:
                suspect_ms[node] = now_ms
            if state == "down":
                down_ms[node] = now_ms
                age = fields.get("heartbeat_age_ms")
                age_ms[node] = None if age is None else int(age)
        if all(v is not None for v in down_ms.values()):
            break
        time.sleep(interval)
    print(json.dumps({"down_ms": {str(k): v for k, v in down_ms.items()},
                      "suspect_ms": {str(k): v for k, v in suspect_ms.items()},
                      "age_ms": {str(k): v for k, v in age_ms.items()}}))


def table(args):
    rows = [json.loads(line) for line in open(args.file) if line.strip()]
    print("%-18s | %-31s | %-16s | %-27s | %s" % (
        "setting", "detection: kill -9 -> down (ms)", "last heard->down",
        "false episodes/node-minute", "fault stage (node 1)"))
    print("%-18s | %7s %6s %6s %3s %5s | %7s %8s | %8s %6s %11s | %s" % (
        "delay/jitter/loss", "median", "min", "max", "n", "miss", "median", "max",
        "suspect", "down", "node-min", "dropped delayed measured-loss"))
    for row in rows:
        setting = "%d/%d ms/%g%%" % (row["delay_ms"], row["jitter_ms"], row["loss_permille"] / 10.0)
        times = row.get("detect_ms", [])
        if times:
            detection = "%7.0f %6.0f %6.0f %3d %5d" % (statistics.median(times), min(times),
                                                       max(times), len(times), row.get("missed", 0))
        else:
            detection = "%7s %6s %6s %3d %5d" % ("-", "-", "-", 0, row.get("missed", 0))
        ages = row.get("age_ms", [])
        heard = ("%7.0f %8.0f" % (statistics.median(ages), max(ages)) if ages
                 else "%7s %8s" % ("-", "-"))
        minutes = row.get("node_minutes", 0.0)
        if minutes > 0:
            false = "%8.2f %6.2f %11.2f" % (row["suspect"] / minutes, row["down"] / minutes,
                                              minutes)
        else:
            false = "%8s %6s %11s" % ("-", "-", "0")
        dropped, delayed = row.get("dropped"), row.get("delayed")
        if dropped is None:
            stage = "-"
        else:
            measured = ("%.1f%%" % (100.0 * dropped / (dropped + delayed))
                        if delayed else "-")
            stage = "%d %d %s" % (dropped, delayed, measured)
        note = "  (%s)" % "; ".join(row["errors"]) if row.get("errors") else ""
        print("%-18s | %s | %s | %s | %s%s" % (setting, detection, heard, false, stage, note))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("suspicions")
    p.add_argument("--node", action="append", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval-ms", type=float, default=50.0)
    p = commands.add_parser("detect")
    p.add_argument("--kill-pid", type=int, required=True)
    p.add_argument("--victim", type=int, required=True)
    p.add_argument("--node", action="append", required=True)
    p.add_argument("--timeout-s", type=float, default=15.0)
    p.add_argument("--interval-ms", type=float, default=10.0)
    p = commands.add_parser("table")
    p.add_argument("file")
    args = parser.parse_args()
    {"suspicions": suspicions, "detect": detect, "table": table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
