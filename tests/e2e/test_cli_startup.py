"""The CLI loads libcurl and libarchive (and the ~40 libraries behind them)
only when a verb needs them (docs/performance.md "CLI start-up (seen set
again)"): a first install downloads and unpacks through them, loaded on
first use; preparing the same set again needs neither, and prints the same
bytes. What a user checks: glibc's loader trace (LD_DEBUG=files) of each
command, and its output."""
import subprocess

import pytest

from conftest import CLI
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")

LAZY = ("libcurl.so", "libarchive.so")


def prepare(env, ix):
    p = subprocess.run([str(CLI), "env", "prepare", "--index-url", ix.url, "startpkg"],
                       env=dict(env, LD_DEBUG="files"), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    loaded = {lib for lib in LAZY if f"file={lib}" in p.stderr}
    return p.stdout, loaded


def test_a_seen_set_loads_neither_libcurl_nor_libarchive_a_first_install_does(env, tmp_path):
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path, "startpkg", "1.0"))
    ix.start()
    try:
        first, loaded_first = prepare(env, ix)
        # Downloaded and unpacked: both were loaded, on first use.
        assert loaded_first == set(LAZY), loaded_first
        again, loaded_again = prepare(env, ix)
    finally:
        ix.stop()
    assert again == first and first.strip(), (first, again)
    assert loaded_again == set(), loaded_again
