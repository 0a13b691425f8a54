"""The runs table (docs/ui.md) in Debian's chromium (tests/e2e/uilib.py)
and `ps`/`show` (docs/cli.md) against one real pysprinterd for the module:
the page in the URL is the pager's, the table fits a phone, a warm
invoke's duration is its timings' total on both CLI paths."""
import pytest

from conftest import DAEMON, WORKER, Runner
from daemonlib import TOKENS, Daemon
from uilib import start_browser, ui_login, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

WARM = "def warm():\n    return 1\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("ui4"))
    with daemon.serving(clean_exit=False) as running:
        st, b = running.call("POST", "/v1/functions", {"name": "warm", "source": WARM})
        assert st == 201, (st, b)
        yield running


@pytest.fixture(scope="module")
def drv(d):
    b = start_browser()
    try:
        ui_login(b, d, TOKENS["alice"], "alice")
        yield b
    finally:
        b.quit()


def invoke(d):
    st, r = d.call("POST", "/v1/functions/warm/invoke?wait=true", {})
    assert st == 200 and r["status"] == "succeeded", r
    return r


@pytest.fixture(scope="module")
def two_pages(d):
    """More than one page of runs (50 a page): 60 warm invokes."""
    return [invoke(d) for _ in range(60)]


def go(drv, d, route):
    drv.get(d.url + "/ui/" + route)
    drv.refresh()


def text_of(drv, sel):
    return drv.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", sel)


def shown_runs(drv):
    return drv.execute_script("return [...document.querySelectorAll('#runs-body tr[data-run]')]"
                              ".map((r) => r.dataset.run)")


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
    server = Runner(dict(env, PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"]), tmp_path)
    for args in (("ps", "-n", "3"), ("show", r["id"])):
        # The daemon commits its runs' records in groups: its answer
        # (GET /v1/runs settles them first) comes before the file's.
        def both():
            remote = server(*args)
            local = embedded(*args)
            return (local, remote) if (remote.returncode, remote.stdout, remote.stderr) == \
                (local.returncode, local.stdout, local.stderr) else None
        local, remote = wait_for(both, what=f"{args[0]}: the same bytes on both paths")
        assert local.returncode == 0, local
        if args[0] == "ps":
            row = next(ln for ln in local.stdout.splitlines() if ln.startswith(r["id"]))
            assert f" {want} " in row, (row, want)
        else:
            assert f"duration:  {want}\n" in local.stdout, (local.stdout, want)
