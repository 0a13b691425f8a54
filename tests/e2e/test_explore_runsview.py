"""Seeing runs by where they came from and as the dashboard pages them:
`ps`'s FUNCTION column and its --function/--schedule filters (embedded and
through a server, the same bytes; GET /v1/runs?function=&schedule=; the
Python client), the run page's limits, the runs table's deep links past
the first 1000 runs, and a tab that another tab's login changed tenant."""
import json
import sqlite3

import pytest

from clusterlib import loopback_cluster
from conftest import CLI, DAEMON, ROOT, same
from daemonlib import TOKENS, Daemon
from test_explore_origin import d, tick_runs  # noqa: F401 (d: the fixture)
from test_schedules import TICK, deploy

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


@pytest.fixture(scope="module")
def runs(d):
    """test_explore_origin's runs; version 1's with limits."""
    return tick_runs(d, limits={"timeout_ms": 7000, "max_procs": 33})


def both(d, cli, *args):
    local = cli(*args, env={"PYSPRINTER_HOME": str(d.home)})
    remote = cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    return same(local, remote)


def listed(d, query):
    st, b = d.call("GET", "/v1/runs?" + query)
    assert st == 200, (st, b)
    return [r["id"] for r in b["runs"]]


def test_ps_shows_each_runs_function_and_version(d, runs, cli):
    p = both(d, cli, "ps", "-n", "10")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "FUNCTION" in lines[0].split(), lines[0]
    col = lines[0].index("FUNCTION")
    by_id = {line.split()[0]: line for line in lines[1:]}
    word = lambda rid: by_id[rid][col:].split()[0]  # noqa: E731
    assert word(runs["v1"]) == "tick@1"
    assert word(runs["v2"]) == "tick@2"
    assert word(runs["sched"]) == "tick@2"
    assert word(runs["adhoc"]) == "-"


def test_ps_filters_by_function_and_schedule_on_both_paths(d, runs, cli):
    p = both(d, cli, "ps", "--function", "tick", "--json")
    assert p.returncode == 0, p.stderr
    got = [r["id"] for r in json.loads(p.stdout)]
    assert set(got) == {runs["v1"], runs["v2"], runs["sched"]}, got
    p = both(d, cli, "ps", "--schedule", "every5", "--json")
    assert [r["id"] for r in json.loads(p.stdout)] == [runs["sched"]]
    p = both(d, cli, "ps", "--schedule=every5", "--function=tick")
    assert p.returncode == 0, p.stderr
    assert [line.split()[0] for line in p.stdout.splitlines()[1:]] == [runs["sched"]]
    p = both(d, cli, "ps", "--function", "nope")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1, p.stdout
    # With the other filters: the newest run of tick that succeeded.
    p = both(d, cli, "ps", "--function", "tick", "--status", "succeeded", "-n", "1", "--json")
    assert [r["id"] for r in json.loads(p.stdout)] == [runs["sched"]]
    p = both(d, cli, "ps", "--function", "tick", "--before", runs["v2"], "--json")
    assert [r["id"] for r in json.loads(p.stdout)] == [runs["v1"]]
    p = both(d, cli, "ps", "--function")
    assert p.returncode == 2 and "--function" in p.stderr, p.stderr


def test_the_list_route_filters_by_function_and_schedule(d, runs):
    assert set(listed(d, "function=tick")) == {runs["v1"], runs["v2"], runs["sched"]}
    assert listed(d, "schedule=every5") == [runs["sched"]]
    assert listed(d, "function=tick&schedule=every5") == [runs["sched"]]
    assert listed(d, "function=nope") == []
    assert listed(d, "function=tick&limit=1") == [runs["sched"]]
    st, b = d.call("GET", "/v1/runs?function=")
    assert st == 400 and "function" in b["error"]["message"], (st, b)


def test_a_cluster_lists_by_function(tmp_path):
    with loopback_cluster(tmp_path) as (g, _):
        deploy(g, "tick", TICK)
        st, b = g.call("POST", "/v1/functions/tick/invoke?wait=true", {"args": ["c"]})
        assert st == 200, (st, b)
        st, adhoc = g.call("POST", "/v1/runs?wait=true", {"source": TICK})
        assert st == 200, (st, adhoc)
        assert listed(g, "function=tick") == [b["id"]]
        assert listed(g, "function=nope") == []
        assert listed(g, "schedule=every5") == []
        assert adhoc["id"] in listed(g, "limit=10")


def test_the_python_client_lists_by_function_and_schedule(d, runs):
    import sys
    sys.path.insert(0, str(ROOT / "python"))
    import pysprinter
    c = pysprinter.Client(server=d.url, token=TOKENS["alice"])
    assert [r["id"] for r in c.runs(schedule="every5")] == [runs["sched"]]
    assert {r["id"] for r in c.runs(function="tick")} == {runs["v1"], runs["v2"], runs["sched"]}


def test_the_run_page_shows_the_limits_as_show_prints_them(d, runs, cli):
    from uilib import start_browser, ui_login, wait_for
    p = both(d, cli, "show", runs["v1"])
    [line] = [x for x in p.stdout.splitlines() if x.startswith("limits:")]
    want = line[len("limits:"):].strip()
    assert "processes 33" in want
    drv = start_browser()
    try:
        ui_login(drv, d, TOKENS["alice"], "alice")
        drv.get(d.url + "/ui/#/runs/" + runs["v1"])
        seen = wait_for(lambda: drv.execute_script(
            "const e = document.querySelector('#run-limits'); return e ? e.textContent : null"),
            what="the run's limits")
        assert seen == want
    finally:
        drv.quit()


def test_a_deep_link_past_the_first_1000_runs_shows_its_page(tmp_path):
    """#/runs?page=23 (runs 1101 to 1130 of 1130) landed on page 20, the
    last of the 1000 runs the first list holds."""
    from uilib import start_browser, ui_login, wait_for
    d = Daemon(tmp_path / "d")
    with d.serving():
        assert d.run("def f():\n    return 1\n")[1]["status"] == "succeeded"
    n = 1130
    db = sqlite3.connect(d.home / "pysprinter.db")
    with db:
        db.executemany("INSERT INTO runs (id, tenant, filename, status, exit_code, created, started, finished, "
                       "attempt, max_attempts, owner_pid, owner_start) "
                       "VALUES (?, 'alice', 'f.py', 'succeeded', 0, ?, 0, 0, 1, 1, 0, 0)",
                       [(f"rpage{i:05d}", 1_700_000_000_000_000 + i) for i in range(n)])
    db.close()
    # Newest first: the real run, then rpage01129 … rpage00000.
    with d.serving():
        drv = start_browser()
        try:
            ui_login(drv, d, TOKENS["alice"], "alice")
            drv.get(d.url + "/ui/#/runs?page=23")
            drv.refresh()
            pager = wait_for(lambda: (lambda t: t if "of 23" in t else None)(
                drv.find_element("css selector", ".pager").text), what="the pager of 23 pages", timeout=60)
            assert "page 23 of 23" in pager and "1131 run(s)" in pager, pager
            first = drv.execute_script("const r = document.querySelector('#runs-body tr[data-run]');"
                                       "return r && r.dataset.run")
            assert first == f"rpage{n - 1 - 1099:05d}", first
        finally:
            drv.quit()


def test_another_tabs_login_as_another_tenant_redraws_this_one(d):
    from uilib import start_browser, ui_login, wait_for
    drv = start_browser()
    try:
        ui_login(drv, d, TOKENS["alice"], "alice")
        first = drv.current_window_handle
        drv.switch_to.new_window("tab")
        ui_login(drv, d, TOKENS["bob"], "bob")
        drv.switch_to.window(first)
        wait_for(lambda: drv.find_element("css selector", "#who").text.startswith("bob"),
                 what="the first tab naming bob")
    finally:
        drv.quit()
