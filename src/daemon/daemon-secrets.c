/* The secrets API: /v1/secrets[/{name}] (docs/secrets.md, docs/api.md
 * "Secrets"). Opening a run's secrets when it starts is
 * daemon-secrets-env.c's: runs and DAG runs use it, and this API (whose
 * removal warns of the DAG schedules a secret breaks) stands above them.
 *
 * Every call passes the caller's tenant to the store, so another tenant's
 * secret is simply not found (404). Values are sealed with the daemon's key
 * ($DATA/secrets.key, Daemon.secret_key) before they reach the database and
 * never leave the daemon again except into the environment of a run of
 * their tenant: no answer, run object, log line or metric carries one. */
#include <assert.h>
#include <jansson.h>
#include <microhttpd.h>

#include "daemon.h"

static json_t *time_or_null(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

/* "opens": false for a secret the daemon's key does not open (sealed
 * with another: a database restored without its key), as embedded. */
static json_t *secret_json(const DaemonCall *call, const SecretInfo *s) {
        _cleanup_free_ char *v = NULL;
        size_t len = 0;
        int r = store_secret_get(call->d->store, call->d->secret_key, call->tenant, s->name, &v, &len);
        if (v)
                explicit_bzero(v, len);
        return json_pack("{s:s, s:o, s:o, s:b}", "name", s->name, "created_at", time_or_null(s->created), "updated_at",
                         time_or_null(s->updated), "opens", r != -EBADMSG);
}

struct MHD_Response *daemon_api_secrets_list(const DaemonCall *call, unsigned *ret_status) {
        SecretInfo *v = NULL;
        size_t n = 0;
        int r = store_secret_list(call->d->store, call->tenant, &v, &n);
        if (r < 0)
                return daemon_call_errno(call, r, "secrets", ret_status);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, secret_json(call, &v[i]));
        secret_info_list_free(v, n);
        return daemon_call_json(call, 200, json_pack("{s:o}", "secrets", arr), ret_status);
}

/* A warm instance holds the environment it started with (docs/secrets.md):
 * after a secret of the tenant changed or went, the instances that hold an
 * environment ("#" in their key, drun_instance_key()) stop, idle ones now,
 * busy ones when their invocation ends, rather than keep the old value in
 * memory until their idle time runs out. The next invocation starts one
 * with the value of now. */
void daemon_secrets_retire(Daemon *d, const char *tenant) {
        assert(d && tenant);
        _cleanup_free_ char *prefix = xasprintf("%s/", tenant);
        (void) engine_pool_retire_holding(d->engine, prefix, "#");
}

/* PUT /v1/secrets/{name} {"value": "…"}: creates or replaces. */
static struct MHD_Response *daemon_api_secret_put(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        if (!secret_name_is_valid(name))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "'%s' is not a secret name: it becomes an environment variable, "
                                         "[A-Za-z_][A-Za-z0-9_]{0,127}", name);
        RequestCaps caps = daemon_call_caps(call);
        caps.no_quote = true;
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        int r = request_json_parse(call->body, call->body_len, &caps, (void **) &j, &err);
        if (r < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err ?: "invalid JSON");
        json_t *v = json_object_get(j, "value"), *allow = json_object_get(j, "allow_empty");
        if (!json_is_object(j) || json_object_size(j) != 1 + (allow != NULL) || !json_is_string(v) ||
            (allow && !json_is_boolean(allow))) {
                json_decref(j);
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "the body is {\"value\": \"…\"} (a string; \"allow_empty\": true "
                                         "for an empty one, nothing else)");
        }
        size_t len = json_string_length(v);
        /* An empty value is more often a client's mistake (an unset
         * variable, a failed read) than a wish: stored, every run saw ''. */
        if (len == 0 && !json_is_true(allow)) {
                json_decref(j);
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "the value of %s is empty: nothing stored (an empty secret takes "
                                         "\"allow_empty\": true)",
                                         name);
        }
        if (memchr(json_string_value(v), 0, len) || len > SECRET_MAX_BYTES) {
                json_decref(j);
                return daemon_call_error(call, len > SECRET_MAX_BYTES ? 413 : 400,
                                         len > SECRET_MAX_BYTES ? "payload_too_large" : "bad_request", ret_status,
                                         len > SECRET_MAX_BYTES ? "a secret's value is at most 64 KiB"
                                                                : "a secret's value cannot hold a NUL byte");
        }
        r = store_secret_set(call->d->store, call->d->secret_key, call->tenant, name, json_string_value(v), len);
        /* jansson's copy of the value: wiped before it is freed. */
        explicit_bzero((char *) json_string_value(v), len);
        json_decref(j);
        /* -EKEYREJECTED: a cluster node whose key is not the others'
         * (docs/cluster.md "Secrets"): what it sealed would open nowhere.
         * -ENOKEY: the database's secrets are sealed with another key (a
         * restore without it): a set would mix two keys in one store. */
        if (r == -EDQUOT || r == -EKEYREJECTED || r == -ENOKEY) {
                _cleanup_free_ char *why = store_secret_error(name, r);
                return daemon_call_error(call, 409, "conflict", ret_status, "%s", why);
        }
        if (r < 0)
                return daemon_call_errno(call, r, "secret", ret_status);
        daemon_secrets_retire(call->d, call->tenant);
        SecretInfo *list = NULL;
        size_t n = 0;
        json_t *ans = NULL;
        if (store_secret_list(call->d->store, call->tenant, &list, &n) >= 0)
                for (size_t i = 0; i < n && !ans; i++)
                        if (streq(list[i].name, name))
                                ans = secret_json(call, &list[i]);
        secret_info_list_free(list, n);
        return daemon_call_json(call, 200, ans ?: json_pack("{s:s}", "name", name), ret_status);
}

/* One line a function of the tenant whose current version names the
 * secret: as `functions rm` names the schedules that fire the function, a
 * removal says what it breaks now, not at the next invocation (a fire, a
 * Lambda client's call) that fails with SecretError. NULL: none. */
static char *secret_delete_warnings(const DaemonCall *call, const char *name) {
        FunctionRecord **v = NULL;
        size_t n = 0;
        if (function_store_list(call->d->functions, call->tenant, &v, &n) < 0)
                return NULL;
        char *out = NULL;
        for (size_t i = 0; i < n; i++) {
                json_t *e = v[i]->env_json ? json_loads(v[i]->env_json, 0, NULL) : NULL, *s;
                size_t k;
                bool names = false;
                json_array_foreach(json_object_get(e, "secrets"), k, s)
                        names = names || streq(json_string_value(s) ?: "", name);
                json_decref(e);
                if (!names)
                        continue;
                char *line = xasprintf("%swarning: function '%s' names secret '%s': its invocations fail until it "
                                       "is set again (pysprinter secret set %s) or the function is deployed "
                                       "without it\n",
                                       out ?: "", v[i]->name, name, name);
                free(out);
                out = line;
        }
        function_record_list_free(v, n);
        /* And the schedules that fire a DAG file: its check (POST /v1/dags
         * without a run) now refuses the task that names the secret. */
        ScheduleRecord **sv = NULL;
        size_t sn = 0;
        if (store_schedule_list(call->d->store, call->tenant, &sv, &sn) < 0)
                return out;
        _cleanup_free_ char *missing = xasprintf("': no secret named '%s' ", name);
        for (size_t i = 0; i < sn; i++) {
                if (!sv[i]->dag_json)
                        continue;
                json_t *dag = json_loads(sv[i]->dag_json, JSON_ALLOW_NUL, NULL);
                unsigned status = 0;
                _cleanup_free_ char *err = NULL;
                int k = dag ? daemon_dag_submit(call->d, call->tenant, dag, NULL, NULL, NULL, true, NULL, &status, &err)
                            : 0;
                json_decref(dag);
                /* "task 'T': no secret named 'NAME' (…)" */
                const char *at = k < 0 && err && startswith(err, "task '") ? strstr(err, missing) : NULL;
                if (!at)
                        continue;
                char *line = xasprintf("%swarning: schedule '%s' fires a DAG whose task '%.*s' names secret '%s': its "
                                       "fires fail until it is set again (pysprinter secret set %s)\n",
                                       out ?: "", sv[i]->name, (int) (at - err - 6), err + 6, name, name);
                free(out);
                out = line;
        }
        schedule_record_list_free(sv, sn);
        return out;
}

static struct MHD_Response *daemon_api_secret_delete(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        int r = store_secret_delete(call->d->store, call->tenant, name);
        if (r == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "no secret named '%s'", name);
        if (r < 0)
                return daemon_call_errno(call, r, "secret", ret_status);
        daemon_secrets_retire(call->d, call->tenant);
        json_t *j = json_pack("{s:s, s:b}", "name", name, "deleted", true);
        _cleanup_free_ char *warnings = secret_delete_warnings(call, name);
        if (warnings)
                json_object_set_new(j, "warnings", json_string(warnings));
        return daemon_call_json(call, 200, j, ret_status);
}

struct MHD_Response *daemon_api_secret_put_or_delete(const DaemonCall *call, unsigned *ret_status) {
        return streq(call->method, "DELETE") ? daemon_api_secret_delete(call, ret_status)
                                             : daemon_api_secret_put(call, ret_status);
}
