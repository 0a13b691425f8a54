"""`map`, `logs`, `ps`, `show` and Ctrl-C, embedded and against a daemon:
the same bytes and the same exit code on both paths, bad input refused
before anything runs, and every run that got an id ends (a user's sweep
of these verbs). The fixtures are test_cli_parity.py's."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CLI, WORKER
from test_cli_parity import SB, daemon, run_cli, workdir  # noqa: F401 (fixtures)

SLOW = '''
import sys, time

def slow(x=0, n: float = 4):
    print(f"started {x}", file=sys.stderr, flush=True)
    time.sleep(n)
    print(f"done {x}", flush=True)
    return x
'''


def cli_env(workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    return env


def popen(workdir, args, server, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    pre = ["--server", server] if server else []
    return subprocess.Popen([str(CLI), *pre, *args], cwd=workdir, env=cli_env(workdir), stdout=stdout,
                            stderr=stderr, text=True)


def wait_started(p):
    """Reads p's stderr up to the function's first line (the notes of
    --sandbox=none come before it)."""
    while True:
        line = p.stderr.readline()
        assert line, p.poll()
        if line.startswith("started"):
            return


def wait_calls_started(p, err, n):
    """Waits until n of map p's calls printed "started" to the file err."""
    deadline = time.time() + 60
    while err.read_text().count("started") < n:
        assert time.time() < deadline and p.poll() is None, err.read_text()
        time.sleep(0.05)


def newest_run(workdir, server, status=None, timeout=60):
    deadline = time.time() + timeout
    while True:
        ps = run_cli(workdir, ["ps", "--json", "-n", "1"], server=server)
        runs = json.loads(ps.stdout or "[]")
        if runs and (status is None or runs[0]["status"] == status):
            return runs[0]
        assert time.time() < deadline, ps
        time.sleep(0.1)


def test_logs_of_a_running_run_prints_what_it_wrote_so_far_on_both_paths(daemon, workdir):
    """Without -f, `logs` prints the output so far and returns: against a
    daemon it followed the run to its end (the event stream of ?follow=1)."""
    (workdir / "slow.py").write_text(SLOW)
    for server in (None, daemon.url):
        p = popen(workdir, ["run", "slow.py", "--n", "20", *SB], server)
        try:
            wait_started(p)
            rid = newest_run(workdir, server, "running")["id"]
            t0 = time.time()
            r = run_cli(workdir, ["logs", rid], server=server)
            assert time.time() - t0 < 10, (server, "logs waited for the run's end")
            assert (r.returncode, r.stdout, r.stderr) == (0, "", "started 0\n"), (server, r)
        finally:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=60)
        assert run_cli(workdir, ["show", rid, "--json"], server=server).stdout.count('"cancelled"')


def test_logs_follow_interrupted_exits_130_on_both_paths(daemon, workdir):
    """Ctrl-C on `logs -f` is exit 130 and "interrupted", as every verb's
    Ctrl-C (embedded it was exit 0 and silent); the run it followed goes on."""
    (workdir / "slow.py").write_text(SLOW)
    out = {}
    for server in (None, daemon.url):
        p = popen(workdir, ["run", "slow.py", "--n", "6", *SB], server)
        try:
            wait_started(p)
            rid = newest_run(workdir, server, "running")["id"]
            f = popen(workdir, ["logs", "-f", rid], server)
            wait_started(f)
            f.send_signal(signal.SIGINT)
            o, e = f.communicate(timeout=60)
            out[server] = (f.returncode, o, e)
            assert p.wait(timeout=60) == 0        # the followed run was not touched
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert out[None] == out[daemon.url] == (130, "", "pysprinter: interrupted\n"), out


def test_map_refuses_a_key_that_is_no_parameter_name_before_running_on_both_paths(daemon, workdir):
    """An input line's object keys are keyword names: one that cannot be a
    parameter is exit 2 naming the line, before any call runs (embedded it
    ran as an invalid call, exit 3; a daemon refused it with a 400, the
    line an "error" of a ClientError, exit 2: the same input, two outcomes)."""
    (workdir / "sq.py").write_text("def sq(x, y=0):\n    return x * x + y\n")
    (workdir / "keys.jsonl").write_text('{"x": 1}\n{"no such": 2}\n')
    out = {}
    for server in (None, daemon.url):
        before = len(json.loads(run_cli(workdir, ["ps", "--json", "-n", "10000"], server=server).stdout))
        r = run_cli(workdir, ["map", "sq.py", "--over", "keys.jsonl", *SB], server=server)
        out[server] = (r.returncode, r.stdout, [l for l in r.stderr.splitlines() if "--sandbox" not in l])
        after = len(json.loads(run_cli(workdir, ["ps", "--json", "-n", "10000"], server=server).stdout))
        assert after == before, (server, "a call ran")
    assert out[None] == out[daemon.url], out
    assert out[None] == (2, "", ["pysprinter: keys.jsonl:2: 'no such' is not a valid parameter name"]), out


@pytest.mark.parametrize("remote", [False, True], ids=["embedded", "server"])
def test_map_ctrl_c_cancels_every_call_in_flight_on_both_paths(daemon, workdir, remote):
    """Ctrl-C cancels every call in flight, embedded as on a server. On a
    server the first call to see the interrupt marked it handled for the
    whole process, so the other calls' streams went on and their runs ran
    to their end; embedded, the interrupt reached only the last call's
    watcher (docs/cli.md said so)."""
    server = daemon.url if remote else None
    (workdir / "slow.py").write_text(SLOW)
    (workdir / "in4.jsonl").write_text("".join(f'{{"x": {i}, "n": 20}}\n' for i in range(4)))
    err = workdir / "map-err.txt"
    with open(err, "w") as ef:
        p = popen(workdir, ["map", "slow.py", "--over", "in4.jsonl", "--concurrency", "4", *SB], server,
                  stderr=ef)
        wait_calls_started(p, err, 4)
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        o, _ = p.communicate(timeout=60)
    assert p.returncode == 130, (o, err.read_text())
    assert time.time() - t0 < 15, "map waited for calls to end instead of cancelling them"
    lines = [json.loads(x) for x in o.splitlines()]
    assert [x["status"] for x in lines] == ["cancelled"] * 4, lines
    for x in lines:
        assert json.loads(run_cli(workdir, ["show", x["run_id"], "--json"], server=server).stdout)["status"] \
            == "cancelled"


def test_cancel_stops_a_run_in_flight_with_the_same_bytes_on_both_paths(daemon, workdir):
    """`cancel RUN` (a prefix works, as for `logs` and `show`) ends another
    process's run as Ctrl-C there would: one line, exit 0, and the run's
    own CLI prints the cancelled run (exit 5, the run's code) on both paths.
    Embedded, the run belongs to another CLI process: it is asked, by the
    store's record of its owner, to cancel that one run."""
    (workdir / "slow.py").write_text(SLOW)
    out = {}
    for server in (None, daemon.url):
        p = popen(workdir, ["run", "slow.py", "--n", "60", *SB], server)
        try:
            wait_started(p)
            rid = newest_run(workdir, server, "running")["id"]
            t0 = time.time()
            r = run_cli(workdir, ["cancel", rid[:12]], server=server)
            assert time.time() - t0 < 15, (server, "cancel waited for the run's end")
            o, e = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)["status"] == "cancelled"
        out[server] = (r.returncode, r.stdout.replace(rid, "RID"), r.stderr, p.returncode, o,
                       e.splitlines()[-1:])
    assert out[None] == out[daemon.url], out
    assert out[None][:3] == (0, "run RID: cancelled\n", ""), out


def test_cancel_of_an_ended_or_unknown_run_says_so_on_both_paths(daemon, workdir):
    """An ended run is not cancelled: its state is said, exit 2 (as `dag
    cancel` of an ended DAG run); an unknown id too. Every id gets its
    line, and the first failure's code is the exit code."""
    out = {}
    for server in (None, daemon.url):
        done = run_cli(workdir, ["run", "f.py", "--kind", "list", "--json", *SB], server=server)
        assert done.returncode == 0, done
        rid = newest_run(workdir, server)["id"]
        ended = run_cli(workdir, ["cancel", rid], server=server)
        unknown = run_cli(workdir, ["cancel", "rnosuchrun"], server=server)
        both = run_cli(workdir, ["cancel", "rnosuchrun", rid], server=server)
        out[server] = [(x.returncode, x.stdout, x.stderr.replace(rid, "RID")) for x in (ended, unknown, both)]
    assert out[None] == out[daemon.url], out
    assert out[None] == [
        (2, "", "pysprinter: run RID has already finished (succeeded)\n"),
        (2, "", "pysprinter: no run 'rnosuchrun' (see `pysprinter ps`)\n"),
        (2, "", "pysprinter: no run 'rnosuchrun' (see `pysprinter ps`)\n"
                "pysprinter: run RID has already finished (succeeded)\n"),
    ], out


def test_cancel_needs_a_run_id(workdir):
    r = run_cli(workdir, ["cancel"])
    assert (r.returncode, r.stdout) == (2, ""), r
    assert "cancel needs a run id" in r.stderr, r.stderr
    r = run_cli(workdir, ["cancel", "--bogus", "r1"])
    assert r.returncode == 2 and "unexpected argument '--bogus'" in r.stderr, r


def test_map_call_cancelled_alone_embedded_as_on_a_server(daemon, workdir):
    """Embedded, a run's owner may run other calls too (`map`): cancelling
    one call ends that call only, as DELETE /v1/runs/{id} does on a server;
    the others run to their end."""
    (workdir / "slow.py").write_text(SLOW)
    (workdir / "in2.jsonl").write_text('{"x": 1, "n": 3}\n{"x": 2, "n": 60}\n')
    for server in (None, daemon.url):
        err = workdir / "map-cancel-err.txt"
        with open(err, "w") as ef:
            p = popen(workdir, ["map", "slow.py", "--over", "in2.jsonl", "--concurrency", "2", *SB], server,
                      stderr=ef)
            wait_calls_started(p, err, 2)
            runs = json.loads(run_cli(workdir, ["ps", "--json", "-n", "2"], server=server).stdout)
            slow = [x["id"] for x in runs if x["kwargs"].get("x") in (2, "2")]
            assert len(slow) == 1, runs
            r = run_cli(workdir, ["cancel", slow[0]], server=server)
            o, _ = p.communicate(timeout=60)
        assert (r.returncode, r.stdout) == (0, f"run {slow[0]}: cancelled\n"), (server, r)
        assert [json.loads(x)["status"] for x in o.splitlines()] == ["succeeded", "cancelled"], (server, o)


def test_ps_status_lists_the_runs_of_one_state_on_both_paths(daemon, workdir):
    """`ps --status S` keeps the runs in state S (GET /v1/runs?status=S on a
    server); the same rows on both paths."""
    out = {}
    for server in (None, daemon.url):
        assert run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=server).returncode == 1
        assert run_cli(workdir, ["run", "f.py", "--kind", "none", *SB], server=server).returncode == 0
        failed = json.loads(run_cli(workdir, ["ps", "--status", "failed", "--json"], server=server).stdout)
        assert failed and {x["status"] for x in failed} == {"failed"}, (server, failed)
        ok = json.loads(run_cli(workdir, ["ps", "--status=succeeded", "--json", "-n", "3"], server=server).stdout)
        assert len(ok) <= 3 and {x["status"] for x in ok} == {"succeeded"}, (server, ok)
        human = run_cli(workdir, ["ps", "--status", "failed", "-n", "1"], server=server)
        assert human.returncode == 0, human
        header, row = human.stdout.splitlines()
        out[server] = (header, row.split()[1:3], human.stderr)
    assert out[None] == out[daemon.url], out
    assert out[None][1] == ["failed", "1"], out


def test_the_apis_status_filter_counts_only_runs_in_that_state(daemon, workdir):
    """?status=failed&limit=1 kept the failed runs among the newest one run:
    empty as soon as a run had succeeded since. The store now filters as it
    walks: the last failed run, whatever came after. An unknown state was
    an empty list; it is a 400 naming the states."""
    assert run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=daemon.url).returncode == 1
    for _ in range(3):
        assert run_cli(workdir, ["run", "f.py", "--kind", "none", *SB], server=daemon.url).returncode == 0
    st, body = daemon.call("GET", "/v1/runs?status=failed&limit=1", token=None)
    assert st == 200 and [r["status"] for r in body["runs"]] == ["failed"], body
    st, body = daemon.call("GET", "/v1/runs?status=succeeded&limit=2", token=None)
    assert st == 200 and [r["status"] for r in body["runs"]] == ["succeeded"] * 2, body
    st, body = daemon.call("GET", "/v1/runs?status=bogus", token=None)
    assert st == 400 and "unknown status 'bogus'" in body["error"]["message"], body


def test_ps_status_takes_several_states_on_both_paths(daemon, workdir):
    """`ps --status failed,succeeded` (or the option repeated) lists the
    newest N runs in any of those states: the same rows on both paths, and
    the API takes the same list (?status=S,T)."""
    out = {}
    for server in (None, daemon.url):
        assert run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=server).returncode == 1
        assert run_cli(workdir, ["run", "f.py", "--kind", "none", *SB], server=server).returncode == 0
        listed = run_cli(workdir, ["ps", "--status", "Failed,succeeded", "--json", "-n", "2"], server=server)
        again = run_cli(workdir, ["ps", "--status", "succeeded", "--status=failed", "--json", "-n", "2"],
                        server=server)
        assert listed.returncode == again.returncode == 0 and listed.stdout == again.stdout, (server, listed, again)
        assert [x["status"] for x in json.loads(listed.stdout)] == ["succeeded", "failed"], (server, listed.stdout)
        human = run_cli(workdir, ["ps", "--status", "cancelled,failed,killed", "-n", "1"], server=server)
        assert human.returncode == 0, human
        header, row = human.stdout.splitlines()
        out[server] = (header, row.split()[1:3], human.stderr)
    assert out[None] == out[daemon.url], out
    assert out[None][1] == ["failed", "1"], out
    st, body = daemon.call("GET", "/v1/runs?status=failed,succeeded&limit=2", token=None)
    assert st == 200 and [r["status"] for r in body["runs"]] == ["succeeded", "failed"], body
    st, body = daemon.call("GET", "/v1/runs?status=killed,failed&limit=1", token=None)
    assert st == 200 and [r["status"] for r in body["runs"]] == ["failed"], body
    for q, word in (("failed,bogus", "bogus"), ("failed,", ""), ("Failed", "Failed")):
        st, body = daemon.call("GET", f"/v1/runs?status={q}", token=None)
        assert st == 400 and f"unknown status '{word}' (queued, running," in body["error"]["message"], (q, body)


@pytest.mark.parametrize("remote", [False, True], ids=["embedded", "server"])
def test_ps_status_refuses_an_unknown_state_listing_the_valid_ones(daemon, workdir, remote):
    server = daemon.url if remote else None
    r = run_cli(workdir, ["ps", "--status", "bogus"], server=server)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == ("pysprinter: ps: unknown state 'bogus' (queued, running, succeeded, failed, invalid, "
                        "deps_failed, killed, cancelled, error, lost)\nTry 'pysprinter ps --help'.\n"), r.stderr
    r = run_cli(workdir, ["ps", "--status"], server=server)
    assert r.returncode == 2 and "--status needs a state" in r.stderr, r
    r = run_cli(workdir, ["ps", "--status", "failed,bogus"], server=server)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr.startswith("pysprinter: ps: unknown state 'bogus' (queued, "), r.stderr


# ---- a cancel while the run resolves or installs its dependencies ----------

NEEDS = '''
@requirements({'%s': ''})
def f():
    import %s
    return %s.NAME
'''


@pytest.fixture(scope="module")
def install_index(tmp_path_factory):
    """A local index whose wheels (2 MiB of random bytes each) can be served
    slowly: Index.slow[path] spreads a wheel's body over that many seconds."""
    import pkgindex
    ix = pkgindex.Index()
    ix.wheels = {}
    out = tmp_path_factory.mktemp("slow-wheels")
    for name in ("slowa", "slowb", "slowc"):
        w = pkgindex.build_wheel(out, name, "1.0", files={
            f"{name}.py": f"NAME = {name!r}\n", f"{name}_blob.bin": os.urandom(2 << 20)})
        ix.add(w)
        ix.wheels[name] = (f"/files/{w.name}", pkgindex.sha256_file(w))
    # A module whose import takes a minute: the worker that imports the
    # env's modules before its first run (its "init") waits on it.
    w = pkgindex.build_wheel(out, "slowimp", "1.0", files={
        "slowimp.py": "import time\ntime.sleep(60)\nNAME = 'slowimp'\n"})
    ix.add(w)
    ix.wheels["slowimp"] = (f"/files/{w.name}", pkgindex.sha256_file(w))
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture(scope="module")
def install_daemon(tmp_path_factory, install_index):
    from conftest import sandbox_args
    from daemonlib import Daemon
    root = tmp_path_factory.mktemp("install-daemon")
    d = Daemon(root, sandbox="none" if sandbox_args() else None, args=["--no-auth"],
               config_extra=f"index:\n  url: {install_index.url}\n")
    d.start()
    yield d
    d.stop()


def popen_ix(workdir, args, server, index):
    env = cli_env(workdir)
    env["PYSPRINTER_INDEX_URL"] = index.url
    pre = ["--server", server] if server else []
    return subprocess.Popen([str(CLI), *pre, *args], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_downloading(ix, path, p, n=1):
    """Until the index has sent some of the n-th request of path's body."""
    deadline = time.time() + 60
    while ix.requests.count(path) < n or ix.sent.get(path, 0) == 0:
        assert time.time() < deadline and p.poll() is None, (ix.requests, p.poll())
        time.sleep(0.02)


def assert_nothing_published(home, sha):
    """A cancelled install leaves no store dir of the wheel, no temp dir or
    unpacked copy and no lock held (a fresh run would wait on it); only the
    partial download (`<sha>.whl.part`, its If-Range beside it), which the
    next install resumes (docs/packages.md)."""
    store = home / "store"
    assert not (store / sha).exists()
    assert not [x for x in store.iterdir() if x.name.startswith(".tmp-")] if store.is_dir() else True
    cache = home / "cache" / "wheels"
    kept = (f"{sha}.whl.part", f"{sha}.whl.part.ifrange")
    left = [x.name for x in cache.iterdir() if x.name.startswith(sha) and x.name not in kept] \
        if cache.is_dir() else []
    assert left == [], left


def interrupt_cancels(workdir, server, p, until, limit, what):
    """Waits with until(), sends p (a foreground CLI) a Ctrl-C, and checks
    that the CLI ended within limit seconds and its run was recorded
    `cancelled`. -> (exit code, stdout, stderr's last line), the run id
    masked: what a user sees, the same on both paths."""
    try:
        until()
        assert p.poll() is None, (server, p.poll())
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        o, e = p.communicate(timeout=90)
        took = time.time() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert took < limit, (server, f"Ctrl-C took {took:.2f}s to end {what}")
    rid = newest_run(workdir, server)["id"]
    assert json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)["status"] == "cancelled"
    return p.returncode, o, e.replace(rid, "RID").splitlines()[-1:]


def test_ctrl_c_while_installing_ends_cancelled_at_once_on_both_paths(install_index, install_daemon, workdir):
    """Ctrl-C while a 2 MiB wheel trickles in over 30 s ended the run only
    once the install was over (then killed it at start): it now ends within
    a second, `cancelled`, exit 5, the same bytes embedded and against a
    daemon; nothing half-made is published, and a fresh run of the same
    requirements installs."""
    ix = install_index
    path, sha = ix.wheels["slowa"]
    (workdir / "needs_a.py").write_text(NEEDS % (("slowa",) * 3))
    ix.slow[path] = 30
    out, homes = {}, {None: workdir / "home", install_daemon.url: install_daemon.home}
    for server in (None, install_daemon.url):
        p = popen_ix(workdir, ["run", "needs_a.py", *SB], server, ix)
        n = len(out) + 1
        out[server] = interrupt_cancels(workdir, server, p, lambda: wait_downloading(ix, path, p, n=n), 2,
                                        "the install")
        assert_nothing_published(homes[server], sha)
    assert out[None] == out[install_daemon.url], out
    # What a Ctrl-C during the run phase prints, exit 130 as every verb's.
    assert out[None] == (130, "", ["pysprinter: cancelled"]), out
    del ix.slow[path]
    for server in (None, install_daemon.url):
        r = run_cli(workdir, ["run", "needs_a.py", *SB], server=server,
                    extra_env={"PYSPRINTER_INDEX_URL": ix.url})
        assert (r.returncode, r.stdout) == (0, "slowa\n"), (server, r)
        assert (homes[server] / "store" / sha).is_dir()


def test_cancel_run_while_installing_on_both_paths(install_index, install_daemon, workdir):
    """`pysprinter cancel RUN` of a run still installing answered after 10 s
    with `running` (embedded) and the run ended after the install: now the
    run ends at once, `cancelled`, and the verb says so, on both paths."""
    ix = install_index
    path, sha = ix.wheels["slowb"]
    (workdir / "needs_b.py").write_text(NEEDS % (("slowb",) * 3))
    ix.slow[path] = 30
    out = {}
    try:
        for server in (None, install_daemon.url):
            p = popen_ix(workdir, ["run", "needs_b.py", *SB], server, ix)
            try:
                wait_downloading(ix, path, p, n=len(out) + 1)
                rid = newest_run(workdir, server, "running")["id"]
                t0 = time.time()
                r = run_cli(workdir, ["cancel", rid], server=server)
                o, e = p.communicate(timeout=60)
                took = time.time() - t0
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            assert took < 3, (server, f"cancel took {took:.2f}s to end the install")
            out[server] = (r.returncode, r.stdout.replace(rid, "RID"), r.stderr, p.returncode, o,
                           e.replace(rid, "RID").splitlines()[-1:])
    finally:
        ix.slow.pop(path, None)
    assert out[None] == out[install_daemon.url], out
    assert out[None][:4] == (0, "run RID: cancelled\n", "", 5), out


def test_cancel_of_one_run_does_not_fail_another_waiting_on_the_same_install(install_index, install_daemon,
                                                                           workdir):
    """Two runs of the same requirements: the second waits on the wheel the
    first is fetching (the store's per-wheel lock). Cancelling the first
    ends it alone: the second takes the wheel over and succeeds
    (docs/cli.md "cancel")."""
    ix = install_index
    path, sha = ix.wheels["slowc"]
    (workdir / "needs_c.py").write_text(NEEDS % (("slowc",) * 3))
    for n, server in enumerate((None, install_daemon.url)):
        ix.slow[path] = 30
        first = popen_ix(workdir, ["run", "needs_c.py", *SB], server, ix)
        second = None
        try:
            wait_downloading(ix, path, first, n=2 * n + 1)
            pages = ix.requests.count("/simple/slowc/")
            second = popen_ix(workdir, ["run", "needs_c.py", *SB], server, ix)
            deadline = time.time() + 30
            while ix.requests.count("/simple/slowc/") == pages:
                assert time.time() < deadline and second.poll() is None, ix.requests
                time.sleep(0.02)
            time.sleep(1)        # the second resolved and waits on the wheel's lock
            assert ix.requests.count(path) == 2 * n + 1, "the second run fetched the wheel too"
            ix.slow[path] = 1    # the second's own fetch, once it takes the wheel over
            first.send_signal(signal.SIGINT)
            assert first.wait(timeout=60) == 130
            o, e = second.communicate(timeout=120)
        finally:
            for p in (first, second):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()
        assert (second.returncode, o) == (0, "slowc\n"), (server, o, e)
    ix.slow.pop(path, None)


def test_ctrl_c_while_the_envs_worker_imports_ends_cancelled_at_once_on_both_paths(install_index, install_daemon,
                                                                                   workdir):
    """A cold environment's worker imports the env's modules before its
    first run (docs/workers.md); one whose import takes a minute (torch
    takes seconds) held a Ctrl-C until the import was over. The start is
    now cancellable: the half-started worker is killed, the run ends
    `cancelled` within a second, exit 130, the same bytes on both paths."""
    ix = install_index
    path, sha = ix.wheels["slowimp"]
    (workdir / "needs_imp.py").write_text(NEEDS % (("slowimp",) * 3))
    out, homes = {}, {None: workdir / "home", install_daemon.url: install_daemon.home}
    for server in (None, install_daemon.url):
        p = popen_ix(workdir, ["run", "needs_imp.py", *SB], server, ix)

        def importing():
            deadline = time.time() + 60
            while not (homes[server] / "store" / sha).is_dir():
                assert time.time() < deadline and p.poll() is None, ix.requests
                time.sleep(0.05)
            time.sleep(1.5)          # installed: the env's worker is importing slowimp
        out[server] = interrupt_cancels(workdir, server, p, importing, 3, "the worker's start")
    assert out[None] == out[install_daemon.url], out
    assert out[None] == (130, "", ["pysprinter: cancelled"]), out


def test_ctrl_c_of_a_run_waiting_for_another_runs_worker_ends_it_alone(install_index, install_daemon, workdir):
    """Two runs of one env on a server: the second waits for the env's
    worker the first is starting (its import takes a minute). A Ctrl-C of
    the second ends it `cancelled` at once, while the first goes on
    starting; the first then ends on its own Ctrl-C. (The wait is woken by
    the cancel itself: docs/workers.md.)"""
    ix = install_index
    path, sha = ix.wheels["slowimp"]
    server = install_daemon.url
    (workdir / "needs_imp2.py").write_text(NEEDS % (("slowimp",) * 3))
    first = popen_ix(workdir, ["run", "needs_imp2.py", *SB], server, ix)
    second = None
    try:
        deadline = time.time() + 60
        while not (install_daemon.home / "store" / sha).is_dir():
            assert time.time() < deadline and first.poll() is None, ix.requests
            time.sleep(0.05)
        time.sleep(1.5)              # the env's worker is importing slowimp
        first_id = newest_run(workdir, server, "running")["id"]
        second = popen_ix(workdir, ["run", "needs_imp2.py", *SB], server, ix)

        def waiting():
            deadline = time.time() + 30
            while newest_run(workdir, server, "running")["id"] == first_id:
                assert time.time() < deadline and second.poll() is None
                time.sleep(0.05)
            time.sleep(1)            # validated and resolved: waits for the worker
        got = interrupt_cancels(workdir, server, second, waiting, 3, "the wait for another run's worker")
        assert got == (130, "", ["pysprinter: cancelled"]), got
        assert first.poll() is None, "the first run ended with the second"
        st = json.loads(run_cli(workdir, ["show", first_id, "--json"], server=server).stdout)["status"]
        assert st == "running", st
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=10) == 130
        st = json.loads(run_cli(workdir, ["show", first_id, "--json"], server=server).stdout)["status"]
        assert st == "cancelled", st
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_ctrl_c_while_a_deployed_functions_module_loads_ends_cancelled_at_once(install_daemon, workdir):
    """A deployed function's first invoke starts its warm instance, which
    runs the module (a top-level `import torch`: seconds; here a minute).
    Ctrl-C of that invoke waited for the module; it now kills the
    half-started instance and the run ends `cancelled`, exit 130, at once.
    A later invoke starts a new instance (the module still takes its
    minute: only the start is checked)."""
    server = install_daemon.url
    (workdir / "slowmod.py").write_text("import time\ntime.sleep(60)\n\ndef f():\n    return 1\n")
    r = run_cli(workdir, ["deploy", "slowmod.py::f", "--name", "slowmod"], server=server)
    assert r.returncode == 0, r
    env = cli_env(workdir)
    p = subprocess.Popen([str(CLI), "--server", server, "invoke", "slowmod"], cwd=workdir, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def loading():
        newest_run(workdir, server, "running")
        time.sleep(1.5)              # the instance runs the module
    got = interrupt_cancels(workdir, server, p, loading, 3, "the instance's start")
    assert got == (130, "", ["pysprinter: cancelled"]), got


def test_gc_removes_cancel_asks_of_runs_no_longer_in_flight(workdir):
    """An embedded `cancel` asks with a file, $PYSPRINTER_HOME/cancel/RUN;
    when the run's owner and the asker both died before removing it, it
    stayed forever. `gc` removes the asks of runs that ended or are not
    known at all."""
    assert run_cli(workdir, ["run", "f.py", "--kind", "none", *SB]).returncode == 0
    rid = newest_run(workdir, None)["id"]
    asks = workdir / "home" / "cancel"
    asks.mkdir(exist_ok=True)
    for name in (rid, "rnosuchrunatall"):
        (asks / name).write_text("")
    r = run_cli(workdir, ["gc"])
    assert r.returncode == 0, r
    assert sorted(p.name for p in asks.iterdir()) == [], list(asks.iterdir())


def test_a_run_that_ran_records_its_attempt_on_both_paths(daemon, workdir):
    """`show --json` of a run that ran says attempt 1 of its attempts on
    both paths (docs/api.md: 0 is "never started"); embedded recorded 0
    of 1, which read as a run never started and never to be run again."""
    (workdir / "once.py").write_text("def f():\n    return 1\n")
    seen = []
    for server in (None, daemon.url):
        run_cli(workdir, ["run", "once.py", *SB], server=server)
        rid = newest_run(workdir, server)["id"]
        rec = json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)
        seen.append((rec["status"], rec["attempt"], rec["max_attempts"]))
    assert seen[0] == seen[1] == ("succeeded", 1, 3), seen


def test_ps_q_prints_the_ids_alone_for_a_shell_on_both_paths(daemon, workdir):
    """`ps -q` (as `docker ps -q`): one id per line, nothing else, the same
    runs as the table lists; `logs $(ps -q -n 1)` replays the newest run.
    Before, -q was the global "quiet" and ps printed its whole table."""
    for server in (None, daemon.url):
        assert run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=server).returncode == 1
        assert run_cli(workdir, ["run", "f.py", "--kind", "none", *SB], server=server).returncode == 0
        table = run_cli(workdir, ["ps", "-n", "2"], server=server)
        for q in ("-q", "--quiet"):
            ids = run_cli(workdir, ["ps", q, "-n", "2"], server=server)
            assert ids.returncode == 0 and ids.stderr == "", (server, ids)
            assert ids.stdout.splitlines() == [row.split()[0] for row in table.stdout.splitlines()[1:]], (server, ids)
        failed = run_cli(workdir, ["ps", "-q", "--status", "failed", "-n", "1"], server=server).stdout.split()
        assert len(failed) == 1
        shown = json.loads(run_cli(workdir, ["show", failed[0], "--json"], server=server).stdout)
        assert shown["status"] == "failed", shown
        # --json wins over -q: the run objects.
        both = json.loads(run_cli(workdir, ["ps", "-q", "--json", "-n", "1"], server=server).stdout)
        newest = run_cli(workdir, ["ps", "-q", "-n", "1"], server=server).stdout.split()
        assert [r["id"] for r in both] == newest and both[0]["status"] == "succeeded", (server, both)


def test_the_other_lists_take_q_too_on_both_paths(daemon, workdir):
    """`dag ls -q` the DAG runs' ids, `data ls -q` the datasets' names,
    `data ls NAME -q` each version as `data get` names it (NAME@V),
    `secret ls -q` the secrets' names: the same keys as the tables' first
    column, nothing on stderr, the same bytes on both paths."""
    (workdir / "qdata.txt").write_text("q\n")
    out = {}
    for server in (None, daemon.url):
        assert run_cli(workdir, ["dag", "run", "pipe.yaml", *SB], server=server).returncode == 0
        for _ in range(2):
            assert run_cli(workdir, ["data", "put", "qset", "qdata.txt"], server=server).returncode == 0
        assert run_cli(workdir, ["secret", "set", "Q_SECRET"], server=server, input="v\n").returncode == 0
        got = {}
        for args in (["dag", "ls", "-n", "1"], ["data", "ls"], ["data", "ls", "qset"], ["secret", "ls"]):
            table = run_cli(workdir, args, server=server)
            quiet = run_cli(workdir, [*args, "-q"], server=server)
            assert table.returncode == quiet.returncode == 0 and quiet.stderr == "", (server, args, quiet)
            rows = [row.split()[0] for row in table.stdout.splitlines()[1:]]
            want = [f"qset@{v}" for v in rows] if args == ["data", "ls", "qset"] else rows
            assert quiet.stdout.splitlines() == want, (server, args, table.stdout, quiet.stdout)
            got[tuple(args)] = quiet.stdout if args[0] != "dag" else len(quiet.stdout.split())
        assert "qset\n" in got[("data", "ls")] and "Q_SECRET\n" in got[("secret", "ls")], got
        out[server] = got
    assert out[None] == out[daemon.url], out
