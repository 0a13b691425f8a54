"""Schedules and stacks explored as a CronJob / EventBridge / serverless.yml
user would (docs/schedules.md, docs/stack.md): each test is a defect found
that way, asserting what such a user checks. Time is the test's clock
(test_schedules.ClockDaemon), never a sleep."""
import pytest

from conftest import CLI, DAEMON
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
