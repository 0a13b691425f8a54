"""helper-222: the kernel keeps some counts per *real uid* of the host (its
user_struct: fds in flight over SCM_RIGHTS, pending signals, processes,
message queue bytes), whatever user namespace a process is in. Every
sandboxed run of every tenant was host uid 65534 ("nobody"), so one run
could use up a count every other run (and every nobody process of the
host) needed. Now each run is a host uid of its own (docs/sandbox.md
"Users")."""
import os

import pytest

from daemonlib import Daemon, sandbox_mode, wait_for

HOLD_FDS = """
import array, os, socket, sys, time

def f():
    a, b = socket.socketpair()
    r, w = os.pipe()
    batch = array.array("i", [r] * 250)
    held = 0
    while held < 100000:
        try:
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, batch)])
        except OSError as e:
            print("holding", held, os.strerror(e.errno), flush=True)
            break
        held += len(batch)
    time.sleep(120)
    return held
"""

PASS_FD = """
import array, os, socket

def f():
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
    except OSError as e:
        return "send: " + os.strerror(e.errno)
    msg, anc, flags, addr = b.recvmsg(1, socket.CMSG_SPACE(4))
    return "passed" if anc and anc[0][1] == socket.SCM_RIGHTS else "nothing came"
"""


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("uid")
    if sandbox_mode(root) != "full" or os.geteuid() != 0:
        pytest.skip("needs the full sandbox of a root engine (runs map to uids of their own only then)")
    d = Daemon(root / "d", sandbox="full")
    with d.serving():
        yield d


def test_a_run_holding_fds_in_flight_leaves_another_tenants_fd_passing_alone(full):
    """A run that sent fds over SCM_RIGHTS until the kernel refused
    (ETOOMANYREFS: more in flight than RLIMIT_NOFILE, counted per real uid)
    and held them made every other tenant's run fail to pass a single fd
    (multiprocessing's reduction, asyncio's subprocess transport) while it
    ran. Now the count is the run's own."""
    d = full
    st, a = d.run(HOLD_FDS, wait=False, token="alice")
    assert st in (200, 201, 202), a
    rid = a["id"]
    try:
        logs = wait_for(lambda: (lambda s, body: "holding" in str(body) and body)(
            *d.call("GET", f"/v1/runs/{rid}/logs")), "alice's run to hold its fds", timeout=120)
        assert "Too many references" in logs, logs
        st, b = d.run(PASS_FD, token="bob")
        assert st == 200 and b["status"] == "succeeded", b
        assert b["result"] == "passed", b
    finally:
        d.cancel(rid)


IDS = """
import os, pwd

def f():
    return {"uid": os.getuid(), "gid": os.getgid(), "name": pwd.getpwuid(os.getuid()).pw_name,
            "files": os.stat("/out").st_uid == os.getuid(),
            "environ": open("/proc/self/environ", "rb").read() is not None}
"""


def test_concurrent_runs_are_distinct_host_uids_and_name_themselves(full):
    """Each run is a uid inside its sandbox that /etc/passwd names, owns its
    /out and its /proc/self files, and differs from every other run alive
    at the same time (so do their host uids: the map is one-to-one)."""
    d = full
    st, a = d.run(HOLD_FDS, wait=False, token="alice")
    rid = a["id"]
    try:
        wait_for(lambda: "holding" in str(d.call("GET", f"/v1/runs/{rid}/logs")[1]), "alice's run to start")
        st, b = d.run(IDS, token="bob", output_data="uidout")
        assert st == 200 and b["status"] == "succeeded", b
        r = b["result"]
        assert r["uid"] != 0 and r["uid"] == r["gid"] and r["files"], r
        # Its own /proc/self files (0400) are its to read, as when it was uid 0.
        assert r["environ"], r
        assert r["name"] == "sandbox", r
    finally:
        d.cancel(rid)


OUT = """
import os

def f():
    with open("/out/hello.txt", "w") as fp:
        fp.write("hi")
    os.mkdir("/out/sub")
    with open("/out/sub/x", "w") as fp:
        fp.write("x" * 10)
    return sorted(os.listdir("/out"))
"""


def test_what_a_run_writes_to_out_is_still_its_output(full):
    """/out is the run's own uid's now: what it writes there is stored as
    before."""
    d = full
    st, b = d.run(OUT, token="alice", output_data="uid-out")
    assert st == 200 and b["status"] == "succeeded", b
    assert b["result"] == ["hello.txt", "sub"], b
    assert "uid-out" in b.get("outputs", {}), b


BOOT_ID = """
def f():
    return open("/proc/sys/kernel/random/boot_id").read().strip()
"""


def test_a_run_does_not_read_the_hosts_boot_id(full):
    """/proc/sys/kernel/random/boot_id was the host's: two tenants' runs
    that compared it knew they ran on one host (and a run could tell when
    the host rebooted). Now a run reads its worker's own random id."""
    d = full
    host = open("/proc/sys/kernel/random/boot_id").read().strip()
    st, a = d.run(BOOT_ID, token="alice")
    assert st == 200 and a["status"] == "succeeded", a
    seen = a["result"]
    assert seen != host and len(seen) == 36 and seen[14] == "4", seen
