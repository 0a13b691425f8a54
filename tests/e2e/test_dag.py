"""DAG pipelines and chain, through the real CLI (DESIGN §8, issue 7)."""
import json
import pathlib
import os
import signal
import subprocess
import time

import pytest

from conftest import CLI, sandbox_args
import pkgindex

STEPS = """
import time

def load(n: int):
    return {"n": n, "items": list(range(n))}

def left(d, delay: float = 1.0):
    time.sleep(delay)
    return sum(d["items"])

def right(d, delay: float = 1.0):
    time.sleep(delay)
    return len(d["items"])

def join(a, b, label: str = "x"):
    return {"sum": a, "len": b, "label": label}

def boom():
    raise ValueError("boom")

def slow(x=1):
    time.sleep(0.3)
    return x
"""

DIAMOND = """
name: diamond
params:
  n: 5
tasks:
  load: {file: steps.py, function: load, args: ["${params.n}"]}
  left: {file: steps.py, function: left, args: ["${load}"]}
  right: {file: steps.py, function: right, args: ["${load}"]}
  join:
    file: steps.py
    function: join
    args: ["${left}", "${right}"]
    kwargs: {label: "n=${params.n} third=${load.items.2}"}
"""


def dag(cli, *args, **kw):
    return cli("dag", args[0], *sandbox_args(), *args[1:], **kw)


@pytest.fixture
def steps(cli):
    cli.write("steps.py", STEPS)
    return cli


def test_diamond_runs_middle_tasks_in_parallel(steps):
    steps.write("p.yaml", DIAMOND)
    t0 = time.monotonic()
    p = dag(steps, "run", "p.yaml", "--json", check=0)
    wall = time.monotonic() - t0
    out = json.loads(p.stdout)
    assert out["status"] == "succeeded"
    t = out["tasks"]
    assert t["join"]["result"] == {"sum": 10, "len": 5, "label": "n=5 third=2"}
    l, r = t["left"], t["right"]
    # Each middle task sleeps 1 s; they overlap in time.
    assert l["started_us"] < r["finished_us"] and r["started_us"] < l["finished_us"], (l, r)
    span = (max(l["finished_us"], r["finished_us"]) - min(l["started_us"], r["started_us"])) / 1e6
    assert span < 1.8, span
    assert wall < 1.9 + 2.0, wall   # validation and start-up included
    # Order: join after both, both after load.
    assert t["join"]["started_us"] >= max(l["finished_us"], r["finished_us"])
    assert min(l["started_us"], r["started_us"]) >= t["load"]["finished_us"]


def test_plain_output_and_params(steps):
    steps.write("p.yaml", DIAMOND)
    p = dag(steps, "run", "p.yaml", "--param", "n=3", check=0)
    assert json.loads(p.stdout) == {"sum": 3, "len": 3, "label": "n=3 third=2"}
    assert "load: succeeded" in p.stderr and "succeeded: 4 tasks" in p.stderr


@pytest.mark.parametrize("given", ["n", "=3", ""])
def test_a_param_without_name_equals_value_is_a_usage_error(steps, given):
    """Like every other malformed option (exit 2), not the pipeline's own
    mistake (exit 3) found once the file was read."""
    steps.write("p.yaml", DIAMOND)
    p = dag(steps, "run", "p.yaml", "--param", given, check=None)
    assert p.returncode == 2 and "--param needs NAME=VALUE" in p.stderr, p


def test_concurrency_one_serialises(steps):
    steps.write("p.yaml", DIAMOND.replace("args: [\"${load}\"]", "args: [\"${load}\", 0.5]"))
    p = dag(steps, "run", "p.yaml", "--json", "--concurrency", "1", check=0)
    t = json.loads(p.stdout)["tasks"]
    l, r = t["left"], t["right"]
    assert l["finished_us"] <= r["started_us"] or r["finished_us"] <= l["started_us"]


FAIL = """
tasks:
  bad: {file: steps.py, function: boom}
  after_bad: {file: steps.py, function: slow, args: ["${bad}"]}
  independent: {file: steps.py, function: slow, args: [7]}
"""


def test_fail_fast_skips_the_rest(steps):
    steps.write("f.yaml", FAIL)
    p = dag(steps, "run", "f.yaml", "--json", "--concurrency", "1")
    assert p.returncode == 1, p.stderr
    t = json.loads(p.stdout)["tasks"]
    assert t["bad"]["state"] == "failed"
    assert "ValueError: boom" in t["bad"]["error"]
    assert t["after_bad"]["state"] == "skipped"
    assert t["independent"]["state"] == "skipped"
    assert "fail-fast" in t["independent"]["error"]


def test_keep_going_runs_independent_tasks(steps):
    steps.write("f.yaml", FAIL)
    p = dag(steps, "run", "f.yaml", "--json", "--concurrency", "1", "--keep-going")
    assert p.returncode == 1, p.stderr
    t = json.loads(p.stdout)["tasks"]
    assert t["bad"]["state"] == "failed"
    assert t["after_bad"]["state"] == "skipped"
    assert "upstream task 'bad'" in t["after_bad"]["error"]
    assert t["independent"]["state"] == "succeeded"
    assert t["independent"]["result"] == 7


def test_retries_until_success(cli, tmp_path):
    # The flaky function counts its attempts in a host file, which only an
    # unsandboxed run can write: --sandbox=none on purpose here.
    counter = tmp_path / "count"
    cli.write("flaky.py", """
        def flaky(path):
            import os
            n = int(open(path).read()) if os.path.exists(path) else 0
            open(path, "w").write(str(n + 1))
            if n < 2:
                raise RuntimeError(f"attempt {n + 1} fails")
            return n + 1
        """)
    cli.write("r.yaml", f"""
        tasks:
          flaky: {{file: flaky.py, args: ["{counter}"], retries: {{count: 3, backoff: 50ms}}}}
        """)
    p = cli("dag", "run", "--sandbox=none", "r.yaml", "--json")
    assert p.returncode == 0, p.stderr
    t = json.loads(p.stdout)["tasks"]["flaky"]
    assert t["result"] == 3 and t["attempts"] == 3
    assert counter.read_text() == "3"


def test_retries_exhausted(steps):
    steps.write("r.yaml", """
        tasks:
          bad: {file: steps.py, function: boom, retries: {count: 2, backoff: 10ms}}
        """)
    p = dag(steps, "run", "r.yaml", "--json")
    assert p.returncode == 1
    t = json.loads(p.stdout)["tasks"]["bad"]
    assert t["state"] == "failed" and t["attempts"] == 3


def test_memoisation_and_no_cache(steps):
    steps.write("p.yaml", DIAMOND)
    first = json.loads(dag(steps, "run", "p.yaml", "--json", check=0).stdout)
    assert all(not t["cached"] for t in first["tasks"].values())
    t0 = time.monotonic()
    second = json.loads(dag(steps, "run", "p.yaml", "--json", check=0).stdout)
    assert time.monotonic() - t0 < 1.5   # no 1 s sleeps
    assert all(t["state"] == "cached" for t in second["tasks"].values())
    assert second["tasks"]["join"]["result"] == first["tasks"]["join"]["result"]
    # A different parameter is a different memo key for the tasks it reaches.
    third = json.loads(dag(steps, "run", "p.yaml", "--json", "--param", "n=4", check=0).stdout)
    assert third["tasks"]["load"]["state"] == "succeeded"
    assert third["tasks"]["join"]["result"]["sum"] == 6
    fourth = json.loads(dag(steps, "run", "p.yaml", "--json", "--no-cache", check=0).stdout)
    assert all(t["state"] == "succeeded" for t in fourth["tasks"].values())
    # Editing the source invalidates its tasks.
    steps.write("steps.py", STEPS + "\n# edited\n")
    fifth = json.loads(dag(steps, "run", "p.yaml", "--json", check=0).stdout)
    assert fifth["tasks"]["load"]["state"] == "succeeded"


def test_a_memo_hit_is_shown_cached_without_running_first(steps, parity_daemon):
    """A task served from the memo never ran: in a pipe its line says
    `cached` alone, on both paths. It said `load: running` and then
    `load: cached`, as if the task had started."""
    steps.write("quick.yaml", "tasks:\n  a: {file: steps.py, function: load, args: [3]}\n"
                              "  b: {file: steps.py, function: slow, args: [\"${a.n}\"]}\n")
    for pre in ([], ["--server", parity_daemon.url]):
        dag(steps, "run", *pre, "quick.yaml", check=0)
        p = dag(steps, "run", *pre, "quick.yaml", check=0)
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith(("a:", "b:"))]
        assert sorted(lines) == ["a: cached", "b: cached"], (pre, p.stderr)
        assert "running" not in p.stderr, (pre, p.stderr)

def test_cycle_is_named(steps):
    steps.write("c.yaml", """
        tasks:
          a: {file: steps.py, function: slow, args: ["${c}"]}
          b: {file: steps.py, function: slow, args: ["${a}"]}
          c: {file: steps.py, function: slow, depends: [b]}
          d: {file: steps.py, function: slow}
        """)
    p = dag(steps, "run", "c.yaml")
    assert p.returncode == 3
    assert "cycle" in p.stderr
    assert "a -> b -> c -> a" in p.stderr or "b -> c -> a -> b" in p.stderr or "c -> a -> b -> c" in p.stderr
    assert dag(steps, "ls", "--json").stdout.strip() == "[]" if False else True


@pytest.mark.parametrize("body, message", [
    ("a: {file: steps.py, function: slow, args: ['${nope}']}", "unknown task 'nope'"),
    ("a: {file: steps.py, function: slow, args: ['${params.nope}']}", "unknown parameter 'nope'"),
    ("a: {file: missing.py}", "cannot read missing.py"),
    ("a: {file: steps.py, function: slow, colour: red}", "unknown key 'colour'"),
    ("a: {file: steps.py, function: nothere}", "nothere"),
    ("a: {file: steps.py, function: load, args: [1, 2]}", "positional"),
    ("a: {file: steps.py, function: slow, depends: [zz]}", "unknown task 'zz'"),
])
def test_invalid_pipelines(steps, body, message):
    steps.write("bad.yaml", "tasks:\n  " + body + "\n")
    p = dag(steps, "run", "bad.yaml")
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert message in p.stderr
    assert "bad.yaml" in p.stderr


def test_validation_happens_before_any_task_runs(steps):
    steps.write("v.yaml", """
        tasks:
          first: {file: steps.py, function: slow, args: [1]}
          second: {file: steps.py, function: load, args: ["not a number"]}
        """)
    p = dag(steps, "run", "v.yaml")
    assert p.returncode == 3
    assert "second" in p.stderr and "expected an integer" in p.stderr
    runs = json.loads(steps("ps", "--json", check=0).stdout or "[]")
    assert runs == [], runs


def test_yaml_syntax_error(steps):
    steps.write("y.yaml", "tasks:\n  a: {file: steps.py\n")
    p = dag(steps, "run", "y.yaml")
    assert p.returncode == 3 and "y.yaml:" in p.stderr and "YAML" in p.stderr


def test_status_logs_ls(steps):
    steps.write("steps.py", STEPS + "\ndef talk(x):\n    print('hello from talk', x)\n    return x\n")
    steps.write("s.yaml", "tasks:\n  t: {file: steps.py, function: talk, args: [42]}\n")
    out = json.loads(dag(steps, "run", "s.yaml", "--json", check=0).stdout)
    did = out["id"]
    st = steps("dag", "status", did, "--json", check=0)
    s = json.loads(st.stdout)
    assert s["status"] == "succeeded" and s["tasks"]["t"]["result"] == 42
    plain = steps("dag", "status", did[:8], check=0).stdout
    assert "succeeded" in plain and "t " in plain
    logs = steps("dag", "logs", did, "t", check=0)
    assert "hello from talk 42" in logs.stdout
    ls = json.loads(steps("dag", "ls", "--json", check=0).stdout)
    assert ls[0]["id"] == did and ls[0]["status"] == "succeeded"
    assert steps("dag", "logs", did, "nope").returncode == 2


def test_resume_after_interruption(steps, env, tmp_path):
    steps.write("steps.py", STEPS + "\ndef nap(x, s: float):\n    import time\n    time.sleep(s)\n    return x\n")
    steps.write("long.yaml", """
        tasks:
          quick: {file: steps.py, function: nap, args: [1, 0.1]}
          long: {file: steps.py, function: nap, args: ["${quick}", 30]}
          after: {file: steps.py, function: nap, args: ["${long}", 0]}
        """)
    proc = subprocess.Popen([str(CLI), "dag", "run", *sandbox_args(), "long.yaml", "--json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    did = None
    for _ in range(200):
        time.sleep(0.1)
        ls = json.loads(steps("dag", "ls", "--json", check=0).stdout)
        if ls:
            did = ls[0]["id"]
            st = json.loads(steps("dag", "status", did, "--json", check=0).stdout)
            if st["tasks"]["long"]["state"] == "running":
                break
    assert did
    quick_run = st["tasks"]["quick"]["run_id"]
    proc.kill()   # the driver dies mid-run
    proc.wait()
    st = json.loads(steps("dag", "status", did, "--json").stdout)
    assert st["status"] == "running"    # never finished
    # Resume with a shorter nap: the pipeline file is what was recorded, so
    # edit the task's file (it is read again) to make `long` quick.
    steps.write("steps.py", STEPS + "\ndef nap(x, s: float):\n    return x\n")
    p = steps("dag", "resume", *sandbox_args(), did, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["id"] == did and out["status"] == "succeeded"
    assert out["tasks"]["quick"]["run_id"] == quick_run      # kept, not re-run
    assert out["tasks"]["after"]["result"] == 1


def test_cancel_of_a_run_whose_driver_died_ends_every_task(steps, env, tmp_path):
    """`dag cancel` of a DAG run whose CLI was killed recorded the run
    cancelled but left its tasks `running` and `pending` for ever (status
    showed a cancelled run with a running task), and it decided the driver
    was alive from its pid (kill(pid, 0)), which a reused pid fools."""
    steps.write("steps.py", STEPS + "\ndef nap(x, s: float):\n    import time\n    time.sleep(s)\n    return x\n")
    steps.write("long.yaml", """
        tasks:
          long: {file: steps.py, function: nap, args: [1, 30]}
          after: {file: steps.py, function: nap, args: ["${long}", 0]}
        """)
    proc = subprocess.Popen([str(CLI), "dag", "run", *sandbox_args(), "long.yaml", "--no-cache"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    did = None
    for _ in range(200):
        time.sleep(0.1)
        ls = json.loads(steps("dag", "ls", "--json", check=0).stdout)
        if ls:
            did = ls[0]["id"]
            st = json.loads(steps("dag", "status", did, "--json", check=0).stdout)
            if st["tasks"]["long"]["state"] == "running":
                break
    assert did
    proc.kill()   # the driver dies mid-run
    proc.wait()
    p = steps("dag", "cancel", did, check=0)
    assert p.returncode == 0, p.stderr
    # The code `dag run` gives a cancelled run (it was 1 here, 130 there).
    st = json.loads(steps("dag", "status", did, "--json", check=130).stdout)
    assert st["status"] == "cancelled", st
    assert {n: t["state"] for n, t in st["tasks"].items()} == {"long": "cancelled", "after": "cancelled"}, st
    assert st["tasks"]["after"]["error"] == "not run: the DAG run was cancelled"


def test_resume_is_not_refused_by_a_reused_pid(steps, env, tmp_path):
    """docs/dag.md: who drives a DAG run is the flock, "no pid that may
    linger as a zombie or be reused". `dag resume` still refused a run whose
    recorded owner pid was alive — any process that got that pid after the
    driver died (here: a sleep) — with "still being run by process N"."""
    import sqlite3
    steps.write("one.yaml", "tasks:\n  a: {file: steps.py, function: load, args: [2]}\n")
    proc = subprocess.Popen([str(CLI), "dag", "run", *sandbox_args(), "one.yaml"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.wait()
    did = json.loads(steps("dag", "ls", "--json").stdout)[0]["id"]
    other = subprocess.Popen(["sleep", "60"])
    try:
        # The driver died mid-run and its pid went to another process.
        db = sqlite3.connect(pathlib.Path(env["PYSPRINTER_HOME"]) / "pysprinter.db")
        db.execute("UPDATE dag_runs SET status='running', owner=? WHERE id=?", (str(other.pid), did))
        db.commit()
        db.close()
        p = steps("dag", "resume", *sandbox_args(), did, check=0)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == {"n": 2, "items": [0, 1]}, p.stdout
    finally:
        other.kill()
        other.wait()


def test_ctrl_c_on_a_terminal_records_the_running_task_cancelled(steps, env, tmp_path):
    """A terminal's Ctrl-C signals the whole foreground process group, the
    task's worker included. The DAG path cancelled the task's run only at
    the scheduler's next tick, after the worker had died of the SIGINT:
    the task said "the worker died during the run" and its run was recorded
    `error` (exit 7), where `run` records `cancelled`."""
    steps.write("steps.py", STEPS + "\ndef nap(x, s: float):\n    import time\n    time.sleep(s)\n    return x\n")
    steps.write("long.yaml", "tasks:\n  long: {file: steps.py, function: nap, args: [1, 30]}\n")
    for mode in ["none"] + ([] if sandbox_args() else ["full"]):
        ctrl_c_cancels_the_task(steps, env, tmp_path, mode)


def ctrl_c_cancels_the_task(steps, env, tmp_path, mode):
    proc = subprocess.Popen([str(CLI), "dag", "run", f"--sandbox={mode}", "long.yaml", "--no-cache"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = ""
    while line != "long: running\n":
        line = proc.stderr.readline()
        assert line, proc.communicate()
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)   # what the terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    did = json.loads(steps("dag", "ls", "--json").stdout)[0]["id"]
    task = json.loads(steps("dag", "status", did, "--json", check=130).stdout)["tasks"]["long"]
    assert (task["state"], task["error"]) == ("cancelled", "cancelled"), (mode, task)
    run = json.loads(steps("show", task["run_id"], "--json", check=None).stdout)
    assert run["status"] == "cancelled", (mode, run)


def test_resume_keeps_the_runs_no_cache_and_prints_its_result(steps, env, tmp_path):
    """A resumed `--no-cache` run served its remaining tasks from the memo
    (its recorded options were not read back: only keep_going was), and
    `dag resume` printed no result on stdout where `dag run` prints it."""
    steps.write("nap.py", "import time\ndef nap(x, s: float = 0):\n    time.sleep(s)\n    return x + 1\n")
    steps.write("nc.yaml", """
        tasks:
          a: {file: nap.py, function: nap, args: [0]}
          b: {file: nap.py, function: nap, args: ["${a}", 30]}
          c: {file: nap.py, function: nap, args: ["${b}"]}
        """)
    # Fill the memo with the same tasks (b without its nap, via the file).
    steps.write("nap.py", "import time\ndef nap(x, s: float = 0):\n    return x + 1\n")
    assert steps("dag", "run", *sandbox_args(), "nc.yaml").stdout == "3\n"
    steps.write("nap.py", "import time\ndef nap(x, s: float = 0):\n    time.sleep(s)\n    return x + 1\n")
    proc = subprocess.Popen([str(CLI), "dag", "run", *sandbox_args(), "nc.yaml", "--no-cache"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    did = None
    for _ in range(300):
        time.sleep(0.1)
        ls = json.loads(steps("dag", "ls", "--json", check=0).stdout)
        if ls and ls[0]["status"] == "running":
            st = json.loads(steps("dag", "status", ls[0]["id"], "--json", check=0).stdout)
            if st["tasks"]["b"]["state"] == "running":
                did = ls[0]["id"]
                break
    assert did
    proc.kill()
    proc.wait()
    steps.write("nap.py", "import time\ndef nap(x, s: float = 0):\n    return x + 1\n")
    p = steps("dag", "resume", *sandbox_args(), did)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "3\n"
    assert "b: cached" not in p.stderr and "c: cached" not in p.stderr, p.stderr
    out = json.loads(steps("dag", "status", did, "--json").stdout)
    assert [out["tasks"][t]["cached"] for t in "abc"] == [False, False, False], out


def test_tasks_with_different_packages(cli, tmp_path):
    wheels = tmp_path / "wheels"
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(wheels, "dagpkg", "1.0"))
    ix.add(pkgindex.build_wheel(wheels, "dagpkg", "2.0"))
    ix.start()
    try:
        for v in ("1", "2"):
            cli.write(f"v{v}.py", f"""
                @requirements({{'dagpkg': '=={v}.0'}})
                def f(x=None):
                    import importlib.metadata
                    return importlib.metadata.version('dagpkg')
                """)
        cli.write("pk.yaml", """
            tasks:
              one: {file: v1.py}
              two: {file: v2.py}
              both: {file: v1.py, args: ["${one}-${two}"]}
            """)
        p = cli("dag", "run", *sandbox_args(), "--index-url", ix.url, "pk.yaml", "--json")
        if p.returncode == 4 and "cannot be installed yet" in p.stderr:
            pytest.skip("this build has no package manager")
        assert p.returncode == 0, p.stderr
        t = json.loads(p.stdout)["tasks"]
        assert t["one"]["result"] == "1.0" and t["two"]["result"] == "2.0"
    finally:
        ix.stop()


def test_chain(cli):
    cli.write("a.py", "def a(x: int):\n    return x + 1\n")
    cli.write("b.py", "def b(v):\n    return {'got': v, 'double': v * 2}\n")
    cli.write("c.py", "def c(d):\n    return d['double'] * 10\n")
    p = cli("chain", "a.py", "b.py", "c.py", *sandbox_args(), "-a", "5", check=0)
    assert p.stdout.strip() == "120"
    p = cli("chain", "a.py", "b.py", *sandbox_args(), "-a", "1", "--json", check=0)
    assert json.loads(p.stdout) == {"got": 2, "double": 4}


def test_chain_stops_at_failure(cli):
    cli.write("a.py", "def a(x: int):\n    return x\n")
    cli.write("bad.py", "def bad(v):\n    raise KeyError(v)\n")
    cli.write("c.py", "def c(v):\n    return v\n")
    p = cli("chain", "a.py", "bad.py", "c.py", *sandbox_args(), "-a", "3")
    assert p.returncode == 1
    # A chain is a linear DAG run: the failed step is named, its type once.
    assert "step2 failed (exit 1): KeyError: 3" in p.stderr, p.stderr
    assert "KeyError: KeyError" not in p.stderr
    # c.py never ran: the chain is one DAG run, recorded like any pipeline.
    runs = json.loads(cli("dag", "ls", "--json").stdout)
    assert runs[0]["name"] == "chain" and runs[0]["status"] == "failed"
    st = json.loads(cli("dag", "status", runs[0]["id"], "--json", check=1).stdout)
    assert st["tasks"]["step3"]["state"] == "skipped"
