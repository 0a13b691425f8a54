#!/usr/bin/env python3
"""Cost of `pysprinterd backup` with N ended runs only in the journal
(docs/internals/performance-log.md "Backup holds the journal's runs (round 14)").

A daemon of DAEMON_BUILD (its journal's batches held back by
PYSPRINTER_TEST_JOURNAL_LINGER_MS, so every answered run's end stays in
pysprinter.db-ended.*) answers N synchronous invokes and is killed -9;
then each BUILD backs the home up REPS times, alternating, and the wall
time, CPU time (user+sys) and the runs the backup says succeeded are
printed. N stays under 512 (a batch of 512 records commits at once).

usage: bench_backup_journal.py N REPS DAEMON_BUILD BUILD [BUILD...]
(the home is under $TMPDIR)"""
import concurrent.futures
import os
import pathlib
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

n, reps, daemon_build, builds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
os.environ["PYSPRINTER_BUILD"] = daemon_build
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from daemonlib import Daemon  # noqa: E402

root = pathlib.Path(tempfile.mkdtemp(prefix=f"backup-journal-{n}-"))
d = Daemon(root / "d")
base_env = d.env
d.env = lambda: {**base_env(), "PYSPRINTER_TEST_JOURNAL_LINGER_MS": "600000"}
d.start()
st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": "def echo(token: str):\n    return token\n"})
assert st == 201


def one(i):
    st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": f"t{i}"}}, timeout=30)
    assert st == 200, b


with concurrent.futures.ThreadPoolExecutor(4) as pool:
    list(pool.map(one, range(n)))
d.kill9()
held = sum(p.stat().st_size for p in d.home.glob("pysprinter.db-ended.*"))
print(f"N={n}: journal {held} bytes")
res = {b: [] for b in builds}
for r in range(reps):
    for i, b in enumerate(builds):
        out = root / f"backup-{r}-{i}.db"
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([f"{b}/src/daemon/pysprinterd", "backup", str(out), "--data-dir", str(d.home)],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert p.returncode == 0, p.stderr
        cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
        db = sqlite3.connect(out)
        ok = db.execute("SELECT count(*) FROM runs WHERE status='succeeded'").fetchone()[0]
        db.close()
        res[b].append((wall * 1000, cpu * 1000, ok))
for b in builds:
    walls = sorted(x[0] for x in res[b])
    cpus = sorted(x[1] for x in res[b])
    print(f"{b}: wall ms median {walls[len(walls) // 2]:.1f} (min {walls[0]:.1f}, max {walls[-1]:.1f}), "
          f"CPU ms median {cpus[len(cpus) // 2]:.1f}, runs succeeded in the backup "
          f"{sorted({x[2] for x in res[b]})}")
shutil.rmtree(root, ignore_errors=True)
