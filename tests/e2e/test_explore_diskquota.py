"""Storage per tenant (helper-237's exploration): `data.max_bytes` capped one
dataset version and `max_log_bytes` a tenant's logs, but nothing in the
operator's config capped what a tenant keeps in the daemon: alice could fill
the data directory that every tenant shares with dataset versions and
function versions, and deny bob service. `disk.max_stored_bytes` and
`tenants.NAME.max_stored_bytes` cap it now (docs/operations.md "Storage per
tenant"). Each test failed on the daemon before its fix (the config keys
were refused: unknown key)."""
import os
import textwrap
import threading

import pytest

from conftest import DAEMON
from daemonlib import Daemon, check_config, point_cli

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

OCTET = {"Content-Type": "application/octet-stream"}
# alice may keep 6000 bytes, every other tenant 100000.
CAPS = """
    disk:
      max_stored_bytes: 100000
    tenants:
      alice:
        max_stored_bytes: 6000
    """


def put(d, name, data, token="alice", filename="f.bin"):
    """The same bytes under the same file name are the same content."""
    return d.call("PUT", f"/v1/data/{name}?filename={filename}", raw=data, headers=OCTET, token=token)


def storage(d, token="alice"):
    st, body = d.call("GET", "/v1/data", token=token)
    assert st == 200, body
    return body["storage"]


def staged(d):
    """What uploads left in the catalog's staging area."""
    tmp = d.home / "data" / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def fn_source(pad):
    return "def f():\n    return 1\n# " + "x" * pad + "\n"


def test_alice_fills_her_quota_bob_still_uploads_and_a_delete_frees_it(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        st, b = put(d, "one", b"a" * 4000)
        assert st == 201, b
        objects = sorted(os.listdir(d.home / "data" / "objects"))
        # 4000 + 3000 > 6000: refused whole, with who, how much and the cap.
        st, b = put(d, "two", b"b" * 3000)
        assert st == 413, b
        msg = b["error"]["message"]
        assert "tenant 'alice'" in msg and "storage cap of 6000 bytes" in msg, msg
        assert "tenants.NAME.max_stored_bytes" in msg and "pysprinter data rm" in msg, msg
        assert "would keep 7000 bytes" in msg and "(datasets 4000, function code 0, this write 3000)" in msg, msg
        # Nothing half-written: no dataset, no version, no object, no staging.
        assert d.call("GET", "/v1/data/two")[0] == 404
        assert [x["name"] for x in d.call("GET", "/v1/data")[1]["datasets"]] == ["one"]
        assert sorted(os.listdir(d.home / "data" / "objects")) == objects
        assert staged(d) == []
        # A new version of a dataset alice holds counts too.
        assert put(d, "one", b"c" * 3000)[0] == 413
        # Content she holds already costs nothing again.
        assert put(d, "copy", b"a" * 4000)[0] == 201
        s = storage(d)
        assert s["data_bytes"] == 4000 and s["used_bytes"] == 4000 and s["max_bytes"] == 6000, s
        # bob's room is his own.
        assert put(d, "two", b"b" * 3000, token="bob")[0] == 201
        assert put(d, "three", b"c" * 4000, token="bob")[0] == 201
        s = storage(d, token="bob")
        assert s["data_bytes"] == 7000 and s["max_bytes"] == 100000, s
        # Deleting frees the room: alice's two names share one content.
        assert d.call("DELETE", "/v1/data/one")[0] == 200
        assert put(d, "two", b"b" * 3000)[0] == 413
        assert d.call("DELETE", "/v1/data/copy")[0] == 200
        assert storage(d)["used_bytes"] == 0
        st, b = put(d, "two", b"b" * 3000)
        assert st == 201, b
        assert put(d, "four", b"d" * 2500)[0] == 201
        assert storage(d)["used_bytes"] == 5500


def test_the_count_survives_a_restart(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        assert put(d, "one", b"a" * 4000)[0] == 201
    with d.serving():
        assert storage(d)["used_bytes"] == 4000
        st, b = put(d, "two", b"b" * 3000)
        assert st == 413, b
        assert put(d, "two", b"b" * 2000)[0] == 201
    # A kill -9 after a write: the count is read from the store again.
    d.start()
    assert d.call("DELETE", "/v1/data/one")[0] == 200
    d.kill9()
    with d.serving():
        assert storage(d)["used_bytes"] == 2000
        assert put(d, "one", b"a" * 4000)[0] == 201
        assert storage(d)["used_bytes"] == 6000
        assert put(d, "three", b"c")[0] == 413


def test_function_versions_count_and_their_delete_frees_them(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": fn_source(2500)})
        assert st == 201, b
        code = len(fn_source(2500).encode())
        s = storage(d)
        assert s["code_bytes"] == code and s["used_bytes"] == code, s
        # A second version of it counts again (each version keeps its code).
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": fn_source(2600)})
        assert st == 201, b
        total = code + len(fn_source(2600).encode())
        assert storage(d)["code_bytes"] == total
        # A third is past the cap: refused, and no version 3.
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": fn_source(2700)})
        assert st == 413 and "storage cap" in b["error"]["message"], b
        assert d.call("GET", "/v1/functions/big?version=3")[0] == 404
        st, b = d.call("GET", "/v1/functions/big")
        assert st == 200 and b["version"] == 2, b
        # Code and data share the cap.
        st, b = put(d, "one", b"a" * (6000 - total + 1))
        assert st == 413, b
        assert put(d, "one", b"a" * (6000 - total))[0] == 201
        # Deleting the function frees its code.
        assert d.call("DELETE", "/v1/functions/big")[0] in (200, 204)
        s = storage(d)
        assert s["code_bytes"] == 0 and s["used_bytes"] == 6000 - total, s
        # bob deploys as he likes.
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": fn_source(2700)}, token="bob")
        assert st == 201, b


def test_two_concurrent_uploads_do_not_both_pass_on_room_for_one(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        for round_ in range(30):
            results = []

            def go(i):
                results.append(put(d, f"r{round_}-{i}", bytes([65 + (i + 2 * round_) % 60]) * 4000))
            threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            codes = sorted(st for st, _ in results)
            assert codes == [201, 413], results
            assert storage(d)["used_bytes"] == 4000
            for x in d.call("GET", "/v1/data")[1]["datasets"]:
                assert d.call("DELETE", f"/v1/data/{x['name']}")[0] == 200
        assert staged(d) == []


def test_the_cli_says_why_and_exits_non_zero(tmp_path, cli):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        point_cli(cli, d, tmp_path)
        f = tmp_path / "big.bin"
        f.write_bytes(b"z" * 7000)
        p = cli("data", "put", "big", str(f))
        assert p.returncode != 0, (p.stdout, p.stderr)
        assert "storage cap of 6000 bytes" in p.stderr and "pysprinter data rm" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_a_reload_changes_the_cap(tmp_path):
    from daemonlib import reload_config
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        assert put(d, "one", b"a" * 5000)[0] == 201
        assert put(d, "two", b"b" * 2000)[0] == 413
        text = d.config.read_text().replace("max_stored_bytes: 6000", "max_stored_bytes: 8K")
        reload_config(d, text)
        assert storage(d)["max_bytes"] == 8192
        assert put(d, "two", b"b" * 2000)[0] == 201


def test_the_config_refuses_a_cap_it_cannot_read(tmp_path):
    for bad in ("disk:\n  max_stored_bytes: 0\n", "disk:\n  max_stored_bytes: lots\n",
                "tenants:\n  alice:\n    max_stored_bytes: -1\n"):
        code, out = check_config(tmp_path, bad)
        assert code == 2 and "max_stored_bytes" in out, (bad, code, out)
    code, out = check_config(tmp_path, "disk:\n  max_stored_bytes: 1G\n  reserve_bytes: 1M\n"
                                       "tenants:\n  bob:\n    max_stored_bytes: 512M\n")
    assert code == 0, out


def test_healthz_keeps_the_free_disk_to_who_sees_activity(tmp_path):
    """/healthz told anyone, without a token, the data directory's free
    bytes: how much every tenant's uploads filled, and when. With
    `metrics_public: false` it is an admin token's, like the run counts."""
    d = Daemon(tmp_path / "d", config_extra="server:\n  metrics_public: false\n")
    with d.serving():
        for token in (None, "alice"):
            st, h = d.call("GET", "/healthz", token=token)
            assert st == 200 and h["status"] == "ok" and "disk" not in h, (token, h)
        st, h = d.call("GET", "/healthz", token="admin")
        assert st == 200 and h["disk"]["free_bytes"] > 0, h
    d = Daemon(tmp_path / "d2")
    with d.serving():
        st, h = d.call("GET", "/healthz", token=None)
        assert st == 200 and "free_bytes" in h["disk"], h


def test_a_stack_counts_the_code_it_deploys(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=CAPS)
    with d.serving():
        body = {"functions": [{"name": f"s{i}", "source": fn_source(2500)} for i in range(3)]}
        st, b = d.call("POST", "/v1/stacks", body)
        assert st == 413 and "storage cap" in b["error"]["message"], b
        # All or nothing: none of the three was written.
        assert d.call("GET", "/v1/functions/s0")[0] == 404
        assert storage(d)["used_bytes"] == 0
        body["functions"] = body["functions"][:2]
        st, b = d.call("POST", "/v1/stacks", body)
        assert st == 200, b
        assert storage(d)["code_bytes"] == 2 * len(fn_source(2500))
        # The same stack again writes nothing new: it fits.
        st, b = d.call("POST", "/v1/stacks", body)
        assert st == 200 and {c["action"] for c in b["changes"]} == {"unchanged"}, b


def test_in_a_cluster_the_datasets_count_through_every_gateway(tmp_path):
    """Redis's catalogue holds a tenant's versions whichever node stored
    them: a version put through one gateway counts on the other. (Function
    code is not counted in cluster mode, and the lock is a node's:
    docs/operations.md "Storage per tenant".)"""
    import shutil
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server")
    from clusterlib import Redis
    redis = Redis(tmp_path / "redis")
    redis.start()
    nodes = []
    try:
        for name in ("g1", "g2"):
            d = Daemon(tmp_path / name, config_extra=textwrap.dedent(CAPS) + "cluster:\n  secret: a-cluster-secret-0123456789\n",
                       args=["--redis", redis.url, "--role", "gateway", "--node-id", name])
            d.start()
            nodes.append(d)
        g1, g2 = nodes
        assert put(g1, "one", b"a" * 4000)[0] == 201
        st, b = put(g2, "two", b"b" * 3000)
        assert st == 413 and "storage cap of 6000 bytes" in b["error"]["message"], b
        assert storage(g2)["data_bytes"] == 4000
        assert put(g2, "two", b"b" * 3000, token="bob")[0] == 201
        assert g1.call("DELETE", "/v1/data/one")[0] == 200
        assert put(g2, "two", b"b" * 3000)[0] == 201
    finally:
        for d in nodes:
            d.stop(timeout=30)
        redis.stop()
