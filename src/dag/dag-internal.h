/* Internal to the dag module. */
#pragma once

#include <jansson.h>
#include <pthread.h>

#include "shared.h"

#include "dag.h"

typedef struct Task {
        char *name;
        int line;
        char *file;          /* as written */
        char *path;          /* base_dir/file */
        char *source;
        size_t source_len;
        char *function;
        json_t *args;        /* array of template values */
        json_t *kwargs;      /* object of template values */
        json_t *raw_kwargs;  /* `raw_kwargs:`, the API's (no templates): a word, words, or true for a bare flag */
        RunLimits limits;
        int retries;
        uint64_t backoff_ms;
        char **data;         /* dataset refs */
        char *outputs;       /* `outputs: NAME`: the dataset its output_dir() becomes */
        /* per `data:` ref (NULL-terminated like data): the index of the task
         * of this DAG whose `outputs:` produces it, or -1 */
        ssize_t *data_producer;
        char **secrets;      /* `secrets:` names, seen as env NAME (docs/secrets.md) */
        char **env;          /* `env:` as "KEY=VALUE" */
        size_t *deps, n_deps;
        size_t n_dependents;
        int depth;

        /* run state, under Dag.lock */
        DagTaskState state, reported;
        /* Started, not yet known to run: a memo hit is reported cached
         * without a "running" before it (report()). */
        bool deciding;
        char *run_id;
        int attempts;
        int attempts_here;   /* started by this dag_run() (0: adopt a resumed run_id) */
        bool cached;
        json_t *value;
        char *value_json;
        char *error;
        int exit_code;
        char *memo_key;
        int out_version;     /* the version of `outputs:` this DAG run produced or re-used (0: none yet) */
        usec_t started, finished;
        pthread_t thread;
        bool has_thread;
} Task;

struct Dag {
        char *name;
        char *filename;
        char *base_dir;
        char *text;
        json_t *params;      /* object */
        json_t *declared_params; /* `params:` as the file declares them (before --param) */
        char *params_json;   /* the --param overrides as given, for resume */
        Task *tasks;
        size_t n;
        unsigned concurrency;

        /* run state */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char *id;
        const char *status;
        volatile int cancel_requested;
        bool stop;
        bool interrupted;    /* the runner stops (-ESHUTDOWN): leave the rest for the resume */
        int lock_fd;         /* the flock that says this process drives the run */
        unsigned running;    /* task threads holding a slot */
        unsigned backing_off; /* task threads waiting to retry: they hold none */
        unsigned slots;       /* the concurrency of the dag_run() in progress */
        Engine *engine;
        DataCatalog *catalog;
        DagOptions opts;
        char *tenant;
        /* "NAME@V" per dataset a task's `data:` names as NAME (not an
         * output of this run): the version its first reader resolved,
         * which every later task reads too (pinned_data_refs()). */
        char **data_pins;
};

/* dag-parse.c: the reference grammar. */
typedef struct Ref {
        bool param;
        char *task;          /* or the param name */
        char **path;         /* keys after the first; NULL-terminated */
} Ref;
void ref_done(Ref *r);
/* Calls fn for each reference in every string of v. Stops at the first
 * negative return. Malformed references are -EINVAL with *ret_error. */
int template_walk(json_t *v, int (*fn)(const Ref *r, void *ud), void *ud, char **ret_error);
/* Substitutes references: lookup gives a borrowed value for a ref or NULL
 * with *ret_error. Returns a new reference. */
json_t *template_subst(json_t *v, json_t *(*lookup)(const Ref *r, void *ud, char **ret_error), void *ud,
                       char **ret_error);
/* Whole-string single reference? */
bool template_is_whole_ref(const char *s);
int dag_parse_duration_ms(const char *s, uint64_t *ret);
int dag_parse_size(const char *s, uint64_t *ret);
/* A --param value as JSON: src/shared's YAML scalar rule, JSON for [..]/{..},
 * the text itself where the rule says JSON cannot hold it (.inf). */
json_t *dag_scalar_value(const char *s);
