/* Sandbox hooks of the worker (DESIGN §5): argv says which sandbox; the
 * work is src/sandbox/'s.
 *
 *   pysprinter-worker-sandbox --worker=PATH --sandbox=full [--ro=PATH]... [--data=NAME=PATH]...
 *                             [--out-root=DIR]
 *   pysprinter-worker --sandbox=full [...]   (the same, with this binary as PATH)
 *   pysprinter-worker --sandbox=none
 *
 * With --sandbox=full the process enters the sandbox and then execs the
 * worker binary from its copy at SANDBOX_WORKER_PATH as
 * `SANDBOX_WORKER_PATH --sandbox=inside`: /proc/self/exe, /proc/1/cmdline,
 * sys.executable and the memory of every run then hold no host path
 * (neither the build tree's nor the --ro/--data paths, which name the
 * data dir). The engine starts the full sandbox through the small
 * launcher (worker-launch.c), which does not load libpython: the ~9 ms of
 * loading and relocating it in a process that never runs Python (round
 * 40, docs/internals/performance-log.md "One-shot embedded run").
 *
 * Contract with worker.c: worker_sandbox_child() receives extra_fds
 * pointing into the run message's fd array just past stdout, stderr and
 * the result pipe (extra_fds[-3..-1]); those three stay open for the user
 * code, everything else is closed. */
#include <jansson.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sandbox.h"
#include "worker.h"

extern char **environ;

/* (worker.h) A run's signals are the same whoever started the CLI or the daemon: a
 * shell's `cmd &` or nohup leaves SIGINT, SIGQUIT or SIGHUP ignored, and
 * exec keeps what was ignored and blocked, so a run through a daemon
 * started that way ignored the SIGINT that embedded is KeyboardInterrupt.
 * Every signal default and none blocked; then what CPython itself sets
 * (Python is started without its handlers): SIGPIPE and SIGXFSZ ignored,
 * so a write past RLIMIT_FSIZE is OSError(EFBIG), not a kill. */
void worker_signals_reset(void) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int s = 1; s < _NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        (void) sigaction(s, &dfl, NULL); /* the C library's own: EINVAL */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGXFSZ, SIG_IGN);
}

int worker_sandbox_setup(int argc, char **argv, char **ret_error) {
        bool full = true;
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--sandbox=inside"))
                        return sandbox_worker_resume(ret_error);
        _cleanup_strv_free_ char **ro = NULL, **data = NULL;
        const char *out_root = NULL, *worker_binary = NULL;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--sandbox=none"))
                        full = false;
                else if (streq(argv[i], "--sandbox=full"))
                        full = true;
                else if (startswith(argv[i], "--sandbox=")) {
                        *ret_error = xasprintf("sandbox mode '%s' is not supported by this worker", argv[i] + 10);
                        return -EOPNOTSUPP;
                } else if (startswith(argv[i], "--ro="))
                        ro = strv_append(ro, argv[i] + 5);
                else if (startswith(argv[i], "--data="))
                        data = strv_append(data, argv[i] + 7);
                else if (startswith(argv[i], "--out-root="))
                        out_root = argv[i] + 11;
                else if (startswith(argv[i], "--worker="))
                        worker_binary = argv[i] + 9;
        }
        if (!full)
                return 0;
        SandboxWorkerConfig cfg = { .ro_paths = ro, .data = data, .out_root = out_root, .worker_binary = worker_binary };
        int r = sandbox_worker_enter(&cfg, ret_error);
        if (r < 0)
                return r;
        /* The environment is scrubbed already; fd 3 (the engine's socket)
         * is the only one without O_CLOEXEC. LD_BIND_NOW: the worker binds
         * every symbol of libpython and of the extension modules it loads
         * once, at load, so the runs it forks never run the dynamic linker
         * nor copy a GOT page to bind a symbol on its first call (main()
         * drops the variable before Python starts: runs never see it). */
        char *args[] = { (char *) SANDBOX_WORKER_PATH, (char *) "--sandbox=inside", NULL };
        size_t n_env = strv_length(environ);
        _cleanup_free_ char **envp = xmalloc((n_env + 2) * sizeof(char *));
        memcpy(envp, environ, n_env * sizeof(char *));
        envp[n_env] = (char *) "LD_BIND_NOW=1";
        envp[n_env + 1] = NULL;
        execve(SANDBOX_WORKER_PATH, args, envp);
        r = -errno;
        *ret_error = xasprintf("executing the worker inside the sandbox (%s): %s", SANDBOX_WORKER_PATH,
                               strerror(-r));
        return r;
}

int worker_sandbox_attach(char *const *names, int *fds, size_t n, char **ret_error) {
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                if (r >= 0)
                        r = sandbox_worker_store_attach(names[i], fds[i], ret_error);
                fds[i] = fd_close(fds[i]);
        }
        return r;
}

int worker_sandbox_seal(bool network, char **ret_error) {
        if (!sandbox_worker_active())
                return 0;
        int r = sandbox_worker_store_seal(ret_error);
        if (r < 0 || network)
                return r;
        return sandbox_worker_net_isolate(ret_error);
}

/* Set in a spare that ran sandbox_run_prepare() ahead of its run. */
static bool spare_prepared;
static bool spare_network;

int worker_sandbox_spare_prepare(bool network, char **ret_error) {
        if (!sandbox_worker_active())
                return 0;
        SandboxRunConfig cfg = { .network = network };
        int r = sandbox_run_prepare(&cfg, ret_error);
        if (r >= 0) {
                spare_prepared = true;
                spare_network = network;
        }
        return r;
}

/* Set in a prepared spare that also sealed its sandbox while idle. */
static bool spare_sealed;

int worker_sandbox_spare_seal(const char *out_name, int sock, char **ret_error) {
        if (!spare_prepared)
                return -EINVAL;
        int r = sandbox_run_seal(out_name, &sock, 1, ret_error);
        if (r >= 0)
                spare_sealed = true;
        return r;
}

int worker_sandbox_child(const char *run_json, const int *extra_fds, size_t n_extra, char **ret_error) {
        if (!sandbox_worker_active()) {
                if (setpgid(0, 0) < 0) {
                        int r = -errno;
                        *ret_error = xasprintf("setpgid: %s", strerror(-r));
                        return r;
                }
                struct rlimit core = { 0, 0 };
                (void) setrlimit(RLIMIT_CORE, &core);
                return 0;
        }
        json_t *m = json_loads(run_json, 0, NULL);
        json_t *lim = json_object_get(m, "limits"), *sb = json_object_get(m, "sandbox");
        uint64_t memory = (uint64_t) json_integer_value(json_object_get(lim, "memory_bytes"));
        uint64_t timeout_ms = (uint64_t) json_integer_value(json_object_get(lim, "timeout_ms"));
        bool network = json_is_true(json_object_get(lim, "network"));
        /* A warm instance serves many invocations in one process. */
        bool instance = streq(json_string_value(json_object_get(m, "type")) ?: "", "instance");
        size_t n_cg = (size_t) json_integer_value(json_object_get(sb, "cgroup_fds"));
        bool memory_cgroup = json_is_true(json_object_get(sb, "memory_cgroup"));
        /* The run's output dir (engine: a dir of its own under the out root)
         * and its cap, which bounds each file written there too. */
        const char *out = json_string_value(json_object_get(sb, "out"));
        _cleanup_free_ char *out_name = out ? xstrdup(out) : NULL;
        uint64_t fsize = (uint64_t) json_integer_value(json_object_get(sb, "fsize_bytes"));
        json_decref(m);
        if (n_cg > n_extra)
                n_cg = n_extra;
        int keep[3] = { extra_fds[-3], extra_fds[-2], extra_fds[-1] };
        SandboxRunConfig cfg = {
                .network = network,
                .cgroup_fds = extra_fds,
                .n_cgroup_fds = n_cg,
                .keep_fds = keep,
                .n_keep_fds = 3,
                /* CPU time can never exceed the wall clock at one CPU; this
                 * is a backstop should the engine's timer not fire. Not in
                 * a warm instance: RLIMIT_CPU counts the process's CPU
                 * time since it began, all its invocations together, and
                 * once they added up to the timeout + 5 s an invocation
                 * died "crashed: SIGKILL" however short it was. The
                 * engine's timer and cgroup kill bound each invocation. */
                .cpu_seconds = timeout_ms && !instance ? timeout_ms / 1000 + 5 : 0,
                /* Without a memory cgroup, the address-space rlimit is the
                 * only bound (generous: Python maps more than it uses). */
                .fallback_as_bytes = memory_cgroup ? 0 : (memory ? memory * 2 + (256ULL << 20) : 0),
                .out_name = out_name,
                .fsize_bytes = fsize,
        };
        if (spare_prepared) {
                /* The namespaces and mounts were made while the spare idled;
                 * its network is the worker's setting, which is part of the
                 * pool's key, so they agree. */
                if (network != spare_network) {
                        *ret_error = xstrdup("the spare was prepared for another network setting");
                        return -EINVAL;
                }
                /* A sealed spare mounted the output dir the engine made
                 * for it (renamed to the run's since: the mount follows). */
                if (spare_sealed)
                        return sandbox_run_finish_sealed(&cfg, memory_cgroup, ret_error);
                return sandbox_run_finish_enter(&cfg, memory_cgroup, ret_error);
        }
        return sandbox_run_enter(&cfg, ret_error);
}
