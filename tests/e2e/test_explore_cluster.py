"""Cluster mode as an operator of Ray or Modal would use it
(docs/cluster.md): a real redis-server with AOF on, real pysprinterd
gateways and workers on loopback, the real CLI. Each test is a defect found
exploring the cluster (or a promise that held and must keep holding)."""
import json
import os
import signal
import subprocess
import threading

from clusterlib import CLAIM_TIMEOUT_MS, REDIS, SLEEPER, wait_until
from conftest import BUILD, CLI, DAEMON, WORKER
from daemonlib import TOKENS, Daemon, free_port, sandbox_mode
from test_cluster import pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; a fixture)


def _redis_with_password(tmp_path, password, port, fresh=True):
    """redis-server (AOF on) on loopback TCP that asks for a password, as
    any Redis reachable over a network should (fresh=False: again on the
    AOF a previous one left)."""
    d = tmp_path / "redis-auth"
    d.mkdir(exist_ok=not fresh)
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--appendonly", "yes",
                          "--appendfsync", "always", "--save", "", "--requirepass", password, "--loglevel",
                          "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", password, "PING"],
                                      capture_output=True, text=True).stdout.strip() == "PONG", 15, "redis-server")
    return p


def _daemon_start_fails(d):
    """(exit code, output) of a pysprinterd that must refuse to start."""
    d.port = free_port()
    cmd = [str(DAEMON), "--listen", f"127.0.0.1:{d.port}", "--config", str(d.config), *d.args, "--sandbox=none"]
    r = subprocess.run(cmd, env=d.env(), capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


def test_a_cluster_on_a_redis_with_a_password(tmp_path):
    """An operator's Redis on a network asks for a password (requirepass,
    or a Redis 6 ACL user). The password goes in the URL
    (redis://:PASSWORD@HOST:PORT, or USER:PASSWORD@) or, kept off the
    command line, in the config's cluster.redis_password; every connection
    of every node (queue, claim, events, logs) AUTHs with it. A missing or
    wrong password is a clear error at start, never one that shows the
    password. Before, AUTH was never sent: such a Redis could not be used
    (`cannot reach Redis …: Input/output error`) and the URL's password
    was printed back."""
    pw = "s3cret-p@ss/word"
    esc = "s3cret-p%40ss%2Fword"
    port = free_port()
    rp = _redis_with_password(tmp_path, pw, port)
    started = []
    try:
        def node(name, role, url, cfg=""):
            return Daemon(tmp_path / name, sandbox="none", config_extra=cfg,
                          args=["--redis", url, "--role", role, "--node-id", name,
                                "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms"])
        # No password: refused at start, saying where the password goes.
        code, err = _daemon_start_fails(node("nopw", "all", f"redis://127.0.0.1:{port}"))
        assert code == 6, err
        assert "password" in err and "cluster.redis_password" in err, err
        # A wrong one: refused, and the message does not repeat it.
        code, err = _daemon_start_fails(node("badpw", "all", f"redis://:not-it-at-all@127.0.0.1:{port}"))
        assert code == 6, err
        assert "refused the password" in err and "not-it-at-all" not in err, err
        # The right one in the URL (escaped, as RFC 3986 wants '@' and '/')
        # of an ACL user, and the default user's in the other node's config.
        r = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", pw, "ACL", "SETUSER", "pys", "on",
                            ">" + pw, "~ps:*", "&*", "+@all"], capture_output=True, text=True)
        assert r.stdout.strip() == "OK", r
        gw = node("gw", "gateway", f"redis://pys:{esc}@127.0.0.1:{port}")
        gw.start()
        started.append(gw)
        w = node("w1", "worker", f"redis://127.0.0.1:{port}", cfg=f"cluster:\n  redis_password: '{pw}'\n")
        w.start()
        started.append(w)
        st, b = gw.run("import sys\ndef f():\n    print('hi from w1')\n    return 42\n")
        assert st == 200 and b["status"] == "succeeded" and b["result"] == 42, b
        st, logs = gw.call("GET", f"/v1/runs/{b['id']}/logs")
        assert st == 200 and "hi from w1" in str(logs), logs
        assert pw not in gw.log.read_text() and esc not in gw.log.read_text()
        # Redis killed and started again on its AOF: every connection
        # comes back and authenticates again (ACL users are not in the AOF:
        # made again, as an operator's users.acl file would).
        rp.kill()
        rp.wait()
        rp = _redis_with_password(tmp_path, pw, port, fresh=False)
        r = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", pw, "ACL", "SETUSER", "pys", "on",
                            ">" + pw, "~ps:*", "&*", "+@all"], capture_output=True, text=True)
        assert r.stdout.strip() == "OK", r
        st, b = gw.run("def f():\n    return 43\n")
        assert st == 200 and b["status"] == "succeeded" and b["result"] == 43, b
    finally:
        for d in started:
            d.stop()
        rp.kill()
        rp.wait()


def _cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env["PYSPRINTER_HOME"] = str(tmp_path / "cli-home")
    env["PYSPRINTER_WORKER"] = str(WORKER)
    env["NO_COLOR"] = "1"
    return env


def test_a_gateway_restarted_while_a_client_waits_answers_it_first(redis, tmp_path):
    """`systemctl restart` of the one gateway a client waits on: as a
    single node's drain finishes its runs in flight and answers their
    waiting clients (docs/api.md "Drain"), the gateway's drain waits for
    the runs a client waits for there (not for the ones nobody waits for:
    it exits long before those end) and the client prints the result, exit
    0. Before, the gateway let every remote run go at once and exited; the
    client's next look found no gateway: `cannot reach`, exit 6, while the
    run went on to succeed on the worker."""
    mode = sandbox_mode(tmp_path)
    nodes = []

    def node(name, role, drain):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra="server:\n  max_concurrent_runs: 3\n",
                   args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout",
                         f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", drain])
        d.start()
        nodes.append(d)
        return d

    try:
        gw = node("gw", "gateway", "60")
        # (the worker's own stop, at the end, cancels the long run at once)
        node("w1", "worker", "0")
        # A run nobody waits for, longer than the drain may wait.
        st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": 60, "tag": "nobody"})
        assert st == 202, b
        (tmp_path / "s.py").write_text(SLEEPER)
        cli = subprocess.Popen([str(CLI), "--server", gw.url, "--token", TOKENS["alice"], "run", "s.py", "--seconds",
                                "4", "--tag", "waited-for"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_cli_env(tmp_path), cwd=tmp_path)
        # And an HTTP client waiting on ?wait=true (the Python client's, a
        # Lambda invoke's way).
        waited = {}
        t = threading.Thread(target=lambda: waited.update(r=gw.run(SLEEPER, kwargs={"seconds": 4, "tag": "http"})))
        t.start()
        wait_until(lambda: sum(redis.cli("HGET", k, "status") == "running"
                               for k in redis.cli("KEYS", "ps:run:*").split()) == 3, 60, "the three runs running")
        gw.proc.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=120)
        assert (cli.returncode, out) == (0, b"waited-for\n"), (cli.returncode, out, err)
        t.join(120)
        st, b2 = waited["r"]
        assert st == 200 and b2["status"] == "succeeded" and b2["result"] == "http", (st, b2)
        assert gw.proc.wait(40) == 0, "the drain waited for a run nobody waits for"
        assert redis.cli("HGET", f"ps:run:{b['id']}", "status") == "running"
    finally:
        for d in nodes:
            d.stop()


def test_a_tenant_at_its_limit_on_one_worker_runs_on_another(redis, tmp_path):
    """server.max_concurrent_per_tenant is a node's (docs/cluster.md): with
    it at 1, a tenant's runs go one per worker at once, the others waiting
    in Redis for a worker with room for the tenant. Before, a worker
    claimed as many as it had free slots, whatever their tenant, and kept
    those it could not start: the tenant's runs ran one after another on
    that worker while a second worker, started meanwhile, stayed idle."""
    mode = sandbox_mode(tmp_path)
    nodes = []

    def node(name, role):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra="""
            server:
              max_concurrent_runs: 4
              max_concurrent_per_tenant: 1
            """, args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout",
                       f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "0"])
        d.start()
        nodes.append(d)
        return d

    def running_on(ids, name):
        return [r for r in ids if redis.cli("HGET", f"ps:run:{r}", "status") == "running" and
                redis.cli("HGET", f"ps:run:{r}", "node") == name]

    try:
        gw = node("gw", "gateway")
        node("w1", "worker")
        ids = []
        for i in range(3):
            st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": 60, "tag": f"a{i}"})
            assert st == 202, b
            ids.append(b["id"])
        wait_until(lambda: running_on(ids, "w1"), 60, "a first run of alice on w1")
        node("w2", "worker")
        wait_until(lambda: running_on(ids, "w2"), 60, "a run of alice on the idle w2")
        # Each worker still runs one of alice's at a time, and another
        # tenant's run starts beside them.
        assert len(running_on(ids, "w1")) == 1 and len(running_on(ids, "w2")) == 1
        st, b = gw.run(SLEEPER, wait=False, token="bob", kwargs={"seconds": 0, "tag": "bob"})
        assert gw.wait_status(b["id"], ["succeeded"], token="bob")["result"] == "bob"
        assert sum(redis.cli("HGET", f"ps:run:{r}", "status") == "queued" for r in ids) == 1
        assert len(running_on(ids, "w1")) == 1 and len(running_on(ids, "w2")) == 1
        for r in ids:
            gw.cancel(r)
    finally:
        for d in nodes:
            d.stop()


def _unit(name):
    """The [Unit] and [Service] settings of a unit the build configured
    (contrib/NAME.service.in, what `meson install` installs)."""
    text = (BUILD / f"{name}.service").read_text()
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[(section, k)] = v
    return out


def test_a_cluster_units_node_keeps_waiting_for_redis_at_boot():
    """A cluster node whose Redis cannot be reached exits 6 at once with a
    clear error (no hang); its systemd unit must then start it again until
    Redis answers — at boot the Redis machine may come up minutes later.
    Before, the units restarted every 2 s under systemd's default start
    limit (5 starts in 10 s): 10 s without Redis and the node's unit
    failed for good ("start request repeated too quickly")."""
    for name in ("pysprinterd-gateway", "pysprinterd-worker"):
        u = _unit(name)
        assert u[("Service", "Restart")] in ("on-failure", "always"), name
        assert u.get(("Unit", "StartLimitIntervalSec")) in ("0", "infinity"), \
            f"{name}: systemd stops restarting it after {u.get(('Unit', 'StartLimitBurst'), 5)} starts"


def test_a_node_cut_from_redis_says_so_on_healthz(redis, tmp_path):
    """A load balancer asks /healthz which gateways to send clients to. A
    node that cannot reach Redis answers every run 503 and, past its lease,
    is no longer in the cluster (its runs are taken over): its /healthz is
    503 `redis_unreachable` (with Retry-After) until Redis answers again,
    then 200 `ok`. Before, it stayed 200 `ok` throughout."""
    nodes = []
    try:
        for name, role in (("gw", "gateway"), ("w1", "worker")):
            d = Daemon(tmp_path / name, sandbox="none",
                       args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout",
                             f"{CLAIM_TIMEOUT_MS}ms"])
            d.start()
            nodes.append(d)

        def health(d):
            st, hdrs, body = d.request("GET", "/healthz", token=None)
            return st, json.loads(body)["status"], hdrs.get("retry-after")

        for d in nodes:
            assert health(d)[:2] == (200, "ok")
        redis.kill9()
        for d in nodes:
            wait_until(lambda: health(d) == (503, "redis_unreachable", "5"), 30, f"{d.root.name}'s /healthz 503")
        redis.start()
        for d in nodes:
            wait_until(lambda: health(d)[:2] == (200, "ok"), 30, f"{d.root.name}'s /healthz 200 again")
        st, b = nodes[0].run("def f():\n    return 5\n")
        assert st == 200 and b["result"] == 5, b
    finally:
        for d in nodes:
            d.stop()


STAMP = """
import os, time
from pysprinter import output_dir
def make(seconds: float = 0):
    time.sleep(seconds)
    with open(os.path.join(output_dir(), "stamp.txt"), "w") as f:
        f.write(repr(time.time()))
    return 1
"""


def test_a_stale_attempt_writes_no_version_of_its_output_dataset(redis, tmp_path):
    """Fencing covers what a run produced besides its value: a worker
    stopped past its lease (SIGSTOP) loses its run to another worker, which
    runs it again and stores its output as the dataset's version 1; when
    the stopped worker comes back and its run ends, its late result is
    dropped as stale, and so must its output be: no version 2 of the
    dataset, `current` stays the one the run's record names."""
    mode = sandbox_mode(tmp_path)
    nodes = []

    def node(name, role):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra="""
            server:
              max_concurrent_runs: 1
            cluster:
              secret: a-cluster-secret-of-the-test
            """, args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout",
                       f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "0"])
        d.start()
        nodes.append(d)
        return d

    w1 = None
    try:
        gw = node("gw", "gateway")
        w1 = node("w1", "worker")
        st, b = gw.call("POST", "/v1/runs", {"source": STAMP, "kwargs": {"seconds": 6}, "output_data": "stamps"})
        assert st == 202, b
        rid = b["id"]
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "node") == "w1" and
                   redis.cli("HGET", f"ps:run:{rid}", "status") == "running", 60, "the run running on w1")
        w1.proc.send_signal(signal.SIGSTOP)
        node("w2", "worker")
        end = gw.wait_status(rid, ["succeeded", "failed", "lost", "error"], timeout=120)
        assert end["status"] == "succeeded" and end["attempt"] == 2 and end["outputs"] == {"stamps": 1}, end
        w1.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: redis.cli("GET", "ps:stale") == "1", 60, "w1's late result dropped as stale")
        st, ds = gw.call("GET", "/v1/data/stamps")
        assert st == 200, ds
        assert ds["current_version"] == 1 and [v["version"] for v in ds["versions"]] == [1], ds
    finally:
        if w1 and w1.proc.poll() is None:
            w1.proc.send_signal(signal.SIGCONT)
        for d in nodes:
            d.stop()


def test_a_gateways_queue_limit_counts_runs_waiting_not_runs_running_on_workers(redis, tmp_path):
    """server.max_queued_runs (and a tenant's share of it) is "runs waiting
    for a slot; 429 beyond" (docs/api.md). On a gateway the slots are the
    workers': a run a worker started waits for none. Before, a gateway
    counted every run it accepted until its end, so it admitted at most
    its own max_concurrent_runs + max_queued_runs runs in flight in the
    whole cluster: here 2, and 429 "the queue is full" with six worker
    slots idle and nothing queued."""
    mode = sandbox_mode(tmp_path)
    nodes = []

    def node(name, role, server):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra="server:\n" + server,
                   args=["--redis", redis.url, "--role", role, "--node-id", name, "--drain-timeout", "0"])
        d.start()
        nodes.append(d)
        return d

    try:
        gw = node("gw", "gateway", "  max_concurrent_runs: 1\n  max_queued_runs: 2\n")
        for w in ("w1", "w2"):
            node(w, "worker", "  max_concurrent_runs: 3\n  max_concurrent_per_tenant: 3\n")
        ids = []

        def submit_one():
            st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": 120, "tag": "x"})
            assert st in (202, 429), (st, b)
            if st == 202:
                ids.append(b["id"])
            return st == 202

        # Each is admitted once the gateway saw the ones before start (a
        # look at their records, about once a second): 429 meanwhile.
        for _ in range(6):
            wait_until(submit_one, 60, f"run {len(ids) + 1} admitted by the gateway")
        wait_until(lambda: all(redis.cli("HGET", f"ps:run:{r}", "status") == "running" for r in ids), 60,
                   "the six runs running on the workers")
        # The limit still holds for runs that wait: the workers are full.
        wait_until(submit_one, 60, "a run admitted to wait")
        wait_until(submit_one, 60, "a second run admitted to wait")
        st, b = gw.run(SLEEPER, wait=False, kwargs={"seconds": 0, "tag": "x"})
        assert st == 429, (st, b)
        for r in ids:
            gw.call("DELETE", f"/v1/runs/{r}")
    finally:
        for d in nodes:
            d.stop()


def test_a_gateway_without_redis_says_redis_is_what_it_cannot_reach(redis, tmp_path):
    """With Redis down, a submit through a gateway cannot be accepted: 503,
    and exit 6 from the CLI once its wait for the gateway (60 s; 2 here)
    is over (test_explore_failover3.py: it waits). The message must name
    what is unreachable, and say to retry: it said `run: Connection
    refused (HTTP 502)`, which reads as the gateway refusing the client."""
    gw = Daemon(tmp_path / "gw", sandbox="none", args=["--redis", redis.url, "--role", "gateway", "--node-id", "gw"])
    gw.start()
    try:
        redis.kill9()
        st, hdrs, body = gw.request("POST", "/v1/runs", {"source": "def f():\n    return 1\n"})
        assert st == 503 and hdrs.get("retry-after") == "5", (st, hdrs, body)
        assert "cannot reach the cluster's Redis" in json.loads(body)["error"]["message"], body
        (tmp_path / "f.py").write_text("def f():\n    return 1\n")
        p = subprocess.run([str(CLI), "--server", gw.url, "--token", TOKENS["alice"], "run", "f.py"],
                           capture_output=True, text=True, env={**_cli_env(tmp_path), "PYSPRINTER_TEST_RECONNECT_S": "2"},
                           cwd=tmp_path, timeout=60)
        assert p.returncode == 6 and "cannot reach the cluster's Redis" in p.stderr, p
        assert p.stderr.count("waiting up to 2 s") == 1, p.stderr
    finally:
        gw.stop()


PARITY = r'''
import sys, time
def f(kind: str = "float"):
    print("hello from f")
    print("to stderr", file=sys.stderr)
    if kind == "float": return 0.1
    if kind == "raise": raise ValueError("nope")
    if kind == "sleep": time.sleep(30)
    if kind == "huge":
        sys.stdout.write("y" * 300000 + "\n")
        for i in range(200000):
            print("line", i)
        return 1
    if kind == "bytes":
        sys.stdout.buffer.write(b"\xff\xfe caf\xe9 \x00 end\n")
        sys.stdout.flush()
        return "ok"
    if kind == "exit3": sys.exit(3)
    if kind == "bigret": return "z" * 3000000
    if kind == "nonjson": return {1, 2}
    return kind
'''

MISSING = '''
@requirements({'nosuchpkg_zz': '==1.0'})
def f():
    return 1
'''


def test_the_cli_through_a_clusters_gateway_prints_what_it_prints_embedded(redis, tmp_path):
    """One product (held): `pysprinter run` embedded and through a gateway
    whose worker runs it print the same stdout bytes, the same stderr and
    exit with the same code — a value, an exception, a timeout, output past
    the cap, bytes that are not UTF-8, sys.exit, a 3 MB result, a value
    JSON cannot hold, a package no index has."""
    nodes = []
    try:
        for name, role in (("gw", "gateway"), ("w1", "worker")):
            d = Daemon(tmp_path / name, sandbox=sandbox_mode(tmp_path),
                       args=["--redis", redis.url, "--role", role, "--node-id", name])
            d.start()
            nodes.append(d)
        w = tmp_path / "work"
        w.mkdir()
        (w / "f.py").write_text(PARITY)
        (w / "m.py").write_text(MISSING)
        env = _cli_env(w)
        cases = [["f.py", "--kind", k] for k in ("float", "raise", "huge", "bytes", "exit3", "nonjson")]
        cases += [["f.py", "--kind", "sleep", "--timeout", "1s"], ["f.py", "--kind", "bigret", "--json"], ["m.py"]]
        for args in cases:
            argv = ["run", *args, "--sandbox=none"]
            local = subprocess.run([str(CLI), *argv], capture_output=True, env=env, cwd=w, timeout=180)
            remote = subprocess.run([str(CLI), "--server", nodes[0].url, "--token", TOKENS["alice"], *argv],
                                    capture_output=True, env=env, cwd=w, timeout=180)
            # The sandbox notes differ by design (a server's sandbox is its own).
            err = lambda p: [l for l in p.stderr.splitlines() if b"--sandbox" not in l]
            assert (local.returncode, local.stdout, err(local)) == (remote.returncode, remote.stdout, err(remote)), \
                (args, local.returncode, remote.returncode, local.stdout[-300:], remote.stdout[-300:],
                 err(local)[-5:], err(remote)[-5:])
    finally:
        for d in nodes:
            d.stop()
