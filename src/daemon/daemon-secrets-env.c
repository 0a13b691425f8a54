/* A run's secrets checked when it is submitted: the tenant's sealed
 * values from the store, opened with the daemon's key and wiped at once.
 * The runs, the DAG runs and the secrets API (daemon-secrets.c) use it; it
 * uses only the store, so none of them ties back to another through it. */
#include <assert.h>

#include "daemon.h"

int daemon_secrets_check(Daemon *d, const char *tenant, char *const *names, char **ret_error) {
        char **env = NULL;
        assert(d && tenant);
        int r = store_secrets_env(d->store, d->secret_key, tenant, names, NULL, &env, ret_error);
        store_env_free(env);
        return r;
}

unsigned daemon_secret_status(int r) {
        return r == -EBADMSG ? 409 : 404;
}

const char *daemon_secret_code(int r) {
        return r == -EBADMSG ? "conflict" : "not_found";
}
