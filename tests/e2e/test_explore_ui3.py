"""The dashboard (docs/ui.md) in Debian's chromium (tests/e2e/uilib.py)
against one real pysprinterd for the module: the runs table shows a run
that came and went while its list was on its way; pages that do not
exist say so and lead back."""
import pytest

from conftest import DAEMON
from daemonlib import Daemon
from uilib import deep_link as go
from uilib import drv, shown_runs, text_of, wait_for  # noqa: F401 (drv: the fixture)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

# Holds every answer to GET /v1/runs (the runs page's list) until the test
# sets window.__release: the list's answer as late as a loaded daemon's,
# with the run's whole life in between.
HOLD_LIST = """
(() => {
  const real = window.fetch.bind(window);
  window.__release = false;
  window.__held = 0;
  window.fetch = async (input, init) => {
    const r = await real(input, init);
    const url = typeof input === 'string' ? input : input.url;
    if (/\\/v1\\/runs\\?/.test(url)) {
      window.__held++;
      while (!window.__release) await new Promise((ok) => setTimeout(ok, 20));
    }
    return r;
  };
})();
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("ui3"))
    with daemon.serving(clean_exit=False) as running:
        yield running


def test_a_run_that_came_and_went_while_the_list_loaded_is_shown(drv, d):
    """The list and the live stream were asked at once, and the list's
    answer replaced what the stream had brought: a run that started and
    ended before the list arrived (but after the list was read) was not
    shown until a reload."""
    st, first = d.run("def main():\n    return 1\n")
    assert st == 200, first
    key = drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_LIST})
    try:
        go(drv, d, "#/runs")
        wait_for(lambda: "●" in text_of(drv, "#live"), what="the live stream")
        wait_for(lambda: drv.execute_script("return window.__held") >= 1, what="the list, held")
        st, r = d.run("def main():\n    return 2\n")
        assert st == 200 and r["status"] == "succeeded", r
        wait_for(lambda: r["id"] in shown_runs(drv), what="the new run, live")
        drv.execute_script("window.__release = true")
        wait_for(lambda: drv.execute_script("return window.__held") >= 1 and first["id"] in shown_runs(drv),
                 what="the list")
        # The list has come: the run that came live is still there, ended.
        wait_for(lambda: shown_runs(drv)[:2] == [r["id"], first["id"]], what="both runs, after the list")
        wait_for(lambda: "succeeded" in text_of(drv, f'tr[data-run="{r["id"]}"]'), what="the run's end")
    finally:
        drv.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", key)


# Holds the page's live streams (EventSource) unopened until the test calls
# window.__openStreams(): the stream as slow to open as a loaded daemon's.
HOLD_STREAM = """
(() => {
  const Real = window.EventSource;
  const held = [];
  class Held {
    constructor(url) { this.url = url; this.ls = []; this.readyState = 0; this.es = null; held.push(this); }
    addEventListener(n, f) { this.ls.push([n, f]); if (this.es) this.es.addEventListener(n, f); }
    set onerror(f) { this.err = f; if (this.es) this.es.onerror = f; }
    get onerror() { return this.err; }
    close() { this.readyState = 2; if (this.es) this.es.close(); }
    open() {
      if (this.readyState === 2) return;
      this.es = new Real(this.url);
      for (const [n, f] of this.ls) this.es.addEventListener(n, f);
      if (this.err) this.es.onerror = this.err;
    }
  }
  Held.CONNECTING = 0; Held.OPEN = 1; Held.CLOSED = 2;
  window.EventSource = Held;
  window.__openStreams = () => held.forEach((x) => x.open());
})();
"""


def test_a_run_that_came_and_went_before_the_stream_opened_is_shown(drv, d):
    """The list answered, then a run started and ended, then the live
    stream opened: nothing brought that run until a reload (the list was
    asked again only at a reconnect)."""
    st, first = d.run("def main():\n    return 4\n")
    assert st == 200, first
    key = drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_STREAM})
    try:
        go(drv, d, "#/runs")
        wait_for(lambda: first["id"] in shown_runs(drv), what="the list")
        st, r = d.run("def main():\n    return 5\n")
        assert st == 200 and r["status"] == "succeeded", r
        drv.execute_script("window.__openStreams()")
        wait_for(lambda: "●" in text_of(drv, "#live"), what="the live stream")
        wait_for(lambda: shown_runs(drv)[:2] == [r["id"], first["id"]], what="the run that came meanwhile")
    finally:
        drv.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", key)


def test_a_page_past_the_last_says_so(drv, d):
    """#/runs?page=40 with one page of runs showed the last page as if it
    were page 40, without a word."""
    st, r = d.run("def main():\n    return 3\n")
    assert st == 200, r
    go(drv, d, "#/runs?page=40")
    wait_for(lambda: r["id"] in shown_runs(drv), what="the last page")
    note = wait_for(lambda: text_of(drv, "#page-missing"), what="the note")
    assert "?page=40 is past the last page" in note and "page 1 of 1" in note, note
    assert drv.execute_script("return document.querySelector('#page-missing a').getAttribute('href')") == "#/runs"
    # Moving on (a filter, a page button) is the user's page: no note.
    drv.find_element("id", "f-text").send_keys(r["id"])
    wait_for(lambda: not text_of(drv, "#page-missing"), what="the note gone")


def test_function_not_found_links_back(drv, d):
    """"Function not found" had no way back (a run's not-found has "All
    runs")."""
    go(drv, d, "#/functions/nosuchfn")
    wait_for(lambda: text_of(drv, "#not-found") == "Function not found", what="the not-found page")
    link = wait_for(lambda: drv.execute_script(
        "const a = document.querySelector('main a[href=\"#/functions\"]'); return a ? a.innerText : ''"),
        what="the link back")
    assert link == "All functions"
    assert "nosuchfn" in text_of(drv, "main")


def test_a_warm_runs_duration_is_its_timings_total(drv, d):
    """A warm invoke starts and ends within the same millisecond of its
    timestamps: the Duration column said "0.00 ms", a precision the
    timestamps do not have, where its timings.total_ms (the run page's
    total) has the time it took."""
    st, b = d.call("POST", "/v1/functions", {"name": "warm", "source": "def warm():\n    return 1\n"})
    assert st == 201, (st, b)
    warm = None
    for _ in range(50):
        st, r = d.call("POST", "/v1/functions/warm/invoke?wait=true", {})
        assert st == 200 and r["status"] == "succeeded", r
        if r["started_at"] == r["finished_at"] and 0 < r["timings"]["total_ms"] < 1:
            warm = r
            break
    assert warm, "no invoke began and ended within one millisecond"
    go(drv, d, "#/runs")
    cell = f'tr[data-run="{warm["id"]}"] td:nth-child(6)'
    want = f'{warm["timings"]["total_ms"]:.2f} ms'
    wait_for(lambda: text_of(drv, cell) == want, what=f"the duration {want}")
