/* SPDX-License-Identifier: MIT */
/* `run --detach` / `invoke --detach` (docs/cli.md): submit, print the run's
 * id, return; the run goes on without this process.
 *
 * Against a server the run is the server's already (a 202). Embedded, the
 * run belongs to the engine of the process that started it (a CLI that
 * dies leaves it `lost`), so a child process owns it: cli_detach_fork()
 * forks before the engine is opened, the child submits the run as a plain
 * `run` would and hands the run's record to the parent
 * (cli_detach_submitted()), which prints it and exits; the child, in a
 * session of its own, watches the run to its end. */
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* The child's end of the pipe its run's record goes to: -1 in the parent,
 * when not detached, and once handed. */
static int notify_fd = -1;

/* Closes every descriptor from 3 up but keep_a and keep_b: what the
 * caller lent this process (a harness's pipe, a shell's process
 * substitution) would be held open as long as the run goes on. */
static void close_inherited(int keep_a, int keep_b) {
        unsigned lo = (unsigned) MIN(keep_a, keep_b), hi = (unsigned) MAX(keep_a, keep_b);
        if (lo > 3)
                (void) close_range(3, lo - 1, 0);
        if (hi > lo + 1)
                (void) close_range(lo + 1, hi - 1, 0);
        (void) close_range(hi + 1, ~0U, 0);
}

static bool detach_child_setup(int notify_w, int err_w) {
        if (setsid() < 0)
                return false;
        close_inherited(notify_w, err_w);
        /* 0, 1 and 2 are inherited by every worker the engine spawns: none
         * may hold the caller's terminal or pipes (a `$(pysprinter run
         * --detach)` waits for the end of its stdout, stderr included
         * under 2>&1), so they are /dev/null from here on. What the child
         * has to say before its run has a record goes to the parent over
         * err_w (close-on-exec, as notify_w), which prints it. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
                return false;
        if (null > STDERR_FILENO) /* else it is one of them: a caller closed it */
                fd_close(null);
        FILE *err = fdopen(err_w, "w");
        if (!err)
                return false;
        setvbuf(err, NULL, _IONBF, 0);
        /* For good: a renderer keeps the FILE it writes to, and threads
         * may write at any time, so the hand-over changes the descriptor
         * under this FILE, never the FILE. */
        stderr = err;
        notify_fd = notify_w;
        return true;
}

/* Copies what is readable on fd to out; false at its end. */
static bool relay(int fd, Buf *into, FILE *out) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN;
        if (n == 0)
                return false;
        if (into)
                buf_append(into, chunk, (size_t) n);
        else
                fwrite(chunk, 1, (size_t) n, out);
        return true;
}

/* The parent: relays the child's stderr until both pipes end; prints the
 * run it was handed, or returns the child's own exit code. */
static int detach_parent_wait(pid_t child, int notify_r, int err_r, bool json, bool dag) {
        Buf run_text;
        buf_init(&run_text, 64 * 1024 * 1024);
        struct pollfd p[2] = { { .fd = notify_r, .events = POLLIN }, { .fd = err_r, .events = POLLIN } };
        while (p[0].fd >= 0 || p[1].fd >= 0) {
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents && !relay(notify_r, &run_text, NULL))
                        p[0].fd = -1;
                if (p[1].revents && !relay(err_r, NULL, stderr))
                        p[1].fd = -1;
        }
        fd_close(notify_r);
        fd_close(err_r);
        json_t *run = run_text.len ? json_loadb(run_text.data, run_text.len, 0, NULL) : NULL;
        buf_free(&run_text);
        if (run) {
                /* The child goes on alone; it is init's (or a subreaper's) to reap. */
                cli_print_detached(run, json, dag);
                json_decref(run);
                return 0;
        }
        /* It ended before its run had a record: its code is the run's. */
        int status;
        while (waitpid(child, &status, 0) < 0)
                if (errno != EINTR)
                        return EXIT_INTERNAL;
        return WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_INTERNAL;
}

/* A pipe whose ends are above 0, 1 and 2, which the child points at
 * /dev/null (a caller may have closed any of them: `<&-`). */
static int pipe_above_stdio(int fds[2]) {
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        for (int i = 0; i < 2; i++)
                if (fds[i] <= STDERR_FILENO) {
                        int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
                        if (moved < 0) {
                                int r = -errno;
                                fd_close(fds[0]);
                                fd_close(fds[1]);
                                return r;
                        }
                        fd_close(fds[i]);
                        fds[i] = moved;
                }
        return 0;
}

int cli_detach_fork(bool json, bool dag) {
        int notify[2], err[2];
        int r = pipe_above_stdio(notify);
        if (r < 0)
                goto fail;
        r = pipe_above_stdio(err);
        if (r < 0) {
                fd_close(notify[0]);
                fd_close(notify[1]);
                goto fail;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                fd_close(notify[0]);
                fd_close(notify[1]);
                fd_close(err[0]);
                fd_close(err[1]);
                goto fail;
        }
        if (pid == 0) {
                fd_close(notify[0]);
                fd_close(err[0]);
                if (!detach_child_setup(notify[1], err[1]))
                        _exit(EXIT_INTERNAL);
                return -1;
        }
        fd_close(notify[1]);
        fd_close(err[1]);
        return detach_parent_wait(pid, notify[0], err[0], json, dag);
fail:
        cli_error("cannot detach the run: %s", strerror(-r));
        return EXIT_INTERNAL;
}

void cli_detach_submitted(json_t *run) {
        if (notify_fd < 0)
                return;
        _cleanup_free_ char *text = cli_json_text(run);
        (void) write_full(notify_fd, text, strlen(text));
        notify_fd = fd_close(notify_fd);
        /* From here on the run is the parent's to tell about: nothing
         * more of ours reaches the caller. dup2() closes the pipe's end
         * (the parent sees its end) and points stderr at /dev/null at once. */
        fflush(stderr);
        (void) dup2(STDIN_FILENO, fileno(stderr));
}

void cli_print_detached(json_t *obj, bool json, bool dag) {
        const char *id = json_string_value(json_object_get(obj, "id")) ?: "?";
        if (json)
                render_json(obj);
        else
                printf("%s\n", id);
        fflush(stdout);
        if (cli_globals.quiet || json)
                return;
        if (dag)
                fprintf(stderr,
                        "pysprinter: DAG run %s goes on detached: `pysprinter dag status %s` shows its tasks, "
                        "`pysprinter dag cancel %s` stops it\n",
                        id, id, id);
        else
                fprintf(stderr,
                        "pysprinter: run %s goes on detached: `pysprinter logs -f %s` follows it, "
                        "`pysprinter show %s` tells how it ended\n",
                        id, id, id);
}
