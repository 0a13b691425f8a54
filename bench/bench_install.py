"""Benchmark helper for bench-install.sh (issue 3): pysprinter's package
manager against `python3 -m venv` + `pip install`, both from the same local
index (tests/e2e/pkgindex.py) on 127.0.0.1. Not a timed test.

(1) first install of {requests + deps, numpy, six} into an empty store;
(2) the same set again (pysprinter: lock cache -> ready env; pip: "already
satisfied")."""
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import pkgindex  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
import benchtable  # noqa: E402

BUILD = pathlib.Path(os.environ.get("PYSPRINTER_BUILD", ROOT / "build")).resolve()
CLI = BUILD / "src" / "cli" / "pysprinter"
PY = "/usr/bin/python3"
REQS = ["requests", "numpy", "six"]


def timed(cmd, env=None, check=True):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}")
    return dt, p


def main():
    if not CLI.exists():
        sys.exit(f"{CLI} not built (set PYSPRINTER_BUILD)")
    # PEP 503 HTML: pip 23.0 (Debian's) crashes on PEP 691's dict-valued
    # dist-info-metadata, and both tools must read the same index.
    ix = pkgindex.Index(mode="html")
    for w in pkgindex.debian_wheels():
        ix.add(w)
    ix.start()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pysprinter-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYSPRINTER_"))}
        env["PYSPRINTER_HOME"] = str(work / "home")
        ps_cmd = [CLI, "env", "prepare", "--time", "--index-url", ix.url, *REQS]

        # (1) first install, empty store, against a fresh venv + pip: 3
        # runs each, alternated so the machine's load hits both alike (the
        # median of each side). Every tree is deleted only at the end:
        # ext4 skips inodes freed in the last minute when it allocates, so
        # deleting a run's thousand files just before the next run taxes
        # each file the next one creates (perf: ~70% of numpy's unpack in
        # recently_deleted()); pip's venvs are treated alike.
        pip_env = dict(env, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
        firsts, pip_firsts = [], []
        for i in range(3):
            env["PYSPRINTER_HOME"] = str(work / f"home-first-{i}")
            dt, p = timed(ps_cmd, env)
            firsts.append(dt)
            venv = work / f"venv-{i}"
            t = time.perf_counter()
            timed([PY, "-m", "venv", venv], pip_env)
            timed([venv / "bin" / "pip", "install", "-q", "--index-url", ix.url, *REQS], pip_env)
            pip_firsts.append(time.perf_counter() - t)
        ps_first = statistics.median(firsts)
        pip_first = statistics.median(pip_firsts)
        env["PYSPRINTER_HOME"] = str(work / "home")
        timed(ps_cmd, env)
        # (2) again: lock cache -> ready env
        agains, internal = [], []
        for i in range(30):
            dt, p = timed(ps_cmd, env)
            agains.append(dt)
            line = [l for l in p.stderr.splitlines() if l.startswith("ready in")][-1]
            internal.append(int(line.split()[2]) / 1e6)
            assert "cached" in line, line
        ps_again = statistics.median(agains)
        ps_internal = statistics.median(internal)

        pip_agains = [timed([venv / "bin" / "pip", "install", "-q", "--index-url", ix.url, *REQS], pip_env)[0]
                      for _ in range(3)]
        pip_again = statistics.median(pip_agains)
    finally:
        ix.stop()
        shutil.rmtree(work, ignore_errors=True)

    def row(name, ours, theirs, goal):
        ratio = theirs / ours
        ok = "MET" if ratio >= goal else "NOT MET"
        print(f"{name:<44} pysprinter {ours * 1000:9.2f} ms   pip {theirs * 1000:9.1f} ms   "
              f"ratio {ratio:8.1f}x  (goal >= {goal}x: {ok})")
        benchtable.row(("(e) " if name.startswith("(1)") else "") + "install: " + name[4:], f"{ours * 1000:.1f} ms", f"pip {theirs * 1000:.0f} ms",
                       f"{ratio:.1f}x", f">= {goal}x", ratio >= goal)

    print(f"requirements: {' '.join(REQS)} (+ deps), local index {len(pkgindex.debian_wheels())} wheels")
    print(f"(1) runs: pysprinter {' '.join(f'{x * 1000:.0f}' for x in firsts)} ms; "
          f"venv + pip {' '.join(f'{x * 1000:.0f}' for x in pip_firsts)} ms")
    row("(1) first install, empty store", ps_first, pip_first, 20)
    row("(2) same set again, process wall time", ps_again, pip_again, 100)
    row("(2) same set again, ready-env time (internal)", ps_internal, pip_again, 100)
    benchtable.row("repeat of a seen set (ready-env)", f"{ps_internal * 1000:.3f} ms", goal="<= 2 ms",
                   met=ps_internal <= 0.002)
    print(f"(2) ready-env time {ps_internal * 1000:.3f} ms (goal <= 2 ms: "
          f"{'MET' if ps_internal <= 0.002 else 'NOT MET'}); process wall {ps_again * 1000:.2f} ms")


if __name__ == "__main__":
    main()
