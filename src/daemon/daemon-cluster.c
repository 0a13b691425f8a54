/* Cluster mode (docs/cluster.md): with --redis the run queue is Redis's
 * (src/cluster); a worker node claims entries for its free slots and runs
 * them, every node keeps its lease, and run records are read from Redis so
 * any gateway shows every run. Single-node mode never enters this file. */
#include <assert.h>
#include <jansson.h>

#include "cluster.h"
#include "daemon.h"

struct DaemonCluster {
        DaemonClusterOptions opt;
        RunQueue *queue;        /* also d->queue */
        pthread_t lease_thread, claim_thread, events_thread;
        bool draining;          /* asked to drain: no more claims (guarded by d->lock) */
        bool claims_stopped;    /* the claim loop saw it: what the lease reports as "draining" */
};

static char *node_status_json(Daemon *d) {
        DaemonCluster *c = d->cluster;
        pthread_mutex_lock(&d->lock);
        unsigned busy = d->cluster_claimed, slots = d->cfg.max_concurrent_runs;
        bool stopped = c->claims_stopped;
        pthread_mutex_unlock(&d->lock);
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:b}", "role", daemon_cluster_role_to_string(c->opt.role),
                              "listen", d->cfg.listen ? d->cfg.listen : "", "slots", (int) slots, "busy", (int) busy,
                              "free", (int) (busy < slots ? slots - busy : 0), "draining", stopped);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

/* Every ~second: the lease (a node that stops refreshing it, or stops
 * altogether under SIGSTOP, loses its entries after the claim timeout). */
static void *lease_thread(void *p) {
        Daemon *d = p;
        for (;;) {
                _cleanup_free_ char *s = node_status_json(d);
                bool draining = false;
                int k = cluster_lease_refresh(d->cluster->queue, s, &draining);
                if (k < 0)
                        log_warn("cluster: cannot refresh this node's lease: %s", strerror(-k));
                else if (draining) {
                        pthread_mutex_lock(&d->lock);
                        if (!d->cluster->draining)
                                log_info("cluster: asked to drain: claiming no more runs");
                        d->cluster->draining = true;
                        pthread_mutex_unlock(&d->lock);
                }
                /* The DAG runs this node drives keep their owner leases;
                 * a gateway takes over those whose driver is gone. */
                daemon_dags_cluster_tick(d, d->cluster->opt.role != CLUSTER_ROLE_WORKER);
                /* Three refreshes per lease lifetime, at most one a second. */
                usleep(MIN(1000u, d->cluster->opt.lease_ttl_ms / 3) * 1000);
        }
        return NULL;
}

/* Claims as many entries as there are free slots, no more, and hands each
 * to the run manager. */
static void *claim_thread(void *p) {
        Daemon *d = p;
        DaemonCluster *c = d->cluster;
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
                        daemon_cond_wait(&d->sched_cond, &d->lock, 200 * USEC_PER_MSEC);
                        pthread_mutex_unlock(&d->lock);
                        continue;
                }
                pthread_mutex_unlock(&d->lock);

                PendingRun *v = NULL;
                size_t n = 0;
                int k = cluster_claim(c->queue, slots - busy, 500, &v, &n);
                if (k < 0) {
                        log_warn("cluster: cannot claim runs: %s", strerror(-k));
                        usleep(200 * 1000);
                        continue;
                }
                for (size_t i = 0; i < n; i++)
                        (void) daemon_run_adopt(d, &v[i]);
                pending_run_list_free(v, n);
        }
        return NULL;
}

/* This node's channel: a run it waits for ended, or a run it runs is to be
 * cancelled (cancel.lua told the node the record names). */
static void on_cluster_event(ClusterEventKind kind, const char *id, void *userdata) {
        Daemon *d = userdata;
        DRun *r = NULL;
        switch (kind) {
        case CLUSTER_EVENT_DONE:
                daemon_run_remote_ended(d, id);
                break;
        case CLUSTER_EVENT_CANCEL:
                if (daemon_run_find(d, NULL, id, &r) >= 0) {
                        log_info("run %s: cancelled from another node", id);
                        (void) daemon_run_cancel(d, r);
                        drun_unref(d, r);
                }
                break;
        case CLUSTER_EVENT_RESYNC:
        default:
                daemon_runs_remote_resync(d);
                break;
        }
}

static void *events_thread(void *p) {
        Daemon *d = p;
        cluster_events_listen(d->cluster->queue, on_cluster_event, d);
        return NULL;
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
        if (!c->opt.lease_ttl_ms)
                c->opt.lease_ttl_ms = 3000;
        c->queue = q;
        d->cluster = c;
        run_queue_free(d->queue);
        d->queue = q;

        k = -pthread_create(&c->lease_thread, NULL, lease_thread, d);
        if (k == 0)
                k = -pthread_create(&c->events_thread, NULL, events_thread, d);
        if (k == 0 && o->role != CLUSTER_ROLE_GATEWAY)
                k = -pthread_create(&c->claim_thread, NULL, claim_thread, d);
        if (k < 0) {
                *ret_error = xasprintf("cannot start the cluster threads: %s", strerror(-k));
                return k;
        }
        log_info("cluster: node %s (%s) on %s", o->node_id, daemon_cluster_role_to_string(o->role), o->url);
        return 0;
}

int daemon_run_record_get(Daemon *d, const char *tenant, const char *id, RunRecord **ret) {
        if (d->cluster)
                return cluster_run_get(d->cluster->queue, tenant, id, ret);
        return store_run_get(d->store, tenant, id, ret);
}

int daemon_run_record_list(Daemon *d, const char *tenant, size_t limit, RunRecord ***ret, size_t *ret_n) {
        if (d->cluster)
                return cluster_run_list(d->cluster->queue, tenant, limit, ret, ret_n);
        return store_run_list(d->store, tenant, limit, ret, ret_n);
}

int daemon_cluster_submit(Daemon *d, const RunRecord *r, const char *request_json, const char *idem_key,
                          const char *env, char **ret_id) {
        assert(d->cluster);
        return cluster_submit_env(d->cluster->queue, r, request_json, idem_key, env, ret_id);
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
