#!/usr/bin/python3
"""The hand-offs of a warm invoke at wrk -c8 (issue 15 b, docs/internals/performance-log.md
"Invoke path: the -c8 chain (round 15)"): per daemon thread (by name), its
context switches and the system calls that carry the chain's hand-offs
(read, write, poll, epoll_wait, futex) per invoke over 5 s of wrk -c8 on one
route (`perf stat --per-thread -p DAEMON`), with the run watcher's wake-ups
and ends per invoke from /metrics. Counts, not latencies: they do not move
with the machine's load the way a p99 does.

Usage: /usr/bin/python3 bench/c8_handoffs.py BUILD [v1|lambda] [EVENTS]
  EVENTS: perf events instead of the default list (comma-separated), e.g.
  page-faults,syscalls:sys_enter_mprotect,syscalls:sys_enter_sched_yield.
  BENCH_DIR: where the daemon's home is made (default /dev/shm: tmpfs).
Benchmarks are not tests: figures move with the machine's load."""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B  # noqa: E402

EVENTS = ("context-switches,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_poll,"
          "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex")
WATCHER = ("pysprinter_run_watcher_wakes_total", "pysprinter_run_watcher_ends_total")


def metric(port, name):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer " + B.TOKEN})
    m = re.search(r"^" + re.escape(name) + r" ([\d.e+]+)$", urllib.request.urlopen(req).read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    route = sys.argv[2] if len(sys.argv) > 2 else "v1"
    events = sys.argv[3] if len(sys.argv) > 3 else EVENTS
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="c8-handoffs-", dir=os.environ.get("BENCH_DIR", "/dev/shm")))
    proc, port = B.start(build, tmp)
    try:
        B.deploy(port)
        B.sequential(port, B.PATHS[route], 200)
        B.wrk(port, B.PATHS[route], seconds=1, conns=8)
        m0 = {k: metric(port, k) for k in WATCHER}
        st = subprocess.Popen(["perf", "stat", "--per-thread", "-x,", "-e", events, "-p", str(proc.pid),
                               "-o", str(tmp / "stat.txt")])
        rate, _, p99, _ = B.wrk(port, B.PATHS[route], seconds=5, conns=8)
        st.send_signal(2)
        st.wait()
        invokes = rate * 5
        load = open("/proc/loadavg").read().split()[0]
        print(f"{build} {route} -c8: {rate:.0f}/s p99 {p99:.2f} ms, load {load}")
        print("  run watcher per invoke: " + ", ".join(
            f"{k.split('_')[-2]} {(metric(port, k) - m0[k]) / invokes:.3f}" for k in WATCHER))
        per = {}
        for line in (tmp / "stat.txt").read_text().splitlines():
            f = line.split(",")
            if len(f) < 4:
                continue
            try:
                v = float(f[1])
            except ValueError:
                continue
            key = (re.sub(r"-\d+$", "", f[0].strip()), f[3])
            per[key] = per.get(key, 0) + v
        for (thread, event), v in sorted(per.items()):
            if v / invokes >= 0.001:
                print(f"  {thread:16s} {event:34s} {v / invokes:.3f}")
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
