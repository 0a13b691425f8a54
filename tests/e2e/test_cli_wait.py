"""`pysprinter wait RUN…`: a detached run's end, printed as its own `run`
would have printed it, with the exit code `run` would have given — the
same bytes embedded and against a daemon. Before, a detached run's
outcome was `show RUN --json | jq .exit_code` and its result a copy out
of that record. The fixtures are test_cli_parity.py's."""
import json
import signal
import time

import pytest

from test_cli_parity import SB, daemon, run_cli, workdir  # noqa: F401 (fixtures)
from test_cli_runs_parity import SLOW, popen

PATHS = pytest.mark.parametrize("remote", [False, True], ids=["embedded", "server"])


def detach(workdir, server, *args):
    r = run_cli(workdir, ["run", *args, "--detach", *SB], server=server)
    assert r.returncode == 0 and r.stdout.strip(), r
    return r.stdout.strip()


def foreground(workdir, server, *args):
    """A foreground run's stdout without the function's own lines, its
    stderr's last line and its exit code: what wait is to print."""
    r = run_cli(workdir, ["run", *args, *SB], server=server)
    out = "".join(ln for ln in r.stdout.splitlines(keepends=True) if not ln.startswith(("hello", "started", "done")))
    err = [ln for ln in r.stderr.splitlines() if "--sandbox" not in ln]  # the submit's notes, not the end
    return out, err[-1] if err else "", r.returncode


@pytest.mark.parametrize("kind", ["dict", "float", "raise", "complex"])
def test_wait_prints_what_the_run_would_have_printed_on_both_paths(daemon, workdir, kind):
    seen = {}
    for server in (None, daemon.url):
        rid = detach(workdir, server, "f.py", "--kind", kind)
        w = run_cli(workdir, ["wait", rid], server=server)
        last = w.stderr.splitlines()[-1] if w.stderr.strip() else ""
        assert (w.stdout, last, w.returncode) == foreground(workdir, server, "f.py", "--kind", kind), (server, w)
        assert "hello from f" not in w.stdout + w.stderr, w  # the output is `logs`'
        seen[server] = (w.stdout, w.stderr, w.returncode)
    assert seen[None] == seen[daemon.url], seen
    assert seen[None][2] == (1 if kind == "raise" else 0), seen


@PATHS
def test_wait_gives_an_invalid_runs_error_and_exit_3(daemon, workdir, remote):
    server = daemon.url if remote else None
    rid = detach(workdir, server, "f.py", "--nope", "1")
    w = run_cli(workdir, ["wait", rid], server=server)
    assert w.returncode == 3 and w.stdout == "" and "unexpected keyword argument 'nope'" in w.stderr, w


@PATHS
def test_wait_on_several_runs_waits_for_all_and_exits_with_the_first_failure(daemon, workdir, remote):
    server = daemon.url if remote else None
    (workdir / "slow.py").write_text(SLOW)
    ok = detach(workdir, server, "slow.py", "--x", "7", "--n", "1")
    bad = detach(workdir, server, "f.py", "--kind", "raise")
    w = run_cli(workdir, ["wait", ok, bad, "--json"], server=server)
    assert w.returncode == 1 and w.stdout == '"7"\n' and "ValueError: nope" in w.stderr, w
    shown = json.loads(run_cli(workdir, ["show", ok, "--json"], server=server).stdout)
    assert shown["status"] == "succeeded", shown


@PATHS
def test_wait_of_a_cancelled_run_exits_as_its_run_did(daemon, workdir, remote):
    server = daemon.url if remote else None
    (workdir / "slow.py").write_text(SLOW)
    rid = detach(workdir, server, "slow.py", "--n", "60")
    p = popen(workdir, ["wait", rid], server)
    time.sleep(1)
    assert p.poll() is None  # still waiting
    assert run_cli(workdir, ["cancel", rid], server=server).returncode == 0
    out, err = p.communicate(timeout=60)
    shown = json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)
    assert shown["status"] == "cancelled" and p.returncode == shown["exit_code"], (p.returncode, out, err, shown)
    assert out == "" and "cancelled" in err, (out, err)


@PATHS
def test_ctrl_c_stops_waiting_and_leaves_the_run_running(daemon, workdir, remote):
    server = daemon.url if remote else None
    (workdir / "slow.py").write_text(SLOW)
    rid = detach(workdir, server, "slow.py", "--x", "3", "--n", "4")
    p = popen(workdir, ["wait", rid], server)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and out == "", (p.returncode, out, err)
    w = run_cli(workdir, ["wait", rid], server=server)
    assert w.returncode == 0 and w.stdout == "3\n", w  # not JSON: a string as itself


@PATHS
def test_wait_refuses_what_names_no_run(daemon, workdir, remote):
    server = daemon.url if remote else None
    w = run_cli(workdir, ["wait", "nosuchrun"], server=server)
    assert w.returncode == 2 and "no run 'nosuchrun'" in w.stderr and w.stdout == "", w
    assert run_cli(workdir, ["wait"], server=server).returncode == 2
    assert run_cli(workdir, ["wait", "--bogus"], server=server).returncode == 2
    h = run_cli(workdir, ["wait", "--help"], server=server)
    assert h.returncode == 0 and h.stdout.startswith("Usage: pysprinter wait RUN"), h
