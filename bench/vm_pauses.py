"""The host's pauses of this VM, with no pysprinter in it (issue 15 b, round 11).

perf record -a of the cpu-clock software event every 1 ms of each vCPU: a
vCPU that runs (a task or its idle loop) takes a sample every millisecond,
so a window of more than 2 ms in which NEITHER vCPU took one is time the
whole VM did not run: its host paused it (on this Firecracker VM, in a
fixed phase of a 100 ms grid when the VM keeps both vCPUs busy: a CPU
quota's throttling). For each 100 ms period of that grid, the VM's
utilisation (non-idle samples / samples) and its pause, binned: the pause
comes with a busy VM, so a benchmark that fills both vCPUs (wrk -c8) pays
it whatever the daemon does. wrk's p99 is a share of time (coordinated
omission): a pause in more than ~1% of the time puts the p99 at its length.

usage: /usr/bin/python3 bench/vm_pauses.py SECONDS      (root: perf record -a)
       /usr/bin/python3 bench/vm_pauses.py --data PERF.DATA...   (recorded
       already: bench/tail-rec.sh writes DIR/tick.data)
Benchmarks are not tests: what it reports depends on the load."""
import collections
import os
import subprocess
import sys
import tempfile


def samples(path):
    """[(time s, comm)] of one recording, sorted."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,time"], capture_output=True, text=True).stdout
    ev = []
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 2:
            ev.append((float(p[-1].rstrip(":")), p[0]))
    return sorted(ev)


def periods(ev):
    """[(utilisation 0..1, pause ms)] per 100 ms period of the host's grid,
    and the pauses [(start, end)]; the grid's phase is the median end phase
    of the pauses (they end when the host's period turns)."""
    pauses = [(a[0], b[0]) for a, b in zip(ev, ev[1:]) if b[0] - a[0] > 0.002]
    phase = sorted(e % 0.1 for _, e in pauses)[len(pauses) // 2] if pauses else 0.0
    per = collections.defaultdict(lambda: [0, 0, 0.0])
    for a, b in zip(ev, ev[1:]):
        p = per[int((a[0] - phase) * 10 + 1e-6)]
        p[0] += a[1] != "swapper"
        p[1] += 1
        if b[0] - a[0] > 0.002:
            per[int((b[0] - phase) * 10 + 1e-6)][2] += b[0] - a[0]
    rows = [(v[0] / v[1], v[2] * 1e3) for _, v in sorted(per.items())[1:-1] if v[1] > 50]
    return rows, pauses, phase


def report(paths):
    rows, n, paused, span, phases = [], 0, 0.0, 0.0, []
    for path in paths:
        ev = samples(path)
        if len(ev) < 2:
            continue
        r, pauses, phase = periods(ev)
        rows += r
        n += len(pauses)
        paused += sum(b - a for a, b in pauses)
        span += ev[-1][0] - ev[0][0]
        phases.append(round(phase * 1e3, 1))
    if not rows:
        print("no samples (perf record -a needs root and the cpu-clock event)")
        return
    print(f"{span:.1f} s recorded: the VM paused {n} times (no vCPU ticked for > 2 ms), {paused * 1e3:.1f} ms"
          f" = {100 * paused / span:.2f}% of the time; the pauses end at {phases} ms of the 100 ms grid")
    bins = collections.defaultdict(list)
    for u, p in rows:
        bins[min(int(u * 10), 9)].append(p)
    for b in sorted(bins):
        ps = bins[b]
        hit = sum(p > 1 for p in ps)
        print(f"  VM busy {b * 10:3d}-{b * 10 + 10:3d}%: {len(ps):5d} periods, paused in {hit:5d}"
              f" ({100 * hit / len(ps):3.0f}%), mean pause {sum(ps) / len(ps):5.2f} ms,"
              f" max {max(ps):5.1f} ms")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--data":
        report(sys.argv[2:])
        return
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tick.data")
        subprocess.run(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-c", "1000000", "-k", "mono", "-o", path,
                        "--", "sleep", str(secs)], stderr=subprocess.DEVNULL, check=False)
        report([path])


if __name__ == "__main__":
    main()
