/* DAG runs in cluster mode (docs/cluster.md "DAG runs"): the gateway that
 * drives a DAG run mirrors its record, definition (pipeline text and task
 * files) and task states from its local store into Redis, fenced by its
 * owner lease; every gateway reads DAG runs from Redis; a gateway whose
 * lease tick finds a DAG run without a live owner takes it over, copies it
 * into its own store and directory, and resumes it the single-node way
 * (daemon_dag_resume_record): finished tasks keep their results, a task
 * whose run is queued or running is waited for by its run id. */
#include <assert.h>
#include <jansson.h>

#include "cluster.h"
#include "daemon.h"

/* One writer at a time: two syncs of the same DAG run must not write an
 * older snapshot after a newer one. */
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;

static RunQueue *queue(Daemon *d) {
        return d->queue; /* the cluster's (daemon_cluster_start) */
}

static const char *str_or_null(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}

static char *dup_or_null(json_t *o, const char *k) {
        const char *s = str_or_null(o, k);
        return s ? xstrdup(s) : NULL;
}

static usec_t usec_of(json_t *o, const char *k) {
        return (usec_t) json_integer_value(json_object_get(o, k));
}

static char *rec_to_json(const DagRunRecord *r) {
        json_t *j = json_object();
#define S(f) if (r->f) json_object_set_new(j, #f, json_string(r->f))
        S(id); S(tenant); S(name); S(file); S(base_dir); S(spec_text); S(params_json); S(options_json);
        S(status); S(error); S(owner); S(schedule);
#undef S
        json_object_set_new(j, "created", json_integer((json_int_t) r->created));
        json_object_set_new(j, "started", json_integer((json_int_t) r->started));
        json_object_set_new(j, "finished", json_integer((json_int_t) r->finished));
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

static DagRunRecord *rec_from_json(const char *text) {
        json_t *j = json_loads(text, 0, NULL);
        if (!j)
                return NULL;
        DagRunRecord *r = xcalloc(1, sizeof(DagRunRecord));
#define S(f) r->f = dup_or_null(j, #f)
        S(id); S(tenant); S(name); S(file); S(base_dir); S(spec_text); S(params_json); S(options_json);
        S(status); S(error); S(owner); S(schedule);
#undef S
        r->created = usec_of(j, "created");
        r->started = usec_of(j, "started");
        r->finished = usec_of(j, "finished");
        json_decref(j);
        if (!r->id)
                return dag_run_record_free(r);
        return r;
}

static char *task_to_json(const DagTaskRecord *t) {
        json_t *j = json_object();
#define S(f) if (t->f) json_object_set_new(j, #f, json_string(t->f))
        S(dag_id); S(name); S(state); S(run_id); S(memo_key); S(value_json); S(error);
#undef S
        json_object_set_new(j, "position", json_integer(t->position));
        json_object_set_new(j, "attempts", json_integer(t->attempts));
        json_object_set_new(j, "cached", json_boolean(t->cached));
        json_object_set_new(j, "exit_code", json_integer(t->exit_code));
        json_object_set_new(j, "started", json_integer((json_int_t) t->started));
        json_object_set_new(j, "finished", json_integer((json_int_t) t->finished));
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

static DagTaskRecord *task_from_json(const char *text) {
        json_t *j = json_loads(text, 0, NULL);
        if (!j)
                return NULL;
        DagTaskRecord *t = xcalloc(1, sizeof(DagTaskRecord));
#define S(f) t->f = dup_or_null(j, #f)
        S(dag_id); S(name); S(state); S(run_id); S(memo_key); S(value_json); S(error);
#undef S
        t->position = (int) json_integer_value(json_object_get(j, "position"));
        t->attempts = (int) json_integer_value(json_object_get(j, "attempts"));
        t->cached = json_is_true(json_object_get(j, "cached"));
        t->exit_code = (int) json_integer_value(json_object_get(j, "exit_code"));
        t->started = usec_of(j, "started");
        t->finished = usec_of(j, "finished");
        json_decref(j);
        if (!t->name)
                return dag_task_record_free(t);
        return t;
}

static int task_cmp(const void *a, const void *b) {
        const DagTaskRecord *x = *(DagTaskRecord *const *) a, *y = *(DagTaskRecord *const *) b;
        return (x->position > y->position) - (x->position < y->position);
}

/* ---- reads: Redis in cluster mode, else the local store ---- */

static int redis_dag_get(Daemon *d, const char *tenant, const char *id, DagRunRecord **ret) {
        _cleanup_free_ char *text = NULL;
        int k = cluster_dag_get(queue(d), id, &text, NULL, NULL);
        if (k == -ENOENT && tenant) {
                /* A unique prefix of one of the tenant's ids. */
                _cleanup_strv_free_ char **ids = NULL;
                k = cluster_dag_list_ids(queue(d), tenant, 10000, &ids);
                if (k < 0)
                        return k;
                const char *found = NULL;
                for (size_t i = 0; ids && ids[i]; i++)
                        if (startswith(ids[i], id)) {
                                if (found)
                                        return -EEXIST;
                                found = ids[i];
                        }
                if (!found)
                        return -ENOENT;
                k = cluster_dag_get(queue(d), found, &text, NULL, NULL);
        }
        if (k < 0)
                return k;
        DagRunRecord *r = rec_from_json(text);
        if (!r)
                return -EIO;
        if (tenant && !streq(r->tenant ? r->tenant : "local", tenant)) {
                dag_run_record_free(r);
                return -ENOENT;
        }
        *ret = r;
        return 0;
}

int daemon_dag_get(Daemon *d, const char *tenant, const char *id, DagRunRecord **ret) {
        if (!d->cluster)
                return store_dag_get(d->store, tenant, id, ret);
        return redis_dag_get(d, tenant, id, ret);
}

int daemon_dag_tasks(Daemon *d, const char *id, DagTaskRecord ***ret, size_t *ret_n) {
        if (!d->cluster)
                return store_dag_tasks(d->store, id, ret, ret_n);
        _cleanup_free_ char *rec = NULL;
        _cleanup_strv_free_ char **tasks = NULL;
        int k = cluster_dag_get(queue(d), id, &rec, NULL, &tasks);
        if (k < 0)
                return k;
        DagTaskRecord **v = NULL;
        size_t n = 0;
        for (size_t i = 0; tasks && tasks[i]; i++) {
                DagTaskRecord *t = task_from_json(tasks[i]);
                if (!t)
                        continue;
                v = xrealloc(v, (n + 1) * sizeof(DagTaskRecord *));
                v[n++] = t;
        }
        if (n)
                qsort(v, n, sizeof(DagTaskRecord *), task_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

int daemon_dag_list(Daemon *d, const char *tenant, char *const *statuses, size_t limit, DagRunRecord ***ret,
                    size_t *ret_n) {
        if (!d->cluster)
                return store_dag_list(d->store, tenant, statuses, limit, ret, ret_n);
        /* Redis indexes a tenant's DAG runs by time only: the states are
         * looked for among the newest DAEMON_RUNS_LIST_MAX, until limit. */
        _cleanup_strv_free_ char **ids = NULL;
        int k = cluster_dag_list_ids(queue(d), tenant, statuses ? DAEMON_RUNS_LIST_MAX : limit, &ids);
        if (k < 0)
                return k;
        DagRunRecord **v = NULL;
        size_t n = 0;
        for (size_t i = 0; ids && ids[i] && n < limit; i++) {
                DagRunRecord *r = NULL;
                int g = redis_dag_get(d, NULL, ids[i], &r);
                if (g == -ENOENT) {
                        /* Its keys expired (--record-ttl after it ended):
                         * the index entry goes too. */
                        (void) cluster_dag_forget(queue(d), tenant, ids[i]);
                        continue;
                }
                if (g < 0)
                        continue;
                if (statuses && !strv_contains(statuses, r->status ?: "")) {
                        dag_run_record_free(r);
                        continue;
                }
                v = xrealloc(v, (n + 1) * sizeof(DagRunRecord *));
                v[n++] = r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- writes: the owner mirrors its store ---- */

int daemon_dag_cluster_create(Daemon *d, const DagRunRecord *rec, const char *files_json, const char *idem_key,
                              char **ret_first) {
        assert(d->cluster && rec);
        _cleanup_free_ char *text = rec_to_json(rec);
        return cluster_dag_create(queue(d), rec->id, rec->tenant ? rec->tenant : "local", rec->created, text,
                                  files_json, idem_key, ret_first);
}

/* ---- Idempotency-Key: Redis's in cluster mode, else the local store's ---- */

/* kv's namespace of a single node's keyed DAG submits: "TENANT/KEY" ->
 * "CREATED_USEC ID". */
#define DAG_IDEM_NS "dag-idempotency"

int daemon_dag_idempotent_first(Daemon *d, const char *tenant, const char *key, char **ret_id) {
        assert(d && tenant && key && ret_id);
        if (d->cluster)
                return cluster_dag_idempotent_first(queue(d), tenant, key, ret_id);
        _cleanup_free_ char *k = xasprintf("%s/%s", tenant, key), *v = NULL;
        int r = store_kv_get(d->store, DAG_IDEM_NS, k, &v);
        if (r < 0)
                return r;
        const char *sp = strchr(v, ' ');
        uint64_t created;
        _cleanup_free_ char *num = sp ? xstrndup(v, (size_t) (sp - v)) : NULL;
        if (!num || parse_uint64(num, &created) < 0 || !sp[1])
                return -ENOENT;
        if (now_realtime() - created > IDEMPOTENCY_WINDOW_USEC)
                return -ENOENT; /* past its 24 h: the key is free again */
        *ret_id = xstrdup(sp + 1);
        return 0;
}

int daemon_dag_idempotent_put(Daemon *d, const char *tenant, const char *key, const char *id, usec_t created) {
        assert(d && !d->cluster && tenant && key && id);
        _cleanup_free_ char *k = xasprintf("%s/%s", tenant, key);
        _cleanup_free_ char *v = xasprintf("%llu %s", (unsigned long long) created, id);
        /* The keys past their 24 h go as new ones come: the table holds
         * about a day's keyed DAG submits, not every one ever made. */
        if (created > IDEMPOTENCY_WINDOW_USEC)
                (void) store_kv_prune(d->store, DAG_IDEM_NS, created - IDEMPOTENCY_WINDOW_USEC);
        return store_kv_put(d->store, DAG_IDEM_NS, k, v);
}

int daemon_dag_cluster_sync(Daemon *d, const char *id, bool final) {
        if (!d->cluster)
                return 0;
        pthread_mutex_lock(&sync_lock);
        DagRunRecord *rec = NULL;
        DagTaskRecord **t = NULL;
        size_t n = 0;
        int k = store_dag_get(d->store, NULL, id, &rec);
        if (k >= 0)
                k = store_dag_tasks(d->store, id, &t, &n);
        if (k >= 0) {
                _cleanup_free_ char *text = rec_to_json(rec);
                char **names = xcalloc(n + 1, sizeof(char *)), **jsons = xcalloc(n + 1, sizeof(char *));
                for (size_t i = 0; i < n; i++) {
                        names[i] = t[i]->name;
                        jsons[i] = task_to_json(t[i]);
                }
                k = cluster_dag_put(queue(d), id, text, names, jsons, n, final);
                for (size_t i = 0; i < n; i++)
                        free(jsons[i]);
                free(names);
                free(jsons);
        }
        pthread_mutex_unlock(&sync_lock);
        dag_task_record_list_free(t, n);
        dag_run_record_free(rec);
        if (k == -ESTALE)
                log_warn("DAG run %s: this node no longer holds its lease; another node drives it", id);
        else if (k < 0 && k != -ECONNREFUSED && k != -ECOMM) /* those: the caller asks again, and says so */
                log_warn("DAG run %s: cannot write its state to Redis: %s", id, strerror(-k));
        return k;
}

void daemon_dag_cluster_release(Daemon *d, const char *id) {
        if (d->cluster)
                (void) cluster_dag_release(queue(d), id);
}

/* ---- takeover ---- */

/* Copies DAG run id from Redis into this node's store, with dir as its
 * base_dir; its task files (a JSON object of name -> text, or NULL) are the
 * caller's to write under dir. */
int daemon_dag_cluster_fetch(Daemon *d, const char *id, const char *dir, DagRunRecord **ret_rec,
                             json_t **ret_files) {
        _cleanup_free_ char *text = NULL, *files_text = NULL;
        _cleanup_strv_free_ char **tasks = NULL;
        int k = cluster_dag_get(queue(d), id, &text, &files_text, &tasks);
        if (k < 0)
                return k;
        DagRunRecord *rec = rec_from_json(text);
        if (!rec)
                return -EIO;
        free(rec->base_dir);
        rec->base_dir = xstrdup(dir);
        DagRunRecord *cur = NULL;
        if (store_dag_get(d->store, NULL, id, &cur) >= 0) {
                k = store_dag_update(d->store, rec);
                dag_run_record_free(cur);
        } else
                k = store_dag_insert(d->store, rec);
        for (size_t i = 0; k >= 0 && tasks && tasks[i]; i++) {
                DagTaskRecord *t = task_from_json(tasks[i]);
                if (t) {
                        k = store_dag_task_put(d->store, t);
                        dag_task_record_free(t);
                }
        }
        if (k < 0) {
                dag_run_record_free(rec);
                return k;
        }
        *ret_rec = rec;
        *ret_files = files_text ? json_loads(files_text, JSON_ALLOW_NUL, NULL) : NULL;
        return 0;
}

int daemon_dag_cluster_files(Daemon *d, const char *id, json_t **ret_files) {
        assert(d->cluster && id && ret_files);
        _cleanup_free_ char *text = NULL, *files_text = NULL;
        int k = cluster_dag_get(queue(d), id, &text, &files_text, NULL);
        if (k < 0)
                return k;
        *ret_files = files_text ? json_loads(files_text, JSON_ALLOW_NUL, NULL) : NULL;
        return 0;
}

int daemon_dag_cluster_leases(Daemon *d, char **owned, bool take, char ***ret_taken, char ***ret_cancel) {
        if (!d->cluster)
                return 0;
        return cluster_dag_leases(queue(d), owned, take, ret_taken, ret_cancel);
}

int daemon_dag_cluster_cancel(Daemon *d, const char *id) {
        if (!d->cluster)
                return -ENOENT;
        return cluster_dag_cancel(queue(d), id);
}
