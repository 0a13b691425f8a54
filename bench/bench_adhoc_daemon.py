#!/usr/bin/python3
"""The daemon's own share of a sandboxed ad-hoc run (issue 15 (a), (c)):
CPU of the pysprinterd process alone (its threads' utime + stime from
/proc/PID/stat, not its children's) per `POST /v1/runs?wait=true` (env with
requests, trivial function: bench_workers.py's body), under wrk -c8 and
sequentially, plus the median engine phase times of the run records.

Usage: /usr/bin/python3 bench/bench_adhoc_daemon.py BUILD_DIR [--perf FILE] [--strace] [--seconds N]
  --perf FILE: `perf record -g -p DAEMONPID` during the wrk load, into FILE
  --strace: syscalls per run of the daemon (strace -f -c), 200 sequential runs
Benchmarks are not tests: figures move with the machine's load."""
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_workers as bw  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of the process itself (all its threads), in seconds."""
    f = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


# The daemon's work by what it is for: a sample goes to the first class
# one of whose names appears anywhere on its stack (needs --dwarf stacks).
CATS = [
    ("cgroups: make (pool, spares)", ["sandbox_cgroup_new", "apply_limits", "engine_sandbox_run_prepare"]),
    ("cgroups: kill + remove (janitor)", ["sandbox_cgroup_free", "engine_sandbox_run_finish", "janitor_main"]),
    ("store: submit (queued record)", ["sq_submit", "run_queue_submit"]),
    ("store: finish (terminal record)", ["record_finish", "store_run_finish"]),
    ("store: start, writer thread", ["writer_main", "sq_start"]),
    ("store: other", ["store_", "sqlite3"]),
    ("resolve (env)", ["phase_resolve", "engine_resolve_env"]),
    ("validate", ["phase_validate"]),
    ("env note (tenant)", ["daemon_env_note"]),
    ("output dir", ["output_dir_create", "output_dir_finish", "out_spare", "out_dir_pristine"]),
    ("run message (send_run)", ["send_run"]),
    ("pipes, watch, result", ["watch_run", "pipes_open", "pipes_close", "read_result", "classify"]),
    ("HTTP, request, answer", ["on_request", "MHD_", "daemon_call", "respond", "daemon_request"]),
    ("run thread other (engine_run)", ["engine_run", "run_one"]),
    ("pool/instances other", ["pool_", "spare"]),
]


def classes(data, ms_per_run):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True).stdout
    cnt, total = {}, 0
    for block in out.split("\n\n"):
        stack = [ln.split()[1] for ln in block.splitlines() if len(ln.split()) >= 2]
        if not stack:
            continue
        total += 1
        name = next((n for n, keys in CATS if any(k in f for f in stack for k in keys)), "other (scheduler, wake-ups)")
        cnt[name] = cnt.get(name, 0) + 1
    for name, n in sorted(cnt.items(), key=lambda x: -x[1]):
        print(f"  | {name} | {n / total * 100:.1f}% | {n / total * ms_per_run * 1000:.0f} µs |")


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    perf = sys.argv[sys.argv.index("--perf") + 1] if "--perf" in sys.argv else None
    secs = int(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 5
    tmp, home = bw.temp_home("bench-adhocd-")
    index = bw.requests_index()
    d = bw.Daemon(build, home, index.url, os.environ.get("BENCH_SANDBOX", "full")).start()
    pid = d.proc.pid
    try:
        c = bw.Client(d.port)
        src = bw.REQUESTS_ENV + "def f(x: int = 1):\n    return x + 1\n"
        body = {"source": src, "filename": "bench.py", "args": [1]}
        st, out = c.call("POST", "/v1/runs?wait=true", body)
        assert st == 200 and out.get("status") == "succeeded", (st, out)
        bw.timed_runs(c, 30, body)
        # sequential: CPU per run and the phases of the run records
        n = 300
        t0 = cpu_s(pid)
        lat = [x * 1e3 for x in bw.timed_runs(c, n, body)]
        seq = (cpu_s(pid) - t0) / n * 1e3
        print(f"{build}: sequential p50 {bw.pct(lat, 50):.2f} ms, daemon CPU {seq:.3f} ms/run")
        st, runs = c.call("GET", f"/v1/runs?limit={n}")
        items = runs.get("runs", runs) if isinstance(runs, dict) else runs
        phases = {}
        for r in items or []:
            for k, v in (r.get("timings") or {}).items():
                if isinstance(v, (int, float)):
                    phases.setdefault(k, []).append(v)
        if phases:
            print("  phases (median ms): " + ", ".join(f"{k} {statistics.median(v):.3f}"
                                                       for k, v in sorted(phases.items())))
        # wrk -c8: CPU per run under load
        prec = None
        if perf:
            prec = subprocess.Popen(["perf", "record", *(["--call-graph", "dwarf,16384"] if "--dwarf" in sys.argv else ["-g"]), "-F", "1000", "-o", perf, "-p", str(pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        t0 = cpu_s(pid)
        w = bw.wrk_throughput(d.port, secs, 8, body, "/v1/runs?wait=true", latency=True)
        used = cpu_s(pid) - t0
        if prec:
            prec.send_signal(2)
            prec.wait()
        if w:
            total = w[0] * secs
            print(f"  wrk -c8: {w[0]:.0f} runs/s, p50 {w[2]:.2f} ms, daemon CPU {used / total * 1e3:.3f} ms/run"
                  f" ({w[1]} non-2xx)")
            if perf and "--dwarf" in sys.argv:
                classes(perf, used / total * 1e3)
        if "--strace" in sys.argv and shutil.which("strace"):
            out = tmp / "strace.txt"
            s = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            bw.timed_runs(c, 200, body)
            s.send_signal(2)
            s.wait()
            for line in out.read_text().splitlines():
                p = line.split()
                if len(p) >= 5 and p[3].isdigit():
                    print(f"  strace {p[-1]:<16} {int(p[3]) / 200:.2f} /run")
                elif p and p[-1] == "total":
                    print(f"  strace total {int(p[2]) / 200:.2f} /run")
    finally:
        d.stop()
        index.stop() if hasattr(index, "stop") else None
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
