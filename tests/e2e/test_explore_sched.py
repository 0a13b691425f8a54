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

