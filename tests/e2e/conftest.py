"""Shared fixtures for the end-to-end tests: they run the real binaries.

PYSPRINTER_BUILD names the meson build directory (make check sets it)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

# The CLIs the suite starts get a hang-up as a terminal's programs do. A
# harness started under nohup (a CI runner) leaves SIGHUP ignored, exec
# passes that on, and a CLI whose caller ignored SIGHUP keeps ignoring it
# (nohup's wish, docs/cli.md): the hang-up tests would test nohup.
signal.signal(signal.SIGHUP, signal.SIG_DFL)

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
    def __init__(self, env, cwd, exe=CLI):
        self.env = env
        self.cwd = cwd
        self.exe = exe  # another build's CLI (an older release's: test_explore_upgrade)
        self.prefix = []  # a command the CLI runs under (strace …)

    def __call__(self, *args, input=None, timeout=120, env=None, check=None):
        e = dict(self.env)
        if env:
            e.update(env)
        p = subprocess.run([*self.prefix, str(self.exe), *map(str, args)], input=input,
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
# Why the suite runs unsandboxed, when it does (printed in the summary).
UNSANDBOXED = []
# What the engine says when the kernel cannot run the sandbox at all
# (src/sandbox/sandbox.c, sandbox_check_support): the one reason to fall back.
KERNEL_LACKS = "kernel lacks what the sandbox needs"


def run_on_pty(cwd, argv, env, timeout=60):
    """argv run with a terminal (a pty) for stdin, stdout and stderr:
    (exit code, everything it wrote, decoded). Started by subprocess (fork
    and exec in C), not pty.fork(): a child forked from a threaded pytest
    (an index's or a daemon's helper thread) runs Python before its exec
    and can hang on a lock another thread held."""
    import pty
    import select
    fd, slave = pty.openpty()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return proc.wait(), out.decode(errors="replace")


def sandbox_args():
    """[] when the full sandbox works on this build and machine;
    ["--sandbox=none"] only when the engine says the kernel lacks what the
    sandbox needs, so tests of other features still run there (the
    sandbox's own tests never use this). Any other failure of the probe is a
    regression of the sandbox: every test that asks fails with its output,
    instead of silently running unsandboxed."""
    global _sandbox_args
    if _sandbox_args is None:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "probe.py"
            p.write_text("def f():\n    return 1\n")
            e = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
            e.update(PYSPRINTER_HOME=str(pathlib.Path(d) / "h"), PYSPRINTER_WORKER=str(WORKER))
            r = subprocess.run([str(CLI), "run", str(p)], capture_output=True, text=True, env=e, timeout=60)
        if r.returncode == 0:
            _sandbox_args = []
        elif KERNEL_LACKS in r.stderr:
            _sandbox_args = ["--sandbox=none"]
            UNSANDBOXED.append("pysprinter run: " + r.stderr.strip())
        else:
            raise RuntimeError(f"the sandbox probe run failed (exit {r.returncode}); not falling back to "
                               f"--sandbox=none for anything but '{KERNEL_LACKS}':\n{r.stderr}")
    return _sandbox_args

@pytest.fixture(scope="module")
def parity_daemon(tmp_path_factory):
    """A --no-auth daemon for a module that compares embedded runs with
    the same runs through a server, sandboxed as those embedded runs are."""
    from daemonlib import Daemon
    d = Daemon(tmp_path_factory.mktemp("parity-daemon"), sandbox="none" if sandbox_args() else None,
               args=["--no-auth"])
    d.start()
    yield d
    d.stop()


def pytest_terminal_summary(terminalreporter):
    if UNSANDBOXED:
        terminalreporter.write_sep("!", "this suite ran UNSANDBOXED (--sandbox=none)", red=True)
        for why in UNSANDBOXED:
            terminalreporter.write_line(why)


@pytest.fixture
def small_home(tmp_path):
    """A 12 MiB tmpfs for a home: a full disk the tests can make (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    home = tmp_path / "home"
    home.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs", str(home)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.fixture
def run(cli):
    """run(file, *args) = `pysprinter run [--sandbox=none if needed] file args…`."""
    def _run(*args, **kw):
        return cli("run", *sandbox_args(), *args, **kw)
    return _run


# ---- nothing of the runs is left on the host after the suite -------------------

def _own_cgroup_dirs():
    """The cgroup directories this process sits in, one per mounted
    hierarchy (v2 and each v1): runs create theirs beneath these. A
    hierarchy where this process sits at the root is left out: everyone's
    cgroups live there (a shared machine), and a leftover cannot be told
    from another user's live run."""
    mine = {}
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        mine[controllers] = path
    dirs = []
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        fstype, mountpoint = rfields[0], fields[4]
        if fstype == "cgroup2":
            path = mine.get("")
        elif fstype == "cgroup":
            opts = set(rfields[2].split(","))
            path = next((p for c, p in mine.items() if c and set(c.split(",")) <= opts), None)
        else:
            continue
        if path and path != "/":
            d = pathlib.Path(mountpoint) / path.lstrip("/")
            if d.is_dir():
                dirs.append(d)
    return dirs


def _ppid(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _is_ours(pid):
    """Whether pid descends from this session's process."""
    me = os.getpid()
    while pid and pid > 1:
        if pid == me:
            return True
        pid = _ppid(pid)
    return False


def _owned_by_another_live_session(leaf):
    """A run cgroup "pysprinter-NAME-nNS-tSTART-PID" whose owner is alive
    and not this session's: another suite's run on a shared machine (its
    parent cgroup is ours too when both sit in one login's cgroup). A dead
    owner's group is a leftover whoever made it."""
    try:
        pid = int(leaf.rpartition("-")[2])
    except ValueError:
        return False
    return os.path.exists(f"/proc/{pid}") and not _is_ours(pid)


def _cgroups_below(d):
    found = set()
    for root, subdirs, _ in os.walk(d, onerror=lambda e: None):  # runs come and go meanwhile
        found.update(os.path.join(root, s) for s in subdirs
                     if s.startswith("pysprinter-") and not _owned_by_another_live_session(s))
    return found


def _mount_points():
    """This session's mount points: every one but the network namespaces
    another session made (clusterlib.MADE_HERE are this session's) and the
    /run/netns mount itself (whichever session leaves it last unmounts it,
    clusterlib's NetNs.remove())."""
    made = getattr(sys.modules.get("clusterlib"), "MADE_HERE", set())
    points = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == "/run/netns":
            continue
        if point.startswith("/run/netns/") and point.rpartition("/")[2] not in made:
            continue
        points.append(point)
    return sorted(points)


def host_state():
    procs = set()
    # Listed by name, each read on its own: a glob of /proc/*/cmdline reads
    # every process's directory, and one that exits meanwhile raised
    # ProcessLookupError from the glob itself.
    for pid in (n for n in os.listdir("/proc") if n.isdigit()):
        try:
            c = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        # This build's worker (a sibling worktree's are not ours) and the
        # adversarial suite's survivor.
        if str(WORKER).encode() in c or b"survived-" in c:
            procs.add((pid, c))
    cgroups = set()
    for d in _own_cgroup_dirs():
        cgroups |= _cgroups_below(d)
    return procs, cgroups, _mount_points()


@pytest.fixture(scope="session", autouse=True)
def no_leftovers():
    """After every test of the session: no worker process, no run cgroup, no
    mount and no file left behind by the runs. Cleanup is asynchronous (the
    janitor kills and removes a run's cgroup off its critical path), so this
    waits for the state to come back, with a deadline, and then asserts."""
    before = host_state()
    yield

    def leftovers():
        procs, cgroups, mounts = host_state()
        out = {}
        if procs - before[0]:
            out["processes"] = sorted(c.decode(errors="replace") for _, c in procs - before[0])
        if cgroups - before[1]:
            out["cgroups"] = sorted(cgroups - before[1])
        if mounts != before[2]:
            gone = [m for m in before[2] if m not in mounts]
            new = [m for m in mounts if m not in before[2]]
            out["mounts"] = f"{len(before[2])} mount entries before, {len(mounts)} after (new: {new}, gone: {gone})"
        if pathlib.Path("/tmp/pwned").exists():
            out["files"] = ["/tmp/pwned"]
        return out

    import time
    deadline = time.monotonic() + 30
    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers()
    assert not left, f"the suite left these on the host: {left}"


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
    """A successful CLI run's JSON result."""
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


@pytest.fixture
def both(cli, daemon):
    """both(*args) -> (embedded result, --server result) of `pysprinter
    ARGS`, against the module's `daemon` (alice's token)."""
    from daemonlib import TOKENS

    def _both(*args, input=None):
        local = cli(*args, input=input)
        remote = cli(*args, "--server", daemon.url, input=input, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        return local, remote
    return _both


def same(local, remote):
    """The --server result printed what the embedded one did, byte for byte."""
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    return local
