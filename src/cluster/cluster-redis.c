/* The Redis run queue (cluster.h, docs/cluster.md). Every state change is
 * one of the Lua scripts beside this file, so it is atomic in Redis; this
 * file builds their arguments and reads their replies. */
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>

#include "cluster-internal.h"
#include "cluster-scripts.h"

#define K_STREAM CLUSTER_PREFIX "runs"
#define K_DEAD CLUSTER_PREFIX "dead"
#define K_STALE CLUSTER_PREFIX "stale"
#define K_NODES CLUSTER_PREFIX "nodes"
#define K_TENANTS CLUSTER_PREFIX "tenants"

static void reply_freep(redisReply **r) {
        if (*r)
                freeReplyObject(*r);
}
#define _cleanup_reply_ _cleanup_(reply_freep)
static void args_donep(Args *a) {
        args_done(a);
}
#define _cleanup_args_ _cleanup_(args_donep)

static void add_field(Args *a, const char *name, const char *value) {
        if (!value)
                return;
        args_add(a, name);
        args_add(a, value);
}

static void add_field_u(Args *a, const char *name, uint64_t v) {
        args_add(a, name);
        args_addf(a, "%" PRIu64, v);
}

static int ensure_group(ClusterQueue *c, Conn *conn, const char *stream) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "XGROUP");
        args_add(&a, "CREATE");
        args_add(&a, stream);
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, "0");
        args_add(&a, "MKSTREAM");
        int k = 0;
        pthread_mutex_lock(&c->lock);
        redisReply *r = conn_command(conn, a.n, (const char *const *) a.v, &k);
        pthread_mutex_unlock(&c->lock);
        if (!r)
                return k;
        /* BUSYGROUP: another node made it first. NOAUTH: Redis wants a
         * password none was given for; NOPERM: the ACL user may not.
         * LOADING (and the like): Redis not serving yet (open_error()). */
        k = r->type != REDIS_REPLY_ERROR || strstr(r->str, "BUSYGROUP")              ? 0
            : strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "NOPERM", 6) == 0 ? -EACCES
            : cluster_reply_refused_unrun(r->str)                                    ? -EAGAIN
                                                                                     : -EIO;
        freeReplyObject(r);
        return k;
}

/* The node's clock in ms. PYSPRINTER_TEST_CLOCK_SKEW_MS (signed) moves it,
 * for the tests of nodes whose clocks differ (no libfaketime needed). */
static uint64_t now_ms(void) {
        static int64_t skew = INT64_MIN;
        if (skew == INT64_MIN) {
                const char *t = getenv("PYSPRINTER_TEST_CLOCK_SKEW_MS");
                skew = t && *t ? strtoll(t, NULL, 10) : 0;
        }
        return (uint64_t) ((int64_t) (now_realtime() / USEC_PER_MSEC) + skew);
}

int cluster_submit(RunQueue *q, const RunRecord *r, const char *request_json, const char *idem_key, char **ret_id) {
        return cluster_submit_env(q, r, request_json, idem_key, NULL, UINT_MAX, ret_id);
}

int cluster_submit_env(RunQueue *q, const RunRecord *r, const char *request_json, const char *idem_key, const char *env,
                       unsigned max_queued, char **ret_id) {
        ClusterQueue *c = cq(q);
        assert(r && r->id && r->tenant);
        _cleanup_args_ Args a = { 0 };
        /* A deployed function's run is indexed for its function's listing
         * too (cluster_function_run_list()). */
        const char *fn = r->request_given ? r->request_fn_name : NULL;
        ARGS_EVAL(&a, submit, 8);
        args_addf(&a, CLUSTER_PREFIX "run:%s", r->id);
        args_add(&a, K_STREAM);
        args_addf(&a, CLUSTER_PREFIX "idem:%s:%s", r->tenant, idem_key ? idem_key : "");
        args_addf(&a, CLUSTER_PREFIX "idx:%s", r->tenant);
        args_add(&a, K_TENANTS);
        args_addf(&a, CLUSTER_PREFIX "fidx:%s:%s", r->tenant, fn ? fn : "");
        args_addf(&a, CLUSTER_PREFIX "ridx:%s", r->tenant);
        args_addf(&a, CLUSTER_PREFIX "queued:%s", r->tenant);
        args_add(&a, r->id);
        args_add(&a, idem_key ? "1" : "0");
        args_add(&a, "86400");
        args_addf(&a, "%" PRIu64, (uint64_t) r->created);
        args_add(&a, env ? env : "");
        args_add(&a, CLUSTER_PREFIX);
        if (max_queued == UINT_MAX)
                args_add(&a, "");
        else
                args_addf(&a, "%u", max_queued);
        args_add(&a, fn ? "1" : "0");
        add_field(&a, "id", r->id);
        add_field(&a, "tenant", r->tenant);
        add_field(&a, "filename", r->filename);
        add_field(&a, "function", r->function);
        add_field(&a, "args_json", r->args_json);
        add_field(&a, "kwargs_json", r->kwargs_json);
        add_field(&a, "request_json", request_json);
        add_field_u(&a, "created", r->created);
        add_field_u(&a, "max_attempts", (uint64_t) MAX(r->max_attempts, 1));
        /* Where it came from (the run object's fn_name, fn_version,
         * schedule), kept for the record's life as the runs table keeps
         * them. */
        add_field(&a, "fn_name", r->fn_name);
        if (r->fn_version > 0)
                add_field_u(&a, "fn_version", (uint64_t) r->fn_version);
        add_field(&a, "schedule", r->schedule);
        add_field(&a, "limits_json", r->limits_json);
        /* Whose waiter hears the end (finish.lua publishes on its channel),
         * and that it reads the ended record in the message ("r:"): a
         * gateway of an older release, which does not, gets "d:". */
        add_field(&a, "gateway", c->node_id);
        add_field(&a, "gateway_reads", "r");
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[1]->type != REDIS_REPLY_STRING)
                return -EBADMSG;
        if (rep->element[0]->integer == 2)
                return -EUSERS; /* the tenant's share is full: nothing written */
        if (ret_id)
                *ret_id = xstrdup(rep->element[1]->str);
        return (int) rep->element[0]->integer;
}

static int cq_submit(RunQueue *q, const RunRecord *r, const char *request_json) {
        int k = cluster_submit(q, r, request_json, NULL, NULL);
        return MIN(k, 0);
}

static int cq_start(RunQueue *q, const char *id, usec_t started, int *ret_attempt) {
        ClusterQueue *c = cq(q);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, start, 1);
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_addf(&a, "%" PRIu64, (uint64_t) started);
        args_add(&a, c->node_id);
        args_add(&a, CLUSTER_PREFIX);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_INTEGER)
                return -EBADMSG;
        if (rep->integer < 0)
                return -ESTALE;
        *ret_attempt = (int) rep->integer;
        return 0;
}

int cluster_finish_with_log(RunQueue *q, const RunRecord *r, int attempt, const ClusterLogEntry *v, size_t n,
                            bool end) {
        ClusterQueue *c = cq(q);
        assert(r && r->id && (v || n == 0));
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, finish, 4);
        args_addf(&a, CLUSTER_PREFIX "run:%s", r->id);
        args_add(&a, K_STREAM);
        args_add(&a, K_STALE);
        args_addf(&a, CLUSTER_PREFIX "log:%s", r->id);
        args_addf(&a, "%d", attempt);
        args_add(&a, CLUSTER_GROUP);
        args_addf(&a, "%u", c->record_ttl_s);
        args_add(&a, CLUSTER_PREFIX);
        args_add(&a, c->node_id);
        args_addf(&a, "%" PRIu64, now_ms());
        args_addf(&a, "%u", c->warm_ms);
        args_add(&a, r->lock_json ? r->lock_json : "");
        args_addf(&a, "%d", CLUSTER_LOG_MAX_ENTRIES);
        args_addf(&a, "%zu", (size_t) CLUSTER_LOG_ARGS_PER_ENTRY * (n + (end ? 1 : 0)));
        cluster_log_args(&a, v, n, end);
        add_field(&a, "function", r->function);
        add_field(&a, "status", r->status);
        args_add(&a, "exit_code");
        args_addf(&a, "%d", r->exit_code);
        add_field(&a, "value_json", r->value_json);
        add_field(&a, "value_repr", r->value_repr);
        add_field(&a, "error_type", r->error_type);
        add_field(&a, "error_message", r->error_message);
        add_field(&a, "traceback", r->traceback);
        add_field(&a, "timings_json", r->timings_json);
        add_field(&a, "outputs_json", r->outputs_json);
        add_field(&a, "log_path", r->log_path);
        if (r->started > 0)
                add_field_u(&a, "started", r->started);
        add_field_u(&a, "finished", r->finished ? r->finished : now_realtime());
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_INTEGER)
                return -EBADMSG;
        return rep->integer == 1 ? 0 : -ESTALE;
}

static int cq_finish(RunQueue *q, const RunRecord *r, int attempt) {
        return cluster_finish_with_log(q, r, attempt, NULL, 0, false);
}

static int cancel(RunQueue *q, const char *id, const char *message, bool running_too) {
        ClusterQueue *c = cq(q);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, cancel, 2);
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, K_STREAM);
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, message ? message : "the run was cancelled");
        args_addf(&a, "%" PRIu64, (uint64_t) now_realtime());
        args_addf(&a, "%u", c->record_ttl_s);
        args_add(&a, CLUSTER_PREFIX);
        args_add(&a, running_too ? "1" : "0");
        args_addf(&a, "%u", c->lease_ttl_ms + c->claim_timeout_ms);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_INTEGER || rep->integer == 0)
                return -ESTALE;
        return rep->integer == 1 ? 0 : 1;
}

/* The queue's cancel (RunQueueOps): a queued run only. A node whose start
 * lost the race must never cancel the run another node started. */
static int cq_cancel(RunQueue *q, const char *id, const char *message) {
        return MIN(cancel(q, id, message, false), 0);
}

int cluster_cancel(RunQueue *q, const char *id, const char *message) {
        return cancel(q, id, message, true);
}

/* Nothing to recover at start-up: a node's runs are found again through
 * the stream (its pending entries, reclaimed once its lease expired). */
static int cq_recover(RunQueue *q, const char *lost_message, PendingRun **ret, size_t *ret_n, size_t *ret_lost) {
        *ret = NULL;
        *ret_n = 0;
        if (ret_lost)
                *ret_lost = 0;
        return 0;
}

static void cq_free(RunQueue *q) {
        ClusterQueue *c = cq(q);
        conn_done(&c->conn);
        conn_done(&c->claim_conn);
        pthread_mutex_destroy(&c->lock);
        free(c->node_id);
        free(c->url);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        free(c->k_own);
        free(c);
}

/* Why the queue could not be made, for the operator: the password cases
 * say where a password goes, and the URL is shown without it. */
static char *open_error(const ClusterOptions *o, const Conn *conn, int k) {
        _cleanup_free_ char *shown = cluster_url_redacted(o->url);
        if (k == -EACCES && !conn->password)
                return xasprintf("Redis at %s refused this node (NOAUTH or NOPERM): give its password in the URL "
                                 "(redis://[USER]:PASSWORD@HOST:PORT) or as cluster.redis_password in the config, "
                                 "and an ACL user that may run the cluster's commands",
                                 shown);
        if (k == -EACCES)
                return xasprintf("Redis at %s refused the password (or its ACL user may not run the cluster's "
                                 "commands): check the URL's USER:PASSWORD or cluster.redis_password",
                                 shown);
        if (k == -EAGAIN)
                /* Before, "cannot reach Redis at …: Input/output error". */
                return xasprintf("Redis at %s does not serve yet (it answers LOADING while it reads its data after "
                                 "a start, or is busy): start this node again once it does (the shipped units do, "
                                 "every 2 s)",
                                 shown);
        return xasprintf("cannot reach Redis at %s: %s", shown, strerror(-k));
}

static const RunQueueOps cluster_queue_ops = {
        .name = "redis",
        .submit = cq_submit,
        .start = cq_start,
        .finish = cq_finish,
        .cancel = cq_cancel,
        .recover = cq_recover,
        .free = cq_free,
};

int cluster_queue_new(const ClusterOptions *o, RunQueue **ret, char **ret_error) {
        assert(o && o->url && o->node_id && ret);
        ClusterQueue *c = xcalloc(1, sizeof(ClusterQueue));
        c->base.ops = &cluster_queue_ops;
        c->node_id = xstrdup(o->node_id);
        c->url = xstrdup(o->url);
        c->password = o->password ? xstrdup(o->password) : NULL;
        c->claim_timeout_ms = o->claim_timeout_ms ? o->claim_timeout_ms : 5000;
        c->lease_ttl_ms = o->lease_ttl_ms ? o->lease_ttl_ms : 3000;
        c->record_ttl_s = o->record_ttl_s ? o->record_ttl_s : 7 * 86400;
        c->affinity_delay_ms = o->affinity_delay_ms ? o->affinity_delay_ms : 200;
        c->warm_ms = o->warm_ms ? o->warm_ms : 5 * 60 * 1000;
        /* The scan's cost grows with the nodes and the pending entries, and
         * ran before every claim: at a few hundred runs a second it was a
         * fifth of Redis's time. Its deadlines are the claim timeout (5 s)
         * and the affinity delay (200 ms): once per delay keeps the
         * fallback's bound (delay + one claim round) as it was. */
        c->reclaim_interval_ms = o->reclaim_interval_ms ? o->reclaim_interval_ms
                                                        : MAX(MIN(c->claim_timeout_ms / 4, c->affinity_delay_ms), 10u);
        c->k_own = xasprintf(CLUSTER_PREFIX "runs:%s", o->node_id);
        pthread_mutex_init(&c->lock, NULL);
        if (cq_conn_parse(c, &c->conn) < 0 || cq_conn_parse(c, &c->claim_conn) < 0) {
                if (ret_error) {
                        _cleanup_free_ char *shown = cluster_url_redacted(o->url);
                        *ret_error = xasprintf("'%s' is not a Redis URL (redis://[USER:PASSWORD@]HOST:PORT or "
                                               "unix:PATH)",
                                               shown);
                }
                cq_free(&c->base);
                return -EINVAL;
        }
        int k = ensure_group(c, &c->conn, K_STREAM);
        if (k >= 0 && !o->client)
                k = ensure_group(c, &c->conn, c->k_own);
        if (k < 0) {
                if (ret_error)
                        *ret_error = open_error(o, &c->conn, k);
                cq_free(&c->base);
                return k;
        }
        *ret = &c->base;
        return 0;
}

static char *config_get(ClusterQueue *c, const char *name) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "CONFIG");
        args_add(&a, "GET");
        args_add(&a, name);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || rep->element[1]->type != REDIS_REPLY_STRING)
                return NULL;
        return xstrdup(rep->element[1]->str);
}

int cluster_check_durability(RunQueue *q, char **ret_error) {
        ClusterQueue *c = cq(q);
        _cleanup_free_ char *aof = config_get(c, "appendonly"), *policy = config_get(c, "maxmemory-policy");
        if (!aof || !policy) {
                *ret_error = xstrdup("cannot read Redis's configuration (CONFIG GET appendonly, maxmemory-policy)");
                return -EIO;
        }
        if (!streq(aof, "yes")) {
                *ret_error = xstrdup("Redis runs without AOF (appendonly no): a Redis restart would lose "
                                     "acknowledged runs; set 'appendonly yes', or pass --redis-volatile to accept that");
                return -EPERM;
        }
        if (!streq(policy, "noeviction")) {
                *ret_error = xasprintf("Redis may evict keys (maxmemory-policy %s): queued runs could vanish; set "
                                       "'maxmemory-policy noeviction', or pass --redis-volatile to accept that",
                                       policy);
                return -EPERM;
        }
        return 0;
}

/* The fields a claimed run is started from. -ENOENT: no such record (it
 * expired); -ESTALE: it is not queued (cancelled or ended meanwhile). */
static int pending_read(ClusterQueue *c, Conn *conn, const char *id, PendingRun *ret) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        const char *f[] = { "status", "tenant", "request_json", "attempt", "max_attempts", "created" };
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                args_add(&a, f[i]);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != ELEMENTSOF(f))
                return -EBADMSG;
        redisReply **e = rep->element;
        if (e[0]->type != REDIS_REPLY_STRING)
                return -ENOENT;
        if (!streq(e[0]->str, "queued"))
                return -ESTALE;
        int attempt = 0, max_attempts = 1;
        if (e[3]->type == REDIS_REPLY_STRING)
                (void) parse_int(e[3]->str, &attempt);
        if (e[4]->type == REDIS_REPLY_STRING)
                (void) parse_int(e[4]->str, &max_attempts);
        /* A queued record without its tenant or request is damaged: it is
         * delivered as it is (request_json NULL), and the run manager ends
         * it as an error (daemon-runs.c drun_end_unreadable()) instead of
         * leaving it to come back at every claim timeout. */
        *ret = (PendingRun) {
                .id = xstrdup(id),
                .tenant = xstrdup(e[1]->type == REDIS_REPLY_STRING ? e[1]->str : ""),
                .request_json = e[2]->type == REDIS_REPLY_STRING ? xstrdup(e[2]->str) : NULL,
                .attempt = attempt,
                .max_attempts = max_attempts,
                .created = e[5]->type == REDIS_REPLY_STRING ? strtoull(e[5]->str, NULL, 10) : 0,
        };
        return 0;
}

static void ack_entry(ClusterQueue *c, Conn *conn, const char *stream, const char *eid) {
        const char *ops[] = { "XACK", "XDEL" };
        for (size_t i = 0; i < 2; i++) {
                _cleanup_args_ Args a = { 0 };
                args_add(&a, ops[i]);
                args_add(&a, stream);
                if (i == 0)
                        args_add(&a, CLUSTER_GROUP);
                args_add(&a, eid);
                int k = 0;
                redisReply *r = cluster_cmd(c, conn, &a, &k);
                if (r)
                        freeReplyObject(r);
        }
}

static void pending_add(ClusterQueue *c, Conn *conn, const char *id, const char *stream, const char *eid,
                        PendingRun **v, size_t *n) {
        PendingRun p;
        int k = pending_read(c, conn, id, &p);
        if (k == -ENOENT || k == -ESTALE) {
                /* Nothing to run: the entry is done with. */
                if (eid)
                        ack_entry(c, conn, stream, eid);
                return;
        }
        if (k < 0)
                return; /* Redis unreachable: stays pending, claimed again once idle (reclaim.lua) */
        *v = xrealloc(*v, (*n + 1) * sizeof(PendingRun));
        (*v)[(*n)++] = p;
}

/* The fields of a stream entry a claim reads: the run's id, and what a
 * fresh entry (submit.lua) also carries to start it from. */
typedef struct EntryFields {
        const char *id, *tenant, *request, *max_attempts, *created;
} EntryFields;

static EntryFields entry_fields(const redisReply *f) {
        EntryFields e = { 0 };
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
                const char *name = f->element[j]->str, *value = f->element[j + 1]->str;
                if (!name || !value)
                        continue;
                if (streq(name, "id"))
                        e.id = value;
                else if (streq(name, "tenant"))
                        e.tenant = value;
                else if (streq(name, "request_json"))
                        e.request = value;
                else if (streq(name, "max_attempts"))
                        e.max_attempts = value;
                else if (streq(name, "created"))
                        e.created = value;
        }
        return e;
}

/* The run a fresh entry names, from the entry's own fields, into *v: true.
 * False when the entry holds the id alone (requeued or reclaimed: the
 * record is read, pending_add()). Its status is not looked at: a run
 * cancelled since is refused by its start (start.lua), as one cancelled
 * between a read of its record and its start always was. */
static bool entry_pending(const EntryFields *e, PendingRun **v, size_t *n) {
        if (!e->tenant || !e->request || !e->max_attempts || !e->created)
                return false;
        PendingRun p = {
                .id = xstrdup(e->id),
                .tenant = xstrdup(e->tenant),
                .request_json = xstrdup(e->request),
                .attempt = 0,
                .max_attempts = 1,
                .created = strtoull(e->created, NULL, 10),
        };
        (void) parse_int(e->max_attempts, &p.max_attempts);
        *v = xrealloc(*v, (*n + 1) * sizeof(PendingRun));
        (*v)[(*n)++] = p;
        return true;
}

/* An entry read without a free slot for it goes back to the shared stream. */
static void requeue(ClusterQueue *c, const char *stream, const char *eid, const char *id) {
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, requeue, 3);
        args_add(&a, stream);
        args_add(&a, K_STREAM);
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, eid);
        args_add(&a, id);
        int k = 0;
        redisReply *r = cluster_cmd(c, &c->claim_conn, &a, &k);
        if (r)
                freeReplyObject(r);
}

int cluster_hand_back(RunQueue *q, const char *id) {
        ClusterQueue *c = cq(q);
        assert(id);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, handback, 2);
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, K_STREAM);
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, id);
        int k = 0;
        _cleanup_reply_ redisReply *r = cluster_cmd(c, &c->claim_conn, &a, &k);
        if (!r)
                return k;
        return r->type == REDIS_REPLY_INTEGER ? (int) r->integer : -EIO;
}

int cluster_gave_up(RunQueue *q, const char *id, int attempt) {
        ClusterQueue *c = cq(q);
        assert(id && attempt > 0);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, gaveup, 2);
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, K_STREAM);
        args_add(&a, c->node_id);
        args_addf(&a, "%d", attempt);
        args_add(&a, CLUSTER_GROUP);
        args_addf(&a, "%" PRIu64, (uint64_t) now_realtime());
        args_addf(&a, "%u", c->record_ttl_s);
        args_add(&a, CLUSTER_PREFIX);
        int k = 0;
        _cleanup_reply_ redisReply *r = cluster_cmd(c, &c->conn, &a, &k);
        if (!r)
                return k;
        return r->type == REDIS_REPLY_INTEGER ? (int) r->integer : -EIO;
}

static int reclaim(ClusterQueue *c, size_t max, char *const *held, PendingRun **v, size_t *n) {
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, reclaim, 3);
        args_add(&a, K_STREAM);
        args_add(&a, K_DEAD);
        args_add(&a, K_NODES);
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, c->node_id);
        args_addf(&a, "%u", c->claim_timeout_ms);
        args_addf(&a, "%zu", max);
        args_addf(&a, "%" PRIu64, (uint64_t) now_realtime());
        args_addf(&a, "%u", c->record_ttl_s);
        args_add(&a, CLUSTER_PREFIX);
        args_addf(&a, "%u", c->affinity_delay_ms);
        args_addf(&a, "%u", c->lease_ttl_ms);
        for (char *const *h = held; h && *h; h++)
                args_add(&a, *h);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->claim_conn, &a, &k);
        if (!rep)
                return k;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                        pending_add(c, &c->claim_conn, rep->element[i]->str, NULL, NULL, v, n);
        return 0;
}

int cluster_claim(RunQueue *q, size_t max, unsigned block_ms, char *const *held, PendingRun **ret, size_t *ret_n) {
        ClusterQueue *c = cq(q);
        PendingRun *v = NULL;
        size_t n = 0;
        *ret = NULL;
        *ret_n = 0;
        if (max == 0)
                return 0;
        int k = 0;
        usec_t now = now_monotonic();
        if (now >= c->reclaim_due) {
                k = reclaim(c, max, held, &v, &n);
                if (k < 0 && k != -ENOENT)
                        return k; /* still due: the next claim scans again */
                /* Every slot filled: more may wait, scan again next time. */
                c->reclaim_due = n >= max ? now : now + (usec_t) c->reclaim_interval_ms * USEC_PER_MSEC;
        }
        if (n < max) {
                /* This node's own stream (runs placed here for a warm
                 * environment) and the shared one, in one blocking read;
                 * COUNT is per stream, so a read that got more than the
                 * free slots hands the extra shared entries back. */
                _cleanup_args_ Args a = { 0 };
                args_add(&a, "XREADGROUP");
                args_add(&a, "GROUP");
                args_add(&a, CLUSTER_GROUP);
                args_add(&a, c->node_id);
                args_add(&a, "COUNT");
                /* Only as many as there are free slots: no prefetch, so a
                 * long run never holds short ones hostage. */
                args_addf(&a, "%zu", max - n);
                if (n == 0 && block_ms > 0) {
                        args_add(&a, "BLOCK");
                        args_addf(&a, "%u", block_ms);
                }
                args_add(&a, "STREAMS");
                args_add(&a, c->k_own);
                args_add(&a, K_STREAM);
                args_add(&a, ">");
                args_add(&a, ">");
                _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->claim_conn, &a, &k);
                if (!rep && k == -ENOENT) {
                        /* a Redis that lost its data */
                        (void) ensure_group(c, &c->claim_conn, K_STREAM);
                        (void) ensure_group(c, &c->claim_conn, c->k_own);
                }
                for (size_t s = 0; rep && rep->type == REDIS_REPLY_ARRAY && s < rep->elements; s++) {
                        redisReply *sr = rep->element[s];
                        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 ||
                            sr->element[0]->type != REDIS_REPLY_STRING)
                                continue;
                        const char *stream = sr->element[0]->str;
                        redisReply *entries = sr->element[1];
                        for (size_t i = 0; i < entries->elements; i++) {
                                redisReply *e = entries->element[i];
                                if (e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
                                        continue;
                                EntryFields ef = entry_fields(e->element[1]);
                                const char *eid = e->element[0]->str;
                                if (!ef.id)
                                        continue;
                                if (n >= max)
                                        requeue(c, stream, eid, ef.id);
                                else if (!entry_pending(&ef, &v, &n))
                                        pending_add(c, &c->claim_conn, ef.id, stream, eid, &v, &n);
                        }
                }
                if (!rep && n == 0)
                        return k;
                /* Nothing new (the read waited its block_ms): idle, so the
                 * next claim scans at once. */
                if (n == 0 && block_ms > 0)
                        c->reclaim_due = 0;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int cluster_lease_refresh(RunQueue *q, const char *status_json, char *const *held, bool *ret_draining,
                          char ***ret_cancel) {
        ClusterQueue *c = cq(q);
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, lease, 6);
        args_addf(&a, CLUSTER_PREFIX "node:%s", c->node_id);
        args_add(&a, K_STREAM);
        args_add(&a, K_NODES);
        args_addf(&a, CLUSTER_PREFIX "drain:%s", c->node_id);
        args_add(&a, K_TENANTS);
        args_add(&a, c->k_own);
        args_addf(&a, "%u", c->lease_ttl_ms);
        args_add(&a, status_json ? status_json : "{}");
        args_add(&a, CLUSTER_GROUP);
        args_add(&a, c->node_id);
        args_add(&a, CLUSTER_PREFIX);
        args_add(&a, "500");
        for (char *const *h = held; h && *h; h++)
                args_add(&a, *h);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        /* {drain 0/1, {ids whose cancel was asked}} (lease.lua) */
        bool arr = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2;
        if (ret_draining)
                *ret_draining = arr && rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 1;
        if (ret_cancel) {
                char **v = NULL;
                for (size_t i = 0; arr && rep->element[1]->type == REDIS_REPLY_ARRAY && i < rep->element[1]->elements;
                     i++)
                        if (rep->element[1]->element[i]->type == REDIS_REPLY_STRING)
                                v = strv_append(v, rep->element[1]->element[i]->str);
                *ret_cancel = v;
        }
        return 0;
}

/* One field of a record hash into r (an unknown name is skipped). */
static void record_set(RunRecord *r, const char *name, const char *value) {
        struct {
                const char *name;
                char **field;
        } text[] = {
                { "id", &r->id },
                { "tenant", &r->tenant },
                { "filename", &r->filename },
                { "function", &r->function },
                { "args_json", &r->args_json },
                { "kwargs_json", &r->kwargs_json },
                { "status", &r->status },
                { "value_json", &r->value_json },
                { "value_repr", &r->value_repr },
                { "error_type", &r->error_type },
                { "error_message", &r->error_message },
                { "traceback", &r->traceback },
                { "timings_json", &r->timings_json },
                { "log_path", &r->log_path },
                { "outputs_json", &r->outputs_json },
                { "fn_name", &r->fn_name },
                { "schedule", &r->schedule },
                { "limits_json", &r->limits_json },
        };
        for (size_t j = 0; j < ELEMENTSOF(text); j++)
                if (streq(name, text[j].name)) {
                        free(*text[j].field);
                        *text[j].field = xstrdup(value);
                        return;
                }
        if (streq(name, "exit_code"))
                (void) parse_int(value, &r->exit_code);
        else if (streq(name, "attempt"))
                (void) parse_int(value, &r->attempt);
        else if (streq(name, "max_attempts"))
                (void) parse_int(value, &r->max_attempts);
        else if (streq(name, "fn_version"))
                (void) parse_int(value, &r->fn_version);
        else if (streq(name, "created"))
                r->created = strtoull(value, NULL, 10);
        else if (streq(name, "started"))
                r->started = strtoull(value, NULL, 10);
        else if (streq(name, "finished"))
                r->finished = strtoull(value, NULL, 10);
}

static RunRecord *record_new(void) {
        RunRecord *r = xcalloc(1, sizeof(RunRecord));
        r->exit_code = -1;
        return r;
}

/* r, or NULL (freed) when it lacks what every record has. */
static RunRecord *record_checked(RunRecord *r) {
        if (!r->id || !r->status || !r->tenant)
                return run_record_free(r);
        return r;
}

/* The record of rep's (name, value) pairs from element first on. */
static RunRecord *record_from_pairs(const redisReply *rep, size_t first) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements <= first)
                return NULL;
        RunRecord *r = record_new();
        for (size_t i = first; i + 1 < rep->elements; i += 2) {
                const char *name = rep->element[i]->str, *value = rep->element[i + 1]->str;
                if (name && value)
                        record_set(r, name, value);
        }
        return record_checked(r);
}

static RunRecord *record_from_hash(const redisReply *rep) {
        return record_from_pairs(rep, 0);
}

/* The records of ids[0..n) as a listing shows them, read in one call
 * (listed.lua: values over RUN_LIST_VALUE_MAX left unread, named in
 * r->elided): ret[i] is NULL where there is none (expired, or another
 * tenant's). */
static int records_listed(ClusterQueue *c, const char *tenant, char *const *ids, size_t n, RunRecord **ret) {
        if (n == 0)
                return 0;
        _cleanup_args_ Args a = { 0 };
        ARGS_EVAL(&a, listed, 0);
        args_add(&a, CLUSTER_PREFIX);
        args_add(&a, RUN_LIST_VALUE_MAX_TEXT);
        args_add(&a, tenant);
        for (size_t i = 0; i < n; i++)
                args_add(&a, ids[i]);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                const redisReply *e = rep->element[i];
                ret[i] = e->type == REDIS_REPLY_ARRAY && e->elements > 0 && e->element[0]->type == REDIS_REPLY_INTEGER
                                 ? record_from_pairs(e, 1)
                                 : NULL;
                if (ret[i])
                        ret[i]->elided = (unsigned) e->element[0]->integer;
        }
        return 0;
}

/* The next "<len>:<bytes>" of [*p, end) as a NUL-terminated copy, *p moved
 * past it; NULL when malformed. */
static char *netstring_next(const char **p, const char *end) {
        const char *colon = memchr(*p, ':', (size_t) (end - *p));
        if (!colon || colon == *p || colon - *p > 9)
                return NULL;
        size_t len = 0;
        for (const char *d = *p; d < colon; d++) {
                if (*d < '0' || *d > '9')
                        return NULL;
                len = len * 10 + (size_t) (*d - '0');
        }
        if (len > (size_t) (end - colon - 1))
                return NULL;
        char *v = xmemdupz(colon + 1, len);
        *p = colon + 1 + len;
        return v;
}

RunRecord *cluster_record_from_netstrings(const char *p, size_t len) {
        const char *end = p + len;
        RunRecord *r = record_new();
        while (p < end) {
                _cleanup_free_ char *name = netstring_next(&p, end);
                _cleanup_free_ char *value = name ? netstring_next(&p, end) : NULL;
                if (!value)
                        return run_record_free(r);
                record_set(r, name, value);
        }
        return record_checked(r);
}

int cluster_run_get(RunQueue *q, const char *tenant, const char *id, RunRecord **ret) {
        ClusterQueue *c = cq(q);
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "HGETALL");
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        RunRecord *r = record_from_hash(rep);
        if (!r)
                return -ENOENT;
        if (tenant && !streq(r->tenant, tenant)) {
                run_record_free(r);
                return -ENOENT;
        }
        *ret = r;
        return 0;
}

int cluster_run_attempt_current(RunQueue *q, const char *id, int attempt) {
        ClusterQueue *c = cq(q);
        assert(id);
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, "status");
        args_add(&a, "attempt");
        args_add(&a, "node");
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
                return -EIO;
        for (size_t i = 0; i < 3; i++)
                if (rep->element[i]->type != REDIS_REPLY_STRING)
                        return 0; /* no record, or not started */
        int current = 0;
        (void) parse_int(rep->element[1]->str, &current);
        return streq(rep->element[0]->str, "running") && current == attempt && streq(rep->element[2]->str, c->node_id);
}

int cluster_run_get_lock(RunQueue *q, const char *tenant, const char *id, char **ret) {
        ClusterQueue *c = cq(q);
        assert(id && ret);
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "HMGET");
        args_addf(&a, CLUSTER_PREFIX "run:%s", id);
        args_add(&a, "tenant");
        args_add(&a, "lock_sha1");
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
                return -EBADMSG;
        redisReply **e = rep->element;
        if (e[0]->type != REDIS_REPLY_STRING || (tenant && !streq(e[0]->str, tenant)))
                return -ENOENT;
        if (e[1]->type != REDIS_REPLY_STRING) {
                *ret = NULL;
                return 0;
        }
        _cleanup_args_ Args g = { 0 };
        args_add(&g, "GET");
        args_addf(&g, CLUSTER_PREFIX "runlock:%s", e[1]->str);
        _cleanup_reply_ redisReply *text = cluster_cmd(c, &c->conn, &g, &k);
        if (!text)
                return k;
        /* Found: it outlives each record naming it (finish.lua). */
        *ret = text->type == REDIS_REPLY_STRING ? xstrdup(text->str) : NULL;
        return 0;
}

/* Runs a (a command answering an array of ids, as ZRANGE does) into
 * *ret, a NULL-terminated strv (NULL when none). */
static int ids_of(ClusterQueue *c, const Args *a, char ***ret) {
        int k = 0;
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, a, &k);
        if (!rep)
                return k;
        char **ids = NULL;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                        ids = strv_append(ids, rep->element[i]->str);
        *ret = ids;
        return 0;
}

/* The ids a listing index key holds, newest first, at most limit: a
 * NULL-terminated strv (NULL when none). */
static int index_ids(ClusterQueue *c, const char *key, size_t limit, char ***ret) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "ZREVRANGE");
        args_add(&a, key);
        args_add(&a, "0");
        args_addf(&a, "%zu", limit > 0 ? limit - 1 : 0);
        return ids_of(c, &a, ret);
}

/* The runs of tenant whose ids the listing index key holds, newest first,
 * at most limit. */
static int index_list(RunQueue *q, const char *tenant, const char *key, size_t limit, RunRecord ***ret,
                      size_t *ret_n) {
        ClusterQueue *c = cq(q);
        _cleanup_strv_free_ char **ids = NULL;
        int k = index_ids(c, key, limit, &ids);
        if (k < 0)
                return k;
        size_t m = strv_length(ids), n = 0;
        RunRecord **v = xcalloc(MAX(m, (size_t) 1), sizeof(RunRecord *));
        k = records_listed(c, tenant, ids, m, v);
        if (k < 0) {
                free(v);
                return k;
        }
        for (size_t i = 0; i < m; i++) {
                if (v[i]) {
                        v[n++] = v[i];
                        continue;
                }
                /* The record expired: its index entry goes too. */
                _cleanup_args_ Args z = { 0 };
                args_add(&z, "ZREM");
                args_add(&z, key);
                args_add(&z, ids[i]);
                redisReply *zr = cluster_cmd(c, &c->conn, &z, &k);
                if (zr)
                        freeReplyObject(zr);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Up to two of tenant's run ids that begin with prefix, in id order, from
 * ridx:<tenant> (submit.lua). */
static int ids_by_prefix(ClusterQueue *c, const char *tenant, const char *prefix, char ***ret) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "ZRANGEBYLEX");
        args_addf(&a, CLUSTER_PREFIX "ridx:%s", tenant);
        args_addf(&a, "[%s", prefix);
        /* Ids are [0-9a-z]: every id that extends prefix sorts below this. */
        args_addf(&a, "(%s\x7f", prefix);
        args_add(&a, "LIMIT");
        args_add(&a, "0");
        args_add(&a, "2");
        return ids_of(c, &a, ret);
}

/* The run whose id begins with prefix among tenant's live records: an id
 * whose record expired leaves the index here (the lease script's trimming
 * may not have met it yet) and the look is made again. */
static int run_get_by_prefix(RunQueue *q, const char *tenant, const char *prefix, RunRecord **ret) {
        ClusterQueue *c = cq(q);
        for (;;) {
                _cleanup_strv_free_ char **ids = NULL;
                int k = ids_by_prefix(c, tenant, prefix, &ids);
                if (k < 0)
                        return k;
                RunRecord *live[2] = {};
                size_t n = 0, gone = 0;
                for (size_t i = 0; ids && ids[i] && i < 2 && k >= 0; i++) {
                        k = cluster_run_get(q, tenant, ids[i], &live[n]);
                        if (k >= 0)
                                n++;
                        else if (k == -ENOENT) {
                                _cleanup_args_ Args z = { 0 };
                                args_add(&z, "ZREM");
                                args_addf(&z, CLUSTER_PREFIX "ridx:%s", tenant);
                                args_add(&z, ids[i]);
                                k = 0;
                                redisReply *zr = cluster_cmd(c, &c->conn, &z, &k);
                                if (zr)
                                        freeReplyObject(zr);
                                gone++;
                        }
                }
                if (k >= 0 && n == 1 && gone == 0) {
                        *ret = live[0];
                        return 0;
                }
                run_record_free(live[0]);
                run_record_free(live[1]);
                if (k < 0)
                        return k;
                if (n == 2)
                        return -EEXIST;
                if (gone == 0)
                        return -ENOENT;
        }
}

int cluster_run_find(RunQueue *q, const char *tenant, const char *id_or_prefix, RunRecord **ret) {
        assert(q && ret);
        if (!id_or_prefix || !*id_or_prefix)
                return -EINVAL;
        int k = cluster_run_get(q, tenant, id_or_prefix, ret);
        if (k != -ENOENT || !tenant)
                return k;
        return run_get_by_prefix(q, tenant, id_or_prefix, ret);
}

int cluster_run_list(RunQueue *q, const char *tenant, size_t limit, RunRecord ***ret, size_t *ret_n) {
        assert(tenant);
        _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "idx:%s", tenant);
        return index_list(q, tenant, key, limit, ret, ret_n);
}

/* Ranks search.lua walks per call: ~1-3 ms of Redis's time each. */
#define SEARCH_CHUNK 1000

/* Reads the next matching ids of a search.lua reply (from element *next
 * on, as many as the page still has room for: one call) and adds to
 * (*v, *n) those that belong on the page; *next moves past them. */
static int search_take(ClusterQueue *c, const char *tenant, const RunFilter *filter, const RunRecord *before,
                       const redisReply *rep, size_t *next, size_t limit, RunRecord ***v, size_t *n) {
        _cleanup_strv_free_ char **ids = NULL;
        size_t m = 0;
        for (; *next < rep->elements && *n + m < limit; (*next)++)
                if (rep->element[*next]->type == REDIS_REPLY_STRING) {
                        ids = strv_append(ids, rep->element[*next]->str);
                        m++;
                }
        _cleanup_free_ RunRecord **got = xcalloc(MAX(m, (size_t) 1), sizeof(RunRecord *));
        int k = records_listed(c, tenant, ids, m, got);
        if (k < 0)
                return k;
        for (size_t i = 0; i < m; i++) {
                RunRecord *r = got[i];
                /* None: expired meanwhile. Newest first, each once: a run
                 * submitted meanwhile moves the ranks on, and the next
                 * chunk starts with runs this one had. */
                if (!r || (filter && !run_filter_match(filter, r)) || (before && !run_record_newer(before, r)) ||
                    (*n > 0 && !run_record_newer((*v)[*n - 1], r))) {
                        run_record_free(r);
                        continue;
                }
                *v = xrealloc(*v, (*n + 1) * sizeof(RunRecord *));
                (*v)[(*n)++] = r;
        }
        return 0;
}

int cluster_run_search(RunQueue *q, const char *tenant, const RunFilter *filter, const RunRecord *before, size_t limit,
                       RunRecord ***ret, size_t *ret_n) {
        ClusterQueue *c = cq(q);
        assert(tenant && ret && ret_n);
        _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "idx:%s", tenant);
        /* The text lowered as strcasestr() folds it in the C locale: ASCII
         * letters only (search.lua folds the fields alike). */
        _cleanup_free_ char *text = xstrdup(filter && filter->text ? filter->text : "");
        for (char *p = text; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        int k = 0;
        long long start = 0;
        if (before) {
                /* The index is scored by creation time: the runs newer
                 * than before's time come first, then from its own. */
                _cleanup_args_ Args a = { 0 };
                args_add(&a, "ZCOUNT");
                args_add(&a, key);
                args_addf(&a, "(%" PRIu64, (uint64_t) before->created);
                args_add(&a, "+inf");
                _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
                if (!rep)
                        return k;
                if (rep->type != REDIS_REPLY_INTEGER)
                        return -EBADMSG;
                start = rep->integer;
        }
        RunRecord **v = NULL;
        size_t n = 0;
        while (n < limit && start >= 0) {
                _cleanup_args_ Args a = { 0 };
                ARGS_EVAL(&a, search, 1);
                args_add(&a, key);
                args_add(&a, CLUSTER_PREFIX);
                args_addf(&a, "%d", SEARCH_CHUNK);
                args_addf(&a, "%lld", start);
                args_add(&a, text);
                args_add(&a, filter && filter->fn_name ? filter->fn_name : "");
                args_add(&a, filter && filter->schedule ? filter->schedule : "");
                for (char *const *st = filter ? filter->statuses : NULL; st && *st; st++)
                        args_add(&a, *st);
                _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
                if (!rep)
                        break;
                if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
                    rep->element[0]->type != REDIS_REPLY_INTEGER) {
                        k = -EBADMSG;
                        break;
                }
                start = rep->element[0]->integer;
                for (size_t next = 1; next < rep->elements && n < limit && k >= 0;)
                        k = search_take(c, tenant, filter, before, rep, &next, limit, &v, &n);
                if (k < 0)
                        break;
        }
        if (k < 0) {
                run_record_list_free(v, n);
                return k;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int cluster_function_run_list(RunQueue *q, const char *tenant, const char *name, size_t limit, RunRecord ***ret,
                              size_t *ret_n) {
        assert(tenant && name);
        _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "fidx:%s:%s", tenant, name);
        return index_list(q, tenant, key, limit, ret, ret_n);
}

int cluster_run_ids(RunQueue *q, const char *tenant, size_t limit, char ***ret) {
        assert(tenant && ret);
        _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "idx:%s", tenant);
        return index_ids(cq(q), key, limit, ret);
}

static long long int_of(ClusterQueue *c, const char *c0, const char *c1, const char *c2, int *ret_error) {
        _cleanup_args_ Args a = { 0 };
        args_add(&a, c0);
        args_add(&a, c1);
        if (c2)
                args_add(&a, c2);
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, ret_error);
        if (!rep)
                return -1;
        if (rep->type == REDIS_REPLY_INTEGER)
                return rep->integer;
        if (rep->type == REDIS_REPLY_STRING)
                return atoll(rep->str);
        /* XPENDING's summary: [count, first, last, consumers]. */
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_INTEGER)
                return rep->element[0]->integer;
        return 0;
}

int cluster_status_json(RunQueue *q, char **ret_json) {
        ClusterQueue *c = cq(q);
        int k = 0;
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "SMEMBERS");
        args_add(&a, K_NODES);
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        if (!rep)
                return k;
        json_t *nodes = json_array();
        long long own_entries = 0, own_pend = 0;
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
                const char *id = rep->element[i]->str;
                _cleanup_free_ char *key = xasprintf(CLUSTER_PREFIX "node:%s", id);
                _cleanup_args_ Args g = { 0 };
                args_add(&g, "GET");
                args_add(&g, key);
                _cleanup_reply_ redisReply *val = cluster_cmd(c, &c->conn, &g, &k);
                long long pttl = int_of(c, "PTTL", key, NULL, &k);
                _cleanup_free_ char *dkey = xasprintf(CLUSTER_PREFIX "drain:%s", id);
                long long draining = int_of(c, "EXISTS", dkey, NULL, &k);
                json_t *o = val && val->type == REDIS_REPLY_STRING ? json_loads(val->str, 0, NULL) : NULL;
                if (!json_is_object(o)) {
                        json_decref(o);
                        o = json_object();
                }
                bool alive = val && val->type == REDIS_REPLY_STRING;
                json_object_set_new(o, "id", json_string(id));
                json_object_set_new(o, "alive", json_boolean(alive));
                json_object_set_new(o, "drain_requested", json_boolean(draining == 1));
                if (alive && pttl >= 0)
                        json_object_set_new(o, "lease_age_ms", json_integer((json_int_t) c->lease_ttl_ms - pttl));
                /* Its own stream (placement): in the totals below too. */
                _cleanup_free_ char *own = xasprintf(CLUSTER_PREFIX "runs:%s", id);
                long long own_len = int_of(c, "XLEN", own, NULL, &k);
                long long own_pending = own_len > 0 ? int_of(c, "XPENDING", own, CLUSTER_GROUP, &k) : 0;
                own_entries += MAX(own_len, 0);
                own_pend += MAX(own_pending, 0);
                json_array_append_new(nodes, o);
        }
        long long pending = MAX(int_of(c, "XPENDING", K_STREAM, CLUSTER_GROUP, &k), 0) + own_pend;
        long long entries = MAX(int_of(c, "XLEN", K_STREAM, NULL, &k), 0) + own_entries;
        long long dead = int_of(c, "XLEN", K_DEAD, NULL, &k);
        long long stale = int_of(c, "GET", K_STALE, NULL, &k);
        json_t *j = json_pack("{s:o, s:I, s:I, s:I, s:I}", "nodes", nodes, "pending", (json_int_t) MAX(pending, 0),
                              "queued", (json_int_t) MAX(entries - MAX(pending, 0), 0), "dead_letters",
                              (json_int_t) MAX(dead, 0), "stale_results", (json_int_t) MAX(stale, 0));
        *ret_json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return 0;
}

int cluster_drain(RunQueue *q, const char *node_id) {
        ClusterQueue *c = cq(q);
        int k = 0;
        long long known = int_of(c, "SISMEMBER", K_NODES, node_id, &k);
        if (known < 0)
                return k;
        if (known == 0)
                return -ENOENT;
        _cleanup_args_ Args a = { 0 };
        args_add(&a, "SET");
        args_addf(&a, CLUSTER_PREFIX "drain:%s", node_id);
        args_add(&a, "1");
        _cleanup_reply_ redisReply *rep = cluster_cmd(c, &c->conn, &a, &k);
        return rep ? 0 : k;
}

/* One message on this node's channel: "d:<id>" (a run this gateway waits
 * for ended), "r:<id>\n" and the ended record's fields and values as
 * netstrings (the same, with the record: finish.lua), "c:<id>" (cancel
 * a run this node runs), "s:<tenant>" (its secrets changed) or
 * "f:<tenant>/<name>@<version>" (deleted: fn_delete.lua, version 0 every
 * one, and fn_delete_version.lua). */
static void event_dispatch(const redisReply *m, ClusterEventFn fn, void *userdata) {
        if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 || m->element[0]->type != REDIS_REPLY_STRING ||
            !streq(m->element[0]->str, "message") || m->element[2]->type != REDIS_REPLY_STRING)
                return;
        const char *p = m->element[2]->str;
        size_t len = m->element[2]->len;
        const char *nl = startswith(p, "r:") ? memchr(p, '\n', len) : NULL;
        if (nl) {
                _cleanup_free_ char *id = xstrndup(p + 2, (size_t) (nl - p - 2));
                /* Unreadable: the record is read from Redis instead. */
                RunRecord *rec = cluster_record_from_netstrings(nl + 1, len - (size_t) (nl + 1 - p));
                if (rec && !streq(rec->id, id))
                        rec = run_record_free(rec);
                fn(CLUSTER_EVENT_DONE, id, rec, userdata);
        } else if (startswith(p, "d:"))
                fn(CLUSTER_EVENT_DONE, p + 2, NULL, userdata);
        else if (startswith(p, "c:"))
                fn(CLUSTER_EVENT_CANCEL, p + 2, NULL, userdata);
        else if (startswith(p, "s:"))
                fn(CLUSTER_EVENT_SECRETS, p + 2, NULL, userdata);
        else if (startswith(p, "f:"))
                fn(CLUSTER_EVENT_FUNCTION_DELETED, p + 2, NULL, userdata);
}

void cluster_events_listen(RunQueue *q, ClusterEventFn fn, void *userdata) {
        ClusterQueue *c = cq(q);
        Conn conn = { 0 };
        if (cq_conn_parse(c, &conn) < 0)
                return; /* checked by cluster_queue_new */
        _cleanup_free_ char *channel = xasprintf(CLUSTER_PREFIX "ev:%s", c->node_id);
        const char *argv[] = { "SUBSCRIBE", channel };
        for (bool first = true;; first = false) {
                if (!first)
                        usleep(100 * 1000); /* Redis away: retry at 10 Hz */
                int k = 0;
                redisReply *r = conn_command(&conn, 2, argv, &k);
                if (!r)
                        continue;
                bool ok = r->type == REDIS_REPLY_ARRAY;
                freeReplyObject(r);
                if (!ok)
                        continue;
                /* Subscribed: whatever ended while we were not is read from
                 * the records. */
                fn(CLUSTER_EVENT_RESYNC, NULL, NULL, userdata);
                for (;;) {
                        void *m = NULL;
                        if (redisGetReply(conn.ctx, &m) != REDIS_OK || !m)
                                break; /* I/O error or the read timeout: reconnect */
                        event_dispatch(m, fn, userdata);
                        freeReplyObject(m);
                }
        }
}
