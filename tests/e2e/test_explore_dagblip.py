"""Cluster mode: a Redis blip on the gateway that drives a DAG run, as it
writes the DAG run's end and while a client waits in
`POST /v1/dags?wait=true` (docs/cluster.md "DAG runs"). A real
redis-server with AOF on (test_cluster's fixture), nodes on loopback, the
gateway cut from Redis by a proxy (test_explore_failover4's Blip)."""
import json
import subprocess
import sys
import threading

from clusterlib import wait_until
from conftest import DAEMON, ROOT
from daemonlib import TOKENS
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_cluster5 import dag_end
from test_explore_failover2 import run_cli
from test_explore_failover3 import finish
from test_explore_failover4 import Blip

STEP = """
import time

def f(n: int = 1):
    return n * 2

def slow(n: int = 1):
    time.sleep(n)
    return "slept"
"""


def resumed(tmp_path, *names):
    """The gateways' log lines that took a DAG run over."""
    return [line for n in names for line in (tmp_path / n / "daemon.log").read_text().splitlines()
            if "this node resumes it" in line]


def test_a_redis_blip_as_the_gateway_writes_a_dag_runs_end(tmp_path, nodes, redis):
    """g1 drives a DAG run and loses Redis for a second at the write of its
    end (the first command that carries the record `succeeded`). The write
    is asked again once Redis answers: the DAG run ends in Redis by g1's
    own write, once, and no gateway resumes it. Before, the lost write was
    only logged ("cannot write its state to Redis: Connection refused"):
    the DAG run stayed `running` in Redis, its lease lapsed, another
    gateway (or g1 itself) resumed it, and g1's SQLite kept an ending of
    its own."""
    blip = Blip(redis, tmp_path / "blip.sock", b'"status":"succeeded"')
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        g2 = nodes("g2", "gateway")
        nodes("w1", "worker", slots=1)
        blip.armed = True
        pipeline = "tasks:\n  a: {file: t.py, function: f, args: [21]}\n"
        st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": STEP}, "no_cache": True})
        assert st == 202, b
        dag_id = b["id"]
        b = dag_end(g2, dag_id)
        assert blip.fired, ("g1 never wrote the DAG run's end through the proxy", b)
        assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == [42], b
        # Ended by g1's write: out of the running set, its lease gone, and
        # nobody took it over.
        assert resumed(tmp_path, "g1", "g2") == []
        assert redis.cli("SISMEMBER", "ps:dags:running", dag_id).strip() == "0"
        assert redis.cli("EXISTS", f"ps:dagowner:{dag_id}").strip() == "0"
        log = (tmp_path / "g1" / "daemon.log").read_text()
        assert f"DAG run {dag_id}: succeeded" in log, log
        assert "did not answer the write of its final state" in log, log
    finally:
        blip.close()


def test_a_redis_blip_during_post_dags_wait_keeps_the_dag_runs_id(tmp_path, nodes, redis):
    """A client waits in `POST /v1/dags?wait=true&timeout=2`; the gateway
    loses Redis for 4 s from just after the DAG run was recorded, so the
    wait's timeout comes while Redis is away. The answer is 202 with the
    DAG run's id and its Location (this gateway's own copy of it, as the
    wait of `POST /v1/runs?wait=true` answers from the gateway's memory),
    and the DAG run goes on to succeed. Before, the answer was 503 with
    Retry-After: "nothing was done, ask again", while the DAG run went on
    under an id the client never heard."""
    blip = Blip(redis, tmp_path / "blip.sock", b"never-sent", seconds=4.0)
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        nodes("w1", "worker", slots=1)
        pipeline = "tasks:\n  s: {file: t.py, function: slow, args: [1]}\n"
        answer = {}

        def post():
            answer["r"] = g1.request("POST", "/v1/dags?wait=true&timeout=2",
                                     {"pipeline": pipeline, "files": {"t.py": STEP}, "no_cache": True})

        t = threading.Thread(target=post)
        t.start()
        wait_until(lambda: redis.cli("SMEMBERS", "ps:dags:running").strip(), 30, "the DAG run to be recorded")
        blip._cut()
        t.join(60)
        st, hdrs, body = answer["r"]
        assert st == 202, (st, body)
        b = json.loads(body)
        dag_id = b["id"]
        assert hdrs.get("location") == f"/v1/dags/{dag_id}", hdrs
        assert b["status"] in ("running", "validating"), b
        wait_until(lambda: not blip.down.is_set(), 30, "the blip to end")
        b = dag_end(g1, dag_id)
        assert b["status"] == "succeeded" and [t["result"] for t in b["tasks"]] == ["slept"], b
        assert resumed(tmp_path, "g1") == []
    finally:
        blip.close()


def test_the_cli_and_the_python_client_follow_a_dag_run_through_a_redis_blip(tmp_path, nodes, redis):
    """`pysprinter --server GW dag run` and Client.run_dag() each start a
    DAG run on g1, which then loses Redis for 4 s while their tasks run:
    both wait through the blip (503s on their reads, 202s on their waits)
    and print or return the succeeded DAG run with its result."""
    sys.path.insert(0, str(ROOT / "python"))
    from pysprinter.client import Client
    blip = Blip(redis, tmp_path / "blip.sock", b"never-sent", seconds=4.0)
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        nodes("w1", "worker", slots=2)
        (tmp_path / "t.py").write_text(STEP)
        (tmp_path / "p.yaml").write_text("tasks:\n  s: {file: t.py, function: slow, args: [2]}\n")
        run = run_cli(tmp_path, [g1], "dag", "run", "p.yaml", "--json")
        answer = {}

        def client():
            try:
                c = Client(g1.url, token=TOKENS["alice"], timeout=60)
                answer["dag"] = c.run_dag(str(tmp_path / "p.yaml"))
            except Exception as e:  # noqa: BLE001 (shown by the assert below)
                answer["error"] = e

        t = threading.Thread(target=client)
        t.start()
        try:
            wait_until(lambda: redis.cli("SCARD", "ps:dags:running").strip() == "2" or run.poll() is not None, 60,
                       "both DAG runs recorded")
            blip._cut()
            code, out, err = finish(run)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        t.join(60)
        assert code == 0, (code, out, err)
        b = json.loads(out)
        assert b["status"] == "succeeded" and b["tasks"]["s"]["result"] == "slept", b
        assert "dag" in answer, answer
        assert answer["dag"]["status"] == "succeeded", answer
        assert [t["result"] for t in answer["dag"]["tasks"]] == ["slept"], answer
        assert resumed(tmp_path, "g1") == []
    finally:
        blip.close()


def test_pysprinterd_help_names_redis_for_token():
    """`pysprinterd --help` names `--redis` for `token`, as the token
    subcommand's own help and the man page do."""
    out = subprocess.run([str(DAEMON), "--help"], capture_output=True, text=True, timeout=30).stdout
    lines = out.splitlines()
    at = [i for i, line in enumerate(lines) if line.lstrip().startswith("pysprinterd token")]
    assert at, out
    usage = "\n".join(lines[at[0]:at[0] + 3])
    assert "--redis" in usage, usage
