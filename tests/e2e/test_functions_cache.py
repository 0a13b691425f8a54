"""Issue 15 (b): a deployed function's versions are kept in the daemon's
memory after their first lookup (docs/internals/performance-log.md "Invoke path: round
4"). A redeployed, deleted, re-created or stack-replaced function is never
served from that memory, on the /v1 route or the Lambda route, by name
("latest") or by version."""
import threading

import pytest

from daemonlib import Daemon, wait_for


def returning(value):
    return f"def main(event=None, context=None):\n    return {value!r}\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("fncache")).serving() as daemon:
        yield daemon


def lookups(d):
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    got = {}
    for line in text.splitlines():
        if line.startswith("pysprinter_function_lookups_total{"):
            got[line.split('"')[1]] = int(float(line.split()[1]))
    return got


def deploy(d, name, value):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": returning(value), "function": "main"})
    assert st == 201, b
    return b["version"]


def v1(d, name, version=None):
    body = {} if version is None else {"version": version}
    st, b = d.call("POST", f"/v1/functions/{name}/invoke?wait=true", body)
    return st, (b.get("result") if st == 200 else b)


def lam(d, name, qualifier=None):
    ref = name if qualifier is None else f"{name}:{qualifier}"
    st, b = d.call("POST", f"/2015-03-31/functions/{ref}/invocations", {})
    return st, b


def both(d, name, version=None):
    """The value on both routes; the status when either is not 200."""
    s1, r1 = v1(d, name, version)
    s2, r2 = lam(d, name, version)
    if s1 != 200 or s2 != 200:
        return (s1, s2)
    assert r1 == r2, (r1, r2)
    return r1


def test_redeploy_is_seen_by_name_and_old_versions_stay(d):
    assert deploy(d, "re", "one") == 1
    for _ in range(3):
        assert both(d, "re") == "one"
        assert both(d, "re", 1) == "one"
    before = lookups(d)
    assert both(d, "re") == "one"
    after = lookups(d)
    # The repeated lookups were answered from memory (the mechanism tested).
    assert after["memory"] > before["memory"], (before, after)
    assert deploy(d, "re", "two") == 2
    assert both(d, "re") == "two"
    assert both(d, "re", 2) == "two"
    assert both(d, "re", 1) == "one"
    assert both(d, "re", 3) == (404, 404)


def test_deleted_then_recreated_name_is_never_served_stale(d):
    deploy(d, "gone", "old")
    for _ in range(3):
        assert both(d, "gone") == "old"
        assert both(d, "gone", 1) == "old"
    st, b = d.call("DELETE", "/v1/functions/gone")
    assert st == 200, b
    assert both(d, "gone") == (404, 404)
    assert both(d, "gone", 1) == (404, 404)
    # A new deploy of the name starts again at version 1, with other code.
    assert deploy(d, "gone", "new") == 1
    assert both(d, "gone") == "new"
    assert both(d, "gone", 1) == "new"


def test_stack_replace_and_prune_are_seen(d):
    def stack(value, names, prune=False):
        fns = [{"name": n, "source": returning(value), "function": "main", "url": False} for n in names]
        st, b = d.call("POST", "/v1/stacks", {"functions": fns, "prune": prune})
        assert st == 200, b

    stack("s1", ["stk", "stk2"])
    for _ in range(3):
        assert both(d, "stk") == "s1"
        assert both(d, "stk2") == "s1"
    stack("s2", ["stk", "stk2"])
    assert both(d, "stk") == "s2"
    assert both(d, "stk2") == "s2"
    stack("s3", ["stk"], prune=True)
    assert both(d, "stk") == "s3"
    assert both(d, "stk2") == (404, 404)


def test_no_invoke_after_a_deploy_returns_sees_the_old_code(d):
    """Invokes run by name on other connections while the function is
    redeployed again and again: every invoke that starts after a deploy
    returned runs that deploy's code or a later one."""
    deploy(d, "race", 0)
    done = [0]
    lock = threading.Lock()
    errors = []
    stop = threading.Event()

    def invoker():
        while not stop.is_set():
            with lock:
                floor = done[0]
            st, r = v1(d, "race")
            if st != 200 or r < floor:
                errors.append((st, r, floor))

    ts = [threading.Thread(target=invoker) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        for i in range(1, 16):
            deploy(d, "race", i)
            with lock:
                done[0] = i
            st, r = v1(d, "race")
            assert st == 200 and r == i, (st, r, i)
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert not errors, errors[:5]


def big(value, pad=300_000):
    """A module-sized source whose value is spelled at both ends: a run
    whose bytes came from two versions, or from freed memory, returns two
    different halves or fails to compile."""
    return (f"HEAD = {value!r}\n" + "#" * pad + "\n"
            "import os, time\n"
            "def main(event=None, context=None, gate=None):\n"
            "    while gate and not os.path.exists(gate):\n"
            "        time.sleep(0.005)\n"
            "    return [HEAD, TAIL]\n"
            f"TAIL = {value!r}\n")


def test_shared_source_of_a_large_module_is_never_mixed_or_freed_under_a_run(d, tmp_path):
    """The request and the run share the cached version's bytes instead of
    copying them (docs/internals/performance-log.md "Invoke path: round 6"). Redeploys and
    a delete empty the cache while invokes on both routes hold those bytes:
    every answer is one version whole."""
    st, b = d.call("POST", "/v1/functions", {"name": "bigm", "source": big(0), "function": "main"})
    assert st == 201, b
    errors, stop = [], threading.Event()
    done = [0]
    lock = threading.Lock()

    def invoker(route):
        while not stop.is_set():
            with lock:
                floor = done[0]
            if route == "v1":
                st, r = v1(d, "bigm")
            else:
                st, r = lam(d, "bigm")
            if st != 200 or r[0] != r[1] or r[0] < floor:
                errors.append((route, st, r, floor))

    ts = [threading.Thread(target=invoker, args=(rt,)) for rt in ("v1", "v1", "lambda")]
    for t in ts:
        t.start()
    try:
        for i in range(1, 9):
            st, b = d.call("POST", "/v1/functions", {"name": "bigm", "source": big(i), "function": "main"})
            assert st == 201, b
            with lock:
                done[0] = i
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert not errors, errors[:5]
    # A run in flight keeps its version's bytes when the function is
    # deleted (the cache drops its reference) and deployed again.
    res = {}
    gate = tmp_path / "gate"

    def slow():
        res["v"] = d.call("POST", "/v1/functions/bigm/invoke?wait=true", {"kwargs": {"gate": str(gate)}})

    t = threading.Thread(target=slow)
    t.start()

    def running():
        st, b = d.call("GET", "/v1/functions/bigm/runs?limit=5")
        return st == 200 and any(r["status"] == "running" for r in b["runs"])

    wait_for(running, "the gated invoke running")
    st, b = d.call("DELETE", "/v1/functions/bigm")
    assert st == 200, b
    st, b = d.call("POST", "/v1/functions", {"name": "bigm", "source": big(99, pad=300_001), "function": "main"})
    assert st == 201, b
    gate.write_text("go")
    t.join()
    st, b = res["v"]
    assert st == 200 and b["status"] == "succeeded", b
    assert b["result"][0] == b["result"][1], b["result"]
    assert both(d, "bigm") == [99, 99]
