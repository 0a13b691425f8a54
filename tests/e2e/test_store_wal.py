"""The daemon's database file as other processes see it (src/store/store-vfs.c
writes each WAL frame's header and page in one system call): another
process with plain SQLite reads every answered run while the daemon runs
(once the batch of the store's ended-runs journal holding it committed,
within ~50 ms: docs/api.md "Delivery"), and after a kill -9 recovers
every committed one from the WAL the daemon wrote; the daemon's restart
replays the rest from its journal before it serves.
Real daemon, real SQLite file, Python's sqlite3 (its own SQLite, the plain
unix VFS) as the other process."""
import concurrent.futures
import sqlite3
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

ECHO = "def echo(n: int = 0):\n    return {'n': n, 'pad': 'x' * (n % 7) * 300}\n"


def _read(db, ids):
    """{id: (status, value_json)} of ids, and integrity_check, by a plain
    connection of this process (WAL: it sees the last commit)."""
    con = sqlite3.connect(str(db), timeout=10)
    try:
        got = {}
        for i in range(0, len(ids), 200):
            part = ids[i:i + 200]
            q = "SELECT id, status, value_json FROM runs WHERE id IN (%s)" % ",".join("?" * len(part))
            got.update({r[0]: (r[1], r[2]) for r in con.execute(q, part)})
        return got, con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_plain_sqlite_reads_every_answered_invoke_live_and_after_kill9(tmp_path):
    d = Daemon(tmp_path / "d", sandbox="none").start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
        assert st == 201, b

        def invoke(n):
            st, ans = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"n": n}})
            assert st == 200 and ans["status"] == "succeeded", ans
            return ans["id"], n

        # Sequential and 8 at once (group commit: frames of several runs
        # in one transaction).
        answered = [invoke(n) for n in range(150)]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            answered += list(ex.map(invoke, range(150, 600)))
        ids = [rid for rid, _ in answered]
        db = d.home / "pysprinter.db"

        # The last ends wait in the journal for their batch (~50 ms).
        deadline = time.time() + 10
        got, ok = _read(db, ids)
        while set(got) != set(ids) and time.time() < deadline:
            time.sleep(0.05)
            got, ok = _read(db, ids)
        assert ok == "ok"
        assert set(got) == set(ids)
        for rid, n in answered:
            status, value = got[rid]
            assert status == "succeeded" and f'"n":{n}' in value.replace(" ", ""), (rid, got[rid])

        # More, then kill -9: nothing closed, the WAL as the daemon left it.
        answered += [invoke(n) for n in range(600, 700)]
        ids = [rid for rid, _ in answered]
        d.kill9()
        got, ok = _read(db, ids)
        assert ok == "ok"
        # Those whose end's batch had not committed are in the journal
        # (absent, or still "running" when their record was committed
        # before they ended): the daemon replays them at its start, and
        # then plain SQLite reads every one ended.
        d.start()
        got, ok = _read(db, ids)
        assert ok == "ok"
        assert set(got) == set(ids)
        assert {s for s, _ in got.values()} == {"succeeded"}
        for rid, n in answered[::97]:
            st, rec = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and rec["status"] == "succeeded", rec
    finally:
        d.stop()
