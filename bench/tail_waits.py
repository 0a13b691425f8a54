#!/usr/bin/python3
"""What the daemon's threads and instances wait for to run (issue 15 b,
docs/internals/performance-log.md "Invoke path: the slowest 1% (round 14)"): wrk on one
route with `perf record -a -e sched:sched_switch,sched:sched_wakeup,
syscalls:sys_enter_sched_setscheduler` beside it, then every wake-up of
the daemon's tree (its threads, its instances) that waited > 0.2 ms to
run, grouped by who woke and what held its CPU at the wake-up — the store
writer with the policy it had then (its own and others' sched_setscheduler
calls: SCHED_IDLE inside its lowered batch, SCHED_OTHER outside it or
raised) — and the writer's on-CPU stretches over 0.1 ms by policy.

Usage: /usr/bin/python3 bench/tail_waits.py BUILD [v1|lambda] [CONNS]
  BENCH_DIR: where the daemon's home is made (default /dev/shm: tmpfs;
  a directory on the disk for a disk home). Needs root for perf record -a.
Benchmarks are not tests: figures move with the machine's load."""
import collections
import os
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_c1_probe as P  # noqa: E402

POLICY = {0: "OTHER", 3: "BATCH", 5: "IDLE"}
EVENT = re.compile(r"\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):(.*)")


def tree_names(root):
    """tid -> "d:comm" (the daemon's threads) or "inst:comm" (its children)."""
    names = {}
    for pid in P.descendants(root) | {root}:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                comm = pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
                names[int(t)] = ("d:" if pid == root else "inst:") + comm
        except OSError:
            pass
    return names


def holder(tid, comm, names, writers, policy):
    if tid in writers:
        return f"store-writer({POLICY.get(policy.get(tid), '?')})"
    return names.get(tid) or "other:" + comm


def analyse(text, names, writers):
    cur, woke, policy = {}, {}, {t: 0 for t in writers}
    waits, since, stretches = [], {}, []
    for line in text.splitlines():
        m = EVENT.match(line)
        if not m:
            continue
        tid, cpu, t, event, rest = int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
        if event.startswith("syscalls:sys_enter_sched_setscheduler"):
            a = re.search(r"pid: (0x[0-9a-f]+), policy: (0x[0-9a-f]+)", rest)
            target = int(a.group(1), 16) or tid
            if target in policy:
                policy[target] = int(a.group(2), 16)
        elif event == "sched:sched_wakeup":
            w = re.search(r"pid=(\d+).*target_cpu=(\d+)", rest)
            pid = int(w.group(1))
            if pid in names and pid not in writers:
                on = cur.get(int(w.group(2)), (0, "?"))
                woke[pid] = (t, holder(on[0], on[1], names, writers, policy))
        elif event == "sched:sched_switch":
            nxt = re.search(r"next_comm=(.+?) next_pid=(\d+)", rest)
            prev, pid = int(re.search(r"prev_pid=(\d+)", rest).group(1)), int(nxt.group(2))
            if prev in since:
                stretches.append(((t - since.pop(prev)) * 1e3, POLICY.get(policy.get(prev), "?")))
            if pid in writers:
                since[pid] = t
            if pid in woke:
                t0, held = woke.pop(pid)
                waits.append(((t - t0) * 1e3, names[pid], held))
            cur[cpu] = (pid, nxt.group(1))
    d = sorted(w[0] for w in waits)
    n = len(d)
    if not n:
        return
    print(f"  wake-ups of the daemon's tree {n}: p99 {d[int(n * .99)]:.3f} ms; > 0.2 ms {sum(x > 0.2 for x in d)},"
          f" > 1 ms {sum(x > 1 for x in d)}; the waits > 0.2 ms by who woke and what held its CPU:")
    count, total, over1 = collections.Counter(), collections.Counter(), collections.Counter()
    for ms, who, held in waits:
        if ms > 0.2:
            count[who, held] += 1
            total[who, held] += ms
            over1[who, held] += ms > 1
    for k in sorted(count, key=lambda k: -total[k])[:int(os.environ.get("TOP", "14"))]:
        print(f"    {count[k]:5d} waits ({over1[k]:3d} > 1 ms), {total[k]:7.1f} ms: {k[0]:15s} with {k[1]} on its CPU")
    by = collections.defaultdict(list)
    for ms, pol in stretches:
        if ms > 0.1:
            by[pol].append(ms)
    for pol, xs in by.items():
        xs.sort()
        print(f"  store-writer on-CPU stretches > 0.1 ms ending at {pol}: {len(xs)}, p50 {xs[len(xs) // 2]:.2f},"
              f" longest {xs[-1]:.2f}, sum {sum(xs):.0f} ms")


def analyse_pid(text, pid):
    names = tree_names(pid)
    analyse(text, names, {t for t, n in names.items() if n == "d:store-writer"})


def main():
    P.recorded_wrk("tail-waits-", "sched:sched_switch,sched:sched_wakeup,syscalls:sys_enter_sched_setscheduler",
                   analyse_pid)


if __name__ == "__main__":
    main()
