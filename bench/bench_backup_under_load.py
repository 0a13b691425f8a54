#!/usr/bin/env python3
"""Runs answered before `pysprinterd backup` began that the backup lacks,
under load (docs/internals/performance-log.md "Backup holds the journal's runs (round
14)"): a daemon of BUILD serves 4 clients of synchronous invokes with
the journal's default batches (50 ms); every ~30 ms the ids answered so
far are taken, a backup is made, and the answered runs it does not hold
`succeeded` are counted. Not a timed test: base misses a varying share,
depending on where each backup falls in the batches.

usage: bench_backup_under_load.py BUILD BACKUPS (the home is under $TMPDIR)"""
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

build, backups = sys.argv[1], int(sys.argv[2])
os.environ["PYSPRINTER_BUILD"] = build
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from daemonlib import Daemon  # noqa: E402

root = pathlib.Path(tempfile.mkdtemp(prefix="backup-load-"))
d = Daemon(root / "d").start()
st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": "def echo(token: str):\n    return token\n"})
assert st == 201
answered, stop, lock = [], threading.Event(), threading.Lock()


def client(k):
    i = 0
    while not stop.is_set():
        st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": f"{k}-{i}"}}, timeout=30)
        if st == 200:
            with lock:
                answered.append(b["id"])
        i += 1


threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
missing_total = short = 0
try:
    for r in range(backups):
        time.sleep(0.03)
        with lock:
            before = list(answered)
        out = root / f"b{r}.db"
        p = subprocess.run([f"{build}/src/daemon/pysprinterd", "backup", str(out), "--data-dir", str(d.home)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        db = sqlite3.connect(out)
        have = {x[0] for x in db.execute("SELECT id FROM runs WHERE status='succeeded'")}
        db.close()
        out.unlink()
        missing = sum(1 for x in before if x not in have)
        missing_total += missing
        short += missing > 0
finally:
    stop.set()
    for t in threads:
        t.join()
    d.stop()
    shutil.rmtree(root, ignore_errors=True)
print(f"{build}: {backups} backups, {short} lacked answered runs, {missing_total} answered runs missing in all, "
      f"{len(answered)} answered")
