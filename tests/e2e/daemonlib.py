"""Helpers for the pysprinterd end-to-end tests: start the real daemon on a
free loopback port with its own PYSPRINTER_HOME and config, and talk to it
over plain HTTP (http.client: nothing between the test and the socket)."""
import contextlib
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import textwrap
import time

from conftest import DAEMON, KERNEL_LACKS, UNSANDBOXED, WORKER
from proctree import child_pids  # noqa: F401 (tests import it from here)

TOKENS = {
    "alice": "alice-token-0123456789abcdef",
    "bob": "bob-token-0123456789abcdef",
    "reader": "reader-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
}

# AWS SigV4 credentials (the Lambda API): key id -> (tenant, secret).
KEYS = {
    "alice": ("AKIDALICE00000000001", "alice-secret-0123456789abcdefXYZ"),
    "bob": ("AKIDBOB0000000000002", "bob-secret-0123456789abcdefXYZ"),
}


@contextlib.contextmanager
def strace_daemon(d, syscalls, trace):
    """`strace -f` on daemon d for the with block, tracing syscalls into the
    file trace; the block starts once strace is attached (/healthz's statfs
    marks the moment). Yields lines(what): the trace's lines holding what,
    also usable after the block."""
    s = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=" + ",".join([*syscalls, "statfs"]), "-o", str(trace),
                          "-p", str(d.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def lines(what):
        return [ln for ln in (trace.read_text().splitlines() if trace.exists() else []) if what in ln]
    try:
        deadline = time.time() + 30
        while not lines("statfs("):
            assert time.time() < deadline and s.poll() is None, (s.poll(), s.stderr.read() if s.poll() else "")
            d.call("GET", "/healthz", token=None)
            time.sleep(0.05)
        yield lines
    finally:
        s.send_signal(signal.SIGINT)
        s.wait(timeout=30)


@contextlib.contextmanager
def workers_held(d):
    """Daemon d's worker processes stopped (SIGSTOP) for the with block and
    continued after it, however it ends: a request that needs a worker
    waits meanwhile (one answered from a cache does not). Yields their
    pids."""
    from proctree import descendants
    workers = [p for p in descendants(d.proc.pid)
               if open(f"/proc/{p}/comm").read().startswith(("worker", "pysprinter-wor"))]
    assert workers, "the daemon has no worker to hold"
    for p in workers:
        os.kill(p, signal.SIGSTOP)
    try:
        yield workers
    finally:
        for p in workers:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def metrics(d):
    """Daemon d's /metrics as {series (name with labels): value}."""
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    got = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        got[name] = float(value)
    return got


def join(threads):
    """Waits for the test's client threads, each within 120 s."""
    for t in threads:
        t.join(120)
        assert not t.is_alive()


def run(d, source, **body):
    """An ad-hoc run of source on daemon d, waited for; its 200 answer."""
    st, out = d.call("POST", "/v1/runs?wait=true", {"source": source, **body})
    assert st == 200, out
    return out


def run_events(resp):
    """The run objects a GET /v1/events response sends (its "run"
    events), each as (the length of its data, the object), in order."""
    event, data = None, []
    while True:
        line = resp.readline()  # chunked: decoded by http.client
        if not line:
            return
        line = line.decode().rstrip("\n")
        if line == "" and event == "run":
            text = "\n".join(data)
            yield len(text), json.loads(text)
        if line == "":
            event, data = None, []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


def wait_for(cond, what, timeout=60):
    """cond()'s first true value, polled every 20 ms; AssertionError naming
    what after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(extra=""):
    import hashlib
    bob_hash = hashlib.sha256(TOKENS["bob"].encode()).hexdigest()
    return textwrap.dedent(f"""\
        tokens:
          - tenant: alice
            token: {TOKENS["alice"]}
          - tenant: bob
            token_sha256: {bob_hash}
          - tenant: alice
            token: {TOKENS["reader"]}
            role: readonly
          - tenant: ops
            token: {TOKENS["admin"]}
            role: admin
          - tenant: alice
            access_key_id: {KEYS["alice"][0]}
            secret_access_key: {KEYS["alice"][1]}
          - tenant: bob
            access_key_id: {KEYS["bob"][0]}
            secret_access_key: {KEYS["bob"][1]}
        """) + textwrap.dedent(extra)


_SANDBOX = None


def sandbox_mode(tmp):
    """'full' when the sandbox works on this machine; 'none' only when the
    engine says the kernel lacks what the sandbox needs (conftest's rule).
    Any other failure of the probe raises: a sandbox regression must not
    turn the daemon tests into unsandboxed runs."""
    global _SANDBOX
    if _SANDBOX is None:
        d = Daemon(tmp / "probe", sandbox=None)
        d.start()
        try:
            st, body = d.call("POST", "/v1/runs?wait=true", {"source": "def f():\n    return 1\n"})
        finally:
            d.stop()
        text = json.dumps(body)
        if st == 200 and body.get("status") == "succeeded":
            _SANDBOX = "full"
        elif KERNEL_LACKS in text:
            _SANDBOX = "none"
            UNSANDBOXED.append("pysprinterd: " + text[:500])
        else:
            raise RuntimeError(f"the daemon's sandbox probe run failed (HTTP {st}); not falling back to "
                               f"--sandbox=none for anything but '{KERNEL_LACKS}': {text[:2000]}")
    return _SANDBOX


def module_daemon(tmp_path_factory, name, **kw):
    """A module fixture's body: `yield from module_daemon(…)` serves a
    Daemon (sandboxed where the kernel can) for the module's tests."""
    root = tmp_path_factory.mktemp(name)
    daemon = Daemon(root, sandbox=sandbox_mode(root), **kw).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def point_cli(cli, d, tmp_path, tenant="alice"):
    """cli (conftest's fixture) pointed at d as tenant, with a HOME and a
    config dir of its own (no config file that could name another server)."""
    cli.env = dict(cli.env, **d.client_env(tenant), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return cli


class Daemon:
    def __init__(self, root, sandbox="none", config_extra="", args=(), home=None, build=None):
        """build: another meson build directory whose pysprinterd and
        pysprinter-worker to start (an older release's: test_explore_upgrade);
        the suite's own by default."""
        self.root = pathlib.Path(root)
        self.daemon_bin = pathlib.Path(build) / "src" / "daemon" / "pysprinterd" if build else DAEMON
        self.worker_bin = pathlib.Path(build) / "src" / "worker" / "pysprinter-worker" if build else WORKER
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = pathlib.Path(home) if home else self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "pysprinterd.yaml"
        self.config.write_text(config_text(config_extra))
        self.sandbox = sandbox
        self.args = list(args)
        self.port = None
        self.proc = None
        self.log = self.root / "daemon.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        e["PYSPRINTER_HOME"] = str(self.home)
        e["PYSPRINTER_WORKER"] = str(self.worker_bin)
        return e

    def client_env(self, tenant="alice"):
        """What points the CLI at this daemon as tenant."""
        return {"PYSPRINTER_SERVER": self.url, "PYSPRINTER_TOKEN": TOKENS[tenant]}

    def start(self, port=None):
        self.port = port or free_port()
        cmd = [str(self.daemon_bin), "--listen", f"127.0.0.1:{self.port}", "--config", str(self.config), *self.args]
        if self.sandbox:
            cmd.append(f"--sandbox={self.sandbox}")
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pysprinterd exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                st, _ = self.call("GET", "/healthz", token=None)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("pysprinterd did not come up: " + self.log.read_text())

    @contextlib.contextmanager
    def serving(self, clean_exit=True):
        """Started for the with-block (a module fixture's life), stopped
        after it; with clean_exit, a daemon that did not exit 0 on SIGTERM
        fails the fixture with its log."""
        self.start()
        try:
            yield self
        finally:
            code = self.stop()
        if clean_exit:
            assert code == 0, self.log.read_text()

    @contextlib.contextmanager
    def serving_function(self, name, source, filename):
        """serving(), with one function deployed first (alice's)."""
        with self.serving() as d:
            st, out = d.call("POST", "/v1/functions", {"name": name, "source": source, "filename": filename})
            assert st in (200, 201), out
            yield d

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, token="alice", headers=None, raw=None, timeout=120):
        """-> (status, headers dict (lowercase), body bytes)"""
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + TOKENS.get(token, token)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        c = self.conn(timeout)
        try:
            try:
                c.request(method, path, body=data, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (413) and close before it has read a
                # large body; its answer is still there to read.
                pass
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def call(self, method, path, body=None, token="alice", **kw):
        st, hdrs, data = self.request(method, path, body, token=token, **kw)
        ctype = hdrs.get("content-type", "")
        if ctype.startswith("application/json") and data:
            return st, json.loads(data)
        return st, data.decode(errors="replace")

    def run(self, source, wait=True, token="alice", **fields):
        body = {"source": textwrap.dedent(source).lstrip("\n"), **fields}
        return self.call("POST", "/v1/runs" + ("?wait=true" if wait else ""), body, token=token)

    def cancel(self, run_id, token="alice", timeout=60):
        """DELETE answers 200 with the ended run, or 202 when it has not ended
        within 10 s (a loaded machine): either way it ends cancelled."""
        st, b = self.call("DELETE", f"/v1/runs/{run_id}", token=token)
        assert st in (200, 202), (st, b)
        b = self.wait_status(run_id, ["cancelled", "succeeded", "failed", "killed", "lost", "error"], token=token,
                             timeout=timeout)
        assert b["status"] == "cancelled", b
        return b

    def wait_status(self, run_id, statuses, token="alice", timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, b = self.call("GET", f"/v1/runs/{run_id}", token=token)
            if st == 200 and b["status"] in statuses:
                return b
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} never reached {statuses}: {b}")


def reload_config(d, text, until="configuration reloaded"):
    """Writes text as d's config and SIGHUPs it; returns once the daemon
    logged the line until once more (by default: that it took it)."""
    before = d.log.read_text().count(until)
    d.config.write_text(text)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while d.log.read_text().count(until) == before:
        assert time.time() < deadline, d.log.read_text()
        time.sleep(0.05)


def check_config(tmp_path, text):
    """`pysprinterd --check-config` of text: (exit code, stderr)."""
    cfg = tmp_path / "pysprinterd.yaml"
    cfg.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env["PYSPRINTER_HOME"] = str(tmp_path / "home")
    p = subprocess.run([str(DAEMON), "--check-config", str(cfg)], capture_output=True, text=True, env=env,
                       timeout=60)
    return p.returncode, p.stderr
