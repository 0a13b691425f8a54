/* The HTTP layer: libmicrohttpd with a small pool of epoll threads
 * (server.http_threads), request bodies (capped), the request deadline,
 * authentication (bearer tokens and AWS SigV4) and the router that hands
 * each request to the handler its route-table row names (daemon-routes.c).
 * Handlers live with their resource: daemon-runs-api.c,
 * daemon-functions.c, daemon-workers.c, daemon-metrics.c, daemon-dag.c,
 * daemon-data.c.
 *
 * No handler blocks a pool thread: `?wait=true`, `?follow=1` and
 * synchronous invokes hold their connection for the whole run, so they
 * suspend it (daemon_call_wait(), daemon-wait.c) and are resumed by the
 * run's events, their deadline, their client hanging up or the drain. A
 * thousand waiting clients cost a thousand suspended sockets, not a
 * thousand threads (docs/internals/performance-log.md). */
#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include "daemon-ui.h"
#include "daemon.h"

/* A request target (path and query) over HTTP_TARGET_MAX bytes is a 414,
 * headers over HTTP_HEADERS_MAX bytes in all a 431, each in the error
 * shape of the route family (the API's, Lambda's, a Function URL's). The
 * request line and headers must fit the connection's memory pool, which
 * libmicrohttpd takes from HTTP_CONNECTION_MEMORY (its default, 32 KiB,
 * made the limit ~32 KB); past the pool it answers its own HTML page, which
 * no option changes. The pool is mapped lazily: a connection holds the
 * pages it was sent. */
#define HTTP_TARGET_MAX 32768
#define HTTP_HEADERS_MAX 32768
#define HTTP_CONNECTION_MEMORY (256U << 10)

/* A suspended handler's continuation (daemon_call_wait()). */
typedef struct WaitCont {
        DaemonWaiter w;
        const void *key;
        usec_t deadline;
        usec_t look;            /* a poll (daemon_call_poll()): the pause before its next look; 0: none */
        DaemonWaitThen *then;
        void *state;
        void (*state_free)(void *);
        DaemonCall call;        /* the handler's, with copies of what it pointed to */
        char tenant_buf[72];
        bool answered;
} WaitCont;

typedef struct Req {
        WaitCont *wait;         /* a handler waits (daemon_call_wait()) */
        Buf body;
        size_t discarded;
        uint64_t body_due;      /* body bytes still announced (Content-Length); UINT64_MAX: unknown (chunked) */
        bool body_in_pieces;    /* a hang-up was looked for while the body came (client_gone_check()) */
        bool too_big;
        bool responded;
        bool started;           /* the first access-handler call happened */
        char *bad_url;          /* why the raw request target is refused (400) */
        unsigned bad_status;    /* … with this status when not 400 (501: a transfer coding, 414, 431) */
        char *target;           /* the request target as sent (SigV4 signs it) */
        usec_t t0;              /* when its request line came (the --verbose log's duration) */
        const DaemonBodySink *sink_ops; /* the route streams its body (DaemonRoute.sink) */
        void *sink;             /* … to this, instead of body */
        /* find_route()'s answer, looked up once: the early checks and
         * dispatch() all ask it of one request. */
        bool routed;
        int route_k; /* daemon_route_find()'s return */
        int n_seg;
        unsigned allow;
        const DaemonRoute *route;
        char seg[DAEMON_MAX_SEGMENTS][DAEMON_SEGMENT_MAX];
} Req;

/* What the router knows of a request while it authenticates it. */
typedef struct Ctx {
        Daemon *d;
        struct MHD_Connection *conn;
        const char *method;
        Req *req;
        DaemonCall call;        /* what the handler gets */
        char tenant_buf[72];
} Ctx;

static void count_status(Daemon *d, unsigned status) {
        __atomic_add_fetch(&d->metrics.http_requests, 1, __ATOMIC_RELAXED);
        if (status >= 500)
                __atomic_add_fetch(&d->metrics.http_errors_5xx, 1, __ATOMIC_RELAXED);
        else if (status >= 400)
                __atomic_add_fetch(&d->metrics.http_errors_4xx, 1, __ATOMIC_RELAXED);
}

/* --verbose: one line per response, where its status is known (a 401,
 * 404 or 400 answered before any handler too): method, path as sent
 * without its query (a query may hold what a caller sends a function),
 * status, tenant, milliseconds since the request line. No header. */
static void log_request(const Ctx *c, unsigned status) {
        if (!log_level_enabled(LOG_DEBUG))
                return;
        const char *target = c->req && c->req->target ? c->req->target : "?";
        int len = (int) MIN(strcspn(target, "?"), (size_t) 1024);
        /* A Function URL's path past the function is its caller's data (a
         * webhook's path may hold its secret): /fn/TENANT/NAME/… only. */
        const char *more = "";
        if (startswith(target, "/fn/")) {
                const char *p = target + 4;
                for (int seg = 0; seg < 2 && p < target + len; seg++) {
                        p += strcspn(p, "/?");
                        if (seg == 0 && *p == '/')
                                p++;
                }
                if (p < target + len) {
                        len = (int) (p - target);
                        more = "/…";
                }
        }
        double ms = c->req && c->req->t0 ? (double) (now_monotonic() - c->req->t0) / USEC_PER_MSEC : 0;
        log_debug("%s %.*s%s %u %s %.1fms", c->method ?: "?", len, target, more, status,
                  c->call.tenant ? c->call.tenant : "-", ms);
}

/* Queues resp (NULL: drop the connection) and counts it. Every answer of
 * the daemon's own says nosniff (a JSON answer or a run's log is never
 * read as a script or a page; the API's did not say it, the dashboard's
 * did); a Function URL's says what its function set, as Lambda's do. */
static enum MHD_Result queue(Ctx *c, struct MHD_Response *resp, unsigned status) {
        if (!resp)
                return MHD_NO;
        bool fn = c->call.endpoint || (c->req && c->req->target && startswith(c->req->target, "/fn/"));
        if (!fn && !MHD_get_response_header(resp, "X-Content-Type-Options"))
                MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        enum MHD_Result ret = MHD_queue_response(c->conn, status, resp);
        MHD_destroy_response(resp);
        count_status(c->d, status);
        log_request(c, status);
        return ret;
}

static enum MHD_Result queue_error(Ctx *c, unsigned status, const char *code, const char *const *headers,
                                   const char *fmt, ...) _printf_(5, 6);
static enum MHD_Result queue_error(Ctx *c, unsigned status, const char *code, const char *const *headers,
                                   const char *fmt, ...) {
        va_list ap;
        _cleanup_free_ char *msg = NULL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        unsigned st;
        struct MHD_Response *resp = daemon_call_error(&c->call, status, code, &st, "%s", msg ? msg : code);
        daemon_response_headers(resp, headers);
        return queue(c, resp, st);
}

/* ---- auth ------------------------------------------------------------------ */

static char *bearer_token(Ctx *c) {
        const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return NULL;
        _cleanup_free_ char *t = xstrdup(h + 7);
        return xstrdup(strstrip(t));
}

/* daemon.h. */
const char *daemon_sigv4_header(void *userdata, const char *name) {
        return MHD_lookup_connection_value(userdata, MHD_HEADER_KIND, name);
}

/* daemon_sigv4_authenticate(), and the access key's
 * daemon_access_key_sha256() into ret_key_sha256 (may be NULL) on success. */
static int sigv4_authenticate(Daemon *d, const SigV4Request *rq, const char *authorization, TokenRole *ret_role,
                              char *ret_tenant, size_t tenant_size, const char **ret_type, char **ret_error,
                              uint8_t *ret_key_sha256) {
        assert(d && rq && authorization && ret_role && ret_tenant && ret_type && ret_error);
        uint8_t key_sha256[SHA256_DIGEST_SIZE] = {};
        _cleanup_free_ char *secret = NULL;
        SigV4Auth a = {};
        TokenRole role = TOKEN_ROLE_READONLY;
        char tenant[72] = "";
        int k = sigv4_parse_authorization(authorization, &a, ret_error);
        *ret_type = "IncompleteSignatureException";
        if (k >= 0) {
                pthread_rwlock_rdlock(&d->cfg_lock);
                const DaemonToken *t = daemon_config_find_access_key(&d->cfg, a.access_key_id);
                if (t) {
                        secret = xstrdup(t->secret_access_key);
                        daemon_access_key_sha256(t->access_key_id, t->secret_access_key, key_sha256);
                        role = t->role;
                        snprintf(tenant, sizeof(tenant), "%s", t->tenant);
                }
                pthread_rwlock_unlock(&d->cfg_lock);
                if (!secret) {
                        *ret_error = xstrdup("The security token included in the request is invalid (unknown access key id)");
                        *ret_type = "UnrecognizedClientException";
                        k = -EPERM;
                }
        }
        if (k >= 0) {
                *ret_type = "InvalidSignatureException";
                k = sigv4_verify(rq, &a, secret, now_realtime(), ret_error);
        }
        if (secret)
                OPENSSL_cleanse(secret, strlen(secret));
        sigv4_auth_done(&a);
        if (k < 0)
                return -EPERM;
        *ret_role = role;
        snprintf(ret_tenant, tenant_size, "%s", tenant);
        if (ret_key_sha256)
                memcpy(ret_key_sha256, key_sha256, sizeof(key_sha256));
        return 0;
}

/* daemon.h. */
int daemon_sigv4_authenticate(Daemon *d, const SigV4Request *rq, const char *authorization, TokenRole *ret_role,
                              char *ret_tenant, size_t tenant_size, const char **ret_type, char **ret_error) {
        return sigv4_authenticate(d, rq, authorization, ret_role, ret_tenant, tenant_size, ret_type, ret_error, NULL);
}

/* SigV4 on an API route: the request as the connection holds it. */
static int authenticate_sigv4(Ctx *c, const char *h, TokenRole *ret_role, const char **ret_type, char **ret_error) {
        SigV4Request rq = {
                .method = c->method,
                .raw_target = c->req && c->req->target ? c->req->target : "/",
                .header = daemon_sigv4_header,
                .userdata = c->conn,
                .body = c->req ? c->req->body.data : NULL,
                .body_len = c->req ? c->req->body.len : 0,
        };
        /* Kept for the streams this request may open: removing the key
         * (SIGHUP) or changing its secret ends them, as a token's revoke
         * does (daemon_sse_cred_revoked()). */
        c->call.cred = (DaemonCred){ .kind = DAEMON_CRED_SIGV4 };
        return sigv4_authenticate(c->d, &rq, h, ret_role, c->tenant_buf, sizeof(c->tenant_buf), ret_type, ret_error,
                                  c->call.cred.sha256);
}

/* A bearer token's role (tenant in c->tenant_buf); -ENOKEY when none was
 * sent, -EPERM when it is unknown, -ECONNREFUSED when the cluster's Redis
 * cannot say (daemon_token_lookup_hash()). */
static int authenticate_bearer(Ctx *c, TokenRole *ret_role) {
        _cleanup_free_ char *tok = bearer_token(c);
        if (!tok || !*tok)
                return -ENOKEY;
        /* Per HTTP thread: its connections' requests mostly carry one
         * token (daemon_config_find_token_memo). */
        static __thread TokenMemo memo;
        pthread_rwlock_rdlock(&c->d->cfg_lock);
        const DaemonToken *t = daemon_config_find_token_memo(&c->d->cfg, tok, &memo);
        if (t) {
                *ret_role = t->role;
                snprintf(c->tenant_buf, sizeof(c->tenant_buf), "%s", t->tenant);
                /* Kept for the streams this request may open: the entry's
                 * hash, no digest on the request's path. */
                c->call.cred = (DaemonCred){ .kind = DAEMON_CRED_BEARER };
                memcpy(c->call.cred.sha256, t->sha256, 32);
        }
        pthread_rwlock_unlock(&c->d->cfg_lock);
        if (t)
                return 0;
        /* one made by `pysprinterd token create` (daemon-tokens.c) */
        c->call.cred = (DaemonCred){ .kind = DAEMON_CRED_BEARER };
        sha256_digest(tok, strlen(tok), c->call.cred.sha256);
        return daemon_token_lookup_hash(c->d, c->call.cred.sha256, ret_role, c->tenant_buf, sizeof(c->tenant_buf));
}

/* On a route anyone may call whose answer says more to some tokens: a
 * bearer token sent is looked at (c->call.tenant and .role set), and one
 * that does not authenticate is read as none (c->call.tenant stays NULL). */
static void look_at_bearer(Ctx *c) {
        TokenRole role;
        if (MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization") &&
            authenticate_bearer(c, &role) >= 0) {
                c->call.tenant = c->tenant_buf;
                c->call.role = role;
        }
}

/* Returns true when authenticated (c->call.tenant and .role set);
 * otherwise a 401/403 has been queued and *ret says how. */
static bool authenticate(Ctx *c, bool mutating, enum MHD_Result *ret) {
        TokenRole role = TOKEN_ROLE_READONLY;
        int k;

        if (c->d->no_auth) {
                c->call.tenant = "local";
                c->call.role = TOKEN_ROLE_ADMIN;
                return true;
        }
        const char *authz = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
        if (!authz) {
                /* The dashboard's session cookie stands for the token it
                 * was made from (docs/ui.md); 0: no cookie, go on. */
                unsigned st = 401;
                const char *msg = NULL;
                k = daemon_ui_session_auth(c->d, c->conn, mutating, c->tenant_buf, sizeof(c->tenant_buf), &role, &st,
                                           &msg, &c->call.cred);
                if (k == -ECONNREFUSED) {
                        /* daemon_call_errno(): 503 redis_unreachable, Retry-After */
                        unsigned status;
                        struct MHD_Response *resp = daemon_call_errno(&c->call, k, "session", &status);
                        *ret = queue(c, resp, status);
                        return false;
                }
                if (k < 0) {
                        *ret = queue_error(c, st, st == 401 ? "unauthorized" : "forbidden", NULL, "%s", msg);
                        return false;
                }
        } else
                k = 0;
        if (k > 0) {
                /* authenticated by the session */
        } else if (authz && startswith(authz, "AWS4-HMAC-SHA256")) {
                _cleanup_free_ char *err = NULL;
                const char *type = NULL;
                if (authenticate_sigv4(c, authz, &role, &type, &err) < 0) {
                        unsigned st;
                        struct MHD_Response *resp = daemon_call_lambda_error(&c->call, 403, "forbidden", type, &st,
                                                                             "%s", err ? err : "bad signature");
                        *ret = queue(c, resp, st);
                        return false;
                }
        } else if ((k = authenticate_bearer(c, &role)) < 0) {
                if (k == -ECONNREFUSED) {
                        /* Not "invalid token": a token made through the API
                         * lives in the cluster's Redis, which this node cannot
                         * reach now (503 + Retry-After: ask again). */
                        unsigned st;
                        struct MHD_Response *resp = daemon_call_errno(&c->call, k, "token", &st);
                        *ret = queue(c, resp, st);
                        return false;
                }
                bool none = k == -ENOKEY;
                *ret = queue_error(c, 401, "unauthorized",
                                   (const char *const[]) { "WWW-Authenticate",
                                                           none ? "Bearer realm=\"pysprinter\""
                                                                : "Bearer error=\"invalid_token\"",
                                                           NULL },
                                   "%s", none ? "missing bearer token: send 'Authorization: Bearer TOKEN'" : "invalid token");
                return false;
        }
        if (mutating && role == TOKEN_ROLE_READONLY) {
                *ret = queue_error(c, 403, "forbidden", NULL, "this token is read-only");
                return false;
        }
        c->call.tenant = c->tenant_buf;
        c->call.role = role;
        return true;
}

/* ---- waiting handlers ------------------------------------------------------------ */

char daemon_suspended_tag;

/* daemon_call_wait() with look: a poll's first pause (daemon_call_poll()), 0 for a wait on its key. */
static struct MHD_Response *call_wait(const DaemonCall *call, const void *key, usec_t timeout, usec_t look,
                                      DaemonWaitThen *then, void *state, void (*state_free)(void *)) {
        assert(call && call->http_req && then);
        Req *req = call->http_req;
        assert(!req->wait);
        WaitCont *k = xcalloc(1, sizeof(WaitCont));
        daemon_waiter_init(&k->w);
        k->key = key;
        k->deadline = now_monotonic() + timeout;
        k->look = look;
        k->then = then;
        k->state = state;
        k->state_free = state_free;
        k->call = *call;
        k->call.seg = NULL;
        k->call.n_seg = 0;
        k->call.client_fd = -1;
        k->call.raw_target = req->target;
        if (call->tenant) {
                snprintf(k->tenant_buf, sizeof(k->tenant_buf), "%s", call->tenant);
                k->call.tenant = k->tenant_buf;
        }
        req->wait = k;
        return DAEMON_SUSPENDED;
}

struct MHD_Response *daemon_call_wait(const DaemonCall *call, const void *key, usec_t timeout, DaemonWaitThen *then,
                                      void *state, void (*state_free)(void *)) {
        return call_wait(call, key, timeout, 0, then, state, state_free);
}

static void wait_cont_free(WaitCont *k) {
        if (!k)
                return;
        if (k->state_free)
                k->state_free(k->state);
        daemon_waiter_done(&k->w);
        free(k);
}

/* A poll's pauses between looks: the first short (a wait for what is
 * about to end answers quickly), doubling up to the longest (a long wait
 * costs 4 reads a second). */
#define POLL_FIRST_USEC (10 * USEC_PER_MSEC)
#define POLL_MAX_USEC (250 * USEC_PER_MSEC)

/* Runs the continuation until it answers or parks; on the connection's
 * MHD thread (first from dispatch(), then each time it is resumed). */
static enum MHD_Result wait_step(Ctx *c, Req *req) {
        WaitCont *k = req->wait;
        for (;;) {
                DaemonWake why = k->w.why;
                /* A poll parks until its next look, not its deadline: woken
                 * before the deadline, it is time to look again. */
                if (why == DAEMON_WAKE_TIMEOUT && k->look > 0 && now_monotonic() < k->deadline) {
                        why = DAEMON_WAKE_EVENT;
                        k->look = MIN(k->look * 2, POLL_MAX_USEC);
                }
                uint64_t gen = daemon_wait_arm();
                unsigned status = 500;
                struct MHD_Response *resp = k->then(&k->call, k->state, why, &status);
                if (resp != DAEMON_SUSPENDED) {
                        k->answered = true;
                        c->call.lambda = k->call.lambda;
                        c->call.tenant = k->call.tenant; /* for the --verbose line */
                        return queue(c, resp, status);
                }
                if (why != DAEMON_WAKE_EVENT && why != DAEMON_WAKE_NONE) {
                        log_error("a waiting handler did not answer after its wait ended (%d)", (int) why);
                        k->answered = true;
                        return MHD_NO;
                }
                usec_t until = k->deadline;
                if (k->look > 0) {
                        until = MIN(until, now_monotonic() + k->look);
                        /* Nobody kicks a poll's key: no wakeup to lose. Armed
                         * after its look (a read of Redis), the kicks of
                         * every other run meanwhile do not make it look
                         * again at once, over and over on a busy node. */
                        gen = daemon_wait_arm();
                }
                if (daemon_wait_park(&k->w, c->conn, k->key, gen, until))
                        return MHD_YES; /* suspended; MHD calls on_request again once resumed */
        }
}

typedef struct Poll {
        DaemonPollDone *done;
        DaemonPollAnswer *answer;
        void *state;
        void (*state_free)(void *);
} Poll;

static void poll_free(void *p) {
        Poll *x = p;
        if (x->state_free)
                x->state_free(x->state);
        free(x);
}

static struct MHD_Response *poll_then(const DaemonCall *call, void *p, DaemonWake why, unsigned *ret_status) {
        Poll *x = p;
        if (why == DAEMON_WAKE_GONE)
                return NULL;
        bool done = x->done(call->d, x->state);
        if (!done && why == DAEMON_WAKE_EVENT)
                return DAEMON_SUSPENDED;
        return x->answer(call, x->state, done, ret_status);
}

/* daemon.h. The continuation of daemon_call_wait() with a look timer: its
 * key is its own (nobody kicks it), so only the timer, the deadline, a
 * hang-up and the drain wake it. */
struct MHD_Response *daemon_call_poll(const DaemonCall *call, usec_t timeout, DaemonPollDone *done,
                                      DaemonPollAnswer *answer, void *state, void (*state_free)(void *)) {
        assert(call && call->http_req && done && answer);
        Poll *x = xcalloc(1, sizeof(Poll));
        *x = (Poll) { .done = done, .answer = answer, .state = state, .state_free = state_free };
        return call_wait(call, x, timeout, POLL_FIRST_USEC, poll_then, x, poll_free);
}

/* Whether url is under one of the Lambda API's dated prefixes: boto3 puts
 * each operation under the date it was added (/2015-03-31/functions,
 * /2019-09-30/…/concurrency, /2016-08-19/account-settings, /2014-11-13/…
 * invoke-async). Only 2015-03-31's have routes, but a refusal of the
 * others is an SDK's too: without Lambda's shape botocore shows `An error
 * occurred (404) …: ` with no type and no words. No other path of the
 * daemon starts with a date. */
static bool lambda_api_path(const char *url) {
        static const char shape[] = "/dddd-dd-dd/";
        for (size_t i = 0; shape[i]; i++) {
                char c = url[i];
                if (shape[i] == 'd' ? !(c >= '0' && c <= '9') : c != shape[i])
                        return false;
        }
        return true;
}

/* Which error body a refusal gets (Lambda's, a Function URL's, the API's)
 * from the path alone: before the route is known, or when none matched. */
static void call_kind_from_url(DaemonCall *call, const char *url) {
        call->lambda = lambda_api_path(url);
        call->endpoint = startswith(url, "/fn/");
}

/* ---- routing ---------------------------------------------------------------- */

/* The row for the request: matched on the target's path as sent, each
 * segment decoded after the split (daemon_route_find), so that a name
 * holding an encoded '/' (a%2Fb) is one segment its handler refuses in its
 * own words. MHD's url has %2F decoded already: `cluster drain a/b` was
 * "no such endpoint: /v1/cluster/nodes/a/b/drain". */
static int find_route(Req *req, const char *method, const char *url, const DaemonRoute **ret) {
        assert(req && method && url && ret);
        /* One method and target per Req (on_uri() makes one a request):
         * the answer of the first look holds for the next. */
        if (!req->routed) {
                const char *target = req->target && req->target[0] == '/' ? req->target : NULL;
                _cleanup_free_ char *path = target ? xstrndup(target, strcspn(target, "?")) : NULL;
                req->route_k = daemon_route_find(method, path ?: url, req->seg, &req->n_seg, &req->route, &req->allow);
                req->routed = true;
        }
        *ret = req->route;
        return req->route_k;
}

/* Resolves the request against the route table, authenticates it as its
 * row says and hands it to the row's handler. */
static enum MHD_Result dispatch(Ctx *c, const char *url, const Buf *body) {
        const DaemonRoute *route = NULL;
        int k = find_route(c->req, c->method, url, &route);

        call_kind_from_url(&c->call, url);
        if (route)
                c->call.lambda = route->access == ROUTE_LAMBDA;
        if (k == -EOPNOTSUPP) {
                /* Before auth: a client learns the Allow set without a token. */
                char a[DAEMON_ALLOW_MAX];
                daemon_route_allow(c->req->allow, a);
                return queue_error(c, 405, "method_not_allowed", (const char *const[]) { "Allow", a, NULL },
                                   "method %s is not allowed here; allowed: %s", c->method, a);
        }
        if (k < 0)
                return queue_error(c, 404, "not_found", NULL, "no such endpoint: %s", url);

        enum MHD_Result ret;
        bool mutating = !(daemon_route_method(c->method) & ROUTE_GET);
        switch (route->access) {
        case ROUTE_PUBLIC:
                break;
        case ROUTE_HEALTH:
                /* Anyone reads the status; the run counts are an admin's
                 * when metrics are private (daemon_api_healthz). */
                look_at_bearer(c);
                break;
        case ROUTE_METRICS:
                if (daemon_metrics_public(c->d)) {
                        /* Anyone reads the totals; the per-tenant series
                         * are an admin's (daemon_api_metrics). */
                        look_at_bearer(c);
                        break;
                }
                if (!authenticate(c, false, &ret))
                        return ret;
                if (c->call.role != TOKEN_ROLE_ADMIN)
                        return queue_error(c, 403, "forbidden", NULL, "%s needs an admin token", url);
                break;
        case ROUTE_CLUSTER:
                /* Another node: the cluster's secret, never a tenant token. */
                switch (daemon_cluster_secret_ok(c->d, MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                                                                   "Authorization"))) {
                case 1:
                        break;
                case 0:
                        return queue_error(c, 401, "unauthorized", NULL, "%s needs the cluster's secret", url);
                default:
                        return queue_error(c, 404, "not_found", NULL, "no such endpoint: %s", url);
                }
                break;
        case ROUTE_USER:
        case ROUTE_LAMBDA:
        default:
                if (!authenticate(c, mutating, &ret))
                        return ret;
                break;
        }
        c->call.seg = c->req->seg;
        c->call.n_seg = c->req->n_seg;
        c->call.body = body->data ? body->data : "";
        c->call.body_len = body->len;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->call.client_fd = ci ? ci->connect_fd : -1;
        c->call.raw_target = c->req && c->req->target ? c->req->target : url;
        c->call.http_req = c->req;
        unsigned status = 500;
        /* Only the API's own routes: a Function URL's query is its
         * function's, and Lambda's has its own words. A target without a
         * query (every invoke wrk and the clients send) has nothing to
         * check: five header-list scans fewer on the invoke path. */
        bool has_query = strchr(c->call.raw_target, '?') != NULL;
        struct MHD_Response *resp = route->access == ROUTE_USER && has_query
                                            ? daemon_call_query_check(&c->call, &status)
                                            : NULL;
        if (!resp)
                resp = route->handler(&c->call, &status);
        if (resp == DAEMON_SUSPENDED)
                return wait_step(c, c->req);
        return queue(c, resp, status);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn);

/* A body larger than this, or one the client asks leave to send (Expect:
 * 100-continue), is read only from a caller the route lets in. */
#define EARLY_AUTH_BODY_BYTES (64U << 10)

/* Before a large body is read: true when the caller may not call the
 * route, with the refusal (401/403) queued in *ret. Without it, anyone
 * without a token had the daemon buffer max_body_bytes (12 MiB) per
 * connection before the 401, and curl's "Expect: 100-continue" was
 * answered "go on" for a request that would be refused. A small body is
 * left to dispatch(), which authenticates every call: the invoke path
 * pays nothing more. Routes that stream their body did this already
 * (sink_begin()); a Lambda route's SigV4 signs the body, so a signed call
 * waits for it. */
static bool early_auth_refuses(Ctx *c, Req *req, const char *url, enum MHD_Result *ret) {
        const DaemonRoute *route = NULL;
        if (req->body_due == 0)
                return false;
        if (req->body_due <= EARLY_AUTH_BODY_BYTES && !MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Expect"))
                return false;
        if (find_route(req, c->method, url, &route) < 0)
                return false; /* 404/405: dispatch() answers them */
        if (route->access == ROUTE_LAMBDA) {
                /* Only a SigV4 signature covers the body; a call without
                 * one (no Authorization, a bearer token) is judged now.
                 * Before, anyone without a token had the daemon read
                 * max_body_bytes, after a 100 Continue, for the 401. */
                const char *authz = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
                if (authz && startswith(authz, "AWS4-HMAC-SHA256"))
                        return false;
        } else if (route->access != ROUTE_USER)
                return false; /* public routes: dispatch() answers them */
        call_kind_from_url(&c->call, url);
        return !authenticate(c, !(daemon_route_method(c->method) & ROUTE_GET), ret);
}
static int http_framing_check(struct MHD_Connection *conn, char **ret_error, unsigned *ret_status);
static int http_headers_check(struct MHD_Connection *conn, char **ret_error, unsigned *ret_status);

/* The API's error code of a refusal made before the route is known. */
static const char *http_refusal_code(unsigned status) {
        switch (status) {
        case 414:
                return "uri_too_long";
        case 431:
                return "request_header_fields_too_large";
        case 501:
                return "not_implemented";
        default:
                return "bad_request";
        }
}
static void conn_set_handling(struct MHD_Connection *conn, bool handling);

/* A route that streams its body (DaemonRoute.sink): the caller is
 * authenticated now, before a byte is stored, and the sink opened. True
 * when a refusal was queued instead (*ret). */
static bool sink_begin(Ctx *c, Req *req, const char *url, enum MHD_Result *ret) {
        const DaemonRoute *route = NULL;
        if (!(daemon_route_method(c->method) & (ROUTE_PUT | ROUTE_POST)))
                return false; /* no body to stream */
        if (find_route(req, c->method, url, &route) < 0 || !route->sink || route->access != ROUTE_USER)
                return false;
        if (!authenticate(c, !(daemon_route_method(c->method) & ROUTE_GET), ret))
                return true;
        c->call.seg = req->seg;
        c->call.n_seg = req->n_seg;
        c->call.raw_target = req->target ? req->target : url;
        _cleanup_free_ char *err = NULL;
        int r = route->sink->begin(&c->call, &req->sink, &err);
        c->call.seg = NULL;
        if (r < 0) {
                const char *code;
                unsigned st = daemon_errno_status(r, &code);
                *ret = queue_error(c, st, code, NULL, "%s", err ? err : strerror(-r));
                return true;
        }
        if (req->sink) {
                req->sink_ops = route->sink;
                /* A 10 GiB upload outlasts the request deadline: once
                 * authenticated, only the idle timeout holds it. */
                conn_set_handling(c->conn, true);
        }
        return false;
}

/* ---- the request deadline ------------------------------------------------------
 *
 * MHD's connection timeout is an idle timeout: a client that sends one
 * header byte every few seconds keeps its connection (and, here, its
 * thread) forever. Each connection is tracked from its start; a reaper
 * shuts down the socket of any whose request (headers and body) has not
 * fully arrived within server.request_deadline_s. Once a request is being
 * handled (a ?wait=true may take an hour) the clock stops, and it restarts
 * when the response is done (the next request on a kept-alive connection). */

/* One client address's open connections that count towards
 * server.max_connections_per_ip (those not over it). */
typedef struct IpCount {
        uint8_t addr_len;
        uint8_t addr[16];
        unsigned n;
        struct IpCount *next; /* in its bucket of track.ips */
} IpCount;

typedef struct ConnTrack {
        int fd;
        usec_t since;           /* start of the request being received */
        bool handling;          /* the request arrived; no deadline */
        bool over;              /* past server.max_connections_per_ip: answered 429, then closed */
        uint8_t addr_len;       /* the client: 4 (IPv4) or 8 bytes (an IPv6 /64); 0 unknown */
        uint8_t addr[16];
        IpCount *ip; /* its address's count, when it is counted there */
        struct ConnTrack *prev, *next;
} ConnTrack;

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        ConnTrack *head;
        usec_t deadline;
        unsigned per_ip; /* server.max_connections_per_ip */
        bool stop;
        bool running;
        pthread_t thread;
        /* The addresses with connections counted (conn_track_over()), a
         * hash table of n_ips entries in n_buckets (a power of two, or 0)
         * chains, keyed with a random seed: a client picks its (IPv6)
         * addresses, not their buckets. */
        IpCount **ips;
        size_t n_buckets, n_ips;
        uint64_t seed;
} track = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* ---- the acceptor ----------------------------------------------------------------
 *
 * With a pool of threads, libmicrohttpd puts the listening socket in
 * every thread's epoll set and the thread that wakes first accepts up to
 * ten connections in a row: a client that opens its connections together
 * (wrk -c8, a connection pool) finds most or all of them on ONE thread
 * (round 12: 9/0, 8/1, 5/4 of wrk's connections over two threads, in turn;
 * the other CPU then takes no HTTP work). So this thread accepts, and
 * hands each connection to the pool thread that holds the fewest
 * (MHD_add_connection()). MHD gives an added connection to thread
 * fd % threads (the first with room from there, as its per-IP and total
 * limits stay the daemon's); the descriptor's number is steered to the
 * thread wanted. One thread hop per new connection, none per request.
 *
 * server.max_connections is held here, over all the threads together:
 * libmicrohttpd splits its connection limit between its pool's threads
 * (5 over 4 threads: 2, 1, 1, 1) and refuses by a thread's share, not by
 * the whole: with http_threads 4 and max_connections 5 it served 2 of 8
 * idle connections (round 16, hand16). A connection past the limit is
 * closed at once, as libmicrohttpd closes one; each thread's own limit is
 * set to the whole (the acceptor never hands out more). The per-IP limit stays libmicrohttpd's: its table is
 * the whole daemon's. */

static struct {
        int listen_fd;
        int stop_efd;
        unsigned threads;
        unsigned max_conns;                      /* server.max_connections, over all threads */
        unsigned conns[DAEMON_HTTP_THREADS_MAX]; /* open connections per pool thread (atomic) */
        struct MHD_Daemon *mhd;
        pthread_t thread;
        bool running;
} acc = { .listen_fd = -1, .stop_efd = -1 };

static unsigned acceptor_open(void) {
        unsigned n = 0;
        for (unsigned i = 0; i < acc.threads; i++)
                n += __atomic_load_n(&acc.conns[i], __ATOMIC_RELAXED);
        return n;
}

static unsigned acceptor_least_loaded(void) {
        unsigned best = 0, best_n = UINT_MAX;
        for (unsigned i = 0; i < acc.threads; i++) {
                unsigned n = __atomic_load_n(&acc.conns[i], __ATOMIC_RELAXED);
                if (n < best_n) {
                        best = i;
                        best_n = n;
                }
        }
        return best;
}

/* fd, or a duplicate of it whose number % threads is want (fd closed):
 * F_DUPFD takes the lowest free number above fd, so a few steps reach
 * any residue. Where that fails, fd as it is (a thread less even). */
static int acceptor_steer(int fd, unsigned want) {
        for (unsigned tries = 0; (unsigned) fd % acc.threads != want && tries < 2 * acc.threads; tries++) {
                int nfd = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
                if (nfd < 0)
                        break;
                (void) close(fd);
                fd = nfd;
        }
        return fd;
}

static void *acceptor(void *arg) {
        (void) arg;
        (void) pthread_setname_np(pthread_self(), "http-accept");
        for (;;) {
                struct pollfd pf[2] = { { .fd = acc.listen_fd, .events = POLLIN }, { .fd = acc.stop_efd, .events = POLLIN } };
                if (poll(pf, 2, -1) < 0 && errno != EINTR)
                        break;
                if (pf[1].revents)
                        break;
                for (;;) {
                        struct sockaddr_storage ss;
                        socklen_t len = sizeof(ss);
                        int fd = accept4(acc.listen_fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                        if (fd < 0) {
                                if (errno == EMFILE || errno == ENFILE)
                                        (void) poll(NULL, 0, 10); /* as MHD would: later */
                                break; /* EAGAIN: all taken; a client that left meanwhile */
                        }
                        /* Only this thread adds: a count it reads can only
                         * have fallen since. */
                        if (acceptor_open() >= acc.max_conns) {
                                (void) close(fd);
                                continue;
                        }
                        fd = acceptor_steer(fd, acceptor_least_loaded());
                        unsigned slot = (unsigned) fd % acc.threads;
                        /* Counted before MHD's thread can see it close. */
                        __atomic_add_fetch(&acc.conns[slot], 1, __ATOMIC_RELAXED);
                        if (MHD_add_connection(acc.mhd, fd, (struct sockaddr *) &ss, len) != MHD_YES)
                                __atomic_sub_fetch(&acc.conns[slot], 1, __ATOMIC_RELAXED); /* MHD closed it */
                }
        }
        return NULL;
}

/* A connection the acceptor counted closes (its fd still open). */
static void acceptor_closed(struct MHD_Connection *conn) {
        if (acc.threads == 0)
                return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && ci->connect_fd >= 0)
                __atomic_sub_fetch(&acc.conns[(unsigned) ci->connect_fd % acc.threads], 1, __ATOMIC_RELAXED);
}

static void acceptor_stop(void) {
        if (!acc.running)
                return;
        uint64_t one = 1;
        (void) !write(acc.stop_efd, &one, sizeof(one));
        pthread_join(acc.thread, NULL);
        acc.running = false;
        acc.stop_efd = fd_close(acc.stop_efd);
        acc.listen_fd = fd_close(acc.listen_fd);
}

/* Takes listen_fd (closed by acceptor_stop(); not on failure). */
static int acceptor_start(struct MHD_Daemon *mhd, int listen_fd, unsigned threads, unsigned max_conns) {
        memset(acc.conns, 0, sizeof(acc.conns));
        acc.mhd = mhd;
        acc.threads = threads;
        acc.max_conns = max_conns;
        acc.stop_efd = eventfd(0, EFD_CLOEXEC);
        if (acc.stop_efd < 0)
                return -errno;
        acc.listen_fd = listen_fd;
        int k = pthread_create(&acc.thread, NULL, acceptor, NULL);
        if (k != 0) {
                acc.stop_efd = fd_close(acc.stop_efd);
                acc.listen_fd = -1;
                return -k;
        }
        acc.running = true;
        return 0;
}

unsigned daemon_http_thread_connections(unsigned *ret, unsigned max) {
        unsigned n = MIN(acc.threads, max);
        for (unsigned i = 0; i < n; i++)
                ret[i] = __atomic_load_n(&acc.conns[i], __ATOMIC_RELAXED);
        return n;
}

/* The client of conn into t: its IPv4 address (IPv4-mapped IPv6 too, as
 * libmicrohttpd's own per-IP table counts it), or its IPv6 /64 (a host's
 * prefix, all of whose addresses it may use: counted per address, one
 * client had no limit; as a public endpoint's rate, daemon-endpoints.c). */
static void conn_track_addr(struct MHD_Connection *conn, ConnTrack *t) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        if (sa && sa->sa_family == AF_INET) {
                memcpy(t->addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
                t->addr_len = 4;
        } else if (sa && sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                bool mapped = IN6_IS_ADDR_V4MAPPED(a);
                memcpy(t->addr, mapped ? a->s6_addr + 12 : a->s6_addr, mapped ? 4 : 8);
                t->addr_len = mapped ? 4 : 8;
        }
}

uint64_t daemon_seeded_hash(uint64_t seed, const void *data, size_t len) {
        const uint8_t *b = data;
        uint64_t h = seed ^ 0xcbf29ce484222325ULL ^ len;
        for (size_t i = 0; i < len; i++) {
                h ^= b[i];
                h *= 0x100000001b3ULL;
        }
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return h;
}

/* With track.lock held: the bucket of an address. */
static size_t ip_bucket(const uint8_t *addr, uint8_t len) {
        return (size_t) daemon_seeded_hash(track.seed, addr, len) & (track.n_buckets - 1);
}

/* With track.lock held: twice the buckets (64 at first), the entries
 * moved to theirs, so chains stay short as addresses come. */
static void ip_table_grow(void) {
        size_t n_old = track.n_buckets;
        IpCount **old = track.ips;
        track.n_buckets = n_old ? 2 * n_old : 64;
        track.ips = xcalloc(track.n_buckets, sizeof(IpCount *));
        for (size_t i = 0; i < n_old; i++)
                for (IpCount *e = old[i], *next; e; e = next) {
                        next = e->next;
                        size_t b = ip_bucket(e->addr, e->addr_len);
                        e->next = track.ips[b];
                        track.ips[b] = e;
                }
        free(old);
}

/* With track.lock held: the count of t's (known) address, made (0) when
 * it has none. */
static IpCount *ip_count_get(const ConnTrack *t) {
        if (track.n_ips >= track.n_buckets)
                ip_table_grow();
        size_t b = ip_bucket(t->addr, t->addr_len);
        for (IpCount *e = track.ips[b]; e; e = e->next)
                if (e->addr_len == t->addr_len && memcmp(e->addr, t->addr, t->addr_len) == 0)
                        return e;
        IpCount *e = xcalloc(1, sizeof(IpCount));
        e->addr_len = t->addr_len;
        memcpy(e->addr, t->addr, t->addr_len);
        e->next = track.ips[b];
        track.ips[b] = e;
        track.n_ips++;
        return e;
}

/* With track.lock held: one connection fewer at ip's address; an address
 * left with none leaves the table. */
static void ip_count_drop(IpCount *ip) {
        assert(ip && ip->n > 0);
        if (--ip->n > 0)
                return;
        for (IpCount **p = &track.ips[ip_bucket(ip->addr, ip->addr_len)]; *p; p = &(*p)->next)
                if (*p == ip) {
                        *p = ip->next;
                        break;
                }
        track.n_ips--;
        free(ip);
}

/* With track.lock held: whether t's address already holds
 * server.max_connections_per_ip connections; if not, t is counted there
 * (until on_connection() sees it closed). Past the limit, the connection's
 * request is answered 429 with Retry-After and the connection closed, so
 * a client can back off and come again; libmicrohttpd resets only those
 * past twice the limit (a client that ignores the answers), as it reset
 * every one past the limit before, which a client reads as "the server is
 * away" (curl: "Connection reset by peer"). One look in a table of the
 * addresses' counts, not a walk of the open connections (up to
 * server.max_connections of them) per new connection. */
static bool conn_track_over(ConnTrack *t) {
        if (t->addr_len == 0)
                return false;
        IpCount *ip = ip_count_get(t);
        if (track.per_ip > 0 && ip->n >= track.per_ip)
                return true; /* not counted: ip->n > 0, so it stays */
        ip->n++;
        t->ip = ip;
        return false;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                ConnTrack *t = xcalloc(1, sizeof(ConnTrack));
                t->fd = ci ? ci->connect_fd : -1;
                t->since = now_monotonic();
                conn_track_addr(conn, t);
                pthread_mutex_lock(&track.lock);
                t->over = conn_track_over(t);
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
                acceptor_closed(conn);
                /* Unlinked before MHD closes the fd: the reaper never shuts
                 * down a descriptor number that was reused. */
                pthread_mutex_lock(&track.lock);
                if (t->prev)
                        t->prev->next = t->next;
                else
                        track.head = t->next;
                if (t->next)
                        t->next->prev = t->prev;
                if (t->ip)
                        ip_count_drop(t->ip);
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
        (void) pthread_setname_np(pthread_self(), "http-reaper");
        pthread_mutex_lock(&track.lock);
        while (!track.stop) {
                usec_t now = now_monotonic();
                for (ConnTrack *t = track.head; t; t = t->next)
                        if (!t->handling && t->fd >= 0 && now - t->since > track.deadline) {
                                /* MHD's thread sees EOF and closes it. */
                                (void) shutdown(t->fd, SHUT_RDWR);
                                t->fd = -1;
                        }
                cond_wait_usec(&track.cond, &track.lock, 250 * USEC_PER_MSEC);
        }
        pthread_mutex_unlock(&track.lock);
        return NULL;
}

/* libmicrohttpd 0.9.75's epoll mode is edge-triggered and takes a short
 * read for "drained": it waits for the socket's next event. When a
 * client's FIN came while MHD was still reading a body in pieces, that
 * event was spent before the short read, and the connection sat in
 * CLOSE-WAIT until read_timeout_s: a body cut short held its slot and an
 * upload's staging file (9 hang-ups in 10 of a 2 MiB body cut short); a
 * client that sent its whole body and half-closed got its answer but no
 * EOF for 30 s. A peek that reads EOF means the client will send nothing
 * more: shutting down our read side wakes the connection's epoll again
 * (the socket's state change), so MHD reads the EOF and ends the
 * connection (on_completed() drops a staging file). Nothing the client
 * sent is lost: EOF is only seen once everything before it was read, and
 * what MHD holds already is handled first. Called while more of a body is
 * due, and once more when a request whose body came in pieces ends. */
static void client_gone_check(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char byte;
        if (ci && recv(ci->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
                (void) shutdown(ci->connect_fd, SHUT_RD);
}

/* What is still due of the body as the first call sees the request: its
 * Content-Length, or UINT64_MAX when it does not announce one. */
static uint64_t body_announced(struct MHD_Connection *conn) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        char *end;
        if (!cl || !*cl)
                return UINT64_MAX;
        unsigned long long x = strtoull(cl, &end, 10);
        return *end == 0 ? (uint64_t) x : UINT64_MAX;
}

/* Counts a body chunk taken; checks for a hang-up while more is due. */
static void body_taken(struct MHD_Connection *conn, Req *req, size_t n) {
        if (req->body_due != UINT64_MAX)
                req->body_due = req->body_due > n ? req->body_due - n : 0;
        if (req->body_due > 0) {
                req->body_in_pieces = true;
                client_gone_check(conn);
        }
}

/* The coding of the request's body when it has one that is not identity,
 * else NULL. The daemon decodes none (RFC 9110 8.4.1): a body sent gzip'd
 * with Content-Encoding: gzip was read as JSON ("invalid token near
 * '\u001F'"), and one whose header named a coding it did not have was
 * taken as it came. A Function URL's body is its function's, coded or
 * not, as Lambda hands it over (base64, with its content-encoding
 * header). */
static const char *body_coding(struct MHD_Connection *conn, const char *url) {
        if (startswith(url, "/fn/"))
                return NULL;
        const char *ce = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
        if (!ce)
                return NULL;
        ce += strspn(ce, " \t");
        size_t n = strcspn(ce, " \t");
        if (n == 0 ||
            (n == strlen("identity") && strncasecmp(ce, "identity", n) == 0 && !ce[n + strspn(ce + n, " \t")]))
                return NULL;
        /* No body, nothing coded: a GET that says so is left alone. */
        uint64_t len = body_announced(conn);
        bool body = len != UINT64_MAX ? len > 0
                                      : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
        return body ? ce : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
        Daemon *d = cls;
        Req *req = *req_cls;
        Ctx c = { .d = d, .conn = conn, .method = method, .req = req,
                  .call = { .d = d, .conn = conn, .method = method, .role = TOKEN_ROLE_READONLY, .client_fd = -1 } };

        if (!req) { /* not reached: on_uri() made it; kept for safety */
                req = on_uri(d, NULL, conn);
                *req_cls = req;
                c.req = req;
        }
        if (!req->started) {
                req->started = true;
                req->body_due = body_announced(conn);
                if (!req->bad_url)
                        (void) http_headers_check(conn, &req->bad_url, &req->bad_status);
                if (!req->bad_url)
                        (void) http_framing_check(conn, &req->bad_url, &req->bad_status);
                if (req->bad_url) {
                        req->responded = true;
                        call_kind_from_url(&c.call, url);
                        unsigned st = req->bad_status ?: 400;
                        /* The body is not read: what follows it on the
                         * connection is never taken for a request. */
                        return queue_error(&c, st, http_refusal_code(st),
                                           (const char *const[]){ "Connection", "close", NULL }, "%s", req->bad_url);
                }
                ConnTrack *t = conn_track(conn);
                if (t && t->over) {
                        /* conn_track_over(): answered, then closed (its
                         * body, if any, unread). */
                        req->responded = true;
                        call_kind_from_url(&c.call, url);
                        return queue_error(&c, 429, "too_many_requests",
                                           (const char *const[]){ "Retry-After", "1", "Connection", "close", NULL },
                                           "too many connections from this address (server.max_connections_per_ip "
                                           "is %u): close some and retry",
                                           track.per_ip);
                }
                const char *coding = body_coding(conn, url);
                if (coding) {
                        /* Before the body is read (and before 100
                         * Continue), as the 413 below. */
                        req->responded = true;
                        call_kind_from_url(&c.call, url);
                        return queue_error(&c, 415, "unsupported_media_type",
                                           (const char *const[]){ "Accept-Encoding", "identity", NULL },
                                           "the request body is sent with Content-Encoding '%.64s', which the daemon "
                                           "does not decode: send it as is, without Content-Encoding",
                                           coding);
                }
                enum MHD_Result ret;
                if (sink_begin(&c, req, url, &ret)) {
                        req->responded = true;
                        return ret;
                }
                /* Refuse an announced oversized body before reading it
                 * (and before curl's "Expect: 100-continue" is answered). */
                if (!req->sink && req->body_due != UINT64_MAX && req->body_due > req->body.max) {
                        req->responded = true;
                        call_kind_from_url(&c.call, url);
                        return queue_error(&c, 413, "payload_too_large", NULL,
                                             "request body of %llu bytes is larger than the %zu byte limit",
                                             (unsigned long long) req->body_due, req->body.max);
                }
                if (!req->sink && early_auth_refuses(&c, req, url, &ret)) {
                        req->responded = true;
                        return ret;
                }
                return MHD_YES;
        }
        if (*upload_data_size > 0)
                body_taken(conn, req, *upload_data_size);
        if (*upload_data_size > 0 && req->sink) {
                /* Streamed: after a refused chunk (over the cap) the rest
                 * is drained so the client reads the answer, for a while. */
                if (req->sink_ops->write(req->sink, upload_data, *upload_data_size) < 0)
                        req->discarded += *upload_data_size;
                *upload_data_size = 0;
                return req->discarded > (64U << 20) ? MHD_NO : MHD_YES;
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
        if (req->responded) {
                /* Resumed: the waiting handler looks again. */
                if (req->wait && !req->wait->answered)
                        return wait_step(&c, req);
                return MHD_YES;
        }
        req->responded = true;
        conn_set_handling(conn, true);
        if (req->too_big) {
                call_kind_from_url(&c.call, url);
                return queue_error(&c, 413, "payload_too_large", NULL, "request body is larger than the %zu byte limit",
                                     req->body.max);
        }

        /* No config lock is held here: a ?wait=true request may take an
         * hour, and SIGHUP must not wait for it. authenticate() copies what
         * it needs under the lock. */
        c.call.upload = req->sink;
        return dispatch(&c, url, &req->body);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
        Req *req = *req_cls;
        conn_set_handling(conn, false); /* the next request's clock starts */
        if (!req)
                return;
        if (req->body_in_pieces && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                client_gone_check(conn);
        /* A secret's value (PUT /v1/secrets/NAME) and a login's token do
         * not outlive their request in the heap (docs/secrets.md). */
        if (req->body.data && req->target &&
            (startswith(req->target, "/v1/secrets/") || startswith(req->target, "/login")))
                explicit_bzero(req->body.data, req->body.len);
        if (req->wait && !req->wait->answered) {
                /* MHD closed a resumed connection whose client had gone
                 * before its handler looked again: the handler learns of
                 * the hang-up all the same (a ?wait=true submit cancels
                 * its run). */
                unsigned st;
                struct MHD_Response *resp = req->wait->then(&req->wait->call, req->wait->state, DAEMON_WAKE_GONE, &st);
                if (resp && resp != DAEMON_SUSPENDED)
                        MHD_destroy_response(resp);
        }
        wait_cont_free(req->wait);
        buf_free(&req->body);
        if (req->sink)
                req->sink_ops->end(req->sink); /* what the handler did not take, staging included */
        free(req->bad_url);
        free(req->target);
        free(req);
        *req_cls = NULL;
}

int http_target_check(const char *target, char **ret_error) {
        assert(target);
        /* MHD hands handlers the decoded path and query values as C
         * strings, so an encoded NUL silently cuts a name short
         * ("DELETE /v1/runs/PREFIX%00zzz" cancelled PREFIX); no name, id or
         * value of this API holds a control character either. */
        for (const char *p = target; *p; p++) {
                int ch = (unsigned char) *p;
                if (*p == '%' && hex_digit_value(p[1]) >= 0 && hex_digit_value(p[2]) >= 0)
                        ch = hex_digit_value(p[1]) * 16 + hex_digit_value(p[2]);
                if (ch < 0x20 || ch == 0x7f) {
                        bool in_query = memchr(target, '?', (size_t) (p - target)) != NULL;
                        *ret_error = xasprintf("the request %s holds a control character (byte 0x%02x)",
                                               in_query ? "query" : "path", ch);
                        return -EINVAL;
                }
        }
        return 0;
}

typedef struct {
        unsigned content_length, transfer_encoding, authorization;
        const char *te; /* the first Transfer-Encoding's value */
} HeaderCounts;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        HeaderCounts *n = cls;
        (void) kind;
        if (strcasecmp(key, "Content-Length") == 0)
                n->content_length++;
        else if (strcasecmp(key, "Transfer-Encoding") == 0 && !n->transfer_encoding++)
                n->te = value;
        else if (strcasecmp(key, "Authorization") == 0)
                n->authorization++;
        return MHD_YES;
}

/* libmicrohttpd 0.9.75 frames a body by the first of several
 * Content-Length headers, and by chunks when Transfer-Encoding comes with
 * one: a proxy in front that reads the other header sees other requests
 * on the connection than we do (request smuggling, RFC 9112 6.3 says
 * "handle as an error"). It frames by chunks only a Transfer-Encoding that
 * is exactly "chunked": `gzip, chunked` or `identity` left the body on the
 * connection, unanswered until the read timeout, where a proxy frames it
 * (6.3: a coding list not ending with chunked is 400 and close; 6.1, a
 * coding the server does not know is 501). It also reads the first of two
 * Authorization headers, where a proxy may have meant the last. All of
 * them are refused before the body is read; the answer closes the
 * connection. *ret_status: 501 for the coding, else left alone (400). */
static int http_framing_check(struct MHD_Connection *conn, char **ret_error, unsigned *ret_status) {
        HeaderCounts n = {};
        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &n);
        /* MHD strips the value's leading spaces, not its trailing ones,
         * and frames by chunks only a value that is "chunked" in any case. */
        const char *te = n.te ? n.te + strspn(n.te, " \t") : NULL;
        const char *comma = te ? strrchr(te, ',') : NULL;
        bool coded_chunks = false;
        if (comma) {
                const char *last = comma + 1 + strspn(comma + 1, " \t");
                size_t k = strcspn(last, " \t");
                coded_chunks = k == strlen("chunked") && strncasecmp(last, "chunked", k) == 0 &&
                               !last[k + strspn(last + k, " \t")] && strcspn(te, ", \t") > 0;
        }
        if (n.content_length > 1)
                *ret_error = xstrdup("the request has more than one Content-Length header");
        else if (n.content_length > 0 && n.transfer_encoding > 0)
                *ret_error = xstrdup("the request has both Content-Length and Transfer-Encoding headers");
        else if (n.transfer_encoding > 1)
                *ret_error = xstrdup("the request has more than one Transfer-Encoding header");
        else if (te && strcasecmp(te, "chunked") != 0 && coded_chunks) {
                /* "gzip, chunked": chunks of a coding the daemon does not
                 * decode. */
                *ret_error = xasprintf("the request's transfer coding '%.*s' is not supported: send its body "
                                       "chunked only, or with Content-Length",
                                       (int) MIN(strcspn(te, ", \t"), (size_t) 64), te);
                *ret_status = 501;
        } else if (te && strcasecmp(te, "chunked") != 0)
                *ret_error = xasprintf("the request's Transfer-Encoding '%.64s' is not 'chunked': the daemon knows "
                                       "its body's length by chunks or Content-Length only",
                                       te);
        else if (n.authorization > 1)
                *ret_error = xstrdup("the request has more than one Authorization header");
        else
                return 0;
        return -EINVAL;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        size_t *n = cls;
        (void) kind;
        /* "Name: value\r\n" as sent, give or take the blanks MHD strips. */
        *n += strlen(key) + (value ? strlen(value) : 0) + 4;
        return MHD_YES;
}

/* Headers over HTTP_HEADERS_MAX in all are a 431 in the API's words (and
 * the route family's shape), as a target over HTTP_TARGET_MAX is a 414.
 * libmicrohttpd answers its own HTML page only for a request line and
 * headers over HTTP_CONNECTION_MEMORY, which it cannot hold. */
static int http_headers_check(struct MHD_Connection *conn, char **ret_error, unsigned *ret_status) {
        size_t n = 0;
        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &n);
        if (n <= HTTP_HEADERS_MAX)
                return 0;
        *ret_error = xasprintf("the request's headers are %zu bytes, over the %d byte limit", n, HTTP_HEADERS_MAX);
        *ret_status = 431;
        return -EINVAL;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the only place the request target is seen
 * undecoded. What it returns becomes the request's *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
        Daemon *d = cls;
        Req *req = xcalloc(1, sizeof(Req));
        req->t0 = now_monotonic();
        buf_init(&req->body, d->cfg.max_body_bytes);
        if (uri) {
                size_t n = strlen(uri);
                if (n > HTTP_TARGET_MAX) {
                        req->bad_url = xasprintf("the request target (path and query) is %zu bytes, over the %d byte "
                                                 "limit: send large values in the request body",
                                                 n, HTTP_TARGET_MAX);
                        req->bad_status = 414;
                } else
                        (void) http_target_check(uri, &req->bad_url);
                req->target = xstrdup(uri);
        }
        return req;
}

int daemon_http_start(Daemon *d, const char *address, void **ret_mhd, char **ret_error) {
        struct sockaddr_storage ss;
        size_t len;
        bool loopback;

        if (listen_address_parse(address, &ss, &len, &loopback) < 0) {
                *ret_error = xasprintf("bad listen address '%s' (expected HOST:PORT or [V6]:PORT)", address);
                return -EINVAL;
        }
        daemon_scrub_init(d);
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
                *ret_error = xasprintf("cannot listen on %s: %s", address, strerror(-r));
                return r;
        }
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &ss, (socklen_t) len) < 0 || listen(fd, 1024) < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot listen on %s: %s", address,
                                       r == -EADDRINUSE ? "address in use (another process listens there)" : strerror(-r));
                return r;
        }
        /* A pool of epoll threads; waiting requests suspend their
         * connection (daemon-wait.c) rather than hold a thread. */
        unsigned threads = d->cfg.http_threads;
        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (unsigned) MIN(n, 16L) : 2;
        }
        int k = daemon_wait_start();
        if (k < 0) {
                *ret_error = xasprintf("cannot start the waiter thread: %s", strerror(-k));
                return k;
        }
        unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        /* More than one thread: connections come through the acceptor
         * (above), MHD listens on nothing. */
        bool accepting = threads > 1;
        if (accepting)
                flags |= MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
        assert(threads <= DAEMON_HTTP_THREADS_MAX); /* the config's cap, or the CPUs' at most 16 */
        /* Through the acceptor, each thread may hold them all (it
         * holds the total). */
        unsigned mhd_connection_limit = d->cfg.max_connections * (accepting ? threads : 1);
        /* Before the first connection can be counted (conn_track_over()). */
        pthread_mutex_lock(&track.lock);
        track.per_ip = (unsigned) d->cfg.max_connections_per_ip;
        if (!track.ips && getrandom(&track.seed, sizeof(track.seed), GRND_NONBLOCK) != sizeof(track.seed))
                track.seed = (uint64_t) now_realtime() ^ (uint64_t) getpid() << 32;
        pthread_mutex_unlock(&track.lock);
        struct MHD_OptionItem listen_opt[] = { { accepting ? MHD_OPTION_END : MHD_OPTION_LISTEN_SOCKET, fd, NULL },
                                               { MHD_OPTION_END, 0, NULL } };
        struct MHD_Daemon *mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, d, MHD_OPTION_ARRAY, listen_opt, MHD_OPTION_THREAD_POOL_SIZE, threads,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) d->cfg.read_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                mhd_connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 2 * (unsigned) d->cfg.max_connections_per_ip,
                /* conn_track_over() answers those between */ MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_uri, d,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_CONNECTION_MEMORY, MHD_OPTION_END);
        if (!mhd) {
                int r = errno > 0 ? -errno : -EIO;
                *ret_error = xasprintf("cannot start the HTTP server on %s: %s", address, strerror(-r));
                return r;
        }
        struct sockaddr_storage bound;
        socklen_t bound_len = sizeof(bound);
        unsigned port = getsockname(fd, (struct sockaddr *) &bound, &bound_len) == 0
                                ? ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &bound)->sin6_port
                                                                    : ((struct sockaddr_in *) &bound)->sin_port)
                                : 0;
        if (accepting) {
                k = acceptor_start(mhd, fd, threads, d->cfg.max_connections);
                if (k < 0) {
                        MHD_stop_daemon(mhd);
                        *ret_error = xasprintf("cannot start the HTTP acceptor: %s", strerror(-k));
                        return k;
                }
        }
        TAKE_FD(fd); /* the acceptor's, or MHD's: closed when it stops */
        pthread_mutex_lock(&track.lock);
        track.deadline = (usec_t) d->cfg.request_deadline_s * USEC_PER_SEC;
        track.stop = false;
        pthread_mutex_unlock(&track.lock);
        if (!track.running && pthread_create(&track.thread, NULL, reaper, NULL) == 0)
                track.running = true;
        log_info("listening on %s (port %u, %u HTTP threads)%s", address, port, threads,
                 d->no_auth ? ", no authentication (local user only)" : "");
        *ret_mhd = mhd;
        return 0;
}

void daemon_http_stop(void *mhd) {
        /* Waiting requests are answered first: MHD must not be stopped
         * with a suspended connection. */
        daemon_wait_drain(5 * USEC_PER_SEC);
        acceptor_stop(); /* no connection added to a stopping MHD */
        MHD_stop_daemon(mhd);
        daemon_wait_stop();
        if (track.running) {
                pthread_mutex_lock(&track.lock);
                track.stop = true;
                pthread_cond_signal(&track.cond);
                pthread_mutex_unlock(&track.lock);
                pthread_join(track.thread, NULL);
                track.running = false;
        }
}
