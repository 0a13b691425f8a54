"""Idle warm instances are frozen lazily (docs/workers.md "Idle instances are
frozen"): an instance idle past the grace (20 ms) is frozen, one invoked
back to back stays thawed between its invocations (no freezer write per
invoke), and a kill of an idle instance, frozen or not, loses no invocation:
the call that follows at once goes to a new instance. Real daemon, real
sandbox, the cgroup freezer's own files."""
import os
import re
import signal

import pytest

from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode, wait_for
from test_pool_lifecycle import COUNTER, descendants, host_pid_of_instance, instances, invoke

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


def mounts():
    """{controller or 'cgroup2': mount point} from /proc/self/mountinfo."""
    out = {}
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ")
        fstype, _src, opts = right.split()[:3]
        point = left.split()[4]
        if fstype == "cgroup2":
            out["cgroup2"] = point
        elif fstype == "cgroup":
            for o in opts.split(","):
                out[o] = point
    return out


def freezer_file(host_pid):
    """The freezer file that says whether host_pid's group is frozen: the v1
    freezer's freezer.state when the process has its own v1 freezer group,
    else the v2 group's cgroup.freeze (what the engine writes)."""
    m = mounts()
    for line in open(f"/proc/{host_pid}/cgroup"):
        _n, ctrls, path = line.rstrip("\n").split(":", 2)
        if "freezer" in ctrls.split(",") and path != "/" and "freezer" in m:
            return os.path.join(m["freezer"] + path, "freezer.state")
    for line in open(f"/proc/{host_pid}/cgroup"):
        _n, ctrls, path = line.rstrip("\n").split(":", 2)
        if ctrls == "" and "cgroup2" in m:
            return os.path.join(m["cgroup2"] + path, "cgroup.freeze")
    pytest.skip("the instance has no freezer group")


def frozen(path):
    s = open(path).read().strip()
    return s in ("FROZEN", "FREEZING", "1")


@pytest.fixture
def d(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path)).start()
    yield d
    d.stop()


def deploy_counter(d, name):
    st, out = d.call("POST", "/v1/functions", {"name": name, "source": COUNTER})
    assert st == 201, out


def test_an_instance_idle_past_the_grace_is_frozen_and_one_in_use_is_not_refrozen(d):
    deploy_counter(d, "c")
    calls, pid = invoke(d, "c")["result"]
    host = host_pid_of_instance(d, "c", pid)
    path = freezer_file(host)
    # Idle: frozen by the freezer, without any call.
    wait_for(lambda: frozen(path), "the idle instance to be frozen", timeout=10)
    assert [i["frozen"] for i in instances(d)] == [True]
    freezes = instances(d)[0]["freezes"]
    # Back to back: right after each response it is still thawed (an
    # eager freeze would have frozen it before the response), and the
    # freezer did not freeze it between the calls.
    thawed = 0
    for n in range(40):
        c, p = invoke(d, "c")["result"]
        assert p == pid and c == calls + 1 + n
        thawed += not frozen(path)
    assert thawed >= 20, f"thawed right after only {thawed} of 40 responses"
    assert instances(d)[0]["freezes"] - freezes <= 20, instances(d)
    # And frozen again once idle.
    wait_for(lambda: frozen(path), "the idle instance to be frozen again", timeout=10)


def test_an_idle_unfrozen_instance_killed_from_outside_is_replaced_on_the_call_that_follows_at_once(d):
    # Killed within the grace, the instance is not frozen: its socket
    # hangs up only once it ran its exit, so the call that follows at once
    # must see it doomed (/proc/PID/stat: SIGKILL pending, exiting) before
    # handing it the invocation. Repeated: the race is lost only at times.
    deploy_counter(d, "victim")
    unfrozen_kills = 0
    calls, pid = invoke(d, "victim")["result"]
    for n in range(30):
        assert calls == 1, (n, calls)  # a new instance each round
        host = host_pid_of_instance(d, "victim", pid)
        path = freezer_file(host)
        assert invoke(d, "victim")["result"] == [2, pid]  # in use: thawed
        unfrozen_kills += not frozen(path)
        os.kill(host, signal.SIGKILL)
        out = invoke(d, "victim")
        assert out["status"] == "succeeded", (n, out)
        calls, pid = out["result"]
    assert unfrozen_kills >= 15, f"only {unfrozen_kills} of 30 kills hit an unfrozen instance"


def gone(host):
    try:
        return re.search(r"State:\s+[ZX]", open(f"/proc/{host}/status").read()) is not None
    except OSError:
        return True


def test_redeploy_then_delete_retires_a_frozen_and_a_thawed_instance(d):
    deploy_counter(d, "r")
    calls, pid = invoke(d, "r")["result"]
    old = host_pid_of_instance(d, "r", pid)
    wait_for(lambda: frozen(freezer_file(old)), "the idle instance to be frozen", timeout=10)
    # Redeploy: the next call runs the new version on a new instance (the
    # old version's idles out, or goes with the function).
    st, out = d.call("POST", "/v1/functions", {"name": "r", "source": COUNTER + "\n# v2\n"})
    assert st == 201, out
    out = invoke(d, "r")
    assert out["status"] == "succeeded" and out["result"][0] == 1, out
    # Both instances are pid 2 in their own namespaces: the new one is the
    # other instance process of the function.
    found = [p for p in descendants(d.proc.pid)
             if "_r_" in open(f"/proc/{p}/cgroup").read() and p != old and not gone(p)]
    assert found, "the new instance's process"
    new = found[-1]
    assert frozen(freezer_file(old))
    # Delete with one instance frozen and the other just used (thawed):
    # both go.
    st, _ = d.call("DELETE", "/v1/functions/r")
    assert st in (200, 204), st
    wait_for(lambda: gone(old) and gone(new), "the deleted function's instances to be gone", timeout=10)
    wait_for(lambda: not instances(d), "no instance left", timeout=10)


def test_a_name_deleted_and_deployed_again_runs_its_new_source_of_the_same_length(d):
    # A warm invoke checks a deployed source against the one validated
    # before byte for byte (engine: instance_memo_get); a deleted name
    # deployed again is version 1 again (the same instance key), with a
    # file of the same length that differs in one byte.
    src = "def handler():\n    return 'A'\n"
    st, out = d.call("POST", "/v1/functions", {"name": "m", "source": src})
    assert st == 201, out
    assert invoke(d, "m")["result"] == "A"
    assert invoke(d, "m")["result"] == "A"
    st, _ = d.call("DELETE", "/v1/functions/m")
    assert st in (200, 204), st
    st, out = d.call("POST", "/v1/functions", {"name": "m", "source": src.replace("'A'", "'B'")})
    assert st == 201, out
    assert invoke(d, "m")["result"] == "B"
    assert invoke(d, "m")["result"] == "B"
    # A signature that takes an argument: validation
    # of the new bytes, not the old reply, binds it.
    st, _ = d.call("DELETE", "/v1/functions/m")
    assert st in (200, 204), st
    st, out = d.call("POST", "/v1/functions", {"name": "m", "source": "def handler(x):\n    return x*2\n"})
    assert st == 201, out
    assert invoke(d, "m", x=21)["result"] == 42
