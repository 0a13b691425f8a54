/* Deployed functions: /v1/functions (deploy, list), /v1/functions/{name}
 * (get, delete), /v1/functions/{name}/invoke (docs/api.md "Functions"),
 * and the AWS Lambda API over the same records: ListFunctions,
 * GetFunction, GetFunctionConfiguration and Invoke under /2015-03-31/
 * (docs/api.md "AWS Lambda API").
 *
 * A deploy validates the file in a worker, which reads the function's name
 * and parameters; both are kept on the function record beside the source
 * and the requirements (the daemon never reads Python). The Lambda event
 * mapping is decided from those parameters (lambda_call_rule(), with the
 * function-name parser in daemon-request.c, where the fuzzer reaches them). */
#include <assert.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "daemon.h"
#include "pkg.h"

#define LAMBDA_ACCOUNT "000000000000"
#define LAMBDA_REGION "local"
/* The largest X-Amz-Client-Context Lambda takes (its base64 text). */
#define LAMBDA_CLIENT_CONTEXT_MAX 3583
/* The most functions a ListFunctions page holds, as on Lambda. */
#define LAMBDA_LIST_PAGE 50

/* "$LATEST"/"latest"/NULL -> 0, "N" -> N; -EINVAL otherwise (aliases are
 * not kept). */
static int version_parse(const char *v, int *ret) {
        *ret = 0;
        if (!v || streq(v, "$LATEST") || streq(v, "latest"))
                return 0;
        /* A version is written as Lambda writes it: "01", "+1" and " 1"
         * (which strtoul() takes) name no version there, and are 404s. */
        if (!(*v >= '1' && *v <= '9') || strspn(v, "0123456789") != strlen(v))
                return -EINVAL;
        char *end;
        unsigned long x = strtoul(v, &end, 10);
        if (*end || x > INT32_MAX)
                return -EINVAL;
        *ret = (int) x;
        return 0;
}

/* The one reading of a version qualifier (?version=, Lambda's Qualifier
 * and NAME:Q, the CLI's NAME::Q, which the Lambda route carries): what
 * version_parse() takes, or an alias of the caller's function name, read
 * as the version it points at now (docs/api.md "Aliases"). -EINVAL: q is
 * neither; -ESRCH: name has no such alias (nor, maybe, exists). */
static int qualifier_resolve(const DaemonCall *call, const char *name, const char *q, int *ret_version) {
        assert(call && name && ret_version);
        if (version_parse(q, ret_version) >= 0)
                return 0;
        if (!function_alias_name_is_valid(q))
                return -EINVAL;
        FunctionAlias a = {};
        int k = function_store_alias_get(call->d->functions, call->tenant, name, q, &a);
        if (k == -ENOENT)
                return -ESRCH;
        if (k < 0)
                return k;
        *ret_version = a.version;
        function_alias_done(&a);
        return 0;
}

/* The answer to a qualifier qualifier_resolve() refused (k), as a native
 * route says it: 400 when q is no version or alias name, 404 naming what
 * is missing otherwise. */
static struct MHD_Response *qualifier_error(const DaemonCall *call, const char *name, const char *q, int k,
                                            unsigned *ret_status) {
        FunctionRecord *f = NULL;
        if (k == -EINVAL)
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "query 'version' must be a positive integer or an alias (" FUNCTION_ALIAS_RULE
                                         ")");
        if (k == -ESRCH && function_store_get(call->d->functions, call->tenant, name, 0, &f) >= 0) {
                function_record_free(f);
                return daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no alias '%s'", name,
                                         q);
        }
        if (k == -ESRCH)
                return daemon_function_missing(call, "", name, ret_status);
        return daemon_call_errno(call, k, "function", ret_status);
}

static json_t *function_json_base(const DaemonCall *call, const FunctionRecord *f);

/* The function object's "secrets" and "env": names only (an --env value
 * may be sensitive too; the record has it, the answer does not). */
static void add_env_names(json_t *j, const char *env_json) {
        json_t *e = json_parse_or_string(env_json), *secrets = json_object_get(e, "secrets"), *names = json_array();
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(e, "env"), k, v)
                json_array_append_new(names, json_string(k));
        json_object_set_new(j, "secrets", json_is_array(secrets) ? json_incref(secrets) : json_array());
        json_object_set_new(j, "env", names);
        json_decref(e);
}

/* The record's env_json of a deploy's "secrets" and "env"; NULL when none. */
static char *deploy_env_json(const RunRequest *req) {
        if (!req->secrets && !req->env)
                return NULL;
        json_t *env = json_object();
        for (char **e = req->env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                json_object_set_new(env, k, json_string(eq + 1));
        }
        json_t *j = json_pack("{s:o, s:o}", "secrets", json_strv_new(req->secrets), "env", env);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

/* The function object: the record's fields, and its signature and doc —
 * the record's own when it holds them (a deploy's, which always has a
 * signature), else the store's (a get leaves them out for the invoke
 * path's sake: FunctionRecord.signature). */
static json_t *function_json(const DaemonCall *call, const FunctionRecord *f) {
        json_t *j = function_json_base(call, f);
        add_env_names(j, f->env_json);
        /* The packages the version is pinned to (null: none kept). */
        json_object_set_new(j, "lock", pkg_lock_shown(f->lock_json));
        _cleanup_free_ char *sig = NULL, *doc = NULL;
        if (!f->signature && f->tenant)
                (void) function_store_describe(call->d->functions, f->tenant, f->name, f->version, &sig, &doc);
        const char *s = f->signature ?: sig, *d = f->signature ? f->doc : doc;
        json_object_set_new(j, "signature", s ? json_string(s) : json_null());
        json_object_set_new(j, "doc", d ? json_string(d) : json_null());
        return j;
}

static json_t *function_json_base(const DaemonCall *call, const FunctionRecord *f) {
        char hex[65];
        sha256_hex(f->source, f->source_len, hex);
        return json_pack("{s:s, s:i, s:s?, s:s?, s:o, s:s?, s:o, s:o, s:o, s:s, s:o}", "name", f->name, "version",
                         f->version, "filename", f->filename, "function", f->function, "parameters",
                         json_parse_or_string(f->params_json), "description", f->description, "requirements",
                         json_parse_or_string(f->requirements_json), "limits", json_parse_or_string(f->limits_json),
                         "created_at", daemon_time_json(f->created), "source_sha256", hex, "url",
                         daemon_endpoint_json(call->d, f->tenant ? f->tenant : call->tenant, f->name));
}

/* The deploy's limits (and delivery policy) as the record keeps them;
 * NULL when the deploy asked for nothing. */
static char *deploy_limits_json(const RunRequest *req) {
        const RunLimits *l = &req->limits;
        json_t *j = json_object();
        const struct {
                const char *key;
                uint64_t v;
        } num[] = {
                { "timeout_ms", l->timeout_ms },
                { "memory_bytes", l->memory_bytes },
                { "max_procs", l->max_procs },
                { "max_output_bytes", l->max_output_bytes },
        };
        for (size_t i = 0; i < ELEMENTSOF(num); i++)
                if (num[i].v)
                        json_object_set_new(j, num[i].key, json_integer((json_int_t) num[i].v));
        if (l->network || l->network_off)
                json_object_set_new(j, "network", json_boolean(l->network));
        /* The function's delivery policy travels with its limits: every
         * invocation inherits it (docs/api.md "Delivery"). */
        if (req->max_attempts > 0)
                json_object_set_new(j, "retries", json_integer(req->max_attempts - 1));
        char *s = json_object_size(j) ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return s;
}

/* A deploy that did not validate: 422 with the validation's answer
 * (prefix: "function 'NAME': " in a stack, else ""). */
static struct MHD_Response *deploy_invalid(const DaemonCall *call, const RunResult *res, const char *prefix,
                                           unsigned *ret_status) {
        json_t *v = run_result_validation_json(res);
        _cleanup_free_ char *msg = xasprintf("%s%s", prefix,
                                             res->error_message ? res->error_message : "the function does not validate");
        json_t *out = json_pack("{s:{s:s, s:s}, s:o}", "error", "code", "invalid_function", "message", msg,
                                "validation", v ?: json_null());
        return daemon_call_json(call, 422, out, ret_status);
}

struct MHD_Response *daemon_function_prepare(const DaemonCall *call, const RunRequest *req, bool in_stack,
                                             FunctionRecord **ret, char **ret_warnings, unsigned *ret_status) {
        assert(call && req && ret && ret_warnings);
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *prefix = in_stack ? xasprintf("function '%s': ", req->name) : xstrdup("");
        RunResult *res = NULL;
        struct MHD_Response *resp = NULL;

        /* The deploy keeps the limits as asked (defaults follow the config);
         * each invoke is granted again, as the config may have changed. */
        RunLimits granted;
        pthread_rwlock_rdlock(&d->cfg_lock);
        int k = daemon_limits_grant(&d->cfg, call->tenant, &req->limits, &granted, &err);
        pthread_rwlock_unlock(&d->cfg_lock);
        if (k < 0)
                return daemon_call_error(call, 403, "forbidden", ret_status, "%s%s", prefix, err);
        /* Its retries, as its limits: each invoke is lowered to the grant
         * of the moment (daemon_run_submit). */
        struct MHD_Response *refused = daemon_call_grant_retries(call, prefix, req->max_attempts, ret_status);
        if (refused)
                return refused;
        /* Its secrets must be the tenant's now (404), and are opened again
         * at each invocation. */
        if (req->secrets && (k = daemon_secrets_check(d, call->tenant, req->secrets, &err)) < 0)
                return daemon_secret_refusal(call, k, prefix, err, ret_status);
        /* A deploy has no arguments yet: check the file and resolve its
         * requirements (kept beside it, not spliced into it), not a call.
         * Against the index as it is now, not a lock cached by an earlier
         * run or deploy: the version keeps what this resolves to for
         * good, and a new deploy is how a version gets newer packages. */
        RunRequest fresh = *req;
        fresh.no_cache = true;
        k = daemon_validate(d, call->tenant, &fresh, false, &res);
        if (k < 0)
                resp = daemon_call_errno(call, k, "validation", ret_status);
        else if (res->exit_code != 0)
                resp = deploy_invalid(call, res, prefix, ret_status);
        else {
                FunctionRecord *f = xcalloc(1, sizeof(FunctionRecord));
                f->tenant = xstrdup(call->tenant);
                f->name = xstrdup(req->name);
                f->filename = xstrdup(req->filename ?: "main.py"); /* as the store keeps it */
                f->function = xstrdup_or_null(res->function ? res->function : req->function);
                f->source = xmemdupz(req->source, req->source_len);
                f->source_len = req->source_len;
                f->requirements_json = xstrdup_or_null(req->requirements_json);
                /* The validation resolved (and installed) the
                 * requirements, beside the file or its @requirements: the
                 * version keeps that lock, and its invokes run exactly it
                 * (FunctionRecord.lock_json). NULL: it has none. */
                f->lock_json = xstrdup_or_null(res->lock_json);
                f->limits_json = deploy_limits_json(req);
                f->params_json = xstrdup_or_null(res->params_json);
                /* validate_only: the engine's result has them. */
                f->signature = xstrdup_or_null(res->signature);
                f->doc = xstrdup_or_null(res->doc);
                f->description = xstrdup_or_null(req->description);
                f->created = now_realtime();
                f->env_json = deploy_env_json(req);
                *ret = f;
                *ret_warnings = res->warnings && *res->warnings ? TAKE_PTR(res->warnings) : NULL;
        }
        run_result_free(res);
        return resp;
}

struct MHD_Response *daemon_api_function_deploy(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *loc = NULL, *warnings = NULL, *sched = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        FunctionRecord *f = NULL;
        struct MHD_Response *resp;
        int k = request_parse(REQUEST_DEPLOY, call->body, call->body_len, &caps, &req, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        /* CORS settings are a URL's: said before the deploy, not after. */
        int mode;
        if (req.cors_json && req.url == ENDPOINT_KEEP &&
            function_store_url_get(d->functions, call->tenant, req.name, &mode) == -ENOENT) {
                run_request_done(&req);
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "field 'cors' needs a URL, which function '%s' has not: "
                                         "deploy it with \"url\": true or \"public\" too",
                                         req.name);
        }

        resp = daemon_function_prepare(call, &req, false, &f, &warnings, ret_status);
        if (resp)
                goto out;
        /* The tenant's storage cap (daemon-quota.c): checked and written
         * under one lock, so two deploys (or a deploy and a data put)
         * never both pass on room only one fits in. */
        daemon_stored_lock(d);
        k = daemon_stored_deploy_check(d, call->tenant, f->source_len, &err);
        if (k >= 0)
                k = function_store_put(d->functions, f, &f->version);
        daemon_stored_unlock(d);
        if (k == -EDQUOT) {
                resp = daemon_call_error(call, 413, "payload_too_large", ret_status, "%s", err);
                goto out;
        }
        if (k < 0 && err) {
                resp = daemon_call_error(call, 500, "internal", ret_status, "%s", err);
                goto out;
        }
        if (k < 0) {
                resp = daemon_call_errno(call, k, "function", ret_status);
                goto out;
        }
        if (req.url != ENDPOINT_KEEP && (k = daemon_endpoint_set(d, call->tenant, req.name, req.url)) < 0) {
                resp = daemon_call_errno(call, k, "endpoint", ret_status);
                goto out;
        }
        /* Settings given (null: none) replace the URL's; absent, they stay
         * (a URL removed took them). */
        if (req.cors_set &&
            (k = function_store_url_cors_put(d->functions, call->tenant, req.name, req.cors_json)) < 0 &&
            !(k == -ENOENT && !req.cors_json)) {
                resp = daemon_call_errno(call, k, "endpoint", ret_status);
                goto out;
        }
        /* The schedules its arguments no longer fit: said now, not found
         * out at the next fire. */
        sched = daemon_function_deploy_schedule_warnings(call, f);
        if (sched) {
                char *all = xasprintf("%s%s", warnings ?: "", sched);
                free(warnings);
                warnings = all;
        }
        loc = xasprintf("/v1/functions/%s", req.name);
        json_t *j = function_json(call, f);
        /* The parser's warnings: the deployer's to see, as a validation's
         * answer carries them (the function object itself has none). */
        if (warnings)
                json_object_set_new(j, "warnings", json_string(warnings));
        resp = daemon_call_json(call, 201, j, ret_status);
        daemon_response_headers(resp, (const char *const[]) { "Location", loc, NULL });
out:
        function_record_free(f);
        run_request_done(&req);
        return resp;
}

/* The latest version of each of the caller's functions, as render shows
 * one, in an object under key. */
static struct MHD_Response *functions_list(const DaemonCall *call,
                                           json_t *(*render)(const DaemonCall *, const FunctionRecord *),
                                           const char *key, unsigned *ret_status) {
        FunctionRecord **v = NULL;
        size_t n = 0;
        int k = function_store_list(call->d->functions, call->tenant, &v, &n);
        if (k < 0)
                return daemon_call_errno(call, k, "functions", ret_status);
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, render(call, v[i]));
        function_record_list_free(v, n);
        return daemon_call_json(call, 200, json_pack("{s:o}", key, a), ret_status);
}

struct MHD_Response *daemon_api_functions_list(const DaemonCall *call, unsigned *ret_status) {
        return functions_list(call, function_json, "functions", ret_status);
}

/* daemon.h. */
struct MHD_Response *daemon_function_find(const DaemonCall *call, const char *prefix, const char *name, int version,
                                          FunctionRecord **ret, unsigned *ret_status) {
        assert(call && prefix && name && ret);
        FunctionRecord *f = NULL;
        int k = function_name_is_valid(name) ? function_store_get(call->d->functions, call->tenant, name, version, &f)
                                             : -ENOENT;
        if (k >= 0) {
                *ret = f;
                return NULL;
        }
        /* Only a miss of a named version costs a second look-up: the
         * latest tells whether it is the version that is missing. */
        if (k == -ENOENT && version > 0 && function_store_get(call->d->functions, call->tenant, name, 0, &f) >= 0) {
                function_record_free(f);
                return daemon_call_error(call, 404, "not_found", ret_status, "%sfunction '%s' has no version %d",
                                         prefix, name, version);
        }
        if (k == -ENOENT)
                return daemon_function_missing(call, prefix, name, ret_status);
        return daemon_call_errno(call, k, "function", ret_status);
}

struct MHD_Response *daemon_function_missing(const DaemonCall *call, const char *prefix, const char *name,
                                             unsigned *ret_status) {
        return daemon_call_error(call, 404, "not_found", ret_status, "%sno deployed function '%s'", prefix, name);
}

/* The function a /v1/functions/{name} call names, at ?version= (latest
 * when absent); NULL with an error response in *ret_error otherwise. */
static FunctionRecord *function_of_call(const DaemonCall *call, unsigned *ret_status, struct MHD_Response **ret_error) {
        FunctionRecord *f = NULL;
        int version = 0;
        const char *q = daemon_call_query(call, "version");
        /* A name that cannot be a function's is "not found" whatever the
         * version says, as before. */
        int k = function_name_is_valid(call->seg[2]) ? qualifier_resolve(call, call->seg[2], q, &version) : 0;
        if (k < 0)
                *ret_error = qualifier_error(call, call->seg[2], q, k, ret_status);
        else
                *ret_error = daemon_function_find(call, "", call->seg[2], version, &f, ret_status);
        return f;
}

static json_t *alias_json(const FunctionAlias *a) {
        return json_pack("{s:s, s:i, s:s, s:I}", "name", a->alias, "version", a->version, "description",
                         a->description ?: "", "updated", (json_int_t) (a->updated / USEC_PER_MSEC));
}

/* The aliases of the caller's function name, by name; NULL on an error. */
static json_t *function_aliases_json(const DaemonCall *call, const char *name) {
        FunctionAlias *v = NULL;
        size_t n = 0;
        if (function_store_alias_list(call->d->functions, call->tenant, name, &v, &n) < 0)
                return NULL;
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, alias_json(&v[i]));
        function_alias_list_free(v, n);
        return a;
}

struct MHD_Response *daemon_api_function_get(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        FunctionRecord *f = function_of_call(call, ret_status, &resp);
        if (!f)
                return resp;
        json_t *j = function_json(call, f);
        int *vs = NULL;
        size_t n = 0;
        if (function_store_versions(call->d->functions, call->tenant, f->name, &vs, &n) >= 0) {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(a, json_integer(vs[i]));
                json_object_set_new(j, "versions", a);
                free(vs);
        }
        json_t *aliases = function_aliases_json(call, f->name);
        if (aliases)
                json_object_set_new(j, "aliases", aliases);
        if (daemon_call_query_true(call, "source"))
                json_object_set_new(j, "source", json_stringn(f->source, f->source_len));
        function_record_free(f);
        return daemon_call_json(call, 200, j, ret_status);
}

static char *function_version_pins(const DaemonCall *call, const char *name, int version);

/* Tests only (tests/e2e/test_explore_fnversion2.py): with the variable
 * set to a path, creates PATH.reached and waits until PATH exists, so a
 * test holds a step at this point while it sends another request. */
static void test_gate(const char *var) {
        const char *path = secure_getenv(var);
        if (!path)
                return;
        _cleanup_free_ char *reached = xasprintf("%s.reached", path);
        _cleanup_close_ int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        while (access(path, F_OK) < 0)
                usleep(20 * 1000);
}

/* daemon.h. "TENANT/NAME@" is every version's instance key; "@V~" one
 * version's (drun_instance_key(): '~' always follows the number). Every
 * version: a new deploy of the name starts again at version 1, the same
 * key. */
unsigned daemon_function_retire(Daemon *d, const char *tenant, const char *name, int version) {
        assert(d && tenant && name && version >= 0);
        _cleanup_free_ char *prefix = version > 0 ? xasprintf("%s/%s@%d~", tenant, name, version)
                                                  : xasprintf("%s/%s@", tenant, name);
        return engine_pool_retire(d->engine, prefix);
}

/* The aliases of name that point at version, "'a', 'b'"; NULL when none. */
static char *function_version_aliases(const DaemonCall *call, const char *name, int version) {
        FunctionAlias *v = NULL;
        size_t n = 0;
        char *out = NULL;
        if (function_store_alias_list(call->d->functions, call->tenant, name, &v, &n) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (v[i].version != version)
                        continue;
                char *next = out ? xasprintf("%s, '%s'", out, v[i].alias) : xasprintf("'%s'", v[i].alias);
                free(out);
                out = next;
        }
        function_alias_list_free(v, n);
        return out;
}

/* Deletes the caller's function name: every version (version 0) or
 * version alone, and retires the warm instances of what it deleted (idle
 * ones now, busy ones when their invocation ends: a version being invoked
 * finishes that invocation; the next is a 404). The one delete of the
 * native and the Lambda routes; the caller has checked that name (and
 * version) is deployed, so a 404 here is a delete that raced another.
 * NULL with *ret the answer, or the refusal: 409 when version is the
 * latest or a schedule is pinned to it. */
static struct MHD_Response *function_delete(const DaemonCall *call, const char *name, int version, json_t **ret,
                                            unsigned *ret_status) {
        assert(call && name && version >= 0 && ret);
        /* The pin check and the delete as one step against a pinned
         * schedule add (Daemon.pin_lock). */
        if (version > 0)
                pthread_mutex_lock(&call->d->pin_lock);
        _cleanup_free_ char *pins = version > 0 ? function_version_pins(call, name, version) : NULL;
        if (pins) {
                pthread_mutex_unlock(&call->d->pin_lock);
                return daemon_call_error(call, 409, "conflict", ret_status,
                                         "version %d of '%s' cannot be deleted: schedule %s fires it (pinned to "
                                         "%s::%d); remove or re-add the schedule first (pysprinter schedule rm NAME)",
                                         version, name, pins, name, version);
        }
        if (version > 0)
                test_gate("PYSPRINTER_TEST_VERSION_DELETE_GATE");
        int k = version > 0 ? function_store_delete_version(call->d->functions, call->tenant, name, version)
                            : function_store_delete(call->d->functions, call->tenant, name);
        if (version > 0)
                pthread_mutex_unlock(&call->d->pin_lock);
        if (k == -EBUSY)
                return daemon_call_error(call, 409, "conflict", ret_status,
                                         "version %d is the latest of '%s', which an invoke without a version runs: "
                                         "it is deleted only with the function (pysprinter functions rm %s), or "
                                         "alone once a newer version is deployed",
                                         version, name, name);
        if (k == -EMLINK) {
                _cleanup_free_ char *names = function_version_aliases(call, name, version);
                return daemon_call_error(call, 409, "conflict", ret_status,
                                         "version %d of '%s' cannot be deleted: alias %s points at it; move or "
                                         "delete the alias first (pysprinter functions alias rm %s ALIAS)",
                                         version, name, names ?: "(?)", name);
        }
        if (k == -ENOENT && version > 0)
                return daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no version %d", name,
                                         version);
        if (k == -ENOENT)
                return daemon_function_missing(call, "", name, ret_status);
        if (k < 0)
                return daemon_call_errno(call, k, "function", ret_status);
        unsigned retired = daemon_function_retire(call->d, call->tenant, name, version);
        json_t *j = json_pack("{s:s, s:b, s:i}", "name", name, "deleted", 1, "instances_retired", (int) retired);
        if (version > 0) {
                json_object_set_new(j, "version", json_integer(version));
                *ret = j;
                return NULL;
        }
        (void) daemon_endpoint_set(call->d, call->tenant, name, ENDPOINT_NONE);
        /* The schedules that fire it: said now, not found out at a fire. A
         * version deleted alone leaves them the latest to fire. */
        _cleanup_free_ char *warnings = daemon_function_delete_schedule_warnings(call, name);
        if (warnings)
                json_object_set_new(j, "warnings", json_string(warnings));
        *ret = j;
        return NULL;
}

/* The words of a delete naming $LATEST alone, on both routes (Lambda's
 * InvalidParameterValueException). */
#define LATEST_NOT_ALONE                                                                                          \
        "$LATEST cannot be deleted without deleting the function: delete the function (every version) without a " \
        "version, or one older version by its number"

/* DELETE /v1/functions/{name}[?version=N]. */
struct MHD_Response *daemon_api_function_delete(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        if (!function_name_is_valid(name))
                return daemon_function_missing(call, "", name, ret_status);
        const char *asked = daemon_call_query(call, "version");
        int version = 0;
        /* A number alone: an alias is deleted at .../aliases/ALIAS, and
         * the version it names is refused while it does (409). */
        if (asked && version_parse(asked, &version) < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "query 'version' must be a positive integer");
        if (asked) {
                struct MHD_Response *resp;
                FunctionRecord *f = function_of_call(call, ret_status, &resp);
                if (!f)
                        return resp;
                function_record_free(f);
                /* Read as function_of_call() read it: "$LATEST" is 0. */
                if (version_parse(asked, &version) < 0 || version == 0)
                        return daemon_call_error(call, 400, "bad_request", ret_status, LATEST_NOT_ALONE);
        }
        json_t *j = NULL;
        struct MHD_Response *resp = function_delete(call, name, version, &j, ret_status);
        return resp ?: daemon_call_json(call, 200, j, ret_status);
}

/* GET /v1/functions/{name}/runs[?limit=N]: its runs, newest first (the
 * function need not exist any more: its runs do), each as GET /v1/runs/ID
 * shows it, those in this daemon's hands (f, taken when the request came)
 * merged in as GET /v1/runs merges them. */
typedef struct FunctionRuns {
        char *name;
        size_t limit;
        RunRecord **f;
        size_t nf;
} FunctionRuns;

static void function_runs_free(void *p) {
        FunctionRuns *f = p;
        run_record_list_free(f->f, f->nf);
        free(f->name);
        free(f);
}

static struct MHD_Response *function_runs_then(const DaemonCall *call, void *p, uint64_t ticket,
                                               unsigned *ret_status) {
        FunctionRuns *f = p;
        char **ids = NULL;
        int k = store_function_run_ids_settled(call->d->store, ticket, call->tenant, f->name, f->limit, &ids);
        if (k < 0)
                return daemon_call_errno(call, k, "runs", ret_status);
        RunRecord **v = xcalloc(strv_length(ids) + 1, sizeof(RunRecord *));
        size_t n = 0;
        for (char **i = ids; i && *i; i++)
                if (store_run_get(call->d->store, call->tenant, *i, &v[n]) >= 0)
                        n++;
        strv_free(ids);
        v = daemon_runs_merge_in_flight(call->d, TAKE_PTR(f->f), f->nf, v, &n, f->limit);
        f->nf = 0;
        return daemon_runs_list_answer(call, v, n, NULL, ret_status);
}

struct MHD_Response *daemon_api_function_runs(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        size_t limit;
        struct MHD_Response *bad = daemon_call_query_limit(call, 20, 1000, &limit, ret_status);
        if (bad)
                return bad;
        if (!function_name_is_valid(name))
                return daemon_function_missing(call, "", name, ret_status);
        if (call->d->cluster) {
                /* Redis's records are the runs' only view: a gateway runs
                 * nothing, a worker's runs end in Redis before anyone
                 * hears of them. */
                RunRecord **v = NULL;
                size_t n = 0;
                int k = daemon_cluster_function_run_list(call->d, call->tenant, name, limit, &v, &n);
                if (k < 0)
                        return daemon_call_errno(call, k, "runs", ret_status);
                return daemon_runs_list_answer(call, v, n, NULL, ret_status);
        }
        FunctionRuns *f = xcalloc(1, sizeof(FunctionRuns));
        *f = (FunctionRuns) { .name = xstrdup(name), .limit = limit };
        if (daemon_run_list_in_flight(call->d, call->tenant, name, &f->f, &f->nf) < 0)
                f->nf = 0;
        return daemon_call_after_settle(call, function_runs_then, f, function_runs_free);
}

/* The function's deploy-time limits, overridden field by field by the
 * invoke's. */
static void merge_limits(RunLimits *l, const char *limits_json) {
        json_t *j = json_parse_or_string(limits_json);
        RunLimits base = {};
        if (json_is_object(j)) {
                base.timeout_ms = (uint64_t) json_integer_value(json_object_get(j, "timeout_ms"));
                base.memory_bytes = (uint64_t) json_integer_value(json_object_get(j, "memory_bytes"));
                base.max_procs = (uint64_t) json_integer_value(json_object_get(j, "max_procs"));
                base.max_output_bytes = (uint64_t) json_integer_value(json_object_get(j, "max_output_bytes"));
                base.network = json_is_true(json_object_get(j, "network"));
                base.network_off = json_is_false(json_object_get(j, "network"));
        }
        json_decref(j);
        if (!l->timeout_ms)
                l->timeout_ms = base.timeout_ms;
        if (!l->memory_bytes)
                l->memory_bytes = base.memory_bytes;
        if (!l->max_procs)
                l->max_procs = base.max_procs;
        if (!l->max_output_bytes)
                l->max_output_bytes = base.max_output_bytes;
        if (!l->network && !l->network_off) {
                l->network = base.network;
                l->network_off = base.network_off;
        }
}

/* The deploy's secret names and variables onto req (docs/secrets.md). */
static void env_from_function(RunRequest *req, const FunctionRecord *f) {
        json_t *e = json_parse_or_string(f->env_json), *v;
        size_t i;
        const char *k;
        json_array_foreach(json_object_get(e, "secrets"), i, v)
                if (json_is_string(v))
                        req->secrets = strv_append(req->secrets, json_string_value(v));
        json_object_foreach(json_object_get(e, "env"), k, v)
                if (json_is_string(v)) {
                        _cleanup_free_ char *kv = xasprintf("%s=%s", k, json_string_value(v));
                        req->env = strv_append(req->env, kv);
                }
        json_decref(e);
}

/* A function's URL (deploy --url): its mode in the function store, beside
 * the function (Redis's in a cluster, so every gateway serves it); the
 * endpoint's requests are daemon-endpoints.c's. */
int daemon_endpoint_set(Daemon *d, const char *tenant, const char *name, EndpointMode mode) {
        return function_store_url_put(d->functions, tenant, name,
                                      mode == ENDPOINT_PUBLIC ? 2 : mode == ENDPOINT_TOKEN ? 1 : 0);
}

json_t *daemon_endpoint_json(Daemon *d, const char *tenant, const char *name) {
        int mode;
        _cleanup_free_ char *cors = NULL;
        if (!tenant || function_store_url_cors_get(d->functions, tenant, name, &mode, &cors) < 0)
                return json_null();
        _cleanup_free_ char *path = xasprintf("/fn/%s/%s", tenant, name);
        json_t *j = json_pack("{s:s, s:b}", "path", path, "public", mode == 2);
        json_t *c = cors ? json_loads(cors, 0, NULL) : NULL;
        if (c)
                json_object_set_new(j, "cors", c);
        return j;
}

/* Fills req with what runs f (source, file, function, requirements,
 * limits, secrets and env, delivery policy); the caller's own fields stay. */
void daemon_request_from_function(RunRequest *req, const FunctionRecord *f) {
        /* Borrowed with a reference to the version: no copy of a
         * module-sized source per invoke. */
        assert(!req->source && !req->fn);
        req->fn = function_record_ref((FunctionRecord *) f);
        req->source = f->source;
        req->source_len = f->source_len;
        req->filename = f->filename ? xstrdup(f->filename) : NULL;
        req->function = f->function ? xstrdup(f->function) : NULL;
        req->requirements_json = f->requirements_json ? xstrdup(f->requirements_json) : NULL;
        merge_limits(&req->limits, f->limits_json);
        env_from_function(req, f);
        if (req->max_attempts == 0) {
                /* The deploy's "retries" as max_attempts (0: the config's). */
                json_t *j = json_parse_or_string(f->limits_json);
                json_t *v = json_object_get(j, "retries");
                req->max_attempts = json_is_integer(v) ? (int) json_integer_value(v) + 1 : 0;
                json_decref(j);
        }
}

static char *lambda_context_json(const FunctionRecord *f, const char *request_id, const RunLimits *l,
                                 const json_t *client_context);

/* An invoke of a Lambda handler, handler(event, context) by the calling
 * rule, with one positional argument and no keywords: it may want its
 * context (the runner decides, by the second parameter's default). */
static bool lambda_handler_needs_context(const RunRequest *req, const FunctionRecord *f) {
        if (req->context_json || lambda_call_rule(f->params_json) != LAMBDA_CALL_EVENT_CONTEXT || !req->args_json)
                return false;
        json_t *kw = req->kwargs_json ? json_loads(req->kwargs_json, 0, NULL) : NULL;
        bool no_kwargs = !req->kwargs_json || json_object_size(kw) == 0;
        json_decref(kw);
        if (!no_kwargs)
                return false;
        json_t *a = json_loads(req->args_json, JSON_ALLOW_NUL, NULL);
        bool one = json_array_size(a) == 1;
        json_decref(a);
        return one;
}

struct MHD_Response *daemon_api_function_invoke(const DaemonCall *call, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        struct MHD_Response *resp;
        const char *body = call->body_len ? call->body : "{}";
        int k = request_parse(REQUEST_INVOKE, body, call->body_len ? call->body_len : 2, &caps, &req, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        FunctionRecord *f = NULL;
        /* ?version= takes an alias as well as a number (the body's
         * "version" is a number). */
        const char *q = daemon_call_query(call, "version");
        if (q && function_name_is_valid(call->seg[2])) {
                int version = 0;
                k = qualifier_resolve(call, call->seg[2], q, &version);
                if (k >= 0 && req.version > 0 && req.version != version)
                        k = -EINVAL;
                if (k < 0) {
                        run_request_done(&req);
                        return qualifier_error(call, call->seg[2], q, k, ret_status);
                }
                req.version = version;
        }
        /* The invoke's own retries (the deploy's are lowered at submit). */
        resp = daemon_call_grant_retries(call, "", req.max_attempts, ret_status);
        if (!resp)
                resp = daemon_function_find(call, "", call->seg[2], req.version, &f, ret_status);
        if (resp) {
                run_request_done(&req);
                return resp;
        }
        daemon_request_from_function(&req, f);
        resp = daemon_call_grant_limits(call, "", &req.limits, ret_status);
        _cleanup_free_ char *id = NULL;
        if (!resp && lambda_handler_needs_context(&req, f)) {
                /* handler(event, context) called with the event alone (the
                 * Python client's invoke(name, event)) gets its context,
                 * as on the Lambda route; the runner passes it only when
                 * the second parameter has no default, so every call that
                 * worked without it means what it did. */
                id = id_new("r");
                _cleanup_free_ char *ctx = lambda_context_json(f, id, &req.limits, NULL);
                if (!ctx)
                        resp = daemon_call_errno(call, -ENOMEM, "invoke", ret_status);
                else
                        req.context_json = xasprintf("{\"if_missing\":%s}", ctx);
        }
        if (!resp)
                resp = daemon_call_submit(call, &req, id, f->name, f->version, ret_status);
        function_record_free(f);
        run_request_done(&req);
        return resp;
}

/* ---- the AWS Lambda API ------------------------------------------------------------ */

static char *lambda_arn(const char *name) {
        return xasprintf("arn:aws:lambda:" LAMBDA_REGION ":" LAMBDA_ACCOUNT ":function:%s", name);
}

/* The function a Lambda call names (path FunctionName, plain or ARN, with
 * its qualifier or ?Qualifier=); NULL with Lambda's error otherwise. */
static FunctionRecord *lambda_function(const DaemonCall *call, unsigned *ret_status, struct MHD_Response **ret_error) {
        const char *ref = call->seg[2];
        _cleanup_free_ char *name = NULL, *qualifier = NULL;
        FunctionRecord *f = NULL;
        int version;
        *ret_error = NULL;
        if (lambda_function_ref_parse(ref, &name, &qualifier) < 0) {
                *ret_error = daemon_call_error(call, 404, "not_found", ret_status, "Function not found: %s", ref);
                return NULL;
        }
        const char *asked = daemon_call_query(call, "Qualifier");
        if (qualifier && asked && !streq(qualifier, asked)) {
                /* "echo:1" with ?Qualifier=2: Lambda refuses, not picks. */
                *ret_error = daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException",
                                                      ret_status,
                                                      "The derived qualifier from the function name (%s) does not "
                                                      "match the specified qualifier (%s)",
                                                      qualifier, asked);
                return NULL;
        }
        const char *q = qualifier ? qualifier : asked;
        int k = function_name_is_valid(name) ? qualifier_resolve(call, name, q, &version) : -ESRCH;
        if (k == -EINVAL || k == -ESRCH) {
                *ret_error = daemon_call_error(call, 404, "not_found", ret_status,
                                               "Function not found: arn:aws:lambda:" LAMBDA_REGION ":" LAMBDA_ACCOUNT
                                               ":function:%s%s%s",
                                               name, q ? ":" : "", q ?: "");
                return NULL;
        }
        if (k < 0) {
                *ret_error = daemon_call_errno(call, k, "function", ret_status);
                return NULL;
        }
        k = function_store_get(call->d->functions, call->tenant, name, version, &f);
        if (k == -ENOENT)
                *ret_error = daemon_call_error(call, 404, "not_found", ret_status,
                                               "Function not found: arn:aws:lambda:" LAMBDA_REGION ":" LAMBDA_ACCOUNT
                                               ":function:%s%s%s",
                                               name, version ? ":" : "", version ? q : "");
        else if (k < 0)
                *ret_error = daemon_call_errno(call, k, "function", ret_status);
        return f;
}

/* The timeout and memory an invocation of f gets when it asks for nothing:
 * the deploy's, else the config's defaults, else the engine's, granted to
 * the tenant as an invoke is (a default above its maxima is lowered to
 * them; the defaults alone said 512 MB where bob's invocations had 256).
 * A deploy whose own limits the config no longer grants (its invokes are
 * refused) shows them lowered to the grant. */
static RunLimits function_limits(const DaemonCall *call, const FunctionRecord *f) {
        RunLimits asked = {}, l;
        merge_limits(&asked, f->limits_json);
        _cleanup_free_ char *err = NULL;
        pthread_rwlock_rdlock(&call->d->cfg_lock);
        if (daemon_limits_grant(&call->d->cfg, call->tenant, &asked, &l, &err) < 0) {
                l = asked;
                l.timeout_ms = l.timeout_ms ?: call->d->cfg.defaults.timeout_ms ?: RUN_DEFAULT_TIMEOUT_MS;
                l.memory_bytes = l.memory_bytes ?: call->d->cfg.defaults.memory_bytes ?: RUN_DEFAULT_MEMORY_BYTES;
                (void) daemon_limits_clamp(&call->d->cfg, call->tenant, &l);
        }
        pthread_rwlock_unlock(&call->d->cfg_lock);
        return l;
}

/* Lambda's FunctionConfiguration for f (the fields AWS SDKs read). */
/* f's FunctionConfiguration; label: its Version (NULL: f's number),
 * qualified: the ARN ends with it. */
static json_t *lambda_configuration_as(const DaemonCall *call, const FunctionRecord *f, const char *label,
                                       bool qualified) {
        _cleanup_free_ char *sha = NULL, *handler = NULL;
        char version[16];
        snprintf(version, sizeof(version), "%d", f->version);
        if (!label)
                label = version;
        _cleanup_free_ char *base = lambda_arn(f->name);
        _cleanup_free_ char *arn = qualified ? xasprintf("%s:%s", base, label) : xstrdup(base);
        unsigned char digest[32];
        unsigned dlen = 0;
        EVP_Digest(f->source, f->source_len, digest, &dlen, EVP_sha256(), NULL);
        sha = base64_encode(digest, dlen);
        const char *file = f->filename ? f->filename : "main.py";
        size_t stem = endswith(file, ".py") ? strlen(file) - 3 : strlen(file);
        handler = xasprintf("%.*s.%s", (int) stem, file, f->function ? f->function : "handler");
        char modified[64];
        time_t secs = (time_t) (f->created / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(modified, sizeof(modified), "%Y-%m-%dT%H:%M:%S.000+0000", &tm);
        RunLimits l = function_limits(call, f);
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:[s]}",
                         "FunctionName", f->name, "FunctionArn", arn, "Runtime", "python3.11", "Handler", handler,
                         "CodeSize", (json_int_t) f->source_len, "Description", f->description ? f->description : "",
                         "Timeout", (json_int_t) ((l.timeout_ms + 999) / 1000), "MemorySize",
                         (json_int_t) (l.memory_bytes >> 20), "LastModified", modified, "CodeSha256", sha, "Version",
                         label, "State", "Active", "LastUpdateStatus", "Successful", "PackageType", "Zip",
                         "Architectures", "x86_64");
}

/* The qualifier a Lambda call on one function names (in its FunctionName
 * or as ?Qualifier=), or NULL (lambda_function() checked that the two
 * agree). */
static char *lambda_call_qualifier(const DaemonCall *call) {
        if (call->n_seg <= 2)
                return NULL;
        _cleanup_free_ char *name = NULL, *qualifier = NULL;
        if (lambda_function_ref_parse(call->seg[2], &name, &qualifier) >= 0 && qualifier)
                return TAKE_PTR(qualifier);
        const char *q = daemon_call_query(call, "Qualifier");
        return q ? xstrdup(q) : NULL;
}

/* Whether the call names $LATEST: Lambda then answers Version "$LATEST"
 * (and X-Amz-Executed-Version), not the number it is now. */
static bool lambda_call_names_latest(const DaemonCall *call) {
        _cleanup_free_ char *q = lambda_call_qualifier(call);
        return q && streq(q, "$LATEST");
}

/* As the call names f: asked for a version or $LATEST, the ARN names it,
 * as Lambda's does. */
static json_t *lambda_configuration(const DaemonCall *call, const FunctionRecord *f) {
        _cleanup_free_ char *q = lambda_call_qualifier(call);
        json_t *c = lambda_configuration_as(call, f, q && streq(q, "$LATEST") ? "$LATEST" : NULL, q != NULL);
        /* Asked through an alias: Lambda's ARN names the alias, its
         * Version the number it points at. */
        int v;
        if (q && version_parse(q, &v) < 0 && function_alias_name_is_valid(q)) {
                _cleanup_free_ char *base = lambda_arn(f->name);
                json_object_set_new(c, "FunctionArn", json_sprintf("%s:%s", base, q));
        }
        return c;
}

/* A List* call's MaxItems: 1..10000 (400 InvalidParameterValueException
 * otherwise), LAMBDA_LIST_PAGE when absent and at most that (Lambda's page
 * cap). NULL, or the refusal. */
static struct MHD_Response *lambda_max_items(const DaemonCall *call, size_t *ret_max, unsigned *ret_status) {
        const char *max_items = daemon_call_query(call, "MaxItems");
        uint64_t max = LAMBDA_LIST_PAGE;
        if (max_items && (parse_uint64(max_items, &max) < 0 || max < 1 || max > 10000))
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "MaxItems must be an integer from 1 to 10000");
        *ret_max = (size_t) MIN(max, (uint64_t) LAMBDA_LIST_PAGE);
        return NULL;
}

/* ListFunctions pages as Lambda's do: at most MaxItems (1..10000; 50 a
 * page whatever it says, Lambda's cap) functions in name order, after
 * Marker, the name of the last function of the page before. A page with
 * more after it has NextMarker. Names, not positions: a function deleted
 * between two pages moves no other across the cut. */
struct MHD_Response *daemon_api_lambda_list(const DaemonCall *call, unsigned *ret_status) {
        const char *marker = daemon_call_query(call, "Marker");
        size_t max;
        struct MHD_Response *resp = lambda_max_items(call, &max, ret_status);
        if (resp)
                return resp;
        if (marker && !function_name_is_valid(marker))
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "Marker is not one this API gave (NextMarker)");
        FunctionRecord **v = NULL;
        size_t n = 0;
        int k = function_store_list(call->d->functions, call->tenant, &v, &n);
        if (k < 0)
                return daemon_call_errno(call, k, "functions", ret_status);
        json_t *a = json_array(), *j = json_object();
        size_t i = 0;
        while (i < n && marker && strcmp(v[i]->name, marker) <= 0)
                i++;
        for (; i < n && json_array_size(a) < max; i++)
                json_array_append_new(a, lambda_configuration(call, v[i]));
        json_object_set_new(j, "Functions", a);
        if (i < n)
                json_object_set_new(j, "NextMarker", json_string(v[i - 1]->name));
        function_record_list_free(v, n);
        return daemon_call_json(call, 200, j, ret_status);
}

/* ListVersionsByFunction as Lambda answers it: $LATEST (the latest
 * version's configuration, Version "$LATEST"), then each version in
 * order, paged by MaxItems and Marker (the previous page's last Version). */
struct MHD_Response *daemon_api_lambda_versions(const DaemonCall *call, unsigned *ret_status) {
        const char *marker = daemon_call_query(call, "Marker");
        _cleanup_free_ char *name = NULL, *qualifier = NULL;
        size_t max;
        int after = -1; /* the Marker: -1 none, 0 $LATEST, N a version */
        struct MHD_Response *resp = lambda_max_items(call, &max, ret_status);
        if (resp)
                return resp;
        if (marker && version_parse(marker, &after) < 0)
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "Marker is not one this API gave (NextMarker)");
        if (lambda_function_ref_parse(call->seg[2], &name, &qualifier) >= 0 && qualifier)
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "ListVersionsByFunction takes a function without a qualifier, not '%s'",
                                                call->seg[2]);
        FunctionRecord *latest = lambda_function(call, ret_status, &resp);
        if (!latest)
                return resp;
        int *vs = NULL;
        size_t n = 0;
        int k = function_store_versions(call->d->functions, call->tenant, latest->name, &vs, &n);
        if (k < 0) {
                function_record_free(latest);
                return daemon_call_errno(call, k, "functions", ret_status);
        }
        json_t *a = json_array(), *j = json_object();
        bool more = false;
        if (after < 0)
                json_array_append_new(a, lambda_configuration_as(call, latest, "$LATEST", true));
        for (size_t i = 0; i < n && k >= 0; i++) {
                if (vs[i] <= after)
                        continue;
                if (json_array_size(a) >= max) {
                        more = true;
                        break;
                }
                FunctionRecord *f = NULL;
                k = function_store_get(call->d->functions, call->tenant, latest->name, vs[i], &f);
                if (k == -ENOENT) { /* deleted meanwhile */
                        k = 0;
                        continue;
                }
                if (k >= 0)
                        json_array_append_new(a, lambda_configuration_as(call, f, NULL, true));
                function_record_free(f);
        }
        free(vs);
        function_record_free(latest);
        if (k < 0) {
                json_decref(a);
                json_decref(j);
                return daemon_call_errno(call, k, "functions", ret_status);
        }
        if (more) {
                json_t *last = json_array_get(a, json_array_size(a) - 1);
                json_object_set(j, "NextMarker", json_object_get(last, "Version"));
        }
        json_object_set_new(j, "Versions", a);
        return daemon_call_json(call, 200, j, ret_status);
}

struct MHD_Response *daemon_api_lambda_configuration(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        FunctionRecord *f = lambda_function(call, ret_status, &resp);
        if (!f)
                return resp;
        json_t *j = lambda_configuration(call, f);
        function_record_free(f);
        return daemon_call_json(call, 200, j, ret_status);
}

struct MHD_Response *daemon_api_lambda_get(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        FunctionRecord *f = lambda_function(call, ret_status, &resp);
        if (!f)
                return resp;
        /* The code is the daemon's: GET /v1/functions/NAME?source=1 with
         * the same credentials returns it. */
        _cleanup_free_ char *loc = xasprintf("/v1/functions/%s?source=1&version=%d", f->name, f->version);
        json_t *j = json_pack("{s:o, s:{s:s, s:s}, s:{}}", "Configuration", lambda_configuration(call, f), "Code",
                              "RepositoryType", "pysprinter", "Location", loc, "Tags");
        function_record_free(f);
        return daemon_call_json(call, 200, j, ret_status);
}

/* DeleteFunction: DELETE /2015-03-31/functions/{name}[?Qualifier=N]. The
 * unqualified call deletes the function with every version; a version
 * number deletes that version alone (not the latest, nor one a schedule
 * is pinned to: 409 ResourceConflictException, as Lambda's for a version
 * an alias points to); $LATEST alone is Lambda's 400. 204, no body. */
struct MHD_Response *daemon_api_lambda_delete(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        FunctionRecord *f = lambda_function(call, ret_status, &resp);
        if (!f)
                return resp;
        _cleanup_free_ char *q = lambda_call_qualifier(call), *name = xstrdup(f->name);
        int version = 0;
        /* An alias names the version it points at, which the delete then
         * refuses (409: the alias points at it), as Lambda's. */
        bool latest = q && (qualifier_resolve(call, name, q, &version) < 0 || version == 0);
        function_record_free(f);
        if (latest)
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                LATEST_NOT_ALONE);
        json_t *j = NULL;
        resp = function_delete(call, name, version, &j, ret_status);
        if (resp)
                return resp;
        json_decref(j);
        return daemon_text_response(204, NULL, xstrdup(""), 0, ret_status);
}

/* daemon.h. */
/* RUN_ARGUMENT_HINT: words about -a and --NAME that mean nothing to a
 * Lambda caller, whose event holds the arguments. */
static const char cli_argument_hint[] = RUN_ARGUMENT_HINT;

char *lambda_error_message(RunStatus status, const char *type, const char *message) {
        if (!message)
                return xstrdup(status == RUN_FAILED ? "" : "the function failed");
        if (status == RUN_INVALID && endswith(message, cli_argument_hint)) {
                _cleanup_free_ char *plain = xstrndup(message, strlen(message) - strlen(cli_argument_hint));
                return lambda_error_message(status, type, plain);
        }
        /* A raised exception's message is the engine's "Type: str(e)", or
         * "Type" when str(e) is empty; Lambda's is str(e). */
        if (type && startswith(message, type)) {
                const char *rest = message + strlen(type);
                if (startswith(rest, ": "))
                        return xstrdup(rest + 2);
                if (!*rest && status == RUN_FAILED)
                        return xstrdup("");
        }
        return xstrdup(message);
}

/* daemon.h. */
json_t *lambda_stack_trace(const char *traceback) {
        json_t *frames = json_array();
        if (!traceback)
                return frames;
        /* The raised exception's own traceback is the last one: those
         * before it are its causes and contexts. An ExceptionGroup's is
         * drawn with a margin ("  + Exception Group Traceback …", then
         * "  | " before each of its lines, its sub-exceptions further in):
         * its own lines, the margin taken off, are read as a plain one. */
        static const char header[] = "Traceback (most recent call last):\n";
        static const char group[] = "  + Exception Group Traceback (most recent call last):\n";
        const char *p = NULL, *q;
        bool in_group = false;
        for (q = traceback; q; q = strchr(q, '\n'), q = q ? q + 1 : NULL) {
                if (startswith(q, header) || startswith(q, group)) {
                        p = q;
                        in_group = startswith(q, group);
                }
        }
        if (!p)
                return frames;
        _cleanup_free_ char *unmargined = NULL;
        if (in_group) {
                Buf u;
                buf_init(&u, SIZE_MAX);
                for (p += strlen(group); startswith(p, "  | ");) {
                        size_t n = strcspn(p, "\n");
                        size_t len = n + (p[n] == '\n');
                        if (buf_append(&u, p + 4, len - 4) < 0)
                                break;
                        p += len;
                }
                if (buf_append(&u, "", 1) < 0) {
                        buf_free(&u);
                        return frames;
                }
                unmargined = buf_steal(&u);
                p = unmargined;
        } else
                p += strlen(header);
        Buf b;
        buf_init(&b, SIZE_MAX);
        bool open = false;
        while (*p) {
                size_t n = strcspn(p, "\n");
                size_t len = n + (p[n] == '\n');
                /* A frame is "  File …" with its indented lines (the code,
                 * 3.11's carets); the exception's line ends the frames. */
                bool frame = startswith(p, "  File ");
                if (!frame && !(open && startswith(p, "  ")))
                        break;
                if (frame && open) {
                        json_array_append_new(frames, json_stringn(b.data, b.len));
                        b.len = 0;
                }
                open = true;
                if (buf_append(&b, p, n) < 0 || buf_append(&b, "\n", 1) < 0)
                        break;
                p += len;
        }
        if (open && b.len)
                json_array_append_new(frames, json_stringn(b.data, b.len));
        buf_free(&b);
        return frames;
}

/* Lambda's log tail (LogType: Tail), base64: the last 4 KB of what
 * Lambda logs for an invocation — START, the function's output, the
 * runtime's [ERROR] line and traceback when it raised, END and REPORT. */
static char *lambda_log_tail(Daemon *d, DRun *r) {
        const RunResult *res = r->result;
        size_t n;
        _cleanup_free_ char *log = drun_log_text(d, r, &n);
        Buf b;
        buf_init(&b, SIZE_MAX);
        _cleanup_free_ char *start = xasprintf("START RequestId: %s Version: %d\n", r->id, r->fn_version);
        buf_append(&b, start, strlen(start));
        buf_append(&b, log, n);
        if (res->status != RUN_SUCCEEDED) {
                /* As Lambda's runtime logs it: "[ERROR] Type: str(e)", or
                 * "[ERROR] Type" when str(e) is empty. */
                const char *type = res->error_type ?: "Error";
                _cleanup_free_ char *msg = lambda_error_message(res->status, type, res->error_message);
                _cleanup_free_ char *err = xasprintf("%s[ERROR] %s%s%s\n%s%s", n && log[n - 1] != '\n' ? "\n" : "",
                                                     type, *msg ? ": " : "", msg, res->traceback ?: "",
                                                     res->traceback && !endswith(res->traceback, "\n") ? "\n" : "");
                buf_append(&b, err, strlen(err));
        }
        /* Lambda's REPORT fields, those measured here: the duration, what
         * Lambda bills for it (whole ms, rounded up, of the duration as
         * shown) and the memory the invocation had (no Max Memory Used:
         * the instance's peak is not kept per invocation). */
        uint64_t hundredths = ((uint64_t) res->t_total + 5) / 10;
        _cleanup_free_ char *end = xasprintf("END RequestId: %s\nREPORT RequestId: %s\tDuration: %" PRIu64 ".%02" PRIu64
                                             " ms\tBilled Duration: %" PRIu64 " ms\tMemory Size: %" PRIu64 " MB\n",
                                             r->id, r->id, hundredths / 100, hundredths % 100,
                                             MAX((hundredths + 99) / 100, (uint64_t) 1), r->limits.memory_bytes >> 20);
        buf_append(&b, end, strlen(end));
        size_t from = b.len > 4096 ? b.len - 4096 : 0;
        char *tail = base64_encode(b.data + from, b.len - from);
        buf_free(&b);
        return tail;
}

static int dump_to_buf(const char *data, size_t n, void *p) {
        return buf_append(p, data, n) < 0 ? -1 : 0;
}

/* The Lambda context as JSON text, written directly (its schema is
 * fixed): a jansson object and json_dumps() cost ~25k instructions per
 * invoke (docs/internals/performance-log.md "Invoke path: round 7"), no printf for the
 * numbers (round 10b). An array of its inputs in LambdaContext's order
 * (runner.py _CONTEXT_FIELDS: name, version, ARN, memory, request id, log
 * group, deadline), not an object: the instance's JSON scanner read the
 * object's keys at ~15k instructions per invoke, the array's values at
 * ~7k ("The Lambda route's context (round 19)"). The log stream is the
 * request id: the runner fills it in. A client context (boto3's
 * ClientContext, an object) is an eighth value, only when given. */
static char *lambda_context_json(const FunctionRecord *f, const char *request_id, const RunLimits *l,
                                 const json_t *client_context) {
        uint64_t timeout = l->timeout_ms ? l->timeout_ms : RUN_DEFAULT_TIMEOUT_MS;
        uint64_t mem = l->memory_bytes ? l->memory_bytes : RUN_DEFAULT_MEMORY_BYTES;
        char version[16], mb[24], deadline[24];
        snprintf(version, sizeof(version), "%d", f->version);
        snprintf(mb, sizeof(mb), "%" PRIu64, mem >> 20);
        snprintf(deadline, sizeof(deadline), "%" PRIu64, now_realtime() / 1000 + timeout);
        /* The name twice more inside the ARN and the log group: escaped
         * as a whole string, so written into a small text first. */
        char arn[512], group[512];
        int na = snprintf(arn, sizeof(arn), "arn:aws:lambda:" LAMBDA_REGION ":" LAMBDA_ACCOUNT ":function:%s", f->name);
        int ng = snprintf(group, sizeof(group), "/aws/lambda/%s", f->name);
        if (na < 0 || (size_t) na >= sizeof(arn) || ng < 0 || (size_t) ng >= sizeof(group))
                return NULL;
        Buf b;
        buf_init(&b, SIZE_MAX);
        int r = json_buf_append_member(&b, "[", f->name);
        if (r >= 0)
                r = json_buf_append_member(&b, ",", version);
        if (r >= 0)
                r = json_buf_append_member(&b, ",", arn);
        if (r >= 0)
                r = buf_appends(&b, ",");
        if (r >= 0)
                r = buf_appends(&b, mb);
        if (r >= 0)
                r = json_buf_append_member(&b, ",", request_id);
        if (r >= 0)
                r = json_buf_append_member(&b, ",", group);
        if (r >= 0)
                r = buf_appends(&b, ",");
        if (r >= 0)
                r = buf_appends(&b, deadline);
        if (r >= 0 && client_context) {
                r = buf_appends(&b, ",");
                if (r >= 0 && json_dump_callback(client_context, dump_to_buf, &b, JSON_COMPACT) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = buf_append(&b, "]", 1);
        if (r < 0) {
                buf_free(&b);
                return NULL;
        }
        return buf_steal(&b);
}

/* Maps the event onto the function's parameters (docs/api.md): exactly
 * two -> handler(event, context); exactly one -> handler(event);
 * otherwise the event's keys are keyword arguments. -EINVAL when the
 * function takes named parameters and the event is not an object. */
int daemon_lambda_map_event(RunRequest *req, const FunctionRecord *f, json_t *event, const char *request_id,
                            const json_t *client_context) {
        LambdaCall rule = lambda_call_rule(f->params_json);
        if (rule == LAMBDA_CALL_KWARGS) {
                if (!json_is_object(event))
                        return -EINVAL;
                json_t *kw = json_object();
                const char *key;
                json_t *v;
                json_object_foreach(event, key, v)
                        json_object_set_new(kw, key, json_pack("{s:O}", "value", v));
                req->kwargs_json = json_dumps(kw, JSON_COMPACT);
                json_decref(kw);
                return req->kwargs_json ? 0 : -ENOMEM;
        }
        /* The context travels as RunSpec.context_json: the worker binds it
         * as the last positional argument and hands the function a
         * LambdaContext object (attributes and
         * get_remaining_time_in_millis()), as Lambda does. */
        if (rule == LAMBDA_CALL_EVENT_CONTEXT) {
                req->context_json = lambda_context_json(f, request_id, &req->limits, client_context);
                if (!req->context_json)
                        return -ENOMEM;
        }
        /* [{"value": EVENT}] around the event's text: no wrapper objects
         * to build and check for loops. */
        Buf b;
        buf_init(&b, SIZE_MAX);
        int r = buf_appends(&b, "[{\"value\":");
        if (r >= 0 && json_dump_callback(event, dump_to_buf, &b, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
                r = -ENOMEM;
        if (r >= 0)
                r = buf_appends(&b, "}]");
        if (r < 0) {
                buf_free(&b);
                return -ENOMEM;
        }
        req->args_json = buf_steal(&b);
        return 0;
}

/* A finished synchronous invocation as Lambda answers it: the return value,
 * or the error JSON with X-Amz-Function-Error (still 200). */
static struct MHD_Response *lambda_result(const DaemonCall *call, const RunResult *res, const char *request_id,
                                          unsigned *ret_status) {
        if (res->status == RUN_SUCCEEDED) {
                char *payload = NULL;
                if (res->value_json)
                        payload = xstrdup(res->value_json);
                else if (res->value_repr) {
                        json_t *s = json_string(res->value_repr);
                        payload = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
                        json_decref(s);
                }
                if (!payload)
                        payload = xstrdup("null");
                size_t n = strlen(payload);
                return daemon_text_response(200, "application/json", payload, n, ret_status);
        }
        /* Lambda's Python runtime: str(e), the class's name, the request
         * and traceback.format_list() of the exception's frames. */
        const char *type = res->error_type ? res->error_type : run_status_to_string(res->status);
        _cleanup_free_ char *msg = lambda_error_message(res->status, type, res->error_message);
        json_t *e = json_pack("{s:s, s:s, s:s, s:o}", "errorMessage", msg, "errorType", type, "requestId", request_id,
                              "stackTrace", lambda_stack_trace(res->traceback));
        struct MHD_Response *resp = daemon_call_json(call, 200, e, ret_status);
        daemon_response_headers(resp, (const char *const[]) { "X-Amz-Function-Error", "Unhandled", NULL });
        return resp;
}

/* A RequestResponse invocation waiting for its run (daemon_call_wait()). */
typedef struct LambdaWait {
        Daemon *d;
        DRun *r;                /* a reference */
        bool tail;              /* X-Amz-Log-Type: Tail */
        int version;
        bool latest; /* the call named $LATEST: the version it reports */
        char *request_id;
} LambdaWait;

static void lambda_wait_free(void *p) {
        LambdaWait *w = p;
        drun_unref(w->d, w->r);
        free(w->request_id);
        free(w);
}

/* X-Amz-Executed-Version: "$LATEST" when the call named it (Qualifier or
 * NAME:$LATEST), else the version's number. */
static void lambda_executed_version(char ver[static 16], int version, bool latest) {
        snprintf(ver, 16, latest ? "$LATEST" : "%d", version);
}

/* Answers a RequestResponse invocation once its run ended; NULL when the
 * client went away (the run goes on to its end, as Lambda's does), 504 at
 * max_wait_s. */
static struct MHD_Response *lambda_wait_then(const DaemonCall *call, void *p, DaemonWake why, unsigned *ret_status) {
        LambdaWait *w = p;
        Daemon *d = w->d;
        DRun *r = w->r;
        struct MHD_Response *resp;
        bool done = daemon_run_done(d, r);
        if (!done && why == DAEMON_WAKE_EVENT)
                return DAEMON_SUSPENDED;
        if (!done && why == DAEMON_WAKE_GONE) {
                /* Lambda lets an invocation whose caller hung up run to its
                 * end: boto3 reads for 60 s and then retries, and a long
                 * function cancelled at each retry would never finish. */
                log_info("run %s: its caller went away; the invocation goes on to its end", r->id);
                return NULL;
        }
        if (!done) {
                /* Its request id goes out with the 504: the record first. */
                daemon_run_reveal(d, r);
                resp = daemon_call_error(call, 504, "timeout", ret_status, "the invocation did not finish in %u s",
                                         d->cfg.max_wait_s);
        }
        else {
                _cleanup_free_ char *log_tail = w->tail ? lambda_log_tail(d, r) : NULL;
                /* Set before done, which daemon_run_done() read. */
                resp = lambda_result(call, r->result, w->request_id, ret_status);
                daemon_response_headers(resp, (const char *const[]) { "X-Amz-Log-Result", log_tail, NULL });
        }
        char ver[16];
        lambda_executed_version(ver, w->version, w->latest);
        daemon_response_headers(resp, (const char *const[]) { "X-Amz-Executed-Version", ver, "X-Amzn-RequestId",
                                                              w->request_id, NULL });
        return resp;
}

/* The Invoke API (docs/api.md "Invoke"). async: Lambda's older
 * InvokeAsync, an Event invocation whatever the headers say, answered
 * 202 {"Status": 202}. */
static struct MHD_Response *lambda_invoke(const DaemonCall *call, bool async, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *id = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        json_t *event = NULL, *client_context = NULL;
        struct MHD_Response *resp = NULL;
        FunctionRecord *f = NULL;

        const char *itype = async ? "Event" : daemon_call_header(call, "X-Amz-Invocation-Type");
        const char *ltype = async ? NULL : daemon_call_header(call, "X-Amz-Log-Type");
        if (!itype)
                itype = "RequestResponse";
        if (!streq(itype, "RequestResponse") && !streq(itype, "Event") && !streq(itype, "DryRun"))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not '%s'",
                                         itype);
        if (ltype && !streq(ltype, "Tail") && !streq(ltype, "None"))
                return daemon_call_error(call, 400, "bad_request", ret_status, "X-Amz-Log-Type must be Tail or None");
        f = lambda_function(call, ret_status, &resp);
        if (!f)
                return resp;

        caps.nul_anywhere = true; /* the event reaches the handler as it is */
        if (call->body_len == 0)
                event = json_object();
        else if (request_json_parse(call->body, call->body_len, &caps, (void **) &event, &err) < 0) {
                resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                         "Could not parse request body into json: %s", err);
                goto out;
        }
        /* boto3's ClientContext: base64 of a JSON object, at most 3583
         * bytes (Lambda's cap), the handler's context.client_context. */
        const char *cch = daemon_call_header(call, "X-Amz-Client-Context");
        if (cch) {
                _cleanup_free_ char *raw = NULL;
                size_t n = 0;
                if (strlen(cch) > LAMBDA_CLIENT_CONTEXT_MAX) {
                        resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                                 "X-Amz-Client-Context holds more than %d bytes",
                                                 LAMBDA_CLIENT_CONTEXT_MAX);
                        goto out;
                }
                if (base64_decode(cch, strlen(cch), &raw, &n) >= 0)
                        client_context = json_loadb(raw, n, 0, NULL);
                if (!json_is_object(client_context)) {
                        resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                                 "X-Amz-Client-Context must be a base64-encoded JSON object");
                        goto out;
                }
        }
        daemon_request_from_function(&req, f);
        resp = daemon_call_grant_limits(call, "", &req.limits, ret_status);
        if (resp)
                goto out;
        id = id_new("r");
        int k = daemon_lambda_map_event(&req, f, event, id, client_context);
        if (k < 0) {
                resp = k == -EINVAL ? daemon_call_error(call, 400, "bad_request", ret_status,
                                                        "function '%s' takes named parameters: the event must be a JSON object",
                                                        f->function ? f->function : f->name)
                                    : daemon_call_errno(call, k, "invoke", ret_status);
                goto out;
        }
        /* A dry run answers what the invoke would: the function, the
         * event and its fit to the calling rule, the client context and
         * the grant are checked; nothing runs. */
        if (streq(itype, "DryRun")) {
                resp = daemon_text_response(204, NULL, xstrdup(""), 0, ret_status);
                goto out;
        }

        DRun *r;
        req.answer_waits = !streq(itype, "Event");
        /* An Event the caller follows to its end (pysprinter invoke
         * --payload in the foreground): its failure is told, not retried
         * minutes later while the caller waits. */
        const char *cw = daemon_call_header(call, "X-Pysprinter-Caller-Waits");
        req.caller_waits = cw && streq(cw, "true");
        k = daemon_run_submit(d, id, call->tenant, &req, f->name, f->version, true, &r);
        if (k < 0) {
                resp = daemon_call_errno(call, k, "invoke", ret_status);
                goto out;
        }
        if (!streq(itype, "Event")) {
                LambdaWait *w = xcalloc(1, sizeof(LambdaWait));
                *w = (LambdaWait){ .d = d,
                                   .r = r,
                                   .tail = ltype && streq(ltype, "Tail"),
                                   .version = f->version,
                                   .latest = lambda_call_names_latest(call),
                                   .request_id = xstrdup(id) };
                resp = daemon_call_wait(call, DRUN_DONE_KEY(r), (usec_t) d->cfg.max_wait_s * USEC_PER_SEC, lambda_wait_then, w,
                                        lambda_wait_free);
                goto out;
        }
        const char *accepted = async ? "{\"Status\":202}" : "";
        resp = daemon_text_response(202, "application/json", xstrdup(accepted), strlen(accepted), ret_status);
        drun_unref(d, r);
        char ver[16];
        lambda_executed_version(ver, f->version, lambda_call_names_latest(call));
        daemon_response_headers(resp, (const char *const[]) { "X-Amz-Executed-Version", ver, "X-Amzn-RequestId", id,
                                                              NULL });
out:
        json_decref(event);
        json_decref(client_context);
        function_record_free(f);
        run_request_done(&req);
        return resp;
}

struct MHD_Response *daemon_api_lambda_invoke(const DaemonCall *call, unsigned *ret_status) {
        return lambda_invoke(call, false, ret_status);
}

/* POST /2014-11-13/functions/{name}/invoke-async/: boto3's invoke_async,
 * which AWS deprecated for Invoke with InvocationType Event but older
 * code still calls. */
struct MHD_Response *daemon_api_lambda_invoke_async(const DaemonCall *call, unsigned *ret_status) {
        return lambda_invoke(call, true, ret_status);
}

/* ---- what a deploy or a delete means for the schedules that fire it ---- */

/* daemon.h. */
bool daemon_arguments_refused(const RunResult *res) {
        return res->status != RUN_SUCCEEDED && res->exit_code != 0;
}

/* Calls fn(call, s, req, userdata) for each of the caller's schedules
 * that fire name (a function's, not a DAG's), req the invoke its fires
 * make (request_parse() of its invoke_json; one it cannot read is
 * skipped), which fn may change: it is freed after. */
static void function_schedules_each(const DaemonCall *call, const char *name,
                                    void (*fn)(const DaemonCall *, const ScheduleRecord *, RunRequest *, void *),
                                    void *userdata) {
        assert(call && name && fn);
        ScheduleRecord **v = NULL;
        size_t n = 0;
        if (store_schedule_list(call->d->store, call->tenant, &v, &n) < 0)
                return;
        RequestCaps caps = daemon_call_caps(call);
        for (size_t i = 0; i < n; i++) {
                const ScheduleRecord *s = v[i];
                if (s->dag_json || !s->invoke_json || !streq(s->function, name))
                        continue;
                RunRequest req = {};
                _cleanup_free_ char *err = NULL;
                if (request_parse(REQUEST_INVOKE, s->invoke_json, strlen(s->invoke_json), &caps, &req, &err) >= 0)
                        fn(call, s, &req, userdata);
                run_request_done(&req);
        }
        schedule_record_list_free(v, n);
}

typedef struct DeployCheck {
        const FunctionRecord *f;
        char *out;
} DeployCheck;

static void deploy_check_schedule(const DaemonCall *call, const ScheduleRecord *s, RunRequest *req, void *userdata) {
        DeployCheck *c = userdata;
        /* A pinned version's fires do not change with a deploy. */
        if (req->version != 0)
                return;
        RunResult *res = NULL;
        daemon_request_from_function(req, c->f);
        if (daemon_validate(call->d, call->tenant, req, true, &res) >= 0 && daemon_arguments_refused(res)) {
                char *line = xasprintf("%swarning: schedule '%s' fires %s with arguments version %d "
                                       "refuses, so each of its fires will end invalid: %s: %s\n",
                                       c->out ?: "", s->name, c->f->name, c->f->version,
                                       res->error_type ?: "ValidationError",
                                       res->error_message ?: "the arguments do not fit the function");
                free(c->out);
                c->out = line;
        }
        run_result_free(res);
}

/* daemon.h. */
char *daemon_function_deploy_schedule_warnings(const DaemonCall *call, const FunctionRecord *f) {
        assert(call && f && f->name);
        DeployCheck c = { .f = f };
        function_schedules_each(call, f->name, deploy_check_schedule, &c);
        return c.out;
}

typedef struct VersionPins {
        int version;
        char *out;
} VersionPins;

static void version_pin_add(const DaemonCall *call, const ScheduleRecord *s, RunRequest *req, void *userdata) {
        VersionPins *p = userdata;
        if (req->version != p->version)
                return;
        char *more = xasprintf("%s%s'%s'", p->out ?: "", p->out ? ", " : "", s->name);
        free(p->out);
        p->out = more;
}

/* The schedules pinned to version of the caller's name (`schedule add
 * NAME::VERSION`, the API's `version`), as "'a', 'b'", or NULL: what a
 * Lambda alias is to a version, a reference its delete must not leave
 * dangling. */
static char *function_version_pins(const DaemonCall *call, const char *name, int version) {
        VersionPins p = { .version = version };
        function_schedules_each(call, name, version_pin_add, &p);
        return p.out;
}

/* daemon.h. */
char *daemon_function_delete_schedule_warnings(const DaemonCall *call, const char *name) {
        assert(call && name);
        ScheduleRecord **v = NULL;
        size_t n = 0;
        if (store_schedule_list(call->d->store, call->tenant, &v, &n) < 0)
                return NULL;
        char *out = NULL;
        for (size_t i = 0; i < n; i++)
                if (!v[i]->dag_json && streq(v[i]->function, name)) {
                        char *line = xasprintf("%swarning: schedule '%s' fires %s: its fires start nothing until %s "
                                               "is deployed again (schedule rm or pause it)\n",
                                               out ?: "", v[i]->name, name, name);
                        free(out);
                        out = line;
                }
        schedule_record_list_free(v, n);
        return out;
}

/* ---- aliases (docs/api.md "Aliases") ------------------------------------------------ */

/* The one write of an alias, native and Lambda: alias of the caller's
 * function name at version (0: the one it has, UpdateAlias without
 * FunctionVersion), description (NULL: the one it has, "" on a new one).
 * *ret the alias as stored; negative errno as store_function_alias_put()
 * (-EINVAL: no alias name). */
static int alias_write(const DaemonCall *call, const char *name, const char *alias, int version,
                       const char *description, AliasPut mode, bool *ret_created, FunctionAlias *ret) {
        if (!function_alias_name_is_valid(alias))
                return -EINVAL;
        FunctionAlias old = {};
        _cleanup_free_ char *desc = NULL;
        if (version == 0 || !description) {
                int k = function_store_alias_get(call->d->functions, call->tenant, name, alias, &old);
                if (k == -ENOENT && mode == ALIAS_PUT_UPDATE)
                        return -ESRCH;
                if (k < 0 && k != -ENOENT)
                        return k;
                if (version == 0)
                        version = old.version;
                if (!description)
                        desc = old.description ? xstrdup(old.description) : NULL;
                function_alias_done(&old);
                if (version == 0)
                        return -EDOM; /* a new alias names its version */
        }
        const char *d = description ?: desc;
        int k = function_store_alias_put(call->d->functions, call->tenant, name, alias, version, d, mode, ret_created);
        if (k < 0)
                return k;
        return function_store_alias_get(call->d->functions, call->tenant, name, alias, ret);
}

/* Whether the caller has a function name; NULL, or the answer that it
 * has not. */
static struct MHD_Response *alias_function_check(const DaemonCall *call, const char *name, bool lambda,
                                                 unsigned *ret_status) {
        FunctionRecord *f = NULL;
        int k = function_name_is_valid(name) ? function_store_get(call->d->functions, call->tenant, name, 0, &f)
                                             : -ENOENT;
        function_record_free(f);
        if (k >= 0)
                return NULL;
        if (k != -ENOENT)
                return daemon_call_errno(call, k, "function", ret_status);
        if (lambda)
                return daemon_call_error(
                        call, 404, "not_found", ret_status,
                        "Function not found: arn:aws:lambda:" LAMBDA_REGION ":" LAMBDA_ACCOUNT ":function:%s", name);
        return daemon_function_missing(call, "", name, ret_status);
}

/* GET /v1/functions/{name}/aliases: {"aliases": [{name, version,
 * description, updated}]}, by name. */
struct MHD_Response *daemon_api_function_aliases(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        struct MHD_Response *resp = alias_function_check(call, name, false, ret_status);
        if (resp)
                return resp;
        json_t *a = function_aliases_json(call, name);
        if (!a)
                return daemon_call_errno(call, -EIO, "function", ret_status);
        return daemon_call_json(call, 200, json_pack("{s:o}", "aliases", a), ret_status);
}

/* An alias route's body (empty: {}), parsed as every body is, within the
 * operator's JSON caps (server.max_json_depth, max_json_values); NULL when
 * it is not JSON or is past them (the route says what it takes). */
static json_t *alias_body(const DaemonCall *call) {
        if (!call->body_len)
                return json_object();
        RequestCaps caps = daemon_call_caps(call);
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        if (request_json_parse(call->body, call->body_len, &caps, (void **) &j, &err) < 0)
                return NULL;
        return j;
}

/* GET, PUT {"version": N, "description": "…"} (create or move), DELETE
 * /v1/functions/{name}/aliases/{alias}. */
struct MHD_Response *daemon_api_function_alias(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2], *alias = call->seg[4];
        struct MHD_Response *resp = alias_function_check(call, name, false, ret_status);
        if (resp)
                return resp;
        if (!function_alias_name_is_valid(alias))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "'%s' cannot name an alias: an alias is " FUNCTION_ALIAS_RULE
                                         " ($LATEST and numbers name versions)",
                                         alias);
        FunctionAlias a = {};
        int k;
        if (streq(call->method, "DELETE")) {
                k = function_store_alias_delete(call->d->functions, call->tenant, name, alias);
                if (k == -ENOENT)
                        return daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no alias '%s'",
                                                 name, alias);
                if (k < 0)
                        return daemon_call_errno(call, k, "alias", ret_status);
                return daemon_call_json(call, 200,
                                        json_pack("{s:s, s:s, s:b}", "name", name, "alias", alias, "deleted", 1),
                                        ret_status);
        }
        if (streq(call->method, "PUT")) {
                json_t *j = alias_body(call);
                json_t *v = json_object_get(j, "version"), *d = json_object_get(j, "description");
                const char *bad =
                        !json_is_object(j) ? "the body must be a JSON object {\"version\": N}"
                        : !json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX
                                ? "field 'version' must be a positive integer (the version the alias points at)"
                        : d && !json_is_string(d)                 ? "field 'description' must be a string"
                        : d && strlen(json_string_value(d)) > 256 ? "field 'description' is longer than 256 bytes"
                                                                  : NULL;
                if (bad) {
                        json_decref(j);
                        return daemon_call_error(call, 400, "bad_request", ret_status, "%s", bad);
                }
                int version = (int) json_integer_value(v);
                _cleanup_free_ char *desc = xstrdup(d ? json_string_value(d) : "");
                json_decref(j);
                bool created = false;
                k = alias_write(call, name, alias, version, desc, ALIAS_PUT_ANY, &created, &a);
                if (k == -ENOENT)
                        return daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no version %d",
                                                 name, version);
                if (k < 0)
                        return daemon_call_errno(call, k, "alias", ret_status);
                json_t *out = alias_json(&a);
                json_object_set_new(out, "created", json_boolean(created));
                function_alias_done(&a);
                return daemon_call_json(call, created ? 201 : 200, out, ret_status);
        }
        k = function_store_alias_get(call->d->functions, call->tenant, name, alias, &a);
        if (k == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no alias '%s'", name,
                                         alias);
        if (k < 0)
                return daemon_call_errno(call, k, "alias", ret_status);
        json_t *out = alias_json(&a);
        function_alias_done(&a);
        return daemon_call_json(call, 200, out, ret_status);
}

/* Lambda's AliasConfiguration. RevisionId: the alias's last write, as a
 * UUID-shaped text (Lambda's changes at each update too). */
static json_t *lambda_alias_json(const char *name, const FunctionAlias *a) {
        _cleanup_free_ char *arn = lambda_arn(name);
        _cleanup_free_ char *full = xasprintf("%s:%s", arn, a->alias);
        char version[16], rev[40];
        snprintf(version, sizeof(version), "%d", a->version);
        uint64_t u = a->updated;
        snprintf(rev, sizeof(rev), "%08x-%04x-%04x-%04x-%012" PRIx64, (unsigned) (u >> 32),
                 (unsigned) ((u >> 16) & 0xffff), (unsigned) (u & 0xffff), (unsigned) (a->version & 0xffff),
                 (uint64_t) a->version);
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "AliasArn", full, "Name", a->alias, "FunctionVersion", version,
                         "Description", a->description ?: "", "RevisionId", rev);
}

/* The function name a Lambda alias route names (no qualifier); NULL with
 * Lambda's error otherwise. */
static char *lambda_alias_function(const DaemonCall *call, unsigned *ret_status, struct MHD_Response **ret_error) {
        _cleanup_free_ char *name = NULL, *qualifier = NULL;
        *ret_error = NULL;
        if (lambda_function_ref_parse(call->seg[2], &name, &qualifier) < 0) {
                *ret_error = daemon_call_error(call, 404, "not_found", ret_status, "Function not found: %s",
                                               call->seg[2]);
                return NULL;
        }
        if (qualifier) {
                *ret_error = daemon_call_lambda_error(
                        call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                        "An alias route takes a function without a qualifier, not '%s'", call->seg[2]);
                return NULL;
        }
        *ret_error = alias_function_check(call, name, true, ret_status);
        return *ret_error ? NULL : TAKE_PTR(name);
}

/* Lambda's answer to alias_write()'s or a read's k. */
static struct MHD_Response *lambda_alias_error(const DaemonCall *call, const char *name, const char *alias, int version,
                                               int k, unsigned *ret_status) {
        _cleanup_free_ char *arn = lambda_arn(name);
        switch (k) {
        case -EINVAL:
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "1 validation error detected: Value '%s' at 'name' failed to satisfy "
                                                "constraint: Member must satisfy regular expression pattern: "
                                                "(?!^[0-9]+$)([a-zA-Z0-9-_]+) and have length at most 128",
                                                alias);
        case -EDOM:
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "FunctionVersion must be a version number of the function");
        case -ENOENT:
                return daemon_call_error(call, 404, "not_found", ret_status, "Function not found: %s:%d", arn, version);
        case -ESRCH:
                return daemon_call_error(call, 404, "not_found", ret_status, "Alias not found: %s:%s", arn, alias);
        case -EEXIST:
                return daemon_call_error(call, 409, "conflict", ret_status, "Alias already exists: %s:%s", arn, alias);
        default:
                return daemon_call_errno(call, k, "alias", ret_status);
        }
}

/* A Lambda body's FunctionVersion: 0 absent, -1 not a version number. */
static int lambda_body_version(json_t *j) {
        json_t *v = json_object_get(j, "FunctionVersion");
        if (!v)
                return 0;
        int version = 0;
        if (!json_is_string(v) || version_parse(json_string_value(v), &version) < 0 || version == 0)
                return -1;
        return version;
}

/* CreateAlias: POST /2015-03-31/functions/{name}/aliases {Name,
 * FunctionVersion, Description} (201); ListAliases: GET …/aliases
 * [?FunctionVersion=N] {"Aliases": […]}. */
struct MHD_Response *daemon_api_lambda_aliases(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        _cleanup_free_ char *name = lambda_alias_function(call, ret_status, &resp);
        if (!name)
                return resp;
        if (streq(call->method, "GET")) {
                FunctionAlias *v = NULL;
                size_t n = 0;
                int k = function_store_alias_list(call->d->functions, call->tenant, name, &v, &n);
                if (k < 0)
                        return daemon_call_errno(call, k, "alias", ret_status);
                const char *fv = daemon_call_query(call, "FunctionVersion");
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                        char num[16];
                        snprintf(num, sizeof(num), "%d", v[i].version);
                        if (!fv || streq(fv, num))
                                json_array_append_new(a, lambda_alias_json(name, &v[i]));
                }
                function_alias_list_free(v, n);
                return daemon_call_json(call, 200, json_pack("{s:o}", "Aliases", a), ret_status);
        }
        json_t *j = alias_body(call);
        json_t *an = json_object_get(j, "Name"), *d = json_object_get(j, "Description");
        int version = lambda_body_version(j);
        if (!json_is_object(j) || !json_is_string(an) || version <= 0 || (d && !json_is_string(d))) {
                json_decref(j);
                return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException", ret_status,
                                                "CreateAlias takes {\"Name\": ALIAS, \"FunctionVersion\": \"N\", "
                                                "\"Description\": TEXT}");
        }
        _cleanup_free_ char *alias = xstrdup(json_string_value(an));
        _cleanup_free_ char *desc = xstrdup(d ? json_string_value(d) : "");
        json_decref(j);
        FunctionAlias a = {};
        int k = alias_write(call, name, alias, version, desc, ALIAS_PUT_CREATE, NULL, &a);
        if (k < 0)
                return lambda_alias_error(call, name, alias, version, k, ret_status);
        json_t *out = lambda_alias_json(name, &a);
        function_alias_done(&a);
        return daemon_call_json(call, 201, out, ret_status);
}

/* GetAlias (GET), UpdateAlias (PUT {FunctionVersion, Description}, each
 * optional), DeleteAlias (DELETE, 204) on /2015-03-31/functions/{name}/
 * aliases/{alias}. */
struct MHD_Response *daemon_api_lambda_alias(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *resp;
        _cleanup_free_ char *name = lambda_alias_function(call, ret_status, &resp);
        if (!name)
                return resp;
        const char *alias = call->seg[4];
        FunctionAlias a = {};
        int k;
        if (!function_alias_name_is_valid(alias))
                return lambda_alias_error(call, name, alias, 0, -EINVAL, ret_status);
        if (streq(call->method, "DELETE")) {
                /* Lambda's DeleteAlias of an alias that is not there is a
                 * 204 too. */
                k = function_store_alias_delete(call->d->functions, call->tenant, name, alias);
                if (k < 0 && k != -ENOENT)
                        return daemon_call_errno(call, k, "alias", ret_status);
                return daemon_text_response(204, NULL, xstrdup(""), 0, ret_status);
        }
        int version = 0;
        if (streq(call->method, "PUT")) {
                json_t *j = alias_body(call);
                json_t *d = json_object_get(j, "Description");
                version = lambda_body_version(j);
                if (!json_is_object(j) || version < 0 || (d && !json_is_string(d))) {
                        json_decref(j);
                        return daemon_call_lambda_error(call, 400, "bad_request", "InvalidParameterValueException",
                                                        ret_status,
                                                        "UpdateAlias takes {\"FunctionVersion\": \"N\", "
                                                        "\"Description\": TEXT}");
                }
                _cleanup_free_ char *desc = d ? xstrdup(json_string_value(d)) : NULL;
                json_decref(j);
                k = alias_write(call, name, alias, version, desc, ALIAS_PUT_UPDATE, NULL, &a);
        } else
                k = function_store_alias_get(call->d->functions, call->tenant, name, alias, &a);
        if (k == -ENOENT && version == 0)
                k = -ESRCH;
        if (k < 0)
                return lambda_alias_error(call, name, alias, version, k, ret_status);
        json_t *out = lambda_alias_json(name, &a);
        function_alias_done(&a);
        return daemon_call_json(call, 200, out, ret_status);
}
