/* Run logs in Redis (cluster.h "run logs", docs/cluster.md): the running
 * node appends batches with one script call; any node reads with XREAD. */
#include <jansson.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

static const char *const kind_names[] = {
        [CLUSTER_LOG_PHASE] = "p",
        [CLUSTER_LOG_STDOUT] = "1",
        [CLUSTER_LOG_STDERR] = "2",
        [CLUSTER_LOG_END] = "end",
};

void cluster_log_entries_free(ClusterLogEntry *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].data);
        free(v);
}

void cluster_log_args(Args *a, const ClusterLogEntry *v, size_t n, bool end) {
        assert(a && (v || n == 0));
        for (size_t i = 0; i < n; i++) {
                assert(v[i].kind <= CLUSTER_LOG_END);
                args_add(a, kind_names[v[i].kind]);
                args_addb(a, v[i].data ? v[i].data : "", v[i].len);
                args_addf(a, "%llu", (unsigned long long) v[i].timestamp);
        }
        if (end) {
                args_add(a, kind_names[CLUSTER_LOG_END]);
                args_add(a, "");
                args_add(a, "0");
        }
}

int cluster_log_append(RunQueue *q, const char *id, const ClusterLogEntry *v, size_t n, bool end) {
        ClusterQueue *c = cq(q);
        assert(id && (v || n == 0));
        Args a = { 0 };
        ARGS_EVAL(&a, log_append, 1);
        args_addf(&a, CLUSTER_PREFIX "log:%s", id);
        args_addf(&a, "%d", CLUSTER_LOG_MAX_ENTRIES);
        args_addf(&a, "%u", c->record_ttl_s);
        cluster_log_args(&a, v, n, end);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        freeReplyObject(rep);
        return 0;
}

struct ClusterLogReader {
        ClusterQueue *q;
        Conn conn;
        char *key;
        char last[64]; /* the id of the last entry read ("0-0": none) */
};

int cluster_log_reader_new(RunQueue *q, const char *id, ClusterLogReader **ret) {
        ClusterQueue *c = cq(q);
        assert(id && ret);
        ClusterLogReader *r = xcalloc(1, sizeof(ClusterLogReader));
        r->q = c;
        if (cq_conn_parse(c, &r->conn) < 0) {
                free(r);
                return -EINVAL;
        }
        r->key = xasprintf(CLUSTER_PREFIX "log:%s", id);
        snprintf(r->last, sizeof(r->last), "0-0");
        *ret = r;
        return 0;
}

ClusterLogReader *cluster_log_reader_free(ClusterLogReader *r) {
        if (!r)
                return NULL;
        conn_done(&r->conn);
        free(r->key);
        free(r);
        return NULL;
}

/* The log entries a stream entry holds (f: its fields): each (k, d, t)
 * triple in order, appended to v (room for f->elements / 4 more). A batch
 * written by log_append.lua holds several; one written before batching
 * held one. An entry an older node wrote has no t (its time is 0); an
 * older reader skips t. */
static void entries_from_reply(const redisReply *f, ClusterLogEntry *v, size_t *n) {
        const redisReply *kind = NULL;
        size_t first = *n;
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
                const redisReply *name = f->element[j], *value = f->element[j + 1];
                if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
                        continue;
                if (streq(name->str, "k")) {
                        kind = value;
                        continue;
                }
                uint64_t t;
                if (streq(name->str, "t") && !kind && *n > first && parse_uint64(value->str, &t) >= 0) {
                        v[*n - 1].timestamp = t;
                        continue;
                }
                if (!streq(name->str, "d") || !kind)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(kind_names); i++)
                        if (streq(kind->str, kind_names[i])) {
                                char *copy = xmemdupz(value->str, value->len);
                                v[(*n)++] = (ClusterLogEntry) { .kind = (ClusterLogKind) i,
                                                               .data = copy,
                                                               .len = value->len };
                                break;
                        }
                kind = NULL;
        }
}

int cluster_log_read(ClusterLogReader *r, unsigned block_ms, ClusterLogEntry **ret, size_t *ret_n) {
        assert(r && ret && ret_n);
        Args a = { 0 };
        args_add(&a, "XREAD");
        args_add(&a, "COUNT");
        args_add(&a, "512");
        if (block_ms > 0) {
                args_add(&a, "BLOCK");
                args_addf(&a, "%u", block_ms);
        }
        args_add(&a, "STREAMS");
        args_add(&a, r->key);
        args_add(&a, r->last);
        int k = 0;
        redisReply *rep = cluster_cmd(r->q, &r->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        ClusterLogEntry *v = NULL;
        size_t n = 0;
        /* [[key, [[id, [field, value, ...]], ...]]], or nil on a timeout. */
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
            rep->element[0]->elements == 2 && rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
                const redisReply *entries = rep->element[0]->element[1];
                size_t room = 1;
                for (size_t i = 0; i < entries->elements; i++) {
                        const redisReply *e = entries->element[i];
                        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                            e->element[1]->type == REDIS_REPLY_ARRAY)
                                room += e->element[1]->elements / 4;
                }
                v = xcalloc(room, sizeof(ClusterLogEntry));
                for (size_t i = 0; i < entries->elements; i++) {
                        const redisReply *e = entries->element[i];
                        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
                                continue;
                        snprintf(r->last, sizeof(r->last), "%s", e->element[0]->str);
                        entries_from_reply(e->element[1], v, &n);
                }
        }
        freeReplyObject(rep);
        *ret = v;
        *ret_n = n;
        return 0;
}
