"""A hostile, experienced user against secrets, files a run writes, result
types, datasets and pipelines (helper "data"): each test is a case the
earlier rounds' tests (test_outputs.py, test_secrets.py, test_data*.py,
test_dag*.py, test_results.py, test_explore_*.py) do not cover, asserting
what a user or an operator would check."""
import json
import subprocess

import pytest

from conftest import CLI


def sandboxed(cli, name, source, *args, env=None, prefix=()):
    """Runs source as name through `pysprinter run` with the full sandbox
    (skips where the kernel cannot run it); prefix wraps the CLI (prlimit)."""
    cli.write(name, source)
    e = dict(cli.env)
    e.update(env or {})
    p = subprocess.run([*prefix, str(CLI), "run", name, *map(str, args)], capture_output=True, text=True, env=e,
                       cwd=cli.cwd, timeout=300)
    if p.returncode != 0 and "--sandbox=none" in p.stderr:
        pytest.skip("the kernel cannot run the sandbox here: " + p.stderr.strip())
    return p


def value(p):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


def outputs_left(home):
    root = home / "outputs"
    return [str(x) for x in root.rglob("*")] if root.exists() else []


# ---- /out: what its cap counts ----

DEEP_FILL = """\
import os, sys, time
from pysprinter import output_dir

def deep(levels: int = 300, files: int = 6, mb: int = 20):
    # Below the depth the engine's measure walked into, every byte was
    # invisible to the cap: only RLIMIT_FSIZE bounded each file.
    os.chdir(output_dir())
    for _ in range(levels):
        os.mkdir("d")
        os.chdir("d")
    for i in range(files):
        with open(f"f{i}", "wb") as f:
            for _ in range(mb):
                f.write(b"x" * (1 << 20))
        print(f"wrote {(i + 1) * mb} MiB", file=sys.stderr, flush=True)
        time.sleep(0.3)
    time.sleep(1)
    return "not stopped"
"""


def test_bytes_nested_below_the_measured_depth_still_count_against_the_out_cap(cli, home):
    """/out is capped at 1 MiB here. The measure of the output dir walked
    256 levels and no further, so a run that nested 300 directories and
    wrote there was never seen: it wrote 120 MiB past a 1 MiB cap and
    succeeded (as much of the host's disk as its time limit allowed). A
    tree deeper than the measure walks is now over the limit itself: the
    run is killed (exit 5, OutputDirLimit) before it writes there."""
    p = sandboxed(cli, "deep.py", DEEP_FILL, "--timeout", "120", env={"PYSPRINTER_MAX_OUT_BYTES": "1M"})
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "not stopped" not in p.stdout
    assert "output dir limit (256 levels)" in p.stderr, p.stderr[-2000:]
    assert outputs_left(home) == []


MANY = """\
import sys, time
from pysprinter import output_dir

def many(n: int, nap: float = 0):
    d = output_dir()
    for i in range(n):
        open(f"{d}/{i}", "wb").close()
    print(f"made {n}", file=sys.stderr, flush=True)
    time.sleep(nap)
    return n
"""


@pytest.mark.parametrize("nap", [0, 3])
def test_empty_files_past_the_out_entry_cap_kill_the_run(cli, home, nap):
    """Empty files and directories count no bytes: a run could leave
    millions of them in /out (a host's inodes are finite: ext4 has a fixed
    number, and the run's removal takes minutes), whatever the byte cap.
    Entries are now capped too (PYSPRINTER_MAX_OUT_FILES, here 1000):
    past it the run is killed as the byte cap kills it, whether it is
    still running (nap 3 s: the watch sees it) or already returned."""
    p = sandboxed(cli, "many.py", MANY, "--n", "3000", "--nap", nap, "--timeout", "120",
                  env={"PYSPRINTER_MAX_OUT_FILES": "1000"})
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "output dir limit (1000 entries)" in p.stderr, p.stderr[-2000:]
    assert "PYSPRINTER_MAX_OUT_FILES" in p.stderr and "data.max_output_files" in p.stderr
    assert outputs_left(home) == []
    # At the cap is within it.
    assert value(sandboxed(cli, "many.py", MANY, "--n", "1000", "--json",
                           env={"PYSPRINTER_MAX_OUT_FILES": "1000"})) == 1000


def test_the_out_entry_cap_is_in_the_daemons_data_config(tmp_path):
    """The daemon's operator sets it beside data.max_output_bytes."""
    from daemonlib import Daemon, sandbox_mode
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra="data:\n  max_output_files: 500\n")
    if d.sandbox != "full":
        pytest.skip("needs the full sandbox")
    with d.serving():
        st, b = d.run(MANY + "\n", args=[2000])
        assert st == 200, b
        assert b["status"] == "killed" and b["error"]["type"] == "OutputDirLimit", b
        assert "output dir limit (500 entries)" in b["error"]["message"], b
        st, b = d.run(MANY + "\n", args=[500])
        assert st == 200 and b["status"] == "succeeded", b
