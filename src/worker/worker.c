/* pysprinter-worker: one embedded CPython that validates files and forks a
 * child per run. Single-threaded by design: forking a process that runs
 * CPython is only safe when no other thread holds a lock (uWSGI's rule).
 *
 * Protocol: worker-proto.h, docs/internals/worker-protocol.md. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <fcntl.h>
#include <sys/wait.h>

#include "worker-proto.h"
#include "worker.h"

#define MAX_CHILDREN 256

typedef struct Child {
        pid_t pid;
        char *id;
} Child;

static Child children[MAX_CHILDREN];
static size_t n_children;
static int ctrl = WORKER_CTRL_FD;
static int sigchld_fd = -EBADF;

static int send_json(json_t *msg) {
        _cleanup_free_ char *s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!s)
                return -ENOMEM;
        return proto_send(ctrl, s, strlen(s), NULL, 0);
}

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = fd_close(fds[i]);
}

static int handle_validate(json_t *msg, const char *raw) {
        const char *id = json_string_value(json_object_get(msg, "id"));
        _cleanup_free_ char *reply = NULL, *err = NULL;
        int r = py_call_str("validate", raw, &reply, &err);
        json_t *out;
        if (r < 0 || !reply)
                out = json_pack("{s:s, s:s?, s:b, s:{s:s, s:s}}", "type", "validated", "id", id, "ok", 0,
                                "error", "type", "InternalError", "message", err ? err : "validation failed");
        else {
                out = json_loads(reply, 0, NULL);
                if (!out)
                        return -EPROTO;
                json_object_set_new(out, "type", json_string("validated"));
                if (id)
                        json_object_set_new(out, "id", json_string(id));
        }
        return send_json(out);
}

/* The run child: never returns. */
static _noreturn_ void run_child(const char *raw, int *fds, size_t n_fds) {
        _cleanup_free_ char *err = NULL;
        /* The child must not talk to the engine or inherit its siblings. */
        close(ctrl);
        close(sigchld_fd);
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_UNBLOCK, &mask, NULL);
        int r = worker_sandbox_child(raw, fds + 3, n_fds - 3, &err);
        if (r < 0) {
                dprintf(fds[2], "{\"ok\":false,\"error\":{\"type\":\"SandboxError\",\"message\":\"sandbox: %s\"}}",
                        err ? err : strerror(-r));
                _exit(120);
        }
        if (dup2(fds[0], STDOUT_FILENO) < 0 || dup2(fds[1], STDERR_FILENO) < 0)
                _exit(121);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, STDIN_FILENO);
                close(devnull);
        }
        close(fds[0]);
        close(fds[1]);
        py_run_child(raw, fds[2]);
        close(fds[2]);
        /* Skip Python finalisation: the parent's interpreter state is not
         * ours to tear down (and it would run user atexit hooks twice). */
        fflush(NULL);
        _exit(0);
}

static int handle_run(json_t *msg, const char *raw, int *fds, size_t n_fds) {
        const char *id = json_string_value(json_object_get(msg, "id"));
        if (!id || n_fds < 3 || n_children >= MAX_CHILDREN) {
                close_fds(fds, n_fds);
                return send_json(json_pack("{s:s, s:s?, s:s, s:s}", "type", "exited", "id", id, "status", "error",
                                           "message", n_children >= MAX_CHILDREN ? "worker is full" : "bad run message"));
        }
        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
                PyOS_AfterFork_Child();
                run_child(raw, fds, n_fds);
        }
        PyOS_AfterFork_Parent();
        int saved = errno;
        close_fds(fds, n_fds);
        if (pid < 0)
                return send_json(json_pack("{s:s, s:s, s:s, s:s}", "type", "exited", "id", id, "status", "error",
                                           "message", strerror(saved)));
        /* Put the child in its own group from here too, so a kill that
         * races the child's own setpgid() still reaches it. */
        (void) setpgid(pid, pid);
        children[n_children++] = (Child) { .pid = pid, .id = xstrdup(id) };
        return send_json(json_pack("{s:s, s:s, s:i}", "type", "started", "id", id, "pid", (int) pid));
}

static Child *child_by_id(const char *id) {
        for (size_t i = 0; i < n_children; i++)
                if (id && streq(children[i].id, id))
                        return &children[i];
        return NULL;
}

static void handle_cancel(json_t *msg) {
        Child *c = child_by_id(json_string_value(json_object_get(msg, "id")));
        if (c) {
                (void) kill(-c->pid, SIGKILL);
                (void) kill(c->pid, SIGKILL);
        }
}

static void reap_children(void) {
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        return;
                for (size_t i = 0; i < n_children; i++) {
                        if (children[i].pid != pid)
                                continue;
                        json_t *m;
                        if (WIFSIGNALED(status))
                                m = json_pack("{s:s, s:s, s:s, s:i, s:b}", "type", "exited", "id", children[i].id,
                                              "status", "signaled", "signal", WTERMSIG(status),
                                              "core", WCOREDUMP(status) ? 1 : 0);
                        else
                                m = json_pack("{s:s, s:s, s:s, s:i}", "type", "exited", "id", children[i].id,
                                              "status", "exited", "code", WEXITSTATUS(status));
                        (void) send_json(m);
                        free(children[i].id);
                        children[i] = children[--n_children];
                        break;
                }
        }
}

static int handle_message(void) {
        _cleanup_free_ char *raw = NULL;
        int fds[WORKER_PROTO_MAX_FDS];
        size_t n_fds = 0;
        int r = proto_recv(ctrl, WORKER_PROTO_MAX_MESSAGE, &raw, NULL, fds, ELEMENTSOF(fds), &n_fds);
        if (r < 0)
                return r;
        json_t *msg = json_loads(raw, 0, NULL);
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (!type) {
                close_fds(fds, n_fds);
                json_decref(msg);
                return -EPROTO;
        }
        if (streq(type, "validate"))
                r = handle_validate(msg, raw);
        else if (streq(type, "run"))
                r = handle_run(msg, raw, fds, n_fds);
        else if (streq(type, "cancel"))
                handle_cancel(msg);
        else if (streq(type, "exit"))
                r = -ECONNRESET;
        else
                r = send_json(json_pack("{s:s, s:s}", "type", "error", "message", "unknown message type"));
        if (!streq(type, "run"))
                close_fds(fds, n_fds);
        json_decref(msg);
        return r;
}

static void kill_all_children(void) {
        for (size_t i = 0; i < n_children; i++) {
                (void) kill(-children[i].pid, SIGKILL);
                (void) kill(children[i].pid, SIGKILL);
        }
}

int main(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        log_set_prefix("pysprinter-worker");
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "--version"))) {
                printf("pysprinter-worker: the engine's embedded Python; started by pysprinter, not by hand.\n");
                return 0;
        }
        int r = worker_sandbox_setup(argc, argv, &err);
        if (r < 0) {
                log_error("sandbox: %s", err);
                return 70;
        }
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        int sfd = sigchld_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        signal(SIGPIPE, SIG_IGN);

        r = py_init(&err);
        if (r < 0) {
                log_error("%s", err);
                return 71;
        }
        r = send_json(json_pack("{s:s, s:s, s:i}", "type", "hello", "python", py_version(), "pid", (int) getpid()));
        if (r < 0)
                return 72;

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = ctrl, .events = POLLIN },
                        { .fd = sfd, .events = POLLIN },
                };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(sfd, &si, sizeof(si)) == sizeof(si))
                                ;
                        reap_children();
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        r = handle_message();
                        if (r < 0)
                                break;
                }
        }
        kill_all_children();
        return 0;
}
