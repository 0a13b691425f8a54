/* Schedules (docs/schedules.md): /v1/schedules[/{name}[/pause|/resume]]
 * and the scheduler thread that fires them.
 *
 * A fire is an ordinary invoke of the deployed function (the same request
 * parsing, limits grant and run queue as POST /v1/functions/{name}/invoke),
 * recorded as the schedule's run. The schedule's state is written before
 * the run is submitted, under the id the run will get: a crash between the
 * two loses that one fire rather than running it twice.
 *
 * Time: Unix seconds from the realtime clock, or — for tests only — from
 * the file $PYSPRINTER_TEST_CLOCK_FILE names (one integer), so a test moves
 * time forward by writing a number instead of sleeping for minutes. */
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <time.h>

#include "daemon.h"

struct DaemonSchedules {
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stop;              /* guarded by lock */
        int64_t last_now;       /* the previous tick's now (the scheduler thread's) */
};

static const char *test_clock_file(void) {
        const char *p = getenv("PYSPRINTER_TEST_CLOCK_FILE");
        return p && *p ? p : NULL;
}

int64_t daemon_schedules_now(void) {
        const char *p = test_clock_file();
        if (p) {
                FILE *f = fopen(p, "re");
                long long v = 0;
                if (f) {
                        int n = fscanf(f, "%lld", &v);
                        fclose(f);
                        if (n == 1 && v > 0)
                                return v;
                }
        }
        return (int64_t) (now_realtime() / USEC_PER_SEC);
}

/* The schedule's next fire time strictly after `after`; -ENOENT when it
 * never fires again, -EINVAL when its stored spec no longer parses. */
int daemon_schedule_next(const ScheduleRecord *s, int64_t after, int64_t *ret) {
        CronSpec c;
        _cleanup_(tz_zone_freep) TzZone *z = NULL;
        /* The zone is read from the tz database at each fire: a tzdata
         * update applies without a restart. */
        if (cron_parse(s->spec, &c, NULL) < 0 || cron_zone_load(s->tz, &z, NULL) < 0)
                return -EINVAL;
        return cron_next_zone(&c, z, after, ret);
}

static void set_note(ScheduleRecord *s, char *note) {
        free(s->last_note);
        s->last_note = note;
}

/* Why s has no next fire time (daemon_schedule_next()'s k): the note of
 * the pause that follows, after what the fire itself noted (or NULL). A
 * user who did not pause it reads why it is paused. Takes before. */
static char *no_next_note(const ScheduleRecord *s, int k, char *before) {
        _cleanup_free_ char *why = NULL;
        if (k == -ENOENT)
                why = xasprintf("paused: '%s' never fires again", s->spec);
        else {
                _cleanup_(tz_zone_freep) TzZone *z = NULL;
                _cleanup_free_ char *err = NULL;
                CronSpec c;
                if (cron_parse(s->spec, &c, &err) >= 0)
                        (void) cron_zone_load(s->tz, &z, &err);
                why = xasprintf("paused: no next fire time: %s", err ?: "its spec or time zone cannot be read");
        }
        char *note = before ? xasprintf("%s; %s", before, why) : TAKE_PTR(why);
        free(before);
        return note;
}

/* Moves s past now without a run, saying why; 0 or -ESTALE (s changed
 * under the scheduler). */
static int schedule_skip(Daemon *d, ScheduleRecord *s, int64_t now, char *note) {
        int64_t next, expected = s->next_fire;
        int k = daemon_schedule_next(s, now, &next);
        if (k < 0) {
                /* Never again (or unreadable): pause, so the scheduler stops
                 * looking at it and `schedule ls` says so, and why. */
                s->paused = true;
                s->next_fire = 0;
                note = no_next_note(s, k, note);
        } else
                s->next_fire = next;
        set_note(s, note);
        return store_schedule_advance(d->store, s, expected);
}

/* The status of a schedule's run: a run ("r…") or a DAG run ("d…"); NULL
 * when it is not recorded (yet). */
static char *last_run_status(Daemon *d, const char *tenant, const char *id) {
        if (!id)
                return NULL;
        if (id[0] == 'd') {
                /* A cluster's DAG runs are read from Redis, as every
                 * gateway reads them: this node's copy of one that another
                 * gateway took over (its lease lapsed) stays 'running', and
                 * every later fire time was skipped as an overlap. */
                DagRunRecord *g = NULL;
                if (daemon_dag_get(d, tenant, id, &g) < 0)
                        return NULL;
                char *st = TAKE_PTR(g->status);
                dag_run_record_free(g);
                return st;
        }
        /* A cluster's runs are Redis's records (the scheduling node's
         * SQLite holds none): read there, the run was never found, so
         * the schedule showed no status and overlapped its own run. */
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        if (daemon_run_record_get(d, tenant, id, &rec) < 0)
                return NULL;
        return xstrdup(rec->status);
}

static bool run_is_active(Daemon *d, const char *tenant, const char *id) {
        _cleanup_free_ char *st = last_run_status(d, tenant, id);
        return st && (streq(st, "queued") || streq(st, "running") || streq(st, "validating"));
}

/* Builds the run of one fire into req (the invoke body, the function's
 * source and limits, the tenant's grant). A note for the user on failure. */
static int fire_request(Daemon *d, const ScheduleRecord *s, RunRequest *req, FunctionRecord **ret_f, char **ret_note) {
        _cleanup_free_ char *err = NULL;
        const char *body = s->invoke_json ?: "{}";
        pthread_rwlock_rdlock(&d->cfg_lock);
        RequestCaps caps = { d->cfg.max_json_depth, d->cfg.max_json_values };
        pthread_rwlock_unlock(&d->cfg_lock);
        int k = request_parse(REQUEST_INVOKE, body, strlen(body), &caps, req, &err);
        if (k < 0) {
                *ret_note = xasprintf("arguments rejected: %s", err);
                return k;
        }
        FunctionRecord *f = NULL;
        k = function_store_get(d->functions, s->tenant, s->function, req->version, &f);
        if (k < 0) {
                *ret_note = xasprintf("function '%s' is not deployed", s->function);
                return k;
        }
        daemon_request_from_function(req, f);
        RunLimits granted;
        pthread_rwlock_rdlock(&d->cfg_lock);
        k = daemon_limits_grant(&d->cfg, s->tenant, &req->limits, &granted, &err);
        pthread_rwlock_unlock(&d->cfg_lock);
        if (k < 0) {
                function_record_free(f);
                *ret_note = xasprintf("limits refused: %s", err);
                return k;
        }
        req->limits = granted;
        *ret_f = f;
        return 0;
}

/* The run (or DAG run) first of this fire time, started by another gateway
 * that fired a schedule of the same name: s names it as its last instead of
 * mine, the id s was advanced with (which started nothing). */
static void schedule_took_run(Daemon *d, ScheduleRecord *s, const char *mine, const char *first) {
        (void) store_schedule_forget_run(d->store, s->tenant, s->name, mine);
        free(s->last_run_id);
        s->last_run_id = xstrdup(first);
        set_note(s, xasprintf("%s %s of this fire time was started by another gateway that holds a schedule '%s' "
                              "too (schedules are per gateway: docs/cluster.md)",
                              first[0] == 'd' ? "DAG run" : "run", first, s->name));
        (void) store_schedule_advance(d->store, s, s->next_fire);
}

/* One due fire time of s: a run (or a DAG run), unless the previous one
 * still runs (no overlap) or the run cannot be made; either way s moves
 * past now, so however many fire times were missed, at most one starts. */
static void schedule_fire(Daemon *d, ScheduleRecord *s, int64_t now) {
        if (!s->allow_overlap && run_is_active(d, s->tenant, s->last_run_id)) {
                (void) schedule_skip(d, s, now,
                                     xasprintf("skipped a fire time: run %s was still running", s->last_run_id));
                return;
        }
        RunRequest req = {};
        FunctionRecord *f = NULL;
        json_t *dag = NULL;
        char *note = NULL;
        if (s->dag_json) {
                /* The DAG file and its task files as captured at add time. */
                dag = json_loads(s->dag_json, JSON_ALLOW_NUL, NULL);
                if (!json_is_object(dag)) {
                        json_decref(dag);
                        (void) schedule_skip(d, s, now, xstrdup("the stored DAG cannot be read"));
                        return;
                }
        } else if (fire_request(d, s, &req, &f, &note) < 0) {
                run_request_done(&req);
                (void) schedule_skip(d, s, now, note);
                return;
        }
        _cleanup_free_ char *id = id_new(dag ? "d" : "r");
        int64_t next = 0, expected = s->next_fire;
        int nk = daemon_schedule_next(s, now, &next);
        free(s->last_run_id);
        s->last_run_id = xstrdup(id);
        s->last_fire = now;
        s->next_fire = nk < 0 ? 0 : next;
        s->paused = nk < 0;
        set_note(s, nk < 0 ? no_next_note(s, nk, NULL) : NULL);
        int k = store_schedule_advance(d->store, s, expected);
        /* A cluster's gateways each keep their own schedules: the
         * tenant's schedule NAME added through two of them (a load
         * balancer) fired each fire time twice. The run (or DAG run) is
         * the cluster's, one per fire time: a gateway whose submit finds
         * it under this key takes that run as its own. */
        _cleanup_free_ char *key = d->cluster ? xasprintf("schedule:%s:%" PRIi64, s->name, expected) : NULL;
        if (k >= 0 && dag) {
                _cleanup_free_ char *err = NULL, *first = NULL;
                unsigned status;
                k = daemon_dag_submit(d, s->tenant, dag, id, s->name, key, false, &first, &status, &err);
                if (k < 0) {
                        set_note(s, xasprintf("the DAG run could not start: %s", err ?: strerror(-k)));
                        (void) store_schedule_advance(d->store, s, s->next_fire);
                } else if (k == 1)
                        schedule_took_run(d, s, id, first);
        } else if (k >= 0) {
                req.idempotency_key = key;
                req.schedule = s->name;
                DRun *r = NULL;
                k = daemon_run_submit(d, id, s->tenant, &req, f->name, f->version, false, &r);
                if (k >= 0 && !streq(r->id, id))
                        schedule_took_run(d, s, id, r->id);
                if (k >= 0)
                        drun_unref(d, r);
                else {
                        /* The fire state was written: note why there is no run. */
                        set_note(s, xasprintf("the run could not be queued: %s",
                                              k == -EBUSY    ? "the queue is full"
                                              : k == -EUSERS ? "this tenant's share of the queue is full"
                                                             : strerror(-k)));
                        (void) store_schedule_advance(d->store, s, s->next_fire);
                }
        }
        if (k < 0 && k != -ESTALE)
                log_warn("schedule %s/%s: %s", s->tenant, s->name, strerror(-k));
        json_decref(dag);
        function_record_free(f);
        run_request_done(&req);
}

/* How late a fire time may be seen and still count as on time. The
 * scheduler looks once a second; later than this, the fire time was
 * missed (the machine suspended, the daemon held, its store stalled), as
 * one missed while the daemon was down is, and catch_up "none" skips it. */
#define SCHEDULE_LATE_S 60

/* When the clock went back (NTP correcting a clock that ran ahead, a VM
 * restored): a next fire time beyond where s would fire from now is moved
 * there, so its fire times follow the clock as it now is, as cron's do.
 * Kept, an `--every 1m` schedule stayed silent for as long as the clock
 * went back. true when s was moved (or changed meanwhile). */
static bool schedule_clock_went_back(Daemon *d, ScheduleRecord *s, int64_t now) {
        int64_t next, expected = s->next_fire;
        if (s->paused || s->next_fire <= 0 || daemon_schedule_next(s, now, &next) < 0 || next >= s->next_fire)
                return false;
        s->next_fire = next;
        set_note(s, xstrdup("the clock went back: the next fire time was computed again from the new time"));
        (void) store_schedule_advance(d->store, s, expected);
        return true;
}

static void scheduler_tick(Daemon *d) {
        DaemonSchedules *S = d->schedules;
        ScheduleRecord **v = NULL;
        size_t n = 0;
        if (store_schedule_list(d->store, NULL, &v, &n) < 0)
                return;
        int64_t now = daemon_schedules_now();
        /* Looked at only when the clock went back: a next fire time costs
         * a read of the zone's tz file. */
        bool back = S->last_now > 0 && now < S->last_now;
        S->last_now = now;
        for (size_t i = 0; i < n; i++) {
                ScheduleRecord *s = v[i];
                if (back && schedule_clock_went_back(d, s, now))
                        continue;
                if (s->paused || s->next_fire <= 0 || s->next_fire > now)
                        continue;
                if (s->catch_up == 0 && now - s->next_fire > SCHEDULE_LATE_S)
                        (void) schedule_skip(d, s, now,
                                             xasprintf("skipped a fire time seen %" PRIi64 "s late (catch_up none: "
                                                       "a fire time missed by more than %ds does not run)",
                                                       now - s->next_fire, SCHEDULE_LATE_S));
                else
                        schedule_fire(d, s, now);
        }
        schedule_record_list_free(v, n);
}

static void *scheduler_main(void *userdata) {
        Daemon *d = userdata;
        (void) pthread_setname_np(pthread_self(), "scheduler");
        DaemonSchedules *S = d->schedules;
        /* Fire times are whole minutes (or seconds for @every): a tick a
         * second is precise enough; a test clock is looked at more often
         * so tests wait less. */
        usec_t period = test_clock_file() ? 200 * USEC_PER_MSEC : USEC_PER_SEC;
        pthread_mutex_lock(&S->lock);
        while (!S->stop) {
                pthread_mutex_unlock(&S->lock);
                scheduler_tick(d);
                pthread_mutex_lock(&S->lock);
                if (!S->stop)
                        cond_wait_usec(&S->wake, &S->lock, period);
        }
        pthread_mutex_unlock(&S->lock);
        return NULL;
}

/* At start, before the first tick: fire times missed while the daemon was
 * down are dropped for catch_up "none" schedules; "one" schedules keep
 * their past next_fire, which the first tick fires once. A next fire time
 * beyond where the schedule fires from now (the clock went back while the
 * daemon was down) is moved there. */
static void schedules_catch_up(Daemon *d) {
        ScheduleRecord **v = NULL;
        size_t n = 0;
        if (store_schedule_list(d->store, NULL, &v, &n) < 0)
                return;
        int64_t now = daemon_schedules_now();
        for (size_t i = 0; i < n; i++)
                if (schedule_clock_went_back(d, v[i], now))
                        continue; /* the clock went back while the daemon was down */
                else if (!v[i]->paused && v[i]->catch_up == 0 && v[i]->next_fire > 0 && v[i]->next_fire <= now)
                        (void) schedule_skip(d, v[i], now,
                                      xstrdup("fire times missed while the daemon was down were skipped (catch_up none)"));
        schedule_record_list_free(v, n);
}

int daemon_schedules_start(Daemon *d) {
        assert(d && d->store && !d->schedules);
        d->schedules = xcalloc(1, sizeof(DaemonSchedules));
        pthread_mutex_init(&d->schedules->lock, NULL);
        pthread_cond_init(&d->schedules->wake, NULL);
        schedules_catch_up(d);
        int r = pthread_create(&d->schedules->thread, NULL, scheduler_main, d);
        if (r != 0)
                return -r;
        d->schedules->started = true;
        return 0;
}

void daemon_schedules_stop(Daemon *d) {
        DaemonSchedules *S = d->schedules;
        if (!S)
                return;
        pthread_mutex_lock(&S->lock);
        S->stop = true;
        pthread_cond_broadcast(&S->wake);
        pthread_mutex_unlock(&S->lock);
        if (S->started)
                pthread_join(S->thread, NULL);
        pthread_mutex_destroy(&S->lock);
        pthread_cond_destroy(&S->wake);
        free(S);
        d->schedules = NULL;
}

/* ---- the API ------------------------------------------------------------------ */

static json_t *seconds_json(int64_t t) {
        return daemon_time_json(t > 0 ? (usec_t) t * USEC_PER_SEC : 0);
}

static json_t *schedule_json(Daemon *d, const ScheduleRecord *s) {
        json_t *j = json_pack("{s:s, s:s?, s:s, s:s, s:s, s:b, s:b, s:o, s:o, s:o, s:o}", "name", s->name, "function",
                              s->dag_json ? NULL : s->function, "schedule", s->spec, "tz", s->tz ?: "UTC", "catch_up",
                              s->catch_up ? "one" : "none", "allow_overlap", s->allow_overlap, "paused", s->paused,
                              "next_fire_at", s->paused ? json_null() : seconds_json(s->next_fire), "last_fire_at",
                              seconds_json(s->last_fire), "note", s->last_note ? json_string(s->last_note) : json_null(),
                              "created_at", daemon_time_json(s->created));
        /* The next fire time on the schedule's own wall clock, with its
         * offset, so `schedule ls` shows what the user wrote in --tz. */
        _cleanup_(tz_zone_freep) TzZone *z = NULL;
        char local[CRON_LOCAL_MAX];
        if (!s->paused && s->next_fire > 0 && cron_zone_load(s->tz, &z, NULL) >= 0 &&
            cron_format_local(z, s->next_fire, local) >= 0)
                json_object_set_new(j, "next_fire_local", json_string(local));
        else
                json_object_set_new(j, "next_fire_local", json_null());
        if (s->dag_json) {
                /* What it fires: the DAG file's name (its text stays inside). */
                json_t *g = json_loads(s->dag_json, JSON_ALLOW_NUL, NULL);
                json_object_set_new(j, "dag", json_pack("{s:s?}", "file", json_string_value(json_object_get(g, "filename"))));
                json_decref(g);
        }
        json_t *args = json_parse_or_string(s->invoke_json);
        if (json_is_object(args))
                json_object_update(j, args);
        json_decref(args);
        json_t *last = json_null();
        if (s->last_run_id) {
                _cleanup_free_ char *st = last_run_status(d, s->tenant, s->last_run_id);
                last = json_pack("{s:s, s:s?}", "id", s->last_run_id, "status", st);
        }
        json_object_set_new(j, "last_run", last);
        return j;
}

static const char *const add_fields[] = { "name",       "function",      "dag",    "cron", "every",  "tz",
                                          "catch_up",   "allow_overlap", "paused", "args", "kwargs", "raw_args",
                                          "raw_kwargs", "version",       "limits", "data", NULL };
/* What each fire's invoke body carries (POST /v1/functions/{name}/invoke's
 * fields but retries, which the deploy says). */
static const char *const invoke_fields[] = { "args",    "kwargs", "raw_args", "raw_kwargs",
                                             "version", "limits", "data",     NULL };
/* A DAG schedule's "dag": the body of POST /v1/dags, captured. */
static const char *const dag_fields[] = { "pipeline", "filename", "files", "params", "concurrency", "keep_going",
                                          "no_cache", NULL };

static bool field_known(const char *key, const char *const *list) {
        for (size_t i = 0; list[i]; i++)
                if (streq(key, list[i]))
                        return true;
        return false;
}

int daemon_schedule_from_body(const DaemonCall *call, json_t *j, ScheduleRecord *ret, char **ret_error) {
        const char *key;
        json_t *v;
        if (!json_is_object(j)) {
                *ret_error = xstrdup("the body must be a JSON object");
                return -EINVAL;
        }
        json_object_foreach(j, key, v) if (!field_known(key, add_fields)) {
                *ret_error = xasprintf("unknown field '%s'", key);
                return -EINVAL;
        }
        const char *name = json_string_value(json_object_get(j, "name"));
        const char *fn = json_string_value(json_object_get(j, "function"));
        const char *cron = json_string_value(json_object_get(j, "cron"));
        const char *every = json_string_value(json_object_get(j, "every"));
        json_t *tz = json_object_get(j, "tz"), *cu = json_object_get(j, "catch_up");
        if (!name || !function_name_is_valid(name)) {
                *ret_error = xstrdup("field 'name' must be a string of [A-Za-z0-9_-]{1,64}");
                return -EINVAL;
        }
        json_t *dag = json_object_get(j, "dag");
        if (!!fn == !!dag) {
                *ret_error = xstrdup("give exactly one of 'function' (a deployed function) and 'dag' (a DAG file)");
                return -EINVAL;
        }
        if (fn && !function_name_is_valid(fn)) {
                *ret_error = xstrdup("field 'function' must name a deployed function");
                return -EINVAL;
        }
        if (dag) {
                if (!json_is_object(dag) || !json_is_string(json_object_get(dag, "pipeline"))) {
                        *ret_error = xstrdup("field 'dag' must be an object with the DAG file's text in 'pipeline' "
                                             "(and its task files in 'files'), as POST /v1/dags takes");
                        return -EINVAL;
                }
                json_object_foreach(dag, key, v) if (!field_known(key, dag_fields)) {
                        *ret_error = xasprintf("field 'dag': unknown field '%s'", key);
                        return -EINVAL;
                }
                json_object_foreach(j, key, v) if (field_known(key, invoke_fields)) {
                        *ret_error = xasprintf("field '%s': a DAG schedule takes its values from the DAG file "
                                               "('params' inside 'dag')",
                                               key);
                        return -EINVAL;
                }
        }
        if (!!cron == !!every) {
                *ret_error = xstrdup("give exactly one of 'cron' and 'every'");
                return -EINVAL;
        }
        if ((tz && !json_is_string(tz)) || (cu && !json_is_string(cu))) {
                *ret_error = xstrdup("fields 'tz' and 'catch_up' must be strings");
                return -EINVAL;
        }
        if (cu && !streq(json_string_value(cu), "none") && !streq(json_string_value(cu), "one")) {
                *ret_error = xstrdup("field 'catch_up' must be \"none\" or \"one\"");
                return -EINVAL;
        }
        ret->spec = every ? xasprintf("@every %s", every) : xstrdup(cron);
        CronSpec c;
        _cleanup_(tz_zone_freep) TzZone *zone = NULL;
        if (cron_parse(ret->spec, &c, ret_error) < 0 || cron_zone_load(json_string_value(tz), &zone, ret_error) < 0)
                return -EINVAL;
        ret->name = xstrdup(name);
        ret->function = xstrdup(fn ?: "");
        /* cron_zone_load() reads "" as UTC, as an absent tz: store what
         * it means, one of the documented values. */
        ret->tz = xstrdup(json_string_value(tz) && *json_string_value(tz) ? json_string_value(tz) : "UTC");
        ret->catch_up = cu && streq(json_string_value(cu), "none") ? 0 : 1;
        ret->allow_overlap = json_is_true(json_object_get(j, "allow_overlap"));
        ret->paused = json_is_true(json_object_get(j, "paused"));
        if (dag) {
                ret->dag_json = json_dumps(dag, JSON_COMPACT);
                return 0;
        }
        json_t *inv = json_object();
        json_object_foreach(j, key, v) if (field_known(key, invoke_fields)) json_object_set(inv, key, v);
        ret->invoke_json = json_dumps(inv, JSON_COMPACT);
        json_decref(inv);
        /* The arguments are checked now, as an invoke would check them. */
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        int k = request_parse(REQUEST_INVOKE, ret->invoke_json, strlen(ret->invoke_json), &caps, &req, ret_error);
        run_request_done(&req);
        return k;
}

/* daemon.h. A schedule whose every fire would be refused is refused when
 * it is made, not accepted and then failed at each fire. Its datasets are
 * left to the fire, which may come after a `data put`. */
struct MHD_Response *daemon_schedule_check(const DaemonCall *call, const ScheduleRecord *s,
                                           const FunctionRecord *latest, const char *prefix, unsigned *ret_status) {
        assert(call && s && s->invoke_json && prefix);
        RunRequest req = {};
        _cleanup_free_ char *err = NULL;
        RequestCaps caps = daemon_call_caps(call);
        int k = request_parse(REQUEST_INVOKE, s->invoke_json, strlen(s->invoke_json), &caps, &req, &err);
        FunctionRecord *f = NULL;
        struct MHD_Response *resp = NULL;
        if (k < 0)
                resp = daemon_call_error(call, 400, "bad_request", ret_status, "%s%s", prefix, err);
        else if (latest && req.version == 0)
                f = function_record_ref((FunctionRecord *) latest);
        else
                resp = daemon_function_find(call, prefix, s->function, req.version, &f, ret_status);
        RunResult *res = NULL;
        if (!resp) {
                daemon_request_from_function(&req, f);
                /* The limits as each fire asks them: one the tenant may not
                 * have is the invoke's 403 now, not a note at every fire. */
                resp = daemon_call_grant_limits(call, prefix, &req.limits, ret_status);
        }
        if (!resp) {
                k = daemon_validate(call->d, call->tenant, &req, true, &res);
                if (k < 0)
                        resp = daemon_call_errno(call, k, "validation", ret_status);
                else if (daemon_arguments_refused(res)) {
                        _cleanup_free_ char *msg = xasprintf(
                                "%s%s", prefix, res->error_message ?: "the arguments do not fit the function");
                        resp = daemon_call_json(call, 422,
                                                json_pack("{s:{s:s, s:s}, s:o}", "error", "code", "invalid_arguments",
                                                          "message", msg, "validation",
                                                          run_result_validation_json(res) ?: json_null()),
                                                ret_status);
                }
        }
        run_result_free(res);
        function_record_free(f);
        run_request_done(&req);
        return resp;
}

/* The version s's invoke is pinned to (`schedule add NAME::V`, the
 * body's version), 0 when none: it fires the latest. */
static int schedule_pinned_version(const DaemonCall *call, const ScheduleRecord *s) {
        RunRequest req = {};
        _cleanup_free_ char *err = NULL;
        RequestCaps caps = daemon_call_caps(call);
        int version = 0;
        if (request_parse(REQUEST_INVOKE, s->invoke_json, strlen(s->invoke_json), &caps, &req, &err) >= 0)
                version = req.version;
        run_request_done(&req);
        return version;
}

static struct MHD_Response *schedule_add(const DaemonCall *call, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        void *parsed = NULL;
        RequestCaps caps = daemon_call_caps(call);
        /* An invoke's arguments may hold NUL, as POST .../invoke takes
         * them; a DAG's body is checked by the DAG's own rule. */
        static const char *const nul_members[] = { "dag", "args", "kwargs", "raw_args", "raw_kwargs", NULL };
        caps.nul_members = nul_members;
        int k = request_json_parse(call->body ?: "", call->body_len, &caps, &parsed, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        json_t *j = parsed;
        ScheduleRecord *s = xcalloc(1, sizeof(ScheduleRecord));
        k = daemon_schedule_from_body(call, j, s, &err);
        json_decref(j);
        struct MHD_Response *resp = NULL;
        FunctionRecord *f = NULL;
        unsigned dag_status = 0;
        if (k >= 0 && s->dag_json) {
                /* Checked now as POST /v1/dags would check it (files, parse,
                 * limits, secrets), so a bad DAG is refused at add time. */
                json_t *dag = json_loads(s->dag_json, JSON_ALLOW_NUL, NULL);
                k = daemon_dag_submit(call->d, call->tenant, dag, NULL, NULL, NULL, true, NULL, &dag_status, &err);
                json_decref(dag);
        }
        if (k < 0 && dag_status > 400)
                resp = daemon_call_error(call, dag_status,
                                         dag_status == 403   ? "forbidden"
                                         : dag_status == 404 ? "not_found"
                                         : dag_status == 409 ? "conflict"
                                         : dag_status == 422 ? "invalid_dag"
                                                             : "internal",
                                         ret_status, "%s", err);
        else if (k < 0)
                resp = daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        else if (!s->dag_json && function_store_get(call->d->functions, call->tenant, s->function, 0, &f) < 0)
                resp = daemon_function_missing(call, "", s->function, ret_status);
        else if (!s->dag_json)
                resp = daemon_schedule_check(call, s, NULL, "", ret_status);
        if (resp) {
                schedule_record_free(s);
                return resp;
        }
        f = function_record_free(f);
        s->tenant = xstrdup(call->tenant);
        s->created = now_realtime();
        if (daemon_schedule_next(s, daemon_schedules_now(), &s->next_fire) < 0) {
                schedule_record_free(s);
                return daemon_call_error(call, 400, "bad_request", ret_status, "the schedule never fires");
        }
        /* Pinned to a version: that it is still there and the insert are
         * one step against its delete (Daemon.pin_lock), which checks the
         * schedules under the same lock. Checked above too, but a delete
         * may have come between. */
        int pinned = s->dag_json ? 0 : schedule_pinned_version(call, s);
        if (pinned > 0)
                pthread_mutex_lock(&call->d->pin_lock);
        if (pinned > 0 && function_store_get(call->d->functions, call->tenant, s->function, pinned, &f) < 0)
                k = -ENOENT;
        else
                k = store_schedule_insert(call->d->store, s);
        f = function_record_free(f);
        if (pinned > 0)
                pthread_mutex_unlock(&call->d->pin_lock);
        if (k == -ENOENT)
                resp = daemon_call_error(call, 404, "not_found", ret_status, "function '%s' has no version %d",
                                         s->function, pinned);
        else if (k == -EEXIST)
                resp = daemon_call_error(call, 409, "conflict", ret_status,
                                         "schedule '%s' exists (schedule rm it first)", s->name);
        else if (k < 0)
                resp = daemon_call_errno(call, k, "schedule", ret_status);
        else
                resp = daemon_call_json(call, 201, schedule_json(call->d, s), ret_status);
        schedule_record_free(s);
        return resp;
}

static struct MHD_Response *schedules_list(const DaemonCall *call, unsigned *ret_status) {
        ScheduleRecord **v = NULL;
        size_t n = 0;
        int k = store_schedule_list(call->d->store, call->tenant, &v, &n);
        if (k < 0)
                return daemon_call_errno(call, k, "schedules", ret_status);
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, schedule_json(call->d, v[i]));
        schedule_record_list_free(v, n);
        return daemon_call_json(call, 200, json_pack("{s:o}", "schedules", a), ret_status);
}

struct MHD_Response *daemon_api_schedules(const DaemonCall *call, unsigned *ret_status) {
        return streq(call->method, "POST") ? schedule_add(call, ret_status) : schedules_list(call, ret_status);
}

/* /v1/schedules/{name}[/pause|/resume] */
struct MHD_Response *daemon_api_schedule(const DaemonCall *call, unsigned *ret_status) {
        const char *name = call->seg[2];
        ScheduleRecord *s = NULL;
        int k = function_name_is_valid(name) ? store_schedule_get(call->d->store, call->tenant, name, &s) : -ENOENT;
        /* Named, as a missing run or function is ("no deployed function
         * 'NAME'"): the CLI adds where to look. */
        if (k == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "no schedule '%s'", name);
        if (k < 0)
                return daemon_call_errno(call, k, "schedule", ret_status);
        struct MHD_Response *resp;
        if (streq(call->method, "DELETE")) {
                k = store_schedule_delete(call->d->store, call->tenant, name);
                resp = k < 0 ? daemon_call_errno(call, k, "schedule", ret_status)
                             : daemon_call_json(call, 200, json_pack("{s:s, s:b}", "name", name, "deleted", 1),
                                                ret_status);
        } else if (call->n_seg == 4) {
                bool pause = streq(call->seg[3], "pause");
                s->paused = pause;
                /* A resumed schedule starts from now: fire times that passed
                 * while it was paused never run. */
                if (!pause && daemon_schedule_next(s, daemon_schedules_now(), &s->next_fire) < 0)
                        s->paused = true;
                set_note(s, NULL);
                k = store_schedule_update(call->d->store, s);
                /* Shown as stored: the update keeps the fire state, which a
                 * fire since the read above may have moved. */
                if (k >= 0) {
                        s = schedule_record_free(s);
                        k = store_schedule_get(call->d->store, call->tenant, name, &s);
                }
                resp = k < 0 ? daemon_call_errno(call, k, "schedule", ret_status)
                             : daemon_call_json(call, 200, schedule_json(call->d, s), ret_status);
        } else {
                json_t *j = schedule_json(call->d, s);
                char **ids = NULL;
                json_t *a = json_array();
                if (store_schedule_runs(call->d->store, call->tenant, name, STORE_SCHEDULE_RUNS_MAX, &ids) >= 0)
                        for (char **i = ids; i && *i; i++)
                                json_array_append_new(a, json_string(*i));
                strv_free(ids);
                json_object_set_new(j, "runs", a);
                resp = daemon_call_json(call, 200, j, ret_status);
        }
        schedule_record_free(s);
        return resp;
}
