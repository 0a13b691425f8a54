"""helper-227's red team of the daemon's API across tenants: what one
tenant's requests can do to another's ("a run cannot reach another tenant;
a request can only lower what the operator's config grants a tenant").
Each test is named after what the attacker tries, and failed on the daemon
before its fix. What held is in the report, not repeated here (see
test_explore_sec5.py's test_no_route_hands_a_tenant_what_is_anothers)."""
import json

from daemonlib import Daemon, wait_for

MAX_ACTIVE = 64  # DAEMON_MAX_ACTIVE_DAGS: DAG runs in flight per daemon
SHARE = MAX_ACTIVE // 2  # one tenant's share of them

# A task that holds its DAG run in flight: with one run at a time for
# alice, the first sleeps and every other DAG run's task waits queued.
SLOW = "import time\ndef f():\n    time.sleep(600)\n"
QUICK = "def f(x):\n    return x * 2\n"


def test_a_tenant_cannot_take_every_dag_slot_from_another(tmp_path):
    """At most 64 DAG runs are in flight per daemon, and any tenant's
    counted against all of them: alice, submitting 64 pipelines whose tasks
    wait behind her own one-run-at-a-time grant (well within her share of
    the run queue), had every later DAG run of bob's refused, 429 "too many
    DAG runs in flight", and his schedules' DAG runs did not start — for as
    long as her tasks cared to sleep. A tenant now holds at most half the
    slots (as it holds at most half the run queue): her 33rd is refused,
    and bob's pipeline runs."""
    d = Daemon(tmp_path / "d", config_extra="""
        server:
          max_concurrent_runs: 8
          max_concurrent_per_tenant: 1
        """)
    with d.serving(clean_exit=False):
        slow = {"pipeline": "tasks:\n  s: {file: s.py, function: f}\n", "files": {"s.py": SLOW},
                "no_cache": True}
        held, refused = [], []
        for _ in range(MAX_ACTIVE):
            st, b = d.call("POST", "/v1/dags", slow, token="alice")
            assert st in (202, 429), (st, b)
            (held.append(b["id"]) if st == 202 else refused.append(b["error"]["message"]))
        st, b = d.call("POST", "/v1/dags?wait=true&timeout=120",
                       {"pipeline": "tasks:\n  q: {file: q.py, function: f, args: [21]}\n",
                        "files": {"q.py": QUICK}}, token="bob")
        assert st == 200, (st, b)
        assert b["status"] == "succeeded", b
        assert len(held) == SHARE and len(refused) == MAX_ACTIVE - SHARE, (len(held), refused[:1])
        assert "this tenant's share" in refused[0], refused[0]
        # The refused DAG runs are hers, ended with the same words.
        st, mine = d.call("GET", "/v1/dags?status=failed&limit=100", token="alice")
        assert len(mine["dags"]) == MAX_ACTIVE - SHARE, mine
        assert all("this tenant's share" in (g["error"] or "") for g in mine["dags"]), mine["dags"][0]
        for i in held:
            d.call("DELETE", f"/v1/dags/{i}", token="alice")
        wait_for(lambda: all(d.call("GET", f"/v1/dags/{i}", token="alice")[1]["status"] == "cancelled"
                             for i in held), "alice's DAG runs cancelled", 120)
        # Her slots are hers again once her DAG runs ended.
        st, b = d.call("POST", "/v1/dags?wait=true&timeout=120",
                       {"pipeline": "tasks:\n  q: {file: q.py, function: f, args: [2]}\n",
                        "files": {"q.py": QUICK}}, token="alice")
        assert st == 200 and b["status"] == "succeeded", (st, json.dumps(b)[:2000])


FLAKY = """
import os, time
def handler(event, context):
    if not os.path.exists(event["switch"]):
        raise RuntimeError("not yet")
    time.sleep(600)
"""


def test_a_tenants_event_retries_cannot_fill_the_queue_against_another(tmp_path):
    """A failed Lambda Event invocation waits for its next try as a queued
    run (docs/api.md), but the queue's caps did not count it: alice could
    have any number of failed invocations waiting, far past her share of
    the queue (server.max_queued_per_tenant, 2 here), and when their tries
    came due — her function now slow — they all went back into the queue
    at once, past max_queued_runs (4 here): every run of bob's was refused
    429 "the queue is full" until hers had drained. A run waiting for its
    retry now counts against its tenant's share and the queue: her
    invocations past her share are refused at once (429), and bob's run
    runs."""
    switch = tmp_path / "switch"
    d = Daemon(tmp_path / "d", config_extra="""
        server:
          max_concurrent_runs: 2
          max_concurrent_per_tenant: 1
          max_queued_runs: 4
          max_queued_per_tenant: 2
          event_retry_delay_ms: 20000
        """)
    with d.serving(clean_exit=False):
        st, b = d.call("POST", "/v1/functions", {"name": "flaky", "source": FLAKY}, token="alice")
        assert st == 201, b
        held, refused = [], []
        for _ in range(8):
            st, h, body = d.request("POST", "/2015-03-31/functions/flaky/invocations", {"switch": str(switch)},
                                    token="alice", headers={"X-Amz-Invocation-Type": "Event"})
            if st == 429:
                refused.append(json.loads(body))
                break
            assert st == 202, (st, body)
            held.append(h["x-amzn-requestid"])
            # Its first try failed: it waits for its retry, in no slot.
            wait_for(lambda: (lambda hz: hz["running"] == 0 and hz["queued"] == 0)(
                d.call("GET", "/healthz", token=None)[1]), "the invocation's first try")
        switch.write_text("")
        # Her tries came due: one runs (her one slot), the others wait.
        wait_for(lambda: (lambda hz: hz["running"] == 1 and hz["queued"] == len(held) - 1)(
            d.call("GET", "/healthz", token=None)[1]), "alice's retries back in the queue", 120)
        st, b = d.run("def f():\n    return 'bob ran'\n", token="bob")
        assert st == 200 and b["result"] == "bob ran", (st, b, len(held))
        assert len(held) == 3 and refused, (held, refused)
        assert "this tenant's share of the queue is full" in refused[0]["error"]["message"], refused[0]
        for rid in held:
            d.call("DELETE", f"/v1/runs/{rid}", token="alice")
