/* pysprinter-worker: one embedded CPython, warm with an environment, that
 * validates files and forks a child per run. Single-threaded by design:
 * forking a process that runs CPython is only safe when no other thread
 * holds a lock (uWSGI's rule).
 *
 * Warmth (DESIGN §6): `init` puts the env's store dirs on sys.path,
 * imports its top-level modules and gc.freeze()s, so each fork starts with
 * them imported and shares their pages copy-on-write. A few children are
 * forked ahead of demand ("spares") and wait for their run on a socket, so
 * the fork is off the critical path.
 *
 * Protocol: worker-proto.h, docs/internals/worker-protocol.md. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <jansson.h>
#include <linux/close_range.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox.h"
#include "worker-proto.h"
#include "worker.h"

#define MAX_CHILDREN 1024
#define MAX_SPARES 16

/* Run message fds: stdout, stderr, result, status, then the sandbox's. */
enum { FD_STDOUT, FD_STDERR, FD_RESULT, FD_STATUS, FD_EXTRA };
/* Instance message fds: its socket, status, stdout, stderr, then the
 * sandbox's. */
enum {
        INSTANCE_SOCK,
        INSTANCE_STATUS,
        INSTANCE_STDOUT,
        INSTANCE_STDERR,
        INSTANCE_FDS
};

#define MAX_CG_FDS 6
/* How long the worker waits for a run child and its pid namespace's init
 * it kills outside the usual order (child_drop_init()): a killed process
 * is gone in milliseconds; a wait with no end stalls every run after it. */
#define RUN_DROP_TIMEOUT_MS 10000

typedef struct Child {
        pid_t pid;      /* 0: a tagged spare that died before its run came */
        char *id;
        int status_fd; /* where "exited" goes; -1 for a spare */
        int spare_sock; /* a spare's end of its socket, -1 once assigned */
        /* Engine-managed spares (the "spare" message): the tag the run
         * names, and the run cgroup's procs fds the spare joined ahead of
         * its run. The worker keeps them until the run comes, so a dead
         * spare's run can still be forked into its cgroup. */
        char *tag;
        int cg_fds[MAX_CG_FDS];
        size_t n_cg;
        /* A tagged spare asked for but not forked yet (pid 0): forked once
         * no message waits (fork_pending_spare()); a run naming it first is
         * forked into its cgroup directly, as for a spare that died. */
        bool pending;
        bool seal;
        /* Made without its small warm-up run (the engine's "warm": false,
         * runs were in flight): the worker asks for it once idle. */
        bool cold;
        char *out;
        /* The run's pid namespace's init, made by this worker (ns.init -1:
         * none, or reaped). The run's end is reported once both the run
         * child and its init are reaped: the namespace is then empty. */
        SandboxRunPidns ns;
        bool reaped;
        int status;
        /* The network namespace lent to the child at its fork (sandbox-net.c:
         * from the pool or made then); back to the pool once the run's pid
         * namespace is empty. -1: none (the child made its own). */
        int netns_fd;
        /* The uid of the worker's namespace it is (sandbox.h "uids"); 0:
         * the worker's own. Free again once the child leaves the table:
         * its namespace is empty then. */
        unsigned uid_slot;
} Child;

static Child children[MAX_CHILDREN];
static size_t n_children;
static int ctrl = WORKER_CTRL_FD;
static int sigchld_fd = -EBADF;
static size_t spares_target;
static usec_t last_run_at;
static uint64_t runs_served;
static bool worker_network; /* the env's network setting (init) */

/* The zygote settles (runner.settle(): its small warm-up runs, a full
 * collection, gc.freeze()) once, after "init", and before it forks any
 * spare or warm instance: those must be forked from the frozen, warmed
 * interpreter (PSS per spare, CPU per run). Not before its first use: the
 * engine starts a worker for a run (or a validation) that waits for its
 * "ready", and that first run of a cold environment is forked as soon as
 * the imports are done. Nor while that run's child lives, if it ends soon:
 * the collection writes to every object of the heap the child shares, so
 * each page would be copied (a copy-on-write fault in the zygote) while
 * the first run competes for the CPU. So the worker settles at its first
 * idle moment once no run is in flight, or ZYGOTE_SETTLE_MAX_WAIT_MS after
 * its first run at the latest (a long first run). A worker no run came to
 * settles ZYGOTE_UNUSED_SETTLE_MS after its "ready" (the engine's
 * prewarmed base worker, one that only validated). */
#define ZYGOTE_UNUSED_SETTLE_MS 250
#define ZYGOTE_SETTLE_MAX_WAIT_MS 200
static bool zygote_initialised;
static bool zygote_settled;
/* init's "settle_idle" false (the CLI's engine): never settle in idle
 * time, only before the next run or instance, or while runs overlap past
 * ZYGOTE_SETTLE_MAX_WAIT_MS (a `map`'s, each forked from the settled
 * zygote after). A one-shot CLI has no next run, and its engine's "exit"
 * would wait for the whole settle. */
static bool zygote_settle_idle = true;
static bool zygote_used;
static usec_t zygote_ready_at;
static usec_t zygote_used_at;

/* Run children alive (a spare's status_fd is -1 until it takes a run). */
static size_t runs_in_flight(void) {
        size_t n = 0;
        for (size_t i = 0; i < n_children; i++)
                if (children[i].status_fd >= 0)
                        n++;
        return n;
}

/* Run children whose own process still lives: a run whose child is
 * reaped and only its pid namespace's init is left to die is over for
 * the zygote (its answer went out at the child's exit). */
static size_t runs_alive(void) {
        size_t n = 0;
        for (size_t i = 0; i < n_children; i++)
                if (children[i].status_fd >= 0 && !children[i].reaped)
                        n++;
        return n;
}

/* Whether run child pid is past the point of no return: PF_EXITING in
 * /proc/PID/stat's flags. Its mm is gone by then (exit_mm() comes before
 * exit_files(), which closes the run's pipes and so lets the engine
 * answer), but its SIGCHLD may still be to come. */
static bool child_exiting(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
                return true; /* gone already */
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        unsigned long flags = 0;
        /* ") S ppid pgrp session tty_nr tpgid flags" */
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
                return false;
        return (flags & 0x4 /* PF_EXITING */) != 0;
}

/* No run child lives, or each one left is exiting: the first run is over
 * for the zygote (the next run may arrive before that child's SIGCHLD). */
static bool runs_over(void) {
        for (size_t i = 0; i < n_children; i++)
                if (children[i].status_fd >= 0 && !children[i].reaped && children[i].pid > 0 &&
                    !child_exiting(children[i].pid))
                        return false;
        return true;
}

static void zygote_mark_used(void) {
        if (!zygote_used)
                zygote_used_at = now_monotonic();
        zygote_used = true;
}

static void zygote_settle(void) {
        if (!zygote_initialised || zygote_settled)
                return;
        zygote_settled = true;
        char *reply = NULL, *err = NULL;
        /* A failure leaves the zygote unfrozen: slower forks, not wrong ones. */
        if (py_call_str("settle", "{}", &reply, &err) < 0)
                log_error("settle: %s", err);
        free(reply);
        free(err);
        size_t bytes = 0;
        size_t n = py_pools_plug(&bytes);
        log_debug("pymalloc's free blocks taken: %zu, %zu bytes", n, bytes);
        /* Last: what settling freed (the reply too) is taken as well. */
        n = worker_heap_plug(&bytes);
        log_debug("malloc's free chunks taken: %zu, %zu bytes", n, bytes);
        /* After the plugs (they wrote what they took): fewer page-table
         * entries for every fork to copy and every run's exit to tear
         * down. Not while another thread might write there (worker-heap.c). */
        if (worker_one_thread()) {
                n = py_arenas_drop_zero_pages();
                n += worker_heap_drop_zero_pages();
                log_debug("pages of zeroes dropped: %zu", n);
        }
}

/* Whether the zygote still has to settle, and in how many ms at the most
 * (0: at the first idle moment). */
static bool zygote_settle_due(int *ret_ms) {
        if (!zygote_initialised || zygote_settled)
                return false;
        /* The CLI's worker idle has no run to come but maybe its exit:
         * it settles only while runs overlap (a `map`), at the longest
         * wait, or before its next run (handle_run()). */
        if (!zygote_settle_idle && (!zygote_used || runs_alive() == 0))
                return false;
        usec_t due = zygote_used ? zygote_used_at + ZYGOTE_SETTLE_MAX_WAIT_MS * USEC_PER_MSEC
                                 : zygote_ready_at + ZYGOTE_UNUSED_SETTLE_MS * USEC_PER_MSEC;
        if (zygote_used && runs_alive() == 0)
                due = 0;
        usec_t now = now_monotonic();
        *ret_ms = now >= due ? 0 : (int) ((due - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
        return true;
}

/* A run's or an instance's message carries its tenant's source, arguments
 * and opened secrets, and passes through this process, from which every
 * later run is forked, whoever its tenant: a run can read its whole
 * address space, freed heap included. So what held a message is zeroed
 * when freed: the text (message_forget) and jansson's copies of its
 * strings (zeroing_free, jansson's free in this process). */
static void zeroing_free(void *p) {
        worker_pack_free_zeroed(p);
}

/* Also what json_dumps() returns: jansson's allocator here is
 * worker_pack_alloc(), whose blocks free() must never see. */
static void message_forget(char **p) {
        zeroing_free(*p);
}

static int send_json_to(int fd, json_t *msg) {
        _cleanup_(message_forget) char *s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!s)
                return -ENOMEM;
        return proto_send(fd, s, strlen(s), NULL, 0);
}

static int send_json(json_t *msg) {
        return send_json_to(ctrl, msg);
}

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = fd_close(fds[i]);
}

static size_t count_spares(void) {
        size_t n = 0;
        for (size_t i = 0; i < n_children; i++)
                if (children[i].spare_sock >= 0 && !children[i].tag)
                        n++;
        return n;
}

static void child_close_cg(Child *c) {
        for (size_t i = 0; i < c->n_cg; i++)
                c->cg_fds[i] = fd_close(c->cg_fds[i]);
        c->n_cg = 0;
}

/* ---- requests answered by the worker itself ---- */

static json_t *internal_error(const char *message) {
        return json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "type", "InternalError", "message", message);
}

/* What runner.func(raw) answered, parsed; an InternalError if it raised. */
static json_t *python_reply(const char *func, const char *raw) {
        _cleanup_free_ char *reply = NULL, *err = NULL;
        int r = py_call_str(func, raw, &reply, &err);
        json_t *out = r >= 0 && reply ? json_loads(reply, JSON_ALLOW_NUL, NULL) : NULL;
        return out ?: internal_error(err ? err : "the runner failed");
}

static int send_reply(json_t *out, const char *type, json_t *msg) {
        const char *id = json_string_value(json_object_get(msg, "id"));
        json_object_set_new(out, "type", json_string(type));
        if (id)
                json_object_set_new(out, "id", json_string(id));
        return send_json(out);
}

static int reply_from_python(const char *func, const char *type, json_t *msg, const char *raw) {
        return send_reply(python_reply(func, raw), type, msg);
}

/* "attach" (a blank worker adopting an env, engine-pool.c): the env's
 * store dirs as mount fds, one per name. No reply: a failure ends the
 * worker, and the engine, seeing it gone at "init", starts one by exec. */
static int handle_attach(json_t *msg, int *fds, size_t n_fds) {
        json_t *names = json_object_get(msg, "names");
        size_t n = json_array_size(names);
        _cleanup_free_ char *err = NULL;
        int r = n == n_fds && !zygote_initialised ? 0 : -EPROTO;
        _cleanup_strv_free_ char **v = NULL;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *s = json_string_value(json_array_get(names, i));
                if (!s)
                        r = -EPROTO;
                else
                        v = strv_append(v, s);
        }
        if (r < 0) {
                close_fds(fds, n_fds);
                log_error("attach: a malformed message, or after init");
                return r;
        }
        r = worker_sandbox_attach(v, fds, n_fds, &err);
        if (r < 0)
                log_error("attach: %s", err ? err : strerror(-r));
        return r;
}

static int handle_init(json_t *msg, const char *raw) {
        /* The env's dirs are set for good before any of its code runs: a
         * worker adopts one environment, once. */
        _cleanup_free_ char *err = NULL;
        worker_network = json_is_true(json_object_get(msg, "network"));
        /* And, without the network, its own network namespace: the env's
         * modules imported next are any package's code. */
        int s = worker_sandbox_seal(worker_network, &err);
        if (s < 0) {
                log_error("init: %s", err ? err : strerror(-s));
                return s;
        }
        zygote_settle_idle = !json_is_false(json_object_get(msg, "settle_idle"));
        json_t *sp = json_object_get(msg, "spares");
        if (json_is_integer(sp))
                spares_target = (size_t) MIN((json_int_t) MAX_SPARES, MAX(json_integer_value(sp), 0));
        int r = reply_from_python("init", "ready", msg, raw);
        zygote_initialised = true;
        zygote_ready_at = now_monotonic();
        return r;
}

/* ---- children ---- */

/* Everything a child must not keep: the engine's socket, the signalfd, the
 * other children's status fds and spare sockets. */
static void child_drop_worker_fds(int keep_sock) {
        close(ctrl);
        close(sigchld_fd);
        for (size_t i = 0; i < n_children; i++) {
                if (children[i].status_fd >= 0)
                        close(children[i].status_fd);
                if (children[i].spare_sock >= 0 && children[i].spare_sock != keep_sock)
                        close(children[i].spare_sock);
                /* Another run's cgroup is not ours to join. */
                for (size_t k = 0; k < children[i].n_cg; k++)
                        close(children[i].cg_fds[k]);
                /* Another run's network namespace. */
                if (children[i].netns_fd >= 0)
                        close(children[i].netns_fd);
        }
        sandbox_netns_pool_drop();
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_UNBLOCK, &mask, NULL);
}

static void fail_child(int result_fd, int code, const char *type, const char *msg) {
        json_t *o = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "type", type, "message", msg);
        _cleanup_(message_forget) char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s)
                (void) write_full(result_fd, s, strlen(s));
        _exit(code);
}

/* A run child defers Python's after-fork work (PyOS_AfterFork_Child: its
 * at-fork hooks run Python code — random's reseed, threading's and
 * logging's lock re-inits, any env package's own) until its sandbox is
 * finished: a spare the engine made seals its sandbox while idle and runs
 * it then (spare_main), any other child when it enters Python for its run.
 * Either way a package's hook runs without capabilities, under seccomp. */
static bool python_after_fork_pending;

static void python_after_fork(void) {
        /* The first code not the worker's own comes next: the run's
         * pid-namespace init must have left the worker's fd table. */
        sandbox_run_pidns_ready();
        if (!python_after_fork_pending)
                return;
        python_after_fork_pending = false;
        PyOS_AfterFork_Child();
}

/* Becomes the run: sandbox, fds 0-2, the user's code. Never returns. */
/* The sandbox hook's contract (worker-sandbox.c): extra_fds points just
 * past the three fds the user's code keeps (extra_fds[-3..-1]). */
static int sandbox_child(const char *raw, int keep0, int keep1, int keep2, const int *extra, size_t n_extra,
                         char **ret_error) {
        int arr[3 + WORKER_PROTO_MAX_FDS] = { keep0, keep1, keep2 };
        n_extra = MIN(n_extra, (size_t) WORKER_PROTO_MAX_FDS);
        memcpy(arr + 3, extra, n_extra * sizeof(int));
        return worker_sandbox_child(raw, arr + 3, n_extra, ret_error);
}

static _noreturn_ void become_run(const char *raw, int *fds, size_t n_fds) {
        _cleanup_free_ char *err = NULL;
        /* The run's status socket is the worker's to write, not the run's. */
        fds[FD_STATUS] = fd_close(fds[FD_STATUS]);
        int r = sandbox_child(raw, fds[FD_STDOUT], fds[FD_STDERR], fds[FD_RESULT], fds + FD_EXTRA, n_fds - FD_EXTRA,
                              &err);
        if (r < 0) {
                _cleanup_free_ char *m = xasprintf("sandbox: %s", err ? err : strerror(-r));
                fail_child(fds[FD_RESULT], 120, "SandboxError", m);
        }
        if (dup2(fds[FD_STDOUT], STDOUT_FILENO) < 0 || dup2(fds[FD_STDERR], STDERR_FILENO) < 0)
                _exit(121);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, STDIN_FILENO);
                close(devnull);
        }
        /* The result pipe becomes fd 3 and nothing else stays open: the
         * user's code sees 0-3 only. */
        if (fds[FD_RESULT] != 3 && dup2(fds[FD_RESULT], 3) < 0)
                _exit(122);
        (void) syscall(SYS_close_range, 4U, ~0U, 0U);
        python_after_fork();
        py_run_child(raw, 3);
        /* Close the run's pipes before exiting: the engine has the whole
         * result at EOF and need not wait for this (large) process's
         * address space to be torn down. */
        close(3);
        close(STDOUT_FILENO);
        close(STDERR_FILENO);
        /* Skip Python finalisation: the parent's interpreter state is not
         * ours to tear down (and it would run user atexit hooks twice). */
        fflush(NULL);
        _exit(0);
}

/* A deployed function's warm instance: imports the module once and serves
 * invocations on its own socket (fd 3 after set-up) until it closes. */
static _noreturn_ void become_instance(const char *raw, int *fds, size_t n_fds) {
        _cleanup_free_ char *err = NULL;
        /* fds: [instance socket, status (the worker's), stdout, stderr],
         * then the sandbox's. stdout and stderr are the pipes the instance
         * keeps for its life: what its module prints while it loads goes
         * to the invoke that started it, as a run's does. */
        if (n_fds < INSTANCE_FDS)
                _exit(122);
        fds[INSTANCE_STATUS] = fd_close(fds[INSTANCE_STATUS]);
        int r = sandbox_child(raw, fds[INSTANCE_SOCK], fds[INSTANCE_STDOUT], fds[INSTANCE_STDERR], fds + INSTANCE_FDS,
                              n_fds - INSTANCE_FDS, &err);
        if (r < 0)
                _exit(120);
        if (dup2(fds[INSTANCE_STDOUT], STDOUT_FILENO) < 0 || dup2(fds[INSTANCE_STDERR], STDERR_FILENO) < 0)
                _exit(121);
        if (fds[INSTANCE_SOCK] != 3 && dup2(fds[INSTANCE_SOCK], 3) < 0)
                _exit(122);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, STDIN_FILENO);
                close(devnull);
        }
        (void) syscall(SYS_close_range, 4U, ~0U, 0U);
        python_after_fork();
        py_serve_instance(raw, 3);
        fflush(NULL);
        _exit(0);
}

static bool message_is_instance(const char *raw) {
        json_t *m = json_loads(raw, JSON_ALLOW_NUL, NULL);
        const char *type = json_string_value(json_object_get(m, "type"));
        bool instance = type && streq(type, "instance");
        json_decref(m);
        return instance;
}

static void become(const char *raw, bool instance, int *fds, size_t n_fds) {
        if (instance)
                become_instance(raw, fds, n_fds);
        become_run(raw, fds, n_fds);
}

/* fds 0-2 of a sealed spare until its run's pipes replace them: what a
 * hook prints goes nowhere (not into the worker's log). */
static void stdio_to_devnull(void) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return;
        for (int fd = 0; fd < 3; fd++)
                (void) dup2(devnull, fd);
        if (devnull > 2)
                close(devnull);
}

/* What the worker sends an idle cold spare: do the warm-up run now. No fd
 * comes with it (a run's message always has some). */
static const char spare_warm_message[] = "{\"type\":\"warm\"}";

/* A spare waits for its run on its socket. Never returns. seal: the engine
 * made this spare (and its output dir out, if any) for the full sandbox;
 * warm: with its small warm-up run now (else on the worker's "warm"). */
static _noreturn_ void spare_main(int sock, bool seal, bool warm, const char *out) {
        _cleanup_free_ char *raw = NULL;
        _cleanup_free_ char *err = NULL;
        /* Everything of the run's isolation that does not depend on the run
         * happens now, while idle (the costly part: namespaces, a fork). */
        if (worker_sandbox_spare_prepare(worker_network, &err) < 0)
                _exit(0); /* the worker forks the run itself */
        if (seal) {
                /* The whole sandbox while idle, then Python's after-fork
                 * work (its at-fork hooks run code of the env's packages:
                 * only now, with no capability, under seccomp, in the run's
                 * namespaces and cgroup). The run's critical path keeps its
                 * rlimits, its fds and the runner. */
                if (worker_sandbox_spare_seal(out, sock, &err) < 0)
                        _exit(0);
                stdio_to_devnull();
                python_after_fork();
                py_spare_ready(warm);
        }
        int fds[WORKER_PROTO_MAX_FDS];
        size_t n_fds = 0;
        for (;;) {
                int r = proto_recv(sock, WORKER_PROTO_MAX_MESSAGE, &raw, NULL, fds, ELEMENTSOF(fds), &n_fds);
                if (r < 0)
                        _exit(0); /* retired, or the worker went away */
                if (n_fds == 0 && seal && streq(raw, spare_warm_message)) {
                        py_spare_warm();
                        free(raw);
                        raw = NULL;
                        continue;
                }
                if (n_fds < 2)
                        _exit(0);
                break;
        }
        close(sock);
        become(raw, message_is_instance(raw), fds, n_fds);
        _exit(0);
}

/* The child runs C only until python_after_fork(). */
static pid_t fork_python(void) {
        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
                py_arenas_child();
                python_after_fork_pending = true;
        }
        else
                PyOS_AfterFork_Parent();
        return pid;
}

/* ---- validation of a large file ---- */

/* A file of WORKER_VALIDATE_APART_BYTES or more is validated in a child of
 * its own: a tenant's 4 MiB list literal took 14 s and 1.85 GB in the
 * validator every tenant's runs wait on. The child works under the run's
 * memory limit (as address space: no cgroup of its own) and a deadline the
 * engine sets, and what the parse allocated leaves with it. A smaller file
 * takes milliseconds and is validated here, without the fork. */

/* The child's answer when validation ran into one of its bounds: the
 * engine words it (it knows the limit and the file). */
static json_t *limit_reply(const char *type) {
        return json_pack("{s:b, s:{s:s, s:s, s:b}}", "ok", 0, "error", "type", type, "message", "", "limit", 1);
}

/* Address space now plus the run's memory: what the parse may add. 0 (and
 * no limit) if /proc cannot tell: the deadline still holds. Not under
 * AddressSanitizer (make check's second build): it maps terabytes of
 * shadow up front and aborts when a mapping is refused. */
static uint64_t validation_memory_limit(uint64_t memory_bytes) {
#ifdef __SANITIZE_ADDRESS__
        memory_bytes = 0;
#endif
        _cleanup_fclose_ FILE *f = memory_bytes ? fopen("/proc/self/statm", "re") : NULL;
        unsigned long long pages;
        if (!f || fscanf(f, "%llu", &pages) != 1)
                return 0;
        uint64_t limit = (uint64_t) pages * (uint64_t) sysconf(_SC_PAGESIZE) + memory_bytes;
        struct rlimit rl = { .rlim_cur = limit, .rlim_max = limit };
        return setrlimit(RLIMIT_AS, &rl) < 0 ? 0 : limit;
}

/* Whether this process came near its address-space limit: the parser's
 * MemoryError is also its nesting limit's, which a small peak tells apart
 * (an allocation refused at the limit was at most a few MiB short). */
static bool came_near(uint64_t limit) {
        _cleanup_fclose_ FILE *f = limit ? fopen("/proc/self/status", "re") : NULL;
        char line[256];
        unsigned long long kib;
        while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "VmPeak: %llu kB", &kib) == 1)
                        return kib * 1024 + MAX(limit / 8, 32ULL << 20) >= limit;
        return false;
}

static _noreturn_ void validation_child(const char *raw, uint64_t memory_bytes, int out) {
        child_drop_worker_fds(-1);
        python_after_fork();
        uint64_t limit = validation_memory_limit(memory_bytes);
        json_t *reply = python_reply("validate", raw);
        if (!json_is_true(json_object_get(reply, "ok")) && came_near(limit)) {
                json_decref(reply);
                reply = limit_reply("MemoryLimit");
        }
        _cleanup_(message_forget) char *s = json_dumps(reply, JSON_COMPACT | JSON_ALLOW_NUL);
        _exit(s && write_full(out, s, strlen(s)) >= 0 ? 0 : 1);
}

/* Reads the child's answer until it closes its end or the deadline. */
static int read_until(int fd, usec_t deadline, Buf *b) {
        for (;;) {
                usec_t now = now_monotonic();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int n = poll(&p, 1, (int) MIN((deadline - now + 999) / 1000, (usec_t) INT_MAX));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        continue;
                char chunk[65536];
                ssize_t k = read(fd, chunk, sizeof chunk);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : 0;
                if (buf_append(b, chunk, (size_t) k) < 0)
                        return -E2BIG;
        }
}

static json_t *validate_apart(json_t *msg, const char *raw) {
        json_t *lim = json_object_get(msg, "limits");
        uint64_t memory = (uint64_t) json_integer_value(json_object_get(lim, "memory_bytes"));
        json_int_t deadline_ms = json_integer_value(json_object_get(lim, "deadline_ms"));
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return internal_error("validation: no pipe for its child");
        pid_t pid = fork_python();
        if (pid == 0) {
                close(p[0]);
                validation_child(raw, memory, p[1]);
        }
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                return internal_error("validation: its child could not be forked");
        }
        Buf b;
        buf_init(&b, 64ULL << 20);
        usec_t deadline = now_monotonic() + (usec_t) (deadline_ms > 0 ? deadline_ms : 20000) * USEC_PER_MSEC;
        int r = read_until(p[0], deadline, &b);
        close(p[0]);
        if (r == -ETIMEDOUT)
                (void) kill(pid, SIGKILL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        _cleanup_free_ char *text = buf_steal(&b);
        json_t *out = r >= 0 && text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
        if (out)
                return out;
        if (r == -ETIMEDOUT)
                return limit_reply("TimeLimit");
        _cleanup_free_ char *m = WIFSIGNALED(status) ? xasprintf("validation ended without an answer (%s)",
                                                                 sandbox_signal_name(WTERMSIG(status)))
                                                     : xstrdup("validation ended without an answer");
        return internal_error(m);
}

static int handle_validate(json_t *msg, const char *raw) {
        if (json_string_length(json_object_get(msg, "source")) < WORKER_VALIDATE_APART_BYTES)
                return reply_from_python("validate", "validated", msg, raw);
        return send_reply(validate_apart(msg, raw), "validated", msg);
}

/* How many children are each uid of the worker's namespace, and the
 * last one handed out. */
static unsigned uid_slot_users[SANDBOX_RUN_UIDS];
static unsigned uid_slot_last;

/* A draw below n (> 0): xorshift64*, seeded from getrandom() at the
 * first draw. Not a secret, only not a count: see uid_slot_take(). */
static unsigned uid_slot_draw(unsigned n) {
        static uint64_t x;
        if (x == 0 && (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t) sizeof(x) || x == 0))
                x = ((uint64_t) now_monotonic() ^ ((uint64_t) getpid() << 32)) | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        return (unsigned) (((x * 0x2545F4914F6CDD1DULL) >> 32) % n);
}

/* The uid the next run child becomes: one of those the fewest live
 * children are, drawn at random, never the last one handed out unless it
 * alone is the least used, so that a run's uid is its own while fewer
 * than SANDBOX_RUN_UIDS - 1 children live and consecutive runs take
 * different ones (what the kernel may still count for a uid a moment
 * after its last process, such as fds in flight that its garbage
 * collector has yet to free, is not the next run's). Drawn, not taken in
 * turn: in turn, a run's uid counted the runs its worker had forked since
 * the caller's last one, whoever's they were (alice read uid k, then
 * about k + n + 1 after n runs of bob's in the same environment). 0 (the
 * worker's own) where the namespace maps no other. */
static unsigned uid_slot_take(void) {
        unsigned n = sandbox_worker_active() ? sandbox_run_uid_slots() : 1, best = 0;
        unsigned least = UINT_MAX, ties[SANDBOX_RUN_UIDS], n_ties = 0;
        for (unsigned s = 1; s < n; s++)
                if (s != uid_slot_last)
                        least = MIN(least, uid_slot_users[s]);
        for (unsigned s = 1; s < n; s++)
                if (s != uid_slot_last && uid_slot_users[s] == least)
                        ties[n_ties++] = s;
        if (n > 1 && (n_ties == 0 || (uid_slot_last > 0 && uid_slot_users[uid_slot_last] < least)))
                best = uid_slot_last; /* the only one, or the only least used */
        else if (n_ties > 0)
                best = ties[uid_slot_draw(n_ties)];
        if (best > 0) {
                uid_slot_users[best]++;
                uid_slot_last = best;
        }
        return best;
}

static void uid_slot_release(unsigned slot) {
        if (slot > 0 && slot < SANDBOX_RUN_UIDS && uid_slot_users[slot] > 0)
                uid_slot_users[slot]--;
}

/* Forks a run child (a spare, a run, an instance). In the sandbox it is
 * pid 2 of a fresh pid namespace whose init this worker made just before
 * (sandbox-pidns.c): one fork of this interpreter per run, not two.
 * *ret_netns: in the parent, the worker's fd of the network namespace lent
 * to the child (-EBADF: none), for the pool when the run ends. */
static pid_t fork_run_child(SandboxRunPidns *ns, int *ret_netns, unsigned *ret_uid_slot) {
        *ns = (SandboxRunPidns) { .init = -1 };
        *ret_netns = -EBADF;
        *ret_uid_slot = 0;
        if (sandbox_worker_active()) {
                /* A finished run's network namespace (or a fresh one) for
                 * this child to adopt if it is pristine (it checks). Lent
                 * before the pid namespace is made: making a fresh one
                 * forks a helper, which must not be a process of the
                 * run's pid namespace. */
                if (!worker_network)
                        (void) sandbox_netns_lend();
                _cleanup_free_ char *err = NULL;
                int r = sandbox_run_pidns_begin(ns, &err);
                if (r < 0) {
                        /* Nobody was in it: still pristine. */
                        sandbox_netns_return(sandbox_netns_lend_end());
                        log_error("%s", err);
                        errno = -r;
                        return -1;
                }
        }
        /* A warm-up helper (handle_run()) is gone before the run exists. */
        sandbox_cgroup_warm_end();
        unsigned slot = uid_slot_take();
        sandbox_run_uid_use(slot);
        pid_t pid = fork_python();
        if (pid == 0) {
                sandbox_run_pidns_child();
                return 0;
        }
        int saved = errno;
        if (pid > 0)
                *ret_uid_slot = slot;
        else
                uid_slot_release(slot);
        int netns = sandbox_netns_lend_end();
        if (pid > 0)
                *ret_netns = netns;
        else
                sandbox_netns_return(netns); /* no child has been in it */
        if (ns->init > 0) {
                sandbox_run_pidns_end(ns);
                pid_t none = 0; /* nobody but the init is in it */
                if (pid < 0 && sandbox_run_pidns_drop(ns, &none, RUN_DROP_TIMEOUT_MS) < 0)
                        log_error("a pid namespace's init did not die in %d ms", RUN_DROP_TIMEOUT_MS);
        }
        errno = saved;
        return pid;
}

/* A child leaving the table with its namespace's init still there (a
 * spare that died before its run, or whose socket closed before its
 * SIGCHLD came): the namespace goes at once, the child with it if not
 * reaped yet (c->pid > 0: reap_children() zeroes it). Reaped here, not in
 * reap_children(): the entry that would take its status is going. */
static void child_drop_init(Child *c) {
        if (c->ns.init <= 0)
                return;
        if (sandbox_run_pidns_drop(&c->ns, &c->pid, RUN_DROP_TIMEOUT_MS) < 0)
                log_error("a run child or its pid namespace's init did not die in %d ms", RUN_DROP_TIMEOUT_MS);
}

/* tag/cg_fds: an engine-managed spare joins its run's cgroup now, while
 * idle: moving a process between cgroups waits for an RCU grace period
 * (milliseconds), which must not be on the run's critical path. */
static int fork_spare_tagged(const char *tag, const int *cg_fds, size_t n_cg, bool seal, bool warm,
                             const char *out) {
        if (n_children >= MAX_CHILDREN)
                return -EAGAIN;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        SandboxRunPidns ns;
        int netns;
        unsigned uid_slot;
        pid_t pid = fork_run_child(&ns, &netns, &uid_slot);
        if (pid == 0) {
                close(sv[0]);
                int mine[MAX_CG_FDS];
                for (size_t i = 0; i < n_cg; i++)
                        mine[i] = fcntl(cg_fds[i], F_DUPFD_CLOEXEC, 3);
                child_drop_worker_fds(-1);
                for (size_t i = 0; i < n_cg; i++) {
                        if (mine[i] < 0 || write(mine[i], "0", 1) != 1)
                                _exit(0); /* the engine sees the spare gone and forks the run instead */
                        close(mine[i]);
                }
                spare_main(sv[1], seal, warm, out);
        }
        close(sv[1]);
        if (pid < 0) {
                close(sv[0]);
                return -errno;
        }
        Child *c = &children[n_children++];
        *c = (Child) { .pid = pid, .status_fd = -1, .spare_sock = sv[0], .tag = tag ? xstrdup(tag) : NULL, .ns = ns,
                     .netns_fd = netns, .cold = seal && !warm };
        c->uid_slot = uid_slot;
        for (size_t i = 0; i < n_cg && i < MAX_CG_FDS; i++)
                c->cg_fds[c->n_cg++] = fcntl(cg_fds[i], F_DUPFD_CLOEXEC, 3);
        return 0;
}

static int fork_spare(void) {
        return fork_spare_tagged(NULL, NULL, 0, false, true, NULL);
}

static int handle_spare(json_t *msg, int *fds, size_t n_fds) {
        const char *tag = json_string_value(json_object_get(msg, "tag"));
        /* A spare that could not be made is no error: its run, which names
         * it, is then forked into the cgroup the worker keeps for it. */
        /* "seal": finish the sandbox while idle; "out": the output dir the
         * engine made for this spare (a name under SANDBOX_OUT_ROOT). */
        bool seal = json_is_true(json_object_get(msg, "seal"));
        /* "warm": false: without its warm-up run until the worker is idle
         * (the engine makes it so while runs are in flight). */
        bool cold = json_is_false(json_object_get(msg, "warm"));
        const char *out = json_string_value(json_object_get(msg, "out"));
        if (tag && n_fds <= MAX_CG_FDS && n_children < MAX_CHILDREN) {
                /* Forked later, when no message waits: a fork of this
                 * interpreter takes milliseconds, and the engine sends
                 * spares in batches; the runs' hand-offs queued behind them
                 * on the control socket waited for every fork of the batch. */
                Child *c = &children[n_children++];
                *c = (Child) { .status_fd = -1, .spare_sock = -1, .tag = xstrdup(tag), .ns = { .init = -1 },
                               .netns_fd = -1, .pending = true, .seal = seal, .cold = cold, .out = out ? xstrdup(out) : NULL };
                for (size_t i = 0; i < n_fds; i++)
                        c->cg_fds[c->n_cg++] = TAKE_FD(fds[i]);
        }
        close_fds(fds, n_fds);
        return 0;
}

/* Forks the oldest pending spare; returns whether there was one. */
static bool fork_pending_spare(void) {
        for (size_t i = 0; i < n_children; i++) {
                Child *c = &children[i];
                if (!c->pending)
                        continue;
                c->pending = false;
                /* fork_spare_tagged() appends an entry of its own: this one,
                 * its cgroup fds passed on, goes. */
                _cleanup_free_ char *tag = TAKE_PTR(c->tag), *out = TAKE_PTR(c->out);
                int fds[MAX_CG_FDS];
                size_t n = c->n_cg;
                memcpy(fds, c->cg_fds, n * sizeof(int));
                c->n_cg = 0;
                bool seal = c->seal, warm = !c->cold;
                *c = children[--n_children];
                (void) fork_spare_tagged(tag, fds, n, seal, warm, out);
                close_fds(fds, n);
                return true;
        }
        return false;
}

static bool spare_pending(void) {
        for (size_t i = 0; i < n_children; i++)
                if (children[i].pending)
                        return true;
        return false;
}

static void fill_spares(void) {
        /* Adapt to the rate: with no run for a while, keep one spare. */
        size_t target = spares_target;
        if (target > 1 && last_run_at && now_monotonic() - last_run_at > 30 * USEC_PER_SEC)
                target = 1;
        while (count_spares() < target)
                if (fork_spare() < 0)
                        break;
}

/* How long the worker must have had nothing to do before it asks a cold
 * spare for its warm-up run: at wrk -c8 a message comes every ~2 ms, and
 * the warm-up is what a busy machine saves by making spares cold. */
#define SPARE_WARM_IDLE_MS 5

static Child *cold_spare(void) {
        for (size_t i = 0; i < n_children; i++)
                if (children[i].cold && children[i].pid > 0 && children[i].spare_sock >= 0)
                        return &children[i];
        return NULL;
}

/* One cold spare does its warm-up run now (the worker is idle): the runs
 * that come after a burst find warm spares, as sequential runs do. */
static void warm_cold_spare(void) {
        Child *c = cold_spare();
        if (!c)
                return;
        c->cold = false;
        (void) proto_send(c->spare_sock, spare_warm_message, sizeof(spare_warm_message) - 1, NULL, 0);
}

static Child *take_spare(const char *tag) {
        for (size_t i = 0; i < n_children; i++) {
                Child *c = &children[i];
                if (tag ? (c->tag && streq(c->tag, tag)) : (!c->tag && c->spare_sock >= 0))
                        return c;
        }
        return NULL;
}

static void child_remove(Child *c) {
        if (c->status_fd >= 0)
                close(c->status_fd);
        if (c->spare_sock >= 0)
                close(c->spare_sock);
        child_close_cg(c);
        child_drop_init(c);
        uid_slot_release(c->uid_slot);
        c->netns_fd = fd_close(c->netns_fd);
        free(c->id);
        free(c->tag);
        free(c->out);
        *c = children[--n_children];
}

static void report_started(Child *c) {
        json_t *m = json_pack("{s:s, s:s, s:i, s:i}", "type", "started", "id", c->id, "pid", (int) c->pid,
                              "worker_pid", (int) getpid());
        (void) send_json_to(c->status_fd, m);
}

static int handle_run(json_t *msg, const char *raw, int *fds, size_t n_fds) {
        const char *id = json_string_value(json_object_get(msg, "id"));
        bool instance = streq(json_string_value(json_object_get(msg, "type")) ?: "", "instance");
        size_t status_index = instance ? INSTANCE_STATUS : FD_STATUS;
        if (!id || n_fds < (instance ? INSTANCE_FDS : FD_EXTRA) || n_children >= MAX_CHILDREN) {
                /* Answer on the status fd when we have it. */
                int status = n_fds > status_index ? fds[status_index] : -1;
                if (status >= 0)
                        (void) send_json_to(status, json_pack("{s:s, s:s?, s:s, s:s}", "type", "exited", "id", id,
                                                              "status", "error", "message",
                                                              n_children >= MAX_CHILDREN ? "worker is full"
                                                                                         : "bad run message"));
                close_fds(fds, n_fds);
                return 0;
        }
        int status_fd = fds[status_index];
        last_run_at = now_monotonic();
        runs_served++;
        /* A warm instance lives on, and collects its own heap at its start
         * (runner._freeze_module_objects): forked from an unfrozen zygote,
         * that collection would walk, and copy, every page of it. */
        if (instance)
                zygote_settle();
        /* The first run is over but the worker has not settled yet: the
         * answer goes out at the run child's exit (its init holds none of
         * its pipes, sandbox-pidns.c), so the next run can come before
         * the worker's first idle moment, or even before the run child's
         * SIGCHLD (runs_over()). Settle now rather than fork it from the
         * unsettled zygote. The child closes its pipes before its exit,
         * so the engine may have its result, and send this run, while
         * the child is not yet exiting: "alone" says every earlier run
         * of this worker has ended for the engine (a `map --concurrency
         * 1` under load forked its runs unsettled, 1 in 10). */
        if (zygote_used && !zygote_settled && zygote_initialised &&
            (json_is_true(json_object_get(msg, "alone")) || runs_over()))
                zygote_settle();
        zygote_mark_used();

        const char *tag = json_string_value(json_object_get(msg, "spare"));
        Child *spare = take_spare(tag);
        if (spare && spare->pid > 0 && spare->spare_sock >= 0) {
                int r = proto_send(spare->spare_sock, raw, strlen(raw), fds, n_fds);
                if (r >= 0) {
                        spare->spare_sock = fd_close(spare->spare_sock);
                        child_close_cg(spare);
                        free(spare->tag);
                        spare->tag = NULL;
                        spare->id = xstrdup(id);
                        spare->status_fd = fcntl(status_fd, F_DUPFD_CLOEXEC, 3);
                        close_fds(fds, n_fds);
                        report_started(spare);
                        /* Demand met from the spares: keep one more ready. */
                        if (!tag && spares_target > 0 && spares_target < MAX_SPARES && count_spares() == 0)
                                spares_target++;
                        return 0;
                }
                /* The spare died; fall through to a direct fork. */
                spare->spare_sock = fd_close(spare->spare_sock);
        }
        /* A named spare that is gone: fork the run into the cgroup it held
         * (its fds go to the child as the sandbox's extra fds). */
        int all[WORKER_PROTO_MAX_FDS + MAX_CG_FDS];
        size_t n_all = n_fds;
        memcpy(all, fds, n_fds * sizeof(int));
        _cleanup_(message_forget) char *rewritten = NULL;
        if (tag && spare && spare->n_cg > 0 && n_fds == FD_EXTRA) {
                for (size_t i = 0; i < spare->n_cg; i++)
                        all[n_all++] = TAKE_FD(spare->cg_fds[i]);
                json_t *sb = json_object_get(msg, "sandbox");
                if (json_is_object(sb))
                        json_object_set_new(sb, "cgroup_fds", json_integer((json_int_t) spare->n_cg));
                spare->n_cg = 0;
                rewritten = json_dumps(msg, JSON_COMPACT);
                raw = rewritten;
        }
        /* tag lives in msg, which child_remove() does not touch. */
        if (tag && spare)
                child_remove(spare);
        else if (tag) {
                /* Never run without the cgroup the engine set up for it. */
                (void) send_json_to(status_fd, json_pack("{s:s, s:s, s:s, s:s}", "type", "exited", "id", id, "status",
                                                         "error", "message", "the run's spare is unknown to the worker"));
                close_fds(fds, n_fds);
                return 0;
        }
        fds = all;
        n_fds = n_all;
        /* No spare joined this run's cgroup ahead: start the grace period
         * its first move waits for now, while the run's namespaces are
         * made (sandbox-cgroup.c); fork_run_child() reaps the helper
         * before its fork. Only when no other run is in flight: the
         * worker waits for the helper, and with runs in flight it has
         * their ends to handle meanwhile (measured: at concurrency 8 the
         * network namespaces of finished runs came back to the pool later,
         * 4-6 fresh ones in 300 runs instead of at most 3); the run child
         * then waits for the grace period itself, in parallel, as before. */
        size_t first_cg = instance ? INSTANCE_FDS : FD_EXTRA;
        if (sandbox_worker_active() && n_fds > first_cg && runs_in_flight() == 0)
                (void) sandbox_cgroup_warm_begin(fds[first_cg]);
        SandboxRunPidns ns;
        int netns;
        unsigned uid_slot;
        pid_t pid = fork_run_child(&ns, &netns, &uid_slot);
        if (pid == 0) {
                child_drop_worker_fds(-1);
                become(raw, instance, fds, n_fds);
        }
        int saved = errno;
        int keep_status = fcntl(status_fd, F_DUPFD_CLOEXEC, 3);
        close_fds(fds, n_fds);
        if (pid < 0) {
                (void) send_json_to(keep_status, json_pack("{s:s, s:s, s:s, s:s}", "type", "exited", "id", id,
                                                           "status", "error", "message", strerror(saved)));
                close(keep_status);
                return 0;
        }
        children[n_children] = (Child) { .pid = pid, .id = xstrdup(id), .status_fd = keep_status, .spare_sock = -1,
                                         .ns = ns, .netns_fd = netns };
        children[n_children].uid_slot = uid_slot;
        report_started(&children[n_children++]);
        return 0;
}

static void child_report_end(Child *c, int status) {
        /* Both the run child and its namespace's init are reaped: no
         * process of the run is left, so neither is any socket fd of it.
         * The next user of the namespace checks it holds nothing else. */
        if (c->ns.init <= 0)
                sandbox_netns_return(TAKE_FD(c->netns_fd));
        if (c->status_fd >= 0) {
                json_t *m;
                if (WIFSIGNALED(status))
                        m = json_pack("{s:s, s:s, s:s, s:i}", "type", "exited", "id", c->id, "status", "signaled",
                                      "signal", WTERMSIG(status));
                else
                        m = json_pack("{s:s, s:s, s:s, s:i}", "type", "exited", "id", c->id, "status", "exited",
                                      "code", WEXITSTATUS(status));
                (void) send_json_to(c->status_fd, m);
        }
        child_remove(c);
}

/* Looks at the next child that ended without reaping it, and reaps it:
 * its pid, 0 when none ended. Under --sandbox=none a run child leads its
 * own process group; what it left in the group is killed between the
 * look and the reap, while the zombie still holds the group's id, so the
 * kill cannot reach a process that took the pid over (the engine, told
 * of the end only after the reap, no longer signals it). */
static pid_t reap_next(int *ret_status) {
        siginfo_t si = {};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 || si.si_pid <= 0)
                return 0;
        pid_t pid = si.si_pid;
        if (!sandbox_worker_active())
                for (size_t i = 0; i < n_children; i++)
                        if (children[i].pid == pid && children[i].ns.init <= 0) {
                                (void) kill(-pid, SIGKILL);
                                break;
                        }
        pid_t r;
        while ((r = waitpid(pid, ret_status, __WALL)) < 0 && errno == EINTR)
                ;
        return r == pid ? pid : 0;
}

static void reap_children(void) {
        for (;;) {
                int status;
                pid_t pid = reap_next(&status);
                if (pid <= 0)
                        return;
                for (size_t i = 0; i < n_children; i++) {
                        Child *c = &children[i];
                        if (c->ns.init == pid) {
                                /* The namespace is empty now: the kernel
                                 * killed and reaped what the run left. */
                                sandbox_run_pidns_release(&c->ns);
                                if (c->reaped)
                                        child_report_end(c, c->status);
                                break;
                        }
                        if (c->pid != pid)
                                continue;
                        /* The run's init ends the run's namespace. */
                        if (c->ns.init > 0)
                                (void) kill(c->ns.init, SIGKILL);
                        if (c->tag) {
                                /* A named spare died before its run: keep its
                                 * cgroup fds for the run that names it. */
                                c->pid = 0;
                                c->spare_sock = fd_close(c->spare_sock);
                                break;
                        }
                        if (c->ns.init > 0) {
                                /* Reported when its init is reaped. */
                                c->pid = 0;
                                c->reaped = true;
                                c->status = status;
                                break;
                        }
                        child_report_end(c, status);
                        break;
                }
        }
}

static int handle_message(void) {
        _cleanup_(message_forget) char *raw = NULL;
        int fds[WORKER_PROTO_MAX_FDS];
        size_t n_fds = 0;
        int r = proto_recv(ctrl, WORKER_PROTO_MAX_MESSAGE, &raw, NULL, fds, ELEMENTSOF(fds), &n_fds);
        if (r < 0)
                return r;
        json_t *msg = json_loads(raw, JSON_ALLOW_NUL, NULL);
        const char *type = json_string_value(json_object_get(msg, "type"));
        bool takes_fds = type && (streq(type, "run") || streq(type, "instance") || streq(type, "spare") ||
                                  streq(type, "attach"));
        if (!takes_fds)
                close_fds(fds, n_fds);
        if (!type)
                r = -EPROTO;
        else if (streq(type, "spare"))
                r = handle_spare(msg, fds, n_fds);
        else if (streq(type, "attach"))
                r = handle_attach(msg, fds, n_fds);
        else if (takes_fds)
                r = handle_run(msg, raw, fds, n_fds);
        else if (streq(type, "validate")) {
                /* Not a use that settles the zygote: a validation is
                 * followed by the start of the env's own worker (a cold
                 * env), whose sandbox and imports this worker's settling
                 * and spares would compete with for the CPU and the
                 * kernel's namespace locks. */
                r = handle_validate(msg, raw);
        }
        else if (streq(type, "init"))
                r = handle_init(msg, raw);
        else if (streq(type, "spares")) {
                /* No reply: the engine's fire-and-forget. */
                json_int_t n = json_integer_value(json_object_get(msg, "count"));
                spares_target = (size_t) MIN(MAX(n, (json_int_t) 0), (json_int_t) MAX_SPARES);
        }
        else if (streq(type, "stats"))
                r = send_json(json_pack("{s:s, s:i, s:i, s:I, s:b}", "type", "stats", "children", (int) n_children,
                                        "spares", (int) count_spares(), "runs", (json_int_t) runs_served, "settled",
                                        zygote_settled));
        else if (streq(type, "exit"))
                r = -ECONNRESET;
        else
                r = send_json(json_pack("{s:s, s:s}", "type", "error", "message", "unknown message type"));
        json_decref(msg);
        return r;
}

static void kill_all_children(void) {
        for (size_t i = 0; i < n_children; i++) {
                /* A spare exits when its socket closes; pid 0 is a dead
                 * tagged spare (and kill(0) would be our own group). */
                if (children[i].spare_sock >= 0 || children[i].pid <= 0)
                        continue;
                (void) kill(-children[i].pid, SIGKILL);
                (void) kill(children[i].pid, SIGKILL);
        }
}

int main(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        worker_signals_reset();
        log_set_prefix("pysprinter-worker");
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "--version"))) {
                printf("pysprinter-worker: the engine's embedded Python; started by pysprinter, not by hand.\n");
                return 0;
        }
        /* The sandboxed worker is started with LD_BIND_NOW=1 (every symbol
         * bound at load, once, not lazily in each forked run:
         * worker-sandbox.c); modules dlopen()ed later follow the loader's
         * copy of it, not the environment. A run's environment never has
         * it. */
        (void) unsetenv("LD_BIND_NOW");
        json_set_alloc_funcs(worker_pack_alloc, zeroing_free);
        int r = worker_sandbox_setup(argc, argv, &err);
        if (r < 0) {
                log_error("sandbox: %s", err);
                return 70;
        }
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        sigchld_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

        r = py_init(&err);
        if (r < 0) {
                log_error("%s", err);
                return 71;
        }
        /* `--compile DIR`: byte-compile a freshly unpacked wheel for the
         * package store (engine-resolve.c), then exit. */
        for (int i = 1; i + 1 < argc; i++)
                if (streq(argv[i], "--compile"))
                        return py_compile_dir(argv[i + 1]) < 0 ? 1 : 0;
        r = send_json(json_pack("{s:s, s:s, s:i}", "type", "hello", "python", py_version(), "pid", (int) getpid()));
        if (r < 0)
                return 72;

        for (;;) {
                /* Replacing a spare costs a fork of this whole interpreter:
                 * do it only when nothing is waiting (a run's exit report,
                 * the next request), so it never delays a run. */
                bool need_spare = count_spares() < spares_target;
                bool tagged_pending = spare_pending();
                bool cold = cold_spare() != NULL;
                int settle_ms = 0;
                bool settle = zygote_settle_due(&settle_ms);
                struct pollfd p[2] = {
                        { .fd = ctrl, .events = POLLIN },
                        { .fd = sigchld_fd, .events = POLLIN },
                };
                /* Wake now and then so an idle worker shrinks its spares.
                 * No spare before the zygote settled (zygote_settle()). */
                int timeout = settle ? settle_ms
                                     : tagged_pending ? 0 : need_spare ? 1 : cold ? SPARE_WARM_IDLE_MS : 5000;
                int k = poll(p, 2, timeout);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (k == 0 && settle) {
                        if (zygote_settle_due(&settle_ms) && settle_ms == 0)
                                zygote_settle();
                        continue;
                }
                if (k == 0) {
                        if (fork_pending_spare())
                                continue;
                        if (need_spare)
                                fill_spares();
                        else
                                warm_cold_spare();
                        continue;
                }
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(sigchld_fd, &si, sizeof(si)) == sizeof(si))
                                ;
                        reap_children();
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        r = handle_message();
                        if (r < 0)
                                break;
                }
                /* Retire spares beyond the target. */
                size_t spares = count_spares();
                for (size_t i = 0; i < n_children && spares > MAX(spares_target, (size_t) 1) + 1; i++)
                        if (children[i].spare_sock >= 0 && !children[i].tag) {
                                children[i].spare_sock = fd_close(children[i].spare_sock);
                                spares--;
                        }
        }
        kill_all_children();
        return 0;
}
