/* A run's secrets opened into its environment when it starts (and
 * checked when it is submitted): the tenant's sealed values from the store,
 * opened with the daemon's key. The runs, the DAG runs and the secrets API
 * (daemon-secrets.c) use it; it uses only the store, so none of them ties
 * back to another through it. */
#include <assert.h>

#include "daemon.h"

int daemon_secrets_env(Daemon *d, const char *tenant, char *const *names, char *const *env, char ***ret_env,
                       char **ret_error) {
        assert(d && tenant);
        return store_secrets_env(d->store, d->secret_key, tenant, names, env, ret_env, ret_error);
}

void daemon_env_free(char **env) {
        store_env_free(env);
}

int daemon_secrets_check(Daemon *d, const char *tenant, char *const *names, char **ret_error) {
        char **env = NULL;
        int r = daemon_secrets_env(d, tenant, names, NULL, &env, ret_error);
        daemon_env_free(env);
        return r;
}

unsigned daemon_secret_status(int r) {
        return r == -EBADMSG ? 409 : 404;
}

const char *daemon_secret_code(int r) {
        return r == -EBADMSG ? "conflict" : "not_found";
}
