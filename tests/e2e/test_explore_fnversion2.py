"""Deleting one version of a deployed function, the gaps after
test_explore_fnversion.py: in a cluster the other nodes' warm instances
of the deleted version (and of a deleted function) retire; a schedule is
never left pinned to a deleted version; the dashboard deletes a version."""
import time

import pytest

from clusterlib import REDIS, wait_until
from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode
from test_cluster import nodes, redis  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SRC = """
def handler(event, context):
    return {"v": %d}
"""


def kept_instances(node, prefix):
    st, w = node.call("GET", "/v1/workers")
    assert st == 200, w
    return [i.get("function") or "" for i in w["workers"]
            if i.get("kind") == "instance" and (i.get("function") or "").startswith(prefix)]


def deploy(node, name, v):
    st, b = node.call("POST", "/v1/functions", {"name": name, "source": SRC % v})
    assert st == 201 and b["version"] == v, b


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_in_a_cluster_a_deleted_version_retires_on_every_node(nodes, redis):
    """Node B (role all, the only worker) holds warm instances of versions 1
    and 2; version 1 is deleted through gateway A. Before, only A retired
    its own instances (it has none): B kept version 1's warm until its TTL.
    Now fn_delete_version.lua tells every node, as fn_delete.lua does for a
    whole function: B's version-1 instance stops, version 2's stays, and
    B answers 404 for version 1."""
    a = nodes("ga", "gateway")
    b = nodes("nb", "all")
    for v in (1, 2):
        deploy(a, "twov", v)
    for v in (1, 2):
        st, r = b.call("POST", "/v1/functions/twov/invoke?wait=true", {"args": [{}, None], "version": v})
        assert st == 200 and r["result"] == {"v": v}, r
    assert kept_instances(b, "twov@1~") and kept_instances(b, "twov@2~")
    st, r = a.call("DELETE", "/v1/functions/twov?version=1")
    assert st == 200 and r["deleted"], r
    wait_until(lambda: not kept_instances(b, "twov@1~"), 60, "B's warm instance of version 1 to retire")
    assert kept_instances(b, "twov@2~")
    st, r = b.call("POST", "/v1/functions/twov/invoke?wait=true", {"args": [{}, None], "version": 1})
    assert st == 404, r
    st, r = b.call("GET", "/v1/functions/twov")
    assert st == 200 and r["versions"] == [2], r
    # The whole function, the same way.
    st, r = a.call("DELETE", "/v1/functions/twov")
    assert st == 200, r
    wait_until(lambda: not kept_instances(b, "twov@"), 60, "B's warm instances of the function to retire")


class GateDaemon(Daemon):
    """A version delete waits at PYSPRINTER_TEST_VERSION_DELETE_GATE (after
    its pin check, before its delete) until the gate file exists."""

    def __init__(self, root, **kw):
        super().__init__(root, **kw)
        self.gate = self.root / "gate"

    def env(self):
        return {**super().env(), "PYSPRINTER_TEST_VERSION_DELETE_GATE": str(self.gate)}


@pytest.fixture(scope="module")
def gd(tmp_path_factory):
    root = tmp_path_factory.mktemp("fnversion2")
    with GateDaemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


PINNED = {"every": "1h", "paused": True, "args": [{}, None]}


def test_a_schedule_pinned_while_its_version_is_deleted_is_refused(gd):
    """The delete's "no schedule pins it" check and its delete were two
    steps, a schedule add's "the version is there" check and its insert
    two more: a schedule pinned to version 1 added between the delete's
    check and its delete was stored (201), pinned to a version the delete
    then removed (200). The delete here is held between its two steps (a
    test gate) while the schedule is added: now the add waits for the
    delete and is refused (404, no version 1), and no schedule is left
    pinned to it."""
    import threading
    for v in (1, 2):
        deploy(gd, "racy", v)
    out = {}

    def delete():
        out["delete"] = gd.call("DELETE", "/v1/functions/racy?version=1")

    def add():
        out["add"] = gd.call("POST", "/v1/schedules", {"name": "racy-pin", "function": "racy", "version": 1,
                                                        **PINNED})
    td = threading.Thread(target=delete)
    td.start()
    reached = gd.gate.with_name("gate.reached")
    wait_until(reached.exists, 60, "the version delete to reach its gate")
    ta = threading.Thread(target=add)
    ta.start()
    ta.join(10)  # before: answered 201 while the delete waited; now it waits for the delete
    gd.gate.touch()
    td.join(60)
    ta.join(60)
    assert out["delete"][0] == 200, out
    st, b = out["add"]
    assert st == 404 and b["error"]["message"] == "function 'racy' has no version 1", out
    st, b = gd.call("GET", "/v1/schedules")
    assert st == 200 and not [s for s in b["schedules"] if s["name"] == "racy-pin"], b


def test_schedule_add_of_a_deleted_version_is_refused_and_a_pin_still_holds_its_version(gd):
    """Without a race: a deleted version cannot be pinned (404 naming it),
    and a version pinned first is still refused to the delete (409)."""
    gd.gate.touch()
    for v in (1, 2, 3):
        deploy(gd, "seq", v)
    st, b = gd.call("DELETE", "/v1/functions/seq?version=1")
    assert st == 200, b
    st, b = gd.call("POST", "/v1/schedules", {"name": "seq-pin1", "function": "seq", "version": 1, **PINNED})
    assert st == 404 and "has no version 1" in b["error"]["message"], b
    st, b = gd.call("POST", "/v1/schedules", {"name": "seq-pin2", "function": "seq", "version": 2, **PINNED})
    assert st == 201, b
    st, b = gd.call("DELETE", "/v1/functions/seq?version=2")
    assert st == 409 and "seq-pin2" in b["error"]["message"], b


# ---- the dashboard: a version's delete button -------------------------------------------


@pytest.fixture(scope="module")
def ud(tmp_path_factory):
    root = tmp_path_factory.mktemp("fnversion2ui")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


def test_the_function_page_deletes_a_version_after_asking(ud):
    """The function page had no way to delete one version. Now each
    version has a Delete button that asks first (a dismissed dialog
    deletes nothing); the latest's is disabled and says why; a version a
    schedule pins is refused with the API's words; a deleted version leaves
    the page, and deleting the version shown turns the page to the latest."""
    from uilib import deep_link, start_browser, text_of, ui_login, wait_for
    from daemonlib import TOKENS
    for v in (1, 2, 3):
        deploy(ud, "uiv", v)
    st, b = ud.call("POST", "/v1/schedules", {"name": "uiv-pin", "function": "uiv", "version": 2, **PINNED})
    assert st == 201, b
    drv = start_browser()
    try:
        ui_login(drv, ud, TOKENS["alice"], "alice")
        deep_link(drv, ud, "#/functions/uiv?version=1")

        def button(v):
            found = drv.find_elements("css selector", f'#fn-version-deletes button[data-version="{v}"]')
            return found[0] if found else None
        wait_for(lambda: button(3), what="the version delete buttons")
        latest = button(3)
        assert not latest.is_enabled()
        assert "deleted only with the function" in latest.get_attribute("title")
        assert "deleted only with the function" in text_of(drv, "#fn-latest-kept")
        assert button(1).is_enabled() and button(2).is_enabled()

        def versions():
            st, b = ud.call("GET", "/v1/functions/uiv")
            return b["versions"]
        # Dismissed: nothing deleted.
        button(1).click()
        alert = wait_for(lambda: drv.switch_to.alert, what="the confirm dialog")
        assert "Delete version 1 of uiv" in alert.text
        alert.dismiss()
        assert versions() == [1, 2, 3]
        # Pinned by a schedule: refused, the API's words shown.
        button(2).click()
        wait_for(lambda: drv.switch_to.alert, what="the confirm dialog").accept()
        wait_for(lambda: "uiv-pin" in text_of(drv, "#fn-delete-status"), what="the refusal")
        assert versions() == [1, 2, 3]
        # Unpinned and deleted: the version gone from the page's lists.
        assert ud.call("DELETE", "/v1/schedules/uiv-pin")[0] == 200
        button(2).click()
        wait_for(lambda: drv.switch_to.alert, what="the confirm dialog").accept()
        wait_for(lambda: text_of(drv, "#fn-delete-status") == "Deleted version 2.", what="the delete")
        assert versions() == [1, 3]
        assert button(2) is None and not drv.find_elements("css selector", '#fn-versions [data-version="2"]')
        # The version shown (1): the page turns to the latest.
        button(1).click()
        wait_for(lambda: drv.switch_to.alert, what="the confirm dialog").accept()
        wait_for(lambda: drv.execute_script("return location.hash") == "#/functions/uiv", what="the latest's page")
        wait_for(lambda: text_of(drv, "#fn-version").startswith("3"), what="version 3 shown")
        assert versions() == [3]
    finally:
        drv.quit()
