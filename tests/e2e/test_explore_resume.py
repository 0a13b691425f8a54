"""An interrupted download of a big wheel (issue 15 (d): the 1 GB torch
case) is resumed by the next install of that wheel, as a user of pip/uv
expects of a robust installer: the bytes already fetched stay in
cache/wheels/<sha256>.whl.part, and the next install asks the index for the
rest (Range, If-Range with the first answer's validator). What a user
checks: the first install fails saying the download was cut, the second
fetches only what was missing and the function runs; a server that ignores
Range, or a partial file whose bytes went bad, still gives a correct
install."""
import os
import textwrap

import pytest

from conftest import CLI
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")

NOSANDBOX = "--sandbox=none"


def _big_wheel(outdir):
    files = {"big/__init__.py": "X = 41\n"}
    for i in range(4):
        files[f"big/blob{i}.bin"] = os.urandom(2 << 20)     # incompressible
    return pkgindex.build_wheel(outdir, "big", "1.0", files=files)


def _func(cli):
    return cli.write("f.py", """
        @requirements({'big': '1.0'})
        def f():
            import big
            return big.X + 1
    """)


class Cut:
    """A wheel on an index that cuts its download after `cut` bytes, and the
    first, failed run that leaves the partial file behind."""

    def __init__(self, cli, home, tmp_path, cut_of=3):
        self.wheel = _big_wheel(tmp_path / "w")
        self.size = self.wheel.stat().st_size
        self.sha = pkgindex.sha256_file(self.wheel)
        self.path = f"/files/{self.wheel.name}"
        self.part = home / "cache" / "wheels" / f"{self.sha}.whl.part"
        self.cut = self.size // cut_of
        self.ix = pkgindex.Index()
        self.ix.add(self.wheel)
        self.ix.validators = True
        self.ix.truncate[self.path] = self.cut
        self.ix.start()
        self.f = _func(cli)
        self.cli = cli
        p = cli("run", NOSANDBOX, "--index-url", self.ix.url, self.f)
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        assert "cut short" in p.stderr and self.wheel.name in p.stderr, p.stderr
        assert self.part.stat().st_size == self.cut, (self.part.stat().st_size, self.cut)
        del self.ix.truncate[self.path]
        self.n_requests = len(self.ix.requests)
        self.n_ranged = len(self.ix.ranged)
        self.n_if_range = len(self.ix.if_range)

    def run_again(self):
        p = self.cli("run", NOSANDBOX, "--index-url", self.ix.url, self.f)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        assert p.stdout == "42\n", p.stdout
        return p

    def gets(self):
        """The GETs of the wheel since the first run: (Range or None) each."""
        ranged = iter(r for path, r in self.ix.ranged[self.n_ranged:] if path == self.path)
        out = []
        for path in self.ix.requests[self.n_requests:]:
            if path == self.path:
                out.append(next(ranged, None))
        return out

    def done(self):
        self.ix.stop()
        wheels = self.part.parent
        left = sorted(p.name for p in wheels.iterdir()) if wheels.exists() else []
        assert not [n for n in left if ".part" in n], left


def test_interrupted_download_resumes_at_the_partial_size(cli, home, tmp_path):
    c = Cut(cli, home, tmp_path)
    try:
        c.ix.ranges = True
        c.run_again()
        # One GET of the wheel, for the bytes the first run had not got,
        # conditional on the validator the first answer gave.
        assert c.gets() == [f"bytes={c.cut}-"], c.gets()
        ifr = [v for path, v in c.ix.if_range[c.n_if_range:] if path == c.path]
        assert ifr == [c.ix.etag(c.ix.files[0])], ifr
        assert (home / "store" / c.sha).is_dir()
    finally:
        c.done()


def test_server_ignoring_range_still_installs_correctly(cli, home, tmp_path):
    c = Cut(cli, home, tmp_path)
    try:
        c.ix.ranges = False           # a 200 with the whole file to every Range
        c.run_again()
        # The 200 is taken as the whole file, from byte 0: no second GET.
        assert c.gets() == [f"bytes={c.cut}-"], c.gets()
        assert (home / "store" / c.sha).is_dir()
    finally:
        c.done()


def test_changed_validator_gets_the_whole_file(cli, home, tmp_path):
    """The mirror's file changed validator since (If-Range fails): the
    server sends all of it with a 200, and the install starts over."""
    c = Cut(cli, home, tmp_path)
    try:
        c.ix.ranges = True
        c.ix.etag_salt = "-redeployed"
        c.run_again()
        gets = c.gets()
        assert gets == [f"bytes={c.cut}-"], gets      # answered whole: one GET
    finally:
        c.done()


@pytest.mark.parametrize("damage", ["flipped", "too-long"])
def test_corrupt_partial_file_restarts_from_zero(cli, home, tmp_path, damage):
    """Bytes of the partial file went bad (a crash, a disk): the digest of
    the resumed file mismatches, and the install fetches it once more from
    byte 0, rather than failing or installing bad bytes. A partial file
    longer than the wheel (a 416 to its Range) starts over too."""
    c = Cut(cli, home, tmp_path)
    try:
        if damage == "flipped":
            with open(c.part, "r+b") as fh:
                fh.seek(c.cut // 2)
                b = fh.read(1)
                fh.seek(c.cut // 2)
                fh.write(bytes([b[0] ^ 0xFF]))
        else:
            with open(c.part, "ab") as fh:
                fh.write(b"\0" * (c.size - c.cut + 10))
        c.ix.ranges = True
        c.run_again()
        gets = c.gets()
        start = c.cut if damage == "flipped" else c.size + 10
        assert gets == [f"bytes={start}-", None], gets
        assert (home / "store" / c.sha).is_dir()
    finally:
        c.done()
