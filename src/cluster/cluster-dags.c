/* DAG runs in Redis (cluster.h, docs/cluster.md "DAG runs"): the record,
 * definition and task states of every DAG run, and the owner lease that
 * says which gateway schedules it. Each write that two nodes could race
 * on is one of the dag*.lua scripts beside this file. */
#include <inttypes.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

#define K_DAGS_RUNNING CLUSTER_PREFIX "dags:running"

static void reply_freep(redisReply **r) {
        if (*r)
                freeReplyObject(*r);
}
#define _cleanup_reply_ _cleanup_(reply_freep)
static void args_donep(Args *a) {
        args_done(a);
}
#define _cleanup_args_ _cleanup_(args_donep)


/* An integer reply's value, or -EIO. */
static int run_int(RunQueue *q, const Args *a, long long *ret) {
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_INTEGER)
                return -EIO;
        *ret = rep->integer;
        return 0;
}

int cluster_dag_create(RunQueue *q, const char *id, const char *tenant, usec_t created, const char *rec_json,
                       const char *files_json, const char *idem_key, char **ret_first) {
        assert(id && tenant && rec_json);
        assert(!idem_key || ret_first);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, dagcreate, idem_key ? 5 : 4);
        args_addf(&a, CLUSTER_PREFIX "dagowner:%s", id);
        args_addf(&a, CLUSTER_PREFIX "dag:%s", id);
        args_add(&a, K_DAGS_RUNNING);
        args_addf(&a, CLUSTER_PREFIX "dagidx:%s", tenant);
        if (idem_key)
                args_addf(&a, CLUSTER_PREFIX "dagidem:%s:%s", tenant, idem_key);
        args_add(&a, cq(q)->node_id);
        args_addf(&a, "%u", cq(q)->lease_ttl_ms);
        args_add(&a, id);
        args_addf(&a, "%" PRIu64, (uint64_t) created);
        args_add(&a, rec_json);
        args_add(&a, files_json ? files_json : "{}");
        if (idem_key)
                args_addf(&a, "%llu", (unsigned long long) (IDEMPOTENCY_WINDOW_USEC / USEC_PER_SEC));
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type == REDIS_REPLY_STRING) {
                *ret_first = xstrdup(rep->str);
                return 1;
        }
        if (rep->type != REDIS_REPLY_INTEGER)
                return -EIO;
        return rep->integer == 1 ? 0 : -EEXIST;
}

int cluster_dag_idempotent_first(RunQueue *q, const char *tenant, const char *idem_key, char **ret_id) {
        assert(tenant && idem_key && ret_id);
        int k = 0;
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "GET");
        args_addf(&a, CLUSTER_PREFIX "dagidem:%s:%s", tenant, idem_key);
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_STRING)
                return -ENOENT;
        *ret_id = xstrdup(rep->str);
        return 0;
}

int cluster_dag_put(RunQueue *q, const char *id, const char *rec_json, char *const *names, char *const *jsons,
                    size_t n, bool final) {
        assert(id && rec_json);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, dagput, 4);
        args_addf(&a, CLUSTER_PREFIX "dagowner:%s", id);
        args_addf(&a, CLUSTER_PREFIX "dag:%s", id);
        args_addf(&a, CLUSTER_PREFIX "dagtasks:%s", id);
        args_add(&a, K_DAGS_RUNNING);
        args_add(&a, cq(q)->node_id);
        args_add(&a, final ? "1" : "0");
        args_addf(&a, "%u", cq(q)->record_ttl_s);
        args_add(&a, id);
        args_addf(&a, "%u", cq(q)->lease_ttl_ms);
        args_add(&a, rec_json);
        for (size_t i = 0; i < n; i++) {
                args_add(&a, names[i]);
                args_add(&a, jsons[i]);
        }
        long long v = 0;
        int k = run_int(q, &a, &v);
        if (k < 0)
                return k;
        return v == 1 ? 0 : -ESTALE;
}

int cluster_dag_get(RunQueue *q, const char *id, char **ret_rec, char **ret_files, char ***ret_tasks) {
        int k = 0;
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "HGETALL");
        args_addf(&a, CLUSTER_PREFIX "dag:%s", id);
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, &a, &k);
        if (!rep)
                return k;
        const char *rec = NULL, *files = NULL;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
                const char *f = rep->element[i]->str;
                if (streq(f, "rec"))
                        rec = rep->element[i + 1]->str;
                else if (streq(f, "files"))
                        files = rep->element[i + 1]->str;
        }
        if (!rec)
                return -ENOENT;
        char **tasks = NULL;
        if (ret_tasks) {
                _cleanup_args_ Args t = { 0 };
                args_add(&t, "HVALS");
                args_addf(&t, CLUSTER_PREFIX "dagtasks:%s", id);
                _cleanup_reply_ redisReply *tr = cluster_cmd(cq(q), &cq(q)->conn, &t, &k);
                if (!tr)
                        return k;
                for (size_t i = 0; tr->type == REDIS_REPLY_ARRAY && i < tr->elements; i++)
                        tasks = strv_append(tasks, tr->element[i]->str);
        }
        *ret_rec = xstrdup(rec);
        if (ret_files)
                *ret_files = files ? xstrdup(files) : NULL;
        if (ret_tasks)
                *ret_tasks = tasks;
        return 0;
}

int cluster_dag_list_ids(RunQueue *q, const char *tenant, size_t limit, char ***ret_ids) {
        assert(tenant);
        int k = 0;
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "ZREVRANGE");
        args_addf(&a, CLUSTER_PREFIX "dagidx:%s", tenant);
        args_add(&a, "0");
        args_addf(&a, "%zu", limit > 0 ? limit - 1 : 0);
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, &a, &k);
        if (!rep)
                return k;
        char **ids = NULL;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                ids = strv_append(ids, rep->element[i]->str);
        *ret_ids = ids;
        return 0;
}

static char **strv_of_reply(const redisReply *rep) {
        char **v = NULL;
        for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                        v = strv_append(v, rep->element[i]->str);
        return v;
}

int cluster_dag_leases(RunQueue *q, char *const *owned, bool take, char ***ret_taken, char ***ret_cancel) {
        int k = 0;
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, dagleases, 1);
        args_add(&a, K_DAGS_RUNNING);
        args_add(&a, cq(q)->node_id);
        args_addf(&a, "%u", cq(q)->lease_ttl_ms);
        args_add(&a, CLUSTER_PREFIX);
        args_add(&a, take ? "1" : "0");
        for (size_t i = 0; owned && owned[i]; i++)
                args_add(&a, owned[i]);
        _cleanup_reply_ redisReply *rep = cluster_cmd(cq(q), &cq(q)->conn, &a, &k);
        if (!rep)
                return k;
        /* {taken ids, ids whose cancel was asked} (dagleases.lua) */
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
                return -EIO;
        *ret_taken = strv_of_reply(rep->element[0]);
        *ret_cancel = strv_of_reply(rep->element[1]);
        return 0;
}

int cluster_dag_cancel(RunQueue *q, const char *id) {
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, dagcancel, 2);
        args_addf(&a, CLUSTER_PREFIX "dag:%s", id);
        args_add(&a, K_DAGS_RUNNING);
        args_add(&a, id);
        args_addf(&a, "%" PRIu64, (uint64_t) now_realtime());
        long long v = 0;
        int k = run_int(q, &a, &v);
        if (k < 0)
                return k;
        return v == 1 ? 1 : v == 0 ? 0 : -ENOENT;
}

int cluster_dag_release(RunQueue *q, const char *id) {
        /* Only our own lease: compare and delete in one step. */
        static const char script[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                     "return redis.call('DEL', KEYS[1]) end return 0";
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "EVAL"); /* rare and short: the text each time */
        args_add(&a, script);
        args_add(&a, "1");
        args_addf(&a, CLUSTER_PREFIX "dagowner:%s", id);
        args_add(&a, cq(q)->node_id);
        long long v = 0;
        return run_int(q, &a, &v);
}

int cluster_dag_forget(RunQueue *q, const char *tenant, const char *id) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "ZREM");
        args_addf(&a, CLUSTER_PREFIX "dagidx:%s", tenant);
        args_add(&a, id);
        long long v = 0;
        return run_int(q, &a, &v);
}
