"""The dashboard on a phone (docs/ui.md), in Debian's chromium
(tests/e2e/uilib.py), against one real pysprinterd for the module."""
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
