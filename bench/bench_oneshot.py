#!/usr/bin/python3
"""A new user's first command: one embedded `pysprinter run FILE` (no
daemon), of a trivial function with no requirements, in the full sandbox
and with --sandbox=none; and of one that declares a requirement (`six`,
an env already installed: the runs after the first), in the full sandbox. A cold worker each time: the CLI starts, opens
its store, starts a worker, builds the sandbox, starts Python inside it,
validates, runs, prints, and tears it all down.

Usage: /usr/bin/python3 bench/bench_oneshot.py BUILD [N] [BUILD2]

Two figures per mode (median of N): when the result's first byte reaches
stdout ("output") and when the process has exited ("exit": what `time`
and a shell's `$(...)` wait for). The baseline, measured in the same run
and interleaved with it, is plain `python3 FILE` calling the same
function: ratio is ours / python3's (informational, no goal; issue 15's
(a) is about a warm daemon). With BUILD2, the two builds alternate and
both are printed (an A/B)."""
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from benchtable import row  # noqa: E402
import pkgindex  # noqa: E402

SOURCE = "def main(a: int = 1):\n    return a + 1\n"
SOURCE_REQ = '@requirements({"six": ">=1"})\ndef main(a: int = 1):\n    import six\n    return a + 1\n'
PLAIN = "import sys\nsys.path.insert(0, %r)\nfrom e import main\nprint(main(5))\n"
# The file's modes: (label, file, extra arguments).
MODES = [("full", "e.py", ["--sandbox=full"]), ("none", "e.py", ["--sandbox=none"]),
         ("full, requirements", "r.py", ["--sandbox=full"])]


def timed(argv, env, cwd):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    first = p.stdout.read(1)
    t1 = time.perf_counter()
    p.stdout.read()
    rc = p.wait()
    t2 = time.perf_counter()
    if rc != 0 or first != b"6":
        raise SystemExit(f"{argv[0]} failed: exit {rc}, first byte {first!r}")
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    builds = [build] + ([pathlib.Path(sys.argv[3]).resolve()] if len(sys.argv) > 3 else [])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-oneshot-"))
    (tmp / "e.py").write_text(SOURCE)
    (tmp / "r.py").write_text(SOURCE_REQ)
    (tmp / "plain.py").write_text(PLAIN % str(tmp))
    index = pkgindex.Index()
    for w in pkgindex.debian_wheels(["six"]):
        index.add(w)
    index.start()
    modes = [m[0] for m in MODES]
    samples = {(str(b), m): ([], []) for b in builds for m in modes}
    plain = []
    for i in range(n + 1):  # the first round warms the page cache: not counted
        for b in builds:
            env = dict(os.environ, PYSPRINTER_HOME=str(tmp / ("home-" + str(builds.index(b)))))
            env.pop("PYSPRINTER_SERVER", None)
            for m, f, extra in MODES:
                o, e = timed([str(b / "src/cli/pysprinter"), "run", f, "-a", "5", "--index-url", index.url] + extra,
                             env, tmp)
                if i:
                    samples[(str(b), m)][0].append(o)
                    samples[(str(b), m)][1].append(e)
        o, e = timed(["/usr/bin/python3", "plain.py"], dict(os.environ), tmp)
        if i:
            plain.append(e)
    base = statistics.median(plain)
    print(f"python3 FILE (baseline): p50 {base:.1f} ms, n={n}")
    for b in builds:
        for m in modes:
            out, ex = (statistics.median(x) for x in samples[(str(b), m)])
            tag = f" [{b}]" if len(builds) > 1 else ""
            print(f"pysprinter run ({m}){tag}: output p50 {out:.1f} ms, exit p50 {ex:.1f} ms "
                  f"({ex / base:.1f}x python3 FILE)")
            if b == builds[0]:
                row(f"embedded one-shot run, sandbox {m} (exit)", f"{ex:.0f} ms", f"{base:.0f} ms",
                    f"{ex / base:.1f}x slower")
                row(f"embedded one-shot run, sandbox {m} (output)", f"{out:.0f} ms", f"{base:.0f} ms",
                    f"{out / base:.1f}x slower")
    index.stop()
    subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
