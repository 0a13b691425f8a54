"""Per-user kernel counts a run holds (inotify instances and watches):
runs of one worker, of any tenant, each keep a share of their own
(docs/sandbox.md "Users"). Before, the host charged them all to the
worker's namespace owner under one limit (fs.inotify.max_user_instances,
128 by default): one run holding 128 instances left every other run of its
worker none ("Too many open files" for a watchdog, a reloader)."""
import json
import subprocess
import threading

import pytest

from conftest import CLI
from daemonlib import Daemon, sandbox_mode

GREEDY = """
import ctypes, os, time

def f(n: int = 400, hold: float = 3.0):
    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    while len(fds) < n:
        fd = libc.inotify_init1(0)
        if fd < 0:
            break
        fds.append(fd)
    time.sleep(hold)  # still held while the other run takes its own
    return len(fds)
"""


def host_share():
    with open("/proc/sys/fs/inotify/max_user_instances") as f:
        return max(int(f.read()) // 8, 1)


def test_two_runs_of_one_worker_each_keep_their_inotify_share(cli):
    """`map --concurrency 2`: two runs at once in one worker, each asking
    for 400 instances and holding them. Each gets the same share (an
    eighth of the host's per-user limit), neither all of it."""
    cli.write("greedy.py", GREEDY)
    cli.write("in.jsonl", '{"n": 400}\n{"n": 400}\n')
    p = subprocess.run([str(CLI), "map", "greedy.py", "--over", "in.jsonl", "--concurrency", "2"],
                       capture_output=True, text=True, env=cli.env, cwd=cli.cwd, timeout=300)
    if p.returncode != 0 and "--sandbox=none" in p.stderr:
        pytest.skip("the kernel cannot run the sandbox here")
    assert p.returncode == 0, (p.stdout, p.stderr)
    made = sorted(json.loads(line)["result"] for line in p.stdout.splitlines())
    share = host_share()
    if made == [share * 8, 0] or 0 in made:
        pytest.fail(f"one run starved the other: {made}")
    assert made == [share, share], made


def test_another_tenants_run_keeps_its_share(tmp_path):
    """The same through pysprinterd: alice's run and bob's, one worker
    (same environment), each its share."""
    if sandbox_mode(tmp_path) != "full":
        pytest.skip("the kernel cannot run the sandbox here")
    d = Daemon(tmp_path / "d", sandbox="full")
    with d.serving():
        out = {}

        def run(token):
            out[token] = d.run(GREEDY, token=token)
        threads = [threading.Thread(target=run, args=(t,)) for t in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        share = host_share()
        for token in ("alice", "bob"):
            st, r = out[token]
            assert st == 200 and r["status"] == "succeeded", r
            assert r["result"] == share, (token, r["result"], share)
