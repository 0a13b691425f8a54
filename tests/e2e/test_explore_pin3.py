"""More of a deployed version's lock (test_explore_pin.py, test_explore_pin2.py):

- a wheel found on a moved index (same filename, same sha256) is saved back
  to the version's lock: the stale URL is not tried first after every prune
  or restart, and the version's identity stays what it was;
- `env verify --repair` removing a package of a version's environment has
  the next invoke install it again, without a restart of the daemon;
- the set-aside record of an environment rewritten while held goes once
  nothing holds it, not at the next prune;
- a stack deploy compares locks by name, version and sha256, not by the
  URLs a moved index serves them from."""
import os

import pytest

from conftest import CLI, DAEMON
from daemonlib import Daemon, wait_for
from test_explore_envhold import writable
from test_explore_pin2 import REQS, SOURCE, build, deploy, invoke, move_index, serve

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


def Runner(d):
    from conftest import Runner as R
    return R(d.env(), d.root)


def wheel_path(ix, wheel):
    return f"/files/{wheel.name}"


# ---- a moved index, saved back ---------------------------------------------------

def test_a_wheel_found_on_a_moved_index_is_saved_to_the_versions_lock(tmp_path):
    wheel = build(tmp_path, "a", "1.0")
    a = serve(wheel)
    b = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {a.url}\n")
    d.index_url = a.url
    d.start()
    try:
        deploy(d)
        assert invoke(d)["result"] == "1.0"
        st, before = d.call("GET", "/v1/functions/pinned")
        assert st == 200, before
        a_base = a.url.replace("/simple/", "/")
        assert before["lock"]["packages"][0]["url"].startswith(a_base), before["lock"]
        # Index A no longer serves the file (the operator moved to B).
        a.fail_next(wheel_path(a, wheel), 404, count=1000)
        move_index(d, b.url)
        assert invoke(d)["result"] == "1.0"
        tried = a.requests.count(wheel_path(a, wheel))
        assert tried >= 1, a.requests
        st, after = d.call("GET", "/v1/functions/pinned")
        assert st == 200, after
        b_base = b.url.replace("/simple/", "/")
        assert after["lock"]["packages"][0]["url"].startswith(b_base), after["lock"]
        # The same version, the same files: only where they are changed.
        assert after["versions"] == before["versions"] == [1], (before, after)
        assert after["source_sha256"] == before["source_sha256"]
        for k in ("name", "version", "filename", "sha256"):
            assert after["lock"]["packages"][0][k] == before["lock"]["packages"][0][k]
        # Its next invoke runs the saved lock in the same environment: one
        # pinned record, not one per URL the files had.
        assert invoke(d)["result"] == "1.0"
        st, envs = d.call("GET", "/v1/envs", token="admin")
        assert st == 200, envs
        assert [e["kind"] for e in envs["envs"]].count("pinned") == 1, envs
        # Pruned and restarted: B's URL first, A's never again.
        move_index(d, b.url)
        assert invoke(d)["result"] == "1.0"
        assert a.requests.count(wheel_path(a, wheel)) == tried, a.requests
    finally:
        d.stop()
        a.stop()
        b.stop()


def test_in_a_cluster_the_moved_lock_is_saved_where_every_gateway_reads_it(tmp_path):
    """A cluster keeps its functions in Redis: the worker that found the
    files elsewhere saves the lock there, and a gateway shows it."""
    from clusterlib import REDIS, Redis
    if not REDIS:
        pytest.skip("redis-server not installed")
    redis = Redis(tmp_path).start()
    wheel = build(tmp_path, "a", "1.0")
    a = serve(wheel)
    b = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {a.url}\n",
               args=["--redis", redis.url, "--role", "all", "--node-id", "n1"])
    d.index_url = a.url
    d.start()
    try:
        deploy(d)
        assert invoke(d)["result"] == "1.0"
        a.fail_next(wheel_path(a, wheel), 404, count=1000)
        move_index(d, b.url)
        assert invoke(d)["result"] == "1.0"
        tried = a.requests.count(wheel_path(a, wheel))
        st, f = d.call("GET", "/v1/functions/pinned")
        assert st == 200 and f["versions"] == [1], f
        assert f["lock"]["packages"][0]["url"].startswith(b.url.replace("/simple/", "/")), f["lock"]
        move_index(d, b.url)
        assert invoke(d)["result"] == "1.0"
        assert a.requests.count(wheel_path(a, wheel)) == tried, a.requests
    finally:
        d.stop()
        a.stop()
        b.stop()
        redis.stop()


# ---- env verify --repair under a running daemon -------------------------------------

DATA_SOURCE = ("def f():\n    import os, tinypkg\n"
               "    with open(os.path.join(os.path.dirname(tinypkg.__file__), 'data.txt')) as fh:\n"
               "        return fh.read()\n")


def test_a_repaired_package_of_a_pinned_version_is_installed_again_without_a_restart(tmp_path):
    import pkgindex
    w = tmp_path / "w"
    w.mkdir()
    wheel = pkgindex.build_wheel(w, "tinypkg", "1.0", files={"tinypkg/__init__.py": "V = '1.0'\n",
                                                             "tinypkg/data.txt": "tiny data\n"})
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\n")
    d.start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": DATA_SOURCE, "requirements": REQS})
        assert st == 201, b
        assert invoke(d)["result"] == "tiny data\n"
        assert invoke(d)["result"] == "tiny data\n"  # pinned now
        (pkg,) = [x for x in (d.home / "store").iterdir() if (x / "tinypkg").is_dir()]
        writable(pkg)
        (pkg / "tinypkg" / "data.txt").write_text("garbage\n")
        p = Runner(d)("env", "verify", "--repair", env={"PYSPRINTER_SERVER": ""})
        assert p.stdout.splitlines()[-1] == "checked 1 package, 1 damaged, 1 removed", (p.stdout, p.stderr)
        assert not pkg.exists()
        r = invoke(d)
        assert r["status"] == "succeeded" and r["result"] == "tiny data\n", r
        assert pkg.is_dir()
    finally:
        d.stop()
        ix.stop()


# ---- set-aside records ----------------------------------------------------------------

def held(d):
    """The daemon's set-aside records (envs/.held-*)."""
    return sorted(n for n in os.listdir(d.home / "envs") if n.startswith(".held-"))


def test_set_aside_records_go_once_nothing_holds_them(tmp_path):
    wheel = build(tmp_path, "w", "1.0")
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\npool:\n  env_idle_s: 600\n")
    d.start()
    try:
        for _ in range(5):
            st, out = d.run("@requirements({'tinypkg': '>=1.0'})\n" + SOURCE, filename="f.py", no_cache=True)
            assert st == 200 and out["status"] == "succeeded" and out["result"] == "1.0", out

        # Each run wrote the record again while the daemon held the one
        # before; the daemon then let go of it.
        wait_for(lambda: held(d) == [], "no set-aside record left", timeout=20)
    finally:
        d.stop()
        ix.stop()


def test_a_record_set_aside_by_another_process_goes_when_the_daemon_lets_go(tmp_path):
    """A CLI's `run --no-cache` of a set the daemon holds sets the daemon's
    record aside; the daemon, once idle, lets go of it and removes it."""
    wheel = build(tmp_path, "w", "1.0")
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\npool:\n  env_idle_s: 5\n  worker_idle_s: 1\n")
    d.start()
    src = "@requirements({'tinypkg': '>=1.0'})\n" + SOURCE
    try:
        st, out = d.run(src, filename="f.py")
        assert st == 200 and out["result"] == "1.0", out
        (tmp_path / "f.py").write_text(src)
        p = Runner(d)("run", "--sandbox=none", "--no-cache", "--index-url", ix.url, str(tmp_path / "f.py"),
                      env={"PYSPRINTER_SERVER": ""})
        assert p.returncode == 0 and p.stdout.strip() == "1.0", (p.stdout, p.stderr)

        assert len(held(d)) == 1, held(d)  # the daemon's, still held
        wait_for(lambda: held(d) == [], "the daemon's set-aside record gone", timeout=30)
    finally:
        d.stop()
        ix.stop()


# ---- stack redeploys across a moved index ----------------------------------------------

def test_a_stack_redeploy_on_a_moved_index_is_unchanged(tmp_path):
    wheel = build(tmp_path, "a", "1.0")
    a = serve(wheel)
    b = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {a.url}\n")
    d.index_url = a.url
    d.start()
    body = {"functions": [{"name": "pinned", "source": SOURCE, "requirements": REQS}]}
    try:
        st, r = d.call("POST", "/v1/stacks", body)
        assert st == 200, r
        assert [(c["action"], c["kind"]) for c in r["changes"]] == [("created", "function")], r
        move_index(d, b.url)
        st, r = d.call("POST", "/v1/stacks", body)
        assert st == 200, r
        assert [(c["action"], c["kind"]) for c in r["changes"]] == [("unchanged", "function")], r
        st, f = d.call("GET", "/v1/functions/pinned")
        assert f["versions"] == [1], f
        assert invoke(d)["result"] == "1.0"
        # A new build of the wheel (another sha256) is a new version.
        other = build(tmp_path, "c", "1.0", text="V = 'rebuilt'\n")
        c = serve(other)
        try:
            move_index(d, c.url)
            st, r = d.call("POST", "/v1/stacks", body)
            assert st == 200, r
            assert [(c_["action"], c_["kind"]) for c_ in r["changes"]] == [("updated", "function")], r
        finally:
            c.stop()
    finally:
        d.stop()
        a.stop()
        b.stop()
