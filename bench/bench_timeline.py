#!/usr/bin/python3
"""Critical path of one sandboxed ad-hoc run, as CLOCK_MONOTONIC stamps.

Usage: /usr/bin/python3 bench/bench_timeline.py BUILD [N]   (root: perf)

Starts a daemon (bench_workers.Daemon, env with requests), warms it, then
records N sequential `POST /v1/runs?wait=true` under `perf record -a -k
CLOCK_MONOTONIC` with a few syscall tracepoints and two uprobes on
libpython's PyOS_AfterFork_Child (entry/return; made and removed here).
Each run is the window between the client's own monotonic stamps; in it,
the events of the daemon's process tree (rebuilt from fork events) give:

  http_in      daemon: first recvfrom of the request
  msg_sent     daemon: sendmsg of the run message to the worker
  worker_woke  worker: recvmsg of it returned
  spare_sent   worker: sendmsg to the spare
  child_woke   the run: recvmsg of its message returned
  sandboxed    the run: seccomp() returned (the filter is in)
  hooks_in     the run: PyOS_AfterFork_Child entered
  py_entered   the run: PyOS_AfterFork_Child returned
  result_out   the run: last write(3) (the result pipe)
  result_eof   the run: close(3)
  exit_in      the run: exit_group
  exit_done    the run: sched_process_exit (after its address space went)
  worker_reap  worker: wait4 that reaped the run
  recorded     daemon: first pwrite64 after result_eof (SQLite)
  resp_sent    daemon: the response's send after result_eof
  client_out   client: response read

Prints the median offset of each from the client's send and the median
gap between consecutive stamps; a stamp missing from a run is left out of
that run (e.g. sandboxed when the spare loaded its filter while idle)."""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_workers as bw  # noqa: E402

GAP = float(os.environ.get("TIMELINE_GAP_MS", "2")) / 1e3
LIBPY = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
SYSCALLS = [("exit", "recvfrom"), ("enter", "sendmsg"), ("exit", "recvmsg"), ("exit", "seccomp"),
            ("enter", "exit_group"), ("exit", "wait4"), ("enter", "pwrite64"), ("enter", "sendto"),
            ("enter", "writev")]


def mono():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def tree_of(root):
    """root and every process descending from it (any thread's child)."""
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
                parent[int(p)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out = {root}
    changed = True
    while changed:
        changed = False
        for p, pp in parent.items():
            if pp in out and p not in out:
                out.add(p)
                changed = True
    return sorted(out)


def perf_events():
    ev = []
    for kind, name in SYSCALLS:
        ev += ["-e", f"syscalls:sys_{kind}_{name}"]
    ev += ["-e", "syscalls:sys_enter_write", "--filter", "fd == 3"]
    ev += ["-e", "syscalls:sys_enter_close", "--filter", "fd == 3"]
    ev += ["-e", "sched:sched_process_fork", "-e", "sched:sched_process_exit"]
    ev += ["-e", "probe_libpython3:PyOS_AfterFork_Child", "-e", "probe_libpython3:PyOS_AfterFork_Child__return"]
    return ev


def parse(script_out):
    """perf script lines -> (time, pid, tid, event, fields)."""
    out = []
    for line in script_out.splitlines():
        # comm  tid/pid? default format: "comm PID/TID [cpu] time: event: fields"
        try:
            head, rest = line.split(": ", 1)
            parts = head.split()
            ts = float(parts[-1])
            ids = parts[-2]
            pid, tid = (int(x) for x in ids.split("/")) if "/" in ids else (int(ids), int(ids))
            event, _, fields = rest.partition(": ")
            if not fields:
                event, fields = rest.split(" ", 1) if " " in rest else (rest, "")
            out.append((ts, pid, tid, event.strip().rstrip(":"), fields, parts[0]))
        except (ValueError, IndexError):
            continue
    return out


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    tmp, home = bw.temp_home("bench-timeline-")
    index = bw.requests_index()
    for probe in ("PyOS_AfterFork_Child", "PyOS_AfterFork_Child%return"):
        subprocess.run(["perf", "probe", "-q", "-x", LIBPY, "-a", probe], stderr=subprocess.DEVNULL)
    d = bw.Daemon(build, home, index.url, "full").start()
    data = tmp / "perf.data"
    try:
        c = bw.Client(d.port)
        src = bw.REQUESTS_ENV + "def f(x: int = 1):\n    return x + 1\n"
        body = {"source": src, "filename": "bench.py", "args": [1]}
        bw.timed_runs(c, 30, body)
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", str(data)]
                                + perf_events(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        # The workers and spares forked before the recording began.
        known = tree_of(d.proc.pid)
        windows = []
        for _ in range(n):
            t0 = mono()
            bw.timed_runs(c, 1, body)
            windows.append((t0, mono()))
            # TIMELINE_GAP_MS=0: back to back, as bench-workers' (a) runs.
            time.sleep(GAP)  # let the spare be replaced, as between a user's runs
        perf.send_signal(2)
        perf.wait()
    finally:
        d.stop()
        index.stop()
        subprocess.run(["perf", "probe", "-q", "-d", "probe_libpython3:PyOS_AfterFork_Child*"],
                       stderr=subprocess.DEVNULL)
    (tmp / "windows.json").write_text(json.dumps({"daemon": d.proc.pid, "known": known, "windows": windows}))
    analyse(tmp, d.proc.pid, known, windows)


def analyse(tmp, daemon_pid, known, windows):
    data = tmp / "perf.data"
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,time,event,trace"],
                            capture_output=True, text=True).stdout
    events = parse(script)
    # The daemon's tree, from fork events (and the daemon itself).
    tree = set(known)
    for ts, pid, tid, ev, f, _comm in events:
        if ev.endswith("sched_process_fork") and pid in tree:
            kv = dict(x.split("=", 1) for x in f.split() if "=" in x)
            try:
                tree.add(int(kv["child_pid"]))
            except (KeyError, ValueError):
                pass
    mine = [e for e in events if e[1] in tree]
    daemon = daemon_pid
    stamps = {}
    for (t0, t1) in windows:
        w = [e for e in mine if t0 <= e[0] <= t1 + 0.02]
        s = {"client_send": t0, "client_out": t1}

        def first(pred, after=t0, key=None):
            for e in w:
                if e[0] >= after and pred(e):
                    if key:
                        s[key] = e[0]
                    return e
            return None
        first(lambda e: e[1] == daemon and e[3].endswith("sys_exit_recvfrom"), key="http_in")
        m = first(lambda e: e[1] == daemon and e[3].endswith("sys_enter_sendmsg"), after=s.get("http_in", t0),
                  key="msg_sent")
        if not m:
            continue
        wk = first(lambda e: e[1] != daemon and e[3].endswith("sys_exit_recvmsg"), after=m[0], key="worker_woke")
        if not wk:
            continue
        worker = wk[1]
        sp = first(lambda e: e[1] == worker and e[3].endswith("sys_enter_sendmsg"), after=wk[0], key="spare_sent")
        if not sp:
            continue
        ch = first(lambda e: e[1] not in (worker, daemon) and e[3].endswith("sys_exit_recvmsg"), after=sp[0],
                   key="child_woke")
        if not ch:
            continue
        run = ch[1]
        first(lambda e: e[1] == run and e[3].endswith("sys_exit_seccomp"), after=ch[0], key="sandboxed")
        first(lambda e: e[1] == run and e[3].endswith("PyOS_AfterFork_Child"), after=ch[0], key="hooks_in")
        first(lambda e: e[1] == run and e[3].endswith("PyOS_AfterFork_Child__return"), after=ch[0], key="py_entered")
        writes = [e for e in w if e[1] == run and e[3].endswith("sys_enter_write")]
        if writes:
            s["result_out"] = writes[-1][0]
        # The last close(3) of the run is its result pipe's (a sealed
        # spare's socket may have been fd 3 too).
        closes = [e for e in w if e[1] == run and e[3].endswith("sys_enter_close") and e[0] >= ch[0]]
        eof = closes[-1] if closes else None
        if eof:
            s["result_eof"] = eof[0]
        first(lambda e: e[1] == run and e[3].endswith("sys_enter_exit_group"), after=ch[0], key="exit_in")
        first(lambda e: e[1] == run and e[3].endswith("sched_process_exit"), after=ch[0], key="exit_done")
        # wait4 answers pids of the worker's namespace: the first reap after
        # the run's exit is the run's.
        first(lambda e: e[1] == worker and e[3].endswith("sys_exit_wait4") and e[4].strip() not in ("0x0", "")
              and not e[4].strip().startswith("0xffff"), after=s.get("exit_done", ch[0]), key="worker_reap")
        if eof:
            first(lambda e: e[1] == daemon and e[3].endswith("sys_enter_pwrite64"), after=eof[0], key="recorded")
            first(lambda e: e[1] == daemon and e[3].endswith(("sys_enter_sendto", "sys_enter_writev", "sys_enter_sendmsg")),
                  after=eof[0], key="resp_sent")
        for k, v in s.items():
            stamps.setdefault(k, []).append((v - t0) * 1e3)
    order = ["client_send", "http_in", "msg_sent", "worker_woke", "spare_sent", "child_woke", "sandboxed",
             "hooks_in", "py_entered", "result_out", "result_eof", "recorded", "resp_sent", "client_out",
             "exit_in", "exit_done", "worker_reap"]
    print(f"runs recorded: {len(windows)}, with a full worker-side trace: {len(stamps.get('child_woke', []))}")
    print(f"{'stamp':<12} {'n':>4} {'median ms from send':>20} {'gap from previous':>18}")
    prev = None
    for k in order:
        v = stamps.get(k)
        if not v:
            continue
        med = statistics.median(v)
        gap = "" if prev is None else f"{med - prev:+.3f}"
        print(f"{k:<12} {len(v):>4} {med:>20.3f} {gap:>18}")
        prev = med
    (tmp / "stamps.json").write_text(json.dumps(stamps))
    print("raw:", tmp / "stamps.json")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--analyse":
        t = pathlib.Path(sys.argv[2])
        meta = json.loads((t / "windows.json").read_text())
        analyse(t, meta["daemon"], meta["known"], [tuple(w) for w in meta["windows"]])
    else:
        main()
