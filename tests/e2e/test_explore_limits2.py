"""Limits, second pass: what a run in flight shows, what an operator's
config grants, and how a limit hit is spelled (docs/sandbox.md "Limits",
docs/operations.md, docs/api.md "The run object")."""
import pytest

from conftest import same, sandbox_args
from daemonlib import Daemon, sandbox_mode


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-limits2")
    with Daemon(root / "d", sandbox=sandbox_mode(root)).serving() as d:
        yield d


def test_a_time_limit_is_spelled_exactly(cli, both):
    """A time limit was spelt to three significant digits while validating
    (`--timeout 1001ms` on a file whose validation outlasts it: "time
    limit (1s) while validating big.py", a limit the run did not have) and
    to six while running (%g: a 1000.001 s timeout said "1000s"). One
    formatter now, exact to the millisecond, embedded and through a
    server alike, as the memory and output limits are."""
    if sandbox_args():
        pytest.skip("limits are the sandbox's")
    # Some MiB of statements: validating them takes seconds.
    cli.write("big.py", "def f():\n    return 1\n" + "".join(
        f"v{i} = [" + ",".join(str(j) for j in range(60)) + "]\n" for i in range(20000)))
    r = same(*both("run", "big.py", "--timeout", "1001ms", "--memory", "4G"))
    assert (r.returncode, r.stdout, r.stderr) == (5, "", "pysprinter: time limit (1.001s) while validating big.py\n")
    cli.write("nap.py", "def f():\n    import time\n    time.sleep(30)\n")
    r = same(*both("run", "nap.py", "--timeout", "1234ms"))
    assert (r.returncode, r.stdout, r.stderr) == (5, "", "pysprinter: time limit (1.234s)\n")


def test_a_started_run_does_not_show_the_queued_phase(daemon):
    """The 202 of POST /v1/runs (and of an invoke) said `"status":
    "running"` with `"phase": "queued"`: the daemon answers a run it starts
    at once as running, while the phase was the one a run is made with
    until the engine's first phase event. A client polling on the phase
    read "queued" for a run it was told runs. A running run shows a
    phase a running run has."""
    src = "def f():\n    import time\n    time.sleep(0.5)\n    return 1\n"
    st, _ = daemon.call("POST", "/v1/functions", {"name": "ph", "source": src, "filename": "ph.py"})
    assert st in (200, 201)
    seen = []
    for i in range(6):
        st, out = (daemon.call("POST", "/v1/runs", {"source": src}) if i % 2 == 0
                   else daemon.call("POST", "/v1/functions/ph/invoke", {}))
        assert st == 202, out
        seen.append((out["status"], out.get("phase")))
        st, got = daemon.call("GET", f"/v1/runs/{out['id']}")
        seen.append((got["status"], got.get("phase")))
        daemon.wait_status(out["id"], ["succeeded"])
    assert [s for s in seen if s[1] == "queued" and s[0] != "queued"] == [], seen


def test_a_tenant_maximum_above_the_global_one_is_warned_about(tmp_path):
    """`tenants.bob.maxima.timeout_ms: 900000` under `limits.maxima:
    {timeout_ms: 600000}` passed --check-config and a start without a word,
    and bob's runs were capped at 600000: a tenant's maxima only lower the
    global ones (docs/api.md "Limits"), where the operator meant to grant
    bob more. --check-config, a start and a SIGHUP reload warn on stderr,
    naming both keys and the cap that holds; the config still loads."""
    import signal
    import subprocess
    from conftest import DAEMON
    text = ("limits:\n  maxima: {timeout_ms: 600000, memory_bytes: 1073741824}\n"
            "tenants:\n  bob:\n    maxima: {timeout_ms: 900000, memory_bytes: 536870912}\n")
    warning = ("'tenants.bob.maxima.timeout_ms' (900000) is above 'limits.maxima.timeout_ms' (600000): a tenant's "
               "maxima only lower the global ones, so bob's runs get at most 600000; raise "
               "'limits.maxima.timeout_ms' to grant more")
    (tmp_path / "c.yaml").write_text(text)
    r = subprocess.run([str(DAEMON), "--check-config", "c.yaml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "c.yaml: ok\n", f"pysprinterd: warning: c.yaml:5: {warning}\n")
    d = Daemon(tmp_path / "d", config_extra=text)
    with d.serving():
        assert d.log.read_text().count(warning) == 1, d.log.read_text()
        d.proc.send_signal(signal.SIGHUP)
        st, out = d.call("POST", "/v1/runs?wait=true", {"source": "def f():\n    return 1\n"}, token="bob")
        assert st == 200, out
        import time
        deadline = time.time() + 30
        while d.log.read_text().count(warning) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert d.log.read_text().count(warning) == 2, d.log.read_text()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_timed_out_unsandboxed_run_takes_its_new_session_children_along(cli, tmp_path):
    """With --sandbox=none a run's timeout killed its process group only: a
    subprocess started in a session of its own (`start_new_session=True`,
    `setsid`) outlived the run, for good, embedded and in a daemon alike.
    The kill takes the run's descendants now, whatever their session."""
    import os
    import signal
    import time
    from daemonlib import TOKENS
    cli.write("esc.py", "def f():\n    import subprocess, time\n"
                        "    p = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                        "    print(p.pid, flush=True)\n    time.sleep(60)\n")
    pids = []
    try:
        r = cli("run", "esc.py", "--timeout", "2s", "--sandbox=none")
        assert r.returncode == 5, r.stderr
        pids.append(int(r.stdout.split()[0]))
        with Daemon(tmp_path / "d", sandbox="none").serving() as d:
            r = cli("run", "esc.py", "--timeout", "2s", "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
            assert r.returncode == 5, r.stderr
            pids.append(int(r.stdout.split()[0]))
            deadline = time.time() + 30  # a guard: the kill is at the timeout
            while any(_alive(p) for p in pids) and time.time() < deadline:
                time.sleep(0.1)
            assert [p for p in pids if _alive(p)] == []
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
