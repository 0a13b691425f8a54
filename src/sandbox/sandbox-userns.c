/* User namespace and the worker's process layout.
 *
 * unshare(CLONE_NEWPID) does not move the caller; only its next child
 * becomes pid 1. And a process inside a new user namespace cannot map
 * itself to any uid but its own. So: the caller W0 forks X; X unshares all
 * namespaces at once; W0, still privileged outside, writes X's maps (uids
 * 0..SANDBOX_RUN_UIDS-1 inside -> a block of its own outside when W0 is
 * root: sandbox_host_uid()); X forks W1, the pid 1 that
 * becomes the worker. W0 and X stay behind as tiny waiters that forward
 * termination signals and mirror W1's exit; each child gets
 * PR_SET_PDEATHSIG(SIGKILL), so killing W0 (what the engine holds) takes
 * the whole worker namespace down with it. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "sandbox-internal.h"

uid_t sandbox_host_uid(uid_t euid, pid_t worker, unsigned slot) {
        assert(slot < SANDBOX_RUN_UIDS);
        /* Root outside maps to uids no account has: a file outside the
         * binds that some kernel bug exposes is then no more writable than
         * for nobody (runc's CVE-2019-5736 rewrote the host's binary as
         * root). And the kernel keeps some counts per real uid, whatever
         * the user namespace (fds in flight over SCM_RIGHTS, pending
         * signals, processes, message queue bytes): as 65534, every run of
         * every tenant, and every "nobody" process of the host, shared
         * them, and a run holding 1024 fds in flight made every other
         * run's fd passing fail (ETOOMANYREFS). Each worker gets
         * SANDBOX_RUN_UIDS of its own, found from its W0's pid (unique
         * among live workers on the host, whichever engine started them;
         * pid_max is at most 2^22, so the block ends below 0x78000000):
         * the first is the worker's, the others its runs'. */
        return euid == 0 ? SANDBOX_RUN_UID_BASE + (uid_t) worker * SANDBOX_RUN_UIDS + slot : euid;
}

bool sandbox_host_uid_is_run(uid_t euid, uid_t uid) {
        if (euid != 0)
                return uid == euid;
        return uid == SANDBOX_NOBODY ||
               (uid >= SANDBOX_RUN_UID_BASE && uid < SANDBOX_RUN_UID_BASE + (1u << 22) * SANDBOX_RUN_UIDS);
}

int sandbox_host_chown(const char *path, pid_t worker) {
        assert(path);
        if (geteuid() != 0)
                return 0;
        uid_t u = sandbox_host_uid(0, worker, 0);
        if (chown(path, u, (gid_t) u) == 0)
                return 0;
        /* A uid this (container's) root cannot map: its workers are
         * nobody (sandbox_userns_enter()). */
        return errno == EINVAL && chown(path, SANDBOX_NOBODY, SANDBOX_NOBODY) == 0 ? 0 : -errno;
}

/* The owner of a worker's user namespace when the engine runs as root.
 * The kernel charges the per-user counts of every process inside a user
 * namespace (inotify instances and watches, user namespaces, pending
 * signals, message queues) to the namespace's owner in the parent
 * namespace as well: the euid that created it. Created by root, they were
 * host root's, and a run holding 128 inotify instances
 * (fs.inotify.max_user_instances) left every root process on the host,
 * systemd and udev among them, unable to open one until the run ended.
 * Each worker's namespace is owned by a uid of its own instead: this base
 * plus the creating process's pid (pid_max is at most 2^22), above
 * systemd's container ranges and below its "foreign" range, so unused on
 * a host; one worker's runs use up only that worker's counts. */
#define USERNS_OWNER_UID_BASE 0x7f000000u

uid_t sandbox_userns_owner_uid(uid_t euid, pid_t creator) {
        return euid == 0 ? USERNS_OWNER_UID_BASE + (uid_t) creator : euid;
}

/* Makes the caller's effective uid the namespace's owner for the unshare
 * that follows. Real and saved uid stay 0 (the namespace's RLIMIT_NPROC
 * stays unenforced, as for root), and SECBIT_NO_SETUID_FIXUP keeps every
 * capability through the change: where unprivileged user namespaces are
 * restricted, unshare() asks for CAP_SYS_ADMIN. Entering the new
 * namespace sets the securebits back to the default (set_cred_user_ns()). */
static int become_userns_owner(uid_t owner) {
        if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0)
                return -errno;
        if (setresuid((uid_t) -1, owner, (uid_t) -1) < 0)
                return -errno;
        return 0;
}

#define SANDBOX_NAMESPACES (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)

/* X's unshare of the sandbox's namespaces, as the owner uid when it is
 * root. Where that uid cannot be taken (a container whose user namespace
 * maps only its own range: setresuid() is EINVAL) or a kernel refuses the
 * namespace to it, X unshares as root, as before the owner uid: the
 * sandbox stays whole, its counts charged to root of that container. */
static int unshare_namespaces(uid_t euid) {
        bool owner = euid == 0 && become_userns_owner(sandbox_userns_owner_uid(0, getpid())) >= 0;
        if (unshare(SANDBOX_NAMESPACES) == 0)
                return 0;
        if (!owner || setresuid((uid_t) -1, 0, (uid_t) -1) < 0)
                return -errno;
        return unshare(SANDBOX_NAMESPACES) == 0 ? 0 : -errno;
}

static volatile pid_t waited_child;

static void forward_signal(int sig) {
        if (waited_child > 0)
                (void) kill(waited_child, sig);
}

/* Waits for child, forwarding termination signals; exits like it did. */
static _noreturn_ void waiter(pid_t child) {
        waited_child = child;
        struct sigaction sa = { .sa_handler = forward_signal };
        sigemptyset(&sa.sa_mask);
        int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                (void) sigaction(sigs[i], &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) prctl(PR_SET_NAME, "sbx-waiter");
        for (;;) {
                int status;
                pid_t p = waitpid(child, &status, 0);
                if (p < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(127);
                }
                if (WIFEXITED(status))
                        _exit(WEXITSTATUS(status));
                if (WIFSIGNALED(status)) {
                        int sig = WTERMSIG(status);
                        signal(sig, SIG_DFL);
                        sigset_t s;
                        sigemptyset(&s);
                        sigaddset(&s, sig);
                        (void) sigprocmask(SIG_UNBLOCK, &s, NULL);
                        (void) raise(sig);
                        _exit(128 + sig);
                }
        }
}

/* How many runs of one worker at once are sure of their share of the
 * per-user counts the kernel charges to the worker's namespace owner. */
#define RUN_COUNT_SHARES 8u

/* The kernel counts inotify instances and watches per user at each level
 * of user namespaces: within the worker's, per uid (each run's own,
 * sandbox_run_uid_use()), under a limit of the namespace's own (none as
 * made); in the host's, all of them as the worker's owner's, under the
 * host's limit (fs.inotify.max_user_instances, 128 by default). So one
 * run, of any tenant, holding 128 instances left every other run of its
 * worker none (a watchdog, a dev server's reloader: "Too many open
 * files"). Each run uid may now hold an eighth of the host's limit, so
 * eight runs at once keep theirs whatever the others do. Called as root of
 * the worker's namespace (CAP_SYS_RESOURCE there: its /proc/sys/user). */
static void share_counts_per_run(void) {
        static const char *const counts[][2] = {
                { "/proc/sys/fs/inotify/max_user_instances", "/proc/sys/user/max_inotify_instances" },
                { "/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches" },
        };
        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                _cleanup_free_ char *text = NULL;
                uint64_t host = 0;
                if (read_file(counts[i][0], 64, &text, NULL) < 0 || parse_uint64(strstrip(text), &host) < 0)
                        continue;
                char share[32];
                snprintf(share, sizeof(share), "%" PRIu64, MAX(host / RUN_COUNT_SHARES, (uint64_t) 1));
                _cleanup_close_ int fd = open(counts[i][1], O_WRONLY | O_CLOEXEC);
                /* Best effort: a kernel without these leaves it as before. */
                if (fd >= 0)
                        (void) !write(fd, share, strlen(share));
        }
}

static int write_proc(pid_t pid, const char *file, const char *text) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, text, strlen(text)) != (ssize_t) strlen(text))
                return errno > 0 ? -errno : -EIO;
        return 0;
}

typedef struct SetupReport {
        int err;
        char msg[1024];
} SetupReport;

int sandbox_userns_enter(SandboxMounts *m, char **ret_error) {
        int up[2], down[2];
        if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) {
                int r = -errno;
                *ret_error = xasprintf("pipe: %s", strerror(-r));
                return r;
        }
        uid_t euid = geteuid();
        gid_t egid = getegid();
        pid_t w0 = getpid();
        uid_t host_uid = sandbox_host_uid(euid, w0, 0);
        gid_t host_gid = euid == 0 ? (gid_t) host_uid : egid;
        /* Root maps a block: uid 0 inside (the worker) and each run's own
         * (sandbox_run_uid_use()); anyone else, only itself. */
        unsigned n_ids = euid == 0 ? SANDBOX_RUN_UIDS : 1;

        pid_t x = fork();
        if (x < 0) {
                int r = -errno;
                *ret_error = xasprintf("fork: %s", strerror(-r));
                return r;
        }
        if (x == 0) {
                close(up[0]);
                close(down[1]);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != w0)
                        _exit(127);
                SetupReport rep = { 0 };
                char *err = NULL;
                /* First, still privileged: a private mount namespace holding
                 * the new root. Then the user namespace (and a copy of the
                 * mount namespace it owns): the kernel locks every mount
                 * copied into a less privileged namespace, so the worker,
                 * root in its namespace, can neither remount a bind
                 * read-write nor unmount one to see what lies beneath. */
                if (unshare(CLONE_NEWNS) < 0) {
                        rep.err = errno;
                        snprintf(rep.msg, sizeof(rep.msg), "unshare(CLONE_NEWNS): %s", strerror(rep.err));
                } else {
                        int r = sandbox_mounts_build(m, &err);
                        if (r < 0) {
                                rep.err = -r;
                                snprintf(rep.msg, sizeof(rep.msg), "%s", err ? err : strerror(-r));
                        } else if ((r = unshare_namespaces(euid)) < 0) {
                                rep.err = -r;
                                snprintf(rep.msg, sizeof(rep.msg),
                                         "cannot create the sandbox's namespaces (unshare: %s); this kernel or "
                                         "container does not allow user namespaces (see "
                                         "/proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)",
                                         strerror(rep.err));
                        }
                }
                if (write(up[1], &rep, sizeof(rep)) != sizeof(rep) || rep.err != 0)
                        _exit(127);
                char ok;
                if (read(down[0], &ok, 1) != 1 || (ok != 1 && ok != 2))
                        _exit(127);
                close(up[1]);
                close(down[0]);
                if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                        _exit(127);
                if (ok == 2) /* a uid per run: a share each */
                        share_counts_per_run();
                /* The kernel clears the parent-death signal on every
                 * credential change (commit_creds(): the euid just became
                 * the mapped one), so it is set again now, after the last
                 * one, and the parent checked again: had W0 died in
                 * between, X would live on re-parented, and with it a
                 * worker nobody waits for. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != w0)
                        _exit(127);
                /* W1 cannot ask getppid() (X is outside its pid namespace:
                 * 0): it watches this pipe, whose write end only X holds,
                 * for X's death instead. */
                int alive[2];
                if (pipe2(alive, O_CLOEXEC) < 0)
                        _exit(127);
                pid_t w1 = fork();
                if (w1 < 0)
                        _exit(127);
                if (w1 == 0) {
                        /* Dies with X, hence with W0; no credential change
                         * follows in W1. */
                        close(alive[1]);
                        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                                _exit(127);
                        struct pollfd pf = { .fd = alive[0], .events = POLLIN };
                        if (poll(&pf, 1, 0) != 0)
                                _exit(127); /* X is gone already */
                        close(alive[0]);
                        return 0;
                }
                close(alive[0]);
                sandbox_fds_close_except(&alive[1], 1);
                waiter(w1);
        }

        close(up[1]);
        close(down[0]);
        _cleanup_close_ int upr = up[0], downw = down[1];
        SetupReport rep = { 0 };
        if (read(upr, &rep, sizeof(rep)) != sizeof(rep)) {
                rep.err = EIO;
                snprintf(rep.msg, sizeof(rep.msg), "the sandbox's set-up process died");
        }
        if (rep.err != 0) {
                (void) waitpid(x, NULL, 0);
                rep.msg[sizeof(rep.msg) - 1] = 0;
                *ret_error = xasprintf("%s; run trusted code with --sandbox=none", rep.msg);
                return -rep.err;
        }
        _cleanup_free_ char *umap = xasprintf("0 %u %u\n", (unsigned) host_uid, n_ids);
        _cleanup_free_ char *gmap = xasprintf("0 %u %u\n", (unsigned) host_gid, n_ids);
        int r = write_proc(x, "setgroups", "deny");
        if (r < 0 && r != -ENOENT) {
                *ret_error = xasprintf("writing setgroups of the sandbox: %s", strerror(-r));
                goto fail;
        }
        /* A root that is root of a container whose user namespace maps
         * only its own range (65536 uids, say) cannot map the block: its
         * sandbox is uid 65534 as before (runs stay uid 0 inside, where
         * sandbox_run_uid_slots() finds no block). */
        r = write_proc(x, "uid_map", umap);
        if (r < 0 && n_ids > 1) {
                n_ids = 1;
                free(umap);
                free(gmap);
                umap = xasprintf("0 %u 1\n", (unsigned) SANDBOX_NOBODY);
                gmap = xasprintf("0 %u 1\n", (unsigned) SANDBOX_NOBODY);
                r = write_proc(x, "uid_map", umap);
        }
        if (r < 0) {
                *ret_error = xasprintf("writing the sandbox's uid map (%s): %s", strstrip(umap), strerror(-r));
                goto fail;
        }
        r = write_proc(x, "gid_map", gmap);
        if (r < 0 && n_ids > 1) {
                free(gmap);
                gmap = xasprintf("0 %u 1\n", (unsigned) SANDBOX_NOBODY);
                r = write_proc(x, "gid_map", gmap);
        }
        if (r < 0) {
                *ret_error = xasprintf("writing the sandbox's gid map (%s): %s", strstrip(gmap), strerror(-r));
                goto fail;
        }
        char ok = n_ids > 1 ? 2 : 1;
        if (write(downw, &ok, 1) != 1) {
                r = -EIO;
                *ret_error = xstrdup("the sandbox's first process died during set-up");
                goto fail;
        }
        /* Everything the worker needs is inherited by W1 now; the waiter
         * must not keep the control socket (or anything) open. */
        sandbox_fds_close_except(NULL, 0);
        waiter(x);

fail:
        (void) kill(x, SIGKILL);
        (void) waitpid(x, NULL, 0);
        return r;
}
