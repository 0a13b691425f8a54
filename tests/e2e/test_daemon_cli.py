"""The CLI in --server mode against a real pysprinterd: the same verbs and
exit codes as embedded, output streamed live, Ctrl-C cancels the remote run,
and the server-only verbs deploy / invoke / functions."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, module_daemon, point_cli

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

HELLO = """
@requirements({})
def hello(name: str, n: int = 1):
    for i in range(n):
        print("line", i)
    return {"hello": name, "n": n}
"""

SLOW = """
import time
def slow(seconds: float = 3):
    for i in range(int(seconds * 5)):
        print("tick", i, flush=True)
        time.sleep(0.2)
    return "done"
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "cli-daemon")


@pytest.fixture
def rcli(cli, d, tmp_path):
    """The CLI with PYSPRINTER_SERVER and PYSPRINTER_TOKEN set (alice)."""
    return point_cli(cli, d, tmp_path)


def test_run_validate_ps_show_logs(rcli, d):
    rcli.write("hello.py", HELLO)
    p = rcli("run", "hello.py", "-a", "bob", "--n", "2", check=0)
    assert p.stdout.splitlines()[:2] == ["line 0", "line 1"]
    assert json.loads(p.stdout.splitlines()[-1]) == {"hello": "bob", "n": 2}
    p = rcli("validate", "hello.py", "-a", "x", check=0)
    assert "ok (hello)" in p.stdout
    rcli.write("bad.py", "def f(:\n  pass\n")
    p = rcli("validate", "bad.py", check=3)
    p = rcli("run", "bad.py", check=3)
    p = rcli("ps", "--json", check=0)
    runs = json.loads(p.stdout)
    ok = [r for r in runs if r["status"] == "succeeded"][0]
    # The run happened on the server: the local store knows nothing.
    assert not (pathlib_home(rcli) / "pysprinter.db").exists() or ok["id"] not in \
        rcli("ps", "--json", env={"PYSPRINTER_SERVER": ""}).stdout
    p = rcli("show", ok["id"], "--json", check=0)
    assert json.loads(p.stdout)["result"] == {"hello": "bob", "n": 2}
    p = rcli("logs", ok["id"], check=0)
    assert p.stdout == "line 0\nline 1\n"
    p = rcli("show", "rnonexistent", check=2)
    assert "no run" in p.stderr


def pathlib_home(rcli):
    import pathlib
    return pathlib.Path(rcli.env["PYSPRINTER_HOME"])


def test_exit_codes_match_embedded(rcli):
    rcli.write("raise.py", "def f():\n    raise KeyError('k')\n")
    p = rcli("run", "raise.py", check=1)
    assert "KeyError" in p.stderr
    p = rcli("run", "raise.py", env={"PYSPRINTER_TOKEN": "wrong-token-000000000"}, check=6)
    assert "token" in p.stderr.lower()
    p = rcli("run", "raise.py", env={"PYSPRINTER_SERVER": "http://127.0.0.1:1"}, check=6)
    assert "cannot reach" in p.stderr


def test_token_from_config_file(rcli, tmp_path):
    cfg = tmp_path / "xdg" / "pysprinter"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"# pysprinter client\ntoken = {TOKENS['bob']}\n")
    rcli.write("hello.py", HELLO)
    env = {k: v for k, v in rcli.env.items() if k != "PYSPRINTER_TOKEN"}
    p = subprocess.run([str(CLI), "run", "hello.py", "-a", "cfg"], cwd=rcli.cwd, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # It ran as bob: alice cannot see it.
    p = rcli("ps", "--json", check=0)
    assert not any(r["args"] == ["cfg"] for r in json.loads(p.stdout))


def test_output_streams_live(rcli):
    rcli.write("slow.py", SLOW)
    proc = subprocess.Popen([str(CLI), "run", "slow.py", "--seconds", "3"], cwd=rcli.cwd, env=rcli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    first = proc.stdout.readline()
    t_first = time.time() - t0
    out, err = proc.communicate(timeout=60)
    total = time.time() - t0
    assert first.startswith("tick 0"), (first, err)
    assert proc.returncode == 0 and out.rstrip().endswith("done")
    assert total - t_first > 1.5, (t_first, total)


def test_ctrl_c_cancels_remote_run(rcli, d):
    rcli.write("slow.py", SLOW)
    proc = subprocess.Popen([str(CLI), "run", "slow.py", "--seconds", "60"], cwd=rcli.cwd, env=rcli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("tick 0")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # Ctrl-C is 130 on every path (docs/cli.md exit codes).
    assert proc.returncode == 130, (proc.returncode, err)
    assert "cancel" in err.lower()
    st, b = d.call("GET", "/v1/runs?limit=10")
    slow = [r for r in b["runs"] if r["function"] == "slow" and r["kwargs"] == {"seconds": "60"}]
    assert slow and slow[0]["status"] == "cancelled"


def test_deploy_invoke_functions(rcli):
    rcli.write("greet.py", HELLO)
    p = rcli("deploy", "greet.py", "--name", "greeter", check=0)
    assert "greeter version 1" in p.stdout
    p = rcli("deploy", "greet.py::hello", "--name", "greeter", check=0)
    assert "version 2" in p.stdout
    p = rcli("invoke", "greeter", "-a", "ann", "--n", "1", check=0)
    assert json.loads(p.stdout.splitlines()[-1]) == {"hello": "ann", "n": 1}
    p = rcli("invoke", "greeter::1", "-a", "v1", check=0)
    assert '"v1"' in p.stdout
    p = rcli("functions", "--json", check=0)
    fns = {f["name"]: f for f in json.loads(p.stdout)}
    assert fns["greeter"]["version"] == 2
    p = rcli("functions", check=0)
    assert "greeter" in p.stdout
    p = rcli("functions", "rm", "greeter", check=0)
    p = rcli("invoke", "greeter", "-a", "x", check=2)
    rcli.write("broken.py", "def f(:\n")
    p = rcli("deploy", "broken.py", "--name", "broken", check=3)


def test_server_only_verbs_need_a_server(cli):
    p = cli("functions", check=2)
    assert "--server" in p.stderr
