/* The HTTP layer: libmicrohttpd with one thread per connection.
 *
 * Why per-connection threads rather than a fixed pool: `?wait=true`,
 * `?follow=1` and synchronous Lambda invokes hold their connection for the
 * whole run. With a pool, a handful of such clients would starve everyone
 * else; with a thread each (bounded by server.max_connections) a waiting
 * request blocks only itself, and its handler can watch its own socket to
 * notice a client that went away and cancel the run. */
#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "config.h"
#include "daemon-ui.h"
#include "daemon.h"
#include "pkg.h"

typedef struct Req {
        Buf body;
        size_t discarded;
        bool too_big;
        bool responded;
        bool started;           /* the first access-handler call happened */
        char *bad_url;          /* why the raw request target is refused (400) */
        char *target;           /* the request target as sent (SigV4 signs it) */
} Req;

typedef struct Ctx {
        Daemon *d;
        struct MHD_Connection *conn;
        const char *method;
        const char *tenant;
        char tenant_buf[72];
        TokenRole role;
        bool lambda;            /* Lambda API: AWS-style error bodies */
        const Req *req;
} Ctx;

/* ---- responses ------------------------------------------------------------ */

/* Server paths (data dir, the binaries' directories) that must not reach a
 * client: an error saying "cannot open /srv/pysprinter/..." tells a tenant
 * where the daemon keeps everything. Set once before the HTTP threads
 * start; read-only afterwards. */
#define SCRUB_MAX 8
static struct {
        char *prefix;
        const char *as;
} scrub_list[SCRUB_MAX];
static size_t n_scrub;

static void scrub_add(const char *path, const char *as) {
        if (!path || strlen(path) < 6 || n_scrub >= SCRUB_MAX || strlen(as) > strlen(path))
                return;
        _cleanup_free_ char *p = xstrdup(path);
        while (strlen(p) > 1 && endswith(p, "/"))
                p[strlen(p) - 1] = 0;
        for (size_t i = 0; i < n_scrub; i++)
                if (streq(scrub_list[i].prefix, p))
                        return;
        /* Longest first, so a data dir inside the build dir is named as
         * the data dir. */
        size_t at = n_scrub;
        while (at > 0 && strlen(scrub_list[at - 1].prefix) < strlen(p)) {
                scrub_list[at] = scrub_list[at - 1];
                at--;
        }
        scrub_list[at].prefix = TAKE_PTR(p);
        scrub_list[at].as = as;
        n_scrub++;
}

static void scrub_add_real(const char *path, const char *as) {
        scrub_add(path, as);
        _cleanup_free_ char *real = path ? realpath(path, NULL) : NULL;
        scrub_add(real, as);
}

/* The directory of path, if it is one worth hiding (three components or
 * more: /usr/bin stays). */
static void scrub_add_dir_of(const char *path, const char *as) {
        if (!path)
                return;
        _cleanup_free_ char *real = realpath(path, NULL), *dir = NULL;
        if (!real)
                return;
        char *slash = strrchr(real, '/');
        if (!slash)
                return;
        *slash = 0;
        size_t parts = 0;
        for (const char *q = real; *q; q++)
                parts += *q == '/';
        if (parts >= 3)
                scrub_add(real, as);
}

static void scrub_init(Daemon *d) {
        scrub_add_real(d->data_dir, "$DATA");
        /* The binaries' build or install tree: its top (two levels above
         * the daemon, e.g. BUILD/src/daemon -> BUILD) covers the worker. */
        _cleanup_free_ char *exe = realpath("/proc/self/exe", NULL);
        if (exe) {
                _cleanup_free_ char *top = xstrdup(exe);
                for (int up = 0; up < 3; up++) {
                        char *slash = strrchr(top, '/');
                        if (!slash)
                                break;
                        *slash = 0;
                }
                size_t parts = 0;
                for (const char *q = top; *q; q++)
                        parts += *q == '/';
                if (parts >= 2 && !streq(top, "/usr") && !startswith(top, "/usr/"))
                        scrub_add(top, "$PREFIX");
                scrub_add_dir_of(exe, "$PREFIX");
        }
        scrub_add_dir_of(getenv("PYSPRINTER_WORKER"), "$PREFIX");
        scrub_add_real(getenv("HOME"), "~");
}

char *daemon_scrub(char *s) {
        if (!s)
                return s;
        for (size_t i = 0; i < n_scrub; i++) {
                size_t pl = strlen(scrub_list[i].prefix), al = strlen(scrub_list[i].as);
                for (char *hit = strstr(s, scrub_list[i].prefix); hit; hit = strstr(hit + al, scrub_list[i].prefix)) {
                        memcpy(hit, scrub_list[i].as, al);
                        memmove(hit + al, hit + pl, strlen(hit + pl) + 1);
                }
        }
        return s;
}

static void count_status(Daemon *d, unsigned status) {
        __atomic_add_fetch(&d->metrics.http_requests, 1, __ATOMIC_RELAXED);
        if (status >= 500)
                __atomic_add_fetch(&d->metrics.http_errors_5xx, 1, __ATOMIC_RELAXED);
        else if (status >= 400)
                __atomic_add_fetch(&d->metrics.http_errors_4xx, 1, __ATOMIC_RELAXED);
}

/* Queues body (malloc'd, taken) with status and NULL-terminated header
 * name/value pairs. */
static enum MHD_Result respond_raw(Ctx *c, unsigned status, const char *content_type, char *body, size_t len,
                                   const char *const *headers) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        if (content_type)
                MHD_add_response_header(resp, "Content-Type", content_type);
        for (size_t i = 0; headers && headers[i]; i += 2)
                if (headers[i + 1])
                        MHD_add_response_header(resp, headers[i], headers[i + 1]);
        enum MHD_Result ret = MHD_queue_response(c->conn, status, resp);
        MHD_destroy_response(resp);
        count_status(c->d, status);
        return ret;
}

static enum MHD_Result respond_json_h(Ctx *c, unsigned status, json_t *j, const char *const *headers) {
        /* Exact reals, shortest spelling: a result's 3.141592653589793 must
         * come back as it went in (basic-json.c). */
        _cleanup_free_ char *exact = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        char *s = exact ? json_shorten_reals(exact) : NULL;
        json_decref(j);
        if (!s)
                s = xstrdup("{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode the response\"}}");
        /* An admin (the operator, or the local user of --no-auth) may see
         * the server's paths; nobody else does. */
        if (c->role != TOKEN_ROLE_ADMIN)
                daemon_scrub(s);
        size_t n = strlen(s);
        /* A trailing newline is friendlier to curl users; JSON allows it. */
        s = xrealloc(s, n + 2);
        s[n] = '\n';
        s[n + 1] = 0;
        return respond_raw(c, status, "application/json", s, n + 1, headers);
}

static enum MHD_Result respond_json(Ctx *c, unsigned status, json_t *j) {
        return respond_json_h(c, status, j, NULL);
}

static const char *lambda_error_type(unsigned status, const char *code) {
        switch (status) {
        case 400:
        case 413:
                return status == 413 ? "RequestTooLargeException" : "InvalidRequestContentException";
        case 401:
        case 403:
                return "UnrecognizedClientException";
        case 404:
                return "ResourceNotFoundException";
        case 405:
                return "InvalidRequestContentException";
        case 429:
                return "TooManyRequestsException";
        default:
                return streq(code, "shutting_down") ? "ServiceException" : "ServiceException";
        }
}

/* Every error is {"error": {"code", "message"}}; on the Lambda API the body
 * also carries AWS's fields so AWS SDKs raise the right exception. */
static enum MHD_Result respond_error_h(Ctx *c, unsigned status, const char *code, const char *const *headers,
                                       const char *fmt, ...) _printf_(5, 6);
static enum MHD_Result respond_error_h(Ctx *c, unsigned status, const char *code, const char *const *headers,
                                       const char *fmt, ...) {
        va_list ap;
        char *msg;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        json_t *j = json_pack("{s{ssss}}", "error", "code", code, "message", msg ? msg : code);
        const char *h[12] = {};
        size_t n = 0;
        if (c->lambda) {
                const char *type = lambda_error_type(status, code);
                json_object_set_new(j, "Type", json_string(status >= 500 ? "Service" : "User"));
                json_object_set_new(j, "message", json_string(msg ? msg : code));
                json_object_set_new(j, "__type", json_string(type));
                h[n++] = "x-amzn-ErrorType";
                h[n++] = type;
        }
        for (size_t i = 0; headers && headers[i] && n + 2 < ELEMENTSOF(h); i += 2) {
                h[n++] = headers[i];
                h[n++] = headers[i + 1];
        }
        free(msg);
        return respond_json_h(c, status, j, h);
}

#define respond_error(c, status, code, ...) respond_error_h(c, status, code, NULL, __VA_ARGS__)

static enum MHD_Result respond_errno(Ctx *c, int r, const char *what) {
        switch (r) {
        case -ENOENT:
                return respond_error(c, 404, "not_found", "%s not found", what);
        case -EBUSY:
                return respond_error_h(c, 429, "too_many_requests", (const char *const[]) { "Retry-After", "2", NULL },
                                       "the run queue is full; retry later");
        case -ESHUTDOWN:
                return respond_error_h(c, 503, "shutting_down", (const char *const[]) { "Retry-After", "5", NULL },
                                       "the daemon is shutting down");
        case -EEXIST:
                return respond_error(c, 400, "ambiguous", "%s: the id prefix matches several", what);
        default:
                return respond_error(c, 500, "internal", "%s: %s", what, strerror(-r));
        }
}

/* ---- small helpers -------------------------------------------------------- */

static const char *query(Ctx *c, const char *key) {
        return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
}

static bool query_true(Ctx *c, const char *key) {
        const char *v = query(c, key);
        return v && (streq(v, "") || streq(v, "1") || streq(v, "true") || streq(v, "yes"));
}

static int client_fd(Ctx *c) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        return ci ? ci->connect_fd : -1;
}

static RequestCaps caps_of(Daemon *d) {
        return (RequestCaps) {
                .max_depth = d->cfg.max_json_depth,
                .max_values = d->cfg.max_json_values,
        };
}

/* Replaces *l with what the config grants c's tenant for it (absent fields
 * become the tenant's defaults). false once a 403 is queued: the request
 * asked for more than the operator gives this tenant. */
static bool grant_limits(Ctx *c, RunLimits *l, enum MHD_Result *ret) {
        _cleanup_free_ char *err = NULL;
        RunLimits out;
        pthread_rwlock_rdlock(&c->d->cfg_lock);
        int k = daemon_limits_grant(&c->d->cfg, c->tenant, l, &out, &err);
        pthread_rwlock_unlock(&c->d->cfg_lock);
        if (k < 0) {
                *ret = respond_error(c, 403, "forbidden", "%s", err);
                return false;
        }
        *l = out;
        return true;
}

static json_t *json_or_null(const char *text) {
        if (!text)
                return json_null();
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        return j ? j : json_string(text);
}

static json_t *time_json(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

static json_t *run_json(const RunRecord *r, const char *phase) {
        _cleanup_free_ char *text = run_record_to_json(r, phase);
        json_t *j = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
        return j ?: json_pack("{s:s, s:s}", "id", r->id, "status", r->status ?: "queued");
}

/* The run as the API shows it: the record, plus the live phase while it is
 * in flight. */
static int run_lookup_json(Daemon *d, const char *tenant, const char *id, json_t **ret, char **ret_id) {
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        _cleanup_free_ char *phase = NULL;
        DRun *r;
        int k;

        k = store_run_get(d->store, tenant, id, &rec);
        if (k < 0)
                return k;
        if (daemon_run_find(d, tenant, rec->id, &r) >= 0) {
                pthread_mutex_lock(&d->lock);
                phase = r->phase ? xstrdup(r->phase) : NULL;
                pthread_mutex_unlock(&d->lock);
                drun_unref(d, r);
        }
        *ret = run_json(rec, phase);
        if (ret_id)
                *ret_id = xstrdup(rec->id);
        return 0;
}

/* ---- auth ------------------------------------------------------------------ */

static char *bearer_token(Ctx *c) {
        const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return NULL;
        _cleanup_free_ char *t = xstrdup(h + 7);
        return xstrdup(strstrip(t));
}

static const char *sigv4_header(void *userdata, const char *name) {
        return MHD_lookup_connection_value(userdata, MHD_HEADER_KIND, name);
}

/* AWS SDKs sign with SigV4: the key id names a tokens entry with an
 * access_key_id, whose secret must verify the signature. Any failure is a
 * 403, as AWS answers. */
static bool authenticate_sigv4(Ctx *c, const char *h, enum MHD_Result *ret) {
        Daemon *d = c->d;
        _cleanup_free_ char *err = NULL, *secret = NULL;
        SigV4Auth a = {};
        TokenRole role = TOKEN_ROLE_READONLY;
        int k = sigv4_parse_authorization(h, &a, &err);
        if (k >= 0) {
                pthread_rwlock_rdlock(&d->cfg_lock);
                const DaemonToken *t = daemon_config_find_access_key(&d->cfg, a.access_key_id);
                if (t) {
                        secret = xstrdup(t->secret_access_key);
                        role = t->role;
                        snprintf(c->tenant_buf, sizeof(c->tenant_buf), "%s", t->tenant);
                }
                pthread_rwlock_unlock(&d->cfg_lock);
                if (!secret) {
                        err = xstrdup("The security token included in the request is invalid (unknown access key id)");
                        k = -EPERM;
                }
        }
        if (k >= 0) {
                SigV4Request rq = {
                        .method = c->method,
                        .raw_target = c->req && c->req->target ? c->req->target : "/",
                        .header = sigv4_header,
                        .userdata = c->conn,
                        .body = c->req ? c->req->body.data : NULL,
                        .body_len = c->req ? c->req->body.len : 0,
                };
                k = sigv4_verify(&rq, &a, secret, now_realtime(), &err);
        }
        if (secret)
                OPENSSL_cleanse(secret, strlen(secret));
        sigv4_auth_done(&a);
        if (k < 0) {
                *ret = respond_error(c, 403, "forbidden", "%s", err);
                return false;
        }
        c->tenant = c->tenant_buf;
        c->role = role;
        return true;
}

/* Returns true when authenticated (c->tenant set); otherwise a 401/403 has
 * been queued and *ret says how. */
static bool authenticate(Ctx *c, bool mutating, enum MHD_Result *ret) {
        Daemon *d = c->d;

        if (d->no_auth) {
                c->tenant = "local";
                c->role = TOKEN_ROLE_ADMIN;
                return true;
        }
        const char *authz = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
        if (authz && startswith(authz, "AWS4-HMAC-SHA256")) {
                if (!authenticate_sigv4(c, authz, ret))
                        return false;
                if (mutating && c->role == TOKEN_ROLE_READONLY) {
                        *ret = respond_error(c, 403, "forbidden", "this token is read-only");
                        return false;
                }
                return true;
        }
        if (!authz) { /* UI hook: a dashboard session cookie stands for its token */
                unsigned st = 401;
                const char *msg = NULL;
                int k = daemon_ui_session_auth(d, c->conn, mutating, c->tenant_buf, sizeof(c->tenant_buf), &c->role,
                                               &st, &msg);
                if (k < 0) {
                        *ret = respond_error(c, st, st == 401 ? "unauthorized" : "forbidden", "%s", msg);
                        return false;
                }
                if (k > 0) {
                        c->tenant = c->tenant_buf;
                        if (mutating && c->role == TOKEN_ROLE_READONLY) {
                                *ret = respond_error(c, 403, "forbidden", "this token is read-only");
                                return false;
                        }
                        return true;
                }
        }
        _cleanup_free_ char *tok = bearer_token(c);
        if (!tok || !*tok) {
                *ret = respond_error_h(c, 401, "unauthorized",
                                       (const char *const[]) { "WWW-Authenticate", "Bearer realm=\"pysprinter\"", NULL },
                                       "missing bearer token: send 'Authorization: Bearer TOKEN'");
                return false;
        }
        pthread_rwlock_rdlock(&d->cfg_lock);
        const DaemonToken *t = daemon_config_find_token(&d->cfg, tok);
        TokenRole role = t ? t->role : TOKEN_ROLE_READONLY;
        if (t)
                snprintf(c->tenant_buf, sizeof(c->tenant_buf), "%s", t->tenant);
        pthread_rwlock_unlock(&d->cfg_lock);
        if (!t) {
                *ret = respond_error_h(c, 401, "unauthorized",
                                       (const char *const[]) { "WWW-Authenticate", "Bearer error=\"invalid_token\"", NULL },
                                       "invalid token");
                return false;
        }
        if (mutating && role == TOKEN_ROLE_READONLY) {
                *ret = respond_error(c, 403, "forbidden", "this token is read-only");
                return false;
        }
        c->tenant = c->tenant_buf;
        c->role = role;
        return true;
}

/* ---- runs ------------------------------------------------------------------ */

/* Waits for a run the request is holding on to; on success answers 200 with
 * the finished run, 202 on timeout. A client that hung up cancels the run. */
static enum MHD_Result respond_after_wait(Ctx *c, DRun *r, const char *const *extra_headers) {
        Daemon *d = c->d;
        const char *t = query(c, "timeout");
        usec_t timeout = (usec_t) d->cfg.max_wait_s * USEC_PER_SEC;
        if (t) {
                char *end;
                unsigned long long s = strtoull(t, &end, 10);
                if (*end == 0 && s > 0 && s < d->cfg.max_wait_s)
                        timeout = s * USEC_PER_SEC;
        }
        int k = daemon_run_wait(d, r, client_fd(c), timeout);
        if (k == -ECONNRESET) {
                log_info("run %s: client went away; cancelling", r->id);
                daemon_run_cancel(d, r);
                return MHD_NO;
        }
        json_t *j = NULL;
        int q = run_lookup_json(d, c->tenant, r->id, &j, NULL);
        if (q < 0)
                return respond_errno(c, q, "run");
        return respond_json_h(c, k == 1 ? 200 : 202, j, extra_headers);
}

static enum MHD_Result submit_and_respond(Ctx *c, const RunRequest *req, const char *fn_name, int fn_version) {
        Daemon *d = c->d;
        DRun *r;
        int k = daemon_run_submit(d, NULL, c->tenant, req, fn_name, fn_version, false, &r);
        if (k < 0)
                return respond_errno(c, k, "run");
        _cleanup_free_ char *loc = xasprintf("/v1/runs/%s", r->id);
        const char *h[] = { "Location", loc, NULL };
        enum MHD_Result ret;
        if (query_true(c, "wait"))
                ret = respond_after_wait(c, r, h);
        else {
                json_t *j = NULL;
                int q = run_lookup_json(d, c->tenant, r->id, &j, NULL);
                ret = q < 0 ? respond_errno(c, q, "run") : respond_json_h(c, 202, j, h);
        }
        drun_unref(d, r);
        return ret;
}

static enum MHD_Result handle_runs_post(Ctx *c, const Buf *body) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = caps_of(c->d);
        enum MHD_Result ret;
        int k = request_parse(REQUEST_RUN, body->data, body->len, &caps, &req, &err);
        if (k < 0)
                return respond_error(c, 400, "bad_request", "%s", err);
        if (grant_limits(c, &req.limits, &ret))
                ret = submit_and_respond(c, &req, NULL, 0);
        run_request_done(&req);
        return ret;
}

static enum MHD_Result handle_runs_list(Ctx *c) {
        RunRecord **v = NULL;
        size_t n = 0, limit = 100;
        const char *l = query(c, "limit");
        if (l) {
                char *end;
                unsigned long long x = strtoull(l, &end, 10);
                if (*end || x == 0 || x > 10000)
                        return respond_error(c, 400, "bad_request", "query 'limit' must be an integer in 1..10000");
                limit = x;
        }
        const char *status = query(c, "status");
        int k = store_run_list(c->d->store, c->tenant, limit, &v, &n);
        if (k < 0)
                return respond_errno(c, k, "runs");
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                if (!status || (v[i]->status && streq(v[i]->status, status)))
                        json_array_append_new(a, run_json(v[i], NULL));
        run_record_list_free(v, n);
        return respond_json(c, 200, json_pack("{so}", "runs", a));
}

static enum MHD_Result handle_run_get(Ctx *c, const char *id) {
        json_t *j;
        int k = run_lookup_json(c->d, c->tenant, id, &j, NULL);
        if (k < 0)
                return respond_errno(c, k, "run");
        return respond_json(c, 200, j);
}

static enum MHD_Result handle_run_delete(Ctx *c, const char *id) {
        Daemon *d = c->d;
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        DRun *r;
        int k = store_run_get(d->store, c->tenant, id, &rec);
        if (k < 0)
                return respond_errno(c, k, "run");
        if (daemon_run_find(d, c->tenant, rec->id, &r) < 0)
                return respond_error(c, 409, "conflict", "run %s has already finished (%s)", rec->id, rec->status);
        daemon_run_cancel(d, r);
        (void) daemon_run_wait(d, r, -1, 10 * USEC_PER_SEC);
        drun_unref(d, r);
        json_t *j;
        k = run_lookup_json(d, c->tenant, rec->id, &j, NULL);
        if (k < 0)
                return respond_errno(c, k, "run");
        return respond_json(c, 200, j);
}

/* ---- logs ------------------------------------------------------------------ */

static void log_collect(const RunEvent *ev, void *userdata) {
        Buf *b = userdata;
        if (ev->type == RUN_EVENT_OUTPUT)
                (void) buf_append(b, ev->data, ev->len);
}

typedef struct SseEvent {
        Buf *out;
} SseEvent;

static void sse_output(Buf *out, int stream, const char *data, size_t len) {
        json_t *j = json_pack("{s:s, s:s#}", "stream", stream == 2 ? "stderr" : "stdout", "text", data, (int) len);
        if (!j) /* not UTF-8: send it lossy rather than drop it */
                j = json_pack("{ssss}", "stream", stream == 2 ? "stderr" : "stdout", "text", "\xef\xbf\xbd");
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        buf_printf(out, "event: output\ndata: %s\n\n", s);
        free(s);
}

static void log_collect_sse(const RunEvent *ev, void *userdata) {
        if (ev->type == RUN_EVENT_OUTPUT)
                sse_output(userdata, ev->stream, ev->data, ev->len);
}

static void sse_end(Buf *out, json_t *run) {
        char *s = json_dumps(run, JSON_COMPACT);
        buf_printf(out, "event: end\ndata: %s\n\n", s);
        free(s);
}

typedef struct SseStream {
        Daemon *d;
        DRun *r;
        char *tenant;
        int fd;
        size_t next_chunk;
        size_t chunk_off;       /* bytes of next_chunk already sent */
        Buf out;
        size_t out_off;
        bool ended;
} SseStream;

static void sse_free(void *cls) {
        SseStream *s = cls;
        drun_unref(s->d, s->r);
        buf_free(&s->out);
        free(s->tenant);
        free(s);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
        SseStream *s = cls;
        Daemon *d = s->d;

        while (s->out_off >= s->out.len) {
                buf_reset(&s->out);
                s->out_off = 0;
                if (s->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;

                bool done = false;
                pthread_mutex_lock(&d->lock);
                DRun *r = s->r;
                bool nothing_new = s->next_chunk >= r->n_chunks ||
                                   (s->next_chunk + 1 == r->n_chunks &&
                                    s->chunk_off >= r->chunks[s->next_chunk].len && r->chunks[s->next_chunk].stream != 0);
                if (nothing_new && !r->done) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_sec += 5;
                        pthread_cond_timedwait(&d->change_cond, &d->lock, &ts);
                }
                /* Copy what is new, at most 64 KiB per event. */
                while (s->next_chunk < r->n_chunks && s->out.len < 256 * 1024) {
                        const LogChunk *ch = &r->chunks[s->next_chunk];
                        if (ch->stream == 0) {
                                buf_printf(&s->out, "event: phase\ndata: {\"phase\":\"%s\"}\n\n", ch->phase);
                                s->next_chunk++;
                                continue;
                        }
                        size_t avail = ch->len - s->chunk_off;
                        size_t n = MIN(avail, (size_t) 64 * 1024);
                        /* Chunks grow while the run writes; this one may
                         * get longer, so remember how far we got. */
                        if (n > 0)
                                sse_output(&s->out, ch->stream, r->log.data + ch->offset + s->chunk_off, n);
                        s->chunk_off += n;
                        if (s->next_chunk + 1 < r->n_chunks || r->done) {
                                if (s->chunk_off >= ch->len) {
                                        s->next_chunk++;
                                        s->chunk_off = 0;
                                }
                        } else
                                break;
                }
                done = r->done && s->next_chunk >= r->n_chunks;
                pthread_mutex_unlock(&d->lock);

                if (done) {
                        json_t *j = NULL;
                        if (run_lookup_json(d, s->tenant, r->id, &j, NULL) >= 0) {
                                sse_end(&s->out, j);
                                json_decref(j);
                        }
                        s->ended = true;
                } else if (s->out.len == 0) {
                        /* Nothing new: a comment keeps proxies from timing
                         * out and tells us when the client went away (the
                         * write fails). */
                        buf_appends(&s->out, ": keep-alive\n\n");
                }
        }
        size_t n = MIN(max, s->out.len - s->out_off);
        memcpy(buf, s->out.data + s->out_off, n);
        s->out_off += n;
        return (ssize_t) n;
}

static enum MHD_Result handle_run_logs(Ctx *c, const char *id) {
        Daemon *d = c->d;
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        DRun *r;
        bool follow = query_true(c, "follow");
        int k = store_run_get(d->store, c->tenant, id, &rec);
        if (k < 0)
                return respond_errno(c, k, "run");

        if (daemon_run_find(d, c->tenant, rec->id, &r) >= 0) {
                if (!follow) {
                        size_t n;
                        char *t = drun_log_text(d, r, &n);
                        drun_unref(d, r);
                        return respond_raw(c, 200, "text/plain; charset=utf-8", t, n, NULL);
                }
                SseStream *s = xcalloc(1, sizeof(SseStream));
                s->d = d;
                s->r = r;
                s->tenant = xstrdup(c->tenant);
                s->fd = client_fd(c);
                buf_init(&s->out, SIZE_MAX);
                struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_read, s,
                                                                              sse_free);
                if (!resp) {
                        sse_free(s);
                        return MHD_NO;
                }
                MHD_add_response_header(resp, "Content-Type", "text/event-stream");
                MHD_add_response_header(resp, "Cache-Control", "no-cache");
                MHD_add_response_header(resp, "X-Accel-Buffering", "no");
                enum MHD_Result ret = MHD_queue_response(c->conn, 200, resp);
                MHD_destroy_response(resp);
                count_status(d, 200);
                return ret;
        }

        /* Finished: the log file, whole. */
        Buf b;
        buf_init(&b, 256U << 20);
        if (follow) {
                if (rec->log_path)
                        (void) engine_log_replay(rec->log_path, log_collect_sse, &b);
                json_t *j = run_json(rec, NULL);
                sse_end(&b, j);
                json_decref(j);
        } else if (rec->log_path)
                (void) engine_log_replay(rec->log_path, log_collect, &b);
        size_t n = b.len;
        char *t = buf_steal(&b);
        return respond_raw(c, 200, follow ? "text/event-stream" : "text/plain; charset=utf-8", t, n, NULL);
}

/* ---- validate --------------------------------------------------------------- */

typedef struct ValidateOut {
        Buf warnings;
} ValidateOut;

typedef struct ValidationCtx {
        Daemon *d;
        const char *tenant;
} ValidationCtx;

static void on_validation_event(const RunEvent *ev, void *userdata) {
        ValidationCtx *v = userdata;
        daemon_env_note(v->d, v->tenant, ev);
}

static int run_validation(Daemon *d, const char *tenant, const RunRequest *req, bool check_arguments,
                          RunResult **ret) {
        ValidationCtx vctx = { .d = d, .tenant = tenant };
        RunSpec spec = {
                .tenant = tenant,
                .source = req->source,
                .source_len = req->source_len,
                .filename = req->filename ? req->filename : "main.py",
                .function = req->function,
                .args_json = req->args_json,
                .kwargs_json = req->kwargs_json,
                .limits = req->limits,
                .sandbox = d->cfg.sandbox,
                .validate_only = true,
                .skip_argument_check = !check_arguments,
                .no_record = true,
        };
        return engine_run(d->engine, &spec, on_validation_event, &vctx, ret);
}

static json_t *validation_json(const RunResult *res) {
        bool ok = res->status == RUN_SUCCEEDED || res->exit_code == 0;
        json_t *j = json_pack("{sbsisO}", "valid", ok, "exit_code", res->exit_code, "status",
                              json_string(run_status_to_string(res->status)));
        json_decref(json_object_get(j, "status")); /* "O" took a reference */
        json_object_set_new(j, "function", res->function ? json_string(res->function) : json_null());
        if (!ok)
                json_object_set_new(j, "error",
                                    json_pack("{s:s?, s:s?, s:s?}", "type", res->error_type, "message",
                                              res->error_message, "traceback", res->traceback));
        else
                json_object_set_new(j, "error", json_null());
        return j;
}

static enum MHD_Result handle_validate(Ctx *c, const Buf *body) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = caps_of(c->d);
        RunResult *res = NULL;
        int k = request_parse(REQUEST_VALIDATE, body->data, body->len, &caps, &req, &err);
        if (k < 0)
                return respond_error(c, 400, "bad_request", "%s", err);
        k = run_validation(c->d, c->tenant, &req, true, &res);
        run_request_done(&req);
        if (k < 0)
                return respond_errno(c, k, "validation");
        json_t *j = validation_json(res);
        run_result_free(res);
        return respond_json(c, 200, j);
}

/* ---- functions ------------------------------------------------------------ */

static json_t *function_json(Daemon *d, const FunctionRecord *f) {
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(f->name));
        json_object_set_new(j, "version", json_integer(f->version));
        json_object_set_new(j, "filename", f->filename ? json_string(f->filename) : json_null());
        json_object_set_new(j, "function", f->function ? json_string(f->function) : json_null());
        json_object_set_new(j, "description", f->description ? json_string(f->description) : json_null());
        json_object_set_new(j, "requirements", json_or_null(f->requirements_json));
        json_object_set_new(j, "limits", json_or_null(f->limits_json));
        json_object_set_new(j, "created_at", time_json(f->created));
        char hex[65];
        sha256_hex(f->source, f->source_len, hex);
        json_object_set_new(j, "source_sha256", json_string(hex));
        return j;
}

static char *python_dict_literal(const char *requirements_json) {
        /* A JSON object of strings is also a Python dict literal (jansson
         * never emits the one escape Python lacks, "\/"). */
        return xstrdup(requirements_json);
}

static enum MHD_Result handle_deploy(Ctx *c, const Buf *body) {
        Daemon *d = c->d;
        _cleanup_free_ char *err = NULL, *source = NULL, *limits = NULL, *loc = NULL, *fname = NULL;
        RunRequest req = {};
        RequestCaps caps = caps_of(d);
        RunResult *res = NULL;
        enum MHD_Result ret;
        int k = request_parse(REQUEST_DEPLOY, body->data, body->len, &caps, &req, &err);
        if (k < 0)
                return respond_error(c, 400, "bad_request", "%s", err);
        /* The deploy keeps the limits as asked (defaults follow the config);
         * each invoke is granted again, as the config may have changed. */
        {
                RunLimits granted = req.limits;
                if (!grant_limits(c, &granted, &ret))
                        goto out;
        }

        /* Requirements given beside the file become its decorator, so the
         * engine sees one kind of function. */
        if (req.requirements_json) {
                size_t off;
                if (strstr(req.source, "@requirements")) {
                        ret = respond_error(c, 400, "bad_request",
                                            "field 'requirements': the source already declares @requirements; use one or the other");
                        goto out;
                }
                if (!req.function) {
                        ret = respond_error(c, 400, "bad_request", "field 'requirements' needs field 'function'");
                        goto out;
                }
                if (python_def_offset(req.source, req.source_len, req.function, &off) < 0) {
                        ret = respond_error(c, 400, "bad_request", "field 'function': no top-level 'def %s(' in the source",
                                            req.function);
                        goto out;
                }
                _cleanup_free_ char *lit = python_dict_literal(req.requirements_json);
                source = xasprintf("%.*s@requirements(%s)\n%s", (int) off, req.source, lit, req.source + off);
                free(req.source);
                req.source = TAKE_PTR(source);
                req.source_len = strlen(req.source);
        }

        /* A deploy has no arguments yet: check the file and resolve its
         * requirements, not a call. */
        k = run_validation(d, c->tenant, &req, false, &res);
        if (k < 0) {
                ret = respond_errno(c, k, "validation");
                goto out;
        }
        if (res->exit_code != 0) {
                json_t *j = validation_json(res);
                json_t *e = json_object_get(j, "error");
                const char *msg = json_string_value(json_object_get(e, "message"));
                json_t *out = json_pack("{s{ssss}so}", "error", "code", "invalid_function", "message",
                                        msg ? msg : "the function does not validate", "validation", j);
                ret = respond_json(c, 422, out);
                goto out;
        }

        {
                json_t *l = json_object();
                if (req.limits.timeout_ms)
                        json_object_set_new(l, "timeout_ms", json_integer((json_int_t) req.limits.timeout_ms));
                if (req.limits.memory_bytes)
                        json_object_set_new(l, "memory_bytes", json_integer((json_int_t) req.limits.memory_bytes));
                if (req.limits.max_procs)
                        json_object_set_new(l, "max_procs", json_integer((json_int_t) req.limits.max_procs));
                if (req.limits.max_output_bytes)
                        json_object_set_new(l, "max_output_bytes", json_integer((json_int_t) req.limits.max_output_bytes));
                if (req.limits.network)
                        json_object_set_new(l, "network", json_true());
                /* The function's delivery policy travels with its limits:
                 * every invocation inherits it (docs/api.md "Delivery"). */
                if (req.max_attempts > 0)
                        json_object_set_new(l, "retries", json_integer(req.max_attempts - 1));
                limits = json_object_size(l) ? json_dumps(l, JSON_COMPACT) : NULL;
                json_decref(l);
        }
        if (res->function)
                fname = xstrdup(res->function);
        else if (req.function)
                fname = xstrdup(req.function);
        else
                (void) python_default_function(req.source, req.source_len, &fname);
        FunctionRecord f = {
                .tenant = (char *) c->tenant,
                .name = req.name,
                .filename = req.filename,
                .function = fname,
                .source = req.source,
                .source_len = req.source_len,
                .requirements_json = req.requirements_json,
                .limits_json = limits,
                .description = req.description,
                .created = now_realtime(),
        };
        int version;
        k = store_function_put(d->store, &f, &version);
        if (k < 0) {
                ret = respond_errno(c, k, "function");
                goto out;
        }
        f.version = version;
        loc = xasprintf("/v1/functions/%s", req.name);
        ret = respond_json_h(c, 201, function_json(d, &f), (const char *const[]) { "Location", loc, NULL });
out:
        run_result_free(res);
        run_request_done(&req);
        return ret;
}

static enum MHD_Result handle_functions_list(Ctx *c) {
        FunctionRecord **v = NULL;
        size_t n = 0;
        int k = store_function_list(c->d->store, c->tenant, &v, &n);
        if (k < 0)
                return respond_errno(c, k, "functions");
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, function_json(c->d, v[i]));
        function_record_list_free(v, n);
        return respond_json(c, 200, json_pack("{so}", "functions", a));
}

static int parse_version(Ctx *c, const char *key, int *ret) {
        const char *v = query(c, key);
        *ret = 0;
        if (!v || streq(v, "$LATEST") || streq(v, "latest"))
                return 0;
        char *end;
        unsigned long x = strtoul(v, &end, 10);
        if (*end || x == 0 || x > INT32_MAX)
                return -EINVAL;
        *ret = (int) x;
        return 0;
}

static enum MHD_Result handle_function_get(Ctx *c, const char *name) {
        FunctionRecord *f = NULL;
        int version, k;
        if (parse_version(c, "version", &version) < 0)
                return respond_error(c, 400, "bad_request", "query 'version' must be a positive integer");
        k = store_function_get(c->d->store, c->tenant, name, version, &f);
        if (k < 0)
                return respond_errno(c, k, "function");
        json_t *j = function_json(c->d, f);
        int *vs = NULL;
        size_t n = 0;
        if (store_function_versions(c->d->store, c->tenant, name, &vs, &n) >= 0) {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(a, json_integer(vs[i]));
                json_object_set_new(j, "versions", a);
                free(vs);
        }
        if (query_true(c, "source"))
                json_object_set_new(j, "source", json_stringn(f->source, f->source_len));
        function_record_free(f);
        return respond_json(c, 200, j);
}

static enum MHD_Result handle_function_delete(Ctx *c, const char *name) {
        int k = store_function_delete(c->d->store, c->tenant, name);
        if (k < 0)
                return respond_errno(c, k, "function");
        return respond_json(c, 200, json_pack("{sssb}", "name", name, "deleted", 1));
}

/* The function's deploy-time limits, overridden field by field by the
 * invoke's. */
static void merge_limits(RunLimits *l, const char *limits_json) {
        json_t *j = json_or_null(limits_json);
        RunLimits base = {};
        if (json_is_object(j)) {
                base.timeout_ms = (uint64_t) json_integer_value(json_object_get(j, "timeout_ms"));
                base.memory_bytes = (uint64_t) json_integer_value(json_object_get(j, "memory_bytes"));
                base.max_procs = (uint64_t) json_integer_value(json_object_get(j, "max_procs"));
                base.max_output_bytes = (uint64_t) json_integer_value(json_object_get(j, "max_output_bytes"));
                base.network = json_is_true(json_object_get(j, "network"));
        }
        json_decref(j);
        if (!l->timeout_ms)
                l->timeout_ms = base.timeout_ms;
        if (!l->memory_bytes)
                l->memory_bytes = base.memory_bytes;
        if (!l->max_procs)
                l->max_procs = base.max_procs;
        if (!l->max_output_bytes)
                l->max_output_bytes = base.max_output_bytes;
        l->network = l->network || base.network;
}

/* The deploy's "retries" as max_attempts (0: the config's default). */
static int function_max_attempts(const FunctionRecord *f) {
        json_t *j = json_or_null(f->limits_json);
        json_t *v = json_object_get(j, "retries");
        int n = json_is_integer(v) ? (int) json_integer_value(v) + 1 : 0;
        json_decref(j);
        return n;
}

static enum MHD_Result handle_invoke(Ctx *c, const char *name, const Buf *body) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = caps_of(c->d);
        FunctionRecord *f = NULL;
        enum MHD_Result ret;
        int k;

        if (body->len == 0)
                k = request_parse(REQUEST_INVOKE, "{}", 2, &caps, &req, &err);
        else
                k = request_parse(REQUEST_INVOKE, body->data, body->len, &caps, &req, &err);
        if (k < 0)
                return respond_error(c, 400, "bad_request", "%s", err);
        k = store_function_get(c->d->store, c->tenant, name, req.version, &f);
        if (k < 0) {
                run_request_done(&req);
                return respond_errno(c, k, "function");
        }
        req.source = xstrndup(f->source, f->source_len);
        req.source_len = f->source_len;
        req.filename = f->filename ? xstrdup(f->filename) : NULL;
        req.function = f->function ? xstrdup(f->function) : NULL;
        merge_limits(&req.limits, f->limits_json);
        if (req.max_attempts == 0)
                req.max_attempts = function_max_attempts(f);
        if (grant_limits(c, &req.limits, &ret))
                ret = submit_and_respond(c, &req, f->name, f->version);
        function_record_free(f);
        run_request_done(&req);
        return ret;
}

/* ---- AWS Lambda Invoke ------------------------------------------------------ */

static char *base64(const void *data, size_t n) {
        char *out = xmalloc(4 * ((n + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *) out, data, (int) n);
        return out;
}

static json_t *lambda_context(const FunctionRecord *f, const char *request_id, const RunLimits *l) {
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", f->version);
        _cleanup_free_ char *arn = xasprintf("arn:aws:lambda:local:000000000000:function:%s", f->name);
        _cleanup_free_ char *group = xasprintf("/aws/lambda/%s", f->name);
        uint64_t timeout = l->timeout_ms ? l->timeout_ms : RUN_DEFAULT_TIMEOUT_MS;
        uint64_t mem = l->memory_bytes ? l->memory_bytes : RUN_DEFAULT_MEMORY_BYTES;
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "function_name", f->name, "function_version", ver, "invoked_function_arn",
                         arn, "aws_request_id", request_id, "log_group_name", group, "log_stream_name", request_id,
                         "memory_limit_in_mb", (json_int_t) (mem >> 20), "deadline_ms",
                         (json_int_t) (now_realtime() / 1000 + timeout));
}

static enum MHD_Result handle_lambda_invoke(Ctx *c, const char *name, const Buf *body) {
        Daemon *d = c->d;
        _cleanup_free_ char *err = NULL, *id = NULL, *tail = NULL;
        _cleanup_strv_free_ char **params = NULL;
        FunctionRecord *f = NULL;
        RunRequest req = {};
        RequestCaps caps = caps_of(d);
        json_t *event = NULL;
        enum MHD_Result ret;
        int version, k;

        const char *itype = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-Amz-Invocation-Type");
        const char *ltype = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-Amz-Log-Type");
        if (!itype)
                itype = "RequestResponse";
        if (!streq(itype, "RequestResponse") && !streq(itype, "Event") && !streq(itype, "DryRun"))
                return respond_error(c, 400, "bad_request",
                                     "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not '%s'", itype);
        if (ltype && !streq(ltype, "Tail") && !streq(ltype, "None"))
                return respond_error(c, 400, "bad_request", "X-Amz-Log-Type must be Tail or None");
        if (parse_version(c, "Qualifier", &version) < 0)
                return respond_error(c, 400, "bad_request", "Qualifier must be $LATEST or a version number");

        k = store_function_get(d->store, c->tenant, name, version, &f);
        if (k < 0)
                return respond_error(c, 404, "not_found", "Function not found: arn:aws:lambda:local:000000000000:function:%s%s%s",
                                     name, version ? ":" : "", version ? query(c, "Qualifier") : "");

        if (body->len == 0)
                event = json_object();
        else {
                k = request_json_parse(body->data, body->len, &caps, (void **) &event, &err);
                if (k < 0) {
                        ret = respond_error(c, 400, "bad_request", "Could not parse request body into json: %s", err);
                        goto out;
                }
        }
        if (streq(itype, "DryRun")) {
                ret = respond_raw(c, 204, NULL, xstrdup(""), 0, NULL);
                goto out;
        }

        id = id_new("r");
        req.source = xstrndup(f->source, f->source_len);
        req.source_len = f->source_len;
        req.filename = f->filename ? xstrdup(f->filename) : NULL;
        req.function = f->function ? xstrdup(f->function) : NULL;
        merge_limits(&req.limits, f->limits_json);
        if (req.max_attempts == 0)
                req.max_attempts = function_max_attempts(f);
        if (!grant_limits(c, &req.limits, &ret))
                goto out;

        /* The calling rule (docs/api.md): exactly two parameters ->
         * handler(event, context); exactly one -> handler(event); otherwise
         * the event's keys are keyword arguments. */
        LambdaCall call = LAMBDA_CALL_KWARGS;
        if (f->function && python_function_params(f->source, f->source_len, f->function, &params) >= 0)
                call = lambda_call_rule(params);
        if (call == LAMBDA_CALL_KWARGS) {
                if (!json_is_object(event)) {
                        ret = respond_error(c, 400, "bad_request",
                                            "function '%s' takes named parameters: the event must be a JSON object",
                                            f->function ? f->function : name);
                        goto out;
                }
                json_t *kw = json_object();
                const char *key;
                json_t *v;
                json_object_foreach(event, key, v)
                        json_object_set_new(kw, key, json_pack("{sO}", "value", v));
                req.kwargs_json = json_dumps(kw, JSON_COMPACT);
                json_decref(kw);
        } else {
                /* The context travels as RunSpec.context_json: the worker
                 * binds it as the last positional argument and hands the
                 * function a LambdaContext object (attributes and
                 * get_remaining_time_in_millis()), as Lambda does. */
                json_t *a = json_array();
                json_array_append_new(a, json_pack("{sO}", "value", event));
                if (call == LAMBDA_CALL_EVENT_CONTEXT) {
                        json_t *ctxj = lambda_context(f, id, &req.limits);
                        req.context_json = json_dumps(ctxj, JSON_COMPACT);
                        json_decref(ctxj);
                }
                req.args_json = json_dumps(a, JSON_COMPACT);
                json_decref(a);
        }

        DRun *r;
        k = daemon_run_submit(d, id, c->tenant, &req, f->name, f->version, true, &r);
        if (k < 0) {
                ret = respond_errno(c, k, "invoke");
                goto out;
        }
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", f->version);
        if (streq(itype, "Event")) {
                drun_unref(d, r);
                ret = respond_raw(c, 202, "application/json", xstrdup(""), 0,
                                  (const char *const[]) { "X-Amz-Executed-Version", ver, "X-Amzn-RequestId", id, NULL });
                goto out;
        }
        k = daemon_run_wait(d, r, client_fd(c), (usec_t) d->cfg.max_wait_s * USEC_PER_SEC);
        if (k == -ECONNRESET) {
                daemon_run_cancel(d, r);
                drun_unref(d, r);
                ret = MHD_NO;
                goto out;
        }
        if (k == 0) {
                drun_unref(d, r);
                ret = respond_error(c, 504, "timeout", "the invocation did not finish in %u s", d->cfg.max_wait_s);
                goto out;
        }

        if (ltype && streq(ltype, "Tail")) {
                size_t n;
                _cleanup_free_ char *log = drun_log_text(d, r, &n);
                size_t start = n > 4096 ? n - 4096 : 0;
                tail = base64(log + start, n - start);
        }
        pthread_mutex_lock(&d->lock);
        RunResult *res = r->result;
        pthread_mutex_unlock(&d->lock);

        const char *h[] = { "X-Amz-Executed-Version", ver, "X-Amzn-RequestId", id, "X-Amz-Log-Result", tail,
                            NULL, NULL, NULL };
        if (res->status == RUN_SUCCEEDED) {
                char *payload;
                if (res->value_json)
                        payload = xstrdup(res->value_json);
                else if (res->value_repr) {
                        json_t *s = json_string(res->value_repr);
                        payload = json_dumps(s, JSON_ENCODE_ANY);
                        json_decref(s);
                } else
                        payload = xstrdup("null");
                size_t n = strlen(payload);
                if (!tail)
                        h[4] = NULL;
                ret = respond_raw(c, 200, "application/json", payload, n, h);
        } else {
                json_t *trace = json_array();
                for (const char *line = res->traceback; line && *line;) {
                        size_t n = strcspn(line, "\n");
                        if (n > 0)
                                json_array_append_new(trace, json_stringn(line, n));
                        line += n + (line[n] == '\n');
                }
                const char *type = res->error_type ? res->error_type : run_status_to_string(res->status);
                json_t *e = json_pack("{s:s, s:s, s:o}", "errorMessage",
                                      res->error_message ? res->error_message : "the function failed", "errorType", type,
                                      "stackTrace", trace);
                if (!tail) {
                        h[4] = "X-Amz-Function-Error";
                        h[5] = "Unhandled";
                } else {
                        h[6] = "X-Amz-Function-Error";
                        h[7] = "Unhandled";
                }
                char *s = daemon_scrub(json_dumps(e, JSON_COMPACT));
                json_decref(e);
                ret = respond_raw(c, 200, "application/json", s, strlen(s), h);
        }
        drun_unref(d, r);
out:
        json_decref(event);
        function_record_free(f);
        run_request_done(&req);
        return ret;
}

/* ---- health, metrics, envs ---------------------------------------------------- */

static enum MHD_Result handle_healthz(Ctx *c) {
        unsigned running, queued;
        daemon_run_counts(c->d, &running, &queued);
        return respond_json(c, 200,
                            json_pack("{sssssisisb}", "status", c->d->draining ? "draining" : "ok", "version",
                                      PYSPRINTER_VERSION, "running", (int) running, "queued", (int) queued, "auth",
                                      !c->d->no_auth));
}

static uint64_t file_size(const char *dir, const char *name) {
        _cleanup_free_ char *p = path_join(dir, name);
        struct stat st;
        return stat(p, &st) == 0 ? (uint64_t) st.st_size : 0;
}

static enum MHD_Result handle_metrics(Ctx *c) {
        static const char *const phases[6] = { "validate", "resolve", "install", "start", "run", "total" };
        static const char *const bounds[16] = { "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                                                "2.5",   "5",    "10",    "30",   "60",  "120", "300", "+Inf" };
        Daemon *d = c->d;
        DaemonMetrics m;
        unsigned running, queued, threads;
        Buf b;

        pthread_mutex_lock(&d->lock);
        m = d->metrics;
        running = d->running;
        queued = d->queued;
        threads = d->threads;
        pthread_mutex_unlock(&d->lock);

        buf_init(&b, 1 << 20);
        buf_appends(&b, "# HELP pysprinter_runs_total Runs finished since the daemon started, by final status.\n"
                        "# TYPE pysprinter_runs_total counter\n");
        for (int s = 0; s < _RUN_STATUS_MAX; s++)
                if (run_status_is_final((RunStatus) s))
                        buf_printf(&b, "pysprinter_runs_total{status=\"%s\"} %" PRIu64 "\n",
                                   run_status_to_string((RunStatus) s), m.runs_by_status[s]);
        buf_appends(&b, "# HELP pysprinter_phase_duration_seconds Time spent in each run phase.\n"
                        "# TYPE pysprinter_phase_duration_seconds histogram\n");
        for (int p = 0; p < 6; p++) {
                uint64_t cum = 0;
                for (int i = 0; i < 16; i++) {
                        cum += m.hist[p][i];
                        buf_printf(&b, "pysprinter_phase_duration_seconds_bucket{phase=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                                   phases[p], bounds[i], cum);
                }
                buf_printf(&b, "pysprinter_phase_duration_seconds_sum{phase=\"%s\"} %.6f\n", phases[p], m.hist_sum[p]);
                buf_printf(&b, "pysprinter_phase_duration_seconds_count{phase=\"%s\"} %" PRIu64 "\n", phases[p],
                           m.hist_count[p]);
        }
        buf_printf(&b,
                   "# HELP pysprinter_queue_depth Runs accepted and waiting for a slot.\n"
                   "# TYPE pysprinter_queue_depth gauge\npysprinter_queue_depth %u\n"
                   "# HELP pysprinter_runs_running Runs executing now.\n"
                   "# TYPE pysprinter_runs_running gauge\npysprinter_runs_running %u\n"
                   "# HELP pysprinter_workers Run threads alive (queued or running), each driving one worker.\n"
                   "# TYPE pysprinter_workers gauge\npysprinter_workers %u\n"
                   "# HELP pysprinter_workers_max Runs allowed to execute at once.\n"
                   "# TYPE pysprinter_workers_max gauge\npysprinter_workers_max %u\n",
                   queued, running, threads, d->cfg.max_concurrent_runs);
        buf_printf(&b,
                   "# HELP pysprinter_store_bytes Size of the job store (database and WAL).\n"
                   "# TYPE pysprinter_store_bytes gauge\npysprinter_store_bytes %" PRIu64 "\n",
                   file_size(d->data_dir, "pysprinter.db") + file_size(d->data_dir, "pysprinter.db-wal"));
        buf_printf(&b,
                   "# HELP pysprinter_http_requests_total HTTP responses sent.\n"
                   "# TYPE pysprinter_http_requests_total counter\npysprinter_http_requests_total %" PRIu64 "\n"
                   "# HELP pysprinter_http_errors_total HTTP error responses by class.\n"
                   "# TYPE pysprinter_http_errors_total counter\n"
                   "pysprinter_http_errors_total{class=\"4xx\"} %" PRIu64 "\n"
                   "pysprinter_http_errors_total{class=\"5xx\"} %" PRIu64 "\n"
                   "# HELP pysprinter_rejected_total Runs refused because the queue was full (429).\n"
                   "# TYPE pysprinter_rejected_total counter\npysprinter_rejected_total %" PRIu64 "\n",
                   __atomic_load_n(&d->metrics.http_requests, __ATOMIC_RELAXED),
                   __atomic_load_n(&d->metrics.http_errors_4xx, __ATOMIC_RELAXED),
                   __atomic_load_n(&d->metrics.http_errors_5xx, __ATOMIC_RELAXED), m.rejected_429);
        EnginePoolStats ps;
        engine_pool_stats(d->engine, &ps);
        buf_printf(&b,
                   "# HELP pysprinter_pool_workers Warm workers (one per environment).\n"
                   "# TYPE pysprinter_pool_workers gauge\npysprinter_pool_workers %u\n"
                   "# HELP pysprinter_pool_workers_busy Warm workers with runs in flight.\n"
                   "# TYPE pysprinter_pool_workers_busy gauge\npysprinter_pool_workers_busy %u\n"
                   "# HELP pysprinter_pool_instances Warm instances of deployed functions.\n"
                   "# TYPE pysprinter_pool_instances gauge\npysprinter_pool_instances %u\n"
                   "# HELP pysprinter_pool_pss_bytes Proportional set size of the warm pool.\n"
                   "# TYPE pysprinter_pool_pss_bytes gauge\npysprinter_pool_pss_bytes %" PRIu64 "\n"
                   "# HELP pysprinter_pool_memory_budget_bytes The pool's PSS budget.\n"
                   "# TYPE pysprinter_pool_memory_budget_bytes gauge\npysprinter_pool_memory_budget_bytes %" PRIu64 "\n"
                   "# HELP pysprinter_pool_acquires_total Worker acquisitions by outcome.\n"
                   "# TYPE pysprinter_pool_acquires_total counter\n"
                   "pysprinter_pool_acquires_total{result=\"warm\"} %" PRIu64 "\n"
                   "pysprinter_pool_acquires_total{result=\"cold\"} %" PRIu64 "\n"
                   "# HELP pysprinter_pool_evictions_total Workers stopped to stay under the budget.\n"
                   "# TYPE pysprinter_pool_evictions_total counter\npysprinter_pool_evictions_total %" PRIu64 "\n",
                   ps.workers, ps.busy, ps.instances, ps.pss_bytes, ps.memory_budget, ps.hits, ps.misses,
                   ps.evictions);
        size_t n = b.len;
        return respond_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf_steal(&b), n, NULL);
}

/* GET /v1/workers: the warm pool (docs/workers.md). Workers hold public
 * packages only; a deployed function's instances are shown to their
 * tenant alone. */
static enum MHD_Result handle_workers(Ctx *c) {
        _cleanup_free_ char *list = NULL;
        engine_pool_list(c->d->engine, &list);
        json_t *all = json_loads(list ? list : "[]", 0, NULL), *mine = json_array();
        _cleanup_free_ char *prefix = xasprintf("%s/", c->tenant);
        size_t i;
        json_t *w;
        json_array_foreach(all, i, w) {
                const char *kind = json_string_value(json_object_get(w, "kind"));
                const char *fn = json_string_value(json_object_get(w, "function"));
                if (kind && streq(kind, "instance")) {
                        if (!fn || !startswith(fn, prefix))
                                continue;
                        json_object_set_new(w, "function", json_string(fn + strlen(prefix)));
                }
                json_array_append(mine, w);
        }
        json_decref(all);
        EnginePoolStats st;
        engine_pool_stats(c->d->engine, &st);
        return respond_json(c, 200, json_pack("{s:o, s:{s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I}}", "workers", mine,
                                              "pool", "workers", (int) st.workers, "busy", (int) st.busy, "instances",
                                              (int) st.instances, "pss_bytes", (json_int_t) st.pss_bytes,
                                              "memory_budget", (json_int_t) st.memory_budget, "hits",
                                              (json_int_t) st.hits, "misses", (json_int_t) st.misses, "evictions",
                                              (json_int_t) st.evictions));
}

/* An environment is shown to a tenant that has used it (daemon_env_note)
 * or that holds no requirements (the base every run shares). */
static bool env_is_tenants(Daemon *d, const char *tenant, char *const *requirements) {
        if (!requirements || !*requirements)
                return true;
        _cleanup_free_ char *key = daemon_env_requirements_key(tenant, requirements), *v = NULL;
        return store_kv_get(d->store, "tenant-env", key, &v) >= 0 && v;
}

static enum MHD_Result handle_envs(Ctx *c) {
        /* Environments are the engine's lock cache: requirement set ->
         * store dirs. The store is shared (public packages), but which
         * requirement sets a tenant uses is its own business: a tenant sees
         * its own, an admin all, and only an admin the server's paths. */
        Daemon *d = c->d;
        bool admin = c->role == TOKEN_ROLE_ADMIN;
        json_t *j = json_pack("{sb}", "sandbox", d->cfg.sandbox == SANDBOX_MODE_FULL);
        if (admin) {
                _cleanup_free_ char *store_dir = path_join(d->data_dir, "store");
                json_object_set_new(j, "data_dir", json_string(d->data_dir));
                json_object_set_new(j, "package_store", json_string(store_dir));
        }
        pthread_rwlock_rdlock(&d->cfg_lock);
        json_object_set_new(j, "index_url", d->cfg.index_url ? json_string(d->cfg.index_url) : json_null());
        pthread_rwlock_unlock(&d->cfg_lock);
        json_t *envs = json_array();
        PkgEnvInfo *infos = NULL;
        size_t n = 0;
        _cleanup_free_ char *err = NULL;
        if (pkg_env_list(d->data_dir, &infos, &n, &err) >= 0) {
                for (size_t i = 0; i < n; i++) {
                        if (!admin && !env_is_tenants(d, c->tenant, infos[i].requirements))
                                continue;
                        json_t *reqs = json_array();
                        for (char **r = infos[i].requirements; r && *r; r++)
                                json_array_append_new(reqs, json_string(*r));
                        json_array_append_new(envs, json_pack("{s:s, s:o, s:I, s:o, s:b}", "key", infos[i].key,
                                                              "requirements", reqs, "size_bytes",
                                                              (json_int_t) infos[i].size_bytes, "last_used",
                                                              time_json(infos[i].last_used), "in_use",
                                                              infos[i].in_use));
                }
                pkg_env_info_free_many(infos, n);
        }
        json_object_set_new(j, "envs", envs);
        return respond_json(c, 200, j);
}

/* ---- routing -------------------------------------------------------------- */

static enum MHD_Result method_not_allowed(Ctx *c, const char *allow) {
        return respond_error_h(c, 405, "method_not_allowed", (const char *const[]) { "Allow", allow, NULL },
                               "method %s is not allowed here; allowed: %s", c->method, allow);
}

/* Splits "/a/b/c" into at most max segments; returns the count, or -1 when
 * there are more or a segment is empty/too long. */
static int split_path(const char *url, char seg[][128], int max) {
        int n = 0;
        const char *p = url;
        if (*p != '/')
                return -1;
        while (*p) {
                p++;
                if (!*p)
                        break;
                const char *e = strchr(p, '/');
                size_t len = e ? (size_t) (e - p) : strlen(p);
                if (len == 0 || len >= 128 || n >= max)
                        return -1;
                memcpy(seg[n], p, len);
                seg[n][len] = 0;
                n++;
                p += len;
        }
        return n;
}

/* Hands an authenticated request to a handler living outside this file
 * (daemon-dag.c, daemon-data.c) and queues its response. */
static enum MHD_Result dispatch_call(Ctx *c, DaemonHandler h, char seg[][128], int n, const Buf *body) {
        DaemonCall call = {
                .d = c->d,
                .conn = c->conn,
                .method = c->method,
                .tenant = c->tenant,
                .seg = seg,
                .n_seg = n,
                .body = body->data ? body->data : "",
                .body_len = body->len,
                .client_fd = client_fd(c),
        };
        unsigned status = 500;
        struct MHD_Response *resp = h(&call, &status);
        if (!resp)
                return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(c->conn, status, resp);
        MHD_destroy_response(resp);
        count_status(c->d, status);
        return ret;
}

static enum MHD_Result dispatch(Ctx *c, const char *url, const Buf *body) {
        char seg[6][128];
        const char *m = c->method;
        bool get = streq(m, "GET") || streq(m, "HEAD"), post = streq(m, "POST"), del = streq(m, "DELETE"),
             put = streq(m, "PUT");
        enum MHD_Result ret;
        int n = split_path(url, seg, 6);

        if (n < 0)
                return respond_error(c, 404, "not_found", "no such endpoint");
        if (n == 1 && streq(seg[0], "healthz"))
                return get ? handle_healthz(c) : method_not_allowed(c, "GET");
        if (n == 1 && streq(seg[0], "metrics")) {
                if (!get)
                        return method_not_allowed(c, "GET");
                if (!c->d->cfg.metrics_public) {
                        if (!authenticate(c, false, &ret))
                                return ret;
                        if (c->role != TOKEN_ROLE_ADMIN)
                                return respond_error(c, 403, "forbidden", "/metrics needs an admin token");
                }
                return handle_metrics(c);
        }

        if (n == 4 && streq(seg[0], "2015-03-31") && streq(seg[1], "functions") && streq(seg[3], "invocations")) {
                c->lambda = true;
                if (!post)
                        return method_not_allowed(c, "POST");
                if (!authenticate(c, true, &ret))
                        return ret;
                if (!function_name_is_valid(seg[2]))
                        return respond_error(c, 404, "not_found", "Function not found: %s", seg[2]);
                return handle_lambda_invoke(c, seg[2], body);
        }

        if (n >= 1 && (streq(seg[0], "ui") || (n == 1 && (streq(seg[0], "login") || streq(seg[0], "logout")))))
                return dispatch_call(c, daemon_ui_handle, seg, n, body); /* UI hook: the dashboard */

        if (n < 2 || !streq(seg[0], "v1"))
                return respond_error(c, 404, "not_found", "no such endpoint: %s", url);

        /* Known endpoints answer 405 for other methods before auth, so a
         * client learns the Allow set without a token. */
        const char *allow = NULL;
        if (n == 2 && streq(seg[1], "runs"))
                allow = "GET, POST";
        else if (n == 3 && streq(seg[1], "runs"))
                allow = "GET, DELETE";
        else if (n == 4 && streq(seg[1], "runs") && streq(seg[3], "logs"))
                allow = "GET";
        else if (n == 2 && streq(seg[1], "validate"))
                allow = "POST";
        else if (n == 2 && streq(seg[1], "functions"))
                allow = "GET, POST";
        else if (n == 3 && streq(seg[1], "functions"))
                allow = "GET, DELETE";
        else if (n == 4 && streq(seg[1], "functions") && streq(seg[3], "invoke"))
                allow = "POST";
        else if (n == 2 && streq(seg[1], "envs"))
                allow = "GET";
        else if (n == 2 && streq(seg[1], "workers"))
                allow = "GET";
        else if (n == 2 && streq(seg[1], "dags"))
                allow = "GET, POST";
        else if (n == 3 && streq(seg[1], "dags"))
                allow = "GET, DELETE";
        else if (n == 6 && streq(seg[1], "dags") && streq(seg[3], "tasks") && streq(seg[5], "logs"))
                allow = "GET";
        else if (n == 2 && streq(seg[1], "data"))
                allow = "GET";
        else if (n == 3 && streq(seg[1], "data"))
                allow = "GET, PUT, DELETE";
        else if (n == 4 && streq(seg[1], "data") && streq(seg[3], "content"))
                allow = "GET";
        else if (n == 2 && streq(seg[1], "events")) /* UI hook */
                allow = "GET";
        else if (n == 4 && streq(seg[1], "dags") && streq(seg[3], "graph")) /* UI hook */
                allow = "GET";
        if (!allow)
                return respond_error(c, 404, "not_found", "no such endpoint: %s", url);
        if (!((get && strstr(allow, "GET")) || (post && strstr(allow, "POST")) || (del && strstr(allow, "DELETE")) ||
              (put && strstr(allow, "PUT"))))
                return method_not_allowed(c, allow);

        if (!authenticate(c, !get, &ret))
                return ret;

        if (streq(seg[1], "runs")) {
                if (n == 2)
                        return post ? handle_runs_post(c, body) : handle_runs_list(c);
                if (n == 3)
                        return del ? handle_run_delete(c, seg[2]) : handle_run_get(c, seg[2]);
                return handle_run_logs(c, seg[2]);
        }
        if (streq(seg[1], "validate"))
                return handle_validate(c, body);
        if (streq(seg[1], "functions")) {
                if (n == 2)
                        return post ? handle_deploy(c, body) : handle_functions_list(c);
                if (!function_name_is_valid(seg[2]))
                        return respond_error(c, 404, "not_found", "function not found");
                if (n == 3)
                        return del ? handle_function_delete(c, seg[2]) : handle_function_get(c, seg[2]);
                return handle_invoke(c, seg[2], body);
        }
        if (streq(seg[1], "workers"))
                return handle_workers(c);
        if (n == 4 && streq(seg[1], "dags") && streq(seg[3], "graph")) /* UI hook */
                return dispatch_call(c, daemon_ui_dag_graph_handle, seg, n, body);
        if (streq(seg[1], "dags"))
                return dispatch_call(c, daemon_dag_handle, seg, n, body);
        if (streq(seg[1], "data"))
                return dispatch_call(c, daemon_data_handle, seg, n, body);
        if (streq(seg[1], "events")) /* UI hook */
                return dispatch_call(c, daemon_ui_events_handle, seg, n, body);
        return handle_envs(c);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn);

/* ---- the request deadline ------------------------------------------------------
 *
 * MHD's connection timeout is an idle timeout: a client that sends one
 * header byte every few seconds keeps its connection (and, here, its
 * thread) forever. Each connection is tracked from its start; a reaper
 * shuts down the socket of any whose request (headers and body) has not
 * fully arrived within server.request_deadline_s. Once a request is being
 * handled (a ?wait=true may take an hour) the clock stops, and it restarts
 * when the response is done (the next request on a kept-alive connection). */

typedef struct ConnTrack {
        int fd;
        usec_t since;           /* start of the request being received */
        bool handling;          /* the request arrived; no deadline */
        struct ConnTrack *prev, *next;
} ConnTrack;

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        ConnTrack *head;
        usec_t deadline;
        bool stop;
        bool running;
        pthread_t thread;
} track = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                ConnTrack *t = xcalloc(1, sizeof(ConnTrack));
                t->fd = ci ? ci->connect_fd : -1;
                t->since = now_monotonic();
                pthread_mutex_lock(&track.lock);
                t->next = track.head;
                if (track.head)
                        track.head->prev = t;
                track.head = t;
                pthread_mutex_unlock(&track.lock);
                *socket_context = t;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                ConnTrack *t = *socket_context;
                if (!t)
                        return;
                /* Unlinked before MHD closes the fd: the reaper never shuts
                 * down a descriptor number that was reused. */
                pthread_mutex_lock(&track.lock);
                if (t->prev)
                        t->prev->next = t->next;
                else
                        track.head = t->next;
                if (t->next)
                        t->next->prev = t->prev;
                pthread_mutex_unlock(&track.lock);
                free(t);
                *socket_context = NULL;
        }
}

static ConnTrack *conn_track(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

static void conn_set_handling(struct MHD_Connection *conn, bool handling) {
        ConnTrack *t = conn_track(conn);
        if (!t)
                return;
        pthread_mutex_lock(&track.lock);
        t->handling = handling;
        t->since = now_monotonic();
        pthread_mutex_unlock(&track.lock);
}

static void *reaper(void *arg) {
        pthread_mutex_lock(&track.lock);
        while (!track.stop) {
                usec_t now = now_monotonic();
                for (ConnTrack *t = track.head; t; t = t->next)
                        if (!t->handling && t->fd >= 0 && now - t->since > track.deadline) {
                                /* MHD's thread sees EOF and closes it. */
                                (void) shutdown(t->fd, SHUT_RDWR);
                                t->fd = -1;
                        }
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 250 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&track.cond, &track.lock, &ts);
        }
        pthread_mutex_unlock(&track.lock);
        return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        Daemon *d = cls;
        Req *req = *req_cls;
        Ctx c = { .d = d, .conn = conn, .method = method, .req = req };

        if (!req) { /* not reached: on_uri() made it; kept for safety */
                req = on_uri(d, NULL, conn);
                *req_cls = req;
        }
        if (!req->started) {
                req->started = true;
                if (req->bad_url) {
                        req->responded = true;
                        return respond_error(&c, 400, "bad_request", "%s", req->bad_url);
                }
                /* Refuse an announced oversized body before reading it
                 * (and before curl's "Expect: 100-continue" is answered). */
                const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
                if (cl) {
                        char *end;
                        unsigned long long x = strtoull(cl, &end, 10);
                        if (*end == 0 && x > req->body.max) {
                                req->responded = true;
                                c.lambda = startswith(url, "/2015-03-31/");
                                return respond_error(&c, 413, "payload_too_large",
                                                     "request body of %llu bytes is larger than the %zu byte limit", x,
                                                     req->body.max);
                        }
                }
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                /* MHD takes no response while a body is still arriving: an
                 * oversized body without Content-Length is drained and
                 * dropped, and answered 413 at its end; one that goes on far
                 * past the cap is cut off. */
                if (req->too_big) {
                        req->discarded += *upload_data_size;
                        *upload_data_size = 0;
                        return req->discarded > 4 * req->body.max + (1U << 20) ? MHD_NO : MHD_YES;
                }
                if (!req->responded && buf_append(&req->body, upload_data, *upload_data_size) < 0) {
                        req->too_big = true;
                        buf_free(&req->body);
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (req->responded)
                return MHD_YES;
        req->responded = true;
        conn_set_handling(conn, true);
        if (req->too_big) {
                c.lambda = startswith(url, "/2015-03-31/");
                return respond_error(&c, 413, "payload_too_large", "request body is larger than the %zu byte limit",
                                     req->body.max);
        }

        /* No config lock is held here: a ?wait=true request may take an
         * hour, and SIGHUP must not wait for it. authenticate() copies what
         * it needs under the lock. */
        enum MHD_Result ret = dispatch(&c, url, &req->body);
        log_debug("%s %s -> %s", method, url, c.tenant ? c.tenant : "-");
        return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        Req *req = *req_cls;
        conn_set_handling(conn, false); /* the next request's clock starts */
        if (!req)
                return;
        buf_free(&req->body);
        free(req->bad_url);
        free(req->target);
        free(req);
        *req_cls = NULL;
}

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

int http_target_check(const char *target, char **ret_error) {
        assert(target);
        /* MHD hands handlers the decoded path and query values as C
         * strings, so an encoded NUL silently cuts a name short
         * ("DELETE /v1/runs/PREFIX%00zzz" cancelled PREFIX); no name, id or
         * value of this API holds a control character either. */
        for (const char *p = target; *p; p++) {
                int ch = (unsigned char) *p;
                if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0)
                        ch = hexval(p[1]) * 16 + hexval(p[2]);
                if (ch < 0x20 || ch == 0x7f) {
                        bool in_query = memchr(target, '?', (size_t) (p - target)) != NULL;
                        *ret_error = xasprintf("the request %s holds a control character (byte 0x%02x)",
                                               in_query ? "query" : "path", ch);
                        return -EINVAL;
                }
        }
        return 0;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the only place the request target is seen
 * undecoded. What it returns becomes the request's *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
        Daemon *d = cls;
        Req *req = xcalloc(1, sizeof(Req));
        buf_init(&req->body, d->cfg.max_body_bytes);
        if (uri) {
                (void) http_target_check(uri, &req->bad_url);
                req->target = xstrdup(uri);
        }
        return req;
}

int listen_address_parse(const char *s, void *ret_sockaddr_storage, size_t *ret_len, bool *ret_is_loopback) {
        struct sockaddr_storage ss = {};
        _cleanup_free_ char *host = NULL;
        const char *port;
        bool loopback;

        if (s[0] == '[') {
                const char *e = strchr(s, ']');
                if (!e || e[1] != ':')
                        return -EINVAL;
                host = xstrndup(s + 1, (size_t) (e - s - 1));
                port = e + 2;
        } else {
                const char *colon = strrchr(s, ':');
                if (!colon)
                        return -EINVAL;
                host = xstrndup(s, (size_t) (colon - s));
                port = colon + 1;
        }
        char *end;
        unsigned long p = strtoul(port, &end, 10);
        if (!*port || *end || p > 65535)
                return -EINVAL;
        if (!*host || streq(host, "localhost")) {
                bool empty = !*host;
                free(host);
                host = xstrdup(empty ? "0.0.0.0" : "127.0.0.1");
        }

        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) p);
                loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
                *ret_len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) p);
                loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
                *ret_len = sizeof(*in6);
        } else
                return -EINVAL;
        memcpy(ret_sockaddr_storage, &ss, sizeof(ss));
        *ret_is_loopback = loopback;
        return 0;
}

int daemon_http_start(Daemon *d, const char *address, void **ret_mhd, char **ret_error) {
        struct sockaddr_storage ss;
        size_t len;
        bool loopback;

        if (listen_address_parse(address, &ss, &len, &loopback) < 0) {
                *ret_error = xasprintf("bad address address '%s' (expected HOST:PORT or [V6]:PORT)", address);
                return -EINVAL;
        }
        scrub_init(d);
        if (d->no_auth && !loopback) {
                *ret_error = xasprintf("--no-auth only listens on loopback addresses, not '%s'", address);
                return -EPERM;
        }
        /* The socket is ours, not MHD's: bind() reports the real errno, and
         * no SO_REUSEPORT (MHD_OPTION_LISTENING_ADDRESS_REUSE) lets a second
         * daemon share a port another one listens on. SO_REUSEADDR only
         * skips TIME_WAIT; Linux still refuses an address with a listener. */
        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot address on %s: %s", address, strerror(-r));
                return r;
        }
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &ss, (socklen_t) len) < 0 || listen(fd, 1024) < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot address on %s: %s", address,
                                       r == -EADDRINUSE ? "address in use (another process listens there)" : strerror(-r));
                return r;
        }
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                         MHD_USE_ERROR_LOG | MHD_USE_ITC;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        struct MHD_Daemon *mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, d, MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) d->cfg.read_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                (unsigned) d->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                (unsigned) d->cfg.max_connections_per_ip, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_uri, d,
                MHD_OPTION_END);
        if (!mhd) {
                int r = errno > 0 ? -errno : -EIO;
                *ret_error = xasprintf("cannot start the HTTP server on %s: %s", address, strerror(-r));
                return r;
        }
        TAKE_FD(fd); /* MHD closes it when it stops */
        pthread_mutex_lock(&track.lock);
        track.deadline = (usec_t) d->cfg.request_deadline_s * USEC_PER_SEC;
        track.stop = false;
        pthread_mutex_unlock(&track.lock);
        if (!track.running && pthread_create(&track.thread, NULL, reaper, NULL) == 0)
                track.running = true;
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
        log_info("listening on %s (port %u)%s", address, info ? info->port : 0,
                 d->no_auth ? ", no authentication (local user only)" : "");
        *ret_mhd = mhd;
        return 0;
}

void daemon_http_quiesce(void *mhd) {
        (void) MHD_quiesce_daemon(mhd);
}

void daemon_http_stop(void *mhd) {
        MHD_stop_daemon(mhd);
        if (track.running) {
                pthread_mutex_lock(&track.lock);
                track.stop = true;
                pthread_cond_signal(&track.cond);
                pthread_mutex_unlock(&track.lock);
                pthread_join(track.thread, NULL);
                track.running = false;
        }
}
