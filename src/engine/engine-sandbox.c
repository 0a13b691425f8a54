/* Isolation of workers and runs, engine side (DESIGN §5).
 *
 * --sandbox=full: the worker enters its namespaces itself
 * (sandbox_worker_enter(), called by pysprinter-worker before
 * Py_Initialize); the engine checks up front that the kernel can do it,
 * so the user gets the reason, not "the worker exited". Per run, the
 * engine makes the run's cgroup(s) beneath its own, passes their
 * cgroup.procs fds with the run message (the run joins through them: see
 * sandbox-cgroup.c on delegation through fds), kills the whole cgroup at
 * a limit or cancel, reads its OOM/pids counters to say which limit ended
 * the run, and removes it.
 *
 * --sandbox=none: a plain spawn of the worker; a run is killed through its
 * process group. */
#include <assert.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "engine-internal.h"
#include "sandbox.h"
#include "worker-proto.h"

/* Overhead processes of a sandboxed run that count against pids.max
 * (see sandbox.h): the user code's process counts as one of max_procs. */
#define RUN_EXTRA_PROCS SANDBOX_RUN_EXTRA_PROCS
/* CPU bandwidth of one run, in thousandths of a CPU. */
#define RUN_CPU_MILLIS 1000

struct RunSandbox {
        Engine *e;
        bool recyclable; /* an ad-hoc run's: its groups go to e->cg_spares */
        SandboxMode mode;
        pid_t worker_pid;
        pid_t child_pid;
        SandboxCgroup *cg;
        RunLimits limits;
};

/* Starts the worker program: argv and envp, WORKER_CTRL_FD its control
 * socket, stdin and stdout /dev/null, no signal blocked, the usual
 * scheduling policy whatever the calling thread's (a daemon's run thread
 * is SCHED_BATCH, which SCHED_RESET_ON_FORK would not reset: it resets
 * real-time policies and negative nice only).
 *
 * posix_spawn(), not fork(): glibc's shares the daemon's memory with the
 * child until it execs (CLONE_VM | CLONE_VFORK), where a fork() copied
 * the page tables of the whole multithreaded daemon and write-protected
 * its memory, so that every thread of the daemon took a page fault (and
 * the machine a TLB shoot-down) at its next write to each page until the
 * child exec'd: a stall of every running invoke (docs/internals/performance-log.md,
 * round 28). */
static int spawn_worker_process(const WorkerSpawn *ws, char **argv, char **envp, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        /* dup2 onto itself clears FD_CLOEXEC (POSIX, glibc >= 2.29). */
        posix_spawn_file_actions_adddup2(&fa, ws->ctrl_fd, WORKER_CTRL_FD);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDWR, 0);
        posix_spawn_file_actions_adddup2(&fa, STDIN_FILENO, STDOUT_FILENO);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        short flags = POSIX_SPAWN_SETSIGMASK;
        if (sched_getscheduler(0) != SCHED_OTHER) {
                struct sched_param sp = { .sched_priority = 0 };
                posix_spawnattr_setschedpolicy(&attr, SCHED_OTHER);
                posix_spawnattr_setschedparam(&attr, &sp);
                flags |= POSIX_SPAWN_SETSCHEDULER;
        }
        posix_spawnattr_setflags(&attr, flags);
        int k = posix_spawn(ret_pid, argv[0], &fa, &attr, argv, envp);
        if (k == EPERM && (flags & POSIX_SPAWN_SETSCHEDULER)) {
                /* A policy this thread may not leave: the worker keeps it,
                 * as the fork() did when its sched_setscheduler() failed. */
                posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
                k = posix_spawn(ret_pid, argv[0], &fa, &attr, argv, envp);
        }
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -k;
}

int engine_sandbox_spawn_worker(const WorkerSpawn *ws, pid_t *ret_pid, char **ret_error) {
        char **argv = NULL;
        bool launch = ws->mode != SANDBOX_MODE_NONE && ws->launcher_path;
        argv = strv_append(argv, launch ? ws->launcher_path : ws->worker_path);
        if (ws->mode == SANDBOX_MODE_NONE)
                argv = strv_append(argv, "--sandbox=none");
        else {
                int r = sandbox_check_support(ret_error);
                if (r < 0) {
                        strv_free(argv);
                        return r;
                }
                if (launch) {
                        _cleanup_free_ char *a = xasprintf("--worker=%s", ws->worker_path);
                        argv = strv_append(argv, a);
                }
                argv = strv_append(argv, "--sandbox=full");
                for (char **p = ws->ro_paths; p && *p; p++) {
                        _cleanup_free_ char *a = xasprintf("--ro=%s", *p);
                        argv = strv_append(argv, a);
                }
                for (char **p = ws->data; p && *p; p++) {
                        _cleanup_free_ char *a = xasprintf("--data=%s", *p);
                        argv = strv_append(argv, a);
                }
                if (ws->out_root) {
                        _cleanup_free_ char *a = xasprintf("--out-root=%s", ws->out_root);
                        argv = strv_append(argv, a);
                }
        }
        /* A clean environment: the parent's secrets never reach a worker
         * (the sandboxed worker scrubs again, and wipes the strings). */
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin", (char *) "LANG=C.UTF-8",
                         (char *) "PYTHONDONTWRITEBYTECODE=1", NULL };
        pid_t pid;
        int r = spawn_worker_process(ws, argv, envp, &pid);
        if (r < 0)
                *ret_error = xasprintf("cannot start %s: %s", argv[0], strerror(-r));
        strv_free(argv);
        if (r < 0)
                return r;
        *ret_pid = pid;
        return 0;
}

/* A cgroup name from a run id or an instance key: [A-Za-z0-9_.-] only,
 * unique in this process (a counter: an instance key names a function,
 * not one of its instances, and a retried run keeps its id). The sandbox
 * adds "-nNS-PID" (sandbox_cgroup_new()): how its sweep knows whose it is. */
static char *cgroup_name(const char *run_id) {
        static uint64_t counter;
        uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        char suffix[32];
        snprintf(suffix, sizeof(suffix), "-%llu", (unsigned long long) n);
        /* 64 bytes at most, and the suffix always whole. */
        size_t room = 64 - strlen(suffix);
        char *s = xasprintf("%.*s%s", (int) room, run_id ? run_id : "run", suffix);
        for (char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_' || *p == '.'))
                        *p = '_';
        return s;
}

/* A finished ad-hoc run's groups, taken again (see sandbox_cgroup_recycle()
 * on what is kept and why no state of the last run reaches the next).
 * Oldest first: taken newest first, a group put back while others lay on
 * top of it stayed unused for good whenever the runs came one at a time
 * (each run's group went back on top and was the next spare's). */
static SandboxCgroup *cg_spare_take(Engine *e) {
        SandboxCgroup *cg = NULL;
        pthread_mutex_lock(&e->out_spare_lock);
        if (e->n_cg_spares) {
                cg = e->cg_spares[e->cg_spares_head];
                e->cg_spares_head = (e->cg_spares_head + 1) % ELEMENTSOF(e->cg_spares);
                e->n_cg_spares--;
        }
        pthread_mutex_unlock(&e->out_spare_lock);
        return cg;
}

static void cg_spare_put(Engine *e, SandboxCgroup *cg) {
        cg = sandbox_cgroup_recycle(cg);
        if (!cg)
                return;
        pthread_mutex_lock(&e->out_spare_lock);
        if (e->n_cg_spares < ELEMENTSOF(e->cg_spares)) {
                e->cg_spares[(e->cg_spares_head + e->n_cg_spares++) % ELEMENTSOF(e->cg_spares)] = cg;
                cg = NULL;
        }
        pthread_mutex_unlock(&e->out_spare_lock);
        sandbox_cgroup_free(cg);
}

void engine_sandbox_cgroups_free(Engine *e) {
        pthread_mutex_lock(&e->out_spare_lock);
        for (; e->n_cg_spares; e->n_cg_spares--) {
                sandbox_cgroup_free(e->cg_spares[e->cg_spares_head]);
                e->cg_spares_head = (e->cg_spares_head + 1) % ELEMENTSOF(e->cg_spares);
        }
        pthread_mutex_unlock(&e->out_spare_lock);
}

static int sandbox_prepare(Engine *e, const char *run_id, SandboxMode mode, const RunLimits *limits, bool freezable,
                           RunSandbox **ret, char **ret_error) {
        RunSandbox *rs = xcalloc(1, sizeof(RunSandbox));
        rs->e = e;
        rs->recyclable = !freezable;
        rs->mode = mode;
        rs->limits = *limits;
        if (mode == SANDBOX_MODE_FULL) {
                SandboxLimits l = {
                        .memory_bytes = limits->memory_bytes,
                        .max_procs = limits->max_procs ? limits->max_procs + RUN_EXTRA_PROCS : 0,
                        .cpu_millis = RUN_CPU_MILLIS,
                        .no_freezer = !freezable,
                };
                /* An ad-hoc run's groups may be another run's next (all
                 * but memory): their names carry no run id, which the next
                 * run would see in /proc/self/cgroup. */
                _cleanup_free_ char *name = cgroup_name(freezable ? run_id : NULL), *err = NULL;
                SandboxCgroup *reused = rs->recyclable ? cg_spare_take(e) : NULL;
                if (reused) {
                        if (sandbox_cgroup_renew(reused, name, &l, &err) >= 0) {
                                rs->cg = reused;
                                *ret = rs;
                                return 0;
                        }
                        sandbox_cgroup_free(reused);
                        free(TAKE_PTR(err));
                }
                /* No cgroup (an unprivileged engine without delegation) is
                 * not fatal: the run's pid namespace still dies with it,
                 * and rlimits bound memory. A group that exists already is:
                 * sharing one would share its kill. */
                int r = sandbox_cgroup_new(name, &l, &rs->cg, &err);
                if (r == -EEXIST) {
                        *ret_error = TAKE_PTR(err);
                        free(rs);
                        return r;
                }
        }
        *ret = rs;
        return 0;
}

/* An ad-hoc run (or the spare made for one) is never frozen: its groups
 * skip a hierarchy that would give them only the freezer (one mkdir,
 * rmdir, cgroup.procs open and join fewer per run on a hybrid host). */
int engine_sandbox_run_prepare(Engine *e, const char *run_id, SandboxMode mode, const RunLimits *limits,
                               RunSandbox **ret, char **ret_error) {
        return sandbox_prepare(e, run_id, mode, limits, false, ret, ret_error);
}

/* A warm instance is frozen while idle. */
int engine_sandbox_instance_prepare(Engine *e, const char *key, SandboxMode mode, const RunLimits *limits,
                                    RunSandbox **ret, char **ret_error) {
        return sandbox_prepare(e, key, mode, limits, true, ret, ret_error);
}

void engine_sandbox_run_extra(RunSandbox *rs, int *fds, size_t *n_fds, size_t max_fds, char **ret_json) {
        *n_fds = 0;
        *ret_json = NULL;
        if (rs->mode != SANDBOX_MODE_FULL)
                return;
        *n_fds = sandbox_cgroup_procs_fds(rs->cg, fds, max_fds);
        *ret_json = xasprintf("{\"cgroup_fds\":%zu,\"memory_cgroup\":%s}", *n_fds,
                              sandbox_cgroup_has_memory(rs->cg) ? "true" : "false");
}

/* child_pid is written by the run's thread (started, exited) and read by
 * a cancel's thread (engine_cancel() → engine_sandbox_run_kill()): each
 * reader loads it once. Read twice, a run that ended between the check
 * and the kill made it kill(-0, SIGKILL): the caller's own process group
 * (the engine and everything its shell started with it). */
static pid_t run_child_pid(const RunSandbox *rs) {
        return __atomic_load_n(&rs->child_pid, __ATOMIC_ACQUIRE);
}

void engine_sandbox_run_started(RunSandbox *rs, pid_t worker_pid, pid_t child_pid) {
        rs->worker_pid = worker_pid;
        __atomic_store_n(&rs->child_pid, child_pid, __ATOMIC_RELEASE);
}

void engine_sandbox_run_exited(RunSandbox *rs) {
        __atomic_store_n(&rs->child_pid, 0, __ATOMIC_RELEASE);
}

/* Whether pid is in the first n of v. */
static bool pid_listed(const pid_t *v, size_t n, pid_t pid) {
        for (size_t i = 0; i < n; i++)
                if (v[i] == pid)
                        return true;
        return false;
}

/* Without a sandbox a run has no cgroup and no pid namespace: its kill
 * was its process group's, and a child in a session of its own
 * (`setsid`, `start_new_session=True`) outlived the run for good. Every
 * descendant of root is stopped as it is found (a stopped one forks no
 * more), by parent links in /proc until a pass finds none new, then all
 * are killed. One that was orphaned before (a double fork) is init's and
 * is not found: that takes a cgroup (--sandbox=full). parent: the worker
 * root must be a child of. Every signal goes through a pidfd opened
 * before the process's parent was read: a pid the kernel gave anew
 * meanwhile (the run reaped by its worker while the walk ran, then the id
 * of another process's new thread, whose SIGKILL is that whole
 * process's) is never signalled. No pidfds (a kernel before 5.3): the
 * process group's kill alone, as before. kill_descendants() is true when
 * it held root by a pidfd (and killed it). */
typedef struct PidSet {
        pid_t *pids;
        int *pidfds;
        size_t n, cap;
} PidSet;

/* Adds pid, stopped, when its parent is want (or, want 0, one of set's):
 * the pidfd is opened before the parent is read, so the process checked
 * is the one signalled. */
static bool pid_set_take(PidSet *set, pid_t pid, pid_t want) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return false;
        _cleanup_close_ int fd = proc_status_open(pid);
        pid_t ppid = fd >= 0 ? proc_status_ppid(fd) : fd;
        if (ppid <= 0 || (want ? ppid != want : !pid_listed(set->pids, set->n, ppid))) {
                (void) close(pidfd);
                return false;
        }
        (void) syscall(SYS_pidfd_send_signal, pidfd, SIGSTOP, NULL, 0);
        if (set->n == set->cap) {
                set->cap = set->cap ? set->cap * 2 : 64;
                set->pids = xrealloc(set->pids, set->cap * sizeof(pid_t));
                set->pidfds = xrealloc(set->pidfds, set->cap * sizeof(int));
        }
        set->pids[set->n] = pid;
        set->pidfds[set->n++] = pidfd;
        return true;
}

static bool kill_descendants(pid_t root, pid_t parent) {
        PidSet set = { 0 };
        if (parent <= 0 || !pid_set_take(&set, root, parent))
                return false;
        for (int pass = 0; pass < 16; pass++) {
                DIR *proc = opendir("/proc");
                if (!proc)
                        break;
                size_t before = set.n;
                struct dirent *de;
                while ((de = readdir(proc))) {
                        char *end;
                        long pid = strtol(de->d_name, &end, 10);
                        if (!*end && pid > 0 && !pid_listed(set.pids, set.n, (pid_t) pid))
                                (void) pid_set_take(&set, (pid_t) pid, 0);
                }
                closedir(proc);
                if (set.n == before)
                        break;
        }
        for (size_t i = 0; i < set.n; i++) {
                (void) syscall(SYS_pidfd_send_signal, set.pidfds[i], SIGKILL, NULL, 0);
                (void) close(set.pidfds[i]);
        }
        free(set.pids);
        free(set.pidfds);
        return true;
}

int engine_sandbox_run_kill(RunSandbox *rs) {
        if (rs->mode == SANDBOX_MODE_FULL) {
                if (rs->cg)
                        return sandbox_cgroup_kill(rs->cg);
                /* No cgroup: the run's pid is the worker's view, not ours.
                 * Last resort: the worker, whose namespace takes every run
                 * in it down. */
                if (rs->worker_pid > 0)
                        (void) kill(rs->worker_pid, SIGKILL);
                return 0;
        }
        pid_t child = run_child_pid(rs);
        if (child <= 0)
                return -ESRCH;
        /* The group's kill stays: a pgid is not given to another process
         * while a member holds it. The run's own pid is signalled by
         * number only when the walk could not hold it by a pidfd. */
        bool held = kill_descendants(child, rs->worker_pid);
        (void) kill(-child, SIGKILL);
        if (!held)
                (void) kill(child, SIGKILL);
        return 0;
}

int engine_sandbox_run_classify(RunSandbox *rs, bool signaled, int sig, char **ret_type, char **ret_message) {
        if (rs->mode != SANDBOX_MODE_FULL)
                return 0;
        SandboxCgroupStats st = { 0 };
        bool have = rs->cg && sandbox_cgroup_stats(rs->cg, &st) >= 0;
        SandboxEnd end = {
                .signaled = signaled,
                .sig = sig,
                .succeeded = !signaled,
                .stats = have ? &st : NULL,
                .memory_bytes = rs->limits.memory_bytes,
                .max_procs = rs->limits.max_procs,
        };
        /* A refused fork usually surfaces as a Python exception (the run
         * "returns" an error), not a signal: any refusal is the cause. */
        if (have && st.pids_max > 0)
                end.succeeded = false;
        char *type = NULL, *msg = NULL;
        SandboxOutcome o = sandbox_classify(&end, &type, &msg);
        if (o == SANDBOX_OUTCOME_NONE || (o == SANDBOX_OUTCOME_CRASH && signaled && sig == SIGKILL)) {
                free(type);
                free(msg);
                return 0;
        }
        *ret_type = type;
        *ret_message = msg;
        return 1;
}

RunSandbox *engine_sandbox_run_finish(RunSandbox *rs) {
        if (!rs)
                return NULL;
        if (rs->mode == SANDBOX_MODE_FULL && rs->recyclable && rs->cg)
                cg_spare_put(rs->e, TAKE_PTR(rs->cg));
        else if (rs->mode == SANDBOX_MODE_FULL)
                rs->cg = sandbox_cgroup_free(rs->cg);
        else {
                pid_t child = run_child_pid(rs);
                if (child > 0)
                        (void) kill(-child, SIGKILL);
        }
        free(rs);
        return NULL;
}

int engine_sandbox_sweep(void) {
        return sandbox_cgroup_sweep_stale();
}

static SandboxLimits sandbox_limits_of(const RunLimits *limits) {
        return (SandboxLimits) {
                .memory_bytes = limits->memory_bytes,
                .max_procs = limits->max_procs ? limits->max_procs + RUN_EXTRA_PROCS : 0,
                .cpu_millis = RUN_CPU_MILLIS,
        };
}

bool engine_sandbox_run_has_cgroup(const RunSandbox *rs) {
        return rs && rs->mode == SANDBOX_MODE_FULL && rs->cg;
}

int engine_sandbox_run_set_limits(RunSandbox *rs, const RunLimits *limits) {
        /* A spare's cgroup was made with the defaults, which most runs
         * keep: then its limits are the run's already, and writing them
         * again is seven cgroup-file writes on the run's critical path. */
        bool same = rs->limits.memory_bytes == limits->memory_bytes && rs->limits.max_procs == limits->max_procs;
        rs->limits = *limits;
        if (!engine_sandbox_run_has_cgroup(rs) || same)
                return 0;
        SandboxLimits l = sandbox_limits_of(limits);
        int r = sandbox_cgroup_set_limits(rs->cg, &l);
        if (r >= 0)
                return 0;
        /* The spare in the group holds more than the run's memory limit
         * (a package's after-fork hook, a small limit): v1 refused the
         * limit and the group kept the spare's, the defaults. Ignored, the
         * run went on under them, above its grant. The spare goes; the
         * worker forks the run into the emptied group itself, as for a
         * spare that died before its run (worker.c). */
        (void) sandbox_cgroup_kill(rs->cg);
        return sandbox_cgroup_set_limits(rs->cg, &l);
}

void engine_sandbox_run_prejoined_json(RunSandbox *rs, char **ret_json) {
        *ret_json = rs->mode != SANDBOX_MODE_FULL
                            ? NULL
                            : xasprintf("{\"cgroup_fds\":0,\"memory_cgroup\":%s}",
                                        sandbox_cgroup_has_memory(rs->cg) ? "true" : "false");
}

char **engine_sandbox_worker_paths(SandboxMode mode, char *const *host) {
        char **out = xcalloc(1, sizeof(char *));
        for (char *const *p = host; p && *p; p++) {
                _cleanup_free_ char *inside = mode == SANDBOX_MODE_FULL ? sandbox_inside_path(*p) : xstrdup(*p);
                out = strv_append(out, inside);
        }
        return out;
}

int proc_status_open(pid_t pid) {
        assert(pid > 0);
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* The hex mask after key ("\nSigPnd:"), 0 when absent. */
static uint64_t status_mask(const char *text, const char *key) {
        const char *p = strstr(text, key);
        return p ? strtoull(p + strlen(key), NULL, 16) : 0;
}

static ssize_t status_read(int fd, char *buf, size_t size) {
        /* A seq_file: reading from offset 0 generates it afresh. */
        ssize_t n = pread(fd, buf, size - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return n;
}

bool proc_status_doomed(int fd) {
        assert(fd >= 0);
        char buf[4096];
        if (status_read(fd, buf, sizeof(buf)) < 0)
                return true; /* ESRCH: reaped */
        const char *state = strstr(buf, "\nState:");
        if (state) {
                state += strlen("\nState:");
                state += strspn(state, " \t");
                if (*state == 'Z' || *state == 'X')
                        return true;
        }
        /* A SIGKILL sent while it was frozen waits for the thaw, and even
         * on a running process its exit comes some time after kill()
         * returned: the pending signal says so at once. kill() of a
         * process queues it on the shared set and, being fatal, on every
         * thread's own set. */
        uint64_t kill_bit = UINT64_C(1) << (SIGKILL - 1);
        return ((status_mask(buf, "\nShdPnd:") | status_mask(buf, "\nSigPnd:")) & kill_bit) != 0;
}

pid_t proc_status_ppid(int fd) {
        assert(fd >= 0);
        char buf[4096];
        ssize_t n = status_read(fd, buf, sizeof(buf));
        if (n < 0)
                return (pid_t) n;
        const char *p = strstr(buf, "\nPPid:");
        return p ? (pid_t) strtol(p + strlen("\nPPid:"), NULL, 10) : -ENOENT;
}

pid_t engine_sandbox_run_host_pid(const RunSandbox *rs) {
        if (!engine_sandbox_run_has_cgroup(rs))
                return -EOPNOTSUPP;
        pid_t pids[16];
        int n = sandbox_cgroup_pids(rs->cg, pids, ELEMENTSOF(pids));
        if (n < 0)
                return n;
        if (n == 0 || (size_t) n > ELEMENTSOF(pids))
                return n == 0 ? -ESRCH : -ENOTUNIQ;
        if (n == 1)
                return pids[0];
        /* Its children (a subprocess its code started) are in the group
         * too; its own parent (its pid namespace's init) is not. */
        pid_t found = -ESRCH;
        for (int i = 0; i < n; i++) {
                _cleanup_close_ int fd = proc_status_open(pids[i]);
                pid_t ppid = fd >= 0 ? proc_status_ppid(fd) : fd;
                bool inside = false;
                for (int j = 0; j < n; j++)
                        inside = inside || pids[j] == ppid;
                if (ppid > 0 && !inside) {
                        if (found > 0)
                                return -ENOTUNIQ;
                        found = pids[i];
                }
        }
        return found;
}

int engine_sandbox_run_freeze(RunSandbox *rs, bool frozen) {
        if (!engine_sandbox_run_has_cgroup(rs))
                return -EOPNOTSUPP;
        return sandbox_cgroup_freeze(rs->cg, frozen);
}
