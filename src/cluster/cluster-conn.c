/* The Redis connection (cluster-internal.h): URL parsing, connect with a
 * timeout, one retry after a reconnect; the argument vectors, and a
 * command on one of the queue's connections (cluster_cmd(): the shared one
 * locked, an EVALSHA Redis lacks sent again as EVAL), which the queue
 * (cluster-redis.c) and the logs (cluster-logs.c) both send through. */
#include <stdarg.h>
#include <sys/time.h>

#include "cluster-internal.h"

int conn_parse_url(const char *url, Conn *ret) {
        assert(url);
        Conn c = { 0 };
        if (startswith(url, "unix://"))
                c.socket_path = xstrdup(url + strlen("unix://"));
        else if (startswith(url, "unix:"))
                c.socket_path = xstrdup(url + strlen("unix:"));
        else if (startswith(url, "redis://")) {
                const char *h = url + strlen("redis://");
                const char *colon = strrchr(h, ':');
                size_t hl = colon ? (size_t) (colon - h) : strcspn(h, "/");
                c.port = 6379;
                if (colon) {
                        char *end;
                        long p = strtol(colon + 1, &end, 10);
                        if ((*end && *end != '/') || p <= 0 || p > 65535)
                                return -EINVAL;
                        c.port = (int) p;
                }
                if (hl == 0)
                        return -EINVAL;
                c.host = xstrndup(h, hl);
        } else
                return -EINVAL;
        if (c.socket_path && !*c.socket_path) {
                free(c.socket_path);
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

void conn_done(Conn *c) {
        if (c->ctx)
                redisFree(c->ctx);
        free(c->host);
        free(c->socket_path);
        *c = (Conn) { 0 };
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
        c->ctx = x;
        return 0;
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
        for (int attempt = 0; attempt < 2 && !rep; attempt++) {
                if (!c->ctx || c->ctx->err) {
                        k = conn_connect(c);
                        if (k < 0)
                                continue;
                }
                rep = redisCommandArgv(c->ctx, (int) n, (const char **) argv, len);
                if (!rep)
                        k = -EIO;
        }
        free(len);
        if (!rep && ret_error)
                *ret_error = k < 0 ? k : -EIO;
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
        if (r->type == REDIS_REPLY_ERROR) {
                log_warn("redis: %s: %s", a->v[0], r->str);
                *ret_error = strstr(r->str, "NOGROUP") ? -ENOENT : -EIO;
                freeReplyObject(r);
                return NULL;
        }
        return r;
}
