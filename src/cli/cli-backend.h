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
#include "store.h"

/* ---- cli-http.c: the CLI's one HTTP client (libcurl stays inside) ---- */

typedef struct Http {
        char *base;    /* without trailing '/' */
        char *token;   /* NULL: no Authorization header */
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
        FILE *download;            /* a 2xx answer's body is streamed here */
        HttpSseFn sse;             /* a 2xx answer is an event stream */
        void *sse_userdata;
        Buf *headers;              /* the answer's header lines, when set */
        const char *header;        /* one more request header line, when set */
} HttpRequest;

/* The server URL and the token ($PYSPRINTER_TOKEN, --token, the config).
 * -EINVAL for a URL that is not http(s). */
int http_open(const char *server, Http *ret, char **ret_error);
void http_close(Http *h);
/* One request, retried on 429 as Retry-After asks (a few times). Stops on
 * Ctrl-C (-EINTR). *ret_body (initialised here; caller frees) holds the
 * answer unless it was streamed. A non-2xx answer is a negative errno
 * (400 -EINVAL, 401 -EACCES, 403 -EPERM, 404 -ENOENT, 409 -EBUSY,
 * 413 -EFBIG, 422 -EBADMSG, 429 -EAGAIN, 5xx -EIO) with the server's
 * message in *ret_error; an unreachable server is -ECONNREFUSED. */
int http_request(const Http *h, const HttpRequest *q, long *ret_status, Buf *ret_body, char **ret_error);
/* A JSON request (body may be NULL) and its JSON answer. */
int http_json(const Http *h, const char *method, const char *path, json_t *body, json_t **ret, char **ret_error);
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
        json_t *payload;           /* invoke: a Lambda-style event (the one argument) */
        const char *prev_result;   /* chain: JSON text of the first positional argument */
        bool validate_only;
} RunRequest;

typedef struct BackendOps {
        /* Runs q to its end, streaming its output and progress into rd;
         * *ret is the final run object (validate: {status, exit_code,
         * function, error}). Ctrl-C cancels the run and still returns it. */
        int (*run)(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret);
        int (*run_get)(Backend *b, const char *id, json_t **ret);
        int (*run_list)(Backend *b, long limit, json_t **ret_array);
        /* Replays (follow: and follows) a run's output into rd. */
        int (*run_logs)(Backend *b, const char *id, bool follow, Renderer *rd);
        /* deploy / functions / workers: the API's objects; the embedded
         * engine keeps no deployed functions (-EOPNOTSUPP). */
        int (*deploy)(Backend *b, json_t *req, json_t **ret);
        int (*function)(Backend *b, const char *method, const char *name, json_t **ret);
        int (*workers)(Backend *b, json_t **ret);
        void (*free)(Backend *b);
} BackendOps;

struct Backend {
        const BackendOps *ops;
        bool remote;
        char *error;    /* the last failure, for the user */
        Engine *engine; /* embedded */
        Http http;      /* remote */
};

/* The backend for this invocation: a server when one is configured
 * (cli_server()), else the embedded engine (opened with a's index
 * settings; a may be NULL). Returns 0 or the exit code after telling the
 * user. */
int backend_open(const RunArgs *a, Backend **ret);
Backend *backend_free(Backend *b);
/* Says b->error (or strerror) on stderr and returns the exit code for r. */
int backend_fail(Backend *b, int r);
/* Replaces b->error. */
void backend_set_error(Backend *b, const char *fmt, ...) _printf_(2, 3);

int backend_engine_new(Engine *e, Backend **ret);
int backend_http_new(const char *server, Backend **ret, char **ret_error);
/* The API's run object of an engine record (the daemon's schema). */
json_t *cli_run_record_json(const RunRecord *r);
/* The engine-format arguments (RunArgs.args_json/kwargs_json) as the
 * API's args/raw_args/kwargs/raw_kwargs fields of req. -EINVAL when a raw
 * (-a) value follows a typed one (the API keeps raw values first). */
int cli_args_to_api(json_t *req, const RunArgs *a);

/* ---- dag and data against a server (cli-remote-dag.c) ---- */

/* Each returns the process exit code, the embedded verb's for the same
 * outcome. */
int cli_remote_dag_run(const char *server, const char *file, char *const *params, unsigned concurrency, bool keep_going,
                       bool no_cache, bool json);
/* dag status|logs|ls|resume; argv holds the words after the subcommand. */
int cli_remote_dag(const char *server, const char *sub, int argc, char **argv);
/* data put|ls|get|rm; argv from the subcommand on. */
int cli_remote_data(const char *server, int argc, char **argv);
typedef struct DataCatalog DataCatalog; /* cli-data.c: the catalog beside the engine's store */
int cli_data_open(Engine *e, DataCatalog **ret);
