"""The adversarial suite (issue 4): each attack is a user file under
attacks/, run through `pysprinter run` with the full sandbox. Every case
asserts that the attack is contained, that the message is clear (and the
exit code right), and that a benign run right after still works. The last
test checks that nothing leaked onto the host: processes, mounts, cgroups,
files."""
import glob
import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

from conftest import CLI

ATTACKS = pathlib.Path(__file__).parent / "attacks"


def run(cli, attack, *args, **kw):
    name = attack + ".py"
    cli.write(name, (ATTACKS / name).read_text())
    t0 = time.monotonic()
    p = cli("run", name, *args, **kw)
    p.elapsed = time.monotonic() - t0
    return p


@pytest.fixture
def sb(cli):
    """cli, after checking that this machine can run the full sandbox."""
    p = run(cli, "benign", "--json")
    if p.returncode != 0 and "--sandbox=none" in p.stderr:
        pytest.skip("the kernel cannot run the sandbox here: " + p.stderr.strip())
    assert p.returncode == 0, p.stderr
    return cli


def benign_after(cli):
    p = run(cli, "benign", "-a", "41", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "42"


def result(p):
    import json
    assert p.returncode == 0, (p.returncode, p.stderr)
    return json.loads(p.stdout)


def test_fork_bomb(sb):
    p = run(sb, "fork_bomb", "--max-procs", "32", "--timeout", "30")
    assert p.returncode == 5, p.stderr
    assert "process limit (32 processes)" in p.stderr
    assert p.elapsed < 20
    benign_after(sb)


def test_memory_bomb(sb):
    p = run(sb, "memory_bomb", "--memory", "128M", "--timeout", "30")
    assert p.returncode == 5, p.stderr
    assert "memory limit (128 MiB)" in p.stderr
    benign_after(sb)


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm"])
def test_fill_tmpfs(sb, where):
    r = result(run(sb, "fill_tmp", "--where", where, "--json"))
    assert r["errno"] in ("ENOSPC", "EFBIG"), r
    assert r["written_mib"] <= 128
    benign_after(sb)


@pytest.mark.parametrize("attack", ["busy_loop", "ignore_sigterm"])
def test_time_limit(sb, attack):
    p = run(sb, attack, "--timeout", "2")
    assert p.returncode == 5, p.stderr
    assert "time limit (2s)" in p.stderr
    assert p.elapsed < 10
    benign_after(sb)


def test_gigabyte_of_stdout(sb):
    p = run(sb, "flood_stdout", "--max-output", "1M", "--timeout", "60")
    assert p.returncode == 5, p.stderr
    assert "output limit (1 MiB)" in p.stderr
    assert len(p.stdout) <= (1 << 20) + 4096
    assert p.elapsed < 30
    benign_after(sb)


def test_output_without_newline(sb):
    p = run(sb, "no_newline")
    assert p.returncode == 0, p.stderr
    assert "partial line without newline" in p.stdout
    assert "err without newline" in p.stderr
    benign_after(sb)


def test_kill_everyone(sb):
    r = result(run(sb, "kill_everyone", "--json"))
    # kill(-1) finds nobody it may signal; the run's init ignores us.
    assert {"all", "init"} <= set(r), r
    assert r["ppid"] in (0, 1), r  # nothing outside the run is addressable
    benign_after(sb)


def test_double_forked_survivor(sb, tmp_path):
    token = "tok%d" % os.getpid()
    p = run(sb, "survivor", "-k", f"token={token}")
    assert p.returncode == 0, p.stderr

    def survivors():
        found = []
        for c in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                if token.encode() in open(c, "rb").read():
                    found.append(c)
            except OSError:
                pass
        return found
    # The run's processes are killed with its cgroup, off the run's critical
    # path: wait for that, with a deadline well under the survivor's 60 s nap.
    deadline = time.monotonic() + 20
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not survivors(), "a run's process outlived it"
    assert not glob.glob("/tmp/marker")
    benign_after(sb)


def test_secrets_unreachable(sb):
    canary = "canary-%d-secret" % os.getpid()
    p = run(sb, "secrets", "--json", env={"AWS_SECRET_ACCESS_KEY": canary, "PYSPRINTER_CANARY": canary})
    r = result(p)
    assert canary not in p.stdout
    assert r["/etc/shadow"].startswith("ERR")
    assert r["/root/.bashrc"].startswith("ERR")
    assert r["/home"].startswith("ERR")
    assert "AWS_SECRET_ACCESS_KEY" not in r["environ"]
    benign_after(sb)


def test_write_outside(sb, home):
    p = run(sb, "write_outside", "--json")
    r = result(p)
    assert r and all(v != "WRITTEN" for v in r.values()), r
    assert not list(pathlib.Path(home).rglob("evil.pth"))
    assert not os.path.exists("/evil")
    benign_after(sb)


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(10)
    got = []

    def accept():
        try:
            c, _ = s.accept()
            got.append(c.recv(16))
            c.close()
        except OSError:
            pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return s, s.getsockname()[1], got


def test_no_network_by_default(sb):
    s, port, got = listener()
    try:
        r = result(run(sb, "connect_local", "--port", str(port), "--json"))
        assert r.startswith("blocked"), r
        assert not got
    finally:
        s.close()
    benign_after(sb)


def test_network_opt_in(sb):
    s, port, got = listener()
    try:
        r = result(run(sb, "connect_local", "--port", str(port), "--network", "--json"))
        assert r == "connected"
    finally:
        s.close()


def test_dangerous_syscalls_eperm(sb):
    r = result(run(sb, "syscalls", "--json"))
    assert r and all(v == "Operation not permitted" for v in r.values()), r
    benign_after(sb)


def test_only_protocol_fds(sb):
    r = result(run(sb, "list_fds", "--json"))
    assert {"0", "1", "2"} <= set(r)
    others = {k: v for k, v in r.items() if k not in ("0", "1", "2")}
    # The result pipe, and /dev/null at most.
    assert all(v.startswith("pipe:") or v == "/dev/null" for v in others.values()), r
    assert sum(v.startswith("pipe:") for v in others.values()) == 1, r


def test_segfault(sb):
    p = run(sb, "segfault")
    assert p.returncode == 5, p.stderr
    assert "crashed: SIGSEGV" in p.stderr
    benign_after(sb)


def test_fd_exhaustion(sb):
    r = result(run(sb, "fd_exhaustion", "--json"))
    assert r["opened"] <= 1024 and "Too many open files" in r["error"]
    benign_after(sb)


def test_deep_recursion(sb):
    p = run(sb, "deep_recursion", "--memory", "256M", "--timeout", "30")
    assert p.returncode in (1, 5), p.stderr
    assert any(m in p.stderr for m in ("memory limit", "RecursionError", "crashed: SIGSEGV")), p.stderr
    benign_after(sb)


def test_concurrent_runs_isolated(sb):
    (sb.cwd / "tmp_spy.py").write_text((ATTACKS / "tmp_spy.py").read_text())
    procs = [subprocess.Popen([str(CLI), "run", "tmp_spy.py", "-k", f"token={t}", "--wait", "2", "--json"],
                              cwd=sb.cwd, env=sb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for t in ("alpha", "beta")]
    import json
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        r = json.loads(out)
        assert not any(n.startswith("secret-") for n in r["seen"]), r
        assert r["pids"] == [1, 2], r  # its own init and itself, nobody else
    benign_after(sb)


# Nothing of the runs is left on the host after the suite: conftest's
# session-wide check (no_leftovers) runs once every test has finished.
