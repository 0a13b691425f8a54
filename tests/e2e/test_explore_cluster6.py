"""Cluster mode, sixth pass (docs/cluster.md): nothing acknowledged is lost
and every gateway gives the same answer when a gateway stops, or is cut
from Redis, in the middle of a DAG run or a run. A real redis-server with
AOF on (test_cluster's fixture), nodes on loopback, a gateway cut from
Redis by a proxy (test_explore_failover4's Blip)."""
import signal
import sqlite3

from clusterlib import wait_until
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_cluster5 import dag_end
from test_explore_dagblip import resumed
from test_explore_failover4 import Blip

STEP = """
def f(n: int = 1):
    return n * 2

def bad(n: int = 1):
    raise ValueError(f"boom {n}")
"""


def local_dag(node_root, dag_id):
    """The DAG run's status and its tasks' (name, state, run id) in the
    node's own SQLite store."""
    db = sqlite3.connect(node_root / "home" / "pysprinter.db")
    try:
        st = db.execute("SELECT status FROM dag_runs WHERE id = ?", (dag_id,)).fetchone()
        tasks = db.execute("SELECT name, state, run_id FROM dag_tasks WHERE dag_id = ? ORDER BY name",
                           (dag_id,)).fetchall()
    finally:
        db.close()
    return st[0] if st else None, tasks


def test_a_gateway_stopped_with_a_failed_dag_runs_end_unwritten_ends_it_once(tmp_path, nodes, redis):
    """g1 drives a DAG run whose task fails; Redis is away for g1 from the
    write of the DAG run's end (`failed`), and g1 is stopped (SIGTERM,
    --drain-timeout 1) before it comes back: g1 exits with the end in its
    own store only, its lease lapses and g2 resumes the DAG run from what
    Redis holds (the task `failed`, the DAG run `running`). g2 ends it
    `failed` with the task's one run: the failure stands, as g1 recorded
    it. Before, g2 ran the failed task again (a second execution the
    user never asked for, whose end may differ from the first)."""
    blip = Blip(redis, tmp_path / "blip.sock", b'"status":"failed"', seconds=None)
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url, extra=("--drain-timeout", "1"))
        g2 = nodes("g2", "gateway")
        nodes("w1", "worker", slots=1)
        blip.armed = True
        pipeline = "tasks:\n  a: {file: t.py, function: bad, args: [3]}\n  b: {file: t.py, function: f, args: ['${a}']}\n"
        st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": STEP}, "no_cache": True})
        assert st == 202, b
        dag_id = b["id"]
        wait_until(lambda: blip.fired, 60, "g1 to write the DAG run's end")
        g1.proc.send_signal(signal.SIGTERM)
        g1.proc.wait(60)
        st1, tasks1 = local_dag(tmp_path / "g1", dag_id)
        assert st1 == "failed", (st1, tasks1)
        run_a = [t[2] for t in tasks1 if t[0] == "a"][0]
        b = dag_end(g2, dag_id)
        assert b["status"] == "failed", b
        a = [t for t in b["tasks"] if t["name"] == "a"][0]
        assert a["state"] == "failed" and a["run_id"] == run_a and a["attempts"] == 1, b
        assert "boom 3" in a["error"], a
        assert [t["state"] for t in b["tasks"] if t["name"] == "b"] == ["skipped"], b
        # One execution: the tenant has the task's one run, nothing more.
        st, runs = g2.call("GET", "/v1/runs")
        assert st == 200 and [r["id"] for r in runs["runs"]] == [run_a], runs
        assert resumed(tmp_path, "g2"), "g2 never took the DAG run over"
        # g1 started again reads the same end: one answer everywhere.
        blip.restore()
        wait_until(lambda: blip.listener is not None, 10, "the proxy to listen again")
        g1.start()
        st, b1 = g1.call("GET", f"/v1/dags/{dag_id}")
        assert st == 200 and b1["status"] == "failed", b1
        assert [(t["name"], t["state"], t["run_id"]) for t in b1["tasks"]] == \
            [(t["name"], t["state"], t["run_id"]) for t in b["tasks"]], (b1, b)
    finally:
        blip.close()
