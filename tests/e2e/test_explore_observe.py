"""Observability as an SRE running pysprinterd sees it: the /metrics
exposition read by a strict parser, /healthz, the daemon's own log lines,
`ps`/`show`/`logs` and the dashboard's views of the same runs."""
import json
import math
import re
import signal
import subprocess
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CLI, sandbox_args
from daemonlib import TOKENS, Daemon, join
from uilib import start_browser, ui_login, wait_for

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                     r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (\S+)$')


def invoke_ok_many(d, total):
    """Deploys the function ok and invokes it total times, on four
    keep-alive connections at once: a tenant with that many runs behind
    it."""
    st, out = d.call("POST", "/v1/functions", {"name": "ok", "source": "def h():\n    return 1\n",
                                               "filename": "ok.py"})
    assert st == 201, out
    def invokes(n):
        c = d.conn()
        try:
            for _ in range(n):
                c.request("POST", "/v1/functions/ok/invoke?wait=true", body=b"{}",
                          headers={"Authorization": "Bearer " + TOKENS["alice"],
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                assert r.status == 200, r.read()
                r.read()
        finally:
            c.close()
    threads = [threading.Thread(target=invokes, args=(total // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    join(threads)


def exposition(text):
    """/metrics text checked as a Prometheus scraper reads it (text format
    0.0.4), strictly: every family has one HELP and one TYPE before its
    samples, which are contiguous; a series appears once; a counter only
    has _total names; a histogram's buckets are cumulative, end at +Inf
    and equal its _count. -> {series: value}."""
    assert text.endswith("\n"), text[-200:]
    list(text_string_to_metric_families(text))  # the client library's parser takes it
    help_, type_, seen, values = {}, {}, set(), {}
    current = None
    for ln in text.splitlines():
        assert ln.strip(), "an empty line in the exposition"
        if ln.startswith("# HELP "):
            name = ln.split(" ", 3)[2]
            assert name not in help_, f"two HELP lines for {name}"
            help_[name] = ln
            continue
        if ln.startswith("# TYPE "):
            _, _, name, kind = ln.split(" ")
            assert name not in type_, f"two TYPE lines for {name}"
            assert name in help_, f"TYPE before HELP for {name}"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), ln
            type_[name] = kind
            assert name not in seen, f"{name}'s samples came before its TYPE"
            current = name
            continue
        assert not ln.startswith("#"), ln
        m = _SAMPLE.match(ln)
        assert m, f"not a sample line: {ln!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and type_.get(name[: -len(suffix)]) == "histogram":
                fam = name[: -len(suffix)]
        assert fam == current, f"{ln!r} is not under its own family's TYPE (under {current})"
        if type_[fam] == "counter":
            assert name.endswith("_total"), ln
        v = float(value)
        assert not math.isnan(v) and v >= 0, ln
        series = name + labels
        assert series not in values, f"{series} twice"
        values[series] = v
        seen.add(fam)
    for fam, kind in type_.items():
        if kind != "histogram":
            continue
        groups = {}
        for series, v in values.items():
            if series.startswith(fam + "_bucket{"):
                labels = series[len(fam + "_bucket{"):-1]
                le = re.search(r'le="([^"]*)"', labels).group(1)
                rest = re.sub(r',?le="[^"]*"', "", labels).strip(",")
                groups.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
        assert groups, f"histogram {fam} has no buckets"
        for rest, buckets in groups.items():
            bounds = [b for b, _ in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, (fam, rest, bounds)
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{fam}{{{rest}}} buckets are not cumulative: {counts}"
            suffix = "{" + rest + "}" if rest else ""
            assert values[fam + "_count" + suffix] == counts[-1], (fam, rest)
            assert fam + "_sum" + suffix in values
    return values


# ---- /metrics ----------------------------------------------------------------------------

def test_metrics_parse_strictly_and_counters_survive_a_reload(tmp_path):
    """After runs of every ending, an invoke and a collection, /metrics as
    anyone, a tenant and an admin read it is valid Prometheus text; after a
    SIGHUP no counter went down."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 1\n")
    with d.serving():
        assert d.run("def f():\n    print('hi')\n    return 1\n")[1]["status"] == "succeeded"
        assert d.run("def f():\n    raise ValueError('no')\n")[1]["status"] == "failed"
        st, b = d.run("def f():\n    return 1\n", limits={"timeout_ms": 1}, token="bob")
        st, b = d.run("import time\ndef f():\n    time.sleep(60)\n", wait=False)
        d.wait_status(b["id"], ["running"])
        d.cancel(b["id"])
        st, out = d.call("POST", "/v1/functions", {"name": "echo", "source": "def h(x=None):\n    return x\n",
                                                   "filename": "h.py"})
        assert st == 201, out
        st, out = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"x": 1}})
        assert st == 200 and out["status"] == "succeeded", out
        wait_for(lambda: "pysprinter_gc_last_timestamp_seconds" in d.call("GET", "/metrics", token="admin")[1]
                 and 'tenant="bob"' in d.call("GET", "/metrics", token="admin")[1], what="a collection", timeout=60)
        before = {}
        for who in (None, "alice", "admin"):
            st, hdrs, body = d.request("GET", "/metrics", token=who)
            assert st == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4"), (st, hdrs)
            before[who] = exposition(body.decode())
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log.read_text(), what="the reload")
        st, _, body = d.request("GET", "/metrics", token="admin")
        after = exposition(body.decode())
        kinds = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
        for series, v in before["admin"].items():
            fam = series.split("{")[0]
            base = re.sub(r"_(total|bucket|count|sum)$", "", fam)
            if kinds.get(base) in ("counter", "histogram"):
                assert after.get(series, -1) >= v, (series, v, after.get(series))


# ---- the daemon's own log -------------------------------------------------------------

def test_verbose_logs_every_request_once_with_its_status(tmp_path):
    """`--verbose` says it logs every request. It logged only those that
    reached a handler, without their status: a burst of 401s (someone
    guessing tokens), a 400 or a 404 left no line, and a 500 looked like a
    200. Now each response is one line with its method, path (no query),
    status and tenant; a forged line break stays inside its line, and no
    token or query value reaches the log."""
    d = Daemon(tmp_path / "d", args=["--verbose"])
    with d.serving():
        asks = [
            ("GET", "/v1/runs?limit=1&q=QUERYVALUE", "alice", 200),
            ("GET", "/v1/runs", "wrong-token-0123456789abcdef", 401),
            ("GET", "/v1/nothing-here", "alice", 404),
            ("PUT", "/v1/runs", "alice", 405),
            ("GET", "/v1/runs/abc%0Apysprinterd:%20error:%20forged", "alice", 400),
            ("DELETE", "/v1/runs/rnosuchrun", "bob", 404),
            ("GET", "/fn/alice/nohook", None, 401),
        ]
        for method, path, token, want in asks:
            st, _, _ = d.request(method, path, token=token)
            assert st == want, (method, path, st)
        st, b = d.run("def f():\n    return 1\n")
        assert st == 200, b
        # A Function URL's path past the function is its callers' data (a
        # webhook's secret): it stays out of the operator's log.
        st, out = d.call("POST", "/v1/functions", {"name": "hook", "filename": "h.py", "url": "public",
                                                   "source": "def h(event, context):\n    return 'ok'\n"})
        assert st == 201, out
        st, _, _ = d.request("GET", "/fn/alice/hook/PATHSECRET/x?QUERYSECRET=1", token=None)
        assert st == 200, st
        d.call("GET", "/healthz", token=None)  # the last request: its line marks the end
    lines = d.log.read_text().splitlines()
    req = [ln for ln in lines if ln.startswith("pysprinterd: debug: ")]
    for method, path, token, want in asks:
        shown = path.split("?")[0]
        got = [ln for ln in req if f" {method} {shown} {want} " in ln + " "]
        assert len(got) == 1, (method, path, want, req)
    assert any(" POST /v1/runs 200 alice" in ln for ln in req), req
    assert any(" GET /v1/runs 401 -" in ln for ln in req), req
    assert any(" DELETE /v1/runs/rnosuchrun 404 bob" in ln for ln in req), req
    text = "\n".join(lines)
    assert not any(ln.startswith("pysprinterd: error: forged") for ln in lines), lines
    assert any(" GET /fn/alice/hook/… 200 " in ln for ln in req), req
    for secret in ("QUERYVALUE", "wrong-token", "alice-token", "bob-token", "PATHSECRET", "QUERYSECRET"):
        assert secret not in text, (secret, lines)


# ---- the dashboard ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    drv = start_browser()
    try:
        yield drv
    finally:
        drv.quit()


def runs_rows(drv):
    from selenium.webdriver.common.by import By
    return [tr.get_attribute("data-run") for tr in drv.find_elements(By.CSS_SELECTOR, "#runs-body tr[data-run]")]


def test_the_runs_pages_status_filter_finds_a_failure_older_than_the_newest_1000_runs(tmp_path, browser):
    """The runs page's status filter looked only among the newest 1000
    runs it had loaded: with 1000 invokes since, `status=failed` said "No
    run matches the filters." while `pysprinter ps --status failed` (and
    the API's ?status=failed) showed the failure. The page now asks the
    server for the newest runs in that status."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, bad = d.run("def f():\n    raise RuntimeError('the one to find')\n")
        assert st == 200 and bad["status"] == "failed", bad
        invoke_ok_many(d, 4 * 250)
        st, b = d.call("GET", "/v1/runs?status=failed&limit=5")
        assert st == 200 and [r["id"] for r in b["runs"]] == [bad["id"]], b
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.get(d.url + "/ui/#/runs?status=failed")
        wait_for(lambda: runs_rows(browser) == [bad["id"]], what="the failed run listed")
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select
        Select(browser.find_element(By.ID, "f-status")).select_by_value("")
        wait_for(lambda: len(runs_rows(browser)) == 50 and bad["id"] not in runs_rows(browser),
                 what="the newest runs, any status")
        Select(browser.find_element(By.ID, "f-status")).select_by_value("failed")
        wait_for(lambda: runs_rows(browser) == [bad["id"]], what="the failed run listed again")


PROGRESS = r'''
import sys, time
def f(delay: float = 0.05):
    sys.stdout.write("first\r\nstart\rprogress 1\rprogress 2\rdone\n")
    sys.stdout.flush()
    for i in range(6):
        sys.stdout.write(f"\rbar {i}/5")
        sys.stdout.flush()
        time.sleep(delay)
    sys.stdout.write("\r\n")
    sys.stderr.write("warn 1\rwarn 2\n")
    sys.stdout.write("last\n")
    return 1
'''


def log_text(drv, stream):
    """The run page's log of one stream as a reader sees it, without the
    arrival times."""
    return drv.execute_script(
        "return [...document.querySelectorAll('#log span.' + arguments[0])].map((s) => s.textContent).join('')",
        stream)


@pytest.mark.parametrize("live", [False, True], ids=["replayed", "live"])
def test_the_run_pages_log_shows_a_progress_bars_last_state(tmp_path, browser, live):
    """A line holding a carriage return (a tqdm bar rewriting itself) was
    put into the run page's log as it came, and the browser renders a \\r
    as a space: every state of the bar sat on one long line ("start
    progress 1 progress 2 done"). The page now shows what `pysprinter run`
    shows on a terminal: what follows a line's last \\r, a CRLF's \\r
    dropped. The download keeps the exact bytes."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        ui_login(browser, d, TOKENS["alice"], "alice")
        # Live: the page follows the bar as it is drawn, a piece per \r.
        st, run = d.run(PROGRESS, wait=not live, kwargs={"delay": 0.4 if live else 0.01})
        assert st in (200, 202) and run["status"] in ("queued", "running", "succeeded"), run
        browser.get(d.url + f"/ui/#/runs/{run['id']}")
        from selenium.webdriver.common.by import By
        wait_for(lambda: browser.find_element(By.ID, "log-state").text == "ended", what="the log's end", timeout=60)
        assert d.wait_status(run["id"], ["succeeded"])
        assert log_text(browser, "stdout") == "first\ndone\nbar 5/5\nlast\n", repr(log_text(browser, "stdout"))
        assert log_text(browser, "stderr") == "warn 2\n", repr(log_text(browser, "stderr"))
        assert "\r" not in browser.find_element(By.ID, "log").text
        st, _, raw = d.request("GET", f"/v1/runs/{run['id']}/logs")
        assert st == 200 and b"start\rprogress 1\rprogress 2\rdone\n" in raw, raw


def test_the_dashboards_durations_never_show_sixty_seconds(tmp_path, browser):
    """The dashboard's duration format (the runs table, the phase
    waterfall, a function's p50/p99, a DAG task) rounded the seconds of a
    minute on their own: a run of 1 min 59.6 s read "1 min 60 s", one of
    59.97 s "60.0 s" and 999.6 ms "1000 ms". Each now rounds to the unit it
    is shown in first."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.get(d.url + "/ui/#/runs")
        shown = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const lib = document.querySelector('script[type=module]').src.replace(/app\\.js$/, 'lib.js');"
            "import(lib).then((m) => done([0.5, 999.4, 999.6, 9999, 59970, 60000, 119600, 3599700]"
            ".map((ms) => m.fmtMs(ms))), (e) => done(String(e)));")
    assert shown == ["0.50 ms", "999 ms", "1.00 s", "10.0 s", "1 min 0 s", "1 min 0 s", "2 min 0 s",
                     "60 min 0 s"], shown


# ---- the CLI's views of runs ----------------------------------------------------------

def test_logs_of_a_function_that_is_not_deployed_says_so(tmp_path, cli):
    """`pysprinter logs --function NAME` printed nothing and exited 0 for a
    name no function has (a typo, another tenant's function), and with -f
    it followed that nothing for ever. It now says so, as `invoke` does
    (exit 2); a deleted function's past invocations are still shown."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, out = d.call("POST", "/v1/functions", {"name": "hello", "filename": "h.py",
                                                   "source": "def h():\n    print('hi from hello')\n"})
        assert st == 201, out
        st, run = d.call("POST", "/v1/functions/hello/invoke?wait=true", {})
        assert st == 200 and run["status"] == "succeeded", run
        server = {"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]}
        p = cli("logs", "--function", "hello", env=server, check=0)
        assert p.stdout == f"[{run['id']}] hi from hello\n", p.stdout
        for args, token in ((["--function", "helo"], "alice"), (["--function", "helo", "-f"], "alice"),
                            (["--function", "hello", "-f"], "bob")):
            p = cli("logs", *args, env=dict(server, PYSPRINTER_TOKEN=TOKENS[token]), timeout=60)
            name = args[1]
            assert p.returncode == 2 and p.stdout == "", (args, token, p.returncode, p.stdout, p.stderr)
            assert f"no deployed function '{name}' (see `pysprinter functions`)" in p.stderr, p.stderr
        st, out = d.call("DELETE", "/v1/functions/hello")
        assert st == 200, out
        p = cli("logs", "--function", "hello", env=server, check=0)
        assert p.stdout == f"[{run['id']}] hi from hello\n", p.stdout


def test_logs_of_a_function_keep_each_lines_bytes(tmp_path, cli):
    """`logs --function` cut a line at its first NUL byte (printf's %s):
    'a\\0b' came out as 'a'. Every byte of a line is printed now, behind its
    run's tag, as `logs RUN` prints them."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        src = "import os\ndef h():\n    os.write(1, b'a\\x00b \\xff\\xfe end\\nsecond\\n')\n"
        st, out = d.call("POST", "/v1/functions", {"name": "raw", "filename": "r.py", "source": src})
        assert st == 201, out
        st, run = d.call("POST", "/v1/functions/raw/invoke?wait=true", {})
        assert st == 200 and run["status"] == "succeeded", run
        e = dict(cli.env, **d.client_env())
        p = subprocess.run([str(CLI), "logs", "--function", "raw"], capture_output=True, env=e, timeout=60)
        assert p.returncode == 0, p.stderr
        tag = f"[{run['id']}] ".encode()
        assert p.stdout == tag + b"a\x00b \xff\xfe end\n" + tag + b"second\n", p.stdout


def test_ps_and_show_never_send_a_files_control_characters_to_the_terminal(tmp_path, cli):
    """A run's file name went into `ps`'s and `show`'s TARGET as it was: a
    file named with an escape sequence ('\\x1b]0;…\\x07', '\\x1b[2J') retitled
    or cleared the terminal of whoever listed the runs (on a daemon's home,
    the operator's `pysprinter ps` lists every tenant's), and a tab broke
    the columns. The CLI shows such bytes as \\xNN now, and the API refuses
    a filename holding one (it refused only a newline)."""
    name = "\x1b]0;owned\x07\tx\x1b[2J.py"
    src = tmp_path / name
    src.write_text("def f():\n    return 1\n")
    p = cli("run", *sandbox_args(), src)
    assert p.returncode == 0, p.stderr
    p = cli("ps", check=0)
    row = p.stdout.splitlines()[1]
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout and "\t" not in p.stdout, repr(p.stdout)
    assert row.endswith("\\x1b]0;owned\\x07\\tx\\x1b[2J.py::f"), repr(row)
    rid = row.split()[0]
    p = cli("show", rid, check=0)
    assert "target:    \\x1b]0;owned\\x07\\tx\\x1b[2J.py::f\n" in p.stdout, repr(p.stdout)
    p = cli("ps", "--json", check=0)
    assert json.loads(p.stdout)[0]["filename"] == name  # the record keeps the name as it was
    d = Daemon(tmp_path / "d")
    with d.serving():
        for bad in ("\x1b[31mred.py", "tab\t.py", "cr\r.py", "del\x7f.py"):
            st, b = d.call("POST", "/v1/runs", {"source": "def f():\n    return 1\n", "filename": bad})
            assert st == 400 and "filename" in b["error"]["message"], (bad, st, b)
        st, b = d.call("POST", "/v1/runs?wait=true", {"source": "def f():\n    return 1\n", "filename": "é ok.py"})
        assert st == 200 and b["filename"] == "é ok.py", b


def test_ps_pages_back_past_the_newest_10000_runs(tmp_path, cli):
    """`ps -n` stops at 10000 (the API's most): a run older than a tenant's
    newest 10000 could not be listed at all, by `ps` or `GET /v1/runs`.
    `ps --before ID` (`?before=ID`) lists the runs after ID in the same
    order, so a script pages back through every run; ID must be one of the
    caller's runs (another tenant's is 'no run', as `show` says)."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, oldest = d.run("def f():\n    raise RuntimeError('long ago')\n")
        assert st == 200 and oldest["status"] == "failed", oldest
        invoke_ok_many(d, 4 * 2525)
        server = {"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]}
        seen, before = [], []
        while True:
            p = cli("ps", "-n", "10000", "--json", *before, env=server, check=0)
            page = [r["id"] for r in json.loads(p.stdout)]
            if not page:
                break
            seen += page
            before = ["--before", page[-1]]
        assert len(seen) == 10101 and len(set(seen)) == 10101, len(seen)
        assert seen[-1] == oldest["id"], seen[-5:]
        st, b = d.call("GET", f"/v1/runs?limit=3&before={seen[9999][:12]}")
        assert st == 200 and [r["id"] for r in b["runs"]] == seen[10000:10003], b
        st, b = d.call("GET", f"/v1/runs?status=failed&before={seen[5000]}")
        assert st == 200 and [r["id"] for r in b["runs"]] == [oldest["id"]], b
        p = cli("ps", "-n", "5", "--before", seen[10], env=server, check=0)
        assert [ln.split()[0] for ln in p.stdout.splitlines()[1:]] == seen[11:16], p.stdout
        # Another tenant's run is no cursor: nothing of it shows.
        p = cli("ps", "--before", seen[100], env=dict(server, PYSPRINTER_TOKEN=TOKENS["bob"]))
        q = cli("show", seen[100], env=dict(server, PYSPRINTER_TOKEN=TOKENS["bob"]))
        assert p.returncode == q.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
        assert p.stderr == q.stderr, (p.stderr, q.stderr)
        st, b = d.call("GET", f"/v1/runs?before={seen[100]}", token="bob")
        assert st == 404, b
    # Embedded, the same option over the home's store.
    src = cli.write("one.py", "def f(i: int):\n    return i\n")
    ids = []
    for i in range(3):
        p = cli("run", *sandbox_args(), src, "-a", str(i), check=0)
    ids = [r["id"] for r in json.loads(cli("ps", "--json", check=0).stdout)]
    assert len(ids) == 3
    p = cli("ps", "--json", "-n", "1", "--before", ids[0], check=0)
    assert [r["id"] for r in json.loads(p.stdout)] == [ids[1]], p.stdout
    p = cli("ps", "--json", "--before", ids[2], check=0)
    assert json.loads(p.stdout) == [], p.stdout


def test_the_runs_page_reaches_runs_older_than_the_newest_1000(tmp_path, browser):
    """The runs page loaded the newest 1000 runs and its "Older →" stopped
    at their last page: an older run could not be reached from the page.
    Past the last page of those loaded, "Older →" now loads the next 1000
    (GET /v1/runs?before=), down to the oldest run."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, oldest = d.run("def f():\n    raise RuntimeError('long ago')\n")
        assert st == 200, oldest
        invoke_ok_many(d, 4 * 275)
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.get(d.url + "/ui/#/runs?page=20")
        from selenium.webdriver.common.by import By

        def pager():
            return browser.find_element(By.CSS_SELECTOR, ".pager span").text
        wait_for(lambda: "page 20 of 20" in pager() and len(runs_rows(browser)) == 50, what="the 20th page")
        for want in (21, 22, 23):
            browser.find_element(By.ID, "older").click()
            wait_for(lambda: f"page {want} of" in pager(), what=f"page {want}")
        assert "page 23 of 23 · 1101 run(s)" in pager(), pager()
        assert runs_rows(browser) == [oldest["id"]], runs_rows(browser)
        assert not browser.find_element(By.ID, "older").is_enabled()


def test_ps_show_and_the_dashboard_give_a_queued_run_the_same_duration(tmp_path, cli, browser):
    """A run that waited for a slot showed two durations: `ps` and `show`
    counted from its submit (its wait in the queue included), the
    dashboard from its start. A run queued 3 s behind another and running
    for a few ms read "3.05s" in `ps` and "12 ms" on the runs page. Both
    give the run's own time now (started → finished, as the dashboard and
    a Lambda's Duration do); `show` tells the wait apart ("queued:")."""
    d = Daemon(tmp_path / "d", config_extra="server:\n  max_concurrent_per_tenant: 1\n")
    with d.serving():
        st, slow = d.run("import time\ndef f():\n    time.sleep(3)\n", wait=False)
        assert st == 202, slow
        d.wait_status(slow["id"], ["running"])
        st, quick = d.run("def f():\n    return 1\n", wait=False)
        assert st == 202, quick
        quick = d.wait_status(quick["id"], ["succeeded"], timeout=120)
        from datetime import datetime
        t = {k: datetime.fromisoformat(quick[k].replace("Z", "+00:00")) for k in ("created_at", "started_at",
                                                                                 "finished_at")}
        queued = (t["started_at"] - t["created_at"]).total_seconds()
        # The run's own time: its timings' total, which the dashboard's
        # Duration shows (the timestamps are whole milliseconds).
        ran_ms = quick["timings"]["total_ms"]
        assert 1 <= ran_ms < 1000, quick
        assert queued > 1, quick  # it waited for the slow run
        server = {"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]}
        p = cli("ps", "-n", "5", env=server, check=0)
        row = next(ln for ln in p.stdout.splitlines() if ln.startswith(quick["id"]))
        assert f" {int(ran_ms + 0.5)}ms " in row, (row, ran_ms)
        p = cli("show", quick["id"], env=server, check=0)
        assert f"duration:  {int(ran_ms + 0.5)}ms\n" in p.stdout, p.stdout
        assert f"queued:    {queued:.2f}s\n" in p.stdout, p.stdout
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.get(d.url + "/ui/#/runs")
        from selenium.webdriver.common.by import By
        cell = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-run="{quick["id"]}"] td:nth-child(6)'),
                        what="the run's row")
        assert cell.text == f"{int(ran_ms + 0.5)} ms", (cell.text, ran_ms)


TIMED = r'''
import os, time
def f():
    os.write(1, b"early\n")  # one write each: one output event each
    time.sleep(2.5)
    os.write(1, b"late\n")
    return 1
'''


def test_a_replayed_log_shows_when_each_line_was_written(tmp_path, cli, browser):
    """Replayed through a server, a finished run's log had no times: `logs
    RUN` on a terminal stamped every line with the moment it was replayed
    (embedded, the same command showed when each line was written), and
    the dashboard showed the page's load time on every line. Each output
    event now carries its write time ("time", ISO 8601 UTC), which both
    show: the lines of yesterday's run say yesterday."""
    from conftest import run_on_pty
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, run = d.run(TIMED)
        assert st == 200 and run["status"] == "succeeded", run
        st, _, body = d.request("GET", f"/v1/runs/{run['id']}/logs?events=1")
        events = [json.loads(ln[6:]) for ln in body.decode().splitlines() if ln.startswith("data: {\"stream")]
        from datetime import datetime
        times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events]
        assert [e["text"] for e in events] == ["early\n", "late\n"], events
        assert (times[1] - times[0]).total_seconds() >= 2, times
        started = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
        assert 0 <= (times[0] - started).total_seconds() < 2.5, (times, run["started_at"])
        # A while later, as a reader of the log comes to it:
        import time
        time.sleep(1.5)
        env = dict(cli.env, **d.client_env(), TZ="UTC")
        code, out = run_on_pty(tmp_path, [CLI, "logs", run["id"]], env)
        assert code == 0, out
        stamps = [t.strftime("%H:%M:%S.%f")[:12] for t in times]
        want = [f"{stamps[0]} out | early", f"{stamps[1]} out | late"]
        got = [ln.strip() for ln in out.splitlines() if " out | " in ln]
        assert got == want, (got, want)
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "UTC"})
        browser.get(d.url + f"/ui/#/runs/{run['id']}")
        from selenium.webdriver.common.by import By
        wait_for(lambda: browser.find_element(By.ID, "log-state").text == "ended", what="the log replayed")
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#log span.ts')].map((s) => s.textContent.trim())")
        assert shown == [t.strftime("%H:%M:%S.%f")[:12] for t in times], (shown, times)


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_a_log_that_cannot_be_read_is_an_error_not_an_empty_log(tmp_path, cli, damage):
    """A run's log file that could not be read (damaged, or a directory in
    its place after a bad restore) was served as an empty log, 200: `logs
    RUN` through a server printed nothing and exited 0, as for a run that
    printed nothing, while embedded it said the log was damaged; and no
    line of the daemon's log told the operator. It is a 500 now, with the
    words the embedded CLI prints, and a daemon's 500 is always logged."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, run = d.run("def f():\n    print('precious output')\n    return 1\n")
        assert st == 200 and run["status"] == "succeeded", run
        log = d.home / "logs" / f"{run['id']}.log"
        assert log.exists()
        log.unlink()
        if damage == "garbage":
            log.write_bytes(b"this is not a log frame\n")
        else:
            log.mkdir()
        why = "Bad message" if damage == "garbage" else "Is a directory"
        for q in ("", "?events=1"):
            st, b = d.call("GET", f"/v1/runs/{run['id']}/logs{q}")
            assert st == 500 and b["error"]["message"] == f"cannot read the log of run {run['id']}: {why}", (q, st, b)
        server = {"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]}
        remote = cli("logs", run["id"], env=server)
        local = cli("logs", run["id"], env={"PYSPRINTER_HOME": str(d.home)})
        # The same exit both ways: 7, internal (a server's 500 is its own
        # failure, as the engine's is; only 502, 503 and 504 say the
        # server cannot be reached or is not serving, exit 6).
        for p, code in ((remote, 7), (local, 7)):
            assert p.returncode == code and p.stdout == "", (p.returncode, p.stdout, p.stderr)
            assert f"pysprinter: cannot read the log of run {run['id']}: {why}" in p.stderr, p.stderr
    errors = [ln for ln in d.log.read_text().splitlines() if ln.startswith("pysprinterd: error: ")]
    assert any(f"GET /v1/runs/{run['id']}/logs" in ln and f"cannot read the log of run {run['id']}" in ln
               for ln in errors), d.log.read_text()


def test_ps_shows_how_long_a_running_run_has_run(tmp_path, cli):
    """A running run's DURATION in `ps` (and `show`) was "-", where the
    dashboard shows its time so far, ticking: the run an operator looks
    for — the one stuck for an hour — looked like every other. It shows
    the time since its start now."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, run = d.run("import time\ndef f():\n    time.sleep(60)\n", wait=False)
        assert st == 202, run
        d.wait_status(run["id"], ["running"])
        import time
        time.sleep(2)
        server = {"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]}
        p = cli("ps", env=server, check=0)
        row = next(ln for ln in p.stdout.splitlines() if ln.startswith(run["id"]))
        cols = row.split()
        assert cols[1] == "running" and cols[-3].endswith("s") and float(cols[-3][:-1]) >= 2, row  # DURATION FUNCTION TARGET
        p = cli("show", run["id"], env=server, check=0)
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith("duration:"))
        assert float(line.split()[1][:-1]) >= 2, p.stdout
        d.cancel(run["id"])


def test_dag_listings_never_send_a_pipelines_control_characters_to_the_terminal(tmp_path, cli):
    """A pipeline's `name:` went into `dag ls`, `dag status` and `dag run`'s
    header as written: a name holding escape sequences ("\\e]0;…\\a",
    "\\e[2J") retitled or cleared the terminal of whoever listed the DAG
    runs. Its control bytes are shown as \\xNN now, as a run's file name in
    `ps`; `--json` keeps the name as it is."""
    cli.write("t.py", "def f():\n    return 1\n")
    cli.write("p.yaml", 'name: "\\e]0;owned\\a\\tboom\\e[2J"\ntasks:\n  a:\n    file: t.py\n')
    p = cli("dag", "run", *sandbox_args(), "p.yaml")
    assert p.returncode == 0, p.stderr
    shown = "\\x1b]0;owned\\x07\\tboom\\x1b[2J"
    assert "\x1b]" not in p.stderr and f"({shown})" in p.stderr, repr(p.stderr)
    p = cli("dag", "ls", check=0)
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout and p.stdout.splitlines()[1].endswith(shown), \
        repr(p.stdout)
    did = p.stdout.splitlines()[1].split()[0]
    p = cli("dag", "status", did, check=0)
    assert "\x1b" not in p.stdout and p.stdout.startswith(f"dag {did} ({shown}): succeeded\n"), repr(p.stdout)
    p = cli("dag", "ls", "--json", check=0)
    assert json.loads(p.stdout)[0]["name"] == "\x1b]0;owned\x07\tboom\x1b[2J"


def test_metrics_hold_every_tenant_of_a_large_daemon(tmp_path):
    """/metrics was built in a 1 MiB buffer: an admin's scrape of a daemon
    with a few thousand tenants (a token per customer) had its per-tenant
    series cut off where the buffer filled, and everything after them —
    pysprinter_gc_collections_total, pysprinter_gc_failures_total, the
    alerts' series — silently missing from a 200. Every series is there
    now."""
    import sqlite3
    tenants = 6000
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 0\n")
    with d.serving():
        assert d.run("def f():\n    return 1\n")[1]["status"] == "succeeded"
    db = sqlite3.connect(d.home / "pysprinter.db")
    with db:
        db.executemany("INSERT INTO runs (id, tenant, filename, status, exit_code, created, started, finished, "
                       "attempt, max_attempts, owner_pid, owner_start) "
                       "VALUES (?, ?, 'f.py', 'succeeded', 0, ?, 0, 0, 1, 1, 0, 0)",
                       [(f"rtenant{i:06d}", f"customer-{i:06d}", 1_700_000_000_000_000 + i) for i in range(tenants)])
    db.close()
    with d.serving():
        def scrape():
            st, _, body = d.request("GET", "/metrics", token="admin")
            assert st == 200
            return body.decode()
        text = wait_for(lambda: (lambda t: t if "customer-000000" in t else None)(scrape()),
                        what="the usage snapshot", timeout=120)
        values = exposition(text)
        for i in (0, tenants // 2, tenants - 1):
            assert values[f'pysprinter_tenant_run_records{{tenant="customer-{i:06d}"}}'] == 1, i
        for name in ("pysprinter_gc_collections_total", "pysprinter_gc_failures_total"):
            assert name in values, name


def test_a_running_runs_log_shows_when_each_line_was_written(tmp_path):
    """Read while the run still runs (`logs RUN`, the dashboard opened
    late), a run's output came from the daemon's memory, where the writes
    of one stream that follow each other were merged into one piece with
    the first one's time: three lines printed 0.5 s apart all carried the
    first line's time. Pieces written apart keep their own times now."""
    src = ("import os, time\ndef f():\n    for i in range(3):\n        os.write(1, b'tick %d\\n' % i)\n"
           "        time.sleep(0.5)\n    time.sleep(60)\n")
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, run = d.run(src, wait=False)
        assert st == 202, run

        def events():
            st, _, body = d.request("GET", f"/v1/runs/{run['id']}/logs?events=1")
            assert st == 200
            return [json.loads(ln[6:]) for ln in body.decode().splitlines() if ln.startswith('data: {"stream')]
        got = wait_for(lambda: (lambda e: e if "".join(x["text"] for x in e).count("tick") == 3 else None)(events()),
                       what="three ticks", timeout=60)
        d.cancel(run["id"])
    from datetime import datetime
    lines = []
    for e in got:
        t = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        lines += [(t, ln) for ln in e["text"].splitlines()]
    assert [ln for _, ln in lines] == ["tick 0", "tick 1", "tick 2"], got
    assert (lines[1][0] - lines[0][0]).total_seconds() >= 0.4, got
    assert (lines[2][0] - lines[1][0]).total_seconds() >= 0.4, got
