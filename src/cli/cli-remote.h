/* cli-remote: the CLI's HTTP client side (libcurl), used when a server is
 * configured: `--server URL`, else $PYSPRINTER_SERVER, else `server = URL`
 * in ~/.config/pysprinter/config. The token is $PYSPRINTER_TOKEN, else
 * `token = …` in that file. Each function returns the process exit code
 * (README.md, "Exit codes": 6 when the server is unreachable or refuses the token). */
#pragma once

#include <jansson.h>

#include "cli.h"

typedef struct Remote {
        char *base;     /* without trailing '/' */
        char *token;    /* NULL: no Authorization header */
} Remote;

/* A "key = value" setting of ~/.config/pysprinter/config ($XDG_CONFIG_HOME
 * honoured), or NULL. Caller frees. Keys: server, token, index_url,
 * extra_index_url, find_links. */
char *cli_config_value(const char *key);

/* The server to use given an explicit --server value (may be NULL), or
 * NULL for embedded mode. Caller frees. */
char *cli_remote_server(const char *flag);
/* Removes "--server URL" / "--server=URL" from argv (updating *argc) and
 * returns whether a server is configured, with its URL in *ret_server. */
bool cli_remote_take_server(int *argc, char **argv, char **ret_server);

/* run / validate on the server, streaming the output live; Ctrl-C cancels
 * the remote run. */
int cli_remote_run(const char *server, const RunArgs *a, const char *source, size_t len, bool validate_only);
int cli_remote_ps(const char *server, int argc, char **argv);
int cli_remote_show(const char *server, int argc, char **argv);
int cli_remote_logs(const char *server, int argc, char **argv);

/* Verbs that only exist against a server. */
int verb_deploy(int argc, char **argv);
int verb_invoke(int argc, char **argv);
int verb_functions(int argc, char **argv);
int verb_workers(int argc, char **argv);
/* `pysprinter server …` execs pysprinterd with the same arguments. */
int verb_server(int argc, char **argv);

/* ---- shared by the remote verbs (cli-remote.c, cli-remote-dag.c) ---- */

/* Opens the server URL (token from the environment or the config file);
 * returns 0, or the exit code after telling the user (a bad URL). */
int cli_remote_open(const char *server, Remote *ret);
void cli_remote_close(Remote *r);
/* One request with an optional JSON body; *ret_body is the parsed answer
 * (NULL when not JSON). Returns the HTTP status, or -6 (EXIT_SERVER) after
 * telling the user the server could not be reached. 429 is retried. */
long cli_remote_http_json(const Remote *rm, const char *method, const char *path, const char *body, json_t **ret_body);
/* Tells the user why a request failed; returns the exit code (6 for auth,
 * 2 for 4xx, 3 for 422, 6 otherwise). */
int cli_remote_http_error(long status, json_t *body, const char *what);
/* The run grammar's arguments and limits into an API request's fields;
 * -EINVAL when a raw (-a) value follows a typed one. */
int cli_remote_args_to_api(json_t *req, const RunArgs *a);

/* dag/chain/data against a server (cli-remote-dag.c). Each returns the
 * process exit code, the embedded verb's for the same outcome. */
int cli_remote_dag_run(const char *server, const char *file, char *const *params, unsigned concurrency, bool keep_going,
                       bool no_cache, bool json);
/* dag status|logs|ls|resume; argv holds the words after the subcommand. */
int cli_remote_dag(const char *server, const char *sub, int argc, char **argv);
/* chain: files are the n_files FILE[::FUNC] words; a holds the first
 * step's arguments and the options. */
int cli_remote_chain(const char *server, const RunArgs *a, int n_files, char **files);
/* data put|ls|get|rm; argv from the subcommand on. */
int cli_remote_data(const char *server, int argc, char **argv);
