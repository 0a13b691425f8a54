"""The daemon's memory for big results on their way out (helper "bigres2").

A function URL's answer was built by parsing the result whole into
jansson's nodes, twice (once to check the run's answer, once to send it):
one 10.4 MiB result of 200,000 small dicts grew the daemon by ~185 MiB, and
a few of them at once by a multiple of that. The answer is now written from
the result's text (json_text_dump()), the run object's answer too, and an
instance's "done" message becomes the result's text instead of being
parsed and copied. The daemon is judged on its VmHWM growth against a
budget in copies of the result's text (the test's input), and every answer
on its bytes."""
import json
import threading

import pytest

from daemonlib import Daemon, sandbox_mode
from proctree import vm_hwm_kib
from test_explore_bigresult import sanitized

N = 200_000
BIG = ("def big(event=None, context=None):\n"
       f"    return [{{'id': i, 'name': 'item%d' % i, 'v': i * 0.5, 'ok': True}} for i in range({N})]\n")
EMPTY = "def empty(event=None, context=None):\n    return []\n"
VALUE = [{"id": i, "name": "item%d" % i, "v": i * 0.5, "ok": True} for i in range(N)]
# jansson's compact spelling of the value (its reals are halves: "0.5", "1.0").
COMPACT = json.dumps(VALUE, ensure_ascii=False, separators=(",", ":")).encode()
SIZE = len(COMPACT)
LIMITS = {"memory_bytes": 1 << 30}

# (concurrent answers, copies of the text the daemon may grow by in all).
# Before: one answer grew it by ~17.8 copies (185 MiB), so four by far more
# than 32; now one costs ~5 (the engine's text, the store's, the answer's).
BUDGETS = [(1, 10), (4, 32)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if sanitized():
        pytest.skip("a sanitizer's allocator keeps freed memory: no bound on copies holds")
    root = tmp_path_factory.mktemp("bigres2")
    d = Daemon(root, sandbox=sandbox_mode(root))
    d.start()
    try:
        for name, src in (("big", BIG), ("empty", EMPTY)):
            st, out = d.call("POST", "/v1/functions", {"name": name, "source": src, "filename": f"{name}.py",
                                                       "url": True, "limits": LIMITS})
            assert st in (200, 201), out
        yield d
    finally:
        d.stop()


def fresh(tmp_path):
    """A daemon of its own: its VmHWM starts at this test."""
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    d.start()
    for name, src in (("big", BIG), ("empty", EMPTY)):
        st, out = d.call("POST", "/v1/functions", {"name": name, "source": src, "filename": f"{name}.py",
                                                   "url": True, "limits": LIMITS})
        assert st in (200, 201), out
    return d


def at_once(n, call):
    outs = [None] * n

    def one(i):
        outs[i] = call()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outs


@pytest.mark.parametrize("concurrent,copies", BUDGETS, ids=[f"{n}-at-once" for n, _ in BUDGETS])
def test_function_url_answers_big_results_within_budget(tmp_path, concurrent, copies):
    d = fresh(tmp_path)
    try:
        # The daemon's own start-up (a worker, an instance) is not measured.
        for _ in range(2):
            st, _, body = d.request("GET", "/fn/alice/empty/")
            assert (st, body) == (200, b"[]"), body[:300]
        before = vm_hwm_kib(d.proc.pid)
        outs = at_once(concurrent, lambda: d.request("GET", "/fn/alice/big/", timeout=600))
        grew = vm_hwm_kib(d.proc.pid) - before
        st, _, body = d.request("GET", "/healthz", token=None)
        assert st == 200, body
    finally:
        d.stop()
    for st, headers, body in outs:
        assert st == 200, body[:300]
        assert headers["content-type"] == "application/json"
        assert body == COMPACT, body[:300]
    print(f"{concurrent} answers at once: the daemon grew by {grew // 1024} MiB ({SIZE // 2**20} MiB of JSON each)")
    assert before > 0 and grew < copies * SIZE / 1024, (
        f"the daemon grew by {grew // 1024} MiB for {concurrent} answers of {SIZE // 2**20} MiB: "
        f"more than {copies} copies")


# ---- the same bytes on every path ----

VALUES = r'''
def f(event=None, context=None):
    return {"s": "t\u00e9\u2028\U0001F600\x00\x1f\x7f\"\\/", "k\"ey\n": {"": [], "a:b,c": {}},
            "n": [0, -1, 2**63 - 1, -2**63, 1.5, 0.1, 1e300, -0.0, 1e-7, 5e-324, 123456789.125],
            "e": [[], {}, [[]], [{}], ""], "b": [True, False, None], "x": "1.5e3",
            "deep": [[[[[[[[[[{"z": [1.25, "\t"]}]]]]]]]]]], "pad": ["y" * 64] * 100}
'''

# Strings, numbers and the words at the top: not response objects either.
SCALARS = {"string": "'caf\\u00e9 \\x01 \"q\"'", "real": "0.1", "int": "-7", "none": "None", "true": "True",
           "nested-statusCode": "{'a': {'statusCode': 201}}"}


def test_function_url_values_as_jansson_writes_them(daemon):
    """A value's answer is written from its text: the bytes json_dumps()
    of the parsed value wrote (17-digit reals, jansson's escapes)."""
    st, out = daemon.call("POST", "/v1/functions", {"name": "values", "source": VALUES, "filename": "values.py",
                                                    "url": True})
    assert st in (200, 201), out
    st, _, body = daemon.request("GET", "/fn/alice/values/")
    assert st == 200, body
    ns = {}
    exec(VALUES, ns)
    assert json.loads(body) == ns["f"]()
    assert b'0.10000000000000001' in body and b'"t\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\\u0000\\u001F\x7f\\"\\\\/"' in body
    for name, expr in SCALARS.items():
        src = f"def f(event=None, context=None):\n    return {expr}\n"
        st, out = daemon.call("POST", "/v1/functions", {"name": f"s-{name}", "source": src,
                                                        "filename": f"s{name}.py", "url": True})
        assert st in (200, 201), out
        st, _, body = daemon.request("GET", f"/fn/alice/s-{name}/")
        assert st == 200, (name, body)
        want = {"string": '"café \\u0001 \\"q\\""', "real": "0.10000000000000001", "int": "-7", "none": "null",
                "true": "true", "nested-statusCode": '{"a":{"statusCode":201}}'}[name]
        assert body.decode() == want, (name, body)


def test_response_objects_still_shape_the_answer(daemon):
    """An object with statusCode is the response, as before: a big body
    goes out as it was returned, its headers with it."""
    src = ("def f(event=None, context=None):\n"
           "    return {'statusCode': 201, 'headers': {'content-type': 'text/plain', 'x-n': '1'},"
           " 'body': 'x' * (4 << 20)}\n")
    st, out = daemon.call("POST", "/v1/functions", {"name": "resp", "source": src, "filename": "resp.py", "url": True,
                                                    "limits": LIMITS})
    assert st in (200, 201), out
    st, headers, body = daemon.request("GET", "/fn/alice/resp/")
    assert (st, headers["content-type"], headers["x-n"], len(body)) == (201, "text/plain", "1", 4 << 20)
    assert body == b"x" * (4 << 20)


def test_invoke_and_wait_answer_the_same_bytes(daemon):
    """The run object of a big result, from an instance (invoke) and from a
    forked run (?wait=true), reads back as the value; the result member's
    bytes are the compact text."""
    st, _, inv = daemon.request("POST", "/v1/functions/big/invoke?wait=true", {}, timeout=600)
    assert st == 200, inv[:300]
    st, _, run = daemon.request("POST", "/v1/runs?wait=true", {"source": BIG, "limits": LIMITS}, timeout=600)
    assert st == 200, run[:300]
    for body in (inv, run):
        obj = json.loads(body)
        assert obj["status"] == "succeeded" and obj["result"] == VALUE, str(obj)[:300]
        assert b'"result":' + COMPACT + b',"result_repr":null' in body
