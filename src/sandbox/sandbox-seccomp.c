/* seccomp-bpf: the system calls a run has no business making.
 *
 * Denied calls fail with EPERM rather than killing the process: Python
 * code probes features (os.unshare, ctypes loaders, io_uring checks in
 * libraries) and must get an exception it can handle, not a mystery death.
 * clone3 fails with ENOSYS because its flags live in memory the filter
 * cannot read; glibc then falls back to clone, whose namespace flags the
 * filter does check. Foreign architectures (int 0x80, x32) get EPERM for
 * everything: a filter written for one syscall table says nothing about
 * another's numbers (the classic seccomp bypass).
 *
 * libseccomp compiles the filter once, in the worker; each run loads the
 * precompiled BPF with one seccomp() call (libseccomp would recompile it
 * on every seccomp_load()). */
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "sandbox-internal.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static struct sock_filter *prog_insns;
static unsigned short prog_len;

static const char *const denied[] = {
        /* debugging other processes, reading their memory */
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
        /* the mount family and namespaces */
        "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
        "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
        /* kernel attack surface with a long CVE history */
        "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "keyctl", "add_key", "request_key", "fanotify_init", "open_by_handle_at", "name_to_handle_at",
        "lookup_dcookie", "uselib", "vhangup", "iopl", "ioperm", "modify_ldt", "vm86", "vm86old",
        /* the machine's state */
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
        "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex", "syslog", "quotactl", "quotactl_fd", "nfsservctl", "_sysctl", "sethostname",
        "setdomainname", "migrate_pages", "move_pages", "mbind",
        /* System V IPC: the one channel concurrent runs of a worker would
         * share (they have no IPC namespace of their own; see sandbox.c). */
        "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
        "msgrcv", "msgctl",
};

static int build(scmp_filter_ctx *ret, char **ret_error) {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx) {
                *ret_error = xstrdup("seccomp_init failed");
                return -ENOMEM;
        }
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(EPERM));
        if (r < 0)
                goto fail;
        /* The filter is loaded by hand (see sandbox_seccomp_load()), with
         * no_new_privs set there. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if (r < 0)
                goto fail;
        /* A binary tree over the syscall numbers rather than one linear
         * chain of ~90 compares: the kernel emulates the filter for every
         * syscall number when it is loaded (seccomp_cache_prepare(), under
         * the siglock, once per run), and a syscall the cache cannot decide
         * (clone, ioctl, personality) runs it: ~log2(n) compares, not n. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        if (r < 0)
                goto fail;
        for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
                int nr = seccomp_syscall_resolve_name(denied[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* not on this architecture */
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0 && r != -EEXIST)
                        goto fail;
        }
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r < 0)
                goto fail;
        /* Native AIO: io_setup() reserves events from fs.aio-max-nr, one
         * count for the whole host (no namespace, cgroup or per-user share
         * of it): one run took all 65536 and every io_setup() on the host
         * failed with EAGAIN while it ran. ENOSYS, as on a kernel built
         * without it: libaio users fall back, glibc's POSIX aio uses
         * threads. (The other io_* calls need a context io_setup made.) */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_setup), 0);
        if (r < 0)
                goto fail;
        static const unsigned long ns_flags[] = { CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                                  CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME };
        for (size_t i = 0; i < ELEMENTSOF(ns_flags); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
                if (r < 0)
                        goto fail;
        }
        /* personality: only the default persona (PER_LINUX); others turn
         * off ASLR (ADDR_NO_RANDOMIZE) or change the syscall ABI. (libseccomp
         * cannot test one argument twice in a rule, so the 0xffffffff query
         * is refused too; nothing in a Python run needs it.) */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_NE, 0));
        if (r < 0)
                goto fail;
        /* socket families: unix, inet, inet6 and netlink only; any other
         * fails with EAFNOSUPPORT, as on a kernel without it. AF_VSOCK is
         * not network-namespaced: a run without --network would reach the
         * hypervisor host (CID 2) and other VMs' vsock services through
         * it. Others (tipc, rds, kcm, alg, ...) are modules an unprivileged
         * socket() call makes the kernel load: attack surface no Python
         * run needs. (libseccomp cannot test one argument twice in a rule:
         * one rule per hole below AF_NETLINK, one for everything above it;
         * a domain with garbage in its high 32 bits is above it too.) */
        for (unsigned long fam = 0; fam < AF_NETLINK; fam++) {
                if (fam == AF_UNIX || fam == AF_INET || fam == AF_INET6)
                        continue;
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, fam));
                if (r < 0)
                        goto fail;
        }
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, AF_NETLINK));
        if (r < 0)
                goto fail;
        /* fallocate(FALLOC_FL_KEEP_SIZE) gives a file disk blocks past its
         * end: its size stays put, so RLIMIT_FSIZE is not consulted and a
         * cap that measures sizes (the run's /out, on the host's $DATA
         * disk) sees nothing; one call held all the disk's free space, for
         * every tenant, until the run ended. Refused as a file system
         * without it refuses it (callers fall back to writing); mode 0, the
         * only one posix_fallocate() uses, stays. PUNCH_HOLE needs
         * KEEP_SIZE and goes with it. */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EOPNOTSUPP), SCMP_SYS(fallocate), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, FALLOC_FL_KEEP_SIZE, FALLOC_FL_KEEP_SIZE));
        if (r < 0)
                goto fail;
        /* TIOCSTI pushes bytes into a terminal's input (bubblewrap's
         * CVE-2017-5226); TIOCLINUX can do the same on a VT. The request is
         * an int: compare the low 32 bits only, so high garbage bits do not
         * slip past the filter. */
        static const unsigned long ioctls[] = { TIOCSTI, TIOCLINUX };
        for (size_t i = 0; i < ELEMENTSOF(ioctls); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, ioctls[i]));
                if (r < 0)
                        goto fail;
        }
        *ret = ctx;
        return 0;
fail:
        seccomp_release(ctx);
        *ret_error = xasprintf("building the seccomp filter: %s", strerror(-r));
        return r;
}

int sandbox_seccomp_prepare(char **ret_error) {
        if (prog_insns)
                return 0;
        scmp_filter_ctx ctx;
        int r = build(&ctx, ret_error);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = memfd_create("pysprinter-seccomp", MFD_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                seccomp_release(ctx);
                *ret_error = xasprintf("memfd_create: %s", strerror(-r));
                return r;
        }
        r = seccomp_export_bpf(ctx, fd);
        seccomp_release(ctx);
        if (r < 0) {
                *ret_error = xasprintf("exporting the seccomp filter: %s", strerror(-r));
                return r;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        r = read_fd_all(fd, 1 << 20, &data, &len);
        if (r < 0 || len == 0 || len % sizeof(struct sock_filter) != 0 ||
            len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
                *ret_error = xstrdup("exporting the seccomp filter: unexpected size");
                return -EINVAL;
        }
        prog_insns = xmalloc(len);
        memcpy(prog_insns, data, len);
        prog_len = (unsigned short) (len / sizeof(struct sock_filter));
        return 0;
}

int sandbox_seccomp_program(const struct sock_filter **ret_insns, size_t *ret_len, char **ret_error) {
        int r = sandbox_seccomp_prepare(ret_error);
        if (r < 0)
                return r;
        *ret_insns = prog_insns;
        *ret_len = prog_len;
        return 0;
}

int sandbox_seccomp_load(char **ret_error) {
        int r = sandbox_seccomp_prepare(ret_error);
        if (r < 0)
                return r;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                *ret_error = xasprintf("PR_SET_NO_NEW_PRIVS: %s", strerror(-r));
                return r;
        }
        struct sock_fprog prog = { .len = prog_len, .filter = prog_insns };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
                r = -errno;
                *ret_error = xasprintf("loading the seccomp filter: %s", strerror(-r));
                return r;
        }
        return 0;
}
