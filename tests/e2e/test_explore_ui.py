"""The dashboard (docs/ui.md) as an operator uses it, in Debian's chromium
(tests/e2e/uilib.py) against one real pysprinterd for the module: what a
run page, the runs table, a DAG page show, against what the API and the
CLI say."""
import json
import subprocess
import textwrap

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon
# go opens a route as a fresh page load (get, then reload: a get that only
# moves the hash of a dashboard page already open does not load it anew).
from uilib import css, deep_link as go, drv, text_of, wait_for  # noqa: F401 (drv: the fixture)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    # One run of the tenant at a time: a second one waits in the queue.
    daemon = Daemon(tmp_path_factory.mktemp("uix"), config_extra="server:\n  max_concurrent_per_tenant: 1\n")
    with daemon.serving(clean_exit=False) as running:
        yield running


def ended(drv, d, run_id):
    go(drv, d, f"#/runs/{run_id}")
    wait_for(lambda: "ended" in text_of(drv, "#log-state"), timeout=60, what="the end of the log")


def run(d, source, **fields):
    st, r = d.run(textwrap.dedent(source), **fields)
    assert st == 200, r
    return r


# ---- a run's error --------------------------------------------------------------------


def test_a_failed_runs_error_names_its_type_once(drv, d):
    """The API's error.message already starts with the type ("ValueError:
    boom"), and the page put the type before it again: "ValueError:
    ValueError: boom". A SyntaxError's message holds the line and a caret
    under the column: they were run together on one line."""
    r = run(d, "def f():\n    raise ValueError('boom <b>x</b>')\n")
    assert r["error"]["message"] == "ValueError: boom <b>x</b>", r
    ended(drv, d, r["id"])
    assert text_of(drv, ".error-type") == "ValueError: boom <b>x</b>"
    bad = run(d, "def f(:\n    pass\n")
    assert bad["status"] == "invalid", bad
    ended(drv, d, bad["id"])
    # The message names its type already (after the place): shown as it is,
    # its lines kept.
    assert text_of(drv, ".error-type") == bad["error"]["message"], bad
    assert "    def f(:\n          ^" in text_of(drv, ".error-type")


# ---- the runs table ---------------------------------------------------------------------


def test_the_function_filter_stays_as_the_user_set_it(drv, d):
    """Opened at #/runs?function=NAME, the table kept that function as a
    default for ever: after the user picked "any function" (the URL said
    so too), the next run of a function new to the list put the filter
    back to NAME and hid every other run."""
    from selenium.webdriver.support.ui import Select

    # The filter is the deployed function (the run's fn_name), as `ps
    # --function` has it.
    def invoked(name, src):
        st, b = d.call("POST", "/v1/functions", {"name": name, "source": src})
        assert st == 201, (st, b)
        st, b = d.call("POST", f"/v1/functions/{name}/invoke?wait=true", {})
        assert st == 200, (st, b)
        return b
    first = invoked("alpha", "def alpha():\n    return 1\n")
    invoked("beta", "def beta():\n    return 2\n")
    go(drv, d, "#/runs?function=alpha")
    wait_for(lambda: "●" in text_of(drv, "#live"), what="the live table")
    wait_for(lambda: [r.get_attribute("data-run") for r in css(drv, "tr[data-run]")] == [first["id"]],
             what="alpha's run alone")
    Select(css(drv, "#f-function")[0]).select_by_value("")
    wait_for(lambda: len(css(drv, "tr[data-run]")) >= 2, what="every run")
    new = invoked("gamma", "def gamma():\n    return 3\n")
    wait_for(lambda: css(drv, f'tr[data-run="{new["id"]}"]'), what="gamma's run, live")
    assert drv.execute_script("return document.getElementById('f-function').value") == ""
    assert css(drv, f'tr[data-run="{first["id"]}"]')
    assert "function=" not in drv.current_url


# ---- a run's page -----------------------------------------------------------------------

WAITS = """
import os, time
def waits(flag: str):
    print("started", flush=True)
    while not os.path.exists(flag):
        time.sleep(0.05)
    return "done"
"""


def test_a_queued_runs_page_shows_it_running_once_it_starts(drv, d, tmp_path):
    """A run opened while it waited in the queue kept saying "queued",
    attempt 0, never started, while its log showed it printing: the page
    only learned its status at its end."""
    blocker_flag, flag = tmp_path / "blocker", tmp_path / "flag"
    st, blocker = d.run(WAITS, wait=False, kwargs={"flag": str(blocker_flag)})
    assert st == 202, blocker
    d.wait_status(blocker["id"], ["running"])
    st, queued = d.run(WAITS, wait=False, kwargs={"flag": str(flag)})
    assert st == 202, queued
    assert d.call("GET", f"/v1/runs/{queued['id']}")[1]["status"] == "queued"
    try:
        go(drv, d, f"#/runs/{queued['id']}")
        wait_for(lambda: text_of(drv, "#run-head .badge") == "queued", what="the queued run's page")
        blocker_flag.touch()
        wait_for(lambda: "started" in text_of(drv, "#log"), timeout=60, what="its output")
        assert d.call("GET", f"/v1/runs/{queued['id']}")[1]["status"] == "running"
        wait_for(lambda: text_of(drv, "#run-head .badge") == "running", what="'running' on its page")
        assert "1 of" in text_of(drv, "#run-head")
        assert css(drv, "#cancel")
    finally:
        blocker_flag.touch()
        flag.touch()
    wait_for(lambda: text_of(drv, "#run-head .badge") == "succeeded", timeout=60, what="its end")


BIG = """
def big(x):
    return {"n": 2**63 - 1, "m": 2**53 + 1, "f": 1.0, "x": x}
"""


def test_a_result_shows_the_numbers_the_cli_prints(drv, d, tmp_path):
    """The page parsed the run with JSON.parse and showed numbers as
    JavaScript's doubles: 2**53 + 1 read 9007199254740992, 2**63 - 1
    9223372036854775807 as 9223372036854776000, and 1.0 as 1, where the API
    and `pysprinter run` say 9007199254740993, 9223372036854775807 and 1.0.
    Same for an argument, and for a DAG task's result in its panel."""
    src = tmp_path / "big.py"
    src.write_text(BIG)
    cli = subprocess.run([str(CLI), "run", "--server", d.url, "--token", TOKENS["alice"], "--json", str(src),
                          "--json-args", "[9007199254740993]"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == \
        '{"n":9223372036854775807,"m":9007199254740993,"f":1.0,"x":9007199254740993}', cli.stdout
    r = run(d, BIG, args=[9007199254740993])
    ended(drv, d, r["id"])
    shown = text_of(drv, "#run-details")
    for want in ('"n": 9223372036854775807', '"m": 9007199254740993', '"f": 1.0', '"x": 9007199254740993'):
        assert want in shown, shown
    assert "9007199254740993" in text_of(drv, "#run-details section")  # the argument
    pipe = "tasks:\n  t: {file: big.py, function: big, args: [9007199254740993]}\n"
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": pipe, "files": {"big.py": BIG}})
    assert st == 200 and g["status"] == "succeeded", g
    go(drv, d, f"#/dags/{g['id']}?task=t")
    wait_for(lambda: '"m": 9007199254740993' in text_of(drv, "#task-panel"), what="the task's exact result")
    assert '"f": 1.0' in text_of(drv, "#task-panel")


def test_a_long_log_opens_and_shows_its_end(drv, d):
    """A run that printed a long log froze its page: each piece of output
    was added to the page and scrolled into view on its own, at a cost
    growing with the page (20 000 lines took 10 s, the 200 000 of a run
    stopped at its 10 MiB output limit some 15 minutes). The page now
    draws the output in batches and keeps its last 5000 lines, saying how
    many earlier ones only the download has."""
    r = run(d, "def big(n: int = 100000):\n    for i in range(n):\n        print('line', i, 'x' * 40)\n")
    assert r["status"] == "succeeded", r
    go(drv, d, f"#/runs/{r['id']}")
    wait_for(lambda: "ended" in text_of(drv, "#log-state"), timeout=90, what="the whole log")
    # The last line (after its time), whatever pieces it came in.
    last = drv.execute_script("return document.getElementById('log').textContent").rstrip("\n").rsplit("\n", 1)[-1]
    st, _, raw = d.request("GET", f"/v1/runs/{r['id']}/logs")
    assert st == 200
    want_last = raw.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
    assert last.rstrip("\n").endswith(want_last), (last, want_last)
    note = text_of(drv, "#log-trimmed")
    assert note.startswith("95000 earlier lines") and "Download" in note, note
    assert drv.execute_script("return document.querySelectorAll('#log .ts').length") == 5000


# ---- DAG runs and functions ---------------------------------------------------------------

PIPE = """
tasks:
  ok: {file: steps.py, function: ok}
  bad: {file: steps.py, function: bad, args: ["${ok}"]}
  after: {file: steps.py, function: ok, args: ["${bad}"]}
"""
STEPS = """
def ok(*a):
    return 1
def bad(x):
    raise RuntimeError("no")
"""


def test_the_dag_grid_tells_each_task_state_apart(drv, d):
    """The tasks × runs grid wrote a state's first letter: a succeeded
    task and a skipped one both read "s" (and cached and cancelled both
    "c"), so the grid could not tell a pipeline that ran from one that
    stopped. Each state has its own mark, and a legend says which."""
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": {"steps.py": STEPS}})
    assert st == 200 and g["status"] == "failed", g
    assert {t["name"]: t["state"] for t in g["tasks"]} == {"ok": "succeeded", "bad": "failed", "after": "skipped"}
    go(drv, d, f"#/dags/{g['id']}")
    wait_for(lambda: len(css(drv, "td.cell")) >= 3, what="the grid")
    marks = {}
    for row in css(drv, "#dag-grid tbody tr"):
        name = row.find_element("css selector", "th").get_attribute("textContent")
        marks[name] = row.find_elements("css selector", "td.cell")[0].text
    assert len(set(marks.values())) == 3, marks
    legend = text_of(drv, "#dag-grid-legend")
    for state in ("succeeded", "failed", "skipped", "cached", "cancelled"):
        assert state in legend, legend
    assert f"{marks['after']} skipped" in legend and f"{marks['ok']} succeeded" in legend, (marks, legend)


def test_the_invoke_form_sends_the_numbers_typed(drv, d):
    """The invoke form read its JSON with JSON.parse and sent it again:
    9007199254740993 typed went as 9007199254740992, 1.0 as 1 (a float
    parameter without annotation got an int). The text typed is sent as it
    is (once it parses)."""
    st, fn = d.call("POST", "/v1/functions", {"name": "echo", "source": "def echo(a, b):\n    return [a, b]\n"})
    assert st in (200, 201), fn
    go(drv, d, "#/functions/echo")
    box = wait_for(lambda: css(drv, "#inv-args"), what="the invoke form")[0]
    box.clear()
    box.send_keys("[9007199254740993, 1.0]")
    css(drv, "form.invoke button")[0].click()
    wait_for(lambda: "#/runs/" in drv.current_url, what="the new run's page")
    run_id = drv.current_url.split("#/runs/")[1]
    st, _, raw = d.request("GET", f"/v1/runs/{run_id}?wait=true")
    assert st == 200, raw
    assert b'"args":[9007199254740993,1.0]' in raw and b'"result":[9007199254740993,1.0]' in raw, raw


def test_a_run_that_returned_none_shows_its_result(drv, d):
    """A succeeded run whose function returned None (`run` prints null)
    had no Result at all on its page, as if it had none yet."""
    r = run(d, "def nothing():\n    return None\n")
    assert r["status"] == "succeeded" and r["result"] is None, r
    ended(drv, d, r["id"])
    assert "Result\nnull" in text_of(drv, "#run-details"), text_of(drv, "#run-details")


def test_the_dag_list_shows_no_empty_task_column(drv, d):
    """The DAG runs list had a Tasks column filled from counts the list
    (GET /v1/dags) never carries: it read "—" for every DAG run, as if none
    had a task."""
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": {"steps.py": STEPS}})
    assert st == 200, g
    st, listed = d.call("GET", "/v1/dags?limit=1")
    assert st == 200 and listed["dags"][0]["id"] == g["id"] and "counts" not in listed["dags"][0], listed
    go(drv, d, "#/dags")
    row = wait_for(lambda: css(drv, f'a[href="#/dags/{g["id"]}"]'), what="the DAG run's row")[0]
    heads = [th.get_attribute("textContent") for th in css(drv, "main thead th")]
    cells = [td.get_attribute("textContent") for td in row.find_element("xpath", "ancestor::tr").find_elements(
        "css selector", "td")]
    assert len(heads) == len(cells), (heads, cells)
    shown = dict(zip(heads, cells))
    assert shown.get("Tasks", "x") != "—", shown
    assert shown["Status"] == "failed", shown


def test_the_runs_table_keeps_the_keyboard_focus_while_runs_tick(drv, d, tmp_path):
    """While a run ran, the runs table was drawn anew every second (its
    duration ticks) and at every live change: a keyboard user's focus on a
    run's link fell back to the page's start each time, so Tab and Enter
    could not reach a run while any was running."""
    flag = tmp_path / "flag"
    st, r = d.run(WAITS, wait=False, kwargs={"flag": str(flag)})
    assert st == 202, r
    try:
        d.wait_status(r["id"], ["running"])
        go(drv, d, "#/runs")
        wait_for(lambda: css(drv, f'tr[data-run="{r["id"]}"] a'), what="the running run's row")
        drv.execute_script("document.querySelector(arguments[0]).focus()", f'tr[data-run="{r["id"]}"] a')
        before = text_of(drv, f'tr[data-run="{r["id"]}"] td.num')
        wait_for(lambda: text_of(drv, f'tr[data-run="{r["id"]}"] td.num') != before, what="the duration ticking")
        assert drv.execute_script("return document.activeElement.getAttribute('href')") == f"#/runs/{r['id']}"
    finally:
        flag.touch()
    d.wait_status(r["id"], ["succeeded"])
    wait_for(lambda: text_of(drv, f'tr[data-run="{r["id"]}"] .badge') == "succeeded", what="its end, live")
    assert drv.execute_script("return document.activeElement.getAttribute('href')") == f"#/runs/{r['id']}"


def test_the_dag_list_keeps_the_keyboard_focus_across_its_refresh(drv, d):
    """The DAG runs list is drawn anew every 2 s: a keyboard user's focus
    on a DAG run's link fell to the page's start at each refresh."""
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": {"steps.py": STEPS}})
    assert st == 200, g
    go(drv, d, "#/dags")
    sel = f'a[href="#/dags/{g["id"]}"]'
    wait_for(lambda: css(drv, sel), what="the DAG run's row")
    drv.execute_script("window.firstTable = document.querySelector('main table'); "
                       "document.querySelector(arguments[0]).focus()", sel)
    wait_for(lambda: drv.execute_script("return document.querySelector('main table') !== window.firstTable"),
             what="the list's refresh")
    assert drv.execute_script("return document.activeElement.getAttribute('href')") == f"#/dags/{g['id']}"


def test_a_link_with_a_cut_escape_says_not_found(drv, d):
    """A link whose id ends in a cut escape (%E0%A4%A: a link pasted short)
    threw URIError out of the router: an empty page, whether opened or
    reached by a hash change. It is a page that is not there."""
    go(drv, d, "#/runs")
    wait_for(lambda: "●" in text_of(drv, "#live"), what="the runs page")
    drv.execute_script("location.hash = '#/functions/%E0%A4%A'")
    wait_for(lambda: text_of(drv, "#not-found") == "Not found", what="the not-found page")
    assert "#/runs" in [a.get_attribute("href") for a in css(drv, "main a")][0]
    go(drv, d, "#/runs/%E0%A4%A")
    wait_for(lambda: text_of(drv, "#not-found") == "Not found", what="the not-found page, opened")


def test_each_view_has_its_own_title(drv, d):
    """Every page was titled "pysprinter": a tab, the back button's list of
    pages and a bookmark could not tell a run from the runs list. Each view
    names itself, and back and forward bring its title back with it."""
    r = run(d, "def titled():\n    return 1\n")
    go(drv, d, "#/runs")
    wait_for(lambda: drv.title == "Runs · pysprinter", what="the runs page's title")
    drv.execute_script("location.hash = arguments[0]", f"#/runs/{r['id']}")
    wait_for(lambda: drv.title == f"Run {r['id']} · pysprinter", what="the run page's title")
    drv.execute_script("location.hash = '#/functions/echo'")
    wait_for(lambda: drv.title == "Function echo · pysprinter", what="the function page's title")
    drv.back()
    wait_for(lambda: drv.title == f"Run {r['id']} · pysprinter", what="the run page's title, back")
    wait_for(lambda: "ended" in text_of(drv, "#log-state"), what="the run page itself")
    drv.forward()
    wait_for(lambda: drv.title == "Function echo · pysprinter", what="forward")


def test_a_result_with_a_key_named_proto_shows_it(drv, d):
    """A result dict whose key is "__proto__" (a user's data can hold any
    key): the page's exact JSON reader assigned it as the object's
    prototype, so the key vanished from the result shown."""
    r = run(d, 'def protoish():\n    return {"__proto__": {"polluted": 1}, "a": 2}\n')
    ended(drv, d, r["id"])
    shown = text_of(drv, "#run-details")
    assert '"__proto__": {' in shown and '"polluted": 1' in shown and '"a": 2' in shown, shown
    assert drv.execute_script("return ({}).polluted === undefined")
