"""The hashes a page gives for a wheel's PEP 658 `.metadata` file other
than sha256: PEP 691's "hashes"-like `core-metadata` object (and PEP 658's
`data-core-metadata="ALGO=HEX"`) may name any hashlib algorithm, and pip
checks the ones it knows. sha224/sha384/sha512 (and sha3_*, blake2b/s) are
checked here too, md5 and sha1 as well, as pip does — every one the page
gives must match — and a page that gives only hashes of names no one can
compute is read as one given without a hash. A real local index on
127.0.0.1, the real CLI (`lock`, which reads only the metadata files)."""
import hashlib
import json

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


class HashedIndex(pkgindex.Index):
    """pkgindex.Index whose wheels announce their metadata with the hashes
    IndexFile.meta_hashes(metadata bytes) returns ({algo: hex}; JSON gives
    them all, HTML only the first: an attribute holds one)."""

    def project_json(self, name):
        d = json.loads(super().project_json(name))
        by_name = {f.filename: f for f in self.files}
        for e in d["files"]:
            f = by_name[e["filename"]]
            if f.metadata and f.filename.endswith(".whl"):
                e.pop("dist-info-metadata", None)
                e["core-metadata"] = f.meta_hashes(f.core_metadata())
        return json.dumps(d).encode()

    def project_html(self, name):
        text = super().project_html(name).decode()
        for f in self.files:
            if f.metadata and f.filename.endswith(".whl"):
                mh = hashlib.sha256(f.core_metadata()).hexdigest()
                algo, hexd = next(iter(f.meta_hashes(f.core_metadata()).items()))
                text = text.replace(f'data-core-metadata="sha256={mh}" data-dist-info-metadata="sha256={mh}"',
                                    f'data-core-metadata="{algo}={hexd}"')
        return text.encode()


def right(algo):
    return lambda meta: {algo: hashlib.new(algo, meta).hexdigest()}


def wrong(algo):
    return lambda meta: {algo: hashlib.new(algo, b"other bytes").hexdigest()}


@pytest.fixture(scope="module")
def leaf_wheel(tmp_path_factory):
    return pkgindex.build_wheel(tmp_path_factory.mktemp("leaf"), "leaf", "1.0")


def lock(cli, leaf_wheel, mode, meta_hashes):
    ix = HashedIndex(mode=mode)
    ix.add(leaf_wheel).meta_hashes = meta_hashes
    ix.start()
    try:
        f = cli.write("f.py", """
            @requirements({"leaf": ""})
            def f():
                return 1
            """)
        p = cli("lock", "--sandbox=none", "--no-cache", "--index-url", ix.url, f, check=None)
        assert "Traceback" not in p.stderr, p.stderr
        assert [r for r in ix.requests if r.endswith(".whl")] == [], ix.requests
        return p, [r for r in ix.requests if r.endswith(".metadata")]
    finally:
        ix.stop()


@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("algo", ["sha512", "sha384", "sha224", "md5", "sha1"])
def test_a_metadata_file_not_matching_its_only_hash_is_refused(cli, home, leaf_wheel, mode, algo):
    """Before, a page giving only a sha512 (or sha384, sha224) left the
    .metadata unverified: lock used bytes that hash did not match."""
    p, fetched = lock(cli, leaf_wheel, mode, wrong(algo))
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "leaf-1.0-py3-none-any.whl.metadata" in p.stderr and f"{algo} " in p.stderr, p.stderr
    assert "does not match" in p.stderr and p.stdout == "", p.stderr
    assert fetched, "the metadata file is read, then refused"


@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("algo", ["sha512", "sha384", "sha224", "sha3_256", "blake2b", "md5", "sha1"])
def test_a_metadata_file_matching_its_only_hash_is_used(cli, home, leaf_wheel, mode, algo):
    p, fetched = lock(cli, leaf_wheel, mode, right(algo))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "leaf" in p.stdout and len(fetched) == 1, (p.stdout, fetched)


@pytest.mark.parametrize("mode", ["html", "json"])
def test_upper_case_hex_of_another_algorithm_is_checked_as_lower_case(cli, home, leaf_wheel, mode):
    p, _ = lock(cli, leaf_wheel, mode, lambda m: {"sha512": hashlib.sha512(m).hexdigest().upper()})
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_every_hash_given_must_match(cli, home, leaf_wheel):
    """A right sha256 next to a wrong sha512: the page contradicts itself
    about those bytes, and the metadata is refused (pip would take the
    sha256 alone)."""
    p, _ = lock(cli, leaf_wheel, "json",
                lambda m: {"sha256": hashlib.sha256(m).hexdigest(), "sha512": hashlib.sha512(b"x").hexdigest()})
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "sha512" in p.stderr and "does not match" in p.stderr, p.stderr
    p, _ = lock(cli, leaf_wheel, "json",
                lambda m: {"sha256": hashlib.sha256(m).hexdigest(), "sha512": hashlib.sha512(m).hexdigest()})
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("mode", ["html", "json"])
def test_a_metadata_file_with_only_unknown_hashes_is_used_as_one_without_a_hash(cli, home, leaf_wheel, mode):
    """A name no one can compute (blake3 here) says nothing about the
    bytes: the file is read as one announced without a hash ("true"), as
    pip and uv do; the lock still pins the wheel's own sha256, which the
    install checks."""
    p, fetched = lock(cli, leaf_wheel, mode, lambda m: {"blake3": "ab" * 32})
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "leaf" in p.stdout and len(fetched) == 1, (p.stdout, fetched)
