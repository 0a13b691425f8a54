/* The runs API: /v1/runs (submit, list), /v1/runs/{id} (get, cancel),
 * /v1/runs/{id}/logs (text, or Server-Sent Events with ?follow=1) and
 * /v1/validate (docs/api.md "Runs"). Also the submit-and-answer and
 * validation steps the functions API shares. */
#include <assert.h>
#include <jansson.h>
#include <microhttpd.h>

#include "cluster.h"
#include "daemon.h"
#include "pkg.h"

struct MHD_Response *daemon_call_grant_limits(const DaemonCall *call, const char *prefix, RunLimits *l,
                                              unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        RunLimits out;
        pthread_rwlock_rdlock(&call->d->cfg_lock);
        int k = daemon_limits_grant(&call->d->cfg, call->tenant, l, &out, &err);
        pthread_rwlock_unlock(&call->d->cfg_lock);
        if (k < 0)
                return daemon_call_error(call, 403, "forbidden", ret_status, "%s%s", prefix, err);
        *l = out;
        return NULL;
}

struct MHD_Response *daemon_call_grant_retries(const DaemonCall *call, const char *prefix, int max_attempts,
                                               unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        int granted;
        pthread_rwlock_rdlock(&call->d->cfg_lock);
        int k = daemon_retries_grant(&call->d->cfg, call->tenant, max_attempts > 0 ? max_attempts - 1 : -1, &granted,
                                     &err);
        pthread_rwlock_unlock(&call->d->cfg_lock);
        if (k < 0)
                return daemon_call_error(call, 403, "forbidden", ret_status, "%s%s", prefix, err);
        return NULL;
}

static json_t *run_json(const RunRecord *r, const char *phase) {
        json_t *j = run_record_json(r, phase);
        return j ?: json_pack("{s:s, s:s}", "id", r->id, "status", r->status ?: "queued");
}

/* A stored record not ended yet shows the start this daemon made of its
 * run (running, at attempt, since started) when the store has not: a
 * start is a write nobody waits for, which lingers in the store's writer
 * for company (a few ms; longer while the writer is behind a journal batch
 * on a loaded machine), and a read commits only journaled writes
 * (store_run_settle()), so the record may still say queued while the run
 * prints. Only forward: what the daemon has not started shows as stored.
 * The one rule of GET /v1/runs/ID and both listings. */
static void record_show_start(RunRecord *rec, bool running, int attempt, usec_t started) {
        if (!running || !rec->status || (!streq(rec->status, "queued") && !streq(rec->status, "running")))
                return;
        free(rec->status);
        rec->status = xstrdup("running");
        if (attempt > rec->attempt) {
                rec->attempt = attempt;
                rec->started = started;
        }
}

/* record_show_start() for r, with d->lock held. A claimed run's record is
 * Redis's, whose start is answered before the run begins. */
static void overlay_started(const DRun *r, RunRecord *rec) {
        if (!r->claimed)
                record_show_start(rec, r->status == RUN_RUNNING, r->attempt, r->started);
}

/* The run as the API shows it: the record, plus the live phase while it is
 * in flight. */
static int run_lookup_json(Daemon *d, const char *tenant, const char *id, json_t **ret) {
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        _cleanup_free_ char *phase = NULL;
        DRun *r;
        int k = daemon_run_record_get(d, tenant, id, &rec);
        if (k < 0)
                return k;
        if (streq(rec->status, "queued") || streq(rec->status, "running"))
                daemon_run_overlay_unwritten(d, rec);
        if (daemon_run_find(d, tenant, rec->id, &r) >= 0) {
                pthread_mutex_lock(&d->lock);
                phase = r->phase ? xstrdup(r->phase) : NULL;
                overlay_started(r, rec);
                pthread_mutex_unlock(&d->lock);
                drun_unref(d, r);
        }
        *ret = run_json(rec, phase);
        return 0;
}

static struct MHD_Response *run_response(const DaemonCall *call, const char *id, unsigned status,
                                         unsigned *ret_status) {
        json_t *j = NULL;
        int k = run_lookup_json(call->d, call->tenant, id, &j);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        return daemon_call_json(call, status, j, ret_status);
}

/* run_response() for run r this gateway submitted, answering the request
 * that submitted it or waits on it. In a cluster whose Redis does not
 * answer the read, r as this gateway holds it answers: 202, queued or
 * running (its end, if any, is read later), never 503 — a 503 says nothing
 * was done, and a client that takes it at its word and submits again runs
 * it twice (docs/cluster.md). */
static struct MHD_Response *run_response_held(const DaemonCall *call, DRun *r, unsigned status, unsigned *ret_status) {
        Daemon *d = call->d;
        json_t *j = NULL;
        int k = run_lookup_json(d, call->tenant, r->id, &j);
        if (k >= 0)
                return daemon_call_json(call, status, j, ret_status);
        if (!d->cluster || (k != -ECONNREFUSED && k != -ECOMM))
                return daemon_call_errno(call, k, "run", ret_status);
        log_info("run %s: Redis did not answer its read (%s); answered from this node's memory", r->id, strerror(-k));
        RunRecord *rec = daemon_run_record_now(d, r);
        j = run_json(rec, NULL);
        run_record_free(rec);
        return daemon_call_json(call, 202, j, ret_status);
}

static bool status_ended(const char *status) {
        return run_status_is_final(run_status_from_string(status));
}

static bool record_ended(Daemon *d, const char *tenant, const char *id) {
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        return daemon_run_record_get(d, tenant, id, &rec) >= 0 && status_ended(rec->status);
}

/* ---- cluster: waiting for a run another gateway accepted --------------------
 * Its end is published to that gateway alone: this one reads the record
 * in Redis (daemon_call_poll()) until it ended or the wait's timeout. */

static bool remote_run_ended(Daemon *d, void *id) {
        return record_ended(d, NULL, id);
}

/* 200 with the ended run, 202 with it still in flight. */
static struct MHD_Response *remote_run_answer(const DaemonCall *call, void *id, bool ended, unsigned *ret_status) {
        return run_response(call, id, ended ? 200 : 202, ret_status);
}

static struct MHD_Response *remote_run_wait(const DaemonCall *call, const char *id, usec_t timeout) {
        return daemon_call_poll(call, timeout, remote_run_ended, remote_run_answer, xstrdup(id), free);
}

/* A request waiting for its run (daemon_call_wait()). */
typedef struct RunWait {
        Daemon *d;
        DRun *r;                /* a reference */
        bool cancel_if_gone;    /* a ?wait=true submit: the client's hang-up cancels the run */
        bool location;
} RunWait;

static void run_wait_free(void *p) {
        RunWait *w = p;
        drun_unref(w->d, w->r);
        free(w);
}

/* 200 with the finished run, 202 on timeout (or the drain); NULL when the
 * client hung up (the run is cancelled when it asked for it). */
static struct MHD_Response *run_wait_then(const DaemonCall *call, void *p, DaemonWake why, unsigned *ret_status) {
        RunWait *w = p;
        bool done = daemon_run_done(w->d, w->r);
        if (!done && why == DAEMON_WAKE_EVENT)
                return DAEMON_SUSPENDED;
        if (!done && why == DAEMON_WAKE_GONE) {
                if (w->cancel_if_gone) {
                        log_info("run %s: client went away; cancelling", w->r->id);
                        daemon_run_cancel(w->d, w->r);
                }
                return NULL;
        }
        /* An ended run answers from memory: the record the engine has just
         * committed, rendered by the one run-object function, without
         * reading it back from the store. */
        RunRecord fin;
        char *text = done && daemon_run_final_record(w->r, &fin) >= 0 ? run_record_to_json(&fin, NULL) : NULL;
        if (!text)
                /* The answer shows the id, read from the store. */
                daemon_run_reveal(w->d, w->r);
        /* A run this stopping node handed back (its end is another
         * node's to come): 202, in flight, as at the drain's timeout. */
        pthread_mutex_lock(&w->d->lock);
        bool handed_back = w->r->handed_back;
        pthread_mutex_unlock(&w->d->lock);
        struct MHD_Response *resp = text ? daemon_call_json_text(call, 200, text, ret_status)
                                         : run_response_held(call, w->r, done && !handed_back ? 200 : 202, ret_status);
        if (w->location) {
                _cleanup_free_ char *loc = xasprintf("/v1/runs/%s", w->r->id);
                daemon_response_headers(resp, (const char *const[]) { "Location", loc, NULL });
        }
        return resp;
}

/* Waits (without a thread) for a run the request holds a reference on,
 * which the wait takes over. cancel_if_gone: the request started the run
 * (a ?wait=true submit); location: the answer names the run's URL. */
static struct MHD_Response *respond_after_wait(const DaemonCall *call, DRun *r, usec_t timeout, bool cancel_if_gone,
                                               bool location) {
        RunWait *w = xcalloc(1, sizeof(RunWait));
        *w = (RunWait) { .d = call->d, .r = r, .cancel_if_gone = cancel_if_gone, .location = location };
        return daemon_call_wait(call, DRUN_DONE_KEY(r), timeout, run_wait_then, w, run_wait_free);
}

static int idempotent_first(Daemon *d, const char *tenant, const char *key, char **ret_id) {
        usec_t now = now_realtime();
        return store_run_find_idempotent(d->store, tenant, key,
                                         now > IDEMPOTENCY_WINDOW_USEC ? now - IDEMPOTENCY_WINDOW_USEC : 0, ret_id);
}

/* A resubmission answers with the first run, as its own submit would
 * have: 202 and its Location, or with ?wait=true the first run's end (200)
 * or 202 at the timeout. Its hang-up cancels nothing: this request did
 * not start the run. */
static struct MHD_Response *resubmit_response(const DaemonCall *call, const char *id, bool wait,
                                              unsigned *ret_status) {
        DRun *r;
        if (wait && daemon_run_find(call->d, call->tenant, id, &r) >= 0)
                return respond_after_wait(call, r, daemon_call_wait_timeout(call), false, true);
        struct MHD_Response *resp = run_response(call, id, wait ? 200 : 202, ret_status);
        _cleanup_free_ char *loc = xasprintf("/v1/runs/%s", id);
        daemon_response_headers(resp, (const char *const[]) { "Location", loc, NULL });
        return resp;
}

struct MHD_Response *daemon_call_submit(const DaemonCall *call, const RunRequest *req, const char *id,
                                        const char *fn_name, int fn_version, unsigned *ret_status) {
        Daemon *d = call->d;
        DRun *r;
        /* Another tenant's secret is no secret of this one: 404, before
         * anything is queued; one sealed with another key is there but
         * cannot be opened: 409 (daemon_secret_status()). */
        _cleanup_free_ char *serr = NULL;
        int sk = req->secrets ? daemon_secrets_check(d, call->tenant, req->secrets, &serr) : 0;
        if (sk < 0)
                return daemon_secret_refusal(call, sk, NULL, serr, ret_status);
        RunRequest q = *req;
        q.idempotency_key = daemon_call_header(call, "Idempotency-Key");
        /* The CLI's --idempotency-key and the Python client check the same
         * rule before they send (idempotency_key_is_valid()). */
        if (q.idempotency_key && !idempotency_key_is_valid(q.idempotency_key))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "the Idempotency-Key header takes " IDEMPOTENCY_KEY_RULE);
        bool wait = daemon_call_query_true(call, "wait");
        q.answer_waits = wait;
        /* A single node finds a key's first run in its store; a cluster
         * in Redis, with the submit (daemon_cluster_submit()). The lock
         * holds from the look-up to the new run's commit, so two submits
         * with one key cannot both miss: such submits are rare and take a
         * millisecond each. */
        bool keyed = q.idempotency_key && !d->cluster;
        if (keyed) {
                pthread_mutex_lock(&d->idem_lock);
                _cleanup_free_ char *first = NULL;
                if (idempotent_first(d, call->tenant, q.idempotency_key, &first) >= 0) {
                        pthread_mutex_unlock(&d->idem_lock);
                        return resubmit_response(call, first, wait, ret_status);
                }
        }
        int k = daemon_run_submit(d, id, call->tenant, &q, fn_name, fn_version, false, &r);
        if (keyed)
                pthread_mutex_unlock(&d->idem_lock);
        /* An invocation's refusal names the invoke, as the Lambda route's
         * does ("run: the queue is full" for `invoke NAME`). */
        if (k < 0)
                return daemon_call_errno(call, k, fn_name ? "invoke" : "run", ret_status);
        /* A hang-up cancels an ad-hoc ?wait=true run (its caller's
         * Ctrl-C), not an invocation of a deployed function: that runs to
         * its end as a Lambda invocation does (a client whose read timed
         * out, then retried, would cancel a long one at each try) unless
         * its caller asks for it with X-Pysprinter-Cancel-On-Hangup: true.
         * The Python client's invoke() does: its Ctrl-C before the answer
         * has no run id to cancel by, and closing its connection is the one
         * thing it can still say. */
        const char *coh = daemon_call_header(call, "X-Pysprinter-Cancel-On-Hangup");
        if (wait)
                return respond_after_wait(call, r, daemon_call_wait_timeout(call),
                                          !fn_name || (coh && streq(coh, "true")), true);
        struct MHD_Response *resp = run_response_held(call, r, 202, ret_status);
        _cleanup_free_ char *loc = xasprintf("/v1/runs/%s", r->id);
        daemon_response_headers(resp, (const char *const[]) { "Location", loc, NULL });
        drun_unref(d, r);
        return resp;
}

struct MHD_Response *daemon_api_runs_submit(const DaemonCall *call, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        int k = request_parse(REQUEST_RUN, call->body, call->body_len, &caps, &req, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        struct MHD_Response *resp = daemon_call_grant_retries(call, "", req.max_attempts, ret_status);
        if (!resp)
                resp = daemon_call_grant_limits(call, "", &req.limits, ret_status);
        if (!resp)
                resp = daemon_call_submit(call, &req, NULL, NULL, 0, ret_status);
        run_request_done(&req);
        return resp;
}

/* daemon.h. */
RunRecord **daemon_runs_merge_in_flight(Daemon *d, RunRecord **f, size_t nf, RunRecord **v, size_t *n, size_t limit) {
        for (size_t i = 0; i < *n; i++)
                if (streq(v[i]->status, "queued") || streq(v[i]->status, "running"))
                        daemon_run_overlay_unwritten(d, v[i]);
        if (nf == 0) {
                run_record_list_free(f, nf);
                return v;
        }
        RunRecord **m = xcalloc(*n + nf + 1, sizeof(RunRecord *));
        size_t k = 0;
        for (size_t i = 0; i < *n; i++)
                m[k++] = v[i];
        free(v);
        for (size_t j = 0; j < nf; j++) {
                RunRecord *stored = NULL;
                for (size_t i = 0; i < k && !stored; i++)
                        if (streq(m[i]->id, f[j]->id))
                                stored = m[i];
                if (!stored) {
                        /* Its id is shown now: committed first, as the
                         * 202 of a timed-out wait does (Delivery: a run
                         * whose id was shown ends in a terminal state
                         * after a crash). A commit only when its write is
                         * still queued (it may be committed and beyond the
                         * limit): the first such commit takes the others'
                         * along. */
                        (void) run_queue_reveal(d->queue, f[j]->id);
                        m[k++] = TAKE_PTR(f[j]);
                        continue;
                }
                /* An ended record is final; the daemon's view only
                 * shows a start the store has not committed. */
                record_show_start(stored, streq(f[j]->status, "running"), f[j]->attempt, f[j]->started);
        }
        run_record_list_free(f, nf);
        qsort(m, k, sizeof(RunRecord *), run_record_cmp_newer_first);
        while (k > limit)
                run_record_free(m[--k]);
        *n = k;
        return m;
}

/* daemon.h. */
struct MHD_Response *daemon_runs_list_answer(const DaemonCall *call, RunRecord **v, size_t n, const RunFilter *filter,
                                             unsigned *ret_status) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                if (run_filter_match(filter, v[i])) {
                        /* A summary: a value over RUN_LIST_VALUE_MAX is
                         * left out (three 5-7 MB Lambda events made a
                         * 26 MB listing); GET /v1/runs/ID has it. */
                        RunRecord s;
                        unsigned elided = run_record_elide(v[i], &s);
                        json_t *j = run_json(&s, NULL);
                        run_json_mark_elided(j, elided);
                        json_array_append_new(a, j);
                }
        run_record_list_free(v, n);
        return daemon_call_json(call, 200, json_pack("{so}", "runs", a), ret_status);
}

/* A read of runs waits for the journal's batch without its HTTP thread
 * (round 18): the runs answered before it came are committed by the
 * store's writer (store_runs_settle_ask()), which then kicks this key. */
static char runs_settled_key;

void daemon_runs_settled_kick(void *userdata) {
        (void) userdata;
        daemon_wait_kick(&runs_settled_key);
}

typedef struct SettledRead {
        uint64_t ticket;
        DaemonSettledThen *then;
        void *state;
        void (*state_free)(void *);
} SettledRead;

static void settled_read_free(void *p) {
        SettledRead *r = p;
        if (r->state_free)
                r->state_free(r->state);
        free(r);
}

static struct MHD_Response *settled_read_then(const DaemonCall *call, void *p, DaemonWake why,
                                              unsigned *ret_status) {
        SettledRead *r = p;
        if (why == DAEMON_WAKE_GONE)
                return NULL;
        if (why == DAEMON_WAKE_EVENT && !store_runs_settled(call->d->store, r->ticket))
                return DAEMON_SUSPENDED;
        /* Past the ticket (or given up waiting: the read commits itself). */
        return r->then(call, r->state, r->ticket, ret_status);
}

struct MHD_Response *daemon_call_after_settle(const DaemonCall *call, DaemonSettledThen *then, void *state,
                                              void (*state_free)(void *)) {
        SettledRead *r = xcalloc(1, sizeof(SettledRead));
        *r = (SettledRead) { .ticket = store_runs_settle_ask(call->d->store), .then = then, .state = state,
                             .state_free = state_free };
        return daemon_call_wait(call, &runs_settled_key, 10 * USEC_PER_SEC, settled_read_then, r, settled_read_free);
}

/* A list of runs (GET /v1/runs) as it stood when its request came: the
 * runs in the daemon's hands then (the store's read follows the ticket
 * that holds every run answered before). */
typedef struct RunsList {
        size_t limit;
        char **statuses;
        char *fn_name;  /* ?function= */
        char *schedule; /* ?schedule= */
        char *text;     /* ?q= */
        char *before;   /* ?before=: the cursor run's whole id, or NULL */
        RunRecord **f;
        size_t nf;
} RunsList;

static void runs_list_free(void *p) {
        RunsList *l = p;
        run_record_list_free(l->f, l->nf);
        strv_free(l->statuses);
        free(l->fn_name);
        free(l->schedule);
        free(l->text);
        free(l->before);
        free(l);
}

static struct MHD_Response *runs_list_then(const DaemonCall *call, void *p, uint64_t ticket, unsigned *ret_status) {
        RunsList *l = p;
        RunRecord **v = NULL;
        size_t n = 0;
        RunFilter filter = { .statuses = l->statuses, .fn_name = l->fn_name, .schedule = l->schedule, .text = l->text };
        int k = l->before ? store_run_list_before(call->d->store, ticket, call->tenant, &filter, l->before, l->limit,
                                                  &v, &n)
                          : store_run_list_settled(call->d->store, ticket, call->tenant, &filter, l->limit, &v, &n);
        if (k < 0)
                return daemon_call_errno(call, k, "runs", ret_status);
        v = daemon_runs_merge_in_flight(call->d, TAKE_PTR(l->f), l->nf, v, &n, l->limit);
        l->nf = 0;
        return daemon_runs_list_answer(call, v, n, &filter, ret_status);
}

struct MHD_Response *daemon_api_runs_list(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        size_t limit;
        struct MHD_Response *bad = daemon_call_query_limit(call, 100, DAEMON_RUNS_LIST_MAX, &limit, ret_status);
        if (bad)
                return bad;
        _cleanup_strv_free_ char **statuses = NULL;
        bad = daemon_call_query_states(call, run_status_table(), RUN_STATUS_NAMES, &statuses, ret_status);
        if (bad)
                return bad;
        /* ?function=NAME, ?schedule=NAME: the runs started from that
         * deployed function (any version), fired by that schedule. A name
         * nothing has lists nothing (a deleted function's runs still
         * list); an empty one is a mistake, as an empty state is. */
        const char *fn_name = daemon_call_query(call, "function"), *schedule = daemon_call_query(call, "schedule");
        if ((fn_name && !*fn_name) || (schedule && !*schedule))
                return daemon_call_error(call, 400, "bad_request", ret_status,
                                         "%s= needs a name (a deployed function's, a schedule's)",
                                         fn_name && !*fn_name ? "function" : "schedule");
        /* ?q=TEXT: the runs that have TEXT in their id, file name,
         * function, deployed function or schedule, ASCII letters in
         * either case (the dashboard's search, `ps --grep`): looked for
         * among all the caller's runs, not only the newest. */
        const char *text = daemon_call_query(call, "q");
        if (text && (!*text || strlen(text) > RUN_FILTER_TEXT_MAX))
                return daemon_call_error(
                        call, 400, "bad_request", ret_status,
                        "q= needs a text of 1 to %d bytes (a part of a run's id, file or function name)",
                        RUN_FILTER_TEXT_MAX);
        /* ?before=RUN: the next page, the runs listed after RUN (an id
         * or a unique prefix of one of the caller's runs: another
         * tenant's is 404, as its GET is). */
        _cleanup_(run_record_freep) RunRecord *cursor = NULL;
        const char *before = daemon_call_query(call, "before");
        if (before) {
                int k = daemon_run_record_get(d, call->tenant, before, &cursor);
                if (k < 0)
                        return daemon_call_errno(call, k, "run", ret_status);
        }
        RunRecord **v = NULL, **f = NULL;
        size_t n = 0, nf = 0;
        RunFilter filter = { .statuses = statuses, .fn_name = fn_name, .schedule = schedule, .text = text };
        if (d->cluster) {
                int k = daemon_run_record_list(d, call->tenant, &filter, cursor, limit, &v, &n);
                if (k < 0)
                        return daemon_call_errno(call, k, "runs", ret_status);
                return daemon_runs_list_answer(call, v, n, &filter, ret_status);
        }
        if (daemon_run_list_in_flight(d, call->tenant, NULL, &f, &nf) < 0)
                nf = 0;
        /* Only the runs in hand the filter keeps (and after the cursor)
         * take a place in the list (a stored one shown in another state
         * is dropped from the answer). */
        size_t kept = 0;
        for (size_t i = 0; i < nf; i++)
                if (run_filter_match(&filter, f[i]) && (!cursor || run_record_newer(cursor, f[i])))
                        f[kept++] = f[i];
                else
                        run_record_free(f[i]);
        nf = kept;
        RunsList *w = xcalloc(1, sizeof(RunsList));
        *w = (RunsList){ .limit = limit,
                         .statuses = TAKE_PTR(statuses),
                         .fn_name = xstrdup_or_null(fn_name),
                         .schedule = xstrdup_or_null(schedule),
                         .text = xstrdup_or_null(text),
                         .before = cursor ? xstrdup(cursor->id) : NULL,
                         .f = f,
                         .nf = nf };
        return daemon_call_after_settle(call, runs_list_then, w, runs_list_free);
}

struct MHD_Response *daemon_api_run_get(const DaemonCall *call, unsigned *ret_status) {
        /* ?wait=true: an active run is answered once it ended (200), or
         * 202 at the timeout, as a submit's ?wait=true; a hang-up cancels
         * nothing (the client did not start the run here). */
        if (daemon_call_query_true(call, "wait")) {
                _cleanup_(run_record_freep) RunRecord *rec = NULL;
                DRun *r;
                int k = daemon_run_record_get(call->d, call->tenant, call->seg[2], &rec);
                if (k < 0)
                        return daemon_call_errno(call, k, "run", ret_status);
                if (daemon_run_find(call->d, call->tenant, rec->id, &r) >= 0)
                        return respond_after_wait(call, r, daemon_call_wait_timeout(call), false, false);
                /* Accepted by another gateway (or by one that died). */
                if (call->d->cluster && !status_ended(rec->status))
                        return remote_run_wait(call, rec->id, daemon_call_wait_timeout(call));
        }
        return run_response(call, call->seg[2], 200, ret_status);
}

/* Cluster mode, a run this gateway does not wait for itself: queued, it
 * ends cancelled now; running on some node, that node is told and ends it
 * through the fenced finish. Answers as the local cancel does: 200 once it
 * ended (read from the record), 202 after 10 s. */
static struct MHD_Response *cancel_elsewhere(const DaemonCall *call, const RunRecord *rec, unsigned *ret_status) {
        int k = daemon_cluster_cancel(call->d, rec->id);
        if (k == -ESTALE)
                return daemon_call_error(call, 409, "conflict", ret_status, "run %s has already finished (%s)",
                                         rec->id, rec->status);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        return remote_run_wait(call, rec->id, 10 * USEC_PER_SEC);
}

struct MHD_Response *daemon_api_run_cancel(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        DRun *r = NULL;
        int k = daemon_run_record_get(d, call->tenant, call->seg[2], &rec);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        if (daemon_run_find(d, call->tenant, rec->id, &r) < 0 && d->cluster)
                return cancel_elsewhere(call, rec, ret_status);
        if (!r)
                return daemon_call_error(call, 409, "conflict", ret_status, "run %s has already finished (%s)", rec->id,
                                         rec->status);
        daemon_run_cancel(d, r);
        /* 200 with the ended run; 202 when it has not ended within 10 s
         * (the cancel stands: the client may poll the run). */
        return respond_after_wait(call, r, 10 * USEC_PER_SEC, false, false);
}

/* ---- logs ---------------------------------------------------------------------- */

static void log_collect(const RunEvent *ev, void *userdata) {
        Buf *b = userdata;
        if (ev->type == RUN_EVENT_OUTPUT)
                (void) buf_append(b, ev->data, ev->len);
}

/* One output event. A JSON string holds only UTF-8, and a run may write
 * any bytes: a piece that is not UTF-8 also carries its exact bytes in
 * "base64", beside a "text" with U+FFFD for each byte that is not, so that
 * a client that shows text still can and one that prints bytes (the CLI)
 * prints what the run wrote, as it does embedded. */
static void sse_output(Buf *out, int stream, const char *data, size_t len, usec_t ts, uint64_t end) {
        const char *name = stream == 2 ? "stderr" : "stdout";
        /* jansson checks the UTF-8 itself: one walk over valid output. */
        json_t *j = json_pack("{s:s, s:s#}", "stream", name, "text", data, (int) len);
        if (!j) {
                size_t n;
                _cleanup_free_ char *lossy = utf8_replace_invalid(data, len, &n), *b64 = base64_encode(data, len);
                j = json_pack("{s:s, s:s#, s:s}", "stream", name, "text", lossy, (int) n, "base64", b64);
        }
        /* When the run wrote it (the log keeps it): a replay shows a
         * finished run's lines at their own times, not at the replay's. */
        char stamp[32];
        if (j && ts)
                json_object_set_new(j, "time", json_string(format_timestamp(ts, stamp)));
        _cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (s)
                daemon_sse_event_id(out, "output", end, s);
}

/* Where an event stream of a run's log stands. Each output event's id is
 * how many bytes of the log it ends at (stdout and stderr as the log
 * interleaves them, every attempt's), so a follower whose connection broke
 * off reconnects with Last-Event-ID and gets only what it had not, as an
 * EventSource does (docs/api.md "Following a run's output"). */
typedef struct LogPos {
        uint64_t at;   /* the log's bytes before the next piece */
        uint64_t skip; /* the follower's Last-Event-ID: bytes it has */
} LogPos;

/* The Last-Event-ID a follower reconnects with; 0 without one (or one
 * that is not a number: the whole stream, as for a first connection). */
static uint64_t log_resume_at(const DaemonCall *call) {
        const char *v = daemon_call_header(call, "Last-Event-ID");
        uint64_t n = 0;
        return v && parse_uint64(v, &n) >= 0 ? n : 0;
}

/* One piece of output at p->at: what of it lies past p->skip, as an event. */
static void sse_output_at(Buf *out, LogPos *p, int stream, const char *data, size_t len, usec_t ts) {
        uint64_t start = p->at, end = p->at + len;
        p->at = end;
        if (end <= p->skip)
                return;
        size_t cut = p->skip > start ? (size_t) (p->skip - start) : 0;
        sse_output(out, stream, data + cut, len - cut, ts, end);
}

/* A phase at p->at: not again to a follower that had the output after it. */
static void sse_phase_at(Buf *out, const LogPos *p, const char *phase) {
        if (p->at < p->skip)
                return;
        _cleanup_free_ char *j = xasprintf("{\"phase\":\"%s\"}", phase);
        daemon_sse_event(out, "phase", j);
}

typedef struct LogReplay {
        Buf *out;
        LogPos pos;
} LogReplay;

static void log_collect_sse(const RunEvent *ev, void *userdata) {
        LogReplay *l = userdata;
        if (ev->type == RUN_EVENT_OUTPUT)
                sse_output_at(l->out, &l->pos, ev->stream, ev->data, ev->len, ev->timestamp);
}

/* The run as its GET spells it: an error naming a server path (storing
 * output_dir(), …) is scrubbed as there. */
static void sse_end(Buf *out, json_t *run, bool show_paths) {
        _cleanup_free_ char *s = daemon_json_text(run, show_paths);
        daemon_sse_event(out, "end", s ? s : "{}");
}

typedef struct SseStream {
        DaemonWaiter w;         /* parked while the run has nothing new */
        struct MHD_Connection *conn;
        Daemon *d;
        DRun *r;
        char *tenant;
        bool show_paths; /* the caller is an admin */
        size_t next_chunk;
        size_t chunk_off;       /* bytes of next_chunk already sent */
        uint64_t skip;          /* Last-Event-ID: the follower has the log up to here */
        SseOut out;
        DaemonCred cred; /* what opened the stream: its end ends the stream */
        bool ended;
} SseStream;

static void sse_free(void *cls) {
        SseStream *s = cls;
        daemon_waiter_done(&s->w);
        drun_unref(s->d, s->r);
        buf_free(&s->out.buf);
        free(s->tenant);
        free(s);
}

/* Copies what the run logged since the last call into s->out (d->lock
 * held), at most 64 KiB per event; returns whether the run is done and
 * everything was copied. */
static bool sse_copy_new(SseStream *s) {
        DRun *r = s->r;
        while (s->next_chunk < r->n_chunks && s->out.buf.len < 256 * 1024) {
                const LogChunk *ch = &r->chunks[s->next_chunk];
                LogPos pos = { .at = ch->offset + s->chunk_off, .skip = s->skip };
                if (ch->stream == 0) {
                        sse_phase_at(&s->out.buf, &pos, ch->phase);
                        s->next_chunk++;
                        continue;
                }
                size_t left = ch->len - s->chunk_off, n = MIN(left, (size_t) 64 * 1024);
                /* Another chunk follows, or the run is over: this one
                 * will not grow. */
                bool chunk_final = s->next_chunk + 1 < r->n_chunks || r->done;
                /* A piece the chunk goes on after (the cap, or a run still
                 * writing) ends before a character its end would split:
                 * the rest of it comes with the next piece. */
                if (!(chunk_final && n == left))
                        n = utf8_complete_prefix(r->log.data + ch->offset + s->chunk_off, n);
                /* Chunks grow while the run writes; this one may get
                 * longer, so remember how far we got. */
                if (n > 0)
                        sse_output_at(&s->out.buf, &pos, ch->stream, r->log.data + ch->offset + s->chunk_off, n,
                                      ch->timestamp);
                s->chunk_off += n;
                if (chunk_final) {
                        if (s->chunk_off >= ch->len) {
                                s->next_chunk++;
                                s->chunk_off = 0;
                        }
                } else
                        break;
        }
        return r->done && s->next_chunk >= r->n_chunks;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
        SseStream *s = cls;
        Daemon *d = s->d;

        while (daemon_sse_drained(&s->out)) {
                if (s->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                DaemonWake why = s->w.why;
                s->w.why = DAEMON_WAKE_NONE;
                if (why == DAEMON_WAKE_GONE)
                        return daemon_stream_cut(s->conn, buf, max);
                if (daemon_sse_cred_revoked(d, &s->cred, s->tenant, &s->out.buf)) {
                        s->ended = true;
                        continue;
                }

                /* Taken before looking: a chunk logged after the look
                 * makes the park below fail, and we look again. */
                uint64_t gen = daemon_wait_arm();
                pthread_mutex_lock(&d->lock);
                DRun *r = s->r;
                bool done = sse_copy_new(s);
                pthread_mutex_unlock(&d->lock);

                if (done) {
                        json_t *j = NULL;
                        if (run_lookup_json(d, s->tenant, r->id, &j) >= 0) {
                                sse_end(&s->out.buf, j, s->show_paths);
                                json_decref(j);
                        }
                        s->ended = true;
                } else if (s->out.buf.len == 0) {
                        if (why == DAEMON_WAKE_DRAIN)
                                return MHD_CONTENT_READER_END_OF_STREAM; /* the daemon stops */
                        if (why == DAEMON_WAKE_TIMEOUT)
                                /* Nothing new for a while: a comment keeps
                                 * proxies from timing out. */
                                daemon_sse_keepalive(&s->out.buf);
                        else if (daemon_wait_park(&s->w, s->conn, r, gen, now_monotonic() + 5 * USEC_PER_SEC))
                                return 0; /* suspended; MHD calls again once resumed */
                }
        }
        return daemon_sse_take(&s->out, buf, max);
}

/* ?events=1 without follow: what an active run wrote so far as events,
 * stdout and stderr apart (a copy taken under the lock, written out after
 * it), then the run as it stands. A piece cut inside a character keeps
 * its exact bytes in base64 (sse_output). */
static struct MHD_Response *live_log_events(const DaemonCall *call, DRun *r, unsigned *ret_status) {
        LogPos pos = { .skip = log_resume_at(call) };
        Daemon *d = call->d;
        pthread_mutex_lock(&d->lock);
        size_t n_chunks = r->n_chunks, len = r->log.len;
        LogChunk *chunks = xcalloc(n_chunks ?: 1, sizeof(LogChunk));
        if (n_chunks)
                memcpy(chunks, r->chunks, n_chunks * sizeof(LogChunk));
        _cleanup_free_ char *log = xmemdupz(r->log.data, len);
        pthread_mutex_unlock(&d->lock);
        Buf b;
        buf_init(&b, SIZE_MAX);
        for (size_t i = 0; i < n_chunks; i++) {
                const LogChunk *ch = &chunks[i];
                pos.at = ch->offset;
                if (ch->stream == 0)
                        sse_phase_at(&b, &pos, ch->phase);
                for (size_t off = 0; ch->stream != 0 && off < ch->len;) {
                        size_t n = MIN(ch->len - off, (size_t) 64 * 1024);
                        if (n < ch->len - off) /* events of 64 KiB at most, cut between characters */
                                n = utf8_complete_prefix(log + ch->offset + off, n) ?: n;
                        sse_output_at(&b, &pos, ch->stream, log + ch->offset + off, n, ch->timestamp);
                        off += n;
                }
        }
        free(chunks);
        json_t *j = NULL;
        if (run_lookup_json(d, call->tenant, r->id, &j) >= 0) {
                sse_end(&b, j, daemon_call_shows_paths(call));
                json_decref(j);
        }
        drun_unref(d, r);
        size_t n = b.len;
        return daemon_sse_response(daemon_text_response(200, "text/event-stream", buf_steal(&b), n, ret_status));
}

/* An active run's log: what it wrote so far, or a live stream. */
static struct MHD_Response *live_log(const DaemonCall *call, DRun *r, bool follow, unsigned *ret_status) {
        Daemon *d = call->d;
        if (!follow && daemon_call_query_true(call, "events"))
                return live_log_events(call, r, ret_status);
        if (!follow) {
                size_t n;
                char *t = drun_log_text(d, r, &n);
                drun_unref(d, r);
                return daemon_text_response(200, "text/plain; charset=utf-8", t, n, ret_status);
        }
        SseStream *s = xcalloc(1, sizeof(SseStream));
        daemon_waiter_init(&s->w);
        s->conn = call->conn;
        s->d = d;
        s->r = r;
        s->tenant = xstrdup(call->tenant);
        s->show_paths = daemon_call_shows_paths(call);
        s->cred = call->cred;
        s->skip = log_resume_at(call);
        buf_init(&s->out.buf, SIZE_MAX);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_read, s, sse_free);
        if (!resp) {
                sse_free(s);
                return NULL;
        }
        *ret_status = 200;
        return daemon_sse_response(resp);
}

/* ---- logs in a cluster: the run's Redis stream, whichever node ran it ---- */

/* Appends entries to out as SSE events (follow) or as plain text; returns
 * whether the end marker was among them. */
static bool cluster_log_render(Buf *out, LogPos *pos, const ClusterLogEntry *v, size_t n, bool sse) {
        for (size_t i = 0; i < n; i++)
                switch (v[i].kind) {
                case CLUSTER_LOG_END:
                        return true;
                case CLUSTER_LOG_PHASE:
                        if (sse)
                                sse_phase_at(out, pos, v[i].data);
                        break;
                case CLUSTER_LOG_STDOUT:
                case CLUSTER_LOG_STDERR:
                        if (sse) /* 0 from an older node: no "time" */
                                sse_output_at(out, pos, (int) v[i].kind, v[i].data, v[i].len, v[i].timestamp);
                        else
                                (void) buf_append(out, v[i].data, v[i].len);
                        break;
                default:
                        break;
                }
        return false;
}

/* Everything the log holds now, without waiting; true when its end
 * marker was read. */
static int cluster_log_drain(ClusterLogReader *rd, Buf *out, LogPos *pos, bool sse, bool *ret_end) {
        *ret_end = false;
        for (;;) {
                ClusterLogEntry *v = NULL;
                size_t n = 0;
                int k = cluster_log_read(rd, 0, &v, &n);
                if (k < 0)
                        return k;
                bool end = cluster_log_render(out, pos, v, n, sse);
                cluster_log_entries_free(v, n);
                if (end)
                        *ret_end = true;
                if (end || n == 0)
                        return 0;
        }
}

/* A follower of a run's Redis log. It never blocks its MHD thread: each
 * look is a non-blocking XREAD on the reader's own connection, and with
 * nothing new the connection is parked (daemon_wait_park) for
 * CLUSTER_SSE_POLL_MS, the running node's flush period, on a key of its own
 * (no local event tells of a remote run's output). */
#define CLUSTER_SSE_POLL_MS 50
/* How long an end marker waits for the run's final record (written just
 * after it), so the end event carries the result. */
#define CLUSTER_SSE_END_WAIT_S 5
/* A comment after this long without output keeps proxies from timing out. */
#define CLUSTER_SSE_KEEPALIVE_S 5

typedef struct ClusterSse {
        Daemon *d;
        struct MHD_Connection *conn;
        DaemonWaiter w;
        char *tenant, *id;
        bool show_paths; /* the caller is an admin */
        ClusterLogReader *rd;
        LogPos pos; /* where the stream stands in the log */
        SseOut out;
        usec_t end_deadline;    /* monotonic: the end marker was read; 0: not yet */
        usec_t last_sent;       /* monotonic: when output or a keep-alive went last */
        DaemonCred cred;        /* what opened the stream: its end ends the stream */
        bool ended;
} ClusterSse;

static void cluster_sse_free(void *cls) {
        ClusterSse *s = cls;
        __atomic_sub_fetch(&s->d->remote_follows, 1, __ATOMIC_RELEASE);
        daemon_waiter_done(&s->w);
        cluster_log_reader_free(s->rd);
        buf_free(&s->out.buf);
        free(s->tenant);
        free(s->id);
        free(s);
}

/* One look at the log: appends what is new to s->out; sets s->ended (with
 * the end event) once the end marker and the final record are in, or the
 * record ended without a marker (cancelled while queued, lost). 0, or a
 * negative errno when Redis cannot be read. */
static int cluster_sse_look(ClusterSse *s) {
        if (s->end_deadline == 0) {
                ClusterLogEntry *v = NULL;
                size_t n = 0;
                int k = cluster_log_read(s->rd, 0, &v, &n);
                if (k < 0)
                        return k;
                bool end = cluster_log_render(&s->out.buf, &s->pos, v, n, true);
                cluster_log_entries_free(v, n);
                /* The record ends after its log is complete: what is
                 * there now is all of it. */
                if (!end && n == 0 && record_ended(s->d, s->tenant, s->id) &&
                    cluster_log_drain(s->rd, &s->out.buf, &s->pos, true, &end) >= 0)
                        end = true;
                if (end)
                        s->end_deadline = now_monotonic() + CLUSTER_SSE_END_WAIT_S * USEC_PER_SEC;
        }
        if (s->end_deadline > 0 &&
            (record_ended(s->d, s->tenant, s->id) || now_monotonic() >= s->end_deadline)) {
                json_t *j = NULL;
                if (run_lookup_json(s->d, s->tenant, s->id, &j) >= 0) {
                        sse_end(&s->out.buf, j, s->show_paths);
                        json_decref(j);
                }
                s->ended = true;
        }
        return 0;
}

static ssize_t cluster_sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
        ClusterSse *s = cls;
        while (daemon_sse_drained(&s->out)) {
                if (s->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                ssize_t woken = daemon_sse_woken(&s->w, s->conn, buf, max);
                if (woken)
                        return woken;
                if (daemon_sse_cred_revoked(s->d, &s->cred, s->tenant, &s->out.buf)) {
                        s->ended = true;
                        continue;
                }
                if (cluster_sse_look(s) < 0)
                        return daemon_stream_cut(s->conn, buf, max);
                usec_t now = now_monotonic();
                if (daemon_sse_ready(&s->out, &s->last_sent, now, CLUSTER_SSE_KEEPALIVE_S * USEC_PER_SEC))
                        break;
                /* Only the timer wakes it (its own key); the drain and a
                 * hang-up too. A TIMEOUT answer means: look again. */
                if (daemon_wait_park(&s->w, s->conn, s, daemon_wait_arm(), now + CLUSTER_SSE_POLL_MS * USEC_PER_MSEC))
                        return 0; /* suspended; MHD calls again once resumed */
        }
        return daemon_sse_take(&s->out, buf, max);
}

/* daemon.h. */
int daemon_cluster_log_text(Daemon *d, const char *id, Buf *out) {
        assert(d->cluster);
        ClusterLogReader *rd = NULL;
        int k = cluster_log_reader_new(d->queue, id, &rd);
        if (k < 0)
                return k;
        bool end;
        k = cluster_log_drain(rd, out, &(LogPos){ 0 }, false, &end);
        cluster_log_reader_free(rd);
        return k;
}

static struct MHD_Response *cluster_log(const DaemonCall *call, const RunRecord *rec, bool follow,
                                        unsigned *ret_status) {
        Daemon *d = call->d;
        if (!follow && daemon_call_query_true(call, "events")) {
                /* What the run's Redis log holds now, then the run as it stands. */
                ClusterLogReader *rd = NULL;
                Buf b;
                buf_init(&b, 256U << 20);
                bool end;
                int k = cluster_log_reader_new(d->queue, rec->id, &rd);
                if (k >= 0)
                        k = cluster_log_drain(rd, &b, &(LogPos){ .skip = log_resume_at(call) }, true, &end);
                cluster_log_reader_free(rd);
                json_t *j = NULL;
                if (k >= 0 && (k = run_lookup_json(d, call->tenant, rec->id, &j)) >= 0) {
                        sse_end(&b, j, daemon_call_shows_paths(call));
                        json_decref(j);
                }
                if (k < 0) {
                        buf_free(&b);
                        return daemon_call_errno(call, k, "run log", ret_status);
                }
                size_t n = b.len;
                return daemon_sse_response(
                        daemon_text_response(200, "text/event-stream", buf_steal(&b), n, ret_status));
        }
        if (!follow) {
                Buf b;
                buf_init(&b, 256U << 20);
                int k = daemon_cluster_log_text(d, rec->id, &b);
                if (k < 0) {
                        buf_free(&b);
                        return daemon_call_errno(call, k, "run log", ret_status);
                }
                size_t n = b.len;
                return daemon_text_response(200, "text/plain; charset=utf-8", buf_steal(&b), n, ret_status);
        }
        ClusterLogReader *rd = NULL;
        int k = cluster_log_reader_new(d->queue, rec->id, &rd);
        if (k < 0)
                return daemon_call_errno(call, k, "run log", ret_status);
        ClusterSse *s = xcalloc(1, sizeof(ClusterSse));
        daemon_waiter_init(&s->w);
        s->d = d;
        __atomic_add_fetch(&d->remote_follows, 1, __ATOMIC_RELEASE);
        s->conn = call->conn;
        s->last_sent = now_monotonic();
        s->tenant = xstrdup(call->tenant);
        s->show_paths = daemon_call_shows_paths(call);
        s->id = xstrdup(rec->id);
        s->rd = rd;
        s->pos.skip = log_resume_at(call);
        s->cred = call->cred;
        buf_init(&s->out.buf, SIZE_MAX);
        struct MHD_Response *resp =
                MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, cluster_sse_read, s, cluster_sse_free);
        if (!resp) {
                cluster_sse_free(s);
                return NULL;
        }
        *ret_status = 200;
        return daemon_sse_response(resp);
}

struct MHD_Response *daemon_api_run_logs(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        DRun *r;
        bool follow = daemon_call_query_true(call, "follow");
        int k = daemon_run_record_get(d, call->tenant, call->seg[2], &rec);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        /* In a cluster any node may have run it: its log is in Redis. */
        if (d->cluster)
                return cluster_log(call, rec, follow, ret_status);
        if (daemon_run_find(d, call->tenant, rec->id, &r) >= 0)
                return live_log(call, r, follow, ret_status);

        /* Finished: the log file, whole (?events=1: as the stream replays it). */
        if (!follow && daemon_call_query_true(call, "events"))
                follow = true;
        Buf b;
        buf_init(&b, 256U << 20);
        /* No file: the run printed nothing. One that cannot be read
         * (damaged, a directory in its place) is an error, as the embedded
         * CLI and a DAG task's log say, not an empty log; what was read
         * before a damaged frame is served. */
        LogReplay replay = { .out = &b, .pos.skip = log_resume_at(call) };
        k = rec->log_path ? engine_log_replay(rec->log_path, follow ? log_collect_sse : log_collect,
                                              follow ? (void *) &replay : (void *) &b)
                          : 0;
        if (k < 0 && k != -ENOENT && b.len == 0) {
                buf_free(&b);
                return daemon_call_error(call, 500, "internal", ret_status, "cannot read the log of run %s: %s",
                                         rec->id, strerror(-k));
        }
        if (follow) {
                json_t *j = run_json(rec, NULL);
                sse_end(&b, j, daemon_call_shows_paths(call));
                json_decref(j);
        }
        size_t n = b.len;
        struct MHD_Response *resp = daemon_text_response(200, follow ? "text/event-stream" : "text/plain; charset=utf-8",
                                                         buf_steal(&b), n, ret_status);
        return follow ? daemon_sse_response(resp) : resp;
}

/* ---- lock ------------------------------------------------------------------------ */

/* GET /v1/runs/{id}/lock: the packages and versions the run's environment
 * resolved to (docs/ui.md). {"run", "lock": null} for a run with no
 * requirements (or a pinned invoke, which resolves nothing). */
struct MHD_Response *daemon_api_run_lock(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_(run_record_freep) RunRecord *rec = NULL;
        int k = daemon_run_record_get(d, call->tenant, call->seg[2], &rec);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        _cleanup_free_ char *text = NULL;
        k = daemon_run_lock_get(d, call->tenant, rec->id, &text);
        if (k < 0)
                return daemon_call_errno(call, k, "run", ret_status);
        json_t *lock = pkg_lock_shown(text);
        return daemon_call_json(call, 200, json_pack("{s:s, s:o}", "run", rec->id, "lock", lock ? lock : json_null()),
                                ret_status);
}

/* ---- validate -------------------------------------------------------------------- */

typedef struct ValidationCtx {
        Daemon *d;
        const char *tenant;
} ValidationCtx;

static void on_validation_event(const RunEvent *ev, void *userdata) {
        ValidationCtx *v = userdata;
        daemon_env_note(v->d, v->tenant, ev);
}

int daemon_validate(Daemon *d, const char *tenant, const RunRequest *req, bool check_arguments, RunResult **ret) {
        ValidationCtx vctx = { .d = d, .tenant = tenant };
        RunSpec spec = {
                .tenant = tenant,
                .source = req->source,
                .source_len = req->source_len,
                .filename = req->filename ? req->filename : "main.py",
                .function = req->function,
                .requirements_json = req->requirements_json,
                /* A deployed version's call: its deploy's lock. */
                .lock_json = req->fn ? req->fn->lock_json : NULL,
                .args_json = req->args_json,
                .kwargs_json = req->kwargs_json,
                .limits = req->limits,
                .sandbox = d->cfg.sandbox,
                .validate_only = true,
                /* `pysprinter lock`: the requirements' business only */
                .resolve_only = req->lock_only,
                .no_cache = req->no_cache,
                .describe_only = req->describe_only,
                .skip_argument_check = !check_arguments || req->lock_only || req->describe_only,
                .no_record = true,
        };
        return engine_run(d->engine, &spec, on_validation_event, &vctx, ret);
}

struct MHD_Response *daemon_api_validate(const DaemonCall *call, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL;
        RunRequest req = {};
        RequestCaps caps = daemon_call_caps(call);
        RunResult *res = NULL;
        int k = request_parse(REQUEST_VALIDATE, call->body, call->body_len, &caps, &req, &err);
        if (k < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err);
        k = daemon_validate(call->d, call->tenant, &req, true, &res);
        bool lock = req.lock_only;
        run_request_done(&req);
        if (k < 0)
                return daemon_call_errno(call, k, "validation", ret_status);
        json_t *j = run_result_validation_json(res);
        if (j && lock) {
                /* The lock as `pysprinter lock` prints it embedded: an
                 * index URL's credentials hidden (pkg_url_redact). */
                json_object_set_new(j, "lock", pkg_lock_shown(res->lock_json));
        }
        run_result_free(res);
        return daemon_call_json(call, 200, j, ret_status);
}
