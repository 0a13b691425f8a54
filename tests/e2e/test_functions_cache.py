"""Issue 15 (b): a deployed function's versions are kept in the daemon's
memory after their first lookup (docs/performance.md "Invoke path: round
4"). A redeployed, deleted, re-created or stack-replaced function is never
served from that memory, on the /v1 route or the Lambda route, by name
("latest") or by version."""
import threading

import pytest

from daemonlib import Daemon


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
