"""Packages as a pip/uv user pokes at them: the index's hashes in any hex
case, wheels that differ only by build tag, ... — each test a defect
found by trying it (a real local index on 127.0.0.1, the real CLI)."""
import base64
import hashlib
import json
import os
import re

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

NOSANDBOX = "--sandbox=none"
HEX64 = re.compile(r"(sha256\"?\s*[=:]\s*\"?)([0-9a-f]{64})")


class UpperHexIndex(pkgindex.Index):
    """An index that writes every sha256 (files and PEP 658 metadata) in
    upper-case hex: PEP 691 and PEP 503 say "hex digest", not which case."""

    def project_json(self, name):
        return HEX64.sub(lambda m: m.group(1) + m.group(2).upper(), super().project_json(name).decode()).encode()

    def project_html(self, name):
        return HEX64.sub(lambda m: m.group(1) + m.group(2).upper(), super().project_html(name).decode()).encode()


def run_file(cli, index, reqs, body="return 1"):
    f = cli.write("f.py", f"""
        @requirements({reqs!r})
        def f():
            {body}
        """)
    return cli("run", NOSANDBOX, "--json", "--index-url", index.url, f, check=None)


def lock_file(cli, index, reqs):
    f = cli.write("f.py", f"""
        @requirements({reqs!r})
        def f():
            return 1
        """)
    return cli("lock", NOSANDBOX, "--json", "--index-url", index.url, f, check=None)


@pytest.fixture
def served():
    started = []

    def serve(ix):
        started.append(ix.start())
        return ix
    yield serve
    for ix in started:
        ix.stop()


# ---- the index's hashes are checked whatever the case of their hex ----------

@pytest.mark.parametrize("mode", ["json", "html"])
def test_an_upper_case_file_hash_is_checked(cli, tmp_path, served, mode):
    """A PEP 691 page's "hashes": {"sha256": "ABC…"} was dropped as not a
    sha256 (only lower case was accepted), so a wheel whose bytes did not
    match the index's hash was installed without a word."""
    good = pkgindex.build_wheel(tmp_path / "g", "uph", "1.0")
    other = pkgindex.sha256_file(pkgindex.build_wheel(tmp_path / "o", "uph", "1.0", files={"uph.py": "X = 2\n"}))
    ix = served(UpperHexIndex(mode=mode))
    ix.add(good, sha256=other)        # the index vouches for other bytes
    p = run_file(cli, ix, {"uph": ""})
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "sha256 mismatch" in p.stderr and good.name in p.stderr, p.stderr


@pytest.mark.parametrize("mode", ["json", "html"])
def test_an_upper_case_file_hash_that_matches_installs(cli, tmp_path, served, mode):
    w = pkgindex.build_wheel(tmp_path / "g", "uph", "1.0")
    ix = served(UpperHexIndex(mode=mode))
    ix.add(w)
    p = run_file(cli, ix, {"uph": ""}, body="import uph; return uph.__version__")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert json.loads(p.stdout) == "1.0"
    lk = json.loads(lock_file(cli, ix, {"uph": ""}).stdout)
    assert lk["packages"][0]["sha256"] == pkgindex.sha256_file(w), lk


@pytest.mark.parametrize("mode", ["json", "html"])
def test_an_upper_case_metadata_hash_is_checked(cli, tmp_path, served, mode):
    """PEP 658/714: the .metadata file's hash (core-metadata /
    data-core-metadata) in upper case was ignored, so metadata the index
    did not vouch for decided the dependencies."""
    w = pkgindex.build_wheel(tmp_path / "w", "upm", "1.0")

    class WrongMeta(UpperHexIndex):
        def project_json(self, name):
            return self._spoil(super().project_json(name))

        def project_html(self, name):
            return self._spoil(super().project_html(name))

        @staticmethod
        def _spoil(body):
            meta = pkgindex.IndexFile(w).core_metadata()
            good = hashlib.sha256(meta).hexdigest().upper()
            wrong = hashlib.sha256(meta + b"tampered").hexdigest().upper()
            return body.replace(good.encode(), wrong.encode())

    ix = served(WrongMeta(mode=mode))
    ix.add(w)
    p = lock_file(cli, ix, {"upm": ""})
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "does not match the index's" in p.stderr and "upm" in p.stderr, p.stderr


# ---- PEP 427: the build tag breaks a tie between equal wheels ---------------

def _with_build(path, build):
    name, version, rest = path.name.split("-", 2)
    target = path.with_name(f"{name}-{version}-{build}-{rest}")
    os.replace(path, target)
    return target


@pytest.mark.parametrize("builds,winner", [(["1", "2"], "2"), (["2", "1"], "2"), (["9", "10"], "10"),
                                           (["", "1"], "1"), (["1", "1a"], "1a")])
def test_the_highest_build_tag_wins(cli, tmp_path, served, builds, winner):
    """Two wheels of one version that differ only by build tag (a fixed
    wheel re-uploaded): PEP 427 says the build tag breaks the tie, as a
    (number, rest) pair, higher wins, none sorting first. The file name's
    text order was used, so 'bt-1.0-1-…' beat 'bt-1.0-2-…'."""
    ix = served(pkgindex.Index())
    for b in builds:
        w = pkgindex.build_wheel(tmp_path / (b or "none"), "bt", "1.0", files={"bt.py": f"BUILD = {b!r}\n"})
        ix.add(_with_build(w, b) if b else w)
    p = lock_file(cli, ix, {"bt": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert json.loads(p.stdout)["packages"][0]["filename"] == f"bt-1.0-{winner}-py3-none-any.whl", p.stdout
    p = run_file(cli, ix, {"bt": ""}, body="import bt; return bt.BUILD")
    assert p.returncode == 0 and json.loads(p.stdout) == winner, (p.stdout, p.stderr)


def test_a_missing_project_lists_the_sources_it_was_looked_for_in(cli, tmp_path, served):
    """The sources read "find-links DIR;index URL", glued by a bare ';'."""
    ix = served(pkgindex.Index())
    ix.add(pkgindex.build_wheel(tmp_path / "ix", "there", "1.0"))
    d = tmp_path / "wheels"
    pkgindex.build_wheel(d, "local", "1.0")
    f = cli.write("f.py", """
        @requirements({'absent': ''})
        def f():
            return 1
        """)
    p = cli("lock", NOSANDBOX, "--index-url", ix.url, "--find-links", d, f, check=None)
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert f"on any configured source (find-links {d}; index {ix.url}" in p.stderr, p.stderr


# ---- a missing dependency names who wants it --------------------------------

def test_a_missing_dependency_names_the_package_that_wants_it(cli, tmp_path, served):
    """{'app': ''} whose app 1.0 requires 'helpr>=1', absent from the index,
    failed with only "no project named 'helpr'": a name the user never
    wrote, with nothing to say where it came from (pip: "(from app)")."""
    ix = served(pkgindex.Index())
    ix.add(pkgindex.build_wheel(tmp_path, "app", "1.0", requires=["helpr>=1"]))
    ix.add(pkgindex.build_wheel(tmp_path, "helper", "1.0"))
    p = lock_file(cli, ix, {"app": ""})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "no project named 'helpr'" in p.stderr, p.stderr
    assert "app 1.0 wants helpr>=1" in p.stderr, p.stderr
    assert "Did you mean 'helper'?" in p.stderr, p.stderr
    # A name the user wrote is not said to be wanted by anyone else.
    p = lock_file(cli, ix, {"helpr": ""})
    assert p.returncode == 4 and "wants" not in p.stderr, p.stderr
    # A dependency an extra brought in: its marker is not part of the
    # sentence ("…; extra == "socks"" read as one more item).
    ix.add(pkgindex.build_wheel(tmp_path, "sockz", "1.0", extras=["socks"],
                                requires=['PySockz>=1.5; extra == "socks"']))
    p = lock_file(cli, ix, {"sockz[socks]": ""})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "; sockz 1.0 wants pysockz>=1.5." in p.stderr and "extra ==" not in p.stderr, p.stderr


# ---- a PEP 691 file whose hash rides on its URL ------------------------------

class FragmentHashIndex(pkgindex.Index):
    """PEP 691 pages whose files carry their sha256 only as the URL's
    #sha256= fragment (the PEP 503 habit), with an empty "hashes"."""

    def project_json(self, name):
        page = json.loads(super().project_json(name))
        for f in page["files"]:
            f["url"] += "#sha256=" + f["hashes"].pop("sha256")
        return json.dumps(page).encode()


def test_a_json_pages_url_fragment_hash_is_checked(cli, tmp_path, served):
    """The fragment was cut off the URL and thrown away, so a JSON page's
    only hash went unchecked (pip merges the fragment into the hashes)."""
    good = pkgindex.build_wheel(tmp_path / "g", "frag", "1.0")
    other = pkgindex.sha256_file(pkgindex.build_wheel(tmp_path / "o", "frag", "1.0", files={"frag.py": "X = 2\n"}))
    ix = served(FragmentHashIndex(mode="json"))
    ix.add(good, sha256=other)
    p = run_file(cli, ix, {"frag": ""})
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "sha256 mismatch" in p.stderr and other in p.stderr, p.stderr
    # The right hash installs, and the URL the lock records has no fragment.
    ix.files[0].sha256 = ix.files[0].real_sha256
    p = run_file(cli, ix, {"frag": ""}, body="import frag; return frag.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "1.0", (p.stdout, p.stderr)


# ---- a package's own extras are not a dependency on itself -------------------

def test_a_package_asking_for_its_own_extras_does_not_depend_on_itself(cli, tmp_path, served):
    """Extras that pull in other extras of the same package (pkg[all]
    requiring pkg[one], the way many projects write "all") made the lock
    list the package among its own dependencies: a self-loop in the graph
    `lock --json` gives tools."""
    ix = served(pkgindex.Index())
    ix.add(pkgindex.build_wheel(tmp_path, "kit", "1.0", extras=["one", "all"],
                                requires=['leaf; extra == "one"', 'kit[one]; extra == "all"']))
    ix.add(pkgindex.build_wheel(tmp_path, "leaf", "1.0"))
    p = lock_file(cli, ix, {"kit[all]": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    deps = {pk["name"]: pk["dependencies"] for pk in json.loads(p.stdout)["packages"]}
    assert deps == {"kit": ["leaf"], "leaf": []}, deps


# ---- pre-releases: the rule holds over the final set, not the decision order -

@pytest.fixture
def pre_index(tmp_path, served):
    ix = served(pkgindex.Index())
    for name, version, requires in [
            ("pr", "1.0", ["q<1"]), ("pr", "2.0b1", []),
            ("needpr", "1.0", ["pr>=2.0b1"]),      # names a pre-release
            ("newpr", "1.0", ["pr>1.5"]),          # only a pre-release matches
            ("q", "0.5", []), ("q", "1.5", [])]:
        ix.add(pkgindex.build_wheel(tmp_path, name, version, requires=requires))
    return ix


@pytest.mark.parametrize("other", ["needpr", "newpr"])
@pytest.mark.parametrize("first", [True, False])
def test_a_pre_release_a_dependency_needs_is_found_in_any_key_order(cli, pre_index, other, first):
    """{'pr': '', 'needpr': ''} with needpr requiring pr>=2.0b1 failed
    ("pr 1.0 was the best candidate…") while {'needpr': '', 'pr': ''}
    resolved to pr 2.0b1: pr was decided under the root's '' alone, which
    excludes pre-releases, and backtracking never offered 2.0b1. pip
    resolves both orders; and since the lock cache key ignores the order,
    which one ran first decided whether the other failed."""
    reqs = {"pr": "", other: ""} if first else {other: "", "pr": ""}
    p = lock_file(cli, pre_index, reqs)
    assert p.returncode == 0, (p.stdout, p.stderr)
    got = {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]}
    assert got == {"pr": "2.0b1", other: "1.0"}, got


def test_a_pre_release_nothing_asks_for_is_still_not_chosen(cli, pre_index):
    assert {pk["name"]: pk["version"] for pk in json.loads(lock_file(cli, pre_index, {"pr": ""}).stdout)["packages"]} \
        == {"pr": "1.0", "q": "0.5"}
    # pr 1.0 needs q<1 and the user wants q>=1: pr 2.0b1 (no deps) would
    # "solve" it, but no specifier names a pre-release and a final release
    # of pr matches them all, so PEP 440 (and pip) keep 2.0b1 out.
    p = lock_file(cli, pre_index, {"pr": "", "q": ">=1"})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "q" in p.stderr and "2.0b1" not in p.stdout, p.stderr


# ---- yanked: a pin by a dependency counts whatever the order of the keys -----

@pytest.fixture
def yank_index(tmp_path, served):
    ix = served(pkgindex.Index())
    for name, version, requires, kw in [
            ("yk", "1.0", [], {}), ("yk", "2.0", [], {"yanked": "broken"}),
            ("gone", "1.0", [], {"yanked": True}),
            ("pinsyk", "1.0", ["yk==2.0"], {}), ("pinsgone", "1.0", ["gone==1.0"], {})]:
        ix.add(pkgindex.build_wheel(tmp_path, name, version, requires=requires), **kw)
    return ix


@pytest.mark.parametrize("reqs,want", [
    ({"yk": "", "pinsyk": ""}, {"yk": "2.0", "pinsyk": "1.0"}),
    ({"pinsyk": "", "yk": ""}, {"yk": "2.0", "pinsyk": "1.0"}),
    ({"gone": "", "pinsgone": ""}, {"gone": "1.0", "pinsgone": "1.0"}),
    ({"pinsgone": "", "gone": ""}, {"gone": "1.0", "pinsgone": "1.0"}),
])
def test_a_yanked_version_a_dependency_pins_is_used_in_any_key_order(cli, yank_index, reqs, want):
    """PEP 592: a yanked file is used when pinned with ==. A dependency's
    pin (pinsyk requiring yk==2.0) counted only if pinsyk was decided
    before yk; in the other key order yk 1.0 was taken and the pin was a
    conflict (and a project whose only version is yanked always failed)."""
    p = lock_file(cli, yank_index, reqs)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert {pk["name"]: pk["version"] for pk in json.loads(p.stdout)["packages"]} == want


def test_a_yanked_version_nothing_pins_is_still_not_used(cli, yank_index):
    p = lock_file(cli, yank_index, {"yk": ""})
    assert [pk["version"] for pk in json.loads(p.stdout)["packages"]] == ["1.0"], p.stdout
    p = lock_file(cli, yank_index, {"gone": ">=1"})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "no version of gone matches" in p.stderr and "1.0 (yanked)" in p.stderr, p.stderr
    # ... and says how to get it, which "(yanked)" alone did not.
    assert "a yanked version is used only when pinned with == (e.g. gone==1.0)" in p.stderr, p.stderr
    p = lock_file(cli, yank_index, {"gone": ">=2"})     # nothing yanked would match: no hint
    assert p.returncode == 4 and "pinned with ==" not in p.stderr, p.stderr


# ---- one requirement set, one lock: the order of the keys does not matter ----

def test_the_order_of_the_keys_does_not_change_the_lock(cli, tmp_path, served):
    """app 3.0 needs lib<1, app 2.0 needs lib>=1: both {app 3.0, lib 0.9}
    and {app 2.0, lib 1.5} are answers, and the one given depended on
    which key came first. The lock cache key ignores the order, so two
    files with the same requirements got whichever lock was resolved
    first on this machine (or cluster); from a fresh home each order gave
    its own."""
    ix = served(pkgindex.Index())
    for name, version, requires in [("app", "3.0", ["lib<1"]), ("app", "2.0", ["lib>=1"]),
                                    ("lib", "0.9", []), ("lib", "1.5", [])]:
        ix.add(pkgindex.build_wheel(tmp_path, name, version, requires=requires))
    got = []
    for reqs in ({"app": "", "lib": ""}, {"lib": "", "app": ""}):
        p = cli("lock", NOSANDBOX, "--json", "--no-cache", "--index-url", ix.url,
                cli.write("f.py", f"@requirements({reqs!r})\ndef f():\n    return 1\n"), check=None)
        assert p.returncode == 0, (p.stdout, p.stderr)
        lk = json.loads(p.stdout)
        got.append(lk["packages"])
        assert lk["requirements"] == list(reqs), lk     # still listed as written
    assert got[0] == got[1], got


def test_a_pre_release_or_yanked_fallback_in_the_lock_is_installed(cli, pre_index, yank_index):
    """Versions tried as fallbacks are not fetched early (a long shot);
    the one the lock names is still downloaded and installed by the run."""
    p = run_file(cli, pre_index, {"pr": "", "needpr": ""}, body="import pr; return pr.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "2.0b1", (p.stdout, p.stderr)
    p = run_file(cli, yank_index, {"yk": "", "pinsyk": ""}, body="import yk; return yk.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "2.0", (p.stdout, p.stderr)


def test_a_failing_resolution_does_not_try_pre_releases_nothing_asks_for(cli, tmp_path, served):
    """The fallbacks above are tried only when a requirement met in the
    search names a pre-release or pins: a plain conflict does not read the
    metadata of every pre-release of the project (20 here) on its way to
    the same error."""
    ix = served(pkgindex.Index())
    ix.add(pkgindex.build_wheel(tmp_path, "big", "1.0", requires=["q<1"]))
    for i in range(1, 21):
        ix.add(pkgindex.build_wheel(tmp_path, "big", f"2.0b{i}", requires=["q<1"]))
    for v in ("0.5", "1.5"):
        ix.add(pkgindex.build_wheel(tmp_path, "q", v))
    p = lock_file(cli, ix, {"big": "", "q": ">=1"})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "big 1.0 wants q<1" in p.stderr, p.stderr
    pre = [r for r in ix.requests if "big-2.0b" in r]
    assert pre == [], pre


# ---- an HTML page's comments are not links -----------------------------------

class CommentedIndex(pkgindex.Index):
    """A hand-kept static index: the broken 2.0 wheel taken out of the page
    by commenting its link out, as one does in HTML."""

    def project_html(self, name):
        page = super().project_html(name).decode()
        return re.sub(r'(<a [^>]*>cm-2\.0[^<]*</a>)', r"<!-- withdrawn: \1 -->", page).encode()


def test_a_link_commented_out_of_an_html_page_is_not_a_file(cli, tmp_path, served):
    """The HTML page was scanned for '<a' anywhere, comments included, so
    a wheel its maintainer had commented out was still the newest version
    and got installed; pip's HTML parser skips comments."""
    ix = served(CommentedIndex(mode="html"))
    for v in ("1.0", "2.0"):
        ix.add(pkgindex.build_wheel(tmp_path, "cm", v))
    assert "<!-- withdrawn: <a " in ix.project_html("cm").decode()
    p = lock_file(cli, ix, {"cm": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert [pk["version"] for pk in json.loads(p.stdout)["packages"]] == ["1.0"], p.stdout


class BaseHrefIndex(pkgindex.Index):
    """Links relative to a <base href> in the page's head, not to the page."""

    def project_html(self, name):
        page = super().project_html(name).decode()
        page = page.replace("<title>", '<base href="/files/"><title>').replace('href="../../files/', 'href="')
        return page.encode()


def test_an_html_pages_base_href_is_what_its_links_are_relative_to(cli, tmp_path, served):
    """pip resolves a page's links against its <base href>; they were
    resolved against the page's own URL, so every wheel was a 404."""
    ix = served(BaseHrefIndex(mode="html"))
    ix.add(pkgindex.build_wheel(tmp_path, "bh", "1.0"))
    p = run_file(cli, ix, {"bh": ""}, body="import bh; return bh.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "1.0", (p.stdout, p.stderr)
    lk = json.loads(lock_file(cli, ix, {"bh": ""}).stdout)
    assert lk["packages"][0]["url"].endswith("/files/bh-1.0-py3-none-any.whl"), lk


def test_a_base_href_cannot_point_a_remote_page_at_this_hosts_files(cli, tmp_path, served):
    """Which links a page may have is still decided by the page's URL: a
    remote page's <base href="file:///…"> does not make its links local."""
    local = tmp_path / "local"
    w = pkgindex.build_wheel(local, "bh", "1.0")

    class FileBase(pkgindex.Index):
        def project_html(self, name):
            page = super().project_html(name).decode()
            return page.replace("<title>", f'<base href="file://{local}/"><title>') \
                       .replace('href="../../files/', 'href="').encode()

    ix = served(FileBase(mode="html"))
    ix.add(w)
    p = lock_file(cli, ix, {"bh": ""})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert str(local) not in p.stderr + p.stdout, p.stderr


BAD_INDEX_URLS = [
    ("not a url", "index URL 'not a url' must start with http://, https:// or file://"),
    ("ftp://127.0.0.1/simple", "index URL 'ftp://127.0.0.1/simple' must start with"),
    ("http://u:pw@127.0.0.1/simple extra", "index URL 'http://u:****@127.0.0.1/simple extra' has white space"),
]


@pytest.mark.parametrize("url,message", BAD_INDEX_URLS)
def test_a_bad_index_url_is_a_usage_error_on_both_paths(cli, parity_daemon, url, message):
    """uv refuses `--index-url 'not a url'` as a bad option value (exit 2).
    pysprinter took it, split it on its spaces and failed only at a run
    that had a requirement, as an install error (exit 4) naming its first
    word; a function without requirements ran as if it were fine."""
    f = cli.write("f.py", """
        def f():
            return 1
        """)
    dag = cli.write("p.yaml", "tasks:\n  a:\n    run: f.py\n")
    for pre in ([], ["--server", parity_daemon.url]):
        for verb in (["run", f], ["validate", f], ["dag", "run", dag]):
            p = cli(*verb, *pre, "--index-url", url, check=None)
            assert p.returncode == 2 and p.stdout == "", (verb, pre, p.stdout, p.stderr)
            assert f"--index-url: {message}" in p.stderr, (verb, pre, p.stderr)
            assert "pw" not in p.stderr
    p = cli("env", "prepare", "--index-url", url, "six", check=None)
    assert p.returncode == 2 and f"--index-url: {message}" in p.stderr, p.stderr


# ---- a hash the index garbles is an error, not "no hash" ---------------------

GARBLED = ["not-a-hash", "ab" * 31, "g" * 64]


@pytest.mark.parametrize("metadata", [True, False])
@pytest.mark.parametrize("mode", ["json", "html"])
@pytest.mark.parametrize("claimed", GARBLED)
def test_a_garbled_file_hash_is_refused_not_taken_for_none(cli, tmp_path, served, claimed, mode, metadata):
    """A sha256 that is not 64 hex digits was dropped as if the index gave
    none, and the wheel installed unverified. pip and uv compare what the
    index claims and refuse a mismatch; a garbled claim never matches."""
    ix = served(pkgindex.Index(mode=mode))
    ix.add(pkgindex.build_wheel(tmp_path, "tiny", "1.0"), sha256=claimed, metadata=metadata)
    p = run_file(cli, ix, {"tiny": ""})
    assert p.returncode == 4 and p.stdout == "", (p.stdout, p.stderr)
    assert "index's sha256 for tiny-1.0-py3-none-any.whl is not a sha256" in p.stderr, p.stderr


class FragmentParamsIndex(pkgindex.Index):
    """PEP 503 pages whose fragments carry more than the hash, as pip
    reads them: "#egg=NAME&sha256=HEX"."""

    def project_html(self, name):
        return super().project_html(name).replace(b"#sha256=", b"#egg=" + name.encode() + b"&sha256=")


def test_a_sha256_among_fragment_parameters_is_checked(cli, tmp_path, served):
    """Only a fragment that began with "sha256=" counted: "#egg=x&sha256=…"
    was "no hash", so a wheel that did not match installed."""
    ix = served(FragmentParamsIndex(mode="html"))
    ix.add(pkgindex.build_wheel(tmp_path, "tiny", "1.0"), sha256="ab" * 32)
    p = run_file(cli, ix, {"tiny": ""})
    assert p.returncode == 4 and "sha256 mismatch" in p.stderr and "ab" * 32 in p.stderr, p.stderr
    ix.files[0].sha256 = ix.files[0].real_sha256
    p = run_file(cli, ix, {"tiny": ""}, body="import tiny; return tiny.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "1.0", (p.stdout, p.stderr)


class GarbledMetadataHashIndex(pkgindex.Index):
    def project_json(self, name):
        page = json.loads(super().project_json(name))
        for f in page["files"]:
            f["core-metadata"] = f["dist-info-metadata"] = {"sha256": "zz"}
        return json.dumps(page).encode()


def test_a_garbled_metadata_hash_is_refused(cli, tmp_path, served):
    """PEP 658 metadata with a garbled hash was read unverified, and the
    resolver chose on its word."""
    ix = served(GarbledMetadataHashIndex(mode="json"))
    ix.add(pkgindex.build_wheel(tmp_path, "tiny", "1.0"))
    p = run_file(cli, ix, {"tiny": ""})
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "index's sha256 for tiny-1.0-py3-none-any.whl's metadata is not a sha256" in p.stderr, p.stderr


# ---- RECORD hashes other than sha256 -----------------------------------------

def _record_hash(algo, data):
    return f"{algo}=" + base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()


def _wheel_recorded_with(outdir, algo, recorded_body):
    body = b"__version__ = '1.0'\n"

    def tamper(rows):
        return [(p, _record_hash(algo, recorded_body) if p == "tiny.py" else h, s) for p, h, s in rows]
    return pkgindex.build_wheel(outdir, "tiny", "1.0", files={"tiny.py": body}, record_tamper=tamper), body


@pytest.mark.parametrize("algo", ["sha384", "sha512", "sha3_256", "blake2b"])
def test_a_record_hashed_with_sha256_or_better_is_checked_and_installs(cli, tmp_path, served, algo):
    """PEP 427 lets RECORD use any of hashlib's guaranteed algorithms
    "sha256 or better": a valid wheel hashed with sha512 was refused. It
    now installs, and the hash is still checked (a wrong one is refused)."""
    w, body = _wheel_recorded_with(tmp_path / "good", algo, b"__version__ = '1.0'\n")
    p = run_file(cli, _index_with(served, w), {"tiny": ""},
                 body="import tiny; return tiny.__version__")
    assert p.returncode == 0 and json.loads(p.stdout) == "1.0", (p.stdout, p.stderr)
    w, _ = _wheel_recorded_with(tmp_path / "bad", algo, b"something else\n")
    p = run_file(cli, _index_with(served, w), {"tiny": ""})
    assert p.returncode == 4 and "entry 'tiny.py': content does not match RECORD" in p.stderr, p.stderr
    assert _record_hash(algo, body) in p.stderr, p.stderr


def _index_with(served, wheel):
    ix = served(pkgindex.Index())
    ix.add(wheel)
    return ix


@pytest.mark.parametrize("algo", ["md5", "sha1"])
def test_a_record_hashed_with_md5_or_sha1_is_refused(cli, tmp_path, served, algo):
    w, _ = _wheel_recorded_with(tmp_path, algo, b"__version__ = '1.0'\n")
    p = run_file(cli, _index_with(served, w), {"tiny": ""})
    assert p.returncode == 4 and "is not sha256 or better (PEP 427: not md5 or sha1)" in p.stderr, p.stderr


# ---- what pip and uv warn of and install anyway -------------------------------

def warnings_of(stderr):
    """The warning lines, without --sandbox=none's own."""
    return [ln + "\n" for ln in stderr.splitlines() if "warning:" in ln and "--sandbox=none" not in ln]


@pytest.fixture
def warn_index(tmp_path, served):
    ix = served(pkgindex.Index())
    ix.add(pkgindex.build_wheel(tmp_path, "yk", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path, "yk", "2.0"), yanked="broken build")
    ix.add(pkgindex.build_wheel(tmp_path, "gone", "1.0"), yanked=True)
    ix.add(pkgindex.build_wheel(tmp_path, "plain", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path, "socksy", "1.0", requires=['plain; extra == "socks"'], extras=["socks"]))
    # Metadata 2.0 style: the extra is used in a marker but not listed.
    ix.add(pkgindex.build_wheel(tmp_path, "oldmeta", "1.0", requires=['plain; extra == "fast"']))
    return ix


@pytest.mark.parametrize("reqs,warning", [
    ({"yk": "==2.0"}, 'pysprinter: warning: `yk==2.0` is yanked (reason: "broken build")\n'),
    ({"gone": "==1.0"}, "pysprinter: warning: `gone==1.0` is yanked\n"),
    ({"socksy[nope]": ""}, "pysprinter: warning: the package `socksy==1.0` does not have an extra named `nope`\n"),
    ({"socksy[Socks,nope]": ""},
     "pysprinter: warning: the package `socksy==1.0` does not have an extra named `nope`\n"),
])
def test_a_yanked_pin_and_an_unknown_extra_are_warned_of(cli, warn_index, reqs, warning):
    """PEP 592 asks an installer that uses a yanked version (pinned with
    ==) to warn with the reason; pip and uv also warn of an extra the
    package does not have (a typo in "requests[sock]" installs nothing
    extra). Both used to install in silence. The warning is on the run's
    stderr, once (the run that resolved), and the run succeeds; `lock`
    says it too."""
    p = run_file(cli, warn_index, reqs)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert warnings_of(p.stderr) == [warning], p.stderr
    again = run_file(cli, warn_index, reqs)          # the cached lock: silent, as uv's
    assert again.returncode == 0 and warnings_of(again.stderr) == [], again.stderr
    p = cli("lock", "--no-cache", "--index-url", warn_index.url, "f.py", check=None)
    assert p.returncode == 0 and warnings_of(p.stderr) == [warning], (p.stdout, p.stderr)


@pytest.mark.parametrize("reqs", [{"socksy[socks]": ""}, {"socksy[SOCKS]": ""}, {"oldmeta[fast]": ""},
                                  {"yk": ""}, {"yk": ">=1,!=2.0"}])
def test_a_known_extra_and_an_unyanked_version_are_not_warned_of(cli, warn_index, reqs):
    p = run_file(cli, warn_index, reqs)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert warnings_of(p.stderr) == [], p.stderr


def test_resolver_warnings_print_the_same_bytes_through_a_daemon(cli, warn_index, tmp_path):
    """The warning is the run's stderr, so `run --server` prints the bytes
    the embedded run prints, and the run's log keeps it."""
    from daemonlib import Daemon
    f = cli.write("w.py", """
        @requirements({"yk": "==2.0", "socksy[nope]": ""})
        def f():
            return 1
        """)
    d = Daemon(tmp_path / "d", args=["--no-auth"], config_extra=f"index:\n  url: {warn_index.url}\n")
    with d.serving():
        out = {}
        for server in (None, d.url):
            how = ["--server", server] if server else [NOSANDBOX, "--index-url", warn_index.url]
            p = cli("run", "--no-cache", *how, f, check=None)
            assert p.returncode == 0, (server, p.stdout, p.stderr)
            out[server] = (p.stdout, warnings_of(p.stderr))
        assert out[None] == out[d.url]
        assert out[None][1] == ['pysprinter: warning: the package `socksy==1.0` does not have an extra named `nope`\n',
                                'pysprinter: warning: `yk==2.0` is yanked (reason: "broken build")\n'], out
        rid = json.loads(cli("--server", d.url, "ps", "--json", "-n", "1").stdout)[0]["id"]
        logs = cli("--server", d.url, "logs", rid, check=None)
        assert "`yk==2.0` is yanked" in logs.stdout + logs.stderr, logs


class QuotedHrefIndex(pkgindex.Index):
    """PEP 503 HTML whose links quote the file name ('+' as %2B), as PyPI's
    and devpi's do for a local version: the name is read unquoted."""

    def project_html(self, name):
        return super().project_html(name).decode().replace("+", "%2B").encode()


def test_a_quoted_file_name_in_an_html_link_is_read_unquoted(cli, tmp_path, served):
    ix = served(QuotedHrefIndex(mode="html"))
    ix.add(pkgindex.build_wheel(tmp_path, "loc", "1.0+abc"))
    p = lock_file(cli, ix, {"loc": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    (pk,) = json.loads(p.stdout)["packages"]
    assert (pk["version"], pk["filename"]) == ("1.0+abc", "loc-1.0+abc-py3-none-any.whl"), pk
