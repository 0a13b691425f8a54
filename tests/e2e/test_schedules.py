"""Schedules (docs/schedules.md) against a real pysprinterd and the real CLI.
Time is the test's: the daemon reads "now" from $PYSPRINTER_TEST_CLOCK_FILE,
so a test moves the clock by writing a number and waits on what the API
shows (a run, the next fire time) with a deadline, never for minutes."""
import calendar
import json
import time

import pytest

from conftest import CLI, DAEMON, Runner
from daemonlib import Daemon, point_cli, sandbox_mode

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

TICK = """
def tick(tag: str = "none", n: int = 0):
    return {"tag": tag, "n": n}
"""

SLOW = """
import time
def slow(seconds: float = 60):
    time.sleep(seconds)
    return "done"
"""

TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}


def utc(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M:%S"))


class ClockDaemon(Daemon):
    """A daemon whose scheduler reads the time from a file the test writes."""

    def __init__(self, root, **kw):
        super().__init__(root, **kw)
        self.clock = self.root / "clock"
        self.set_time("2026-03-01 10:00:00")

    def set_time(self, s):
        self.now = utc(s) if isinstance(s, str) else s
        tmp = self.root / "clock.tmp"
        tmp.write_text(str(self.now))
        tmp.rename(self.clock)

    def env(self):
        e = super().env()
        e["PYSPRINTER_TEST_CLOCK_FILE"] = str(self.clock)
        return e

    def schedule(self, name):
        st, b = self.call("GET", f"/v1/schedules/{name}")
        assert st == 200, (st, b)
        return b

    def wait_schedule(self, name, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            b = self.schedule(name)
            if pred(b):
                return b
            time.sleep(0.05)
        raise AssertionError(f"schedule {name} never got there: {b}")


def iso(s):
    return s.replace(" ", "T") + ".000Z"


@pytest.fixture
def d(tmp_path):
    daemon = ClockDaemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    with daemon.serving(clean_exit=False) as running:
        yield running


@pytest.fixture
def rcli(cli, d, tmp_path):
    return point_cli(cli, d, tmp_path)


def deploy(d, name, source, **fields):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": source, **fields})
    assert st == 201, (st, b)


def test_cron_schedule_fires_an_ordinary_run_at_its_time(d, rcli):
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "every5", "--cron", "*/5 * * * *", "tick", "hello", "--n", "3", check=0)
    assert "created schedule every5" in p.stdout
    s = d.schedule("every5")
    assert s["next_fire_at"] == iso("2026-03-01 10:05:00")
    assert s["last_run"] is None and s["runs"] == []
    assert s["schedule"] == "*/5 * * * *" and s["tz"] == "UTC" and s["catch_up"] == "one"

    d.set_time("2026-03-01 10:05:00")
    s = d.wait_schedule("every5", lambda s: s["last_run"] is not None)
    rid = s["last_run"]["id"]
    assert s["runs"] == [rid]
    assert s["last_fire_at"] == iso("2026-03-01 10:05:00")
    assert s["next_fire_at"] == iso("2026-03-01 10:10:00")
    run = d.wait_status(rid, TERMINAL)
    assert run["status"] == "succeeded", run
    assert run["result"] == {"tag": "hello", "n": 3}
    # An ordinary run: `ps` lists it, `schedule ls` shows it with its status.
    assert rid in rcli("ps", check=0).stdout
    out = rcli("schedule", "ls", check=0).stdout
    assert "every5" in out and f"{rid} succeeded" in out
    listed = json.loads(rcli("schedule", "ls", "--json", check=0).stdout)
    assert [x["name"] for x in listed] == ["every5"]
    # -q: the names alone (a shell's `for s in $(pysprinter schedule ls -q)`),
    # as `functions ls -q` lists the functions'.
    assert rcli("schedule", "ls", "-q", check=0).stdout == "every5\n"
    assert rcli("functions", "ls", "-q", check=0).stdout == "tick\n"


def test_interval_and_fixed_offset(d, rcli):
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "iv", "--every", "10m", "tick", check=0)
    assert d.schedule("iv")["next_fire_at"] == iso("2026-03-01 10:10:00")
    rcli("schedule", "add", "nine", "--cron", "0 9 * * *", "--tz", "+02:00", "tick", check=0)
    # 09:00 at +02:00 is 07:00 UTC; 10:00 UTC is past it today.
    assert d.schedule("nine")["next_fire_at"] == iso("2026-03-02 07:00:00")
    rcli("schedule", "add", "hourly", "--cron", "@hourly", "tick", check=0)
    assert d.schedule("hourly")["next_fire_at"] == iso("2026-03-01 11:00:00")


def test_named_zone_fires_once_across_daylight_saving(d, rcli):
    """Europe/Paris: 02:30 does not exist on 2026-03-29 (02:00 -> 03:00) and
    exists twice on 2026-10-25 (03:00 -> 02:00); each fires once."""
    deploy(d, "tick", TICK)
    d.set_time("2026-03-28 12:00:00")
    rcli("schedule", "add", "paris", "--cron", "30 2 * * *", "--tz", "Europe/Paris", "tick", check=0)
    s = d.schedule("paris")
    assert s["tz"] == "Europe/Paris"
    # The skipped 02:30 fires at the end of the gap: 03:00 CEST = 01:00 UTC.
    assert s["next_fire_at"] == iso("2026-03-29 01:00:00")
    assert s["next_fire_local"] == "2026-03-29T03:00:00+02:00"
    out = rcli("schedule", "ls", check=0).stdout
    assert "2026-03-29 03:00 +02:00" in out
    # The zone widens its column; the columns after it stay in line.
    lines = out.splitlines()
    row = next(l for l in lines if l.startswith("paris "))
    assert row.index("2026-03-29 03:00 +02:00") == lines[0].index("NEXT"), out
    d.set_time("2026-03-29 01:00:00")
    s = d.wait_schedule("paris", lambda s: s["last_run"] is not None)
    assert d.wait_status(s["last_run"]["id"], TERMINAL)["status"] == "succeeded"
    assert s["last_fire_at"] == iso("2026-03-29 01:00:00")
    assert s["next_fire_local"] == "2026-03-30T02:30:00+02:00"
    rcli("schedule", "rm", "paris", check=0)

    d.set_time("2026-10-24 12:00:00")
    rcli("schedule", "add", "fall", "--cron", "30 2 * * *", "--tz", "Europe/Paris", "tick", check=0)
    assert d.schedule("fall")["next_fire_local"] == "2026-10-25T02:30:00+02:00"
    d.set_time("2026-10-25 00:30:00")  # the first 02:30 (CEST)
    s = d.wait_schedule("fall", lambda s: s["last_run"] is not None)
    assert d.wait_status(s["last_run"]["id"], TERMINAL)["status"] == "succeeded"
    # Not again at the second 02:30 (CET, 01:30 UTC): tomorrow's is next.
    assert s["next_fire_at"] == iso("2026-10-26 01:30:00")
    assert s["next_fire_local"] == "2026-10-26T02:30:00+01:00"
    assert s["runs"] == [s["last_run"]["id"]]


def test_missed_fire_times_run_once_after_a_restart(d):
    deploy(d, "tick", TICK)
    st, _ = d.call("POST", "/v1/schedules", {"name": "s", "function": "tick", "cron": "*/5 * * * *"})
    assert st == 201
    d.stop()
    # Twelve fire times pass while the daemon is down.
    d.set_time("2026-03-01 11:02:00")
    d.start()
    s = d.wait_schedule("s", lambda s: s["last_run"] is not None)
    # Once the run is recorded the next fire time is past the clock, so no
    # second run can start until the clock moves: exactly one, not twelve.
    assert s["next_fire_at"] == iso("2026-03-01 11:05:00")
    assert len(s["runs"]) == 1
    assert d.wait_status(s["last_run"]["id"], TERMINAL)["status"] == "succeeded"
    st, runs = d.call("GET", "/v1/runs")
    assert len(runs["runs"]) == 1


def test_catch_up_none_skips_what_was_missed(d):
    deploy(d, "tick", TICK)
    st, b = d.call("POST", "/v1/schedules", {"name": "s", "function": "tick", "cron": "*/5 * * * *",
                                             "catch_up": "none"})
    assert st == 201 and b["catch_up"] == "none"
    d.stop()
    d.set_time("2026-03-01 11:02:00")
    d.start()
    # The skip happens before the daemon listens: visible at once.
    s = d.schedule("s")
    assert s["runs"] == [] and s["last_run"] is None
    assert s["next_fire_at"] == iso("2026-03-01 11:05:00")
    assert "catch_up none" in s["note"]
    d.set_time("2026-03-01 11:05:00")
    s = d.wait_schedule("s", lambda s: s["last_run"] is not None)
    assert len(s["runs"]) == 1


def test_no_overlap_unless_allowed(d):
    deploy(d, "slow", SLOW)
    st, _ = d.call("POST", "/v1/schedules", {"name": "one", "function": "slow", "every": "1m"})
    assert st == 201
    st, _ = d.call("POST", "/v1/schedules", {"name": "many", "function": "slow", "every": "1m",
                                             "allow_overlap": True})
    assert st == 201
    d.set_time("2026-03-01 10:01:00")
    first = d.wait_schedule("one", lambda s: s["last_run"] is not None)["last_run"]["id"]
    d.wait_schedule("many", lambda s: s["last_run"] is not None)
    d.wait_status(first, ["running"])
    d.set_time("2026-03-01 10:02:00")
    s = d.wait_schedule("one", lambda s: s["next_fire_at"] == iso("2026-03-01 10:03:00"))
    assert s["runs"] == [first]
    assert first in s["note"] and "still running" in s["note"]
    m = d.wait_schedule("many", lambda s: len(s["runs"]) == 2)
    for rid in set(m["runs"] + [first]):
        d.call("DELETE", f"/v1/runs/{rid}")
    for rid in set(m["runs"] + [first]):
        d.wait_status(rid, TERMINAL)


def test_pause_resume_rm(d, rcli):
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "s", "--every", "5m", "tick", check=0)
    out = rcli("schedule", "pause", "s", check=0).stdout
    assert "paused" in out
    s = d.schedule("s")
    assert s["paused"] is True and s["next_fire_at"] is None
    assert "paused" in rcli("schedule", "ls", check=0).stdout
    d.set_time("2026-03-01 10:20:00")
    # Resuming starts from now: what passed while paused never runs.
    rcli("schedule", "resume", "s", check=0)
    s = d.schedule("s")
    assert s["paused"] is False and s["next_fire_at"] == iso("2026-03-01 10:25:00")
    assert s["runs"] == []
    rcli("schedule", "rm", "s", check=0)
    st, _ = d.call("GET", "/v1/schedules/s")
    assert st == 404
    p = rcli("schedule", "rm", "s")
    assert p.returncode != 0 and "no schedule 's'" in p.stderr


def test_schedules_survive_a_restart_and_belong_to_their_tenant(d):
    deploy(d, "tick", TICK)
    st, _ = d.call("POST", "/v1/schedules", {"name": "keep", "function": "tick", "cron": "@daily"})
    assert st == 201
    d.stop()
    d.start()
    assert d.schedule("keep")["next_fire_at"] == iso("2026-03-02 00:00:00")
    st, b = d.call("GET", "/v1/schedules", token="bob")
    assert st == 200 and b["schedules"] == []
    st, _ = d.call("GET", "/v1/schedules/keep", token="bob")
    assert st == 404


@pytest.mark.parametrize("body,status,words", [
    ({"name": "x", "function": "tick", "cron": "*/5 * * *"}, 400, "5 fields"),
    ({"name": "x", "function": "tick", "cron": "0 25 * * *"}, 400, "hour"),
    ({"name": "x", "function": "tick", "cron": "@reboot"}, 400, "@hourly"),
    ({"name": "x", "function": "tick", "every": "0s"}, 400, "@every"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "every": "1m"}, 400, "exactly one"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "tz": "Mars/Olympus"}, 400, "not in the tz database"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "tz": "../../../etc/passwd"}, 400, "IANA zone name"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "tz": "/etc/passwd"}, 400, "IANA zone name"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "catch_up": "all"}, 400, "none"),
    ({"name": "x", "function": "nope", "cron": "* * * * *"}, 404, "no deployed function 'nope'"),
    ({"name": "x", "function": "tick", "cron": "0 0 30 2 *"}, 400, "never fires"),
    ({"name": "x y", "function": "tick", "cron": "* * * * *"}, 400, "name"),
    ({"name": "x", "function": "tick", "cron": "* * * * *", "bogus": 1}, 400, "bogus"),
])
def test_bad_schedules_are_refused_with_the_reason(d, body, status, words):
    deploy(d, "tick", TICK)
    st, b = d.call("POST", "/v1/schedules", body)
    assert st == status, b
    assert words in b["error"]["message"], b


@pytest.mark.parametrize("extra,status,words", [
    ({"raw_kwargs": {"n": "abc"}}, 422, "argument 'n': expected an integer, got 'abc'"),
    ({"kwargs": {"nope": 1}}, 422, "unexpected keyword argument 'nope'"),
    ({"raw_args": ["a", "1", "extra"]}, 422, "positional argument"),
    ({"version": 9}, 404, "has no version 9"),
])
def test_arguments_that_do_not_fit_the_function_are_refused_at_add(d, rcli, extra, status, words):
    """docs/schedules.md says the arguments are checked as an invoke's; they
    were not: the schedule was created and every fire failed validation."""
    deploy(d, "tick", TICK)
    st, b = d.call("POST", "/v1/schedules", {"name": "bad", "function": "tick", "cron": "* * * * *", **extra})
    assert st == status and words in b["error"]["message"], b
    assert d.call("GET", "/v1/schedules/bad")[0] == 404
    st, b = d.call("POST", "/v1/schedules", {"name": "good", "function": "tick", "cron": "* * * * *",
                                             "raw_kwargs": {"n": "3"}, "version": 1})
    assert st == 201, b
    d.call("DELETE", "/v1/schedules/good")


def test_cli_schedule_add_with_bad_arguments_is_a_validation_error(d, rcli):
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "bad", "--every", "1h", "tick", "--n", "abc")
    assert p.returncode == 3 and "argument 'n': expected an integer, got 'abc'" in p.stderr, p
    assert "bad" not in rcli("schedule", "ls", check=0).stdout
    # A flag without a value (raw_kwargs true) is checked the same way.
    p = rcli("schedule", "add", "bad", "--every", "1h", "tick", "--tag")
    assert p.returncode == 3 and "argument 'tag': a value is needed" in p.stderr, p


@pytest.mark.parametrize("args", [["--n", "abc"], ["--nope", "1"], ["-a", "x", "-a", "1", "-a", "extra"], ["--tag"],
                                  ["--timout", "5"]])
def test_cli_schedule_add_refuses_arguments_in_invokes_words_and_code(d, rcli, args):
    """schedule add printed "pysprinter: argument 'n': …" where `invoke`
    with the same arguments prints "ValidationError: argument 'n': …": the
    refusal is now printed from the validation's answer, as invoke prints
    its refused run (same bytes, same exit code)."""
    deploy(d, "tick", TICK)
    inv = rcli("invoke", "tick", *args)
    add = rcli("schedule", "add", "bad", "--every", "1h", "tick", *args)
    if args[0] == "--timout":
        # A mistyped run option is a usage error, as `run` says it (exit 2).
        assert inv.returncode == 2 and "unknown option '--timout' (did you mean --timeout?)" in inv.stderr, inv
    else:
        assert inv.returncode == 3 and "ValidationError: " in inv.stderr, inv
    assert (add.returncode, add.stdout, add.stderr) == (inv.returncode, inv.stdout, inv.stderr)
    assert d.call("GET", "/v1/schedules/bad")[0] == 404


def test_cli_schedule_add_pins_a_version_as_invoke_does(d, rcli):
    """invoke takes NAME::VERSION; schedule add refused tick::1 as "'1' is
    not a valid function name after '::'" (the API's `version` was out of
    the CLI's reach)."""
    deploy(d, "tick", TICK)
    deploy(d, "tick", TICK.replace('"tag": tag', '"tag": "v2:" + tag'))
    p = rcli("schedule", "add", "v1", "--every", "1h", "tick::1", "--n", "2")
    assert p.returncode == 0 and "created schedule v1" in p.stdout, p
    s = d.schedule("v1")
    assert (s["function"], s.get("version"), s["raw_kwargs"]) == ("tick", 1, {"n": "2"}), s
    p = rcli("schedule", "add", "v9", "--every", "1h", "tick::9")
    assert p.returncode == 2 and "function 'tick' has no version 9" in p.stderr, p
    p = rcli("schedule", "add", "vx", "--every", "1h", "tick::x")
    assert p.returncode == 2 and "the part after '::' must be a version number" in p.stderr, p
    # The version's own validation: invoke tick::1 and schedule add refuse alike.
    inv = rcli("invoke", "tick::1", "--n", "abc")
    add = rcli("schedule", "add", "bad", "--every", "1h", "tick::1", "--n", "abc")
    assert inv.returncode == 3 and (add.returncode, add.stderr) == (inv.returncode, inv.stderr), (inv, add)
    assert [x["name"] for x in d.call("GET", "/v1/schedules")[1]["schedules"]] == ["v1"]


def test_cli_errors(d, rcli, env, tmp_path):
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "dup", "--every", "1h", "tick", check=0)
    p = rcli("schedule", "add", "dup", "--every", "1h", "tick")
    assert p.returncode != 0 and "exists" in p.stderr
    p = rcli("schedule", "add", "x", "tick")
    assert p.returncode == 2 and "--cron" in p.stderr
    p = rcli("schedule", "add", "x", "--cron", "61 * * * *", "tick")
    assert p.returncode != 0 and "minute" in p.stderr
    # The embedded CLI has no scheduler and says so.
    p = Runner(env, tmp_path)("schedule", "ls")
    assert p.returncode != 0 and "server" in p.stderr
    assert "--catch-up" in rcli("schedule", "--help", check=0).stdout


STEPS = """
import time

def make(n: int):
    return list(range(n))

def total(xs, delay: float = 0):
    time.sleep(delay)
    return {"sum": sum(xs), "version": "captured"}
"""

PIPELINE = """
name: nightly
params:
  n: 3
  delay: 0
tasks:
  make: {file: lib/steps.py, function: make, args: ["${params.n}"]}
  total: {file: lib/steps.py, function: total, args: ["${make}"], kwargs: {delay: "${params.delay}"}}
"""


def write_pipeline(tmp_path):
    (tmp_path / "pipe" / "lib").mkdir(parents=True)
    (tmp_path / "pipe" / "lib" / "steps.py").write_text(STEPS)
    (tmp_path / "pipe" / "pipeline.yaml").write_text(PIPELINE)
    return tmp_path / "pipe" / "pipeline.yaml"


def wait_dag(d, dag_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, b = d.call("GET", f"/v1/dags/{dag_id}")
        if st == 200 and b["status"] not in ("running", "validating"):
            return b
        time.sleep(0.05)
    raise AssertionError(f"DAG run {dag_id} never ended: {st} {b}")


def test_dag_schedule_fires_the_captured_dag_file(d, rcli, tmp_path):
    pipeline = write_pipeline(tmp_path)
    p = rcli("schedule", "add", "pipe", "--cron", "*/5 * * * *", "--dag", str(pipeline), "--param", "n=5", check=0)
    assert "created schedule pipe" in p.stdout
    # Captured at add time: later edits (or removal) of the files do not apply.
    (tmp_path / "pipe" / "lib" / "steps.py").write_text(STEPS.replace("captured", "edited"))
    (tmp_path / "pipe" / "pipeline.yaml").unlink()
    s = d.schedule("pipe")
    assert s["function"] is None and s["dag"] == {"file": "pipeline.yaml"}
    assert s["next_fire_at"] == iso("2026-03-01 10:05:00")

    d.set_time("2026-03-01 10:05:00")
    s = d.wait_schedule("pipe", lambda s: s["last_run"] is not None)
    dag_id = s["last_run"]["id"]
    assert dag_id.startswith("d") and s["runs"] == [dag_id]
    g = wait_dag(d, dag_id)
    assert g["status"] == "succeeded", g
    assert g["schedule"] == "pipe" and g["name"] == "nightly"
    assert {t["name"]: t["result"] for t in g["tasks"]}["total"] == {"sum": 10, "version": "captured"}
    # Visible as any DAG run (dag ls) and its tasks as runs (ps).
    assert dag_id in rcli("dag", "ls", check=0).stdout
    task_run = {t["name"]: t["run_id"] for t in g["tasks"]}["total"]
    assert task_run in rcli("ps", check=0).stdout
    out = rcli("schedule", "ls", check=0).stdout
    assert "dag:pipeline.yaml" in out and f"{dag_id} succeeded" in out


def test_a_dag_schedule_keeps_its_zone_pause_overlap_and_catch_up(d, rcli, tmp_path):
    """A DAG schedule dropped --tz, --paused, --allow-overlap and
    --catch-up (its body returned before reading them): asked paused at
    02:00 Paris, it was active at 02:00 UTC with catch_up none."""
    pipeline = write_pipeline(tmp_path)
    for name, opts in (("fn", ["tick"]), ("dg", ["--dag", str(pipeline)])):
        if name == "fn":
            deploy(d, "tick", TICK)
        p = rcli("schedule", "add", name, "--cron", "0 2 * * *", "--tz", "Europe/Paris", "--paused",
                 "--allow-overlap", "--catch-up", "one", *opts, check=0)
        assert p.returncode == 0, p.stderr
        s = d.schedule(name)
        assert (s["tz"], s["paused"], s["allow_overlap"], s["catch_up"]) == ("Europe/Paris", True, True, "one"), s
    plain = rcli("schedule", "add", "dg2", "--cron", "0 2 * * *", "--dag", str(pipeline), check=0)
    assert plain.returncode == 0, plain.stderr
    s = d.schedule("dg2")
    assert (s["tz"], s["paused"], s["allow_overlap"], s["catch_up"]) == ("UTC", False, False, "one"), s


def test_dag_schedule_does_not_overlap_itself(d, tmp_path):
    files = {"lib/steps.py": STEPS}
    body = {"name": "slow", "cron": "* * * * *",
            "dag": {"pipeline": PIPELINE, "filename": "pipeline.yaml", "files": files, "params": {"delay": 30}}}
    st, b = d.call("POST", "/v1/schedules", body)
    assert st == 201, b
    d.set_time("2026-03-01 10:01:00")
    s = d.wait_schedule("slow", lambda s: s["last_run"] is not None)
    first = s["last_run"]["id"]
    d.set_time("2026-03-01 10:02:00")
    s = d.wait_schedule("slow", lambda s: s["next_fire_at"] == iso("2026-03-01 10:03:00"))
    assert s["runs"] == [first] and s["last_run"]["status"] == "running"
    assert first in s["note"] and "still running" in s["note"]
    st, _ = d.call("DELETE", f"/v1/dags/{first}")
    assert st == 200
    assert wait_dag(d, first)["status"] == "cancelled"


@pytest.mark.parametrize("dag,status,words", [
    ({"pipeline": "tasks:\n  a: {file: nope.py}\n"}, 400, "nope.py"),
    ({"pipeline": "tasks: [", "files": {}}, 400, "pipeline.yaml"),
    ({"pipeline": PIPELINE, "files": {"lib/steps.py": STEPS}, "bogus": 1}, 400, "bogus"),
    ("text", 400, "'dag'"),
    # A NUL where C reads a string (a task file's may hold one: it fails
    # its validation when the DAG runs, as a syntax error does).
    ({"pipeline": PIPELINE, "files": {"lib/steps.py": STEPS}, "params": {"p": "a\0b"}}, 400,
     "field 'params' holds a NUL character"),
    # A task naming a function its file lacks was accepted, and every fire
    # then failed its validation: the tasks are validated at add now.
    ({"pipeline": "tasks:\n  a: {file: lib/steps.py, function: nosuch}\n", "files": {"lib/steps.py": STEPS}},
     422, "task 'a'"),
    ({"pipeline": "tasks:\n  a: {file: lib/steps.py, function: make, args: [1, 2]}\n",
      "files": {"lib/steps.py": STEPS}}, 422, "positional argument"),
])
def test_bad_dag_schedules_are_refused_at_add(d, dag, status, words):
    st, b = d.call("POST", "/v1/schedules", {"name": "x", "cron": "* * * * *", "dag": dag})
    assert st == status, b
    assert words in b["error"]["message"], b
    st, b = d.call("POST", "/v1/schedules", {"name": "x", "cron": "* * * * *", "function": "tick",
                                             "dag": {"pipeline": PIPELINE}})
    assert st == 400 and "exactly one" in b["error"]["message"], b
    assert d.call("GET", "/v1/schedules")[1]["schedules"] == []


def test_dag_schedule_cli_errors(d, rcli, tmp_path):
    pipeline = write_pipeline(tmp_path)
    p = rcli("schedule", "add", "x", "--cron", "@daily", "--dag", str(tmp_path / "missing.yaml"))
    assert p.returncode == 2 and "missing.yaml" in p.stderr
    p = rcli("schedule", "add", "x", "--cron", "@daily", "--dag", str(pipeline), "tick")
    assert p.returncode == 2 and "no FUNCTION" in p.stderr
    p = rcli("schedule", "add", "x", "--cron", "@daily", "--param", "n=1", "tick")
    assert p.returncode == 2 and "--dag" in p.stderr
    (tmp_path / "pipe" / "lib" / "steps.py").unlink()  # a task file the DAG names
    p = rcli("schedule", "add", "x", "--cron", "@daily", "--dag", str(pipeline))
    assert p.returncode != 0 and "steps.py" in p.stderr
    assert d.call("GET", "/v1/schedules")[1]["schedules"] == []


def test_cli_dag_schedule_refuses_a_missing_function_as_dag_run_does(d, rcli, tmp_path):
    """A task naming a function its file lacks: schedule add --dag prints
    what `dag run` prints for that file (FILE:LINE, exit 3) and creates
    nothing."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "steps.py").write_text(STEPS)
    (tmp_path / "p.yaml").write_text("tasks:\n  a:\n    file: lib/steps.py\n    function: nosuch\n")
    run = rcli("dag", "run", "p.yaml")
    add = rcli("schedule", "add", "x", "--cron", "@daily", "--dag", "p.yaml")
    assert run.returncode == 3 and "p.yaml:3: task 'a'" in run.stderr and "'nosuch'" in run.stderr, run
    assert (add.returncode, add.stdout, add.stderr) == (run.returncode, run.stdout, run.stderr)
    assert d.call("GET", "/v1/schedules")[1]["schedules"] == []


def test_a_schedule_passes_arguments_holding_nul_as_an_invoke_would(d):
    """POST .../invoke takes "a\\u0000b" as an argument (a Python str holds
    NUL); the schedule route refused it as "field 'args' holds a NUL"."""
    deploy(d, "tick", TICK)
    st, b = d.call("POST", "/v1/schedules", {"name": "nul", "function": "tick", "cron": "*/5 * * * *",
                                             "args": ["a\0b"], "kwargs": {"n": 1}})
    assert st == 201, b
    d.set_time("2026-03-01 10:05:00")
    s = d.wait_schedule("nul", lambda s: s["last_run"] is not None)
    run = d.wait_status(s["last_run"]["id"], TERMINAL)
    assert (run["status"], run["result"]) == ("succeeded", {"tag": "a\0b", "n": 1}), run


READER = """
import pysprinter

def reader(tag: str = "none"):
    p = pysprinter.data_path("words")
    return [tag, open(p).read()]
"""


def test_cli_schedule_add_carries_limits_and_data_into_each_fire(d, rcli, tmp_path):
    """`schedule add NAME --every 1m FUNCTION --timeout 5` failed with
    "unknown field 'limits'" (exit 2), and `--data x` was dropped without a
    word (exit 0, every fire ran without the dataset). The invoke options
    that shape a fire — limits and datasets — are the schedule's now, and
    each fire is invoked with them."""
    deploy(d, "slow", SLOW)
    deploy(d, "reader", READER)
    (tmp_path / "words.txt").write_text("alpha beta\n")
    rcli("data", "put", "words", str(tmp_path / "words.txt"), check=0)
    p = rcli("schedule", "add", "short", "--every", "1m", "slow", "--seconds", "30", "--timeout", "1s",
             "--memory", "256M")
    assert p.returncode == 0 and "created schedule short" in p.stdout, p
    p = rcli("schedule", "add", "read", "--every", "1m", "reader", "--tag", "x", "--data", "words")
    assert p.returncode == 0 and "created schedule read" in p.stdout, p
    assert d.schedule("short")["limits"] == {"timeout_ms": 1000, "memory_bytes": 256 << 20}
    assert d.schedule("read")["data"] == ["words"]
    d.set_time("2026-03-01 10:01:00")
    run = d.wait_status(d.wait_schedule("short", lambda s: s["last_run"] is not None)["last_run"]["id"], TERMINAL)
    assert (run["status"], run["exit_code"]) == ("killed", 5), run
    run = d.wait_status(d.wait_schedule("read", lambda s: s["last_run"] is not None)["last_run"]["id"], TERMINAL)
    assert (run["status"], run["result"]) == ("succeeded", ["x", "alpha beta\n"]), run


def test_a_schedule_limit_above_the_tenants_is_refused_at_add(tmp_path):
    """Each fire is granted its limits as an invoke is: one the tenant may
    not have is refused when the schedule is added (403, as the invoke
    would be), not noted at every fire."""
    daemon = ClockDaemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path),
                         config_extra="limits:\n  maxima: {memory_bytes: 536870912}\n")
    with daemon.serving(clean_exit=False) as d:
        deploy(d, "tick", TICK)
        st, b = d.call("POST", "/v1/functions/tick/invoke", {"limits": {"memory_bytes": 1 << 30}})
        assert st == 403, b
        st, c = d.call("POST", "/v1/schedules", {"name": "big", "function": "tick", "every": "1m",
                                                 "limits": {"memory_bytes": 1 << 30}})
        assert (st, c["error"]["message"]) == (403, b["error"]["message"]), c
        assert d.call("GET", "/v1/schedules/big")[0] == 404


@pytest.mark.parametrize("opt", [["--sandbox", "none"], ["--no-cache"], ["--output-data", "out"], ["--secret", "KEY"],
                                 ["--env", "A=b"], ["--index-url", "http://127.0.0.1:9/simple"],
                                 ["--find-links", "."], ["--allow-sdist"], ["--output-file", "out.txt"]])
def test_cli_schedule_add_refuses_a_run_option_it_cannot_carry(d, rcli, opt):
    """Run options a fire has no place for were dropped without a word
    (exit 0): each is a usage error naming the option now, and nothing is
    created."""
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "x", "--every", "1h", "tick", "--n", "1", *opt)
    assert p.returncode == 2 and p.stdout == "", p
    assert p.stderr.startswith(f"pysprinter: {opt[0]} ") and "Try 'pysprinter schedule --help'" in p.stderr, p.stderr
    assert d.call("GET", "/v1/schedules")[1]["schedules"] == []


def test_invoke_names_a_missing_version_as_schedule_add_does(d, rcli):
    """`invoke tick::9` said only "function not found" where `schedule add
    … tick::9` names the version: the same words now, from the same rule
    on the server (a missing function: "no deployed function 'NAME'")."""
    deploy(d, "tick", TICK)
    inv = rcli("invoke", "tick::9")
    add = rcli("schedule", "add", "v9", "--every", "1h", "tick::9")
    assert inv.returncode == add.returncode == 2, (inv, add)
    assert inv.stderr == add.stderr == "pysprinter: function 'tick' has no version 9\n", (inv.stderr, add.stderr)
    st, b = d.call("POST", "/v1/functions/tick/invoke", {"version": 9})
    assert (st, b["error"]["message"]) == (404, "function 'tick' has no version 9"), b
    st, b = d.call("POST", "/v1/functions/nope/invoke", {"version": 9})
    assert (st, b["error"]["message"]) == (404, "no deployed function 'nope'"), b



def test_a_function_not_deployed_is_named_alike_by_every_verb_and_route(d, rcli):
    """`invoke nope` printed the API's "function not found" where `functions
    show nope` printed "no deployed function 'nope' (see `pysprinter
    functions`)": one wording now, the server's (every /v1 route's 404 for
    a function that is not deployed), with the CLI's pointer to the list."""
    words = "pysprinter: no deployed function 'nope' (see `pysprinter functions`)\n"
    for argv in (["functions", "show", "nope"], ["functions", "rm", "nope"], ["invoke", "nope"],
                 ["invoke", "nope", "--payload", "{}"], ["invoke", "nope::3"]):
        r = rcli(*argv, check=None)
        assert (r.stdout, r.stderr) == ("", words), (argv, r)
        assert r.returncode != 0, (argv, r)
    for method, path in (("GET", "/v1/functions/nope"), ("DELETE", "/v1/functions/nope"),
                         ("POST", "/v1/functions/nope/invoke")):
        st, b = d.call(method, path, {} if method == "POST" else None)
        assert (st, b["error"]["message"]) == (404, "no deployed function 'nope'"), (method, path, b)


def test_invoke_with_a_payload_names_a_missing_version_as_without(d, rcli):
    """`invoke tick::9 --payload '{}'` goes through the Lambda route and
    printed Lambda's "Function not found: arn:…:function:tick:9" where
    `invoke tick::9 ARGS` says "function 'tick' has no version 9": one
    wording now, the invoke API's (a missing function: "function not
    found"), while the Lambda route still answers Lambda's clients as
    Lambda does."""
    deploy(d, "tick", TICK)
    nope = "no deployed function 'nope' (see `pysprinter functions`)"
    for ref, words in (("tick::9", "function 'tick' has no version 9"), ("nope", nope), ("nope::2", nope)):
        plain = rcli("invoke", ref, check=None)
        event = rcli("invoke", ref, "--payload", "{}", check=None)
        assert (plain.returncode, plain.stdout, plain.stderr) == (event.returncode, event.stdout, event.stderr) \
            == (2, "", f"pysprinter: {words}\n"), (ref, plain, event)
    st, b = d.call("POST", "/2015-03-31/functions/tick/invocations?Qualifier=9", {})
    assert st == 404 and b["message"] == ("Function not found: arn:aws:lambda:local:000000000000:function:tick:9"), b
    assert b["__type"] == "ResourceNotFoundException", b
