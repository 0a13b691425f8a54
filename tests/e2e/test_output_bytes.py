"""A run's output reaches the user byte for byte on every path: embedded,
through a daemon's live stream, replayed by `logs`, and through a cluster's
gateway. A JSON string holds only UTF-8, so the daemon's output events cut
a live run's pieces between characters and carry bytes that are not UTF-8
in base64 (docs/api.md, "GET /v1/runs/{id}/logs"). Before, a piece that
was not UTF-8 (a character cut by the 64 KiB piece size or by a run still
writing, or a stray byte) arrived as one U+FFFD: 600 KB of accented text
printed as 259 KB."""
import base64
import json
import os
import subprocess

import pytest

from clusterlib import REDIS, Redis
from conftest import CLI, DAEMON, WORKER, sandbox_args
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cli_parity import NUL_STEPS

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SRC = r'''
import sys, time

def f(lines: int = 300):
    out = sys.stdout.buffer
    for i in range(lines):
        out.write(("é" * 1001 + "\n").encode())
    out.write(b"\xff\xfe raw\n")
    out.flush()
    out.write(b"euro: \xe2\x82")   # a character cut by a flush and a pause
    out.flush()
    time.sleep(0.5)
    out.write(b"\xac\n")
    out.flush()
    sys.stderr.buffer.write(b"err \xc3\xa9 \xff\n")
    sys.stderr.flush()
    return "done"
'''

STDOUT = ("é" * 1001 + "\n").encode() * 300 + b"\xff\xfe raw\n" + b"euro: \xe2\x82\xac\n"
STDERR = b"err \xc3\xa9 \xff\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("bytes-daemon"), sandbox=sandbox_mode(tmp_path_factory.mktemp("probe")),
               args=["--no-auth"])
    with d.serving():
        yield d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    w = tmp_path_factory.mktemp("bytes-work")
    (w / "out.py").write_text(SRC)
    (w / "home").mkdir()
    return w


def cli(workdir, *args, server=None, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(workdir / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    pre = (["--server", server] if server else []) + (["--token", token] if token else [])
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, env=env, cwd=workdir, timeout=120)


def sandbox_notes_removed(err):
    return b"\n".join(l for l in err.split(b"\n") if b"--sandbox" not in l)


def last_run_id(workdir, server=None, token=None):
    return json.loads(cli(workdir, "ps", "--json", "-n", "1", server=server, token=token).stdout)[0]["id"]


def test_run_prints_the_same_bytes_embedded_and_through_a_daemon(daemon, workdir):
    local = cli(workdir, "run", *sandbox_args(), "out.py")
    remote = cli(workdir, "run", "out.py", server=daemon.url)
    assert local.returncode == remote.returncode == 0, (local.stderr[-500:], remote.stderr[-500:])
    assert local.stdout == STDOUT + b"done\n"
    assert remote.stdout == local.stdout, (len(remote.stdout), len(local.stdout))
    assert sandbox_notes_removed(remote.stderr) == sandbox_notes_removed(local.stderr) == STDERR


def test_logs_replays_the_same_bytes_on_both_paths(daemon, workdir):
    for server in (None, daemon.url):
        assert cli(workdir, "run", *([] if server else sandbox_args()), "out.py", server=server).returncode == 0
        r = cli(workdir, "logs", last_run_id(workdir, server), server=server)
        assert r.returncode == 0, r.stderr
        assert (r.stdout, r.stderr) == (STDOUT, STDERR), (server, len(r.stdout))


def read_events(resp):
    """(event, data dict) pairs of an SSE response, until it ends."""
    events, name, data = [], None, []
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


def test_live_stream_cuts_between_characters_and_carries_other_bytes_in_base64(daemon):
    st, b = daemon.run(SRC, wait=False)
    assert st == 202, b
    c = daemon.conn()
    c.request("GET", f"/v1/runs/{b['id']}/logs?follow=1", headers={"Authorization": "Bearer " + TOKENS["alice"]})
    events = read_events(c.getresponse())
    c.close()
    got = {"stdout": b"", "stderr": b""}
    for name, d in (e for e in events if e[0] == "output"):
        piece = base64.b64decode(d["base64"]) if "base64" in d else d["text"].encode()
        # Only a piece holding bytes that are not UTF-8 needs base64: the
        # character cut by the run's pause came whole, as text.
        if "base64" in d:
            assert b"\xff" in piece, piece
            # its text: the valid characters, U+FFFD for the other bytes
            assert d["text"].replace("\ufffd", "") == piece.decode(errors="ignore"), d
            assert d["text"].count("\ufffd") == piece.count(b"\xff") + piece.count(b"\xfe"), d
        else:
            assert "\ufffd" not in d["text"], d["text"][:80]
        got[d["stream"]] += piece
    assert got == {"stdout": STDOUT, "stderr": STDERR}
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded", events[-1]
    # the text/plain log is the same bytes, as written
    st, _, text = daemon.request("GET", f"/v1/runs/{b['id']}/logs")
    assert st == 200 and text == STDOUT + STDERR


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_a_cluster_gateway_relays_the_same_bytes(tmp_path, workdir):
    """The worker node relays output in pieces as they were read, through
    Redis: a character cut between two of them arrives whole."""
    redis = Redis(tmp_path).start()
    mode = sandbox_mode(tmp_path)
    started = []
    try:
        for name, role in (("gw", "gateway"), ("w", "worker")):
            d = Daemon(tmp_path / name, sandbox=mode, args=["--redis", redis.url, "--role", role, "--node-id", name])
            d.start()
            started.append(d)
        gw = started[0]
        r = cli(workdir, "run", "out.py", server=gw.url, token=TOKENS["alice"])
        assert r.returncode == 0, r.stderr[-800:]
        assert r.stdout == STDOUT + b"done\n", len(r.stdout)
        assert sandbox_notes_removed(r.stderr) == STDERR
        r = cli(workdir, "logs", last_run_id(workdir, gw.url, TOKENS["alice"]), server=gw.url, token=TOKENS["alice"])
        assert (r.returncode, r.stdout, r.stderr) == (0, STDOUT, STDERR), (r.returncode, len(r.stdout), r.stderr[-300:])
        # A NUL in an argument and in a result handed on crosses Redis too.
        (workdir / "nul_steps.py").write_text(NUL_STEPS)
        for args in (["chain", "nul_steps.py::one", "nul_steps.py::two"],
                     ["run", "nul_steps.py::two", "--json-args", '["a\\u0000b"]']):
            r = cli(workdir, *args, "--json", server=gw.url, token=TOKENS["alice"])
            assert (r.returncode, json.loads(r.stdout or "null")) == (0, [3, "'a\\x00b'", None]), (args, r.stderr)
    finally:
        for d in started:
            d.stop()
        redis.stop()


CUT = r"""
import sys, time
def f():
    out = sys.stdout.buffer
    out.write(b"caf\xc3"); out.flush()
    # stderr in between ends stdout's piece with its character cut short
    print("between", file=sys.stderr, flush=True)
    time.sleep(0.3)
    out.write(b"\xa9 ok\n\xff raw\n"); out.flush()
    return 1
"""


def test_the_python_client_joins_each_streams_bytes(daemon):
    """Client.logs(follow=True) decodes base64 pieces with one incremental
    decoder per stream: a character cut between two of a stream's pieces
    comes whole, and U+FFFD stands only for bytes that are not UTF-8."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "python"))
    import pysprinter.client
    c = pysprinter.client.Client(daemon.url, token=TOKENS["alice"])
    for src, want in ((SRC, (STDOUT + STDERR).decode("utf-8", "replace")), (CUT, None)):
        st, b = daemon.run(src, wait=False)
        assert st == 202, b
        followed = "".join(c.logs(b["id"], follow=True))
        if want is not None:
            assert followed == want
        else:
            assert followed.replace("between\n", "") == "café ok\n\ufffd raw\n", followed
