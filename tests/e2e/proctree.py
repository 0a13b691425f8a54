"""Processes of a daemon's tree, read from /proc (tests and bench/ share it)."""
import os
import time


def child_pids(pid):
    """pid's children, started by any of its threads: a worker started by
    one of the daemon's run threads is a child of that thread's task, not
    of the main thread's (/proc/PID/task/PID/children lists only those)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            out += [int(k) for k in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def open_fds(pid):
    """{fd: target} of pid's open descriptors ("socket:[INODE]", a path…).
    An fd closed between the listing and its readlink is left out, and a
    process gone gives {}: the processes read here open and close files
    (wheel locks, records) while a test looks."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for f in names:
        try:
            out[int(f)] = os.readlink(f"/proc/{pid}/fd/{f}")
        except OSError:
            pass
    return out


def descendants(pid):
    """Every process under pid (children first, then theirs), as child_pids
    finds them."""
    out = []
    for k in child_pids(pid):
        out.append(k)
        out += descendants(k)
    return out


def processes_in(cwd):
    """Pids of the processes whose working directory is cwd: a CLI, its
    detached child and their workers (--sandbox=none keeps it)."""
    out = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/cwd") == str(cwd):
                out.append(int(name))
        except OSError:
            continue
    return out


def no_process_left(cwd, timeout=10):
    """Whether every process in cwd (processes_in()) is gone within timeout s."""
    deadline = time.monotonic() + timeout
    while processes_in(cwd) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_in(cwd) == []
