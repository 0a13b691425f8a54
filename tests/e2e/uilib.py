"""The dashboard's browser for the UI tests: Debian's chromium driven by
chromedriver (python3-selenium), both installed by tools/install-deps.sh —
nothing downloads a browser. A machine without them fails these tests: CI
installs them, so a missing browser is a broken setup, not a reason to
skip."""
import os
import time

import pytest

from daemonlib import TOKENS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def wait_for(cond, timeout=20, what="condition", interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
        except Exception as e:  # a stale element mid-render: look again
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def start_browser():
    """A headless chromium (its console kept for the tests that read it);
    the caller quits it."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(p):
            pytest.fail(f"{p} is missing: run tools/install-deps.sh (make deps) — the UI tests need Debian's "
                        "chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1366,900", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    return drv


def ui_login(drv, d, token, who):
    """Logs browser drv in to daemon d's dashboard with token (a clean
    cookie jar first); waits for the header to name who."""
    from selenium.webdriver.common.by import By
    drv.delete_all_cookies()
    drv.get(d.url + "/ui/login")
    tok = drv.find_element(By.ID, "token")
    tok.clear()
    tok.send_keys(token)
    drv.find_element(By.ID, "login-submit").click()
    wait_for(lambda: drv.find_element(By.ID, "who").text.startswith(who), what=f"logged in as {who}")


# The fixtures the dashboard test files share: a file imports the ones it
# uses (`from uilib import drv  # noqa: F401 (the fixture)`).


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A local package index (tests/e2e/pkgindex.py) with uipkg 1.3, which
    requires uidep>=2: a run's lock has something to show."""
    import pkgindex
    wheels = tmp_path_factory.mktemp("wheels")
    idx = pkgindex.Index()
    idx.add(pkgindex.build_wheel(wheels, "uidep", "2.0", files={"uidep/__init__.py": "V = 2\n"}))
    idx.add(pkgindex.build_wheel(wheels, "uipkg", "1.3", files={"uipkg/__init__.py": "import uidep\nV = 13\n"},
                                 requires=["uidep>=2"]))
    idx.start()
    try:
        yield idx
    finally:
        idx.stop()


@pytest.fixture(scope="module")
def drv(d):
    """A browser logged in as alice to the module's daemon (its fixture d),
    for the whole module."""
    b = start_browser()
    try:
        ui_login(b, d, TOKENS["alice"], "alice")
        yield b
    finally:
        b.quit()


def deep_link(drv, d, route):
    """Opens route (a hash route) of daemon d's dashboard as a fresh page
    load, as a deep link does: the reload after get, which only moves the
    hash of a dashboard page already open."""
    drv.get(d.url + "/ui/" + route)
    drv.refresh()


def css(drv, sel):
    return drv.find_elements("css selector", sel)


def text_of(drv, sel):
    """innerText of the first element sel names ('' when there is none):
    the text as the page lays it out, white space included."""
    return drv.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", sel)


def shown_runs(drv):
    """The ids of the runs the runs table shows, top to bottom."""
    return drv.execute_script("return [...document.querySelectorAll('#runs-body tr[data-run]')]"
                              ".map((r) => r.dataset.run)")
