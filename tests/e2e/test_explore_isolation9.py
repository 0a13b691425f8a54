"""helper-231's red team of what one tenant can learn about another on a
shared daemon: the warm pool's listing (GET /v1/workers, `pysprinter
workers`, the dashboard). Each test is
named after what a tenant checks, and failed on the daemon before its fix."""
import os

import pytest

from conftest import CLI
from daemonlib import Daemon, sandbox_mode

# alice's env: a requirement set of her own, so its worker is hers alone.
SLEEPY = "import time\ndef f(s: float = 30):\n    time.sleep(s)\n    return 'slept'\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation9")
    with Daemon(root / "d", sandbox=sandbox_mode(root)).serving(clean_exit=False) as running:
        yield running


def workers(d, token):
    st, w = d.call("GET", "/v1/workers", token=token)
    assert st == 200, w
    return w


def test_a_tenant_sees_no_other_tenants_activity_in_the_warm_pool(d):
    """GET /v1/workers showed every tenant every warm worker with its host
    pid, the runs in flight on it (`busy`), its memory and its idle time:
    bob watched alice's runs come and go (busy 1, idle 0) on the base
    worker every run shares, and the validation worker and the blank one
    told him when anyone's file was checked or a cold env started. A
    non-admin token now sees only the workers of environments its runs
    use, with what concerns the environment (no pid, busy, instances, PSS,
    idle or age), and neither the validator nor the blank worker; an admin
    token sees every worker, every field."""
    st, run = d.run(SLEEPY, wait=False, token="alice")
    assert st == 202, run
    d.wait_status(run["id"], ["running"], token="alice")
    try:
        theirs = workers(d, "bob")["workers"]
        kinds = {x["kind"] for x in theirs}
        assert kinds <= {"worker"}, theirs
        for x in theirs:
            for field in ("pid", "busy", "instances", "pss_bytes", "idle_s", "age_s"):
                assert field not in x, (field, x)
        # The owner's view is the same (the base worker serves every tenant:
        # its counts are everyone's runs), and says as much of her env.
        mine = workers(d, "alice")["workers"]
        assert all(x["kind"] == "worker" and "busy" not in x and "pid" not in x for x in mine), mine
        # An admin sees everything: the busy worker, the validator, pids.
        everything = workers(d, "admin")["workers"]
        assert any(x["kind"] == "worker" and x["busy"] >= 1 for x in everything), everything
        assert any(x["kind"] == "validator" for x in everything), everything
        assert all(isinstance(x["pid"], int) and x["pid"] > 0 for x in everything if x["kind"] != "instance")
    finally:
        d.cancel(run["id"], token="alice")


def test_a_tenant_still_sees_its_own_instances_and_the_pools_totals(d):
    """What a non-admin still reads: its deployed functions' warm instances
    (all fields: they are its own) and the pool's totals, which are the
    daemon's aggregate (as /metrics gives them)."""
    st, out = d.call("POST", "/v1/functions", {"name": "ownfn", "source": "def f():\n    return 7\n"})
    assert st in (200, 201), out
    st, out = d.call("POST", "/v1/functions/ownfn/invoke?wait=true", {})
    assert st == 200 and out["result"] == 7, out
    mine = workers(d, "alice")
    inst = [x for x in mine["workers"] if x["kind"] == "instance"]
    assert [x["function"].split("@")[0] for x in inst] == ["ownfn"], inst
    assert all("busy" in x and "invocations" in x for x in inst), inst
    assert not [x for x in workers(d, "bob")["workers"] if x["kind"] == "instance"]
    assert mine["pool"]["workers"] >= 1 and mine["pool"]["instances"] >= 1, mine["pool"]


def test_the_workers_verb_prints_dashes_where_a_tenant_is_not_told(d, tmp_path):
    """`pysprinter workers` printed 0 for the fields a non-admin is no
    longer given (a pid of 0, 0 busy, 0 B): a dash says "not yours to
    see"; an admin's listing still prints the worker's pid."""
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(d.client_env("bob"), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"), NO_COLOR="1")
    p = subprocess.run([str(CLI), "workers"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[3:] if ln.strip()]
    assert rows and all(r[0] == "worker" and r[1:5] == ["-", "-", "-", "-"] for r in rows), p.stdout
    env.update(d.client_env("admin"))
    p = subprocess.run([str(CLI), "workers"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[3:] if ln.strip()]
    assert any(r[0] == "validator" and r[1].isdigit() and int(r[1]) > 0 for r in rows), p.stdout
