/* One worker process: start it, talk to it, stop it. */
#include <assert.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "engine-internal.h"
#include "worker-proto.h"

#define WORKER_BOOT_TIMEOUT_USEC (30 * USEC_PER_SEC)

int worker_recv(Worker *w, usec_t deadline, char **ret_json, size_t *ret_len) {
        return worker_recv_cancellable(w, deadline, -EBADF, ret_json, ret_len);
}

int worker_recv_cancellable(Worker *w, usec_t deadline, int cancel_fd, char **ret_json, size_t *ret_len) {
        for (;;) {
                int timeout = -1;
                if (deadline) {
                        usec_t now = now_monotonic();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        timeout = (int) MIN((deadline - now + 999) / 1000, (usec_t) INT32_MAX);
                }
                struct pollfd p[2] = { { .fd = w->sock, .events = POLLIN },
                                       { .fd = cancel_fd >= 0 ? cancel_fd : -1, .events = POLLIN } };
                int k = poll(p, 2, timeout);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        continue;
                if (p[1].revents && !p[0].revents)
                        return -ECANCELED;
                return proto_recv(w->sock, WORKER_PROTO_MAX_MESSAGE, ret_json, ret_len, NULL, 0, NULL);
        }
}

int worker_send(Worker *w, const char *json, const int *fds, size_t n_fds) {
        /* Callers pass json_dumps()'s result, which is NULL when a value
         * could not be encoded: refuse instead of crashing on it. */
        if (!json)
                return -EINVAL;
        return proto_send(w->sock, json, strlen(json), fds, n_fds);
}

void worker_stop_begin(Worker *w) {
        if (!w || w->sock < 0)
                return;
        static const char bye[] = "{\"type\":\"exit\"}";
        (void) proto_send(w->sock, bye, sizeof(bye) - 1, NULL, 0);
        w->sock = fd_close(w->sock);
}

/* Waits up to timeout_ms for pid (our child) to exit, and reaps it.
 * A pidfd wakes the wait at the exit itself: polling with sleeps woke
 * up to 2 ms late, and each CLI waits here once before it can exit. */
static bool worker_reap_within(pid_t pid, int timeout_ms) {
        _cleanup_close_ int pfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pfd >= 0) {
                struct pollfd p = { .fd = pfd, .events = POLLIN };
                usec_t deadline = now_monotonic() + (usec_t) timeout_ms * USEC_PER_MSEC;
                for (;;) {
                        usec_t now = now_monotonic();
                        int left = now >= deadline ? 0 : (int) ((deadline - now) / USEC_PER_MSEC);
                        int k = poll(&p, 1, left);
                        if (k >= 0 || errno != EINTR)
                                break;
                }
        } else {
                /* No pidfd: Linux < 5.3, a container runtime's seccomp
                 * profile that refuses pidfd_open (older Docker), or no
                 * fd left. Sleep in small steps. */
                for (int i = 0; i < timeout_ms * 5 && waitpid(pid, NULL, WNOHANG) == 0; i++)
                        usleep(200);
        }
        /* ECHILD: reaped already (never kill a pid that may be reused). */
        pid_t k = waitpid(pid, NULL, WNOHANG);
        return k == pid || (k < 0 && errno == ECHILD);
}

Worker *worker_stop(Worker *w) {
        if (!w)
                return NULL;
        worker_stop_begin(w);
        if (w->pid > 0) {
                /* The worker exits when its socket closes; give it a moment,
                 * then make sure. */
                if (!worker_reap_within(w->pid, WORKER_EXIT_GRACE_MS)) {
                        (void) kill(w->pid, SIGKILL);
                        (void) waitpid(w->pid, NULL, 0);
                }
                w->pid = 0;
        }
        if (w->out_root) {
                /* The worker is gone, and with it every run it held. */
                int r = rm_rf(w->out_root);
                if (r < 0)
                        log_warn("cannot remove %s: %s", w->out_root, strerror(-r));
        }
        free(w->out_root);
        free(w->python_version);
        free(w);
        return NULL;
}

/* The worker's output root (Worker.out_root): root/ searchable by the
 * sandbox's uids (when we are root) so a run reaches its own 0700 dir,
 * work/ for overlayfs. NULL when it cannot be made: runs then have no /out. */
static char *worker_out_root(Engine *e) {
        _cleanup_free_ char *id = id_new("w"), *name = xasprintf("%s-%s", e->out_owner, id);
        _cleanup_free_ char *dir = path_join(e->out_dir, name);
        _cleanup_free_ char *root = path_join(dir, "root"), *work = path_join(dir, "work");
        if (mkdir(dir, 0711) < 0 || mkdir(root, 0711) < 0 || mkdir(work, 0700) < 0) {
                int r = -errno;
                log_warn("cannot create %s (runs get no /out): %s", dir, strerror(-r));
                (void) rm_rf(dir);
                return NULL;
        }
        (void) chmod(dir, 0711);
        (void) chmod(root, 0711);
        return TAKE_PTR(dir);
}

int worker_spawn(Engine *e, SandboxMode mode, char *const *sys_path, char *const *data, Worker **ret,
                 char **ret_error) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                int r = -errno;
                *ret_error = xasprintf("socketpair: %s", strerror(-r));
                return r;
        }
        _cleanup_strv_free_ char **ro = NULL;
        for (char *const *p = sys_path; p && *p; p++)
                ro = strv_append(ro, *p);
        WorkerSpawn ws = {
                .data = (char **) data,
                .worker_path = e->worker_path,
                .launcher_path = e->launcher_path,
                .ctrl_fd = sv[1],
                .mode = mode,
                .ro_paths = ro,
                .data_dir = e->data_dir,
        };
        Worker *w = xcalloc(1, sizeof(Worker));
        if (mode == SANDBOX_MODE_FULL)
                w->out_root = worker_out_root(e);
        ws.out_root = w->out_root;
        w->sock = sv[0];
        w->started = now_monotonic();
        int r = engine_sandbox_spawn_worker(&ws, &w->pid, ret_error);
        close(sv[1]);
        if (r < 0) {
                w->pid = 0;
                worker_stop(w);
                return r;
        }
        *ret = w;
        return 0;
}

int worker_start_abandon(Worker *w, char **ret_error) {
        (void) kill(w->pid, SIGKILL);
        *ret_error = xstrdup("cancelled");
        return -ECANCELED;
}

int worker_hello(Engine *e, Worker *w, int cancel_fd, char **ret_error) {
        assert(w);
        if (w->python_version)
                return 0;
        _cleanup_free_ char *hello = NULL;
        int r = worker_recv_cancellable(w, now_monotonic() + WORKER_BOOT_TIMEOUT_USEC, cancel_fd, &hello, NULL);
        if (r == -ECANCELED)
                return worker_start_abandon(w, ret_error);
        if (r < 0) {
                *ret_error = xasprintf("the worker (%s) did not start: %s", e->worker_path,
                                       r == -ECONNRESET ? "it exited during start-up" : strerror(-r));
                return r;
        }
        json_t *m = json_loads(hello, 0, NULL);
        const char *v = json_string_value(json_object_get(m, "python"));
        w->python_version = xstrdup(v ? v : "?");
        json_decref(m);
        return 0;
}

int worker_start(Engine *e, SandboxMode mode, char *const *sys_path, char *const *data, int cancel_fd, Worker **ret,
                 char **ret_error) {
        Worker *w = NULL;
        int r = worker_spawn(e, mode, sys_path, data, &w, ret_error);
        if (r < 0)
                return r;
        r = worker_hello(e, w, cancel_fd, ret_error);
        if (r < 0) {
                worker_stop(w);
                return r;
        }
        *ret = w;
        return 0;
}
