"""Files out of a run (issue 16, docs/data.md "Outputs"): output_dir() is a
private writable /out per run; `run --output-data NAME` stores what it holds
as the next version of dataset NAME when the run succeeds, nothing
otherwise; the size cap is enforced. Embedded and against a real daemon."""
import json
import os

import pytest

from conftest import CLI, DAEMON, sandbox_args
from daemonlib import TOKENS, Daemon, sandbox_mode

WRITER = """
import os
from pysprinter import output_dir

def write(n: int = 3, size: int = 1000, fail: bool = False):
    d = output_dir()
    os.makedirs(os.path.join(d, "sub"), exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, "sub" if i % 2 else "", f"f{i}.bin"), "wb") as f:
            f.write(bytes([i % 256]) * size)
    if fail:
        raise ValueError("failed after writing")
    return {"dir": d, "files": sorted(os.listdir(d))}
"""

SNOOP = """
import os
from pysprinter import output_dir

def snoop():
    d = output_dir()
    before = sorted(os.listdir(d))
    open(os.path.join(d, "mine.txt"), "w").write("x")
    # The engine's directory of all runs' output dirs is hidden (empty).
    try:
        others = sorted(os.listdir("/run/pysprinter/outputs"))
    except OSError as e:
        others = type(e).__name__
    return {"before": before, "others": others}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs-daemon")
    daemon = Daemon(root, sandbox=sandbox_mode(root),
                    config_extra="data:\n  max_output_bytes: 60000000\n").start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(params=["embedded", "daemon"])
def pcli(request, cli, tmp_path):
    """`pysprinter VERB …` embedded, or with --server against the daemon
    (alice's token), both with a 60 MB output cap."""
    if request.param == "embedded":
        cli.env = dict(cli.env, PYSPRINTER_MAX_OUT_BYTES="60000000")

        def run(verb, *args, **kw):
            return cli(verb, *args, **kw)
        run.sandbox = sandbox_args()
    else:
        if not DAEMON.exists():
            pytest.skip("pysprinterd is not built")
        dm = request.getfixturevalue("d")
        cli.env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"], HOME=str(tmp_path),
                       XDG_CONFIG_HOME=str(tmp_path / "xdg"))

        def run(verb, *args, **kw):
            return cli(verb, "--server", dm.url, *args, **kw)
        run.sandbox = []
    run.write = cli.write
    run.cwd = cli.cwd
    run.mode = request.param
    return run


def versions(pcli, name):
    p = pcli("data", "ls", name, "--json")
    if p.returncode != 0:
        return []
    return [v["version"] for v in json.loads(p.stdout)]


def last_run(pcli):
    runs = json.loads(pcli("ps", "--json", "-n", "1", check=0).stdout)
    return json.loads(pcli("show", runs[0]["id"], "--json", check=0).stdout)


def test_output_data_becomes_the_next_version(pcli, tmp_path):
    pcli.write("w.py", WRITER)
    p = pcli("run", *pcli.sandbox, "w.py", "--output-data", "res", "-a", "3", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    if not pcli.sandbox:
        assert out["dir"] == "/out"
    assert out["files"] == ["f0.bin", "f2.bin", "sub"]
    assert versions(pcli, "res") == [1]
    assert last_run(pcli)["outputs"] == {"res": 1}
    got = tmp_path / "got"
    if pcli.mode == "embedded":  # data get -o DIR of a directory over the API is the datastream branch's
        pcli("data", "get", "res", "-o", str(got), check=0)
        assert sorted(os.listdir(got)) == ["f0.bin", "f2.bin", "sub"]
        assert (got / "sub" / "f1.bin").read_bytes() == b"\x01" * 1000
    # Different files: version 2.
    p = pcli("run", *pcli.sandbox, "w.py", "--output-data", "res", "-a", "4", "--json")
    assert p.returncode == 0, p.stderr
    assert versions(pcli, "res") == [1, 2]
    assert last_run(pcli)["outputs"] == {"res": 2}


def test_a_failing_run_stores_nothing(pcli):
    pcli.write("w.py", WRITER)
    p = pcli("run", *pcli.sandbox, "w.py", "--output-data", "failed", "--fail", "true")
    assert p.returncode == 1, p.stderr
    assert "failed after writing" in p.stderr
    assert versions(pcli, "failed") == []
    assert "outputs" not in last_run(pcli)


def test_the_output_cap_is_enforced(pcli):
    pcli.write("w.py", WRITER)
    # 7 files of 10 MB: over the 60 MB cap this suite configures.
    p = pcli("run", *pcli.sandbox, "w.py", "--output-data", "big", "-a", "7", "--size", "10000000")
    assert p.returncode == 5, p.stderr
    assert "output dir limit" in p.stderr
    assert versions(pcli, "big") == []
    rec = last_run(pcli)
    assert rec["status"] == "killed" and rec["error"]["type"] == "OutputDirLimit"
    # One file larger than the cap: cut by RLIMIT_FSIZE or the check after.
    p = pcli("run", *pcli.sandbox, "w.py", "-a", "1", "--size", "90000000")
    assert p.returncode in (1, 5), p.stderr


LEFT = """
import os
from pysprinter import output_dir

def leave(kind: str):
    d = output_dir()
    os.makedirs(os.path.join(d, "sub"))
    open(os.path.join(d, "ok.txt"), "w").write("x")
    if kind == "link":
        os.symlink("/etc/hostname", os.path.join(d, "sub", "l"))
    else:
        os.mkfifo(os.path.join(d, "sub", "p"))
    return 1
"""


@pytest.mark.parametrize("kind,words", [
    ("link", "symbolic links are not supported in datasets (sub/l)"),
    ("fifo", "only regular files and directories can be stored (sub/p)"),
])
def test_a_symlink_left_in_out_fails_the_run_and_names_no_host_path(pcli, d, kind, words):
    """It ended exit 7 (an internal error) with a message naming the
    directory's host path ($DATA/outputs/… of a daemon, which the live
    log's end event sent unscrubbed to the tenant)."""
    pcli.write("left.py", LEFT)
    p = pcli("run", *pcli.sandbox, "left.py", "--output-data", "left", "--kind", kind)
    assert (p.returncode, p.stdout) == (1, ""), p
    assert p.stderr.endswith(f"OutputError: storing output_dir(): {words}\n"), p.stderr
    assert "outputs/" not in p.stderr and str(d.root) not in p.stderr
    assert versions(pcli, "left") == []
    rec = last_run(pcli)
    assert (rec["status"], rec["error"]["type"]) == ("failed", "OutputError")


def test_the_live_log_end_event_hides_the_servers_paths_from_a_tenant(d):
    """GET /v1/runs/{id} scrubbed a server path from a run's error; the
    follow stream's end event sent it as it was (and spelled reals
    another way)."""
    st, b = d.call("POST", "/v1/runs?wait=true", {
        "source": "def f():\n    raise OSError(2, 'gone', %r)\n" % str(d.home / "secret.txt")})
    assert st == 200 and b["status"] == "failed", b
    st, _, raw = d.request("GET", f"/v1/runs/{b['id']}/logs?follow=1")
    end = raw.decode().split("event: end\ndata: ")[1].split("\n")[0]
    assert str(d.home) not in end and "$DATA/secret.txt" in end, end
    assert json.loads(end)["error"] == b["error"]


def test_out_is_private_and_discarded_without_output_data(pcli):
    pcli.write("s.py", SNOOP)
    for _ in range(2):
        p = pcli("run", *pcli.sandbox, "s.py", "--json")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        # Empty at the start (the previous run's file is gone), and no
        # other run's directory can be listed.
        assert out["before"] == []
        if not pcli.sandbox:
            assert out["others"] == [], out
    assert versions(pcli, "mine") == []


def test_output_dir_outside_a_run(tmp_path):
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    pkg = os.path.join(here, "..", "..", "python")
    code = "from pysprinter import output_dir; import os; d = output_dir(); print(d, os.path.isdir(d))"
    env = dict(os.environ, PYTHONPATH=pkg)
    env.pop("PYSPRINTER_OUTPUT_DIR", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.stdout.split() == ["out", "True"], p.stderr
    env["PYSPRINTER_OUTPUT_DIR"] = str(tmp_path / "elsewhere")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.stdout.split() == [str(tmp_path / "elsewhere"), "True"], p.stderr


STEPS = """
import hashlib, os
from pysprinter import data_path, output_dir

def make(n: int = 50, seed: str = "a"):
    d = output_dir()
    for i in range(n):
        with open(os.path.join(d, f"part-{i:03}.bin"), "wb") as f:
            f.write((seed + str(i)).encode() * (1_000_000 // len(seed + str(i))))
    return n

def summarise(made):
    d = data_path("parts")
    h = hashlib.sha256()
    names = sorted(os.listdir(d))
    for name in names:
        with open(os.path.join(d, name), "rb") as f:
            h.update(f.read())
    with open(os.path.join(output_dir(), "summary.txt"), "w") as f:
        f.write(f"{len(names)} {h.hexdigest()}")
    return made

def report(_):
    with open(os.path.join(data_path("summary"), "summary.txt")) as f:
        return f.read()
"""

PIPELINE = """
name: outputs
tasks:
  make: {file: steps.py, function: make, outputs: parts}
  summarise: {file: steps.py, function: summarise, args: ["${make}"], data: [parts], outputs: summary}
  report: {file: steps.py, function: report, args: ["${summarise}"], data: [summary]}
"""


def test_dag_outputs_flow_downstream_and_memoise(pcli):
    pcli.write("steps.py", STEPS)
    pcli.write("p.yaml", PIPELINE)
    first = json.loads(pcli("dag", "run", *pcli.sandbox, "p.yaml", "--json", check=0).stdout)
    assert first["status"] == "succeeded", first
    text = first["tasks"]["report"]["result"]
    count, digest = text.split()
    assert count == "50"
    assert versions(pcli, "parts") == [1] and versions(pcli, "summary") == [1]
    # Again: all memo hits, no new version.
    second = json.loads(pcli("dag", "run", *pcli.sandbox, "p.yaml", "--json", check=0).stdout)
    assert all(t["state"] == "cached" for t in second["tasks"].values()), second
    assert second["tasks"]["report"]["result"] == text
    assert versions(pcli, "parts") == [1] and versions(pcli, "summary") == [1]
    # A new version of parts made elsewhere does not reach this DAG's
    # summarise, which reads the version its upstream produced... and a
    # memo hit of make re-uses version 1, so summarise is a hit too.
    pcli.write("other/x.txt", "not parts")  # a directory, as parts is (a file is refused)
    pcli("data", "put", "parts", str(pcli.cwd / "other"), check=0)
    assert versions(pcli, "parts") == [1, 2]
    third = json.loads(pcli("dag", "run", *pcli.sandbox, "p.yaml", "--json", check=0).stdout)
    assert all(t["state"] == "cached" for t in third["tasks"].values()), third
    assert third["tasks"]["report"]["result"] == text
    # Changed code of make: new versions downstream, a new summary.
    pcli.write("steps.py", STEPS.replace('seed: str = "a"', 'seed: str = "b"'))
    fourth = json.loads(pcli("dag", "run", *pcli.sandbox, "p.yaml", "--json", check=0).stdout)
    assert fourth["status"] == "succeeded", fourth
    assert [fourth["tasks"][n]["state"] for n in ("make", "summarise", "report")] == ["succeeded"] * 3
    count2, digest2 = fourth["tasks"]["report"]["result"].split()
    assert count2 == "50" and digest2 != digest
    assert versions(pcli, "parts") == [1, 2, 3] and versions(pcli, "summary") == [1, 2]


def test_output_dirs_of_a_killed_runner_are_swept(cli, home):
    """A runner killed with SIGKILL cannot remove its output dirs; the next
    engine removes those whose process is gone, and only those."""
    cli.write("w.py", WRITER)
    assert cli("run", *sandbox_args(), "w.py").returncode == 0
    out = home / "outputs"
    assert list(out.iterdir()) == []  # a run leaves nothing behind
    dead = out / "999999999-1-wdead"   # no such pid
    (dead / "root" / "rsomething").mkdir(parents=True)
    (dead / "root" / "rsomething" / "f").write_text("x")
    live = out / f"{os.getpid()}-1-wlive"  # a live pid, but another start time: also gone
    live.mkdir()
    other = out / "notours"
    other.mkdir()
    assert cli("run", *sandbox_args(), "w.py").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["notours"]
