/* Internal to the pysprinter CLI: verbs, argument grammar, rendering.
 * Nothing outside src/cli/ includes this. */
#pragma once

#include "basic.h"
#include "engine.h"

/* ---- cli-args.c: the run/invoke argument grammar (docs/cli.md) ---- */

typedef struct RunArgs {
        char *target;        /* FILE[::FUNC] as given */
        char *file;
        char *function;      /* NULL: the decorated one */
        char *args_json;     /* [{"raw": …} | {"value": …}, …] */
        char *kwargs_json;   /* {name: {"raw": …} | {"value": …}} */
        bool json_output;
        bool quiet;
        bool help;
        RunLimits limits;
        SandboxMode sandbox;
        char *index_url;
        char **find_links;
        char *server;
        char **data;         /* --data NAME (repeatable) */
        bool allow_sdist;
        bool no_cache;
} RunArgs;

/* Parses argv (the words after the verb). On failure *ret_error is a usage
 * message (exit 2). */
int cli_parse_run_args(int argc, char **argv, RunArgs *ret, char **ret_error);
void run_args_done(RunArgs *a);
/* The list verbs' options (ps, dag ls): --json, -n/--limit N (1..max).
 * 0 ok, -1 for --help (the caller prints its usage), else EXIT_USAGE after
 * saying what was wrong. */
int cli_parse_list_args(int argc, char **argv, const char *verb, long max, bool *ret_json, long *ret_limit);
/* "1.5" "2s" "500ms" "2m" -> milliseconds. */
int cli_parse_duration_ms(const char *s, uint64_t *ret);
/* "256" (MiB) "256M" "1G" "512KiB" "100B" -> bytes. */
int cli_parse_size(const char *s, uint64_t *ret);

/* ---- cli-render.c ---- */

typedef struct Renderer {
        bool tty_out, tty_err, color, json;
        bool status_line; /* a progress line is on stderr and must be cleared */
        /* Partial lines per stream (TTY decoration works line by line). */
        Buf partial[3];
} Renderer;

void renderer_init(Renderer *r, bool json_output);
void renderer_done(Renderer *r);
/* An engine event: output is streamed, warnings shown. */
void renderer_event(const RunEvent *ev, void *userdata);
/* Prints the outcome of a run; returns its exit code. */
int renderer_result(Renderer *r, const RunResult *res);
/* Prints a result's JSON text as `run` does: a string as itself, anything
 * else as JSON (pretty on a TTY, Python's separators otherwise). */
void cli_print_value_text(const char *json_text, bool tty);
/* Re-format compact JSON text: indent 0 = Python's json.dumps default
 * separators on one line; indent > 0 = pretty. Numbers are kept verbatim. */
char *json_reformat(const char *compact, int indent);

/* ---- verbs ---- */

typedef struct CliContext {
        const char *argv0;
} CliContext;

int verb_run(int argc, char **argv);
int verb_validate(int argc, char **argv);
int verb_ps(int argc, char **argv);
int verb_show(int argc, char **argv);
int verb_logs(int argc, char **argv);
int verb_dag(int argc, char **argv);
int verb_chain(int argc, char **argv);
int verb_data(int argc, char **argv);
typedef struct DataCatalog DataCatalog; /* cli-data.c: the catalog beside the engine's store */
int cli_data_open(Engine *e, DataCatalog **ret);
int verb_lock(int argc, char **argv); /* cli-pkg.c */
int verb_env(int argc, char **argv);  /* cli-pkg.c */

/* Reads a user's file within the source size cap, saying on stderr what
 * went wrong when it cannot. */
int cli_read_source(const char *file, char **ret, size_t *ret_len);

/* Opens the embedded engine with the environment's settings. */
int cli_engine_open(const RunArgs *a, Engine **ret);
