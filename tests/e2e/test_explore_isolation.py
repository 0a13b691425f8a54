"""A hostile function against the sandbox's promises (helper-152): each
test is an attack a user's code can make, asserting what a user or an
operator would check (the error the code gets, what is left on the host,
that the next run works). Attacks already covered by test_isolation.py,
test_sandbox.py and tests/e2e/attacks/ are not repeated here."""
import os
import signal
import subprocess

import pytest

from conftest import CLI, sandboxed, value


# ---- socket families that leave the run's network namespace ----

FAMILIES = """\
import errno, socket

def families():
    # AF_VSOCK (40) is not network-namespaced: a socket of it reaches the
    # hypervisor host (CID 2) and every VM's vsock services whatever the
    # run's network namespace holds. Only creating the socket is tried:
    # nothing is connected anywhere.
    out = {}
    for name, fam in (("vsock", 40), ("tipc", 30), ("rds", 21), ("kcm", 41), ("alg", 38),
                      ("unix", 1), ("inet", 2), ("inet6", 10), ("netlink", 16)):
        try:
            s = socket.socket(fam, socket.SOCK_DGRAM if fam in (16, 30, 21, 41) else socket.SOCK_STREAM
                              if fam != 38 else socket.SOCK_SEQPACKET, 0)
            s.close()
            out[name] = "created"
        except OSError as e:
            out[name] = errno.errorcode.get(e.errno, str(e))
    return out
"""


def test_a_run_cannot_open_a_vsock_socket_to_the_hypervisor_host(cli):
    """Without --network a run has only its own loopback; AF_VSOCK ignores
    network namespaces, so its socket is the one way past them to the host
    (the VM's hypervisor) and other VMs' vsock services. Families beyond
    unix, inet, inet6 and netlink are refused as a kernel without them
    would refuse them: EAFNOSUPPORT, before any address is named."""
    r = value(sandboxed(cli, "fam.py", FAMILIES, "--json"))
    assert r["vsock"] == "EAFNOSUPPORT", r
    for other in ("tipc", "rds", "kcm", "alg"):
        assert r[other] == "EAFNOSUPPORT", r
    # What a Python run uses still works.
    assert {r[k] for k in ("unix", "inet", "inet6", "netlink")} == {"created"}, r


# ---- a deep tree in output_dir() ----

DEEP = """\
import os
from pysprinter import output_dir

def deep(n: int):
    # One mkdir and one chdir per level: no path ever grows past a name.
    os.chdir(output_dir())
    for _ in range(n):
        os.mkdir("a")
        os.chdir("a")
    return n
"""


def test_a_deep_tree_left_in_output_dir_is_removed_after_the_run(cli, home):
    """A run nests 5000 directories in /out (0.3 s of work). The engine
    removed a run's output dir holding an fd (and a stack frame) per level:
    past its fd limit (2048 here; a daemon's is larger, but so is a tree
    of 100 000 levels) the removal failed with EMFILE, the directory stayed
    on the host's disk for good (each such run left 20 MB of directory
    blocks that no cap counts), and meanwhile the process had no fd left
    for anything else. The run's directory must go whatever its shape.
    (Nesting deeper than the output dir's measure walks, 256 levels, is
    now itself over its limit: the run ends exit 5, and its tree still
    goes; test_explore_data.py.)"""
    p = sandboxed(cli, "deep.py", DEEP, "--n", "5000", "--json", prefix=("prlimit", "--nofile=2048:2048"))
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr)
    assert "output dir limit (256 levels)" in p.stderr, p.stderr
    assert "cannot remove" not in p.stderr, p.stderr
    left = [str(x) for x in (home / "outputs").rglob("*")] if (home / "outputs").exists() else []
    assert left == [], left[:5]
    # And the next run is fine.
    assert value(sandboxed(cli, "deep.py", DEEP, "--n", "3", "--json")) == 3


# ---- an invoke's lowered limits on a warm instance ----

NET_DEFAULT = """
limits:
  defaults: {network: true}
  maxima: {network: true}
"""

WARM = """\
import socket

def f(port: int, mb: int = 0):
    held = b"x" * (mb << 20)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        net = "connected"
    except OSError as e:
        net = "blocked: " + type(e).__name__
    return [net, len(held) >> 20]
"""


@pytest.fixture
def netd(tmp_path):
    from daemonlib import Daemon, sandbox_mode
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=NET_DEFAULT)
    if d.sandbox != "full":
        pytest.skip("needs the full sandbox (network namespaces, cgroups)")
    with d.serving() as running:
        yield running


def test_an_invoke_that_lowers_its_limits_does_not_run_on_a_warm_instance_with_more(netd):
    """The operator grants alice the network by default; her function's
    first invoke starts a warm instance with it. An invoke that then asks
    for `network: false` (or less memory) must get that, as a run or a cold
    invoke does (test_daemon_trust.py): before, it was handed the warm
    instance, in the host's network namespace and the larger memory cgroup,
    so a request's lowering held only until the function was warm."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    port = s.getsockname()[1]
    try:
        st, b = netd.call("POST", "/v1/functions", {"name": "warm", "source": WARM, "function": "f"})
        assert st == 201, b

        def invoke(**body):
            st, b = netd.call("POST", "/v1/functions/warm/invoke?wait=true", {"args": [port], **body})
            assert st == 200, b
            return b
        b = invoke()
        assert b["status"] == "succeeded" and b["result"][0] == "connected", b
        b = invoke(limits={"network": False})
        assert b["status"] == "succeeded" and b["result"][0].startswith("blocked"), b
        # 150 MiB under a 512 MiB instance, then under the 128 MiB asked for.
        b = invoke(args=[port, 150])
        assert b["status"] == "succeeded" and b["result"][1] == 150, b
        b = invoke(args=[port, 150], limits={"memory_bytes": 128 << 20})
        assert b["status"] == "killed" and "memory limit (128 MiB)" in b["error"]["message"], b
        # The warm instance with the grant still serves the invokes that ask nothing.
        b = invoke()
        assert b["status"] == "succeeded" and b["result"][0] == "connected", b
    finally:
        s.close()


# ---- a package's import-time code in the worker ----

PHONE_HOME = """\
import os, socket
try:
    c = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    c.sendall(b"imported in pid %d" % os.getpid())
    c.close()
    REACHED = "connected"
except OSError as e:
    REACHED = "blocked: " + type(e).__name__
"""

USES_PHONE_HOME = """\
@requirements({'phonehome': ''})
def f():
    import phonehome
    return phonehome.REACHED
"""


def test_a_packages_import_time_code_cannot_reach_the_hosts_loopback_without_network(cli, tmp_path):
    """The worker imports an environment's top-level modules once, before
    forking runs (docs/workers.md). Any package on the index can ship
    import-time code (anyone can publish to PyPI, the default index), so
    that code is the tenant's as much as the function is. It ran in the
    worker, in the host's network namespace: a tenant without the network
    reached the host's 127.0.0.1 (the daemon's API, Redis, anything on
    loopback) and the addresses beyond it. A worker for runs without
    --network now has a network namespace of its own before it imports
    anything of the environment; with --network (the operator's grant) the
    package reaches the host as the run does."""
    import socket
    import threading
    import pkgindex
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(1)
    port = s.getsockname()[1]
    got = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            got.append(c.recv(100))
            c.close()
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path / "wheels", "phonehome", "1.0",
                                files={"phonehome.py": PHONE_HOME.format(port=port)}))
    ix.start()
    try:
        r = value(sandboxed(cli, "ph.py", USES_PHONE_HOME, "--json", "--index-url", ix.url))
        assert r.startswith("blocked"), r
        assert got == [], got
        # The operator's grant (embedded: the user's --network) reaches it.
        r = value(sandboxed(cli, "ph.py", USES_PHONE_HOME, "--json", "--network", "--index-url", ix.url))
        assert r == "connected", r
    finally:
        stop.set()
        t.join(5)
        s.close()
        ix.stop()


# ---- output_dir() past its cap while the run is still writing ----

FILL_OUT = """\
import sys, time
from pysprinter import output_dir

def fill(files: int = 30, mb: int = 10):
    # Many files, each under RLIMIT_FSIZE: the per-file bound never trips.
    for i in range(files):
        with open(f"{output_dir()}/part-{i:03}", "wb") as f:
            for _ in range(mb):
                f.write(b"x" * (1 << 20))
        print(f"wrote {(i + 1) * mb} MiB", file=sys.stderr, flush=True)
        time.sleep(0.05)
    time.sleep(3)
    return files * mb
"""


def test_a_run_is_stopped_while_it_writes_past_its_output_dir_cap(cli):
    """output_dir() is on the host's disk, capped (PYSPRINTER_MAX_OUT_BYTES,
    here 1 MiB). Each file is bounded while written (RLIMIT_FSIZE, at least
    80 MiB), but the total was only measured when the run ended: a run that
    wrote many files under that bound held as much of the host's disk as it
    could write before its time limit (seconds at disk speed: tens of GB
    with the default 60 s), whatever the cap. Here it stops itself at
    300 MiB; it must be killed with the cap's message long before that.
    The engine now measures the dir every 200 ms while the run lives."""
    p = sandboxed(cli, "fill.py", FILL_OUT, "--timeout", "60", env={"PYSPRINTER_MAX_OUT_BYTES": "1M"})
    assert p.returncode == 5, (p.returncode, p.stderr[-2000:])
    assert "output dir limit (1 MiB)" in p.stderr, p.stderr[-2000:]
    wrote = [int(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("wrote ")]
    # Seen within a fraction of a second of crossing the cap (the run
    # writes at most ~200 MiB/s here: 10 MiB, then a 50 ms nap).
    assert wrote and wrote[-1] < 300, wrote[-3:]


# ---- a caller whose own limits are already lower ----

def test_a_cli_under_a_lower_hard_limit_still_runs(cli):
    """The sandbox sets its rlimits as backstops, but asked for exactly its
    own values: a CLI started under `ulimit -Hn 512` (a locked-down shell,
    a CI runner) failed every run with exit 7 "setrlimit(RLIMIT_NOFILE):
    Operation not permitted". A backstop only lowers: the run keeps 512."""
    p = sandboxed(cli, "nf.py", "import resource\n\ndef f():\n"
                                "    return list(resource.getrlimit(resource.RLIMIT_NOFILE))\n",
                  prefix=("prlimit", "--nofile=512:512"))
    assert value(p) == [512, 512]
    p = sandboxed(cli, "nf2.py", "import resource\n\ndef f():\n"
                                 "    return list(resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    assert value(p) == [1024, 1024]


# ---- per-user kernel counts: a run's are not host root's -------------------

INOTIFY_HOG = """\
import ctypes, sys, time

def hog(hold: float = 0):
    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    while len(fds) < 4096:
        fd = libc.inotify_init1(0)
        if fd < 0:
            break
        fds.append(fd)
    print("holding", len(fds), file=sys.stderr, flush=True)
    if hold:
        time.sleep(hold)
    return len(fds)
"""


def inotify_opens_here():
    import ctypes
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


def test_a_run_holding_every_inotify_instance_leaves_root_and_other_runs_theirs(cli):
    """The kernel charges the inotify instances (and other per-user
    counts) of the processes in a user namespace to its owner too: the euid
    that created it. The sandbox's namespace was created by root, so a run
    that opened instances until EMFILE (fs.inotify.max_user_instances, 128
    by default) held host root's: no root process on the host (systemd,
    udev, the daemon) could open one until the run ended. Each worker's
    namespace now has an owner uid of its own: while one run holds all it
    could get, root and a second run still open theirs."""
    if os.geteuid() != 0:
        pytest.skip("the host root's count is what is at stake: the test runs as root")
    cli.write("hog.py", INOTIFY_HOG)
    e = dict(cli.env)
    first = subprocess.Popen([str(CLI), "run", "hog.py", "--hold", "60"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=e, cwd=cli.cwd)
    try:
        line = first.stderr.readline()
        while line.startswith("pysprinter: warning"):
            line = first.stderr.readline()
        if not line.startswith("holding"):
            first.kill()
            out, err = first.communicate()
            if "--sandbox=none" in err:
                pytest.skip("the kernel cannot run the sandbox here: " + err.strip())
            raise AssertionError((line, out, err))
        held = int(line.split()[1])
        assert held > 0
        assert inotify_opens_here(), f"host root cannot open an inotify instance while a run holds {held}"
        second = sandboxed(cli, "hog.py", INOTIFY_HOG)
        assert value(second) > 0, second.stdout
    finally:
        # Ctrl-C: the CLI cancels the run and removes its cgroup (a kill
        # -9 of the CLI would leave them to the next run's sweep).
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
