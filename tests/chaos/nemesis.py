#!/usr/bin/env python3
"""nemesis.py — the chaos suite's fault schedule, a pure function of its seed.

Prints one step per line, for tests/chaos/run.sh to execute in order:

    STEP KIND ARGS... hold_ms=H gap_ms=G

    kill N            kill -9 node N, keep it down H ms, restart it
    wipe N            kill -9 node N, delete its store, restart it (disk loss)
    truncate N P      kill -9 node N, truncate its store to P per mille of its
                      size (0 = an empty file), restart it
    corrupt N P L S   kill -9 node N, write L bytes of garbage (from seed S)
                      at P per mille of its store, restart it
    isolate N         cut node N from both peers (minority N, majority the
                      others) for H ms, heal
    bridge I J        cut only the I-J link for H ms (the third node sees both
                      sides), heal
    unreachable N     take node N off the dataplane switch for H ms
                      (producers must fail over), put it back
    mute N            node N's datagrams to every peer are lost for H ms, while
                      it still hears them (asymmetric: N sees its peers up)
    oneway I J        node I's datagrams to J are lost for H ms (J's to I arrive)
    throttle I J K    the I-J link limited to K kbit/s for H ms (delay and
                      drops under load: the nearest thing to netem delay here)
    lossy I J L D     on the I-J link, both ways, each datagram dropped with
                      probability L per mille, else duplicated with D per mille
    dplossy N L       frames between node N and the producers' switch dropped
                      with probability L per mille (lost batches, lost acks)

then waits G ms before the next step. --kinds limits the draw to some kinds
(to chase one fault; the default draws from all). Faults never overlap: each step heals
before the next starts, so a store is never destroyed while another node is
down (the guarantee is "no acknowledged increment lost while the rest of the
write quorum lives"). The first steps go through every kind once, in a
seeded order, so even a short run meets each fault; later steps draw kinds
with weights. The schedule covers about --duration seconds (restarts are
estimated at 2 s each); the same seed, duration and node count give the same
schedule, byte for byte.
"""
import argparse
import random
import sys

KINDS = ("kill", "wipe", "truncate", "corrupt", "isolate", "bridge", "unreachable", "mute",
         "oneway", "throttle", "lossy", "dplossy")
WEIGHTS = (15, 8, 8, 12, 15, 12, 8, 8, 7, 7, 10, 7)
PAIR_KINDS = frozenset(("isolate", "bridge", "mute", "oneway", "throttle", "lossy"))
RESTART_KINDS = frozenset(("kill", "wipe", "truncate", "corrupt"))
RESTART_ESTIMATE_MS = 2000
STEPS_MAX = 10000


def step(rng, kind, nodes):
    node = rng.randint(1, nodes)
    if kind == "kill":
        args, hold = [node], rng.randint(300, 3000)
    elif kind == "wipe":
        args, hold = [node], rng.randint(300, 2000)
    elif kind == "truncate":
        args, hold = [node, rng.choice((0, rng.randint(1, 999)))], rng.randint(300, 2000)
    elif kind == "corrupt":
        args = [node, rng.randint(200, 800), rng.choice((16, 512, 4096, rng.randint(1, 65536))),
                rng.randrange(1 << 31)]
        hold = rng.randint(300, 2000)
    elif kind == "isolate":
        args, hold = [node], rng.randint(1000, 5000)
    elif kind == "bridge":
        i, j = sorted(rng.sample(range(1, nodes + 1), 2))
        args, hold = [i, j], rng.randint(1000, 5000)
    elif kind == "mute":
        args, hold = [node], rng.randint(1000, 5000)
    elif kind == "oneway":
        args, hold = rng.sample(range(1, nodes + 1), 2), rng.randint(1000, 5000)
    elif kind == "throttle":
        i, j = sorted(rng.sample(range(1, nodes + 1), 2))
        args, hold = [i, j, rng.choice((8, 16, 64, 256))], rng.randint(1000, 5000)
    elif kind == "lossy":
        i, j = sorted(rng.sample(range(1, nodes + 1), 2))
        args = [i, j, rng.choice((50, 200, 500)), rng.choice((0, 100, 300))]
        hold = rng.randint(1000, 5000)
    elif kind == "dplossy":
        args, hold = [node, rng.choice((100, 300, 600))], rng.randint(1000, 5000)
    else:
        args, hold = [node], rng.randint(500, 3000)
    return [kind] + args + ["hold_ms=%d" % hold, "gap_ms=%d" % rng.randint(300, 2000)]


def schedule(seed, duration_s, nodes, kinds=KINDS):
    rng = random.Random("tally-nemesis/%d/%d" % (seed, nodes))
    weights = [w for k, w in zip(KINDS, WEIGHTS) if k in kinds]
    kinds = [k for k in KINDS if k in kinds]
    first = [k for k in kinds if nodes >= 2 or k not in PAIR_KINDS]
    rng.shuffle(first)
    steps, total_ms = [], 0
    while total_ms < duration_s * 1000 and len(steps) < STEPS_MAX:
        if first:
            kind = first.pop(0)
        else:
            kind = rng.choices(kinds, weights)[0]
            if nodes < 2 and kind in PAIR_KINDS:
                continue
        s = step(rng, kind, nodes)
        total_ms += int(s[-2].split("=")[1]) + int(s[-1].split("=")[1])
        total_ms += RESTART_ESTIMATE_MS if kind in RESTART_KINDS else 0
        steps.append(s)
    return steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--duration", type=int, default=60, help="seconds of faults")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="comma-separated fault kinds to draw from (default: all)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    if not 1 <= args.nodes <= 9 or args.duration < 0:
        p.error("1..9 nodes, duration >= 0")
    if not kinds or any(k not in KINDS for k in kinds):
        p.error("--kinds: choose from " + ",".join(KINDS))
    if args.nodes < 2 and all(k in PAIR_KINDS for k in kinds):
        p.error("--kinds: every kind chosen needs two nodes")
    for number, s in enumerate(schedule(args.seed, args.duration, args.nodes, kinds), 1):
        print(number, *s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
