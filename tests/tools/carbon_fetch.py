#!/usr/bin/env python3
"""carbon_fetch.py — reads carbon's whisper files back with whisper-fetch.

Usage: carbon_fetch.py WHISPER_DIR EXPECT_JSON
EXPECT_JSON maps carbon paths ("tally.t.gr.x") to the value the newest
point of each must hold. The path's file is WHISPER_DIR/<path with '.' as
'/'>.wsp (carbon's layout for untagged metrics). Each file is read with
Debian's whisper-fetch (python3-whisper) over the last hour; the newest
point that is not None is compared. Exit 0 when every path holds its value,
1 otherwise (what differs is printed), so a caller can retry until carbon
has written its cache.
"""
import json
import os
import subprocess
import sys
import time


def newest(path):
    if not os.path.exists(path):
        return None
    out = subprocess.run(["whisper-fetch", "--from=%d" % (time.time() - 3600), path],
                         capture_output=True, text=True, check=True).stdout
    points = [line.split("\t") for line in out.splitlines()]
    values = [v for _, v in points if v != "None"]
    return float(values[-1]) if values else None


def main():
    whisper_dir, expect_file = sys.argv[1:3]
    expect = json.load(open(expect_file))
    bad = {}
    for metric, value in sorted(expect.items()):
        got = newest(os.path.join(whisper_dir, *metric.split(".")) + ".wsp")
        if got != float(value):
            bad[metric] = (value, got)
    if bad or not expect:
        print("differ (expected, newest in whisper):", dict(list(bad.items())[:10]),
              "of", len(expect))
        return 1
    print("%d carbon paths hold the expected values" % len(expect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
