"""The runs table (docs/ui.md) in Debian's chromium (tests/e2e/uilib.py)
and `ps`/`show` (docs/cli.md) against one real pysprinterd for the module:
the page in the URL is the pager's, the table fits a phone, a warm
invoke's duration is its timings' total on both CLI paths, and a search
finds runs older than those loaded (GET /v1/runs?q=, `ps --grep`)."""
import sqlite3

import pytest

from conftest import DAEMON, ROOT, WORKER, Runner
from daemonlib import TOKENS, Daemon
from uilib import deep_link as go, drv, shown_runs, start_browser, text_of, ui_login, wait_for  # noqa: F401 (drv)
from test_cluster import REDIS, nodes, redis  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

WARM = "def warm():\n    return 1\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("ui4"))
    with daemon.serving(clean_exit=False) as running:
        st, b = running.call("POST", "/v1/functions", {"name": "warm", "source": WARM})
        assert st == 201, (st, b)
        yield running


def invoke(d):
    st, r = d.call("POST", "/v1/functions/warm/invoke?wait=true", {})
    assert st == 200 and r["status"] == "succeeded", r
    return r


@pytest.fixture(scope="module")
def two_pages(d):
    """More than one page of runs (50 a page): 60 warm invokes."""
    return [invoke(d) for _ in range(60)]


def click(drv, sel):
    """Clicks what sel finds as the page has it now (the pager is drawn
    anew at each change: an element found before may be gone)."""
    drv.execute_script("document.querySelector(arguments[0]).click()", sel)


def pager(drv):
    return text_of(drv, ".pager span")


def test_the_page_in_the_url_is_the_one_the_pager_shows(drv, d, two_pages):
    """#/runs?page= counted from 0 and the pager from 1: the URL of "page 2
    of 2" said page=1, and a link to "page=2" showed page 3 (or the last).
    The URL counts from 1 now, as the pager does."""
    go(drv, d, "#/runs")
    wait_for(lambda: "page 1 of 2" in pager(drv), what="page 1 of 2")
    assert "page=" not in drv.current_url, drv.current_url
    click(drv, "#older")
    wait_for(lambda: "page 2 of 2" in pager(drv), what="page 2 of 2")
    assert drv.current_url.endswith("#/runs?page=2"), drv.current_url
    go(drv, d, "#/runs?page=2")
    wait_for(lambda: "page 2 of 2" in pager(drv) and len(shown_runs(drv)) >= 10, what="the link's page 2")
    assert not text_of(drv, "#page-missing")
    for first in ("#/runs?page=1", "#/runs?page=0", "#/runs?page=x"):
        go(drv, d, first)
        wait_for(lambda: "page 1 of 2" in pager(drv) and len(shown_runs(drv)) == 50, what=f"{first}: page 1")
        assert not text_of(drv, "#page-missing")
    go(drv, d, "#/runs?page=3")
    note = wait_for(lambda: text_of(drv, "#page-missing"), what="the note")
    assert "?page=3 is past the last page: showing page 2 of 2" in note, note
    # "← Newer" from page 2 is page 1: the URL has no page.
    go(drv, d, "#/runs?page=2")
    wait_for(lambda: "page 2 of 2" in pager(drv), what="page 2")
    click(drv, ".pager button")
    wait_for(lambda: "page 1 of 2" in pager(drv), what="page 1")
    assert "page=" not in drv.current_url, drv.current_url


def test_the_runs_table_fits_a_phone(drv, d, two_pages):
    """At 390 px the runs table (seven columns, an id in monospace, a
    function and its file) pushed the page sideways: the user scrolled
    right to see a run's status."""
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": False})
    try:
        go(drv, d, "#/runs")
        wait_for(lambda: len(shown_runs(drv)) == 50, what="the runs")
        assert drv.execute_script("return innerWidth") == 390
        sizes = drv.execute_script("return [document.scrollingElement.scrollWidth, innerWidth]")
        assert sizes[0] <= sizes[1], sizes
        # What a run is, where it stands, and how it went stay in sight.
        row = f'tr[data-run="{two_pages[-1]["id"]}"]'
        seen = drv.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' td')]"
            ".filter((c) => c.offsetParent !== null).map((c) => c.innerText)", row)
        assert two_pages[-1]["id"] in seen and "succeeded" in seen, seen
        assert any(x.startswith("warm@") for x in seen), seen
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def warm_run(d):
    """An invoke that began and ended within one millisecond of its
    timestamps (a warm instance's)."""
    for _ in range(100):
        r = invoke(d)
        if r["started_at"] == r["finished_at"] and 0 < r["timings"]["total_ms"] < 1:
            return r
    pytest.fail("no invoke began and ended within one millisecond")


def same_on_both(embedded, server, args):
    """`pysprinter ARGS` embedded on the daemon's home and through the
    daemon: the same exit code and bytes (the embedded result). The daemon
    commits its runs' records in groups: its answer (GET /v1/runs settles
    them first) may come before the file has them."""
    def both():
        remote = server(*args)
        local = embedded(*args)
        same = (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
        return local if same else None
    return wait_for(both, what=f"{args}: the same bytes on both paths")


def test_ps_and_show_give_a_warm_invoke_its_timings_total(d, tmp_path):
    """`ps` and `show` printed "0ms" for a warm invoke (its timestamps are
    whole milliseconds, and it began and ended within one), where the
    dashboard shows its timings.total_ms. Both paths print that total now,
    the same bytes."""
    r = warm_run(d)
    want = f'{r["timings"]["total_ms"]:.2f}ms'
    env = d.env()
    env.update(NO_COLOR="1", TZ="UTC", PYSPRINTER_WORKER=str(WORKER))
    embedded = Runner(env, tmp_path)
    server = Runner(dict(env, **d.client_env()), tmp_path)
    for args in (("ps", "-n", "3"), ("show", r["id"])):
        local = same_on_both(embedded, server, args)
        assert local.returncode == 0, local
        if args[0] == "ps":
            row = next(ln for ln in local.stdout.splitlines() if ln.startswith(r["id"]))
            assert f" {want} " in row, (row, want)
        else:
            assert f"duration:  {want}\n" in local.stdout, (local.stdout, want)


NEEDLE = "def Needle_in_hay():\n    return 1\n"


def test_q_lists_the_runs_with_a_text_however_old(d, tmp_path):
    """GET /v1/runs had no text filter: the dashboard searched only the
    runs it had loaded (the newest 1000), and `ps` had no search at all.
    ?q= (and `ps --grep`) lists the newest runs with the text in their id,
    file name, function, deployed function or schedule, ASCII letters in
    either case."""
    st, old = d.run(NEEDLE)
    assert st == 200 and old["status"] == "succeeded", old
    for _ in range(3):
        invoke(d)
    st, b = d.call("GET", "/v1/runs?limit=1&q=needle_IN")
    assert st == 200 and [r["id"] for r in b["runs"]] == [old["id"]], b
    st, b = d.call("GET", f"/v1/runs?limit=5&q={old['id'][3:12].upper()}")
    assert st == 200 and [r["id"] for r in b["runs"]] == [old["id"]], b
    st, b = d.call("GET", "/v1/runs?limit=2&q=warm&status=succeeded")
    assert st == 200 and len(b["runs"]) == 2 and all(r["fn_name"] == "warm" for r in b["runs"]), b
    st, b = d.call("GET", "/v1/runs?q=no-run-has-this")
    assert st == 200 and b["runs"] == [], b
    for bad in ("", "x" * 257):
        st, b = d.call("GET", f"/v1/runs?q={bad}")
        assert st == 400 and "q=" in b["error"]["message"], (st, b)
    import sys
    sys.path.insert(0, str(ROOT / "python"))
    import pysprinter
    c = pysprinter.Client(server=d.url, token=TOKENS["alice"])
    assert [r["id"] for r in c.runs(limit=1, grep="Needle In")] == []
    assert [r["id"] for r in c.runs(limit=1, grep="needle_IN")] == [old["id"]]
    env = d.env()
    env.update(NO_COLOR="1", TZ="UTC")
    embedded = Runner(env, tmp_path)
    server = Runner(dict(env, **d.client_env()), tmp_path)
    for args, code in ((("ps", "-n", "1", "--grep", "NEEDLE"), 0), (("ps", "--grep=" + "x" * 257), 2),
                       (("ps", "--grep", ""), 2)):
        local = same_on_both(embedded, server, args)
        assert local.returncode == code, local
        if code == 0:
            rows = local.stdout.splitlines()[1:]
            assert len(rows) == 1 and rows[0].startswith(old["id"]), local.stdout


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_q_in_a_cluster(nodes, redis):
    """A cluster's list (Redis's, filtered by the gateway) keeps the runs
    with the text, as the store's does."""
    g1 = nodes("g1", "gateway")
    nodes("w1", "worker")
    st, old = g1.run(NEEDLE)
    assert st == 200 and old["status"] == "succeeded", old
    for _ in range(3):
        st, r = g1.run("def straw():\n    return 1\n")
        assert st == 200 and r["status"] == "succeeded", r
    st, b = g1.call("GET", "/v1/runs?limit=1&q=needle_IN")
    assert st == 200 and [r["id"] for r in b["runs"]] == [old["id"]], b
    st, b = g1.call("GET", "/v1/runs?limit=10&q=STRAW")
    assert st == 200 and len(b["runs"]) == 3, b
    st, b = g1.call("GET", "/v1/runs?q=")
    assert st == 400, b


def test_the_dashboards_search_finds_a_run_older_than_those_loaded(tmp_path):
    """The runs page loads the newest 1000 runs, and its search looked only
    among them: a run 1100 runs ago was not found by its function's name
    or its id. The search is the server's now (GET /v1/runs?q=)."""
    import time
    dm = Daemon(tmp_path / "d")
    with dm.serving():
        st, old = dm.run(NEEDLE)
        assert st == 200 and old["status"] == "succeeded", old
    n = 1100
    now = int(time.time() * 1e6)
    db = sqlite3.connect(dm.home / "pysprinter.db")
    with db:
        db.executemany("INSERT INTO runs (id, tenant, filename, function, status, exit_code, created, started, "
                       "finished, attempt, max_attempts, owner_pid, owner_start) "
                       "VALUES (?, 'alice', 'f.py', 'main', 'succeeded', 0, ?, 0, 0, 1, 1, 0, 0)",
                       [(f"rhay{i:05d}", now + 1000 + i) for i in range(n)])
    db.close()
    with dm.serving():
        b = start_browser()
        try:
            ui_login(b, dm, TOKENS["alice"], "alice")
            go(b, dm, "#/runs")
            wait_for(lambda: "of 20" in pager(b) and len(shown_runs(b)) == 50, what="the newest 1000 runs",
                     timeout=60)
            b.find_element("id", "f-text").send_keys("needle_in")
            wait_for(lambda: shown_runs(b) == [old["id"]], what="the old run, by its function", timeout=60)
            assert "page 1 of 1 · 1 run(s)" in pager(b), pager(b)
            assert "q=needle_in" in b.current_url, b.current_url
            # A link to the search (a reload) finds it too, by a part of its id.
            go(b, dm, f"#/runs?q={old['id'][2:10]}")
            wait_for(lambda: shown_runs(b) == [old["id"]], what="the old run, by its id", timeout=60)
            # Emptied, the search lists the newest runs again.
            b.find_element("id", "f-text").clear()
            b.execute_script("document.getElementById('f-text').dispatchEvent(new Event('input'))")
            wait_for(lambda: "of 20" in pager(b) and shown_runs(b)[0] == f"rhay{n - 1:05d}", what="the newest runs",
                     timeout=60)
        finally:
            b.quit()
