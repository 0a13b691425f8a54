"""Datasets over the API with streamed bodies (issue 16, "Files out of a
run"): uploads go to a staging file as they arrive, capped by
data.max_bytes rather than server.max_body_bytes; directory datasets travel
as tar streams both ways, and a hostile tar is refused whole. Against a
real pysprinterd; the CLI's output and exit codes are the embedded ones."""
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import time

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists() or not CLI.exists(), reason="pysprinterd or pysprinter is not built")

SMALL_CAP = 1 << 20


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("stream")).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A daemon whose data.max_bytes is 1 MiB."""
    daemon = Daemon(tmp_path_factory.mktemp("capped"), config_extra=f"data:\n  max_bytes: {SMALL_CAP}\n").start()
    try:
        yield daemon
    finally:
        daemon.stop()


def remote(cli, daemon, tmp_path):
    cli.env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"], HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def run(*args, **kw):
        return cli(*args[:1], "--server", daemon.url, *args[1:], **kw)
    return run


def staging(daemon):
    """What the catalog's staging directory holds (uploads in flight)."""
    t = daemon.home / "data" / "tmp"
    return sorted(os.listdir(t)) if t.exists() else []


def datasets(daemon):
    st, body = daemon.call("GET", "/v1/data")
    assert st == 200, body
    return [x["name"] for x in body["datasets"]]


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def wait_for(cond, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_tree(root):
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(70000), "sub/deeper/c.txt": b"c" * 3,
             "sub/deeper/empty": b"", "z/y/x/w.txt": b"nested\n"}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "emptydir").mkdir()
    return files


def test_big_upload_is_streamed_not_held(cli, d, tmp_path):
    big = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(40):
            f.write(chunk)
    before = vm_hwm_kb(d.proc.pid)
    r = remote(cli, d, tmp_path)
    p = r("data", "put", "big", str(big), "--json", check=0)
    info = json.loads(p.stdout)
    assert info["size"] == 40 << 20 and info["files"] == 1
    after = vm_hwm_kb(d.proc.pid)
    # 40 MiB went through a daemon whose max_body_bytes is 12 MiB, and its
    # peak resident memory grew by far less than the upload.
    assert after - before < 16 * 1024, (before, after)
    r("data", "get", "big", "-o", str(tmp_path / "back.bin"), check=0)
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert staging(d) == []


def test_big_directory_download_is_streamed(cli, d, tmp_path):
    tree = tmp_path / "bigtree"
    (tree / "sub").mkdir(parents=True)
    for i in range(4):
        (tree / "sub" / f"part{i}").write_bytes(os.urandom(10 << 20))
    r = remote(cli, d, tmp_path)
    r("data", "put", "bigtree", str(tree), check=0)
    before = vm_hwm_kb(d.proc.pid)
    c = d.conn()
    c.request("GET", "/v1/data/bigtree/content?format=tar", headers={"Authorization": "Bearer " + TOKENS["alice"]})
    resp = c.getresponse()
    assert resp.status == 200
    total = 0
    while chunk := resp.read(1 << 16):
        total += len(chunk)
    c.close()
    assert total > 40 << 20
    after = vm_hwm_kb(d.proc.pid)
    assert after - before < 16 * 1024, (before, after)


def test_a_download_whose_tree_fails_midway_is_cut_at_once(d, tmp_path):
    """A file of the tree that shrinks while its tar is being sent (a disk
    error, an operator's hand): the client's download ends at once,
    visibly incomplete, rather than waiting for bytes that never come
    until read_timeout_s (30 s)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = os.urandom(32 << 20)
        ti = tarfile.TarInfo("shrinks")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    st, _, body = d.request("PUT", "/v1/data/shrinking", raw=buf.getvalue(),
                            headers={"Content-Type": "application/x-tar"})
    assert st in (200, 201), body
    (stored,) = [os.path.join(r, f) for r, _, fs in os.walk(d.home / "data") for f in fs if f == "shrinks"]
    c = d.conn(timeout=60)
    c.request("GET", "/v1/data/shrinking/content?format=tar", headers={"Authorization": "Bearer " + TOKENS["alice"]})
    resp = c.getresponse()
    assert resp.status == 200
    got = len(resp.read(1 << 16))
    # Mid-file: the socket's buffers hold a few MiB of the 32 at most.
    os.chmod(os.path.dirname(stored), 0o755)
    os.chmod(stored, 0o644)
    os.truncate(stored, 0)
    t0 = time.time()
    with pytest.raises(http.client.IncompleteRead):
        while chunk := resp.read(1 << 16):
            got += len(chunk)
    elapsed = time.time() - t0
    c.close()
    assert got < 32 << 20
    assert elapsed < 10, elapsed


def test_over_the_cap_is_413_and_leaves_nothing(cli, capped, tmp_path):
    r = remote(cli, capped, tmp_path)
    f = tmp_path / "two-mib"
    f.write_bytes(b"x" * (2 * SMALL_CAP))
    p = r("data", "put", "toobig", str(f))
    assert p.returncode != 0 and "cap" in p.stderr, p.stderr
    # Far over the cap: refused before the body is sent, so the answer is
    # read, not lost to the reset of a socket closed unread (each time).
    huge = tmp_path / "huge"
    with open(huge, "wb") as h:
        h.truncate(64 * SMALL_CAP)
    for _ in range(3):
        ph = r("data", "put", "huge", str(huge))
        assert (ph.returncode, ph.stderr) == (p.returncode, p.stderr.replace("2097152", str(64 * SMALL_CAP))), ph.stderr
    # Without a Content-Length (a directory's chunked tar): drained, 413.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(os.urandom(2 * SMALL_CAP))
    p2 = r("data", "put", "toobigdir", str(tree))
    assert p2.returncode == p.returncode and "cap" in p2.stderr, p2.stderr
    st, _, body = capped.request("PUT", "/v1/data/raw", raw=b"y" * (SMALL_CAP + 1),
                                 headers={"Content-Type": "application/octet-stream"})
    assert st == 413, body
    assert not {"toobig", "toobigdir", "raw"} & set(datasets(capped))
    wait_for(lambda: staging(capped) == [], "an empty staging directory")
    # Under the cap is fine.
    f.write_bytes(b"x" * (SMALL_CAP - 10))
    r("data", "put", "fits", str(f), check=0)


def close_wait_sockets(port):
    """The daemon's sockets on port whose client has hung up and that it has
    not closed yet (TCP state CLOSE_WAIT, 08 in /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [r for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == "08"]


def cut_short(port, target, content_type, announced, sent):
    """A request announcing `announced` bytes of body, of which the client
    sends `sent` and hangs up: its last bytes and its FIN arrive together."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"PUT {target} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {TOKENS['alice']}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {announced}\r\n\r\n").encode() + b"z" * sent)
    return s


def test_client_gone_mid_upload_leaves_nothing(d):
    # Several times: the hang-up used to be noticed only after
    # server.read_timeout_s (30 s) in 9 cases of 10 -- libmicrohttpd's
    # epoll mode had spent the FIN's event before its last short read
    # (daemon-http.c client_gone_check()).
    for i in range(3):
        s = cut_short(d.port, f"/v1/data/halfway{i}?filename=h.bin", "application/octet-stream", 20 << 20, 2 << 20)
        wait_for(lambda: any(n.endswith(".upload") for n in staging(d)), "the upload to be staged")
        s.close()
        t0 = time.monotonic()
        wait_for(lambda: staging(d) == [], "the staging file to be removed", timeout=60)
        assert time.monotonic() - t0 < 5, f"the hang-up was noticed only after {time.monotonic() - t0:.1f} s"
        wait_for(lambda: close_wait_sockets(d.port) == [], "the daemon to close the connection", timeout=5)
        assert f"halfway{i}" not in datasets(d)


def test_client_gone_mid_json_body_frees_its_connection(d):
    # A JSON body cut short holds no staging file, but held its connection
    # (a slot of server.max_connections_per_ip) for read_timeout_s.
    for _ in range(3):
        s = cut_short(d.port, "/v1/secrets/cut", "application/json", 4 << 20, 3 << 20)
        s.close()
        wait_for(lambda: close_wait_sockets(d.port) == [], "the daemon to close the connection", timeout=5)
    st, _ = d.call("GET", "/healthz")
    assert st == 200


def test_a_client_that_half_closes_after_its_body_gets_its_answer_and_the_end(d):
    # The whole body, then shutdown(SHUT_WR), then read to EOF (as `nc -N`
    # does): the answer comes, and the daemon closes its side at once, not
    # after read_timeout_s (30 s in 5 of 6 before: the FIN came while the
    # body was still being read, the same spent event as above).
    for i, size in enumerate([3 << 20, 200 << 10, 3 << 20]):
        s = cut_short(d.port, f"/v1/data/whole{i}?filename=w.bin", "application/octet-stream", size, size)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        t0, answer = time.monotonic(), b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            answer += piece
        s.close()
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert time.monotonic() - t0 < 5, f"the daemon closed the connection only after {time.monotonic() - t0:.1f} s"
        assert f"whole{i}" in datasets(d)


def test_bad_names_are_refused_before_the_body(d):
    # A 10 MiB announced body, of which the daemon reads none.
    for path, why in [("/v1/data/x?filename=..", b"plain file name"), ("/v1/data/-bad", b"is not a valid dataset name")]:
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall((f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                   f"Content-Type: application/octet-stream\r\nContent-Length: {10 << 20}\r\n\r\n").encode())
        s.settimeout(20)
        answer = b""
        while why not in answer:  # the answer may come in pieces; the server closes after it
            piece = s.recv(65536)
            if not piece:
                break
            answer += piece
        s.close()
        assert answer.startswith(b"HTTP/1.1 400") and why in answer, answer
    assert staging(d) == []


def test_directory_round_trip_through_the_daemon(cli, d, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    r = remote(cli, d, tmp_path)
    p = r("data", "put", "tree", str(src), check=0)
    assert p.stdout.startswith("tree: version 1 (")
    info = json.loads(r("data", "ls", "--json", check=0).stdout)
    assert [x["kind"] for x in info if x["name"] == "tree"] == ["dir"]
    r("data", "get", "tree", "-o", str(tmp_path / "back"), check=0)
    diff = subprocess.run(["diff", "-r", str(src), str(tmp_path / "back")], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert not [n for n in os.listdir(tmp_path) if ".pysprinter-" in n]
    # The same tree again is the same version; an older one by @V.
    assert "version 1 (unchanged content)" in r("data", "put", "tree", str(src), check=0).stdout
    (src / "a.txt").write_text("changed\n")
    r("data", "put", "tree", str(src), check=0)
    r("data", "get", "tree@1", "-o", str(tmp_path / "v1"), check=0)
    assert (tmp_path / "v1" / "a.txt").read_text() == "alpha\n"
    # The API: ?format=tar, or Accept: application/x-tar.
    st, hdrs, body = d.request("GET", "/v1/data/tree/content?format=tar")
    assert st == 200 and hdrs["content-type"] == "application/x-tar"
    names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
    assert "sub/deeper/c.txt" in names and "emptydir" in names
    st, hdrs, _ = d.request("GET", "/v1/data/tree/content", headers={"Accept": "application/x-tar"})
    assert st == 200 and hdrs["content-type"] == "application/x-tar"
    st, _, _ = d.request("GET", "/v1/data/tree/content")
    assert st == 409


def test_directory_put_and_get_print_the_same_on_both_paths(cli, d, tmp_path):
    src = tmp_path / "same"
    make_tree(src)
    r = remote(cli, d, tmp_path)
    remote_put = r("data", "put", "same", str(src))
    local_put = cli("data", "put", "same", str(src))
    assert (remote_put.returncode, remote_put.stdout) == (local_put.returncode, local_put.stdout)
    remote_get = r("data", "get", "same", "-o", str(tmp_path / "r"))
    local_get = cli("data", "get", "same", "-o", str(tmp_path / "l"))
    assert (remote_get.returncode, remote_get.stdout) == (local_get.returncode, local_get.stdout) == (0, "")
    diff = subprocess.run(["diff", "-r", str(tmp_path / "r"), str(tmp_path / "l")], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout
    # A symlink in the tree is refused before anything is sent, as embedded.
    (src / "link").symlink_to("/etc/passwd")
    rl, ll = r("data", "put", "same", str(src)), cli("data", "put", "same", str(src))
    assert rl.returncode == ll.returncode != 0 and "symbolic link" in rl.stderr and "symbolic link" in ll.stderr


def tar_of(members):
    """A tar from (TarInfo, bytes or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, data=b"", type=tarfile.REGTYPE, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.linkname = linkname
    ti.size = len(data) if type == tarfile.REGTYPE else 0
    return ti, (data if type == tarfile.REGTYPE else None)


HOSTILE = {
    "dotdot": [member("ok.txt", b"fine"), member("../escaped.txt", b"evil")],
    "nested-dotdot": [member("a/../../escaped.txt", b"evil")],
    "absolute": [member("/tmp/pysprinter-absolute.txt", b"evil")],
    "symlink-to-etc": [member("etc", type=tarfile.SYMTYPE, linkname="/etc"), member("etc/evil", b"x")],
    "relative-symlink": [member("up", type=tarfile.SYMTYPE, linkname="../../..")],
    "device": [member("null", type=tarfile.CHRTYPE)],
    "fifo": [member("pipe", type=tarfile.FIFOTYPE)],
    "hardlink-out": [member("pw", type=tarfile.LNKTYPE, linkname="/etc/passwd")],
    "hardlink-dotdot": [member("pw", type=tarfile.LNKTYPE, linkname="../../outside")],
    "not-a-tar": None,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tars_are_refused_and_leave_nothing(d, tmp_path, case):
    body = b"this is not a tar archive at all" * 40 if HOSTILE[case] is None else tar_of(HOSTILE[case])
    name = "hostile-" + case
    st, _, resp = d.request("PUT", f"/v1/data/{name}", raw=body, headers={"Content-Type": "application/x-tar"})
    assert st == 400, resp
    assert name not in datasets(d)
    wait_for(lambda: staging(d) == [], "an empty staging directory")
    data_root = d.home / "data"
    assert not list(data_root.rglob("escaped.txt")) and not (d.home / "escaped.txt").exists()
    assert not os.path.exists("/tmp/pysprinter-absolute.txt")


def test_more_files_than_the_cap_is_refused(d, tmp_path):
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for i in range(100_001):
            t.addfile(tarfile.TarInfo(f"f{i}"))
    with open(path, "rb") as f:
        st, _, resp = d.request("PUT", "/v1/data/many", raw=f.read(), headers={"Content-Type": "application/x-tar"})
    assert st == 400 and b"more than 100000" in resp, resp
    assert "many" not in datasets(d)
    wait_for(lambda: staging(d) == [], "an empty staging directory")


def test_a_directory_needs_o_over_the_api(cli, d, tmp_path):
    src = tmp_path / "t"
    make_tree(src)
    r = remote(cli, d, tmp_path)
    r("data", "put", "needs-o", str(src), check=0)
    p = r("data", "get", "needs-o")
    assert p.returncode == 2 and "-o DIR" in p.stderr, p.stderr
