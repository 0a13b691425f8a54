"""`pysprinter lock` as a uv/pip user checks issue 15's "downloads no wheel
when the index offers PEP 658 metadata": each index form (PEP 503 HTML,
PEP 691 JSON), each way of announcing the metadata (PEP 658/714: a hash,
`true`, the legacy name only), a metadata file that does not match its
hash, an index without metadata, a large wheel, and what `lock` prints and
exits with. A real local index on 127.0.0.1, the real CLI."""
import hashlib
import json
import os
import pathlib
import zipfile

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

NOSANDBOX = "--sandbox=none"


class StyledIndex(pkgindex.Index):
    """pkgindex.Index whose files say their PEP 658 metadata in a given
    style (IndexFile.style):
      "hash"       data-core-metadata="sha256=…" / "core-metadata": {"sha256": …} (the default)
      "true"       data-core-metadata="true" / "core-metadata": true (PEP 658 allows no hash)
      "bare"       HTML only: a bare data-core-metadata attribute
      "legacy"     only the pre-PEP 714 name (data-dist-info-metadata / "dist-info-metadata")
      "core-false" core-metadata false next to a legacy dist-info-metadata true: PEP 714 says
                   the new key wins when present
      "wrong"      a sha256 of other bytes"""

    def _style(self, f):
        return getattr(f, "style", "hash")

    def project_json(self, name):
        d = json.loads(super().project_json(name))
        by_name = {f.filename: f for f in self.files}
        for e in d["files"]:
            f = by_name[e["filename"]]
            if not (f.metadata and f.filename.endswith(".whl")):
                continue
            style = self._style(f)
            e.pop("core-metadata", None)
            e.pop("dist-info-metadata", None)
            mh = hashlib.sha256(f.core_metadata()).hexdigest()
            if style == "hash":
                e["core-metadata"] = {"sha256": mh}
            elif style == "true":
                e["core-metadata"] = True
            elif style == "legacy":
                e["dist-info-metadata"] = {"sha256": mh}
            elif style == "core-false":
                e["core-metadata"] = False
                e["dist-info-metadata"] = True
            elif style == "wrong":
                e["core-metadata"] = {"sha256": hashlib.sha256(b"other").hexdigest()}
        return json.dumps(d).encode()

    def project_html(self, name):
        text = super().project_html(name).decode()
        for f in self.files:
            if not (f.metadata and f.filename.endswith(".whl")):
                continue
            mh = hashlib.sha256(f.core_metadata()).hexdigest()
            both = f'data-core-metadata="sha256={mh}" data-dist-info-metadata="sha256={mh}"'
            style = self._style(f)
            new = {"hash": f'data-core-metadata="sha256={mh}"',
                   "true": 'data-core-metadata="true"',
                   "bare": "data-core-metadata",
                   "legacy": f'data-dist-info-metadata="sha256={mh}"',
                   "core-false": 'data-core-metadata="false" data-dist-info-metadata="true"',
                   "wrong": f'data-core-metadata="sha256={hashlib.sha256(b"other").hexdigest()}"'}[style]
            text = text.replace(both, new)
        return text.encode()


# A small tree: transitive deps, an extra, markers true and false here.
TREE = [
    ("web", "1.0", ["core>=1", 'fast[speed]; extra == "perf"', 'winonly; sys_platform == "win32"',
                    'newpy; python_version >= "3.8"'], {"extras": ["perf"]}),
    ("web", "2.0", ["core>=2"], {"requires_python": ">=3.12"}),   # requires-python in METADATA too
    ("core", "1.5", ["leaf"], {}),
    ("core", "2.0", ["leaf"], {}),
    ("fast", "1.0", ['accel; extra == "speed"'], {"extras": ["speed"]}),
    ("accel", "1.0", [], {}),
    ("winonly", "1.0", [], {}),
    ("newpy", "1.0", [], {}),
    ("leaf", "1.0", [], {}),
    ("leaf", "3.0", [], {}),
]


@pytest.fixture(scope="module")
def tree_wheels(tmp_path_factory):
    d = tmp_path_factory.mktemp("tree")
    out = []
    for name, version, requires, kw in TREE:
        kw = dict(kw)
        rp = kw.pop("requires_python", None)
        out.append((pkgindex.build_wheel(d, name, version, requires=requires, requires_python=rp, **kw), rp))
    return out


def make_index(wheels, mode, style="hash", metadata=True):
    ix = StyledIndex(mode=mode)
    for w, rp in wheels:
        f = ix.add(w, requires_python=rp, metadata=metadata)
        f.style = style
    return ix.start()


def lock(cli, ix, reqs, *extra, check=None, name="f.py"):
    f = cli.write(name, f"""
        @requirements({reqs!r})
        def f():
            return 1
        """)
    p = cli("lock", NOSANDBOX, "--no-cache", "--index-url", ix.url, *extra, f, check=None)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def wheels_fetched(ix):
    return [r for r in ix.requests if r.endswith(".whl")]


def metadata_fetched(ix):
    return [r for r in ix.requests if r.endswith(".metadata")]


def store_entries(home):
    s = home / "store"
    return sorted(os.listdir(s)) if s.exists() else []


# ---- no wheel is fetched when the index offers metadata -----------------------

@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("style", ["hash", "true", "bare", "legacy"])
def test_lock_reads_only_metadata_files_whatever_the_style(cli, home, tree_wheels, mode, style):
    if style == "bare" and mode == "json":
        pytest.skip("a bare attribute is HTML's")
    ix = make_index(tree_wheels, mode, style)
    try:
        p = lock(cli, ix, {"web[perf]": ""}, "--json", check=0)
        got = {e["name"]: e["version"] for e in json.loads(p.stdout)["packages"]}
        # web 2.0 wants Python >= 3.12 (this is Debian's 3.11); the extra
        # pulls fast[speed] -> accel; win32's marker is false here.
        assert got == {"web": "1.0", "core": "2.0", "leaf": "3.0", "fast": "1.0", "accel": "1.0",
                       "newpy": "1.0"}, got
        assert wheels_fetched(ix) == [], ix.requests
        assert len(metadata_fetched(ix)) >= 6, ix.requests
        assert store_entries(home) == []
    finally:
        ix.stop()


def sparse_wheel(outdir, name, version, size):
    """A wheel holding one stored entry of `size` zero bytes, written with
    a hole where the zeros are: a 200 MB wheel that costs the disk ~nothing.
    Its METADATA (deflated) comes after the blob."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    path = outdir / f"{dist}-{version}-py3-none-any.whl"
    meta = pkgindex.metadata_text(name, version).encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"

    with open(path, "wb") as raw:
        class W:
            def write(self, b):
                if len(b) >= (1 << 16) and not b.strip(b"\0"):
                    raw.seek(len(b), os.SEEK_CUR)
                    if raw.tell() > os.fstat(raw.fileno()).st_size:
                        raw.truncate(raw.tell())
                    return len(b)
                return raw.write(b)

            def tell(self):
                return raw.tell()

            def seek(self, *a):
                return raw.seek(*a)

            def flush(self):
                raw.flush()

            def seekable(self):
                return True

        with zipfile.ZipFile(W(), "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            zi = zipfile.ZipInfo(f"{dist}/blob.bin", date_time=(2020, 1, 1, 0, 0, 0))
            with z.open(zi, "w", force_zip64=True) as out:
                chunk = bytes(1 << 20)
                for _ in range(size // len(chunk)):
                    out.write(chunk)
            mi = zipfile.ZipInfo(f"{dist}-{version}.dist-info/METADATA", date_time=(2020, 1, 1, 0, 0, 0))
            mi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(mi, meta)
            z.writestr(f"{dist}-{version}.dist-info/WHEEL", wheel)
            z.writestr(f"{dist}-{version}.dist-info/RECORD", "")
    return path


@pytest.fixture(scope="module")
def big_wheel(tmp_path_factory):
    return sparse_wheel(tmp_path_factory.mktemp("big"), "bigpkg", "1.0", 200 << 20)


@pytest.mark.parametrize("mode", ["html", "json"])
def test_lock_of_a_200_mb_wheel_fetches_its_metadata_only(cli, home, big_wheel, tree_wheels, mode):
    assert os.stat(big_wheel).st_size > (200 << 20)
    with zipfile.ZipFile(big_wheel) as z:  # a valid zip, METADATA readable
        assert b"Name: bigpkg" in z.read("bigpkg-1.0.dist-info/METADATA")
    ix = make_index(tree_wheels + [(big_wheel, None)], mode)
    try:
        p = lock(cli, ix, {"bigpkg": "", "core": ""}, check=0)
        assert "bigpkg" in p.stdout and wheels_fetched(ix) == [], ix.requests
        assert store_entries(home) == []
    finally:
        ix.stop()


# ---- a metadata file that is not what the index said ---------------------------

@pytest.mark.parametrize("mode", ["html", "json"])
def test_a_metadata_file_that_does_not_match_its_hash_is_refused(cli, home, tree_wheels, mode):
    """pip refuses it (HashMismatch on the .metadata download) and so does
    this: the page's hash is the index's word for those bytes."""
    ix = make_index(tree_wheels, mode, "wrong")
    try:
        p = lock(cli, ix, {"leaf": ""}, check=4)
        assert "leaf-3.0-py3-none-any.whl.metadata" in p.stderr and "sha256" in p.stderr, p.stderr
        assert "does not match" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert p.stdout == "" and wheels_fetched(ix) == [], ix.requests
    finally:
        ix.stop()


@pytest.mark.parametrize("mode", ["html", "json"])
def test_core_metadata_false_wins_over_the_legacy_name(cli, home, tree_wheels, mode):
    """PEP 714: a client reads the new key when it is present; an index
    that says core-metadata false has no metadata file, whatever the old
    key says (here the legacy key's .metadata would 404)."""
    ix = make_index(tree_wheels, mode, "core-false", metadata=False)
    for f in ix.files:
        f.metadata = True  # rendered (core-false), but not served:
    ix.fail["/files/leaf-3.0-py3-none-any.whl.metadata"] = [404, 100]
    try:
        p = lock(cli, ix, {"leaf": ""}, check=None)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert metadata_fetched(ix) == [], ix.requests
    finally:
        ix.stop()


# ---- an index without metadata ------------------------------------------------

def whole_wheel_gets(ix):
    """The GETs of a wheel that asked for all of it (no Range header)."""
    ranged = [p for p, _ in ix.ranged]
    out = list(wheels_fetched(ix))
    for p in ranged:
        out.remove(p)
    return out


@pytest.mark.parametrize("mode", ["html", "json"])
def test_an_index_without_metadata_is_read_by_ranges(cli, home, tree_wheels, big_wheel, mode):
    """No PEP 658 file: as uv does, the wheel's METADATA is read with HTTP
    range requests (its end records, its central directory, the one entry)
    when the server answers them; the 200 MB wheel costs a few small GETs."""
    ix = make_index(tree_wheels + [(big_wheel, None)], mode, metadata=False)
    ix.ranges = True
    try:
        p = lock(cli, ix, {"web[perf]": "", "bigpkg": ""}, "--json", check=0)
        got = {e["name"]: e["version"] for e in json.loads(p.stdout)["packages"]}
        assert got == {"web": "1.0", "core": "2.0", "leaf": "3.0", "fast": "1.0", "accel": "1.0",
                       "newpy": "1.0", "bigpkg": "1.0"}, got
        assert metadata_fetched(ix) == [] and whole_wheel_gets(ix) == [], (ix.requests, ix.ranged)
        big = [r for pth, r in ix.ranged if "bigpkg" in pth]
        assert 2 <= len(big) <= 4, big
        assert store_entries(home) == []
        # The run installs what the lock says: the wheels, whole and verified.
        f = cli.write("g.py", """
            @requirements({"web[perf]": ""})
            def g():
                import web, core, leaf, accel
                return [web.__version__, core.__version__, accel.__version__]
            """)
        r = cli("run", NOSANDBOX, "--json", "--index-url", ix.url, f, check=0)
        assert json.loads(r.stdout) == ["1.0", "2.0", "1.0"], r.stdout
    finally:
        ix.stop()


def test_a_central_directory_larger_than_the_tail_is_fetched_by_its_range(cli, home, tmp_path):
    """A wheel of 4000 files: its central directory (~350 KB) is more than
    the first GET of the file's last 128 KiB holds, so it is asked for by
    its own range: three GETs (tail, directory, entry)."""
    files = {f"many/sub/module_number_{i:05d}.py": "" for i in range(4000)}
    w = pkgindex.build_wheel(tmp_path / "many", "many", "1.0", files=files)
    ix = make_index([(w, None)], "html", metadata=False)
    ix.ranges = True
    try:
        p = lock(cli, ix, {"many": ""}, "--json", check=0)
        assert [e["version"] for e in json.loads(p.stdout)["packages"]] == ["1.0"]
        assert whole_wheel_gets(ix) == [] and len(ix.ranged) == 3, ix.ranged
    finally:
        ix.stop()


def test_hostile_zip_structures_read_by_ranges_fail_cleanly(cli, home, tmp_path):
    """The zip structures a range read parses come from the server: a
    wheel whose end record, central directory or local header lies (bytes
    flipped at random there, offsets past the end, lengths that overflow)
    is either read or refused by the whole-wheel reader it falls back to —
    exit 0 or 4, never a crash or a hang."""
    import random
    import struct
    base = pkgindex.build_wheel(tmp_path / "base", "hz", "1.0").read_bytes()
    eocd = base.rindex(b"PK\x05\x06")
    cd = struct.unpack_from("<I", base, eocd + 16)[0]
    meta_lh = base.index(b".dist-info/METADATA") - 30 - len("hz-1.0")  # METADATA's local header
    variants = {
        "garbage": os.urandom(len(base)),
        "cd-past-end": base[:eocd + 16] + struct.pack("<I", len(base) + 1000) + base[eocd + 20:],
        "cd-size-huge": base[:eocd + 12] + struct.pack("<I", 0xFFFFFFF0) + base[eocd + 16:],
        "zip64-locator-far": base[:eocd] + b"PK\x06\x07" + struct.pack("<IQI", 0, 2 ** 64 - 16, 1)
        + base[eocd:eocd + 12] + b"\xff" * 8 + base[eocd + 20:],
        "name-length-huge": base[:cd + 28] + b"\xff\xff" + base[cd + 30:],
        "truncated-tail": base[:eocd + 10],
    }
    rnd = random.Random(1658)
    for i in range(10):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            lo = rnd.choice([cd, eocd, meta_lh])
            b[rnd.randrange(lo, min(len(b), lo + 64))] = rnd.randrange(256)
        variants[f"flip{i}"] = bytes(b)
    for name, data in variants.items():
        d = tmp_path / name
        d.mkdir()
        (d / "hz-1.0-py3-none-any.whl").write_bytes(data)
        ix = make_index([(d / "hz-1.0-py3-none-any.whl", None)], "json", metadata=False)
        ix.ranges = True
        try:
            p = lock(cli, ix, {"hz": ""})
            assert p.returncode in (0, 4), (name, p.returncode, p.stderr)
            assert p.returncode == 0 or ("hz" in p.stderr and "Traceback" not in p.stderr), (name, p.stderr)
        finally:
            ix.stop()


def zip64_wheel(path, name, version, hole):
    """A wheel written by hand as a streaming ZIP64 writer writes one: a
    stored entry of `hole` bytes (a hole in the file: sparse, and its CRC
    not computed — nothing here reads it), then METADATA deflated with its
    sizes and CRC in a ZIP64 data descriptor (flag bit 3), a central
    directory whose offsets past 4 GiB are in ZIP64 extra fields, and the
    ZIP64 end record and locator."""
    import struct
    import zlib
    meta = pkgindex.metadata_text(name, version).encode()
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = co.compress(meta) + co.flush()
    entries = []
    with open(path, "wb") as fh:
        def local(fname, flags, method, crc, csize, usize, extra):
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, flags, method, 0, 0x21, crc,
                                 csize, usize, len(fname), len(extra)) + fname + extra)
        blob = f"{name}/blob.bin".encode()
        off = fh.tell()
        local(blob, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, struct.pack("<HHQQ", 1, 16, hole, hole))
        fh.seek(hole, os.SEEK_CUR)
        entries.append((blob, 0, 0, 0, hole, hole, off))
        mname = f"{name}-{version}.dist-info/METADATA".encode()
        off = fh.tell()
        local(mname, 0x08, 8, 0, 0, 0, b"")
        fh.write(deflated)
        crc = zlib.crc32(meta)
        fh.write(struct.pack("<IIQQ", 0x08074b50, crc, len(deflated), len(meta)))
        entries.append((mname, 0x08, 8, crc, len(deflated), len(meta), off))
        cd = fh.tell()
        for fname, flags, method, crc, csize, usize, off in entries:
            big = [v for v in (usize, csize, off) if v >= 0xFFFFFFFF]
            extra = struct.pack("<HH", 1, 8 * len(big)) + b"".join(struct.pack("<Q", v) for v in big) if big else b""
            f32 = lambda v: 0xFFFFFFFF if v >= 0xFFFFFFFF else v
            fh.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, flags, method, 0, 0x21, crc,
                                 f32(csize), f32(usize), len(fname), len(extra), 0, 0, 0, 0o644 << 16,
                                 f32(off)) + fname + extra)
        cd_size = fh.tell() - cd
        z64 = fh.tell()
        fh.write(struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries),
                             cd_size, cd))
        fh.write(struct.pack("<IIQI", 0x07064b50, 0, z64, 1))
        fh.write(struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path


def test_a_zip64_wheel_past_4_gib_is_read_by_ranges(cli, home, tmp_path, monkeypatch):
    """The central directory's ZIP64 fields (METADATA's offset past 4 GiB,
    the ZIP64 end records) and a deflated entry whose sizes and CRC are in
    a data descriptor: a 4.1 GiB sparse wheel, read with a few small GETs."""
    w = zip64_wheel(tmp_path / "hugepkg-1.0-py3-none-any.whl", "hugepkg", "1.0", (4 << 30) + (100 << 20))
    with zipfile.ZipFile(w) as z:  # what a zip reader makes of it
        mi = z.getinfo("hugepkg-1.0.dist-info/METADATA")
        assert mi.header_offset > (4 << 30) and mi.flag_bits & 0x08, (mi.header_offset, mi.flag_bits)
        assert b"Name: hugepkg" in z.read(mi)
    # The index's sha256 of it, without reading 4 GiB of zeros.
    monkeypatch.setattr(pkgindex, "sha256_file", lambda p: hashlib.sha256(str(p).encode()).hexdigest())
    ix = make_index([(w, None)], "json", metadata=False)
    ix.ranges = True
    try:
        p = lock(cli, ix, {"hugepkg": ""}, "--json", check=0)
        assert [e["version"] for e in json.loads(p.stdout)["packages"]] == ["1.0"]
        assert whole_wheel_gets(ix) == [] and len(ix.ranged) <= 4, ix.ranged
    finally:
        ix.stop()


@pytest.mark.parametrize("mode", ["html", "json"])
def test_an_index_without_metadata_or_ranges_downloads_but_installs_nothing(cli, home, tree_wheels, mode):
    """A server that answers a range with the whole file: one such GET is
    cut short, then every wheel is downloaded whole (kept for the run) and
    its METADATA read; nothing is installed."""
    ix = make_index(tree_wheels, mode, metadata=False)
    try:
        p = lock(cli, ix, {"core": ""}, "--json", check=0)
        got = {e["name"]: e["version"] for e in json.loads(p.stdout)["packages"]}
        assert got == {"core": "2.0", "leaf": "3.0"}
        assert metadata_fetched(ix) == [] and len(ix.ranged) == 1, (ix.requests, ix.ranged)
        assert store_entries(home) == []
    finally:
        ix.stop()


def test_an_index_without_file_hashes_has_lock_download_to_hash(cli, home, tree_wheels):
    """A lock pins each wheel's sha256: an index that gives none (no
    hashes, no #sha256=) has lock download the chosen wheels to hash them,
    as pip-compile --generate-hashes does, even with PEP 658 files for the
    metadata; still nothing is installed. Candidates it only read are not
    downloaded."""
    class NoHash(StyledIndex):
        def project_json(self, name):
            d = json.loads(super().project_json(name))
            for e in d["files"]:
                e["hashes"] = {}
            return json.dumps(d).encode()
    ix = NoHash(mode="json")
    for w, rp in tree_wheels:
        ix.add(w, requires_python=rp)
    ix.start()
    try:
        p = lock(cli, ix, {"core": ""}, "--json", check=0)
        lk = json.loads(p.stdout)["packages"]
        sha = {f.filename: f.real_sha256 for f in ix.files}
        assert {e["filename"]: e["sha256"] for e in lk} == {e["filename"]: sha[e["filename"]] for e in lk}
        assert sorted(wheels_fetched(ix)) == sorted(f"/files/{e['filename']}" for e in lk), ix.requests
        assert store_entries(home) == []
    finally:
        ix.stop()


# ---- what lock prints and exits with ------------------------------------------

def test_lock_text_output_is_sorted_with_hashes(cli, tree_wheels):
    ix = make_index(tree_wheels, "json")
    try:
        p = lock(cli, ix, {"web[perf]": "", "core": "<3"}, check=0)
        lines = p.stdout.splitlines()
        assert lines[0].startswith("# ") and lines[0].endswith("f.py: web[perf], core<3"), lines
        names = [l.split()[0] for l in lines[1::2]]
        assert names == sorted(names) and len(names) == 6, lines
        sha = {f.filename: f.real_sha256 for f in ix.files}
        for head, h in zip(lines[1::2], lines[2::2]):
            assert h == "    sha256:" + sha[head.split()[2]], (head, h)
        j = lock(cli, ix, {"web[perf]": "", "core": "<3"}, "--json", check=0)
        assert [e["name"] for e in json.loads(j.stdout)["packages"]] == names
    finally:
        ix.stop()


@pytest.mark.parametrize("reqs, code, words", [
    ({"leaf": ">=9"}, 4, "leaf"),
    ({"web": "==2.0"}, 4, "web"),
    ({"leaf": "=>1"}, 3, "invalid version specifier for 'leaf'"),   # a RequirementError, as validate's
    ({"no such": ""}, 3, "invalid requirement name 'no such'"),
    ({"nosuchproject": ""}, 4, "nosuchproject"),
])
def test_lock_failures_are_clear_and_non_zero(cli, tree_wheels, reqs, code, words):
    ix = make_index(tree_wheels, "html")
    try:
        p = lock(cli, ix, reqs)
        assert p.returncode != 0 and (code is None or p.returncode == code), (p.returncode, p.stderr)
        assert words in p.stderr and "Traceback" not in p.stderr and p.stdout == "", (p.stdout, p.stderr)
        assert wheels_fetched(ix) == []
    finally:
        ix.stop()


def test_lock_with_the_index_down_is_exit_4_and_names_it(cli, tree_wheels):
    ix = make_index(tree_wheels, "html")
    url = ix.url
    ix.stop()
    f = cli.write("f.py", """
        @requirements({"leaf": ""})
        def f():
            return 1
        """)
    p = cli("lock", NOSANDBOX, "--no-cache", "--index-url", url, f, check=4)
    assert url.split("/simple")[0].split("//")[1] in p.stderr and "Traceback" not in p.stderr, p.stderr


# ---- yanked files and requires-python ------------------------------------------

class BareYankIndex(StyledIndex):
    """PEP 592: "a data-yanked attribute which may have no value"; here the
    bare attribute is the tag's last, right before its '>'."""

    def project_html(self, name):
        out = []
        for line in super().project_html(name).decode().split("\n"):
            if ' data-yanked=""' in line:
                line = line.replace(' data-yanked=""', "").replace(">", " data-yanked>", 1)
            out.append(line)
        return "\n".join(out).encode()


def test_a_bare_data_yanked_last_in_its_tag_is_yanked(cli, tmp_path):
    d = tmp_path / "w"
    ix = BareYankIndex(mode="html")
    ix.add(pkgindex.build_wheel(d, "yk", "1.0"))
    ix.add(pkgindex.build_wheel(d, "yk", "2.0"), yanked=True, metadata=False)
    ix.start()
    try:
        assert "\" data-yanked>yk-2.0-py3-none-any.whl</a>" in ix.project_html("yk").decode()
        p = lock(cli, ix, {"yk": ""}, "--json", check=0)
        assert [e["version"] for e in json.loads(p.stdout)["packages"]] == ["1.0"], p.stdout
    finally:
        ix.stop()


@pytest.mark.parametrize("mode", ["html", "json"])
def test_yanked_only_when_pinned_and_requires_python_respected(cli, tmp_path, mode):
    d = tmp_path / "w"
    ix = StyledIndex(mode=mode)
    ix.add(pkgindex.build_wheel(d, "yk", "1.0"))
    ix.add(pkgindex.build_wheel(d, "yk", "2.0"), yanked="broken")
    ix.add(pkgindex.build_wheel(d, "rp", "1.0"))
    ix.add(pkgindex.build_wheel(d, "rp", "2.0"), requires_python=">=3.12")
    ix.add(pkgindex.build_wheel(d, "rp", "1.5"), requires_python=">=3.8,<4")
    ix.start()
    try:
        def got(reqs):
            p = lock(cli, ix, reqs, "--json", check=0)
            return {e["name"]: e["version"] for e in json.loads(p.stdout)["packages"]}
        assert got({"yk": ""}) == {"yk": "1.0"}
        p = lock(cli, ix, {"yk": ">=1.5"})
        assert p.returncode == 4 and "yk" in p.stderr, (p.returncode, p.stderr)
        assert got({"yk": "==2.0"}) == {"yk": "2.0"}
        assert got({"yk": "===2.0"}) == {"yk": "2.0"}   # PEP 592: == or ===
        assert lock(cli, ix, {"yk": "==2.*"}).returncode == 4   # a wildcard is no pin (pip, uv)
        assert got({"rp": ""}) == {"rp": "1.5"}
        p = lock(cli, ix, {"rp": "==2.0"})
        assert p.returncode == 4 and "3.12" in p.stderr, (p.returncode, p.stderr)
        assert wheels_fetched(ix) == []
    finally:
        ix.stop()
