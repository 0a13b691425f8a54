"""Issue 15 (c), the cgroup share of an ad-hoc run: a finished run's
groups are used again for the next spare, the v1 memory group too while
what the last run left charged in it is small (docs/sandbox.md "Groups
used again"). What a user checks: each run's verdict is its own (also
after an OOM kill in the same memory group), a limit one run lowered is
not the next run's, a run gets its full memory limit whatever the run
before it left behind, and no group is left behind — after 200 runs, nor
after a kill -9 of the daemon (the sweep at the next start)."""
import glob
import os
import time

import pytest

from daemonlib import Daemon, run, sandbox_mode

CGROUP_PROBE = "def f():\n    return open('/proc/self/cgroup').read()\n"
FORKS = ("import os\ndef f(n):\n    kids, refused = [], 0\n    for _ in range(n):\n        try:\n"
         "            p = os.fork()\n        except OSError:\n            refused += 1\n            continue\n"
         "        if p == 0:\n            os._exit(0)\n        kids.append(p)\n"
         "    for p in kids:\n        os.waitpid(p, 0)\n    return refused\n")
BOMB = ("import os\ndef f():\n    for _ in range(50):\n        if os.fork() == 0:\n"
        "            import time; time.sleep(5); os._exit(0)\n")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    if d.sandbox == "none":
        pytest.skip("cgroups need the sandbox")
    d.start()
    yield d
    d.stop()


def groups(text):
    """{controllers: path} of a /proc/self/cgroup text."""
    out = {}
    for line in text.strip().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def ours(pid):
    """The run cgroup directories of daemon pid (their names end in -PID)."""
    return [p for p in glob.glob("/sys/fs/cgroup/**/pysprinter-*", recursive=True)
            if p.endswith(f"-{pid}") and os.path.isdir(p)]


PRINT_CGROUP = "print(open('/proc/self/cgroup').read(), flush=True)\n"


def run_logged(d, source, **body):
    """A run whose function prints its cgroups first: (answer, groups)."""
    src = source.replace("def f(", "def _f(") + "def f(*a):\n    " + PRINT_CGROUP.replace("\n", "\n    ") + "return _f(*a)\n"
    out = run(d, src, function="f", **body)
    st, text = d.call("GET", f"/v1/runs/{out['id']}/logs")
    assert st == 200, text
    return out, groups(text)


def needs_v1_pids(g):
    if "pysprinter-" not in g.get("pids", ""):
        pytest.skip("no v1 pids hierarchy here: one v2 group per run, made fresh (nothing reused)")


def gone(group, ctrl, d):
    """Whether daemon d's v1 group (a path of /proc/PID/cgroup) of ctrl
    was removed."""
    assert group.endswith(f"-{d.proc.pid}"), group
    return not any(p.endswith(group) for p in ours(d.proc.pid) if f"/{ctrl}" in p)


def until_on(d, group, source, tries=40, ctrl="pids", unless_gone=False, **body):
    """Runs source until a run lands on group (of ctrl); returns its answer
    (with unless_gone: (None, None) once the group was removed)."""
    for _ in range(tries):
        out, g = run_logged(d, source, **body)
        if g.get(ctrl) == group:
            return out, g
        if unless_gone and gone(group, ctrl, d):
            return None, None
    pytest.fail(f"no run of {tries} was given the group {group} again")


def test_groups_are_used_again_the_v1_memory_group_too(daemon):
    outs = [run(daemon, CGROUP_PROBE) for _ in range(12)]
    # A group's name never carries a run's id (a later run, maybe another
    # tenant's, would see it in /proc/self/cgroup).
    for o in outs:
        assert not any(p["id"] in o["result"] for p in outs), o["result"]
    seen = [groups(o["result"]) for o in outs]
    needs_v1_pids(seen[0])
    mem = [g["memory"] for g in seen if "pysprinter-" in g.get("memory", "")]
    if mem:
        assert len(set(mem)) < len(mem), mem
    pids = [g["pids"] for g in seen]
    assert len(set(pids)) < len(pids), pids


def test_a_reused_groups_verdict_is_its_own_run(daemon):
    for _ in range(3):  # warm: spares made and joined
        run(daemon, CGROUP_PROBE)
    bomb, g = run_logged(daemon, BOMB, limits={"max_procs": 5})
    needs_v1_pids(g)
    assert bomb["exit_code"] == 5 and "process limit" in bomb["error"]["message"], bomb
    # A run given the bomb's pids group again is not reported as hitting
    # the process limit (pids.events' "max" is not reset: a baseline).
    ok, _ = until_on(daemon, g["pids"], FORKS, args=[3])
    assert ok["status"] == "succeeded" and ok["result"] == 0 and not ok.get("error"), ok
    big, g = run_logged(daemon, "def f():\n    b = bytearray(300 << 20)\n    return len(b)\n",
                        limits={"memory_bytes": 64 << 20})
    assert big["status"] == "killed" and "memory limit (64 MiB)" in big["error"]["message"], big
    ok, g2 = until_on(daemon, g["pids"], "def f():\n    return len(bytearray(32 << 20))\n")
    assert ok["status"] == "succeeded" and ok["result"] == 32 << 20 and not ok.get("error"), ok
    if "pysprinter-" in g.get("memory", ""):
        # The OOM-killed run's own v1 memory group, given to a later run
        # with the same limit: that run gets its whole 64 MiB, no verdict.
        ok, _ = until_on(daemon, g["memory"], "def f():\n    return len(bytearray(48 << 20))\n",
                         ctrl="memory", limits={"memory_bytes": 64 << 20})
        assert ok["status"] == "succeeded" and ok["result"] == 48 << 20 and not ok.get("error"), ok


FILL = ("def f(mb):\n    with open('/tmp/fill', 'wb') as fh:\n        for _ in range(mb):\n"
        "            fh.write(b'x' * (1 << 20))\n    return mb\n")


def test_a_run_after_one_that_filled_memory_gets_its_full_limit(daemon):
    lim = {"memory_bytes": 64 << 20}
    for _ in range(3):
        run(daemon, CGROUP_PROBE, limits=lim)
    # Each run fills what it may with files (tmpfs pages, page cache):
    # the next run still gets its whole limit, on whatever group it lands.
    for _ in range(6):
        full = run(daemon, FILL, args=[40], limits=lim)
        assert full["status"] == "succeeded" and full["result"] == 40, full
        ok = run(daemon, "def f():\n    return len(bytearray(48 << 20))\n", limits=lim)
        assert ok["status"] == "succeeded" and ok["result"] == 48 << 20 and not ok.get("error"), ok


def test_a_lowered_limit_is_not_the_next_runs(daemon):
    for _ in range(3):
        run(daemon, CGROUP_PROBE)
    low, g = run_logged(daemon, FORKS, args=[12], limits={"max_procs": 4})
    needs_v1_pids(g)
    # It caught its refused forks: the limit visibly in force.
    assert low["status"] == "succeeded" and low["result"] > 0, low
    # A later run on the same pids group, with the default limit, forks 12
    # children freely. Or the group was removed rather than kept (a group
    # is kept only when its cgroup.procs read back empty at the run's end:
    # on a busy machine the 12 children may not all be gone yet, as in one
    # CI run of round 19): then no run can have its limit.
    if gone(g["pids"], "pids", daemon):
        return
    ok, _ = until_on(daemon, g["pids"], FORKS, args=[12], unless_gone=True)
    if ok is None:
        return
    assert ok["status"] == "succeeded" and ok["result"] == 0 and not ok.get("error"), ok


def test_no_group_is_left_after_200_runs_and_a_kill9(daemon):
    pid = daemon.proc.pid
    for i in range(200):
        assert run(daemon, "def f(i):\n    return i\n", args=[i])["result"] == i
    # Kept for the next spares: a bounded few, not one per run.
    assert len(ours(pid)) <= 64, len(ours(pid))
    daemon.kill9()
    assert ours(pid), "a kill -9 leaves the daemon's groups (the sweep's work)"
    daemon.start()
    deadline = time.monotonic() + 30
    while ours(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours(pid) == []
    assert run(daemon, "def f():\n    return 1\n")["result"] == 1


def test_every_kept_group_comes_back_in_turn(daemon):
    # Eight runs at once leave eight groups kept; runs one at a time then
    # take each of them again, not only the last one put back (taken
    # newest first, the ones below it stayed unused for good).
    import concurrent.futures
    slow = "import time\ndef f():\n    time.sleep(0.5)\n    return 1\n"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        burst = list(pool.map(lambda _: run_logged(daemon, slow), range(8)))
    kept = {g["pids"] for _, g in burst}
    needs_v1_pids(burst[0][1])
    assert len(kept) >= 4, kept  # they overlapped: a group each
    seen = set()
    for _ in range(len(kept) + 24):
        out, g = run_logged(daemon, "def f():\n    return 2\n")
        assert out["result"] == 2, out
        seen.add(g["pids"])
        if kept <= seen:
            return
    # A group removed instead of kept cannot come back.
    missing = {k for k in kept - seen if not gone(k, "pids", daemon)}
    assert not missing, f"kept groups never taken again: {sorted(missing)}"


def test_an_engine_in_another_pid_namespace_leaves_this_daemons_groups(daemon, tmp_path):
    """Every engine sweeps the groups beside its own whose owner (the pid
    a name ends in) is gone. A CLI under `unshare --pid --mount-proc` (or
    in a container sharing the cgroup) sees none of the host's processes,
    so it took the daemon's idle groups, kept for its next runs, for a dead
    engine's and removed them: the daemon's next run failed with "sandbox:
    joining the run's cgroup: No such device". A name now carries its pid
    namespace, and a sweep judges only its own namespace's."""
    import subprocess
    from conftest import CLI
    if os.geteuid() != 0 or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"]).returncode:
        pytest.skip("needs unshare --pid (root)")
    src = "def f(x: int = 1):\n    return x + 1\n"
    for _ in range(3):
        assert run(daemon, src)["status"] == "succeeded"
    before = ours(daemon.proc.pid)
    assert before
    f = tmp_path / "a.py"
    f.write_text("def f():\n    return 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
    env["PYSPRINTER_HOME"] = str(tmp_path / "cli-home")
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", str(CLI), "run", "--sandbox=none", str(f)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout == "1\n", (r.returncode, r.stdout, r.stderr)
    assert set(before) <= set(ours(daemon.proc.pid)), set(before) - set(ours(daemon.proc.pid))
    for _ in range(6):
        out = run(daemon, src)
        assert out["status"] == "succeeded", out
