"""Cluster mode, seventh pass (docs/cluster.md): the filtered DAG listing,
a gateway stopped while its DAG's task runs elsewhere, run search past a
tenant's newest runs, and a cancel of a run handed back by a stopped
worker. A real redis-server with AOF on (test_cluster's fixture), nodes on
loopback."""
import signal
import threading

import pytest

from clusterlib import wait_until
from daemonlib import Daemon, sandbox_mode
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_cluster5 import dag_end
from test_explore_cluster6 import STEP
from test_explore_dagblip import resumed
from test_explore_failover4 import Blip


def test_a_dag_run_validating_is_listed_by_its_status_on_every_gateway(tmp_path, nodes, redis):
    """While g1 validates a DAG run (a task file of some MiB: seconds of
    parsing), `GET /v1/dags?status=validating` lists it on g1 and on g2,
    as the unfiltered listing and the read by id show it. Before, the
    filtered listing on g2 was empty."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=2)
    big = STEP + "".join(f"v{i} = [" + ",".join(str(j) for j in range(60)) + "]\n" for i in range(800))
    pipeline = "tasks:\n  a: {file: t.py, function: f, args: [1]}\n"
    st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": big}, "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]
    seen = 0
    while True:
        _, l1 = g1.call("GET", "/v1/dags?status=validating")
        _, l2 = g2.call("GET", "/v1/dags?status=validating")
        _, r2 = g2.call("GET", "/v1/dags?status=running")
        st, b1 = g1.call("GET", f"/v1/dags/{dag_id}")
        assert st == 200, b1
        if b1["status"] != "validating":
            break
        assert [d["id"] for d in l1["dags"]] == [dag_id], l1
        assert [d["id"] for d in l2["dags"]] == [dag_id], l2
        assert [d["status"] for d in l2["dags"]] == ["validating"], l2
        assert dag_id not in [d["id"] for d in r2["dags"]], r2
        seen += 1
    assert seen, "the DAG run was never seen validating"
    b = dag_end(g2, dag_id, timeout=120)
    assert b["status"] == "succeeded", b
    _, l2 = g2.call("GET", "/v1/dags?status=validating")
    assert l2["dags"] == [], l2


SLOW = """
import time

def f(seconds: float = 30):
    time.sleep(seconds)
    return seconds
"""


def test_a_dag_run_validating_is_listed_past_newer_running_ones(tmp_path, nodes, redis):
    """`?status=validating&limit=1` lists the DAG run g1 validates while a
    newer DAG run, started after it, is running: the limit counts the
    DAG runs in the asked states, not every one stored `running`."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=2)
    big = STEP + "".join(f"v{i} = [" + ",".join(str(j) for j in range(60)) + "]\n" for i in range(3000))
    pipeline = "tasks:\n  a: {file: t.py, function: f, args: [1]}\n"
    st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": big}, "no_cache": True})
    assert st == 202, b
    validating = b["id"]
    st, b = g2.call("POST", "/v1/dags", {"pipeline": "tasks:\n  s: {file: s.py, function: f, args: [30]}\n",
                                         "files": {"s.py": SLOW}, "no_cache": True})
    assert st == 202, b
    running = b["id"]
    wait_until(lambda: g2.call("GET", f"/v1/dags/{running}")[1]["status"] == "running", 60, "the newer DAG run to run")
    seen = 0
    while True:
        lists = [g.call("GET", "/v1/dags?status=validating&limit=1")[1] for g in (g1, g2)]
        if g1.call("GET", f"/v1/dags/{validating}")[1]["status"] != "validating":
            break
        for l in lists:
            assert [d["id"] for d in l["dags"]] == [validating], l
        seen += 1
    assert seen, "the DAG run was never seen validating while the newer one ran"
    g2.call("DELETE", f"/v1/dags/{running}")


@pytest.mark.parametrize("via", ["g1", "g2"])
def test_a_cancel_of_a_run_a_stopped_worker_handed_back_ends_it_cancelled(tmp_path, nodes, redis, via):
    """w1 is stopped (SIGTERM, --drain-timeout 1) while it runs a run: the
    run is handed back to the cluster with no end written. A cancel sent
    through g2 afterwards, with no worker left to take the run over,
    ends it `cancelled` at once: the DELETE answers 200 with the run
    cancelled, and every gateway reads it so. Before, the cancel waited
    for a reclaim that only a live worker makes: the run stayed
    `running` (DELETE 202) as long as no worker came. Through g1 too, the
    gateway that submitted it and waits for it."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    w1 = nodes("w1", "worker", slots=1, extra=("--drain-timeout", "1"))
    st, b = g1.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 60}})
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: g1.call("GET", f"/v1/runs/{rid}")[1]["status"] == "running", 60, "the run to start on w1")
    w1.proc.send_signal(signal.SIGTERM)
    assert w1.proc.wait(60) == 0
    assert "handed back to the cluster" in (tmp_path / "w1" / "daemon.log").read_text()
    assert g2.call("GET", f"/v1/runs/{rid}")[1]["status"] == "running"
    st, b = (g1 if via == "g1" else g2).call("DELETE", f"/v1/runs/{rid}")
    assert st == 200 and b["status"] == "cancelled", (st, b)
    for g in (g1, g2):
        st, b = g.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and b["status"] == "cancelled" and b["attempt"] == 1, b
    # A worker that comes later finds nothing to run again.
    w2 = nodes("w2", "worker", slots=1)
    st, b = g1.call("POST", "/v1/runs?wait=true", {"source": STEP, "function": "f", "kwargs": {"n": 2}})
    assert st == 200 and b["result"] == 4, b
    st, b = g1.call("GET", f"/v1/runs/{rid}")
    assert b["status"] == "cancelled" and b["attempt"] == 1, b
    assert rid not in (tmp_path / "w2" / "daemon.log").read_text()


def test_a_cancel_of_a_run_whose_worker_died_ends_it_once_its_lease_expired(tmp_path, nodes, redis):
    """w1 is killed (-9) while it runs a run, and no worker is left to
    take the run over. Once w1's lease expired, a cancel through g2 ends
    the run `cancelled` at once, on every gateway. Before, it stayed
    `running` until a worker came and reclaimed it."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    w1 = nodes("w1", "worker", slots=1)
    st, b = g1.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 60}})
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: g1.call("GET", f"/v1/runs/{rid}")[1]["status"] == "running", 60, "the run to start on w1")
    w1.proc.kill()
    w1.proc.wait(30)
    wait_until(lambda: redis.cli("EXISTS", "ps:node:w1") == "0", 30, "w1's lease to expire")
    # A Redis up for less than a lease lifetime and the claim timeout may
    # not hold the live nodes' leases yet (after its restart): there the
    # node is only told. This one has been up longer.
    wait_until(lambda: int(redis.cli("INFO", "server").split("uptime_in_seconds:")[1].split()[0]) >= 5, 30,
               "Redis to be up past a lease lifetime and the claim timeout")
    st, b = g2.call("DELETE", f"/v1/runs/{rid}")
    assert st == 200 and b["status"] == "cancelled", (st, b)
    for g in (g1, g2):
        st, b = g.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and b["status"] == "cancelled" and b["attempt"] == 1, b


def test_a_gateway_stopped_while_its_dags_task_runs_elsewhere_hands_the_dag_over(tmp_path, nodes, redis):
    """g1 (--drain-timeout 600) drives a DAG run whose task's run runs on
    w1 for minutes, and is stopped (SIGTERM): nothing of the DAG run is
    g1's to finish (the run goes on on w1, in Redis), so g1 hands the DAG
    run over and exits at once, its owner lease given up; g2 takes the DAG
    run over and waits for the task's one run by its id. Before, g1 held
    the DAG run's thread through its run drain and then its DAG drain
    (two drain timeouts: here twenty minutes) while the DAG run waited."""
    g1 = nodes("g1", "gateway", extra=("--drain-timeout", "600"))
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=1)
    step = STEP + "\ndef s(n: int = 1):\n    import time\n    time.sleep(n)\n    return n\n"
    pipeline = "tasks:\n  a: {file: t.py, function: s, args: [50]}\n  b: {file: t.py, function: f, args: ['${a}']}\n"
    st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": step}, "no_cache": True})
    assert st == 202, b
    dag_id = b["id"]
    wait_until(lambda: [t for t in g2.call("GET", f"/v1/dags/{dag_id}")[1]["tasks"] if t["state"] == "running"],
               30, "the task to run")
    run_a = [t["run_id"] for t in g2.call("GET", f"/v1/dags/{dag_id}")[1]["tasks"] if t["name"] == "a"][0]
    wait_until(lambda: redis.cli("HGET", f"ps:run:{run_a}", "status") == "running", 60, "the task's run to start")
    g1.proc.send_signal(signal.SIGTERM)
    assert g1.proc.wait(120) == 0
    # g1 left while the task's run went on: it did not wait for it.
    assert redis.cli("HGET", f"ps:run:{run_a}", "status") == "running"
    b = dag_end(g2, dag_id, timeout=240)
    assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [50, 100], b
    assert [t["attempts"] for t in b["tasks"]] == [1, 1], b
    st, runs = g2.call("GET", "/v1/runs")
    assert sorted((r["id"], r["status"], r["attempt"]) for r in runs["runs"]) == sorted(
        (t["run_id"], "succeeded", 1) for t in b["tasks"]), (runs, b)
    assert resumed(tmp_path, "g2"), "g2 never took the DAG run over"


def test_q_finds_a_run_older_than_the_tenants_newest_10000(tmp_path, redis):
    """A tenant's oldest run (file needle.py) behind 10,000 newer ones
    (hay.py), all queued in Redis through a gateway (no worker): `GET
    /v1/runs?q=needle` finds it, as a single node does (its search looks
    among all a tenant's runs), and so does `?status=queued&q=NEEDLE`, and
    the page after the newest hay run (`before=`) with `limit=1` of
    `q=hay` is the next one. Before, a cluster looked among the newest
    10,000 only: the search answered an empty list."""
    g = Daemon(tmp_path / "g1", sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_queued_runs: 20000
        """, args=["--redis", redis.url, "--role", "gateway", "--node-id", "g1"])
    g.start()
    try:
        st, b = g.call("POST", "/v1/runs", {"source": STEP, "function": "f", "filename": "needle.py"})
        assert st == 202, b
        needle = b["id"]
        hay = []

        def submit(n):
            for _ in range(n):
                st, b = g.call("POST", "/v1/runs", {"source": STEP, "function": "f", "filename": "hay.py"})
                assert st == 202, b
                hay.append(b["id"])
        threads = [threading.Thread(target=submit, args=(2500,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(hay) == 10000
        st, l = g.call("GET", "/v1/runs?q=needle")
        assert st == 200 and [r["id"] for r in l["runs"]] == [needle], l
        st, l = g.call("GET", "/v1/runs?q=NEEDLE&status=queued")
        assert st == 200 and [r["id"] for r in l["runs"]] == [needle], l
        st, l = g.call("GET", "/v1/runs?q=hay&limit=2")
        assert st == 200 and len(l["runs"]) == 2, l
        st, l2 = g.call("GET", f"/v1/runs?q=hay&limit=1&before={l['runs'][0]['id']}")
        assert st == 200 and [r["id"] for r in l2["runs"]] == [l["runs"][1]["id"]], (l, l2)
    finally:
        g.stop()


def test_a_cancel_of_a_run_on_a_worker_cut_from_redis_ends_it_once(tmp_path, nodes, redis):
    """w1 runs a run and is cut from Redis past its lease (no other worker
    to take the run over). A cancel through g1 ends it `cancelled` at once;
    once w1 reaches Redis again it hears the cancel (its lease's look),
    stops the run, and its own end of the run is refused: the run stays
    `cancelled`, attempt 1, on every gateway and in w1's answer."""
    blip = Blip(redis, tmp_path / "blip.sock", b"never-sent", seconds=None)
    try:
        g1 = nodes("g1", "gateway")
        g2 = nodes("g2", "gateway")
        w1 = nodes("w1", "all", slots=1, redis_url=blip.url)
        st, b = g1.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 40}})
        assert st == 202, b
        rid = b["id"]
        wait_until(lambda: redis.cli("HGET", f"ps:run:{rid}", "status") == "running", 60, "the run to start on w1")
        blip._cut()
        wait_until(lambda: redis.cli("EXISTS", "ps:node:w1") == "0", 30, "w1's lease to expire")
        wait_until(lambda: int(redis.cli("INFO", "server").split("uptime_in_seconds:")[1].split()[0]) >= 5, 30,
                   "Redis to be up past a lease lifetime and the claim timeout")
        st, b = g1.call("DELETE", f"/v1/runs/{rid}")
        assert st == 200 and b["status"] == "cancelled", (st, b)
        blip.restore()
        wait_until(lambda: f"run {rid}: cancelled from another node" in (tmp_path / "w1" / "daemon.log").read_text(),
                   60, "w1 to hear the cancel")
        wait_until(lambda: w1.call("GET", f"/v1/runs/{rid}")[1]["status"] == "cancelled", 60,
                   "w1 to answer the run cancelled")
        for g in (g1, g2, w1):
            st, b = g.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and b["status"] == "cancelled" and b["attempt"] == 1, b
    finally:
        blip.close()
