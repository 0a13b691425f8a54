"""End-to-end tests of the package manager (issue 3): a real local index on
127.0.0.1 (tests/e2e/pkgindex.py), the real CLI, no internet."""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import threading
import time
import zipfile

import pytest

from conftest import CLI, WORKER
import pkgindex

try:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover
    SpecifierSet = None

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

# Validation never runs user code, so `lock` can validate unsandboxed; the
# run tests say so explicitly.
NOSANDBOX = "--sandbox=none"

TINY = [
    # name, version, requires, kwargs
    ("alpha", "1.0", [], {}),
    ("alpha", "1.1", [], {}),
    ("alpha", "1.10", [], {}),
    ("alpha", "2.0a1", [], {}),
    ("alpha", "2.0b2", [], {}),
    ("alpha", "2.0rc1", [], {}),
    ("alpha", "2.0", [], {}),
    ("alpha", "2.0.post1", [], {}),
    ("alpha", "2.1.dev0", [], {}),
    ("alpha", "3.0+local.7", [], {}),
    ("onlypre", "1.0a1", [], {}),
    ("onlypre", "1.0b1", [], {}),
    ("epoch", "5.0", [], {}),
    ("epoch", "1!0.5", [], {}),
    # backtracking: app 3.0 wants lib<1 but the user wants lib>=1
    ("app", "3.0", ["lib<1"], {}),
    ("app", "2.0", ["lib>=1"], {}),
    ("lib", "0.9", [], {}),
    ("lib", "1.5", [], {}),
    # deeper: top -> mid -> leaf; mid 2.0 conflicts with the root's leaf>=1
    ("top", "1.0", ["mid"], {}),
    ("mid", "2.0", ["leaf<1"], {}),
    ("mid", "1.0", ["leaf>=1"], {}),
    ("leaf", "0.5", [], {}),
    ("leaf", "1.2", [], {}),
    # markers and extras
    ("feat", "1.0", ['extra1; extra == "x"', 'never; python_version < "3"',
                     'linuxonly; sys_platform == "linux"'], {"extras": ["x"]}),
    ("extra1", "1.0", [], {}),
    ("never", "1.0", [], {}),
    ("linuxonly", "1.0", [], {}),
    # yanked and requires-python
    ("yk", "1.0", [], {}),
    ("yk", "2.0", [], {"yanked": "broken"}),
    ("rp", "1.0", [], {}),
    ("rp", "2.0", [], {"requires_python": ">=3.12"}),
    # metadata-only requires-python (index does not say)
    ("rpm", "1.0", [], {}),
    ("rpm", "2.0", [], {"meta_requires_python": ">=4"}),
    # incompatible platform wheel only for 2.0
    ("plat", "1.0", [], {}),
    ("plat", "2.0", [], {"tag": "cp311-cp311-win_amd64"}),
]


def build_tiny(outdir):
    files = []
    for name, version, requires, kw in TINY:
        kw = dict(kw)
        yanked = kw.pop("yanked", False)
        rp = kw.pop("requires_python", None)
        mrp = kw.pop("meta_requires_python", None)
        w = pkgindex.build_wheel(outdir, name, version, requires=requires,
                                 requires_python=rp or mrp, **kw)
        files.append((w, dict(yanked=yanked, requires_python=rp)))
    return files


@pytest.fixture(scope="module")
def tiny_wheels(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(params=["both", "html", "json"])
def tiny_index(request, tiny_wheels, tmp_path):
    ix = pkgindex.Index(mode=request.param)
    for w, kw in tiny_wheels:
        ix.add(w, **kw)
    (tmp_path / "sd").mkdir()
    sd = tmp_path / "sd" / "sdonly-1.0.tar.gz"
    sd.write_bytes(b"not really a tarball")
    ix.add(sd, metadata=False)
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture(scope="module")
def real_wheels():
    ws = pkgindex.debian_wheels()
    names = {pkgindex.normalize(w.name.split("-")[0]) for w in ws}
    need = {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "six"}
    if not need <= names:
        pytest.skip(f"Debian python3 packages missing: {sorted(need - names)}")
    return ws


@pytest.fixture
def real_index(real_wheels):
    ix = pkgindex.Index()
    for w in real_wheels:
        ix.add(w)
    ix.start()
    yield ix
    ix.stop()


def reqfile(cli, reqs, body="return 1", name="f.py"):
    return cli.write(name, f"""
        @requirements({reqs!r})
        def f():
            {body}
        """)


def lock(cli, index, reqs, *extra, check=0):
    f = reqfile(cli, reqs)
    p = cli("lock", NOSANDBOX, "--json", "--index-url", index.url, *extra, f)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def install(cli, index, reqs, check=0):
    """Runs a file needing reqs: a run installs them (a lock does not)."""
    f = reqfile(cli, reqs)
    p = cli("run", NOSANDBOX, "--index-url", index.url, f, check=None)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def locked(cli, index, reqs, *extra):
    p = lock(cli, index, reqs, *extra)
    data = json.loads(p.stdout)
    return {pk["name"]: pk["version"] for pk in data["packages"]}


# ---- the "done when" -----------------------------------------------

def test_requests_runs_from_the_store(cli, real_index, home):
    version = pkgindex.debian_version("requests")
    f = cli.write("f.py", f"""
        @requirements({{'requests': '{version}', 'six': ''}})
        def f():
            import requests, six, urllib3
            return [requests.__version__, requests.__file__, six.__file__, urllib3.__file__]
        """)
    p = cli("run", NOSANDBOX, "--json", "--index-url", real_index.url, f)
    assert p.returncode == 0, (p.stdout, p.stderr)
    v, rfile, sfile, ufile = json.loads(p.stdout)
    assert v == version
    store = str(home / "store") + "/"
    for path in (rfile, sfile, ufile):
        assert path.startswith(store), path
    # Read-only store entries.
    rdir = pathlib.Path(rfile).parent
    assert not os.stat(rdir).st_mode & 0o222
    # Second run: the lock cache answers; the index is not asked again.
    before = len(real_index.requests)
    p = cli("run", NOSANDBOX, "--json", "--index-url", real_index.url, f)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert json.loads(p.stdout)[1] == rfile
    assert len(real_index.requests) == before, real_index.requests[before:]


def test_real_lock_contents_and_metadata_files(cli, real_index):
    got = locked(cli, real_index, {"requests": "", "six": ""})
    assert set(got) == {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "six"}
    # Resolution read PEP 658 .metadata files, not whole wheels, and a
    # lock installs nothing: not one wheel was downloaded (issue 15).
    meta = [r for r in real_index.requests if r.endswith(".metadata")]
    whl = [r for r in real_index.requests if r.endswith(".whl")]
    assert len(meta) >= 6
    assert whl == []


def test_run_after_lock_downloads_each_wheel_once(cli, real_index, home):
    locked(cli, real_index, {"requests": "", "six": ""})
    p = install(cli, real_index, {"requests": "", "six": ""})
    whl = [r for r in real_index.requests if r.endswith(".whl")]
    assert len(whl) == len(set(whl)) == 6, whl
    assert any((home / "store").iterdir())


def test_numpy_and_yaml_install(cli, real_index, real_wheels, home):
    names = {pkgindex.normalize(w.name.split("-")[0]) for w in real_wheels}
    if not {"numpy", "pyyaml"} <= names:
        pytest.skip("Debian numpy/PyYAML not installed")
    got = locked(cli, real_index, {"numpy": "", "PyYAML": ""})
    assert set(got) == {"numpy", "pyyaml"}
    f = cli.write("n.py", """
        @requirements({'numpy': '', 'PyYAML': ''})
        def f():
            import numpy, yaml
            return [int(numpy.arange(5).sum()), numpy.__file__, yaml.safe_load('a: 1')]
        """)
    p = cli("run", NOSANDBOX, "--json", "--index-url", real_index.url, f)
    assert p.returncode == 0, (p.stdout, p.stderr)
    total, nfile, y = json.loads(p.stdout)
    assert total == 10 and y == {"a": 1}
    assert nfile.startswith(str(home / "store"))


# ---- version selection, cross-checked against packaging ---------------------

SPECS = ["", ">=1,<2", "<2", ">=2.0a1", "==2.0rc1", "~=1.0", "~=2.0", "!=2.0.post1", ">2.0",
         "==1.*", ">=1.1,!=1.10", "<=2.0", "==2.0", "===2.0", ">=2.1.dev0", "<1.1", ">3"]


@pytest.mark.skipif(SpecifierSet is None, reason="python3-packaging not installed")
@pytest.mark.parametrize("spec", SPECS)
def test_selection_matches_packaging(cli, tiny_index, spec):
    versions = [Version(v) for n, v, _, _ in TINY if n == "alpha"]
    expected = max(SpecifierSet(spec).filter(versions), default=None)
    p = lock(cli, tiny_index, {"alpha": spec}, check=None)
    if expected is None:
        assert p.returncode == 4, (p.stdout, p.stderr)
        assert "alpha" in p.stderr
        return
    assert p.returncode == 0, (p.stdout, p.stderr)
    got = {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]}
    assert Version(got["alpha"]) == expected


def test_prerelease_when_only_match_and_epochs(cli, tiny_index):
    assert locked(cli, tiny_index, {"onlypre": ""})["onlypre"] == "1.0b1"
    assert locked(cli, tiny_index, {"epoch": ""})["epoch"] == "1!0.5"


def test_backtracking(cli, tiny_index):
    assert locked(cli, tiny_index, {"app": "", "lib": ">=1"}) == {"app": "2.0", "lib": "1.5"}
    got = locked(cli, tiny_index, {"top": "", "leaf": ">=1"})
    assert got == {"top": "1.0", "mid": "1.0", "leaf": "1.2"}


def test_markers_and_extras(cli, tiny_index):
    got = locked(cli, tiny_index, {"feat[x]": ""})
    assert set(got) == {"feat", "extra1", "linuxonly"}
    assert set(locked(cli, tiny_index, {"feat": ""})) == {"feat", "linuxonly"}


def test_yanked_requires_python_and_tags(cli, tiny_index):
    assert locked(cli, tiny_index, {"yk": ""})["yk"] == "1.0"
    assert locked(cli, tiny_index, {"yk": "2.0"})["yk"] == "2.0"
    assert locked(cli, tiny_index, {"rp": ""})["rp"] == "1.0"
    assert locked(cli, tiny_index, {"rpm": ""})["rpm"] == "1.0"
    assert locked(cli, tiny_index, {"plat": ""})["plat"] == "1.0"
    p = lock(cli, tiny_index, {"rp": ">=2"}, check=4)
    assert "3.12" in p.stderr


def test_conflict_is_explained(cli, tiny_index):
    p = lock(cli, tiny_index, {"app": "==3.0", "lib": ">=1"}, check=4)
    assert "lib" in p.stderr and "app 3.0" in p.stderr, p.stderr


def test_typo_suggests_close_names(cli, real_index):
    p = lock(cli, real_index, {"reqeusts": ""}, check=4)
    assert "reqeusts" in p.stderr and "'requests'" in p.stderr, p.stderr


def test_sdist_refused_with_reason(cli, tiny_index):
    p = lock(cli, tiny_index, {"sdonly": ""}, check=4)
    assert "sdonly" in p.stderr and "source distribution" in p.stderr, p.stderr


# ---- index configuration ------------------------------------------------------

def test_find_links_directory(cli, tmp_path, tiny_index):
    d = tmp_path / "wheels"
    pkgindex.build_wheel(d, "local-only", "4.2")
    got = locked(cli, tiny_index, {"local-only": "", "lib": ""}, "--find-links", d)
    assert got == {"local-only": "4.2", "lib": "1.5"}


def test_first_index_with_the_project_wins(cli, tmp_path, tiny_index):
    other = pkgindex.Index()
    other.add(pkgindex.build_wheel(tmp_path / "o", "lib", "99.0"))
    other.add(pkgindex.build_wheel(tmp_path / "o", "newpkg", "1.0"))
    other.start()
    try:
        env = {"PIP_EXTRA_INDEX_URL": other.url}
        f = reqfile(cli, {"lib": "", "newpkg": ""})
        p = cli("lock", NOSANDBOX, "--json", "--index-url", tiny_index.url, f, env=env, check=0)
        got = {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]}
        assert got == {"lib": "1.5", "newpkg": "1.0"}
    finally:
        other.stop()


def test_lock_with_a_server_resolves_there_and_prints_what_embedded_prints(cli, tiny_index, tmp_path):
    """`lock --server` resolved against this machine's index with a warning;
    it now asks the server (POST /v1/validate {"lock": true}), which
    resolves against its own index, and prints the same bytes as embedded.
    An index URL's password is hidden in the lock on both paths."""
    from daemonlib import Daemon
    url = tiny_index.url.replace("http://", "http://tok:s3cret@")
    d = Daemon(tmp_path / "d", args=["--no-auth"], config_extra=f"index:\n  url: {url}\n")
    d.start()
    try:
        f = reqfile(cli, {"app": "", "lib": ">=1"})
        for extra in ([], ["--json"], ["--json", "--no-cache"]):
            local = cli("lock", "--index-url", url, *extra, f, check=0)
            before = len(tiny_index.requests)
            remote = cli("lock", *extra, f, env={"PYSPRINTER_SERVER": d.url}, check=0)
            assert (remote.stdout, remote.stderr) == (local.stdout, local.stderr), (local, remote)
            if "--no-cache" in extra:  # the server asked the index itself
                assert len(tiny_index.requests) > before
        lk = json.loads(local.stdout)
        assert {p["name"] for p in lk["packages"]} >= {"app", "lib"}
        assert "s3cret" not in local.stdout and all("tok:****@" in p["url"] for p in lk["packages"]), lk
        # A run's lock on the server (GET /v1/runs/ID/lock) is the same lock, shown by the same rule.
        st, run = d.call("POST", "/v1/runs?wait=true", {"source": pathlib.Path(f).read_text()})
        assert st == 200 and run["status"] == "succeeded", run
        st, rl = d.call("GET", f"/v1/runs/{run['id']}/lock")
        assert st == 200 and rl["lock"] == lk, rl
        # A file without requirements: the empty lock, the same on both paths.
        none = cli.write("none.py", "def f():\n    return 1\n")
        for extra in ([], ["--json"]):
            local = cli("lock", *extra, none, check=0)
            remote = cli("lock", *extra, none, env={"PYSPRINTER_SERVER": d.url}, check=0)
            assert (remote.stdout, remote.stderr) == (local.stdout, local.stderr), (local, remote)
        assert json.loads(local.stdout) == {"version": 1, "requirements": [], "packages": []}, local.stdout
        # What the server ignores is said; a requirement it cannot resolve is exit 4 on both paths.
        r = cli("lock", "--index-url", url, f, env={"PYSPRINTER_SERVER": d.url}, check=0)
        assert "--index-url is the server's setting" in r.stderr, r.stderr
        bad = reqfile(cli, {"nosuchpkg": ""})
        local = cli("lock", "--index-url", url, bad, check=4)
        remote = cli("lock", bad, env={"PYSPRINTER_SERVER": d.url}, check=4)
        assert remote.stderr == local.stderr and "nosuchpkg" in local.stderr, (local.stderr, remote.stderr)
    finally:
        d.stop()


def test_pip_index_url_from_environment(cli, tiny_index):
    f = reqfile(cli, {"lib": "<1"})
    p = cli("lock", NOSANDBOX, "--json", f, env={"PIP_INDEX_URL": tiny_index.url}, check=0)
    assert json.loads(p.stdout)["packages"][0]["version"] == "0.9"


def test_retries_then_clear_http_errors(cli, tiny_index):
    tiny_index.fail_next("/simple/lib/", 503, count=2)
    assert locked(cli, tiny_index, {"lib": ""})["lib"] == "1.5"
    tiny_index.fail_next("/simple/leaf/", 403, count=100)
    p = lock(cli, tiny_index, {"leaf": ""}, check=4)
    assert "HTTP 403" in p.stderr and "/simple/leaf/" in p.stderr, p.stderr


def test_unreachable_index_names_url(cli):
    f = reqfile(cli, {"lib": ""})
    p = cli("lock", NOSANDBOX, "--index-url", "http://127.0.0.1:9/simple/", f, check=4)
    assert "127.0.0.1:9" in p.stderr, p.stderr


def test_lock_cache_costs_no_index_request(cli, tiny_index, home):
    locked(cli, tiny_index, {"app": "", "lib": ">=1"})
    n = len(tiny_index.requests)
    assert locked(cli, tiny_index, {"lib": ">=1", "app": ""}) == {"app": "2.0", "lib": "1.5"}
    assert len(tiny_index.requests) == n
    assert len(list((home / "envs").glob("*.json"))) == 1


# ---- hostile wheels -------------------------------------------------------------

def _zi(name, mode=0o644 | stat.S_IFREG):
    zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    zi.external_attr = mode << 16
    return zi


def _hostile(tmp_path, kind):
    d = tmp_path / kind
    if kind == "traversal":
        return pkgindex.build_wheel(d, "evil", "1.0", extra_entries=[(_zi("../../evil-escaped.txt"), "x")]), {}
    if kind == "absolute":
        return pkgindex.build_wheel(d, "evil", "1.0", extra_entries=[(_zi("/tmp/pysprinter-evil-abs.txt"), "x")]), {}
    if kind == "symlink":
        return pkgindex.build_wheel(d, "evil", "1.0", extra_entries=[(_zi("link", 0o777 | stat.S_IFLNK), "/etc/passwd")]), {}
    if kind == "device":
        return pkgindex.build_wheel(d, "evil", "1.0", extra_entries=[(_zi("dev", 0o644 | stat.S_IFCHR), "")]), {}
    if kind == "zipbomb":
        return pkgindex.build_wheel(d, "evil", "1.0", files={"evil.py": "", "bomb.bin": b"\0" * (100 << 20)}), {}
    if kind == "record":
        def tamper(rows):
            return [(p, "sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" if p == "evil.py" else h, s)
                    for p, h, s in rows]
        return pkgindex.build_wheel(d, "evil", "1.0", record_tamper=tamper), {}
    if kind == "unlisted":
        return pkgindex.build_wheel(d, "evil", "1.0", extra_entries=[(_zi("evil/extra.py"), "x")]), {}
    if kind == "sha256":
        return pkgindex.build_wheel(d, "evil", "1.0"), {"sha256": "0" * 64}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,needle", [
    ("traversal", "../../evil-escaped.txt"), ("absolute", "/tmp/pysprinter-evil-abs.txt"),
    ("symlink", "link"), ("device", "dev"), ("zipbomb", "bomb.bin"), ("record", "evil.py"),
    ("unlisted", "evil/extra.py"), ("sha256", "sha256"),
])
def test_hostile_wheel_rejected(cli, tmp_path, home, kind, needle):
    w, kw = _hostile(tmp_path, kind)
    ix = pkgindex.Index()
    ix.add(w, **kw)
    ix.start()
    try:
        p = install(cli, ix, {"evil": ""}, check=4)
    finally:
        ix.stop()
    assert w.name in p.stderr or kind == "sha256", p.stderr
    assert needle in p.stderr, p.stderr
    store = home / "store"
    assert not store.exists() or not [x for x in store.iterdir()], list(store.iterdir())
    assert not (home / "evil-escaped.txt").exists()
    assert not pathlib.Path("/tmp/pysprinter-evil-abs.txt").exists()


# ---- environments ------------------------------------------------------------------

def test_env_ls_and_prune(cli, tiny_index, home):
    install(cli, tiny_index, {"lib": ""})
    install(cli, tiny_index, {"leaf": ""})
    p = cli("env", "ls", "--json", check=0)
    envs = json.loads(p.stdout)
    assert len(envs) == 2 and all(e["size_bytes"] > 0 and not e["in_use"] for e in envs)
    assert sorted(r for e in envs for r in e["requirements"]) == ["leaf", "lib"]
    p = cli("env", "prune", check=0)
    assert "removed 2 environments" in p.stdout
    assert json.loads(cli("env", "ls", "--json", check=0).stdout) == []
    assert [x for x in (home / "store").iterdir() if not x.name.startswith(".")] == []
    # A pruned environment comes back on next use.
    assert locked(cli, tiny_index, {"lib": ""}) == {"lib": "1.5"}
    install(cli, tiny_index, {"lib": ""})
    assert [x for x in (home / "store").iterdir() if not x.name.startswith(".")]


# ---- wheels that claim to be another project (issue 10, item 13) ---------------

def _install_one(cli, tmp_path, home, wheel, req):
    ix = pkgindex.Index()
    ix.add(wheel)
    ix.start()
    try:
        p = install(cli, ix, {req: ""}, check=4)
    finally:
        ix.stop()
    store = home / "store"
    assert not store.exists() or not [x for x in store.iterdir() if not x.name.startswith(".")], \
        list(store.iterdir())
    return p


def test_wheel_with_another_projects_dist_info_refused(cli, tmp_path, home):
    """e_otherdist-1.0-….whl holding requests-1.0.dist-info and requests/
    would install a `requests` package that shadows the real one (pip
    refuses: the .dist-info directory must be the file name's project)."""
    w = pkgindex.build_wheel(tmp_path / "w", "e_otherdist", "1.0", distinfo="requests-1.0.dist-info",
                             files={"requests/__init__.py": "HIJACKED = True\n"},
                             metadata=pkgindex.metadata_text("e_otherdist", "1.0"))
    assert w.name == "e_otherdist-1.0-py3-none-any.whl"
    p = _install_one(cli, tmp_path, home, w, "e_otherdist")
    assert w.name in p.stderr and "requests-1.0.dist-info" in p.stderr, p.stderr
    assert "e-otherdist" in p.stderr or "e_otherdist" in p.stderr


def test_wheel_metadata_names_another_project_refused(cli, tmp_path, home):
    w = pkgindex.build_wheel(tmp_path / "w", "e_othermeta", "1.0",
                             metadata=pkgindex.metadata_text("requests", "1.0"))
    p = _install_one(cli, tmp_path, home, w, "e_othermeta")
    assert "dependency resolution failed" not in p.stderr, p.stderr
    assert w.name in p.stderr and "metadata names a different project (requests)" in p.stderr, p.stderr


def test_a_dist_info_smuggled_under_data_purelib_is_refused(cli, tmp_path, home):
    """NAME.data/purelib/ installs into the root: a wheel carrying
    evil-1.0.data/purelib/zeta-9.9.dist-info/METADATA landed a second
    .dist-info beside its own, and importlib.metadata said zeta 9.9 (the
    check looked at the archive path, not where it lands)."""
    w = pkgindex.build_wheel(tmp_path / "w", "evil_data", "1.0", files={
        "evil_data.py": "X = 1\n",
        "evil_data-1.0.data/purelib/zeta-9.9.dist-info/METADATA": "Metadata-Version: 2.1\nName: zeta\nVersion: 9.9\n",
    })
    p = _install_one(cli, tmp_path, home, w, "evil_data")
    assert w.name in p.stderr and "zeta-9.9.dist-info" in p.stderr, p.stderr
    assert "second .dist-info directory" in p.stderr or "is not the project evil_data" in p.stderr, p.stderr


@pytest.mark.parametrize("where", ["wheel", "index"])
def test_a_wheel_whose_metadata_gives_another_version_is_refused(cli, tmp_path, home, where):
    """vmis-1.0-….whl whose METADATA says 9.9 was locked as 1.0 and ran as
    9.9 (importlib.metadata); pip refuses it ("inconsistent version").
    With PEP 658 metadata (index) the resolver reads it; without (wheel),
    the unpack does."""
    w = pkgindex.build_wheel(tmp_path / "w", "vmis", "1.0", metadata=pkgindex.metadata_text("vmis", "9.9"))
    ix = pkgindex.Index()
    ix.add(w, metadata=where == "index")
    ix.start()
    try:
        p = install(cli, ix, {"vmis": ""}, check=4)
    finally:
        ix.stop()
    assert "metadata gives version 9.9, the file name 1.0" in p.stderr, p.stderr
    store = home / "store"
    assert not store.exists() or not [x for x in store.iterdir() if not x.name.startswith(".")]


def test_wheel_with_too_many_entries_refused_before_extracting(cli, tmp_path, home):
    """The entry cap is read from the zip's central directory: 100,001
    entries are refused before any is unpacked (it used to take 17 s of
    unpacking). Checked by what the CLI creates (strace), not by a clock:
    a timed bound failed on a loaded machine."""
    n = 100_001
    d = tmp_path / "many"
    # One real wheel, then as many empty stored entries as it takes.
    w = pkgindex.build_wheel(d, "manyfiles", "1.0", compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(w, "a", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(_zi(f"manyfiles_data/f{i}"), b"")
    trace = tmp_path / "trace"
    if shutil.which("strace"):
        cli.prefix = ["strace", "-f", "-qq", "-e", "trace=openat,mkdir,mkdirat", "-o", str(trace)]
    p = _install_one(cli, tmp_path, home, w, "manyfiles")
    assert w.name in p.stderr and "more than 100000 entries" in p.stderr, p.stderr
    if trace.exists():
        made = [line for line in trace.read_text().splitlines() if "manyfiles_data" in line]
        assert not made, made[:5]


# ---- streamed downloads, parallel unpack, concurrent installers (issue 15 (d)) --

def _big_wheel(outdir, name="big", version="1.0"):
    """A wheel of several MiB (past the size where its unpack is parallel),
    incompressible, so its download takes many write callbacks."""
    files = {f"{name}/__init__.py": "X = 1\n"}
    for i in range(6):
        files[f"{name}/blob{i}.bin"] = os.urandom(2 << 20)
    return pkgindex.build_wheel(outdir, name, version, files=files)


def _prepare(env, index, *reqs):
    return subprocess.Popen([str(CLI), "env", "prepare", "--index-url", index.url, *reqs], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _nothing_installed(home, kept_part=None):
    """No store dir, no env, nothing in cache/wheels but, when kept_part
    names a wheel file, the bytes of its cut download (kept for the next
    install to resume: test_explore_resume.py)."""
    store = home / "store"
    assert not store.exists() or not list(store.iterdir()), list(store.iterdir())
    wheels = home / "cache" / "wheels"
    left = sorted(p.name for p in wheels.iterdir()) if wheels.exists() else []
    if kept_part:
        part = f"{pkgindex.sha256_file(kept_part)}.whl.part"
        assert part in left and (wheels / part).stat().st_size < kept_part.stat().st_size, left
        left = [n for n in left if n not in (part, part + ".ifrange")]
    assert not left, left
    envs = home / "envs"
    assert not envs.exists() or not list(envs.iterdir()), list(envs.iterdir())


def test_hash_mismatch_in_a_streamed_download_installs_nothing(cli, tmp_path, home):
    w = _big_wheel(tmp_path / "a")
    other = pkgindex.sha256_file(_big_wheel(tmp_path / "b"))
    ix = pkgindex.Index()
    ix.add(w, sha256=other)       # the index vouches for other bytes
    ix.start()
    try:
        p = cli("env", "prepare", "--index-url", ix.url, "big")
    finally:
        ix.stop()
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "sha256 mismatch" in p.stderr and other in p.stderr, p.stderr
    assert pkgindex.sha256_file(w) in p.stderr, p.stderr
    _nothing_installed(home)


def test_wheel_cut_mid_download_is_refused_and_leaves_nothing(cli, tmp_path, home):
    w = _big_wheel(tmp_path)
    ix = pkgindex.Index()
    ix.add(w)
    ix.truncate[f"/files/{w.name}"] = w.stat().st_size // 2
    ix.start()
    try:
        p = cli("env", "prepare", "--index-url", ix.url, "big")
    finally:
        ix.stop()
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert w.name in p.stderr or f"/files/{w.name}" in p.stderr, p.stderr
    assert "partial" in p.stderr.lower(), p.stderr
    # Retried, then given up: every attempt asked for the file again.
    assert ix.requests.count(f"/files/{w.name}") >= 2, ix.requests
    _nothing_installed(home, kept_part=w)


def _blocked_on_flock(pid):
    """True when pid waits for a flock (a '->' line of /proc/locks)."""
    for line in pathlib.Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) > 5 and f[1] == "->" and f[2] == "FLOCK" and f[5] == str(pid):
            return True
    return False


def test_concurrent_installs_of_one_env_download_once(env, tmp_path, home):
    w = _big_wheel(tmp_path)
    ix = pkgindex.Index()
    ix.add(w)
    path = f"/files/{w.name}"
    gate = ix.hold[path] = threading.Event()
    ix.start()
    try:
        a = _prepare(env, ix, "big")
        deadline = time.monotonic() + 60
        while path not in ix.requests:          # a is downloading (held)
            assert a.poll() is None and time.monotonic() < deadline, a.communicate()
            time.sleep(0.01)
        b = _prepare(env, ix, "big")
        while not _blocked_on_flock(b.pid):     # b waits for a's install
            assert b.poll() is None and time.monotonic() < deadline, b.communicate()
            time.sleep(0.01)
        gate.set()
        out_a, err_a = a.communicate(timeout=120)
        out_b, err_b = b.communicate(timeout=120)
    finally:
        gate.set()
        ix.stop()
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert out_a == out_b and out_a.strip(), (out_a, out_b)
    assert ix.requests.count(path) == 1, ix.requests   # b reused a's install
    store_dir = pathlib.Path(out_a.split()[0])
    assert (store_dir / "big" / "blob5.bin").stat().st_size == 2 << 20


@pytest.mark.parametrize("kind", ["record", "duplicate", "traversal"])
def test_hostile_big_wheel_unpacked_by_threads_leaves_nothing(cli, tmp_path, home, kind):
    """The same refusals when a wheel is big enough to be inflated by
    several threads: nothing in the store, no env."""
    files = {"big/__init__.py": "X = 1\n"}
    for i in range(6):
        files[f"big/blob{i}.bin"] = os.urandom(2 << 20)
    kw = {}
    if kind == "record":
        kw["record_tamper"] = lambda rows: [(p, "sha256=" + "A" * 43 if p == "big/blob4.bin" else h, s)
                                            for p, h, s in rows]
    elif kind == "duplicate":
        kw["extra_entries"] = [(_zi("big/blob2.bin"), os.urandom(1 << 20))]
    else:
        kw["extra_entries"] = [(_zi("../../evil-escaped.txt"), "x")]
    w = pkgindex.build_wheel(tmp_path, "big", "1.0", files=files, **kw)
    assert w.stat().st_size > 8 << 20
    ix = pkgindex.Index()
    ix.add(w)
    ix.start()
    try:
        p = cli("env", "prepare", "--index-url", ix.url, "big")
    finally:
        ix.stop()
    assert p.returncode == 4, (p.returncode, p.stderr)
    needle = {"record": "big/blob4.bin", "duplicate": "big/blob2.bin", "traversal": "../../evil-escaped.txt"}[kind]
    assert w.name in p.stderr and needle in p.stderr, p.stderr
    _nothing_installed(home)
    assert not (home / "evil-escaped.txt").exists()


class _PageIndex:
    """A one-project simple index answering one fixed page (JSON or HTML):
    what a hostile or broken index could say."""

    def __init__(self, project, body, content_type, files=()):
        import http.server
        import threading
        page = body.encode()
        served = {f"/files/{pathlib.Path(f).name}": pathlib.Path(f).read_bytes() for f in files}

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.rstrip("/") == f"/simple/{project}":
                    data, ctype = page, content_type
                elif self.path in served:
                    data, ctype = served[self.path], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("form", ["json", "html"])
def test_a_remote_page_cannot_point_at_this_hosts_files(cli, tmp_path, form):
    """An http(s) page linking file:///etc/passwd had the resolver open a
    host path ("wheel /etc/passwd: not a readable zip archive"); with a
    matching hash, a local file would have been installed as the wheel."""
    name = "pa-2.0-py3-none-any.whl"
    if form == "json":
        body = json.dumps({"meta": {"api-version": "1.0"}, "name": "pa",
                           "files": [{"filename": name, "url": "file:///etc/passwd", "hashes": {}}]})
        ctype = "application/vnd.pypi.simple.v1+json"
    else:
        body = f'<html><body><a href="file:///etc/passwd#sha256=00">{name}</a></body></html>'
        ctype = "text/html"
    ix = _PageIndex("pa", body, ctype)
    try:
        p = install(cli, ix, {"pa": ""}, check=4)
    finally:
        ix.stop()
    assert "/etc/passwd" not in p.stderr, p.stderr
    assert "pa" in p.stderr, p.stderr


@pytest.mark.parametrize("form", ["json", "html"])
def test_a_page_of_a_newer_major_api_version_is_refused(cli, tmp_path, form):
    """PEP 629: a client must fail on a major version it does not know
    (a 2.0 page may mean anything); a newer minor is read. The HTML form's
    <meta name="pypi:repository-version"> was not read (round 34)."""
    w = pkgindex.build_wheel(tmp_path / "w", "pv", "1.0")
    for version, code in (("2.0", 4), ("1.9", 0)):
        if form == "json":
            body = json.dumps({"meta": {"api-version": version}, "name": "pv",
                               "files": [{"filename": w.name, "url": f"/files/{w.name}", "hashes": {}}]})
            ctype = "application/vnd.pypi.simple.v1+json"
        else:
            body = (f'<!DOCTYPE html><html><head><META name="pypi:repository-version" content="{version}">'
                    f'</head><body><a href="/files/{w.name}">{w.name}</a></body></html>')
            ctype = "text/html"
        ix = _PageIndex("pv", body, ctype, files=[w])
        try:
            p = install(cli, ix, {"pv": ""}, check=None)
        finally:
            ix.stop()
        assert p.returncode == code, (version, p.stderr)
        if code:
            assert f"simple API version {version} is not supported" in p.stderr, p.stderr


def test_env_prune_removes_wheels_read_only_for_their_metadata(cli, tmp_path, home):
    """Against an index without PEP 658 metadata the resolver downloads a
    candidate's wheel to read it; a backtrack drops it, and it stayed in
    cache/wheels for good: neither `env prune` nor the daemon's gc removed
    it. Prune now removes every cached wheel no remaining lock lists (past
    the store's grace period: a resolver may be reading one)."""
    w = tmp_path / "w"
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(w, "top", "1.0", requires=["bt"]), metadata=False)
    for v in ("2.0", "3.0", "4.0"):  # each needs a project that does not exist
        ix.add(pkgindex.build_wheel(w, "bt", v, requires=[f"nowhere{v[0]}"]), metadata=False)
    ix.add(pkgindex.build_wheel(w, "bt", "1.0"), metadata=False)
    ix.start()
    try:
        install(cli, ix, {"top": ""})
    finally:
        ix.stop()
    cache = home / "cache" / "wheels"
    cached = sorted(p.name for p in cache.iterdir())
    # bt 3.0 and 2.0 at least, read for their metadata then dropped by a
    # backtrack (top, bt 4.0 and bt 1.0 may have been unpacked by the early
    # fetch, the resolver reading their METADATA in the store: no file).
    assert len(cached) >= 2, cached
    old = time.time() - 2 * 3600
    for p in cache.iterdir():
        os.utime(p, (old, old))
    listed = {pk["sha256"] for e in (home / "envs").glob("*.json")
              for pk in json.loads(e.read_text())["packages"]}
    cli("env", "prune", "--budget", "100G", check=0)
    left = {p.name.split(".")[0] for p in cache.iterdir()}
    # The environment stays, and the wheels its lock lists; the rest go.
    # (A listed wheel may have no file there at all: the early fetch that
    # unpacked it may have left the resolver its METADATA in the store.)
    assert left <= listed, (cached, left, listed)
    assert len(left) < len(cached), (cached, left)
    cli("env", "prune", check=0)
    assert [p.name for p in cache.iterdir()] == []


def test_run_no_cache_resolves_again(cli, tmp_path):
    """`run --no-cache` ("resolve again instead of using a cached lock", its
    help said) was parsed and dropped: a new release was never picked up
    until the lock record was deleted by hand."""
    w = tmp_path / "w"
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(w, "fresh", "1.0"))
    ix.start()
    try:
        f = reqfile(cli, {"fresh": ""}, body="import fresh; return fresh.__version__")
        assert cli("run", NOSANDBOX, "--index-url", ix.url, f, check=0).stdout == "1.0\n"
        ix.add(pkgindex.build_wheel(w, "fresh", "2.0"))
        assert cli("run", NOSANDBOX, "--index-url", ix.url, f, check=0).stdout == "1.0\n"  # the cached lock
        assert cli("run", NOSANDBOX, "--index-url", ix.url, "--no-cache", f, check=0).stdout == "2.0\n"
        assert cli("run", NOSANDBOX, "--index-url", ix.url, f, check=0).stdout == "2.0\n"  # the new lock stays
        ix.add(pkgindex.build_wheel(w, "fresh", "3.0"))
        p = cli("lock", NOSANDBOX, "--json", "--index-url", ix.url, "--no-cache", f, check=0)
        assert {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]} == {"fresh": "3.0"}
    finally:
        ix.stop()
