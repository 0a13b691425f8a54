"""Cluster mode: what a run produced besides its value is in its Redis
record (docs/cluster.md "The run record"): the datasets it wrote
(`"outputs": {"NAME": VERSION}`, docs/data.md "Outputs") and the lock of
the packages it ran with (`GET /v1/runs/ID/lock`). A run that ran on a
worker shows them through every gateway as the same run shows them on a
single node. A real redis-server, a local package index, real daemons."""
import io
import tarfile

import pytest

from daemonlib import Daemon, sandbox_mode
from test_cluster import node_of, pytestmark, redis  # noqa: F401 (fixtures)
from test_cluster_shared import cnodes  # noqa: F401 (the fixture)

SRC = """
@requirements({'outpkg': '==1.0'})
def make(n: int = 3):
    import os, outpkg
    from pysprinter import output_dir
    for i in range(n):
        with open(os.path.join(output_dir(), f"part-{i}.txt"), "w") as f:
            f.write(f"{outpkg.VALUE} {i}\\n")
    return n
"""

PLAIN = """
def f():
    return 1
"""


@pytest.fixture
def index(tmp_path):
    import pkgindex
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    whl = pkgindex.build_wheel(wheels, "outpkg", "1.0", files={"outpkg/__init__.py": "VALUE = 'v'\n"})
    ix = pkgindex.Index()
    ix.add(whl)
    ix.start()
    yield ix
    ix.stop()


def shown(node, rid):
    """The run object and the lock answer of rid as node serves them."""
    st, run = node.call("GET", f"/v1/runs/{rid}")
    assert st == 200, run
    st, lock = node.call("GET", f"/v1/runs/{rid}/lock")
    assert st == 200, lock
    return run, lock


def test_a_workers_run_shows_its_outputs_and_lock_on_every_gateway(cnodes, redis, index, tmp_path):
    extra = f"index:\n  url: {index.url}\n"
    # The reference: the same runs on a single-node daemon.
    single = Daemon(tmp_path / "single", sandbox=sandbox_mode(tmp_path), config_extra=extra)
    single.start()
    try:
        st, b = single.run(SRC, output_data="parts")
        assert st == 200 and b["status"] == "succeeded" and b["result"] == 3, b
        want_run, want_lock = shown(single, b["id"])
        st, p = single.run(PLAIN)
        assert st == 200 and p["status"] == "succeeded", p
        _, want_plain_lock = shown(single, p["id"])
    finally:
        single.stop()
    assert want_run["outputs"] == {"parts": 1}, want_run
    assert [(q["name"], q["version"]) for q in want_lock["lock"]["packages"]] == [("outpkg", "1.0")], want_lock
    assert want_plain_lock["lock"] is None and "outputs" not in want_plain_lock

    g1 = cnodes("g1", "gateway", extra=extra)
    w1 = cnodes("w1", "worker", extra=extra)
    g2 = cnodes("g2", "gateway", extra=extra)
    st, b = g1.run(SRC, output_data="parts")
    assert st == 200 and b["status"] == "succeeded" and b["result"] == 3, b
    rid = b["id"]
    assert node_of(redis, rid) == "w1"
    # The waiting gateway's answer, then any node's reads.
    assert b.get("outputs") == want_run["outputs"], b
    for node in (g1, g2, w1):
        run, lock = shown(node, rid)
        assert run.get("outputs") == want_run["outputs"], (node.root, run)
        assert lock == dict(want_lock, run=rid), (node.root, lock)
    st, listing = g2.call("GET", "/v1/runs")
    assert st == 200 and next(r for r in listing["runs"] if r["id"] == rid).get("outputs") == {"parts": 1}
    # The dataset it names is the one the run wrote, its content on the
    # worker: another node fetches it from there (obj:<hash>).
    st, ds = g2.call("GET", "/v1/data/parts")
    assert st == 200 and ds["version"] == 1 and ds["files"] == 3, ds
    st, _, body = g2.request("GET", "/v1/data/parts/content?format=tar")
    assert st == 200, body
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        got = {m.name.lstrip("./"): tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    assert got == {f"part-{i}.txt": f"v {i}\n".encode() for i in range(3)}, got

    # A run without outputs or requirements shows neither, as on one node.
    st, p = g2.run(PLAIN)
    assert st == 200 and p["status"] == "succeeded", p
    run, lock = shown(g1, p["id"])
    assert "outputs" not in run and lock == dict(want_plain_lock, run=p["id"]), (run, lock)

    # The lock text is kept once per distinct text, not in each record: a
    # second run with the same lock adds no lock key.
    keys = sorted(redis.cli("KEYS", "ps:runlock:*").split())
    assert len(keys) == 1, keys
    st, b2 = g1.run(SRC, output_data="parts")
    assert st == 200 and b2["status"] == "succeeded" and b2["outputs"] == {"parts": 1}, b2
    assert sorted(redis.cli("KEYS", "ps:runlock:*").split()) == keys
    assert shown(g2, b2["id"])[1] == dict(want_lock, run=b2["id"])


DAG_FILES = {"t.py": """
import os
from pysprinter import data_path, output_dir

def make():
    for i in range(2):
        with open(os.path.join(output_dir(), f"p{i}.txt"), "w") as f:
            f.write(str(i))
    return "made"

def use(name: str):
    root = data_path(name)
    return sorted(open(os.path.join(root, f)).read() for f in os.listdir(root))
"""}
DAG_PIPELINE = """
tasks:
  make: {file: t.py, function: make, outputs: handoff}
  use:  {file: t.py, function: use, args: ["handoff"], data: [handoff]}
"""


def test_a_dag_task_hands_its_output_to_the_next_through_a_gateway(cnodes, redis):
    """A DAG task's `outputs:` version is read from its run's end in Redis
    (the gateway's waiter): the next task mounts that version."""
    g1 = cnodes("g1", "gateway")
    cnodes("w1", "worker")
    st, b = g1.call("POST", "/v1/dags?wait=true", {"pipeline": DAG_PIPELINE, "files": DAG_FILES,
                                                   "no_cache": True})
    assert st == 200 and b["status"] == "succeeded", b
    tasks = {t["name"]: t for t in b["tasks"]}
    assert tasks["use"]["result"] == ["0", "1"], tasks
    st, run = g1.call("GET", f"/v1/runs/{tasks['make']['run_id']}")
    assert st == 200 and run["outputs"] == {"handoff": 1}, run
