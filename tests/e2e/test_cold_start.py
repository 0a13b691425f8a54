"""A fresh daemon's start-up and its first request (issue 15's cold env
figure, docs/internals/performance-log.md "Cold env: the sandbox on the first run's path
(round 9, second part)"): the daemon listens only once its validating
worker is ready, so a request sent the moment /healthz first answers does
not wait for that worker's start."""
import re
import subprocess
import time

from daemonlib import DAEMON, Daemon, free_port, sandbox_mode


def test_the_validating_worker_is_ready_when_healthz_first_answers(tmp_path):
    sb = sandbox_mode(tmp_path)
    d = Daemon(tmp_path / "d", sandbox=sb)
    d.port = free_port()
    cmd = [str(DAEMON), "--listen", f"127.0.0.1:{d.port}", "--config", str(d.config), f"--sandbox={sb}"]
    d.logf = open(d.log, "ab")
    d.proc = subprocess.Popen(cmd, env=d.env(), stdout=d.logf, stderr=d.logf)
    try:
        # Poll with no pause: the first answer, as early as it comes.
        deadline = time.time() + 15
        while True:
            assert time.time() < deadline, d.log.read_text()
            assert d.proc.poll() is None, d.log.read_text()
            try:
                st, _ = d.call("GET", "/healthz", token=None)
            except OSError:
                continue
            if st == 200:
                break
        st, metrics = d.call("GET", "/metrics")
        assert st == 200
        m = re.search(r"^pysprinter_pool_workers (\d+)$", metrics, re.M)
        assert m, metrics[:2000]
        busy = re.search(r"^pysprinter_pool_workers_busy (\d+)$", metrics, re.M)
        # The validating (base) worker is in the pool, started, ready and
        # released by the start-up (busy while it boots).
        assert int(m.group(1)) >= 1 and int(busy.group(1)) == 0, metrics[:2000]
        # And the first request is served by it.
        st, body = d.run("def f():\n    return 7\n")
        assert st == 200 and body["status"] == "succeeded" and body["result"] == 7, body
    finally:
        d.stop()


STORE_PROBE = (
    "@requirements({'%s': ''})\n"
    "def f():\n"
    "    import os, %s\n"
    "    mi = open('/proc/self/mountinfo').read()\n"
    "    return {'value': %s.VALUE, 'store': sorted(os.listdir('/run/pysprinter/store')), 'mountinfo': mi}\n")


def _workers(d):
    # An admin's view: the blank worker and pids are not a tenant's (helper-231).
    st, w = d.call("GET", "/v1/workers", token="admin")
    assert st == 200, w
    return w["workers"]


def _blank(d):
    b = [x for x in _workers(d) if x["kind"] == "blank"]
    return b[0] if b else None


def test_a_cold_env_is_adopted_by_a_worker_started_before_its_request(tmp_path):
    """Issue 15, cold env (round 10): the daemon keeps one blank worker
    (sandboxed, CPython up, no env); the first run of a cold env runs in
    it: the env's worker is the process that was the blank one before the
    request, its store dirs passed as mounts. It sees only its env's dirs
    (and no host path in its mountinfo), a second env never lands in it,
    and the blank worker is replaced after the adoption. Fails before: no
    blank worker, the env's worker is exec'd for the request."""
    sb = sandbox_mode(tmp_path)
    if sb != "full":
        import pytest
        pytest.skip("the blank worker is a full-sandbox mechanism")
    import pkgindex
    from daemonlib import wait_for
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    index = pkgindex.Index()
    for name, v in (("adopta", 1), ("adoptb", 2)):
        index.add(pkgindex.build_wheel(wheels, name, "1.0", files={f"{name}/__init__.py": f"VALUE = {v}\n"}))
    index.start()
    d = Daemon(tmp_path / "d", sandbox=sb, config_extra=f"index:\n  url: {index.url}\n")
    d.start()
    try:
        blank = wait_for(lambda: _blank(d), "the blank worker")
        st, out = d.run(STORE_PROBE % ("adopta", "adopta", "adopta"))
        assert st == 200 and out["status"] == "succeeded", out
        r = out["result"]
        assert r["value"] == 1
        env_a = [x for x in _workers(d) if x["kind"] == "worker" and x.get("sys_path")]
        assert len(env_a) == 1, env_a
        env_a = env_a[0]
        # The env's worker is the blank worker of before the request.
        assert env_a["pid"] == blank["pid"] and env_a["adopted"] is True, (env_a, blank)
        # It sees exactly its env's dirs, under their sandbox names.
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in env_a["sys_path"])
        assert r["store"] == names and r["store"], (r["store"], names)
        assert str(d.home) not in r["mountinfo"] and str(tmp_path) not in r["mountinfo"], r["mountinfo"]
        # A new blank worker replaces the one taken.
        blank2 = wait_for(lambda: (_blank(d) or {}).get("pid") not in (None, blank["pid"]) and _blank(d),
                          "a new blank worker")
        assert blank2["pid"] != env_a["pid"]
        # The store dirs are read-only in the run, as in an exec'd worker.
        st, out = d.run("@requirements({'adopta': ''})\n"
                        "def f():\n"
                        "    import os\n"
                        "    d = '/run/pysprinter/store/' + os.listdir('/run/pysprinter/store')[0]\n"
                        "    res = []\n"
                        "    for p in ('/run/pysprinter/store/x', d + '/x'):\n"
                        "        try:\n"
                        "            open(p, 'w')\n"
                        "            res.append('written')\n"
                        "        except OSError as e:\n"
                        "            res.append(e.errno)\n"
                        "    return res\n")
        assert st == 200 and out["status"] == "succeeded", out
        assert "written" not in out["result"], out["result"]
        # A second env lands in another worker, which sees only its dirs.
        st, out = d.run(STORE_PROBE % ("adoptb", "adoptb", "adoptb"))
        assert st == 200 and out["status"] == "succeeded", out
        rb = out["result"]
        envs = [x for x in _workers(d) if x["kind"] == "worker" and x.get("sys_path")]
        env_b = [x for x in envs if x["pid"] != env_a["pid"]]
        assert len(envs) == 2 and len(env_b) == 1, envs
        names_b = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in env_b[0]["sys_path"])
        assert rb["store"] == names_b and not set(rb["store"]) & set(names), (rb["store"], names)
        assert env_b[0]["adopted"] is True and env_b[0]["pid"] == blank2["pid"], (env_b, blank2)
    finally:
        d.stop()
        index.stop()


def _env_note_updated(d):
    import sqlite3
    db = sqlite3.connect(d.home / "pysprinter.db")
    try:
        return db.execute("SELECT key, updated FROM kv WHERE ns='tenant-env'").fetchall()
    finally:
        db.close()


def test_a_restarted_daemon_writes_nothing_for_an_env_its_tenant_used_before(tmp_path):
    """Issue 15, cold env (round 11b): which envs a tenant used is noted in
    the store once; a restarted daemon reads those notes at start, so the
    first run of a known env writes nothing on its way to the worker (that
    write waited for the store's first commit, which creates and syncs the
    WAL: 2-100 ms on a shared disk). The env is still the tenant's. Fails
    before: the restarted daemon wrote the note again (its time changed)."""
    import pkgindex
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    index = pkgindex.Index()
    index.add(pkgindex.build_wheel(wheels, "notedenv", "1.0", files={"notedenv/__init__.py": "VALUE = 3\n"}))
    index.start()
    src = "@requirements({'notedenv': ''})\ndef f():\n    import notedenv\n    return notedenv.VALUE\n"
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=f"index:\n  url: {index.url}\n")
    try:
        d.start()
        st, out = d.run(src)
        assert st == 200 and out["result"] == 3, out
        d.stop()
        noted = _env_note_updated(d)
        assert len(noted) == 1, noted
        time.sleep(0.01)
        d.start()
        st, out = d.run(src)
        assert st == 200 and out["result"] == 3, out
        st, envs = d.call("GET", "/v1/envs")
        assert st == 200 and any(e["requirements"] == ["notedenv"] for e in envs["envs"]), envs
        d.stop()
        assert _env_note_updated(d) == noted
    finally:
        d.stop()
        index.stop()
