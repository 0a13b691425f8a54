import ctypes, ctypes.util, os

@requirements({})
def main():
    libc = ctypes.CDLL(None, use_errno=True)
    calls = {
        "unshare": lambda: libc.unshare(0x10000000),           # CLONE_NEWUSER
        "unshare_ns": lambda: libc.unshare(0x00020000),        # CLONE_NEWNS
        "mount": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
        "umount": lambda: libc.umount2(b"/proc", 2),
        "ptrace": lambda: libc.ptrace(0, 0, None, None),       # PTRACE_TRACEME
        "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0, 0),    # keyctl
        "add_key": lambda: libc.syscall(248, b"user", b"k", b"v", 1, -3),
        "bpf": lambda: libc.syscall(321, 0, None, 0),
        "perf_event_open": lambda: libc.syscall(298, None, 0, -1, -1, 0),
        "setns": lambda: libc.syscall(308, 0, 0),
        "userfaultfd": lambda: libc.syscall(323, 0),
        "io_uring_setup": lambda: libc.syscall(425, 1, None),
        "chroot": lambda: libc.chroot(b"/tmp"),
        "pivot_root": lambda: libc.syscall(155, b"/", b"/"),
        "kexec_load": lambda: libc.syscall(246, 0, 0, None, 0),
        "init_module": lambda: libc.syscall(175, None, 0, b""),
        "open_by_handle_at": lambda: libc.syscall(304, 0, None, 0),
        "process_vm_readv": lambda: libc.syscall(310, 1, None, 0, None, 0, 0),
        "clone_newuser": lambda: libc.syscall(56, 0x10000000 | 17, None, None, None, None),
        "tiocsti": lambda: libc.syscall(16, 0, 0x5412 | (1 << 40), b"x"),
    }
    out = {}
    for name, fn in calls.items():
        ctypes.set_errno(0)
        r = fn()
        out[name] = os.strerror(ctypes.get_errno()) if r == -1 else "succeeded: %d" % r
    return out
