/* The Redis TokenStore (cluster.h "tokens"): a token made or revoked
 * through the API of any gateway is every gateway's from its next request.
 * Only the token's sha256 is kept, as in SQLite. And the dashboard's
 * sessions, which stand for a token: a login through one gateway holds on
 * every other. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

typedef struct ClusterTokens {
        TokenStore base;
        ClusterQueue *q;
} ClusterTokens;

static ClusterQueue *tq(TokenStore *ts) {
        assert(ts);
        return ((ClusterTokens *) ts)->q;
}

static int ct_insert(TokenStore *ts, const TokenRecord *t) {
        assert(t && t->id && t->sha256 && t->tenant && t->role);
        Args a = { 0 };
        ARGS_EVAL(&a, token_put, 2);
        args_addf(&a, CLUSTER_PREFIX "tok:%s", t->sha256);
        args_add(&a, CLUSTER_PREFIX "tokids");
        args_add(&a, t->id);
        args_add(&a, t->sha256);
        args_add(&a, t->tenant);
        args_add(&a, t->role);
        args_addf(&a, "%" PRIu64, (uint64_t) t->created);
        args_addf(&a, "%" PRIu64, (uint64_t) t->expires);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        int k = cluster_cmd_int(tq(ts), &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : -EEXIST;
}

static usec_t usec_of(const char *s) {
        uint64_t v = 0;
        return s && parse_uint64(s, &v) >= 0 ? (usec_t) v : 0;
}

static int ct_find(TokenStore *ts, const char *hash, TokenRecord *ret) {
        ClusterQueue *c = tq(ts);
        assert(hash && ret);
        Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "tok:%s", hash);
        static const char *const fields[] = { "id", "tenant", "role", "created", "expires", "last_used" };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                args_add(&a, fields[i]);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        const char *f[ELEMENTSOF(fields)] = { 0 };
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && i < ELEMENTSOF(fields); i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                        f[i] = rep->element[i]->str;
        if (!f[0] || !f[1] || !f[2])
                k = -ENOENT;
        else
                *ret = (TokenRecord){
                        .id = xstrdup(f[0]),
                        .sha256 = xstrdup(hash),
                        .tenant = xstrdup(f[1]),
                        .role = xstrdup(f[2]),
                        .created = usec_of(f[3]),
                        .expires = usec_of(f[4]),
                        .last_used = usec_of(f[5]),
                };
        freeReplyObject(rep);
        return k;
}

/* tokids: id -> sha256, the whole hash. */
static redisReply *ids(ClusterQueue *c, int *ret_error) {
        Args a = { 0 };
        args_add(&a, "HGETALL");
        args_add(&a, CLUSTER_PREFIX "tokids");
        redisReply *rep = cluster_cmd(c, &c->conn, &a, ret_error);
        args_done(&a);
        return rep;
}

static int ct_list(TokenStore *ts, TokenRecord **ret, size_t *ret_n) {
        assert(ret && ret_n);
        int k = 0;
        redisReply *rep = ids(tq(ts), &k);
        if (!rep)
                return k;
        TokenRecord *v = NULL;
        size_t n = 0;
        for (size_t i = 0; k >= 0 && rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
                if (rep->element[i + 1]->type != REDIS_REPLY_STRING)
                        continue;
                TokenRecord t = {};
                int r = ct_find(ts, rep->element[i + 1]->str, &t);
                if (r == -ENOENT) /* revoked meanwhile */
                        continue;
                if (r < 0)
                        k = r;
                else {
                        v = xrealloc(v, (n + 1) * sizeof *v);
                        v[n++] = t;
                }
        }
        freeReplyObject(rep);
        if (k < 0) {
                token_record_list_free(v, n);
                return k;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int ct_revoke(TokenStore *ts, const char *id, char **ret_id) {
        ClusterQueue *c = tq(ts);
        if (!id || strlen(id) < 4 || strlen(id) > 64 || strspn(id, "0123456789abcdef") != strlen(id))
                return -ENOENT;
        int k = 0;
        redisReply *rep = ids(c, &k);
        if (!rep)
                return k;
        /* The whole id of a unique prefix, as the table's revoke finds it. */
        _cleanup_free_ char *full = NULL;
        size_t n = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
                if (rep->element[i]->type == REDIS_REPLY_STRING && startswith(rep->element[i]->str, id) && n++ == 0)
                        full = xstrdup(rep->element[i]->str);
        freeReplyObject(rep);
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return -EEXIST;
        Args a = { 0 };
        ARGS_EVAL(&a, token_revoke, 1);
        args_add(&a, CLUSTER_PREFIX "tokids");
        args_add(&a, full);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        k = cluster_cmd_int(c, &a, &ok);
        if (k < 0)
                return k;
        if (ok != 1)
                return -ENOENT; /* revoked meanwhile */
        if (ret_id)
                *ret_id = TAKE_PTR(full);
        return 0;
}

static int ct_touch(TokenStore *ts, const char *id, usec_t now) {
        assert(id);
        Args a = { 0 };
        ARGS_EVAL(&a, token_touch, 1);
        args_add(&a, CLUSTER_PREFIX "tokids");
        args_add(&a, id);
        args_addf(&a, "%" PRIu64, (uint64_t) now);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        int k = cluster_cmd_int(tq(ts), &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : -ENOENT;
}

static void ct_free(TokenStore *ts) {
        free(ts);
}

static const TokenStoreOps cluster_token_ops = {
        .name = "redis",
        .insert = ct_insert,
        .find = ct_find,
        .list = ct_list,
        .revoke = ct_revoke,
        .touch = ct_touch,
        .free = ct_free,
};

/* ---- dashboard sessions ---------------------------------------------------- */

static bool hash_valid(const char *h) {
        return h && strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64;
}

int cluster_ui_session_put(RunQueue *q, const char *id_hash, const char *token_hash, uint64_t ttl_ms,
                           unsigned max_per_token) {
        assert(hash_valid(id_hash) && hash_valid(token_hash) && ttl_ms > 0 && max_per_token > 0);
        Args a = { 0 };
        ARGS_EVAL(&a, ui_session_put, 2);
        args_addf(&a, CLUSTER_PREFIX "uis:%s", id_hash);
        args_addf(&a, CLUSTER_PREFIX "uistok:%s", token_hash);
        args_add(&a, id_hash);
        args_add(&a, token_hash);
        args_addf(&a, "%" PRIu64, (uint64_t) (now_realtime() / USEC_PER_MSEC));
        args_addf(&a, "%" PRIu64, ttl_ms);
        args_addf(&a, "%u", max_per_token);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        int k = cluster_cmd_int(cq(q), &a, &ok);
        return k < 0 ? k : 0;
}

int cluster_ui_session_get(RunQueue *q, const char *id_hash, char ret[static 65]) {
        ClusterQueue *c = cq(q);
        assert(hash_valid(id_hash));
        Args a = { 0 };
        args_add(&a, "GET");
        args_addf(&a, CLUSTER_PREFIX "uis:%s", id_hash);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        if (rep->type == REDIS_REPLY_STRING && hash_valid(rep->str))
                memcpy(ret, rep->str, 65);
        else
                k = -ENOENT;
        freeReplyObject(rep);
        return k;
}

int cluster_ui_session_del(RunQueue *q, const char *id_hash) {
        assert(hash_valid(id_hash));
        Args a = { 0 };
        ARGS_EVAL(&a, ui_session_del, 1);
        args_addf(&a, CLUSTER_PREFIX "uis:%s", id_hash);
        args_add(&a, id_hash);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        int k = cluster_cmd_int(cq(q), &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : -ENOENT;
}

TokenStore *cluster_token_store_new(RunQueue *q) {
        ClusterTokens *t = xcalloc(1, sizeof(ClusterTokens));
        t->base.ops = &cluster_token_ops;
        t->q = cq(q);
        return &t->base;
}
