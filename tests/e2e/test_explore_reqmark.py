"""Index pages read as pip 23 reads them (a real local index on
127.0.0.1): each test a page pysprinter read otherwise."""
import json

import pytest

from conftest import CLI, WORKER
import pkgindex
from test_explore_uvparity import lock, versions

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


class EmptyYankedIndex(pkgindex.Index):
    """A PEP 691 index whose files say `"yanked": ""` (and `false`)."""

    def project_json(self, name):
        page = json.loads(super().project_json(name))
        for f in page["files"]:
            f["yanked"] = "" if "-2.0-" in f["filename"] else False
        return json.dumps(page).encode()


def test_an_empty_yanked_string_in_json_is_not_yanked(cli, tmp_path):
    # PEP 691: `yanked` is a boolean or a non-empty reason, and a file is
    # yanked when the key is truthy; pip reads "" as not yanked (its
    # Link.from_json turns a falsy value into None). pysprinter took ""
    # for "yanked, no reason" and locked a 1.0.
    ix = EmptyYankedIndex(mode="json")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "2.0"))
    ix.start()
    try:
        p = lock(cli, ix, {"a": ""})
        assert versions(p) == {"a": "2.0"}
        assert "yanked" not in p.stderr, p.stderr
    finally:
        ix.stop()


class NoSemicolonIndex(pkgindex.Index):
    """An HTML index writing `&gt`, `&lt` and `&amp` without their `;`: HTML5's
    legacy named references, which html.unescape (pip's parser) decodes."""

    def project_html(self, name):
        return super().project_html(name).replace(b"&gt;", b"&gt").replace(b"&lt;", b"&lt").replace(b"&amp;", b"&amp")


def test_legacy_entities_without_semicolon_are_decoded(cli, tmp_path):
    # data-requires-python="&gt=3.12" is ">=3.12" to pip, which skips
    # a 2.0 on this 3.11; pysprinter read the text as it stood and locked
    # it. The reason of a pinned yanked file reads "<2 is broken" too.
    ix = NoSemicolonIndex(mode="html")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "2.0"), requires_python=">=3.12")
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "1.0"), yanked="<2 is broken & old")
    ix.start()
    try:
        p = lock(cli, ix, {"a": "", "b": "==1.0"})
        assert versions(p) == {"a": "1.0", "b": "1.0"}
        assert 'is yanked (reason: "<2 is broken & old")' in p.stderr, p.stderr
    finally:
        ix.stop()


def test_a_requirement_with_a_marker_goes_in_the_value(cli, tmp_path):
    # pip and uv take `pywin32>=300; sys_platform == "win32"`; the dict
    # form had no place for the marker (in the key or the value it was
    # refused, exit 3). The value takes it after a ';': a requirement
    # whose marker is false here is not looked up at all.
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path / "w", "a", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "1.0"))
    ix.add(pkgindex.build_wheel(tmp_path / "w", "b", "2.0"))
    ix.start()
    try:
        p = lock(cli, ix, {"a": "", "nosuchwin": '; sys_platform == "win32"',
                           "b": '<2; sys_platform == "linux"'})
        assert versions(p) == {"a": "1.0", "b": "1.0"}
        p = lock(cli, ix, {'a; sys_platform == "linux"': ""})
        assert p.returncode == 3, (p.stdout, p.stderr)
        assert """a marker goes in the value, as in {'a': '; sys_platform == "linux"'}""" in p.stderr, p.stderr
    finally:
        ix.stop()
