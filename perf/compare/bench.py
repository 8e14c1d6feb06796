#!/usr/bin/env python3
"""bench.py — the machinery shared by the end-to-end comparison (compare.py)
and the scaling curves (scaling.py): servers started and stopped by PID,
their CPU time and resident memory read from /proc, tally-blast runs, and
the read-back of what each server counted, compared with tally-blast's
exact expectation.

Servers: tallyd (in the node namespace of scripts/netns.sh, over the veth
pair, DPDK net_af_packet), redis-server, Etsy statsd (node), collectd with
its statsd plugin. Everything listens on 127.0.0.1 or inside the test
namespaces. Standard library only.
"""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TALLY_NODE_IP = "10.77.0.1"
TALLY_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
BLAST_TIMEOUT_S = 120


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ---- /proc ----------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of every thread of the process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_busy_ticks(cpu):
    """Non-idle clock ticks of one CPU so far (from /proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%d " % cpu):
                fields = [int(x) for x in line.split()[1:]]
                return sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    return 0


def thread_ticks(pid, prefix=""):
    """utime + stime ticks of the process's threads whose name starts with prefix."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
                if not f.read().startswith(prefix):
                    continue
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue  # the thread ended
    return total


def minor_faults(pid):
    """Minor page faults of the whole process so far (a write to a page that
    msync cleaned faults again: the cost of group commit on a file)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7])


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- Processes ----------------------------------------------------------------------

class Server:
    """A server process we started; stopped by its PID, never by name."""

    def __init__(self, name, argv, logfile, env=None):
        self.name = name
        self.logfile = logfile
        out = open(logfile, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
        out.close()
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout_s=10.0):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)


def wait_until(predicate, seconds, step_s=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def udp_port_bound(port):
    """Whether some process holds UDP 127.0.0.1:port (from /proc/net/udp)."""
    want = ":%04X" % port
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(want) for line in list(f)[1:])


# ---- tally-blast ----------------------------------------------------------------------

def blast(build, args, netns=None, cpu=None, expect=None):
    """Runs tally-blast; returns its JSON summary (and the expectation if asked)."""
    argv = [os.path.join(build, "perf/blast/tally-blast")] + [str(a) for a in args]
    if expect:
        argv += ["--expect", expect]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BLAST_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError("tally-blast failed (%d): %s %s" % (done.returncode, done.stdout, done.stderr))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if expect:
        with open(expect) as f:
            summary["expect"] = json.load(f)
    return summary


def workload_args(workload, mode):
    """The tally-blast options of a workload dict, for one protocol."""
    args = ["--counters", workload["counters"], "--seed", workload["seed"],
            "--dist", workload.get("dist", "uniform"), "--prefix", workload.get("prefix", "blast.")]
    if mode == "redis":
        args += ["--pipeline", workload["lines"]]
    else:
        args += ["--lines", workload["lines"]]
    return args


def names_of(workload):
    prefix = workload.get("prefix", "blast.")
    return ["%s%d" % (prefix, i) for i in range(workload["counters"])]


# ---- Exactness ----------------------------------------------------------------------

def compare_counts(before, after, expect):
    """What was counted between two read-backs, against the expectation.
    Returns (exact, counted_increments, wrong_counters)."""
    totals = expect["totals"]
    uncertain = expect.get("uncertain", {})
    counted = 0
    wrong = 0
    for name in set(after) | set(totals):
        delta = after.get(name, 0) - before.get(name, 0)
        counted += delta
        want = totals.get(name, 0)
        if delta != want and not (uncertain.get(name) and want <= delta <= want + uncertain[name]):
            wrong += 1
    return wrong == 0, counted, wrong


# ---- tallyd ----------------------------------------------------------------------------

def tally_store_path(work, persist, tag="cmp"):
    if persist == "log":
        return os.path.join(tally_image_dir(tag), "store.image")
    return os.path.join(work, "store.pmem")


def tally_image_dir(tag="cmp"):
    """Log mode: where the image lives (tmpfs), one directory per run."""
    return "/dev/shm/tally-%s-%d" % (tag, os.getpid())


TRANSPORTS = ("af_packet", "af_xdp")


def vdev_for(transport, lcores=1, extra=""):
    """The --vdev of tallyd's port on tally0: DPDK's net_af_packet (a
    PACKET_MMAP ring per queue pair) or net_af_xdp (an XDP program on the
    veth redirects to an AF_XDP socket per queue; the veth has one queue by
    default, so queue_count above 1 needs `ethtool -L`). extra: more devargs,
    e.g. "framecnt=4096,blocksz=8192" for af_packet."""
    if transport == "af_packet":
        vdev = "net_af_packet0,iface=tally0,qpairs=%d" % lcores
    elif transport == "af_xdp":
        vdev = "net_af_xdp0,iface=tally0,start_queue=0,queue_count=%d" % lcores
    else:
        raise ValueError("transport %r: one of %s" % (transport, ", ".join(TRANSPORTS)))
    return vdev + ("," + extra if extra else "")


def tally_config(path, work, lcores=1, counters_max=65536, persist="group_commit",
                 commit_interval_ms=2, mbufs=16383, producers_max=1024, tag="cmp", vdev=None,
                 transport="af_packet"):
    """A tallyd config for the node namespace. lcores dataplane lcores get as
    many queue pairs of the transport (vdev_for; vdev overrides it); on a host with fewer CPUs than lcores + 1 the
    lcores are mapped onto the CPUs round robin (oversubscribed). persist =
    log puts the image on /dev/shm and the log in work/log (on disk)."""
    cpus = os.cpu_count() or 1
    if lcores + 1 <= cpus:
        lcore_arg = "-l 0-%d" % lcores
    else:
        lcore_arg = "--lcores=" + ",".join("%d@%d" % (i, i % cpus) for i in range(lcores + 1))
    vdev = vdev or vdev_for(transport, lcores)
    eal = ("%s --in-memory --no-pci --file-prefix tally-%s-%d --vdev=%s --log-level=lib.eal:warning"
           % (lcore_arg, tag, os.getpid(), vdev))
    text = """[eal]
args = %s
[node]
ipv4 = %s
[ingest]
statsd_port = 8125
binary_port = 8126
key = %s
[store]
path = %s
counters_max = %d
producers_max = %d
commit_interval_ms = %d
persist = %s
%s
[dataplane]
mbufs = %d
[control]
socket = %s/tally.sock
http = 127.0.0.1:9125
""" % (eal, TALLY_NODE_IP, TALLY_KEY, tally_store_path(work, persist, tag), counters_max,
       producers_max, commit_interval_ms, persist,
       "log_dir = %s/log" % work if persist == "log" else "", mbufs, work)
    # It holds a key: tallyd refuses a config file others can read.
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


class Tallyd:
    """tallyd in the node namespace; producers run in the peer namespace."""

    def __init__(self, build, work, node_ns, peer_ns, env=None, **config):
        self.build = build
        self.work = work
        self.node_ns = node_ns
        self.peer_ns = peer_ns
        for stale in ("store.pmem", "tally.sock"):
            if os.path.exists(os.path.join(work, stale)):
                os.unlink(os.path.join(work, stale))
        # Log mode: a fresh image and log for every start.
        self.image_dir = tally_image_dir(config.get("tag", "cmp")) if config.get("persist") == "log" else None
        if self.image_dir:
            subprocess.run(["rm", "-rf", self.image_dir, os.path.join(work, "log")], check=True)
            os.makedirs(self.image_dir)
        self.store_path = tally_store_path(work, config.get("persist", "group_commit"),
                                           config.get("tag", "cmp"))
        self.config_path = os.path.join(work, "tally.ini")
        tally_config(self.config_path, work, **config)
        self.socket = os.path.join(work, "tally.sock")
        tallyd = os.path.join(build, "control/tallyd")
        self.server = Server("tallyd", ["ip", "netns", "exec", node_ns, tallyd, "-c", self.config_path],
                             os.path.join(work, "tallyd.log"), env=env)
        self.pid = self.server.pid
        if not wait_until(lambda: self.ctl("ready", check=False) is not None or not self.server.alive(), 60):
            raise RuntimeError("tallyd did not become ready; see %s" % self.server.logfile)
        if not self.server.alive():
            raise RuntimeError("tallyd exited; see %s" % self.server.logfile)

    def ctl(self, *args, check=True):
        done = subprocess.run([os.path.join(self.build, "control/tallyctl"), "-s", self.socket] + list(args),
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            if check:
                raise RuntimeError("tallyctl %s: %s" % (" ".join(args), done.stderr.strip()))
            return None
        return done.stdout

    def stats(self):
        return dict(line.split(None, 1) for line in self.ctl("stats").splitlines() if " " in line)

    def read(self, workload):
        out = self.ctl("list", workload.get("prefix", "blast."))
        return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip()}

    def stop(self):
        self.server.stop()
        if self.image_dir:
            subprocess.run(["rm", "-rf", self.image_dir], check=False)


class LcoreMeter:
    """How busy tallyd's dataplane lcores were over an interval. An idle poll
    costs a fixed time, so busy = 1 - idle polls / (idle polls per second of a
    quiet lcore * lcore CPU seconds). Counting CPU seconds of the lcore
    threads (not wall time) keeps the figure right when other processes on
    a shared machine preempt the lcores; how much they did is held_share."""

    def __init__(self, tally, lcores, quiet_s=0.5):
        self.tally = tally
        self.lcores = lcores
        idle0, cpu0 = self.sample()
        time.sleep(quiet_s)
        idle1, cpu1 = self.sample()
        self.idle_per_cpu_s = (idle1 - idle0) / max(cpu1 - cpu0, 1e-3)

    def sample(self):
        idle = int(self.tally.stats()["idle_polls"])
        return idle, thread_ticks(self.tally.pid, "rte-worker") / CLOCK_TICKS

    def start(self):
        self.begin = self.sample() + (time.monotonic(),)

    def stop(self):
        idle1, cpu1 = self.sample()
        idle0, cpu0, t0 = self.begin
        cpu_s = max(cpu1 - cpu0, 1e-3)
        busy = 1.0 - (idle1 - idle0) / self.idle_per_cpu_s / cpu_s
        held = cpu_s / (time.monotonic() - t0) / self.lcores
        return {"lcore_busy": round(min(1.0, max(0.0, busy)), 3), "lcore_cpu_share": round(held, 3)}


# ---- Redis -------------------------------------------------------------------------------

def resp_command(sock_file, args):
    payload = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(str(a)), a) for a in args)
    sock_file.write(payload.encode())
    sock_file.flush()


def resp_read(sock_file):
    line = sock_file.readline().decode().rstrip("\r\n")
    kind, rest = line[0], line[1:]
    if kind == "+":
        return rest
    if kind == "-":
        raise RuntimeError("redis: %s" % rest)
    if kind == ":":
        return int(rest)
    if kind == "$":
        if int(rest) < 0:
            return None
        data = sock_file.read(int(rest) + 2)
        return data[:-2].decode()
    if kind == "*":
        return [resp_read(sock_file) for _ in range(int(rest))]
    raise RuntimeError("unexpected RESP reply %r" % line)


class Redis:
    def __init__(self, work, port, appendonly, appendfsync="everysec", cpu=None, tag="redis"):
        self.port = port
        self.dir = os.path.join(work, tag)  # a fresh directory: no AOF of an earlier run
        os.makedirs(self.dir, exist_ok=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if appendonly else "no",
                "--appendfsync", appendfsync, "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.server = Server("redis", argv, os.path.join(self.dir, "stdout.log"))
        self.pid = self.server.pid
        if not wait_until(lambda: self.ping() or not self.server.alive(), 15):
            raise RuntimeError("redis-server did not start; see %s" % self.dir)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                f = sock.makefile("rwb")
                resp_command(f, ["PING"])
                return resp_read(f) == "PONG"
        except (OSError, RuntimeError, IndexError):
            return False

    def read(self, workload):
        names = names_of(workload)
        values = {}
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            f = sock.makefile("rwb")
            for i in range(0, len(names), 1000):
                chunk = names[i:i + 1000]
                resp_command(f, ["MGET"] + chunk)
                for name, value in zip(chunk, resp_read(f)):
                    if value is not None:
                        values[name] = int(value)
        return values

    def stop(self):
        self.server.stop()


# ---- Etsy statsd ----------------------------------------------------------------------------

class EtsyStatsd:
    """Etsy statsd (node): UDP on 127.0.0.1, counters read back through its
    management interface ('counters'); no flush happens during a run (the
    flush interval is an hour), so counters only grow."""

    def __init__(self, work, statsd_dir, port, mgmt_port, cpu=None):
        self.port = port
        self.mgmt_port = mgmt_port
        config = os.path.join(work, "etsy-statsd.js")
        with open(config, "w") as f:
            f.write('{ port: %d, address: "127.0.0.1", mgmt_port: %d, mgmt_address: "127.0.0.1",\n'
                    '  flushInterval: 3600000, backends: [], deleteCounters: false,\n'
                    '  automaticConfigReload: false }\n' % (port, mgmt_port))
        argv = ["node", os.path.join(statsd_dir, "stats.js"), config]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.server = Server("etsy-statsd", argv, os.path.join(work, "etsy-statsd.log"))
        self.pid = self.server.pid
        if not wait_until(lambda: port_open("127.0.0.1", mgmt_port) or not self.server.alive(), 20):
            raise RuntimeError("Etsy statsd did not start; see %s" % self.server.logfile)

    def read(self, workload):
        with socket.create_connection(("127.0.0.1", self.mgmt_port), timeout=30) as sock:
            sock.sendall(b"counters\n")
            data = b""
            deadline = time.monotonic() + 30
            while not data.endswith(b"END\n\n") and time.monotonic() < deadline:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        text = data.decode()
        prefix = workload.get("prefix", "blast.")
        values = {}
        for name, value in re.findall(r"'([^']+)':\s*(-?[0-9.e+]+)", text):
            if name.startswith(prefix):
                values[name] = int(float(value))
        return values

    def stop(self):
        self.server.stop()


# ---- collectd -----------------------------------------------------------------------------

class Collectd:
    """collectd with the statsd plugin on 127.0.0.1 and the csv plugin
    (StoreRates false) to read the cumulative counter values back. Values
    appear at each Interval, so a read waits for the next one."""

    def __init__(self, work, port, interval_s=2, cpu=None):
        self.port = port
        self.interval_s = interval_s
        self.dir = os.path.join(work, "collectd")
        os.makedirs(self.dir, exist_ok=True)
        config = os.path.join(self.dir, "collectd.conf")
        with open(config, "w") as f:
            f.write("""Hostname "bench"
FQDNLookup false
Interval %d
BaseDir "%s"
PIDFile "%s/collectd.pid"
WriteThreads 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel "warning"
  File "%s/collectd.log"
</Plugin>
LoadPlugin statsd
LoadPlugin csv
<Plugin statsd>
  Host "127.0.0.1"
  Port "%d"
  DeleteCounters false
</Plugin>
<Plugin csv>
  DataDir "%s/csv"
  StoreRates false
</Plugin>
""" % (interval_s, self.dir, self.dir, self.dir, port, self.dir))
        argv = ["collectd", "-f", "-C", config]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.server = Server("collectd", argv, os.path.join(self.dir, "stdout.log"))
        self.pid = self.server.pid
        if not wait_until(lambda: udp_port_bound(port) or not self.server.alive(), 15):
            raise RuntimeError("collectd did not start; see %s" % self.dir)

    def settle(self):
        time.sleep(self.interval_s * 2 + 0.5)

    def read(self, workload):
        values = {}
        base = os.path.join(self.dir, "csv", "bench", "statsd")
        for path in glob.glob(os.path.join(base, "derive-%s*" % workload.get("prefix", "blast."))):
            name = os.path.basename(path)[len("derive-"):-len("-YYYY-MM-DD")]
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256))
                last = f.read().decode().strip().splitlines()[-1]
            if "," in last and not last.startswith("epoch"):
                values[name] = max(values.get(name, 0), int(float(last.split(",")[1])))
        return values

    def stop(self):
        self.server.stop()
