"""Cluster mode: an HTTP request never waits on a Redis outage for a DAG
run's state write (docs/cluster.md "DAG runs"). A real redis-server
(test_cluster's fixture), nodes on loopback, the gateway cut from Redis by
a proxy (test_explore_failover4's Blip) that comes back only when the test
says so: an answer that waited for Redis would never come before it."""
import json
import threading

from clusterlib import SLEEPER, wait_until
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_failover4 import Blip

STEP = """
def f(n: int = 1):
    return n * 2
"""

PIPELINE = "tasks:\n  a: {file: t.py, function: f, args: [21]}\n"
MAX_ACTIVE = 64  # DAEMON_MAX_ACTIVE_DAGS


def answered_while_cut(gw, blip, method, path, body=None, deadline=30, before_restore=None):
    """gw's answer to the request, which must come while Redis stays cut
    (the proxy is restored only after it, and after before_restore() if
    given, or at the deadline, failing)."""
    answer = {}

    def ask():
        answer["r"] = gw.request(method, path, body, timeout=deadline + 60)

    t = threading.Thread(target=ask)
    t.start()
    t.join(deadline)
    came = not t.is_alive()
    try:
        if came and before_restore:
            before_restore()
    finally:
        blip.restore()
    t.join(120)
    assert came, ("the request waited for Redis", answer.get("r"))
    return answer["r"]


def test_a_dag_run_refused_as_too_many_answers_while_redis_is_away(tmp_path, nodes, redis):
    """g1 drives 64 DAG runs (their tasks queued: no worker; alice's and
    bob's, 32 each: a tenant's share), the most it takes; a 65th POST is recorded, then refused (429), and g1 loses Redis
    at the write of that record's end (its error, strerror(EBUSY)). The 429 comes while Redis is still
    away; the end is written once Redis is back (the DAG run leaves the
    running set). Before, the request's thread asked Redis again until it
    answered: the client hung for as long as Redis was away."""
    blip = Blip(redis, tmp_path / "blip.sock", b"Device or resource busy", seconds=None)
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url, extra=("--drain-timeout", "1"))
        body = {"pipeline": PIPELINE, "files": {"t.py": STEP}, "no_cache": True}
        for i in range(MAX_ACTIVE):
            # Half each: a tenant holds at most half the slots.
            st, b = g1.call("POST", "/v1/dags", body, token=("alice", "bob")[i % 2])
            assert st == 202, b
        blip.armed = True
        log = tmp_path / "g1" / "daemon.log"
        # Redis stays cut until g1 has said it asks again: its first try
        # at the end's write is the one Redis does not answer (restored
        # at once, that try could come after the restore and succeed).
        st, hdrs, raw = answered_while_cut(
            g1, blip, "POST", "/v1/dags", body,
            before_restore=lambda: wait_until(
                lambda: "did not answer the write of its final state" in log.read_text(), 30,
                "g1's log line about the write Redis did not answer"))
        assert blip.fired, (st, raw, "g1 never wrote the refused DAG run's end through the proxy")
        assert st == 429, (st, raw)
        assert "too many DAG runs in flight" in json.loads(raw)["error"]["message"], raw
        # Settled in the background once Redis answers: 64 still run.
        wait_until(lambda: redis.cli("SCARD", "ps:dags:running").strip() == str(MAX_ACTIVE), 60,
                   "the refused DAG run's end in Redis")
    finally:
        blip.close()


def test_post_runs_wait_timing_out_while_redis_is_away_answers_the_runs_id(tmp_path, nodes, redis):
    """A client waits in `POST /v1/runs?wait=true&timeout=2` for a run that
    takes 6 s; g1 loses Redis once the run is recorded, so the wait's
    timeout comes while Redis is away. The answer is 202 with the run's id
    (from g1's memory) and its Location, and the run goes on to succeed.
    Before, the answer was 503 "Redis unreachable" (its Location header
    the only trace of an id): a client that took the 503 at its word and
    asked again ran it twice."""
    blip = Blip(redis, tmp_path / "blip.sock", b"never-sent", seconds=None)
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        g2 = nodes("g2", "gateway")
        nodes("w1", "worker", slots=1)
        answer = {}

        def post():
            answer["r"] = g1.request("POST", "/v1/runs?wait=true&timeout=2",
                                     {"source": SLEEPER, "kwargs": {"seconds": 6, "tag": "t"}}, timeout=120)

        t = threading.Thread(target=post)
        t.start()
        wait_until(lambda: redis.cli("KEYS", "ps:run:*").strip(), 30, "the run to be recorded")
        blip._cut()
        t.join(30)
        came = not t.is_alive()
        blip.restore()
        t.join(120)
        assert came, ("the wait's answer waited for Redis", answer.get("r"))
        st, hdrs, raw = answer["r"]
        assert st == 202, (st, raw)
        b = json.loads(raw)
        rid = b["id"]
        assert hdrs.get("location") == f"/v1/runs/{rid}", hdrs
        assert b["status"] in ("queued", "running"), b
        log = (tmp_path / "g1" / "daemon.log").read_text()
        assert f"run {rid}: Redis did not answer its read" in log, log
        b = g2.wait_status(rid, ["succeeded", "failed", "cancelled", "error", "lost", "killed"], timeout=60)
        assert b["status"] == "succeeded" and b["result"] == "t", b
    finally:
        blip.close()
