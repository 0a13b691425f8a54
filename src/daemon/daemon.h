/* daemon: pysprinterd's internals — configuration, request parsing, the run
 * manager, the HTTP layer and the Lambda-compatible API.
 *
 * Depends on: basic, engine, store (libmicrohttpd, jansson and libcrypto
 * inside this module only; YAML through src/shared). Nothing outside src/daemon includes
 * this header; the fuzzer (fuzz/fuzz-request.c) and the daemon's unit code
 * link the daemon_core library built from these files. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "basic.h"
#include "engine.h"
#include "store.h"
#include "shared.h" /* sha256_hex(), YAML -> JSON, JSON helpers */

/* ---- configuration (daemon-config.c) ------------------------------------ */

typedef enum TokenRole {
        TOKEN_ROLE_USER = 0,    /* submit, read and cancel its tenant's runs */
        TOKEN_ROLE_READONLY,    /* read only: mutating requests are 403 */
        TOKEN_ROLE_ADMIN,       /* user + /metrics when metrics are private */
} TokenRole;

typedef struct DaemonToken {
        uint8_t sha256[32];     /* only the hash is kept in memory */
        bool has_token;         /* false: a SigV4-only entry */
        char *tenant;
        TokenRole role;
        /* AWS SigV4 credentials (Lambda API clients): the key id is public,
         * the secret is the HMAC key, so it is kept as given. NULL: none. */
        char *access_key_id;
        char *secret_access_key;
} DaemonToken;

/* What the operator grants one tenant (config `tenants.NAME`). A request
 * can only lower it (daemon_limits_grant). */
typedef struct DaemonTenant {
        char *name;
        RunLimits maxima;       /* 0 fields: limits.maxima's */
        int network;            /* 1/0; -1: limits.maxima.network */
        int max_retries;        /* maxima.retries; -1: limits.maxima's */
        uint64_t max_stored_bytes; /* tenants.NAME.max_stored_bytes; 0: disk.max_stored_bytes */
} DaemonTenant;

/* server.http_threads' cap (the config refuses more; the acceptor counts
 * each thread's connections, daemon-http.c). */
#define DAEMON_HTTP_THREADS_MAX 256

typedef struct DaemonConfig {
        char *listen;                   /* "127.0.0.1:8080" */
        char *data_dir;                 /* NULL: data_dir_default() */
        DaemonToken *tokens;
        size_t n_tokens;
        /* Unique per initialised config (a reload's is new): a TokenMemo
         * of another generation is not used. */
        uint64_t generation;
        DaemonTenant *tenants;
        size_t n_tenants;
        RunLimits defaults, maxima;     /* maxima.network: the default grant */
        /* limits.maxima.retries: the most retries a request may ask for
         * (the cap; server.max_attempts - 1 is only the default, lowered
         * to it); -1: none (a request's RUN_MAX_RETRIES). */
        int max_retries;
        char *index_url;
        char **extra_index_urls;
        char **find_links;
        char **allow_packages;
        char **deny_packages;
        size_t max_body_bytes;          /* 413 beyond */
        size_t max_json_depth;
        size_t max_json_values;
        unsigned max_concurrent_runs;   /* runs executing at once, all tenants */
        unsigned max_concurrent_per_tenant;
        unsigned max_queued_runs;       /* waiting for a slot; 429 beyond */
        unsigned max_queued_per_tenant; /* one tenant's share of them; UINT_MAX: half (daemon_config_queued_per_tenant) */
        unsigned max_connections;
        unsigned max_connections_per_ip; /* MHD_OPTION_PER_IP_CONNECTION_LIMIT */
        unsigned http_threads;          /* MHD's epoll pool, at most DAEMON_HTTP_THREADS_MAX; 0: the CPUs (at most 16) */
        unsigned read_timeout_s;        /* MHD_OPTION_CONNECTION_TIMEOUT */
        unsigned request_deadline_s;    /* headers + body must arrive within this */
        unsigned max_wait_s;            /* cap on ?wait=true */
        unsigned max_attempts;          /* a run's starts when the daemon dies under it (docs/api.md "Delivery") */
        /* A failed Lambda Event invocation is tried again after this,
         * doubled for each try after (docs/api.md "Invoke"); 60000. */
        unsigned event_retry_delay_ms;
        unsigned endpoint_rate;         /* public endpoints: requests/s per client address (docs/endpoints.md) */
        unsigned endpoint_burst;        /* … and the burst above it */
        bool metrics_public;            /* /metrics without a token */
        bool empty_file;                /* the file held nothing (no key, not even {}) */
        /* What loads but does not do what it says ("FILE:LINE: what"),
         * filled by daemon_config_check(): a start, a SIGHUP and
         * --check-config print each as a warning. */
        char **warnings;
        SandboxMode sandbox;
        /* pool: (docs/workers.md); 0 = the engine's default */
        unsigned pool_spares;
        uint64_t pool_memory_budget;
        uint64_t pool_worker_idle_s;
        uint64_t pool_instance_ttl_s;
        uint64_t pool_env_idle_s;             /* 0: the engine's default */
        uint64_t pool_validation_cache_bytes; /* pool.validation_cache_mb */
        /* data: URL sources may reach these CIDRs even when they are
         * loopback/private/link-local (data.url_allow). */
        char **data_url_allow;
        uint64_t data_max_bytes;        /* data.max_bytes: a version's (and an upload's) cap; 0: the env's/default */
        uint64_t max_out_bytes;         /* data.max_output_bytes: a run's /out cap; 0 = the engine's */
        uint64_t max_out_files;         /* data.max_output_files: its entries' cap; 0 = the engine's */
        char *cluster_secret;           /* cluster.secret: what nodes show each other on internal routes */
        char *cluster_redis_password;   /* cluster.redis_password: AUTH when --redis's URL names no password */
        char *secrets_key_file;         /* secrets.key_file: the secrets' key, never created (every node's one) */
        /* retention: and disk: (daemon-gc.c, docs/operations.md) */
        RetentionConfig retention;
        /* disk.max_stored_bytes: what each tenant may keep in the daemon
         * (datasets, function code; daemon-quota.c); 0: the environment's
         * PYSPRINTER_DATA_TENANT_MAX_BYTES, else 50 GiB. */
        uint64_t max_stored_bytes;
} DaemonConfig;

/* Parses "host:port" / "[v6]:port" / ":port"; is_loopback says whether the
 * address is a loopback one (daemon-config.c: the config check
 * and the start read an address alike). */
int listen_address_parse(const char *s, void *ret_sockaddr_storage, size_t *ret_len, bool *ret_is_loopback);
/* Fills cfg with the documented defaults (docs/api.md "Configuration"). */
void daemon_config_init(DaemonConfig *cfg);
void daemon_config_done(DaemonConfig *cfg);
/* Parses YAML text (path names it in messages) into cfg, which must have been
 * initialised; keys absent from the file keep their value. -EINVAL with
 * *ret_error naming the key on a bad file. */
int daemon_config_parse(DaemonConfig *cfg, const char *text, size_t len, const char *path, char **ret_error);
int daemon_config_load(DaemonConfig *cfg, const char *path, char **ret_error);
/* Looks a presented bearer token up (constant-time hash compare). Returns
 * the matching entry or NULL. */
const DaemonToken *daemon_config_find_token(const DaemonConfig *cfg, const char *token);

/* ---- storage per tenant (daemon-quota.c, docs/operations.md) ---- */

/* What tenant may keep: tenants.NAME.max_stored_bytes, else
 * disk.max_stored_bytes, else PYSPRINTER_DATA_TENANT_MAX_BYTES, else
 * DATA_DEFAULT_MAX_TENANT_BYTES. *ret_key (may be NULL) names the config
 * key that set it, for messages. */
uint64_t daemon_stored_cap(const DaemonConfig *cfg, const char *tenant, const char **ret_key);
/* What the daemon keeps for a tenant, as the quota counts it. */
typedef struct StoredUsage {
        uint64_t data_bytes; /* distinct content its dataset versions reference */
        uint64_t code_bytes; /* the source of every version of its functions */
} StoredUsage;
/* The accounting rule: 0 when usage plus adding (the bytes a write adds:
 * new content, a new version's code) stays within cap, else -EDQUOT with
 * *ret_error saying who, how much, the cap (and key, may be NULL) and what
 * frees room. Saturates rather than wraps. */
int daemon_stored_check(const char *tenant, const StoredUsage *usage, uint64_t adding, uint64_t cap, const char *key,
                        char **ret_error);
struct Daemon;
/* The tenant's usage now, from the stores (recomputed at each call: a
 * restart loses nothing). In cluster mode code_bytes is 0 (Redis's
 * function store does not count it). */
int daemon_stored_usage(struct Daemon *d, const char *tenant, StoredUsage *ret);
/* DataConfig.quota for the daemon's catalog (userdata: the Daemon). */
int daemon_stored_data_quota(void *userdata, const char *tenant, uint64_t data_bytes, uint64_t adding,
                             char **ret_error);
/* A deploy's check: under the catalog's quota lock, which the caller
 * holds (daemon_stored_lock) until the version is written. */
int daemon_stored_deploy_check(struct Daemon *d, const char *tenant, uint64_t code_bytes, char **ret_error);
void daemon_stored_lock(struct Daemon *d);
void daemon_stored_unlock(struct Daemon *d);

/* How many of a tenant's runs may wait beyond its free slots: the
 * configured server.max_queued_per_tenant, else half of max_queued_runs
 * (rounded up), so that no one tenant fills the queue of all. */
unsigned daemon_config_queued_per_tenant(const DaemonConfig *cfg);

/* The last bearer token one HTTP thread matched, by its exact bytes
 * (zero-padded: compared whole, in constant time) and the config
 * generation it matched in; a token longer than bytes is not kept. */
typedef struct TokenMemo {
        uint64_t generation;
        size_t len;
        size_t index;
        char bytes[128];
} TokenMemo;

/* daemon_config_find_token() without the token's SHA-256 when it is the
 * one memo holds for this config (a connection sends the same token with
 * each request: ~4.7k instructions per request). A reload (a new
 * generation) forgets it, so a revoked token stops at once; only matches
 * are kept. */
const DaemonToken *daemon_config_find_token_memo(const DaemonConfig *cfg, const char *token, TokenMemo *memo);
/* The entry holding SigV4 access key id, or NULL. */
const DaemonToken *daemon_config_find_access_key(const DaemonConfig *cfg, const char *access_key_id);

/* The limits a run of tenant gets for asked (0 fields: the default, lowered
 * to the tenant's maximum). -EPERM with *ret_error naming the limit when
 * asked goes above what the config grants the tenant (network included);
 * *ret is written only on success. */
int daemon_limits_grant(const DaemonConfig *cfg, const char *tenant, const RunLimits *asked, RunLimits *ret,
                        char **ret_error);
/* Lowers granted limits to what the config grants the tenant now: a run
 * accepted under an older config (recovered after a restart, or claimed
 * from the cluster by a node with its own config) never runs with more
 * than this node allows. Returns whether anything was lowered. */
bool daemon_limits_clamp(const DaemonConfig *cfg, const char *tenant, RunLimits *limits);
/* The most retries tenant may have now: tenants.NAME.maxima.retries when it
 * is the lower (*ret_tenant_binds, may be NULL), else limits.maxima.retries,
 * else -1: no grant (a request's own bound, RUN_MAX_RETRIES or a DAG
 * task's DAG_MAX_RETRIES). */
int daemon_retries_max(const DaemonConfig *cfg, const char *tenant, bool *ret_tenant_binds);
/* A request's "retries" (asked; -1: none) as max_attempts: -EPERM with
 * *ret_error naming the config key that binds when asked is above
 * daemon_retries_max(); none asked is server.max_attempts lowered to the
 * grant, never raised. *ret_max_attempts is written only on success. */
int daemon_retries_grant(const DaemonConfig *cfg, const char *tenant, int asked, int *ret_max_attempts,
                         char **ret_error);
/* max_attempts (0: the config's default) lowered to what the config grants
 * tenant now: a deploy's stored retries at each invoke, a run recovered or
 * claimed under an older (or another node's) config. */
int daemon_retries_clamp(const DaemonConfig *cfg, const char *tenant, int max_attempts);

/* ---- AWS SigV4 (daemon-sigv4.c) ----------------------------------------- */

typedef struct SigV4Auth {
        char *access_key_id;
        char *date;             /* YYYYMMDD of the credential scope */
        char *region, *service;
        char **signed_headers;  /* lowercase, as listed */
        char *signature;        /* 64 hex digits */
} SigV4Auth;
void sigv4_auth_done(SigV4Auth *a);
/* Parses "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…".
 * -EINVAL with *ret_error when malformed. */
int sigv4_parse_authorization(const char *authorization, SigV4Auth *ret, char **ret_error);

typedef struct SigV4Request {
        const char *method;
        const char *raw_target;  /* path?query as sent (undecoded) */
        /* Header value by lowercase name, or NULL. */
        const char *(*header)(void *userdata, const char *name);
        void *userdata;
        const void *body;
        size_t body_len;
} SigV4Request;
/* Verifies the request's signature with secret: the canonical request
 * (method, the path URI-encoded once more, the sorted query, the signed
 * headers, the payload hash — the body's sha256, or UNSIGNED-PAYLOAD when
 * X-Amz-Content-Sha256 says so), the string to sign and the HMAC-SHA256
 * key chain. X-Amz-Date must be within 15 minutes of now (0: not checked).
 * 0, or -EPERM with *ret_error saying what did not match. */
int sigv4_verify(const SigV4Request *rq, const SigV4Auth *auth, const char *secret, usec_t now, char **ret_error);

/* ---- request parsing (daemon-request.c; the fuzzer's target) ------------ */

typedef struct RequestCaps {
        size_t max_depth;
        size_t max_values;
        /* The top-level members whose strings may hold NUL ("\u0000"):
         * values that reach Python as they are (a run's arguments) or that
         * a later check refuses in words (a source). NULL-terminated; NULL
         * for none. nul_anywhere: the whole body is such a value (a Lambda
         * event). Everywhere else C reads names, which a NUL would cut. */
        const char *const *nul_members;
        bool nul_anywhere;
        /* The body holds a credential (a secret's value): a parse error
         * names its line and column only, never the text near it (jansson
         * quotes up to 20 bytes there: a password whole). */
        bool no_quote;
} RequestCaps;

#define RUN_MAX_RETRIES 10

/* A deployed function's HTTP endpoint (docs/endpoints.md). */
typedef enum EndpointMode {
        ENDPOINT_KEEP = -1,     /* a deploy that does not say: unchanged */
        ENDPOINT_NONE = 0,
        ENDPOINT_TOKEN = 1,     /* a bearer token of the function's tenant */
        ENDPOINT_PUBLIC = 2,    /* anyone; rate-limited per client address */
} EndpointMode;

typedef struct RunRequest {
        char *source;           /* owned, or fn's source when fn is set */
        size_t source_len;
        /* The deployed version the source is borrowed from (a reference,
         * daemon_request_from_function()), or NULL. */
        struct FunctionRecord *fn;
        char *filename;
        char *function;
        char *args_json;        /* engine format (engine.h RunSpec) or NULL */
        char *kwargs_json;
        RunLimits limits;
        /* deploy (and an invoke, from the function record): kept beside the
         * source, never spliced into it (RunSpec.requirements_json) */
        char *requirements_json;
        /* deploy only */
        char *name;
        char *description;
        char **data;            /* "NAME[@VERSION]" datasets to mount at /data/NAME, or NULL */
        char *output_data;      /* run: output_dir() becomes this dataset (docs/data.md "Outputs") */
        bool no_cache;          /* run, validate: resolve against the index again (RunSpec.no_cache) */
        bool lock_only;         /* validate: "lock": resolve, install nothing, answer the lock */
        bool describe_only;     /* validate: "describe": parse only (signature, doc), arguments unchecked */
        /* run and deploy: secret names (opened in the caller's tenant when
         * the run starts) and plain "KEY=VALUE" variables (docs/secrets.md) */
        char **secrets;
        char **env;
        int url;                /* deploy: EndpointMode, or ENDPOINT_KEEP (absent) */
        /* deploy: "cors" given (cors_json NULL: null, remove the URL's
         * settings), else kept; cors_json as daemon_cors_parse() wrote it */
        bool cors_set;
        char *cors_json;
        /* invoke only */
        /* 1 + the request's "retries": how many times the run may be
         * started when the daemon dies under it (docs/api.md "Delivery");
         * 0: the function's, else the config's default. */
        int max_attempts;
        int version;            /* 0: latest */
        char *context_json;     /* Lambda context (RunSpec.context_json) */
        /* The Idempotency-Key header (not owned; NULL: none), docs/api.md
         * "Idempotency". */
        const char *idempotency_key;
        /* The schedule firing it (not owned; NULL: none), kept with the
         * run (its record's "schedule"). */
        const char *schedule;
        /* The caller answers once the run ended (?wait=true, a Lambda
         * RequestResponse): a warm invoke may then run on the caller's
         * thread while it is quick (daemon-runs.c, run_inline()). */
        bool answer_waits;
        /* A Lambda Event invocation whose caller follows it to its end
         * (the CLI's `invoke NAME --payload`, header
         * X-Pysprinter-Caller-Waits: true): its failure is the caller's to
         * hear, not tried again (drun_retry_left()). */
        bool caller_waits;
        /* A Function URL's run (daemon-endpoints.c): its return value is
         * the HTTP answer, checked before its end is recorded
         * (daemon_endpoint_response_check()). */
        bool endpoint;
} RunRequest;

void run_request_done(RunRequest *r);

typedef enum RequestKind {
        REQUEST_RUN,        /* POST /v1/runs */
        REQUEST_VALIDATE,   /* POST /v1/validate */
        REQUEST_DEPLOY,     /* POST /v1/functions */
        REQUEST_INVOKE,     /* POST /v1/functions/{name}/invoke */
} RequestKind;

/* Parses body as JSON within caps (depth, number of values, no duplicate
 * keys). -EINVAL with a message on failure. */
int request_json_parse(const char *body, size_t len, const RequestCaps *caps, void **ret_json, char **ret_error);
/* The check request_json_parse() makes, for a member's object checked on
 * its own (a DAG body inside a schedule): -EINVAL, naming the field, when a
 * string outside caps' nul_members holds a NUL. */
int request_json_nul_check(struct json_t *j, const RequestCaps *caps, char **ret_error);
/* Parses and type-checks a request body of the given kind: unknown fields
 * are rejected, every message names the field. */
int request_parse(RequestKind kind, const char *body, size_t len, const RequestCaps *caps, RunRequest *ret,
                  char **ret_error);
typedef enum LambdaCall {
        LAMBDA_CALL_EVENT_CONTEXT,  /* handler(event, context) */
        LAMBDA_CALL_EVENT,          /* handler(event) */
        LAMBDA_CALL_KWARGS,         /* handler(**event) */
} LambdaCall;
/* The Lambda calling rule (docs/api.md "Lambda") over the parameters the
 * worker's validation read (FunctionRecord.params_json, a JSON array with
 * "*args"/"**kw"/"*" starred): exactly two plain parameters ->
 * handler(event, context); exactly one -> handler(event); otherwise (NULL,
 * unreadable included) the event's keys are keyword arguments. */
LambdaCall lambda_call_rule(const char *params_json);
/* A failed run's errorMessage as Lambda's Python runtime writes it:
 * str(exception), so a raised run's "Type: text" is "text" and its "Type"
 * (an empty str()) is ""; other messages as they are. Never NULL. */
char *lambda_error_message(RunStatus status, const char *type, const char *message);
/* The stackTrace of Lambda's error body from a run's traceback text: the
 * last exception's frames as traceback.format_list() gives them, one
 * string per frame ("  File \"main.py\", line 3, in f\n    code\n"),
 * without the "Traceback" header, the exception's line or its causes. An
 * empty array for NULL or text without frames. */
struct json_t *lambda_stack_trace(const char *traceback);

/* ---- deployed functions in memory (daemon-fncache.c) -------------------- */

/* A FunctionStore over inner (which it owns) that keeps the records its
 * lookups read, keyed by (tenant, name, version asked; 0 = latest). Every
 * put and remove empties it before and after writing; a write to the
 * functions table that bypasses it (a stack's transaction) must call
 * function_cache_invalidate() before and after. A lookup never returns
 * what a write that has returned replaced. Only for a store no other
 * process writes (not the cluster's). */
FunctionStore *function_cache_new(FunctionStore *inner);
/* No-op when fs is not a cache. */
void function_cache_invalidate(FunctionStore *fs);
/* Lookups answered from memory and from the store (0, 0 when fs is not a
 * cache). */
void function_cache_stats(FunctionStore *fs, uint64_t *ret_hits, uint64_t *ret_misses);

/* ---- the run manager (daemon-runs.c) ------------------------------------ */

typedef struct Daemon Daemon;
typedef struct DRun DRun;

typedef struct LogChunk {
        int stream;             /* 1 stdout, 2 stderr, 0 phase change */
        size_t offset, len;     /* into DRun.log */
        usec_t timestamp;
        char phase[16];         /* stream 0: the new phase */
} LogChunk;

struct DRun {
        unsigned refs;          /* guarded by Daemon.lock */
        char *id;
        char *tenant;
        char *filename;
        char *function;
        char *args_json, *kwargs_json;
        char *source;           /* owned, or fn's source when fn is set */
        size_t source_len;
        struct FunctionRecord *fn; /* the deployed version source is borrowed from (a reference), or NULL */
        RunLimits limits;
        char *fn_name;          /* deployed function name, or NULL */
        char *context_json;
        char *requirements_json; /* a deployed function's, kept beside its source (RunSpec) */
        /* A claimed run's deployed-version lock, from its request (RunSpec.lock_json);
         * NULL when fn is set: fn's is used (drun_lock_json()). */
        char *lock_json;
        int fn_version;
        char *schedule;         /* the schedule that fired it, or NULL */
        char *limits_json;      /* limits as its record keeps them (drun_set_limits_json()) */
        bool lambda;            /* Lambda calling convention: adds START/END lines */
        bool answer_waits;      /* RunRequest.answer_waits */
        bool caller_waits;      /* RunRequest.caller_waits (not kept across a restart) */
        bool endpoint;          /* RunRequest.endpoint */
        bool begun_here;        /* an ad-hoc run begun on its HTTP thread (drun_adhoc_eligible()) */
        char **data;            /* dataset refs, resolved per tenant when the run starts */
        char *output_data;      /* dataset the run's output_dir() becomes when it succeeds */
        bool no_cache;          /* resolve against the index again (RunSpec.no_cache) */
        char **secrets;         /* secret names, opened per tenant when the run starts */
        char **env;             /* plain "KEY=VALUE" variables */

        /* guarded by Daemon.lock */
        RunStatus status;
        char *phase;
        struct FnCount *fnc;          /* its function's count while it runs, or NULL */
        struct FnCount *fnr;          /* the count it holds a reservation of (fn_reserve()), or NULL */
        bool cancel_requested;
        bool done;
        Buf log;
        LogChunk *chunks;
        size_t n_chunks, alloc_chunks;
        bool log_truncated;
        RunResult *result;
        usec_t created, started, finished;
        bool daemon_writes_result; /* the engine's record is not the final word (cancel, engine error) */
        int attempt;            /* the queue's fencing token once started (0: not started) */
        DRun *next_unwritten;   /* Daemon.unwritten */
        int max_attempts;
        bool claimed;           /* cluster: claimed from Redis by this node (daemon-cluster.c) */
        bool start_unanswered;  /* claimed, and the queue never answered its start: nothing is written */
        /* Claimed, still running when this node stopped past its drain:
         * stopped here with nothing written, left to another node
         * (reclaim.lua), as if this node had died. Under Daemon.lock. */
        bool handed_back;
        /* Cluster, a run this gateway submitted and another node runs
         * (daemon-runs.c "remote runs"; all under Daemon.lock): waited
         * for here until its record ends; a look at its record is due
         * (a message said it ended, a cancel to send, the events
         * connection came back); a thread is looking at it now (no other
         * may); its cancel went to Redis; the monotonic time of the next
         * look (the fallback when no message comes). */
        bool remote, remote_wake, remote_busy, remote_cancel_sent;
        /* cluster: a look saw its record running on a node: it no longer
         * counts as queued here (remote_started_note()) */
        bool remote_started;
        /* cluster: a DAG task of this gateway waits for it (task_wait()):
         * a stopping gateway lets it go at once, the DAG run being handed
         * over with it; remote_left: let go unended (remote_end()), the
         * run going on elsewhere */
        bool dag_waits, remote_left;
        usec_t remote_due;
        RunRecord *remote_end;  /* cluster: the ended record the gateway's look read (set before done) */
        /* cluster: how much of log/chunks is in the run's Redis log
         * (written under Daemon.lock, by the holder of the ship lock) */
        size_t log_sent_chunk, log_sent_off;
        char *idem_key;         /* the submit's Idempotency-Key, or NULL */
        /* A failed Lambda Event invocation waiting to be tried again
         * (daemon-runs.c "retries"; under Daemon.lock): when (monotonic),
         * the line its next attempt's log starts with, Daemon.retrying. */
        usec_t retry_due;
        char *retry_note;
        DRun *next_retry;
        DRun *next;
        DRun *next_pending;     /* Daemon.pending: waiting for a run thread (guarded by lock) */
};

/* The request a queued run is stored with (runs.request_json; by_ref:
 * a deployed version's source named, not copied), written as text
 * (daemon-runs.c); drun_request_json_jansson() is the same through jansson
 * objects, which the text way falls back to for what it does not write
 * the same (kept for that, and so a test can compare the two). */
char *drun_request_json(const DRun *r, bool by_ref);
char *drun_request_json_jansson(const DRun *r, bool by_ref);

typedef struct DaemonMetrics {
        uint64_t runs_by_status[_RUN_STATUS_MAX];
        uint64_t http_requests;
        uint64_t http_errors_4xx, http_errors_5xx;
        uint64_t rejected_429;
        /* Warm invokes begun on their HTTP thread: ended there
         * (run_inline()), or watched to their end by the run watcher
         * (daemon-runs.c "The run watcher"). Under d->lock. */
        uint64_t invokes_inline, invokes_watched;
        /* Ad-hoc runs begun on their HTTP thread, the same way: ended
         * there (run_adhoc_inline()) or by the run watcher. */
        uint64_t adhoc_inline, adhoc_watched;
        /* Warm invokes the run watcher began itself (the next queued one
         * of a function, when an instance came free), runs a run thread
         * took (begun or ended there), and the watcher's wake-ups and the
         * watches it ended (several per wake-up under load). Under d->lock. */
        uint64_t watcher_begun, run_thread_runs, watcher_wakes, watcher_ends;
        /* phase latency histograms: validate, resolve, install, start, run, total */
        uint64_t hist[6][16];
        double hist_sum[6];
        uint64_t hist_count[6];
} DaemonMetrics;

typedef struct TenantCount {
        char *tenant;
        unsigned running, queued;
        unsigned retrying; /* on Daemon.retrying: queued runs too, to the queue's caps */
} TenantCount;

/* The runs of one deployed function version running now (daemon-runs.c
 * fn_count_enter()): at most DAEMON_FN_INSTANCES, the engine's warm
 * instances per function (RunSpec.max_instances). Listed while one runs
 * and kept at zero while the list is short; under Daemon.lock. */
typedef struct FnCount {
        struct FnCount *next;
        char *tenant, *fn_name;
        int fn_version;
        unsigned running;
        /* Invokes recorded running by their submit (started at once,
         * drun_enqueue()) that have not begun yet: each holds one of the
         * function's instances, so no more are recorded running than can
         * run (fn_reserve()). */
        unsigned reserved;
} FnCount;
#define DAEMON_FN_INSTANCES ENGINE_INSTANCES_DEFAULT

/* The open-file limit the daemon raises its soft limit to, when its hard
 * limit allows (systemd's default hard limit). */
#define DAEMON_NOFILE_CAP 524288UL

struct Daemon {
        DaemonConfig cfg;               /* replaced on SIGHUP under lock */
        pthread_rwlock_t cfg_lock;
        Engine *engine;
        Store *store;
        RunQueue *queue;                /* where accepted runs wait (store.h) */
        FunctionStore *functions;       /* deployed functions: SQLite's, or Redis's in a cluster (store.h) */
        char *data_dir;
        bool no_auth;

        pthread_mutex_t lock;
        /* Single node: one submit with an Idempotency-Key at a time, from
         * the look-up of its key to its record's commit (daemon-runs-api.c). */
        pthread_mutex_t idem_lock;
        /* One version delete's "no schedule is pinned to it" check and its
         * delete, and one pinned schedule add's "the version is there"
         * check and its insert, at a time (daemon-functions.c,
         * daemon-schedules.c): a schedule is never left pinned to a deleted
         * version. The schedules are this node's SQLite in either function
         * store (Redis's in a cluster), so no one store's transaction
         * holds both. */
        pthread_mutex_t pin_lock;
        pthread_cond_t sched_cond;      /* a slot freed or a run was cancelled */
        pthread_cond_t change_cond;     /* any run changed (log, status) */
        DRun *runs;                     /* active (queued or running) runs */
        DRun *unwritten;                /* ended, final record not stored yet (a full disk) */
        bool unwritten_writer;
        /* Failed Lambda Event invocations waiting for their retry's time
         * (DRun.retry_due), each holding a reference; the thread that
         * starts them, made on the first; signalled by a cancel and a drain. */
        DRun *retrying;
        unsigned n_retrying; /* the list's runs: counted against the queue's caps */
        bool retry_thread;
        pthread_cond_t retry_cond;
        TenantCount *tenants;
        size_t n_tenants;
        FnCount *fn_counts;             /* functions with a run running, and a few idle ones */
        unsigned n_fn_counts;
        unsigned running, queued, threads;
        usec_t overlap_at;              /* last time a run arrived while another was active (run_inline) */
        /* The run threads (daemon-runs.c): a persistent pool, grown on
         * demand up to max_concurrent_runs + 1 and never shrunk. A run
         * waits in pending (FIFO) until one of them takes it; a kick
         * wakes one idle thread (its own futex word) when a run may start. */
        DRun *pending, *pending_tail;
        /* The run watcher (daemon-runs.c): begun warm invokes handed to
         * it and not yet in its poll set; whether it sleeps in poll() (a
         * hand-over then writes watch_efd); whether its thread started. */
        struct RunStep *watch_new;
        bool watch_sleeping, watch_running;
        /* Cluster: the remote-run waiter (daemon-runs.c "remote runs"):
         * one thread for every run this gateway waits for; woken when a
         * look is due; whether it started; the ids of this gateway's runs
         * whose end message came before the run was in d->runs (a ring:
         * the run's registration finds it there instead of reading its
         * record once, just in case). */
        pthread_cond_t remote_cond;
        bool remote_running;
        unsigned remote_count;          /* runs waited for (DRun.remote) */
        /* Cluster: log follows open on this node (daemon-runs-api.c
         * ClusterSse; atomic): clients waiting for a run's end there,
         * which the drain waits for as for a ?wait (daemon_runs_drain()). */
        unsigned remote_follows;
        char *remote_early[64];
        unsigned remote_early_next;
        /* Threads between taking an idle instance for a warm invoke and
         * counting its run (fn_count_enter()) or putting the instance
         * back: raised atomically before the take, lowered under lock.
         * A queued invoke that found no idle instance meanwhile waits for
         * them (take_missed) instead of a run thread. */
        unsigned takers;
        bool take_missed;
        int watch_efd;
        struct RunThread *pool_idle_list; /* idle run threads, most recent first */
        unsigned pool_threads, pool_starting;
        bool draining;
        bool leave_queued;              /* stopping: runs not started stay queued for the next start */
        DaemonMetrics metrics;
        /* Tenant-env keys this process stored already (daemon_env_note),
         * under lock: a warm invoke writes nothing for them. */
        char **env_noted;
        size_t n_env_noted;
        /* The last few (tenant, lock text) already noted, compared whole
         * before the lock is parsed: every run of a seen set reports its
         * lock (daemon_env_note). Guarded by lock. */
        char *env_note_recent[8];
        size_t env_note_next;

        struct DataCatalog *catalog;    /* datasets (daemon-data.c); NULL until daemon_dags_init() */
        struct DaemonDags *dags;        /* DAG runs (daemon-dag.c) */
        struct DaemonGc *gc;            /* the collector (daemon-gc.c); NULL until daemon_gc_start() */
        /* The submit's free-space check's last statvfs (daemon-gc.c):
         * here, not in gc, because submits go on after the collector
         * stops (drain, DAG tasks). Lock-free: a race costs a statvfs. */
        _Atomic uint64_t disk_free_avail;
        _Atomic uint64_t disk_free_stamp; /* monotonic usec; 0: none yet */
        uint8_t secret_key[32];           /* secret_key_path's (daemon-secrets.c), loaded at start */
        char *secret_key_path;            /* secrets.key_file, or $DATA/secrets.key */
        struct DaemonSchedules *schedules; /* the scheduler (daemon-schedules.c) */
        struct DaemonCluster *cluster;  /* daemon-cluster.c; NULL in single-node mode */
        unsigned cluster_claimed;       /* runs this node claimed and has not ended (guarded by lock) */
};

int daemon_runs_init(Daemon *d);
/* Submits a run under id (NULL: a new one): takes ownership of nothing;
 * copies what it needs. -EBUSY
 * when the queue is full (429), -EINVAL never (the request was checked).
 * On success *ret holds a reference (drun_unref it). */
int daemon_run_submit(Daemon *d, const char *id, const char *tenant, const RunRequest *req, const char *fn_name,
                      int fn_version, bool lambda, DRun **ret);
/* rec is a stored record still in flight: when the daemon holds its end
 * but could not store it yet (a full disk; Redis away), fills rec with
 * that end — not when rec names a newer attempt (another node took the
 * run over: this end will be refused as stale). */
void daemon_run_overlay_unwritten(Daemon *d, RunRecord *rec);
/* Runs again what the queue holds after a restart (queued, or running
 * when the daemon died with attempts left); returns how many were resumed.
 * Call once, before HTTP starts. */
int daemon_runs_recover(Daemon *d);
/* Finds an active run of tenant by id; a reference on success, -ENOENT. */
int daemon_run_find(Daemon *d, const char *tenant, const char *id, DRun **ret);
void drun_unref(Daemon *d, DRun *r);
/* The wait key of r's end (daemon_wait_kick() when done is set): a
 * ?wait=true is not woken by each of r's log chunks, as a follower keyed
 * on r itself is. */
#define DRUN_DONE_KEY(r) ((const void *) &(r)->done)
/* Whether r has ended (what a daemon_call_wait() callback looks at). */
bool daemon_run_done(Daemon *d, DRun *r);
/* The stored record of r, which has ended, built from the run in memory
 * (the engine's final record as it wrote it: the same run object a read
 * of the store gives, without the read). *ret is shallow: its strings are
 * r's, valid while the caller holds its reference; nothing to free.
 * -ENODATA when memory is not the final word
 * (the daemon wrote the end itself, the engine could not, or the run is
 * another node's): read the store then. A run this gateway submitted to
 * the cluster answers from the ended record its waiter read from Redis
 * (remote_end): the same record a second read would give. */
int daemon_run_final_record(DRun *r, RunRecord *ret);
/* Before an answer shows r's id while r may not have ended (a ?wait
 * timeout's 202, a Lambda 504 with its request id): a synchronous run's
 * deferred submit is committed first (docs/api.md "Delivery"). */
void daemon_run_reveal(Daemon *d, DRun *r);
/* Cancels an active run (queued: never starts; running: engine_cancel). */
int daemon_run_cancel(Daemon *d, DRun *r);
/* The cancel a run's node hears from another node (cluster), by id. */
void daemon_run_cancel_id(Daemon *d, const char *id);
/* The runs in this daemon's hands now (queued or running, tenant's only
 * unless NULL, deployed function fn_name's only unless NULL), as records
 * with the daemon's status: a synchronous invoke's record may not be
 * committed yet (its submit is deferred, docs/api.md "Delivery"), the
 * listings merge these (daemon_runs_merge_in_flight()). Free with
 * run_record_list_free(). */
int daemon_run_list_in_flight(Daemon *d, const char *tenant, const char *fn_name, RunRecord ***ret, size_t *ret_n);
/* r as a record of its state in this daemon's hands now (queued or
 * running, whatever its end): what an answer shows when the store cannot
 * be read. Free with run_record_free(). */
RunRecord *daemon_run_record_now(Daemon *d, DRun *r);
/* The runs in this daemon's hands (f, nf: taken BEFORE v was read, so
 * that a run that ended in between shows its stored end, not a stale
 * "running" beside the runs that took its slot) merged with the stored
 * runs v (n, newest first, at most limit), as GET /v1/runs/ID shows each:
 * a stored run not ended shows a start the store has not committed yet
 * (a start is not waited for) and an end it could not write
 * (daemon_run_overlay_unwritten()); one not stored yet (a synchronous
 * run's deferred submit, docs/api.md "Delivery") is added, its record
 * committed before it is shown (no write added: the flush commits what
 * the writer would commit within its linger). Returns the merged list
 * (v's records and f's moved into it, f freed). Both listings use it:
 * GET /v1/runs and GET /v1/functions/NAME/runs. */
RunRecord **daemon_runs_merge_in_flight(Daemon *d, RunRecord **f, size_t nf, RunRecord **v, size_t *n, size_t limit);
/* The store's settled hook (store_set_settled_hook()): wakes the reads
 * that wait for the journal's batch (daemon_call_after_settle()). */
void daemon_runs_settled_kick(void *userdata);
/* Number of runs executing or queued. */
void daemon_run_counts(Daemon *d, unsigned *ret_running, unsigned *ret_queued);
/* Waits for all runs to finish (SIGTERM drain), at most timeout. */
void daemon_runs_drain(Daemon *d, usec_t timeout);
/* With d->lock held, after anything that may let a pending run start (a
 * slot's limit grew, a cancel, the daemon stopping): wakes an idle run
 * thread, or starts one while the pool is below max_concurrent_runs + 1. */
void daemon_runs_kick(Daemon *d);
/* Records that tenant used the environment a run event's lock names (the
 * engine's "resolve" progress event), so /v1/envs shows it that tenant. */
void daemon_env_note(Daemon *d, const char *tenant, const RunEvent *ev);
/* Reads the keys noted by earlier daemons on this home (at start). */
void daemon_env_noted_load(Daemon *d);
/* "TENANT:sha256(requirements)" — the record's key. */
char *daemon_env_requirements_key(const char *tenant, char *const *requirements);
/* "dirs:TENANT:sha256(the sorted store dir names)" — the key under which
 * daemon_env_note() records (namespace "tenant-env-dirs") the store dirs (the lock's wheels, by sha256)
 * a tenant's environment runs on, which /v1/workers matches a warm
 * worker's sys_path against. dirs: names (or paths: the last component
 * counts), sorted in place. */
char *daemon_env_dirs_key(const char *tenant, char **dirs);
/* Copies the log text so far (stdout and stderr interleaved). */
char *drun_log_text(Daemon *d, DRun *r, size_t *ret_len);

/* Runs a run this node claimed from the cluster's queue (daemon-cluster.c):
 * counted in Daemon.cluster_claimed until it ends; its final record goes
 * through the queue. */
int daemon_run_adopt(Daemon *d, const PendingRun *p);

/* ---- cluster mode (daemon-cluster.c, docs/cluster.md) ------------------- */

typedef enum DaemonClusterRole {
        CLUSTER_ROLE_ALL,       /* gateway and worker */
        CLUSTER_ROLE_GATEWAY,   /* serves the API, puts runs on the stream */
        CLUSTER_ROLE_WORKER,    /* claims runs and runs them */
} DaemonClusterRole;

typedef struct DaemonClusterOptions {
        const char *url;
        const char *node_id;
        DaemonClusterRole role;
        bool volatile_ok;               /* --redis-volatile: no AOF/noeviction check */
        unsigned claim_timeout_ms;      /* 0: the default (5 s) */
        unsigned lease_ttl_ms;          /* 0: the default (3 s) */
        unsigned record_ttl_s;          /* 0: the default (7 days) */
        const char *advertise;          /* where peers reach this node; NULL: http://LISTEN */
        /* What the cluster calls up into (pysprinterd.c sets them): the
         * run manager and the DAG driver sit above daemon-cluster.c, which
         * they call for submits, cancels and log shipping. */
        struct DaemonClusterHooks {
                int (*adopt)(Daemon *d, const PendingRun *p);       /* a claimed run: daemon_run_adopt */
                void (*ended_elsewhere)(Daemon *d, const char *id, RunRecord *rec); /* daemon_run_remote_ended */
                void (*cancel_here)(Daemon *d, const char *id);     /* daemon_run_cancel_id */
                void (*resync)(Daemon *d);                          /* daemon_runs_remote_resync */
                void (*run_unref)(Daemon *d, DRun *r);              /* drun_unref */
                void (*lease_tick)(Daemon *d, bool take);           /* daemon_dags_cluster_tick */
                void (*secrets_changed)(Daemon *d, const char *tenant); /* daemon_secrets_retire */
                /* a function (version 0) or one version was deleted
                 * through any node: daemon_function_retire */
                unsigned (*function_deleted)(Daemon *d, const char *tenant, const char *name, int version);
        } hooks;
} DaemonClusterOptions;
typedef struct DaemonCluster DaemonCluster;

/* A cluster step that fails at every try while Redis is away (the claim,
 * five tries a second; the lease and the DAG leases, one): its warning is
 * said when it starts failing, again once a minute while it lasts (with
 * its latest error and for how long), and an info line when it works
 * again, not at every try. One per step, used by one thread. */
typedef struct DaemonOutage {
        usec_t since;   /* monotonic: the first failure in a row; 0: working */
        usec_t said_at; /* monotonic: its last warning */
} DaemonOutage;
void daemon_outage_failed(DaemonOutage *o, const char *what, int err);
void daemon_outage_over(DaemonOutage *o, const char *what);
const char *daemon_cluster_role_to_string(DaemonClusterRole role);
/* This node's id (--node-id); cluster mode only. */
const char *daemon_cluster_node_id(Daemon *d);
int daemon_cluster_role_from_string(const char *s, DaemonClusterRole *ret);
/* Replaces d->queue by Redis's, after the durability check (unless
 * volatile_ok), and starts the lease and (worker, all) claim threads. */
int daemon_cluster_start(Daemon *d, const DaemonClusterOptions *o, char **ret_error);
/* A run's record: Redis's in cluster mode, else the local store's. */
int daemon_run_record_get(Daemon *d, const char *tenant, const char *id, RunRecord **ret);
/* The lock run id ran with (*ret NULL: none), from the same place; exact id. */
int daemon_run_lock_get(Daemon *d, const char *tenant, const char *id, char **ret);
/* GET /v1/runs's most runs in one answer. */
#define DAEMON_RUNS_LIST_MAX 10000
/* The newest limit runs of tenant that filter keeps (NULL: all), listed
 * after before when not NULL (a run of tenant: the next page), from the
 * same place (a cluster's: among the newest DAEMON_RUNS_LIST_MAX). */
int daemon_run_record_list(Daemon *d, const char *tenant, const RunFilter *filter, const RunRecord *before,
                           size_t limit, RunRecord ***ret, size_t *ret_n);
/* Cluster mode: the runs of tenant's deployed function name, newest first
 * (Redis's index of them). */
int daemon_cluster_function_run_list(Daemon *d, const char *tenant, const char *name, size_t limit, RunRecord ***ret,
                                     size_t *ret_n);
/* Cluster mode: the ids of tenant's newest runs (cluster_run_ids()). */
int daemon_cluster_run_ids(Daemon *d, const char *tenant, size_t limit, char ***ret);
/* Submits r to Redis with an idempotency key (NULL: none): 1 with
 * *ret_id (the first run's id) when that key was used before, 0 new. env
 * names the run's environment for placement (NULL: none). -EUSERS, nothing
 * written, when r's tenant has max_queued runs queued in the whole cluster
 * (UINT_MAX: no cap; cluster_submit_env()). */
int daemon_cluster_submit(Daemon *d, const RunRecord *r, const char *request_json, const char *idem_key,
                          const char *env, unsigned max_queued, char **ret_id);
/* Cancels run id wherever it runs (cluster_cancel): 0 ended cancelled, 1
 * its node was told, -ESTALE it has ended. */
int daemon_cluster_cancel(Daemon *d, const char *id);
/* A run this gateway waits for ended on some node (its channel said so):
 * its waiter reads the record now (daemon-runs.c). */
void daemon_run_remote_ended(Daemon *d, const char *id, RunRecord *rec);
/* Every waiter of a remote run re-reads its record (after the events
 * connection was lost, messages may have been missed). */
void daemon_runs_remote_resync(Daemon *d);

/* Appends what r (a run this node claimed) logged since the last call to
 * its log in Redis, one round trip; end: then its end marker (call it
 * before the final record is written, so a reader that sees the run ended
 * has its whole log). A failed append is retried by the next call. */
int daemon_cluster_log_ship(Daemon *d, DRun *r, bool end);
/* r (a run this node claimed and started) was handed back as this node
 * stopped past its drain, its attempt stopped with no end written: Redis
 * records that its attempt was given up (cluster_gave_up()), so a cancel
 * ends it at once; a cancel asked meanwhile ends it cancelled now. */
int daemon_cluster_gave_up(Daemon *d, DRun *r);
/* The end of r's attempt (rec, RunQueueOps.finish) with the rest of its log
 * and its end marker, in one script call: the log goes in first, also when
 * the end is refused (-ESTALE). On another error nothing counts as sent:
 * the next call sends the log again. */
int daemon_cluster_finish(Daemon *d, DRun *r, const RunRecord *rec, int attempt);
/* Appends run id's whole log so far in a cluster (its Redis stream,
 * written by whichever node ran it: stdout and stderr interleaved, as
 * GET /v1/runs/ID/logs answers) to out. 0, or a negative errno (Redis
 * unreachable, out full). */
int daemon_cluster_log_text(Daemon *d, const char *id, Buf *out);
/* Makes the data catalog the cluster's (Redis's catalogue; missing
 * objects fetched from the peers that hold them). */
void daemon_cluster_data_attach(Daemon *d);
/* Records that this node holds content hash (after a put). */
void daemon_cluster_object_held(Daemon *d, const char *hash);
/* 1 when authorization is "Bearer <cluster.secret>" (compared in constant
 * time), 0 when not, -ENOENT when this node has no cluster or no secret
 * (its internal routes do not exist). */
int daemon_cluster_secret_ok(Daemon *d, const char *authorization);
/* Whether this node has not reached Redis for longer than its lease lives
 * (its last lease refresh Redis took is older): the cluster counts it gone
 * and it can serve no run; false outside a cluster. /healthz says so. */
bool daemon_cluster_redis_lost(Daemon *d);
/* cluster_run_attempt_current(): whether a claimed run's attempt is still
 * its current one on this node (1), not (0), or a negative errno. */
int daemon_cluster_attempt_current(Daemon *d, const char *id, int attempt);

/* ---- HTTP (daemon-http.c): MHD, authentication, request bodies --------- */

int daemon_http_start(Daemon *d, const char *listen, void **ret_mhd, char **ret_error);
void daemon_http_stop(void *mhd);
/* The open connections of each HTTP pool thread, as the acceptor handed
 * them out (into ret, at most max); the number of threads written, 0 with
 * a single thread (MHD accepts itself then). */
unsigned daemon_http_thread_connections(unsigned *ret, unsigned max);

/* Checks a raw (undecoded) request target: -EINVAL with *ret_error when its
 * path or query holds a control character, literal or %-encoded (NUL
 * first of all: decoded values are C strings). */
int http_target_check(const char *target, char **ret_error);

/* ---- handlers: one convention for every endpoint ------------------------ */

struct MHD_Connection;
struct MHD_Response;
struct json_t;

#define DAEMON_MAX_SEGMENTS 6
#define DAEMON_SEGMENT_MAX 256   /* a Lambda function ARN with its qualifier fits */

/* One authenticated API request, as the router hands it to a handler.
 * seg[] are the URL path segments ("v1", "dags", …), decoded. */
/* What a request authenticated with, kept by the streams it opens: a
 * token revoked (DELETE /v1/tokens, `pysprinterd token revoke`), removed
 * from the config (SIGHUP) or expired, or a session logged out, ends them
 * (daemon_sse_cred_revoked). Authentication is per request, and a stream
 * is one request that lasts. */
typedef enum DaemonCredKind {
        DAEMON_CRED_NONE = 0, /* --no-auth: nothing to look at again */
        DAEMON_CRED_BEARER,   /* sha256: the bearer token's */
        DAEMON_CRED_SESSION,  /* sha256: the session cookie's id's */
        DAEMON_CRED_SIGV4,    /* sha256: the access key's (daemon_access_key_sha256()) */
} DaemonCredKind;

typedef struct DaemonCred {
        DaemonCredKind kind;
        uint8_t sha256[32];
        usec_t checked; /* monotonic: the last look (one a second at most) */
        bool revoked;
} DaemonCred;

typedef struct DaemonCall {
        Daemon *d;
        struct MHD_Connection *conn;
        const char *method;
        const char *tenant;
        TokenRole role;
        DaemonCred cred;        /* what tenant and role came from */
        bool lambda;            /* the Lambda API: AWS error bodies */
        bool endpoint;          /* a Function URL (/fn/): its error body, daemon_endpoint_error() */
        char (*seg)[DAEMON_SEGMENT_MAX];
        int n_seg;
        const char *body;
        size_t body_len;
        int client_fd;          /* -1: unknown */
        const char *raw_target; /* path?query as sent (undecoded) */
        void *upload;           /* a streamed body's sink (DaemonRoute.sink), or NULL */
        void *http_req;         /* the HTTP layer's request (daemon_call_wait) */
} DaemonCall;

/* A handler answers with a response and its status (the router queues it);
 * NULL drops the connection (the client went away). Handlers are declared
 * as `DaemonHandlerFn name;`. */
typedef struct MHD_Response *DaemonHandlerFn(const DaemonCall *call, unsigned *ret_status);
typedef DaemonHandlerFn *DaemonHandler;

/* ---- the route table (daemon-routes.c) ---------------------------------- */

enum {
        ROUTE_GET = 1U << 0,    /* and HEAD */
        ROUTE_POST = 1U << 1,
        ROUTE_PUT = 1U << 2,
        ROUTE_DELETE = 1U << 3,
        ROUTE_PATCH = 1U << 4,   /* function URLs only (docs/endpoints.md) */
        ROUTE_OPTIONS = 1U << 5, /* function URLs only: the function answers a CORS preflight */
};

typedef enum RouteAccess {
        ROUTE_USER,     /* a token; read-only tokens may only GET */
        ROUTE_PUBLIC,   /* no token (function URLs, the dashboard's pages) */
        ROUTE_HEALTH,   /* no token; one sent is looked at (/healthz: its run counts are an admin's when
                         * metrics are private) */
        ROUTE_METRICS,  /* public when server.metrics_public, else an admin token */
        ROUTE_LAMBDA,   /* as ROUTE_USER, answering errors as AWS Lambda does */
        ROUTE_CLUSTER,  /* another node: "Bearer <cluster.secret>", never a tenant token (docs/cluster.md) */
} RouteAccess;

/* A route whose request bodies stream to a sink instead of the capped
 * in-memory buffer (PUT /v1/data/{name}, docs/data.md). Once the headers
 * are in and the caller is authenticated, the router calls begin: 0 with
 * *ret_sink to stream (NULL: buffer this body as usual, e.g. a small JSON
 * one), or a negative errno with *ret_error to refuse at once. Each chunk
 * goes to write; a negative errno there stops the writing (the rest of the
 * body is drained) and the handler, which gets the sink as call->upload,
 * reports it. end frees the sink whatever happened (a client that went
 * away mid-body included). */
typedef struct DaemonBodySink {
        int (*begin)(const DaemonCall *call, void **ret_sink, char **ret_error);
        int (*write)(void *sink, const void *data, size_t len);
        void (*end)(void *sink);
} DaemonBodySink;

typedef struct DaemonRoute {
        unsigned methods;       /* ROUTE_GET | … */
        const char *pattern;    /* the path; a "*" item matches any one segment */
        DaemonHandler handler;
        RouteAccess access;
        const DaemonBodySink *sink; /* NULL: bodies are buffered (server.max_body_bytes) */
} DaemonRoute;

/* The longest Allow value daemon_route_allow() writes, with its NUL. */
#define DAEMON_ALLOW_MAX 64

const DaemonRoute *daemon_routes(size_t *ret_n);
/* The ROUTE_* bit of an HTTP method, 0 for one the API never serves. */
unsigned daemon_route_method(const char *method);
/* methods as an Allow header value ("GET, HEAD, DELETE") in buf; returns buf. */
char *daemon_route_allow(unsigned methods, char buf[static DAEMON_ALLOW_MAX]);
/* Resolves method and path (the target's path as sent: each segment is
 * percent-decoded after the split, so %2F stays inside its segment): 0
 * with *ret the row and seg and *ret_n_seg the path's decoded segments; -ENOENT when no row has this path (404); -EOPNOTSUPP
 * when rows have it for other methods only (405), *ret_allow their union. */
int daemon_route_find(const char *method, const char *path, char seg[][DAEMON_SEGMENT_MAX], int *ret_n_seg,
                      const DaemonRoute **ret, unsigned *ret_allow);

/* ---- responses (daemon-respond.c) --------------------------------------- */

/* j (taken) as an application/json response; server paths scrubbed unless
 * call's caller is an admin (call NULL: always). */
struct MHD_Response *daemon_call_json(const DaemonCall *call, unsigned status, struct json_t *j, unsigned *ret_status);
struct MHD_Response *daemon_json_response(unsigned status, struct json_t *j, unsigned *ret_status);
/* The same for JSON text printed with 17-digit reals (taken; NULL: a 500). */
struct MHD_Response *daemon_call_json_text(const DaemonCall *call, unsigned status, char *exact,
                                           unsigned *ret_status);
/* Whether call's caller may see the server's paths (an admin). */
bool daemon_call_shows_paths(const DaemonCall *call);
/* j as a response body spells it (17-digit reals, shortest form; the
 * server's paths scrubbed unless show_paths), for bodies sent piecemeal
 * (an SSE event). NULL when j cannot be encoded. */
char *daemon_json_text(struct json_t *j, bool show_paths);
/* The one error body, {"error": {"code", "message"}}; on the Lambda API
 * also {"Type", "message"} and the X-Amzn-ErrorType header. */
struct MHD_Response *daemon_call_error(const DaemonCall *call, unsigned status, const char *code,
                                       unsigned *ret_status, const char *fmt, ...) _printf_(5, 6);
/* daemon_call_error() naming Lambda's exception where the status alone
 * does not (a 403 is AccessDeniedException unless said otherwise). */
struct MHD_Response *daemon_call_lambda_error(const DaemonCall *call, unsigned status, const char *code,
                                              const char *lambda_type, unsigned *ret_status, const char *fmt, ...)
        _printf_(6, 7);
struct MHD_Response *daemon_error_response(unsigned status, const char *code, unsigned *ret_status, const char *fmt,
                                           ...) _printf_(4, 5);
/* The one errno -> HTTP status map (-ENOENT 404, -EBUSY 429, -ESHUTDOWN
 * 503, …); *ret_code is the error body's code. */
unsigned daemon_errno_status(int r, const char **ret_code);
/* An error response for r about what ("run", "function"), with
 * Retry-After on 429 and 503. */
struct MHD_Response *daemon_call_errno(const DaemonCall *call, int r, const char *what, unsigned *ret_status);
/* body (malloc'd, taken) as is. */
struct MHD_Response *daemon_text_response(unsigned status, const char *content_type, char *body, size_t len,
                                          unsigned *ret_status);
/* ---- waiting without a thread (daemon-wait.c, daemon-http.c) -------------
 *
 * No handler blocks an HTTP thread (a small epoll pool, server.http_threads):
 * a request that waits suspends its connection and is resumed by an event,
 * its deadline, its client hanging up, or the daemon stopping.
 *
 * For a handler (the access-handler path), one call:
 *
 *     return daemon_call_wait(call, r, timeout, then, state, state_free);
 *
 * "Wait for an event on key r (a DRun, a DDag, or NULL: any run change),
 * for at most timeout, then call back": then(call, state, why, ret_status)
 * runs on an HTTP thread, first at once (why EVENT) and again after each
 * wake. It returns the answer (or NULL: drop the connection), or
 * DAEMON_SUSPENDED to go on waiting — allowed only when why is EVENT: after
 * TIMEOUT, GONE (the client hung up) or DRAIN (the daemon stops) it must
 * answer. state_free(state) runs when the request ends. The call then
 * sees has no path segments (seg NULL) and no client_fd; the tenant, role,
 * query, headers and body are those of the request.
 *
 * For a streaming content reader (SSE), the lower level: take
 * gen = daemon_wait_arm(), look for data, and when there is none
 * `if (daemon_wait_park(&w, conn, key, gen, deadline)) return 0;` — MHD
 * calls the reader again once resumed; w.why says why. Otherwise (a kick
 * came in between, the deadline passed, the daemon drains) look again.
 *
 * Whoever changes what a key stands for calls daemon_wait_kick(key). */
typedef enum DaemonWake {
        DAEMON_WAKE_NONE,
        DAEMON_WAKE_EVENT,      /* the key changed (or the first look) */
        DAEMON_WAKE_TIMEOUT,    /* the deadline passed */
        DAEMON_WAKE_GONE,       /* the client hung up */
        DAEMON_WAKE_DRAIN,      /* the daemon stops: answer now */
} DaemonWake;

typedef struct DaemonWaiter {
        DaemonWake why;         /* why it was last resumed */
        /* private to daemon-wait.c */
        struct MHD_Connection *conn;
        const void *key;
        usec_t deadline;        /* monotonic; 0: none */
        int fd;
        uint64_t id;
        bool parked;
        struct DaemonWaiter *prev, *next;
} DaemonWaiter;

/* A waiter's owner pairs these (the drain waits for every owner to be done). */
void daemon_waiter_init(DaemonWaiter *w);
void daemon_waiter_done(DaemonWaiter *w);
uint64_t daemon_wait_arm(void);
/* From an MHD callback of conn only. true: suspended; false: look again
 * (w->why: EVENT, TIMEOUT or DRAIN). deadline is monotonic, 0: none. */
bool daemon_wait_park(DaemonWaiter *w, struct MHD_Connection *conn, const void *key, uint64_t gen, usec_t deadline);
void daemon_wait_kick(const void *key);
/* Requests waiting or streaming through a waiter now (/metrics). */
unsigned daemon_wait_count(void);
int daemon_wait_start(void);
/* Resumes every waiter (DRAIN), refuses new ones and waits up to timeout
 * for them to answer; before MHD_stop_daemon (which must not see a
 * suspended connection). */
void daemon_wait_drain(usec_t timeout);
void daemon_wait_stop(void);

typedef struct MHD_Response *DaemonWaitThen(const DaemonCall *call, void *state, DaemonWake why,
                                            unsigned *ret_status);
extern char daemon_suspended_tag;
#define DAEMON_SUSPENDED ((struct MHD_Response *) (void *) &daemon_suspended_tag)
struct MHD_Response *daemon_call_wait(const DaemonCall *call, const void *key, usec_t timeout, DaemonWaitThen *then,
                                      void *state, void (*state_free)(void *));
/* daemon_call_wait() for an end no local event announces: a run another
 * gateway accepted, a DAG run another gateway drives (their ends are
 * published to that gateway only; the record in Redis is the truth).
 * done(d, state) is read at once, then 10 ms later, the pause doubling up
 * to 250 ms, until it says true or timeout passed; each read runs on an
 * HTTP thread (keep it one short read, such as a record in Redis), and
 * between reads the connection is suspended: no thread waits. Then
 * answer(call, state, done, ret_status) answers: done false at the
 * timeout or the drain (done is read once more first: an end just then
 * answers as an end). The client hanging up drops the connection and does
 * nothing else. state_free(state) when the request ends. Example:
 *
 *     return daemon_call_poll(call, timeout, run_ended, run_answer, xstrdup(id), free); */
typedef bool DaemonPollDone(Daemon *d, void *state);
typedef struct MHD_Response *DaemonPollAnswer(const DaemonCall *call, void *state, bool done, unsigned *ret_status);
struct MHD_Response *daemon_call_poll(const DaemonCall *call, usec_t timeout, DaemonPollDone *done,
                                      DaemonPollAnswer *answer, void *state, void (*state_free)(void *));
/* A handler's read of runs after the store's writer committed what was
 * pending when the request came (store_runs_settle_ask()), waited for
 * without the HTTP thread: then(call, state, ticket, ret_status) answers,
 * reading with the store's *_settled() calls and that ticket (docs/api.md
 * "Delivery": every run answered before the request is read ended).
 * state_free(state) when the request ends (a cluster's daemon, which
 * journals nothing, reads at once). */
typedef struct MHD_Response *DaemonSettledThen(const DaemonCall *call, void *state, uint64_t ticket,
                                               unsigned *ret_status);
struct MHD_Response *daemon_call_after_settle(const DaemonCall *call, DaemonSettledThen *then, void *state,
                                              void (*state_free)(void *));
/* The answer of a listing ({"runs": [run objects]}): v (n records,
 * taken), only the runs filter keeps (NULL: all). */
struct MHD_Response *daemon_runs_list_answer(const DaemonCall *call, RunRecord **v, size_t n, const RunFilter *filter,
                                             unsigned *ret_status);

/* Adds NULL-terminated name/value pairs (a NULL value is skipped). */
void daemon_response_headers(struct MHD_Response *resp, const char *const *headers);

/* ---- Server-Sent Events: the framing every stream shares ----------------
 * A stream (run logs, /v1/events, a DAG run's events) is an MHD callback
 * response whose reader fills an SseOut with whole events, then hands the
 * bytes out as MHD asks for them. */
typedef struct SseOut {
        Buf buf;
        size_t off;             /* bytes of buf already handed out */
} SseOut;
/* Sets Content-Type: text/event-stream and the no-cache, no-buffering
 * headers on resp (NULL passes through); returns resp. */
struct MHD_Response *daemon_sse_response(struct MHD_Response *resp);
/* Appends "event: NAME\ndata: DATA\n\n" (data: one line, e.g. compact JSON). */
void daemon_sse_event(Buf *out, const char *name, const char *data);
/* The same with "id: ID": the Last-Event-ID a client that reconnects sends. */
void daemon_sse_event_id(Buf *out, const char *name, uint64_t id, const char *data);
/* Appends a comment: keeps proxies from timing out and finds a client that
 * went away (the write fails). */
void daemon_sse_keepalive(Buf *out);
/* True when everything in o was handed out; then empties it for the next
 * batch. */
bool daemon_sse_drained(SseOut *o);
/* Copies what is pending in o into buf (at most max); the reader's return. */
ssize_t daemon_sse_take(SseOut *o, char *buf, size_t max);
/* The first step of each pass of a parked SSE reader of conn: what woke w.
 * 0: look again; else the reader's answer (the client hung up:
 * daemon_stream_cut(); the daemon stops: the end). buf, max: the reader's. */
ssize_t daemon_sse_woken(DaemonWaiter *w, struct MHD_Connection *conn, char *buf, size_t max);
/* A content reader's answer when its stream cannot go on (its client hung
 * up, what it streams failed), in place of MHD_CONTENT_READER_END_WITH_ERROR,
 * which leaves the socket open on libmicrohttpd 0.9.75: shuts conn's socket
 * down and returns a byte put in buf whose send fails, so MHD closes and
 * frees the connection at once. The client sees the stream cut short. */
ssize_t daemon_stream_cut(struct MHD_Connection *conn, char *buf, size_t max);
/* A stream's look at the credential it was opened with (at most once a
 * second; a stream checks on each pass): true when it no longer
 * authenticates as tenant — revoked, expired, removed, logged out, or
 * mapped to another tenant — after appending to out an `event: revoked`
 * with the 401 body (not `error`: an EventSource fires its own error
 * handler for an event of that name); the stream then ends. daemon-ui.c. */
bool daemon_sse_cred_revoked(Daemon *d, DaemonCred *cred, const char *tenant, Buf *out);
/* After a look: a keep-alive comment when nothing went out for `every`.
 * True when o holds something to send (*last_sent is now then). */
bool daemon_sse_ready(SseOut *o, usec_t *last_sent, usec_t now, usec_t every);
/* Records the daemon's own paths (data dir, binaries' tree, $HOME) before
 * HTTP starts. */
void daemon_scrub_init(const Daemon *d);
/* Replaces those paths in s (taken) with "$DATA", "$PREFIX", "~", in
 * place where the replacement is not longer than its path: returns s, or
 * a new text (s freed), in one pass over s per path. Every JSON body goes through it before it is
 * sent. */
char *daemon_scrub(char *s);
/* A query-string value / header of the call's request, or NULL. */
const char *daemon_call_query(const DaemonCall *call, const char *key);
/* A flag of the query (wait, follow, events, source): "", 1, true, yes
 * (any case) is true; absent or 0, false, no is false. */
bool daemon_call_query_true(const DaemonCall *call, const char *key);
/* NULL, or the 400 answer for a query the API's routes cannot read: a flag
 * above that is neither true nor false ("wait=maybe"), a "timeout" that is
 * not a whole number of seconds >= 1. The router checks every /v1/ call
 * with it before its handler, so a typo is an error, not an hour's wait
 * (timeout=-1 waited server.max_wait_s). */
struct MHD_Response *daemon_call_query_check(const DaemonCall *call, unsigned *ret_status);
/* The query's "limit" into *ret (dflt when it is absent): NULL, or the 400
 * answer when it is not an integer in 1..max. Every list route reads its
 * limit through it, so they all accept and refuse alike. */
/* The query's "status", a comma-separated set of names ("failed,killed"),
 * into *ret (NULL-terminated; NULL when absent: any): NULL, or the 400
 * answer "unknown status 'W' (names_text)" at a word names does not hold
 * (exactly: the API's spelling). GET /v1/runs and GET /v1/dags read it. */
struct MHD_Response *daemon_call_query_states(const DaemonCall *call, const char *const *names, const char *names_text,
                                              char ***ret, unsigned *ret_status);
struct MHD_Response *daemon_call_query_limit(const DaemonCall *call, size_t dflt, size_t max, size_t *ret,
                                             unsigned *ret_status);
/* How long a ?wait=true waits: the query's timeout=S when it is below
 * server.max_wait_s, else max_wait_s. */
usec_t daemon_call_wait_timeout(const DaemonCall *call);
const char *daemon_call_header(const DaemonCall *call, const char *name);
RequestCaps daemon_call_caps(const DaemonCall *call);
/* Whether anyone may read every tenant's activity (server.metrics_public). */
bool daemon_metrics_public(Daemon *d);
/* Whether call's caller may see every tenant's activity (run counts, pool
 * totals, /metrics): where metrics are public, else an admin only. */
bool daemon_call_sees_activity(const DaemonCall *call);
struct json_t *daemon_time_json(usec_t t);

/* ---- runs and validation (daemon-runs-api.c) ---------------------------- */

/* cluster mode (daemon-cluster.c) */
DaemonHandlerFn daemon_api_cluster_status, daemon_api_cluster_drain, daemon_api_cluster_object, daemon_api_cluster_wheel;
DaemonHandlerFn daemon_api_runs_list, daemon_api_runs_submit, daemon_api_run_get,
        daemon_api_run_cancel, daemon_api_run_logs, daemon_api_run_lock, daemon_api_validate;
/* Lowers *l to what the config grants call's tenant (absent fields become
 * its defaults); a 403 response (its message after prefix, "" for none:
 * a stack names its item) when the request asked for more, else NULL. */
struct MHD_Response *daemon_call_grant_limits(const DaemonCall *call, const char *prefix, RunLimits *l,
                                              unsigned *ret_status);
/* The request's own "retries" (max_attempts - 1; 0: none asked) against
 * what the config grants call's tenant: a 403 naming the key that binds
 * (after prefix) when above, else NULL. Checks only: the run's
 * max_attempts is lowered to the grant at submit (daemon_retries_clamp). */
struct MHD_Response *daemon_call_grant_retries(const DaemonCall *call, const char *prefix, int max_attempts,
                                               unsigned *ret_status);
/* Submits req as a run of call's tenant (a deployed function's when fn_name)
 * under id (NULL: a new one) and answers 202 with the run (200 once
 * finished with ?wait=true). */
struct MHD_Response *daemon_call_submit(const DaemonCall *call, const RunRequest *req, const char *id,
                                        const char *fn_name, int fn_version, unsigned *ret_status);
/* Validates req in a worker (arguments too when check_arguments). */
int daemon_validate(Daemon *d, const char *tenant, const RunRequest *req, bool check_arguments, RunResult **ret);

/* ---- functions and the Lambda API (daemon-functions.c) ------------------ */

/* Checks one deploy request (REQUEST_DEPLOY) of call's tenant as POST
 * /v1/functions does: its limits within the tenant's grant (403), its
 * secrets the tenant's (404), its file valid in a worker (422 with the
 * validation). NULL and *ret the function record to store (caller frees;
 * version unset) and *ret_warnings the parser's warnings on the file
 * (caller frees; NULL when none: the caller's to show, as a validation's
 * answer carries them), or the error response. in_stack: messages start
 * with "function 'NAME': " (a stack names several). */
struct MHD_Response *daemon_function_prepare(const DaemonCall *call, const RunRequest *req, bool in_stack,
                                             FunctionRecord **ret, char **ret_warnings, unsigned *ret_status);
/* The caller's deployed function name at version (0: the latest): NULL and
 * *ret (caller frees), or the error response: 404 "function 'NAME' has no
 * version N" when the function exists without that version (invoke,
 * schedule add and GET ?version= say it alike; after prefix, "" for none),
 * daemon_function_missing() when it does not exist. */
struct MHD_Response *daemon_function_find(const DaemonCall *call, const char *prefix, const char *name, int version,
                                          FunctionRecord **ret, unsigned *ret_status);
/* After a deploy of f (a new latest version): a warning line for each of
 * the caller's schedules that fires f unpinned with arguments f's
 * validation refuses (its fires would end invalid), or NULL when none.
 * The deploy stands: the warnings are the deployer's to read. */
char *daemon_function_deploy_schedule_warnings(const DaemonCall *call, const FunctionRecord *f);
/* After the caller's function name was deleted: a warning line for each of
 * the caller's schedules that fires it (each fire starts nothing until it
 * is deployed again), or NULL when none. */
char *daemon_function_delete_schedule_warnings(const DaemonCall *call, const char *name);
/* Retires this node's warm instances of tenant's function name: every
 * version's (version 0) or version's alone; idle ones now, busy ones when
 * their invocation ends. The one retire of a delete: the node that
 * deleted calls it, and in a cluster every node does when it hears of the
 * delete (fn_delete.lua, fn_delete_version.lua). Returns how many. */
unsigned daemon_function_retire(Daemon *d, const char *tenant, const char *name, int version);
/* A validation that refused the arguments (not one that could not run). */
bool daemon_arguments_refused(const RunResult *res);
/* 404 "PREFIXno deployed function 'NAME'": the words of every /v1 route
 * for a function that is not deployed (the CLI's `functions show`,
 * `invoke`, `schedule add` print them). */
struct MHD_Response *daemon_function_missing(const DaemonCall *call, const char *prefix, const char *name,
                                             unsigned *ret_status);
/* POST /v1/stacks (daemon-stack.c, docs/stack.md): a stack's functions,
 * schedules and URLs in one transaction. */
DaemonHandlerFn daemon_api_stack;
DaemonHandlerFn daemon_api_functions_list, daemon_api_function_deploy, daemon_api_function_get,
        daemon_api_function_delete, daemon_api_function_invoke, daemon_api_function_runs, daemon_api_lambda_list,
        daemon_api_lambda_get, daemon_api_lambda_configuration, daemon_api_lambda_invoke, daemon_api_lambda_versions,
        daemon_api_lambda_invoke_async, daemon_api_lambda_delete;
/* Aliases (docs/api.md "Aliases"): /v1/functions/{name}/aliases[/{alias}]
 * and Lambda's CreateAlias, ListAliases, GetAlias, UpdateAlias,
 * DeleteAlias under /2015-03-31/functions/{name}/aliases. */
DaemonHandlerFn daemon_api_function_aliases, daemon_api_function_alias, daemon_api_lambda_aliases,
        daemon_api_lambda_alias;
/* A Lambda FunctionName — NAME, NAME:QUALIFIER,
 * arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] or the partial
 * ARN ACCOUNT:function:NAME[:QUALIFIER] (ACCOUNT 12 digits) — split into
 * the name and the qualifier (NULL when none). -EINVAL when it is none of
 * those. */
int lambda_function_ref_parse(const char *ref, char **ret_name, char **ret_qualifier);

/* Fills req with what runs f (source, file, function, requirements, its
 * deploy-time limits under req's own, delivery policy); the caller's
 * other fields stay. */
void daemon_request_from_function(RunRequest *req, const FunctionRecord *f);

/* Maps a Lambda event onto f's parameters (the calling rule above; the
 * context from request_id, req's limits and client_context — the
 * invoke's X-Amz-Client-Context object, or NULL) into req's arguments.
 * -EINVAL when f takes named parameters and the event is not an object. */
int daemon_lambda_map_event(RunRequest *req, const FunctionRecord *f, struct json_t *event, const char *request_id,
                            const struct json_t *client_context);

/* AWS SigV4 authentication (daemon-http.c), for the API's routes and a
 * function URL's caller: the key id names a tokens entry with an
 * access_key_id, whose secret must verify rq's signature (its headers
 * through rq->header; daemon_sigv4_header() reads a connection's). 0 with
 * the entry's role and tenant (in ret_tenant), or -EPERM with *ret_error
 * and *ret_type, the exception an SDK expects (a malformed Authorization,
 * an unknown key id, a signature that does not verify). */
int daemon_sigv4_authenticate(Daemon *d, const SigV4Request *rq, const char *authorization, TokenRole *ret_role,
                              char *ret_tenant, size_t tenant_size, const char **ret_type, char **ret_error);
/* What a stream opened with an access key keeps of it (DAEMON_CRED_SIGV4):
 * a digest of its id and its secret, so that removing the key or
 * changing its secret ends the stream. */
void daemon_access_key_sha256(const char *access_key_id, const char *secret_access_key,
                              uint8_t ret[static SHA256_DIGEST_SIZE]);
/* The tenant and role of the config's access key whose
 * daemon_access_key_sha256() is sha; -ENOENT when the config has none. */
int daemon_access_key_by_sha256(Daemon *d, const uint8_t sha[static SHA256_DIGEST_SIZE], TokenRole *ret_role,
                                char *ret_tenant, size_t tenant_size);
const char *daemon_sigv4_header(void *conn, const char *name);

/* ---- HTTP endpoints (daemon-endpoints.c, docs/endpoints.md) ------------- */

/* /fn/{tenant}/{name}[/path…]: any method; the function's answer. */
DaemonHandlerFn daemon_api_endpoint;
/* A Function URL's error answer: {"message": REASON, "request_id"} with
 * X-Request-Id and the sandbox policy, whatever refused the request (the
 * router's 404/405, the body cap's 413, the handler; request_id NULL: a
 * new one). The reason of a 502 is Lambda's "Internal Server Error". */
struct MHD_Response *daemon_endpoint_error(unsigned status, const char *request_id, unsigned *ret_status);
/* A public endpoint's request from client (NULL: of no address) within
 * per_s a second, burst above it: whether it may go on. Counted per IPv4
 * address and per IPv6 /64 (docs/endpoints.md). */
struct sockaddr;
bool daemon_endpoint_rate_allow(const struct sockaddr *client, unsigned per_s, unsigned burst);
/* Every bucket empty and the slots' seed this one (else random, drawn at
 * the first request): for tests, whose clients' slots are then known. */
void daemon_endpoint_rate_reset(uint64_t seed);
/* FNV-1a of data from seed, then a 64-bit finalizer so that every bit
 * of data moves the low bits: a table's slot that a client who does not
 * know seed cannot pick (its addresses are its to choose). */
uint64_t daemon_seeded_hash(uint64_t seed, const void *data, size_t len);
/* (daemon-cors.c) Whether name[0..len) is a field name: a token (RFC
 * 9110 5.1), no space, ':', ',' or control character. */
bool daemon_header_name_is_valid(const char *name, size_t len);
/* The headers of every answer on /fn/: X-Request-Id and the sandbox
 * Content-Security-Policy (docs/endpoints.md). */
void daemon_endpoint_headers(struct MHD_Response *resp, const char *request_id);
/* The error type of a run whose return value is not a valid Function URL
 * response (docs/endpoints.md "The response"). */
#define ENDPOINT_MALFORMED_RESPONSE "MalformedResponse"
/* A Function URL run's RunSpec.check_result: 0 when the return value
 * (value_json, else value_repr: the value has no JSON view) is an answer
 * the daemon can send; else -EINVAL with *ret_type
 * ENDPOINT_MALFORMED_RESPONSE and *ret_message naming what is wrong
 * ("not a valid Function URL response: statusCode must be …"). tenant is
 * the function's: its cookies' Path must stay under /fn/TENANT. */
int daemon_endpoint_response_check(const char *tenant, const char *value_json, const char *value_repr, char **ret_type,
                                   char **ret_message);
/* Sets (ENDPOINT_NONE: removes) the endpoint of tenant's function name. */
int daemon_endpoint_set(Daemon *d, const char *tenant, const char *name, EndpointMode mode);
/* The function object's "url" member: {"path", "public"[, "cors"]}, or
 * JSON null. */
struct json_t *daemon_endpoint_json(Daemon *d, const char *tenant, const char *name);

/* ---- a function URL's CORS settings (daemon-cors.c, docs/endpoints.md) -- */

/* cors, a deploy's "cors" (Lambda's Cors object), checked as Lambda checks
 * it and written as the store keeps it (origins lower-case, methods
 * upper-case, only the keys given) into *ret_json; -EINVAL with
 * *ret_error naming the field ("field 'cors.AllowOrigins[2]' is not …"). */
int daemon_cors_parse(struct json_t *cors, char **ret_json, char **ret_error);
/* An AllowOrigins item: "*" or scheme://host[:port], no path, at most
 * 253 bytes. */
bool daemon_cors_origin_is_valid(const char *origin);
/* Whether the settings (parsed from daemon_cors_parse()'s text) let origin
 * (a request's Origin) read: "*" listed, or origin listed (ASCII
 * case-insensitive). False for a NULL cors or origin. */
bool daemon_cors_origin_allowed(struct json_t *cors, const char *origin);
/* (daemon-endpoints.c) The headers of the daemon's answer to a preflight
 * of a URL with settings: Vary: Origin always; Allow-Origin, -Methods, -Headers,
 * -Max-Age, -Credentials only for an allowed origin. */
void daemon_cors_preflight_headers(struct MHD_Response *resp, struct json_t *cors, const char *origin);
/* The headers added to the function's answer (whose own Access-Control-*
 * the caller dropped): Vary: Origin; for an allowed origin, Allow-Origin,
 * Expose-Headers, Allow-Credentials. */
void daemon_cors_answer_headers(struct MHD_Response *resp, struct json_t *cors, const char *origin);

/* ---- schedules (daemon-schedules.c, docs/schedules.md) ------------------ */

typedef struct DaemonSchedules DaemonSchedules;
/* /v1/schedules (GET, POST) and /v1/schedules/{name}[/pause|/resume]. */
DaemonHandlerFn daemon_api_schedules, daemon_api_schedule;
/* Skips missed fire times of catch_up "none" schedules, then starts the
 * scheduler thread. Call after daemon_runs_recover(). */
int daemon_schedules_start(Daemon *d);
void daemon_schedules_stop(Daemon *d);
/* Now, in Unix seconds, as schedules see it ($PYSPRINTER_TEST_CLOCK_FILE
 * in tests). */
int64_t daemon_schedules_now(void);
/* Reads a POST /v1/schedules body (a stack's schedule too) into ret:
 * fields, spec, zone and the invoke's arguments checked; tenant and times
 * left to the caller. -EINVAL or request_parse's errno with a 400 message. */
int daemon_schedule_from_body(const DaemonCall *call, json_t *j, ScheduleRecord *ret, char **ret_error);
/* A function schedule's invoke (arguments, limits, version) checked as an
 * invoke of it would be, against the version it pins, else latest (a
 * stack's version of the function, not stored yet), else the stored
 * latest: the tenant's grant of its limits (403), then the function's
 * validation of its arguments (422 invalid_arguments with the validation's
 * answer under "validation"); a pinned version that does not exist is 404.
 * Messages follow prefix ("" for schedule add, "schedule 'NAME': " for a
 * stack's). NULL when every fire would be accepted. One rule for POST
 * /v1/schedules and POST /v1/stacks. */
struct MHD_Response *daemon_schedule_check(const DaemonCall *call, const ScheduleRecord *s,
                                           const FunctionRecord *latest, const char *prefix, unsigned *ret_status);
/* s's next fire time strictly after `after` (in its zone); -ENOENT when it
 * never fires again, -EINVAL when its spec or zone does not parse. */
int daemon_schedule_next(const ScheduleRecord *s, int64_t after, int64_t *ret);

/* ---- workers and environments (daemon-workers.c) ------------------------ */

DaemonHandlerFn daemon_api_workers, daemon_api_envs;

/* ---- secrets and tokens (daemon-secrets.c, daemon-secrets-env.c, daemon-tokens.c; docs/secrets.md) */

/* /v1/secrets (GET), /v1/secrets/{name} (PUT, DELETE). */
DaemonHandlerFn daemon_api_secrets_list, daemon_api_secret_put_or_delete;
/* Retires tenant's warm instances that hold an environment (a secret of
 * the tenant was set or removed: here, or in a cluster through any node). */
void daemon_secrets_retire(Daemon *d, const char *tenant);
/* Submit's check: every name opens in tenant with d->secret_key (the
 * values are wiped at once; a run's start opens them with
 * store_secrets_env()). -ENOENT with *ret_error naming the first missing. */
int daemon_secrets_check(Daemon *d, const char *tenant, char *const *names, char **ret_error);
/* The answer to daemon_secrets_check()'s failure r: a secret the tenant
 * does not have is 404 "not_found"; one it has that the daemon's key cannot
 * open (sealed with another: a database restored without its key) is 409
 * "conflict" — it is there (`secret ls` lists it), the key does not fit;
 * -ECONNREFUSED (a cluster node cut from the Redis the secrets are in) is
 * 503 "redis_unreachable": not an answer about the secret. */
unsigned daemon_secret_status(int r);
const char *daemon_secret_code(int r);
/* That answer as the response (prefix, then why; the 503 with its
 * Retry-After, as daemon_call_errno() gives it). */
struct MHD_Response *daemon_secret_refusal(const DaemonCall *call, int r, const char *prefix, const char *why,
                                           unsigned *ret_status);

/* /v1/tokens (GET, POST), /v1/tokens/{id} (DELETE): admin tokens only. */
DaemonHandlerFn daemon_api_tokens_list, daemon_api_token_create, daemon_api_token_revoke;
/* A bearer token the config does not list, looked up by its sha256 among
 * the tokens made by `pysprinterd token create` / POST /v1/tokens: 0 with
 * its role and tenant (in tenant_buf), -EPERM when unknown, revoked or
 * expired, -ECONNREFUSED when the store cannot say (a cluster node cut
 * from Redis, where the API's tokens are: not an answer "unknown"). Records
 * the use. */
int daemon_token_lookup(Daemon *d, const char *token, TokenRole *ret_role, char *tenant_buf, size_t size);
/* The same by the token's sha256 (the dashboard's sessions keep only it). */
int daemon_token_lookup_hash(Daemon *d, const uint8_t sha[static 32], TokenRole *ret_role, char *tenant_buf,
                             size_t size);
/* `pysprinterd token create|ls|revoke …` (argv[0] is "token"). */
int daemon_token_main(int argc, char **argv);

/* ---- health and metrics (daemon-metrics.c) ------------------------------ */

DaemonHandlerFn daemon_api_healthz, daemon_api_metrics;

/* ---- DAG runs and datasets (daemon-dag.c, daemon-data.c) ---------------- */

/* Opens the data catalog. Call once, after daemon_runs_init() and before
 * daemon_runs_recover(). */
int daemon_dags_init(Daemon *d, char **ret_error);
/* Resumes the DAG runs the store records as running (a daemon that stopped
 * mid-DAG continues it). Call once, after daemon_runs_recover() (a resumed
 * task adopts the run the queue recovered) and before HTTP starts. */
int daemon_dags_resume(Daemon *d);
/* Waits up to timeout for DAG runs to end; returns how many still run.
 * Those are left recorded as running, so the next start resumes them. */
unsigned daemon_dags_drain(Daemon *d, usec_t timeout);

/* The DAG object of tenant's DAG run id (or unique prefix), as GET
 * /v1/dags/{id} answers it, into *ret. -ENOENT, -EEXIST (ambiguous). */
int daemon_dag_json(Daemon *d, const char *tenant, const char *id, struct json_t **ret);
/* daemon-dag-view.c: */
/* GET /v1/dags/{id}/graph: the DAG run's tasks with their dependencies
 * (`{"tasks": [{"name", "file", "depth", "deps": [names]}]}`), from the
 * pipeline it recorded; the DAG page lays the graph out from it. */
struct MHD_Response *daemon_dag_graph_handle(const DaemonCall *call, unsigned *ret_status);
/* The pipeline rec recorded, parsed as it ran (its task files from the
 * run's directory; in a cluster, those the POST sent, from Redis): what
 * the graph shows, on every gateway. */
struct Dag; /* dag.h */
int daemon_dag_parse_recorded(Daemon *d, const DagRunRecord *rec, struct Dag **ret, char **ret_error);
/* GET /v1/dags/{id}/events: Server-Sent Events of one DAG run of the
 * caller's tenant — "dag" (the DAG object) at once and on every change,
 * "end" when it has ended. 404 for a DAG run the tenant does not have. */
struct MHD_Response *daemon_dag_events_handle(const DaemonCall *call, unsigned *ret_status);

/* The DAG run's record, tasks (position order) and the tenant's list:
 * Redis's in cluster mode (daemon-dag-cluster.c), else the local store's. */
int daemon_dag_get(Daemon *d, const char *tenant, const char *id, DagRunRecord **ret);
int daemon_dag_tasks(Daemon *d, const char *id, DagTaskRecord ***ret, size_t *ret_n);
int daemon_dag_list(Daemon *d, const char *tenant, char *const *statuses, size_t limit, DagRunRecord ***ret,
                    size_t *ret_n);
/* Cluster mode: records a new DAG run (and its task files, a JSON object
 * of name -> text, or NULL) in Redis, owned by this node. With idem_key
 * (NULL: none), 1 and *ret_first when the tenant's key names an earlier
 * DAG run: nothing was recorded (cluster_dag_create()). */
int daemon_dag_cluster_create(Daemon *d, const DagRunRecord *rec, const char *files_json, const char *idem_key,
                              char **ret_first);
/* POST /v1/dags's Idempotency-Key (docs/api.md "Idempotency"): the DAG run
 * id that tenant's key names, submitted within 24 h (Redis's dagidem: key in
 * cluster mode, else the store's kv), or -ENOENT. _put records a single
 * node's (the caller holds d->idem_lock from the look-up to it). */
int daemon_dag_idempotent_first(Daemon *d, const char *tenant, const char *key, char **ret_id);
int daemon_dag_idempotent_put(Daemon *d, const char *tenant, const char *key, const char *id, usec_t created);
/* Cluster mode: writes the local store's state of DAG run id to Redis
 * (final: it ended). -ESTALE when this node lost its lease (it must stop
 * driving it); -ECONNREFUSED or -ECOMM (not logged) when Redis did not
 * answer: the caller asks again (daemon-dag.c dag_sync()); 0 in
 * single-node mode. */
int daemon_dag_cluster_sync(Daemon *d, const char *id, bool final);
/* Cluster mode: drops this node's lease of DAG run id. */
void daemon_dag_cluster_release(Daemon *d, const char *id);
/* Cluster mode: copies DAG run id from Redis into the local store (its
 * base_dir: dir) and hands back its task files (JSON name -> text, or
 * NULL); refreshes this node's DAG leases (owned) and, take, takes those
 * without a live owner (*ret_taken). daemon-dag.c resumes them. */
int daemon_dag_cluster_fetch(Daemon *d, const char *id, const char *dir, DagRunRecord **ret_rec,
                             struct json_t **ret_files);
int daemon_dag_cluster_leases(Daemon *d, char **owned, bool take, char ***ret_taken, char ***ret_cancel);
/* Cluster mode: the task files DAG run id was posted with (JSON name ->
 * text; NULL when none were), from Redis: what any gateway reads the
 * pipeline's tasks from (the owner's copy is in its own DATA_DIR/dags). */
int daemon_dag_cluster_files(Daemon *d, const char *id, struct json_t **ret_files);
/* Cluster mode: records a cancel of DAG run id asked on this node (any
 * node): its owner, or whoever takes it over, cancels it at its next lease
 * tick (*ret_cancel above). 1 recorded, 0 it has ended, -ENOENT. */
int daemon_dag_cluster_cancel(Daemon *d, const char *id);
/* daemon-dag.c, from the cluster's lease thread (its lease_tick hook):
 * refreshes the leases of the DAG runs this node drives and (take: a
 * gateway) takes over and resumes those without a live owner. */
void daemon_dags_cluster_tick(Daemon *d, bool take);
/* daemon-dag.c: the ids of the DAG runs this node drives (a strv); writes
 * a request's `files` under dir; resumes a recorded DAG run (its base_dir
 * under DATA_DIR/dags). */
char **daemon_dags_active_ids(Daemon *d);
int daemon_dag_write_files(const char *dir, struct json_t *files, char **ret_error);
int daemon_dag_resume_record(Daemon *d, const DagRunRecord *rec);
/* /v1/dags[/{id}[/tasks/{task}/logs]] — GET, POST, DELETE. */
DaemonHandlerFn daemon_dag_handle;
/* Starts a DAG run from body (a POST /v1/dags body: pipeline, filename,
 * files, params, concurrency, keep_going, no_cache) for tenant, as POST
 * /v1/dags does: id names it (NULL: a new id), schedule tags it (NULL:
 * none). dry_run: every check (files, parse, limits, secrets), then nothing
 * kept. In a cluster, idem_key (NULL: none) is its Idempotency-Key: 1 with
 * *ret_first (the DAG run the key named within 24 h; nothing started) when
 * the key was used, else 0 (ret_first may be NULL without a key). On
 * failure *ret_status is the HTTP status and *ret_error why. */
int daemon_dag_submit(Daemon *d, const char *tenant, json_t *body, const char *id, const char *schedule,
                      const char *idem_key, bool dry_run, char **ret_first, unsigned *ret_status, char **ret_error);
/* /v1/data[/{name}[/content]] — GET, PUT, DELETE. */
DaemonHandlerFn daemon_data_handle, daemon_data_usage;
/* PUT /v1/data/{name}'s bodies (not JSON ones) stream to a staging file
 * under the catalog, capped by data.max_bytes, not server.max_body_bytes. */
extern const DaemonBodySink daemon_data_upload_sink;

/* ---- operations: retention, disk budget, config check (daemon-gc.c,
 * daemon-check.c; docs/operations.md) ------------------------------------- */

typedef struct DaemonGc DaemonGc;
struct json_t;
/* Parses the config section key ("retention" or "disk") into rc. -EINVAL
 * with *ret_error naming the key. */
int daemon_gc_config_parse(RetentionConfig *rc, const char *key, struct json_t *v, char **ret_error);
/* Starts the background collector (every retention.interval_s) and the
 * usage snapshot /metrics prints. Call after the store is open. */
int daemon_gc_start(Daemon *d);
/* The configuration changed (SIGHUP): the collector reads its interval again. */
void daemon_gc_wake(Daemon *d);
/* Stops it between two batches and joins it. */
void daemon_gc_stop(Daemon *d);
/* Appends the bytes-used gauges and what the last collection removed
 * (Prometheus text) to b; with per_tenant, the per-tenant series too
 * (their labels name every tenant: an admin's). /metrics calls it. */
void daemon_gc_metrics(Daemon *d, Buf *b, bool per_tenant);
/* Adds "disk" (free, warn and reserve bytes) and "warnings" (free space
 * below disk.warn_bytes / disk.reserve_bytes) to the /healthz object j. */
void daemon_gc_healthz(Daemon *d, struct json_t *j);
/* -ENOSPC when the data directory has less free space than
 * disk.reserve_bytes: the run is refused with 507 before the disk is full.
 * daemon_run_submit() calls it. */
int daemon_gc_disk_check(Daemon *d);
/* The 507 response's message. */
const char *daemon_gc_disk_full_message(void);

/* Loads path into cfg (initialised) and checks what loading alone does not:
 * the data directory exists and is readable and writable (or can be
 * created). Every message is "FILE:LINE: what" (the YAML walker's node
 * marks); YAML errors, a key given twice among them, keep their column.
 * Startup, SIGHUP and `pysprinterd --check-config` call this one function.
 * -EINVAL (config) or -EACCES (data dir) with *ret_error. */
int daemon_config_check(DaemonConfig *cfg, const char *path, char **ret_error);
/* `pysprinterd --check-config` only, after daemon_config_check(): the key
 * file cfg's secrets.key_file names is one a start takes (it exists, is a
 * 32-byte key only its owner reads: seal_key_read()). Not at a SIGHUP (the
 * key is read at start only) nor for the operations subcommands (a
 * restore comes before the key is copied). -errno with "FILE:LINE: what". */
int daemon_config_check_key(const DaemonConfig *cfg, const char *path, char **ret_error);
