/* The CLI against a pysprinterd (docs/api.md): the same verbs, the same
 * rendering (events from the server's SSE stream go through the renderer
 * the embedded mode uses), the same exit codes. */
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>

#include "cli-remote.h"

/* ---- configuration ------------------------------------------------------ */

/* "key = value" (or "key: value") lines of ~/.config/pysprinter/config;
 * '#' starts a comment. */
static char *config_value(const char *key) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        size_t len;

        if (xdg && *xdg)
                path = path_join(xdg, "pysprinter", "config");
        else if (home && *home)
                path = path_join(home, ".config", "pysprinter", "config");
        else
                return NULL;
        if (read_file(path, 64 * 1024, &text, &len) < 0)
                return NULL;
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                char *l = strstrip(line);
                size_t k = strlen(key);
                if (*l != '#' && strneq(l, key, k)) {
                        char *v = strstrip(l + k);
                        if (*v == '=' || *v == ':')
                                return xstrdup(strstrip(v + 1));
                }
                line = nl ? nl + 1 : NULL;
        }
        return NULL;
}

char *cli_remote_server(const char *flag) {
        const char *env = getenv("PYSPRINTER_SERVER");
        if (flag && *flag)
                return xstrdup(flag);
        if (env && *env)
                return xstrdup(env);
        return config_value("server");
}

bool cli_remote_take_server(int *argc, char **argv, char **ret_server) {
        const char *flag = NULL;
        int j = 0;
        for (int i = 0; i < *argc; i++) {
                if (streq(argv[i], "--server") && i + 1 < *argc) {
                        flag = argv[++i];
                        continue;
                }
                if (startswith(argv[i], "--server=")) {
                        flag = argv[i] + strlen("--server=");
                        continue;
                }
                argv[j++] = argv[i];
        }
        *argc = j;
        char *s = cli_remote_server(flag);
        if (!s)
                return false;
        *ret_server = s;
        return true;
}

static int remote_open(const char *server, Remote *ret) {
        static bool curl_ready;
        if (!curl_ready) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                curl_ready = true;
        }
        if (!startswith(server, "http://") && !startswith(server, "https://")) {
                fprintf(stderr, "pysprinter: --server needs an http:// or https:// URL, not '%s'\n", server);
                return EXIT_USAGE;
        }
        char *base = xstrdup(server);
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
                base[--n] = 0;
        const char *t = getenv("PYSPRINTER_TOKEN");
        *ret = (Remote) { .base = base, .token = t && *t ? xstrdup(t) : config_value("token") };
        return 0;
}

static void remote_done(Remote *r) {
        free(r->base);
        free(r->token);
}

/* ---- HTTP --------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
        interrupted = 1;
}

static size_t write_buf(char *data, size_t size, size_t n, void *userdata) {
        Buf *b = userdata;
        if (buf_append(b, data, size * n) < 0)
                return 0;
        return size * n;
}

static size_t header_cb(char *data, size_t size, size_t n, void *userdata) {
        long *retry_after = userdata;
        if (size * n > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
                *retry_after = strtol(data + 12, NULL, 10);
        return size * n;
}

static struct curl_slist *auth_headers(const Remote *rm, bool json_body) {
        struct curl_slist *h = NULL;
        if (rm->token) {
                _cleanup_free_ char *a = xasprintf("Authorization: Bearer %s", rm->token);
                h = curl_slist_append(h, a);
        }
        if (json_body)
                h = curl_slist_append(h, "Content-Type: application/json");
        /* A large body must not wait a second for "100 Continue". */
        h = curl_slist_append(h, "Expect:");
        return h;
}

/* One request; the body of the answer goes to *ret_body (parsed JSON when
 * it is JSON, else NULL). Returns the HTTP status, or the exit code 6 as a
 * negative number when the server could not be reached. 429 is retried as
 * Retry-After asks, a few times. */
static long http_json(const Remote *rm, const char *method, const char *path, const char *body, json_t **ret_body) {
        for (int attempt = 0;; attempt++) {
                CURL *c = curl_easy_init();
                Buf b;
                long status = 0, retry_after = 0;
                char errbuf[CURL_ERROR_SIZE] = "";
                _cleanup_free_ char *url = xasprintf("%s%s", rm->base, path);
                struct curl_slist *h = auth_headers(rm, body != NULL);

                buf_init(&b, 512U << 20);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_buf);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
                curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
                curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after);
                curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
                curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
                curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
                if (body) {
                        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
                }
                CURLcode cc = curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                curl_slist_free_all(h);
                curl_easy_cleanup(c);
                if (cc != CURLE_OK) {
                        buf_free(&b);
                        fprintf(stderr, "pysprinter: cannot reach %s: %s\n", rm->base, *errbuf ? errbuf : curl_easy_strerror(cc));
                        return -EXIT_SERVER;
                }
                if (status == 429 && attempt < 5 && !interrupted) {
                        buf_free(&b);
                        sleep((unsigned) MAX(1, MIN(retry_after, 10)));
                        continue;
                }
                *ret_body = b.len ? json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL) : NULL;
                buf_free(&b);
                return status;
        }
}

/* Reports a non-2xx answer the user's way and returns the exit code. */
static int report_http_error(long status, json_t *body, const char *what) {
        const char *msg = json_string_value(json_object_get(json_object_get(body, "error"), "message"));
        if (status < 0)
                return (int) -status;
        fprintf(stderr, "pysprinter: %s: %s (HTTP %ld)\n", what, msg ? msg : "the server refused the request", status);
        if (status == 401 || status == 403) {
                fprintf(stderr, "pysprinter: set PYSPRINTER_TOKEN (or 'token = …' in ~/.config/pysprinter/config)\n");
                return EXIT_SERVER;
        }
        if (status == 404)
                return EXIT_USAGE;
        if (status == 422)
                return EXIT_VALIDATION;
        if (status >= 400 && status < 500 && status != 429)
                return EXIT_USAGE;
        return EXIT_SERVER;
}

/* ---- runs ------------------------------------------------------------------ */

static RunResult *result_from_json(json_t *run) {
        RunResult *r = xcalloc(1, sizeof(RunResult));
        const char *s;
        r->id = xstrdup(json_string_value(json_object_get(run, "id")) ?: "");
        r->status = run_status_from_string(json_string_value(json_object_get(run, "status")) ?: "error");
        json_t *ec = json_object_get(run, "exit_code");
        r->exit_code = json_is_integer(ec) ? (int) json_integer_value(ec) : EXIT_INTERNAL;
        if ((s = json_string_value(json_object_get(run, "function"))))
                r->function = xstrdup(s);
        json_t *v = json_object_get(run, "result");
        if (r->status == RUN_SUCCEEDED && !json_string_value(json_object_get(run, "result_repr")))
                r->value_json = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        if ((s = json_string_value(json_object_get(run, "result_repr"))))
                r->value_repr = xstrdup(s);
        json_t *e = json_object_get(run, "error");
        if ((s = json_string_value(json_object_get(e, "type"))))
                r->error_type = xstrdup(s);
        if ((s = json_string_value(json_object_get(e, "message"))))
                r->error_message = xstrdup(s);
        if ((s = json_string_value(json_object_get(e, "traceback"))))
                r->traceback = xstrdup(s);
        return r;
}

typedef struct Stream {
        Renderer *rd;
        Buf line;
        char event[32];
        Buf data;
        json_t *end;            /* the "end" event's run */
} Stream;

static void stream_dispatch(Stream *s) {
        json_t *j = json_loadb(s->data.data ? s->data.data : "", s->data.len, JSON_DECODE_ANY, NULL);
        if (!j)
                return;
        if (streq(s->event, "output")) {
                const char *text = json_string_value(json_object_get(j, "text"));
                const char *stream = json_string_value(json_object_get(j, "stream"));
                if (text) {
                        RunEvent ev = {
                                .type = RUN_EVENT_OUTPUT,
                                .stream = stream && streq(stream, "stderr") ? 2 : 1,
                                .data = text,
                                .len = json_string_length(json_object_get(j, "text")),
                                .timestamp = now_realtime(),
                        };
                        renderer_event(&ev, s->rd);
                }
        } else if (streq(s->event, "phase")) {
                RunEvent ev = { .type = RUN_EVENT_PHASE, .phase = json_string_value(json_object_get(j, "phase")),
                                .timestamp = now_realtime() };
                if (ev.phase)
                        renderer_event(&ev, s->rd);
        } else if (streq(s->event, "end")) {
                json_decref(s->end);
                s->end = json_incref(j);
        }
        json_decref(j);
}

static size_t stream_write(char *data, size_t size, size_t n, void *userdata) {
        Stream *s = userdata;
        size_t total = size * n;
        for (size_t i = 0; i < total; i++) {
                char ch = data[i];
                if (ch != '\n') {
                        if (buf_append(&s->line, &ch, 1) < 0)
                                return 0;
                        continue;
                }
                const char *l = s->line.data ? s->line.data : "";
                if (s->line.len == 0) {
                        if (s->event[0])
                                stream_dispatch(s);
                        s->event[0] = 0;
                        buf_reset(&s->data);
                } else if (startswith(l, "event: "))
                        snprintf(s->event, sizeof(s->event), "%s", l + 7);
                else if (startswith(l, "data: ")) {
                        if (s->data.len)
                                buf_append(&s->data, "\n", 1);
                        if (buf_appends(&s->data, l + 6) < 0)
                                return 0;
                }
                buf_reset(&s->line);
        }
        return total;
}

static int xfer_cb(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        return interrupted ? 1 : 0;
}

/* Streams the run's events into the renderer until it ends; then renders
 * the result. Ctrl-C cancels the run on the server. */
static int follow_and_render(const Remote *rm, const char *id, bool json_output) {
        Renderer rd;
        Stream s = { .rd = &rd };
        json_t *final = NULL;
        int code;

        renderer_init(&rd, json_output);
        buf_init(&s.line, 1U << 20);
        buf_init(&s.data, 64U << 20);
        _cleanup_free_ char *path = xasprintf("/v1/runs/%s/logs?follow=1", id);
        for (int attempt = 0; attempt < 3 && !s.end && !interrupted; attempt++) {
                CURL *c = curl_easy_init();
                _cleanup_free_ char *url = xasprintf("%s%s", rm->base, path);
                struct curl_slist *h = auth_headers(rm, false);
                long status = 0;
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_write);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
                curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
                curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_cb);
                curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
                (void) curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                curl_slist_free_all(h);
                curl_easy_cleanup(c);
                if (status != 200 && !interrupted)
                        break;
        }
        if (interrupted) {
                _cleanup_free_ char *p = xasprintf("/v1/runs/%s", id);
                json_t *b = NULL;
                fprintf(stderr, "\npysprinter: cancelling run %s on the server\n", id);
                interrupted = 0;
                (void) http_json(rm, "DELETE", p, NULL, &b);
                json_decref(b);
                /* The server answers once the run ended, or after a grace
                 * period; wait a little more for the final record. */
                for (int i = 0; i < 100 && !s.end; i++) {
                        json_t *q = NULL;
                        long st = http_json(rm, "GET", p, NULL, &q);
                        const char *status = json_string_value(json_object_get(q, "status"));
                        if (st != 200 || (status && run_status_is_final(run_status_from_string(status)))) {
                                json_decref(q);
                                break;
                        }
                        json_decref(q);
                        usleep(200 * 1000);
                }
        }
        if (s.end)
                final = json_incref(s.end);
        else {
                /* The stream broke off: ask for the run's state instead. */
                json_t *b = NULL;
                _cleanup_free_ char *rp = xasprintf("/v1/runs/%s", id);
                long st = http_json(rm, "GET", rp, NULL, &b);
                if (st == 200)
                        final = b;
                else {
                        code = report_http_error(st, b, "run");
                        json_decref(b);
                        renderer_done(&rd);
                        goto out;
                }
        }
        renderer_done(&rd);
        RunResult *res = result_from_json(final);
        code = renderer_result(&rd, res);
        run_result_free(res);
        json_decref(final);
out:
        json_decref(s.end);
        buf_free(&s.line);
        buf_free(&s.data);
        return code;
}

/* Engine-format arguments to the API's fields (docs/api.md): raw strings
 * (converted by the server by annotation) first, then typed values. */
static int args_to_api(json_t *req, const char *args_json, const char *kwargs_json) {
        json_t *args = args_json ? json_loads(args_json, 0, NULL) : NULL;
        json_t *kwargs = kwargs_json ? json_loads(kwargs_json, 0, NULL) : NULL;
        json_t *raw_a = json_array(), *val_a = json_array(), *raw_k = json_object(), *val_k = json_object();
        size_t i;
        json_t *v;
        const char *k;
        int r = 0;

        json_array_foreach(args, i, v) {
                json_t *raw = json_object_get(v, "raw"), *val = json_object_get(v, "value");
                if (raw) {
                        if (json_array_size(val_a) > 0)
                                r = -EINVAL; /* raw after typed: the API keeps raw first */
                        json_array_append(raw_a, raw);
                } else if (val)
                        json_array_append(val_a, val);
        }
        json_object_foreach(kwargs, k, v) {
                json_t *raw = json_object_get(v, "raw"), *val = json_object_get(v, "value");
                if (raw)
                        json_object_set(raw_k, k, raw);
                else if (val)
                        json_object_set(val_k, k, val);
        }
        if (json_array_size(raw_a))
                json_object_set(req, "raw_args", raw_a);
        if (json_array_size(val_a))
                json_object_set(req, "args", val_a);
        if (json_object_size(raw_k))
                json_object_set(req, "raw_kwargs", raw_k);
        if (json_object_size(val_k))
                json_object_set(req, "kwargs", val_k);
        json_decref(raw_a);
        json_decref(val_a);
        json_decref(raw_k);
        json_decref(val_k);
        json_decref(args);
        json_decref(kwargs);
        return r;
}

static void limits_to_api(json_t *req, const RunLimits *l) {
        json_t *o = json_object();
        if (l->timeout_ms)
                json_object_set_new(o, "timeout_ms", json_integer((json_int_t) l->timeout_ms));
        if (l->memory_bytes)
                json_object_set_new(o, "memory_bytes", json_integer((json_int_t) l->memory_bytes));
        if (l->max_procs)
                json_object_set_new(o, "max_procs", json_integer((json_int_t) l->max_procs));
        if (l->max_output_bytes)
                json_object_set_new(o, "max_output_bytes", json_integer((json_int_t) l->max_output_bytes));
        if (l->network)
                json_object_set_new(o, "network", json_true());
        if (json_object_size(o))
                json_object_set(req, "limits", o);
        json_decref(o);
}

static const char *base_name(const char *path) {
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

/* Submits body to path (a run or an invoke) and follows it. */
static int submit_and_follow(const Remote *rm, const char *path, json_t *req, bool json_output) {
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT), *rid = NULL;
        json_t *b = NULL;
        struct sigaction sa = { .sa_handler = on_sigint }, old_int, old_term;
        int code;

        interrupted = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        long st = http_json(rm, "POST", path, body, &b);
        if (st != 202 && st != 200) {
                code = report_http_error(st, b, "the server refused the run");
                json_decref(b);
                goto out;
        }
        const char *id = json_string_value(json_object_get(b, "id"));
        if (!id) {
                fprintf(stderr, "pysprinter: the server's answer has no run id\n");
                json_decref(b);
                code = EXIT_SERVER;
                goto out;
        }
        rid = xstrdup(id);
        json_decref(b);
        code = follow_and_render(rm, rid, json_output);
out:
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return code;
}

int cli_remote_run(const char *server, const RunArgs *a, const char *source, size_t len, bool validate_only) {
        Remote rm;
        int code = remote_open(server, &rm);
        if (code)
                return code;
        json_t *req = json_object();
        json_object_set_new(req, "source", json_stringn(source, len));
        json_object_set_new(req, "filename", json_string(base_name(a->file)));
        if (a->function)
                json_object_set_new(req, "function", json_string(a->function));
        if (args_to_api(req, a->args_json, a->kwargs_json) < 0) {
                fprintf(stderr, "pysprinter: with --server, give -a values before --json-args values\n");
                code = EXIT_USAGE;
                goto out;
        }
        if (a->sandbox == SANDBOX_MODE_NONE)
                fprintf(stderr, "pysprinter: note: --sandbox is the server's setting; ignored with --server\n");
        if (validate_only) {
                _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
                json_t *b = NULL;
                long st = http_json(&rm, "POST", "/v1/validate", body, &b);
                if (st != 200)
                        code = report_http_error(st, b, "validate");
                else if (json_is_true(json_object_get(b, "valid"))) {
                        if (!a->quiet)
                                printf("%s: ok (%s)\n", a->target,
                                       json_string_value(json_object_get(b, "function")) ?: "?");
                        code = 0;
                } else {
                        json_t *e = json_object_get(b, "error");
                        fprintf(stderr, "%s\n", json_string_value(json_object_get(e, "message")) ?: "invalid");
                        json_t *ec = json_object_get(b, "exit_code");
                        code = json_is_integer(ec) ? (int) json_integer_value(ec) : EXIT_VALIDATION;
                }
                json_decref(b);
                goto out;
        }
        limits_to_api(req, &a->limits);
        if (a->data) {
                /* --data NAME[@VERSION]: the server resolves the names in
                 * the caller's tenant when the run starts. */
                json_t *data = json_array();
                for (char **n = a->data; *n; n++)
                        json_array_append_new(data, json_string(*n));
                json_object_set_new(req, "data", data);
        }
        code = submit_and_follow(&rm, "/v1/runs", req, a->json_output);
out:
        json_decref(req);
        remote_done(&rm);
        return code;
}

/* ---- ps / show / logs ----------------------------------------------------- */

static void print_run_row(json_t *r) {
        json_t *ec = json_object_get(r, "exit_code");
        char code[16] = "-";
        if (json_is_integer(ec))
                snprintf(code, sizeof(code), "%d", (int) json_integer_value(ec));
        const char *created = json_string_value(json_object_get(r, "created_at")) ?: "-";
        printf("%-18s %-11s %4s %-24s  %s::%s\n", json_string_value(json_object_get(r, "id")) ?: "?",
               json_string_value(json_object_get(r, "status")) ?: "?", code, created,
               json_string_value(json_object_get(r, "filename")) ?: "?",
               json_string_value(json_object_get(r, "function")) ?: "?");
}

int cli_remote_ps(const char *server, int argc, char **argv) {
        bool json;
        long limit;
        int k = cli_parse_list_args(argc, argv, "ps", 10000, &json, &limit);
        if (k < 0) {
                printf("Usage: pysprinter ps [--json] [-n N] [--server URL]\n");
                return 0;
        }
        if (k)
                return k;
        Remote rm;
        int code = remote_open(server, &rm);
        if (code)
                return code;
        _cleanup_free_ char *path = xasprintf("/v1/runs?limit=%ld", limit);
        json_t *b = NULL;
        long st = http_json(&rm, "GET", path, NULL, &b);
        if (st != 200)
                code = report_http_error(st, b, "ps");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(json_object_get(b, "runs"), JSON_COMPACT);
                puts(t);
        } else {
                printf("%-18s %-11s %4s %-24s  %s\n", "ID", "STATUS", "EXIT", "CREATED", "TARGET");
                size_t i;
                json_t *r;
                json_array_foreach(json_object_get(b, "runs"), i, r)
                        print_run_row(r);
        }
        json_decref(b);
        remote_done(&rm);
        return code;
}

static int one_run_args(const char *verb, int argc, char **argv, bool *json, bool *follow, const char **ret_id) {
        *ret_id = NULL;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        *json = true;
                else if (follow && (streq(argv[i], "-f") || streq(argv[i], "--follow")))
                        *follow = true;
                else if (!*ret_id && argv[i][0] != '-')
                        *ret_id = argv[i];
                else {
                        fprintf(stderr, "pysprinter: %s: unexpected argument '%s'\n", verb, argv[i]);
                        return EXIT_USAGE;
                }
        }
        if (!*ret_id) {
                fprintf(stderr, "pysprinter: %s needs a run id (see `pysprinter ps`)\n", verb);
                return EXIT_USAGE;
        }
        return 0;
}

int cli_remote_show(const char *server, int argc, char **argv) {
        bool json = false;
        const char *id;
        int code = one_run_args("show", argc, argv, &json, NULL, &id);
        if (code)
                return code;
        Remote rm;
        code = remote_open(server, &rm);
        if (code)
                return code;
        _cleanup_free_ char *path = xasprintf("/v1/runs/%s", id);
        json_t *b = NULL;
        long st = http_json(&rm, "GET", path, NULL, &b);
        if (st != 200)
                code = report_http_error(st, b, "show");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(b, JSON_COMPACT);
                puts(t);
        } else {
                const char *k;
                json_t *v;
                json_object_foreach(b, k, v) {
                        if (json_is_null(v))
                                continue;
                        if (streq(k, "error")) {
                                const char *tb = json_string_value(json_object_get(v, "traceback"));
                                printf("%-10s %s: %s\n", "error:", json_string_value(json_object_get(v, "type")) ?: "",
                                       json_string_value(json_object_get(v, "message")) ?: "");
                                if (tb)
                                        printf("traceback:\n%s", tb);
                                continue;
                        }
                        _cleanup_free_ char *t = json_is_string(v) ? xstrdup(json_string_value(v))
                                                                   : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                        _cleanup_free_ char *label = xasprintf("%s:", k);
                        printf("%-10s %s\n", label, t);
                }
        }
        json_decref(b);
        remote_done(&rm);
        return code;
}

int cli_remote_logs(const char *server, int argc, char **argv) {
        bool json = false, follow = false;
        const char *id;
        int code = one_run_args("logs", argc, argv, &json, &follow, &id);
        if (code)
                return code;
        Remote rm;
        code = remote_open(server, &rm);
        if (code)
                return code;
        if (follow) {
                /* The run's events as they come; the result is not
                 * re-printed (it is a run's log, not the run). */
                Renderer rd;
                Stream s = { .rd = &rd };
                renderer_init(&rd, json);
                buf_init(&s.line, 1U << 20);
                buf_init(&s.data, 64U << 20);
                _cleanup_free_ char *url = xasprintf("%s/v1/runs/%s/logs?follow=1", rm.base, id);
                CURL *c = curl_easy_init();
                struct curl_slist *h = auth_headers(&rm, false);
                long st = 0;
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_write);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
                CURLcode cc = curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
                curl_slist_free_all(h);
                curl_easy_cleanup(c);
                renderer_done(&rd);
                if (cc != CURLE_OK && cc != CURLE_WRITE_ERROR) {
                        fprintf(stderr, "pysprinter: cannot reach %s: %s\n", rm.base, curl_easy_strerror(cc));
                        code = EXIT_SERVER;
                } else if (st != 200)
                        code = report_http_error(st, NULL, "logs");
                json_decref(s.end);
                buf_free(&s.line);
                buf_free(&s.data);
                remote_done(&rm);
                return code;
        }
        /* Whole log: text/plain. */
        CURL *c = curl_easy_init();
        Buf b;
        long st = 0;
        buf_init(&b, 512U << 20);
        _cleanup_free_ char *url = xasprintf("%s/v1/runs/%s/logs", rm.base, id);
        struct curl_slist *h = auth_headers(&rm, false);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_buf);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (cc != CURLE_OK) {
                fprintf(stderr, "pysprinter: cannot reach %s: %s\n", rm.base, curl_easy_strerror(cc));
                code = EXIT_SERVER;
        } else if (st != 200) {
                json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
                code = report_http_error(st, j, "logs");
                json_decref(j);
        } else if (b.len)
                fwrite(b.data, 1, b.len, stdout);
        buf_free(&b);
        remote_done(&rm);
        return code;
}

/* ---- deploy / invoke / functions ------------------------------------------ */

static int need_server(const char *verb, int *argc, char **argv, Remote *rm) {
        _cleanup_free_ char *server = NULL;
        if (!cli_remote_take_server(argc, argv, &server)) {
                fprintf(stderr, "pysprinter: %s needs a server: --server URL or PYSPRINTER_SERVER\n", verb);
                return EXIT_USAGE;
        }
        return remote_open(server, rm);
}

int verb_deploy(int argc, char **argv) {
        const char *target = NULL, *name = NULL, *description = NULL;
        bool json = false;
        Remote rm;
        int code = need_server("deploy", &argc, argv, &rm);
        if (code)
                return code;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--name") && i + 1 < argc)
                        name = argv[++i];
                else if (startswith(argv[i], "--name="))
                        name = argv[i] + 7;
                else if (streq(argv[i], "--description") && i + 1 < argc)
                        description = argv[++i];
                else if (streq(argv[i], "--json"))
                        json = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter deploy FILE[::FUNC] --name NAME [--description TEXT] [--json]\n\n"
                               "Deploy a function to the server; each deploy is a new version.\n");
                        remote_done(&rm);
                        return 0;
                } else if (!target && argv[i][0] != '-')
                        target = argv[i];
                else {
                        fprintf(stderr, "pysprinter: deploy: unexpected argument '%s'\n", argv[i]);
                        remote_done(&rm);
                        return EXIT_USAGE;
                }
        }
        if (!target) {
                fprintf(stderr, "pysprinter: deploy needs FILE[::FUNC]\n");
                remote_done(&rm);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *file = NULL, *function = NULL, *source = NULL, *stem = NULL;
        const char *sep = strstr(target, "::");
        file = sep ? xstrndup(target, (size_t) (sep - target)) : xstrdup(target);
        if (sep)
                function = xstrdup(sep + 2);
        if (!name) {
                /* The file's stem names the function unless told otherwise. */
                stem = xstrdup(base_name(file));
                char *dot = strrchr(stem, '.');
                if (dot)
                        *dot = 0;
                name = stem;
        }
        size_t len;
        int r = cli_read_source(file, &source, &len);
        if (r < 0) {
                remote_done(&rm);
                return EXIT_USAGE;
        }
        json_t *req = json_pack("{s:s, s:s%, s:s}", "name", name, "source", source, len, "filename", base_name(file));
        if (function)
                json_object_set_new(req, "function", json_string(function));
        if (description)
                json_object_set_new(req, "description", json_string(description));
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        json_t *b = NULL;
        long st = http_json(&rm, "POST", "/v1/functions", body, &b);
        if (st != 201) {
                json_t *v = json_object_get(b, "validation");
                const char *m = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
                if (st == 422 && m) {
                        fprintf(stderr, "%s\n", m);
                        code = EXIT_VALIDATION;
                } else
                        code = report_http_error(st, b, "deploy");
        } else if (json) {
                _cleanup_free_ char *t = json_dumps(b, JSON_COMPACT);
                puts(t);
        } else
                printf("deployed %s version %lld (%s::%s)\n", json_string_value(json_object_get(b, "name")),
                       (long long) json_integer_value(json_object_get(b, "version")), base_name(file),
                       json_string_value(json_object_get(b, "function")) ?: "?");
        json_decref(b);
        remote_done(&rm);
        return code;
}

int verb_invoke(int argc, char **argv) {
        Remote rm;
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        int code = need_server("invoke", &argc, argv, &rm);
        if (code)
                return code;
        /* NAME::VERSION (NAME comes first): the version is ours, not the
         * run grammar's ::FUNC. */
        long version = 0;
        _cleanup_free_ char *name = NULL;
        if (argc > 0 && argv[0][0] != '-' && strstr(argv[0], "::")) {
                const char *sep = strstr(argv[0], "::");
                char *end;
                version = strtol(sep + 2, &end, 10);
                if (*end || version < 1) {
                        fprintf(stderr, "pysprinter: invoke %s: the part after '::' must be a version number\n", argv[0]);
                        remote_done(&rm);
                        return EXIT_USAGE;
                }
                name = xstrndup(argv[0], (size_t) (sep - argv[0]));
                argv[0] = name;
        }
        if (cli_parse_run_args(argc, argv, &a, &err) < 0) {
                fprintf(stderr, "pysprinter: %s\nTry 'pysprinter invoke --help'.\n", err);
                remote_done(&rm);
                return EXIT_USAGE;
        }
        if (a.help || !a.target) {
                printf("Usage: pysprinter invoke NAME[::VERSION] [-a V]… [--NAME V]… [--json]\n\n"
                       "Invoke a deployed function; arguments as for `pysprinter run`.\n");
                run_args_done(&a);
                remote_done(&rm);
                return a.help ? 0 : EXIT_USAGE;
        }
        json_t *req = json_object();
        if (args_to_api(req, a.args_json, a.kwargs_json) < 0) {
                fprintf(stderr, "pysprinter: give -a values before --json-args values\n");
                code = EXIT_USAGE;
        } else {
                limits_to_api(req, &a.limits);
                if (version > 0)
                        json_object_set_new(req, "version", json_integer(version));
                if (!code) {
                        _cleanup_free_ char *path = xasprintf("/v1/functions/%s/invoke", a.file);
                        code = submit_and_follow(&rm, path, req, a.json_output);
                }
        }
        json_decref(req);
        run_args_done(&a);
        remote_done(&rm);
        return code;
}

int verb_functions(int argc, char **argv) {
        Remote rm;
        bool json = false;
        const char *sub = "ls", *name = NULL;
        int code = need_server("functions", &argc, argv, &rm);
        if (code)
                return code;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter functions [ls|show NAME|rm NAME] [--json]\n");
                        remote_done(&rm);
                        return 0;
                } else if (i == 0 && (streq(argv[i], "ls") || streq(argv[i], "show") || streq(argv[i], "rm")))
                        sub = argv[i];
                else if (!name && argv[i][0] != '-')
                        name = argv[i];
                else {
                        fprintf(stderr, "pysprinter: functions: unexpected argument '%s'\n", argv[i]);
                        remote_done(&rm);
                        return EXIT_USAGE;
                }
        }
        if (!streq(sub, "ls") && !name) {
                fprintf(stderr, "pysprinter: functions %s needs a NAME\n", sub);
                remote_done(&rm);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *path = streq(sub, "ls") ? xstrdup("/v1/functions") : xasprintf("/v1/functions/%s", name);
        json_t *b = NULL;
        long st = http_json(&rm, streq(sub, "rm") ? "DELETE" : "GET", path, NULL, &b);
        if (st != 200)
                code = report_http_error(st, b, "functions");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(streq(sub, "ls") ? json_object_get(b, "functions") : b, JSON_COMPACT);
                puts(t);
        } else if (streq(sub, "ls")) {
                printf("%-24s %7s  %-24s  %s\n", "NAME", "VERSION", "FUNCTION", "DEPLOYED");
                size_t i;
                json_t *f;
                json_array_foreach(json_object_get(b, "functions"), i, f)
                        printf("%-24s %7lld  %-24s  %s\n", json_string_value(json_object_get(f, "name")),
                               (long long) json_integer_value(json_object_get(f, "version")),
                               json_string_value(json_object_get(f, "function")) ?: "?",
                               json_string_value(json_object_get(f, "created_at")) ?: "");
        } else if (streq(sub, "rm"))
                printf("deleted %s\n", name);
        else {
                _cleanup_free_ char *t = json_dumps(b, JSON_INDENT(2));
                puts(t);
        }
        json_decref(b);
        remote_done(&rm);
        return code;
}

int verb_server(int argc, char **argv) {
        _cleanup_free_ char *dir = NULL;
        char **args = xcalloc((size_t) argc + 2, sizeof(char *));
        args[0] = (char *) "pysprinterd";
        for (int i = 0; i < argc; i++)
                args[i + 1] = argv[i];
        /* Beside this binary when installed, the build tree's layout when
         * run from it, else $PATH. */
        if (exe_dir(&dir) >= 0) {
                _cleanup_free_ char *a = path_join(dir, "pysprinterd");
                _cleanup_free_ char *b = path_join(dir, "..", "daemon", "pysprinterd");
                execv(a, args);
                execv(b, args);
        }
        execvp("pysprinterd", args);
        fprintf(stderr, "pysprinter: cannot start pysprinterd: %s\n", strerror(errno));
        free(args);
        return EXIT_INTERNAL;
}

int verb_workers(int argc, char **argv) {
        Remote rm;
        bool json = false;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter workers [--json] [--server URL]\n\n"
                               "Show the daemon's warm workers (one per environment) and your deployed\n"
                               "functions' warm instances. The embedded CLI keeps no workers between runs.\n");
                        return 0;
                }
        }
        int code = need_server("workers", &argc, argv, &rm);
        if (code)
                return code;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else {
                        fprintf(stderr, "pysprinter: workers: unexpected argument '%s'\n", argv[i]);
                        remote_done(&rm);
                        return EXIT_USAGE;
                }
        }
        json_t *b = NULL;
        long st = http_json(&rm, "GET", "/v1/workers", NULL, &b);
        if (st != 200)
                code = report_http_error(st, b, "workers");
        else if (json) {
                _cleanup_free_ char *t = json_dumps(b, JSON_COMPACT);
                puts(t);
        } else {
                json_t *p = json_object_get(b, "pool");
                printf("%lld workers (%lld busy), %lld instances, PSS %.1f MiB of %.0f MiB budget; "
                       "%lld warm / %lld cold acquisitions, %lld evictions\n\n",
                       (long long) json_integer_value(json_object_get(p, "workers")),
                       (long long) json_integer_value(json_object_get(p, "busy")),
                       (long long) json_integer_value(json_object_get(p, "instances")),
                       json_integer_value(json_object_get(p, "pss_bytes")) / 1048576.0,
                       json_integer_value(json_object_get(p, "memory_budget")) / 1048576.0,
                       (long long) json_integer_value(json_object_get(p, "hits")),
                       (long long) json_integer_value(json_object_get(p, "misses")),
                       (long long) json_integer_value(json_object_get(p, "evictions")));
                printf("%-9s %8s %5s %9s %8s  %s\n", "KIND", "PID", "BUSY", "PSS", "IDLE", "ENV / FUNCTION");
                size_t i;
                json_t *w;
                json_array_foreach(json_object_get(b, "workers"), i, w) {
                        const char *kind = json_string_value(json_object_get(w, "kind")) ?: "?";
                        bool inst = streq(kind, "instance");
                        _cleanup_free_ char *what = NULL;
                        if (inst)
                                what = xstrdup(json_string_value(json_object_get(w, "function")) ?: "?");
                        else {
                                size_t n = json_array_size(json_object_get(w, "sys_path"));
                                size_t nf = json_array_size(json_object_get(w, "failed_imports"));
                                what = xasprintf("%zu store dirs, %lld modules pre-imported%s", n,
                                                 (long long) json_integer_value(json_object_get(w, "imported")),
                                                 nf ? " (some failed: see --json)" : "");
                        }
                        json_t *busy = json_object_get(w, "busy");
                        printf("%-9s %8lld %5lld %7.1fMi %7.0fs  %s\n", kind,
                               (long long) json_integer_value(json_object_get(w, "pid")),
                               (long long) (json_is_boolean(busy) ? json_is_true(busy) : json_integer_value(busy)),
                               json_integer_value(json_object_get(w, "pss_bytes")) / 1048576.0,
                               json_number_value(json_object_get(w, "idle_s")), what);
                }
        }
        json_decref(b);
        remote_done(&rm);
        return code;
}

/* ---- for the other remote verbs (cli-remote-dag.c) --------------------------- */

int cli_remote_open(const char *server, Remote *ret) {
        return remote_open(server, ret);
}

void cli_remote_close(Remote *r) {
        remote_done(r);
}

long cli_remote_http_json(const Remote *rm, const char *method, const char *path, const char *body, json_t **ret_body) {
        return http_json(rm, method, path, body, ret_body);
}

int cli_remote_http_error(long status, json_t *body, const char *what) {
        return report_http_error(status, body, what);
}

int cli_remote_args_to_api(json_t *req, const RunArgs *a) {
        int r = args_to_api(req, a->args_json, a->kwargs_json);
        if (r >= 0)
                limits_to_api(req, &a->limits);
        return r;
}

char *cli_config_value(const char *key) {
        return config_value(key);
}
