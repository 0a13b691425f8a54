"""meson install (make install) puts the binaries, the worker, the docs and
the systemd unit where the unit expects them (issue 12, "Build")."""
import json
import pathlib
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT


def option(name):
    for o in json.loads((BUILD / "meson-info" / "intro-buildoptions.json").read_text()):
        if o["name"] == name:
            return o["value"]
    raise KeyError(name)


def test_meson_install_layout(tmp_path):
    meson = shutil.which("meson")
    if not meson:
        pytest.skip("meson is not installed")
    stage = tmp_path / "stage"
    p = subprocess.run([meson, "install", "-C", str(BUILD), "--destdir", str(stage), "--no-rebuild"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    prefix = pathlib.Path(option("prefix"))
    root = lambda p: stage / pathlib.Path(p).relative_to("/")
    bindir = prefix / option("bindir")
    for exe in ("pysprinter", "pysprinterd"):
        assert (root(bindir) / exe).is_file()
    for exe in ("pysprinter-worker", "pysprinter-worker-sandbox"):
        assert (root(prefix / option("libexecdir")) / exe).is_file(), exe
    docdir = prefix / option("datadir") / "doc" / "pysprinter"
    for doc in ("README.md", "api.md", "ARCHITECTURE.md", "internals/worker-protocol.md"):
        assert (root(docdir) / doc).is_file(), doc
    # man pysprinter, man pysprinterd (tests/e2e/test_shell.py keeps them in sync with --help)
    mandir = prefix / option("mandir")
    assert (root(mandir) / "man1" / "pysprinter.1").is_file()
    assert (root(mandir) / "man8" / "pysprinterd.8").is_file()
    unitdir = option("systemdsystemunitdir") or str(prefix / "lib" / "systemd" / "system")
    unit = (root(unitdir) / "pysprinterd.service").read_text()
    assert "@" not in unit.replace("$MAINPID", ""), "an unsubstituted @VAR@ in the unit"
    exec_start = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split()[0] == str(bindir / "pysprinterd")
    doc_line = next(l for l in unit.splitlines() if l.startswith("Documentation="))
    # The unit's documentation link is a file that was installed.
    assert root(doc_line.split("file://", 1)[1]).is_file(), doc_line
    # Nothing of the build tree's own paths leaks into the unit.
    assert str(ROOT) not in unit
