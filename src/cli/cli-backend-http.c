/* The backend over a pysprinterd (docs/api.md): the same operations as the
 * embedded engine, answered with the same objects. A run's events come
 * from its SSE stream and go through the renderer the embedded mode uses. */
#include <fcntl.h>
#include <sys/stat.h>

#include "cli-backend.h"
#include "shared.h"

/* ---- requests ----------------------------------------------------------- */

int cli_args_to_api(json_t *req, const RunArgs *a) {
        json_t *args = a->args_json ? json_loads(a->args_json, JSON_ALLOW_NUL, NULL) : NULL;
        json_t *kwargs = a->kwargs_json ? json_loads(a->kwargs_json, JSON_ALLOW_NUL, NULL) : NULL;
        json_t *raw_a = json_array(), *val_a = json_array(), *raw_k = json_object(), *val_k = json_object(), *v;
        size_t i;
        const char *k;
        int r = 0;

        json_array_foreach(args, i, v) {
                json_t *raw = json_object_get(v, "raw"), *val = json_object_get(v, "value");
                if (raw && json_array_size(val_a) > 0)
                        r = -EINVAL;
                json_array_append(raw ? raw_a : val_a, raw ?: val);
        }
        json_object_foreach(kwargs, k, v) {
                /* A flag given without a value ({"bare": true}) is true
                 * in raw_kwargs (docs/api.md). */
                json_t *raw = json_object_get(v, "raw") ?: json_object_get(v, "bare"),
                       *val = json_object_get(v, "value");
                json_object_set(raw ? raw_k : val_k, k, raw ?: val);
        }
        const char *names[] = { "raw_args", "args", "raw_kwargs", "kwargs" };
        json_t *parts[] = { raw_a, val_a, raw_k, val_k };
        for (size_t p = 0; p < ELEMENTSOF(parts); p++) {
                if (json_is_array(parts[p]) ? json_array_size(parts[p]) : json_object_size(parts[p]))
                        json_object_set(req, names[p], parts[p]);
                json_decref(parts[p]);
        }
        json_decref(args);
        json_decref(kwargs);

        const RunLimits *l = &a->limits;
        json_t *o = json_object();
        if (l->timeout_ms)
                json_object_set_new(o, "timeout_ms", json_integer((json_int_t) l->timeout_ms));
        if (l->memory_bytes)
                json_object_set_new(o, "memory_bytes", json_integer((json_int_t) l->memory_bytes));
        if (l->max_procs)
                json_object_set_new(o, "max_procs", json_integer((json_int_t) l->max_procs));
        if (l->max_output_bytes)
                json_object_set_new(o, "max_output_bytes", json_integer((json_int_t) l->max_output_bytes));
        if (l->network || l->network_off)
                json_object_set_new(o, "network", json_boolean(l->network));
        if (json_object_size(o))
                json_object_set(req, "limits", o);
        json_decref(o);
        /* Names only: the server resolves them in the caller's tenant. */
        if (a->data)
                json_object_set_new(req, "data", json_strv_new(a->data));
        return r;
}

/* The server's 404 for a function that is not deployed ("no deployed
 * function 'NAME'", daemon_function_missing()), with where to look: what
 * `functions show`, `invoke` and `invoke --payload` print alike. Other
 * words (a missing version) are left as they are. Takes err. fail() applies
 * it to every refusal, so each route that can name a missing function
 * gets it without saying so. */
static char *function_missing_hint(char *err) {
        /* A missing schedule ("no schedule 'NAME'") likewise. */
        const char *list = !err                                        ? NULL
                           : startswith(err, "no deployed function '") ? "pysprinter functions"
                           : startswith(err, "no schedule '")          ? "pysprinter schedule ls"
                                                                       : NULL;
        if (!list)
                return err;
        char *s = xasprintf("%s (see `%s`)", err, list);
        free(err);
        return s;
}

static int fail(Backend *b, int r, char *err) {
        free(b->error);
        b->error = r == -ENOENT ? function_missing_hint(err) : err;
        return r;
}

/* ---- runs ---------------------------------------------------------------- */

static int http_object(Backend *b, const char *method, bool dag, const char *id, json_t **ret);

/* After http_json_submit() of a detached run or DAG run id: interrupted before
 * the id was printed, it is cancelled, as embedded, and the command ends
 * as an interrupted one. */
static int detach_interrupted(Backend *b, bool dag, const char *id) {
        json_t *x = NULL;
        cli_interrupt_handled = true;
        (void) http_object(b, "DELETE", dag, id, &x);
        json_decref(x);
        free(b->error);
        b->error = NULL;
        return -EINTR;
}

typedef struct Follow {
        Renderer *rd;
        json_t *end;    /* the "end" event's run */
        uint64_t at;    /* the id of the last output event: the log's bytes printed */
        usec_t away_since; /* monotonic: the server was first found away (server_away()) */
        bool heard;        /* an event came (the stream was taken) */
        bool hold;         /* RunRequest.hold_result: the end's result may be held */
} Follow;

/* An API run or DAG object's text [0, len) (a NUL after it), read with
 * each large result held as its text (shared.h json_loads_held()): the
 * renderer writes it from there, never building it. */
static json_t *loads_results_held(const char *text, size_t len) {
        return json_loads_held(text, len, "result");
}

static void on_sse(const char *event, const char *data, size_t len, void *userdata) {
        Follow *f = userdata;
        f->heard = true;
        json_t *j = f->hold && streq(event, "end") ? loads_results_held(data, len) : NULL;
        j = j ?: json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!j)
                return;
        if (streq(event, "output")) {
                /* "base64", when there, holds the exact bytes of output that
                 * is not UTF-8; "text" is then only a lossy view of it. */
                json_t *text = json_object_get(j, "text"), *b64 = json_object_get(j, "base64");
                const char *stream = json_string_value(json_object_get(j, "stream"));
                _cleanup_free_ char *bytes = NULL; /* stays NULL unless decoded */
                size_t n = 0;
                if (json_is_string(b64))
                        (void) base64_decode(json_string_value(b64), json_string_length(b64), &bytes, &n);
                if (bytes || json_is_string(text)) {
                        /* When the run wrote it, as embedded (a server
                         * without "time": when it came). */
                        usec_t ts = cli_parse_timestamp(json_string_value(json_object_get(j, "time")));
                        RunEvent ev = { .type = RUN_EVENT_OUTPUT,
                                        .stream = stream && streq(stream, "stderr") ? 2 : 1,
                                        .data = bytes ?: json_string_value(text),
                                        .len = bytes ? n : json_string_length(text),
                                        .timestamp = ts ?: now_realtime() };
                        renderer_event(&ev, f->rd);
                }
        } else if (streq(event, "phase") || streq(event, "warning")) {
                RunEvent ev = { .type = streq(event, "phase") ? RUN_EVENT_PHASE : RUN_EVENT_WARNING,
                                .phase = json_string_value(json_object_get(j, "phase")),
                                .message = json_string_value(json_object_get(j, "message")),
                                .timestamp = now_realtime() };
                if (ev.phase || ev.message)
                        renderer_event(&ev, f->rd);
        } else if (streq(event, "end")) {
                json_decref(f->end);
                f->end = json_incref(j);
        }
        json_decref(j);
}

/* How long a stream turned away unread is asked again (follow_log()),
 * at most: map's calls past a server's connections wait for the ones in
 * flight, which may run for seconds. */
#define FOLLOW_REFUSED_USEC (10 * USEC_PER_SEC)

/* The server following run id answered nothing, or that it cannot serve
 * now (why: its words, a cluster's gateway cut from its Redis; NULL: no
 * answer): says so once, and returns whether to keep asking (within
 * http_reconnect_wait() of *away_since, the first time it was away, set here). */
static bool server_away(Renderer *rd, const char *id, const char *why, usec_t *away_since) {
        usec_t now = now_monotonic();
        if (*away_since == 0) {
                *away_since = now;
                _cleanup_free_ char *msg =
                        why ? xasprintf("the server cannot serve run %s now (%s); it was accepted and ends there: "
                                        "waiting up to %llu s",
                                        id, why, (unsigned long long) (http_reconnect_wait() / USEC_PER_SEC))
                            : xasprintf("lost the connection to the server; run %s was accepted and runs again "
                                        "when it is back: waiting up to %llu s",
                                        id, (unsigned long long) (http_reconnect_wait() / USEC_PER_SEC));
                renderer_clear_status(rd);
                RunEvent ev = { .type = RUN_EVENT_WARNING, .message = msg, .timestamp = now_realtime() };
                renderer_event(&ev, rd);
        }
        return now - *away_since < http_reconnect_wait();
}

/* A request's failure that a wait for an accepted run waits through: no
 * answer (-ECONNREFUSED), or a server that cannot serve now (-EHOSTUNREACH,
 * HTTP 502-504: a gateway cut from the cluster's Redis, which holds the
 * run). */
static bool server_gone(int r) {
        return r == -ECONNREFUSED || r == -EHOSTUNREACH;
}

/* Streams run id's events (path: its ?follow=1 log) into f until the end
 * event. A stream that broke off is asked for again from where it stood
 * (Last-Event-ID: nothing printed twice, nothing missed): at once, or,
 * from a server that went away, once it is back within http_reconnect_wait()
 * (server_away()). A record that is not the end (a gateway that does not
 * hold the run ends its stream with the record as it stands) is no end
 * either. 0 at the end; a negative errno (-EINTR, -ECONNREFUSED after the
 * wait, a refusal) with *ret_err. */
static int follow_log(Backend *b, const char *id, const char *path, Follow *f, char **ret_err) {
        usec_t wait = 20 * USEC_PER_MSEC, refused_since = 0;
        for (;;) {
                _cleanup_free_ char *resume = f->at ? xasprintf("Last-Event-ID: %llu", (unsigned long long) f->at)
                                                    : NULL;
                uint64_t at = f->at;
                Buf body;
                free(*ret_err);
                *ret_err = NULL;
                int r = http_request(&b->http,
                                     &(HttpRequest){ .method = "GET",
                                                     .path = path,
                                                     .header = resume,
                                                     .sse = on_sse,
                                                     .sse_userdata = f,
                                                     .last_event_id = &f->at },
                                     NULL, &body, ret_err);
                buf_free(&body);
                const char *st = json_string_value(json_object_get(f->end, "status"));
                if (f->end && st && (streq(st, "queued") || streq(st, "running"))) {
                        json_decref(f->end);
                        f->end = NULL;
                } else if (f->end)
                        return 0;
                if (r == -EINTR || cli_interrupted)
                        return -EINTR;
                /* Turned away before a byte of it came: a server past its
                 * connections from this client (map's many calls: 64 by
                 * default, server.max_connections_per_ip) resets the ones
                 * over, unread. The stream is asked again for a moment
                 * before the server is taken to be away: no "lost the
                 * connection" is said of a server that is there. */
                if (r == -ECONNREFUSED && !f->heard) {
                        usec_t now = now_monotonic();
                        refused_since = refused_since ?: now;
                        if (now - refused_since < MIN(FOLLOW_REFUSED_USEC, http_reconnect_wait())) {
                                wait = wait ? MIN(wait * 2, 250 * USEC_PER_MSEC) : 20 * USEC_PER_MSEC;
                                usleep(wait);
                                continue;
                        }
                }
                if (server_gone(r) && !server_away(f->rd, id, r == -EHOSTUNREACH ? *ret_err : NULL, &f->away_since))
                        return r;
                if (r < 0 && !server_gone(r))
                        return r;
                /* A stream that got further is asked again at once. */
                wait = f->at > at ? 0 : wait ? MIN(wait * 2, 250 * USEC_PER_MSEC) : 20 * USEC_PER_MSEC;
                if (r >= 0)
                        f->away_since = 0;
                usleep(wait);
        }
}

/* Streams a run's events into rd until it ends; *ret is the final run.
 * Ctrl-C cancels the run on the server, then waits for its record. */
static int follow_run(Backend *b, const char *id, Renderer *rd, bool hold, json_t **ret) {
        _cleanup_free_ char *eid = http_escape(id), *err = NULL;
        _cleanup_free_ char *lpath = xasprintf("/v1/runs/%s/logs?follow=1", eid), *rpath = xasprintf("/v1/runs/%s", eid);
        Follow f = { .rd = rd, .hold = hold };
        int r = follow_log(b, id, lpath, &f, &err);
        if (r == -EINTR) {
                /* Handled: further requests must not stop at once. The
                 * end prints "cancelled", as embedded: no line of its own. */
                cli_interrupt_handled = true;
                renderer_clear_status(rd);
                json_t *x = NULL;
                free(err);
                err = NULL;
                (void) http_json(&b->http, "DELETE", rpath, NULL, &x, &err);
                json_decref(x);
        }
        if (f.end) {
                *ret = f.end;
                return 0;
        }
        /* Cancelled, or the server stayed away or refused the stream: the
         * record has the end. With --server URL,URL the GET goes to the
         * next gateway, which reads the same record (docs/cluster.md), and
         * is repeated until the run has ended. A lone server that went
         * away is waited for (http_reconnect_wait(), from when it was first
         * found away): the run was accepted, and a restarted daemon runs
         * it again to its end. */
        usec_t wait = 20 * USEC_PER_MSEC, away_since = f.away_since;
        for (;;) {
                free(err);
                err = NULL;
                json_t *run = NULL;
                r = hold ? http_json_loads(&b->http, "GET", rpath, loads_results_held, &run, &err)
                         : http_json(&b->http, "GET", rpath, NULL, &run, &err);
                if (server_gone(r) && !cli_interrupted &&
                    server_away(rd, id, r == -EHOSTUNREACH ? err : NULL, &away_since)) {
                        usleep(wait);
                        wait = MIN(wait * 2, 250 * USEC_PER_MSEC);
                        continue;
                }
                if (away_since != 0 && (r == -EINTR || cli_interrupted)) {
                        /* Ctrl-C while the server is away: nothing could
                         * ask it to cancel, and a restart runs it again.
                         * Said before the "interrupted" every Ctrl-C ends
                         * with (backend_fail()). */
                        _cleanup_free_ char *msg = xasprintf(
                                "run %s could not be cancelled (the server is away): it runs again when the "
                                "server is back; `pysprinter cancel %s` then",
                                id, id);
                        RunEvent ev = { .type = RUN_EVENT_WARNING, .message = msg, .timestamp = now_realtime() };
                        renderer_event(&ev, rd);
                        return fail(b, -EINTR, TAKE_PTR(err));
                }
                if (server_gone(r))
                        return fail(b, r,
                                    xasprintf("%s; run %s was accepted and ends there: `pysprinter show %s` shows its "
                                              "end once the server is back",
                                              err, id, id));
                if (r < 0)
                        return fail(b, r, TAKE_PTR(err));
                const char *rst = json_string_value(json_object_get(run, "status"));
                if (!rst || (!streq(rst, "queued") && !streq(rst, "running")) || cli_interrupted) {
                        *ret = run;
                        return 0;
                }
                json_decref(run);
                usleep(wait);
                wait = MIN(wait * 2, 250 * USEC_PER_MSEC);
        }
}

static int http_run_get(Backend *b, const char *id, json_t **ret);

/* A NAME no function can have (function_name_is_valid(): a deploy takes
 * no other) is no deployed function, said before any request: sent, "",
 * ".", "..", "a/b" became other routes of the API (`functions show ""`
 * printed the list, `invoke a/b` "no such endpoint", `logs --function ..`
 * read /v1/runs, the output of every run). -ENOENT after saying so. */
static int function_name_refused(Backend *b, const char *name) {
        if (function_name_is_valid(name))
                return 0;
        return fail(b, -ENOENT, xasprintf("no deployed function '%s'", name));
}

/* Why the invoke API finds no function name (escaped) at version (0:
 * latest), in its words (daemon_function_find(): "function 'tick' has no
 * version 9", "no deployed function 'tick'"), or NULL when it finds one. */
static char *function_missing(Backend *b, const char *name, long version, const char *alias) {
        _cleanup_free_ char *path = alias         ? xasprintf("/v1/functions/%s?version=%s", name, alias)
                                    : version > 0 ? xasprintf("/v1/functions/%s?version=%ld", name, version)
                                                  : xasprintf("/v1/functions/%s", name);
        char *err = NULL;
        json_t *f = NULL;
        int r = http_json(&b->http, "GET", path, NULL, &f, &err);
        json_decref(f);
        if (r == -ENOENT)
                return err;
        free(err);
        return NULL;
}

/* A Lambda-style event goes through the Lambda Invoke API, which applies
 * the calling rule (handler(event, context), docs/api.md). Invoked as an
 * "Event" it answers at once with the run's id, which is then followed
 * like any run. */
static int invoke_event(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret) {
        _cleanup_free_ char *name = http_escape(q->deployed), *err = NULL, *body = cli_json_text(q->payload);
        _cleanup_free_ char *path = q->alias ? xasprintf("/2015-03-31/functions/%s/invocations?Qualifier=%s", name,
                                                         q->alias)
                                    : q->version > 0 ? xasprintf("/2015-03-31/functions/%s/invocations?Qualifier=%ld",
                                                                 name, q->version)
                                                     : xasprintf("/2015-03-31/functions/%s/invocations", name);
        Buf ans, hdrs;
        buf_init(&hdrs, 64 * 1024);
        /* Whole, as http_json_submit()'s. */
        HttpRequest h = { .method = "POST",
                          .path = path,
                          .content_type = "application/json",
                          .body = body,
                          .body_len = strlen(body),
                          .headers = &hdrs,
                          /* Followed here unless detached: a failure
                           * is this caller's to hear at once, not the
                           * Event's to try again minutes later. */
                          .header = "X-Amz-Invocation-Type: Event",
                          .header2 = q->detach ? NULL : "X-Pysprinter-Caller-Waits: true",
                          .whole = true };
        int r = http_request(&b->http, &h, NULL, &ans, &err);
        buf_free(&ans);
        _cleanup_free_ char *id = NULL;
        const char *p = hdrs.data ? strcasestr(hdrs.data, "X-Amzn-RequestId:") : NULL;
        if (p) {
                p += strlen("X-Amzn-RequestId:");
                p += strspn(p, " ");
                id = xstrndup(p, strcspn(p, "\r\n"));
        }
        buf_free(&hdrs);
        if (r == -ENOENT) {
                /* The Lambda route answers its clients as Lambda does
                 * ("Function not found: ARN:9", a missing function and a
                 * missing version alike); the CLI says what `invoke NAME::V
                 * ARGS` says of the same name, from the invoke API's one
                 * rule. Only a refusal costs the second request. */
                char *why = function_missing(b, name, q->version, q->alias);
                if (why) {
                        free(err);
                        err = why;
                }
        }
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        if (!id)
                return fail(b, -EPROTO, xstrdup("the server's answer has no request id"));
        if (q->detach && cli_interrupted && !cli_interrupt_handled)
                return detach_interrupted(b, false, id);
        return q->detach ? http_run_get(b, id, ret) : follow_run(b, id, rd, q->hold_result, ret);
}

/* `invoke NAME --help`: the deployed version's function object (GET
 * /v1/functions/NAME[?version=N]: signature, doc, parameters). A missing
 * function or version fails with the server's words, the invoke's. */
static int describe_deployed(Backend *b, const RunRequest *q, json_t **ret) {
        _cleanup_free_ char *name = http_escape(q->deployed), *err = NULL;
        _cleanup_free_ char *path = q->alias         ? xasprintf("/v1/functions/%s?version=%s", name, q->alias)
                                    : q->version > 0 ? xasprintf("/v1/functions/%s?version=%ld", name, q->version)
                                                     : xasprintf("/v1/functions/%s", name);
        int r = http_json(&b->http, "GET", path, NULL, ret, &err);
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

static int http_run(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret) {
        const RunArgs *a = q->a;
        if (q->deployed && function_name_refused(b, q->deployed) < 0)
                return -ENOENT;
        if (q->deployed && q->describe_only)
                return describe_deployed(b, q, ret);
        _cleanup_free_ char *err = NULL, *path = NULL;
        json_t *req = json_object(), *ans = NULL;
        int r;
        if (!q->deployed && (json_object_set_new(req, "source", json_stringn(q->source, q->source_len)) < 0 ||
                             json_object_set_new(req, "filename", json_string(path_base_name(q->filename))) < 0 ||
                             (a->function && json_object_set_new(req, "function", json_string(a->function)) < 0))) {
                /* The source was checked (cli_check_source): a name is not UTF-8. */
                json_decref(req);
                return fail(b, -EBADMSG, xasprintf("%s: the file or function name is not valid UTF-8", q->filename));
        }
        if (q->payload) {
                json_decref(req);
                return invoke_event(b, q, rd, ret);
        }
        if (cli_args_to_api(req, a) < 0) {
                json_decref(req);
                return fail(b, -EINVAL, xstrdup("give -a values before --json-args values"));
        }
        if (q->prev_result) {
                json_t *prev = json_loads(q->prev_result, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                json_object_del(req, "raw_args");
                json_object_del(req, "raw_kwargs");
                json_object_del(req, "kwargs");
                json_object_set_new(req, "args", json_pack("[o]", prev ?: json_null()));
        }
        if (q->validate_only) {
                /* A validation mounts nothing and runs nothing. */
                json_object_del(req, "limits");
                json_object_del(req, "data");
                if (q->describe_only)
                        json_object_set_new(req, "describe", json_true());
                if (q->lock_only) {
                        json_object_set_new(req, "lock", json_true());
                        if (a->no_cache)
                                json_object_set_new(req, "no_cache", json_true());
                }
                r = http_json(&b->http, "POST", "/v1/validate", req, &ans, &err);
                json_decref(req);
                if (r < 0)
                        return fail(b, r, TAKE_PTR(err));
                /* The parser's warnings, printed as an embedded validation
                 * prints them. */
                renderer_answer_warnings(rd, ans);
                /* {valid, exit_code, status, function, error} is a run
                 * object's outcome already. */
                if (!json_is_true(json_object_get(ans, "valid")) && !json_object_get(ans, "status"))
                        json_object_set_new(ans, "status", json_string("invalid"));
                *ret = ans;
                return 0;
        }
        if (a->secrets) {
                /* Names only: the server opens them in the caller's tenant
                 * when the run starts. */
                json_t *sec = json_array();
                for (char **n = a->secrets; *n; n++)
                        json_array_append_new(sec, json_string(*n));
                json_object_set_new(req, "secrets", sec);
        }
        if (a->env) {
                json_t *env = json_object();
                for (char **e = a->env; *e; e++) {
                        const char *eq = strchr(*e, '=');
                        _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                        json_object_set_new(env, k, json_string(eq + 1));
                }
                json_object_set_new(req, "env", env);
        }
        if (a->output_data && !q->deployed)
                json_object_set_new(req, "output_data", json_string(a->output_data));
        if (a->no_cache && !q->deployed && !q->validate_only)
                json_object_set_new(req, "no_cache", json_true());
        if (q->deployed) {
                _cleanup_free_ char *name = http_escape(q->deployed);
                if (q->version > 0)
                        json_object_set_new(req, "version", json_integer(q->version));
                /* An alias goes as ?version= (the body's is a number). */
                path = q->alias ? xasprintf("/v1/functions/%s/invoke?version=%s", name, q->alias)
                                : xasprintf("/v1/functions/%s/invoke", name);
        }
        /* The key checked by the verb's parser (idempotency_key_is_valid():
         * nothing a header line would break on). */
        _cleanup_free_ char *key = a->idempotency_key ? xasprintf("Idempotency-Key: %s", a->idempotency_key) : NULL;
        /* With --server URL,URL the submit carries a key of its own when
         * the user gave none: a gateway that takes it and never answers
         * (frozen, killed before its answer, cut from Redis) is then left
         * for the next one, which answers with the run the first one may
         * have started (http_request()). Before, such a submit hung on a
         * frozen gateway for ever, and one whose answer was lost ended the
         * command with exit 6 while its run went on. A lone server gets
         * none: nothing else could be asked, and a keyed submit skips a
         * single node's synchronous shortcut (docs/api.md "Idempotency"). */
        _cleanup_free_ char *hex = NULL;
        if (!key && b->http.n_servers > 1 && random_hex(16, &hex) >= 0)
                key = xasprintf("Idempotency-Key: cli-%s", hex);
        /* Whole, interrupt or not (`map | head -1`: the reader goes away
         * while a call is submitted); cli_interrupted is seen below and the
         * run the answer names is cancelled. */
        r = http_json_submit(&b->http, path ?: "/v1/runs", key, req, &ans, &err);
        json_decref(req);
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        const char *id = json_string_value(json_object_get(ans, "id"));
        if (!id) {
                json_decref(ans);
                return fail(b, -EPROTO, xstrdup("the server's answer has no run id"));
        }
        if (q->detach && cli_interrupted && !cli_interrupt_handled) {
                _cleanup_free_ char *rid = xstrdup(id);
                json_decref(ans);
                return detach_interrupted(b, false, rid);
        }
        if (q->detach) {
                /* The 202's run: the server has it. */
                *ret = ans;
                return 0;
        }
        _cleanup_free_ char *rid = xstrdup(id);
        json_decref(ans);
        return follow_run(b, rid, rd, q->hold_result, ret);
}

/* METHOD /v1/{runs,dags}/ID: a run or a DAG run object. */
static int http_object(Backend *b, const char *method, bool dag, const char *id, json_t **ret) {
        _cleanup_free_ char *eid = http_escape(id), *err = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/%s/%s", dag ? "dags" : "runs", eid);
        /* A DAG run's tasks' results held (rendered only), as the embedded
         * backend's DAG object holds them (store-json.c). */
        int r = dag && streq(method, "GET") ? http_json_loads(&b->http, method, path, loads_results_held, ret, &err)
                                            : http_json(&b->http, method, path, NULL, ret, &err);
        if (r == -ENOENT)
                return fail(b, r, xasprintf("no %srun '%s' (see `pysprinter %s`)", dag ? "DAG " : "", id,
                                            dag ? "dag ls" : "ps"));
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

static int http_run_get(Backend *b, const char *id, json_t **ret) {
        return http_object(b, "GET", false, id, ret);
}

/* GET path and the array under key of its answer ({"runs": […]}). */
static int http_list(Backend *b, const char *path, const char *key, json_t **ret) {
        _cleanup_free_ char *err = NULL;
        json_t *ans = NULL;
        int r = http_json(&b->http, "GET", path, NULL, &ans, &err);
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        *ret = json_incref(json_object_get(ans, key) ?: json_array());
        json_decref(ans);
        return 0;
}

/* "&status=S,T" for statuses (NULL: ""). */
static char *status_query(char *const *statuses) {
        Buf q;
        buf_init(&q, 4096);
        for (size_t i = 0; statuses && statuses[i]; i++) {
                _cleanup_free_ char *e = http_escape(statuses[i]);
                buf_printf(&q, "%s%s", i ? "," : "&status=", e);
        }
        char *text = xstrdup(q.data ?: "");
        buf_free(&q);
        return text;
}

static int created_desc(const void *a, const void *b) {
        json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        /* The API's timestamps have one form (…T12:34:56.789Z): they sort
         * as text. Newest first, as every listing answers. */
        int c = strcmp(json_string_value(json_object_get(y, "created_at")) ?: "",
                       json_string_value(json_object_get(x, "created_at")) ?: "");
        return c ? c
                 : strcmp(json_string_value(json_object_get(y, "id")) ?: "",
                          json_string_value(json_object_get(x, "id")) ?: "");
}

/* GET "/v1/<what>?limit=N[&status=S,T]EXTRA" and the array under what. A daemon
 * of a release before the set filter (2026-12-05) takes "S,T" as one
 * state and answers nothing for it: an empty answer to a set is asked
 * again one state at a time, and the answers are merged (newest first,
 * at most limit), so `ps --status succeeded,failed` against it lists
 * what it lists against a daemon of this release instead of nothing. */
static int http_list_states(Backend *b, const char *what, long limit, char *const *statuses, const char *extra,
                            json_t **ret) {
        _cleanup_free_ char *s = status_query(statuses);
        _cleanup_free_ char *path = xasprintf("/v1/%s?limit=%ld%s%s", what, limit, s, extra ?: "");
        int r = http_list(b, path, what, ret);
        if (r < 0 || json_array_size(*ret) > 0 || strv_length(statuses) < 2)
                return r;
        json_t *all = json_array();
        for (size_t i = 0; statuses[i]; i++) {
                _cleanup_free_ char *one = status_query((char *const[]){ statuses[i], NULL });
                _cleanup_free_ char *p = xasprintf("/v1/%s?limit=%ld%s%s", what, limit, one, extra ?: "");
                json_t *part = NULL;
                r = http_list(b, p, what, &part);
                if (r < 0) {
                        json_decref(all);
                        return r;
                }
                json_array_extend(all, part);
                json_decref(part);
        }
        size_t n = json_array_size(all);
        json_t **v = xcalloc(n + 1, sizeof(json_t *));
        for (size_t i = 0; i < n; i++)
                v[i] = json_array_get(all, i);
        qsort(v, n, sizeof(json_t *), created_desc);
        json_t *out = json_array();
        for (size_t i = 0; i < n && (long) i < limit; i++)
                json_array_append(out, v[i]);
        free(v);
        json_decref(all);
        json_decref(*ret);
        *ret = out;
        return 0;
}

/* Whether run object run is of the function and the schedule f names,
 * and has its text. */
static bool run_json_of(json_t *run, const RunFilter *f) {
        const char *fn = json_string_value(json_object_get(run, "fn_name")),
                   *sched = json_string_value(json_object_get(run, "schedule"));
        RunRecord r = { .id = (char *) json_string_value(json_object_get(run, "id")),
                        .filename = (char *) json_string_value(json_object_get(run, "filename")),
                        .function = (char *) json_string_value(json_object_get(run, "function")),
                        .fn_name = (char *) fn,
                        .schedule = (char *) sched };
        return (!f->fn_name || (fn && streq(fn, f->fn_name))) &&
               (!f->schedule || (sched && streq(sched, f->schedule))) && run_filter_text_match(f->text, &r);
}

static int http_run_list(Backend *b, long limit, const RunFilter *filter, const char *before, json_t **ret) {
        _cleanup_free_ char *cursor = NULL, *origin = NULL;
        if (filter && (filter->fn_name || filter->schedule || filter->text)) {
                _cleanup_free_ char *fe = filter->fn_name ? http_escape(filter->fn_name) : NULL,
                                    *se = filter->schedule ? http_escape(filter->schedule) : NULL,
                                    *qe = filter->text ? http_escape(filter->text) : NULL;
                origin = xasprintf("%s%s%s%s%s%s", fe ? "&function=" : "", fe ?: "", se ? "&schedule=" : "", se ?: "",
                                   qe ? "&q=" : "", qe ?: "");
        }
        if (before) {
                /* The cursor is found as show finds a run: a prefix, and
                 * the same words for one that is not the caller's. */
                json_t *run = NULL;
                int r = http_run_get(b, before, &run);
                if (r < 0)
                        return r;
                _cleanup_free_ char *e = http_escape(json_string_value(json_object_get(run, "id")) ?: before);
                cursor = xasprintf("%s&before=%s", origin ?: "", e);
                json_decref(run);
        }
        int r = http_list_states(b, "runs", limit, filter ? filter->statuses : NULL, cursor ?: origin, ret);
        if (r < 0 || !origin)
                return r;
        /* A daemon of a release before these queries (2026-12-07; q=:
         * later) ignores them and lists every run: what it answers is
         * filtered here, so that nothing of another function or schedule,
         * nor a run without the text, is shown as this one's. */
        for (size_t i = json_array_size(*ret); i-- > 0;)
                if (!run_json_of(json_array_get(*ret, i), filter))
                        json_array_remove(*ret, i);
        return 0;
}

static int http_run_logs(Backend *b, const char *id, bool follow, Renderer *rd) {
        /* The event stream in both cases: it replays the log with stdout
         * and stderr apart (the text/plain log would interleave them on
         * one stream). Without follow, ?events=1: what a run still going
         * wrote so far, without waiting for its end, as embedded. */
        json_t *run = NULL;
        int r;
        /* Following, a server that answers it cannot serve now (a gateway
         * cut from its Redis: 502/503) is waited for as follow_log() waits
         * for it, from the first look on: before, `logs -f` begun during
         * a Redis restart ended at once with exit 6, where one begun a
         * moment earlier waited through it. No answer at all (no daemon
         * there) still fails at once. */
        usec_t wait = 20 * USEC_PER_MSEC, away_since = 0;
        while ((r = http_run_get(b, id, &run)) == -EHOSTUNREACH && follow && !cli_interrupted &&
               server_away(rd, id, b->error, &away_since)) {
                free(b->error);
                b->error = NULL;
                usleep(wait);
                wait = MIN(wait * 2, 250 * USEC_PER_MSEC);
        }
        if (r < 0)
                return r;
        _cleanup_free_ char *eid = http_escape(json_string_value(json_object_get(run, "id")) ?: id), *err = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/runs/%s/logs?%s=1", eid, follow ? "follow" : "events");
        json_decref(run);
        Follow f = { .rd = rd };
        if (follow) {
                /* As `run` follows it: through a cut stream and a server
                 * that went away and came back, to the run's end. */
                r = follow_log(b, id, path, &f, &err);
                json_decref(f.end);
                if (server_gone(r))
                        return fail(b, r,
                                    xasprintf("%s; run %s was accepted and ends there: `pysprinter logs %s` has its "
                                              "output once the server is back",
                                              err, id, id));
                return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
        }
        Buf body;
        r = http_request(&b->http, &(HttpRequest) { .method = "GET", .path = path, .sse = on_sse, .sse_userdata = &f },
                         NULL, &body, &err);
        buf_free(&body);
        json_decref(f.end);
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

/* POST path with req: a deploy's answer, or a validation failure as
 * -EBADMSG (-ENOPKG for requirements) with the validation's message. */
static int http_post_deploy(Backend *b, const char *path, json_t *req, json_t **ret) {
        _cleanup_free_ char *err = NULL;
        Buf body;
        _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
        if (!text)
                return fail(b, -EINVAL, xstrdup("the deploy request cannot be written as JSON"));
        HttpRequest q = { .method = "POST", .path = path, .content_type = "application/json", .body = text,
                          .body_len = strlen(text) };
        int r = http_request(&b->http, &q, NULL, &body, &err);
        json_t *ans = body.len ? json_loadb(body.data, body.len, JSON_ALLOW_NUL, NULL) : NULL;
        buf_free(&body);
        if (r == -EBADMSG) {
                /* 422: the validation's error, as `run` prints it. */
                json_t *verr = json_object_get(json_object_get(ans, "validation"), "error");
                _cleanup_free_ char *m = json_get_string(verr, "message") ? renderer_error_text(verr) : NULL;
                if (m) {
                        /* A stack's error names the function (or the
                         * schedule) first. */
                        const char *top = json_string_value(
                                json_object_get(json_object_get(ans, "error"), "message"));
                        bool named = top && (startswith(top, "function '") || startswith(top, "schedule '"));
                        char *msg = named ? xasprintf("%.*s%s",
                                                      (int) (strstr(top, "': ") ? strstr(top, "': ") - top + 3 : 0),
                                                      top, m)
                                          : xstrdup(m);
                        free(err);
                        err = msg;
                }
                json_t *ec = json_object_get(json_object_get(ans, "validation"), "exit_code");
                if (json_integer_value(ec) == EXIT_DEPENDENCY)
                        r = -ENOPKG;
        }
        if (r < 0) {
                json_decref(ans);
                return fail(b, r, TAKE_PTR(err));
        }
        *ret = ans ?: json_object();
        return 0;
}

static int http_deploy(Backend *b, json_t *req, json_t **ret) {
        return http_post_deploy(b, "/v1/functions", req, ret);
}

static int http_alias(Backend *b, const char *method, const char *name, const char *alias, long version, json_t **ret) {
        assert(b && method && name && ret);
        if (function_name_refused(b, name) < 0)
                return -ENOENT;
        _cleanup_free_ char *err = NULL, *ename = http_escape(name), *ealias = alias ? http_escape(alias) : NULL;
        _cleanup_free_ char *path = ealias ? xasprintf("/v1/functions/%s/aliases/%s", ename, ealias)
                                           : xasprintf("/v1/functions/%s/aliases", ename);
        json_t *body = streq(method, "PUT") ? json_pack("{s:I}", "version", (json_int_t) version) : NULL;
        int r = http_json(&b->http, method, path, body, ret, &err);
        json_decref(body);
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        return 0;
}

static int http_stack(Backend *b, json_t *req, json_t **ret) {
        return http_post_deploy(b, "/v1/stacks", req, ret);
}

static int http_function(Backend *b, const char *method, const char *name, long version, json_t **ret) {
        assert(version == 0 || name);
        if (name && function_name_refused(b, name) < 0)
                return -ENOENT;
        _cleanup_free_ char *err = NULL, *ename = name ? http_escape(name) : NULL;
        _cleanup_free_ char *path = !name         ? xstrdup("/v1/functions")
                                    : version > 0 ? xasprintf("/v1/functions/%s?version=%ld", ename, version)
                                                  : xasprintf("/v1/functions/%s", ename);
        int r = http_json(&b->http, method, path, NULL, ret, &err);
        if (r == -ENOENT && name && !(err && (startswith(err, "no deployed function '") || version > 0))) {
                /* A server from before daemon_function_missing(). */
                free(err);
                err = xasprintf("no deployed function '%s'", name);
        }
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

static int http_schedule(Backend *b, const char *method, const char *path, json_t *body, json_t **ret) {
        _cleanup_free_ char *err = NULL, *full = xasprintf("/v1/schedules%s", path);
        json_t *ans = NULL;
        int r = http_json_answer(&b->http, method, full, body, &ans, &err);
        if (r >= 0) {
                *ret = ans;
                return 0;
        }
        /* 422 invalid_arguments: the validation an invoke would have
         * failed, for the verb to print as invoke does. */
        json_t *v = json_object_get(ans, "validation");
        if (r == -EBADMSG && json_is_object(v))
                *ret = json_incref(v);
        json_decref(ans);
        return fail(b, r, TAKE_PTR(err));
}

static int http_function_runs(Backend *b, const char *name, long limit, json_t **ret_array) {
        if (function_name_refused(b, name) < 0)
                return -ENOENT;
        _cleanup_free_ char *err = NULL, *ename = http_escape(name);
        _cleanup_free_ char *path = xasprintf("/v1/functions/%s/runs?limit=%ld", ename, limit);
        json_t *ans = NULL;
        int r = http_json(&b->http, "GET", path, NULL, &ans, &err);
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        *ret_array = json_incref(json_object_get(ans, "runs")) ?: json_array();
        json_decref(ans);
        return 0;
}

static int http_run_log_text(Backend *b, const char *id, Buf *ret) {
        _cleanup_free_ char *err = NULL, *eid = http_escape(id);
        _cleanup_free_ char *path = xasprintf("/v1/runs/%s/logs", eid);
        int r = http_request(&b->http, &(HttpRequest) { .method = "GET", .path = path }, NULL, ret, &err);
        if (r < 0) {
                buf_free(ret);
                return fail(b, r, TAKE_PTR(err));
        }
        return 0;
}

static int http_workers(Backend *b, json_t **ret) {
        _cleanup_free_ char *err = NULL;
        int r = http_json(&b->http, "GET", "/v1/workers", NULL, ret, &err);
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

/* ---- DAG runs ------------------------------------------------------------ */

/* Adds each task's file (read from base) to files, refusing any outside
 * base: the daemon gets the pipeline's directory, nothing else. filename:
 * the pipeline's, for messages. */
static int collect_files(Dag *d, const char *filename, const char *base, json_t *files, char **ret_error) {
        for (size_t i = 0; i < dag_n_tasks(d); i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                if (json_object_get(files, ti.file))
                        continue;
                /* The daemon's own rule (src/dag): a server only gets files
                 * under the pipeline's directory. */
                _cleanup_free_ char *why = NULL;
                int r = dag_file_check(base, ti.file, &why);
                if (r < 0) {
                        *ret_error = xasprintf("task '%s': %s", ti.name, why ?: "bad file");
                        return r == -ENOENT ? r : -EBADMSG;
                }
                _cleanup_free_ char *path = path_join(base, ti.file);
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                r = read_file(path, RUN_MAX_SOURCE_BYTES, &text, &len);
                if (r < 0) {
                        *ret_error = xasprintf("task '%s': cannot read %s: %s", ti.name, path, strerror(-r));
                        return r;
                }
                json_t *t = json_stringn(text, len);
                if (!t) {
                        /* JSON cannot carry it: said here as the engine
                         * says it embedded, where the first bad byte is. */
                        _cleanup_free_ char *bad = engine_source_error(ti.file, text, len);
                        *ret_error = xasprintf("%s:%d: task '%s' (%s): %s", filename, ti.line, ti.name, ti.file,
                                               bad ?: "not valid UTF-8");
                        return -EBADMSG;
                }
                json_object_set_new(files, ti.file, t);
        }
        return 0;
}

static int http_dag_get(Backend *b, const char *id, json_t **ret) {
        return http_object(b, "GET", true, id, ret);
}

static int http_envs(Backend *b, json_t **ret) {
        _cleanup_free_ char *err = NULL;
        int r = http_json(&b->http, "GET", "/v1/envs", NULL, ret, &err);
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

/* DELETE answers 200 with the ended run, 202 with it still ending after
 * 10 s, 409 (its message says the state) when it had ended. */
static int http_run_cancel(Backend *b, const char *id, json_t **ret) {
        return http_object(b, "DELETE", false, id, ret);
}

static int http_dag_cancel(Backend *b, const char *id, json_t **ret) {
        return http_object(b, "DELETE", true, id, ret);
}

int dag_request_body(const DagRequest *q, json_t **ret, char **ret_error) {
        assert(q && q->dag && ret && ret_error);
        json_t *files = json_object(), *params = json_object();
        json_t *pipeline = json_stringn(q->text, q->len);
        if (!pipeline) {
                json_decref(files);
                json_decref(params);
                *ret_error = xasprintf("%s: not valid UTF-8", q->filename);
                return -EBADMSG;
        }
        json_t *req = json_pack("{s:o, s:s, s:o, s:o, s:b, s:b}", "pipeline", pipeline, "filename",
                                path_base_name(q->filename), "files", files, "params", params, "keep_going",
                                q->keep_going, "no_cache", q->no_cache);
        if (q->concurrency)
                json_object_set_new(req, "concurrency", json_integer(q->concurrency));
        for (char *const *p = q->params; p && *p; p++) {
                const char *eq = strchr(*p, '=');
                _cleanup_free_ char *k = eq ? xstrndup(*p, (size_t) (eq - *p)) : xstrdup(*p);
                /* The server reads a string like a YAML plain scalar, as
                 * dag_parse() read it here. */
                json_object_set_new(params, k, json_string(eq ? eq + 1 : ""));
        }
        int r = collect_files(q->dag, q->filename, q->base_dir, files, ret_error);
        if (r < 0) {
                json_decref(req);
                return r;
        }
        *ret = req;
        return 0;
}

/* The view sees the run as the embedded path shows it: no DAG while its
 * tasks are validated (an embedded run has no id then), and none that the
 * validation refused (the caller prints the error, as embedded). */
static void show_dag(const DagRequest *q, json_t *dag, DagViewFn view, void *userdata) {
        const char *status = json_string_value(json_object_get(dag, "status")) ?: "";
        if (streq(status, "validating"))
                view(q->dag, NULL, userdata);
        else if (!streq(status, "invalid") && !streq(status, "deps_failed"))
                view(q->dag, dag, userdata);
}

/* The server names the pipeline by the base name it was sent
 * ("p.yaml:3: task 'a' …"); the user gave q->filename, which embedded
 * errors start with: the same words on both paths. */
static char *error_as_written(const DagRequest *q, const char *error) {
        if (!q->filename)
                return xstrdup(error);
        const char *base = path_base_name(q->filename);
        size_t n = strlen(base);
        if (base != q->filename && strncmp(error, base, n) == 0 && error[n] == ':')
                return xasprintf("%s%s", q->filename, error + n);
        return xstrdup(error);
}

/* The pipeline and its task files go up; the DAG run is then polled
 * (short pipelines end in milliseconds: fast at first) until it ends.
 * Ctrl-C cancels it on the server. */
static int http_dag_run(Backend *b, const DagRequest *q, DagViewFn view, void *userdata, json_t **ret) {
        if (q->resume_id)
                return fail(b, -EOPNOTSUPP,
                            xstrdup("dag resume is not available with a server: the daemon resumes the DAG runs a "
                                    "restart interrupted by itself; submit the pipeline again with `dag run`"));
        json_t *req = NULL;
        _cleanup_free_ char *err = NULL, *id = NULL;
        int r = dag_request_body(q, &req, &err);
        if (r < 0)
                return fail(b, r, TAKE_PTR(err));
        /* With --server URL,URL the submit carries a key of the CLI's own,
         * as a run's does (http_run()): a gateway that takes it and never
         * answers (frozen, killed before its answer, answering 502-504) is
         * left for the next one, which answers with the DAG run the first
         * may have started. Before, a DAG submit to a frozen gateway
         * waited for ever, and one sent again could run the DAG twice. */
        _cleanup_free_ char *hex = NULL, *key = NULL;
        if (q->idempotency_key) /* checked by the verb: nothing a header line breaks on */
                key = xasprintf("Idempotency-Key: %s", q->idempotency_key);
        else if (b->http.n_servers > 1 && random_hex(16, &hex) >= 0)
                key = xasprintf("Idempotency-Key: cli-%s", hex);
        json_t *dag = NULL;
        r = http_json_submit(&b->http, "/v1/dags", key, req, &dag, &err); /* whole, as a run's */
        json_decref(req);
        if (r == -EINVAL)
                r = -EBADMSG; /* the server refused the pipeline, as dag_parse() would */
        if (r < 0)
                return err ? fail(b, r, TAKE_PTR(err)) : r;
        if (q->detach && cli_interrupted && !cli_interrupt_handled) {
                _cleanup_free_ char *did = xstrdup(json_string_value(json_object_get(dag, "id")) ?: "");
                json_decref(dag);
                return detach_interrupted(b, true, did);
        }
        if (q->detach) {
                /* The 202's DAG run: the server has it. */
                *ret = dag;
                return 0;
        }
        id = xstrdup(json_string_value(json_object_get(dag, "id")) ?: "");
        show_dag(q, dag, view, userdata);
        usec_t wait = 20 * USEC_PER_MSEC;
        int failures = 0;
        bool cancelled = false;
        while (!dag_status_ended(json_string_value(json_object_get(dag, "status")))) {
                if (cli_interrupted && !cancelled) {
                        cancelled = true;
                        /* Handled: further requests must not stop at once.
                         * The view prints each task's end and "cancelled",
                         * as embedded: no line of its own. */
                        cli_interrupt_handled = true;
                        json_t *x = NULL;
                        if (http_dag_cancel(b, id, &x) >= 0) {
                                json_decref(dag);
                                dag = x;
                                show_dag(q, dag, view, userdata);
                                continue;
                        }
                }
                usleep(wait);
                wait = MIN(wait * 2, 250 * USEC_PER_MSEC);
                json_t *next = NULL;
                r = http_dag_get(b, id, &next);
                if (r == -EINTR)
                        continue;
                if (r < 0) {
                        /* A daemon restart resumes the run: wait a little. */
                        if ((server_gone(r) || r == -EIO) && ++failures < 20) {
                                sleep(1);
                                continue;
                        }
                        json_decref(dag);
                        return r;
                }
                failures = 0;
                json_decref(dag);
                dag = next;
                show_dag(q, dag, view, userdata);
        }
        const char *status = json_string_value(json_object_get(dag, "status"));
        if (streq(status, "invalid") || streq(status, "deps_failed")) {
                /* As the embedded path ends: its error, exit 3 or 4. */
                r = fail(b, streq(status, "invalid") ? -EBADMSG : -ENOPKG,
                         error_as_written(q, json_string_value(json_object_get(dag, "error"))
                                                     ?: "the pipeline is invalid"));
                json_decref(dag);
                return r;
        }
        *ret = dag;
        return 0;
}

static int http_dag_list(Backend *b, long limit, char *const *statuses, json_t **ret) {
        return http_list_states(b, "dags", MIN(limit, 10000L), statuses, NULL, ret);
}

/* ---- datasets ---------------------------------------------------------------- */

/* NAME[@VERSION] -> "/v1/data/NAME" + suffix + "?version=N" (or nothing). */
static int data_path(Backend *b, const char *what, const char *ref, const char *suffix, char **ret) {
        _cleanup_free_ char *name = NULL;
        int version = 0;
        if (data_parse_ref(ref, &name, &version) < 0) {
                /* The embedded path's words (data_ref_unknown), after the
                 * same verb: both backends print the same bytes. */
                _cleanup_free_ char *err = NULL;
                int r = data_ref_unknown(ref, &err);
                return fail(b, r, xasprintf("%s: %s", what, err));
        }
        _cleanup_free_ char *e = http_escape(name);
        *ret = version ? xasprintf("/v1/data/%s%s?version=%d", e, suffix, version) : xasprintf("/v1/data/%s%s", e, suffix);
        return 0;
}

static ssize_t tar_read(void *userdata, void *buf, size_t len) {
        return data_tar_stream_read(userdata, buf, len);
}

/* The embedded path's words for a tree it cannot store (data_put_as). */
static int tree_refused(Backend *b, int r, const char *source, const char *bad) {
        /* -EINVAL: the exit code data_fail() gives them embedded. */
        _cleanup_free_ char *why = data_tree_error(r, source, bad);
        if (why)
                return fail(b, -EINVAL, xasprintf("data put: %s", why));
        return fail(b, r, xasprintf("data put: cannot read %s: %s", bad ?: source, strerror(-r)));
}

static int http_data_put(Backend *b, const char *name, const char *source, const char *filename, json_t **ret) {
        _cleanup_free_ char *ename = http_escape(name), *path = NULL, *body = NULL, *err = NULL, *bad = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        DataTarStream *tar = NULL;
        HttpRequest q = { .method = "PUT" };
        /* Checked here as embedded: a name with a '/' would otherwise be
         * another path of the API ("no such endpoint"). */
        _cleanup_free_ char *bad_name = data_name_error(name);
        if (bad_name)
                return fail(b, -EINVAL, xasprintf("data put: %s", bad_name));
        if (data_source_is_url(source)) {
                /* The daemon fetches, caches and revalidates the URL. */
                json_t *o = json_pack("{s:s}", "url", source);
                body = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                if (!body)
                        return fail(b, -EINVAL, xasprintf("data put: '%s' is not a URL JSON can hold", source));
                path = xasprintf("/v1/data/%s", ename);
                q.content_type = "application/json";
                q.body = body;
                q.body_len = strlen(body);
        } else {
                /* Looked at before it is opened, as data_put_as() does
                 * embedded: a device would upload as an empty file, and
                 * opening a FIFO blocks until something writes to it. */
                struct stat st;
                if (stat(source, &st) < 0)
                        return fail(b, -ENOENT, xasprintf("data put: cannot read %s: %s", source, strerror(errno)));
                if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                        return tree_refused(b, -EPERM, source, source);
                f = fopen(source, "rbe");
                if (!f || fstat(fileno(f), &st) < 0)
                        return fail(b, -ENOENT, xasprintf("data put: cannot read %s: %s", source, strerror(errno)));
                if (S_ISDIR(st.st_mode)) {
                        /* A directory travels as a tar made while it is sent. */
                        int r = data_tar_stream_new(source, &tar, &bad);
                        if (r < 0)
                                return tree_refused(b, r, source, bad);
                        path = xasprintf("/v1/data/%s", ename);
                        q.content_type = "application/x-tar";
                        q.read = tar_read;
                        q.read_userdata = tar;
                } else {
                        /* Checked here as embedded (data_put_as()): a name
                         * the daemon's query refuses would say so in
                         * other words. */
                        _cleanup_free_ char *bad_file = data_file_name_error(filename ?: path_base_name(source));
                        if (bad_file)
                                return fail(b, -EINVAL, xasprintf("data put: %s", bad_file));
                        _cleanup_free_ char *fname = http_escape(filename ?: path_base_name(source));
                        path = xasprintf("/v1/data/%s?filename=%s", ename, fname);
                        q.content_type = "application/octet-stream";
                        q.upload = f;
                        q.upload_size = (int64_t) st.st_size;
                }
        }
        q.path = path;
        Buf ans;
        int r = http_request(&b->http, &q, NULL, &ans, &err);
        data_tar_stream_free(tar);
        *ret = r >= 0 && ans.len ? json_loadb(ans.data, ans.len, JSON_ALLOW_NUL, NULL) : NULL;
        buf_free(&ans);
        if (r < 0)
                return fail(b, r, xasprintf("data put: %s", err ?: strerror(-r)));
        if (!*ret)
                *ret = json_object();
        return 0;
}

static int http_data_info(Backend *b, const char *name, json_t **ret) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        int r = data_path(b, "data", name, "", &path);
        if (r < 0)
                return r;
        r = http_json(&b->http, "GET", path, NULL, ret, &err);
        /* The server's words are data_use()'s, as embedded: a missing
         * version is not a missing dataset. */
        if (r == -ENOENT)
                return fail(b, r, err ? xasprintf("data: %s", err) : xasprintf("data: no dataset named '%s'", name));
        return r < 0 ? fail(b, r, TAKE_PTR(err)) : 0;
}

static int http_data_list(Backend *b, json_t **ret) {
        return http_list(b, "/v1/data", "datasets", ret);
}

/* A tar the server sent (fd, at its start) unpacked to out_path. */
static int unpack_download(Backend *b, const char *ref, int fd, const char *out_path) {
        _cleanup_free_ char *name = NULL, *err = NULL;
        int version = 0;
        (void) data_parse_ref(ref, &name, &version);
        DataConfig cfg = {};
        data_config_from_env(&cfg, NULL);
        DataTarCaps caps = { .max_files = cfg.max_files, .max_bytes = cfg.max_dataset_bytes };
        if (lseek(fd, 0, SEEK_SET) < 0)
                return fail(b, -errno, xasprintf("data get: %s", strerror(errno)));
        int r = data_tar_unpack_to(fd, out_path, &caps, &err);
        if (r < 0)
                /* As data_export() says it when the target holds those names. */
                return fail(b, r, xasprintf("data get: cannot copy dataset '%s' to %s: %s (the target must not "
                                            "hold files of the same names)",
                                            name ?: ref, out_path, err ?: strerror(-r)));
        return 0;
}

/* The value of the (last) answer's header NAME (no trailing blanks), or
 * NULL. */
static char *answered_header(const Buf *headers, const char *name) {
        size_t n = strlen(name);
        char *value = NULL;
        for (const char *l = headers->data; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
                if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
                        const char *v = l + n + 1 + strspn(l + n + 1, " \t");
                        size_t len = strcspn(v, "\r\n");
                        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
                                len--;
                        free(value);
                        value = xstrndup(v, len);
                }
        return value;
}

/* Whether the (last) answer's Content-Type is a tar. */
static bool answered_tar(const Buf *headers) {
        _cleanup_free_ char *type = answered_header(headers, "Content-Type");
        return type && strncasecmp(type, "application/x-tar", 17) == 0;
}

/* Where a single-file download lands: out_path, or DIR/FILENAME when
 * out_path is a directory, as data_export() writes it embedded. FILENAME
 * is the dataset's at the version the answer carried; one that is not a
 * plain name is refused rather than written outside DIR. */
static int file_target(Backend *b, const char *ref, const char *version, const char *out_path, char **ret) {
        struct stat st;
        if (stat(out_path, &st) < 0 || !S_ISDIR(st.st_mode)) {
                *ret = xstrdup(out_path);
                return 0;
        }
        _cleanup_free_ char *name = NULL, *vref = NULL;
        int v = 0;
        (void) data_parse_ref(ref, &name, &v);
        vref = version ? xasprintf("%s@%s", name ?: ref, version) : xstrdup(ref);
        json_t *info = NULL;
        int r = http_data_info(b, vref, &info);
        if (r < 0)
                return r;
        const char *file = json_get_string(info, "filename");
        if (!file || !*file || strchr(file, '/') || streq(file, ".") || streq(file, "..")) {
                r = fail(b, -EIO,
                         xasprintf("data get: the server gave no usable file name for %s (%s)", ref, file ?: "none"));
                json_decref(info);
                return r;
        }
        *ret = path_join(out_path, file);
        json_decref(info);
        return 0;
}

/* The mode write_file_atomic() gives a file embedded: 0644 less the umask
 * (mkostemp() made it 0600). */
static int file_mode_as_embedded(int fd) {
        mode_t mask = umask(0);
        umask(mask);
        return fchmod(fd, 0644 & ~mask) < 0 ? -errno : 0;
}

/* The content is streamed to a temporary file beside out_path. The server
 * answers a single-file dataset with its bytes (the file is renamed over
 * out_path once whole) and, since the request accepts a tar, a directory
 * dataset with its tar (unpacked beside out_path and renamed:
 * data_tar_unpack_to). */
static int http_data_get(Backend *b, const char *ref, const char *out_path, char **ret_dir) {
        _cleanup_free_ char *path = NULL, *tmp = NULL, *err = NULL;
        int r = data_path(b, "data get", ref, "/content", &path);
        if (r < 0)
                return r;
        FILE *f = stdout;
        if (out_path) {
                tmp = xasprintf("%s.pysprinter-XXXXXX", out_path);
                int fd = mkostemp(tmp, O_CLOEXEC);
                if (fd < 0 || !(f = fdopen(fd, "w+b"))) {
                        r = -errno;
                        if (fd >= 0) {
                                close(fd);
                                unlink(tmp);
                        }
                        return fail(b, r, xasprintf("data get: cannot write %s: %s", out_path, strerror(-r)));
                }
        }
        Buf ans, headers;
        buf_init(&headers, 64U << 10);
        HttpRequest q = { .method = "GET", .path = path, .download = f, .headers = &headers,
                          .header = out_path ? "Accept: application/octet-stream, application/x-tar" : NULL };
        r = http_request(&b->http, &q, NULL, &ans, &err);
        buf_free(&ans);
        bool tar = r >= 0 && answered_tar(&headers);
        _cleanup_free_ char *version = answered_header(&headers, "X-Pysprinter-Data-Version"), *target = NULL;
        buf_free(&headers);
        if (r == -EBUSY && !out_path)
                /* 409: a directory, which only a tar carries; embedded
                 * prints its read-only path, a server's means nothing here. */
                r = fail(b, -EINVAL, xasprintf("data get: %s is a directory dataset: copy it out with -o DIR", ref));
        else if (r < 0)
                (void) fail(b, r, xasprintf("data get: %s", err ?: strerror(-r)));
        if (!out_path)
                return r < 0 ? r : fflush(stdout) == 0 ? 0 : -EIO;
        if (fflush(f) != 0 && r >= 0)
                r = fail(b, -errno, xasprintf("data get: cannot write %s: %s", out_path, strerror(errno)));
        if (r >= 0 && tar) {
                r = unpack_download(b, ref, fileno(f), out_path);
                unlink(tmp);
                fclose(f);
                return r;
        }
        if (r >= 0 && (r = file_mode_as_embedded(fileno(f))) < 0)
                (void) fail(b, r, xasprintf("data get: cannot write %s: %s", out_path, strerror(-r)));
        if (fclose(f) != 0 && r >= 0)
                r = fail(b, -errno, xasprintf("data get: cannot write %s: %s", out_path, strerror(errno)));
        if (r >= 0)
                r = file_target(b, ref, version, out_path, &target);
        /* Only a whole download replaces out_path: a refused one (404)
         * must leave the user's file as it was. */
        if (r >= 0 && rename(tmp, target) < 0)
                r = fail(b, -errno, xasprintf("data get: cannot write %s: %s", target, strerror(errno)));
        if (r < 0)
                unlink(tmp);
        return r;
}

static int http_data_rm(Backend *b, const char *ref) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        int r = data_path(b, "data rm", ref, "", &path);
        if (r < 0)
                return r;
        json_t *ans = NULL;
        r = http_json(&b->http, "DELETE", path, NULL, &ans, &err);
        json_decref(ans);
        return r < 0 ? fail(b, r, xasprintf("data rm: %s", err ?: strerror(-r))) : 0;
}

/* ---- secrets: /v1/secrets[/{name}] ---- */

static int http_secret_set(Backend *b, const char *name, const char *value, size_t len, json_t **ret) {
        _cleanup_free_ char *ename = http_escape(name), *err = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/secrets/%s", ename);
        json_t *v = json_stringn(value, len);
        if (!v) /* secret_set_verb() checked it is UTF-8 */
                return fail(b, -EINVAL, xstrdup("secret set: the value cannot be sent as JSON"));
        json_t *req = json_pack("{s:o}", "value", v);
        /* secret_set_verb() lets an empty value through only when asked
         * (--allow-empty): the API asks for it in words too. */
        if (len == 0)
                json_object_set_new(req, "allow_empty", json_true());
        int r = http_json(&b->http, "PUT", path, req, ret, &err);
        json_decref(req);
        return r < 0 ? fail(b, r, xasprintf("secret set: %s", err ?: strerror(-r))) : 0;
}

static int http_secret_list(Backend *b, json_t **ret) {
        return http_list(b, "/v1/secrets", "secrets", ret);
}

static int http_secret_rm(Backend *b, const char *name) {
        _cleanup_free_ char *ename = http_escape(name), *err = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/secrets/%s", ename);
        json_t *ans = NULL;
        int r = http_json(&b->http, "DELETE", path, NULL, &ans, &err);
        /* The functions that name it (docs/secrets.md), on stderr. */
        if (r >= 0)
                renderer_answer_warnings(NULL, ans);
        json_decref(ans);
        return r < 0 ? fail(b, r, err ? TAKE_PTR(err) : xstrdup(strerror(-r))) : 0;
}

static int http_secret_rotate_key(Backend *b, size_t *ret_n) {
        return fail(b, -EOPNOTSUPP,
                    xstrdup("secret rotate-key: a server's secrets key is its operator's: run `pysprinterd secret "
                            "rotate-key` on its machine (docs/secrets.md \"Rotating the key\")"));
}

static void http_backend_free(Backend *b) {
        http_close(&b->http);
}

static const BackendOps http_ops = {
        .run = http_run,
        .run_get = http_run_get,
        .run_list = http_run_list,
        .run_logs = http_run_logs,
        .deploy = http_deploy,
        .stack = http_stack,
        .function = http_function,
        .alias = http_alias,
        .schedule = http_schedule,
        .function_runs = http_function_runs,
        .run_log_text = http_run_log_text,
        .workers = http_workers,
        .dag_run = http_dag_run,
        .dag_get = http_dag_get,
        .dag_list = http_dag_list,
        .dag_cancel = http_dag_cancel,
        .run_cancel = http_run_cancel,
        .envs = http_envs,
        .data_put = http_data_put,
        .data_info = http_data_info,
        .data_list = http_data_list,
        .data_get = http_data_get,
        .data_rm = http_data_rm,
        .secret_set = http_secret_set,
        .secret_list = http_secret_list,
        .secret_rm = http_secret_rm,
        .secret_rotate_key = http_secret_rotate_key,
        .free = http_backend_free,
};

int backend_http_new(const char *server, Backend **ret, char **ret_error) {
        Http h;
        int r = http_open(server, &h, ret_error);
        if (r < 0)
                return r;
        Backend *b = xcalloc(1, sizeof(Backend));
        *b = (Backend) { .ops = &http_ops, .remote = true, .http = h };
        *ret = b;
        return 0;
}
