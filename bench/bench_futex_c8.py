"""The daemon per invoke under wrk -c8 (4 s): futex syscalls (the
syscalls:sys_enter_futex tracepoint, counted by perf stat), context
switches and task-clock, with wrk's rate, p50 and p99 (round 8,
docs/internals/performance-log.md "Invoke path: the instance's doom check, freezer and
wake-ups"). Alternate two builds: base, yours, base, yours...
Usage: /usr/bin/python3 bench/bench_futex_c8.py BUILD [REPEATS] [v1|lambda]
Benchmarks are not tests."""
import http.client, json, pathlib, subprocess, sys, tempfile, time, signal
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as b
build = pathlib.Path(sys.argv[1]).resolve()
route = sys.argv[3] if len(sys.argv) > 3 else "v1"
tmp = pathlib.Path(tempfile.mkdtemp(prefix="doom-futex-"))
proc, port = b.start(build, tmp)
try:
    b.deploy(port)
    path = b.PATHS[route]
    b.wrk(port, path, seconds=2)
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1):
        ps = subprocess.Popen(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_futex,context-switches,task-clock", "-p", str(proc.pid)],
                              stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        w = b.wrk(port, path, seconds=4)
        ps.send_signal(signal.SIGINT); _, err = ps.communicate()
        n = w[0] * 4
        vals = {l.split(",")[2]: float(l.split(",")[0]) for l in err.splitlines() if l.count(",") > 3 and l.split(",")[0].replace(".", "").isdigit()}
        print(f"{build.parent.name:8s} {route} -c8 {w[0]:.0f}/s p50 {w[3]} p99 {w[2]} ms; per invoke: futex {vals.get('syscalls:sys_enter_futex', 0)/n:.2f} "
              f"cs {vals.get('context-switches', 0)/n:.2f} task-clock {vals.get('task-clock', 0)/n:.3f} ms", flush=True)
finally:
    proc.send_signal(signal.SIGTERM); proc.wait()
