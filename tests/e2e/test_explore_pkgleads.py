"""Package downloads (helper pkgleads), against real local servers on
127.0.0.1 and the real CLI and daemon:

- a wheel and its `.metadata` file are asked for as the file's bytes
  (`Accept-Encoding: identity`, as pip asks for package files): before,
  libcurl offered gzip, deflate, br and zstd, so a server or proxy that
  compresses on the fly sent a compressed representation, and the resume
  of a cut download asked for a Range at the offset of the *decoded*
  bytes, which the server applies to the compressed ones (Apache's
  mod_deflate does): the install failed;
- a locked wheel that comes with other bytes says that the *lock* pins
  the sha256 it expected (before: "the index says", while the index may
  well have said the other one)."""
import base64
import gzip
import hashlib
import http.server
import os
import re
import shutil
import threading

import pytest

from conftest import CLI, DAEMON
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")


def gzip_allowed(header):
    """RFC 9110: no Accept-Encoding means any coding is acceptable."""
    if header is None:
        return True
    for part in header.split(","):
        tok, _, q = part.strip().partition(";")
        if tok.strip().lower() in ("gzip", "*") and q.replace(" ", "") not in ("q=0", "q=0.0"):
            return True
    return False


class CompressingIndex:
    """A JSON simple index that gzips every answer a request allows (pages,
    `.metadata`, wheels), answers a Range on the bytes it sends (the
    compressed ones when it compresses, as mod_deflate does), and cuts the
    first transfer of the wheel half-way."""

    def __init__(self, wheel):
        self.ix = pkgindex.Index(mode="json")
        self.f = self.ix.add(wheel)
        self.seen = []  # (path, Accept-Encoding or None, Range or None)
        self.wheel_gets = 0

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def answer(self, body, ctype, partial_of=None, cut=None):
                ae = self.headers.get("Accept-Encoding")
                rng = self.headers.get("Range")
                outer.seen.append((self.path, ae, rng))
                coded = gzip_allowed(ae)
                rep = gzip.compress(body, mtime=0) if coded else body
                status, first = 200, 0
                if rng and partial_of:
                    m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
                    first = int(m.group(1))
                    if first >= len(rep):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(rep)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if coded:
                    self.send_header("Content-Encoding", "gzip")
                if partial_of:
                    self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{len(rep) - 1}/{len(rep)}")
                self.send_header("Content-Length", str(len(rep) - first))
                self.end_headers()
                data = rep[first:]
                if cut is not None:
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/simple/leaf/":
                    return self.answer(outer.ix.project_json("leaf"), "application/vnd.pypi.simple.v1+json")
                if path == f"/files/{outer.f.filename}.metadata":
                    return self.answer(outer.f.core_metadata(), "application/octet-stream")
                if path == f"/files/{outer.f.filename}":
                    outer.wheel_gets += 1
                    return self.answer(outer.f.path.read_bytes(), "application/octet-stream", partial_of=True,
                                       cut=True if outer.wheel_gets == 1 else None)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # the client hanging up on a cut
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_cut_wheel_download_resumes_from_a_server_that_would_compress(cli, home, tmp_path):
    # Incompressible bytes: a wheel of some size, whose gzip is as big.
    noise = base64.b64encode(os.urandom(48 * 1024)).decode()
    wheel = pkgindex.build_wheel(tmp_path / "w", "leaf", "1.0",
                                 files={"leaf/__init__.py": "V = 42\n", "leaf/noise.txt": noise})
    ix = CompressingIndex(wheel).start()
    try:
        p = cli("env", "prepare", "--index-url", ix.url, "leaf==1.0", check=None)
    finally:
        ix.stop()
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    store = home / "store" / pkgindex.sha256_file(wheel)
    assert (store / "leaf" / "noise.txt").read_text() == noise
    files = [s for s in ix.seen if s[0].startswith("/files/")]
    assert any(s[0].endswith(".metadata") for s in files), ix.seen
    for path, ae, _ in files:
        assert ae == "identity", (path, ae)
    # Cut once, then resumed where the file's bytes stopped (before: the
    # resume asked for the decoded offset in the compressed bytes, failed,
    # and the file came again from byte 0).
    wheel_gets = [rng for path, _, rng in files if path.endswith(".whl")]
    assert wheel_gets == [None, f"bytes={len(wheel.read_bytes()) // 2}-"], ix.seen


# ---- a lock's sha256 is named as the lock's -------------------------------------------


@pytest.mark.skipif(not DAEMON.exists(), reason="pysprinterd not built")
def test_a_locked_wheel_served_with_other_bytes_names_the_lock_as_the_source(tmp_path):
    """A deployed version installs its lock: the sha256 it expects is the
    lock's, pinned at the deploy. The message said "the index says X" with
    X the lock's sha256 (the index, now serving other bytes, may give
    another). It names the lock, as pip names the requirements file, and
    says what to do."""
    from daemonlib import Daemon
    from test_explore_pin2 import build, deploy, invoke, serve
    wheel = build(tmp_path, "w", "1.0")
    locked = pkgindex.sha256_file(wheel)
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\n")
    d.start()
    try:
        deploy(d)
        assert invoke(d)["result"] == "1.0"
        d.stop()
        for sub in ("store", "envs", "cache"):
            shutil.rmtree(d.home / sub, ignore_errors=True)
        d.start()
        bad = bytearray(wheel.read_bytes())
        bad[len(bad) // 2] ^= 0xff
        wheel.write_bytes(bytes(bad))
        r = invoke(d)
        assert r["status"] != "succeeded", r
        msg = r["error"]["message"]
        got = hashlib.sha256(bytes(bad)).hexdigest()
        assert f"sha256 mismatch: the lock says {locked}" in msg and got in msg, msg
        assert "the index says" not in msg, msg
    finally:
        d.stop()
        ix.stop()
