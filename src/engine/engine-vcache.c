/* A small cache of validation replies. Validation is a pure function of
 * (source, filename, function, arguments), so a repeated run of the same
 * file with the same arguments skips the worker round trip. Entries are
 * keyed by SHA-256; the oldest entry is replaced when full. */
#include <pthread.h>

#include "engine-internal.h"
#include "shared.h"

typedef struct Entry {
        unsigned char digest[32];
        char *reply;
        uint64_t stamp;
} Entry;

struct ValidationCache {
        pthread_mutex_t lock;
        Entry *entries;
        size_t n, max;
        uint64_t clock;
};

ValidationCache *vcache_new(size_t max_entries) {
        ValidationCache *c = xcalloc(1, sizeof(ValidationCache));
        pthread_mutex_init(&c->lock, NULL);
        c->max = max_entries;
        c->entries = xcalloc(max_entries, sizeof(Entry));
        return c;
}

ValidationCache *vcache_free(ValidationCache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n; i++)
                free(c->entries[i].reply);
        free(c->entries);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

static void digest(const char *key, unsigned char out[32]) {
        sha256_digest(key, strlen(key), out);
}

char *vcache_get(ValidationCache *c, const char *key) {
        unsigned char d[32];
        digest(key, d);
        char *r = NULL;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n; i++)
                if (memcmp(c->entries[i].digest, d, 32) == 0) {
                        c->entries[i].stamp = ++c->clock;
                        r = xstrdup(c->entries[i].reply);
                        break;
                }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void vcache_put(ValidationCache *c, const char *key, const char *reply_json) {
        unsigned char d[32];
        digest(key, d);
        pthread_mutex_lock(&c->lock);
        Entry *slot = NULL;
        for (size_t i = 0; i < c->n && !slot; i++)
                if (memcmp(c->entries[i].digest, d, 32) == 0)
                        slot = &c->entries[i];
        if (!slot && c->n < c->max)
                slot = &c->entries[c->n++];
        if (!slot) {
                slot = &c->entries[0];
                for (size_t i = 1; i < c->n; i++)
                        if (c->entries[i].stamp < slot->stamp)
                                slot = &c->entries[i];
        }
        free(slot->reply);
        memcpy(slot->digest, d, 32);
        slot->reply = xstrdup(reply_json);
        slot->stamp = ++c->clock;
        pthread_mutex_unlock(&c->lock);
}
