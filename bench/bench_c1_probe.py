#!/usr/bin/python3
"""The -c1 tail's mechanism (docs/internals/performance-log.md "Invoke path: the -c1 tail
(round 13)"): wrk on one route with `perf record -a -e
sched:sched_switch,sched:sched_wakeup` beside it, then
  - the daemon's instances' wake-ups (comm "worker", processes under the
    daemon): how many waited > 0.2 ms and > 1 ms to run, and what ran on
    their CPU meanwhile (when > 0.2 ms);
  - the store-writer thread's on-CPU stretches over 0.1 ms (its journal
    batches): count, p50, the longest, their sum.
With bench_runpath's disk bytes per invoke and VM paused share per phase.

Usage: /usr/bin/python3 bench/bench_c1_probe.py BUILD [v1|lambda] [CONNS]
  BENCH_DIR: where the daemon's home is made (default /dev/shm: tmpfs;
  /tmp: the disk). PROBE=0: wrk alone. Needs root for perf record -a.
Benchmarks are not tests: figures move with the machine's load."""
import collections
import os
import pathlib
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B  # noqa: E402


def descendants(root):
    """root's process tree (pids), from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(pathlib.Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    mine = set()
    for pid in parent:
        q = pid
        while q > 1 and q != root:
            q = parent.get(q, 1)
        if q == root:
            mine.add(pid)
    return mine


def threads_named(pids, comm):
    tids = set()
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                if pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == comm:
                    tids.add(int(t))
        except OSError:
            pass
    return tids


def analyse(text, mine, writer_tids):
    cur, woke, win = {}, {}, {}
    delays, stretches, behind = [], [], collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):(.*)", line)
        if not m:
            continue
        t, cpu, event, rest = float(m.group(4)), int(m.group(3)), m.group(5), m.group(6)
        if event == "sched:sched_wakeup":
            w = re.search(r"comm=(\S+) pid=(\d+).*target_cpu=(\d+)", rest)
            if w and w.group(1) == "worker" and int(w.group(2)) in mine:
                woke[int(w.group(2))] = (t, int(w.group(3)))
        elif event == "sched:sched_switch":
            nxt = re.search(r"next_comm=(.+?) next_pid=(\d+)", rest)
            prev = int(re.search(r"prev_pid=(\d+)", rest).group(1))
            pid = int(nxt.group(2))
            if prev in win:
                stretches.append((t - win.pop(prev)) * 1e3)
            if pid in writer_tids:
                win[pid] = t
            if pid in woke:
                t0, target = woke.pop(pid)
                d = (t - t0) * 1e3
                delays.append(d)
                if d > 0.2:
                    behind[cur.get(target, "?")] += 1
            cur[cpu] = nxt.group(1)
    delays.sort()
    n = len(delays)
    if n:
        print(f"  instance wake-ups {n}: p99 {delays[int(n * .99)]:.3f} ms; > 0.2 ms {sum(d > 0.2 for d in delays)}, "
              f"> 1 ms {sum(d > 1 for d in delays)}; on their CPU meanwhile (> 0.2 ms): {dict(behind.most_common(4))}")
    long = sorted(x for x in stretches if x > 0.1)
    if long:
        print(f"  store-writer on-CPU stretches > 0.1 ms: {len(long)}, p50 {long[len(long) // 2]:.2f} ms, "
              f"longest {long[-1]:.2f} ms, sum {sum(long):.0f} ms")


def recorded_wrk(prefix, events, analyse_pid):
    """argv BUILD [ROUTE] [CONNS]: a daemon (home in BENCH_DIR), wrk for 5 s
    with `perf record -a -e EVENTS` beside it (None: wrk alone), then
    analyse_pid(perf script's text, the daemon's pid) while it still runs."""
    build = pathlib.Path(sys.argv[1]).resolve()
    route = sys.argv[2] if len(sys.argv) > 2 else "v1"
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_DIR", "/dev/shm")))
    proc, port = B.start(build, tmp)
    try:
        B.deploy(port)
        B.sequential(port, B.PATHS[route], 300)
        if events:
            rec = subprocess.Popen(["perf", "record", "-q", "-a", "-m", "8M", "-e", events,
                                    "-o", str(tmp / "perf.data")], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        w, extra = B.wrk_phase(port, B.PATHS[route], conns, proc.pid, tmp / "home", seconds=5)
        print(f"{build} {route} -c{conns}: {w[0]:.0f}/s p50 {w[3]:.3f} p99 {w[2]:.2f} ms; {extra}")
        if events:
            rec.send_signal(2)
            rec.wait()
            text = subprocess.run(["perf", "script", "-i", str(tmp / "perf.data")], capture_output=True,
                                  text=True).stdout
            analyse_pid(text, proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["rm", "-rf", str(tmp)])


def analyse_pid(text, pid):
    mine = descendants(pid)
    analyse(text, mine, threads_named(mine | {pid}, "store-writer"))


def main():
    probe = os.environ.get("PROBE", "1") == "1"
    recorded_wrk("bench-c1-", "sched:sched_switch,sched:sched_wakeup" if probe else None, analyse_pid)


if __name__ == "__main__":
    main()
