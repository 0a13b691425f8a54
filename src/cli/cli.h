/* Internal to the pysprinter CLI: verbs, argument grammar, the backend
 * interface, rendering. Nothing outside src/cli/ includes this.
 *
 * Layers inside the CLI (docs/cli.md "Internals"):
 *   cli.c           the verb table and the global options
 *   cli-args.c      the run/invoke argument grammar (a library: unit tests)
 *   cli-backend.h   one interface over the embedded engine and a daemon
 *   cli-render.c    API objects -> the terminal (human, --json, TTY/pipe)
 *   cli-*.c verbs   each written once against a Backend */
#pragma once

#include <assert.h>
#include <jansson.h>
#include <signal.h>

#include "basic.h"
#include "engine.h"

/* Ctrl-C, on every path (the shell's 128 + SIGINT). */
#define EXIT_INTERRUPTED 130

/* ---- cli-args.c: the run/invoke argument grammar (docs/cli.md) ---- */

typedef struct RunArgs {
        char *target;        /* FILE[::FUNC] as given */
        char *file;
        char *function;      /* NULL: the decorated one */
        char *args_json;     /* [{"raw": …} | {"value": …}, …] */
        char *kwargs_json;   /* {name: {"raw": …} | {"value": …}} */
        char **suspects;     /* keyword names close to a runner option ("timout") */
        bool json_output;
        bool quiet;
        bool help;
        RunLimits limits;
        SandboxMode sandbox;
        char *index_url;
        char **find_links;
        char *server;
        char **data;         /* --data NAME (repeatable) */
        char **secrets;      /* --secret NAME: the tenant's secret as env NAME (docs/secrets.md) */
        char **env;          /* --env KEY=VALUE */
        char *output_data;   /* --output-data NAME: output_dir() becomes dataset NAME (docs/data.md) */
        char *output_file;   /* --output-file: the function's output goes here */
        char **steps;        /* chain: every step's FILE[::FUNC] in order (target first); NULL for run */
        char **options; /* the runner options given ("--timeout"…), in order; not -a/-k/--json-args/--json-kwargs */
        /* The runner's --NAME options given, as triples: the parameter a
         * function could have by that name ("timeout"), the words as
         * written ("--timeout 7", "--timeout=7", "--network") and the
         * value -k would give that parameter ("7"; "true" for a flag).
         * cli_shadowed_warnings() says so when the function has one. */
        char **shadowing;
        bool allow_sdist;
        bool no_cache;
        bool detach; /* --detach: print the run's id and return (run, invoke) */
        /* --idempotency-key KEY (run, invoke; idempotency_key_is_valid()):
         * a submit of a key used within 24 h starts nothing and shows the
         * key's first run (docs/cli.md "Idempotency keys") */
        char *idempotency_key;
        /* The verb's first step needs a worker (run, validate, lock, map,
         * dag run, chain): the engine starts one in this sandbox mode as
         * it opens (EngineConfig.prewarm). Set by the verb, not parsed. */
        bool worker_now;
        /* With worker_now: the file declares requirements (by its text:
         * a hint, never a decision), so its run needs an env's worker
         * besides the validating one. A blank worker boots beside the
         * validator and adopts the env (EngineConfig.prewarm_no_blank
         * off) instead of a cold start after validation. */
        bool worker_env_likely;
} RunArgs;

/* The hint behind RunArgs.worker_env_likely, read from a file's text
 * before it is validated: whether a line begins (after blanks) with the
 * decorator the validator takes, `@requirements(` or
 * `@pysprinter.requirements(`. A comment does not count; a docstring that
 * shows the decorator at a line's start costs a worker started for
 * nothing, and a decorator spelled otherwise (an alias) only the start it
 * would have saved. */
bool cli_source_declares_requirements(const char *source, size_t len);

/* Parses argv (the words after the verb). On failure *ret_error is a usage
 * message (exit 2). */
int cli_parse_run_args(int argc, char **argv, RunArgs *ret, char **ret_error);
/* `chain`'s grammar: run's, where every bare word that names a step —
 * FILE.py or FILE::FUNC — starts the next step (ret->steps, in order, the
 * first being ret->target), wherever it stands; an option's value, a word
 * after `--` and any other bare word stay values for the first step. */
int cli_parse_chain_args(int argc, char **argv, RunArgs *ret, char **ret_error);
void run_args_done(RunArgs *a);
/* A deployed function's NAME[::VERSION] (invoke, schedule add), or
 * NAME:VERSION as Lambda and the Python client write it (a function name
 * holds no ':'), or either in Lambda's ARN or partial ARN
 * (…:function:NAME:VERSION): *ret_name (caller frees) and *ret_version (0: the latest,
 * also for VERSION `$LATEST`). -EINVAL when VERSION is not `$LATEST` or
 * digits without a leading zero (`01`, `+1`, `x`, empty), as the daemon
 * reads a version. */
int cli_parse_deployed_name(const char *word, char **ret_name, long *ret_version);
/* cli_parse_deployed_name() that also takes an alias (docs/api.md
 * "Aliases") as the qualifier: *ret_alias (caller frees) when the word
 * names one (*ret_version 0 then), else NULL. The daemon resolves it. */
int cli_parse_deployed_ref(const char *word, char **ret_name, long *ret_version, char **ret_alias);
/* cli_parse_deployed_name() for what takes every version of a function
 * (`logs --function`, `ps --function`, named by what):
 * NULL with *ret_name, or the usage error's words (caller frees) for a
 * word naming a version or a malformed one. */
char *cli_parse_function_name(const char *word, const char *what, char **ret_name);
/* Whether invoke's words (argv: after the verb) ask for a map over
 * INPUTS: --over or --over=F before "--" (verb_invoke_or_over()). */
bool cli_over_given(int argc, char **argv);
/* invoke's first word for a Lambda-style event (--payload[=…],
 * --payload-file[=…], or '-' after NAME and not --over's value: the event
 * on stdin) before "--",
 * or NULL: what `invoke --over` refuses (each line is one call's
 * arguments). */
const char *cli_payload_word(int argc, char **argv);
/* What invoke and schedule add say when it refuses the version. */
#define CLI_VERSION_REFUSED \
        "the part after '::' must be a version number (1, 2, …) or $LATEST: NAME::2, or NAME:2 as Lambda writes it"
/* invoke and schedule add (docs/cli.md, docs/schedules.md): NULL when a
 * carries only what an invocation of a deployed function takes (arguments,
 * limits, --data; with an invoke, the terminal's --output-file too), else
 * the usage message naming the first option given that it cannot carry
 * ("--sandbox cannot go with invoke: …"; verb names the verb). Caller
 * frees. */
char *cli_invoke_option_error(const RunArgs *a, const char *verb, bool scheduled);
/* A refused run (invalid) whose validation refused one of suspects (the
 * RunArgs' keyword names close to a runner option, "timout"): says which
 * option was meant and returns exit 2; else 0 (the run's own error). */
int cli_suspect_refused(char *const *suspects, const json_t *run);
/* The runner option a mistyped word is closest to (edit distance <= 2,
 * "--timout" -> "--timeout"), or NULL. */
const char *cli_runner_option_near(const char *word);
/* Levenshtein distance between two short words (an option's, a verb's);
 * SIZE_MAX for a word over 64 bytes. */
size_t cli_edit_distance(const char *a, const char *b);
/* Whether a parameter named param is shadowed by an option the runner (or
 * the CLI, a global one) takes anywhere on the line: `--NAME` (`_` as `-`)
 * is that option, and only `-k NAME=VALUE` reaches the parameter
 * (`timeout`, `max_output`, `verbose`). */
bool cli_param_is_shadowed(const char *param);
/* Why text, given as what ("--json-kwargs", "the payload", a file's
 * name), is no JSON, from jansson's error e: "WHAT is not JSON: line L,
 * column C: REASON", or "WHAT is empty: give a JSON value". Caller frees. */
char *cli_json_error(const char *what, const char *text, const json_error_t *e);
/* The list verbs' options (ps, dag ls): --json, -n/--limit N (1..max).
 * 0 ok, -1 for --help (the caller prints its usage), else EXIT_USAGE after
 * saying what was wrong. */
int cli_parse_list_args(int argc, char **argv, const char *verb, long max, bool *ret_json, long *ret_limit);
/* A `--status` word of ps (names: run_status_table()) or dag ls
 * (dag_status_table()): adds to *set the states it lists, comma-separated
 * and in any case ("failed,Killed"), each once, spelled as the API spells
 * them. -EINVAL with *ret_error (caller frees) naming the valid ones
 * (names_text), so both backends refuse the same words the same way before
 * asking: a word no state is, or none at all (word NULL). */
int cli_parse_states(const char *word, const char *const *names, const char *names_text, char ***set, char **ret_error);
/* Takes every `--status S` / `--status=S` out of argv (the rest is the
 * list options'; the option may repeat: their states add up), the states
 * into *ret_set (NULL when absent): 0, or EXIT_USAGE after saying
 * "VERB: what is wrong" and the hint to `pysprinter HELP_VERB --help`. */
int cli_take_status(int *argc, char **argv, const char *verb, const char *help_verb, const char *const *names,
                    const char *names_text, char ***ret_set);
/* "1.5" "2s" "500ms" "2m" -> milliseconds. */
int cli_parse_duration_ms(const char *s, uint64_t *ret);
/* "256" (MiB) "256M" "1G" "512KiB" "100B" -> bytes. */
int cli_parse_size(const char *s, uint64_t *ret);
/* A number of bytes, as an option named for bytes or a byte budget takes
 * it: a bare number is bytes ("0" too, which each option gives its own
 * meaning), else a size as cli_parse_size() reads it ("512M", "1G"). */
int cli_parse_bytes(const char *s, uint64_t *ret);
/* A --env word (run and deploy): NULL when it is KEY=VALUE with KEY a
 * variable's name and VALUE UTF-8 (a run's environment travels as JSON
 * text), else what is wrong with it (caller frees). */
char *cli_env_assignment_error(const char *word);
/* A --sandbox value (run, map, dag run, …): 0 and the mode for "full",
 * "default" or "none", else -EINVAL and the usage message (caller frees). */
int cli_sandbox_mode_parse(const char *val, SandboxMode *ret_mode, char **ret_error);

/* Global options, accepted before or after the verb: --server URL,
 * --token T, --json, --no-color, -q/--quiet, -v/--verbose. */
typedef struct CliGlobals {
        char *server;    /* the flag's value; NULL: $PYSPRINTER_SERVER, the config */
        char *token;
        bool json, no_color, quiet, verbose;
        /* --json, --no-color, --verbose, -v given after a verb's first
         * word (a FILE): triples as RunArgs.shadowing, for a parameter of
         * that name (cli-runs.c says which was taken). */
        char **shadowing;
} CliGlobals;
extern CliGlobals cli_globals;
/* Removes the global options from argv (updating *argc) into *g. A word
 * after "--" and the value of -a/-k/--json-args/--json-kwargs/--param are
 * never taken. -EINVAL (with *ret_error) when --server/--token has no value. */
int cli_take_globals(int *argc, char **argv, CliGlobals *g, char **ret_error);

/* ---- cli-render.c: API objects to the terminal ---- */

typedef struct Renderer {
        bool tty_out, tty_err, color, json;
        bool cursor;      /* cursor movement allowed (a TTY, TERM is not dumb) */
        bool status_line; /* a progress line is on stderr and must be erased */
        FILE *out;        /* where the function's stdout goes (stderr with --json) */
        Buf partial[3];   /* partial lines per stream (TTY decoration is per line) */
        bool redraw;      /* the output is a terminal that may redraw a line in place */
        int live;         /* the stream whose unfinished line is drawn there (0: none) */
        bool no_output;   /* drop the run's output (a validation asked only for its verdict) */
        bool midline;     /* the function's output on stdout (a pipe, a file) ends without a newline */
        int out_errno;    /* why a write to out (not stdout: --output-file) failed first */
        /* Where the output is no terminal, write it in whole lines (the
         * rest when the renderer is done), not as it comes: map's calls
         * share stderr, and a line one wrote in pieces would be cut into
         * by the others' (GNU parallel's --line-buffer). */
        bool whole_lines;
        /* With whole_lines, when set: writes the lines instead of an fwrite
         * to f (map erases its progress bar first and draws it again). */
        void (*write_lines)(void *userdata, FILE *f, const char *data, size_t len);
        void *write_lines_userdata;
} Renderer;

void renderer_init(Renderer *r, bool json_output);
void renderer_done(Renderer *r);
/* The parser's warnings an API answer carries ("warnings": the validation's,
 * a deploy's, a stack's), printed as a run prints them (the engine's stderr
 * output event, rendered: the same bytes embedded and through a server),
 * then taken out of ans, which --json prints without them. r NULL: a
 * renderer of its own (a verb that renders no run: deploy). */
void renderer_answer_warnings(Renderer *r, json_t *ans);
/* Erases the progress line, if one is drawn: call before any other output. */
void renderer_clear_status(Renderer *r);
/* Whether the cursor can move on stderr: a terminal whose TERM is not
 * "dumb". What may be redrawn in place (a progress line, the DAG tree,
 * map's bar) is drawn only then. */
bool cli_stderr_can_redraw(void);
/* Colours are off: --no-color, or NO_COLOR set to a value that is not
 * empty (no-color.org: an empty one leaves them on). One rule for the
 * run's lines, the DAG view and the CLI's own messages. */
bool cli_no_color(void);
/* An engine event: output is streamed, warnings shown, progress on one
 * line that is erased before anything else is written. */
void renderer_event(const RunEvent *ev, void *userdata);
/* Prints the outcome of a finished run (the API's run object): its value,
 * warning, traceback or error. Returns its exit code. */
int renderer_run_outcome(Renderer *r, json_t *run);
/* A run's error object as one line: "Type: message", or the message alone
 * when it names its type already ("f.py:1:7: SyntaxError: …" stays
 * "file:line:col" first, as a compiler's). */
char *renderer_error_text(const json_t *err);
/* Prints a value as `run` does: a string as itself, anything else as JSON
 * (pretty on a TTY, Python's separators otherwise; compact with --json).
 * A held value (shared.h json_held_new()), there or within v, is written
 * from its text, never built. */
void render_value(json_t *v, bool json, bool tty);
/* A JSON document on stdout: compact, reals in Python's spelling. */
void render_json(json_t *v);
/* The start of a list verb's output: with json, the list as one document;
 * with -q, each element's key alone, one per line (render_list_keys());
 * an empty list, the hint on stderr (unless -q). Returns true when the
 * caller is to print the table's rows. */
bool render_list_start(json_t *list, bool json, const char *key, const char *empty_hint);
/* With -q (`docker ps -q`), each element's key alone, one per line, for a
 * shell to take: returns true when it printed them (so no table). */
bool render_list_keys(json_t *list, const char *key);
/* A sub-verb's arguments (argv[1..argc)) without `--json`, moved down in
 * place: returns their count; *ret_json is --json or the global one. */
int cli_take_json_flag(int argc, char **argv, bool *ret_json);
/* The JSON text of v: compact, reals in their shortest round-trip
 * spelling (0.1, not 0.10000000000000001). Caller frees. */
char *cli_json_text(json_t *v);
/* Re-format compact JSON text: indent 0 = Python's json.dumps default
 * separators on one line; indent > 0 = pretty. Numbers are kept verbatim. */
char *json_reformat(const char *compact, int indent);
/* The one place durations are spelled: "0.14ms", "850ms", "2.35s", "3m05s" (sizes:
 * basic's format_size(), shared with the store's gc report). */
void format_duration_us(usec_t us, char buf[static 32]);
/* An API time stamp ("2026-01-02T03:04:05.678Z") as realtime µs, or 0. */
usec_t cli_parse_timestamp(const char *iso);
/* The local time of an API time stamp, "YYYY-MM-DD HH:MM:SS", or "-". */
void format_local_time(const char *iso, char buf[static 32]);
/* Prints "pysprinter: MSG" on stderr, erasing a progress line first.
 * cli_warning() says nothing under -q (results and errors only). */
void cli_error(const char *fmt, ...) _printf_(1, 2);
void cli_warning(const char *fmt, ...) _printf_(1, 2);

/* ---- verbs ---- */

int verb_run(int argc, char **argv);
int verb_validate(int argc, char **argv);
int verb_invoke(int argc, char **argv);
int verb_ps(int argc, char **argv);
int verb_show(int argc, char **argv);
int verb_logs(int argc, char **argv);
int verb_wait(int argc, char **argv);
int verb_cancel(int argc, char **argv); /* cli-runs.c */
int verb_deploy(int argc, char **argv);
/* deploy -f STACK.yaml (cli-stack.c, docs/stack.md). */
int cli_deploy_stack(int argc, char **argv);
int verb_functions(int argc, char **argv);
int verb_workers(int argc, char **argv);
int verb_server(int argc, char **argv);
int verb_dag(int argc, char **argv);
int verb_chain(int argc, char **argv);
int verb_map(int argc, char **argv);  /* cli-map.c */
/* cli-map.c: the `invoke` verb. With --over INPUTS.jsonl (and no --help),
 * `invoke NAME[::VERSION] --over INPUTS.jsonl [-j N]`: map's machinery
 * over a deployed function; else verb_invoke()'s one call. */
int verb_invoke_or_over(int argc, char **argv);
/* cli-runs.c: a --help or -h among argv's words before "--". */
bool cli_help_asked(int argc, char **argv);
/* cli-runs.c: invoke's NAME[::VERSION] (argv[0], also NAME:VERSION and an
 * ARN): 0 with *ret_name (caller frees; NULL when the word names no
 * version: argv[0] is the name) and *ret_version (0: the latest), or
 * EXIT_USAGE after saying why (no NAME, a malformed VERSION). */
int cli_invoke_name(int argc, char **argv, char **ret_name, long *ret_version, char **ret_alias);
int verb_data(int argc, char **argv);
int verb_secret(int argc, char **argv);
int verb_lock(int argc, char **argv); /* cli-runs.c */
int verb_env(int argc, char **argv);  /* cli-pkg.c */
int verb_gc(int argc, char **argv);   /* cli-gc.c */
int verb_schedule(int argc, char **argv); /* cli-schedule.c */
int verb_completion(int argc, char **argv); /* cli-completion.c */
int verb_init(int argc, char **argv);     /* cli-init.c */
/* The i-th verb's name (and summary), NULL past the last: the completion
 * scripts list them from the one verb table. */
const char *cli_verb(size_t i, const char **ret_summary);
int verb_cluster(int argc, char **argv); /* cli-cluster.c */

/* A verb with subcommands (dag, data): help asked anywhere prints help
 * (exit 0), no subcommand prints it on stderr (exit 2); -1 otherwise. */
int cli_subverb_help(int argc, char **argv, const char *help);
/* Reads a user's file (stdin for "-") within the source size cap, saying
 * on stderr what went wrong when it cannot. */
int cli_read_source(const char *file, char **ret, size_t *ret_len);
/* The name a run's source goes by: FILE, or "<stdin>" for "-" (what
 * cli_read_source() read from stdin), as Python names it. */
const char *cli_source_name(const char *file);
/* A server gets the source as a JSON string, which must be UTF-8: refuse
 * a file before sending it as the engine refuses it embedded (its own
 * check: a NUL byte first, then where the first byte that is not UTF-8
 * is; the same invalid run, rendered the same way, exit 3), under the
 * file's base name as every other message of a run names it. Returns 0
 * when the source may be sent, else the exit code (the error said). */
int cli_check_source(const char *file, const char *source, size_t len);
/* Opens the embedded engine with the environment's settings. writes: the
 * verb runs or records something, refused (exit 7) in a home on a
 * read-only file system, which the verbs that only read still open.
 * Returns 0 or the exit code after telling the user. */
int cli_engine_open(const RunArgs *a, bool writes, Engine **ret);
/* A "key = value" setting of ~/.config/pysprinter/config ($XDG_CONFIG_HOME
 * honoured), or NULL. Caller frees. Keys: server, token, index_url,
 * extra_index_url, find_links. */
char *cli_config_value(const char *key);
/* The server to use: --server, else $PYSPRINTER_SERVER, else the config
 * file's; NULL for embedded mode, also when the first of them that is set
 * is empty (`--server ''`). Caller frees. */
char *cli_server(void);

/* ---- cli-detach.c: `run --detach` (docs/cli.md) ---- */

/* Embedded, a detached run needs a process to own it: forks. The parent
 * returns an exit code: 0 once the child's run has a record (printed as
 * cli_print_detached() prints it), or the child's own code when it ended
 * before that, having said why (its stderr reaches the caller until then).
 * An interrupt (cli_interrupt_signals) before then is forwarded to the
 * child, which cancels its run and ends as an interrupted `run` (130). The
 * child returns -1 and goes on as `run` (dag: `dag run`) would, in a
 * session of its own, with /dev/null for 0, 1 and 2, catching the
 * interrupts (cli_catch_interrupt()). Call before the engine is opened: the child
 * forks a single-threaded process. */
int cli_detach_fork(bool json, bool dag);
/* In the detached child: hands the run's record to the parent and waits
 * for its answer; once it printed the id, nothing of the child's reaches
 * the caller. When the parent was interrupted first (or this process was,
 * cli_interrupted), nothing is handed: the run is being cancelled and the
 * child's stderr stays the caller's. replayed: run is an earlier run of
 * the command's --idempotency-key, not one it started. No-op in any other
 * process. */
void cli_detach_submitted(json_t *run, bool replayed);
/* What a detached run (dag: DAG run) prints, on both paths: its id
 * (--json: its object), and on stderr where to follow it — or, when it is
 * the earlier run of an --idempotency-key (replayed) and has ended, that
 * it has, and where to read how (docs/cli.md "--idempotency-key"). */
void cli_print_detached(json_t *obj, bool json, bool dag, bool replayed);

/* The exit-code table of docs/cli.md, from a negative errno a backend or
 * the HTTP client returned. */
int cli_exit_code(int r);
/* The signals that interrupt a verb that waits (docs/cli.md "Exit
 * codes", 130): Ctrl-C (SIGINT), SIGTERM and a hang-up (SIGHUP: the
 * terminal closed, an ssh session dropped). */
#define CLI_INTERRUPT_SIGNALS 3
extern const int cli_interrupt_signals[CLI_INTERRUPT_SIGNALS];
/* Installs handler for each of cli_interrupt_signals but those the caller
 * ignored (SIG_IGN, as nohup leaves SIGHUP), which stay ignored. When
 * ret_old is not NULL, its CLI_INTERRUPT_SIGNALS entries get the
 * dispositions before, for cli_interrupt_restore(). */
void cli_interrupt_catch(void (*handler)(int), struct sigaction *ret_old);
void cli_interrupt_restore(const struct sigaction *old);
/* Set by an interrupt (cli_interrupt_signals) while a verb that can be
 * interrupted runs. */
extern volatile sig_atomic_t cli_interrupted;
/* This thread has handled the interrupt (it asked the server to cancel
 * its run): its further HTTP requests (the cancel, the record) must not
 * stop at once. Per thread: map's other calls, each on its thread, still
 * see the interrupt and cancel their own runs. */
extern _Thread_local bool cli_interrupt_handled;
/* cli_interrupt_catch() with the handler that sets cli_interrupted. */
void cli_catch_interrupt(void);

/* The reader of the CLI's output went away (docs/cli.md "Exit codes",
 * 141): `pysprinter run f.py | head -1`, `logs -f ID | grep -m1 x`. Set
 * by cli_output_check(). */
extern volatile sig_atomic_t cli_output_gone;
/* Installs the SIGPIPE handler (main(), first): a write to a stdout or
 * stderr nobody reads runs cli_output_check() instead of killing the CLI
 * mid-run, which would leave an embedded run `lost` and a server's going
 * on for nobody. */
void cli_output_watch(void);
/* When stdout or stderr is a pipe or socket without a reader: sets
 * cli_output_gone, points both at /dev/null (nothing more is said) and
 * interrupts the verb as SIGTERM does, so that a run it waits for is
 * cancelled. Async-signal-safe; called by the SIGPIPE handler and after a
 * write that failed with EPIPE. */
void cli_output_check(void);
/* main()'s end: flushes stdout; once the output was gone, ends the process
 * as SIGPIPE's default would (exit 141 to a caller that ignored SIGPIPE);
 * else returns code. */
int cli_finish(int code);
