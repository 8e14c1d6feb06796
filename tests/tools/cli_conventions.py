#!/usr/bin/env python3
"""cli_conventions.py NAME BINARY VERSION — one command's command-line conventions
(docs/operations.md, "Commands and exit codes"), run by the unit suite for each of
tallyd, tallyctl, tally-produce and tally-blast:

  --help and -h   usage on stdout (starting "usage: NAME", naming --help, --version
                  and the exit codes), nothing on stderr, exit 0;
  --version       exactly "NAME VERSION" on stdout (the meson project version), exit 0;
  a bad option    usage on stderr, nothing on stdout, exit 64 (EX_USAGE).

None of these may start anything: tallyd answers before reading a config, so the
checks need no root, no hugepages and no network. Prints one line per failed check
and exits 1 if any failed.

tally-produce also (issue 14, L4): a key on the command line (--key HEX) is refused
with exit 64 pointing at --key-file and TALLY_KEY, and so is a --key-file that group
or others may read; nothing is sent (--nodes names the discard port of 127.0.0.1).

tallyctl also (issue 14, M2): producer-key ID --config FILE --out FILE writes the
producer's derived key (BLAKE2b of the id keyed with ingest.key, personalised
"tally-producer" and two NULs) to a new 0600 file; an existing --out, a config others may
read (nothing written) and id 0 are refused. No socket, no daemon."""
import hashlib
import os
import subprocess
import sys
import tempfile

EX_USAGE = 64


def run(binary, *arguments):
    return subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=30)


def check_producer_key(binary, check):
    ingest_key = bytes(range(32))
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "tally.ini")
        with open(config, "w") as f:
            f.write("[eal]\nargs = --no-pci\n[node]\nipv4 = 10.0.0.1\n[ingest]\nkey = %s\n"
                    "producer_keys = derived\n[store]\npath = %s\n"
                    % (ingest_key.hex(), os.path.join(directory, "store")))
        os.chmod(config, 0o600)
        out = os.path.join(directory, "producer-7.key")
        result = run(binary, "producer-key", "7", "--config", config, "--out", out)
        check(result.returncode == 0, "producer-key writes the key (exit 0)", result)
        want = hashlib.blake2b((7).to_bytes(8, "little"), digest_size=32, key=ingest_key,
                               person=b"tally-producer\0\0").hexdigest() + "\n"
        written = open(out).read() if os.path.exists(out) else ""
        check(written == want, "producer-key writes producer 7's derived key", result)
        check(os.path.exists(out) and os.stat(out).st_mode & 0o777 == 0o600,
              "producer-key's file is mode 0600", result)
        result = run(binary, "producer-key", "7", "--config", config, "--out", out)
        check(result.returncode == 3 and "exists" in result.stderr,
              "producer-key refuses an existing --out (exit 3)", result)
        result = run(binary, "producer-key", "0", "--config", config, "--out", out + "0")
        check(result.returncode == EX_USAGE, "producer-key refuses id 0 (exit 64)", result)
        os.chmod(config, 0o644)
        result = run(binary, "producer-key", "8", "--config", config, "--out", out + "8")
        check(result.returncode == 3 and "chmod 600" in result.stderr and
              not os.path.exists(out + "8"),
              "producer-key refuses a config others may read, writes nothing (exit 3)", result)


def main():
    name, binary, version = sys.argv[1:4]
    failures = []

    def check(ok, what, result):
        if not ok:
            failures.append("%s: %s (exit %d, stdout %r, stderr %r)" % (
                name, what, result.returncode, result.stdout[:200], result.stderr[:200]))

    for flag in ("--help", "-h"):
        result = run(binary, flag)
        check(result.returncode == 0, flag + " exits 0", result)
        check(result.stdout.startswith("usage: " + name + " "), flag + " prints usage on stdout",
              result)
        check(result.stderr == "", flag + " prints nothing on stderr", result)
        for needle in ("--help", "--version", "64"):
            check(needle in result.stdout, flag + " usage names " + needle, result)
        check("exit" in result.stdout, flag + " usage lists the exit codes", result)

    result = run(binary, "--version")
    check(result.returncode == 0, "--version exits 0", result)
    check(result.stdout == "%s %s\n" % (name, version), "--version prints 'NAME VERSION'", result)
    check(result.stderr == "", "--version prints nothing on stderr", result)

    result = run(binary, "--no-such-option")
    check(result.returncode == EX_USAGE, "a bad option exits 64", result)
    check(result.stdout == "", "a bad option prints nothing on stdout", result)
    check("usage: " + name + " " in result.stderr, "a bad option prints usage on stderr", result)

    if name == "tally-produce":
        common = ("--nodes", "127.0.0.1:9", "--producer", "1", "--timeout-ms", "1", "x:1")
        result = run(binary, "--key", "00" * 32, *common)
        check(result.returncode == EX_USAGE and "--key-file" in result.stderr,
              "--key HEX is refused (exit 64), pointing at --key-file", result)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "key")
            with open(path, "w") as f:
                f.write("11" * 32 + "\n")
            os.chmod(path, 0o644)
            result = run(binary, "--key-file", path, *common)
            check(result.returncode == EX_USAGE and "chmod 600" in result.stderr,
                  "a --key-file others may read is refused (exit 64)", result)

    if name == "tallyctl":
        check_producer_key(binary, check)

    for failure in failures:
        print("FAIL " + failure)
    if not failures:
        print("PASS %s: --help, -h, --version, bad option" % name)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
