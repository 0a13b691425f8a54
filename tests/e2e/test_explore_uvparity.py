"""Resolution as an experienced pip/uv user compares it: the same index
(a real local one on 127.0.0.1), the same requirements, and the lock pip
23 (`pip install --dry-run --report`) or uv would give — each test a case
where pysprinter answered otherwise."""
import json

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

NOSANDBOX = "--sandbox=none"


@pytest.fixture
def index(tmp_path):
    """index(wheels): an index of (name, version, requires) wheels."""
    started = []

    def make(wheels):
        ix = pkgindex.Index()
        for name, version, requires in wheels:
            ix.add(pkgindex.build_wheel(tmp_path / "wheels", name, version, requires=requires))
        started.append(ix.start())
        return ix
    yield make
    for ix in started:
        ix.stop()


def lock(cli, ix, reqs):
    f = cli.write("f.py", f"""
        @requirements({reqs!r})
        def f():
            return 1
        """)
    return cli("lock", NOSANDBOX, "--json", "--index-url", ix.url, f, check=None)


def versions(p):
    assert p.returncode == 0, (p.stdout, p.stderr)
    return {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]}


@pytest.mark.parametrize("x", ["x", "x[feat]", "yanked"])
def test_an_impossible_dependency_among_many_packages_is_named_not_given_up_on(cli, tmp_path, index, x):
    # Fourteen packages of two versions each, and x, whose every version
    # needs a y that does not exist (for its extra `feat`, in the second
    # case). pip says x's versions conflict; the chronological
    # backtracking tried x again under each of the 2^14 combinations of
    # the others and said "gave up after 20000 attempts: the requirements
    # are too loose … pin some versions".
    # In the third, the y 2.0 that x wants is yanked: tried as a
    # fallback (something decided later might pin it), it failed at the
    # end for want of a pin, which was taken to depend on every decision.
    wheels = [(f"n{i}", v, []) for i in range(14) for v in ("1.0", "2.0")]
    dep = 'y>=2; extra == "feat"' if x == "x[feat]" else "y>=2"
    wheels += [("x", f"{v}.0", [dep]) for v in (1, 2, 3)] + [("y", "1.0", [])]
    ix = index(wheels)
    if x == "yanked":
        ix.add(pkgindex.build_wheel(tmp_path / "yanked", "y", "2.0"), yanked="broken")
    reqs = dict({f"n{i}": "" for i in range(14)}, **{x.replace("yanked", "x"): ""})
    p = lock(cli, ix, reqs)
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "gave up" not in p.stderr, p.stderr
    assert "y>=2" in p.stderr and "available: " in p.stderr and "1.0)" in p.stderr, p.stderr
    # … and that no version of x would do, as pip's "Cannot install x==1.0,
    # x==2.0 and x==3.0" and uv's "all versions of x depend on y>=2" say:
    # naming x 3.0 alone sent the user pinning x<3.
    assert "x 3.0, 2.0 and 1.0 were each tried" in p.stderr, p.stderr


def test_a_conflict_says_every_version_of_a_package_was_tried(cli, index):
    ix = index([("a", "2.0", ["c>=3"]), ("a", "1.0", ["c>=2"]), ("b", "1.0", ["c<2"]),
                ("c", "1.0", []), ("c", "2.0", []), ("c", "3.0", [])])
    p = lock(cli, ix, {"a": "", "b": ""})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "b 1.0 wants c<2" in p.stderr and "a 2.0 and 1.0 were each tried" in p.stderr, p.stderr


def test_a_package_you_name_is_not_held_back_for_a_newer_dependency(cli, index):
    # a needs c>=2; b 3.0 needs c<2, b 2.0 c<3. pip and uv both lock
    # b 2.0 with c 2.0: what you named comes first. Deciding c first (it
    # had the fewest versions left) took c 3.0 and held b back to 1.0.
    ix = index([("a", "1.0", ["c>=2"]), ("b", "3.0", ["c<2"]), ("b", "2.0", ["c<3"]), ("b", "1.0", []),
                ("c", "1.0", []), ("c", "2.0", []), ("c", "3.0", [])])
    assert versions(lock(cli, ix, {"a": "", "b": ""})) == {"a": "1.0", "b": "2.0", "c": "2.0"}


class RawGtIndex(pkgindex.Index):
    """An HTML index that leaves `>` unescaped inside its quoted attribute
    values (data-requires-python=">=3.12"): legal HTML, which pip's parser
    reads as any browser does, though PEP 503 asks servers to escape it."""

    def project_html(self, name):
        return super().project_html(name).replace(b"&gt;", b">")


def test_a_greater_than_sign_inside_a_quoted_attribute_does_not_end_the_link(cli, tmp_path):
    # The tag ended at the first `>`: requires-python read as "" (and every
    # attribute after it lost), so a.2.0, for Python 3.12 only, was locked
    # on this 3.11 — pip takes 1.0.
    ix = RawGtIndex(mode="html")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "2.0"), requires_python=">=3.12")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "1.0"), yanked="broken > use 2.0")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "0.9"))
    ix.start()
    try:
        assert versions(lock(cli, ix, {"a": "", "b": ""})) == {"a": "1.0", "b": "0.9"}
    finally:
        ix.stop()


def test_many_packages_pinning_one_dependency_resolve_at_once(cli, index):
    # Each version V of p0…p11 pins core==V, and p0 goes up to 3.0 only:
    # pip locks everything at 3.0. Deciding the packages you named before
    # core, whose pins already left it no version, tried the others'
    # combinations first and gave up after 20000 attempts.
    wheels = [("core", f"{v}.0", []) for v in range(1, 11)]
    wheels += [("p0", f"{v}.0", [f"core=={v}.0"]) for v in range(1, 4)]
    wheels += [(f"p{i}", f"{v}.0", [f"core=={v}.0"]) for i in range(1, 12) for v in range(1, 11)]
    got = versions(lock(cli, index(wheels), {f"p{i}": "" for i in range(12)}))
    assert got == dict({f"p{i}": "3.0" for i in range(12)}, core="3.0")
