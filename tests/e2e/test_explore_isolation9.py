"""helper-231's red team of what one tenant can learn about another on a
shared daemon: the warm pool's listing (GET /v1/workers, `pysprinter
workers`, the dashboard) and what a run reads under /proc/1 (the init its
worker clones per run, which shares the worker's memory). Each test is
named after what a tenant checks, and failed on the daemon before its fix."""
import json
import os

import pytest

from conftest import CLI
from daemonlib import Daemon, sandbox_mode, wait_for

# alice's env: a requirement set of her own, so its worker is hers alone.
SLEEPY = "import time\ndef f(s: float = 30):\n    time.sleep(s)\n    return 'slept'\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation9")
    with Daemon(root / "d", sandbox=sandbox_mode(root)).serving(clean_exit=False) as running:
        yield running


def workers(d, token):
    st, w = d.call("GET", "/v1/workers", token=token)
    assert st == 200, w
    return w


def test_a_tenant_sees_no_other_tenants_activity_in_the_warm_pool(d):
    """GET /v1/workers showed every tenant every warm worker with its host
    pid, the runs in flight on it (`busy`), its memory and its idle time:
    bob watched alice's runs come and go (busy 1, idle 0) on the base
    worker every run shares, and the validation worker and the blank one
    told him when anyone's file was checked or a cold env started. A
    non-admin token now sees only the workers of environments its runs
    use, with what concerns the environment (no pid, busy, instances, PSS,
    idle or age), and neither the validator nor the blank worker; an admin
    token sees every worker, every field."""
    st, run = d.run(SLEEPY, wait=False, token="alice")
    assert st == 202, run
    d.wait_status(run["id"], ["running"], token="alice")
    try:
        # An admin sees everything: the worker busy with alice's run (once
        # it has been handed one), the validator, pids.
        everything = wait_for(lambda: [x for x in workers(d, "admin")["workers"]
                                       if x["kind"] == "worker" and x["busy"] >= 1] and workers(d, "admin")["workers"],
                              "alice's run on a worker")
        assert any(x["kind"] == "validator" for x in everything), everything
        assert all(isinstance(x["pid"], int) and x["pid"] > 0 for x in everything if x["kind"] != "instance")
        theirs = workers(d, "bob")["workers"]
        kinds = {x["kind"] for x in theirs}
        assert kinds <= {"worker"}, theirs
        for x in theirs:
            for field in ("pid", "busy", "instances", "pss_bytes", "idle_s", "age_s"):
                assert field not in x, (field, x)
        # The owner's view is the same (the base worker serves every tenant:
        # its counts are everyone's runs), and says as much of her env.
        mine = workers(d, "alice")["workers"]
        assert all(x["kind"] == "worker" and "busy" not in x and "pid" not in x for x in mine), mine
    finally:
        d.cancel(run["id"], token="alice")


def test_a_tenant_still_sees_its_own_instances_and_the_pools_totals(d):
    """What a non-admin still reads: its deployed functions' warm instances
    (all fields: they are its own) and the pool's totals, which are the
    daemon's aggregate (as /metrics gives them)."""
    st, out = d.call("POST", "/v1/functions", {"name": "ownfn", "source": "def f():\n    return 7\n"})
    assert st in (200, 201), out
    st, out = d.call("POST", "/v1/functions/ownfn/invoke?wait=true", {})
    assert st == 200 and out["result"] == 7, out
    mine = workers(d, "alice")
    inst = [x for x in mine["workers"] if x["kind"] == "instance"]
    assert [x["function"].split("@")[0] for x in inst] == ["ownfn"], inst
    assert all("busy" in x and "invocations" in x for x in inst), inst
    assert not [x for x in workers(d, "bob")["workers"] if x["kind"] == "instance"]
    assert mine["pool"]["workers"] >= 1 and mine["pool"]["instances"] >= 1, mine["pool"]


def test_the_workers_verb_prints_dashes_where_a_tenant_is_not_told(d, tmp_path):
    """`pysprinter workers` printed 0 for the fields a non-admin is no
    longer given (a pid of 0, 0 busy, 0 B): a dash says "not yours to
    see"; an admin's listing still prints the worker's pid."""
    import subprocess
    st, b = d.run("def f():\n    return 1\n", token="bob")  # a worker of bob's environment (the base one)
    assert st == 200 and b["status"] == "succeeded", b
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(d.client_env("bob"), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"), NO_COLOR="1")
    p = subprocess.run([str(CLI), "workers"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[3:] if ln.strip()]
    assert rows and all(r[0] == "worker" and r[1:5] == ["-", "-", "-", "-"] for r in rows), p.stdout
    env.update(d.client_env("admin"))
    p = subprocess.run([str(CLI), "workers"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[3:] if ln.strip()]
    assert any(r[0] == "validator" and r[1].isdigit() and int(r[1]) > 0 for r in rows), p.stdout


def test_healthz_tells_no_one_the_run_counts_when_metrics_are_private(tmp_path):
    """With `metrics_public: false` the operator keeps the daemon's
    activity (pysprinter_runs_running, the queue's depth) to admin tokens,
    but /healthz, which needs no token, still said how many runs were
    running and queued: anyone (another tenant, or no tenant at all)
    watched alice's runs start and end; GET /v1/workers's pool totals
    (busy) told any tenant the same. Both now give them to an admin token
    only, when metrics are private; /healthz's status is everyone's."""
    d = Daemon(tmp_path / "d", config_extra="server:\n  metrics_public: false\n")
    with d.serving(clean_exit=False):
        st, run = d.run(SLEEPY, wait=False, token="alice")
        assert st == 202, run
        d.wait_status(run["id"], ["running"], token="alice")
        try:
            for token in (None, "bob", "alice"):
                st, h = d.call("GET", "/healthz", token=token)
                assert st == 200 and h["status"] == "ok", (token, h)
                assert "running" not in h and "queued" not in h, (token, h)
            assert d.call("GET", "/metrics", token="bob")[0] == 403
            # The record says running a moment before the daemon's own
            # counts and the pool's busy do (they follow the worker).
            wait_for(lambda: (lambda a: (a.get("running"), a.get("queued")) == (1, 0))(
                     d.call("GET", "/healthz", token="admin")[1]), "/healthz to count alice's run, for an admin")
            # The pool's totals in GET /v1/workers are the same figures
            # (busy: every tenant's runs in flight): an admin's here too.
            for token in ("bob", "alice"):
                st, w = d.call("GET", "/v1/workers", token=token)
                assert st == 200 and "pool" not in w, (token, w)
            wait_for(lambda: d.call("GET", "/v1/workers", token="admin")[1]["pool"]["busy"] == 1,
                     "the pool's busy to count alice's run, for an admin")
            # `pysprinter workers` prints no totals line then (not zeros).
            import subprocess
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
            env.update(d.client_env("bob"), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"), NO_COLOR="1")
            p = subprocess.run([str(CLI), "workers"], capture_output=True, text=True, env=env, timeout=60)
            assert p.returncode == 0 and p.stdout.split()[0] == "KIND", (p.stdout, p.stderr)
        finally:
            d.cancel(run["id"], token="alice")
    # Public metrics (the default): the counts are everyone's, as before.
    d = Daemon(tmp_path / "d2")
    with d.serving():
        st, h = d.call("GET", "/healthz", token=None)
        assert st == 200 and h["running"] == 0 and h["queued"] == 0, h


def test_an_environment_another_tenant_shares_does_not_say_when_it_ran(tmp_path):
    """GET /v1/envs lists the requirement sets the caller's runs resolved,
    but two tenants who use the same set share its environment, and its
    `in_use` (a run holds it now) and `last_used` were everyone's: alice
    read `in_use: true` while bob's run of that set ran, and the time of his
    last one. A non-admin token now reads neither (`last_used` null,
    no `in_use`; `env ls --server` prints dashes); an admin reads both."""
    import pkgindex
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    idx = pkgindex.Index()
    idx.add(pkgindex.build_wheel(wheels, "sharedpkg", "1.0", files={"sharedpkg/__init__.py": "V = 1\n"}))
    idx.start()
    src = "@requirements({'sharedpkg': '1.0'})\ndef f(s: float = 0):\n    import time\n    time.sleep(s)\n    return 1\n"
    try:
        d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {idx.url}\n")
        with d.serving(clean_exit=False):
            st, b = d.run(src, token="alice")
            assert st == 200 and b["status"] == "succeeded", b
            st, run = d.run(src, wait=False, token="bob", kwargs={"s": 30})
            assert st == 202, run
            d.wait_status(run["id"], ["running"], token="bob")
            try:
                def envs(token):
                    st, e = d.call("GET", "/v1/envs", token=token)
                    assert st == 200, e
                    return [x for x in e["envs"] if x["requirements"]]
                held = wait_for(lambda: [x for x in envs("admin") if x.get("in_use")], "bob's run to hold the env")
                assert held[0]["last_used"], held
                for token in ("alice", "bob"):
                    mine = envs(token)
                    assert len(mine) == 1 and mine[0]["requirements"] == held[0]["requirements"], (token, mine)
                    assert "in_use" not in mine[0] and mine[0]["last_used"] is None, (token, mine)
            finally:
                d.cancel(run["id"], token="bob")
    finally:
        idx.stop()


# ---- /proc/1 inside a run ----------------------------------------------------------

READ_INIT = """
import os

def f():
    seen = {}
    for name in ("status", "stat", "statm", "oom_score", "sched", "schedstat", "limits", "cgroup", "cmdline",
                 "comm", "task/1/status", "task/1/statm"):
        try:
            with open("/proc/1/" + name) as fh:
                seen[name] = fh.read()
        except OSError as e:
            seen[name] = "unreadable: " + type(e).__name__
    mine = {}
    for name in ("status", "statm", "cmdline"):
        with open("/proc/self/" + name) as fh:
            mine[name] = fh.read()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if open("/proc/%d/status" % os.getppid()).read() else 1)
    _, st = os.waitpid(pid, 0)
    return {"init": seen, "mine": mine, "child_reads_parent": os.waitstatus_to_exitcode(st) == 0,
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
"""

BIG_ARG = "def g(x: str):\n    return len(x)\n"


def test_a_run_cannot_watch_its_workers_memory_through_its_init(tmp_path):
    """The run's pid 1 shares the memory of the worker that serves every
    tenant of the environment: its /proc/1/status, stat and statm showed the
    worker's VmPeak/VmHWM/VmRSS, so alice's run saw bob's 4 MB argument
    pass through the worker (VmPeak +10 MB after his run) and could watch
    every request's size as it came. A run with a uid of its own now reads
    nothing under /proc/1 (the run's proc hides processes it may not
    trace); its own /proc entries and its children's stay readable, and
    pid 1 is still listed."""
    if sandbox_mode(tmp_path) != "full" or os.geteuid() != 0:
        pytest.skip("needs the full sandbox of a root engine (runs are uids of their own only then)")
    d = Daemon(tmp_path / "d", sandbox="full")
    with d.serving():
        st, before = d.run(READ_INIT, token="alice")
        assert st == 200 and before["status"] == "succeeded", before
        st, big = d.run(BIG_ARG, token="bob", args=["y" * 4_000_000])
        assert st == 200 and big["result"] == 4_000_000, big
        st, after = d.run(READ_INIT, token="alice")
        assert st == 200 and after["status"] == "succeeded", after
        for seen in (before["result"], after["result"]):
            init = seen["init"]
            readable = {k: v for k, v in init.items() if not v.startswith("unreadable")}
            assert not readable, json.dumps(readable)[:2000]
            assert seen["pids"] == [1, 2], seen["pids"]
            assert "VmRSS" in seen["mine"]["status"] and seen["mine"]["statm"], seen["mine"]
            assert seen["child_reads_parent"] is True, seen


# Runs argv as root of a user namespace that maps host uids 0..65535 only,
# with a pid namespace and a proc of its own: a container whose root
# cannot map the sandbox's block of run uids (sandbox.h "uids"), so every
# run is uid 0 of its worker's namespace, as its init is.
CONTAINER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID = 0x10000000, 0x00020000, 0x20000000
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.close(r2)
    if libc.unshare(CLONE_NEWUSER) != 0:
        os._exit(77)
    os.write(w2, b"x")
    os.read(r, 1)
    os.setgid(0)
    os.setuid(0)
    if libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:
        os._exit(77)
    c = os.fork()
    if c == 0:
        if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0 or \\
                libc.mount(b"proc", b"/proc", b"proc", 0, None) != 0:
            os._exit(77)
        os.execv(sys.argv[1], sys.argv[1:])
    os._exit(os.waitstatus_to_exitcode(os.waitpid(c, 0)[1]))
os.close(r)
os.close(w2)
os.read(r2, 1)
for m in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{m}", "w") as fh:
        fh.write("0 0 65536\\n")
os.write(w, b"x")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_run_in_a_container_without_the_uid_block_cannot_read_its_init_either(tmp_path):
    """Where the engine cannot map the block of run uids (a container's
    root), a run is uid 0 like its init and not dumpable, so hiding what it
    may not trace would hide its own children from it too: there /proc/1
    is an empty directory (its children's entries and its own still read)."""
    import subprocess
    import sys
    if os.geteuid() != 0 or sandbox_mode(tmp_path) != "full":
        pytest.skip("needs root to make the container and a kernel that runs the full sandbox")
    (tmp_path / "ctr.py").write_text(CONTAINER)
    (tmp_path / "probe.py").write_text(READ_INIT)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "NO_COLOR": "1"}
    p = subprocess.run([sys.executable, str(tmp_path / "ctr.py"), str(CLI), "run", "--json", str(tmp_path / "probe.py")],
                       capture_output=True, text=True, env=env, timeout=300)
    if p.returncode == 77:
        pytest.skip("this host cannot make the user, mount and pid namespaces of a container")
    assert p.returncode == 0, p.stdout + p.stderr
    seen = json.loads(p.stdout)
    assert "Uid:\t0\t" in seen["mine"]["status"], seen["mine"]  # the container's case: no uid of its own
    readable = {k: v for k, v in seen["init"].items() if not v.startswith("unreadable")}
    assert not readable, json.dumps(readable)[:2000]
    assert seen["pids"] == [1, 2] and seen["child_reads_parent"] is True, seen


UID = "import os\ndef f():\n    return os.getuid()\n"
QUICK = "def f():\n    return 1\n"


def test_a_runs_uid_does_not_count_the_runs_of_other_tenants(tmp_path):
    """Each run is a uid of its own, 1-31 (helper-222), and the worker
    handed them out in turn: alice's run read uid k, bob ran n runs in the
    same environment, alice's next run read about uid k + n + 1 (mod 31) —
    a count of another tenant's runs (seen: 1, 2, 5, 14 with 0, 3, 6 runs
    of bob's between; with 10 between, gaps of 9 to 13). The worker now
    draws among the least-used uids (never the last one handed out):
    consecutive runs still differ, and the gap says nothing. Ten times, 10
    runs of bob's: gaps all within 4 of 11 are what a counter gives (a
    draw does that about once in 170,000)."""
    if sandbox_mode(tmp_path) != "full" or os.geteuid() != 0:
        pytest.skip("needs the full sandbox of a root engine (runs are uids of their own only then)")
    d = Daemon(tmp_path / "d", sandbox="full")
    with d.serving():
        def uid(token):
            st, b = d.run(UID, token=token)
            assert st == 200 and b["status"] == "succeeded", b
            return b["result"]
        gaps = []
        last = uid("alice")
        for _ in range(10):
            bobs = [uid("bob") for _ in range(10)]
            assert all(a != b for a, b in zip(bobs, bobs[1:])), bobs  # consecutive runs never share one
            now = uid("alice")
            assert 1 <= now <= 31 and now != bobs[-1], (now, bobs[-1])
            gaps.append((now - last) % 31)
            last = now
        assert not all(abs(g - 11) <= 4 for g in gaps), gaps
