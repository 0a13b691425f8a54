"""A tenant's share of the queue in a cluster (docs/cluster.md "A tenant's
queued runs"): server.max_queued_per_tenant counts the tenant's runs queued
in the whole cluster, not those one gateway accepted. A real redis-server
(AOF on), two gateways and workers on loopback.

Before, each gateway counted only the runs it had accepted: alice, at her
share through gateway A, was accepted again through gateway B (and C, …),
queueing N times her share in the shared stream ahead of every other
tenant's runs."""
import time

from clusterlib import CLAIM_TIMEOUT_MS, SLEEPER, wait_until
from daemonlib import Daemon, sandbox_mode
from test_cluster import pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; a fixture)

# A gateway admits min(max_concurrent_per_tenant, max_concurrent_runs) +
# max_queued_per_tenant runs of one tenant waiting, as a single node with
# every slot free does: 1 + 2 here.
SHARE = 3
GATEWAY = "  max_concurrent_runs: 1\n  max_concurrent_per_tenant: 1\n  max_queued_per_tenant: 2\n"
MESSAGE = "run: this tenant's share of the queue is full (server.max_queued_per_tenant); retry later"


class Nodes:
    def __init__(self, tmp_path, redis):
        self.tmp_path, self.redis, self.mode, self.started = tmp_path, redis, sandbox_mode(tmp_path), []

    def start(self, name, role, server):
        d = Daemon(self.tmp_path / name, sandbox=self.mode, config_extra="server:\n" + server,
                   args=["--redis", self.redis.url, "--role", role, "--node-id", name,
                         "--claim-timeout", f"{CLAIM_TIMEOUT_MS}ms", "--drain-timeout", "0"])
        d.start()
        self.started.append(d)
        return d

    def stop(self):
        for d in self.started:
            if d.proc and d.proc.poll() is None:
                d.stop()


def worker(n, name, slots):
    return n.start(name, "worker", f"  max_concurrent_runs: {slots}\n  max_concurrent_per_tenant: {slots}\n")


def submit(gw, token="alice", seconds=0.2, tag="x", key=None):
    """(status, headers, body) of a submit that does not wait."""
    import json
    st, hdrs, body = gw.request("POST", "/v1/runs", {"source": SLEEPER, "kwargs": {"seconds": seconds, "tag": tag}},
                                token=token, headers={"Idempotency-Key": key} if key else None)
    return st, hdrs, json.loads(body) if body else None


def accepted(gw, **kw):
    st, _, b = submit(gw, **kw)
    assert st == 202, (st, b)
    return b["id"]


def refused(gw, **kw):
    st, hdrs, b = submit(gw, **kw)
    assert st == 429, (st, b)
    # The single node's answer for the tenant's share (docs/api.md).
    assert hdrs.get("retry-after") == "2", hdrs
    assert b["error"]["code"] == "too_many_requests" and b["error"]["message"] == MESSAGE, b


def queued(redis, tenant="alice"):
    return int(redis.cli("ZCARD", f"ps:queued:{tenant}") or 0)


def test_a_tenants_share_of_the_queue_counts_across_gateways(redis, tmp_path):
    """alice at her share through gateway A is refused through gateway B
    too (429, the single node's words, nothing written: no record, no
    entry, her Idempotency-Key not taken) while bob submits; once her runs
    started and ended she submits again, with that key."""
    n = Nodes(tmp_path, redis)
    try:
        ga = n.start("ga", "gateway", GATEWAY)
        gb = n.start("gb", "gateway", GATEWAY)
        # No worker yet: every run stays queued.
        ids = [accepted(ga, tag=f"a{i}") for i in range(SHARE)]
        refused(ga)
        before = (redis.cli("XLEN", "ps:runs"), redis.cli("ZCARD", "ps:idx:alice"), redis.cli("DBSIZE"))
        refused(gb)
        assert queued(redis) == SHARE
        refused(gb, key="k-after")
        assert redis.cli("EXISTS", "ps:idem:alice:k-after") == "0"
        assert (redis.cli("XLEN", "ps:runs"), redis.cli("ZCARD", "ps:idx:alice"), redis.cli("DBSIZE")) == before
        assert queued(redis) == SHARE
        # Another tenant is not held back by alice's backlog.
        bob = accepted(gb, token="bob", tag="bob")
        assert queued(redis, "bob") == 1

        worker(n, "w1", 4)
        for rid in ids:
            b = gb.wait_status(rid, {"succeeded"}, timeout=120)
            assert b["result"].startswith("a"), b
        gb.wait_status(bob, {"succeeded"}, token="bob", timeout=120)
        wait_until(lambda: queued(redis) == 0 and queued(redis, "bob") == 0, 30, "the queued sets emptied")
        assert redis.cli("EXISTS", "ps:queued:alice") == "0"  # nothing left behind
        # Room again, through either gateway; the key was never taken.
        rid = accepted(gb, key="k-after", tag="after")
        assert gb.wait_status(rid, {"succeeded"}, timeout=120)["result"] == "after"
        assert accepted(ga, tag="again")
    finally:
        n.stop()


def test_a_killed_gateway_or_worker_leaks_no_place_in_the_share(redis, tmp_path):
    """Runs leave alice's count wherever they stop being queued: started,
    cancelled (through another gateway after hers was killed -9), and a
    running run reclaimed from a worker killed -9 counts again only while
    it is queued. A place leaked all the same (a member whose record is
    gone, as an older node or an operator's DEL leaves) is dropped by the
    next submit that finds the share full, which is accepted."""
    n = Nodes(tmp_path, redis)
    try:
        ga = n.start("ga", "gateway", GATEWAY)
        gb = n.start("gb", "gateway", GATEWAY)
        w1 = worker(n, "w1", 1)
        long_run = accepted(ga, seconds=300, tag="long")
        gb.wait_status(long_run, {"running"}, timeout=120)
        assert redis.cli("HGET", f"ps:run:{long_run}", "node") == "w1"
        wait_until(lambda: queued(redis) == 0, 30, "the started run left the count")
        # w1 is full: these wait.
        waiting = [accepted(ga, seconds=0.2, tag=f"q{i}") for i in range(SHARE)]
        refused(gb)
        assert queued(redis) == SHARE

        ga.kill9()
        # Her runs are still queued in Redis: they still count.
        refused(gb)
        gb.cancel(waiting[0])
        assert queued(redis) == SHARE - 1
        waiting[0] = accepted(gb, seconds=0.2, tag="q-again")
        assert queued(redis) == SHARE

        # The worker dies with the long run; w2 takes it over (attempt 2)
        # and starts the waiting ones.
        w1.kill9()
        worker(n, "w2", 4)
        wait_until(lambda: redis.cli("HGET", f"ps:run:{long_run}", "attempt") == "2"
                   and redis.cli("HGET", f"ps:run:{long_run}", "status") == "running", 120,
                   "the long run reclaimed and started on w2")
        for rid in waiting:
            gb.wait_status(rid, {"succeeded"}, timeout=120)
        wait_until(lambda: queued(redis) == 0, 30, "nothing of alice's counted queued")
        gb.cancel(long_run)
        assert queued(redis) == 0

        # Leaked places: members whose record does not exist.
        now = int(time.time() * 1e6)
        redis.cli("ZADD", "ps:queued:alice", *[x for i in range(SHARE + 2) for x in (str(now), f"r-leaked-{i}")])
        assert queued(redis) == SHARE + 2
        rid = accepted(gb, tag="healed")
        assert gb.wait_status(rid, {"succeeded"}, timeout=120)["result"] == "healed"
        assert redis.cli("ZSCORE", "ps:queued:alice", "r-leaked-0") == ""
        wait_until(lambda: queued(redis) == 0, 30, "the leaked places dropped")
    finally:
        n.stop()
