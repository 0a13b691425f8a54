/* How a run looks in a terminal and in a pipe.
 *
 * In a pipe, the function's stdout and stderr pass through byte for byte
 * as they arrive, and the result follows on stdout: scripts see what the
 * function printed. On a TTY, each line gets a timestamp and a stream
 * marker (coloured unless NO_COLOR), and the result is pretty-printed. */
#include <jansson.h>
#include <time.h>

#include "cli.h"

#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_YELLOW "\033[33m"
#define C_BOLD "\033[1m"
#define C_RESET "\033[0m"

void renderer_init(Renderer *r, bool json_output) {
        *r = (Renderer) { .json = json_output };
        r->tty_out = isatty(STDOUT_FILENO);
        r->tty_err = isatty(STDERR_FILENO);
        const char *nc = getenv("NO_COLOR");
        const char *term = getenv("TERM");
        r->color = r->tty_out && !(nc && *nc) && !(term && streq(term, "dumb"));
        for (int i = 0; i < 3; i++)
                buf_init(&r->partial[i], 64 * 1024);
}

static void print_line(Renderer *r, int stream, const char *line, size_t len, usec_t ts) {
        time_t sec = (time_t) (ts / USEC_PER_SEC);
        struct tm tm;
        localtime_r(&sec, &tm);
        char stamp[32];
        size_t n = strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof(stamp) - n, ".%03u", (unsigned) ((ts % USEC_PER_SEC) / 1000));
        /* Both streams go to our stdout on a TTY so their order is kept. */
        if (r->color)
                printf(C_DIM "%s" C_RESET " %s%s" C_RESET " %s%.*s%s\n", stamp, stream == 2 ? C_RED : C_DIM,
                       stream == 2 ? "err" : "out", stream == 2 ? C_RED : "", (int) len, line,
                       stream == 2 ? C_RESET : "");
        else
                printf("%s %s | %.*s\n", stamp, stream == 2 ? "err" : "out", (int) len, line);
}

static void flush_partial(Renderer *r, int stream, usec_t ts) {
        Buf *b = &r->partial[stream];
        if (b->len > 0) {
                print_line(r, stream, b->data, b->len, ts);
                buf_reset(b);
        }
}

static void render_output(Renderer *r, const RunEvent *ev) {
        int s = ev->stream == 2 ? 2 : 1;
        if (!r->tty_out) {
                FILE *f = s == 2 ? stderr : stdout;
                fwrite(ev->data, 1, ev->len, f);
                fflush(f);
                return;
        }
        const char *p = ev->data, *end = ev->data + ev->len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl) {
                        if (buf_append(&r->partial[s], p, (size_t) (end - p)) < 0) {
                                flush_partial(r, s, ev->timestamp);
                                (void) buf_append(&r->partial[s], p, MIN((size_t) (end - p), (size_t) 65535));
                        }
                        break;
                }
                if (r->partial[s].len > 0) {
                        (void) buf_append(&r->partial[s], p, (size_t) (nl - p));
                        flush_partial(r, s, ev->timestamp);
                } else
                        print_line(r, s, p, (size_t) (nl - p), ev->timestamp);
                p = nl + 1;
        }
        fflush(stdout);
}

void renderer_event(const RunEvent *ev, void *userdata) {
        Renderer *r = userdata;
        switch (ev->type) {
        case RUN_EVENT_OUTPUT:
                render_output(r, ev);
                break;
        case RUN_EVENT_WARNING:
                fprintf(stderr, "%spysprinter: warning: %s%s\n", r->tty_err && r->color ? C_YELLOW : "",
                        ev->message, r->tty_err && r->color ? C_RESET : "");
                break;
        case RUN_EVENT_PROGRESS:
                if (r->tty_err && ev->message) {
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
                if (r->status_line && streq(ev->phase, "run")) {
                        r->status_line = false;
                        fputs("\r\033[K", stderr);
                        fflush(stderr);
                }
                break;
        default:
                break;
        }
}

void renderer_done(Renderer *r) {
        for (int i = 1; i < 3; i++) {
                if (r->tty_out)
                        flush_partial(r, i, now_realtime());
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

static void print_value(Renderer *r, const RunResult *res) {
        if (!res->value_json) {
                if (res->value_repr) {
                        if (r->json) {
                                json_t *s = json_string(res->value_repr);
                                _cleanup_free_ char *t = json_dumps(s, JSON_ENCODE_ANY);
                                json_decref(s);
                                puts(t ? t : "null");
                        } else
                                puts(res->value_repr);
                }
                return;
        }
        if (r->json) {
                puts(res->value_json);
                return;
        }
        cli_print_value_text(res->value_json, r->tty_out);
}

void cli_print_value_text(const char *json_text, bool tty) {
        /* A string result prints as itself (the seed's contract: `5`, not
         * `"5"`); anything else as JSON. */
        if (json_text[0] == '"') {
                json_t *v = json_loads(json_text, JSON_DECODE_ANY, NULL);
                if (json_is_string(v)) {
                        fwrite(json_string_value(v), 1, json_string_length(v), stdout);
                        fputc('\n', stdout);
                        json_decref(v);
                        return;
                }
                json_decref(v);
        }
        _cleanup_free_ char *t = json_reformat(json_text, tty ? 2 : 0);
        puts(t);
}

int renderer_result(Renderer *r, const RunResult *res) {
        bool c = r->tty_err && r->color;
        fflush(stdout);
        switch (res->status) {
        case RUN_SUCCEEDED:
                print_value(r, res);
                break;
        case RUN_FAILED:
                if (res->traceback && *res->traceback)
                        fputs(res->traceback, stderr);
                else
                        fprintf(stderr, "%s%s%s\n", c ? C_RED : "", res->error_message ?: "the function failed",
                                c ? C_RESET : "");
                break;
        case RUN_INVALID:
                /* file:line:col first, like a compiler, so editors can jump. */
                fprintf(stderr, "%s%s%s\n", c ? C_RED : "", res->error_message ?: "invalid", c ? C_RESET : "");
                break;
        default:
                fprintf(stderr, "%spysprinter: %s%s\n", c ? C_RED : "", res->error_message ?: run_status_to_string(res->status),
                        c ? C_RESET : "");
                break;
        }
        if (res->output_truncated)
                fprintf(stderr, "pysprinter: output was truncated at the output limit\n");
        fflush(stdout);
        fflush(stderr);
        return res->exit_code;
}
