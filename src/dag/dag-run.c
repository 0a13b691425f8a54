/* Running a pipeline: validate every task, then a scheduler on the
 * caller's thread starts each task on its own thread (engine_run blocks)
 * once its dependencies succeeded, at most `concurrency` at once. Task
 * threads only change their task's fields under Dag.lock and signal; the
 * scheduler reports state changes, so callbacks never race. */
#include <assert.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>

#include "dag-internal.h"

#define TICK_MS 200
#define MAX_BACKOFF_MS (60ULL * 1000)

/* ---- argument building ---- */

typedef struct Lookup {
        Dag *d;
        json_t *placeholder; /* validation: what a task reference stands for */
} Lookup;

static json_t *lookup_ref(const Ref *r, void *ud, char **ret_error) {
        Lookup *l = ud;
        if (r->param) {
                json_t *v = json_object_get(l->d->params, r->task);
                if (!v)
                        *ret_error = xasprintf("unknown parameter '%s'", r->task);
                return v;
        }
        if (l->placeholder)
                return l->placeholder;
        for (size_t i = 0; i < l->d->n; i++) {
                Task *t = &l->d->tasks[i];
                if (!streq(t->name, r->task))
                        continue;
                /* Parsed when a dependent first asks (with d->lock held,
                 * as build_args() is): a leaf's result stays text alone. */
                if (!t->value && t->value_json)
                        t->value = json_loads(t->value_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                json_t *v = t->value;
                if (!v) {
                        *ret_error = xasprintf("task '%s' has no result", t->name);
                        return NULL;
                }
                for (char **k = r->path; k && *k; k++) {
                        json_t *next = NULL;
                        if (json_is_object(v))
                                next = json_object_get(v, *k);
                        else if (json_is_array(v)) {
                                char *end;
                                errno = 0;
                                long idx = strtol(*k, &end, 10);
                                if (!errno && !*end && end != *k) {
                                        if (idx < 0)
                                                idx += (long) json_array_size(v);
                                        if (idx >= 0)
                                                next = json_array_get(v, (size_t) idx);
                                }
                        }
                        if (!next) {
                                _cleanup_free_ char *got = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                                *ret_error = xasprintf("task '%s' result has no %s '%s' (the result is: %.200s)",
                                                       t->name, json_is_array(v) ? "index" : "key", *k, got ?: "?");
                                return NULL;
                        }
                        v = next;
                }
                return v;
        }
        *ret_error = xasprintf("unknown task '%s'", r->task);
        return NULL;
}

/* One argument for the engine: a whole reference keeps its JSON type
 * ({"value": v}); a string written in the pipeline (references embedded
 * or not) is converted by the parameter's annotation like a CLI value
 * ({"raw": s}); other YAML values are typed ({"value": v}). */
static json_t *encode_arg(json_t *tmpl, Lookup *l, char **ret_error) {
        bool whole = json_is_string(tmpl) && template_is_whole_ref(json_string_value(tmpl));
        json_t *v = template_subst(tmpl, lookup_ref, l, ret_error);
        if (!v)
                return NULL;
        bool raw = json_is_string(v) && (!whole || l->placeholder);
        json_t *out = json_pack("{s:o}", raw ? "raw" : "value", v);
        return out;
}

/* The text length of what a whole reference (a template that is one
 * "${task}", no key) names, added up in *ud (Lookup's d first). */
typedef struct WholeSize {
        Dag *d;
        size_t bytes;
} WholeSize;

static int add_whole_size(const Ref *r, void *ud) {
        WholeSize *w = ud;
        for (size_t i = 0; !r->param && (!r->path || !r->path[0]) && i < w->d->n; i++)
                if (streq(w->d->tasks[i].name, r->task) && w->d->tasks[i].value_json)
                        w->bytes += strlen(w->d->tasks[i].value_json);
        return 0;
}

static void add_whole_ref(json_t *item, WholeSize *w) {
        /* A malformed reference is build_args()'s to report. */
        _cleanup_free_ char *ignored = NULL;
        if (json_is_string(item) && template_is_whole_ref(json_string_value(item)))
                (void) template_walk(item, add_whole_size, w, &ignored);
}

/* At least how long t's arguments are, from its whole references alone:
 * each goes into them as jansson writes the value, never shorter than the
 * worker's text of it (the same escapes, reals in 17 digits at most as
 * short). Told before any result is parsed: an upstream's result of 10 MB
 * was parsed whole (~15 times its size) only to be refused. */
static size_t whole_refs_size(Dag *d, Task *t) {
        WholeSize w = { .d = d };
        json_t *item;
        size_t i;
        const char *k;
        json_array_foreach(t->args, i, item)
                add_whole_ref(item, &w);
        json_object_foreach(t->kwargs, k, item)
                add_whole_ref(item, &w);
        return w.bytes;
}

static char *args_too_large(const Task *t) {
        /* An upstream's large result meets the argument cap only now,
         * after it ran: say what carries it. */
        return xasprintf("task '%s': its arguments are larger than %llu bytes; pass a large value through a "
                         "dataset (the upstream task's outputs:, this one's data:, docs/dag.md)",
                         t->name, (unsigned long long) RUN_MAX_ARGS_BYTES);
}

static int build_args(Dag *d, Task *t, const char *placeholder, char **ret_args, char **ret_kwargs,
                      char **ret_error) {
        if (!placeholder && whole_refs_size(d, t) > RUN_MAX_ARGS_BYTES) {
                *ret_error = args_too_large(t);
                return -E2BIG;
        }
        Lookup l = { .d = d, .placeholder = placeholder ? json_string(placeholder) : NULL };
        json_t *args = json_array(), *kwargs = json_object();
        size_t i;
        json_t *item;
        int r = 0;
        json_array_foreach(t->args, i, item) {
                json_t *a = encode_arg(item, &l, ret_error);
                if (!a) {
                        r = -EINVAL;
                        break;
                }
                json_array_append_new(args, a);
        }
        const char *k;
        if (r >= 0)
                json_object_foreach(t->kwargs, k, item) {
                        json_t *a = encode_arg(item, &l, ret_error);
                        if (!a) {
                                r = -EINVAL;
                                break;
                        }
                        json_object_set_new(kwargs, k, a);
                }
        json_decref(l.placeholder);
        if (r >= 0) {
                char *a = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
                char *kw = json_dumps(kwargs, JSON_COMPACT | JSON_SORT_KEYS);
                /* raw_kwargs go first and in the order written, as the
                 * API's (daemon-request.c): of `--flag --no-flag` the
                 * later wins (runner.py _bind()). kwargs follow as they
                 * were (keys sorted, nested objects too): a pipeline
                 * without raw_kwargs passes the same text, and keeps its
                 * memo keys. */
                if (kw && json_object_size(t->raw_kwargs)) {
                        json_t *raw = json_object();
                        json_object_foreach(t->raw_kwargs, k, item)
                                json_object_set_new(raw, k, json_raw_kwarg_item(item));
                        _cleanup_free_ char *rkw = json_dumps(raw, JSON_COMPACT);
                        json_decref(raw);
                        char *both = !rkw              ? NULL
                                     : streq(kw, "{}") ? xstrdup(rkw)
                                                       : xasprintf("%.*s,%s", (int) strlen(rkw) - 1, rkw, kw + 1);
                        free(kw);
                        kw = both;
                }
                if (!a || !kw) {
                        *ret_error = xasprintf("task '%s': its arguments cannot be encoded as JSON", t->name);
                        free(a);
                        free(kw);
                        r = -EINVAL;
                } else if (strlen(a) + strlen(kw) > RUN_MAX_ARGS_BYTES) {
                        *ret_error = args_too_large(t);
                        free(a);
                        free(kw);
                        r = -E2BIG;
                } else {
                        *ret_args = a;
                        *ret_kwargs = kw;
                }
        }
        json_decref(args);
        json_decref(kwargs);
        return r;
}

/* ---- recording ---- */

static void record_task(Dag *d, Task *t) {
        /* Called with d->lock held: copy what the store needs. */
        DagTaskRecord rec = {
                .dag_id = d->id,
                .name = t->name,
                .position = (int) (t - d->tasks),
                .state = (char *) dag_task_state_to_string(t->state),
                .run_id = t->run_id,
                .attempts = t->attempts,
                .memo_key = t->memo_key,
                .cached = t->cached,
                .value_json = t->value_json,
                .error = t->error,
                .exit_code = t->exit_code,
                .started = t->started,
                .finished = t->finished,
        };
        (void) store_dag_task_put(engine_store(d->engine), &rec);
}

static void set_state(Dag *d, Task *t, DagTaskState s) {
        t->state = s;
        if (s != DAG_TASK_RUNNING)
                t->deciding = false;
        if (s == DAG_TASK_RUNNING && !t->started)
                t->started = now_realtime();
        if (dag_task_state_is_done(s) && !t->finished)
                t->finished = now_realtime();
        /* Deciding: recorded running once its run starts (run_task()), so
         * a server's view (polled from the record) shows a memo hit go
         * from pending to cached too. */
        if (!(s == DAG_TASK_RUNNING && t->deciding))
                record_task(d, t);
        pthread_cond_broadcast(&d->cond);
}

static void set_error(Task *t, const char *msg) {
        free(t->error);
        t->error = msg ? xstrdup(msg) : NULL;
}

/* ---- validation ---- */

typedef struct Job {
        Dag *d;
        size_t next;
        char *error;        /* first error, by task order */
        int error_errno;    /* its errno: -ENOPKG when requirements cannot be resolved */
        size_t error_task;
} Job;

static void ignore_event(const RunEvent *ev, void *userdata) {
}

/* What every engine run of task t has in common. */
static RunSpec task_spec(const Dag *d, const Task *t, const char *args_json, const char *kwargs_json) {
        return (RunSpec) {
                .tenant = d->tenant,
                .source = t->source,
                .source_len = t->source_len,
                .filename = t->file,
                .function = t->function,
                .args_json = args_json,
                .kwargs_json = kwargs_json,
                .limits = t->limits,
                .sandbox = d->opts.sandbox,
        };
}

static int validate_one(Dag *d, Task *t, char **ret_error) {
        /* A reference's value is known only when its task ran: try
         * placeholders that satisfy the common annotations (int/float/bool/
         * str, then list, then dict); if only type errors remain they are
         * checked again with the real values when the task runs. */
        static const char *const placeholders[] = { "0", "[]", "{}" };
        bool has_refs = false;
        for (size_t k = 0; k < t->n_deps; k++)
                has_refs = true;
        _cleanup_free_ char *last = NULL;
        for (size_t p = 0; p < (has_refs ? ELEMENTSOF(placeholders) : 1); p++) {
                _cleanup_free_ char *args = NULL, *kwargs = NULL, *err = NULL;
                int r = build_args(d, t, has_refs ? placeholders[p] : NULL, &args, &kwargs, &err);
                if (r < 0) {
                        *ret_error = xasprintf("%s:%d: task '%s': %s", d->filename, t->line, t->name, err ?: "bad arguments");
                        return r;
                }
                RunSpec spec = task_spec(d, t, args, kwargs);
                spec.validate_only = true;
                spec.no_record = true;
                RunResult *res = NULL;
                r = engine_run(d->engine, &spec, ignore_event, NULL, &res);
                if (r < 0) {
                        *ret_error = xasprintf("task '%s': cannot validate: %s", t->name, strerror(-r));
                        return r;
                }
                if (res->status == RUN_SUCCEEDED) {
                        run_result_free(res);
                        return 0;
                }
                bool type_error = res->status == RUN_INVALID && res->error_message &&
                                  strstr(res->error_message, "argument '") && strstr(res->error_message, "': expected");
                free(last);
                last = xasprintf("%s:%d: task '%s' (%s): %s", d->filename, t->line, t->name, t->file,
                                 res->error_message ?: run_status_to_string(res->status));
                int code = res->exit_code;
                run_result_free(res);
                if (!type_error || !has_refs) {
                        *ret_error = TAKE_PTR(last);
                        return code == EXIT_DEPENDENCY ? -ENOPKG : -EINVAL;
                }
        }
        /* Only the placeholders' types were refused. */
        return 0;
}

static void *validate_thread(void *p) {
        Job *j = p;
        Dag *d = j->d;
        for (;;) {
                pthread_mutex_lock(&d->lock);
                size_t i = j->next++;
                bool stop = j->error != NULL || d->cancel_requested;
                pthread_mutex_unlock(&d->lock);
                if (i >= d->n || stop)
                        return NULL;
                _cleanup_free_ char *err = NULL;
                int r = validate_one(d, &d->tasks[i], &err);
                if (r < 0) {
                        pthread_mutex_lock(&d->lock);
                        if (!j->error || i < j->error_task) {
                                free(j->error);
                                j->error = TAKE_PTR(err);
                                j->error_errno = r;
                                j->error_task = i;
                        }
                        pthread_mutex_unlock(&d->lock);
                }
        }
}

static int check_data(Dag *d, char **ret_error) {
        for (size_t i = 0; i < d->n; i++)
                for (char **p = d->tasks[i].data; p && *p; p++) {
                        /* Made by a task of this DAG before this one runs. */
                        if (d->tasks[i].data_producer && d->tasks[i].data_producer[p - d->tasks[i].data] >= 0)
                                continue;
                        _cleanup_free_ char *name = NULL;
                        int version = 0;
                        if (data_parse_ref(*p, &name, &version) < 0)
                                return -EINVAL;
                        DatasetVersion *v = NULL;
                        size_t n = 0;
                        int r = data_versions(d->catalog, d->tenant, name, &v, &n);
                        bool ok = r >= 0 && n > 0;
                        if (ok && version > 0) {
                                ok = false;
                                for (size_t k = 0; k < n; k++)
                                        ok = ok || v[k].version == version;
                        }
                        dataset_version_list_free(v, n);
                        if (!ok) {
                                *ret_error = xasprintf("%s:%d: task '%s': no dataset '%s' (add it with: pysprinter data put %s PATH|URL)",
                                                       d->filename, d->tasks[i].line, d->tasks[i].name, *p, name);
                                return -ENOENT;
                        }
                }
        return 0;
}

/* Every task validated in a worker, concurrency at a time. */
static int validate_tasks(Dag *d, unsigned concurrency, char **ret_error) {
        Job j = { .d = d };
        unsigned n = (unsigned) MIN((size_t) concurrency, d->n);
        pthread_t *th = xcalloc(n, sizeof(pthread_t));
        unsigned started = 0;
        for (unsigned i = 0; i < n; i++)
                if (pthread_create(&th[i], NULL, validate_thread, &j) == 0)
                        started++;
        if (started == 0)
                validate_thread(&j);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        free(th);
        if (j.error) {
                *ret_error = j.error;
                /* -ENOPKG stays itself: exit 4, as for a run (docs/cli.md). */
                return j.error_errno == -ENOPKG ? -ENOPKG : -EINVAL;
        }
        return 0;
}

static int validate_all(Dag *d, unsigned concurrency, char **ret_error) {
        int r = check_data(d, ret_error);
        return r < 0 ? r : validate_tasks(d, concurrency, ret_error);
}

int dag_validate(Dag *d, Engine *e, const DagOptions *o, char **ret_error) {
        assert(d && e && o);
        d->engine = e;
        d->opts = *o;
        free(d->tenant);
        d->tenant = xstrdup(o->tenant ?: "local");
        return validate_tasks(d, dag_concurrency(d, o->concurrency), ret_error);
}

/* ---- one task ---- */

static bool retriable(RunStatus s) {
        /* Validation and dependency failures would fail the same way again. */
        return s == RUN_FAILED || s == RUN_KILLED || s == RUN_ERROR || s == RUN_LOST;
}

/* Whether no new attempt of a task may start: the DAG run is cancelled,
 * fail-fast stopped it, or its runner's process stops. */
static bool stopping(Dag *d) {
        pthread_mutex_lock(&d->lock);
        bool s = d->cancel_requested || d->stop;
        pthread_mutex_unlock(&d->lock);
        return s;
}

/* Sleeps ms in slices, returning early when the run is being stopped. */
static void backoff_sleep(Dag *d, uint64_t ms) {
        usec_t until = now_monotonic() + ms * USEC_PER_MSEC;
        while (!stopping(d) && now_monotonic() < until) {
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

/* Whether the runner's caller stops (DagOptions.stopping). */
static bool caller_stopping(Dag *d) {
        return d->opts.stopping && d->opts.stopping(d->opts.run_userdata);
}

/* When each of the task's secrets was last set in the DAG's tenant
 * (microseconds; 0 for one the tenant lacks, which the run then refuses):
 * a rotated secret gives another memo key, its value never enters one.
 * A store that did not answer (a cluster's Redis: -ECONNREFUSED, or
 * -ECOMM, a read whose answer was lost) said nothing about them: asked
 * again until it answers, as a worker asks again for a run's secrets;
 * that error only when the DAG run is cancelled or stopped, or the
 * runner's caller stops, meanwhile. Before, such a read counted as "no
 * secret" (a memo key of its own) and the task's run was then submitted
 * into the same outage: the task failed ("the engine could not run the
 * task: Connection refused") with the DAG run. */
static int secrets_updated(Dag *d, Task *t, json_t **ret) {
        SecretInfo *v = NULL;
        size_t n = 0;
        uint64_t pause_ms = 50;
        for (;;) {
                int k = store_secret_list(engine_store(d->engine), d->tenant, &v, &n);
                if (k != -ECONNREFUSED && k != -ECOMM)
                        break; /* another error: as before, none is known */
                if (stopping(d) || caller_stopping(d))
                        return k;
                backoff_sleep(d, pause_ms);
                pause_ms = MIN(pause_ms * 2, 1000u);
        }
        json_t *stamps = json_array();
        for (char **name = t->secrets; name && *name; name++) {
                usec_t at = 0;
                for (size_t i = 0; i < n; i++)
                        if (streq(v[i].name, *name))
                                at = v[i].updated;
                json_array_append_new(stamps, json_integer((json_int_t) at));
        }
        secret_info_list_free(v, n);
        *ret = stamps;
        return 0;
}

/* stamps: secrets_updated()'s, taken (NULL for a task without secrets). */
static char *memo_key(Dag *d, Task *t, const char *args, const char *kwargs, const char *data_fp, json_t *stamps) {
        _cleanup_free_ char *src = sha256_hex_dup(t->source, t->source_len);
        /* The lock id: until the engine exposes the resolved lock, the
         * source hash stands for it (it holds the requirements dict). */
        json_t *k = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "source", src, "function", t->function ?: "",
                              "args", args, "kwargs", kwargs, "lock", src, "data", data_fp ?: "", "v", 1);
        /* Secret names and env values are inputs too (added only when
         * present: older memos keep their keys). A secret's value is not:
         * it never leaves the place that opens it (docs/secrets.md); when
         * it was last set is, so a rotation is not answered from the memo
         * of a run that saw the old value. */
        if (t->secrets) {
                json_object_set_new(k, "secrets", json_strv_new(t->secrets));
                json_object_set_new(k, "secrets_updated", stamps);
                stamps = NULL;
        }
        json_decref(stamps);
        if (t->env)
                json_object_set_new(k, "env", json_strv_new(t->env));
        if (t->outputs)
                json_object_set_new(k, "outputs", json_string(t->outputs));
        /* Network access is an input too: what a task sees (a fetch, a
         * fallback when offline) differs with it. A result memoised
         * without it was served to the same task asking for it. */
        if (t->limits.network)
                json_object_set_new(k, "network", json_true());
        /* So is the sandbox: unsandboxed, a task sees the host (its files,
         * its network), which a sandboxed run of it does not. Embedded,
         * where --sandbox is each command's; a daemon's is its operator's,
         * for all its runs (and memos it made before this keep hitting). */
        if (d->opts.sandbox == SANDBOX_MODE_NONE && d->opts.run == dag_engine_runner)
                json_object_set_new(k, "sandbox", json_string("none"));
        _cleanup_free_ char *text = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(k);
        if (!text) /* a value jansson cannot encode (not UTF-8) */
                return NULL;
        return sha256_hex_dup(text, strlen(text));
}

static void finish(Dag *d, Task *t, DagTaskState s, const char *error, int exit_code) {
        pthread_mutex_lock(&d->lock);
        set_error(t, error);
        t->exit_code = exit_code;
        set_state(d, t, s);
        pthread_mutex_unlock(&d->lock);
}

/* The task's env, then its secrets opened with opts.secret_key in the DAG's
 * tenant (embedded). -ENOENT with *ret_error naming a missing one. */
static int task_env(Dag *d, Task *t, char ***ret, char **ret_error) {
        free(*ret_error);
        *ret_error = NULL;
        return store_secrets_env(engine_store(d->engine), d->opts.secret_key, d->tenant, t->secrets, t->env, ret,
                                 ret_error);
}

/* The version of `name` a run's RunResult/RunRecord.outputs_json names,
 * or 0. */
static int outputs_version(const char *outputs_json, const char *name) {
        json_t *o = outputs_json ? json_loads(outputs_json, 0, NULL) : NULL;
        json_int_t v = json_integer_value(json_object_get(o, name));
        json_decref(o);
        return v > 0 && v < (1 << 30) ? (int) v : 0;
}

/* A memo hit of an `outputs:` task re-uses the version its memoised run
 * produced (no new version): the one that run's record names, if the
 * dataset still has it. 0: not usable (the task runs again). */
static int memo_output_version(Dag *d, Task *t, const char *run_id) {
        RunRecord *rec = NULL;
        if (!run_id || store_run_get(engine_store(d->engine), d->tenant, run_id, &rec) < 0)
                return 0;
        int v = outputs_version(rec->outputs_json, t->outputs);
        run_record_free(rec);
        if (v <= 0)
                return 0;
        _cleanup_free_ char *ref = xasprintf("%s@%d", t->outputs, v), *err = NULL, *warn = NULL;
        DataInfo *i = NULL;
        if (data_use(d->catalog, d->tenant, ref, &i, &warn, &err) < 0)
                return 0;
        data_info_free(i);
        return v;
}

/* The pin of dataset name (a `data:` entry without @VERSION that no task
 * of this run outputs): "NAME@V" of the version the run's first reader
 * resolved, made now when this is the first. A `data put` between two
 * tasks (two steps of a chain) gave them two versions of one input.
 * NULL when the name cannot be resolved: the mount says why.
 * *ret_warning: a URL dataset's failed revalidation (data_use()). */
/* The pin of name already made, or with mine the one made now; a copy.
 * NULL when there is none and mine is NULL. */
static char *data_pin_take(Dag *d, const char *name, const char *mine) {
        size_t n = strlen(name);
        char *pin = NULL;
        pthread_mutex_lock(&d->lock);
        for (char **p = d->data_pins; p && *p && !pin; p++)
                if (strneq(*p, name, n) && (*p)[n] == '@')
                        pin = xstrdup(*p);
        if (!pin && mine) {
                d->data_pins = strv_append(d->data_pins, mine);
                pin = xstrdup(mine);
        }
        pthread_mutex_unlock(&d->lock);
        return pin;
}

static char *data_pin(Dag *d, const char *name, char **ret_warning) {
        char *pin = data_pin_take(d, name, NULL);
        if (pin)
                return pin;
        /* Resolved unlocked (a URL dataset revalidates over the network);
         * of two tasks that got here at once, the first to pin wins. */
        DataInfo *i = NULL;
        _cleanup_free_ char *err = NULL;
        if (data_use(d->catalog, d->tenant, name, &i, ret_warning, &err) < 0)
                return NULL;
        _cleanup_free_ char *mine = xasprintf("%s@%d", name, i->version);
        data_info_free(i);
        return data_pin_take(d, name, mine);
}

/* t's `data:` with each dataset an upstream task outputs pinned to the
 * version it produced in this DAG run (not the current one, which another
 * DAG run may have moved), and any other one named without @VERSION to
 * the version the run's first reader of it read (data_pin(), whose
 * warnings go to *ret_warning). -ENOENT when the producer left none. */
static int pinned_data_refs(Dag *d, Task *t, char ***ret, char **ret_warning, char **ret_error) {
        char **refs = NULL;
        for (size_t k = 0; t->data && t->data[k]; k++) {
                ssize_t j = t->data_producer ? t->data_producer[k] : -1;
                if (j < 0) {
                        _cleanup_free_ char *warn = NULL;
                        _cleanup_free_ char *pin = strchr(t->data[k], '@') ? NULL : data_pin(d, t->data[k], &warn);
                        refs = strv_append(refs, pin ?: t->data[k]);
                        if (warn) {
                                char *all = *ret_warning ? xasprintf("%s\n%s", *ret_warning, warn) : TAKE_PTR(warn);
                                free(*ret_warning);
                                *ret_warning = all;
                        }
                        continue;
                }
                pthread_mutex_lock(&d->lock);
                int v = d->tasks[j].out_version;
                pthread_mutex_unlock(&d->lock);
                if (v <= 0) {
                        *ret_error = xasprintf("task '%s' produced no version of '%s'", d->tasks[j].name, t->data[k]);
                        strv_free(refs);
                        return -ENOENT;
                }
                _cleanup_free_ char *ref = xasprintf("%s@%d", t->data[k], v);
                refs = strv_append(refs, ref);
        }
        *ret = refs;
        return 0;
}

static void run_task(Dag *d, Task *t) {
        _cleanup_free_ char *args = NULL, *kwargs = NULL, *err = NULL, *fp = NULL, *warn = NULL;
        _cleanup_strv_free_ char **mounts = NULL;
        /* Held until the task's run ended (d->opts.run returns then). */
        _cleanup_(data_holds_releasep) DataHolds *holds = NULL;
        pthread_mutex_lock(&d->lock);
        int r = build_args(d, t, NULL, &args, &kwargs, &err);
        pthread_mutex_unlock(&d->lock);
        if (r < 0) {
                finish(d, t, DAG_TASK_FAILED, err, EXIT_VALIDATION);
                return;
        }
        _cleanup_strv_free_ char **refs = NULL;
        _cleanup_free_ char *pin_warn = NULL;
        r = pinned_data_refs(d, t, &refs, &pin_warn, &err);
        if (r >= 0)
                r = data_resolve_mounts(d->catalog, d->tenant, refs, &mounts, &holds, &fp, &warn, &err);
        if (r >= 0 && pin_warn) {
                char *all = warn ? xasprintf("%s\n%s", pin_warn, warn) : TAKE_PTR(pin_warn);
                free(warn);
                warn = all;
        }
        if (r < 0) {
                finish(d, t, DAG_TASK_FAILED, err, EXIT_VALIDATION);
                return;
        }
        json_t *stamps = NULL;
        if (t->secrets && (r = secrets_updated(d, t, &stamps)) < 0) {
                /* Stopped while the store did not answer: cancelled, or
                 * left for the resume as an interrupted task is. */
                pthread_mutex_lock(&d->lock);
                bool cancelled = d->cancel_requested, stop = d->stop && !d->interrupted;
                if (!cancelled && !stop) {
                        d->interrupted = true;
                        d->stop = true;
                        t->started = 0;
                        set_state(d, t, DAG_TASK_PENDING);
                }
                pthread_mutex_unlock(&d->lock);
                if (cancelled || stop) {
                        _cleanup_free_ char *m = xasprintf("the task's secrets could not be read: %s", strerror(-r));
                        finish(d, t, cancelled ? DAG_TASK_CANCELLED : DAG_TASK_FAILED, m,
                               cancelled ? EXIT_LIMIT : EXIT_INTERNAL);
                }
                return;
        }
        _cleanup_free_ char *key = memo_key(d, t, args, kwargs, fp, stamps);
        if (!key) {
                finish(d, t, DAG_TASK_FAILED, "the task's function name or data cannot be encoded as JSON",
                       EXIT_VALIDATION);
                return;
        }
        pthread_mutex_lock(&d->lock);
        free(t->memo_key);
        t->memo_key = xstrdup(key);
        if (warn)
                set_error(t, warn);
        pthread_mutex_unlock(&d->lock);

        if (!d->opts.no_cache) {
                _cleanup_free_ char *value = NULL, *run_id = NULL;
                if (store_dag_memo_get(engine_store(d->engine), d->tenant, key, &value, &run_id) >= 0) {
                        json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                        int out_version = v && t->outputs ? memo_output_version(d, t, run_id) : 0;
                        if (v && t->outputs && out_version <= 0) {
                                json_decref(v);
                                v = NULL;
                        }
                        if (v) {
                                pthread_mutex_lock(&d->lock);
                                json_decref(t->value);
                                t->value = v;
                                free(t->value_json);
                                t->value_json = TAKE_PTR(value);
                                free(t->run_id);
                                t->run_id = TAKE_PTR(run_id);
                                t->cached = true;
                                t->exit_code = 0;
                                t->out_version = out_version;
                                set_state(d, t, DAG_TASK_CACHED);
                                pthread_mutex_unlock(&d->lock);
                                return;
                        }
                }
        }

        /* Resuming: the run the previous driver started, if any. */
        _cleanup_free_ char *adopt = NULL;
        pthread_mutex_lock(&d->lock);
        adopt = t->run_id && !t->attempts_here ? xstrdup(t->run_id) : NULL;
        pthread_mutex_unlock(&d->lock);
        for (int attempt = 1;; attempt++) {
                _cleanup_free_ char *run_id = id_new("r");
                pthread_mutex_lock(&d->lock);
                free(t->run_id);
                t->run_id = xstrdup(attempt == 1 && adopt ? adopt : run_id);
                t->deciding = false; /* it runs: report() says so now */
                t->attempts = attempt;
                t->attempts_here = attempt;
                record_task(d, t);
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                DagTaskRun tr = {
                        .spec = task_spec(d, t, args, kwargs),
                        .data_refs = refs,
                        .output_data = t->outputs,
                        .secrets = t->secrets,
                        .env = t->env,
                        .task = t->name,
                        .adopt_run_id = attempt == 1 ? adopt : NULL,
                };
                tr.spec.run_id = run_id;
                tr.spec.data = mounts;
                DataOutput out = { .catalog = d->catalog, .tenant = d->tenant, .name = t->outputs };
                if (t->outputs) {
                        tr.spec.store_output = data_store_output;
                        tr.spec.store_output_userdata = &out;
                }
                char **env = NULL;
                if (d->opts.secret_key && (t->secrets || t->env)) {
                        r = task_env(d, t, &env, &err);
                        if (r < 0) {
                                finish(d, t, DAG_TASK_FAILED, err, EXIT_VALIDATION);
                                return;
                        }
                }
                tr.spec.env = env;
                RunResult *res = NULL;
                r = d->opts.run(&tr, d->opts.run_userdata, &res);
                store_env_free(env);
                free(out.hash);
                if (r == -EINPROGRESS) {
                        /* The runner's process stops, its run goes on:
                         * the task stays running under that run's id, for
                         * the resume to adopt (a second run would execute
                         * the task twice). */
                        pthread_mutex_lock(&d->lock);
                        d->interrupted = true;
                        d->stop = true;
                        record_task(d, t);
                        pthread_mutex_unlock(&d->lock);
                        return;
                }
                if (r == -ESHUTDOWN) {
                        /* The runner's process stops: the task runs again
                         * when the DAG run is resumed. */
                        pthread_mutex_lock(&d->lock);
                        d->interrupted = true;
                        d->stop = true;
                        set_error(t, NULL);
                        t->started = 0;
                        set_state(d, t, DAG_TASK_PENDING);
                        pthread_mutex_unlock(&d->lock);
                        return;
                }
                if (r < 0) {
                        _cleanup_free_ char *m = xasprintf("the engine could not run the task: %s", strerror(-r));
                        finish(d, t, DAG_TASK_FAILED, m, EXIT_INTERNAL);
                        return;
                }
                if (res->id && !streq(res->id, t->run_id ?: "")) {
                        /* The runner did not adopt: its run is the one. */
                        pthread_mutex_lock(&d->lock);
                        free(t->run_id);
                        t->run_id = xstrdup(res->id);
                        if (res->started)
                                t->started = res->started;
                        pthread_mutex_unlock(&d->lock);
                }
                if (res->status == RUN_SUCCEEDED) {
                        /* Checked, not parsed: lookup_ref() parses it if a
                         * dependent asks (a 15 MB result was the text, the
                         * value and jansson's saved text at once). */
                        bool v = res->value_json && json_text_loadable(res->value_json);
                        pthread_mutex_lock(&d->lock);
                        if (t->outputs)
                                t->out_version = outputs_version(res->outputs_json, t->outputs);
                        json_decref(t->value);
                        /* An earlier attempt's error is not this success's:
                         * only the dataset's warning, or the note below. */
                        set_error(t, warn);
                        /* A result without a JSON view (NaN, an int past 64
                         * bits, …) reaches dependents as its repr string
                         * (docs/python.md), never as null. */
                        json_t *repr = !v && res->value_repr ? json_string(res->value_repr) : NULL;
                        t->value = v ? NULL : repr ?: json_null();
                        free(t->value_json);
                        /* Keep the worker's text: re-encoding through jansson
                         * would respell floats (4.2 -> 4.2000000000000002). */
                        t->value_json = v ? TAKE_PTR(res->value_json)
                                          : json_dumps(t->value, JSON_COMPACT | JSON_ENCODE_ANY);
                        if (!v && res->value_repr) {
                                _cleanup_free_ char *m = xasprintf("the result is not JSON (%.200s); dependents get %s",
                                                                   res->value_repr, repr ? "its repr" : "null");
                                set_error(t, m);
                        }
                        t->exit_code = 0;
                        set_state(d, t, DAG_TASK_SUCCEEDED);
                        pthread_mutex_unlock(&d->lock);
                        /* t->value_json, the worker's text taken above (not
                         * a copy): only this thread replaces it, and only
                         * dag_release_results() after the run frees it. */
                        if (v)
                                (void) store_dag_memo_put(engine_store(d->engine), d->tenant, key, t->value_json,
                                                          res->id ?: run_id);
                        run_result_free(res);
                        return;
                }
                _cleanup_free_ char *m = NULL;
                /* "KeyError: 3", never "KeyError: KeyError: 3": the
                 * message may already start with its type, or be it
                 * alone (`raise ValueError()`: "ValueError", not
                 * "ValueError: ValueError"). */
                size_t tl = res->error_type ? strlen(res->error_type) : 0;
                bool typed = res->error_message && tl && strneq(res->error_message, res->error_type, tl) &&
                             (res->error_message[tl] == ':' || res->error_message[tl] == 0);
                if (res->status == RUN_FAILED && res->error_type && !typed)
                        m = xasprintf("%s: %s", res->error_type, res->error_message ?: "");
                else
                        m = xstrdup(res->error_message ?: run_status_to_string(res->status));
                bool again = retriable(res->status) && attempt <= t->retries && !d->cancel_requested && !d->stop;
                DagTaskState s = res->status == RUN_CANCELLED || d->cancel_requested ? DAG_TASK_CANCELLED : DAG_TASK_FAILED;
                int code = res->exit_code;
                run_result_free(res);
                if (!again) {
                        finish(d, t, s, m, code);
                        return;
                }
                pthread_mutex_lock(&d->lock);
                set_error(t, m);
                record_task(d, t);
                pthread_mutex_unlock(&d->lock);
                uint64_t delay = t->backoff_ms << MIN(attempt - 1, 16);
                /* A task waiting to retry runs nothing: its slot goes to
                 * another task meanwhile (with --concurrency 1, one flaky
                 * task's backoff held the whole DAG run still). It waits
                 * for a free slot again before its next attempt. */
                pthread_mutex_lock(&d->lock);
                d->running--;
                d->backing_off++;
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                backoff_sleep(d, MIN(delay, MAX_BACKOFF_MS));
                pthread_mutex_lock(&d->lock);
                while (d->running >= d->slots && !d->cancel_requested && !d->stop)
                        pthread_cond_wait(&d->cond, &d->lock);
                d->backing_off--;
                d->running++;
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                /* Stopped while it waited: no next attempt. The task ends
                 * with the failure it had (cancelled when the DAG run
                 * is), or, when the runner's process stops, is left for
                 * the resume as an interrupted run is. Before, the next
                 * attempt started anyway, after the whole backoff. */
                pthread_mutex_lock(&d->lock);
                bool cancelled = d->cancel_requested, shutdown = d->interrupted, stop = d->stop;
                pthread_mutex_unlock(&d->lock);
                if (shutdown && !cancelled) {
                        pthread_mutex_lock(&d->lock);
                        set_error(t, NULL);
                        t->started = 0;
                        set_state(d, t, DAG_TASK_PENDING);
                        pthread_mutex_unlock(&d->lock);
                        return;
                }
                if (cancelled || stop) {
                        finish(d, t, cancelled ? DAG_TASK_CANCELLED : DAG_TASK_FAILED, m, code);
                        return;
                }
        }
}

typedef struct TaskArg {
        Dag *d;
        Task *t;
} TaskArg;

static void *task_thread(void *p) {
        TaskArg *a = p;
        run_task(a->d, a->t);
        pthread_mutex_lock(&a->d->lock);
        a->d->running--;
        pthread_cond_broadcast(&a->d->cond);
        pthread_mutex_unlock(&a->d->lock);
        free(a);
        return NULL;
}

/* ---- the scheduler ---- */

static void emit(Dag *d, DagEventFn fn, void *ud, DagEvent ev) {
        if (fn)
                fn(d, &ev, ud);
}

/* Reports state changes since the last call (lock held; released around
 * the callbacks so a renderer may call dag_task_info()). */
static void report(Dag *d, DagEventFn fn, void *ud) {
        for (size_t i = 0; i < d->n; i++) {
                Task *t = &d->tasks[i];
                /* A task still looking up its memo is not reported
                 * running yet: a hit goes from pending to cached. */
                if (t->state != t->reported && !(t->deciding && t->state == DAG_TASK_RUNNING)) {
                        t->reported = t->state;
                        DagTaskState s = t->state;
                        pthread_mutex_unlock(&d->lock);
                        emit(d, fn, ud, (DagEvent) { .type = DAG_EVENT_TASK, .task = i, .state = s });
                        pthread_mutex_lock(&d->lock);
                }
        }
}

static bool dep_blocked(Dag *d, Task *t, const char **ret_which) {
        for (size_t k = 0; k < t->n_deps; k++) {
                DagTaskState s = d->tasks[t->deps[k]].state;
                if (s == DAG_TASK_FAILED || s == DAG_TASK_SKIPPED || s == DAG_TASK_CANCELLED) {
                        *ret_which = d->tasks[t->deps[k]].name;
                        return true;
                }
        }
        return false;
}

static bool deps_ok(Dag *d, Task *t) {
        for (size_t k = 0; k < t->n_deps; k++) {
                DagTaskState s = d->tasks[t->deps[k]].state;
                if (s != DAG_TASK_SUCCEEDED && s != DAG_TASK_CACHED)
                        return false;
        }
        return true;
}

static void schedule(Dag *d, unsigned concurrency, DagEventFn fn, void *ud) {
        pthread_mutex_lock(&d->lock);
        d->slots = concurrency;
        usec_t cancel_sent = 0;
        for (;;) {
                /* Sent again every tick while a task runs: a task
                 * thread between naming its run and the runner's taking
                 * it had no run to cancel yet (the runner ignores a cancel
                 * of a run it does not know, or one that ended), and that
                 * run then went on to its end (Ctrl-C, seen in CI). */
                if (d->cancel_requested && now_monotonic() >= cancel_sent + TICK_MS * USEC_PER_MSEC) {
                        d->stop = true;
                        cancel_sent = now_monotonic();
                        for (size_t i = 0; i < d->n; i++)
                                if (d->tasks[i].state == DAG_TASK_RUNNING && d->tasks[i].run_id)
                                        d->opts.cancel(d->tasks[i].run_id, d->opts.run_userdata);
                }
                /* Fail-fast: the first failure stops new starts. */
                if (!d->opts.keep_going)
                        for (size_t i = 0; i < d->n; i++)
                                if (d->tasks[i].state == DAG_TASK_FAILED)
                                        d->stop = true;
                bool progress = true;
                while (progress) {
                        progress = false;
                        for (size_t i = 0; i < d->n; i++) {
                                Task *t = &d->tasks[i];
                                if (t->state != DAG_TASK_PENDING)
                                        continue;
                                const char *which = NULL;
                                if (d->cancel_requested) {
                                        /* Before the upstream check: a task
                                         * the cancel ended first must not make
                                         * its dependents "skipped" (that
                                         * depended on which thread won). */
                                        set_error(t, "not run: the DAG run was cancelled");
                                        set_state(d, t, DAG_TASK_CANCELLED);
                                        progress = true;
                                } else if (dep_blocked(d, t, &which)) {
                                        _cleanup_free_ char *m = xasprintf("not run: upstream task '%s' did not succeed", which);
                                        set_error(t, m);
                                        set_state(d, t, DAG_TASK_SKIPPED);
                                        progress = true;
                                } else if (d->stop && d->interrupted) {
                                        /* Left pending for the resume. */
                                        continue;
                                } else if (d->stop) {
                                        set_error(t, "not run: another task failed (fail-fast; --keep-going runs "
                                                     "independent tasks)");
                                        set_state(d, t, DAG_TASK_SKIPPED);
                                        progress = true;
                                } else if (d->running < concurrency && deps_ok(d, t)) {
                                        TaskArg *a = xmalloc(sizeof(TaskArg));
                                        *a = (TaskArg) { d, t };
                                        set_error(t, NULL);
                                        t->deciding = true;
                                        set_state(d, t, DAG_TASK_RUNNING);
                                        if (pthread_create(&t->thread, NULL, task_thread, a) != 0) {
                                                free(a);
                                                set_error(t, "cannot start a thread");
                                                set_state(d, t, DAG_TASK_FAILED);
                                        } else {
                                                t->has_thread = true;
                                                d->running++;
                                        }
                                        progress = true;
                                }
                        }
                }
                report(d, fn, ud);
                bool pending = false;
                for (size_t i = 0; i < d->n; i++)
                        pending = pending || d->tasks[i].state == DAG_TASK_PENDING;
                /* A task waiting to retry is still going: it may start
                 * its next attempt, and its dependents after it. */
                bool idle = d->running == 0 && d->backing_off == 0;
                if (idle && (!pending || (d->interrupted && !d->cancel_requested)))
                        break;
                if (idle && pending && !d->stop) {
                        /* report() dropped the lock, so a task may have
                         * finished meanwhile: go round again when something
                         * can start. Nothing startable with nothing running
                         * cannot happen in an acyclic graph; never spin. */
                        bool startable = false;
                        for (size_t i = 0; i < d->n; i++)
                                startable = startable || (d->tasks[i].state == DAG_TASK_PENDING && deps_ok(d, &d->tasks[i]));
                        if (!startable)
                                d->stop = true;
                        continue;
                }
                int w = cond_wait_usec(&d->cond, &d->lock, TICK_MS * USEC_PER_MSEC);
                if (w == ETIMEDOUT) {
                        pthread_mutex_unlock(&d->lock);
                        emit(d, fn, ud, (DagEvent) { .type = DAG_EVENT_TICK });
                        pthread_mutex_lock(&d->lock);
                }
        }
        pthread_mutex_unlock(&d->lock);
        for (size_t i = 0; i < d->n; i++)
                if (d->tasks[i].has_thread) {
                        pthread_join(d->tasks[i].thread, NULL);
                        d->tasks[i].has_thread = false;
                }
}

static const char *final_status(Dag *d) {
        bool failed = false, cancelled = false;
        for (size_t i = 0; i < d->n; i++) {
                DagTaskState s = d->tasks[i].state;
                failed = failed || s == DAG_TASK_FAILED || s == DAG_TASK_SKIPPED;
                cancelled = cancelled || s == DAG_TASK_CANCELLED;
        }
        return cancelled ? "cancelled" : failed ? "failed" : "succeeded";
}

static char *options_json(Dag *d, unsigned concurrency) {
        json_t *o = json_pack("{s:i, s:b, s:b, s:s}", "concurrency", (int) concurrency, "keep_going",
                              d->opts.keep_going, "no_cache", d->opts.no_cache, "sandbox",
                              d->opts.sandbox == SANDBOX_MODE_NONE ? "none" : "full");
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

void dag_options_restore(const char *options_json, DagOptions *o) {
        json_t *opts = options_json ? json_loads(options_json, 0, NULL) : NULL;
        if (!opts)
                return;
        o->keep_going = o->keep_going || json_is_true(json_object_get(opts, "keep_going"));
        o->no_cache = o->no_cache || json_is_true(json_object_get(opts, "no_cache"));
        json_int_t c = json_integer_value(json_object_get(opts, "concurrency"));
        if (!o->concurrency && c > 0 && c <= DAG_MAX_CONCURRENCY)
                o->concurrency = (unsigned) c;
        json_decref(opts);
}

/* Resuming: tasks that finished well keep their results; the rest run. */
static int restore_tasks(Dag *d, Store *s, char **ret_error) {
        DagTaskRecord **recs = NULL;
        size_t n = 0;
        int r = store_dag_tasks(s, d->id, &recs, &n);
        if (r < 0) {
                *ret_error = xasprintf("cannot read the tasks of %s: %s", d->id, strerror(-r));
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                DagTaskState st = dag_task_state_from_string(recs[i]->state);
                if (st == DAG_TASK_RUNNING && recs[i]->run_id && !recs[i]->cached)
                        /* Its run may still be queued or running under the
                         * caller's run queue: the runner may adopt it. */
                        for (size_t k = 0; k < d->n; k++)
                                if (streq(d->tasks[k].name, recs[i]->name)) {
                                        free(d->tasks[k].run_id);
                                        d->tasks[k].run_id = xstrdup(recs[i]->run_id);
                                        d->tasks[k].attempts = recs[i]->attempts;
                                        /* Adopted, it has been running since
                                         * then, not since the resume. */
                                        d->tasks[k].started = recs[i]->started;
                                }
                if ((st == DAG_TASK_FAILED || st == DAG_TASK_CANCELLED) && d->opts.keep_ended) {
                        for (size_t k = 0; k < d->n; k++) {
                                Task *t = &d->tasks[k];
                                if (!streq(t->name, recs[i]->name))
                                        continue;
                                free(t->run_id);
                                t->run_id = recs[i]->run_id ? xstrdup(recs[i]->run_id) : NULL;
                                set_error(t, recs[i]->error);
                                t->attempts = recs[i]->attempts;
                                t->exit_code = recs[i]->exit_code;
                                t->started = recs[i]->started;
                                t->finished = recs[i]->finished;
                                t->state = st;
                        }
                        continue;
                }
                if ((st != DAG_TASK_SUCCEEDED && st != DAG_TASK_CACHED) || !recs[i]->value_json)
                        continue;
                for (size_t k = 0; k < d->n; k++) {
                        Task *t = &d->tasks[k];
                        if (!streq(t->name, recs[i]->name))
                                continue;
                        json_t *v = json_loads(recs[i]->value_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                        if (!v)
                                break;
                        t->value = v;
                        t->value_json = xstrdup(recs[i]->value_json);
                        t->run_id = recs[i]->run_id ? xstrdup(recs[i]->run_id) : NULL;
                        t->attempts = recs[i]->attempts;
                        t->cached = recs[i]->cached;
                        t->exit_code = 0;
                        t->started = recs[i]->started;
                        t->finished = recs[i]->finished;
                        t->state = st;
                }
        }
        dag_task_record_list_free(recs, n);
        return 0;
}

int dag_engine_runner(const DagTaskRun *tr, void *userdata, RunResult **ret_result) {
        Engine *e = userdata;
        assert(tr && e && ret_result);
        /* The run an earlier process started died with it: run anew. */
        return engine_run(e, &tr->spec, ignore_event, NULL, ret_result);
}

static void engine_canceller(const char *run_id, void *userdata) {
        (void) engine_cancel(userdata, run_id);
}

/* Takes the DAG run's ownership lock (see dag_run() in dag.h). */
static int owner_lock(Dag *d, const char *id, bool wait, char **ret_error) {
        _cleanup_free_ char *dir = path_join(engine_data_dir(d->engine), "dag-locks");
        int r = mkdir_p(dir, 0750);
        if (r < 0) {
                *ret_error = xasprintf("cannot create the DAG lock directory: %s", strerror(-r));
                return r;
        }
        _cleanup_free_ char *path = path_join(dir, id);
        /* O_CLOEXEC: a worker the engine fork+execs must not inherit the
         * open file description (and with it the lock). */
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0) {
                r = -errno;
                *ret_error = xasprintf("cannot open the lock of DAG run %s: %s", id, strerror(-r));
                return r;
        }
        usec_t until = now_monotonic() + (wait ? DAG_LOCK_WAIT_MS * USEC_PER_MSEC : 0);
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                if (r != -EWOULDBLOCK && r != -EINTR) {
                        *ret_error = xasprintf("cannot lock DAG run %s: %s", id, strerror(-r));
                        return r;
                }
                if (now_monotonic() >= until) {
                        *ret_error = xasprintf("DAG run %s is being driven by another live process", id);
                        return -EBUSY;
                }
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        d->lock_fd = TAKE_FD(fd);
        return 0;
}

static void owner_unlock(Dag *d, bool finished) {
        if (d->lock_fd < 0)
                return;
        if (finished) {
                /* Still held: no other driver can be between open and
                 * flock on this name for a run that has ended. */
                _cleanup_free_ char *path = path_join(engine_data_dir(d->engine), "dag-locks", d->id);
                (void) unlink(path);
        }
        d->lock_fd = fd_close(d->lock_fd);
}

bool dag_cancelled(const Dag *d) {
        return d->cancel_requested;
}

void dag_release_results(Dag *d) {
        assert(d);
        for (size_t i = 0; i < d->n; i++) {
                json_decref(d->tasks[i].value);
                d->tasks[i].value = NULL;
                free(d->tasks[i].value_json);
                d->tasks[i].value_json = NULL;
        }
}

int dag_run(Dag *d, Engine *e, DataCatalog *dc, const DagOptions *o, DagEventFn fn, void *userdata, char **ret_error) {
        d->engine = e;
        d->catalog = dc;
        d->opts = *o;
        d->opts.resume_id = NULL;
        d->opts.dag_id = NULL;
        if (!d->opts.run) {
                d->opts.run = dag_engine_runner;
                d->opts.cancel = engine_canceller;
                d->opts.run_userdata = e;
        }
        if (!d->opts.cancel)
                d->opts.cancel = engine_canceller;
        d->interrupted = false;
        for (size_t i = 0; i < d->n; i++)
                d->tasks[i].attempts_here = 0;
        free(d->tenant);
        d->tenant = xstrdup(o->tenant ?: "local");
        unsigned concurrency = dag_concurrency(d, o->concurrency);
        Store *s = engine_store(e);
        d->status = "validating";

        if (!o->skip_validation) {
                emit(d, fn, userdata, (DagEvent) { .type = DAG_EVENT_VALIDATING });
                int r = validate_all(d, concurrency, ret_error);
                if (r < 0)
                        return r;
        }

        _cleanup_free_ char *opts = options_json(d, concurrency);
        _cleanup_free_ char *owner = xasprintf("%d", (int) getpid());
        free(d->id);
        d->id = o->resume_id ? xstrdup(o->resume_id) : o->dag_id ? xstrdup(o->dag_id) : id_new("d");
        d->lock_fd = -EBADF;
        int lr = owner_lock(d, d->id, o->resume_id != NULL, ret_error);
        if (lr < 0)
                return lr;
        if (o->resume_id) {
                int r = restore_tasks(d, s, ret_error);
                if (r < 0) {
                        owner_unlock(d, false);
                        return r;
                }
        } else {
                _cleanup_free_ char *abs_base = realpath(d->base_dir, NULL);
                DagRunRecord rec = {
                        .id = d->id,
                        .tenant = d->tenant,
                        .name = d->name,
                        .file = d->filename,
                        .base_dir = abs_base ?: d->base_dir,
                        .spec_text = d->text,
                        .params_json = d->params_json,
                        .options_json = opts,
                        .status = "running",
                        .owner = owner,
                        .created = now_realtime(),
                        .started = now_realtime(),
                };
                int r = store_dag_insert(s, &rec);
                if (r < 0) {
                        *ret_error = xasprintf("cannot record the DAG run: %s", strerror(-r));
                        owner_unlock(d, false);
                        return r;
                }
        }
        DagRunRecord *cur = NULL;
        if (store_dag_get(s, d->tenant, d->id, &cur) >= 0) {
                free(cur->status);
                cur->status = xstrdup("running");
                free(cur->owner);
                cur->owner = xstrdup(owner);
                free(cur->error);
                cur->error = NULL;
                cur->finished = 0;
                (void) store_dag_update(s, cur);
        }
        d->status = "running";
        pthread_mutex_lock(&d->lock);
        for (size_t i = 0; i < d->n; i++) {
                d->tasks[i].reported = _DAG_TASK_STATE_MAX;
                record_task(d, &d->tasks[i]);
        }
        pthread_mutex_unlock(&d->lock);
        emit(d, fn, userdata, (DagEvent) { .type = DAG_EVENT_STARTED });

        schedule(d, concurrency, fn, userdata);

        if (d->interrupted && !d->cancel_requested) {
                /* Recorded as running, no owner: the next start resumes it. */
                if (cur) {
                        free(cur->owner);
                        cur->owner = NULL;
                        (void) store_dag_update(s, cur);
                        dag_run_record_free(cur);
                }
                owner_unlock(d, false);
                *ret_error = xasprintf("DAG run %s was interrupted: it resumes at the next start", d->id);
                return -ESHUTDOWN;
        }
        d->status = final_status(d);
        if (cur) {
                free(cur->status);
                cur->status = xstrdup(d->status);
                free(cur->owner);
                cur->owner = NULL;
                cur->finished = now_realtime();
                (void) store_dag_update(s, cur);
                dag_run_record_free(cur);
        }
        owner_unlock(d, true);
        return 0;
}

bool dag_driven(Engine *e, const char *id) {
        assert(e && id);
        _cleanup_free_ char *path = path_join(engine_data_dir(e), "dag-locks", id);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return false; /* never locked, or unlinked by a driver that finished */
        /* Probing takes the lock for an instant; closing fd drops it. */
        return flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

int dag_cancel_abandoned(Engine *e, const char *id, char **ret_error) {
        assert(e && id && ret_error);
        Store *s = engine_store(e);
        _cleanup_free_ char *path = path_join(engine_data_dir(e), "dag-locks", id);
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno != ENOENT) {
                int r = -errno;
                *ret_error = xasprintf("cannot open the lock of DAG run %s: %s", id, strerror(-r));
                return r;
        }
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = -errno;
                if (r == -EWOULDBLOCK)
                        return -EBUSY; /* a live driver: it ends the run itself */
                *ret_error = xasprintf("cannot lock DAG run %s: %s", id, strerror(-r));
                return r;
        }
        DagRunRecord *rec = NULL;
        int r = store_dag_get(s, NULL, id, &rec);
        if (r < 0) {
                *ret_error = xasprintf("cannot read DAG run %s: %s", id, strerror(-r));
                return r;
        }
        if (!rec->status || !streq(rec->status, "running")) {
                dag_run_record_free(rec);
                return 0;
        }
        DagTaskRecord **tasks = NULL;
        size_t n = 0;
        usec_t now = now_realtime();
        if (store_dag_tasks(s, id, &tasks, &n) >= 0)
                for (size_t i = 0; i < n; i++) {
                        DagTaskRecord *t = tasks[i];
                        DagTaskState st = dag_task_state_from_string(t->state);
                        if (dag_task_state_is_done(st))
                                continue;
                        free(t->error);
                        t->error = xstrdup(st == DAG_TASK_RUNNING ? "cancelled" : "not run: the DAG run was cancelled");
                        free(t->state);
                        t->state = xstrdup(dag_task_state_to_string(DAG_TASK_CANCELLED));
                        t->finished = now;
                        (void) store_dag_task_put(s, t);
                }
        dag_task_record_list_free(tasks, n);
        free(rec->status);
        rec->status = xstrdup("cancelled");
        free(rec->owner);
        rec->owner = NULL;
        rec->finished = now;
        r = store_dag_update(s, rec);
        dag_run_record_free(rec);
        if (r < 0) {
                *ret_error = xasprintf("cannot record DAG run %s: %s", id, strerror(-r));
                return r;
        }
        if (fd >= 0)
                (void) unlink(path); /* still held: as owner_unlock() for a run that ended */
        return 0;
}

void dag_cancel_running(Dag *d) {
        assert(d);
        pthread_mutex_lock(&d->lock);
        d->cancel_requested = 1;
        /* The scheduler's order (d->lock, then the runner's): it sends
         * these again, which a runner ignores for a run that ended. */
        for (size_t i = 0; i < d->n; i++)
                if (d->tasks[i].state == DAG_TASK_RUNNING && d->tasks[i].run_id && d->opts.cancel)
                        d->opts.cancel(d->tasks[i].run_id, d->opts.run_userdata);
        pthread_cond_broadcast(&d->cond);
        pthread_mutex_unlock(&d->lock);
}

unsigned dag_concurrency(const Dag *d, unsigned requested) {
        assert(d);
        unsigned c = requested ?: d->concurrency ?: DAG_DEFAULT_CONCURRENCY;
        return MIN(c, (unsigned) DAG_MAX_CONCURRENCY);
}

void dag_cancel(Dag *d) {
        d->cancel_requested = 1;
}

void dag_task_info(Dag *d, size_t i, DagTaskInfo *ret) {
        pthread_mutex_lock(&d->lock);
        Task *t = &d->tasks[i];
        *ret = (DagTaskInfo){
                .name = t->name,
                .file = t->file,
                .line = t->line,
                .state = t->state,
                .depth = t->depth,
                .run_id = t->run_id,
                .attempts = t->attempts,
                .retries = t->retries,
                .cached = t->cached,
                .value_json = t->value_json,
                .error = t->error,
                .exit_code = t->exit_code,
                .started = t->started,
                .finished = t->finished,
                .n_deps = t->n_deps,
                .deps = t->deps,
                .n_dependents = t->n_dependents,
                .limits = t->limits,
                .secrets = t->secrets,
        };
        pthread_mutex_unlock(&d->lock);
}

char *dag_progress_json(Dag *d) {
        assert(d);
        json_t *tasks = json_array();
        pthread_mutex_lock(&d->lock);
        for (size_t i = 0; i < d->n; i++) {
                const Task *t = &d->tasks[i];
                /* A task still looking up its memo is pending to a viewer
                 * (report()): a hit goes from pending to cached. */
                DagTaskState st = t->deciding && t->state == DAG_TASK_RUNNING ? DAG_TASK_PENDING : t->state;
                json_t *o = json_pack("{s:s, s:s, s:i, s:b}", "name", t->name, "state", dag_task_state_to_string(st),
                                      "attempts", t->attempts, "cached", t->cached);
                json_object_set_new(o, "run_id", t->run_id ? json_string(t->run_id) : json_null());
                json_object_set_new(o, "exit_code", t->finished ? json_integer(t->exit_code) : json_null());
                json_object_set_new(o, "error", t->error ? json_string(t->error) : json_null());
                json_object_set_new(o, "started_us", t->started ? json_integer((json_int_t) t->started) : json_null());
                json_object_set_new(o, "finished_us",
                                    t->finished ? json_integer((json_int_t) t->finished) : json_null());
                json_array_append_new(tasks, o);
        }
        json_t *j = json_object();
        json_object_set_new(j, "id", d->id ? json_string(d->id) : json_null());
        json_object_set_new(j, "name", d->name ? json_string(d->name) : json_null());
        json_object_set_new(j, "status", json_string(d->status ?: "running"));
        pthread_mutex_unlock(&d->lock);
        json_object_set_new(j, "tasks", tasks);
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        return text;
}

void dag_task_set_limits(Dag *d, size_t i, const RunLimits *limits) {
        if (i >= d->n)
                return;
        pthread_mutex_lock(&d->lock);
        d->tasks[i].limits = *limits;
        pthread_mutex_unlock(&d->lock);
}

const char *dag_status(const Dag *d) {
        return d->status;
}

const char *const *dag_status_table(void) {
        static const char *const names[] = { "validating", "running", "succeeded",   "failed",
                                             "cancelled",  "invalid", "deps_failed", NULL };
        return names;
}

bool dag_status_ended(const char *status) {
        return status && !streq(status, "running") && !streq(status, "validating");
}

int dag_exit_code(const Dag *d) {
        const Task *first = NULL;
        bool cancelled = false;
        for (size_t i = 0; i < d->n; i++) {
                const Task *t = &d->tasks[i];
                if (t->state == DAG_TASK_CANCELLED)
                        cancelled = true;
                if (t->state == DAG_TASK_FAILED && (!first || t->finished < first->finished))
                        first = t;
        }
        if (cancelled)
                return 130;
        if (first)
                return first->exit_code > 0 ? first->exit_code : EXIT_RAISED;
        for (size_t i = 0; i < d->n; i++)
                if (d->tasks[i].state != DAG_TASK_SUCCEEDED && d->tasks[i].state != DAG_TASK_CACHED)
                        return EXIT_RAISED;
        return 0;
}

int dag_load(Store *s, const char *tenant, const char *id_or_prefix, Dag **ret, DagRunRecord **ret_record,
             char **ret_error) {
        return dag_load_with(s, tenant, id_or_prefix, NULL, NULL, ret, ret_record, ret_error);
}

int dag_load_with(Store *s, const char *tenant, const char *id_or_prefix, DagLoadFn load, void *load_userdata,
                  Dag **ret, DagRunRecord **ret_record, char **ret_error) {
        DagRunRecord *rec = NULL;
        int r = store_dag_get(s, tenant, id_or_prefix, &rec);
        /* The store refuses an empty prefix (-EINVAL); for `dag resume ""`
         * (an unset shell variable) it is simply no DAG run. */
        if (r == -EINVAL && !(id_or_prefix && *id_or_prefix))
                r = -ENOENT;
        if (r == -ENOENT)
                *ret_error = xasprintf("no DAG run '%s' (see `pysprinter dag ls`)", id_or_prefix ?: "");
        else if (r == -EEXIST)
                *ret_error = xasprintf("'%s' matches several DAG runs; give more of the id", id_or_prefix);
        else if (r < 0)
                *ret_error = xasprintf("cannot read the store: %s", strerror(-r));
        if (r < 0)
                return r;
        char **params = NULL;
        json_t *pj = rec->params_json ? json_loads(rec->params_json, 0, NULL) : NULL;
        const char *k;
        json_t *v;
        json_object_foreach(pj, k, v) {
                if (json_is_string(v)) {
                        _cleanup_free_ char *kv = xasprintf("%s=%s", k, json_string_value(v));
                        params = strv_append(params, kv);
                }
        }
        json_decref(pj);
        Dag *d = NULL;
        r = dag_parse_with(rec->spec_text, strlen(rec->spec_text), rec->file, rec->base_dir, params, load,
                           load_userdata, &d, ret_error);
        strv_free(params);
        if (r < 0) {
                dag_run_record_free(rec);
                return r;
        }
        d->id = xstrdup(rec->id);
        *ret = d;
        if (ret_record)
                *ret_record = rec;
        else
                dag_run_record_free(rec);
        return 0;
}
