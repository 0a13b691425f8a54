"""Where a run came from: the deployed function and version an invoke
started it from (fn_name, fn_version) and the schedule that fired it
(schedule), in the run object (GET /v1/runs/ID, `show --json`), in `show`'s
text on both backends, and on the web UI's run page."""
import json

import pytest

from clusterlib import loopback_cluster
from conftest import CLI, DAEMON, same
from daemonlib import TOKENS, sandbox_mode
from test_schedules import TERMINAL, TICK, ClockDaemon, deploy

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("origin")
    daemon = ClockDaemon(tmp / "d", sandbox=sandbox_mode(tmp))
    with daemon.serving(clean_exit=False) as running:
        deploy(running, "tick", TICK)
        deploy(running, "tick", TICK + "\n# v2\n")
        yield running


@pytest.fixture(scope="module")
def runs(d):
    return tick_runs(d)


def tick_runs(d, **v1):
    """An invoke of version 1 (v1: more fields of its request), one of the
    current version (2), an ad-hoc run and a run fired by schedule 'every5':
    their ids."""
    ids = {}
    st, b = d.call("POST", "/v1/functions/tick/invoke?wait=true", {"args": ["a"], "version": 1, **v1})
    assert st == 200, (st, b)
    ids["v1"] = b["id"]
    st, b = d.call("POST", "/v1/functions/tick/invoke?wait=true", {"args": ["b"]})
    assert st == 200, (st, b)
    ids["v2"] = b["id"]
    st, b = d.call("POST", "/v1/runs?wait=true", {"source": TICK})
    assert st == 200, (st, b)
    ids["adhoc"] = b["id"]
    st, b = d.call("POST", "/v1/schedules", {"name": "every5", "function": "tick", "cron": "*/5 * * * *"})
    assert st == 201, (st, b)
    d.set_time("2026-03-01 10:05:00")
    s = d.wait_schedule("every5", lambda s: s["last_run"] is not None)
    ids["sched"] = s["last_run"]["id"]
    d.wait_status(ids["sched"], TERMINAL)
    return ids


def get(d, rid):
    st, b = d.call("GET", f"/v1/runs/{rid}")
    assert st == 200, (st, b)
    return b


def origin(run):
    return run.get("fn_name", "absent"), run.get("fn_version", "absent"), run.get("schedule", "absent")


def test_invoked_run_names_its_function_and_version(d, runs):
    assert origin(get(d, runs["v1"])) == ("tick", 1, None)
    assert origin(get(d, runs["v2"])) == ("tick", 2, None)


def test_adhoc_run_has_no_origin(d, runs):
    assert origin(get(d, runs["adhoc"])) == (None, None, None)


def test_scheduled_run_names_its_schedule(d, runs):
    assert origin(get(d, runs["sched"])) == ("tick", 2, "every5")


def test_listing_carries_the_origin(d, runs):
    st, b = d.call("GET", "/v1/runs?limit=50")
    assert st == 200, (st, b)
    listed = {r["id"]: origin(r) for r in (b["runs"] if isinstance(b, dict) else b)}
    assert listed[runs["v1"]] == ("tick", 1, None)
    assert listed[runs["sched"]] == ("tick", 2, "every5")


def test_show_prints_the_origin_on_both_backends(d, runs, cli):
    """`show` embedded (the daemon's home) and through the server print the
    same bytes, with the function, its version and the schedule."""
    def both(*args):
        local = cli(*args, env={"PYSPRINTER_HOME": str(d.home)})
        remote = cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        return local, remote

    p = same(*both("show", runs["sched"]))
    assert p.returncode == 0, p.stderr
    assert "deployed:  tick v2\n" in p.stdout
    assert "schedule:  every5\n" in p.stdout
    p = same(*both("show", runs["v1"]))
    assert "deployed:  tick v1\n" in p.stdout and "schedule:" not in p.stdout
    p = same(*both("show", runs["adhoc"]))
    assert "deployed:" not in p.stdout and "schedule:" not in p.stdout
    p = same(*both("show", runs["v1"], "--json"))
    assert origin(json.loads(p.stdout)) == ("tick", 1, None)


def test_run_page_links_the_function_and_names_the_schedule(d, runs):
    from uilib import start_browser, ui_login, wait_for
    drv = start_browser()
    try:
        ui_login(drv, d, TOKENS["alice"], "alice")
        drv.get(d.url + "/ui/#/runs/" + runs["sched"])
        # Read in one script: the page draws the run again as it loads.
        seen = wait_for(lambda: drv.execute_script(
            "const a = document.querySelector('#run-deployed a'), s = document.querySelector('#run-schedule');"
            "return a && s ? [a.textContent, a.getAttribute('href'), s.textContent] : null"), what="the deployed link")
        assert seen == ["tick v2", "#/functions/tick?version=2", "every5"]
        drv.get(d.url + "/ui/#/runs/" + runs["adhoc"])
        wait_for(lambda: runs["adhoc"] in drv.find_element("css selector", "h1").text, what="the ad-hoc run's page")
        assert drv.find_elements("css selector", "#run-deployed, #run-schedule") == []
    finally:
        drv.quit()


def test_lambda_invoke_names_its_function(d, runs):
    st, b = d.call("POST", "/2015-03-31/functions/tick/invocations?Qualifier=1", {"tag": "l"})
    assert st == 200, (st, b)
    st, listed = d.call("GET", "/v1/runs?limit=1")
    rows = listed["runs"] if isinstance(listed, dict) else listed
    assert origin(rows[0]) == ("tick", 1, None), rows[0]


def test_a_database_from_before_the_origin_loads(tmp_path, cli):
    """A home whose runs table predates migration 23 (its columns dropped,
    user_version 22): its runs still show, with null fn_version and
    schedule, and the columns are added."""
    import sqlite3
    home = tmp_path / "oldhome"
    env = {"PYSPRINTER_HOME": str(home)}
    cli.write("t.py", TICK)
    p = cli("run", "t.py", "--json", "--sandbox=none", env=env)
    assert p.returncode == 0, p.stderr
    rid = json.loads(cli("ps", "--json", env=env).stdout)[0]["id"]
    db = sqlite3.connect(home / "pysprinter.db")
    db.executescript("DROP TRIGGER runs_search_delete; DROP TRIGGER runs_search_update; DROP TABLE runs_search; DELETE FROM kv WHERE ns='search';"
                     "DROP INDEX runs_schedule; ALTER TABLE runs DROP COLUMN fn_version; ALTER TABLE runs DROP COLUMN schedule;"
                     "ALTER TABLE runs DROP COLUMN limits_json;"
                     "ALTER TABLE functions DROP COLUMN lock_json;"
                     "ALTER TABLE endpoints DROP COLUMN cors_json;"
                     "PRAGMA user_version=22;")
    db.close()
    p = cli("show", rid, "--json", env=env)
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "succeeded" and origin(run) == (None, None, None)
    db = sqlite3.connect(home / "pysprinter.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 29
    db.close()


def test_cluster_record_carries_the_origin(tmp_path):
    with loopback_cluster(tmp_path) as (g, _):
        deploy(g, "tick", TICK)
        st, b = g.call("POST", "/v1/functions/tick/invoke?wait=true", {"args": ["c"]})
        assert st == 200, (st, b)
        st, run = g.call("GET", f"/v1/runs/{b['id']}")
        assert st == 200 and origin(run) == ("tick", 1, None), run
        assert origin(b) == ("tick", 1, None), b


def test_run_keeps_the_limits_it_was_given(d, cli):
    """The limits a run was given stay in its record after its end (they
    were dropped with request_json): the run object's `limits`, and
    `show`'s limits line on both backends."""
    st, b = d.call("POST", "/v1/functions/tick/invoke?wait=true",
                   {"limits": {"timeout_ms": 7000, "max_procs": 33}})
    assert st == 200, (st, b)
    run = get(d, b["id"])
    lim = run.get("limits")
    assert isinstance(lim, dict), run
    assert (lim["timeout_ms"], lim["max_procs"], lim["network"]) == (7000, 33, False), lim
    assert set(lim) == {"timeout_ms", "memory_bytes", "max_procs", "max_output_bytes", "network"}
    local = cli("show", b["id"], env={"PYSPRINTER_HOME": str(d.home)})
    remote = cli("show", b["id"], "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    p = same(local, remote)
    assert "limits:    timeout 7.00s, memory " in p.stdout and "processes 33, " in p.stdout, p.stdout
    assert "network off\n" in p.stdout
    st, b2 = d.call("POST", "/v1/runs?wait=true", {"source": TICK, "limits": {"timeout_ms": 9000}})
    assert st == 200 and get(d, b2["id"])["limits"]["timeout_ms"] == 9000, b2
