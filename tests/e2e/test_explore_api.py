"""The daemon's HTTP API as a client sees it, beyond the documented happy
paths: query flags and timeouts as HTTP libraries spell them, and typos
that must be errors rather than silent long waits."""
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

QUICK = "def f(x: int = 1):\n    return x\n"
SLOW = "import time\ndef slow(s: float = 30):\n    time.sleep(s)\n    return 'done'\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore_api")
    with Daemon(root, sandbox=sandbox_mode(root), config_extra="server:\n  max_wait_s: 3\n").serving() as daemon:
        yield daemon


def bad_request(st, body, words):
    assert st == 400, (st, body)
    assert body["error"]["code"] == "bad_request", body
    assert words in body["error"]["message"], body


@pytest.mark.parametrize("value", ["True", "TRUE", "Yes"])
def test_wait_flag_as_python_http_libraries_spell_it(d, value):
    # requests/httpx send params={"wait": True} as "wait=True": that waits.
    st, out = d.call("POST", f"/v1/runs?wait={value}", {"source": QUICK})
    assert st == 200 and out["status"] == "succeeded", (st, out)


@pytest.mark.parametrize("value", ["False", "0", "no"])
def test_wait_false_spellings_do_not_wait(d, value):
    st, out = d.call("POST", f"/v1/runs?wait={value}", {"source": QUICK})
    assert st == 202, (st, out)
    d.wait_status(out["id"], ["succeeded"])


@pytest.mark.parametrize("path", ["/v1/runs?wait=maybe", "/v1/runs?wait=2"])
def test_unreadable_wait_flag_is_400_and_starts_nothing(d, path):
    before = len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"])
    st, out = d.call("POST", path, {"source": QUICK})
    bad_request(st, out, "query 'wait' must be true or false")
    assert len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"]) == before


@pytest.mark.parametrize("value", ["abc", "-1", "0", "5s", "1.5", "", "%205"])
def test_unreadable_timeout_is_400_not_the_longest_wait(d, value):
    # Before, each of these waited server.max_wait_s (an hour by default).
    st, out = d.call("POST", f"/v1/runs?wait=true&timeout={value}", {"source": SLOW})
    bad_request(st, out, "query 'timeout' must be a whole number of seconds")


def test_timeout_is_honoured_and_capped(d):
    t0 = time.time()
    st, out = d.call("POST", "/v1/runs?wait=true&timeout=1", {"source": SLOW})
    assert st == 202 and out["status"] == "running", (st, out)
    assert time.time() - t0 < 2.5
    # Above server.max_wait_s (3 here) it is capped, as documented.
    t0 = time.time()
    st, got = d.call("GET", f"/v1/runs/{out['id']}?wait=true&timeout=99999999999999999999999")
    assert st == 202 and got["status"] == "running", (st, got)
    assert time.time() - t0 < 10
    d.cancel(out["id"])


def test_query_check_spares_function_urls(d):
    # A Function URL's query belongs to its function: no API words there.
    st, out = d.call("POST", "/v1/functions", {"name": "echo", "url": True, "source":
                     "def handler(event, context):\n    return event.get('queryStringParameters')\n"})
    assert st == 201, out
    st, out = d.call("GET", "/fn/alice/echo?wait=maybe&timeout=soon")
    assert st == 200, (st, out)
    assert out == {"wait": "maybe", "timeout": "soon"}, out
