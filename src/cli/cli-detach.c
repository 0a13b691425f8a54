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
 * session of its own, watches the run to its end.
 *
 * The caller's Ctrl-C (SIGINT), SIGTERM or SIGHUP before the hand-over
 * reaches only the parent (the child has a session of its own): the
 * parent forwards it (SIGHUP as SIGTERM), the child cancels its run as a
 * foreground `run` does and ends as one, its stderr still the caller's,
 * and the parent exits with its code (130). Whether the hand-over
 * happened is the parent's to say, so that the two never disagree: the
 * child writes the record and waits for the parent's answer, 'y' (the id
 * is printed: the run is detached) or 'n' (interrupted first: the run is
 * cancelled). */
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* The child's ends of the pipe its run's record goes to and of the one
 * the parent answers on: -1 in the parent, when not detached, and once
 * handed. */
static int notify_fd = -1, answer_fd = -1;

/* The parent's signals before the hand-over, seen by its poll loop. */
static volatile sig_atomic_t parent_signal;
static int parent_wake = -1;

static int cmp_int(const void *a, const void *b) {
        return *(const int *) a - *(const int *) b;
}

/* Closes every descriptor from 3 up but the n in keep: what the caller
 * lent this process (a harness's pipe, a shell's process substitution)
 * would be held open as long as the run goes on. */
static void close_inherited(int *keep, size_t n) {
        qsort(keep, n, sizeof(int), cmp_int);
        unsigned from = 3;
        for (size_t i = 0; i < n; i++) {
                if ((unsigned) keep[i] > from)
                        (void) close_range(from, (unsigned) keep[i] - 1, 0);
                from = (unsigned) keep[i] + 1;
        }
        (void) close_range(from, ~0U, 0);
}

static bool detach_child_setup(int notify_w, int answer_r, int err_w) {
        if (setsid() < 0)
                return false;
        int keep[] = { notify_w, answer_r, err_w };
        close_inherited(keep, ELEMENTSOF(keep));
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
        answer_fd = answer_r;
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

static void on_parent_signal(int sig) {
        int saved = errno;
        parent_signal = sig;
        (void) !write(parent_wake, "x", 1);
        errno = saved;
}

/* The parent: relays the child's stderr until both pipes end; prints the
 * run it was handed, or returns the child's own exit code — a child
 * interrupted before the hand-over ends as an interrupted `run`. */
static int detach_parent_wait(pid_t child, int notify_r, int answer_w, int err_r, int wake_r, bool json, bool dag) {
        Buf run_text;
        buf_init(&run_text, 64 * 1024 * 1024);
        struct pollfd p[3] = { { .fd = notify_r, .events = POLLIN },
                               { .fd = err_r, .events = POLLIN },
                               { .fd = wake_r, .events = POLLIN } };
        bool handed = false, forwarded = false;
        while (p[0].fd >= 0 || p[1].fd >= 0) {
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[2].revents) {
                        char drain[16];
                        while (read(wake_r, drain, sizeof drain) > 0)
                                ;
                        /* Once the id is printed, the run is detached: a
                         * signal is the caller's to act on, not the run's. */
                        if (!handed && parent_signal) {
                                (void) kill(child, parent_signal == SIGINT ? SIGINT : SIGTERM);
                                forwarded = true;
                        }
                }
                if (p[0].revents && !relay(notify_r, &run_text, NULL)) {
                        p[0].fd = -1;
                        /* The whole record: the child waits for the answer. */
                        if (run_text.len) {
                                handed = !forwarded;
                                (void) !write(answer_w, handed ? "y" : "n", 1);
                        }
                }
                if (p[1].revents && !relay(err_r, NULL, stderr))
                        p[1].fd = -1;
        }
        fd_close(notify_r);
        fd_close(answer_w);
        fd_close(err_r);
        /* The record follows one byte: 'r' for a key's earlier run
         * (cli_detach_submitted()), else 'n'. */
        bool replayed = run_text.len && run_text.data[0] == 'r';
        json_t *run = handed && run_text.len > 1 ? json_loadb(run_text.data + 1, run_text.len - 1, 0, NULL) : NULL;
        buf_free(&run_text);
        if (run) {
                /* The child goes on alone; it is init's (or a subreaper's) to reap. */
                cli_print_detached(run, json, dag, replayed);
                json_decref(run);
                return 0;
        }
        /* It ended before its run had a record, or was interrupted first:
         * its code is the run's, as for a `run` without --detach. */
        int status;
        while (waitpid(child, &status, 0) < 0)
                if (errno != EINTR)
                        return EXIT_INTERNAL;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return forwarded ? EXIT_INTERRUPTED : EXIT_INTERNAL;
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
                                fds[0] = fd_close(fds[0]);
                                fds[1] = fd_close(fds[1]);
                                return r;
                        }
                        fd_close(fds[i]);
                        fds[i] = moved;
                }
        return 0;
}

/* Closes the ends of n pipes that are still open (>= 0). */
static void close_pipes(int *const *pipes, size_t n) {
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < 2; k++)
                        if (pipes[i][k] >= 0)
                                pipes[i][k] = fd_close(pipes[i][k]);
}

int cli_detach_fork(bool json, bool dag) {
        /* notify: the record, child to parent; answer: parent to child;
         * err: the child's stderr until the hand-over; wake: the
         * parent's signal handler to its poll loop. */
        int notify[2] = { -1, -1 }, answer[2] = { -1, -1 }, err[2] = { -1, -1 }, wake[2] = { -1, -1 };
        int *const pipes[] = { notify, answer, err, wake };
        int r = 0;
        for (size_t i = 0; i < 3 && r >= 0; i++)
                r = pipe_above_stdio(pipes[i]);
        if (r >= 0 && pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
                r = -errno;
        if (r < 0) {
                close_pipes(pipes, ELEMENTSOF(pipes));
                goto fail;
        }
        /* Blocked across the fork: a signal lands in a handler on either
         * side, never in the default action of a process half set up. */
        sigset_t mask, old_mask;
        sigemptyset(&mask);
        for (size_t i = 0; i < CLI_INTERRUPT_SIGNALS; i++)
                sigaddset(&mask, cli_interrupt_signals[i]);
        sigprocmask(SIG_BLOCK, &mask, &old_mask);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                sigprocmask(SIG_SETMASK, &old_mask, NULL);
                close_pipes(pipes, ELEMENTSOF(pipes));
                goto fail;
        }
        if (pid == 0) {
                /* A signal forwarded before the run starts is kept for it
                 * (the backend's handler cancels the run once it has it). */
                cli_catch_interrupt();
                sigprocmask(SIG_SETMASK, &old_mask, NULL);
                int notify_w = notify[1], answer_r = answer[0], err_w = err[1];
                notify[1] = answer[0] = err[1] = -1;
                close_pipes(pipes, ELEMENTSOF(pipes));
                if (!detach_child_setup(notify_w, answer_r, err_w))
                        _exit(EXIT_INTERNAL);
                return -1;
        }
        int notify_r = notify[0], answer_w = answer[1], err_r = err[0], wake_r = wake[0];
        parent_wake = wake[1];
        notify[0] = answer[1] = err[0] = wake[0] = wake[1] = -1;
        close_pipes(pipes, ELEMENTSOF(pipes)); /* the child's ends: their EOF is its end */
        struct sigaction ign = { .sa_handler = SIG_IGN }, old[CLI_INTERRUPT_SIGNALS], old_pipe;
        cli_interrupt_catch(on_parent_signal, old);
        /* The answer to a child that died meanwhile is EPIPE, not death. */
        sigaction(SIGPIPE, &ign, &old_pipe);
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        int code = detach_parent_wait(pid, notify_r, answer_w, err_r, wake_r, json, dag);
        cli_interrupt_restore(old);
        sigaction(SIGPIPE, &old_pipe, NULL);
        fd_close(wake_r);
        parent_wake = fd_close(parent_wake);
        return code;
fail:
        cli_error("cannot detach the run: %s", strerror(-r));
        return EXIT_INTERNAL;
}

void cli_detach_submitted(json_t *run, bool replayed) {
        /* Interrupted already (a signal the parent forwarded): the run is
         * being cancelled and ends as a foreground run's, told to the
         * caller over this process's stderr. */
        if (notify_fd < 0 || cli_interrupted)
                return;
        _cleanup_free_ char *text = cli_json_text(run);
        (void) write_full(notify_fd, replayed ? "r" : "n", 1);
        (void) write_full(notify_fd, text, strlen(text));
        notify_fd = fd_close(notify_fd);
        /* The parent's answer: 'n' when it was interrupted first (it has
         * forwarded the signal, which cancels the run: stay its caller's);
         * 'y', or its end without a word (it was killed), hands over. */
        char answer = 0;
        ssize_t n;
        while ((n = read(answer_fd, &answer, 1)) < 0 && errno == EINTR)
                ;
        answer_fd = fd_close(answer_fd);
        if (n == 1 && answer == 'n') {
                /* The forwarded signal may be taken by another of this
                 * process's threads a moment later: this one's own makes
                 * sure the run is cancelled before it goes on. */
                (void) raise(SIGINT);
                return;
        }
        /* From here on the run is the parent's to tell about: nothing
         * more of ours reaches the caller. dup2() closes the pipe's end
         * (the parent sees its end) and points stderr at /dev/null at once. */
        fflush(stderr);
        (void) dup2(STDIN_FILENO, fileno(stderr));
}

/* A key's earlier run that has ended goes on no more: where to read how. */
static void print_ended(json_t *obj, const char *id) {
        const char *status = json_string_value(json_object_get(obj, "status"));
        json_t *code = json_object_get(obj, "exit_code");
        _cleanup_free_ char *exit = json_is_integer(code) && json_integer_value(code) >= 0
                                            ? xasprintf(", exit %lld", (long long) json_integer_value(code))
                                            : xstrdup("");
        fprintf(stderr,
                "pysprinter: run %s of this idempotency key already ended (%s%s): `pysprinter logs %s` shows its "
                "output, `pysprinter show %s` tells how it ended\n",
                id, status, exit, id, id);
}

void cli_print_detached(json_t *obj, bool json, bool dag, bool replayed) {
        const char *id = json_string_value(json_object_get(obj, "id")) ?: "?";
        if (json)
                render_json(obj);
        else
                printf("%s\n", id);
        fflush(stdout);
        if (cli_globals.quiet || json)
                return;
        const char *status = json_string_value(json_object_get(obj, "status"));
        if (dag)
                fprintf(stderr,
                        "pysprinter: DAG run %s goes on detached: `pysprinter dag status %s` shows its tasks, "
                        "`pysprinter dag cancel %s` stops it\n",
                        id, id, id);
        else if (replayed && status && run_status_is_final(run_status_from_string(status)))
                print_ended(obj, id);
        else
                fprintf(stderr,
                        "pysprinter: run %s goes on detached: `pysprinter logs -f %s` follows it, "
                        "`pysprinter show %s` tells how it ended\n",
                        id, id, id);
}
