"""Operating pysprinterd for months (issue 18, docs/operations.md): retention
with an injectable clock, the collector under load, /metrics and /healthz
disk figures, 507 before the disk is full, backup under load and restore,
--check-config, schema upgrades from the committed fixture."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import CLI, DAEMON, ROOT, WORKER
from daemonlib import TOKENS, Daemon

FIXTURE = ROOT / "tests" / "fixtures" / "schema-v5.db"
FIXTURE_V15 = ROOT / "tests" / "fixtures" / "schema-v15.db"
DAY = 86400


def ops_env(home, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    e["PYSPRINTER_HOME"] = str(home)
    e["PYSPRINTER_WORKER"] = str(WORKER)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def pysprinterd(*args, home, timeout=120, **extra):
    return subprocess.run([str(DAEMON), *map(str, args)], capture_output=True, text=True,
                          env=ops_env(home, **extra), timeout=timeout)


def pysprinter(*args, home, timeout=120, **extra):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True,
                          env=ops_env(home, **extra), timeout=timeout)


def new_home(tmp_path, name="home"):
    """A home whose database the current binary created (schema current):
    `dag resume` of no DAG run opens the engine and adds nothing (`ps` and
    `gc` in a home with no database create nothing)."""
    h = tmp_path / name
    h.mkdir()
    p = pysprinter("dag", "resume", "dnone", home=h)
    assert p.returncode == 2 and (h / "pysprinter.db").exists(), p.stderr
    return h


def insert_runs(home, rows):
    """rows: (id, tenant, status, created_s, log_bytes or None)."""
    db = sqlite3.connect(home / "pysprinter.db")
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    batch = []
    for rid, tenant, status, created, log_bytes in rows:
        log = None
        if log_bytes is not None:
            log = logs / f"{rid}.log"
            log.write_bytes(b"x" * log_bytes)
            log = str(log)
        batch.append((rid, tenant, "f.py", "f", status, 0 if status == "succeeded" else -1, log,
                      int(created * 1e6), int(created * 1e6), int(created * 1e6) if status == "succeeded" else 0))
    db.executemany("INSERT INTO runs (id, tenant, filename, function, status, exit_code, log_path, created, "
                   "started, finished) VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
    db.commit()
    db.close()


def run_ids(home):
    db = sqlite3.connect(home / "pysprinter.db")
    try:
        return {r[0] for r in db.execute("SELECT id FROM runs")}
    finally:
        db.close()


def gc_json(home, *args, now=None, **kw):
    extra = {"PYSPRINTER_TEST_NOW": int(now)} if now else {}
    p = pysprinterd("gc", "--json", "--data-dir", home, *args, home=home, **extra, **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# ---- retention ---------------------------------------------------------------

def test_retention_by_age_with_injected_clock(tmp_path):
    home = new_home(tmp_path)
    now = time.time()
    insert_runs(home, [
        ("old-done", "alice", "succeeded", now - 40 * DAY, 100),
        ("old-failed", "alice", "failed", now - 31 * DAY, 100),
        ("old-queued", "alice", "queued", now - 90 * DAY, None),
        ("old-running", "alice", "running", now - 90 * DAY, 100),
        ("young", "alice", "succeeded", now - 5 * DAY, 100),
    ])
    # A dry run says what would go and removes nothing.
    st = gc_json(home, "--dry-run")
    assert st["dry_run"] and st["runs"] == 2 and st["logs"] == 2 and st["log_bytes"] == 200
    assert len(run_ids(home)) == 5 and (home / "logs" / "old-done.log").exists()

    p = pysprinterd("gc", "--data-dir", home, home=home)
    assert p.returncode == 0, p.stderr
    assert "removed 2 runs (2 logs" in p.stdout and "freed" in p.stdout
    assert run_ids(home) == {"old-queued", "old-running", "young"}
    assert not (home / "logs" / "old-done.log").exists()
    assert (home / "logs" / "old-running.log").exists()

    # 26 days later by the injected clock, the young run is past 30 days;
    # queued and running runs never go.
    st = gc_json(home, now=now + 26 * DAY)
    assert st["runs"] == 1
    assert run_ids(home) == {"old-queued", "old-running"}


def test_retention_log_budget_and_tenant_overrides(tmp_path):
    home = new_home(tmp_path)
    now = time.time()
    rows = [(f"a{i}", "alice", "succeeded", now - 100 + i, 1000) for i in range(10)]
    rows += [(f"b{i}", "bob", "succeeded", now - 3 * DAY + i, 10) for i in range(3)]
    insert_runs(home, rows)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("retention:\n  max_log_bytes: 4500\n  tenants:\n    bob:\n      max_age_days: 2\n")
    st = gc_json(home, "--config", cfg)
    # alice: the newest 4 logs fit 4500 bytes, the 6 oldest go; bob's runs
    # are past his 2 days; the default 30 days keeps alice's.
    assert st["runs"] == 9
    assert run_ids(home) == {"a6", "a7", "a8", "a9"}



def test_dry_run_reports_what_the_collection_then_removes(tmp_path):
    """The engine keeps a run's log path beside the database as '' (the
    default path, derived from the database's file). The dry run works on an
    in-memory copy, which has no file: it reported 0 logs, and under
    max_log_bytes 0 runs, where the collection then removed them."""
    home = new_home(tmp_path)
    now = time.time()
    rows = [(f"a{i}", "alice", "succeeded", now - 100 + i, 1000) for i in range(10)]
    rows += [(f"b{i}", "bob", "succeeded", now - 40 * DAY + i, 500) for i in range(3)]
    insert_runs(home, rows)
    with sqlite3.connect(home / "pysprinter.db") as db:
        db.execute("UPDATE runs SET log_path=''")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("retention:\n  max_log_bytes: 4500\n")
    dry = gc_json(home, "--config", cfg, "--dry-run")
    assert len(list((home / "logs").iterdir())) == 13 and len(run_ids(home)) == 13
    wet = gc_json(home, "--config", cfg)
    assert wet["runs"] == 9 and wet["logs"] == 9 and wet["log_bytes"] == 6 * 1000 + 3 * 500, wet
    for k in ("runs", "logs", "log_bytes", "dag_runs"):
        assert dry[k] == wet[k], (k, dry, wet)
    assert run_ids(home) == {"a6", "a7", "a8", "a9"}
    assert sorted(p.name for p in (home / "logs").iterdir()) == [f"a{i}.log" for i in range(6, 10)]


def test_retention_tenant_override_of_zero_keeps_forever(tmp_path):
    """A tenant's max_age_days: 0 or max_log_bytes: 0 is "keep forever"
    (docs/operations.md), not "the default's"; a key the override does not
    write keeps the default."""
    home = new_home(tmp_path)
    now = time.time()
    rows = [(f"a{i}", "alice", "succeeded", now - 100 + i, 1000) for i in range(5)]
    rows += [(f"b{i}", "bob", "succeeded", now - 40 * DAY + i, 1000) for i in range(5)]
    rows += [(f"c{i}", "carol", "succeeded", now - 100 + i, 1000) for i in range(5)]
    rows += [("c-old", "carol", "succeeded", now - 40 * DAY, 10)]
    insert_runs(home, rows)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("retention:\n  max_age_days: 30\n  max_log_bytes: 2500\n  tenants:\n"
                   "    bob:\n      max_age_days: 0\n      max_log_bytes: 0\n"
                   "    carol:\n      max_log_bytes: 0\n")
    st = gc_json(home, "--config", cfg)
    # alice: the defaults, 2 newest logs fit; bob: nothing goes; carol: no
    # byte budget, but the default age still applies.
    assert st["runs"] == 4, st
    assert run_ids(home) == {"a3", "a4"} | {f"b{i}" for i in range(5)} | {f"c{i}" for i in range(5)}


def test_embedded_gc_and_deleted_function_runs(tmp_path):
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "gone", "source": "def f(x=1):\n    return x\n"})
        assert st in (200, 201)
        st, b = d.call("POST", "/v1/functions/gone/invoke?wait=true", {"kwargs": {"x": 2}})
        assert st == 200 and b["status"] == "succeeded", b
        kept = d.run("def f():\n    return 1\n")[1]["id"]
        st, _ = d.call("DELETE", "/v1/functions/gone")
        assert st in (200, 204)
    finally:
        d.stop()
    p = pysprinterd("gc", "--json", "--data-dir", d.home, home=d.home)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["runs"] == 1
    assert run_ids(d.home) == {kept}
    # The embedded CLI collects its own home the same way.
    p = pysprinter("--json", "gc", home=d.home, PYSPRINTER_TEST_NOW=int(time.time() + 31 * DAY))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["runs"] == 1 and run_ids(d.home) == set()



def test_gc_counts_the_cancel_requests_it_removes_on_both_commands(tmp_path):
    """gc removed $DATA/cancel asks of runs no longer in flight without a
    word: the summary now counts them like every other kind, in text and
    --json, a dry run too (counted, not removed), and `pysprinter gc` and
    `pysprinterd gc` print the same numbers for the same home."""
    home = new_home(tmp_path)
    now = time.time()
    insert_runs(home, [("done", "local", "succeeded", now - 60, None), ("going", "local", "running", now - 60, None)])
    asks = home / "cancel"
    asks.mkdir()
    for name in ("done", "going", "rnosuchrun"):
        (asks / name).write_text("")
    listing = lambda: sorted(p.name for p in asks.iterdir())  # noqa: E731
    for dry in (pysprinter("--json", "gc", "--dry-run", home=home),
                pysprinterd("gc", "--json", "--dry-run", "--data-dir", home, home=home)):
        assert dry.returncode == 0, dry.stderr
        st = json.loads(dry.stdout)
        assert st["dry_run"] and st["cancel_requests"] == 2, st
        assert list(st)[list(st).index("data_bytes") + 1] == "cancel_requests", st
    assert listing() == ["done", "going", "rnosuchrun"]
    text = [pysprinter("gc", "--dry-run", home=home), pysprinterd("gc", "--dry-run", "--data-dir", home, home=home)]
    assert [t.stdout.splitlines()[0] for t in text] == [
        "would remove 0 runs (0 logs, 0 B), 0 DAG runs (0 folders, 0 B), 0 memo entries, 0 data objects (0 B), "
        "2 cancel requests; unreferenced packages: 0 B"] * 2, text
    p = pysprinter("gc", home=home)
    assert p.returncode == 0, p.stderr
    assert ", 2 cancel requests; unreferenced packages: " in p.stdout.splitlines()[0], p.stdout
    assert listing() == ["going"]
    again = gc_json(home)
    assert again["cancel_requests"] == 0 and not again["dry_run"], again
    assert listing() == ["going"]


def test_cli_gc_with_a_server_is_refused_and_keeps_the_local_home(tmp_path):
    """gc has no server form: with --server (or PYSPRINTER_SERVER) it must
    not collect the local home instead of the server the user named."""
    home = new_home(tmp_path)
    insert_runs(home, [("old", "alice", "succeeded", time.time() - 40 * DAY, 100)])
    for args, extra in ((["--server", "http://127.0.0.1:9", "gc"], {}),
                        (["gc", "--dry-run"], {"PYSPRINTER_SERVER": "http://127.0.0.1:9"})):
        p = pysprinter(*args, home=home, **extra)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert "no server form" in p.stderr and p.stdout == "", p.stderr
        assert run_ids(home) == {"old"} and (home / "logs" / "old.log").exists()
    p = pysprinter("gc", "--help", home=home, PYSPRINTER_SERVER="http://127.0.0.1:9")
    assert p.returncode == 0 and "Usage" in p.stdout


def test_an_empty_server_means_this_machines_home(tmp_path):
    """With a server in the environment or the config, `--server ''` (or
    PYSPRINTER_SERVER='') is how to act on this machine's home: it fell
    through to the next level before, so a local gc could not be run."""
    home = new_home(tmp_path)
    cfg = tmp_path / "xdg" / "pysprinter"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text("server = http://127.0.0.1:9\n")
    insert_runs(home, [("old", "alice", "succeeded", time.time() - 40 * DAY, 100)])
    later = int(time.time() + 31 * DAY)
    p = pysprinter("gc", "--dry-run", home=home, XDG_CONFIG_HOME=tmp_path / "xdg")
    assert p.returncode == 2 and "--server ''` collects this machine's home" in p.stderr, p.stderr
    for args, extra in ((["--server", "", "gc", "--dry-run", "--json"], {}),
                        (["gc", "--dry-run", "--json", "--server="], {}),
                        (["gc", "--dry-run", "--json"], {"PYSPRINTER_SERVER": ""})):
        p = pysprinter(*args, home=home, XDG_CONFIG_HOME=tmp_path / "xdg", PYSPRINTER_TEST_NOW=later, **extra)
        assert p.returncode == 0 and json.loads(p.stdout)["runs"] == 1, (args, extra, p.stderr)
    # An empty flag also wins over a set environment; a run goes embedded.
    (tmp_path / "one.py").write_text("def f():\n    return 1\n")
    p = pysprinter("run", "--server", "", "--sandbox=none", tmp_path / "one.py", home=home,
                   XDG_CONFIG_HOME=tmp_path / "xdg", PYSPRINTER_SERVER="http://127.0.0.1:9")
    assert p.returncode == 0 and p.stdout == "1\n", p.stderr
    p = pysprinter("gc", "--json", "--server", "", home=home, XDG_CONFIG_HOME=tmp_path / "xdg",
                   PYSPRINTER_TEST_NOW=later)
    assert p.returncode == 0 and "old" not in run_ids(home), p.stderr


# ---- daemon: metrics, healthz, 507 --------------------------------------------

def test_disk_reserve_507_healthz_and_metrics(tmp_path):
    d = Daemon(tmp_path / "d", config_extra="disk:\n  reserve_bytes: 1000000000000000000\n"
                                             "retention:\n  interval_s: 1\n")
    d.start()
    try:
        st, b = d.run("def f():\n    return 1\n")
        assert st == 507, b
        assert "almost full" in b["error"]["message"] and b["error"]["code"] == "insufficient_storage"
        st, runs = d.call("GET", "/v1/runs")
        assert st == 200 and not [r for r in runs.get("runs", runs) if r["status"] == "running"]
        st, h = d.call("GET", "/healthz", token=None)
        assert st == 200 and h["disk"]["free_bytes"] > 0
        assert any("507" in w for w in h["warnings"]), h
        deadline = time.time() + 30
        while True:
            st, m = d.call("GET", "/metrics", token="admin")
            if "pysprinter_gc_collections_total 1" in m or "pysprinter_gc_collections_total 2" in m:
                break
            assert time.time() < deadline, m
            time.sleep(0.2)
        for area in ("runs", "logs", "data", "packages"):
            assert f'pysprinter_disk_bytes{{area="{area}"}}' in m
        assert 'pysprinter_gc_last_removed{kind="runs"}' in m
        assert 'pysprinter_gc_last_removed{kind="cancel_requests"} 0' in m
        assert "pysprinter_disk_free_bytes" in m
    finally:
        d.stop()


def test_submits_share_one_free_space_check_per_tenth_of_a_second(tmp_path):
    """The 507 check does not statvfs the data directory on every submit: 60
    invokes in a burst cost about one statvfs per 100 ms, not 60 (counted
    with strace on the daemon; /healthz, which always looks, marks the
    moment strace is attached)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    d = Daemon(tmp_path / "d", config_extra="disk:\n  reserve_bytes: 1\n")
    d.start()
    trace = tmp_path / "statfs.trace"
    st, b = d.call("POST", "/v1/functions", {"name": "one", "source": "def f():\n    return 1\n"})
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions/one/invoke?wait=true", {})
    assert st == 200, b
    s = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=statfs", "-o", str(trace), "-p", str(d.proc.pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def statfs_lines():
        return [ln for ln in (trace.read_text().splitlines() if trace.exists() else []) if "statfs(" in ln]
    try:
        deadline = time.time() + 30
        while not statfs_lines():
            assert time.time() < deadline and s.poll() is None, (s.poll(), s.stderr.read() if s.poll() else "")
            d.call("GET", "/healthz", token=None)
            time.sleep(0.05)
        before = len(statfs_lines())
        n = 60
        t0 = time.monotonic()
        for _ in range(n):
            st, b = d.call("POST", "/v1/functions/one/invoke?wait=true", {})
            assert st == 200 and b["status"] == "succeeded", b
        elapsed = time.monotonic() - t0
    finally:
        s.send_signal(signal.SIGINT)
        s.wait(timeout=30)
        d.stop()
    calls = len(statfs_lines()) - before
    assert calls <= elapsed / 0.1 + 2 and calls < n, (calls, n, elapsed)


def test_healthz_no_warning_with_room(tmp_path):
    d = Daemon(tmp_path / "d", config_extra="disk:\n  reserve_bytes: 1\n  warn_bytes: 2\n")
    d.start()
    try:
        st, h = d.call("GET", "/healthz", token=None)
        assert st == 200 and h["warnings"] == []
        st, b = d.run("def f():\n    return 1\n")
        assert st == 200 and b["status"] == "succeeded", b
    finally:
        d.stop()


def test_collector_deletes_100k_runs_without_stalling_invokes(tmp_path):
    """p99 of concurrent invokes while the collector deletes 100,000 runs
    stays within 2x of the idle figure (printed for the report)."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 3600\n")
    d.start()
    st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": "def f(x=1):\n    return x\n"})
    assert st in (200, 201)
    d.stop()
    now = time.time()
    db = sqlite3.connect(d.home / "pysprinter.db")
    db.executemany("INSERT INTO runs (id, tenant, filename, function, status, exit_code, created, started, finished) "
                   "VALUES (?, 'alice', 'f.py', 'f', 'succeeded', 0, ?, ?, ?)",
                   ((f"old{i:06d}", int((now - 60 * DAY) * 1e6) + i, 0, 0) for i in range(100_000)))
    db.commit()
    db.close()
    d.start()

    def measure(n, until=None):
        lat, lock = [], threading.Lock()

        def worker():
            while True:
                with lock:
                    if (until is None and len(lat) >= n) or (until is not None and until()):
                        return
                t = time.perf_counter()
                st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"x": 1}})
                assert st == 200, b
                with lock:
                    lat.append(time.perf_counter() - t)
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        lat.sort()
        return lat[int(len(lat) * 0.99) - 1] if len(lat) >= 2 else lat[-1], len(lat)

    def collected():
        st, m = d.call("GET", "/metrics", token="admin")
        return 'pysprinter_gc_last_removed{kind="runs"} 100000' in m
    try:
        measure(20)  # warm the function's instance
        idle, n_idle = measure(200)
        d.config.write_text(d.config.read_text().replace("interval_s: 3600", "interval_s: 1"))
        d.proc.send_signal(signal.SIGHUP)
        busy, n_busy = measure(0, until=collected)
        st, m = d.call("GET", "/metrics", token="admin")
        dur = [ln for ln in m.splitlines() if ln.startswith("pysprinter_gc_last_duration_seconds ")]
        print(f"\ncollector: idle p99 {idle*1000:.1f} ms ({n_idle} invokes), during deletion of 100000 runs "
              f"p99 {busy*1000:.1f} ms ({n_busy} invokes); {dur}")
        assert n_busy >= 20, "the collection finished before enough invokes were measured"
        # What this guards against is a stall (deleting 100k runs in one
        # transaction holds the database for seconds), not a few ms of
        # noise on a shared 2-core machine: the bound is loose on purpose.
        assert busy <= 4 * idle + 0.05, (idle, busy)
        assert not [i for i in run_ids(d.home) if i.startswith("old")]
    finally:
        d.stop()


# ---- backup and restore ----------------------------------------------------------

def test_concurrent_backups_to_one_file_leave_one_whole_backup(tmp_path):
    """Four `pysprinterd backup FILE` at once shared FILE.partial: now and
    then every one failed ("disk I/O error") and no FILE was left. Each
    writes a copy of its own; the first to finish takes FILE, the others
    are told it exists (a backup never overwrites a file)."""
    home = new_home(tmp_path)
    now = time.time()
    insert_runs(home, [(f"r{i}", "alice", "succeeded", now - i, 100) for i in range(200)])
    dest = tmp_path / "same.db"
    for round_ in range(3):
        procs = [subprocess.Popen([str(DAEMON), "backup", str(dest), "--data-dir", str(home)], env=ops_env(home),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        assert sorted(rc for rc, _ in results) == [0, 2, 2, 2], results
        assert all("exists; a backup never overwrites a file" in e for rc, e in results if rc), results
        assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith("same")) == ["same.db"]
        with sqlite3.connect(dest) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (200,)
        dest.unlink()


def test_restore_is_refused_while_an_embedded_run_uses_the_home(tmp_path):
    """Only daemons held the home's lock: a restore replaced the database
    under an embedded `pysprinter run`, whose record was then lost."""
    home = new_home(tmp_path)
    (tmp_path / "slow.py").write_text("import time\ndef f():\n    print('started', flush=True)\n"
                                      "    time.sleep(3)\n    return 2\n")
    backup = tmp_path / "bk.db"
    assert pysprinterd("backup", backup, "--data-dir", home, home=home).returncode == 0
    run = subprocess.Popen([str(CLI), "run", "--sandbox=none", str(tmp_path / "slow.py")], env=ops_env(home),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline() == "started\n"
    p = pysprinterd("restore", backup, "--data-dir", home, home=home)
    assert p.returncode == 2 and "is in use" in p.stderr, p
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0 and out == "2\n", (out, err)
    ps = json.loads(pysprinter("ps", "--json", home=home).stdout)
    assert [(r["status"], r["result"]) for r in ps] == [("succeeded", 2)]
    # Once the run is done, the restore goes ahead.
    p = pysprinterd("restore", backup, "--data-dir", home, home=home)
    assert p.returncode == 0, p.stderr


def test_nothing_starts_on_a_home_being_restored(tmp_path):
    """A restore holds DATA/pysprinterd.lock exclusively (as this test
    does): the CLI embedded, the daemon, `gc` and `token` each refuse with
    a message saying so (the CLI exited 7, "internal error", before), and
    each works again once it is released."""
    import fcntl
    home = new_home(tmp_path)
    (tmp_path / "one.py").write_text("def f():\n    return 1\n")
    with open(home / "pysprinterd.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = pysprinter("run", "--sandbox=none", tmp_path / "one.py", home=home)
        assert p.returncode == 6 and p.stdout == "", p
        assert f"{home} is being restored (pysprinterd restore): try again when it is done" in p.stderr, p.stderr
        for args in (("gc", "--data-dir", home), ("token", "ls", "--data-dir", home)):
            p = pysprinterd(*args, home=home)
            assert p.returncode == 2 and "is being restored" in p.stderr, (args, p)
        d = Daemon(tmp_path / "d", home=home)
        with pytest.raises(RuntimeError, match="is being restored"):
            d.start()
        assert d.proc.returncode == 2
    assert pysprinter("run", "--sandbox=none", tmp_path / "one.py", home=home).stdout == "1\n"
    assert pysprinterd("gc", "--data-dir", home, home=home).returncode == 0
    assert pysprinterd("token", "ls", "--data-dir", home, home=home).returncode == 0


def test_a_daemon_holds_the_home_lock_once(tmp_path):
    """The daemon's engine holds the home's shared lock for the daemon's
    life; the daemon took a second one of its own before."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        ino = os.stat(d.home / "pysprinterd.lock").st_ino
        with open("/proc/locks") as f:
            held = [l for l in f if l.split()[4] == str(d.proc.pid) and l.split()[5].endswith(f":{ino}")]
        assert len(held) == 1 and " FLOCK " in held[0] and " READ " in held[0], held


def test_backup_under_load_and_restore(tmp_path):
    d = Daemon(tmp_path / "d")
    d.start()
    done, stop = [], threading.Event()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "keep", "source": "def f(x=1):\n    return x\n"})
        assert st in (200, 201)
        src = tmp_path / "ds.csv"
        src.write_text("a,b\n1,2\n")
        st, _ = d.call("PUT", "/v1/data/sample", raw=src.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})
        assert st in (200, 201), st

        def load():
            while not stop.is_set():
                st, b = d.run("def f():\n    return 7\n")
                if st == 200 and b["status"] == "succeeded":
                    done.append(b["id"])
        ts = [threading.Thread(target=load) for _ in range(3)]
        for t in ts:
            t.start()
        deadline = time.time() + 60
        while len(done) < 10:
            assert time.time() < deadline
            time.sleep(0.05)
        finished_before = list(done)
        # Their ends may still be in the journal only: the backup holds
        # them all the same (docs/operations.md "Backup").
        backup = tmp_path / "backup.db"
        p = pysprinterd("backup", backup, "--data-dir", d.home, home=d.home)
        assert p.returncode == 0, p.stderr
        stop.set()
        for t in ts:
            t.join()
        # restore refuses while a daemon holds the data dir
        p = pysprinterd("restore", backup, "--data-dir", d.home, home=d.home)
        assert p.returncode == 2 and "stop it" in p.stderr, p.stderr
    finally:
        stop.set()
        d.stop()

    fresh = tmp_path / "fresh"
    p = pysprinterd("restore", backup, "--data-dir", fresh / "home", home=fresh / "home")
    assert p.returncode == 0, p.stderr
    # datasets' content is backed up as files (docs/operations.md)
    shutil.copytree(d.home / "data", fresh / "home" / "data")
    d2 = Daemon(fresh, home=fresh / "home")
    d2.start()
    try:
        for rid in finished_before:
            st, b = d2.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and b["status"] == "succeeded", (rid, b)
        st, f = d2.call("GET", "/v1/functions/keep")
        assert st == 200, f
        st, ds = d2.call("GET", "/v1/data/sample")
        assert st == 200, ds
        st, body = d2.call("GET", "/v1/data/sample/content")
        assert st == 200 and "1,2" in body
        st, _ = d2.call("GET", "/v1/runs", token="bob")  # tokens come from the config, unchanged
        assert st == 200
    finally:
        d2.stop()


ECHO = "def echo(token: str):\n    return token\n"


def journal_bytes(home):
    return sum(p.stat().st_size for p in home.glob("pysprinter.db-ended.*"))


def answer_invokes(d, n):
    """n synchronous invokes, on both routes in turn: each answered run's
    id (a Lambda answer's X-Amzn-RequestId) and result."""
    answered = []
    for i in range(n):
        tok = f"t{i}"
        if i % 2:
            st, hdrs, data = d.request("POST", "/2015-03-31/functions/echo/invocations", tok, timeout=30)
            assert st == 200 and json.loads(data) == tok, (st, data)
            answered.append((hdrs["x-amzn-requestid"], tok))
        else:
            st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": tok}}, timeout=30)
            assert st == 200 and b["status"] == "succeeded" and b["result"] == tok, b
            answered.append((b["id"], tok))
    return answered


def succeeded_in_file(home, ids):
    """Of ids, those the database file says succeeded: what another
    process (such as the backup) reads there."""
    db = sqlite3.connect(home / "pysprinter.db")
    try:
        marks = ",".join("?" * len(ids))
        return {r[0] for r in db.execute(
            f"SELECT id FROM runs WHERE status='succeeded' AND id IN ({marks})", list(ids))}
    finally:
        db.close()


@pytest.mark.parametrize("daemon", ["stopped", "killed"])
def test_backup_holds_runs_whose_ends_are_only_in_the_journal(tmp_path, daemon):
    """A synchronous run's end is one append to the journal, committed in
    a later batch (docs/operations.md "The ended-runs journal"). With the
    batches held back, runs answered on both routes are in the journal
    only, the daemon SIGSTOPped (it writes nothing meanwhile) or killed -9
    (a crash left the journal): the backup, another process, holds every
    one, and a restore of it into a fresh home gives each one succeeded
    with its result. The backup leaves the daemon's journal as it was."""
    d = Daemon(tmp_path / "d")
    base_env = d.env
    d.env = lambda: {**base_env(), "PYSPRINTER_TEST_JOURNAL_LINGER_MS": "600000"}
    d.start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
        assert st == 201
        answered = answer_invokes(d, 12)
        if daemon == "stopped":
            d.proc.send_signal(signal.SIGSTOP)
        else:
            d.kill9()
        ids = [rid for rid, _ in answered]
        held = journal_bytes(d.home)
        # Their ends are in the journal only, not in the database file. Not
        # every one for certain: an end that finds its run's submit still
        # queued (under load, before the writer's group commit) replaces it
        # in SQLite instead (docs/internals/performance-log.md, round 13 "wait13").
        assert held > 0
        in_file = succeeded_in_file(d.home, ids)
        assert len(in_file) < len(ids)
        backup = tmp_path / "backup.db"
        p = pysprinterd("backup", backup, "--data-dir", d.home, home=d.home)
        assert p.returncode == 0, p.stderr
        # It says how many it took from the journal: every run answered
        # whose end was not in the database file.
        assert f"{len(ids) - len(in_file)} ended run(s) replayed from the ended-runs journal" in p.stdout, p.stdout
        assert journal_bytes(d.home) == held
        assert succeeded_in_file(d.home, ids) == in_file
    finally:
        if daemon == "stopped":
            d.proc.send_signal(signal.SIGCONT)
            assert d.stop() == 0
    fresh = tmp_path / "fresh"
    p = pysprinterd("restore", backup, "--data-dir", fresh / "home", home=fresh / "home")
    assert p.returncode == 0, p.stderr
    d2 = Daemon(fresh, home=fresh / "home")
    d2.start()
    try:
        for rid, tok in answered:
            st, b = d2.call("GET", f"/v1/runs/{rid}")
            assert st == 200, (rid, b)
            assert (b["status"], b["result"]) == ("succeeded", tok), b
    finally:
        d2.stop()


def test_restore_leaves_no_journal_of_the_replaced_database(tmp_path):
    """The restored database replaces the old one with its WAL and its
    journal: the next start must not replay the old runs' ends onto it."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
        assert st == 201
    finally:
        d.stop()
    backup = tmp_path / "backup.db"
    p = pysprinterd("backup", backup, "--data-dir", d.home, home=d.home)
    assert p.returncode == 0, p.stderr
    base_env = d.env
    d.env = lambda: {**base_env(), "PYSPRINTER_TEST_JOURNAL_LINGER_MS": "600000"}
    d.start()
    answered = answer_invokes(d, 4)
    d.kill9()
    assert journal_bytes(d.home) > 0
    p = pysprinterd("restore", backup, "--data-dir", d.home, home=d.home)
    assert p.returncode == 0, p.stderr
    assert journal_bytes(d.home) == 0
    d.env = base_env
    d.start()
    try:
        for rid, _ in answered:
            st, b = d.call("GET", f"/v1/runs/{rid}")
            assert st == 404, (rid, b)
    finally:
        d.stop()


def test_restore_refuses_a_file_that_is_not_a_database(tmp_path):
    home = tmp_path / "h"
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    p = pysprinterd("restore", bad, "--data-dir", home, home=home)
    assert p.returncode == 2 and "not a pysprinter database" in p.stderr, p.stderr


# ---- config checks -----------------------------------------------------------------

BROKEN = [
    ("listen: 127.0.0.1:9\nbogus: 2\n", 2, "unknown key 'bogus'"),
    ("listen: 1\n", 1, "'listen' must be a string"),
    ("server:\n  max_body_bytes: 4096\n  max_wait: 3\n", 3, "unknown key 'server.max_wait'"),
    ("server:\n  max_body_bytes: lots\n", 2, "'server.max_body_bytes' must be a non-negative integer"),
    ("tokens:\n  - tenant: a\n    token: abcdefghij0123456789\n  - tenant: b\n    token: short\n", 5,
     "at least 16 characters"),
    ("retention:\n  max_age_days: 30\n  max_log_bytes: many\n", 3, "'retention.max_log_bytes'"),
    ("retention:\n  tenants:\n    bob:\n      max_age: 3\n", 4, "unknown key 'retention.tenants.bob.max_age'"),
    ("disk:\n  reserve: 1\n", 2, "unknown key 'disk.reserve'"),
    ("limits:\n  defaults:\n    timeout_ms: -1\n", 3, "'limits.defaults.timeout_ms'"),
    ("tokens: [\n", 2, ""),  # YAML syntax: libyaml's own mark
    # A bad index URL used to pass the check and fail every run with a
    # requirement (exit 4); its credentials stay hidden in the message.
    ("index:\n  url: not a url\n", 1, "index.url: index URL 'not a url' must start with http://"),
    ("index:\n  url: https://127.0.0.1/simple\n  extra_urls: ['ftp://u:pw@127.0.0.1/']\n", 1,
     "index.extra_urls: index URL 'ftp://u:****@127.0.0.1/' must start with"),
    # A key given twice is refused, not "last wins" (docs/internals/yaml.md).
    ("limits:\n  defaults: {timeout_ms: 1000}\nlimits:\n  defaults: {timeout_ms: 2000}\n", 3,
     "duplicate key 'limits' (first at line 1)"),
]


@pytest.mark.parametrize("text,line,message", BROKEN)
def test_check_config_table(tmp_path, text, line, message):
    cfg = tmp_path / "pysprinterd.yaml"
    cfg.write_text(text)
    p = pysprinterd("--check-config", cfg, home=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith(f"{cfg}:{line}:"), p.stderr
    assert message in p.stderr


def test_check_config_data_dir(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for dd in (afile, afile / "sub"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"listen: 127.0.0.1:1\ndata_dir: {dd}\n")
        p = pysprinterd("--check-config", cfg, home=tmp_path)
        assert p.returncode == 2 and p.stderr.startswith(f"{cfg}:2: 'data_dir'"), p.stderr
    cfg.write_text(f"data_dir: {tmp_path / 'new' / 'dir'}\nretention:\n  max_age_days: 7\n")
    p = pysprinterd("--check-config", cfg, home=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == f"{cfg}: ok", p.stderr


def test_sighup_reload_uses_the_checker(tmp_path):
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        good = d.config.read_text()
        d.config.write_text(good + "server:\n  bogus: 1\n")
        d.proc.send_signal(signal.SIGHUP)
        line = good.count("\n") + 2
        deadline = time.time() + 20
        while f"{d.config}:{line}: unknown key 'server.bogus'" not in d.log.read_text():
            assert time.time() < deadline, d.log.read_text()
            time.sleep(0.05)
        st, _ = d.call("GET", "/v1/runs")  # the old config (and tokens) still serve
        assert st == 200
    finally:
        d.stop()


# ---- schema migrations ------------------------------------------------------------

def test_fixture_database_upgrades_and_reads_back(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FIXTURE, home / "pysprinter.db")
    d = Daemon(tmp_path, home=home, args=["--no-auth"])
    d.start()
    try:
        st, runs = d.call("GET", "/v1/runs?limit=100", token=None)
        assert st == 200
        runs = runs.get("runs", runs)
        assert len(runs) == 6 and sum(r["status"] == "succeeded" for r in runs) == 5, runs
        st, f = d.call("GET", "/v1/functions/greeter", token=None)
        assert st == 200, f
        st, ds = d.call("GET", "/v1/data", token=None)
        assert st == 200 and "sample" in json.dumps(ds), ds
        st, dags = d.call("GET", "/v1/dags", token=None)
        assert st == 200 and "succeeded" in json.dumps(dags), dags
    finally:
        d.stop()
    db = sqlite3.connect(home / "pysprinter.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 29  # every migration applied (src/store/store-migrate.c)
    db.close()


def test_previous_schema_keeps_its_runs_and_function_runs(tmp_path):
    """A database of schema 15 (the runs trigger that filled fn_name, the
    index on created) opens, keeps its runs, and a new invocation is still
    listed among its function's runs: the submit fills fn_name itself."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FIXTURE_V15, home / "pysprinter.db")
    d = Daemon(tmp_path, home=home)
    d.start()
    try:
        st, runs = d.call("GET", "/v1/runs?limit=100")
        assert st == 200, runs
        assert sorted(r["status"] for r in runs["runs"]) == ["succeeded"] * 3, runs
        st, out = d.call("POST", "/v1/functions/greeter/invoke?wait=true", {"kwargs": {"name": "cy"}})
        assert st == 200 and out["result"] == "hi cy", out
        st, fr = d.call("GET", "/v1/functions/greeter/runs")
        assert st == 200, fr
        assert [r["result"] for r in fr["runs"]] == ["hi cy", "hi bob", "hi ann"], fr
        # Deployed before signatures were kept (migration 20): none, and
        # its usage shows what the record has, its parameters' names.
        st, f = d.call("GET", "/v1/functions/greeter")
        assert st == 200 and (f["signature"], f["doc"], f["parameters"]) == (None, None, ["name"]), f
        p = pysprinter("invoke", "greeter", "--help", home=tmp_path / "cli", PYSPRINTER_SERVER=d.url,
                       PYSPRINTER_TOKEN=TOKENS["alice"])
        assert p.returncode == 0 and p.stdout.startswith(
            "Usage: pysprinter invoke greeter [OPTIONS] [ARGUMENTS]\n\n  greet(name)\n\nArguments:"), p
        st, runs = d.call("GET", "/v1/runs?limit=2")
        assert st == 200 and [r["id"] for r in runs["runs"]][0] == out["id"], runs
    finally:
        d.stop()
    db = sqlite3.connect(home / "pysprinter.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 29
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name='runs'")}
    assert "runs_request_fields" not in names and "runs_created" not in names, names
    assert "runs_tenant_created" in names and "runs_pending" in names and "runs_idem_key" in names, names
    db.close()


def test_newer_schema_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FIXTURE, home / "pysprinter.db")
    db = sqlite3.connect(home / "pysprinter.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    p = pysprinter("ps", home=home)
    assert p.returncode == 7 and "newer than this pysprinter knows" in p.stderr, p.stderr
    p = pysprinterd("--no-auth", "--listen", "127.0.0.1:0", "--data-dir", home, home=home, timeout=30)
    assert p.returncode == 7 and "newer than this pysprinter knows" in p.stderr, p.stderr
    p = pysprinterd("restore", home / "pysprinter.db", "--data-dir", tmp_path / "other", home=home)
    assert p.returncode == 2 and "newer" in p.stderr, p.stderr


def test_daemon_raises_its_open_file_limit_and_runs_keep_their_own(tmp_path):
    """Under systemd a service starts at soft 1024 fds: the daemon raises its
    soft limit to the hard one (connections, runs' pipes and kept cgroup
    files all take fds), while a sandboxed run keeps its own limit
    (limits.nofile, default 1024)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        daemon = Daemon(tmp_path / "d", sandbox="full")
        daemon.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == [str(min(hard, 524288)), str(hard)], line
        st, b = daemon.run("""
            import resource
            def main():
                return list(resource.getrlimit(resource.RLIMIT_NOFILE))
            """)
        assert st == 200 and b["status"] == "succeeded" and b["result"] == [1024, 1024], b
    finally:
        daemon.stop()
