/* One interface over the two places a verb can act: the embedded engine
 * (this process, $PYSPRINTER_HOME) and a pysprinterd over HTTP. A verb is
 * written once against a Backend; both speak the API's objects
 * (docs/api.md: the run object, the function object), so one renderer
 * draws them and `--json` prints the same document on both paths.
 *
 * Every operation returns >= 0 or a negative errno; *b->error then holds a
 * sentence for the user (without the "pysprinter: " prefix) and
 * cli_exit_code() maps the errno to the exit-code table of docs/cli.md. */
#pragma once

#include "cli.h"
#include "dag.h"
#include "store.h"

/* ---- cli-http.c: the CLI's one HTTP client (libcurl stays inside) ---- */

typedef struct Http {
        char *base;    /* the server in use, without trailing '/' (one of servers) */
        char *token;   /* NULL: no Authorization header */
        /* --server URL,URL,...: the gateways of one cluster (docs/cluster.md).
         * When the one in use cannot be reached, the next is used: a request
         * that sent nothing, or a GET, is retried there at once. */
        char **servers;
        size_t n_servers, cur;
} Http;

/* Server-Sent Events: called per event (name, data text). */
typedef void (*HttpSseFn)(const char *event, const char *data, size_t len, void *userdata);

typedef struct HttpRequest {
        const char *method;
        const char *path;          /* from the base URL on, already escaped */
        const char *content_type;  /* of body/upload */
        const char *body;          /* sent when set (body_len bytes) */
        size_t body_len;
        FILE *upload;              /* or this file, upload_size bytes (streamed) */
        int64_t upload_size;
        /* or bytes produced as they are sent (chunked; never retried):
         * up to len into buf, 0 at the end, a negative errno */
        ssize_t (*read)(void *userdata, void *buf, size_t len);
        void *read_userdata;
        FILE *download;            /* a 2xx answer's body is streamed here */
        HttpSseFn sse;             /* a 2xx answer is an event stream */
        void *sse_userdata;
        uint64_t *last_event_id;   /* set to each handled event's numeric id: field */
        Buf *headers;              /* the answer's header lines, when set */
        const char *header;        /* one more request header line, when set */
        const char *header2;       /* and another */
        /* Goes through whole after an interrupt, as when the caller set
         * cli_interrupt_handled (for INTERRUPTED_REQUEST_USEC at most): a
         * submit the server may have read already, which a request cut
         * off would leave going for nobody. */
        bool whole;
} HttpRequest;

/* The server URL and the token ($PYSPRINTER_TOKEN, --token, the config).
 * -EINVAL for a URL that is not http(s). */
int http_open(const char *server, Http *ret, char **ret_error);
void http_close(Http *h);
/* One request, retried on 429 as Retry-After asks (a few times), and on a
 * 503 with Retry-After from the last server to ask (not a GET: reads wait
 * for themselves) for up to http_reconnect_wait(), warning once. Stops on
 * Ctrl-C (-EINTR). *ret_body (initialised here; caller frees) holds the
 * answer unless it was streamed. A non-2xx answer is a negative errno
 * (400 -EINVAL, 401 -EACCES, 403 -EPERM, 404 -ENOENT, 409 -EBUSY,
 * 413 -EFBIG, 422 -EBADMSG, 429 -EAGAIN, 5xx -EIO) with the server's
 * message in *ret_error; an unreachable server is -ECONNREFUSED. */
int http_request(Http *h, const HttpRequest *q, long *ret_status, Buf *ret_body, char **ret_error);
/* How long the CLI waits for a server that went away or cannot serve now
 * (a 503 + Retry-After asked again, a run followed through a restart): a
 * supervisor restarts a killed daemon within seconds (the shipped unit:
 * RestartSec=2), a gateway cut from Redis serves once Redis is back.
 * PYSPRINTER_TEST_RECONNECT_S shortens it for the tests; 60 s. */
usec_t http_reconnect_wait(void);
/* A JSON request (body may be NULL) and its JSON answer. */
int http_json(Http *h, const char *method, const char *path, json_t *body, json_t **ret, char **ret_error);
/* http_json(), where a refusal's answer is kept too: on a non-2xx answer
 * *ret is its JSON body (NULL when it has none). Caller frees *ret. */
int http_json_answer(Http *h, const char *method, const char *path, json_t *body, json_t **ret, char **ret_error);
/* http_json() without a body, the answer read by loads(text, len) (text
 * has a NUL after it): the caller's way to read a large answer without
 * jansson's whole tree (NULL from loads: read as http_json() reads it). */
int http_json_loads(Http *h, const char *method, const char *path, json_t *(*loads)(const char *text, size_t len),
                    json_t **ret, char **ret_error);
/* A POST that submits (a run, a DAG run) as http_json(), gone through
 * whole after an interrupt (HttpRequest.whole), with one more request
 * header line (header, NULL: none). An "Idempotency-Key: KEY" line also
 * lets a request that broke off go to the next gateway of --server
 * URL,URL: it cannot start a second run. */
int http_json_submit(Http *h, const char *path, const char *header, json_t *body, json_t **ret, char **ret_error);
/* A path component, %-escaped. Caller frees. */
char *http_escape(const char *s);

/* ---- the backend ---- */

typedef struct Backend Backend;

typedef struct RunRequest {
        const RunArgs *a;          /* arguments, limits, --data, function */
        const char *source;        /* run/validate: the file's text */
        size_t source_len;
        const char *filename;
        const char *deployed;      /* invoke: the deployed function's name */
        long version;              /* invoke: 0 = latest */
        const char *alias;         /* invoke: the alias NAME::ALIAS named (version 0), or NULL */
        json_t *payload;           /* invoke: a Lambda-style event (the one argument) */
        const char *prev_result;   /* chain: JSON text of the first positional argument */
        bool validate_only;
        /* `lock` (with validate_only): resolve the requirements and install
         * nothing, arguments unchecked; *ret gains "lock", the lock's JSON
         * with an index URL's credentials hidden (null: no requirements) */
        bool lock_only;
        /* `run FILE --help` (with validate_only): parse the file and find
         * the function, nothing resolved, arguments unchecked; *ret is the
         * validation's answer with its signature and doc. `invoke NAME
         * --help` (with deployed): *ret is the deployed version's function
         * object (GET /v1/functions/NAME), which has them too */
        bool describe_only;
        /* run/invoke --detach: *ret is the run as submitted (a 202's run),
         * not its end. Embedded, the caller is cli_detach_fork()'s child:
         * it hands the run's record to its parent once written
         * (cli_detach_submitted()) and watches the run to its end. */
        bool detach;
        /* The run's result may come back held as its JSON text
         * (shared.h json_held_new()): for a caller that only renders it
         * (renderer_run_outcome()). */
        bool hold_result;
} RunRequest;

/* A pipeline to run (docs/dag.md). */
typedef struct DagRequest {
        Dag *dag;                  /* parsed by the verb (dag_parse); NULL when resuming */
        const char *text;          /* the pipeline's text */
        size_t len;
        const char *filename;      /* its path as given */
        const char *base_dir;      /* where its task files are */
        char *const *params;       /* NAME=VALUE */
        unsigned concurrency;      /* 0: the pipeline's */
        bool keep_going, no_cache;
        SandboxMode sandbox;
        const char *resume_id;     /* embedded: continue this DAG run */
        /* --idempotency-key KEY, with a server only (the verb refuses it
         * embedded): POST /v1/dags's Idempotency-Key header */
        const char *idempotency_key;
        /* dag run --detach: *ret is the DAG run as submitted, as for
         * RunRequest.detach (embedded: handed to cli_detach_submitted()
         * once recorded, then run to its end). */
        bool detach;
} DagRequest;

/* q as the body of POST /v1/dags: the pipeline's text, its file name, the
 * task files it names (read from q->base_dir, none outside it) and params.
 * One place for `dag run` against a server and `schedule add --dag`. */
int dag_request_body(const DagRequest *q, json_t **ret, char **ret_error);

/* Called as a DAG run moves: shape is the parsed pipeline (names, depth,
 * dependencies); dag the API's DAG object so far, NULL while validating. */
typedef void (*DagViewFn)(Dag *shape, json_t *dag, void *userdata);

typedef struct BackendOps {
        /* Runs q to its end, streaming its output and progress into rd;
         * *ret is the final run object (validate: {status, exit_code,
         * function, error}). Ctrl-C cancels the run and still returns it. */
        int (*run)(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret);
        int (*run_get)(Backend *b, const char *id, json_t **ret);
        /* The newest limit runs filter keeps (NULL: all; its statuses the
         * API's spellings), as GET /v1/runs?limit=N&status=S,T&function=F&
         * schedule=S lists them. */
        /* before (NULL: the newest): an id or unique prefix of a run the
         * caller sees; the runs listed after it (the next page), or the
         * errors run_get gives for it. */
        int (*run_list)(Backend *b, long limit, const RunFilter *filter, const char *before, json_t **ret_array);
        /* Cancels a queued or running run (id or a unique prefix): *ret is
         * the run once it ended, or as it stands when that takes more than
         * 10 s (the cancel stands). One that had ended is -EBUSY, "run ID
         * has already finished (STATUS)" (the API's 409). Embedded, the run
         * belongs to the CLI process that started it: it is asked to cancel
         * that run (engine_cancel_request()). */
        int (*run_cancel)(Backend *b, const char *id, json_t **ret);
        /* Replays (follow: and follows) a run's output into rd. */
        int (*run_logs)(Backend *b, const char *id, bool follow, Renderer *rd);
        /* deploy / functions / workers: the API's objects; the embedded
         * engine keeps no deployed functions (-EOPNOTSUPP). */
        int (*deploy)(Backend *b, json_t *req, json_t **ret);
        /* A stack (docs/stack.md): req is POST /v1/stacks's body, *ret its
         * answer {changes: [{action, kind, name}], dry_run}. All or nothing:
         * a function that does not validate is -EBADMSG (its message in
         * b->error), a limit above the tenant's -EPERM, an unknown secret
         * -ENOENT. */
        int (*stack)(Backend *b, json_t *req, json_t **ret);
        /* GET or DELETE /v1/functions/NAME (NULL: the list), at version
         * (> 0; 0: the latest for GET, every version for DELETE). */
        int (*function)(Backend *b, const char *method, const char *name, long version, json_t **ret);
        /* name's aliases (docs/api.md "Aliases"): GET with alias NULL
         * lists them ({"aliases": […]}); PUT points alias at version;
         * DELETE deletes it. *ret the answer. */
        int (*alias)(Backend *b, const char *method, const char *name, const char *alias, long version, json_t **ret);
        int (*workers)(Backend *b, json_t **ret);
        /* GET /v1/envs's object: "envs", the environments the caller may
         * see (a tenant its own), most recently used first, and
         * "data_dir" where it is known (embedded; a server tells admins).
         * Embedded it needs no engine (backend_open_listing()): it reads
         * the package store's records and creates nothing. */
        int (*envs)(Backend *b, json_t **ret);
        /* Schedules (docs/schedules.md): method on /v1/schedules + path
         * ("", "/NAME", "/NAME/pause"…) with body (may be NULL); the
         * embedded engine keeps none (-EOPNOTSUPP). Invoke arguments the
         * function refuses are -EBADMSG with *ret the validation's answer
         * ({status, exit_code, error}), for the verb to print as an invoke
         * prints its refused run. */
        int (*schedule)(Backend *b, const char *method, const char *path, json_t *body, json_t **ret);
        /* logs --function: the runs of deployed function name (newest
         * first, at most limit), and one run's log so far as text (stdout
         * and stderr interleaved). Server only (-EOPNOTSUPP embedded). */
        int (*function_runs)(Backend *b, const char *name, long limit, json_t **ret_array);
        int (*run_log_text)(Backend *b, const char *id, Buf *ret);
        /* DAG runs: the API's DAG object (docs/api.md "DAG runs"). dag_run
         * runs q to its end, calling view as it moves; Ctrl-C cancels it
         * and still returns the final object. An invalid pipeline is
         * -EBADMSG, a task's unresolvable requirement -ENOPKG. */
        int (*dag_run)(Backend *b, const DagRequest *q, DagViewFn view, void *userdata, json_t **ret);
        int (*dag_get)(Backend *b, const char *id, json_t **ret);
        /* The newest limit DAG runs in one of statuses (NULL: any), as GET
         * /v1/dags?limit=N&status=S,T lists them. */
        int (*dag_list)(Backend *b, long limit, char *const *statuses, json_t **ret_array);
        int (*dag_cancel)(Backend *b, const char *id, json_t **ret);
        /* Datasets: the API's dataset objects (docs/api.md "Datasets").
         * data_put: source a file, a directory (a tar stream over HTTP) or a URL, stored
         * under filename (NULL: the source's own name). data_info: GET
         * /v1/data/NAME's object (versions, current_version, filename). */
        int (*data_put)(Backend *b, const char *name, const char *source, const char *filename, json_t **ret);
        int (*data_info)(Backend *b, const char *name, json_t **ret);
        int (*data_list)(Backend *b, json_t **ret_array);
        /* A single-file dataset's content to out_path (NULL: stdout); a
         * directory dataset copied to out_path, or (embedded, no out_path)
         * its read-only location in *ret_dir. */
        int (*data_get)(Backend *b, const char *ref, const char *out_path, char **ret_dir);
        int (*data_rm)(Backend *b, const char *ref);
        /* Secrets of the caller's tenant (docs/secrets.md): set stores
         * value[0..len) under name (replacing it); list answers
         * [{name, created_at, updated_at}], never values; rm -ENOENT when
         * absent. */
        int (*secret_set)(Backend *b, const char *name, const char *value, size_t len, json_t **ret);
        int (*secret_list)(Backend *b, json_t **ret_array);
        int (*secret_rm)(Backend *b, const char *name);
        /* Re-seals every secret with a new key (docs/secrets.md "Rotating
         * the key"); *ret_n how many. Embedded only: a server's key is its
         * operator's (pysprinterd secret rotate-key), -EOPNOTSUPP. */
        int (*secret_rotate_key)(Backend *b, size_t *ret_n);
        void (*free)(Backend *b);
} BackendOps;

struct Backend {
        const BackendOps *ops;
        bool remote;
        char *error;    /* the last failure, for the user */
        Engine *engine; /* embedded; NULL from backend_open_listing() */
        DataCatalog *catalog; /* embedded, opened on first use */
        Http http;      /* remote */
};

/* The backend for this invocation: a server when one is configured
 * (cli_server()), else the embedded engine (opened with a's index
 * settings; a may be NULL). Returns 0 or the exit code after telling the
 * user. */
int backend_open(const RunArgs *a, Backend **ret);
/* backend_open() for a verb that reads (lists or shows), removes what the
 * home holds, or needs a server: embedded, the engine — whose opening
 * creates the home, its database and its directories — is opened only
 * when records says the verb acts on the home's records (runs, DAG runs,
 * datasets, secrets) and the home has a database
 * (engine_home_has_records()). Otherwise the backend has no engine and
 * its ops answer as an empty home does: an empty list, or the "no run
 * 'ID'" of an unknown one (to show, cancel or remove: run_cancel,
 * dag_cancel, data_rm, secret_rm), with the same bytes and exit codes.
 * `env ls` (records false) reads the package store's files alone; the
 * ops that need a server (invoke's run, deploy, stack, functions,
 * workers, schedules) need no engine to say so. So a fresh home stays as
 * it was, not created when it did not exist. Ops that add (run, dag_run,
 * data put, secret set…) may not be called on it. With a server,
 * backend_open()'s backend. */
int backend_open_listing(bool records, Backend **ret);
/* Says what a run's local options come to on b, before it starts (what:
 * "this code runs", "these tasks run"): --sandbox=none is loud embedded; with a
 * server, the options that are the server's settings (sandbox, package
 * index) are said to be ignored. */
void backend_note_options(const Backend *b, const RunArgs *a, SandboxMode sandbox, const char *what);
/* `--timeout 7` (RunArgs.shadowing) where q's function (q->source's, or
 * the deployed q->deployed's) has a parameter `timeout`: one line on
 * stderr each, "warning: --timeout 7 was taken as the runner's option,
 * not as f()'s parameter 'timeout': give that as -k timeout=7" (not with
 * -q). For every verb that reads function arguments with run's grammar:
 * run, validate, invoke, schedule add. Asks b for the function's
 * description only when a parameter may have such a name; a description
 * b cannot give says nothing. */
void cli_warn_shadowed(Backend *b, const RunRequest *q);
Backend *backend_free(Backend *b);
/* Says b->error (or strerror) on stderr and returns the exit code for r. */
int backend_fail(Backend *b, int r);
/* A function's URL as the API answers it ({"path", "public"}) as the user
 * calls it: "http://HOST:PORT/fn/TENANT/NAME (bearer token)" (or "public");
 * NULL when url is not an object. Owned by the caller. */
char *cli_endpoint_text(const Backend *b, const json_t *url);
/* Replaces b->error. */
void backend_set_error(Backend *b, const char *fmt, ...) _printf_(2, 3);

/* e NULL: the engine-less backend of backend_open_listing(): an empty
 * home's answers. */
int backend_engine_new(Engine *e, Backend **ret);
int backend_http_new(const char *server, Backend **ret, char **ret_error);
/* The API's run object of an engine record (the daemon's schema). */
json_t *cli_run_record_json(const RunRecord *r);
/* The engine-format arguments (RunArgs.args_json/kwargs_json) as the
 * API's args/raw_args/kwargs/raw_kwargs fields of req, with the run's
 * limits and data (--data names) when set: what a run, an invoke and a
 * schedule's fires carry. -EINVAL when a raw (-a) value follows a typed
 * one (the API keeps raw values first). */
int cli_args_to_api(json_t *req, const RunArgs *a);

/* What `logs RUN` and `dag logs ID TASK` print: the run's output replayed
 * to the streams it was written to (follow: until the run ends), then a
 * failed run's traceback on stderr, as `run` printed it. A backend status. */
int cli_run_log_print(Backend *b, const char *id, bool follow);

/* The exit code of a finished DAG run (the API's DAG object): 130 when
 * cancelled, else the first failed task's code, 1 when a task did not
 * succeed, 3 when the pipeline was invalid, 0. */
int cli_dag_exit_code(json_t *dag);
