"""The dashboard's browser for the UI tests: Debian's chromium driven by
chromedriver (python3-selenium), both installed by tools/install-deps.sh —
nothing downloads a browser. A machine without them fails these tests: CI
installs them, so a missing browser is a broken setup, not a reason to
skip."""
import os
import time

import pytest

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
