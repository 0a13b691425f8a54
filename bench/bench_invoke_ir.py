"""Instructions the daemon executes per warm invoke (issue 15 b): the
daemon under `valgrind --tool=callgrind` (its own process only: the worker
and instances are exec'd children, not traced), `--sandbox=none`, one
deployed trivial function; the daemon's total instruction count after
20 + N1 and after 20 + N2 sequential invokes, on two fresh daemons,
(I2 - I1) / (N2 - N1) is the count per invoke. Unlike CPU time it does not
move with the machine's load, so two builds compare in one run each; it
does not see cache misses, page faults or lock waits.

Usage: /usr/bin/python3 bench/bench_invoke_ir.py BUILD_DIR [v1|lambda] [N1 N2]
  BENCH_SOURCE_PAD=N: the function's file N bytes larger (a comment).
  BENCH_CONCURRENCY=C: the N invokes come from C callers at once (each its
  own connection), after a warm-up of 8*C concurrent ones that starts the
  function's instances: the path of concurrent invokes (the run watcher's,
  round 9) rather than the sequential one.
Benchmarks are not tests."""
import http.client
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as br  # noqa: E402


def instructions(build, route, n):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-ir-"))
    try:
        port = br.free_port()
        cfg = tmp / "bench.yaml"
        cfg.write_text(f"tokens:\n  - tenant: bench\n    token: {br.TOKEN}\n"
                       "server:\n  max_concurrent_runs: 64\n  max_concurrent_per_tenant: 64\n")
        home = tmp / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(home), PYSPRINTER_WORKER=str(build / "src/worker/pysprinter-worker"))
        out = tmp / "callgrind.out"
        p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=no",
                              str(build / "src/daemon/pysprinterd"), "--listen", f"127.0.0.1:{port}", "--config",
                              str(cfg), "--sandbox=none"], env=env, stdout=open(tmp / "log", "wb"),
                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        st, b = br.call(c, "/v1/functions", {"name": "benchfn", "filename": "b.py", "source": br.SOURCE})
        assert st in (200, 201), b
        conc = int(os.environ.get("BENCH_CONCURRENCY", "1"))
        if conc <= 1:
            for _ in range(20 + n):
                st, b = br.call(c, br.PATHS[route], {})
                assert st == 200, b
        else:
            def callers(total):
                def one(k):
                    cc = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    for _ in range(total // conc + (k < total % conc)):
                        st, b = br.call(cc, br.PATHS[route], {})
                        assert st == 200, b
                ts = [threading.Thread(target=one, args=(k,)) for k in range(conc)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
            for _ in range(20):
                st, b = br.call(c, br.PATHS[route], {})
                assert st == 200, b
            callers(8 * conc)
            callers(n)
        p.send_signal(signal.SIGTERM)
        p.wait()
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        return int(m.group(1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    route = sys.argv[2] if len(sys.argv) > 2 else "v1"
    n1, n2 = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (50, 250)
    i1, i2 = instructions(build, route, n1), instructions(build, route, n2)
    print(f"build {build} route {route} pad {os.environ.get('BENCH_SOURCE_PAD', '0')} "
          f"concurrency {os.environ.get('BENCH_CONCURRENCY', '1')}: "
          f"{(i2 - i1) / (n2 - n1):.0f} instructions per invoke ({i1} after {n1}, {i2} after {n2})")


if __name__ == "__main__":
    main()
