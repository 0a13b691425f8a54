"""Deleting one version of a deployed function, the gaps after
test_explore_fnversion.py: in a cluster the other nodes' warm instances
of the deleted version (and of a deleted function) retire; a schedule is
never left pinned to a deleted version; the dashboard deletes a version."""
import time

import pytest

from clusterlib import REDIS, wait_until
from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode
from test_cluster import nodes, redis  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SRC = """
def handler(event, context):
    return {"v": %d}
"""


def kept_instances(node, prefix):
    st, w = node.call("GET", "/v1/workers")
    assert st == 200, w
    return [i.get("function") or "" for i in w["workers"]
            if i.get("kind") == "instance" and (i.get("function") or "").startswith(prefix)]


def deploy(node, name, v):
    st, b = node.call("POST", "/v1/functions", {"name": name, "source": SRC % v})
    assert st == 201 and b["version"] == v, b


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_in_a_cluster_a_deleted_version_retires_on_every_node(nodes, redis):
    """Node B (role all, the only worker) holds warm instances of versions 1
    and 2; version 1 is deleted through gateway A. Before, only A retired
    its own instances (it has none): B kept version 1's warm until its TTL.
    Now fn_delete_version.lua tells every node, as fn_delete.lua does for a
    whole function: B's version-1 instance stops, version 2's stays, and
    B answers 404 for version 1."""
    a = nodes("ga", "gateway")
    b = nodes("nb", "all")
    for v in (1, 2):
        deploy(a, "twov", v)
    for v in (1, 2):
        st, r = b.call("POST", "/v1/functions/twov/invoke?wait=true", {"args": [{}, None], "version": v})
        assert st == 200 and r["result"] == {"v": v}, r
    assert kept_instances(b, "twov@1~") and kept_instances(b, "twov@2~")
    st, r = a.call("DELETE", "/v1/functions/twov?version=1")
    assert st == 200 and r["deleted"], r
    wait_until(lambda: not kept_instances(b, "twov@1~"), 60, "B's warm instance of version 1 to retire")
    assert kept_instances(b, "twov@2~")
    st, r = b.call("POST", "/v1/functions/twov/invoke?wait=true", {"args": [{}, None], "version": 1})
    assert st == 404, r
    st, r = b.call("GET", "/v1/functions/twov")
    assert st == 200 and r["versions"] == [2], r
    # The whole function, the same way.
    st, r = a.call("DELETE", "/v1/functions/twov")
    assert st == 200, r
    wait_until(lambda: not kept_instances(b, "twov@"), 60, "B's warm instances of the function to retire")
