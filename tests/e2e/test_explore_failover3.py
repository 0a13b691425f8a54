"""Cluster mode under failures, third pass (docs/cluster.md): DAG runs
submitted through a gateway that freezes, a lone gateway that cannot serve
for a while, a Redis still loading its AOF, a DAG owner whose lease lapsed
unseen. Each test is a defect found exploring these failures."""
import contextlib
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


@contextlib.contextmanager
def stopped(daemon):
    """daemon frozen (SIGSTOP: its kernel still takes connections and
    requests, nobody answers) for the with-block."""
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        yield daemon
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)


def finish(proc, timeout=60):
    """proc's (returncode, stdout, stderr); killed past timeout (then
    communicate()'s TimeoutExpired is raised)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def a_task_running(redis):
    return any(redis.cli("HGET", k, "status") == "running" for k in redis.cli("KEYS", "ps:run:*").split())


def dag_ids(gw):
    st, b = gw.call("GET", "/v1/dags")
    assert st == 200, b
    return [x["id"] for x in b["dags"]]


def test_a_dag_run_submitted_to_a_frozen_gateway_goes_to_the_next_one_once(cluster, redis, tmp_path):
    """`pysprinter --server GW1,GW2 dag run p.yaml` whose GW1 is frozen
    (SIGSTOP: its kernel takes the connection and the request, nobody
    answers). The DAG submit carries a key of the CLI's own, as a run's
    does: after the silence limit it goes to GW2, which runs the DAG run;
    GW1, resumed, reads the submit it held and starts no second DAG run.
    Before, the CLI waited on GW1 for ever (POST /v1/dags took no
    Idempotency-Key, so the CLI could not send it again)."""
    gw1 = cluster("gw1", "gateway")
    gw2 = cluster("gw2", "gateway")
    cluster("w1", "worker")
    (tmp_path / "t.py").write_text(DAG_TASKS)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    with stopped(gw1):
        code, out, err = finish(run_cli(tmp_path, [gw1, gw2], "dag", "run", "p.yaml", "--json"))
    assert code == 0, (code, out, err)
    assert json.loads(out)["status"] == "succeeded", out
    wait_until(lambda: gw1.call("GET", "/healthz", token=None)[0] == 200, 30, "GW1 serving again")
    time.sleep(1)  # GW1 answers the submit it held
    ids = dag_ids(gw2)
    assert len(ids) == 1 and dag_ids(gw1) == ids, ids


def test_a_dag_submit_with_an_idempotency_key_starts_one_dag_run_on_any_gateway(cluster, redis, tmp_path):
    """POST /v1/dags with an Idempotency-Key, then the same key again
    through another gateway (a client whose answer was lost): the second
    answers with the first DAG run (202 and its Location; with ?wait=true
    its end), nothing more runs. Another tenant's same key is its own.
    Before, the header was ignored: each POST started a DAG run."""
    gw1 = cluster("gw1", "gateway")
    gw2 = cluster("gw2", "gateway")
    cluster("w1", "worker")
    body = {"pipeline": PIPELINE, "files": {"t.py": DAG_TASKS}, "no_cache": True}
    hdr = {"Idempotency-Key": "dag-k1"}
    st, h, raw = gw1.request("POST", "/v1/dags", body, headers=hdr)
    assert st == 202, raw
    first = json.loads(raw)["id"]
    st, h, raw = gw2.request("POST", "/v1/dags", body, headers=hdr)
    assert (st, json.loads(raw)["id"], h.get("location")) == (202, first, f"/v1/dags/{first}"), (st, h, raw)
    st, b = gw2.call("POST", "/v1/dags?wait=true&timeout=60", body, headers=hdr)
    assert (st, b["id"], b["status"]) == (200, first, "succeeded"), (st, b)
    assert dag_ids(gw1) == [first]
    st, b = gw1.call("POST", "/v1/dags", body, token="bob", headers=hdr)
    assert st == 202 and b["id"] != first, b
    st, b = gw1.call("POST", "/v1/dags", body, headers={"Idempotency-Key": "bad key"})
    assert st == 400, b


def test_a_dag_submit_with_an_idempotency_key_starts_one_dag_run_on_one_node(tmp_path):
    """The same on a single node (its SQLite store), and through the Python
    client's submit_dag(idempotency_key=) and run_dag(idempotency_key=)."""
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    d.start()
    try:
        (tmp_path / "t.py").write_text(DAG_TASKS)
        (tmp_path / "p.yaml").write_text(PIPELINE)
        body = {"pipeline": PIPELINE, "files": {"t.py": DAG_TASKS}}
        st, b = d.call("POST", "/v1/dags", body, headers={"Idempotency-Key": "one"})
        assert st == 202, b
        first = b["id"]
        st, b = d.call("POST", "/v1/dags?wait=true&timeout=60", body, headers={"Idempotency-Key": "one"})
        assert (st, b["id"], b["status"]) == (200, first, "succeeded"), (st, b)
        py = subprocess.run([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(ROOT / 'python')!r})
from pysprinter.client import Client
c = Client({d.url!r}, token={TOKENS['alice']!r}, timeout=60)
p = {str(tmp_path / 'p.yaml')!r}
print(c.submit_dag(p, idempotency_key="one")["id"])
print(c.run_dag(p, idempotency_key="two")["id"] == c.run_dag(p, idempotency_key="two")["id"])
"""], capture_output=True, text=True, timeout=120)
        assert py.stdout.split() == [first, "True"], (py.stdout, py.stderr)
        st, b = d.call("GET", "/v1/dags")
        assert len(b["dags"]) == 2, b
    finally:
        d.stop()


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
    line = run.stderr.readline()
    redis.start()
    code, out, err = finish(run, 90)
    assert "cannot serve this now" in line and "waiting up to 60 s" in line, (line, err)
    assert (code, out) == (0, "before\nafter\nx\n"), (code, out, err)


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
    # A node started meanwhile says Redis does not serve yet, exit 6 (its
    # unit starts it again); before: "cannot reach Redis …: Input/output error".
    try:
        cluster("gw2", "gateway")
        started = None
    except RuntimeError as e:
        started = str(e)
    assert started and started.startswith("pysprinterd exited 6") and "does not serve yet" in started, started
    assert redis.cli("PING").startswith("LOADING"), "Redis loaded before the node started: load more keys"
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


def test_a_dag_run_whose_gateway_freezes_while_the_cli_waits_ends_through_the_next_one(cluster, redis, tmp_path):
    """`pysprinter --server GW1,GW2 dag run` submitted to GW1, which freezes
    (SIGSTOP) while the CLI asks it how the DAG run stands. A look that
    hears nothing for the silence limit is given up, as a stream's is, and
    asked of GW2, which takes the DAG run over (GW1's lease lapsed) and
    ends it: exit 0, succeeded. Before, the CLI's GET waited on GW1 for
    ever (no limit on a plain read)."""
    gw1 = cluster("gw1", "gateway")
    gw2 = cluster("gw2", "gateway")
    cluster("w1", "worker")
    # past dagleases.lua's grace after Redis's start: a takeover is allowed
    wait_until(lambda: int(redis.cli("INFO", "server").split("uptime_in_seconds:")[1].split()[0]) >= 7, 30,
               "Redis up for two lease lifetimes")
    (tmp_path / "t.py").write_text(DAG_TASKS)
    (tmp_path / "p.yaml").write_text("tasks:\n  a: {file: t.py, function: f, args: [a], kwargs: {seconds: 4}}\n")
    run = run_cli(tmp_path, [gw1, gw2], "dag", "run", "p.yaml", "--json")
    try:
        wait_until(lambda: a_task_running(redis) or run.poll() is not None, 60, "the DAG's task running on w1")
        with stopped(gw1):
            code, out, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert code == 0, (code, out, err)
    assert json.loads(out)["status"] == "succeeded", out
