"""The dashboard (issue 14, docs/ui.md) in a real browser against a real
pysprinterd: Debian's chromium driven by chromedriver (python3-selenium),
both installed by tools/install-deps.sh — nothing downloads a browser. A
machine without them fails these tests: CI installs them, so a missing
browser is a broken setup, not a reason to skip.

Screenshots of every page go to $PYSPRINTER_BUILD/ui-screenshots/."""
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, CLI, DAEMON
from daemonlib import TOKENS, Daemon
from uilib import index, start_browser, wait_for  # noqa: F401 (index: the fixture)

SHOTS = BUILD / "ui-screenshots"

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


@pytest.fixture(scope="module")
def d(tmp_path_factory, index):
    daemon = Daemon(tmp_path_factory.mktemp("uid"), config_extra=f"index:\n  url: {index.url}\n")
    with daemon.serving(clean_exit=False) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    drv = start_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv, allow=()):
    """SEVERE browser log entries since the last call (the log is drained)."""
    out = []
    for e in drv.get_log("browser"):
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow):
            out.append(e["message"])
    return out


def login(drv, d, tenant, who=None):
    """Logs in with TOKENS[tenant]; waits for the header to name who (by
    default the token's key, which is its tenant)."""
    who = who or tenant
    drv.get(d.url + "/ui/login")
    from selenium.webdriver.common.by import By
    tok = drv.find_element(By.ID, "token")
    tok.clear()
    tok.send_keys(TOKENS[tenant])
    drv.find_element(By.ID, "login-submit").click()
    wait_for(lambda: drv.find_element(By.ID, "who").text.startswith(who), what=f"logged in as {who}")


def go(drv, d, route):
    if drv.current_url.startswith(d.url + "/ui/"):
        drv.execute_script("location.hash = arguments[0]", route)
    else:
        drv.get(d.url + "/ui/" + route)


def shot(drv, name):
    drv.save_screenshot(str(SHOTS / f"{name}.png"))


def by_css(drv, css):
    from selenium.webdriver.common.by import By
    return drv.find_elements(By.CSS_SELECTOR, css)


def session_cookie(drv):
    for c in drv.get_cookies():
        if c["name"] == "pysprinter_session":
            return c
    return None


@pytest.fixture(scope="module")
def alice(browser, d):
    login(browser, d, "alice")
    console_errors(browser)
    return browser


TICKER = """
import sys, time
def tick(n: int = 12, delay: float = 0.25):
    for i in range(n):
        print(f"tick {i}", flush=True)
        time.sleep(delay)
    print("to stderr", file=sys.stderr, flush=True)
    return {"ticks": n}
"""


def test_runs_table_shows_an_api_run_within_a_second(alice, d):
    go(alice, d, "#/runs")
    wait_for(lambda: "live" in by_css(alice, "#live")[0].text, what="the events stream")
    st, run = d.run(TICKER, wait=False, kwargs={"n": 8})
    t0 = time.time()
    assert st == 202, run
    row = wait_for(lambda: by_css(alice, f'tr[data-run="{run["id"]}"]'), timeout=1.0,
                   what="the new run's row", interval=0.02)
    seen_after = time.time() - t0
    assert seen_after <= 1.0
    # The status changes in place, without a reload.
    wait_for(lambda: "succeeded" in by_css(alice, f'tr[data-run="{run["id"]}"] .badge')[0].text, timeout=60,
             what="succeeded in the table")
    assert row
    shot(alice, "runs")
    assert console_errors(alice) == []


def test_logs_stream_while_the_run_prints(alice, d):
    st, run = d.run(TICKER, wait=False, kwargs={"n": 16, "delay": 0.3})
    assert st == 202
    go(alice, d, f"#/runs/{run['id']}")
    wait_for(lambda: "tick 1" in by_css(alice, "#log")[0].text, timeout=30, what="tick 1 in the log")
    # Seen while it still runs: streamed, not fetched at the end.
    st, now = d.call("GET", f"/v1/runs/{run['id']}")
    assert now["status"] == "running", now
    assert "tick 15" not in by_css(alice, "#log")[0].text
    assert by_css(alice, "#cancel"), "a running run has a cancel button"
    wait_for(lambda: by_css(alice, "#log .stderr"), timeout=30, what="stderr output")
    wait_for(lambda: "ended" in by_css(alice, "#log-state")[0].text, timeout=30, what="the end of the stream")
    log = by_css(alice, "#log")[0].text
    assert "tick 15" in log and "to stderr" in log
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} tick 0", log), log[:200]
    assert "to stderr" in by_css(alice, "#log .stderr")[0].text
    wait_for(lambda: "succeeded" in by_css(alice, "#run-head .badge")[0].text, what="succeeded on the page")
    assert '"ticks": 16' in by_css(alice, "#run-details")[0].text
    assert len(by_css(alice, ".waterfall .bar")) == 5
    shot(alice, "run")
    assert console_errors(alice) == []


LOCKED = """
@requirements({"uipkg": ">=1"})
def f():
    import uipkg
    return uipkg.V
"""


def test_run_page_shows_the_environment_lock(alice, d):
    st, run = d.run(LOCKED)
    assert st == 200 and run["status"] == "succeeded" and run["result"] == 13, run
    # The route behind it: per tenant, packages, versions and wheel URLs.
    st, lock = d.call("GET", f"/v1/runs/{run['id']}/lock")
    assert st == 200, lock
    assert {(p["name"], p["version"]) for p in lock["lock"]["packages"]} == {("uipkg", "1.3"), ("uidep", "2.0")}
    assert all(p["url"].endswith(p["filename"]) for p in lock["lock"]["packages"]), lock
    assert d.call("GET", f"/v1/runs/{run['id']}/lock", token="bob")[0] == 404
    # A deployed function's warm invokes reuse its pinned environment (no
    # resolve at all): they record the same lock.
    st, fn = d.call("POST", "/v1/functions", {"name": "locked", "source": LOCKED})
    assert st == 201, fn
    for _ in range(2):
        st, inv = d.call("POST", "/v1/functions/locked/invoke?wait=true", {})
        assert st == 200 and inv["result"] == 13, inv
        st, il = d.call("GET", f"/v1/runs/{inv['id']}/lock")
        assert st == 200 and il["lock"] and {p["name"] for p in il["lock"]["packages"]} == {"uipkg", "uidep"}, il
    go(alice, d, f"#/runs/{run['id']}")
    box = wait_for(lambda: [b for b in by_css(alice, "#run-lock") if "uidep" in b.text], what="the lock on the page")[0]
    rows = {tuple(td.text for td in tr.find_elements("css selector", "td")[:2])
            for tr in box.find_elements("css selector", "tbody tr")}
    assert {("uipkg", "1.3"), ("uidep", "2.0")} <= rows, rows
    assert "uipkg>=1" in box.text
    shot(alice, "run-lock")
    # A run without requirements says so rather than showing nothing.
    st, plain = d.run("def f():\n    return 1\n")
    go(alice, d, f"#/runs/{plain['id']}")
    wait_for(lambda: "standard library only" in by_css(alice, "#run-lock")[0].text, what="no packages")
    assert console_errors(alice) == []


XSS = """
def xss():
    print('<script>alert(1)</script>')
    print('<img src=x onerror="document.title=\\'pwned\\';alert(2)">')
    raise ValueError('<img src=y onerror=alert(3)><b>bold</b>')
"""


# stdout "caf\xc3", stderr between, then "\xa9 ok\n\xff raw\n" (test_output_bytes.py)
from test_output_bytes import CUT as BYTES  # noqa: E402


def test_output_that_is_not_utf8_shows_its_characters_and_a_mark_for_the_rest(alice, d):
    """Pieces with bytes that are not UTF-8 come in base64 (docs/api.md):
    the page decodes each stream's bytes in order, so a character cut
    between two of its pieces shows whole and a stray byte as U+FFFD."""
    st, run = d.run(BYTES, wait=False)
    assert st == 202, run
    go(alice, d, f"#/runs/{run['id']}")
    wait_for(lambda: "ended" in by_css(alice, "#log-state")[0].text, timeout=30, what="the log")
    log = by_css(alice, "#log")[0].text
    assert "é ok" in log and "\ufffd raw" in log and "\ufffd ok" not in log, log
    assert console_errors(alice) == []


def test_download_saves_the_logs_bytes(alice, d, tmp_path):
    """Download saved the page's decoded text: a byte that is not UTF-8
    came out as U+FFFD. It now saves what GET /v1/runs/{id}/logs holds."""
    st, run = d.run(BYTES, wait=True)
    assert st == 200 and run["status"] == "succeeded", run
    st, _, want = d.request("GET", f"/v1/runs/{run['id']}/logs")
    assert st == 200 and b"\xff raw" in want, want
    alice.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    go(alice, d, f"#/runs/{run['id']}")
    wait_for(lambda: "ended" in by_css(alice, "#log-state")[0].text, timeout=30, what="the log")
    by_css(alice, "#download")[0].click()
    saved = tmp_path / f"{run['id']}.log"
    wait_for(lambda: saved.exists() and saved.read_bytes() == want, what="the downloaded log")
    assert console_errors(alice) == []


def test_xss_in_output_and_errors_stays_inert(alice, d):
    from selenium.common.exceptions import NoAlertPresentException
    st, run = d.run(XSS, wait=True)
    assert st == 200 and run["status"] == "failed", run
    go(alice, d, f"#/runs/{run['id']}")
    wait_for(lambda: "ended" in by_css(alice, "#log-state")[0].text, timeout=30, what="the log")
    wait_for(lambda: "ValueError" in by_css(alice, "#run-details")[0].text, what="the error")
    assert "<script>alert(1)</script>" in by_css(alice, "#log")[0].text
    assert '<img src=x onerror=' in by_css(alice, "#log")[0].text
    assert "<b>bold</b>" in by_css(alice, "#run-details")[0].text
    time.sleep(0)  # no wait needed: an alert would already be open
    with pytest.raises(NoAlertPresentException):
        alice.switch_to.alert.text
    assert by_css(alice, "main img") == [] and by_css(alice, "main script") == [] and by_css(alice, "main b") == []
    assert alice.title != "pwned"
    shot(alice, "run-xss")
    assert console_errors(alice) == []


PIPE = """
name: ui-chain
tasks:
  first: {file: steps.py, function: slow, kwargs: {x: 1}}
  second: {file: steps.py, function: slow, args: ["${first}"]}
  third: {file: steps.py, function: slow, args: ["${first}"]}
  last: {file: steps.py, function: slow, args: ["${second}"]}
"""
STEPS = """
import time
def slow(x=1, delay: float = 1.2):
    print("slow", x, flush=True)
    time.sleep(delay)
    return x + 1
"""


def test_dag_nodes_change_colour_as_tasks_finish(alice, d):
    st, g = d.call("POST", "/v1/dags", {"pipeline": PIPE, "files": {"steps.py": STEPS}, "no_cache": True})
    assert st == 202, g
    # Only this page's requests count below (the page lives on across tests).
    alice.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(2000)")
    go(alice, d, f"#/dags/{g['id']}")
    node = 'g.node[data-task="last"]'
    wait_for(lambda: by_css(alice, node), timeout=20, what="the graph")
    seen = set()

    def states():
        cls = by_css(alice, node)[0].get_attribute("class")
        seen.add(cls)
        return "st-succeeded" in cls

    wait_for(states, timeout=60, what="'last' turning succeeded", interval=0.1)
    assert any("st-succeeded" not in c for c in seen), seen  # it had another colour before
    # The colours came by SSE, not by polling the DAG's status route: the
    # page fetched GET /v1/dags/{id} once (its first paint) over a run of
    # several seconds (a 0.4 s poll made ~10 requests), and opened the
    # DAG's event stream.
    # (A stream is listed among the page's resources once it has ended,
    # which it does when the DAG run is over.)
    status_route = f"/v1/dags/{g['id']}"

    def dag_requests():
        got = alice.execute_script("return performance.getEntriesByType('resource')"
                                   ".map((e) => new URL(e.name).pathname)"
                                   ".filter((u) => u.startsWith(arguments[0]))", status_route)
        return got if f"{status_route}/events" in got else None

    fetched = wait_for(dag_requests, what="the DAG's event stream among the page's requests")
    assert fetched.count(status_route) == 1, fetched
    assert fetched.count(f"{status_route}/events") == 1, fetched
    # Laid out left to right: a dependent sits right of its dependency.
    x = {t: float(re.search(r"translate\(([-\d.]+)", by_css(alice, f'g.node[data-task="{t}"]')[0]
                                .get_attribute("transform")).group(1)) for t in ("first", "second", "last")}
    assert x["first"] < x["second"] < x["last"], x
    assert len(by_css(alice, "#dag-graph path.edge")) == 3
    # Click a node: its logs and result in the side panel, and a deep link.
    by_css(alice, 'g.node[data-task="second"]')[0].click()
    wait_for(lambda: "second" in by_css(alice, "#task-panel h2")[0].text, what="the side panel")
    wait_for(lambda: "3" in by_css(alice, "#task-panel pre.json")[0].text, what="the task's result")
    assert "task=second" in alice.current_url
    shot(alice, "dag")
    assert console_errors(alice) == []


def test_a_tenant_cannot_open_another_tenants_run(alice, d):
    st, bobs = d.run("def f():\n    return 'secret of bob'\n", token="bob")
    assert st == 200, bobs
    go(alice, d, f"#/runs/{bobs['id']}")
    wait_for(lambda: by_css(alice, "#not-found"), what="not found")
    assert "secret of bob" not in alice.page_source
    cookie = session_cookie(alice)
    st, _, _ = d.request("GET", f"/v1/runs/{bobs['id']}", token=None,
                         headers={"Cookie": f"pysprinter_session={cookie['value']}"})
    assert st == 404
    st, lst = d.call("GET", "/v1/runs", token=None, headers={"Cookie": f"pysprinter_session={cookie['value']}"})
    assert st == 200 and bobs["id"] not in [r["id"] for r in lst["runs"]]
    # The one expected error: the 404 of the API call.
    assert all("404" in m for m in console_errors(alice)), "only the 404 is logged"


EVIL_PAGE = """
import json
def page(event):
    html = (\"<!doctype html><title>waiting</title><pre id='cookies'>\" + json.dumps(event.get('cookies', []))
            + \"</pre><script src='/fn/bob/evil/steal.js'></script>\")
    script = (\"fetch('/v1/functions', {credentials: 'include', headers: {'X-Pysprinter-CSRF': '1'}})\"
              \".then(r => r.text().then(t => { document.title = 'answer ' + r.status + ' ' + t.slice(0, 300); }))\"
              \".catch(e => { document.title = 'blocked ' + e; });\")
    if event['rawPath'] == '/steal.js':
        return {'statusCode': 200, 'headers': {'content-type': 'text/javascript'}, 'body': script}
    return {'statusCode': 200, 'headers': {'content-type': 'text/html'}, 'body': html}
"""


def test_another_tenants_function_page_cannot_act_as_the_visitor(alice, d):
    """Bob's public Function URL is on the dashboard's origin. Opened by
    alice (logged in), its script called /v1 with her session cookie, and
    the function itself was handed the cookie in its event. The page now
    runs sandboxed (an opaque origin) and the event never holds it."""
    st, f = d.call("POST", "/v1/functions", {"name": "evil", "source": EVIL_PAGE, "url": "public"}, token="bob")
    assert st == 201, f
    st, mine = d.call("POST", "/v1/functions", {"name": "alices", "source": "def f():\n    return 1\n"})
    assert st == 201, mine
    cookie = session_cookie(alice)
    assert cookie and cookie["value"]
    alice.get(d.url + "/fn/bob/evil")
    title = wait_for(lambda: alice.title if alice.title != "waiting" else None, timeout=20, what="the script's fetch")
    assert title.startswith("blocked"), title
    assert "alices" not in alice.page_source
    assert cookie["value"] not in alice.page_source
    assert by_css(alice, "#cookies")[0].text == "[]"
    console_errors(alice)  # the refused fetch is logged: expected
    # Alice's session still works for her.
    go(alice, d, "#/runs")
    wait_for(lambda: by_css(alice, "#who") and by_css(alice, "#who")[0].text.startswith("alice"), what="still alice")


def invoke_by_form(drv, kwargs, expect):
    """Submits the function page's invoke form with these kwargs (JSON
    text) and waits for the run it opens to show expect; returns the run's
    details text."""
    box = by_css(drv, "#inv-kwargs")[0]
    box.clear()
    box.send_keys(kwargs)
    by_css(drv, "form.invoke button")[0].click()
    wait_for(lambda: "#/runs/" in drv.current_url, what="the new run's page")
    wait_for(lambda: expect in by_css(drv, "#run-details")[0].text, timeout=30, what="the invoke's result")
    return by_css(drv, "#run-details")[0].text


def test_every_page_renders_without_console_errors(alice, d):
    st, f = d.call("POST", "/v1/functions", {"name": "greet", "source": "def greet(who='x'):\n    \"\"\"Greets.\n\n    who: whom\n    \"\"\"\n    return 'hi ' + who\n"})
    assert st == 201, f
    for _ in range(3):
        st, r = d.call("POST", "/v1/functions/greet/invoke?wait=true", {"kwargs": {"who": "ui"}})
        assert st == 200, r
    st, ds = d.call("PUT", "/v1/data/numbers", raw=b"1,2,3\n", headers={"Content-Type": "application/octet-stream"})
    assert st in (200, 201), ds
    st, runs = d.call("GET", "/v1/runs?limit=1")
    st, dags = d.call("GET", "/v1/dags?limit=1")
    pages = {
        "runs-filtered": ("#/runs?status=succeeded", "table"),
        "dags": ("#/dags", "table"),
        "functions": ("#/functions", 'a[href="#/functions/greet"]'),
        "function": ("#/functions/greet", "#fn-charts .uplot"),
        "data": ("#/data", 'a[href="#/data/numbers"]'),
        "dataset": ("#/data/numbers", "table"),
        "workers": ("#/workers", "#pool"),
        "dag-grid": (f"#/dags/{dags['dags'][0]['id']}", "td.cell"),
        "run-last": (f"#/runs/{runs['runs'][0]['id']}", "#run-details"),
    }
    for name, (route, ready) in pages.items():
        go(alice, d, route)
        wait_for(lambda: by_css(alice, ready), timeout=20, what=f"{name}: {ready}")
        shot(alice, name)
        assert console_errors(alice) == [], name
    # The function's signature and docstring, as `invoke greet --help` shows them.
    go(alice, d, "#/functions/greet")
    wait_for(lambda: by_css(alice, "#fn-signature"), what="the signature")
    assert by_css(alice, "#fn-signature")[0].text == "greet(who='x')"
    assert by_css(alice, "#fn-doc")[0].text == "Greets.\n\nwho: whom"
    # All three charts of the function page (invocations, error rate, p50/p99).
    go(alice, d, "#/functions/greet")
    wait_for(lambda: len(by_css(alice, "#fn-charts .uplot")) == 3, what="three uPlot charts")
    # The invoke form starts a run and opens it.
    go(alice, d, "#/functions/greet")
    wait_for(lambda: by_css(alice, "#inv-kwargs"), what="the invoke form")
    invoke_by_form(alice, '{"who": "form"}', "hi form")
    # Keyboard: a filter and the graph's nodes are reachable and usable.
    from selenium.webdriver.common.keys import Keys
    go(alice, d, f"#/dags/{dags['dags'][0]['id']}")
    wait_for(lambda: by_css(alice, "g.node"), what="nodes")
    alice.execute_script("document.querySelector('g.node').focus()")
    alice.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(lambda: by_css(alice, "#task-panel h2"), what="panel by keyboard")
    assert console_errors(alice) == []


# Two versions of one function: different signatures and docstrings, the
# old one's docstring with markup that must stay text.
HELLO_V1 = '''def hello(name: str, times: int = 1):
    """Greets NAME, TIMES times.

    <script>window.pwned = 1</script><img src=x onerror="document.title='pwned'"> <b>v1</b>
    """
    return ["v1"] + [name] * times
'''
HELLO_V2 = '''def hello(who, /, *, loud: bool = False):
    """Shouts at WHO: the second version."""
    return "v2 " + (who.upper() if loud else who)
'''


def test_function_page_shows_the_version_picked(alice, d, env):
    """A function's page showed the latest version's signature and
    docstring only. Picking version 1 in its versions shows version 1's
    own, with a call pinned to it (NAME::1, "version": 1) that the CLI and
    curl run as shown; the latest's call is unpinned. The docstring's
    markup is text."""
    from selenium.common.exceptions import NoAlertPresentException
    for src in (HELLO_V1, HELLO_V2):
        st, f = d.call("POST", "/v1/functions", {"name": "hello2v", "source": src})
        assert st == 201, f
    assert f["version"] == 2, f
    go(alice, d, "#/functions/hello2v")
    wait_for(lambda: by_css(alice, "#fn-signature"), what="the latest's signature")
    assert by_css(alice, "#fn-signature")[0].text == "hello(who, /, *, loud: bool = False)"
    assert by_css(alice, "#fn-doc")[0].text == "Shouts at WHO: the second version."
    assert by_css(alice, "#fn-version")[0].text == "2 (latest)"
    assert by_css(alice, "#fn-call-cli")[0].text == f"pysprinter invoke hello2v --server {d.url} -a WHO"
    assert "-d '{\"raw_args\":[\"WHO\"]}'" in by_css(alice, "#fn-call-http")[0].text
    assert [a.text for a in by_css(alice, "#fn-versions a")] == ["1", "2 (latest)"]
    assert by_css(alice, "#fn-versions a[aria-current]")[0].text == "2 (latest)"

    # Pick the old version in the versions list.
    by_css(alice, '#fn-versions a[data-version="1"]')[0].click()
    wait_for(lambda: alice.current_url.endswith("#/functions/hello2v?version=1"), what="version 1's URL")
    wait_for(lambda: by_css(alice, "#fn-signature")[0].text == "hello(name: str, times: int = 1)",
             what="version 1's signature")
    doc = by_css(alice, "#fn-doc")[0].text
    assert doc.startswith("Greets NAME, TIMES times.\n\n<script>window.pwned = 1</script><img src=x "), doc
    assert doc.endswith("<b>v1</b>"), doc
    assert by_css(alice, "#fn-version")[0].text == "1 (not the latest: 2)"
    assert by_css(alice, "#fn-versions a[aria-current]")[0].get_attribute("data-version") == "1"
    cli = by_css(alice, "#fn-call-cli")[0].text
    http = by_css(alice, "#fn-call-http")[0].text
    assert cli == f"pysprinter invoke hello2v::1 --server {d.url} -k name=NAME", cli
    assert "-d '{\"version\":1,\"raw_kwargs\":{\"name\":\"NAME\"}}'" in http, http
    # (the version-delete reason is a hint of its own too since round 55)
    assert any("Optional: times." in h.text for h in by_css(alice, "main .hint")), \
        [h.text for h in by_css(alice, "main .hint")]
    # The docstring stayed text: nothing of it ran or became an element.
    with pytest.raises(NoAlertPresentException):
        alice.switch_to.alert.text
    assert by_css(alice, "main script") == [] and by_css(alice, "main img") == [] and by_css(alice, "main b") == []
    assert alice.execute_script("return window.pwned") is None and alice.title != "pwned"
    shot(alice, "function-version")

    # The examples work as shown, placeholders filled: version 1 answers.
    token = {**env, "PYSPRINTER_TOKEN": TOKENS["alice"]}
    argv = cli.replace("NAME", "ui").split()
    r = subprocess.run([str(CLI), *argv[1:]], capture_output=True, text=True, env=token, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout) == ["v1", "ui"], r
    r = subprocess.run(["bash", "-c", http.replace("NAME", "curl")], capture_output=True, text=True, env=token,
                       timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["result"] == ["v1", "curl"], r
    # The form invokes the version shown.
    assert '"v1"' in invoke_by_form(alice, '{"name": "form", "times": 2}', '"form"')

    st, r = d.call("POST", "/v1/functions/hello2v/invoke?wait=true", {"raw_args": ["api"]})
    assert st == 200 and r["result"] == "v2 api", r
    st, r = d.run(HELLO_V1, filename="main.py", raw_args=["adhoc"])
    assert st == 200 and r["result"] == ["v1", "adhoc"], r

    # Back to the latest from the versions: unpinned again.
    go(alice, d, "#/functions/hello2v?version=1")
    wait_for(lambda: by_css(alice, '#fn-versions a[data-version="2"]'), what="the versions")
    by_css(alice, '#fn-versions a[data-version="2"]')[0].click()
    wait_for(lambda: alice.current_url.endswith("#/functions/hello2v"), what="the latest's URL")
    wait_for(lambda: by_css(alice, "#fn-signature")[0].text == "hello(who, /, *, loud: bool = False)",
             what="the latest's signature")
    # Invocations count every version's (3 of version 1, 1 of version 2),
    # and not an ad-hoc run of the same file and function name.
    wait_for(lambda: by_css(alice, "#fn-charts p"), what="the invocations")
    assert by_css(alice, "#fn-charts p")[0].text.startswith("4 invocation(s), error rate 0.0 %")
    assert console_errors(alice) == []
    # A version it does not have: the API's words (the browser logs the 404).
    go(alice, d, "#/functions/hello2v?version=9")
    wait_for(lambda: by_css(alice, "#not-found"), what="the missing version")
    assert "function 'hello2v' has no version 9" in by_css(alice, "main .error")[0].text
    assert console_errors(alice, allow=("/v1/functions/hello2v?version=9 ",)) == []


READS = """
import pysprinter
def count(name: str = "measures"):
    with open(pysprinter.data_path(name)) as f:
        return len(f.read().split(","))
"""
DATA_PIPE = """
name: ui-data
tasks:
  reader: {file: reads.py, function: count, data: [measures]}
"""


def test_data_page_shows_where_a_dataset_is_used(alice, d):
    st, _ = d.call("PUT", "/v1/data/measures", raw=b"1,2,3,4", headers={"Content-Type": "application/octet-stream"})
    assert st in (200, 201)
    st, _ = d.call("PUT", "/v1/data/unused", raw=b"x", headers={"Content-Type": "application/octet-stream"})
    assert st in (200, 201)
    # An ad-hoc run, an invoke of a deployed function and a DAG task mount it.
    st, run = d.run(READS, data=["measures"])
    assert st == 200 and run["result"] == 4, run
    st, f = d.call("POST", "/v1/functions", {"name": "counter", "source": READS})
    assert st == 201, f
    st, inv = d.call("POST", "/v1/functions/counter/invoke?wait=true", {"data": ["measures@1"]})
    assert st == 200 and inv["result"] == 4, inv
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": DATA_PIPE, "files": {"reads.py": READS}})
    assert st == 200 and g["status"] == "succeeded", g
    task_run = g["tasks"][0]["run_id"]
    st, other = d.run("def f():\n    return 0\n")   # mounts nothing
    st, u = d.call("GET", "/v1/data/measures/usage")
    assert st == 200, u
    assert [r["id"] for r in u["runs"]] == [task_run, inv["id"], run["id"]], u   # newest first
    assert u["runs"][0]["dag_id"] == g["id"] and u["runs"][0]["task"] == "reader"
    assert u["runs"][1]["fn_name"] == "counter" and u["runs"][1]["ref"] == "measures@1"
    assert u["functions"] == ["counter"]
    assert d.call("GET", "/v1/data/measures/usage", token="bob")[0] == 404   # per tenant
    assert d.call("GET", "/v1/data/unused/usage")[1]["runs"] == []

    go(alice, d, "#/data/measures")
    box = wait_for(lambda: [b for b in by_css(alice, "#data-usage") if run["id"] in b.text], what="where used")[0]
    assert other["id"] not in box.text
    links = {a.get_attribute("href").split("#", 1)[1] for a in box.find_elements("css selector", "a")}
    assert {f"/runs/{run['id']}", f"/runs/{inv['id']}", f"/functions/counter",
            f"/dags/{g['id']}?task=reader"} <= links, links
    shot(alice, "dataset-usage")
    go(alice, d, "#/data/unused")
    wait_for(lambda: "No run has mounted it" in by_css(alice, "#data-usage")[0].text, what="unused")
    assert console_errors(alice) == []


def active_is(drv, css):
    return drv.execute_script("return document.activeElement.matches(arguments[0])", css)


def tab_until(drv, css, limit=60):
    """Presses Tab until the focus is on an element matching css; returns
    how many presses it took (the element is reachable by keyboard)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    for i in range(limit):
        if active_is(drv, css):
            return i
        ActionChains(drv).send_keys(Keys.TAB).perform()
    raise AssertionError(f"Tab never reached {css}")


def press(drv, key):
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(drv).send_keys(key).perform()


def test_keyboard_navigation_and_deep_links(alice, d):
    from selenium.webdriver.common.keys import Keys
    st, g = d.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": {"steps.py": STEPS}})
    assert st == 200 and g["status"] == "succeeded", g
    # A deep link opens the DAG run with the side panel on that task.
    alice.get(d.url + f"/ui/#/dags/{g['id']}?task=third")
    wait_for(lambda: "third" in by_css(alice, "#task-panel h2")[0].text, what="the deep-linked task's panel")
    # The skip link is the first stop and moves the focus into the page
    # (it is not a route).
    alice.execute_script("document.activeElement.blur()")
    tab_until(alice, "a.skip")
    press(alice, Keys.ENTER)
    assert "#/dags/" in alice.current_url
    assert active_is(alice, "main")
    # Tab reaches the graph's nodes; Enter opens one, Escape closes it and
    # gives the focus back to the node.
    tab_until(alice, 'g.node[data-task="first"]')
    press(alice, Keys.ENTER)
    wait_for(lambda: "first" in by_css(alice, "#task-panel h2")[0].text, what="the panel by Enter")
    assert alice.current_url.endswith("task=first")
    tab_until(alice, 'g.node[data-task="second"]')
    press(alice, Keys.SPACE)
    wait_for(lambda: "second" in by_css(alice, "#task-panel h2")[0].text, what="the panel by Space")
    press(alice, Keys.ESCAPE)
    wait_for(lambda: not by_css(alice, "#task-panel h2"), what="the panel closed by Escape")
    assert "task=" not in alice.current_url
    assert active_is(alice, 'g.node[data-task="second"]')
    # The panel's Close button is reachable too.
    press(alice, Keys.ENTER)
    wait_for(lambda: by_css(alice, "#panel-close"), what="the close button")
    tab_until(alice, "#panel-close")
    press(alice, Keys.ENTER)
    wait_for(lambda: not by_css(alice, "#task-panel h2"), what="closed by its button")
    shot(alice, "dag-keyboard")

    # Runs: "/" focuses the search; typing filters; a run opens with Enter
    # on its link, and its URL is the run's deep link.
    st, run = d.run("def kbd():\n    return 'keyboard'\n")
    go(alice, d, "#/runs")
    wait_for(lambda: by_css(alice, f'tr[data-run="{run["id"]}"]'), what="the run in the table")
    alice.execute_script("document.activeElement.blur()")
    press(alice, "/")
    assert active_is(alice, "input")
    press(alice, run["id"])
    wait_for(lambda: len(by_css(alice, "tbody tr[data-run]")) == 1, what="the filtered table")
    tab_until(alice, f'tr[data-run="{run["id"]}"] a')
    press(alice, Keys.ENTER)
    wait_for(lambda: alice.current_url.endswith(f"#/runs/{run['id']}"), what="the run's URL")
    wait_for(lambda: "keyboard" in by_css(alice, "#run-details")[0].text, what="the run's result")
    # The nav reaches every section from the keyboard.
    tab_until(alice, 'nav a[data-section="functions"]')
    press(alice, Keys.ENTER)
    wait_for(lambda: alice.current_url.endswith("#/functions"), what="functions by keyboard")
    # A function's deep link.
    d.call("POST", "/v1/functions", {"name": "kbdfn", "source": "def kbdfn():\n    return 1\n"})
    alice.get(d.url + "/ui/#/functions/kbdfn")
    wait_for(lambda: "kbdfn" in by_css(alice, "main h1")[0].text, what="the function's page")
    tab_until(alice, "#inv-args")
    assert console_errors(alice) == []


def test_a_graph_over_300_tasks_is_listed_not_drawn(alice, d):
    tasks = "\n".join(f"  t{i:03d}: {{file: steps.py, function: slow, kwargs: {{delay: 0}}}}" for i in range(301))
    st, g = d.call("POST", "/v1/dags", {"pipeline": f"name: ui-wide\ntasks:\n{tasks}\n", "files": {"steps.py": STEPS}})
    assert st == 202, g
    d.call("DELETE", f"/v1/dags/{g['id']}")   # only its shape matters here
    go(alice, d, f"#/dags/{g['id']}")
    wait_for(lambda: len(by_css(alice, "tr.task-row")) == 301, timeout=30, what="301 rows")
    assert by_css(alice, "#dag-graph") == []
    assert "too many to draw" in by_css(alice, "main")[0].text
    # A row opens its task with Enter, like a node.
    alice.execute_script("document.querySelector('tr.task-row').focus()")
    press(alice, "\ue007")   # Enter
    wait_for(lambda: "t000" in by_css(alice, "#task-panel h2")[0].text, what="the row's panel")
    shot(alice, "dag-list")
    assert console_errors(alice) == []


def test_workers_page_in_cluster_mode_shows_nodes_and_leases(alice, d, tmp_path):
    """A cluster node (a real redis-server, as tests/e2e/test_cluster.py
    starts it) shows its cluster's nodes and their leases; a single node
    (the other tests' daemon) shows none and asks nothing of /v1/cluster."""
    redis_server = shutil.which("redis-server")
    if not redis_server:
        pytest.fail("redis-server is missing: tools/install-deps.sh installs it")
    go(alice, d, "#/workers")
    wait_for(lambda: by_css(alice, "#pool"), what="the pool")
    assert by_css(alice, "#cluster-queue") == []
    sock = tmp_path / "redis.sock"
    redis = subprocess.Popen([redis_server, "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path),
                              "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Daemon(tmp_path / "node", args=["--redis", f"unix:{sock}", "--role", "all", "--node-id", "ui-node-1",
                                              "--redis-volatile"])
    try:
        wait_for(lambda: sock.exists(), what="redis")
        node.start()
        login(alice, node, "alice")
        go(alice, node, "#/workers")
        row = wait_for(lambda: by_css(alice, 'tr[data-node="ui-node-1"]'), timeout=20, what="the node's row")[0]
        assert "this node" in row.text and "alive" in row.text
        assert by_css(alice, "#cluster-queue")
        shot(alice, "workers-cluster")
        assert console_errors(alice) == []
    finally:
        node.stop()
        redis.kill()
        redis.wait()
        login(alice, d, "alice")   # cookies are per host, not per port


# ---- plain HTTP: headers, cookie, CSRF, sessions -----------------------------


def raw(d, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


def hdr(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if vals else None


def do_login(d, tenant, extra=None):
    h = {"Content-Type": "application/json", "X-Pysprinter-CSRF": "1", **(extra or {})}
    st, hs, body = raw(d, "POST", "/login", json.dumps({"token": TOKENS[tenant]}), h)
    assert st == 200, body
    return hdr(hs, "Set-Cookie")


def test_security_headers_cookie_flags_and_csrf(d):
    st, hs, body = raw(d, "GET", "/ui/", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and hdr(hs, "Content-Encoding") == "gzip"
    csp = hdr(hs, "Content-Security-Policy")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert hdr(hs, "X-Content-Type-Options") == "nosniff" and hdr(hs, "Referrer-Policy") == "no-referrer"
    import gzip
    page = gzip.decompress(body).decode()
    assert "<script>" not in page and "style=" not in page  # nothing inline
    # Hashed asset names: a year of cache, strong ETag, 304 on revalidation.
    app = re.search(r'src="(/ui/a/[0-9a-f]{16}/app\.js)"', page).group(1)
    st, hs, _ = raw(d, "GET", app)
    assert st == 200 and "immutable" in hdr(hs, "Cache-Control") and "max-age=31536000" in hdr(hs, "Cache-Control")
    etag = hdr(hs, "ETag")
    assert etag.startswith('"') and not etag.startswith("W/")
    st, hs, body = raw(d, "GET", app, headers={"If-None-Match": etag})
    assert st == 304 and body == b""
    st, hs, _ = raw(d, "GET", "/ui/", headers={"If-None-Match": "\"nope\""})
    assert st == 200 and hdr(hs, "Cache-Control") == "no-cache"

    # Login: the CSRF header is required; a bad token is 401.
    st, _, _ = raw(d, "POST", "/login", json.dumps({"token": TOKENS["alice"]}), {"Content-Type": "application/json"})
    assert st == 403
    st, _, _ = raw(d, "POST", "/login", json.dumps({"token": "wrong"}), {"X-Pysprinter-CSRF": "1"})
    assert st == 401
    cookie = do_login(d, "alice")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Secure" in do_login(d, "alice", {"X-Forwarded-Proto": "https"})
    sid = cookie.split(";")[0]
    assert re.fullmatch(r"pysprinter_session=[0-9a-f]{64}", sid)

    # State changes with a cookie need the CSRF header; bearer clients do not.
    run = json.dumps({"source": "def f():\n    return 1\n"})
    st, _, body = raw(d, "POST", "/v1/runs", run, {"Cookie": sid, "Content-Type": "application/json"})
    assert st == 403 and b"X-Pysprinter-CSRF" in body
    st, _, body = raw(d, "POST", "/v1/runs", run, {"Cookie": sid, "X-Pysprinter-CSRF": "1"})
    assert st == 202, body
    st, _, body = raw(d, "POST", "/v1/runs", run, {"Authorization": "Bearer " + TOKENS["alice"]})
    assert st == 202, body
    st, _, _ = raw(d, "GET", "/v1/runs", headers={"Cookie": sid})
    assert st == 200
    st, _, _ = raw(d, "GET", "/v1/runs", headers={"Cookie": "pysprinter_session=" + "0" * 64})
    assert st == 401
    # Logout ends the session server-side.
    st, hs, _ = raw(d, "POST", "/logout", headers={"Cookie": sid, "X-Pysprinter-CSRF": "1"})
    assert st == 200 and "Max-Age=0" in hdr(hs, "Set-Cookie")
    st, _, _ = raw(d, "GET", "/v1/runs", headers={"Cookie": sid})
    assert st == 401


def test_sighup_removing_a_token_revokes_its_sessions(tmp_path):
    d = Daemon(tmp_path / "hup")
    d.start()
    try:
        sid = do_login(d, "alice").split(";")[0]
        bob = do_login(d, "bob").split(";")[0]
        assert raw(d, "GET", "/v1/runs", headers={"Cookie": sid})[0] == 200
        text = d.config.read_text().replace(f"token: {TOKENS['alice']}", "token: alice-new-token-0123456789abcdef")
        d.config.write_text(text)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: raw(d, "GET", "/v1/runs", headers={"Cookie": sid})[0] == 401, what="revocation")
        assert raw(d, "GET", "/v1/runs", headers={"Cookie": bob})[0] == 200
    finally:
        d.stop()


def test_assets_fit_the_budget():
    src = (BUILD / "src" / "daemon" / "ui-assets.c").read_text()
    total = int(re.search(r"ui_assets_gzip_bytes = (\d+);", src).group(1))
    names = re.findall(r'\{ "([^"]+)", "[^"]+", asset_\d+', src)
    assert {"index.html", "login.html", "app.js", "vendor/dagre.js", "vendor/uplot.js"} <= set(names), names
    print(f"dashboard assets: {len(names)} files, {total} bytes gzipped")
    assert total <= 150 * 1024


# ---- 50 log streams do not slow the API ---------------------------------------


def test_fifty_log_streams_leave_the_api_responsive(d):
    st, run = d.run(TICKER, wait=False, kwargs={"n": 200, "delay": 0.1})
    assert st == 202
    d.wait_status(run["id"], ["running"])

    def latencies(n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            st, _ = d.call("GET", f"/v1/runs/{run['id']}")
            out.append((time.perf_counter() - t) * 1000)
            assert st == 200
        return sorted(out)

    base = latencies(100)
    socks = []
    try:
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            path = f"/v1/runs/{run['id']}/logs?follow=1" if i % 2 == 0 else "/v1/events"
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n\r\n".encode())
            socks.append(s)
        for s in socks:  # every stream is open and answering
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        loaded = latencies(200)
        # The streams are still flowing.
        got = socks[0].recv(65536)
        assert got
    finally:
        for s in socks:
            s.close()
        d.call("DELETE", f"/v1/runs/{run['id']}")
    p = lambda v, q: v[min(len(v) - 1, int(q * len(v)))]
    report = (f"API GET /v1/runs/ID latency ms — idle: p50 {p(base, .5):.1f} p99 {p(base, .99):.1f}; "
              f"with 50 SSE streams (25 logs, 25 events): p50 {p(loaded, .5):.1f} p99 {p(loaded, .99):.1f} "
              f"max {loaded[-1]:.1f}")
    print(report)
    (BUILD / "ui-screenshots").mkdir(parents=True, exist_ok=True)
    (BUILD / "ui-screenshots" / "sse-latency.txt").write_text(report + "\n")
    assert p(loaded, .99) < 250, report


def test_a_readonly_session_is_not_offered_buttons_it_cannot_use(d):
    """A readonly token may look but not act (POST and DELETE are 403). Its
    session saw a Cancel button on a live run and a live DAG run, and the
    invoke form on a function's page, each answering 403 when used; those
    pages now leave them out, and say why where the form was. A user
    token still gets them."""
    st, f = d.call("POST", "/v1/functions", {"name": "rofn", "source": "def rofn():\n    return 1\n"})
    assert st == 201, f
    st, run = d.run(TICKER, wait=False, kwargs={"n": 200, "delay": 0.25})
    assert st == 202, run
    st, g = d.call("POST", "/v1/dags", {"pipeline": PIPE, "files": {"steps.py": STEPS.replace("1.2", "30")},
                                         "no_cache": True})
    assert st == 202, g
    drv = start_browser()
    try:
        login(drv, d, "reader", who="alice (readonly)")
        go(drv, d, f"#/runs/{run['id']}")
        wait_for(lambda: "running" in by_css(drv, "#run-head .badge")[0].text, timeout=30, what="the run running")
        assert by_css(drv, "#cancel") == []
        go(drv, d, f"#/dags/{g['id']}")
        wait_for(lambda: by_css(drv, 'g.node[data-task="last"]'), timeout=20, what="the graph")
        assert [b for b in by_css(drv, "button.danger") if b.text == "Cancel"] == []
        go(drv, d, "#/functions/rofn")
        note = wait_for(lambda: by_css(drv, "#inv-readonly"), what="the read-only note")
        assert "read-only" in note[0].text
        assert by_css(drv, "form.invoke") == []
        assert console_errors(drv) == []
        # The same pages as a user token: the controls are there.
        drv.delete_all_cookies()
        login(drv, d, "alice")
        go(drv, d, f"#/runs/{run['id']}")
        wait_for(lambda: by_css(drv, "#cancel"), what="alice's Cancel button")
        go(drv, d, f"#/dags/{g['id']}")
        wait_for(lambda: [b for b in by_css(drv, "button.danger") if b.text == "Cancel"], what="the DAG's Cancel")
        go(drv, d, "#/functions/rofn")
        wait_for(lambda: by_css(drv, "form.invoke"), what="the invoke form")
    finally:
        drv.quit()
        d.call("DELETE", f"/v1/runs/{run['id']}")
        d.call("DELETE", f"/v1/dags/{g['id']}")
