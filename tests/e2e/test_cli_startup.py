"""The CLI loads libcurl and libarchive (and the ~40 libraries behind them)
only when a verb needs them (docs/internals/performance-log.md "CLI start-up (seen set
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


def loads(env, cwd, *args, stdin=None):
    p = subprocess.run([str(CLI), *args], env=dict(env, LD_DEBUG="files"), cwd=cwd, input=stdin,
                       capture_output=True, text=True, timeout=120)
    return p, "file=libcrypto.so" in p.stderr


def test_a_one_shot_run_never_loads_libcrypto_a_secret_does_and_works(env, tmp_path):
    """Round 40: libcrypto (~21,000 relocations) was a third of the CLI's own
    CPU in a one-shot `pysprinter run`, which never calls it. It is now
    loaded on the first call that needs it (src/cli/cli-lazy.c): a secret
    (AES-GCM), a streamed digest, base64. Fails before: libcrypto was in
    the CLI's DT_NEEDED, loaded by every command."""
    (tmp_path / "e.py").write_text("def main(a: int = 1):\n    return a + 1\n")
    p, crypto = loads(env, tmp_path, "run", "e.py", "-a", "5")
    assert p.returncode == 0 and p.stdout == "6\n", p.stderr[-2000:]
    assert not crypto
    p, crypto = loads(env, tmp_path, "ps")
    assert p.returncode == 0 and not crypto, p.stderr[-2000:]
    # A secret is sealed with AES-GCM and opened for the run that names it:
    # libcrypto is loaded then, and the run reads the value.
    p, crypto = loads(env, tmp_path, "secret", "set", "TOK", stdin="s3cret")
    assert p.returncode == 0 and crypto, p.stderr[-2000:]
    (tmp_path / "s.py").write_text("import os\n\ndef main():\n    return os.environ['TOK']\n")
    p, crypto = loads(env, tmp_path, "run", "s.py", "--secret", "TOK")
    assert p.returncode == 0 and p.stdout == "s3cret\n" and crypto, (p.stdout, p.stderr[-2000:])
