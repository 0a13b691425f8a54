"""Cluster mode, sixth pass (docs/cluster.md): nothing acknowledged is lost
and every gateway gives the same answer when a gateway stops, or is cut
from Redis, in the middle of a DAG run or a run. A real redis-server with
AOF on (test_cluster's fixture), nodes on loopback, a gateway cut from
Redis by a proxy (test_explore_failover4's Blip)."""
import signal
import socket
import threading
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



class DropBlip(Blip):
    """Blip, and once `dropping` is set, a connection of the node that
    sends a command naming `drop` is closed (that one only: the node's
    other commands go through), so that write never lands."""

    def __init__(self, redis, path, drop, **kw):
        super().__init__(redis, path, b"never-sent", **kw)
        self.drop, self.dropping, self.dropped = drop, False, 0

    def _pipe(self, src, dst, from_node):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_node and self.dropping and self.drop in data:
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


SLOW = """
import time

def f(seconds: float = 12):
    time.sleep(seconds)
    return time.time_ns()
"""


def test_a_node_whose_attempt_was_taken_over_shows_the_newer_attempt(tmp_path, nodes, redis):
    """n1 (role all) runs a run and is cut from Redis past its lease: w2
    takes the run over (attempt 2). n1's attempt 1 ends while it is cut,
    its end kept in memory to be written later (where Redis will refuse it
    as stale); Redis comes back for n1's reads while that write has not
    landed yet. n1 then answers the run as Redis holds it, attempt 2
    running, as w2 does, and later attempt 2's end. Before, n1 showed its
    own dropped attempt's end (`succeeded`, its own result) over the
    record of attempt 2 still running: two answers for one run."""
    blip = DropBlip(redis, tmp_path / "blip.sock", b'"run_ms"', seconds=None)
    try:
        n1 = nodes("n1", "all", slots=1, redis_url=blip.url)
        st, b = n1.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 12}})
        assert st == 202, b
        rid = b["id"]
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "node") == "n1", 30, "the run to start on n1")
        w2 = nodes("w2", "worker", slots=1)
        blip._cut()
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "node") == "w2"
                   and redis.cli("HGET", f"ps:run:{rid}", "attempt") == "2", 60, "w2 to take the run over")
        wait_until(lambda: f"run {rid}: cannot store its result yet" in (tmp_path / "n1" / "daemon.log").read_text(),
                   60, "n1's attempt to end")
        blip.dropping = True
        blip.restore()

        def read(gw):
            try:
                st, b = gw.call("GET", f"/v1/runs/{rid}", timeout=10)
            except OSError:
                return None
            return b if st == 200 else None

        b1 = wait_until(lambda: read(n1), 30, "n1 to read the run from Redis again")
        b2 = read(w2)
        if b2["status"] == "running":  # attempt 2 still runs (its 12 s)
            assert (b1["status"], b1["attempt"]) == ("running", 2), b1
            st, lst = n1.call("GET", "/v1/runs")
            assert st == 200 and [(r["status"], r["attempt"]) for r in lst["runs"] if r["id"] == rid] == \
                [("running", 2)], lst
        end = w2.wait_status(rid, ["succeeded", "failed", "lost", "cancelled", "error", "killed"], timeout=60)
        assert (end["status"], end["attempt"]) == ("succeeded", 2), end
        blip.dropping = False
        b1 = n1.wait_status(rid, ["succeeded"], timeout=60)
        assert b1["result"] == end["result"], (b1, end)
    finally:
        blip.close()



def test_a_wait_on_a_node_whose_attempt_was_taken_over_answers_the_runs_end(tmp_path, nodes, redis):
    """A client waits in `POST /v1/runs?wait=true` on n1 (role all), which
    runs the run; n1 is cut from Redis past its lease, w2 takes the run
    over (attempt 2), and n1 has Redis again before its own attempt ends.
    Its attempt's end is refused as stale; the client's answer is the
    run's end, attempt 2's, as every node answers it. Before, n1 answered
    200 with the run `running` (the record as attempt 2 had it then) the
    moment its own attempt ended: a client reads a 200 as the end."""
    blip = Blip(redis, tmp_path / "blip.sock", b"never-sent", seconds=None)
    try:
        n1 = nodes("n1", "all", slots=1, redis_url=blip.url)
        answer = {}

        def post():
            answer["r"] = n1.call("POST", "/v1/runs?wait=true&timeout=120", {"source": SLOW, "kwargs": {"seconds": 8}},
                                  timeout=180)

        t = threading.Thread(target=post)
        t.start()
        wait_until(lambda: [k for k in redis.cli("KEYS", "ps:run:*").split() if
                            redis.cli("HGET", k, "node") == "n1"], 30, "the run to start on n1")
        rid = redis.cli("KEYS", "ps:run:*").split()[0][len("ps:run:"):]
        w2 = nodes("w2", "worker", slots=1)
        blip._cut()
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "node") == "w2", 60, "w2 to take the run over")
        blip.restore()
        t.join(180)
        st, b = answer["r"]
        end = w2.wait_status(rid, ["succeeded", "failed", "lost", "cancelled", "error", "killed"], timeout=60)
        assert (end["status"], end["attempt"]) == ("succeeded", 2), end
        assert st == 200 and (b["status"], b["attempt"], b["result"]) == ("succeeded", 2, end["result"]), (st, b, end)
    finally:
        blip.close()
