#!/usr/bin/python3
"""Warm-worker benchmarks (issue 6, DESIGN §6), through pysprinterd over
loopback HTTP, each next to its baseline measured in the same run.

  (a) ad-hoc run of a trivial function in an env with requests
      goal: p50 <= 5 ms and >= 30x faster than `python3 -c 'import requests; ...'`
  (b) invoke of a deployed trivial function
      goal: p50 <= 1 ms, >= 3000 invocations/s at concurrency 8
  (c) ad-hoc throughput at concurrency 8: goal >= 500 runs/s
  (d) first run of an env whose packages are in the store, no warm worker:
      goal <= its packages' import time + 20 ms
  (e) PSS added per idle pre-forked child: goal <= 2 MiB

Usage: bench_workers.py BUILD_DIR [--quick]
Not a test: it prints figures and ratios, and always exits 0 unless the
daemon cannot be started.
"""
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import pkgindex  # noqa: E402
from proctree import child_pids, descendants  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import benchtable  # noqa: E402

PY = "/usr/bin/python3"
TOKEN = "bench-token-0123456789abcdef"


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        h = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        try:
            self.c.request(method, path, body=data, headers=h)
            r = self.c.getresponse()
            payload = r.read()
        except (http.client.HTTPException, OSError):
            self.c.close()
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.c.request(method, path, body=data, headers=h)
            r = self.c.getresponse()
            payload = r.read()
        return r.status, json.loads(payload) if payload else None


class Daemon:
    def __init__(self, build, home, index_url, sandbox):
        self.build, self.home, self.index_url, self.sandbox = build, home, index_url, sandbox
        self.proc = None

    def start(self):
        self.port = free_port()
        cfg = self.home.parent / "bench.yaml"
        cfg.write_text(f"tokens:\n  - tenant: bench\n    token: {TOKEN}\n"
                       f"index:\n  url: {self.index_url}\n"
                       "server:\n  max_concurrent_runs: 64\n  max_concurrent_per_tenant: 64\n"
                       "  max_queued_runs: 4096\n  max_connections: 256\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(self.home), PYSPRINTER_WORKER=str(self.build / "src/worker/pysprinter-worker"),
                   PYSPRINTER_INDEX_URL=self.index_url)
        args = [str(self.build / "src/daemon/pysprinterd"), "--listen", f"127.0.0.1:{self.port}",
                "--config", str(cfg), f"--sandbox={self.sandbox}"]
        self.log = open(self.home.parent / "daemon.log", "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pysprinterd did not start; see " + str(self.home.parent / "daemon.log"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timed_runs(client, n, body, path="/v1/runs?wait=true"):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, out = client.call("POST", path, body)
        lat.append(time.perf_counter() - t0)
        if st != 200 or (out or {}).get("status") not in (None, "succeeded"):
            raise RuntimeError(f"run failed: {st} {json.dumps(out)[:400]}")
    return lat


def client_invokes(port, name, n):
    """Latencies of n sequential pysprinter.Client.invoke() calls (this
    tree's python/), after 20 unmeasured: what a user's loop of invokes
    costs, the SDK's own HTTP included. The other figures use the private
    Client above."""
    sys.path.insert(0, str(ROOT / "python"))
    import pysprinter
    lat = []
    with pysprinter.Client(server=f"http://127.0.0.1:{port}", token=TOKEN) as pc:
        for i in range(20 + n):
            t0 = time.perf_counter()
            v = pc.invoke(name, i)
            if i >= 20:
                lat.append(time.perf_counter() - t0)
            if v != i + 1:
                raise RuntimeError(f"invoke {name}({i}) returned {v!r}")
    return lat


def throughput(port, seconds, conc, body, path):
    done = [0] * conc
    errors = [0] * conc
    stop = time.perf_counter() + seconds

    def loop(i):
        c = Client(port)
        while time.perf_counter() < stop:
            st, out = c.call("POST", path, body)
            if st == 200:
                done[i] += 1
            else:
                errors[i] += 1
    ts = [threading.Thread(target=loop, args=(i,)) for i in range(conc)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0), sum(errors)


def wrk_ms(text):
    """wrk's latency figures ("512.00us", "1.20ms", "2.00s") in ms."""
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * f
    return float(text)


def wrk_throughput(port, seconds, conc, body, path, latency=False):
    """Requests/s from wrk (Debian's package), a load generator that costs
    the machine far less than a Python client does; None without wrk. With
    latency, also wrk's p50 and p99 in ms (its HdrHistogram, measured by a
    C client: what the server adds, not a Python client's own overhead)."""
    import shutil
    if not shutil.which("wrk"):
        return None
    script = pathlib.Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n')
    out = subprocess.run(["wrk", f"-t{min(2, conc)}", f"-c{conc}", f"-d{seconds}s", "-s", str(script)]
                         + (["--latency"] if latency else []) + [f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    rate = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec:")), None)
    bad = next((int(l.split()[-1]) for l in out.splitlines() if "Non-2xx" in l), 0)
    if not latency:
        return rate, bad
    pcts = {l.split()[0]: wrk_ms(l.split()[1]) for l in out.splitlines()
            if re.match(r"\s+(50|99)(\.000)?%\s", l)}
    return rate, bad, pcts.get("50%", pcts.get("50.000%")), pcts.get("99%", pcts.get("99.000%"))


def spawn_baseline(n, code):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", code], check=True, capture_output=True)
        lat.append(time.perf_counter() - t0)
    return lat


def private_kb(pid):
    """What a process adds to the machine's PSS: its private pages (USS).
    Its shared pages' PSS is only redistributed among the sharers."""
    total = 0
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        pass
    return total


def same_mm(a, b):
    """kcmp(KCMP_VM): do two processes share one address space (the run's
    init is a CLONE_VM child of its spare; counting both counts it twice)?"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(312, a, b, 1, 0, 0) == 0


def subtree_private_kb(pid, shared_with=()):
    seen, total = list(shared_with), 0
    for p in [pid] + descendants(pid):
        if any(same_mm(p, q) for q in seen):
            continue
        seen.append(p)
        total += private_kb(p)
    return total


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def report(label, value, goal, ok, figure=None, baseline="-", ratio="-"):
    """ok None: informational (no verdict)."""
    verdict = "-" if ok is None else ("MET" if ok else "NOT MET")
    print(f"  {label:<58} {value:<26} goal {goal:<22} {verdict}")
    benchtable.row(figure or label, value, baseline, ratio, goal, ok)


# The benchmarks' "env with requests". Debian's urllib3, which the index
# repacks, imports six without declaring it (Debian patched its vendored
# six out), so the env declares six as well: without it the worker's
# preload of requests failed ("No module named 'six'") and every figure of
# an "env with requests" measured a worker that had not imported it (found
# in round 9; the e2e tests declare six for the same reason).
REQUESTS_ENV = "@requirements({'requests': '', 'six': ''})\n"


def requests_index():
    """A local index (started) serving requests and its dependencies,
    repacked from Debian's python3-* packages (tests/e2e/pkgindex.py), and
    six (REQUESTS_ENV)."""
    index = pkgindex.Index()
    for w in pkgindex.debian_wheels(["requests", "urllib3", "idna", "certifi", "charset-normalizer", "six"]):
        index.add(w)
    index.start()
    return index


def temp_home(prefix):
    """A fresh temporary directory and the PYSPRINTER_HOME inside it."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    home = tmp / "home"
    home.mkdir()
    return tmp, home


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build").resolve()
    quick = "--quick" in sys.argv
    sandbox = os.environ.get("BENCH_SANDBOX", "full")
    n = 40 if quick else 200
    tmp, home = temp_home("bench-workers-")
    index = requests_index()
    d = Daemon(build, home, index.url, sandbox).start()
    print(f"pysprinter warm-worker benchmarks (sandbox={sandbox}, {os.cpu_count()} CPUs, n={n})")
    try:
        c = Client(d.port)
        src = REQUESTS_ENV + "def f(x: int = 1):\n    return x + 1\n"
        body = {"source": src, "filename": "bench.py", "args": [1]}
        t0 = time.perf_counter()
        st, out = c.call("POST", "/v1/runs?wait=true", body)
        first = time.perf_counter() - t0
        if st != 200 or out.get("status") != "succeeded":
            raise RuntimeError(f"first run failed: {st} {json.dumps(out)[:500]}")
        print(f"  first run (resolve + install + cold worker): {first * 1000:.0f} ms")
        timed_runs(c, 10, body)  # settle: spares forked, caches warm

        # (a)
        lat = timed_runs(c, n, body)
        base = spawn_baseline(10 if quick else 20, "import requests; print(1 + 1)")
        p50, p99, b50 = pct(lat, 50), pct(lat, 99), pct(base, 50)
        print("(a) ad-hoc run, env with requests, sequential")
        report("p50 / p99", f"{p50 * 1e3:.2f} / {p99 * 1e3:.2f} ms", "p50 <= 5 ms", p50 <= 0.005,
               figure="(a) ad-hoc run p50 / p99")
        report("vs spawning python3 -c 'import requests' (p50 " + f"{b50 * 1e3:.0f} ms)",
               f"{b50 / p50:.1f}x faster", ">= 30x", b50 / p50 >= 30, figure="(a) ad-hoc run vs python3 -c 'import requests'",
               baseline=f"{b50 * 1e3:.0f} ms", ratio=f"{b50 / p50:.1f}x")

        # (b)
        st, out = c.call("POST", "/v1/functions", {"name": "benchfn", "source": src, "filename": "bench.py"})
        if st not in (200, 201):
            raise RuntimeError(f"deploy failed: {st} {out}")
        inv = {"args": [1]}
        lat = client_invokes(d.port, "benchfn", n)
        thr, errs = throughput(d.port, 3 if quick else 5, 8, inv, "/v1/functions/benchfn/invoke?wait=true")
        w = wrk_throughput(d.port, 3 if quick else 5, 8, inv, "/v1/functions/benchfn/invoke?wait=true")
        print("(b) invoke of a deployed trivial function")
        report("p50 / p99", f"{pct(lat, 50) * 1e3:.2f} / {pct(lat, 99) * 1e3:.2f} ms", "p50 <= 0.3 ms, p99 <= 2 ms",
               pct(lat, 50) <= 0.0003 and pct(lat, 99) <= 0.002, figure="(b) invoke p50 / p99 (Python client)")
        # Informational: (b)'s rate is set "at concurrency 8 with wrk" (the
        # next row). Eight Python threads on http.client spend more of the
        # two CPUs than the daemon does per invoke, so this row measures the
        # client: 4.4-7.0k/s on 2026-12-04 where wrk read 11.9-15.8k/s.
        report(f"throughput at concurrency 8, Python client ({errs} errors)", f"{thr:.0f} /s",
               "- (wrk's row below)", None, figure="(b) invokes/s, concurrency 8, Python client")
        if w:
            report(f"throughput at concurrency 8, wrk ({w[1]} non-2xx)", f"{w[0]:.0f} /s", ">= 5000 /s",
                   w[0] >= 5000 and w[1] == 0, figure="(b) invokes/s, concurrency 8, wrk")
        # The same with a C client (wrk): sequential latency, then the
        # Lambda path (the event is the body; the handler takes (event,
        # context)) sequential and at concurrency 8.
        lam = "def handler(event, context):\n    return event['x'] + 1\n"
        st, out = c.call("POST", "/v1/functions", {"name": "benchlam", "source": lam, "filename": "lam.py"})
        if st not in (200, 201):
            raise RuntimeError(f"deploy failed: {st} {out}")
        # Warmed as benchfn was above: the figures are of a warm function.
        # Its first invoke starts an instance (~30 ms), and wrk's latency
        # correction for coordinated omission turns one such stall into
        # ~1% of a 3 s -c1 run's samples: p99 would be the cold start
        # (docs/internals/performance-log.md "Invoke path: the tail, round 7").
        for _ in range(10):
            st, out = c.call("POST", "/2015-03-31/functions/benchlam/invocations", {"x": 1})
            if st != 200 or out != 2:
                raise RuntimeError(f"Lambda invoke failed: {st} {json.dumps(out)[:400]}")
        # benchfn met concurrency 8 (the Python client's and wrk's
        # throughput runs) before its measured -c8 run; benchlam had met
        # only sequential invokes, so its measured -c8 run started 3 more
        # instances (1 -> 4: pysprinter_pool_instances) inside the window it
        # measured (docs/internals/performance-log.md, round 10b). The same warm-up here.
        wrk_throughput(d.port, 1, 8, {"x": 1}, "/2015-03-31/functions/benchlam/invocations")
        secs = 3 if quick else 5
        for label, path, ev in (("/v1/functions/NAME/invoke", "/v1/functions/benchfn/invoke?wait=true", inv),
                                ("Lambda Invoke", "/2015-03-31/functions/benchlam/invocations", {"x": 1})):
            w1 = wrk_throughput(d.port, secs, 1, ev, path, latency=True)
            w8 = wrk_throughput(d.port, secs, 8, ev, path, latency=True)
            if not (w1 and w8 and w1[2] and w8[2]):
                continue
            tag = "lambda" if label.startswith("Lambda") else "invoke"
            report(f"{label}, wrk sequential p50 / p99 ({w1[1]} non-2xx)", f"{w1[2]:.2f} / {w1[3]:.2f} ms",
                   "p50 <= 0.3 ms, p99 <= 2 ms", w1[2] <= 0.3 and w1[3] <= 2 and w1[1] == 0,
                   figure=f"(b) {tag} p50 / p99, wrk -c1")
            report(f"{label}, wrk concurrency 8: rate, p50 / p99 ({w8[1]} non-2xx)",
                   f"{w8[0]:.0f} /s, {w8[2]:.2f} / {w8[3]:.2f} ms", ">= 5000 /s, p99 <= 2 ms",
                   w8[0] >= 5000 and w8[3] <= 2 and w8[1] == 0, figure=f"(b) {tag} /s and p99, wrk -c8")

        # (c)
        thr, errs = throughput(d.port, 3 if quick else 5, 8, body, "/v1/runs?wait=true")
        w = wrk_throughput(d.port, 3 if quick else 5, 8, body, "/v1/runs?wait=true")
        print("(c) ad-hoc runs at concurrency 8")
        report(f"throughput, Python client ({errs} errors)", f"{thr:.0f} runs/s", ">= 500 runs/s", thr >= 500,
               figure="(c) ad-hoc runs/s, concurrency 8, Python client")
        if w:
            report(f"throughput, wrk ({w[1]} non-2xx)", f"{w[0]:.0f} runs/s", ">= 500 runs/s",
                   w[0] >= 500 and w[1] == 0, figure="(c) ad-hoc runs/s, concurrency 8, wrk")

        # (e) idle spares: PSS of each pre-forked child of the env's worker
        time.sleep(1.0)
        # The env's warm worker proper: in the sandbox its cmdline is
        # /run/pysprinter/worker (the pysprinter-worker processes are its
        # waiters, with one child each), so look at every descendant: the
        # worker is a process with spares (children of their own address
        # space), the env's the largest of those (the validation worker,
        # which has spares too, has no env). A spare's cost is its whole
        # subtree; where the worker makes each run's pid namespace itself,
        # the spare's init is the worker's own CLONE_VM child: it shares
        # the worker's memory and adds none, so it is not a spare.
        children = child_pids

        def rss_kb(pid):
            try:
                return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])
            except (OSError, StopIteration):
                return 0
        with_spares = [p for p in descendants(d.proc.pid)
                       if "worker" in cmdline(p) and any(not same_mm(k, p) for k in children(p))]
        worker = max(with_spares, key=rss_kb, default=None)
        def is_instance(pid):
            # The deployed functions' warm instances are children too;
            # their cgroups are named after the functions.
            try:
                cg = open(f"/proc/{pid}/cgroup").read()
                return "benchfn" in cg or "benchlam" in cg
            except OSError:
                return True
        spares = [p for p in children(worker) if not same_mm(p, worker) and not is_instance(p)] if worker else []
        per_child = [subtree_private_kb(p, [worker]) for p in spares]
        print("(e) memory of idle pre-forked children")
        if per_child:
            m = statistics.median(per_child) / 1024
            report(f"PSS added per idle child (USS, median of {len(per_child)})", f"{m:.2f} MiB", "<= 2 MiB",
                   m <= 2, figure="PSS per idle spare")
        else:
            print("  no idle pre-forked child found to measure")
    finally:
        d.stop()

    # (d) packages in the store, no warm worker: a fresh daemon on the same home.
    d = Daemon(build, home, index.url, sandbox).start()
    try:
        c = Client(d.port)
        body2 = {"source": REQUESTS_ENV + "def g():\n    return 2\n", "filename": "cold.py"}
        t0 = time.perf_counter()
        st, out = c.call("POST", "/v1/runs?wait=true", body2)
        cold = time.perf_counter() - t0
        imp = statistics.median(spawn_baseline(5, "import requests")) - statistics.median(spawn_baseline(5, "pass"))
        print("(d) first run of an env in the store, no warm worker")
        report(f"first run (requests import alone: {imp * 1e3:.0f} ms)", f"{cold * 1e3:.0f} ms",
               "<= import + 20 ms", cold <= imp + 0.020, figure="cold env first run (packages in the store)",
               baseline=f"import {imp * 1e3:.0f} ms")
    finally:
        d.stop()
        index.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
