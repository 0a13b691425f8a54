/* sandbox: the steps, in order (nsjail's contain.cc as a flat list), and
 * how a run ended. The kernel features live one per file:
 * sandbox-userns.c, -mounts.c, -net.c, -env.c, -seccomp.c, -caps.c,
 * -rlimit.c, -fds.c, -cgroup.c. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "sandbox-internal.h"

static bool worker_active;

bool sandbox_worker_active(void) {
        return worker_active;
}

int sandbox_worker_store_attach(const char *name, int mount_fd, char **ret_error) {
        if (!worker_active) {
                *ret_error = xstrdup("not a sandboxed worker");
                return -EPERM;
        }
        return sandbox_mounts_store_attach(name, mount_fd, ret_error);
}

int sandbox_worker_store_seal(char **ret_error) {
        return sandbox_mounts_store_seal(ret_error);
}

int sandbox_worker_enter(const SandboxWorkerConfig *cfg, char **ret_error) {
        SandboxMounts *m = NULL;
        int r;

        r = sandbox_check_support(ret_error);
        if (r < 0)
                return r;
        /* Opened while we are still ourselves, before the uid changes. */
        r = sandbox_mounts_prepare(cfg, &m, ret_error);
        if (r < 0)
                return r;
        /* From here on we are pid 1 of the worker's namespaces; the caller
         * waits outside. */
        r = sandbox_userns_enter(m, ret_error);
        if (r < 0)
                goto out;
        r = sandbox_mounts_worker_proc(ret_error);
        if (r < 0)
                goto out;
        if (sethostname("pysprinter", 10) < 0) {
                r = -errno;
                *ret_error = xasprintf("sethostname: %s", strerror(-r));
                goto out;
        }
        r = sandbox_env_scrub();
        if (r < 0) {
                *ret_error = xstrdup("scrubbing the environment failed");
                goto out;
        }
        r = sandbox_seccomp_prepare(ret_error);
        if (r < 0)
                goto out;
        worker_active = true;
out:
        sandbox_mounts_free(m);
        return r;
}

int sandbox_worker_resume(char **ret_error) {
        int r = sandbox_env_scrub();
        if (r < 0) {
                *ret_error = xstrdup("scrubbing the environment failed");
                return r;
        }
        /* exec made us dumpable again (a readable binary, no credential
         * change); nothing in the sandbox needs to read our memory. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                r = -errno;
                *ret_error = xasprintf("PR_SET_DUMPABLE: %s", strerror(-r));
                return r;
        }
        /* Never execs again: every spare and run it forks inherits the
         * empty bounding set instead of emptying its own. */
        r = sandbox_caps_bounding_drop(ret_error);
        if (r < 0)
                return r;
        r = sandbox_seccomp_prepare(ret_error);
        if (r < 0)
                return r;
        worker_active = true;
        return 0;
}

/* The run's init (pid 1 of the run's pid namespace). It shares the run
 * child's memory (CLONE_VM): copying the page tables of a warm interpreter
 * is the dominant cost of a run's start, and this process needs none of
 * it; it runs on its own small stack and makes only system calls. It reaps
 * orphans until the run child kills it, and its death makes the kernel
 * kill everything left in the namespace. */
static int run_init(void *arg) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        (void) sigaction(s, &dfl, NULL);
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        (void) sigprocmask(SIG_SETMASK, &chld, NULL);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void) prctl(PR_SET_NAME, "sbx-init");
        for (;;) {
                siginfo_t si;
                (void) sigwaitinfo(&chld, &si);
                while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
                        ;
        }
        return 0;
}

/* The run child C: waits for the user code's process, ends the run's pid
 * namespace, and dies the way the user code did, so the worker reports
 * what the user code did. */
static _noreturn_ void run_mirror(pid_t user, pid_t init) {
        int st = 0;
        while (waitpid(user, &st, 0) < 0 && errno == EINTR)
                ;
        (void) kill(init, SIGKILL);
        while (waitpid(init, NULL, __WALL) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(st))
                _exit(WEXITSTATUS(st));
        int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
        signal(sig, SIG_DFL);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, sig);
        (void) sigprocmask(SIG_UNBLOCK, &s, NULL);
        (void) raise(sig);
        _exit(128 + sig);
}

#define INIT_STACK_SIZE (64 << 10)

/* In H, inside the run's pid and mount namespaces: its own /tmp,
 * /dev/shm and /proc, its own session. */
static int sandbox_run_user_setup(uint64_t tmp, uint64_t shm, char **ret_error) {
        int r = sandbox_mounts_run(tmp, shm, ret_error);
        if (r < 0)
                return r;
        if (setsid() < 0) {
                r = -errno;
                *ret_error = xasprintf("setsid: %s", strerror(-r));
                return r;
        }
        return 0;
}

int sandbox_run_prepare(const SandboxRunConfig *cfg, char **ret_error) {
        int r;
        uint64_t tmp = cfg->tmp_bytes ?: 64ULL << 20, shm = cfg->shm_bytes ?: 64ULL << 20;

        /* ---- in C, the worker's child ---- */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return -errno;
        /* Forked by the worker as pid 2 of a pid namespace it made (its
         * init waiting as pid 1): this process is the user code's H, and
         * setsid() below needs it not to lead a process group. */
        bool made = sandbox_run_pidns_inherited();
        if (!made)
                (void) setpgid(0, 0);
        r = sandbox_cgroup_join(cfg->cgroup_fds, cfg->n_cgroup_fds, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < cfg->n_cgroup_fds; i++)
                (void) close(cfg->cgroup_fds[i]);
        /* Its own network namespace: never one another run is in. */
        r = sandbox_net_enter(cfg->network, ret_error);
        if (r < 0)
                return r;
        /* No per-run IPC namespace: creating one costs milliseconds (an
         * internal mqueue mount); the worker has its own, and nothing of
         * it is a channel between runs: the filter denies System V IPC,
         * RLIMIT_MSGQUEUE 0 lets no run make a POSIX message queue, and the
         * run's /proc/sys is read-only (the namespace's sysctls). POSIX
         * shm lives in the run's own /dev/shm. */
        if (unshare(CLONE_NEWNS | (made ? 0 : CLONE_NEWPID)) < 0) {
                r = -errno;
                *ret_error = xasprintf("unshare(mount, pid): %s", strerror(-r));
                return r;
        }
        /* Nothing the run mounts may propagate anywhere. */
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
                r = -errno;
                *ret_error = xasprintf("making the run's mounts private: %s", strerror(-r));
                return r;
        }
        if (made)
                return sandbox_run_user_setup(tmp, shm, ret_error);
        void *stack = mmap(NULL, INIT_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                           -1, 0);
        if (stack == MAP_FAILED)
                return -errno;
        pid_t init = clone(run_init, (char *) stack + INIT_STACK_SIZE, CLONE_VM | SIGCHLD, NULL);
        if (init < 0) {
                r = -errno;
                *ret_error = xasprintf("clone: %s", strerror(-r));
                return r;
        }
        pid_t user = fork();
        if (user < 0) {
                r = -errno;
                *ret_error = xasprintf("fork: %s", strerror(-r));
                (void) kill(init, SIGKILL);
                return r;
        }
        if (user > 0)
                run_mirror(user, init);

        /* ---- in H, the user code's process (pid 2) ---- */
        (void) munmap(stack, INIT_STACK_SIZE);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return -errno;
        return sandbox_run_user_setup(tmp, shm, ret_error);
}

int sandbox_run_finish_enter(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error) {
        /* The output dir is the one per-run mount that depends on the run
         * (a spare is prepared before its run is known); it needs the
         * capabilities dropped below. */
        int r = worker_active ? sandbox_mounts_out(cfg->out_name, ret_error) : 0;
        if (r < 0)
                return r;
        r = sandbox_rlimits_apply(cfg, have_memory_cgroup, ret_error);
        if (r < 0)
                return r;
        r = sandbox_fds_close_except(cfg->keep_fds, cfg->n_keep_fds);
        if (r < 0)
                return r;
        r = sandbox_caps_drop(ret_error);
        if (r < 0)
                return r;
        r = sandbox_seccomp_load(ret_error);
        if (r < 0)
                return r;
        return 0;
}

int sandbox_run_seal(const char *out_name, const int *keep_fds, size_t n_keep_fds, char **ret_error) {
        int r = worker_active ? sandbox_mounts_out(out_name, ret_error) : 0;
        if (r < 0)
                return r;
        r = sandbox_fds_close_except(keep_fds, n_keep_fds);
        if (r < 0)
                return r;
        r = sandbox_caps_drop(ret_error);
        if (r < 0)
                return r;
        return sandbox_seccomp_load(ret_error);
}

int sandbox_run_finish_sealed(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error) {
        /* Lowering a limit needs no capability and setrlimit is not in the
         * filter: the run's limits go in now, before its code runs. */
        int r = sandbox_rlimits_apply(cfg, have_memory_cgroup, ret_error);
        if (r < 0)
                return r;
        return sandbox_fds_close_except(cfg->keep_fds, cfg->n_keep_fds);
}

int sandbox_run_enter(const SandboxRunConfig *cfg, char **ret_error) {
        int r = sandbox_run_prepare(cfg, ret_error);
        if (r < 0)
                return r;
        return sandbox_run_finish_enter(cfg, cfg->n_cgroup_fds > 0, ret_error);
}

/* ---- outcomes ---------------------------------------------------------- */

const char *sandbox_signal_name(int sig) {
        static const struct {
                int sig;
                const char *name;
        } names[] = {
                { SIGHUP, "SIGHUP" },   { SIGINT, "SIGINT" },   { SIGQUIT, "SIGQUIT" }, { SIGILL, "SIGILL" },
                { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" }, { SIGBUS, "SIGBUS" },   { SIGFPE, "SIGFPE" },
                { SIGKILL, "SIGKILL" }, { SIGUSR1, "SIGUSR1" }, { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" },
                { SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" }, { SIGTERM, "SIGTERM" }, { SIGXCPU, "SIGXCPU" },
                { SIGXFSZ, "SIGXFSZ" }, { SIGSYS, "SIGSYS" },
        };
        static __thread char buf[16];
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i].sig == sig)
                        return names[i].name;
        snprintf(buf, sizeof(buf), "SIG%d", sig);
        return buf;
}

char *sandbox_format_duration_ms(uint64_t ms) {
        /* Exact to the millisecond, as a limit is given: to three
         * significant digits, a 1001 ms limit said "1s". */
        if (ms % 1000 == 0)
                return xasprintf("%llus", (unsigned long long) (ms / 1000));
        char frac[4];
        snprintf(frac, sizeof(frac), "%03u", (unsigned) (ms % 1000));
        for (size_t n = 3; n > 1 && frac[n - 1] == '0'; n--)
                frac[n - 1] = 0;
        return xasprintf("%llu.%ss", (unsigned long long) (ms / 1000), frac);
}

char *sandbox_format_bytes(uint64_t b) {
        /* Exact: the largest unit that holds it whole. Rounded to MiB, a
         * 40.5M limit said "41 MiB", a limit the run did not have. */
        if (b >= (1ULL << 30) && b % (1ULL << 30) == 0)
                return xasprintf("%llu GiB", (unsigned long long) (b >> 30));
        if (b >= (1ULL << 20) && b % (1ULL << 20) == 0)
                return xasprintf("%llu MiB", (unsigned long long) (b >> 20));
        if (b >= 1024 && b % 1024 == 0)
                return xasprintf("%llu KiB", (unsigned long long) (b >> 10));
        return xasprintf("%llu bytes", (unsigned long long) b);
}

SandboxOutcome sandbox_classify(const SandboxEnd *e, char **ret_type, char **ret_message) {
        const SandboxCgroupStats *s = e->stats;
        bool failed = e->signaled || e->exit_code != 0 || !e->succeeded;
        if (e->timed_out) {
                _cleanup_free_ char *d = sandbox_format_duration_ms(e->timeout_ms);
                *ret_type = xstrdup("TimeLimit");
                *ret_message = xasprintf("time limit (%s)", d);
                return SANDBOX_OUTCOME_TIME;
        }
        if (e->output_exceeded) {
                _cleanup_free_ char *b = sandbox_format_bytes(e->max_output_bytes);
                *ret_type = xstrdup("OutputLimit");
                *ret_message = xasprintf("output limit (%s)", b);
                return SANDBOX_OUTCOME_OUTPUT;
        }
        /* An OOM kill anywhere in the run ends it as a memory limit even if
         * the killed process was a helper and the main one then failed. */
        if (s && s->oom_kills > 0 && failed) {
                _cleanup_free_ char *b = sandbox_format_bytes(e->memory_bytes);
                *ret_type = xstrdup("MemoryLimit");
                *ret_message = xasprintf("memory limit (%s)", b);
                return SANDBOX_OUTCOME_MEMORY;
        }
        if (s && s->pids_max > 0 && failed) {
                *ret_type = xstrdup("ProcessLimit");
                *ret_message = e->max_procs ? xasprintf("process limit (%llu processes)",
                                                         (unsigned long long) e->max_procs)
                                            : xstrdup("process limit");
                return SANDBOX_OUTCOME_PROCS;
        }
        if (!e->signaled)
                return SANDBOX_OUTCOME_NONE;
        switch (e->sig) {
        case SIGXCPU: {
                *ret_type = xstrdup("TimeLimit");
                *ret_message = xstrdup("time limit (CPU time)");
                return SANDBOX_OUTCOME_TIME;
        }
        case SIGXFSZ: {
                *ret_type = xstrdup("FileSizeLimit");
                *ret_message = xstrdup("file size limit");
                return SANDBOX_OUTCOME_FILE_SIZE;
        }
        case SIGSYS:
                *ret_type = xstrdup("ForbiddenSyscall");
                *ret_message = xstrdup("forbidden system call (killed by the sandbox's seccomp filter)");
                return SANDBOX_OUTCOME_SYSCALL;
        case SIGKILL:
                /* Killed from outside without a limit we know of: with a
                 * memory cgroup whose limit was hit, the kernel's OOM
                 * killer is the likely sender even when oom_kill did not
                 * count it (v1 kernels before 4.13). */
                if (s && s->memory_failcnt > 0 && e->memory_bytes) {
                        _cleanup_free_ char *b = sandbox_format_bytes(e->memory_bytes);
                        *ret_type = xstrdup("MemoryLimit");
                        *ret_message = xasprintf("memory limit (%s)", b);
                        return SANDBOX_OUTCOME_MEMORY;
                }
                *ret_type = xstrdup("Killed");
                *ret_message = xstrdup("killed: SIGKILL");
                return SANDBOX_OUTCOME_CRASH;
        default:
                *ret_type = xstrdup("Crashed");
                *ret_message = xasprintf("crashed: %s", sandbox_signal_name(e->sig));
                return SANDBOX_OUTCOME_CRASH;
        }
}

/* ---- support check ------------------------------------------------------ */

static long read_long(const char *path, long dflt) {
        _cleanup_free_ char *s = NULL;
        if (read_file(path, 64, &s, NULL) < 0)
                return dflt;
        return strtol(s, NULL, 10);
}

int sandbox_check_privileges(char **ret_error) {
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                *ret_error = xasprintf("fork: %s", strerror(-r));
                return r;
        }
        if (pid == 0)
                _exit(unshare(CLONE_NEWNS) < 0 ? (errno & 0xff) ?: 1 : 0);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        int r = -errno;
                        *ret_error = xasprintf("waitpid: %s", strerror(-r));
                        return r;
                }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        int e = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
        *ret_error = xasprintf("unshare(CLONE_NEWNS): %s", strerror(e));
        return -e;
}

int sandbox_check_support(char **ret_error) {
        _cleanup_(buf_free) Buf b;
        buf_init(&b, 1024);
        struct stat st;
        if (stat("/proc/self/ns/user", &st) < 0)
                (void) buf_appends(&b, "user namespaces (CONFIG_USER_NS)");
        else if (read_long("/proc/sys/user/max_user_namespaces", 1) == 0)
                (void) buf_appends(&b, "user namespaces (user.max_user_namespaces is 0)");
        else if (geteuid() != 0 && read_long("/proc/sys/kernel/unprivileged_userns_clone", 1) == 0)
                (void) buf_appends(&b, "unprivileged user namespaces (kernel.unprivileged_userns_clone is 0)");
        static const char *const ns[] = { "pid", "mnt", "net", "ipc", "uts", "cgroup" };
        for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                _cleanup_free_ char *p = xasprintf("/proc/self/ns/%s", ns[i]);
                if (stat(p, &st) < 0)
                        (void) buf_printf(&b, "%s%s namespaces", b.len ? ", " : "", ns[i]);
        }
        if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0)
                (void) buf_printf(&b, "%sseccomp (CONFIG_SECCOMP_FILTER)", b.len ? ", " : "");
        if (b.len == 0)
                return 0;
        *ret_error = xasprintf("this kernel lacks what the sandbox needs: %s; run trusted code with --sandbox=none",
                               b.data);
        return -EOPNOTSUPP;
}
