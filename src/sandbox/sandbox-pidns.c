/* The run's pid namespace, made by the worker itself (issue 15: one fork
 * of the interpreter per run, not two).
 *
 * Before, each run child C (a fork of the warm worker W) unshared a pid
 * namespace, cloned its init G and forked the user process H: two copies
 * of a ~40 MB interpreter's page tables per run, and two teardowns. Now W
 * does, just before it forks the run child:
 *
 *   unshare(CLONE_NEWPID)     W's next children go into a fresh namespace
 *   clone(CLONE_VM|CLONE_FILES) -> G
 *                             pid 1 there: shares W's memory, so no page
 *                             tables are copied, and W's fd table, so it
 *                             holds no fd of a run; own small stack; G
 *                             then leaves that table for an empty one
 *   fork() -> H               pid 2 there: the run child itself, which
 *                             waits for G to have left W's fd table only
 *                             before its first line of Python
 *   setns(W's own pid ns)     W's later children are W's again
 *
 * H then does the rest of what C did (cgroup, network and mount
 * namespaces, /tmp, /proc, setsid). W reaps H, SIGKILLs G, and reports the
 * run's end only once G is reaped: the kernel reaps everything left in
 * the namespace before its init is gone, as when C waited for G. The
 * layout inside the run is unchanged: pid 1 is an init, the user code is
 * pid 2, its parent is outside (getppid() is 0).
 *
 * G shares W's memory, so it must write none of it: it runs on its own
 * stack and makes its system calls without libc, whose wrappers store
 * errno in W's thread-local storage (G has W's TLS pointer). It starts
 * with no signal handler of W's, so that nothing a run sends to its pid 1
 * runs a W (Python) handler in W's memory; pid 1 ignores default-action
 * signals from inside its namespace. The kernel clears them as it clones
 * G (clone3's CLONE_CLEAR_SIGHAND: every handled signal back to SIG_DFL;
 * what W ignores stays ignored); where that is not available (another
 * architecture, a kernel before 5.5, clone3 denied), G resets all 62
 * itself, one rt_sigaction each, as before (~40 µs per run here). G is
 * non-dumpable
 * like W (the flag belongs to the shared memory), so H, without
 * capabilities and under seccomp, can neither ptrace it nor read its
 * /proc/1/mem. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h> /* CLOSE_RANGE_UNSHARE */
#include <linux/futex.h>
#include <linux/sched.h> /* struct clone_args, CLONE_CLEAR_SIGHAND */
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox-internal.h"
#include "sandbox-syscall.h"

#define INIT_STACK_SIZE (64 << 10)


/* Set in W between _begin and _end, so inherited by the run child H: its
 * sandbox_run_prepare() then finds its pid namespace made. */
static bool pidns_made_by_parent;
static void *child_init_stack;
/* The flag page of the init made for this run child (in H: until
 * sandbox_run_pidns_ready()). */
static struct InitArgs *child_init_args;
static int own_pidns_fd = -EBADF;

bool sandbox_run_pidns_inherited(void) {
        return pidns_made_by_parent;
}

#if HAVE_RAW_SYSCALL
/* The kernel's struct sigaction (x86-64, arm64): handler, flags,
 * restorer, mask. */
struct kernel_sigaction {
        unsigned long handler;
        unsigned long flags;
        unsigned long restorer;
        unsigned long mask;
};

/* G's word in a page of its own shared with H (MAP_SHARED: H is a fork,
 * not a thread): G sets it once its fd table is its own, and H waits for
 * it before any code of the run's (sandbox_run_pidns_ready()). W does not
 * wait: it used to, before forking H, and on a busy host G is not run at
 * once, so every run waited a round of the scheduler on its critical path
 * (a quarter of the sandboxed ad-hoc rate at concurrency 4, issue 15);
 * now G's first act overlaps H's fork and sandbox set-up. */
#define INIT_FLAG_SIZE 4096

/* G's first act: an fd table of its own, empty. Shared with W's (as
 * cloned), /proc/1/fd listed W's fd numbers to the run, among them the
 * pipes of every other run W was serving: one tenant's run watched
 * another's come and go. close_range() with CLOSE_RANGE_UNSHARE over every
 * fd gives G a fresh table and copies none of W's (5.9); before that, G
 * unshares a copy and closes each fd of it (W's run pipes included: G
 * must not hold them, the engine answers at their EOF), those that
 * /proc/self/fd lists. */
static void init_own_files(int *files_own) {
        if (raw_syscall4(SYS_close_range, 0, ~0U, CLOSE_RANGE_UNSHARE, 0) < 0 &&
            raw_syscall4(SYS_unshare, CLONE_FILES, 0, 0, 0) == 0) {
                /* The copy's fds, as /proc/self/fd lists them (closing the
                 * ones listed already does not disturb the listing). */
                long dir = raw_syscall4(SYS_openat, AT_FDCWD, (long) "/proc/self/fd",
                                        O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
                char buf[2048] __attribute__((aligned(8)));
                long n;
                while (dir >= 0 && (n = raw_syscall4(SYS_getdents64, dir, (long) buf, sizeof(buf), 0)) > 0)
                        for (long off = 0; off < n;) {
                                struct dirent64 *de = (struct dirent64 *) (buf + off);
                                long fd = 0;
                                const char *c = de->d_name;
                                for (; *c >= '0' && *c <= '9'; c++)
                                        fd = fd * 10 + (*c - '0');
                                if (c != de->d_name && !*c && fd != dir)
                                        (void) raw_syscall4(SYS_close, fd, 0, 0, 0);
                                off += de->d_reclen;
                        }
                if (dir >= 0)
                        (void) raw_syscall4(SYS_close, dir, 0, 0, 0);
                else
                        for (long fd = 0; fd <= 65535; fd++)
                                (void) raw_syscall4(SYS_close, fd, 0, 0, 0);
        }
        __atomic_store_n(files_own, 1, __ATOMIC_RELEASE);
        /* Not _PRIVATE: the waiter is H, another process. */
        (void) raw_syscall4(SYS_futex, (long) files_own, FUTEX_WAKE, 1, 0);
}

/* What G is given: its flag word, and whether the kernel cleared W's
 * handlers at the clone (CLONE_CLEAR_SIGHAND). In the flag's page, which
 * G only reads from and writes the flag in (W's memory is not G's to
 * write, see above). */
typedef struct InitArgs {
        int files_own;
        int handlers_cleared;
} InitArgs;

static int run_init_raw(void *arg) {
        InitArgs *a = arg;
        bool handlers_cleared = __atomic_load_n(&a->handlers_cleared, __ATOMIC_RELAXED);
        init_own_files(&a->files_own);
        struct kernel_sigaction dfl;
        dfl.handler = (unsigned long) SIG_DFL;
        dfl.flags = 0;
        dfl.restorer = 0;
        dfl.mask = 0;
        /* SIGCHLD in any case: a SIGCHLD W ignored would stay ignored,
         * and the reaping below waits for it. */
        for (long s = 1; s <= 64; s++)
                if (s != SIGKILL && s != SIGSTOP && (!handlers_cleared || s == SIGCHLD))
                        (void) raw_syscall4(SYS_rt_sigaction, s, (long) &dfl, 0, 8);
        unsigned long chld = 1UL << (SIGCHLD - 1);
        (void) raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long) &chld, 0, 8);
        (void) raw_syscall4(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
        (void) raw_syscall4(SYS_prctl, PR_SET_NAME, (long) "sbx-init", 0, 0);
        for (;;) {
                siginfo_t si;
                (void) raw_syscall4(SYS_rt_sigtimedwait, (long) &chld, (long) &si, 0, 8);
                while (raw_syscall4(SYS_wait4, -1, 0, WNOHANG | __WALL, 0) > 0)
                        ;
        }
        return 0;
}

/* Clones G on stack: with W's handlers cleared by the kernel where it can,
 * else by G itself. The pid, or -1 with errno set. */
static pid_t clone_init(void *stack, InitArgs *a) {
#if HAVE_RAW_CLONE3
        struct clone_args args = {
                .flags = CLONE_VM | CLONE_FILES | CLONE_CLEAR_SIGHAND,
                .exit_signal = SIGCHLD,
                .stack = (uintptr_t) stack,
                .stack_size = INIT_STACK_SIZE,
        };
        a->handlers_cleared = 1;
        long pid = raw_clone3_call(&args, sizeof args, run_init_raw, a);
        if (pid > 0)
                return (pid_t) pid;
        /* ENOSYS: no clone3 (before 5.3) or a filter denying it (a
         * container's); EINVAL: no CLONE_CLEAR_SIGHAND (before 5.5). */
        if (pid != -ENOSYS && pid != -EINVAL && pid != -EPERM) {
                errno = (int) -pid;
                return -1;
        }
#endif
        a->handlers_cleared = 0;
        return clone(run_init_raw, (char *) stack + INIT_STACK_SIZE, CLONE_VM | CLONE_FILES | SIGCHLD, a);
}
#endif

int sandbox_run_pidns_begin(SandboxRunPidns *ret, char **ret_error) {
        *ret = (SandboxRunPidns) { .init = -1 };
#if !HAVE_RAW_SYSCALL
        return 0; /* the run child makes its namespace itself (sandbox.c) */
#else
        int r;
        if (own_pidns_fd < 0) {
                own_pidns_fd = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
                if (own_pidns_fd < 0) {
                        r = -errno;
                        *ret_error = xasprintf("opening the worker's pid namespace: %s", strerror(-r));
                        return r;
                }
        }
        if (unshare(CLONE_NEWPID) < 0) {
                r = -errno;
                *ret_error = xasprintf("unshare(pid): %s", strerror(-r));
                return r;
        }
        void *stack = mmap(NULL, INIT_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                           -1, 0);
        InitArgs *args = mmap(NULL, INIT_FLAG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (stack == MAP_FAILED || args == MAP_FAILED) {
                r = -errno;
                if (stack != MAP_FAILED)
                        (void) munmap(stack, INIT_STACK_SIZE);
                if (args != MAP_FAILED)
                        (void) munmap(args, INIT_FLAG_SIZE);
                sandbox_run_pidns_end(ret);
                *ret_error = xasprintf("mmap: %s", strerror(-r));
                return r;
        }
        /* CLONE_FILES: G shares W's fd table instead of a copy of it.
         * With a copy, G held every fd W had open at the clone: for a run
         * forked directly (no spare: a cold env's first run), that is the
         * run's stdout, stderr and result pipes, so the engine saw their
         * EOF, and answered, only once W had reaped H, killed G and G had
         * died (~7 ms, cold9b). G then leaves the shared table for an
         * empty one of its own (init_own_files()) before the run's code
         * starts (sandbox_run_pidns_ready()): the run's /proc/1/fd lists
         * nothing. */
        pid_t init = clone_init(stack, args);
        if (init < 0) {
                r = -errno;
                (void) munmap(stack, INIT_STACK_SIZE);
                (void) munmap(args, INIT_FLAG_SIZE);
                sandbox_run_pidns_end(ret);
                *ret_error = xasprintf("clone (the run's init): %s", strerror(-r));
                return r;
        }
        ret->init = init;
        ret->stack = stack;
        ret->flag = args;
        pidns_made_by_parent = true;
        child_init_stack = stack;
        child_init_args = args;
        return 0;
#endif
}

void sandbox_run_pidns_end(SandboxRunPidns *ns) {
        (void) ns;
        pidns_made_by_parent = false;
        child_init_stack = NULL;
        child_init_args = NULL;
        /* Cannot fail for our own active namespace. Even if it did, no
         * later child could land in this run's namespace: every fork of a
         * run child starts with _begin, whose unshare makes a fresh one
         * (a sibling: unshare creates a child of the active namespace). */
        if (own_pidns_fd >= 0)
                (void) setns(own_pidns_fd, CLONE_NEWPID);
}

void sandbox_run_pidns_child(void) {
        /* W's copy of the init's stack and of the namespace fd are no
         * business of the run's. */
        if (child_init_stack)
                (void) munmap(child_init_stack, INIT_STACK_SIZE);
        child_init_stack = NULL;
        own_pidns_fd = fd_close(own_pidns_fd);
}

void sandbox_run_pidns_ready(void) {
#if HAVE_RAW_SYSCALL
        InitArgs *a = TAKE_PTR(child_init_args);
        if (!a)
                return;
        /* G runs at once on another CPU, or as soon as one is free; a G
         * that never ran in 10 s is left to the run's end (W kills it,
         * and the run with it). */
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        while (!__atomic_load_n(&a->files_own, __ATOMIC_ACQUIRE) && now_monotonic() < deadline) {
                struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
                (void) syscall(SYS_futex, &a->files_own, FUTEX_WAIT, 0, &ts, NULL, 0);
        }
        /* The page is G's to write: the run keeps no view of it. */
        (void) munmap(a, INIT_FLAG_SIZE);
#endif
}

void sandbox_run_pidns_release(SandboxRunPidns *ns) {
        /* Only once the init is reaped: it ran on this stack. */
        if (ns->stack)
                (void) munmap(ns->stack, INIT_STACK_SIZE);
        if (ns->flag)
                (void) munmap(ns->flag, INIT_FLAG_SIZE);
        ns->stack = NULL;
        ns->flag = NULL;
        ns->init = -1;
}

/* Reaps pid by deadline at the most: 0, -ETIMEDOUT or -errno. Polled
 * (WNOHANG), not a blocking wait: a wait the kernel cannot end is what
 * left a worker stuck for good; a killed process is gone in milliseconds. */
static int reap_by(pid_t pid, usec_t deadline) {
        useconds_t nap = 50;
        for (;;) {
                pid_t r = waitpid(pid, NULL, WNOHANG | __WALL);
                if (r == pid)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (now_monotonic() >= deadline)
                        return -ETIMEDOUT;
                if (r == 0) {
                        (void) usleep(nap);
                        nap = MIN(nap * 2, (useconds_t) 10000);
                }
        }
}

int sandbox_run_pidns_drop(SandboxRunPidns *ns, pid_t *child, int timeout_ms) {
        if (ns->init <= 0)
                return 0;
        usec_t deadline = now_monotonic() + (usec_t) timeout_ms * USEC_PER_MSEC;
        int r = 0;
        /* The run child first: the killed init waits in the kernel
         * (zap_pid_ns_processes) until every process of its namespace is
         * reaped, and the run child's parent is W, not the init; waiting
         * for the init before this reap never ended. */
        if (*child > 0) {
                (void) kill(*child, SIGKILL);
                r = reap_by(*child, deadline);
                if (r == 0 || r == -ECHILD)
                        *child = 0;
        }
        (void) kill(ns->init, SIGKILL);
        if (*child <= 0)
                r = reap_by(ns->init, deadline);
        if (r == 0 || r == -ECHILD) {
                sandbox_run_pidns_release(ns);
                return 0;
        }
        /* Left to W's SIGCHLD reaping, which matches them to no run. The
         * stack stays mapped: the init may not be gone. */
        *ns = (SandboxRunPidns) { .init = -1 };
        return r;
}
