"""Resumable wheel downloads, the edges (after test_explore_resume.py):
a part file that is already the whole wheel (an install killed after the
last byte, before the rename) is taken as the wheel without a byte from the
index; a part whose If-Range file is missing or garbage still ends in a
correct install; and a wheel the resolver downloads only for its METADATA
(an index without PEP 658 files) lands in the wheel cache, so the install
that follows does not fetch it again, and a cut one resumes."""
import os

import pytest

from conftest import CLI
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")

NOSANDBOX = "--sandbox=none"


def _wheel(outdir, name="big"):
    files = {f"{name}/__init__.py": "X = 41\n"}
    for i in range(2):
        files[f"{name}/blob{i}.bin"] = os.urandom(1 << 20)      # incompressible
    return pkgindex.build_wheel(outdir, name, "1.0", files=files)


def _func(cli, name="big"):
    return cli.write("f.py", f"""
        @requirements({{'{name}': '1.0'}})
        def f():
            import {name}
            return {name}.X + 1
    """)


def _run(cli, ix, f):
    p = cli("run", NOSANDBOX, "--index-url", ix.url, f)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "42\n", p.stdout
    return p


def _no_parts(home):
    wheels = home / "cache" / "wheels"
    left = sorted(p.name for p in wheels.iterdir()) if wheels.exists() else []
    assert not [n for n in left if ".part" in n], left


@pytest.mark.parametrize("ifrange", ["etag", "missing", "garbage"])
def test_complete_part_is_taken_without_a_byte(cli, home, tmp_path, ifrange):
    """The install was killed after the last byte but before the rename:
    <sha>.whl.part holds the whole wheel. The next install hashes it (as
    every resume does), finds the lock's sha256 and takes it: the index
    serves none of the wheel's bytes (before: a 416, then the whole wheel
    again from byte 0)."""
    w = _wheel(tmp_path / "w")
    sha = pkgindex.sha256_file(w)
    ix = pkgindex.Index()
    f = ix.add(w)
    ix.ranges = True
    ix.validators = True
    ix.start()
    try:
        wheels = home / "cache" / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        part = wheels / f"{sha}.whl.part"
        part.write_bytes(w.read_bytes())
        if ifrange == "etag":
            (wheels / f"{sha}.whl.part.ifrange").write_text(ix.etag(f))
        elif ifrange == "garbage":
            (wheels / f"{sha}.whl.part.ifrange").write_bytes(b"\x00\xff\n" + os.urandom(400))
        _run(cli, ix, _func(cli))
        path = f"/files/{w.name}"
        assert ix.served.get(path, 0) == 0, (ix.served, ix.ranged)
        assert path not in ix.requests, ix.requests
        assert (home / "store" / sha).is_dir()
        _no_parts(home)
    finally:
        ix.stop()


@pytest.mark.parametrize("ifrange", ["missing", "garbage", "other-etag"])
def test_cut_part_with_a_bad_ifrange_installs_correctly(cli, home, tmp_path, ifrange):
    """A third of the wheel in the part file, and its If-Range file gone,
    unreadable or naming another version of the file: the install asks for
    the rest without a condition (then the digest tells), or gets the whole
    file with a 200 (If-Range no longer matches); either way a correct
    install, and never more than one whole wheel's bytes."""
    w = _wheel(tmp_path / "w")
    sha = pkgindex.sha256_file(w)
    data = w.read_bytes()
    cut = len(data) // 3
    ix = pkgindex.Index()
    ix.add(w)
    ix.ranges = True
    ix.validators = True
    ix.start()
    try:
        wheels = home / "cache" / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        (wheels / f"{sha}.whl.part").write_bytes(data[:cut])
        v = wheels / f"{sha}.whl.part.ifrange"
        if ifrange == "garbage":
            v.write_bytes(b"\x01junk\x7f" * 80)
        elif ifrange == "other-etag":
            v.write_text('"not-this-file"')
        _run(cli, ix, _func(cli))
        path = f"/files/{w.name}"
        served = ix.served.get(path, 0)
        want = len(data) if ifrange == "other-etag" else len(data) - cut
        assert served == want, (served, want, ix.ranged)
        assert (home / "store" / sha).is_dir()
        _no_parts(home)
    finally:
        ix.stop()


@pytest.mark.parametrize("ranges", [False, True])
def test_lock_then_install_without_pep658_fetches_each_wheel_once(cli, home, tmp_path, ranges):
    """An index with no .metadata files: `pysprinter lock` reads each
    wheel's METADATA by HTTP ranges where the server answers them (a few
    KB), else downloads the wheel into the wheel cache; the install that
    follows takes that file. A server that ignores ranges costs one probe
    (a ranged GET answered with the whole file, which the client drops
    after the bytes it asked for: once per client, not per wheel) and one
    whole download; the install asks nothing more."""
    w = _wheel(tmp_path / "w")
    size = w.stat().st_size
    ix = pkgindex.Index()
    ix.add(w, metadata=False)
    ix.ranges = ranges
    ix.start()
    try:
        f = _func(cli)
        p = cli("lock", "--index-url", ix.url, f)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        path = f"/files/{w.name}"
        gets = [q for q in ix.requests if q == path]
        probes = [r for q, r in ix.ranged if q == path]
        after_lock = ix.served.get(path, 0)
        if ranges:
            # The zip's tail, its central directory, METADATA: small GETs.
            assert len(gets) == len(probes) and 0 < after_lock < size // 4, (gets, probes, after_lock, size)
        else:
            assert len(probes) == 1 and len(gets) == 2, (gets, probes)     # the probe, the download
            assert (home / "cache" / "wheels" / f"{pkgindex.sha256_file(w)}.whl").exists()
        n = len(ix.requests)
        _run(cli, ix, f)
        again = [q for q in ix.requests[n:] if q == path]
        if ranges:
            assert again == [path] and ix.served[path] == after_lock + size, (again, ix.served, after_lock, size)
        else:
            assert again == [] and ix.served[path] == after_lock, (again, ix.served, after_lock)
        print(f"ranges={ranges}: wheel {size} bytes, served by lock {after_lock}, lock+install {ix.served[path]}")
        _no_parts(home)
    finally:
        ix.stop()


def test_cut_metadata_download_resumes(cli, home, tmp_path):
    """The wheel downloaded for its METADATA (no PEP 658 file, no ranges
    for it) is cut short past the retries: the bytes stay as the wheel's
    part file, and the next resolution asks only for the rest."""
    w = _wheel(tmp_path / "w")
    sha = pkgindex.sha256_file(w)
    size = w.stat().st_size
    cut = size // 3
    ix = pkgindex.Index()
    ix.add(w, metadata=False)
    ix.validators = True
    path = f"/files/{w.name}"
    ix.truncate[path] = cut
    ix.start()
    try:
        f = _func(cli)
        p = cli("lock", "--index-url", ix.url, f)
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        assert "cut short" in p.stderr and "kept: the next install resumes it" in p.stderr, p.stderr
        part = home / "cache" / "wheels" / f"{sha}.whl.part"
        assert part.stat().st_size == cut
        del ix.truncate[path]
        ix.ranges = True
        n = len(ix.ranged)
        served = ix.served.get(path, 0)
        _run(cli, ix, f)
        # The resolver's first ranged read of the zip's tail is not made:
        # the wheel is being fetched whole already (a part file is there);
        # one GET for the rest of it.
        assert [r for p_, r in ix.ranged[n:] if p_ == path] == [f"bytes={cut}-"], ix.ranged[n:]
        assert ix.served.get(path, 0) - served == size - cut, (ix.served, served, size, cut)
        assert (home / "store" / sha).is_dir()
        _no_parts(home)
    finally:
        ix.stop()


def test_metadata_of_a_wheel_in_the_store_is_read_there(cli, home, tmp_path):
    """A wheel already unpacked in the store (installed for another set of
    requirements), on an index without PEP 658 files: the resolver reads
    its METADATA from the store dir, the index serves none of its bytes
    (before: a ranged probe, then the whole wheel again, for a file the
    install then did not need)."""
    w = _wheel(tmp_path / "w")
    other = pkgindex.build_wheel(tmp_path / "w", "other", "1.0")
    ix = pkgindex.Index()
    ix.add(w, metadata=False)
    ix.add(other, metadata=False)
    ix.start()
    try:
        _run(cli, ix, _func(cli))
        # The copy the resolver kept, if the early fetch unpacked its own:
        # what an earlier prune would have removed.
        for p in (home / "cache" / "wheels").glob("*.whl"):
            p.unlink()
        path = f"/files/{w.name}"
        n, served = len(ix.requests), ix.served.get(path, 0)
        f2 = cli.write("g.py", """
            @requirements({'big': '', 'other': ''})
            def g():
                import big
                return big.X + 1
        """)
        _run(cli, ix, f2)
        assert path not in ix.requests[n:], ix.requests[n:]
        assert ix.served.get(path, 0) == served
        assert f"/files/{other.name}" in ix.requests[n:]
    finally:
        ix.stop()
