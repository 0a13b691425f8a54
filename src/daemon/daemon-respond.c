/* Responses: the one way every handler answers (docs/api.md "Errors").
 *
 * A handler returns an MHD_Response and its status (DaemonHandler); these
 * helpers build them: a JSON body (reals exact, server paths scrubbed
 * unless the caller is an admin), the one error body
 * {"error": {"code", "message"}} — with AWS's fields and X-Amzn-ErrorType
 * on the Lambda API, so AWS SDKs raise the right exception — and the one
 * errno -> HTTP status map. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <strings.h>
#include <sys/socket.h>

#include "daemon.h"

/* ---- server paths that must not reach a client ---------------------------
 *
 * An error saying "cannot open /srv/pysprinter/..." tells a tenant where
 * the daemon keeps everything. Set once before the HTTP threads start
 * (daemon_scrub_init); read-only afterwards. */
#define SCRUB_MAX 8
static struct {
        char *prefix;
        const char *as;
} scrub_list[SCRUB_MAX];
static size_t n_scrub;

static size_t path_depth(const char *p) {
        size_t parts = 0;
        for (; *p; p++)
                parts += *p == '/';
        return parts;
}

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
        _cleanup_free_ char *real = path ? realpath(path, NULL) : NULL;
        char *slash = real ? strrchr(real, '/') : NULL;
        if (!slash)
                return;
        *slash = 0;
        if (path_depth(real) >= 3)
                scrub_add(real, as);
}

void daemon_scrub_init(const Daemon *d) {
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
                if (path_depth(top) >= 2 && !streq(top, "/usr") && !startswith(top, "/usr/"))
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
                const char *prefix = scrub_list[i].prefix, *as = scrub_list[i].as;
                char *hit = strstr(s, prefix);
                if (!hit)
                        continue;
                /* One pass, in place where the replacement is not longer
                 * than its path (all but a 6-byte one said as "$PREFIX"),
                 * so what is written never passes what is still to be read. Moving the rest of the text at
                 * each hit was quadratic (a result of a million hits held a
                 * daemon thread for minutes); a new text of it was one more
                 * copy of a 10 MiB answer. */
                size_t pl = strlen(prefix), al = strlen(as);
                if (al > pl) {
                        /* A path of 6 bytes said as "$PREFIX" (its
                         * trailing '/' was trimmed): a new text. */
                        Buf b;
                        buf_init(&b, SIZE_MAX / 4);
                        const char *q = s;
                        for (; hit; hit = strstr(q, prefix)) {
                                (void) buf_append(&b, q, (size_t) (hit - q));
                                (void) buf_appends(&b, as);
                                q = hit + pl;
                        }
                        (void) buf_appends(&b, q);
                        free(s);
                        s = buf_steal_fit(&b);
                        continue;
                }
                char *w = hit;
                const char *p = hit;
                for (; hit; hit = strstr(p, prefix)) {
                        memmove(w, p, (size_t) (hit - p));
                        w += hit - p;
                        memcpy(w, as, al);
                        w += al;
                        p = hit + pl;
                }
                memmove(w, p, strlen(p) + 1);
        }
        return s;
}

/* ---- bodies ----------------------------------------------------------------- */

void daemon_response_headers(struct MHD_Response *resp, const char *const *headers) {
        if (resp == DAEMON_SUSPENDED)
                return;
        for (size_t i = 0; resp && headers && headers[i]; i += 2)
                if (headers[i + 1])
                        MHD_add_response_header(resp, headers[i], headers[i + 1]);
}

struct MHD_Response *daemon_text_response(unsigned status, const char *content_type, char *body, size_t len,
                                          unsigned *ret_status) {
        assert(body);
        assert(ret_status);
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return NULL;
        }
        if (content_type)
                MHD_add_response_header(resp, "Content-Type", content_type);
        *ret_status = status;
        return resp;
}

static const char encode_failed[] = "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode the response\"}}";

bool daemon_call_shows_paths(const DaemonCall *call) {
        /* An admin (the operator, or the local user of --no-auth) may see
         * the server's paths; nobody else does. */
        return call && call->role == TOKEN_ROLE_ADMIN;
}

/* s (taken: JSON text with its reals shortened; NULL when none could be
 * made) as the answer, the server's paths scrubbed unless the caller may
 * see them, with a newline. */
static struct MHD_Response *json_answer(const DaemonCall *call, unsigned status, char *s, unsigned *ret_status) {
        if (s && !daemon_call_shows_paths(call))
                s = daemon_scrub(s);
        if (!s) {
                s = xstrdup(encode_failed);
                status = 500;
        }
        size_t n = strlen(s);
        /* A trailing newline is friendlier to curl users; JSON allows it. */
        s = xrealloc(s, n + 2);
        s[n] = '\n';
        s[n + 1] = 0;
        return daemon_text_response(status, "application/json", s, n + 1, ret_status);
}

struct MHD_Response *daemon_call_json(const DaemonCall *call, unsigned status, json_t *j, unsigned *ret_status) {
        /* Exact reals, shortest spelling: a result's 3.141592653589793 must
         * come back as it went in (basic-json.c), respelled as they are
         * written (shared.h json_dumps_short()): a large result's text is
         * not copied again for json_shorten_reals(). */
        char *s = j ? json_dumps_short(j) : NULL;
        json_decref(j);
        return json_answer(call, status, s, ret_status);
}

char *daemon_json_text(json_t *j, bool show_paths) {
        char *s = j ? json_dumps_short(j) : NULL;
        return show_paths ? s : daemon_scrub(s);
}

struct MHD_Response *daemon_call_json_text(const DaemonCall *call, unsigned status, char *exact, unsigned *ret_status) {
        return json_answer(call, status, json_shorten_reals_take(exact), ret_status);
}

struct MHD_Response *daemon_json_response(unsigned status, json_t *j, unsigned *ret_status) {
        return daemon_call_json(NULL, status, j, ret_status);
}

/* The AWS error type an AWS SDK maps to its exception class. */
static const char *lambda_error_type(unsigned status) {
        switch (status) {
        case 400:
        case 405:
        case 414:
        case 431:
                return "InvalidRequestContentException";
        case 413:
                return "RequestTooLargeException";
        case 415:
                return "UnsupportedMediaTypeException";
        case 401:
                return "UnrecognizedClientException";
        case 403:
                return "AccessDeniedException";
        case 404:
                return "ResourceNotFoundException";
        case 409:
                return "ResourceConflictException";
        case 429:
                return "TooManyRequestsException";
        default:
                return "ServiceException";
        }
}

static struct MHD_Response *call_verror(const DaemonCall *call, unsigned status, const char *code,
                                        const char *lambda_type, unsigned *ret_status, const char *fmt, va_list ap)
        _printf_(6, 0);
static struct MHD_Response *call_verror(const DaemonCall *call, unsigned status, const char *code,
                                        const char *lambda_type, unsigned *ret_status, const char *fmt, va_list ap) {
        /* A Function URL's callers (browsers, webhooks) get its own body,
         * never the API's words. */
        if (call && call->endpoint)
                return daemon_endpoint_error(status, NULL, ret_status);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        /* A message may quote a name from the request that is not UTF-8
         * ("/v1/functions/%ff"), which a JSON string cannot hold: its bad
         * bytes show as U+FFFD rather than the whole message becoming the
         * bare code ("not_found"). */
        _cleanup_free_ char *valid = msg ? utf8_replace_invalid(msg, strlen(msg), NULL) : NULL;
        /* The daemon's own failure: the operator reads it in the log, not
         * only the client in its answer (a 5xx counted in /metrics had no
         * line to say why). The other 5xx are states /healthz and the log
         * tell already (draining, Redis lost, a full disk) or a run's
         * (a timed-out wait). */
        if (status == 500 && call) {
                const char *target = call->raw_target ?: "?";
                log_error("%s %.*s (tenant %s): %s", call->method ?: "?",
                          (int) MIN(strcspn(target, "?"), (size_t) 1024), target, call->tenant ?: "-", valid ?: code);
        }
        json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", valid ? valid : code);
        const char *type = NULL;
        if (call && call->lambda && j) {
                /* Lambda's own body: {"Type": "User"|"Service", "message"}
                 * beside ours; botocore reads the type from the header. */
                type = lambda_type ?: lambda_error_type(status);
                json_object_set_new(j, "Type", json_string(status >= 500 ? "Service" : "User"));
                json_object_set(j, "message", json_object_get(json_object_get(j, "error"), "message"));
                json_object_set_new(j, "__type", json_string(type));
        }
        struct MHD_Response *resp = daemon_call_json(call, status, j, ret_status);
        if (resp && type)
                MHD_add_response_header(resp, "X-Amzn-ErrorType", type);
        return resp;
}

struct MHD_Response *daemon_call_lambda_error(const DaemonCall *call, unsigned status, const char *code,
                                              const char *lambda_type, unsigned *ret_status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        struct MHD_Response *resp = call_verror(call, status, code, lambda_type, ret_status, fmt, ap);
        va_end(ap);
        return resp;
}

struct MHD_Response *daemon_call_error(const DaemonCall *call, unsigned status, const char *code,
                                       unsigned *ret_status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        struct MHD_Response *resp = call_verror(call, status, code, NULL, ret_status, fmt, ap);
        va_end(ap);
        return resp;
}

struct MHD_Response *daemon_error_response(unsigned status, const char *code, unsigned *ret_status, const char *fmt,
                                           ...) {
        va_list ap;
        va_start(ap, fmt);
        struct MHD_Response *resp = call_verror(NULL, status, code, NULL, ret_status, fmt, ap);
        va_end(ap);
        return resp;
}

/* ---- Function URL answers (docs/endpoints.md) ----------------------------------- */

/* A function's page shares the daemon's origin with the dashboard and the
 * API. The sandbox directive (without allow-same-origin) gives the page an
 * opaque origin: its scripts run, but their requests to /v1 or /ui are
 * cross-site, so the browser sends no SameSite=Strict session cookie and
 * lets them read no answer. A function's own Content-Security-Policy header
 * adds to this one; it cannot lift it. */
#define ENDPOINT_CSP "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads"

void daemon_endpoint_headers(struct MHD_Response *resp, const char *request_id) {
        daemon_response_headers(resp, (const char *const[]){ "X-Request-Id", request_id, "Content-Security-Policy",
                                                             ENDPOINT_CSP, NULL });
}

/* The reason phrases (RFC 9110 15) of what refuses a Function URL's call. */
static const char *endpoint_reason(unsigned status) {
        static const struct {
                unsigned status;
                const char *reason;
        } t[] = {
                { 400, "Bad Request" },        { 401, "Unauthorized" },
                { 403, "Forbidden" },          { 404, "Not Found" },
                { 405, "Method Not Allowed" }, { 408, "Request Timeout" },
                { 413, "Payload Too Large" },  { 414, "URI Too Long" },
                { 429, "Too Many Requests" },  { 431, "Request Header Fields Too Large" },
                { 501, "Not Implemented" },    { 503, "Service Unavailable" },
                { 504, "Gateway Timeout" },    { 507, "Insufficient Storage" },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (t[i].status == status)
                        return t[i].reason;
        return "Internal Server Error";
}

struct MHD_Response *daemon_endpoint_error(unsigned status, const char *request_id, unsigned *ret_status) {
        _cleanup_free_ char *id = request_id ? NULL : id_new("r");
        const char *rid = request_id ?: id;
        json_t *j = json_pack("{s:s, s:s}", "message", endpoint_reason(status), "request_id", rid);
        struct MHD_Response *resp = daemon_json_response(status, j, ret_status);
        daemon_endpoint_headers(resp, rid);
        /* The daemon's own answer, not the function's: nosniff as the
         * API's (daemon-http.c queue()). */
        if (resp)
                MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        return resp;
}

/* ---- errno -> HTTP ------------------------------------------------------------ */

unsigned daemon_errno_status(int r, const char **ret_code) {
        static const struct {
                int err;
                unsigned status;
                const char *code;
        } map[] = {
                { -EINVAL, 400, "bad_request" },
                { -EEXIST, 400, "bad_request" },
                { -EPERM, 403, "forbidden" },
                { -EACCES, 403, "forbidden" },
                { -ENOENT, 404, "not_found" },
                { -EALREADY, 409, "conflict" },
                { -EFBIG, 413, "payload_too_large" },
                { -EDQUOT, 413, "payload_too_large" },
                { -EBUSY, 429, "too_many_requests" },
                { -EUSERS, 429, "too_many_requests" },
                { -ENOSPC, 507, "insufficient_storage" },
                { -ESHUTDOWN, 503, "shutting_down" },
                { -ETIMEDOUT, 504, "timeout" },
                { -ELOOP, 400, "bad_request" },
                { -EHOSTUNREACH, 502, "bad_gateway" },
                /* A cluster node cut from its Redis: nothing was done, ask
                 * again later or elsewhere (503 + Retry-After, which
                 * clients retry); -ECOMM: Redis went away with the
                 * request sent, it may have been done (502). */
                { -ECONNREFUSED, 503, "redis_unreachable" },
                { -ECOMM, 502, "bad_gateway" },
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (map[i].err == r) {
                        *ret_code = map[i].code;
                        return map[i].status;
                }
        *ret_code = "internal";
        return 500;
}

struct MHD_Response *daemon_call_errno(const DaemonCall *call, int r, const char *what, unsigned *ret_status) {
        const char *code;
        unsigned status = daemon_errno_status(r, &code);
        struct MHD_Response *resp;
        switch (r) {
        case -ENOENT:
                return daemon_call_error(call, status, code, ret_status, "%s not found", what);
        case -EEXIST:
                /* An id prefix (/v1/runs/{id}…) that several match: the
                 * words an embedded `show PREFIX` prints. */
                if (call && call->n_seg >= 3)
                        return daemon_call_error(call, status, code, ret_status,
                                                 "'%s' matches several %ss; give more of the id", call->seg[2], what);
                return daemon_call_error(call, status, code, ret_status, "%s: the id prefix matches several", what);
        case -EBUSY:
                resp = daemon_call_error(call, status, code, ret_status, "%s: the queue is full; retry later", what);
                daemon_response_headers(resp, (const char *const[]) { "Retry-After", "2", NULL });
                return resp;
        case -EUSERS:
                resp = daemon_call_error(call, status, code, ret_status,
                                         "%s: this tenant's share of the queue is full "
                                         "(server.max_queued_per_tenant); retry later",
                                         what);
                daemon_response_headers(resp, (const char *const[]){ "Retry-After", "2", NULL });
                return resp;
        case -ESHUTDOWN:
                /* A load balancer reads 503 + Retry-After as "this backend
                 * is going away: send it elsewhere" (docs/api.md "Drain"). */
                resp = daemon_call_error(call, status, code, ret_status,
                                         "the daemon is shutting down; retry on another instance or later");
                daemon_response_headers(resp, (const char *const[]) { "Retry-After", "5", NULL });
                return resp;
        case -ENOSPC:
                /* Refused before the disk is full (disk.reserve_bytes). */
                return daemon_call_error(call, status, code, ret_status, "%s refused: %s", what,
                                         daemon_gc_disk_full_message());
        case -ECONNREFUSED:
                /* In a cluster that is Redis (cluster-conn.c: any failed
                 * connect): "Connection refused" alone reads as this
                 * gateway refusing the client. Another gateway may reach
                 * it (a partition), or it comes back. */
                if (call && call->d && call->d->cluster) {
                        resp = daemon_call_error(call, status, code, ret_status,
                                                 "%s: this node cannot reach the cluster's Redis (%s); retry later or "
                                                 "through another gateway",
                                                 what, strerror(-r));
                        daemon_response_headers(resp, (const char *const[]){ "Retry-After", "5", NULL });
                        return resp;
                }
                return daemon_call_error(call, status, code, ret_status, "%s: %s", what, strerror(-r));
        case -ECOMM:
                /* Only the cluster's Redis connection says this
                 * (cluster-conn.c): its answer was lost. */
                return daemon_call_error(call, status, code, ret_status,
                                         "%s: this node lost the cluster's Redis before its answer: what was asked "
                                         "may have been done; look before asking again, or ask with an "
                                         "Idempotency-Key",
                                         what);
        default:
                return daemon_call_error(call, status, code, ret_status, "%s: %s", what, strerror(-r));
        }
}

/* ---- request helpers ------------------------------------------------------------ */

const char *daemon_call_query(const DaemonCall *call, const char *key) {
        return MHD_lookup_connection_value(call->conn, MHD_GET_ARGUMENT_KIND, key);
}

/* 1 for a flag's "true" spellings, 0 for its "false" ones, -EINVAL for
 * anything else. Case-insensitive: Python's requests and httpx send
 * params={"wait": True} as "wait=True". */
static int query_flag_parse(const char *v) {
        if (streq(v, "") || streq(v, "1") || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0)
                return 1;
        if (streq(v, "0") || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0)
                return 0;
        return -EINVAL;
}

bool daemon_call_query_true(const DaemonCall *call, const char *key) {
        /* A bare "?wait" (no '=') is present with no value, which
         * daemon_call_query() cannot tell from absent: it is true, as
         * "?wait=" is. */
        const char *v = NULL;
        size_t n = 0;
        if (MHD_lookup_connection_value_n(call->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) != MHD_YES)
                return false;
        return !v || query_flag_parse(v) > 0;
}

/* Plain decimal digits, at least 1: strtoull() alone takes "-1" (as a
 * huge number), " 5" and "5s"'s prefix. Too many digits read as
 * ULLONG_MAX, which the cap (max_wait_s) lowers. */
static bool query_seconds_parse(const char *v, unsigned long long *ret) {
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (!isdigit((unsigned char) *v) || *end || s == 0)
                return false;
        *ret = s;
        return true;
}

struct MHD_Response *daemon_call_query_check(const DaemonCall *call, unsigned *ret_status) {
        static const char *const flags[] = { "wait", "follow", "events", "source" };
        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                const char *v = daemon_call_query(call, flags[i]);
                if (v && query_flag_parse(v) < 0)
                        return daemon_call_error(call, 400, "bad_request", ret_status,
                                                 "query '%s' must be true or false (or 1, 0), not '%s'", flags[i], v);
        }
        const char *t = daemon_call_query(call, "timeout");
        unsigned long long s;
        if (t && !query_seconds_parse(t, &s))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "query 'timeout' must be a whole number of seconds, 1 or more, not '%s'", t);
        return NULL;
}

struct MHD_Response *daemon_call_query_limit(const DaemonCall *call, size_t dflt, size_t max, size_t *ret,
                                             unsigned *ret_status) {
        const char *l = daemon_call_query(call, "limit");
        *ret = dflt;
        if (!l)
                return NULL;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(l, &end, 10);
        /* strtoull() takes "-1" (as a huge number) and leading blanks:
         * only plain digits are a limit. */
        if (!isdigit((unsigned char) *l) || *end || errno || x == 0 || x > max)
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "query 'limit' must be an integer in 1..%zu", max);
        *ret = x;
        return NULL;
}

struct MHD_Response *daemon_call_query_states(const DaemonCall *call, const char *const *names, const char *names_text,
                                              char ***ret, unsigned *ret_status) {
        assert(call && names && names_text && ret);
        const char *q = daemon_call_query(call, "status");
        *ret = NULL;
        if (!q)
                return NULL;
        _cleanup_free_ char *bad = NULL;
        char **set = NULL;
        if (strv_extend_choices(&set, q, names, false, &bad) < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "unknown status '%s' (%s)", bad,
                                         names_text);
        *ret = set;
        return NULL;
}

usec_t daemon_call_wait_timeout(const DaemonCall *call) {
        usec_t timeout = (usec_t) call->d->cfg.max_wait_s * USEC_PER_SEC;
        const char *t = daemon_call_query(call, "timeout");
        unsigned long long s;
        if (t && query_seconds_parse(t, &s) && s < call->d->cfg.max_wait_s)
                timeout = s * USEC_PER_SEC;
        return timeout;
}

const char *daemon_call_header(const DaemonCall *call, const char *name) {
        return MHD_lookup_connection_value(call->conn, MHD_HEADER_KIND, name);
}

RequestCaps daemon_call_caps(const DaemonCall *call) {
        pthread_rwlock_rdlock(&call->d->cfg_lock);
        RequestCaps caps = {
                .max_depth = call->d->cfg.max_json_depth,
                .max_values = call->d->cfg.max_json_values,
        };
        pthread_rwlock_unlock(&call->d->cfg_lock);
        return caps;
}

bool daemon_metrics_public(Daemon *d) {
        pthread_rwlock_rdlock(&d->cfg_lock);
        bool public = d->cfg.metrics_public;
        pthread_rwlock_unlock(&d->cfg_lock);
        return public;
}

bool daemon_call_sees_activity(const DaemonCall *call) {
        return (call->tenant && call->role == TOKEN_ROLE_ADMIN) || daemon_metrics_public(call->d);
}

json_t *daemon_time_json(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

/* ---- Server-Sent Events ---------------------------------------------------- */

struct MHD_Response *daemon_sse_response(struct MHD_Response *resp) {
        if (!resp)
                return NULL;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        /* A reverse proxy (nginx) would hold events back in its buffer. */
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        return resp;
}

/* An event, whole or not at all, its data appended as it is: a run's end
 * event carries its result, which a printf would copy once more. */
static void sse_event(Buf *out, const char *name, const uint64_t *id, const char *data) {
        assert(out && name && data);
        /* A newline in data would end the field early: callers pass
         * compact JSON, which has none. */
        assert(!strchr(data, '\n'));
        char head[256];
        int h = id ? snprintf(head, sizeof(head), "event: %s\nid: %llu\ndata: ", name, (unsigned long long) *id)
                   : snprintf(head, sizeof(head), "event: %s\ndata: ", name);
        size_t n = strlen(data);
        char *tail;
        if (h < 0 || (size_t) h >= sizeof(head) || buf_extend(out, (size_t) h + n + 2, &tail) < 0)
                return;
        memcpy(tail, head, (size_t) h);
        memcpy(tail + h, data, n);
        memcpy(tail + h + n, "\n\n", 2);
        out->data[out->len] = 0;
}

void daemon_sse_event(Buf *out, const char *name, const char *data) {
        sse_event(out, name, NULL, data);
}

void daemon_sse_event_id(Buf *out, const char *name, uint64_t id, const char *data) {
        sse_event(out, name, &id, data);
}

void daemon_sse_keepalive(Buf *out) {
        assert(out);
        (void) buf_appends(out, ": keep-alive\n\n");
}

bool daemon_sse_drained(SseOut *o) {
        assert(o);
        if (o->off < o->buf.len)
                return false;
        buf_reset(&o->buf);
        o->off = 0;
        return true;
}

ssize_t daemon_sse_take(SseOut *o, char *buf, size_t max) {
        assert(o && buf);
        size_t n = MIN(max, o->buf.len - o->off);
        memcpy(buf, o->buf.data + o->off, n);
        o->off += n;
        return (ssize_t) n;
}

/* daemon.h. Why not MHD_CONTENT_READER_END_WITH_ERROR: libmicrohttpd
 * 0.9.75 then closes the connection without queuing it for cleanup
 * (try_ready_chunked_body()'s failure leaves MHD_connection_handle_idle()
 * before its CLOSED case, and the connection leaves the ready list). It is
 * freed, and its fd closed, only by a later pass over the connection
 * timeout list, which starts from the oldest connection and stops at the
 * first one still open; a resumed connection is in no epoll set either.
 * So beside one kept-alive connection on the same thread, log followers
 * that hung up sat in CLOSE-WAIT for read_timeout_s (and the acceptor,
 * counting them, sent new connections to the other threads: nothing woke
 * that one). MHD's write path has no such gap: a failed send closes the
 * connection and the same call's MHD_connection_handle_idle() frees it. So
 * the socket is shut down (the send fails: nothing reaches the client; a
 * connection in an epoll set also gets EPOLLHUP) and MHD is given one byte
 * to send, a newline (an empty line ends no SSE event, were it ever read). */
ssize_t daemon_stream_cut(struct MHD_Connection *conn, char *buf, size_t max) {
        assert(conn && buf);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || max == 0)
                return MHD_CONTENT_READER_END_WITH_ERROR; /* not reached */
        /* ENOTCONN: the client reset the connection (it closed with our
         * bytes unread): the send fails all the same. */
        (void) shutdown(ci->connect_fd, SHUT_RDWR);
        buf[0] = '\n';
        return 1;
}

ssize_t daemon_sse_woken(DaemonWaiter *w, struct MHD_Connection *conn, char *buf, size_t max) {
        assert(w && conn && buf);
        DaemonWake why = w->why;
        w->why = DAEMON_WAKE_NONE;
        if (why == DAEMON_WAKE_GONE)
                return daemon_stream_cut(conn, buf, max);
        if (why == DAEMON_WAKE_DRAIN)
                return MHD_CONTENT_READER_END_OF_STREAM;
        return 0;
}

bool daemon_sse_ready(SseOut *o, usec_t *last_sent, usec_t now, usec_t every) {
        assert(o && last_sent);
        if (o->buf.len == 0 && now - *last_sent >= every)
                daemon_sse_keepalive(&o->buf); /* keeps proxies from timing out */
        if (o->buf.len == 0)
                return false;
        *last_sent = now;
        return true;
}
