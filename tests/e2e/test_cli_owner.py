"""Embedded runs and the CLI that owns them (issue 11): a run whose CLI
dies ends `lost` instead of `running` forever, and `logs -f` follows a
run another CLI is running. The function waits on a file the test
creates, so these runs are unsandboxed (a sandbox has its own /tmp)."""
import json
import os
import signal
import subprocess
import time

from conftest import CLI

WAITER = """
import os, time
def f(gate: str):
    print("before", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.05)
    print("after", flush=True)
    return "done"
"""


def wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running_run(cli):
    p = cli("ps", "--json")
    assert p.returncode == 0, p.stderr
    runs = json.loads(p.stdout)
    return runs and runs[0]["status"] == "running" and runs[0]


def start_waiter(cli, env, gate):
    cli.write("w.py", WAITER)
    return subprocess.Popen([str(CLI), "run", "--sandbox=none", "w.py", "--gate", str(gate)], cwd=cli.cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_a_run_whose_cli_is_killed_is_shown_lost(cli, env, tmp_path):
    gate = tmp_path / "never"
    proc = start_waiter(cli, env, gate)
    try:
        run = wait_for(lambda: running_run(cli) or proc.poll() is not None, "the run to be recorded running")
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # `ps` itself opens the engine, which marks runs of dead owners.
        lost = wait_for(lambda: [r for r in json.loads(cli("ps", "--json").stdout)
                                 if r["id"] == run["id"] and r["status"] == "lost"], "the run to be lost")[0]
        assert lost["exit_code"] == 7
        assert "gone" in lost["error"]["message"] and str(proc.pid) in lost["error"]["message"]
        assert "lost" in cli("ps").stdout
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker the CLI left behind
        except ProcessLookupError:
            pass


def test_a_live_cli_keeps_its_run_running_and_logs_f_follows_it(cli, env, tmp_path):
    gate = tmp_path / "gate"
    proc = start_waiter(cli, env, gate)
    follow_out = tmp_path / "follow.out"
    try:
        run = wait_for(lambda: running_run(cli), "the run to be recorded running")
        with open(follow_out, "wb") as out:
            follower = subprocess.Popen([str(CLI), "logs", "-f", run["id"]], cwd=cli.cwd, env=env, stdout=out,
                                        stderr=subprocess.PIPE)
        wait_for(lambda: follow_out.read_bytes() == b"before\n", "logs -f to replay the output so far")
        # The owner is alive: another CLI's `ps` leaves its run alone, and
        # the follower keeps following.
        assert running_run(cli)["id"] == run["id"]
        assert follower.poll() is None
        gate.write_text("go")
        assert follower.wait(timeout=60) == 0, follower.stderr.read()
        assert follow_out.read_bytes() == b"before\nafter\n"
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.endswith(b"done\n")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_cli_in_another_pid_namespace_leaves_the_runs_of_this_one(cli, env, tmp_path):
    """A CLI in another pid namespace on the same home (a container that
    mounts the host's home, `unshare --pid`) sees none of this namespace's
    processes: it took every running run's owner for gone and marked the
    run lost, while its CLI went on running it."""
    import pytest
    if os.geteuid() != 0 or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"]).returncode:
        pytest.skip("needs unshare --pid (root)")
    gate = tmp_path / "gate"
    proc = start_waiter(cli, env, gate)
    try:
        run = wait_for(lambda: running_run(cli) or proc.poll() is not None, "the run to be recorded running")
        assert proc.poll() is None, proc.communicate()
        other = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", str(CLI), "ps", "--json"],
                               cwd=cli.cwd, env=env, capture_output=True, text=True, timeout=120)
        assert other.returncode == 0, other.stderr
        seen = [r for r in json.loads(other.stdout) if r["id"] == run["id"]]
        assert seen and seen[0]["status"] == "running", seen
        gate.write_text("")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        shown = json.loads(cli("show", run["id"], "--json").stdout)
        assert shown["status"] == "succeeded" and shown["result"] == "done", shown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
