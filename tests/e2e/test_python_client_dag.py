"""pysprinter.Client's pipelines and schedules (docs/python.md "Pipelines
and schedules"), against a real pysprinterd: a pipeline file run with its
task files as `pysprinter dag run --server` sends them, a failed one as a
DagError, a submitted one waited for, listed, its task's output read and
cancelled, Ctrl-C cancelling the DAG run it waits for, and the schedule
verbs (`schedule add|ls|show|pause|resume|rm`) for a function and a DAG."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import DAEMON, ROOT
import daemonlib
from test_explore_pyclient import daemon  # noqa: F401 (a daemon serving the function "ident")

sys.path.insert(0, str(ROOT / "python"))
import pysprinter  # noqa: E402

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

STEPS = '''
import time

def load(n: int):
    return list(range(n))

def total(items):
    print("adding", len(items), "items", flush=True)
    return sum(items)

def double(x, file=None):
    return 2 * x

def boom(x):
    raise ValueError(f"no good: {x}")

def slow(delay: float = 60.0):
    print("slow started", flush=True)
    time.sleep(delay)
    return delay
'''


PIPELINE = '''
name: sums
params:
  n: 4
tasks:
  load: {file: steps/steps.py, function: load, args: ["${params.n}"]}
  total:
    file: "steps/steps.py::total"
    args: ["${load}"]
  double: {file: 'steps/more.py', function: double, args: ["${total}"], kwargs: {file: not-a-file.txt}}
'''


@pytest.fixture
def pipeline(tmp_path):
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "steps.py").write_text(STEPS)
    (tmp_path / "steps" / "more.py").write_text(STEPS)
    p = tmp_path / "pipe.yaml"
    p.write_text(PIPELINE)
    return p


def client(d):
    return pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"])


def test_run_dag_sends_the_task_files_and_returns_the_results(daemon, pipeline):
    with client(daemon) as c:
        dag = c.run_dag(pipeline, params={"n": 5})
    assert dag["status"] == "succeeded"
    results = {t["name"]: t["result"] for t in dag["tasks"]}
    assert results == {"load": [0, 1, 2, 3, 4], "total": 10, "double": 20}
    # What the daemon recorded is what the client returned (parameters are
    # kept as the text a --param gives, as the CLI's are).
    st, rec = daemon.call("GET", f"/v1/dags/{dag['id']}")
    assert st == 200 and rec["status"] == "succeeded" and rec["params"] == {"n": "5"}
    assert rec["tasks"] == dag["tasks"]


def test_failed_dag_raises_dag_error_naming_the_task(daemon, tmp_path):
    (tmp_path / "steps.py").write_text(STEPS)
    p = tmp_path / "bad.yaml"
    p.write_text("tasks:\n  a: {file: steps.py, function: boom, args: [7]}\n"
                 "  b: {file: steps.py, function: double, args: ['${a}']}\n")
    with client(daemon) as c:
        with pytest.raises(pysprinter.DagError) as e:
            c.run_dag(p)
    err = e.value
    assert err.status == "failed"
    assert err.failed == ["a"]
    assert err.dag["id"] == err.dag_id
    assert "no good: 7" in str(err)
    tasks = {t["name"]: t for t in err.dag["tasks"]}
    assert tasks["a"]["state"] == "failed"


def test_task_file_outside_the_pipeline_is_never_sent(daemon, tmp_path):
    (tmp_path / "outside.py").write_text(STEPS)
    sub = tmp_path / "p"
    sub.mkdir()
    os.symlink(tmp_path / "outside.py", sub / "link.py")
    for ref in ("../outside.py", "link.py", str(tmp_path / "outside.py")):
        p = sub / "pipe.yaml"
        p.write_text(f"tasks:\n  a: {{file: {ref}, function: double, args: [1]}}\n")
        with client(daemon) as c:
            # The daemon is not handed the file, so the task cannot run:
            # refused (400) with the file named, or invalid with it named.
            with pytest.raises((pysprinter.APIError, pysprinter.DagError)) as e:
                c.run_dag(p)
        assert "outside" in str(e.value) or "link.py" in str(e.value) or ".." in str(e.value), str(e.value)


def test_a_pipeline_with_a_cycle_is_a_400(daemon, tmp_path):
    (tmp_path / "steps.py").write_text(STEPS)
    p = tmp_path / "cycle.yaml"
    p.write_text("tasks:\n  a: {file: steps.py, function: double, args: ['${b}']}\n"
                 "  b: {file: steps.py, function: double, args: ['${a}']}\n")
    with client(daemon) as c:
        with pytest.raises(pysprinter.APIError) as e:
            c.run_dag(p)
    assert e.value.status == 400 and "cycle" in e.value.message


def test_submitted_dag_is_waited_for_listed_its_output_read_and_cancelled(daemon, pipeline, tmp_path):
    with client(daemon) as c:
        dag = c.submit_dag(pipeline)
        assert dag["status"] in ("validating", "running", "succeeded")
        done = c.wait_dag(dag)
        assert done["id"] == dag["id"] and done["status"] == "succeeded"
        assert c.get_dag(dag["id"][:12])["id"] == dag["id"]
        assert dag["id"] in [x["id"] for x in c.dags(status="succeeded")]
        assert "adding 4 items" in c.dag_logs(dag, "total")
        with pytest.raises(pysprinter.NotFoundError):
            c.dag_logs(dag, "nosuchtask")
        (tmp_path / "s.py").write_text(STEPS)
        p = tmp_path / "slow.yaml"
        p.write_text("tasks:\n  s: {file: s.py, function: slow}\n")
        slow = c.submit_dag(p)
        for _ in range(600):
            if c.get_dag(slow)["status"] == "running":
                break
            time.sleep(0.1)
        ended = c.cancel_dag(slow)
        assert ended["status"] == "cancelled"
        with pytest.raises(pysprinter.DagError) as e:
            c.wait_dag(slow)
        assert e.value.status == "cancelled"
        with pytest.raises(pysprinter.ConflictError):
            c.cancel_dag(slow)


def test_ctrl_c_in_run_dag_cancels_the_dag_run(daemon, tmp_path):
    (tmp_path / "s.py").write_text(STEPS)
    p = tmp_path / "slow.yaml"
    p.write_text("name: interrupted\ntasks:\n  s: {file: s.py, function: slow}\n")
    # Python's own SIGINT handler, set here: a child of a shell's background
    # job (CI's `nohup … &`) starts with SIGINT ignored, which Python keeps.
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'python')!r})\n"
              "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "import pysprinter\n"
              f"c = pysprinter.Client(server={daemon.url!r}, token={daemonlib.TOKENS['alice']!r})\n"
              "try:\n"
              f"    c.run_dag({str(p)!r})\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        dag_id = None
        for _ in range(600):
            st, ls = daemon.call("GET", "/v1/dags?status=running")
            mine = [x for x in ls["dags"] if x.get("name") == "interrupted"]
            if mine:
                dag_id = mine[0]["id"]
                break
            time.sleep(0.1)
        assert dag_id, "the DAG run never ran"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert "interrupted" in out
    st, rec = daemon.call("GET", f"/v1/dags/{dag_id}?wait=true&timeout=30")
    assert rec["status"] == "cancelled"


def test_schedules_of_a_function_and_of_a_dag(daemon, pipeline):
    with client(daemon) as c:
        made = c.add_schedule("pyc-every", "ident", every="1h", paused=True, args=[3])
        assert made["name"] == "pyc-every" and made["function"] == "ident" and made["paused"] is True
        assert "pyc-every" in [s["name"] for s in c.schedules()]
        shown = c.schedule("pyc-every")
        assert shown["runs"] == [] and shown["args"] == [3]
        assert c.resume_schedule("pyc-every")["paused"] is False
        assert c.pause_schedule("pyc-every")["paused"] is True
        with pytest.raises(pysprinter.ConflictError):
            c.add_schedule("pyc-every", "ident", every="1h", args=[1])
        with pytest.raises(pysprinter.NotFoundError):
            c.add_schedule("pyc-missing", "no-such-function", cron="0 2 * * *")
        with pytest.raises(ValueError):
            c.add_schedule("pyc-both", "ident", cron="0 2 * * *", every="1h")
        nightly = c.add_schedule("pyc-dag", dag=pipeline, cron="0 2 * * *", tz="Europe/Paris", params={"n": 2},
                                 paused=True)
        assert nightly["function"] is None and nightly["dag"]["file"] == "pipe.yaml"
        assert nightly["tz"] == "Europe/Paris"
        assert c.delete_schedule("pyc-every")["deleted"] is True
        assert c.delete_schedule("pyc-dag")["deleted"] is True
        assert not {"pyc-every", "pyc-dag"} & {s["name"] for s in c.schedules()}
        with pytest.raises(pysprinter.NotFoundError):
            c.schedule("pyc-every")
