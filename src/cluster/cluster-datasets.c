/* The Redis DatasetStore (cluster.h "datasets"): the catalogue every node
 * of a cluster reads and writes; each step that changes more than one
 * field is one script. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

#define K_DSREFS CLUSTER_PREFIX "dsrefs"
/* Each "<tenant>/<name>"'s highest version ever (ds_add_version.lua). */
#define K_DSLAST CLUSTER_PREFIX "dslast"

typedef struct ClusterDatasets {
        DatasetStore base;
        ClusterQueue *q;
} ClusterDatasets;

static ClusterQueue *dq(DatasetStore *ds) {
        assert(ds);
        return ((ClusterDatasets *) ds)->q;
}

static const char *tenant_or_local(const char *tenant) {
        return tenant ? tenant : "local";
}

static redisReply *run(ClusterQueue *c, Args *a, int *ret_error) {
        redisReply *rep = cluster_cmd(c, &c->conn, a, ret_error);
        args_done(a);
        return rep;
}

/* "hash size files created" (a v:<n> field) -> v. */
static int version_parse(const char *value, int version, DatasetVersion *ret) {
        char hash[65];
        unsigned long long size, files, created;
        if (sscanf(value, "%64s %llu %llu %llu", hash, &size, &files, &created) != 4)
                return -EBADMSG;
        *ret = (DatasetVersion) {
                .version = version,
                .hash = xstrdup(hash),
                .size = size,
                .files = files,
                .created = (usec_t) created,
        };
        return 0;
}

static int cmp_version(const void *a, const void *b) {
        int x = ((const DatasetVersion *) a)->version, y = ((const DatasetVersion *) b)->version;
        return (x > y) - (x < y);
}

/* The dataset's hash (HGETALL) as a record and its versions, ascending.
 * -ENOENT when it does not exist. */
static int read_dataset(ClusterQueue *c, const char *tenant, const char *name, DatasetRecord **ret_rec,
                        DatasetVersion **ret_v, size_t *ret_n) {
        Args a = { 0 };
        args_add(&a, "HGETALL");
        args_addf(&a, CLUSTER_PREFIX "ds:%s:%s", tenant, name);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
                freeReplyObject(rep);
                return -ENOENT;
        }
        DatasetRecord *d = xcalloc(1, sizeof(DatasetRecord));
        d->tenant = xstrdup(tenant);
        d->name = xstrdup(name);
        DatasetVersion *v = NULL;
        size_t n = 0;
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
                const char *f = rep->element[i]->str, *val = rep->element[i + 1]->str;
                if (!f || !val)
                        continue;
                int version;
                if (startswith(f, "v:") && parse_int(f + 2, &version) >= 0) {
                        v = xrealloc(v, (n + 1) * sizeof(DatasetVersion));
                        if (version_parse(val, version, &v[n]) >= 0)
                                n++;
                } else if (streq(f, "kind"))
                        d->kind = xstrdup(val);
                else if (streq(f, "source"))
                        d->source = xstrdup(val);
                else if (streq(f, "etag"))
                        d->etag = xstrdup(val);
                else if (streq(f, "last_modified"))
                        d->last_modified = xstrdup(val);
                else if (streq(f, "checked"))
                        d->checked = strtoull(val, NULL, 10);
                else if (streq(f, "created"))
                        d->created = strtoull(val, NULL, 10);
                else if (streq(f, "current"))
                        (void) parse_int(val, &d->current);
        }
        freeReplyObject(rep);
        if (n > 1)
                qsort(v, n, sizeof(DatasetVersion), cmp_version);
        d->n_versions = (int) n;
        for (size_t i = 0; i < n; i++)
                if (v[i].version == d->current) {
                        d->hash = xstrdup(v[i].hash);
                        d->size = v[i].size;
                        d->files = v[i].files;
                }
        if (!d->kind)
                d->kind = xstrdup("file");
        if (!d->source)
                d->source = xstrdup("");
        *ret_rec = d;
        if (ret_v) {
                *ret_v = v;
                *ret_n = n;
        } else
                dataset_version_list_free(v, n);
        return 0;
}

static int cd_get(DatasetStore *ds, const char *tenant, const char *name, DatasetRecord **ret) {
        return read_dataset(dq(ds), tenant_or_local(tenant), name, ret, NULL, NULL);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The tenant's dataset names, sorted. */
static int names_of(ClusterQueue *c, const char *tenant, char ***ret, size_t *ret_n) {
        Args a = { 0 };
        args_add(&a, "SMEMBERS");
        args_addf(&a, CLUSTER_PREFIX "dss:%s", tenant);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        char **names = NULL;
        size_t n = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING) {
                        names = xrealloc(names, (n + 2) * sizeof(char *));
                        names[n++] = xstrdup(rep->element[i]->str);
                        names[n] = NULL;
                }
        freeReplyObject(rep);
        if (n > 1)
                qsort(names, n, sizeof(char *), cmp_str);
        *ret = names;
        *ret_n = n;
        return 0;
}

static int cd_list(DatasetStore *ds, const char *tenant, DatasetRecord ***ret, size_t *ret_n) {
        ClusterQueue *c = dq(ds);
        tenant = tenant_or_local(tenant);
        char **names = NULL;
        size_t nn = 0;
        int k = names_of(c, tenant, &names, &nn);
        if (k < 0)
                return k;
        DatasetRecord **v = NULL;
        size_t n = 0;
        for (size_t i = 0; i < nn && k >= 0; i++) {
                DatasetRecord *d = NULL;
                int r = read_dataset(c, tenant, names[i], &d, NULL, NULL);
                if (r < 0 && r != -ENOENT)
                        k = r;
                if (d) {
                        v = xrealloc(v, (n + 1) * sizeof(DatasetRecord *));
                        v[n++] = d;
                }
        }
        strv_free(names);
        if (k < 0) {
                dataset_record_list_free(v, n);
                return k;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cd_put(DatasetStore *ds, const DatasetRecord *d) {
        ClusterQueue *c = dq(ds);
        assert(d && d->name);
        const char *tenant = tenant_or_local(d->tenant);
        Args a = { 0 };
        ARGS_EVAL(&a, ds_put, 2);
        args_addf(&a, CLUSTER_PREFIX "ds:%s:%s", tenant, d->name);
        args_addf(&a, CLUSTER_PREFIX "dss:%s", tenant);
        args_add(&a, d->name);
        args_addf(&a, "%" PRIu64, (uint64_t) (d->created ? d->created : now_realtime()));
        const char *fields[][2] = {
                { "kind", d->kind }, { "source", d->source }, { "etag", d->etag }, { "last_modified", d->last_modified },
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                args_add(&a, fields[i][0]);
                args_add(&a, fields[i][1] ? fields[i][1] : "");
        }
        args_add(&a, "checked");
        args_addf(&a, "%" PRIu64, (uint64_t) d->checked);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        freeReplyObject(rep);
        return 0;
}

static int cd_add_version(DatasetStore *ds, const char *tenant, const char *name, const char *hash, uint64_t size,
                          uint64_t files, int *ret_version, bool *ret_new) {
        ClusterQueue *c = dq(ds);
        assert(name && hash);
        tenant = tenant_or_local(tenant);
        Args a = { 0 };
        ARGS_EVAL(&a, ds_add_version, 3);
        args_addf(&a, CLUSTER_PREFIX "ds:%s:%s", tenant, name);
        args_add(&a, K_DSREFS);
        args_add(&a, K_DSLAST);
        args_add(&a, hash);
        args_addf(&a, "%" PRIu64, size);
        args_addf(&a, "%" PRIu64, files);
        args_addf(&a, "%" PRIu64, (uint64_t) now_realtime());
        args_addf(&a, "%s/%s", tenant, name);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        k = -EBADMSG;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_INTEGER) {
                if (rep->element[0]->integer < 0)
                        k = -ENOENT;
                else if (rep->elements == 2) {
                        if (ret_version)
                                *ret_version = (int) rep->element[0]->integer;
                        if (ret_new)
                                *ret_new = rep->element[1]->integer == 1;
                        k = 0;
                }
        }
        freeReplyObject(rep);
        return k;
}

static int cd_versions(DatasetStore *ds, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n) {
        DatasetRecord *d = NULL;
        int k = read_dataset(dq(ds), tenant_or_local(tenant), name, &d, ret, ret_n);
        dataset_record_free(d);
        return k;
}

static int cd_version_get(DatasetStore *ds, const char *tenant, const char *name, int version, DatasetVersion *ret) {
        DatasetRecord *d = NULL;
        DatasetVersion *v = NULL;
        size_t n = 0;
        int k = read_dataset(dq(ds), tenant_or_local(tenant), name, &d, &v, &n);
        if (k < 0)
                return k;
        int want = version > 0 ? version : d->current;
        k = -ENOENT;
        for (size_t i = 0; i < n; i++)
                if (v[i].version == want) {
                        *ret = v[i];
                        v[i].hash = NULL; /* moved */
                        k = 0;
                }
        dataset_version_list_free(v, n);
        dataset_record_free(d);
        return k;
}

static int cd_remove(DatasetStore *ds, const char *tenant, const char *name, int version) {
        ClusterQueue *c = dq(ds);
        tenant = tenant_or_local(tenant);
        Args a = { 0 };
        ARGS_EVAL(&a, ds_delete, 3);
        args_addf(&a, CLUSTER_PREFIX "ds:%s:%s", tenant, name);
        args_addf(&a, CLUSTER_PREFIX "dss:%s", tenant);
        args_add(&a, K_DSREFS);
        args_add(&a, name);
        args_addf(&a, "%d", MAX(version, 0));
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        k = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1 ? 0 : -ENOENT;
        freeReplyObject(rep);
        return k;
}

static int cd_hash_refs(DatasetStore *ds, const char *hash, uint64_t *ret_count) {
        ClusterQueue *c = dq(ds);
        Args a = { 0 };
        args_add(&a, "HGET");
        args_add(&a, K_DSREFS);
        args_add(&a, hash);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        *ret_count = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
        freeReplyObject(rep);
        return 0;
}

static int cd_tenant_bytes(DatasetStore *ds, const char *tenant, const char *extra_hash, uint64_t extra_size,
                           uint64_t *ret) {
        ClusterQueue *c = dq(ds);
        tenant = tenant_or_local(tenant);
        char **names = NULL;
        size_t nn = 0;
        int k = names_of(c, tenant, &names, &nn);
        if (k < 0)
                return k;
        /* Distinct contents: each hash counted once. */
        char **seen = NULL;
        uint64_t total = 0;
        for (size_t i = 0; i < nn && k >= 0; i++) {
                DatasetRecord *d = NULL;
                DatasetVersion *v = NULL;
                size_t n = 0;
                int r = read_dataset(c, tenant, names[i], &d, &v, &n);
                if (r < 0 && r != -ENOENT)
                        k = r;
                for (size_t j = 0; j < n; j++)
                        if (!strv_contains(seen, v[j].hash)) {
                                seen = strv_append(seen, v[j].hash);
                                total += v[j].size;
                        }
                dataset_version_list_free(v, n);
                dataset_record_free(d);
        }
        if (extra_hash && !strv_contains(seen, extra_hash))
                total += extra_size;
        strv_free(seen);
        strv_free(names);
        if (k < 0)
                return k;
        *ret = total;
        return 0;
}

static void cd_free(DatasetStore *ds) {
        free(ds);
}

static const DatasetStoreOps cluster_dataset_ops = {
        .name = "redis",
        .get = cd_get,
        .list = cd_list,
        .put = cd_put,
        .add_version = cd_add_version,
        .versions = cd_versions,
        .version_get = cd_version_get,
        .remove = cd_remove,
        .hash_refs = cd_hash_refs,
        .tenant_bytes = cd_tenant_bytes,
        .free = cd_free,
};

DatasetStore *cluster_dataset_store_new(RunQueue *q) {
        ClusterDatasets *d = xcalloc(1, sizeof(ClusterDatasets));
        d->base.ops = &cluster_dataset_ops;
        d->q = cq(q);
        return &d->base;
}

int cluster_object_held(RunQueue *q, const char *hash) {
        ClusterQueue *c = cq(q);
        Args a = { 0 };
        args_add(&a, "SADD");
        args_addf(&a, CLUSTER_PREFIX "obj:%s", hash);
        args_add(&a, c->node_id);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        freeReplyObject(rep);
        return 0;
}

/* The advertised URL in node's lease, or NULL (no lease: the node is down). */
static char *advertised(ClusterQueue *c, const char *node) {
        Args g = { 0 };
        args_add(&g, "GET");
        args_addf(&g, CLUSTER_PREFIX "node:%s", node);
        int k = 0;
        redisReply *lease = run(c, &g, &k);
        char *url = NULL;
        if (lease && lease->type == REDIS_REPLY_STRING) {
                json_t *j = json_loads(lease->str, 0, NULL);
                const char *u = json_string_value(json_object_get(j, "advertise"));
                if (u && *u)
                        url = xstrdup(u);
                json_decref(j);
        }
        if (lease)
                freeReplyObject(lease);
        return url;
}

/* The advertised URLs of the other nodes in the set key. */
static int urls_of_set(ClusterQueue *c, const char *key, char ***ret_urls) {
        Args a = { 0 };
        args_add(&a, "SMEMBERS");
        args_add(&a, key);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        char **urls = NULL;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
                const char *node = rep->element[i]->str;
                if (!node || streq(node, c->node_id))
                        continue;
                char *u = advertised(c, node);
                if (u)
                        urls = strv_append(urls, u);
                free(u);
        }
        freeReplyObject(rep);
        *ret_urls = urls;
        return 0;
}

int cluster_object_holders(RunQueue *q, const char *hash, char ***ret_urls) {
        _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "obj:%s", hash);
        return urls_of_set(cq(q), key, ret_urls);
}

int cluster_peer_urls(RunQueue *q, char ***ret_urls) {
        return urls_of_set(cq(q), CLUSTER_PREFIX "nodes", ret_urls);
}

int cluster_lock_get(RunQueue *q, const char *key, char **ret_json) {
        ClusterQueue *c = cq(q);
        Args a = { 0 };
        args_add(&a, "GET");
        args_addf(&a, CLUSTER_PREFIX "lock:%s", key);
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        k = -ENOENT;
        if (rep->type == REDIS_REPLY_STRING) {
                *ret_json = xstrdup(rep->str);
                k = 0;
        }
        freeReplyObject(rep);
        return k;
}

int cluster_lock_put(RunQueue *q, const char *key, const char *json) {
        ClusterQueue *c = cq(q);
        Args a = { 0 };
        args_add(&a, "SET");
        args_addf(&a, CLUSTER_PREFIX "lock:%s", key);
        args_add(&a, json);
        args_add(&a, "EX");
        args_add(&a, "2592000");
        int k = 0;
        redisReply *rep = run(c, &a, &k);
        if (!rep)
                return k;
        freeReplyObject(rep);
        return 0;
}
