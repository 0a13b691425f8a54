/* The Redis SecretStore (cluster.h "secrets"): every node of a cluster
 * sets, lists, removes and opens the same secrets. Only sealed boxes come
 * here (store-secrets.c seals before and opens after, with the node's
 * key): Redis, its AOF and its replicas never hold a value. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

typedef struct ClusterSecrets {
        SecretStore base;
        ClusterQueue *q;
} ClusterSecrets;

static ClusterQueue *sq(SecretStore *ss) {
        assert(ss);
        return ((ClusterSecrets *) ss)->q;
}

static void add_keys(Args *a, const char *tenant) {
        args_addf(a, CLUSTER_PREFIX "sec:%s", tenant);
        args_addf(a, CLUSTER_PREFIX "secdates:%s", tenant);
        args_add(a, CLUSTER_PREFIX "sectenants");
        args_add(a, CLUSTER_PREFIX "nodes");
}

static int cs_put(SecretStore *ss, const char *tenant, const char *name, const uint8_t *box, size_t len, usec_t now,
                  const uint8_t *check, size_t check_len) {
        ClusterQueue *c = sq(ss);
        assert(tenant && name && box);
        Args a = { 0 };
        ARGS_EVAL(&a, secret_put, check ? 5 : 4);
        add_keys(&a, tenant);
        if (check)
                args_add(&a, CLUSTER_PREFIX "seckey");
        args_add(&a, tenant);
        args_add(&a, name);
        args_addb(&a, (const char *) box, len);
        args_addf(&a, "%" PRIu64, (uint64_t) now);
        args_addf(&a, "%d", SECRET_MAX_COUNT);
        args_add(&a, CLUSTER_PREFIX);
        if (check)
                args_addb(&a, (const char *) check, check_len);
        long long ok = 0;
        int k = cluster_cmd_int(c, &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : ok == -1 ? -ESTALE : -EDQUOT;
}

static int cs_cas(SecretStore *ss, const char *tenant, const char *name, const uint8_t *expect, size_t expect_len,
                  const uint8_t *box, size_t len) {
        assert(expect && box);
        Args a = { 0 };
        ARGS_EVAL(&a, secret_cas, 1);
        if (tenant)
                args_addf(&a, CLUSTER_PREFIX "sec:%s", tenant);
        else
                args_add(&a, CLUSTER_PREFIX "seckey");
        args_add(&a, tenant ? name : "");
        args_addb(&a, (const char *) expect, expect_len);
        args_addb(&a, (const char *) box, len);
        long long ok = 0;
        int k = cluster_cmd_int(sq(ss), &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : -ESTALE;
}

static int cs_get(SecretStore *ss, const char *tenant, const char *name, uint8_t **ret_box, size_t *ret_len) {
        assert(tenant && name && ret_box && ret_len);
        Args a = { 0 };
        args_add(&a, "HGET");
        args_addf(&a, CLUSTER_PREFIX "sec:%s", tenant);
        args_add(&a, name);
        return cluster_cmd_bytes(sq(ss), &a, ret_box, ret_len);
}

static int cmp_info(const void *a, const void *b) {
        return strcmp(((const SecretInfo *) a)->name, ((const SecretInfo *) b)->name);
}

static int cs_list(SecretStore *ss, const char *tenant, SecretInfo **ret, size_t *ret_n) {
        ClusterQueue *c = sq(ss);
        assert(tenant && ret && ret_n);
        Args a = { 0 };
        args_add(&a, "HGETALL");
        args_addf(&a, CLUSTER_PREFIX "secdates:%s", tenant);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        SecretInfo *v = NULL;
        size_t n = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
                const redisReply *name = rep->element[i], *dates = rep->element[i + 1];
                if (name->type != REDIS_REPLY_STRING || dates->type != REDIS_REPLY_STRING)
                        continue;
                unsigned long long created = 0, updated = 0;
                if (sscanf(dates->str, "%llu %llu", &created, &updated) != 2)
                        created = updated = 0;
                v = xrealloc(v, (n + 1) * sizeof *v);
                v[n].name = xstrdup(name->str);
                v[n].created = (usec_t) created;
                v[n].updated = (usec_t) updated;
                n++;
        }
        freeReplyObject(rep);
        /* By name, as the SQLite store lists them. */
        if (n > 1)
                qsort(v, n, sizeof *v, cmp_info);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cs_remove(SecretStore *ss, const char *tenant, const char *name) {
        ClusterQueue *c = sq(ss);
        assert(tenant && name);
        Args a = { 0 };
        ARGS_EVAL(&a, secret_delete, 4);
        add_keys(&a, tenant);
        args_add(&a, tenant);
        args_add(&a, name);
        args_add(&a, CLUSTER_PREFIX);
        long long ok = 0;
        int k = cluster_cmd_int(c, &a, &ok);
        return k < 0 ? k : ok == 1 ? 0 : -ENOENT;
}

static int cs_each(SecretStore *ss, SecretEachFn fn, void *userdata) {
        ClusterQueue *c = sq(ss);
        assert(fn);
        Args a = { 0 };
        args_add(&a, "SMEMBERS");
        args_add(&a, CLUSTER_PREFIX "sectenants");
        int k = 0;
        redisReply *tenants = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!tenants)
                return k;
        for (size_t t = 0; k >= 0 && tenants->type == REDIS_REPLY_ARRAY && t < tenants->elements; t++) {
                const redisReply *tenant = tenants->element[t];
                if (tenant->type != REDIS_REPLY_STRING)
                        continue;
                Args h = { 0 };
                args_add(&h, "HGETALL");
                args_addf(&h, CLUSTER_PREFIX "sec:%s", tenant->str);
                redisReply *rep = cluster_cmd(c, &c->conn, &h, &k);
                args_done(&h);
                for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
                        if (rep->element[i]->type == REDIS_REPLY_STRING &&
                            rep->element[i + 1]->type == REDIS_REPLY_STRING)
                                fn(tenant->str, rep->element[i]->str, (const uint8_t *) rep->element[i + 1]->str,
                                   rep->element[i + 1]->len, userdata);
                if (rep)
                        freeReplyObject(rep);
        }
        freeReplyObject(tenants);
        return k < 0 ? k : 0;
}

/* seckey: the first check recorded stays (SET NX); every node reads the
 * one that stayed, its own or another's. */
static int cs_key_check(SecretStore *ss, const uint8_t *check, size_t len, uint8_t **ret, size_t *ret_len) {
        ClusterQueue *c = sq(ss);
        assert(ret && ret_len);
        Args a = { 0 };
        int k = 0;
        if (check) {
                args_add(&a, "SET");
                args_add(&a, CLUSTER_PREFIX "seckey");
                args_addb(&a, (const char *) check, len);
                args_add(&a, "NX");
                redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
                args_done(&a);
                if (!rep)
                        return k;
                freeReplyObject(rep);
        }
        args_add(&a, "GET");
        args_add(&a, CLUSTER_PREFIX "seckey");
        return cluster_cmd_bytes(c, &a, ret, ret_len);
}

static void cs_free(SecretStore *ss) {
        free(ss);
}

static const SecretStoreOps cluster_secret_ops = {
        .name = "redis",
        .put = cs_put,
        .cas = cs_cas,
        .get = cs_get,
        .list = cs_list,
        .remove = cs_remove,
        .each = cs_each,
        .key_check = cs_key_check,
        .free = cs_free,
};

SecretStore *cluster_secret_store_new(RunQueue *q) {
        ClusterSecrets *s = xcalloc(1, sizeof(ClusterSecrets));
        s->base.ops = &cluster_secret_ops;
        s->q = cq(q);
        return &s->base;
}
