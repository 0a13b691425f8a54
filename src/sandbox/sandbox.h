/* sandbox: Linux isolation for workers and runs (docs/sandbox.md).
 *
 * Three parties use this module:
 *
 *  - the engine (possibly multithreaded) creates a cgroup per run with
 *    sandbox_cgroup_new(), opens the cgroup.procs files the run joins
 *    through (they travel to the worker as fds), kills and removes the
 *    cgroup when the run ends, and turns how a run ended into a message
 *    with sandbox_classify();
 *  - the freshly exec'd, single-threaded worker calls
 *    sandbox_worker_enter() before Py_Initialize: user, pid, mount, ipc,
 *    uts and cgroup namespaces, a read-only tmpfs root, a scrubbed
 *    environment, a precompiled seccomp filter;
 *  - each forked run child calls sandbox_run_enter(): cgroup, its own
 *    loopback-only network namespace (unless network), private mount/pid
 *    namespaces, per-run tmpfs /tmp and /dev/shm, fresh
 *    /proc, rlimits, closed fds, setsid, no capabilities, no_new_privs,
 *    non-dumpable, seccomp.
 *
 * Process layout: the worker W is pid 1 of the worker's pid namespace.
 * Per run, W makes a fresh pid namespace whose first process G is its
 * init (a CLONE_VM child of W: no page tables to copy) and forks the run
 * child H into it (pid 2), which runs the user code (sandbox-pidns.c).
 * When H ends W kills G, and the kernel then kills everything left in the
 * run's pid namespace: a double-forked, setsid'd survivor cannot outlive
 * its run even where no cgroup is available. W reports H's exit (code or
 * signal) once G is reaped. Without the worker's pid namespace (another
 * architecture, the unit tests), sandbox_run_enter() makes it itself: the
 * run child C makes G and forks H, then mirrors H's exit.
 *
 * Depends on: basic, libseccomp. Returns >= 0 or -errno; user-facing
 * details through ret_error. */
#pragma once

#include <sys/types.h>

#include "basic.h"

/* ---- worker level --------------------------------------------------------- */

/* Fixed places inside the sandbox: nothing a run can read names a host
 * path (the build tree, the data dir, PYSPRINTER_HOME). */
#define SANDBOX_RUN_DIR "/run/pysprinter"
/* The worker binary (a copy); the worker re-execs itself from here. */
#define SANDBOX_WORKER_PATH SANDBOX_RUN_DIR "/worker"
/* The engine's directory of per-run output dirs (SandboxWorkerConfig.
 * out_root), writable; a run binds its own entry at SANDBOX_OUT_DIR and
 * detaches this before user code runs, so no run sees another's. */
#define SANDBOX_OUT_ROOT SANDBOX_RUN_DIR "/outputs"
/* Where a run sees its writable output directory (pysprinter.output_dir()). */
#define SANDBOX_OUT_DIR "/out"
/* The package store's dirs (SandboxWorkerConfig.ro_paths). */
#define SANDBOX_STORE_DIR SANDBOX_RUN_DIR "/store"

/* Where the host dir given in SandboxWorkerConfig.ro_paths is seen inside:
 * SANDBOX_STORE_DIR/<its last component> (store dirs are named by their
 * hash). The engine translates the paths it sends the worker with it.
 * Caller frees. */
char *sandbox_inside_path(const char *host);

typedef struct SandboxWorkerConfig {
        /* Host dirs seen read-only at sandbox_inside_path() (the package
         * store's). Missing paths are an error. */
        char **ro_paths;
        /* Data sets, "NAME=/host/path": seen read-only at /data/NAME. */
        char **data;
        /* Bytes of the worker's own /tmp (the runs get their own). 0: 16 MiB. */
        uint64_t worker_tmp_bytes;
        /* Host dir holding the runs' output dirs, seen writable at
         * SANDBOX_OUT_ROOT by the worker only (NULL: runs get no /out). */
        const char *out_root;
        /* The worker binary copied to SANDBOX_WORKER_PATH (what is exec'd
         * inside). NULL: this process's own (/proc/self/exe). The small
         * launcher (pysprinter-worker-sandbox) names the Python worker. */
        const char *worker_binary;
} SandboxWorkerConfig;

/* Enters the worker-level sandbox. Must be called single-threaded, before
 * any library starts threads (i.e. before Py_Initialize).
 *
 * Returns 0 in the sandboxed worker (a new process: pid 1 of a new pid
 * namespace, uid 0 of a new user namespace mapped to the caller's uid, or
 * when the caller is root to the first of a block of uids no account has
 * (sandbox_host_uid(): its runs get the others), so that nothing outside
 * the binds is writable even through a kernel bug). The calling process never
 * returns on success: it stays outside as a waiter that forwards SIGTERM,
 * SIGINT and SIGHUP and exits with the sandboxed worker's status.
 *
 * On failure (a kernel without user namespaces, a missing path…) returns
 * -errno and *ret_error names what is missing and suggests --sandbox=none. */
int sandbox_worker_enter(const SandboxWorkerConfig *cfg, char **ret_error);

/* True once sandbox_worker_enter() or sandbox_worker_resume() succeeded
 * in this process (or its forks). */
bool sandbox_worker_active(void);

/* In the worker re-executed from SANDBOX_WORKER_PATH inside the namespaces
 * sandbox_worker_enter() made (their mounts, hostname and /proc survive
 * exec): scrubs the environment, makes the process non-dumpable again and
 * compiles the seccomp filter. */
int sandbox_worker_resume(char **ret_error);

/* ---- adoption: a blank worker takes an environment (docs/sandbox.md) ---- */

/* In the engine (root): a detached read-only mount (MOUNT_ATTR_RDONLY,
 * NOSUID, NODEV) of the host store dir `host`, as an overlay whose options
 * name only /proc/self/fd paths (mountinfo inside shows no host path, as
 * for the dirs sandbox_worker_enter() binds). Returns the mount's fd
 * (O_CLOEXEC), to be passed to the worker with SCM_RIGHTS. */
int sandbox_store_mount_open(const char *host, char **ret_error);

/* In a sandboxed worker started with no store dir (a blank worker): mounts
 * a tmpfs of its own on SANDBOX_STORE_DIR (first call) and attaches
 * mount_fd at SANDBOX_STORE_DIR/name with move_mount(). -EEXIST when the
 * worker was exec'd with store dirs, -EPERM once sealed: a worker adopts
 * one environment, once. */
int sandbox_worker_store_attach(const char *name, int mount_fd, char **ret_error);

/* Ends adoption for good: the tmpfs on SANDBOX_STORE_DIR (if any) becomes
 * read-only, and no later attach is accepted. Called before the env's
 * modules are imported. */
int sandbox_worker_store_seal(char **ret_error);

/* ---- uids ---------------------------------------------------------------- */

/* When the engine is root, each worker's user namespace maps its uids
 * (and gids) 0..SANDBOX_RUN_UIDS-1 to a block of host uids of its own,
 * SANDBOX_RUN_UID_BASE + W0's pid * SANDBOX_RUN_UIDS on: 0 is the worker,
 * the others its run children's (docs/sandbox.md "Users"). The range
 * 0x70000000..0x77ffffff is unused by systemd (its container ranges end
 * at 0x6fffffff, its foreign range is 0x7ffe0000) and far above
 * /etc/subuid's (login.defs SUB_UID_MAX 600100000). */
#define SANDBOX_RUN_UID_BASE 0x70000000u
#define SANDBOX_RUN_UIDS 32u

/* The host uid of slot (0: the worker itself) in the sandbox of the worker
 * whose engine-side pid (W0) is worker, for an engine with euid: euid
 * itself unless root. */
uid_t sandbox_host_uid(uid_t euid, pid_t worker, unsigned slot);
/* Whether uid is one sandbox_host_uid() gives an engine with euid (or
 * SANDBOX_NOBODY, where a root engine cannot map the block). */
bool sandbox_host_uid_is_run(uid_t euid, uid_t uid);
/* Makes path (a run's output dir) its worker's, uid and gid, when the
 * caller is root; else does nothing. 0 or -errno. */
int sandbox_host_chown(const char *path, pid_t worker);
#define SANDBOX_NOBODY 65534u
/* In a sandboxed worker: how many uids its namespace maps (1 when its
 * engine is not root: runs stay uid 0 inside). */
unsigned sandbox_run_uid_slots(void);
/* The run child forked next becomes uid and gid slot (< the above; 0:
 * the worker's own) of its worker's namespace: sandbox_mounts_out() gives
 * it its /out dir, sandbox_caps_drop() the uid. */
void sandbox_run_uid_use(unsigned slot);

/* ---- run level ---------------------------------------------------------------- */

typedef struct SandboxRunConfig {
        uint64_t tmp_bytes;        /* /tmp tmpfs size; 0: 64 MiB */
        uint64_t shm_bytes;        /* /dev/shm tmpfs size; 0: 64 MiB */
        uint64_t nofile;           /* RLIMIT_NOFILE; 0: 1024 */
        uint64_t fsize_bytes;      /* RLIMIT_FSIZE; 0: the larger tmpfs + 16 MiB */
        uint64_t cpu_seconds;      /* RLIMIT_CPU backstop; 0: none */
        /* Only used when no memory cgroup is available: RLIMIT_AS. 0: none. */
        uint64_t fallback_as_bytes;
        /* The run's entry under SANDBOX_OUT_ROOT: its "u" (upper) and "w"
         * (overlay work) dirs become SANDBOX_OUT_DIR. NULL: /out stays
         * the empty read-only dir. SANDBOX_OUT_ROOT is detached either way. */
        const char *out_name;
        bool network;              /* stay in the worker's (host) network namespace;
                                    * else a new one of the run's own */
        /* cgroup.procs fds the engine opened (see sandbox_cgroup_procs_fds());
         * the run writes "0" to each, then closes them. */
        const int *cgroup_fds;
        size_t n_cgroup_fds;
        /* fds the user code keeps besides 0-2 (stdout/stderr pipes, result
         * pipe); everything else is closed. */
        const int *keep_fds;
        size_t n_keep_fds;
} SandboxRunConfig;

/* Isolates the calling run child (a fork of a sandboxed worker, or of any
 * process when the worker level is not active: the unit tests do that, and
 * then only the run-level steps apply). Returns 0 only in the process that
 * runs user code; the intermediate processes never return (they _exit with
 * the user code's status). On failure returns -errno with *ret_error. */
int sandbox_run_enter(const SandboxRunConfig *cfg, char **ret_error);
/* sandbox_run_enter() in two halves, so a pre-forked spare can do the
 * costly half (cgroup, network, mount and pid namespaces, the run's init
 * and the fork of the user process, its mounts, setsid) while idle:
 * _prepare returns in the user process; _finish_enter then applies the
 * run's rlimits, closes all fds but keep_fds, drops capabilities and loads
 * the seccomp filter. */
int sandbox_run_prepare(const SandboxRunConfig *cfg, char **ret_error);

/* In the worker, for a run forked directly (no spare joined its cgroup
 * ahead): _begin(), as soon as the run's cgroup.procs fds are known,
 * starts the RCU grace period a first cgroup v1 move waits for, in a
 * helper that moves itself into that cgroup and exits; _end(), right
 * before the fork, reaps it (no-op if none). The run's own join then does
 * not wait. -EOPNOTSUPP where raw system calls are not available. See
 * sandbox-cgroup.c. */
int sandbox_cgroup_warm_begin(int procs_fd);
void sandbox_cgroup_warm_end(void);

/* In the worker, at init, when its runs have no network: it leaves the
 * host's network namespace for one of its own (loopback down) before it
 * imports any module of its environment (sandbox-net.c). */
int sandbox_worker_net_isolate(char **ret_error);

/* Reuse of finished runs' network namespaces (sandbox-net.c). In the
 * worker: _lend() before forking a run child hands it one (from the pool,
 * else a fresh one the worker makes: negative errno if it cannot, and the
 * child makes its own); the child adopts it only if pristine, else makes
 * its own and marks the lent one rejected. _lend_end() after the fork
 * returns the worker's fd of the lent namespace (owned by the caller,
 * -EBADF if none), which it gives to _return() once the run's pid
 * namespace is empty: back to the pool, or destroyed if the child
 * rejected it or the pool is full. _pool_drop(): in every child, which
 * must not keep the pool. */
int sandbox_netns_lend(void);
int sandbox_netns_lend_end(void);
void sandbox_netns_return(int fd);
void sandbox_netns_pool_drop(void);
/* How many pristine checks this process made when adopting a lent
 * namespace (a run child makes one at most): none for a namespace the
 * worker made for that lend, one for a namespace from the pool. For the
 * tests. */
unsigned sandbox_net_pristine_checks(void);

/* The texts of /proc/self/net/{sockstat,sockstat6,dev,snmp,snmp6,netstat}
 * of a namespace: pristine when no socket, TIME_WAIT or fragment is in it
 * and every counter is zero but a fresh namespace's constants. */
typedef struct SandboxNetTexts {
        const char *sockstat, *sockstat6, *dev, *snmp, *snmp6, *netstat;
} SandboxNetTexts;
bool sandbox_net_counters_pristine(const SandboxNetTexts *t);

/* The run's pid namespace made by the worker itself (sandbox-pidns.c): one
 * fork of the interpreter per run instead of two. In the worker, around the
 * fork of a run child: _begin unshares a pid namespace and clones its init
 * (pid 1, sharing the worker's memory, no page tables copied), so that the
 * next fork is pid 2 there; _end puts the worker's later children back in
 * its own namespace. The forked child calls _child, then
 * sandbox_run_prepare()/sandbox_run_enter(), which find the namespace made
 * (no init of their own, no second fork). The worker reaps the run child,
 * SIGKILLs init, and calls _release once init is reaped (the kernel has
 * then killed everything left in the namespace). Where raw system calls
 * are not available to the init (another architecture), _begin makes
 * nothing (init stays -1) and the run child makes its namespace itself. */
typedef struct SandboxRunPidns {
        pid_t init; /* -1: none made */
        void *stack;
        void *flag; /* the init's flag page, shared with the run child */
} SandboxRunPidns;
int sandbox_run_pidns_begin(SandboxRunPidns *ret, char **ret_error);
void sandbox_run_pidns_end(SandboxRunPidns *ns);
void sandbox_run_pidns_child(void);
/* In a run child, before any code of the run's: waits until the init of
 * its namespace has an fd table of its own (the worker's is not the
 * run's to list through /proc/1/fd). Once; a no-op elsewhere. */
void sandbox_run_pidns_ready(void);
void sandbox_run_pidns_release(SandboxRunPidns *ns);
/* Ends a run's namespace from the worker at once, whatever its state (a
 * spare that died before its run, a failed fork): kills and reaps its run
 * child *child if not reaped yet (> 0; 0 once reaped here) and its init,
 * then releases. Waits timeout_ms at the most: -ETIMEDOUT then, the rest
 * left to the worker's SIGCHLD reaping and ns forgotten. */
int sandbox_run_pidns_drop(SandboxRunPidns *ns, pid_t *child, int timeout_ms);
/* True in a run child forked between _begin and _end. */
bool sandbox_run_pidns_inherited(void);
/* Processes of a sandboxed run in its cgroup besides the user code's:
 * none where the worker makes the run's pid namespace (its init stays in
 * the worker's cgroup); else the run child and its init. */
#if defined(__x86_64__) || defined(__aarch64__)
#define SANDBOX_RUN_EXTRA_PROCS 0
#else
#define SANDBOX_RUN_EXTRA_PROCS 2
#endif
int sandbox_run_finish_enter(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error);
/* _finish_enter in two halves, so a spare can finish its whole sandbox
 * while idle and only then run code that is not ours (Python's at-fork
 * hooks, the env's included): _seal mounts the output dir out_name (NULL:
 * none; the engine made it for this spare, see docs/workers.md), hides the
 * other runs' dirs, closes all fds but 0-2 and keep_fds, drops every
 * capability and loads the seccomp filter. When the run comes,
 * _finish_sealed applies its rlimits (lowering needs no capability) and
 * closes all fds but 0-2 and cfg->keep_fds. */
int sandbox_run_seal(const char *out_name, const int *keep_fds, size_t n_keep_fds, char **ret_error);
int sandbox_run_finish_sealed(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error);

/* ---- the seccomp filter ---------------------------------------------------- */

/* Loads the run filter into the calling thread: the listed dangerous system
 * calls fail with EPERM, clone3 with ENOSYS (so libc falls back to clone,
 * whose namespace flags are checked), foreign architectures with EPERM.
 * Sets no_new_privs. Cheap when sandbox_seccomp_prepare() ran before. */
int sandbox_seccomp_load(char **ret_error);
/* Compiles the filter once (in the worker, before the runs fork). */
int sandbox_seccomp_prepare(char **ret_error);
/* The compiled classic-BPF program (prepared if need be): for tests that
 * run it over seccomp_data, and for nothing else. */
struct sock_filter;
int sandbox_seccomp_program(const struct sock_filter **ret_insns, size_t *ret_len, char **ret_error);

/* ---- cgroups (engine side) ---------------------------------------------- */

typedef struct SandboxLimits {
        uint64_t memory_bytes;   /* 0: no memory limit */
        uint64_t max_procs;      /* 0: no pids limit */
        uint64_t cpu_millis;     /* CPU bandwidth in thousandths of a CPU; 0: none */
        /* The group is never frozen (an ad-hoc run; warm instances are):
         * a hierarchy that would give it nothing but the freezer (the v2
         * mount of a hybrid host, v1's "freezer") is not used, unless no
         * other one is. Its kill stays complete: every process of the
         * run is in each of its other groups, and its pid namespace dies
         * with its init. */
        bool no_freezer;
} SandboxLimits;

typedef struct SandboxCgroup SandboxCgroup;

/* Creates the run's cgroup(s) named "pysprinter-<name>-<pid>" (pid: the
 * calling process's, the owner sandbox_cgroup_sweep_stale() reads) beneath the
 * cgroup the calling process is in (never elsewhere), on cgroup v2 where
 * the controller is available there, else on the v1 hierarchy of that
 * controller; applies limits. A controller that cannot be used is
 * recorded, not an error (see sandbox_cgroup_missing()). -ENOENT/-EACCES
 * when no cgroup at all could be made (the run then relies on its pid
 * namespace for the kill, and on rlimits). -EEXIST when a group of that
 * name exists in any hierarchy: a group is never shared (its kill and its
 * limits would reach another run). name: [A-Za-z0-9_.-], at most 64
 * bytes. */
int sandbox_cgroup_new(const char *name, const SandboxLimits *limits, SandboxCgroup **ret, char **ret_error);

/* What could not be limited, e.g. "memory, pids", or NULL when all is. */
const char *sandbox_cgroup_missing(const SandboxCgroup *cg);
bool sandbox_cgroup_has_memory(const SandboxCgroup *cg);

/* The cgroup.procs fds (opened write-only by the caller, so the kernel
 * checks the engine's credentials when the run writes its pid: cgroup
 * delegation through fds). Owned by cg. Returns how many were stored. */
size_t sandbox_cgroup_procs_fds(const SandboxCgroup *cg, int *fds, size_t max);

/* The processes in the group as the host sees them (its first
 * directory's cgroup.procs, read from our side, not through a pid
 * namespace): up to max pids stored, how many the group holds returned,
 * or negative errno. */
int sandbox_cgroup_pids(const SandboxCgroup *cg, pid_t *pids, size_t max);

/* SIGKILLs every process in the cgroup(s) and waits (bounded) until they
 * are empty: cgroup.kill on v2, else a kill loop over cgroup.procs.
 * Returns 0 when empty, -EBUSY if something survived the loop. */
int sandbox_cgroup_kill(SandboxCgroup *cg);

/* How many SIGKILLs sandbox_cgroup_kill() has sent in this process: each
 * process it finds in a group is killed once, then waited for (a killed
 * process can stay listed for seconds while it exits), never killed
 * again. */
uint64_t sandbox_cgroup_kills_sent(void);

/* How many cgroup files this process keeps open (a group's per-run files,
 * kept for its life): at most a quarter of RLIMIT_NOFILE, past which a
 * file is opened per use. */
long sandbox_cgroup_kept_fds(void);

/* Freezes (frozen) or thaws every process in the group: v2
 * cgroup.freeze, else the v1 freezer hierarchy's freezer.state. Returns
 * without waiting for a freeze to complete (a thawed task runs at once).
 * -EOPNOTSUPP when the group has no freezer. */
int sandbox_cgroup_freeze(SandboxCgroup *cg, bool frozen);

typedef struct SandboxCgroupStats {
        uint64_t oom_kills;      /* memory.events oom_kill / v1 oom_control */
        uint64_t memory_failcnt; /* v1 only: how often the limit was hit */
        uint64_t pids_max;       /* pids.events "max": forks refused */
        uint64_t memory_peak;    /* bytes, when the kernel tells */
} SandboxCgroupStats;
int sandbox_cgroup_stats(const SandboxCgroup *cg, SandboxCgroupStats *ret);

/* Kills what is left, removes the cgroup directories, frees. NULL-safe. */
SandboxCgroup *sandbox_cgroup_free(SandboxCgroup *cg);
/* Removes run cgroups beneath ours left by a runner that died (killed
 * with SIGKILL: it could not clean up): those whose name ends in the pid
 * of a process that no longer exists (the "-<pid>" sandbox_cgroup_new()
 * and sandbox_cgroup_renew() add). Returns how many went. */
int sandbox_cgroup_sweep_stale(void);
/* Sets new limits on an existing run cgroup (a spare's, made ahead of its
 * run with defaults: the run's own limits go in before its code runs).
 * -EBUSY (or another write's error) when the memory limit was not taken:
 * v1 refuses one below what the group's processes hold; the group then
 * keeps its old limit, so the caller must not run under it (empty the
 * group, sandbox_cgroup_kill(), and set the limits again). */
int sandbox_cgroup_set_limits(SandboxCgroup *cg, const SandboxLimits *limits);
/* A finished run's groups, to be used again (the next spare's): kills
 * what is left, keeps the groups that are empty — a v1 memory group only
 * while what the run left charged to it is small (at most 1 MiB) and for
 * at most 64 runs, with its failcnt and peak reset and its oom_kill count
 * as the next run's baseline; v2's group (it holds memory) is removed.
 * Returns cg, or NULL when nothing is worth keeping (then all is freed:
 * a frozen instance's groups, a pure-v2 single group, a group not empty). */
SandboxCgroup *sandbox_cgroup_recycle(SandboxCgroup *cg);
/* Takes a recycled cg for a new run named `name`: makes fresh the groups
 * removed (and a kept v1 memory group whose residue is more than 1/32 of
 * this run's memory limit), writes the limits that differ from the last
 * run's (also back to none), reads pids.events "max" as the baseline of
 * the new run's verdict. On failure the caller frees cg. */
int sandbox_cgroup_renew(SandboxCgroup *cg, const char *name, const SandboxLimits *limits, char **ret_error);

/* ---- how a run ended ----------------------------------------------------------- */

typedef enum SandboxOutcome {
        SANDBOX_OUTCOME_NONE = 0,  /* no limit involved: the run's own result */
        SANDBOX_OUTCOME_TIME,
        SANDBOX_OUTCOME_MEMORY,
        SANDBOX_OUTCOME_PROCS,
        SANDBOX_OUTCOME_OUTPUT,
        SANDBOX_OUTCOME_FILE_SIZE,
        SANDBOX_OUTCOME_CRASH,
        SANDBOX_OUTCOME_SYSCALL,
} SandboxOutcome;

typedef struct SandboxEnd {
        bool timed_out;          /* the engine killed it at the wall-clock limit */
        uint64_t timeout_ms;
        bool output_exceeded;    /* the engine killed it at the output cap */
        uint64_t max_output_bytes;
        bool signaled;
        int sig;
        int exit_code;           /* when !signaled */
        bool succeeded;          /* the run reported a result (not an exception) */
        const SandboxCgroupStats *stats; /* NULL: no cgroup */
        uint64_t memory_bytes;   /* the limits, for the messages */
        uint64_t max_procs;
} SandboxEnd;

/* Decides whether a limit (or a crash) ended the run. Returns the outcome
 * and, unless NONE, a type ("TimeLimit", "MemoryLimit", "ProcessLimit",
 * "OutputLimit", "FileSizeLimit", "Crashed", "ForbiddenSyscall") and a
 * one-line message ("time limit (2s)", "memory limit (64 MiB)", "crashed:
 * SIGSEGV"…) the caller frees. */
SandboxOutcome sandbox_classify(const SandboxEnd *end, char **ret_type, char **ret_message);

/* How sandbox_classify()'s messages spell a limit, exactly: "2s", "1.5s",
 * "1234.567s";
 * "64 MiB", "1 GiB", "512 KiB". The caller frees. */
char *sandbox_format_duration_ms(uint64_t ms);
char *sandbox_format_bytes(uint64_t b);

/* "SIGSEGV" for 11, "SIG42" for unknown. Static storage for known names. */
const char *sandbox_signal_name(int sig);

/* Checks that this kernel offers what sandbox_worker_enter() needs, without
 * changing anything. 0, or -EOPNOTSUPP with *ret_error naming what is
 * missing and suggesting --sandbox=none. */
int sandbox_check_support(char **ret_error);

/* Checks that this process may make the full sandbox: its first step, a
 * private mount namespace that the sandbox's root is built in before the
 * user namespace, takes root (CAP_SYS_ADMIN over the host's namespaces).
 * Tried in a short-lived child; nothing of the caller changes. 0, or
 * -errno with *ret_error naming the failed step (a daemon says it at its
 * start instead of failing every run, docs/operations.md). */
int sandbox_check_privileges(char **ret_error);
