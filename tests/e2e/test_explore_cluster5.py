"""Cluster mode, fifth pass (docs/cluster.md): the operator's token
command on a cluster, a DAG schedule's fire run once when two gateways fire
it, and a Redis blip on the gateway that drives a DAG run whose task names
a secret. A real redis-server with AOF on (test_cluster's fixture), nodes
on loopback."""
import calendar
import hashlib
import json
import subprocess
import time

from clusterlib import CLAIM_TIMEOUT_MS, wait_until
from conftest import DAEMON
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_clustersecrets import DIGEST, share_key
from test_explore_failover4 import Blip


def token_cmd(tmp_path, redis, *args):
    """`pysprinterd token ARGS --redis URL` on a machine of its own (a data
    directory no node uses)."""
    env = Daemon(tmp_path / "ops").env()
    return subprocess.run([str(DAEMON), "token", *args, "--redis", redis.url, "--data-dir", str(tmp_path / "ops-home")],
                          env=env, capture_output=True, text=True, timeout=60)


def test_pysprinterd_token_with_redis_manages_the_clusters_tokens(tmp_path, nodes, redis):
    """`pysprinterd token create|ls|revoke --redis URL` works on the
    cluster's tokens (Redis's), as POST/GET/DELETE /v1/tokens through any
    gateway do: a token made so authenticates on every gateway, is listed
    (also over the API), and once revoked is refused on every gateway. The
    output is the single-node command's. Before, the command had no
    --redis (usage error): the operator could not manage the cluster's
    tokens from the command line."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    p = token_cmd(tmp_path, redis, "create", "--tenant", "gina", "--role", "readonly")
    assert p.returncode == 0, p.stderr
    tok = p.stdout.strip()
    assert tok.startswith("pst_") and "shown once" in p.stderr and "for tenant gina (readonly)" in p.stderr, p
    tid = p.stderr.split()[1]
    for gw in (g1, g2):
        st, b = gw.call("GET", "/v1/runs", token=tok)
        assert st == 200, (gw, st, b)
        st, b = gw.call("GET", "/v1/tokens", token="admin")
        assert st == 200 and tid in [t["id"] for t in b["tokens"]], b
    p = token_cmd(tmp_path, redis, "ls")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "TENANT", "ROLE", "CREATED", "EXPIRES", "LAST", "USED"], lines
    assert any(l.split()[:3] == [tid, "gina", "readonly"] for l in lines[1:]), lines
    p = token_cmd(tmp_path, redis, "ls", "--json")
    assert p.returncode == 0 and [t["tenant"] for t in json.loads(p.stdout) if t["id"] == tid] == ["gina"], p
    # One made through a gateway is the command's too.
    st, b = g2.call("POST", "/v1/tokens", {"tenant": "hugo"}, token="admin")
    assert st == 201, b
    p = token_cmd(tmp_path, redis, "revoke", b["id"][:8])
    assert p.returncode == 0 and p.stdout.strip() == f"revoked {b['id'][:8]}", p
    assert g1.call("GET", "/v1/runs", token=b["token"])[0] == 401
    p = token_cmd(tmp_path, redis, "revoke", tid)
    assert p.returncode == 0, p.stderr
    for gw in (g1, g2):
        assert gw.call("GET", "/v1/runs", token=tok)[0] == 401
    assert redis.cli("HKEYS", "ps:tokids") == ""
    # The command is no node: no stream, no lease of its own.
    assert redis.cli("EXISTS", "ps:runs:pysprinterd-token") == "0"
    assert "pysprinterd-token" not in redis.cli("SMEMBERS", "ps:nodes")
    p = token_cmd(tmp_path, redis, "revoke", tid)
    assert p.returncode == 2 and f"no token with id '{tid}'" in p.stderr, p
    # A Redis that cannot be reached is said so, with the URL.
    p = subprocess.run([str(DAEMON), "token", "ls", "--redis", "unix:" + str(tmp_path / "nope.sock"), "--data-dir",
                        str(tmp_path / "ops-home")], env=Daemon(tmp_path / "ops").env(), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "cannot reach Redis at unix:" in p.stderr, p


def dag_end(gw, dag_id, timeout=60):
    """The DAG run once ended, polled (a 503 while the gateway is cut from
    Redis is for asking again)."""
    def ended():
        st, b = gw.call("GET", f"/v1/dags/{dag_id}")
        return b if st == 200 and b["status"] not in ("running", "validating") else None
    return wait_until(ended, timeout, f"DAG run {dag_id} to end")


STEP = """
def f(n: int = 1):
    return n * 2
"""
PIPELINE = "name: tick\ntasks:\n  a: {file: t.py, function: f}\n"


class ClockGateway(Daemon):
    """A gateway whose scheduler reads the time from the test's clock file
    (one file for every gateway: the same instant on each)."""

    def __init__(self, root, clock, **kw):
        super().__init__(root, **kw)
        self.clock = clock

    def env(self):
        return {**super().env(), "PYSPRINTER_TEST_CLOCK_FILE": str(self.clock)}


def set_clock(clock, s):
    tmp = clock.with_suffix(".tmp")
    tmp.write_text(str(calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M:%S"))))
    tmp.rename(clock)


def test_a_dag_schedule_on_two_gateways_runs_one_dag_run_per_fire_time(tmp_path, nodes, redis):
    """The tenant's schedule NAME for a DAG added through two gateways (a
    load balancer sent each add to another): both fire each fire time, and
    one DAG run starts for it; the other gateway's schedule names that run
    as its last. The fire's Idempotency-Key is (schedule, fire time), as a
    function schedule's. Before, each gateway started its own DAG run: two
    per fire time."""
    clock = tmp_path / "clock"
    set_clock(clock, "2026-03-01 10:00:00")
    nodes("w1", "worker")
    gws = []
    try:
        for name in ("g1", "g2"):
            g = ClockGateway(tmp_path / name, clock, sandbox=sandbox_mode(tmp_path),
                             args=["--redis", redis.url, "--role", "gateway", "--node-id", name, "--claim-timeout",
                                   f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "10"])
            g.start()
            gws.append(g)
        body = {"name": "tick", "cron": "*/5 * * * *",
                "dag": {"pipeline": PIPELINE, "filename": "pipeline.yaml", "files": {"t.py": STEP}}}
        for g in gws:
            st, b = g.call("POST", "/v1/schedules", body)
            assert st == 201, b
        for fire in ("2026-03-01 10:05:00", "2026-03-01 10:10:00"):
            set_clock(clock, fire)
            last = []
            for g in gws:
                def fired(g=g):
                    # The fire's DAG run, once in Redis (a gateway names
                    # its own id until its submit found the key's run).
                    st, s = g.call("GET", "/v1/schedules/tick")
                    rid = st == 200 and s["last_fire_at"] and s["last_fire_at"].startswith(fire.replace(" ", "T")) \
                        and s["last_run"] and s["last_run"]["id"]
                    return rid if rid and redis.cli("EXISTS", f"ps:dag:{rid}") == "1" else None
                last.append(wait_until(fired, 60, f"{g.root.name} firing at {fire}"))
            assert last[0] == last[1], last
            notes = [g.call("GET", "/v1/schedules/tick")[1]["note"] or "" for g in gws]
            assert any(f"DAG run {last[0]} of this fire time was started by another gateway" in n for n in notes), \
                notes
        st, b = gws[0].call("GET", "/v1/dags")
        assert st == 200, b
        ids = [g["id"] for g in b["dags"]]
        assert len(set(ids)) == 2, b
        assert redis.cli("ZCARD", "ps:dagidx:alice") == "2"
        for i in ids:
            end = dag_end(gws[1], i)
            assert end["status"] == "succeeded", end
    finally:
        for g in gws:
            g.stop(timeout=30)


def test_a_redis_blip_on_the_gateway_driving_a_dag_whose_task_names_a_secret(tmp_path, nodes, redis):
    """The gateway driving a DAG run reads when the task's secrets were
    last set (its memo key) and then submits the task's run; it loses
    Redis for a second at that read. That is no answer about the secret:
    the gateway asks again once Redis is back and the task runs with the
    value, once. Before, the read counted as "no secret" (a memo key of its
    own), the task's run was submitted into the outage and the task failed
    ("the engine could not run the task: Connection refused"), and so did
    the DAG run on that gateway (its end, unwritten to Redis, left the DAG
    run to be resumed: by chance a success, and a failed copy in its
    SQLite)."""
    blip = Blip(redis, tmp_path / "blip.sock", b"ps:secdates:alice")
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        share_key(tmp_path, "g1", "w1")
        nodes("w1", "worker", slots=1)
        st, b = g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": "v-blip"})
        assert st == 200, b
        blip.armed = True
        pipeline = "tasks:\n  d: {file: t.py, function: f, secrets: [CS_TOKEN]}\n"
        st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": DIGEST}})
        assert st == 202, b
        dag_id = b["id"]
        b = dag_end(g1, dag_id)
        assert blip.fired, ("the gateway never read the secret's dates through the proxy", b)
        assert b["status"] == "succeeded", b
        assert [t["result"] for t in b["tasks"]] == [hashlib.sha256(b"v-blip").hexdigest()], b
        assert [t["attempts"] for t in b["tasks"]] == [1], b
        # Driven through by g1, never ended failed there and resumed.
        log = (tmp_path / "g1" / "daemon.log").read_text()
        assert f"DAG run {dag_id}: succeeded" in log and ": failed" not in log and "resumes" not in log, log
    finally:
        blip.close()


CHAIN = """
def a():
    return "submit" + "mark"

def b(x):
    return x + "!"
"""


def test_a_redis_blip_as_the_gateway_submits_a_dag_tasks_run(tmp_path, nodes, redis):
    """The gateway driving a DAG run loses Redis for a second as it goes
    to submit task b's run (the first command that carries task a's result
    as b's arguments, which only b's submit holds: the DAG run's state
    holds it as a's value, escaped, and a blip there is asked again before
    the submit, test_explore_dagblip.py). The submit is
    asked again under the same run id once Redis answers, and b runs once.
    Before, the task failed ("the engine could not run the task:
    Connection refused"), and with it the DAG run on that gateway."""
    blip = Blip(redis, tmp_path / "blip.sock", b'submitmark"')
    try:
        g1 = nodes("g1", "gateway", redis_url=blip.url)
        nodes("w1", "worker", slots=1)
        blip.armed = True
        pipeline = "tasks:\n  a: {file: t.py, function: a}\n  b: {file: t.py, function: b, args: [\"${a}\"]}\n"
        st, b = g1.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": CHAIN}, "no_cache": True})
        assert st == 202, b
        dag_id = b["id"]
        b = dag_end(g1, dag_id)
        assert blip.fired, ("the gateway never sent task a's result through the proxy", b)
        assert b["status"] == "succeeded", b
        tasks = {t["name"]: t for t in b["tasks"]}
        assert tasks["b"]["result"] == "submitmark!" and tasks["b"]["attempts"] == 1, tasks
        log = (tmp_path / "g1" / "daemon.log").read_text()
        assert f"DAG run {dag_id}: succeeded" in log and ": failed" not in log and "resumes" not in log, log
        assert "did not answer the submit of task b's run" in log, log
    finally:
        blip.close()


CSRF = {"X-Pysprinter-CSRF": "1"}


def ui_login(gw, token):
    st, hdrs, body = gw.request("POST", "/login", {"token": token}, token=None, headers=CSRF)
    return st, hdrs, json.loads(body)


def ui_session(gw, cookie):
    st, hdrs, body = gw.request("GET", "/ui/session", token=None, headers={"Cookie": cookie})
    return st, hdrs, json.loads(body)


def test_a_dashboard_session_made_through_one_gateway_holds_on_every_gateway(nodes, redis):
    """Behind a load balancer the dashboard's next request goes to another
    gateway: the session a login made through g1 is the cluster's (in
    Redis, by the sha256 of its id, expiring with it), so g2 knows it, and
    a logout through g2 ends it on g1 too. A gateway that cannot reach
    Redis answers 503 redis_unreachable with Retry-After to a login and to
    a session's request, and the session is still there once it can.
    Before, sessions were each gateway's (in memory): g2 answered 401
    "the session has expired or was revoked: log in again"."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    st, hdrs, b = ui_login(g1, TOKENS["alice"])
    assert st == 200 and b["tenant"] == "alice", b
    cookie = hdrs["set-cookie"].split(";")[0]
    value = cookie.split("=", 1)[1]
    for gw in (g2, g1):
        st, _, b = ui_session(gw, cookie)
        assert st == 200 and b["tenant"] == "alice", (gw, b)
        st, _, body = gw.request("GET", "/v1/runs", token=None, headers={"Cookie": cookie})
        assert st == 200, body
    # Kept hashed, expiring with the session (12 h).
    key = "ps:uis:" + hashlib.sha256(bytes.fromhex(value)).hexdigest()
    assert 0 < int(redis.cli("PTTL", key)) <= 12 * 3600 * 1000
    assert not any(value in k for k in redis.cli("--scan").split())
    assert value not in redis.cli("GET", key)

    redis.kill9()
    for gw in (g1, g2):
        st, hdrs, b = ui_session(gw, cookie)
        assert (st, b["error"]["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), (gw, b)
        st, hdrs, b = ui_login(gw, TOKENS["bob"])
        assert (st, b["error"]["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), (gw, b)
    redis.start()
    wait_until(lambda: ui_session(g2, cookie)[0] == 200, 60, "the session served again")

    st, _, body = g2.request("POST", "/logout", token=None, headers={"Cookie": cookie, **CSRF})
    assert st == 200, body
    for gw in (g1, g2):
        st, _, b = ui_session(gw, cookie)
        assert st == 200 and b["tenant"] is None and "log in again" in b["reason"], (gw, b)
    assert redis.cli("EXISTS", key) == "0"

    # A token holds at most 64 sessions, counted across the gateways: its
    # own oldest goes first.
    cookies = []
    for i in range(65):
        st, hdrs, b = ui_login((g1, g2)[i % 2], TOKENS["bob"])
        assert st == 200, b
        cookies.append(hdrs["set-cookie"].split(";")[0])
    assert ui_session(g2, cookies[0])[2]["tenant"] is None
    assert ui_session(g2, cookies[1])[2]["tenant"] == "bob"
    assert redis.cli("ZCARD", "ps:uistok:" + hashlib.sha256(TOKENS["bob"].encode()).hexdigest()) == "64"
