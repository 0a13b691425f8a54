/* A FunctionStore that remembers the function versions it read
 * (issue 15 b, docs/internals/performance-log.md "Invoke path: round 4").
 *
 * Every invoke looked its function up in SQLite: the version's whole row,
 * source included, on the read connection, whose page cache every commit
 * invalidates. A deployed version never changes, but a name's "latest"
 * moves with each deploy and a delete followed by a deploy starts the name
 * again at version 1 with other code. So nothing is trusted across a
 * write: every put or remove (and a stack's transaction, through
 * function_cache_invalidate()) empties the cache before and after it
 * writes, and bumps a generation. A lookup notes the generation before it
 * reads the store and keeps what it read only if no write began or ended
 * meanwhile, so once a write has returned no lookup can see what it
 * replaced. Only the daemon writes functions on one node; in a cluster the
 * functions are Redis's and other gateways write them, so the cluster's
 * store is never wrapped (daemon-cluster.c). */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "daemon.h"
#include "basic.h"

#define FNCACHE_BUCKETS 256
/* Bounds what the cache holds: past either, it starts over empty (deploys
 * of that many distinct versions are rare next to invokes). */
#define FNCACHE_MAX_ENTRIES 1024
#define FNCACHE_MAX_BYTES (64u << 20)

typedef struct FnEntry {
        struct FnEntry *next;
        int version;            /* asked for: 0 = the latest */
        size_t bytes;
        FunctionRecord *f;
} FnEntry;

typedef struct FunctionCache {
        FunctionStore base;
        FunctionStore *inner;
        pthread_mutex_t lock;
        uint64_t gen;           /* under lock */
        FnEntry *bucket[FNCACHE_BUCKETS];
        size_t n, bytes;
        atomic_ulong hits, misses;
} FunctionCache;

static const FunctionStoreOps function_cache_ops;

static size_t sz(const char *s) {
        return s ? strlen(s) + 1 : 0;
}

static size_t record_bytes(const FunctionRecord *f) {
        return sizeof(*f) + sizeof(FnEntry) + sz(f->tenant) + sz(f->name) + sz(f->filename) + sz(f->function) +
               f->source_len + 1 + sz(f->requirements_json) + sz(f->limits_json) + sz(f->params_json) +
               sz(f->description) + sz(f->env_json) + sz(f->lock_json);
}

/* FNV-1a over tenant NUL name NUL version. */
static unsigned bucket_of(const char *tenant, const char *name, int version) {
        uint32_t h = 2166136261u;
        for (const char *p = tenant; *p; p++)
                h = (h ^ (unsigned char) *p) * 16777619u;
        h = (h ^ 0xff) * 16777619u;
        for (const char *p = name; *p; p++)
                h = (h ^ (unsigned char) *p) * 16777619u;
        h = (h ^ (uint32_t) version) * 16777619u;
        return h % FNCACHE_BUCKETS;
}

static FnEntry *lookup_locked(FunctionCache *c, unsigned b, const char *tenant, const char *name, int version) {
        for (FnEntry *e = c->bucket[b]; e; e = e->next)
                if (e->version == version && streq(e->f->name, name) && streq(e->f->tenant, tenant))
                        return e;
        return NULL;
}

static void clear_locked(FunctionCache *c) {
        for (unsigned b = 0; b < FNCACHE_BUCKETS; b++)
                for (FnEntry *e = c->bucket[b], *next; e; e = next) {
                        next = e->next;
                        function_record_free(e->f);
                        free(e);
                }
        memset(c->bucket, 0, sizeof(c->bucket));
        c->n = c->bytes = 0;
}

static int cache_get(FunctionStore *fs, const char *tenant, const char *name, int version, FunctionRecord **ret) {
        FunctionCache *c = (FunctionCache *) fs;
        assert(tenant && name && ret);
        unsigned b = bucket_of(tenant, name, version);
        pthread_mutex_lock(&c->lock);
        FnEntry *e = lookup_locked(c, b, tenant, name, version);
        /* A reference, not a copy: a version never changes, and its holders
         * only read it (store.h FunctionRecord.refs). */
        FunctionRecord *hit = e ? function_record_ref(e->f) : NULL;
        uint64_t gen = c->gen;
        pthread_mutex_unlock(&c->lock);
        if (hit) {
                c->hits++;
                *ret = hit;
                return 0;
        }
        c->misses++;
        FunctionRecord *f = NULL;
        int k = function_store_get(c->inner, tenant, name, version, &f);
        if (k < 0)
                return k;
        /* Kept only when no write began or ended since gen was read. The
         * lookup's key is the caller's (tenant, name): a record the store
         * spelled otherwise would never be found again, so it is not kept. */
        size_t bytes = record_bytes(f);
        if (streq(f->tenant, tenant) && streq(f->name, name) && bytes <= FNCACHE_MAX_BYTES / 16) {
                FnEntry *n = xcalloc(1, sizeof(FnEntry));
                *n = (FnEntry) { .version = version, .bytes = bytes, .f = function_record_ref(f) };
                pthread_mutex_lock(&c->lock);
                if (c->gen == gen && !lookup_locked(c, b, tenant, name, version)) {
                        if (c->n >= FNCACHE_MAX_ENTRIES || c->bytes + bytes > FNCACHE_MAX_BYTES)
                                clear_locked(c);
                        n->next = c->bucket[b];
                        c->bucket[b] = n;
                        c->n++;
                        c->bytes += bytes;
                        n = NULL;
                }
                pthread_mutex_unlock(&c->lock);
                if (n) {
                        function_record_free(n->f);
                        free(n);
                }
        }
        *ret = f;
        return 0;
}

void function_cache_invalidate(FunctionStore *fs) {
        if (!fs || fs->ops != &function_cache_ops)
                return;
        FunctionCache *c = (FunctionCache *) fs;
        pthread_mutex_lock(&c->lock);
        c->gen++;
        clear_locked(c);
        pthread_mutex_unlock(&c->lock);
}

static int cache_put(FunctionStore *fs, const FunctionRecord *f, int *ret_version) {
        FunctionCache *c = (FunctionCache *) fs;
        function_cache_invalidate(fs);
        int k = function_store_put(c->inner, f, ret_version);
        function_cache_invalidate(fs);
        return k;
}

static int cache_remove(FunctionStore *fs, const char *tenant, const char *name) {
        FunctionCache *c = (FunctionCache *) fs;
        function_cache_invalidate(fs);
        int k = function_store_delete(c->inner, tenant, name);
        function_cache_invalidate(fs);
        return k;
}

static int cache_remove_version(FunctionStore *fs, const char *tenant, const char *name, int version) {
        FunctionCache *c = (FunctionCache *) fs;
        function_cache_invalidate(fs);
        int k = function_store_delete_version(c->inner, tenant, name, version);
        function_cache_invalidate(fs);
        return k;
}

/* Not kept: only a describing read (GET /v1/functions/NAME, invoke
 * --help) asks, never an invoke. */
static int cache_describe(FunctionStore *fs, const char *tenant, const char *name, int version, char **ret_signature,
                          char **ret_doc) {
        return function_store_describe(((FunctionCache *) fs)->inner, tenant, name, version, ret_signature, ret_doc);
}

static int cache_list(FunctionStore *fs, const char *tenant, FunctionRecord ***ret, size_t *ret_n) {
        return function_store_list(((FunctionCache *) fs)->inner, tenant, ret, ret_n);
}

static int cache_versions(FunctionStore *fs, const char *tenant, const char *name, int **ret, size_t *ret_n) {
        return function_store_versions(((FunctionCache *) fs)->inner, tenant, name, ret, ret_n);
}

/* URLs are not kept: a function's URL is one small row, read per request
 * of its endpoint, and may change without a new version. */
static int cache_url_put(FunctionStore *fs, const char *tenant, const char *name, int mode) {
        return function_store_url_put(((FunctionCache *) fs)->inner, tenant, name, mode);
}

static int cache_url_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode) {
        return function_store_url_get(((FunctionCache *) fs)->inner, tenant, name, ret_mode);
}

static int cache_url_cors_put(FunctionStore *fs, const char *tenant, const char *name, const char *cors_json) {
        return function_store_url_cors_put(((FunctionCache *) fs)->inner, tenant, name, cors_json);
}

static int cache_url_cors_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode,
                              char **ret_cors_json) {
        return function_store_url_cors_get(((FunctionCache *) fs)->inner, tenant, name, ret_mode, ret_cors_json);
}

/* A write like the others: what a lookup kept of the version goes. */
static int cache_lock_update(FunctionStore *fs, const char *tenant, const char *name, int version, const char *old_lock,
                             const char *new_lock) {
        FunctionCache *c = (FunctionCache *) fs;
        function_cache_invalidate(fs);
        int k = function_store_lock_update(c->inner, tenant, name, version, old_lock, new_lock);
        function_cache_invalidate(fs);
        return k;
}

static int cache_code_bytes(FunctionStore *fs, const char *tenant, uint64_t *ret) {
        return function_store_code_bytes(((FunctionCache *) fs)->inner, tenant, ret);
}

/* Aliases are not kept: an alias moves without a new version, and what
 * it names (a version, by number) is then a lookup the cache serves. */
static int cache_alias_put(FunctionStore *fs, const char *tenant, const char *name, const char *alias, int version,
                           const char *description, AliasPut mode, bool *ret_created) {
        return function_store_alias_put(((FunctionCache *) fs)->inner, tenant, name, alias, version, description, mode,
                                        ret_created);
}

static int cache_alias_get(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                           FunctionAlias *ret) {
        return function_store_alias_get(((FunctionCache *) fs)->inner, tenant, name, alias, ret);
}

static int cache_alias_list(FunctionStore *fs, const char *tenant, const char *name, FunctionAlias **ret,
                            size_t *ret_n) {
        return function_store_alias_list(((FunctionCache *) fs)->inner, tenant, name, ret, ret_n);
}

static int cache_alias_delete(FunctionStore *fs, const char *tenant, const char *name, const char *alias) {
        return function_store_alias_delete(((FunctionCache *) fs)->inner, tenant, name, alias);
}

static void cache_free(FunctionStore *fs) {
        FunctionCache *c = (FunctionCache *) fs;
        clear_locked(c);
        function_store_free(c->inner);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static const FunctionStoreOps function_cache_ops = {
        .name = "cache",
        .put = cache_put,
        .get = cache_get,
        .describe = cache_describe,
        .list = cache_list,
        .versions = cache_versions,
        .remove = cache_remove,
        .remove_version = cache_remove_version,
        .url_put = cache_url_put,
        .url_get = cache_url_get,
        .url_cors_put = cache_url_cors_put,
        .url_cors_get = cache_url_cors_get,
        .lock_update = cache_lock_update,
        .code_bytes = cache_code_bytes,
        .alias_put = cache_alias_put,
        .alias_get = cache_alias_get,
        .alias_list = cache_alias_list,
        .alias_delete = cache_alias_delete,
        .free = cache_free,
};

FunctionStore *function_cache_new(FunctionStore *inner) {
        assert(inner);
        FunctionCache *c = xcalloc(1, sizeof(FunctionCache));
        c->base.ops = &function_cache_ops;
        c->inner = inner;
        pthread_mutex_init(&c->lock, NULL);
        return &c->base;
}

void function_cache_stats(FunctionStore *fs, uint64_t *ret_hits, uint64_t *ret_misses) {
        uint64_t h = 0, m = 0;
        if (fs && fs->ops == &function_cache_ops) {
                FunctionCache *c = (FunctionCache *) fs;
                h = c->hits;
                m = c->misses;
        }
        *ret_hits = h;
        *ret_misses = m;
}
