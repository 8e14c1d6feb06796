#!/usr/bin/env python3
"""check_layout.py — the layout claims of docs/architecture.md, checked.

Usage: check_layout.py ROOT BUILD_DIR

Prints one PASS/FAIL line per claim (tests/run counts them):
  1. the map names every source file (control/, dataplane/, include/,
     tests/unit/, tests/fuzz/): its file name in backticks in
     docs/architecture.md;
  2. no .c file outside tests/ is over 700 lines;
  3. no call cycle between the .c files of one library: from the object
     files of each static library in BUILD_DIR (nm: defined and undefined
     symbols), an edge A -> B when A uses a function B defines; any cycle is
     named;
  4. tally-produce links neither DPDK, PMDK nor inih (its link command in
     BUILD_DIR/build.ninja).
Exit status 0 when every claim holds, 1 otherwise.
"""
import glob
import os
import re
import subprocess
import sys

LINES_MAX = 700


def verdict(ok, text, details=()):
    print("%s %s" % ("PASS" if ok else "FAIL", text))
    for line in list(details)[:20]:
        print("    " + line)
    return ok


def tracked(root, *folders):
    out = subprocess.run(["git", "-C", root, "ls-files", *folders], check=True,
                         capture_output=True, text=True).stdout.split()
    return [f for f in out if f.endswith((".c", ".h"))]


def map_names_every_file(root):
    doc = open(os.path.join(root, "docs/architecture.md")).read()
    named = set(re.findall(r"`([^`\s]+)`", doc))
    missing = []
    for path in tracked(root, "control", "dataplane", "include", "tests/unit", "tests/fuzz"):
        base = os.path.basename(path)
        if base not in named and path not in named and not any(n.endswith("/" + base) for n in named):
            missing.append(path)
    return verdict(not missing, "layout: docs/architecture.md names every source file (%d missing)"
                   % len(missing), missing)


def files_small(root):
    big = []
    for path in tracked(root, "control", "dataplane", "include", "perf"):
        if not path.endswith(".c"):
            continue
        with open(os.path.join(root, path)) as f:
            n = sum(1 for _ in f)
        if n > LINES_MAX:
            big.append("%s: %d lines" % (path, n))
    return verdict(not big, "layout: no .c file outside tests/ over %d lines" % LINES_MAX, big)


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True, text=True).stdout
    defined = {l.split()[-1] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] in "TW"}
    out = subprocess.run(["nm", "-u", obj], capture_output=True, text=True).stdout
    used = {l.split()[-1] for l in out.splitlines() if l.strip()}
    return defined, used


def find_cycle(graph):
    state = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def no_call_cycles(build):
    libraries = sorted(glob.glob(os.path.join(build, "control/**/libtally*.a"), recursive=True) +
                       glob.glob(os.path.join(build, "dataplane/**/libtally*.a"), recursive=True))
    cycles = []
    objects_seen = 0
    for library in libraries:
        objects = sorted(glob.glob(library + ".p/*.o"))
        objects_seen += len(objects)
        table = {o: symbols(o) for o in objects}
        graph = {o: set() for o in objects}
        for a, (_, used) in table.items():
            for b, (defined, _) in table.items():
                if a != b and used & defined:
                    graph[a].add(b)
        cycle = find_cycle(graph)
        if cycle:
            names = [os.path.basename(o).replace(".c.o", ".c") for o in cycle]
            cycles.append("%s: %s" % (os.path.basename(library), " -> ".join(names)))
    ok = objects_seen > 0 and not cycles
    return verdict(ok, "layout: no call cycle between the .c files of a library (%d libraries, "
                   "%d objects)" % (len(libraries), objects_seen), cycles)


def produce_links_alone(build):
    ninja = open(os.path.join(build, "build.ninja")).read()
    match = re.search(r"^build control/tally-produce: .*?(?=^build )", ninja, re.S | re.M)
    if not match:
        return verdict(False, "layout: tally-produce's link command found in build.ninja")
    text = match.group(0)
    bad = [name for name in ("rte_", "dpdk", "pmem", "inih") if name in text]
    return verdict(not bad, "layout: tally-produce links no DPDK, PMDK or inih", bad)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 64
    root, build = sys.argv[1], sys.argv[2]
    results = [map_names_every_file(root), files_small(root), no_call_cycles(build),
               produce_links_alone(build)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
