/* A run's secrets opened into its environment when it starts (and
 * checked when it is submitted): the tenant's sealed values from the store,
 * opened with the daemon's key. The runs, the DAG runs and the secrets API
 * (daemon-secrets.c) use it; it uses only the store, so none of them ties
 * back to another through it. */
#include <assert.h>

#include "daemon.h"

int daemon_secrets_env(Daemon *d, const char *tenant, char *const *names, char *const *env, char ***ret_env,
                       char **ret_error) {
        assert(d);
        assert(tenant);
        char **out = NULL;
        for (char *const *e = env; e && *e; e++)
                out = strv_append(out, *e);
        for (char *const *n = names; n && *n; n++) {
                _cleanup_free_ char *v = NULL;
                size_t len;
                int r = store_secret_get(d->store, d->secret_key, tenant, *n, &v, &len);
                if (r < 0) {
                        daemon_env_free(out);
                        *ret_error = store_secret_error(*n, r);
                        return r;
                }
                char *kv = xasprintf("%s=%s", *n, v);
                out = strv_append(out, kv);
                explicit_bzero(kv, strlen(kv));
                free(kv);
                explicit_bzero(v, len);
        }
        *ret_env = out;
        return 0;
}

void daemon_env_free(char **env) {
        for (char **e = env; e && *e; e++)
                explicit_bzero(*e, strlen(*e));
        strv_free(env);
}

int daemon_secrets_check(Daemon *d, const char *tenant, char *const *names, char **ret_error) {
        char **env = NULL;
        int r = daemon_secrets_env(d, tenant, names, NULL, &env, ret_error);
        daemon_env_free(env);
        return r;
}
