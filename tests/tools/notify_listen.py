#!/usr/bin/env python3
"""notify_listen.py SOCKET LOG TALLYCTL MGMT_SOCKET — plays systemd's side of
sd_notify for node.sh: binds the Unix datagram socket SOCKET (tallyd is then
started with NOTIFY_SOCKET=SOCKET), and writes one line to LOG per message,
its fields joined by spaces. When a message holds READY=1 it runs
`TALLYCTL -s MGMT_SOCKET ready` at once and writes "tallyctl-ready EXIT": the
readiness tallyd announced, checked by the operator's own command. Ends after
STOPPING=1, or when no message came for IDLE_S (a bound on its life, not a
check). Creates SOCKET before it prints "bound" and flushes, so the caller can
wait for that line before starting tallyd."""
import os
import socket
import subprocess
import sys

IDLE_S = 120


def main():
    path, log_path, tallyctl, mgmt = sys.argv[1:5]
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(IDLE_S)
    print("bound", flush=True)
    with open(log_path, "w") as log:
        while True:
            try:
                data = sock.recv(4096)
            except socket.timeout:
                log.write("idle\n")
                return 1
            fields = data.decode("utf-8", "replace").strip().split("\n")
            log.write(" ".join(fields) + "\n")
            if "READY=1" in fields:
                ready = subprocess.run([tallyctl, "-s", mgmt, "ready"], capture_output=True)
                log.write("tallyctl-ready %d\n" % ready.returncode)
            log.flush()
            if "STOPPING=1" in fields:
                return 0


if __name__ == "__main__":
    sys.exit(main())
