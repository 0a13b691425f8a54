"""`pysprinter dag|chain|data` and `run --data` against a real pysprinterd
(issue 5: every verb works remotely as it does embedded; issue 7: these
verbs). The CLI gets the server with --server and the token from
PYSPRINTER_TOKEN; the outputs and exit codes are the embedded verbs'."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, module_daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists() or not CLI.exists(), reason="pysprinterd or pysprinter is not built")

STEPS = """
import time

def load(n: int):
    return {"n": n, "items": list(range(n))}

def left(d):
    print("left running", flush=True)
    return sum(d["items"])

def right(d):
    return len(d["items"])

def boom(d):
    raise ValueError("no good")

def slow(seconds: float = 30):
    time.sleep(seconds)
    return "done"
"""

JOIN = """
def join(a, b):
    return {"sum": a, "len": b, "ratio": 0.1}
"""

DIAMOND = """
name: diamond
params:
  n: 5
tasks:
  load: {file: steps.py, function: load, args: ["${params.n}"]}
  left: {file: steps.py, function: left, args: ["${load}"]}
  right: {file: steps.py, function: right, args: ["${load}"]}
  join: {file: lib/join.py, function: join, args: ["${left}", "${right}"]}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "remote-dag")


@pytest.fixture
def rcli(cli, d, tmp_path):
    """`pysprinter VERB --server URL …` with alice's token in the environment
    (and no config file that could name another server)."""
    cli.env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"], HOME=str(tmp_path),
                   XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def run(verb, *args, **kw):
        return cli(verb, "--server", d.url, *args, **kw)
    run.write = cli.write
    run.cwd = cli.cwd
    run.env = cli.env
    return run


def pipeline(rcli, text=DIAMOND):
    rcli.write("pipe/steps.py", STEPS)
    rcli.write("pipe/lib/join.py", JOIN)
    return rcli.write("pipe/pipeline.yaml", text)


def dag_id(stderr):
    m = re.search(r"^dag (d\w+) \(", stderr, re.M)
    assert m, stderr
    return m.group(1)


def test_dag_run_diamond_status_ls_logs(rcli):
    pipeline(rcli)
    p = rcli("dag", "run", "pipe/pipeline.yaml", "--param", "n=6", "--no-cache", check=0)
    # The leaf's result, printed like run (compact in a pipe; 0.1 as stored).
    assert p.stdout.strip() == '{"sum": 15, "len": 6, "ratio": 0.1}', p.stdout
    assert "join: succeeded" in p.stderr and "left: succeeded" in p.stderr, p.stderr
    assert re.search(r"^succeeded: 4 tasks, 4 succeeded in ", p.stderr, re.M), p.stderr
    ident = dag_id(p.stderr)

    p = rcli("dag", "ls", check=0)
    assert ident in p.stdout and "diamond" in p.stdout
    p = rcli("dag", "ls", "--json", check=0)
    assert ident in [g["id"] for g in json.loads(p.stdout)]

    p = rcli("dag", "status", ident[:10], check=0)
    assert f"dag {ident} (diamond): succeeded" in p.stdout
    assert re.search(r"^join\s+succeeded", p.stdout, re.M), p.stdout
    p = rcli("dag", "status", ident, "--json", check=0)
    # --json: one shape on both paths (tasks by name).
    assert json.loads(p.stdout)["tasks"]["right"]["result"] == 6

    p = rcli("dag", "logs", ident, "left", check=0)
    assert "left running" in p.stdout
    p = rcli("dag", "logs", ident, "nope", check=2)
    assert "no task 'nope'" in p.stderr
    rcli("dag", "status", "dzzzzzzzzzzzzzzzz", check=2)

    # --json: the embedded shape, with the exit code and each task's depends.
    p = rcli("dag", "run", "pipe/pipeline.yaml", "--json", check=0)
    j = json.loads(p.stdout)
    assert j["status"] == "succeeded" and j["exit_code"] == 0
    assert j["tasks"]["join"]["result"] == {"sum": 10, "len": 5, "ratio": 0.1}
    assert j["tasks"]["join"]["depends"] == ["left", "right"]
    # The same inputs again are memo hits on the server.
    p = rcli("dag", "run", "pipe/pipeline.yaml", "--json", check=0)
    assert all(t["state"] == "cached" for t in json.loads(p.stdout)["tasks"].values()), p.stdout


def test_dag_failure_exit_codes(rcli):
    pipeline(rcli, """
        tasks:
          load: {file: steps.py, function: load, args: [3]}
          bad: {file: steps.py, function: boom, args: ["${load}"]}
          after: {file: steps.py, function: right, args: ["${bad}"]}
        """)
    p = rcli("dag", "run", "pipe/pipeline.yaml", check=1)
    assert p.stdout == ""
    assert "bad: failed" in p.stderr and "after: skipped" in p.stderr, p.stderr
    assert re.search(r"bad failed \(exit 1\): .*no good", p.stderr), p.stderr
    ident = dag_id(p.stderr)
    p = rcli("dag", "logs", ident, "after", check=2)     # never ran: 409
    p = rcli("dag", "status", ident, check=1)
    assert re.search(r"^bad\s+failed", p.stdout, re.M)


def test_dag_refused_before_anything_is_sent(rcli, tmp_path):
    # A cycle: the local parse refuses it with the embedded message (exit 3).
    pipeline(rcli, """
        tasks:
          a: {file: steps.py, function: left, args: ["${b}"]}
          b: {file: steps.py, function: left, args: ["${a}"]}
        """)
    p = rcli("dag", "run", "pipe/pipeline.yaml", check=3)
    assert "cycle" in p.stderr
    # A task file outside the pipeline's directory is never uploaded.
    rcli.write("outside.py", "def f():\n    return 1\n")
    pipeline(rcli, """
        tasks:
          a: {file: ../outside.py}
        """)
    p = rcli("dag", "run", "pipe/pipeline.yaml", check=3)
    assert "outside.py" in p.stderr and "directory" in p.stderr, p.stderr
    # Through a symlink, too.
    os.symlink(tmp_path / "outside.py", tmp_path / "pipe" / "link.py")
    pipeline(rcli, """
        tasks:
          a: {file: link.py}
        """)
    p = rcli("dag", "run", "pipe/pipeline.yaml", check=3)
    assert "outside the pipeline's directory" in p.stderr, p.stderr
    # Validation on the server (an unknown function): invalid, exit 3.
    pipeline(rcli, """
        tasks:
          a: {file: steps.py, function: nope}
        """)
    p = rcli("dag", "run", "pipe/pipeline.yaml", check=3)
    assert "nope" in p.stderr, p.stderr
    rcli("dag", "resume", "d123", check=2)


def test_dag_ctrl_c_cancels_on_the_server(rcli, d):
    pipeline(rcli, """
        tasks:
          s: {file: steps.py, function: slow, args: [30]}
        """)
    proc = subprocess.Popen([str(CLI), "dag", "run", "--server", d.url, "pipe/pipeline.yaml", "--no-cache"],
                            cwd=rcli.cwd, env=rcli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        ident = None
        while time.time() < deadline:
            st, b = d.call("GET", "/v1/dags?limit=1")
            if st == 200 and b["dags"] and b["dags"][0]["status"] == "running":
                ident = b["dags"][0]["id"]
                st, g = d.call("GET", f"/v1/dags/{ident}")
                if g["tasks"] and g["tasks"][0]["state"] == "running":
                    break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "cancelling DAG run" not in err  # as embedded: the view's lines and summary
    assert "cancelled: " in err, err
    st, g = d.call("GET", f"/v1/dags/{ident}")
    assert g["status"] == "cancelled", g


def test_chain(rcli):
    rcli.write("double.py", "def double(x: int):\n    print('doubling', x)\n    return x * 2\n")
    rcli.write("inc.py", "def inc(x):\n    return x + 1\n")
    rcli.write("frac.py", "def frac(x):\n    return x / 10\n")
    rcli.write("bad.py", "def bad(x):\n    raise KeyError(x)\n")
    p = rcli("chain", "double.py", "inc.py", "-a", "5", check=0)
    assert p.stdout == "11\n", p.stdout
    # A chain is a DAG run: each step's output is behind `dag logs`.
    assert rcli("dag", "logs", dag_id(p.stderr), "step1", check=0).stdout == "doubling 5\n"
    p = rcli("chain", "double.py", "frac.py", "inc.py", "-a", "1", "--json", check=0)
    assert json.loads(p.stdout.splitlines()[-1]) == 1.2
    p = rcli("chain", "double.py", "bad.py", "inc.py", "-a", "2", check=1)
    assert "step2 failed (exit 1): KeyError: 4" in p.stderr, p.stderr


def test_data_round_trip_and_run_with_data(rcli, tmp_path):
    rcli.write("words.txt", "alpha beta\n")
    p = rcli("data", "put", "words", "words.txt", check=0)
    assert p.stdout.startswith("words: version 1 ("), p.stdout
    p = rcli("data", "put", "words", "words.txt", check=0)
    assert "version 1 (unchanged content)" in p.stdout
    rcli.write("words.txt", "alpha beta gamma\n")
    p = rcli("data", "put", "words", "words.txt", "--json", check=0)
    assert json.loads(p.stdout)["version"] == 2

    p = rcli("data", "ls", check=0)
    assert re.search(r"^words\s+2\s+2\s", p.stdout, re.M), p.stdout
    assert "words" in [x["name"] for x in json.loads(rcli("data", "ls", "--json", check=0).stdout)]
    p = rcli("data", "ls", "words", "--json", check=0)
    assert [(v["version"], v["current"]) for v in json.loads(p.stdout)] == [(1, False), (2, True)]

    assert rcli("data", "get", "words", check=0).stdout == "alpha beta gamma\n"
    assert rcli("data", "get", "words@1", check=0).stdout == "alpha beta\n"
    rcli("data", "get", "words@1", "-o", tmp_path / "out.txt", check=0)
    assert (tmp_path / "out.txt").read_text() == "alpha beta\n"

    rcli.write("read.py", """
        from pysprinter import data_path
        import os
        def read(name: str):
            p = data_path(name)  # a single-file dataset: the file
            return [open(p).read()]
        """)
    p = rcli("run", "read.py", "-a", "words", "--data", "words", "--json", check=0)
    assert json.loads(p.stdout.splitlines()[-1]) == ["alpha beta gamma\n"]
    p = rcli("run", "read.py", "-a", "words", "--data", "words@1", "--json", check=0)
    assert json.loads(p.stdout.splitlines()[-1]) == ["alpha beta\n"]

    # A directory travels as a tar (tests/e2e/test_data_stream.py).
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t.txt").write_text("t")
    rcli("data", "put", "tree", tmp_path / "tree", check=0)
    rcli("data", "get", "tree", "-o", tmp_path / "tree-back", check=0)
    assert (tmp_path / "tree-back" / "t.txt").read_text() == "t"

    rcli("data", "rm", "words@1", check=0)
    rcli("data", "get", "words@1", check=2)
    p = rcli("data", "rm", "words", check=0)
    assert p.stdout == "removed words\n"
    rcli("data", "get", "words", check=2)
    assert "words" not in [x["name"] for x in json.loads(rcli("data", "ls", "--json", check=0).stdout)]


def test_auth_failure_exits_6(rcli):
    pipeline(rcli)
    bad = {"PYSPRINTER_TOKEN": "wrong-token-0000000000000"}
    for args in (("dag", "ls"), ("dag", "run", "pipe/pipeline.yaml"), ("data", "ls"), ("data", "get", "x"),
                 ("chain", "pipe/steps.py::left", "-a", "1")):
        p = rcli(*args, env=bad, check=6)
        assert "PYSPRINTER_TOKEN" in p.stderr, (args, p.stderr)


def test_unreachable_server_exits_6(cli):
    cli.write("x.txt", "x")
    p = cli("data", "ls", "--server", "http://127.0.0.1:9", check=6)
    assert "cannot reach" in p.stderr
