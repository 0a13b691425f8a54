"""Issue 15 (b): an invoke's answer is the run object GET /v1/runs/ID shows,
byte for byte in its timings, although the answer puts the stored timings
text in as it is rather than parsing and re-printing it
(docs/internals/performance-log.md "Invoke path: round 6"). Reals are spelled shortest
(0.01, not 0.010 or 0.010000000000000000208), as every real in an answer."""
import json
import re
import threading

import pytest

from daemonlib import Daemon

SOURCE = "def main(x=1, y=0.1, context=None):\n    return {'x': x, 'half': x / 2, 'y': y}\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("answer")).serving() as daemon:
        st, b = daemon.call("POST", "/v1/functions", {"name": "f", "source": SOURCE, "function": "main"})
        assert st == 201, b
        yield daemon


def timings_text(body):
    m = re.search(rb',"timings":(\{[^{}]*\}),', body)
    assert m, body
    return m.group(1)


def check(d, body):
    ans = json.loads(body)
    assert ans["status"] == "succeeded", ans
    st, _, got = d.request("GET", f"/v1/runs/{ans['id']}")
    assert st == 200, got
    assert timings_text(body) == timings_text(got)
    assert json.loads(got) == ans
    t = json.loads(timings_text(body))
    assert {"run_ms", "total_ms", "cold"} <= set(t), t
    for k, v in t.items():
        if k != "cold":
            spelled = re.search(rb'"%s":([^,}]*)' % k.encode(), timings_text(body)).group(1).decode()
            assert spelled == repr(float(v)), (k, spelled)
    return ans


def invoke(d, body):
    st, _, raw = d.request("POST", "/v1/functions/f/invoke?wait=true", body)
    assert st == 200, raw
    return raw


def test_sequential_invokes_answer_the_stored_timings(d):
    for i in range(20):
        ans = check(d, invoke(d, {"args": [i], "kwargs": {"y": 0.25}}))
        assert ans["result"] == {"x": i, "half": i / 2, "y": 0.25}
        assert ans["args"] == [i] and ans["kwargs"] == {"y": 0.25}


def test_concurrent_invokes_answer_the_stored_timings(d):
    # Several in flight: answered through a run thread and the waiter.
    bodies, errors = [], []

    def caller(k):
        try:
            for i in range(10):
                bodies.append(invoke(d, {"args": [k * 100 + i]}))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert len(bodies) == 40
    for b in bodies:
        ans = check(d, b)
        assert ans["result"]["x"] == ans["args"][0]
