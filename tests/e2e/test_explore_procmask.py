"""helper-217: what a fully sandboxed run can read in its /proc about the
worker that serves it and about the host (docs/sandbox.md "What a run
sees"). The promise: a run learns nothing about the host or about another
tenant's runs."""
import json

import pytest

from conftest import sandboxed, value
from daemonlib import Daemon, sandbox_mode

INIT_FDS = """
import os

def f():
    try:
        return sorted(os.listdir("/proc/1/fd"), key=int)
    except OSError as e:
        return e.strerror
"""


def test_a_run_cannot_list_its_workers_fds_through_its_pid_namespaces_init(cli):
    """The run's pid 1 (the init its worker clones per run) shared the
    worker's fd table: /proc/1/fd listed the worker's fd numbers, among them
    the pipes of every other run the worker was serving, so one tenant's
    run watched another's come and go. Now the init has an fd table of its
    own, empty."""
    seen = value(sandboxed(cli, "initfds.py", INIT_FDS, "--json"))
    # EPERM: the run's proc hides its init altogether (helper-231).
    assert seen in ([], "Permission denied", "Operation not permitted", "No such file or directory"), seen


# What runc (Docker, Kubernetes) masks in a container's /proc and /sys, plus
# the host's boot line and kernel config: absent, empty or refused in a run.
MASKED = ["/proc/cmdline", "/proc/config.gz", "/proc/kcore", "/proc/keys", "/proc/key-users",
          "/proc/timer_list", "/proc/timer_stats", "/proc/latency_stats", "/proc/sched_debug",
          "/proc/kallsyms", "/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware"]

READ_MASKED = """
import os

def f(paths):
    out = {}
    for p in paths:
        try:
            if os.path.isdir(p):
                out[p] = os.listdir(p)
            else:
                with open(p, "rb") as fp:
                    out[p] = fp.read(4096).decode("latin1")
        except OSError as e:
            out[p] = None  # absent or refused
    return out
"""


def test_a_run_reads_nothing_of_the_hosts_boot_line_kernel_or_devices(cli):
    """/proc/cmdline (the host's boot line), /proc/config.gz (its kernel's
    configuration), /proc/kallsyms (its kernel's symbols), /proc/keys,
    /proc/timer_list, /proc/acpi, … were readable in a run. Now each is
    absent, empty or refused, as in a runc container."""
    seen = value(sandboxed(cli, "masked.py", READ_MASKED, "--json", "--json-args", json.dumps([MASKED])))
    readable = {p: v[:80] for p, v in seen.items() if v not in (None, "", [])}
    assert not readable, readable


NORMAL = """
import multiprocessing, os

def f():
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(abs, [0, -1, -4, -9])
    meminfo = open("/proc/meminfo").read()
    cpuinfo = open("/proc/cpuinfo").read()
    return {
        "cpus": os.cpu_count(),
        "squares": squares,
        "meminfo": meminfo.startswith("MemTotal:"),
        "cpuinfo": "processor" in cpuinfo,
        "stat": open("/proc/stat").read().startswith("cpu "),
        "status": "VmRSS:" in open("/proc/self/status").read(),
        "fds": "0" in os.listdir("/proc/self/fd"),
        "load": len(os.getloadavg()),
        "uptime": float(open("/proc/uptime").read().split()[0]) > 0,
        "mounts": "/proc" in open("/proc/self/mounts").read(),
    }
"""


def test_a_run_still_reads_what_ordinary_python_reads_in_proc(cli):
    out = value(sandboxed(cli, "normal.py", NORMAL, "--json"))
    assert out.pop("cpus") >= 1
    assert out == {"squares": [0, 1, 4, 9], "meminfo": True, "cpuinfo": True, "stat": True, "status": True,
                   "fds": True, "load": 3, "uptime": True, "mounts": True}, out


THROUGH_DAEMON = """
import os

def f():
    try:
        init_fds = os.listdir("/proc/1/fd")
    except OSError as e:
        init_fds = e.strerror  # a run is not its init's uid (helper-222)
    return {"init_fds": init_fds, "cmdline": open("/proc/cmdline").read()}
"""


def test_a_daemons_run_sees_neither_its_workers_fds_nor_the_hosts_boot_line(tmp_path):
    """The same through pysprinterd, whose workers serve every tenant."""
    if sandbox_mode(tmp_path) != "full":
        pytest.skip("the kernel cannot run the sandbox here")
    d = Daemon(tmp_path / "d", sandbox="full")
    with d.serving():
        for token in ("alice", "bob"):
            st, r = d.run(THROUGH_DAEMON, token=token)
            assert st == 200 and r["status"] == "succeeded", r
            assert r["result"]["init_fds"] in ([], "Permission denied", "Operation not permitted"), r["result"]
            assert r["result"]["cmdline"] == "", r["result"]
