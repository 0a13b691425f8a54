/* How a run looks in a terminal and in a pipe.
 *
 * In a pipe, the function's stdout and stderr pass through byte for byte
 * as they arrive, and the result follows on stdout: scripts see what the
 * function printed. On a TTY, each line gets a timestamp and a stream
 * marker (coloured unless NO_COLOR), and the result is pretty-printed.
 * And when the reader of that output goes away (SIGPIPE, EPIPE), the CLI
 * ends as a tool in a pipeline does (cli_output_watch()). */
#include <ctype.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include "shared.h"
#include "cli.h"

#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_YELLOW "\033[33m"
#define C_BOLD "\033[1m"
#define C_RESET "\033[0m"

/* The progress line of the current renderer: cli_error() and friends
 * erase it too, wherever they are called from. */
static Renderer *active;

volatile sig_atomic_t cli_output_gone;
/* The caller's SIGPIPE disposition was SIG_IGN (cli_output_watch()). */
static bool sigpipe_ignored;

void renderer_init(Renderer *r, bool json_output) {
        *r = (Renderer) { .json = json_output || cli_globals.json };
        r->tty_out = isatty(STDOUT_FILENO);
        r->tty_err = isatty(STDERR_FILENO);
        const char *term = getenv("TERM");
        bool dumb = term && streq(term, "dumb");
        r->cursor = r->tty_err && !dumb;
        r->color = r->tty_out && !dumb && !cli_no_color();
        /* With --json, stdout holds exactly one JSON document: the
         * function's own stdout goes to stderr. */
        r->out = r->json ? stderr : stdout;
        r->redraw = (r->json ? r->tty_err : r->tty_out) && !dumb;
        for (int i = 0; i < 3; i++)
                buf_init(&r->partial[i], 64 * 1024);
        active = r;
}

void renderer_clear_status(Renderer *r) {
        if (r && r->live) {
                r->live = 0;
                fputs("\r\033[K", r->out);
        }
        if (r && r->status_line) {
                r->status_line = false;
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
}

/* What a terminal shows of a line holding carriage returns: the text after
 * the last one (a progress bar's latest state), a CRLF's \r dropped. */
static void line_shown(const char **line, size_t *len) {
        while (*len > 0 && (*line)[*len - 1] == '\r')
                (*len)--;
        const char *cr = memrchr(*line, '\r', *len);
        if (cr) {
                *len -= (size_t) (cr + 1 - *line);
                *line = cr + 1;
        }
}

static void print_prefix(Renderer *r, int stream, usec_t ts) {
        time_t sec = (time_t) (ts / USEC_PER_SEC);
        struct tm tm;
        localtime_r(&sec, &tm);
        char stamp[32];
        size_t n = strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof(stamp) - n, ".%03u", (unsigned) ((ts % USEC_PER_SEC) / 1000));
        FILE *f = r->out;
        if (r->color)
                fprintf(f, C_DIM "%s" C_RESET " %s%s" C_RESET " %s", stamp, stream == 2 ? C_RED : C_DIM,
                        stream == 2 ? "err" : "out", stream == 2 ? C_RED : "");
        else
                fprintf(f, "%s %s | ", stamp, stream == 2 ? "err" : "out");
}

static void print_line(Renderer *r, int stream, const char *line, size_t len, usec_t ts) {
        /* Both streams go to one place on a TTY so their order is kept. */
        renderer_clear_status(r);
        line_shown(&line, &len);
        print_prefix(r, stream, ts);
        /* fwrite, not %.*s: a NUL the function printed ends a %s, and the
         * rest of its line would be lost. */
        fwrite(line, 1, len, r->out);
        fputs(r->color && stream == 2 ? C_RESET "\n" : "\n", r->out);
}

/* Draws an unfinished line (a prompt, "Downloading...", a progress bar
 * that rewrites itself with \r) in place, as it stands: it would otherwise
 * show only when its newline came, at the run's end for a bar. Cut to the
 * terminal's width, since only the cursor's own row can be erased; the
 * whole line is printed when it ends. */
static void draw_live(Renderer *r, int stream, usec_t ts) {
        if (!r->redraw || r->partial[stream].len == 0)
                return;
        const char *line = r->partial[stream].data;
        size_t len = r->partial[stream].len;
        line_shown(&line, &len);
        struct winsize ws;
        size_t room = ioctl(fileno(r->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
        room = room > 21 ? room - 21 : 0; /* the prefix, and the last column */
        if (len > room) {
                len = room;
                while (len > 0 && ((unsigned char) line[len] & 0xC0) == 0x80)
                        len--; /* not inside a UTF-8 character */
        }
        print_prefix(r, stream, ts);
        fwrite(line, 1, len, r->out);
        if (r->color && stream == 2)
                fputs(C_RESET, r->out);
        r->live = stream;
}

static void flush_partial(Renderer *r, int stream, usec_t ts) {
        Buf *b = &r->partial[stream];
        if (b->len > 0) {
                print_line(r, stream, b->data, b->len, ts);
                buf_reset(b);
        }
}

/* Adds n bytes to stream s's unfinished line. A line longer than the
 * buffer's cap shows as several lines of that size: none of its bytes is
 * dropped. */
static void partial_add(Renderer *r, int stream, const char *data, size_t n, usec_t ts) {
        Buf *b = &r->partial[stream];
        while (n > 0) {
                if (b->len >= b->max)
                        flush_partial(r, stream, ts);
                size_t take = MIN(n, b->max - b->len);
                (void) buf_append(b, data, take);
                data += take;
                n -= take;
        }
}

/* The first error of a write to stdout other than EPIPE (a full disk):
 * cli_finish() reports it, once stdio has lost the errno. */
static int stdout_errno;

/* fflush(f), noting why a write to stdout (or to r's --output-file)
 * failed. */
static void flush_noting(Renderer *r, FILE *f) {
        if (fflush(f) == 0)
                return;
        /* A thread that blocks SIGPIPE sees only the EPIPE. */
        if (errno == EPIPE)
                cli_output_check();
        else if (f == stdout && !stdout_errno)
                stdout_errno = errno;
        else if (r && f == r->out && !r->out_errno)
                r->out_errno = errno;
}

static void lines_out(Renderer *r, FILE *f, const char *data, size_t len) {
        if (r->write_lines)
                r->write_lines(r->write_lines_userdata, f, data, len);
        else
                fwrite(data, 1, len, f);
}

/* Adds n bytes to stream s's unfinished line and writes what ends in a
 * newline with one fwrite (stdio locks f for it: another thread's line
 * cannot come between). A line longer than the buffer is written in
 * pieces of its size. */
static void write_whole_lines(Renderer *r, int s, FILE *f, const char *data, size_t n) {
        Buf *b = &r->partial[s];
        while (n > 0) {
                size_t take = MIN(n, b->max - b->len);
                (void) buf_append(b, data, take);
                data += take;
                n -= take;
                const char *nl = memrchr(b->data, '\n', b->len);
                size_t upto = nl ? (size_t) (nl - b->data) + 1 : b->len >= b->max ? b->len : 0;
                if (upto == 0)
                        continue;
                lines_out(r, f, b->data, upto);
                memmove(b->data, b->data + upto, b->len - upto);
                b->len -= upto;
                b->data[b->len] = 0;
        }
        flush_noting(r, f);
}

/* Whether the function's stdout goes to a terminal (stdout, or stderr
 * with --json; an --output-file is none): its lines are decorated there. */
static bool out_is_terminal(const Renderer *r) {
        return r->out == stdout ? r->tty_out : r->out == stderr && r->tty_err;
}

static void render_output(Renderer *r, const RunEvent *ev) {
        int s = ev->stream == 2 ? 2 : 1;
        renderer_clear_status(r);
        /* On a terminal both streams are drawn there, their order kept;
         * the function's stderr goes to a stderr that is no terminal (`2>
         * err.log`, `2>/dev/null`) as it came, as in a pipe. */
        if (!out_is_terminal(r) || (s == 2 && !r->tty_err)) {
                FILE *f = s == 2 ? stderr : r->out;
                if (r->whole_lines) {
                        write_whole_lines(r, s, f, ev->data, ev->len);
                        return;
                }
                fwrite(ev->data, 1, ev->len, f);
                if (f == stdout && ev->len > 0)
                        r->midline = ev->data[ev->len - 1] != '\n';
                flush_noting(r, f);
                return;
        }
        const char *p = ev->data, *end = ev->data + ev->len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl) {
                        partial_add(r, s, p, (size_t) (end - p), ev->timestamp);
                        break;
                }
                if (r->partial[s].len > 0) {
                        partial_add(r, s, p, (size_t) (nl - p), ev->timestamp);
                        flush_partial(r, s, ev->timestamp);
                } else
                        print_line(r, s, p, (size_t) (nl - p), ev->timestamp);
                p = nl + 1;
        }
        draw_live(r, r->partial[s].len > 0 ? s : 3 - s, ev->timestamp);
        fflush(r->out);
}

void renderer_event(const RunEvent *ev, void *userdata) {
        Renderer *r = userdata;
        switch (ev->type) {
        case RUN_EVENT_OUTPUT:
                if (!r->no_output)
                        render_output(r, ev);
                break;
        case RUN_EVENT_WARNING:
                cli_warning("%s", ev->message);
                break;
        case RUN_EVENT_PROGRESS:
                if (r->cursor && ev->message && !cli_globals.quiet) {
                        r->status_line = true;
                        if (ev->total)
                                fprintf(stderr, "\r\033[K%s %s %llu/%llu", ev->phase ? ev->phase : "",
                                        ev->message, (unsigned long long) ev->done, (unsigned long long) ev->total);
                        else
                                fprintf(stderr, "\r\033[K%s %s", ev->phase ? ev->phase : "", ev->message);
                        fflush(stderr);
                }
                break;
        case RUN_EVENT_PHASE:
                if (ev->phase && streq(ev->phase, "run"))
                        renderer_clear_status(r);
                break;
        default:
                break;
        }
}

void renderer_answer_warnings(Renderer *r, json_t *ans) {
        json_t *w = json_object_get(ans, "warnings");
        if (json_is_string(w)) {
                Renderer own;
                if (!r)
                        renderer_init(r = &own, false);
                renderer_event(&(RunEvent){ .type = RUN_EVENT_OUTPUT,
                                            .stream = 2,
                                            .data = json_string_value(w),
                                            .len = json_string_length(w),
                                            .timestamp = now_realtime() },
                               r);
                if (r == &own)
                        renderer_done(r);
        }
        json_object_del(ans, "warnings");
}

void renderer_done(Renderer *r) {
        renderer_clear_status(r);
        if (active == r)
                active = NULL;
        for (int i = 1; i < 3; i++) {
                if (out_is_terminal(r))
                        flush_partial(r, i, now_realtime());
                else if (r->whole_lines && r->partial[i].len > 0) {
                        FILE *f = i == 2 ? stderr : r->out;
                        lines_out(r, f, r->partial[i].data, r->partial[i].len);
                        flush_noting(r, f);
                }
                buf_free(&r->partial[i]);
        }
        buf_free(&r->partial[0]);
}

char *json_reformat(const char *in, int indent) {
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        int depth = 0;
        for (const char *p = in; *p; p++) {
                char ch = *p;
                if (ch == '"') {
                        const char *s = p++;
                        while (*p && *p != '"') {
                                if (*p == '\\' && p[1])
                                        p++;
                                p++;
                        }
                        buf_append(&b, s, (size_t) (p - s) + (*p ? 1 : 0));
                        if (!*p)
                                break;
                        continue;
                }
                if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r')
                        continue;
                if (indent > 0 && (ch == '{' || ch == '[')) {
                        /* Empty containers stay on one line. */
                        const char *q = p + 1;
                        while (*q == ' ' || *q == '\n')
                                q++;
                        if (*q == (ch == '{' ? '}' : ']')) {
                                buf_append(&b, p, 1);
                                buf_append(&b, q, 1);
                                p = q;
                                continue;
                        }
                        depth++;
                        buf_append(&b, &ch, 1);
                        buf_printf(&b, "\n%*s", depth * indent, "");
                        continue;
                }
                if (indent > 0 && (ch == '}' || ch == ']')) {
                        depth--;
                        buf_printf(&b, "\n%*s", depth * indent, "");
                        buf_append(&b, &ch, 1);
                        continue;
                }
                if (ch == ',') {
                        if (indent > 0)
                                buf_printf(&b, ",\n%*s", depth * indent, "");
                        else
                                buf_appends(&b, ", ");
                        continue;
                }
                if (ch == ':') {
                        buf_appends(&b, ": ");
                        continue;
                }
                buf_append(&b, &ch, 1);
        }
        return buf_steal(&b);
}

char *cli_json_text(json_t *v) {
        /* 17 digits is exact; each real is then respelled as Python
         * spells it (0.1, 1e+300), so both paths print the same. */
        return json_dumps_short(v) ?: xstrdup("null");
}

static int file_write(const char *piece, size_t size, void *userdata) {
        return fwrite(piece, 1, size, userdata) == size ? 0 : -1;
}

/* v as cli_json_text() spells it (spaced: then as json_reformat(…, 0)
 * spaces it), written as it is dumped: a large result is never held
 * whole as text (a 15 MB one was two more copies, the dump and its
 * respelling, and a third for the spacing). */
static void stream_json(json_t *v, bool spaced) {
        /* It fails only where stdout does (the caller's flush reports it).
         * A held result (shared.h) is written from its text. */
        (void) json_dump_short(v, spaced, file_write, stdout);
        fputc('\n', stdout);
}

void render_json(json_t *v) {
        stream_json(v, false);
        flush_noting(NULL, stdout);
}

void render_value(json_t *v, bool json, bool tty) {
        if (json) {
                render_json(v);
                return;
        }
        /* bytes (the result table's {"$bytes": …} marker) print as
         * themselves into a file or pipe, `run f.py > out.png`; a terminal
         * gets their size instead of binary noise. --json keeps the marker. */
        _cleanup_free_ uint8_t *bytes = NULL;
        size_t nbytes = 0;
        /* A pysprinter.pickled() value: the CLI never unpickles, it shows
         * the JSON view the runner put beside the pickle. */
        if (json_is_string(json_object_get(v, "$pickle")) && json_object_get(v, "view")) {
                render_value(json_object_get(v, "view"), json, tty);
                return;
        }
        if (json_bytes_marker_decode(v, &bytes, &nbytes) > 0) {
                if (tty)
                        printf("<%zu bytes: redirect stdout to a file to save them, or use --json>\n", nbytes);
                else
                        fwrite(bytes, 1, nbytes, stdout);
        } else if (json_is_string(v)) {
                /* A string prints as itself (the seed's contract: `5`, not `"5"`). */
                fwrite(json_string_value(v), 1, json_string_length(v), stdout);
                fputc('\n', stdout);
        } else if (!tty)
                stream_json(v, true);
        else {
                _cleanup_free_ char *t = cli_json_text(v);
                _cleanup_free_ char *f = json_reformat(t, 2);
                puts(f);
        }
        flush_noting(NULL, stdout);
}

/* msg begins with "TYPE:" or names it after a location ("f.py:1:7: TYPE:"):
 * "ValueError: nope", never "ValueError: ValueError: nope". */
static bool message_names_type(const char *msg, const char *type) {
        size_t tl = strlen(type);
        for (const char *p = msg;; p += 2) {
                if (strneq(p, type, tl) && p[tl] == ':')
                        return true;
                p = strstr(p, ": ");
                if (!p)
                        return false;
        }
}

/* The length of msg's leading "FILE:LINE[:COL]" (before its ": "), or 0. */
static size_t location_length(const char *msg) {
        const char *sep = strstr(msg, ": ");
        if (!sep)
                return 0;
        const char *p = sep;
        for (int numbers = 0; numbers < 2; numbers++) {
                const char *digits = p;
                while (digits > msg && isdigit((unsigned char) digits[-1]))
                        digits--;
                if (digits == p || digits == msg || digits[-1] != ':')
                        return numbers ? (size_t) (sep - msg) : 0;
                p = digits - 1;
        }
        return (size_t) (sep - msg);
}

char *renderer_error_text(const json_t *err) {
        const char *type = json_get_string(err, "type"), *msg = json_get_string(err, "message");
        if (!msg)
                return xstrdup("the run failed");
        if (!type || message_names_type(msg, type))
                return xstrdup(msg);
        /* Compiler style: the location first, then the type. */
        size_t loc = location_length(msg);
        if (loc > 0)
                return xasprintf("%.*s: %s: %s", (int) loc, msg, type, msg + loc + 2);
        return xasprintf("%s: %s", type, msg);
}

/* After "pysprinter: " (the run could not run: a limit, an internal error)
 * the message alone; the run's own error with its type. */
static void print_error_line(Renderer *r, json_t *err, const char *prefix) {
        bool c = r->tty_err && r->color;
        _cleanup_free_ char *text = streq(prefix, "pysprinter: ")
                                            ? xstrdup(json_get_string(err, "message") ?: "the run failed")
                                            : renderer_error_text(err);
        fprintf(stderr, "%s%s%s%s\n", c ? C_RED : "", prefix, text, c ? C_RESET : "");
}

int renderer_run_outcome(Renderer *r, json_t *run) {
        renderer_clear_status(r);
        fflush(stdout);
        const char *status = json_get_string(run, "status") ?: "error";
        json_t *err = json_object_get(run, "error");
        if (streq(status, "succeeded")) {
                const char *repr = json_get_string(run, "result_repr");
                json_t *result = json_object_get(run, "result");
                /* The result is a line of its own (`| tail -1` reads it),
                 * after an unfinished line of the function's too; bytes
                 * are written as they are (a file being made). */
                if (r->midline && (repr || !json_object_get(result, "$bytes")))
                        fputc('\n', stdout);
                r->midline = false;
                if (repr) {
                        cli_warning("the result cannot be represented as JSON; showing its repr()");
                        json_t *s = json_string(repr);
                        render_value(s, r->json, r->tty_out);
                        json_decref(s);
                } else
                        render_value(result ?: json_null(), r->json, r->tty_out);
        } else if (streq(status, "failed") && json_get_string(err, "traceback") && *json_get_string(err, "traceback"))
                fputs(json_get_string(err, "traceback"), stderr);
        else if (streq(status, "failed") || streq(status, "invalid"))
                /* Validation messages start with file:line:col, like a
                 * compiler's, so editors can jump. */
                print_error_line(r, err, "");
        else
                print_error_line(r, err, "pysprinter: ");
        fflush(stdout);
        fflush(stderr);
        json_t *ec = json_object_get(run, "exit_code");
        return json_is_integer(ec) ? (int) json_integer_value(ec) : EXIT_INTERNAL;
}

void format_duration_us(usec_t us, char buf[static 32]) {
        double s = (double) us / 1e6;
        /* Below a second as the dashboard's fmtMs() reads: under 1 ms with
         * two decimals (a warm invoke's 0.14ms, not 0ms), else whole ms
         * rounded half up (Math.round), so both show the same number. */
        if (us > 0 && us < 1000)
                snprintf(buf, 32, "%.2fms", s * 1000);
        else if (us < 999500)
                snprintf(buf, 32, "%llums", (unsigned long long) ((us + 500) / 1000));
        else if (s < 120)
                snprintf(buf, 32, "%.2fs", s);
        else
                snprintf(buf, 32, "%lldm%02llds", (long long) s / 60, (long long) s % 60);
}

usec_t cli_parse_timestamp(const char *iso) {
        struct tm tm = {};
        unsigned ms = 0;
        if (!iso || sscanf(iso, "%d-%d-%dT%d:%d:%d.%uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                           &tm.tm_sec, &ms) < 6)
                return 0;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        time_t t = timegm(&tm);
        return t < 0 ? 0 : (usec_t) t * USEC_PER_SEC + (usec_t) ms * 1000;
}

void format_local_time(const char *iso, char buf[static 32]) {
        usec_t t = cli_parse_timestamp(iso);
        if (!t) {
                snprintf(buf, 32, "-");
                return;
        }
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        localtime_r(&sec, &tm);
        strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

bool cli_no_color(void) {
        const char *nc = getenv("NO_COLOR");
        return (nc && *nc) || cli_globals.no_color;
}

bool cli_stderr_can_redraw(void) {
        const char *term = getenv("TERM");
        return isatty(STDERR_FILENO) && !(term && streq(term, "dumb"));
}

static _printf_(3, 0) void say(const char *color, const char *what, const char *fmt, va_list ap) {
        bool c = isatty(STDERR_FILENO) && !cli_no_color() && color;
        const char *term = getenv("TERM");
        c = c && !(term && streq(term, "dumb"));
        renderer_clear_status(active);
        fflush(stdout);
        fprintf(stderr, "%spysprinter: %s", c ? color : "", what);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "%s\n", c ? C_RESET : "");
        fflush(stderr);
}

void cli_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        say(NULL, "", fmt, ap);
        va_end(ap);
}

void cli_warning(const char *fmt, ...) {
        /* -q: results and errors only (docs/cli.md). */
        if (cli_globals.quiet)
                return;
        va_list ap;
        va_start(ap, fmt);
        say(C_YELLOW, "warning: ", fmt, ap);
        va_end(ap);
}

bool render_list_keys(json_t *list, const char *key) {
        if (!cli_globals.quiet)
                return false;
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
                printf("%s\n", json_string_value(json_object_get(e, key)) ?: "?");
        return true;
}

bool render_list_start(json_t *list, bool json, const char *key, const char *empty_hint) {
        if (json) {
                render_json(list);
                return false;
        }
        if (render_list_keys(list, key))
                return false;
        if (json_array_size(list) == 0) {
                if (!cli_globals.quiet)
                        fprintf(stderr, "%s\n", empty_hint);
                return false;
        }
        return true;
}

/* ---- the reader of our output went away (SIGPIPE, EPIPE) ---- */

/* Whether fd is a pipe (or a socket) nobody reads any more: a write to it
 * fails with EPIPE. A pipe without readers polls POLLERR; a socket whose
 * peer closed, POLLHUP. A terminal is not one (its end is a hang-up,
 * SIGHUP's). Async-signal-safe. */
static bool fd_reader_gone(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
                return false;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, 0) <= 0)
                return false;
        return (p.revents & POLLERR) || (S_ISSOCK(st.st_mode) && (p.revents & POLLHUP));
}

void cli_output_check(void) {
        if (cli_output_gone)
                return;
        if (!fd_reader_gone(STDOUT_FILENO) && !fd_reader_gone(STDERR_FILENO))
                return;
        int saved = errno;
        cli_output_gone = 1;
        /* A tool killed by SIGPIPE says nothing more: neither the rest of
         * the function's output nor `pysprinter: cancelled` reaches a
         * stream, the one still open (a terminal's stderr) included. */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
                (void) dup2(null, STDOUT_FILENO);
                (void) dup2(null, STDERR_FILENO);
                (void) close(null);
        }
        /* Then as SIGTERM: whatever the verb waits for is cancelled by the
         * handler it installed (cli_interrupt_catch(), which always takes
         * SIGTERM); a verb without one only sees cli_interrupted. */
        struct sigaction sa;
        if (sigaction(SIGTERM, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler != SIG_DFL &&
            sa.sa_handler != SIG_IGN)
                sa.sa_handler(SIGTERM);
        else
                cli_interrupted = 1;
        errno = saved;
}

static void on_sigpipe(int sig) {
        /* The write that raised it fails with EPIPE: whose it was is told
         * by stdout's and stderr's state, not by the signal (a socket to a
         * server or a worker raises it too, and is handled where it is
         * written). */
        cli_output_check();
}

void cli_output_watch(void) {
        struct sigaction old, sa = { .sa_handler = on_sigpipe, .sa_flags = SA_RESTART };
        if (sigaction(SIGPIPE, NULL, &old) == 0)
                sigpipe_ignored = old.sa_handler == SIG_IGN;
        /* A handler, not SIG_IGN: exec() resets it, so the workers and
         * anything else this process starts get the default back. */
        (void) sigaction(SIGPIPE, &sa, NULL);
}

int cli_finish(int code) {
        /* What stdio still holds reaches the pipe now (a short listing was
         * never written before): its reader may have left meanwhile. A
         * write that failed earlier while SIGPIPE was ignored (the
         * detached run's id, cli-detach.c) is found here too. */
        int r = fflush(stdout) != 0 ? errno : 0;
        if (r == EPIPE || ferror(stdout))
                cli_output_check();
        if (!cli_output_gone && ferror(stdout) && !cli_interrupted) {
                /* A reader that is there but cannot take it (a full disk,
                 * /dev/full, EIO): as cat or echo, say so and fail, rather
                 * than exit 0 over a file that lacks the result. */
                cli_error("cannot write the output: %s", strerror(stdout_errno ?: r ?: EIO));
                return code ?: EXIT_INTERNAL;
        }
        if (!cli_output_gone)
                return code;
        /* Seen by the caller as a tool SIGPIPE killed (docs/cli.md "Exit
         * codes"): the signal itself, unless the caller ignored it (it
         * asked not to die of it), then its shell's number for it. */
        if (!sigpipe_ignored) {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGPIPE);
                (void) signal(SIGPIPE, SIG_DFL);
                (void) sigprocmask(SIG_UNBLOCK, &set, NULL);
                (void) raise(SIGPIPE);
        }
        return 128 + SIGPIPE;
}
