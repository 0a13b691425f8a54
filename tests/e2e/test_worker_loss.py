"""A run whose worker is killed from outside (the host's OOM killer, an
operator's kill -9) while the run's code runs: the run's code cannot do
that itself (docs/sandbox.md: its own pid namespace), so the death is the
host's, and the run is started again on a new worker, as Ray retries a
task whose worker died — up to the run's attempts (`retries`,
server.max_attempts: 3 by default), never for `retries: 0`. The same
bytes and exit code embedded and through a daemon (docs/api.md
"Delivery")."""
import os
import signal
import subprocess
import threading
import uuid

import pytest

from conftest import CLI, sandbox_args, same
from daemonlib import TOKENS, Daemon, wait_for


def victims(marker):
    """Pids of the run processes that named themselves marker."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if open(f"/proc/{name}/comm").read().strip() == marker:
                    out.append(int(name))
            except OSError:
                pass
    return out


def parent(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def worker_of(pid):
    """The worker process the run's process was forked from (its nearest
    ancestor named "worker")."""
    p = parent(pid)
    while p > 1:
        if open(f"/proc/{p}/comm").read().strip() == "worker":
            return p
        p = parent(p)
    raise AssertionError(f"no worker above pid {pid}")


def kill_workers(marker, times, killed):
    """Kills the worker of each new process named marker, `times` times."""
    seen = set()
    while len(killed) < times:
        try:
            v = wait_for(lambda: [p for p in victims(marker) if p not in seen], f"a process named {marker}",
                         timeout=120)[0]
            seen.add(v)
            w = worker_of(v)
            os.kill(w, signal.SIGKILL)
            killed.append(w)
        except (OSError, AssertionError):
            return


def source(marker):
    # The name marks this run's process for the test (a run sees its own
    # /proc); the sleep is the time the test has to kill its worker.
    return ("import time\n"
            "def main():\n"
            "    print('started', flush=True)\n"
            f"    open('/proc/self/comm', 'w').write({marker!r})\n"
            "    time.sleep(3)\n"
            "    return 'done'\n")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("worker-loss"), sandbox="none" if sandbox_args() else None)
    with d.serving():
        yield d


def run_killing(cli, name, times, *extra, env=None):
    marker = "v" + uuid.uuid4().hex[:12]
    cli.write(name, source(marker))
    killed = []
    t = threading.Thread(target=kill_workers, args=(marker, times, killed))
    t.start()
    e = dict(cli.env)
    e.update(env or {})
    p = subprocess.run([str(CLI), "run", name, *sandbox_args(), *extra], capture_output=True, text=True, env=e,
                       cwd=cli.cwd, timeout=300)
    t.join(timeout=150)
    assert len(killed) == times, (killed, p.stdout, p.stderr)
    return p


def test_a_run_whose_worker_is_killed_runs_again_and_ends_with_its_result(cli, daemon):
    local = run_killing(cli, "once.py", 1)
    remote = run_killing(cli, "once.py", 1, "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    p = same(local, remote)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "started\nstarted\ndone\n"
    assert p.stderr == ("pysprinter: the worker running the run died (attempt 1 of 3): "
                        "running it again on a new worker\n")


def test_the_run_log_keeps_what_both_starts_printed(daemon):
    marker = "v" + uuid.uuid4().hex[:12]
    killed = []
    t = threading.Thread(target=kill_workers, args=(marker, 1, killed))
    t.start()
    st, b = daemon.run(source(marker))
    t.join(timeout=150)
    assert st == 200 and b["status"] == "succeeded", b
    assert b["result"] == "done"
    st, log = daemon.call("GET", f"/v1/runs/{b['id']}/logs")
    assert st == 200
    assert "started" in str(log) and "running it again on a new worker" in str(log)


def test_a_run_whose_worker_dies_every_time_ends_after_its_attempts(cli, daemon):
    local = run_killing(cli, "always.py", 3)
    remote = run_killing(cli, "always.py", 3, "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    p = same(local, remote)
    assert p.returncode == 7
    assert p.stdout == "started\nstarted\nstarted\n"
    assert p.stderr.count("running it again on a new worker") == 2
    assert p.stderr.endswith("pysprinter: the worker died during the run (3 attempts)\n"), p.stderr


def test_a_run_with_retries_0_is_never_run_twice(daemon):
    marker = "v" + uuid.uuid4().hex[:12]
    killed = []
    t = threading.Thread(target=kill_workers, args=(marker, 1, killed))
    t.start()
    st, b = daemon.run(source(marker), retries=0)
    t.join(timeout=150)
    assert killed
    assert st == 200 and b["status"] == "error", b
    assert b["error"]["type"] == "WorkerError"
    assert b["error"]["message"] == "the worker died during the run"
    st, log = daemon.call("GET", f"/v1/runs/{b['id']}/logs")
    assert str(log).count("started") == 1
    assert "running it again" not in str(log)
