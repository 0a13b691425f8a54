"""Attribution of the slow requests of one wrk -c1 run of bench/bench_tail.py --tails
(issue 15 b, round 7). bench/tail-rec.sh BUILD DIR records the run under
`perf record -a -k mono` (scheduler events with kernel stacks, fsync/fdatasync)
and every request's CLOCK_MONOTONIC start and end (TAILS_REQS); this script
takes each request slower than LIMIT ms and splits its interval between:
the daemon's request threads on a CPU / runnable (and who held the CPUs) /
blocked (by kernel stack), its background threads, the instance (the
daemon's process tree), and wrk. Each slow request gets the largest part as
its cause; "excess" sums (latency - LIMIT) per cause, which is what wrk's
coordinated-omission-corrected p99 answers to (under ~1% of the run's time
for a p99 <= LIMIT). Not a test; perf's lost events show as "nothing of
this tree".
usage: tail_attr.py DIR PHASE_INDEX [LIMIT [REQS_GLOB]]
  (PHASE_INDEX: the n-th "mark" line of DIR/bench.txt; QUIET=1: only the
  table; SHOWBIG=MS: each request over MS ms with its parts)
Round 11: where DIR/tick.data exists (tail-rec.sh records every vCPU's 1 ms
cpu-clock tick), a window in which neither vCPU ticked for over 2 ms is a
pause of the whole VM by its host (this Firecracker VM is throttled in a
fixed phase of a 100 ms grid); a thread "on cpu" or "runnable" in it did
not run. A slow request whose pauses make at least half its excess is
counted as "host: VM paused", whatever state its threads were in."""
import re, sys, subprocess, collections, bisect
d = sys.argv[1]; phase = int(sys.argv[2]); limit = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
REQS = sys.argv[4] if len(sys.argv) > 4 else f"{d}/reqs.*"
dpid = int(open(f"{d}/pid").read().split()[1])
tree0 = {int(x) for x in open(f"{d}/tree").read().split()} if __import__("os").path.exists(f"{d}/tree") else set()
marks = [(float(a), float(b), p, c) for p, c, a, b in re.findall(r"mark (\S+) (-c\d+) ([\d.]+) ([\d.]+)", open(f"{d}/bench.txt").read())]
A, B, path, conc = marks[phase]
out = subprocess.run(["perf", "script", "-F", "comm,pid,tid,cpu,time,event,trace,ip,sym", "-i", f"{d}/perf.data",
                      "--time", f"{A - 0.05:.6f},{B + 0.05:.6f}"], capture_output=True, text=True).stdout
hdr = re.compile(r"^\s*(.+?)\s+(-?\d+)/(-?\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
evs = []; cur = None
for line in out.splitlines():
    m = hdr.match(line)
    if m:
        cur = [float(m.group(5)), int(m.group(4)), m.group(1), int(m.group(2)), int(m.group(3)), m.group(6), m.group(7), []]
        evs.append(cur)
    elif line.strip() and cur is not None:
        cur[7].append((line.split(None, 1) + ["?"])[1].strip())
tgid = {}; tree = set(tree0) | {dpid}; comm_of = {}
for e in evs:
    tgid[e[4]] = e[3]; comm_of[e[4]] = e[2]
    if e[5] == "sched:sched_process_fork":
        m = re.search(r"parent_pid=(\d+) child_comm=.* child_pid=(\d+)", e[6])
        if m and (int(m.group(1)) in tree or tgid.get(int(m.group(1))) in tree): tree.add(int(m.group(2)))
def mine(t): return t in tree or tgid.get(t) in tree
def cat(comm, tid):
    if tgid.get(tid) == dpid or tid == dpid: return "d:" + comm
    if mine(tid): return "inst:" + comm
    if comm.startswith("swapper"): return "idle"
    return "other:" + re.sub(r"[/:]\d.*", "", comm)
sw = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)")
# per-thread state timeline: list of (t, state, why) where state in run/R/D/S
tl = collections.defaultdict(list); segs = []; curt = {}; wake = collections.defaultdict(list)
for e in evs:
    t, cpu, comm, pid, tid, ev, tr, st = e
    if ev == "sched:sched_switch":
        m = sw.match(tr)
        ptid, ntid = int(m.group(2)), int(m.group(6))
        if cpu in curt: segs.append((curt[cpu][0], t, curt[cpu][1], cpu))
        curt[cpu] = (t, cat(m.group(5), ntid))
        stk = [x for x in st if x not in ("__schedule", "schedule", "[unknown]")]
        why = " < ".join(x.split("+")[0] for x in stk[:5]) + " | " + (stk[-1].split("+")[0] if stk else "")
        s = m.group(4)[0]
        tl[ptid].append((t, "R" if s == "R" else ("D" if s == "D" else "S"), why, cpu))
        tl[ntid].append((t, "run", "", cpu))
    elif ev == "sched:sched_wakeup":
        m = re.search(r"pid=(\d+)", tr); wt = int(m.group(1))
        tl[wt].append((t, "W", cat(comm, tid), cpu))
segs.sort(); sstart = [s[0] for s in segs]
def holders(a, b):
    c = collections.Counter(); i = bisect.bisect_left(sstart, a - 0.1)
    while i < len(segs) and segs[i][0] < b:
        s, e, k, cpu = segs[i]
        if e > a: c[k] += min(e, b) - max(s, a)
        i += 1
    return c
import glob, os
def vm_pauses(f):
    """[(start, end)] of the windows > 2 ms in which no vCPU ticked."""
    if not os.path.exists(f): return []
    o = subprocess.run(["perf", "script", "-F", "time", "-i", f, "--time", f"{A - 0.05:.6f},{B + 0.05:.6f}"],
                       capture_output=True, text=True).stdout
    ts = sorted(float(x.strip().rstrip(":")) for x in o.splitlines() if x.strip())
    return [(x, y) for x, y in zip(ts, ts[1:]) if y - x > 0.002]
PAUSES = vm_pauses(f"{d}/tick.data")
def paused(a, b): return sum(max(0.0, min(b, y) - max(a, x)) for x, y in PAUSES)
wins = []
for f in glob.glob(REQS):
    for line in open(f):
        a0, b0 = map(float, line.split())
        if A <= a0 <= B: wins.append((b0 - a0, a0, b0, 0))
wins.sort(reverse=True)
n = len(wins); lat = sorted(w[0] * 1e3 for w in wins)
print(f"phase {conc} {path}: {n} requests; p50 {lat[n//2]:.3f} p99 {lat[int(n*.99)]:.3f} max {lat[-1]:.2f} ms; over {limit} ms: {sum(1 for x in lat if x > limit)}")
def breakdown(tid, a, b):
    """time of tid in [a,b] by state/why"""
    L = tl[tid]; c = collections.Counter(); st = ("?", "", 0)
    i = bisect.bisect_left([x[0] for x in L], a)
    state = None
    for j in range(i - 1, -1, -1):
        if L[j][1] != "W": state = L[j]; break
    t0 = a
    for x in L[i:] + [(b, "END", "", 0)]:
        if x[0] > b: x = (b, "END", "", 0)
        # A wake-up ends a sleep: from it to the next switch-in the
        # thread is runnable (its wake-up latency), not asleep (round 9:
        # before, that time counted as the sleep and vanished from the
        # table, and the request's largest part came out as "req on cpu").
        if state is not None and x[1] == "W" and state[1] == "S":
            c[f"S:{state[2]}"] += x[0] - t0
            state = (x[0], "R", "woken (wake-up latency)", x[3]); t0 = x[0]
            continue
        if state is not None and x[1] != "W":
            k = state[1] if state[1] == "run" else f"{state[1]}:{state[2]}"
            c[k] += x[0] - t0
        if x[1] == "END": break
        if x[1] != "W": state = x; t0 = x[0]
    return c
agg = collections.Counter(); excess = collections.Counter()
import os
QUIET = bool(__import__("os").environ.get("QUIET"))
for w, a, b, tid in wins:
    if w * 1e3 <= limit: continue
    c = collections.Counter(); inst = collections.Counter()
    bg = collections.Counter(); cli = collections.Counter()
    for t2 in tl:
        if comm_of.get(t2) == "wrk" and any(a <= x[0] <= b for x in tl[t2]):
            for k, v in breakdown(t2, a, b).items():
                if k.startswith("R"): cli["client(wrk) runnable"] += v
            continue
        if not mine(t2): continue
        L = tl[t2]
        if not any(a <= x[0] <= b for x in L): continue
        bd = breakdown(t2, a, b)
        isd = tgid.get(t2) == dpid
        if isd and comm_of.get(t2) in ("store-ckpt", "inst-freezer", "store-writer", "pysprinterd"):
            for k, v in bd.items():
                if not k.startswith("S"): bg[comm_of[t2] + " " + k[:1]] += v
            continue
        for k, v in bd.items():
            if k.startswith("S") and not (isd and "futex" in k and "lll_lock" in k): continue
            (c if isd else inst)[k if isd else "inst " + k] += v
    h = holders(a, b)
    # classify: the largest excess component
    comp = collections.Counter()
    for k, v in c.items():
        if k == "run": comp["req on cpu"] += v
        elif k.startswith("R"): comp["req runnable"] += v
        elif k.startswith("D"): comp["req D: " + ("sync" if "flush" in k or "wait" in k and "writeback" in k or "fsync" in k or "write_inode" in k or "fdatawait" in k else k[2:60])] += v
        elif "futex" in k: comp["req lock/cond wait"] += v
        elif "poll" in k or "recv" in k or "read" in k: pass  # waiting for the instance: see inst
        else: comp["req S: " + k[2:60]] += v
    for k, v in inst.items():
        if k == "inst run": comp["inst on cpu"] += v
        elif k.startswith("inst R"): comp["inst runnable"] += v
        elif k.startswith("inst D"): comp["inst D: " + k[7:60]] += v
    for k, v in cli.items(): comp[k] += v
    cause, v = comp.most_common(1)[0] if comp else ("nothing of this tree (lost events?)", 0)
    if PAUSES and paused(a, b) * 1e3 >= 0.5 * (w * 1e3 - limit):
        cause = "host: VM paused (no vCPU ticked)"
    if "runnable" in cause:
        hh = [(k, x) for k, x in h.most_common() if k not in ("idle",) and not k.startswith("d:MHD") and not k.startswith("inst:")]
        cause += " (cpu: " + (hh[0][0] if hh else "?") + ")"
    agg[cause] += 1
    excess[cause] += w * 1e3 - limit
    if os.environ.get("SHOWBIG") and w * 1e3 > float(os.environ["SHOWBIG"]):
        print(f"  BIG {w*1e3:.2f} ms at {a:.6f} ({a - A:.3f} s into phase): {cause}; " + "; ".join(f"{k} {v*1e3:.2f}" for k, v in (c + inst).most_common(3)))
    if QUIET: continue
    print(f"\n{w*1e3:7.3f} ms tid {tid} at {a:.6f}")
    print("   req:  " + "; ".join(f"{k} {v*1e3:.2f}" for k, v in c.most_common(4)))
    print("   bg:   " + "; ".join(f"{k} {v*1e3:.2f}" for k, v in bg.most_common(4)))
    print("   inst: " + "; ".join(f"{k} {v*1e3:.2f}" for k, v in inst.most_common(3)))
    print("   cpus: " + ", ".join(f"{k} {v*1e3:.2f}" for k, v in h.most_common(6)))

print("\n== slow windows by cause ==")
if PAUSES:
    print(f"  VM paused by its host (tick.data): {len(PAUSES)} times, {sum(y - x for x, y in PAUSES) * 1e3:.1f} ms"
          f" = {100 * sum(y - x for x, y in PAUSES) / (B - A):.2f}% of the phase")
tot = sum(agg.values())
etot = sum(excess.values())
print(f"  excess over {limit} ms in all: {etot:.1f} ms = {100 * etot / ((B - A) * 1e3):.2f}% of the phase (wrk's p99 <= {limit} ms needs < ~1%)")
for k, v in excess.most_common(): print(f"  {agg[k]:4d} slow, excess {v:7.1f} ms ({100*v/etot:4.1f}%)  {k}")
