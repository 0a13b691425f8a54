"""Every verb twice: embedded and against a real pysprinterd on loopback.
The user must get the same stdout, the same first line of stderr and the
same exit code (issue 11). Plus one test per CLI friction the issue names."""
import json
import re
import os
import pathlib
import signal
import subprocess

import pytest

from conftest import CLI, WORKER, run_on_pty, sandbox_args
from daemonlib import TOKENS, Daemon, free_port
from proctree import no_process_left, processes_in

FUNCS = '''
def f(kind: str = "float"):
    print("hello from f")
    if kind == "float": return 0.1
    if kind == "huge_float": return 1e300
    if kind == "bigint": return 10**30
    if kind == "unicode": return "é✓"
    if kind == "dict": return {"a": [1, 2.5], "é": None}
    if kind == "list": return [1, "two", 3.0]
    if kind == "none": return None
    if kind == "complex": return 1+2j  # no JSON view (a set has one now: docs/python.md)
    if kind == "raise": raise ValueError("nope")
    if kind == "sleep":
        import time
        time.sleep(30)
    return kind
'''

PIPELINE = '''
name: parity
tasks:
  one:
    file: step.py
    function: one
  two:
    file: step.py
    function: two
    args: ["${one}"]
'''

STEP = '''
def one():
    return 0.1

def two(x):
    return [x, 10]
'''


@pytest.fixture(scope="module")
def daemon(parity_daemon):
    return parity_daemon


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    w = tmp_path_factory.mktemp("parity-work")
    (w / "f.py").write_text(FUNCS)
    (w / "step.py").write_text(STEP)
    (w / "pipe.yaml").write_text(PIPELINE)
    (w / "words.txt").write_text("alpha beta\n")
    (w / "bad.yaml").write_text("tasks:\n  a: {file: step.py, function: one, args: ['${nope}']}\n")
    (w / "fail.yaml").write_text("tasks:\n  a: {file: f.py, kwargs: {kind: raise}}\n")
    (w / "home").mkdir()
    return w


def run_cli(workdir, args, server=None, input=None, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env["PYSPRINTER_HOME"] = str(workdir / "home")
    env["PYSPRINTER_WORKER"] = str(WORKER)
    env["NO_COLOR"] = "1"
    env.update(extra_env or {})
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, cwd=workdir,
                          input=input, timeout=120)


def first_line(s):
    return s.splitlines()[0] if s.strip() else ""


SB = ["--sandbox=none"]
CASES = {
    "float": ["run", "f.py", "--kind", "float"],
    "float_json": ["run", "f.py", "--kind", "float", "--json"],
    "huge_float": ["run", "f.py", "--kind", "huge_float"],
    "bigint": ["run", "f.py", "--kind", "bigint"],
    "bigint_json": ["run", "f.py", "--kind", "bigint", "--json"],
    "unicode": ["run", "f.py", "--kind", "unicode"],
    "unicode_json": ["run", "f.py", "--kind", "unicode", "--json"],
    "dict": ["run", "f.py", "--kind", "dict"],
    "list_json": ["run", "f.py", "--kind", "list", "--json"],
    "none": ["run", "f.py", "--kind", "none"],
    "complex": ["run", "f.py", "--kind", "complex"],
    "raise": ["run", "f.py", "--kind", "raise"],
    "timeout": ["run", "f.py", "--kind", "sleep", "--timeout", "1s"],
    "no_network": ["run", "f.py", "--kind", "dict", "--no-network", "--json"],
    "validate": ["validate", "f.py", "--kind", "x"],
    "validate_bad_kwarg": ["validate", "f.py", "--nope", "x"],
    "validate_json": ["validate", "f.py", "--kind", "x", "--json"],
    "validate_json_invalid": ["validate", "f.py", "--nope", "x", "--json"],
    "chain": ["chain", "step.py::one", "step.py::two"],
    "chain_json": ["chain", "step.py::one", "step.py::two", "--json"],
    "dag": ["dag", "run", "pipe.yaml"],
    "dag_invalid": ["dag", "run", "bad.yaml"],
    "dag_failed_task": ["dag", "run", "fail.yaml"],
    # A name with a '/' reached the API as another path ("no such endpoint").
    "data0_put_bad_name": ["data", "put", "bad/name", "words.txt"],
    "secret_rm_missing": ["secret", "rm", "NOPE_SECRET"],
    # In order (sorted names): a put, the same content again, then get.
    "data1_put": ["data", "put", "words", "words.txt"],
    "data2_put_again": ["data", "put", "words", "words.txt", "--json"],
    "data3_get": ["data", "get", "words"],
    "data4_get_missing": ["data", "get", "nope"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verb_gives_the_same_output_embedded_and_remote(daemon, workdir, case):
    args = CASES[case]
    if args[0] in ("run", "chain") or args[:2] == ["dag", "run"]:
        args = args + SB
    local = run_cli(workdir, args)
    remote = run_cli(workdir, args, server=daemon.url)
    # The sandbox notes differ by design (a server's sandbox is its own);
    # everything after them must not.
    # A DAG's header names its id and durations vary: compare the rest
    # (a task polled on a server between its start and end still prints
    # its "running" line, as embedded).
    def strip(err):
        lines = [re.sub(r" [0-9.]+m?s\b", "", l) for l in err.splitlines()
                 if "--sandbox" not in l and not l.startswith("dag ")]
        return "\n".join(re.sub(r"\bd[0-9a-z]{15,}\b", "ID", l) for l in lines)
    assert local.returncode == remote.returncode, (local, remote)
    assert local.stdout == remote.stdout, (local, remote)
    assert strip(local.stderr) == strip(remote.stderr), (local.stderr, remote.stderr)


def test_show_and_ps_print_the_same_run_object_embedded_and_remote(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", "--kind", "float", *SB], server=server)
        assert r.returncode == 0, r
    runs = {}
    for server in (None, daemon.url):
        ps = run_cli(workdir, ["ps", "--json", "-n", "1"], server=server)
        assert ps.returncode == 0, ps
        [run] = json.loads(ps.stdout)
        show = run_cli(workdir, ["show", run["id"], "--json"], server=server)
        assert json.loads(show.stdout) == run
        runs[server] = run
    a, b = runs[None], runs[daemon.url]
    assert set(a) >= {"id", "status", "exit_code", "filename", "function", "args", "kwargs", "result",
                      "result_repr", "error", "created_at", "finished_at"}
    assert set(a) - {"phase"} == set(b) - {"phase"}
    assert a["result"] == b["result"] == 0.1
    assert '"result":0.1,' in run_cli(workdir, ["show", a["id"], "--json"]).stdout
    # The human view: same columns on both paths, no internal timings.
    hl = run_cli(workdir, ["show", a["id"]]).stdout
    hr = run_cli(workdir, ["show", b["id"]], server=daemon.url).stdout
    assert [l.split(":")[0] for l in hl.splitlines()] == [l.split(":")[0] for l in hr.splitlines()]
    assert "ms" not in hl.replace("duration", "") or "c=" not in hl
    assert "timings" not in hl and "kind" in hl
    assert run_cli(workdir, ["ps"]).stdout.splitlines()[0] == run_cli(workdir, ["ps"], server=daemon.url).stdout.splitlines()[0]


def test_global_options_are_accepted_before_the_verb(daemon, workdir):
    r = run_cli(workdir, ["--json", "run", "f.py", "--kind", "unicode", *SB], server=daemon.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '"é✓"\n'


def test_run_json_sends_the_function_stdout_to_stderr(workdir):
    r = run_cli(workdir, ["run", "f.py", "--kind", "dict", "--json", *SB])
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"a": [1, 2.5], "é": None}
    assert "hello from f" in r.stderr


def test_run_json_of_a_failed_run_prints_nothing_on_stdout_on_both_paths(daemon, workdir):
    """--json's one JSON document is the result: a run that raised has
    none, so stdout stays empty (the function's own print went to stderr
    with the traceback), and the exit code says it raised."""
    out = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", "--kind", "raise", "--json", *SB], server=server)
        assert r.returncode == 1 and r.stdout == "", r
        assert "hello from f" in r.stderr and "ValueError: nope" in r.stderr, r.stderr
        out[server] = [l for l in r.stderr.splitlines() if "--sandbox" not in l]
    assert out[None] == out[daemon.url]


def test_validate_json_prints_the_validations_answer_on_both_paths(daemon, workdir):
    """`validate --json` printed "f.py: ok (f)", not JSON. It prints the
    answer of POST /v1/validate, valid or not (an invalid one's message is
    on stderr too, and the exit code is 3)."""
    for server in (None, daemon.url):
        ok = run_cli(workdir, ["validate", "f.py", "--kind", "x", "--json"], server=server)
        assert ok.returncode == 0, ok
        assert json.loads(ok.stdout) == {"valid": True, "exit_code": 0, "status": "succeeded", "function": "f",
                                         "parameters": ["kind"], "signature": "f(kind: str = 'float')", "doc": None,
                                         "error": None}, ok.stdout
        bad = run_cli(workdir, ["validate", "f.py", "--nope", "x", "--json"], server=server)
        assert bad.returncode == 3, bad
        ans = json.loads(bad.stdout)
        assert ans["valid"] is False and ans["exit_code"] == 3 and ans["error"]["type"] == "ValidationError", ans
        assert ans["error"]["message"] in bad.stderr
    st, api = daemon.call("POST", "/v1/validate", {"source": (workdir / "f.py").read_text(), "filename": "f.py",
                                                   "raw_kwargs": {"kind": "x"}})
    assert st == 200 and api == json.loads(ok.stdout), api


def test_a_refused_calls_answer_names_the_function_and_its_parameters(daemon, workdir):
    """A call the function's signature refuses was answered with
    "function" and "parameters" null, though the parser had found the
    function: they are the valid answer's, on both paths, in POST
    /v1/validate's answer and in the run."""
    answers = []
    for server in (None, daemon.url):
        bad = run_cli(workdir, ["validate", "f.py", "--nope", "x", "--json"], server=server)
        assert bad.returncode == 3, bad
        ans = json.loads(bad.stdout)
        assert (ans["valid"], ans["function"], ans["parameters"]) == (False, "f", ["kind"]), ans
        answers.append(ans)
        run = run_cli(workdir, ["run", "f.py", "-a", "1", "-a", "2"], server=server)
        assert run.returncode == 3, run
        ps = run_cli(workdir, ["ps", "--status", "invalid", "--json"], server=server)
        got = json.loads(ps.stdout)[0]
        assert got["error"]["message"] in run.stderr and got["function"] == "f", got
    assert answers[0] == answers[1]
    st, api = daemon.call("POST", "/v1/validate", {"source": (workdir / "f.py").read_text(), "filename": "f.py",
                                                   "raw_kwargs": {"nope": "x"}})
    assert st == 200 and api == answers[1], api
    # Not found, nothing to name: null as before.
    st, api = daemon.call("POST", "/v1/validate", {"source": "def g():\n    pass\n", "filename": "g.py",
                                                   "function": "h"})
    assert st == 200 and (api["function"], api["parameters"]) == (None, None), api


HELPED = '''
@requirements({"nosuchpkg-anywhere": ">=1"})
def greet(name: str, times: int = 1, shout: bool = False) -> str:
    """Say hello.

    name: who to greet
    """
    return name


def other(a, /, b, c=[1, 2], *args, d, e: "int" = 3, **kw):
    return a
'''


def test_run_file_help_prints_the_functions_usage_on_both_paths(daemon, workdir):
    """`run FILE --help` printed run's generic help. It prints the
    function's signature and docstring (as `modal run app.py::f --help`
    shows a function's parameters), from the parser alone: nothing of the
    file runs and no index is asked (its requirement exists nowhere)."""
    (workdir / "helped.py").write_text(HELPED)
    out = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "helped.py", "--help", "--index-url", "http://127.0.0.1:9/"], server=server)
        assert r.returncode == 0, r
        assert r.stdout.startswith("Usage: pysprinter run helped.py [OPTIONS] [ARGUMENTS]\n\n"
                                   "  greet(name: str, times: int = 1, shout: bool = False) -> str\n\n"
                                   "    Say hello.\n\n    name: who to greet\n"), r.stdout
        assert "pysprinter run --help" in r.stdout
        v = run_cli(workdir, ["validate", "helped.py::greet", "-h", "--json"], server=server)
        assert v.returncode == 0, v
        ans = json.loads(v.stdout)
        assert ans["signature"] == "greet(name: str, times: int = 1, shout: bool = False) -> str", ans
        assert ans["doc"] == "Say hello.\n\nname: who to greet" and ans["parameters"] == ["name", "times", "shout"]
        o = run_cli(workdir, ["run", "helped.py::other", "--help"], server=server)
        assert o.stdout.splitlines()[2] == "  other(a, /, b, c=[1, 2], *args, d, e: 'int' = 3, **kw)", o.stdout
        bad = run_cli(workdir, ["run", "helped.py::nope", "--help"], server=server)
        assert bad.returncode == 3 and "no top-level function 'nope'" in bad.stderr, bad
        # Without a FILE, --help is run's own help.
        assert "Usage: pysprinter run FILE[::FUNC]" in run_cli(workdir, ["run", "--help"], server=server).stdout
        out[server] = (r.stdout, r.stderr.replace("--index-url is the server's setting", ""), v.stdout, bad.stderr)
    assert out[None][0] == out[daemon.url][0] and out[None][2:] == out[daemon.url][2:]


def test_invoke_name_help_prints_the_deployed_functions_usage(daemon, workdir):
    """`invoke NAME --help` printed invoke's generic help. It prints the
    deployed version's usage, the block `run FILE --help` prints for its
    file, from the signature and docstring its deploy kept (GET
    /v1/functions/NAME shows them); a missing function or version, and no
    server at all, are what `invoke` says, with its exit code."""
    src = HELPED.replace('@requirements({"nosuchpkg-anywhere": ">=1"})\n', "")
    (workdir / "helpdep.py").write_text(src)
    for target in ("helpdep.py::greet", "helpdep.py::other"):
        r = run_cli(workdir, ["deploy", target, "--name", "usage"], server=daemon.url)
        assert r.returncode == 0, r
    st, f = daemon.call("GET", "/v1/functions/usage?version=1")
    assert st == 200 and f["signature"] == "greet(name: str, times: int = 1, shout: bool = False) -> str", f
    assert f["doc"] == "Say hello.\n\nname: who to greet", f
    st, latest = daemon.call("GET", "/v1/functions/usage")
    assert (latest["signature"], latest["doc"]) == ("other(a, /, b, c=[1, 2], *args, d, e: 'int' = 3, **kw)", None)
    st, listed = daemon.call("GET", "/v1/functions")
    assert [g["signature"] for g in listed["functions"] if g["name"] == "usage"] == [latest["signature"]]

    local = run_cli(workdir, ["run", "helpdep.py::greet", "--help"])
    inv = run_cli(workdir, ["invoke", "usage::1", "--help"], server=daemon.url)
    assert inv.returncode == 0, inv
    assert inv.stdout.startswith("Usage: pysprinter invoke usage::1 [OPTIONS] [ARGUMENTS]\n\n"
                                 "  greet(name: str, times: int = 1, shout: bool = False) -> str\n\n"
                                 "    Say hello.\n\n    name: who to greet\n"), inv.stdout
    # The same block as the file's, but for the verb's name and options.
    assert inv.stdout.splitlines()[1:-1] == local.stdout.splitlines()[1:-1], (inv.stdout, local.stdout)
    assert inv.stdout.splitlines()[-1] == "Options (limits, --data, --payload, --server…): pysprinter invoke --help"
    o = run_cli(workdir, ["invoke", "usage", "-h"], server=daemon.url)
    assert o.stdout.splitlines()[:3] == ["Usage: pysprinter invoke usage [OPTIONS] [ARGUMENTS]", "",
                                         "  other(a, /, b, c=[1, 2], *args, d, e: 'int' = 3, **kw)"], o.stdout
    j = run_cli(workdir, ["invoke", "usage::1", "--help", "--json"], server=daemon.url)
    assert j.returncode == 0 and json.loads(j.stdout) == f, j
    # Without a NAME, --help is invoke's own, server or not.
    assert run_cli(workdir, ["invoke", "--help"]).stdout.startswith("Usage: pysprinter invoke NAME[::VERSION]")

    # What is not there: invoke's words and exit code.
    for name in ("nope", "usage::9"):
        want = run_cli(workdir, ["invoke", name], server=daemon.url)
        got = run_cli(workdir, ["invoke", name, "--help"], server=daemon.url)
        assert want.returncode != 0 and (got.returncode, got.stderr, got.stdout) == (
            want.returncode, want.stderr, ""), (name, want, got)
    assert got.stderr == "pysprinter: function 'usage' has no version 9\n", got.stderr
    want, got = run_cli(workdir, ["invoke", "usage"]), run_cli(workdir, ["invoke", "usage", "--help"])
    assert want.returncode != 0 and "invoke needs a server" in want.stderr, want
    assert (got.returncode, got.stderr, got.stdout) == (want.returncode, want.stderr, ""), got


def test_ctrl_c_prints_the_same_on_both_paths(daemon, workdir):
    """Ctrl-C cancels the run embedded and on the server alike: exit 130 and
    the same lines (the server path said "cancelling run … on the server"
    first)."""
    import signal as sig
    out = {}
    for server in (None, daemon.url):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
        pre = ["--server", server] if server else []
        p = subprocess.Popen([str(CLI), *pre, "run", "f.py", "--kind", "sleep", *SB], cwd=workdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "hello from f\n"
        p.send_signal(sig.SIGINT)
        o, e = p.communicate(timeout=60)
        assert p.returncode == 130, (server, o, e)
        out[server] = (o, [l for l in e.splitlines() if "--sandbox" not in l])
        assert out[server][1] == ["pysprinter: cancelled"], out
    assert out[None] == out[daemon.url]


NAP = 'def nap(s: float = 30):\n    import time\n    print("napping", flush=True)\n    time.sleep(s)\n    return "rested"\n'


def own_work_dir(tmp_path, name, text):
    """A directory of its own holding name (processes_in() finds what a
    run left there), and the CLI's environment: (dir, env)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(tmp_path / "home"), PYSPRINTER_WORKER=str(WORKER), PYSPRINTER_SERVER="",
               NO_COLOR="1")
    return work, env


def hang_up_setup(tmp_path):
    return own_work_dir(tmp_path, "nap.py", NAP)


def last_run(work, env, server):
    pre = ["--server", server] if server else []
    r = subprocess.run([str(CLI), *pre, "ps", "--json", "-n", "1"], capture_output=True, text=True, env=env, cwd=work,
                       timeout=60)
    return json.loads(r.stdout)[0]


def hang_up_run(work, env, server, wrapper=(), args=(), sig=signal.SIGHUP):
    """`run nap.py ARGS` (through wrapper, a command that execs the rest)
    sent sig (SIGHUP) once the function prints: (exit code, stdout after its
    first line, stderr)."""
    pre = ["--server", server] if server else []
    p = subprocess.Popen([*wrapper, str(CLI), *pre, "run", "nap.py", *args, *SB], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "napping\n", server
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, err


def test_a_hang_up_cancels_a_foreground_run_on_both_paths(daemon, tmp_path):
    """Ctrl-C and SIGTERM cancel a foreground run; a hang-up (the terminal
    closed, an ssh session dropped) had no handler: the CLI died, its run
    was marked `lost` by the next CLI, and a server's run went on to its
    end with nobody to see it. It cancels the run as SIGTERM does: exit
    130, `pysprinter: cancelled`, the record `cancelled`, nothing left."""
    work, env = hang_up_setup(tmp_path)
    for server in (None, daemon.url):
        code, out, err = hang_up_run(work, env, server)
        assert (code, out, err.splitlines()[-1:]) == (130, "", ["pysprinter: cancelled"]), (server, err)
        run = last_run(work, env, server)
        assert (run["filename"], run["status"]) == ("nap.py", "cancelled"), (server, run)
        if not server:
            assert no_process_left(work), "a process of the hung-up run is left"


def test_a_terminal_that_goes_away_cancels_its_foreground_run(tmp_path):
    """The hang-up as a terminal gives it: the CLI leads the session of a
    pty, which closes; the kernel sends SIGHUP to the CLI and to its process
    group (its workers too). The run ends `cancelled`, not `lost`."""
    import pty
    import select
    import shutil
    if not shutil.which("setsid"):
        pytest.skip("no setsid(1) to give the CLI a controlling terminal")
    work, env = hang_up_setup(tmp_path)
    fd, slave = pty.openpty()
    p = subprocess.Popen(["setsid", "-w", "-c", str(CLI), "run", "nap.py", *SB], cwd=work, env=env, stdin=slave,
                         stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = b""
        while b"napping" not in seen:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, seen
            seen += os.read(fd, 4096)
        os.close(fd)
        assert p.wait(timeout=60) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    run = last_run(work, env, None)
    assert (run["filename"], run["status"]) == ("nap.py", "cancelled"), run
    assert no_process_left(work), "a process of the hung-up run is left"


def test_a_hang_up_the_caller_ignored_leaves_the_run_to_its_end_on_both_paths(daemon, tmp_path):
    """`nohup pysprinter run …`: the caller asked for the run to outlive
    the terminal, so the SIGHUP it ignored stays ignored and the run ends
    as it would have."""
    work, env = hang_up_setup(tmp_path)
    for server in (None, daemon.url):
        code, out, err = hang_up_run(work, env, server, ["sh", "-c", "trap '' HUP; exec \"$0\" \"$@\""], ["--s", "2"])
        assert (code, out) == (0, "rested\n"), (server, out, err)
        run = last_run(work, env, server)
        assert (run["filename"], run["status"]) == ("nap.py", "succeeded"), (server, run)


def test_ctrl_c_cancels_even_when_the_caller_ignored_sigint_on_both_paths(daemon, tmp_path):
    """A non-interactive shell ignores SIGINT in every `cmd &` it starts (a
    CI script's, a test harness's): only an ignored hang-up is the
    caller's wish (nohup). A SIGINT ignored by the caller still cancels
    the run, exit 130, as it did before SIGHUP was caught."""
    work, env = hang_up_setup(tmp_path)
    for server in (None, daemon.url):
        code, out, err = hang_up_run(work, env, server, ["sh", "-c", "trap '' INT; exec \"$0\" \"$@\""],
                                     sig=signal.SIGINT)
        assert (code, out, err.splitlines()[-1:]) == (130, "", ["pysprinter: cancelled"]), (server, out, err)
        run = last_run(work, env, server)
        assert (run["filename"], run["status"]) == ("nap.py", "cancelled"), (server, run)


def test_a_result_without_json_view_prints_its_repr_with_a_warning_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", "--kind", "complex", *SB], server=server)
        assert r.stdout.endswith("(1+2j)\n")
        assert "cannot be represented as JSON" in r.stderr


# CPython's parser and compiler warn about these (SyntaxWarning; the
# invalid escape is a SyntaxWarning from 3.12, a hidden DeprecationWarning
# before) while the file is validated, before any of it runs.
WARNS = 'import re\n\ndef f(x: int = 1):\n    pat = "\\d+"\n    return [x is 1, x is not ()]\n'


def test_parser_warnings_print_the_same_bytes_on_both_paths(daemon, workdir):
    """The validation's SyntaxWarnings reached the terminal embedded (the
    validating worker's stderr is the CLI's) but only the daemon's log
    through a server. The validation's answer carries them; the CLI prints
    them on stderr with the run's stderr, the same bytes both ways, the
    line taken from the file sent."""
    (workdir / "warns.py").write_text(WARNS)
    want = ('warns.py:5: SyntaxWarning: "is" with a literal. Did you mean "=="?\n'
            '  return [x is 1, x is not ()]\n')
    for args in (["run", "warns.py", *SB], ["run", "warns.py", "--json", *SB], ["validate", "warns.py"]):
        out = {}
        for server in (None, daemon.url):
            r = run_cli(workdir, args, server=server)
            assert r.returncode == 0, (server, r)
            assert want in r.stderr, (server, args, r.stderr)
            out[server] = (r.stdout, "".join(l for l in r.stderr.splitlines(True) if "--sandbox" not in l))
        assert out[None] == out[daemon.url], args
    # The daemon's log does not get them (it is the operator's, not the
    # caller's); the run's own log keeps them, as its stderr.
    assert "SyntaxWarning" not in daemon.log.read_text()
    r = run_cli(workdir, ["ps", "--json", "-n", "1"], server=daemon.url)
    rid = json.loads(r.stdout)[0]["id"]
    logs = run_cli(workdir, ["logs", rid], server=daemon.url)
    assert want in logs.stdout + logs.stderr, logs


def test_mistyped_runner_option_suggests_the_option(workdir):
    r = run_cli(workdir, ["run", "f.py", "--jsn"])
    assert r.returncode == 2 and "did you mean --json" in r.stderr
    r = run_cli(workdir, ["run", "f.py", "--timout", "5", *SB])
    assert r.returncode == 2 and "did you mean --timeout" in r.stderr
    # ... and lists the parameters, which the word may be a mistyped one of.
    assert "the function has no parameter 'timout' (parameters: kind)" in r.stderr, r.stderr


def test_a_short_parameter_is_not_taken_for_an_option_two_edits_away(daemon, workdir):
    """`--n` at the end was "unknown option '--n' (did you mean --env?)"
    for a function with a parameter n: two edits are too many for a word
    of one letter. It is now the parameter, whose missing value is the
    run's validation error."""
    (workdir / "short.py").write_text("def f(n: int = 1):\n    return n\n")
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "short.py", *SB, "--n"], server=server)
        assert r.returncode == 3 and "did you mean" not in r.stderr, (server, r)
        assert "argument 'n': a value is needed" in r.stderr, r.stderr
        r = run_cli(workdir, ["run", "short.py", *SB, "--nn", "2"], server=server)
        assert r.returncode == 3 and "unexpected keyword argument 'nn' (parameters: n)" in r.stderr, r.stderr


def test_a_parameter_named_like_an_option_is_blamed_only_when_the_function_lacks_it(daemon, workdir):
    """A keyword whose name is near a runner option is a typo only when the
    validation says the function has no such parameter; any other message
    that quotes the name (a bad value for it, a positional value equal to
    it) is the run's own error, exit 3, and says so on both paths."""
    (workdir / "near.py").write_text('def f(x: int, n: str = "", timout: int = 0):\n    return [x, n, timout]\n')
    cases = [(["--n", "ok", "-a", "n"], "argument 'x': expected an integer, got 'n'"),
             (["-a", "1", "--timout", "abc"], "argument 'timout': expected an integer, got 'abc'")]
    for args, message in cases:
        out = {}
        for server in (None, daemon.url):
            r = run_cli(workdir, ["run", "near.py", *args, *SB], server=server)
            assert r.returncode == 3, (server, r)
            assert message in r.stderr and "did you mean" not in r.stderr, r.stderr
            out[server] = [l for l in r.stderr.splitlines() if "--sandbox" not in l]
        assert out[None] == out[daemon.url]
    for server in (None, daemon.url):  # and the parameter it is, when given right
        r = run_cli(workdir, ["run", "near.py", "-a", "1", "--timout", "5", *SB], server=server)
        assert r.returncode == 0 and r.stdout == '[1, "", 5]\n', r


def test_a_bool_parameter_is_a_flag_without_a_value_on_both_paths(daemon, workdir):
    """`--loud` alone is true for a bool parameter, at the end of the
    line or before another option (it was "option --loud needs a value",
    or took the next option as its value); for any other parameter a
    missing value is the run's validation error, never a silent True."""
    (workdir / "flags.py").write_text(
        "from typing import Optional\n"
        "def f(n: int = 1, loud: bool = False, dry_run: Optional[bool] = None, name: str = 'x'):\n"
        "    return [n, loud, dry_run, name]\n")
    ok = [(["--loud"], '[1, true, null, "x"]\n'),
          (["--loud", "--n", "2"], '[2, true, null, "x"]\n'),
          (["--dry-run", "-a", "3", "--loud", "false"], '[3, false, true, "x"]\n'),
          (["--loud", "--", "-4"], '[-4, true, null, "x"]\n'),
          (["--n", "-5", "--name=-y"], '[-5, false, null, "-y"]\n')]
    for server in (None, daemon.url):
        for args, out in ok:
            r = run_cli(workdir, ["run", "flags.py", *SB, *args], server=server)
            assert (r.returncode, r.stdout) == (0, out), (server, args, r)
    bad = [(["--n", "--loud"], "argument 'n': a value is needed"),
           (["--name", "-y"], "--name=VALUE for a value that starts with '-'")]
    for args, message in bad:
        errs = []
        for server in (None, daemon.url):
            r = run_cli(workdir, ["run", "flags.py", *SB, *args], server=server)
            assert r.returncode == 3 and message in r.stderr and r.stdout == "", (server, args, r)
            errs.append([l for l in r.stderr.splitlines() if "--sandbox" not in l])
        assert errs[0] == errs[1]
    # The run object shows the flag as the value it stands for.
    r = run_cli(workdir, ["run", "flags.py", "--loud", *SB], server=daemon.url)
    rid = json.loads(run_cli(workdir, ["ps", "--json", "-n", "1"], server=daemon.url).stdout)[0]["id"]
    show = json.loads(run_cli(workdir, ["show", rid, "--json"], server=daemon.url).stdout)
    assert show["kwargs"] == {"loud": True}, show


def test_json_args_before_raw_values_is_the_same_usage_error_on_both_paths(daemon, workdir):
    """The API carries raw values before typed ones: embedded ran
    `--json-args '[1]' -a q` while --server refused it with exit 2."""
    (workdir / "order.py").write_text("def f(a, b):\n    return [a, b]\n")
    for args in (["--json-args", "[1]", "-a", "q"], ["--json-args", "[1]", "q"]):
        out = {}
        for server in (None, daemon.url):
            r = run_cli(workdir, ["run", "order.py", *args, *SB], server=server)
            assert r.returncode == 2 and "give -a values before --json-args values" in r.stderr, r
            out[server] = (r.stdout, r.stderr)
        assert out[None] == out[daemon.url]
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "order.py", "-a", "q", "--json-args", "[1]", *SB], server=server)
        assert r.returncode == 0 and r.stdout == '["q", 1]\n', r


def test_unknown_kwarg_names_the_parameters(workdir):
    r = run_cli(workdir, ["run", "f.py", "--nope", "1", *SB])
    assert r.returncode == 3 and "parameters: kind" in r.stderr


@pytest.mark.parametrize("verb", ["run", "validate", "invoke", "ps", "show", "logs", "deploy", "functions",
                                  "workers", "dag", "chain", "data", "lock", "env", "cancel"])
def test_every_verb_help_works_without_a_server(workdir, verb):
    r = run_cli(workdir, [verb, "--help"], extra_env={"PYSPRINTER_SERVER": "http://127.0.0.1:9"})
    assert r.returncode == 0, (verb, r.stderr)
    assert "Usage" in r.stdout


def test_run_help_lists_every_runner_option(workdir):
    out = run_cli(workdir, ["run", "--help"]).stdout
    for opt in ("--data", "-q", "--json", "--timeout", "--output-file", "--server", "--token"):
        assert opt in out


def test_lock_needs_no_arguments(workdir):
    (workdir / "needs.py").write_text("def g(x: int, y):\n    return x\n")
    r = run_cli(workdir, ["lock", "needs.py"])
    assert r.returncode == 0, r.stderr


def test_read_only_token_403_says_the_token_lacks_the_right(tmp_path, workdir):
    d = Daemon(tmp_path / "auth", sandbox="none")
    d.start()
    try:
        r = run_cli(workdir, ["run", "f.py", *SB], server=d.url,
                    extra_env={"PYSPRINTER_TOKEN": "reader-token-0123456789abcdef"})
        assert r.returncode == 6
        assert "lacks the right" in r.stderr and "set PYSPRINTER_TOKEN" not in r.stderr
    finally:
        d.stop()


def test_ps_never_shows_a_question_mark_function(workdir):
    (workdir / "broken.py").write_text("def (:\n")
    run_cli(workdir, ["run", "broken.py", *SB])
    assert "::?" not in run_cli(workdir, ["ps"]).stdout


def test_exception_type_is_printed_once(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=server)
        assert "ValueError: nope" in r.stderr and "ValueError: ValueError" not in r.stderr
        rid = json.loads(run_cli(workdir, ["ps", "--json", "-n", "1"], server=server).stdout)[0]["id"]
        show = run_cli(workdir, ["show", rid], server=server).stdout
        assert "ValueError: ValueError" not in show


def test_invoke_sends_a_lambda_event_payload(daemon, workdir):
    (workdir / "handler.py").write_text("def handler(event, context):\n    return {'got': event['n'] * 2}\n")
    r = run_cli(workdir, ["deploy", "handler.py::handler", "--name", "h"], server=daemon.url)
    assert r.returncode == 0, r.stderr
    r = run_cli(workdir, ["invoke", "h", "--payload", '{"n": 21}'], server=daemon.url)
    assert r.returncode == 0, r.stderr
    # The result alone: START/END/REPORT are the Lambda log tail's, not the
    # run's output (they were printed in some calls and not in others).
    assert json.loads(r.stdout) == {"got": 42}, r.stdout
    (workdir / "event.json").write_text('{"n": 5}')
    r = run_cli(workdir, ["invoke", "h", "--payload-file", "event.json"], server=daemon.url)
    assert json.loads(r.stdout.splitlines()[-1]) == {"got": 10}
    r = run_cli(workdir, ["invoke", "h", "-"], server=daemon.url, input='{"n": 1}')
    assert json.loads(r.stdout.splitlines()[-1]) == {"got": 2}


def test_invoke_payload_with_arguments_or_limits_is_a_usage_error(daemon, workdir):
    """They were dropped without a word: the event ran with the deploy's
    limits and none of the arguments."""
    (workdir / "handler.py").write_text("def handler(event, context):\n    return event\n")
    r = run_cli(workdir, ["deploy", "handler.py::handler", "--name", "hp"], server=daemon.url)
    assert r.returncode == 0, r.stderr
    before = daemon.call("GET", "/v1/runs")[1]["runs"]
    for extra in (["--timeout", "1s"], ["--memory", "64M"], ["--network"], ["--no-network"], ["-a", "5"],
                  ["--x", "1"], ["--max-procs", "2"], ["--max-output", "1M"]):
        for server in (None, daemon.url):
            r = run_cli(workdir, ["invoke", "hp", "--payload", '{"n": 1}', *extra], server=server)
            assert r.returncode == 2, (extra, r)
            assert "--payload is the whole event" in r.stderr and r.stdout == "", (extra, r.stderr)
    assert daemon.call("GET", "/v1/runs")[1]["runs"] == before
    r = run_cli(workdir, ["invoke", "hp", "--payload", '{"n": 1}'], server=daemon.url)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1]) == {"n": 1}, r


def test_dag_logs_of_a_silent_task_prints_nothing_and_exits_0_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["dag", "run", "pipe.yaml", "--sandbox=none", "--no-cache", "--json"], server=server)
        assert r.returncode == 0, r.stderr
        dag_id = json.loads(r.stdout)["id"]
        r = run_cli(workdir, ["dag", "logs", dag_id, "one"], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (server, r)


def test_a_failed_task_traceback_is_reachable_from_dag_logs_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["dag", "run", "fail.yaml", "--sandbox=none", "--json"], server=server)
        assert r.returncode == 1, r.stderr
        dag_id = json.loads(r.stdout)["id"]
        r = run_cli(workdir, ["dag", "logs", dag_id, "a"], server=server)
        assert r.returncode == 0, (server, r)
        assert r.stdout == "hello from f\n"
        assert "Traceback" in r.stderr and "ValueError: nope" in r.stderr, (server, r.stderr)


def test_logs_replays_stdout_and_stderr_apart_on_both_paths(daemon, workdir):
    (workdir / "noisy.py").write_text("import sys\ndef n():\n    print('out')\n    print('err', file=sys.stderr)\n")
    for server in (None, daemon.url):
        run_cli(workdir, ["run", "noisy.py", *SB], server=server)
        rid = json.loads(run_cli(workdir, ["ps", "--json", "-n", "1"], server=server).stdout)[0]["id"]
        r = run_cli(workdir, ["logs", rid], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")



def test_logs_of_a_failed_run_ends_with_its_traceback_as_run_printed_it_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        ran = run_cli(workdir, ["run", "f.py", "--kind", "raise", *SB], server=server)
        assert ran.returncode == 1 and "ValueError: nope" in ran.stderr, ran
        shown = "".join(l for l in ran.stderr.splitlines(True) if not l.startswith("pysprinter: warning"))
        assert shown.startswith("Traceback"), ran.stderr
        rid = json.loads(run_cli(workdir, ["ps", "--json", "-n", "1"], server=server).stdout)[0]["id"]
        r = run_cli(workdir, ["logs", rid], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "hello from f\n", shown), (server, r)
        r = run_cli(workdir, ["logs", "-f", rid[:8]], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "hello from f\n", shown), (server, r)

DATA_READER = '''
import pysprinter

def f():
    p = pysprinter.data_path("corpus")
    return [p.rsplit("/", 1)[-1], open(p).read()]
'''


def test_data_put_as_sets_the_file_name_and_a_reput_keeps_it(daemon, workdir, tmp_path):
    (workdir / "reader.py").write_text(DATA_READER)
    (workdir / "first.txt").write_text("one\n")
    (workdir / "second.txt").write_text("two\n")
    seen = {}
    for server in (None, daemon.url):
        def put(*args):
            r = run_cli(workdir, ["data", "put", "corpus", *args], server=server)
            assert r.returncode == 0, r.stderr
            return r

        def read():
            r = run_cli(workdir, ["run", "reader.py", "--data", "corpus", "--json", *SB], server=server)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        put("first.txt", "--as", "words.txt")
        assert read() == ["words.txt", "one\n"]
        # A new version keeps the name a pipeline reads, and says so.
        r = put("second.txt")
        assert "keeping the file name 'words.txt'" in r.stderr
        assert read() == ["words.txt", "two\n"]
        put("first.txt", "--as", "other.txt")
        seen[server] = read()
        assert run_cli(workdir, ["data", "put", "corpus", "first.txt", "--as", "../x"], server=server).returncode == 2
    assert seen[None] == seen[daemon.url] == ["other.txt", "one\n"]


@pytest.mark.parametrize("verb", ["run", "validate", "deploy"])
def test_a_source_that_is_not_utf8_is_exit_3_with_where_on_both_paths(daemon, workdir, verb):
    # In a directory: a run's messages name the file by its base name, on
    # both paths (the server path named sub/lat.py).
    (workdir / "sub").mkdir(exist_ok=True)
    (workdir / "sub" / "lat.py").write_bytes(b'def f():\n    return "caf\xe9"\n')
    out = {}
    for server in (None, daemon.url):
        if verb == "deploy" and server is None:
            continue  # deploy needs a server
        r = run_cli(workdir, [verb, "sub/lat.py", *(SB if verb == "run" else [])], server=server)
        out[server] = (r.returncode, [l for l in r.stderr.splitlines() if "--sandbox" not in l])
        assert r.returncode == 3, r
        assert "lat.py:2:16: ValidationError: not valid UTF-8" in r.stderr, r.stderr
        assert "sub/" not in r.stderr, r.stderr
    if verb != "deploy":
        assert out[None] == out[daemon.url]


def test_a_source_with_a_utf8_byte_order_mark_runs_as_python_runs_it(daemon, workdir):
    """CPython skips a leading BOM when it runs a file; ast.parse of the
    decoded text called it "invalid non-printable character U+FEFF"."""
    (workdir / "bom.py").write_bytes(b'\xef\xbb\xbfdef f(n: int):\n    return ["bom", n]\n')
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "bom.py", "-a", "2", *SB], server=server)
        assert r.returncode == 0 and r.stdout == '["bom", 2]\n', r
        r = run_cli(workdir, ["validate", "bom.py", "-a", "2"], server=server)
        assert r.returncode == 0, r
    # Only the first character is the mark: one later in the file stays an error.
    (workdir / "bom2.py").write_bytes(b'def f():\n    return 1\n\xef\xbb\xbf\n')
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "bom2.py", *SB], server=server)
        assert r.returncode == 3 and "U+FEFF" in r.stderr, r



def test_a_syntax_error_shows_the_sent_line_not_a_file_of_the_same_name_here(daemon, workdir):
    """CPython's parser reads a refused line back from the file its
    filename names, when one exists: with --sandbox=none that was the
    user's directory, so embedded showed (and measured the column in)
    another file of the same base name, or the same file with its byte
    order mark, where a daemon showed the line it was sent."""
    (workdir / "syn").mkdir(exist_ok=True)
    (workdir / "syn" / "same.py").write_bytes(b"def f():\n    return 1 +\n")
    (workdir / "same.py").write_bytes(b"def f():\n    return 2 + 2 + 2 + 2 + 2\n")
    (workdir / "bomsyn.py").write_bytes(b"\xef\xbb\xbfdef f(): return 1 +\n")
    for args, where in ((["syn/same.py"], "same.py:2:15:"), (["bomsyn.py"], "bomsyn.py:1:20:")):
        out = {}
        for server in (None, daemon.url):
            r = run_cli(workdir, ["run", *args, *SB], server=server)
            out[server] = (r.returncode, r.stdout, [l for l in r.stderr.splitlines() if "--sandbox" not in l])
            assert r.returncode == 3, r
            assert where in r.stderr and "2 + 2" not in r.stderr and "\ufeff" not in r.stderr, r.stderr
        assert out[None] == out[daemon.url]


@pytest.fixture(scope="module")
def empty_index():
    import pkgindex
    ix = pkgindex.Index()
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture(scope="module")
def indexed_daemon(tmp_path_factory, empty_index):
    root = tmp_path_factory.mktemp("indexed-daemon")
    d = Daemon(root, sandbox="none" if sandbox_args() else None, args=["--no-auth"],
               config_extra=f"index:\n  url: {empty_index.url}\n")
    d.start()
    yield d
    d.stop()


UNKNOWN = "@requirements({'no-such-package-anywhere': ''})\ndef f():\n    return 1\n"


def test_validate_of_an_unresolvable_requirement_exits_4(workdir, empty_index, indexed_daemon):
    (workdir / "unknown.py").write_text(UNKNOWN)
    local = run_cli(workdir, ["validate", "unknown.py", "--index-url", empty_index.url])
    remote = run_cli(workdir, ["validate", "unknown.py"], server=indexed_daemon.url)
    for r in (local, remote):
        assert r.returncode == 4, r
        assert "no-such-package-anywhere" in r.stderr
    assert "4 when a requirement cannot be resolved" in run_cli(workdir, ["validate", "--help"]).stdout


def test_deploy_of_an_unknown_package_exits_4_like_run(workdir, indexed_daemon):
    (workdir / "unknown.py").write_text(UNKNOWN)
    run = run_cli(workdir, ["run", "unknown.py"], server=indexed_daemon.url)
    deploy = run_cli(workdir, ["deploy", "unknown.py", "--name", "unknown"], server=indexed_daemon.url)
    assert run.returncode == deploy.returncode == 4, (run, deploy)
    assert "no-such-package-anywhere" in deploy.stderr


def test_run_no_cache_resolves_again_on_both_paths(workdir, empty_index, indexed_daemon, tmp_path):
    """`run --no-cache --server` warned "ignored with --server" and ran the
    daemon's cached lock: a new release was never picked up through a
    daemon (round 34: the API's `no_cache`)."""
    import pkgindex
    (workdir / "fresh.py").write_text("@requirements({'freshp': ''})\ndef f():\n"
                                      "    import freshp\n    return freshp.__version__\n")
    empty_index.add(pkgindex.build_wheel(tmp_path, "freshp", "1.0"))

    def both(*extra):
        local = run_cli(workdir, ["run", "fresh.py", "--index-url", empty_index.url, *extra])
        remote = run_cli(workdir, ["run", "fresh.py", *extra], server=indexed_daemon.url)
        assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
        return local.stdout
    assert both() == "1.0\n"
    empty_index.add(pkgindex.build_wheel(tmp_path, "freshp", "2.0"))
    assert both() == "1.0\n"  # the cached lock
    assert both("--no-cache") == "2.0\n"
    assert both() == "2.0\n"  # the new lock stays


def test_a_dag_whose_task_requirement_cannot_be_resolved_exits_4_on_both_paths(workdir, empty_index,
                                                                                indexed_daemon):
    (workdir / "unknown.py").write_text(UNKNOWN)
    (workdir / "deps.yaml").write_text("tasks:\n  a: {file: unknown.py, function: f}\n")
    local = run_cli(workdir, ["dag", "run", "deps.yaml", "--index-url", empty_index.url, "--no-cache"])
    remote = run_cli(workdir, ["dag", "run", "deps.yaml", "--no-cache"], server=indexed_daemon.url)
    for r in (local, remote):
        assert r.returncode == 4, r
        assert "no-such-package-anywhere" in r.stderr, r.stderr


def pty_run(workdir, args, extra_env=None):
    """The CLI on a terminal: everything it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update({"PYSPRINTER_HOME": str(workdir / "home"), "PYSPRINTER_WORKER": str(WORKER), "NO_COLOR": "1",
                "TERM": "xterm"})
    env.update(extra_env or {})
    return run_on_pty(workdir, [CLI, *args], env)


def test_progress_line_is_erased_before_other_output(workdir, tmp_path):
    import pkgindex
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path / "wheels", "progpkg", "1.0", files={"progpkg/__init__.py": "V = 1\n"}))
    ix.start()
    try:
        (workdir / "prog.py").write_text("@requirements({'progpkg': ''})\ndef f():\n"
                                         "    print('from f')\n    return 1+2j\n")
        code, out = pty_run(workdir, ["run", "prog.py", *SB, "--index-url", ix.url])
    finally:
        ix.stop()
    assert code == 0, out
    progress = [m.end() for m in re.finditer(r"(resolve|install) [^\r\n]*", out)]
    assert progress, out  # the run drew a progress line
    # Each progress line is erased ("\r" + erase-line) or redrawn before
    # anything else is written: nothing runs into it.
    for end in progress:
        assert out[end:].startswith("\r\x1b[K"), repr(out[end - 40:end + 40])
    assert re.search(r"(^|\n|\x1b\[K)pysprinter: warning: the result cannot be represented", out), repr(out)
    assert "from f" in out


def test_term_dumb_dag_view_moves_no_cursor(workdir):
    code, dumb = pty_run(workdir, ["dag", "run", "pipe.yaml", "--sandbox=none", "--no-cache"], extra_env={"TERM": "dumb"})
    assert code == 0, dumb
    assert "\x1b[" not in dumb, repr(dumb)
    assert "one: succeeded" in dumb
    # The same on a capable terminal redraws the tree in place.
    code, xterm = pty_run(workdir, ["dag", "run", "pipe.yaml", "--sandbox=none", "--no-cache"])
    assert code == 0, xterm
    assert re.search(r"\x1b\[\d+A", xterm), repr(xterm)


def test_quiet_prints_results_and_errors_only_on_every_verb(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["-q", "run", "f.py", "--kind", "complex", *SB], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "hello from f\n(1+2j)\n", ""), r
        r = run_cli(workdir, ["dag", "run", "pipe.yaml", "-q", "--sandbox=none"], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "[0.1, 10]\n", ""), r
        r = run_cli(workdir, ["chain", "step.py::one", "step.py::two", "-q", *SB], server=server)
        assert (r.returncode, r.stdout, r.stderr) == (0, "[0.1, 10]\n", ""), r
        # Errors still speak.
        r = run_cli(workdir, ["-q", "run", "f.py", "--kind", "raise", *SB], server=server)
        assert r.returncode == 1 and "ValueError: nope" in r.stderr


def test_logs_has_no_json_and_says_where_the_record_is(workdir):
    r = run_cli(workdir, ["logs", "rwhatever", "--json"])
    assert r.returncode == 2 and "show RUN --json" in r.stderr
    assert "--json" not in run_cli(workdir, ["logs", "--help"]).stdout.splitlines()[0]


ODD = r'''
def f(kind: str):
    if kind == "surrogate":        # what os.fsdecode() makes of a byte that is not UTF-8
        return "a\udcffb"
    if kind == "surrogate_key":
        return {"k\udcff": 1}
    if kind == "surrogate_raise":
        raise ValueError("bad \udcff")
    if kind == "surrogate_repr":
        class R:
            def __repr__(self):
                return "R\udcff"
        return R()
    if kind == "nul":
        print("a\0b")
        return "x\0y"
    if kind == "nul_raise":
        raise ValueError("a\0b")
    if kind == "nul_repr":
        class N:
            def __repr__(self):
                return "N\0M"
        return N()
    if kind == "same_key":         # two keys that are one JSON key: one was dropped
        return {1: "int-one", "1": "str-one"}
'''

# kind -> (exit code, stdout, a line stderr holds or None for empty stderr)
ODD_EXPECT = {
    "surrogate": (0, "'a\\udcffb'\n", "warning: the result cannot be represented as JSON; showing its repr()"),
    "surrogate_key": (0, "{'k\\udcff': 1}\n", "warning: the result cannot be represented as JSON"),
    "surrogate_raise": (1, "", "ValueError: bad \\udcff"),
    "surrogate_repr": (0, "R\\udcff\n", "warning: the result cannot be represented as JSON"),
    "nul": (0, "a\0b\nx\0y\n", None),
    # Shown text is kept as a C string: its NUL is shown as repr() shows it.
    "nul_raise": (1, "", "ValueError: a\\x00b"),
    "nul_repr": (0, "N\\x00M\n", "warning: the result cannot be represented as JSON"),
    "same_key": (0, "{1: 'int-one', '1': 'str-one'}\n", "warning: the result cannot be represented as JSON"),
}


@pytest.mark.parametrize("kind", sorted(ODD_EXPECT))
def test_text_json_cannot_hold_reaches_the_user_on_every_path(daemon, workdir, kind):
    """A lone surrogate (no UTF-8 for it) used to make the result unreadable
    (exit 7, "the run's result could not be read", the exception lost), and
    a NUL in a result or in output made the CLI refuse the daemon's answer
    (exit 6) while the embedded run printed it. A NUL in an exception's
    message or a repr() made the result unreadable (exit 7) on every path."""
    (workdir / "odd.py").write_text(ODD)
    code, out, err = ODD_EXPECT[kind]
    deployed = run_cli(workdir, ["deploy", "odd.py", "--name", "odd"], server=daemon.url)
    assert deployed.returncode == 0, deployed.stderr
    for how, args, server in (("embedded", ["run", "odd.py", *SB], None), ("daemon", ["run", "odd.py", *SB], daemon.url),
                              ("invoke", ["invoke", "odd"], daemon.url)):
        r = run_cli(workdir, [*args, "--kind", kind], server=server)
        assert (r.returncode, r.stdout) == (code, out), (how, r.returncode, r.stdout, r.stderr)
        lines = [l for l in r.stderr.splitlines() if "--sandbox" not in l]
        if err is None:
            assert lines == [], (how, r.stderr)
        else:
            assert any(err in l for l in lines), (how, r.stderr)


NAMES_READER = '''
import os
import pysprinter

def f(name: str):
    p = pysprinter.data_path(name)
    if os.path.isdir(p):
        return sorted(os.fsencode(n).hex() for n in os.listdir(p))
    return [os.path.basename(p), open(p).read()]
'''


def test_file_names_that_are_not_utf8_on_both_paths(daemon, workdir, tmp_path):
    """A single file's name is what a run's data path holds, and that path
    reaches the run as JSON text: a name that is not UTF-8 is refused with
    the way out (--as), where it used to be stored and then silently not
    attached to runs. Inside a directory any name is kept as its bytes:
    through a daemon the upload's tar failed on it (exit 6) while the
    embedded put stored it."""
    (workdir / "names.py").write_text(NAMES_READER)
    odd = tmp_path / os.fsdecode(b"n\xffame.txt")
    odd.write_text("hello\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / os.fsdecode(b"a\xffb")).write_text("x\n")
    (tree / "ok").write_text("y\n")
    hashes = []
    for server in (None, daemon.url):
        r = run_cli(workdir, ["data", "put", "oddfile", str(odd)], server=server)
        assert r.returncode == 2, (server, r.returncode, r.stderr)
        assert "is not UTF-8: store the file under another (--as FILENAME)" in r.stderr, (server, r.stderr)
        r = run_cli(workdir, ["data", "put", "oddfile", str(odd), "--as", "fine.txt"], server=server)
        assert r.returncode == 0, (server, r.stderr)
        r = run_cli(workdir, ["run", "names.py", "--name", "oddfile", "--data", "oddfile", "--json", *SB], server=server)
        assert (r.returncode, json.loads(r.stdout)) == (0, ["fine.txt", "hello\n"]), (server, r.stdout, r.stderr)

        r = run_cli(workdir, ["data", "put", "oddtree", str(tree), "--json"], server=server)
        assert r.returncode == 0, (server, r.stderr)
        hashes.append(json.loads(r.stdout)["hash"])
        r = run_cli(workdir, ["run", "names.py", "--name", "oddtree", "--data", "oddtree", "--json", *SB], server=server)
        assert (r.returncode, json.loads(r.stdout)) == (0, ["61ff62", "6f6b"]), (server, r.stdout, r.stderr)
        out = tmp_path / f"got-{bool(server)}"
        assert run_cli(workdir, ["data", "get", "oddtree", "-o", str(out)], server=server).returncode == 0
        assert sorted(os.listdir(os.fsencode(out))) == [b"a\xffb", b"ok"]
    assert hashes[0] == hashes[1]


TEXT_FILES = '''
import locale, os, sys

def f(word: str):
    with open("/tmp/word.txt", "w") as fh:     # the default encoding
        fh.write(word)
    return [open("/tmp/word.txt").read(), os.environ.get("MODE"), sys.getfilesystemencoding(),
            locale.getpreferredencoding(False)]
'''


def test_a_run_reads_and_writes_text_as_utf8_like_python3(daemon, workdir):
    """The worker's Python never saw a UTF-8 locale and took ASCII for
    open(), the file system and os.environ: writing "café" to a file raised
    UnicodeEncodeError and --env MODE=é failed the run (exit 7). It runs in
    UTF-8 mode (PEP 540), as `python3` does under a UTF-8 locale."""
    (workdir / "text.py").write_text(TEXT_FILES)
    want = ["café ✓", "é", "utf-8", "utf-8"]
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "text.py", "-a", "café ✓", "--env", "MODE=é", "--json", *SB], server=server)
        assert (r.returncode, json.loads(r.stdout or "null")) == (0, want), (server, r.stdout, r.stderr)


@pytest.mark.parametrize("args", [["-a", "\udcff"], ["--kind", "a\udcffb"], ["-k", "kind=\udcff"],
                                  ["--env", "MODE=\udcff"]], ids=["positional", "named", "k", "env"])
def test_an_argument_that_is_not_utf8_is_refused_on_both_paths(daemon, workdir, args):
    """It used to vanish: the run said the argument was missing, or ran
    without the variable. ("\\udcff" is how Python passes the byte 0xff.)"""
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", *args, *SB], server=server)
        assert r.returncode == 2, (server, r.returncode, r.stdout, r.stderr)
        assert "is not UTF-8" in first_line(r.stderr), (server, r.stderr)


def test_deploy_refuses_an_env_value_that_is_not_utf8(daemon, workdir):
    """deploy parses its own options: its --env went through unchecked, and
    the function was deployed without the variable."""
    r = run_cli(workdir, ["deploy", "f.py", "--name", "envodd", "--env", "MODE=\udcff"], server=daemon.url)
    assert r.returncode == 2 and "--env MODE: the value is not UTF-8" in r.stderr, (r.returncode, r.stderr)
    r = run_cli(workdir, ["functions", "--json"], server=daemon.url)
    assert "envodd" not in r.stdout


NUL_STEPS = '''
def one():
    return "a\\0b"

def two(x, y: dict = None):
    return [len(x), repr(x), y]
'''

NUL_PIPE = '''
tasks:
  one: {file: nul_steps.py, function: one}
  two: {file: nul_steps.py, function: two, args: ["${one}"], kwargs: {y: {k: "${one}"}}}
'''


def test_a_nul_in_a_result_or_an_argument_reaches_python_on_both_paths(daemon, workdir):
    """Python's str holds NUL and so does JSON ("\\u0000"); C read it only
    with jansson's JSON_ALLOW_NUL. A task's result "a\\0b" handed on by chain
    or a DAG arrived as None (the next task ran on it, no error); an
    argument given as JSON (--json-args, --json-kwargs, a map input) was
    refused as "needs a JSON array" on both paths."""
    (workdir / "nul_steps.py").write_text(NUL_STEPS)
    (workdir / "nul_pipe.yaml").write_text(NUL_PIPE)
    (workdir / "nul_inputs.jsonl").write_text('"p\\u0000q"\n["r\\u0000", {"k": "\\u0000"}]\n')
    cases = {
        "chain": (["chain", "nul_steps.py::one", "nul_steps.py::two", "--json", "--no-cache"],
                  [3, "'a\\x00b'", None]),
        "dag": (["dag", "run", "nul_pipe.yaml", "--json", "--no-cache"], None),
        "json-args": (["run", "nul_steps.py::two", "--json-args", '["x\\u0000y"]', "--json"],
                      [3, "'x\\x00y'", None]),
        "json-kwargs": (["run", "nul_steps.py::two", "-a", "x", "--json-kwargs", '{"y": {"k": "\\u0000"}}',
                         "--json"], [1, "'x'", {"k": "\0"}]),
        "map": (["map", "nul_steps.py::two", "--over", "nul_inputs.jsonl"], None),
    }
    for name, (args, want) in cases.items():
        got = []
        for server in (None, daemon.url):
            r = run_cli(workdir, [*args, *SB], server=server)
            assert r.returncode == 0, (name, server, r.returncode, r.stdout, r.stderr)
            if name == "dag":
                tasks = json.loads(r.stdout)["tasks"]
                assert tasks["two"]["result"] == [3, "'a\\x00b'", {"k": "a\0b"}], (server, r.stdout)
            elif name == "map":
                lines = [json.loads(l) for l in r.stdout.splitlines()]
                assert [l["result"] for l in lines] == [[3, "'p\\x00q'", None], [2, "'r\\x00'", {"k": "\0"}]], \
                    (server, r.stdout)
            else:
                assert json.loads(r.stdout) == want, (name, server, r.stdout, r.stderr)
            got.append(re.sub(r'"(run_id|id|dag_id)":\s*"[^"]*"', "", r.stdout))
        if name not in ("dag",):
            assert got[0] == got[1], (name, got)


def test_a_source_holding_nul_is_exit_3_in_the_same_words_on_both_paths(daemon, workdir):
    """The daemon refused the request as JSON it would not read (exit 2,
    "a string holds \\u0000"); the embedded run named the problem (exit 3)."""
    (workdir / "srcnul.py").write_bytes(b'def f():\n    return "a\0b"\n')
    for verb in ("run", "validate"):
        seen = []
        for server in (None, daemon.url):
            r = run_cli(workdir, [verb, "srcnul.py", *SB], server=server)
            assert r.returncode == 3, (verb, server, r.returncode, r.stderr)
            seen.append((r.stdout, [l for l in r.stderr.splitlines() if "--sandbox" not in l]))
        assert seen[0] == seen[1] and "the file contains NUL bytes" in seen[0][1][0], (verb, seen)


def test_deploy_prints_an_invalid_file_as_run_does(daemon, workdir):
    """deploy printed a 422's message alone ("the file contains NUL bytes…"),
    run printed "ValidationError: …"; and run printed a syntax error's type
    twice, before its location ("SyntaxError: s.py:1:7: SyntaxError: …")."""
    (workdir / "srcnul.py").write_bytes(b'def f():\n    return "a\0b"\n')
    (workdir / "syntax.py").write_text("def f(:\n    return 1\n")
    for name, first in (("srcnul.py", "ValidationError: the file contains NUL bytes"),
                        ("syntax.py", "syntax.py:1:7: SyntaxError: invalid syntax")):
        lines = []
        for args, server in ((["run", name, *SB], None), (["run", name, *SB], daemon.url),
                             (["deploy", name, "--name", "bad"], daemon.url)):
            r = run_cli(workdir, args, server=server)
            assert r.returncode == 3, (args, server, r.stderr)
            lines.append([l for l in r.stderr.splitlines() if "--sandbox" not in l][0])
        assert lines == [lines[0]] * 3 and lines[0].startswith(first), (name, lines)


def test_json_args_that_are_not_json_say_why(workdir):
    r = run_cli(workdir, ["run", "f.py", "--json-args", "[1,", *SB])
    assert r.returncode == 2 and "--json-args is not JSON: " in r.stderr, r.stderr


HOLD_READER = '''
import time, pysprinter

def f():
    p = pysprinter.data_path("held")
    print("ready", flush=True)
    time.sleep(1.5)
    return open(p).read()
'''


def test_a_dataset_removed_while_a_run_reads_it_stays_whole_for_that_run(daemon, workdir, tmp_path):
    """`data rm` deleted the content at once: a run given --data saw its
    file vanish mid-run (FileNotFoundError). The run holds the content
    (a shared flock on the object) until it ended; the name goes at once,
    and the content with the last run reading it."""
    (workdir / "held.py").write_text(HOLD_READER)
    src = tmp_path / "held.txt"
    src.write_text("kept\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    for server, objects in ((None, workdir / "home" / "data" / "objects"),
                            (daemon.url, daemon.home / "data" / "objects")):
        before = set(os.listdir(objects)) if objects.exists() else set()
        assert run_cli(workdir, ["data", "put", "held", str(src)], server=server).returncode == 0
        assert len(set(os.listdir(objects)) - before) == 1
        pre = ["--server", server] if server else []
        p = subprocess.Popen([str(CLI), *pre, "run", "held.py", "--data", "held", "--json", *SB], env=env,
                             cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for line in p.stderr:  # --json: the function's own stdout comes on stderr
                if line.strip() == "ready":
                    break
            r = run_cli(workdir, ["data", "rm", "held"], server=server)
            assert r.returncode == 0, r.stderr
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
        assert (p.returncode, out) == (0, '"kept\\n"\n'), (server, p.returncode, out, err)
        assert run_cli(workdir, ["data", "get", "held"], server=server).returncode != 0
        assert set(os.listdir(objects)) == before, (server, os.listdir(objects))


REFUSED_TASKS = {
    "syntax": (b"@requirements({})\ndef f(:\n    return 1\n", "refused_syntax.py:2:7: SyntaxError: invalid syntax"),
    "nul": (b'@requirements({})\ndef f():\n    return "x\0y"\n', "the file contains NUL bytes"),
    "arity": (b"@requirements({})\ndef f(a, b):\n    return 1\n", "missing"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED_TASKS))
def test_a_pipeline_whose_task_is_refused_prints_the_same_bytes_on_both_paths(daemon, workdir, kind):
    """A daemon answered the DAG run's id before its tasks were validated,
    so `dag run --server` printed "dag ID (p.yaml)" above the error where
    the embedded run (which refuses before any id) printed only the error;
    and a task file holding NUL was a 400 "field 'files' holds a NUL
    character" instead of the file's own check."""
    source, want = REFUSED_TASKS[kind]
    (workdir / f"refused_{kind}.py").write_bytes(source)
    (workdir / f"refused_{kind}.yaml").write_text(f"tasks:\n  a:\n    file: refused_{kind}.py\n")
    seen = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["dag", "run", f"refused_{kind}.yaml", *([] if server else SB)], server=server)
        seen[server] = (r.returncode, r.stdout, [l for l in r.stderr.splitlines() if "--sandbox" not in l])
        assert r.returncode == 3, (server, r)
        assert want in r.stderr and "dag " not in r.stderr.split("pysprinter: ")[0], (server, r.stderr)
    assert seen[None] == seen[daemon.url]


WHERE = '''
@requirements({})
def f(kind: str = "raise"):
    if kind == "file":
        return __file__
    raise ValueError("from " + __name__)
'''


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_file_in_another_directory_is_named_by_its_base_name_on_both_paths(daemon, workdir, how):
    """Embedded passed the path as typed to the engine: a traceback read
    File "sub/where.py" (or the host's absolute path) and __file__ named the
    host directory, where a daemon (which gets the base name) said
    "where.py"; so did a validation error's location."""
    (workdir / "sub").mkdir(exist_ok=True)
    (workdir / "sub" / "where.py").write_text(WHERE)
    (workdir / "sub" / "where_bad.py").write_text("@requirements({})\ndef f(:\n    pass\n")
    path = "sub/where.py" if how == "relative" else str(workdir / "sub" / "where.py")
    bad = path.replace("where.py", "where_bad.py")
    seen = {}
    for server in (None, daemon.url):
        raised = run_cli(workdir, ["run", path, *([] if server else SB)], server=server)
        assert raised.returncode == 1 and 'File "where.py", line 6, in f' in raised.stderr, (server, raised.stderr)
        file = run_cli(workdir, ["run", path, "--kind", "file", *([] if server else SB)], server=server)
        assert file.returncode == 0 and file.stdout.strip().endswith("where.py"), (server, file)
        assert str(workdir) not in file.stdout and "sub/" not in file.stdout, (server, file.stdout)
        invalid = run_cli(workdir, ["validate", bad], server=server)
        assert invalid.returncode == 3 and invalid.stderr.startswith("where_bad.py:2:7: SyntaxError"), invalid
        seen[server] = [(p.returncode, p.stdout, [l for l in p.stderr.splitlines() if "--sandbox" not in l])
                        for p in (raised, file, invalid)]
    assert seen[None] == seen[daemon.url]


@pytest.mark.parametrize("opts,words", [
    (["--index-url", "http://127.0.0.1:9/simple/"], "--index-url is the server's setting"),
    (["--find-links", "wheels"], "--find-links is the server's setting"),
    (["--index-url", "http://127.0.0.1:9/simple/", "--find-links", "wheels"],
     "--index-url and --find-links are the server's setting"),
])
def test_package_index_options_say_they_are_ignored_with_a_server(daemon, workdir, opts, words):
    """The daemon resolves against its own config's index: --index-url and
    --find-links were dropped without a word, so a user saw another
    version of a package than the same command printed embedded."""
    for verb in (["run", "f.py", "--kind", "int"], ["dag", "run", "pipe.yaml", "--no-cache"]):
        r = run_cli(workdir, [*verb, *opts], server=daemon.url)
        assert r.returncode == 0, r
        assert f"pysprinter: warning: {words} (its config's index:); ignored with --server" in r.stderr, r.stderr


def test_env_verbs_without_a_server_form_say_they_act_here(daemon, workdir):
    """`env ls --server` listed the local store silently, where every other
    verb acts on the server (`lock` has a server form: test_packages.py).
    `env ls` has one now (GET /v1/envs, test_cli_env_parity.py); `env
    prune` has none and says so."""
    verb = ["env", "prune", "--budget", "1G"]
    r = run_cli(workdir, verb, server=daemon.url)
    assert r.returncode == 0, r
    assert ("pysprinter: warning: env prune acts on this machine's "
            "package store and index, not on the server") in r.stderr, r.stderr
    assert "acts on this machine" not in run_cli(workdir, verb).stderr
    r = run_cli(workdir, ["env", "ls"], server=daemon.url)
    assert r.returncode == 0 and "acts on this machine" not in r.stderr, r
    r = run_cli(workdir, ["lock", "step.py::one"], server=daemon.url)
    assert r.returncode == 0 and "acts on this machine" not in r.stderr, r


def test_a_non_ascii_parameter_name_is_passed_by_every_form_on_both_paths(daemon, workdir):
    """Python names may be non-ASCII (PEP 3131); the CLI refused `--é v`,
    `-k é=v` and `--json-kwargs '{"é": …}'` as "not a valid parameter name"
    while the validation error listed é among the parameters."""
    (workdir / "uni.py").write_text('@requirements({})\ndef f(é: str = "u", naïve: int = 0):\n    return [é, naïve]\n')
    for server in (None, daemon.url):
        sb = [] if server else SB
        for args, want in ((["--é", "v"], ["v", 0]), (["-k", "é=v", "--naïve", "3"], ["v", 3]),
                           (["--json-kwargs", '{"é": "w"}'], ["w", 0])):
            r = run_cli(workdir, ["run", "uni.py", *args, "--json", *sb], server=server)
            assert (r.returncode, json.loads(r.stdout or "null")) == (0, want), (server, args, r.stderr)
        r = run_cli(workdir, ["run", "uni.py", "--ü", "1", *sb], server=server)
        assert r.returncode == 3 and "unexpected keyword argument 'ü' (parameters: é, naïve)" in r.stderr, r


def test_an_unknown_secret_is_refused_before_anything_runs_in_the_same_words_on_both_paths(daemon, workdir):
    """A DAG task naming a secret nobody set: a daemon refused the pipeline
    (404, exit 2, `task 't': no secret named 'API_KEY'`) while an embedded
    dag run started it, failed the task and exited 3; `run --secret` said
    `(pysprinter secret set NAME)` through a daemon and the name embedded."""
    (workdir / "sec.py").write_text('import os\n@requirements({})\ndef s():\n    return os.environ.get("NOPE_KEY")\n')
    (workdir / "sec.yaml").write_text("tasks:\n  t:\n    file: sec.py\n    secrets: [NOPE_KEY]\n")
    seen = {}
    for server in (None, daemon.url):
        run = run_cli(workdir, ["run", "sec.py", "--secret", "NOPE_KEY", *([] if server else SB)], server=server)
        dag = run_cli(workdir, ["dag", "run", "sec.yaml", *([] if server else SB)], server=server)
        seen[server] = [(p.returncode, p.stdout, [l for l in p.stderr.splitlines() if "--sandbox" not in l])
                        for p in (run, dag)]
    hint = "no secret named 'NOPE_KEY' (pysprinter secret set NOPE_KEY)"
    assert seen[None] == [(2, "", [f"pysprinter: {hint}"]), (2, "", [f"pysprinter: task 't': {hint}"])], seen
    assert seen[daemon.url] == seen[None]


def test_an_ambiguous_id_prefix_is_worded_as_embedded(daemon, workdir):
    """`show r` through a daemon printed "run: the id prefix matches
    several" (code "ambiguous", which docs/api.md does not list) where the
    embedded path says which prefix and what to do."""
    for server in (None, daemon.url):
        for _ in range(2):
            assert run_cli(workdir, ["run", "f.py", "--kind", "int", *([] if server else SB)],
                           server=server).returncode == 0
        for verb, what in ((["show", "r"], "runs"), (["dag", "status", "d"], "DAG runs")):
            if verb[0] == "dag":
                for _ in range(2):
                    run_cli(workdir, ["dag", "run", "pipe.yaml", *([] if server else SB)], server=server)
            r = run_cli(workdir, verb, server=server)
            assert (r.returncode, r.stderr) == (2, f"pysprinter: '{verb[-1]}' matches several {what}; "
                                                   "give more of the id\n"), (server, r)


CHAIN_ENV = '''
import os
from pysprinter import output_dir

def g(x=None):
    with open(output_dir() + "/seen.txt", "w") as f:
        f.write(os.environ.get("CHAIN_X", "unset"))
    return [x, os.environ.get("CHAIN_X", "unset")]
'''


def test_chain_applies_env_secret_output_data_and_no_cache_on_both_paths(daemon, workdir):
    """chain parsed run's --env, --secret, --output-data and --no-cache
    and dropped them: the steps saw no variable, an unknown secret ran,
    nothing was stored, the steps were served from the memo; exit 0."""
    (workdir / "chain_env.py").write_text(CHAIN_ENV)
    for server in (None, daemon.url):
        sb = [] if server else SB
        r = run_cli(workdir, ["chain", "chain_env.py", "chain_env.py", "--env", "CHAIN_X=1", "-q", *sb], server=server)
        assert (r.returncode, r.stdout) == (0, '[[null, "1"], "1"]\n'), (server, r)
        r = run_cli(workdir, ["chain", "chain_env.py", "--secret", "NOPE_CHAIN", *sb], server=server)
        assert r.returncode == 2 and "no secret named 'NOPE_CHAIN'" in r.stderr, (server, r)
        r = run_cli(workdir, ["chain", "chain_env.py", "chain_env.py", "--output-data", "chained", "--no-cache", *sb],
                    server=server)
        assert r.returncode == 0 and "2 succeeded" in r.stderr and "cached" not in r.stderr, (server, r.stderr)
        listed = json.loads(run_cli(workdir, ["data", "ls", "chained", "--json"], server=server).stdout)
        assert [v["version"] for v in listed] == [1], (server, listed)
        r = run_cli(workdir, ["chain", "chain_env.py", "--output-file", "o.txt", *sb], server=server)
        assert r.returncode == 2 and "--output-file is run's option" in r.stderr, (server, r)


PAIR = """
def two(a, b=None):
    return [a, b]
"""


def test_chain_a_step_after_arguments_starts_the_next_step_on_both_paths(daemon, workdir):
    """`chain t.py::two -a 1 -a 2 t.py::two` gave the second t.py::two to
    the first step as a third argument (exit 3, "takes 2 positional
    arguments but 3 were given"): a word FILE.py or FILE::FUNC is a step
    wherever it stands; a value (after -a, --NAME, or --) stays a value."""
    (workdir / "pair.py").write_text(PAIR)
    out = {}
    for server in (None, daemon.url):
        def chain(*args):
            r = run_cli(workdir, ["chain", "--json", *SB, *args], server=server)
            return r.returncode, r.returncode == 0 and json.loads(r.stdout)
        assert chain("pair.py::two", "-a", "1", "-a", "2", "pair.py::two") == (0, [["1", "2"], None]), server
        assert chain("pair.py::two", "-a", "1", "pair.py::two", "pair.py") == (0, [[["1", None], None], None])
        assert chain("pair.py::two", "-a", "pair.py::two") == (0, ["pair.py::two", None]), server
        assert chain("pair.py::two", "-a", "1", "--b", "pair.py") == (0, ["1", "pair.py"]), server
        assert chain("pair.py::two", "--", "1", "pair.py") == (0, ["1", "pair.py"]), server
        r = run_cli(workdir, ["chain", "pair.py::two", "-a", "1", "pair.py::no-name", *SB], server=server)
        out[server] = r
        assert r.returncode == 2 and "'no-name' is not a valid function name" in r.stderr, (server, r)
    assert out[None].stderr == out[daemon.url].stderr


def test_an_index_password_never_reaches_a_tenant_or_the_cli(tmp_path, workdir, empty_index):
    """A daemon whose index URL carries credentials showed them to every
    tenant: in GET /v1/envs and in a run's error ("GET http://deploy:
    S3CRET@…/simple/x/: …", "no project named … (index http://deploy:
    S3CRET@…)"). pip shows such a URL as http://deploy:****@host/."""
    host = empty_index.url.split("://", 1)[1]
    secret_url = f"http://deploy:S3CRETTOKEN@{host}"
    closed = f"http://TOKENONLY@127.0.0.1:{free_port()}/simple/"
    for url, shown in ((secret_url, f"http://deploy:****@{host}"), (closed, "http://****@127.0.0.1:")):
        d = Daemon(tmp_path / f"cred{len(shown)}", sandbox="none" if sandbox_args() else None,
                   config_extra=f"index:\n  url: {url}\n")
        d.start()
        try:
            st, envs = d.call("GET", "/v1/envs")
            assert st == 200 and envs["index_url"].startswith(shown), envs
            (workdir / "needs.py").write_text(UNKNOWN)
            outs = [run_cli(workdir, ["run", "needs.py", *SB], extra_env={"PYSPRINTER_INDEX_URL": url})]
            outs.append(run_cli(workdir, ["run", "needs.py"], server=d.url,
                                extra_env={"PYSPRINTER_TOKEN": TOKENS["alice"]}))
            st, run = d.call("POST", "/v1/runs?wait=true", {"source": UNKNOWN})
            for p in outs:
                assert p.returncode == 4 and shown in p.stderr, p
            texts = [p.stdout + p.stderr for p in outs] + [json.dumps(envs), json.dumps(run)]
            assert not [t for t in texts if "S3CRETTOKEN" in t or "TOKENONLY" in t], texts
        finally:
            d.stop()


NAMED_LIKE_OURS = '''
import ast, os, resource, signal, time
from pysprinter import output_dir

class ValidationError(Exception):
    pass

class InternalError(Exception):
    pass

@requirements({})
def f(kind: str):
    if kind == "validation":
        raise ValidationError("bad age")
    if kind == "internal":
        raise InternalError("server closed the connection")
    if kind == "syntax":
        return ast.parse("x = = 1")
    if kind == "fsize":
        limit, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if limit == resource.RLIM_INFINITY:  # --sandbox=none sets none
            limit = 1 << 20
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        with open(os.path.join(output_dir(), "big"), "wb", buffering=0) as fh:
            fh.seek(limit)
            try:
                fh.write(b"x")
                fh.flush()
            except OSError as e:
                return [e.errno, e.strerror]
        return "written"
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
    return "slept"
'''


@pytest.mark.parametrize("kind,code,last", [
    ("validation", 1, "ValidationError: bad age"),
    ("internal", 1, "InternalError: server closed the connection"),
    ("syntax", 1, "SyntaxError: invalid syntax"),
])
def test_an_exception_named_like_pysprinters_own_is_the_functions_failure(daemon, workdir, kind, code, last):
    """The engine classified a failure by its class name: a user's
    ValidationError (pydantic, jsonschema) ended exit 3 'invalid' without
    its traceback, an InternalError (psycopg2) exit 7 as ours, and a
    SyntaxError raised while the function ran (ast.parse) exit 3."""
    (workdir / "named.py").write_text(NAMED_LIKE_OURS)
    seen = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "named.py", "--kind", kind, *([] if server else SB)], server=server)
        assert r.returncode == code and "Traceback (most recent call last)" in r.stderr, (server, r)
        assert r.stderr.rstrip("\n").endswith(last), (server, r.stderr)
        seen[server] = (r.returncode, r.stdout, [l for l in r.stderr.splitlines() if "--sandbox" not in l])
    assert seen[None] == seen[daemon.url]
    # pysprinter's own validation is still exit 3, without a traceback.
    r = run_cli(workdir, ["run", "named.py", "--nope", "1"], server=daemon.url)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r


def test_a_write_past_the_file_size_limit_is_an_oserror_on_both_paths(daemon, workdir):
    """SIGXFSZ was left at its default (Python is started without its
    handlers): the write killed the run, exit 5 'file size limit', where
    python3 under `ulimit -f` raises OSError(EFBIG) (docs/data.md)."""
    (workdir / "named.py").write_text(NAMED_LIKE_OURS)
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "named.py", "--kind", "fsize", "--json", *([] if server else SB)], server=server)
        assert (r.returncode, json.loads(r.stdout or "null")) == (0, [27, "File too large"]), (server, r)


def test_a_run_gets_sigint_whoever_started_the_daemon(tmp_path, workdir):
    """A daemon started by a shell's `cmd &` or nohup has SIGINT ignored,
    and its workers inherited that: a run's os.kill(SIGINT) was ignored
    (exit 0, "slept") where embedded it is KeyboardInterrupt (exit 1)."""
    import signal as sig
    (workdir / "named.py").write_text(NAMED_LIKE_OURS)
    d = Daemon(tmp_path / "ign", sandbox="none" if sandbox_args() else None, args=["--no-auth"])
    old = {s: sig.signal(s, sig.SIG_IGN) for s in (sig.SIGINT, sig.SIGQUIT, sig.SIGHUP)}
    try:
        d.start()
    finally:
        for s, h in old.items():
            sig.signal(s, h)
    try:
        seen = {}
        for server in (None, d.url):
            r = run_cli(workdir, ["run", "named.py", "--kind", "sigint", *([] if server else SB)], server=server)
            seen[server] = (r.returncode, r.stdout, r.stderr.splitlines()[-1:])
        assert seen[None] == seen[d.url] == (1, "", ["KeyboardInterrupt"]), seen
    finally:
        d.stop()


@pytest.mark.parametrize("text,where", [
    ("@requirements({f'alpha': ''})", "rq.py:1:16: ValidationError: a requirement name must be a string literal, "
                                      "not an f-string"),
    ("@requirements({'alpha': V})", "rq.py:1:25: ValidationError: requirement 'alpha': the version must be a "
                                    "string literal ('' means any version), not the name V"),
    ("@requirements({'alpha': 2})", "rq.py:1:25: ValidationError: requirement 'alpha': the version must be a "
                                    "string literal ('' means any version), not int 2"),
    ("@requirements({'alpha': '1', 'alpha': '2'})", "rq.py:1:30: ValidationError: requirement 'alpha' is given twice"),
    ("@requirements({'alpha': ''})\n@requirements({'beta': '==1'})",
     "rq.py:2:2: ValidationError: f() has a second @requirements; give its requirements in one dict"),
])
def test_a_requirements_dict_that_is_not_literal_is_named_without_an_address(daemon, workdir, text, where):
    """`@requirements({f'alpha': ''})` printed "malformed node or string on
    line 1: <ast.JoinedStr object at 0x7f2a…>": other bytes on each run and
    on each path. A second stacked @requirements was ignored (its pins
    dropped), a key given twice kept its last value."""
    (workdir / "rq.py").write_text(f"V = '1'\n{text}\ndef f():\n    return 1\n".replace("V = '1'\n", "", 1)
                                   if "V" not in text else f"{text}\ndef f():\n    return 1\n")
    seen = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["validate", "rq.py"], server=server)
        assert r.returncode == 3 and r.stderr.startswith(where), (server, r.stderr)
        assert " at 0x" not in r.stderr
        seen[server] = r.stderr
    assert seen[None] == seen[daemon.url]


def test_dag_ctrl_c_prints_the_same_on_both_paths(daemon, workdir):
    """Ctrl-C on `dag run` cancels it embedded and on the server alike: exit
    130 and the same lines — each task's end (the server path printed
    "cancelling DAG run … on the server" instead of the tasks' lines)."""
    import signal as sig
    (workdir / "sleepy.yaml").write_text("tasks:\n  a: {file: f.py, kwargs: {kind: sleep}}\n"
                                         "  b: {file: f.py, kwargs: {kind: '${a}'}}\n")
    out = {}
    for server in (None, daemon.url):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
        pre = ["--server", server] if server else []
        p = subprocess.Popen([str(CLI), *pre, "dag", "run", "sleepy.yaml", "--no-cache", *SB], cwd=workdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        while not lines or lines[-1] != "a: running\n":
            lines.append(p.stderr.readline())
            assert lines[-1], (server, lines)
        p.send_signal(sig.SIGINT)
        o, e = p.communicate(timeout=60)
        assert p.returncode == 130, (server, o, e)
        norm = [re.sub(r"d[0-9a-z]{16}", "ID", re.sub(r" [0-9.]+m?s\b", " T", ln))
                for ln in "".join(lines[:-1]).splitlines() + e.splitlines() if "--sandbox" not in ln]
        out[server] = (o, sorted(norm))
        # `dag status` of that run exits as `dag run` did (it was 1, not 130).
        did = json.loads(run_cli(workdir, ["dag", "ls", "--json", "-n", "1"], server=server).stdout)[0]["id"]
        st = run_cli(workdir, ["dag", "status", did], server=server)
        assert st.returncode == 130 and "cancelled" in st.stdout, (server, st)
    assert "a: cancelled T: cancelled" in out[None][1], out
    assert out[None] == out[daemon.url]


def test_a_task_result_without_json_view_reaches_dependents_as_its_repr_on_both_paths(daemon, workdir):
    """docs/python.md: a result JSON cannot hold (NaN/Infinity, an int past
    64 bits, no JSON view) takes the repr() path and a downstream task gets
    the repr string. A DAG passed null instead, and a leaf printed `null`
    where `run` prints 1000000000000000000000000000000."""
    (workdir / "odd.py").write_text("def inf():\n    return float('inf')\n\ndef big():\n    return 10**30\n\n"
                                    "def show(x):\n    return repr(x)\n")
    (workdir / "odd.yaml").write_text("tasks:\n  a: {file: odd.py::inf}\n  b: {file: odd.py::show, args: ['${a}']}\n"
                                      "  c: {file: odd.py::big}\n")
    out = {}
    for server in (None, daemon.url):
        r = run_cli(workdir, ["dag", "run", "odd.yaml", "-q", *SB], server=server)
        assert r.returncode == 0, (server, r.stderr)
        out[server] = r.stdout
    assert json.loads(out[None]) == {"b": "'inf'", "c": "1000000000000000000000000000000"}, out
    assert out[None] == out[daemon.url]


def test_dag_ls_json_records_the_same_options_on_both_paths(daemon, workdir):
    """`dag ls --json` shows the options a DAG run ran with: embedded
    recorded concurrency 4 (the default it used), the daemon 0."""
    (workdir / "conc.yaml").write_text("concurrency: 3\ntasks:\n  a: {file: step.py, function: one}\n")
    out = {}
    for server in (None, daemon.url):
        for f, extra in (("pipe.yaml", []), ("conc.yaml", []), ("pipe.yaml", ["--concurrency", "7"])):
            assert run_cli(workdir, ["dag", "run", f, "-q", *SB, *extra], server=server).returncode == 0
            r = run_cli(workdir, ["dag", "ls", "--json", "-n", "1"], server=server)
            out.setdefault(server, []).append(json.loads(r.stdout)[0]["options"]["concurrency"])
    assert out[None] == [4, 3, 7], out
    assert out[None] == out[daemon.url]


def test_dag_ls_status_lists_the_dag_runs_of_those_states_on_both_paths(daemon, workdir):
    """`dag ls --status` mirrors `ps --status`: the newest N DAG runs in
    those states (a list, or the option repeated), the same rows on both
    paths; a word that is no state is exit 2 naming the states, before any
    backend is asked."""
    out = {}
    for server in (None, daemon.url):
        assert run_cli(workdir, ["dag", "run", "fail.yaml", "-q", *SB], server=server).returncode == 1
        assert run_cli(workdir, ["dag", "run", "pipe.yaml", "-q", *SB], server=server).returncode == 0
        failed = json.loads(run_cli(workdir, ["dag", "ls", "--status", "failed", "--json", "-n", "1"],
                                    server=server).stdout)
        assert [g["status"] for g in failed] == ["failed"], (server, failed)
        both = run_cli(workdir, ["dag", "ls", "--status", "FAILED,succeeded", "--json", "-n", "2"], server=server)
        again = run_cli(workdir, ["dag", "ls", "--status", "failed", "--status=succeeded", "--json", "-n", "2"],
                        server=server)
        assert both.returncode == again.returncode == 0 and both.stdout == again.stdout, (server, both, again)
        assert [g["status"] for g in json.loads(both.stdout)] == ["succeeded", "failed"], (server, both.stdout)
        human = run_cli(workdir, ["dag", "ls", "--status", "cancelled,failed", "-n", "1"], server=server)
        assert human.returncode == 0, human
        header, row = human.stdout.splitlines()
        assert row.split()[0] == failed[0]["id"], (server, row, failed)
        bad = run_cli(workdir, ["dag", "ls", "--status", "failed,lost"], server=server)
        out[server] = (header, row.split()[1], human.stderr, bad.returncode, bad.stdout, bad.stderr)
    assert out[None] == out[daemon.url], out
    assert out[None][1:3] == ("failed", ""), out
    assert out[None][3:] == (2, "", "pysprinter: dag ls: unknown state 'lost' (validating, running, succeeded, "
                                    "failed, cancelled, invalid, deps_failed)\nTry 'pysprinter dag --help'.\n"), out


INV_READER = '''
import pysprinter

def f(tag: str = "none"):
    p = pysprinter.data_path("invdata")
    return [tag, open(p).read()]
'''


def test_invoke_mounts_the_datasets_it_names(daemon, workdir):
    """`invoke NAME --data x` ran the function without the dataset and
    said nothing (the invoke API takes `data`; the CLI did not send it)."""
    (workdir / "invreader.py").write_text(INV_READER)
    (workdir / "inv.txt").write_text("invoked\n")
    assert run_cli(workdir, ["data", "put", "invdata", "inv.txt"], server=daemon.url).returncode == 0
    assert run_cli(workdir, ["deploy", "invreader.py", "--name", "invreader"], server=daemon.url).returncode == 0
    r = run_cli(workdir, ["invoke", "invreader", "--tag", "t", "--data", "invdata", "--json"], server=daemon.url)
    assert r.returncode == 0 and json.loads(r.stdout) == ["t", "invoked\n"], r


@pytest.mark.parametrize("opt", [["--sandbox", "none"], ["--sandbox=none"], ["--no-cache"], ["--output-data", "out"],
                                 ["--secret", "KEY"], ["--env", "A=b"], ["--index-url", "http://127.0.0.1:9/simple"],
                                 ["--find-links", "."], ["--allow-sdist"]])
def test_invoke_and_schedule_add_refuse_what_a_fire_cannot_carry_on_both_paths(daemon, workdir, opt):
    """A run option a deployed function's invocation has no place for was
    dropped without a word by invoke (and by schedule add, which takes
    invoke's options): a usage error naming it, the same bytes embedded and
    against a server, and no run or schedule made."""
    assert run_cli(workdir, ["deploy", "f.py", "--name", "fopt"], server=daemon.url).returncode == 0
    before = daemon.call("GET", "/v1/runs")[1]["runs"]
    name = opt[0].split("=")[0]
    for verb in (["invoke", "fopt"], ["schedule", "add", "x", "--every", "1h", "fopt"]):
        out = []
        for server in (None, daemon.url):
            r = run_cli(workdir, [*verb, "--kind", "dict", *opt], server=server)
            out.append((r.returncode, r.stdout, r.stderr))
        assert out[0] == out[1], (verb, out)
        assert out[0][0] == 2 and out[0][1] == "" and out[0][2].startswith(f"pysprinter: {name} "), (verb, out)
    assert daemon.call("GET", "/v1/runs")[1]["runs"] == before
    assert daemon.call("GET", "/v1/schedules")[1]["schedules"] == []


def test_deploy_prints_the_parser_warnings_as_run_does(daemon, workdir):
    """The validation's answer carries the parser's SyntaxWarnings and run
    prints them on stderr; a deploy of the same file printed nothing. It
    prints the same bytes now (a single deploy, with --json too, and a
    stack's)."""
    (workdir / "warns.py").write_text(WARNS)
    run = run_cli(workdir, ["run", "warns.py", *SB])
    want = "".join(l for l in run.stderr.splitlines(True) if "--sandbox" not in l)
    assert run.returncode == 0 and want.startswith("warns.py:5: SyntaxWarning: "), run
    r = run_cli(workdir, ["deploy", "warns.py", "--name", "warns"], server=daemon.url)
    assert (r.returncode, r.stderr) == (0, want) and r.stdout.startswith("deployed warns version "), r
    r = run_cli(workdir, ["deploy", "warns.py", "--name", "warns", "--json"], server=daemon.url)
    assert (r.returncode, r.stderr) == (0, want), r
    assert json.loads(r.stdout)["name"] == "warns" and "warnings" not in json.loads(r.stdout), r.stdout
    (workdir / "wstack.yaml").write_text("functions:\n  warnstack:\n    file: warns.py\n")
    r = run_cli(workdir, ["deploy", "-f", "wstack.yaml"], server=daemon.url)
    assert (r.returncode, r.stdout, r.stderr) == (0, "created function warnstack\n", want), r


def wait_for_end(workdir, rid, server, timeout=60):
    import time
    deadline = time.monotonic() + timeout
    while True:
        run = json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_run_detach_prints_the_id_and_returns_while_the_run_goes_on_on_both_paths(daemon, workdir):
    """capture_output waits for the end of stdout and stderr: a detached run
    whose processes held them would keep this call for the run's 30 s."""
    for server in (None, daemon.url):
        r = run_cli(workdir, ["run", "f.py", "--kind", "sleep", "--detach", *SB], server=server)
        assert r.returncode == 0, (server, r)
        rid = r.stdout.strip()
        assert r.stdout == rid + "\n" and rid.startswith("r"), (server, r.stdout)
        assert r.stderr.splitlines()[-1] == (f"pysprinter: run {rid} goes on detached: `pysprinter logs -f {rid}` "
                                             f"follows it, `pysprinter show {rid}` tells how it ended"), r.stderr
        run = json.loads(run_cli(workdir, ["show", rid, "--json"], server=server).stdout)
        assert run["id"] == rid and run["status"] in ("queued", "running"), (server, run)
        c = run_cli(workdir, ["cancel", rid], server=server)
        assert c.returncode == 0, (server, c)
        assert wait_for_end(workdir, rid, server)["status"] == "cancelled"


def test_a_detached_runs_output_and_result_are_its_logs_and_record_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        r = run_cli(workdir, ["-q", "run", "f.py", "--kind", "dict", "--detach", *SB], server=server)
        assert (r.returncode, r.stderr.count("goes on detached")) == (0, 0), (server, r)
        rid = r.stdout.strip()
        f = run_cli(workdir, ["logs", "-f", rid], server=server)
        assert (f.returncode, f.stdout) == (0, "hello from f\n"), (server, f)
        run = wait_for_end(workdir, rid, server)
        assert (run["status"], run["result"]) == ("succeeded", {"a": [1, 2.5], "é": None}), (server, run)
        j = run_cli(workdir, ["run", "f.py", "--detach", "--json", *SB], server=server)
        assert j.returncode == 0 and "goes on detached" not in j.stderr, (server, j)
        assert json.loads(j.stdout)["id"].startswith("r")
        run = wait_for_end(workdir, json.loads(j.stdout)["id"], server)
        assert (run["status"], run["result"]) == ("succeeded", 0.1), (server, run)


def test_a_detached_run_that_cannot_start_ends_saying_why_on_both_paths(daemon, workdir):
    """A server refuses a missing dataset when the run starts, long after
    its 202: embedded, the detached run is recorded the same way."""
    seen = []
    for server in (None, daemon.url):
        plain = run_cli(workdir, ["run", "f.py", "--data", "no-such-dataset", *SB], server=server)
        assert plain.returncode == 3, (server, plain)
        r = run_cli(workdir, ["-q", "run", "f.py", "--data", "no-such-dataset", "--detach", *SB], server=server)
        assert r.returncode == 0 and r.stdout.strip().startswith("r"), (server, r)
        run = wait_for_end(workdir, r.stdout.strip(), server)
        assert (run["status"], run["exit_code"], run["error"]["type"]) == ("error", 3, "DataError"), (server, run)
        assert "pysprinter: " + run["error"]["message"] in plain.stderr, (server, run, plain.stderr)
        seen.append(run["error"]["message"])
        r = run_cli(workdir, ["run", "missing.py", "--detach"], server=server)
        assert (r.returncode, r.stdout) == (2, "") and "cannot read missing.py" in r.stderr
    assert seen[0] == seen[1]


@pytest.mark.parametrize("args", [["validate", "f.py"], ["lock", "f.py"], ["chain", "f.py"],
                                  ["map", "f.py", "--over", "in.jsonl"],
                                  ["schedule", "add", "s", "--every", "1h", "hp"]])
def test_verbs_that_answer_with_what_they_found_refuse_detach_on_both_paths(daemon, workdir, args):
    (workdir / "in.jsonl").write_text('{"kind": "none"}\n')
    seen = []
    for server in (None, daemon.url):
        r = run_cli(workdir, [*args, "--detach"], server=server)
        assert r.returncode == 2 and "--detach" in first_line(r.stderr), (server, r)
        seen.append(first_line(r.stderr))
    if args[0] != "schedule":  # a server-only verb: embedded it says it needs one first
        assert seen[0] == seen[1]


def test_invoke_detach_prints_the_run_id_of_the_call_and_of_an_event(daemon, workdir):
    (workdir / "handler.py").write_text("def handler(event, context):\n    return event\n")
    r = run_cli(workdir, ["deploy", "handler.py::handler", "--name", "hd"], server=daemon.url)
    assert r.returncode == 0, r.stderr
    for args in (["-k", "event={\"n\": 1}", "-k", "context=null"], ["--payload", '{"n": 1}']):
        r = run_cli(workdir, ["-q", "invoke", "hd", *args, "--detach"], server=daemon.url)
        assert r.returncode == 0 and r.stderr == "", (args, r)
        run = wait_for_end(workdir, r.stdout.strip(), daemon.url)
        assert run["status"] == "succeeded", (args, run)


def test_dag_run_detach_prints_the_id_and_returns_while_the_tasks_go_on_on_both_paths(daemon, workdir):
    (workdir / "slow.yaml").write_text("tasks:\n  nap: {file: f.py, kwargs: {kind: sleep}}\n")
    import time
    for server in (None, daemon.url):
        r = run_cli(workdir, ["dag", "run", "slow.yaml", "--detach", "--no-cache", *SB], server=server)
        assert r.returncode == 0, (server, r)
        did = r.stdout.strip()
        assert r.stdout == did + "\n" and did.startswith("d"), (server, r.stdout)
        assert r.stderr.splitlines()[-1] == (f"pysprinter: DAG run {did} goes on detached: `pysprinter dag status "
                                             f"{did}` shows its tasks, `pysprinter dag cancel {did}` stops it"), r
        dag = json.loads(run_cli(workdir, ["dag", "status", did, "--json"], server=server).stdout)
        assert dag["id"] == did and dag["status"] in ("validating", "running"), (server, dag)
        c = run_cli(workdir, ["dag", "cancel", did], server=server)
        assert c.returncode in (0, 130), (server, c)
        deadline = time.monotonic() + 60
        while dag["status"] in ("validating", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            dag = json.loads(run_cli(workdir, ["dag", "status", did, "--json"], server=server).stdout)
        assert dag["status"] == "cancelled", (server, dag)
        j = run_cli(workdir, ["dag", "run", "pipe.yaml", "--detach", "--json", *SB], server=server)
        assert j.returncode == 0 and json.loads(j.stdout)["id"].startswith("d"), (server, j)


class HeldOrigin:
    """A URL dataset's origin that answers at once until `held` is clear,
    then holds each request until it is set again: a run that uses the
    dataset revalidates it (PYSPRINTER_DATA_TTL 0) before the engine has
    the run, so an embedded `run --detach` waits there, before its record
    and before the hand-over of its id."""

    def __init__(self):
        import http.server
        import threading
        self.held = threading.Event()
        self.held.set()
        self.waiting = threading.Event()
        origin = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if not origin.held.is_set():
                    origin.waiting.set()
                    origin.held.wait(60)
                body = b"rows\n"
                self.send_response(200)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rows.csv"

    def stop(self):
        self.held.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_ctrl_c_before_a_detached_runs_id_is_printed_cancels_the_run(tmp_path, sig):
    """`run --detach` forks a child that owns the run; the parent waits for
    the run's record and prints its id. A Ctrl-C (or SIGTERM, SIGHUP) to
    the parent before that killed the parent alone: the run went on with
    its id never printed. The signal is forwarded: the run ends cancelled,
    the CLI says so and exits 130 as an interrupted `run` does, and no
    process of it is left."""
    import time
    work = tmp_path / "work"
    work.mkdir()
    (work / "held.py").write_text("def f():\n    return 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(tmp_path / "home"), PYSPRINTER_WORKER=str(WORKER), PYSPRINTER_SERVER="",
               NO_COLOR="1")

    def cli(*args):
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, cwd=work, timeout=60)

    origin = HeldOrigin()
    try:
        assert cli("data", "put", "rows", origin.url).returncode == 0
        origin.held.clear()
        p = subprocess.Popen([str(CLI), "run", "held.py", "--data", "rows", "--detach", *SB], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert origin.waiting.wait(30), "the detached run never asked the origin"
            assert json.loads(cli("ps", "--json").stdout) == [], "the run has a record already"
            p.send_signal(sig)
            time.sleep(0.3)   # the parent forwards it while the child still waits
            origin.held.set()
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    finally:
        origin.stop()
    assert (p.returncode, out, err.splitlines()[-1:]) == (130, "", ["pysprinter: cancelled"]), (p.returncode, out, err)
    runs = json.loads(cli("ps", "--json").stdout)
    assert [(r["filename"], r["status"]) for r in runs] == [("held.py", "cancelled")], runs
    deadline = time.monotonic() + 10
    while processes_in(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_in(work) == [], "a process of the interrupted run is left"


def test_a_detached_run_holds_none_of_the_callers_descriptors(workdir):
    """A harness's pipe lent to the CLI, or a closed stdin: the embedded
    child that owns the run keeps neither, so the caller sees its pipe's
    end when the CLI exits, not when the run ends."""
    import select
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    r, w = os.pipe()
    try:
        p = subprocess.run(["bash", "-c", f'exec 0<&-; exec "$0" -q run f.py --kind sleep --detach {SB[0]}', str(CLI)],
                           pass_fds=(w,), env=env, cwd=workdir, capture_output=True, text=True, timeout=60)
        os.close(w)
        assert p.returncode == 0 and p.stderr == "", p
        ready, _, _ = select.select([r], [], [], 20)
        assert ready and os.read(r, 1) == b"", "the detached run holds the caller's pipe"
    finally:
        os.close(r)
    rid = p.stdout.strip()
    assert json.loads(run_cli(workdir, ["show", rid, "--json"]).stdout)["status"] in ("queued", "running")
    # The child that owns the run: 0, 1 and 2 are /dev/null (with stdin
    # closed, a descriptor the child opened later must not have become one).
    owners = []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0] == str(CLI).encode() and b"--detach" in argv:
                owners.append({fd: os.readlink(proc / "fd" / str(fd)) for fd in (0, 1, 2)})
        except (OSError, IndexError):
            continue
    assert owners == [{0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}], owners
    assert run_cli(workdir, ["cancel", rid]).returncode == 0
    assert wait_for_end(workdir, rid, None)["status"] == "cancelled"


@pytest.mark.parametrize("args,hint", [
    (["dag", "status", "dabc"], "pysprinter: no DAG run 'dabc' (see `pysprinter dag ls`)"),
    (["dag", "cancel", "dabc"], "pysprinter: no DAG run 'dabc' (see `pysprinter dag ls`)"),
    (["show", "rabc"], "pysprinter: no run 'rabc' (see `pysprinter ps`)"),
    (["data", "get", "hinted@9"], "dataset 'hinted' has no version 9 (see `pysprinter data ls hinted`)"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_miss_names_the_listing_to_look_in_one_way_on_both_paths(daemon, workdir, args, hint):
    """Every "where to look" hint is the backquoted command, on both
    paths."""
    got = []
    for server in (None, daemon.url):
        assert run_cli(workdir, ["data", "put", "hinted", "words.txt"], server=server).returncode == 0
        r = run_cli(workdir, args, server=server)
        assert r.returncode == 2 and r.stdout == "", (server, r)
        assert hint in r.stderr and "(see:" not in r.stderr, (server, r.stderr)
        got.append(r.stderr)
    assert got[0] == got[1], got


def test_dag_resume_of_no_dag_run_names_dag_ls_as_dag_status_does(workdir):
    """`dag resume` of no DAG run said "(see: pysprinter dag ls)" where
    `dag status` says "(see `pysprinter dag ls`)". (With a server there is
    no `dag resume`: the daemon resumes its own DAG runs.)"""
    resume = run_cli(workdir, ["dag", "resume", "dabc"])
    status = run_cli(workdir, ["dag", "status", "dabc"])
    assert (resume.returncode, resume.stdout, resume.stderr) == (status.returncode, status.stdout, status.stderr) == (
        2, "", "pysprinter: no DAG run 'dabc' (see `pysprinter dag ls`)\n"), (resume, status)
