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
from daemonlib import Daemon, sandbox_mode
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
