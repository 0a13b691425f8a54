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
        /* A cluster's Redis whose answer was lost: a read, nothing done
         * (cluster-conn.c's -ECOMM is for writes that may have landed). */
        return r == -ECOMM ? -ECONNREFUSED : r;
}

unsigned daemon_secret_status(int r) {
        return r == -EBADMSG ? 409 : r == -ECONNREFUSED ? 503 : 404;
}

const char *daemon_secret_code(int r) {
        return r == -EBADMSG ? "conflict" : r == -ECONNREFUSED ? "redis_unreachable" : "not_found";
}

struct MHD_Response *daemon_secret_refusal(const DaemonCall *call, int r, const char *prefix, const char *why,
                                           unsigned *ret_status) {
        assert(call && r < 0);
        if (r == -ECONNREFUSED)
                return daemon_call_errno(call, r, "secrets", ret_status);
        return daemon_call_error(call, daemon_secret_status(r), daemon_secret_code(r), ret_status, "%s%s", prefix ?: "",
                                 why ?: "secret not found");
}
