/* DAG runs on the daemon: /v1/dags[/{id}[/tasks/{task}/logs]]
 * (docs/api.md "DAG runs", DESIGN §8).
 *
 * A submitted pipeline gets its own directory, DATA_DIR/dags/<id>/, which
 * holds the request's `files` (task sources by relative path) and is the
 * pipeline's base directory: no task file may name anything outside it.
 * The DAG run is recorded in the store before it is validated, then driven
 * by dag_run() on a thread of its own with resume_id set, so a fresh run and
 * a run resumed after a daemon restart take the same path: finished tasks
 * keep their results, the others run.
 *
 * Reads (GET) come from the store, which dag_run() keeps current; the
 * in-memory DDag list only serves cancel and ?wait=true.
 *
 * DAG tasks are runs like any other: dag_task_run() submits each through
 * daemon_run_submit(), so they wait in the durable run queue and share the
 * daemon's slots and the tenant's max_concurrent_per_tenant (the
 * pipeline's `concurrency` only caps how many it submits at once). A task
 * whose run was queued or running when the daemon died is adopted on
 * resume: the DAG waits for the run the queue recovered instead of
 * starting another. The number of DAG runs in flight is capped too.
 *
 * Who drives a DAG run is an flock held by the driving process (dag.h,
 * dag_run()), so a restart resumes it at once, whatever the old pid. */
#include <assert.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>

#include "dag.h"
#include "daemon.h"
#include "data.h"

#define DAEMON_MAX_ACTIVE_DAGS 64
/* One tenant's share of them, as it holds half the run queue
 * (server.max_queued_per_tenant's default): one tenant's pipelines,
 * their tasks queued behind its own concurrency, held all 64 and every
 * other tenant's DAG run (its schedules' too) was refused for as long as
 * they lasted. */
#define DAEMON_MAX_ACTIVE_DAGS_PER_TENANT (DAEMON_MAX_ACTIVE_DAGS / 2)
#define DAEMON_MAX_DAG_FILES 1000

typedef struct DDag {
        unsigned refs;          /* guarded by DaemonDags.lock */
        Daemon *d;
        char *id;
        char *tenant;
        Dag *dag;
        DagOptions opts;
        bool done;              /* guarded by DaemonDags.lock */
        bool end_written;       /* done, its end in Redis (cluster); guarded by DaemonDags.lock */
        struct DDag *next;
} DDag;

struct DaemonDags {
        pthread_mutex_t lock;
        pthread_cond_t cond;    /* a DAG run ended */
        DDag *list;             /* active DAG runs */
        char **settling;        /* ids whose final state a settle_thread writes (cluster) */
        unsigned active;        /* the list's DAG runs and the settle_threads */
};

typedef struct DagThreadArgs {
        Daemon *d;
        DDag *g;
} DagThreadArgs;

static void ddag_unref(Daemon *d, DDag *g) {
        pthread_mutex_lock(&d->dags->lock);
        bool last = --g->refs == 0;
        pthread_mutex_unlock(&d->dags->lock);
        if (!last)
                return;
        dag_free(g->dag);
        free(g->id);
        free(g->tenant);
        free(g);
}

static DDag *ddag_find(Daemon *d, const char *tenant, const char *id) {
        DDag *found = NULL;
        pthread_mutex_lock(&d->dags->lock);
        for (DDag *g = d->dags->list; g; g = g->next)
                if (streq(g->id, id) && streq(g->tenant, tenant)) {
                        g->refs++;
                        found = g;
                        break;
                }
        pthread_mutex_unlock(&d->dags->lock);
        return found;
}

/* ---- tasks as runs of the run queue ------------------------------------------ */

/* A copy of a finished run's result, for dag_run() to own. */
static RunResult *result_copy(const DRun *r) {
        const RunResult *src = r->result;
        RunResult *res = xcalloc(1, sizeof(RunResult));
        res->id = xstrdup(r->id);
        res->status = r->status;
        res->exit_code = src ? src->exit_code : EXIT_INTERNAL;
        if (src) {
                res->function = src->function ? xstrdup(src->function) : NULL;
                res->value_json = src->value_json ? xstrdup(src->value_json) : NULL;
                res->value_repr = src->value_repr ? xstrdup(src->value_repr) : NULL;
                res->error_type = src->error_type ? xstrdup(src->error_type) : NULL;
                res->error_message = src->error_message ? xstrdup(src->error_message) : NULL;
                res->traceback = src->traceback ? xstrdup(src->traceback) : NULL;
                res->outputs_json = src->outputs_json ? xstrdup(src->outputs_json) : NULL;
        }
        return res;
}

/* The record of a run that ended (a resumed DAG's task whose run finished
 * while no driver watched) as a result; NULL when it has not ended. */
static RunResult *result_from_record(Daemon *d, const char *id) {
        RunRecord *rec = NULL;
        if (daemon_run_record_get(d, NULL, id, &rec) < 0)
                return NULL;
        RunStatus st = run_status_from_string(rec->status);
        RunResult *res = NULL;
        if (run_status_is_final(st) && st != RUN_LOST) {
                res = xcalloc(1, sizeof(RunResult));
                res->id = xstrdup(id);
                res->status = st;
                res->exit_code = rec->exit_code;
                res->value_json = rec->value_json ? xstrdup(rec->value_json) : NULL;
                res->value_repr = rec->value_repr ? xstrdup(rec->value_repr) : NULL;
                res->error_type = rec->error_type ? xstrdup(rec->error_type) : NULL;
                res->error_message = rec->error_message ? xstrdup(rec->error_message) : NULL;
                res->traceback = rec->traceback ? xstrdup(rec->traceback) : NULL;
                res->outputs_json = rec->outputs_json ? xstrdup(rec->outputs_json) : NULL;
        }
        run_record_free(rec);
        return res;
}

/* Waits for r to end: 0 with *ret; when the daemon stops, -EINPROGRESS
 * when r goes on without it (left queued in the durable queue, or handed
 * to another node of the cluster: the resume waits for it by its id),
 * -ESHUTDOWN when the stop cancelled it (the task runs again). */
static int task_wait(Daemon *d, DDag *g, DRun *r, RunResult **ret) {
        bool cancel_sent = false;
        pthread_mutex_lock(&d->lock);
        r->dag_waits = true;
        for (;;) {
                if (r->done)
                        break;
                if (r->remote_left) {
                        /* The stopping gateway let the run go on elsewhere
                         * (remote_let_go()): the DAG run is handed over. */
                        pthread_mutex_unlock(&d->lock);
                        return -EINPROGRESS;
                }
                if (d->leave_queued && r->status == RUN_QUEUED && !r->cancel_requested) {
                        /* The stopping daemon leaves it queued in the
                         * durable queue; its thread is gone. */
                        pthread_mutex_unlock(&d->lock);
                        return -EINPROGRESS;
                }
                if (dag_cancelled(g->dag) && !cancel_sent) {
                        pthread_mutex_unlock(&d->lock);
                        (void) daemon_run_cancel(d, r);
                        cancel_sent = true;
                        pthread_mutex_lock(&d->lock);
                        continue;
                }
                (void) cond_wait_usec(&d->change_cond, &d->lock, 250 * USEC_PER_MSEC);
        }
        /* A run the stopping daemon cancelled was not the user's cancel:
         * the task runs again when the DAG resumes. */
        bool stop_cancel = r->status == RUN_CANCELLED && d->leave_queued && !dag_cancelled(g->dag);
        bool handed_back = r->handed_back;
        pthread_mutex_unlock(&d->lock);
        if (stop_cancel)
                return handed_back ? -EINPROGRESS : -ESHUTDOWN;
        *ret = result_copy(r);
        return 0;
}

/* Cluster mode, resuming a DAG run another gateway drove: the task's run
 * (queued or running on some worker) is waited for by its id, reading its
 * record in Redis (its end is published to the dead gateway's channel, so
 * this polls, every 200 ms). -ENOENT when there is no such run (the
 * gateway died, or stopped, before submitting it: the caller submits it
 * under that same id, so a late submit of the old owner adds nothing),
 * -ESRCH when it ended lost (its node died: the caller submits anew),
 * -EINPROGRESS when this daemon stops (the run goes on). */
static int remote_task_wait(Daemon *d, DDag *g, const char *id, RunResult **ret) {
        bool cancel_sent = false;
        for (;;) {
                RunRecord *rec = NULL;
                int k = daemon_run_record_get(d, NULL, id, &rec);
                if (k == -ENOENT)
                        return -ENOENT;
                RunStatus st = k >= 0 ? run_status_from_string(rec->status) : RUN_QUEUED;
                run_record_free(rec);
                if (k >= 0 && run_status_is_final(st)) {
                        RunResult *res = result_from_record(d, id);
                        if (!res)
                                return -ESRCH; /* lost */
                        *ret = res;
                        return 0;
                }
                if (dag_cancelled(g->dag) && !cancel_sent) {
                        (void) daemon_cluster_cancel(d, id);
                        cancel_sent = true;
                }
                pthread_mutex_lock(&d->lock);
                bool stopping = d->leave_queued;
                pthread_mutex_unlock(&d->lock);
                if (stopping)
                        return -EINPROGRESS; /* it goes on: the next owner waits for it */
                usleep(200 * 1000);
        }
}

static bool daemon_stopping(Daemon *d) {
        pthread_mutex_lock(&d->lock);
        bool stopping = d->leave_queued;
        pthread_mutex_unlock(&d->lock);
        return stopping;
}

/* DagStoppingFn: past the drain, the runs not started stay queued and a
 * DAG run's task that waits for Redis is left for the resume. */
static bool dag_caller_stopping(void *userdata) {
        DDag *g = userdata;
        return daemon_stopping(g->d);
}

/* Cluster mode: writes DAG run id's state to Redis
 * (daemon_dag_cluster_sync(); g: its DDag, or NULL). A Redis that did not
 * answer (-ECONNREFUSED; -ECOMM, the answer lost: dagput.lua sets the
 * whole state, so a write that landed written again changes nothing) is
 * asked again, backing off to 1 s, until it answers, the daemon stops past
 * its drain (the DAG run is left for the resume) or, for a write that is
 * not the last, the DAG run is cancelled (its final write follows). The
 * DAG run stays in this node's list meanwhile, so its lease is refreshed
 * whenever Redis answers the lease tick. Before, a blip was only logged: a
 * final write lost left the DAG run running in Redis, another gateway
 * resumed it, and this gateway's SQLite kept an ending of its own. */
static int dag_sync(Daemon *d, DDag *g, const char *id, bool final) {
        if (!d->cluster)
                return 0;
        unsigned backoff_ms = 50, attempts = 0;
        for (;;) {
                int k = daemon_dag_cluster_sync(d, id, final);
                attempts++;
                if (k != -ECONNREFUSED && k != -ECOMM) {
                        if (k >= 0 && attempts > 1)
                                log_info("DAG run %s: its state is written to Redis (attempt %u)", id, attempts);
                        return k;
                }
                if (attempts == 1)
                        log_warn("DAG run %s: the cluster's Redis did not answer the write of its %sstate (%s); "
                                 "asking again",
                                 id, final ? "final " : "", strerror(-k));
                if (daemon_stopping(d)) {
                        log_warn("DAG run %s: stopping with its %sstate unwritten to Redis; it is resumed from the "
                                 "state Redis holds",
                                 id, final ? "final " : "");
                        return k;
                }
                if (!final && g && dag_cancelled(g->dag))
                        return k;
                struct timespec ts = { 0, (long) backoff_ms * 1000000L };
                nanosleep(&ts, NULL);
                backoff_ms = MIN(backoff_ms * 2, 1000u);
        }
}

/* -EINPROGRESS (the run goes on; the resume waits for it by the id the
 * task records) only for the run the DAG run records for the task: its
 * adopted run, or the run of spec.run_id. A run submitted anew in place
 * of an adopted one that ended lost is not recorded: -ESHUTDOWN. */
static int stopped_with(const DagTaskRun *tr, const char *submit_id, int k) {
        if (k == -EINPROGRESS && tr->adopt_run_id && !streq(tr->adopt_run_id, submit_id))
                return -ESHUTDOWN;
        return k;
}

/* DagRunFn: the task as a run of the daemon's queue (see the top). */
static int dag_task_run(const DagTaskRun *tr, void *userdata, RunResult **ret_result) {
        DDag *g = userdata;
        Daemon *d = g->d;
        DRun *r = NULL;
        const char *submit_id = tr->spec.run_id;

        /* Cluster mode: the task's state (its run id) is in Redis before
         * its run is submitted, so a gateway that takes the DAG run over
         * waits for that run instead of starting another; a node that lost
         * its lease stops driving the DAG run (fenced). */
        if (d->cluster && dag_sync(d, g, g->id, false) == -ESTALE)
                return -ESHUTDOWN;
        if (tr->adopt_run_id) {
                if (daemon_run_find(d, g->tenant, tr->adopt_run_id, &r) >= 0) {
                        int k = task_wait(d, g, r, ret_result);
                        drun_unref(d, r);
                        return k;
                }
                if (d->cluster) {
                        int k = remote_task_wait(d, g, tr->adopt_run_id, ret_result);
                        if (k == -ENOENT)
                                submit_id = tr->adopt_run_id;
                        else if (k != -ESRCH)
                                return k;
                }
                RunResult *res = result_from_record(d, tr->adopt_run_id);
                if (res) {
                        *ret_result = res;
                        return 0;
                }
        }
        RunRequest req = {
                .source = (char *) tr->spec.source,
                .source_len = tr->spec.source_len,
                .filename = (char *) tr->spec.filename,
                .function = (char *) tr->spec.function,
                .args_json = (char *) tr->spec.args_json,
                .kwargs_json = (char *) tr->spec.kwargs_json,
                .limits = tr->spec.limits,
                .data = (char **) tr->data_refs,
                .output_data = (char *) tr->output_data,
                /* Names: the run manager opens them in the tenant (daemon-secrets.c). */
                .secrets = (char **) tr->secrets,
                .env = (char **) tr->env,
        };
        for (unsigned backoff_ms = 50;;) {
                if (dag_cancelled(g->dag)) {
                        RunResult *res = xcalloc(1, sizeof(RunResult));
                        res->id = xstrdup(tr->spec.run_id);
                        res->status = RUN_CANCELLED;
                        res->exit_code = EXIT_LIMIT;
                        res->error_type = xstrdup("Cancelled");
                        res->error_message = xstrdup("the run was cancelled before it started");
                        *ret_result = res;
                        return 0;
                }
                int k = daemon_run_submit(d, submit_id, g->tenant, &req, NULL, 0, false, &r);
                if (k == -ESHUTDOWN)
                        return -ESHUTDOWN;
                /* A cluster's Redis that did not answer the submit: asked
                 * again under the same id (submit.lua answers a submit that
                 * landed with its run), as for a full queue, until it
                 * answers, the DAG run is cancelled or the daemon stops.
                 * Before, a blip failed the task ("the engine could not run
                 * the task: Connection refused"), and the DAG run. */
                bool unanswered = d->cluster && (k == -ECONNREFUSED || k == -ECOMM);
                if (unanswered && dag_caller_stopping(g))
                        /* The submit may have landed: the resume looks
                         * for the run by its id, and submits it under
                         * that id when it did not (submit.lua). */
                        return stopped_with(tr, submit_id, -EINPROGRESS);
                if (k != -EBUSY && k != -EUSERS && !unanswered) {
                        if (k < 0)
                                return k;
                        break;
                }
                if (unanswered)
                        log_warn("DAG run %s: the cluster's Redis did not answer the submit of task %s's run (%s); "
                                 "asking again",
                                 g->id, tr->task, strerror(-k));
                /* The queue is full: a task waits like a client that got
                 * 429 would retry. */
                struct timespec ts = { 0, (long) backoff_ms * 1000000L };
                nanosleep(&ts, NULL);
                backoff_ms = MIN(backoff_ms * 2, 1000u);
        }
        int k = task_wait(d, g, r, ret_result);
        drun_unref(d, r);
        return stopped_with(tr, submit_id, k);
}

static void dag_task_cancel(const char *run_id, void *userdata) {
        DDag *g = userdata;
        DRun *r = NULL;
        if (daemon_run_find(g->d, g->tenant, run_id, &r) < 0)
                return;
        (void) daemon_run_cancel(g->d, r);
        drun_unref(g->d, r);
}

typedef struct SettleArgs {
        Daemon *d;
        char *id;
} SettleArgs;

/* Takes id out of the settling ids (one of them) and the active count. */
static void settle_done(Daemon *d, const char *id) {
        pthread_mutex_lock(&d->dags->lock);
        char **v = d->dags->settling;
        for (size_t i = 0; v && v[i]; i++)
                if (streq(v[i], id)) {
                        free(v[i]);
                        memmove(v + i, v + i + 1, (strv_length(v + i + 1) + 1) * sizeof(char *));
                        break;
                }
        d->dags->active--;
        pthread_cond_broadcast(&d->dags->cond);
        pthread_mutex_unlock(&d->dags->lock);
}

static void *settle_thread(void *p) {
        SettleArgs *a = p;
        (void) dag_sync(a->d, NULL, a->id, true);
        settle_done(a->d, a->id);
        free(a->id);
        free(a);
        return NULL;
}

/* Cluster mode: writes the final state of DAG run id, which no thread of
 * this node drives, without waiting on a Redis outage: one try on the
 * caller's thread (an HTTP request's, the lease tick's); a Redis that did
 * not answer is asked again by a thread of its own, as dag_sync() does.
 * Meanwhile the id counts as an active DAG run (the stop's drain waits
 * for it, as for a DAG run's own final write) and its lease is refreshed
 * with the others', so no gateway takes over a DAG run this one refused.
 * Before, a POST /v1/dags refused after its record (429, too many DAG
 * runs in flight) waited on the request's thread for as long as Redis was
 * away. */
static int dag_settle(Daemon *d, const char *id) {
        if (!d->cluster)
                return 0;
        int k = daemon_dag_cluster_sync(d, id, true);
        if (k != -ECONNREFUSED && k != -ECOMM)
                return k;
        SettleArgs *a = xcalloc(1, sizeof(SettleArgs));
        a->d = d;
        a->id = xstrdup(id);
        pthread_mutex_lock(&d->dags->lock);
        d->dags->settling = strv_append(d->dags->settling, id);
        d->dags->active++;
        pthread_mutex_unlock(&d->dags->lock);
        int e = thread_start_detached(settle_thread, a);
        if (e != 0) {
                /* Left running in Redis: its lease lapses and a gateway
                 * resumes it (the local record says why it ended). */
                log_warn("DAG run %s: cannot write its final state to Redis later: %s", id, strerror(e));
                settle_done(d, id);
                free(a->id);
                free(a);
        }
        return k;
}

/* Ends the record of a DAG run dag_run() refused (validation) or could not
 * drive: the record says why, and it is no longer resumed. */
static int record_failure(Daemon *d, DDag *ddag, const char *tenant, const char *id, const char *status,
                          const char *error) {
        DagRunRecord *cur = NULL;
        int k = store_dag_get(d->store, tenant, id, &cur);
        if (k < 0)
                return k;
        free(cur->status);
        cur->status = xstrdup(status);
        free(cur->error);
        cur->error = error ? xstrdup(error) : NULL;
        free(cur->owner);
        cur->owner = NULL;
        cur->finished = now_realtime();
        (void) store_dag_update(d->store, cur);
        dag_run_record_free(cur);
        return ddag ? dag_sync(d, ddag, id, true) : dag_settle(d, id);
}

/* DagEventFn: a task changed state, or the DAG run started. Wakes whoever
 * waits for a change (the condition, and the suspended connections): a DAG
 * run's event stream (daemon-ui.c, GET /v1/dags/{id}/events) sends the new
 * states at once. */
static void dag_changed(const Dag *dag, const DagEvent *ev, void *userdata) {
        DDag *g = userdata;
        Daemon *d = g->d;
        if (ev->type == DAG_EVENT_TICK || ev->type == DAG_EVENT_WARNING)
                return;
        /* Once ended, dag_thread wrote the final state (and gave up the
         * lease): the wake-up after it has nothing to mirror. */
        const char *st = dag_status(dag);
        if (d->cluster && dag_id(dag) && st && !dag_status_ended(st))
                (void) dag_sync(d, g, dag_id(dag), false);
        pthread_mutex_lock(&d->lock);
        pthread_cond_broadcast(&d->change_cond);
        pthread_mutex_unlock(&d->lock);
        daemon_wait_kick(d->dags); /* the streams park on any change */
}

static void *dag_thread(void *p) {
        DagThreadArgs *a = p;
        Daemon *d = a->d;
        DDag *g = a->g;
        _cleanup_free_ char *err = NULL;
        free(a);

        bool written = false; /* its end, in Redis */
        int r = dag_run(g->dag, d->engine, d->catalog, &g->opts, dag_changed, g, &err);
        if (r == -EBUSY || r == -ESHUTDOWN) {
                /* Another live process drives it, or this one stops: the
                 * record stays running for whoever resumes it (in a
                 * cluster, another gateway at once). */
                log_info("DAG run %s: %s", g->id, err ? err : strerror(-r));
                daemon_dag_cluster_release(d, g->id);
        } else if (r < 0) {
                log_warn("DAG run %s: %s", g->id, err ? err : strerror(-r));
                /* deps_failed: a task's requirements cannot be resolved
                 * (exit 4 on both of the CLI's paths, as for a run). */
                written = record_failure(d, g, g->tenant, g->id,
                                         r == -ENOPKG                   ? "deps_failed"
                                         : r == -EINVAL || r == -ENOENT ? "invalid"
                                                                        : "failed",
                                         err ? err : strerror(-r)) >= 0;
        } else {
                log_info("DAG run %s: %s", g->id, dag_status(g->dag));
                written = dag_sync(d, g, g->id, true) >= 0;
        }

        pthread_mutex_lock(&d->dags->lock);
        g->done = true;
        g->end_written = written;
        for (DDag **pp = &d->dags->list; *pp; pp = &(*pp)->next)
                if (*pp == g) {
                        *pp = g->next;
                        break;
                }
        d->dags->active--;
        pthread_cond_broadcast(&d->dags->cond);
        daemon_wait_kick(g); /* its ?wait=true requests */
        pthread_mutex_unlock(&d->dags->lock);
        dag_changed(g->dag, &(DagEvent){ .type = DAG_EVENT_STARTED }, g); /* the end is recorded */
        ddag_unref(d, g);
        return NULL;
}

/* The tenant's DAG runs in flight here (d->dags->lock held). */
static unsigned tenant_active_locked(Daemon *d, const char *tenant) {
        unsigned n = 0;
        for (DDag *g = d->dags->list; g; g = g->next)
                n += !g->done && streq(g->tenant, tenant);
        return n;
}

/* Takes dag. *ret (may be NULL) gets a reference. -EBUSY when the daemon
 * drives DAEMON_MAX_ACTIVE_DAGS; with share, -EUSERS when the tenant
 * drives its share of them (a resume after a restart is not refused for
 * it: those DAG runs were accepted). */
static int ddag_start(Daemon *d, const char *id, const char *tenant, Dag *dag, const DagOptions *o, bool share,
                      DDag **ret) {
        pthread_mutex_lock(&d->dags->lock);
        int busy = d->dags->active >= DAEMON_MAX_ACTIVE_DAGS                                       ? -EBUSY
                   : share && tenant_active_locked(d, tenant) >= DAEMON_MAX_ACTIVE_DAGS_PER_TENANT ? -EUSERS
                                                                                                   : 0;
        if (busy < 0) {
                pthread_mutex_unlock(&d->dags->lock);
                dag_free(dag);
                return busy;
        }
        DDag *g = xcalloc(1, sizeof(DDag));
        g->refs = ret ? 2 : 1;
        g->d = d;
        g->id = xstrdup(id);
        g->tenant = xstrdup(tenant);
        g->dag = dag;
        g->opts = *o;
        g->opts.tenant = g->tenant;
        g->opts.resume_id = g->id;
        g->opts.dag_id = NULL;
        g->opts.run = dag_task_run;
        g->opts.cancel = dag_task_cancel;
        g->opts.stopping = dag_caller_stopping;
        g->opts.run_userdata = g;
        g->next = d->dags->list;
        d->dags->list = g;
        d->dags->active++;
        pthread_mutex_unlock(&d->dags->lock);

        DagThreadArgs *a = xcalloc(1, sizeof(DagThreadArgs));
        a->d = d;
        a->g = g;
        int k = thread_start_detached(dag_thread, a);
        if (k != 0) {
                free(a);
                pthread_mutex_lock(&d->dags->lock);
                for (DDag **pp = &d->dags->list; *pp; pp = &(*pp)->next)
                        if (*pp == g) {
                                *pp = g->next;
                                break;
                        }
                d->dags->active--;
                g->done = true;
                g->refs = 1;
                pthread_mutex_unlock(&d->dags->lock);
                ddag_unref(d, g);
                return -k;
        }
        if (ret)
                *ret = g;
        return 0;
}

static char *dags_root(Daemon *d) {
        return path_join_many(d->data_dir, "dags", NULL);
}

/* Every task gets what the config grants tenant (absent limits become the
 * tenant's defaults); -EPERM with *ret_error naming the task when one asks
 * for more (limits or retries). */
static int dag_grant_limits(Daemon *d, const char *tenant, Dag *dag, char **ret_error) {
        int r = 0;
        pthread_rwlock_rdlock(&d->cfg_lock);
        for (size_t i = 0; i < dag_n_tasks(dag) && r >= 0; i++) {
                DagTaskInfo ti;
                RunLimits granted;
                _cleanup_free_ char *err = NULL;
                dag_task_info(dag, i, &ti);
                r = daemon_limits_grant(&d->cfg, tenant, &ti.limits, &granted, &err);
                /* A task's retries run it again, as a run's do: the same
                 * grant (its runs' own attempts are lowered at submit). */
                int max_attempts;
                if (r >= 0 && ti.retries > 0)
                        r = daemon_retries_grant(&d->cfg, tenant, ti.retries, &max_attempts, &err);
                if (r < 0)
                        *ret_error = xasprintf("task '%s': %s", ti.name, err);
                else
                        dag_task_set_limits(dag, i, &granted);
        }
        pthread_rwlock_unlock(&d->cfg_lock);
        return r;
}

/* ---- startup: resume ------------------------------------------------------- */

int daemon_dags_init(Daemon *d, char **ret_error) {
        DataConfig cfg = {};

        d->dags = xcalloc(1, sizeof(struct DaemonDags));
        pthread_mutex_init(&d->dags->lock, NULL);
        pthread_cond_init(&d->dags->cond, NULL);

        /* The same place the CLI uses (cli_data_open): one catalog per home. */
        _cleanup_free_ char *data_root = path_join_many(d->data_dir, "data", NULL);
        cfg.root = data_root;
        cfg.max_dataset_bytes = d->cfg.data_max_bytes;
        data_config_from_env(&cfg, d->data_dir);
        /* URL datasets are fetched from the daemon's host on a tenant's
         * behalf: only public addresses unless the operator opens more. */
        cfg.url_restrict = true;
        cfg.url_allow = d->cfg.data_url_allow;
        /* The tenant's storage cap, datasets and function code together
         * (daemon-quota.c), in place of the catalog's data-only one. */
        cfg.quota = daemon_stored_data_quota;
        cfg.quota_userdata = d;
        int r = data_catalog_new(d->store, &cfg, &d->catalog, ret_error);
        if (r >= 0 && d->cluster)
                daemon_cluster_data_attach(d);
        return r;
}

int daemon_dags_resume(Daemon *d) {
        int r;
        /* In a cluster, Redis says which DAG runs have no live driver: the
         * lease tick takes them over (daemon-dag-cluster.c). */
        if (d->cluster)
                return 0;
        /* Only pipelines submitted over HTTP (their base directory under
         * DATA_DIR/dags/) are the daemon's to resume: a `pysprinter dag run`
         * that died belongs to its user and may name host paths. */
        _cleanup_free_ char *root = dags_root(d);
        _cleanup_free_ char *prefix = xasprintf("%s/", root);
        DagRunRecord **v = NULL;
        size_t n = 0;
        r = store_dag_list(d->store, NULL, NULL, 100000, &v, &n);
        if (r < 0)
                return r;
        unsigned resumed = 0;
        for (size_t i = 0; i < n; i++) {
                DagRunRecord *rec = v[i];
                if (!rec->status || !streq(rec->status, "running") || !rec->base_dir ||
                    !startswith(rec->base_dir, prefix))
                        continue;
                if (daemon_dag_resume_record(d, rec) >= 0)
                        resumed++;
        }
        dag_run_record_list_free(v, n);
        if (resumed)
                log_info("resumed %u DAG run(s) interrupted by the last stop", resumed);
        return 0;
}

int daemon_dag_resume_record(Daemon *d, const DagRunRecord *rec) {
        int r;
        {
                /* Whether another live process still drives it is the
                 * ownership lock's to say (dag_run() takes it). */
                Dag *dag = NULL;
                _cleanup_free_ char *err = NULL;
                r = dag_load_with(d->store, rec->tenant, rec->id, dag_load_confined, NULL, &dag, NULL, &err);
                if (r >= 0) {
                        r = dag_grant_limits(d, rec->tenant ? rec->tenant : "local", dag, &err);
                        if (r < 0)
                                dag = dag_free(dag);
                }
                if (r < 0) {
                        log_warn("DAG run %s cannot be resumed: %s", rec->id, err ? err : strerror(-r));
                        (void) record_failure(d, NULL, rec->tenant, rec->id, "failed", err ? err : "cannot be resumed");
                        return r;
                }
                /* A cluster's takeover continues a DAG run another
                 * gateway drove: a task it recorded failed or cancelled
                 * keeps that end (its run is not run again), so the DAG
                 * run ends as that gateway ended it when it could not
                 * write its end (stopped while Redis was away). */
                DagOptions o = { .sandbox = d->cfg.sandbox, .keep_ended = d->cluster };
                dag_options_restore(rec->options_json, &o);
                r = ddag_start(d, rec->id, rec->tenant ? rec->tenant : "local", dag, &o, false, NULL);
                if (r < 0)
                        log_warn("DAG run %s cannot be resumed: %s", rec->id, strerror(-r));
                return r;
        }
}

char **daemon_dags_active_ids(Daemon *d) {
        char **ids = NULL;
        pthread_mutex_lock(&d->dags->lock);
        for (DDag *g = d->dags->list; g; g = g->next)
                ids = strv_append(ids, g->id);
        for (char **i = d->dags->settling; i && *i; i++)
                ids = strv_append(ids, *i);
        pthread_mutex_unlock(&d->dags->lock);
        return ids;
}

unsigned daemon_dags_drain(Daemon *d, usec_t timeout) {
        if (!d->dags)
                return 0;
        usec_t until = now_monotonic() + timeout;
        pthread_mutex_lock(&d->dags->lock);
        while (d->dags->active > 0 && now_monotonic() < until)
                (void) cond_wait_usec(&d->dags->cond, &d->dags->lock, 200 * USEC_PER_MSEC);
        unsigned left = d->dags->active;
        pthread_mutex_unlock(&d->dags->lock);
        return left;
}

/* ---- the request ------------------------------------------------------------ */

int daemon_dag_write_files(const char *dir, json_t *files, char **ret_error) {
        const char *name;
        json_t *v;
        if (json_object_size(files) > DAEMON_MAX_DAG_FILES) {
                *ret_error = xasprintf("field 'files' holds more than %d files", DAEMON_MAX_DAG_FILES);
                return -EINVAL;
        }
        json_object_foreach(files, name, v) {
                if (!json_is_string(v)) {
                        *ret_error = xasprintf("field 'files.%s' must be a string (the file's text)", name);
                        return -EINVAL;
                }
                _cleanup_free_ char *why = NULL;
                if (dag_file_check(NULL, name, &why) < 0) {
                        *ret_error = xasprintf("field 'files': %s", why);
                        return -EINVAL;
                }
        }
        json_object_foreach(files, name, v) {
                _cleanup_free_ char *path = path_join_many(dir, name, NULL);
                const char *slash = strrchr(name, '/');
                if (slash) {
                        _cleanup_free_ char *sub = path_join_many(dir, name, NULL);
                        sub[strlen(dir) + 1 + (size_t) (slash - name)] = 0;
                        int r = mkdir_p(sub, 0750);
                        if (r < 0) {
                                *ret_error = xasprintf("cannot create the directory of '%s': %s", name, strerror(-r));
                                return r;
                        }
                }
                /* O_EXCL|O_NOFOLLOW: the directory is new and holds only
                 * what this request wrote, so nothing may be a link. */
                int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
                if (fd < 0) {
                        int r = -errno;
                        *ret_error = xasprintf("cannot write '%s': %s", name, strerror(-r));
                        return r;
                }
                int r = write_full(fd, json_string_value(v), json_string_length(v));
                if (close(fd) < 0 && r >= 0)
                        r = -errno;
                if (r < 0) {
                        *ret_error = xasprintf("cannot write '%s': %s", name, strerror(-r));
                        return r;
                }
        }
        return 0;
}

/* A JSON parameter as dag_parse() reads it: strings as given, other values
 * as JSON text (a YAML plain scalar or flow collection reads them back). */
static char *param_value(json_t *v) {
        if (json_is_string(v))
                return xstrdup(json_string_value(v));
        return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* ---- JSON views ---------------------------------------------------------------- */

/* local: the tasks from this node's store, not Redis (dag_response_held()). */
static json_t *dag_record_json_from(Daemon *d, const DagRunRecord *rec, bool with_tasks, bool local) {
        DDag *g = ddag_find(d, rec->tenant ? rec->tenant : "local", rec->id);
        DagTaskRecord **t = NULL;
        size_t n = 0;
        if (with_tasks)
                (void) (local ? store_dag_tasks(d->store, rec->id, &t, &n) : daemon_dag_tasks(d, rec->id, &t, &n));
        /* The one DAG object (store-json.c), as the CLI renders it too:
         * as nodes, each large result held as its text (shared.h), never
         * printed to text and parsed back. */
        json_t *j = dag_record_object(rec, t, n, with_tasks);
        dag_task_record_list_free(t, n);
        if (!j)
                j = json_pack("{s:s, s:s}", "id", rec->id, "status", rec->status ? rec->status : "running");
        const char *status = rec->status ? rec->status : "running";
        /* Pending (its thread has not reached dag_run() yet) is shown as
         * validating too: its tasks are checked first thing. */
        const char *live = g ? dag_status(g->dag) : NULL;
        if (live && streq(status, "running") && (streq(live, "pending") || streq(live, "validating")))
                json_object_set_new(j, "status", json_string("validating"));
        /* Before validation ends no task is recorded yet: show the
         * pipeline's tasks as pending. */
        /* Cluster: another gateway drives it and validates it still (no
         * task recorded yet, its record `running`): shown as that gateway
         * shows it, validating with its tasks pending, from the record's
         * pipeline and files. Before, every other gateway said `running`
         * with no task: two answers for one DAG run. */
        Dag *parsed = NULL;
        if (!g && !local && d->cluster && streq(status, "running")) {
                DagTaskRecord **t2 = NULL;
                size_t n2 = 0;
                bool none = with_tasks ? n == 0 : daemon_dag_tasks(d, rec->id, &t2, &n2) >= 0 && n2 == 0;
                dag_task_record_list_free(t2, n2);
                if (none) {
                        json_object_set_new(j, "status", json_string("validating"));
                        _cleanup_free_ char *err = NULL;
                        if (with_tasks && daemon_dag_parse_recorded(d, rec, &parsed, &err) < 0)
                                parsed = NULL;
                }
        }
        Dag *shown = g ? g->dag : parsed;
        if (with_tasks && n == 0 && shown && dag_n_tasks(shown)) {
                json_t *tasks = json_object_get(j, "tasks");
                for (size_t i = 0; i < dag_n_tasks(shown); i++) {
                        DagTaskInfo info;
                        dag_task_info(shown, i, &info);
                        json_array_append_new(tasks, json_pack("{s:s, s:s}", "name", info.name, "state", "pending"));
                }
                json_object_set_new(json_object_get(j, "counts"), "pending",
                                    json_integer((json_int_t) dag_n_tasks(shown)));
        }
        dag_free(parsed);
        if (g)
                ddag_unref(d, g);
        return j;
}

static json_t *dag_record_json(Daemon *d, const DagRunRecord *rec, bool with_tasks) {
        return dag_record_json_from(d, rec, with_tasks, false);
}

int daemon_dag_json(Daemon *d, const char *tenant, const char *id, json_t **ret) {
        assert(d && tenant && id && ret);
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, tenant, id, &rec);
        if (r < 0)
                return r;
        *ret = dag_record_json(d, rec, true);
        dag_run_record_free(rec);
        return 0;
}

/* id: the id or prefix asked for (NULL for a list). */
static struct MHD_Response *dag_errno(int r, const char *id, unsigned *ret_status) {
        const char *code;
        unsigned status = daemon_errno_status(r, &code);
        switch (r) {
        case -ENOENT:
                return daemon_error_response(status, code, ret_status, "DAG run not found");
        case -EEXIST:
                return daemon_error_response(status, code, ret_status,
                                             "'%s' matches several DAG runs; give more of the id", id ?: "");
        case -EBUSY:
                return daemon_error_response(status, code, ret_status,
                                             "too many DAG runs in flight (%d); retry later", DAEMON_MAX_ACTIVE_DAGS);
        default:
                return daemon_error_response(status, code, ret_status, "DAG run: %s", strerror(-r));
        }
}

static struct MHD_Response *dag_response_of(Daemon *d, DagRunRecord *rec, bool local, const char *id, unsigned status,
                                            unsigned *ret_status) {
        /* 0: 200 once it ended, else 202 (a wait that stopped short). */
        if (status == 0)
                status = dag_status_ended(rec->status) ? 200 : 202;
        json_t *j = dag_record_json_from(d, rec, true, local);
        dag_run_record_free(rec);
        struct MHD_Response *resp = daemon_json_response(status, j, ret_status);
        if (resp && (status == 202 || status == 201)) {
                _cleanup_free_ char *loc = xasprintf("/v1/dags/%s", id);
                MHD_add_response_header(resp, "Location", loc);
        }
        return resp;
}

static struct MHD_Response *dag_response(Daemon *d, const char *tenant, const char *id, unsigned status,
                                         unsigned *ret_status) {
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, tenant, id, &rec);
        if (r < 0)
                return dag_errno(r, id, ret_status);
        return dag_response_of(d, rec, false, id, status, ret_status);
}

/* dag_response() for a DAG run this node drives or drove (g: its DDag, a
 * reference the caller holds), answering a request that created it or
 * waits on it. In a cluster whose Redis does not answer, this node's own
 * copy (what it mirrors to Redis) answers, never 503: a 503 says nothing
 * was done, and the client that gives up on it loses a DAG run that has
 * an id. The copy is shown as 202 with its Location (the wait cannot go
 * on: ask GET /v1/dags/ID?wait=true), and `running` while its end is not
 * known to be in Redis (the DAG thread's final write landed): an end
 * Redis lacks is resumed from Redis's state, by this node or another. */
static struct MHD_Response *dag_response_held(Daemon *d, DDag *g, const char *tenant, const char *id, unsigned status,
                                              unsigned *ret_status) {
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, tenant, id, &rec);
        if (r >= 0)
                return dag_response_of(d, rec, false, id, status, ret_status);
        if (!d->cluster || (r != -ECONNREFUSED && r != -ECOMM) || store_dag_get(d->store, tenant, id, &rec) < 0)
                return dag_errno(r, id, ret_status);
        pthread_mutex_lock(&d->dags->lock);
        bool written = g && g->done && g->end_written;
        pthread_mutex_unlock(&d->dags->lock);
        if (dag_status_ended(rec->status) && !written) {
                free(rec->status);
                rec->status = xstrdup("running");
        }
        if (status == 0 || status == 200)
                status = dag_status_ended(rec->status) ? 200 : 202;
        log_info("DAG run %s: Redis did not answer its read (%s); answered from this node's copy", id, strerror(-r));
        return dag_response_of(d, rec, true, id, status, ret_status);
}

/* A POST ?wait=true waiting for its DAG run (daemon_call_wait()). */
typedef struct DagWait {
        Daemon *d;
        DDag *g;        /* a reference */
        char *id;
        bool cancel;    /* a DELETE: 200 either way, a hang-up cancels nothing more */
        bool get;       /* a GET ?wait=true: 202 at the timeout, a hang-up cancels nothing */
} DagWait;

static void dag_wait_free(void *p) {
        DagWait *w = p;
        ddag_unref(w->d, w->g);
        free(w->id);
        free(w);
}

/* 200 once g ended, 202 at the timeout (or the drain); NULL when the
 * client hung up (the DAG run is cancelled). */
static struct MHD_Response *dag_wait_then(const DaemonCall *call, void *p, DaemonWake why, unsigned *ret_status) {
        DagWait *w = p;
        Daemon *d = w->d;
        pthread_mutex_lock(&d->dags->lock);
        bool done = w->g->done;
        pthread_mutex_unlock(&d->dags->lock);
        if (!done && why == DAEMON_WAKE_EVENT)
                return DAEMON_SUSPENDED;
        if (!done && why == DAEMON_WAKE_GONE && (w->cancel || w->get))
                return NULL;
        if (!done && why == DAEMON_WAKE_GONE) {
                log_info("DAG run %s: client went away; cancelling", w->id);
                dag_cancel(w->g->dag);
                return NULL;
        }
        /* Done is this node's DAG thread stopping: in a cluster also when
         * it was fenced (another gateway took the DAG run over while this
         * one was stopped or cut off), the DAG run going on there. Its
         * answer is then 202, in flight, as at a timeout: before, 200 with
         * the DAG run `running`, which a client took as its end. */
        return dag_response_held(d, w->g, call->tenant, w->id, w->cancel ? 200 : done ? 0 : 202, ret_status);
}

/* ---- cluster: waiting for a DAG run another node drives ---------------------
 * A ?wait=true or a cancel on a gateway that does not drive the DAG run
 * has no local DDag to wait on: it reads the run's record in Redis
 * (daemon_call_poll()) until it ended or the wait's deadline. */

static bool dag_ended_in_redis(Daemon *d, void *id) {
        DagRunRecord *rec = NULL;
        if (daemon_dag_get(d, NULL, id, &rec) < 0)
                return false;
        bool ended = dag_status_ended(rec->status);
        dag_run_record_free(rec);
        return ended;
}

/* 200 once the record says it ended, 202 at the timeout or the drain. */
static struct MHD_Response *remote_wait_answer(const DaemonCall *call, void *id, bool ended, unsigned *ret_status) {
        return dag_response(call->d, call->tenant, id, ended ? 200 : 202, ret_status);
}

/* Waits up to timeout for DAG run id (full id) driven by another node. */
static struct MHD_Response *remote_wait(const DaemonCall *call, const char *id, usec_t timeout) {
        return daemon_call_poll(call, timeout, dag_ended_in_redis, remote_wait_answer, xstrdup(id), free);
}

/* ?wait=true (and its timeout=S, capped by server.max_wait_s): 0 when not asked. */
static usec_t wait_timeout(const DaemonCall *call) {
        return daemon_call_query_true(call, "wait") ? daemon_call_wait_timeout(call) : 0;
}

/* A task file holding NUL is refused by its check, in the words an
 * embedded `dag run` prints; the pipeline by its own check below. */
static const char *const dag_nul_members[] = { "pipeline", "files", NULL };

static const char *const dag_fields[] = { "pipeline", "filename", "params", "files", "concurrency", "keep_going",
                                          "no_cache", NULL };

/* The start of a DAG run from a POST /v1/dags body j (fields checked by the
 * caller): its files, parse, limits, secrets, record and thread. One path
 * for the API and for schedules (daemon_dag_submit()). On failure an HTTP
 * status and the reason; on success the running DDag (a reference). In a
 * cluster, 1 with *ret_id and no DDag when idem_key (an Idempotency-Key,
 * NULL: none) names an earlier DAG run: nothing was started (the key's
 * look-up and the record are one step in Redis, dagcreate.lua). */
static int dag_submit(Daemon *d, const char *tenant, json_t *j, const char *want_id, const char *schedule,
                      const char *idem_key, bool dry_run, char **ret_id, DDag **ret_g, unsigned *ret_status,
                      char **ret_error) {
        _cleanup_free_ char *err = NULL, *id = NULL, *root = NULL, *dir = NULL, *params_json = NULL, *opts_json = NULL,
                            *owner = NULL;
        _cleanup_strv_free_ char **params = NULL;
        Dag *dag = NULL;
        const char *key;
        json_t *v;
        int r;
        *ret_status = 400;
        json_t *pipeline = json_object_get(j, "pipeline"), *pj = json_object_get(j, "params"),
               *files = json_object_get(j, "files"), *conc = json_object_get(j, "concurrency"),
               *kg = json_object_get(j, "keep_going"), *nc = json_object_get(j, "no_cache"),
               *fn = json_object_get(j, "filename");
        if (!json_is_string(pipeline) || json_string_length(pipeline) == 0 ||
            json_string_length(pipeline) > DAG_MAX_FILE_BYTES) {
                *ret_error = xstrdup("field 'pipeline' is required: the pipeline's YAML text (at most 1 MiB)");
                return -EINVAL;
        }
        if ((pj && !json_is_object(pj)) || (files && !json_is_object(files)) || (kg && !json_is_boolean(kg)) ||
            (nc && !json_is_boolean(nc)) ||
            (conc && (!json_is_integer(conc) || json_integer_value(conc) < 1 ||
                      json_integer_value(conc) > DAG_MAX_CONCURRENCY)) ||
            (fn && (!json_is_string(fn) || dag_file_check(NULL, json_string_value(fn), &err) < 0 ||
                    strchr(json_string_value(fn), '/')))) {
                *ret_error = xasprintf("fields: 'params' and 'files' are objects, 'keep_going' and 'no_cache' "
                                       "booleans, 'concurrency' an integer in 1..%d, 'filename' a plain file name",
                                       DAG_MAX_CONCURRENCY);
                return -EINVAL;
        }
        RequestCaps nul_caps = { .nul_members = dag_nul_members };
        if (request_json_nul_check(j, &nul_caps, ret_error) < 0)
                return -EINVAL;
        const char *text = json_string_value(pipeline);
        size_t text_len = json_string_length(pipeline);
        if (memchr(text, 0, text_len)) {
                *ret_error = xstrdup("field 'pipeline' contains a NUL byte");
                return -EINVAL;
        }
        const char *filename = fn ? json_string_value(fn) : "pipeline.yaml";

        json_t *pstore = json_object();
        json_object_foreach(pj, key, v) {
                if (!*key || strchr(key, '=')) {
                        json_decref(pstore);
                        *ret_error = xasprintf("field 'params': bad name '%s'", key);
                        return -EINVAL;
                }
                _cleanup_free_ char *val = param_value(v);
                _cleanup_free_ char *kv = xasprintf("%s=%s", key, val);
                params = strv_append(params, kv);
                json_object_set_new(pstore, key, json_string(val));
        }
        params_json = json_dumps(pstore, JSON_COMPACT);
        json_decref(pstore);

        id = want_id ? xstrdup(want_id) : id_new("d");
        root = dags_root(d);
        dir = path_join_many(root, id, NULL);
        r = mkdir_p(dir, 0750);
        if (r < 0) {
                *ret_status = 500;
                *ret_error = xasprintf("cannot create the DAG run's directory: %s", strerror(-r));
                return r;
        }
        if (files) {
                r = daemon_dag_write_files(dir, files, &err);
                if (r < 0) {
                        (void) rm_rf(dir);
                        *ret_status = r == -EINVAL ? 400 : 500;
                        *ret_error = TAKE_PTR(err);
                        return r;
                }
        }
        r = dag_parse_with(text, text_len, filename, dir, params, dag_load_confined, NULL, &dag, &err);
        /* What a client sends now; a schedule's fire sends what it kept
         * (refusing it later would fail a schedule an older daemon took). */
        if (r >= 0 && !schedule && (r = dag_check_params(dag, params, &err)) < 0)
                dag = dag_free(dag);
        if (r < 0) {
                (void) rm_rf(dir);
                *ret_error = err ? TAKE_PTR(err) : xstrdup(strerror(-r));
                return -EINVAL;
        }
        r = dag_grant_limits(d, tenant, dag, &err);
        if (r < 0) {
                dag_free(dag);
                (void) rm_rf(dir);
                *ret_status = 403;
                *ret_error = TAKE_PTR(err);
                return -EPERM;
        }
        /* A task naming a secret the tenant does not have (another
         * tenant's included) is 404 before anything runs, as for a run;
         * one sealed with another key 409 (daemon_secret_status()). */
        for (size_t i = 0; i < dag_n_tasks(dag) && r >= 0; i++) {
                DagTaskInfo ti;
                _cleanup_free_ char *serr = NULL;
                dag_task_info(dag, i, &ti);
                r = ti.secrets ? daemon_secrets_check(d, tenant, ti.secrets, &serr) : 0;
                if (r < 0) {
                        /* ti points into dag: say it before freeing it. */
                        *ret_status = daemon_secret_status(r);
                        *ret_error = xasprintf("task '%s': %s", ti.name, serr ?: "secret not found");
                        dag_free(dag);
                        (void) rm_rf(dir);
                        /* Redis out of reach: the caller's 503 (handle_post). */
                        return r == -ECONNREFUSED ? r : -ENOENT;
                }
        }
        if (dry_run) {
                /* A schedule's DAG: its tasks validated now (a task naming
                 * a function its file lacks), not at every fire. */
                DagOptions vo = { .tenant = tenant, .sandbox = d->cfg.sandbox };
                r = dag_validate(dag, d->engine, &vo, &err);
                dag_free(dag);
                (void) rm_rf(dir);
                if (r < 0) {
                        *ret_status = 422;
                        *ret_error = TAKE_PTR(err);
                }
                return r;
        }

        DagOptions o = {
                .tenant = tenant,
                .concurrency = conc ? (unsigned) json_integer_value(conc) : 0,
                .keep_going = json_is_true(kg),
                .no_cache = json_is_true(nc),
                .sandbox = d->cfg.sandbox,
        };
        json_t *oj = json_pack("{s:i, s:b, s:b, s:s}", "concurrency", (int) dag_concurrency(dag, o.concurrency),
                               "keep_going", o.keep_going, "no_cache", o.no_cache, "sandbox",
                               o.sandbox == SANDBOX_MODE_NONE ? "none" : "full");
        opts_json = json_dumps(oj, JSON_COMPACT);
        json_decref(oj);
        owner = xasprintf("%d", (int) getpid());
        /* Recorded before validation so the id answers at once and a
         * restart during validation still resumes it. */
        DagRunRecord rec = {
                .id = id,
                .tenant = (char *) tenant,
                .name = (char *) dag_name(dag),
                .file = (char *) filename,
                .base_dir = dir,
                .spec_text = (char *) text,
                .params_json = params_json,
                .options_json = opts_json,
                .status = "running",
                .owner = owner,
                .schedule = (char *) schedule,
                .created = now_realtime(),
                .started = now_realtime(),
        };
        r = store_dag_insert(d->store, &rec);
        _cleanup_free_ char *first = NULL;
        if (r >= 0 && d->cluster) {
                _cleanup_free_ char *files_json = files ? json_dumps(files, JSON_COMPACT) : NULL;
                r = daemon_dag_cluster_create(d, &rec, files_json, idem_key, &first);
        }
        if (r == 1) {
                /* The key's first DAG run came in meanwhile (the same
                 * submit through another gateway): this one is not run,
                 * and its local record ends at once, never resumed. */
                dag_free(dag);
                (void) rm_rf(dir);
                rec.status = (char *) "cancelled";
                rec.owner = NULL;
                rec.error = (char *) "its Idempotency-Key names an earlier DAG run";
                rec.finished = now_realtime();
                (void) store_dag_update(d->store, &rec);
                *ret_id = TAKE_PTR(first);
                *ret_g = NULL;
                return 1;
        }
        if (r < 0) {
                dag_free(dag);
                (void) rm_rf(dir);
                *ret_status = r == -EEXIST ? 409 : r == -ECONNREFUSED || r == -EIO ? 503 : r == -ECOMM ? 502 : 500;
                *ret_error = xasprintf("cannot record the DAG run: %s", strerror(-r));
                return r;
        }
        DDag *g = NULL;
        r = ddag_start(d, id, tenant, dag, &o, true, &g);
        if (r < 0) {
                const char *code;
                *ret_status = daemon_errno_status(r, &code);
                *ret_error = r == -EBUSY ? xasprintf("too many DAG runs in flight (%d); retry later",
                                                     DAEMON_MAX_ACTIVE_DAGS)
                             : r == -EUSERS
                                     ? xasprintf("tenant %s has %d DAG runs in flight, this tenant's share "
                                                 "of the daemon's %d; retry later",
                                                 tenant, DAEMON_MAX_ACTIVE_DAGS_PER_TENANT, DAEMON_MAX_ACTIVE_DAGS)
                                     : xasprintf("DAG run: %s", strerror(-r));
                /* The refused record says why as the answer does (not
                 * "Too many users"); the others keep their errno's words. */
                (void) record_failure(d, NULL, tenant, id, "failed", r == -EUSERS ? *ret_error : strerror(-r));
                return r;
        }
        *ret_id = TAKE_PTR(id);
        *ret_g = g;
        return 0;
}

int daemon_dag_submit(Daemon *d, const char *tenant, json_t *body, const char *id, const char *schedule,
                      const char *idem_key, bool dry_run, char **ret_first, unsigned *ret_status, char **ret_error) {
        assert(d && tenant && body && ret_status && ret_error);
        assert(!idem_key || ret_first);
        _cleanup_free_ char *got = NULL;
        DDag *g = NULL;
        int r = dag_submit(d, tenant, body, id, schedule, idem_key, dry_run, &got, &g, ret_status, ret_error);
        if (r >= 0 && g)
                ddag_unref(d, g);
        if (r == 1)
                *ret_first = TAKE_PTR(got);
        return r;
}

static struct MHD_Response *wait_for_dag(const DaemonCall *call, const char *id, usec_t timeout, unsigned *ret_status);

/* A POST whose Idempotency-Key names DAG run id answers as its first POST
 * did: 202 with it and its Location, or with ?wait=true its end (200) or
 * 202 at the timeout. Its hang-up cancels nothing: it started nothing. */
static struct MHD_Response *resubmit_response(const DaemonCall *call, const char *id, usec_t timeout,
                                              unsigned *ret_status) {
        if (timeout == 0)
                return dag_response(call->d, call->tenant, id, 202, ret_status);
        return wait_for_dag(call, id, timeout, ret_status);
}

static struct MHD_Response *handle_post(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *id = NULL;
        json_t *j = NULL;
        RequestCaps caps = { .max_depth = d->cfg.max_json_depth,
                             .max_values = d->cfg.max_json_values,
                             .nul_members = dag_nul_members };
        struct MHD_Response *resp = NULL;
        int r;

        r = request_json_parse(call->body, call->body_len, &caps, (void **) &j, &err);
        if (r < 0)
                return daemon_error_response(400, "bad_request", ret_status, "%s", err);
        if (!json_is_object(j)) {
                json_decref(j);
                return daemon_error_response(400, "bad_request", ret_status, "the body must be a JSON object");
        }
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
                bool known = false;
                for (size_t i = 0; dag_fields[i]; i++)
                        known = known || streq(key, dag_fields[i]);
                if (!known) {
                        resp = daemon_error_response(400, "bad_request", ret_status, "unknown field '%s'", key);
                        goto out;
                }
        }
        /* Idempotency-Key, as for a run (docs/api.md "Idempotency"): the
         * same submit sent again — its answer lost, its gateway frozen
         * (the CLI's own key with --server URL,URL) — answers with the
         * first DAG run and starts nothing. A single node's look-up and
         * record hold d->idem_lock; a cluster's are one Redis step
         * (dagcreate.lua), with a look-up first that spares a repeat the
         * files and the parse. Before, the header was ignored. */
        const char *idem = daemon_call_header(call, "Idempotency-Key");
        if (idem && !idempotency_key_is_valid(idem)) {
                resp = daemon_error_response(400, "bad_request", ret_status,
                                             "the Idempotency-Key header takes " IDEMPOTENCY_KEY_RULE);
                goto out;
        }
        usec_t timeout = wait_timeout(call);
        bool locked = idem && !d->cluster;
        if (locked)
                pthread_mutex_lock(&d->idem_lock);
        if (idem) {
                _cleanup_free_ char *first = NULL;
                r = daemon_dag_idempotent_first(d, call->tenant, idem, &first);
                if (r != -ENOENT) {
                        if (locked)
                                pthread_mutex_unlock(&d->idem_lock);
                        resp = r >= 0 ? resubmit_response(call, first, timeout, ret_status)
                                      : daemon_call_errno(call, r, "DAG run", ret_status);
                        goto out;
                }
        }
        DDag *g = NULL;
        unsigned status = 0;
        r = dag_submit(d, call->tenant, j, NULL, NULL, idem, false, &id, &g, &status, &err);
        if (locked) {
                if (r == 0)
                        (void) daemon_dag_idempotent_put(d, call->tenant, idem, id, now_realtime());
                pthread_mutex_unlock(&d->idem_lock);
        }
        if (r == 1) {
                resp = resubmit_response(call, id, timeout, ret_status);
                goto out;
        }
        if (r < 0 && d->cluster && (r == -ECONNREFUSED || r == -ECOMM)) {
                /* Redis out of reach: answered as a run's submit is (503
                 * and Retry-After, or 502 when it may have been recorded),
                 * not 503 "bad_gateway" without Retry-After. */
                resp = daemon_call_errno(call, r, "DAG run", ret_status);
                goto out;
        }
        if (r < 0) {
                const char *code = status == 400   ? "bad_request"
                                   : status == 403 ? "forbidden"
                                   : status == 404 ? "not_found"
                                   : status == 409 ? "conflict"
                                   : status == 429 ? "too_many_requests"
                                   : status == 503 ? "unavailable"
                                                   : "internal";
                if (r != -EINVAL && r != -EPERM && r != -ENOENT && status != 500)
                        (void) daemon_errno_status(r, &code);
                resp = daemon_error_response(status, code, ret_status, "%s", err);
                goto out;
        }
        if (timeout > 0) {
                DagWait *dw = xcalloc(1, sizeof(DagWait));
                *dw = (DagWait) { .d = d, .g = g, .id = xstrdup(id) };
                resp = daemon_call_wait(call, g, timeout, dag_wait_then, dw, dag_wait_free);
        } else {
                resp = dag_response_held(d, g, call->tenant, id, 202, ret_status);
                ddag_unref(d, g);
        }
out:
        json_decref(j);
        return resp;
}

static struct MHD_Response *handle_list(const DaemonCall *call, unsigned *ret_status) {
        size_t limit;
        struct MHD_Response *bad = daemon_call_query_limit(call, 100, DAEMON_RUNS_LIST_MAX, &limit, ret_status);
        if (bad)
                return bad;
        _cleanup_strv_free_ char **states = NULL, **stored = NULL;
        bad = daemon_call_query_states(call, dag_status_table(), DAG_STATUS_NAMES, &states, ret_status);
        if (bad)
                return bad;
        /* A run validating is stored running (dag_record_json's view). */
        for (size_t i = 0; states && states[i]; i++) {
                const char *s = streq(states[i], "validating") ? "running" : states[i];
                if (!strv_contains(stored, s))
                        stored = strv_append(stored, s);
        }
        /* Stored `running` holds both views: the limit counts the DAG runs
         * in the asked states, so the store is asked for as many as it
         * lists and the view cuts at limit. Before, `?status=validating`
         * listed nothing while `limit` newer DAG runs were running. */
        bool both = strv_contains(stored, "running");
        DagRunRecord **v = NULL;
        size_t n = 0;
        int r = daemon_dag_list(call->d, call->tenant, stored, both ? DAEMON_RUNS_LIST_MAX : limit, &v, &n);
        if (r < 0)
                return dag_errno(r, NULL, ret_status);
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
                if (json_array_size(a) >= limit)
                        break;
                json_t *j = dag_record_json(call->d, v[i], false);
                if (!states || strv_contains(states, json_string_value(json_object_get(j, "status")) ?: ""))
                        json_array_append_new(a, j);
                else
                        json_decref(j);
        }
        dag_run_record_list_free(v, n);
        return daemon_json_response(200, json_pack("{so}", "dags", a), ret_status);
}

static struct MHD_Response *handle_delete(const DaemonCall *call, const char *id, unsigned *ret_status) {
        Daemon *d = call->d;
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, call->tenant, id, &rec);
        if (r < 0)
                return dag_errno(r, id, ret_status);
        _cleanup_free_ char *full = xstrdup(rec->id), *status = xstrdup(rec->status ? rec->status : "?");
        dag_run_record_free(rec);
        DDag *g = ddag_find(d, call->tenant, full);
        if (d->cluster && (g || !dag_status_ended(status))) {
                /* In Redis too, whoever drives it: the owner (this node or
                 * another) cancels it at its next lease tick, and so does a
                 * node that takes it over if the owner dies first. */
                int k = daemon_dag_cluster_cancel(d, full);
                if (k < 0 && !g)
                        return dag_errno(k, full, ret_status);
                if (k == 0 && !g)
                        return daemon_error_response(409, "conflict", ret_status,
                                                     "DAG run %s has already finished", full);
                if (!g) {
                        log_info("DAG run %s: cancel recorded for the node that drives it", full);
                        /* 200 once it ended, 202 after 30 s (the cancel stands). */
                        return remote_wait(call, full, 30 * USEC_PER_SEC);
                }
        }
        if (!g)
                return daemon_error_response(409, "conflict", ret_status, "DAG run %s has already finished (%s)", full,
                                             status);
        dag_cancel(g->dag);
        /* 200 once it ended, or after 30 s (the cancel stands). */
        DagWait *w = xcalloc(1, sizeof(DagWait));
        *w = (DagWait) { .d = d, .g = g, .id = xstrdup(full), .cancel = true };
        return daemon_call_wait(call, g, 30 * USEC_PER_SEC, dag_wait_then, w, dag_wait_free);
}

/* Waits up to timeout (> 0) for DAG run id (or a prefix) to end, without
 * cancelling it on a hang-up: 200 once it ended, 202 at the timeout; this
 * node's own DAG runs are waited on by their DDag, in a cluster the others
 * by their record in Redis. */
static struct MHD_Response *wait_for_dag(const DaemonCall *call, const char *id, usec_t timeout, unsigned *ret_status) {
        Daemon *d = call->d;
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, call->tenant, id, &rec);
        if (r < 0)
                return dag_errno(r, id, ret_status);
        _cleanup_free_ char *full = xstrdup(rec->id);
        bool ended = dag_status_ended(rec->status);
        dag_run_record_free(rec);
        DDag *g = ended ? NULL : ddag_find(d, call->tenant, full);
        if (g) {
                DagWait *w = xcalloc(1, sizeof(DagWait));
                *w = (DagWait) { .d = d, .g = g, .id = xstrdup(full), .get = true };
                return daemon_call_wait(call, g, timeout, dag_wait_then, w, dag_wait_free);
        }
        if (!ended && d->cluster)
                return remote_wait(call, full, timeout);
        return dag_response(d, call->tenant, full, 200, ret_status);
}

/* GET /v1/dags/ID[?wait=true[&timeout=S]] (wait_for_dag()). */
static struct MHD_Response *handle_get(const DaemonCall *call, const char *id, unsigned *ret_status) {
        usec_t timeout = wait_timeout(call);
        if (timeout == 0)
                return dag_response(call->d, call->tenant, id, 200, ret_status);
        return wait_for_dag(call, id, timeout, ret_status);
}

static void log_collect(const RunEvent *ev, void *userdata) {
        Buf *b = userdata;
        if (ev->type == RUN_EVENT_OUTPUT)
                (void) buf_append(b, ev->data, ev->len);
}

static struct MHD_Response *handle_logs(const DaemonCall *call, const char *id, const char *task,
                                        unsigned *ret_status) {
        Daemon *d = call->d;
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(d, call->tenant, id, &rec);
        if (r < 0)
                return dag_errno(r, id, ret_status);
        DagTaskRecord **t = NULL;
        size_t n = 0;
        (void) daemon_dag_tasks(d, rec->id, &t, &n);
        _cleanup_free_ char *run_id = NULL, *state = NULL;
        bool found = false, cached = false;
        for (size_t i = 0; i < n; i++)
                if (streq(t[i]->name, task)) {
                        found = true;
                        run_id = t[i]->run_id ? xstrdup(t[i]->run_id) : NULL;
                        state = xstrdup(t[i]->state ? t[i]->state : "pending");
                        cached = t[i]->cached;
                }
        dag_task_record_list_free(t, n);
        _cleanup_free_ char *full = xstrdup(rec->id);
        dag_run_record_free(rec);
        if (!found)
                return daemon_error_response(404, "not_found", ret_status, "DAG run %s has no task '%s'", full, task);
        if (!run_id)
                return daemon_error_response(409, "conflict", ret_status, "task '%s' has not run (%s)", task, state);
        RunRecord *run = NULL;
        Buf b;
        buf_init(&b, 64U << 20);
        if (d->cluster)
                /* Any node may have run it: its log is in Redis (the
                 * node's SQLite holds no run in a cluster, so this
                 * answered every task's log empty). */
                r = daemon_cluster_log_text(d, run_id, &b);
        else {
                r = store_run_get(d->store, NULL, run_id, &run);
                if (r < 0 && r != -ENOENT) {
                        buf_free(&b);
                        return daemon_error_response(500, "internal", ret_status, "cannot read run %s: %s", run_id,
                                                     strerror(-r));
                }
                /* No run record (cancelled before it was recorded), no
                 * log file named or made (cancelled before it began, or
                 * not written yet): the task's output so far is empty,
                 * as GET /v1/runs/{id}/logs answers, not an error a
                 * dashboard would show. */
                r = run && run->log_path ? engine_log_replay(run->log_path, log_collect, &b) : 0;
                run_record_free(run);
        }
        if (r < 0 && r != -ENOENT && b.len == 0) {
                buf_free(&b);
                return daemon_error_response(500, "internal", ret_status, "cannot read the log of run %s: %s", run_id,
                                             strerror(-r));
        }
        size_t len = b.len;
        char *text = buf_steal(&b);
        if (!text)
                text = xstrdup("");
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return NULL;
        }
        MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
        MHD_add_response_header(resp, "X-Pysprinter-Run-Id", run_id);
        if (cached)
                MHD_add_response_header(resp, "X-Pysprinter-Cached", "true");
        *ret_status = 200;
        return resp;
}

struct MHD_Response *daemon_dag_handle(const DaemonCall *call, unsigned *ret_status) {
        const char *m = call->method;
        if (!call->d->dags)
                return daemon_error_response(503, "unavailable", ret_status, "DAG runs are not enabled");
        if (call->n_seg == 2)
                return streq(m, "POST") ? handle_post(call, ret_status) : handle_list(call, ret_status);
        if (call->n_seg == 3) {
                if (streq(m, "DELETE"))
                        return handle_delete(call, call->seg[2], ret_status);
                return handle_get(call, call->seg[2], ret_status);
        }
        return handle_logs(call, call->seg[2], call->seg[4], ret_status);
}

/* ---- cluster: a DAG run whose gateway is gone (daemon-dag-cluster.c) ---- */

/* Copies DAG run id from Redis into this node (its directory and store)
 * and resumes it. */
static int dag_take_over(Daemon *d, const char *id) {
        _cleanup_free_ char *dir = path_join_many(d->data_dir, "dags", id, NULL);
        _cleanup_free_ char *err = NULL;
        (void) rm_rf(dir);
        int k = mkdir_p(dir, 0750);
        DagRunRecord *rec = NULL;
        json_t *files = NULL;
        if (k >= 0)
                k = daemon_dag_cluster_fetch(d, id, dir, &rec, &files);
        if (k >= 0 && files)
                k = daemon_dag_write_files(dir, files, &err);
        json_decref(files);
        if (k >= 0) {
                log_info("DAG run %s: its gateway is gone; this node resumes it", id);
                k = daemon_dag_resume_record(d, rec);
        }
        if (k < 0)
                log_warn("DAG run %s cannot be taken over: %s", id, err ? err : strerror(-k));
        dag_run_record_free(rec);
        return k;
}

/* A cancel recorded in Redis (asked on any node) of a DAG run this node
 * drives: as a local DELETE does. */
static void dag_cancel_by_id(Daemon *d, const char *id) {
        DDag *found = NULL;
        pthread_mutex_lock(&d->dags->lock);
        for (DDag *g = d->dags->list; g; g = g->next)
                if (streq(g->id, id) && !g->done) {
                        g->refs++;
                        found = g;
                        break;
                }
        pthread_mutex_unlock(&d->dags->lock);
        if (!found)
                return;
        if (!dag_cancelled(found->dag)) {
                log_info("DAG run %s: cancelled (asked through the cluster)", id);
                /* A run taken over resumes its tasks recorded running by
                 * adopting their runs; cancelled before a task was adopted,
                 * dag_run() marks it cancelled without waiting for its run:
                 * the runs the record names are cancelled here too (a run
                 * that ended already is left as it is). Read before the
                 * cancel: dag_run() may record such a task cancelled
                 * before a read after it, and its run then went on. */
                DagTaskRecord **t = NULL;
                size_t n = 0;
                bool listed = daemon_dag_tasks(d, id, &t, &n) >= 0;
                dag_cancel(found->dag);
                for (size_t i = 0; listed && i < n; i++)
                        if (t[i]->run_id && t[i]->state && streq(t[i]->state, "running"))
                                (void) daemon_cluster_cancel(d, t[i]->run_id);
                dag_task_record_list_free(t, n);
                /* the task waiters look at once, not at their next 250 ms */
                pthread_mutex_lock(&d->lock);
                pthread_cond_broadcast(&d->change_cond);
                pthread_mutex_unlock(&d->lock);
        }
        ddag_unref(d, found);
}

void daemon_dags_cluster_tick(Daemon *d, bool take) {
        if (!d->cluster || !__atomic_load_n(&d->dags, __ATOMIC_ACQUIRE))
                return;
        _cleanup_strv_free_ char **owned = daemon_dags_active_ids(d), **taken = NULL, **cancel = NULL;
        int k = daemon_dag_cluster_leases(d, owned, take, &taken, &cancel);
        /* Called by the lease thread alone: one state for it. */
        static DaemonOutage out;
        if (k < 0) {
                daemon_outage_failed(&out, "refresh the DAG leases", k);
                return;
        }
        daemon_outage_over(&out, "refresh the DAG leases");
        for (size_t i = 0; taken && taken[i]; i++)
                if (dag_take_over(d, taken[i]) < 0)
                        daemon_dag_cluster_release(d, taken[i]);
        /* After the takeovers: a cancel asked while the owner was dead
         * holds for the node that resumes the run. */
        for (size_t i = 0; cancel && cancel[i]; i++)
                dag_cancel_by_id(d, cancel[i]);
}

/* ---- a recorded pipeline, parsed again (the graph view, other gateways' reads) ---- */

/* The pipeline's params as dag_parse() overrides ("NAME=VALUE"), so a
 * pipeline whose params have no default parses as it ran. */
static char **params_overrides(const char *params_json) {
        json_t *p = params_json ? json_loads(params_json, 0, NULL) : NULL;
        size_t n = json_is_object(p) ? json_object_size(p) : 0, i = 0;
        char **v = xcalloc(n + 1, sizeof(char *));
        const char *k;
        json_t *val;
        if (n)
                json_object_foreach(p, k, val) {
                        _cleanup_free_ char *text = json_is_string(val)
                                                            ? xstrdup(json_string_value(val))
                                                            : json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
                        v[i++] = xasprintf("%s=%s", k, text ? text : "");
                }
        json_decref(p);
        return v;
}

/* A task file from those the DAG run was posted with (files: JSON name ->
 * text, NULL: none), under the rule of a daemon's pipelines. */
static int load_posted(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                       char **ret_error) {
        json_t *t = json_object_get(userdata, file);
        int r = dag_file_check(NULL, file, ret_error);
        if (r < 0)
                return r;
        if (!json_is_string(t)) {
                *ret_error = xasprintf("cannot read %s: not among the DAG run's files", file);
                return -ENOENT;
        }
        *ret_len = json_string_length(t);
        *ret_text = xmemdupz(json_string_value(t), *ret_len);
        return 0;
}

/* The pipeline rec recorded, parsed as it ran: its task files from the
 * run's directory on a single node; in a cluster from posted (the files
 * the POST sent, from Redis), so that every gateway reads the same: the
 * owner's directory is no other gateway's. */
static int graph_parse(Daemon *d, const DagRunRecord *rec, json_t *posted, Dag **ret, char **ret_error) {
        _cleanup_strv_free_ char **params = params_overrides(rec->params_json);
        return dag_parse_with(rec->spec_text ? rec->spec_text : "", rec->spec_text ? strlen(rec->spec_text) : 0,
                              rec->file ? rec->file : "pipeline.yaml", rec->base_dir ? rec->base_dir : ".", params,
                              d->cluster ? load_posted : dag_load_any, posted, ret, ret_error);
}

int daemon_dag_parse_recorded(Daemon *d, const DagRunRecord *rec, Dag **ret, char **ret_error) {
        assert(d && rec && ret && ret_error);
        json_t *posted = NULL;
        int r = d->cluster ? daemon_dag_cluster_files(d, rec->id, &posted) : 0;
        if (r < 0)
                return r;
        r = graph_parse(d, rec, posted, ret, ret_error);
        json_decref(posted);
        return r;
}
