"""Cluster mode, sixth pass (docs/cluster.md): nothing acknowledged is lost
and every gateway gives the same answer when a gateway stops, or is cut
from Redis, in the middle of a DAG run or a run. A real redis-server with
AOF on (test_cluster's fixture), nodes on loopback, a gateway cut from
Redis by a proxy (test_explore_failover4's Blip)."""
import json
import signal
import socket
import threading
import sqlite3

from clusterlib import wait_until
from daemonlib import Daemon, sandbox_mode
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


def test_a_worker_stopped_past_its_drain_leaves_its_run_to_another(tmp_path, nodes, redis):
    """w1 runs a run of 8 s and is stopped (SIGTERM) with --drain-timeout 1:
    past its drain it stops the run and writes no end, as when it dies
    (kill -9); w2 takes the run over once w1's lease expired and the run
    succeeds there, attempt 2, with its result. A client waiting on the
    gateway gets that end. Before, w1 ended the run `cancelled` ("the run
    was cancelled"): a worker's restart (a deploy, `systemctl restart`)
    ended every run it held for good, where its crash would have lost
    none."""
    g1 = nodes("g1", "gateway")
    w1 = nodes("w1", "worker", slots=1, extra=("--drain-timeout", "1"))
    answer = {}

    def post():
        answer["r"] = g1.call("POST", "/v1/runs?wait=true&timeout=120", {"source": SLOW, "kwargs": {"seconds": 8}},
                              timeout=180)

    t = threading.Thread(target=post)
    t.start()
    wait_until(lambda: [k for k in redis.cli("KEYS", "ps:run:*").split() if
                        redis.cli("HGET", k, "node") == "w1"], 30, "the run to start on w1")
    rid = redis.cli("KEYS", "ps:run:*").split()[0][len("ps:run:"):]
    w2 = nodes("w2", "worker", slots=1)
    w1.proc.send_signal(signal.SIGTERM)
    assert w1.proc.wait(60) == 0
    t.join(180)
    st, b = answer["r"]
    assert st == 200, (st, b)
    assert (b["status"], b["attempt"]) == ("succeeded", 2), b
    assert redis.cli("HGET", f"ps:run:{rid}", "node") == "w2"
    st, b2 = w2.call("GET", f"/v1/runs/{rid}")
    assert st == 200 and b2["result"] == b["result"], (b2, b)
    assert "handed back" in (tmp_path / "w1" / "daemon.log").read_text()


def test_a_node_stopped_past_its_drain_answers_its_waiting_client_202(tmp_path, nodes, redis):
    """n1 (role all) runs the run a client waits for on it
    (`POST /v1/runs?wait=true`) and is stopped with --drain-timeout 1: the
    client's answer is 202 with the run in flight and its Location (ask
    again elsewhere), and n2 runs the run to its end, attempt 2. Before,
    the run ended `cancelled` (so did the answer), its end for good."""
    n1 = nodes("n1", "all", slots=1, extra=("--drain-timeout", "1"))
    answer = {}

    def post():
        answer["r"] = n1.request("POST", "/v1/runs?wait=true&timeout=120", {"source": SLOW, "kwargs": {"seconds": 8}},
                                 timeout=180)

    t = threading.Thread(target=post)
    t.start()
    wait_until(lambda: [k for k in redis.cli("KEYS", "ps:run:*").split() if
                        redis.cli("HGET", k, "node") == "n1"], 30, "the run to start on n1")
    rid = redis.cli("KEYS", "ps:run:*").split()[0][len("ps:run:"):]
    n2 = nodes("n2", "all", slots=1)
    n1.proc.send_signal(signal.SIGTERM)
    t.join(180)
    st, hdrs, raw = answer["r"]
    b = json.loads(raw)
    assert st == 202 and b["id"] == rid and b["status"] in ("queued", "running"), (st, b)
    assert hdrs.get("location") == f"/v1/runs/{rid}", hdrs
    assert n1.proc.wait(60) == 0
    end = n2.wait_status(rid, ["succeeded", "failed", "lost", "cancelled", "error", "killed"], timeout=60)
    assert (end["status"], end["attempt"]) == ("succeeded", 2), end


def task_runs(gw, b):
    """The tenant's runs other than those named: (id, status, attempt)."""
    st, runs = gw.call("GET", "/v1/runs")
    assert st == 200, runs
    return sorted((r["id"], r["status"], r["attempt"]) for r in runs["runs"] if r["id"] not in b)


def test_a_gateway_stopped_with_a_dag_task_queued_runs_it_once(tmp_path, nodes, redis):
    """g1 drives a DAG run whose task's run waits in the queue (the one
    worker is busy) and is stopped (SIGTERM, --drain-timeout 1): the run
    stays queued in Redis, and g2, taking the DAG run over, waits for that
    run by its id. The task runs once. Before, g1 recorded the task
    `pending` again when it stopped: g2 submitted a second run for it,
    and the first one, still queued, ran too."""
    g1 = nodes("g1", "gateway", extra=("--drain-timeout", "1"))
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=1)
    st, b = g1.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 4}})
    assert st == 202, b
    blocker = b["id"]
    wait_until(lambda: redis.cli("HGET", f"ps:run:{blocker}", "status") == "running", 30, "the blocker to run")
    pipeline = "tasks:\n  a: {file: t.py, function: f, args: [21]}\n"
    st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": STEP}, "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]
    wait_until(lambda: len(task_runs(g2, {blocker})) == 1, 30, "the task's run to be queued")
    g1.proc.send_signal(signal.SIGTERM)
    assert g1.proc.wait(60) == 0
    b = dag_end(g2, dag_id)
    assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [42], b
    runs = task_runs(g2, {blocker})
    assert [(r[1], r[2]) for r in runs] == [("succeeded", 1)] and runs[0][0] == b["tasks"][0]["run_id"], runs


def test_a_node_stopped_with_a_dag_task_running_on_it_runs_it_once(tmp_path, nodes, redis):
    """n1 (role all, alone) drives a DAG run and runs its task's run, and is
    stopped past its drain: the run is handed back to the cluster (no end
    written), the DAG run left running. Started again, n1 takes both over:
    the run runs again (attempt 2) and the DAG run waits for it by its id.
    One run for the task, none more."""
    n1 = nodes("n1", "all", slots=1, extra=("--drain-timeout", "1"))
    step = STEP + "\ndef s(n: int = 1):\n    import time\n    time.sleep(n)\n    return n\n"
    pipeline = "tasks:\n  a: {file: t.py, function: s, args: [6]}\n  b: {file: t.py, function: f, args: ['${a}']}\n"
    st, b = n1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": step}, "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]
    wait_until(lambda: [k for k in redis.cli("KEYS", "ps:run:*").split() if
                        redis.cli("HGET", k, "status") == "running"], 30, "the task's run to start")
    n1.proc.send_signal(signal.SIGTERM)
    assert n1.proc.wait(60) == 0
    n1.start()
    b = dag_end(n1, dag_id, timeout=90)
    assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [6, 12], b
    runs = task_runs(n1, set())
    assert sorted((r[0], r[1], r[2]) for r in runs) == sorted(
        [(b["tasks"][0]["run_id"], "succeeded", 2), (b["tasks"][1]["run_id"], "succeeded", 1)]), (runs, b)


def test_a_single_node_stopped_with_a_dag_task_queued_runs_it_once(tmp_path):
    """The same on one node (no Redis): its one slot busy, a DAG run's task
    waits in the queue when the daemon is stopped; started again, the
    daemon runs the queued run and the resumed DAG run waits for it. The
    task runs once. Before, it ran twice: the queued run, and a new one
    the resume submitted for the task recorded `pending` again."""
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_concurrent_runs: 1
          max_concurrent_per_tenant: 1
        """, args=["--drain-timeout", "1"])
    d.start()
    try:
        st, b = d.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 60}})
        assert st == 202, b
        blocker = b["id"]
        wait_until(lambda: d.call("GET", f"/v1/runs/{blocker}")[1]["status"] == "running", 30, "the blocker to run")
        pipeline = "tasks:\n  a: {file: t.py, function: f, args: [21]}\n"
        st, b = d.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": STEP}, "no_cache": True})
        assert st == 202, b
        dag_id = b["id"]
        wait_until(lambda: len(task_runs(d, {blocker})) == 1, 30, "the task's run to be queued")
        assert d.stop() == 0
        d.start()
        b = dag_end(d, dag_id)
        assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [42], b
        runs = task_runs(d, {blocker})
        assert [(r[1], r[2]) for r in runs] == [("succeeded", 1)] and runs[0][0] == b["tasks"][0]["run_id"], runs
    finally:
        d.stop()


def test_a_dag_run_validating_reads_the_same_on_every_gateway(tmp_path, nodes, redis):
    """While g1 validates a DAG run (a task file of some MiB: seconds of
    parsing), g2 shows it as g1 does: `validating`, its tasks pending, in
    a read by id and in the listing. Before, g2 said `running` with no
    task while g1 said `validating` with two pending: a client behind a
    load balancer saw the DAG run jump between the two."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=2)
    big = STEP + "".join(f"v{i} = [" + ",".join(str(j) for j in range(60)) + "]\n" for i in range(800))
    pipeline = "tasks:\n  a: {file: t.py, function: f, args: [1]}\n  b: {file: t.py, function: f, args: ['${a}']}\n"
    st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": big}, "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]

    def view(b):
        return b["status"], [(t["name"], t["state"]) for t in b["tasks"]]

    seen = 0
    while True:
        st1, b1 = g1.call("GET", f"/v1/dags/{dag_id}")
        st2, b2 = g2.call("GET", f"/v1/dags/{dag_id}")
        _, l2 = g2.call("GET", "/v1/dags")
        st3, b3 = g1.call("GET", f"/v1/dags/{dag_id}")
        assert st1 == st2 == st3 == 200, (b1, b2, b3)
        if b1["status"] != "validating" or b3["status"] != "validating":
            break
        assert view(b2) == view(b1) == ("validating", [("a", "pending"), ("b", "pending")]), (b1, b2)
        assert [d["status"] for d in l2["dags"] if d["id"] == dag_id] == ["validating"], l2
        seen += 1
    assert seen, "the DAG run was never seen validating"
    b = dag_end(g2, dag_id, timeout=120)
    assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [2, 4], b
