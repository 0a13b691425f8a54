/* Cluster mode (docs/cluster.md): with --redis the run queue is Redis's
 * (src/cluster); a worker node claims entries for its free slots and runs
 * them, every node keeps its lease, and run records are read from Redis so
 * any gateway shows every run. Single-node mode never enters this file. */
#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "cluster.h"
#include "daemon.h"
#include "data.h"
#include "engine.h"
#include "pkg.h"

struct DaemonCluster {
        DaemonClusterOptions opt;
        RunQueue *queue;        /* also d->queue */
        pthread_t lease_thread, claim_thread, events_thread, log_thread;
        pthread_mutex_t ship_lock; /* one log shipper at a time: entries stay in order */
        PkgPeers peers;            /* the engine asks the other nodes for wheels and locks */
        bool draining;          /* asked to drain: no more claims (guarded by d->lock) */
        bool claims_stopped;    /* the claim loop saw it: what the lease reports as "draining" */
        usec_t lease_ok_at;     /* monotonic: the last lease refresh Redis took (atomic) */
};

static char *node_status_json(Daemon *d) {
        DaemonCluster *c = d->cluster;
        pthread_mutex_lock(&d->lock);
        unsigned busy = d->cluster_claimed, slots = d->cfg.max_concurrent_runs;
        bool stopped = c->claims_stopped;
        pthread_mutex_unlock(&d->lock);
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:b}", "role", daemon_cluster_role_to_string(c->opt.role),
                              "listen", d->cfg.listen ? d->cfg.listen : "", "advertise", c->opt.advertise, "slots",
                              (int) slots, "busy", (int) busy, "free", (int) (busy < slots ? slots - busy : 0),
                              "draining", stopped);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

#define OUTAGE_REPEAT_USEC (60 * USEC_PER_SEC)

void daemon_outage_failed(DaemonOutage *o, const char *what, int err) {
        assert(o && what && err < 0);
        usec_t now = now_monotonic();
        if (o->since == 0) {
                o->since = now;
                log_warn("cluster: cannot %s: %s (trying again; said again once a minute while it lasts)", what,
                         strerror(-err));
        } else if (now - o->said_at >= OUTAGE_REPEAT_USEC)
                log_warn("cluster: cannot %s: %s (for %llu s)", what, strerror(-err),
                         (unsigned long long) ((now - o->since) / USEC_PER_SEC));
        else
                return;
        o->said_at = now;
}

void daemon_outage_over(DaemonOutage *o, const char *what) {
        assert(o && what);
        if (o->since == 0)
                return;
        log_info("cluster: can %s again, after %.1f s", what, (double) (now_monotonic() - o->since) / USEC_PER_SEC);
        *o = (DaemonOutage){};
}

/* The ids of the runs this node claimed and has not ended in Redis yet
 * (running, or their end still unwritten), NULL-terminated: what its lease
 * keeps fresh and its reclaim leaves alone (cluster_claim()). A claimed
 * run leaves d->runs only after its end is written, or once it is on the
 * unwritten list (drun_finish()). Takes d->lock. */
static char **claimed_run_ids(Daemon *d) {
        char **ids = NULL;
        pthread_mutex_lock(&d->lock);
        for (DRun *r = d->runs; r; r = r->next)
                if (r->claimed)
                        ids = strv_append(ids, r->id);
        for (DRun *r = d->unwritten; r; r = r->next_unwritten)
                if (r->claimed)
                        ids = strv_append(ids, r->id);
        pthread_mutex_unlock(&d->lock);
        return ids;
}

/* Every ~second: the lease (a node that stops refreshing it, or stops
 * altogether under SIGSTOP, loses its entries after the claim timeout). */
static void *lease_thread(void *p) {
        Daemon *d = p;
        DaemonOutage out = {};
        for (;;) {
                _cleanup_free_ char *s = node_status_json(d);
                _cleanup_strv_free_ char **held = claimed_run_ids(d);
                bool draining = false;
                _cleanup_strv_free_ char **cancel = NULL;
                int k = cluster_lease_refresh(d->cluster->queue, s, held, &draining, &cancel);
                /* Cancels whose message this node missed (its channel was
                 * down): the record has them. */
                for (size_t i = 0; k >= 0 && cancel && cancel[i]; i++)
                        d->cluster->opt.hooks.cancel_here(d, cancel[i]);
                if (k >= 0)
                        __atomic_store_n(&d->cluster->lease_ok_at, now_monotonic(), __ATOMIC_RELAXED);
                if (k < 0)
                        daemon_outage_failed(&out, "refresh this node's lease", k);
                else
                        daemon_outage_over(&out, "refresh this node's lease");
                if (k >= 0 && draining) {
                        pthread_mutex_lock(&d->lock);
                        if (!d->cluster->draining)
                                log_info("cluster: asked to drain: claiming no more runs");
                        d->cluster->draining = true;
                        pthread_mutex_unlock(&d->lock);
                }
                /* The DAG runs this node drives keep their owner leases;
                 * a gateway takes over those whose driver is gone. */
                d->cluster->opt.hooks.lease_tick(d, d->cluster->opt.role != CLUSTER_ROLE_WORKER);
                /* Three refreshes per lease lifetime, at most one a second. */
                usleep(MIN(1000u, d->cluster->opt.lease_ttl_ms / 3) * 1000);
        }
        return NULL;
}

/* Whether this node holds as many of tenant's claimed runs, running or
 * waiting here, as server.max_concurrent_per_tenant lets it run at once:
 * one more would wait here for one of them to end (d->lock held). */
static bool tenant_full_here(Daemon *d, const char *tenant) {
        unsigned n = 0;
        for (DRun *r = d->runs; r; r = r->next)
                if (r->claimed && !r->done && streq(r->tenant, tenant))
                        n++;
        return n >= d->cfg.max_concurrent_per_tenant;
}

/* Adopts the claimed runs; those whose tenant is full here go back to the
 * shared stream instead (cluster_hand_back()): a claim takes as many
 * entries as there are free slots, but a run whose tenant is at its limit
 * here cannot start in one, and kept it would wait for the tenant's runs
 * here while another node, with room for the tenant, sat idle (the
 * tenant's runs ran one after another on one node). Returns how many went
 * back. */
static size_t adopt_claimed(Daemon *d, PendingRun *v, size_t n) {
        DaemonCluster *c = d->cluster;
        size_t back = 0;
        for (size_t i = 0; i < n; i++) {
                pthread_mutex_lock(&d->lock);
                bool full = v[i].tenant && tenant_full_here(d, v[i].tenant);
                pthread_mutex_unlock(&d->lock);
                if (full && cluster_hand_back(c->queue, v[i].id) >= 0) {
                        back++;
                        continue;
                }
                (void) c->opt.hooks.adopt(d, &v[i]);
        }
        return back;
}

/* Claims as many entries as there are free slots, no more, and hands each
 * to the run manager. */
static void *claim_thread(void *p) {
        Daemon *d = p;
        DaemonCluster *c = d->cluster;
        DaemonOutage out = {};
        for (;;) {
                pthread_mutex_lock(&d->lock);
                unsigned slots = d->cfg.max_concurrent_runs, busy = d->cluster_claimed;
                bool stop = c->draining || d->draining;
                /* Only once this loop stopped does the lease say
                 * "draining": a claim in flight when the drain came is
                 * over by then. */
                if (stop)
                        c->claims_stopped = true;
                if (stop || busy >= slots) {
                        cond_wait_usec(&d->sched_cond, &d->lock, 200 * USEC_PER_MSEC);
                        pthread_mutex_unlock(&d->lock);
                        continue;
                }
                pthread_mutex_unlock(&d->lock);

                PendingRun *v = NULL;
                size_t n = 0;
                /* Taken after the last claim's runs were adopted: an entry
                 * this node delivered is one it holds, or one it dropped. */
                _cleanup_strv_free_ char **held = claimed_run_ids(d);
                int k = cluster_claim(c->queue, slots - busy, 500, held, &v, &n);
                if (k < 0) {
                        daemon_outage_failed(&out, "claim runs", k);
                        usleep(200 * 1000);
                        continue;
                }
                daemon_outage_over(&out, "claim runs");
                size_t back = adopt_claimed(d, v, n);
                pending_run_list_free(v, n);
                if (back > 0) {
                        /* Not claimed again at once: the other nodes, which
                         * may have room for the tenant, have it first; this
                         * one looks again when one of its runs ends. */
                        pthread_mutex_lock(&d->lock);
                        cond_wait_usec(&d->sched_cond, &d->lock, 200 * USEC_PER_MSEC);
                        pthread_mutex_unlock(&d->lock);
                }
        }
        return NULL;
}

/* This node's channel: a run it waits for ended, a run it runs is to be
 * cancelled (cancel.lua told the node the record names), a tenant's
 * secrets changed, or a function or one of its versions was deleted. */
static void on_cluster_event(ClusterEventKind kind, const char *id, RunRecord *rec, void *userdata) {
        Daemon *d = userdata;
        const struct DaemonClusterHooks *h = &d->cluster->opt.hooks;
        switch (kind) {
        case CLUSTER_EVENT_DONE:
                h->ended_elsewhere(d, id, rec);
                break;
        case CLUSTER_EVENT_CANCEL:
                h->cancel_here(d, id);
                break;
        case CLUSTER_EVENT_SECRETS:
                /* Set or removed through any node: this one's instances
                 * holding the tenant's old values stop (docs/cluster.md
                 * "Secrets"). */
                h->secrets_changed(d, id);
                break;
        case CLUSTER_EVENT_FUNCTION_DELETED: {
                /* Deleted through any node: this one's warm instances of
                 * it stop, as the deleting node's do ("<tenant>/<name>@<version>"). */
                const char *slash = strchr(id, '/'), *at = strrchr(id, '@');
                int version;
                if (!slash || !at || at < slash || parse_int(at + 1, &version) < 0 || version < 0)
                        break;
                _cleanup_free_ char *tenant = xstrndup(id, (size_t) (slash - id));
                _cleanup_free_ char *name = xstrndup(slash + 1, (size_t) (at - slash - 1));
                (void) h->function_deleted(d, tenant, name, version);
                break;
        }
        case CLUSTER_EVENT_RESYNC:
        default:
                h->resync(d);
                break;
        }
}

static void *events_thread(void *p) {
        Daemon *d = p;
        cluster_events_listen(d->cluster->queue, on_cluster_event, d);
        return NULL;
}

/* Copies r's log since what was shipped into *v (d->lock held), moving the
 * shipped mark; output is split into entries of at most
 * CLUSTER_LOG_ENTRY_BYTES. The last chunk may still grow: its offset is
 * kept. */
static void log_collect_new(DRun *r, ClusterLogEntry **v, size_t *n) {
        while (r->log_sent_chunk < r->n_chunks) {
                const LogChunk *ch = &r->chunks[r->log_sent_chunk];
                if (ch->stream == 0) {
                        *v = xrealloc(*v, (*n + 1) * sizeof(ClusterLogEntry));
                        (*v)[(*n)++] = (ClusterLogEntry){ .kind = CLUSTER_LOG_PHASE,
                                                          .data = xstrdup(ch->phase),
                                                          .len = strlen(ch->phase),
                                                          .timestamp = ch->timestamp };
                        r->log_sent_chunk++;
                        r->log_sent_off = 0;
                        continue;
                }
                while (r->log_sent_off < ch->len) {
                        size_t m = MIN(ch->len - r->log_sent_off, (size_t) CLUSTER_LOG_ENTRY_BYTES);
                        *v = xrealloc(*v, (*n + 1) * sizeof(ClusterLogEntry));
                        (*v)[(*n)++] = (ClusterLogEntry){
                                .kind = ch->stream == 2 ? CLUSTER_LOG_STDERR : CLUSTER_LOG_STDOUT,
                                .data = xmemdupz(r->log.data + ch->offset + r->log_sent_off, m),
                                .len = m,
                                .timestamp = ch->timestamp,
                        };
                        r->log_sent_off += m;
                }
                if (r->log_sent_chunk + 1 == r->n_chunks)
                        break;
                r->log_sent_chunk++;
                r->log_sent_off = 0;
        }
}

static bool log_has_new(const DRun *r) {
        if (r->log_sent_chunk >= r->n_chunks)
                return false;
        const LogChunk *ch = &r->chunks[r->log_sent_chunk];
        return r->log_sent_chunk + 1 < r->n_chunks || ch->stream == 0 || r->log_sent_off < ch->len;
}

/* Sends r's log since what was shipped (and the end marker when end): on
 * its own, or with rec (not NULL) as the end of attempt, in one script call
 * (cluster_finish_with_log()). */
static int log_ship(Daemon *d, DRun *r, bool end, const RunRecord *rec, int attempt) {
        DaemonCluster *c = d->cluster;
        assert(c && r && r->claimed);
        pthread_mutex_lock(&c->ship_lock);
        ClusterLogEntry *v = NULL;
        size_t n = 0;
        pthread_mutex_lock(&d->lock);
        size_t chunk0 = r->log_sent_chunk, off0 = r->log_sent_off;
        log_collect_new(r, &v, &n);
        pthread_mutex_unlock(&d->lock);
        int k = rec            ? cluster_finish_with_log(c->queue, rec, attempt, v, n, end)
                : n > 0 || end ? cluster_log_append(c->queue, r->id, v, n, end)
                               : 0;
        /* -ESTALE: the end was refused, the log went in. */
        if (k < 0 && k != -ESTALE) {
                /* Not in Redis: the next call sends it again. */
                pthread_mutex_lock(&d->lock);
                r->log_sent_chunk = chunk0;
                r->log_sent_off = off0;
                pthread_mutex_unlock(&d->lock);
        }
        pthread_mutex_unlock(&c->ship_lock);
        cluster_log_entries_free(v, n);
        return k;
}

int daemon_cluster_log_ship(Daemon *d, DRun *r, bool end) {
        return log_ship(d, r, end, NULL, 0);
}

int daemon_cluster_gave_up(Daemon *d, DRun *r) {
        assert(d->cluster && r && r->attempt > 0);
        return cluster_gave_up(d->cluster->queue, r->id, r->attempt);
}

int daemon_cluster_finish(Daemon *d, DRun *r, const RunRecord *rec, int attempt) {
        assert(rec && attempt > 0);
        return log_ship(d, r, true, rec, attempt);
}

/* Ships the claimed runs' new output every LOG_FLUSH_MS: one round trip per
 * run with news per flush, however many lines it printed (a run printing
 * 100,000 lines a second costs 20 script calls a second, not 100,000). */
#define LOG_FLUSH_MS 50
static void *log_thread(void *p) {
        Daemon *d = p;
        for (;;) {
                usleep(LOG_FLUSH_MS * 1000);
                DRun **v = NULL;
                size_t n = 0;
                pthread_mutex_lock(&d->lock);
                for (DRun *r = d->runs; r; r = r->next)
                        if (r->claimed && !r->done && log_has_new(r)) {
                                r->refs++;
                                v = xrealloc(v, (n + 1) * sizeof(DRun *));
                                v[n++] = r;
                        }
                pthread_mutex_unlock(&d->lock);
                for (size_t i = 0; i < n; i++) {
                        int k = daemon_cluster_log_ship(d, v[i], false);
                        if (k < 0)
                                log_warn("cluster: run %s: cannot send its log to Redis: %s", v[i]->id, strerror(-k));
                        d->cluster->opt.hooks.run_unref(d, v[i]);
                }
                free(v);
        }
        return NULL;
}

/* ---- packages across nodes (pkg.h PkgPeers) ---------------------------------- */

static char *secret_copy(Daemon *d) {
        pthread_rwlock_rdlock(&d->cfg_lock);
        char *s = d->cfg.cluster_secret ? xstrdup(d->cfg.cluster_secret) : NULL;
        pthread_rwlock_unlock(&d->cfg_lock);
        return s;
}

/* A wheel at most this big is taken from a peer (the index's cap is the
 * download's own). */
#define PEER_WHEEL_MAX (2ULL << 30)

static int wheel_from_peers(void *userdata, const char *sha256, const char *dest, char **ret_error) {
        Daemon *d = userdata;
        _cleanup_free_ char *secret = secret_copy(d);
        if (!secret)
                return -ENOENT;
        char **urls = NULL;
        int k = cluster_peer_urls(d->cluster->queue, &urls);
        if (k < 0)
                return k;
        k = -ENOENT;
        for (char **u = urls; u && *u && k < 0; u++) {
                _cleanup_free_ char *url = xasprintf("%s%s/internal/v1/wheels/%s", *u, endswith(*u, "/") ? "" : "",
                                                     sha256);
                if (endswith(*u, "/")) {
                        free(url);
                        url = xasprintf("%sinternal/v1/wheels/%s", *u, sha256);
                }
                _cleanup_free_ char *err = NULL;
                (void) unlink(dest);
                k = data_peer_download(url, secret, dest, PEER_WHEEL_MAX, 60 * 1000, &err);
                if (k >= 0)
                        log_info("cluster: wheel %.12s from %s", sha256, *u);
                else if (k != -ENOENT)
                        log_warn("cluster: wheel %.12s from %s: %s", sha256, *u, err ? err : strerror(-k));
        }
        if (k < 0)
                (void) unlink(dest);
        strv_free(urls);
        return k;
}

static int lock_get(void *userdata, const char *key, char **ret_json) {
        Daemon *d = userdata;
        return cluster_lock_get(d->cluster->queue, key, ret_json);
}

static void lock_put(void *userdata, const char *key, const char *json) {
        Daemon *d = userdata;
        int k = cluster_lock_put(d->cluster->queue, key, json);
        if (k < 0)
                log_warn("cluster: cannot share the lock of environment %.12s: %s", key, strerror(-k));
}

int daemon_cluster_attempt_current(Daemon *d, const char *id, int attempt) {
        assert(d->cluster);
        return cluster_run_attempt_current(d->cluster->queue, id, attempt);
}

const char *daemon_cluster_node_id(Daemon *d) {
        assert(d && d->cluster);
        return d->cluster->opt.node_id;
}

bool daemon_cluster_redis_lost(Daemon *d) {
        if (!d->cluster)
                return false;
        usec_t ok = __atomic_load_n(&d->cluster->lease_ok_at, __ATOMIC_RELAXED);
        return now_monotonic() - ok > (usec_t) d->cluster->opt.lease_ttl_ms * USEC_PER_MSEC;
}

const char *daemon_cluster_role_to_string(DaemonClusterRole role) {
        return role == CLUSTER_ROLE_GATEWAY ? "gateway" : role == CLUSTER_ROLE_WORKER ? "worker" : "all";
}

int daemon_cluster_role_from_string(const char *s, DaemonClusterRole *ret) {
        static const char *const names[] = { "all", "gateway", "worker" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i])) {
                        *ret = (DaemonClusterRole) i;
                        return 0;
                }
        return -EINVAL;
}

int daemon_cluster_start(Daemon *d, const DaemonClusterOptions *o, char **ret_error) {
        assert(d && o && o->url && o->node_id);
        ClusterOptions co = {
                .url = o->url,
                .password = d->cfg.cluster_redis_password,
                .node_id = o->node_id,
                .claim_timeout_ms = o->claim_timeout_ms,
                .lease_ttl_ms = o->lease_ttl_ms,
                .record_ttl_s = o->record_ttl_s,
        };
        RunQueue *q = NULL;
        int k = cluster_queue_new(&co, &q, ret_error);
        if (k < 0)
                return k;
        if (!o->volatile_ok) {
                k = cluster_check_durability(q, ret_error);
                if (k < 0) {
                        run_queue_free(q);
                        return k;
                }
        }
        DaemonCluster *c = xcalloc(1, sizeof(DaemonCluster));
        c->opt = *o;
        c->opt.url = xstrdup(o->url);
        c->opt.node_id = xstrdup(o->node_id);
        c->opt.advertise = o->advertise ? xstrdup(o->advertise)
                                        : xasprintf("http://%s", d->cfg.listen ? d->cfg.listen : "127.0.0.1:8080");
        if (!c->opt.lease_ttl_ms)
                c->opt.lease_ttl_ms = 3000;
        c->queue = q;
        c->lease_ok_at = now_monotonic(); /* Redis just answered (cluster_queue_new) */
        pthread_mutex_init(&c->ship_lock, NULL);
        d->cluster = c;
        c->peers = (PkgPeers) { .wheel = wheel_from_peers, .lock_get = lock_get, .lock_put = lock_put, .userdata = d };
        engine_set_peers(d->engine, &c->peers);
        run_queue_free(d->queue);
        d->queue = q;
        function_store_free(d->functions);
        d->functions = cluster_function_store_new(q);
        /* Secrets: Redis's, sealed by each node with its own key, which
         * must therefore be every node's (docs/cluster.md "Secrets"). */
        size_t unused = 0, local = 0;
        (void) store_secret_count_unopenable(d->store, d->secret_key, &unused, &local);
        k = store_secrets_use(d->store, cluster_secret_store_new(q), d->secret_key);
        if (k == -EKEYREJECTED)
                log_warn("cluster: this node's secrets key (%s) is not the one the cluster's secrets are sealed "
                         "with: setting a secret through it is refused (409), and runs that name one fail "
                         "(\"cannot be opened\"); give it the other nodes' key and restart it (docs/cluster.md "
                         "\"Secrets\")",
                         d->secret_key_path);
        else if (k < 0) {
                *ret_error = xasprintf("cannot read the cluster's secrets key check: %s", strerror(-k));
                return k;
        }
        /* API tokens too (docs/cluster.md "Tokens"); `pysprinterd token`'s
         * stay the node's. */
        store_tokens_use(d->store, cluster_token_store_new(q));
        if (local > 0)
                log_warn("cluster: the %zu secret(s) in this node's database are not used in cluster mode (the "
                         "cluster's are in Redis): set them again through any node (pysprinter secret set NAME)",
                         local);

        k = -pthread_create(&c->lease_thread, NULL, lease_thread, d);
        if (k == 0)
                k = -pthread_create(&c->events_thread, NULL, events_thread, d);
        if (k == 0 && o->role != CLUSTER_ROLE_GATEWAY)
                k = -pthread_create(&c->claim_thread, NULL, claim_thread, d);
        if (k == 0 && o->role != CLUSTER_ROLE_GATEWAY)
                k = -pthread_create(&c->log_thread, NULL, log_thread, d);
        if (k < 0) {
                *ret_error = xasprintf("cannot start the cluster threads: %s", strerror(-k));
                return k;
        }
        _cleanup_free_ char *shown = cluster_url_redacted(o->url);
        log_info("cluster: node %s (%s) on %s", o->node_id, daemon_cluster_role_to_string(o->role), shown);
        return 0;
}

int daemon_run_record_get(Daemon *d, const char *tenant, const char *id, RunRecord **ret) {
        if (d->cluster)
                return cluster_run_find(d->cluster->queue, tenant, id, ret);
        return store_run_get(d->store, tenant, id, ret);
}

int daemon_run_lock_get(Daemon *d, const char *tenant, const char *id, char **ret) {
        if (d->cluster)
                return cluster_run_get_lock(d->cluster->queue, tenant, id, ret);
        return store_run_get_lock(d->store, tenant, id, ret);
}

int daemon_run_record_list(Daemon *d, const char *tenant, const RunFilter *filter, const RunRecord *before,
                           size_t limit, RunRecord ***ret, size_t *ret_n) {
        if (!d->cluster)
                return before ? store_run_list_before(d->store, 0, tenant, filter, before->id, limit, ret, ret_n)
                              : store_run_list(d->store, tenant, filter, limit, ret, ret_n);
        /* Redis indexes a tenant's runs by time only: the states, the
         * function, the schedule, the text and the page after a cursor are
         * looked for in Redis over the whole index (search.lua), as a
         * single node looks among all its runs. Before, only among the
         * newest DAEMON_RUNS_LIST_MAX: `ps --grep` missed older runs. */
        bool filtered = filter && (filter->statuses || filter->fn_name || filter->schedule || filter->text);
        if (!filtered && !before)
                return cluster_run_list(d->cluster->queue, tenant, limit, ret, ret_n);
        return cluster_run_search(d->cluster->queue, tenant, filter, before, limit, ret, ret_n);
}

int daemon_cluster_function_run_list(Daemon *d, const char *tenant, const char *name, size_t limit, RunRecord ***ret,
                                     size_t *ret_n) {
        assert(d->cluster);
        return cluster_function_run_list(d->cluster->queue, tenant, name, limit, ret, ret_n);
}

int daemon_cluster_run_ids(Daemon *d, const char *tenant, size_t limit, char ***ret) {
        assert(d->cluster);
        return cluster_run_ids(d->cluster->queue, tenant, limit, ret);
}

int daemon_cluster_submit(Daemon *d, const RunRecord *r, const char *request_json, const char *idem_key,
                          const char *env, unsigned max_queued, char **ret_id) {
        assert(d->cluster);
        return cluster_submit_env(d->cluster->queue, r, request_json, idem_key, env, max_queued, ret_id);
}

int daemon_cluster_cancel(Daemon *d, const char *id) {
        assert(d->cluster);
        return cluster_cancel(d->cluster->queue, id, "the run was cancelled");
}

/* GET /v1/cluster: the nodes, their leases and slots, the stream. */
struct MHD_Response *daemon_api_cluster_status(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        if (!d->cluster)
                return daemon_call_error(call, 404, "not_found", ret_status,
                                         "this pysprinterd is not in a cluster (start it with --redis URL)");
        _cleanup_free_ char *text = NULL;
        int k = cluster_status_json(d->cluster->queue, &text);
        if (k < 0)
                return daemon_call_errno(call, k, "cluster", ret_status);
        json_t *j = json_loads(text, 0, NULL);
        json_object_set_new(j, "node", json_string(d->cluster->opt.node_id));
        return daemon_call_json(call, 200, j, ret_status);
}

/* POST /v1/cluster/nodes/ID/drain: that node claims no more runs and
 * finishes what it has (an admin's call). */
struct MHD_Response *daemon_api_cluster_drain(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        if (!d->cluster)
                return daemon_call_error(call, 404, "not_found", ret_status,
                                         "this pysprinterd is not in a cluster (start it with --redis URL)");
        if (!d->no_auth && call->role != TOKEN_ROLE_ADMIN)
                return daemon_call_error(call, 403, "forbidden", ret_status, "draining a node needs an admin token");
        const char *node = call->seg[3];
        int k = cluster_drain(d->cluster->queue, node);
        if (k == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "no node '%s' in this cluster", node);
        if (k < 0)
                return daemon_call_errno(call, k, "cluster", ret_status);
        return daemon_call_json(call, 202, json_pack("{s:s, s:b}", "node", node, "draining", 1), ret_status);
}

/* ---- data across nodes ------------------------------------------------------ */

int daemon_cluster_secret_ok(Daemon *d, const char *authorization) {
        if (!d->cluster)
                return -ENOENT;
        pthread_rwlock_rdlock(&d->cfg_lock);
        const char *secret = d->cfg.cluster_secret;
        int ok = -ENOENT;
        if (secret) {
                size_t n = strlen(secret);
                ok = authorization && startswith(authorization, "Bearer ") &&
                     strlen(authorization + 7) == n && CRYPTO_memcmp(authorization + 7, secret, n) == 0;
        }
        pthread_rwlock_unlock(&d->cfg_lock);
        return ok;
}

/* DataObjectSource: asks each live node that holds hash, in turn. */
static int object_from_peers(DataCatalog *cat, const char *hash, void *userdata, char **ret_error) {
        Daemon *d = userdata;
        char **urls = NULL;
        int k = cluster_object_holders(d->cluster->queue, hash, &urls);
        if (k < 0) {
                *ret_error = xasprintf("cannot ask Redis which node holds it: %s", strerror(-k));
                return k;
        }
        pthread_rwlock_rdlock(&d->cfg_lock);
        _cleanup_free_ char *secret = d->cfg.cluster_secret ? xstrdup(d->cfg.cluster_secret) : NULL;
        pthread_rwlock_unlock(&d->cfg_lock);
        Buf why;
        buf_init(&why, 64 * 1024);
        k = -ENOENT;
        if (!secret)
                buf_appends(&why, "this node has no cluster.secret to ask its peers with");
        for (char **u = urls; secret && u && *u; u++) {
                _cleanup_free_ char *err = NULL;
                k = data_object_fetch(cat, *u, secret, hash, &err);
                if (k >= 0) {
                        log_info("cluster: fetched data object %.12s from %s", hash, *u);
                        (void) cluster_object_held(d->cluster->queue, hash);
                        break;
                }
                log_warn("cluster: data object %.12s from %s: %s", hash, *u, err ? err : strerror(-k));
                buf_printf(&why, "%s%s: %s", why.len ? "; " : "", *u, err ? err : strerror(-k));
        }
        if (secret && !urls)
                buf_appends(&why, "no live node holds it");
        strv_free(urls);
        if (k < 0)
                *ret_error = buf_steal(&why);
        else
                buf_free(&why);
        return k;
}

void daemon_cluster_data_attach(Daemon *d) {
        assert(d->cluster && d->catalog);
        data_catalog_set_shared(d->catalog, cluster_dataset_store_new(d->cluster->queue), object_from_peers, d);
}

void daemon_cluster_object_held(Daemon *d, const char *hash) {
        if (!d->cluster || !hash)
                return;
        int k = cluster_object_held(d->cluster->queue, hash);
        if (k < 0)
                log_warn("cluster: cannot record data object %.12s as held here: %s", hash, strerror(-k));
}

typedef struct ObjectRead {
        DataObjectReader *r;
        struct MHD_Connection *conn; /* cut when the object cannot be read */
} ObjectRead;

static ssize_t object_read(void *cls, uint64_t pos, char *buf, size_t max) {
        ObjectRead *o = cls;
        ssize_t n = data_object_reader_read(o->r, buf, max);
        if (n == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        return n < 0 ? daemon_stream_cut(o->conn, buf, max) : n;
}

static void object_free(void *cls) {
        ObjectRead *o = cls;
        data_object_reader_free(o->r);
        free(o);
}

/* GET /internal/v1/objects/HASH (another node, with the cluster's secret):
 * the content in its wire form (data.h), which the asking node verifies. */
struct MHD_Response *daemon_api_cluster_object(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        const char *hash = call->seg[3];
        DataObjectReader *r = NULL;
        int k = d->catalog ? data_object_reader_new(d->catalog, hash, &r) : -ENOENT;
        if (k == -EINVAL)
                return daemon_call_error(call, 400, "bad_request", ret_status, "'%s' is not a content hash", hash);
        if (k == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "this node does not hold %s", hash);
        if (k < 0)
                return daemon_call_errno(call, k, "data object", ret_status);
        ObjectRead *o = xcalloc(1, sizeof(ObjectRead));
        *o = (ObjectRead){ .r = r, .conn = call->conn };
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, object_read, o,
                                                                      object_free);
        if (!resp) {
                object_free(o);
                return NULL;
        }
        MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        *ret_status = 200;
        return resp;
}

/* GET /internal/v1/wheels/SHA256 (another node, with the cluster's
 * secret): a wheel this node downloaded, kept for its peers; the asking
 * node checks it against its lock's sha256. */
struct MHD_Response *daemon_api_cluster_wheel(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        const char *sha = call->seg[3];
        _cleanup_free_ char *path = pkg_store_kept_wheel(d->data_dir, sha);
        if (!path)
                return daemon_call_error(call, 400, "bad_request", ret_status, "'%s' is not a sha256", sha);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                if (fd >= 0)
                        close(fd);
                return daemon_call_error(call, 404, "not_found", ret_status, "this node does not hold wheel %s", sha);
        }
        struct MHD_Response *resp = MHD_create_response_from_fd((size_t) st.st_size, fd);
        if (!resp) {
                close(fd);
                return NULL;
        }
        MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        *ret_status = 200;
        return resp;
}
