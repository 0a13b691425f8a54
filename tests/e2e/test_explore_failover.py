"""Cluster mode under failures (docs/cluster.md), as an operator of Ray or
Modal meets them: Redis restarted or unreachable while clients wait, a node
killed or frozen mid-run, gateways dying. The promise under test: a run that
got an id ends in a terminal state with its result, and whoever waits for it
hears that end. Each test is a defect found exploring these failures."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clusterlib import CLAIM_TIMEOUT_MS, TERMINAL, wait_until
from conftest import CLI, ROOT, WORKER
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; a fixture)

# Prints a line, sleeps, prints another: what a user watches in a terminal.
TWO_LINES = """
import time
def f(seconds: float = 4):
    print('before', flush=True)
    time.sleep(seconds)
    print('after', flush=True)
    return 'x'
"""


@pytest.fixture
def cluster(tmp_path, redis):
    """start(name, role) -> a started pysprinterd on the test's Redis."""
    mode = sandbox_mode(tmp_path)
    started = []

    def start(name, role, extra=()):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra="server:\n  max_concurrent_runs: 2\n",
                   args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout",
                         f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "5", *extra])
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGCONT)
        d.stop(timeout=30)


def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env["PYSPRINTER_HOME"] = str(tmp_path / "cli-home")
    env["PYSPRINTER_WORKER"] = str(WORKER)
    env["NO_COLOR"] = "1"
    return env


def cli(tmp_path, servers, *args, **kw):
    return subprocess.Popen([str(CLI), "--server", ",".join(d.url for d in servers), "--token", TOKENS["alice"],
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(tmp_path), cwd=tmp_path, **kw)


def running_ids(redis):
    return [k.split(":")[-1] for k in redis.cli("KEYS", "ps:run:*").split()
            if redis.cli("HGET", k, "status") == "running"]


def test_a_client_waiting_on_a_gateway_waits_through_a_redis_restart(cluster, redis, tmp_path):
    """`pysprinter run` and `pysprinter logs -f` follow a run through the one
    gateway they know; Redis is killed and started again on its AOF while
    the run runs on a worker. The gateway answers 503 (it cannot reach
    Redis, Retry-After: 5) meanwhile; the run goes on and its end is stored
    once Redis is back. The clients wait through the outage, as through a
    restart of the daemon they talk to, and print the output and the
    result, exit 0. Before, both gave up at the first 502 with exit 6 ("this
    node cannot reach the cluster's Redis") while the run went on to
    succeed, and the Python client's wait() raised APIError 502."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    (tmp_path / "job.py").write_text(TWO_LINES)
    run = cli(tmp_path, [gw], "run", "job.py")
    rid = wait_until(lambda: running_ids(redis), 60, "the run running on w1")[0]
    follow = cli(tmp_path, [gw], "logs", "-f", rid)
    # The Python client's wait for a run it submitted (a long poll, ?wait=true).
    py = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(ROOT / 'python')!r})
from pysprinter.client import Client
print(Client({gw.url!r}, token={TOKENS['alice']!r}).wait({rid!r}))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: "before" in redis.cli("XRANGE", f"ps:log:{rid}", "-", "+"), 30, "the run's first line")
    redis.kill9()
    st, _ = gw.call("GET", f"/v1/runs/{rid}")
    assert st == 503
    time.sleep(2)
    redis.start()
    out, err = run.communicate(timeout=120)
    assert (run.returncode, out) == (0, "before\nafter\nx\n"), (run.returncode, out, err)
    assert "cannot serve run" in err and "503" in err, err
    out, err = follow.communicate(timeout=120)
    assert (follow.returncode, out) == (0, "before\nafter\n"), (follow.returncode, out, err)
    out, err = py.communicate(timeout=120)
    assert (py.returncode, out) == (0, "x\n"), (py.returncode, out, err)


def test_a_frozen_nodes_late_end_does_not_cut_the_log_of_the_attempt_that_won(cluster, redis, tmp_path):
    """A worker frozen (SIGSTOP) mid-run past its lease loses the run to
    another worker, which runs it again (attempt 2). Its own run process
    was not frozen and ended meanwhile; resumed, the frozen node sends that
    late end, which is dropped as stale. Its output stays in the log (a log
    holds what every attempt printed), but not as the log's end: readers
    stop at the first end entry, so the attempt that won lost the rest of
    its output from `pysprinter logs`, `logs -f` and `run`. Before, the log
    read 'before before after': attempt 2's 'after' was never shown."""
    gw = cluster("gw", "gateway")
    w1 = cluster("w1", "worker")
    st, b = gw.run(TWO_LINES, wait=False, kwargs={"seconds": 2})
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "status") == "running", 60, "the run running on w1")
    cluster("w2", "worker")
    os.kill(w1.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "node") == "w2", 60, "w2 to take the run over")
    finally:
        os.kill(w1.proc.pid, signal.SIGCONT)
    follow = cli(tmp_path, [gw], "logs", "-f", rid)
    b = gw.wait_status(rid, TERMINAL, timeout=60)
    assert b["status"] == "succeeded" and b["attempt"] == 2 and b["result"] == "x", b
    wait_until(lambda: int(redis.cli("GET", "ps:stale") or 0) >= 1, 30, "w1's late end dropped as stale")
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0 and sorted(out.splitlines()) == ["after", "after", "before", "before"], (out, err)
    logs = cli(tmp_path, [gw], "logs", rid)
    out, err = logs.communicate(timeout=60)
    assert logs.returncode == 0 and sorted(out.splitlines()) == ["after", "after", "before", "before"], (out, err)


def test_a_redis_outage_is_logged_once_not_at_every_try(cluster, redis):
    """Redis down for a few seconds: a worker's log says its claim and its
    lease fail when they start failing and that they work again when Redis
    is back, not at every try. Before, each node logged every try, the
    claim's five a second: 30 lines for a 6 s outage, 18,000 an hour in
    the journal of every node."""
    gw = cluster("gw", "gateway")
    w1 = cluster("w1", "worker")
    redis.kill9()
    time.sleep(4)
    redis.start()
    for what in ("claim runs", "refresh this node's lease"):
        wait_until(lambda: f"can {what} again" in w1.log.read_text(), 30, f"w1 saying it can {what} again")
    st, b = gw.run(TWO_LINES, kwargs={"seconds": 0})
    assert st == 200 and b["result"] == "x", b
    log = w1.log.read_text()
    assert log.count("cannot claim runs") == 1, log
    assert log.count("cannot refresh this node's lease") == 1, log
    assert gw.log.read_text().count("cannot refresh this node's lease") == 1, gw.log.read_text()


def test_a_run_taken_over_from_a_killed_node_says_so_in_its_output(cluster, redis, tmp_path):
    """kill -9 of the worker running a run: another worker runs it again
    (attempt 2), and its output holds both attempts' lines. Its stderr says
    why the first lines come twice, as a worker's death within one attempt
    says "the worker running the run died (attempt 1 of 3): running it
    again" (docs/api.md). Before, the output read before/before/after with
    nothing between."""
    gw = cluster("gw", "gateway")
    w1 = cluster("w1", "worker")
    st, b = gw.run(TWO_LINES, wait=False, kwargs={"seconds": 2})
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: "before" in redis.cli("XRANGE", f"ps:log:{rid}", "-", "+"), 60, "the run's first line on w1")
    cluster("w2", "worker")
    w1.kill9()
    b = gw.wait_status(rid, TERMINAL, timeout=60)
    assert b["status"] == "succeeded" and b["attempt"] == 2 and b["result"] == "x", b
    logs = cli(tmp_path, [gw], "logs", rid)
    out, err = logs.communicate(timeout=60)
    assert (logs.returncode, out) == (0, "before\nbefore\nafter\n"), (out, err)
    assert err == ("pysprinter: attempt 1 of 3 did not end (the node running it stopped or lost Redis while it "
                   "ran): running it again on node w2\n"), err


def test_a_frozen_gateway_does_not_hold_a_waiting_cli_for_ever(cluster, redis, tmp_path):
    """`pysprinter --server GW1,GW2 run` follows its run's stream on GW1;
    GW1 freezes (SIGSTOP: a paused VM, a host gone without a reset), so its
    connection stays open and silent. A daemon's stream sends a keep-alive
    every 5 s of silence: after 4 missed (PYSPRINTER_TEST_SILENCE_S here)
    the CLI gives the stream up as broken and asks GW2 for the run by id,
    printing the output and the result. Before, it waited on GW1 for ever."""
    gw1 = cluster("gw1", "gateway")
    gw2 = cluster("gw2", "gateway")
    cluster("w1", "worker")
    (tmp_path / "job.py").write_text(TWO_LINES)
    env = {**cli_env(tmp_path), "PYSPRINTER_TEST_SILENCE_S": "6"}
    run = subprocess.Popen([str(CLI), "--server", f"{gw1.url},{gw2.url}", "--token", TOKENS["alice"], "run",
                            "job.py", "--seconds", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, cwd=tmp_path)
    rid = wait_until(lambda: running_ids(redis), 60, "the run running on w1")[0]
    wait_until(lambda: "before" in redis.cli("XRANGE", f"ps:log:{rid}", "-", "+"), 30, "the run's first line")
    os.kill(gw1.proc.pid, signal.SIGSTOP)
    try:
        out, err = run.communicate(timeout=60)
    finally:
        os.kill(gw1.proc.pid, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
    assert (run.returncode, out) == (0, "before\nafter\nx\n"), (run.returncode, out, err)


def test_a_redis_restart_does_not_move_running_runs_off_live_workers(cluster, redis, tmp_path):
    """Redis down for longer than a node lease (3 s) and started again on
    its AOF: every lease expired meanwhile, also those of the workers that
    are alive and still running their runs. Those runs stay theirs and end
    once, attempt 1, their output printed once. Before, the first other
    worker to look took them over and ran them again from the start
    (attempt 2, the first attempt's end dropped as stale): a Redis restart
    re-ran every long job in the cluster."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    rids = []
    for _ in range(2):  # w1's two slots
        st, b = gw.run(TWO_LINES, wait=False, kwargs={"seconds": 10})
        assert st == 202, b
        rids.append(b["id"])
    for rid in rids:
        wait_until(lambda: "before" in redis.cli("XRANGE", f"ps:log:{rid}", "-", "+"), 60, "the runs' first lines on w1")
    cluster("w2", "worker")  # idle: free to take what it finds
    time.sleep(1)
    redis.kill9()
    time.sleep(6)
    redis.start()
    for rid in rids:
        b = gw.wait_status(rid, TERMINAL, timeout=60)
        assert b["status"] == "succeeded" and b["attempt"] == 1 and b["result"] == "x", b
        assert redis.cli("HGET", f"ps:run:{rid}", "node") == "w1"
        st, logs = gw.call("GET", f"/v1/runs/{rid}/logs")
        assert st == 200 and logs == "before\nafter\n", logs
    assert redis.cli("GET", "ps:stale") in ("", "0")


def test_a_cancel_asked_as_redis_comes_back_reaches_the_running_node(cluster, redis):
    """A cancel of a run running on a worker is a message on that node's
    channel (pub/sub), which keeps nothing for a subscriber that is not
    there: asked right after a Redis restart, while the worker's events
    connection comes back, it reached nobody. The record says
    cancel_requested, and the worker now finds it there (its lease's look,
    about once a second): the run ends cancelled. Before, the DELETE
    answered 202 after 10 s and the run went on to succeed."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    st, b = gw.run(TWO_LINES, wait=False, kwargs={"seconds": 20})
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "status") == "running", 60, "the run running on w1")
    redis.kill9()
    time.sleep(1.5)
    redis.start()
    st, b = wait_until(lambda: (lambda r: r if r[0] not in (502, 503) else None)(gw.call("DELETE", f"/v1/runs/{rid}")), 30,
                       "the gateway serving again")
    assert st in (200, 202), b
    b = gw.wait_status(rid, TERMINAL, timeout=30)
    assert b["status"] == "cancelled", b


def test_the_python_clients_run_survives_a_kill9_of_its_gateway(cluster, redis, tmp_path):
    """Client.run() waits for its run's end in its POST (?wait=true), whose
    answer is the first to carry the run's id. The gateway is killed with
    -9 mid-run and comes back (systemd's Restart=): the client sends the
    POST again under the same Idempotency-Key (its own when the caller gave
    none), the gateway answers with the first run once it ends, and run()
    returns its value; the run ran once. Before, run() raised
    Disconnected: the caller had neither the value nor the id, and the run
    went on unobserved."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    (tmp_path / "job.py").write_text(TWO_LINES)
    py = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(ROOT / 'python')!r})
from pysprinter.client import Client
print(Client({gw.url!r}, token={TOKENS['alice']!r}).run({str(tmp_path / 'job.py')!r}, seconds=3))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rid = wait_until(lambda: running_ids(redis), 60, "the run running on w1")[0]
    port = gw.port
    gw.kill9()
    gw.start(port=port)
    out, err = py.communicate(timeout=120)
    assert (py.returncode, out) == (0, "x\n"), (py.returncode, out, err)
    st, b = gw.call("GET", "/v1/runs")
    assert st == 200 and [r["id"] for r in b["runs"]] == [rid], b
    assert redis.cli("HGET", f"ps:run:{rid}", "attempt") == "1"
