"""Packages under a running daemon and moved or corrupted indexes (helper
pkg4):

- after `env verify --repair`, the next run or invoke of an environment
  that named a repaired package uses the repaired files: the warm workers
  and instances that imported the damaged ones are retired (before, they
  served the damaged module until the daemon restarted);
- a deployed version whose lock got a moved index's URLs saved back keeps
  its warm instance (the URLs change no file);
- a `file://` index (a tree of directories, each page its index.html, as
  pip and uv read it) is read, and a wheel whose page gives another sha256
  is refused as an http index's is; its links are URLs, percent-encoded
  (`%2B` for a local version's `+`), as pip reads them, and so are the
  URLs a find-links directory's wheels get;
- a deployed version's wheel that the index serves corrupted is named as
  such, not as missing, and without the advice to deploy again."""
import pytest

from conftest import CLI, DAEMON, WORKER
from daemonlib import TOKENS, Daemon
from test_explore_envhold import writable
from test_explore_pin2 import REQS, SOURCE, build, serve

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


def Runner(d):
    from conftest import Runner as R
    return R(d.env(), d.root)


def invoke(d, name="pinned"):
    st, b = d.call("POST", f"/v1/functions/{name}/invoke?wait=true", {})
    assert st == 200, (st, b)
    return b


def damaged_daemon(tmp_path):
    """A daemon whose store holds tinypkg 1.0 with its __init__.py changed
    to V = 'garbage' (installed by the CLI into the daemon's home), and the
    index serving it."""
    wheel = build(tmp_path, "w", "1.0")
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\n")
    r = Runner(d)
    p = r("env", "prepare", "--index-url", ix.url, "tinypkg>=1.0", env={"PYSPRINTER_SERVER": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    (pkg,) = [x for x in (d.home / "store").iterdir() if (x / "tinypkg").is_dir()]
    writable(pkg)
    (pkg / "tinypkg" / "__init__.py").write_text("V = 'garbage'\n")
    d.start()
    return d, ix, pkg


def repair(d):
    p = Runner(d)("env", "verify", "--repair", env={"PYSPRINTER_SERVER": ""})
    assert p.stdout.splitlines()[-1] == "checked 1 package, 1 damaged, 1 removed", (p.stdout, p.stderr)


def test_an_invoke_after_a_repair_imports_the_repaired_package(tmp_path):
    d, ix, pkg = damaged_daemon(tmp_path)
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": SOURCE, "requirements": REQS})
        assert st == 201, b
        assert invoke(d)["result"] == "garbage"
        assert invoke(d)["result"] == "garbage"  # a warm instance now
        repair(d)
        r = invoke(d)
        assert r["status"] == "succeeded" and r["result"] == "1.0", r
        assert pkg.is_dir()
    finally:
        d.stop()
        ix.stop()


def test_an_adhoc_run_after_a_repair_imports_the_repaired_package(tmp_path):
    d, ix, pkg = damaged_daemon(tmp_path)
    try:
        r = Runner(d)
        f = r.write("f.py", "@requirements({'tinypkg': '>=1.0'})\ndef f():\n    import tinypkg\n    return tinypkg.V\n")
        for _ in range(2):  # the second from the env's warm worker
            p = r("run", "--server", d.url, f, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
            assert p.returncode == 0 and p.stdout.strip() == "garbage", (p.stdout, p.stderr)
        repair(d)
        p = r("run", "--server", d.url, f, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        assert p.returncode == 0 and p.stdout.strip() == "1.0", (p.stdout, p.stderr)
    finally:
        d.stop()
        ix.stop()


# ---- a lock saved with a moved index's URLs keeps the warm instance -------------------

def test_a_lock_saved_with_new_urls_keeps_the_warm_instance_in_a_cluster(tmp_path):
    """In a cluster an invoke carries its version's lock (from Redis): once
    a node saved the moved index's URLs there (fn_lock.lua; here written as
    that node would), the next invoke named another instance key and
    started cold, the warm one idle until its TTL."""
    import json
    from clusterlib import REDIS, Redis
    if not REDIS:
        pytest.skip("redis-server not installed")
    redis = Redis(tmp_path).start()
    ix = serve(build(tmp_path, "w", "1.0"))
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\n",
               args=["--redis", redis.url, "--role", "all", "--node-id", "n1"])
    d.start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": SOURCE, "requirements": REQS})
        assert st == 201, b
        assert invoke(d)["result"] == "1.0"
        r = invoke(d)
        assert r["result"] == "1.0" and r["timings"]["cold"] is False, r
        key = "ps:fn:alice:pinned"
        meta = json.loads(redis.cli("HGET", key, "meta:1"))
        lock = json.loads(meta["lock_json"])
        base = ix.url.replace("/simple/", "/")
        for p in lock["packages"]:
            assert p["url"].startswith(base), p
            p["url"] = "http://127.0.0.1:9/moved/" + p["url"][len(base):]
        meta["lock_json"] = json.dumps(lock, separators=(",", ":"))
        assert redis.cli("HSET", key, "meta:1", json.dumps(meta, separators=(",", ":"))) == "0"
        st, f = d.call("GET", "/v1/functions/pinned")
        assert st == 200 and f["lock"]["packages"][0]["url"].startswith("http://127.0.0.1:9/moved/"), f
        r = invoke(d)
        assert r["status"] == "succeeded" and r["result"] == "1.0", r
        assert r["timings"]["cold"] is False, r
        # Its saved URLs stay (the pin made before held the old ones).
        r = invoke(d)
        assert r["result"] == "1.0" and r["timings"]["cold"] is False, r
        st, f = d.call("GET", "/v1/functions/pinned")
        assert st == 200 and f["lock"]["packages"][0]["url"].startswith("http://127.0.0.1:9/moved/"), f
    finally:
        d.stop()
        ix.stop()
        redis.stop()


# ---- a file:// index ------------------------------------------------------------------

NOSANDBOX = "--sandbox=none"
F = """
@requirements({"tinypkg": ""})
def f():
    import tinypkg
    return tinypkg.V
"""


def file_index(ix, root):
    """pkgindex.Index ix's pages, wheels and .metadata files written under
    root as a static tree (simple/<project>/index.html, files/…); its
    file:// URL."""
    import shutil
    for name in ix.projects():
        page = root / "simple" / name
        page.mkdir(parents=True)
        (page / "index.html").write_bytes(ix.project_html(name))
    (root / "files").mkdir()
    for f in ix.files:
        shutil.copy(f.path, root / "files" / f.filename)
        if f.metadata:
            (root / "files" / (f.filename + ".metadata")).write_bytes(f.core_metadata())
    return f"file://{root}/simple/"


@pytest.mark.skipif(not WORKER.exists(), reason="pysprinter-worker not built")
def test_a_file_index_is_read_as_pip_reads_it(cli, tmp_path):
    import pkgindex
    ix = pkgindex.Index()
    ix.add(build(tmp_path, "w", "1.0"))
    url = file_index(ix, tmp_path / "ix")
    p = cli("run", NOSANDBOX, "--index-url", url, cli.write("f.py", F))
    assert p.returncode == 0 and p.stdout.strip() == "1.0", (p.stdout, p.stderr)


@pytest.mark.skipif(not WORKER.exists(), reason="pysprinter-worker not built")
def test_a_file_index_wheel_not_of_its_pages_sha256_is_refused_as_over_http(cli, tmp_path):
    import hashlib
    import pkgindex
    wheel = build(tmp_path, "w", "1.0")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    f = cli.write("f.py", F)
    said = {}
    for kind in ("http", "file"):
        ix = pkgindex.Index()
        ix.add(wheel, sha256=wrong)
        if kind == "http":
            ix.start()
            url = ix.url
        else:
            url = file_index(ix, tmp_path / "ix")
        try:
            p = cli("run", NOSANDBOX, "--index-url", url, f, env={"PYSPRINTER_HOME": str(tmp_path / kind)})
        finally:
            if kind == "http":
                ix.stop()
        assert p.returncode == 4, (kind, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        msg = p.stderr.strip().splitlines()[-1]
        assert f"{wheel.name}: sha256 mismatch: the index says {wrong}" in msg, (kind, msg)
        said[kind] = msg
    assert not [d for k in said for d in (tmp_path / k / "store").glob("*/tinypkg")], said


@pytest.mark.skipif(not WORKER.exists(), reason="pysprinter-worker not built")
def test_a_file_index_link_is_percent_decoded_as_pip_does(cli, tmp_path):
    """A page that writes tinypkg-1.0%2Blocal-….whl (quote(filename), as
    index generators do) named a file of that literal name: 'not a
    readable zip archive'."""
    import pkgindex
    import urllib.parse
    ix = pkgindex.Index()
    w = ix.add(build(tmp_path, "w", "1.0+local")).path
    url = file_index(ix, tmp_path / "ix")
    page = tmp_path / "ix" / "simple" / "tinypkg" / "index.html"
    page.write_text(page.read_text().replace(f"files/{w.name}", f"files/{urllib.parse.quote(w.name)}"))
    assert "%2B" in page.read_text()
    p = cli("run", NOSANDBOX, "--index-url", url, cli.write("f.py", F))
    assert p.returncode == 0 and p.stdout.strip() == "1.0+local", (p.stdout, p.stderr)


@pytest.mark.skipif(not WORKER.exists(), reason="pysprinter-worker not built")
def test_a_find_links_directory_with_a_percent_sign_in_its_path(cli, tmp_path):
    """Its wheels' file:// URLs (in the lock) are percent-encoded, so
    reading them back names the same files."""
    import json
    d = tmp_path / "wheels 100%20"
    d.mkdir()
    build(tmp_path, "wheels 100%20", "1.0")
    f = cli.write("f.py", F)
    p = cli("run", NOSANDBOX, "--index-url", "file:///nonexistent/simple/", "--find-links", d, f)
    assert p.returncode == 0 and p.stdout.strip() == "1.0", (p.stdout, p.stderr)
    p = cli("lock", "--json", "--index-url", "file:///nonexistent/simple/", "--find-links", d, f)
    assert p.returncode == 0, p.stderr
    (pkg,) = json.loads(p.stdout)["packages"]
    assert pkg["url"].endswith("/wheels%20100%2520/tinypkg-1.0-py3-none-any.whl"), pkg


# ---- a corrupted file on the index, for a deployed version's lock ---------------------

def test_a_versions_wheel_served_corrupted_is_named_as_such(tmp_path):
    """The store emptied, the index serves the locked file with a byte
    flipped: the invoke's error said the wheel 'is in neither the store nor
    the index' and to 'deploy it again' (which pins the same sha256 and
    fails the same way). It says the file fetched is not the one locked,
    with both hashes, and the next invoke, once the index serves the right
    bytes, runs."""
    import shutil
    from test_explore_pin2 import deploy
    wheel = build(tmp_path, "w", "1.0")
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
        good = wheel.read_bytes()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xff
        wheel.write_bytes(bytes(bad))
        r = invoke(d)
        assert r["status"] != "succeeded" and r["error"]["type"] == "DependencyError", r
        msg = r["error"]["message"]
        assert "tinypkg 1.0 (tinypkg-1.0-py3-none-any.whl)" in msg and "sha256 mismatch" in msg, msg
        assert "neither the store nor the index" not in msg and "deploy it again" not in msg, msg
        wheel.write_bytes(good)
        r = invoke(d)
        assert r["status"] == "succeeded" and r["result"] == "1.0", r
    finally:
        d.stop()
        ix.stop()
