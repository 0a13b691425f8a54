"""DAG pipelines as a user of Airflow, Prefect or Dagster drives them:
retries against fail-fast and cancel, resuming, wide fan-outs, parameters,
embedded and against a real pysprinterd (`--server`), with the same words
and exit codes on both paths (docs/dag.md)."""
import json
import time

import pytest

from conftest import same, sandbox_args
from daemonlib import TOKENS, Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # alice may give her runs network access (a task's `network: true`).
    extra = """
        tenants:
          alice:
            network: true
    """
    with Daemon(tmp_path_factory.mktemp("explore-dag"), config_extra=extra).serving() as d:
        yield d


FLAKY = """
import time

def flaky():
    time.sleep(0.2)
    raise RuntimeError("flaky")

def late():
    time.sleep(1.5)
    raise ValueError("late")

def one():
    return 1

def add(a, b=0):
    return a + b

def echo(x=None):
    return x
"""


def newest_dag(cli, *server):
    return json.loads(cli("dag", "ls", "--json", *server).stdout)[0]["id"]


def status(cli, did, *server):
    p = cli("dag", "status", did, "--json", *server)
    return json.loads(p.stdout)


# ---- retries against fail-fast and cancel ---------------------------------


def test_fail_fast_does_not_start_another_attempt_of_a_task_waiting_to_retry(cli, both, daemon):
    """A task waiting out its retry backoff when another task failed went
    on to start a new attempt once the backoff ended (the DAG run had
    already failed, fail-fast): `dag run` waited the whole backoff (up to
    60 s) to report the failure, and ran code nobody wanted any more."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        tasks:
          r: {file: f.py::flaky, retries: {count: 3, backoff: 3s}}
          f: {file: f.py::late}
    """)
    for p in both("dag", "run", "p.yaml", "--no-cache", *sandbox_args()):
        assert p.returncode == 1, p.stderr
        assert "f failed (exit 1): ValueError: late" in p.stderr
        assert "r failed (exit 1): RuntimeError: flaky" in p.stderr, p.stderr
    server = ("--server", daemon.url)
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    for where in ((), server):
        did = json.loads(cli("dag", "ls", "--json", *where, env=env).stdout)[0]["id"]
        st = json.loads(cli("dag", "status", did, "--json", *where, env=env).stdout)
        r = st["tasks"]["r"]
        assert (r["state"], r["attempts"]) == ("failed", 1), (where, r)


def test_cancel_during_a_retry_backoff_starts_no_new_attempt(cli):
    """`dag cancel` of a DAG run whose task waited to retry started one
    more attempt (a new run, cancelled at once): the task showed attempt 2
    and the error "cancelled" instead of why it failed."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        tasks:
          r: {file: f.py::flaky, retries: {count: 3, backoff: 5s}}
    """)
    p = cli("dag", "run", "p.yaml", "--no-cache", "--detach", *sandbox_args())
    assert p.returncode == 0, p.stderr
    did = p.stdout.strip()
    for _ in range(300):
        st = status(cli, did)
        if st["tasks"]["r"]["error"]:
            break
        time.sleep(0.1)
    assert st["tasks"]["r"]["state"] == "running" and "flaky" in st["tasks"]["r"]["error"], st
    assert cli("dag", "cancel", did).returncode == 0
    for _ in range(300):
        st = status(cli, did)
        if st["status"] != "running":
            break
        time.sleep(0.1)
    r = st["tasks"]["r"]
    assert st["status"] == "cancelled", st
    assert (r["state"], r["attempts"]) == ("cancelled", 1), r
    assert "RuntimeError: flaky" in r["error"], r
    runs = json.loads(cli("ps", "--json", "-n", "50").stdout)
    assert sum(1 for x in runs if x.get("function") == "flaky") == 1, runs


def test_a_task_waiting_to_retry_does_not_hold_a_concurrency_slot(cli, both, daemon):
    """With `--concurrency 1`, a task waiting out its retry backoff kept the
    one slot: an independent task waited for the whole backoff and the
    retries (as Airflow's up_for_retry does not). It runs meanwhile now."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        tasks:
          r: {file: f.py::flaky, retries: {count: 1, backoff: 3s}}
          q: {file: f.py::one}
    """)
    for p in both("dag", "run", "p.yaml", "--no-cache", "--concurrency", "1", *sandbox_args()):
        assert p.returncode == 1 and "r failed (exit 1): RuntimeError: flaky" in p.stderr, p.stderr
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    for where in ((), ("--server", daemon.url)):
        did = json.loads(cli("dag", "ls", "--json", *where, env=env).stdout)[0]["id"]
        t = json.loads(cli("dag", "status", did, "--json", *where, env=env).stdout)["tasks"]
        r, q = t["r"], t["q"]
        assert (r["attempts"], q["state"]) == (2, "succeeded"), (where, t)
        # q ran while r waited to retry: between r's start and its end.
        assert r["started_us"] < q["started_us"] and q["finished_us"] < r["finished_us"], (where, t)


# ---- wide and heavy DAG runs --------------------------------------------------


def test_a_dag_of_large_results_runs_embedded_as_fast_as_it_computes(cli):
    """Embedded, the view got the DAG run from the store at every task
    change and tick: every task's result read and parsed again each time,
    on the scheduler's thread, which started nothing meanwhile. Thirty
    tasks of 3 MB results took minutes where a daemon took seconds. The
    timeout is a guard far above what the tasks need."""
    cli.write("big.py", """
        def big(i: int):
            return str(i) * 3_000_000

        def sink():
            return "done"
    """)
    n = 30
    tasks = "".join(f"  b{i}: {{file: big.py::big, args: [{i}]}}\n" for i in range(n))
    deps = ", ".join(f"b{i}" for i in range(n))
    cli.write("p.yaml", "tasks:\n" + tasks + f"  sink: {{file: big.py::sink, depends: [{deps}]}}\n")
    p = cli("dag", "run", "p.yaml", "--no-cache", *sandbox_args(), timeout=90)
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'done\n'
    assert f"succeeded: {n + 1} tasks, {n + 1} succeeded" in p.stderr, p.stderr


# ---- parameters ----------------------------------------------------------------


def test_a_param_the_pipeline_does_not_have_is_refused_on_both_paths(cli, both, daemon):
    """`--param limt=5` (a typo of `limit`) was taken without a word: the
    task ran with the default, exit 0, and the DAG run recorded the typo."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        params:
          limit: 3
        tasks:
          a: {file: f.py::echo, args: ["${params.limit}"]}
    """)
    local, remote = both("dag", "run", "p.yaml", "--param", "limt=5", *sandbox_args())
    same(local, remote)
    assert local.returncode == 2 and local.stdout == ""
    assert local.stderr == ("pysprinter: cannot set parameter 'limt': p.yaml has no parameter of that name "
                            "(its parameters: limit)\n")
    # A parameter a task references without declaring it is one.
    cli.write("q.yaml", """
        tasks:
          a: {file: f.py::echo, args: ["${params.n}"]}
    """)
    for p in both("dag", "run", "q.yaml", "--param", "n=5", *sandbox_args()):
        assert (p.returncode, p.stdout) == (0, "5\n"), p.stderr
    st, body = daemon.call("POST", "/v1/dags", {"pipeline": "tasks:\n  a: {file: f.py::one}\n",
                                                 "files": {"f.py": FLAKY}, "params": {"zz": 1}})
    assert st == 400 and "cannot set parameter 'zz'" in body["error"]["message"], body


# ---- resuming ------------------------------------------------------------------


def test_resume_does_not_show_the_tasks_it_keeps_as_running_again(cli):
    """`dag resume` of a failed DAG run printed `a: running` for every task
    that had succeeded before and is kept (not run again): the log of the
    resume said it ran tasks it did not."""
    cli.write("f.py", FLAKY)
    cli.write("m.py", """
        import os
        def maybe(x):
            raise RuntimeError("not yet")
    """)
    cli.write("p.yaml", """
        tasks:
          a: {file: f.py::one}
          m: {file: m.py::maybe, args: ["${a}"]}
          n: {file: f.py::echo, args: ["${m}"]}
    """)
    p = cli("dag", "run", "p.yaml", "--no-cache", *sandbox_args())
    assert p.returncode == 1 and "a: running\na: succeeded" in p.stderr, p.stderr
    did = newest_dag(cli)
    a_run = status(cli, did)["tasks"]["a"]["run_id"]
    cli.write("m.py", """
        def maybe(x):
            return x + 1
    """)
    p = cli("dag", "resume", did, *sandbox_args())
    assert (p.returncode, p.stdout) == (0, "2\n"), p.stderr
    lines = p.stderr.splitlines()
    assert "a: running" not in lines, p.stderr
    assert [line.split()[0] for line in lines[1:-1]] == ["a:", "m:", "m:", "n:", "n:"], p.stderr
    assert lines[1].startswith("a: succeeded") and "m: running" in lines and "n: running" in lines
    assert status(cli, did)["tasks"]["a"]["run_id"] == a_run


def test_a_task_that_failed_before_it_ran_is_not_shown_running(cli, both):
    """A task whose arguments could not be made (its upstream's result has
    no such key) never ran — it has no run, and the summary says so by not
    pointing at `dag logs` — yet the view printed `b: running` before
    `b: failed`, on both paths."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        tasks:
          a: {file: f.py::echo, kwargs: {x: {n: 1}}}
          b: {file: f.py::echo, args: ["${a.m}"]}
    """)
    local, remote = both("dag", "run", "p.yaml", "--no-cache", *sandbox_args())
    for p in (local, remote):
        assert p.returncode == 3, p.stderr
        lines = p.stderr.splitlines()
        assert "b: running" not in lines, p.stderr
        assert any(line.startswith("b: failed") and "result has no key 'm'" in line for line in lines), p.stderr


# ---- the pipeline file -----------------------------------------------------------


@pytest.mark.parametrize("task", ["{file: f.py::one, function: echo}", "{function: echo, file: f.py::one}"])
def test_file_func_and_a_different_function_key_are_refused(cli, both, task):
    """`file: f.py::one` with `function: echo` ran whichever key came
    last (`one` written one way, `echo` the other), silently."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", "tasks:\n  a: " + task + "\n")
    local, remote = both("dag", "run", "p.yaml", *sandbox_args())
    same(local, remote)
    assert local.returncode == 3 and local.stdout == ""
    assert local.stderr.startswith("pysprinter: p.yaml:2:")
    assert local.stderr.endswith(": task 'a': file names function 'one' and function: 'echo'; give one\n")
    cli.write("q.yaml", "tasks:\n  a: {file: f.py::one, function: one}\n")
    for p in both("dag", "run", "q.yaml", *sandbox_args()):
        assert (p.returncode, p.stdout) == (0, "1\n"), p.stderr


def test_resume_says_when_the_pipeline_file_was_edited_since(cli, tmp_path):
    """A user who fixed the pipeline (a wrong literal argument) and ran
    `dag resume` got the same failure again without a word: a resume runs
    the pipeline as recorded. It now says so, and what runs the edit."""
    cli.write("f.py", FLAKY)
    cli.write("p.yaml", """
        tasks:
          a: {file: f.py::one}
          b: {file: f.py::add, args: ["${a}", "x"]}
    """)
    p = cli("dag", "run", "p.yaml", *sandbox_args())
    assert p.returncode == 1 and "TypeError" in p.stderr, p.stderr
    did = newest_dag(cli)
    p = cli("dag", "resume", did, *sandbox_args())
    assert p.returncode == 1 and "warning" not in p.stderr, p.stderr
    cli.write("p.yaml", """
        tasks:
          a: {file: f.py::one}
          b: {file: f.py::add, args: ["${a}", 2]}
    """)
    p = cli("dag", "resume", did, *sandbox_args())
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(f"pysprinter: warning: {tmp_path / 'p.yaml'} changed since DAG run {did} began: "
                               "a resume runs the pipeline as it was recorded (its task files as they are now); "
                               "`pysprinter dag run p.yaml` runs the edited one\n"), p.stderr
    p = cli("dag", "run", "p.yaml", *sandbox_args())
    assert (p.returncode, p.stdout) == (0, "3\n"), p.stderr


# ---- memoisation -------------------------------------------------------------------


def test_a_result_memoised_without_network_is_not_served_to_a_task_with_it(cli, both):
    """The memo key left the task's network out: a task that ran offline
    (an empty result, a fallback) was served from the memo when the
    pipeline then gave it `network: true`, where it would see another
    world (the sandbox's interfaces: only `lo` without network)."""
    cli.write("net.py", """
        import socket
        def ifs():
            return sorted(n for _, n in socket.if_nameindex())
    """)
    cli.write("off.yaml", "tasks:\n  a: {file: net.py::ifs, limits: {network: false}}\n")
    cli.write("on.yaml", "tasks:\n  a: {file: net.py::ifs, limits: {network: true}}\n")
    for p in both("dag", "run", "off.yaml", *sandbox_args()):
        assert p.returncode == 0, p.stderr
    for p in both("dag", "run", "on.yaml", "--json", *sandbox_args()):
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["tasks"]["a"]["cached"] is False, p.stdout
    if not sandbox_args():
        local = json.loads(both("dag", "run", "on.yaml", "--json")[0].stdout)["tasks"]["a"]
        assert local["cached"] is True and local["result"] != ["lo"], local
    for p in both("dag", "run", "off.yaml", "--json", *sandbox_args()):
        assert json.loads(p.stdout)["tasks"]["a"]["cached"] is True, p.stdout


def test_a_result_too_large_to_pass_downstream_says_what_carries_it(cli, both):
    """An upstream result over the 4 MiB argument cap failed its dependent
    with "its arguments are larger than 4194304 bytes" and no way out; it
    now points at datasets (outputs: / data:), the same words on both
    paths."""
    cli.write("big.py", """
        def big():
            return "x" * 5_000_000

        def size(s):
            return len(s)
    """)
    cli.write("p.yaml", """
        tasks:
          b: {file: big.py::big}
          s: {file: big.py::size, args: ["${b}"]}
    """)
    for p in both("dag", "run", "p.yaml", "--no-cache", *sandbox_args()):
        assert p.returncode == 3, p.stderr
        assert ("  s failed (exit 3): task 's': its arguments are larger than 4194304 bytes; pass a large value "
                "through a dataset (the upstream task's outputs:, this one's data:, docs/dag.md)\n") in p.stderr


def test_a_result_memoised_unsandboxed_is_not_served_to_a_sandboxed_task(cli, tmp_path):
    """The memo key left out the sandbox: a task run with `--sandbox=none`
    (it sees the host: its files, its network) was served from the memo
    to the same task run in the sandbox, where it sees none of that."""
    if sandbox_args():
        pytest.skip("the sandbox does not run on this machine: both runs would be unsandboxed")
    cli.write("hostf.py", f"""
        import os
        def seen():
            return os.path.exists({str(tmp_path / 'hostf.py')!r})
    """)
    cli.write("p.yaml", "tasks:\n  a: {file: hostf.py::seen}\n")
    p = cli("dag", "run", "p.yaml", "--sandbox=none")
    assert (p.returncode, p.stdout) == (0, "true\n"), p.stderr
    p = cli("dag", "run", "p.yaml", "--json")
    a = json.loads(p.stdout)["tasks"]["a"]
    assert (a["cached"], a["result"]) == (False, False), a
    for sandbox in ("--sandbox=none", "--sandbox=full"):
        a = json.loads(cli("dag", "run", "p.yaml", "--json", sandbox).stdout)["tasks"]["a"]
        assert (a["cached"], a["result"]) == (True, sandbox == "--sandbox=none"), (sandbox, a)
