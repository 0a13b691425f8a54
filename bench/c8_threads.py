"""Where a -c8 invoke waits, per thread (issue 15 b, round 13).

A daemon from bench_runpath.start() (home in BENCH_DIR), the trivial
function deployed and warmed, then per route `perf sched record -a` over
wrk -t2 -c8 (3 s) and, from `perf sched timehist`, for each group of
threads: CPU and sched-ins per invoke, the run-queue delay of a wake-up
(p50 / p90 / p99: how long a woken thread waited for a CPU) and how long
it ran once in (p99 / max), and the share of a vCPU's time it held one
in runs over 0.5 ms ("long runs"). Groups: the daemon's threads by name, its
warm instances (the tasks of its cpu cgroups, named ...-DAEMONPID), wrk,
and everything else on the machine ("others": other users' load, which
is as much of a -c8 p99 on two vCPUs as the daemon's own threads).

At -c8 both vCPUs are busy: a thread that holds one for milliseconds
(the store writer's batch, another process) leaves the invoke chain
(wrk -> HTTP thread -> instance -> run watcher -> HTTP thread -> wrk) one
vCPU for that long; the "run p99 / max" column shows who does.

--store-waits: instead, per route, `perf record -e sched:sched_switch
--call-graph dwarf -p DAEMON` over wrk -c8 (3 s): the daemon's threads'
sleeps on the store (a stack through src/store: its locks, a wait for the
writer's commit), per 1000 invokes, their share of the time and the
longest; a watcher asleep there stalls every warm invoke's end.

usage: /usr/bin/python3 bench/c8_threads.py BUILD_DIR [--store-waits] [v1|lambda]...
       (root: perf sched record -a, perf record)
Benchmarks are not tests: the figures move with the machine's load."""
import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as rp  # noqa: E402

CGROUP_CPU = pathlib.Path("/sys/fs/cgroup/cpu")


def instance_pids(daemon_pid):
    """The tasks of the daemon's warm instances: its cgroup-v1 cpu groups
    end in -DAEMONPID (sandbox-cgroup.c); none on cgroup v2."""
    pids = set()
    for d in CGROUP_CPU.glob(f"pysprinter-*-{daemon_pid}") if CGROUP_CPU.is_dir() else ():
        try:
            pids.update((d / "tasks").read_text().split())
        except OSError:
            pass  # gone meanwhile
    return pids


def timehist(data):
    """[(group key inputs: comm, tid, pid), delay ms, run ms] of a recording."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", data], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        p = line.split()
        if len(p) < 6 or not p[1].startswith("["):
            continue
        try:
            delay, run = float(p[-2]), float(p[-1])
        except ValueError:
            continue
        m = re.match(r"(.*)\[(\d+)(?:/(\d+))?\]$", " ".join(p[2:-3]))
        if m:
            rows.append((re.sub(r"\d+$", "", m.group(1)), m.group(2), m.group(3) or m.group(2), delay, run))
    return rows


def q(v, f):
    return v[min(len(v) - 1, int(len(v) * f))]


def long_share(runs, seconds):
    """The share of one vCPU's time spent in runs over 0.5 ms: while such a
    run holds a vCPU, the invoke chain has the other one only."""
    return sum(x for x in runs if x > 0.5) / (seconds * 1e3) * 100


def table(rows, daemon_pid, instances, invokes, seconds):
    groups = collections.defaultdict(lambda: ([], []))
    for comm, tid, pid, delay, run in rows:
        if pid == str(daemon_pid):
            key = comm
        elif pid in instances or tid in instances:
            key = "instances"
        elif comm == "wrk":
            key = "wrk"
        else:
            key = "others"
        groups[key][0].append(delay)
        groups[key][1].append(run)
    print(f"  {'threads':14s} {'CPU/invoke':>10s} {'ins/invoke':>10s} {'delay p50':>9s} {'p90':>6s} {'p99 ms':>6s}"
          f" {'run p99':>7s} {'max ms':>6s} {'long runs':>9s}")
    for key, (d, r) in sorted(groups.items(), key=lambda kv: -sum(kv[1][1])):
        if sum(r) < 5:
            continue
        d, r = sorted(d), sorted(r)
        print(f"  {key[:14]:14s} {sum(r) / invokes * 1e3:8.1f}us {len(r) / invokes:10.2f} {q(d, .5):9.3f} "
              f"{q(d, .9):6.3f} {q(d, .99):6.3f} {q(r, .99):7.3f} {r[-1]:6.2f} {long_share(r, seconds):8.1f}%")


def route(port, pid, name, tmp):
    data = str(tmp / f"sched-{name}.data")
    rec = subprocess.Popen(["perf", "sched", "record", "-a", "-o", data, "--", "sleep", "3.6"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf's buffers up before the load
    rate, _, p99, p50 = rp.wrk(port, rp.PATHS[name], seconds=3)
    rec.wait()
    print(f"{name}: wrk -c8 {rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms; load {os.getloadavg()[0]:.2f}")
    table(timehist(data), pid, instance_pids(pid), rate * 3, 3.6)


def store_waits(data, invokes, seconds):
    """Prints the daemon's sleeps whose user stack runs through the store."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,time,trace,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    out_at, waits = {}, collections.defaultdict(list)
    for block in out.split("\n\n"):
        lines = block.strip().splitlines()
        m = re.match(r"\s*(.+?)\s+(\d+)\s+([\d.]+):\s+(.*)", lines[0]) if lines else None
        sw = m and re.search(r"prev_pid=(\d+) .*prev_state=(\S+) ==> .* next_pid=(\d+)", m.group(4))
        if not sw:
            continue
        t = float(m.group(3))
        # user-space frames only, and not libc's lock and wait wrappers
        frames = [f.split(None, 1)[1] for f in lines[1:] if len(f.split(None, 1)) > 1 and "kernel" not in f]
        frames = [re.sub(r"(\+0x\S*)? \(.*\)$", "", f) for f in frames]
        ours = [f for f in frames if not re.match(r"(__|futex|syscall|pthread_|lll_|\[unknown\])", f)]
        if sw.group(2) != "R" and any(re.search(r"^(store_|sq_|write_unwaited|wait_no_leader|journal_)", f) for f in ours):
            out_at[sw.group(1)] = (t, (m.group(1), " < ".join(ours[:3])))
        else:
            out_at.pop(sw.group(1), None)
        if sw.group(3) in out_at:
            t0, key = out_at.pop(sw.group(3))
            waits[key].append(t - t0)
    for (comm, where), v in sorted(waits.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {comm:12s} {len(v) / invokes * 1000:6.2f} per 1000 invokes, {sum(v) / seconds * 100:5.2f}% of the "
              f"time, max {max(v) * 1e3:6.2f} ms: {where}")


def route_store_waits(port, pid, name, tmp):
    data = str(tmp / f"switch-{name}.data")
    rec = subprocess.Popen(["perf", "record", "-e", "sched:sched_switch", "--call-graph", "dwarf,8192", "-o", data,
                            "-p", str(pid), "--", "sleep", "3.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.1)
    rate, _, p99, p50 = rp.wrk(port, rp.PATHS[name], seconds=3)
    rec.wait()
    print(f"{name}: wrk -c8 {rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms; load {os.getloadavg()[0]:.2f}; "
          "sleeps on the store:")
    store_waits(data, rate * 3, 3)


def main():
    if len(sys.argv) < 2 or os.geteuid() != 0 or not shutil.which("perf"):
        sys.exit(__doc__)
    build = pathlib.Path(sys.argv[1]).resolve()
    waits = "--store-waits" in sys.argv
    names = [a for a in sys.argv[2:] if a in rp.PATHS] or list(rp.PATHS)
    with rp.serving(build, "bench-c8threads-") as (proc, port, tmp):
        for name in names:
            rp.sequential(port, rp.PATHS[name], 20)
            rp.wrk(port, rp.PATHS[name], seconds=1)
        for name in names:
            (route_store_waits if waits else route)(port, proc.pid, name, tmp)


if __name__ == "__main__":
    main()
