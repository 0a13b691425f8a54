/* cluster: the Redis implementation of the run queue (store.h RunQueueOps)
 * and the node bookkeeping of a pysprinterd cluster (docs/cluster.md).
 *
 * Keys (prefix "ps:"): run:<id> (hash, the record; EXPIRE after it ends),
 * runs (the stream, consumer group "workers", one entry per delivery),
 * idem:<tenant>:<key> (idempotency), idx:<tenant> (zset of ids by
 * created), node:<id> (the lease: TTL'd, value = the node's JSON status),
 * nodes (set of node ids ever seen), dead (dead-letter stream),
 * drain:<id> (set: stop claiming), stale (counter of dropped results),
 * log:<id> (a run's log stream, cluster-logs.c), runlock:<sha1> (a run's
 * lock text, once per distinct text: finish.lua), ridx:<tenant> (a zset of
 * the tenant's run ids in id order: prefixes, cluster_run_find()).
 * Every state change is one Lua script (cluster-scripts.h), so a crash of a
 * node or of Redis between two steps loses nothing.
 *
 * Depends on: basic, store (the interface), hiredis inside the module only.
 * A ClusterQueue is safe to use from several threads (one connection
 * under a mutex; reconnected on error, so a restarted Redis is picked up). */
#pragma once

#include "basic.h"
#include "store.h"

typedef struct ClusterOptions {
        const char *url;           /* redis://[user:password@]host:port or unix:/path */
        const char *password;      /* AUTH with it where the URL names none (cluster.redis_password); NULL: none */
        const char *node_id;       /* this node's consumer name */
        unsigned claim_timeout_ms; /* an entry idle this long on a dead node is reclaimed (default 5000) */
        unsigned lease_ttl_ms;     /* node:<id> lifetime (default 3000; refreshed every ~1 s) */
        unsigned record_ttl_s;     /* ended run records expire after this (default 7 days) */
        unsigned affinity_delay_ms; /* a run waits this long for its warm node before any takes it (default 200) */
        unsigned warm_ms;          /* a node counts as warm for an environment this long after a run of it (default 5 min) */
        unsigned reclaim_interval_ms; /* the reclaim scan runs at most this often (default: the affinity delay,
                                       * at most a quarter of the claim timeout; cluster_claim()) */
        bool client;                  /* not a node (`pysprinterd token --redis`): no stream of its own is made;
                                    * use the stores and reads only, never claim */
} ClusterOptions;

/* url with its password replaced by "***" (for messages and logs); a URL
 * without one is returned as it is. Free the result. */
char *cluster_url_redacted(const char *url);

/* Connects and creates the stream's consumer group. -ECONNREFUSED/-EIO
 * when Redis cannot be reached, -EACCES when it refuses the node (no or a
 * wrong password, an ACL user without the right): *ret_error says why,
 * never with the password. */
int cluster_queue_new(const ClusterOptions *o, RunQueue **ret, char **ret_error);

/* The start-up check: Redis must keep what it acknowledged (appendonly
 * yes) and never evict (maxmemory-policy noeviction). -EPERM with
 * *ret_error when it does not; volatile skips the check. */
int cluster_check_durability(RunQueue *q, char **ret_error);

/* Submit with an idempotency key (NULL: none): a second submit of the same
 * (tenant, key) returns the first run's id in *ret_id (which may differ
 * from r->id) and 1; a new run returns 0. */
int cluster_submit(RunQueue *q, const RunRecord *r, const char *request_json, const char *idem_key, char **ret_id);
/* The same, naming the run's environment (env: an opaque key, NULL: none):
 * a node that holds it warm and has room gets the run on its own stream
 * (docs/cluster.md, "Placement"). max_queued is r->tenant's share of the
 * queue (UINT_MAX: none): a new run is refused with -EUSERS, nothing
 * written (no record, no entry, idem_key not taken), while the tenant has
 * that many runs queued in the whole cluster (ps:queued:<tenant>, counted
 * by the scripts; docs/cluster.md "A tenant's share of the queue"). An
 * idempotent resubmission is answered whatever the count. */
int cluster_submit_env(RunQueue *q, const RunRecord *r, const char *request_json, const char *idem_key, const char *env,
                       unsigned max_queued, char **ret_id);

/* Claims at most max entries for this node: first entries that sat idle
 * past the claim timeout, of nodes whose lease expired or this node's own
 * for runs not in held (moved to the dead-letter stream and ended lost once
 * attempts are used up), then new entries (XREADGROUP COUNT max, blocking
 * up to block_ms). The first part (the reclaim scan, reclaim.lua, which
 * also moves entries past the affinity delay to the shared stream) runs
 * only when due: on the first claim, then at most once per reclaim
 * interval, and again at once after a claim that found nothing new or
 * whose scan filled every slot. An entry waits past its claim timeout (or
 * affinity delay) at most one interval more. held: the ids of the runs this node holds (claimed and
 * not ended in Redis yet), NULL-terminated, or NULL for none. Returns the
 * runs to start (each one queued, ready for RunQueueOps.start). Uses its
 * own connection: call it from one thread. */
int cluster_claim(RunQueue *q, size_t max, unsigned block_ms, char *const *held, PendingRun **ret, size_t *ret_n);

/* Hands a run this node claimed and has not started back to the end of
 * the shared stream, still queued (handback.lua): for a node with room for
 * it. On the claiming connection: call it from the claiming thread. 1
 * handed back, 0 it is not queued any more (its entry acknowledged), or a
 * negative errno (Redis unreachable: the run is still this node's). */
int cluster_hand_back(RunQueue *q, const char *id);
/* This node, stopped past its drain, gave attempt of run id up with no end
 * written (gaveup.lua): the record says so, and a cancel asked from then
 * on ends the run at once (cancel.lua); a cancel already asked ends it
 * now. 1 marked, 2 ended cancelled, 0 the attempt is not this node's any
 * more, or a negative errno. */
int cluster_gave_up(RunQueue *q, const char *id, int attempt);

/* Refreshes this node's lease (status_json: what `cluster status` shows of
 * it) and re-touches the entries of the runs in held (as cluster_claim())
 * so they do not look idle: an entry pending on this node for a run it
 * does not hold (its delivery's reply lost, or the run dropped) goes idle
 * and is claimed again. Sets *ret_draining when someone asked this node to
 * drain, and *ret_cancel (when not NULL; NULL-terminated, NULL for none) to
 * the ids of held whose cancel was asked (its message may never have come:
 * pub/sub keeps nothing for a subscriber that is reconnecting). */
int cluster_lease_refresh(RunQueue *q, const char *status_json, char *const *held, bool *ret_draining,
                          char ***ret_cancel);

/* Whether attempt is still run id's current one on this node (the record
 * `running`, that attempt, this node): 1 yes, 0 no (taken over by another
 * node after this one lost its lease, cancelled, ended), or a negative
 * errno when Redis cannot be read. What a run produced besides its value
 * (an output dataset) is stored only while it is. */
int cluster_run_attempt_current(RunQueue *q, const char *id, int attempt);

/* The record of run id (exact id), within tenant (NULL: any). -ENOENT. */
int cluster_run_get(RunQueue *q, const char *tenant, const char *id, RunRecord **ret);
/* The lock run id ran with (pkg_lock_to_json() text; *ret NULL: none), as
 * store_run_get_lock() reads a single node's: kept beside the record, not
 * read with it (cluster_run_get()). -ENOENT: no such run within tenant. */
int cluster_run_get_lock(RunQueue *q, const char *tenant, const char *id, char **ret);
/* tenant's runs, most recent first. */
int cluster_run_list(RunQueue *q, const char *tenant, size_t limit, RunRecord ***ret, size_t *ret_n);
/* tenant's runs that filter keeps (any of its fields; NULL: every run),
 * newest first, after before (NULL: from the newest), at most limit: the
 * whole index searched in Redis a chunk at a time (search.lua), however
 * many runs it holds. */
int cluster_run_search(RunQueue *q, const char *tenant, const RunFilter *filter, const RunRecord *before, size_t limit,
                       RunRecord ***ret, size_t *ret_n);
/* The runs of tenant's deployed function name, most recent first (those
 * submitted with RunRecord.request_fn_name given). */
int cluster_function_run_list(RunQueue *q, const char *tenant, const char *name, size_t limit, RunRecord ***ret,
                              size_t *ret_n);
/* The ids of tenant's newest runs (at most limit), most recent first, a
 * NULL-terminated strv (NULL when none): one read of the index, no record
 * (an id whose record expired may be among them: its read says -ENOENT). */
int cluster_run_ids(RunQueue *q, const char *tenant, size_t limit, char ***ret);

/* The cluster as JSON: {"nodes":[{"id","alive","lease_age_ms",
 * "drain_requested", ...the status_json its lease holds}],
 * "pending":N, "queued":N, "dead_letters":N, "stale_results":N}. */
int cluster_status_json(RunQueue *q, char **ret_json);
/* Asks node to stop claiming (it finishes what it runs). */
int cluster_drain(RunQueue *q, const char *node_id);

/* Cancels run id wherever it is: a queued run ends cancelled (0); a
 * running one is marked and its node told (1: that node ends it cancelled
 * through the fenced finish); -ESTALE when it has ended already. */
int cluster_cancel(RunQueue *q, const char *id, const char *message);

/* The record of tenant's run by full id or unique prefix, as
 * store_run_get() on one node: a full id first (within tenant, NULL: any),
 * then, with tenant, a prefix through ridx:<tenant> (runs submitted before
 * that index existed are found by full id only). -ENOENT none, -EEXIST the
 * prefix is ambiguous, -EINVAL an empty one. */
int cluster_run_find(RunQueue *q, const char *tenant, const char *id_or_prefix, RunRecord **ret);

typedef enum ClusterEventKind {
        CLUSTER_EVENT_DONE,   /* a run this node submitted ended */
        CLUSTER_EVENT_CANCEL, /* cancel a run this node runs */
        CLUSTER_EVENT_RESYNC, /* (re)subscribed: messages may have been missed */
        CLUSTER_EVENT_SECRETS, /* a secret of tenant (the id argument) was set or removed */
        CLUSTER_EVENT_FUNCTION_DELETED, /* a function, or one version of it, was deleted */
} ClusterEventKind;
/* rec: for DONE, the ended record when the message carried it (the
 * callee's to free), else NULL (read it). id: for SECRETS, the tenant; for
 * FUNCTION_DELETED, "<tenant>/<name>@<version>" (version 0: every one). */
typedef void (*ClusterEventFn)(ClusterEventKind kind, const char *id, RunRecord *rec, void *userdata);

/* Listens on this node's channel (<prefix>ev:<node>, one connection of its
 * own) forever, calling fn for each message, and RESYNC after each
 * (re)subscription. Never returns: run it on its own thread. */
void cluster_events_listen(RunQueue *q, ClusterEventFn fn, void *userdata);
/* A record from its hash's fields and values as back-to-back netstrings
 * ("<len>:<bytes>", name then value), as finish.lua publishes it; NULL
 * when malformed or lacking id, tenant or status. */
RunRecord *cluster_record_from_netstrings(const char *p, size_t len);
/* ---- run logs (cluster-logs.c) -------------------------------------------
 * A run's output lives in the stream ps:log:<id>, one stream entry per
 * flush holding its log entries in order (MAXLEN ~ CLUSTER_LOG_MAX_ENTRIES flushes,
 * EXPIRE like the ended record), written in batches by the node that runs
 * it, read by any gateway. */
#define CLUSTER_LOG_MAX_ENTRIES 20000
/* Bytes of output per entry at most (a longer piece is split). */
#define CLUSTER_LOG_ENTRY_BYTES (64 * 1024)

typedef enum ClusterLogKind {
        CLUSTER_LOG_PHASE = 0,  /* data: the phase's name */
        CLUSTER_LOG_STDOUT = 1,
        CLUSTER_LOG_STDERR = 2,
        CLUSTER_LOG_END = 3,    /* the last entry of the run's log */
} ClusterLogKind;

typedef struct ClusterLogEntry {
        ClusterLogKind kind;
        char *data;     /* owned; NUL-terminated, may hold NULs within len */
        size_t len;
        usec_t timestamp; /* realtime, when the run wrote it; 0: not known (written by an older node) */
} ClusterLogEntry;
/* Arguments a log entry takes in log_add.lua: kind, data, time. */
#define CLUSTER_LOG_ARGS_PER_ENTRY 3

void cluster_log_entries_free(ClusterLogEntry *v, size_t n);

/* Appends v (in order), and the end marker when end, to run id's log in one
 * round trip, and renews the log's expiry. -EIO/-ECONNREFUSED. */
int cluster_log_append(RunQueue *q, const char *id, const ClusterLogEntry *v, size_t n, bool end);
/* RunQueueOps.finish of r's attempt with the last of its log: v (in order)
 * and the end marker when end are appended first, in the same script call
 * (finish.lua), also when the result is stale. 0 written, -ESTALE stale
 * (the log was appended), -EIO/-ECONNREFUSED (either may have landed: the
 * caller sends both again, as it would each). */
int cluster_finish_with_log(RunQueue *q, const RunRecord *r, int attempt, const ClusterLogEntry *v, size_t n, bool end);

/* A reader of one run's log on its own connection (a follower's XREAD
 * BLOCK must not hold the shared one). */
typedef struct ClusterLogReader ClusterLogReader;
int cluster_log_reader_new(RunQueue *q, const char *id, ClusterLogReader **ret);
ClusterLogReader *cluster_log_reader_free(ClusterLogReader *r);
/* The entries after those read so far, up to 512, waiting up to block_ms
 * for one (0: do not wait). *ret_n 0: none yet. */
int cluster_log_read(ClusterLogReader *r, unsigned block_ms, ClusterLogEntry **ret, size_t *ret_n);

/* ---- deployed functions (cluster-functions.c) ----------------------------
 * The Redis FunctionStore (store.h): fn:<tenant>:<name> (hash: next, the
 * last version number; meta:<v>, the version's record as JSON; src:<v>,
 * its source) and fns:<tenant> (set of names). A deploy is one script, so
 * two gateways deploying at once get distinct versions. Uses q's
 * connection: q must outlive it. */
FunctionStore *cluster_function_store_new(RunQueue *q);

/* ---- secrets (cluster-secrets.c, docs/cluster.md "Secrets") ---------------
 * The Redis SecretStore (store.h): sec:<tenant> (hash: name -> the box the
 * node sealed; never a value), secdates:<tenant> (hash: name -> "CREATED
 * UPDATED", µs), sectenants (set of the tenants holding one), seckey (the
 * key check: a box the first node sealed with its key). A set and a
 * removal are one script each, which tells every node (CLUSTER_EVENT_SECRETS).
 * Uses q's connection: q must outlive it. */
SecretStore *cluster_secret_store_new(RunQueue *q);

/* ---- tokens (cluster-tokens.c, docs/cluster.md "Tokens") -----------------
 * The Redis TokenStore (store.h): tok:<sha256> (hash: id, tenant, role,
 * created, expires, last_used; never the token), tokids (hash: id ->
 * sha256). Made, revoked and touched by one script each. q must outlive
 * it. */
TokenStore *cluster_token_store_new(RunQueue *q);

/* ---- dashboard sessions (cluster-tokens.c, docs/cluster.md "Dashboard
 * sessions") ----------------------------------------------------------------
 * uis:<id hash> (the sha256 of the session's token, in hex; PX its
 * lifetime) and uistok:<token hash> (zset: the token's session id hashes by
 * expiry, at most max_per_token: ui_session_put.lua drops the token's own
 * closest to expiry). Hashes are 64 hex digits; the cookie's value and the
 * token never reach Redis. Each returns -ECONNREFUSED/-ECOMM when Redis did
 * not answer (cluster-conn.c). */
int cluster_ui_session_put(RunQueue *q, const char *id_hash, const char *token_hash, uint64_t ttl_ms,
                           unsigned max_per_token);
/* The token hash of the live session id_hash into ret (65 bytes); -ENOENT. */
int cluster_ui_session_get(RunQueue *q, const char *id_hash, char ret[static 65]);
/* Ends it: 0, or -ENOENT when there was none. */
int cluster_ui_session_del(RunQueue *q, const char *id_hash);

/* ---- datasets (cluster-datasets.c) ---------------------------------------
 * The Redis DatasetStore (store.h): ds:<tenant>:<name> (hash: kind, source,
 * etag, last_modified, checked, created, current, v:<n> = "HASH SIZE FILES
 * CREATED"), dss:<tenant> (set of names), dsrefs (hash: content hash ->
 * versions referencing it). Objects stay on the node that stored them:
 * obj:<hash> is the set of nodes holding the content. q must outlive it. */
DatasetStore *cluster_dataset_store_new(RunQueue *q);
/* Records that this node holds the content hash. */
int cluster_object_held(RunQueue *q, const char *hash);
/* The advertised URLs of the other live nodes that hold hash (strv, may be
 * NULL when none). */
int cluster_object_holders(RunQueue *q, const char *hash, char ***ret_urls);

/* ---- packages (cluster-datasets.c) ---------------------------------------
 * lock:<env key> holds the lock a node resolved for an environment key
 * (30 days), so the other nodes install the same files without the index. */
int cluster_lock_get(RunQueue *q, const char *key, char **ret_json);
int cluster_lock_put(RunQueue *q, const char *key, const char *json);
/* The advertised URLs of every other live node (strv, NULL when none). */
int cluster_peer_urls(RunQueue *q, char ***ret_urls);


/* ---- DAG runs in Redis (cluster-dags.c, docs/cluster.md "DAG runs") ----
 * Keys: dag:<id> (hash: rec = the run record as JSON, files = the task
 * sources as a JSON object), dagtasks:<id> (hash: task name -> its state
 * as JSON), dagowner:<id> (the driving gateway's lease: its node id, TTL
 * = the node lease's), dags:running (set of ids not ended), dagidx:<tenant>
 * (zset of ids by creation time). The JSON is the caller's: this module
 * stores text. Writes are fenced by the owner lease. */

/* Records a new DAG run owned by this node: 0, or -EEXIST when the id is
 * taken. With idem_key (a POST's Idempotency-Key, checked by the caller;
 * NULL: none) the key names it for 24 h, and a key the tenant used within
 * them creates nothing: 1 with *ret_first, that key's DAG run id. */
int cluster_dag_create(RunQueue *q, const char *id, const char *tenant, usec_t created, const char *rec_json,
                       const char *files_json, const char *idem_key, char **ret_first);
/* The DAG run id tenant's idem_key names (within 24 h of its submit), or
 * -ENOENT. */
int cluster_dag_idempotent_first(RunQueue *q, const char *tenant, const char *idem_key, char **ret_id);
/* The owner's write of the record and of n tasks (names[i] -> jsons[i]);
 * final: the run ended (it leaves the running set, its lease is dropped,
 * its keys expire after the record TTL). A lease that lapsed with nobody
 * taking it, the run still running, is taken back first (dagput.lua).
 * -ESTALE when another node holds the lease or the run ended: nothing was
 * written. */
int cluster_dag_put(RunQueue *q, const char *id, const char *rec_json, char *const *names, char *const *jsons,
                    size_t n, bool final);
/* The DAG run id: its record JSON, files JSON (may be NULL) and task JSONs
 * (a strv, in no order). -ENOENT. */
int cluster_dag_get(RunQueue *q, const char *id, char **ret_rec, char **ret_files, char ***ret_tasks);
/* tenant's DAG run ids, most recent first (a strv). */
int cluster_dag_list_ids(RunQueue *q, const char *tenant, size_t limit, char ***ret_ids);
/* Hands a run this node claimed and has not started back to the end of
 * the shared stream, still queued (handback.lua): for a node with room for
 * it. On the claiming connection: call it from the claiming thread. 1
 * handed back, 0 it is not queued any more (its entry acknowledged), or a
 * negative errno (Redis unreachable: the run is still this node's). */
int cluster_hand_back(RunQueue *q, const char *id);

/* Refreshes this node's lease of each DAG run in owned (the ones it
 * drives); with take, also takes every running DAG run whose owner lease
 * expired and returns those ids in *ret_taken (a strv; this node must
 * resume them). *ret_cancel (a strv): the ids of owned and taken whose
 * cancel was recorded (cluster_dag_cancel): this node cancels them. */
int cluster_dag_leases(RunQueue *q, char *const *owned, bool take, char ***ret_taken, char ***ret_cancel);
/* Records a cancel of DAG run id, asked on any node: its owner (or the
 * node that takes it over) cancels it at its next lease tick. 1 recorded,
 * 0 the run has ended, -ENOENT no such run. */
int cluster_dag_cancel(RunQueue *q, const char *id);
/* Removes id from tenant's listing index (its record expired). */
int cluster_dag_forget(RunQueue *q, const char *tenant, const char *id);
/* Drops this node's lease of id (it stops driving it: another node may
 * take it over at once). */
int cluster_dag_release(RunQueue *q, const char *id);
