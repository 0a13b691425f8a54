/* A small cache of validation replies. Validation is a pure function of
 * (source, filename, function, arguments), so a repeated run of the same
 * file with the same arguments skips the worker round trip. Entries are
 * keyed by SHA-256 and bounded twice: by count and by the bytes of the
 * replies they hold (a reply carries the marshalled code object in base64,
 * up to ~350 KB for a large file, so 1024 entries alone could pin
 * hundreds of MB). The least recently used entries go first. */
#include <assert.h>
#include <jansson.h>
#include <pthread.h>

#include "engine-internal.h"
#include "shared.h"

typedef struct Entry {
        unsigned char digest[32];
        char *reply;   /* the text (vcache_put()), or NULL: */
        json_t *value; /* the parsed reply (vcache_put_json()), shared read-only */
        size_t size;   /* the text's strlen + 1: what the byte bound counts */
        uint64_t stamp;
} Entry;

struct ValidationCache {
        pthread_mutex_t lock;
        Entry *entries;
        size_t n, max;
        size_t bytes, max_bytes;
        uint64_t clock;
};

ValidationCache *vcache_new(size_t max_entries, size_t max_bytes) {
        assert(max_entries > 0);
        ValidationCache *c = xcalloc(1, sizeof(ValidationCache));
        pthread_mutex_init(&c->lock, NULL);
        c->max = max_entries;
        c->max_bytes = max_bytes;
        c->entries = xcalloc(max_entries, sizeof(Entry));
        return c;
}

ValidationCache *vcache_free(ValidationCache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n; i++) {
                free(c->entries[i].reply);
                json_decref(c->entries[i].value);
        }
        free(c->entries);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* The last short keys this thread hashed and their digests: a warm
 * invoke looks its deployed version's pinned environment up with the same
 * key each time (engine_env_pinned(): ~4.5k instructions of SHA-256 per
 * invoke). The digest is a function of the key alone, so the memo is
 * per thread and needs no lock, whichever cache asks. Long keys (a
 * source's validation key) are not kept: comparing them costs as much. */
#define DIGEST_MEMO_KEYS 4
#define DIGEST_MEMO_KEY_MAX 256

typedef struct DigestMemo {
        size_t len; /* 0: empty */
        char key[DIGEST_MEMO_KEY_MAX];
        unsigned char digest[32];
} DigestMemo;

static __thread DigestMemo digest_memo[DIGEST_MEMO_KEYS];
static __thread unsigned digest_memo_next;

static void digest(const char *key, unsigned char out[32]) {
        size_t len = strlen(key);
        bool short_key = len > 0 && len <= DIGEST_MEMO_KEY_MAX;
        if (short_key)
                for (size_t i = 0; i < DIGEST_MEMO_KEYS; i++)
                        if (digest_memo[i].len == len && memcmp(digest_memo[i].key, key, len) == 0) {
                                memcpy(out, digest_memo[i].digest, 32);
                                return;
                        }
        sha256_digest(key, len, out);
        if (short_key) {
                DigestMemo *m = &digest_memo[digest_memo_next++ % DIGEST_MEMO_KEYS];
                m->len = len;
                memcpy(m->key, key, len);
                memcpy(m->digest, out, 32);
        }
}

/* With c->lock held: the entry of digest d, marked used, or NULL. */
static Entry *find_used(ValidationCache *c, const unsigned char d[static 32]) {
        for (size_t i = 0; i < c->n; i++)
                if (memcmp(c->entries[i].digest, d, 32) == 0) {
                        c->entries[i].stamp = ++c->clock;
                        return &c->entries[i];
                }
        return NULL;
}

char *vcache_get(ValidationCache *c, const char *key) {
        unsigned char d[32];
        digest(key, d);
        pthread_mutex_lock(&c->lock);
        Entry *en = find_used(c, d);
        char *r = en && en->reply ? xstrdup(en->reply) : NULL;
        pthread_mutex_unlock(&c->lock);
        return r;
}

json_t *vcache_get_json(ValidationCache *c, const char *key) {
        unsigned char d[32];
        digest(key, d);
        pthread_mutex_lock(&c->lock);
        Entry *en = find_used(c, d);
        json_t *v = en ? json_incref(en->value) : NULL;
        pthread_mutex_unlock(&c->lock);
        return v;
}

bool vcache_has(ValidationCache *c, const char *key) {
        unsigned char d[32];
        digest(key, d);
        pthread_mutex_lock(&c->lock);
        bool found = find_used(c, d) != NULL;
        pthread_mutex_unlock(&c->lock);
        return found;
}

/* With c->lock held: removes entry i (the last one takes its place). */
static void drop(ValidationCache *c, size_t i) {
        assert(i < c->n);
        c->bytes -= c->entries[i].size;
        free(c->entries[i].reply);
        json_decref(c->entries[i].value);
        c->entries[i] = c->entries[--c->n];
        c->entries[c->n] = (Entry) {};
}

/* With c->lock held: the least recently used entry's index (c->n > 0). */
static size_t oldest(const ValidationCache *c) {
        size_t o = 0;
        for (size_t i = 1; i < c->n; i++)
                if (c->entries[i].stamp < c->entries[o].stamp)
                        o = i;
        return o;
}

/* Keeps reply (owned: freed when not kept) or value (a reference taken)
 * under key, counted as size bytes. */
static void put(ValidationCache *c, const char *key, char *reply, json_t *value, size_t size) {
        unsigned char d[32];
        digest(key, d);
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n; i++)
                if (memcmp(c->entries[i].digest, d, 32) == 0) {
                        drop(c, i);
                        break;
                }
        /* A reply larger than the whole bound is not kept: it would evict
         * everything and still not fit. */
        if (size <= c->max_bytes) {
                while (c->n > 0 && (c->n == c->max || c->bytes + size > c->max_bytes))
                        drop(c, oldest(c));
                c->entries[c->n++] = (Entry) {
                        .reply = TAKE_PTR(reply), .value = json_incref(value), .size = size, .stamp = ++c->clock };
                memcpy(c->entries[c->n - 1].digest, d, 32);
                c->bytes += size;
        }
        pthread_mutex_unlock(&c->lock);
        free(reply);
}

void vcache_put(ValidationCache *c, const char *key, const char *reply_json) {
        put(c, key, xstrdup(reply_json), NULL, strlen(reply_json) + 1);
}

void vcache_put_json(ValidationCache *c, const char *key, json_t *value, size_t text_size) {
        assert(value);
        put(c, key, NULL, value, text_size + 1);
}

void vcache_usage(ValidationCache *c, size_t *ret_entries, size_t *ret_bytes) {
        pthread_mutex_lock(&c->lock);
        *ret_entries = c->n;
        *ret_bytes = c->bytes;
        pthread_mutex_unlock(&c->lock);
}
