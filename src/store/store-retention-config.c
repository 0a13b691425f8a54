/* The retention policy's defaults and per-tenant overrides
 * (docs/operations.md "Retention"). Kept apart from store-retention.c, which
 * needs SQLite, so the config parser (and its fuzzer) links without it. */
#include <assert.h>

#include "store.h"

void retention_config_init(RetentionConfig *c) {
        assert(c);
        *c = (RetentionConfig) {
                .defaults = { .max_age_usec = RETENTION_DEFAULT_MAX_AGE_USEC,
                              .max_log_bytes = RETENTION_DEFAULT_MAX_LOG_BYTES },
                .batch_rows = RETENTION_DEFAULT_BATCH,
                .batch_pause_usec = 20 * USEC_PER_MSEC,
                .interval_usec = RETENTION_DEFAULT_INTERVAL_USEC,
                .reserve_bytes = 256ULL << 20,
                .warn_bytes = 1ULL << 30,
        };
}

void retention_config_done(RetentionConfig *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_tenants; i++)
                free(c->tenants[i].tenant);
        free(c->tenants);
        c->tenants = NULL;
        c->n_tenants = 0;
}

void retention_config_copy(RetentionConfig *ret, const RetentionConfig *src) {
        assert(ret && src);
        *ret = *src;
        ret->tenants = xcalloc(src->n_tenants + 1, sizeof(RetentionTenant));
        for (size_t i = 0; i < src->n_tenants; i++)
                ret->tenants[i] = (RetentionTenant) { xstrdup(src->tenants[i].tenant), src->tenants[i].policy };
}

RetentionPolicy retention_policy_for(const RetentionConfig *c, const char *tenant) {
        assert(c);
        RetentionPolicy p = c->defaults;
        for (size_t i = 0; tenant && i < c->n_tenants; i++)
                if (streq(c->tenants[i].tenant, tenant)) {
                        const RetentionPolicy *o = &c->tenants[i].policy;
                        if (o->set & RETENTION_SET_MAX_AGE)
                                p.max_age_usec = o->max_age_usec;
                        if (o->set & RETENTION_SET_MAX_LOG_BYTES)
                                p.max_log_bytes = o->max_log_bytes;
                }
        return p;
}

uint64_t gc_stats_bytes(const GcStats *st) {
        return st->log_bytes + st->dag_dir_bytes + st->data_bytes + st->package_bytes;
}
