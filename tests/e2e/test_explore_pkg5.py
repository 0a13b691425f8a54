"""Packages as pip and uv handle them, where a user would notice (helper
pkg5; a real local index on 127.0.0.1, pip 23's answers where it runs):

- index pages' character references decoded as pip's html.unescape does:
  every HTML5 name (`&hellip;`, `&period;`), numeric ones past ASCII;
- requirements whose markers do not apply are said, as pip's "Ignoring";
- resolving hundreds of packages (a chain and a wide set) locks them all;
- pre-releases as pip allows them, judged against pip itself."""
import html
import html.entities
import json
import pathlib
import random
import subprocess
import sys

import pytest

from conftest import BUILD, CLI, WORKER
import pkgindex
from test_explore_uvparity import lock, versions

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

ROOT = pathlib.Path(__file__).resolve().parents[2]
ORACLE = BUILD / "tests" / "unit" / "pkg-syntax-oracle"


# ---- HTML character references ------------------------------------------------------

def unescape_all(texts):
    """The oracle's pkg_html_unescape of each text (bytes in, str out)."""
    lines = "".join(f"unescape\t{t.encode().hex()}\n" for t in texts)
    p = subprocess.run([str(ORACLE)], input=lines, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return [bytes.fromhex(h).decode("utf-8", "surrogateescape") for h in p.stdout.split("\n")[:len(texts)]]


def test_every_html5_reference_is_decoded_as_html_unescape_does():
    # pip reads an index page with html.parser, which unescapes attribute
    # values with html.unescape: the whole HTML5 table. pysprinter knew
    # the legacy names and a few longer ones; `&hellip;` stayed as text.
    texts = []
    for key in html.entities.html5:
        texts += [f"&{key}", f"x&{key}y", f"&{key};", f"&{key}=3.8"]
    texts += [f"&#{n};" for n in list(range(0, 0x3000)) + [0xd800, 0xdfff, 0xfdd0, 0xfffe, 0x10ffff, 0x110000, 10**30]]
    texts += [f"&#x{n:X}" for n in range(0x70, 0xb0)] + ["&#x1F600;", "&#128512", "&#", "&#x;", "&;", "&"]
    rnd = random.Random(5)
    alphabet = list("&#;xX0123456789abAElg tn;<>=") + ["amp", "notin", "gt", "hellip", "NewLine", "ltri"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))) for _ in range(3000)]
    got = unescape_all(texts)
    bad = [(t, g, html.unescape(t)) for t, g in zip(texts, got) if g != html.unescape(t)]
    assert not bad, bad[:20]


def test_the_checked_in_entity_table_is_what_its_generator_writes():
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "gen-html5-entities.py")],
                       capture_output=True, text=True, check=True)
    assert p.stdout == (ROOT / "src" / "pkg" / "pkg-html5-entities.h").read_text()


class EntityIndex(pkgindex.Index):
    """An HTML index that writes the dots of its links' file names as
    `&period;` and a yanked reason with `&hellip;` and `&rarr;`: legal
    HTML5 references, which pip decodes."""

    def project_html(self, name):
        page = super().project_html(name).decode()
        page = page.replace("broken...", "broken&hellip; &rarr; use 1&period;1")
        return page.replace("-1.1-py3", "-1&period;1-py3").encode()


def test_html5_named_references_in_links_and_reasons_are_decoded(cli, tmp_path):
    ix = EntityIndex(mode="html")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.1"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "1.0"), yanked="broken...")
    ix.start()
    try:
        p = lock(cli, ix, {"a": "", "b": "==1.0"})
        assert versions(p) == {"a": "1.1", "b": "1.0"}, p.stderr
        assert 'is yanked (reason: "broken\u2026 \u2192 use 1.1")' in p.stderr, p.stderr
    finally:
        ix.stop()


# ---- many packages ----------------------------------------------------------------

@pytest.mark.parametrize("shape", ["chain", "wide"])
def test_hundreds_of_packages_lock(cli, tmp_path, shape):
    # 300 packages of two versions: a chain (each wants the next, >=1) or
    # a wide set (one package wants them all). Each step of the search
    # scanned every constraint for each project: the CPU grew with the
    # cube of the count (400 wide: 2.1 s of CPU, 0.7 s now). Not timed
    # here; what a user checks is the lock.
    n = 300
    ix = pkgindex.Index()
    for i in range(n):
        req = [f"p{i + 1}>=1"] if shape == "chain" and i + 1 < n else []
        for v in ("1.0", "2.0"):
            ix.add(pkgindex.build_wheel(tmp_path / "w", f"p{i}", v, requires=req))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "root", "1.0", requires=[f"p{i}>=1" for i in range(n)]))
    ix.start()
    try:
        got = versions(lock(cli, ix, {"p0" if shape == "chain" else "root": ""}))
        want = {f"p{i}": "2.0" for i in range(n)}
        if shape == "wide":
            want["root"] = "1.0"
        assert got == want
    finally:
        ix.stop()


# ---- requirements whose markers do not apply ---------------------------------------

MARKED = {"pywin32": '>=300; sys_platform == "win32"', "a": "", "b": "; python_version < '3'"}


def test_lock_says_which_requirements_its_markers_leave_out(cli, tmp_path):
    # pip: "Ignoring pywin32: markers 'sys_platform == "win32"' don't
    # match your environment". pysprinter said nothing: the lock simply
    # lacked pywin32, and a user reading it could not tell a marker from
    # a bug. `lock` says it (stderr, each time, the cached lock too) and
    # its JSON lists them; a run stays silent, as uv's.
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.0"))
    ix.start()
    try:
        want = ["pysprinter: ignoring b: markers 'python_version < \"3\"' don't match this interpreter",
                "pysprinter: ignoring pywin32: markers 'sys_platform == \"win32\"' don't match this interpreter"]
        for _ in range(2):  # resolved, then from the lock cache
            p = lock(cli, ix, MARKED)
            assert versions(p) == {"a": "1.0"}
            assert [l for l in p.stderr.splitlines() if "ignoring" in l] == want, p.stderr
            assert json.loads(p.stdout)["ignored"] == [
                {"name": "b", "marker": 'python_version < "3"'},
                {"name": "pywin32", "marker": 'sys_platform == "win32"'}]
        f = cli.write("g.py", f"""
            @requirements({MARKED!r})
            def g():
                import a
                return a.__version__
            """)
        p = cli("run", "--sandbox=none", "--index-url", ix.url, f, check=0)
        assert p.stdout.strip() == "1.0" and "ignoring" not in p.stderr, p.stderr
        # A lock whose requirements all apply is written as before.
        p = lock(cli, ix, {"a": ""})
        assert "ignored" not in json.loads(p.stdout) and "ignoring" not in p.stderr, (p.stdout, p.stderr)
    finally:
        ix.stop()


# ---- pre-releases, against pip itself ----------------------------------------------

def pip_answer(ix, tmp_path, reqs):
    """pip 23's `install --dry-run --report` of reqs against ix: {name:
    version}, or None when pip finds no solution."""
    import os
    report = tmp_path / "report.json"
    env = dict(os.environ, PIP_BREAK_SYSTEM_PACKAGES="1", PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    p = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                        "--report", str(report), "--index-url", ix.url, *(k + v for k, v in reqs.items())],
                       capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        return None
    return {x["metadata"]["name"]: x["metadata"]["version"] for x in json.loads(report.read_text())["install"]}


PR = [("pr", "1.0", []), ("pr", "2.0b1", [])]
PRE_CASES = {
    # A specifier naming a pre-release allows them, for that package only.
    "ge-pre": (PR + [("o", "1.0", []), ("o", "2.0b1", [])], {"pr": ">=2.0b1", "o": ""}),
    "any": (PR, {"pr": ""}),
    "lt-pre": (PR, {"pr": "<2.0b2"}),          # `<` naming one does not
    "le-pre": (PR, {"pr": ">=0.5,<=2.0b1"}),
    "compatible": (PR, {"pr": "~=2.0b1"}),
    "only-pre": ([("pr", "2.0b1", [])], {"pr": ""}),
    "dev": ([("pr", "1.0", []), ("pr", "2.0.dev1", [])], {"pr": ">=2.0.dev0"}),
    "final-wins": (PR + [("pr", "2.0", [])], {"pr": ">=2.0b1"}),
    "not-for-deps": ([("pr", "1.0", ["dep"]), ("pr", "2.0b1", ["dep"]), ("dep", "1.0", []), ("dep", "2.0rc1", [])],
                     {"pr": ">=2.0b1"}),
    # A dependency's specifier counts too: pip takes a 1.0 and pr 2.0b1.
    # pysprinter decided pr first (one final release: "fewest options"),
    # and pr 1.0 held a back to 0.5.
    "dependency-asks": (PR + [("a", "1.0", ["pr>=2.0b1"]), ("a", "0.5", [])], {"pr": "", "a": ""}),
    "dependency-pins-final": (PR + [("a", "1.0", ["pr>=2.0b1"]), ("a", "0.5", []), ("b", "1.0", ["pr<2"])],
                              {"b": "", "a": ""}),
}


@pytest.mark.parametrize("case", sorted(PRE_CASES))
def test_pre_releases_as_pip_allows_them(cli, tmp_path, case):
    wheels, reqs = PRE_CASES[case]
    ix = pkgindex.Index(mode="html")  # pip 23.0 cannot read PEP 691's core-metadata objects
    for name, version, requires in wheels:
        ix.add(pkgindex.build_wheel(tmp_path / "w", name, version, requires=requires))
    ix.start()
    try:
        want = pip_answer(ix, tmp_path, reqs)
        if want is None:
            pytest.skip("pip found no solution")
        assert versions(lock(cli, ix, reqs)) == want
    finally:
        ix.stop()
