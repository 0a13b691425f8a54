/* The Redis connection (cluster-internal.h): URL parsing, connect with a
 * timeout, one retry after a reconnect; the argument vectors, and a
 * command on one of the queue's connections (cluster_cmd(): the shared one
 * locked, an EVALSHA Redis lacks sent again as EVAL), which the queue
 * (cluster-redis.c) and the logs (cluster-logs.c) both send through. */
#include <poll.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <sys/time.h>

#include "cluster-internal.h"

/* The userinfo of a redis:// URL, USER:PASSWORD or :PASSWORD (Redis 6
 * ACL user, or the default user's requirepass), into c, %XX decoded
 * (RFC 3986: a password holding ':', '@' or '/' is written escaped); a
 * broken escape or a NUL byte is -EINVAL. */
static int parse_userinfo(const char *s, size_t n, Conn *c) {
        const char *colon = memchr(s, ':', n);
        if (!colon)
                return -EINVAL; /* a user without a password cannot AUTH */
        size_t ul = (size_t) (colon - s);
        if (ul > 0) {
                c->user = percent_decode(s, ul, true, NULL);
                if (!c->user)
                        return -EINVAL;
        }
        c->password = percent_decode(colon + 1, n - ul - 1, true, NULL);
        return c->password && *c->password ? 0 : -EINVAL;
}

int conn_parse_url(const char *url, Conn *ret) {
        assert(url);
        Conn c = { 0 };
        int k = 0;
        if (startswith(url, "unix://"))
                c.socket_path = xstrdup(url + strlen("unix://"));
        else if (startswith(url, "unix:"))
                c.socket_path = xstrdup(url + strlen("unix:"));
        else if (startswith(url, "redis://")) {
                const char *h = url + strlen("redis://");
                /* redis://[USER:PASSWORD@]HOST[:PORT][/DB]: the last '@'
                 * ends the userinfo (a host, a port and a db number hold
                 * none), so a password's unescaped '@' or '/' is its own. */
                const char *at = strrchr(h, '@');
                if (at) {
                        k = parse_userinfo(h, (size_t) (at - h), &c);
                        h = at + 1;
                }
                const char *colon = strrchr(h, ':');
                size_t hl = colon ? (size_t) (colon - h) : strcspn(h, "/");
                c.port = 6379;
                if (colon) {
                        char *end;
                        long p = strtol(colon + 1, &end, 10);
                        if ((*end && *end != '/') || p <= 0 || p > 65535)
                                k = -EINVAL;
                        c.port = (int) p;
                }
                if (hl == 0)
                        k = -EINVAL;
                c.host = xstrndup(h, hl);
        } else
                return -EINVAL;
        if (c.socket_path && !*c.socket_path)
                k = -EINVAL;
        if (k < 0) {
                conn_done(&c);
                return k;
        }
        *ret = c;
        return 0;
}

char *cluster_url_redacted(const char *url) {
        assert(url);
        if (!startswith(url, "redis://"))
                return xstrdup(url);
        const char *h = url + strlen("redis://");
        const char *at = strrchr(h, '@'); /* as conn_parse_url() reads it */
        if (!at)
                return xstrdup(url);
        const char *colon = memchr(h, ':', (size_t) (at - h));
        size_t ul = colon ? (size_t) (colon - h) : (size_t) (at - h);
        return xasprintf("redis://%.*s:***%s", (int) ul, h, at);
}

int conn_set_password(Conn *c, const char *password) {
        assert(c);
        if (!password || c->password)
                return 0;
        c->password = xstrdup(password);
        return 0;
}

void conn_done(Conn *c) {
        if (c->ctx)
                redisFree(c->ctx);
        free(c->host);
        free(c->socket_path);
        free(c->user);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        *c = (Conn) { 0 };
}

/* AUTH on a fresh connection, when c has a password: every connection
 * (a reconnect too) is a new Redis client that must authenticate before
 * anything else. -EACCES when Redis refuses it (WRONGPASS), -EIO when it
 * does not answer. */
static int conn_auth(redisContext *x, const Conn *c) {
        if (!c->password)
                return 0;
        const char *argv[] = { "AUTH", c->user ? c->user : c->password, c->password };
        size_t n = c->user ? 3 : 2;
        redisReply *r = redisCommandArgv(x, (int) n, argv, NULL);
        if (!r)
                return -EIO;
        int k = r->type == REDIS_REPLY_ERROR ? -EACCES : 0;
        freeReplyObject(r);
        return k;
}

static int conn_connect(Conn *c) {
        struct timeval tv = { .tv_sec = 2 };
        if (c->ctx) {
                redisFree(c->ctx);
                c->ctx = NULL;
        }
        redisContext *x = c->socket_path ? redisConnectUnixWithTimeout(c->socket_path, tv)
                                         : redisConnectWithTimeout(c->host, c->port, tv);
        if (!x)
                return -ENOMEM;
        if (x->err) {
                redisFree(x);
                return -ECONNREFUSED;
        }
        /* A command never waits forever on a Redis that stopped answering
         * (SIGSTOP, a partition): blocking reads ask for less than this. */
        struct timeval io = { .tv_sec = 10 };
        (void) redisSetTimeout(x, io);
        int k = conn_auth(x, c);
        if (k < 0) {
                redisFree(x);
                return k;
        }
        c->ctx = x;
        return 0;
}

/* Whether Redis already closed x (killed, restarted, an idle timeout):
 * its FIN is there before anything is written. A command written on it
 * could not run, yet its write succeeds and only the read fails, which
 * reads as "sent, no answer: may have run" (a gateway's 502) where the
 * truth is "never ran" (503, asked again by clients). One poll, no wait;
 * only the peer's close counts, not data waiting to be read. */
static bool conn_closed_by_peer(const redisContext *x) {
        struct pollfd p = { .fd = x->fd, .events = POLLRDHUP };
        return x->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* redisCommandArgv(), saying whether the command went out whole (*sent):
 * one whose write failed (a Redis killed: its socket is closed) did not
 * run; one written, whose answer did not come, may have. */
static redisReply *command_sent(redisContext *x, size_t n, const char *const *argv, const size_t *len, bool *sent) {
        if (redisAppendCommandArgv(x, (int) n, (const char **) argv, len) != REDIS_OK)
                return NULL;
        int done = 0;
        while (!done)
                if (redisBufferWrite(x, &done) != REDIS_OK)
                        return NULL;
        *sent = true;
        void *reply = NULL;
        return redisGetReply(x, &reply) == REDIS_OK ? reply : NULL;
}

redisReply *conn_command(Conn *c, size_t n, const char *const *argv, int *ret_error) {
        return conn_command_len(c, n, argv, NULL, ret_error);
}

redisReply *conn_command_len(Conn *c, size_t n, const char *const *argv, const size_t *lens, int *ret_error) {
        assert(c && argv);
        size_t *len = xmalloc(MAX(n, (size_t) 1) * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
                len[i] = lens ? lens[i] : strlen(argv[i]);
        redisReply *rep = NULL;
        int k = 0;
        bool sent = false;
        for (int attempt = 0; attempt < 2 && !rep; attempt++) {
                if (!c->ctx || c->ctx->err || conn_closed_by_peer(c->ctx)) {
                        k = conn_connect(c);
                        if (k == -EACCES)
                                break; /* the same password again would be refused again */
                        if (k < 0)
                                continue;
                }
                rep = command_sent(c->ctx, n, argv, len, &sent);
                if (!rep)
                        k = -EIO;
        }
        free(len);
        /* A command that went out without its answer coming back may have
         * run: told apart from one that never went (-ECONNREFUSED), which
         * a client may ask again as it is (a gateway's 503, docs/api.md). */
        if (!rep && ret_error)
                *ret_error = sent && k != -EACCES ? -ECOMM : k < 0 ? k : -EIO;
        return rep;
}

void args_add(Args *a, const char *s) {
        args_addb(a, s, strlen(s));
}

void args_addb(Args *a, const char *s, size_t len) {
        a->v = xrealloc(a->v, (a->n + 2) * sizeof(char *));
        a->len = xrealloc(a->len, (a->n + 1) * sizeof(size_t));
        char *copy = xmemdupz(s, len);
        a->len[a->n] = len;
        a->v[a->n++] = copy;
        a->v[a->n] = NULL;
}

void args_addf(Args *a, const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                abort();
        va_end(ap);
        a->v = xrealloc(a->v, (a->n + 2) * sizeof(char *));
        a->len = xrealloc(a->len, (a->n + 1) * sizeof(size_t));
        a->len[a->n] = strlen(s);
        a->v[a->n++] = s;
        a->v[a->n] = NULL;
}

void args_eval(Args *a, const char *script, const char *sha1, int nkeys) {
        assert(a->n == 0);
        args_add(a, "EVALSHA");
        args_add(a, sha1);
        args_addf(a, "%d", nkeys);
        a->script = script;
}

void args_done(Args *a) {
        for (size_t i = 0; i < a->n; i++)
                free(a->v[i]);
        free(a->v);
        free(a->len);
        *a = (Args) { 0 };
}

/* a as EVAL with the script's text in place of its SHA-1. */
static redisReply *eval_text(Conn *conn, const Args *a, int *ret_error) {
        const char **v = xmalloc(a->n * sizeof(char *));
        size_t *len = xmalloc(a->n * sizeof(size_t));
        for (size_t i = 0; i < a->n; i++) {
                v[i] = a->v[i];
                len[i] = a->len[i];
        }
        v[0] = "EVAL";
        len[0] = 4;
        v[1] = a->script;
        len[1] = strlen(a->script);
        redisReply *r = conn_command_len(conn, a->n, v, len, ret_error);
        free(v);
        free(len);
        return r;
}

/* When a refusal below was last logged (monotonic µs; 0: never). */
static _Atomic usec_t refused_logged;

/* cluster-internal.h. */
bool cluster_reply_refused_unrun(const char *error) {
        assert(error);
        /* LOADING: Redis reads its AOF or RDB after a start (a big one
         * takes minutes) and answers every data command so. BUSY: a script
         * ran past lua-time-limit; Redis runs nothing else until it ends.
         * MASTERDOWN: a replica cut from its master. Each refuses before
         * running the command. (BUSYGROUP, an XGROUP CREATE's, is no
         * refusal: its word ends at the space.) */
        static const char *const words[] = { "LOADING", "BUSY", "MASTERDOWN" };
        size_t n = strcspn(error, " ");
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (n == strlen(words[i]) && strncmp(error, words[i], n) == 0)
                        return true;
        return false;
}

redisReply *cluster_cmd(ClusterQueue *c, Conn *conn, const Args *a, int *ret_error) {
        bool shared = conn == &c->conn;
        if (shared)
                pthread_mutex_lock(&c->lock);
        int k = 0;
        redisReply *r = conn_command_len(conn, a->n, (const char *const *) a->v, a->len, &k);
        if (r && a->script && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
                /* Redis lacks the script (new, restarted, flushed): EVAL
                 * loads it, and runs it; later calls find it by SHA-1. */
                freeReplyObject(r);
                r = eval_text(conn, a, &k);
        }
        if (shared)
                pthread_mutex_unlock(&c->lock);
        if (!r) {
                *ret_error = k;
                return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR && cluster_reply_refused_unrun(r->str)) {
                /* Redis there but refusing to run anything yet: what was
                 * asked was not done, as with a Redis out of reach
                 * (-ECONNREFUSED: a gateway's 503 + Retry-After, which
                 * clients ask again). Before, LOADING was -EIO: a 500
                 * "internal" for every request while Redis read its AOF. */
                usec_t now = now_monotonic(), last = atomic_load(&refused_logged);
                if (!last || now - last > 60 * USEC_PER_SEC) {
                        atomic_store(&refused_logged, now);
                        log_warn("redis: %s: %s (nothing was done; said again once a minute while it lasts)", a->v[0],
                                 r->str);
                }
                *ret_error = -ECONNREFUSED;
                freeReplyObject(r);
                return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
                log_warn("redis: %s: %s", a->v[0], r->str);
                *ret_error = strstr(r->str, "NOGROUP") ? -ENOENT : -EIO;
                freeReplyObject(r);
                return NULL;
        }
        return r;
}

/* Here, beside the connection it makes, not in cluster-redis.c: the log
 * reader (cluster-logs.c) makes its own connections too. */
int cq_conn_parse(ClusterQueue *c, Conn *ret) {
        assert(c && ret);
        int k = conn_parse_url(c->url, ret);
        if (k < 0)
                return k;
        return conn_set_password(ret, c->password);
}

int cluster_cmd_int(ClusterQueue *c, Args *a, long long *ret) {
        assert(c && a && ret);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, a, &k);
        args_done(a);
        if (!rep)
                return k;
        if (rep->type == REDIS_REPLY_INTEGER)
                *ret = rep->integer;
        else
                k = -EBADMSG;
        freeReplyObject(rep);
        return k;
}

int cluster_cmd_bytes(ClusterQueue *c, Args *a, uint8_t **ret, size_t *ret_len) {
        assert(c && a && ret && ret_len);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, a, &k);
        args_done(a);
        if (!rep)
                return k;
        if (rep->type == REDIS_REPLY_STRING) {
                *ret = (uint8_t *) xmemdupz(rep->str, rep->len);
                *ret_len = rep->len;
        } else
                k = -ENOENT;
        freeReplyObject(rep);
        return k;
}
