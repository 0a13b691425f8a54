"""Cluster mode under failures, third pass (docs/cluster.md): DAG runs
submitted through a gateway that freezes, a lone gateway that cannot serve
for a while, a Redis still loading its AOF, a DAG owner whose lease lapsed
unseen. Each test is a defect found exploring these failures."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from clusterlib import REDIS, wait_until
from conftest import ROOT
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import DAG_TASKS, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; a fixture)
from test_explore_failover import TWO_LINES, cluster  # noqa: F401 (cluster: a fixture)
from test_explore_failover2 import run_cli

PIPELINE = "tasks:\n  a: {file: t.py, function: f, args: [a], kwargs: {seconds: 0}}\n"


def dag_ids(gw):
    st, b = gw.call("GET", "/v1/dags")
    assert st == 200, b
    return [x["id"] for x in b["dags"]]


def test_a_cli_with_one_gateway_waits_through_its_503(cluster, redis, tmp_path):
    """`pysprinter --server GW run` while GW cannot reach Redis: GW answers
    503 `redis_unreachable` with Retry-After (nothing was done). The CLI
    says once that it waits, asks again as Retry-After asks, and runs the
    job once Redis is back, exit 0. Before, it ended at the first 503 with
    exit 6 (only a 429 was asked again)."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    (tmp_path / "job.py").write_text(TWO_LINES)
    redis.kill9()
    run = run_cli(tmp_path, [gw], "run", "job.py", "--seconds", "0")
    try:
        wait_until(lambda: "waiting" in (run.stderr.readline() or "x") or run.poll() is not None, 30,
                   "the CLI meeting the 503")
        redis.start()
        out, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert (run.returncode, out) == (0, "before\nafter\nx\n"), (run.returncode, out, err)


def test_a_redis_loading_its_aof_is_503_like_an_unreachable_one(cluster, redis, tmp_path):
    """Redis restarted on a big AOF answers every command `-LOADING` until
    it has read it all (here: 20,000 keys read 0.5 ms each, and events
    served every KiB, as a big data set's every 2 MiB). Nothing was done:
    a gateway answers 503 `redis_unreachable` with Retry-After, as for a
    Redis it cannot reach, and a run submitted once Redis has loaded runs.
    Before, the LOADING error was a 500 `internal`."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    cmds = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$1\r\nx\r\n" for k in (f"junk:{i}" for i in range(20000)))
    subprocess.run(["redis-cli", "-s", redis.sock, "--pipe"], input=cmds, text=True, capture_output=True, check=True)
    redis.cli("BGREWRITEAOF")
    wait_until(lambda: "aof_rewrite_in_progress:0" in redis.cli("INFO", "persistence")
               and "aof_rewrite_scheduled:0" in redis.cli("INFO", "persistence"), 60, "the AOF rewritten")
    redis.kill9()
    redis.proc = subprocess.Popen(
        [REDIS, "--port", "0", "--unixsocket", redis.sock, "--dir", str(redis.dir), "--appendonly", "yes",
         "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0", "--save", "", "--loglevel", "warning",
         "--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: redis.cli("PING").startswith("LOADING"), 30, "Redis loading its AOF")
    st, hdrs, raw = gw.request("POST", "/v1/runs", {"source": TWO_LINES, "kwargs": {"seconds": 0}})
    loading = redis.cli("PING").startswith("LOADING")
    err = json.loads(raw)["error"]
    assert loading, "Redis loaded before the request was answered: load more keys"
    assert (st, err["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), (st, hdrs, raw)
    wait_until(lambda: redis.cli("PING") == "PONG", 60, "Redis loaded")
    wait_until(lambda: gw.run(TWO_LINES, kwargs={"seconds": 0})[0] == 200, 30, "a run through the gateway")


def test_a_dag_owner_whose_lease_lapsed_unseen_keeps_driving_its_dag_run(cluster, redis, tmp_path):
    """The owner lease of a DAG run lapses with nobody taking it (Redis
    down past the lease's 3 s comes back with it expired; here: the lease
    key deleted, again and again). The owner's next write (dagput.lua)
    finds no lease: still its own, as its lease tick (dagleases.lua) takes
    it back; the DAG run goes on there, each task run once. Before, the
    write read an absent lease as another owner's: the live owner stopped
    driving its DAG run ("no longer holds its lease") and a takeover had
    to resume it."""
    gw = cluster("gw1", "gateway")
    cluster("w1", "worker")
    pipeline = ("tasks:\n  a: {file: t.py, function: f, args: [a], kwargs: {seconds: 3}}\n"
                "  b: {file: t.py, function: f, args: ['${a}-b'], kwargs: {seconds: 0}}\n")
    st, b = gw.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": DAG_TASKS}, "no_cache": True})
    assert st == 202, b
    did = b["id"]
    stop = threading.Event()

    def lapse():
        while not stop.is_set():
            redis.cli("DEL", f"ps:dagowner:{did}")
            time.sleep(0.01)

    t = threading.Thread(target=lapse, daemon=True)
    t.start()
    try:
        st, b = gw.call("GET", f"/v1/dags/{did}?wait=true&timeout=60")
    finally:
        stop.set()
        t.join()
    assert (st, b["status"]) == (200, "succeeded"), (st, b)
    assert sorted((x["name"], x.get("result"), x.get("attempts")) for x in b["tasks"]) == [
        ("a", "a", 1), ("b", "a-b", 1)], b
    log = gw.log.read_text()
    assert "no longer holds its lease" not in log and "this node resumes it" not in log, log[-3000:]
