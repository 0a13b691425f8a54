/* Isolation of workers and runs, engine side.
 *
 * This version implements --sandbox=none only: the worker is a plain
 * fork+exec, a run is killed through its process group, and no limit but
 * the wall clock and the output cap is enforced. The full sandbox
 * (src/sandbox/) replaces these bodies. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "engine-internal.h"
#include "worker-proto.h"

struct RunSandbox {
        pid_t child_pid;
        SandboxMode mode;
};

int engine_sandbox_spawn_worker(const WorkerSpawn *ws, pid_t *ret_pid, char **ret_error) {
        if (ws->mode != SANDBOX_MODE_NONE) {
                *ret_error = xstrdup("the sandbox is not available in this build; run trusted code with --sandbox=none");
                return -EOPNOTSUPP;
        }
        char *argv[] = { (char *) ws->worker_path, (char *) "--sandbox=none", NULL };
        /* A clean environment: the parent's secrets never reach a worker. */
        char *envp[] = { (char *) "PATH=/usr/local/bin:/usr/bin:/bin", (char *) "LANG=C.UTF-8",
                         (char *) "PYTHONDONTWRITEBYTECODE=1", NULL };
        pid_t pid = fork();
        if (pid < 0) {
                *ret_error = xasprintf("fork: %s", strerror(errno));
                return -errno;
        }
        if (pid == 0) {
                /* Only async-signal-safe calls between fork and exec: the
                 * daemon that calls us is multithreaded. */
                if (ws->ctrl_fd == WORKER_CTRL_FD) {
                        int fl = fcntl(ws->ctrl_fd, F_GETFD);
                        fcntl(ws->ctrl_fd, F_SETFD, fl & ~FD_CLOEXEC);
                } else if (dup2(ws->ctrl_fd, WORKER_CTRL_FD) < 0)
                        _exit(127);
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull >= 0) {
                        dup2(devnull, STDIN_FILENO);
                        dup2(devnull, STDOUT_FILENO);
                }
                sigset_t all;
                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                execve(ws->worker_path, argv, envp);
                _exit(127);
        }
        *ret_pid = pid;
        return 0;
}

int engine_sandbox_run_prepare(Engine *e, const char *run_id, SandboxMode mode, const RunLimits *limits,
                               RunSandbox **ret, char **ret_error) {
        RunSandbox *rs = xcalloc(1, sizeof(RunSandbox));
        rs->mode = mode;
        *ret = rs;
        return 0;
}

void engine_sandbox_run_extra(RunSandbox *rs, int *fds, size_t *n_fds, size_t max_fds, char **ret_json) {
        *n_fds = 0;
        *ret_json = NULL;
}

void engine_sandbox_run_started(RunSandbox *rs, pid_t worker_pid, pid_t child_pid) {
        rs->child_pid = child_pid;
}

int engine_sandbox_run_kill(RunSandbox *rs) {
        if (rs->child_pid <= 0)
                return -ESRCH;
        (void) kill(-rs->child_pid, SIGKILL);
        (void) kill(rs->child_pid, SIGKILL);
        return 0;
}

int engine_sandbox_run_classify(RunSandbox *rs, bool signaled, int sig, char **ret_type, char **ret_message) {
        return 0;
}

RunSandbox *engine_sandbox_run_finish(RunSandbox *rs) {
        if (!rs)
                return NULL;
        if (rs->child_pid > 0)
                (void) kill(-rs->child_pid, SIGKILL);
        free(rs);
        return NULL;
}
