"""A follower of a run's output (`logs -f --server`, `run --server`) that
loses its connection picks the stream up where it broke off: every output
event carries an SSE `id:` (how many bytes of the run's log it ends at) and
a reconnect sends `Last-Event-ID`, as an EventSource does. So the follower
prints what `pysprinter logs` prints once the run ended: nothing twice,
nothing missing, across a cut connection and across a daemon killed with
-9 and started again (whose new attempt's output is streamed too).
Real daemon, real worker, a real TCP proxy on loopback to cut connections."""
import json
import os
import socket
import subprocess
import threading

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon, wait_for
from loopback import LoopbackServer, relay

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

THREE = """
import sys, time
def main():
    for word in ("one", "two", "three"):
        sys.stdout.write(word + "\\n")  # one write each: one event each
        sys.stdout.flush()
        time.sleep(0.05)
"""

TICKS = """
import sys, time
def main(n: int = 30):
    for i in range(n):
        print(f"tick {i}", flush=True)
        if i % 5 == 0:
            print(f"note {i}", file=sys.stderr, flush=True)
        time.sleep(0.1)
    return n
"""

RESTARTED = """
import time
def main():
    print("first", flush=True)
    time.sleep(3)
    print("second", flush=True)
    return 5
"""


def events(raw):
    """[(event, id or None, data)] of an event stream's text."""
    out = []
    for block in raw.split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            out.append((fields["event"], fields.get("id"), fields.get("data")))
    return out


def cli_env(d, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    e.update(PYSPRINTER_TOKEN=TOKENS["alice"], NO_COLOR="1", PYSPRINTER_HOME=str(d.root / "cli-home"), **extra)
    return e


class CuttingProxy(LoopbackServer):
    """Forwards 127.0.0.1:port to the daemon; cut() closes every connection
    it carries (the client sees its stream end without an end event)."""

    def __init__(self, target_port):
        self.target = target_port
        self.lock = threading.Lock()
        self.socks = []
        super().__init__()

    def serve(self, c):
        s = socket.create_connection(("127.0.0.1", self.target))
        with self.lock:
            self.socks += [c, s]
        threading.Thread(target=relay, args=(s, c), daemon=True).start()
        relay(c, s)

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def close(self):
        self.stop()
        self.cut()


def test_every_output_event_has_an_id_and_last_event_id_resumes_after_it(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        st, run = d.run(THREE)
        assert st == 200 and run["status"] == "succeeded", run
        st, hdrs, raw = d.request("GET", f"/v1/runs/{run['id']}/logs?follow=1")
        assert st == 200
        evs = events(raw.decode())
        outputs = [e for e in evs if e[0] == "output"]
        assert [json.loads(data)["text"] for _, _, data in outputs] == ["one\n", "two\n", "three\n"]
        # The id is how many bytes of the log the event ends at.
        assert [i for _, i, _ in outputs] == ["4", "8", "14"]
        assert evs[-1][0] == "end"
        # A reconnect after the first event gets the rest, then the end.
        st, _, raw = d.request("GET", f"/v1/runs/{run['id']}/logs?follow=1", headers={"Last-Event-ID": "4"})
        evs = events(raw.decode())
        assert [json.loads(data)["text"] for e, _, data in evs if e == "output"] == ["two\n", "three\n"]
        assert evs[-1][0] == "end"
        # An id inside an event (a client of another server's numbering)
        # gets that event's rest; beyond the end, nothing but the end.
        st, _, raw = d.request("GET", f"/v1/runs/{run['id']}/logs?follow=1", headers={"Last-Event-ID": "10"})
        evs = events(raw.decode())
        assert [json.loads(data)["text"] for e, _, data in evs if e == "output"] == ["ree\n"]
        st, _, raw = d.request("GET", f"/v1/runs/{run['id']}/logs?follow=1", headers={"Last-Event-ID": "99"})
        assert [e for e, _, _ in events(raw.decode())] == ["end"]
        # Not a number: the whole stream, as without one.
        st, _, raw = d.request("GET", f"/v1/runs/{run['id']}/logs?follow=1", headers={"Last-Event-ID": "x"})
        assert st == 200 and len([e for e in events(raw.decode()) if e[0] == "output"]) == 3
    finally:
        d.stop()


def test_a_live_stream_resumed_with_last_event_id_skips_what_was_sent(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        st, run = d.run(TICKS, wait=False, kwargs={"n": 20})
        assert st == 202
        rid = run["id"]
        wait_for(lambda: "tick 3" in d.call("GET", f"/v1/runs/{rid}/logs")[1], "four ticks")
        st, _, raw = d.request("GET", f"/v1/runs/{rid}/logs?follow=1", headers={"Last-Event-ID": "7"})
        assert st == 200
        text = "".join(json.loads(data)["text"] for e, _, data in events(raw.decode()) if e == "output")
        st, whole = d.call("GET", f"/v1/runs/{rid}/logs")
        assert text == whole.encode()[7:].decode()
    finally:
        d.stop()


def test_logs_follow_through_a_cut_connection_prints_the_log_once(tmp_path):
    d = Daemon(tmp_path).start()
    proxy = CuttingProxy(d.port)
    try:
        st, run = d.run(TICKS, wait=False, kwargs={"n": 30})
        rid = run["id"]
        p = subprocess.Popen([str(CLI), "logs", "-f", "--server", f"http://127.0.0.1:{proxy.port}", rid],
                             env=cli_env(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        for _ in range(2):  # cut twice, a few lines apart
            for _ in range(4):
                seen.append(p.stdout.readline())
            proxy.cut()
        out, err = p.communicate(timeout=120)
        out = "".join(seen) + out
        assert p.returncode == 0, (out, err)
        st, whole = d.call("GET", f"/v1/runs/{rid}/logs")
        expected_out = "".join(f"tick {i}\n" for i in range(30))
        assert out == expected_out, out
        assert err == "".join(f"note {i}\n" for i in range(0, 30, 5)), err
    finally:
        proxy.close()
        d.stop()


def test_run_follows_through_a_cut_connection_printing_the_output_once(tmp_path):
    d = Daemon(tmp_path).start()
    proxy = CuttingProxy(d.port)
    src = tmp_path / "ticks.py"
    src.write_text(TICKS)
    try:
        p = subprocess.Popen([str(CLI), "run", "--server", f"http://127.0.0.1:{proxy.port}", str(src), "--n", "20"],
                             env=cli_env(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = [p.stdout.readline() for _ in range(5)]
        proxy.cut()
        out, err = p.communicate(timeout=120)
        out = "".join(seen) + out
        assert p.returncode == 0, (out, err)
        assert out == "".join(f"tick {i}\n" for i in range(20)) + "20\n", out
        assert err == "".join(f"note {i}\n" for i in range(0, 20, 5)), err
    finally:
        proxy.close()
        d.stop()


def test_followers_across_a_daemon_killed_and_started_again_print_the_whole_log(tmp_path):
    """The restarted daemon runs the run again (attempt 2): `logs -f` and the
    `run` that waited go on streaming, its new output included, and print
    what `logs` prints after the end; `logs` of the running attempt 2 already
    shows attempt 1's output, as the stored log does."""
    d = Daemon(tmp_path).start()
    src = tmp_path / "restarted.py"
    src.write_text(RESTARTED)
    env = cli_env(d)
    try:
        runner = subprocess.Popen([str(CLI), "run", "--server", d.url, str(src)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert runner.stdout.readline() == "first\n"
        st, runs = d.call("GET", "/v1/runs")
        [run] = runs["runs"]
        rid = run["id"]
        follower = subprocess.Popen([str(CLI), "logs", "-f", "--server", d.url, rid], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert follower.stdout.readline() == "first\n"
        d.kill9()
        d.start(port=d.port)
        b = d.wait_status(rid, ["running"])
        assert b["attempt"] == 2
        wait_for(lambda: d.call("GET", f"/v1/runs/{rid}/logs")[1].count("first") == 2, "attempt 2's output")
        st, live = d.call("GET", f"/v1/runs/{rid}/logs")
        assert live.startswith("first\n"), live
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, (out, err)
        st, whole = d.call("GET", f"/v1/runs/{rid}/logs")
        assert whole == "first\nfirst\nsecond\n", whole
        assert "first\n" + out == "first\nfirst\nsecond\n5\n", out
        assert "lost the connection" in err and rid in err, err
        fout, ferr = follower.communicate(timeout=120)
        assert follower.returncode == 0, (fout, ferr)
        assert "first\n" + fout == whole, fout
        assert "lost the connection" in ferr and rid in ferr, ferr
    finally:
        d.stop()


def test_a_cluster_log_keeps_write_times_and_resumes_after_last_event_id(tmp_path):
    """In a cluster the log is the run's Redis stream, read by any gateway:
    its output events now carry when the run wrote each piece (they had no
    "time": a replay showed the replay's times), and a reconnect with
    Last-Event-ID gets only the rest there too."""
    from test_cluster import Redis, REDIS  # a real redis-server with AOF on
    if not REDIS:
        pytest.skip("redis-server is not installed")
    redis = Redis(tmp_path)
    redis.start()
    nodes = []
    try:
        for name, role in (("g1", "gateway"), ("w1", "worker"), ("g2", "gateway")):
            d = Daemon(tmp_path / name, args=["--redis", redis.url, "--role", role, "--node-id", name])
            nodes.append(d.start())
        g1, _, g2 = nodes
        st, run = g1.run(THREE.replace("0.05", "0.3"), wait=False)
        assert st == 202, run
        rid = run["id"]
        wait_for(lambda: g1.call("GET", f"/v1/runs/{rid}")[1]["status"] == "succeeded", "the run's end")
        st, _, raw = g2.request("GET", f"/v1/runs/{rid}/logs?follow=1")
        outputs = [(i, json.loads(data)) for e, i, data in events(raw.decode()) if e == "output"]
        assert [(i, o["text"]) for i, o in outputs] == [("4", "one\n"), ("8", "two\n"), ("14", "three\n")]
        times = [o["time"] for _, o in outputs]
        assert times == sorted(times) and len(set(times)) == 3, times
        st, _, raw = g1.request("GET", f"/v1/runs/{rid}/logs?follow=1", headers={"Last-Event-ID": "8"})
        evs = events(raw.decode())
        assert [json.loads(data)["text"] for e, _, data in evs if e == "output"] == ["three\n"]
        assert evs[-1][0] == "end" and json.loads(evs[-1][2])["status"] == "succeeded"
    finally:
        for d in nodes:
            d.stop()
        redis.stop()


def test_the_dashboards_log_shows_each_line_once_after_its_stream_is_cut(tmp_path):
    """The run page follows the log with an EventSource, which reconnects by
    itself after a cut with Last-Event-ID: the daemon replayed the whole log
    then, and the page showed every line printed so far twice."""
    import re
    import types
    from uilib import start_browser, ui_login
    from uilib import wait_for as ui_wait
    d = Daemon(tmp_path).start()
    proxy = CuttingProxy(d.port)
    drv = start_browser()
    try:
        st, run = d.run(TICKS, wait=False, kwargs={"n": 40})
        assert st == 202
        via = types.SimpleNamespace(url=f"http://127.0.0.1:{proxy.port}")
        ui_login(drv, via, TOKENS["alice"], "alice")
        drv.get(f"{via.url}/ui/#/runs/{run['id']}")
        from selenium.webdriver.common.by import By
        # The text as the page shows it (innerText: WebDriver's .text
        # drops a line break that came as an event of its own).
        log = lambda: drv.execute_script("return document.getElementById('log').innerText")  # noqa: E731
        ui_wait(lambda: "tick 5" in log(), timeout=60, what="tick 5 on the page")
        proxy.cut()
        ui_wait(lambda: "ended" in drv.find_element(By.ID, "log-state").text, timeout=120, what="the stream's end")
        ticks = re.findall(r"tick \d+", log())
        assert ticks == [f"tick {i}" for i in range(40)], ticks
        notes = re.findall(r"note \d+", log())
        assert notes == [f"note {i}" for i in range(0, 40, 5)], notes
    finally:
        drv.quit()
        proxy.close()
        d.stop()


def test_the_python_clients_log_stream_resumes_through_a_cut_and_a_restart(tmp_path):
    """Client.logs(follow=True) picks its stream up as the CLI does: through
    a cut connection without a word, and through a daemon killed with -9
    and started again (it yields the new attempt's output too): what it
    yields is what GET /v1/runs/ID/logs holds at the end."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "python"))
    import pysprinter
    d = Daemon(tmp_path).start()
    proxy = CuttingProxy(d.port)
    try:
        st, run = d.run(TICKS, wait=False, kwargs={"n": 30})
        client = pysprinter.Client(f"http://127.0.0.1:{proxy.port}", token=TOKENS["alice"], timeout=60)
        got, cut = [], False
        for text in client.logs(run["id"]):
            got.append(text)
            if not cut and "tick 8" in "".join(got):
                proxy.cut()
                cut = True
        st, whole = d.call("GET", f"/v1/runs/{run['id']}/logs")
        assert "".join(got) == whole and whole.count("tick 29") == 1, "".join(got)

        st, run = d.run(RESTARTED, wait=False)
        client = pysprinter.Client(d.url, token=TOKENS["alice"], timeout=60)
        got, killed = [], False
        for text in client.logs(run["id"]):
            got.append(text)
            # The whole line: print() writes "first" and "\n" apart, and a
            # kill between them leaves the first attempt's log without its
            # newline (the second attempt's output follows it at once).
            if not killed and "first\n" in "".join(got):
                d.kill9()
                d.start(port=d.port)
                killed = True
        st, whole = d.call("GET", f"/v1/runs/{run['id']}/logs")
        assert whole == "first\nfirst\nsecond\n" and "".join(got) == whole, "".join(got)
    finally:
        proxy.close()
        d.stop()
