#!/usr/bin/env python3
"""store_batches.py — what a (stopped) node's store knows of some reliable batches.

    store_batches.py STORE PRODUCER SEQ_FROM SEQ_TO

For every shard (the lcore shards, the compensation shard) and every bound
replica table (named by its origin node): the rel.* counter values, the
producer's record (its runs, and which of the seqs a run's head or tail
holds; UNDONE marks the compensation shard's undone set), the journal entries
and claims of those seqs. Reads the layout of docs/store-layout.md
directly (layout 6: 256-byte slots; the superblock's name hash key at
72..91 is not needed: slots are read in order, not looked up); for chaos
runs kept with --keep, next to the batch check.py names.
"""
import struct, sys

path, producer, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = open(path, 'rb').read()
if len(data) < 4096:
    print(path, ': %d bytes, not a store (truncated?)' % len(data))
    sys.exit(1)
SLOT = 256  # bytes of a counter slot (layout 5 and 6)
version, = struct.unpack_from('<I', data, 8)
if version != 6:
    print(path, ': layout version %d, this script reads 6' % version)
    sys.exit(1)
shard_count, counters_max, producers_max = struct.unpack_from('<III', data, 12)
R, = struct.unpack_from('<Q', data, 24)
replica_count, = struct.unpack_from('<I', data, 64)
print(path, 'shards', shard_count, 'R', R, 'replicas', replica_count, 'size', len(data))

def region_size(base):
    slots, pslots = struct.unpack_from('<I', data, base + 12)[0], struct.unpack_from('<I', data, base + 20)[0]
    j = 8192 + slots * SLOT + pslots * 192
    j = (j + 4095) // 4096 * 4096
    return j, slots, pslots

def runs_has(words, seq):
    out = []
    for r in range(3):
        head_last, hw0, hw1, last, window = words[r*5:(r+1)*5]
        if head_last == 0: break
        tail = seq <= last and last - seq < 64 and (window >> (last - seq)) & 1
        d = head_last - seq
        head = seq <= head_last and d < 128 and ((hw0 if d < 64 else hw1) >> (d % 64)) & 1
        if tail or head: out.append((r, 'tail' if tail else 'head'))
    return out

def dump_region(name, base):
    if len(data) < base + 4096: print(name, 'beyond file'); return
    magic, = struct.unpack_from('<Q', data, base)
    if magic != 0x44485359414c4154: print(name, 'no shard header'); return
    J, slots, pslots = region_size(base)
    held_seq, held_scan, jnext, cnext = struct.unpack_from('<QQQQ', data, base + 72)
    print('%s: slots %d pslots %d held_seq %d held_scan %d journal_next %d claims_next %d' % (name, slots, pslots, held_seq, held_scan, jnext, cnext))
    # counters
    vals = {}
    for i in range(slots):
        off = base + 8192 + SLOT * i
        nl, = struct.unpack_from('<H', data, off + 24)
        if nl:
            v, = struct.unpack_from('<q', data, off)
            vals[data[off+32:off+32+nl].decode(errors='replace')] = v
    rel = {k: v for k, v in vals.items() if k.startswith('rel.')}
    print('   rel values', dict(sorted(rel.items())))
    for j in range(pslots):
        off = base + 8192 + SLOT * slots + 192 * j
        pid, = struct.unpack_from('<Q', data, off)
        if pid in (producer, producer | (1 << 63)):
            words = struct.unpack_from('<15Q', data, off + 16)
            hits = {s: runs_has(words, s) for s in range(lo, hi + 1)}
            runs = [(words[r*5+3] and (words[r*5]-63, words[r*5+3])) for r in range(3)]
            print('   record %s%d runs(first,last) %s hits %s' % ('UNDONE ' if pid >> 63 else '', pid & ~(1<<63), runs, {s: h for s, h in hits.items() if h}))
    for k in range(8192):
        off = base + J + 1088 * k
        p, seq, count, crc, attempt, applied = struct.unpack_from('<QQIIII', data, off)
        if p == producer and lo <= seq <= hi:
            print('   journal[%d] seq %d attempt %d applied %d count %d' % (k, seq, attempt, applied, count))
    C = J + 8912896
    for k in range(8192):
        off = base + C + 32 * k
        p, seq, attempt, crc, pos = struct.unpack_from('<QQIIQ', data, off)
        if p == producer and lo <= seq <= hi:
            print('   claim pos %d seq %d attempt %d' % (pos, seq, attempt))

for s in range(shard_count):
    dump_region('shard %d' % s, 4096 + s * R)
base0 = 4096 + shard_count * R
if replica_count and len(data) > base0 + 4096:
    J, slots, pslots = region_size(base0)
    P = J + 9175040
    for r in range(replica_count):
        origin, crc = struct.unpack_from('<II', data, 192 + 8 * r)
        if origin == 0: continue
        dump_region('replica %d (origin %d)' % (r, origin), base0 + r * P)
