"""The dashboard (docs/ui.md) as an operator uses it, in Debian's chromium
(tests/e2e/uilib.py) against one real pysprinterd for the module: the runs
table's function and schedule filters asked of the server (a function's
runs older than the tenant's newest 1000 are found), and a function
version's pinned packages as `pysprinter functions show` has them."""
import json
import sqlite3

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon
from uilib import deep_link as go
from uilib import css, drv, index, shown_runs, start_browser, text_of, ui_login, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

TICK = "def tick(tag: str = 'none'):\n    return tag\n"
PINNED = "def pinned():\n    import uipkg\n    return uipkg.V\n"
FILLER = 1100  # ad-hoc runs newer than tick's: more than one list (1000) holds
BUSY = 1200  # runs of function busy, older than all


@pytest.fixture(scope="module")
def d(tmp_path_factory, index):
    """Deployed: tick, busy, pinned v1 (uipkg, its lock) and v2 (no
    requirements, no lock); schedule 'yearly' fires tick (never during the
    tests). Then alice's runs, written to the store as the daemon writes
    them: three of tick (the middle one fired by yearly), older than FILLER
    ad-hoc runs, and BUSY of busy, the oldest."""
    daemon = Daemon(tmp_path_factory.mktemp("uifn"), config_extra=f"index:\n  url: {index.url}\n")
    with daemon.serving(clean_exit=False) as running:
        for name, src, extra in (("tick", TICK, {}), ("busy", TICK, {}),
                                 ("pinned", PINNED, {"requirements": {"uipkg": ">=1"}}),
                                 ("pinned", "def pinned():\n    return 2\n", {})):
            st, b = running.call("POST", "/v1/functions", {"name": name, "source": src, **extra})
            assert st == 201, (st, b)
        st, b = running.call("POST", "/v1/schedules", {"name": "yearly", "function": "tick", "cron": "0 0 1 1 *"})
        assert st == 201, (st, b)
    rows = [(f"rtick{i}", 1_600_000_000_000_000 + i, "tick", 1, "yearly" if i == 1 else None) for i in range(3)]
    rows += [(f"rfill{i:05d}", 1_700_000_000_000_000 + i, None, None, None) for i in range(FILLER)]
    rows += [(f"rbusy{i:05d}", 1_500_000_000_000_000 + i * 1_000_000, "busy", 1, None) for i in range(BUSY)]
    db = sqlite3.connect(daemon.home / "pysprinter.db")
    with db:
        db.executemany("INSERT INTO runs (id, tenant, filename, status, exit_code, created, started, finished, "
                       "attempt, max_attempts, owner_pid, owner_start) "
                       "VALUES (?, 'alice', 'f.py', 'succeeded', 0, ?, 0, 0, 1, 1, 0, 0)",
                       [(r[0], r[1]) for r in rows])
        db.executemany("UPDATE runs SET fn_name = ?, fn_version = ?, schedule = ? WHERE id = ?",
                       [(r[2], r[3], r[4], r[0]) for r in rows])
    db.close()
    with daemon.serving(clean_exit=False) as running:
        yield running


# ---- the runs table's filters -------------------------------------------------------------


def test_a_functions_runs_older_than_the_newest_1000_are_listed(drv, d):
    """#/runs?function=tick filtered the newest 1000 runs in the browser:
    tick's runs, older than those, were not among them ("No run matches the
    filters.") though GET /v1/runs?function=tick lists them."""
    st, b = d.call("GET", "/v1/runs?function=tick")
    assert st == 200 and [r["id"] for r in b["runs"]] == ["rtick2", "rtick1", "rtick0"], (st, b)
    go(drv, d, "#/runs?function=tick")
    wait_for(lambda: shown_runs(drv) == ["rtick2", "rtick1", "rtick0"], what="tick's three runs", timeout=60)
    assert drv.execute_script("return document.getElementById('f-function').value") == "tick"
    assert "3 run(s)" in text_of(drv, ".pager")
    # The column names the deployed function and its version, as ps does.
    assert "tick@1" in text_of(drv, 'tr[data-run="rtick0"]')
    # New runs come live: tick's are listed, another function's are not.
    wait_for(lambda: "●" in text_of(drv, "#live"), what="the live table")
    st, other = d.call("POST", "/v1/functions/pinned/invoke?wait=true", {})
    assert st == 200, other
    st, new = d.call("POST", "/v1/functions/tick/invoke?wait=true", {"args": ["x"]})
    assert st == 200, new
    wait_for(lambda: shown_runs(drv) == [new["id"], "rtick2", "rtick1", "rtick0"],
             what="tick's new run, live: " + new["id"], timeout=60)


def test_the_schedule_filter_is_the_servers_and_kept_in_the_link(drv, d):
    from selenium.webdriver.support.ui import Select
    go(drv, d, "#/runs")
    wait_for(lambda: len(shown_runs(drv)) == 50, what="the first page", timeout=60)
    sel = wait_for(lambda: css(drv, "#f-schedule"), what="a schedule filter")[0]
    wait_for(lambda: "yearly" in [o.get_attribute("value") for o in Select(sel).options],
             what="the schedule among the choices")
    Select(sel).select_by_value("yearly")
    wait_for(lambda: shown_runs(drv) == ["rtick1"], what="yearly's run", timeout=60)
    assert "schedule=yearly" in drv.current_url, drv.current_url
    # The link opened anew shows the same.
    go(drv, d, "#/runs?schedule=yearly")
    wait_for(lambda: shown_runs(drv) == ["rtick1"], what="yearly's run from the link", timeout=60)
    assert drv.execute_script("return document.getElementById('f-schedule').value") == "yearly"
    # Deployed functions are choices of the function filter, runs or not.
    fns = [o.get_attribute("value") for o in Select(css(drv, "#f-function")[0]).options]
    assert {"tick", "pinned"} <= set(fns), fns


# ---- a function version's lock -------------------------------------------------------------


def test_the_function_page_shows_the_versions_pinned_packages(drv, d, cli):
    """GET /v1/functions/NAME has the version's lock (what `functions show`
    prints); the page showed its requirements only, not what they resolved
    to."""
    p = cli("functions", "show", "pinned", "--server", d.url, "--json", env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["lock"] is None  # v2, the latest: no requirements
    st, v1 = d.call("GET", "/v1/functions/pinned?version=1")
    assert st == 200, v1
    want = " ".join(f"{x['name']}=={x['version']}" for x in v1["lock"]["packages"])
    assert "uipkg==1.3" in want and "uidep==2.0" in want, want
    go(drv, d, "#/functions/pinned?version=1")
    got = wait_for(lambda: text_of(drv, "#fn-lock"), what="the version's packages")
    assert " ".join(got.split()) == want, got
    go(drv, d, "#/functions/pinned")
    wait_for(lambda: "(latest)" in text_of(drv, "#fn-version"), what="the latest version")
    assert not css(drv, "#fn-lock")


# ---- long values, the workers' idle times ------------------------------------------------------

LONG_NAME = "n" * 64


def overflow(drv):
    return drv.execute_script("const e = document.documentElement; return e.scrollWidth - e.clientWidth")


def test_long_unbroken_values_wrap_inside_the_page(drv, d):
    """A 64-character name, a long default, docstring or description (one
    word each) and an error message of 3000 x's pushed the function page,
    the functions list and the run page 10 to 20 screens wide: the facts and
    the error line did not wrap."""
    src = ("def " + "g" * 60 + "(a: str = '" + "d" * 300 + "'):\n    '''" + "doc" * 400 + "'''\n"
           "    raise ValueError('x' * 3000)\n")
    st, b = d.call("POST", "/v1/functions", {"name": LONG_NAME, "source": src, "description": "desc" * 200})
    assert st == 201, (st, b)
    st, r = d.call("POST", f"/v1/functions/{LONG_NAME}/invoke?wait=true", {})
    assert st == 200 and r["status"] == "failed", (st, r)
    for route, ready in ((f"#/functions/{LONG_NAME}", "#fn-doc"), ("#/functions", f'a[href="#/functions/{LONG_NAME}"]'),
                         (f"#/runs/{r['id']}", ".error-type")):
        go(drv, d, route)
        wait_for(lambda: css(drv, ready), what=ready)
        assert overflow(drv) <= 0, (route, overflow(drv))


def test_the_workers_idle_times_read_as_durations(drv, d):
    """IDLE S showed the API's float as it came: 33.607076."""
    import re
    st, b = d.call("POST", "/v1/functions/tick/invoke?wait=true", {})
    assert st == 200, b
    go(drv, d, "#/workers")
    cells = wait_for(lambda: drv.execute_script("""
        const out = [];
        for (const t of document.querySelectorAll('#main table')) {
          const col = [...t.querySelectorAll('th')].findIndex((th) => th.innerText.toUpperCase().startsWith('IDLE'));
          if (col < 0) continue;
          for (const tr of t.querySelectorAll('tbody tr')) if (tr.cells.length > col) out.push(tr.cells[col].innerText);
        }
        return out;"""), what="idle times")
    for t in cells:
        assert re.fullmatch(r"\d+ ms|\d+\.\d\d? s|\d+(\.\d)? s|\d+ min \d+ s|0\.\d\d ms|—", t), cells


# ---- a DAG run's page ------------------------------------------------------------------------


def test_a_dags_task_names_show_as_written_and_fit_their_nodes(drv, d):
    """The grid's row headers were upper-cased (tasks "Load" and "load"
    read alike, "LOAD"), and a 60-character task name ran out of its node's
    box on both sides (the box stops at 260 px)."""
    long_task = "t" * 60
    pipe = (f"name: casing\ntasks:\n  Load: {{file: s.py, function: f}}\n"
            f"  {long_task}: {{file: s.py, function: f, args: [\"${{Load}}\"]}}\n")
    st, g = d.call("POST", "/v1/dags", {"pipeline": pipe, "files": {"s.py": "def f(x=1):\n    return x\n"}})
    assert st == 202, (st, g)
    go(drv, d, f"#/dags/{g['id']}")
    wait_for(lambda: css(drv, f'g.node[data-task="{long_task}"]'), what="the graph")
    heads = wait_for(lambda: drv.execute_script(
        "return [...document.querySelectorAll('th[scope=row]')].map((e) => e.innerText)"), what="the grid")
    assert set(heads) == {"Load", long_task}, heads
    fits = drv.execute_script("""
        const g = document.querySelector(arguments[0]);
        const box = g.querySelector('rect').getBBox(), text = g.querySelector('text').getBBox();
        return [text.x >= box.x, text.x + text.width <= box.x + box.width, g.textContent];""",
                              f'g.node[data-task="{long_task}"]')
    assert fits[0] and fits[1], fits
    assert long_task in fits[2]  # the whole name is still there (its title)


# ---- a daemon that went away -------------------------------------------------------------------


def test_a_page_opened_while_the_daemon_is_down_says_so(tmp_path):
    """Each page said the browser's "Failed to fetch" (the login page says
    "The daemon cannot be reached.")."""
    own = Daemon(tmp_path / "d")
    own.start()
    b = start_browser()
    try:
        ui_login(b, own, TOKENS["alice"], "alice")
        b.get(own.url + "/ui/#/runs")
        wait_for(lambda: "●" in text_of(b, "#live"), what="the live table")
        own.stop()
        for route in ("#/functions", "#/dags", "#/workers"):
            b.execute_script("location.hash = arguments[0]", route)
            said = wait_for(lambda: text_of(b, "#main .error"), what=f"{route}: an error")
            assert "cannot be reached" in said and "Failed to fetch" not in said, (route, said)
    finally:
        b.quit()
        if own.proc and own.proc.poll() is None:
            own.stop()


def test_leaving_the_runs_table_as_its_search_is_typed_keeps_the_new_pages_link(drv, d):
    """The search applies 150 ms after the last key; a link followed
    within those (type, Tab, Enter) was shown, but the search's late update
    wrote #/runs?… over its URL: a reload or a copied link gave the runs
    table, and Back skipped a page."""
    go(drv, d, "#/runs")
    wait_for(lambda: "●" in text_of(drv, "#live"), what="the live table")
    drv.execute_script("""
        const t = document.getElementById('f-text');
        t.value = 'tick';
        t.dispatchEvent(new Event('input'));
        location.hash = '#/functions';""")
    wait_for(lambda: css(drv, 'a[href="#/functions/tick"]'), what="the functions")
    import time
    time.sleep(0.5)  # past the search's 150 ms
    assert drv.current_url.endswith("#/functions"), drv.current_url


def test_the_function_page_says_when_it_counts_only_the_newest_1000(drv, d):
    """busy has 1200 runs; its page said "1000 invocation(s)" as if that
    were all of them (the page reads the newest 1000)."""
    go(drv, d, "#/functions/busy")
    said = wait_for(lambda: text_of(drv, "#fn-charts p"), what="the invocations' summary", timeout=60)
    assert said.startswith("the newest 1000 invocations"), said
    go(drv, d, "#/functions/tick")
    said = wait_for(lambda: text_of(drv, "#fn-charts p"), what="the invocations' summary", timeout=60)
    assert said.split()[1] == "invocation(s)," and int(said.split()[0]) < 1000, said


def test_a_filter_nothing_matches_says_so_not_no_runs_yet(drv, d):
    """A status, function or schedule asked of the server that nothing has
    left the list empty, and the table said "No runs yet: submit one…" to
    a tenant with 1100 runs."""
    for route in ("#/runs?status=lost", "#/runs?function=nope", "#/runs?schedule=yearly&status=failed"):
        go(drv, d, route)
        said = wait_for(lambda: text_of(drv, "#runs-body td.empty"), what=f"{route}: the empty table", timeout=60)
        assert said == "No run matches the filters.", (route, said)


def test_a_narrow_window_keeps_every_section_and_log_out_on_screen(drv, d):
    """At 420 px the header ran off the right edge: Workers, who is logged
    in and Log out were past it, and every page scrolled sideways."""
    drv.set_window_size(420, 900)
    try:
        go(drv, d, "#/functions/tick")
        wait_for(lambda: css(drv, "#fn-signature"), what="the function page")
        right = drv.execute_script("""
            const w = document.documentElement.clientWidth;
            return ['#logout', 'a[data-section=workers]', '#who']
              .map((s) => document.querySelector(s).getBoundingClientRect().right <= w);""")
        assert right == [True, True, True], right
        assert overflow(drv) <= 0, overflow(drv)
    finally:
        drv.set_window_size(1366, 900)


def test_a_scheduled_runs_page_links_the_schedules_runs(drv, d):
    """The run page named the schedule that fired it as plain text; it now
    opens the runs that schedule fired (the table's schedule filter)."""
    go(drv, d, "#/runs/rtick1")
    link = wait_for(lambda: drv.execute_script(
        "const a = document.querySelector('#run-schedule a'); return a && [a.innerText, a.getAttribute('href')]"),
        what="the schedule's link")
    assert link == ["yearly", "#/runs?schedule=yearly"], link
    drv.execute_script("document.querySelector('#run-schedule a').click()")
    wait_for(lambda: shown_runs(drv) == ["rtick1"], what="yearly's runs", timeout=60)
