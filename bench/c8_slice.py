#!/usr/bin/python3
"""A shorter EEVDF slice for the invoke chain (issue 15 b, docs/internals/performance-log.md
"Invoke path: the -c8 chain (round 15)"): one daemon, wrk -c8 5 s per route,
alternated in the same daemon between the kernel's default slice and a
custom one (sched_setattr(2) sched_runtime, Linux >= 6.12: a task with a
shorter slice gets an earlier deadline and may preempt at its wake-up) set
on the daemon's SCHED_OTHER threads (not the store's, which set their own
policy) and/or its instances' threads; sched_runtime 0 gives the default
back. Prints rate, p50, p99 and the tree's context switches per invoke.

Usage: /usr/bin/python3 bench/c8_slice.py BUILD SLICE_US|batch ROUTES PAIRS [WHO]
  batch: SCHED_BATCH (no wake-up preemption) instead of a shorter slice.
  ROUTES: v1,lambda; WHO: d (daemon threads), i (instances), di (both).
  BENCH_DIR: where the daemon's home is made (default /dev/shm: tmpfs).
Benchmarks are not tests: figures move with the machine's load."""
import ctypes, os, pathlib, struct, subprocess, sys, tempfile  # noqa: E401
sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B, bench_c1_probe as P  # noqa: E401,E402
libc = ctypes.CDLL(None, use_errno=True)
SYS_sched_setattr = 314
BATCH = -1

def setslice(tid, ns):
    """ns: the slice (0: the default); BATCH: SCHED_BATCH instead."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return False  # gone meanwhile
    policy = 3 if ns == BATCH else 0
    attr = struct.pack("IIQiIQQQ", 48, policy, 0, nice, 0, 0 if ns == BATCH else ns, 0, 0)
    buf = ctypes.create_string_buffer(attr)
    if libc.syscall(SYS_sched_setattr, tid, buf, 0) != 0:
        return False
    return True

def targets(root, who):
    out = []
    for pid in P.descendants(root) | {root}:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                comm = pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
                pol = int(pathlib.Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[38])
                if pol not in (0, 3) or comm.startswith("store-"):
                    continue
                if pid == root and "d" not in who: continue
                if pid != root and "i" not in who: continue
                out.append((int(t), comm))
        except OSError:
            pass
    return out

def switches(root):
    v = n = 0
    for pid in P.descendants(root) | {root}:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                for line in pathlib.Path(f"/proc/{pid}/task/{t}/status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt"): v += int(line.split()[1])
                    if line.startswith("nonvoluntary_ctxt"): n += int(line.split()[1])
        except OSError: pass
    return v, n

build = pathlib.Path(sys.argv[1]).resolve(); us = BATCH if sys.argv[2] == "batch" else int(sys.argv[2]); routes = sys.argv[3].split(","); pairs = int(sys.argv[4])
who = sys.argv[5] if len(sys.argv) > 5 else "di"
tmp = pathlib.Path(tempfile.mkdtemp(prefix="slice-", dir=os.environ.get("BENCH_DIR", "/dev/shm")))
proc, port = B.start(build, tmp)
try:
    B.deploy(port)
    for r in routes: B.sequential(port, B.PATHS[r], 200); B.wrk(port, B.PATHS[r], seconds=1, conns=8)
    for i in range(pairs):
        for mode in (0, BATCH if us == BATCH else us * 1000):
            for r in routes:
                ts = targets(proc.pid, who)
                ok = sum(setslice(t, mode) for t, _ in ts)
                s0 = switches(proc.pid)
                w = B.wrk(port, B.PATHS[r], seconds=5, conns=8)
                s1 = switches(proc.pid)
                inv = w[0] * 5
                load = open("/proc/loadavg").read().split()[0]
                print(f"{r:6s} slice={'default' if not mode else 'batch' if mode == BATCH else str(us)+'us':8s} set {ok}/{len(ts)} {w[0]:.0f}/s p50 {w[3]:.3f} p99 {w[2]:.2f} ms  cs/inv vol {(s1[0]-s0[0])/inv:.2f} invol {(s1[1]-s0[1])/inv:.2f}  load {load}", flush=True)
finally:
    proc.terminate(); proc.wait(); subprocess.run(["rm", "-rf", str(tmp)])
