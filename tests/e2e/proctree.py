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


class PeakRun:
    """What own_peak_run() saw: returncode, stdout and stderr (bytes), and
    peak_kib, the process's own high-water mark of resident memory."""

    def __init__(self, returncode, stdout, stderr, peak_kib):
        self.returncode, self.stdout, self.stderr, self.peak_kib = returncode, stdout, stderr, peak_kib


def vm_hwm_kib(pid):
    """VmHWM of /proc/PID/status (KiB): the peak resident memory of pid's
    own address space, not its children's (ru_maxrss of a waited child
    counts the largest of its waited children too: a CLI's worker). 0 once
    it exited (a zombie has no address space)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_peak_run(argv, env, cwd, timeout=180):
    """Runs argv and samples its own VmHWM while it runs, every few ms and
    before each read of its stdout (a pipe): a process that prints a
    large result at its end is blocked on the full pipe when read, with
    its peak behind it, so the last sample holds it whatever the polling
    missed. Output under a pipe's 64 KiB may end unsampled in its last
    milliseconds: use it for baselines, which a miss only makes stricter."""
    import subprocess
    import threading
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()
    err = []

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], vm_hwm_kib(p.pid))
            done.wait(0.003)

    threads = [threading.Thread(target=poll), threading.Thread(target=lambda: err.append(p.stderr.read()))]
    killer = threading.Timer(timeout, p.kill)
    for t in threads:
        t.start()
    killer.start()
    out = bytearray()
    try:
        while True:
            peak[0] = max(peak[0], vm_hwm_kib(p.pid))
            chunk = os.read(p.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            out += chunk
        rc = p.wait()
    finally:
        killer.cancel()
        done.set()
        for t in threads:
            t.join()
        p.stdout.close()
        p.stderr.close()
    return PeakRun(rc, bytes(out), err[0] if err else b"", peak[0])
