/* The Redis FunctionStore (cluster.h "deployed functions"): every gateway
 * of a cluster deploys to and invokes from the same records. */
#include <jansson.h>
#include <stdlib.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

typedef struct ClusterFunctions {
        FunctionStore base;
        ClusterQueue *q;
} ClusterFunctions;

static ClusterQueue *fq(FunctionStore *fs) {
        assert(fs);
        return ((ClusterFunctions *) fs)->q;
}

static void add_keys(Args *a, const char *tenant, const char *name) {
        args_addf(a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(a, CLUSTER_PREFIX "fns:%s", tenant);
}

static void meta_set(json_t *m, const char *key, const char *value) {
        json_object_set_new(m, key, value ? json_string(value) : json_null());
}

static const char *meta_get(json_t *m, const char *key) {
        return json_string_value(json_object_get(m, key));
}

static char *dup_or_null(const char *s) {
        return s ? xstrdup(s) : NULL;
}

static int cf_put(FunctionStore *fs, const FunctionRecord *f, int *ret_version) {
        ClusterQueue *c = fq(fs);
        assert(f && f->tenant && f->name && f->source && ret_version);
        json_t *m = json_object();
        meta_set(m, "filename", f->filename ? f->filename : "main.py");
        meta_set(m, "function", f->function);
        meta_set(m, "requirements_json", f->requirements_json);
        meta_set(m, "limits_json", f->limits_json);
        meta_set(m, "params_json", f->params_json);
        meta_set(m, "description", f->description);
        meta_set(m, "env_json", f->env_json);
        /* In meta: every invoke reads it (FunctionRecord.lock_json). */
        meta_set(m, "lock_json", f->lock_json);
        json_object_set_new(m, "created", json_integer((json_int_t) (f->created ? f->created : now_realtime())));
        char *meta = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (!meta)
                return -ENOMEM;
        /* Apart from meta (fn_put.lua): what an invoke never reads. */
        json_t *dj = f->signature || f->doc ? json_object() : NULL;
        if (dj) {
                meta_set(dj, "signature", f->signature);
                meta_set(dj, "doc", f->doc);
        }
        _cleanup_free_ char *desc = dj ? json_dumps(dj, JSON_COMPACT) : xstrdup("");
        json_decref(dj);
        if (!desc) {
                free(meta);
                return -ENOMEM;
        }
        Args a = { 0 };
        ARGS_EVAL(&a, fn_put, 2);
        add_keys(&a, f->tenant, f->name);
        args_add(&a, f->name);
        args_add(&a, meta);
        args_addb(&a, f->source, f->source_len ? f->source_len : strlen(f->source));
        args_add(&a, desc);
        free(meta);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        if (rep->type == REDIS_REPLY_INTEGER)
                *ret_version = (int) rep->integer;
        else
                k = -EBADMSG;
        freeReplyObject(rep);
        return k;
}

/* The last version number of (tenant, name); -ENOENT when none. */
static int latest(ClusterQueue *c, const char *tenant, const char *name, int *ret) {
        Args a = { 0 };
        args_add(&a, "HGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, "next");
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_STRING && parse_int(rep->str, ret) >= 0 && *ret > 0 ? 0 : -ENOENT;
        freeReplyObject(rep);
        return k;
}

static int cf_get(FunctionStore *fs, const char *tenant, const char *name, int version, FunctionRecord **ret) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && ret);
        int k = 0;
        if (version <= 0) {
                k = latest(c, tenant, name, &version);
                if (k < 0)
                        return k;
        }
        Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&a, "meta:%d", version);
        args_addf(&a, "src:%d", version);
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        json_t *m = NULL;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[1]->type == REDIS_REPLY_STRING)
                m = json_loadb(rep->element[0]->str, rep->element[0]->len, 0, NULL);
        if (!json_is_object(m)) {
                json_decref(m);
                freeReplyObject(rep);
                return -ENOENT;
        }
        const redisReply *src = rep->element[1];
        FunctionRecord *f = xcalloc(1, sizeof(FunctionRecord));
        f->tenant = xstrdup(tenant);
        f->name = xstrdup(name);
        f->version = version;
        f->source = xmemdupz(src->str, src->len);
        f->source_len = src->len;
        f->filename = dup_or_null(meta_get(m, "filename"));
        f->function = dup_or_null(meta_get(m, "function"));
        f->requirements_json = dup_or_null(meta_get(m, "requirements_json"));
        f->limits_json = dup_or_null(meta_get(m, "limits_json"));
        f->params_json = dup_or_null(meta_get(m, "params_json"));
        f->description = dup_or_null(meta_get(m, "description"));
        f->env_json = dup_or_null(meta_get(m, "env_json"));
        f->lock_json = dup_or_null(meta_get(m, "lock_json"));
        f->created = (usec_t) json_integer_value(json_object_get(m, "created"));
        json_decref(m);
        freeReplyObject(rep);
        *ret = f;
        return 0;
}

static int cf_describe(FunctionStore *fs, const char *tenant, const char *name, int version, char **ret_signature,
                       char **ret_doc) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && version > 0 && ret_signature && ret_doc);
        /* meta tells the version exists; desc is absent for one deployed
         * before it was kept. */
        Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&a, "meta:%d", version);
        args_addf(&a, "desc:%d", version);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING) {
                freeReplyObject(rep);
                return -ENOENT;
        }
        json_t *d = rep->element[1]->type == REDIS_REPLY_STRING
                            ? json_loadb(rep->element[1]->str, rep->element[1]->len, 0, NULL)
                            : NULL;
        *ret_signature = dup_or_null(meta_get(d, "signature"));
        *ret_doc = dup_or_null(meta_get(d, "doc"));
        json_decref(d);
        freeReplyObject(rep);
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int cf_list(FunctionStore *fs, const char *tenant, FunctionRecord ***ret, size_t *ret_n) {
        ClusterQueue *c = fq(fs);
        Args a = { 0 };
        args_add(&a, "SMEMBERS");
        args_addf(&a, CLUSTER_PREFIX "fns:%s", tenant);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        char **names = NULL;
        size_t nn = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING) {
                        names = xrealloc(names, (nn + 1) * sizeof(char *));
                        names[nn++] = xstrdup(rep->element[i]->str);
                }
        freeReplyObject(rep);
        /* By name, as the SQLite store lists them. */
        if (nn > 1)
                qsort(names, nn, sizeof(char *), cmp_str);
        FunctionRecord **v = NULL;
        size_t n = 0;
        for (size_t i = 0; i < nn; i++) {
                FunctionRecord *f = NULL;
                int r = k < 0 ? 0 : cf_get(fs, tenant, names[i], 0, &f);
                if (r < 0 && r != -ENOENT)
                        k = r; /* a name deleted meanwhile is skipped; an error is not */
                if (f) {
                        v = xrealloc(v, (n + 1) * sizeof(FunctionRecord *));
                        v[n++] = f;
                }
                free(names[i]);
        }
        free(names);
        if (k < 0) {
                function_record_list_free(v, n);
                return k;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cmp_int(const void *a, const void *b) {
        int x = *(const int *) a, y = *(const int *) b;
        return (x > y) - (x < y);
}

static int cf_versions(FunctionStore *fs, const char *tenant, const char *name, int **ret, size_t *ret_n) {
        ClusterQueue *c = fq(fs);
        Args a = { 0 };
        args_add(&a, "HKEYS");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        int *v = NULL;
        size_t n = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
                const redisReply *e = rep->element[i];
                int version;
                if (e->type == REDIS_REPLY_STRING && startswith(e->str, "meta:") && parse_int(e->str + 5, &version) >= 0) {
                        v = xrealloc(v, (n + 1) * sizeof(int));
                        v[n++] = version;
                }
        }
        freeReplyObject(rep);
        if (n == 0)
                return -ENOENT;
        qsort(v, n, sizeof(int), cmp_int);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cf_remove(FunctionStore *fs, const char *tenant, const char *name) {
        ClusterQueue *c = fq(fs);
        Args a = { 0 };
        ARGS_EVAL(&a, fn_delete, 3);
        add_keys(&a, tenant, name);
        args_add(&a, CLUSTER_PREFIX "nodes");
        args_add(&a, name);
        args_add(&a, tenant);
        args_add(&a, CLUSTER_PREFIX);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1 ? 0 : -ENOENT;
        freeReplyObject(rep);
        return k;
}

static int cf_remove_version(FunctionStore *fs, const char *tenant, const char *name, int version) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && version > 0);
        Args a = { 0 };
        ARGS_EVAL(&a, fn_delete_version, 2);
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, CLUSTER_PREFIX "nodes");
        args_addf(&a, "%d", version);
        args_add(&a, tenant);
        args_add(&a, name);
        args_add(&a, CLUSTER_PREFIX);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type != REDIS_REPLY_INTEGER ? -EBADMSG
            : rep->integer == 1              ? 0
            : rep->integer == -1             ? -EBUSY
            : rep->integer == -2             ? -EMLINK
                                             : -ENOENT;
        freeReplyObject(rep);
        return k;
}

/* In the function's own hash: every gateway reads it where it reads the
 * function, and fn_delete's DEL takes it with the versions. */
static int cf_url_put(FunctionStore *fs, const char *tenant, const char *name, int mode) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && mode >= 0 && mode <= 2);
        Args a = { 0 };
        ARGS_EVAL(&a, fn_url, 1);
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&a, "%d", mode);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_INTEGER ? (rep->integer == 1 ? 0 : -ENOENT) : -EBADMSG;
        freeReplyObject(rep);
        return k;
}

static int cf_url_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && ret_mode);
        Args a = { 0 };
        args_add(&a, "HGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, "url");
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        int mode = 0;
        k = rep->type == REDIS_REPLY_STRING && parse_int(rep->str, &mode) >= 0 && mode > 0 ? 0 : -ENOENT;
        freeReplyObject(rep);
        if (k >= 0)
                *ret_mode = mode;
        return k;
}

static int cf_url_cors_put(FunctionStore *fs, const char *tenant, const char *name, const char *cors_json) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name);
        Args a = { 0 };
        ARGS_EVAL(&a, fn_cors, 1);
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, cors_json ?: "");
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_INTEGER ? (rep->integer == 1 ? 0 : -ENOENT) : -EBADMSG;
        freeReplyObject(rep);
        return k;
}

/* The mode and the settings in one read (one round trip per request). */
static int cf_url_cors_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode,
                           char **ret_cors_json) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && ret_mode && ret_cors_json);
        Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, "url");
        args_add(&a, "cors");
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        int mode = 0;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
                k = -EBADMSG;
        else
                k = rep->element[0]->type == REDIS_REPLY_STRING && parse_int(rep->element[0]->str, &mode) >= 0 &&
                                    mode > 0
                            ? 0
                            : -ENOENT;
        if (k >= 0) {
                *ret_mode = mode;
                *ret_cors_json = rep->element[1]->type == REDIS_REPLY_STRING ? xstrdup(rep->element[1]->str) : NULL;
        }
        freeReplyObject(rep);
        return k;
}

/* The version's meta read, its lock_json checked and replaced in C, and
 * written back only if the meta is still what was read (fn_lock.lua). */
static int cf_lock_update(FunctionStore *fs, const char *tenant, const char *name, int version, const char *old_lock,
                          const char *new_lock) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && version > 0 && old_lock && new_lock);
        Args a = { 0 };
        args_add(&a, "HGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&a, "meta:%d", version);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        _cleanup_free_ char *old_meta = rep->type == REDIS_REPLY_STRING ? xmemdupz(rep->str, rep->len) : NULL;
        freeReplyObject(rep);
        json_t *m = old_meta ? json_loads(old_meta, 0, NULL) : NULL;
        const char *locked = json_is_object(m) ? meta_get(m, "lock_json") : NULL;
        if (!locked || !streq(locked, old_lock)) {
                json_decref(m);
                return -ESTALE;
        }
        meta_set(m, "lock_json", new_lock);
        _cleanup_free_ char *meta = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (!meta)
                return -ENOMEM;
        Args b = { 0 };
        ARGS_EVAL(&b, fn_lock, 1);
        args_addf(&b, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&b, "%d", version);
        args_add(&b, old_meta);
        args_add(&b, meta);
        rep = cluster_cmd(c, &c->conn, &b, &k);
        args_done(&b);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_INTEGER ? (rep->integer == 1 ? 0 : -ESTALE) : -EBADMSG;
        freeReplyObject(rep);
        return k;
}

/* Aliases: fields alias:<name> of the function's hash (fn_alias.lua),
 * each {"version": N, "description": "…", "updated": usec}. */
static int cf_alias_put(FunctionStore *fs, const char *tenant, const char *name, const char *alias, int version,
                        const char *description, AliasPut mode, bool *ret_created) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && alias && version > 0);
        json_t *v = json_pack("{s:i, s:s, s:I}", "version", version, "description", description ?: "", "updated",
                              (json_int_t) now_realtime());
        _cleanup_free_ char *value = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!value)
                return -ENOMEM;
        Args a = { 0 };
        ARGS_EVAL(&a, fn_alias, 1);
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, "put");
        args_add(&a, alias);
        args_addf(&a, "%d", version);
        args_add(&a, value);
        args_add(&a, mode == ALIAS_PUT_CREATE ? "create" : mode == ALIAS_PUT_UPDATE ? "update" : "any");
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type != REDIS_REPLY_INTEGER ? -EBADMSG
            : rep->integer == 0              ? -ENOENT
            : rep->integer == -1             ? -EEXIST
            : rep->integer == -2             ? -ESRCH
                                             : 0;
        if (k >= 0 && ret_created)
                *ret_created = rep->integer == 1;
        freeReplyObject(rep);
        return k;
}

/* Fills ret from an alias field's value; -EBADMSG when it is not one. */
static int alias_parse(const char *alias, const char *value, size_t len, FunctionAlias *ret) {
        json_t *v = json_loadb(value, len, 0, NULL);
        json_t *version = json_object_get(v, "version");
        if (!json_is_integer(version) || json_integer_value(version) <= 0 || json_integer_value(version) > INT32_MAX) {
                json_decref(v);
                return -EBADMSG;
        }
        const char *d = meta_get(v, "description");
        *ret = (FunctionAlias){
                .alias = xstrdup(alias),
                .version = (int) json_integer_value(version),
                .description = xstrdup(d ?: ""),
                .updated = (usec_t) json_integer_value(json_object_get(v, "updated")),
        };
        json_decref(v);
        return 0;
}

static int cf_alias_get(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                        FunctionAlias *ret) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && alias && ret);
        Args a = { 0 };
        args_add(&a, "HGET");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_addf(&a, "alias:%s", alias);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_STRING ? alias_parse(alias, rep->str, rep->len, ret) : -ENOENT;
        freeReplyObject(rep);
        return k;
}

static int cmp_alias(const void *a, const void *b) {
        return strcmp(((const FunctionAlias *) a)->alias, ((const FunctionAlias *) b)->alias);
}

/* HKEYS then HMGET of the alias fields: HGETALL would carry every
 * version's source. Two reads, so an alias set between them is missed, as
 * a list taken a moment earlier would miss it. */
static int cf_alias_list(FunctionStore *fs, const char *tenant, const char *name, FunctionAlias **ret, size_t *ret_n) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && ret && ret_n);
        Args a = { 0 };
        args_add(&a, "HKEYS");
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        Args b = { 0 };
        args_add(&b, "HMGET");
        args_addf(&b, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        size_t nf = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING && startswith(rep->element[i]->str, "alias:")) {
                        args_add(&b, rep->element[i]->str);
                        nf++;
                }
        freeReplyObject(rep);
        FunctionAlias *v = NULL;
        size_t n = 0;
        if (nf > 0) {
                rep = cluster_cmd(c, &c->conn, &b, &k);
                if (!rep) {
                        args_done(&b);
                        return k;
                }
                for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && i < nf; i++) {
                        const redisReply *e = rep->element[i];
                        if (e->type != REDIS_REPLY_STRING)
                                continue; /* deleted meanwhile */
                        v = xrealloc(v, (n + 1) * sizeof(FunctionAlias));
                        if (alias_parse(b.v[2 + i] + 6, e->str, e->len, &v[n]) >= 0)
                                n++;
                }
                freeReplyObject(rep);
        }
        args_done(&b);
        if (n > 1)
                qsort(v, n, sizeof(FunctionAlias), cmp_alias);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cf_alias_delete(FunctionStore *fs, const char *tenant, const char *name, const char *alias) {
        ClusterQueue *c = fq(fs);
        assert(tenant && name && alias);
        Args a = { 0 };
        ARGS_EVAL(&a, fn_alias, 1);
        args_addf(&a, CLUSTER_PREFIX "fn:%s:%s", tenant, name);
        args_add(&a, "del");
        args_add(&a, alias);
        int k = 0;
        redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        args_done(&a);
        if (!rep)
                return k;
        k = rep->type != REDIS_REPLY_INTEGER ? -EBADMSG : rep->integer == 1 ? 0 : -ENOENT;
        freeReplyObject(rep);
        return k;
}

static void cf_free(FunctionStore *fs) {
        free(fs);
}

static const FunctionStoreOps cluster_function_ops = {
        .name = "redis",
        .put = cf_put,
        .get = cf_get,
        .describe = cf_describe,
        .list = cf_list,
        .versions = cf_versions,
        .remove = cf_remove,
        .remove_version = cf_remove_version,
        .url_put = cf_url_put,
        .url_get = cf_url_get,
        .url_cors_put = cf_url_cors_put,
        .url_cors_get = cf_url_cors_get,
        .lock_update = cf_lock_update,
        .alias_put = cf_alias_put,
        .alias_get = cf_alias_get,
        .alias_list = cf_alias_list,
        .alias_delete = cf_alias_delete,
        .free = cf_free,
};

FunctionStore *cluster_function_store_new(RunQueue *q) {
        ClusterFunctions *f = xcalloc(1, sizeof(ClusterFunctions));
        f->base.ops = &cluster_function_ops;
        f->q = cq(q);
        return &f->base;
}
