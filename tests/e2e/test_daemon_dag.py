"""pysprinterd: DAG runs and datasets over HTTP (DESIGN §7-§8, issue 7):
/v1/dags (submit with files, per-task state, logs, cancel, tenancy, resume
after a kill -9) and /v1/data (put/get/versions/content/rm, mounts in runs,
tenancy, caps)."""
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

STEPS = """
import time

def load(n: int):
    return {"n": n, "items": list(range(n))}

def left(d, delay: float = 1.0):
    print("left running", flush=True)
    time.sleep(delay)
    return sum(d["items"])

def right(d, delay: float = 1.0):
    time.sleep(delay)
    return len(d["items"])

def join(a, b):
    return {"sum": a, "len": b}

def slow(x=1, delay: float = 2.0):
    time.sleep(delay)
    return x
"""

DIAMOND = """
name: diamond
params:
  n: 5
tasks:
  load: {file: steps.py, function: load, args: ["${params.n}"]}
  left: {file: steps.py, function: left, args: ["${load}"]}
  right: {file: steps.py, function: right, args: ["${load}"]}
  join: {file: steps.py, function: join, args: ["${left}", "${right}"]}
"""

CHAIN = """
name: chain
tasks:
  a: {file: lib/steps.py, function: slow, kwargs: {x: 1, delay: "${params.delay}"}}
  b: {file: lib/steps.py, function: slow, args: ["${a}"], kwargs: {delay: "${params.delay}"}}
  c: {file: lib/steps.py, function: slow, args: ["${b}"], kwargs: {delay: "${params.delay}"}}
params:
  delay: 1.5
"""


def make_daemon(root, **kw):
    extra = kw.pop("config_extra", "")
    return Daemon(root, sandbox=sandbox_mode(root), config_extra="""
        server:
          max_body_bytes: 1000000
        """ + extra, **kw)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagd")
    daemon = make_daemon(root)
    with daemon.serving() as running:
        yield running


def submit(d, pipeline, files, wait=False, token="alice", **fields):
    body = {"pipeline": pipeline, "files": files, **fields}
    return d.call("POST", "/v1/dags" + ("?wait=true" if wait else ""), body, token=token)


def wait_dag(d, dag_id, statuses=("succeeded", "failed", "cancelled", "invalid"), token="alice", timeout=120):
    deadline = time.time() + timeout
    b = None
    while time.time() < deadline:
        st, b = d.call("GET", f"/v1/dags/{dag_id}", token=token)
        if st == 200 and b["status"] in statuses:
            return b
        time.sleep(0.1)
    raise AssertionError(f"DAG run {dag_id} never reached {statuses}: {b}")


def tasks_by_name(b):
    return {t["name"]: t for t in b["tasks"]}


def test_diamond_over_http_runs_middle_in_parallel(d):
    st, b = submit(d, DIAMOND, {"steps.py": STEPS}, wait=True, params={"n": 6}, no_cache=True)
    assert st == 200, b
    assert b["status"] == "succeeded", b
    t = tasks_by_name(b)
    assert t["join"]["result"] == {"sum": 15, "len": 6}
    assert all(x["state"] == "succeeded" for x in t.values()), t
    # left and right (1 s each) overlap: each starts before the other ends.
    l, r = t["left"], t["right"]
    assert l["started_us"] < r["finished_us"] and r["started_us"] < l["finished_us"], (l, r)
    assert l["duration_ms"] >= 900 and t["join"]["started_us"] >= max(l["finished_us"], r["finished_us"])
    # Listed for alice; task logs.
    st, lst = d.call("GET", "/v1/dags")
    assert st == 200 and b["id"] in [x["id"] for x in lst["dags"]]
    st, hdrs, log = d.request("GET", f"/v1/dags/{b['id']}/tasks/left/logs")
    assert st == 200 and b"left running" in log, (st, log)
    st, e = d.call("GET", f"/v1/dags/{b['id']}/tasks/nope/logs")
    assert st == 404


def test_async_submit_then_memo_hit(d):
    st, b = submit(d, DIAMOND, {"steps.py": STEPS}, params={"n": 3})
    assert st == 202, b
    first = wait_dag(d, b["id"])
    assert first["status"] == "succeeded"
    st, b2 = submit(d, DIAMOND, {"steps.py": STEPS}, wait=True, params={"n": 3})
    assert st == 200 and b2["status"] == "succeeded"
    assert all(t["cached"] for t in b2["tasks"]), b2["tasks"]


@pytest.mark.parametrize("files,needle", [
    ({"../steps.py": "x"}, "relative path"),
    ({"/etc/x.py": "x"}, "relative path"),
    ({"a/../../b.py": "x"}, "relative path"),
])
def test_files_outside_the_run_dir_are_refused(d, files, needle):
    st, b = submit(d, DIAMOND, files)
    assert st == 400 and needle in b["error"]["message"], b


@pytest.mark.parametrize("pipeline", [
    "tasks:\n  a: {file: /etc/passwd}\n",
    "tasks:\n  a: {file: ../../pysprinterd.yaml}\n",
    "params: {f: &f /etc/hostname}\ntasks:\n  a: {file: *f}\n",
])
def test_task_files_outside_are_refused(d, pipeline):
    st, b = submit(d, pipeline, {})
    assert st == 400 and "relative path" in b["error"]["message"], b


def test_bad_pipelines_are_400(d):
    st, b = submit(d, "tasks:\n  a: {file: s.py, args: ['${b}']}\n  b: {file: s.py, args: ['${a}']}\n",
                   {"s.py": "def f(x):\n    return x\n"})
    assert st == 400 and "a -> b" in b["error"]["message"] or "b -> a" in b["error"]["message"], b
    st, b = d.call("POST", "/v1/dags", {"pipeline": DIAMOND, "bogus": 1})
    assert st == 400 and "bogus" in b["error"]["message"]
    st, b = d.call("POST", "/v1/dags", {"files": {}})
    assert st == 400 and "pipeline" in b["error"]["message"]


def test_validation_failure_is_recorded(d):
    st, b = submit(d, DIAMOND, {"steps.py": "def load(:\n"}, wait=True)
    assert st == 200 and b["status"] == "invalid" and b["error"], b


def test_the_list_status_filter_counts_only_dag_runs_in_that_state(d):
    """?status=invalid&limit=1 kept the invalid DAG runs among the newest
    one: empty once a later one succeeded. The store filters as it walks;
    an unknown state is a 400 naming the states."""
    st, bad = submit(d, DIAMOND, {"steps.py": "def load(:\n"}, wait=True)
    assert st == 200 and bad["status"] == "invalid", bad
    st, ok = submit(d, DIAMOND, {"steps.py": STEPS}, wait=True, params={"n": 2})
    assert st == 200 and ok["status"] == "succeeded", ok
    st, lst = d.call("GET", "/v1/dags?status=invalid&limit=1")
    assert st == 200 and [x["id"] for x in lst["dags"]] == [bad["id"]], lst
    st, lst = d.call("GET", "/v1/dags?status=succeeded&limit=1")
    assert st == 200 and [x["id"] for x in lst["dags"]] == [ok["id"]], lst
    st, lst = d.call("GET", "/v1/dags?status=validating")
    assert st == 200 and lst["dags"] == [], lst
    st, b = d.call("GET", "/v1/dags?status=done")
    assert st == 400 and "unknown status 'done'" in b["error"]["message"], b


def test_cancel(d):
    st, b = submit(d, CHAIN, {"lib/steps.py": STEPS}, params={"delay": 10}, no_cache=True)
    assert st == 202, b
    wait_dag(d, b["id"], statuses=("running",))
    deadline = time.time() + 30
    while time.time() < deadline:
        _, cur = d.call("GET", f"/v1/dags/{b['id']}")
        if tasks_by_name(cur).get("a", {}).get("state") == "running":
            break
        time.sleep(0.1)
    t0 = time.time()
    st, c = d.call("DELETE", f"/v1/dags/{b['id']}")
    assert st == 200, c
    assert c["status"] == "cancelled", c
    assert time.time() - t0 < 15
    st, c = d.call("DELETE", f"/v1/dags/{b['id']}")
    assert st == 409


def test_logs_of_tasks_cancelled_at_once_are_empty_or_not_run(d):
    """A wide DAG run cancelled right after its submit: a task whose run
    was made but never began has no output yet, and its logs answer an
    empty body (as GET /v1/runs/{id}/logs does), not a 404 a dashboard
    would show as an error; a task that never got a run answers 409."""
    tasks = "\n".join(f"  t{i:02d}: {{file: lib/steps.py, function: slow, kwargs: {{delay: 0}}}}" for i in range(60))
    st, b = submit(d, f"name: wide\ntasks:\n{tasks}\n", {"lib/steps.py": STEPS}, no_cache=True)
    assert st == 202, b
    # Cancelled once runs are being made: some began, some were queued.
    deadline = time.time() + 30
    while time.time() < deadline:
        _, cur = d.call("GET", f"/v1/dags/{b['id']}")
        if any(t.get("run_id") for t in cur["tasks"]):
            break
        time.sleep(0.005)
    d.call("DELETE", f"/v1/dags/{b['id']}")
    _, cur = d.call("GET", f"/v1/dags/{b['id']}")
    for name, t in tasks_by_name(cur).items():
        st, hdrs, log = d.request("GET", f"/v1/dags/{b['id']}/tasks/{name}/logs")
        if t.get("run_id"):
            assert st == 200 and hdrs["x-pysprinter-run-id"] == t["run_id"], (name, t, st, log)
        else:
            assert st == 409, (name, t, st, log)


def test_tenant_isolation(d):
    st, b = submit(d, DIAMOND, {"steps.py": STEPS}, wait=True, params={"n": 2})
    assert st == 200
    st, _ = d.call("GET", f"/v1/dags/{b['id']}", token="bob")
    assert st == 404
    st, _ = d.call("DELETE", f"/v1/dags/{b['id']}", token="bob")
    assert st == 404
    st, _ = d.call("GET", f"/v1/dags/{b['id']}/tasks/left/logs", token="bob")
    assert st == 404
    st, lst = d.call("GET", "/v1/dags", token="bob")
    assert st == 200 and b["id"] not in [x["id"] for x in lst["dags"]]
    st, _ = submit(d, DIAMOND, {"steps.py": STEPS}, token="reader")
    assert st == 403


def test_restart_resumes_a_dag(tmp_path):
    daemon = make_daemon(tmp_path)
    daemon.start()
    try:
        st, b = submit(daemon, CHAIN, {"lib/steps.py": STEPS}, params={"delay": 1.5}, no_cache=True)
        assert st == 202, b
        dag_id = b["id"]
        # Kill -9 once a has finished and b is underway.
        deadline = time.time() + 60
        while time.time() < deadline:
            _, cur = daemon.call("GET", f"/v1/dags/{dag_id}")
            if tasks_by_name(cur).get("a", {}).get("state") == "succeeded":
                break
            time.sleep(0.05)
        a_before = tasks_by_name(cur)["a"]
        assert a_before["state"] == "succeeded", cur
        daemon.kill9()
        daemon.start()
        done = wait_dag(daemon, dag_id, timeout=120)
        assert done["status"] == "succeeded", (done, daemon.log.read_text())
        t = tasks_by_name(done)
        assert t["c"]["result"] == 1
        # a kept its result: not run again after the restart.
        assert t["a"]["run_id"] == a_before["run_id"] and t["a"]["finished_us"] == a_before["finished_us"]
        assert "resumed 1 DAG run" in daemon.log.read_text()
    finally:
        daemon.stop()


# ---- datasets ------------------------------------------------------------------

READ = """
import os
def read(name: str):
    p = "/data/" + name
    files = sorted(os.listdir(p))
    with open(os.path.join(p, files[0])) as f:
        text = f.read()
    try:
        open(os.path.join(p, files[0]), "a").close()
        writable = True
    except OSError:
        writable = False
    return {"files": files, "text": text, "writable": writable}
"""


def test_data_put_get_versions_content(d):
    st, hdrs, body = d.request("PUT", "/v1/data/words?filename=words.txt", raw=b"alpha beta\n",
                               headers={"Content-Type": "application/octet-stream"})
    assert st == 201, body
    st, b = d.call("PUT", "/v1/data/words?filename=words.txt", raw=b"alpha beta gamma\n",
                   headers={"Content-Type": "application/octet-stream"})
    assert st == 201 and b["version"] == 2 and b["filename"] == "words.txt", b
    # Same content again: the same version, made current.
    st, b = d.call("PUT", "/v1/data/words?filename=words.txt", raw=b"alpha beta\n",
                   headers={"Content-Type": "application/octet-stream"})
    assert st == 200 and b["version"] == 1 and b["new_version"] is False, b
    st, b = d.call("GET", "/v1/data/words")
    assert st == 200 and b["version"] == 1 and [v["version"] for v in b["versions"]] == [1, 2], b
    st, b = d.call("GET", "/v1/data/words?version=2")
    assert st == 200 and b["version"] == 2 and b["size"] == 17
    st, hdrs, body = d.request("GET", "/v1/data/words/content?version=2")
    assert st == 200 and body == b"alpha beta gamma\n"
    st, hdrs, body = d.request("GET", "/v1/data/words/content")
    assert st == 200 and body == b"alpha beta\n"
    st, b = d.call("GET", "/v1/data")
    assert st == 200 and "words" in [x["name"] for x in b["datasets"]]
    st, b = d.call("GET", "/v1/data/words?version=9")
    assert st == 404
    st, b = d.call("GET", "/v1/data/bad..name!")
    assert st in (400, 404)


def test_data_mounted_in_a_run(d):
    st, _ = d.call("PUT", "/v1/data/corpus?filename=c.txt", raw=b"hello data\n",
                   headers={"Content-Type": "text/plain"})
    assert st in (200, 201)
    st, b = d.run(READ, kwargs={"name": "corpus"}, data=["corpus"])
    assert st == 200 and b["status"] == "succeeded", b
    assert b["result"] == {"files": ["c.txt"], "text": "hello data\n", "writable": False}, b
    st, b = d.run(READ, kwargs={"name": "nope"}, data=["nope"])
    assert st == 200 and b["status"] == "error" and "nope" in b["error"]["message"], b
    st, b = d.run(READ, data=["../x"])
    assert st == 400 and "data[0]" in b["error"]["message"]


def test_data_in_a_dag_task(d):
    d.call("PUT", "/v1/data/dagdata?filename=d.txt", raw=b"from dag\n", headers={"Content-Type": "text/plain"})
    pipeline = "tasks:\n  r: {file: read.py, function: read, args: [dagdata], data: [dagdata]}\n"
    st, b = submit(d, pipeline, {"read.py": READ}, wait=True)
    assert st == 200 and b["status"] == "succeeded", b
    assert b["tasks"][0]["result"]["text"] == "from dag\n"


def test_data_tenant_isolation_and_delete(d):
    d.call("PUT", "/v1/data/secret?filename=s.txt", raw=b"alice only\n", headers={"Content-Type": "text/plain"})
    st, _ = d.call("GET", "/v1/data/secret", token="bob")
    assert st == 404
    st, hdrs, body = d.request("GET", "/v1/data/secret/content", token="bob")
    assert st == 404 and b"alice only" not in body
    st, b = d.run(READ, kwargs={"name": "secret"}, data=["secret"], token="bob")
    assert st == 200 and b["status"] == "error", b
    st, b = d.call("GET", "/v1/data", token="bob")
    assert "secret" not in [x["name"] for x in b["datasets"]]
    st, _ = d.call("DELETE", "/v1/data/secret", token="bob")
    assert st == 404
    st, _ = d.call("PUT", "/v1/data/secret", raw=b"x", token="reader", headers={"Content-Type": "text/plain"})
    assert st == 403
    st, _ = d.call("DELETE", "/v1/data/secret")
    assert st == 200
    st, _ = d.call("GET", "/v1/data/secret")
    assert st == 404


def test_data_caps(tmp_path):
    daemon = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_body_bytes: 100000
        """)
    old = daemon.env

    def env():
        e = old()
        e["PYSPRINTER_DATA_MAX_BYTES"] = "1000"
        e["PYSPRINTER_DATA_TENANT_MAX_BYTES"] = "1500"
        return e
    daemon.env = env
    daemon.start()
    try:
        h = {"Content-Type": "application/octet-stream"}
        st, b = daemon.call("PUT", "/v1/data/big", raw=b"x" * 2000, headers=h)
        assert st == 413, b
        st, b = daemon.call("PUT", "/v1/data/huge", raw=b"x" * 200000, headers=h)
        assert st == 413, b
        st, b = daemon.call("PUT", "/v1/data/a", raw=b"a" * 900, headers=h)
        assert st == 201, b
        st, b = daemon.call("PUT", "/v1/data/b", raw=b"b" * 900, headers=h)
        assert st == 413 and "tenant" in b["error"]["message"].lower(), b
        # Another tenant has its own quota.
        st, b = daemon.call("PUT", "/v1/data/b", raw=b"b" * 900, headers=h, token="bob")
        assert st == 201, b
        st, b = daemon.call("PUT", "/v1/data/x", {"url": "ftp://example.invalid/x"})
        assert st == 400, b
    finally:
        daemon.stop()
