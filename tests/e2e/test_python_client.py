"""The user-side package (issue 16, docs/python.md): `pip install ./python`
into a fresh venv with no index, a function file run directly with
`python3 file.py`, and a real daemon driven through pysprinter.Client from
that venv."""
import json
import os
import subprocess

import pytest

from conftest import CLI as ROOT_CLI, ROOT, SYSTEM_PYTHON, sandbox_args
import daemonlib

USER_FILE = '''
import datetime
import os
import sys
from pysprinter import requirements, data_path, output_dir

@requirements({"numpy": ">=1.20"})
def square(x: int):
    print(f"squaring {x}", file=sys.stderr)
    if x == 13:
        raise ValueError("unlucky 13")
    return {"x": x, "square": x * x}

def summary(name: str):
    with open(data_path(name)) as f:
        words = f.read().split()
    out = os.path.join(output_dir(), "count.txt")
    with open(out, "w") as f:
        f.write(str(len(words)))
    return {"words": len(words), "out": out}

def ticker(n: int):
    import time
    for i in range(n):
        print(f"tick {i}", flush=True)
        time.sleep(0.05)
    return n

def raw(b):
    return b[::-1]

if __name__ == "__main__":
    print(square(int(sys.argv[1])))
    print(square.__pysprinter_requirements__)
    print(summary("words.txt"))
'''


def venv_env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_", "PYTHON"))}
    e["PIP_NO_INDEX"] = "1"            # no index: nothing may be fetched
    e["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return e


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with `pip install --no-index --no-build-isolation ./python`."""
    d = tmp_path_factory.mktemp("venv")
    e = venv_env(d)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(d / "v")], check=True, env=e, timeout=120)
    py = d / "v" / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        str(ROOT / "python")], capture_output=True, text=True, env=e, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return py, e


def test_pip_install_without_build_isolation_and_with_it(venv, tmp_path):
    py, e = venv
    where = subprocess.run([str(py), "-c", "import pysprinter; print(pysprinter.__file__)"],
                           capture_output=True, text=True, env=e, cwd=tmp_path, check=True)
    assert "site-packages/pysprinter/__init__.py" in where.stdout
    # the plain `pip install ./python` a user types works offline too
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(tmp_path / "v2")], check=True, env=e)
    p = subprocess.run([str(tmp_path / "v2/bin/python"), "-m", "pip", "install", str(ROOT / "python")],
                       capture_output=True, text=True, env=e, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_user_file_runs_directly(venv, tmp_path):
    py, e = venv
    (tmp_path / "job.py").write_text(USER_FILE)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "words.txt").write_text("a b c d\n")
    p = subprocess.run([str(py), "job.py", "4"], capture_output=True, text=True, env=e, cwd=tmp_path,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "{'x': 4, 'square': 16}"
    assert lines[1] == "{'numpy': '>=1.20'}"          # the decorator recorded the dict
    assert lines[2] == "{'words': 4, 'out': 'out/count.txt'}"
    assert (tmp_path / "out" / "count.txt").read_text() == "4"


DRIVER = '''
import json, os, sys, warnings
import pysprinter
c = pysprinter.Client(server=sys.argv[1], token=sys.argv[2])
f = sys.argv[3]
out = {"where": pysprinter.__file__}
out["run"] = c.run(f + "::square", 5)
sys.path.insert(0, os.path.dirname(f))
from job import square                     # a function object: its file is sent
out["run_function"] = c.run(square, x=6)
out["raw"] = c.run(f + "::raw", b"abc").decode()
try:
    c.run(f + "::square", 13)
except pysprinter.RunError as e:
    out["error"] = [e.status, e.type, e.message, "unlucky 13" in e.traceback]
out["map"] = c.map(f + "::square", [i for i in range(200) if i != 13], concurrency=8)
errs = c.map(f + "::square", [12, 13, 14], concurrency=2, return_exceptions=True)
out["map_errors"] = [type(x).__name__ if isinstance(x, Exception) else x for x in errs]
try:
    c.map(f + "::square", [13], concurrency=1)
except pysprinter.RunError as e:
    out["map_raises"] = e.message
c.deploy("sq", f + "::square")
out["invoke"] = c.invoke("sq", 9)
run = c.submit(f + "::ticker", 5)
out["logs"] = "".join(c.logs(run["id"], follow=True))
out["logs_after"] = "".join(c.logs(run["id"], follow=False))
try:
    pysprinter.Client(server=sys.argv[1], token="wrong").run(f + "::square", 1)
except pysprinter.APIError as e:
    out["unauthorized"] = [e.status, e.code]
print(json.dumps(out))
'''


def test_client_drives_a_daemon(venv, tmp_path):
    py, e = venv
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path),
                         config_extra="").start()
    try:
        job = tmp_path / "job.py"
        # The daemon's runs have no numpy index: the daemon side of this
        # test uses the file without its @requirements line.
        job.write_text(USER_FILE.replace('@requirements({"numpy": ">=1.20"})\n', ""))
        (tmp_path / "driver.py").write_text(DRIVER)
        p = subprocess.run([str(py), "driver.py", d.url, daemonlib.TOKENS["alice"], str(job)],
                           capture_output=True, text=True, env=e, cwd=tmp_path, timeout=600)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
    finally:
        d.stop()
    assert "site-packages" in out["where"]
    assert out["run"] == {"x": 5, "square": 25}
    assert out["run_function"] == {"x": 6, "square": 36}
    assert out["raw"] == "cba"
    assert out["error"] == ["failed", "ValueError", "unlucky 13", True]
    assert out["map"] == [{"x": i, "square": i * i} for i in range(200) if i != 13]
    assert out["map_errors"] == [{"x": 12, "square": 144}, "RunError", {"x": 14, "square": 196}]
    assert out["map_raises"] == "unlucky 13"
    assert out["invoke"] == {"x": 9, "square": 81}
    assert out["logs"] == "".join(f"tick {i}\n" for i in range(5))
    assert "tick 4" in out["logs_after"]
    assert out["unauthorized"] == [401, "unauthorized"]


def test_same_module_inside_a_run(cli):
    """`from pysprinter import …` inside a run is the package's runtime.py."""
    cli.write("inside.py", '''
        import pysprinter
        from pysprinter import requirements, data_path, output_dir, to_jsonable

        @requirements({})
        def f():
            return sorted(n for n in ("requirements", "data_path", "output_dir", "to_jsonable")
                          if callable(getattr(pysprinter, n)))
        ''')
    p = cli("run", *sandbox_args(), "inside.py", "--json", check=0)
    assert json.loads(p.stdout) == ["data_path", "output_dir", "requirements", "to_jsonable"]


# ---- the CLI's map verb (embedded and against a daemon, one Backend) ------------

MAP_FILE = '''
import sys

def sq(x, y=0):
    print(f"calc {x}", file=sys.stderr)
    if x == 13:
        raise ValueError("unlucky")
    return {"x": x, "sq": x * x + y}
'''


def map_inputs(cli, n=200):
    cli.write("sq.py", MAP_FILE)
    lines = []
    for i in range(n):
        # every shape a line may have: an array, an object, a bare value
        lines.append(json.dumps([i] if i % 3 == 0 else {"x": i, "y": 1} if i % 3 == 1 else i))
    (cli.cwd / "in.jsonl").write_text("\n".join(lines[:50]) + "\n\n" + "\n".join(lines[50:]) + "\n")


def expected_line(i):
    if i == 13:
        return {"index": i, "status": "failed", "error": {"type": "ValueError", "message": "ValueError: unlucky"}}
    return {"index": i, "status": "succeeded", "result": {"x": i, "sq": i * i + (1 if i % 3 == 1 else 0)}}


def check_map_output(p, n=200):
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    for x in lines:
        assert x.pop("run_id").startswith("r")
    assert lines == [expected_line(i) for i in range(n)]
    assert p.returncode == 1                     # the first failed call's exit code
    assert f"{n} calls, 1 failed" in p.stderr


def test_map_embedded_200_inputs_in_order(cli):
    map_inputs(cli)
    p = cli("map", *sandbox_args(), "sq.py", "--over", "in.jsonl", "--concurrency", "8", timeout=600)
    check_map_output(p)
    assert "calc 199" in p.stderr                 # the functions' output goes to stderr


def test_map_against_a_daemon(cli, tmp_path):
    map_inputs(cli)
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path)).start()
    try:
        p = cli("map", "sq.py", "--over", "-", "--concurrency", "8", "--server", d.url,
                "--token", daemonlib.TOKENS["alice"], input=(cli.cwd / "in.jsonl").read_text(), timeout=600)
        check_map_output(p)
        st, runs = d.call("GET", "/v1/runs?limit=1000")
        assert len(runs["runs"]) == 200              # they ran on the server
    finally:
        d.stop()


def test_map_refuses_bad_input_before_running(cli):
    cli.write("sq.py", MAP_FILE)
    (cli.cwd / "bad.jsonl").write_text("1\n{oops\n")
    p = cli("map", *sandbox_args(), "sq.py", "--over", "bad.jsonl", check=2)
    assert "bad.jsonl:2: not JSON" in p.stderr and p.stdout == ""
    p = cli("map", *sandbox_args(), "sq.py", "--over", "bad.jsonl", "-a", "5", check=2)
    p = cli("map", *sandbox_args(), "sq.py", check=2)
    assert "--over" in p.stderr


def test_map_progress_bar_on_a_terminal(cli):
    """stderr a TTY: a bar that counts to the end and is erased; stdout (a
    pipe) holds only the JSON lines."""
    import pty
    cli.write("sq.py", MAP_FILE)
    (cli.cwd / "in.jsonl").write_text("".join(f"{i}\n" for i in range(6)))
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([str(ROOT_CLI), "map", *sandbox_args(), "sq.py", "--over", "in.jsonl",
                              "--concurrency", "2"], cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE,
                             stderr=slave, text=True)
        os.close(slave)
        slave = -1
        out = p.communicate(timeout=300)[0]
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert [json.loads(x)["index"] for x in out.splitlines()] == list(range(6))
    text = err.decode()
    assert "] 6/6" in text and "[" + "#" * 30 + "]" in text
    assert text.rstrip().endswith("6 calls, 0 failed")


def test_map_with_a_dataset(cli):
    """run's options apply to every call: here --data, read via data_path()."""
    (cli.cwd / "words.txt").write_text("alpha beta gamma\n")
    cli("data", "put", "words", "words.txt", check=0)
    cli.write("nth.py", '''
        from pysprinter import data_path

        def nth(i: int):
            with open(data_path("words")) as f:
                return f.read().split()[i]
        ''')
    (cli.cwd / "in.jsonl").write_text("0\n1\n2\n0\n")
    p = cli("map", *sandbox_args(), "nth.py", "--over", "in.jsonl", "--data", "words", "--concurrency", "3",
            check=0)
    assert [json.loads(x)["result"] for x in p.stdout.splitlines()] == ["alpha", "beta", "gamma", "alpha"]


def test_map_ctrl_c_starts_no_more_calls(cli, tmp_path):
    import signal
    import time
    cli.write("slow.py", '''
        import sys, time

        def slow(x):
            print(f"started {x}", file=sys.stderr, flush=True)
            time.sleep(2)
            return x
        ''')
    (cli.cwd / "in.jsonl").write_text("".join(f"{i}\n" for i in range(8)))
    err = tmp_path / "err.txt"
    with open(err, "w") as ef:
        p = subprocess.Popen([str(ROOT_CLI), "map", *sandbox_args(), "slow.py", "--over", "in.jsonl",
                              "--concurrency", "2"], cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE,
                             stderr=ef, text=True)
        deadline = time.time() + 60
        while err.read_text().count("started") < 2:      # both first calls are running
            assert time.time() < deadline and p.poll() is None, err.read_text()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=60)[0]
    assert p.returncode == 130
    assert err.read_text().count("started") == 2               # no call started after Ctrl-C
    assert len(out.splitlines()) <= 2
    assert "interrupted: 2 of 8 calls ran" in err.read_text()
