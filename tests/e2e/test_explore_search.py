"""The runs' search (GET /v1/runs?q=, served by a trigram index where it
can: docs/internals/run-search.md) and the dashboard on a phone
(docs/ui.md), in Debian's chromium (tests/e2e/uilib.py), against one real
pysprinterd for the module."""
from urllib.parse import quote

import pytest

from conftest import DAEMON
from daemonlib import Daemon
from uilib import deep_link as go, drv, text_of, wait_for  # noqa: F401 (drv)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("search"))
    with daemon.serving(clean_exit=False) as running:
        yield running


def at_width(drv, width, height=844):
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


@pytest.fixture
def phone(drv):
    at_width(drv, 390)
    try:
        yield drv
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


NAV_STATE = """const n = document.querySelector('header.top nav');
  const cs = getComputedStyle(n);
  const mask = cs.maskImage || cs.webkitMaskImage || 'none';
  return {over: n.scrollWidth - n.clientWidth, left: n.scrollLeft, mask: mask,
          right: n.classList.contains('more-right'), leftHint: n.classList.contains('more-left')}"""


def nav_state(drv):
    return drv.execute_script(NAV_STATE)


def sideways(drv):
    return drv.execute_script("return [document.scrollingElement.scrollWidth, innerWidth]")


@pytest.mark.parametrize("width", [390, 360, 320])
def test_the_login_box_leaves_a_margin_on_a_phone(drv, d, width):
    """At 390 px the login box was 380 px wide: 5 px from each edge of the
    screen, and past both edges (the page scrolled sideways) on a 320 px
    phone. It keeps at least 12 px each side now, and the page fits."""
    at_width(drv, width)
    try:
        drv.get(d.url + "/ui/login")
        wait_for(lambda: drv.find_element("id", "token"), what="the login form")
        box = drv.execute_script("const r = document.querySelector('body.login main').getBoundingClientRect();"
                                 "return [r.left, innerWidth - r.right]")
        assert min(box) >= 12, (width, box)
        assert sideways(drv)[0] <= sideways(drv)[1], (width, sideways(drv))
        field = drv.execute_script("const r = document.getElementById('token').getBoundingClientRect();"
                                   "return [r.left, innerWidth - r.right]")
        assert min(field) >= 12, (width, field)
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_phone_nav_shows_there_is_more_of_it(drv, d):
    """The phone's nav is one row that scrolls sideways with its scrollbar
    hidden: where its sections did not fit (a 360 or 320 px phone), the
    last ones were cut at the edge with nothing saying the row went on.
    Its cut edge fades now (a mask, on the side there is more), the fade
    leaves the edge the row is scrolled to, and the page's own section is
    scrolled into the row. At 390 px every section fits: no fade."""
    try:
        at_width(drv, 390)
        go(drv, d, "#/runs")
        wait_for(lambda: "Runs" in text_of(drv, "main"), what="the runs")
        st = nav_state(drv)
        assert st["over"] <= 0 and st["mask"] == "none" and not st["right"], st
        assert sideways(drv)[0] <= sideways(drv)[1], sideways(drv)
        for width in (360, 320):
            at_width(drv, width)
            go(drv, d, "#/runs")
            wait_for(lambda: "Runs" in text_of(drv, "main"), what="the runs")
            st = wait_for(lambda: (lambda s: s if s["right"] else None)(nav_state(drv)), what=f"{width}: the hint")
            assert st["over"] > 0 and st["left"] == 0 and not st["leftHint"], (width, st)
            assert st["mask"] != "none" and "gradient" in st["mask"], (width, st)
            assert sideways(drv)[0] <= sideways(drv)[1], (width, sideways(drv))
            # Swiped to its end: the hint moves to the start.
            drv.execute_script("const n = document.querySelector('header.top nav'); n.scrollLeft = n.scrollWidth")
            st = wait_for(lambda: (lambda s: s if s["leftHint"] and not s["right"] else None)(nav_state(drv)),
                          what=f"{width}: the hint at the start")
            assert "gradient" in st["mask"], st
            # A deep link to the last section shows its link in the row.
            go(drv, d, "#/workers")
            wait_for(lambda: "Workers" in text_of(drv, "main"), what="the workers page")
            seen = wait_for(lambda: drv.execute_script(
                "const n = document.querySelector('header.top nav').getBoundingClientRect();"
                "const a = document.querySelector('header.top nav a[aria-current]').getBoundingClientRect();"
                "return a.left >= n.left - 0.5 && a.right <= n.right + 0.5"), what=f"{width}: Workers in view")
            assert seen
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


NAMES = ["Load_Orders", "été", "straße", "naïve_bayes", "tick", "TiCkEr", "handler_7", "résumé"]
TEXTS = ["a", "é", "ti", "tic", "TICK", "ticker", "load_", "LOAD_ORDERS", "ORDERS", "straße", "STRASSE", "été",
         "ÉTÉ", "Été", "naïve", "NAÏVE", "résumé", "RÉSUMÉ", "sum", "_7", "handler_", "nothing-has-this", ".py",
         "%", "_", "\"", "deployed_fn", "DEPLOYED", "ed_f"]


def expected(runs, text, limit):
    def has(r):
        low = text.encode().lower()
        return any(v is not None and low in v.encode().lower()
                   for v in (r["id"], r.get("filename"), r.get("function"), r.get("fn_name"), r.get("schedule")))
    return [r["id"] for r in runs if has(r)][:limit]


def test_q_answers_as_the_walk_did(d):
    """GET /v1/runs?q= is served by a trigram index (store-search.c) where
    it can: the answers are those of the walk over every run, for texts of
    any length (shorter than 3 characters: the walk), in either case, not
    ASCII, with quotes or wildcards, one run's id, or nothing; and again
    after a run is added to those indexed (the store's unit test
    test_run_search_index_answers_as_the_walk covers a partly built index,
    deletes, changes and a VACUUM)."""
    ids = []
    for i, name in enumerate(NAMES):
        st, r = d.run(f"def {name}(x=1):\n    return x\n", filename=f"{name}_{i}.py")
        assert st == 200 and r["status"] == "succeeded", r
        ids.append(r["id"])
    st, b = d.call("POST", "/v1/functions", {"name": "deployed_fn", "source": "def f():\n    return 1\n"})
    assert st == 201, (st, b)
    for rnd in range(2):
        st, b = d.call("POST", "/v1/functions/deployed_fn/invoke?wait=true", {})
        assert st == 200 and b["status"] == "succeeded", b
        st, b = d.call("GET", "/v1/runs?limit=10000")
        assert st == 200
        runs = b["runs"]
        assert len(runs) == len(NAMES) + 1 + rnd, [r["id"] for r in runs]
        texts = TEXTS + [ids[3][2:9].upper(), ids[5], runs[0]["id"][-4:]]
        for text in texts:
            for limit in (2, 1000):
                st, got = d.call("GET", f"/v1/runs?limit={limit}&q={quote(text)}")
                assert st == 200, (text, got)
                assert [r["id"] for r in got["runs"]] == expected(runs, text, limit), (rnd, text, limit)


@pytest.mark.parametrize("route,heading,back", [
    ("#/runs/nope-no-such-run", "Run not found", "#/runs"),
    ("#/functions/no_such_fn", "Function not found", "#/functions"),
    ("#/dags/nope-no-such-dag", "DAG run not found", "#/dags"),
    ("#/data/no-such-dataset", "Dataset not found", "#/data"),
])
def test_a_link_to_nothing_says_what_and_the_way_back(drv, d, route, heading, back):
    """A run's and a function's not-found page named what was asked for
    and linked their list; a DAG run's and a dataset's said only "DAG run
    not found" / "Dataset not found", with no way back but the nav. Each
    says what was asked for and links its list now, and the tab (and the
    history's entry) reads "Not found", not the title of a thing that is
    not there ("DAG run nope-no-such-dag · pysprinter")."""
    go(drv, d, route)
    wait_for(lambda: drv.find_elements("id", "not-found"), what=f"{route}: not found")
    assert text_of(drv, "#not-found") == heading
    name = route.split("/")[-1]
    assert name in text_of(drv, "main"), text_of(drv, "main")
    links = drv.execute_script("return [...document.querySelectorAll('main a')].map((a) => a.getAttribute('href'))")
    assert back in links, (route, links)
    assert drv.title == "Not found · pysprinter", drv.title


def test_a_link_with_several_states_or_a_wrong_one_is_not_every_run(drv, d):
    """The API and `ps --status` take several states (`failed,killed`),
    and a link may carry them: `#/runs?status=failed,killed` showed every
    run (succeeded ones too) under "any status", the filter dropped
    without a word, and so did a state that is none (`status=bogus`).
    The first lists the runs in those states, its choice shown in the
    status filter; the second says the API's 400, listing nothing."""
    st, bad = d.run("def boom():\n    raise ValueError('no')\n")
    assert st == 200 and bad["status"] == "failed", bad
    st, good = d.run("def fine():\n    return 1\n")
    assert st == 200 and good["status"] == "succeeded", good
    go(drv, d, "#/runs?status=failed,killed")
    shown = wait_for(lambda: drv.execute_script(
        "return [...document.querySelectorAll('#runs-body tr[data-run]')].map((r) => r.dataset.run)"),
        what="the failed runs")
    assert bad["id"] in shown and good["id"] not in shown, shown
    st, b = d.call("GET", "/v1/runs?status=failed,killed&limit=1000")
    assert sorted(shown) == sorted(r["id"] for r in b["runs"]), (shown, b)
    assert drv.execute_script("return document.getElementById('f-status').value") == "failed,killed"
    assert "failed,killed" in drv.current_url
    go(drv, d, "#/runs?status=bogus")
    msg = wait_for(lambda: text_of(drv, "#runs-body [role=alert]") or text_of(drv, "main [role=alert]"),
                   what="the API's message")
    assert "status" in msg and "bogus" in msg, msg
    assert drv.execute_script("return document.querySelectorAll('#runs-body tr[data-run]').length") == 0


def test_the_workers_idle_column_names_no_unit(drv, d):
    """The idle times read as durations in their own units ("16.9 s",
    "33 ms", "1 min 2 s"), under a header that said seconds: "Idle s"."""
    go(drv, d, "#/workers")
    heads = wait_for(lambda: drv.execute_script(
        "return [...document.querySelectorAll('#main th')].map((th) => th.textContent)"
        ".filter((t) => t.startsWith('Idle'))"), what="the idle columns")
    assert heads == ["Idle", "Idle"], heads
