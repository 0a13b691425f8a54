"""GET /v1/runs lists summaries: a run's args, kwargs, result or
result_repr whose text is over 4 KiB is null in a listing entry and named
in its "elided"; GET /v1/runs/ID has the whole run. Before, every entry
held them whole: three 5-7 MB Lambda events made a 26 MB listing (`ps`
against a daemon, the Python client's runs(), the dashboard's runs page).
`ps` prints the same bytes embedded and against the daemon."""
import json
import os
import subprocess
import sys

import pytest

from conftest import CLI, ROOT, WORKER, sandbox_args

sys.path.insert(0, str(ROOT / "python"))

SOURCE = '''
def big(s: str = "", n: int = 0):
    return "y" * n
'''
MB = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from daemonlib import Daemon
    d = Daemon(tmp_path_factory.mktemp("runlist"), sandbox="none" if sandbox_args() else None, args=["--no-auth"])
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def runs(daemon):
    """Three runs: 2 MB args, a 3 MB result, small ones; oldest first."""
    out = []
    for kw in ({"s": "x" * (2 * MB), "n": 3}, {"s": "a", "n": 3 * MB}, {"s": "b", "n": 2}):
        st, b = daemon.run(SOURCE, filename="big.py", kwargs=kw, token=None)
        assert st == 200 and b["status"] == "succeeded", (st, str(b)[:300])
        out.append(b["id"])
    return out


def cli(daemon, args, server=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(daemon.home), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_listing_of_runs_with_megabytes_of_values_is_small(daemon, runs):
    st, hdrs, raw = daemon.request("GET", "/v1/runs?limit=10", token=None)
    assert st == 200, raw[:300]
    assert len(raw) < 64 * 1024, len(raw)
    listed = {r["id"]: r for r in json.loads(raw)["runs"]}
    a, r, small = (listed[i] for i in runs)
    assert a["kwargs"] is None and a["elided"] == ["kwargs"] and a["result"] == "yyy", a
    assert r["result"] is None and r["elided"] == ["result"], r
    assert r["kwargs"] == {"s": "a", "n": 3 * MB}, r
    # A run with small values is listed as GET /v1/runs/ID shows it.
    st, whole = daemon.call("GET", f"/v1/runs/{runs[2]}", token=None)
    assert st == 200 and small == whole and "elided" not in small, (small, whole)
    # The whole run is one GET away, and an entry has every other field
    # as it (what ps's columns and the dashboard's runs page read).
    st, whole = daemon.call("GET", f"/v1/runs/{runs[0]}", token=None)
    assert st == 200 and len(whole["kwargs"]["s"]) == 2 * MB and "elided" not in whole
    assert {k: v for k, v in a.items() if k not in ("kwargs", "elided")} == \
        {k: v for k, v in whole.items() if k != "kwargs"}
    st, whole = daemon.call("GET", f"/v1/runs/{runs[1]}", token=None)
    assert st == 200 and len(whole["result"]) == 3 * MB
    assert {k: v for k, v in r.items() if k not in ("result", "elided")} == \
        {k: v for k, v in whole.items() if k != "result"}


def test_ps_prints_the_same_bytes_embedded_and_against_the_daemon(daemon, runs):
    for args in (["ps", "--json", "-n", "10"], ["ps", "-n", "10"]):
        local, remote = cli(daemon, args), cli(daemon, args, server=daemon.url)
        assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
        assert local.stdout == remote.stdout, (local.stdout[:2000], remote.stdout[:2000])
        assert len(local.stdout) < 64 * 1024
    listed = json.loads(cli(daemon, ["ps", "--json", "-n", "3"]).stdout)
    assert [x.get("elided") for x in listed] == [None, ["result"], ["kwargs"]], listed
    # show has the whole run on both paths.
    for server in (None, daemon.url):
        shown = json.loads(cli(daemon, ["show", runs[1], "--json"], server=server).stdout)
        assert len(shown["result"]) == 3 * MB and "elided" not in shown


def test_the_python_clients_result_of_a_listed_run_is_the_whole_value(daemon, runs):
    from pysprinter.client import Client
    with Client(daemon.url) as c:
        listed = {r["id"]: r for r in c.runs(limit=10)}
        assert listed[runs[1]]["elided"] == ["result"]
        assert c.result(listed[runs[1]]) == "y" * (3 * MB)
        assert c.result(listed[runs[2]]) == "yy"


def test_a_clusters_listing_leaves_the_same_values_out(tmp_path):
    """A cluster's gateway lists from Redis as a single node lists."""
    from clusterlib import loopback_cluster
    with loopback_cluster(tmp_path) as (gw, _worker):
        st, b = gw.run(SOURCE, filename="big.py", kwargs={"s": "a", "n": 3 * MB})
        assert st == 200 and b["status"] == "succeeded", (st, str(b)[:300])
        st, hdrs, raw = gw.request("GET", "/v1/runs?limit=10", token="alice")
        assert st == 200 and len(raw) < 64 * 1024, (st, len(raw))
        (r,) = json.loads(raw)["runs"]
        assert r["id"] == b["id"] and r["result"] is None and r["elided"] == ["result"], r
        st, whole = gw.call("GET", f"/v1/runs/{b['id']}")
        assert st == 200 and len(whole["result"]) == 3 * MB and "elided" not in whole


def test_the_event_stream_sends_a_runs_summary(daemon, runs):
    """GET /v1/events (the dashboard's runs page, live) sends each run
    object as the listing has it: a 3 MB result went to every open
    dashboard, again at each of the run's changes."""
    c = daemon.conn()
    c.request("GET", "/v1/events")
    r = c.getresponse()
    assert r.status == 200
    st, b = daemon.run(SOURCE, wait=False, filename="big.py", kwargs={"s": "c", "n": 3 * MB}, token=None)
    assert st == 202, b
    from daemonlib import run_events
    seen = []
    for n, run in run_events(r):
        if run["id"] == b["id"]:
            seen.append((n, run.get("elided"), run["status"]))
            if run["status"] not in ("queued", "running"):
                break
    c.close()
    assert all(n < 64 * 1024 for n, _, _ in seen), seen
    assert seen[-1][1:] == (["result"], "succeeded"), seen
