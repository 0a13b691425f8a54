"""Operating pysprinter for months, explored as an operator would (round
"ops"): the files the daemon and the embedded CLI write, and embedded
commands against a data directory a daemon serves (docs/operations.md)."""
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import time

import pytest

from conftest import CLI, DAEMON
from daemonlib import Daemon, metrics, sandbox_mode, wait_for
from proctree import child_pids, descendants
from test_ops import ops_env


cli_env = ops_env


def pysprinter(*args, home, timeout=120, **extra):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, env=cli_env(home, **extra),
                          timeout=timeout)


def ended_run(d, source):
    """A run of source on daemon d, waited for, whose end the database
    holds (a synchronous run's end reaches it ~50 ms after the answer, from
    the ended-runs journal): its id."""
    st, out = d.run(source)
    assert st == 200 and out["status"] == "succeeded", out
    wait_for(lambda: '"succeeded"' in pysprinter("--json", "show", out["id"], home=d.home).stdout, "the run's end")
    return out["id"]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- permissions of what the daemon writes -------------------------------------

def test_the_run_database_is_never_world_readable(tmp_path):
    """The database holds every tenant's arguments, results and function
    sources. Its logs, journal and secrets key were 0600, but SQLite made
    pysprinter.db, -wal and -shm 0644: in a data directory an operator made
    0755 (mkdir /srv/pysprinter) any local user read every tenant's results
    with sqlite3. A new database is 0600 now, and one an older binary left
    0644 loses its world bits at the next open."""
    d = Daemon(tmp_path / "d")
    d.home.chmod(0o755)
    d.start()
    try:
        st, out = d.run("def f():\n    return 'private result'\n")
        assert st == 200 and out["result"] == "private result", out
        for name in ("pysprinter.db", "pysprinter.db-wal", "pysprinter.db-shm"):
            assert mode(d.home / name) == 0o600, name
    finally:
        assert d.stop() == 0
    # As an older binary left them: 0644, then a restart on them.
    for name in ("pysprinter.db", "pysprinter.db-wal", "pysprinter.db-shm"):
        if (d.home / name).exists():
            (d.home / name).chmod(0o644)
    d.start()
    try:
        st, out = d.run("def f():\n    return 2\n")
        assert st == 200, out
        for name in ("pysprinter.db", "pysprinter.db-wal", "pysprinter.db-shm"):
            assert mode(d.home / name) & 0o007 == 0, (name, oct(mode(d.home / name)))
    finally:
        assert d.stop() == 0
    # The embedded CLI's own home, made 0755 by its user beforehand.
    home = tmp_path / "cli-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    p = pysprinter("dag", "resume", "dnone", home=home)
    assert p.returncode == 2 and (home / "pysprinter.db").exists(), p.stderr
    assert mode(home / "pysprinter.db") == 0o600


READ_DATA = """
import os
def f(name):
    return open(f"/data/{name}/c.txt").read()
"""


def test_the_datasets_cannot_be_listed_by_other_local_users(tmp_path):
    """$DATA/data and data/objects were 0755: in a data directory made 0755
    any local user listed every tenant's dataset objects and read them.
    They are 0711 now (a run's sandbox, whose uid may be another, reaches an
    object by its path, never by listing); a directory an older binary left
    0755 loses its read bits at the next start. A run still reads its
    dataset, in the full sandbox too."""
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    d.home.chmod(0o755)
    d.start()
    try:
        st, _ = d.call("PUT", "/v1/data/corpus?filename=c.txt", raw=b"tenant data\n",
                       headers={"Content-Type": "text/plain"})
        assert st in (200, 201)
        for sub in ("data", "data/objects"):
            assert mode(d.home / sub) == 0o711, (sub, oct(mode(d.home / sub)))
        st, b = d.run(READ_DATA, kwargs={"name": "corpus"}, data=["corpus"])
        assert st == 200 and b["status"] == "succeeded" and b["result"] == "tenant data\n", b
    finally:
        assert d.stop() == 0
    for sub in ("data", "data/objects"):
        (d.home / sub).chmod(0o755)
    d.start()
    try:
        for sub in ("data", "data/objects"):
            assert mode(d.home / sub) == 0o711, (sub, oct(mode(d.home / sub)))
        st, b = d.run(READ_DATA, kwargs={"name": "corpus"}, data=["corpus"])
        assert st == 200 and b["status"] == "succeeded", b
    finally:
        d.stop()


# ---- embedded commands against a data directory a daemon serves ---------------

DAY = 86400
SLEEPER = "def f():\n    import time\n    time.sleep(60)\n    return 1\n"


def test_an_embedded_cancel_of_a_daemons_run_says_whose_it_is(tmp_path):
    """`pysprinter cancel ID` embedded, on the home a pysprinterd serves
    (the default home is the daemon's default data directory): the daemon
    watches no cancel asks (only a CLI process that runs a run does), so the
    CLI waited 10 s, printed `run ID: running`, exited 0 and left an ask
    behind, the run untouched. It now says the run is the daemon's and how
    to cancel it (exit 2), and leaves nothing behind."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, out = d.run(SLEEPER, wait=False)
        assert st == 202, out
        rid = out["id"]
        d.wait_status(rid, ["running"])
        p = pysprinter("cancel", rid, home=d.home)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert p.stdout == "" and f"run {rid} is run by pysprinterd (pid {d.proc.pid})" in p.stderr, p.stderr
        assert "--server" in p.stderr, p.stderr
        assert not (d.home / "cancel" / rid).exists()
        assert d.call("GET", f"/v1/runs/{rid}")[1]["status"] == "running"
        d.cancel(rid)
        # A daemon killed -9: nobody runs it until a daemon starts there.
        st, out = d.run(SLEEPER, wait=False)
        rid = out["id"]
        d.wait_status(rid, ["running"])
        d.kill9()
        p = pysprinter("cancel", rid, home=d.home)
        assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
        assert f"run {rid} is a pysprinterd's, and no daemon serves {d.home} now" in p.stderr, p.stderr
        assert not (d.home / "cancel" / rid).exists()
        d.start()
        d.cancel(rid)
    finally:
        d.stop()


def test_an_embedded_look_at_a_dead_daemons_run_says_why_it_stays_running(tmp_path):
    """`pysprinter logs -f ID` embedded follows a daemon's run through its
    log file while the daemon lives. A daemon killed -9 leaves the run
    `running` until a daemon starts there again, and the follow waited for
    ever; it now prints what the log holds and ends as a follow of a server
    that went away ends (exit 6), saying whose the run is. `ps` and `show`
    showed such runs `running` with no word; they now say on stderr that
    no daemon serves the home (stdout is the record, unchanged)."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, out = d.run("def f():\n    import time\n    print('started', flush=True)\n    time.sleep(60)\n",
                        wait=False)
        rid = out["id"]
        wait_for(lambda: (d.home / "logs" / f"{rid}.log").exists() and
                 b"started" in (d.home / "logs" / f"{rid}.log").read_bytes(), "the run's first line")
        # ps and show print the record as it stands, and say why it stays so.
        p = pysprinter("show", rid, home=d.home)
        assert p.returncode == 0 and "is a pysprinterd's" not in p.stderr, p.stderr
        d.kill9()
        for args in (["show", rid], ["ps"], ["--json", "ps"]):
            p = pysprinter(*args, home=d.home)
            assert p.returncode == 0 and rid in p.stdout and "running" in p.stdout, (args, p.stdout, p.stderr)
            assert (f"warning: run {rid} is a pysprinterd's, and no daemon serves {d.home} now: it stays running "
                    "until one starts there and runs it again") in p.stderr, (args, p.stderr)
        p = pysprinter("logs", "-f", rid, home=d.home, timeout=60)
        assert p.returncode == 6, (p.stdout, p.stderr)
        assert p.stdout == "started\n"
        assert f"run {rid} is a pysprinterd's, and no daemon serves {d.home} now" in p.stderr, p.stderr
        # Started again, the daemon runs it anew; cancelled, it ends.
        d.start()
        d.cancel(rid)
    finally:
        d.stop()


SLOW_PIPELINE = "name: slow\ntasks:\n  a: {file: steps.py, function: slow}\n"
SLOW_STEPS = "def slow():\n    import time\n    time.sleep(60)\n    return 1\n"


def test_an_embedded_dag_cancel_or_resume_of_a_daemons_dag_run_is_refused(tmp_path):
    """`pysprinter dag cancel ID` embedded, of a DAG run a pysprinterd
    drives on the same home, sent SIGTERM to the pid its record names:
    the daemon's own. The whole daemon drained and stopped serving every
    tenant. `dag resume ID` of a daemon's DAG run left interrupted ran the
    tenant's pipeline in the CLI, as the local user. Both are refused now
    (exit 2), naming the daemon and --server; the daemon serves on."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, b = d.call("POST", "/v1/dags", {"pipeline": SLOW_PIPELINE, "files": {"steps.py": SLOW_STEPS}})
        assert st == 202, b
        did = b["id"]
        wait_for(lambda: any(t.get("run_id") for t in d.call("GET", f"/v1/dags/{did}")[1]["tasks"]), "task a")
        for verb in ("cancel", "resume"):
            p = pysprinter("dag", verb, did, home=d.home)
            assert p.returncode == 2 and p.stdout == "", (verb, p.stdout, p.stderr)
            assert f"DAG run {did} is a pysprinterd's" in p.stderr and "--server" in p.stderr, p.stderr
        assert d.proc.poll() is None and d.call("GET", "/healthz", token=None)[0] == 200
        assert d.call("GET", f"/v1/dags/{did}")[1]["status"] == "running"
        # Killed, the daemon resumes it at its next start: not the CLI's.
        d.kill9()
        p = pysprinter("dag", "resume", did, home=d.home)
        assert p.returncode == 2 and f"DAG run {did} is a pysprinterd's" in p.stderr, (p.stdout, p.stderr)
        d.start()
        st, _ = d.call("DELETE", f"/v1/dags/{did}")
        assert st in (200, 202), st
    finally:
        d.stop()


# A parent that never reaps its orphans (a container's PID 1 without an
# init, docker run without --init): it adopts them (a subreaper), runs the
# command, prints its stdout and sleeps.
NO_REAPER = """
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
print(p.stdout.strip(), flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def detached_under_no_reaper(home, src):
    """`pysprinter run --detach src` whose owner (the detached child) is
    adopted by a parent that never reaps it. Yields (run id, owner pid)."""
    holder = subprocess.Popen(["/usr/bin/python3", "-c", NO_REAPER, str(CLI), "run", "--sandbox=none", "--detach",
                               str(src)], env=cli_env(home), stdout=subprocess.PIPE, text=True)
    try:
        rid = holder.stdout.readline().strip()
        owners = child_pids(holder.pid)
        assert rid and len(owners) == 1, (rid, owners)
        yield rid, owners[0]
    finally:
        for pid in descendants(holder.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        holder.kill()
        holder.wait()


def test_a_run_whose_cli_was_killed_is_lost_though_its_zombie_lingers(tmp_path):
    """A CLI killed -9 leaves its run to the next look, which marks it lost
    once the owner is gone. The look asked only whether the pid still had
    its start time, and a zombie has: under a parent that does not reap (a
    container started without an init), a detached run's owner stayed a
    zombie, and its run `running` for ever (on this VM, PID 1 reaps an
    orphan about 1.5 s after its death: as long). A zombie runs nothing:
    its run is lost at the first look now."""
    home = tmp_path / "home"
    src = tmp_path / "dead.py"
    src.write_text("def f():\n    import time\n    time.sleep(60)\n")
    with detached_under_no_reaper(home, src) as (rid, owner):
        for pid in [owner, *descendants(owner)]:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: open(f"/proc/{owner}/stat").read().split(") ")[1].startswith("Z"), "the zombie")
        run = json.loads(pysprinter("--json", "show", rid, home=home).stdout)
        assert run["status"] == "lost", run
        assert f"the process running it is gone (pid {owner})" in run["error"]["message"], run


def test_a_daemon_starting_leaves_a_live_embedded_run_alone(tmp_path):
    """A daemon starting on a home where an embedded `pysprinter run` was
    running marked that live run `lost` ("the daemon stopped while this run
    was in flight (attempt 0 of 1)") and logged that it had lost a run of
    its own: readers (`show`, `logs -f`, `cancel`) saw it ended until the
    CLI's end overwrote it. A run an embedded process owns is not the
    daemon's to recover: it stays running and ends as the CLI ends it; one
    whose CLI is dead is marked lost with the CLI's words, as the next CLI
    would."""
    d = Daemon(tmp_path / "d")
    src = tmp_path / "slow.py"
    src.write_text("def f():\n    import time\n    time.sleep(4)\n    return 'cli result'\n")
    dead_src = tmp_path / "dead.py"
    dead_src.write_text("def f():\n    import time\n    time.sleep(60)\n")
    cli = None
    with detached_under_no_reaper(d.home, dead_src) as (dead_id, owner):
        try:
            for pid in [owner, *descendants(owner)]:
                os.kill(pid, signal.SIGKILL)
            cli = subprocess.Popen([str(CLI), "run", "--sandbox=none", "--json", str(src)], env=cli_env(d.home),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            def live():
                p = pysprinter("--json", "ps", home=d.home)
                return [r["id"] for r in json.loads(p.stdout or "[]")
                        if r["status"] == "running" and r["id"] != dead_id]
            rid = wait_for(live, "the embedded run")[0]
            d.start()
            p = pysprinter("--json", "show", rid, home=d.home)
            assert json.loads(p.stdout)["status"] == "running", p.stdout
            gone = json.loads(pysprinter("--json", "show", dead_id, home=d.home).stdout)
            assert gone["status"] == "lost" and "the process running it is gone" in gone["error"]["message"], gone
            out, err = cli.communicate(timeout=120)
            assert cli.returncode == 0 and json.loads(out) == "cli result", (out, err)
            assert "marked lost" not in d.log.read_text(), d.log.read_text()
        finally:
            if cli and cli.poll() is None:
                cli.kill()
                cli.wait()
            d.stop()


def test_an_embedded_gc_of_a_home_a_daemon_serves_is_refused(tmp_path):
    """`pysprinter gc` on the home a pysprinterd serves collected it with
    the CLI's defaults (30 days, 1G), not the retention the operator wrote
    in the daemon's config: a tenant kept forever (`max_age_days: 0`) lost
    its runs past 30 days, and a daemon collecting every 7 days kept them
    until its own pass. It is refused now while a daemon serves the home
    (exit 2, nothing removed), naming `pysprinterd gc`, which reads the
    config; once the daemon is stopped the CLI collects as before.
    `pysprinterd gc` given no --config applied the defaults the same way;
    beside a live daemon it now takes that daemon's config."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  tenants:\n    alice:\n      max_age_days: 0\n")
    d.start()
    try:
        rid = ended_run(d, "def f():\n    return 1\n")
        later = int(time.time() + 40 * DAY)
        for args in (["gc"], ["gc", "--dry-run"], ["--json", "gc"]):
            p = pysprinter(*args, home=d.home, PYSPRINTER_TEST_NOW=later)
            assert p.returncode == 2 and p.stdout == "", (args, p.stdout, p.stderr)
            assert f"{d.home} is served by pysprinterd (pid {d.proc.pid})" in p.stderr, p.stderr
            assert "pysprinterd gc" in p.stderr, p.stderr
        assert d.call("GET", f"/v1/runs/{rid}")[0] == 200
        # The daemon's own collection, with its config, keeps alice's run:
        # given, or (none given) the config of the daemon serving the home,
        # where the defaults removed the run before.
        for cfg in (["--config", str(d.config)], []):
            p = subprocess.run([str(DAEMON), "gc", "--json", *cfg, "--data-dir", str(d.home)],
                               capture_output=True, text=True, env=cli_env(d.home, PYSPRINTER_TEST_NOW=later))
            assert p.returncode == 0 and json.loads(p.stdout)["runs"] == 0, (p.stdout, p.stderr)
            assert d.call("GET", f"/v1/runs/{rid}")[0] == 200
        assert f"collecting with its config {d.config}" in p.stderr, p.stderr
    finally:
        d.stop()
    p = pysprinter("--json", "gc", home=d.home, PYSPRINTER_TEST_NOW=later)
    assert p.returncode == 0 and json.loads(p.stdout)["runs"] == 1, (p.stdout, p.stderr)


# ---- garbage a kill leaves -----------------------------------------------------

PIPELINE = "name: one\ntasks:\n  a: {file: steps.py, function: f}\n"


def test_a_dag_folder_a_kill_left_without_a_record_is_collected_after_an_hour(tmp_path):
    """POST /v1/dags makes $DATA/dags/<id>/, writes the pipeline's files and
    only then records the DAG run; a daemon killed in between left a folder
    no record names, which no collection removed (the DAG pass goes by
    records). One that no write touched for an hour (the staging rule of
    data/tmp) is removed now and counted among the DAG folders; a young one
    (a submit in progress) and a recorded DAG run's stay."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, b = d.call("POST", "/v1/dags?wait=true",
                       {"pipeline": PIPELINE, "files": {"steps.py": "def f():\n    return 1\n"}})
        assert st == 200 and b["status"] == "succeeded", b
        kept = d.home / "dags" / b["id"]
        assert kept.is_dir()
    finally:
        assert d.stop() == 0
    dags = d.home / "dags"
    left = dags / "dorphan0000000001"
    left.mkdir()
    (left / "pipeline.yaml").write_text(PIPELINE)
    (left / "steps.py").write_text("x" * 1000)
    young = dags / "dorphan0000000002"
    young.mkdir()
    (young / "steps.py").write_text("y")
    hour_ago = time.time() - 2 * 3600
    for p in (left / "pipeline.yaml", left / "steps.py", left):
        os.utime(p, (hour_ago, hour_ago))
    for dry in (True, False):
        p = subprocess.run([str(DAEMON), "gc", "--json", "--data-dir", str(d.home), *(["--dry-run"] if dry else [])],
                           capture_output=True, text=True, env=cli_env(d.home))
        assert p.returncode == 0, p.stderr
        st = json.loads(p.stdout)
        assert st["dag_runs"] == 0 and st["dag_dirs"] == 1 and st["dag_dir_bytes"] >= 1000, st
        assert left.exists() == dry
    assert young.is_dir() and kept.is_dir()
    d.start()
    try:
        st, b = d.call("GET", f"/v1/dags/{kept.name}")
        assert st == 200 and b["status"] == "succeeded", b
    finally:
        d.stop()


# ---- SIGHUP ----------------------------------------------------------------------

def test_a_reload_says_that_sandbox_and_data_dir_need_a_restart(tmp_path):
    """A SIGHUP that changed `sandbox:` or `data_dir:` in the file kept the
    values the daemon started with and said nothing, as it says for
    `listen`: an operator who hardened `sandbox: none` to `full` and
    reloaded went on running unsandboxed runs believing them isolated. The
    reload now logs that each needs a restart, and keeps serving with the
    started values (a run still says it is unsandboxed)."""
    d = Daemon(tmp_path / "d", sandbox=None)
    base = d.config.read_text()
    d.config.write_text(base + f"server:\n  sandbox: none\ndata_dir: {d.home}\n")
    d.start()
    try:
        d.config.write_text(base + f"server:\n  sandbox: full\ndata_dir: {tmp_path / 'elsewhere'}\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log.read_text(), "the reload")
        log = d.log.read_text()
        assert "reload: 'server.sandbox' changes need a restart (still none)" in log, log
        assert "reload: 'data_dir' changes need a restart" in log, log
        st, out = d.run("def f():\n    return 1\n")
        assert st == 200 and out["status"] == "succeeded", out
        assert not (tmp_path / "elsewhere").exists()
    finally:
        d.stop()
    # Given on the command line, the file's values are not in use: no word.
    d = Daemon(tmp_path / "d2", sandbox="none", args=["--data-dir", str(tmp_path / "d2" / "home")])
    d.start()
    try:
        d.config.write_text(d.config.read_text() + f"server:\n  sandbox: full\ndata_dir: {tmp_path / 'elsewhere'}\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log.read_text(), "the reload")
        assert "need a restart" not in d.log.read_text(), d.log.read_text()
    finally:
        d.stop()


# ---- a data directory on a read-only disk ------------------------------------------

@contextlib.contextmanager
def read_only_copy(src, where):
    """src's files on a tmpfs at where, remounted read-only (what ext4's
    errors=remount-ro leaves, or a backup disk mounted ro)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        subprocess.run(["cp", "-a", f"{src}/.", str(where)], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def run_ids_of(db):
    c = sqlite3.connect(db)
    try:
        return {r[0] for r in c.execute("SELECT id FROM runs")}
    finally:
        c.close()


@pytest.mark.parametrize("stop", ["clean", "kill9"])
def test_a_backup_of_a_data_dir_on_a_read_only_disk(tmp_path, stop):
    """A disk the kernel remounted read-only after errors is when an operator
    most wants a backup; `pysprinterd backup` failed there with `backup
    failed: backup failed: unable to open database file`: SQLite cannot
    create the -shm file a WAL database's reader needs. It now copies the
    database: read-only, with the -wal and -shm a crash left beside it, or,
    when a clean stop left neither, as the immutable file it then is."""
    d = Daemon(tmp_path / "d")
    d.start()
    ids = set()
    try:
        for i in range(3):
            ids.add(ended_run(d, f"def f():\n    return {i}\n"))
    finally:
        if stop == "kill9":
            d.kill9()
        else:
            assert d.stop() == 0
    assert (d.home / "pysprinter.db-wal").exists() == (stop == "kill9")
    with read_only_copy(d.home, tmp_path / "ro") as ro:
        dest = tmp_path / "backup.db"
        p = subprocess.run([str(DAEMON), "backup", str(dest), "--data-dir", str(ro)], capture_output=True, text=True,
                           env=cli_env(ro))
        assert p.returncode == 0, p.stderr
        assert ids <= run_ids_of(dest)
        assert mode(dest) == 0o600


# ---- clock steps -------------------------------------------------------------------

# CLOCK_REALTIME as the daemon reads it, OFFSET seconds ahead of the
# kernel's: every deadline the daemon computes on the wall clock lands
# OFFSET seconds late, as each one pending when the clock is stepped back
# by OFFSET (NTP, a VM resumed, `date -s`) does. The machine's clock is
# shared: it is never touched.
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
int clock_gettime(clockid_t id, struct timespec *ts) {
        static int (*real)(clockid_t, struct timespec *);
        static long offset = -1;
        if (!real)
                real = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT, "clock_gettime");
        if (offset < 0) {
                const char *e = getenv("SHIM_REALTIME_AHEAD_S");
                offset = e ? atol(e) : 0;
        }
        int r = real(id, ts);
        if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
                ts->tv_sec += offset;
        return r;
}
"""


class ClockAheadDaemon(Daemon):
    def __init__(self, root, shim, ahead_s, **kw):
        super().__init__(root, **kw)
        self.shim, self.ahead_s = shim, ahead_s

    def env(self):
        e = super().env()
        e["LD_PRELOAD"] = str(self.shim)
        e["SHIM_REALTIME_AHEAD_S"] = str(self.ahead_s)
        return e


def test_timed_waits_do_not_stall_when_the_wall_clock_steps_back(tmp_path):
    """The daemon's threads waited with pthread_cond_timedwait, whose
    deadline is on the wall clock: a clock stepped back by an hour held the
    collector (and the janitor, the DAG ticks, a DAG drain, the install
    progress, every cond_wait_usec) an hour longer. With a one-hour step
    simulated, a collector set to run every second ran no collection at
    all; timed waits are on CLOCK_MONOTONIC now."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the clock shim")
    src = tmp_path / "clockshim.c"
    src.write_text(CLOCK_SHIM)
    shim = tmp_path / "clockshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    d = ClockAheadDaemon(tmp_path / "d", shim, 3600, config_extra="retention:\n  interval_s: 1\n")
    d.start()
    try:
        st, out = d.run("def f():\n    return 1\n")
        assert st == 200 and out["status"] == "succeeded", out
        wait_for(lambda: metrics(d).get("pysprinter_gc_collections_total", 0) >= 2, "two collections", timeout=60)
    finally:
        d.stop()


@pytest.mark.parametrize("stop", ["clean", "kill9"])
def test_a_home_on_a_read_only_disk_is_read_and_refuses_runs(tmp_path, stop):
    """On a home whose disk went read-only every command failed with
    `cannot lock HOME: Read-only file system`, `ps`, `show` and `logs` too:
    what an operator reaches for first to see what ran. Those read it now
    (the database as it stands: through a crash's -wal and -shm, or as an
    immutable file after a clean stop); a run, `secret set`, `gc` are
    refused at once with a message that says why, exit 7, where a run
    could otherwise have gone unrecorded."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        rid = ended_run(d, "def f():\n    print('from the run')\n    return 41\n")
    finally:
        if stop == "kill9":
            d.kill9()
        else:
            assert d.stop() == 0
    with read_only_copy(d.home, tmp_path / "ro") as ro:
        p = pysprinter("ps", home=ro)
        assert p.returncode == 0 and rid in p.stdout and "succeeded" in p.stdout, (p.stdout, p.stderr)
        p = pysprinter("--json", "show", rid, home=ro)
        assert p.returncode == 0 and json.loads(p.stdout)["result"] == 41, (p.stdout, p.stderr)
        p = pysprinter("logs", rid, home=ro)
        assert p.returncode == 0 and p.stdout == "from the run\n", (p.stdout, p.stderr)
        src = tmp_path / "f.py"
        src.write_text("def f():\n    return 1\n")
        for args, stdin in ((["run", "--sandbox=none", src], None), (["secret", "set", "S"], "x"), (["gc"], None)):
            p = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, input=stdin,
                               env=cli_env(ro), timeout=120)
            assert p.returncode == 7 and p.stdout == "", (args, p.stdout, p.stderr)
            assert f"{ro} is on a read-only file system: nothing can be run or recorded there" in p.stderr, p.stderr
        p = subprocess.run([str(DAEMON), "gc", "--data-dir", str(ro)], capture_output=True, text=True,
                           env=cli_env(ro))
        assert p.returncode == 7 and "is on a read-only file system" in p.stderr, p.stderr


# ---- /metrics and /healthz ------------------------------------------------------------

def test_a_collection_that_fails_shows_in_metrics_and_healthz(tmp_path):
    """A collection that failed (a pass that could not read its area) was
    logged, and counted in pysprinter_gc_collections_total like one that
    worked: an operator alerting on /metrics or /healthz never learnt that
    the disk was no longer being collected. pysprinter_gc_failures_total
    counts them now, and /healthz warns while the last one failed (it stays
    HTTP 200, as its disk warnings do)."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 1\n")
    (d.home / "dags").write_text("not a directory\n")  # the DAG-folder pass cannot list it
    d.start()
    try:
        wait_for(lambda: metrics(d).get("pysprinter_gc_failures_total", 0) >= 1, "a failed collection", timeout=60)
        st, h = d.call("GET", "/healthz", token=None)
        assert st == 200 and any("the last collection failed" in w for w in h["warnings"]), h
        (d.home / "dags").unlink()
        wait_for(lambda: not d.call("GET", "/healthz", token=None)[1]["warnings"], "a collection that worked",
                 timeout=60)
    finally:
        d.stop()


def test_a_relative_data_dir_is_beside_the_config_file(tmp_path):
    # Under systemd the daemon's working directory is /: `data_dir: state`
    # named /state, and a daemon started from a shell put its data where
    # the shell happened to be. It is the config file's neighbour now.
    from daemonlib import config_text, free_port
    conf_dir, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    conf_dir.mkdir()
    elsewhere.mkdir()
    (conf_dir / "d.yaml").write_text(config_text("data_dir: state\n"))
    # The config's data_dir wins over the home the environment names.
    env = cli_env(tmp_path / "unused-home")
    check = subprocess.run([str(DAEMON), "--check-config", "../etc/d.yaml"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    port = free_port()
    d = subprocess.Popen([str(DAEMON), "--listen", f"127.0.0.1:{port}", "--config", "../etc/d.yaml",
                          "--sandbox=none"], cwd=elsewhere, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (conf_dir / "state" / "pysprinter.db").exists() or d.poll() is not None,
                 "the daemon's database")
        assert d.poll() is None, d.stderr.read()
        assert not (elsewhere / "state").exists()
    finally:
        d.terminate()
        d.wait(timeout=60)
