"""The hashes a page gives for a wheel other than sha256: a PEP 691
"hashes" object or a PEP 503 fragment (`#sha512=…`, among `&`-separated
parameters) may name any hashlib algorithm, and pip checks the ones it
knows against the downloaded file. Before, only sha256 was read: a wheel
given only a sha512 was downloaded and its own sha256 pinned, so a
corrupted or swapped file was installed. Now every hash the page gives
that can be computed must match, as for a `.metadata` file
(test_explore_zipmeta.py) (exit 4 naming the URL, the algorithm
and both digests). A real local index on 127.0.0.1, the real CLI."""
import hashlib
import json

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")
NOSANDBOX = "--sandbox=none"


class WheelHashedIndex(pkgindex.Index):
    """pkgindex.Index whose wheels carry the hashes IndexFile.wheel_hashes
    (the wheel's bytes) returns ({algo: hex}): JSON as "hashes", HTML as
    the URL's fragment, '&'-separated."""

    def project_json(self, name):
        d = json.loads(super().project_json(name))
        by_name = {f.filename: f for f in self.files}
        for e in d["files"]:
            e["hashes"] = by_name[e["filename"]].wheel_hashes(by_name[e["filename"]].path.read_bytes())
        return json.dumps(d).encode()

    def project_html(self, name):
        text = super().project_html(name).decode()
        for f in self.files:
            frag = "&".join(f"{a}={h}" for a, h in f.wheel_hashes(f.path.read_bytes()).items())
            text = text.replace(f"#sha256={f.sha256}", f"#{frag}")
        return text.encode()


def right(*algos):
    return lambda data: {a: hashlib.new(a, data).hexdigest() for a in algos}


def wrong(algo, *right_algos):
    return lambda data: {**{a: hashlib.new(a, data).hexdigest() for a in right_algos},
                         algo: hashlib.new(algo, b"other bytes").hexdigest()}


@pytest.fixture(scope="module")
def leaf_wheel(tmp_path_factory):
    return pkgindex.build_wheel(tmp_path_factory.mktemp("leaf"), "leaf", "1.0",
                                files={"leaf/__init__.py": "VALUE = 42\n"})


def use(cli, leaf_wheel, verb, mode, hashes):
    ix = WheelHashedIndex(mode=mode)
    ix.add(leaf_wheel).wheel_hashes = hashes
    ix.start()
    try:
        f = cli.write("f.py", """
            @requirements({"leaf": ""})
            def f():
                import leaf
                return leaf.VALUE
            """)
        p = cli(verb, NOSANDBOX, "--index-url", ix.url, f, check=None)
        assert "Traceback" not in p.stderr, p.stderr
        return p
    finally:
        ix.stop()


def installed(home):
    store = home / "store"
    return [d for d in store.iterdir() if (d / "leaf").is_dir()] if store.is_dir() else []


@pytest.mark.parametrize("verb", ["lock", "run"])
@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("algo", ["sha512", "sha384"])
def test_a_wheel_not_matching_its_only_hash_is_refused(cli, home, leaf_wheel, verb, mode, algo):
    p = use(cli, leaf_wheel, verb, mode, wrong(algo))
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "files/leaf-1.0-py3-none-any.whl" in p.stderr and f"{algo} mismatch" in p.stderr, p.stderr
    assert hashlib.new(algo, b"other bytes").hexdigest() in p.stderr, p.stderr
    assert hashlib.new(algo, leaf_wheel.read_bytes()).hexdigest() in p.stderr, p.stderr
    assert p.stdout == "" and installed(home) == [], (p.stdout, installed(home))


@pytest.mark.parametrize("verb", ["lock", "run"])
@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("algo", ["sha512", "sha384", "md5"])
def test_a_wheel_matching_its_only_hash_is_used(cli, home, leaf_wheel, verb, mode, algo):
    p = use(cli, leaf_wheel, verb, mode, right(algo))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    if verb == "run":
        assert json.loads(p.stdout) == 42
    else:
        assert pkgindex.sha256_file(leaf_wheel) in p.stdout, p.stdout


@pytest.mark.parametrize("mode", ["html", "json"])
def test_every_hash_given_for_a_wheel_must_match(cli, home, leaf_wheel, mode):
    """A right sha256 next to a wrong sha512: the page contradicts itself
    about those bytes, and the wheel is refused when they come (pip would
    take the sha256 alone), as a `.metadata` file is."""
    p = use(cli, leaf_wheel, "run", mode, wrong("sha512", "sha256"))
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "sha512 mismatch" in p.stderr and installed(home) == [], p.stderr
    p = use(cli, leaf_wheel, "run", mode, right("sha256", "sha512"))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("mode", ["html", "json"])
def test_lock_pins_a_pages_sha256_without_fetching_the_wheel(cli, home, leaf_wheel, mode):
    """`lock` reads metadata, not wheels (PEP 658; issue 15): a sha256 from
    the page pins the bytes, and the page's other hashes are checked when
    the bytes come (the run above) — a lock does not fetch the wheel to
    compare them."""
    p = use(cli, leaf_wheel, "lock", mode, wrong("sha512", "sha256"))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert pkgindex.sha256_file(leaf_wheel) in p.stdout and installed(home) == [], p.stdout
    assert not list((home / "cache" / "wheels").glob("*.whl")) if (home / "cache" / "wheels").is_dir() else True


def test_an_unknown_algorithm_is_ignored(cli, home, leaf_wheel):
    p = use(cli, leaf_wheel, "run", "json", lambda data: {"blake3": "ab" * 32})
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
