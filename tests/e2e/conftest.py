"""Shared fixtures for the end-to-end tests: they run the real binaries.

PYSPRINTER_BUILD names the meson build directory (make check sets it)."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("PYSPRINTER_BUILD", ROOT / "build")).resolve()
CLI = BUILD / "src" / "cli" / "pysprinter"
WORKER = BUILD / "src" / "worker" / "pysprinter-worker"
DAEMON = BUILD / "src" / "daemon" / "pysprinterd"
SYSTEM_PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture
def home(tmp_path):
    """A fresh PYSPRINTER_HOME for one test."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home):
    """The environment a test runs the CLI with: isolated data dir, no
    colours, no daemon, no index from the developer's shell."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("PYSPRINTER_", "PIP_"))}
    e["PYSPRINTER_HOME"] = str(home)
    e["PYSPRINTER_WORKER"] = str(WORKER)
    e["NO_COLOR"] = "1"
    return e


class Runner:
    def __init__(self, env, cwd):
        self.env = env
        self.cwd = cwd

    def __call__(self, *args, input=None, timeout=120, env=None, check=None):
        e = dict(self.env)
        if env:
            e.update(env)
        p = subprocess.run([str(CLI), *map(str, args)], input=input,
                           capture_output=True, text=True, env=e,
                           cwd=self.cwd, timeout=timeout)
        if check is not None:
            assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
        return p

    def write(self, name, text):
        path = pathlib.Path(self.cwd) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


@pytest.fixture
def cli(env, tmp_path):
    """Run `pysprinter ARGS…` in tmp_path; .write(name, text) makes files."""
    return Runner(env, tmp_path)


_sandbox_args = None


def sandbox_args():
    """[] when the full sandbox works on this build and machine, else
    ["--sandbox=none"] so tests of other features still run (the sandbox's
    own tests never use this)."""
    global _sandbox_args
    if _sandbox_args is None:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "probe.py"
            p.write_text("def f():\n    return 1\n")
            e = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
            e.update(PYSPRINTER_HOME=str(pathlib.Path(d) / "h"), PYSPRINTER_WORKER=str(WORKER))
            r = subprocess.run([str(CLI), "run", str(p)], capture_output=True, text=True, env=e, timeout=60)
            _sandbox_args = [] if r.returncode == 0 else ["--sandbox=none"]
    return _sandbox_args


@pytest.fixture
def run(cli):
    """run(file, *args) = `pysprinter run [--sandbox=none if needed] file args…`."""
    def _run(*args, **kw):
        return cli("run", *sandbox_args(), *args, **kw)
    return _run
