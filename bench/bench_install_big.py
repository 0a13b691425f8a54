"""Benchmark helper for bench-install.sh, goal (d) of issue 15: the first
install of one ~1 GiB wheel (the seed's `torch` case) by pysprinter against
`pip install` into a fresh venv, both from the same local index
(tests/e2e/pkgindex.py) on 127.0.0.1, in the same run. Not a timed test.

The wheel is made here once and cached next to pkgindex's other wheels:
a small package plus 96 incompressible files (os.urandom, 8 MiB each) and
64 compressible ones (hex text, 8 MiB each, about 2:1 under deflate); a
~1.05 GB wheel that unpacks to 1.34 GB. Each side runs 3 times (fresh
store / fresh venv each time; the venv is made before the clock starts,
so pip's figure is `pip install` alone); the median, the spread and the
peak RSS (GNU time's %M: the process and the children it waited for) are
reported."""
import base64
import hashlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import pkgindex  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
import benchtable  # noqa: E402

BUILD = pathlib.Path(os.environ.get("PYSPRINTER_BUILD", ROOT / "build")).resolve()
CLI = BUILD / "src" / "cli" / "pysprinter"
PY = "/usr/bin/python3"
NAME, VERSION = "bigwheel", "1.0"
CHUNK = 8 << 20
N_RANDOM, N_TEXT = 96, 64
GOAL_RATIO, GOAL_RSS_MIB = 1.5, 64
RUNS = int(os.environ.get("BENCH_BIG_RUNS", "3"))


def make_wheel(outdir):
    path = outdir / f"{NAME}-{VERSION}-py3-none-any.whl"
    if path.exists():
        return path
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rows = []
    distinfo = f"{NAME}-{VERSION}.dist-info"

    def add(z, name, data):
        zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        zi.external_attr = 0o644 << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi._compresslevel = 1
        z.writestr(zi, data)
        d = hashlib.sha256(data).digest()
        rows.append(f"{name},sha256={base64.urlsafe_b64encode(d).rstrip(b'=').decode()},{len(data)}")

    with zipfile.ZipFile(tmp, "w") as z:
        add(z, f"{NAME}/__init__.py", b"import os\nDATA = os.path.join(os.path.dirname(__file__), 'data')\n")
        for i in range(N_RANDOM):
            add(z, f"{NAME}/data/blob{i:03d}.bin", os.urandom(CHUNK))
        for i in range(N_TEXT):
            add(z, f"{NAME}/data/table{i:03d}.txt", os.urandom(CHUNK // 2).hex().encode())
        add(z, f"{distinfo}/METADATA", pkgindex.metadata_text(NAME, VERSION).encode())
        add(z, f"{distinfo}/WHEEL", b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        rows.append(f"{distinfo}/RECORD,,")
        zi = zipfile.ZipInfo(f"{distinfo}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(zi, ("\n".join(rows) + "\n").encode())
    tmp.rename(path)
    return path


def run(cmd, env):
    """Wall time and peak RSS (KiB, the child and what it waited for)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.decode()}\n{err.decode()}")
    return dt


def run_rss(cmd, env):
    """Wall time and peak RSS in KiB, by GNU time: a child spawned from
    this process would be charged this interpreter's RSS until its exec."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stderr}")
    return dt, int(p.stderr.strip().splitlines()[-1])


def spread(xs):
    return f"{min(xs):.2f}-{max(xs):.2f} s"


def main():
    if not CLI.exists():
        sys.exit(f"{CLI} not built (set PYSPRINTER_BUILD)")
    t = time.perf_counter()
    wheel = make_wheel(pkgindex.CACHE / "bench-big")
    made = time.perf_counter() - t
    size = wheel.stat().st_size
    print(f"(d) wheel {wheel.name}: {size / 1e9:.2f} GB ({'made in %.0f s' % made if made > 1 else 'cached'})")
    ix = pkgindex.Index(mode="html")
    ix.add(wheel)
    ix.start()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pysprinter-bench-big-", dir=os.environ.get("BENCH_TMP")))
    ours, rss, pips, pip_rss = [], [], [], []
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYSPRINTER_"))}
        env["PYSPRINTER_HOME"] = str(work / "home")
        pip_env = dict(env, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
        for i in range(RUNS):
            # Alternate the two so the machine's load hits both alike.
            # New trees each run, deleted at the end (see bench_install.py:
            # ext4 taxes creating files next to ones freed a moment ago).
            env["PYSPRINTER_HOME"] = str(work / f"home-{i}")
            dt, kib = run_rss([CLI, "env", "prepare", "--index-url", ix.url, NAME], env)
            ours.append(dt)
            rss.append(kib / 1024)
            venv = work / f"venv-{i}"
            run([PY, "-m", "venv", venv], pip_env)
            dt, kib = run_rss([venv / "bin" / "pip", "install", "-q", "--index-url", ix.url, NAME], pip_env)
            pips.append(dt)
            pip_rss.append(kib / 1024)
            print(f"  run {i + 1}: pysprinter {ours[-1]:.2f} s ({rss[-1]:.0f} MiB peak), "
                  f"pip {pips[-1]:.2f} s ({pip_rss[-1]:.0f} MiB peak)")
    finally:
        ix.stop()
        shutil.rmtree(work, ignore_errors=True)
    o, p, m = statistics.median(ours), statistics.median(pips), max(rss)
    ratio = p / o
    ok = ratio >= GOAL_RATIO and m <= GOAL_RSS_MIB
    print(f"(d) first install of a {size / 1e9:.2f} GB wheel: pysprinter {o:.2f} s (spread {spread(ours)}), "
          f"pip install {p:.2f} s (spread {spread(pips)}), ratio {ratio:.2f}x (goal >= {GOAL_RATIO}x); "
          f"peak RSS {m:.0f} MiB (goal <= {GOAL_RSS_MIB} MiB; pip {max(pip_rss):.0f} MiB): "
          f"{'MET' if ok else 'NOT MET'}")
    benchtable.row(f"(d) first install, {size / 1e9:.2f} GB wheel", f"{o:.2f} s", f"pip {p:.2f} s",
                   f"{ratio:.2f}x", f">= {GOAL_RATIO}x", ratio >= GOAL_RATIO)
    benchtable.row("(d) peak RSS of that install", f"{m:.0f} MiB", f"pip {max(pip_rss):.0f} MiB", "-",
                   f"<= {GOAL_RSS_MIB} MiB", m <= GOAL_RSS_MIB)


if __name__ == "__main__":
    main()
