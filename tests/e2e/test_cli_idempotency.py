"""`--idempotency-key KEY` on run, run --detach and invoke (docs/cli.md
"Idempotency keys"): a second submit of a key starts nothing and shows the
key's first run. Embedded (the CLI's own store) and against a real
pysprinterd (the Idempotency-Key header, docs/api.md "Idempotency") the
user reads the same bytes and exit codes, and `pysprinter ps` lists one
run; a bad key is refused alike, exit 2, before anything starts."""
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import CLI, DAEMON, WORKER, sandbox_args
from daemonlib import Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

FUNCS = '''
import time
def f(tag: str = "x", seconds: float = 0, fail: bool = False):
    print("hello", tag)
    time.sleep(seconds)
    if fail:
        raise ValueError("nope " + tag)
    return tag
'''

SB = ["--sandbox=none"]


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", sandbox="none" if sandbox_args() else None, args=["--no-auth"])
    d.start()
    yield d
    d.stop()


@pytest.fixture
def workdir(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "f.py").write_text(FUNCS)
    (w / "home").mkdir()
    return w


def cli(workdir, args, server=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env["PYSPRINTER_HOME"] = str(workdir / "home")
    env["PYSPRINTER_WORKER"] = str(WORKER)
    env["NO_COLOR"] = "1"
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, cwd=workdir,
                          timeout=120)


def run(workdir, server, *args):
    return cli(workdir, ["run", "f.py", *args, *SB], server)


def stderr_of(r):
    """stderr without the sandbox notes, which differ by design (a
    server's sandbox is its own), and with run ids as ID."""
    return "\n".join(re.sub(r"\br[0-9a-z]{15,}\b", "ID", ln) for ln in r.stderr.splitlines()
                     if "--sandbox" not in ln)


def listed(workdir, server):
    ps = cli(workdir, ["ps", "--json"], server)
    assert ps.returncode == 0, ps
    return [r["id"] for r in json.loads(ps.stdout)]


def both(daemon, workdir, scenario):
    """scenario(server) on both paths -> {path: its value}; each path has
    its own runs (the embedded home, the daemon's store)."""
    return {p: scenario(s) for p, s in (("embedded", None), ("daemon", daemon.url))}


def same(results):
    """The same exit code, stdout and stderr (ids aside) on both paths."""
    a, b = results["embedded"], results["daemon"]

    def seen(r):
        return r.returncode, re.sub(r"\br[0-9a-z]{15,}\b", "ID", r.stdout), stderr_of(r)
    assert seen(a) == seen(b), (a, b)


def test_a_key_names_one_run_on_both_paths(daemon, workdir):
    def scenario(server):
        first = run(workdir, server, "--tag", "one", "--idempotency-key", "order-42")
        again = run(workdir, server, "--tag", "two", "--idempotency-key", "order-42")
        detached = run(workdir, server, "--tag", "three", "--detach", "--idempotency-key", "order-42")
        runs = listed(workdir, server)
        other = run(workdir, server, "--tag", "four", "--idempotency-key", "order-43")
        none = run(workdir, server, "--tag", "five")
        return first, again, detached, runs, other, none, listed(workdir, server)
    got = both(daemon, workdir, scenario)
    for path, (first, again, detached, runs, other, none, after) in got.items():
        assert (first.returncode, first.stdout) == (0, "hello one\none\n"), (path, first)
        # the first run again, whatever the second command asked
        assert (again.returncode, again.stdout) == (0, "hello one\none\n"), (path, again)
        assert len(runs) == 1 and detached.returncode == 0 and detached.stdout == runs[0] + "\n", (path, detached)
        assert other.stdout == "hello four\nfour\n" and none.stdout == "hello five\nfive\n"
        assert len(after) == 3 and after[-1] == runs[0], (path, after)
    for i in (0, 1, 2, 4, 5):
        same({p: v[i] for p, v in got.items()})


def test_a_failed_run_is_shown_again_with_its_exit_code(daemon, workdir):
    def scenario(server):
        first = run(workdir, server, "--tag", "bad", "--fail", "true", "--idempotency-key", "fails")
        again = run(workdir, server, "--idempotency-key", "fails")
        return first, again, listed(workdir, server)
    got = both(daemon, workdir, scenario)
    for path, (first, again, runs) in got.items():
        assert first.returncode == again.returncode == 1, (path, first, again)
        assert "ValueError: nope bad" in again.stderr and stderr_of(first) == stderr_of(again), (path, first, again)
        assert first.stdout == again.stdout == "hello bad\n"
        assert len(runs) == 1
    same({p: v[0] for p, v in got.items()})
    same({p: v[1] for p, v in got.items()})


def test_a_resubmission_while_the_first_runs_waits_for_its_end(daemon, workdir):
    """The second command attaches to the running first run: its output
    from the start, then its result, as the first command prints them."""
    def scenario(server):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
        pre = ["--server", server] if server else []
        p = subprocess.Popen([str(CLI), *pre, "run", "f.py", "--tag", "slow", "--seconds", "2",
                              "--idempotency-key", "slow-1", *SB], cwd=workdir, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not listed(workdir, server):
            assert time.time() < deadline and p.poll() is None
            time.sleep(0.05)
        t0 = time.monotonic()
        again = run(workdir, server, "--tag", "fast", "--idempotency-key", "slow-1")
        waited = time.monotonic() - t0
        out, err = p.communicate(timeout=60)
        first = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        return first, again, waited, listed(workdir, server)
    got = both(daemon, workdir, scenario)
    for path, (first, again, waited, runs) in got.items():
        assert first.returncode == again.returncode == 0, (path, first, again)
        assert first.stdout == again.stdout == "hello slow\nslow\n", (path, first, again)
        assert stderr_of(first) == stderr_of(again) and waited > 0.5, (path, first, again, waited)
        assert len(runs) == 1
    same({p: v[1] for p, v in got.items()})


def test_racing_commands_start_one_run_embedded(workdir):
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        outs = list(ex.map(lambda i: run(workdir, None, "--tag", f"t{i}", "--seconds", "0.5",
                                         "--idempotency-key", "race"), range(6)))
    assert all(r.returncode == 0 for r in outs), outs
    assert len({r.stdout for r in outs}) == 1, outs
    assert len(listed(workdir, None)) == 1


BAD_KEYS = ["", "x" * 201, "two words", "tab\there", "caf\u00e9", " lead"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=["empty", "long", "space", "tab", "non-ascii", "lead-space"])
def test_a_bad_key_is_refused_alike(daemon, workdir, key):
    got = both(daemon, workdir, lambda s: (run(workdir, s, "--idempotency-key", key), listed(workdir, s)))
    for path, (r, runs) in got.items():
        assert r.returncode == 2 and r.stdout == "", (path, r)
        assert r.stderr.startswith("pysprinter: --idempotency-key takes 1..200 visible ASCII characters "
                                   "(no spaces)\n"), (path, r.stderr)
        assert runs == []
    same({p: v[0] for p, v in got.items()})


def test_the_longest_key_is_taken(daemon, workdir):
    key = "k" * 200
    got = both(daemon, workdir, lambda s: [run(workdir, s, "--tag", t, "--idempotency-key", key) for t in "ab"])
    for path, (a, b) in got.items():
        assert a.stdout == b.stdout == "hello a\na\n", (path, a, b)


def test_verbs_that_start_no_single_run_refuse_a_key(workdir):
    for args, says in [(["validate", "f.py"], "--idempotency-key is run's and invoke's: a validation"),
                       (["lock", "f.py"], "--idempotency-key is run's and invoke's: a validation"),
                       # Embedded only: with --server a chain takes one
                       # (test_explore_leads2.py).
                       (["chain", "f.py", "f.py"], "chain: --idempotency-key needs --server URL"),
                       (["invoke", "fn", "--payload", "{}"], "--idempotency-key cannot go with --payload")]:
        r = cli(workdir, [*args, "--idempotency-key", "k"])
        assert r.returncode == 2 and says in r.stderr, (args, r)


def test_invoke_honours_the_key(daemon, workdir):
    d = cli(workdir, ["deploy", "f.py", "--name", "fn"], daemon.url)
    assert d.returncode == 0, d
    a = cli(workdir, ["invoke", "fn", "--tag", "one", "--idempotency-key", "inv-1"], daemon.url)
    b = cli(workdir, ["invoke", "fn", "--tag", "two", "--idempotency-key", "inv-1"], daemon.url)
    c = cli(workdir, ["invoke", "fn", "--tag", "two", "--idempotency-key", "inv-2", "--detach"], daemon.url)
    e = cli(workdir, ["invoke", "fn", "--tag", "three", "--idempotency-key", "inv-2", "--detach"], daemon.url)
    assert a.stdout == b.stdout == "hello one\none\n" and a.returncode == b.returncode == 0, (a, b)
    assert c.returncode == e.returncode == 0 and c.stdout == e.stdout, (c, e)
    assert len(listed(workdir, daemon.url)) == 2
    # Embedded, invoke needs a server, with a key or without.
    x = cli(workdir, ["invoke", "fn", "--idempotency-key", "inv-1"])
    y = cli(workdir, ["invoke", "fn"])
    assert x.returncode == y.returncode != 0 and x.stderr == y.stderr, (x, y)


def test_a_run_refused_before_it_started_is_shown_again(daemon, workdir):
    """An unknown dataset: the keyed run is recorded ended with why, on
    both paths, and the key shows it again rather than starting another."""
    def scenario(server):
        first = run(workdir, server, "--data", "nope", "--idempotency-key", "refused-1")
        again = run(workdir, server, "--idempotency-key", "refused-1")
        return first, again, cli(workdir, ["ps", "--json"], server)
    got = both(daemon, workdir, scenario)
    for path, (first, again, ps) in got.items():
        assert first.returncode == again.returncode == 3, (path, first, again)
        assert "nope" in first.stderr and "nope" in again.stderr, (path, first, again)
        [rec] = json.loads(ps.stdout)
        assert rec["status"] == "error" and rec["exit_code"] == 3, (path, rec)
    same({p: v[1] for p, v in got.items()})


def test_json_output_of_a_resubmission_matches(daemon, workdir):
    def scenario(server):
        first = run(workdir, server, "--tag", "j", "--json", "--idempotency-key", "json-1")
        again = run(workdir, server, "--tag", "k", "--json", "--idempotency-key", "json-1")
        det = run(workdir, server, "--detach", "--json", "--idempotency-key", "json-1")
        return first, again, det
    got = both(daemon, workdir, scenario)
    for path, (first, again, det) in got.items():
        assert first.stdout == again.stdout == '"j"\n' and first.returncode == again.returncode == 0, (path, again)
        obj = json.loads(det.stdout)
        assert obj["status"] == "succeeded" and obj["result"] == "j", (path, obj)
    same({p: v[1] for p, v in got.items()})
    keys = {p: set(json.loads(v[2].stdout)) - {"phase"} for p, v in got.items()}
    assert keys["embedded"] == keys["daemon"], keys


def test_ctrl_c_of_a_resubmission_cancels_the_run_it_shows(daemon, workdir):
    """As Ctrl-C of the command that started it would: exit 130, the run
    ends cancelled — on both paths (the server's stream is cancelled with
    DELETE /v1/runs/ID)."""
    def scenario(server):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
        pre = ["--server", server] if server else []
        argv = [str(CLI), *pre, "run", "f.py", "--seconds", "30", "--idempotency-key", "intr-1", *SB]
        first = subprocess.Popen(argv, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not listed(workdir, server):
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        again = subprocess.Popen(argv, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        time.sleep(1.0)
        again.send_signal(signal.SIGINT)
        a_out, a_err = again.communicate(timeout=60)
        f_out, f_err = first.communicate(timeout=60)
        ps = json.loads(cli(workdir, ["ps", "--json"], server).stdout)
        return again.returncode, first.returncode, ps
    got = both(daemon, workdir, scenario)
    for path, (again_rc, first_rc, ps) in got.items():
        assert again_rc == 130, (path, again_rc)
        assert len(ps) == 1 and ps[0]["status"] == "cancelled", (path, ps)
    assert got["embedded"][1] == got["daemon"][1], got


def test_a_detached_resubmission_of_an_ended_run_says_it_ended(daemon, workdir):
    """`run --detach` with the key of a run that has ended said the run
    "goes on detached". It prints the id alone on stdout, as any
    `--detach` does (scripts capture it), exits 0 (the submit was
    answered, as the first one was), and says on stderr that the run has
    ended, how, and where to read it; a run of the key still going is
    still said to go on (docs/cli.md "--idempotency-key")."""
    def scenario(server):
        first = run(workdir, server, "--tag", "done", "--idempotency-key", "ended-1")
        ok = run(workdir, server, "--detach", "--idempotency-key", "ended-1")
        bad = run(workdir, server, "--fail", "true", "--idempotency-key", "ended-2")
        failed = run(workdir, server, "--detach", "--idempotency-key", "ended-2")
        going = run(workdir, server, "--seconds", "30", "--detach", "--idempotency-key", "going-1")
        still = run(workdir, server, "--detach", "--idempotency-key", "going-1")
        assert cli(workdir, ["cancel", going.stdout.strip()], server).returncode == 0
        return first, ok, bad, failed, going, still
    got = both(daemon, workdir, scenario)
    for path, (first, ok, bad, failed, going, still) in got.items():
        assert first.returncode == 0 and bad.returncode == 1, (path, first, bad)
        for r, status in ((ok, "succeeded, exit 0"), (failed, "failed, exit 1")):
            rid = r.stdout.strip()
            assert r.returncode == 0 and re.fullmatch(r"r[0-9a-z]{15,}\n", r.stdout), (path, r)
            assert stderr_of(r).splitlines()[-1] == (
                f"pysprinter: run ID of this idempotency key already ended ({status}): `pysprinter logs ID` "
                "shows its output, `pysprinter show ID` tells how it ended"), (path, r.stderr)
            assert rid in r.stderr
        assert still.stdout == going.stdout and "goes on detached" in still.stderr, (path, still)
    for i in range(6):
        same({p: v[i] for p, v in got.items()})
