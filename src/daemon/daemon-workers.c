/* The warm pool and the environments: GET /v1/workers (warm workers and
 * the caller's warm instances, docs/workers.md) and GET /v1/envs (the
 * requirement sets the caller used; the server's paths to admins only). */
#include <jansson.h>

#include "daemon.h"
#include "pkg.h"

/* Whether the warm worker w (an object of engine_pool_list) runs an
 * environment tenant used: no store dirs (the base), or the set its
 * runs' locks noted (daemon_env_note). */
static bool worker_is_tenants(Daemon *d, const char *tenant, json_t *w) {
        json_t *paths = json_object_get(w, "sys_path");
        if (!json_is_array(paths) || json_array_size(paths) == 0)
                return true;
        char **dirs = NULL;
        size_t i;
        json_t *p;
        json_array_foreach(paths, i, p)
                if (json_is_string(p))
                        dirs = strv_append(dirs, json_string_value(p));
        _cleanup_free_ char *key = daemon_env_dirs_key(tenant, dirs), *v = NULL;
        strv_free(dirs);
        return store_kv_get(d->store, "tenant-env-dirs", key, &v) >= 0 && v;
}

/* What a non-admin token reads of a warm worker of one of its
 * environments: what concerns the environment. A worker serves every
 * tenant whose runs use its environment (the base one, every run), so its
 * pid, its runs in flight, the instances it hosts, its memory, idle time
 * and age are other tenants' activity as much as the caller's (bob
 * watched alice's runs come and go in `busy` and `idle_s`). Listed by
 * what stays, so that a field added later is an admin's until decided. */
static const char *const worker_fields_for_tenants[] = {
        "kind", "ready", "network", "sys_path", "imported", "failed_imports", "adopted",
};

/* w's fields a non-admin token reads, as a new object. */
static json_t *worker_tenants_view(json_t *w) {
        json_t *kept = json_object();
        for (size_t i = 0; i < ELEMENTSOF(worker_fields_for_tenants); i++) {
                json_t *v = json_object_get(w, worker_fields_for_tenants[i]);
                if (v)
                        json_object_set(kept, worker_fields_for_tenants[i], v);
        }
        return kept;
}

/* Workers hold public packages only, but which ones a tenant's runs use
 * is its own business (as in /v1/envs), and so is when it runs them: a
 * non-admin token sees the workers of its own environments (the base one
 * included) with worker_fields_for_tenants only, not the validator or
 * the blank worker (every tenant's, infrastructure), nor another tenant's
 * environment's worker. A deployed function's instances are shown to
 * their tenant alone, named without the tenant. An admin sees all. */
static json_t *workers_of_tenant(Daemon *d, const char *tenant, bool admin) {
        Engine *e = d->engine;
        _cleanup_free_ char *list = NULL, *prefix = xasprintf("%s/", tenant);
        (void) engine_pool_list(e, &list);
        json_t *all = json_loads(list ? list : "[]", 0, NULL), *mine = json_array();
        size_t i;
        json_t *w;
        json_array_foreach(all, i, w) {
                const char *kind = json_string_value(json_object_get(w, "kind"));
                const char *fn = json_string_value(json_object_get(w, "function"));
                if (kind && streq(kind, "instance")) {
                        if (!fn || !startswith(fn, prefix))
                                continue;
                        json_object_set_new(w, "function", json_string(fn + strlen(prefix)));
                } else if (!admin) {
                        if (kind && streq(kind, "worker") && worker_is_tenants(d, tenant, w))
                                json_array_append_new(mine, worker_tenants_view(w));
                        continue;
                }
                json_array_append(mine, w);
        }
        json_decref(all);
        return mine;
}

struct MHD_Response *daemon_api_workers(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        bool admin = call->role == TOKEN_ROLE_ADMIN;
        json_t *mine = workers_of_tenant(d, call->tenant, admin);
        json_t *j = json_pack("{s:o}", "workers", mine);
        /* The pool's totals are /metrics' pysprinter_pool_* figures (busy:
         * every tenant's runs in flight): given where /metrics is, to
         * anyone with public metrics, else to an admin. */
        if (j && daemon_call_sees_activity(call)) {
                EnginePoolStats st;
                engine_pool_stats(d->engine, &st);
                json_t *pool = json_pack(
                        "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "workers", (int) st.workers, "busy",
                        (int) st.busy, "instances", (int) st.instances, "instances_busy", (int) st.instances_busy,
                        "pss_bytes", (json_int_t) st.pss_bytes, "memory_budget", (json_int_t) st.memory_budget, "hits",
                        (json_int_t) st.hits, "misses", (json_int_t) st.misses, "evictions", (json_int_t) st.evictions,
                        "spare_hits", (json_int_t) st.spare_hits, "spare_misses", (json_int_t) st.spare_misses);
                json_object_set_new(j, "pool", pool ?: json_null());
        }
        return daemon_call_json(call, 200, j, ret_status);
}

/* An environment is shown to a tenant that has used it (daemon_env_note)
 * or that holds no requirements (the base every run shares). */
static bool env_is_tenants(Daemon *d, const char *tenant, char *const *requirements) {
        if (!requirements || !*requirements)
                return true;
        _cleanup_free_ char *key = daemon_env_requirements_key(tenant, requirements), *v = NULL;
        return store_kv_get(d->store, "tenant-env", key, &v) >= 0 && v;
}

struct MHD_Response *daemon_api_envs(const DaemonCall *call, unsigned *ret_status) {
        /* Environments are the engine's lock cache: requirement set ->
         * store dirs. The store is shared (public packages), but which
         * requirement sets a tenant uses is its own business: a tenant sees
         * its own, an admin all, and only an admin the server's paths. */
        Daemon *d = call->d;
        bool admin = call->role == TOKEN_ROLE_ADMIN;
        json_t *j = json_pack("{s:b}", "sandbox", d->cfg.sandbox == SANDBOX_MODE_FULL);
        if (admin) {
                _cleanup_free_ char *store_dir = path_join(d->data_dir, "store");
                json_object_set_new(j, "data_dir", json_string(d->data_dir));
                json_object_set_new(j, "package_store", json_string(store_dir));
        }
        pthread_rwlock_rdlock(&d->cfg_lock);
        /* Shown as pip shows it: the operator's index password is not
         * every tenant's to read (an admin has the config). */
        _cleanup_free_ char *index_url = pkg_url_redact(d->cfg.index_url);
        json_object_set_new(j, "index_url", index_url ? json_string(index_url) : json_null());
        pthread_rwlock_unlock(&d->cfg_lock);
        json_t *envs = json_array();
        PkgEnvInfo *infos = NULL;
        size_t n = 0;
        _cleanup_free_ char *err = NULL;
        if (pkg_env_list(d->data_dir, &infos, &n, &err) >= 0) {
                for (size_t i = 0; i < n; i++) {
                        if (!admin && !env_is_tenants(d, call->tenant, infos[i].requirements))
                                continue;
                        json_t *e = pkg_env_info_json(&infos[i]);
                        /* Tenants using the same requirement set share its
                         * environment: when it was last used and whether a
                         * run holds it now are every one of theirs (alice
                         * read in_use while bob's run of her set ran). */
                        if (!admin && e) {
                                json_object_set_new(e, "last_used", json_null());
                                json_object_del(e, "in_use");
                        }
                        json_array_append_new(envs, e);
                }
                pkg_env_info_free_many(infos, n);
        }
        json_object_set_new(j, "envs", envs);
        return daemon_call_json(call, 200, j, ret_status);
}
