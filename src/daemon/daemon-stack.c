/* Stacks (docs/stack.md): POST /v1/stacks deploys a set of functions with
 * their limits, env, secrets, schedules and URLs in one store transaction:
 * all or nothing.
 *
 * The CLI has already checked the stack file against docs/stack.schema.json
 * and read the function files; the body is
 *   {"functions": [DEPLOY BODY…], "schedules": [SCHEDULE…],
 *    "prune": bool, "dry_run": bool}
 * where each DEPLOY BODY is what POST /v1/functions takes (with "url"
 * false, true or "public": a stack says whether a function has a URL).
 *
 * Every check happens before the first write: each function as a deploy
 * checks it (daemon_function_prepare: limits 403, secrets 404, validation
 * 422), each schedule's spec, time zone and fields (400), target (404) and
 * its arguments and limits as `schedule add` checks them
 * (daemon_schedule_check: 422, 403), against the stack's version of its
 * function. Then the plan — created/updated/unchanged/deleted per function,
 * schedule and endpoint — is applied in one transaction (store_tx_begin),
 * or only returned with dry_run. */
#include <assert.h>
#include <jansson.h>
#include <microhttpd.h>

#include "daemon.h"
#include "pkg.h"

typedef enum StackKind {
        STACK_FUNCTION,
        STACK_SCHEDULE,
        STACK_ENDPOINT,
} StackKind;

typedef enum StackAction {
        STACK_CREATED,
        STACK_UPDATED,
        STACK_UNCHANGED,
        STACK_DELETED,
} StackAction;

static const char *const kind_names[] = { "function", "schedule", "endpoint" };
static const char *const action_names[] = { "created", "updated", "unchanged", "deleted" };

/* One line of the plan. f/s/mode: what to write (NULL/none for a delete). */
typedef struct StackChange {
        StackKind kind;
        StackAction action;
        char *name;
        FunctionRecord *f;      /* STACK_FUNCTION created/updated/unchanged: the stack's version */
        ScheduleRecord *s;      /* STACK_SCHEDULE created/updated */
        int mode;               /* STACK_ENDPOINT: 1 token, 2 public */
        bool timing;            /* STACK_SCHEDULE updated: its spec, zone or pause changed */
        bool gone;              /* a delete that found nothing to delete (plan_apply): not reported */
} StackChange;

/* The cap on a stack's warnings (each file's are at most 100 lines: runner.py). */
#define STACK_MAX_WARNING_BYTES (4 << 20)

typedef struct StackPlan {
        StackChange *v;
        size_t n;
        Buf warnings; /* the functions' parser warnings, in the stack's order */
} StackPlan;

static void plan_add(StackPlan *p, StackKind kind, StackAction action, const char *name) {
        p->v = xrealloc(p->v, (p->n + 1) * sizeof(StackChange));
        p->v[p->n++] = (StackChange) { .kind = kind, .action = action, .name = xstrdup(name) };
}

static StackChange *plan_last(StackPlan *p) {
        return &p->v[p->n - 1];
}

static void plan_done(StackPlan *p) {
        for (size_t i = 0; i < p->n; i++) {
                free(p->v[i].name);
                function_record_free(p->v[i].f);
                schedule_record_free(p->v[i].s);
        }
        free(p->v);
        buf_free(&p->warnings);
}

static StackChange *plan_find(const StackPlan *p, StackKind kind, const char *name) {
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].kind == kind && streq(p->v[i].name, name))
                        return &p->v[i];
        return NULL;
}

static bool plan_has(const StackPlan *p, StackKind kind, const char *name) {
        return plan_find(p, kind, name) != NULL;
}

/* Stored JSON texts compared as values (key order and spacing aside). */
static bool json_text_equal(const char *a, const char *b) {
        json_t *x = json_parse_or_string(a), *y = json_parse_or_string(b);
        bool eq = json_equal(x, y) || (json_is_null(x) && json_is_null(y));
        json_decref(x);
        json_decref(y);
        return eq;
}

static bool str_equal(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

static int string_cmp(const void *a, const void *b) {
        return strcmp(json_string_value(*(json_t *const *) a), json_string_value(*(json_t *const *) b));
}

/* The env_json's secret names in order, so that two lists of the same
 * names compare equal: an env var per name, whose order means nothing. */
static json_t *env_sorted(const char *text) {
        json_t *e = json_parse_or_string(text), *names = json_object_get(e, "secrets");
        size_t n = json_array_size(names), i;
        if (n < 2)
                return e;
        json_t **v = xcalloc(n, sizeof *v), *sorted = json_array();
        for (i = 0; i < n; i++)
                v[i] = json_is_string(json_array_get(names, i)) ? json_array_get(names, i) : NULL;
        bool all = true;
        for (i = 0; i < n; i++)
                all = all && v[i];
        if (all) {
                qsort(v, n, sizeof *v, string_cmp);
                for (i = 0; i < n; i++)
                        json_array_append(sorted, v[i]);
                json_object_set(e, "secrets", sorted);
        }
        json_decref(sorted);
        free(v);
        return e;
}

/* The same env and secrets: secrets as a set (the env is a JSON object,
 * compared as one already). `secrets: [B, A]` after `[A, B]` made a new
 * version, where reordering `env` did not. */
static bool env_same(const char *a, const char *b) {
        json_t *x = env_sorted(a), *y = env_sorted(b);
        bool eq = json_equal(x, y) || (json_is_null(x) && json_is_null(y));
        json_decref(x);
        json_decref(y);
        return eq;
}

/* The same file name; or f's path (fns/add.py, a stack's file relative to
 * the stack file) where old has its base name (add.py): what a stack sent
 * before it sent the path, and `deploy FILE` sends. Else the first stack
 * deploy after the CLI's upgrade made a new version of every function. */
static bool filename_same(const char *old, const char *f) {
        return str_equal(old, f) || (old && f && streq(old, path_base_name(f)));
}

/* "Unchanged": the same source bytes and the same settings. */
static bool function_same(const FunctionRecord *old, const FunctionRecord *f) {
        return old->source_len == f->source_len && memcmp(old->source, f->source, f->source_len) == 0 &&
               filename_same(old->filename, f->filename) && str_equal(old->function, f->function) &&
               str_equal(old->description, f->description) &&
               json_text_equal(old->requirements_json, f->requirements_json) &&
               /* What they resolve to now: a new release on the index
                * is a new version, as any deploy picks it up; the same
                * files served from other URLs (a moved index, signed
                * URLs that expire) are not. */
               pkg_lock_json_same_files(old->lock_json, f->lock_json) &&
               json_text_equal(old->limits_json, f->limits_json) && env_same(old->env_json, f->env_json);
}

static bool schedule_same(const ScheduleRecord *old, const ScheduleRecord *s) {
        return str_equal(old->function, s->function) && str_equal(old->spec, s->spec) &&
               str_equal(old->tz ?: "UTC", s->tz) && json_text_equal(old->invoke_json, s->invoke_json) &&
               old->catch_up == s->catch_up && old->allow_overlap == s->allow_overlap && old->paused == s->paused;
}

/* Whether s fires at other times than old (or old is none): its next fire
 * is then s's own, else the stored one stays. */
static bool schedule_timing_changed(const ScheduleRecord *old, const ScheduleRecord *s) {
        return !old || !str_equal(old->spec, s->spec) || !str_equal(old->tz ?: "UTC", s->tz) ||
               old->paused != s->paused;
}

/* ---- reading the body ------------------------------------------------------ */

static bool field_in(const char *key, const char *const *list) {
        for (size_t i = 0; list[i]; i++)
                if (streq(key, list[i]))
                        return true;
        return false;
}

/* One schedule of the body as a record of tenant (times left to the
 * caller), read as POST /v1/schedules reads it; the message names the
 * schedule. A stack's schedules target its functions, not DAG files. */
static int schedule_read(const DaemonCall *call, json_t *j, ScheduleRecord **ret, char **ret_error) {
        const char *name = json_string_value(json_object_get(j, "name"));
        if (!json_is_object(j) || !name || !function_name_is_valid(name)) {
                *ret_error = xstrdup("each schedule needs a 'name' of [A-Za-z0-9_-]{1,64}");
                return -EINVAL;
        }
        if (json_object_get(j, "dag")) {
                *ret_error = xasprintf("schedule '%s': a stack's schedules fire its functions ('function'); "
                                       "schedule a DAG file with `pysprinter schedule add --dag`",
                                       name);
                return -EINVAL;
        }
        _cleanup_free_ char *err = NULL;
        ScheduleRecord *s = xcalloc(1, sizeof(ScheduleRecord));
        int k = daemon_schedule_from_body(call, j, s, &err);
        if (k < 0) {
                *ret_error = xasprintf("schedule '%s': %s", name, err ?: "invalid");
                schedule_record_free(s);
                return k;
        }
        s->tenant = xstrdup(call->tenant);
        *ret = s;
        return 0;
}

/* The next fire time of s strictly after now; -EINVAL when it never
 * fires. */
static int schedule_first_fire(ScheduleRecord *s, int64_t now) {
        return daemon_schedule_next(s, now, &s->next_fire) < 0 ? -EINVAL : 0;
}

/* ---- the plan -------------------------------------------------------------- */

/* A function of the body: checked as a deploy, then compared with the
 * latest stored version (and its endpoint). NULL or the error response. */
static struct MHD_Response *plan_function(const DaemonCall *call, json_t *body, StackPlan *p, char ***names,
                                          unsigned *ret_status) {
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT), *err = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        FunctionRecord *f = NULL, *old = NULL;
        _cleanup_free_ char *warnings = NULL;
        struct MHD_Response *resp = NULL;
        int k = text ? request_parse(REQUEST_DEPLOY, text, strlen(text), &caps, &req, &err) : -EINVAL;
        if (k < 0) {
                /* Which of the stack's functions, when it has a name: the
                 * request's words alone ("fields 'secrets' and 'env' hold
                 * at most 64 entries each") named none. */
                const char *fname = json_string_value(json_object_get(body, "name"));
                resp = fname ? daemon_call_error(call, 400, "bad_request", ret_status, "function '%s': %s", fname,
                                                 err ?: "invalid function")
                             : daemon_call_error(call, 400, "bad_request", ret_status, "%s", err ?: "invalid function");
                goto out;
        }
        if (strv_contains(*names, req.name)) {
                resp = daemon_call_error(call, 400, "bad_request", ret_status, "function '%s' is named twice",
                                         req.name);
                goto out;
        }
        *names = strv_append(*names, req.name);
        resp = daemon_function_prepare(call, &req, true, &f, &warnings, ret_status);
        if (resp)
                goto out;
        /* Each file's own lines name it ("fns/x.py:3: SyntaxWarning: …"). */
        if (warnings && buf_appends(&p->warnings, warnings) < 0) {
                resp = daemon_call_error(call, 413, "payload_too_large", ret_status,
                                         "function '%s': the stack's parser warnings exceed %d MiB", req.name,
                                         STACK_MAX_WARNING_BYTES >> 20);
                goto out;
        }
        k = store_function_get(call->d->store, call->tenant, req.name, 0, &old);
        if (k < 0 && k != -ENOENT) {
                resp = daemon_call_errno(call, k, "function", ret_status);
                goto out;
        }
        plan_add(p, STACK_FUNCTION, !old ? STACK_CREATED : function_same(old, f) ? STACK_UNCHANGED : STACK_UPDATED,
                 req.name);
        /* Kept unchanged too: the stack's schedules are checked against
         * it (plan_apply writes only what changed). */
        plan_last(p)->f = TAKE_PTR(f);

        /* Its endpoint: the stack says whether there is one. */
        int mode = req.url == ENDPOINT_PUBLIC ? 2 : req.url == ENDPOINT_TOKEN ? 1 : 0, had = 0;
        k = store_endpoint_get(call->d->store, call->tenant, req.name, &had);
        if (k < 0 && k != -ENOENT) {
                resp = daemon_call_errno(call, k, "endpoint", ret_status);
                goto out;
        }
        if (had || mode) {
                plan_add(p, STACK_ENDPOINT, !had ? STACK_CREATED : !mode ? STACK_DELETED
                                                : had == mode   ? STACK_UNCHANGED
                                                                : STACK_UPDATED,
                         req.name);
                plan_last(p)->mode = mode;
        } else {
                /* None, as the stack says: a delete that finds nothing
                 * unless a deploy --url gave it one before the
                 * transaction (change_write_in_tx), not reported then. */
                plan_add(p, STACK_ENDPOINT, STACK_DELETED, req.name);
                plan_last(p)->gone = true;
        }
out:
        function_record_free(f);
        function_record_free(old);
        run_request_done(&req);
        return resp;
}

static struct MHD_Response *plan_schedule(const DaemonCall *call, json_t *body, char **fn_names, StackPlan *p,
                                          unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        ScheduleRecord *s = NULL, *old = NULL;
        FunctionRecord *f = NULL;
        int k = schedule_read(call, body, &s, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        if (plan_has(p, STACK_SCHEDULE, s->name)) {
                struct MHD_Response *resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                                              "schedule '%s' is named twice", s->name);
                schedule_record_free(s);
                return resp;
        }
        /* Its function: one of the stack's, or one deployed already. */
        if (!strv_contains(fn_names, s->function) &&
            store_function_get(call->d->store, call->tenant, s->function, 0, &f) < 0) {
                struct MHD_Response *resp = daemon_call_error(
                        call, 404, "not_found", ret_status,
                        "schedule '%s': function '%s' is neither in the stack nor deployed", s->name, s->function);
                schedule_record_free(s);
                return resp;
        }
        function_record_free(f);
        /* Its arguments and limits, as `schedule add` checks them (the same
         * helper), against the version the stack deploys when it is one of
         * the stack's: every one, unchanged ones too, for their function
         * may be what changed. */
        StackChange *fc = plan_find(p, STACK_FUNCTION, s->function);
        _cleanup_free_ char *prefix = xasprintf("schedule '%s': ", s->name);
        struct MHD_Response *refused = daemon_schedule_check(call, s, fc ? fc->f : NULL, prefix, ret_status);
        if (refused) {
                schedule_record_free(s);
                return refused;
        }
        int64_t now = daemon_schedules_now();
        k = store_schedule_get(call->d->store, call->tenant, s->name, &old);
        if (k < 0 && k != -ENOENT) {
                schedule_record_free(s);
                return daemon_call_errno(call, k, "schedule", ret_status);
        }
        StackAction a = !old ? STACK_CREATED : schedule_same(old, s) ? STACK_UNCHANGED : STACK_UPDATED;
        /* Its history (last fire, last run) stays: the store's update
         * keeps the stored one, which a fire between this read and the
         * write may have moved; so is its next fire unless its timing (or
         * pause) changed: written back from this read, it ran that fire
         * time a second time. */
        if (a == STACK_UPDATED)
                s->created = old->created;
        bool timing = schedule_timing_changed(old, s);
        schedule_record_free(old);
        if (a != STACK_UNCHANGED && timing && schedule_first_fire(s, now) < 0) {
                struct MHD_Response *resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                                              "schedule '%s' never fires", s->name);
                schedule_record_free(s);
                return resp;
        }
        if (!s->created)
                s->created = now_realtime();
        plan_add(p, STACK_SCHEDULE, a, s->name);
        plan_last(p)->timing = timing;
        /* Kept unchanged too: plan_apply plans it again in its
         * transaction, and may then write it. */
        plan_last(p)->s = s;
        return NULL;
}

/* --prune: the tenant's functions the stack does not name go, with their
 * endpoints; so do the function schedules the stack does not list. DAG
 * schedules stay: a stack cannot list one (schedule_read), so pruning
 * them deleted every one at each deploy, whatever the file said. */
static int plan_prune(const DaemonCall *call, char **fn_names, StackPlan *p) {
        FunctionRecord **fv = NULL;
        ScheduleRecord **sv = NULL;
        size_t nf = 0, ns = 0;
        int k = store_function_list(call->d->store, call->tenant, &fv, &nf);
        if (k < 0)
                return k;
        for (size_t i = 0; i < nf; i++) {
                if (strv_contains(fn_names, fv[i]->name))
                        continue;
                int mode;
                plan_add(p, STACK_FUNCTION, STACK_DELETED, fv[i]->name);
                if (store_endpoint_get(call->d->store, call->tenant, fv[i]->name, &mode) >= 0)
                        plan_add(p, STACK_ENDPOINT, STACK_DELETED, fv[i]->name);
        }
        function_record_list_free(fv, nf);
        k = store_schedule_list(call->d->store, call->tenant, &sv, &ns);
        if (k < 0)
                return k;
        for (size_t i = 0; i < ns; i++)
                if (!sv[i]->dag_json && !plan_has(p, STACK_SCHEDULE, sv[i]->name))
                        plan_add(p, STACK_SCHEDULE, STACK_DELETED, sv[i]->name);
        schedule_record_list_free(sv, ns);
        return 0;
}

/* ---- applying it --------------------------------------------------------------- */

/* c planned again inside the transaction, against what is stored now.
 * The plan was made before it, while the stack's files were validated
 * (a worker's time), and another deploy, `schedule add` or `functions rm`
 * may have written meanwhile: a function planned "unchanged" then kept
 * the other deploy's code while this stack said it deployed its own, and
 * a delete that found the item gone failed the whole stack. A delete of
 * something gone is marked gone (not reported); the rest get the action
 * that makes the stored state the stack's. */
static int change_replan_in_tx(Store *st, const char *tenant, StackChange *c) {
        int k = 0;
        if (c->action == STACK_DELETED)
                return 0; /* the delete itself says whether there was one */
        if (c->kind == STACK_FUNCTION) {
                FunctionRecord *old = NULL;
                k = store_function_get_in_tx(st, tenant, c->name, &old);
                if (k >= 0 || k == -ENOENT)
                        c->action = !old ? STACK_CREATED : function_same(old, c->f) ? STACK_UNCHANGED : STACK_UPDATED;
                function_record_free(old);
        } else if (c->kind == STACK_ENDPOINT) {
                int had = 0;
                k = store_endpoint_get_in_tx(st, tenant, c->name, &had);
                if (k >= 0 || k == -ENOENT)
                        c->action = !had ? STACK_CREATED : had == c->mode ? STACK_UNCHANGED : STACK_UPDATED;
        } else {
                ScheduleRecord *old = NULL;
                k = store_schedule_get_in_tx(st, tenant, c->name, &old);
                if (k >= 0 || k == -ENOENT) {
                        c->action = !old ? STACK_CREATED : schedule_same(old, c->s) ? STACK_UNCHANGED : STACK_UPDATED;
                        c->timing = schedule_timing_changed(old, c->s);
                        if (old)
                                c->s->created = old->created;
                        /* Planned unchanged or not timing: its next fire
                         * was not computed. */
                        if (c->action != STACK_UNCHANGED && c->timing &&
                            daemon_schedule_next(c->s, daemon_schedules_now(), &c->s->next_fire) < 0)
                                k = -EINVAL;
                }
                schedule_record_free(old);
        }
        return k == -ENOENT ? 0 : k;
}

/* One change written inside the transaction (unchanged: nothing). */
static int change_write_in_tx(Store *st, const char *tenant, StackChange *c) {
        int k = 0;
        switch (c->kind) {
        case STACK_FUNCTION:
                if (c->action == STACK_DELETED)
                        k = store_function_delete_in_tx(st, tenant, c->name);
                else if (c->action != STACK_UNCHANGED)
                        k = store_function_put_in_tx(st, c->f, &c->f->version);
                break;
        case STACK_ENDPOINT:
                if (c->action == STACK_DELETED) {
                        int had = 0;
                        k = store_endpoint_get_in_tx(st, tenant, c->name, &had);
                        if (k >= 0) {
                                c->gone = false;
                                k = store_endpoint_put_in_tx(st, tenant, c->name, 0);
                        }
                } else if (c->action != STACK_UNCHANGED)
                        k = store_endpoint_put_in_tx(st, tenant, c->name, c->mode);
                break;
        case STACK_SCHEDULE:
                if (c->action == STACK_DELETED)
                        k = store_schedule_delete_in_tx(st, tenant, c->name);
                else if (c->action == STACK_CREATED)
                        k = store_schedule_insert_in_tx(st, c->s);
                else if (c->action == STACK_UPDATED)
                        k = store_schedule_update_in_tx(st, c->s, c->timing);
                break;
        default:
                assert(false);
                return -EINVAL;
        }
        if (k == -ENOENT && c->action == STACK_DELETED) {
                c->gone = true;
                k = 0;
        }
        return k;
}

/* Every write of the plan inside one transaction, each change planned
 * again there first (change_replan_in_tx): deletes first (a schedule,
 * then what it fired), then functions, endpoints, schedules. */
static int plan_apply(Store *st, FunctionStore *fns, const char *tenant, StackPlan *p) {
        /* The functions table is written behind the in-memory versions'
         * back: emptied before (no lookup keeps what it reads meanwhile)
         * and after (nothing read before the commit is served after). */
        function_cache_invalidate(fns);
        int k = store_tx_begin(st);
        if (k < 0) {
                function_cache_invalidate(fns);
                return k;
        }
        for (size_t i = 0; i < p->n && k >= 0; i++)
                k = change_replan_in_tx(st, tenant, &p->v[i]);
        for (int pass = 0; pass < 2 && k >= 0; pass++)
                for (StackKind kind = STACK_FUNCTION; kind <= STACK_ENDPOINT && k >= 0; kind++)
                        for (size_t i = 0; i < p->n && k >= 0; i++) {
                                StackChange *c = &p->v[i];
                                if (c->kind == kind && (c->action == STACK_DELETED) == (pass == 0))
                                        k = change_write_in_tx(st, tenant, c);
                        }
        int e = store_tx_end(st, k >= 0);
        function_cache_invalidate(fns);
        return k < 0 ? k : e;
}

static int change_cmp(const void *a, const void *b) {
        const StackChange *x = a, *y = b;
        if (x->kind != y->kind)
                return (int) x->kind - (int) y->kind;
        return strcmp(x->name, y->name);
}

struct MHD_Response *daemon_api_stack(const DaemonCall *call, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        _cleanup_strv_free_ char **fn_names = NULL;
        void *parsed = NULL;
        RequestCaps caps = daemon_call_caps(call);
        /* A stack is one SQLite transaction over functions, schedules and
         * URLs; in a cluster the functions are Redis's (d->functions), which
         * that transaction cannot cover: refused rather than half shared. */
        if (call->d->cluster)
                return daemon_call_error(call, 501, "not_implemented", ret_status,
                                         "stacks are not supported in cluster mode (functions live in Redis): "
                                         "deploy the functions one by one (docs/cluster.md)");
        int k = request_json_parse(call->body ?: "", call->body_len, &caps, &parsed, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        json_t *j = parsed, *functions = json_object_get(j, "functions"), *schedules = json_object_get(j, "schedules");
        const char *key;
        json_t *v;
        struct MHD_Response *resp = NULL;
        StackPlan p = {};
        buf_init(&p.warnings, STACK_MAX_WARNING_BYTES);
        if (!json_is_object(j) || !json_is_array(functions) || (schedules && !json_is_array(schedules))) {
                resp = daemon_call_error(call, 400, "bad_request", ret_status,
                                         "the body must be {\"functions\": [...], \"schedules\": [...]}");
                goto out;
        }
        json_object_foreach(j, key, v) if (!field_in(key, (const char *const[]) { "functions", "schedules", "prune",
                                                                                   "dry_run", NULL })) {
                resp = daemon_call_error(call, 400, "bad_request", ret_status, "unknown field '%s'", key);
                goto out;
        }
        /* Read as a deploy's fields are: a flag that is not a boolean
         * ("dry_run": "yes", 1) was taken for false, and the plan the
         * caller asked for was a deploy. */
        for (const char *const *flag = (const char *const[]){ "prune", "dry_run", NULL }; *flag; flag++)
                if ((v = json_object_get(j, *flag)) && !json_is_boolean(v)) {
                        resp = daemon_call_error(call, 400, "bad_request", ret_status, "field '%s' must be a boolean",
                                                 *flag);
                        goto out;
                }
        size_t i;
        json_array_foreach(functions, i, v) if ((resp = plan_function(call, v, &p, &fn_names, ret_status))) goto out;
        json_array_foreach(schedules, i, v) if ((resp = plan_schedule(call, v, fn_names, &p, ret_status))) goto out;
        if (json_is_true(json_object_get(j, "prune")) && (k = plan_prune(call, fn_names, &p)) < 0) {
                resp = daemon_call_errno(call, k, "stack", ret_status);
                goto out;
        }
        bool dry_run = json_is_true(json_object_get(j, "dry_run"));
        if (!dry_run) {
                /* The tenant's storage cap (daemon-quota.c): the code of
                 * every version the stack writes, its deletes not
                 * credited (a plan may change in the transaction). */
                uint64_t adding = 0;
                for (i = 0; i < p.n; i++)
                        if (p.v[i].kind == STACK_FUNCTION &&
                            (p.v[i].action == STACK_UPDATED || p.v[i].action == STACK_CREATED))
                                adding += p.v[i].f->source_len;
                daemon_stored_lock(call->d);
                k = daemon_stored_deploy_check(call->d, call->tenant, adding, &err);
                if (k >= 0)
                        k = plan_apply(call->d->store, call->d->functions, call->tenant, &p);
                daemon_stored_unlock(call->d);
                if (k == -EDQUOT) {
                        resp = daemon_call_error(call, 413, "payload_too_large", ret_status, "%s", err);
                        goto out;
                }
        }
        if (!dry_run && k < 0) {
                resp = daemon_call_errno(call, k, "stack", ret_status);
                goto out;
        }
        /* The stack's schedules fit the versions it deploys (checked
         * above); a schedule made by hand that fires one of them may not
         * (created ones too: a schedule outlives its function's rm): said
         * now, as `deploy FILE` says it. */
        for (i = 0; !dry_run && i < p.n; i++)
                if (p.v[i].kind == STACK_FUNCTION &&
                    (p.v[i].action == STACK_UPDATED || p.v[i].action == STACK_CREATED)) {
                        _cleanup_free_ char *w = daemon_function_deploy_schedule_warnings(call, p.v[i].f);
                        if (w)
                                (void) buf_appends(&p.warnings, w);
                }
        qsort(p.v, p.n, sizeof(StackChange), change_cmp);
        json_t *changes = json_array();
        for (i = 0; i < p.n; i++) {
                if (p.v[i].gone)
                        continue;
                json_t *c = json_pack("{s:s, s:s, s:s}", "action", action_names[p.v[i].action], "kind",
                                      kind_names[p.v[i].kind], "name", p.v[i].name);
                /* An endpoint the stack leaves in place carries its address,
                 * as a deploy's answer does ("url"): the user's next step. */
                if (p.v[i].kind == STACK_ENDPOINT && p.v[i].mode) {
                        _cleanup_free_ char *path = xasprintf("/fn/%s/%s", call->tenant, p.v[i].name);
                        json_object_set_new(c, "url",
                                            json_pack("{s:s, s:b}", "path", path, "public", p.v[i].mode == 2));
                }
                json_array_append_new(changes, c);
                /* Deleted functions' warm instances hold deleted code. */
                if (!dry_run && p.v[i].kind == STACK_FUNCTION && p.v[i].action == STACK_DELETED) {
                        _cleanup_free_ char *prefix = xasprintf("%s/%s@", call->tenant, p.v[i].name);
                        (void) engine_pool_retire(call->d->engine, prefix);
                }
        }
        json_t *ans = json_pack("{s:o, s:b}", "changes", changes, "dry_run", dry_run);
        /* As a deploy's answer carries them: the deployer's to see. */
        if (p.warnings.len)
                json_object_set_new(ans, "warnings", json_stringn(p.warnings.data, p.warnings.len));
        resp = daemon_call_json(call, 200, ans, ret_status);
out:
        plan_done(&p);
        json_decref(j);
        return resp;
}
