"""Cluster mode, shared state (docs/cluster.md "Shared state"): what one
node holds is seen through every gateway. A real redis-server with AOF on
(test_cluster's fixtures), 2-3 pysprinterd nodes on loopback."""
import json
import textwrap
import time

import pytest

from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import nodes, node_of, pytestmark, redis, wait_until  # noqa: F401 (fixtures)

# stdout and stderr interleaved, a burst of many short lines (batched into
# few Redis entries), a line longer than one entry (64 KiB), non-ASCII,
# with pauses so a follower sees output before the end (and the order
# across the two pipes is the same on every run).
CHATTY = """
import sys, time
def f(pause: float = 0):
    print("start", flush=True)
    print("to stderr: é ✓", file=sys.stderr, flush=True)
    # The pause also orders stderr before what follows (two pipes).
    time.sleep(pause)
    for i in range(3000):
        print(f"line {i}")
    sys.stdout.flush()
    print("x" * 100000, flush=True)
    time.sleep(pause)
    print("done", flush=True)
    return 7
"""


def sse(gw, path, token="alice"):
    """The SSE events of path: [(event, data, arrival time)] up to 'end'."""
    c = gw.conn()
    c.request("GET", path, headers={"Authorization": "Bearer " + TOKENS[token]})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events, event, data = [], None, []
    while True:
        line = r.readline()  # chunked: decoded by http.client
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line == "":
            if event:
                events.append((event, json.loads("\n".join(data)), time.time()))
                if event == "end":
                    break
            event, data = None, []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    c.close()
    return events


def test_run_logs_from_a_worker_are_served_and_followed_by_any_gateway(nodes, redis, tmp_path):
    g1 = nodes("g1", "gateway")
    w1 = nodes("w1", "worker")
    g2 = nodes("g2", "gateway")

    # The reference: the same run on a single-node daemon.
    single = Daemon(tmp_path / "single", sandbox=sandbox_mode(tmp_path))
    single.start()
    try:
        st, b = single.run(CHATTY, kwargs={"pause": 0.3})
        assert st == 200 and b["status"] == "succeeded", b
        st, want = single.call("GET", f"/v1/runs/{b['id']}/logs")
        assert st == 200
    finally:
        single.stop()
    assert "line 2999\n" in want and "é ✓" in want

    st, b = g1.run(CHATTY, wait=False, kwargs={"pause": 1.5})
    assert st == 202, b
    rid = b["id"]
    events = sse(g1, f"/v1/runs/{rid}/logs?follow=1")
    assert node_of(redis, rid) == "w1"
    outputs = [(d["stream"], d["text"], t) for ev, d, t in events if ev == "output"]
    end = events[-1]
    assert end[0] == "end" and end[1]["status"] == "succeeded" and end[1]["result"] == 7, end
    followed = "".join(text for _, text, _ in outputs)
    assert followed == want
    assert ("stderr", "to stderr: é ✓\n") in [(s, x) for s, x, _ in outputs]
    # Streamed while it ran: "start" came well before the end.
    first = next(t for s, x, t in outputs if "start" in x)
    assert end[2] - first > 1.5, (end[2], first)
    phases = [d["phase"] for ev, d, _ in events if ev == "phase"]
    assert phases[:2] == ["validate", "resolve"] and "run" in phases, phases

    # The whole log, plain, the same bytes through every node; followed
    # again after the end it replays and ends.
    for node in (g1, g2, w1):
        st, text = node.call("GET", f"/v1/runs/{rid}/logs")
        assert st == 200 and text == want, node
    again = sse(g2, f"/v1/runs/{rid}/logs?follow=1")
    assert "".join(d["text"] for ev, d, _ in again if ev == "output") == want
    assert again[-1][0] == "end" and again[-1][1]["status"] == "succeeded"
    # Another tenant does not read it.
    st, _ = g2.call("GET", f"/v1/runs/{rid}/logs", token="bob")
    assert st == 404

    # Batched: 3,000+ lines are far fewer entries (one flush per 50 ms),
    # the stream is capped and expires with the record.
    entries = int(redis.cli("XLEN", f"ps:log:{rid}"))
    assert 0 < entries < 200, entries
    ttl = int(redis.cli("TTL", f"ps:log:{rid}"))
    assert ttl > 86400, ttl


def test_logs_of_a_run_cancelled_while_queued_end_the_follow(nodes, redis):
    g1 = nodes("g1", "gateway")
    # No worker: the run stays queued until cancelled.
    st, b = g1.run(CHATTY, wait=False)
    rid = b["id"]
    st, _ = g1.call("DELETE", f"/v1/runs/{rid}")
    assert st in (200, 202), st
    events = sse(g1, f"/v1/runs/{rid}/logs?follow=1")
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled"
    st, text = g1.call("GET", f"/v1/runs/{rid}/logs")
    assert st == 200 and text == ""


LONG = """
import time
def f():
    print("up", flush=True)
    time.sleep(300)
"""


def test_followers_of_a_remote_run_hold_no_http_thread(nodes, redis):
    """A follower of a run's Redis log is parked between looks (it does not
    block one of the gateway's 2 HTTP threads in XREAD): 8 of them leave the
    gateway answering, and the run's end (a cancel) ends them all."""
    import threading
    from test_daemon_connections import waiting

    g1 = nodes("g1", "gateway", http_threads=2)
    nodes("w1", "worker")
    st, b = g1.run(LONG, wait=False)
    assert st == 202, b
    rid = b["id"]
    wait_until(lambda: "up" in g1.call("GET", f"/v1/runs/{rid}/logs")[1], 60, "the run's first line")
    results = [None] * 8

    def follow(i):
        results[i] = sse(g1, f"/v1/runs/{rid}/logs?follow=1")

    followers = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(8)]
    for t in followers:
        t.start()
    wait_until(lambda: waiting(g1) >= 8, 30, "8 followers held without a thread")
    for _ in range(10):
        t0 = time.time()
        st, rb = g1.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and rb["status"] == "running", rb
        assert time.time() - t0 < 1.0, time.time() - t0
    st, _ = g1.call("DELETE", f"/v1/runs/{rid}")
    assert st in (200, 202), st
    for t in followers:
        t.join(30)
        assert not t.is_alive()
    for events in results:
        assert ("stdout", "up\n") in [(d["stream"], d["text"]) for ev, d, _ in events if ev == "output"]
        assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled", events[-1]
    wait_until(lambda: waiting(g1) == 0, 30, "the followers gone")


GREET = """
def hello(name: str, n: int = 1):
    return {"hello": name, "n": n}
"""


def test_functions_deployed_through_one_gateway_are_everyones(nodes, redis):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    st, b = g1.call("POST", "/v1/functions", {"name": "greet", "source": GREET, "description": "v1",
                                               "limits": {"timeout_ms": 30000}})
    assert st == 201 and b["version"] == 1, b
    # The next version through the other gateway: numbered after g1's.
    # Another signature and a docstring: each version keeps its own.
    src2 = GREET.replace('"hello": name', '"hi": name').replace(
        "n: int = 1):", "n: int = 1, *, loud: bool = False):\n    'Says hi, <b>loud</b> or not.'")
    st, b = g2.call("POST", "/v1/functions", {"name": "greet", "source": src2})
    assert st == 201 and b["version"] == 2, b

    for gw in (g1, g2):
        st, b = gw.call("GET", "/v1/functions")
        assert st == 200 and [(f["name"], f["version"]) for f in b["functions"]] == [("greet", 2)], b
        st, b = gw.call("GET", "/v1/functions/greet")
        assert st == 200 and b["versions"] == [1, 2], b
    st, one = g1.call("GET", "/v1/functions/greet?version=1")
    st2, other = g2.call("GET", "/v1/functions/greet?version=1")
    assert st == st2 == 200 and one == other and one["description"] == "v1", (one, other)
    # Its signature too, kept apart from what an invoke reads (desc:<v>):
    # each version's own, as the dashboard's version view reads them.
    assert (one["signature"], one["doc"]) == ("hello(name: str, n: int = 1)", None), one
    for gw in (g1, g2):
        for q in ("", "?version=2"):
            st, two = gw.call("GET", "/v1/functions/greet" + q)
            assert st == 200 and (two["version"], two["signature"], two["doc"]) == (
                2, "hello(name: str, n: int = 1, *, loud: bool = False)", "Says hi, <b>loud</b> or not."), two

    st, b = g2.call("POST", "/v1/functions/greet/invoke?wait=true", {"raw_args": ["z"]})
    assert st == 200 and b["result"] == {"hi": "z", "n": 1}, b
    st, b = g2.call("POST", "/v1/functions/greet/invoke?wait=true", {"args": ["z"], "version": 1})
    assert st == 200 and b["result"] == {"hello": "z", "n": 1}, b
    assert node_of(redis, b["id"]) == "w1"
    # Its runs, listed by either gateway, newest first.
    for gw in (g1, g2):
        st, lst = gw.call("GET", "/v1/functions/greet/runs")
        assert st == 200 and [(r["id"], r["status"]) for r in lst["runs"]][:1] == [(b["id"], "succeeded")], lst
        assert len(lst["runs"]) == 2, lst
    # Another tenant sees none of it.
    st, b = g2.call("GET", "/v1/functions/greet", token="bob")
    assert st == 404

    # Deleted through g2: gone on g1 too.
    st, _ = g2.call("DELETE", "/v1/functions/greet")
    assert st == 200
    st, b = g1.call("GET", "/v1/functions/greet")
    assert st == 404 and b["error"]["code"] == "not_found"
    st, _ = g1.call("POST", "/v1/functions/greet/invoke", {})
    assert st == 404


SECRET = "cluster-secret-0123456789"


@pytest.fixture
def cnodes(tmp_path, redis):
    """Nodes that share a cluster.secret (the internal routes need it)."""
    started = []
    mode = sandbox_mode(tmp_path)

    def start(name, role, slots=2, extra=""):
        d = Daemon(tmp_path / name, sandbox=mode, config_extra=textwrap.dedent(f"""
            server:
              max_concurrent_runs: {slots}
              max_concurrent_per_tenant: {slots}
            cluster:
              secret: {SECRET}
            """) + extra, args=["--redis", redis.url, "--role", role, "--node-id", name, "--drain-timeout", "10"])
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(timeout=30)


READ = """
from pysprinter import data_path
import hashlib
def read(name: str):
    b = open(data_path(name), "rb").read()
    return [len(b), hashlib.sha256(b).hexdigest()]
"""


def test_dataset_put_on_one_node_is_read_by_a_run_on_another(cnodes, redis):
    import hashlib
    g1 = cnodes("g1", "gateway")
    w2 = cnodes("w2", "worker")
    blob = bytes(range(256)) * 4096 + b"tail"
    st, b = g1.call("PUT", "/v1/data/blob?filename=blob.bin", raw=blob,
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201 and b["version"] == 1, b
    content_hash = b["hash"]
    # The catalogue is shared; the object stays on g1 until asked for.
    st, lst = w2.call("GET", "/v1/data")
    assert st == 200 and [d["name"] for d in lst["datasets"]] == ["blob"], lst
    assert redis.cli("SMEMBERS", f"ps:obj:{content_hash}") == "g1"
    assert not (w2.home / "data" / "objects" / content_hash).exists()

    st, r = g1.run(READ, function="read", args=["blob"], data=["blob"])
    assert st == 200 and r["status"] == "succeeded", r
    assert node_of(redis, r["id"]) == "w2"
    assert r["result"] == [len(blob), hashlib.sha256(blob).hexdigest()]
    # w2 fetched it from g1, verified, and now holds it too.
    assert (w2.home / "data" / "objects" / content_hash).is_dir()
    assert set(redis.cli("SMEMBERS", f"ps:obj:{content_hash}").split()) == {"g1", "w2"}

    # A second version through w2's API is g1's current version too.
    st, b = w2.call("PUT", "/v1/data/blob?filename=blob.bin", raw=b"v2",
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201 and b["version"] == 2, b
    st, v = g1.call("GET", "/v1/data/blob")
    assert st == 200 and [x["version"] for x in v["versions"]] == [1, 2] and v["current_version"] == 2, v
    st, body = g1.call("GET", "/v1/data/blob/content")
    assert st == 200 and body == "v2"


def test_internal_object_route_needs_the_cluster_secret(cnodes, redis):
    g1 = cnodes("g1", "gateway")
    st, b = g1.call("PUT", "/v1/data/x?filename=x.txt", raw=b"hello",
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201, b
    path = f"/internal/v1/objects/{b['hash']}"
    # No token, a tenant's token, the admin's token: refused.
    for token in (None, "alice", "admin", "wrong-secret-0123456789"):
        st, _, _ = g1.request("GET", path, token=token)
        assert st == 401, (token, st)
    st, _, raw = g1.request("GET", path, token=SECRET)
    assert st == 200 and raw.startswith(b"PSOBJ1 ") and raw.endswith(b"hello"), raw
    st, _, _ = g1.request("GET", "/internal/v1/objects/" + "0" * 64, token=SECRET)
    assert st == 404
    st, _, _ = g1.request("GET", "/internal/v1/objects/..%2f..%2fetc", token=SECRET)
    assert st in (400, 404)


def test_an_object_that_does_not_match_its_hash_is_refused(cnodes, redis, tmp_path):
    """A peer that answers with other bytes than the hash names: the run
    fails saying so, and nothing is stored."""
    import http.server
    import threading
    g1 = cnodes("g1", "gateway")
    w2 = cnodes("w2", "worker")
    st, b = g1.call("PUT", "/v1/data/blob?filename=blob.bin", raw=b"the real bytes",
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201
    h = b["hash"]
    st, _, good = g1.request("GET", f"/internal/v1/objects/{h}", token=SECRET)
    assert st == 200
    forged = good.replace(b"the real bytes", b"the fake bytes")

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(forged)))
            self.end_headers()
            self.wfile.write(forged)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        # The only holder is a (forged) node serving other bytes.
        g1.stop()
        redis.cli("SET", "ps:node:evil", json.dumps({"advertise": f"http://127.0.0.1:{srv.server_port}"}))
        redis.cli("DEL", f"ps:obj:{h}")
        redis.cli("SADD", f"ps:obj:{h}", "evil")
        st, r = w2.run(READ, function="read", args=["blob"], data=["blob"])
        assert st == 200 and r["status"] != "succeeded", r
        assert "do not match" in json.dumps(r), r
        assert not (w2.home / "data" / "objects" / h).exists()
    finally:
        srv.shutdown()


def test_a_node_fills_its_package_store_from_a_peer_when_the_index_is_down(cnodes, redis, tmp_path):
    import pkgindex
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    whl = pkgindex.build_wheel(wheels, "peerpkg", "1.0", files={"peerpkg/__init__.py": "VALUE = 41\n"})
    sha = pkgindex.sha256_file(whl)
    index = pkgindex.Index()
    index.add(whl)
    index.start()
    extra = f"index:\n  url: {index.url}\n"
    src = ("@requirements({'peerpkg': '==1.0'})\n"
           "def f():\n    import peerpkg\n    return peerpkg.VALUE + 1\n")
    try:
        g1 = cnodes("g1", "gateway", extra=extra)
        w1 = cnodes("w1", "worker", extra=extra)
        st, r = g1.run(src)
        assert st == 200 and r["status"] == "succeeded" and r["result"] == 42, r
        assert node_of(redis, r["id"]) == "w1"
        assert any("peerpkg" in p for p in index.requests), index.requests
    finally:
        index.stop()
    # The index is gone. w1 stops claiming (it keeps serving its wheels);
    # a new node w2 runs the same requirements.
    st, _ = g1.call("POST", "/v1/cluster/nodes/w1/drain", token="admin")
    assert st == 202
    wait_until(lambda: next((n for n in g1.call("GET", "/v1/cluster")[1]["nodes"] if n["id"] == "w1"),
                            {}).get("draining"), 10, "w1 to stop claiming")
    w2 = cnodes("w2", "worker", extra=extra)
    assert not (w2.home / "cache" / "wheels" / f"{sha}.whl").exists()
    st, r = g1.run(src)
    assert st == 200 and r["status"] == "succeeded" and r["result"] == 42, r
    assert node_of(redis, r["id"]) == "w2"
    # w2's store was filled from w1 (verified against the lock's sha256),
    # and w2 now serves the wheel in turn.
    assert (w2.home / "cache" / "wheels" / f"{sha}.whl").exists()
    assert f"wheel {sha[:12]} from http://127.0.0.1:{w1.port}" in w2.log.read_text()
    st, _, body = w2.request("GET", f"/internal/v1/wheels/{sha}", token=SECRET)
    assert st == 200 and body == whl.read_bytes()
    st, _, _ = w2.request("GET", f"/internal/v1/wheels/{sha}", token="alice")
    assert st == 401


def test_a_stack_is_refused_in_cluster_mode(nodes, redis):
    """A stack is one SQLite transaction over functions, schedules and URLs;
    in a cluster functions live in Redis, so POST /v1/stacks answers 501
    and deploys nothing (docs/stack.md, docs/cluster.md)."""
    g1 = nodes("g1", "gateway")
    body = {"functions": [{"name": "greet", "filename": "greet.py",
                           "source": textwrap.dedent(GREET).lstrip("\n"), "function": "hello"}]}
    st, b = g1.call("POST", "/v1/stacks", body)
    assert st == 501, (st, b)
    assert "cluster" in b["error"]["message"], b
    st, b = g1.call("GET", "/v1/functions")
    assert st == 200 and not b["functions"], b


READ_TREE = """
from pysprinter import data_path
import os
def read(name: str):
    root = data_path(name)
    return sorted((os.path.relpath(os.path.join(d, f), root), open(os.path.join(d, f)).read())
                  for d, _, fs in os.walk(root) for f in fs)
"""


def test_a_directory_streamed_as_tar_is_in_the_shared_catalogue(cnodes, redis):
    """A streamed upload (PUT with a tar body, the datastream path) lands in
    the Redis catalogue: another gateway lists it, and a run on another node
    fetches the object from the node that stored it."""
    import io
    import tarfile
    g1 = cnodes("g1", "gateway")
    w2 = cnodes("w2", "worker")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in (("a.txt", "alpha"), ("sub/b.txt", "beta")):
            ti = tarfile.TarInfo(name)
            ti.size = len(text)
            t.addfile(ti, io.BytesIO(text.encode()))
    st, b = g1.call("PUT", "/v1/data/tree", raw=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert st == 201 and b["version"] == 1 and b["files"] == 2, b
    assert redis.cli("HGET", "ps:ds:alice:tree", "kind") == "dir"
    st, lst = w2.call("GET", "/v1/data")
    assert st == 200 and [d["name"] for d in lst["datasets"]] == ["tree"], lst
    assert redis.cli("SMEMBERS", f"ps:obj:{b['hash']}") == "g1"
    st, r = g1.run(READ_TREE, function="read", args=["tree"], data=["tree"])
    assert st == 200 and r["status"] == "succeeded", r
    assert node_of(redis, r["id"]) == "w2"
    assert r["result"] == [["a.txt", "alpha"], ["sub/b.txt", "beta"]]


SLOW = """
import time
def slow(seconds: float = 60):
    time.sleep(seconds)
    return "done"
"""


def test_a_schedule_sees_its_run_on_a_worker(nodes, redis, tmp_path):
    """A schedule's last run is read from Redis, where a cluster's runs are
    (the scheduling gateway's SQLite holds none): GET shows its status, and
    a fire time while it still runs on a worker is skipped (no overlap).
    Before, the run was never found: no status, and every fire time
    started another run."""
    from test_schedules import ClockDaemon, iso
    g1 = ClockDaemon(tmp_path / "g1", sandbox=sandbox_mode(tmp_path),
                     args=["--redis", redis.url, "--role", "gateway", "--node-id", "g1", "--drain-timeout", "10"])
    g1.start()
    try:
        nodes("w1", "worker")
        st, b = g1.call("POST", "/v1/functions", {"name": "slow", "source": SLOW})
        assert st == 201, b
        st, b = g1.call("POST", "/v1/schedules", {"name": "one", "function": "slow", "every": "1m"})
        assert st == 201, b
        g1.set_time("2026-03-01 10:01:00")
        s = g1.wait_schedule("one", lambda s: s["last_run"] is not None)
        first = s["last_run"]["id"]
        wait_until(lambda: g1.call("GET", f"/v1/runs/{first}")[1]["status"] == "running", 60, "the run running")
        assert node_of(redis, first) == "w1"
        s = g1.wait_schedule("one", lambda s: s["last_run"]["status"] == "running")
        g1.set_time("2026-03-01 10:02:00")
        s = g1.wait_schedule("one", lambda s: s["next_fire_at"] == iso("2026-03-01 10:03:00"))
        assert s["runs"] == [first], s
        assert first in s["note"] and "still running" in s["note"], s
        st, lst = g1.call("GET", "/v1/functions/slow/runs")
        assert [r["id"] for r in lst["runs"]] == [first], lst
        st, _ = g1.call("DELETE", f"/v1/runs/{first}")
        assert st in (200, 202)
    finally:
        g1.stop(timeout=30)


LOUD_TASK = """
import sys
def f(tag: str):
    print("out of", tag, flush=True)
    print("err of", tag, file=sys.stderr, flush=True)
    return tag
"""


def test_a_dag_tasks_log_is_read_from_redis_by_any_gateway(nodes, redis):
    """GET /v1/dags/ID/tasks/T/logs in a cluster is the task's run's log in
    Redis, as GET /v1/runs/ID/logs (whichever node ran it); before, the
    gateway read its own SQLite, which holds no run: every log was empty."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    pipeline = """
tasks:
  a: {file: t.py, function: f, args: ["a"]}
  b: {file: t.py, function: f, args: ["${a}-b"], depends: [a]}
"""
    st, b = g1.call("POST", "/v1/dags?wait=true", {"pipeline": pipeline, "files": {"t.py": LOUD_TASK},
                                                    "no_cache": True})
    assert st == 200 and b["status"] == "succeeded", b
    dag_id = b["id"]
    runs = {t["name"]: t["run_id"] for t in b["tasks"]}
    assert node_of(redis, runs["b"]) == "w1"
    for gw in (g1, g2):
        for task, tag in (("a", "a"), ("b", "a-b")):
            st, hdrs, log = gw.request("GET", f"/v1/dags/{dag_id}/tasks/{task}/logs")
            assert st == 200, (st, log)
            log = log.decode()
            assert f"out of {tag}\n" in log and f"err of {tag}\n" in log, (gw, task, log)
            assert hdrs["x-pysprinter-run-id"] == runs[task]
            st, text = gw.call("GET", f"/v1/runs/{runs[task]}/logs")
            assert st == 200 and text == log
    st, _ = g2.call("GET", f"/v1/dags/{dag_id}/tasks/a/logs", token="bob")
    assert st == 404
