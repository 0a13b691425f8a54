"""helper-214's red team of the sandbox and the daemon: hostile functions
against "a run cannot reach the host, another run, or another tenant".
Each test is named after what the attacker tries; attacks already covered
elsewhere (attacks/syscalls.py, test_isolation.py, test_explore_isolation.py,
test_daemon_trust.py) are not repeated."""
import json

import pytest

from conftest import DAEMON, sandboxed, value
from daemonlib import Daemon, sandbox_mode

# The sysctls of an IPC namespace. Runs of one worker share its IPC
# namespace (docs/sandbox.md: no per-run one), and the kernel lets the
# namespace's root uid — what every run is — write them without any
# capability (ipc_permissions(), mq_permissions()).
IPC_SYSCTLS = ["fs/mqueue/msg_default", "fs/mqueue/msg_max", "fs/mqueue/msgsize_default",
               "fs/mqueue/msgsize_max", "fs/mqueue/queues_max", "kernel/msgmax", "kernel/msgmnb",
               "kernel/msgmni", "kernel/shmmni", "kernel/shmall", "kernel/shmmax", "kernel/shm_rmid_forced",
               "kernel/sem", "kernel/auto_msgmni"]

WRITE_SYSCTLS = """
def f(paths):
    out = {}
    for p in paths:
        try:
            old = open("/proc/sys/" + p).read().split()
        except OSError as e:
            out[p] = {"read": None, "wrote": False, "error": str(e)}
            continue
        # a value the kernel accepts and that differs from the current one
        new = [str(max(int(v) - 1, 1) if int(v) > 1 else 1 - int(v)) for v in old]
        try:
            with open("/proc/sys/" + p, "w") as fp:
                fp.write(" ".join(new))
            wrote = open("/proc/sys/" + p).read().split() == new
            out[p] = {"read": old, "wrote": wrote, "error": None}
        except OSError as e:
            out[p] = {"read": old, "wrote": False, "error": e.strerror}
    return out
"""

READ_SYSCTLS = """
def f(paths):
    out = {}
    for p in paths:
        try:
            out[p] = open("/proc/sys/" + p).read().split()
        except OSError:
            out[p] = None
    return out
"""


def test_a_run_cannot_leave_ipc_sysctls_for_another_tenants_run_of_its_worker(tmp_path):
    """A run wrote its worker's IPC namespace sysctls (kernel.shmmni,
    fs.mqueue.*, …): any run of any tenant served by that worker, concurrent
    or later, read what it wrote — a channel between tenants and state that
    outlived the run. Now the run's /proc/sys is read-only."""
    mode = sandbox_mode(tmp_path)
    if mode != "full":
        pytest.skip("the kernel cannot run the sandbox here")
    d = Daemon(tmp_path / "d", sandbox="full")
    with d.serving():
        st, a = d.run(WRITE_SYSCTLS, args=[IPC_SYSCTLS], token="alice")
        assert st == 200 and a["status"] == "succeeded", a
        wrote = {p: r for p, r in a["result"].items() if r["wrote"]}
        st, b = d.run(READ_SYSCTLS, args=[IPC_SYSCTLS], token="bob")
        assert st == 200 and b["status"] == "succeeded", b
        seen = {p: v for p, v in b["result"].items() if a["result"][p]["read"] not in (None, v)}
        assert not wrote and not seen, (wrote, seen)


WRITABLE_PROC = """
import os

def f():
    found = []
    for top in os.listdir("/proc"):
        if top.isdigit() or top in ("self", "thread-self"):
            continue  # a process's own files
        for root, dirs, files in os.walk("/proc/" + top) if os.path.isdir("/proc/" + top) else [("/proc", [], [top])]:
            for name in files:
                p = os.path.join(root, name)
                try:
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
                    found.append(p)
                except OSError:
                    pass
    return found
"""


def test_a_run_opens_no_system_wide_proc_file_for_writing(cli):
    """Whatever a sysctl's namespace (IPC, pid, net, uts), a run has no
    business changing one; before, it could open fifteen for writing. Nor
    may it set pressure (PSI) triggers on the host's /proc/pressure: each
    one is kernel memory and work on every PSI update of the host, charged
    to no run."""
    assert value(sandboxed(cli, "w.py", WRITABLE_PROC, "--json")) == []


MQUEUE = """
import ctypes, os

def f():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.mq_open(b"/pysprinter-redteam", os.O_CREAT | os.O_RDWR, 0o600, None)
    return "made" if fd >= 0 else os.strerror(ctypes.get_errno())
"""


def test_a_run_cannot_make_a_posix_message_queue_in_its_workers_ipc_namespace(cli):
    """A POSIX message queue lives in the IPC namespace, which the runs of a
    worker share; RLIMIT_MSGQUEUE 0 keeps any run from making one (the
    kernel answers EMFILE past that limit)."""
    assert value(sandboxed(cli, "mq.py", MQUEUE, "--json")) == "Too many open files"


def sparse_tar(apparent):
    """A tar (PAX, GNU sparse 1.0) of one file "big" of `apparent` bytes
    that holds one data byte, its last: a few KiB on the wire."""
    import io
    import tarfile
    payload = ("1\n%d\n1\n" % (apparent - 1)).encode().ljust(512, b"\0") + b"x"
    info = tarfile.TarInfo("GNUSparseFile.0/big")
    info.size = len(payload)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "big",
                        "GNU.sparse.realsize": str(apparent)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def test_a_sparse_tar_member_cannot_pass_the_datasets_byte_cap(tmp_path):
    """A tar upload's sparse member counted only the bytes its data blocks
    held: a 10 KiB body under a 1 MiB data.max_bytes stored a 64 MiB file
    (a 20 GiB one took the daemon 100 s of CPU to hash, and 16 TiB would
    take a day; every reader and `data get` gets all of it). Now a member
    counts for the size it unpacks to."""
    d = Daemon(tmp_path / "d", config_extra="data:\n  max_bytes: 1048576\n")
    with d.serving():
        st, _, out = d.request("PUT", "/v1/data/sparse", raw=sparse_tar(64 << 20),
                               headers={"Content-Type": "application/x-tar"})
        assert st == 413, (st, out[:500])
        st, _, out = d.request("PUT", "/v1/data/small", raw=sparse_tar(512 << 10),
                               headers={"Content-Type": "application/x-tar"})
        assert st == 201, (st, out[:500])
        assert json.loads(out)["size"] == 512 << 10
        st, _, data = d.request("GET", "/v1/data/small/content?format=tar")
        assert st == 200


PREALLOCATE = """
import ctypes, os, time

def f():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open("/out/held", os.O_CREAT | os.O_WRONLY, 0o600)
    if libc.fallocate(fd, 1, 0, 64 << 20) < 0:  # FALLOC_FL_KEEP_SIZE
        return os.strerror(ctypes.get_errno())
    time.sleep(1)  # the engine measures /out every 200 ms
    st = os.fstat(fd)
    return [st.st_size, st.st_blocks * 512]
"""


def test_a_run_cannot_hold_the_hosts_disk_past_its_out_cap_by_preallocating(cli):
    """fallocate(FALLOC_FL_KEEP_SIZE) in /out gives a file disk blocks past
    its end: its size stays 0, RLIMIT_FSIZE is not consulted and the out
    cap (which counted sizes) saw nothing, so one call held as much of the
    host's $DATA disk as it had free, for every tenant, until the run
    ended. Now the call is refused as a file system without it refuses it,
    and the cap counts allocated blocks too."""
    p = sandboxed(cli, "prealloc.py", PREALLOCATE, "--json", env={"PYSPRINTER_MAX_OUT_BYTES": "1M"})
    if p.returncode == 5:
        assert "OutputDirLimit" in p.stderr or "output dir limit" in p.stderr, p.stderr
    else:
        assert value(p) == "Operation not supported", p.stdout


AIO = """
import ctypes, os

def f():
    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    if libc.syscall(206, 1, ctypes.byref(ctx)) == 0:  # io_setup, x86-64
        libc.syscall(207, ctx)  # io_destroy
        return "made"
    return os.strerror(ctypes.get_errno())
"""


def test_a_run_cannot_take_the_hosts_native_aio_budget(cli):
    """io_setup() reserves events from fs.aio-max-nr, one count for the
    whole host (no namespace, no cgroup, no per-user share): a run that
    reserved all 65536 made every io_setup() on the host fail with EAGAIN
    while it ran — host root's databases and every other tenant's runs. A
    run now finds native AIO missing, as on a kernel built without it
    (ENOSYS: libaio users fall back; glibc's POSIX aio uses threads)."""
    import platform
    if platform.machine() != "x86_64":
        pytest.skip("the probe calls io_setup by its x86-64 number")
    assert value(sandboxed(cli, "aio.py", AIO, "--json")) == "Function not implemented"


SOCKET_MEMORY = """
import socket

def f(conns: int = 64, cap_mb: int = 160):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(conns)
    keep, queued, chunk = [], 0, b"x" * (1 << 20)
    for _ in range(conns):
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        c.setblocking(False)
        keep += [c, s]
        while queued < cap_mb << 20:
            try:
                queued += c.send(chunk)
            except BlockingIOError:
                break
        if queued >= cap_mb << 20:
            break
    return queued >> 20
"""


def test_a_run_cannot_hold_socket_memory_past_its_memory_limit(cli):
    """Bytes a run queues on its loopback sockets (the peer never reads)
    are kernel memory. On a cgroup v1 host the memory group charged none of
    it unless its TCP accounting is switched on, so a run under --memory
    32M held 120 MiB (all it tried): with 1024 fds, ~2 GiB, past the host's
    net.ipv4.tcp_mem, which is one count for every network namespace — the
    whole host's TCP then under memory pressure. Now socket memory counts
    against the run's memory limit (v2 charges it by default)."""
    p = sandboxed(cli, "skmem.py", SOCKET_MEMORY, "--memory", "32M", "--json")
    if p.returncode == 5:
        assert "memory limit" in p.stderr, p.stderr
    else:
        assert value(p) <= 48, f"a run under --memory 32M queued {p.stdout.strip()} MiB on its sockets"
