"""Cluster mode (docs/cluster.md): pysprinterd nodes that share runs through
a real redis-server (AOF on, started by the test on a unix socket in the
test's directory), on loopback ports. A load generator submits runs through
a gateway; the checker reads every acknowledged run back and asserts it
ended in exactly one terminal state, under kill -9 of a worker, SIGSTOP of a
worker past the claim timeout, and kill -9 + restart of Redis."""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import http.client
import json

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon, free_port, sandbox_mode

REDIS = shutil.which("redis-server")
pytestmark = [pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built"),
              pytest.mark.skipif(not REDIS, reason="redis-server is not installed")]

TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}
SLEEPER = """
import time
def f(seconds: float = 0, tag: str = ""):
    time.sleep(seconds)
    return tag
"""
CLAIM_TIMEOUT_MS = 1500


class Redis:
    def __init__(self, root, appendonly="yes", appendfsync="always"):
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.dir / "redis.sock")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra = []
        self.proc = None

    @property
    def url(self):
        return "unix:" + self.sock

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", "0", *self.extra, "--unixsocket", self.sock, "--dir", str(self.dir), "--appendonly",
             self.appendonly, "--appendfsync", self.appendfsync, "--save", "", "--loglevel", "warning"],
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


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path).start()
    yield r
    r.stop()


@pytest.fixture
def nodes(tmp_path, redis):
    started = []
    mode = sandbox_mode(tmp_path)

    def start(name, role, slots=2, extra=(), http_threads=None):
        threads = f"http_threads: {http_threads}" if http_threads else ""
        d = Daemon(tmp_path / name, sandbox=mode, config_extra=f"""
            server:
              max_concurrent_runs: {slots}
              max_concurrent_per_tenant: {slots}
              {threads}
            """, args=["--redis", redis.url, "--role", role, "--node-id", name,
                       "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "10", *extra])
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGCONT)
        else:
            # A node killed with -9 left its pool's cgroups behind: its next
            # start (same home) clears them, as after a real crash.
            if redis.proc.poll() is not None:
                redis.start()
            d.start()
        d.stop(timeout=30)


def submit(gw, seconds, tag):
    st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": seconds, "tag": tag})
    assert st == 202, (st, b)
    return b["id"]


def node_of(redis, rid):
    return redis.cli("HGET", f"ps:run:{rid}", "node")


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def check_all_terminal(gw, acked, timeout=120):
    """The checker: every acknowledged run ends in exactly one terminal
    state with its own tag as the value (never another run's result)."""
    ends = {}
    deadline = time.time() + timeout
    for rid, tag in acked:
        while True:
            st, b = gw.call("GET", f"/v1/runs/{rid}")
            assert st == 200, (rid, st, b)
            if b["status"] in TERMINAL:
                ends[rid] = b
                break
            assert time.time() < deadline, f"run {rid} never ended: {b}"
            time.sleep(0.05)
        assert b["status"] == "succeeded", b
        assert b["result"] == tag, b
    return ends


def test_gateway_and_worker_share_runs(nodes, redis):
    gw = nodes("gw1", "gateway")
    nodes("w1", "worker")
    st, b = gw.run(SLEEPER, kwargs={"tag": "hello"})
    assert st == 200 and b["status"] == "succeeded" and b["result"] == "hello", b
    assert node_of(redis, b["id"]) == "w1"
    st, lst = gw.call("GET", "/v1/runs")
    assert st == 200 and b["id"] in [r["id"] for r in lst["runs"]]
    # another tenant does not see it
    st, _ = gw.call("GET", f"/v1/runs/{b['id']}", token="bob")
    assert st == 404
    st, s = gw.call("GET", "/v1/cluster")
    assert st == 200, s
    by_id = {n["id"]: n for n in s["nodes"]}
    assert by_id["w1"]["alive"] and by_id["w1"]["role"] == "worker" and by_id["w1"]["slots"] == 2
    assert by_id["gw1"]["role"] == "gateway"
    assert s["pending"] == 0 and s["dead_letters"] == 0


def test_refuses_redis_that_can_lose_runs(tmp_path):
    volatile = Redis(tmp_path / "volatile", appendonly="no").start()
    try:
        d = Daemon(tmp_path / "n", args=["--redis", volatile.url, "--node-id", "n1"])
        with pytest.raises(RuntimeError) as e:
            d.start()
        assert "appendonly" in str(e.value) and "--redis-volatile" in str(e.value)
        d2 = Daemon(tmp_path / "n2", args=["--redis", volatile.url, "--node-id", "n2", "--redis-volatile"])
        d2.start()
        d2.stop()
    finally:
        volatile.stop()


def test_kill9_worker_mid_run_its_runs_finish_elsewhere(nodes, redis):
    gw = nodes("gw1", "gateway")
    w1 = nodes("w1", "worker")
    nodes("w2", "worker")
    acked = [(submit(gw, 2, f"t{i}"), f"t{i}") for i in range(8)]
    # kill w1 while it runs at least one of them
    on_w1 = wait_until(lambda: [r for r, _ in acked if node_of(redis, r) == "w1" and
                                redis.cli("HGET", f"ps:run:{r}", "status") == "running"], 60, "a run on w1")
    w1.kill9()
    t0 = time.time()
    ends = check_all_terminal(gw, acked)
    print(f"kill -9 w1: all {len(acked)} runs ended {time.time() - t0:.1f}s later; "
          f"{sum(e['attempt'] > 1 for e in ends.values())} ran again elsewhere")
    for rid in on_w1:
        assert ends[rid]["attempt"] >= 2, ends[rid]      # ran again elsewhere
        assert node_of(redis, rid) == "w2"
    # within claim timeout + lease + run time (+ slack for a loaded machine)
    assert time.time() - t0 < CLAIM_TIMEOUT_MS / 1000 + 3 + 4 * 2 + 30
    st, s = gw.call("GET", "/v1/cluster")
    assert s["pending"] == 0 and s["queued"] == 0


def test_sigstop_worker_late_completion_is_stale(nodes, redis):
    gw = nodes("gw1", "gateway")
    w1 = nodes("w1", "worker", slots=1)
    rid = submit(gw, 3, "late")
    wait_until(lambda: node_of(redis, rid) == "w1" and redis.cli("HGET", f"ps:run:{rid}", "status") == "running",
               60, "the run on w1")
    os.kill(w1.proc.pid, signal.SIGSTOP)
    # w1's lease expires; w2 takes the run over past the claim timeout
    nodes("w2", "worker", slots=1)
    wait_until(lambda: node_of(redis, rid) == "w2", 60, "w2 to take the run over")
    b = check_all_terminal(gw, [(rid, "late")])[rid]
    os.kill(w1.proc.pid, signal.SIGCONT)
    # w1's own run ended meanwhile; its result comes back STALE and is dropped
    wait_until(lambda: int(redis.cli("GET", "ps:stale") or 0) >= 1, 60, "w1's stale completion")
    st, after = gw.call("GET", f"/v1/runs/{rid}")
    assert after["status"] == "succeeded" and after["attempt"] == b["attempt"] == 2 and after["finished_at"] == b["finished_at"]
    st, s = gw.call("GET", "/v1/cluster")
    assert s["stale_results"] >= 1


def test_kill9_redis_and_restart_on_same_aof_resumes(nodes, redis):
    gw = nodes("gw1", "gateway")
    nodes("w1", "worker", slots=2)
    acked = []
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            try:
                st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": 0.5, "tag": f"l{i}"})
            except OSError:
                st = None
            if st == 202:
                acked.append((b["id"], f"l{i}"))
            i += 1
            time.sleep(0.1)

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 6, 60, "some acknowledged runs")
        redis.kill9()
        time.sleep(0.5)  # the outage itself: submits are refused, nothing is acknowledged
        redis.start()
        n = len(acked)
        wait_until(lambda: len(acked) >= n + 4, 60, "runs acknowledged after the restart")
    finally:
        stop.set()
        t.join()
    check_all_terminal(gw, acked)


def cli(gw, *args, token="admin"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
    env["PYSPRINTER_HOME"] = str(gw.root / "cli-home")
    return subprocess.run([str(CLI), "--server", gw.url, "--token", TOKENS[token], *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_cli_cluster_status_and_drain(nodes, redis):
    gw = nodes("gw1", "gateway")
    nodes("w1", "worker")
    r = cli(gw, "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert "w1" in r.stdout and "gw1" in r.stdout and "0 dead letters" in r.stdout
    r = cli(gw, "cluster", "status", "--json")
    s = json.loads(r.stdout)
    assert {n["id"] for n in s["nodes"]} >= {"w1", "gw1"}
    # a user token may not drain; an admin may; an unknown node is 404
    assert cli(gw, "cluster", "drain", "w1", token="alice").returncode != 0
    r = cli(gw, "cluster", "drain", "nope")
    assert r.returncode != 0 and "no node 'nope'" in r.stderr
    r = cli(gw, "cluster", "drain", "w1")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: any(n["id"] == "w1" and n.get("draining") and n["alive"]
                           for n in json.loads(cli(gw, "cluster", "status", "--json").stdout)["nodes"]),
               30, "w1 to show draining")
    # a drained node claims nothing: the run waits for another worker
    rid = submit(gw, 0, "after-drain")
    nodes("w2", "worker")
    check_all_terminal(gw, [(rid, "after-drain")])
    assert node_of(redis, rid) == "w2"
    # without a server the verb says what it needs
    r = subprocess.run([str(CLI), "cluster", "status"], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "PYSPRINTER_HOME": str(gw.root / "cli-home")})
    assert r.returncode == 2 and "needs a server" in r.stderr


def test_idempotency_key_returns_the_first_run(nodes, redis):
    gw = nodes("gw1", "gateway")
    gw2 = nodes("gw2", "gateway")
    nodes("w1", "worker")
    body = {"source": SLEEPER, "kwargs": {"tag": "once"}}
    h = {"Idempotency-Key": "order-42"}
    st, a = gw.call("POST", "/v1/runs?wait=true", body, headers=h)
    assert st == 200 and a["result"] == "once", a
    # the same key again, through another gateway: the same run, not a new one
    st, b = gw2.call("POST", "/v1/runs", body, headers=h)
    assert st in (200, 202) and b["id"] == a["id"], (a, b)
    # keys are per tenant
    st, c = gw.call("POST", "/v1/runs", body, headers=h, token="bob")
    assert st == 202 and c["id"] != a["id"]
    st, e = gw.call("POST", "/v1/runs", body, headers={"Idempotency-Key": "x" * 201})
    assert st == 400
    st, lst = gw.call("GET", "/v1/runs")
    assert [r["id"] for r in lst["runs"]].count(a["id"]) == 1 and len(lst["runs"]) == 1


def test_cancel_a_run_running_on_another_node(nodes, redis):
    """The cancel reaches the node that runs it (pub/sub on its channel):
    that node cancels it and ends it `cancelled` through the fenced finish.
    Asked both on the gateway that waits for the run and on another one."""
    gw1 = nodes("gw1", "gateway")
    gw2 = nodes("gw2", "gateway")
    nodes("w1", "worker")
    ids = [submit(gw1, 120, f"long{i}") for i in range(2)]
    for rid in ids:
        gw1.wait_status(rid, {"running"}, timeout=60)
        assert node_of(redis, rid) == "w1"
    t0 = time.time()
    for gw, rid in ((gw1, ids[0]), (gw2, ids[1])):
        st, b = gw.call("DELETE", f"/v1/runs/{rid}")
        assert st in (200, 202), (st, b)
    for rid in ids:
        b = gw2.wait_status(rid, TERMINAL, timeout=30)
        assert b["status"] == "cancelled", b
        # ended through the worker's fenced finish of its first attempt
        assert redis.cli("HGET", f"ps:run:{rid}", "attempt") == "1"
    assert time.time() - t0 < 30
    # the worker's slots are free again: a new run runs there
    st, b = gw2.run(SLEEPER, kwargs={"tag": "after"})
    assert st == 200 and b["result"] == "after", b
    assert redis.cli("GET", "ps:stale") in ("", "0")
    # a second cancel of an ended run is a conflict, as on one node
    st, _ = gw2.call("DELETE", f"/v1/runs/{ids[1]}")
    assert st == 409


def test_kill9_the_gateway_a_client_waits_on(nodes, redis, tmp_path):
    """`pysprinter --server GW1,GW2 run` waits on GW1; GW1 is killed with -9
    mid-run: the CLI re-asks GW2 by run id and prints the result."""
    gw1 = nodes("gw1", "gateway")
    gw2 = nodes("gw2", "gateway")
    nodes("w1", "worker")
    src = tmp_path / "job.py"
    src.write_text("import time\ndef f():\n    time.sleep(4)\n    return 'survived'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
    env["PYSPRINTER_HOME"] = str(tmp_path / "cli-home")
    p = subprocess.Popen([str(CLI), "--server", f"{gw1.url},{gw2.url}", "--token", TOKENS["alice"], "run",
                          str(src), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def running():
            st, lst = gw2.call("GET", "/v1/runs")
            return [r for r in lst["runs"] if r["status"] == "running"] if st == 200 else None
        rid = wait_until(running, 30, "the CLI's run running on w1")[0]["id"]
        assert p.poll() is None
        gw1.kill9()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, (out, err)
    assert json.loads(out) == "survived", (out, err)
    st, b = gw2.call("GET", f"/v1/runs/{rid}")
    assert st == 200 and b["status"] == "succeeded" and b["result"] == "survived"
    # the checker: exactly one completion, none stale
    assert redis.cli("HGET", f"ps:run:{rid}", "attempt") == "1"
    assert redis.cli("GET", "ps:stale") in ("", "0")


def redis_info(redis, field):
    for line in redis.cli("INFO", "memory").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    raise AssertionError(f"no {field} in INFO memory")


def test_20000_runs_leave_redis_as_it_was(tmp_path):
    """Trimming: 20,000 trivial runs through a gateway and two workers, many
    clients at once; once the records expired (--record-ttl 2s) Redis's
    used_memory is back near its start, the stream is empty, nothing is
    pending and no key is left behind (the listing index is trimmed too)."""
    redis = Redis(tmp_path, appendfsync="everysec").start()
    started = []
    try:
        mode = sandbox_mode(tmp_path)
        def node(name, role):
            d = Daemon(tmp_path / name, sandbox=mode, config_extra="""
                server:
                  max_concurrent_runs: 4
                  max_concurrent_per_tenant: 64
                  max_queued_runs: 4096
                  max_connections: 256
                """, args=["--redis", redis.url, "--role", role, "--node-id", name, "--record-ttl", "2s"])
            d.start()
            started.append(d)
            return d
        gw = node("gw", "gateway")
        node("w1", "worker")
        node("w2", "worker")
        body = {"source": "def f(i: int = 0):\n    return i\n"}
        for i in range(20):  # warm: the pools exist, the scripts are cached
            st, b = gw.call("POST", "/v1/runs?wait=true", {**body, "kwargs": {"i": i}})
            assert st == 200 and b["status"] == "succeeded", b
        wait_until(lambda: not run_keys(redis), 30, "the warm-up's records to expire")
        keys0, mem0 = int(redis.cli("DBSIZE")), redis_info(redis, "used_memory")

        total, clients = 20000, 16
        done, bad = [0] * clients, []

        def client(k):
            c = gw.conn(timeout=120)
            h = {"Authorization": "Bearer " + TOKENS["alice"], "Content-Type": "application/json"}
            for i in range(k, total, clients):
                c.request("POST", "/v1/runs?wait=true", body=json.dumps({**body, "kwargs": {"i": i}}), headers=h)
                r = c.getresponse()
                out = json.loads(r.read())
                if r.status != 200 or out.get("result") != i:
                    bad.append((r.status, out))
                done[k] += 1
        ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sum(done) == total and not bad[:3], bad[:3]

        wait_until(lambda: not run_keys(redis), 60, "every record, log and index entry gone")
        # KEYS hides keys already expired; DBSIZE counts them until Redis's
        # active expiry reclaims them (each run has a log stream too now).
        try:
            wait_until(lambda: int(redis.cli("DBSIZE")) <= keys0, 60, "expired keys reclaimed")
        except AssertionError:
            raise AssertionError(redis.cli("KEYS", "*"))
        assert redis.cli("XLEN", "ps:runs") == "0"
        assert redis.cli("XPENDING", "ps:runs", "workers").splitlines()[0] == "0"
        assert redis.cli("ZCARD", "ps:idx:alice") == "0"
        mem1 = redis_info(redis, "used_memory")
        # 20,000 records of ~0.5 kB and their index would be ~12 MB
        assert mem1 <= mem0 + 1024 * 1024, (mem0, mem1)
        print(f"used_memory: {mem0} before, {mem1} after 20,000 runs")
    finally:
        for d in started:
            d.stop(timeout=30)
        redis.stop()



def run_keys(redis):
    """Keys that belong to runs (records, logs, the listing index): none may stay
    once every record expired."""
    return [k for k in redis.cli("KEYS", "ps:*").splitlines() if k.startswith(("ps:run:", "ps:idx:", "ps:log:"))]


def test_affinity_runs_land_on_a_warm_node(nodes, redis):
    """Placement: 3 workers, 3 environments (deployed functions: each has
    warm instances per node). After a warm-up, >= 90 % of invocations land
    on a node that holds their environment warm (the record's node, and the
    worker's `cold` marker in the run's timings), and each environment's
    runs stay on one node rather than spreading over the three."""
    gw = nodes("gw", "gateway")
    for w in ("w1", "w2", "w3"):
        nodes(w, "worker")
    fns = [f"fn{i}" for i in range(3)]
    for i, name in enumerate(fns):
        st, b = gw.call("POST", "/v1/functions", {"name": name, "source": f"N = {i}\ndef f():\n    return N\n"})
        assert st in (200, 201), b

    def invoke(name):
        st, b = gw.call("POST", f"/v1/functions/{name}/invoke?wait=true", {})
        assert st == 200 and b["status"] == "succeeded", b
        return b

    for _ in range(3):
        for name in fns:
            invoke(name)
    landed = {name: [] for name in fns}

    def client(name):
        for _ in range(20):
            b = invoke(name)
            landed[name].append((node_of(redis, b["id"]), b["timings"]["cold"]))
    ts = [threading.Thread(target=client, args=(name,)) for name in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    runs = [x for v in landed.values() for x in v]
    warm = sum(1 for _, cold in runs if not cold) / len(runs)
    print(f"affinity: {warm:.0%} of {len(runs)} runs warm; by function: "
          + ", ".join(f"{n}: {sorted(set(x for x, _ in v))}" for n, v in landed.items()))
    assert warm >= 0.9, landed
    for name, v in landed.items():
        top = max(sum(1 for x, _ in v if x == node) for node in ("w1", "w2", "w3"))
        assert top >= 0.9 * len(v), (name, v)


class NetNs:
    """A network namespace this test creates, joined to the host namespace
    by a veth pair with 10.200.<idx>.1 (host) / .2 (inside) /30, and removes.
    Nothing else on the machine is touched."""

    def __init__(self, idx):
        self.name = f"pysprinter-part{idx}"
        self.host_if, self.ns_if = f"psph{idx}", f"pspn{idx}"
        self.host_ip, self.ns_ip = f"10.200.{idx}.1", f"10.200.{idx}.2"

    def ip(self, *args, ns=False):
        cmd = (["ip", "netns", "exec", self.name] if ns else []) + ["ip", *args]
        subprocess.run(cmd, check=True, capture_output=True)

    @staticmethod
    def run_netns_mounted():
        return any(l.split()[1] == "/run/netns" for l in open("/proc/self/mounts"))

    def create(self):
        self.remove()
        # `ip netns add` mounts /run/netns when it is not yet: then ours to
        # undo once no namespace is left in it.
        self.made_mount = not self.run_netns_mounted()
        self.ip("netns", "add", self.name)
        self.ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
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
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        if getattr(self, "made_mount", False) and self.run_netns_mounted() and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], capture_output=True)


class NsDaemon(Daemon):
    """pysprinterd inside a NetNs, listening on its inside address."""

    def __init__(self, netns, *args, **kw):
        super().__init__(*args, **kw)
        self.netns = netns

    @property
    def url(self):
        return f"http://{self.netns.ns_ip}:{self.port}"

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.netns.ns_ip, self.port, timeout=timeout)

    def start(self, port=None):
        self.port = port or free_port()
        cmd = ["ip", "netns", "exec", self.netns.name, str(DAEMON), "--listen", f"{self.netns.ns_ip}:{self.port}",
               "--config", str(self.config), *self.args]
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


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 (ip netns)")
def test_partition_a_worker_from_redis_and_heal(tmp_path):
    """Nemesis: a worker in its own network namespace loses its link to
    Redis for longer than the claim timeout while running work, then the
    link comes back. The checker reads every acknowledged run: exactly one
    terminal state (its own result), 0 lost, 0 duplicate completions (each
    record is completed once: Redis's keyspace events count the EXPIRE every
    ending script does); duplicate executions are reported."""
    netns = NetNs(100 + os.getpid() % 100).create()
    redis = Redis(tmp_path)
    port = free_port()
    started = []
    watcher = None
    try:
        redis.extra = ["--bind", netns.host_ip, "--port", str(port), "--protected-mode", "no"]
        redis.start()
        assert redis.cli("CONFIG", "SET", "notify-keyspace-events", "Eg") == "OK"
        events = open(tmp_path / "completions.csv", "w")
        watcher = subprocess.Popen(["redis-cli", "-s", redis.sock, "--csv", "PSUBSCRIBE", "__keyevent@0__:expire"],
                                   stdout=events, stderr=subprocess.DEVNULL)
        mode = sandbox_mode(tmp_path)
        conf = """
            server:
              max_concurrent_runs: 2
              max_concurrent_per_tenant: 64
              max_queued_runs: 1000
            """
        common = ["--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "10"]
        gw = Daemon(tmp_path / "gw", sandbox=mode, config_extra=conf,
                    args=["--redis", redis.url, "--role", "gateway", "--node-id", "gw", *common])
        w1 = Daemon(tmp_path / "w1", sandbox=mode, config_extra=conf,
                    args=["--redis", redis.url, "--role", "worker", "--node-id", "w1", *common])
        w2 = NsDaemon(netns, tmp_path / "w2", sandbox=mode, config_extra=conf,
                      args=["--redis", f"redis://{netns.host_ip}:{port}", "--role", "worker", "--node-id", "w2",
                            *common])
        for d in (gw, w1, w2):
            d.start()
            started.append(d)

        acked, stop = [], threading.Event()

        def load():
            i = 0
            while not stop.is_set():
                acked.append((submit(gw, 1.0, f"t{i}"), f"t{i}"))
                i += 1
                time.sleep(0.15)
        loader = threading.Thread(target=load)
        loader.start()
        try:
            wait_until(lambda: any(node_of(redis, r) == "w2" and redis.cli("HGET", f"ps:run:{r}", "status") ==
                                   "running" for r, _ in list(acked)), 60, "a run running on w2")
            netns.link(False)
            cut = time.time()
            # Past the claim timeout: w2's lease expired and w1 took every
            # entry w2 held.
            wait_until(lambda: redis.cli("EXISTS", "ps:node:w2") == "0", 30, "w2's lease to expire")
            wait_until(lambda: not [l for l in redis.cli("XPENDING", "ps:runs", "workers", "-", "+", "1000", "w2")
                                    .splitlines() if l.strip()] and
                       not [l for l in redis.cli("XPENDING", "ps:runs:w2", "workers", "-", "+", "1000", "w2")
                            .splitlines() if l.strip()], 60, "w2's entries reclaimed")
            assert time.time() - cut > CLAIM_TIMEOUT_MS / 1000
            netns.link(True)
            wait_until(lambda: redis.cli("EXISTS", "ps:node:w2") == "1", 30, "w2 back")
            n = len(acked)
            wait_until(lambda: len(acked) >= n + 5, 30, "more runs after the heal")
        finally:
            stop.set()
            loader.join()
        check_all_terminal(gw, acked, timeout=120)
        wait_until(lambda: len(completions(tmp_path)) >= len(acked), 30, "every completion seen")
        done = completions(tmp_path)
        dup = {k: v for k, v in done.items() if v > 1}
        assert not dup, dup
        assert all(done.get(rid) == 1 for rid, _ in acked)
        reexec = [rid for rid, _ in acked if int(redis.cli("HGET", f"ps:run:{rid}", "attempt") or 0) > 1]
        stale = int(redis.cli("GET", "ps:stale") or 0)
        print(f"partition: {len(acked)} runs acknowledged, all ended once; {len(reexec)} executed again after "
              f"the partition, {stale} late results dropped as stale")
        assert reexec, "the partition re-ran nothing: the nemesis did not bite"
    finally:
        for d in started:
            d.stop(timeout=30)
        if watcher:
            watcher.kill()
            watcher.wait()
        redis.stop()
        netns.remove()


def completions(tmp_path):
    """ps:run:<id> -> how many times a script ended it (EXPIRE events)."""
    n = {}
    for line in (tmp_path / "completions.csv").read_text().splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) == 4 and f[0] == "pmessage" and f[3].startswith("ps:run:"):
            n[f[3][len("ps:run:"):]] = n.get(f[3][len("ps:run:"):], 0) + 1
    return n


# ---- DAG runs: state in Redis, resumed by another gateway --------------------

DAG_TASKS = """
import time
def f(tag: str, seconds: float = 1):
    time.sleep(seconds)
    return tag
"""
# a, then b1..b4 in parallel (more than one worker's slots), then c. b1
# outlasts the owner lease: the gateway that takes over finds it running
# and must wait for that run, not submit another.
DAG_PIPELINE = """
concurrency: 4
tasks:
  a:  {file: t.py, function: f, args: ["a"]}
  b1: {file: t.py, function: f, args: ["${a}-b1"], kwargs: {seconds: 8}}
  b2: {file: t.py, function: f, args: ["${a}-b2"]}
  b3: {file: t.py, function: f, args: ["${a}-b3"]}
  b4: {file: t.py, function: f, args: ["${a}-b4"]}
  c:  {file: t.py, function: f, args: ["c"], depends: [b1, b2, b3, b4]}
"""
DAG_RESULTS = {"a": "a", "b1": "a-b1", "b2": "a-b2", "b3": "a-b3", "b4": "a-b4", "c": "c"}


def test_dag_resumes_on_another_gateway_when_its_gateway_dies(nodes, redis, tmp_path):
    """A DAG run's state lives in Redis: kill -9 the gateway that started it
    halfway (a task finished, another running on a worker); the other
    gateway takes its owner lease over, waits for the running tasks by their
    run ids, runs the rest, and the DAG completes with every task run
    once."""
    gw1 = nodes("gw1", "gateway")
    gw2 = nodes("gw2", "gateway")
    nodes("w1", "worker")
    nodes("w2", "worker")
    dag_gateway_killed_halfway(gw1, gw2, redis)


def dag_gateway_killed_halfway(gw1, gw2, redis):
    """The scenario of the test above, on nodes started by the caller (gw1,
    gw2 gateways; two workers w1, w2 with 2 slots each)."""
    st, b = gw1.call("POST", "/v1/dags", {"pipeline": DAG_PIPELINE, "files": {"t.py": DAG_TASKS},
                                          "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]
    assert redis.cli("GET", f"ps:dagowner:{dag_id}") == "gw1"

    def tasks(gw):
        st, cur = gw.call("GET", f"/v1/dags/{dag_id}")
        assert st == 200, cur
        return cur, {t["name"]: t for t in cur["tasks"]}

    def halfway():
        # read through the other gateway: it answers from Redis
        _, t = tasks(gw2)
        done = [n for n, x in t.items() if x["state"] == "succeeded"]
        running = [n for n, x in t.items() if x["state"] == "running" and x.get("run_id") and
                   redis.cli("HGET", f"ps:run:{x['run_id']}", "status") == "running"]
        return t if done and "b1" in running else None
    before = wait_until(halfway, 60, "a task done and b1 running")
    gw1.kill9()
    print("at the kill:", {n: x["state"] for n, x in before.items()})
    t0 = time.time()

    def ended():
        cur, _ = tasks(gw2)
        return cur if cur["status"] in ("succeeded", "failed", "cancelled", "invalid") else None
    wait_until(lambda: redis.cli("GET", f"ps:dagowner:{dag_id}") == "gw2", 30, "gw2 to take the DAG over")
    b1_run = before["b1"]["run_id"]
    assert redis.cli("HGET", f"ps:run:{b1_run}", "status") == "running", "b1 should outlast the takeover"
    done = wait_until(ended, 90, "the DAG run to end on gw2")
    print(f"DAG resumed by gw2: ended {time.time() - t0:.1f}s after gw1's kill -9")
    assert done["status"] == "succeeded", done
    t = {x["name"]: x for x in done["tasks"]}
    assert {n: x["result"] for n, x in t.items()} == DAG_RESULTS, t
    assert all(x["state"] == "succeeded" for x in t.values()), t
    # tasks finished before the kill kept their runs; those running were
    # waited for by run id, not submitted again
    for n, x in before.items():
        if x["state"] in ("succeeded", "running"):
            assert t[n]["run_id"] == x["run_id"], (n, x, t[n])
    # every task ran exactly once: the tenant's only runs are the six
    # tasks' runs, each on its first attempt
    st, lst = gw2.call("GET", "/v1/runs?limit=100")
    assert st == 200, lst
    assert sorted(r["id"] for r in lst["runs"]) == sorted(x["run_id"] for x in t.values()), (lst, t)
    assert all(redis.cli("HGET", f"ps:run:{x['run_id']}", "attempt") == "1" for x in t.values())
    # the tasks ran on both workers
    assert len({node_of(redis, x["run_id"]) for x in t.values()}) >= 2
    assert f"DAG run {dag_id}: its gateway is gone; this node resumes it" in gw2.log.read_text()
    assert redis.cli("EXISTS", f"ps:dagowner:{dag_id}") == "0"
    assert redis.cli("SISMEMBER", "ps:dags:running", dag_id) == "0"
    # the CLI reads it from the surviving gateway
    r = cli(gw2, "dag", "show", dag_id, token="alice")
    assert r.returncode == 0, r.stderr
    assert dag_id in r.stdout and "succeeded" in r.stdout, r.stdout
    r = cli(gw2, "dag", "show", dag_id, "--json", token="alice")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["status"] == "succeeded", shown
    assert {n: x.get("result") for n, x in shown["tasks"].items()} == DAG_RESULTS, shown
    st, lst = gw2.call("GET", "/v1/dags")
    assert st == 200 and dag_id in [x["id"] for x in lst["dags"]]


def test_dag_owner_stopped_past_its_lease_is_fenced(nodes, redis):
    """SIGSTOP the gateway driving a DAG run past its owner lease: the other
    gateway takes it over; once the stopped one continues, its writes are
    refused (dagput.lua checks the lease) and it submits nothing more: the
    DAG completes once, every task with one run."""
    gw1 = nodes("gw1", "gateway")
    gw2 = nodes("gw2", "gateway")
    nodes("w1", "worker")
    nodes("w2", "worker")
    st, b = gw1.call("POST", "/v1/dags", {"pipeline": DAG_PIPELINE, "files": {"t.py": DAG_TASKS},
                                          "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]

    def state():
        st, cur = gw2.call("GET", f"/v1/dags/{dag_id}")
        assert st == 200, cur
        return cur, {t["name"]: t for t in cur["tasks"]}
    wait_until(lambda: state()[1].get("a", {}).get("state") == "succeeded", 60, "task a done")
    os.kill(gw1.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: redis.cli("GET", f"ps:dagowner:{dag_id}") == "gw2", 30, "gw2 to take the DAG over")
    finally:
        os.kill(gw1.proc.pid, signal.SIGCONT)
    ends = ("succeeded", "failed", "cancelled", "invalid")
    done = wait_until(lambda: state()[0] if state()[0]["status"] in ends else None, 90, "the DAG run to end")
    assert done["status"] == "succeeded", done
    t = {x["name"]: x for x in done["tasks"]}
    assert {n: x["result"] for n, x in t.items()} == DAG_RESULTS, t
    # gw1 heard it lost the lease, and the end it did not see stays gw2's
    wait_until(lambda: "no longer holds its lease" in gw1.log.read_text(), 30, "gw1 to be fenced")
    st, lst = gw2.call("GET", "/v1/runs?limit=100")
    assert sorted(r["id"] for r in lst["runs"]) == sorted(x["run_id"] for x in t.values()), (lst, t)
    assert all(redis.cli("HGET", f"ps:run:{x['run_id']}", "attempt") == "1" for x in t.values())
    assert redis.cli("EXISTS", f"ps:dagowner:{dag_id}") == "0"
    _, again = state()
    assert {n: x["state"] for n, x in again.items()} == {n: "succeeded" for n in DAG_RESULTS}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 (ip netns)")
def test_dag_resumes_across_network_namespaces(tmp_path):
    """The DAG takeover with every node in its own network namespace (the
    test's own NetNs, veth to the host namespace, where Redis listens on
    each pair's host address): nodes talk to Redis over real interfaces,
    not a shared socket, and the gateway killed is a separate host."""
    base = 200 + (os.getpid() % 13) * 4
    spaces = []
    redis = Redis(tmp_path)
    port = free_port()
    started = []
    try:
        for k in range(4):
            spaces.append(NetNs(base + k).create())
        redis.extra = ["--bind", *[n.host_ip for n in spaces], "--port", str(port), "--protected-mode", "no"]
        redis.start()
        mode = sandbox_mode(tmp_path)
        conf = """
            server:
              max_concurrent_runs: 2
              max_concurrent_per_tenant: 2
            """
        nodes = {}
        for netns, (name, role) in zip(spaces, (("gw1", "gateway"), ("gw2", "gateway"), ("w1", "worker"),
                                                ("w2", "worker"))):
            d = NsDaemon(netns, tmp_path / name, sandbox=mode, config_extra=conf,
                         args=["--redis", f"redis://{netns.host_ip}:{port}", "--role", role, "--node-id", name,
                               "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "10"])
            d.start()
            started.append(d)
            nodes[name] = d
        dag_gateway_killed_halfway(nodes["gw1"], nodes["gw2"], redis)
    finally:
        for d in started:
            if d.proc.poll() is not None:
                # killed with -9: its next start clears what it left (as
                # the nodes fixture does)
                d.start(port=d.port)
            d.stop(timeout=30)
        redis.stop()
        # the first one may have mounted /run/netns: it goes last
        for n in reversed(spaces):
            n.remove()
