/* The `retention:` and `disk:` config sections (docs/operations.md), parsed
 * from the loader's JSON values. Apart from daemon-gc.c (the collector) so
 * the config parser and its fuzzer link without the store and the engine. */
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>

#include "daemon.h"

static int want_bytes(json_t *v, const char *key, uint64_t *ret, char **ret_error) {
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                *ret = (uint64_t) json_integer_value(v);
                return 0;
        }
        if (json_is_string(v) && parse_size(json_string_value(v), ret) >= 0)
                return 0;
        *ret_error = xasprintf("'%s' must be a number of bytes or a size like \"512M\", \"1G\"", key);
        return -EINVAL;
}

static int want_count(json_t *v, const char *key, uint64_t min, uint64_t max, uint64_t *ret, char **ret_error) {
        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t) min ||
            (uint64_t) json_integer_value(v) > max) {
                *ret_error = xasprintf("'%s' must be an integer between %" PRIu64 " and %" PRIu64, key, min, max);
                return -EINVAL;
        }
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

/* {max_age_days, max_log_bytes} of retention or retention.tenants.NAME. */
static int parse_policy_key(const char *prefix, const char *k, json_t *v, RetentionPolicy *p, char **ret_error) {
        _cleanup_free_ char *full = xasprintf("%s.%s", prefix, k);
        uint64_t x;
        int r;
        if (streq(k, "max_age_days")) {
                r = want_count(v, full, 0, 100000, &x, ret_error);
                if (r >= 0) {
                        p->max_age_usec = x * 86400 * USEC_PER_SEC;
                        p->set |= RETENTION_SET_MAX_AGE;
                }
                return r;
        }
        if (streq(k, "max_log_bytes")) {
                r = want_bytes(v, full, &p->max_log_bytes, ret_error);
                if (r >= 0)
                        p->set |= RETENTION_SET_MAX_LOG_BYTES;
                return r;
        }
        *ret_error = xasprintf("unknown key '%s'", full);
        return -EINVAL;
}

static int parse_retention(RetentionConfig *rc, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;
        if (!json_is_object(o)) {
                *ret_error = xstrdup("'retention' must be a mapping (max_age_days, max_log_bytes, tenants, …)");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("retention.%s", k);
                uint64_t x = 0;
                int r;
                if (streq(k, "interval_s")) {
                        r = want_count(v, full, 0, 86400 * 30, &x, ret_error);
                        rc->interval_usec = x * USEC_PER_SEC;
                } else if (streq(k, "env_max_idle_days")) {
                        r = want_count(v, full, 0, 100000, &x, ret_error);
                        rc->env_max_idle_usec = x * 86400 * USEC_PER_SEC;
                } else if (streq(k, "batch_rows")) {
                        r = want_count(v, full, 1, 100000, &x, ret_error);
                        rc->batch_rows = (unsigned) x;
                } else if (streq(k, "batch_pause_ms")) {
                        r = want_count(v, full, 0, 10000, &x, ret_error);
                        rc->batch_pause_usec = x * USEC_PER_MSEC;
                } else if (streq(k, "tenants")) {
                        const char *name;
                        json_t *t;
                        if (!json_is_object(v)) {
                                *ret_error = xstrdup("'retention.tenants' must be a mapping of tenant name to "
                                                     "{max_age_days, max_log_bytes}");
                                return -EINVAL;
                        }
                        r = 0;
                        json_object_foreach(v, name, t) {
                                _cleanup_free_ char *tp = xasprintf("retention.tenants.%s", name);
                                if (!function_name_is_valid(name) || !json_is_object(t)) {
                                        *ret_error = xasprintf("'%s' must be a mapping, under a tenant name "
                                                               "([A-Za-z0-9_-]{1,64})",
                                                               tp);
                                        return -EINVAL;
                                }
                                RetentionTenant rt = { .tenant = xstrdup(name) };
                                const char *k2;
                                json_t *v2;
                                json_object_foreach(t, k2, v2) {
                                        r = parse_policy_key(tp, k2, v2, &rt.policy, ret_error);
                                        if (r < 0)
                                                break;
                                }
                                rc->tenants = xrealloc(rc->tenants, (rc->n_tenants + 1) * sizeof(RetentionTenant));
                                rc->tenants[rc->n_tenants++] = rt;
                                if (r < 0)
                                        return r;
                        }
                } else
                        r = parse_policy_key("retention", k, v, &rc->defaults, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_disk(RetentionConfig *rc, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;
        if (!json_is_object(o)) {
                *ret_error = xstrdup("'disk' must be a mapping (reserve_bytes, warn_bytes, max_stored_bytes)");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("disk.%s", k);
                int r;
                if (streq(k, "reserve_bytes"))
                        r = want_bytes(v, full, &rc->reserve_bytes, ret_error);
                else if (streq(k, "warn_bytes"))
                        r = want_bytes(v, full, &rc->warn_bytes, ret_error);
                else {
                        *ret_error = xasprintf("unknown key '%s'", full);
                        r = -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int daemon_gc_config_parse(RetentionConfig *rc, const char *key, struct json_t *v, char **ret_error) {
        assert(rc && key && ret_error);
        if (streq(key, "retention"))
                return parse_retention(rc, v, ret_error);
        if (streq(key, "disk"))
                return parse_disk(rc, v, ret_error);
        *ret_error = xasprintf("unknown key '%s'", key);
        return -EINVAL;
}
