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
