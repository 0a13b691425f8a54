/* `dag`, `chain` and `data` against a pysprinterd (docs/api.md "DAG runs",
 * "Datasets"): the same words, output and exit codes as the embedded verbs
 * (cli-dag.c, cli-data.c).
 *
 * A pipeline is parsed here first with dag_parse() (which reads the task
 * files and checks references and cycles but runs nothing), so a broken
 * pipeline fails the same way, and the task files it names are what is
 * uploaded. The DAG run is then polled: each task's state change is one
 * line on stderr, as the embedded verb prints in a pipe.
 *
 * Results are copied from the server's answer as JSON text (a scanner
 * below finds a member's bytes): decoding and encoding again would
 * respell numbers. */
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>

#include "cli-backend.h"
#include "dag.h"

#define POLL_USEC (250 * USEC_PER_MSEC)
#define MAX_RESPONSE_BYTES (512U << 20)

typedef Http Remote;

/* The failure of the last request, for raw_error(). */
static char *last_error;
static int last_errno;

/* ---- raw requests -------------------------------------------------------- */

typedef struct Request {
        const char *method;
        const char *path;           /* from the base URL on */
        const char *content_type;   /* of body/upload */
        const char *body;           /* sent when set (body_len bytes) */
        size_t body_len;
        FILE *upload;               /* or this file, upload_size bytes */
        int64_t upload_size;
        FILE *download;             /* a 200 answer's body goes here */
        Buf *headers;               /* the answer's header lines, when set */
} Request;

/* One request through the CLI's HTTP client; the answer's body (unless it
 * went to q->download) is in *body (caller frees). Returns the HTTP status
 * (2xx), -130 on Ctrl-C, or -1 with last_error/last_errno set. */
static long remote_request(const Remote *rm, const Request *q, Buf *body) {
        HttpRequest h = { .method = q->method, .path = q->path, .content_type = q->content_type, .body = q->body,
                          .body_len = q->body_len, .upload = q->upload, .upload_size = q->upload_size,
                          .download = q->download, .headers = q->headers };
        long status = 0;
        free(last_error);
        last_error = NULL;
        last_errno = http_request(rm, &h, &status, body, &last_error);
        if (last_errno == -EINTR)
                return -130;
        return last_errno < 0 ? -1 : status;
}

static long cli_remote_http_json(const Remote *rm, const char *method, const char *path, const char *body, json_t **ret) {
        Buf b;
        long st = remote_request(rm,
                                 &(Request) { .method = method, .path = path, .content_type = body ? "application/json" : NULL,
                                              .body = body, .body_len = body ? strlen(body) : 0 },
                                 &b);
        *ret = b.len ? json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL) : NULL;
        buf_free(&b);
        return st;
}

static int cli_remote_http_error(long status, json_t *body, const char *what) {
        if (status == -130)
                return EXIT_INTERRUPTED;
        cli_error("%s: %s", what, last_error ?: "the request failed");
        return cli_exit_code(last_errno);
}

/* Reports a failed raw request (its body may be a JSON error). */
static int open_remote(const char *server, Remote *rm) {
        _cleanup_free_ char *err = NULL;
        int r = http_open(server, rm, &err);
        if (r < 0)
                cli_error("%s", err);
        return cli_exit_code(r);
}

static int raw_error(long status, const Buf *body, const char *what) {
        return cli_remote_http_error(status, NULL, what);
}

static char *escape(const char *s) {
        return http_escape(s);
}

/* ---- JSON text spans --------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* The end of the JSON value at p (well-formed input: the server's). */
static const char *skip_value(const char *p, const char *end) {
        int depth = 0;
        bool in_str = false;
        for (; p < end; p++) {
                if (in_str) {
                        if (*p == '\\')
                                p++;
                        else if (*p == '"') {
                                in_str = false;
                                if (depth == 0)
                                        return p + 1;
                        }
                        continue;
                }
                switch (*p) {
                case '"':
                        in_str = true;
                        break;
                case '{':
                case '[':
                        depth++;
                        break;
                case '}':
                case ']':
                        if (depth == 0)
                                return p;
                        if (--depth == 0)
                                return p + 1;
                        break;
                case ',':
                case ' ':
                case '\t':
                case '\r':
                case '\n':
                        if (depth == 0)
                                return p;
                        break;
                default:
                        break;
                }
        }
        return end;
}

typedef struct Span {
        const char *p;
        size_t n;
} Span;

/* The text of member key of the object text o (no escapes in key). */
static bool span_member(Span o, const char *key, Span *ret) {
        const char *p = skip_ws(o.p, o.p + o.n), *end = o.p + o.n;
        size_t k = strlen(key);
        if (p >= end || *p != '{')
                return false;
        p++;
        for (;;) {
                p = skip_ws(p, end);
                if (p >= end || *p != '"')
                        return false;
                const char *kend = skip_value(p, end);
                bool match = (size_t) (kend - p) == k + 2 && memcmp(p + 1, key, k) == 0;
                p = skip_ws(kend, end);
                if (p >= end || *p != ':')
                        return false;
                p = skip_ws(p + 1, end);
                const char *vend = skip_value(p, end);
                if (match) {
                        *ret = (Span) { p, (size_t) (vend - p) };
                        return true;
                }
                p = skip_ws(vend, end);
                if (p >= end || *p != ',')
                        return false;
                p++;
        }
}

/* The i-th element of the array text a. */
static bool span_index(Span a, size_t i, Span *ret) {
        const char *p = skip_ws(a.p, a.p + a.n), *end = a.p + a.n;
        if (p >= end || *p != '[')
                return false;
        p = skip_ws(p + 1, end);
        for (size_t k = 0; p < end && *p != ']'; k++) {
                const char *vend = skip_value(p, end);
                if (k == i) {
                        *ret = (Span) { p, (size_t) (vend - p) };
                        return true;
                }
                p = skip_ws(vend, end);
                if (p < end && *p == ',')
                        p = skip_ws(p + 1, end);
        }
        return false;
}

/* ---- dag run ------------------------------------------------------------------ */

#define fmt_dur format_duration_us

static const char *jstr(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}

static usec_t jusec(json_t *o, const char *k) {
        json_int_t v = json_integer_value(json_object_get(o, k));
        return v > 0 ? (usec_t) v : 0;
}

/* The same rule as dag_exit_code(): cancelled 130, else the first failed
 * task's code, else 1 when anything did not succeed. */
static int remote_dag_exit_code(json_t *dag) {
        json_t *t, *first = NULL;
        size_t i;
        bool cancelled = streq(jstr(dag, "status") ?: "", "cancelled"), unfinished = false;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                const char *st = jstr(t, "state") ?: "pending";
                if (streq(st, "cancelled"))
                        cancelled = true;
                if (streq(st, "failed") && (!first || jusec(t, "finished_us") < jusec(first, "finished_us")))
                        first = t;
                if (!streq(st, "succeeded") && !streq(st, "cached"))
                        unfinished = true;
        }
        if (cancelled)
                return 130;
        if (first) {
                json_int_t c = json_integer_value(json_object_get(first, "exit_code"));
                return c > 0 ? (int) c : EXIT_RAISED;
        }
        return unfinished ? EXIT_RAISED : 0;
}

/* A relative path that stays inside its directory (the daemon's rule):
 * no leading '/', no empty, "." or ".." component. */
static bool path_inside(const char *p) {
        if (!p || !*p || *p == '/')
                return false;
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
                s += n;
                if (*s == '/')
                        s++;
        }
        return !endswith(p, "/");
}

/* Adds each task's file (read from base) to files, refusing any outside
 * base: the daemon gets the pipeline's directory, nothing else. */
static int collect_files(Dag *d, const char *base, json_t *files, char **ret_error) {
        _cleanup_free_ char *real_base = realpath(base, NULL);
        if (!real_base) {
                *ret_error = xasprintf("cannot resolve %s: %s", base, strerror(errno));
                return -errno;
        }
        for (size_t i = 0; i < dag_n_tasks(d); i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                if (json_object_get(files, ti.file))
                        continue;
                if (!path_inside(ti.file)) {
                        *ret_error = xasprintf("task '%s': file '%s' is not a plain relative path inside the "
                                               "pipeline's directory (no leading '/', no '.' or '..'); a server only "
                                               "gets the files under it",
                                               ti.name, ti.file);
                        return -EINVAL;
                }
                _cleanup_free_ char *path = path_join(base, ti.file);
                _cleanup_free_ char *real = realpath(path, NULL);
                size_t nb = strlen(real_base);
                if (!real || !strneq(real, real_base, nb) || real[nb] != '/') {
                        *ret_error = xasprintf("task '%s': file '%s' resolves outside the pipeline's directory %s",
                                               ti.name, ti.file, real_base);
                        return -EINVAL;
                }
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                int r = read_file(path, RUN_MAX_SOURCE_BYTES, &text, &len);
                if (r < 0) {
                        *ret_error = xasprintf("task '%s': cannot read %s: %s", ti.name, path, strerror(-r));
                        return r;
                }
                json_object_set_new(files, ti.file, json_stringn(text, len));
        }
        return 0;
}

/* One line per task state change (the embedded verb's output in a pipe). */
static void report_changes(json_t *dag, json_t *seen) {
        json_t *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                const char *name = jstr(t, "name"), *st = jstr(t, "state") ?: "pending";
                if (!name || streq(st, "pending"))
                        continue;
                const char *prev = jstr(seen, name);
                if (prev && streq(prev, st))
                        continue;
                json_object_set_new(seen, name, json_string(st));
                char d32[32] = "", dur[40] = "";
                usec_t s = jusec(t, "started_us"), f = jusec(t, "finished_us");
                if (f && s && f >= s && !streq(st, "cached") && !streq(st, "running")) {
                        fmt_dur(f - s, d32);
                        snprintf(dur, sizeof(dur), " %s", d32);
                }
                const char *err = jstr(t, "error");
                bool show_err = err && !streq(st, "succeeded");
                fprintf(stderr, "%s: %s%s%s%s\n", name, st, dur, show_err ? ": " : "", show_err ? err : "");
        }
        fflush(stderr);
}

static void print_summary(json_t *dag, usec_t t0, int code) {
        static const char *const order[] = { "succeeded", "cached", "failed", "skipped", "cancelled" };
        json_t *counts = json_object_get(dag, "counts");
        size_t n = json_array_size(json_object_get(dag, "tasks"));
        Buf b;
        char dur[32];
        buf_init(&b, 4096);
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                json_int_t c = json_integer_value(json_object_get(counts, order[k]));
                if (c)
                        buf_printf(&b, ", %lld %s", (long long) c, order[k]);
        }
        fmt_dur(now_realtime() - t0, dur);
        const char *id = jstr(dag, "id") ?: "-";
        fprintf(stderr, "%s: %zu task%s%s in %s (dag %s)\n", jstr(dag, "status") ?: "?", n, n == 1 ? "" : "s",
                b.data ?: "", dur, id);
        buf_free(&b);
        json_t *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t)
                if (streq(jstr(t, "state") ?: "", "failed"))
                        fprintf(stderr, "  %s failed (exit %lld): %s\n    output: pysprinter dag logs %s %s\n",
                                jstr(t, "name") ?: "?", (long long) json_integer_value(json_object_get(t, "exit_code")),
                                jstr(t, "error") ?: "?", id, jstr(t, "name") ?: "?");
        (void) code;
}

/* The leaves' results as the embedded verb prints them, from the answer's
 * text (raw) so each result is printed as the server stored it. */
static void print_leaf_results(Dag *local, const char *raw, size_t raw_len) {
        Span tasks, el;
        Buf b;
        size_t n_leaves = 0;
        _cleanup_free_ char *only = NULL;
        if (!span_member((Span) { raw, raw_len }, "tasks", &tasks))
                return;
        buf_init(&b, SIZE_MAX / 4);
        for (size_t i = 0; i < dag_n_tasks(local); i++) {
                DagTaskInfo ti;
                dag_task_info(local, i, &ti);
                if (ti.n_dependents != 0)
                        continue;
                _cleanup_free_ char *value = xstrdup("null");
                for (size_t k = 0; span_index(tasks, k, &el); k++) {
                        Span name, res;
                        if (!span_member(el, "name", &name))
                                continue;
                        json_t *nj = json_loadb(name.p, name.n, JSON_DECODE_ANY, NULL);
                        bool match = json_is_string(nj) && streq(json_string_value(nj), ti.name);
                        json_decref(nj);
                        if (match && span_member(el, "result", &res)) {
                                free(value);
                                value = xstrndup(res.p, res.n);
                                break;
                        }
                }
                json_t *name = json_string(ti.name);
                _cleanup_free_ char *qn = json_dumps(name, JSON_ENCODE_ANY);
                json_decref(name);
                buf_printf(&b, "%s%s: %s", n_leaves ? ", " : "{", qn, value);
                free(only);
                only = TAKE_PTR(value);
                n_leaves++;
        }
        buf_appends(&b, "}");
        cli_print_value_text(n_leaves == 1 ? only : b.data, isatty(STDOUT_FILENO));
        buf_free(&b);
}

/* --json: the embedded shape ({id, name, status, exit_code, tasks: {name:
 * {…}}}), with each task's file and depends from the local parse. */
static void print_json(Dag *local, json_t *dag, int code) {
        json_t *tasks = json_object(), *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                const char *name = jstr(t, "name");
                if (!name)
                        continue;
                json_t *o = json_deep_copy(t);
                json_object_del(o, "name");
                for (size_t k = 0; k < dag_n_tasks(local); k++) {
                        DagTaskInfo ti;
                        dag_task_info(local, k, &ti);
                        if (!streq(ti.name, name))
                                continue;
                        json_object_set_new(o, "file", json_string(ti.file));
                        json_t *deps = json_array();
                        for (size_t j = 0; j < ti.n_deps; j++) {
                                DagTaskInfo di;
                                dag_task_info(local, ti.deps[j], &di);
                                json_array_append_new(deps, json_string(di.name));
                        }
                        json_object_set_new(o, "depends", deps);
                }
                json_object_set_new(tasks, name, o);
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:o}", "id", jstr(dag, "id") ?: "", "name", jstr(dag, "name") ?: "",
                              "status", jstr(dag, "status") ?: "?", "exit_code", code, "tasks", tasks);
        _cleanup_free_ char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        puts(txt);
}

static bool dag_final(const char *st) {
        return st && (streq(st, "succeeded") || streq(st, "failed") || streq(st, "cancelled") || streq(st, "invalid"));
}

int cli_remote_dag_run(const char *server, const char *file, char *const *params, unsigned concurrency, bool keep_going,
                       bool no_cache, bool json) {
        _cleanup_free_ char *text = NULL, *err = NULL, *base = NULL, *body = NULL, *id = NULL, *path = NULL;
        size_t len = 0;
        Dag *local = NULL;
        json_t *req = NULL, *dag = NULL, *seen = json_object();
        Buf raw = {};
        Remote rm = {};
        usec_t t0 = now_realtime();
        int code, r;

        code = open_remote(server, &rm);
        if (code)
                goto out;
        r = read_file(file, DAG_MAX_FILE_BYTES, &text, &len);
        if (r < 0) {
                fprintf(stderr, "pysprinter: cannot read %s: %s\n", file,
                        r == -EFBIG ? "larger than the 1 MiB pipeline limit" : strerror(-r));
                code = r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
                goto out;
        }
        const char *slash = strrchr(file, '/');
        base = slash ? xstrndup(file, (size_t) (slash - file) + 1) : xstrdup(".");
        /* Parsing reads the task files and checks the structure; nothing
         * runs. The same messages (FILE:LINE) as the embedded verb. */
        r = dag_parse(text, len, file, base, params, &local, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err ?: strerror(-r));
                code = r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
                goto out;
        }
        json_t *files = json_object(), *pj = json_object();
        req = json_pack("{s:s%, s:s, s:o, s:o, s:b, s:b}", "pipeline", text, len, "filename", slash ? slash + 1 : file,
                        "files", files, "params", pj, "keep_going", keep_going, "no_cache", no_cache);
        if (concurrency)
                json_object_set_new(req, "concurrency", json_integer(concurrency));
        for (char *const *p = params; p && *p; p++) {
                const char *eq = strchr(*p, '=');
                _cleanup_free_ char *k = eq ? xstrndup(*p, (size_t) (eq - *p)) : xstrdup(*p);
                /* The server reads a string like a YAML plain scalar, as
                 * dag_parse() read it here. */
                json_object_set_new(pj, k, json_string(eq ? eq + 1 : ""));
        }
        free(err);
        err = NULL;
        r = collect_files(local, base, files, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err ?: strerror(-r));
                code = r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
                goto out;
        }
        body = json_dumps(req, JSON_COMPACT);

        cli_interrupted = 0;
        cli_catch_interrupt();
        long st = cli_remote_http_json(&rm, "POST", "/v1/dags", body, &dag);
        if (st != 202 && st != 200) {
                if (st == 400 && jstr(json_object_get(dag, "error"), "message")) {
                        /* The pipeline refused by the server (exit 3, as
                         * the embedded parse would). */
                        fprintf(stderr, "pysprinter: %s\n", jstr(json_object_get(dag, "error"), "message"));
                        code = EXIT_VALIDATION;
                } else
                        code = cli_remote_http_error(st, dag, "the server refused the DAG run");
                goto out;
        }
        id = xstrdup(jstr(dag, "id") ?: "");
        path = xasprintf("/v1/dags/%s", id);
        fprintf(stderr, "dag %s (%s)\n", id, jstr(dag, "name") ?: dag_name(local));
        report_changes(dag, seen);
        int failures = 0;
        /* Short pipelines end in milliseconds: poll fast at first. */
        usec_t wait = 20 * USEC_PER_MSEC;
        while (!dag_final(jstr(dag, "status"))) {
                if (cli_interrupted == 1) {
                        fprintf(stderr, "\npysprinter: cancelling DAG run %s on the server\n", id);
                        cli_interrupted = 2;
                        json_t *b = NULL;
                        st = cli_remote_http_json(&rm, "DELETE", path, NULL, &b);
                        json_decref(b);
                        /* 200 with the final state, or 409 when it had just
                         * ended: either way the next GET has it. */
                }
                usleep(wait);
                wait = MIN(wait * 2, POLL_USEC);
                buf_free(&raw);
                st = remote_request(&rm, &(Request) { .method = "GET", .path = path }, &raw);
                if (st == -130)
                        continue;
                if (st != 200) {
                        /* A daemon restart resumes the run: wait a little. */
                        if (st == -EXIT_SERVER && ++failures < 20) {
                                sleep(1);
                                continue;
                        }
                        code = raw_error(st, &raw, "dag");
                        goto out;
                }
                failures = 0;
                json_t *j = json_loadb(raw.data, raw.len, 0, NULL);
                if (!j)
                        continue;
                json_decref(dag);
                dag = j;
                report_changes(dag, seen);
        }
        /* The final answer's text, for results byte for byte. */
        if (!raw.data) {
                st = remote_request(&rm, &(Request) { .method = "GET", .path = path }, &raw);
                if (st != 200) {
                        code = raw_error(st, &raw, "dag");
                        goto out;
                }
        }
        if (streq(jstr(dag, "status"), "invalid")) {
                fprintf(stderr, "pysprinter: %s\n", jstr(dag, "error") ?: "the pipeline is invalid");
                code = EXIT_VALIDATION;
                goto out;
        }
        code = remote_dag_exit_code(dag);
        print_summary(dag, t0, code);
        if (json)
                print_json(local, dag, code);
        else if (code == 0)
                print_leaf_results(local, raw.data, raw.len);
out:
        buf_free(&raw);
        json_decref(req);
        json_decref(dag);
        json_decref(seen);
        dag_free(local);
        http_close(&rm);
        return code;
}

/* ---- dag status / logs / ls ---------------------------------------------------- */

static int remote_dag_status(const Remote *rm, int argc, char **argv) {
        const char *id = NULL;
        bool json = false;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (!id && argv[i][0] != '-')
                        id = argv[i];
                else {
                        fprintf(stderr, "pysprinter: usage: dag status ID [--json]\n");
                        return EXIT_USAGE;
                }
        }
        if (!id) {
                fprintf(stderr, "pysprinter: usage: dag status ID [--json]\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *eid = escape(id);
        _cleanup_free_ char *path = xasprintf("/v1/dags/%s", eid);
        json_t *b = NULL;
        long st = cli_remote_http_json(rm, "GET", path, NULL, &b);
        if (st != 200) {
                int code = cli_remote_http_error(st, b, "dag status");
                json_decref(b);
                return code;
        }
        const char *status = jstr(b, "status") ?: "?";
        if (json) {
                _cleanup_free_ char *t = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
                puts(t);
        } else {
                printf("dag %s (%s): %s\n", jstr(b, "id") ?: id, jstr(b, "name") ?: "-", status);
                if (jstr(b, "error"))
                        printf("error: %s\n", jstr(b, "error"));
                printf("%-24s %-10s %9s %8s  %s\n", "TASK", "STATE", "DURATION", "ATTEMPTS", "RUN");
                json_t *t;
                size_t i;
                json_array_foreach(json_object_get(b, "tasks"), i, t) {
                        char dur[32] = "-";
                        usec_t s = jusec(t, "started_us"), f = jusec(t, "finished_us");
                        if (s && f && f >= s)
                                fmt_dur(f - s, dur);
                        const char *state = jstr(t, "state") ?: "pending";
                        printf("%-24s %-10s %9s %8lld  %s", jstr(t, "name") ?: "?", state, dur,
                               (long long) json_integer_value(json_object_get(t, "attempts")), jstr(t, "run_id") ?: "-");
                        if (jstr(t, "error") && !streq(state, "succeeded"))
                                printf("  %s", jstr(t, "error"));
                        putchar('\n');
                }
        }
        int code = streq(status, "succeeded") || streq(status, "running") || streq(status, "validating") ? 0 : 1;
        json_decref(b);
        return code;
}

static int remote_dag_logs(const Remote *rm, int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "pysprinter: usage: dag logs ID TASK\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *eid = escape(argv[0]), *etask = escape(argv[1]);
        _cleanup_free_ char *path = xasprintf("/v1/dags/%s/tasks/%s/logs", eid, etask);
        Buf body, hdrs;
        buf_init(&hdrs, 64 * 1024);
        long st = remote_request(rm, &(Request) { .method = "GET", .path = path, .headers = &hdrs }, &body);
        int code = 0;
        if (st != 200) {
                /* 409: the task has not run; its message says so. */
                code = raw_error(st, &body, "dag logs");
        } else {
                if (hdrs.data && strcasestr(hdrs.data, "X-Pysprinter-Cached: true"))
                        fprintf(stderr, "pysprinter: %s was a memo hit; this is the output of the original run\n",
                                argv[1]);
                if (body.len)
                        fwrite(body.data, 1, body.len, stdout);
                fflush(stdout);
        }
        buf_free(&body);
        buf_free(&hdrs);
        return code;
}

static int remote_dag_ls(const Remote *rm, int argc, char **argv) {
        bool json;
        long limit;
        int k = cli_parse_list_args(argc, argv, "dag ls", 10000, &json, &limit);
        if (k < 0) {
                printf("Usage: pysprinter dag ls [--json] [-n N]\n");
                return 0;
        }
        if (k)
                return k;
        _cleanup_free_ char *path = xasprintf("/v1/dags?limit=%ld", limit);
        json_t *b = NULL;
        long st = cli_remote_http_json(rm, "GET", path, NULL, &b);
        int code = 0;
        if (st != 200)
                code = cli_remote_http_error(st, b, "dag ls");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(json_object_get(b, "dags"), JSON_COMPACT | JSON_PRESERVE_ORDER);
                puts(t);
        } else {
                json_t *v = json_object_get(b, "dags"), *g;
                size_t i;
                if (json_array_size(v))
                        printf("%-18s %-10s %-19s %9s  %s\n", "ID", "STATUS", "CREATED", "DURATION", "NAME");
                json_array_foreach(v, i, g) {
                        char created[20] = "-", dur[32] = "-";
                        const char *c = jstr(g, "created_at");
                        if (c) {
                                /* ISO 8601 UTC: "YYYY-MM-DD HH:MM:SS". */
                                snprintf(created, sizeof(created), "%.19s", c);
                                if (strlen(created) > 10 && created[10] == 'T')
                                        created[10] = ' ';
                        }
                        json_t *ms = json_object_get(g, "duration_ms");
                        if (json_is_number(ms))
                                fmt_dur((usec_t) (json_number_value(ms) * 1000.0), dur);
                        printf("%-18s %-10s %-19s %9s  %s\n", jstr(g, "id") ?: "?", jstr(g, "status") ?: "?", created, dur,
                               jstr(g, "name") ?: "-");
                }
        }
        json_decref(b);
        return code;
}

int cli_remote_dag(const char *server, const char *sub, int argc, char **argv) {
        if (streq(sub, "resume")) {
                fprintf(stderr, "pysprinter: dag resume is not available with a server: the daemon resumes the DAG runs "
                                "a restart interrupted by itself; submit the pipeline again with `dag run`\n");
                return EXIT_USAGE;
        }
        Remote rm;
        int code = open_remote(server, &rm);
        if (code)
                return code;
        if (streq(sub, "status"))
                code = remote_dag_status(&rm, argc, argv);
        else if (streq(sub, "logs"))
                code = remote_dag_logs(&rm, argc, argv);
        else if (streq(sub, "ls") || streq(sub, "list"))
                code = remote_dag_ls(&rm, argc, argv);
        else {
                fprintf(stderr, "pysprinter: dag: unknown command '%s' (run, resume, status, logs, ls)\n", sub);
                code = EXIT_USAGE;
        }
        http_close(&rm);
        return code;
}

/* ---- data ------------------------------------------------------------------------ */

#define human_size format_size

static json_int_t jint(json_t *o, const char *k) {
        return json_integer_value(json_object_get(o, k));
}

/* NAME[@VERSION] -> the API path's name (escaped) and "?version=N" (or ""). */
static int split_ref(const char *ref, char **ret_name, char **ret_query) {
        const char *at = strrchr(ref, '@');
        _cleanup_free_ char *name = at ? xstrndup(ref, (size_t) (at - ref)) : xstrdup(ref);
        long v = 0;
        if (at) {
                char *end;
                v = strtol(at + 1, &end, 10);
                if (*end || end == at + 1 || v < 1) {
                        fprintf(stderr, "pysprinter: '%s': the part after '@' must be a version number\n", ref);
                        return -EINVAL;
                }
        }
        if (!*name) {
                fprintf(stderr, "pysprinter: '%s' names no dataset\n", ref);
                return -EINVAL;
        }
        *ret_name = escape(name);
        *ret_query = v ? xasprintf("?version=%ld", v) : xstrdup("");
        return 0;
}

static int remote_data_put(const Remote *rm, int argc, char **argv, bool json) {
        if (argc != 2) {
                fprintf(stderr, "pysprinter: usage: data put NAME PATH|URL\n");
                return EXIT_USAGE;
        }
        const char *src = argv[1];
        _cleanup_free_ char *name = escape(argv[0]), *path = NULL, *body_json = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        Request q = { .method = "PUT" };
        Buf raw;
        if (startswith(src, "http://") || startswith(src, "https://")) {
                /* The daemon fetches, caches and revalidates the URL. */
                json_t *o = json_pack("{s:s}", "url", src);
                body_json = json_dumps(o, JSON_COMPACT);
                json_decref(o);
                path = xasprintf("/v1/data/%s", name);
                q.content_type = "application/json";
                q.body = body_json;
                q.body_len = strlen(body_json);
        } else {
                struct stat st;
                if (stat(src, &st) < 0) {
                        fprintf(stderr, "pysprinter: data put: cannot read %s: %s\n", src, strerror(errno));
                        return EXIT_USAGE;
                }
                if (S_ISDIR(st.st_mode)) {
                        fprintf(stderr, "pysprinter: data put: %s is a directory; a server takes single-file datasets "
                                        "(upload an archive of it, or put it without --server)\n",
                                src);
                        return EXIT_USAGE;
                }
                f = fopen(src, "rbe");
                if (!f || fstat(fileno(f), &st) < 0) {
                        fprintf(stderr, "pysprinter: data put: cannot read %s: %s\n", src, strerror(errno));
                        return EXIT_USAGE;
                }
                const char *slash = strrchr(src, '/');
                _cleanup_free_ char *fname = escape(slash ? slash + 1 : src);
                path = xasprintf("/v1/data/%s?filename=%s", name, fname);
                q.content_type = "application/octet-stream";
                q.upload = f;
                q.upload_size = (int64_t) st.st_size;
        }
        q.path = path;
        long st = remote_request(rm, &q, &raw);
        int code = 0;
        json_t *i = raw.len ? json_loadb(raw.data, raw.len, 0, NULL) : NULL;
        if (st != 200 && st != 201)
                code = raw_error(st, &raw, "data put");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(i, JSON_COMPACT | JSON_PRESERVE_ORDER);
                puts(t);
        } else {
                char sz[32];
                json_int_t files = jint(i, "files");
                human_size((uint64_t) jint(i, "size"), sz);
                printf("%s: version %lld%s (%s, %lld file%s, sha256 %.12s)\n", jstr(i, "name") ?: argv[0],
                       (long long) jint(i, "version"), json_is_true(json_object_get(i, "new_version")) ? "" : " (unchanged content)",
                       sz, (long long) files, files == 1 ? "" : "s", jstr(i, "hash") ?: "");
        }
        json_decref(i);
        buf_free(&raw);
        return code;
}

static int remote_data_ls(const Remote *rm, int argc, char **argv, bool json) {
        char sz[32];
        if (argc > 1) {
                fprintf(stderr, "pysprinter: usage: data ls [NAME] [--json]\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *name = argc == 1 ? escape(argv[0]) : NULL;
        _cleanup_free_ char *path = name ? xasprintf("/v1/data/%s", name) : xstrdup("/v1/data");
        json_t *b = NULL, *v;
        size_t k;
        long st = cli_remote_http_json(rm, "GET", path, NULL, &b);
        if (st != 200) {
                int code = cli_remote_http_error(st, b, "data ls");
                json_decref(b);
                return code;
        }
        if (jstr(b, "warning"))
                fprintf(stderr, "pysprinter: warning: %s\n", jstr(b, "warning"));
        if (name) {
                json_int_t current = jint(b, "current_version");
                json_t *arr = json_array();
                if (!json)
                        printf("%-8s %-14s %8s %7s  %s\n", "VERSION", "SHA256", "SIZE", "FILES", "CREATED");
                json_array_foreach(json_object_get(b, "versions"), k, v) {
                        bool cur = jint(v, "version") == current;
                        if (json) {
                                json_t *o = json_deep_copy(v);
                                json_object_set_new(o, "current", json_boolean(cur));
                                json_array_append_new(arr, o);
                        } else {
                                human_size((uint64_t) jint(v, "size"), sz);
                                printf("%-8lld %-14.12s %8s %7lld  %s%s\n", (long long) jint(v, "version"),
                                       jstr(v, "hash") ?: "", sz, (long long) jint(v, "files"),
                                       jstr(v, "created_at") ?: "-", cur ? "  (current)" : "");
                        }
                }
                if (json) {
                        _cleanup_free_ char *t = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        puts(t);
                }
                json_decref(arr);
        } else {
                json_t *list = json_object_get(b, "datasets");
                if (json) {
                        _cleanup_free_ char *t = json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        puts(t);
                } else if (json_array_size(list) == 0)
                        fprintf(stderr, "no datasets (add one with: pysprinter data put NAME PATH|URL)\n");
                else {
                        printf("%-20s %7s %8s %8s %7s  %-5s %s\n", "NAME", "VERSION", "VERSIONS", "SIZE", "FILES", "KIND",
                               "SOURCE");
                        json_array_foreach(list, k, v) {
                                human_size((uint64_t) jint(v, "size"), sz);
                                printf("%-20s %7lld %8lld %8s %7lld  %-5s %s\n", jstr(v, "name") ?: "?",
                                       (long long) jint(v, "version"), (long long) jint(v, "versions"), sz,
                                       (long long) jint(v, "files"), jstr(v, "kind") ?: "file", jstr(v, "source") ?: "-");
                        }
                }
        }
        json_decref(b);
        return 0;
}

static int remote_data_get(const Remote *rm, int argc, char **argv) {
        const char *ref = NULL, *out = NULL;
        for (int i = 0; i < argc; i++) {
                if ((streq(argv[i], "-o") || streq(argv[i], "--output")) && i + 1 < argc)
                        out = argv[++i];
                else if (!ref && argv[i][0] != '-')
                        ref = argv[i];
                else
                        ref = NULL, argc = -1;
        }
        if (!ref || argc < 0) {
                fprintf(stderr, "pysprinter: usage: data get NAME[@VERSION] [-o PATH]\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *name = NULL, *query = NULL, *tmp = NULL;
        if (split_ref(ref, &name, &query) < 0)
                return EXIT_USAGE;
        _cleanup_free_ char *path = xasprintf("/v1/data/%s/content%s", name, query);
        FILE *f = stdout;
        int fd = -EBADF;
        if (out) {
                /* A temporary file beside PATH, renamed over it once whole. */
                tmp = xasprintf("%s.pysprinter-XXXXXX", out);
                fd = mkostemp(tmp, O_CLOEXEC);
                if (fd < 0 || !(f = fdopen(fd, "wb"))) {
                        fprintf(stderr, "pysprinter: data get: cannot write %s: %s\n", out, strerror(errno));
                        if (fd >= 0) {
                                close(fd);
                                unlink(tmp);
                        }
                        return EXIT_USAGE;
                }
        }
        Buf raw;
        long st = remote_request(rm, &(Request) { .method = "GET", .path = path, .download = f }, &raw);
        int code = 0;
        if (st != 200)
                code = raw_error(st, &raw, "data get");
        if (out) {
                if (fclose(f) != 0 && code == 0) {
                        fprintf(stderr, "pysprinter: data get: cannot write %s: %s\n", out, strerror(errno));
                        code = EXIT_INTERNAL;
                }
                if (code == 0 && rename(tmp, out) < 0) {
                        fprintf(stderr, "pysprinter: data get: cannot write %s: %s\n", out, strerror(errno));
                        code = EXIT_INTERNAL;
                }
                if (code)
                        unlink(tmp);
        } else
                fflush(stdout);
        buf_free(&raw);
        return code;
}

static int remote_data_rm(const Remote *rm, int argc, char **argv) {
        if (argc != 1) {
                fprintf(stderr, "pysprinter: usage: data rm NAME[@VERSION]\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *name = NULL, *query = NULL;
        if (split_ref(argv[0], &name, &query) < 0)
                return EXIT_USAGE;
        _cleanup_free_ char *path = xasprintf("/v1/data/%s%s", name, query);
        json_t *b = NULL;
        long st = cli_remote_http_json(rm, "DELETE", path, NULL, &b);
        int code = 0;
        if (st != 200)
                code = cli_remote_http_error(st, b, "data rm");
        else
                printf("removed %s\n", argv[0]);
        json_decref(b);
        return code;
}

int cli_remote_data(const char *server, int argc, char **argv) {
        const char *sub = argv[0];
        bool json = false;
        _cleanup_free_ char **rest = xcalloc((size_t) argc + 1, sizeof(char *));
        int n = 0;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else
                        rest[n++] = argv[i];
        }
        Remote rm;
        int code = open_remote(server, &rm);
        if (code)
                return code;
        if (streq(sub, "put"))
                code = remote_data_put(&rm, n, rest, json);
        else if (streq(sub, "ls") || streq(sub, "list"))
                code = remote_data_ls(&rm, n, rest, json);
        else if (streq(sub, "get"))
                code = remote_data_get(&rm, n, rest);
        else if (streq(sub, "rm") || streq(sub, "remove"))
                code = remote_data_rm(&rm, n, rest);
        else {
                fprintf(stderr, "pysprinter: data: unknown command '%s' (put, ls, get, rm)\n", sub);
                code = EXIT_USAGE;
        }
        http_close(&rm);
        return code;
}
