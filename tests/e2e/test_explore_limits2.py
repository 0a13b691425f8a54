"""Limits, second pass: what a run in flight shows, what an operator's
config grants, and how a limit hit is spelled (docs/sandbox.md "Limits",
docs/operations.md, docs/api.md "The run object")."""
import pytest

from conftest import same, sandbox_args
from daemonlib import Daemon, sandbox_mode


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-limits2")
    with Daemon(root / "d", sandbox=sandbox_mode(root)).serving() as d:
        yield d


def test_a_started_run_does_not_show_the_queued_phase(daemon):
    """The 202 of POST /v1/runs (and of an invoke) said `"status":
    "running"` with `"phase": "queued"`: the daemon answers a run it starts
    at once as running, while the phase was the one a run is made with
    until the engine's first phase event. A client polling on the phase
    read "queued" for a run it was told runs. A running run shows a
    phase a running run has."""
    src = "def f():\n    import time\n    time.sleep(0.5)\n    return 1\n"
    st, _ = daemon.call("POST", "/v1/functions", {"name": "ph", "source": src, "filename": "ph.py"})
    assert st in (200, 201)
    seen = []
    for i in range(6):
        st, out = (daemon.call("POST", "/v1/runs", {"source": src}) if i % 2 == 0
                   else daemon.call("POST", "/v1/functions/ph/invoke", {}))
        assert st == 202, out
        seen.append((out["status"], out.get("phase")))
        st, got = daemon.call("GET", f"/v1/runs/{out['id']}")
        seen.append((got["status"], got.get("phase")))
        daemon.wait_status(out["id"], ["succeeded"])
    assert [s for s in seen if s[1] == "queued" and s[0] != "queued"] == [], seen
