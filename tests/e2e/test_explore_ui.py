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
from uilib import start_browser, ui_login, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    # One run of the tenant at a time: a second one waits in the queue.
    daemon = Daemon(tmp_path_factory.mktemp("uix"), config_extra="server:\n  max_concurrent_per_tenant: 1\n")
    with daemon.serving(clean_exit=False) as running:
        yield running


@pytest.fixture(scope="module")
def drv(d):
    b = start_browser()
    try:
        ui_login(b, d, TOKENS["alice"], "alice")
        yield b
    finally:
        b.quit()


def go(drv, d, route):
    """Opens route (a hash route) as a fresh page load: what a deep link or
    a reload does."""
    drv.get(d.url + "/ui/" + route)


def css(drv, sel):
    return drv.find_elements("css selector", sel)


def text_of(drv, sel):
    """innerText of the first element sel names ('' when there is none):
    the text as the page lays it out, white space included."""
    return drv.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", sel)


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
    first = run(d, "def alpha():\n    return 1\n")
    run(d, "def beta():\n    return 2\n")
    go(drv, d, "#/runs?function=alpha")
    wait_for(lambda: "●" in text_of(drv, "#live"), what="the live table")
    wait_for(lambda: [r.get_attribute("data-run") for r in css(drv, "tr[data-run]")] == [first["id"]],
             what="alpha's run alone")
    Select(css(drv, "#f-function")[0]).select_by_value("")
    wait_for(lambda: len(css(drv, "tr[data-run]")) >= 2, what="every run")
    new = run(d, "def gamma():\n    return 3\n")
    wait_for(lambda: css(drv, f'tr[data-run="{new["id"]}"]'), what="gamma's run, live")
    assert drv.execute_script("return document.getElementById('f-function').value") == ""
    assert css(drv, f'tr[data-run="{first["id"]}"]')
    assert "function=" not in drv.current_url
