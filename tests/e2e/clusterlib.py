"""Helpers for the cluster tests (tests/e2e/test_cluster.py): a real
redis-server with AOF on, pysprinterd nodes each in a network namespace the
test creates (a veth pair to the host namespace, addresses in 10.200.0.0/16
only), a load generator that submits runs while a nemesis acts, and the
checker that reads every acknowledged run back afterwards (Jepsen's "total
queue": every acknowledged run ends in exactly one terminal state with its
own result, completed once; duplicate executions are reported)."""
import contextlib
import http.client
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from daemonlib import Daemon, free_port, sandbox_mode

REDIS = shutil.which("redis-server")
TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}
SLEEPER = """
import time
def f(seconds: float = 0, tag: str = ""):
    time.sleep(seconds)
    return tag
"""
CLAIM_TIMEOUT_MS = 1500


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Redis:
    """redis-server with AOF on. The test itself talks to it on a unix socket
    in its directory (its view is never partitioned); `bind` makes it listen
    on TCP too, which is what the nodes use."""

    def __init__(self, root, appendonly="yes", appendfsync="always", bind=(), port=0):
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.dir / "redis.sock")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.bind = list(bind)
        self.port = port
        self.proc = None

    @property
    def url(self):
        return "unix:" + self.sock

    def start(self):
        tcp = ["--bind", *self.bind, "--protected-mode", "no"] if self.bind else []
        # No AOF rewrite: the checker reads the whole write history from it.
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), *tcp, "--unixsocket", self.sock, "--dir", str(self.dir),
             "--appendonly", self.appendonly, "--appendfsync", self.appendfsync, "--auto-aof-rewrite-percentage",
             "0", "--save", "", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not come up")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-s", self.sock, *args], capture_output=True, text=True)
        return r.stdout.strip()

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def aof_commands(self):
        """Every write command in the AOF, in order (RESP arrays; a tail cut
        by kill -9 is ignored, as Redis's own loader does)."""
        d = self.dir / "appendonlydir"
        if not d.is_dir():
            return []
        files = []
        for line in (next(d.glob("*.manifest"))).read_text().splitlines():
            f = line.split()
            if len(f) >= 6 and f[5] == "i":
                files.append(d / f[1])
        out = []
        for path in files:
            out.extend(_resp_arrays(path.read_bytes()))
        return out


def _resp_arrays(data):
    i, out = 0, []
    try:
        while i < len(data) and data[i:i + 1] == b"*":
            j = data.index(b"\r\n", i)
            count, i, argv = int(data[i + 1:j]), j + 2, []
            for _ in range(count):
                j = data.index(b"\r\n", i)
                n = int(data[i + 1:j])
                if len(data) < j + 4 + n:
                    return out
                argv.append(data[j + 2:j + 2 + n])
                i = j + 4 + n
            out.append(argv)
    except ValueError:
        pass
    return out


def node_of(redis, rid):
    return redis.cli("HGET", f"ps:run:{rid}", "node")


def netns_unavailable():
    """Why these tests cannot create network namespaces here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if not shutil.which("ip") or not shutil.which("nsenter"):
        return "needs iproute2 (ip netns) and nsenter"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns` is unavailable: {r.stderr.strip()}"
    return None


class NetNs:
    """A network namespace this test creates, joined to the host namespace
    by a veth pair with 10.200.<idx>.1 (host) / .2 (inside) /30, and removes.
    The index is one no other test on the machine holds (its names and its
    /30 are checked free): nothing else on the machine is touched."""

    def __init__(self, idx):
        self.idx = idx
        self.name = f"pysprinter-n{idx}"
        self.host_if, self.ns_if = f"psph{idx}", f"pspn{idx}"
        self.host_ip, self.ns_ip = f"10.200.{idx}.1", f"10.200.{idx}.2"
        self.made = []

    def ip(self, *args, ns=False):
        cmd = (["ip", "netns", "exec", self.name] if ns else []) + ["ip", *args]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")

    @staticmethod
    def run_netns_mounted():
        return any(l.split()[1] == "/run/netns" for l in open("/proc/self/mounts"))

    def in_use(self):
        addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        return (os.path.exists(f"/run/netns/{self.name}") or os.path.exists(f"/sys/class/net/{self.host_if}")
                or f" 10.200.{self.idx}." in addrs)

    def create(self):
        self.ip("netns", "add", self.name)
        self.made.append("netns")
        MADE_HERE.add(self.name)
        self.ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self.made.append("veth")
        self.ip("link", "set", self.ns_if, "netns", self.name)
        self.ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self.ip("link", "set", self.host_if, "up")
        self.ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self.ip("link", "set", self.ns_if, "up", ns=True)
        self.ip("link", "set", "lo", "up", ns=True)
        return self

    def link(self, up):
        self.ip("link", "set", self.ns_if, "up" if up else "down", ns=True)

    def remove(self):
        """Only what create() made; deleting the host end deletes its peer."""
        if "veth" in self.made:
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        if "netns" in self.made:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self.made = []
        # `ip netns add` mounts /run/netns when it is not yet: when that was
        # this session's doing (it was not mounted when the session began),
        # it is undone once no namespace is left in it, whichever test (or
        # other session on the machine) was the last to leave.
        if not _RUN_NETNS_MOUNTED_AT_START and self.run_netns_mounted() and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], capture_output=True)


_RUN_NETNS_MOUNTED_AT_START = NetNs.run_netns_mounted()
# The namespaces this session made: conftest's leftovers check counts
# only these (another session on the machine has its own under /run/netns).
MADE_HERE = set()


class NetnsUnavailable(RuntimeError):
    pass


def make_netns(tries=50):
    """A NetNs at a free index (another test on the machine may hold some)."""
    for _ in range(tries):
        ns = NetNs(random.randrange(2, 250))
        if ns.in_use():
            continue
        try:
            return ns.create()
        except RuntimeError as e:
            ns.remove()
            if "not permitted" in str(e) or "denied" in str(e):
                raise NetnsUnavailable(f"cannot create a network namespace here: {e}")
            # else lost a race for that index: try another
    raise RuntimeError("no free 10.200.N.0/30 for a test namespace")


class NsDaemon(Daemon):
    """pysprinterd inside a NetNs, listening on its inside address. It enters
    the namespace with nsenter --net (the daemon's own pid, and the host's
    mounts: `ip netns exec` would remount /sys and hide the cgroup tree)."""

    def __init__(self, netns, *args, **kw):
        super().__init__(*args, **kw)
        self.netns = netns

    @property
    def url(self):
        return f"http://{self.netns.ns_ip}:{self.port}"

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.netns.ns_ip, self.port, timeout=timeout)

    def start(self, port=None):
        self.port = port or self.port or free_port()
        cmd = ["nsenter", f"--net=/run/netns/{self.netns.name}", str(self.daemon_bin), "--listen",
               f"{self.netns.ns_ip}:{self.port}", "--config", str(self.config), *self.args]
        if self.sandbox:
            cmd.append(f"--sandbox={self.sandbox}")
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self.logf, stderr=self.logf)
        wait_until(lambda: self._up(), 15, "pysprinterd in the namespace to come up")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"pysprinterd exited {self.proc.returncode}: {self.log.read_text()}")
        try:
            return self.call("GET", "/healthz", token=None)[0] == 200
        except OSError:
            return False


class NsCluster:
    """Up to `size` nodes, each pysprinterd in its own NetNs, and Redis
    listening on TCP on the host end of every veth (the nodes reach it over
    their link: taking a link down partitions that node)."""

    def __init__(self, tmp_path, size=3):
        self.tmp = tmp_path
        self.netns, self.nodes = [], []
        try:
            for _ in range(size):
                self.netns.append(make_netns())
            self.redis = Redis(tmp_path, bind=[n.host_ip for n in self.netns], port=free_port()).start()
        except BaseException:
            self.close()
            raise
        self.mode = sandbox_mode(tmp_path)

    def node(self, name, role, slots=2):
        ns = self.netns[len(self.nodes)]
        d = NsDaemon(ns, self.tmp / name, sandbox=self.mode, config_extra=f"""
            server:
              max_concurrent_runs: {slots}
              max_concurrent_per_tenant: 64
              max_queued_runs: 1000
            """, args=["--redis", f"redis://{ns.host_ip}:{self.redis.port}", "--role", role, "--node-id", name,
                       "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "10"])
        self.nodes.append(d)
        d.start()
        return d

    def close(self):
        redis = getattr(self, "redis", None)
        for d in self.nodes:
            if d.proc is None:
                continue
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
            else:
                # A node killed with -9 left its pool's cgroups behind: its
                # next start (same home) clears them, as after a real crash.
                try:
                    if redis and redis.proc.poll() is not None:
                        redis.start()
                    d.netns.link(True)
                    d.start()
                except Exception:
                    continue
            d.stop(timeout=30)
        if redis:
            redis.stop()
        for ns in self.netns:
            ns.remove()


@pytest.fixture
def cluster(tmp_path):
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    try:
        c = NsCluster(tmp_path)
    except NetnsUnavailable as e:
        pytest.skip(str(e))
    try:
        yield c
    finally:
        c.close()


@contextlib.contextmanager
def loopback_cluster(tmp_path, nodes=(("g1", "gateway"), ("w1", "worker"))):
    """Redis (in tmp_path) and a pysprinterd for each (name, role) of nodes
    on loopback, started in that order, sharing it: the started daemons,
    stopped with Redis on leaving. Skips the test without redis-server."""
    if not REDIS:
        pytest.skip("redis-server is not installed")
    redis = Redis(tmp_path).start()
    started = []
    try:
        for name, role in nodes:
            n = Daemon(tmp_path / name, sandbox=sandbox_mode(tmp_path),
                       args=["--redis", redis.url, "--role", role, "--node-id", name])
            n.start()
            started.append(n)
        yield started
    finally:
        for n in started:
            n.stop()
        redis.stop()


class Load:
    """The load generator: submits SLEEPER runs through the gateways in turn
    (a refused or unanswered submit is not acknowledged, as for a client)
    until stopped. `acked` holds (id, tag) of every run a gateway accepted."""

    def __init__(self, gateways, seconds=0.5, every=0.2, token="alice"):
        self.gateways, self.seconds, self.every, self.token = list(gateways), seconds, every, token
        self.acked, self.refused = [], 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self.stop_ev.is_set():
            gw, tag = self.gateways[i % len(self.gateways)], f"t{i}"
            try:
                st, b = gw.call("POST", "/v1/runs", {"source": SLEEPER, "kwargs": {"seconds": self.seconds,
                                                                                  "tag": tag}}, token=self.token, timeout=10)
            except OSError:
                st = None
            if st == 202:
                self.acked.append((b["id"], tag))
            else:
                self.refused += 1
            i += 1
            self.stop_ev.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()

    def more(self, n, timeout=60, what="more acknowledged runs"):
        """Wait for n more acknowledged runs than now."""
        k = len(self.acked)
        wait_until(lambda: len(self.acked) >= k + n, timeout, what)

    def running_on(self, redis, node):
        """Of the last runs acknowledged (older ones have ended), those
        running on node."""
        return [r for r, _ in self.acked[-12:] if node_of(redis, r) == node and
                redis.cli("HGET", f"ps:run:{r}", "status") == "running"]


def completions(redis):
    """run id -> how many times a script ended its record. Every ending
    script (finish, cancel, reclaim → lost/cancelled) EXPIREs the record once
    and nothing else does; Redis writes it to the AOF as PEXPIREAT. The AOF
    is the durable history, so the count survives a kill -9 of Redis."""
    n = {}
    for argv in redis.aof_commands():
        if argv and argv[0].upper() in (b"PEXPIREAT", b"EXPIREAT", b"EXPIRE", b"PEXPIRE") and len(argv) > 1 \
                and argv[1].startswith(b"ps:run:"):
            rid = argv[1][len(b"ps:run:"):].decode()
            n[rid] = n.get(rid, 0) + 1
    return n


def check(cluster, gateways, acked, tokens=("alice",), timeout=120):
    """The checker: every acknowledged run, read back through any live
    gateway, ends in exactly one terminal state with its own result (never
    another run's), completed exactly once (0 lost, 0 duplicate
    completions). Returns what it saw, with the duplicate executions (runs
    whose record needed more than one attempt) and late results dropped as
    stale, which are allowed."""
    redis = cluster.redis
    ends, deadline = {}, time.time() + timeout
    for rid, tag in acked:
        while True:
            b = _read_run(gateways, rid, tokens)
            if b and b["status"] in TERMINAL:
                break
            assert time.time() < deadline, f"run {rid} never ended: {b}"
            time.sleep(0.05)
        assert b["status"] == "succeeded" and b["result"] == tag, (tag, b)
        ends[rid] = b
    ids = {rid for rid, _ in acked}
    # The AOF is written before Redis answers: every ending is in it by now.
    done = completions(redis)
    dup = {k: v for k, v in done.items() if v > 1}
    assert not dup, f"duplicate completions: {dup}"
    missing = [rid for rid in ids if done.get(rid) != 1]
    assert not missing, f"acknowledged runs never completed in Redis: {missing}"
    report = {"acked": len(acked), "completed_once": len(ids),
              "reexecuted": sorted(r for r, b in ends.items() if b["attempt"] > 1),
              "stale": int(redis.cli("GET", "ps:stale") or 0)}
    return ends, report


def _read_run(gateways, rid, tokens):
    """The run as the first live gateway answers it (to its tenant)."""
    for gw in gateways:
        if gw.proc.poll() is not None:
            continue
        for token in tokens:
            try:
                st, b = gw.call("GET", f"/v1/runs/{rid}", token=token, timeout=10)
            except OSError:
                break
            if st == 200:
                return b
            assert st == 404, (rid, st, b)
    return None


def summary(name, load, report, extra=""):
    print(f"{name}: {report['acked']} runs acknowledged ({load.refused} submits refused), each ended once, "
          f"0 lost, 0 duplicate completions; {len(report['reexecuted'])} executed again, "
          f"{report['stale']} late results dropped as stale{extra}")
