"""Cluster mode, secrets (docs/cluster.md "Secrets", docs/secrets.md): a
secret set through one gateway is the tenant's on every node. Before, each
node kept its own in its SQLite: a run through another gateway was refused
404 "no secret named", and one claimed by a worker without a copy failed
with SecretError. The value reaches Redis sealed only, with the key every
node shares (its secrets.key); a node holding another key answers 409.
A real redis-server with AOF on (test_cluster's fixtures), nodes on
loopback."""
import hashlib
import os
import secrets as pysecrets
import subprocess

from daemonlib import Daemon, sandbox_mode
from test_cluster import nodes, node_of, pytestmark, redis, submit, wait_until  # noqa: F401 (fixtures)

DIGEST = """
import hashlib, os
def f():
    return hashlib.sha256(os.environ["CS_TOKEN"].encode()).hexdigest()
"""


def share_key(tmp_path, src, *names):
    """The operator's step (docs/cluster.md "Secrets"): every node gets the
    first node's secrets.key before its start."""
    key = (tmp_path / src / "home" / "secrets.key").read_bytes()
    assert len(key) == 32
    for n in names:
        home = tmp_path / n / "home"
        home.mkdir(parents=True, exist_ok=True)
        p = home / "secrets.key"
        p.write_bytes(key)
        os.chmod(p, 0o600)


def redis_bytes(redis):
    """Everything Redis holds and every write it was sent: each key's DUMP
    (redis-cli --scan) and the AOF's raw bytes."""
    out = []
    keys = redis.cli("--scan").split()
    assert keys
    for k in keys:
        out.append(subprocess.run(["redis-cli", "-s", redis.sock, "--raw", "DUMP", k], capture_output=True).stdout)
    d = redis.dir / "appendonlydir"
    for p in d.iterdir():
        out.append(p.read_bytes())
    return keys, b"\n".join(out)


def test_a_secret_set_through_one_gateway_is_the_tenants_on_every_node(tmp_path, nodes, redis):
    g1 = nodes("g1", "gateway")
    share_key(tmp_path, "g1", "g2", "w1")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker", slots=1)
    value = "plain-" + pysecrets.token_hex(20)
    want = hashlib.sha256(value.encode()).hexdigest()

    st, b = g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": value})
    assert st == 200 and b["name"] == "CS_TOKEN", b
    for gw in (g1, g2):
        st, b = gw.call("GET", "/v1/secrets")
        assert st == 200 and [s["name"] for s in b["secrets"]] == ["CS_TOKEN"], (gw, b)
    # Another tenant sees none of it.
    st, b = g2.call("GET", "/v1/secrets", token="bob")
    assert st == 200 and b["secrets"] == [], b

    # A run through the other gateway, on the worker: the same value.
    st, b = g2.run(DIGEST, secrets=["CS_TOKEN"])
    assert st == 200 and b["status"] == "succeeded" and b["result"] == want, b
    assert node_of(redis, b["id"]) == "w1"
    # A deploy through g2 that names it is allowed (checked in Redis).
    st, b = g2.call("POST", "/v1/functions", {"name": "digest", "source": DIGEST, "secrets": ["CS_TOKEN"]})
    assert st == 201, b
    st, b = g1.call("POST", "/v1/functions/digest/invoke?wait=true", {})
    assert st == 200 and b["result"] == want, b

    # A DAG through g2 whose task names it: checked in Redis, run on w1.
    pipeline = "tasks:\n  d: {file: t.py, function: f, secrets: [CS_TOKEN]}\n"
    st, b = g2.call("POST", "/v1/dags?wait=true", {"pipeline": pipeline, "files": {"t.py": DIGEST},
                                                   "no_cache": True})
    assert st == 200 and b["status"] == "succeeded", b
    assert [t["result"] for t in b["tasks"]] == [want], b

    # Never the plaintext in Redis: not in any key, not in any write.
    keys, data = redis_bytes(redis)
    assert "ps:sec:alice" in keys, keys
    assert value.encode() not in data
    assert value[6:].encode() not in data

    # Removed through g2 while a run naming it waits for the worker's one
    # slot: that run fails with SecretError when it starts (no node keeps a
    # copy), and the next submit is refused at once on every gateway.
    blocker = submit(g1, 600, "blocker")
    g1.wait_status(blocker, {"running"})
    st, b = g1.run(DIGEST, wait=False, secrets=["CS_TOKEN"])
    assert st == 202, b
    queued = b["id"]
    st, b = g2.call("DELETE", "/v1/secrets/CS_TOKEN")
    assert st == 200 and b["deleted"] is True and "digest" in b.get("warnings", ""), b
    g1.cancel(blocker)
    b = g1.wait_status(queued, {"failed", "error", "succeeded", "invalid"}, timeout=120)
    assert b["status"] != "succeeded", b
    assert b["error"]["type"] == "SecretError" and "CS_TOKEN" in b["error"]["message"], b
    for gw in (g1, g2):
        st, b = gw.call("GET", "/v1/secrets")
        assert st == 200 and b["secrets"] == [], b
        st, b = gw.run(DIGEST, secrets=["CS_TOKEN"])
        assert st == 404 and "no secret named 'CS_TOKEN'" in b["error"]["message"], b
        st, b = gw.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": DIGEST}})
        assert st == 404 and "task 'd': no secret named 'CS_TOKEN'" in b["error"]["message"], b
    assert redis.cli("EXISTS", "ps:sec:alice") == "0"


def test_a_node_with_another_key_answers_409_and_overwrites_nothing(tmp_path, nodes, redis):
    g1 = nodes("g1", "gateway")
    share_key(tmp_path, "g1", "w1")
    nodes("w1", "worker")
    value = "plain-" + pysecrets.token_hex(20)
    st, b = g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": value})
    assert st == 200, b
    # g3 was given no key: it made its own at its start, and says so.
    g3 = nodes("g3", "gateway")
    log = (tmp_path / "g3" / "daemon.log").read_text()
    assert "sealed with another key" in log and "secrets.key" in log, log
    st, b = g3.call("GET", "/v1/secrets")
    assert st == 200 and [s["name"] for s in b["secrets"]] == ["CS_TOKEN"], b
    st, b = g3.run(DIGEST, secrets=["CS_TOKEN"])
    assert st == 409 and b["error"]["code"] == "conflict" and "CS_TOKEN" in b["error"]["message"], b
    assert "another key" in b["error"]["message"], b
    # Its set would seal with a key no other node holds: refused, and the
    # cluster's value stays.
    st, b = g3.call("PUT", "/v1/secrets/CS_TOKEN", {"value": "other"})
    assert st == 409 and b["error"]["code"] == "conflict" and "secrets.key" in b["error"]["message"], b
    st, b = g3.call("PUT", "/v1/secrets/CS_NEW", {"value": "other"})
    assert st == 409, b
    st, b = g1.run(DIGEST, secrets=["CS_TOKEN"])
    assert st == 200 and b["result"] == hashlib.sha256(value.encode()).hexdigest(), b


def test_secrets_key_file_names_the_key_every_node_reads(tmp_path, nodes, redis):
    """secrets.key_file: the operator's one key file (a mounted secret, a
    config-managed file) rather than a copy in each data directory. It is
    never created: a node whose file is missing refuses to start."""
    g1 = nodes("g1", "gateway")
    share_key(tmp_path, "g1", "w1")
    nodes("w1", "worker")
    value = "plain-" + pysecrets.token_hex(20)
    assert g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": value})[0] == 200
    shared = tmp_path / "keys" / "cluster.key"
    shared.parent.mkdir()
    shared.write_bytes((tmp_path / "g1" / "home" / "secrets.key").read_bytes())
    os.chmod(shared, 0o600)
    args = ["--redis", redis.url, "--role", "gateway", "--drain-timeout", "10"]
    g4 = Daemon(tmp_path / "g4", sandbox=sandbox_mode(tmp_path), args=[*args, "--node-id", "g4"],
                config_extra=f"secrets:\n  key_file: {shared}\n")
    with g4.serving():
        assert not (g4.home / "secrets.key").exists()
        st, b = g4.call("PUT", "/v1/secrets/CS_OTHER", {"value": "x"})
        assert st == 200, b
        st, b = g4.run(DIGEST, secrets=["CS_TOKEN"])
        assert st == 200 and b["result"] == hashlib.sha256(value.encode()).hexdigest(), b
    missing = tmp_path / "keys" / "missing.key"
    g5 = Daemon(tmp_path / "g5", sandbox=sandbox_mode(tmp_path), args=[*args, "--node-id", "g5"],
                config_extra=f"secrets:\n  key_file: {missing}\n")
    r = subprocess.run([str(g5.daemon_bin), "--listen", "127.0.0.1:0", "--config", str(g5.config), *g5.args],
                       env=g5.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert f"secrets.key_file {missing}: No such file or directory (it is never created" in r.stderr, r.stderr
    assert not missing.exists()


def test_an_api_token_made_through_one_gateway_is_every_gateways(tmp_path, nodes, redis):
    """POST /v1/tokens (docs/secrets.md "Tokens") wrote the accepting
    gateway's SQLite: the token was 401 on every other gateway, and a
    revoke through another gateway was 404. In a cluster they are Redis's,
    by their sha256 only."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    st, b = g1.call("POST", "/v1/tokens", {"tenant": "carol"}, token="admin")
    assert st == 201, b
    token, tid = b["token"], b["id"]
    for gw in (g1, g2):
        st, r = gw.call("GET", "/v1/runs", token=token)
        assert st == 200, (gw, r)
        st, lst = gw.call("GET", "/v1/tokens", token="admin")
        assert st == 200 and [t["id"] for t in lst["tokens"]] == [tid], lst
        assert lst["tokens"][0]["tenant"] == "carol", lst
    _, data = redis_bytes(redis)
    assert token.encode() not in data and token[4:].encode() not in data
    assert redis.cli("HGET", f"ps:tok:{hashlib.sha256(token.encode()).hexdigest()}", "tenant") == "carol"
    # A token `pysprinterd token create` made on g1's machine is g1's.
    r = subprocess.run([str(g1.daemon_bin), "token", "create", "--tenant", "dave", "--config", str(g1.config)],
                       env=g1.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    local = r.stdout.split()[0]
    assert g1.call("GET", "/v1/runs", token=local)[0] == 200
    assert g2.call("GET", "/v1/runs", token=local)[0] == 401
    # Revoked through g2 (by a prefix): gone on g1 at its next request.
    st, b = g2.call("DELETE", f"/v1/tokens/{tid[:6]}", token="admin")
    assert st == 200 and b == {"id": tid, "revoked": True}, b
    for gw in (g1, g2):
        assert gw.call("GET", "/v1/runs", token=token)[0] == 401
    st, b = g1.call("DELETE", f"/v1/tokens/{tid}", token="admin")
    assert st == 404, b
    st, lst = g2.call("GET", "/v1/tokens", token="admin")
    assert st == 200 and lst["tokens"] == [], lst
    # Redis away: such a token is not "invalid" (401, which a client takes
    # as final) but not known now: 503 + Retry-After, as every request that
    # needs Redis.
    st, b = g1.call("POST", "/v1/tokens", {"tenant": "carol"}, token="admin")
    assert st == 201, b
    token = b["token"]
    redis.kill9()
    try:
        st, h, body = g2.request("GET", "/v1/runs", token=token)
        assert st == 503 and h.get("retry-after") == "5", (st, h, body)
        assert b"redis_unreachable" in body, body
    finally:
        redis.start()
    wait_until(lambda: g2.call("GET", "/v1/runs", token=token)[0] == 200, 30, "the token to work again")


def test_a_node_cut_from_redis_says_so_for_a_run_that_names_a_secret(tmp_path, nodes, redis):
    """The secrets check at submit, deploy and POST /v1/dags reads Redis: a
    node that cannot reach it must not answer 404 "no secret" (or "cannot
    be opened: Connection refused") for a secret that is there, but 503 +
    Retry-After, as to every request that needs Redis."""
    g1 = nodes("g1", "gateway")
    assert g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": "v"})[0] == 200
    redis.kill9()
    try:
        st, h, body = g1.request("POST", "/v1/runs", {"source": DIGEST, "secrets": ["CS_TOKEN"]})
        assert st == 503 and h.get("retry-after") == "5" and b"redis_unreachable" in body, (st, h, body)
        st, h, body = g1.request("POST", "/v1/functions", {"name": "d", "source": DIGEST, "secrets": ["CS_TOKEN"]})
        assert st == 503 and h.get("retry-after") == "5" and b"redis_unreachable" in body, (st, h, body)
        pipeline = "tasks:\n  d: {file: t.py, function: f, secrets: [CS_TOKEN]}\n"
        st, h, body = g1.request("POST", "/v1/dags", {"pipeline": pipeline, "files": {"t.py": DIGEST}})
        assert st == 503 and b"redis_unreachable" in body, (st, h, body)
    finally:
        redis.start()


def instances(node):
    st, out = node.call("GET", "/v1/workers")
    assert st == 200, out
    return out["pool"]["instances"]


def test_a_secret_set_or_removed_through_a_gateway_retires_the_workers_instances(tmp_path, nodes, redis):
    """A set or rm retires the tenant's warm instances that hold an
    environment (docs/secrets.md), so that no old, perhaps revoked, value
    stays in a process's memory: on the node that answered it only, where
    the instances are on the workers. Every node now hears of it."""
    g1 = nodes("g1", "gateway")
    share_key(tmp_path, "g1", "w1")
    w1 = nodes("w1", "worker")
    assert g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": "first"})[0] == 200
    st, b = g1.call("POST", "/v1/functions", {"name": "digest", "source": DIGEST, "secrets": ["CS_TOKEN"]})
    assert st == 201, b
    before = instances(w1)
    for _ in range(2):
        st, b = g1.call("POST", "/v1/functions/digest/invoke?wait=true", {})
        assert st == 200 and b["result"] == hashlib.sha256(b"first").hexdigest(), b
    assert instances(w1) == before + 1
    assert g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": "second"})[0] == 200
    wait_until(lambda: instances(w1) == before, 30, "w1's instance holding the old value to stop")
    st, b = g1.call("POST", "/v1/functions/digest/invoke?wait=true", {})
    assert st == 200 and b["result"] == hashlib.sha256(b"second").hexdigest(), b
    assert instances(w1) == before + 1
    assert g1.call("DELETE", "/v1/secrets/CS_TOKEN")[0] == 200
    wait_until(lambda: instances(w1) == before, 30, "w1's instance to stop after the rm")
