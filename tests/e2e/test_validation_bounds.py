"""A large file's validation is bounded and kept apart (round 34).

Validation runs outside the run's sandbox limits, in validators every
tenant shares. A tenant's 4 MiB file took 14 s and 1.85 GB there, while
every other tenant's uncached run waited behind it. Now a file of 64 KiB or
more is validated in a child of a validator of its own lane, under the
run's memory limit and its time limit (at most 20 s); either refusal ends
the run as that limit would (exit 5), the same embedded and through a
daemon, and the daemon keeps serving."""
import threading
import time

import pytest

from daemonlib import Daemon, sandbox_mode, wait_for
from proctree import descendants
from test_cli_parity import run_cli


def slow_source(size, first="def main(n: int = 1):\n    return n\n\ndef never_called():\n"):
    """A valid file of about size bytes that is slow and large to parse
    (nested calls: ~2.3 s and ~440 MB per MiB on the 2-CPU CI machine)."""
    lines, n, i = [first], len(first), 0
    while n < size:
        line = f"    g(h(i(j({i}, {i}))))\n"
        lines.append(line)
        n += len(line)
        i += 1
    return "".join(lines)


def rss_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) >> 10
    except OSError:
        pass
    return 0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation-bounds")
    d = Daemon(root, sandbox=sandbox_mode(root), config_extra="limits:\n  maxima: {memory_bytes: 4294967296}\n")
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    w = tmp_path_factory.mktemp("validation-work")
    (w / "home").mkdir()
    (w / "slow.py").write_text(slow_source(1 << 20))
    (w / "slower.py").write_text(slow_source((4 << 20) - 4096))
    return w


def test_a_large_file_does_not_hold_up_another_tenants_small_run(daemon):
    """bob's small, never seen file is validated and run while alice's 2 MiB
    file is still being validated (before: it waited on the one validator,
    so it ended after alice's refusal)."""
    # Refused only once parsed: the argument does not bind.
    big = slow_source(2 << 20)
    ended = {}

    def alice():
        st, b = daemon.run(big, token="alice", function="main", args=["x"], limits={"memory_bytes": 3 << 30})
        ended["alice"] = time.monotonic()
        ended["alice_body"] = (st, b)

    t = threading.Thread(target=alice)
    t.start()
    # alice's file is being parsed (seconds, ~900 MB): bob's comes after.
    wait_for(lambda: max(map(rss_mib, descendants(daemon.proc.pid)), default=0) > 200, "alice's parse")
    st, b = daemon.run(f"def f():\n    return {time.time_ns()}\n", token="bob")
    bob_ended = time.monotonic()
    t.join(120)
    assert st == 200 and b["status"] == "succeeded", b
    ast, ab = ended["alice_body"]
    assert ast == 200 and ab["status"] == "invalid" and ab["exit_code"] == 3, ab
    assert "expected an integer" in ab["error"]["message"], ab
    assert bob_ended < ended["alice"], "bob's run waited for alice's validation"


def test_memory_limit_while_validating_is_the_runs_memory_limit(daemon, workdir):
    """A 1 MiB file needing ~440 MB to parse, run with 64 MiB: exit 5 and
    the limit named, embedded and through the daemon byte for byte; the
    validator survives and serves the next file."""
    args = ["run", "slow.py::main", "--memory", "64M"]
    local = run_cli(workdir, args)
    remote = run_cli(workdir, args, server=daemon.url + "/", extra_env={"PYSPRINTER_TOKEN": "alice-token-0123456789abcdef"})
    assert local.returncode == 5, local
    assert local.stderr == "pysprinter: memory limit (64 MiB) while validating slow.py\n", local.stderr
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    # Same file, more memory: it runs (the refusal was not cached).
    ok = run_cli(workdir, ["run", "slow.py::main", "--memory", "2G", "-n", "7"], server=daemon.url + "/",
                 extra_env={"PYSPRINTER_TOKEN": "alice-token-0123456789abcdef"})
    assert (ok.returncode, ok.stdout) == (0, "7\n"), ok
    st, b = daemon.run("def f():\n    return 'still serving'\n")
    assert b["result"] == "still serving", b


def test_time_limit_while_validating_is_the_runs_time_limit(daemon, workdir):
    """A 4 MiB file that takes seconds to parse, run with --timeout 1: it
    ends at about a second, exit 5, the same embedded and through the
    daemon."""
    args = ["run", "slower.py::main", "--timeout", "1", "--memory", "3G"]
    t0 = time.monotonic()
    local = run_cli(workdir, args)
    took = time.monotonic() - t0
    remote = run_cli(workdir, args, server=daemon.url + "/", extra_env={"PYSPRINTER_TOKEN": "alice-token-0123456789abcdef"})
    assert local.returncode == 5, local
    assert local.stderr == "pysprinter: time limit (1s) while validating slower.py\n", local.stderr
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    assert took < 8, took


def test_a_small_file_nested_too_deeply_is_a_validation_error(daemon, workdir):
    """CPython 3.11's parser raises a bare MemoryError past its stack: that
    is the file's fault, not a limit ("cannot parse f.py: " before)."""
    (workdir / "deep.py").write_text("def main():\n    return " + "-" * 10000 + "1\n")
    local = run_cli(workdir, ["run", "deep.py::main"])
    remote = run_cli(workdir, ["run", "deep.py::main"], server=daemon.url + "/",
                     extra_env={"PYSPRINTER_TOKEN": "alice-token-0123456789abcdef"})
    assert local.returncode == 3, local
    assert local.stderr == "ValidationError: deep.py is nested too deeply to parse\n", local.stderr
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
