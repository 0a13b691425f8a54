"""A request's `retries` is granted like its limits (docs/api.md "What a
tenant can and cannot do"): it may lower what the operator's config grants
its tenant (`limits.maxima.retries`, `tenants.NAME.maxima.retries`), never
raise it. A run, an invoke, a deploy and a DAG task asking for more is a
403 naming the config key that binds; the default (server.max_attempts - 1,
or a deployed function's retries at each invoke) is lowered to the grant of
the moment, never raised. Without the keys nothing changes."""

import pytest

from conftest import DAEMON
from daemonlib import Daemon, check_config
from daemonlib import reload_config as reload

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

QUICK = "def f():\n    return 1\n"
GRANTS = ("limits:\n  maxima: {retries: 2}\n"
          "tenants:\n  bob:\n    maxima: {retries: 0}\n")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("retrycap"), config_extra=GRANTS).serving() as running:
        yield running


def forbidden(st, b, key):
    assert st == 403 and b["error"]["code"] == "forbidden", (st, b)
    assert f"ask the operator: config '{key}'" in b["error"]["message"], b


def test_a_run_cannot_ask_for_more_retries_than_its_tenant_is_granted(d):
    """`retries: 3` ran with 4 attempts under `limits.maxima.retries: 2`:
    the operator's cap was not one."""
    st, b = d.run(QUICK, wait=False, retries=3)
    forbidden(st, b, "limits.maxima")
    assert "retries is 3, above the 2" in b["error"]["message"], b
    st, b = d.run(QUICK, wait=False, retries=2)
    assert st == 202 and b["max_attempts"] == 3, b
    # bob's own cap is the lower: his key is the one to ask for.
    st, b = d.run(QUICK, wait=False, token="bob", retries=1)
    forbidden(st, b, "tenants.bob.maxima")
    st, b = d.run(QUICK, wait=False, token="bob", retries=0)
    assert st == 202 and b["max_attempts"] == 1, b


def test_the_default_attempts_are_lowered_to_the_grant(d):
    """server.max_attempts (3) is the default; bob, granted 0 retries, got
    3 attempts by asking nothing."""
    st, b = d.run(QUICK, wait=False)
    assert st == 202 and b["max_attempts"] == 3, b
    st, b = d.run(QUICK, wait=False, token="bob")
    assert st == 202 and b["max_attempts"] == 1, b


def test_a_deploy_and_an_invoke_cannot_ask_for_more_retries(d):
    st, b = d.call("POST", "/v1/functions", {"name": "rc-many", "source": QUICK, "retries": 3})
    forbidden(st, b, "limits.maxima")
    st, b = d.call("POST", "/v1/functions", {"name": "rc-bob", "source": QUICK, "retries": 1}, token="bob")
    forbidden(st, b, "tenants.bob.maxima")
    st, b = d.call("POST", "/v1/functions", {"name": "rc-ok", "source": QUICK, "retries": 1})
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions/rc-ok/invoke", {"retries": 5})
    forbidden(st, b, "limits.maxima")
    st, b = d.call("POST", "/v1/functions/rc-ok/invoke", {})
    assert st == 202 and b["max_attempts"] == 2, b
    st, b = d.call("POST", "/v1/functions/rc-ok/invoke", {"retries": 0})
    assert st == 202 and b["max_attempts"] == 1, b


def test_a_dag_task_cannot_ask_for_more_retries(d):
    """A DAG task's retries run it again, as a run's do."""
    pipeline = "tasks:\n  a: {file: f.py::f, retries: 3}\n"
    st, b = d.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"f.py": QUICK}})
    forbidden(st, b, "limits.maxima")
    assert "task 'a'" in b["error"]["message"], b


def test_a_deploys_retries_are_lowered_at_each_invoke_to_the_grant_now(tmp_path):
    """A deploy's retries were kept for every invoke after a reload lowered
    the tenant's grant: the operator's new cap held for new runs only."""
    d = Daemon(tmp_path, config_extra="limits:\n  maxima: {retries: 4}\n").start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "rc-f", "source": QUICK, "retries": 4})
        assert st == 201, b
        st, b = d.call("POST", "/v1/functions/rc-f/invoke", {})
        assert st == 202 and b["max_attempts"] == 5, b
        reload(d, d.config.read_text().replace("retries: 4", "retries: 1"))
        st, b = d.call("POST", "/v1/functions/rc-f/invoke", {})
        assert st == 202 and b["max_attempts"] == 2, b
        # The Lambda route too (an Event invocation's id is its run's).
        st, hdrs, _ = d.request("POST", "/2015-03-31/functions/rc-f/invocations", raw=b"{}",
                                headers={"X-Amz-Invocation-Type": "Event"})
        assert st == 202, hdrs
        st, b = d.call("GET", "/v1/runs/" + hdrs["x-amzn-requestid"])
        assert st == 200 and b["max_attempts"] == 2, b
    finally:
        d.stop()


def test_without_the_keys_nothing_changes(tmp_path):
    """No `retries` maxima: a request may ask 0..10 as before, whatever
    server.max_attempts (the default, not a cap) says."""
    d = Daemon(tmp_path, config_extra="server:\n  max_attempts: 1\n").start()
    try:
        st, b = d.run(QUICK, wait=False)
        assert st == 202 and b["max_attempts"] == 1, b
        st, b = d.run(QUICK, wait=False, retries=10)
        assert st == 202 and b["max_attempts"] == 11, b
    finally:
        d.stop()


def test_check_config_names_what_the_retries_grant_does(tmp_path):
    code, err = check_config(tmp_path, "limits:\n  maxima: {retries: 1}\nserver:\n  max_attempts: 5\n")
    assert code == 0, err
    assert "'server.max_attempts' (5) is more than 1 + 'limits.maxima.retries' (1)" in err, err
    code, err = check_config(tmp_path, "limits:\n  maxima: {retries: 11}\n")
    assert code != 0 and "'limits.maxima.retries' must be an integer from 0 to 10" in err, err
    code, err = check_config(tmp_path, "limits:\n  defaults: {retries: 1}\n")
    assert code != 0 and "unknown key 'limits.defaults.retries'" in err, err
    code, err = check_config(tmp_path, "limits:\n  maxima: {retries: 1}\ntenants:\n  bob:\n    maxima: {retries: 3}\n")
    assert code == 0 and "'tenants.bob.maxima.retries' (3) is above 'limits.maxima.retries' (1)" in err, err
