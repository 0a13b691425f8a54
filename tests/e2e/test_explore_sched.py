"""Schedules and stacks explored as a CronJob / EventBridge / serverless.yml
user would (docs/schedules.md, docs/stack.md): each test is a defect found
that way, asserting what such a user checks. Time is the test's clock
(test_schedules.ClockDaemon), never a sleep."""
import concurrent.futures
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from clusterlib import CLAIM_TIMEOUT_MS, REDIS, wait_until
from conftest import CLI, DAEMON, Runner
from daemonlib import sandbox_mode, wait_for
from proctree import descendants
from test_cluster import DAG_PIPELINE, DAG_TASKS, dag_state, nodes, redis  # noqa: F401 (fixtures)
from test_ops import DAY, pysprinterd
from test_schedules import TERMINAL, TICK, ClockDaemon, d, deploy, iso, rcli  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


def test_a_schedule_added_again_under_a_removed_ones_name_has_no_runs_of_the_old(d, rcli):
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "s", "--every", "5m", "tick", check=0)
    d.set_time("2026-03-01 10:05:00")
    old = d.wait_schedule("s", lambda s: s["last_run"] is not None)["last_run"]["id"]
    d.wait_status(old, TERMINAL)
    rcli("schedule", "rm", "s", check=0)
    rcli("schedule", "add", "s", "--cron", "@daily", "tick", check=0)
    s = d.schedule("s")
    # A new schedule: no history of the one removed (whose run stays, listed by ps).
    assert s["runs"] == [] and s["last_run"] is None, s
    st, run = d.call("GET", f"/v1/runs/{old}")
    assert st == 200 and run["status"] == "succeeded"


def test_a_leap_day_schedule_keeps_firing_across_a_century_year(d):
    """0 0 29 2 *: after 2096-02-29 the next Feb 29 is 2104's (2100 is not a
    leap year). The schedule must say so, not pause itself without a word."""
    deploy(d, "tick", TICK)
    d.set_time("2096-02-28 12:00:00")
    st, b = d.call("POST", "/v1/schedules", {"name": "leap", "function": "tick", "cron": "0 0 29 2 *"})
    assert st == 201, b
    assert b["next_fire_at"] == iso("2096-02-29 00:00:00")
    d.set_time("2096-02-29 00:00:00")
    s = d.wait_schedule("leap", lambda s: s["last_run"] is not None)
    assert s["paused"] is False, s
    assert s["next_fire_at"] == iso("2104-02-29 00:00:00")
    # Added after that fire, too.
    d.set_time("2097-03-01 00:00:00")
    st, b = d.call("POST", "/v1/schedules", {"name": "leap2", "function": "tick", "cron": "0 0 29 2 *"})
    assert st == 201, b
    assert b["next_fire_at"] == iso("2104-02-29 00:00:00")


def _held_worker_request(daemon_pid):
    """True once a request waits, unread, on a socket of one of the
    daemon's (stopped) workers: `ss` shows its bytes in Recv-Q."""
    inodes = set()
    for p in descendants(daemon_pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                t = os.readlink(f"/proc/{p}/fd/{fd}")
                if t.startswith("socket:["):
                    inodes.add(t[8:-1])
        except OSError:
            pass
    out = subprocess.run(["ss", "-xa"], capture_output=True, text=True).stdout.splitlines()
    return any(len(f) > 5 and f[5] in inodes and int(f[2]) > 0 for f in (line.split() for line in out[1:]))


def test_a_stack_deploy_during_a_fire_neither_reruns_that_fire_nor_forgets_its_run(d, rcli):
    """A stack that edits schedule s1 (allow_overlap) is planned, then waits
    on the validation of s2's new arguments (its worker held with
    SIGSTOP); s1 fires meanwhile. The stack's write must keep that fire:
    s1's last run stays that run and the fire time is not run again (the
    stack wrote back the state it had read: next fire 10:01 again, last run
    none, and the scheduler ran 10:01 a second time)."""
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to see the held request")
    rcli.write("fns/tick.py", TICK)

    def stack(s1_extra, s2_arg):
        rcli.write("stack.yaml", "functions:\n  tick:\n    file: fns/tick.py\n    schedules:\n"
                   f"      s1: {{every: 1m, args: [a]{s1_extra}}}\n"
                   f"      s2: {{every: 1h, args: [{s2_arg}]}}\n")

    stack("", "b")
    rcli("deploy", "-f", "stack.yaml", check=0)
    stack(", allow_overlap: true", "c")
    workers = [p for p in descendants(d.proc.pid) if open(f"/proc/{p}/comm").read().startswith(("worker", "pysprinter-wor"))]
    assert workers
    for p in workers:
        os.kill(p, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            deploying = pool.submit(rcli, "deploy", "-f", "stack.yaml", timeout=300)
            wait_for(lambda: _held_worker_request(d.proc.pid), "the stack's validation of s2 to wait on a worker")
            d.set_time("2026-03-01 10:01:00")
            fired = d.wait_schedule("s1", lambda s: s["last_run"] is not None)["last_run"]["id"]
            for p in workers:
                os.kill(p, signal.SIGCONT)
            p = deploying.result()
    finally:
        for w in workers:
            try:
                os.kill(w, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert p.returncode == 0, p.stderr
    assert "updated schedule s1" in p.stdout
    s = d.schedule("s1")
    assert s["allow_overlap"] is True
    assert s["last_run"] and s["last_run"]["id"] == fired and s["runs"] == [fired], s
    assert s["last_fire_at"] == iso("2026-03-01 10:01:00") and s["next_fire_at"] == iso("2026-03-01 10:02:00")


def test_schedule_add_takes_its_options_as_option_equals_value(d, rcli, tmp_path):
    """`--every=10m`, `--tz=Europe/Paris`: the GNU spelling that the invoke
    options after FUNCTION and `dag run --param=…` take; `schedule add`
    said "unknown option '--every=10m'" (exit 2)."""
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "eq", "--cron=30 8 * * mon-fri", "--tz=Europe/Paris", "--catch-up=none",
             "tick", "--n=3")
    assert p.returncode == 0, p.stderr
    s = d.schedule("eq")
    assert (s["schedule"], s["tz"], s["catch_up"]) == ("30 8 * * mon-fri", "Europe/Paris", "none")
    assert s["next_fire_local"] == "2026-03-02T08:30:00+01:00" and s["raw_kwargs"] == {"n": "3"}
    (tmp_path / "p.yaml").write_text("tasks:\n  t:\n    file: t.py\n    kwargs: {tag: '${params.day}'}\n")
    (tmp_path / "t.py").write_text(TICK)
    p = rcli("schedule", "add", "dg", "--every=10m", "--dag=p.yaml", "--param=day=monday")
    assert p.returncode == 0, p.stderr
    assert d.schedule("dg")["dag"] == {"file": "p.yaml"}
    p = rcli("schedule", "add", "x", "--every=10m", "--paused=yes", "tick")
    assert p.returncode == 2 and "--paused takes no value" in p.stderr


@pytest.mark.parametrize("spec", ["0 0 30 2 *", "0 12 31 4,6,9,11 *"])
def test_a_cron_expression_that_never_fires_is_a_mistake_of_the_stack_file_at_its_line(d, rcli, spec):
    """Like every other mistake of a stack's cron (docs/stack.md): at its
    line, exit 3, the same bytes with and without a server. The server's
    "schedule 's1' never fires" came without a line and exit 2, and
    embedded only said that a server is needed."""
    rcli.write("fns/tick.py", TICK)
    rcli.write("stack.yaml", f"functions:\n  tick:\n    file: fns/tick.py\n    schedules:\n"
                             f"      s1:\n        cron: '{spec}'\n")
    remote = rcli("deploy", "-f", "stack.yaml")
    local = Runner({k: v for k, v in rcli.env.items() if k != "PYSPRINTER_SERVER"}, rcli.cwd)("deploy", "-f",
                                                                                              "stack.yaml")
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    assert remote.returncode == 3
    assert remote.stderr.startswith("pysprinter: stack.yaml:6:15: ") and "never fires" in remote.stderr
    st, fl = d.call("GET", "/v1/functions")
    assert fl["functions"] == []
    # schedule add says why, too.
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "s", "--cron", spec, "tick")
    assert p.returncode == 2 and "never fires" in p.stderr and "day" in p.stderr, p.stderr


@pytest.mark.parametrize("spec", ["*/5 * * * *", "* * * * *"])
def test_an_unquoted_cron_starting_with_a_star_says_to_quote_it(d, rcli, spec):
    """`cron: */5 * * * *` is how a crontab line reads, and in YAML a '*'
    starts an alias: the message said only "did not find expected
    alphabetic or numeric character while scanning an alias"."""
    rcli.write("fns/tick.py", TICK)
    rcli.write("stack.yaml", f"functions:\n  tick:\n    file: fns/tick.py\n    schedules:\n"
                             f"      s1:\n        cron: {spec}\n")
    p = rcli("deploy", "-f", "stack.yaml")
    assert p.returncode == 3
    assert p.stderr.startswith("pysprinter: stack.yaml:6:") and "alias" in p.stderr
    assert "quote" in p.stderr and "\"*/5 * * * *\"" in p.stderr, p.stderr


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_a_dag_schedule_in_a_cluster_sees_its_dag_run_end_on_the_gateway_that_took_it_over(nodes, redis,
                                                                                            tmp_path):
    """A DAG schedule on gateway g1 fires a DAG run; g1 is held (SIGSTOP)
    past its owner lease, g2 takes the DAG run over and ends it. The
    schedule read its last run's status from g1's own store, where the run
    stayed 'running' for good: every later fire time was skipped as
    overlapping ("run d… was still running") while `dag show` said
    succeeded."""
    g1 = ClockDaemon(tmp_path / "g1", sandbox=sandbox_mode(tmp_path),
                     args=["--redis", redis.url, "--role", "gateway", "--node-id", "g1", "--drain-timeout", "10",
                           "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms"])
    g1.start()
    try:
        g2 = nodes("g2", "gateway")
        nodes("w1", "worker")
        nodes("w2", "worker")
        st, b = g1.call("POST", "/v1/schedules", {"name": "etl", "every": "1m", "dag": {
            "pipeline": DAG_PIPELINE, "filename": "p.yaml", "files": {"t.py": DAG_TASKS}, "no_cache": True}})
        assert st == 201, b
        g1.set_time("2026-03-01 10:01:00")
        dag_id = g1.wait_schedule("etl", lambda s: s["last_run"] is not None)["last_run"]["id"]
        wait_until(lambda: dag_state(g2, dag_id)[1].get("a", {}).get("state") == "succeeded", 60, "task a done")
        os.kill(g1.proc.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: redis.cli("GET", f"ps:dagowner:{dag_id}") == "g2", 60, "g2 to take the DAG over")
        finally:
            os.kill(g1.proc.pid, signal.SIGCONT)
        wait_until(lambda: dag_state(g2, dag_id)[0]["status"] in ("succeeded", "failed"), 120, "the DAG run to end")
        assert dag_state(g1, dag_id)[0]["status"] == "succeeded"
        s = g1.wait_schedule("etl", lambda s: s["last_run"]["status"] != "running", timeout=60)
        assert s["last_run"] == {"id": dag_id, "status": "succeeded"}, s
        # The next fire time starts the next DAG run.
        g1.set_time("2026-03-01 10:02:00")
        s = g1.wait_schedule("etl", lambda s: s["next_fire_at"] == iso("2026-03-01 10:03:00"))
        assert len(s["runs"]) == 2 and s["note"] is None, s
    finally:
        g1.stop(timeout=30)


def test_a_schedules_runs_removed_by_retention_leave_its_runs_list(d, rcli):
    """Retention (docs/operations.md) removes runs older than 30 days; the
    schedule's `runs` kept listing their ids for good (`logs ID`: not
    found), and its tags were never removed: one row per fire, forever."""
    deploy(d, "tick", TICK)
    st, _ = d.call("POST", "/v1/schedules", {"name": "s", "function": "tick", "every": "1m"})
    assert st == 201
    for n, t in enumerate(["10:01", "10:02"], 1):
        d.set_time(f"2026-03-01 {t}:00")
        s = d.wait_schedule("s", lambda s: len(s["runs"]) == n)
        d.wait_status(s["last_run"]["id"], TERMINAL)
    old = s["runs"]
    d.stop()
    p = pysprinterd("gc", "--json", "--data-dir", d.home, home=d.home, PYSPRINTER_TEST_NOW=int(time.time() + 31 * DAY))
    assert p.returncode == 0 and json.loads(p.stdout)["runs"] == 2, (p.stdout, p.stderr)
    d.start(port=d.port)
    for rid in old:
        assert d.call("GET", f"/v1/runs/{rid}")[0] == 404
    s = d.schedule("s")
    assert s["runs"] == [], s
    # The next fire is listed as before.
    d.set_time("2026-03-01 10:03:00")
    s = d.wait_schedule("s", lambda s: len(s["runs"]) == 1)
    assert s["runs"] == [s["last_run"]["id"]]


def test_catch_up_none_skips_a_fire_time_the_running_daemon_saw_hours_late(d):
    """The machine suspended overnight, or the daemon held (SIGSTOP): the
    daemon is up but sees 09:00 at 17:00. `--catch-up none` is "a late run
    is worse than none" (cron runs nothing it missed while the machine was
    down): it ran the 09:00 report at 17:00. `one` still runs it once."""
    deploy(d, "tick", TICK)
    for name, cu in (("none", "none"), ("one", "one")):
        st, b = d.call("POST", "/v1/schedules", {"name": name, "function": "tick", "cron": "0 9 * * *",
                                                 "catch_up": cu})
        assert st == 201 and b["next_fire_at"] == iso("2026-03-02 09:00:00"), b
    d.set_time("2026-03-02 17:00:00")
    one = d.wait_schedule("one", lambda s: s["last_run"] is not None)
    assert len(one["runs"]) == 1
    s = d.wait_schedule("none", lambda s: s["next_fire_at"] == iso("2026-03-03 09:00:00"))
    assert s["runs"] == [] and s["last_run"] is None, s
    assert "catch_up none" in s["note"] and "late" in s["note"], s
    # On time, it fires.
    d.set_time("2026-03-03 09:00:00")
    s = d.wait_schedule("none", lambda s: s["last_run"] is not None)
    assert len(s["runs"]) == 1 and s["note"] is None


NO_N = """
def tick(tag: str = "none"):
    return {"tag": tag}
"""


def test_deploying_a_version_a_schedule_no_longer_fits_says_so(d, rcli):
    """`deploy FILE` of a version whose signature drops a parameter a
    schedule passes: the deploy said nothing, and the 02:00 fire ended
    `invalid`. A stack refuses that pair; a deploy keeps the user's new
    version and warns, naming the schedule (a pinned one is not affected)."""
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "nightly", "--every", "1m", "tick", "--n", "3", check=0)
    rcli("schedule", "add", "pinned", "--every", "1m", "tick::1", "--n", "3", check=0)
    rcli("schedule", "add", "fits", "--every", "1m", "tick", "hello", check=0)
    rcli.write("tick.py", NO_N)
    p = rcli("deploy", "tick.py", "--name", "tick")
    assert p.returncode == 0, p.stderr
    assert "deployed tick version 2" in p.stdout
    warned = [line for line in p.stderr.splitlines() if "schedule" in line]
    assert len(warned) == 1 and "schedule 'nightly'" in warned[0] and "ValidationError" in warned[0], p.stderr
    # What it warns of: the fire is refused.
    d.set_time("2026-03-01 10:01:00")
    s = d.wait_schedule("nightly", lambda s: s["last_run"] is not None)
    assert d.wait_status(s["last_run"]["id"], TERMINAL)["status"] == "invalid"
    # A version that fits says nothing.
    rcli.write("tick.py", TICK)
    p = rcli("deploy", "tick.py", "--name", "tick")
    assert p.returncode == 0 and "schedule" not in p.stderr, p.stderr


def test_a_stack_that_updates_a_function_warns_of_a_schedule_made_by_hand(d, rcli):
    """The stack checks its own schedules against the version it deploys; a
    schedule added by hand that fires that function was not looked at."""
    rcli.write("fns/tick.py", TICK)
    rcli.write("stack.yaml", "functions:\n  tick:\n    file: fns/tick.py\n")
    assert rcli("deploy", "-f", "stack.yaml").returncode == 0
    rcli("schedule", "add", "hand", "--every", "1m", "tick", "--n", "3", check=0)
    rcli.write("fns/tick.py", NO_N)
    p = rcli("deploy", "-f", "stack.yaml")
    assert p.returncode == 0 and p.stdout == "updated function tick\n", (p.stdout, p.stderr)
    assert "schedule 'hand'" in p.stderr and "unexpected keyword argument 'n'" in p.stderr, p.stderr
    # Removed, then created again by the stack: the schedule outlived it.
    assert rcli("functions", "rm", "tick").returncode == 0
    p = rcli("deploy", "-f", "stack.yaml")
    assert p.returncode == 0 and p.stdout == "created function tick\n", (p.stdout, p.stderr)
    assert "schedule 'hand'" in p.stderr and "unexpected keyword argument 'n'" in p.stderr, p.stderr


def test_stack_prune_leaves_dag_schedules_which_a_stack_cannot_list(d, rcli):
    """A stack's schedules fire its functions; a DAG schedule can only be
    made with `schedule add --dag`. `deploy -f --prune` deleted every DAG
    schedule of the tenant, each time, whatever the file said."""
    rcli.write("fns/tick.py", TICK)
    rcli.write("stack.yaml", "functions:\n  tick:\n    file: fns/tick.py\n")
    st, b = d.call("POST", "/v1/schedules", {"name": "etl", "every": "1h", "dag": {
        "pipeline": "tasks:\n  t: {file: t.py, function: tick}\n", "filename": "p.yaml", "files": {"t.py": TICK}}})
    assert st == 201, b
    for extra in (["--dry-run"], []):
        p = rcli("deploy", "-f", "stack.yaml", "--prune", *extra)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "created function tick\n", p.stdout
    assert d.schedule("etl")["dag"] == {"file": "p.yaml"}
    # A function schedule the file does not list is still pruned.
    rcli("schedule", "add", "hand", "--every", "1h", "tick", check=0)
    p = rcli("deploy", "-f", "stack.yaml", "--prune")
    assert p.stdout == "unchanged function tick\ndeleted schedule hand\n", p.stdout
    st, lst = d.call("GET", "/v1/schedules")
    assert [s["name"] for s in lst["schedules"]] == ["etl"]


def test_a_missing_schedule_or_function_is_named_as_the_other_verbs_name_theirs(d, rcli):
    """`schedule show zz` said "schedule not found" (which?), where `logs
    rzzz` says "no run 'rzzz' (see `pysprinter ps`)"; and `schedule add s
    --every 1m nope` said "function 'nope' is not deployed", where every
    other verb and route says "no deployed function 'nope'"."""
    for verb in ("show", "rm", "pause", "resume"):
        p = rcli("schedule", verb, "zz")
        assert (p.returncode, p.stdout, p.stderr) == (2, "", "pysprinter: no schedule 'zz' "
                                                             "(see `pysprinter schedule ls`)\n"), (verb, p)
    st, b = d.call("GET", "/v1/schedules/zz")
    assert (st, b["error"]["message"]) == (404, "no schedule 'zz'"), b
    p = rcli("schedule", "add", "s", "--every", "1m", "nope")
    assert (p.returncode, p.stderr) == (2, "pysprinter: no deployed function 'nope' (see `pysprinter functions`)\n")
    st, b = d.call("POST", "/v1/schedules", {"name": "s", "function": "nope", "every": "1m"})
    assert (st, b["error"]["message"]) == (404, "no deployed function 'nope'"), b


def test_removing_a_function_a_schedule_fires_says_so(d, rcli):
    """`functions rm tick` while schedule `nightly` fires it: deleted without
    a word; each fire then starts nothing (its note says the function is
    not deployed). The removal stands and names the schedule."""
    deploy(d, "tick", TICK)
    rcli("schedule", "add", "nightly", "--every", "1m", "tick", check=0)
    p = rcli("functions", "rm", "tick")
    assert p.returncode == 0 and p.stdout == "deleted tick\n"
    assert "schedule 'nightly'" in p.stderr and "warning" in p.stderr, p.stderr
    d.set_time("2026-03-01 10:01:00")
    s = d.wait_schedule("nightly", lambda s: s["note"] is not None)
    assert s["runs"] == [] and "not deployed" in s["note"]


def test_a_clock_stepped_back_does_not_silence_a_schedule(d):
    """The host's clock is corrected back an hour (NTP after a bad RTC, a
    VM restored): an `--every 1m` schedule whose next fire was 10:01 stayed
    silent until the clock reached 10:01 again, an hour without a fire.
    Its fire times follow the clock as it now is, as cron's do."""
    deploy(d, "tick", TICK)
    st, b = d.call("POST", "/v1/schedules", {"name": "s", "function": "tick", "every": "1m"})
    assert st == 201 and b["next_fire_at"] == iso("2026-03-01 10:01:00")
    d.set_time("2026-03-01 10:01:00")
    first = d.wait_schedule("s", lambda s: len(s["runs"]) == 1)["last_run"]["id"]
    d.set_time("2026-03-01 09:00:30")
    s = d.wait_schedule("s", lambda s: s["next_fire_at"] != iso("2026-03-01 10:02:00"))
    assert s["next_fire_at"] == iso("2026-03-01 09:01:00") and s["runs"] == [first], s
    d.set_time("2026-03-01 09:01:00")
    s = d.wait_schedule("s", lambda s: len(s["runs"]) == 2)
    assert s["last_fire_at"] == iso("2026-03-01 09:01:00")
    # Newest first is the order they ran in, whatever the clock said.
    assert s["runs"] == [s["last_run"]["id"], first], s
    # Stepped back while the daemon was down: the same at start.
    d.stop()
    d.set_time("2026-03-01 08:00:30")
    d.start(port=d.port)
    s = d.wait_schedule("s", lambda s: s["next_fire_at"] == iso("2026-03-01 08:01:00"))
    assert len(s["runs"]) == 2


def test_a_schedule_whose_zone_can_no_longer_be_read_says_why_it_paused(d):
    """A tzdata update removed the zone a schedule names (simulated in its
    row): its fire paused it, with no note: `schedule ls` said "paused"
    and nothing said why, nor that a user had not paused it."""
    deploy(d, "tick", TICK)
    st, _ = d.call("POST", "/v1/schedules", {"name": "s", "function": "tick", "every": "1m", "tz": "Europe/Paris"})
    assert st == 201
    d.stop()
    db = sqlite3.connect(d.home / "pysprinter.db")
    db.execute("UPDATE schedules SET tz='Europe/Atlantis' WHERE name='s'")
    db.commit()
    db.close()
    d.set_time("2026-03-01 10:01:00")
    d.start(port=d.port)
    s = d.wait_schedule("s", lambda s: s["paused"])
    assert s["note"] and "Europe/Atlantis" in s["note"] and "paused" in s["note"], s


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_one_schedule_added_through_two_gateways_fires_once_per_fire_time(nodes, redis, tmp_path):
    """Schedules live on the gateway they were added through (docs/cluster.md):
    behind a load balancer, `schedule ls` on the other shows nothing, and
    `schedule add nightly` there succeeds too. Each gateway then fired
    every fire time: two runs a tick. The function's runs are the
    cluster's: a fire time of the tenant's schedule NAME makes one run,
    whichever gateway fires it, and both schedules show that run."""
    gws = []
    try:
        for name in ("g1", "g2"):
            g = ClockDaemon(tmp_path / name, sandbox=sandbox_mode(tmp_path),
                            args=["--redis", redis.url, "--role", "gateway", "--node-id", name, "--drain-timeout", "10",
                                  "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms"])
            g.start()
            gws.append(g)
        nodes("w1", "worker")
        g1, g2 = gws
        st, b = g1.call("POST", "/v1/functions", {"name": "tick", "source": TICK})
        assert st == 201, b
        for g in gws:
            st, b = g.call("POST", "/v1/schedules", {"name": "nightly", "function": "tick", "every": "1m"})
            assert st == 201, b
        for g in gws:
            g.set_time("2026-03-01 10:01:00")
        shown = [g.wait_schedule("nightly", lambda s: s["last_run"] is not None and s["last_run"]["status"] is not None)
                 for g in gws]
        ids = {s["last_run"]["id"] for s in shown}
        assert len(ids) == 1, shown
        st, lst = g1.call("GET", "/v1/functions/tick/runs")
        assert [r["id"] for r in lst["runs"]] == list(ids), lst
        assert all(s["runs"] == list(ids) for s in shown), shown
    finally:
        for g in gws:
            g.stop(timeout=30)


@pytest.mark.parametrize("spec,hint", [
    ("rate(10 minutes)", "--every 10m"),
    ("cron(0 12 * * ? *)", "EventBridge's syntax: give its first 5 fields, '0 12 * * ?'"),
    ("0 12 * * ? *", "6th field"),
])
def test_eventbridge_schedule_syntax_says_what_to_write_instead(d, rcli, spec, hint):
    """A serverless.yml / EventBridge user writes rate(10 minutes) or
    cron(0 12 * * ? *): refused with only "a cron expression has 5 fields"."""
    deploy(d, "tick", TICK)
    p = rcli("schedule", "add", "s", "--cron", spec, "tick")
    assert p.returncode == 2 and hint in p.stderr, p.stderr
    rcli.write("fns/tick.py", TICK)
    rcli.write("stack.yaml", f"functions:\n  tick:\n    file: fns/tick.py\n    schedules:\n"
                             f"      s1:\n        cron: '{spec}'\n")
    p = rcli("deploy", "-f", "stack.yaml")
    assert p.returncode == 3 and p.stderr.startswith("pysprinter: stack.yaml:6:15: ") and hint in p.stderr, p.stderr
