#!/usr/bin/python3
"""CPU per sandboxed ad-hoc run, every process of the daemon's tree and
their kernel work included (goal (c): 500 runs/s on 2 vCPUs is <= 4 ms).

Usage: /usr/bin/python3 bench/bench_cpu_per_run.py BUILD [SECONDS] [SANDBOX...]   (root)

SANDBOX: `full` (the default) and/or `none`, each a daemon of its own,
measured one after the other: `full none full none` says what the
sandbox costs per run as the daemon pays it (its pools included).

The daemon starts in a v1 cpuacct cgroup of its own, made beneath the
one this script runs in (its workers, spares and runs, those started
before its first request too, are counted); `cpuacct.usage` before and after
`wrk -c8` on `/v1/runs?wait=true` (env with requests, trivial function),
divided by the runs wrk completed. The load generator is not counted;
kernel threads (a namespace's `cleanup_net` kworker) are not either."""
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_workers as bw  # noqa: E402


def cpuacct_dir():
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        if "cpuacct" in ctrls.split(","):
            return pathlib.Path("/sys/fs/cgroup") / ctrls / path.lstrip("/")
    return None


def start_daemon(build, home, index, sandbox, cg):
    """bw.Daemon started with its process in cgroup cg (None: where we are)."""
    if cg is None:
        return bw.Daemon(build, home, index.url, sandbox).start()
    real = subprocess.Popen

    def popen(args, **kw):
        kw["preexec_fn"] = lambda: (cg / "cgroup.procs").write_text(str(os.getpid()))
        return real(args, **kw)
    subprocess.Popen = popen
    try:
        return bw.Daemon(build, home, index.url, sandbox).start()
    finally:
        subprocess.Popen = real


def remove_cgroup(cg):
    """Once the daemon's tree has left it (its last processes may still be
    exiting when the daemon has stopped)."""
    for _ in range(100):
        try:
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    parent = cpuacct_dir()
    if parent is None or not parent.is_dir():
        print("no v1 cpuacct hierarchy here")
        return
    index = bw.requests_index()
    for i, sandbox in enumerate(sys.argv[3:] or ["full"]):
        measure(build, seconds, parent / f"bench-cpu-{os.getpid()}-{i}", index, sandbox)


def measure(build, seconds, cg, index, sandbox):
    cg.mkdir()
    tmp, home = bw.temp_home("bench-cpu-")
    # Started in the cgroup (not moved after its start): a worker the daemon
    # starts before its first request (the validator, the blank worker a
    # cold env adopts, round 10) and every process forked from it are
    # counted too.
    d = start_daemon(build, home, index, sandbox, cg)
    try:
        c = bw.Client(d.port)
        src = bw.REQUESTS_ENV + "def f(x: int = 1):\n    return x + 1\n"
        body = {"source": src, "filename": "bench.py", "args": [1]}
        bw.timed_runs(c, 30, body)
        bw.wrk_throughput(d.port, 2, 8, body, "/v1/runs?wait=true")  # spares grown
        before = int((cg / "cpuacct.usage").read_text())
        rate, bad = bw.wrk_throughput(d.port, seconds, 8, body, "/v1/runs?wait=true")
        used = int((cg / "cpuacct.usage").read_text()) - before
        runs = rate * seconds
        print(f"sandbox={sandbox}: runs/s {rate:.0f} (non-2xx {bad}), CPU per run {used / 1e6 / runs:.2f} ms "
              f"(daemon tree, cpuacct, {seconds} s of wrk -c8)")
    finally:
        d.stop()
        remove_cgroup(cg)


if __name__ == "__main__":
    main()
