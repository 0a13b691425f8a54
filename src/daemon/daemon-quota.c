/* Storage per tenant (docs/operations.md "Storage per tenant"): what the
 * daemon keeps for a tenant — the distinct content of its dataset
 * versions and the code of its function versions — is capped by
 * disk.max_stored_bytes or tenants.NAME.max_stored_bytes, so that one
 * tenant cannot fill the data directory every tenant shares. The count is
 * read from the stores at each write (nothing to persist, nothing to drift
 * after a restart or a delete), under the catalog's quota lock from the
 * check until the write is recorded. */
#include <assert.h>
#include <inttypes.h>

#include "daemon.h"
#include "data.h"

static uint64_t add_saturating(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int daemon_stored_check(const char *tenant, const StoredUsage *usage, uint64_t adding, uint64_t cap, const char *key,
                        char **ret_error) {
        assert(tenant && usage && ret_error);
        uint64_t total = add_saturating(add_saturating(usage->data_bytes, usage->code_bytes), adding);
        if (total <= cap)
                return 0;
        *ret_error = xasprintf("tenant '%s' would keep %" PRIu64 " bytes in the daemon (datasets %" PRIu64
                               ", function code %" PRIu64 ", this write %" PRIu64 "), over its storage cap of %" PRIu64
                               " bytes%s%s%s: nothing was stored; remove datasets or versions (pysprinter data rm) or "
                               "function versions (pysprinter functions rm NAME:V), or ask the operator for more",
                               tenant, total, usage->data_bytes, usage->code_bytes, adding, cap, key ? " (" : "",
                               key ?: "", key ? ")" : "");
        return -EDQUOT;
}

/* The code bytes of tenant's functions; 0 where the store does not count
 * them (Redis's). */
static int code_bytes(Daemon *d, const char *tenant, uint64_t *ret) {
        *ret = 0;
        if (!d->functions)
                return 0;
        int r = function_store_code_bytes(d->functions, tenant, ret);
        if (r == -EOPNOTSUPP) {
                *ret = 0;
                return 0;
        }
        return r;
}

int daemon_stored_usage(Daemon *d, const char *tenant, StoredUsage *ret) {
        assert(d && tenant && ret);
        StoredUsage u = {};
        int r = d->catalog ? data_tenant_bytes(d->catalog, tenant, &u.data_bytes) : 0;
        if (r >= 0)
                r = code_bytes(d, tenant, &u.code_bytes);
        if (r < 0)
                return r;
        *ret = u;
        return 0;
}

static uint64_t cap_now(Daemon *d, const char *tenant, const char **ret_key) {
        pthread_rwlock_rdlock(&d->cfg_lock);
        uint64_t cap = daemon_stored_cap(&d->cfg, tenant, ret_key);
        pthread_rwlock_unlock(&d->cfg_lock);
        return cap;
}

int daemon_stored_data_quota(void *userdata, const char *tenant, uint64_t data_bytes, uint64_t adding,
                             char **ret_error) {
        Daemon *d = userdata;
        assert(d && tenant && ret_error);
        StoredUsage u = {};
        int r = code_bytes(d, tenant, &u.code_bytes);
        if (r < 0) {
                *ret_error = xasprintf("cannot count the tenant's stored bytes: %s", strerror(-r));
                return r;
        }
        u.data_bytes = data_bytes;
        const char *key = NULL;
        uint64_t cap = cap_now(d, tenant, &key);
        return daemon_stored_check(tenant, &u, adding, cap, key, ret_error);
}

int daemon_stored_deploy_check(Daemon *d, const char *tenant, uint64_t adding, char **ret_error) {
        assert(d && tenant && ret_error);
        StoredUsage u = {};
        int r = daemon_stored_usage(d, tenant, &u);
        if (r < 0) {
                *ret_error = xasprintf("cannot count the tenant's stored bytes: %s", strerror(-r));
                return r;
        }
        const char *key = NULL;
        uint64_t cap = cap_now(d, tenant, &key);
        return daemon_stored_check(tenant, &u, adding, cap, key, ret_error);
}

void daemon_stored_lock(Daemon *d) {
        assert(d);
        if (d->catalog)
                data_catalog_quota_lock(d->catalog);
}

void daemon_stored_unlock(Daemon *d) {
        assert(d);
        if (d->catalog)
                data_catalog_quota_unlock(d->catalog);
}
