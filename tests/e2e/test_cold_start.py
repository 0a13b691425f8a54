"""A fresh daemon's start-up and its first request (issue 15's cold env
figure, docs/performance.md "Cold env: the sandbox on the first run's path
(round 9, second part)"): the daemon listens only once its validating
worker is ready, so a request sent the moment /healthz first answers does
not wait for that worker's start."""
import re
import subprocess
import time

from daemonlib import DAEMON, Daemon, free_port, sandbox_mode


def test_the_validating_worker_is_ready_when_healthz_first_answers(tmp_path):
    sb = sandbox_mode(tmp_path)
    d = Daemon(tmp_path / "d", sandbox=sb)
    d.port = free_port()
    cmd = [str(DAEMON), "--listen", f"127.0.0.1:{d.port}", "--config", str(d.config), f"--sandbox={sb}"]
    d.logf = open(d.log, "ab")
    d.proc = subprocess.Popen(cmd, env=d.env(), stdout=d.logf, stderr=d.logf)
    try:
        # Poll with no pause: the first answer, as early as it comes.
        deadline = time.time() + 15
        while True:
            assert time.time() < deadline, d.log.read_text()
            assert d.proc.poll() is None, d.log.read_text()
            try:
                st, _ = d.call("GET", "/healthz", token=None)
            except OSError:
                continue
            if st == 200:
                break
        st, metrics = d.call("GET", "/metrics")
        assert st == 200
        m = re.search(r"^pysprinter_pool_workers (\d+)$", metrics, re.M)
        assert m, metrics[:2000]
        busy = re.search(r"^pysprinter_pool_workers_busy (\d+)$", metrics, re.M)
        # The validating (base) worker is in the pool, started, ready and
        # released by the start-up (busy while it boots).
        assert int(m.group(1)) >= 1 and int(busy.group(1)) == 0, metrics[:2000]
        # And the first request is served by it.
        st, body = d.run("def f():\n    return 7\n")
        assert st == 200 and body["status"] == "succeeded" and body["result"] == 7, body
    finally:
        d.stop()
