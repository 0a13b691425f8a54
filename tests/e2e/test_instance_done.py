"""End-to-end: a warm instance's "done" (issue 15 b, round 19,
docs/internals/performance-log.md "The warm instance's CPU per invoke (round 19)").

The instance's loop is C since round 19: it makes "done" itself for the
common result (a string id, {"ok": true, "json": TEXT}) and leaves the rest
to the runner. These hold what a caller reads for every kind of result,
the same on the first invocation as on later ones of the same instance:
text with non-ASCII and escapes, None, a value shown by repr(), an
exception, and a result over the 16 MiB cap."""
import pytest

from daemonlib import Daemon, sandbox_mode

SOURCE = '''
import os
class Odd:
    def __repr__(self):
        return "Odd()"
def h(kind: str = "text"):
    if kind == "text":
        return 'h\\u00e9llo "q" \\\\ \\n \\u2603 \\U0001f600 \\x01'
    if kind == "none":
        return None
    if kind == "odd":
        return Odd()
    if kind == "raise":
        raise ValueError("no \\u00e9")
    if kind == "big":
        return "x" * (17 << 20)
    if kind == "number":
        return 1234567890123
    return [kind, {"a": 1.5}]
'''

EXPECTED = {
    "text": ("succeeded", 'h\u00e9llo "q" \\ \n \u2603 \U0001f600 \x01'),
    "none": ("succeeded", None),
    "number": ("succeeded", 1234567890123),
    "list": ("succeeded", ["list", {"a": 1.5}]),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("instdone")
    d = Daemon(tmp / "d", sandbox=sandbox_mode(tmp))
    d.start()
    st, out = d.call("POST", "/v1/functions", {"name": "done", "source": SOURCE, "filename": "done.py"})
    assert st in (200, 201), out
    yield d
    d.stop()


def answer(d, kind):
    st, out = d.call("POST", "/v1/functions/done/invoke?wait=true", {"kwargs": {"kind": kind}})
    assert st == 200, out
    return out


@pytest.mark.parametrize("round_", range(3))
def test_every_kind_of_result_reads_the_same_on_a_warm_instance(d, round_):
    for kind, (status, result) in EXPECTED.items():
        ans = answer(d, kind)
        assert (ans["status"], ans.get("result")) == (status, result), (kind, ans)
    odd = answer(d, "odd")
    assert odd["status"] == "succeeded" and "Odd()" in str(odd), odd
    err = answer(d, "raise")
    assert err["status"] == "failed", err
    assert err["error"]["message"] == "ValueError: no \u00e9", err
    big = answer(d, "big")
    assert (big["status"], big["error"]["type"]) == ("killed", "ResultLimit"), big["error"]
    assert big.get("result") is None
